//! Property tests: arbitrary and mutated segment files fed to every reader and to recovery.
//! Whatever the bytes, nothing panics, and no record is ever returned whose checksum — recomputed
//! here from the file, independently of the crate — does not match; records returned from a
//! mutated journal are always records that were written.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use proptest::prelude::*;
use ringbook_journal::format::{SegmentHeader, SEGMENT_HEADER_LEN};
use ringbook_journal::{
    inspect, Durability, JournalConfig, Pretouch, Reader, RecordPosition, Tailer, Writer,
};

const SEG: u64 = 8192;

fn small_config() -> JournalConfig {
    JournalConfig {
        segment_len_bytes: SEG,
        payload_len_max_bytes: 1024,
        durability: Durability::None,
        pretouch: Pretouch::Off,
        first_sequence: 1,
    }
}

/// Checks one returned record against the file bytes at its position; with `originals`, also
/// that it is the record written with that sequence.
fn check_record(
    dir: &Path,
    sequence: u64,
    record_type: u16,
    timestamp_ns: u64,
    payload: &[u8],
    pos: RecordPosition,
    originals: bool,
) {
    let file = fs::read(ringbook_journal::segment_path(dir, pos.segment_index)).unwrap();
    let at = pos.offset as usize;
    assert!(at + pos.frame_len_bytes as usize <= file.len());
    let (stored, computed) = frame_checksums(&file, at);
    assert_eq!(
        stored, computed,
        "record {sequence} returned with a bad checksum"
    );
    assert_eq!(&file[at + 32..at + 32 + payload.len()], payload);
    if originals {
        let (t, ts, p) = record(sequence);
        assert_eq!((record_type, timestamp_ns, payload), (t, ts, &p[..]));
    }
}

