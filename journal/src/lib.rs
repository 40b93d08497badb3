//! ringbook's journal: memory-mapped, checksummed, append-only segments and snapshots.
//!
//! Nothing lives here yet: the journal is built by its own issue (SPEC §6). The crate exists so
//! the workspace has the layout SPEC §2 fixes from the first commit.
#![forbid(unsafe_code)]
