//! `ringbook scenario` end to end: the real binary on scripts (inline through stdin, or files in
//! tests/scenarios/ and docs/examples/).
//!
//! Every expected line is worked out by hand from docs/matching.md and SPEC §9, never captured
//! from the binary. Default config, BTC-KRW: tick_size 1, maker 5 bps, taker 10 bps, so a trade
//! of `q` lots at price `p` has maker fee `ceil(p·q·5/10000)` and taker fee `ceil(p·q·10/10000)`;
//! the arithmetic is written beside each trade.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ringbook_engine::prelude::{
    ClientOrderId, Config, Engine, Event, NewOrder, Price, Qty, Side, SymbolId, UserId,
};

const BIN: &str = env!("CARGO_BIN_EXE_ringbook");

// ---------------------------------------------------------------- running the binary

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs `ringbook ARGS` with `stdin` as its standard input.
fn ringbook(args: &[&str], stdin: impl AsRef<[u8]>) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringbook");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.as_ref().to_vec();
    // A writer thread, so a large output can never dead-lock against our input. The child may
    // exit without reading (bad arguments): a broken pipe here is fine.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&text);
    });
    let out = child.wait_with_output().expect("run ringbook");
    writer.join().unwrap();
    Run {
        status: out.status.code().expect("exited normally"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `ringbook scenario --no-risk -` on `script`, expecting a clean run.
fn scenario(script: &str) -> Vec<String> {
    clean(ringbook(&["scenario", "--no-risk", "-"], script))
}

/// `ringbook scenario --no-risk --final -` on `script`, expecting a clean run.
fn scenario_final(script: &str) -> Vec<String> {
    clean(ringbook(&["scenario", "--no-risk", "--final", "-"], script))
}

fn clean(run: Run) -> Vec<String> {
    assert_eq!(
        run.status, 0,
        "exit status; stderr:\n{}\nstdout:\n{}",
        run.stderr, run.stdout
    );
    assert_eq!(run.stderr, "", "nothing on stderr");
    run.lines().into_iter().map(str::to_owned).collect()
}

fn assert_lines(actual: &[String], expected: &[String]) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "output line {}", i + 1);
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "number of output lines; got:\n{}",
        actual.join("\n")
    );
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    manifest_dir()
        .join("tests/scenarios")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn demo_script() -> String {
    manifest_dir()
        .join("../docs/examples/demo.script")
        .to_str()
        .unwrap()
        .to_owned()
}

/// A fresh directory for files one test writes.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ringbook-scenario-test-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---------------------------------------------------------------- expected lines

const BTC: &str = "BTC-KRW";

#[allow(clippy::too_many_arguments)]
fn accepted(
    user: u32,
    symbol: &str,
    coid: u64,
    oid: u64,
    side: &str,
    ty: &str,
    price: i64,
    qty: u64,
) -> String {
    format!(
        r#"{{"event":"accepted","user":{user},"symbol":"{symbol}","client_order_id":{coid},"order_id":{oid},"side":"{side}","type":"{ty}","price":{price},"qty":{qty}}}"#
    )
}

/// A plain BTC-KRW limit order's acceptance.
fn acc(user: u32, coid: u64, oid: u64, side: &str, price: i64, qty: u64) -> String {
    accepted(user, BTC, coid, oid, side, "LIMIT", price, qty)
}

fn rejected(user: u32, coid: u64, code: u16, reason: &str) -> String {
    format!(
        r#"{{"event":"rejected","user":{user},"client_order_id":{coid},"code":{code},"reason":"{reason}"}}"#
    )
}

/// One side of a trade: user, client order id, order id, leaves after the fill, fee.
struct F(u32, u64, u64, u64, u64);

fn trade(symbol: &str, price: i64, qty: u64, taker_side: &str, maker: F, taker: F) -> String {
    format!(
        r#"{{"event":"trade","symbol":"{symbol}","price":{price},"qty":{qty},"maker_user":{},"maker_client_order_id":{},"taker_user":{},"taker_client_order_id":{},"maker_fee":{},"taker_fee":{},"maker_order_id":{},"taker_order_id":{},"taker_side":"{taker_side}","maker_leaves":{},"taker_leaves":{}}}"#,
        maker.0, maker.1, taker.0, taker.1, maker.4, taker.4, maker.2, taker.2, maker.3, taker.3
    )
}

#[allow(clippy::too_many_arguments)]
fn cancelled(
    user: u32,
    coid: u64,
    qty: u64,
    reason: &str,
    symbol: &str,
    oid: u64,
    leaves: u64,
) -> String {
    format!(
        r#"{{"event":"cancelled","user":{user},"client_order_id":{coid},"qty":{qty},"reason":"{reason}","symbol":"{symbol}","order_id":{oid},"leaves":{leaves}}}"#
    )
}

/// A BTC-KRW order leaving entirely.
fn gone(user: u32, coid: u64, qty: u64, reason: &str, oid: u64) -> String {
    cancelled(user, coid, qty, reason, BTC, oid, 0)
}

