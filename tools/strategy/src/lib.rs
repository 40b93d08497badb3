//! # ringbook-strategy
//!
//! Trading strategies, the positions and risk around them, backtests on the real matching
//! engine, and bots that trade against a running `ringbook serve` (docs/strategies.md).
//!
//! - [`candle`]: the strategies' input ([`candle::Candle`]) and the trade-to-candle aggregator
//!   that stands in for the engine's market-data builder;
//! - [`strategy`]: volatility breakout, grid, turtle, market maker, noise taker — deterministic
//!   state machines from candles and order notes to order intents, in integers;
//! - [`ledger`]: the position service (order states, average price, PnL, slippage);
//! - [`bot`]: a strategy with its ledger and risk limits, speaking engine commands;
//! - [`backtest`]: the engine as the simulator (LOBSTER flow or synthesised candle books),
//!   reports, plots, sweeps and proposals;
//! - [`live`]: `ringbook bots`, strategies as clients of a server over the binary protocol.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backtest;
pub mod bot;
pub mod candle;
pub mod files;
pub mod ledger;
pub mod live;
pub mod strategy;
