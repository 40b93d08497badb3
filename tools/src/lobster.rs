//! `ringbook lobster MESSAGE_CSV ORDERBOOK_CSV [--json] [--levels N]`: replay real NASDAQ order
//! flow (a LOBSTER file pair) through ringbook's [`Engine`] and check, after every message, that
//! ringbook's book is the book LOBSTER recorded.
//!
//! # The data
//!
//! A LOBSTER message file holds one event per line, `time,type,order_id,size,price,direction`;
//! the orderbook file holds, for each message, the visible book *after* it: `N` levels per side as
//! `ask_price_i,ask_size_i,bid_price_i,bid_size_i` for `i = 1..=N` (`--levels`, default 10).
//! Missing levels are written as the dummy prices `-9999999999` (bids) / `9999999999` (asks)
//! with size 0, and read as "no level". LOBSTER prices are dollars × 10 000; ringbook's
//! `AAPL-USD` (the default config) counts cents per share and whole shares, so a ringbook price
//! is `lobster_price / 100`. A price of types 1–4 or of a book level that is not a whole number
//! of cents is invalid input (exit status 2), as is any malformed line; the error names the
//! file and line. (Type 5 prices are not used, and may be sub-penny.)
//!
//! # The replay
//!
//! Three engine users take part: *book* owns every order the message file adds (client order
//! id = LOBSTER id), *start* owns synthetic orders for liquidity the message file never added
//! (below), and *taker* sends the incoming orders behind executions. Message by message:
//!
//! - type 1, new limit order: a GTC limit order of *book*. A LOBSTER new order never crosses (a
//!   marketable order appears as type-4 executions plus a type 1 for what rests), so one that
//!   trades in ringbook is reported as an anomaly.
//! - type 2, partial cancel of `size`: [`Command::Amend`] at the same price to open quantity
//!   `leaves − size`, which reduces the order in place and keeps its time priority.
//! - type 3, delete: [`Command::Cancel`] (the message's size must be the order's open quantity).
//! - type 4, execution of a visible order (the direction is the side of the *resting* order):
//!   ringbook is given what caused it, an incoming marketable order from *taker* — an IOC limit
//!   on the opposite side at the message's price for the message's size — and its `Trade` events
//!   must show that it filled the order the message names, and all of `size` of it. This is the
//!   price-time priority check: the named order must be the oldest at the best price.
//! - type 5 (execution of a hidden order) and 7 (trading halt): no effect on the visible book;
//!   counted only.
//!
//! A type 2, 3 or 4 naming an id never added by a type 1 refers to liquidity ringbook only knows
//! in aggregate: it acts on the oldest synthetic order at its side and price (a delete takes
//! just its size off the synthetic order), and an execution of it must fill that synthetic
//! order.
//!
//! Each message is applied first — that is ringbook's *prediction* — and only then is its
//! orderbook line read and compared with ringbook's depth.
//!
//! # The starting book
//!
//! The book is not empty before the first message: orders resting from before the open are not
//! in the message file, and neither are their ids. The first orderbook line is the book *after*
//! message 1, so the starting book is that line with message 1's effect undone (a new order's
//! size taken off its level, a cancelled or executed size put back). Starting orders are older
//! than every order in the message file, and their individual sizes are unknown, so each starting
//! price level becomes one synthetic *start* order, placed before message 1 and therefore at the
//! front of its level.
//!
//! # The blind spot
//!
//! Only `N` levels are shown, and — the decisive quirk — the message file only records events
//! *within* them: LOBSTER's message file "contains indicators for the type of event causing an
//! update of the limit order book in the requested price range" (lobsterdata.com, output
//! structure). Every type 1–4 of the sample lies within the 10 levels shown before or after it,
//! while liquidity changes silently beyond them: in the sample, bids at $585.40 × 50, $585.38 ×
//! 22 and $585.36 × 5 come into view at lines 147–151 with no type 1 (those orders, ids 13419503,
//! 3790155, 4725582 and 12695153, are executed at lines 448–488); the starting ask $587.65 × 1160
//! drops out of view at line 10 and is gone when the level would be back in view at line 13; the
//! bid at $585.00 grows from 100 to 4997 shares out of view (line 441); the bid at $584.99 loses
//! 100 (line 846). So ringbook cannot know a level while it is out of view — not only the
//! starting book's hidden depth, but any level that was pushed out of view and comes back.
//!
//! The *view* of a side is the previous line's levels down to its `N`-th (or the whole side, if
//! it showed fewer than `N`). What lies within it, ringbook must predict exactly. A level beyond
//! it that the current line shows has *come into view* — as the line's `N`-th level, since one
//! message changes at most one level. After comparing each line, every price that just came
//! into view is brought to the size the line shows. (Starting liquidity beyond the first line's
//! depth, appearing at a level empty in ringbook, is one case of this; levels that left the view
//! and come back are the others.)
//!
//! - The line shows more than ringbook has (in the sample: 11 times, 10 of them at a level
//!   ringbook has nothing at): the difference is liquidity ringbook could not see, and ringbook
//!   adds a synthetic *start* order for it at the back of the level. At a level empty in
//!   ringbook, the back is the front, so the order's age does not matter: that is exact even for
//!   starting liquidity, which is older than every message order. At a level where ringbook
//!   already has orders, those were placed while the level was in view (every message lies in
//!   view), and while a level is in view ringbook holds all of it, starting liquidity included
//!   (taken from the first line, or when the level first came into view). So what ringbook
//!   lacks arrived later, while the level was out of view, and belongs behind them.
//! - The line shows less (3 times in the sample): orders were cancelled while the level was out
//!   of view. Which ones the data does not say; the guess is a *book* order of exactly the
//!   missing size (the newest such), otherwise synthetic liquidity, then *book* orders, newest
//!   first. A wrong guess shows up later as an anomaly or a failed execution.
//!
//! # What is checked
//!
//! - `top5_mismatches`: messages after which the best `min(5, N)` levels of either side (price
//!   and size) differ from the line, among the levels that were in view before the message.
//!   With `N ≥ 6` these are simply the best 5 levels, since a level comes into view only as the
//!   `N`-th.
//! - `top10_mismatches` (informational): messages after which any of the `N` levels differs,
//!   levels that just came into view included; the human summary also gives the count for the
//!   levels that were in view, which should be 0.
//! - `visible_executions` / `executions_filling_named_order`: type 4 messages, and those whose
//!   incoming order filled exactly the named order.
//! - `hidden_executions`: type 5 messages; `state_hash`: the engine's final state digest.
//! - `md_mismatches` / `md_top5_mismatches`: the market-data check. Every event of every command
//!   also feeds a market-data builder (docs/market-data.md), and a subscriber's book starts
//!   from its snapshot and applies every depth update; after each message that book's best
//!   `N` levels must equal ringbook's own depth (`md_mismatches`: messages where they differ)
//!   and, like ringbook's, LOBSTER's levels in view (`md_top5_mismatches`, the same rule as
//!   `top5_mismatches`). A gap in the updates' `md_seq` is an anomaly.
//!
//! The first few top-5 mismatches (message line, file levels beside ringbook's), failed
//! executions and anomalies go to stderr. Exit status: 0 if there is no top-5 mismatch (ringbook's
//! or the market-data book's), the market-data book always equals ringbook's, and every visible
//! execution filled the named order; 1 otherwise; 2 for unreadable or invalid input.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringbook_engine::book::{BookSection, OrderView};
use ringbook_engine::config::ClientOrderIdRule;
use ringbook_engine::marketdata::{L2Book, MarketData, MdMessage};
use ringbook_engine::prelude::*;

