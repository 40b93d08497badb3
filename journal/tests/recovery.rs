//! Recovery: a torn tail is cut away and reported, keeping every complete record and nothing
//! else; damage anywhere else is a hard error naming the file and offset.
//!
//! The torn states are made exactly: the last record of a journal is truncated at, zeroed from,
//! or flipped at every one of its byte offsets.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use ringbook_journal::{
    inspect, CorruptionKind, Durability, JournalError, Severity, TailState, Writer,
};

const N: u64 = 40;

/// A one-segment journal of `N` records, with the last record's offset and frame length.
fn pristine() -> (tempfile::TempDir, PathBuf, Vec<u8>, usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), N, config(false, Durability::None));
    let (records, _) = read_all(dir.path()).unwrap();
    let last = records.last().unwrap().position;
    assert_eq!(last.segment_index, 0);
    let path = ringbook_journal::segment_path(dir.path(), 0);
    let bytes = fs::read(&path).unwrap();
    (
        dir,
        path,
        bytes,
        last.offset as usize,
        last.frame_len_bytes as usize,
    )
}

/// Writes `bytes` as segment 0 of a fresh journal, recovers it, and returns what recovery
/// reported and what can be read afterwards.
fn recover(bytes: &[u8]) -> (ringbook_journal::RecoveryReport, Vec<Owned>) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(ringbook_journal::segment_path(dir.path(), 0), bytes).unwrap();
    let writer = Writer::open(dir.path(), config(false, Durability::None))
        .unwrap_or_else(|e| panic!("recovery failed: {e}"));
    let report = writer.recovery().clone();
    drop(writer);
    let (records, tail) = read_all(dir.path()).unwrap();
    assert_eq!(tail, TailState::Clean, "recovery leaves a clean tail");
    (report, records)
}

#[test]
fn a_last_segment_cut_short_anywhere_is_damage_naming_what_is_left() {
    // Segments are created at full length before their header is written: no crash leaves a
    // started segment short, so a short one lost its end. Recovery, the reader and verify all
    // refuse it, say how many records are left, and recovery changes nothing.
    let (_dir, _, bytes, last, frame_len) = pristine();
    let mut cuts: Vec<usize> = (last..=last + frame_len).collect();
    cuts.extend([bytes.len() / 2, bytes.len() - 8, 200]);
    for cut in cuts {
        let dir = tempfile::tempdir().unwrap();
        let path = ringbook_journal::segment_path(dir.path(), 0);
        fs::write(&path, &bytes[..cut]).unwrap();
        let before = dir_bytes(dir.path());
        let kind = expect_corrupt(
            Writer::open(dir.path(), config(false, Durability::None)),
            &path,
            cut,
        );
        // A record is left only if it lies wholly inside the file.
        let whole = cut >= last + frame_len;
        let CorruptionKind::ShortSegment {
            header_len,
            file_len,
            records_intact,
            next_sequence,
        } = kind
        else {
            panic!("cut at {cut}: {kind:?}");
        };
        assert_eq!((header_len, file_len), (bytes.len() as u64, cut as u64));
        if cut >= last {
            assert_eq!(
                records_intact,
                if whole { N } else { N - 1 },
                "cut at {cut}"
            );
        }
        assert_eq!(next_sequence, records_intact + 1);
        let shown = kind.to_string();
        assert!(
            shown.contains(&format!("the last {} bytes are missing", bytes.len() - cut)),
            "{shown}"
        );
        assert_unchanged(dir.path(), &before);
        assert!(read_all(dir.path()).is_err(), "the reader refuses it too");
        let inspection = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
        assert!(!inspection.is_sound(), "cut at {cut}");
        assert!(inspection
            .problems
            .iter()
            .any(|p| p.severity == Severity::Error
                && p.path == path
                && p.message.contains("bytes are missing")));
    }
}

#[test]
fn zeroing_the_last_record_from_any_offset_keeps_exactly_the_complete_ones() {
    let (_dir, _, bytes, last, frame_len) = pristine();
    let mut torn_cases = 0;
    for from in last..last + frame_len {
        let mut b = bytes.clone();
        b[from..last + frame_len].fill(0);
        let (report, records) = recover(&b);
        let intact = b == bytes;
        let kept = if intact { N } else { N - 1 };
        assert_eq!(records.len() as u64, kept, "zeroed from {from}");
        assert_generated(&records, 1);
        assert_eq!(
            report.truncated.is_some(),
            from > last && !intact,
            "zeroed from {from}"
        );
        torn_cases += usize::from(!intact);
    }
    assert!(torn_cases > frame_len / 2);
}

