//! A FIFO named like a segment. In a test binary of its own: it spawns `mkfifo`, and a child
//! forked while another test's writer has its lock file open holds that lock until it execs, so
//! beside the recovery tests a writer reopening its directory was sometimes refused as "locked
//! by another writer".

mod common;

use common::*;
use ringbook_journal::{inspect, Durability, JournalError, Writer};

/// A FIFO given a segment's name is refused as not a regular file, by the writer, `verify` and
/// the reader, instead of blocking each on `open` until a writer came (a red-team finding).
#[test]
fn a_fifo_named_like_a_segment_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 5, config(false, Durability::None));
    let fifo = ringbook_journal::segment_path(dir.path(), 1);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let shown = |e: JournalError| e.to_string();
    let e = shown(Writer::open(dir.path(), config(false, Durability::None)).unwrap_err());
    assert!(e.contains("not a regular file"), "{e}");
    let report = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(!report.is_sound());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.path == fifo && p.message.contains("not a regular file")),
        "{:?}",
        report.problems
    );
    let e = match ringbook_journal::Reader::open(dir.path()) {
        Err(e) => shown(e),
        Ok(_) => panic!("a reader opened past a FIFO segment"),
    };
    assert!(e.contains("not a regular file"), "{e}");
}
