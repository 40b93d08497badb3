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