#[test]
fn an_uncommitted_record_is_cut_and_reported_as_such() {
    // Exactly what a writer killed mid-append leaves: the body written, the length word not.
    let (_dir, _, bytes, last, _) = pristine();
    let mut b = bytes.clone();
    b[last..last + 4].fill(0);
    let (report, records) = recover(&b);
    assert_eq!(records.len() as u64, N - 1);
    let t = report.truncated.clone().expect("reported");
    assert_eq!((t.offset as usize, t.damage), (last, None));
    assert!(t.bytes_discarded > 0);
    assert!(report.to_string().contains("torn tail cut"));
}

#[test]
fn flipping_any_byte_of_the_last_record_keeps_exactly_the_complete_ones() {
    let (_dir, _, bytes, last, frame_len) = pristine();
    for at in last..last + frame_len {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[at] ^= mask;
            let (report, records) = recover(&b);
            assert_eq!(records.len() as u64, N - 1, "flip {mask:#x} at {at}");
            assert_generated(&records, 1);
            let t = report.truncated.expect("reported");
            assert_eq!(t.offset as usize, last);
            assert!(t.damage.is_some());
        }
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let (_dir, _, bytes, last, frame_len) = pristine();
    let mut b = bytes.clone();
    let end = last + frame_len;
    for (i, x) in b[end..end + 300].iter_mut().enumerate() {
        *x = (i * 7 + 1) as u8;
    }
    let (report, records) = recover(&b);
    assert_eq!(records.len() as u64, N);
    assert_eq!(report.truncated.unwrap().offset as usize, end);
}

/// The errors `verify` (`inspect`) reports for the journal in `dir`.
fn verify_errors(dir: &Path) -> Vec<ringbook_journal::Problem> {
    let report = inspect(dir, |_, _| {}, |_| {}).unwrap();
    report
        .problems
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .collect()
}

fn expect_corrupt(
    result: Result<Writer, JournalError>,
    path: &Path,
    offset: usize,
) -> CorruptionKind {
    match result {
        Err(JournalError::Corrupt(c)) => {
            assert_eq!(c.path, path, "{c}");
            assert_eq!(c.offset as usize, offset, "{c}");
            let shown = JournalError::Corrupt(c.clone()).to_string();
            assert!(
                shown.contains(&path.display().to_string()) && shown.contains(&offset.to_string())
            );
            c.kind
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("expected corruption, recovery succeeded"),
    }
}

#[test]
fn a_bad_record_followed_by_valid_ones_is_a_hard_error_naming_file_and_offset() {
    let (dir, path, bytes, _, _) = pristine();
    let (records, _) = read_all(dir.path()).unwrap();
    for victim in [0usize, 1, 17, N as usize - 2] {
        let at = records[victim].position.offset as usize;
        let len = records[victim].position.frame_len_bytes as usize;
        for (what, mutate) in [
            (
                "flip payload",
                Box::new(|b: &mut Vec<u8>| b[at + len - 1] ^= 1) as Box<dyn Fn(&mut Vec<u8>)>,
            ),
            ("flip sequence", Box::new(|b: &mut Vec<u8>| b[at + 8] ^= 1)),
            (
                "zero length",
                Box::new(|b: &mut Vec<u8>| b[at..at + 4].fill(0)),
            ),
        ] {
            let mut b = bytes.clone();
            mutate(&mut b);
            fs::write(&path, &b).unwrap();
            let kind = expect_corrupt(
                Writer::open(dir.path(), config(false, Durability::None)),
                &path,
                at,
            );
            assert!(
                matches!(
                    kind,
                    CorruptionKind::Frame(_) | CorruptionKind::MissingFrame
                ),
                "{what}: {kind:?}"
            );
            // The reader stops there too, after the records before it.
            let mut reader = ringbook_journal::Reader::open(dir.path()).unwrap();
            let mut good = 0;
            let err = loop {
                match reader.next() {
                    Ok(Some(_)) => good += 1,
                    Ok(None) => panic!("{what}: reader skipped the damage"),
                    Err(e) => break e,
                }
            };
            assert_eq!(good, victim, "{what}");
            assert!(matches!(err, JournalError::Corrupt(ref c) if c.offset as usize == at));
            // And verify lists it as an error.
            let inspection = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
            assert!(!inspection.is_sound());
            assert!(inspection
                .problems
                .iter()
                .any(|p| p.severity == Severity::Error && p.offset == Some(at as u64)));
        }
    }
}

#[test]
fn a_valid_record_out_of_sequence_is_a_hard_error() {
    // Duplicate record 10's frame over record 11's place: checksums hold, sequences do not.
    let (dir, path, bytes, _, _) = pristine();
    let (records, _) = read_all(dir.path()).unwrap();
    let a = records[9].position;
    let b = records[10].position;
    let mut m = bytes.clone();
    let frame = bytes[a.offset as usize..(a.offset + a.frame_len_bytes as u64) as usize].to_vec();
    m[b.offset as usize..b.offset as usize + frame.len()].copy_from_slice(&frame);
    fs::write(&path, &m).unwrap();
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(false, Durability::None)),
        &path,
        b.offset as usize,
    );
    assert_eq!(
        kind,
        CorruptionKind::SequenceNotNext {
            expected: 11,
            found: 10
        }
    );
}

