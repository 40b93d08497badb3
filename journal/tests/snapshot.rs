//! Snapshots (atomic, checksummed, newest valid wins, damaged ones fall back), recovery from a
//! snapshot plus the journal's tail, pruning, and verification of the whole directory.

mod common;

use std::fs;
use std::io::Write;

use common::*;
use ringbook_journal::snapshot::SnapshotDamage;
use ringbook_journal::{
    inspect, latest_valid, load_latest, prune, read_snapshot, write_snapshot, Durability,
    JournalError, Reader, Severity, SnapshotWriter, Writer,
};

/// A toy deterministic state machine over the records: FNV-1a over every field.
fn apply(state: u64, sequence: u64, record_type: u16, timestamp_ns: u64, payload: &[u8]) -> u64 {
    let mut h = state;
    let mut mix = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    };
    mix(&sequence.to_le_bytes());
    mix(&record_type.to_le_bytes());
    mix(&timestamp_ns.to_le_bytes());
    mix(payload);
    h
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn replay(dir: &std::path::Path, from: u64, mut state: u64) -> (u64, u64) {
    let mut reader = Reader::open_from(dir, from).unwrap();
    let mut last = from.saturating_sub(1);
    while let Some(r) = reader.next().unwrap() {
        state = apply(state, r.sequence, r.record_type, r.timestamp_ns, r.payload);
        last = r.sequence;
    }
    (state, last)
}

#[test]
fn snapshot_plus_tail_rebuilds_the_same_state_as_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), config(true, Durability::None)).unwrap();
    let mut live = FNV_OFFSET;
    for _ in 0..5000 {
        let seq = writer.next_sequence();
        let (t, ts, payload) = record(seq);
        writer.append(seq, t, ts, &payload).unwrap();
        live = apply(live, seq, t, ts, &payload);
        if seq.is_multiple_of(1000) {
            write_snapshot(dir.path(), seq, ts, 7, &live.to_le_bytes()).unwrap();
        }
    }
    drop(writer);
    let latest = load_latest(dir.path()).unwrap();
    assert!(latest.damaged.is_empty());
    let snap = latest.snapshot.unwrap();
    assert_eq!((snap.meta.sequence, snap.meta.state_format), (5000, 7));
    // Take the second newest instead, to replay a real tail.
    let older = read_snapshot(&ringbook_journal::snapshot_path(dir.path(), 3000)).unwrap();
    let state = u64::from_le_bytes(older.state.try_into().unwrap());
    let (rebuilt, last) = replay(dir.path(), 3001, state);
    assert_eq!((rebuilt, last), (live, 5000));
    assert_eq!(replay(dir.path(), 1, FNV_OFFSET).0, live);
}

#[test]
fn a_damaged_newest_snapshot_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    for seq in [100u64, 200, 300] {
        write_snapshot(dir.path(), seq, seq * 10, 1, &vec![seq as u8; 10_000]).unwrap();
    }
    let newest = ringbook_journal::snapshot_path(dir.path(), 300);
    let mut b = fs::read(&newest).unwrap();
    b[5000] ^= 1;
    fs::write(&newest, &b).unwrap();
    let latest = load_latest(dir.path()).unwrap();
    assert_eq!(latest.snapshot.as_ref().unwrap().meta.sequence, 200);
    assert_eq!(latest.snapshot.unwrap().state, vec![200u8; 10_000]);
    assert!(matches!(
        latest.damaged[..],
        [(ref p, SnapshotDamage::BadStateChecksum { .. })] if *p == newest
    ));
    // Truncate the next one too: down to 100.
    let middle = ringbook_journal::snapshot_path(dir.path(), 200);
    let b = fs::read(&middle).unwrap();
    fs::write(&middle, &b[..b.len() - 1]).unwrap();
    let latest = latest_valid(dir.path()).unwrap();
    assert_eq!(latest.snapshot.unwrap().sequence, 100);
    assert_eq!(latest.damaged.len(), 2);
    // Every header byte is covered.
    let oldest = ringbook_journal::snapshot_path(dir.path(), 100);
    let pristine = fs::read(&oldest).unwrap();
    for i in 0..64 {
        let mut b = pristine.clone();
        b[i] ^= 0x20;
        fs::write(&oldest, &b).unwrap();
        assert!(
            read_snapshot(&oldest).is_err(),
            "flip at header byte {i} accepted"
        );
    }
    fs::write(&oldest, &pristine).unwrap();
    // A snapshot renamed to another sequence is rejected.
    let renamed = ringbook_journal::snapshot_path(dir.path(), 150);
    fs::copy(&oldest, &renamed).unwrap();
    assert!(matches!(
        read_snapshot(&renamed),
        Err(SnapshotDamage::NameMismatch {
            name_sequence: 150,
            header_sequence: 100
        })
    ));
}

