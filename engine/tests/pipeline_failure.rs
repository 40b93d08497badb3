//! A dead pipeline thread is reported, never hidden: after a stage or the output handler
//! panics (injected with `PipelineBuilder::inject_panic`), `try_submit` and `submit` hand the
//! command back as `SubmitError::Failed` (never `Full`, never a sequence), `has_failed` says
//! so while idle, and `shutdown` names the thread and the panic. Every layout, both
//! transports, the output handler on its own thread and inline.
//!
//! Every wait is bounded by a count, not by wall-clock speed.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{config, stream};
use ringbook_engine::pipeline::{
    FaultPoint, Layout, Pipeline, PipelineError, SubmitError, Transport, WaitStrategy,
};
use ringbook_engine::prelude::*;

const AT: u64 = 50;

/// Submits until the pipeline refuses with `Failed`; returns how many were numbered.
fn submit_until_failed(p: &mut Pipeline, cmds: &[Command]) -> u64 {
    let mut numbered = 0;
    // Bounded: the failure is seen at the latest when the inbound ring (64) has filled.
    for _ in 0..10_000_000u64 {
        let cmd = cmds[numbered as usize % cmds.len()];
        match p.try_submit(cmd) {
            Ok(seq) => {
                numbered += 1;
                assert_eq!(seq, Seq(numbered));
            }
            Err(SubmitError::Full(back)) => {
                assert_eq!(back, cmd);
                std::thread::yield_now();
            }
            Err(SubmitError::Failed(back)) => {
                assert_eq!(back, cmd, "the refused command comes back unchanged");
                return numbered;
            }
        }
    }
    panic!("the pipeline never reported its failure");
}

fn fails_and_says_why(
    layout: Layout,
    transport: Transport,
    wait: WaitStrategy,
    inline_output: bool,
    point: FaultPoint,
    thread: &str,
) {
    let what = format!("{layout} {transport} {wait:?} inline_output={inline_output} {point:?}");
    let cmds = stream(0xfa11, 400);
    let mut p = Pipeline::builder(&config())
        .layout(layout)
        .transport(transport)
        .wait(wait)
        .inline_output(inline_output)
        .ring_size(64)
        .outbound_ring_size(128)
        .inject_panic(point, Seq(AT))
        .start()
        .unwrap();
    let numbered = submit_until_failed(&mut p, &cmds);
    assert!(
        numbered >= AT,
        "{what}: {numbered} numbered before the failure"
    );
    assert!(p.has_failed(), "{what}");
    let next = p.next_seq();
    // Once failed, always failed, and nothing is numbered.
    assert!(matches!(p.submit(cmds[0]), Err(SubmitError::Failed(c)) if c == cmds[0]));
    assert!(matches!(p.try_submit(cmds[1]), Err(SubmitError::Failed(_))));
    assert_eq!(p.next_seq(), next, "{what}");
    match p.shutdown() {
        Err(PipelineError::StagePanicked { thread: t, message }) => {
            assert_eq!(t, thread, "{what}: {message}");
            assert!(
                message.contains(&format!("panics at command {AT}")),
                "{what}: the root cause, not a cascade: {message}"
            );
        }
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn a_business_stage_panic_fails_every_layout() {
    for transport in [Transport::Disruptor, Transport::Crossbeam] {
        for wait in [WaitStrategy::Yield, WaitStrategy::Phased] {
            for (layout, thread) in [
                (Layout::Fused, "JRMS"),
                (Layout::JournalThenBusiness, "RMS"),
                (Layout::Split, "R"),
            ] {
                fails_and_says_why(layout, transport, wait, false, FaultPoint::Business, thread);
            }
        }
    }
}

#[test]
fn an_output_handler_panic_fails_every_layout() {
    for transport in [Transport::Disruptor, Transport::Crossbeam] {
        for wait in [WaitStrategy::Yield, WaitStrategy::Phased] {
            for (layout, last) in [
                (Layout::Fused, "JRMS"),
                (Layout::JournalThenBusiness, "RMS"),
                (Layout::Split, "S"),
            ] {
                fails_and_says_why(layout, transport, wait, false, FaultPoint::Output, "out");
                // With the handler on the last stage's thread, that thread dies.
                fails_and_says_why(layout, transport, wait, true, FaultPoint::Output, last);
            }
        }
    }
}

#[test]
fn an_idle_pipeline_reports_a_failure_without_a_submit() {
    // The output thread dies on the last command's Done; nothing is submitted after it.
    for wait in [WaitStrategy::Yield, WaitStrategy::Phased] {
        let cmds = stream(7, 20);
        let mut p = Pipeline::builder(&config())
            .layout(Layout::Fused)
            .wait(wait)
            .inject_panic(FaultPoint::Output, Seq(cmds.len() as u64))
            .start()
            .unwrap();
        for cmd in &cmds {
            p.submit(*cmd).unwrap();
        }
        let mut looks = 0u64;
        while !p.has_failed() {
            looks += 1;
            assert!(looks < 100_000_000, "{wait:?}: the failure never showed");
            std::thread::yield_now();
        }
        assert!(matches!(
            p.shutdown(),
            Err(PipelineError::StagePanicked { thread, .. }) if thread == "out"
        ));
    }
}

#[test]
fn the_inline_layout_panics_on_the_callers_thread() {
    let cmds = stream(3, 20);
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::builder(&config())
        .layout(Layout::Inline)
        .journal(dir.path(), ringbook_journal::JournalConfig::default())
        .inject_panic(FaultPoint::Business, Seq(5))
        .start()
        .unwrap();
    for cmd in &cmds[..4] {
        p.try_submit(*cmd).unwrap();
    }
    let caught = catch_unwind(AssertUnwindSafe(|| p.try_submit(cmds[4])));
    let payload = caught.expect_err("the stage runs on this thread: its panic is ours");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("panics at command 5"), "{message}");
    // Failed from then on, as a threaded pipeline is when a stage dies: the next submit hands
    // its command back (it used to panic on "sequence 5 is not the next one", or without a
    // journal run again under seq 5), and shutdown names the panic rather than reporting a
    // state that the journal contradicts (a red-team finding).
    assert!(p.has_failed());
    let back = p.try_submit(cmds[5]).unwrap_err();
    assert!(back.is_failed(), "{back:?}");
    assert_eq!(back.into_inner(), cmds[5]);
    match p.shutdown() {
        Err(PipelineError::StagePanicked { thread, message }) => {
            assert_eq!(thread, "inline");
            assert!(message.contains("command 5 panicked"), "{message}");
        }
        other => panic!("expected StagePanicked, got {other:?}"),
    }
    // The journal holds the five commands (the fifth was journaled before risk saw it).
    let (_, replay) =
        ringbook_engine::pipeline::replay_journal(&config(), RiskMode::On, dir.path(), 1, None)
            .unwrap();
    assert_eq!(replay.last_seq, Some(Seq(5)));
}
