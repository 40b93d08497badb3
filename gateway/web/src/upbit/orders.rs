//! The web edge's table of orders placed through the Upbit API: uuid ↔ engine order id,
//! `identifier` ↔ order, and what Upbit reports about an order that the engine does not keep
//! (its fills with their fees, `created_at`).
//!
//! ## uuids
//! An order's `uuid` is its engine order id written in UUID form:
//! `HHHHHHHH-0000-4000-8000-LLLLLLLLLLLL` (the high and low 32 bits in hex), stable across
//! restarts and the same for every client; any other uuid names no order.
//!
//! ## identifiers and client order ids
//! The engine wants each user's client order ids to strictly increase (`client_order_ids =
//! "increasing"`). The web edge therefore assigns the client order id itself, from the counter
//! the CSV endpoints use (`2^63 + start-second × 2^24 + n`: increasing across restarts as long as
//! fewer than 2^24 orders are placed per second of uptime), and submits one user's orders one at
//! a time. A client's string `identifier` is kept in this table, per user, beside the order it
//! named, so no two strings can collide on one id. The table is in memory and bounded
//! ([`ORDERS_MAX`] orders, the oldest forgotten first): an identifier is refused as a duplicate
//! while its order is remembered, i.e. within the last [`ORDERS_MAX`] Upbit orders since the
//! server started; after a restart, earlier identifiers and fills are forgotten (orders stay
//! reachable by uuid, with the engine's own status).
//!
//! Fills reach the table from the dispatcher ([`Tracker::on_event`]): while a user has an order
//! here that is still open (submitted, or accepted and neither filled nor cancelled), the table
//! *watches* that user on the bridge ([`WebBridge::watch_add`]), so the gateway loop forwards
//! the user's events (a resting order's later fills come from other users' commands) even when
//! nothing else on the web edge wants them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ringbook_engine::{Event, Side, SymbolId};
use ringbook_gateway::server::WebBridge;

/// Orders remembered at once.
pub const ORDERS_MAX: usize = 1 << 16;
/// Fills remembered per order.
pub const TRADES_PER_ORDER_MAX: usize = 256;

/// An order's `uuid`.
pub fn uuid(order_id: u64) -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        order_id >> 32,
        order_id & 0xffff_ffff
    )
}

/// The engine order id a `uuid` names.
pub fn order_id(uuid: &str) -> Option<u64> {
    id_of_uuid(uuid, "-0000-4000-8000-")
}

/// The id in a uuid of the form `HHHHHHHH` `middle` `LLLLLLLLLLLL` (lower-case hex, the low
/// part at most 32 bits): the one canonical spelling, so no other string (a sign, upper case)
/// names the same order or withdrawal.
fn id_of_uuid(uuid: &str, middle: &str) -> Option<u64> {
    // `get`, not indexing: a 36-byte string from a client may have a multi-byte character
    // across byte 8 or 24 (then it names nothing; indexing would panic).
    if uuid.len() != 36 || uuid.get(8..24)? != middle {
        return None;
    }
    let (hi, lo) = (uuid.get(..8)?, uuid.get(24..)?);
    if !hi
        .bytes()
        .chain(lo.bytes())
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (lo <= 0xffff_ffff).then_some(hi << 32 | lo)
}

/// Upbit's order states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Live.
    Wait,
    /// Filled.
    Done,
    /// Cancelled (possibly partly filled).
    Cancel,
}

impl State {
    /// `wait`, `done`, `cancel`.
    pub fn name(self) -> &'static str {
        match self {
            State::Wait => "wait",
            State::Done => "done",
            State::Cancel => "cancel",
        }
    }
}

/// One fill of an order.
#[derive(Clone, Copy, Debug)]
pub struct Fill {
    /// Trade id (per symbol).
    pub trade_id: u64,
    /// Engine time, Unix nanoseconds.
    pub ts: u64,
    /// Price, ticks.
    pub price: i64,
    /// Quantity, lots.
    pub qty: u64,
    /// Notional, quote minimal units.
    pub funds: u128,
    /// Fee, quote minimal units.
    pub fee: u64,
    /// Whether the order was the maker.
    pub maker: bool,
}

