//! Engine snapshots: the whole engine state as bytes, and back.
//!
//! Recovery is the latest snapshot plus a replay of the journal after it (docs/overview.md §6), so a
//! snapshot must hold everything that `state_hash()` covers *and* everything that influences
//! what the engine does next: the next order id, each symbol's last trade price, every live
//! order with all its fields and its exact place (book section, price level, position in the
//! level's FIFO), each user's orders in acceptance order (mass cancel walks them in that order),
//! each user's client-order-id high-water mark (what makes a resend after a restart a duplicate),
//! and the accounts — open accounts and their balances, fees, supply, pending withdrawals in
//! their slots (a new request takes the lowest free slot) and the next withdrawal id.
//! [`Engine::write_snapshot`] writes them; [`Engine::from_snapshot`] validates the bytes and
//! rebuilds every fast structure (pool, client-order-id index, level FIFOs and sums, occupancy
//! bitmaps, best-level caches, user lists), so that the restored engine has the same
//! `state_hash()` and answers every later command exactly as the original would.
//!
//! ```
//! use ringbook_engine::prelude::*;
//!
//! let config = Config::default();
//! let mut engine = Engine::new(&config)?;
//! let btc = config.currency_id("BTC").unwrap();
//! engine.process(&Command::Deposit { user: UserId(1), currency: btc, amount: 50_000 }, &mut |_: &Event| {});
//! engine.process(
//!     &Command::NewOrder(NewOrder::limit(UserId(1), SymbolId(0), ClientOrderId(1), Side::Sell, Price(15_000), Qty(5))),
//!     &mut |_: &Event| {},
//! );
//!
//! let mut bytes = Vec::new();
//! engine.write_snapshot(&mut bytes);
//! let restored = Engine::from_snapshot(&config, RiskMode::On, &bytes).unwrap();
//! assert_eq!(restored.state_hash(), engine.state_hash());
//! assert_eq!(restored.best_ask(SymbolId(0)), Some((Price(15_000), Qty(5))));
//! # Ok::<(), ConfigError>(())
//! ```
//!
//! The format (docs/snapshot-format.md) is versioned and records a fingerprint of the
//! configuration it was taken under ([`config_fingerprint`]), the risk mode and the state hash.
//! Restoring under another configuration or risk mode is a clear error, and so is any byte
//! string that is not a consistent state: counts beyond the configured capacities, prices
//! outside the band, orders out of canonical order, duplicate ids, user lists that do not list
//! every order once, locks that do not match the orders and withdrawals, broken conservation,
//! and finally a state hash that differs from the one recorded. Corrupt bytes give a
//! [`SnapshotError`], never a panic. The integrity checksum is the job of the journal's snapshot
//! container; this layer checks meaning.
//!
//! Snapshots are off the hot path: writing appends to a `Vec` and restoring allocates freely.
//! Tested by the unit tests below and by `tests/snapshot.rs`, which runs random command streams
//! into an engine, restores a copy from a snapshot at a random point and requires identical
//! events and hashes from both for the rest of the stream, and feeds mutated and truncated
//! snapshots to the decoder.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::book::pool::{Order, OrderPool};
use crate::book::{checked_notional, BookSection, OrderView};
use crate::codec::{order_type_from_u8, side_from_u8, stp_from_u8, tif_from_u8};
use crate::config::{ClientOrderIdRule, Config};
use crate::engine::{Engine, RiskMode};
use crate::hash::{StateHash, StateHasher};
use crate::matching::{FinishedOrder, Matcher, OrderStatus};
use crate::risk::accounts::{Accounts, Balance, PendingWithdrawal};
use crate::risk::RiskSpec;
use crate::types::{
    ClientOrderId, CurrencyId, OperatorId, OrderId, Price, Qty, Side, SymbolId, UserId,
    WithdrawalId,
};

/// The first eight bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RINGSNAP";
/// The version of the layout below; bump it (and keep a reader for the old one) whenever the
/// layout or the meaning of a field changes.
/// Version 3 (engine time, per-symbol trade ids and client-order-id high-water marks, with the
/// client-order-id rule in the configuration fingerprint) is the only one read: versions 1
/// and 2 are refused (recovery replays the journal instead).
/// Version 5 adds the expiry times of live GTD and DAY orders; older versions are refused.
pub const SNAPSHOT_FORMAT_VERSION: u16 = 5;
/// Bytes of the header: magic, version, risk mode, reserved byte, config fingerprint, state
/// hash.
pub const SNAPSHOT_HEADER_BYTES: usize = 28;
/// Bytes of one live order's record.
pub const ORDER_RECORD_BYTES: usize = 76;
/// Bytes of one client-order-id high-water mark record (user u32, mark u64).
pub const COID_MARK_RECORD_BYTES: usize = 12;
/// Bytes of one live order's filled-notional record (order id, notional).
pub const NOTIONAL_RECORD_BYTES: usize = 16;
/// Bytes of one live order's expiry record (order id, expiry time).
pub const EXPIRY_RECORD_BYTES: usize = 16;
/// Bytes of one finished order's record in a user's window.
pub const FINISHED_RECORD_BYTES: usize = 55;
/// Bytes of one pending withdrawal's record.
pub const WITHDRAWAL_RECORD_BYTES: usize = 31;

const RISK_ON: u8 = 0;
const RISK_OFF: u8 = 1;
const FLAG_POST_ONLY: u8 = 1;

