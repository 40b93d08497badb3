//! The reference model: the whole matching engine written the obvious way.
//!
//! [`ReferenceBook`] implements docs/matching.md independently of the fast engine
//! ([`crate::matching::Matcher`] over `book::array`), with ordinary collections and
//! plain loops: per symbol a `BTreeMap<Price, VecDeque<RefOrder>>` for each resting side and a
//! `Vec` of waiting stops with a sequence number for their time priority. Finding an order scans
//! every book; counting live orders counts them. Nothing is cached, so there is no cached state
//! to get wrong.
//!
//! It exists to be the oracle of the property tests (`engine/tests/reference_props.rs`): both
//! implementations process the same random command streams, and their events, books, depth and
//! [`StateHash`]es must be identical after every command. It is far too slow for production and
//! allocates freely; it is written to be read against the contract, rule by rule.

use std::collections::{BTreeMap, VecDeque};

use crate::book::{checked_notional, fee, BookSection, OrderView};
use crate::codes::{CancelReason, RejectCode};
use crate::command::{Command, NewOrder, Query};
use crate::config::{ClientOrderIdRule, Config, SymbolConfig};
use crate::event::{Event, EventSink, Fill, Trade};
use crate::hash::{StateHash, StateHasher};
use crate::matching::{trade_notional, FinishedOrder, OrderRef, OrderStatus};
use crate::types::{
    ClientOrderId, OrderId, OrderType, Price, Qty, Side, StpMode, SymbolId, TimeInForce, TradeId,
    UserId,
};

/// A live order as the reference model keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RefOrder {
    id: OrderId,
    user: UserId,
    client_order_id: ClientOrderId,
    symbol: SymbolId,
    side: Side,
    order_type: OrderType,
    tif: TimeInForce,
    /// Limit or protection price.
    price: Price,
    /// Trigger price; 0 for non-stop orders.
    stop_price: Price,
    /// Open quantity (visible plus hidden).
    leaves: u64,
    /// Shown quantity while resting.
    visible: u64,
    /// Filled so far.
    filled: u64,
    /// Iceberg display size; 0 shows everything.
    display: u64,
    post_only: bool,
    stp: StpMode,
    /// Expiry time of a GTD or DAY order (0 for the others).
    expire_at: u64,
}

impl RefOrder {
    /// What an order shows when it (re)joins a level: `min(display, open)`, or all of it.
    fn peak(&self) -> u64 {
        if self.display == 0 {
            self.leaves
        } else {
            self.display.min(self.leaves)
        }
    }

    fn view(&self, visible: u64) -> OrderView {
        OrderView {
            order_id: self.id,
            user: self.user,
            client_order_id: self.client_order_id,
            symbol: self.symbol,
            side: self.side,
            order_type: self.order_type,
            tif: self.tif,
            price: self.price,
            stop_price: self.stop_price,
            leaves_qty: Qty(self.leaves),
            visible_qty: Qty(visible),
            filled_qty: Qty(self.filled),
            display_qty: Qty(self.display),
            post_only: self.post_only,
            stp: self.stp,
            expire_at: self.expire_at,
        }
    }

    /// `Cancelled` for `qty` of this order, with its open quantity as it now stands.
    fn cancelled(&self, qty: u64, reason: CancelReason) -> Event {
        Event::Cancelled {
            user: self.user,
            symbol: self.symbol,
            client_order_id: self.client_order_id,
            order_id: self.id,
            side: self.side,
            price: self.price,
            qty: Qty(qty),
            leaves_qty: Qty(self.leaves),
            reason,
        }
    }

    fn triggered(&self) -> Event {
        Event::Triggered {
            user: self.user,
            symbol: self.symbol,
            client_order_id: self.client_order_id,
            order_id: self.id,
        }
    }
}

/// A stop waiting for its trigger. `seq` orders stops of equal stop price (oldest first); it is
/// renewed when an amend grows the quantity.
#[derive(Clone, Copy, Debug)]
struct WaitingStop {
    seq: u64,
    order: RefOrder,
}

/// One symbol: its reference data, two resting sides, two stop lists and the last trade price.
#[derive(Clone, Debug)]
struct RefSymbol {
    spec: SymbolConfig,
    bids: BTreeMap<Price, VecDeque<RefOrder>>,
    asks: BTreeMap<Price, VecDeque<RefOrder>>,
    buy_stops: Vec<WaitingStop>,
    sell_stops: Vec<WaitingStop>,
    last_price: Option<Price>,
    /// How many trades the symbol has had: the last trade's id.
    trades: u64,
}

impl RefSymbol {
    fn side(&self, side: Side) -> &BTreeMap<Price, VecDeque<RefOrder>> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<Price, VecDeque<RefOrder>> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    fn stops_mut(&mut self, side: Side) -> &mut Vec<WaitingStop> {
        match side {
            Side::Buy => &mut self.buy_stops,
            Side::Sell => &mut self.sell_stops,
        }
    }

    /// Price levels of a resting side, best first (bids highest, asks lowest).
    fn levels_best_first(&self, side: Side) -> Vec<(Price, &VecDeque<RefOrder>)> {
        let mut levels: Vec<_> = self.side(side).iter().map(|(p, q)| (*p, q)).collect();
        if side == Side::Buy {
            levels.reverse();
        }
        levels
    }

    /// The best price of a resting side.
    fn best(&self, side: Side) -> Option<Price> {
        self.levels_best_first(side).first().map(|(p, _)| *p)
    }

    /// Waiting stops of one side in trigger order: buy stops lowest stop price first, sell stops
    /// highest first; oldest first at equal stop prices.
    fn stops_in_trigger_order(&self, side: Side) -> Vec<RefOrder> {
        let mut stops = match side {
            Side::Buy => self.buy_stops.clone(),
            Side::Sell => self.sell_stops.clone(),
        };
        stops.sort_by(|a, b| {
            let by_price = a.order.stop_price.cmp(&b.order.stop_price);
            let by_price = if side == Side::Buy {
                by_price
            } else {
                by_price.reverse()
            };
            by_price.then(a.seq.cmp(&b.seq))
        });
        stops.into_iter().map(|s| s.order).collect()
    }