/// One Upbit order.
#[derive(Clone, Debug)]
pub struct Rec {
    /// Engine order id (0 until accepted).
    pub order_id: u64,
    /// Owner.
    pub user: u32,
    /// Symbol.
    pub sid: SymbolId,
    /// Side.
    pub side: Side,
    /// `limit`, `price` or `market`.
    pub ord_type: &'static str,
    /// `ioc`, `fok`, `post_only` or none.
    pub tif: Option<&'static str>,
    /// Limit price, ticks (`None` for market orders).
    pub price: Option<i64>,
    /// Quantity, lots (0 for `ord_type=price`, which has a budget instead).
    pub volume: u64,
    /// `ord_type=price`: the amount to spend, quote minimal units (fees included); else 0.
    pub budget: u64,
    /// The client order id the web edge gave it.
    pub coid: u64,
    /// The client's identifier.
    pub identifier: Option<String>,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// State.
    pub state: State,
    /// Filled lots.
    pub executed: u64,
    /// Fees paid, quote minimal units.
    pub fee: u128,
    /// Fills, oldest first (at most [`TRADES_PER_ORDER_MAX`]).
    pub trades: Vec<Fill>,
    /// Fills in all (may exceed `trades.len()`).
    pub trades_count: u64,
}

/// A withdrawal's state, as Upbit names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WState {
    /// Awaiting the two operators' approvals.
    Waiting,
    /// Released (two approvals).
    Done,
    /// Rejected by an operator (the amount is back in the balance).
    Rejected,
}

impl WState {
    /// `WAITING`, `DONE`, `REJECTED`.
    pub fn name(self) -> &'static str {
        match self {
            WState::Waiting => "WAITING",
            WState::Done => "DONE",
            WState::Rejected => "REJECTED",
        }
    }
}

/// One withdrawal requested through the Upbit API.
#[derive(Clone, Debug)]
pub struct WRec {
    /// The engine's withdrawal id.
    pub id: u64,
    /// Owner.
    pub user: u32,
    /// Currency id.
    pub currency: u16,
    /// Minimal units.
    pub amount: u64,
    /// Where to (coin withdrawals; recorded, not used by the engine).
    pub address: Option<String>,
    /// Network type as given.
    pub net_type: Option<String>,
    /// State.
    pub state: WState,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// Operator approvals so far.
    pub approvals: u8,
    /// Unix milliseconds when it was completed or rejected (0: not yet), by the wall clock
    /// when the dispatcher learned it, like `created_ms`.
    pub done_ms: u64,
}

/// Unix milliseconds by the wall clock.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Withdrawals remembered at once.
pub const WITHDRAWALS_MAX: usize = 1 << 14;

/// A withdrawal's `uuid`: its engine withdrawal id in UUID form (`…-4000-a000-…`).
pub fn withdrawal_uuid(id: u64) -> String {
    format!("{:08x}-0000-4000-a000-{:012x}", id >> 32, id & 0xffff_ffff)
}

/// The withdrawal id a withdrawal `uuid` names.
pub fn withdrawal_id(uuid: &str) -> Option<u64> {
    id_of_uuid(uuid, "-0000-4000-a000-")
}

#[derive(Debug, Default)]
struct Inner {
    withdrawals: HashMap<u64, WRec>,
    wfifo: VecDeque<u64>,
    by_id: HashMap<u64, Rec>,
    /// Submitted, not yet accepted: (user, coid).
    pending: HashMap<(u32, u64), Rec>,
    fifo: VecDeque<u64>,
    idents: HashMap<(u32, String), u64>,
    /// Per user: orders still open (pending or `Wait`); the user is watched while above 0.
    open: HashMap<u32, u32>,
}

/// The table (shared by the handlers and the dispatcher).
#[derive(Debug, Default)]
pub struct Tracker {
    inner: Mutex<Inner>,
    /// Each symbol's tick size (a fill's notional is price × qty × tick).
    ticks: Vec<u64>,
    /// Where open orders' users are watched (`None`: nowhere, e.g. unit tests).
    bridge: Option<Arc<WebBridge>>,
}

impl Tracker {
    /// An empty table for `config`'s symbols.
    pub fn new(config: &ringbook_engine::Config) -> Tracker {
        Tracker {
            inner: Mutex::default(),
            ticks: config.symbols.iter().map(|s| s.tick_size).collect(),
            bridge: None,
        }
    }

    /// Watches the users of open orders on `bridge`.
    pub fn watching(mut self, bridge: Arc<WebBridge>) -> Tracker {
        self.bridge = Some(bridge);
        self
    }

    fn opened(&self, g: &mut Inner, user: u32) {
        let n = g.open.entry(user).or_default();
        *n += 1;
        if *n == 1 {
            if let Some(b) = &self.bridge {
                b.watch_add(user, 1);
            }
        }
    }