#[test]
fn snapshots_are_written_atomically_and_once() {
    let dir = tempfile::tempdir().unwrap();
    // Streaming, and an unfinished writer leaves nothing behind.
    let mut w = SnapshotWriter::create(dir.path(), 42, 1, 2).unwrap();
    w.write_all(b"partial").unwrap();
    drop(w);
    assert!(ringbook_journal::list(dir.path()).unwrap().other.is_empty());
    assert!(load_latest(dir.path()).unwrap().snapshot.is_none());
    let mut w = SnapshotWriter::create(dir.path(), 42, 1, 2).unwrap();
    for chunk in 0..100u8 {
        w.write_all(&[chunk; 1000]).unwrap();
    }
    let meta = w.finish().unwrap();
    assert_eq!(meta.state_len_bytes, 100_000);
    let snap = load_latest(dir.path()).unwrap().snapshot.unwrap();
    assert_eq!(snap.meta, meta);
    assert_eq!(snap.state[99_999], 99);
    assert!(matches!(
        write_snapshot(dir.path(), 42, 1, 2, b"again"),
        Err(JournalError::Snapshot { .. })
    ));
    // A stale temporary file (a crash before the rename) is ignored.
    fs::write(
        dir.path().join(".snapshot-00000000000000000050.rbs.tmp"),
        b"junk",
    )
    .unwrap();
    assert_eq!(
        load_latest(dir.path())
            .unwrap()
            .snapshot
            .unwrap()
            .meta
            .sequence,
        42
    );
}

#[test]
fn prune_removes_only_segments_the_snapshot_covers() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 5000, config(false, Durability::None));
    let segments_before = ringbook_journal::list(dir.path()).unwrap().segments;
    assert!(segments_before.len() > 10);
    // No snapshot: nothing goes.
    let report = prune(dir.path(), u64::MAX, false).unwrap();
    assert!(report.removed.is_empty() && report.snapshot.is_none());

    write_snapshot(dir.path(), 2500, 0, 1, b"state at 2500").unwrap();
    // `before` bounds it further: a dry run first.
    let dry = prune(dir.path(), 1000, true).unwrap();
    let (records, _) = read_all(dir.path()).unwrap();
    let first_seq_of = |index: u64| {
        records
            .iter()
            .find(|r| r.position.segment_index == index)
            .map(|r| r.sequence)
            .unwrap()
    };
    for path in &dry.removed {
        let index = segments_before.iter().find(|s| &s.1 == path).unwrap().0;
        assert!(
            first_seq_of(index + 1) <= 1000,
            "{path:?} holds records from 1000 on"
        );
    }
    assert_eq!(
        ringbook_journal::list(dir.path()).unwrap().segments,
        segments_before
    );

    let report = prune(dir.path(), u64::MAX, false).unwrap();
    assert!(report.removed.len() > dry.removed.len());
    let first = report.first_sequence_after.unwrap();
    // Everything from 2501 on is still there, and nothing after 2500 was removed.
    assert!(first <= 2501 && first > 2501 - 500, "first kept {first}");
    let (kept, _) = read_all_from(dir.path(), 2501).unwrap();
    assert_eq!(kept.len(), 2500);
    assert_generated(&kept, 2501);
    // Reading "from the start" starts at the first record still held.
    let (all, _) = read_all(dir.path()).unwrap();
    assert_eq!(all.first().map(|r| r.sequence), Some(first));
    assert_generated(&all, first);
    match Reader::open_from(dir.path(), 1) {
        Err(JournalError::Pruned {
            requested: 1,
            first_available,
        }) => assert_eq!(first_available, first),
        other => panic!("expected Pruned, got {other:?}"),
    }
    // A pruned journal still opens, appends, and verifies.
    let mut writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    assert_eq!(writer.next_sequence(), 5001);
    append_records(&mut writer, 10);
    // While a writer is open, the standalone prune is locked out; the writer's own works.
    assert!(matches!(
        prune(dir.path(), u64::MAX, false),
        Err(JournalError::Locked { .. })
    ));
    write_snapshot(dir.path(), 5010, 0, 1, b"everything").unwrap();
    let report = writer.prune(u64::MAX, false).unwrap();
    drop(writer);
    let left = ringbook_journal::list(dir.path()).unwrap().segments;
    assert_eq!(
        left.len(),
        1,
        "the last segment is never removed ({report:?})"
    );
    let inspection = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(inspection.is_sound(), "{:?}", inspection.problems);
}

