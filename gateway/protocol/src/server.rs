//! Server → client messages. Every body starts with the session sequence number `seq`:
//! 1, 2, 3, … per session for sequenced messages (kept for retransmission), 0 for the
//! unsequenced session-control ones (login replies, heartbeats, disconnect).

use ringbook_engine::book::OrderView;
use ringbook_engine::{
    CancelReason, FinishedOrder, Liquidity, OrderStatus, OrderType, RejectCode, Side, StpMode,
    TimeInForce,
};

use super::{name32, put_header, Name32, FRAME_BYTES_MAX, HEADER_BYTES, PROTOCOL_VERSION};
use ringbook_engine::le::{Field, FieldError, LeReader, LeWriter};
use ringbook_engine::{le_get, le_put, le_size};

/// Message type numbers (server → client).
pub mod msg_type {
    /// Login accepted (unsequenced).
    pub const LOGIN_ACCEPTED: u16 = 101;
    /// Login rejected, then the connection closes (unsequenced).
    pub const LOGIN_REJECTED: u16 = 102;
    /// Heartbeat (unsequenced).
    pub const HEARTBEAT: u16 = 103;
    /// Why the server is closing the connection (unsequenced).
    pub const DISCONNECT: u16 = 104;
    /// Order accepted (FIX ExecType=New).
    pub const ACCEPTED: u16 = 110;
    /// Any command or query refused, by the gateway (1xxx) or the engine (2xxx, 3xxx).
    pub const REJECTED: u16 = 111;
    /// One side of a trade, as seen by that side's owner.
    pub const FILL: u16 = 112;
    /// Cancelled (whole or partial).
    pub const CANCELLED: u16 = 113;
    /// Amended (FIX Replaced).
    pub const AMENDED: u16 = 114;
    /// Stop triggered.
    pub const TRIGGERED: u16 = 115;
    /// End of a mass cancel.
    pub const MASS_CANCELLED: u16 = 116;
    /// A balance after a deposit or withdrawal step.
    pub const BALANCE_UPDATE: u16 = 120;
    /// Funds credited.
    pub const DEPOSITED: u16 = 121;
    /// Withdrawal requested (amount locked).
    pub const WITHDRAWAL_REQUESTED: u16 = 122;
    /// A withdrawal approval.
    pub const WITHDRAWAL_APPROVED: u16 = 123;
    /// Withdrawal completed (second approval).
    pub const WITHDRAWAL_COMPLETED: u16 = 124;
    /// Withdrawal rejected by an operator.
    pub const WITHDRAWAL_REJECTED: u16 = 125;
    /// An operator command refused by the engine.
    pub const OPERATOR_REJECTED: u16 = 126;
    /// Reply to an order status query.
    pub const ORDER_STATUS: u16 = 130;
    /// One live order, in reply to an open-orders query.
    pub const OPEN_ORDER: u16 = 131;
    /// End of an open-orders reply.
    pub const OPEN_ORDERS_END: u16 = 132;
    /// One balance, in reply to a balances query.
    pub const BALANCE: u16 = 133;
    /// End of a balances reply.
    pub const BALANCES_END: u16 = 134;
    /// Up to [`super::BOOK_LEVELS_PER_MSG`] levels of one side of a book snapshot.
    pub const BOOK_LEVELS: u16 = 135;
    /// End of a book snapshot.
    pub const BOOK_END: u16 = 136;
    /// One currency, in reply to a reference-data request.
    pub const CURRENCY_INFO: u16 = 137;
    /// One symbol, in reply to a reference-data request.
    pub const SYMBOL_INFO: u16 = 138;
    /// End of one page of reference data.
    pub const REFERENCE_END: u16 = 139;
    /// The gateway's counters, in reply to a `Stats` request (operator sessions).
    pub const STATS: u16 = 140;
}