/// A journal of several segments.
fn multi_segment() -> (tempfile::TempDir, Vec<Owned>) {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 3000, config(false, Durability::None));
    let (records, _) = read_all(dir.path()).unwrap();
    assert!(records.last().unwrap().position.segment_index >= 4);
    (dir, records)
}

#[test]
fn a_bad_record_in_a_sealed_segment_is_a_hard_error_for_replay_and_verify() {
    let (dir, records) = multi_segment();
    let victim = records
        .iter()
        .find(|r| r.position.segment_index == 1)
        .unwrap()
        .position;
    let path = ringbook_journal::segment_path(dir.path(), 1);
    let mut b = fs::read(&path).unwrap();
    b[victim.offset as usize + 40] ^= 0x10;
    fs::write(&path, &b).unwrap();
    // Opening scans only the tail, so the writer opens; replay and verify refuse.
    drop(Writer::open(dir.path(), config(false, Durability::None)).unwrap());
    match read_all(dir.path()) {
        Err(JournalError::Corrupt(c)) => {
            assert_eq!(
                (c.path.as_path(), c.offset),
                (path.as_path(), victim.offset)
            )
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let errors = verify_errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (&errors[0].path, errors[0].offset),
        (&path, Some(victim.offset))
    );
}

#[test]
fn a_sealed_segment_cut_short_is_a_hard_error() {
    let (dir, records) = multi_segment();
    let last_of_1 = records
        .iter()
        .rfind(|r| r.position.segment_index == 1)
        .unwrap()
        .position;
    let path = ringbook_journal::segment_path(dir.path(), 1);
    // Zero the end-of-segment frame: segment 1 looks open, but segment 2 has started.
    let mut b = fs::read(&path).unwrap();
    let eos = (last_of_1.offset + last_of_1.frame_len_bytes as u64) as usize;
    b[eos..eos + 32].fill(0);
    fs::write(&path, &b).unwrap();
    match read_all(dir.path()) {
        Err(JournalError::Corrupt(c)) => {
            assert_eq!((c.path.as_path(), c.offset as usize), (path.as_path(), eos));
            assert_eq!(c.kind, CorruptionKind::MissingFrame);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let inspection = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(!inspection.is_sound());
}

#[test]
fn a_bad_header_in_any_segment_is_a_hard_error_at_open() {
    let (dir, _) = multi_segment();
    let path = ringbook_journal::segment_path(dir.path(), 2);
    let mut b = fs::read(&path).unwrap();
    b[20] ^= 1; // the segment index field
    fs::write(&path, &b).unwrap();
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(false, Durability::None)),
        &path,
        0,
    );
    assert!(matches!(kind, CorruptionKind::Header(_)), "{kind:?}");
}

#[test]
fn a_missing_segment_is_a_hard_error() {
    let (dir, _) = multi_segment();
    let path = ringbook_journal::segment_path(dir.path(), 2);
    fs::remove_file(&path).unwrap();
    let before = dir_bytes(dir.path());
    // The error names the missing file.
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(false, Durability::None)),
        &path,
        0,
    );
    assert!(
        kind.to_string()
            .contains("segment-00000000000000000002.rbj is missing")
            || kind
                .to_string()
                .contains("(segment-00000000000000000002.rbj) is missing"),
        "{kind}"
    );
    assert_unchanged(dir.path(), &before);
    let inspection = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(inspection
        .problems
        .iter()
        .any(|p| p.severity == Severity::Error && p.path == path));
    // Said once, as the gap it is: not also as "every record from S on is lost" (later
    // segments hold records), which contradicted it.
    let errors: Vec<_> = inspection
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.message.clone())
        .collect();
    assert!(
        errors.iter().all(|m| !m.contains(" on is lost")),
        "{errors:?}"
    );
    assert_eq!(
        kind,
        CorruptionKind::IndexGap {
            expected: 2,
            found: 3
        }
    );
    assert!(read_all(dir.path()).is_err());
}