#[test]
fn verify_judges_snapshots_against_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 3000, config(false, Durability::None));
    write_snapshot(dir.path(), 2000, 0, 1, b"s").unwrap();
    prune(dir.path(), u64::MAX, false).unwrap();
    let i = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(i.is_sound(), "{:?}", i.problems);
    assert_eq!(i.sequence_range.unwrap().1, 3000);

    // The only snapshot damaged, with the journal pruned: not sound.
    let snap = ringbook_journal::snapshot_path(dir.path(), 2000);
    let mut b = fs::read(&snap).unwrap();
    b[64] ^= 1;
    fs::write(&snap, &b).unwrap();
    let i = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(!i.is_sound());
    assert!(i.problems.iter().all(|p| p.severity == Severity::Error));
    assert_eq!(i.problems.len(), 2, "{:?}", i.problems);

    // A snapshot beyond the journal's end: not sound.
    fs::remove_file(&snap).unwrap();
    write_snapshot(dir.path(), 2000, 0, 1, b"s").unwrap();
    write_snapshot(dir.path(), 3001, 0, 1, b"too far").unwrap();
    let i = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(!i.is_sound());
    assert!(i
        .problems
        .iter()
        .any(|p| p.message.contains("ends before sequence 3001")));
}

#[test]
fn verify_reports_a_torn_tail_as_a_warning_and_counts_everything() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 1200, config(false, Durability::None));
    let (records, _) = read_all(dir.path()).unwrap();
    let last = records.last().unwrap().position;
    let path = ringbook_journal::segment_path(dir.path(), last.segment_index);
    let mut b = fs::read(&path).unwrap();
    b[last.offset as usize..last.offset as usize + 4].fill(0);
    fs::write(&path, &b).unwrap();
    fs::write(dir.path().join("stray.txt"), b"?").unwrap();
    let mut seen = 0u64;
    let i = inspect(dir.path(), |_, _| seen += 1, |_| {}).unwrap();
    assert!(i.is_sound(), "{:?}", i.problems);
    assert_eq!((i.records, seen), (1199, 1199));
    assert_eq!(i.sequence_range, Some((1, 1199)));
    assert_eq!(i.problems.len(), 2, "{:?}", i.problems);
    assert!(i
        .problems
        .iter()
        .any(|p| p.message.contains("torn tail") && p.offset == Some(last.offset)));
    assert_eq!(i.used_bytes() as usize, {
        // Header + frames per segment, plus an end frame for each sealed one.
        let sealed = i.segments.len() - 1;
        let frames: usize = records[..1199]
            .iter()
            .map(|r| r.position.frame_len_bytes as usize)
            .sum();
        i.segments.len() * 64 + frames + sealed * 32
    });
}