fn amended(user: u32, coid: u64, price: i64, qty: u64, oid: u64) -> String {
    format!(
        r#"{{"event":"amended","user":{user},"client_order_id":{coid},"price":{price},"qty":{qty},"symbol":"{BTC}","order_id":{oid}}}"#
    )
}

fn triggered(user: u32, coid: u64, oid: u64) -> String {
    format!(
        r#"{{"event":"triggered","user":{user},"client_order_id":{coid},"symbol":"{BTC}","order_id":{oid}}}"#
    )
}

fn mass_cancelled(user: u32, symbol: Option<&str>, count: u32) -> String {
    let symbol = symbol.map_or("null".to_owned(), |s| format!("\"{s}\""));
    format!(r#"{{"event":"mass_cancelled","user":{user},"symbol":{symbol},"count":{count}}}"#)
}

fn book(symbol: &str, bids: &[(i64, u64)], asks: &[(i64, u64)]) -> String {
    let side = |levels: &[(i64, u64)]| {
        levels
            .iter()
            .map(|(p, q)| format!("[{p},{q}]"))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        r#"{{"event":"book","symbol":"{symbol}","bids":[{}],"asks":[{}]}}"#,
        side(bids),
        side(asks)
    )
}

/// The `--final` book lines of the default config when only BTC-KRW has orders.
fn final_books(bids: &[(i64, u64)], asks: &[(i64, u64)]) -> Vec<String> {
    vec![
        book(BTC, bids, asks),
        book("ETH-KRW", &[], &[]),
        book("AAPL-USD", &[], &[]),
    ]
}

/// Splits off the trailing state-hash line and checks its shape; returns the hash.
fn take_hash(lines: &mut Vec<String>) -> String {
    let last = lines.pop().expect("a state_hash line");
    let hash = last
        .strip_prefix(r#"{"event":"state_hash","hash":""#)
        .and_then(|s| s.strip_suffix(r#""}"#))
        .unwrap_or_else(|| panic!("not a state_hash line: {last}"));
    assert_eq!(hash.len(), 16, "{hash}");
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{hash}"
    );
    hash.to_owned()
}

// ---------------------------------------------------------------- matching through the CLI

/// Every event shape spelled out byte for byte, as SPEC §9 and the runner's docs list them (the
/// other tests build lines with the helpers above; this one pins the helpers' format too).
#[test]
fn every_event_line_has_the_documented_bytes() {
    let mut out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         amend,1,BTC-KRW,1,15001,2\n\
         order,3,BTC-KRW,1,BUY,STOP_LIMIT,GTC,15001,1,stop=15000\n\
         cancel,9,BTC-KRW,1\n\
         order,1,ETH-KRW,2,BUY,LIMIT,GTC,700,4\n\
         mass_cancel,1\n",
    );
    take_hash(&mut out);
    let expected = [
        r#"{"event":"accepted","user":1,"symbol":"BTC-KRW","client_order_id":1,"order_id":1,"side":"SELL","type":"LIMIT","price":15000,"qty":5}"#,
        r#"{"event":"accepted","user":2,"symbol":"BTC-KRW","client_order_id":1,"order_id":2,"side":"BUY","type":"LIMIT","price":15100,"qty":3}"#,
        // 15000 × 3 = 45000: maker ceil(22.5) = 23, taker 45.
        r#"{"event":"trade","symbol":"BTC-KRW","price":15000,"qty":3,"maker_user":1,"maker_client_order_id":1,"taker_user":2,"taker_client_order_id":1,"maker_fee":23,"taker_fee":45,"maker_order_id":1,"taker_order_id":2,"taker_side":"BUY","maker_leaves":2,"taker_leaves":0}"#,
        r#"{"event":"amended","user":1,"client_order_id":1,"price":15001,"qty":2,"symbol":"BTC-KRW","order_id":1}"#,
        // Last trade 15000 already reaches the buy stop at 15000: triggered on acceptance.
        r#"{"event":"accepted","user":3,"symbol":"BTC-KRW","client_order_id":1,"order_id":3,"side":"BUY","type":"STOP_LIMIT","price":15001,"qty":1}"#,
        r#"{"event":"triggered","user":3,"client_order_id":1,"symbol":"BTC-KRW","order_id":3}"#,
        // 15001 × 1: maker ceil(7.5005) = 8, taker ceil(15.001) = 16.
        r#"{"event":"trade","symbol":"BTC-KRW","price":15001,"qty":1,"maker_user":1,"maker_client_order_id":1,"taker_user":3,"taker_client_order_id":1,"maker_fee":8,"taker_fee":16,"maker_order_id":1,"taker_order_id":3,"taker_side":"BUY","maker_leaves":1,"taker_leaves":0}"#,
        r#"{"event":"rejected","user":9,"client_order_id":1,"code":3010,"reason":"UNKNOWN_ORDER"}"#,
        r#"{"event":"accepted","user":1,"symbol":"ETH-KRW","client_order_id":2,"order_id":4,"side":"BUY","type":"LIMIT","price":700,"qty":4}"#,
        r#"{"event":"cancelled","user":1,"client_order_id":1,"qty":1,"reason":"USER","symbol":"BTC-KRW","order_id":1,"leaves":0}"#,
        r#"{"event":"cancelled","user":1,"client_order_id":2,"qty":4,"reason":"USER","symbol":"ETH-KRW","order_id":4,"leaves":0}"#,
        r#"{"event":"mass_cancelled","user":1,"symbol":null,"count":2}"#,
        r#"{"event":"book","symbol":"BTC-KRW","bids":[],"asks":[]}"#,
        r#"{"event":"book","symbol":"ETH-KRW","bids":[],"asks":[]}"#,
        r#"{"event":"book","symbol":"AAPL-USD","bids":[],"asks":[]}"#,
    ]
    .map(str::to_owned);
    assert_lines(&out, &expected);
}

#[test]
fn a_cross_trades_at_the_makers_price_with_fees() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         order,3,BTC-KRW,1,BUY,LIMIT,GTC,14000,1\n\
         order,4,BTC-KRW,1,SELL,MARKET,IOC,13000,2\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 5),
        acc(2, 1, 2, "BUY", 15100, 3),
        // 15000 × 3 = 45000: maker ceil(22.5) = 23, taker 45. At the maker's 15000, not 15100.
        trade(BTC, 15000, 3, "BUY", F(1, 1, 1, 2, 23), F(2, 1, 2, 0, 45)),
        acc(3, 1, 3, "BUY", 14000, 1),
        accepted(4, BTC, 1, 4, "SELL", "MARKET", 13000, 2),
        // 14000 × 1: maker exactly 7, taker 14; a market order never rests: 1 left, cancelled.
        trade(BTC, 14000, 1, "SELL", F(3, 1, 3, 0, 7), F(4, 1, 4, 1, 14)),
        gone(4, 1, 1, "IOC", 4),
    ];
    expected.extend(final_books(&[], &[(15000, 2)]));
    assert_lines(&out, &expected);
}