/// Why bytes could not be restored into an engine. Small and `Copy`; the static strings name
/// the offending part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes do not start with [`SNAPSHOT_MAGIC`]. Cause: not a snapshot (or the container
    /// handed over the wrong bytes). Fix: pass the snapshot payload itself.
    BadMagic,
    /// The format version is not one this build reads. Cause: a snapshot from a newer (or much
    /// older) ringbook. Fix: restore with a matching build, or replay the journal from the start.
    UnsupportedVersion {
        /// The version in the snapshot.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The configuration passed to restore does not validate. Fix: see `Config::validate`.
    InvalidConfig,
    /// The snapshot was taken under a different configuration (capacities, currencies, symbols
    /// or operators differ), so its state would not mean the same thing. Fix: restore with the
    /// configuration the engine ran with, or replay the journal under the new one.
    ConfigMismatch {
        /// The fingerprint recorded in the snapshot.
        snapshot: u64,
        /// [`config_fingerprint`] of the configuration given.
        config: u64,
    },
    /// The snapshot was taken with the other risk mode. Fix: restore with the mode the engine
    /// ran with.
    RiskModeMismatch {
        /// The mode recorded in the snapshot.
        snapshot: RiskMode,
        /// The mode asked for.
        requested: RiskMode,
    },
    /// The bytes end inside the named section. Cause: a cut or torn snapshot. Fix: use an
    /// older snapshot (and a longer journal replay).
    Truncated {
        /// The section being read.
        section: &'static str,
    },
    /// Bytes remain after the last section. Cause: corruption, or two payloads run together.
    /// Fix: as for [`SnapshotError::Truncated`].
    TrailingBytes {
        /// How many bytes remain.
        count: usize,
    },
    /// A count exceeds what the configuration allows (more live orders than the pool, …).
    /// Cause: corruption. Fix: as for [`SnapshotError::Truncated`].
    CountOutOfRange {
        /// What was counted.
        what: &'static str,
        /// The count found.
        count: u64,
        /// The most allowed.
        max: u64,
    },
    /// A field or a relation between fields is not a state the engine can be in (a price out
    /// of band, an unknown enum value, a duplicate id, locks that do not match the orders, …).
    /// Cause: corruption, or a snapshot written by a faulty build. Fix: as for
    /// [`SnapshotError::Truncated`].
    Invalid {
        /// The rule that is broken.
        what: &'static str,
    },
    /// Every check passed, but the restored state does not hash to the value recorded when the
    /// snapshot was taken. Cause: corruption that kept the state consistent, or a bug in
    /// writing or restoring. Fix: as for [`SnapshotError::Truncated`], and report it.
    HashMismatch {
        /// The hash recorded in the snapshot.
        snapshot: StateHash,
        /// The hash of the restored engine.
        restored: StateHash,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SnapshotError::BadMagic => f.write_str("not an engine snapshot (bad magic)"),
            SnapshotError::UnsupportedVersion { found, supported } => write!(
                f,
                "snapshot format version {found} is not supported (this build reads {supported})"
            ),
            SnapshotError::InvalidConfig => f.write_str("the configuration does not validate"),
            SnapshotError::ConfigMismatch { snapshot, config } => write!(
                f,
                "snapshot was taken under another configuration (fingerprint {snapshot:016x}, \
                 this configuration {config:016x})"
            ),
            SnapshotError::RiskModeMismatch {
                snapshot,
                requested,
            } => write!(
                f,
                "snapshot was taken with risk {snapshot:?}, restore asked for {requested:?}"
            ),
            SnapshotError::Truncated { section } => {
                write!(f, "snapshot ends inside its {section}")
            }
            SnapshotError::TrailingBytes { count } => {
                write!(f, "{count} bytes follow the end of the snapshot")
            }
            SnapshotError::CountOutOfRange { what, count, max } => {
                write!(f, "snapshot has {count} {what}, at most {max} allowed")
            }
            SnapshotError::Invalid { what } => write!(f, "snapshot is inconsistent: {what}"),
            SnapshotError::HashMismatch { snapshot, restored } => write!(
                f,
                "restored state hashes to {restored}, snapshot recorded {snapshot}"
            ),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// What a snapshot's header says, readable without restoring it (for tools).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The format version.
    pub version: u16,
    /// The risk mode the engine ran with.
    pub risk: RiskMode,
    /// [`config_fingerprint`] of the configuration it ran with.
    pub config_fingerprint: u64,
    /// The engine's `state_hash()` when the snapshot was taken.
    pub state_hash: StateHash,
}

/// A 64-bit FNV-1a digest of every value of `config` (capacities, operators, currencies,
/// symbols), in a fixed order. Two configurations with equal values have equal fingerprints;
/// any changed value changes it (barring a hash collision).
pub fn config_fingerprint(config: &Config) -> u64 {
    let mut h = StateHasher::default();
    let text = |h: &mut StateHasher, s: &str| {
        h.u64(s.len() as u64);
        for &b in s.as_bytes() {
            h.u64(u64::from(b));
        }
    };
    h.u64(0x5249_4e47_4346_4733); // "RINGCFG3": the fingerprint's own version
    let cap = &config.capacity;
    h.u64(u64::from(cap.orders_max));
    h.u64(u64::from(cap.users_max));
    h.u64(u64::from(cap.withdrawals_max));
    h.u64(u64::from(cap.withdrawals_per_user));
    h.u64(match config.engine.client_order_ids {
        ClientOrderIdRule::Increasing => 1,
        ClientOrderIdRule::UniqueLive => 2,
    });
    h.u64(u64::from(config.engine.finished_orders_per_user));
    // The session end decides when DAY orders placed after a restore expire.
    h.u64(
        config
            .schedule
            .day_end_offset_ns()
            .map_or(u64::MAX, |ns| ns),
    );
    h.u64(config.accounts.operators.len() as u64);
    for &op in &config.accounts.operators {
        h.u64(u64::from(op));
    }
    h.u64(config.currencies.len() as u64);
    for c in &config.currencies {
        h.u64(u64::from(c.id));
        text(&mut h, &c.code);
        h.u64(u64::from(c.scale));
    }
    h.u64(config.symbols.len() as u64);
    for s in &config.symbols {
        h.u64(u64::from(s.id));
        text(&mut h, &s.name);
        text(&mut h, &s.base);
        text(&mut h, &s.quote);
        h.u64(s.lot_size);
        h.u64(s.tick_size);
        h.i64(s.price_min);
        h.i64(s.price_max);
        h.u64(u64::from(s.maker_fee_bps));
        h.u64(u64::from(s.taker_fee_bps));
        h.u64(s.max_order_qty);
    }
    h.finish().0
}

// ------------------------------------------------------------------------------ writing

fn put_u32_at(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn section_code(section: BookSection) -> u8 {
    match section {
        BookSection::Bids => 0,
        BookSection::Asks => 1,
        BookSection::BuyStops => 2,
        BookSection::SellStops => 3,
    }
}

fn write_order(out: &mut Vec<u8>, section: BookSection, v: &OrderView) {
    let start = out.len();
    out.push(section_code(section));
    out.push(v.side as u8);
    out.push(v.order_type as u8);
    out.push(v.tif as u8);
    out.push(v.stp as u8);
    out.push(if v.post_only { FLAG_POST_ONLY } else { 0 });
    out.extend_from_slice(&v.symbol.0.to_le_bytes());
    out.extend_from_slice(&v.user.0.to_le_bytes());
    out.extend_from_slice(&v.order_id.0.to_le_bytes());
    out.extend_from_slice(&v.client_order_id.0.to_le_bytes());
    out.extend_from_slice(&v.price.0.to_le_bytes());
    out.extend_from_slice(&v.stop_price.0.to_le_bytes());
    out.extend_from_slice(&v.leaves_qty.0.to_le_bytes());
    out.extend_from_slice(&v.visible_qty.0.to_le_bytes());
    out.extend_from_slice(&v.filled_qty.0.to_le_bytes());
    out.extend_from_slice(&v.display_qty.0.to_le_bytes());
    debug_assert_eq!(out.len() - start, ORDER_RECORD_BYTES);
}

fn write_finished(out: &mut Vec<u8>, f: &FinishedOrder) {
    let start = out.len();
    out.extend_from_slice(&f.client_order_id.0.to_le_bytes());
    out.extend_from_slice(&f.order_id.0.to_le_bytes());
    out.extend_from_slice(&f.symbol.0.to_le_bytes());
    out.push(f.side as u8);
    out.push(f.order_type as u8);
    out.push(f.status.code());
    out.extend_from_slice(&f.status.detail().to_le_bytes());
    out.extend_from_slice(&f.price.0.to_le_bytes());
    out.extend_from_slice(&f.filled_qty.0.to_le_bytes());
    out.extend_from_slice(&f.filled_notional.to_le_bytes());
    out.extend_from_slice(&f.ts.to_le_bytes());
    debug_assert_eq!(out.len() - start, FINISHED_RECORD_BYTES);
}

impl Engine {
    /// Appends a snapshot of the whole engine state to `out` (docs/snapshot-format.md). Takes
    /// time and memory proportional to the state (plus one pass over `users_max` users); it is
    /// meant to run between commands, off the hot path.
    pub fn write_snapshot(&self, out: &mut Vec<u8>) {
        let config = self.config();
        let matcher = self.matcher();
        let accounts = self.accounts();
        let symbols = matcher.symbols();
        out.reserve(
            SNAPSHOT_HEADER_BYTES
                + 24
                + 16 * symbols
                + matcher.live_orders() as usize * (ORDER_RECORD_BYTES + 8),
        );

        // Header.
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        out.push(match self.risk_mode() {
            RiskMode::On => RISK_ON,
            RiskMode::Off => RISK_OFF,
        });
        out.push(0);
        out.extend_from_slice(&config_fingerprint(config).to_le_bytes());
        out.extend_from_slice(&self.state_hash().0.to_le_bytes());

        // Matching: counters, last prices, orders in canonical book order.
        out.extend_from_slice(&matcher.next_order_id().0.to_le_bytes());
        out.extend_from_slice(&matcher.now_ns().to_le_bytes());
        out.extend_from_slice(&(symbols as u16).to_le_bytes());
        for s in 0..symbols {
            let last = matcher.last_trade_price(SymbolId(s as u16));
            out.extend_from_slice(&last.map_or(0, |p| p.0).to_le_bytes());
            let trade_id = matcher.last_trade_id(SymbolId(s as u16));
            out.extend_from_slice(&trade_id.0.to_le_bytes());
        }
        out.extend_from_slice(&matcher.live_orders().to_le_bytes());
        let orders_at = out.len();
        for s in 0..symbols {
            matcher.for_each_order(SymbolId(s as u16), |section, v| {
                write_order(out, section, v)
            });
        }
        debug_assert_eq!(
            out.len() - orders_at,
            matcher.live_orders() as usize * ORDER_RECORD_BYTES
        );

        // Each user's orders, in acceptance order, by order id.
        let lists_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut lists = 0u32;
        for u in 0..config.capacity.users_max {
            let head = out.len();
            out.extend_from_slice(&u.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            let mut count = 0u32;
            matcher.for_each_user_order(UserId(u), |v| {
                out.extend_from_slice(&v.order_id.0.to_le_bytes());
                count += 1;
            });
            if count == 0 {
                out.truncate(head);
            } else {
                put_u32_at(out, head + 4, count);
                lists += 1;
            }
        }
        put_u32_at(out, lists_at, lists);

        // Client-order-id high-water marks, in user id order.
        let marks_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut marks = 0u32;
        matcher.for_each_client_order_id_high(|user, high| {
            out.extend_from_slice(&user.0.to_le_bytes());
            out.extend_from_slice(&high.to_le_bytes());
            marks += 1;
        });
        put_u32_at(out, marks_at, marks);

        // Live orders' filled notionals (the non-zero ones), in order id order.
        let mut filled: Vec<(u64, u64)> = Vec::new();
        for s in 0..matcher.symbols() {
            matcher.for_each_order(SymbolId(s as u16), |_, v| {
                let n = matcher.filled_notional_of(v.order_id);
                if n != 0 {
                    filled.push((v.order_id.0, n));
                }
            });
        }
        filled.sort_unstable();
        out.extend_from_slice(&(filled.len() as u32).to_le_bytes());
        for (id, n) in filled {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }

        // Live GTD and DAY orders' expiry times, in order id order.
        let mut expiries: Vec<(u64, u64)> = Vec::new();
        for s in 0..matcher.symbols() {
            matcher.for_each_order(SymbolId(s as u16), |_, v| {
                if v.tif.expires() {
                    expiries.push((v.order_id.0, v.expire_at));
                }
            });
        }
        expiries.sort_unstable();
        out.extend_from_slice(&(expiries.len() as u32).to_le_bytes());
        for (id, at) in expiries {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&at.to_le_bytes());
        }

        // Windows of finished orders: each user that has one, in user id order, oldest first.
        let windows_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut windows = 0u32;
        matcher.for_each_finished_window(|user, entries| {
            out.extend_from_slice(&user.0.to_le_bytes());
            out.push(entries.len() as u8);
            for f in entries {
                write_finished(out, f);
            }
            windows += 1;
        });
        put_u32_at(out, windows_at, windows);

        // Accounts.
        let currencies = accounts.currencies();
        out.extend_from_slice(&(currencies as u16).to_le_bytes());
        let open_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut open = 0u32;
        for user in accounts.open_users() {
            out.extend_from_slice(&user.0.to_le_bytes());
            for c in 0..currencies {
                let b = accounts.balance(user, CurrencyId(c as u16));
                out.extend_from_slice(&b.available.to_le_bytes());
                out.extend_from_slice(&b.locked.to_le_bytes());
            }
            open += 1;
        }
        put_u32_at(out, open_at, open);
        for c in 0..currencies {
            let c = CurrencyId(c as u16);
            out.extend_from_slice(&accounts.fees(c).to_le_bytes());
            out.extend_from_slice(&accounts.supply(c).to_le_bytes());
        }
        out.extend_from_slice(&accounts.next_withdrawal_id().0.to_le_bytes());
        let pending_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut pending = 0u32;
        for (slot, w) in accounts.pending_withdrawal_slots() {
            out.extend_from_slice(&(slot as u32).to_le_bytes());
            out.extend_from_slice(&w.id.0.to_le_bytes());
            out.extend_from_slice(&w.user.0.to_le_bytes());
            out.extend_from_slice(&w.currency.0.to_le_bytes());
            out.extend_from_slice(&w.amount.to_le_bytes());
            out.push(u8::from(w.first_approval.is_some()));
            out.extend_from_slice(&w.first_approval.map_or(0, |o| o.0).to_le_bytes());
            pending += 1;
        }
        put_u32_at(out, pending_at, pending);
    }

    /// Rebuilds an engine from a snapshot written by [`Engine::write_snapshot`] under the same
    /// `config` and `risk` mode. Validates every field and relation first (see the module
    /// docs); any problem is a [`SnapshotError`], never a panic. Allocates the engine's pools
    /// as [`Engine::with_risk`] does.
    pub fn from_snapshot(
        config: &Config,
        risk: RiskMode,
        bytes: &[u8],
    ) -> Result<Engine, SnapshotError> {
        config
            .validate()
            .map_err(|_| SnapshotError::InvalidConfig)?;
        let mut r = Reader { bytes, at: 0 };
        let header = read_header_from(&mut r)?;
        let fingerprint = config_fingerprint(config);
        if header.config_fingerprint != fingerprint {
            return Err(SnapshotError::ConfigMismatch {
                snapshot: header.config_fingerprint,
                config: fingerprint,
            });
        }
        if header.risk != risk {
            return Err(SnapshotError::RiskModeMismatch {
                snapshot: header.risk,
                requested: risk,
            });
        }
        let book = read_matching(&mut r, config)?;
        let accounts = read_accounts(&mut r, config)?;
        if r.at != bytes.len() {
            return Err(SnapshotError::TrailingBytes {
                count: bytes.len() - r.at,
            });
        }
        check_funds(config, risk, &book, &accounts)?;

        // With risk off `check_funds` required the accounts to be empty, as they always are.
        let restored = restore_accounts(config, &accounts);
        let matcher = Matcher::restore(
            config,
            book.next_order_id,
            book.now_ns,
            &book.last_prices,
            &book.last_trade_ids,
            &book.orders,
            &book.acceptance,
            &book.coid_high,
            &book.notionals,
            &book.expiries,
            &book.finished,
        );
        let engine = Engine::from_parts(config, risk, restored, matcher);
        let hash = engine.state_hash();
        if hash != header.state_hash {
            return Err(SnapshotError::HashMismatch {
                snapshot: header.state_hash,
                restored: hash,
            });
        }
        Ok(engine)
    }
}

/// Reads a snapshot's header without restoring it.
pub fn read_header(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotError> {
    read_header_from(&mut Reader { bytes, at: 0 })
}

// ------------------------------------------------------------------------------ reading

/// Sequential little-endian reads that fail cleanly at the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self, section: &'static str) -> Result<[u8; N], SnapshotError> {
        let end = self.at.checked_add(N);
        let Some(chunk) = end.and_then(|end| self.bytes.get(self.at..end)) else {
            return Err(SnapshotError::Truncated { section });
        };
        let mut out = [0u8; N];
        out.copy_from_slice(chunk);
        self.at += N;
        Ok(out)
    }
    fn u8(&mut self, section: &'static str) -> Result<u8, SnapshotError> {
        Ok(self.take::<1>(section)?[0])
    }
    fn u16(&mut self, section: &'static str) -> Result<u16, SnapshotError> {
        Ok(u16::from_le_bytes(self.take(section)?))
    }
    fn u32(&mut self, section: &'static str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.take(section)?))
    }
    fn u64(&mut self, section: &'static str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.take(section)?))
    }
    fn i64(&mut self, section: &'static str) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.take(section)?))
    }

    /// Checks that `count` records of `size` bytes can still follow, before anything sized by
    /// `count` is allocated.
    fn need(&self, count: u64, size: usize, section: &'static str) -> Result<(), SnapshotError> {
        let left = (self.bytes.len() - self.at) as u128;
        if u128::from(count) * size as u128 > left {
            return Err(SnapshotError::Truncated { section });
        }
        Ok(())
    }
}

fn invalid<T>(what: &'static str) -> Result<T, SnapshotError> {
    Err(SnapshotError::Invalid { what })
}

fn ensure(ok: bool, what: &'static str) -> Result<(), SnapshotError> {
    if ok {
        Ok(())
    } else {
        invalid(what)
    }
}

fn count_at_most(what: &'static str, count: u64, max: u64) -> Result<(), SnapshotError> {
    if count > max {
        return Err(SnapshotError::CountOutOfRange { what, count, max });
    }
    Ok(())
}

fn read_header_from(r: &mut Reader<'_>) -> Result<SnapshotHeader, SnapshotError> {
    const H: &str = "header";
    if r.take::<8>(H)? != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = r.u16(H)?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_FORMAT_VERSION,
        });
    }
    let risk = match r.u8(H)? {
        RISK_ON => RiskMode::On,
        RISK_OFF => RiskMode::Off,
        _ => return invalid("risk mode byte is neither 0 (on) nor 1 (off)"),
    };
    ensure(r.u8(H)? == 0, "reserved header byte is not zero")?;
    Ok(SnapshotHeader {
        version,
        risk,
        config_fingerprint: r.u64(H)?,
        state_hash: StateHash(r.u64(H)?),
    })
}