macro_rules! gateway_stats {
    ($($(#[$doc:meta])* $field:ident,)*) => {
        /// The gateway's counters and gauges at one moment (the `Stats` message; the server's
        /// `Stats::snapshot`). On the wire: each field a `u64`, in this order.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct GatewayStats {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl GatewayStats {
            /// The fields in wire order.
            pub fn to_array(&self) -> [u64; GATEWAY_STATS_FIELDS] {
                [$(self.$field,)*]
            }

            /// From the fields in wire order.
            pub fn from_array(a: [u64; GATEWAY_STATS_FIELDS]) -> GatewayStats {
                let mut it = a.into_iter();
                GatewayStats { $($field: it.next().unwrap_or(0),)* }
            }

            /// `(name, value)` of every field, in wire order.
            pub fn named(&self) -> [(&'static str, u64); GATEWAY_STATS_FIELDS] {
                [$((stringify!($field), self.$field),)*]
            }
        }
    };
}

gateway_stats! {
    /// Connections accepted.
    connections,
    /// Connections refused at accept (their address's pre-login cap).
    connections_refused,
    /// Not-yet-logged-in connections closed for a newer one (pre-login budget full).
    prelogin_displaced,
    /// Failed `accept` calls.
    accept_errors,
    /// Successful logins.
    logins,
    /// Failed logins (bad credentials).
    login_failures,
    /// Logins refused in back-off.
    logins_throttled,
    /// Logins refused with `SERVER_FULL`.
    server_full,
    /// Detached sessions forgotten for a new session of the same account.
    sessions_displaced,
    /// Frames received.
    frames_in,
    /// Frames sent.
    msgs_out,
    /// Commands submitted to the engine.
    commands,
    /// Reading paused on a full engine.
    backpressure,
    /// Messages rejected by the gateway.
    gateway_rejects,
    /// Disconnects for protocol violations.
    protocol_disconnects,
    /// Disconnects of slow readers.
    slow_consumers,
    /// Reading paused on a session's outbound backlog.
    outbound_pauses,
    /// Disconnects for heartbeat or login timeout.
    timeouts,
    /// Cancel-on-disconnect mass cancels issued.
    cancel_on_disconnect,
    /// Gauge: connections not logged in.
    conns_prelogin,
    /// Gauge: logged-in connections.
    conns_logged_in,
    /// Gauge: sessions held.
    sessions_in_use,
}

/// Fields of a [`GatewayStats`].
pub const GATEWAY_STATS_FIELDS: usize = 22;

/// Levels carried by one `BookLevels` message.
pub const BOOK_LEVELS_PER_MSG: usize = 8;

/// A live order as queries report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderInfo {
    /// Owner.
    pub user: u32,
    /// Symbol.
    pub symbol: u16,
    /// Side (byte 0 buy, 1 sell).
    pub side: Side,
    /// Order type (byte 0 limit, 1 market, 2 stop-limit, 3 stop-market).
    pub order_type: OrderType,
    /// Time in force (byte 0 GTC, 1 IOC, 2 FOK, 3 GTD, 4 DAY).
    pub tif: TimeInForce,
    /// Bit 0: post-only.
    pub flags: u8,
    /// Self-trade prevention mode.
    pub stp: StpMode,
    /// Order status: 0 NEW, 1 PARTIALLY_FILLED, 2 FILLED, 3 CANCELLED, 4 REJECTED, 5 EXPIRED
    /// (the finished ones only in an OrderStatus reply).
    pub status: u8,
    /// Client order id.
    pub client_order_id: u64,
    /// Engine order id.
    pub order_id: u64,
    /// Limit or protection price.
    pub price: i64,
    /// Stop price (0 if none).
    pub stop_price: i64,
    /// Open quantity.
    pub leaves_qty: u64,
    /// Shown quantity.
    pub visible_qty: u64,
    /// Filled so far.
    pub filled_qty: u64,
    /// Iceberg display quantity (0 if none).
    pub display_qty: u64,
    /// GTD and DAY: the expiry time, Unix ns (0 for any other time in force, and for a finished
    /// order).
    pub expire_at: u64,
}

/// The size of an [`OrderInfo`] on the wire.
pub const ORDER_INFO_BYTES: usize = 4 + 2 + 6 + 8 * 9;

/// The wire byte of an order status (`OrderInfo::status`): the engine's status number less one.
pub fn status_byte(s: OrderStatus) -> u8 {
    s.code() - 1
}

impl OrderInfo {
    /// From the engine's view of a live order.
    pub fn from_view(o: &OrderView) -> OrderInfo {
        OrderInfo {
            user: o.user.0,
            symbol: o.symbol.0,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            flags: o.post_only as u8,
            stp: o.stp,
            status: u8::from(o.filled_qty.0 > 0),
            client_order_id: o.client_order_id.0,
            order_id: o.order_id.0,
            price: o.price.0,
            stop_price: o.stop_price.0,
            leaves_qty: o.leaves_qty.0,
            visible_qty: o.visible_qty.0,
            filled_qty: o.filled_qty.0,
            display_qty: o.display_qty.0,
            expire_at: o.expire_at,
        }
    }

    /// From a finished order of `user` (its time in force, flags, STP mode and stop price are
    /// not kept: 0; nothing open or shown).
    pub fn from_finished(user: u32, f: &FinishedOrder) -> OrderInfo {
        OrderInfo {
            user,
            symbol: f.symbol.0,
            side: f.side,
            order_type: f.order_type,
            status: status_byte(f.status),
            client_order_id: f.client_order_id.0,
            order_id: f.order_id.0,
            price: f.price.0,
            filled_qty: f.filled_qty.0,
            ..OrderInfo::default()
        }
    }
}

/// An [`OrderInfo`] on the wire: its fields in this order ([`ORDER_INFO_BYTES`]).
macro_rules! order_info_layout {
    ($($f:ident: $t:ty),* $(,)?) => {
        const _: () = assert!(le_size!($($f: $t),*) == ORDER_INFO_BYTES);

        impl Field for OrderInfo {
            const BYTES: usize = ORDER_INFO_BYTES;
            fn put(self, w: &mut LeWriter<'_>) {
                let OrderInfo { $($f),* } = self;
                le_put!(w; $($f: $t),*);
            }
            fn get(r: &mut LeReader<'_>, _: &'static str) -> Result<Self, FieldError> {
                le_get!(r; $($f: $t),*);
                Ok(OrderInfo { $($f),* })
            }
        }
    };
}

order_info_layout!(user: u32, symbol: u16, side: Side, order_type: OrderType, tif: TimeInForce,
    flags: u8, stp: StpMode,
    status: u8, client_order_id: u64, order_id: u64, price: i64, stop_price: i64,
    leaves_qty: u64, visible_qty: u64, filled_qty: u64, display_qty: u64, expire_at: u64);

/// The gateway's counters on the wire: each a `u64`, in field order.
impl Field for GatewayStats {
    const BYTES: usize = GATEWAY_STATS_FIELDS * 8;
    fn put(self, w: &mut LeWriter<'_>) {
        w.put(self.to_array());
    }
    fn get(r: &mut LeReader<'_>, field: &'static str) -> Result<Self, FieldError> {
        r.get(field).map(GatewayStats::from_array)
    }
}

/// Who a login acts as (`LoginAccepted`; the server's authorization uses the same type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Trades for this user id.
    User(u32),
    /// Acts as this operator id.
    Operator(u32),
    /// Market data only: subscriptions and book snapshots, no commands, no private data.
    MarketData,
}