/// Arguments of `ringbook lobster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// LOBSTER message file (`…_message_N.csv`).
    pub message_csv: PathBuf,
    /// LOBSTER orderbook file (`…_orderbook_N.csv`): the book after each message.
    pub orderbook_csv: PathBuf,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Levels per side in the orderbook file (the N of `…_orderbook_N.csv`).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub levels: u16,
}

/// The symbol the replay trades (cents per share, one share per lot).
const SYMBOL: &str = "AAPL-USD";
/// LOBSTER price units per ringbook tick (one cent).
const LOBSTER_PER_CENT: i64 = 100;
/// The dummy prices LOBSTER writes for missing levels.
const DUMMY_ASK: i64 = 9_999_999_999;
const DUMMY_BID: i64 = -9_999_999_999;
/// Owner of every order the message file adds (client order id = LOBSTER id).
const BOOK: UserId = UserId(1);
/// Owner of the synthetic starting-book orders.
const START: UserId = UserId(2);
/// Owner of the incoming orders behind executions.
const TAKER: UserId = UserId(3);
/// How many mismatches, failed executions and anomalies are detailed on stderr.
const SHOW_MAX: usize = 5;

/// Runs the subcommand.
pub fn run(args: Args) -> ExitCode {
    match replay(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.human());
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ringbook lobster: {e}");
            ExitCode::from(2)
        }
    }
}

/// Invalid or unreadable input.
#[derive(Debug)]
struct InputError(String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn at(file: &Path, line: usize, msg: impl std::fmt::Display) -> InputError {
    InputError(format!("{}:{line}: {msg}", file.display()))
}

/// One line of the message file.
#[derive(Clone, Copy, Debug)]
struct Message {
    line: usize,
    kind: u8,
    id: u64,
    size: u64,
    /// Ringbook price (cents) for types 1–4; 0 for the others.
    price: i64,
    /// The price as written (dollars × 10 000; a code for type 7).
    raw_price: i64,
    /// Side of the order the message is about (for type 4, the resting order).
    side: Side,
}

impl Message {
    fn describe(&self) -> String {
        if self.kind == 7 {
            return format!("type 7, trading halt code {}", self.raw_price);
        }
        format!(
            "type {} id {} size {} price {} {}",
            self.kind,
            self.id,
            self.size,
            dollars(self.raw_price),
            self.side.name()
        )
    }
}

/// One book: `(price in cents, size)` per level, best first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Levels {
    asks: Vec<(i64, u64)>,
    bids: Vec<(i64, u64)>,
}