#[test]
fn an_unused_pre_allocated_segment_is_removed_and_reported() {
    let (dir, records) = multi_segment();
    let last = records.last().unwrap().position.segment_index;
    let unused = ringbook_journal::segment_path(dir.path(), last + 1);
    fs::write(&unused, vec![0u8; SEGMENT_LEN as usize]).unwrap();
    // Readers treat it as not started.
    let (read, tail) = read_all(dir.path()).unwrap();
    assert_eq!((read.len(), tail), (3000, TailState::Clean));
    let mut writer = Writer::open(dir.path(), config(true, Durability::None)).unwrap();
    assert_eq!(writer.recovery().removed_unused, vec![unused.clone()]);
    assert_eq!(writer.next_sequence(), 3001);
    append_records(&mut writer, 2000);
    drop(writer);
    let (read, _) = read_all(dir.path()).unwrap();
    assert_eq!(read.len(), 5000);
    assert_generated(&read, 1);
}

#[test]
fn a_headerless_segment_with_data_is_a_hard_error() {
    let (dir, records) = multi_segment();
    let last = records.last().unwrap().position.segment_index;
    let path = ringbook_journal::segment_path(dir.path(), last + 1);
    let mut b = vec![0u8; SEGMENT_LEN as usize];
    b[5000] = 1;
    fs::write(&path, &b).unwrap();
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(false, Durability::None)),
        &path,
        5000,
    );
    assert_eq!(kind, CorruptionKind::DataWithoutHeader);
}

#[test]
fn a_torn_header_over_an_empty_body_is_an_unused_segment() {
    // The writer stores the header fields first and the magic last: a crash in between leaves
    // fields without a magic.
    let (dir, records) = multi_segment();
    let last = records.last().unwrap().position.segment_index;
    let path = ringbook_journal::segment_path(dir.path(), last + 1);
    let mut b = vec![0u8; SEGMENT_LEN as usize];
    b[16..24].copy_from_slice(&(last + 1).to_le_bytes());
    fs::write(&path, &b).unwrap();
    let writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    assert_eq!(writer.recovery().removed_unused, vec![path]);
}

#[test]
fn a_sealed_last_segment_starts_the_next() {
    // A crash between sealing a segment and starting the next: the writer created the next
    // segment's file before the seal, so it is there, unused. Rebuild segment 1 that way.
    for pretouch in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Writer::open(dir.path(), config(pretouch, Durability::None)).unwrap();
        while writer.stats().rolls == 0 {
            append_records(&mut writer, 1);
        }
        // The record that rolled went into segment 1.
        let next = writer.next_sequence();
        drop(writer);
        let path1 = ringbook_journal::segment_path(dir.path(), 1);
        fs::write(&path1, vec![0u8; SEGMENT_LEN as usize]).unwrap();
        let _ = fs::remove_file(ringbook_journal::segment_path(dir.path(), 2));
        let (records, tail) = read_all(dir.path()).unwrap();
        assert_eq!(tail, TailState::Sealed);
        assert_eq!(records.len() as u64, next - 2);
        assert!(inspect(dir.path(), |_, _| {}, |_| {}).unwrap().is_sound());
        let mut writer = Writer::open(dir.path(), config(pretouch, Durability::None)).unwrap();
        assert!(writer.recovery().rolled_sealed_segment);
        assert!(writer.recovery().removed_unused.is_empty());
        assert_eq!(writer.next_sequence(), next - 1);
        append_records(&mut writer, 10);
        drop(writer);
        let (records, _) = read_all(dir.path()).unwrap();
        assert_eq!(records.len() as u64, next + 8);
        assert_generated(&records, 1);
    }
}

