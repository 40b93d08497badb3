//! ringbook's network gateway: a mio binary-protocol server in front of the engine pipeline.
//!
//! Nothing lives here yet: the gateway is built by its own issue (SPEC §5). The crate exists so
//! the workspace has the layout SPEC §2 fixes from the first commit.
#![forbid(unsafe_code)]