/// The matching state, validated and ready for [`Matcher::restore`].
struct MatchingPart {
    next_order_id: u64,
    now_ns: u64,
    last_prices: Vec<Option<Price>>,
    last_trade_ids: Vec<u64>,
    /// Canonical book order.
    orders: Vec<(BookSection, Order)>,
    /// Indices into `orders`, each user's in acceptance order.
    acceptance: Vec<u32>,
    /// Client-order-id high-water marks, in ascending user order, none zero.
    coid_high: Vec<(UserId, u64)>,
    /// Live orders' filled notionals (non-zero), by order id.
    notionals: Vec<(OrderId, u64)>,
    /// Live GTD and DAY orders' expiry times, by order id.
    expiries: Vec<(OrderId, u64)>,
    /// Windows of finished orders, in ascending user order, each oldest first.
    finished: Vec<(UserId, Vec<FinishedOrder>)>,
}

fn read_matching(r: &mut Reader<'_>, config: &Config) -> Result<MatchingPart, SnapshotError> {
    const M: &str = "matching section";
    const O: &str = "order records";
    const U: &str = "user order lists";
    let next_order_id = r.u64(M)?;
    ensure(next_order_id >= 1, "next order id is zero")?;
    let now_ns = r.u64(M)?;
    ensure(
        now_ns <= crate::matching::TIME_MAX_NS,
        "engine time is past the latest engine time",
    )?;
    let symbols = r.u16(M)? as usize;
    ensure(
        symbols == config.symbols.len(),
        "symbol count differs from the configuration",
    )?;
    let mut last_prices = Vec::with_capacity(symbols);
    let mut last_trade_ids = Vec::with_capacity(symbols);
    for s in &config.symbols {
        let p = r.i64(M)?;
        last_prices.push(if p == 0 {
            None
        } else {
            ensure(
                s.in_band(Price(p)),
                "last trade price outside the symbol's band",
            )?;
            Some(Price(p))
        });
        let trade_id = r.u64(M)?;
        // Only a trade sets the last price, and every trade has an id.
        ensure(
            (trade_id == 0) == (p == 0),
            "last trade id and last trade price disagree about whether there was a trade",
        )?;
        last_trade_ids.push(trade_id);
    }

    let cap = &config.capacity;
    let count = r.u32(M)?;
    count_at_most("live orders", u64::from(count), u64::from(cap.orders_max))?;
    r.need(u64::from(count), ORDER_RECORD_BYTES, O)?;
    let mut orders = Vec::with_capacity(count as usize);
    let mut by_id: HashMap<u64, u32> = HashMap::with_capacity(count as usize);
    let mut slots: HashSet<u64> = HashSet::with_capacity(count as usize);
    let mut keys: HashSet<(u32, u64)> = HashSet::with_capacity(count as usize);
    // Per symbol: the highest bid and the lowest ask, to check the book is not crossed.
    let mut best: Vec<(Option<Price>, Option<Price>)> = vec![(None, None); symbols];
    let mut last_key: Option<(u16, u8, i64)> = None;
    for i in 0..count {
        let (section, o) = read_order(r, config, next_order_id, &last_prices)?;
        // Canonical order: symbol, section, level best first; FIFO order within a level is the
        // record order itself.
        let price = if o.in_stop_book {
            o.stop_price
        } else {
            o.price
        };
        let rank = match section {
            BookSection::Bids | BookSection::SellStops => -price.0,
            BookSection::Asks | BookSection::BuyStops => price.0,
        };
        let key = (o.symbol.0, section_code(section), rank);
        ensure(
            last_key.is_none_or(|k| k <= key),
            "orders are not in canonical book order",
        )?;
        last_key = Some(key);
        ensure(
            by_id.insert(o.id.0, i).is_none(),
            "two live orders share an order id",
        )?;
        // No two live orders have ids equal modulo the order-id modulus (docs/matching.md,
        // "Order ids").
        ensure(
            slots.insert(o.id.0 % crate::matching::order_id_modulus(cap.orders_max)),
            "two live orders have ids equal modulo the order-id modulus",
        )?;
        ensure(
            keys.insert((o.user.0, o.client_order_id.0)),
            "two live orders of a user share a client order id",
        )?;
        let b = &mut best[o.symbol.0 as usize];
        match section {
            BookSection::Bids => b.0 = b.0.max(Some(o.price)),
            BookSection::Asks => b.1 = Some(b.1.map_or(o.price, |a| a.min(o.price))),
            _ => {}
        }
        orders.push((section, o));
    }
    for (bid, ask) in best {
        if let (Some(bid), Some(ask)) = (bid, ask) {
            ensure(
                bid < ask,
                "a book is crossed (best bid at or above best ask)",
            )?;
        }
    }

    let lists = r.u32(U)?;
    count_at_most(
        "user order lists",
        u64::from(lists),
        u64::from(count.min(cap.users_max)),
    )?;
    let mut acceptance = Vec::with_capacity(count as usize);
    let mut listed = vec![false; count as usize];
    let mut last_user: Option<u32> = None;
    for _ in 0..lists {
        let user = r.u32(U)?;
        ensure(
            user < cap.users_max,
            "a user order list names an unknown user",
        )?;
        ensure(
            last_user.is_none_or(|u| u < user),
            "user order lists are not in ascending user order",
        )?;
        last_user = Some(user);
        let n = r.u32(U)?;
        ensure(n >= 1, "a user order list is empty")?;
        r.need(u64::from(n), 8, U)?;
        for _ in 0..n {
            let id = r.u64(U)?;
            let Some(&i) = by_id.get(&id) else {
                return invalid("a user order list names an order that is not live");
            };
            ensure(
                orders[i as usize].1.user == UserId(user),
                "a user order list names another user's order",
            )?;
            ensure(
                !std::mem::replace(&mut listed[i as usize], true),
                "a user order list names an order twice",
            )?;
            acceptance.push(i);
        }
    }
    ensure(
        acceptance.len() == count as usize,
        "a live order is missing from its user's order list",
    )?;

    const K: &str = "client order id marks";
    let marks = r.u32(K)?;
    count_at_most(
        "client order id marks",
        u64::from(marks),
        u64::from(cap.users_max),
    )?;
    r.need(u64::from(marks), COID_MARK_RECORD_BYTES, K)?;
    let mut coid_high: Vec<(UserId, u64)> = Vec::with_capacity(marks as usize);
    for _ in 0..marks {
        let user = r.u32(K)?;
        let high = r.u64(K)?;
        ensure(
            user < cap.users_max,
            "a client order id mark names an unknown user",
        )?;
        ensure(
            coid_high.last().is_none_or(|&(u, _)| u.0 < user),
            "client order id marks are not in ascending user order",
        )?;
        ensure(high >= 1, "a client order id mark is zero")?;
        coid_high.push((UserId(user), high));
    }
    // Every live order's id was consumed when it was placed: it is at or below its user's mark.
    for (_, o) in &orders {
        let high = coid_high
            .binary_search_by_key(&o.user, |&(u, _)| u)
            .map_or(0, |i| coid_high[i].1);
        ensure(
            o.client_order_id.0 <= high,
            "a live order's client order id is above its user's mark",
        )?;
    }

    const N: &str = "filled notionals";
    let count_n = r.u32(N)?;
    count_at_most(N, u64::from(count_n), orders.len() as u64)?;
    r.need(u64::from(count_n), NOTIONAL_RECORD_BYTES, N)?;
    let mut notionals: Vec<(OrderId, u64)> = Vec::with_capacity(count_n as usize);
    for _ in 0..count_n {
        let id = r.u64(N)?;
        let n = r.u64(N)?;
        ensure(
            notionals.last().is_none_or(|&(last, _)| last.0 < id),
            "filled notionals are not in ascending order id order",
        )?;
        ensure(
            orders.iter().any(|(_, o)| o.id.0 == id),
            "a filled notional names an order that is not live",
        )?;
        ensure(n != 0, "a filled notional is zero")?;
        notionals.push((OrderId(id), n));
    }

    const E: &str = "expiry times";
    let count_e = r.u32(E)?;
    let expiring = orders.iter().filter(|(_, o)| o.tif.expires()).count();
    ensure(
        count_e as usize == expiring,
        "expiry records do not match the live GTD and DAY orders",
    )?;
    r.need(u64::from(count_e), EXPIRY_RECORD_BYTES, E)?;
    let mut expiries: Vec<(OrderId, u64)> = Vec::with_capacity(count_e as usize);
    for _ in 0..count_e {
        let id = r.u64(E)?;
        let at = r.u64(E)?;
        ensure(
            expiries.last().is_none_or(|&(last, _)| last.0 < id),
            "expiry records are not in ascending order id order",
        )?;
        ensure(
            orders.iter().any(|(_, o)| o.id.0 == id && o.tif.expires()),
            "an expiry record names no live GTD or DAY order",
        )?;
        ensure(at > now_ns, "a live order's expiry time has passed")?;
        expiries.push((OrderId(id), at));
    }

    const F: &str = "finished-order windows";
    let per_user = config.engine.finished_orders_per_user;
    let windows = r.u32(F)?;
    count_at_most(F, u64::from(windows), u64::from(cap.users_max))?;
    let mut finished: Vec<(UserId, Vec<FinishedOrder>)> = Vec::with_capacity(windows as usize);
    for _ in 0..windows {
        let user = r.u32(F)?;
        ensure(
            user < cap.users_max,
            "a finished-order window names an unknown user",
        )?;
        ensure(
            finished.last().is_none_or(|(u, _)| u.0 < user),
            "finished-order windows are not in ascending user order",
        )?;
        let n = r.u8(F)?;
        ensure(
            n >= 1 && u32::from(n) <= per_user,
            "a finished-order window is empty or larger than finished_orders_per_user",
        )?;
        r.need(u64::from(n), FINISHED_RECORD_BYTES, F)?;
        let mut entries = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let client_order_id = ClientOrderId(r.u64(F)?);
            let order_id = OrderId(r.u64(F)?);
            let symbol = SymbolId(r.u16(F)?);
            let (Some(side), Some(order_type)) =
                (side_from_u8(r.u8(F)?), order_type_from_u8(r.u8(F)?))
            else {
                return invalid("a finished order's side or type byte has no meaning");
            };
            let code = r.u8(F)?;
            let detail = r.u16(F)?;
            let status = match OrderStatus::from_code(code, detail) {
                Some(OrderStatus::New | OrderStatus::PartiallyFilled) | None => {
                    return invalid("a finished order's status is not a finished status")
                }
                Some(status) => status,
            };
            entries.push(FinishedOrder {
                client_order_id,
                order_id,
                symbol,
                side,
                order_type,
                status,
                price: Price(r.i64(F)?),
                filled_qty: Qty(r.u64(F)?),
                filled_notional: r.u64(F)?,
                ts: r.u64(F)?,
            });
        }
        finished.push((UserId(user), entries));
    }
    Ok(MatchingPart {
        next_order_id,
        now_ns,
        last_prices,
        last_trade_ids,
        orders,
        acceptance,
        coid_high,
        notionals,
        expiries,
        finished,
    })
}