    /// Every live order of the symbol, with its section and its shown quantity, in canonical
    /// order. A waiting stop shows its whole open quantity.
    fn all_orders(&self) -> Vec<(BookSection, RefOrder, u64)> {
        let mut out = Vec::new();
        for (section, side) in [
            (BookSection::Bids, Side::Buy),
            (BookSection::Asks, Side::Sell),
        ] {
            for (_, level) in self.levels_best_first(side) {
                for o in level {
                    out.push((section, *o, o.visible));
                }
            }
        }
        for (section, side) in [
            (BookSection::BuyStops, Side::Buy),
            (BookSection::SellStops, Side::Sell),
        ] {
            for o in self.stops_in_trigger_order(side) {
                out.push((section, o, o.leaves));
            }
        }
        out
    }
}

/// True if an order of `side` with limit `limit` may trade at opposite price `p`.
fn acceptable(side: Side, p: Price, limit: Price) -> bool {
    match side {
        Side::Buy => p <= limit,
        Side::Sell => p >= limit,
    }
}

/// True if last trade price `last` reaches a stop of `side` at `stop`.
fn reaches(last: Option<Price>, side: Side, stop: Price) -> bool {
    match (last, side) {
        (None, _) => false,
        (Some(last), Side::Buy) => last >= stop,
        (Some(last), Side::Sell) => last <= stop,
    }
}

fn reject(user: UserId, client_order_id: ClientOrderId, code: RejectCode) -> Event {
    Event::Rejected {
        user,
        client_order_id,
        code,
    }
}

/// Where a live order is.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// Resting on `side` at `price`, at `pos` in the level's queue.
    Resting {
        side: Side,
        price: Price,
        pos: usize,
    },
    /// Waiting in the stop list of `side`, at `pos` in that `Vec`.
    Stop { side: Side, pos: usize },
}

/// The reference model of the whole matching engine (see the module docs).
#[derive(Clone, Debug)]
pub struct ReferenceBook {
    symbols: Vec<RefSymbol>,
    users_max: u32,
    orders_max: u32,
    next_order_id: u64,
    next_stop_seq: u64,
    coid_rule: ClientOrderIdRule,
    /// The highest client order id each user has sent in a new order (absent: none).
    coid_high: BTreeMap<UserId, u64>,
    /// Engine time: the largest command timestamp seen.
    now_ns: u64,
    /// Finished orders remembered per user.
    finished_per_user: usize,
    /// Each user's finished orders, oldest first, at most `finished_per_user`.
    finished: BTreeMap<UserId, VecDeque<FinishedOrder>>,
    /// The session end, nanoseconds after midnight UTC (DAY orders); `None`: not configured.
    day_end_ns: Option<u64>,
    /// What the event stream has told about each order not yet finished: its identity (from
    /// `Accepted`), last price (from `Amended`), filled quantity and notional (from `Trade`s).
    known: BTreeMap<OrderId, Known>,
}

/// An order as [`ReferenceBook::observe`] follows it through the events.
#[derive(Clone, Copy, Debug)]
struct Known {
    user: UserId,
    client_order_id: ClientOrderId,
    symbol: SymbolId,
    side: Side,
    order_type: OrderType,
    price: Price,
    filled: u64,
    notional: u64,
}

impl ReferenceBook {
    /// Empty books for every symbol of `config`.
    pub fn new(config: &Config) -> ReferenceBook {
        ReferenceBook {
            symbols: config
                .symbols
                .iter()
                .map(|spec| RefSymbol {
                    spec: spec.clone(),
                    bids: BTreeMap::new(),
                    asks: BTreeMap::new(),
                    buy_stops: Vec::new(),
                    sell_stops: Vec::new(),
                    last_price: None,
                    trades: 0,
                })
                .collect(),
            users_max: config.capacity.users_max,
            orders_max: config.capacity.orders_max,
            next_order_id: 1,
            next_stop_seq: 0,
            coid_rule: config.engine.client_order_ids,
            coid_high: BTreeMap::new(),
            now_ns: 0,
            finished_per_user: config.engine.finished_orders_per_user as usize,
            finished: BTreeMap::new(),
            day_end_ns: config.schedule.day_end_offset_ns(),
            known: BTreeMap::new(),
        }
    }

    /// Records a new order rejected with `code` (by this model or the risk stage's): it
    /// consumes its client order id and finishes as REJECTED.
    pub fn note_rejected(&mut self, o: &NewOrder, code: RejectCode) {
        self.note_client_order_id(o);
        if code == RejectCode::DuplicateClientOrderId {
            return; // the id names an earlier order, whose entry stays visible
        }
        self.remember(
            o.user,
            FinishedOrder {
                client_order_id: o.client_order_id,
                order_id: OrderId(0),
                symbol: o.symbol,
                side: o.side,
                order_type: o.order_type,
                status: OrderStatus::Rejected(code),
                price: o.price,
                filled_qty: Qty(0),
                filled_notional: 0,
                ts: self.now_ns,
            },
        );
    }

    /// Appends to `user`'s window of finished orders, dropping the oldest beyond its size.
    fn remember(&mut self, user: UserId, f: FinishedOrder) {
        if user.0 >= self.users_max || self.finished_per_user == 0 {
            return;
        }
        let ring = self.finished.entry(user).or_default();
        ring.push_back(f);
        if ring.len() > self.finished_per_user {
            ring.pop_front();
        }
    }