    fn closed(&self, g: &mut Inner, user: u32) {
        let Some(n) = g.open.get_mut(&user) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            g.open.remove(&user);
            if let Some(b) = &self.bridge {
                b.watch_add(user, -1);
            }
        }
    }

    /// Users with open orders here (each watched on the bridge).
    #[cfg(test)]
    pub fn watched_users(&self) -> usize {
        self.lock().open.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `user` has used `identifier` on a remembered order (or one in flight).
    pub fn identifier_used(&self, user: u32, identifier: &str) -> bool {
        let g = self.lock();
        g.idents.contains_key(&(user, identifier.to_string()))
            || g.pending
                .values()
                .any(|r| r.user == user && r.identifier.as_deref() == Some(identifier))
    }

    /// Registers an order about to be submitted (before its events can arrive).
    pub fn submit(&self, rec: Rec) {
        let mut g = self.lock();
        let user = rec.user;
        if g.pending.insert((rec.user, rec.coid), rec).is_none() {
            self.opened(&mut g, user);
        }
    }

    /// Forgets a submitted order that was not accepted.
    pub fn abandon(&self, user: u32, coid: u64) {
        let mut g = self.lock();
        if g.pending.remove(&(user, coid)).is_some() {
            self.closed(&mut g, user);
        }
    }

    /// An order by engine id.
    pub fn get(&self, order_id: u64) -> Option<Rec> {
        self.lock().by_id.get(&order_id).cloned()
    }

    /// The order id a user's identifier names.
    pub fn by_identifier(&self, user: u32, identifier: &str) -> Option<u64> {
        self.lock()
            .idents
            .get(&(user, identifier.to_string()))
            .copied()
    }

    /// A user's finished orders (newest first), at most `limit`.
    pub fn finished(&self, user: u32, limit: usize, keep: impl Fn(&Rec) -> bool) -> Vec<Rec> {
        let g = self.lock();
        g.fifo
            .iter()
            .rev()
            .filter_map(|id| g.by_id.get(id))
            .filter(|r| r.user == user && r.state != State::Wait && keep(r))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Records a withdrawal the Upbit API requested.
    pub fn withdrawal(&self, w: WRec) {
        let mut g = self.lock();
        if g.wfifo.len() >= WITHDRAWALS_MAX {
            if let Some(old) = g.wfifo.pop_front() {
                g.withdrawals.remove(&old);
            }
        }
        g.wfifo.push_back(w.id);
        g.withdrawals.insert(w.id, w);
    }

    /// A withdrawal by id.
    pub fn get_withdrawal(&self, id: u64) -> Option<WRec> {
        self.lock().withdrawals.get(&id).cloned()
    }

    /// A user's withdrawals, newest first.
    pub fn withdrawals(&self, user: u32) -> Vec<WRec> {
        let g = self.lock();
        g.wfifo
            .iter()
            .rev()
            .filter_map(|id| g.withdrawals.get(id))
            .filter(|w| w.user == user)
            .cloned()
            .collect()
    }

    /// Learns an engine event (the dispatcher, in sequence order).
    pub fn on_event(&self, e: &Event) {
        match *e {
            Event::WithdrawalApproved {
                withdrawal_id,
                approvals,
                ..
            } => {
                if let Some(w) = self.lock().withdrawals.get_mut(&withdrawal_id.0) {
                    w.approvals = approvals;
                }
            }
            Event::WithdrawalCompleted { withdrawal_id, .. } => {
                if let Some(w) = self.lock().withdrawals.get_mut(&withdrawal_id.0) {
                    w.state = WState::Done;
                    w.done_ms = wall_ms();
                }
            }
            Event::WithdrawalRejected { withdrawal_id, .. } => {
                if let Some(w) = self.lock().withdrawals.get_mut(&withdrawal_id.0) {
                    w.state = WState::Rejected;
                    w.done_ms = wall_ms();
                }
            }
            Event::Accepted {
                user,
                client_order_id,
                order_id,
                ..
            } => {
                let mut g = self.lock();
                if let Some(mut r) = g.pending.remove(&(user.0, client_order_id.0)) {
                    r.order_id = order_id.0;
                    if r.state != State::Wait {
                        // Not open any more (it cannot be, before its acceptance).
                        self.closed(&mut g, user.0);
                    }
                    if g.fifo.len() >= ORDERS_MAX {
                        if let Some(old) = g.fifo.pop_front() {
                            if let Some(o) = g.by_id.remove(&old) {
                                if o.state == State::Wait {
                                    self.closed(&mut g, o.user);
                                }
                                if let Some(i) = o.identifier {
                                    g.idents.remove(&(o.user, i));
                                }
                            }
                        }
                    }
                    if let Some(i) = &r.identifier {
                        g.idents.insert((user.0, i.clone()), order_id.0);
                    }
                    g.fifo.push_back(order_id.0);
                    g.by_id.insert(order_id.0, r);
                }
            }
            Event::Trade(t) => {
                let tick = u128::from(self.ticks.get(t.symbol.0 as usize).copied().unwrap_or(1));
                let mut g = self.lock();
                if g.by_id.is_empty() {
                    return;
                }
                let mut ended = [None; 2];
                for (k, (f, maker)) in [(&t.maker, true), (&t.taker, false)]
                    .into_iter()
                    .enumerate()
                {
                    if let Some(r) = g.by_id.get_mut(&f.order_id.0) {
                        let funds = t.price.0 as u128 * u128::from(t.qty.0) * tick;
                        r.executed = f.cum_qty.0;
                        r.fee += u128::from(f.fee);
                        r.trades_count += 1;
                        if r.trades.len() < TRADES_PER_ORDER_MAX {
                            r.trades.push(Fill {
                                trade_id: t.trade_id.0,
                                ts: t.ts,
                                price: t.price.0,
                                qty: t.qty.0,
                                funds,
                                fee: f.fee,
                                maker,
                            });
                        }
                        if f.leaves_qty.0 == 0 {
                            if r.state == State::Wait {
                                ended[k] = Some(r.user);
                            }
                            r.state = State::Done;
                        }
                    }
                }
                for user in ended.into_iter().flatten() {
                    self.closed(&mut g, user);
                }
            }
            Event::Cancelled {
                order_id,
                leaves_qty,
                ..
            } if leaves_qty.0 == 0 => {
                let mut g = self.lock();
                if let Some(r) = g.by_id.get_mut(&order_id.0) {
                    let was_open = r.state == State::Wait;
                    let user = r.user;
                    r.state = State::Cancel;
                    if was_open {
                        self.closed(&mut g, user);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::{
        CancelReason, ClientOrderId, Config, OrderId, OrderType, Price, Qty, TradeId, UserId,
    };

    fn rec(user: u32, coid: u64, identifier: Option<&str>) -> Rec {
        Rec {
            order_id: 0,
            user,
            sid: SymbolId(0),
            side: Side::Sell,
            ord_type: "limit",
            tif: None,
            price: Some(9500),
            volume: 100,
            budget: 0,
            coid,
            identifier: identifier.map(str::to_string),
            created_ms: 1,
            state: State::Wait,
            executed: 0,
            fee: 0,
            trades: Vec::new(),
            trades_count: 0,
        }
    }

    fn accepted(user: u32, coid: u64, id: u64) -> Event {
        Event::Accepted {
            user: UserId(user),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(coid),
            order_id: OrderId(id),
            side: Side::Sell,
            order_type: OrderType::Limit,
            price: Price(9500),
            qty: Qty(100),
            display_qty: Qty(0),
        }
    }

    fn fill(user: u32, id: u64, leaves: u64, cum: u64, fee: u64) -> ringbook_engine::Fill {
        ringbook_engine::Fill {
            user: UserId(user),
            client_order_id: ClientOrderId(0),
            order_id: OrderId(id),
            limit_price: Price(9500),
            leaves_qty: Qty(leaves),
            cum_qty: Qty(cum),
            fee,
        }
    }

    fn trade(n: u64, qty: u64, maker: ringbook_engine::Fill) -> Event {
        Event::Trade(ringbook_engine::Trade {
            symbol: SymbolId(0),
            trade_id: TradeId(n),
            ts: n * 1_000_000,
            price: Price(9500),
            qty: Qty(qty),
            taker_side: Side::Buy,
            maker,
            taker: fill(9, 999, 0, qty, 1),
        })
    }

    #[test]
    fn an_order_learns_its_id_fills_fees_and_end_from_the_events() {
        let t = Tracker::new(&Config::default());
        assert_eq!(t.watched_users(), 0);
        t.submit(rec(1, 10, Some("mine")));
        assert_eq!(t.watched_users(), 1, "a submitted order's user is watched");
        assert!(t.identifier_used(1, "mine"), "in flight counts");
        assert!(!t.identifier_used(2, "mine"), "identifiers are per user");
        t.on_event(&accepted(1, 10, 5));
        assert_eq!(t.by_identifier(1, "mine"), Some(5));
        t.on_event(&trade(1, 40, fill(1, 5, 60, 40, 190)));
        let r = t.get(5).unwrap();
        assert_eq!(
            (r.state, r.executed, r.fee, r.trades_count),
            (State::Wait, 40, 190, 1)
        );
        // Notional: 9500 ticks × 40 lots × tick size 1.
        assert_eq!(r.trades[0].funds, 380_000);
        assert!(r.trades[0].maker);
        t.on_event(&trade(2, 60, fill(1, 5, 0, 100, 285)));
        let r = t.get(5).unwrap();
        assert_eq!(
            (r.state, r.executed, r.fee, r.trades.len()),
            (State::Done, 100, 475, 2)
        );
        assert_eq!(t.watched_users(), 0, "filled: no longer watched");
        // Another order, cancelled; one that was never accepted is forgotten.
        t.submit(rec(1, 11, None));
        t.on_event(&accepted(1, 11, 6));
        assert_eq!(t.watched_users(), 1);
        t.on_event(&Event::Cancelled {
            user: UserId(1),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(11),
            order_id: OrderId(6),
            side: Side::Sell,
            price: Price(9500),
            qty: Qty(100),
            leaves_qty: Qty(0),
            reason: CancelReason::User,
        });
        assert_eq!(t.get(6).unwrap().state, State::Cancel);
        assert_eq!(t.watched_users(), 0, "cancelled: no longer watched");
        t.submit(rec(1, 12, Some("lost")));
        t.abandon(1, 12);
        assert!(!t.identifier_used(1, "lost"));
        assert_eq!(t.watched_users(), 0, "abandoned: no longer watched");
        let done = t.finished(1, 10, |_| true);
        assert_eq!(
            done.iter().map(|r| r.order_id).collect::<Vec<_>>(),
            vec![6, 5]
        );
        assert!(t.finished(2, 10, |_| true).is_empty());
    }

    #[test]
    fn the_table_forgets_the_oldest_order_and_its_identifier() {
        let t = Tracker::new(&Config::default());
        for i in 0..ORDERS_MAX as u64 + 1 {
            let ident = format!("id-{i}");
            t.submit(rec(1, i + 1, Some(&ident)));
            t.on_event(&accepted(1, i + 1, i + 1));
        }
        assert!(t.get(1).is_none(), "the oldest is forgotten");
        assert!(!t.identifier_used(1, "id-0"), "with its identifier");
        assert_eq!(
            t.inner.lock().unwrap().open.get(&1),
            Some(&(ORDERS_MAX as u32)),
            "a forgotten open order no longer counts"
        );
        assert_eq!(t.by_identifier(1, "id-1"), Some(2));
        assert_eq!(t.lock().by_id.len(), ORDERS_MAX);
        assert_eq!(t.lock().idents.len(), ORDERS_MAX);
    }

    #[test]
    fn uuids_round_trip_and_foreign_ones_name_nothing() {
        for id in [0u64, 1, 0xffff_ffff, 1 << 32, u64::MAX, 123_456_789_012] {
            let u = uuid(id);
            assert_eq!(u.len(), 36);
            assert_eq!(order_id(&u), Some(id), "{u}");
        }
        assert_eq!(uuid(1), "00000000-0000-4000-8000-000000000001");
        assert_eq!(order_id("cdd92199-2897-4e14-9448-f923320408ad"), None);
        assert_eq!(order_id("00000000-0000-4000-8000-100000000001"), None);
        assert_eq!(order_id("0000000g-0000-4000-8000-000000000001"), None);
        assert_eq!(order_id("00000000-0000-4000-8000-00000000000A"), None);
        // 36 bytes with a two-byte character across byte 8, or byte 24: nothing, no panic.
        let across_8 = format!("1234567\u{e9}-0000-4000-8000-{}", "0".repeat(11));
        let across_24 = format!("00000000-0000-4000-8000\u{e9}{}", "0".repeat(11));
        for u in [across_8, across_24] {
            assert_eq!(u.len(), 36, "{u}");
            assert_eq!(order_id(&u), None, "{u}");
            assert_eq!(withdrawal_id(&u), None, "{u}");
        }
        // One spelling per id: a sign or upper-case hex names nothing, for withdrawals too
        // (`from_str_radix` alone takes a leading `+`: a red-team finding).
        assert_eq!(withdrawal_id(&withdrawal_uuid(2)), Some(2));
        for u in [
            "+0000000-0000-4000-a000-000000000002",
            "00000000-0000-4000-a000-+00000000002",
            "00000000-0000-4000-a000-00000000000A",
        ] {
            assert_eq!(withdrawal_id(u), None, "{u}");
        }
        assert_eq!(order_id("+0000000-0000-4000-8000-000000000002"), None);
    }
}
