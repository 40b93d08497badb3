//! `keep_snapshots(k)`: while the pipeline runs, only the newest `k` snapshots stay on disk,
//! the journal segments that only older snapshots needed are removed, and a restart on what is
//! left rebuilds exactly the state of a run that never pruned (the reference engine's).

mod common;

use common::{config, reference, stream, submit};
use ringbook_engine::pipeline::{Layout, Pipeline, WaitStrategy};
use ringbook_engine::prelude::*;
use ringbook_journal::{Durability, JournalConfig, Pretouch};

fn journal_config() -> JournalConfig {
    JournalConfig {
        segment_len_bytes: 64 << 10, // tiny: the run rolls through many segments
        payload_len_max_bytes: 4 << 10,
        durability: Durability::None,
        pretouch: Pretouch::Off,
        ..JournalConfig::default()
    }
}

#[test]
fn old_snapshots_and_segments_go_and_a_restart_still_recovers() {
    for layout in [Layout::Fused, Layout::Split, Layout::Inline] {
        let dir = tempfile::tempdir().unwrap();
        let cmds = stream(0x5eed, 20_000);
        let mut p = Pipeline::builder(&config())
            .layout(layout)
            .wait(WaitStrategy::Yield)
            .journal(dir.path(), journal_config())
            .snapshot_every(1_000)
            .keep_snapshots(2)
            .start()
            .unwrap();
        // After each due snapshot, slow down (a command per millisecond) until its file is
        // there: the snapshots land one by one instead of merging while the writer is busy.
        // (A snapshot due while the writer still holds the buffer is taken at a later command;
        // in the split layout R takes a boundary's snapshot when the next command arrives.)
        let mut awaited = None;
        for (i, cmd) in cmds.iter().enumerate() {
            submit(&mut p, *cmd);
            let seq = i as u64 + 1;
            if seq.is_multiple_of(1_000) {
                awaited = Some(seq);
            }
            if let Some(due) = awaited {
                let listing = ringbook_journal::list(dir.path()).unwrap();
                if listing.snapshots.last().is_some_and(|s| s.0 >= due) {
                    awaited = None;
                } else {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        }
        let report = p.shutdown().unwrap();
        let (_, engine) = reference(&config(), RiskMode::On, 1, &cmds);
        assert_eq!(report.state_hash, engine.state_hash(), "{layout}");
        assert!(
            report.snapshots.written >= 3,
            "{layout}: {:?}",
            report.snapshots
        );
        assert_eq!(
            report.snapshots.errors, 0,
            "{layout}: {:?}",
            report.snapshots
        );
        assert_eq!(
            report.snapshots.pruned,
            report.snapshots.written - 2,
            "{layout}: every snapshot but the newest two removed: {:?}",
            report.snapshots
        );

        let listing = ringbook_journal::list(dir.path()).unwrap();
        assert_eq!(listing.snapshots.len(), 2, "{layout}: {listing:?}");
        let oldest_kept = listing.snapshots[0].0;
        // Segments were removed from the front (the journal starts later than 1), but every
        // record after the oldest kept snapshot is still there.
        let first_segment = listing.segments.first().expect("segments remain").0;
        assert!(first_segment > 1, "{layout}: nothing pruned: {listing:?}");
        let (_, replay) = ringbook_engine::pipeline::replay_journal(
            &config(),
            RiskMode::On,
            dir.path(),
            1,
            Some(Seq(oldest_kept)),
        )
        .unwrap();
        assert_eq!(replay.snapshot_seq, Some(Seq(oldest_kept)), "{layout}");

        // A restart recovers from the newest snapshot plus the journal after it.
        let p = Pipeline::builder(&config())
            .layout(layout)
            .journal(dir.path(), journal_config())
            .start()
            .unwrap();
        assert_eq!(
            p.recovery().next_seq,
            Seq(cmds.len() as u64 + 1),
            "{layout}"
        );
        assert!(p.recovery().snapshot_seq.is_some(), "{layout}");
        assert_eq!(
            p.recovered_state_hash(),
            engine.state_hash(),
            "{layout}: recovered state"
        );
        p.shutdown().unwrap();
    }
}
