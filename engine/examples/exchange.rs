// cargo run -p ringbook-engine --example exchange
//! An exchange in twenty lines: a journaled, recoverable pipeline; orders in, events out.
use ringbook_engine::pipeline::{Layout, OutputKind, Pipeline, WaitStrategy};
use ringbook_engine::prelude::*;

#[rustfmt::skip] // kept to twenty lines
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::default();
    let (btc_krw, btc, krw) = (config.symbol_id("BTC-KRW").unwrap(), config.currency_id("BTC").unwrap(), config.currency_id("KRW").unwrap());
    let journal = std::env::temp_dir().join("ringbook-example-journal"); // run it twice: it recovers
    let mut exchange = Pipeline::builder(&config)
        .layout(Layout::Fused) // "J|RMS" or "split" on a bigger machine
        .wait(WaitStrategy::Yield)
        .journal(&journal, ringbook_journal::JournalConfig::default())
        .snapshot_every(10_000)
        .on_output(|out| if let OutputKind::Event(event) = &out.kind { println!("#{} {event:?}", out.seq) })
        .start()?;
    println!("recovered: {:?}", exchange.recovery());
    exchange.submit(Command::Deposit { user: UserId(1), currency: btc, amount: 10_000_000_000 })?;
    exchange.submit(Command::Deposit { user: UserId(2), currency: krw, amount: 10_000_000 })?;
    exchange.submit(Command::NewOrder(NewOrder::limit(UserId(1), btc_krw, ClientOrderId(1), Side::Sell, Price(15_000), Qty(5))))?;
    exchange.submit(Command::NewOrder(NewOrder::limit(UserId(2), btc_krw, ClientOrderId(1), Side::Buy, Price(15_100), Qty(3))))?;
    let report = exchange.shutdown()?; // drains, syncs the journal, joins every thread
    println!("{} commands, state {}", report.commands, report.state_hash);
    Ok(())
}
