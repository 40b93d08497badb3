//! What an operator can see of a running server: the counters and gauges ([`Stats`], read
//! live by [`super::ServerHandle::stats`] and through the operator-only `Stats` message), and
//! the rate-limited log lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::protocol::server::GatewayStats;

/// At most one log line per this interval and kind; the rest are counted and reported with the
/// next line.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Counters a monitor reads while the server runs (relaxed: each is an independent tally), and
/// three gauges. An operator session reads the same through the `Stats` message.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at accept: their source address already held
    /// `prelogin_per_addr_max` connections that had not logged in.
    pub connections_refused: AtomicU64,
    /// Not-yet-logged-in connections closed to make room for a newer one (the pre-login budget
    /// was full).
    pub prelogin_displaced: AtomicU64,
    /// Failed `accept` calls (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Successful logins.
    pub logins: AtomicU64,
    /// Failed logins (bad credentials).
    pub login_failures: AtomicU64,
    /// Logins refused while the account or the address was in back-off.
    pub logins_throttled: AtomicU64,
    /// Logins refused with `SERVER_FULL` (no logged-in slot, or no session to be had without
    /// displacing another account's).
    pub server_full: AtomicU64,
    /// Detached sessions forgotten to make room for a new session of the same account.
    pub sessions_displaced: AtomicU64,
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames sent (sequenced ones counted once, when sequenced).
    pub msgs_out: AtomicU64,
    /// Commands submitted to the engine.
    pub commands: AtomicU64,
    /// Times a command found the engine's ring full and reading paused.
    pub backpressure: AtomicU64,
    /// Messages rejected by the gateway (1xxx codes).
    pub gateway_rejects: AtomicU64,
    /// Disconnects for protocol violations (bad length, flood).
    pub protocol_disconnects: AtomicU64,
    /// Disconnects of slow readers.
    pub slow_consumers: AtomicU64,
    /// Times a connection's reading paused because its session's outbound backlog was above
    /// the high-water mark (a client pipelining faster than it reads).
    pub outbound_pauses: AtomicU64,
    /// Disconnects for heartbeat or login timeout.
    pub timeouts: AtomicU64,
    /// Cancel-on-disconnect mass cancels issued.
    pub cancel_on_disconnect: AtomicU64,
    /// Gauge: connections open that have not logged in.
    pub conns_prelogin: AtomicU64,
    /// Gauge: logged-in connections.
    pub conns_logged_in: AtomicU64,
    /// Gauge: sessions held (attached or detached).
    pub sessions_in_use: AtomicU64,
    /// Market data: depth updates sent to a subscriber as they happened.
    pub md_depth_updates: AtomicU64,
    /// Market data: conflated depth messages sent (subscription snapshots included).
    pub md_conflated: AtomicU64,
    /// Market data: trades a subscriber missed because its buffer had no room.
    pub md_trades_dropped: AtomicU64,
    /// Trades routed (every origin; not in the `Stats` message; `/metrics` shows it as
    /// `ringbook_trades_total`).
    pub trades: AtomicU64,
    /// `Tick` commands sent because a live GTD or DAY order's expiry had come and no command
    /// brought the time (not in the `Stats` message; `/metrics` shows it).
    pub clock_ticks: AtomicU64,
}

impl Stats {
    pub(super) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn set(c: &AtomicU64, v: usize) {
        c.store(v as u64, Ordering::Relaxed);
    }

    /// Every counter and gauge, as the `Stats` message carries them.
    pub fn snapshot(&self) -> GatewayStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GatewayStats {
            connections: g(&self.connections),
            connections_refused: g(&self.connections_refused),
            prelogin_displaced: g(&self.prelogin_displaced),
            accept_errors: g(&self.accept_errors),
            logins: g(&self.logins),
            login_failures: g(&self.login_failures),
            logins_throttled: g(&self.logins_throttled),
            server_full: g(&self.server_full),
            sessions_displaced: g(&self.sessions_displaced),
            frames_in: g(&self.frames_in),
            msgs_out: g(&self.msgs_out),
            commands: g(&self.commands),
            backpressure: g(&self.backpressure),
            gateway_rejects: g(&self.gateway_rejects),
            protocol_disconnects: g(&self.protocol_disconnects),
            slow_consumers: g(&self.slow_consumers),
            outbound_pauses: g(&self.outbound_pauses),
            timeouts: g(&self.timeouts),
            cancel_on_disconnect: g(&self.cancel_on_disconnect),
            conns_prelogin: g(&self.conns_prelogin),
            conns_logged_in: g(&self.conns_logged_in),
            sessions_in_use: g(&self.sessions_in_use),
        }
    }
}

/// One kind of log line, at most one per [`LOG_INTERVAL`]; the lines in between are counted
/// and the count is reported with the next line that is printed.
#[derive(Debug, Default)]
pub(super) struct RateLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLog {
    /// `Some(lines suppressed since the last one)` if a line may be printed now.
    pub(super) fn ready(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// The rate-limited log lines, one limiter per kind.
#[derive(Debug, Default)]
pub(super) struct Logs {
    pub(super) login_failed: RateLog,
    pub(super) login_throttled: RateLog,
    pub(super) server_full: RateLog,
    pub(super) refused: RateLog,
    pub(super) displaced: RateLog,
    pub(super) accept: RateLog,
}

/// ` (N similar suppressed)` when N > 0.
pub(super) struct Suppressed(pub(super) u64);

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 > 0 {
            write!(f, " ({} similar suppressed)", self.0)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_rate_limited_with_a_suppressed_count() {
        let mut l = RateLog::default();
        let t = Instant::now();
        assert_eq!(l.ready(t), Some(0));
        assert_eq!(l.ready(t + Duration::from_millis(10)), None);
        assert_eq!(l.ready(t + Duration::from_millis(999)), None);
        assert_eq!(l.ready(t + LOG_INTERVAL), Some(2));
        assert_eq!(l.ready(t + LOG_INTERVAL * 3), Some(0));
        assert_eq!(Suppressed(2).to_string(), " (2 similar suppressed)");
        assert_eq!(Suppressed(0).to_string(), "");
    }
}
