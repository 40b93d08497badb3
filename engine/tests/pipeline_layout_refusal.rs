//! A layout that would busy-spin more threads than the machine has cores is refused at start.

use ringbook_engine::pipeline::{check_spinning, Layout, Pipeline, PipelineError, WaitStrategy};
use ringbook_engine::prelude::*;

#[test]
fn too_many_spinning_threads_are_refused_with_the_counts() {
    // J, R, M, S and the outbound thread, all spinning, on 4 cores.
    let spin = WaitStrategy::BusySpin;
    let err = check_spinning(Layout::Split, spin, spin, 4).unwrap_err();
    let PipelineError::TooManySpinningThreads {
        spinning, cores, ..
    } = err
    else {
        panic!("wrong error {err:?}");
    };
    assert_eq!((spinning, cores), (5, 4));
    let message = err.to_string();
    assert!(message.contains("5 threads on 4 cores"), "{message}");
    // Fits, or does not spin at all.
    let (hint, yielding) = (WaitStrategy::BusySpinHint, WaitStrategy::Yield);
    check_spinning(Layout::Split, hint, hint, 5).unwrap();
    check_spinning(Layout::Fused, spin, spin, 2).unwrap();
    check_spinning(Layout::Split, yielding, yielding, 1).unwrap();
    // The outbound thread counts only when its own strategy spins.
    check_spinning(Layout::Split, spin, yielding, 4).unwrap();
    assert!(check_spinning(Layout::Fused, spin, spin, 1).is_err());
    check_spinning(Layout::Fused, spin, yielding, 1).unwrap();
}

#[test]
fn start_refuses_on_this_machine() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 5 {
        eprintln!("{cores} cores: a split busy-spin layout fits here; nothing to refuse");
        return;
    }
    let err = Pipeline::builder(&Config::default())
        .layout(Layout::Split)
        .wait(WaitStrategy::BusySpin)
        .start()
        .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::TooManySpinningThreads { spinning: 5, .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("split"), "{err}");
}

#[test]
fn bad_ring_sizes_and_cores_are_refused() {
    let err = Pipeline::builder(&Config::default())
        .ring_size(100)
        .start()
        .unwrap_err();
    assert!(
        matches!(err, PipelineError::RingSize { slots: 100, .. }),
        "{err:?}"
    );
    let err = Pipeline::builder(&Config::default())
        .cores(vec![0])
        .start()
        .unwrap_err();
    assert!(matches!(err, PipelineError::Cores(_)), "{err:?}");
}

/// What a careless embedder could set and the pipeline used to take, then abort, hang or panic
/// on (a red-team pass at the embedding API): each is refused at `start()`, saying what to
/// change, and nothing is created.
#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    use ringbook_engine::pipeline::{RING_SLOTS_MAX, SLEEP_MAX};
    use ringbook_journal::{ConfigError as JournalConfigError, JournalConfig, JournalError};
    let start = |b: ringbook_engine::pipeline::PipelineBuilder| b.start().unwrap_err();
    // A ring past the bound (one within it that this process has no memory for is refused
    // too: `topology.rs`, `rings_beyond_the_memory_available_are_refused`).
    let err = start(Pipeline::builder(&Config::default()).ring_size(RING_SLOTS_MAX * 2));
    assert!(
        matches!(
            err,
            PipelineError::RingSize {
                ring: "inbound",
                ..
            }
        ),
        "{err:?}"
    );
    // A sleep so long that shutdown would wait for it.
    let err = start(
        Pipeline::builder(&Config::default()).wait(WaitStrategy::Sleep(std::time::Duration::MAX)),
    );
    assert!(matches!(err, PipelineError::SleepTooLong { .. }), "{err:?}");
    let err = start(
        Pipeline::builder(&Config::default()).output_wait(WaitStrategy::Sleep(SLEEP_MAX * 2)),
    );
    assert!(matches!(err, PipelineError::SleepTooLong { .. }), "{err:?}");
    // Snapshots without a journal to write them beside.
    let err = start(Pipeline::builder(&Config::default()).snapshot_every(1));
    assert!(
        matches!(err, PipelineError::Config(ConfigError::Invalid(_))),
        "{err:?}"
    );
    let err = start(Pipeline::builder(&Config::default()).keep_snapshots(1));
    assert!(err.to_string().contains("need a journal"), "{err}");
    // A journal that cannot hold a command, or whose sequences would start at the "none"
    // sentinel or wrap.
    let dir = tempfile::tempdir().unwrap();
    let journal = |jc: JournalConfig| Pipeline::builder(&Config::default()).journal(dir.path(), jc);
    let err = start(journal(JournalConfig {
        payload_len_max_bytes: 0,
        ..JournalConfig::default()
    }));
    assert!(err.to_string().contains("payload_len_max_bytes 0"), "{err}");
    for first_sequence in [0, u64::MAX] {
        let err = start(journal(JournalConfig {
            first_sequence,
            ..JournalConfig::default()
        }));
        assert!(
            matches!(
                err,
                PipelineError::Journal(JournalError::Config(
                    JournalConfigError::FirstSequence { .. }
                ))
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

/// `replay_journal` with a first sequence of 0 (it wrapped), or asked for a state before the
/// first record it was told of (it answered "nothing replayed, Ok"): errors.
#[test]
fn a_replay_from_sequence_0_or_to_before_its_start_is_refused() {
    use ringbook_engine::pipeline::replay_journal;
    use ringbook_journal::JournalConfig;
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::builder(&Config::default())
        .journal(dir.path(), JournalConfig::default())
        .start()
        .unwrap();
    for i in 0..6 {
        p.submit(Command::Deposit {
            user: UserId(1),
            currency: CurrencyId(0),
            amount: 10 + i,
        })
        .unwrap();
    }
    p.shutdown().unwrap();
    let config = Config::default();
    let err = replay_journal(&config, RiskMode::On, dir.path(), 0, None).unwrap_err();
    assert!(matches!(err, PipelineError::Journal(_)), "{err:?}");
    let err = replay_journal(&config, RiskMode::On, dir.path(), 5, Some(Seq(3))).unwrap_err();
    assert!(
        err.to_string()
            .contains("before the journal's first record"),
        "{err}"
    );
    let (_, info) = replay_journal(&config, RiskMode::On, dir.path(), 1, Some(Seq(3))).unwrap();
    assert_eq!((info.replayed, info.last_seq), (3, Some(Seq(3))));
}