    /// Follows one command's events (docs/matching.md, "Order status"): an order finishes with
    /// the event that takes its open quantity to zero — a trade (maker, then taker) or a
    /// `Cancelled` — and a new order with its `Rejected`.
    fn observe(&mut self, cmd: &Command, events: &[Event]) {
        let now = self.now_ns;
        for e in events {
            match *e {
                Event::Accepted {
                    user,
                    symbol,
                    client_order_id,
                    order_id,
                    side,
                    order_type,
                    price,
                    ..
                } => {
                    self.known.insert(
                        order_id,
                        Known {
                            user,
                            client_order_id,
                            symbol,
                            side,
                            order_type,
                            price,
                            filled: 0,
                            notional: 0,
                        },
                    );
                }
                Event::Amended {
                    order_id, price, ..
                } => {
                    self.known
                        .get_mut(&order_id)
                        .expect("amended a known order")
                        .price = price;
                }
                Event::Trade(t) => {
                    let tick = self.symbols[t.symbol.0 as usize].spec.tick_size;
                    let n = trade_notional(t.price, t.qty.0, tick);
                    for fill in [t.maker, t.taker] {
                        let k = self
                            .known
                            .get_mut(&fill.order_id)
                            .expect("a known order trades");
                        k.filled += t.qty.0;
                        k.notional = k.notional.saturating_add(n);
                        if fill.leaves_qty.0 == 0 {
                            self.finish(fill.order_id, OrderStatus::Filled, now);
                        }
                    }
                }
                Event::Cancelled {
                    order_id,
                    leaves_qty,
                    reason,
                    ..
                } if leaves_qty.0 == 0 => {
                    self.finish(order_id, OrderStatus::cancelled(reason), now);
                }
                Event::Rejected { code, .. } if code != RejectCode::DuplicateClientOrderId => {
                    if let Command::NewOrder(ref o) = *cmd {
                        let f = FinishedOrder {
                            client_order_id: o.client_order_id,
                            order_id: OrderId(0),
                            symbol: o.symbol,
                            side: o.side,
                            order_type: o.order_type,
                            status: OrderStatus::Rejected(code),
                            price: o.price,
                            filled_qty: Qty(0),
                            filled_notional: 0,
                            ts: now,
                        };
                        self.remember(o.user, f);
                    }
                }
                _ => {}
            }
        }
    }

    /// Moves a known order to its owner's window with `status`.
    fn finish(&mut self, order_id: OrderId, status: OrderStatus, ts: u64) {
        let k = self
            .known
            .remove(&order_id)
            .expect("a known order finishes");
        self.remember(
            k.user,
            FinishedOrder {
                client_order_id: k.client_order_id,
                order_id,
                symbol: k.symbol,
                side: k.side,
                order_type: k.order_type,
                status,
                price: k.price,
                filled_qty: Qty(k.filled),
                filled_notional: k.notional,
                ts,
            },
        );
    }

    /// Records that `o` (a new order of a known user, accepted or rejected by any stage) used
    /// its client order id: the user's high-water mark becomes at least that id.
    pub fn note_client_order_id(&mut self, o: &NewOrder) {
        if o.user.0 < self.users_max && o.client_order_id.0 > 0 {
            let high = self.coid_high.entry(o.user).or_insert(0);
            *high = (*high).max(o.client_order_id.0);
        }
    }

    /// The highest client order id `user` has used (0: none).
    pub fn client_order_id_high(&self, user: UserId) -> u64 {
        self.coid_high.get(&user).copied().unwrap_or(0)
    }

    /// Engine time: the largest timestamp given to [`ReferenceBook::process_at`] (0 before).
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// Moves engine time to `ts_ns` unless it is already later.
    pub fn advance(&mut self, ts_ns: u64) {
        self.now_ns = self.now_ns.max(ts_ns.min(crate::matching::TIME_MAX_NS));
    }

    /// [`ReferenceBook::process`] for a command stamped `ts_ns`: time first moves to the
    /// later of `ts_ns` and the current time.
    pub fn process_at<S: EventSink + ?Sized>(&mut self, ts_ns: u64, cmd: &Command, sink: &mut S) {
        self.advance(ts_ns);
        self.process(cmd, sink);
    }

    /// Applies one command, reporting every consequence to `sink` in order: first the orders
    /// engine time has expired, then the command.
    pub fn process<S: EventSink + ?Sized>(&mut self, cmd: &Command, sink: &mut S) {
        // The expiries finish their orders before the command runs (a status query of one
        // sees it EXPIRED).
        let mut events = Vec::new();
        self.expire(&mut events);
        self.observe(&Command::Tick, &events);
        let mut own = Vec::new();
        self.apply(cmd, &mut own);
        self.observe(cmd, &own);
        events.extend(own);
        for e in &events {
            sink.on_event(e);
        }
    }

    /// What [`ReferenceBook::process`] of `cmd` would emit for the command itself, on a copy
    /// and without the expiries engine time has reached: what the risk stage sees when it
    /// checks a command, before matching expires anything (docs/matching.md, "Expiry").
    pub fn dry_run(&self, cmd: &Command) -> Vec<Event> {
        let mut copy = self.clone();
        let mut events = Vec::new();
        copy.apply(cmd, &mut events);
        events
    }

    /// "Expiry": every live GTD or DAY order whose expiry time engine time has reached is
    /// cancelled with reason `EXPIRED`, soonest expiry first, then lowest order id.
    fn expire(&mut self, events: &mut Vec<Event>) {
        let now = self.now_ns;
        let mut due: Vec<(u64, OrderId)> = self
            .live()
            .into_iter()
            .filter(|(o, _)| o.expire_at != 0 && o.expire_at <= now)
            .map(|(o, _)| (o.expire_at, o.id))
            .collect();
        due.sort();
        for (_, id) in due {
            let (o, place) = self
                .live()
                .into_iter()
                .find(|(o, _)| o.id == id)
                .expect("a due order is live");
            self.cancel_live(&o, place, CancelReason::Expired, events);
        }
    }

    /// The command alone (no expiry first).
    fn apply(&mut self, cmd: &Command, events: &mut Vec<Event>) {
        match *cmd {
            Command::Tick => {}
            Command::NewOrder(ref o) => self.new_order(o, events),
            Command::Cancel {
                user,
                symbol,
                client_order_id,
            } => self.cancel(user, symbol, OrderRef::Client(client_order_id), events),
            Command::CancelOrder {
                user,
                symbol,
                order_id,
            } => self.cancel(user, symbol, OrderRef::Engine(order_id), events),
            Command::AmendOrder {
                user,
                symbol,
                order_id,
                price,
                qty,
            } => self.amend(user, symbol, OrderRef::Engine(order_id), price, qty, events),
            Command::Amend {
                user,
                symbol,
                client_order_id,
                price,
                qty,
            } => self.amend(
                user,
                symbol,
                OrderRef::Client(client_order_id),
                price,
                qty,
                events,
            ),
            Command::MassCancel {
                user,
                symbol,
                on_disconnect,
            } => self.mass_cancel(user, symbol, on_disconnect, events),
            // Account commands are the risk stage's; the book alone ignores them.
            Command::Deposit { .. }
            | Command::Withdraw { .. }
            | Command::ApproveWithdrawal { .. }
            | Command::RejectWithdrawal { .. } => {}
            Command::Query(ref q) => self.answer(q, events),
        }
    }

    // ------------------------------------------------------------------ lookups