fn read_order(
    r: &mut Reader<'_>,
    config: &Config,
    next_order_id: u64,
    last_prices: &[Option<Price>],
) -> Result<(BookSection, Order), SnapshotError> {
    const O: &str = "order records";
    let section = match r.u8(O)? {
        0 => BookSection::Bids,
        1 => BookSection::Asks,
        2 => BookSection::BuyStops,
        3 => BookSection::SellStops,
        _ => return invalid("order section byte is not 0..=3"),
    };
    let (Some(side), Some(order_type), Some(tif), Some(stp)) = (
        side_from_u8(r.u8(O)?),
        order_type_from_u8(r.u8(O)?),
        tif_from_u8(r.u8(O)?),
        stp_from_u8(r.u8(O)?),
    ) else {
        return invalid("order side, type, time in force or STP byte has no meaning");
    };
    let flags = r.u8(O)?;
    ensure(
        flags & !FLAG_POST_ONLY == 0,
        "order flags have unknown bits",
    )?;
    let symbol = SymbolId(r.u16(O)?);
    let user = UserId(r.u32(O)?);
    let id = OrderId(r.u64(O)?);
    let client_order_id = ClientOrderId(r.u64(O)?);
    let price = Price(r.i64(O)?);
    let stop_price = Price(r.i64(O)?);
    let (leaves, visible, filled, display) = (r.u64(O)?, r.u64(O)?, r.u64(O)?, r.u64(O)?);
    let post_only = flags & FLAG_POST_ONLY != 0;

    let Some(spec) = config.symbol(symbol) else {
        return invalid("order of an unknown symbol");
    };
    ensure(
        user.0 < config.capacity.users_max,
        "order of an unknown user",
    )?;
    ensure(
        id.0 >= 1 && id.0 < next_order_id,
        "order id is not below the next order id",
    )?;
    let expected_side = match section {
        BookSection::Bids | BookSection::BuyStops => Side::Buy,
        BookSection::Asks | BookSection::SellStops => Side::Sell,
    };
    ensure(
        side == expected_side,
        "order is in the other side's section",
    )?;
    ensure(spec.in_band(price), "order price outside the symbol's band")?;
    ensure(
        order_type.is_stop() == (stop_price.0 != 0),
        "stop price set on a non-stop order, or missing on a stop",
    )?;
    ensure(
        !order_type.is_stop() || spec.in_band(stop_price),
        "stop price outside the symbol's band",
    )?;
    ensure(leaves > 0, "live order with no open quantity")?;
    ensure(
        filled
            .checked_add(leaves)
            .is_some_and(|t| t <= spec.max_order_qty),
        "order quantity above the symbol's max_order_qty",
    )?;
    ensure(
        !post_only || (!order_type.is_market() && tif.rests()),
        "post-only order that is not a resting limit",
    )?;
    ensure(
        display == 0 || (!order_type.is_market() && tif.rests()),
        "iceberg that is not a resting limit",
    )?;
    ensure(
        checked_notional(price, crate::types::Qty(leaves), spec.tick_size).is_some(),
        "order notional overflows",
    )?;
    let in_stop_book = matches!(section, BookSection::BuyStops | BookSection::SellStops);
    if in_stop_book {
        ensure(order_type.is_stop(), "non-stop order in a stop section")?;
        ensure(
            visible == leaves && filled == 0,
            "waiting stop with shown or filled quantity out of line",
        )?;
        let reached = last_prices[symbol.0 as usize].is_some_and(|last| match side {
            Side::Buy => last >= stop_price,
            Side::Sell => last <= stop_price,
        });
        ensure(!reached, "waiting stop whose trigger price was reached")?;
    } else {
        ensure(
            tif.rests() && !order_type.is_market(),
            "resting order that is not a GTC, GTD or DAY limit",
        )?;
        ensure(
            visible > 0
                && visible <= leaves
                && if display == 0 {
                    visible == leaves
                } else {
                    visible <= display
                },
            "resting order's shown quantity out of line",
        )?;
    }
    Ok((
        section,
        Order {
            leaves,
            visible,
            user,
            stp,
            side,
            order_type,
            tif,
            symbol,
            post_only,
            in_stop_book,
            price,
            id,
            client_order_id,
            filled,
            display,
            stop_price,
            ..OrderPool::blank()
        },
    ))
}

