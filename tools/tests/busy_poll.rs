//! `serve --busy-poll` and `loadgen --busy-poll`: the busy-polled gateway loop serves a
//! count-bounded busy-polled load with every order acknowledged, and a layout whose spinning
//! threads would not fit beside the busy loop is refused at start. Latencies are recorded in
//! docs/benchmarks.md, never asserted here.

mod support;

use support::{Server, WAIT};

#[test]
fn a_busy_polled_server_acknowledges_a_busy_polled_load() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    let s = Server::start(&[
        "serve",
        "--journal",
        journal.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-http",
        "--layout",
        "inline",
        "--busy-poll",
    ]);
    let r = support::loadgen_json(
        s.addr,
        &[
            "--busy-poll",
            "--connections",
            "1",
            "--rate",
            "2000",
            "--seconds",
            "1",
            "--echo-baseline",
            "--hiccup",
            "off",
        ],
    );
    assert_eq!(r["sent"], 2000, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    // 7 in 10 messages of the mix are new orders, each acknowledged.
    assert_eq!(r["orders_acked"], 1400, "{r}");
    assert_eq!(r["busy_poll"], true, "{r}");
    assert_eq!(r["echo_count"], 2000, "{r}");
    let (status, _) = s.terminate();
    assert!(status.success());
}

#[test]
fn busy_poll_refuses_a_layout_whose_spinners_do_not_fit() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j");
    // split + busy-spin: three stage threads and the output thread spin, plus the loop.
    let s = Server::spawn(&[
        "serve",
        "--journal",
        journal.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-http",
        "--layout",
        "split",
        "--wait",
        "busy-spin",
        "--busy-poll",
    ]);
    if cores >= 5 {
        // Enough cores for all five spinners: it starts.
        let s = s.listening();
        let (status, _) = s.terminate();
        assert!(status.success());
    } else {
        let (status, log) = s.exit_within(WAIT);
        assert!(!status.success());
        assert!(
            log.iter()
                .any(|l| l.contains("--busy-poll keeps one of the")),
            "{log:#?}"
        );
        assert!(!journal.join("journal.created").exists() || cores >= 5);
    }
}
