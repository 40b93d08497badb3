//! Helpers shared by the integration tests: a deterministic record generator, small-segment
//! configurations, and readers that collect everything.
#![allow(dead_code)] // each test file uses a different subset

use std::path::Path;
use std::time::Duration;

use ringbook_journal::{
    Durability, JournalConfig, JournalError, Pretouch, Reader, RecordPosition, TailState, Writer,
};

/// 64 KiB segments: a few hundred records each, so tests roll often.
pub const SEGMENT_LEN: u64 = 64 << 10;

/// A small-segment configuration.
pub fn config(pretouch: bool, durability: Durability) -> JournalConfig {
    JournalConfig {
        segment_len_bytes: SEGMENT_LEN,
        payload_len_max_bytes: 4096,
        durability,
        pretouch: if pretouch {
            Pretouch::Ahead {
                ahead_bytes: 16 << 10,
                poll_interval: Duration::from_micros(50),
            }
        } else {
            Pretouch::Off
        },
        first_sequence: 1,
    }
}

/// The record with sequence `seq`, as every test writes it: `(type, timestamp, payload)`.
pub fn record(seq: u64) -> (u16, u64, Vec<u8>) {
    let len = (seq.wrapping_mul(7919) % 211) as usize;
    let payload = (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64 * 17) % 251) as u8)
        .collect();
    ((seq % 5) as u16, seq * 1_000 + 7, payload)
}

/// Appends records `next_sequence..next_sequence + count` as [`record`] makes them.
pub fn append_records(writer: &mut Writer, count: u64) {
    for _ in 0..count {
        let seq = writer.next_sequence();
        let (t, ts, payload) = record(seq);
        writer.append(seq, t, ts, &payload).expect("append");
    }
}

/// Creates a journal in `dir` with `count` records (sequences 1..=count) and closes it.
pub fn write_journal(dir: &Path, count: u64, config: JournalConfig) {
    let mut writer = Writer::open(dir, config).expect("open writer");
    append_records(&mut writer, count);
    writer.close().expect("close");
}

/// An owned copy of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    pub sequence: u64,
    pub record_type: u16,
    pub timestamp_ns: u64,
    pub payload: Vec<u8>,
    pub position: RecordPosition,
}

/// Reads every record from `dir` (from `from`), with how the journal ends.
pub fn read_all_from(dir: &Path, from: u64) -> Result<(Vec<Owned>, TailState), JournalError> {
    let mut reader = Reader::open_from(dir, from)?;
    let mut out = Vec::new();
    while let Some(r) = reader.next()? {
        out.push(Owned {
            sequence: r.sequence,
            record_type: r.record_type,
            timestamp_ns: r.timestamp_ns,
            payload: r.payload.to_vec(),
            position: RecordPosition::default(),
        });
        let pos = reader.position();
        out.last_mut().expect("just pushed").position = pos;
    }
    let tail = reader.tail().cloned().expect("ended");
    Ok((out, tail))
}

pub fn read_all(dir: &Path) -> Result<(Vec<Owned>, TailState), JournalError> {
    read_all_from(dir, 0)
}

/// Asserts that `records` are exactly sequences `first..first + len`, each as [`record`] makes
/// it.
pub fn assert_generated(records: &[Owned], first: u64) {
    for (i, r) in records.iter().enumerate() {
        let seq = first + i as u64;
        assert_eq!(r.sequence, seq, "sequence at index {i}");
        let (t, ts, payload) = record(seq);
        assert_eq!(
            (r.record_type, r.timestamp_ns, &r.payload),
            (t, ts, &payload),
            "record {seq}"
        );
    }
}

/// Copies every file of `from` into `to` (a fresh directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// The frame checksum recomputed from the file's bytes, independently of the crate:
/// `(stored, computed)` for the frame at `offset`.
pub fn frame_checksums(file: &[u8], offset: usize) -> (u32, u32) {
    let len = u32::from_le_bytes(file[offset..offset + 4].try_into().expect("4 bytes")) as usize;
    let stored = u32::from_le_bytes(file[offset + 4..offset + 8].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&file[offset + 8..offset + len]);
    (stored, computed)
}

/// Every file of `dir` by name, with its bytes: to prove a refused open changed nothing.
pub fn dir_bytes(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

/// Asserts that `dir` holds exactly the files of `before`, byte for byte (the writer's lock
/// file, empty, may have been added).
pub fn assert_unchanged(dir: &Path, before: &std::collections::BTreeMap<String, Vec<u8>>) {
    let mut after = dir_bytes(dir);
    if !before.contains_key(ringbook_journal::LOCK_FILE_NAME) {
        after.remove(ringbook_journal::LOCK_FILE_NAME);
    }
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (name, content) in before {
        assert!(after[name] == *content, "{name} changed");
    }
}