/// The accounts, validated field by field.
struct AccountsPart {
    /// Open users in id order, each with one balance per currency.
    users: Vec<(UserId, Vec<Balance>)>,
    /// Per currency: fees collected and supply.
    totals: Vec<(u64, u64)>,
    next_withdrawal_id: u64,
    /// Pending withdrawals with their slots, in slot order.
    withdrawals: Vec<(usize, PendingWithdrawal)>,
}

fn read_accounts(r: &mut Reader<'_>, config: &Config) -> Result<AccountsPart, SnapshotError> {
    const A: &str = "accounts section";
    const W: &str = "withdrawal records";
    let cap = &config.capacity;
    let currencies = r.u16(A)? as usize;
    ensure(
        currencies == config.currencies.len(),
        "currency count differs from the configuration",
    )?;
    let open = r.u32(A)?;
    count_at_most("open accounts", u64::from(open), u64::from(cap.users_max))?;
    r.need(u64::from(open), 4 + 16 * currencies, A)?;
    let mut users = Vec::with_capacity(open as usize);
    for _ in 0..open {
        let user = r.u32(A)?;
        ensure(user < cap.users_max, "an account of an unknown user")?;
        ensure(
            users.last().is_none_or(|&(u, _): &(UserId, _)| u.0 < user),
            "accounts are not in ascending user order",
        )?;
        let mut balances = Vec::with_capacity(currencies);
        for _ in 0..currencies {
            balances.push(Balance {
                available: r.u64(A)?,
                locked: r.u64(A)?,
            });
        }
        users.push((UserId(user), balances));
    }
    let mut totals = Vec::with_capacity(currencies);
    for _ in 0..currencies {
        totals.push((r.u64(A)?, r.u64(A)?));
    }
    let next_withdrawal_id = r.u64(A)?;
    ensure(next_withdrawal_id >= 1, "next withdrawal id is zero")?;
    let pending = r.u32(A)?;
    count_at_most(
        "pending withdrawals",
        u64::from(pending),
        u64::from(cap.withdrawals_max),
    )?;
    r.need(u64::from(pending), WITHDRAWAL_RECORD_BYTES, W)?;
    let mut withdrawals: Vec<(usize, PendingWithdrawal)> = Vec::with_capacity(pending as usize);
    let mut ids = HashSet::with_capacity(pending as usize);
    for _ in 0..pending {
        let slot = r.u32(W)?;
        let id = r.u64(W)?;
        let user = UserId(r.u32(W)?);
        let currency = CurrencyId(r.u16(W)?);
        let amount = r.u64(W)?;
        let approved = r.u8(W)?;
        let approver = r.u32(W)?;
        ensure(
            slot < cap.withdrawals_max,
            "withdrawal slot beyond withdrawals_max",
        )?;
        ensure(
            withdrawals.last().is_none_or(|&(s, _)| s < slot as usize),
            "withdrawals are not in ascending slot order",
        )?;
        ensure(
            id >= 1 && id < next_withdrawal_id && ids.insert(id),
            "withdrawal id duplicated or not below the next withdrawal id",
        )?;
        ensure(
            users.binary_search_by_key(&user, |&(u, _)| u).is_ok(),
            "withdrawal of a user without an account",
        )?;
        ensure(
            (currency.0 as usize) < currencies,
            "withdrawal of an unknown currency",
        )?;
        ensure(amount > 0, "withdrawal of nothing")?;
        let first_approval = match approved {
            0 => {
                ensure(approver == 0, "approver set on an unapproved withdrawal")?;
                None
            }
            1 => {
                ensure(
                    config.accounts.operators.contains(&approver),
                    "withdrawal approved by an unknown operator",
                )?;
                Some(OperatorId(approver))
            }
            _ => return invalid("withdrawal approval byte is neither 0 nor 1"),
        };
        withdrawals.push((
            slot as usize,
            PendingWithdrawal {
                id: WithdrawalId(id),
                user,
                currency,
                amount,
                first_approval,
            },
        ));
    }
    Ok(AccountsPart {
        users,
        totals,
        next_withdrawal_id,
        withdrawals,
    })
}

