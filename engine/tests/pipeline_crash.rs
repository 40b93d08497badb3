//! SIGKILL mid-run: the journal recovers to a state equal to a single-threaded replay of it,
//! and every command acknowledged (a `Done` output) before the kill is in it.
//!
//! The child is this test binary again, run with `RINGBOOK_CRASH_CHILD_DIR` set: it runs a
//! journaled pipeline over an endless command stream and prints `ack <seq>` for each `Done`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command as Process, Stdio};

use common::{config, Workload, USERS};
use ringbook_engine::codec;
use ringbook_engine::pipeline::{
    Layout, OutputKind, Pipeline, WaitStrategy, RECORD_TYPE_COMMAND_V1,
};
use ringbook_engine::prelude::*;
use ringbook_journal::{Durability, JournalConfig, Pretouch, Reader};

const CHILD_ENV: &str = "RINGBOOK_CRASH_CHILD_DIR";
const ACKS_BEFORE_KILL: u64 = 3_000;

fn journal_config() -> JournalConfig {
    JournalConfig {
        segment_len_bytes: 1 << 20,
        durability: Durability::None, // in the page cache: survives the process, not the box
        pretouch: Pretouch::Off,
        ..JournalConfig::default()
    }
}

/// The child: runs until killed. Without the variable (a normal test run) it does nothing.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let layout: Layout = std::env::var("RINGBOOK_CRASH_LAYOUT")
        .unwrap()
        .parse()
        .unwrap();
    let config = config();
    let mut pipeline = Pipeline::builder(&config)
        .layout(layout)
        .wait(WaitStrategy::Yield)
        .journal(dir, journal_config())
        .snapshot_every(1_000)
        .on_output(|o| {
            if o.kind == OutputKind::Done {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ack {}", o.seq);
                let _ = out.flush();
            }
        })
        .start()
        .unwrap();
    for user in 0..USERS {
        for currency in 0..config.currencies.len() {
            pipeline
                .submit(Command::Deposit {
                    user: UserId(user as u32),
                    currency: CurrencyId(currency as u16),
                    amount: 1 << 50,
                })
                .unwrap();
        }
    }
    let mut workload = Workload::new(99);
    loop {
        pipeline.submit(workload.command()).unwrap();
    }
}

/// `ack <seq>` anywhere in a line (the harness may have printed `test crash_child ... `
/// before the first one); a line cut short by the kill is ignored.
fn ack(line: &str) -> Option<u64> {
    line.find("ack ").and_then(|at| line[at + 4..].parse().ok())
}

fn killed_mid_run(layout: Layout) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .env("RINGBOOK_CRASH_LAYOUT", layout.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while (acked.len() as u64) < ACKS_BEFORE_KILL {
        let line = lines.next().expect("the child stopped early").unwrap();
        if let Some(seq) = ack(&line) {
            acked.push(seq);
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Acknowledgements already in the pipe were given before the kill too.
    for line in lines.map_while(Result::ok) {
        if let Some(seq) = ack(&line) {
            acked.push(seq);
        }
    }

    // Recover in-process through the pipeline (snapshot + tail), and shut down.
    let config = config();
    let pipeline = Pipeline::builder(&config)
        .layout(layout)
        .wait(WaitStrategy::Yield)
        .journal(dir.path(), journal_config())
        .start()
        .unwrap();
    let next = pipeline.recovery().next_seq;
    let recovered = pipeline.shutdown().unwrap();

    // A single-threaded replay of the whole journal.
    let mut engine = Engine::new(&config).unwrap();
    let mut reader = Reader::open(dir.path()).unwrap();
    let mut last = 0;
    while let Some(record) = reader.next().unwrap() {
        assert_eq!(record.sequence, last + 1, "contiguous");
        assert_eq!(record.record_type, RECORD_TYPE_COMMAND_V1);
        let cmd = codec::decode(record.payload).unwrap();
        engine.process_at(record.timestamp_ns, &cmd, &mut |_: &Event| {});
        last = record.sequence;
    }
    assert_eq!(next, Seq(last + 1));
    assert_eq!(
        recovered.state_hash,
        engine.state_hash(),
        "{layout}: recovery = replay"
    );
    for (i, seq) in acked.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "acks come in order, one per command");
    }
    let acked_max = acked.len() as u64;
    assert!(acked_max >= ACKS_BEFORE_KILL);
    assert!(
        acked_max <= last,
        "{layout}: command {acked_max} was acknowledged but the journal ends at {last}"
    );
}

#[test]
fn fused_pipeline_killed_mid_run_recovers_to_its_journal() {
    killed_mid_run(Layout::Fused);
}

#[test]
fn split_pipeline_killed_mid_run_recovers_to_its_journal() {
    killed_mid_run(Layout::Split);
}

#[test]
fn inline_pipeline_killed_mid_run_recovers_to_its_journal() {
    killed_mid_run(Layout::Inline);
}
