//! `ringbook serve`'s journal flags through the real binary: `--snapshot-every N` snapshots
//! every N commands, `--keep-snapshots K` leaves only the newest K, a restart starts from the
//! newest and logs the recovered state hash (equal to the hash logged at shutdown), and
//! `--durability batch` is taken and logged.
//!
//! `cargo test -p ringbook-tools --test serve_snapshots`
//!
//! Every wait is bounded (a timeout that only fails a broken run).

use std::path::Path;
use std::time::Duration;

mod support;
use support::{deposit, hash_in, ops, Server};

/// `ringbook serve` on a free port with journal `journal` and no web edge, up and listening.
fn start(journal: &Path, extra: &[&str]) -> Server {
    let journal = journal.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "serve",
        "--no-http",
        "--journal",
        journal,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Waits (bounded) until the journal's snapshot sequences satisfy `f`.
fn wait_for_snapshots(journal: &Path, f: impl Fn(&[u64]) -> bool) {
    let mut seen = Vec::new();
    for _ in 0..1_000 {
        seen = ringbook_journal::list(journal)
            .unwrap()
            .snapshots
            .iter()
            .map(|s| s.0)
            .collect();
        if f(&seen) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("snapshots never got there: {seen:?}");
}

#[test]
fn snapshots_every_n_keep_the_newest_and_a_restart_starts_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let flags = [
        "--snapshot-every",
        "3",
        "--keep-snapshots",
        "2",
        "--durability",
        "batch",
    ];
    let mut srv = start(&journal, &flags);
    let listening = srv.wait_line_seen("listening on ");
    assert!(
        listening.contains("durability batch (Msync)")
            && listening.contains("a snapshot every 3 commands, newest 2 kept"),
        "{listening}"
    );
    let mut c = ops(srv.addr);
    for user in 1..=10 {
        deposit(&mut c, user, 100);
        if user % 3 == 0 {
            // Let each snapshot land before the next is due (one due while the previous is
            // still being written would be taken a command later).
            wait_for_snapshots(&journal, |s| s.last() == Some(&u64::from(user)));
        }
    }
    // The writer removes the oldest after writing the newest.
    wait_for_snapshots(&journal, |s| s == [6, 9]);
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:#?}");
    let stopped = log
        .iter()
        .find(|l| l.contains("stopped after"))
        .expect("the shutdown line");
    let hash = hash_in(stopped);

    let mut srv = start(&journal, &flags);
    let rec = srv.wait_line_seen("recovered");
    assert!(
        rec.contains(" 1 records replayed after the snapshot at 9")
            && rec.contains("next sequence 11"),
        "{rec}"
    );
    assert_eq!(hash_in(&rec), hash, "recovered = the hash at shutdown");
    let mut c = ops(srv.addr);
    deposit(&mut c, 11, 100);
    let (status, _) = srv.terminate();
    assert!(status.success());
}