/// Runs every reader and recovery over `dir`, checking every record they return.
fn exercise(dir: &Path, originals: bool) {
    let bound = 100_000; // far more frames than the files can hold: a loop guard
    if let Ok(mut reader) = Reader::open(dir) {
        for _ in 0..bound {
            match reader.next() {
                Ok(Some(r)) => {
                    let (s, t, ts, p) = (
                        r.sequence,
                        r.record_type,
                        r.timestamp_ns,
                        r.payload.to_vec(),
                    );
                    check_record(dir, s, t, ts, &p, reader.position(), originals);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    if let Ok(mut tailer) = Tailer::open(dir, 0) {
        for _ in 0..bound {
            match tailer.poll() {
                Ok(Some(r)) => {
                    let (s, t, ts, p) = (
                        r.sequence,
                        r.record_type,
                        r.timestamp_ns,
                        r.payload.to_vec(),
                    );
                    check_record(dir, s, t, ts, &p, tailer.position(), originals);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    let mut seen = Vec::new();
    if inspect(
        dir,
        |r, pos| {
            seen.push((
                r.sequence,
                r.record_type,
                r.timestamp_ns,
                r.payload.to_vec(),
                pos,
            ))
        },
        |_| {},
    )
    .is_ok()
    {
        for (s, t, ts, p, pos) in seen {
            check_record(dir, s, t, ts, &p, pos, originals);
        }
    }
    // Recovery: refuses, or leaves a journal whose readable records all check out.
    if let Ok(writer) = Writer::open(dir, small_config()) {
        drop(writer);
        if let Ok((records, _)) = read_all(dir) {
            for r in &records {
                check_record(
                    dir,
                    r.sequence,
                    r.record_type,
                    r.timestamp_ns,
                    &r.payload,
                    r.position,
                    originals,
                );
            }
            if originals {
                if let Some(first) = records.first() {
                    assert_generated(&records, first.sequence);
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Set { at: usize, value: u8 },
    Zero { at: usize, len: usize },
    Truncate { at: usize },
    Copy { from: usize, to: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = (usize, Mutation)> {
    let m = prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        2 => (any::<usize>(), 1usize..200).prop_map(|(at, len)| Mutation::Zero { at, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        2 => (any::<usize>(), any::<usize>(), 1usize..300)
            .prop_map(|(from, to, len)| Mutation::Copy { from, to, len }),
    ];
    (any::<usize>(), m)
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    if n == 0 {
        return;
    }
    match *m {
        Mutation::Set { at, value } => bytes[at % n] = value,
        Mutation::Zero { at, len } => {
            let at = at % n;
            let end = (at + len).min(n);
            bytes[at..end].fill(0);
        }
        Mutation::Truncate { at } => bytes.truncate(at % n),
        Mutation::Copy { from, to, len } => {
            let (from, to) = (from % n, to % n);
            let len = len.min(n - from).min(n - to);
            let chunk = bytes[from..from + len].to_vec();
            bytes[to..to + len].copy_from_slice(&chunk);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn mutated_journals_never_yield_a_record_that_was_not_written(
        count in 1u64..400,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_journal(dir.path(), count, small_config());
        let segments = ringbook_journal::list(dir.path()).unwrap().segments;
        for (which, m) in &mutations {
            let (_, path) = &segments[which % segments.len()];
            let mut bytes = fs::read(path).unwrap();
            apply(&mut bytes, m);
            fs::write(path, &bytes).unwrap();
        }
        exercise(dir.path(), true);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_yield_a_bad_checksum(
        body in proptest::collection::vec(any::<u8>(), 0..(SEG as usize)),
        with_header in any::<bool>(),
        first_sequence in any::<u64>(),
        second in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..512)),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = body;
        if with_header {
            let header = SegmentHeader {
                segment_index: 0,
                first_sequence,
                segment_len_bytes: SEG,
            }
            .encode();
            let n = SEGMENT_HEADER_LEN.min(bytes.len());
            bytes[..n].copy_from_slice(&header[..n]);
        }
        fs::write(ringbook_journal::segment_path(dir.path(), 0), &bytes).unwrap();
        if let Some(second) = second {
            fs::write(ringbook_journal::segment_path(dir.path(), 1), &second).unwrap();
        }
        exercise(dir.path(), false);
    }

    #[test]
    fn frames_planted_in_noise_are_returned_only_if_intact(
        noise in proptest::collection::vec(any::<u8>(), 0..2048),
        plant in proptest::option::of((any::<usize>(), any::<usize>())),
        flip in proptest::option::of((any::<usize>(), 1u8..=255)),
    ) {
        // A valid journal whose last segment's free space is filled with noise that contains
        // copies of real frames (from its own records): recovery must not take any of them.
        let dir = tempfile::tempdir().unwrap();
        write_journal(dir.path(), 30, small_config());
        let (records, _) = read_all(dir.path()).unwrap();
        let last = records.last().unwrap().position;
        let path = ringbook_journal::segment_path(dir.path(), last.segment_index);
        let mut bytes = fs::read(&path).unwrap();
        let end = (last.offset + u64::from(last.frame_len_bytes)) as usize;
        let room = bytes.len() - end - 32;
        let n = noise.len().min(room);
        bytes[end..end + n].copy_from_slice(&noise[..n]);
        if let Some((which, at)) = plant {
            // A copy of one of its own frames, at an aligned offset in the free space.
            let src = records[which % records.len()].position;
            let (from, len) = (src.offset as usize, src.frame_len_bytes as usize);
            let at = end + (at % (room.saturating_sub(len) / 8 + 1)) * 8;
            if at + len + 32 <= bytes.len() {
                let frame = bytes[from..from + len].to_vec();
                bytes[at..at + len].copy_from_slice(&frame);
            }
        }
        if let Some((at, mask)) = flip {
            let at = last.offset as usize + at % last.frame_len_bytes as usize;
            bytes[at] ^= mask;
        }
        fs::write(&path, &bytes).unwrap();
        exercise(dir.path(), true);
    }
}
