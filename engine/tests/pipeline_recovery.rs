//! Restart on the same journal: the same state, the sequence continues; with snapshots the
//! result equals a full replay.

mod common;

use common::{collector, config, reference, stream, submit};
use ringbook_engine::pipeline::{Layout, OutputKind, Pipeline, Transport, WaitStrategy};
use ringbook_engine::prelude::*;
use ringbook_journal::{Durability, JournalConfig, Pretouch};

fn journal_config() -> JournalConfig {
    JournalConfig {
        segment_len_bytes: 1 << 20, // small: the runs below roll segments
        durability: Durability::None,
        pretouch: Pretouch::Off,
        ..JournalConfig::default()
    }
}

fn start(dir: &std::path::Path, layout: Layout, every: u64) -> (Pipeline, common::Collected) {
    let (collected, handler) = collector();
    let pipeline = Pipeline::builder(&config())
        .layout(layout)
        .transport(Transport::Disruptor)
        .wait(WaitStrategy::Yield)
        .journal(dir, journal_config())
        .snapshot_every(every)
        .on_output(handler)
        .start()
        .unwrap();
    (pipeline, collected)
}

fn restart_continues(layout: Layout) {
    let dir = tempfile::tempdir().unwrap();
    let cmds = stream(11, 12_000);
    let (first, rest) = cmds.split_at(5_000);

    // Run 1: no snapshots.
    let (mut p, _) = start(dir.path(), layout, 0);
    assert_eq!(p.recovery().next_seq, Seq(1));
    for c in first {
        submit(&mut p, *c);
    }
    let run1 = p.shutdown().unwrap();
    assert_eq!(
        run1.state_hash,
        reference(&config(), RiskMode::On, 1, first).1.state_hash()
    );

    // Run 2: recovers by full replay, continues the sequence, snapshots every 1 000.
    let (mut p, collected) = start(dir.path(), layout, 1_000);
    let info = p.recovery().clone();
    assert_eq!(info.snapshot_seq, None);
    assert_eq!(info.replayed, first.len() as u64);
    assert_eq!(info.next_seq, Seq(first.len() as u64 + 1));
    for (i, c) in rest.iter().enumerate() {
        assert_eq!(submit(&mut p, *c), Seq((first.len() + i + 1) as u64));
    }
    p.request_snapshot();
    submit(&mut p, cmds[0]); // a boundary after the request (R takes it in the split layout)
    let run2 = p.shutdown().unwrap();
    let mut all = cmds.clone();
    all.push(cmds[0]);
    let (_, full) = reference(&config(), RiskMode::On, 1, &all);
    assert_eq!(
        run2.state_hash,
        full.state_hash(),
        "{layout}: run 2 equals a full replay"
    );
    // How many were taken depends on how fast the disk syncs (a due snapshot is deferred,
    // never waited for, while the previous one is being written); at least the first one is.
    assert!(run2.snapshots.written >= 1, "{:?}", run2.snapshots);
    assert_eq!(run2.snapshots.written, run2.snapshots.taken);
    assert_eq!(run2.snapshots.errors, 0, "{:?}", run2.snapshots);
    assert!(run2.snapshots.pause_ns_max > 0);
    let dones = collected
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.kind == OutputKind::Done)
        .count();
    assert_eq!(dones, rest.len() + 1);

    // Run 3: the newest snapshot plus the journal's tail equals the full replay.
    let (p, _) = start(dir.path(), layout, 0);
    let info = p.recovery().clone();
    let snap = info.snapshot_seq.expect("a snapshot was written");
    assert_eq!(Some(snap), run2.snapshots.last_seq);
    assert!(snap.0 > first.len() as u64, "newest snapshot {snap}");
    assert_eq!(info.replayed, all.len() as u64 - snap.0);
    assert_eq!(info.next_seq, Seq(all.len() as u64 + 1));
    let run3 = p.shutdown().unwrap();
    assert_eq!(run3.commands, 0);
    assert_eq!(
        run3.state_hash,
        full.state_hash(),
        "{layout}: snapshot + tail = full replay"
    );
    // Engine time and trade ids (in the hash too) spelled out: the journaled stamps replay
    // exactly, through a snapshot and without one.
    assert_eq!(run3.engine.now_ns(), full.now_ns());
    let latest = (1..=all.len() as u64).map(common::stamp).max();
    assert_eq!(Some(full.now_ns()), latest);
    for s in 0..config().symbols.len() {
        let symbol = SymbolId(s as u16);
        assert_eq!(
            run3.engine.matcher().last_trade_id(symbol),
            full.matcher().last_trade_id(symbol)
        );
        assert_eq!(
            run2.engine.matcher().last_trade_id(symbol),
            full.matcher().last_trade_id(symbol)
        );
    }
    assert!(
        full.matcher().last_trade_id(SymbolId(0)).0 > 0,
        "trades happened"
    );
}