impl Levels {
    fn side(&self, side: Side) -> &[(i64, u64)] {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Vec<(i64, u64)> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Equal in the best `n` levels of both sides.
    fn top_eq(&self, other: &Levels, n: usize) -> bool {
        self.asks.iter().take(n).eq(other.asks.iter().take(n))
            && self.bids.iter().take(n).eq(other.bids.iter().take(n))
    }

    /// Adds `delta` to the level at `price` (creating or removing it); `None` if it would go
    /// negative.
    fn adjust(&mut self, side: Side, price: i64, delta: i64) -> Option<()> {
        let levels = self.side_mut(side);
        let pos = levels.iter().position(|&(p, _)| !better(side, p, price));
        match pos {
            Some(i) if levels[i].0 == price => {
                let q = levels[i].1.checked_add_signed(delta)?;
                if q == 0 {
                    levels.remove(i);
                } else {
                    levels[i].1 = q;
                }
            }
            _ if delta < 0 => return None,
            _ if delta == 0 => {}
            pos => levels.insert(pos.unwrap_or(levels.len()), (price, delta as u64)),
        }
        Some(())
    }
}

/// True if `a` is a strictly better price than `b` on `side`.
fn better(side: Side, a: i64, b: i64) -> bool {
    match side {
        Side::Buy => a > b,
        Side::Sell => a < b,
    }
}

/// A LOBSTER price (dollars × 10 000) as dollars, with two to four decimals.
fn dollars(raw: i64) -> String {
    // Sign and magnitude apart: Euclidean parts print -585.32 as "-586.6800".
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    let mut s = format!("{sign}{}.{:04}", abs / 10_000, abs % 10_000);
    while s.ends_with('0') && s.len() - s.find('.').unwrap_or(0) > 3 {
        s.pop();
    }
    s
}

/// A price in cents as dollars.
fn cents(p: i64) -> String {
    format!("{}.{:02}", p.div_euclid(100), p.rem_euclid(100))
}

fn field<T: std::str::FromStr>(
    file: &Path,
    line: usize,
    name: &str,
    text: &str,
) -> Result<T, InputError> {
    text.trim().parse().map_err(|_| {
        let shown = clipped(text);
        at(
            file,
            line,
            format!("{name} {shown:?} is not a valid number"),
        )
    })
}

#[cfg(test)]
#[test]
fn negative_prices_print_as_written() {
    assert_eq!(dollars(-5_853_200), "-585.32");
    assert_eq!(dollars(5_853_200), "585.32");
    assert_eq!(dollars(-1), "-0.0001");
    assert_eq!(dollars(i64::MIN), "-922337203685477.5808");
}

/// At most the first 40 characters of an input field, for an error message (a field of a
/// malformed file can be megabytes long).
fn clipped(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Fields in a CSV line, counted before any are collected (a line of a malformed file can hold
/// millions).
fn field_count(text: &str) -> usize {
    text.bytes().filter(|&b| b == b',').count() + 1
}

/// Converts a LOBSTER price to cents, checking it is whole cents within the symbol's band.
fn to_cents(file: &Path, line: usize, raw: i64, band: (i64, i64)) -> Result<i64, InputError> {
    if raw % LOBSTER_PER_CENT != 0 {
        return Err(at(
            file,
            line,
            format!(
                "price {raw} is not a whole number of cents ({SYMBOL} trades in ticks of $0.01 = 100)"
            ),
        ));
    }
    let p = raw / LOBSTER_PER_CENT;
    if p < band.0 || p > band.1 {
        return Err(at(
            file,
            line,
            format!(
                "price {raw} (${}) is outside {SYMBOL}'s price band ${}..=${}",
                cents(p),
                cents(band.0),
                cents(band.1)
            ),
        ));
    }
    Ok(p)
}

/// The non-empty lines of a file, numbered from 1; an empty line that is not the last is an
/// error.
fn read_lines(file: &Path) -> Result<Vec<(usize, String)>, InputError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| InputError(format!("cannot read {}: {e}", file.display())))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            if lines[i..].iter().all(|l| l.trim().is_empty()) {
                break;
            }
            return Err(at(file, i + 1, "empty line"));
        }
        out.push((i + 1, l.to_string()));
    }
    if out.is_empty() {
        return Err(InputError(format!("{}: no data lines", file.display())));
    }
    Ok(out)
}