#[test]
fn an_ioc_remainder_is_cancelled_not_rested() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,2\n\
         order,2,BTC-KRW,1,BUY,LIMIT,IOC,15001,5\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 2),
        acc(2, 1, 2, "BUY", 15001, 5),
        // 15000 × 2 = 30000: maker 15, taker 30.
        trade(BTC, 15000, 2, "BUY", F(1, 1, 1, 0, 15), F(2, 1, 2, 3, 30)),
        gone(2, 1, 3, "IOC", 2),
    ];
    expected.extend(final_books(&[], &[]));
    assert_lines(&out, &expected);
}

#[test]
fn fok_is_killed_whole_or_filled_whole() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,2\n\
         order,1,BTC-KRW,2,SELL,LIMIT,GTC,15001,2\n\
         order,2,BTC-KRW,1,BUY,LIMIT,FOK,15002,5   # only 4 offered: killed, nothing trades\n\
         order,2,BTC-KRW,2,BUY,LIMIT,FOK,15001,4   # exactly 4 at acceptable prices: fills\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 2),
        acc(1, 2, 2, "SELL", 15001, 2),
        acc(2, 1, 3, "BUY", 15002, 5),
        gone(2, 1, 5, "FOK", 3),
        acc(2, 2, 4, "BUY", 15001, 4),
        // 15000 × 2 = 30000: 15 / 30.
        trade(BTC, 15000, 2, "BUY", F(1, 1, 1, 0, 15), F(2, 2, 4, 2, 30)),
        // 15001 × 2 = 30002: maker ceil(15.001) = 16, taker ceil(30.002) = 31.
        trade(BTC, 15001, 2, "BUY", F(1, 2, 2, 0, 16), F(2, 2, 4, 0, 31)),
    ];
    expected.extend(final_books(&[], &[]));
    assert_lines(&out, &expected);
}

#[test]
fn post_only_that_would_take_is_cancelled_and_one_that_would_not_rests() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,1\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15000,1,post_only=1\n\
         order,2,BTC-KRW,2,BUY,LIMIT,GTC,14999,1,post_only=1\n\
         order,2,BTC-KRW,3,BUY,LIMIT,GTC,14998,1,post_only=0\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 1),
        acc(2, 1, 2, "BUY", 15000, 1),
        gone(2, 1, 1, "POST_ONLY", 2),
        acc(2, 2, 3, "BUY", 14999, 1),
        acc(2, 3, 4, "BUY", 14998, 1),
    ];
    expected.extend(final_books(&[(14999, 1), (14998, 1)], &[(15000, 1)]));
    assert_lines(&out, &expected);
}