/// A [`Role`] on the wire, 8 bytes: the kind (`u8`: 0 user, 1 operator, 2 market data), 3
/// padding bytes (written as zero, not checked), the user or operator id (`u32`, 0 for market
/// data). An unknown kind is [`FieldError::BadEnum`].
impl Field for Role {
    const BYTES: usize = 8;
    fn put(self, w: &mut LeWriter<'_>) {
        let (kind, id) = match self {
            Role::User(u) => (0u8, u),
            Role::Operator(o) => (1, o),
            Role::MarketData => (2, 0),
        };
        le_put!(w; kind: u8, [skip 3], id: u32);
    }
    fn get(r: &mut LeReader<'_>, field: &'static str) -> Result<Self, FieldError> {
        le_get!(r; kind: u8, [skip 3], id: u32);
        match kind {
            0 => Ok(Role::User(id)),
            1 => Ok(Role::Operator(id)),
            2 => Ok(Role::MarketData),
            value => Err(FieldError::BadEnum { field, value }),
        }
    }
}

/// Everything the server sends. Field meanings follow the engine's `Event` of the same name;
/// ids are raw integers. `name` fields are the code's stable name, NUL-padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ServerMsg {
    /// `role` who the session acts as; `last_seq` the highest sequence number the session has
    /// sent so far (retransmitted messages, if any, follow this one).
    LoginAccepted {
        session_id: u32,
        role: Role,
        heartbeat_ms: u32,
        last_seq: u64,
    },
    LoginRejected {
        code: u16,
        name: Name32,
    },
    Heartbeat,
    /// `code` 0: a normal logout; otherwise the reject code that ended the session.
    Disconnect {
        code: u16,
        name: Name32,
    },
    Accepted {
        seq: u64,
        user: u32,
        symbol: u16,
        side: Side,
        order_type: OrderType,
        client_order_id: u64,
        order_id: u64,
        price: i64,
        qty: u64,
    },
    /// `ref_msg_type`: the client message type refused (0 if unknown).
    Rejected {
        seq: u64,
        user: u32,
        ref_msg_type: u16,
        code: u16,
        client_order_id: u64,
        name: Name32,
    },
    /// `role` maker or taker (byte 0, 1); `side` the order's own side (so the taker's side is
    /// `side` when `role` is taker, the other side when it is maker). `trade_id` is per symbol, dense from 1;
    /// `ts` the engine time of the trade (Unix nanoseconds); `contra_order_id` the engine order
    /// id of the other side's order (the maker's for the taker, the taker's for the maker).
    Fill {
        seq: u64,
        user: u32,
        symbol: u16,
        side: Side,
        role: Liquidity,
        client_order_id: u64,
        order_id: u64,
        price: i64,
        qty: u64,
        leaves_qty: u64,
        cum_qty: u64,
        fee: u64,
        trade_id: u64,
        ts: u64,
        contra_order_id: u64,
    },
    /// `reason`: the engine's `CancelReason` (its number on the wire).
    Cancelled {
        seq: u64,
        user: u32,
        symbol: u16,
        side: Side,
        reason: CancelReason,
        client_order_id: u64,
        order_id: u64,
        price: i64,
        qty: u64,
        leaves_qty: u64,
    },
    Amended {
        seq: u64,
        user: u32,
        symbol: u16,
        client_order_id: u64,
        order_id: u64,
        price: i64,
        qty: u64,
    },
    Triggered {
        seq: u64,
        user: u32,
        symbol: u16,
        client_order_id: u64,
        order_id: u64,
    },
    /// `symbol` 0xFFFF: all symbols.
    MassCancelled {
        seq: u64,
        user: u32,
        symbol: u16,
        count: u32,
    },
    BalanceUpdate {
        seq: u64,
        user: u32,
        currency: u16,
        available: u64,
        locked: u64,
    },
    Deposited {
        seq: u64,
        user: u32,
        currency: u16,
        amount: u64,
    },
    WithdrawalRequested {
        seq: u64,
        withdrawal_id: u64,
        user: u32,
        currency: u16,
        amount: u64,
    },
    WithdrawalApproved {
        seq: u64,
        withdrawal_id: u64,
        operator: u32,
        user: u32,
        approvals: u8,
    },
    WithdrawalCompleted {
        seq: u64,
        withdrawal_id: u64,
        user: u32,
        currency: u16,
        amount: u64,
    },
    WithdrawalRejected {
        seq: u64,
        withdrawal_id: u64,
        operator: u32,
        user: u32,
    },
    OperatorRejected {
        seq: u64,
        withdrawal_id: u64,
        operator: u32,
        code: u16,
        name: Name32,
    },
    /// `found` false (byte 0): the engine knows no order of the user with this client order id (never
    /// placed, or finished longer ago than the user's window of finished orders); everything
    /// else is then zero. Otherwise `order.status` is the order's status (live or finished),
    /// `detail` the cancel reason (CANCELLED) or reject code (REJECTED), `filled_notional`
    /// what it filled in quote minimal units, `finished_ts` the engine time it finished (0
    /// while live).
    OrderStatus {
        seq: u64,
        request_id: u64,
        found: bool,
        detail: u16,
        order: OrderInfo,
        filled_notional: u64,
        finished_ts: u64,
    },
    OpenOrder {
        seq: u64,
        request_id: u64,
        order: OrderInfo,
    },
    OpenOrdersEnd {
        seq: u64,
        request_id: u64,
        count: u32,
    },
    Balance {
        seq: u64,
        request_id: u64,
        currency: u16,
        available: u64,
        locked: u64,
    },
    BalancesEnd {
        seq: u64,
        request_id: u64,
        count: u32,
    },
    /// `side` 0 bids, 1 asks; `count` ≤ 8 levels `(price, qty)` best first, the rest zero.
    BookLevels {
        seq: u64,
        request_id: u64,
        symbol: u16,
        side: Side,
        count: u8,
        levels: [(i64, u64); BOOK_LEVELS_PER_MSG],
    },
    BookEnd {
        seq: u64,
        request_id: u64,
        symbol: u16,
        bid_levels: u32,
        ask_levels: u32,
    },
    /// The gateway's counters (sequenced; `request_id` echoed).
    Stats {
        seq: u64,
        request_id: u64,
        stats: GatewayStats,
    },
    /// A currency of the server's configuration: its id, code and `scale` (decimal digits of
    /// its minimal unit).
    CurrencyInfo {
        seq: u64,
        request_id: u64,
        currency: u16,
        scale: u8,
        code: Name32,
    },
    /// A symbol of the server's configuration, every field of its `[[symbols]]` entry: `base`
    /// and `quote` are currency ids; `lot_size` base minimal units per lot, `tick_size` quote
    /// minimal units per tick per lot, the price band in ticks, the largest order in lots.
    SymbolInfo {
        seq: u64,
        request_id: u64,
        symbol: u16,
        base: u16,
        quote: u16,
        lot_size: u64,
        tick_size: u64,
        price_min: i64,
        price_max: i64,
        max_order_qty: u64,
        maker_fee_bps: u32,
        taker_fee_bps: u32,
        name: Name32,
    },
    /// The end of one page of reference data: how many currencies and symbols the server has
    /// in all, and the index to ask for next (`currencies + symbols`: that was the last page).
    ReferenceEnd {
        seq: u64,
        request_id: u64,
        currencies: u32,
        symbols: u32,
        next: u32,
    },
}

