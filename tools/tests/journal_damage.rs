//! The journal never loses acknowledged data silently — through the real binary.
//!
//! `cargo test -p ringbook-tools --test journal_damage`
//!
//! A server fills a journal of small segments and stops. Then, with the server stopped:
//!
//! - the last segment is cut short mid-way: `serve` exits non-zero naming the file and what is
//!   missing, changing no file; `journal verify` fails with the same description; `journal
//!   truncate --to SEQ` accepts the loss (printing what it removed), after which `verify`
//!   passes and `serve` starts at SEQ + 1;
//! - the last segment with data is deleted: the same, naming the missing file;
//! - a torn final record (what a crash leaves) is still cut, and `serve` logs the cut (file,
//!   offset, bytes) and the snapshot it skipped as invalid;
//! - a busy port: `serve` exits non-zero and creates no journal directory.
//!
//! Every wait is bounded; nothing passes or fails on wall-clock speed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Output};

use ringbook_client::protocol::ServerMsg;
use ringbook_client::Client;
use ringbook_engine::prelude::*;

mod support;
use support::{Server, BIN, WAIT};

/// 128 KiB segments: a few thousand deposits fill several.
const SEGMENT_BYTES: &str = "131072";

/// `ringbook serve` on journal `journal`, listening on `listen`, small segments, no web edge
/// (parallel tests must never contend for port 8080); not waited for.
fn spawn(journal: &Path, listen: &str) -> Server {
    let journal = journal.to_str().expect("a UTF-8 path");
    Server::spawn(&[
        "serve",
        "--journal",
        journal,
        "--listen",
        listen,
        "--no-http",
        "--journal-segment-bytes",
        SEGMENT_BYTES,
    ])
}

/// Starts a server that must come up; returns it and its address.
fn start(journal: &Path) -> (Server, SocketAddr) {
    let s = spawn(journal, "127.0.0.1:0").listening();
    let addr = s.addr;
    (s, addr)
}

/// `count` deposits through a server on `journal`, each acknowledged, then a clean stop.
fn fill(journal: &Path, count: u64) {
    let (srv, addr) = start(journal);
    let mut ops = Client::connect(addr).unwrap();
    ops.login("ops1", "ops1-demo", 1, false).unwrap();
    let mut sent = 0u64;
    while sent < count {
        let chunk = (count - sent).min(200);
        for _ in 0..chunk {
            ops.send(
                &Command::Deposit {
                    user: UserId(1),
                    currency: CurrencyId(0),
                    amount: 1,
                }
                .into(),
            )
            .unwrap();
        }
        let mut acked = 0;
        while acked < chunk {
            match ops.recv_timeout(WAIT) {
                Ok(Some(ServerMsg::Deposited { .. })) => acked += 1,
                Ok(Some(_)) => {}
                other => panic!("waiting for deposits: {other:?}"),
            }
        }
        sent += chunk;
    }
    drop(ops);
    let (status, log) = srv.terminate();
    assert!(status.success(), "serve exited {status:?}: {log:#?}");
}

/// `ringbook journal ARGS…`.
fn journal_cmd(args: &[&str], dir: &Path) -> Output {
    Proc::new(BIN)
        .arg("journal")
        .arg(args[0])
        .arg(dir)
        .args(&args[1..])
        .output()
        .expect("run ringbook journal")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every file in `dir` with its bytes.
fn dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Started segments `(index, path)` and every record's `(sequence, segment, offset, len)`.
struct Layout {
    started: Vec<(u64, PathBuf)>,
    records: Vec<(u64, u64, u64, u64)>,
}

fn layout(dir: &Path) -> Layout {
    let mut records = Vec::new();
    let inspection = ringbook_journal::inspect(
        dir,
        |r, pos| {
            records.push((
                r.sequence,
                pos.segment_index,
                pos.offset,
                u64::from(pos.frame_len_bytes),
            ))
        },
        |_| {},
    )
    .unwrap();
    assert!(inspection.is_sound(), "{:?}", inspection.problems);
    let started = inspection
        .segments
        .iter()
        .filter(|s| s.first_sequence.is_some())
        .map(|s| (s.index, s.path.clone()))
        .collect();
    Layout { started, records }
}

/// A start on a damaged journal: exits non-zero with a line naming `file` and `what`, and
/// changes no file. Returns that line.
fn refused_start(journal: &Path, file: &Path, what: &str) -> String {
    let before = dir_bytes(journal);
    let (status, log) = spawn(journal, "127.0.0.1:0").exit_within(WAIT);
    assert!(
        !status.success(),
        "serve started on a damaged journal: {log:#?}"
    );
    let line = log
        .iter()
        .find(|l| l.contains(&file.display().to_string()) && l.contains(what))
        .unwrap_or_else(|| panic!("no line naming {} and {what:?}: {log:#?}", file.display()))
        .clone();
    assert!(!log.iter().any(|l| l.contains("listening on")), "{log:#?}");
    // Nothing is said about seeding market data from a state that was never recovered.
    assert!(!log.iter().any(|l| l.contains("seeding")), "{log:#?}");
    assert_eq!(dir_bytes(journal), before, "a refused start changed files");
    line
}

/// `journal verify` fails, naming `file` and `what`.
fn verify_fails(journal: &Path, file: &Path, what: &str) {
    let out = journal_cmd(&["verify"], journal);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("error: ")
            && l.contains(&file.display().to_string())
            && l.contains(what)),
        "{stdout}"
    );
}