#[test]
fn stops_wait_for_the_last_trade_price_then_trigger() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,1\n\
         order,1,BTC-KRW,2,SELL,LIMIT,GTC,15100,5\n\
         order,2,BTC-KRW,1,BUY,STOP_LIMIT,GTC,15100,3,stop=15000  # no trade yet: waits\n\
         order,3,BTC-KRW,1,BUY,LIMIT,GTC,15000,1                  # trades at 15000: fires it\n\
         order,4,BTC-KRW,1,SELL,STOP_MARKET,IOC,14000,1,stop=15200 # last 15100 <= 15200: at once\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 1),
        acc(1, 2, 2, "SELL", 15100, 5),
        accepted(2, BTC, 1, 3, "BUY", "STOP_LIMIT", 15100, 3),
        acc(3, 1, 4, "BUY", 15000, 1),
        // 15000 × 1: maker ceil(7.5) = 8, taker 15.
        trade(BTC, 15000, 1, "BUY", F(1, 1, 1, 0, 8), F(3, 1, 4, 0, 15)),
        triggered(2, 1, 3),
        // 15100 × 3 = 45300: maker ceil(22.65) = 23, taker ceil(45.3) = 46.
        trade(BTC, 15100, 3, "BUY", F(1, 2, 2, 2, 23), F(2, 1, 3, 0, 46)),
        accepted(4, BTC, 1, 5, "SELL", "STOP_MARKET", 14000, 1),
        triggered(4, 1, 5),
        // No bids at all: the market remainder is cancelled.
        gone(4, 1, 1, "IOC", 5),
    ];
    expected.extend(final_books(&[], &[(15100, 2)]));
    assert_lines(&out, &expected);
}

#[test]
fn an_iceberg_refills_at_the_back_of_its_level() {
    let run = ringbook(
        &[
            "scenario",
            "--no-risk",
            "--final",
            &fixture("iceberg.script"),
        ],
        "",
    );
    let mut out = clean(run);
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 10),
        acc(2, 1, 2, "SELL", 15000, 2),
        acc(3, 1, 3, "BUY", 15000, 4),
        // The peak: 15000 × 3 = 45000: 23 / 45. Order 1 refills 3 behind order 2 ...
        trade(BTC, 15000, 3, "BUY", F(1, 1, 1, 7, 23), F(3, 1, 3, 1, 45)),
        // ... so order 2 fills next: 15000 × 1: ceil(7.5) = 8 / 15.
        trade(BTC, 15000, 1, "BUY", F(2, 1, 2, 1, 8), F(3, 1, 3, 0, 15)),
    ];
    // Visible only: order 2's 1 plus the iceberg's new peak of 3 (4 more hidden).
    expected.extend(final_books(&[], &[(15000, 4)]));
    assert_lines(&out, &expected);
}

#[test]
fn self_trade_prevention_modes() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
         order,1,BTC-KRW,2,BUY,LIMIT,GTC,15000,2,stp=CANCEL_NEWEST\n\
         order,1,BTC-KRW,3,BUY,LIMIT,GTC,15000,2,stp=decrement\n\
         order,1,BTC-KRW,4,BUY,LIMIT,GTC,15000,1,stp=Cancel_Both\n\
         order,1,BTC-KRW,5,SELL,LIMIT,GTC,15000,2\n\
         order,2,BTC-KRW,1,SELL,LIMIT,GTC,15000,1\n\
         order,1,BTC-KRW,6,BUY,LIMIT,GTC,15000,2,stp=CANCEL_OLDEST\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 5),
        // CANCEL_NEWEST: the incoming order goes, the resting one stays.
        acc(1, 2, 2, "BUY", 15000, 2),
        gone(1, 2, 2, "STP", 2),
        // DECREMENT by min(2, 5) = 2: the maker keeps 3 (a partial cancel), the taker is done.
        acc(1, 3, 3, "BUY", 15000, 2),
        cancelled(1, 1, 2, "STP", BTC, 1, 3),
        gone(1, 3, 2, "STP", 3),
        // CANCEL_BOTH: the maker's 3, then the taker's 1.
        acc(1, 4, 4, "BUY", 15000, 1),
        gone(1, 1, 3, "STP", 1),
        gone(1, 4, 1, "STP", 4),
        // CANCEL_OLDEST: user 1's own ask goes, user 2's trades, the rest of the bid rests.
        acc(1, 5, 5, "SELL", 15000, 2),
        acc(2, 1, 6, "SELL", 15000, 1),
        acc(1, 6, 7, "BUY", 15000, 2),
        gone(1, 5, 2, "STP", 5),
        trade(BTC, 15000, 1, "BUY", F(2, 1, 6, 0, 8), F(1, 6, 7, 1, 15)),
    ];
    expected.extend(final_books(&[(15000, 1)], &[]));
    assert_lines(&out, &expected);
}

