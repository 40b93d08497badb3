//! Client → server messages: what each is, its type number and its fixed body layout
//! (docs/protocol.md, "Client messages").

use ringbook_engine::le::{LeReader, LeWriter};
use ringbook_engine::le_size;
use ringbook_engine::{
    ClientOrderId, Command, CurrencyId, NewOrder, OperatorId, OrderId, OrderType, Price, Qty,
    Query, RejectCode, Side, StpMode, SymbolId, TimeInForce, UserId, WithdrawalId,
};

use super::{put_header, Name32, FRAME_BYTES_MAX, HEADER_BYTES, PROTOCOL_VERSION};

/// Message type numbers (client → server).
pub mod msg_type {
    /// [`super::Login`].
    pub const LOGIN: u16 = 1;
    /// Logout: the server answers with a `Disconnect` (reason 0) and closes.
    pub const LOGOUT: u16 = 2;
    /// Heartbeat: keeps the session alive when the client has nothing else to send.
    pub const HEARTBEAT: u16 = 3;
    /// New order.
    pub const NEW_ORDER: u16 = 10;
    /// Cancel one order.
    pub const CANCEL: u16 = 11;
    /// Amend (cancel/replace) one order.
    pub const AMEND: u16 = 12;
    /// Mass cancel (all symbols, or one).
    pub const MASS_CANCEL: u16 = 13;
    /// Cancel one order named by its engine order id.
    pub const CANCEL_ORDER: u16 = 14;
    /// Amend one order named by its engine order id.
    pub const AMEND_ORDER: u16 = 15;
    /// Order status query.
    pub const ORDER_STATUS: u16 = 20;
    /// Open orders query.
    pub const OPEN_ORDERS: u16 = 21;
    /// Balances query.
    pub const BALANCES: u16 = 22;
    /// Book snapshot query.
    pub const BOOK_SNAPSHOT: u16 = 23;
    /// Order status query by engine order id.
    pub const ORDER_STATUS_BY_ID: u16 = 24;
    /// Reference data: the server's currencies and symbols (any session).
    pub const REFERENCE_DATA: u16 = 25;
    /// Deposit (operator sessions only).
    pub const DEPOSIT: u16 = 30;
    /// Withdrawal request (user sessions only).
    pub const WITHDRAW: u16 = 31;
    /// Approve a withdrawal (operator sessions only).
    pub const APPROVE_WITHDRAWAL: u16 = 32;
    /// Reject a withdrawal (operator sessions only).
    pub const REJECT_WITHDRAWAL: u16 = 33;
    /// The gateway's counters (operator sessions only).
    pub const STATS: u16 = 40;
}

/// The largest client body (a login's): every layout in the table below is checked against it.
pub const BODY_BYTES_MAX: usize = 84;

/// Login: the first message of every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Login {
    /// Login name, NUL-padded.
    pub login: Name32,
    /// Credential, NUL-padded.
    pub password: Name32,
    /// The client's session id: server sequence numbers, retransmission and the client order id
    /// high-water mark belong to `(login, session_id)` and survive reconnects.
    pub session_id: u32,
    /// The last server sequence number the client has seen (0: none). Messages after it that
    /// the server still holds are retransmitted.
    pub last_seen_seq: u64,
    /// Heartbeat interval the client will keep, in milliseconds (0: the server's default).
    pub heartbeat_ms: u32,
    /// Cancel every live order of the user when this connection ends without a logout.
    pub cancel_on_disconnect: bool,
}

/// Everything a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMsg {
    /// Log in.
    Login(Login),
    /// Log out.
    Logout,
    /// Heartbeat.
    Heartbeat,
    /// An engine command: new order, cancel, amend, mass cancel, deposit, withdraw, approve or
    /// reject a withdrawal. The session layer checks the user or operator id is its own.
    /// (A [`Command::Query`] here is sent as the matching query message with request id 0;
    /// decoding produces the query messages below instead.)
    Command(Command),
    /// Status of one of the user's live orders.
    OrderStatus {
        /// Echoed in the reply.
        request_id: u64,
        /// Must be the session's user.
        user: UserId,
        /// The order.
        client_order_id: ClientOrderId,
    },
    /// Status of one of the user's orders by engine order id (live or recently finished).
    OrderStatusById {
        /// Echoed in the reply.
        request_id: u64,
        /// Must be the session's user.
        user: UserId,
        /// The order.
        order_id: OrderId,
    },
    /// The user's live orders.
    OpenOrders {
        /// Echoed in the reply.
        request_id: u64,
        /// Must be the session's user.
        user: UserId,
    },
    /// The user's balances, every currency.
    Balances {
        /// Echoed in the reply.
        request_id: u64,
        /// Must be the session's user.
        user: UserId,
    },
    /// Level-2 depth of one symbol.
    BookSnapshot {
        /// Echoed in the reply.
        request_id: u64,
        /// The symbol.
        symbol: SymbolId,
        /// Levels per side (1..=`BOOK_DEPTH_MAX`).
        depth: u16,
    },
    /// The gateway's counters (operator sessions only; answered by the gateway, not the engine).
    Stats {
        /// Echoed in the reply.
        request_id: u64,
    },
    /// One page of the server's reference data (any session; answered by the gateway): the
    /// entries from index `first` of the list of every currency (by id) followed by every
    /// symbol (by id), at most `REFERENCE_REPLY_MAX` of them, then a `ReferenceEnd` that says
    /// where the next page starts.
    ReferenceData {
        /// Echoed in the reply.
        request_id: u64,
        /// The first entry wanted: 0 for the start, else the previous page's `next`.
        first: u32,
    },
}

