//! Round trips: what is appended is what is read, in every mode, across segment rolls and
//! reopenings; and the writer's refusals.

mod common;

use common::*;
use ringbook_journal::{
    AppendError, Durability, JournalConfig, JournalError, Reader, SyncMethod, TailState, Writer,
};

const MODES: [(bool, Durability); 5] = [
    (false, Durability::None),
    (true, Durability::None),
    (true, Durability::Batch(SyncMethod::Msync)),
    (false, Durability::Batch(SyncMethod::Fdatasync)),
    (true, Durability::Record(SyncMethod::Msync)),
];

#[test]
fn every_mode_round_trips_across_rolls() {
    for (pretouch, durability) in MODES {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path(), config(pretouch, durability)).unwrap();
        assert!(writer.recovery().created);
        for batch in 0..20 {
            append_records(&mut writer, 150);
            writer.end_batch().unwrap();
            assert_eq!(writer.next_sequence(), 1 + 150 * (batch + 1));
        }
        let stats = writer.stats();
        assert_eq!(stats.records, 3000);
        assert!(stats.rolls >= 5, "{stats:?}");
        match durability {
            Durability::None => assert_eq!(stats.syncs, 0),
            Durability::Batch(_) => assert!(stats.syncs >= 20),
            Durability::Record(_) => assert!(stats.syncs >= 3000),
        }
        drop(writer);
        let (records, tail) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 3000, "mode {pretouch} {durability:?}");
        assert_generated(&records, 1);
        assert_eq!(tail, TailState::Clean);
        // A clean shutdown leaves no unused pre-allocated segment behind.
        let listing = ringbook_journal::list(dir.path()).unwrap();
        assert_eq!(listing.segments.len() as u64, stats.rolls + 1);
    }
}

#[test]
fn reopening_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..4u64 {
        let mut writer =
            Writer::open(dir.path(), config(round % 2 == 0, Durability::None)).unwrap();
        assert_eq!(writer.next_sequence(), 1 + round * 700);
        assert_eq!(writer.recovery().truncated, None);
        append_records(&mut writer, 700);
    }
    let (records, _) = read_all(dir.path()).unwrap();
    assert_eq!(records.len(), 2800);
    assert_generated(&records, 1);
}

#[test]
fn open_from_starts_at_any_sequence() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 2000, config(false, Durability::None));
    for from in [0, 1, 2, 399, 400, 401, 1234, 1999, 2000] {
        let (records, _) = read_all_from(dir.path(), from).unwrap();
        let first = from.max(1);
        assert_eq!(records.len() as u64, 2001 - first, "from {from}");
        assert_generated(&records, first);
    }
    let (records, _) = read_all_from(dir.path(), 2001).unwrap();
    assert!(records.is_empty());
}

#[test]
fn positions_point_at_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 1500, config(false, Durability::None));
    let (records, _) = read_all(dir.path()).unwrap();
    let mut files = std::collections::HashMap::new();
    for r in &records {
        let file = files.entry(r.position.segment_index).or_insert_with(|| {
            std::fs::read(ringbook_journal::segment_path(
                dir.path(),
                r.position.segment_index,
            ))
            .unwrap()
        });
        let (stored, computed) = frame_checksums(file, r.position.offset as usize);
        assert_eq!(stored, computed);
        let at = r.position.offset as usize + 32;
        assert_eq!(&file[at..at + r.payload.len()], &r.payload[..]);
        assert_eq!(at % 8, 0, "payloads are 8-byte aligned");
    }
}

#[test]
fn append_with_writes_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), config(true, Durability::None)).unwrap();
    for seq in 1..=1000u64 {
        writer
            .append_with(seq, 9, seq, 16, |buf| {
                assert!(buf.iter().all(|&b| b == 0), "fill gets a zeroed buffer");
                buf[..8].copy_from_slice(&seq.to_le_bytes());
                buf[8..].copy_from_slice(&(!seq).to_le_bytes());
            })
            .unwrap();
    }
    drop(writer);
    let mut reader = Reader::open(dir.path()).unwrap();
    let mut seq = 0;
    while let Some(r) = reader.next().unwrap() {
        seq += 1;
        assert_eq!(r.sequence, seq);
        assert_eq!(&r.payload[..8], &seq.to_le_bytes());
        assert_eq!(&r.payload[8..], &(!seq).to_le_bytes());
    }
    assert_eq!(seq, 1000);
}

#[test]
fn refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    writer.append(1, 0, 0, b"one").unwrap();
    assert_eq!(
        writer.append(3, 0, 0, b"three"),
        Err(AppendError::SequenceNotNext {
            expected: 2,
            got: 3
        })
    );
    assert_eq!(
        writer.append(1, 0, 0, b"again"),
        Err(AppendError::SequenceNotNext {
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        writer.append(2, 0, 0, &[0u8; 4097]),
        Err(AppendError::PayloadTooLarge {
            len: 4097,
            max: 4096
        })
    );
    writer.append(2, 0, 0, &[7u8; 4096]).unwrap();
    writer.append(3, 0, 0, b"").unwrap();
    drop(writer);
    let (records, _) = read_all(dir.path()).unwrap();
    let seqs: Vec<_> = records
        .iter()
        .map(|r| (r.sequence, r.payload.len()))
        .collect();
    assert_eq!(seqs, vec![(1, 3), (2, 4096), (3, 0)]);
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    match Writer::open(dir.path(), config(false, Durability::None)) {
        Err(JournalError::Locked { .. }) => {}
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(writer);
    Writer::open(dir.path(), config(false, Durability::None)).unwrap();
}

#[test]
fn bad_configs_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let bad = JournalConfig {
        segment_len_bytes: 4096,
        payload_len_max_bytes: 8192,
        ..JournalConfig::default()
    };
    assert!(matches!(
        Writer::open(dir.path(), bad),
        Err(JournalError::Config(_))
    ));
}

#[test]
fn first_sequence_is_configurable_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        first_sequence: 1_000_000,
        ..config(false, Durability::None)
    };
    let mut writer = Writer::open(dir.path(), cfg).unwrap();
    assert_eq!(writer.next_sequence(), 1_000_000);
    writer.append(1_000_000, 1, 2, b"x").unwrap();
    drop(writer);
    // Reopening ignores the configured first sequence: the journal knows its own.
    let writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    assert_eq!(writer.next_sequence(), 1_000_001);
}

#[test]
fn largest_records_fill_segments_exactly() {
    // Payloads sized so that frames tile the segment: the end-of-segment frame must still fit.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(false, Durability::None);
    let mut writer = Writer::open(dir.path(), cfg).unwrap();
    let payload = vec![0xabu8; 4096];
    for _ in 0..100 {
        let seq = writer.next_sequence();
        writer.append(seq, 0, 0, &payload).unwrap();
    }
    assert!(writer.stats().rolls >= 6);
    drop(writer);
    let (records, tail) = read_all(dir.path()).unwrap();
    assert_eq!(records.len(), 100);
    assert!(records.iter().all(|r| r.payload == payload));
    assert_eq!(tail, TailState::Clean);
}