#[test]
fn amend_keeps_or_loses_priority_and_may_trade() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
         order,2,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
         amend,1,BTC-KRW,1,15000,3      # same price, smaller: keeps its place\n\
         order,3,BTC-KRW,1,BUY,LIMIT,IOC,15000,1\n\
         amend,1,BTC-KRW,1,15000,4      # grows: to the back, behind user 2\n\
         order,3,BTC-KRW,2,BUY,LIMIT,IOC,15000,1\n\
         order,4,BTC-KRW,1,BUY,LIMIT,GTC,14900,2\n\
         amend,2,BTC-KRW,1,14900,4      # now crosses: trades as a taker, keeps order id 2\n\
         amend,2,BTC-KRW,1,0,4          # price out of band: rejected, order unchanged\n\
         amend,2,BTC-KRW,9,15000,1      # no such order\n\
         amend,1,BTC-KRW,1,15000,0      # quantity 0 is a cancel\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 5),
        acc(2, 1, 2, "SELL", 15000, 5),
        amended(1, 1, 15000, 3, 1),
        acc(3, 1, 3, "BUY", 15000, 1),
        // Order 1 is still first. 15000 × 1: 8 / 15.
        trade(BTC, 15000, 1, "BUY", F(1, 1, 1, 2, 8), F(3, 1, 3, 0, 15)),
        amended(1, 1, 15000, 4, 1),
        acc(3, 2, 4, "BUY", 15000, 1),
        // Now order 2 is first.
        trade(BTC, 15000, 1, "BUY", F(2, 1, 2, 4, 8), F(3, 2, 4, 0, 15)),
        acc(4, 1, 5, "BUY", 14900, 2),
        amended(2, 1, 14900, 4, 2),
        // 14900 × 2 = 29800: maker 14.9 → 15, taker 29.8 → 30; the amended order is the taker.
        trade(BTC, 14900, 2, "SELL", F(4, 1, 5, 0, 15), F(2, 1, 2, 2, 30)),
        rejected(2, 1, 3004, "PRICE_OUT_OF_BAND"),
        rejected(2, 9, 3010, "UNKNOWN_ORDER"),
        gone(1, 1, 4, "USER", 1),
    ];
    expected.extend(final_books(&[], &[(14900, 2)]));
    assert_lines(&out, &expected);
}

#[test]
fn mass_cancel_per_symbol_and_for_all_symbols() {
    let out = scenario_final(
        "order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         order,1,ETH-KRW,2,BUY,LIMIT,GTC,100,1\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,3,SELL,STOP_LIMIT,GTC,50,1,stop=60\n\
         order,1,AAPL-USD,4,SELL,LIMIT,GTC,200,1\n\
         mass_cancel,1,ETH-KRW\n\
         mass_cancel,1\n\
         mass_cancel,1\n\
         mass_cancel,5000\n",
    );
    let mut out = out;
    take_hash(&mut out);
    let mut expected = vec![
        acc(1, 1, 1, "BUY", 100, 1),
        accepted(1, "ETH-KRW", 2, 2, "BUY", "LIMIT", 100, 1),
        acc(2, 1, 3, "BUY", 100, 1),
        accepted(1, BTC, 3, 4, "SELL", "STOP_LIMIT", 50, 1),
        accepted(1, "AAPL-USD", 4, 5, "SELL", "LIMIT", 200, 1),
        cancelled(1, 2, 1, "USER", "ETH-KRW", 2, 0),
        mass_cancelled(1, Some("ETH-KRW"), 1),
        // Every symbol, in order-id order, the waiting stop included; user 2 untouched.
        gone(1, 1, 1, "USER", 1),
        gone(1, 3, 1, "USER", 4),
        cancelled(1, 4, 1, "USER", "AAPL-USD", 5, 0),
        mass_cancelled(1, None, 3),
        mass_cancelled(1, None, 0),
        // users_max is 1024; a mass cancel reject names client order id 0.
        rejected(5000, 0, 2001, "UNKNOWN_USER"),
    ];
    expected.extend(final_books(&[(100, 1)], &[]));
    assert_lines(&out, &expected);
}

#[test]
fn engine_rejects_are_events_not_errors() {
    let out = scenario(
        "order,5000,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         order,1,7,1,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,0\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1000001\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,100001,1\n\
         order,1,BTC-KRW,1,BUY,STOP_LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1,stop=90\n\
         order,1,BTC-KRW,1,BUY,MARKET,IOC,100,1,post_only=1\n\
         order,1,BTC-KRW,1,BUY,LIMIT,IOC,100,1,post_only=1\n\
         order,1,BTC-KRW,1,BUY,LIMIT,IOC,100,2,display=1\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         cancel,1,BTC-KRW,2\n\
         cancel,1,ETH-KRW,1\n\
         cancel,1,7,1\n",
    );
    let expected = vec![
        rejected(5000, 1, 2001, "UNKNOWN_USER"),
        rejected(1, 1, 3001, "UNKNOWN_SYMBOL"),
        rejected(1, 1, 3002, "INVALID_QUANTITY"),
        rejected(1, 1, 3003, "QUANTITY_TOO_LARGE"),
        rejected(1, 1, 3004, "PRICE_OUT_OF_BAND"),
        rejected(1, 1, 3005, "INVALID_STOP_PRICE"),
        rejected(1, 1, 3005, "INVALID_STOP_PRICE"),
        rejected(1, 1, 3008, "INVALID_POST_ONLY"),
        rejected(1, 1, 3007, "INVALID_TIME_IN_FORCE"),
        rejected(1, 1, 3006, "INVALID_DISPLAY_QTY"),
        acc(1, 1, 1, "BUY", 100, 1),
        rejected(1, 1, 3009, "DUPLICATE_CLIENT_ORDER_ID"),
        rejected(1, 2, 3010, "UNKNOWN_ORDER"),
        rejected(1, 1, 3010, "UNKNOWN_ORDER"),
        rejected(1, 1, 3001, "UNKNOWN_SYMBOL"),
    ];
    assert_lines(&out, &expected);
}

