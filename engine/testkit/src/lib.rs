//! Test support shared by ringbook's crates: their tests and the benches use it; nothing shipped
//! depends on it (`publish = false`).
//!
//! - [`alloc`]: the counting global allocator behind every zero-allocation test and the
//!   pipeline bench's `allocations_after_start`.
//! - [`docs`]: holding a document in docs/ to the numbers the code uses.
//! - [`rng`]: SplitMix64, the fixed-seed generator of the deterministic command streams.
//! - `orders` (feature `engine`): the proptest generators the engine's property tests share.

pub mod alloc;
pub mod docs;
#[cfg(feature = "engine")]
pub mod orders;
pub mod rng;
