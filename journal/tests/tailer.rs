//! The tailer follows a writer thread record by record, across segment rolls, from the start
//! or from any sequence.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use ringbook_journal::{Durability, JournalError, Tailer, Writer};

/// Polls until `count` records have been seen or the writer is done and nothing more comes.
fn follow(tailer: &mut Tailer, first: u64, count: u64, writer_done: &AtomicBool) -> u64 {
    let mut seen = 0u64;
    loop {
        // Read the flag before polling: if the writer was done before a poll that found
        // nothing, nothing more will come.
        let done = writer_done.load(Ordering::Acquire);
        match tailer.poll().unwrap() {
            Some(r) => {
                let seq = first + seen;
                assert_eq!(r.sequence, seq);
                let (t, ts, payload) = record(seq);
                assert_eq!(
                    (r.record_type, r.timestamp_ns, r.payload),
                    (t, ts, &payload[..])
                );
                seen += 1;
                if seen == count {
                    return seen;
                }
            }
            None if done => return seen,
            None => std::thread::yield_now(),
        }
    }
}

#[test]
fn tailers_follow_a_writer_thread_across_rolls() {
    for pretouch in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        const COUNT: u64 = 20_000;
        // Created before the writer opens: waits for the first segment.
        let mut from_start = Tailer::open(dir.path(), 1).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let writer_done = Arc::clone(&done);
        let path = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            let mut writer = Writer::open(&path, config(pretouch, Durability::None)).unwrap();
            append_records(&mut writer, COUNT);
            let rolls = writer.stats().rolls;
            drop(writer);
            writer_done.store(true, Ordering::Release);
            rolls
        });
        let seen = follow(&mut from_start, 1, COUNT, &done);
        let rolls = writer.join().unwrap();
        assert_eq!(seen, COUNT);
        assert!(rolls > 20);
        assert_eq!(from_start.next_sequence(), Some(COUNT + 1));

        // A tailer started later, from the middle, over the finished journal.
        let mut from_middle = Tailer::open(dir.path(), 12_345).unwrap();
        let seen = follow(&mut from_middle, 12_345, u64::MAX, &done);
        assert_eq!(seen, COUNT - 12_344);
    }
}

#[test]
fn a_tailer_sees_new_records_as_they_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), config(true, Durability::None)).unwrap();
    let mut tailer = Tailer::open(dir.path(), 1).unwrap();
    assert!(tailer.poll().unwrap().is_none());
    for seq in 1..=2000u64 {
        let (t, ts, payload) = record(seq);
        writer.append(seq, t, ts, &payload).unwrap();
        let r = tailer
            .poll()
            .unwrap()
            .expect("committed record is visible at once");
        assert_eq!((r.sequence, r.payload), (seq, &payload[..]));
        assert!(tailer.poll().unwrap().is_none());
    }
}

#[test]
fn a_tailer_reports_corruption_of_a_committed_frame() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 100, config(false, Durability::None));
    let (records, _) = read_all(dir.path()).unwrap();
    let at = records[50].position.offset as usize;
    let path = ringbook_journal::segment_path(dir.path(), 0);
    let mut b = std::fs::read(&path).unwrap();
    b[at + 12] ^= 4;
    std::fs::write(&path, &b).unwrap();
    let mut tailer = Tailer::open(dir.path(), 1).unwrap();
    let mut ok = 0;
    let err = loop {
        match tailer.poll() {
            Ok(Some(_)) => ok += 1,
            Ok(None) => panic!("skipped the damage"),
            Err(e) => break e,
        }
    };
    assert_eq!(ok, 50);
    assert!(matches!(err, JournalError::Corrupt(c) if c.offset as usize == at && c.path == path));
}