#[test]
fn symbols_by_id_case_insensitive_words_comments_and_crlf() {
    let out = scenario(
        "# a comment line\r\n\
         \r\n\
         ORDER , 1 , 1 , 1 , buy , Limit , gtc , 100 , 1   # ETH-KRW by its id\r\n\
         \t   \n\
         order,1,ETH-KRW,2,Sell,limit,Ioc,101,1,STP=none,Post_Only=0\n\
         Mass_Cancel,1,1\n",
    );
    let expected = vec![
        accepted(1, "ETH-KRW", 1, 1, "BUY", "LIMIT", 100, 1),
        accepted(1, "ETH-KRW", 2, 2, "SELL", "LIMIT", 101, 1),
        cancelled(1, 2, 1, "IOC", "ETH-KRW", 2, 0),
        cancelled(1, 1, 1, "USER", "ETH-KRW", 1, 0),
        mass_cancelled(1, Some("ETH-KRW"), 1),
    ];
    assert_lines(&out, &expected);
}

// ---------------------------------------------------------------- --final and the state hash

/// FNV-1a (64-bit) over little-endian u64s, as docs/matching.md specifies the state hash.
fn fnv1a(words: &[u64]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        for b in w.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[test]
fn final_of_an_empty_run_is_empty_books_and_the_empty_state_hash() {
    let mut out = scenario_final("# nothing\n");
    let hash = take_hash(&mut out);
    assert_lines(&out, &final_books(&[], &[]));
    // Next order id 1; per symbol (3): its id, last trade price 0, no orders, count 0.
    assert_eq!(hash, fnv1a(&[1, 0, 0, 0, 1, 0, 0, 2, 0, 0]));
    assert_eq!(
        hash,
        Engine::with_risk(&Config::default(), ringbook_engine::RiskMode::Off)
            .unwrap()
            .state_hash()
            .to_string()
    );
}

#[test]
fn final_books_aggregate_levels_best_first_and_hash_the_engine_state() {
    let mut out = scenario_final(
        "order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,99,5\n\
         order,3,BTC-KRW,1,BUY,LIMIT,GTC,100,2\n\
         order,1,BTC-KRW,2,SELL,LIMIT,GTC,110,2\n\
         order,1,BTC-KRW,3,SELL,LIMIT,GTC,105,7,display=1\n\
         order,1,AAPL-USD,4,SELL,LIMIT,GTC,19000,3\n\
         order,4,BTC-KRW,1,BUY,STOP_LIMIT,GTC,120,1,stop=115   # waiting stops are not in the depth\n",
    );
    let hash = take_hash(&mut out);
    let books = out.split_off(out.len() - 3);
    assert_lines(
        &books,
        &[
            book(BTC, &[(100, 3), (99, 5)], &[(105, 1), (110, 2)]),
            book("ETH-KRW", &[], &[]),
            book("AAPL-USD", &[], &[(19000, 3)]),
        ],
    );

    // The same commands through the library: the CLI prints `Engine::state_hash`.
    let config = Config::default();
    let mut engine = Engine::with_risk(&config, ringbook_engine::RiskMode::Off).unwrap();
    let btc = SymbolId(0);
    let limit = |u, s, c, side, p, q| {
        NewOrder::limit(UserId(u), s, ClientOrderId(c), side, Price(p), Qty(q))
    };
    let mut iceberg = limit(1, btc, 3, Side::Sell, 105, 7);
    iceberg.display_qty = Qty(1);
    let mut stop = limit(4, btc, 1, Side::Buy, 120, 1);
    stop.order_type = ringbook_engine::OrderType::StopLimit;
    stop.stop_price = Price(115);
    for order in [
        limit(1, btc, 1, Side::Buy, 100, 1),
        limit(2, btc, 1, Side::Buy, 99, 5),
        limit(3, btc, 1, Side::Buy, 100, 2),
        limit(1, btc, 2, Side::Sell, 110, 2),
        iceberg,
        limit(1, SymbolId(2), 4, Side::Sell, 19000, 3),
        stop,
    ] {
        engine.process(
            &ringbook_engine::Command::NewOrder(order),
            &mut |_: &Event| {},
        );
    }
    assert_eq!(hash, engine.state_hash().to_string());
    assert_ne!(hash, Engine::with_risk(&config, ringbook_engine::RiskMode::Off).unwrap().state_hash().to_string());
}

#[test]
fn equal_states_reached_differently_hash_equal() {
    // Both leave: next order id 2, no last trade, empty books.
    let mut a = scenario_final(
        "order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         cancel,1,BTC-KRW,1\n",
    );
    let mut b = scenario_final("order,9,ETH-KRW,5,SELL,LIMIT,IOC,100,1\n");
    assert_eq!(take_hash(&mut a), take_hash(&mut b));
}

// ---------------------------------------------------------------- the demo

#[test]
fn the_demo_script_runs_as_documented() {
    let run = ringbook(&["scenario", "--no-risk", "--final", &demo_script()], "");
    let mut out = clean(run);
    take_hash(&mut out);
    // Worked out line by line from the comments in docs/examples/demo.script.
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15010, 5),
        acc(1, 2, 2, "SELL", 15020, 10),
        acc(2, 1, 3, "BUY", 14990, 8),
        acc(2, 2, 4, "BUY", 15010, 4),
        gone(2, 2, 4, "POST_ONLY", 4),
        accepted(3, BTC, 1, 5, "BUY", "STOP_MARKET", 15100, 3),
        acc(4, 1, 6, "BUY", 15015, 7),
        // 15010 × 5 = 75050: maker ceil(37.525) = 38, taker ceil(75.05) = 76.
        trade(BTC, 15010, 5, "BUY", F(1, 1, 1, 0, 38), F(4, 1, 6, 2, 76)),
        gone(4, 1, 2, "IOC", 6),
        rejected(4, 1, 3010, "UNKNOWN_ORDER"),
        accepted(5, BTC, 1, 7, "BUY", "MARKET", 15050, 3),
        // 15020 × 2 = 30040: ceil(15.02) = 16, ceil(30.04) = 31; × 1: ceil(7.51) = 8, 15.02 → 16.
        trade(BTC, 15020, 2, "BUY", F(1, 2, 2, 8, 16), F(5, 1, 7, 1, 31)),
        trade(BTC, 15020, 1, "BUY", F(1, 2, 2, 7, 8), F(5, 1, 7, 0, 16)),
        triggered(3, 1, 5),
        // The refilled peak has 1 left, then refills again.
        trade(BTC, 15020, 1, "BUY", F(1, 2, 2, 6, 8), F(3, 1, 5, 2, 16)),
        trade(BTC, 15020, 2, "BUY", F(1, 2, 2, 4, 16), F(3, 1, 5, 0, 31)),
        amended(2, 1, 14995, 6, 3),
        acc(6, 1, 8, "SELL", 14990, 10),
        gone(6, 1, 10, "FOK", 8),
        acc(6, 2, 9, "SELL", 15100, 20),
        acc(1, 3, 10, "BUY", 15020, 3),
        gone(1, 2, 4, "STP", 2),
    ];
    expected.extend(final_books(&[(15020, 3), (14995, 6)], &[(15100, 20)]));
    assert_lines(&out, &expected);
}