    /// Every live order, with where it is.
    fn live(&self) -> Vec<(RefOrder, Place)> {
        let mut out = Vec::new();
        for sym in &self.symbols {
            for side in [Side::Buy, Side::Sell] {
                for (price, level) in sym.side(side) {
                    for (pos, o) in level.iter().enumerate() {
                        out.push((
                            *o,
                            Place::Resting {
                                side,
                                price: *price,
                                pos,
                            },
                        ));
                    }
                }
            }
            for (side, stops) in [(Side::Buy, &sym.buy_stops), (Side::Sell, &sym.sell_stops)] {
                for (pos, s) in stops.iter().enumerate() {
                    out.push((s.order, Place::Stop { side, pos }));
                }
            }
        }
        out
    }

    /// The live order of `user` with client order id `coid`, on any symbol.
    fn find_any(&self, user: UserId, coid: ClientOrderId) -> Option<(RefOrder, Place)> {
        self.live()
            .into_iter()
            .find(|(o, _)| o.user == user && o.client_order_id == coid)
    }

    /// The live order a cancel or amend names, or the reject that explains why there is none:
    /// by client order id, the user's order with that id; by engine order id, the live order
    /// with that id, which must be the user's (`NOT_YOUR_ORDER`). Either way on `symbol`.
    fn find(
        &self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
    ) -> Result<(RefOrder, Place), RejectCode> {
        if user.0 >= self.users_max {
            return Err(RejectCode::UnknownUser);
        }
        if symbol.0 as usize >= self.symbols.len() {
            return Err(RejectCode::UnknownSymbol);
        }
        let found = match target {
            OrderRef::Client(coid) => self.find_any(user, coid),
            OrderRef::Engine(id) => match self.live().into_iter().find(|(o, _)| o.id == id) {
                Some((o, _)) if o.user != user => return Err(RejectCode::NotYourOrder),
                found => found,
            },
        };
        match found {
            Some((o, place)) if o.symbol == symbol => Ok((o, place)),
            _ => Err(RejectCode::UnknownOrder),
        }
    }

    /// The client order id on a reject of a command naming `target`: the one named; for an
    /// engine order id, the order's own when it is a live order of `user`, else 0.
    fn reject_coid(&self, user: UserId, target: OrderRef) -> ClientOrderId {
        match target {
            OrderRef::Client(coid) => coid,
            OrderRef::Engine(id) => self
                .live()
                .into_iter()
                .find(|(o, _)| o.id == id && o.user == user)
                .map_or(ClientOrderId(0), |(o, _)| o.client_order_id),
        }
    }

    /// Takes a live order out of wherever it is.
    fn remove(&mut self, o: &RefOrder, place: Place) -> RefOrder {
        let sym = &mut self.symbols[o.symbol.0 as usize];
        match place {
            Place::Resting { side, price, pos } => {
                let book = sym.side_mut(side);
                let level = book.get_mut(&price).expect("level of a live order");
                let removed = level.remove(pos).expect("position of a live order");
                if level.is_empty() {
                    book.remove(&price);
                }
                removed
            }
            Place::Stop { side, pos } => sym.stops_mut(side).remove(pos).order,
        }
    }

    // ------------------------------------------------------------------ new orders

    /// The validation table of docs/matching.md, first failing rule wins.
    fn validate(&self, o: &NewOrder) -> Result<(), RejectCode> {
        // 1
        if o.user.0 >= self.users_max {
            return Err(RejectCode::UnknownUser);
        }
        // 2: a resend (or any id not above the user's highest) under the increasing rule
        if self.coid_rule == ClientOrderIdRule::Increasing
            && o.client_order_id.0 <= self.client_order_id_high(o.user)
        {
            return Err(RejectCode::DuplicateClientOrderId);
        }
        // 3
        let Some(sym) = self.symbols.get(o.symbol.0 as usize) else {
            return Err(RejectCode::UnknownSymbol);
        };
        let spec = &sym.spec;
        // 4a: a budget only on a market buy, IOC
        if o.budget != 0
            && (o.side != Side::Buy
                || o.order_type != OrderType::Market
                || o.tif != TimeInForce::Ioc)
        {
            return Err(RejectCode::InvalidBudget);
        }
        // 4: a budget order may leave its lot cap out
        if o.qty.0 == 0 && o.budget == 0 {
            return Err(RejectCode::InvalidQuantity);
        }
        // 5
        if o.qty.0 > spec.max_order_qty {
            return Err(RejectCode::QuantityTooLarge);
        }
        // 6
        if !spec.in_band(o.price) {
            return Err(RejectCode::PriceOutOfBand);
        }
        // 7
        let is_stop = matches!(o.order_type, OrderType::StopLimit | OrderType::StopMarket);
        let stop_ok = if is_stop {
            spec.in_band(o.stop_price)
        } else {
            o.stop_price == Price(0)
        };
        if !stop_ok {
            return Err(RejectCode::InvalidStopPrice);
        }
        // 8
        let is_market = matches!(o.order_type, OrderType::Market | OrderType::StopMarket);
        if o.post_only && is_market {
            return Err(RejectCode::InvalidPostOnly);
        }
        // 9: post-only rests; a market order never does, so it cannot wait to expire
        let rests = matches!(
            o.tif,
            TimeInForce::Gtc | TimeInForce::Gtd | TimeInForce::Day
        );
        let expires = matches!(o.tif, TimeInForce::Gtd | TimeInForce::Day);
        if (o.post_only && !rests) || (o.order_type == OrderType::Market && expires) {
            return Err(RejectCode::InvalidTimeInForce);
        }
        // 9a: an expiry time exactly on GTD orders, in the future
        if (o.tif == TimeInForce::Gtd) != (o.expire_at != 0) {
            return Err(RejectCode::InvalidExpiry);
        }
        if o.tif == TimeInForce::Gtd && o.expire_at <= self.now_ns {
            return Err(RejectCode::ExpiryInPast);
        }
        // 9b: DAY needs a session end
        if o.tif == TimeInForce::Day && self.day_end_ns.is_none() {
            return Err(RejectCode::NoSessionEnd);
        }
        // 10
        if o.display_qty.0 != 0 {
            let limit_type = matches!(o.order_type, OrderType::Limit | OrderType::StopLimit);
            if o.display_qty > o.qty || !limit_type || !rests {
                return Err(RejectCode::InvalidDisplayQty);
            }
        }
        // 11
        if checked_notional(o.price, o.qty, spec.tick_size).is_none() {
            return Err(RejectCode::NotionalOverflow);
        }
        // 12
        if self.find_any(o.user, o.client_order_id).is_some() {
            return Err(RejectCode::DuplicateClientOrderId);
        }
        // 13
        if self.live().len() >= self.orders_max as usize {
            return Err(RejectCode::OrderPoolFull);
        }
        Ok(())
    }

