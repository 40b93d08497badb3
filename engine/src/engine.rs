//! The single-threaded engine core: the stages of the pipeline applied in order on one thread.
//!
//! Today the only stage is matching ([`Matcher`]); risk (pre-trade check and lock) and
//! settlement join in front of and behind it with the accounts issue, and the threaded pipeline
//! runs the same stages on ring buffers. Every way of running ringbook — embedded, threaded,
//! replayed — goes through these stage types, which is what makes their outputs identical.

use crate::book::{BookSection, OrderView};
use crate::command::Command;
use crate::config::{Config, ConfigError};
use crate::event::EventSink;
use crate::hash::{StateHash, StateHasher};
use crate::matching::Matcher;
use crate::types::{ClientOrderId, Price, Qty, Side, SymbolId, UserId};

/// Deterministic exchange core: apply commands, get events, hash the state.
///
/// ```
/// use ringbook_engine::prelude::*;
///
/// let mut engine = Engine::new(&Config::default()).unwrap();
/// let btc = SymbolId(0);
/// let mut events = Vec::new();
/// let mut sink = |e: &Event| events.push(*e);
/// engine.process(&Command::NewOrder(NewOrder::limit(UserId(1), btc, ClientOrderId(1), Side::Sell, Price(15_000), Qty(5))), &mut sink);
/// engine.process(&Command::NewOrder(NewOrder::limit(UserId(2), btc, ClientOrderId(1), Side::Buy, Price(15_100), Qty(3))), &mut sink);
/// assert!(matches!(events[2], Event::Trade(t) if t.price == Price(15_000) && t.qty == Qty(3)));
/// assert_eq!(engine.best_ask(btc), Some((Price(15_000), Qty(2))));
/// ```
#[derive(Debug)]
pub struct Engine {
    config: Config,
    matcher: Matcher,
}

impl Engine {
    /// Validates `config` and allocates every pool and book it sizes.
    pub fn new(config: &Config) -> Result<Engine, ConfigError> {
        config.validate()?;
        Ok(Engine {
            config: config.clone(),
            matcher: Matcher::new(config),
        })
    }

    /// Applies one command; every consequence goes to `sink`, in order.
    #[inline]
    pub fn process<S: EventSink + ?Sized>(&mut self, cmd: &Command, sink: &mut S) {
        self.matcher.process(cmd, sink);
    }

    /// The configuration the engine was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The matching stage, for queries.
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// A live order by its owner's client order id.
    pub fn order(&self, user: UserId, coid: ClientOrderId) -> Option<OrderView> {
        self.matcher.order(user, coid)
    }

    /// Level-2 depth `(price, visible qty)`, best first.
    pub fn depth(
        &self,
        symbol: SymbolId,
        side: Side,
        levels_max: usize,
        f: impl FnMut(Price, Qty),
    ) {
        self.matcher.depth(symbol, side, levels_max, f)
    }

    /// Every live order of a symbol in canonical order.
    pub fn for_each_order(&self, symbol: SymbolId, f: impl FnMut(BookSection, &OrderView)) {
        self.matcher.for_each_order(symbol, f)
    }

    /// Best bid.
    pub fn best_bid(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        self.matcher.best_bid(symbol)
    }

    /// Best ask.
    pub fn best_ask(&self, symbol: SymbolId) -> Option<(Price, Qty)> {
        self.matcher.best_ask(symbol)
    }

    /// Digest of the whole state: equal states, equal hashes, across runs and implementations.
    pub fn state_hash(&self) -> StateHash {
        let mut h = StateHasher::default();
        self.matcher.hash_into(&mut h);
        h.finish()
    }
}
