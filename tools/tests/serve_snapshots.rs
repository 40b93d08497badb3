//! `ringbook serve`'s journal flags through the real binary: `--snapshot-every N` snapshots
//! every N commands, `--keep-snapshots K` leaves only the newest K, a restart starts from the
//! newest and logs the recovered state hash (equal to the hash logged at shutdown), and
//! `--durability batch` is taken and logged.
//!
//! `cargo test -p ringbook-tools --test serve_snapshots`
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
/// How long a failed server may take to exit (the bound, generous for a loaded box:
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

fn hash_in(line: &str) -> String {
    line.rsplit("state hash ")
        .next()
        .unwrap()
        .trim()
        .to_string()
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
    let mut srv = Server::start(&journal, &flags);
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

    let mut srv = Server::start(&journal, &flags);
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

impl Server {
    /// A line already logged (start-up) or the next one containing `needle`.
    fn wait_line_seen(&mut self, needle: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        self.wait_line(needle)
    }
}