/// The largest server body (`Stats`; `BookLevels` is 152 bytes).
pub const BODY_BYTES_MAX: usize = 8 + 8 + GATEWAY_STATS_FIELDS * 8;
const _: () = assert!(BODY_BYTES_MAX >= 8 + 8 + 2 + 1 + 1 + 4 + BOOK_LEVELS_PER_MSG * 16);

impl ServerMsg {
    /// A `Rejected` for `code`.
    pub fn rejected(
        seq: u64,
        user: u32,
        ref_msg_type: u16,
        code: RejectCode,
        client_order_id: u64,
    ) -> ServerMsg {
        ServerMsg::Rejected {
            seq,
            user,
            ref_msg_type,
            code: code.code(),
            client_order_id,
            name: name32(code.name()),
        }
    }

    /// A `Disconnect` for `code` (`None`: a normal logout).
    pub fn disconnect(code: Option<RejectCode>) -> ServerMsg {
        match code {
            Some(c) => ServerMsg::Disconnect {
                code: c.code(),
                name: name32(c.name()),
            },
            None => ServerMsg::Disconnect {
                code: 0,
                name: name32("LOGOUT"),
            },
        }
    }

    /// The message type number.
    pub fn msg_type(&self) -> u16 {
        self.table_msg_type()
    }

