//! `truncate`: the operator's explicit acceptance of a known loss. After it, recovery, the
//! reader and verify accept the journal, which holds exactly the records up to the sequence
//! asked for, and the writer carries on from there.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use ringbook_journal::{
    inspect, truncate, write_snapshot, Durability, JournalError, TailState, Writer,
};

/// The journal in `dir` is sound, holds exactly records `1..=to`, and a writer continues it.
fn assert_accepted_through(dir: &Path, to: u64) {
    let inspection = inspect(dir, |_, _| {}, |_| {}).unwrap();
    assert!(inspection.is_sound(), "{:?}", inspection.problems);
    let (records, tail) = read_all(dir).unwrap();
    assert_eq!(records.len() as u64, to);
    assert_generated(&records, 1);
    assert_eq!(tail, TailState::Clean);
    let mut writer = Writer::open(dir, config(true, Durability::None)).unwrap();
    assert_eq!(writer.next_sequence(), to + 1);
    assert_eq!(writer.recovery().truncated, None, "nothing left to cut");
    append_records(&mut writer, 700);
    drop(writer);
    let (records, _) = read_all(dir).unwrap();
    assert_eq!(records.len() as u64, to + 700);
    assert_generated(&records, 1);
}

fn journal(count: u64) -> (tempfile::TempDir, Vec<Owned>) {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), count, config(false, Durability::None));
    let (records, _) = read_all(dir.path()).unwrap();
    assert!(records.last().unwrap().position.segment_index >= 3);
    (dir, records)
}

