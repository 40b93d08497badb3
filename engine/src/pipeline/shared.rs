//! The engine state shared by the R, M and S threads of the split layout.
//!
//! R, M and S keep the engine's state where it is — one [`Engine`] — and each stage thread
//! reaches only the fields its stage touches, through a raw pointer:
//!
//! | stage | reads | writes |
//! |---|---|---|
//! | R | `matcher` (validation, amend checks; at the command's stamp), `specs` | `accounts` (locks, account commands) |
//! | M | the slot's R decision | `matcher` |
//! | S | `specs` | `accounts` |
//!
//! # Why this is sound
//!
//! The stages run in lock-step per command: R(n) → M(n) → S(n) → R(n+1). Each arrow is a
//! happens-before edge through an atomic `Release` store and an `Acquire` load:
//!
//! - R(n) → M(n): R releases slot n on the inbound ring (its cursor, stored `Release`); M's
//!   poller waits on R's cursor (loaded `Acquire`).
//! - M(n) → S(n): M publishes `Begin(n)`, the events and `Done(n)` on the M → S ring (the
//!   producer cursor, `Release`); S's poller loads it `Acquire`.
//! - S(n) → R(n+1): after `Done(n)`, S stores `s_done = n` with `Release`
//!   ([`Control::set_s_done`](super::control::Control)); R waits until it loads (`Acquire`)
//!   `s_done ≥ n` before it touches the state for command n + 1.
//!
//! So whenever R runs, M and S are idle (M waits for R's release, S has finished every earlier
//! command and M has not started the next): R may take `&mut Accounts` and `&Matcher` — or
//! `&Engine` for a snapshot. M(n) and S(n) do overlap (S settles M's events while M is still
//! matching, so a sweep of any length streams through the bounded M → S ring), but they touch
//! disjoint fields: M only `matcher`, S only `accounts` (and the immutable `specs`). No
//! reference is held across a hand-off: each stage creates its references for one command and
//! drops them before it releases that command (S holds `&mut Accounts` from `Begin(n)` to
//! `Done(n)`, during which R is waiting for `s_done ≥ n`).
//!
//! The pointer comes from `Box::into_raw` and is turned back into the box only after every
//! stage thread has been joined (or was never started).

use crate::engine::{Engine, RiskMode};
use crate::matching::Matcher;
use crate::risk::accounts::Accounts;
use crate::risk::RiskSpec;

/// The split layout's engine: owned here, reached by R, M and S under the rules above.
#[derive(Debug)]
pub(crate) struct SharedEngine {
    engine: *mut Engine,
}

// SAFETY: the pointee is only accessed under the lock-step protocol in the module docs, which
// orders every access across threads with Release/Acquire pairs; `Engine` itself is `Send`.
unsafe impl Send for SharedEngine {}
// SAFETY: as above: `&SharedEngine` hands out field references only through the `unsafe`
// methods below, whose callers follow the protocol.
unsafe impl Sync for SharedEngine {}

impl SharedEngine {
    pub(crate) fn new(engine: Engine) -> SharedEngine {
        SharedEngine {
            engine: Box::into_raw(Box::new(engine)),
        }
    }

    /// R's view: the risk mode, the specs, the accounts (written), the matcher (read).
    ///
    /// # Safety
    ///
    /// Only on the R thread, after `s_done ≥ seq − 1` was loaded for the command `seq` it
    /// processes, and only until it releases that command.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn risk_parts(&self) -> (RiskMode, &[RiskSpec], &mut Accounts, &Matcher) {
        let e = self.engine;
        // SAFETY: M and S are idle (module docs); the fields are disjoint places, projected
        // without creating a reference to the whole engine.
        unsafe {
            (
                (*e).risk,
                &*std::ptr::addr_of!((*e).specs),
                &mut *std::ptr::addr_of_mut!((*e).accounts),
                &*std::ptr::addr_of!((*e).matcher),
            )
        }
    }

    /// M's view: the matcher.
    ///
    /// # Safety
    ///
    /// Only on the M thread, between taking a command R released and releasing it to S's
    /// `Done`; S touches only the accounts meanwhile, and R waits for S.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn matcher(&self) -> &mut Matcher {
        // SAFETY: see above: M is the only one touching `matcher` now.
        unsafe { &mut *std::ptr::addr_of_mut!((*self.engine).matcher) }
    }

    /// The risk mode (never written after start).
    #[inline]
    pub(crate) fn risk(&self) -> RiskMode {
        // SAFETY: `risk` is written only when the engine is built, before any stage starts.
        unsafe { (*self.engine).risk }
    }

    /// S's view: the specs and the accounts.
    ///
    /// # Safety
    ///
    /// Only on the S thread, from a command's `Begin` to its `Done` (before `s_done` is
    /// stored); M touches only the matcher meanwhile, and R waits for S.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn settle_parts(&self) -> (&[RiskSpec], &mut Accounts) {
        let e = self.engine;
        // SAFETY: see above: S is the only one touching `accounts` now; `specs` is never
        // written after start.
        unsafe {
            (
                &*std::ptr::addr_of!((*e).specs),
                &mut *std::ptr::addr_of_mut!((*e).accounts),
            )
        }
    }

    /// The whole engine, read-only (for a snapshot).
    ///
    /// # Safety
    ///
    /// Only on the R thread at a command boundary, under the same conditions as
    /// [`SharedEngine::risk_parts`] (M and S idle, nobody writing).
    #[inline]
    pub(crate) unsafe fn engine(&self) -> &Engine {
        // SAFETY: see above: no thread writes the engine while R holds the boundary.
        unsafe { &*self.engine }
    }

    /// The engine back, once every stage thread has been joined.
    pub(crate) fn into_engine(self) -> Engine {
        let engine = self.engine;
        std::mem::forget(self);
        // SAFETY: `engine` came from `Box::into_raw` and this is the last owner: `self` is
        // consumed, and the stage threads that shared it are joined (they hold it by `Arc`,
        // which had to be unwrapped to get here).
        *unsafe { Box::from_raw(engine) }
    }
}

impl Drop for SharedEngine {
    fn drop(&mut self) {
        // SAFETY: as in `into_engine`: the last owner, every user joined.
        drop(unsafe { Box::from_raw(self.engine) });
    }
}