fn parse_message(
    file: &Path,
    line: usize,
    text: &str,
    band: (i64, i64),
) -> Result<Message, InputError> {
    let found = field_count(text);
    if found != 6 {
        return Err(at(
            file,
            line,
            format!("expected 6 fields (time,type,order_id,size,price,direction), found {found}"),
        ));
    }
    let f: Vec<&str> = text.split(',').collect();
    let time: f64 = field(file, line, "time", f[0])?;
    if !time.is_finite() || time < 0.0 {
        return Err(at(
            file,
            line,
            format!("time {:?} is not a valid time", clipped(f[0])),
        ));
    }
    let kind: u8 = field(file, line, "type", f[1])?;
    let id: u64 = field(file, line, "order id", f[2])?;
    let size: u64 = field(file, line, "size", f[3])?;
    let raw_price: i64 = field(file, line, "price", f[4])?;
    let direction: i64 = field(file, line, "direction", f[5])?;
    let side = match direction {
        1 => Side::Buy,
        -1 => Side::Sell,
        // A halt's direction carries no meaning.
        _ if kind == 7 => Side::Buy,
        d => {
            return Err(at(
                file,
                line,
                format!("direction {d} must be 1 (buy) or -1 (sell)"),
            ))
        }
    };
    let price = match kind {
        1..=4 => {
            if size == 0 {
                return Err(at(file, line, format!("type {kind} with size 0")));
            }
            to_cents(file, line, raw_price, band)?
        }
        // Hidden executions may print at sub-penny prices; halts carry a code, not a price.
        5 | 7 => 0,
        k => {
            return Err(at(
                file,
                line,
                format!("unknown message type {k} (expected 1, 2, 3, 4, 5 or 7)"),
            ))
        }
    };
    Ok(Message {
        line,
        kind,
        id,
        size,
        price,
        raw_price,
        side,
    })
}

fn parse_book(
    file: &Path,
    line: usize,
    text: &str,
    n: usize,
    band: (i64, i64),
) -> Result<Levels, InputError> {
    let found = field_count(text);
    if found != 4 * n {
        return Err(at(
            file,
            line,
            format!(
                "expected {} fields ({n} levels of ask price, ask size, bid price, bid size), found {found}",
                4 * n,
            ),
        ));
    }
    let f: Vec<&str> = text.split(',').collect();
    let mut book = Levels::default();
    for (side, offset, dummy, name) in [
        (Side::Sell, 0, DUMMY_ASK, "ask"),
        (Side::Buy, 2, DUMMY_BID, "bid"),
    ] {
        let mut ended = false;
        for level in 0..n {
            let what = format!("{name} level {}", level + 1);
            let price: i64 = field(file, line, &format!("{what} price"), f[4 * level + offset])?;
            let size: u64 = field(
                file,
                line,
                &format!("{what} size"),
                f[4 * level + offset + 1],
            )?;
            if price == dummy {
                if size != 0 {
                    return Err(at(
                        file,
                        line,
                        format!("{what}: empty level (price {dummy}) with size {size}"),
                    ));
                }
                ended = true;
                continue;
            }
            if ended {
                return Err(at(
                    file,
                    line,
                    format!("{what}: a level after an empty one"),
                ));
            }
            if size == 0 {
                return Err(at(file, line, format!("{what}: size 0 at price {price}")));
            }
            let p = to_cents(file, line, price, band)?;
            let levels = book.side_mut(side);
            if let Some(&(last, _)) = levels.last() {
                if !better(side, last, p) {
                    return Err(at(
                        file,
                        line,
                        format!("{what}: price {price} is not behind the level before it"),
                    ));
                }
            }
            levels.push((p, size));
        }
    }
    Ok(book)
}

/// The replay state and its counters.
struct Replay {
    engine: Engine,
    symbol: SymbolId,
    /// Levels per side in the orderbook file.
    depth: usize,
    /// Ids seen in a type 1.
    seen: HashSet<u64>,
    /// The synthetic orders placed at each `(side, price)`, oldest first (some may be gone).
    synthetic: HashMap<(Side, i64), Vec<ClientOrderId>>,
    next_synthetic: u64,
    next_taker: u64,
    /// The previous orderbook line: what was in view before the current message.
    view: Levels,
    events: Vec<Event>,
    /// The market-data builder fed with every event, and a subscriber's book kept from its
    /// depth updates.
    md: MarketData,
    md_book: L2Book,
    stats: Report,
}

/// What the replay found.
#[derive(Debug, Default)]
struct Report {
    messages: u64,
    top5_mismatches: u64,
    top10_mismatches: u64,
    /// Messages whose prediction differed in a level that was in view before the message.
    view_mismatches: u64,
    visible_executions: u64,
    executions_filling_named_order: u64,
    hidden_executions: u64,
    /// Messages after which the market-data subscriber's book differed from ringbook's depth.
    md_mismatches: u64,
    /// Messages after which the market-data book differed from LOBSTER's levels in view.
    md_top5_mismatches: u64,
    halts: u64,
    starting_levels: u64,
    unseen_added: u64,
    unseen_removed: u64,
    anomalies: u64,
    rejects: u64,
    levels: usize,
    state_hash: String,
    /// Detail lines for stderr, in the order they arose.
    details: Vec<String>,
    shown_mismatches: usize,
    shown_failures: usize,
    shown_anomalies: usize,
}

impl Report {
    /// The verdict behind the exit status.
    fn ok(&self) -> bool {
        self.top5_mismatches == 0
            && self.md_top5_mismatches == 0
            && self.md_mismatches == 0
            && self.executions_filling_named_order == self.visible_executions
    }

