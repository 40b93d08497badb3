//! # ringbook-gateway
//!
//! ringbook's network face (SPEC §5): a documented little-endian binary protocol
//! ([`protocol`], docs/protocol.md), a mio server in front of the engine ([`server`]) and a
//! blocking client library ([`client`]) that the load harness and the tests use.
//!
//! ```no_run
//! use ringbook_gateway::client::Client;
//! use ringbook_engine::prelude::*;
//!
//! let mut c = Client::connect("127.0.0.1:7700".parse().unwrap())?;
//! c.login("alice", "alice-demo", 1, false)?;
//! let order = NewOrder::limit(UserId(1), SymbolId(0), ClientOrderId(1), Side::Buy, Price(15_000), Qty(1));
//! c.send(&Command::NewOrder(order).into())?;
//! let reply = c.recv()?;
//! println!("{reply:?}");
//! # Ok::<(), ringbook_gateway::client::ClientError>(())
//! ```
//!
//! ## Testing
//!
//! Unit tests sit beside the code; `tests/codec_props.rs` feeds arbitrary bytes to both
//! decoders and round-trips every message; `tests/server.rs` starts the real server on a free
//! loopback port and drives it with good and hostile clients at once.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod protocol;
pub mod server;