/// Cross-checks orders against accounts: with risk on, every order's owner has an account and
/// every locked balance is exactly what its orders and pending withdrawals lock; funds are
/// conserved. With risk off the accounts must be empty (they are never touched).
fn check_funds(
    config: &Config,
    risk: RiskMode,
    book: &MatchingPart,
    accounts: &AccountsPart,
) -> Result<(), SnapshotError> {
    let currencies = config.currencies.len();
    if risk == RiskMode::Off {
        return ensure(
            accounts.users.is_empty()
                && accounts.withdrawals.is_empty()
                && accounts.next_withdrawal_id == 1
                && accounts.totals.iter().all(|&t| t == (0, 0)),
            "accounts are not empty although risk is off",
        );
    }
    // Conservation: Σ(available + locked) + fees = supply, per currency.
    for c in 0..currencies {
        let held: u128 = accounts
            .users
            .iter()
            .map(|(_, b)| u128::from(b[c].available) + u128::from(b[c].locked))
            .sum();
        let (fees, supply) = accounts.totals[c];
        ensure(
            held + u128::from(fees) == u128::from(supply),
            "balances plus fees do not add up to the supply",
        )?;
    }
    // Locks: what each open account's orders and pending withdrawals lock.
    let mut expected = vec![0u128; accounts.users.len() * currencies];
    let row = |user: UserId| {
        accounts
            .users
            .binary_search_by_key(&user, |&(u, _)| u)
            .map_err(|_| SnapshotError::Invalid {
                what: "order or withdrawal of a user without an account",
            })
    };
    let specs = RiskSpec::all(config);
    for (_, o) in &book.orders {
        let i = row(o.user)?;
        let Some((currency, amount)) =
            specs[o.symbol.0 as usize].lock(o.side, o.price, crate::types::Qty(o.leaves))
        else {
            return invalid("an order's lock overflows");
        };
        expected[i * currencies + currency.0 as usize] += u128::from(amount);
    }
    for (_, w) in &accounts.withdrawals {
        let i = row(w.user)?;
        expected[i * currencies + w.currency.0 as usize] += u128::from(w.amount);
    }
    for (i, (_, balances)) in accounts.users.iter().enumerate() {
        for (c, b) in balances.iter().enumerate() {
            ensure(
                u128::from(b.locked) == expected[i * currencies + c],
                "a locked balance differs from what its orders and withdrawals lock",
            )?;
        }
    }
    Ok(())
}