#[test]
fn a_last_segment_cut_short_is_accepted_only_through_truncate() {
    let (dir, records) = journal(2000);
    let last = records.last().unwrap().position.segment_index;
    let path = ringbook_journal::segment_path(dir.path(), last);
    let len = fs::metadata(&path).unwrap().len();
    let in_last: Vec<&Owned> = records
        .iter()
        .filter(|r| r.position.segment_index == last)
        .collect();
    let victim = in_last[in_last.len() / 2].position;
    let cut = victim.offset + 5;
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let err = Writer::open(dir.path(), config(false, Durability::None)).unwrap_err();
    let to = in_last[in_last.len() / 2].sequence - 1;
    assert!(
        err.to_string().contains(&format!("through sequence {to}")),
        "{err}"
    );
    // Asking for more than is intact fails, naming how far it is.
    let e = truncate(dir.path(), to + 1, false).unwrap_err();
    assert!(matches!(e, JournalError::Truncate { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("intact through sequence {to}")),
        "{e}"
    );
    // A dry run changes nothing.
    let before = dir_bytes(dir.path());
    let dry = truncate(dir.path(), to, true).unwrap();
    assert_unchanged(dir.path(), &before);
    let report = truncate(dir.path(), to, false).unwrap();
    assert_eq!(
        dry,
        ringbook_journal::TruncateReport {
            dry_run: true,
            ..report.clone()
        }
    );
    assert_eq!(report.last_segment, Some(path.clone()));
    assert_eq!(report.cut_offset, victim.offset);
    assert_eq!(report.restored_from_len, Some(cut));
    assert!(report.removed_segments.is_empty());
    assert_eq!(fs::metadata(&path).unwrap().len(), len);
    assert_accepted_through(dir.path(), to);
}

#[test]
fn a_removed_last_segment_is_accepted_only_through_truncate() {
    let (dir, records) = journal(2000);
    let last = records.last().unwrap().position.segment_index;
    fs::remove_file(ringbook_journal::segment_path(dir.path(), last)).unwrap();
    assert!(Writer::open(dir.path(), config(false, Durability::None)).is_err());
    let to = records
        .iter()
        .rfind(|r| r.position.segment_index == last - 1)
        .unwrap()
        .sequence;
    let report = truncate(dir.path(), to, false).unwrap();
    // The sealed segment is opened again: its end-of-segment frame is zeroed.
    assert_eq!(
        report.last_segment,
        Some(ringbook_journal::segment_path(dir.path(), last - 1))
    );
    assert!(report.bytes_zeroed > 0 && report.bytes_zeroed <= 32);
    assert_eq!(report.records_dropped_in_last, None);
    assert_accepted_through(dir.path(), to);
}

#[test]
fn truncating_a_sound_journal_drops_later_segments_and_snapshots() {
    let (dir, records) = journal(2000);
    write_snapshot(dir.path(), 300, 0, 1, b"300").unwrap();
    let beyond = write_snapshot(dir.path(), 1500, 0, 1, b"1500").unwrap();
    let to = 700;
    let seg = records[to as usize - 1].position.segment_index;
    let last = records.last().unwrap().position.segment_index;
    let report = truncate(dir.path(), to, false).unwrap();
    assert_eq!(report.removed_snapshots, vec![beyond.path]);
    assert_eq!(report.removed_segments.len() as u64, last - seg);
    assert_eq!(
        report.removed_segments.last().unwrap().sequences.unwrap().1,
        2000
    );
    assert_eq!(report.last_dropped(), Some(2000));
    let dropped = report.records_dropped_in_last.unwrap();
    assert_eq!(dropped.0, to + 1);
    assert!(report.bytes_zeroed > 0);
    assert_accepted_through(dir.path(), to);
    assert!(ringbook_journal::snapshot_path(dir.path(), 300).exists());
}

#[test]
fn a_snapshot_beyond_the_end_is_dropped_by_truncate() {
    let (dir, records) = journal(2000);
    let last = records.last().unwrap().position.segment_index;
    fs::remove_file(ringbook_journal::segment_path(dir.path(), last)).unwrap();
    let to = records
        .iter()
        .rfind(|r| r.position.segment_index == last - 1)
        .unwrap()
        .sequence;
    write_snapshot(dir.path(), 1999, 0, 1, b"1999").unwrap();
    let report = truncate(dir.path(), to, false).unwrap();
    assert_eq!(report.removed_snapshots.len(), 1);
    assert_accepted_through(dir.path(), to);
}

#[test]
fn truncate_to_a_segments_last_record_reopens_it_and_to_zero_empties_the_journal() {
    let (dir, records) = journal(2000);
    let first_of_2 = records
        .iter()
        .find(|r| r.position.segment_index == 2)
        .unwrap()
        .sequence;
    let report = truncate(dir.path(), first_of_2 - 1, false).unwrap();
    assert_eq!(
        report.last_segment,
        Some(ringbook_journal::segment_path(dir.path(), 1))
    );
    assert!(report.records_dropped_in_last.is_none());
    assert_accepted_through(dir.path(), first_of_2 - 1);
    let report = truncate(dir.path(), 0, false).unwrap();
    assert_eq!(
        (report.last_segment, report.cut_offset),
        (Some(ringbook_journal::segment_path(dir.path(), 0)), 64)
    );
    assert_accepted_through(dir.path(), 0);
}

#[test]
fn truncate_refuses_a_pruned_sequence_and_a_live_writer() {
    let (dir, _) = journal(2000);
    write_snapshot(dir.path(), 1000, 0, 1, b"s").unwrap();
    let pruned = ringbook_journal::prune(dir.path(), u64::MAX, false).unwrap();
    let first = pruned.first_sequence_after.unwrap();
    assert!(first > 2);
    assert!(matches!(
        truncate(dir.path(), first - 2, false),
        Err(JournalError::Pruned { .. })
    ));
    let _writer = Writer::open(dir.path(), config(false, Durability::None)).unwrap();
    assert!(matches!(
        truncate(dir.path(), 1500, false),
        Err(JournalError::Locked { .. })
    ));
}

#[test]
fn a_journal_with_every_segment_gone_can_only_be_emptied() {
    let dir = tempfile::tempdir().unwrap();
    write_journal(dir.path(), 100, config(false, Durability::None));
    write_snapshot(dir.path(), 50, 0, 1, b"50").unwrap();
    fs::remove_file(ringbook_journal::segment_path(dir.path(), 0)).unwrap();
    assert!(Writer::open(dir.path(), config(false, Durability::None)).is_err());
    let e = truncate(dir.path(), 50, false).unwrap_err();
    assert!(e.to_string().contains("only --to 0"), "{e}");
    let report = truncate(dir.path(), 0, false).unwrap();
    assert_eq!(report.last_segment, None);
    assert_eq!(report.removed_snapshots.len(), 1);
    assert_accepted_through(dir.path(), 0);
}

/// `--to` past the end of a sound journal says so (it was reported as corruption: "no record
/// where one must be", a red-team finding), changes nothing, and the end itself is a no-op.
#[test]
fn truncating_past_the_end_of_a_sound_journal_says_it_is_beyond_the_end() {
    let (dir, records) = journal(2000);
    let last = records.last().unwrap().sequence;
    let before = dir_bytes(dir.path());
    for to in [last + 1, last + 1000, u64::MAX] {
        let e = truncate(dir.path(), to, false).unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains(&format!(
                "record {to} is beyond the journal's end: its last record is sequence {last}"
            )),
            "{shown}"
        );
        assert!(!shown.contains("corrupt"), "{shown}");
    }
    assert_unchanged(dir.path(), &before);
    let report = truncate(dir.path(), last, false).unwrap();
    assert_eq!(report.records_dropped_in_last, None);
    assert_accepted_through(dir.path(), last);
}