#[test]
fn fused_restart_continues_the_sequence_and_the_state() {
    restart_continues(Layout::Fused);
}

#[test]
fn split_restart_continues_the_sequence_and_the_state() {
    restart_continues(Layout::Split);
}

#[test]
fn j_rms_restart_continues_the_sequence_and_the_state() {
    restart_continues(Layout::JournalThenBusiness);
}

#[test]
fn inline_restart_continues_the_sequence_and_the_state() {
    restart_continues(Layout::Inline);
}

/// Every file of `dir` by name, with its bytes.
fn dir_bytes(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
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

#[test]
fn a_snapshot_beyond_the_journal_end_refuses_start_before_any_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = stream(5, 3_000);
    let (mut p, collected) = start(dir.path(), Layout::Fused, 0);
    for c in &cmds {
        p.submit(*c).unwrap();
    }
    // Every command processed, then the snapshot: it covers all 3 000 (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while collected
        .lock()
        .unwrap()
        .iter()
        .filter(|o| o.kind == OutputKind::Done)
        .count()
        < cmds.len()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "commands not processed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    p.request_snapshot();
    p.submit(cmds[0]).unwrap();
    let run1 = p.shutdown().unwrap();
    let snap = run1
        .snapshots
        .last_seq
        .expect("the requested snapshot was written");
    assert!(snap.0 >= 3_000, "snapshot at {snap}");
    let lost_from = 2_000;

    // The journal loses its records from `lost_from` on (zeros), and a torn record is left
    // where that record began: recovery would cut it — but the snapshot covers more than is
    // left.
    let mut reader = ringbook_journal::Reader::open(dir.path()).unwrap();
    let pos = loop {
        let (pos, r) = reader.next_positioned().unwrap().unwrap();
        if r.sequence == lost_from {
            break pos;
        }
    };
    drop(reader);
    let path = ringbook_journal::segment_path(dir.path(), pos.segment_index);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = pos.offset as usize;
    bytes[at..].fill(0);
    bytes[at + 8..at + 40].fill(0xab);
    std::fs::write(&path, &bytes).unwrap();
    for (index, p) in ringbook_journal::list(dir.path()).unwrap().segments {
        if index > pos.segment_index {
            std::fs::remove_file(p).unwrap();
        }
    }
    let before = dir_bytes(dir.path());
    let err = Pipeline::builder(&config())
        .journal(dir.path(), journal_config())
        .start()
        .expect_err("a snapshot beyond the journal's end refuses the start");
    let shown = err.to_string();
    assert!(
        shown.contains("snapshot covers up to sequence")
            && shown.contains(&format!("ends before sequence {lost_from}")),
        "{shown}"
    );
    assert_eq!(dir_bytes(dir.path()), before, "nothing was rewritten");
    // A replay past the end says the state ends with that snapshot, not that the journal's last
    // record is the snapshot's sequence (its records end before `lost_from`).
    let err = ringbook_engine::pipeline::replay_journal(
        &config(),
        ringbook_engine::RiskMode::On,
        dir.path(),
        1,
        Some(Seq(snap.0 + 1)),
    )
    .expect_err("past the end");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!(
            "its state ends at sequence {} with the newest snapshot, and no record follows it",
            snap.0
        )),
        "{shown}"
    );

    // Without that snapshot the start goes ahead: the torn record is cut and reported.
    std::fs::remove_file(ringbook_journal::snapshot_path(dir.path(), snap.0)).unwrap();
    let (p, _) = start(dir.path(), Layout::Fused, 0);
    let info = p.recovery().clone();
    assert_eq!(info.next_seq, Seq(lost_from));
    let cuts: Vec<_> = info.journal.cuts().cloned().collect();
    assert_eq!(cuts.len(), 1);
    assert_eq!((cuts[0].path.clone(), cuts[0].offset), (path, pos.offset));
    assert_eq!(cuts[0].bytes_discarded, 40); // through the last non-zero byte
    assert!(info.journal_truncated);
    assert!(info.skipped_snapshots.is_empty());
    p.shutdown().unwrap();
}