    fn anomaly(&mut self, msg: String) {
        self.anomalies += 1;
        if self.shown_anomalies < SHOW_MAX {
            self.shown_anomalies += 1;
            self.details.push(format!("anomaly: {msg}"));
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"messages\":{},\"top5_mismatches\":{},\"top10_mismatches\":{},\
             \"visible_executions\":{},\"executions_filling_named_order\":{},\
             \"hidden_executions\":{},\"md_mismatches\":{},\"md_top5_mismatches\":{},\
             \"state_hash\":\"{}\"}}",
            self.messages,
            self.top5_mismatches,
            self.top10_mismatches,
            self.visible_executions,
            self.executions_filling_named_order,
            self.hidden_executions,
            self.md_mismatches,
            self.md_top5_mismatches,
            self.state_hash
        )
    }

    fn human(&self) -> String {
        let rows: Vec<(String, String)> = vec![
            ("messages".into(), self.messages.to_string()),
            (
                format!("top-{} mismatches", self.levels.min(5)),
                self.top5_mismatches.to_string(),
            ),
            (
                format!("all-{}-level mismatches", self.levels),
                format!(
                    "{} (info; {} in levels already in view)",
                    self.top10_mismatches, self.view_mismatches
                ),
            ),
            (
                "visible executions".into(),
                self.visible_executions.to_string(),
            ),
            (
                "  filling the named order".into(),
                self.executions_filling_named_order.to_string(),
            ),
            (
                "hidden executions".into(),
                self.hidden_executions.to_string(),
            ),
            (
                "market-data book".into(),
                format!(
                    "{} mismatches with ringbook's, {} top-{} with the file",
                    self.md_mismatches,
                    self.md_top5_mismatches,
                    self.levels.min(5)
                ),
            ),
            ("trading halts".into(), self.halts.to_string()),
            (
                "starting book levels".into(),
                self.starting_levels.to_string(),
            ),
            (
                "levels come into view".into(),
                format!(
                    "{} with more than ringbook had, {} with less",
                    self.unseen_added, self.unseen_removed
                ),
            ),
            (
                "anomalies".into(),
                format!("{} ({} refused commands)", self.anomalies, self.rejects),
            ),
            ("state hash".into(), self.state_hash.clone()),
            (
                "result".into(),
                if self.ok() { "OK" } else { "MISMATCH" }.into(),
            ),
        ];
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<26} {v}");
        }
        out
    }
}

impl Replay {
    fn new(depth: usize) -> Result<Replay, InputError> {
        let mut config = Config::default();
        // LOBSTER's order ids become client order ids: a foreign feed's ids, unique while live
        // but not increasing per user, so the replay uses the `unique_live` rule.
        config.engine.client_order_ids = ClientOrderIdRule::UniqueLive;
        let symbol = config
            .symbol_id(SYMBOL)
            .ok_or_else(|| InputError(format!("the default config has no {SYMBOL}")))?;
        let engine =
            Engine::with_risk(&config, RiskMode::Off).map_err(|e| InputError(e.to_string()))?;
        let md = MarketData::new(&config);
        Ok(Replay {
            md,
            md_book: L2Book::default(),
            engine,
            symbol,
            depth,
            seen: HashSet::new(),
            synthetic: HashMap::new(),
            next_synthetic: 1,
            next_taker: 1,
            view: Levels::default(),
            events: Vec::new(),
            stats: Report {
                levels: depth,
                ..Report::default()
            },
        })
    }

    /// The symbol's price band.
    fn band(&self) -> (i64, i64) {
        let s = self
            .engine
            .config()
            .symbol(self.symbol)
            .expect("the symbol id comes from the config");
        (s.price_min, s.price_max)
    }

    /// Applies one command, keeping its events in `self.events`; a refusal is an anomaly.
    fn process(&mut self, cmd: Command) {
        self.events.clear();
        let events = &mut self.events;
        self.engine.process(&cmd, &mut |e: &Event| events.push(*e));
        let (book, stats) = (&mut self.md_book, &mut self.stats);
        self.md.command(0, &self.events, &mut |m| {
            if let MdMessage::Depth(d) = m {
                if let Err(e) = book.apply(d.md_seq, d.md_seq, d.changes) {
                    stats.anomaly(format!("market data: {e}"));
                }
            }
        });
        for e in &self.events {
            if let Event::Rejected { code, .. } = e {
                self.stats.rejects += 1;
                self.stats
                    .anomaly(format!("ringbook refused {cmd:?}: {code:?}"));
            }
        }
    }

    fn leaves(&self, user: UserId, coid: ClientOrderId) -> Option<u64> {
        self.engine.order(user, coid).map(|o| o.leaves_qty.0)
    }

    /// The live orders resting at one level, oldest first.
    fn level_orders(&self, side: Side, price: i64) -> Vec<OrderView> {
        let section = match side {
            Side::Buy => BookSection::Bids,
            Side::Sell => BookSection::Asks,
        };
        let mut orders = Vec::new();
        self.engine.for_each_order(self.symbol, |s, o| {
            if s == section && o.price.0 == price {
                orders.push(*o);
            }
        });
        orders
    }