#[test]
fn a_sealed_segment_whose_successor_is_gone_is_damage() {
    // The last segment deleted: the one before it is sealed and names it. No crash leaves
    // that (the successor's file exists before the seal): refuse, name it, change nothing.
    let (dir, records) = multi_segment();
    let last = records.last().unwrap().position.segment_index;
    let first_lost = records
        .iter()
        .find(|r| r.position.segment_index == last)
        .unwrap()
        .sequence;
    let path = ringbook_journal::segment_path(dir.path(), last);
    fs::remove_file(&path).unwrap();
    let before = dir_bytes(dir.path());
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(true, Durability::None)),
        &path,
        0,
    );
    assert_eq!(
        kind,
        CorruptionKind::MissingSegment {
            index: last,
            first_sequence: first_lost
        }
    );
    assert!(kind
        .to_string()
        .contains(&format!("every record from {first_lost} on")));
    assert_unchanged(dir.path(), &before);
    match read_all(dir.path()) {
        Err(JournalError::Corrupt(c)) => assert_eq!(c.path, path),
        other => panic!("the reader must refuse: {other:?}"),
    }
    let inspection = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(inspection
        .problems
        .iter()
        .any(|p| p.severity == Severity::Error && p.path == path));
}

#[test]
fn a_journal_whose_every_segment_is_gone_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 50, config(false, Durability::None));
    assert!(dir
        .path()
        .join(ringbook_journal::CREATED_FILE_NAME)
        .exists());
    fs::remove_file(ringbook_journal::segment_path(dir.path(), 0)).unwrap();
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(false, Durability::None)),
        &ringbook_journal::segment_path(dir.path(), 0),
        0,
    );
    assert_eq!(kind, CorruptionKind::NoSegments);
    assert!(ringbook_journal::list(dir.path())
        .unwrap()
        .segments
        .is_empty());
    assert!(!inspect(dir.path(), |_, _| {}, |_| {}).unwrap().is_sound());
    // A reader (replay, a tailer) refuses it too, rather than reading an empty journal; and
    // so when the only segment is there but empty (zero length: never started).
    for zero_length in [false, true] {
        if zero_length {
            fs::write(ringbook_journal::segment_path(dir.path(), 0), b"").unwrap();
        }
        match ringbook_journal::Reader::open(dir.path()) {
            Err(JournalError::Corrupt(c)) => assert_eq!(c.kind, CorruptionKind::NoSegments),
            Err(e) => panic!("expected NoSegments, got {e}"),
            Ok(_) => panic!("an empty reader over a journal whose records are gone"),
        }
    }
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(false, Durability::None)),
        &ringbook_journal::segment_path(dir.path(), 0),
        0,
    );
    assert_eq!(kind, CorruptionKind::NoSegments);
}

