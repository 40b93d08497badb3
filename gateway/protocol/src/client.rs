//! Client → server messages: what each is, its type number and its fixed body layout
//! (docs/protocol.md, "Client messages").

use ringbook_engine::codec::{order_type_from_u8, side_from_u8, stp_from_u8, tif_from_u8};
use ringbook_engine::{
    ClientOrderId, Command, CurrencyId, NewOrder, OperatorId, OrderId, Price, Qty, Query,
    RejectCode, SymbolId, UserId, WithdrawalId,
};

use super::wire::{Rd, Wr};
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

/// The largest client body.
pub const BODY_BYTES_MAX: usize = LOGIN_BODY_BYTES;
const LOGIN_BODY_BYTES: usize = 84;

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
        use msg_type::*;
        match self {
            ClientMsg::Login(_) => LOGIN,
            ClientMsg::Logout => LOGOUT,
            ClientMsg::Heartbeat => HEARTBEAT,
            ClientMsg::Command(c) => match c {
                Command::NewOrder(_) => NEW_ORDER,
                Command::Cancel { .. } => CANCEL,
                Command::Amend { .. } => AMEND,
                Command::MassCancel { .. } => MASS_CANCEL,
                Command::CancelOrder { .. } => CANCEL_ORDER,
                Command::AmendOrder { .. } => AMEND_ORDER,
                Command::Deposit { .. } => DEPOSIT,
                Command::Withdraw { .. } => WITHDRAW,
                Command::ApproveWithdrawal { .. } => APPROVE_WITHDRAWAL,
                Command::RejectWithdrawal { .. } => REJECT_WITHDRAWAL,
                Command::Query(q) => ClientMsg::query(0, *q).msg_type(),
                // Time alone is the sequencer's to send, not a client's: a client's tick goes
                // out as the message that carries nothing but the client's presence.
                Command::Tick => HEARTBEAT,
            },
            ClientMsg::OrderStatus { .. } => ORDER_STATUS,
            ClientMsg::OpenOrders { .. } => OPEN_ORDERS,
            ClientMsg::Balances { .. } => BALANCES,
            ClientMsg::BookSnapshot { .. } => BOOK_SNAPSHOT,
            ClientMsg::Stats { .. } => STATS,
        }
    }

    /// Encodes the whole frame into `buf`; returns its length. Never allocates.
    pub fn encode(&self, buf: &mut [u8; FRAME_BYTES_MAX]) -> usize {
        let mut w = Wr::new(&mut buf[..], HEADER_BYTES);
        match *self {
            ClientMsg::Login(l) => {
                w.name(&l.login)
                    .name(&l.password)
                    .u32(l.session_id)
                    .u64(l.last_seen_seq)
                    .u32(l.heartbeat_ms)
                    .u8(l.cancel_on_disconnect as u8)
                    .u8(0)
                    .u16(0);
            }
            ClientMsg::Logout | ClientMsg::Heartbeat | ClientMsg::Command(Command::Tick) => {}
            ClientMsg::Command(Command::Query(q)) => return ClientMsg::query(0, q).encode(buf),
            ClientMsg::Command(c) => match c {
                Command::NewOrder(o) => {
                    w.u32(o.user.0)
                        .u16(o.symbol.0)
                        .u8(o.side as u8)
                        .u8(o.order_type as u8)
                        .u8(o.tif as u8)
                        .u8(o.stp as u8)
                        .u8(o.post_only as u8)
                        .u8(0)
                        .u64(o.client_order_id.0)
                        .i64(o.price.0)
                        .u64(o.qty.0)
                        .i64(o.stop_price.0)
                        .u64(o.display_qty.0)
                        .u64(o.budget)
                        .u64(o.expire_at);
                }
                Command::Cancel {
                    user,
                    symbol,
                    client_order_id,
                } => {
                    w.u32(user.0).u16(symbol.0).u16(0).u64(client_order_id.0);
                }
                Command::Amend {
                    user,
                    symbol,
                    client_order_id,
                    price,
                    qty,
                } => {
                    w.u32(user.0)
                        .u16(symbol.0)
                        .u16(0)
                        .u64(client_order_id.0)
                        .i64(price.0)
                        .u64(qty.0);
                }
                Command::CancelOrder {
                    user,
                    symbol,
                    order_id,
                } => {
                    w.u32(user.0).u16(symbol.0).u16(0).u64(order_id.0);
                }
                Command::AmendOrder {
                    user,
                    symbol,
                    order_id,
                    price,
                    qty,
                } => {
                    w.u32(user.0)
                        .u16(symbol.0)
                        .u16(0)
                        .u64(order_id.0)
                        .i64(price.0)
                        .u64(qty.0);
                }
                // `on_disconnect` is the gateway's own: a client cannot send it.
                Command::MassCancel { user, symbol, .. } => {
                    w.u32(user.0)
                        .u8(symbol.is_some() as u8)
                        .u8(0)
                        .u16(symbol.map_or(0, |s| s.0));
                }
                Command::Deposit {
                    user,
                    currency,
                    amount,
                }
                | Command::Withdraw {
                    user,
                    currency,
                    amount,
                } => {
                    w.u32(user.0).u16(currency.0).u16(0).u64(amount);
                }
                Command::ApproveWithdrawal {
                    operator,
                    withdrawal_id,
                }
                | Command::RejectWithdrawal {
                    operator,
                    withdrawal_id,
                } => {
                    w.u32(operator.0).u32(0).u64(withdrawal_id.0);
                }
                Command::Query(_) | Command::Tick => {
                    unreachable!("encoded as a query or heartbeat message above")
                }
            },
            ClientMsg::OrderStatus {
                request_id,
                user,
                client_order_id,
            } => {
                w.u64(request_id).u32(user.0).u32(0).u64(client_order_id.0);
            }
            ClientMsg::OpenOrders { request_id, user }
            | ClientMsg::Balances { request_id, user } => {
                w.u64(request_id).u32(user.0).u32(0);
            }
            ClientMsg::BookSnapshot {
                request_id,
                symbol,
                depth,
            } => {
                w.u64(request_id).u16(symbol.0).u16(depth).u32(0);
            }
            ClientMsg::Stats { request_id } => {
                w.u64(request_id);
            }
        }
        let len = w.pos();
        put_header(buf, self.msg_type(), len - HEADER_BYTES);
        len
    }

    /// Decodes one body of type `msg_type` and schema `version`. Checks shape (length, enum
    /// values, flags, zero padding), not meaning (the engine checks symbols, prices, funds).
    /// Never allocates, never panics.
    pub fn decode(msg_type: u16, version: u16, body: &[u8]) -> Result<ClientMsg, RejectCode> {
        use msg_type::*;
        if version != PROTOCOL_VERSION {
            return Err(RejectCode::UnsupportedVersion);
        }
        let expected = match msg_type {
            LOGIN => LOGIN_BODY_BYTES,
            LOGOUT | HEARTBEAT => 0,
            NEW_ORDER => 68,
            CANCEL | CANCEL_ORDER => 16,
            AMEND | AMEND_ORDER => 32,
            MASS_CANCEL => 8,
            ORDER_STATUS => 24,
            OPEN_ORDERS | BALANCES => 16,
            BOOK_SNAPSHOT => 16,
            DEPOSIT | WITHDRAW => 16,
            APPROVE_WITHDRAWAL | REJECT_WITHDRAWAL => 16,
            STATS => 8,
            _ => return Err(RejectCode::UnknownMessageType),
        };
        if body.len() != expected {
            return Err(RejectCode::MalformedFrame);
        }
        let mut r = Rd::new(body);
        let bad = RejectCode::InvalidField;
        let msg = match msg_type {
            LOGIN => {
                let login = r.name();
                let password = r.name();
                let session_id = r.u32();
                let last_seen_seq = r.u64();
                let heartbeat_ms = r.u32();
                let flags = r.u8();
                if flags > 1 || r.u8() != 0 || r.u16() != 0 {
                    return Err(bad);
                }
                ClientMsg::Login(Login {
                    login,
                    password,
                    session_id,
                    last_seen_seq,
                    heartbeat_ms,
                    cancel_on_disconnect: flags == 1,
                })
            }
            LOGOUT => ClientMsg::Logout,
            HEARTBEAT => ClientMsg::Heartbeat,
            NEW_ORDER => {
                let user = UserId(r.u32());
                let symbol = SymbolId(r.u16());
                let side = side_from_u8(r.u8()).ok_or(bad)?;
                let order_type = order_type_from_u8(r.u8()).ok_or(bad)?;
                let tif = tif_from_u8(r.u8()).ok_or(bad)?;
                let stp = stp_from_u8(r.u8()).ok_or(bad)?;
                let flags = r.u8();
                if flags > 1 || r.u8() != 0 {
                    return Err(bad);
                }
                ClientMsg::Command(Command::NewOrder(NewOrder {
                    user,
                    symbol,
                    side,
                    order_type,
                    tif,
                    stp,
                    post_only: flags == 1,
                    client_order_id: ClientOrderId(r.u64()),
                    price: Price(r.i64()),
                    qty: Qty(r.u64()),
                    stop_price: Price(r.i64()),
                    display_qty: Qty(r.u64()),
                    budget: r.u64(),
                    expire_at: r.u64(),
                }))
            }
            CANCEL_ORDER | AMEND_ORDER => {
                let user = UserId(r.u32());
                let symbol = SymbolId(r.u16());
                if r.u16() != 0 {
                    return Err(bad);
                }
                let order_id = OrderId(r.u64());
                if msg_type == CANCEL_ORDER {
                    ClientMsg::Command(Command::CancelOrder {
                        user,
                        symbol,
                        order_id,
                    })
                } else {
                    ClientMsg::Command(Command::AmendOrder {
                        user,
                        symbol,
                        order_id,
                        price: Price(r.i64()),
                        qty: Qty(r.u64()),
                    })
                }
            }
            CANCEL | AMEND => {
                let user = UserId(r.u32());
                let symbol = SymbolId(r.u16());
                if r.u16() != 0 {
                    return Err(bad);
                }
                let client_order_id = ClientOrderId(r.u64());
                if msg_type == CANCEL {
                    ClientMsg::Command(Command::Cancel {
                        user,
                        symbol,
                        client_order_id,
                    })
                } else {
                    ClientMsg::Command(Command::Amend {
                        user,
                        symbol,
                        client_order_id,
                        price: Price(r.i64()),
                        qty: Qty(r.u64()),
                    })
                }
            }
            MASS_CANCEL => {
                let user = UserId(r.u32());
                let flags = r.u8();
                let pad = r.u8();
                let symbol = r.u16();
                if flags > 1 || pad != 0 || (flags == 0 && symbol != 0) {
                    return Err(bad);
                }
                ClientMsg::Command(Command::MassCancel {
                    user,
                    symbol: (flags == 1).then_some(SymbolId(symbol)),
                    on_disconnect: false,
                })
            }
            ORDER_STATUS => {
                let request_id = r.u64();
                let user = UserId(r.u32());
                if r.u32() != 0 {
                    return Err(bad);
                }
                ClientMsg::OrderStatus {
                    request_id,
                    user,
                    client_order_id: ClientOrderId(r.u64()),
                }
            }
            OPEN_ORDERS | BALANCES => {
                let request_id = r.u64();
                let user = UserId(r.u32());
                if r.u32() != 0 {
                    return Err(bad);
                }
                if msg_type == OPEN_ORDERS {
                    ClientMsg::OpenOrders { request_id, user }
                } else {
                    ClientMsg::Balances { request_id, user }
                }
            }
            BOOK_SNAPSHOT => {
                let request_id = r.u64();
                let symbol = SymbolId(r.u16());
                let depth = r.u16();
                if r.u32() != 0 || depth == 0 || depth > BOOK_DEPTH_MAX {
                    return Err(bad);
                }
                ClientMsg::BookSnapshot {
                    request_id,
                    symbol,
                    depth,
                }
            }
            STATS => ClientMsg::Stats {
                request_id: r.u64(),
            },
            DEPOSIT | WITHDRAW => {
                let user = UserId(r.u32());
                let currency = CurrencyId(r.u16());
                if r.u16() != 0 {
                    return Err(bad);
                }
                let amount = r.u64();
                ClientMsg::Command(if msg_type == DEPOSIT {
                    Command::Deposit {
                        user,
                        currency,
                        amount,
                    }
                } else {
                    Command::Withdraw {
                        user,
                        currency,
                        amount,
                    }
                })
            }
            _ => {
                // APPROVE_WITHDRAWAL | REJECT_WITHDRAWAL (the length table admitted no other).
                let operator = OperatorId(r.u32());
                if r.u32() != 0 {
                    return Err(bad);
                }
                let withdrawal_id = WithdrawalId(r.u64());
                ClientMsg::Command(if msg_type == APPROVE_WITHDRAWAL {
                    Command::ApproveWithdrawal {
                        operator,
                        withdrawal_id,
                    }
                } else {
                    Command::RejectWithdrawal {
                        operator,
                        withdrawal_id,
                    }
                })
            }
        };
        if !r.exact() {
            return Err(RejectCode::MalformedFrame);
        }
        Ok(msg)
    }
}

impl From<Command> for ClientMsg {
    fn from(c: Command) -> ClientMsg {
        ClientMsg::Command(c)
    }
}