    /// Places a synthetic order of unknown liquidity at the back of `(side, price)`.
    fn add_synthetic(&mut self, side: Side, price: i64, qty: u64) {
        let coid = ClientOrderId(self.next_synthetic);
        self.next_synthetic += 1;
        let order = NewOrder::limit(START, self.symbol, coid, side, Price(price), Qty(qty));
        self.process(Command::NewOrder(order));
        self.synthetic.entry((side, price)).or_default().push(coid);
    }

    /// Builds the starting book: the first line with message 1's effect undone.
    fn start(&mut self, first: &Message, line: &Levels) -> Result<(), String> {
        let mut start = line.clone();
        let undo = match first.kind {
            1 => -(first.size as i64),
            2..=4 => first.size as i64,
            _ => 0,
        };
        if start.adjust(first.side, first.price, undo).is_none() {
            return Err(format!(
                "message 1 ({}) adds more than the first orderbook line shows at its price",
                first.describe()
            ));
        }
        for side in [Side::Buy, Side::Sell] {
            for &(p, q) in start.side(side) {
                self.add_synthetic(side, p, q);
                self.stats.starting_levels += 1;
            }
        }
        self.view = line.clone();
        Ok(())
    }

    /// The order a type 2, 3 or 4 message acts on: the *book* order with its id, or, for an id
    /// never added, the oldest synthetic order at its price (for a cancel of `size`, the oldest
    /// that still holds `size`).
    fn target(&self, m: &Message) -> Result<(UserId, ClientOrderId), &'static str> {
        if self.seen.contains(&m.id) {
            let coid = ClientOrderId(m.id);
            return match self.engine.order(BOOK, coid) {
                None => Err("the order is no longer live in ringbook"),
                Some(o) if o.price.0 != m.price || o.side != m.side => {
                    Err("the order rests at another price or side in ringbook")
                }
                Some(_) => Ok((BOOK, coid)),
            };
        }
        let live: Vec<(ClientOrderId, u64)> = self
            .synthetic
            .get(&(m.side, m.price))
            .into_iter()
            .flatten()
            .filter_map(|&c| self.leaves(START, c).map(|q| (c, q)))
            .collect();
        let need = if m.kind == 4 { 0 } else { m.size };
        live.iter()
            .find(|&&(_, q)| q >= need)
            .or(live.first())
            .map(|&(c, _)| (START, c))
            .ok_or("an id never added, and no unseen liquidity left at its price")
    }

    /// Takes `size` off an order, keeping its priority (cancelling it at zero).
    fn reduce(&mut self, m: &Message, user: UserId, coid: ClientOrderId) {
        let leaves = self.leaves(user, coid).unwrap_or(0);
        if m.size > leaves {
            self.stats.anomaly(format!(
                "line {}: {} takes more than the {leaves} open",
                m.line,
                m.describe()
            ));
        }
        self.process(Command::Amend {
            user,
            symbol: self.symbol,
            client_order_id: coid,
            price: Price(m.price),
            qty: Qty(leaves.saturating_sub(m.size)),
        });
    }

    /// Applies one message: ringbook's prediction of the next line.
    fn apply(&mut self, m: &Message) {
        match m.kind {
            1 => {
                if !self.seen.insert(m.id) {
                    self.stats.anomaly(format!(
                        "line {}: order id {} is added a second time",
                        m.line, m.id
                    ));
                }
                let order = NewOrder::limit(
                    BOOK,
                    self.symbol,
                    ClientOrderId(m.id),
                    m.side,
                    Price(m.price),
                    Qty(m.size),
                );
                self.process(Command::NewOrder(order));
                if self.events.iter().any(|e| matches!(e, Event::Trade(_))) {
                    self.stats.anomaly(format!(
                        "line {}: new order ({}) crossed the book in ringbook",
                        m.line,
                        m.describe()
                    ));
                }
            }
            2 | 3 => match self.target(m) {
                Ok((BOOK, coid)) if m.kind == 3 => {
                    let leaves = self.leaves(BOOK, coid).unwrap_or(0);
                    if leaves != m.size {
                        self.stats.anomaly(format!(
                            "line {}: delete ({}) of an order with {leaves} open",
                            m.line,
                            m.describe()
                        ));
                    }
                    self.process(Command::Cancel {
                        user: BOOK,
                        symbol: self.symbol,
                        client_order_id: coid,
                    });
                }
                // A partial cancel, or the delete of one unseen order inside a synthetic one.
                Ok((user, coid)) => self.reduce(m, user, coid),
                Err(why) => self
                    .stats
                    .anomaly(format!("line {}: {}: {why}", m.line, m.describe())),
            },
            4 => self.execute(m),
            5 => self.stats.hidden_executions += 1,
            7 => self.stats.halts += 1,
            _ => unreachable!("parse_message accepts only types 1-5 and 7"),
        }
    }

    /// A type 4: the incoming order that caused it, and the check that it filled the named one.
    fn execute(&mut self, m: &Message) {
        self.stats.visible_executions += 1;
        let target = self.target(m);
        let coid = ClientOrderId(self.next_taker);
        self.next_taker += 1;
        let mut order = NewOrder::limit(
            TAKER,
            self.symbol,
            coid,
            m.side.opposite(),
            Price(m.price),
            Qty(m.size),
        );
        order.tif = TimeInForce::Ioc;
        self.process(Command::NewOrder(order));
        let trades: Vec<Trade> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Trade(t) => Some(*t),
                _ => None,
            })
            .collect();
        let filled: u64 = trades.iter().map(|t| t.qty.0).sum();
        let named = |t: &Trade| {
            target.is_ok_and(|(u, c)| t.maker.user == u && t.maker.client_order_id == c)
        };
        if filled == m.size && trades.iter().all(named) {
            self.stats.executions_filling_named_order += 1;
        } else if self.stats.shown_failures < SHOW_MAX {
            self.stats.shown_failures += 1;
            let fills: Vec<String> = trades
                .iter()
                .map(|t| {
                    format!(
                        "{} @ {} from user {} order {}",
                        t.qty,
                        cents(t.price.0),
                        t.maker.user,
                        t.maker.client_order_id
                    )
                })
                .collect();
            let named = match target {
                Ok((u, c)) => format!("user {u} order {c}"),
                Err(why) => why.to_string(),
            };
            self.stats.details.push(format!(
                "execution at message line {} ({}) should fill {named}; it filled [{}]",
                m.line,
                m.describe(),
                fills.join(", ")
            ));
        }
    }

    /// Ringbook's top `depth` levels.
    fn predicted(&self) -> Levels {
        let mut book = Levels::default();
        for side in [Side::Buy, Side::Sell] {
            let levels = book.side_mut(side);
            self.engine.depth(self.symbol, side, self.depth, |p, q| {
                levels.push((p.0, q.0))
            });
        }
        book
    }

    /// The market-data subscriber's top `depth` levels.
    fn md_predicted(&self) -> Levels {
        let mut book = Levels::default();
        for side in [Side::Buy, Side::Sell] {
            let levels = book.side_mut(side);
            levels.extend(
                self.md_book
                    .levels(side)
                    .into_iter()
                    .take(self.depth)
                    .map(|(p, q, _)| (p.0, q.0)),
            );
        }
        book
    }

    /// The deepest price in view on a side of the previous line, or `None` if that line showed
    /// the whole side.
    fn edge(&self, side: Side) -> Option<i64> {
        let levels = self.view.side(side);
        (levels.len() == self.depth)
            .then(|| levels.last().map(|&(p, _)| p))
            .flatten()
    }

    /// Equal in the best `n` levels, per side, among the levels that were in view before the
    /// message (`usize::MAX`: all of them). Levels that just came into view are left out: their
    /// size is news, not something ringbook could predict.
    fn view_eq(&self, expected: &Levels, ours: &Levels, n: usize) -> bool {
        [Side::Buy, Side::Sell].into_iter().all(|side| {
            let edge = self.edge(side);
            let seen = |&&(p, _): &&(i64, u64)| edge.is_none_or(|e| !better(side, e, p));
            let theirs = expected.side(side).iter().filter(seen).take(n);
            theirs.eq(ours.side(side).iter().filter(seen).take(n))
        })
    }

    /// Brings the levels that just came into view to the size the line shows (module doc,
    /// "The blind spot"), then makes the line the view for the next message.
    fn sync_blind_spot(&mut self, line: &Levels) {
        for side in [Side::Buy, Side::Sell] {
            let Some(edge) = self.edge(side) else {
                continue;
            };
            let now = line.side(side);
            let limit = (now.len() == self.depth)
                .then(|| now.last().map(|&(p, _)| p))
                .flatten();
            if limit.is_some_and(|l| !better(side, edge, l)) {
                continue; // the line reaches no deeper than the view did: nothing came in
            }
            let revealed =
                |p: i64| better(side, edge, p) && limit.is_none_or(|l| !better(side, l, p));
            let mut ours = Vec::new();
            self.engine.depth(self.symbol, side, usize::MAX, |p, q| {
                if revealed(p.0) {
                    ours.push((p.0, q.0));
                }
            });
            let mut prices: Vec<i64> = now
                .iter()
                .chain(&ours)
                .map(|&(p, _)| p)
                .filter(|&p| revealed(p))
                .collect();
            prices.sort_unstable();
            prices.dedup();
            let size = |levels: &[(i64, u64)], p: i64| {
                levels
                    .iter()
                    .find(|&&(lp, _)| lp == p)
                    .map_or(0, |&(_, q)| q)
            };
            for p in prices {
                let (shown, have) = (size(now, p), size(&ours, p));
                if shown > have {
                    self.add_unseen(side, p, shown - have);
                } else if shown < have {
                    self.remove_unseen(side, p, have - shown);
                }
            }
        }
        self.view = line.clone();
    }

    /// `qty` more at a level than ringbook has: liquidity added while the level was out of
    /// view, or resting since before the open at a level never in view. Either way it goes at
    /// the back of the level (module doc, "The blind spot").
    fn add_unseen(&mut self, side: Side, price: i64, qty: u64) {
        self.stats.unseen_added += 1;
        self.add_synthetic(side, price, qty);
    }

    /// `excess` less at a level than ringbook has: orders cancelled while it was out of view.
    /// Which ones is unknown; the guess is a *book* order of exactly that size (the newest
    /// such), else synthetic liquidity, then *book* orders, newest first.
    fn remove_unseen(&mut self, side: Side, price: i64, excess: u64) {
        self.stats.unseen_removed += 1;
        let orders = self.level_orders(side, price);
        let exact = orders
            .iter()
            .rev()
            .find(|o| o.user == BOOK && o.leaves_qty.0 == excess);
        let order_of_guess: Vec<&OrderView> = match exact {
            Some(o) => vec![o],
            None => {
                let by = |u: UserId| orders.iter().rev().filter(move |o| o.user == u);
                by(START).chain(by(BOOK)).collect()
            }
        };
        let mut left = excess;
        for o in order_of_guess {
            if left == 0 {
                break;
            }
            let take = left.min(o.leaves_qty.0);
            left -= take;
            self.process(Command::Amend {
                user: o.user,
                symbol: self.symbol,
                client_order_id: o.client_order_id,
                price: o.price,
                qty: Qty(o.leaves_qty.0 - take),
            });
        }
    }
}

