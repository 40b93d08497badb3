//! Configurations an operator can write but no machine can serve are refused at start, with one
//! line naming the setting, before the journal directory is touched — not aborted on in an
//! allocation (an operator red-team pass: `capacity.orders_max = 2^28`, a `[web] events_max` or
//! `[gateway] sessions_max` of 2^40, each killed `ringbook serve` with exit 134 or 101 and a
//! backtrace).
//!
//! `cargo test -p ringbook-tools --test config_limits`

use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::BIN;

/// The embedded default config with `extra` appended (TOML sections).
fn config_with(dir: &Path, edit: impl FnOnce(String) -> String) -> std::path::PathBuf {
    let text = edit(ringbook_engine::config::DEFAULT_CONFIG_TOML.to_string());
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Limits `cmd`'s address space to `bytes` (`ulimit -v`), so a refusal does not depend on how
/// much memory this machine has.
fn limit_address_space(cmd: &mut Command, bytes: u64) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec and makes one system call on a struct on its
    // own stack (async-signal-safe: no allocation, no lock).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// One line on stderr, containing every one of `needles`; exit status 2.
fn refused(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with {needles:?} in:\n{stderr}"));
    line.to_string()
}

fn serve(config: &Path, journal: &Path, http: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--journal")
        .arg(journal)
        .args(["--listen", "127.0.0.1:0"]);
    match http {
        "" => cmd.arg("--no-http"),
        addr => cmd.args(["--http", addr]),
    };
    cmd
}

#[test]
fn capacities_this_machine_cannot_hold_are_refused_before_the_journal_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), |c| {
        c.replace("orders_max = 262144", "orders_max = 268435456")
    });
    let journal = dir.path().join("journal");
    // 4 GiB of address space: the default configuration's tables (a few hundred MiB) fit, the
    // ~70 GiB of 2^28 order slots (engine and market data) do not.
    let out = limit_address_space(&mut serve(&config, &journal, "127.0.0.1:0"), 4 << 30)
        .output()
        .unwrap();
    let line = refused(
        &out,
        &[
            "config does not fit in memory",
            "capacity.orders_max = 268435456",
        ],
    );
    assert!(line.contains("GiB"), "{line}");
    // Named by the tightest limit: the address space here, unless this host has less still.
    assert!(
        ["ulimit -v", "MemAvailable", "memory.max"]
            .iter()
            .any(|l| line.contains(l)),
        "{line}"
    );
    assert!(!journal.exists(), "the journal directory was created");
    // (Under the same limit the default configuration serves: the next test.) Every tool that builds an engine refuses it the same way (here `scenario`).
    let script = dir.path().join("script");
    std::fs::write(&script, "").unwrap();
    let mut scenario = Command::new(BIN);
    scenario
        .arg("scenario")
        .arg("--config")
        .arg(&config)
        .arg(&script);
    refused(
        &limit_address_space(&mut scenario, 4 << 30)
            .output()
            .unwrap(),
        &["does not fit in memory", "capacity.orders_max = 268435456"],
    );
}

#[test]
fn a_default_server_reports_what_its_tables_take() {
    // The figure the check uses is logged at start; with 4 GiB of address space the default
    // configuration starts and takes orders as ever (the check does not refuse what fits).
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), |c| c);
    let journal = dir.path().join("journal");
    let mut cmd = serve(&config, &journal, "");
    limit_address_space(&mut cmd, 4 << 30);
    let mut srv = support::Server::spawn_command(cmd);
    let line = srv.wait_line("tables and buffers take");
    assert!(
        line.contains("1 engine(s)") && line.contains("1 market-data builder(s)"),
        "{line}"
    );
    srv.wait_line("listening on");
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:?}");
}

#[test]
fn gateway_and_web_sizes_beyond_their_maxima_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let huge = 1u64 << 40;
    let cases = [
        ("web", "events_max", "[web] events_max"),
        ("web", "requests_max", "[web] requests_max"),
        ("web", "addrs_tracked", "[web] addrs_tracked"),
        ("web", "ws_queue_max", "[web] ws_queue_max"),
        ("web", "conns_max", "[web] conns_max"),
        ("gateway", "sessions_max", "sessions_max"),
        ("gateway", "prelogin_max", "prelogin_max"),
        ("gateway", "login_addrs_tracked", "login_addrs_tracked"),
        ("gateway", "conns_max", "conns_max"),
        ("gateway", "retransmit_msgs", "retransmit_msgs"),
        ("gateway", "in_bytes", "in_bytes"),
        ("gateway", "out_bytes", "out_bytes"),
        ("gateway", "heartbeat_default_ms", "heartbeat_default_ms"),
        (
            "gateway",
            "slow_consumer_timeout_ms",
            "slow_consumer_timeout_ms",
        ),
        (
            "gateway",
            "slow_consumer_drain_bytes",
            "slow_consumer_drain_bytes",
        ),
        ("gateway", "drain_timeout_ms", "drain_timeout_ms"),
    ];
    for (section, key, named) in cases {
        let config = config_with(dir.path(), |c| {
            format!("{c}\n[{section}]\n{key} = {huge}\n")
        });
        let out = serve(&config, &journal, "127.0.0.1:0").output().unwrap();
        let line = refused(&out, &[named, &huge.to_string(), "must be"]);
        assert!(!line.contains("lowered"), "{line}");
        assert!(
            !journal.exists(),
            "{key}: the journal directory was created"
        );
    }
}

#[test]
fn a_journal_segment_size_that_cannot_hold_a_record_is_refused_before_the_directory_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), |c| c);
    let journal = dir.path().join("journal");
    let out = serve(&config, &journal, "")
        .args(["--journal-segment-bytes", "65536"])
        .output()
        .unwrap();
    refused(&out, &["--journal-segment-bytes", "65536-byte segment"]);
    assert!(!journal.exists(), "the journal directory was created");
}
