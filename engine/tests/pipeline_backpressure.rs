//! A full ring hands the command back; nothing is lost; everything is processed afterwards.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{collector, config, reference, stamp, stream, submit};
use ringbook_engine::pipeline::{Layout, Pipeline, SubmitError, Transport, WaitStrategy};
use ringbook_engine::prelude::*;

/// Opens the gate when dropped, so a failing assertion fails the test instead of leaving the
/// pipeline's handler parked forever while `Pipeline::drop` joins it.
struct OpenOnDrop(Arc<AtomicBool>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

fn stalled(layout: Layout, transport: Transport) {
    let config = config();
    let cmds = stream(7, 2_000);
    let released = Arc::new(AtomicBool::new(false));
    let _open_on_unwind = OpenOnDrop(Arc::clone(&released));
    let (collected, mut keep) = collector();
    let gate = Arc::clone(&released);
    let mut pipeline = Pipeline::builder(&config)
        .layout(layout)
        .transport(transport)
        .wait(WaitStrategy::Yield)
        .ring_size(2)
        .outbound_ring_size(2)
        .on_output(move |o| {
            while !gate.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            keep(o)
        })
        .start()
        .unwrap();

    // The handler holds the first output: every queue fills, and then the inbound ring.
    let mut next = 0;
    let refused = loop {
        assert!(next < cmds.len(), "the rings never filled");
        match pipeline.try_submit_at(cmds[next], stamp(next as u64 + 1)) {
            Ok(seq) => {
                assert_eq!(seq, Seq(next as u64 + 1));
                next += 1;
            }
            Err(SubmitError::Full(back)) => break back,
            Err(e) => panic!("{layout} {transport}: {e}"),
        }
    };
    assert_eq!(
        refused, cmds[next],
        "the refused command comes back unchanged"
    );
    // Not numbered. (A second try is not asserted to fail: until the stage thread has blocked
    // on the full outbound queue it may still take one more command off the inbound queue.)
    assert_eq!(pipeline.next_seq(), Seq(next as u64 + 1));

    released.store(true, Ordering::Release);
    for cmd in &cmds[next..] {
        submit(&mut pipeline, *cmd);
    }
    let report = pipeline.shutdown().unwrap();
    let (expected, engine) = reference(&config, RiskMode::On, 1, &cmds);
    assert_eq!(*collected.lock().unwrap(), expected, "{layout} {transport}");
    assert_eq!(report.commands, cmds.len() as u64);
    assert_eq!(report.state_hash, engine.state_hash());
}

#[test]
fn a_stalled_handler_fills_the_rings_and_loses_nothing() {
    for layout in Layout::ALL {
        stalled(layout, Transport::Disruptor);
        stalled(layout, Transport::Crossbeam);
    }
}