    /// The session sequence number (0 for unsequenced messages).
    pub fn seq(&self) -> u64 {
        let mut msg = *self;
        msg.seq_slot().map_or(0, |seq| *seq)
    }

    /// The same message with sequence number `seq` (unsequenced messages are unchanged).
    pub fn with_seq(mut self, new: u64) -> ServerMsg {
        if let Some(seq) = self.seq_slot() {
            *seq = new;
        }
        self
    }

    /// The sequence number field, or `None` for the unsequenced session messages. The one
    /// place that lists which messages are sequenced.
    fn seq_slot(&mut self) -> Option<&mut u64> {
        match self {
            ServerMsg::LoginAccepted { .. }
            | ServerMsg::LoginRejected { .. }
            | ServerMsg::Heartbeat
            | ServerMsg::Disconnect { .. } => None,
            ServerMsg::Accepted { seq, .. }
            | ServerMsg::Rejected { seq, .. }
            | ServerMsg::Fill { seq, .. }
            | ServerMsg::Cancelled { seq, .. }
            | ServerMsg::Amended { seq, .. }
            | ServerMsg::Triggered { seq, .. }
            | ServerMsg::MassCancelled { seq, .. }
            | ServerMsg::BalanceUpdate { seq, .. }
            | ServerMsg::Deposited { seq, .. }
            | ServerMsg::WithdrawalRequested { seq, .. }
            | ServerMsg::WithdrawalApproved { seq, .. }
            | ServerMsg::WithdrawalCompleted { seq, .. }
            | ServerMsg::WithdrawalRejected { seq, .. }
            | ServerMsg::OperatorRejected { seq, .. }
            | ServerMsg::OrderStatus { seq, .. }
            | ServerMsg::OpenOrder { seq, .. }
            | ServerMsg::OpenOrdersEnd { seq, .. }
            | ServerMsg::Balance { seq, .. }
            | ServerMsg::BalancesEnd { seq, .. }
            | ServerMsg::BookLevels { seq, .. }
            | ServerMsg::BookEnd { seq, .. }
            | ServerMsg::Stats { seq, .. }
            | ServerMsg::CurrencyInfo { seq, .. }
            | ServerMsg::SymbolInfo { seq, .. }
            | ServerMsg::ReferenceEnd { seq, .. } => Some(seq),
        }
    }

