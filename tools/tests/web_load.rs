//! `ringbook loadgen --http` and `--ws` against a real `ringbook serve`, bounded by count: the
//! REST mode's orders are all accepted, and 1,000 WebSocket subscribers to depth and trades see
//! every update with no `md_seq` gap and end with exactly the server's book, while the server's
//! memory stays bounded. Nothing here passes or fails on speed (the rates are recorded in
//! docs/benchmarks.md, not asserted).

mod support;

use std::process::Command;

use serde_json::Value;
use support::Server;

/// `ringbook serve` on the embedded configuration with the web rate limits and the
/// per-address connection cap out of the load's way (every subscriber comes from 127.0.0.1).
fn serve(dir: &std::path::Path) -> (Server, String) {
    support::serve_web(
        dir,
        "addr_rps = 10000000\naddr_burst = 10000000\naccount_rps = 10000000\n\
         account_burst = 10000000\nconns_per_addr = 4096",
        &[],
    )
}

fn loadgen(args: &[&str]) -> Value {
    let out = Command::new(support::BIN)
        .arg("loadgen")
        .args(args)
        .arg("--json")
        .output()
        .expect("run ringbook loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadgen {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn rest_orders_at_a_fixed_rate_are_all_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (s, url) = serve(dir.path());
    let r = loadgen(&[
        "--http",
        &url,
        "--connections",
        "2",
        "--rate",
        "500",
        "--seconds",
        "2",
    ]);
    assert_eq!(r["ok"], 1000, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["rate_limited"], 0, "{r}");
    assert!(r["p50_ns"].as_u64().unwrap() > 0, "{r}");
    let (status, _) = s.terminate();
    assert!(status.success());
}

#[test]
fn a_thousand_websocket_subscribers_see_every_update_without_gaps() {
    // Inherited by the loadgen child: a thousand subscribers are a thousand sockets.
    assert!(
        ringbook_gateway::server::limits::raise_open_files().unwrap_or(0) >= 2_500,
        "the open-file limit is too low for 1,000 WebSocket pairs"
    );
    let dir = tempfile::tempdir().unwrap();
    let (s, url) = serve(dir.path());
    let pid = s.child.id().to_string();
    let trades = 300u64;
    let subscribers = 1000u64;
    let r = loadgen(&[
        "--ws",
        &url,
        "--subscribers",
        &subscribers.to_string(),
        "--trades",
        &trades.to_string(),
        "--rate",
        "10000",
        "--connections",
        "3",
        // Bounded by the trade count; the time limit only catches a broken run.
        "--seconds",
        "600",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(r["trades"], trades, "{r}");
    assert_eq!(r["gaps"], 0, "{r}");
    assert_eq!(r["mismatched_books"], 0, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    // Every trade reached every subscriber, as an update or inside a fresh snapshot after a
    // conflation.
    if r["resnapshots"] == 0 {
        assert_eq!(r["trade_updates"], subscribers * trades, "{r}");
        assert!(
            r["depth_updates"].as_u64().unwrap() >= subscribers * trades,
            "{r}"
        );
    }
    // Bounded memory: far below what unbounded per-connection queues of 600k messages would
    // take, with the engine's preallocated pools (a few hundred MiB) included.
    let hwm = r["server_vm_hwm_kib"].as_u64().expect("server memory");
    assert!(hwm < 2 << 20, "server peak RSS {hwm} KiB: {r}");
    let (status, _) = s.terminate();
    assert!(status.success());
}