    fn new_order(&mut self, o: &NewOrder, events: &mut Vec<Event>) {
        let valid = self.validate(o);
        self.note_client_order_id(o);
        if let Err(code) = valid {
            events.push(reject(o.user, o.client_order_id, code));
            return;
        }
        // Order ids (docs/matching.md): the order takes the lowest slot no live order's id
        // names (ids name slots modulo `orders_max` rounded up to a power of two), counting
        // slot 0 last, and gets the first id from `next_order_id` on that names that slot.
        let modulus = u64::from(self.orders_max).next_power_of_two();
        let taken: std::collections::BTreeSet<u64> =
            self.live().iter().map(|(o, _)| o.id.0 % modulus).collect();
        let slot = (1..modulus)
            .chain([0])
            .find(|s| !taken.contains(s))
            .expect("validated: the pool has room");
        let next = self.next_order_id;
        let id = OrderId(next + (slot + modulus - next % modulus) % modulus);
        self.next_order_id = id.0 + 1;
        // A budget order without a lot cap: the symbol's largest order caps it.
        let qty = if o.qty.0 == 0 {
            self.symbols[o.symbol.0 as usize].spec.max_order_qty
        } else {
            o.qty.0
        };
        // DAY: the first session end strictly after now.
        let expire_at = match o.tif {
            TimeInForce::Gtd => o.expire_at,
            TimeInForce::Day => {
                let end = self.day_end_ns.expect("validated");
                let day = crate::config::DAY_NS;
                let today = (self.now_ns / day) * day + end;
                if today > self.now_ns {
                    today
                } else {
                    today + day
                }
            }
            _ => 0,
        };
        events.push(Event::Accepted {
            user: o.user,
            symbol: o.symbol,
            client_order_id: o.client_order_id,
            order_id: id,
            side: o.side,
            order_type: o.order_type,
            price: o.price,
            qty: Qty(qty),
            display_qty: o.display_qty,
        });
        let order = RefOrder {
            id,
            user: o.user,
            client_order_id: o.client_order_id,
            symbol: o.symbol,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            price: o.price,
            stop_price: o.stop_price,
            leaves: qty,
            visible: 0,
            filled: 0,
            display: o.display_qty.0,
            post_only: o.post_only,
            stp: o.stp,
            expire_at,
        };
        match o.order_type {
            OrderType::Limit | OrderType::Market => self.execute(order, o.budget, events),
            OrderType::StopLimit | OrderType::StopMarket => {
                let last = self.symbols[o.symbol.0 as usize].last_price;
                if reaches(last, o.side, o.stop_price) {
                    events.push(order.triggered());
                    self.execute(order, 0, events);
                } else {
                    self.park_stop(order);
                }
            }
        }
        self.fire_stops(o.symbol, events);
    }

    /// Puts a stop at the back of the queue of its stop price.
    fn park_stop(&mut self, order: RefOrder) {
        let seq = self.next_stop_seq;
        self.next_stop_seq += 1;
        self.symbols[order.symbol.0 as usize]
            .stops_mut(order.side)
            .push(WaitingStop { seq, order });
    }

    // ------------------------------------------------------------------ execution

    /// "Execution of an active order": post-only, FOK, match, remainder.
    /// `budget`: a new budget order's quote budget (0: none).
    fn execute(&mut self, mut o: RefOrder, budget: u64, events: &mut Vec<Event>) {
        let sym = &mut self.symbols[o.symbol.0 as usize];
        let opposite = o.side.opposite();

        // 1. Post-only.
        if o.post_only {
            if let Some(best) = sym.best(opposite) {
                if acceptable(o.side, best, o.price) {
                    let qty = o.leaves;
                    o.leaves = 0;
                    events.push(o.cancelled(qty, CancelReason::PostOnly));
                    return;
                }
            }
        }

        // 2. Fill or kill.
        let fok = o.tif == TimeInForce::Fok;
        if fok && !Self::fok_feasible(sym, &o) {
            let qty = o.leaves;
            o.leaves = 0;
            events.push(o.cancelled(qty, CancelReason::Fok));
            return;
        }

        // 3. Match.
        Self::match_order(sym, &mut o, self.now_ns, budget, events);
        debug_assert!(
            !fok || o.leaves == 0,
            "a feasible FOK order must fill completely"
        );
        if o.leaves == 0 {
            return;
        }

        // 4. Remainder.
        let rests = matches!(
            o.tif,
            TimeInForce::Gtc | TimeInForce::Gtd | TimeInForce::Day
        ) && matches!(o.order_type, OrderType::Limit | OrderType::StopLimit);
        if rests {
            o.visible = o.peak();
            sym.side_mut(o.side)
                .entry(o.price)
                .or_default()
                .push_back(o);
        } else {
            let qty = o.leaves;
            o.leaves = 0;
            events.push(o.cancelled(qty, CancelReason::Ioc));
        }
    }

    /// The FOK rule of docs/matching.md, spelled out.
    fn fok_feasible(sym: &RefSymbol, o: &RefOrder) -> bool {
        let mut sum = 0u64;
        for (price, level) in sym.levels_best_first(o.side.opposite()) {
            if !acceptable(o.side, price, o.price) {
                return false;
            }
            for m in level {
                let own = m.user == o.user && o.stp != StpMode::None;
                if !own {
                    sum += m.leaves;
                } else if o.stp != StpMode::CancelOldest {
                    // It would stop or shrink the order part-way.
                    return false;
                }
            }
            if sum >= o.leaves {
                return true;
            }
        }
        false
    }

