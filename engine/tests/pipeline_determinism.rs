//! Every layout × transport × risk mode gives exactly the single-threaded engine's events,
//! in the same order, and the same final `state_hash`.

mod common;

use common::{collector, config, process_stamped, reference, stream, submit};
use ringbook_engine::pipeline::{Layout, Pipeline, Transport, WaitStrategy};
use ringbook_engine::prelude::*;

fn run(layout: Layout, transport: Transport, risk: RiskMode, cmds: &[Command]) {
    run_with(layout, transport, risk, false, cmds);
}

fn run_with(layout: Layout, transport: Transport, risk: RiskMode, inline: bool, cmds: &[Command]) {
    let config = config();
    let (expected, engine) = reference(&config, risk, 1, cmds);
    let (collected, handler) = collector();
    let mut pipeline = Pipeline::builder(&config)
        .layout(layout)
        .transport(transport)
        .risk(risk)
        .wait(WaitStrategy::Yield)
        // Small rings: back-pressure between every pair of stages is exercised too.
        .ring_size(64)
        .outbound_ring_size(128)
        .inline_output(inline)
        .on_output(handler)
        .start()
        .unwrap();
    for (i, cmd) in cmds.iter().enumerate() {
        assert_eq!(submit(&mut pipeline, *cmd), Seq(1 + i as u64));
    }
    let report = pipeline.shutdown().unwrap();
    let got = collected.lock().unwrap();
    assert_eq!(
        got.len(),
        expected.len(),
        "{layout} {transport} {risk:?}: output count"
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!(
            "{layout} {transport} {risk:?}: output {i} differs:\n  pipeline: {:?}\n  engine:   {:?}",
            got[i], expected[i]
        );
    }
    assert_eq!(report.commands, cmds.len() as u64);
    assert_eq!(report.last_seq, Some(Seq(cmds.len() as u64)));
    assert_eq!(
        report.state_hash,
        engine.state_hash(),
        "{layout} {transport} {risk:?}"
    );
    if risk == RiskMode::On {
        report.engine.accounts().check_conservation().unwrap();
    }
}

fn all_layouts(transport: Transport, risk: RiskMode) {
    let cmds = stream(0xdec0de ^ risk as u64, 20_000);
    for layout in Layout::ALL {
        run(layout, transport, risk, &cmds);
    }
}

#[test]
fn inline_output_matches_the_engine_in_every_layout() {
    // The handler runs on the settlement thread; no outbound thread exists.
    let cmds = stream(0x1_11e, 5_000);
    for layout in Layout::ALL {
        for transport in [Transport::Disruptor, Transport::Crossbeam] {
            run_with(layout, transport, RiskMode::On, true, &cmds);
        }
    }
}

#[test]
fn inline_layout_matches_the_engine() {
    // No pipeline thread: the submitting thread journals and processes each command.
    for risk in [RiskMode::On, RiskMode::Off] {
        let cmds = stream(0x111e ^ risk as u64, 20_000);
        run(Layout::Inline, Transport::Disruptor, risk, &cmds);
    }
}

#[test]
fn disruptor_risk_on_matches_the_engine() {
    all_layouts(Transport::Disruptor, RiskMode::On);
}

#[test]
fn disruptor_risk_off_matches_the_engine() {
    all_layouts(Transport::Disruptor, RiskMode::Off);
}

#[test]
fn crossbeam_risk_on_matches_the_engine() {
    all_layouts(Transport::Crossbeam, RiskMode::On);
}

#[test]
fn crossbeam_risk_off_matches_the_engine() {
    all_layouts(Transport::Crossbeam, RiskMode::Off);
}

#[test]
fn an_iceberg_swept_lot_by_lot_overflows_no_ring() {
    // One command, more events than any ring holds: J-first means they may all stream out.
    let config = config();
    let aapl = config.symbol_id("AAPL-USD").unwrap();
    let (shares, cents) = (
        config.currency_id("AAPL").unwrap(),
        config.currency_id("USD").unwrap(),
    );
    let mut iceberg = NewOrder::limit(
        UserId(1),
        aapl,
        ClientOrderId(1),
        Side::Sell,
        Price(19_000),
        Qty(500),
    );
    iceberg.display_qty = Qty(1);
    let cmds = [
        Command::Deposit {
            user: UserId(1),
            currency: shares,
            amount: 1_000,
        },
        Command::Deposit {
            user: UserId(2),
            currency: cents,
            amount: 1 << 40,
        },
        Command::NewOrder(iceberg),
        Command::NewOrder(NewOrder::limit(
            UserId(2),
            aapl,
            ClientOrderId(1),
            Side::Buy,
            Price(19_000),
            Qty(500),
        )),
    ];
    for layout in Layout::ALL {
        for transport in [Transport::Disruptor, Transport::Crossbeam] {
            run(layout, transport, RiskMode::On, &cmds);
        }
    }
}

