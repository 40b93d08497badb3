//! The messages that travel between stages.
//!
//! - [`InSlot`]: one command on the inbound ring, with its sequence and timestamp (assigned by
//!   the producer at submit, journaled by J) and a cell where R leaves its decision for M.
//! - [`SettleMsg`]: M's output for S in the split layout: `Begin(plan)`, the command's events,
//!   `Done`.
//!
//! R's cell is an `UnsafeCell` because the disruptor hands consumers `&InSlot`: the slot is
//! shared between the J, R and M cursors, and only R writes it (see [`InSlot::set_risk`]).

use std::cell::UnsafeCell;

use arrayvec::ArrayVec;

use crate::command::Command;
use crate::event::{Event, EventSink};
use crate::plan::Plan;
use crate::risk::stage::RISK_EVENTS_MAX;
use crate::types::{Seq, UserId};

/// R's decision for one command: the plan for M and S, and the events R answered with itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct RiskOut {
    pub(crate) plan: Plan,
    pub(crate) events: ArrayVec<Event, RISK_EVENTS_MAX>,
}

impl EventSink for RiskOut {
    #[inline]
    fn on_event(&mut self, event: &Event) {
        // R emits at most RISK_EVENTS_MAX events (engine.rs); more would be a bug in R.
        self.events.push(*event);
    }
}

/// One command on the inbound ring (or channel).
#[derive(Debug)]
pub(crate) struct InSlot {
    pub(crate) seq: Seq,
    pub(crate) timestamp_ns: u64,
    pub(crate) cmd: Command,
    risk: UnsafeCell<RiskOut>,
}

// SAFETY: `InSlot` is `Send` already; it is `Sync` because its only interior mutability, the
// `risk` cell, is written by exactly one thread (R's) while R holds the slot — after J released
// it and before R releases it — and read (by M) only after R released it. The disruptor's
// cursors order those accesses: R's release is a `Release` store of its cursor, M's barrier an
// `Acquire` load of it, so R's write happens-before M's read; the producer reuses the slot only
// after M's cursor (also Release/Acquire) has passed it. Every other field is written only by
// the producer before it publishes the slot.
#[allow(unsafe_code)]
unsafe impl Sync for InSlot {}

impl Default for InSlot {
    fn default() -> InSlot {
        InSlot {
            seq: Seq(0),
            timestamp_ns: 0,
            cmd: Command::MassCancel {
                user: UserId(0),
                symbol: None,
                on_disconnect: false,
            },
            risk: UnsafeCell::new(RiskOut::default()),
        }
    }
}

impl InSlot {
    /// A fresh slot for a channel transport.
    pub(crate) fn new(seq: Seq, timestamp_ns: u64, cmd: Command) -> InSlot {
        InSlot {
            seq,
            timestamp_ns,
            cmd,
            risk: UnsafeCell::new(RiskOut::default()),
        }
    }

    /// R's decision, cleared, for R to fill in place.
    ///
    /// # Safety
    ///
    /// Only the R stage calls this, while it holds the slot (between J's release and its own),
    /// and it drops the reference before it releases the slot; no other reference to the cell
    /// exists then (M reads it only after R's release, the producer writes only `seq`,
    /// `timestamp_ns` and `cmd`, and only before J sees the slot).
    #[allow(unsafe_code, clippy::mut_from_ref)]
    #[inline]
    pub(crate) unsafe fn risk_mut(&self) -> &mut RiskOut {
        // SAFETY: the caller holds the slot as R (see above): no other reference exists.
        let risk = unsafe { &mut *self.risk.get() };
        risk.events.clear();
        risk
    }

    /// R's decision, for M.
    ///
    /// # Safety
    ///
    /// Only after R released the slot (M's cursor follows R's), and before the producer reuses
    /// it (it waits for M's cursor).
    #[allow(unsafe_code)]
    #[inline]
    pub(crate) unsafe fn risk(&self) -> &RiskOut {
        // SAFETY: R's write happened-before (cursor Release/Acquire); no writer exists now.
        unsafe { &*self.risk.get() }
    }
}

/// What M hands S for one command, in order: `Begin`, the events, `Done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SettleKind {
    /// A command starts: R's plan says whether (and how) to settle, and the command's time
    /// stamp (for the outputs' `ts`).
    Begin(Plan, u64),
    /// One event of the command.
    Event(Event),
    /// The command's events are complete.
    Done,
}

/// One message on the M → S ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SettleMsg {
    pub(crate) seq: Seq,
    pub(crate) kind: SettleKind,
}

impl Default for SettleMsg {
    fn default() -> SettleMsg {
        SettleMsg {
            seq: Seq(0),
            kind: SettleKind::Done,
        }
    }
}
