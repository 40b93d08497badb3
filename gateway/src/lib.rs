//! # ringbook-gateway
//!
//! ringbook's network face (docs/overview.md §5): a documented little-endian binary protocol
//! ([`protocol`], docs/protocol.md) and a mio server in front of the engine ([`server`]). The
//! blocking client library that the load harness and the tests use is its own crate,
//! `ringbook-client` (`gateway/client/`), which re-exports [`protocol`].
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

pub mod protocol;
pub mod server;
