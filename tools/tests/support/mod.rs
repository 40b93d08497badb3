//! What the tests that drive the real `ringbook` binary share: a `ringbook serve` child process
//! with its stderr read line by line on a thread, bounded waits for a log line, for the exit, and
//! SIGTERM/SIGKILL. Each test file includes it with `mod support;`; a file uses only part of it.
//!
//! Every wait is bounded (a timeout that only fails a broken run); nothing passes or fails on
//! wall-clock speed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The bound on every wait for the server (a log line, an exit).
pub const WAIT: Duration = Duration::from_secs(20);
/// The `ringbook` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringbook");

/// A `ringbook` child process and everything it wrote to stderr so far.
pub struct Server {
    /// The process.
    pub child: Child,
    lines: Receiver<String>,
    /// Every stderr line read so far, in order.
    pub log: Vec<String>,
    /// The gateway's address, once [`Server::listening`] read it from the log.
    pub addr: SocketAddr,
}

impl Server {
    /// `ringbook ARGS…` with stdin and stdout closed and stderr read line by line; does not
    /// wait for anything.
    pub fn spawn(args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        Server::spawn_command(cmd)
    }

    /// `cmd` (a `ringbook` command line, or a wrapper that runs one) with stderr piped.
    pub fn spawn_command(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringbook");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            lines,
            log: Vec::new(),
            addr: "127.0.0.1:1".parse().expect("an address"),
        }
    }

    /// `ringbook ARGS…`, then waits for the gateway's "listening on ADDR" line.
    pub fn start(args: &[&str]) -> Server {
        Server::spawn(args).listening()
    }

    /// Waits for the gateway's "listening on ADDR" line and keeps ADDR.
    pub fn listening(mut self) -> Server {
        let line = self.wait_line("listening on ");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .expect("address in the log line");
        self.addr = addr.parse().expect("a socket address");
        self
    }

    /// The next stderr line containing `needle` (bounded wait).
    pub fn wait_line(&mut self, needle: &str) -> String {
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

    /// Every line logged so far (without waiting).
    pub fn log_now(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.log.push(l);
        }
        &self.log
    }

    /// Waits (at most `bound`) for the process to exit by itself: its status and everything
    /// it logged.
    pub fn exit_within(mut self, bound: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + bound;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            self.log_now();
            assert!(
                Instant::now() < deadline,
                "ringbook still runs after {bound:?}; log: {:#?}",
                self.log
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closes when the process is gone: the reader thread ends the channel.
        while let Ok(l) = self.lines.recv_timeout(WAIT) {
            self.log.push(l);
        }
        (status, std::mem::take(&mut self.log))
    }

    /// SIGTERM (a clean shutdown logs the state hash), then the exit status and the log.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        self.signal("-TERM");
        self.wait_line("state hash ");
        self.exit_within(WAIT)
    }

    /// SIGKILL: no shutdown at all, as a crash.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&mut self, which: &str) {
        let ok = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ringbook loadgen --addr ADDR ARGS --json` to its end and returns its one JSON object
/// (panicking with its output if it failed).
pub fn loadgen_json(addr: SocketAddr, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(BIN)
        .args(["loadgen", "--addr", &addr.to_string()])
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// The hash of the last line in `log` that names a state hash ("… state hash HEX").
pub fn state_hash(log: &[String]) -> String {
    let line = log
        .iter()
        .rev()
        .find(|l| l.contains("state hash "))
        .unwrap_or_else(|| panic!("no state hash in the log: {log:#?}"));
    hash_in(line)
}

/// The hash that follows "state hash " in `line` (up to the next space or comma).
pub fn hash_in(line: &str) -> String {
    line.rsplit("state hash ")
        .next()
        .and_then(|r| r.split([' ', ',']).next())
        .expect("a hash after 'state hash '")
        .trim()
        .to_string()
}

impl Server {
    /// A line already logged (at start-up, say) or the next one containing `needle`.
    pub fn wait_line_seen(&mut self, needle: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        self.wait_line(needle)
    }
}

/// `ringbook serve` on loopback ports (gateway and web edge) with a journal in `dir`, the
/// embedded configuration with its `[web]` table starting with the lines `web`, and `extra`
/// arguments; the server and the web edge's URL (`http://127.0.0.1:PORT`).
pub fn serve_web(dir: &std::path::Path, web: &str, extra: &[&str]) -> (Server, String) {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/src/default_config.toml"
    ))
    .unwrap();
    serve_config(dir, &format!("[web]\n{web}\n{base}"), extra)
}

/// [`serve_web`] on the configuration `config` (the whole file). The server has read the
/// gateway's address ([`Server::listening`]).
pub fn serve_config(dir: &std::path::Path, config: &str, extra: &[&str]) -> (Server, String) {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let journal = dir.join("journal");
    let mut args = vec![
        "serve",
        "--config",
        path.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut s = Server::start(&args);
    let line = s.wait_line_seen("web edge on http://");
    let url = line
        .split("web edge on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the web edge's address")
        .to_string();
    (s, url)
}

/// A binary-protocol session as operator `ops1` (demo password), with the longest heartbeat
/// interval (see [`login_patient`]).
pub fn ops(addr: SocketAddr) -> ringbook_client::Client {
    let mut c = ringbook_client::Client::connect(addr).expect("connect");
    login_patient(&mut c, "ops1", 1);
    c
}

/// Sends a deposit of `amount` of currency 0 for `user` and waits for its acknowledgement.
pub fn deposit(c: &mut ringbook_client::Client, user: u32, amount: u64) {
    use ringbook_client::protocol::ServerMsg;
    use ringbook_engine::prelude::*;
    c.send(
        &Command::Deposit {
            user: UserId(user),
            currency: CurrencyId(0),
            amount,
        }
        .into(),
    )
    .expect("send");
    for _ in 0..1000 {
        match c.recv_timeout(WAIT) {
            Ok(Some(ServerMsg::Deposited { user: u, .. })) if u == user => return,
            Ok(Some(_)) => {}
            other => panic!("no Deposited for user {user}: {other:?}"),
        }
    }
    panic!("no Deposited for user {user} in 1000 messages");
}

/// Logs `c` in as `who` (password `WHO-demo`) with the longest heartbeat interval (60 s). The
/// server ends a session silent for three intervals; with the default (1 s) a loaded CI box
/// stalling a test for 3 s would cut off a client that the test uses again later.
pub fn login_patient(
    c: &mut ringbook_client::Client,
    who: &str,
    session: u32,
) -> ringbook_client::LoginInfo {
    use ringbook_client::protocol::client::Login;
    use ringbook_client::protocol::name32;
    c.login_with(Login {
        login: name32(who),
        password: name32(&format!("{who}-demo")),
        session_id: session,
        last_seen_seq: 0,
        heartbeat_ms: 60_000,
        cancel_on_disconnect: false,
    })
    .unwrap_or_else(|e| panic!("{who} session {session}: {e}"))
}
