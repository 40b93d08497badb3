//! Crash tests with real processes: a writer process is killed with `SIGKILL` — at a chosen
//! point inside an append, and at wherever it happens to be — and the journal is recovered:
//! every record the writer completed is kept, nothing else is. A reader process follows a
//! writer process with the tailer.
//!
//! The child processes are this test binary run again with `--ignored --exact child_writer`
//! and the `RINGBOOK_JOURNAL_CHILD` environment variable; they talk to the parent over stdout,
//! one line per event, so nothing depends on wall-clock timing.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::*;
use ringbook_journal::{Durability, TailState, Tailer, Writer};

const CHILD_ENV: &str = "RINGBOOK_JOURNAL_CHILD";

/// Held by each test for its whole run: the tests take turns. A child forked by one test holds
/// copies of the parent's open files until it execs, among them the lock file of a writer
/// another test has open at that moment; that test's next writer (its own child, or its
/// recovery in the parent) would then be refused as "locked by another writer".
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding it poisons it; the others still run.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The child's side: an entry point, not a check. Ignored, so a normal run skips it; run by
/// hand (`--ignored`) without the variable it has nothing to do and returns.
///
/// `RINGBOOK_JOURNAL_CHILD=<mode>:<dir>:<count>` where mode is
/// - `hang`: append `count` records, print `ok <seq>` after each, then start one more record,
///   write half its payload, print `mid`, and wait for stdin forever (until killed);
/// - `run`: append `count` records, printing `ok <seq>` after every 64th, then print `done` and
///   exit.
#[test]
#[ignore = "child process of the crash tests; they run it"]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!("child_writer: run by the crash tests, with {CHILD_ENV} set; nothing to do");
        return;
    };
    let mut parts = spec.splitn(3, ':');
    let mode = parts.next().unwrap().to_string();
    let count: u64 = parts.next().unwrap().parse().unwrap();
    let dir = parts.next().unwrap().to_string();
    let mut writer = Writer::open(&dir, config(true, Durability::None)).unwrap();
    println!("opened {}", writer.next_sequence());
    for i in 0..count {
        let seq = writer.next_sequence();
        let (t, ts, payload) = record(seq);
        writer.append(seq, t, ts, &payload).unwrap();
        // In `run` mode, report every 64th record only, so the child is not blocked on its
        // stdout pipe when the kill lands, but in the middle of appending.
        if mode == "hang" || seq.is_multiple_of(64) || i + 1 == count {
            println!("ok {seq}");
        }
    }
    if mode == "hang" {
        let seq = writer.next_sequence();
        let (t, ts, payload) = record(seq);
        writer
            .append_with(seq, t, ts, payload.len(), |buf| {
                let half = buf.len() / 2;
                buf[..half].copy_from_slice(&payload[..half]);
                println!("mid");
                // Blocks until the parent kills us (it never writes to our stdin).
                let _ = std::io::stdin().read(&mut [0u8; 1]);
                panic!("the parent should have killed this process");
            })
            .unwrap();
    }
    println!("done");
}

fn spawn_child(mode: &str, count: u64, dir: &Path) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{mode}:{count}:{}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

/// Reads the child's lines until `stop` says so; returns the last `ok` sequence seen.
fn read_until(out: &mut BufReader<ChildStdout>, mut stop: impl FnMut(&str, u64) -> bool) -> u64 {
    let mut last_ok = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(
            n > 0,
            "child exited before the expected point (last ok {last_ok})"
        );
        let l = line.trim_end();
        if let Some(seq) = l.strip_prefix("ok ") {
            last_ok = seq.parse().unwrap();
        }
        if stop(l, last_ok) {
            return last_ok;
        }
    }
}

#[test]
fn killed_inside_an_append_keeps_every_complete_record_and_nothing_else() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut expected_next = 1;
    for round in 0..3u64 {
        let count = 500 + round * 123;
        let (mut child, mut out) = spawn_child("hang", count, dir.path());
        let last_ok = read_until(&mut out, |l, _| l == "mid");
        assert_eq!(last_ok, expected_next + count - 1);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // The half-written record is visible as torn bytes to a reader at rest...
        let (records, tail) = read_all(dir.path()).unwrap();
        assert_eq!(records.len() as u64, last_ok);
        assert!(
            matches!(tail, TailState::Torn { damage: None, .. }),
            "{tail:?}"
        );
        // ...and recovery cuts it away.
        let writer = Writer::open(dir.path(), config(true, Durability::None)).unwrap();
        let report = writer.recovery().clone();
        assert_eq!(report.next_sequence, last_ok + 1);
        let t = report
            .truncated
            .expect("the half-written record is reported");
        assert_eq!(t.damage, None);
        drop(writer);
        let (records, tail) = read_all(dir.path()).unwrap();
        assert_eq!(records.len() as u64, last_ok);
        assert_generated(&records, 1);
        assert_eq!(tail, TailState::Clean);
        expected_next = last_ok + 1;
    }
}

#[test]
fn killed_anywhere_keeps_every_acknowledged_record_and_nothing_else() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut total_kept = 0;
    for round in 0..4u64 {
        // The child appends without pause; it is killed once it has acknowledged `target`
        // records in this round, at whatever point it has reached by then.
        let target = total_kept + 2000 + round * 777;
        let (mut child, mut out) = spawn_child("run", 1_000_000, dir.path());
        let acknowledged = read_until(&mut out, |_, last_ok| last_ok >= target);
        child.kill().unwrap();
        child.wait().unwrap();
        drop(out);

        let writer = Writer::open(dir.path(), config(true, Durability::None)).unwrap();
        let report = writer.recovery().clone();
        drop(writer);
        let (records, tail) = read_all(dir.path()).unwrap();
        assert_eq!(tail, TailState::Clean);
        // Everything acknowledged is there; anything more was completed before the kill; all of
        // it is exactly what was written, contiguous from 1.
        assert!(
            records.len() as u64 >= acknowledged,
            "lost acknowledged records: kept {}, acknowledged {acknowledged} ({report})",
            records.len()
        );
        assert_eq!(report.next_sequence, records.len() as u64 + 1);
        assert_generated(&records, 1);
        total_kept = records.len() as u64;
    }
    let inspection = ringbook_journal::inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(inspection.is_sound(), "{:?}", inspection.problems);
    assert!(inspection.segments.len() > 10);
}

#[test]
fn a_tailer_follows_a_writer_process() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    const COUNT: u64 = 5000;
    // Open the tailer before the writer exists: it waits for the first segment.
    let mut tailer = Tailer::open(dir.path(), 1).unwrap();
    assert!(tailer.poll().unwrap().is_none());
    let (mut child, mut out) = spawn_child("run", COUNT, dir.path());
    let mut seen = 0u64;
    let mut child_exited = false;
    // Bounded by the writer: it writes COUNT records and exits; after it has exited, one poll
    // that finds nothing ends the loop.
    loop {
        match tailer.poll().unwrap() {
            Some(r) => {
                seen += 1;
                assert_eq!(r.sequence, seen);
                let (t, ts, payload) = record(seen);
                assert_eq!(
                    (r.record_type, r.timestamp_ns, r.payload),
                    (t, ts, &payload[..])
                );
            }
            None if child_exited => break,
            None => {
                child_exited = child.try_wait().unwrap().is_some();
                std::thread::yield_now();
            }
        }
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("done"), "child failed: {rest}");
    assert_eq!(seen, COUNT);
}