#[test]
fn phased_wait_matches_the_engine_across_idle_spells() {
    // Between chunks the threads go idle long enough to park; the next chunk must wake each
    // of them (inbound, the stages after J, the M → S ring, the outbound thread).
    let config = config();
    let cmds = stream(0xa5ed, 6_000);
    let (expected, engine) = reference(&config, RiskMode::On, 1, &cmds);
    for transport in [Transport::Disruptor, Transport::Crossbeam] {
        for layout in Layout::ALL {
            let (collected, handler) = collector();
            let mut pipeline = Pipeline::builder(&config)
                .layout(layout)
                .transport(transport)
                .wait(WaitStrategy::Phased)
                .ring_size(64)
                .outbound_ring_size(128)
                .on_output(handler)
                .start()
                .unwrap();
            for chunk in cmds.chunks(1_000) {
                let parks = pipeline.parks();
                for cmd in chunk {
                    submit(&mut pipeline, *cmd);
                }
                // Idle until some thread has parked again (bounded by a count, not a speed).
                for _ in 0..2_000 {
                    if pipeline.parks() > parks {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            assert!(pipeline.parks() > 0, "{layout} {transport}: nothing parked");
            let report = pipeline.shutdown().unwrap();
            assert_eq!(
                *collected.lock().unwrap(),
                expected,
                "{layout} {transport}: outputs"
            );
            assert_eq!(
                report.state_hash,
                engine.state_hash(),
                "{layout} {transport}"
            );
        }
    }
}

#[test]
fn an_idle_parked_pipeline_shuts_down() {
    // Nothing ever submitted: every thread parks, and shutdown must still wake and join them.
    for layout in Layout::ALL {
        let pipeline = Pipeline::builder(&config())
            .layout(layout)
            .wait(WaitStrategy::Phased)
            .start()
            .unwrap();
        for _ in 0..2_000 {
            if pipeline.parks() > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(pipeline.parks() > 0, "{layout}: nothing parked");
        let report = pipeline.shutdown().unwrap();
        assert_eq!(report.commands, 0);
    }
}

/// `Engine::prefetch` is a hint: an engine told every next command (as the pipeline's batch
/// loop tells it), and also commands naming ids, users and slots that exist nowhere, gives
/// exactly the events and `state_hash` of one told nothing.
#[test]
fn prefetching_changes_no_event_and_no_state() {
    let config = config();
    let cmds = stream(0x9e7c4, 20_000);
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::CancelOrder { .. } | Command::AmendOrder { .. }))
            && cmds
                .iter()
                .any(|c| matches!(c, Command::Cancel { .. } | Command::Amend { .. })),
        "the stream names orders both ways"
    );
    let hostile = [
        Command::CancelOrder {
            user: UserId(u32::MAX),
            symbol: SymbolId(u16::MAX),
            order_id: OrderId(u64::MAX),
        },
        Command::AmendOrder {
            user: UserId(0),
            symbol: SymbolId(0),
            order_id: OrderId(0),
            price: Price(1),
            qty: Qty(1),
        },
        Command::Cancel {
            user: UserId(u32::MAX),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(u64::MAX),
        },
        Command::NewOrder(NewOrder::limit(
            UserId(u32::MAX),
            SymbolId(u16::MAX),
            ClientOrderId(1),
            Side::Buy,
            Price(i64::MAX),
            Qty(u64::MAX),
        )),
    ];
    for risk in [RiskMode::On, RiskMode::Off] {
        let (expected, plain) = reference(&config, risk, 1, &cmds);
        let mut told = Engine::with_risk(&config, risk).unwrap();
        let mut got = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            if let Some(next) = cmds.get(i + 1) {
                told.prefetch(next);
            }
            for h in &hostile {
                told.prefetch(h);
            }
            process_stamped(&mut told, Seq(1 + i as u64), cmd, &mut got);
        }
        assert!(got == expected, "{risk:?}: the events differ");
        assert_eq!(told.state_hash(), plain.state_hash(), "{risk:?}");
    }
}
