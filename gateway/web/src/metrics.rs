//! `/metrics`: Prometheus text exposition (version 0.0.4) of the gateway's live counters, the
//! bridge's, and the web edge's own. Every label is bounded: routes are the router's path
//! templates, statuses are HTTP status codes, scopes and results are fixed words. No per-user
//! or per-address label exists.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringbook_gateway::server::{Stats, WebBridge};

/// The web edge's counters.
#[derive(Debug)]
pub struct Metrics {
    /// (route template, status) → requests. Bounded by routes × statuses.
    http: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// (code, name) → error replies. Bounded by the published codes.
    errors: Mutex<BTreeMap<(u16, &'static str), u64>>,
    /// Command kind → web commands sent to the gateway. Bounded by the command kinds.
    commands: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests refused by the per-account limit.
    pub rate_limited_account: AtomicU64,
    /// Requests refused by the per-address limit.
    pub rate_limited_address: AtomicU64,
    /// Web logins that succeeded.
    pub logins_ok: AtomicU64,
    /// Web logins with bad credentials.
    pub logins_failed: AtomicU64,
    /// Web logins refused during a back-off.
    pub logins_throttled: AtomicU64,
    /// Requests refused because the queue into the gateway was full.
    pub busy: AtomicU64,
    /// Requests that got no answer in time.
    pub timeouts: AtomicU64,
    /// Tokens that did not verify (bad signature, malformed, expired).
    pub bad_tokens: AtomicU64,
    /// Gauge: open WebSocket connections.
    pub ws_connections: AtomicU64,
    /// WebSocket connections closed because their private backlog overflowed.
    pub ws_overflows: AtomicU64,
    /// WebSocket upgrades refused at `ws_conns_max` (both APIs).
    pub ws_refused: AtomicU64,
    /// WebSocket messages queued to connections.
    pub ws_messages: AtomicU64,
    /// Web order submit → acknowledgement (journaled `Done`), microseconds.
    order_ack_us: Mutex<Histogram<u64>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            http: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            commands: Mutex::new(BTreeMap::new()),
            rate_limited_account: AtomicU64::new(0),
            rate_limited_address: AtomicU64::new(0),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            logins_throttled: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            bad_tokens: AtomicU64::new(0),
            ws_connections: AtomicU64::new(0),
            ws_overflows: AtomicU64::new(0),
            ws_refused: AtomicU64::new(0),
            ws_messages: AtomicU64::new(0),
            order_ack_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// One finished HTTP request.
    pub fn http(&self, route: &'static str, status: u16) {
        if let Ok(mut m) = self.http.lock() {
            *m.entry((route, status)).or_insert(0) += 1;
        }
    }

    /// One error reply with this code.
    pub fn error(&self, code: u16, reason: &'static str) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry((code, reason)).or_insert(0) += 1;
        }
    }

    /// One web command of this kind.
    pub fn command(&self, kind: &'static str) {
        if let Ok(mut m) = self.commands.lock() {
            *m.entry(kind).or_insert(0) += 1;
        }
    }

    /// Increments a counter.
    pub fn inc(&self, c: &AtomicU64) {
        inc(c)
    }

    /// One order acknowledged after `d`.
    pub fn order_ack(&self, d: Duration) {
        if let Ok(mut h) = self.order_ack_us.lock() {
            let _ = h.record((d.as_micros() as u64).max(1));
        }
    }

