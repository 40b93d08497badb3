//! # ringbook-gateway
//!
//! ringbook's network face (docs/overview.md §5): a documented little-endian binary protocol
//! ([`protocol`], docs/protocol.md) and a mio server in front of the engine ([`server`]). The
//! protocol is its own crate, `ringbook-protocol` (`gateway/protocol/`), re-exported here as
//! [`protocol`], so that clients and the web edge can speak it without building the server. The
//! blocking client library that the load harness and the tests use is `ringbook-client`
//! (`gateway/client/`), which depends on the protocol crate, not on this one.
//!
//! ## Testing
//!
//! Unit tests sit beside the code; `tests/codec_props.rs` feeds arbitrary bytes to both
//! decoders and round-trips every message; `tests/server.rs` starts the real server on a free
//! loopback port and drives it with good and hostile clients at once; `tests/web_bridge.rs`
//! stands in for the web edge on [`server::WebBridge`] (shared login throttling, shared
//! authorization, in-order sequencing and exactly-once replies with a full ring).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub use ringbook_protocol as protocol;
pub mod server;