/// The most levels per side a book snapshot returns.
pub const BOOK_DEPTH_MAX: u16 = 64;

impl ClientMsg {
    /// The query message that asks what `q` asks (the server chooses the open-orders limit;
    /// a book depth above `u16::MAX` is sent as `u16::MAX`, and the server caps it anyway).
    pub fn query(request_id: u64, q: Query) -> ClientMsg {
        match q {
            Query::Order {
                user,
                client_order_id,
            } => ClientMsg::OrderStatus {
                request_id,
                user,
                client_order_id,
            },
            Query::OrderById { user, order_id } => ClientMsg::OrderStatusById {
                request_id,
                user,
                order_id,
            },
            Query::OpenOrders { user, .. } => ClientMsg::OpenOrders { request_id, user },
            Query::Balances { user } => ClientMsg::Balances { request_id, user },
            Query::Book { symbol, depth } => ClientMsg::BookSnapshot {
                request_id,
                symbol,
                depth: depth.min(u16::MAX as u32) as u16,
            },
        }
    }

    /// The message type number.
    pub fn msg_type(&self) -> u16 {
        self.table_msg_type()
    }

    /// Encodes the whole frame into `buf`; returns its length. Never allocates.
    pub fn encode(&self, buf: &mut [u8; FRAME_BYTES_MAX]) -> usize {
        let mut w = LeWriter::new(&mut buf[..], HEADER_BYTES);
        match *self {
            ClientMsg::Command(Command::Query(q)) => return ClientMsg::query(0, q).encode(buf),
            ClientMsg::Command(Command::Tick) => {}
            // `on_disconnect` is the gateway's own: a client cannot send it.
            ClientMsg::Command(Command::MassCancel { user, symbol, .. }) => {
                w.put(user)
                    .put(symbol.is_some())
                    .zeros(1)
                    .put(symbol.unwrap_or(SymbolId(0)));
            }
            _ => self.put_table(&mut w),
        }
        let len = w.at();
        put_header(buf, self.msg_type(), len - HEADER_BYTES);
        len
    }

    /// Decodes one body of type `msg_type` and schema `version`. Checks shape (length, enum
    /// values, flags, zero padding), not meaning (the engine checks symbols, prices, funds).
    /// Never allocates, never panics.
    pub fn decode(msg_type: u16, version: u16, body: &[u8]) -> Result<ClientMsg, RejectCode> {
        if version != PROTOCOL_VERSION {
            return Err(RejectCode::UnsupportedVersion);
        }
        let expected = match msg_type {
            msg_type::MASS_CANCEL => Some(MASS_CANCEL_BODY_BYTES),
            t => table_body_len(t),
        };
        let Some(expected) = expected else {
            return Err(RejectCode::UnknownMessageType);
        };
        if body.len() != expected {
            return Err(RejectCode::MalformedFrame);
        }
        let mut r = LeReader::new(body);
        let msg = if msg_type == msg_type::MASS_CANCEL {
            let user = r.get::<UserId>("user")?;
            let has_symbol = r.get::<bool>("flags")?;
            r.zeros(1)?;
            let symbol = r.u16();
            if !has_symbol && symbol != 0 {
                return Err(RejectCode::InvalidField);
            }
            ClientMsg::Command(Command::MassCancel {
                user,
                symbol: has_symbol.then_some(SymbolId(symbol)),
                on_disconnect: false,
            })
        } else {
            get_table(msg_type, &mut r)?
        };
        if let ClientMsg::BookSnapshot { depth, .. } = msg {
            if depth == 0 || depth > BOOK_DEPTH_MAX {
                return Err(RejectCode::InvalidField);
            }
        }
        if !r.exact() {
            return Err(RejectCode::MalformedFrame);
        }
        Ok(msg)
    }
}