#[test]
fn the_demo_output_is_byte_stable_and_stdin_equals_a_file() {
    let args = ["scenario", "--no-risk", "--final"];
    let path = demo_script();
    let first = ringbook(&[&args[..], &[path.as_str()]].concat(), "");
    let second = ringbook(&[&args[..], &[path.as_str()]].concat(), "");
    assert_eq!(first.status, 0);
    assert!(!first.stdout.is_empty());
    assert_eq!(first.stdout, second.stdout);
    let text = std::fs::read_to_string(&path).unwrap();
    let piped = ringbook(&[&args[..], &["-"]].concat(), &text);
    assert_eq!(piped.status, 0);
    assert_eq!(first.stdout, piped.stdout);
}

// ---------------------------------------------------------------- errors and exit status

#[test]
fn parse_errors_name_their_line_and_later_lines_still_run() {
    let run = ringbook(
        &["scenario", "--no-risk", &fixture("parse_errors.script")],
        "",
    );
    assert_eq!(run.status, 1, "stderr:\n{}", run.stderr);
    let expected = vec![
        acc(1, 1, 1, "SELL", 15000, 5),
        acc(2, 1, 2, "BUY", 15000, 2),
        // 15000 × 2 = 30000: 15 / 30.
        trade(BTC, 15000, 2, "BUY", F(1, 1, 1, 3, 15), F(2, 1, 2, 0, 30)),
    ];
    let out: Vec<String> = run.lines().into_iter().map(str::to_owned).collect();
    assert_lines(&out, &expected);

    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .collect();
    let expect = [
        ("line 2: ", "missing"),
        ("line 4: ", "DOGE-KRW"),
        ("line 5: ", "abc"),
        ("line 6: ", "colour"),
        ("line 7: ", "4294967296"),
        ("line 8: ", "too many"),
        ("line 9: ", "SIDEWAYS"),
    ];
    assert_eq!(errors.len(), expect.len(), "stderr:\n{}", run.stderr);
    for (line, (prefix, needle)) in errors.iter().zip(expect) {
        assert!(line.starts_with(prefix), "{line:?} should start {prefix:?}");
        assert!(line.contains(needle), "{line:?} should mention {needle:?}");
    }
}