/// `journal truncate --to SEQ` succeeds and says so; then verify passes and serve starts at
/// `to + 1`, and the journal is written on from there.
fn truncate_then_start(journal: &Path, to: u64, removed: &[&Path]) {
    let out = journal_cmd(&["truncate", "--to", &to.to_string()], journal);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "truncate: {stdout}{}",
        text(&out.stderr)
    );
    for path in removed {
        assert!(
            stdout.contains(&format!("removed segment {}", path.display())),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(&format!("the journal ends at sequence {to}")),
        "{stdout}"
    );
    assert!(stdout.contains("sound:"), "{stdout}");
    let out = journal_cmd(&["verify"], journal);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let (srv, _) = start(journal);
    let rec = srv
        .log
        .iter()
        .find(|l| l.contains("recovered"))
        .cloned()
        .unwrap();
    assert!(rec.contains(&format!("next sequence {}", to + 1)), "{rec}");
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:#?}");
    fill(journal, 300);
    let l = layout(journal);
    assert_eq!(l.records.last().unwrap().0, to + 300);
}

#[test]
fn a_last_segment_cut_short_refuses_start_and_verify_until_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    fill(&journal, 4_000);
    let l = layout(&journal);
    assert!(l.started.len() >= 2, "several segments: {:?}", l.started);
    let (last, path) = l.started.last().unwrap().clone();
    let in_last: Vec<_> = l.records.iter().filter(|r| r.1 == last).collect();
    assert!(in_last.len() >= 10);
    // Cut mid-way through the last segment's records, inside a record.
    let victim = in_last[in_last.len() / 2];
    let cut = victim.2 + victim.3 / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let kept = victim.0 - 1;
    let line = refused_start(&journal, &path, "bytes are missing");
    assert!(line.contains(&format!("through sequence {kept}")), "{line}");
    verify_fails(&journal, &path, "bytes are missing");
    truncate_then_start(&journal, kept, &[]);
}

#[test]
fn a_deleted_last_segment_refuses_start_and_verify_until_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    fill(&journal, 4_000);
    let l = layout(&journal);
    assert!(l.started.len() >= 2, "several segments: {:?}", l.started);
    let (last, path) = l.started.last().unwrap().clone();
    let first_lost = l.records.iter().find(|r| r.1 == last).unwrap().0;
    // The last segment with data goes, and the pre-allocated one after it, if any.
    for (index, p) in ringbook_journal::list(&journal).unwrap().segments {
        if index >= last {
            std::fs::remove_file(p).unwrap();
        }
    }
    let line = refused_start(&journal, &path, "is missing");
    assert!(
        line.contains(&format!("every record from {first_lost} on is lost")),
        "{line}"
    );
    verify_fails(&journal, &path, "is missing");
    truncate_then_start(&journal, first_lost - 1, &[]);
}

