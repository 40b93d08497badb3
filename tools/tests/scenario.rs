//! `ringbook scenario` end to end: the real binary on scripts (inline through stdin, or files in
//! tests/scenarios/ and docs/examples/).
//!
//! Every expected line is worked out by hand from docs/matching.md, docs/risk.md and docs/overview.md §9,
//! never captured from the binary. Default config, BTC-KRW: lot 10 000 sat, tick_size 1, maker
//! 5 bps, taker 10 bps, so a trade of `q` lots at price `p` has maker fee `ceil(p·q·5/10000)` and
//! taker fee `ceil(p·q·10/10000)`; a buy at limit `L` locks `unit_lock(L) = L + ceil(L·10/10000)`
//! KRW per lot, a sell 10 000 sat per lot. The arithmetic is written beside each line.
//!
//! The matching tests run with `--no-risk` (the book alone: their subject is the book, and their
//! users need no money); the account tests run with risk on, the default.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use ringbook_engine::prelude::{
    ClientOrderId, Command as Cmd, Config, Engine, Event, NewOrder, Price, Qty, Side, SymbolId,
    UserId,
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

/// `ringbook scenario --no-risk -` on `script` (the book alone), expecting a clean run.
fn book_only(script: &str) -> Vec<String> {
    clean(ringbook(&["scenario", "--no-risk", "-"], script))
}

/// `ringbook scenario --no-risk --final -` on `script` (the book alone), expecting a clean run.
fn book_only_final(script: &str) -> Vec<String> {
    clean(ringbook(&["scenario", "--no-risk", "--final", "-"], script))
}

/// `ringbook scenario -` on `script` (risk on, the default), expecting a clean run.
fn risk_on(script: &str) -> Vec<String> {
    clean(ringbook(&["scenario", "-"], script))
}

/// `ringbook scenario --final -` on `script` (risk on, the default), expecting a clean run.
fn risk_on_final(script: &str) -> Vec<String> {
    clean(ringbook(&["scenario", "--final", "-"], script))
}

fn clean(run: Run) -> Vec<String> {
    assert_eq!(
        run.status, 0,
        "exit status; stderr:\n{}\nstdout:\n{}",
        run.stderr, run.stdout
    );
    assert_eq!(run.stderr, "", "nothing on stderr");
    without_trade_identity(&run.lines())
}