    /// The exposition text.
    pub fn render(&self, gateway: &Stats, bridge: &WebBridge) -> String {
        let mut o = String::with_capacity(8 << 10);
        let g = gateway.snapshot();
        const GAUGES: [&str; 3] = ["conns_prelogin", "conns_logged_in", "sessions_in_use"];
        for (name, v) in g.named() {
            if GAUGES.contains(&name) {
                metric(
                    &mut o,
                    &format!("ringbook_gateway_{name}"),
                    "gauge",
                    "gateway gauge (binary protocol)",
                    v,
                );
            } else {
                metric(
                    &mut o,
                    &format!("ringbook_gateway_{name}_total"),
                    "counter",
                    "gateway counter (binary protocol and web edge logins/commands)",
                    v,
                );
            }
        }
        let b = &bridge.stats;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metric(
            &mut o,
            "ringbook_gateway_clock_ticks_total",
            "counter",
            "engine-clock ticks sent because a GTD or DAY order was due and no command brought the time",
            l(&gateway.clock_ticks),
        );
        metric(
            &mut o,
            "ringbook_journal_acked_sequence",
            "gauge",
            "highest sequence number acknowledged (journaled) through the gateway",
            l(&b.last_done_seq),
        );
        metric(
            &mut o,
            "ringbook_web_bridge_requests_total",
            "counter",
            "web requests taken by the gateway loop",
            l(&b.requests),
        );
        metric(
            &mut o,
            "ringbook_web_bridge_commands_total",
            "counter",
            "web commands sequenced",
            l(&b.commands),
        );
        metric(
            &mut o,
            "ringbook_web_bridge_rejected_total",
            "counter",
            "web commands refused by authorization",
            l(&b.rejected),
        );
        metric(
            &mut o,
            "ringbook_web_bridge_backpressure_total",
            "counter",
            "times the engine ring was full for a web command",
            l(&b.backpressure),
        );
        metric(
            &mut o,
            "ringbook_web_bridge_forwarded_total",
            "counter",
            "outputs the gateway loop sent the web edge that answer no web request (market-data \
             feed, watched users' events, withdrawals); 0 while the web edge is idle",
            l(&b.forwarded),
        );
        metric(
            &mut o,
            "ringbook_web_bridge_outbound_full_total",
            "counter",
            "times the gateway loop waited for room in the web output queue",
            l(&b.outbound_full),
        );
        metric(
            &mut o,
            "ringbook_web_bridge_inbound_queue",
            "gauge",
            "web requests queued for the gateway loop",
            bridge.inbound_len() as u64,
        );
        metric(
            &mut o,
            "ringbook_web_bridge_outbound_queue",
            "gauge",
            "outputs queued for the web dispatcher",
            bridge.outbound_len() as u64,
        );
        metric(
            &mut o,
            "ringbook_web_ready",
            "gauge",
            "1 while the gateway loop takes web requests",
            bridge.ready() as u64,
        );
        let _ = writeln!(
            o,
            "# HELP ringbook_http_requests_total HTTP requests by route template and status"
        );
        let _ = writeln!(o, "# TYPE ringbook_http_requests_total counter");
        if let Ok(m) = self.http.lock() {
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    o,
                    "ringbook_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            o,
            "# HELP ringbook_web_errors_total error replies by stable code and name"
        );
        let _ = writeln!(o, "# TYPE ringbook_web_errors_total counter");
        if let Ok(m) = self.errors.lock() {
            for ((code, reason), n) in m.iter() {
                let _ = writeln!(
                    o,
                    "ringbook_web_errors_total{{code=\"{code}\",reason=\"{reason}\"}} {n}"
                );
            }
        }
        let _ = writeln!(o, "# HELP ringbook_web_commands_total web commands and queries sent to the gateway, by kind");
        let _ = writeln!(o, "# TYPE ringbook_web_commands_total counter");
        if let Ok(m) = self.commands.lock() {
            for (kind, n) in m.iter() {
                let _ = writeln!(o, "ringbook_web_commands_total{{kind=\"{kind}\"}} {n}");
            }
        }
        let _ = writeln!(
            o,
            "# HELP ringbook_rate_limited_total requests refused by a rate limit, by scope"
        );
        let _ = writeln!(o, "# TYPE ringbook_rate_limited_total counter");
        let _ = writeln!(
            o,
            "ringbook_rate_limited_total{{scope=\"account\"}} {}",
            l(&self.rate_limited_account)
        );
        let _ = writeln!(
            o,
            "ringbook_rate_limited_total{{scope=\"address\"}} {}",
            l(&self.rate_limited_address)
        );
        let _ = writeln!(o, "# HELP ringbook_web_logins_total web logins by result");
        let _ = writeln!(o, "# TYPE ringbook_web_logins_total counter");
        let _ = writeln!(
            o,
            "ringbook_web_logins_total{{result=\"ok\"}} {}",
            l(&self.logins_ok)
        );
        let _ = writeln!(
            o,
            "ringbook_web_logins_total{{result=\"failed\"}} {}",
            l(&self.logins_failed)
        );
        let _ = writeln!(
            o,
            "ringbook_web_logins_total{{result=\"throttled\"}} {}",
            l(&self.logins_throttled)
        );
        metric(
            &mut o,
            "ringbook_web_busy_total",
            "counter",
            "requests refused with WEB_BUSY (queue into the gateway full)",
            l(&self.busy),
        );
        metric(
            &mut o,
            "ringbook_web_timeouts_total",
            "counter",
            "requests that got no answer from the gateway loop in time",
            l(&self.timeouts),
        );
        metric(
            &mut o,
            "ringbook_web_bad_tokens_total",
            "counter",
            "bearer tokens that did not verify or had expired",
            l(&self.bad_tokens),
        );
        metric(
            &mut o,
            "ringbook_ws_connections",
            "gauge",
            "open WebSocket connections",
            l(&self.ws_connections),
        );
        metric(
            &mut o,
            "ringbook_ws_overflow_disconnects_total",
            "counter",
            "WebSocket connections closed because their private backlog overflowed",
            l(&self.ws_overflows),
        );
        metric(
            &mut o,
            "ringbook_ws_refused_total",
            "counter",
            "WebSocket upgrades refused because ws_conns_max were open (both APIs)",
            l(&self.ws_refused),
        );
        metric(
            &mut o,
            "ringbook_ws_messages_total",
            "counter",
            "messages queued to WebSocket connections",
            l(&self.ws_messages),
        );
        if let Ok(h) = self.order_ack_us.lock() {
            let _ = writeln!(o, "# HELP ringbook_web_order_ack_seconds web order submit to journaled acknowledgement");
            let _ = writeln!(o, "# TYPE ringbook_web_order_ack_seconds summary");
            for q in [0.5, 0.9, 0.99, 0.999] {
                let v = if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(q)
                };
                let _ = writeln!(
                    o,
                    "ringbook_web_order_ack_seconds{{quantile=\"{q}\"}} {}",
                    v as f64 / 1e6
                );
            }
            let sum: f64 = h
                .iter_recorded()
                .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                .sum();
            let _ = writeln!(o, "ringbook_web_order_ack_seconds_sum {}", sum / 1e6);
            let _ = writeln!(o, "ringbook_web_order_ack_seconds_count {}", h.len());
        }
        o
    }
}