/// Side-by-side levels of the file and ringbook, rows that differ marked `*`.
fn show_levels(file: &Levels, ours: &Levels, n: usize) -> String {
    let cell = |l: &[(i64, u64)], i: usize| {
        l.get(i)
            .map(|&(p, q)| format!("{} x {q}", cents(p)))
            .unwrap_or_else(|| "-".to_string())
    };
    let mut out = format!(
        "    {:>3}  {:>16} {:>16}   {:>16} {:>16}\n",
        "lvl", "file ask", "ringbook ask", "file bid", "ringbook bid"
    );
    for i in 0..n {
        let differs = file.asks.get(i) != ours.asks.get(i) || file.bids.get(i) != ours.bids.get(i);
        let _ = writeln!(
            out,
            "  {} {:>3}  {:>16} {:>16}   {:>16} {:>16}",
            if differs { '*' } else { ' ' },
            i + 1,
            cell(&file.asks, i),
            cell(&ours.asks, i),
            cell(&file.bids, i),
            cell(&ours.bids, i)
        );
    }
    out
}

/// Reads both files, replays, and returns the report (details already on stderr).
fn replay(args: &Args) -> Result<Report, InputError> {
    let depth = usize::from(args.levels);
    let top = depth.min(5);
    let mut replay = Replay::new(depth)?;
    let band = replay.band();
    let messages = read_lines(&args.message_csv)?
        .into_iter()
        .map(|(n, l)| parse_message(&args.message_csv, n, &l, band))
        .collect::<Result<Vec<_>, _>>()?;
    let books = read_lines(&args.orderbook_csv)?
        .into_iter()
        .map(|(n, l)| Ok((n, parse_book(&args.orderbook_csv, n, &l, depth, band)?)))
        .collect::<Result<Vec<_>, InputError>>()?;
    if books.len() != messages.len() {
        return Err(InputError(format!(
            "{} has {} lines but {} has {}; there must be one book line per message",
            args.orderbook_csv.display(),
            books.len(),
            args.message_csv.display(),
            messages.len()
        )));
    }
    replay
        .start(&messages[0], &books[0].1)
        .map_err(|e| at(&args.orderbook_csv, books[0].0, e))?;

    for (m, (book_line, expected)) in messages.iter().zip(&books) {
        replay.apply(m);
        let ours = replay.predicted();
        let md = replay.md_predicted();
        replay.stats.messages += 1;
        if md != ours {
            replay.stats.md_mismatches += 1;
        }
        if !replay.view_eq(expected, &md, top) {
            replay.stats.md_top5_mismatches += 1;
        }
        if !expected.top_eq(&ours, depth) {
            replay.stats.top10_mismatches += 1;
        }
        if !replay.view_eq(expected, &ours, usize::MAX) {
            replay.stats.view_mismatches += 1;
        }
        if !replay.view_eq(expected, &ours, top) {
            replay.stats.top5_mismatches += 1;
            if replay.stats.shown_mismatches < SHOW_MAX {
                replay.stats.shown_mismatches += 1;
                let detail = format!(
                    "top-{top} mismatch after message line {} ({}), orderbook line {book_line}:\n{}",
                    m.line,
                    m.describe(),
                    show_levels(expected, &ours, depth)
                );
                replay.stats.details.push(detail);
            }
        }
        replay.sync_blind_spot(expected);
    }
    replay.stats.state_hash = replay.engine.state_hash().to_string();
    let mut report = replay.stats;
    for d in std::mem::take(&mut report.details) {
        eprintln!("{}", d.trim_end());
    }
    Ok(report)
}