/// Checks every trade line's `trade_id` and `ts` (per symbol dense from 1; engine time never
/// going back) and returns the lines without those two fields, which the tests about other
/// subjects leave out of their expected lines. `trade_ids_and_engine_time` checks exact values.
fn without_trade_identity(lines: &[&str]) -> Vec<String> {
    let mut next_id = std::collections::HashMap::new();
    let mut last_ts = 0u64;
    lines
        .iter()
        .map(|line| {
            if !line.starts_with(r#"{"event":"trade","#) {
                return (*line).to_owned();
            }
            let start = line
                .find(r#","trade_id":"#)
                .expect("trade line has a trade_id");
            let end = line.find(r#","price":"#).expect("trade line has a price");
            let symbol = &line[..start];
            let fields = &line[start + 1..end]; // "trade_id":N,"ts":T
            let (id, ts) = fields
                .strip_prefix(r#""trade_id":"#)
                .and_then(|f| f.split_once(r#","ts":"#))
                .unwrap_or_else(|| panic!("trade identity fields in order: {line}"));
            let (id, ts): (u64, u64) = (id.parse().unwrap(), ts.parse().unwrap());
            let next = next_id.entry(symbol.to_owned()).or_insert(1u64);
            assert_eq!(id, *next, "trade ids are dense per symbol from 1: {line}");
            *next += 1;
            assert!(ts >= last_ts, "engine time went back: {line}");
            last_ts = ts;
            format!("{}{}", &line[..start], &line[end..])
        })
        .collect()
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

// ---------------------------------------------------------------- expected account lines

/// The default config's currencies, in id order.
const CURRENCIES: [&str; 5] = ["KRW", "USD", "BTC", "ETH", "AAPL"];

fn deposited(user: u32, currency: &str, amount: u64) -> String {
    format!(r#"{{"event":"deposited","user":{user},"currency":"{currency}","amount":{amount}}}"#)
}

fn balance_update(user: u32, currency: &str, available: u64, locked: u64) -> String {
    format!(
        r#"{{"event":"balance_update","user":{user},"currency":"{currency}","available":{available},"locked":{locked}}}"#
    )
}

/// A first deposit's two lines: the credit, then the balance it leaves.
fn deposit(user: u32, currency: &str, amount: u64) -> [String; 2] {
    [
        deposited(user, currency, amount),
        balance_update(user, currency, amount, 0),
    ]
}

fn withdrawal_requested(id: u64, user: u32, currency: &str, amount: u64) -> String {
    format!(
        r#"{{"event":"withdrawal_requested","withdrawal_id":{id},"user":{user},"currency":"{currency}","amount":{amount}}}"#
    )
}

fn withdrawal_approved(id: u64, operator: u32, user: u32, approvals: u8) -> String {
    format!(
        r#"{{"event":"withdrawal_approved","withdrawal_id":{id},"operator":{operator},"user":{user},"approvals":{approvals}}}"#
    )
}

fn withdrawal_completed(id: u64, user: u32, currency: &str, amount: u64) -> String {
    format!(
        r#"{{"event":"withdrawal_completed","withdrawal_id":{id},"user":{user},"currency":"{currency}","amount":{amount}}}"#
    )
}

fn withdrawal_rejected(id: u64, operator: u32, user: u32) -> String {
    format!(
        r#"{{"event":"withdrawal_rejected","withdrawal_id":{id},"operator":{operator},"user":{user}}}"#
    )
}

/// An operator command (approve, reject_withdrawal) refused.
fn operator_rejected(operator: u32, id: u64, code: u16, reason: &str) -> String {
    format!(
        r#"{{"event":"rejected","operator":{operator},"withdrawal_id":{id},"code":{code},"reason":"{reason}"}}"#
    )
}

fn balance(user: u32, currency: &str, available: u64, locked: u64) -> String {
    format!(
        r#"{{"event":"balance","user":{user},"currency":"{currency}","available":{available},"locked":{locked}}}"#
    )
}

fn fees(currency: &str, collected: u64) -> String {
    format!(r#"{{"event":"fees","currency":"{currency}","collected":{collected}}}"#)
}

/// One open account's balances: `(currency, available, locked)`; every currency not listed is
/// zero.
type Account<'a> = (u32, &'a [(&'a str, u64, u64)]);

/// The `--final` account lines of the default config with risk on: every currency of every open
/// account (given in user id order), then the fees per currency (those not listed are zero).
fn final_accounts(accounts: &[Account<'_>], collected: &[(&str, u64)]) -> Vec<String> {
    let mut lines = Vec::new();
    for &(user, held) in accounts {
        for currency in CURRENCIES {
            let (available, locked) = held
                .iter()
                .find(|h| h.0 == currency)
                .map_or((0, 0), |h| (h.1, h.2));
            lines.push(balance(user, currency, available, locked));
        }
    }
    for currency in CURRENCIES {
        let f = collected
            .iter()
            .find(|c| c.0 == currency)
            .map_or(0, |c| c.1);
        lines.push(fees(currency, f));
    }
    lines
}

/// A field of one of the runner's flat JSON lines, as written (a string keeps its quotes).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let tag = format!("\"{key}\":");
    let start = line
        .find(&tag)
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + tag.len();
    let rest = &line[start..];
    &rest[..rest.find([',', '}']).unwrap()]
}

fn number(line: &str, key: &str) -> u128 {
    field(line, key).parse().unwrap()
}

/// docs/risk.md's invariant on the `--final` lines: for each currency, every balance's
/// available + locked plus the fees collected equals deposits minus completed withdrawals
/// (`supply`, worked out by hand; currencies not listed have none).
fn assert_conserved(lines: &[String], supply: &[(&str, u64)]) {
    for currency in CURRENCIES {
        let quoted = format!("\"{currency}\"");
        let expected = supply.iter().find(|s| s.0 == currency).map_or(0, |s| s.1);
        let mut held = 0u128;
        let mut fee_lines = 0;
        for line in lines {
            if line.starts_with(r#"{"event":"balance","#) && field(line, "currency") == quoted {
                held += number(line, "available") + number(line, "locked");
            } else if line.starts_with(r#"{"event":"fees","#) && field(line, "currency") == quoted {
                held += number(line, "collected");
                fee_lines += 1;
            }
        }
        assert_eq!(fee_lines, 1, "one fees line for {currency}");
        assert_eq!(
            held,
            u128::from(expected),
            "{currency}: balances + fees = supply"
        );
    }
}

/// The `line N: …` messages on stderr.
fn line_errors(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .collect()
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

/// Every event shape spelled out byte for byte, as docs/overview.md §9 and the runner's docs list them (the
/// other tests build lines with the helpers above; this one pins the helpers' format too).
#[test]
fn every_event_line_has_the_documented_bytes() {
    let mut out = book_only_final(
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
        r#"{"event":"accepted","user":3,"symbol":"BTC-KRW","client_order_id":1,"order_id":262146,"side":"BUY","type":"STOP_LIMIT","price":15001,"qty":1}"#,
        r#"{"event":"triggered","user":3,"client_order_id":1,"symbol":"BTC-KRW","order_id":262146}"#,
        // 15001 × 1: maker ceil(7.5005) = 8, taker ceil(15.001) = 16.
        r#"{"event":"trade","symbol":"BTC-KRW","price":15001,"qty":1,"maker_user":1,"maker_client_order_id":1,"taker_user":3,"taker_client_order_id":1,"maker_fee":8,"taker_fee":16,"maker_order_id":1,"taker_order_id":262146,"taker_side":"BUY","maker_leaves":1,"taker_leaves":0}"#,
        r#"{"event":"rejected","user":9,"client_order_id":1,"code":3010,"reason":"UNKNOWN_ORDER"}"#,
        r#"{"event":"accepted","user":1,"symbol":"ETH-KRW","client_order_id":2,"order_id":524290,"side":"BUY","type":"LIMIT","price":700,"qty":4}"#,
        r#"{"event":"cancelled","user":1,"client_order_id":1,"qty":1,"reason":"USER","symbol":"BTC-KRW","order_id":1,"leaves":0}"#,
        r#"{"event":"cancelled","user":1,"client_order_id":2,"qty":4,"reason":"USER","symbol":"ETH-KRW","order_id":524290,"leaves":0}"#,
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
    let out = book_only_final(
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
        acc(3, 1, 262146, "BUY", 14000, 1),
        accepted(4, BTC, 1, 262147, "SELL", "MARKET", 13000, 2),
        // 14000 × 1: maker exactly 7, taker 14; a market order never rests: 1 left, cancelled.
        trade(
            BTC,
            14000,
            1,
            "SELL",
            F(3, 1, 262146, 0, 7),
            F(4, 1, 262147, 1, 14),
        ),
        gone(4, 1, 1, "IOC", 262147),
    ];
    expected.extend(final_books(&[], &[(15000, 2)]));
    assert_lines(&out, &expected);
}

#[test]
fn an_ioc_remainder_is_cancelled_not_rested() {
    let out = book_only_final(
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
    let out = book_only_final(
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
        acc(2, 2, 262147, "BUY", 15001, 4),
        // 15000 × 2 = 30000: 15 / 30.
        trade(
            BTC,
            15000,
            2,
            "BUY",
            F(1, 1, 1, 0, 15),
            F(2, 2, 262147, 2, 30),
        ),
        // 15001 × 2 = 30002: maker ceil(15.001) = 16, taker ceil(30.002) = 31.
        trade(
            BTC,
            15001,
            2,
            "BUY",
            F(1, 2, 2, 0, 16),
            F(2, 2, 262147, 0, 31),
        ),
    ];
    expected.extend(final_books(&[], &[]));
    assert_lines(&out, &expected);
}

#[test]
fn post_only_that_would_take_is_cancelled_and_one_that_would_not_rests() {
    let out = book_only_final(
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
        acc(2, 2, 262146, "BUY", 14999, 1),
        acc(2, 3, 262147, "BUY", 14998, 1),
    ];
    expected.extend(final_books(&[(14999, 1), (14998, 1)], &[(15000, 1)]));
    assert_lines(&out, &expected);
}

#[test]
fn stops_wait_for_the_last_trade_price_then_trigger() {
    let out = book_only_final(
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
        accepted(4, BTC, 1, 262145, "SELL", "STOP_MARKET", 14000, 1),
        triggered(4, 1, 262145),
        // No bids at all: the market remainder is cancelled.
        gone(4, 1, 1, "IOC", 262145),
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
    let out = book_only_final(
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
        acc(1, 3, 262146, "BUY", 15000, 2),
        cancelled(1, 1, 2, "STP", BTC, 1, 3),
        gone(1, 3, 2, "STP", 262146),
        // CANCEL_BOTH: the maker's 3, then the taker's 1.
        acc(1, 4, 524290, "BUY", 15000, 1),
        gone(1, 1, 3, "STP", 1),
        gone(1, 4, 1, "STP", 524290),
        // CANCEL_OLDEST: user 1's own ask goes, user 2's trades, the rest of the bid rests.
        acc(1, 5, 786433, "SELL", 15000, 2),
        acc(2, 1, 786434, "SELL", 15000, 1),
        acc(1, 6, 786435, "BUY", 15000, 2),
        gone(1, 5, 2, "STP", 786433),
        trade(
            BTC,
            15000,
            1,
            "BUY",
            F(2, 1, 786434, 0, 8),
            F(1, 6, 786435, 1, 15),
        ),
    ];
    expected.extend(final_books(&[(15000, 1)], &[]));
    assert_lines(&out, &expected);
}

#[test]
fn amend_keeps_or_loses_priority_and_may_trade() {
    let out = book_only_final(
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
        acc(3, 2, 262147, "BUY", 15000, 1),
        // Now order 2 is first.
        trade(
            BTC,
            15000,
            1,
            "BUY",
            F(2, 1, 2, 4, 8),
            F(3, 2, 262147, 0, 15),
        ),
        acc(4, 1, 524291, "BUY", 14900, 2),
        amended(2, 1, 14900, 4, 2),
        // 14900 × 2 = 29800: maker 14.9 → 15, taker 29.8 → 30; the amended order is the taker.
        trade(
            BTC,
            14900,
            2,
            "SELL",
            F(4, 1, 524291, 0, 15),
            F(2, 1, 2, 2, 30),
        ),
        rejected(2, 1, 3004, "PRICE_OUT_OF_BAND"),
        rejected(2, 9, 3010, "UNKNOWN_ORDER"),
        gone(1, 1, 4, "USER", 1),
    ];
    expected.extend(final_books(&[], &[(14900, 2)]));
    assert_lines(&out, &expected);
}

#[test]
fn mass_cancel_per_symbol_and_for_all_symbols() {
    let out = book_only_final(
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
    let out = book_only(
        "order,5000,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         order,1,7,1,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,2,BUY,LIMIT,GTC,100,0\n\
         order,1,BTC-KRW,3,BUY,LIMIT,GTC,100,1000001\n\
         order,1,BTC-KRW,4,BUY,LIMIT,GTC,100001,1\n\
         order,1,BTC-KRW,5,BUY,STOP_LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,6,BUY,LIMIT,GTC,100,1,stop=90\n\
         order,1,BTC-KRW,7,BUY,MARKET,IOC,100,1,post_only=1\n\
         order,1,BTC-KRW,8,BUY,LIMIT,IOC,100,1,post_only=1\n\
         order,1,BTC-KRW,9,BUY,LIMIT,IOC,100,2,display=1\n\
         order,1,BTC-KRW,10,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,10,BUY,LIMIT,GTC,100,1   # a resend\n\
         order,1,BTC-KRW,3,BUY,LIMIT,GTC,100,1    # below the user's highest id (3 was rejected)\n\
         cancel,1,BTC-KRW,2\n\
         cancel,1,ETH-KRW,10\n\
         cancel,1,7,10\n",
    );
    let expected = vec![
        rejected(5000, 1, 2001, "UNKNOWN_USER"),
        rejected(1, 1, 3001, "UNKNOWN_SYMBOL"),
        rejected(1, 2, 3002, "INVALID_QUANTITY"),
        rejected(1, 3, 3003, "QUANTITY_TOO_LARGE"),
        rejected(1, 4, 3004, "PRICE_OUT_OF_BAND"),
        rejected(1, 5, 3005, "INVALID_STOP_PRICE"),
        rejected(1, 6, 3005, "INVALID_STOP_PRICE"),
        rejected(1, 7, 3008, "INVALID_POST_ONLY"),
        rejected(1, 8, 3007, "INVALID_TIME_IN_FORCE"),
        rejected(1, 9, 3006, "INVALID_DISPLAY_QTY"),
        acc(1, 10, 1, "BUY", 100, 1),
        rejected(1, 10, 3009, "DUPLICATE_CLIENT_ORDER_ID"),
        rejected(1, 3, 3009, "DUPLICATE_CLIENT_ORDER_ID"),
        rejected(1, 2, 3010, "UNKNOWN_ORDER"),
        rejected(1, 10, 3010, "UNKNOWN_ORDER"),
        rejected(1, 10, 3001, "UNKNOWN_SYMBOL"),
    ];
    assert_lines(&out, &expected);
}

#[test]
fn symbols_by_id_case_insensitive_words_comments_and_crlf() {
    let out = book_only(
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

/// The state-hash words of empty books under the default config: next order id 1, engine time
/// 0; per symbol (3) its id, last trade price 0, last trade id 0, no orders, count 0; the
/// client-order-id marks' tag and no marks; the finished-order windows' tag and no windows.
fn empty_book_words() -> Vec<u64> {
    let mut words = vec![1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0xc01d_0000];
    words.push(0xf1_0000);
    words
}

#[test]
fn final_of_an_empty_run_is_empty_books_and_the_empty_state_hash() {
    let mut out = book_only_final("# nothing\n");
    let hash = take_hash(&mut out);
    assert_lines(&out, &final_books(&[], &[]));
    // Next order id 1, engine time 0; per symbol (3): its id, last trade price 0, last trade
    // id 0, no orders, count 0; then the client-order-id marks' tag and no marks, and the
    // finished-order windows' tag and no windows.
    assert_eq!(hash, fnv1a(&empty_book_words()));
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
    let mut out = book_only_final(
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
    for (i, order) in [
        limit(1, btc, 1, Side::Buy, 100, 1),
        limit(2, btc, 1, Side::Buy, 99, 5),
        limit(3, btc, 1, Side::Buy, 100, 2),
        limit(1, btc, 2, Side::Sell, 110, 2),
        iceberg,
        limit(1, SymbolId(2), 4, Side::Sell, 19000, 3),
        stop,
    ]
    .into_iter()
    .enumerate()
    {
        // The script's clock: 0, then 1 µs a command.
        engine.process_at(
            i as u64 * 1_000,
            &ringbook_engine::Command::NewOrder(order),
            &mut |_: &Event| {},
        );
    }
    assert_eq!(hash, engine.state_hash().to_string());
    assert_ne!(
        hash,
        Engine::with_risk(&config, ringbook_engine::RiskMode::Off)
            .unwrap()
            .state_hash()
            .to_string()
    );
}

#[test]
fn equal_states_reached_differently_hash_equal() {
    // Both leave: next order id 2, no last trade, empty books, engine time 1 µs (two
    // commands that are not queries), user 9's highest client order id 5.
    let mut a = book_only_final(
        "order,9,BTC-KRW,5,BUY,LIMIT,GTC,100,1\n\
         cancel,9,BTC-KRW,5\n",
    );
    // The finished order each leaves in user 9's window is the same too: client order id 5,
    // order 1, cancelled by its owner at the second command.
    let mut b = book_only_final(
        "order,9,BTC-KRW,5,BUY,LIMIT,GTC,100,1\n\
         mass_cancel,9\n",
    );
    assert_eq!(take_hash(&mut a), take_hash(&mut b));
}

// ---------------------------------------------------------------- the demo

#[test]
fn the_demo_script_runs_as_documented() {
    let run = ringbook(&["scenario", "--final", &demo_script()], "");
    // Engine time: the first trade is Dave's order, the 12th command after the clock line
    // (11 µs after it); Erin's trades and the stop they trigger are at the second clock line.
    let trades: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with(r#"{"event":"trade""#))
        .collect();
    let identity: Vec<&str> = trades
        .iter()
        .map(|l| &l[l.find(r#""trade_id""#).unwrap()..l.find(r#","price""#).unwrap()])
        .collect();
    assert_eq!(
        identity,
        [
            r#""trade_id":1,"ts":1733400000000011000"#,
            r#""trade_id":2,"ts":1733400060000000000"#,
            r#""trade_id":3,"ts":1733400060000000000"#,
            r#""trade_id":4,"ts":1733400060000000000"#,
            r#""trade_id":5,"ts":1733400060000000000"#,
            // The budget buy: the third command after the 12:02 clock line (whose tick and the
            // GTD order after it share its time).
            r#""trade_id":6,"ts":1733400120000002000"#,
        ]
    );
    let mut out = clean(run);
    take_hash(&mut out);
    // Worked out line by line from the comments in docs/examples/demo.script (risk on).
    let mut expected = Vec::new();
    expected.extend(deposit(1, "BTC", 150_000));
    expected.extend(deposit(2, "KRW", 200_000));
    expected.extend(deposit(3, "KRW", 50_000));
    expected.extend(deposit(4, "KRW", 110_000));
    expected.extend(deposit(5, "KRW", 50_000));
    expected.extend(deposit(6, "BTC", 200_000));
    expected.extend([
        // Alice locks 5 + 10 lots = 150 000 sat: all she has.
        acc(1, 1, 1, "SELL", 15010, 5),
        acc(1, 2, 2, "SELL", 15020, 10),
        // Bob: unit_lock(14990) = 14990 + ceil(14.99) = 15005; × 8 = 120 040, 79 960 left.
        acc(2, 1, 3, "BUY", 14990, 8),
        // unit_lock(15010) = 15010 + ceil(15.01) = 15026; × 4 = 60 104 ≤ 79 960: locked, then
        // refunded by the POST_ONLY cancel.
        acc(2, 2, 4, "BUY", 15010, 4),
        gone(2, 2, 4, "POST_ONLY", 4),
        // Carol: unit_lock(15100) = 15100 + ceil(15.1) = 15116; × 3 = 45 348 ≤ 50 000.
        accepted(3, BTC, 1, 262148, "BUY", "STOP_MARKET", 15100, 3),
        // Dave: unit_lock(15015) = 15015 + ceil(15.015) = 15031; × 7 = 105 217 ≤ 110 000.
        acc(4, 1, 262149, "BUY", 15015, 7),
        // 15010 × 5 = 75050: maker ceil(37.525) = 38, taker ceil(75.05) = 76.
        trade(BTC, 15010, 5, "BUY", F(1, 1, 1, 0, 38), F(4, 1, 262149, 2, 76)),
        // 2 × 15031 = 30 062 back; of the 75 155 released, 75 155 − 75 050 − 76 = 29 back too.
        gone(4, 1, 2, "IOC", 262149),
        rejected(4, 1, 3010, "UNKNOWN_ORDER"),
        // Erin: unit_lock(15050) = 15050 + ceil(15.05) = 15066; × 3 = 45 198 ≤ 50 000.
        accepted(5, BTC, 1, 524289, "BUY", "MARKET", 15050, 3),
        // 15020 × 2 = 30040: ceil(15.02) = 16, ceil(30.04) = 31; × 1: ceil(7.51) = 8, 15.02 → 16.
        trade(BTC, 15020, 2, "BUY", F(1, 2, 2, 8, 16), F(5, 1, 524289, 1, 31)),
        trade(BTC, 15020, 1, "BUY", F(1, 2, 2, 7, 8), F(5, 1, 524289, 0, 16)),
        triggered(3, 1, 262148),
        // The refilled peak has 1 left, then refills again.
        trade(BTC, 15020, 1, "BUY", F(1, 2, 2, 6, 8), F(3, 1, 262148, 2, 16)),
        trade(BTC, 15020, 2, "BUY", F(1, 2, 2, 4, 16), F(3, 1, 262148, 0, 31)),
        // unit_lock(14995) = 14995 + ceil(14.995) = 15010; × 6 = 90 060: 29 980 refunded.
        amended(2, 1, 14995, 6, 3),
        // Frank locks 100 000 sat, refunded by the FOK kill; then 200 000 for the offer.
        acc(6, 1, 786433, "SELL", 14990, 10),
        gone(6, 1, 10, "FOK", 786433),
        acc(6, 2, 1048577, "SELL", 15100, 20),
        // Alice: unit_lock(15020) = 15020 + ceil(15.02) = 15036; × 3 = 45 108 out of her
        // proceeds; the iceberg's 4 open lots (40 000 sat) come back.
        acc(1, 3, 1048580, "BUY", 15020, 3),
        gone(1, 2, 4, "STP", 2),
        // Dave: 110 000 − 75 050 − 76 = 34 874 < 3 × 15116 = 45 348. No order id is used.
        rejected(4, 2, 2002, "INSUFFICIENT_FUNDS"),
        // By order id: Bob may not touch Frank's offer (client order id 0: nothing told);
        // Frank cancels it and his 200 000 sat are unlocked.
        rejected(2, 0, 3014, "NOT_YOUR_ORDER"),
        gone(6, 2, 20, "USER", 1048577),
        // Dave's 50 000 sat: locked, one approval, a duplicate, the second operator releases it.
        withdrawal_requested(1, 4, "BTC", 50_000),
        balance_update(4, "BTC", 0, 50_000),
        withdrawal_approved(1, 900, 4, 1),
        operator_rejected(900, 1, 2006, "DUPLICATE_APPROVAL"),
        withdrawal_approved(1, 901, 4, 2),
        withdrawal_completed(1, 4, "BTC", 50_000),
        balance_update(4, "BTC", 0, 0),
        // Erin: 50 000 − (45 060 + 31 + 16) = 4 893; 4 000 locked, then unlocked.
        withdrawal_requested(2, 5, "KRW", 4_000),
        balance_update(5, "KRW", 893, 4_000),
        withdrawal_rejected(2, 902, 5),
        balance_update(5, "KRW", 4_893, 0),
        // 12:02. Bob's GTD bid: unit_lock(14980) = 14995; × 2 = 29 990 of his 109 940.
        acc(2, 3, 1310721, "BUY", 14980, 2),
        // Alice's last 4 lots (40 000 sat).
        acc(1, 4, 1310722, "SELL", 15030, 4),
        // Bob's budget buy: accepted with the symbol's max_order_qty as its cap; 31 000 KRW
        // locked. Two lots cost 30 060 + ceil(30.06) = 30 091; a third would take it to 45 136.
        accepted(2, BTC, 4, 1310725, "BUY", "MARKET", 15100, 1_000_000),
        trade(BTC, 15030, 2, "BUY", F(1, 4, 1310722, 2, 16), F(2, 4, 1310725, 999_998, 31)),
        // The rest of the cap is cancelled; the 909 KRW not spent come back.
        gone(2, 4, 999_998, "IOC", 1310725),
        // 12:05: the tick expires the GTD bid (29 990 back); its status is EXPIRED.
        gone(2, 3, 2, "EXPIRED", 1310721),
        r#"{"event":"order_status","found":true,"status":"EXPIRED","user":2,"symbol":"BTC-KRW","client_order_id":3,"order_id":1310721,"side":"BUY","type":"LIMIT","price":14980,"filled_qty":0,"filled_notional":0,"ts":1733400300000000000}"#.to_string(),
    ]);
    expected.extend(final_books(&[(15020, 3), (14995, 6)], &[(15030, 2)]));
    expected.extend(final_accounts(
        &[
            // Proceeds 75 050 + 6 × 15 020 − maker fees (38 + 16 + 8 + 8 + 16 = 86) = 165 084;
            // 45 108 of it locked by the resting bid; then 2 × 15 030 − 16 = 30 044 more from
            // Bob. 13 of 15 lots sold, 2 still offered (20 000 sat locked).
            (1, &[("KRW", 150_020, 45_108), ("BTC", 0, 20_000)]),
            // 200 000 − 30 091 for 2 lots; 90 060 locked by the amended bid.
            (2, &[("KRW", 79_849, 90_060), ("BTC", 20_000, 0)]),
            // Paid 45 060 + 16 + 31 for 3 lots.
            (3, &[("KRW", 4_893, 0), ("BTC", 30_000, 0)]),
            // Paid 75 050 + 76; his 50 000 sat withdrawn.
            (4, &[("KRW", 34_874, 0)]),
            (5, &[("KRW", 4_893, 0), ("BTC", 30_000, 0)]),
            (6, &[("BTC", 200_000, 0)]),
        ],
        // Maker 86 + taker 76 + 31 + 16 + 16 + 31 = 256; then 16 + 31 of the budget buy.
        &[("KRW", 303)],
    ));
    assert_lines(&out, &expected);
    // Deposits 410 000 KRW; 350 000 sat less the 50 000 withdrawn.
    assert_conserved(&out, &[("KRW", 410_000), ("BTC", 300_000)]);
}

#[test]
fn the_demo_output_is_byte_stable_and_stdin_equals_a_file() {
    let args = ["scenario", "--final"];
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
    let out = without_trade_identity(&run.lines());
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
fn with_no_risk_account_commands_are_line_errors_and_the_book_runs_alone() {
    let run = ringbook(
        &["scenario", "--no-risk", "--final", "-"],
        "deposit,1,BTC,50000\n\
         order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5    # no money needed: the book alone\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         withdraw,2,KRW,10\n\
         approve,900,1\n\
         Reject_Withdrawal,901,1\n",
    );
    assert_eq!(run.status, 1, "stderr:\n{}", run.stderr);
    let mut out = without_trade_identity(&run.lines());
    take_hash(&mut out);
    // No balance or fees lines, and no ACCOUNTS_DISABLED events: the lines never ran.
    let mut expected = vec![
        acc(1, 1, 1, "SELL", 15000, 5),
        acc(2, 1, 2, "BUY", 15100, 3),
        // Fees are still reported (docs/risk.md, "Risk off"): 45000 → 23 / 45.
        trade(BTC, 15000, 3, "BUY", F(1, 1, 1, 2, 23), F(2, 1, 2, 0, 45)),
    ];
    expected.extend(final_books(&[], &[(15000, 2)]));
    assert_lines(&out, &expected);
    let errors = line_errors(&run);
    assert_eq!(errors.len(), 4, "stderr:\n{}", run.stderr);
    for (line, (n, word)) in errors.iter().zip([
        (1, "deposit"),
        (4, "withdraw"),
        (5, "approve"),
        (6, "reject_withdrawal"),
    ]) {
        assert!(line.starts_with(&format!("line {n}: {word}")), "{line}");
        assert!(line.contains("accounts are off"), "{line}");
        assert!(line.contains("--no-risk"), "{line}");
    }
    assert!(
        run.stderr
            .contains("4 lines of standard input could not be run"),
        "{}",
        run.stderr
    );
}

#[test]
fn risk_is_on_by_default() {
    // No deposit, no account: the order is refused, as an event (status 0).
    let out = risk_on("order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n");
    assert_lines(&out, &[rejected(1, 1, 2001, "UNKNOWN_USER")]);

    // The same through the threaded pipeline (tests/pipeline_replay.rs compares the modes).
    let run = ringbook(
        &["scenario", "--pipeline", "-"],
        "order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n",
    );
    assert_eq!(clean(run), out);
}

#[test]
fn unreadable_script_or_config_is_status_2() {
    let run = ringbook(&["scenario", "/nonexistent/ringbook.script"], "");
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
    let mut out = without_trade_identity(&run.lines());
    take_hash(&mut out);
    let xyz = "XYZ-USD";
    assert_lines(
        &out,
        &[
            accepted(1, xyz, 1, 1, "SELL", "LIMIT", 999, 5),
            accepted(2, xyz, 1, 2, "BUY", "LIMIT", 1000, 3),
            // notional 999 × 3 × 5 = 14985: maker ceil(10.4895) = 11, taker ceil(19.4805) = 20.
            trade(xyz, 999, 3, "BUY", F(1, 1, 1, 2, 11), F(2, 1, 2, 0, 20)),
            accepted(3, xyz, 1, 18, "BUY", "LIMIT", 999, 1),
            // 999 × 1 × 5 = 4995: maker ceil(3.4965) = 4, taker ceil(6.4935) = 7.
            trade(xyz, 999, 1, "BUY", F(1, 1, 1, 1, 4), F(3, 1, 18, 0, 7)),
            rejected(4, 1, 2001, "UNKNOWN_USER"),
            book(xyz, &[], &[(999, 1)]),
        ],
    );
}

#[test]
fn an_empty_script_prints_nothing_and_succeeds() {
    for args in [&["scenario", "-"][..], &["scenario", "--no-risk", "-"]] {
        let run = ringbook(args, "");
        assert_eq!(
            (run.status, run.stdout.as_str(), run.stderr.as_str()),
            (0, "", ""),
            "{args:?}"
        );
    }
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

// ---------------------------------------------------------------- accounts and risk (the default)

/// Every account event and the `--final` account lines spelled out byte for byte, as the
/// runner's docs list them.
#[test]
fn every_account_event_line_has_the_documented_bytes() {
    let mut out = risk_on_final(
        "deposit,1,BTC,50000\n\
         deposit,2,KRW,1000000\n\
         order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         withdraw,2,KRW,1000\n\
         approve,900,1\n\
         approve,901,1\n\
         withdraw,2,2,5000      # BTC by its id\n\
         reject_withdrawal,902,2\n\
         approve,900,2\n\
         withdraw,2,BTC,30001\n",
    );
    take_hash(&mut out);
    let expected = [
        r#"{"event":"deposited","user":1,"currency":"BTC","amount":50000}"#,
        r#"{"event":"balance_update","user":1,"currency":"BTC","available":50000,"locked":0}"#,
        r#"{"event":"deposited","user":2,"currency":"KRW","amount":1000000}"#,
        r#"{"event":"balance_update","user":2,"currency":"KRW","available":1000000,"locked":0}"#,
        r#"{"event":"accepted","user":1,"symbol":"BTC-KRW","client_order_id":1,"order_id":1,"side":"SELL","type":"LIMIT","price":15000,"qty":5}"#,
        r#"{"event":"accepted","user":2,"symbol":"BTC-KRW","client_order_id":1,"order_id":2,"side":"BUY","type":"LIMIT","price":15100,"qty":3}"#,
        // docs/risk.md's worked example: Bob ends with 954 955 KRW available.
        r#"{"event":"trade","symbol":"BTC-KRW","price":15000,"qty":3,"maker_user":1,"maker_client_order_id":1,"taker_user":2,"taker_client_order_id":1,"maker_fee":23,"taker_fee":45,"maker_order_id":1,"taker_order_id":2,"taker_side":"BUY","maker_leaves":2,"taker_leaves":0}"#,
        r#"{"event":"withdrawal_requested","withdrawal_id":1,"user":2,"currency":"KRW","amount":1000}"#,
        r#"{"event":"balance_update","user":2,"currency":"KRW","available":953955,"locked":1000}"#,
        r#"{"event":"withdrawal_approved","withdrawal_id":1,"operator":900,"user":2,"approvals":1}"#,
        r#"{"event":"withdrawal_approved","withdrawal_id":1,"operator":901,"user":2,"approvals":2}"#,
        r#"{"event":"withdrawal_completed","withdrawal_id":1,"user":2,"currency":"KRW","amount":1000}"#,
        r#"{"event":"balance_update","user":2,"currency":"KRW","available":953955,"locked":0}"#,
        r#"{"event":"withdrawal_requested","withdrawal_id":2,"user":2,"currency":"BTC","amount":5000}"#,
        r#"{"event":"balance_update","user":2,"currency":"BTC","available":25000,"locked":5000}"#,
        r#"{"event":"withdrawal_rejected","withdrawal_id":2,"operator":902,"user":2}"#,
        r#"{"event":"balance_update","user":2,"currency":"BTC","available":30000,"locked":0}"#,
        r#"{"event":"rejected","operator":900,"withdrawal_id":2,"code":2007,"reason":"UNKNOWN_WITHDRAWAL"}"#,
        r#"{"event":"rejected","user":2,"client_order_id":0,"code":2002,"reason":"INSUFFICIENT_FUNDS"}"#,
        r#"{"event":"book","symbol":"BTC-KRW","bids":[],"asks":[[15000,2]]}"#,
        r#"{"event":"book","symbol":"ETH-KRW","bids":[],"asks":[]}"#,
        r#"{"event":"book","symbol":"AAPL-USD","bids":[],"asks":[]}"#,
        r#"{"event":"balance","user":1,"currency":"KRW","available":44977,"locked":0}"#,
        r#"{"event":"balance","user":1,"currency":"USD","available":0,"locked":0}"#,
        r#"{"event":"balance","user":1,"currency":"BTC","available":0,"locked":20000}"#,
        r#"{"event":"balance","user":1,"currency":"ETH","available":0,"locked":0}"#,
        r#"{"event":"balance","user":1,"currency":"AAPL","available":0,"locked":0}"#,
        r#"{"event":"balance","user":2,"currency":"KRW","available":953955,"locked":0}"#,
        r#"{"event":"balance","user":2,"currency":"USD","available":0,"locked":0}"#,
        r#"{"event":"balance","user":2,"currency":"BTC","available":30000,"locked":0}"#,
        r#"{"event":"balance","user":2,"currency":"ETH","available":0,"locked":0}"#,
        r#"{"event":"balance","user":2,"currency":"AAPL","available":0,"locked":0}"#,
        r#"{"event":"fees","currency":"KRW","collected":68}"#,
        r#"{"event":"fees","currency":"USD","collected":0}"#,
        r#"{"event":"fees","currency":"BTC","collected":0}"#,
        r#"{"event":"fees","currency":"ETH","collected":0}"#,
        r#"{"event":"fees","currency":"AAPL","collected":0}"#,
    ]
    .map(str::to_owned);
    assert_lines(&out, &expected);
    // KRW 44 977 + 953 955 + 68 = 1 000 000 − 1 000; BTC 20 000 + 30 000.
    assert_conserved(&out, &[("KRW", 999_000), ("BTC", 50_000)]);
}

/// docs/risk.md's worked example, then a second trade with the roles swapped (Bob the maker).
#[test]
fn a_trade_settles_to_the_unit_with_fees_and_money_is_conserved() {
    let script = "deposit,1,BTC,50000\n\
                  deposit,2,KRW,1000000\n\
                  order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
                  order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
                  cancel,1,BTC-KRW,1\n\
                  order,2,BTC-KRW,2,BUY,LIMIT,GTC,15000,2\n\
                  order,1,BTC-KRW,2,SELL,LIMIT,GTC,14990,2\n";
    let mut out = risk_on_final(script);
    let hash = take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(1, "BTC", 50_000));
    expected.extend(deposit(2, "KRW", 1_000_000));
    expected.extend([
        // Alice locks 5 × 10 000 = 50 000 sat.
        acc(1, 1, 1, "SELL", 15000, 5),
        // Bob locks 3 × unit_lock(15100) = 3 × (15100 + ceil(15.1)) = 45 348 KRW.
        acc(2, 1, 2, "BUY", 15100, 3),
        // 45 000: maker ceil(22.5) = 23, taker 45. Bob gets 45 348 − 45 000 − 45 = 303 back.
        trade(BTC, 15000, 3, "BUY", F(1, 1, 1, 2, 23), F(2, 1, 2, 0, 45)),
        // Alice's 2 resting lots: 20 000 sat back.
        gone(1, 1, 2, "USER", 1),
        // Bob locks 2 × unit_lock(15000) = 2 × 15015 = 30 030.
        acc(2, 2, 262145, "BUY", 15000, 2),
        // Alice locks 20 000 sat and takes Bob's bid at his 15000: notional 30 000, Bob's maker
        // fee 15, Alice's taker fee 30. Bob gets 30 030 − 30 000 − 15 = 15 back.
        acc(1, 2, 262146, "SELL", 14990, 2),
        trade(
            BTC,
            15000,
            2,
            "SELL",
            F(2, 2, 262145, 0, 15),
            F(1, 2, 262146, 0, 30),
        ),
    ]);
    expected.extend(final_books(&[], &[]));
    expected.extend(final_accounts(
        &[
            // 45 000 − 23 + 30 000 − 30 = 74 947 KRW; all 5 lots sold.
            (1, &[("KRW", 74_947, 0)]),
            // 1 000 000 − 45 045 − 30 015 = 924 940 KRW; 5 lots bought.
            (2, &[("KRW", 924_940, 0), ("BTC", 50_000, 0)]),
        ],
        // 23 + 45 + 15 + 30.
        &[("KRW", 113)],
    ));
    assert_lines(&out, &expected);
    assert_conserved(&out, &[("KRW", 1_000_000), ("BTC", 50_000)]);

    // The same commands through the library (risk on): the CLI prints `Engine::state_hash` and
    // `Engine::balance`.
    let config = Config::default();
    let mut engine = Engine::new(&config).unwrap();
    let (krw, btc) = (
        config.currency_id("KRW").unwrap(),
        config.currency_id("BTC").unwrap(),
    );
    let limit = |u, c, side, p, q| {
        Cmd::NewOrder(NewOrder::limit(
            UserId(u),
            SymbolId(0),
            ClientOrderId(c),
            side,
            Price(p),
            Qty(q),
        ))
    };
    for (i, cmd) in [
        Cmd::Deposit {
            user: UserId(1),
            currency: btc,
            amount: 50_000,
        },
        Cmd::Deposit {
            user: UserId(2),
            currency: krw,
            amount: 1_000_000,
        },
        limit(1, 1, Side::Sell, 15000, 5),
        limit(2, 1, Side::Buy, 15100, 3),
        Cmd::Cancel {
            user: UserId(1),
            symbol: SymbolId(0),
            client_order_id: ClientOrderId(1),
        },
        limit(2, 2, Side::Buy, 15000, 2),
        limit(1, 2, Side::Sell, 14990, 2),
    ]
    .into_iter()
    .enumerate()
    {
        engine.process_at(i as u64 * 1_000, &cmd, &mut |_: &Event| {});
    }
    assert_eq!(hash, engine.state_hash().to_string());
    assert_eq!(engine.balance(UserId(2), krw).available, 924_940);
    assert_eq!(engine.accounts().fees(krw), 113);
}

#[test]
fn an_order_the_owner_cannot_pay_for_is_rejected_insufficient_funds() {
    let mut out = risk_on_final(
        "deposit,2,KRW,45348\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         order,2,BTC-KRW,2,BUY,LIMIT,GTC,1,1\n\
         order,2,BTC-KRW,3,SELL,LIMIT,GTC,15000,1\n\
         deposit,3,KRW,45347\n\
         order,3,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         order,3,BTC-KRW,2,BUY,LIMIT,GTC,15001,3\n\
         withdraw,3,KRW,297\n\
         withdraw,3,KRW,0\n\
         order,3,BTC-KRW,3,BUY,MARKET,IOC,15000,1\n\
         order,3,BTC-KRW,4,BUY,STOP_LIMIT,GTC,100,3,stop=200\n\
         order,3,BTC-KRW,5,BUY,STOP_LIMIT,GTC,100,2,stop=200\n",
    );
    take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(2, "KRW", 45_348));
    expected.extend([
        // 3 × unit_lock(15100) = 3 × 15116 = 45 348: exactly what Bob has.
        acc(2, 1, 1, "BUY", 15100, 3),
        // unit_lock(1) = 1 + ceil(0.001) = 2 > 0.
        rejected(2, 2, 2002, "INSUFFICIENT_FUNDS"),
        // A sell locks base, and user 2 has no BTC.
        rejected(2, 3, 2002, "INSUFFICIENT_FUNDS"),
    ]);
    expected.extend(deposit(3, "KRW", 45_347));
    expected.extend([
        // One won short of 45 348.
        rejected(3, 1, 2002, "INSUFFICIENT_FUNDS"),
        // unit_lock(15001) = 15001 + ceil(15.001) = 15017; × 3 = 45 051: 296 left. A rejected
        // order used no order id, so this is order 2.
        acc(3, 2, 2, "BUY", 15001, 3),
        // Withdrawals check funds too (client order id 0: not an order).
        rejected(3, 0, 2002, "INSUFFICIENT_FUNDS"),
        rejected(3, 0, 2003, "INVALID_AMOUNT"),
        // A market buy locks at its protection price: 15000 + 15 = 15015 > 296.
        rejected(3, 3, 2002, "INSUFFICIENT_FUNDS"),
        // A stop locks when placed: unit_lock(100) = 100 + ceil(0.1) = 101; × 3 = 303 > 296 ...
        rejected(3, 4, 2002, "INSUFFICIENT_FUNDS"),
        // ... × 2 = 202 ≤ 296 (no trade yet: it waits).
        accepted(3, BTC, 5, 3, "BUY", "STOP_LIMIT", 100, 2),
    ]);
    expected.extend(final_books(&[(15100, 3), (15001, 3)], &[]));
    expected.extend(final_accounts(
        &[(2, &[("KRW", 0, 45_348)]), (3, &[("KRW", 94, 45_253)])],
        &[],
    ));
    assert_lines(&out, &expected);
    assert_conserved(&out, &[("KRW", 45_348 + 45_347)]);
}

#[test]
fn an_amend_up_beyond_funds_is_rejected_and_leaves_the_order_intact() {
    // Bob locks 2 × unit_lock(15000) = 2 × 15015 = 30 030 of 40 000: 9 970 left. One more lot
    // needs 15 015: rejected, and the order and balance are exactly as they were.
    let mut out = risk_on_final(
        "deposit,2,KRW,40000\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15000,2\n\
         amend,2,BTC-KRW,1,15000,3\n",
    );
    take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(2, "KRW", 40_000));
    expected.extend([
        acc(2, 1, 1, "BUY", 15000, 2),
        rejected(2, 1, 2002, "INSUFFICIENT_FUNDS"),
    ]);
    expected.extend(final_books(&[(15000, 2)], &[]));
    expected.extend(final_accounts(&[(2, &[("KRW", 9_970, 30_030)])], &[]));
    assert_lines(&out, &expected);

    // The same, then a price rise it cannot pay, one it can exactly, an amend down (refunded)
    // and a fill that shows the order is what the amends made it.
    let mut out = risk_on_final(
        "deposit,1,BTC,30000\n\
         deposit,2,KRW,40000\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15000,2\n\
         amend,2,BTC-KRW,1,15000,3\n\
         amend,2,BTC-KRW,1,20000,2\n\
         amend,2,BTC-KRW,1,19980,2\n\
         amend,2,BTC-KRW,1,15000,1\n\
         order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,2\n",
    );
    take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(1, "BTC", 30_000));
    expected.extend(deposit(2, "KRW", 40_000));
    expected.extend([
        acc(2, 1, 1, "BUY", 15000, 2),
        rejected(2, 1, 2002, "INSUFFICIENT_FUNDS"),
        // unit_lock(20000) = 20000 + 20 = 20020; × 2 = 40 040: 10 010 more > 9 970.
        rejected(2, 1, 2002, "INSUFFICIENT_FUNDS"),
        // unit_lock(19980) = 19980 + ceil(19.98) = 20000; × 2 = 40 000: 9 970 more, exactly.
        amended(2, 1, 19980, 2, 1),
        // 1 × 15015 = 15 015: 24 985 refunded.
        amended(2, 1, 15000, 1, 1),
        // Alice locks 20 000 sat; 1 lot trades at 15000: Bob (maker) 8, Alice (taker) 15.
        acc(1, 1, 2, "SELL", 15000, 2),
        trade(BTC, 15000, 1, "SELL", F(2, 1, 1, 0, 8), F(1, 1, 2, 1, 15)),
    ]);
    expected.extend(final_books(&[], &[(15000, 1)]));
    expected.extend(final_accounts(
        &[
            // 15 000 − 15 KRW; 1 lot sold, 1 resting (locked).
            (1, &[("KRW", 14_985, 0), ("BTC", 10_000, 10_000)]),
            // 24 985 + (15 015 − 15 000 − 8 = 7) = 24 992 = 40 000 − 15 008.
            (2, &[("KRW", 24_992, 0), ("BTC", 10_000, 0)]),
        ],
        &[("KRW", 23)],
    ));
    assert_lines(&out, &expected);
    assert_conserved(&out, &[("KRW", 40_000), ("BTC", 30_000)]);
}

#[test]
fn cancels_refund_their_locks_at_once() {
    // Each withdrawal's balance_update shows the whole balance right after a cancel.
    let mut out = risk_on_final(
        "deposit,1,BTC,50000\n\
         deposit,1,KRW,100000\n\
         order,1,BTC-KRW,1,SELL,LIMIT,GTC,16000,3\n\
         order,1,BTC-KRW,2,BUY,LIMIT,GTC,14000,4\n\
         order,1,BTC-KRW,3,BUY,STOP_LIMIT,GTC,15001,2,stop=15500\n\
         cancel,1,BTC-KRW,1\n\
         withdraw,1,BTC,50000\n\
         cancel,1,BTC-KRW,3\n\
         withdraw,1,KRW,43944\n\
         mass_cancel,1\n\
         reject_withdrawal,900,2\n",
    );
    take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(1, "BTC", 50_000));
    expected.extend([
        deposited(1, "KRW", 100_000),
        balance_update(1, "KRW", 100_000, 0),
        // 3 × 10 000 = 30 000 sat locked.
        acc(1, 1, 1, "SELL", 16000, 3),
        // 4 × (14000 + 14) = 56 056 KRW locked.
        acc(1, 2, 2, "BUY", 14000, 4),
        // A waiting stop locks too: 2 × (15001 + 16) = 30 034; 13 910 KRW left.
        accepted(1, BTC, 3, 3, "BUY", "STOP_LIMIT", 15001, 2),
        gone(1, 1, 3, "USER", 1),
        // All 50 000 sat are available again.
        withdrawal_requested(1, 1, "BTC", 50_000),
        balance_update(1, "BTC", 0, 50_000),
        gone(1, 3, 2, "USER", 3),
        // 13 910 + 30 034 = 43 944 available again.
        withdrawal_requested(2, 1, "KRW", 43_944),
        balance_update(1, "KRW", 0, 100_000),
        gone(1, 2, 4, "USER", 2),
        mass_cancelled(1, None, 1),
        // The mass cancel gave back 56 056; refusing the withdrawal unlocks the rest.
        withdrawal_rejected(2, 900, 1),
        balance_update(1, "KRW", 100_000, 0),
    ]);
    expected.extend(final_books(&[], &[]));
    // Withdrawal 1 still pending: its 50 000 sat stay locked (and in the supply).
    expected.extend(final_accounts(
        &[(1, &[("KRW", 100_000, 0), ("BTC", 0, 50_000)])],
        &[],
    ));
    assert_lines(&out, &expected);
    assert_conserved(&out, &[("KRW", 100_000), ("BTC", 50_000)]);
}

#[test]
fn ioc_and_market_remainders_are_refunded() {
    let mut out = risk_on_final(
        "deposit,1,BTC,20000\n\
         deposit,2,KRW,100000\n\
         order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,2\n\
         order,2,BTC-KRW,1,BUY,LIMIT,IOC,15001,5\n\
         order,2,BTC-KRW,2,BUY,MARKET,IOC,15500,2\n\
         withdraw,2,KRW,69970\n\
         approve,900,1\n\
         approve,902,1\n",
    );
    take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(1, "BTC", 20_000));
    expected.extend(deposit(2, "KRW", 100_000));
    expected.extend([
        acc(1, 1, 1, "SELL", 15000, 2),
        // 5 × unit_lock(15001) = 5 × (15001 + 16) = 75 085 locked.
        acc(2, 1, 2, "BUY", 15001, 5),
        // 30 000: maker 15, taker 30; of the 30 034 released, 4 come back.
        trade(BTC, 15000, 2, "BUY", F(1, 1, 1, 0, 15), F(2, 1, 2, 3, 30)),
        // 3 × 15017 = 45 051 back.
        gone(2, 1, 3, "IOC", 2),
        // 2 × unit_lock(15500) = 2 × (15500 + ceil(15.5)) = 31 032 locked, then all back: no
        // asks left.
        accepted(2, BTC, 2, 262145, "BUY", "MARKET", 15500, 2),
        gone(2, 2, 2, "IOC", 262145),
        // 100 000 − 30 000 − 30 = 69 970: every unused unit came back.
        withdrawal_requested(1, 2, "KRW", 69_970),
        balance_update(2, "KRW", 0, 69_970),
        withdrawal_approved(1, 900, 2, 1),
        withdrawal_approved(1, 902, 2, 2),
        withdrawal_completed(1, 2, "KRW", 69_970),
        balance_update(2, "KRW", 0, 0),
    ]);
    expected.extend(final_books(&[], &[]));
    expected.extend(final_accounts(
        &[(1, &[("KRW", 29_985, 0)]), (2, &[("BTC", 20_000, 0)])],
        &[("KRW", 45)],
    ));
    assert_lines(&out, &expected);
    // 29 985 + 45 = 100 000 − 69 970.
    assert_conserved(&out, &[("KRW", 30_030), ("BTC", 20_000)]);
}

#[test]
fn a_withdrawal_needs_two_distinct_operators_and_leaves_the_supply() {
    let mut out = risk_on_final(
        "deposit,1,KRW,100000\n\
         withdraw,1,KRW,100001\n\
         withdraw,1,KRW,0\n\
         withdraw,1,KRW,60000\n\
         withdraw,1,KRW,40001\n\
         approve,900,1\n\
         approve,900,1\n\
         approve,1,1\n\
         approve,903,1\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTC,10000,4\n\
         approve,901,1\n\
         approve,902,1\n\
         reject_withdrawal,902,1\n\
         approve,900,99\n",
    );
    take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(1, "KRW", 100_000));
    expected.extend([
        rejected(1, 0, 2002, "INSUFFICIENT_FUNDS"),
        rejected(1, 0, 2003, "INVALID_AMOUNT"),
        // Withdrawal 1: the amount is locked.
        withdrawal_requested(1, 1, "KRW", 60_000),
        balance_update(1, "KRW", 40_000, 60_000),
        // Locked money is not available for another withdrawal ...
        rejected(1, 0, 2002, "INSUFFICIENT_FUNDS"),
        withdrawal_approved(1, 900, 1, 1),
        // ... the same operator cannot approve twice ...
        operator_rejected(900, 1, 2006, "DUPLICATE_APPROVAL"),
        // ... users (or any id not in [accounts] operators = 900, 901, 902) cannot approve ...
        operator_rejected(1, 1, 2005, "NOT_AN_OPERATOR"),
        operator_rejected(903, 1, 2005, "NOT_AN_OPERATOR"),
        // ... nor can an order spend it: 4 × (10000 + 10) = 40 040 > 40 000.
        rejected(1, 1, 2002, "INSUFFICIENT_FUNDS"),
        // A second, distinct operator: approvals 2, the money leaves.
        withdrawal_approved(1, 901, 1, 2),
        withdrawal_completed(1, 1, "KRW", 60_000),
        balance_update(1, "KRW", 40_000, 0),
        // Finished withdrawals and ids never issued are unknown.
        operator_rejected(902, 1, 2007, "UNKNOWN_WITHDRAWAL"),
        operator_rejected(902, 1, 2007, "UNKNOWN_WITHDRAWAL"),
        operator_rejected(900, 99, 2007, "UNKNOWN_WITHDRAWAL"),
    ]);
    expected.extend(final_books(&[], &[]));
    expected.extend(final_accounts(&[(1, &[("KRW", 40_000, 0)])], &[]));
    assert_lines(&out, &expected);
    // The supply fell by the withdrawal: 100 000 − 60 000.
    assert_conserved(&out, &[("KRW", 40_000)]);
}

#[test]
fn reject_withdrawal_unlocks_the_amount() {
    let mut out = risk_on_final(
        "deposit,5,BTC,100000\n\
         withdraw,5,BTC,30000\n\
         approve,902,1\n\
         reject_withdrawal,7,1\n\
         reject_withdrawal,900,1\n\
         approve,901,1\n\
         withdraw,5,BTC,100000\n\
         reject_withdrawal,901,2\n",
    );
    take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(5, "BTC", 100_000));
    expected.extend([
        withdrawal_requested(1, 5, "BTC", 30_000),
        balance_update(5, "BTC", 70_000, 30_000),
        withdrawal_approved(1, 902, 5, 1),
        // Only operators may refuse.
        operator_rejected(7, 1, 2005, "NOT_AN_OPERATOR"),
        // Any operator may, even after another's approval: the amount is unlocked.
        withdrawal_rejected(1, 900, 5),
        balance_update(5, "BTC", 100_000, 0),
        // It is gone: a second approval finds nothing.
        operator_rejected(901, 1, 2007, "UNKNOWN_WITHDRAWAL"),
        // Ids are not reused: the next request is 2.
        withdrawal_requested(2, 5, "BTC", 100_000),
        balance_update(5, "BTC", 0, 100_000),
        withdrawal_rejected(2, 901, 5),
        balance_update(5, "BTC", 100_000, 0),
    ]);
    expected.extend(final_books(&[], &[]));
    expected.extend(final_accounts(&[(5, &[("BTC", 100_000, 0)])], &[]));
    assert_lines(&out, &expected);
    assert_conserved(&out, &[("BTC", 100_000)]);
}

#[test]
fn unknown_currencies_are_line_errors_by_code_and_rejects_by_id() {
    let run = ringbook(
        &["scenario", "-"],
        "deposit,1,KRW,10\n\
         deposit,1,DOGE,5       # not configured: the line cannot run\n\
         deposit,1,5,5          # a numeric id goes to the engine: UNKNOWN_CURRENCY\n\
         withdraw,1,65535,5\n\
         withdraw,1,krw,5       # codes are exact, like symbol names\n\
         withdraw,1,0,10        # KRW by its id\n",
    );
    assert_eq!(run.status, 1, "stderr:\n{}", run.stderr);
    let out = without_trade_identity(&run.lines());
    let mut expected = Vec::new();
    expected.extend(deposit(1, "KRW", 10));
    expected.extend([
        rejected(1, 0, 2004, "UNKNOWN_CURRENCY"),
        rejected(1, 0, 2004, "UNKNOWN_CURRENCY"),
        withdrawal_requested(1, 1, "KRW", 10),
        balance_update(1, "KRW", 0, 10),
    ]);
    assert_lines(&out, &expected);
    let errors = line_errors(&run);
    assert_eq!(errors.len(), 2, "stderr:\n{}", run.stderr);
    for (line, (n, code)) in errors.iter().zip([(2, "DOGE"), (5, "krw")]) {
        assert!(line.starts_with(&format!("line {n}: ")), "{line}");
        assert!(line.contains("unknown currency"), "{line}");
        assert!(line.contains(code), "{line}");
        assert!(line.contains("KRW, USD, BTC, ETH, AAPL"), "{line}");
    }
}

#[test]
fn a_user_without_a_deposit_is_unknown() {
    let mut out = risk_on_final(
        "order,3,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         withdraw,3,KRW,1\n\
         deposit,3,7,100\n\
         deposit,3,KRW,0\n\
         order,3,BTC-KRW,2,SELL,LIMIT,GTC,100,1\n\
         order,3,BTC-KRW,3,BUY,LIMIT,GTC,100,0\n\
         deposit,1024,KRW,100\n\
         deposit,3,KRW,101\n\
         order,3,BTC-KRW,4,BUY,LIMIT,GTC,100,1\n",
    );
    take_hash(&mut out);
    let mut expected = vec![
        rejected(3, 1, 2001, "UNKNOWN_USER"),
        rejected(3, 0, 2001, "UNKNOWN_USER"),
        // A deposit that fails opens nothing.
        rejected(3, 0, 2004, "UNKNOWN_CURRENCY"),
        rejected(3, 0, 2003, "INVALID_AMOUNT"),
        rejected(3, 2, 2001, "UNKNOWN_USER"),
        // The matching stage's validation comes first (docs/risk.md).
        rejected(3, 3, 3002, "INVALID_QUANTITY"),
        // users_max is 1024: id 1024 can never open.
        rejected(1024, 0, 2001, "UNKNOWN_USER"),
    ];
    expected.extend(deposit(3, "KRW", 101));
    // unit_lock(100) = 100 + ceil(0.1) = 101.
    expected.push(acc(3, 4, 1, "BUY", 100, 1));
    expected.extend(final_books(&[(100, 1)], &[]));
    // Only user 3's account is open.
    expected.extend(final_accounts(&[(3, &[("KRW", 0, 101)])], &[]));
    assert_lines(&out, &expected);
    assert_conserved(&out, &[("KRW", 101)]);
}

#[test]
fn final_of_an_empty_run_with_risk_on_adds_fees_and_hashes_the_accounts() {
    let mut out = risk_on_final("");
    let hash = take_hash(&mut out);
    // No open accounts: no balance lines; one fees line per currency.
    let mut expected = final_books(&[], &[]);
    expected.extend(final_accounts(&[], &[]));
    assert_lines(&out, &expected);
    // The books' words (and the client-order-id marks' tag, no marks), then per currency (5)
    // fees 0 and supply 0, then the next withdrawal id.
    let mut words = empty_book_words();
    words.extend([0; 10]);
    words.push(1);
    assert_eq!(hash, fnv1a(&words));
    assert_eq!(
        hash,
        Engine::new(&Config::default())
            .unwrap()
            .state_hash()
            .to_string()
    );
}

#[test]
fn a_config_file_sets_currencies_lock_arithmetic_and_operators() {
    let dir = temp_dir("config-risk");
    let config = dir.join("xyz.toml");
    // No [accounts] section: no operators, so no withdrawal can ever be approved.
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
            "--final",
            "--config",
            config.to_str().unwrap(),
            "-",
        ],
        "deposit,1,XYZ,5\n\
         deposit,2,USD,20000\n\
         order,1,XYZ-USD,1,SELL,LIMIT,GTC,999,5\n\
         order,2,XYZ-USD,1,BUY,LIMIT,GTC,1000,3\n\
         order,2,XYZ-USD,2,BUY,LIMIT,GTC,999,1\n\
         withdraw,2,USD,1\n\
         approve,900,1\n",
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let mut out = clean(run);
    take_hash(&mut out);
    let xyz = "XYZ-USD";
    let mut expected = Vec::new();
    expected.extend(deposit(1, "XYZ", 5));
    expected.extend(deposit(2, "USD", 20_000));
    expected.extend([
        // 5 lots × lot_size 1 = 5 XYZ locked.
        accepted(1, xyz, 1, 1, "SELL", "LIMIT", 999, 5),
        // unit_lock(1000) = 1000 × 5 + ceil(5000 × 13 / 10 000 = 6.5) = 5007; × 3 = 15 021.
        accepted(2, xyz, 1, 2, "BUY", "LIMIT", 1000, 3),
        // notional 999 × 3 × 5 = 14 985: maker ceil(10.4895) = 11, taker ceil(19.4805) = 20;
        // the buyer gets 15 021 − 14 985 − 20 = 16 back: 20 000 − 15 005 = 4 995 left.
        trade(xyz, 999, 3, "BUY", F(1, 1, 1, 2, 11), F(2, 1, 2, 0, 20)),
        // unit_lock(999) = 4995 + ceil(6.4935) = 5002 > 4 995.
        rejected(2, 2, 2002, "INSUFFICIENT_FUNDS"),
        withdrawal_requested(1, 2, "USD", 1),
        balance_update(2, "USD", 4_994, 1),
        operator_rejected(900, 1, 2005, "NOT_AN_OPERATOR"),
        book(xyz, &[], &[(999, 2)]),
        // Currencies in config order: USD, XYZ.
        balance(1, "USD", 14_974, 0),
        balance(1, "XYZ", 0, 2),
        balance(2, "USD", 4_994, 1),
        balance(2, "XYZ", 3, 0),
        fees("USD", 31),
        fees("XYZ", 0),
    ]);
    assert_lines(&out, &expected);
}

// ---------------------------------------------------------------- queries

/// The fields of a live order in `order_status` (found) and `open_order` lines.
struct O {
    user: u32,
    symbol: &'static str,
    coid: u64,
    oid: u64,
    side: &'static str,
    price: i64,
    leaves: u64,
    visible: u64,
    filled: u64,
    display: u64,
}

impl O {
    /// A plain GTC limit order with nothing filled: everything open is shown.
    fn limit(
        user: u32,
        symbol: &'static str,
        coid: u64,
        oid: u64,
        side: &'static str,
        price: i64,
        qty: u64,
    ) -> O {
        O {
            user,
            symbol,
            coid,
            oid,
            side,
            price,
            leaves: qty,
            visible: qty,
            filled: 0,
            display: 0,
        }
    }

    fn fields(&self) -> String {
        format!(
            r#""user":{},"symbol":"{}","client_order_id":{},"order_id":{},"side":"{}","type":"LIMIT","tif":"GTC","price":{},"stop_price":0,"leaves_qty":{},"visible_qty":{},"filled_qty":{},"display_qty":{},"post_only":false,"stp":"NONE"}}"#,
            self.user,
            self.symbol,
            self.coid,
            self.oid,
            self.side,
            self.price,
            self.leaves,
            self.visible,
            self.filled,
            self.display
        )
    }
}

/// A live order's status line; `notional`: what it has filled, in quote minimal units.
fn order_found(o: &O, notional: u64) -> String {
    let status = if o.filled == 0 {
        "NEW"
    } else {
        "PARTIALLY_FILLED"
    };
    format!(
        r#"{{"event":"order_status","found":true,"status":"{status}","filled_notional":{notional},{}"#,
        o.fields()
    )
}

fn order_not_found(user: u32, coid: u64) -> String {
    format!(r#"{{"event":"order_status","user":{user},"client_order_id":{coid},"found":false}}"#)
}

fn open_order(o: &O) -> String {
    format!(r#"{{"event":"open_order",{}"#, o.fields())
}

fn open_orders_end(user: u32, count: u32) -> String {
    format!(r#"{{"event":"open_orders_end","user":{user},"count":{count}}}"#)
}

fn balances_end(user: u32, count: u32) -> String {
    format!(r#"{{"event":"balances_end","user":{user},"count":{count}}}"#)
}

fn book_level(symbol: &str, side: &str, price: i64, qty: u64) -> String {
    format!(
        r#"{{"event":"book_level","symbol":"{symbol}","side":"{side}","price":{price},"qty":{qty}}}"#
    )
}

fn book_end(symbol: &str, bids: u32, asks: u32) -> String {
    format!(r#"{{"event":"book_end","symbol":"{symbol}","bid_levels":{bids},"ask_levels":{asks}}}"#)
}

/// Orders on two symbols (an iceberg partly filled), then every query, some refused.
const QUERY_SCRIPT: &str = "\
deposit,1,BTC,100000
deposit,2,KRW,1000000
deposit,1,ETH,1000000
order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5,display=2
order,1,BTC-KRW,2,SELL,LIMIT,GTC,15010,3
order,1,ETH-KRW,3,SELL,LIMIT,GTC,3000,4
order,2,BTC-KRW,1,BUY,LIMIT,GTC,14990,2
order,2,BTC-KRW,2,BUY,LIMIT,GTC,14980,1
order,2,BTC-KRW,3,BUY,LIMIT,GTC,15000,1
query_order,1,1
query_order,1,9            # never placed
Query_Open_Orders,1        # every symbol, acceptance order
query_open_orders,1,1
query_open_orders,3        # no account, no orders: just the end
query_balances,2
query_balances,5           # never opened
query_book,BTC-KRW
query_book,BTC-KRW,1
query_book,1               # ETH-KRW by id
query_book,ETH-KRW,0       # only the end
query_book,AAPL-USD        # an empty book
query_book,7               # not configured
";

/// The reply lines of QUERY_SCRIPT's queries, in order.
fn query_script_replies() -> Vec<String> {
    // After user 2's buy at 15000 took 1 lot of the iceberg: 4 open, 1 of its peak of 2 shown.
    let iceberg = O {
        leaves: 4,
        visible: 1,
        filled: 1,
        display: 2,
        ..O::limit(1, BTC, 1, 1, "SELL", 15000, 5)
    };
    let second = O::limit(1, BTC, 2, 2, "SELL", 15010, 3);
    let eth = O::limit(1, "ETH-KRW", 3, 3, "SELL", 3000, 4);
    let mut lines = vec![
        // 1 lot at 15 000 (tick 1 KRW): 15 000 KRW filled.
        order_found(&iceberg, 15_000),
        order_not_found(1, 9),
        open_order(&iceberg),
        open_order(&second),
        open_order(&eth),
        open_orders_end(1, 3),
        open_order(&iceberg),
        // The total live, not the number sent.
        open_orders_end(1, 3),
        open_orders_end(3, 0),
    ];
    // User 2 locked 2 × unit_lock(14990) = 2 × 15 005 = 30 010, 1 × unit_lock(14980) = 14 995
    // and 1 × unit_lock(15000) = 15 015, all spent on the trade (15 000 + fee 15): 1 000 000 −
    // 60 020 = 939 980 available, 45 005 locked; 1 lot = 10 000 sat bought.
    let held = [("KRW", 939_980, 45_005), ("BTC", 10_000, 0)];
    for currency in CURRENCIES {
        let (available, locked) = held
            .iter()
            .find(|h| h.0 == currency)
            .map_or((0, 0), |h| (h.1, h.2));
        lines.push(balance(2, currency, available, locked));
    }
    lines.extend([
        balances_end(2, 5),
        rejected(5, 0, 2001, "UNKNOWN_USER"),
        // Bids best first, then asks best first; the iceberg shows 1.
        book_level(BTC, "BUY", 14990, 2),
        book_level(BTC, "BUY", 14980, 1),
        book_level(BTC, "SELL", 15000, 1),
        book_level(BTC, "SELL", 15010, 3),
        book_end(BTC, 2, 2),
        book_level(BTC, "BUY", 14990, 2),
        book_level(BTC, "SELL", 15000, 1),
        book_end(BTC, 1, 1),
        book_level("ETH-KRW", "SELL", 3000, 4),
        book_end("ETH-KRW", 0, 1),
        book_end("ETH-KRW", 0, 0),
        book_end("AAPL-USD", 0, 0),
        rejected(0, 0, 3001, "UNKNOWN_SYMBOL"),
    ]);
    lines
}

/// The script without its query lines.
fn without_queries(script: &str) -> String {
    script
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("query_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn queries_answer_in_sequence_and_change_nothing() {
    let mut out = risk_on_final(QUERY_SCRIPT);
    let hash = take_hash(&mut out);
    let mut expected = Vec::new();
    expected.extend(deposit(1, "BTC", 100_000));
    expected.extend(deposit(2, "KRW", 1_000_000));
    expected.extend(deposit(1, "ETH", 1_000_000));
    expected.extend([
        acc(1, 1, 1, "SELL", 15000, 5),
        acc(1, 2, 2, "SELL", 15010, 3),
        accepted(1, "ETH-KRW", 3, 3, "SELL", "LIMIT", 3000, 4),
        acc(2, 1, 4, "BUY", 14990, 2),
        acc(2, 2, 5, "BUY", 14980, 1),
        acc(2, 3, 6, "BUY", 15000, 1),
        // 15 000 × 1: maker ceil(7.5) = 8, taker 15; the iceberg keeps 1 of its peak.
        trade(BTC, 15000, 1, "BUY", F(1, 1, 1, 4, 8), F(2, 3, 6, 0, 15)),
    ]);
    expected.extend(query_script_replies());
    expected.extend([
        book(BTC, &[(14990, 2), (14980, 1)], &[(15000, 1), (15010, 3)]),
        book("ETH-KRW", &[], &[(3000, 4)]),
        book("AAPL-USD", &[], &[]),
    ]);
    expected.extend(final_accounts(
        &[
            // 15 000 − 8 KRW; of 100 000 sat, 80 000 locked for sale and 10 000 sold; 4 ETH
            // lots of 100 000 locked.
            (
                1,
                &[
                    ("KRW", 14_992, 0),
                    ("BTC", 20_000, 70_000),
                    ("ETH", 600_000, 400_000),
                ],
            ),
            (2, &[("KRW", 939_980, 45_005), ("BTC", 10_000, 0)]),
        ],
        &[("KRW", 23)],
    ));
    assert_lines(&out, &expected);

    // The queries changed nothing: the same script without them prints the same lines less
    // the replies (after the 6 deposit and 7 order lines), and ends in the same state.
    let mut plain = risk_on_final(&without_queries(QUERY_SCRIPT));
    assert_eq!(take_hash(&mut plain), hash);
    out.drain(13..13 + query_script_replies().len());
    assert_lines(&out, &plain);
    // (Checked without the replies: a balances reply's lines are `balance` lines too.)
    assert_conserved(
        &out,
        &[("KRW", 1_000_000), ("BTC", 100_000), ("ETH", 1_000_000)],
    );
}

#[test]
fn queries_print_the_same_bytes_through_every_pipeline_layout() {
    for extra in [&[][..], &["--no-risk"][..]] {
        let mut args = vec!["scenario", "--final"];
        args.extend_from_slice(extra);
        args.push("-");
        let direct = ringbook(&args, QUERY_SCRIPT);
        // With --no-risk the deposits are line errors; the queries still run.
        assert_eq!(
            direct.status,
            i32::from(!extra.is_empty()),
            "{}",
            direct.stderr
        );
        assert!(direct.stdout.contains(r#""event":"book_end""#));
        for layout in ["fused", "J|RMS", "split"] {
            for transport in ["disruptor", "crossbeam"] {
                let mut args = vec![
                    "scenario",
                    "--pipeline",
                    "--layout",
                    layout,
                    "--transport",
                    transport,
                    "--final",
                ];
                args.extend_from_slice(extra);
                args.push("-");
                let piped = ringbook(&args, QUERY_SCRIPT);
                let what = format!("--layout {layout} --transport {transport} {extra:?}");
                assert_eq!(piped.status, direct.status, "{what}: status");
                assert_eq!(piped.stderr, direct.stderr, "{what}: stderr");
                assert_eq!(piped.stdout, direct.stdout, "{what}: stdout");
            }
        }
    }
}

#[test]
fn with_no_risk_a_balances_query_is_refused_by_the_engine() {
    let out = book_only(
        "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5\n\
         query_balances,1\n\
         query_open_orders,1,0\n\
         query_order,1,1\n",
    );
    let o = O::limit(1, BTC, 1, 1, "SELL", 15000, 5);
    assert_lines(
        &out,
        &[
            acc(1, 1, 1, "SELL", 15000, 5),
            rejected(1, 0, 2010, "ACCOUNTS_DISABLED"),
            // A limit of 0 sends no order, only the count.
            open_orders_end(1, 1),
            order_found(&o, 0),
        ],
    );
}

#[test]
fn query_lines_with_bad_fields_are_line_errors() {
    let run = ringbook(
        &["scenario", "-"],
        "query_order,1\n\
         query_order,1,2,3\n\
         query_open_orders\n\
         query_open_orders,1,-1\n\
         query_balances,x\n\
         query_balances,1,KRW\n\
         query_book,DOGE-KRW\n\
         query_book,BTC-KRW,4294967296\n\
         query_book,65536\n\
         query_orders,1\n\
         query_book,BTC-KRW,2   # still runs after the errors above\n",
    );
    assert_eq!(run.status, 1, "stderr:\n{}", run.stderr);
    assert_eq!(run.stdout, format!("{}\n", book_end(BTC, 0, 0)));
    let expect = [
        (
            1,
            "missing fields: expected query_order,<user>,<client_order_id>",
        ),
        (
            2,
            "too many fields: expected query_order,<user>,<client_order_id>",
        ),
        (
            3,
            "missing fields: expected query_open_orders,<user>[,<limit>]",
        ),
        (4, r#"limit "-1" is not an integer in 0..=4294967295"#),
        (5, r#"user "x" is not an integer in 0..=4294967295"#),
        (6, "too many fields: expected query_balances,<user>"),
        (7, r#"unknown symbol "DOGE-KRW""#),
        (
            8,
            r#"depth "4294967296" is not an integer in 0..=4294967295"#,
        ),
        (9, r#"symbol id "65536" is not an integer in 0..=65535"#),
        (10, r#"unknown command "query_orders""#),
    ];
    let errors = line_errors(&run);
    assert_eq!(errors.len(), expect.len(), "stderr:\n{}", run.stderr);
    for (line, (n, needle)) in errors.iter().zip(expect) {
        let prefix = format!("line {n}: ");
        assert!(
            line.starts_with(&prefix),
            "{line:?} should start {prefix:?}"
        );
        assert!(line.contains(needle), "{line:?} should mention {needle:?}");
    }
    assert!(
        run.stderr
            .contains("10 lines of standard input could not be run"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------- engine time and trade identity

/// A trade line with its identity: `trade_id` and `ts` right after the symbol.
fn trade_at(id: u64, ts: u64, line: String) -> String {
    line.replacen(
        r#","price":"#,
        &format!(r#","trade_id":{id},"ts":{ts},"price":"#),
        1,
    )
}

#[test]
fn trade_ids_and_engine_time() {
    let script = "order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,5   # stamped 0\n\
                  order,2,BTC-KRW,1,BUY,LIMIT,GTC,15000,1    # 1 µs: BTC-KRW trade 1\n\
                  clock,1700000000000\n\
                  order,1,ETH-KRW,2,SELL,LIMIT,GTC,3000,2    # at the clock\n\
                  order,2,ETH-KRW,2,BUY,LIMIT,GTC,3000,1     # +1 µs: ETH-KRW trade 1\n\
                  query_book,BTC-KRW,0                       # a query takes no time\n\
                  order,3,BTC-KRW,1,BUY,LIMIT,GTC,15000,2    # +2 µs: BTC-KRW trade 2\n\
                  clock,1699999999999                        # backwards: a line error\n\
                  clock,1700000000000                        # the same again: the script is past it\n\
                  order,4,ETH-KRW,1,BUY,LIMIT,IOC,3000,1     # +3 µs: ETH-KRW trade 2\n";
    let t0 = 1_700_000_000_000_000_000u64;
    let expected = vec![
        acc(1, 1, 1, "SELL", 15000, 5),
        acc(2, 1, 2, "BUY", 15000, 1),
        trade_at(
            1,
            1_000,
            trade(BTC, 15000, 1, "BUY", F(1, 1, 1, 4, 8), F(2, 1, 2, 0, 15)),
        ),
        accepted(1, "ETH-KRW", 2, 262146, "SELL", "LIMIT", 3000, 2),
        accepted(2, "ETH-KRW", 2, 262147, "BUY", "LIMIT", 3000, 1),
        // The ETH-KRW trade: its identity is checked below (its fees are not this test's
        // subject).
        String::new(),
        book_end(BTC, 0, 0),
        acc(3, 1, 524291, "BUY", 15000, 2),
        trade_at(
            2,
            t0 + 2_000,
            trade(
                BTC,
                15000,
                2,
                "BUY",
                F(1, 1, 1, 2, 15),
                F(3, 1, 524291, 0, 30),
            ),
        ),
        accepted(4, "ETH-KRW", 1, 786435, "BUY", "LIMIT", 3000, 1),
        String::new(),
    ];
    for extra in [
        &[][..],
        &["--pipeline"][..],
        &["--pipeline", "--layout", "split"][..],
    ] {
        let mut args = vec!["scenario", "--no-risk"];
        args.extend_from_slice(extra);
        args.push("-");
        let run = ringbook(&args, script);
        assert_eq!(run.status, 1, "{extra:?} stderr:\n{}", run.stderr);
        assert!(
            run.stderr.contains("line 8: clock goes backwards"),
            "{}",
            run.stderr
        );
        let lines = run.lines();
        assert_eq!(lines.len(), expected.len(), "{extra:?}:\n{}", run.stdout);
        for (i, (line, want)) in lines.iter().zip(&expected).enumerate() {
            if want.is_empty() {
                // The ETH-KRW trades: their identity, exactly.
                let (id, ts) = if i < 8 {
                    (1, t0 + 1_000)
                } else {
                    (2, t0 + 3_000)
                };
                assert!(
                    line.starts_with(&format!(
                        r#"{{"event":"trade","symbol":"ETH-KRW","trade_id":{id},"ts":{ts},"price":3000,"qty":1,"#
                    )),
                    "{extra:?} line {}: {line}",
                    i + 1
                );
            } else {
                assert_eq!(line, want, "{extra:?} line {}", i + 1);
            }
        }
    }
}

// ---------------------------------------------------------------- cancel and amend by order id

#[test]
fn cancel_and_amend_by_engine_order_id() {
    let out = book_only(
        "order,1,BTC-KRW,5,SELL,LIMIT,GTC,15000,4     # order id 1\n\
         order,2,BTC-KRW,5,BUY,LIMIT,GTC,14000,2      # order id 2\n\
         amend_order,1,BTC-KRW,1,15000,3              # reduce in place\n\
         cancel_order,2,BTC-KRW,1                     # user 2 names user 1's order\n\
         amend_order,2,BTC-KRW,1,15000,1              # the same, as an amend\n\
         cancel_order,1,ETH-KRW,1                     # the right user, another symbol\n\
         cancel_order,1,BTC-KRW,99                    # never issued\n\
         amend_order,2,BTC-KRW,2,15000,2              # re-priced across: trades\n\
         cancel_order,1,BTC-KRW,1                     # what is left of order 1\n\
         cancel_order,1,BTC-KRW,1                     # gone now\n\
         amend_order,2,BTC-KRW,2,15000,0              # order 2 filled: gone\n",
    );
    let expected = vec![
        acc(1, 5, 1, "SELL", 15000, 4),
        acc(2, 5, 2, "BUY", 14000, 2),
        amended(1, 5, 15000, 3, 1),
        rejected(2, 0, 3014, "NOT_YOUR_ORDER"),
        rejected(2, 0, 3014, "NOT_YOUR_ORDER"),
        // The user's own order, named on the wrong symbol: its client order id is told.
        rejected(1, 5, 3010, "UNKNOWN_ORDER"),
        rejected(1, 0, 3010, "UNKNOWN_ORDER"),
        amended(2, 5, 15000, 2, 2),
        // 15000 × 2 = 30000: maker 15, taker 30.
        trade(BTC, 15000, 2, "BUY", F(1, 5, 1, 1, 15), F(2, 5, 2, 0, 30)),
        gone(1, 5, 1, "USER", 1),
        rejected(1, 0, 3010, "UNKNOWN_ORDER"),
        rejected(2, 0, 3010, "UNKNOWN_ORDER"),
    ];
    assert_lines(&out, &expected);
}

#[test]
fn an_order_takes_the_lowest_free_slot_and_the_first_id_that_names_it() {
    // A pool of 4 slots (order-id modulus 4): an order goes to the lowest free slot, slot 0
    // counting last, and gets the first id from the next one on that names that slot (is equal
    // to it modulo 4). So no two live orders have ids equal modulo 4, and ids increase.
    let dir = temp_dir("lowest-free-slot");
    let config = dir.join("small.toml");
    let toml = std::fs::read_to_string(manifest_dir().join("../engine/src/default_config.toml"))
        .expect("the default config")
        .replace("orders_max = ", "orders_max = 4 # was ");
    std::fs::write(&config, toml).unwrap();
    let run = ringbook(
        &[
            "scenario",
            "--no-risk",
            "--config",
            config.to_str().unwrap(),
            "-",
        ],
        "order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,2,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,3,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,4,BUY,LIMIT,GTC,100,1\n\
         cancel_order,1,BTC-KRW,2\n\
         cancel_order,1,BTC-KRW,3\n\
         cancel_order,1,BTC-KRW,4\n\
         order,1,BTC-KRW,5,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,6,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,7,BUY,LIMIT,GTC,100,1\n\
         order,1,BTC-KRW,8,BUY,LIMIT,GTC,100,1\n\
         cancel_order,1,BTC-KRW,1\n\
         cancel_order,1,BTC-KRW,5\n\
         cancel_order,1,BTC-KRW,6\n",
    );
    let out = clean(run);
    assert_lines(
        &out,
        &[
            acc(1, 1, 1, "BUY", 100, 1),
            acc(1, 2, 2, "BUY", 100, 1),
            acc(1, 3, 3, "BUY", 100, 1),
            // Slots 1, 2, 3 taken: slot 0, and 4 names it.
            acc(1, 4, 4, "BUY", 100, 1),
            gone(1, 2, 1, "USER", 2),
            gone(1, 3, 1, "USER", 3),
            gone(1, 4, 1, "USER", 4),
            // Slots 2, 3 and 0 are free: slot 2, and the first id from 5 that names it is 6
            // (5 names slot 1, where order 1 still lives). Then slot 3 (id 7), then slot 0 (8).
            acc(1, 5, 6, "BUY", 100, 1),
            acc(1, 6, 7, "BUY", 100, 1),
            acc(1, 7, 8, "BUY", 100, 1),
            rejected(1, 8, 3011, "ORDER_POOL_FULL"),
            gone(1, 1, 1, "USER", 1),
            // Id 5 was never issued; 6 is client order 5's.
            rejected(1, 0, 3010, "UNKNOWN_ORDER"),
            gone(1, 5, 1, "USER", 6),
        ],
    );
}

#[test]
fn query_order_reports_finished_orders_with_status_filled_quantity_and_notional() {
    let out = risk_on(
        "deposit,1,BTC,100000\n\
         deposit,2,KRW,1000000\n\
         order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,2\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         order,2,BTC-KRW,2,BUY,LIMIT,GTC,15000,1000000\n\
         query_order,2,1\n\
         cancel,2,BTC-KRW,1\n\
         query_order,1,1\n\
         query_order,2,1\n\
         query_order,2,2\n\
         query_order,2,3\n",
    );
    let status: Vec<&String> = out.iter().filter(|l| l.contains("order_status")).collect();
    // Engine time: 0 for the first command, 1 µs more for each that is not a query.
    let expected = [
        // Live, 2 of 3 filled at 15 000 (tick 1 KRW): 30 000 KRW.
        order_found(
            &O {
                leaves: 1,
                visible: 1,
                filled: 2,
                ..O::limit(2, BTC, 1, 2, "BUY", 15100, 3)
            },
            30_000,
        ),
        // The maker filled completely at the trade (the fourth command).
        r#"{"event":"order_status","found":true,"status":"FILLED","user":1,"symbol":"BTC-KRW","client_order_id":1,"order_id":1,"side":"SELL","type":"LIMIT","price":15000,"filled_qty":2,"filled_notional":30000,"ts":3000}"#.to_string(),
        r#"{"event":"order_status","found":true,"status":"CANCELLED","reason":"USER","user":2,"symbol":"BTC-KRW","client_order_id":1,"order_id":2,"side":"BUY","type":"LIMIT","price":15100,"filled_qty":2,"filled_notional":30000,"ts":5000}"#.to_string(),
        // Refused by the risk stage: never got an order id.
        r#"{"event":"order_status","found":true,"status":"REJECTED","code":2002,"reason":"INSUFFICIENT_FUNDS","user":2,"symbol":"BTC-KRW","client_order_id":2,"order_id":0,"side":"BUY","type":"LIMIT","price":15000,"filled_qty":0,"filled_notional":0,"ts":4000}"#.to_string(),
        order_not_found(2, 3),
    ];
    assert_eq!(status, expected.iter().collect::<Vec<_>>());
}

/// `query_order_id` through the real binary: the same answer as `query_order` by client order
/// id, live and after the order finished; another user's order id, an id never issued and id 0
/// (what a rejected order carries) are not found.
#[test]
fn query_order_id_answers_like_query_order_for_the_owner_only() {
    let out = risk_on(
        "deposit,1,BTC,100000\n\
         deposit,2,KRW,1000000\n\
         order,1,BTC-KRW,1,SELL,LIMIT,GTC,15000,2\n\
         order,2,BTC-KRW,1,BUY,LIMIT,GTC,15100,3\n\
         order,2,BTC-KRW,2,BUY,LIMIT,GTC,15000,1000000\n\
         query_order,2,1\n\
         query_order_id,2,2\n\
         cancel,2,BTC-KRW,1\n\
         query_order,2,1\n\
         query_order_id,2,2\n\
         query_order,1,1\n\
         query_order_id,1,1\n\
         query_order_id,1,2\n\
         query_order_id,2,99\n\
         query_order_id,2,0\n",
    );
    let status: Vec<&String> = out.iter().filter(|l| l.contains("order_status")).collect();
    assert_eq!(status.len(), 9, "{out:#?}");
    // Live, finished (cancelled by its owner), and the other user's finished maker: by client
    // order id and by engine order id alike.
    assert_eq!(status[0], status[1]);
    assert_eq!(status[2], status[3]);
    assert!(
        status[3].contains(r#""status":"CANCELLED""#),
        "{}",
        status[3]
    );
    assert_eq!(status[4], status[5]);
    assert!(status[5].contains(r#""status":"FILLED""#), "{}", status[5]);
    // User 1 asking about user 2's order; an id never issued; id 0.
    assert_eq!(*status[6], order_not_found(1, 0));
    assert_eq!(*status[7], order_not_found(2, 0));
    assert_eq!(*status[8], order_not_found(2, 0));
}

/// A script whose clock runs to the end of 64-bit time: engine time stops at `TIME_MAX_NS`
/// (2^64 − 2 ns), a GTD order due then expires, orders trade at that time, and the journal it
/// leaves replays to the same state. (An operator red-team pass: at `u64::MAX` — the expiry
/// queue's "never" — the engine panicked, and the journaled command panicked every recovery.)
#[test]
fn a_clock_at_the_end_of_time_neither_panics_nor_poisons_the_journal() {
    let last_ms = u64::MAX / 1_000_000; // the latest `clock` a script can give
    let mut script = format!(
        "deposit,1,KRW,100000000000\ndeposit,2,BTC,100000000000\nclock,{}\n\
         order,1,BTC-KRW,1,BUY,LIMIT,GTD,99,1,expire={last_ms}\nclock,{last_ms}\n",
        last_ms - 1
    );
    // One µs a command from there on: the clock passes u64::MAX within these.
    for coid in 2..=600 {
        script.push_str(&format!("order,1,BTC-KRW,{coid},BUY,LIMIT,GTC,100,1\n"));
    }
    script.push_str("order,2,BTC-KRW,1,SELL,LIMIT,GTC,100,3\n");
    let run = ringbook(&["scenario", "--market-data", "--final", "-"], &script);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let lines = run.lines();
    let expired = lines
        .iter()
        .find(|l| l.contains(r#""reason":"EXPIRED""#))
        .expect("the GTD order expires");
    assert!(expired.contains(r#""client_order_id":1"#), "{expired}");
    let time_max = (u64::MAX - 1).to_string();
    let trades: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with(r#"{"event":"trade""#))
        .collect();
    assert_eq!(trades.len(), 3, "{trades:?}");
    assert!(trades
        .iter()
        .all(|t| t.contains(&format!(r#""ts":{time_max}"#))));
    let hash = lines.last().unwrap().to_string();
    assert!(hash.contains("state_hash"), "{hash}");
    // Through the journaled pipeline, and replayed from its journal: the same state.
    let dir = temp_dir("end-of-time");
    let journal = dir.join("journal");
    let journal = journal.to_str().unwrap();
    let run = ringbook(
        &[
            "scenario",
            "--pipeline",
            "--final",
            "--journal",
            journal,
            "-",
        ],
        &script,
    );
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(run.lines().last().unwrap(), &hash);
    let replay = ringbook(&["journal", "replay", journal], "");
    assert_eq!(replay.status, 0, "{}", replay.stderr);
    assert_eq!(replay.lines().last().unwrap(), &hash);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A line longer than 4 KiB is refused by number, without its text, and costs no memory (a
/// 140 MB line took 2.4 GB and its text was echoed whole: a red-team finding); the lines
/// around it run. The limit is on the text: a line of 4096 bytes is read whether it ends in LF
/// or CRLF (the CR counted towards it), one of 4097 is refused either way.
#[test]
fn an_overlong_line_is_refused_without_echoing_it() {
    // `deposit,1,KRW,7` padded with spaces to exactly 4096 bytes.
    let padded = format!("{:<4096}", "deposit,1,KRW,7");
    let script = format!(
        "deposit,1,KRW,5\n{}\n{}\n{padded}\r\n{padded}\n{}\r\n{}",
        ",".repeat(8 << 20),
        "x".repeat(4097),
        "x".repeat(4097),
        "\0".repeat(1 << 20)
    );
    let run = ringbook(&["scenario", "-"], script);
    assert_eq!(
        run.status,
        1,
        "{}",
        &run.stderr[..run.stderr.len().min(300)]
    );
    assert_eq!(
        run.stderr.lines().collect::<Vec<_>>(),
        [
            "line 2: longer than 4096 bytes",
            "line 3: longer than 4096 bytes",
            "line 6: longer than 4096 bytes",
            "line 7: longer than 4096 bytes",
            "ringbook scenario: 4 lines of standard input could not be run",
        ]
    );
    assert_eq!(
        run.lines()
            .iter()
            .filter(|l| l.contains(r#""event":"deposited""#))
            .count(),
        3
    );
}