#[test]
fn a_stray_file_named_like_a_segment_is_damage_not_an_unused_segment() {
    // A writer creates a segment empty and sizes it in one call before writing anything, so a
    // non-empty file shorter than a header was never a segment of ours. It used to read as an
    // unused pre-allocated segment, and recovery deleted it (an operator's red-team pass: a
    // 3-byte file, gone at the next start). Refused now, and left as it was; an empty file, or
    // one sized but all zeros, is still an unused segment.
    for (journal_had_records, stray) in [
        (false, &b"abc"[..]),
        (false, &[0u8, 0, 0, 0, 0, 0, 0, 0, 0, 7][..]),
        (true, &[1u8; 63][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let index = if journal_had_records {
            write_journal(dir.path(), 50, config(false, Durability::None));
            ringbook_journal::list(dir.path()).unwrap().segments.len() as u64
        } else {
            0
        };
        let path = ringbook_journal::segment_path(dir.path(), index);
        fs::write(&path, stray).unwrap();
        let before = dir_bytes(dir.path());
        let last_non_zero = stray.iter().rposition(|&b| b != 0).unwrap();
        let kind = expect_corrupt(
            Writer::open(dir.path(), config(false, Durability::None)),
            &path,
            last_non_zero,
        );
        assert_eq!(kind, CorruptionKind::DataWithoutHeader);
        assert_unchanged(dir.path(), &before);
        // `verify` names that one problem, and no consequence of it as a second.
        let errors = verify_errors(dir.path());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, path);
        assert_eq!(errors[0].offset, Some(last_non_zero as u64));
    }
    // The forms a crash leaves are still unused segments, removed when nothing follows.
    for unused in [&[][..], &[0u8; 3][..]] {
        let dir = tempfile::tempdir().unwrap();
        let path = ringbook_journal::segment_path(dir.path(), 0);
        fs::write(&path, unused).unwrap();
        let writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
        assert!(writer.recovery().created);
        writer.close().unwrap();
    }
}

#[test]
fn a_journal_whose_only_segment_is_damaged_is_reported_once() {
    // Marker present, the only segment's header not ours: `verify` names the header, and does
    // not add that no segment file is left (the file is there).
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 5, config(false, Durability::None));
    let path = ringbook_journal::segment_path(dir.path(), 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[..8].copy_from_slice(b"notours!");
    fs::write(&path, &bytes).unwrap();
    let errors = verify_errors(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("BadMagic"), "{}", errors[0]);
}

#[test]
fn a_snapshot_beyond_the_end_is_refused_before_anything_is_rewritten() {
    // A torn final record that recovery would cut, an unused segment it would remove, and a
    // snapshot covering more than the journal holds: the refusal comes first, and every file
    // is left byte for byte as it was.
    let (_dir, _, bytes, last, _) = pristine();
    let dir = tempfile::tempdir().unwrap();
    let mut b = bytes.clone();
    b[last..last + 4].fill(0);
    fs::write(ringbook_journal::segment_path(dir.path(), 0), &b).unwrap();
    fs::write(
        ringbook_journal::segment_path(dir.path(), 1),
        vec![0u8; SEGMENT_LEN as usize],
    )
    .unwrap();
    ringbook_journal::write_snapshot(dir.path(), 10, 0, 1, b"ten").unwrap();
    let snap = ringbook_journal::write_snapshot(dir.path(), N, 0, 1, b"N").unwrap();
    let before = dir_bytes(dir.path());
    let kind = expect_corrupt(
        Writer::open(dir.path(), config(true, Durability::None)),
        &snap.path,
        0,
    );
    assert_eq!(
        kind,
        CorruptionKind::SnapshotBeyondEnd {
            snapshot_sequence: N,
            next_sequence: N
        }
    );
    assert_unchanged(dir.path(), &before);
    assert!(!inspect(dir.path(), |_, _| {}, |_| {}).unwrap().is_sound());
    // Without that snapshot, recovery cuts the torn record and reports the cut.
    fs::remove_file(&snap.path).unwrap();
    let writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    let cuts: Vec<_> = writer.recovery().cuts().cloned().collect();
    assert_eq!(cuts.len(), 1);
    assert_eq!(cuts[0].offset as usize, last);
    assert_eq!(writer.recovery().snapshot_sequence, Some(10));
    assert_eq!(writer.next_sequence(), N);
}

#[test]
fn damaged_snapshots_recovery_skips_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 100, config(false, Durability::None));
    ringbook_journal::write_snapshot(dir.path(), 50, 0, 1, b"fifty").unwrap();
    let bad = ringbook_journal::write_snapshot(dir.path(), 80, 0, 1, b"eighty").unwrap();
    let mut b = fs::read(&bad.path).unwrap();
    let n = b.len();
    b[n - 1] ^= 1;
    fs::write(&bad.path, &b).unwrap();
    let writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    let report = writer.recovery();
    assert_eq!(report.snapshot_sequence, Some(50));
    assert_eq!(report.skipped_snapshots.len(), 1);
    assert_eq!(report.skipped_snapshots[0].0, bad.path);
    assert!(
        report.to_string().contains("skipped damaged snapshot"),
        "{report}"
    );
}

#[test]
fn recovery_then_append_keeps_the_journal_contiguous() {
    let (_dir, _, bytes, last, _) = pristine();
    let dir = tempfile::tempdir().unwrap();
    let mut b = bytes.clone();
    b[last + 2] ^= 0x40;
    fs::write(ringbook_journal::segment_path(dir.path(), 0), &b).unwrap();
    let mut writer = Writer::open(dir.path(), config(true, Durability::None)).unwrap();
    assert_eq!(writer.next_sequence(), N);
    append_records(&mut writer, 1000);
    drop(writer);
    let (records, tail) = read_all(dir.path()).unwrap();
    assert_eq!(records.len() as u64, N - 1 + 1000);
    assert_generated(&records, 1);
    assert_eq!(tail, TailState::Clean);
    let inspection = inspect(dir.path(), |_, _| {}, |_| {}).unwrap();
    assert!(inspection.problems.is_empty(), "{:?}", inspection.problems);
}