fn restore_accounts(config: &Config, part: &AccountsPart) -> Accounts {
    let operators: Vec<OperatorId> = config
        .accounts
        .operators
        .iter()
        .map(|&o| OperatorId(o))
        .collect();
    let cap = &config.capacity;
    let mut a = Accounts::new(
        cap.users_max,
        config.currencies.len(),
        (cap.withdrawals_max, cap.withdrawals_per_user),
        &operators,
    );
    for (user, balances) in &part.users {
        a.restore_user(*user, balances);
    }
    for (c, &(fees, supply)) in part.totals.iter().enumerate() {
        a.restore_currency(CurrencyId(c as u16), fees, supply);
    }
    for &(slot, w) in &part.withdrawals {
        a.restore_withdrawal(slot, w);
    }
    a.restore_next_withdrawal_id(WithdrawalId(part.next_withdrawal_id));
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, NewOrder};
    use crate::event::Event;
    use crate::types::Qty;

    fn busy_engine() -> (Config, Engine) {
        let config = Config::default();
        let mut e = Engine::new(&config).unwrap();
        let sink = &mut |_: &Event| {};
        let (krw, btc) = (CurrencyId(0), CurrencyId(2));
        for u in 1..=3 {
            e.process(
                &Command::Deposit {
                    user: UserId(u),
                    currency: krw,
                    amount: 10_000_000,
                },
                sink,
            );
            e.process(
                &Command::Deposit {
                    user: UserId(u),
                    currency: btc,
                    amount: 10_000_000,
                },
                sink,
            );
        }
        let sym = SymbolId(0);
        let mut iceberg = NewOrder::limit(
            UserId(1),
            sym,
            ClientOrderId(1),
            Side::Sell,
            Price(15_000),
            Qty(30),
        );
        iceberg.display_qty = Qty(5);
        e.process(&Command::NewOrder(iceberg), sink);
        e.process(
            &Command::NewOrder(NewOrder::limit(
                UserId(2),
                sym,
                ClientOrderId(1),
                Side::Buy,
                Price(15_000),
                Qty(7),
            )),
            sink,
        );
        e.process(
            &Command::NewOrder(NewOrder::limit(
                UserId(3),
                sym,
                ClientOrderId(9),
                Side::Buy,
                Price(14_000),
                Qty(4),
            )),
            sink,
        );
        let mut stop = NewOrder::limit(
            UserId(3),
            sym,
            ClientOrderId(10),
            Side::Buy,
            Price(16_000),
            Qty(2),
        );
        stop.order_type = crate::types::OrderType::StopLimit;
        stop.stop_price = Price(15_500);
        e.process(&Command::NewOrder(stop), sink);
        e.process(
            &Command::Withdraw {
                user: UserId(2),
                currency: krw,
                amount: 1_000,
            },
            sink,
        );
        e.process(
            &Command::ApproveWithdrawal {
                operator: OperatorId(900),
                withdrawal_id: WithdrawalId(1),
            },
            sink,
        );
        (config, e)
    }

    #[test]
    fn round_trip_keeps_hash_and_bytes() {
        let (config, e) = busy_engine();
        let mut bytes = Vec::new();
        e.write_snapshot(&mut bytes);
        let header = read_header(&bytes).unwrap();
        assert_eq!(header.state_hash, e.state_hash());
        assert_eq!(header.config_fingerprint, config_fingerprint(&config));
        let back = Engine::from_snapshot(&config, RiskMode::On, &bytes).unwrap();
        assert_eq!(back.state_hash(), e.state_hash());
        let mut again = Vec::new();
        back.write_snapshot(&mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn other_config_or_mode_is_refused() {
        let (config, e) = busy_engine();
        let mut bytes = Vec::new();
        e.write_snapshot(&mut bytes);
        let mut other = config.clone();
        other.symbols[2].taker_fee_bps += 1;
        assert_ne!(config_fingerprint(&other), config_fingerprint(&config));
        assert!(matches!(
            Engine::from_snapshot(&other, RiskMode::On, &bytes),
            Err(SnapshotError::ConfigMismatch { .. })
        ));
        assert_eq!(
            Engine::from_snapshot(&config, RiskMode::Off, &bytes).unwrap_err(),
            SnapshotError::RiskModeMismatch {
                snapshot: RiskMode::On,
                requested: RiskMode::Off
            }
        );
        let mut bad = bytes.clone();
        for version in [1u8, 2, 3, 4, 6] {
            // Versions 1 to 3 lacked engine time, trade ids, the client-order-id marks or the
            // finished-order windows: they are not read (replay instead).
            bad[8] = version;
            assert!(matches!(
                Engine::from_snapshot(&config, RiskMode::On, &bad),
                Err(SnapshotError::UnsupportedVersion { found, .. }) if found == u16::from(version)
            ));
        }
        bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(
            Engine::from_snapshot(&config, RiskMode::On, &bad).unwrap_err(),
            SnapshotError::BadMagic
        );
        bad = bytes.clone();
        bad.push(0);
        assert_eq!(
            Engine::from_snapshot(&config, RiskMode::On, &bad).unwrap_err(),
            SnapshotError::TrailingBytes { count: 1 }
        );
    }

    #[test]
    fn a_state_hash_mismatch_is_reported() {
        let (config, e) = busy_engine();
        let mut bytes = Vec::new();
        e.write_snapshot(&mut bytes);
        bytes[20] ^= 1; // the recorded state hash
        assert!(matches!(
            Engine::from_snapshot(&config, RiskMode::On, &bytes),
            Err(SnapshotError::HashMismatch { .. })
        ));
    }
}