#[test]
fn a_torn_final_record_is_cut_and_every_cut_and_skipped_snapshot_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    fill(&journal, 500);
    let l = layout(&journal);
    let &(last_seq, seg, offset, len) = l.records.last().unwrap();
    let path = ringbook_journal::segment_path(&journal, seg);
    // A crash mid-append: the last record's body there, its length word not.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset as usize..offset as usize + 4].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    // And a damaged snapshot (recovery skips it: no valid snapshot, replay from the start).
    let snap = ringbook_journal::snapshot_path(&journal, 100);
    std::fs::write(&snap, b"not a snapshot").unwrap();
    let (srv, _) = start(&journal);
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:#?}");
    let cut = log
        .iter()
        .find(|l| l.contains("cut a torn final record"))
        .unwrap_or_else(|| panic!("the cut is logged: {log:#?}"));
    // What is cut: from the record's offset through its last non-zero byte.
    let frame = &bytes[offset as usize..(offset + len) as usize];
    let discarded = frame.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(
        cut.contains(&format!("{} offset {offset}", path.display()))
            && cut.contains(&format!("{discarded} byte(s) discarded")),
        "{cut}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("skipped invalid snapshot")
                && l.contains(&snap.display().to_string())),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("next sequence {last_seq}"))),
        "{log:#?}"
    );
}

#[test]
fn a_busy_port_fails_the_start_and_creates_no_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (status, log) = spawn(&journal, &addr).exit_within(WAIT);
    assert!(!status.success(), "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("cannot listen on")),
        "{log:#?}"
    );
    assert!(
        !journal.exists(),
        "a failed start created {}",
        journal.display()
    );
    drop(busy);
}

#[test]
fn a_journal_whose_every_segment_is_deleted_refuses_start_until_emptied_explicitly() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    fill(&journal, 200);
    for (_, p) in ringbook_journal::list(&journal).unwrap().segments {
        std::fs::remove_file(p).unwrap();
    }
    let segment0 = ringbook_journal::segment_path(&journal, 0);
    refused_start(&journal, &segment0, "no started segment is left");
    verify_fails(&journal, &segment0, "no started segment is left");
    // Only an empty journal can be accepted, and only by saying so.
    let out = journal_cmd(&["truncate", "--to", "5"], &journal);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("only --to 0"));
    let out = journal_cmd(&["truncate", "--to", "0"], &journal);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("the journal is empty"));
    let (srv, _) = start(&journal);
    assert!(
        srv.log
            .iter()
            .any(|l| l.contains("recovered") && l.contains("next sequence 1")),
        "{:#?}",
        srv.log
    );
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:#?}");
}

/// A snapshot that covers more than the journal holds (copied in from a longer journal, or the
/// journal restored from an older backup): `journal replay` refuses it as recovery and
/// `verify` do, instead of printing the snapshot's state as the journal's (red-team: it printed
/// another journal's balances, exit 0).
#[test]
fn replay_refuses_a_snapshot_beyond_the_journals_end() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = |journal: &Path, deposits: u32, extra: &[&str]| {
        let script = dir.path().join("script");
        let lines: String = (1..=deposits)
            .map(|i| format!("deposit,1,KRW,{i}\n"))
            .collect();
        std::fs::write(&script, lines).unwrap();
        let out = Proc::new(BIN)
            .args(["scenario", "--pipeline", "--journal"])
            .arg(journal)
            .args(extra)
            .arg(&script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    let longer = dir.path().join("longer");
    scenario(&longer, 12, &["--snapshot-every", "5"]);
    let snapshot = ringbook_journal::snapshot_path(&longer, 5);
    assert!(snapshot.exists());
    let journal = dir.path().join("journal");
    scenario(&journal, 3, &[]);
    let copied = ringbook_journal::snapshot_path(&journal, 5);
    std::fs::copy(&snapshot, &copied).unwrap();
    let out = journal_cmd(&["replay"], &journal);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&copied.display().to_string())
            && stderr.contains("snapshot covers up to sequence 5")
            && stderr.contains("records 4..=5 are missing"),
        "{stderr}"
    );
    assert!(
        !text(&out.stdout).contains("state_hash"),
        "a state was printed"
    );
    // Up to a sequence the journal holds, replay still answers (from sequence 1).
    let out = journal_cmd(&["replay", "--to", "3"], &journal);
    assert!(out.status.success(), "{}", text(&out.stderr));
    verify_fails(&journal, &copied, "records 4..=5 are missing");
}