    /// Encodes the whole frame into `buf`; returns its length. Never allocates.
    pub fn encode(&self, buf: &mut [u8; FRAME_BYTES_MAX]) -> usize {
        let mut w = LeWriter::new(&mut buf[..], HEADER_BYTES);
        self.put_table(&mut w);
        let len = w.at();
        put_header(buf, self.msg_type(), len - HEADER_BYTES);
        len
    }

    /// Decodes one body (the client side). Checks lengths, versions and types; never
    /// allocates, never panics.
    pub fn decode(msg_type: u16, version: u16, body: &[u8]) -> Result<ServerMsg, RejectCode> {
        if version != PROTOCOL_VERSION {
            return Err(RejectCode::UnsupportedVersion);
        }
        let mut r = LeReader::new(body);
        let msg = get_table(msg_type, &mut r)?;
        if let ServerMsg::BookLevels { count, .. } = msg {
            if usize::from(count) > BOOK_LEVELS_PER_MSG {
                return Err(RejectCode::InvalidField);
            }
        }
        if !r.exact() {
            return Err(RejectCode::MalformedFrame);
        }
        Ok(msg)
    }
}

// The wire layout of every server message (see `layout.rs`). Every body starts with the
// sequence number; the unsequenced messages send it as zero (`[skip 8]`). Padding is written as
// zero and not checked on reading (`[skip N]`): the client's reader is lenient.
wire_layouts! {
    ServerMsg;
    LOGIN_ACCEPTED: (ServerMsg::LoginAccepted { session_id, role, heartbeat_ms, last_seq })
        [[skip 8], session_id: u32, role: Role, heartbeat_ms: u32, last_seq: u64];
    LOGIN_REJECTED: (ServerMsg::LoginRejected { code, name }) [[skip 8], code: u16, name: Name32];
    HEARTBEAT: (ServerMsg::Heartbeat) [[skip 8]];
    DISCONNECT: (ServerMsg::Disconnect { code, name }) [[skip 8], code: u16, name: Name32];
    ACCEPTED: (ServerMsg::Accepted { seq, user, symbol, side, order_type, client_order_id,
        order_id, price, qty })
        [seq: u64, user: u32, symbol: u16, side: Side, order_type: OrderType, client_order_id: u64,
        order_id: u64, price: i64, qty: u64];
    REJECTED: (ServerMsg::Rejected { seq, user, ref_msg_type, code, client_order_id, name })
        [seq: u64, user: u32, ref_msg_type: u16, code: u16, client_order_id: u64,
        name: Name32];
    FILL: (ServerMsg::Fill { seq, user, symbol, side, role, client_order_id, order_id, price,
        qty, leaves_qty, cum_qty, fee, trade_id, ts, contra_order_id })
        [seq: u64, user: u32, symbol: u16, side: Side, role: Liquidity, client_order_id: u64,
        order_id: u64, price: i64, qty: u64, leaves_qty: u64, cum_qty: u64, fee: u64,
        trade_id: u64, ts: u64, contra_order_id: u64];
    CANCELLED: (ServerMsg::Cancelled { seq, user, symbol, side, reason, client_order_id,
        order_id, price, qty, leaves_qty })
        [seq: u64, user: u32, symbol: u16, side: Side, reason: CancelReason, client_order_id: u64,
        order_id: u64, price: i64, qty: u64, leaves_qty: u64];
    AMENDED: (ServerMsg::Amended { seq, user, symbol, client_order_id, order_id, price, qty })
        [seq: u64, user: u32, symbol: u16, [skip 2], client_order_id: u64, order_id: u64,
        price: i64, qty: u64];
    TRIGGERED: (ServerMsg::Triggered { seq, user, symbol, client_order_id, order_id })
        [seq: u64, user: u32, symbol: u16, [skip 2], client_order_id: u64, order_id: u64];
    MASS_CANCELLED: (ServerMsg::MassCancelled { seq, user, symbol, count })
        [seq: u64, user: u32, symbol: u16, [skip 2], count: u32];
    BALANCE_UPDATE: (ServerMsg::BalanceUpdate { seq, user, currency, available, locked })
        [seq: u64, user: u32, currency: u16, [skip 2], available: u64, locked: u64];
    DEPOSITED: (ServerMsg::Deposited { seq, user, currency, amount })
        [seq: u64, user: u32, currency: u16, [skip 2], amount: u64];
    WITHDRAWAL_REQUESTED: (ServerMsg::WithdrawalRequested { seq, withdrawal_id, user, currency,
        amount })
        [seq: u64, withdrawal_id: u64, user: u32, currency: u16, [skip 2], amount: u64];
    WITHDRAWAL_APPROVED: (ServerMsg::WithdrawalApproved { seq, withdrawal_id, operator, user,
        approvals })
        [seq: u64, withdrawal_id: u64, operator: u32, user: u32, approvals: u8, [skip 3]];
    WITHDRAWAL_COMPLETED: (ServerMsg::WithdrawalCompleted { seq, withdrawal_id, user, currency,
        amount })
        [seq: u64, withdrawal_id: u64, user: u32, currency: u16, [skip 2], amount: u64];
    WITHDRAWAL_REJECTED: (ServerMsg::WithdrawalRejected { seq, withdrawal_id, operator, user })
        [seq: u64, withdrawal_id: u64, operator: u32, user: u32];
    OPERATOR_REJECTED: (ServerMsg::OperatorRejected { seq, withdrawal_id, operator, code, name })
        [seq: u64, withdrawal_id: u64, operator: u32, code: u16, [skip 2], name: Name32];
    ORDER_STATUS: (ServerMsg::OrderStatus { seq, request_id, found, detail, order,
        filled_notional, finished_ts })
        [seq: u64, request_id: u64, found: bool, [skip 1], detail: u16, [skip 4],
        order: OrderInfo, filled_notional: u64, finished_ts: u64];
    OPEN_ORDER: (ServerMsg::OpenOrder { seq, request_id, order })
        [seq: u64, request_id: u64, order: OrderInfo];
    OPEN_ORDERS_END: (ServerMsg::OpenOrdersEnd { seq, request_id, count })
        [seq: u64, request_id: u64, count: u32, [skip 4]];
    BALANCE: (ServerMsg::Balance { seq, request_id, currency, available, locked })
        [seq: u64, request_id: u64, currency: u16, [skip 6], available: u64, locked: u64];
    BALANCES_END: (ServerMsg::BalancesEnd { seq, request_id, count })
        [seq: u64, request_id: u64, count: u32, [skip 4]];
    BOOK_LEVELS: (ServerMsg::BookLevels { seq, request_id, symbol, side, count, levels })
        [seq: u64, request_id: u64, symbol: u16, side: Side, count: u8, [skip 4],
        levels: [(i64, u64); BOOK_LEVELS_PER_MSG]];
    BOOK_END: (ServerMsg::BookEnd { seq, request_id, symbol, bid_levels, ask_levels })
        [seq: u64, request_id: u64, symbol: u16, [skip 2], bid_levels: u32, ask_levels: u32,
        [skip 4]];
    STATS: (ServerMsg::Stats { seq, request_id, stats })
        [seq: u64, request_id: u64, stats: GatewayStats];
    CURRENCY_INFO: (ServerMsg::CurrencyInfo { seq, request_id, currency, scale, code })
        [seq: u64, request_id: u64, currency: u16, scale: u8, [skip 5], code: Name32];
    SYMBOL_INFO: (ServerMsg::SymbolInfo { seq, request_id, symbol, base, quote, lot_size,
        tick_size, price_min, price_max, max_order_qty, maker_fee_bps, taker_fee_bps, name })
        [seq: u64, request_id: u64, symbol: u16, base: u16, quote: u16, [skip 2],
        lot_size: u64, tick_size: u64, price_min: i64, price_max: i64, max_order_qty: u64,
        maker_fee_bps: u32, taker_fee_bps: u32, name: Name32];
    REFERENCE_END: (ServerMsg::ReferenceEnd { seq, request_id, currencies, symbols, next })
        [seq: u64, request_id: u64, currencies: u32, symbols: u32, next: u32, [skip 4]];
}