#[test]
fn account_commands_are_errors_without_accounts() {
    let run = ringbook(
        &["scenario", "--no-risk", "-"],
        "deposit,1,KRW,1000000\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         withdraw,1,KRW,10\n\
         approve,7,1\n",
    );
    assert_eq!(run.status, 1);
    assert_lines(
        &run.lines()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        &[acc(1, 1, 1, "BUY", 100, 1)],
    );
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(errors.len(), 3, "stderr:\n{}", run.stderr);
    for (line, (n, word)) in errors
        .iter()
        .zip([(1, "deposit"), (3, "withdraw"), (4, "approve")])
    {
        assert!(line.starts_with(&format!("line {n}: {word}")), "{line}");
        assert!(line.contains("accounts"), "{line}");
    }
}

#[test]
fn without_no_risk_the_run_refuses_with_status_2() {
    let run = ringbook(
        &["scenario", "-"],
        "order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n",
    );
    assert_eq!(run.status, 2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("risk mode needs the accounts stage"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--no-risk"), "{}", run.stderr);

    // There is no threaded pipeline yet, so no --pipeline flag either.
    let run = ringbook(&["scenario", "--no-risk", "--pipeline", "-"], "");
    assert_eq!(run.status, 2);
    assert_eq!(run.stdout, "");
}

#[test]
fn unreadable_script_or_config_is_status_2() {
    let run = ringbook(
        &["scenario", "--no-risk", "/nonexistent/ringbook.script"],
        "",
    );
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("/nonexistent/ringbook.script"),
        "{}",
        run.stderr
    );

    let dir = temp_dir("bad-config");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "capacity = 3\n").unwrap();
    let run = ringbook(
        &[
            "scenario",
            "--no-risk",
            "--config",
            bad.to_str().unwrap(),
            "-",
        ],
        "",
    );
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("config"), "{}", run.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_config_file_sets_symbols_tick_size_and_fees() {
    let dir = temp_dir("config");
    let config = dir.join("xyz.toml");
    std::fs::write(
        &config,
        r#"
[capacity]
orders_max = 16
users_max = 4

[[currencies]]
id = 0
code = "USD"
scale = 2

[[currencies]]
id = 1
code = "XYZ"
scale = 0

[[symbols]]
id = 0
name = "XYZ-USD"
base = "XYZ"
quote = "USD"
lot_size = 1
tick_size = 5
price_min = 1
price_max = 1000
maker_fee_bps = 7
taker_fee_bps = 13
max_order_qty = 100
"#,
    )
    .unwrap();
    let run = ringbook(
        &[
            "scenario",
            "--no-risk",
            "--final",
            "--config",
            config.to_str().unwrap(),
            "-",
        ],
        "order,1,XYZ-USD,1,SELL,LIMIT,GTC,999,5\n\
         order,2,0,1,BUY,LIMIT,GTC,1000,3\n\
         order,3,XYZ-USD,1,BUY,LIMIT,GTC,999,1     # user 3 < users_max 4\n\
         order,4,XYZ-USD,1,BUY,LIMIT,GTC,999,1     # user 4 is not\n\
         order,1,BTC-KRW,2,SELL,LIMIT,GTC,999,5    # not in this config: a parse error\n",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(run.status, 1);
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", run.stderr);
    assert!(errors[0].starts_with("line 5: ") && errors[0].contains("BTC-KRW"));
    let mut out: Vec<String> = run.lines().into_iter().map(str::to_owned).collect();
    take_hash(&mut out);
    let xyz = "XYZ-USD";
    assert_lines(
        &out,
        &[
            accepted(1, xyz, 1, 1, "SELL", "LIMIT", 999, 5),
            accepted(2, xyz, 1, 2, "BUY", "LIMIT", 1000, 3),
            // notional 999 × 3 × 5 = 14985: maker ceil(10.4895) = 11, taker ceil(19.4805) = 20.
            trade(xyz, 999, 3, "BUY", F(1, 1, 1, 2, 11), F(2, 1, 2, 0, 20)),
            accepted(3, xyz, 1, 3, "BUY", "LIMIT", 999, 1),
            // 999 × 1 × 5 = 4995: maker ceil(3.4965) = 4, taker ceil(6.4935) = 7.
            trade(xyz, 999, 1, "BUY", F(1, 1, 1, 1, 4), F(3, 1, 3, 0, 7)),
            rejected(4, 1, 2001, "UNKNOWN_USER"),
            book(xyz, &[], &[(999, 1)]),
        ],
    );
}

#[test]
fn an_empty_script_prints_nothing_and_succeeds() {
    let run = ringbook(&["scenario", "--no-risk", "-"], "");
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );
}

#[test]
fn a_line_that_is_not_utf8_is_a_parse_error() {
    let run = ringbook(
        &["scenario", "--no-risk", "-"],
        b"order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\norder,1,BTC-\xff,2,BUY,LIMIT,GTC,100,1\n",
    );
    assert_eq!(run.status, 1);
    assert_lines(
        &run.lines()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        &[acc(1, 1, 1, "BUY", 100, 1)],
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("line 2: ") && l.contains("UTF-8")),
        "{}",
        run.stderr
    );
}
