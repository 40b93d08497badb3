//! Test support shared by ringbook's crates (a dev-dependency only; never shipped).
//!
//! - [`alloc`]: the counting global allocator behind every zero-allocation test and the
//!   pipeline bench's `allocations_after_start`.
//! - [`rng`]: SplitMix64, the fixed-seed generator of the deterministic command streams.
//! - `orders` (feature `engine`): the proptest generators the engine's property tests share.

pub mod alloc;
#[cfg(feature = "engine")]
pub mod orders;
pub mod rng;
