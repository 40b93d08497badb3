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

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command as Proc, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use ringbook_client::protocol::ServerMsg;
use ringbook_client::Client;
use ringbook_engine::prelude::*;

const WAIT: Duration = Duration::from_secs(20);
/// How long a failed server may take to exit (the issue's bound, generous for a loaded box:
/// the gateway notices within one 20 ms loop turn).
const EXIT_BOUND: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_ringbook");

/// A `ringbook serve` child process and its stderr, line by line.
struct Server {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
    addr: SocketAddr,
}

impl Server {
    fn start(journal: &Path, extra: &[&str]) -> Server {
        let mut child = Proc::new(BIN)
            .args(["serve", "--no-http"])
            .arg("--journal")
            .arg(journal)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringbook serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Server {
            child,
            lines,
            log: Vec::new(),
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        let line = s.wait_line("listening on ");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("address in the log line");
        s.addr = addr.parse().expect("a socket address");
        s
    }

    /// The next stderr line containing `needle` (bounded wait).
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.log.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; log so far: {:#?}", self.log),
            }
        }
    }

    /// Waits (at most [`EXIT_BOUND`]) for the process to exit by itself; its status and
    /// everything it logged.
    fn exit_by_itself(mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + EXIT_BOUND;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            while let Ok(l) = self.lines.try_recv() {
                self.log.push(l);
            }
            assert!(
                Instant::now() < deadline,
                "serve still runs {EXIT_BOUND:?} after its pipeline failed; log: {:#?}",
                self.log
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closes when the process is gone: the reader thread ends the channel.
        while let Ok(l) = self.lines.recv_timeout(WAIT) {
            self.log.push(l);
        }
        (status, self.log.clone())
    }

    /// SIGTERM, then the exit status and the log.
    fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let ok = Proc::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
        self.wait_line("state hash ");
        self.exit_by_itself()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ops(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr).unwrap();
    c.login("ops1", "ops1-demo", 1, false).unwrap();
    c
}

/// Sends a deposit for `user` and waits for its acknowledgement.
fn deposit(c: &mut Client, user: u32, amount: u64) {
    c.send(
        &Command::Deposit {
            user: UserId(user),
            currency: CurrencyId(0),
            amount,
        }
        .into(),
    )
    .unwrap();
    for _ in 0..1000 {
        match c.recv_timeout(WAIT) {
            Ok(Some(ServerMsg::Deposited { user: u, .. })) if u == user => return,
            Ok(Some(_)) => {}
            other => panic!("no Deposited for user {user}: {other:?}"),
        }
    }
    panic!("no Deposited for user {user} in 1000 messages");
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
    let srv = Server::start(
        &journal,
        &["--layout", "fused", "--inject-panic", "business@5"],
    );
    let mut c = ops(srv.addr);
    for user in 1..=4 {
        deposit(&mut c, user, 100);
    }
    deposit_unanswered(&mut c, 5);
    let (status, log) = srv.exit_by_itself();
    assert_failed(status, &log, "JRMS");
    assert!(
        log.iter()
            .any(|l| l.contains("panics at command 5") && !l.contains("FAULT INJECTION")),
        "the panic names the command; log: {log:#?}"
    );

    // Run 2: no fault. The journal holds 5 commands (J wrote command 5 before the business
    // stage saw it): all are replayed, and the logged state hash is the journal's.
    let mut srv = Server::start(&journal, &["--layout", "fused"]);
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
    let srv = Server::start(
        &journal,
        &["--layout", "fused", "--inject-panic", "output@3"],
    );
    let mut c = ops(srv.addr);
    for user in 1..=2 {
        deposit(&mut c, user, 100);
    }
    deposit_unanswered(&mut c, 3);
    let (status, log) = srv.exit_by_itself();
    assert_failed(status, &log, "out");
}

#[test]
fn a_panic_in_the_inline_layout_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let srv = Server::start(
        &journal,
        &["--layout", "inline", "--inject-panic", "business@2"],
    );
    let mut c = ops(srv.addr);
    deposit(&mut c, 1, 100);
    deposit_unanswered(&mut c, 2);
    let (status, log) = srv.exit_by_itself();
    assert_failed(status, &log, "gateway");
}

impl Server {
    /// A line already logged (start-up) or the next one containing `needle`.
    fn wait_line_seen(&mut self, needle: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        self.wait_line(needle)
    }
}