/// Body length of a mass cancel: user, has-symbol flag, one zero byte, symbol.
const MASS_CANCEL_BODY_BYTES: usize =
    le_size!(user: UserId, has_symbol: bool, [pad 1], symbol: SymbolId);

// The wire layout of every client message (see `layout.rs`). Written by hand in `ClientMsg`: a
// query command (sent as its query message), a tick (a heartbeat) and a mass cancel (whose
// optional symbol is a flag and a value).
wire_layouts! {
    ClientMsg;
    [by hand:
        ClientMsg::Command(Command::Query(q)) => ClientMsg::query(0, q).msg_type(),
        // Time alone is the sequencer's to send, not a client's: a client's tick goes out as
        // the message that carries nothing but the client's presence.
        ClientMsg::Command(Command::Tick) => msg_type::HEARTBEAT,
        ClientMsg::Command(Command::MassCancel { .. }) => msg_type::MASS_CANCEL,
    ];
    LOGIN: (ClientMsg::Login(Login { login, password, session_id, last_seen_seq, heartbeat_ms,
        cancel_on_disconnect }))
        [login: Name32, password: Name32, session_id: u32, last_seen_seq: u64,
        heartbeat_ms: u32, cancel_on_disconnect: bool, [pad 3]];
    LOGOUT: (ClientMsg::Logout) [];
    HEARTBEAT: (ClientMsg::Heartbeat) [];
    NEW_ORDER: (ClientMsg::Command(Command::NewOrder(NewOrder { user, symbol, side, order_type,
        tif, stp, post_only, client_order_id, price, qty, stop_price, display_qty, budget,
        expire_at })))
        [user: UserId, symbol: SymbolId, side: Side, order_type: OrderType, tif: TimeInForce,
        stp: StpMode, post_only: bool, [pad 1], client_order_id: ClientOrderId, price: Price,
        qty: Qty, stop_price: Price, display_qty: Qty, budget: u64, expire_at: u64];
    CANCEL: (ClientMsg::Command(Command::Cancel { user, symbol, client_order_id }))
        [user: UserId, symbol: SymbolId, [pad 2], client_order_id: ClientOrderId];
    AMEND: (ClientMsg::Command(Command::Amend { user, symbol, client_order_id, price, qty }))
        [user: UserId, symbol: SymbolId, [pad 2], client_order_id: ClientOrderId, price: Price,
        qty: Qty];
    CANCEL_ORDER: (ClientMsg::Command(Command::CancelOrder { user, symbol, order_id }))
        [user: UserId, symbol: SymbolId, [pad 2], order_id: OrderId];
    AMEND_ORDER: (ClientMsg::Command(Command::AmendOrder { user, symbol, order_id, price, qty }))
        [user: UserId, symbol: SymbolId, [pad 2], order_id: OrderId, price: Price, qty: Qty];
    DEPOSIT: (ClientMsg::Command(Command::Deposit { user, currency, amount }))
        [user: UserId, currency: CurrencyId, [pad 2], amount: u64];
    WITHDRAW: (ClientMsg::Command(Command::Withdraw { user, currency, amount }))
        [user: UserId, currency: CurrencyId, [pad 2], amount: u64];
    APPROVE_WITHDRAWAL: (ClientMsg::Command(Command::ApproveWithdrawal { operator,
        withdrawal_id }))
        [operator: OperatorId, [pad 4], withdrawal_id: WithdrawalId];
    REJECT_WITHDRAWAL: (ClientMsg::Command(Command::RejectWithdrawal { operator,
        withdrawal_id }))
        [operator: OperatorId, [pad 4], withdrawal_id: WithdrawalId];
    ORDER_STATUS: (ClientMsg::OrderStatus { request_id, user, client_order_id })
        [request_id: u64, user: UserId, [pad 4], client_order_id: ClientOrderId];
    ORDER_STATUS_BY_ID: (ClientMsg::OrderStatusById { request_id, user, order_id })
        [request_id: u64, user: UserId, [pad 4], order_id: OrderId];
    OPEN_ORDERS: (ClientMsg::OpenOrders { request_id, user })
        [request_id: u64, user: UserId, [pad 4]];
    BALANCES: (ClientMsg::Balances { request_id, user }) [request_id: u64, user: UserId, [pad 4]];
    BOOK_SNAPSHOT: (ClientMsg::BookSnapshot { request_id, symbol, depth })
        [request_id: u64, symbol: SymbolId, depth: u16, [pad 4]];
    STATS: (ClientMsg::Stats { request_id }) [request_id: u64];
    REFERENCE_DATA: (ClientMsg::ReferenceData { request_id, first })
        [request_id: u64, first: u32, [pad 4]];
}

impl From<Command> for ClientMsg {
    fn from(c: Command) -> ClientMsg {
        ClientMsg::Command(c)
    }
}