/// The pipeline's figures: commands in flight (sequenced, their end not yet back at the
/// gateway: what the rings and the output channel hold), journal records and bytes written
/// since start, and the newest snapshot's sequence, engine time and age.
pub(crate) fn render_pipeline(
    o: &mut String,
    g: &ringbook_engine::PipelineGauges,
    bridge: &WebBridge,
) {
    let submitted = g.submitted_seq().0;
    let done = bridge.stats.last_done_seq.load(Ordering::Relaxed);
    metric(
        o,
        "ringbook_pipeline_submitted_sequence",
        "gauge",
        "last sequence number handed to a submitted command",
        submitted,
    );
    metric(
        o,
        "ringbook_pipeline_in_flight_commands",
        "gauge",
        "commands sequenced whose processing has not yet come back to the gateway (ring occupancy)",
        submitted.saturating_sub(done),
    );
    let (records, bytes) = g.journal_written();
    metric(
        o,
        "ringbook_journal_records_total",
        "counter",
        "journal records appended since start",
        records,
    );
    metric(
        o,
        "ringbook_journal_written_bytes_total",
        "counter",
        "journal bytes appended since start (frame headers and padding included)",
        bytes,
    );
    if let Some((seq, ts_ns)) = g.last_snapshot() {
        metric(
            o,
            "ringbook_snapshot_last_sequence",
            "gauge",
            "sequence the newest snapshot on disk covers",
            seq.0,
        );
        let _ = writeln!(o, "# HELP ringbook_snapshot_last_timestamp_seconds engine time of the newest snapshot (Unix seconds)");
        let _ = writeln!(o, "# TYPE ringbook_snapshot_last_timestamp_seconds gauge");
        let _ = writeln!(
            o,
            "ringbook_snapshot_last_timestamp_seconds {:.3}",
            ts_ns as f64 / 1e9
        );
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let _ = writeln!(
            o,
            "# HELP ringbook_snapshot_age_seconds seconds since the newest snapshot's engine time"
        );
        let _ = writeln!(o, "# TYPE ringbook_snapshot_age_seconds gauge");
        let _ = writeln!(
            o,
            "ringbook_snapshot_age_seconds {:.3}",
            now_ns.saturating_sub(ts_ns) as f64 / 1e9
        );
    }
}

/// The `serve --postgres` projection's figures: whether it runs, its committed sequence, how
/// far it is behind the pipeline's last sequence (in commands: the recovered one at start, so
/// a projection still behind after a restart shows it before any traffic), and its database
/// errors.
pub(crate) fn render_projection(
    o: &mut String,
    p: crate::ProjectionStatus,
    g: &ringbook_engine::PipelineGauges,
) {
    metric(
        o,
        "ringbook_projection_running",
        "gauge",
        "1 while the PostgreSQL projection runs, 0 once it stopped on an error",
        u64::from(p.running),
    );
    metric(
        o,
        "ringbook_projection_committed_sequence",
        "gauge",
        "last journal sequence the PostgreSQL projection committed",
        p.committed_seq,
    );
    metric(
        o,
        "ringbook_projection_lag_commands",
        "gauge",
        "the pipeline's last sequence minus the projection's committed sequence",
        g.submitted_seq().0.saturating_sub(p.committed_seq),
    );
    metric(
        o,
        "ringbook_projection_db_errors_total",
        "counter",
        "failed attempts to reach or write to PostgreSQL",
        p.db_errors,
    );
}

pub(crate) fn metric(o: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
    let _ = writeln!(o, "{name} {v}");
}
