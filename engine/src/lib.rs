//! # ringbook-engine
//!
//! The deterministic core of ringbook, an LMAX-style exchange: fixed-point, array-indexed order
//! books with price-time priority and every order type a venue needs (limit, market with a
//! protection price, IOC, FOK, post-only, stop-limit, stop-market, iceberg, self-trade
//! prevention, amend, cancel, mass cancel), accounts with pre-trade risk, settlement and fees, and
//! two-operator withdrawals.
//!
//! ## Use
//!
//! Build an [`Engine`] from a [`Config`] (the embedded default, or TOML), feed it
//! [`Command`]s, receive [`Event`]s through any `FnMut(&Event)`:
//!
//! ```
//! use ringbook_engine::prelude::*;
//!
//! let config = Config::default(); // KRW, USD, BTC, ETH, AAPL; BTC-KRW, ETH-KRW, AAPL-USD
//! let aapl = config.symbol_id("AAPL-USD").unwrap();
//! let (shares, cents) = (config.currency_id("AAPL").unwrap(), config.currency_id("USD").unwrap());
//! let mut engine = Engine::new(&config)?; // risk on: orders must be paid for
//! let mut trades = 0;
//! let mut sink = |e: &Event| if let Event::Trade(_) = e { trades += 1 };
//!
//! let (seller, buyer) = (UserId(7), UserId(8));
//! engine.process(&Command::Deposit { user: seller, currency: shares, amount: 100 }, &mut sink);
//! engine.process(&Command::Deposit { user: buyer, currency: cents, amount: 1_000_000 }, &mut sink);
//! // A resting iceberg sell: 100 shares at $190.00, showing 10 at a time.
//! let mut iceberg = NewOrder::limit(seller, aapl, ClientOrderId(1), Side::Sell, Price(19_000), Qty(100));
//! iceberg.display_qty = Qty(10);
//! engine.process(&Command::NewOrder(iceberg), &mut sink);
//! // A market buy for 25 that will not pay more than $190.50.
//! let buy = NewOrder::market(buyer, aapl, ClientOrderId(1), Side::Buy, Price(19_050), Qty(25));
//! engine.process(&Command::NewOrder(buy), &mut sink);
//!
//! assert_eq!(trades, 3); // 10 + 10 + 5, refilling the peak twice
//! assert_eq!(engine.best_ask(aapl), Some((Price(19_000), Qty(5))));
//! // $4,750.00 plus 3 bps taker fees rounded up per trade (57 + 57 + 29 cents).
//! assert_eq!(engine.balance(buyer, cents).available, 1_000_000 - 475_000 - 143);
//! assert_eq!(engine.balance(buyer, shares).available, 25);
//! println!("state {}", engine.state_hash());
//! # Ok::<(), ConfigError>(())
//! ```
//!
//! ## Layout
//!
//! - [`types`], [`command`], [`event`], [`codes`]: the vocabulary (newtypes, one command type,
//!   one event type, stable reject codes).
//! - [`config`]: reference data and capacities, validated at start-up.
//! - [`Engine`]: the stages composed on one thread, with risk on (default) or off
//!   ([`RiskMode`]); its queries return [`book::OrderView`]s, and [`Engine::matcher`] and
//!   [`Engine::accounts`] give read-only access to the matching state ([`matching::Matcher`])
//!   and the balances ([`risk::accounts::Accounts`]).
//! - [`pipeline`]: the same stages on threads joined by disruptor rings (J → R → M → S), with
//!   the journal, recovery and snapshots — see docs/embedding.md and the `exchange` example.
//! - [`marketdata`]: the market-data builder, a projection of the event stream (L2 depth with
//!   `md_seq` updates, trade tape, candles, 24h tickers), run by whoever consumes events.
//! - [`codec`]: the command encoding the journal stores; [`snapshot`]: engine state to bytes
//!   and back.
//!
//! Inside, the stages are `risk/stage.rs` (R), `matching/` (M) and `settlement.rs` (S), handing
//! over a `Plan` (`plan.rs`); `engine.rs` composes them (docs/architecture.md has the map).
//! What an embedder may call is listed in docs/embedding.md, "Public API"; the rest is
//! crate-private, so no caller can break the book's or the accounts' invariants.
//!
//! After [`Engine::new`], processing a command never touches the heap: every pool, array and
//! index is sized from the config up front, and a full pool is a clean `ORDER_POOL_FULL` reject.
//!
//! ## Testing
//!
//! Unit tests sit beside the code; `tests/` holds scenario tests, the property tests that hold
//! the fast book equal to the reference models (`book::reference`, `risk::reference`: compiled
//! only with the `testing` feature, which the engine's own tests and the benches enable), and
//! the counting-allocator test that proves the zero-allocation claim. The matching rules are in
//! docs/matching.md.
// Unsafe code is allowed only in the pipeline modules that need it (slot.rs, shared.rs, stages.rs).
#![deny(unsafe_code)]
#![warn(missing_docs)]
// Without the `pipeline` feature the crate docs still name it (and link it when it is on).
#![cfg_attr(not(feature = "pipeline"), allow(rustdoc::broken_intra_doc_links))]

pub mod book;
pub mod codec;
pub mod codes;
pub mod command;
pub mod config;
mod engine;
pub mod event;
mod hash;
pub mod le;
pub mod marketdata;
pub mod matching;
pub mod memory;
#[cfg(feature = "pipeline")]
pub mod pipeline;
mod plan;
pub mod risk;
mod settlement;
pub mod snapshot;
pub mod types;

pub use codes::{CancelReason, RejectCode};
pub use command::{Command, NewOrder, Query};
pub use config::{Config, ConfigError};
pub use engine::{Engine, RiskMode};
pub use event::{Event, EventSink, Fill, Trade};
pub use hash::StateHash;
pub use matching::{FinishedOrder, OrderStatus};
#[cfg(feature = "pipeline")]
pub use pipeline::{Pipeline, PipelineBuilder, PipelineError, PipelineGauges};
pub use types::*;

/// Everything an embedder usually needs, in one import.
pub mod prelude {
    pub use crate::codes::{CancelReason, RejectCode};
    pub use crate::command::{Command, NewOrder, Query};
    pub use crate::config::{Config, ConfigError};
    pub use crate::engine::{Engine, RiskMode};
    pub use crate::event::{Event, EventSink, Fill, Trade};
    pub use crate::hash::StateHash;
    pub use crate::matching::{FinishedOrder, OrderStatus};
    pub use crate::risk::accounts::Balance;
    pub use crate::types::*;
}
