//! A dead pipeline stops the process: `ringbook serve` (the real binary) with a panic injected
//! into one pipeline stage (`--inject-panic`, the hidden fault-injection hook) exits non-zero
//! within a bounded time, with the cause on stderr, instead of accepting commands nobody will
//! answer; a restart on the same journal recovers every journaled command.
//!
//! `cargo test -p ringbook-tools --test fatal`
//!
//! - the business stage of the fused pipeline panics: exit 3, the thread and the panic message
//!   logged; restart (no fault) replays the journal, logs the recovered state hash, which is
//!   `ringbook journal replay`'s, and takes new commands;
//! - the output thread panics: exit 3, the `out` thread named;
//! - the inline layout (the stages on the gateway thread) panics: exit 3, the message logged.
//!
//! Every wait is bounded (a timeout that only fails a broken run).

use std::path::Path;
use std::process::{Command as Proc, ExitStatus};
use std::time::Duration;

use ringbook_client::Client;
use ringbook_engine::prelude::*;

mod support;
use support::{deposit, ops, Server, BIN};

/// How long a failed server may take to exit (the issue's bound, generous for a loaded box:
/// the gateway notices within one 20 ms loop turn).
const EXIT_BOUND: Duration = Duration::from_secs(20);

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

/// Sends a deposit that the server will never acknowledge (the stage dies on it); whatever
/// comes back is a close, a `SHUTTING_DOWN` reject, or nothing.
fn deposit_unanswered(c: &mut Client, user: u32) {
    c.send(
        &Command::Deposit {
            user: UserId(user),
            currency: CurrencyId(0),
            amount: 1,
        }
        .into(),
    )
    .unwrap();
}

fn assert_failed(status: ExitStatus, log: &[String], thread: &str) {
    assert_eq!(
        status.code(),
        Some(3),
        "serve must exit 3 when its pipeline dies; log: {log:#?}"
    );
    let fatal = log
        .iter()
        .find(|l| l.contains("FATAL"))
        .unwrap_or_else(|| panic!("no FATAL line; log: {log:#?}"));
    assert!(
        log.iter().any(|l| l.contains("fault injection")),
        "the panic's own message is on stderr; log: {log:#?}"
    );
    assert!(
        fatal.contains(thread),
        "the FATAL line names {thread:?}: {fatal}"
    );
}

/// `ringbook journal replay DIR`'s state hash.
fn replay_hash(dir: &Path) -> String {
    let out = Proc::new(BIN)
        .args(["journal", "replay"])
        .arg(dir)
        .output()
        .expect("run journal replay");
    assert!(
        out.status.success(),
        "journal replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find(|l| l.contains(r#""event":"state_hash""#))
        .expect("a state_hash line");
    line.split(r#""hash":""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string()
}

#[test]
fn a_panicking_stage_stops_serve_and_a_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    // Run 1: commands 1–4 are acknowledged; the business stage dies on command 5.
    let srv = start(
        &journal,
        &["--layout", "fused", "--inject-panic", "business@5"],
    );
    let mut c = ops(srv.addr);
    for user in 1..=4 {
        deposit(&mut c, user, 100);
    }
    deposit_unanswered(&mut c, 5);
    let (status, log) = srv.exit_within(EXIT_BOUND);
    assert_failed(status, &log, "JRMS");
    assert!(
        log.iter()
            .any(|l| l.contains("panics at command 5") && !l.contains("FAULT INJECTION")),
        "the panic names the command; log: {log:#?}"
    );

    // Run 2: no fault. The journal holds 5 commands (J wrote command 5 before the business
    // stage saw it): all are replayed, and the logged state hash is the journal's.
    let mut srv = start(&journal, &["--layout", "fused"]);
    let rec = srv.wait_line_seen("recovered");
    assert!(rec.contains(" 5 records replayed"), "{rec}");
    assert!(rec.contains("next sequence 6"), "{rec}");
    let hash = rec.rsplit("state hash ").next().unwrap().trim().to_string();
    assert_eq!(
        hash,
        replay_hash(&journal),
        "recovered hash = journal replay"
    );
    let mut c = ops(srv.addr);
    deposit(&mut c, 6, 100); // the restarted server takes commands
    let (status, _) = srv.terminate();
    assert!(status.success());
}

#[test]
fn a_panicking_output_thread_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let srv = start(
        &journal,
        &["--layout", "fused", "--inject-panic", "output@3"],
    );
    let mut c = ops(srv.addr);
    for user in 1..=2 {
        deposit(&mut c, user, 100);
    }
    deposit_unanswered(&mut c, 3);
    let (status, log) = srv.exit_within(EXIT_BOUND);
    assert_failed(status, &log, "out");
}

#[test]
fn a_panic_in_the_inline_layout_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let srv = start(
        &journal,
        &["--layout", "inline", "--inject-panic", "business@2"],
    );
    let mut c = ops(srv.addr);
    deposit(&mut c, 1, 100);
    deposit_unanswered(&mut c, 2);
    let (status, log) = srv.exit_within(EXIT_BOUND);
    assert_failed(status, &log, "gateway");
}