    /// Matches the incoming order `t` against the opposite side while it has open quantity and
    /// the best opposite level is acceptable. Always works on the oldest order of the best
    /// level: every maker the walk passes is either done, moved to the back (iceberg refill)
    /// or cancelled, except where matching stops.
    ///
    /// A budget order (`budget` non-zero) takes at each fill only the lots its budget still
    /// pays for, taker fee included, and stops at the first fill it cannot pay a lot of.
    fn match_order(
        sym: &mut RefSymbol,
        t: &mut RefOrder,
        now_ns: u64,
        budget: u64,
        events: &mut Vec<Event>,
    ) {
        let opposite = t.side.opposite();
        let mut budget_left = u128::from(budget);
        while t.leaves > 0 {
            let Some(price) = sym.best(opposite) else {
                break;
            };
            if !acceptable(t.side, price, t.price) {
                break;
            }
            let (tick, maker_bps, taker_bps) = (
                sym.spec.tick_size,
                sym.spec.maker_fee_bps,
                sym.spec.taker_fee_bps,
            );
            let level = sym
                .side_mut(opposite)
                .get_mut(&price)
                .expect("best level exists");
            let mut m = level.pop_front().expect("levels are never empty");
            let mut q = t.leaves.min(m.visible);
            let mut stop = false;
            let mut keep_at_front = false;
            let trades = t.stp == StpMode::None || m.user != t.user;
            if trades && budget != 0 {
                // The most lots the budget still pays for at this price, counted up one by one.
                let cost = |lots: u64| {
                    let n = u128::from(price.0 as u64) * u128::from(lots) * u128::from(tick);
                    n + (n * u128::from(taker_bps)).div_ceil(10_000)
                };
                // Bounded: `q` is at most the order's open quantity; a binary search keeps the
                // model quick for large caps while staying obviously right.
                let (mut lo, mut hi) = (0u64, q);
                while lo < hi {
                    let mid = lo + (hi - lo).div_ceil(2);
                    if cost(mid) <= budget_left {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                if lo == 0 {
                    // Not one lot more fits: here, or at any worse price.
                    level.push_front(m);
                    break;
                }
                q = lo;
                budget_left -= cost(q);
            }

            if trades {
                m.visible -= q;
                m.leaves -= q;
                m.filled += q;
                t.leaves -= q;
                t.filled += q;
                sym.trades += 1;
                events.push(Event::Trade(Trade {
                    symbol: t.symbol,
                    trade_id: TradeId(sym.trades),
                    ts: now_ns,
                    price,
                    qty: Qty(q),
                    taker_side: t.side,
                    maker: Fill {
                        user: m.user,
                        client_order_id: m.client_order_id,
                        order_id: m.id,
                        limit_price: m.price,
                        leaves_qty: Qty(m.leaves),
                        cum_qty: Qty(m.filled),
                        fee: fee(price, q, tick, maker_bps),
                    },
                    taker: Fill {
                        user: t.user,
                        client_order_id: t.client_order_id,
                        order_id: t.id,
                        limit_price: t.price,
                        leaves_qty: Qty(t.leaves),
                        cum_qty: Qty(t.filled),
                        fee: fee(price, q, tick, taker_bps),
                    },
                }));
                sym.last_price = Some(price);
            } else {
                match t.stp {
                    StpMode::None => unreachable!("handled above"),
                    StpMode::CancelNewest => {
                        keep_at_front = true;
                        let qty = t.leaves;
                        t.leaves = 0;
                        events.push(t.cancelled(qty, CancelReason::SelfTrade));
                        stop = true;
                    }
                    StpMode::CancelOldest => {
                        let qty = m.leaves;
                        m.leaves = 0;
                        m.visible = 0;
                        events.push(m.cancelled(qty, CancelReason::SelfTrade));
                    }
                    StpMode::CancelBoth => {
                        let qty = m.leaves;
                        m.leaves = 0;
                        m.visible = 0;
                        events.push(m.cancelled(qty, CancelReason::SelfTrade));
                        let qty = t.leaves;
                        t.leaves = 0;
                        events.push(t.cancelled(qty, CancelReason::SelfTrade));
                        stop = true;
                    }
                    StpMode::Decrement => {
                        m.visible -= q;
                        m.leaves -= q;
                        events.push(m.cancelled(q, CancelReason::SelfTrade));
                        t.leaves -= q;
                        events.push(t.cancelled(q, CancelReason::SelfTrade));
                    }
                }
            }

            // Put the maker back where it belongs (or nowhere, if it is done).
            let level = sym
                .side_mut(opposite)
                .get_mut(&price)
                .expect("level still exists");
            if keep_at_front || m.visible > 0 {
                level.push_front(m);
            } else if m.leaves > 0 {
                // Iceberg refill: a new peak at the back of the level.
                m.visible = m.peak();
                level.push_back(m);
            }
            if level.is_empty() {
                sym.side_mut(opposite).remove(&price);
            }
            if stop {
                break;
            }
        }
    }

    /// "Firing stops": while the last price reaches a waiting stop, trigger the first one (buy
    /// stops before sell stops) and run it to completion.
    fn fire_stops(&mut self, symbol: SymbolId, events: &mut Vec<Event>) {
        loop {
            let sym = &self.symbols[symbol.0 as usize];
            let last = sym.last_price;
            let next = [Side::Buy, Side::Sell].into_iter().find_map(|side| {
                sym.stops_in_trigger_order(side)
                    .into_iter()
                    .find(|o| reaches(last, side, o.stop_price))
            });
            let Some(order) = next else {
                return;
            };
            let stops = self.symbols[symbol.0 as usize].stops_mut(order.side);
            let pos = stops
                .iter()
                .position(|s| s.order.id == order.id)
                .expect("the stop is waiting");
            stops.remove(pos);
            events.push(order.triggered());
            self.execute(order, 0, events);
        }
    }

    // ------------------------------------------------------------------ cancel, amend

    fn cancel(
        &mut self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
        events: &mut Vec<Event>,
    ) {
        match self.find(user, symbol, target) {
            Ok((o, place)) => self.cancel_live(&o, place, CancelReason::User, events),
            Err(code) => events.push(reject(user, self.reject_coid(user, target), code)),
        }
        self.fire_stops_if_known(symbol, events);
    }

    /// `Cancelled(reason)` for the whole open quantity, and the order is gone.
    fn cancel_live(
        &mut self,
        o: &RefOrder,
        place: Place,
        reason: CancelReason,
        events: &mut Vec<Event>,
    ) {
        let mut o = self.remove(o, place);
        let qty = o.leaves;
        o.leaves = 0;
        events.push(o.cancelled(qty, reason));
    }

    fn fire_stops_if_known(&mut self, symbol: SymbolId, events: &mut Vec<Event>) {
        if (symbol.0 as usize) < self.symbols.len() {
            self.fire_stops(symbol, events);
        }
    }

    fn amend(
        &mut self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
        price: Price,
        qty: Qty,
        events: &mut Vec<Event>,
    ) {
        self.amend_inner(user, symbol, target, price, qty, events);
        self.fire_stops_if_known(symbol, events);
    }

    fn amend_inner(
        &mut self,
        user: UserId,
        symbol: SymbolId,
        target: OrderRef,
        price: Price,
        qty: Qty,
        events: &mut Vec<Event>,
    ) {
        let coid = self.reject_coid(user, target);
        let (o, place) = match self.find(user, symbol, target) {
            Ok(found) => found,
            Err(code) => return events.push(reject(user, coid, code)),
        };
        if qty.0 == 0 {
            return self.cancel_live(&o, place, CancelReason::User, events);
        }
        let sym = &self.symbols[symbol.0 as usize];
        let resting = matches!(place, Place::Resting { .. });
        // The order's total (filled + open) may not exceed the symbol's maximum.
        let code = if o.filled.saturating_add(qty.0) > sym.spec.max_order_qty {
            Some(RejectCode::QuantityTooLarge)
        } else if !sym.spec.in_band(price) {
            Some(RejectCode::PriceOutOfBand)
        } else if checked_notional(price, qty, sym.spec.tick_size).is_none() {
            Some(RejectCode::NotionalOverflow)
        } else if resting
            && o.post_only
            && price != o.price
            && sym
                .best(o.side.opposite())
                .is_some_and(|best| acceptable(o.side, best, price))
        {
            Some(RejectCode::PostOnlyWouldTake)
        } else {
            None
        };
        if let Some(code) = code {
            return events.push(reject(user, coid, code));
        }
        let amended = Event::Amended {
            user,
            symbol,
            client_order_id: coid,
            order_id: o.id,
            side: o.side,
            price,
            qty,
            prev_price: o.price,
            prev_qty: Qty(o.leaves),
        };
        let sym = &mut self.symbols[symbol.0 as usize];
        match place {
            Place::Stop { side, pos } => {
                let stops = sym.stops_mut(side);
                let grows = qty.0 > stops[pos].order.leaves;
                stops[pos].order.price = price;
                stops[pos].order.leaves = qty.0;
                if grows {
                    // Loses its place: to the back of its stop level.
                    stops[pos].seq = self.next_stop_seq;
                    self.next_stop_seq += 1;
                }
                events.push(amended);
            }
            Place::Resting {
                side,
                price: old_price,
                pos,
            } if price == old_price && qty.0 <= o.leaves => {
                // Reduced in place, keeping time priority.
                let m = &mut sym.side_mut(side).get_mut(&old_price).expect("level")[pos];
                m.leaves = qty.0;
                m.visible = m.visible.min(qty.0);
                events.push(amended);
            }
            Place::Resting { .. } => {
                // Re-priced or grown: leaves its level and comes in again as a taker.
                let mut o = self.remove(&o, place);
                o.price = price;
                o.leaves = qty.0;
                events.push(amended);
                self.execute(o, 0, events);
            }
        }
    }

    fn mass_cancel(
        &mut self,
        user: UserId,
        symbol: Option<SymbolId>,
        on_disconnect: bool,
        events: &mut Vec<Event>,
    ) {
        let reason = if on_disconnect {
            CancelReason::Disconnect
        } else {
            CancelReason::User
        };
        if user.0 >= self.users_max {
            return events.push(reject(user, ClientOrderId(0), RejectCode::UnknownUser));
        }
        if symbol.is_some_and(|s| s.0 as usize >= self.symbols.len()) {
            return events.push(reject(user, ClientOrderId(0), RejectCode::UnknownSymbol));
        }
        let mut victims: Vec<RefOrder> = self
            .live()
            .into_iter()
            .map(|(o, _)| o)
            .filter(|o| o.user == user && symbol.is_none_or(|s| o.symbol == s))
            .collect();
        victims.sort_by_key(|o| o.id);
        for v in &victims {
            let (o, place) = self
                .find_any(v.user, v.client_order_id)
                .expect("still live");
            self.cancel_live(&o, place, reason, events);
        }
        events.push(Event::MassCancelled {
            user,
            symbol,
            count: victims.len() as u32,
        });
        match symbol {
            Some(s) => self.fire_stops(s, events),
            None => {
                for s in 0..self.symbols.len() {
                    self.fire_stops(SymbolId(s as u16), events);
                }
            }
        }
    }

    // ------------------------------------------------------------------ queries

    /// Replies to a query about the book (docs/matching.md, "Queries"); balances are the
    /// accounts' business, so the book alone answers nothing for them.
    fn answer(&self, q: &Query, events: &mut Vec<Event>) {
        match *q {
            Query::Order {
                user,
                client_order_id,
            } => {
                let order = self.order(user, client_order_id);
                let finished = match order {
                    Some(_) => None,
                    None => self.finished.get(&user).and_then(|ring| {
                        ring.iter()
                            .rev()
                            .find(|f| f.client_order_id == client_order_id)
                            .copied()
                    }),
                };
                events.push(self.status_reply(user, Some(client_order_id), order, finished));
            }
            Query::OrderById { user, order_id } => {
                // The user's live order with this id, else its newest finished one; id 0 (a
                // rejected order's) names nothing, and another user's order is not found.
                let live = self
                    .live()
                    .into_iter()
                    .find(|(o, _)| o.id == order_id && order_id.0 != 0);
                let (order, finished) = match live {
                    Some((o, _)) if o.user == user => (self.order(o.user, o.client_order_id), None),
                    Some(_) => (None, None),
                    None if order_id.0 == 0 => (None, None),
                    None => (
                        None,
                        self.finished.get(&user).and_then(|ring| {
                            ring.iter().rev().find(|f| f.order_id == order_id).copied()
                        }),
                    ),
                };
                events.push(self.status_reply(user, None, order, finished));
            }
            Query::OpenOrders { user, limit } => {
                // Acceptance order is order-id order: ids are handed out as orders are accepted.
                let mut mine: Vec<OrderView> = self
                    .live()
                    .into_iter()
                    .filter(|(o, _)| o.user == user)
                    .map(|(o, _)| self.order(o.user, o.client_order_id).unwrap())
                    .collect();
                mine.sort_by_key(|o| o.order_id);
                for o in mine.iter().take(limit as usize) {
                    events.push(Event::OpenOrder(*o));
                }
                events.push(Event::OpenOrdersEnd {
                    user,
                    count: mine.len() as u32,
                });
            }
            Query::Book { symbol, depth } => {
                if symbol.0 as usize >= self.symbols.len() {
                    events.push(reject(
                        UserId(0),
                        ClientOrderId(0),
                        RejectCode::UnknownSymbol,
                    ));
                    return;
                }
                let mut counts = [0u32; 2];
                for (i, side) in [Side::Buy, Side::Sell].into_iter().enumerate() {
                    self.depth(symbol, side, depth as usize, |price, qty| {
                        counts[i] += 1;
                        events.push(Event::BookLevel {
                            symbol,
                            side,
                            price,
                            qty,
                        });
                    });
                }
                events.push(Event::BookEnd {
                    symbol,
                    bid_levels: counts[0],
                    ask_levels: counts[1],
                });
            }
            Query::Balances { .. } => {}
        }
    }

    /// A status query's reply: the filled notional of whichever was found, and the client
    /// order id asked about, or (by engine id, `None`) the found order's, 0 if none.
    fn status_reply(
        &self,
        user: UserId,
        asked: Option<ClientOrderId>,
        order: Option<OrderView>,
        finished: Option<FinishedOrder>,
    ) -> Event {
        let (filled_notional, found) = match (order, finished) {
            (Some(o), _) => (
                self.known.get(&o.order_id).map_or(0, |k| k.notional),
                o.client_order_id,
            ),
            (None, Some(f)) => (f.filled_notional, f.client_order_id),
            (None, None) => (0, ClientOrderId(0)),
        };
        Event::OrderStatus {
            user,
            client_order_id: asked.unwrap_or(found),
            order,
            finished,
            filled_notional,
        }
    }

    /// The live order of `user` with this client order id.
    pub fn order(&self, user: UserId, coid: ClientOrderId) -> Option<OrderView> {
        let (o, place) = self.find_any(user, coid)?;
        Some(match place {
            Place::Resting { .. } => o.view(o.visible),
            Place::Stop { .. } => o.view(o.leaves),
        })
    }

    /// The live order with engine id `id`, whoever owns it.
    pub fn order_by_id(&self, id: OrderId) -> Option<OrderView> {
        let (o, place) = self.live().into_iter().find(|(o, _)| o.id == id)?;
        Some(match place {
            Place::Resting { .. } => o.view(o.visible),
            Place::Stop { .. } => o.view(o.leaves),
        })
    }

    /// Every live order of a symbol in canonical order: bids best first, asks best first, buy
    /// stops in trigger order, sell stops in trigger order; FIFO within a level.
    pub fn for_each_order(&self, symbol: SymbolId, mut f: impl FnMut(BookSection, &OrderView)) {
        for (section, o, visible) in self.symbols[symbol.0 as usize].all_orders() {
            f(section, &o.view(visible));
        }
    }

    /// Level-2 depth of one side: `(price, visible qty)` best first, at most `levels_max`.
    pub fn depth(
        &self,
        symbol: SymbolId,
        side: Side,
        levels_max: usize,
        mut f: impl FnMut(Price, Qty),
    ) {
        let sym = &self.symbols[symbol.0 as usize];
        for (price, level) in sym.levels_best_first(side).into_iter().take(levels_max) {
            f(price, Qty(level.iter().map(|o| o.visible).sum()));
        }
    }

    /// Best bid `(price, visible qty)`.
    pub fn best_bid(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        let mut best = None;
        self.depth(symbol, Side::Buy, 1, |p, q| best = Some((p, q)));
        best
    }

    /// Best ask `(price, visible qty)`.
    pub fn best_ask(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        let mut best = None;
        self.depth(symbol, Side::Sell, 1, |p, q| best = Some((p, q)));
        best
    }

    /// Price of the symbol's last trade.
    pub fn last_trade_price(&self, symbol: SymbolId) -> Option<Price> {
        self.symbols[symbol.0 as usize].last_price
    }

    /// Id of the symbol's last trade (0 before its first).
    pub fn last_trade_id(&self, symbol: SymbolId) -> TradeId {
        TradeId(self.symbols[symbol.0 as usize].trades)
    }

    /// Live orders across all symbols.
    pub fn live_orders(&self) -> u32 {
        self.live().len() as u32
    }

    /// The id the next accepted order will get.
    pub fn next_order_id(&self) -> OrderId {
        OrderId(self.next_order_id)
    }

    /// Feeds the state into `h` in the canonical sequence of docs/matching.md ("State hash"),
    /// the same sequence as `Matcher::hash_into`.
    pub fn hash_into(&self, h: &mut StateHasher) {
        h.u64(self.next_order_id);
        h.u64(self.now_ns);
        for (s, sym) in self.symbols.iter().enumerate() {
            h.u64(s as u64);
            h.i64(sym.last_price.map_or(0, |p| p.0));
            h.u64(sym.trades);
            let orders = sym.all_orders();
            for section in BookSection::ALL {
                let in_section: Vec<_> = orders
                    .iter()
                    .filter(|(sec, _, _)| *sec == section)
                    .collect();
                if in_section.is_empty() {
                    continue;
                }
                h.u64(0x5ec7_1000 + section as u64);
                for (_, o, visible) in in_section {
                    o.view(*visible).hash_into(h);
                    h.u64(self.known.get(&o.id).map_or(0, |k| k.notional));
                }
            }
            h.u64(orders.len() as u64);
        }
        h.u64(0xc01d_0000);
        for (user, high) in &self.coid_high {
            h.u64(u64::from(user.0));
            h.u64(*high);
        }
        h.u64(0xf1_0000);
        for (user, ring) in &self.finished {
            if ring.is_empty() {
                continue;
            }
            h.u64(u64::from(user.0));
            for f in ring {
                f.hash_into(h);
            }
            h.u64(ring.len() as u64);
        }
    }

    /// The digest of the whole state; equal to `Matcher::state_hash` for equal states.
    pub fn state_hash(&self) -> StateHash {
        let mut h = StateHasher::default();
        self.hash_into(&mut h);
        h.finish()
    }
}
