//! `ringbook scenario`: run a command script through the engine and print one JSON object per
//! event, one per line (the public contract is docs/overview.md §9; the matching rules behind every event
//! are docs/matching.md, the account, lock and settlement rules docs/risk.md).
//!
//! ```text
//! ringbook scenario [--config FILE] [--final] [--no-risk] [--market-data] SCRIPT    # SCRIPT may be `-` (stdin)
//! ringbook scenario --pipeline [--layout fused|J|RMS|split] [--transport disruptor|crossbeam]
//!                   [--journal DIR [--snapshot-every N]] [--config FILE] [--final] [--no-risk]
//!                   [--market-data] SCRIPT
//! ```
//!
//! # Script
//!
//! One command per line, comma-separated, fields trimmed; `#` starts a comment anywhere on a
//! line and blank lines are ignored. Command names, enum words and option keys are
//! case-insensitive; ids, quantities and amounts are plain decimal integers.
//!
//! ```text
//! deposit,<user>,<currency>,<amount>             # opens the account on the first deposit
//! withdraw,<user>,<currency>,<amount>            # locks the amount; prints its withdrawal id
//! approve,<operator>,<withdrawal_id>             # two distinct operators release it
//! reject_withdrawal,<operator>,<withdrawal_id>   # one operator refuses it: the amount is unlocked
//! order,<user>,<symbol>,<client_order_id>,<BUY|SELL>,<LIMIT|MARKET|STOP_LIMIT|STOP_MARKET>,<GTC|IOC|FOK|GTD|DAY>,<price>,<qty>[,key=value…]
//!     # keys: post_only=1|0, stp=CANCEL_NEWEST|CANCEL_OLDEST|CANCEL_BOTH|DECREMENT|NONE,
//!     #       display=<qty> (iceberg), stop=<trigger price>; MARKET / STOP_MARKET: price = protection
//!     #       budget=<quote minimal units> (a MARKET BUY by quote amount, fee included; qty 0: no cap)
//!     #       expire=<unix_ms> (GTD: the expiry time; DAY expires at [schedule] day_end_utc)
//! cancel,<user>,<symbol>,<client_order_id>
//! amend,<user>,<symbol>,<client_order_id>,<new_price>,<new_qty>     # new_qty = new open quantity
//! mass_cancel,<user>[,<symbol>]
//! cancel_order,<user>,<symbol>,<order_id>        # by the engine's order id (accepted's order_id)
//! amend_order,<user>,<symbol>,<order_id>,<new_price>,<new_qty>
//! query_order,<user>,<client_order_id>           # one order, live or recently finished: order_status
//! query_order_id,<user>,<order_id>               # the same by the engine's order id
//! query_open_orders,<user>[,<limit>]             # live orders, at most <limit> (default: all)
//! query_balances,<user>                          # every currency of an open account
//! query_book,<symbol>[,<depth>]                  # levels per side, at most <depth> (default: all)
//! clock,<unix_ms>                                # engine time from here on; a tick (expiries run)
//! ```
//!
//! Every command is stamped with a time, its engine time (docs/matching.md, "Engine time"):
//! without any `clock` line the first command is stamped 0 and each next one 1 µs later, so a
//! script's output never depends on when it runs. `clock,<unix_ms>` moves the stamp of the
//! commands after it to that time (or leaves it where it is if the script is already past it)
//! and they go on 1 µs apart; a value earlier than the previous `clock` line's is a line error.
//! A `clock` line is also a command, a tick (`Command::Tick`: time alone, journaled), stamped
//! with the time it sets, which the command after it shares: the orders whose expiry that time
//! reaches expire on it (docs/matching.md, "Expiry"). A query takes no script time: it is stamped with the previous
//! command's time, so the state a script ends in (engine time included) is that of the same
//! script without its queries.
//!
//! `reject_withdrawal` is an addition to docs/overview.md §9 (which lists only `approve`): it is the
//! engine's `RejectWithdrawal` command, the operator's way to refuse a pending withdrawal. The
//! `query_…` lines are additions too: each is a `Command::Query`, sequenced like any command and
//! answered in order by reply events (docs/matching.md, "Queries"); it changes nothing, so the
//! `--final` lines and state hash are those of the same script without it. `<limit>` and
//! `<depth>` are `u32`; left out, they are `u32::MAX` (no limit).
//!
//! `<symbol>` is a configured symbol name (`BTC-KRW`) or a numeric symbol id; `<currency>` is a
//! configured currency code (`KRW`) or a numeric currency id. A numeric id that is not configured
//! reaches the engine, which rejects it (`UNKNOWN_SYMBOL`, `UNKNOWN_CURRENCY`); an unknown name
//! or code is a line error. Amounts are in the currency's minimal units (`u64`); operators are
//! the ids listed in the config's `[accounts] operators`. The parser only checks the shape of a
//! line (field count, numbers within their types, known words); everything else — bands,
//! quantities, stop prices, funds, unknown users, orders and withdrawals, who is an operator — is
//! the engine's to judge and comes out as a `rejected` event.
//!
//! # Output
//!
//! One JSON object per event on stdout, the overview's fields first, then extras:
//!
//! ```text
//! {"event":"accepted","user":U,"symbol":"S","client_order_id":C,"order_id":O,"side":"BUY","type":"LIMIT","price":P,"qty":Q}
//! {"event":"rejected","user":U,"client_order_id":C,"code":N,"reason":"NAME"}      # C is 0 for account commands and mass cancel
//! {"event":"trade","symbol":"S","trade_id":I,"ts":T,"price":P,"qty":Q,"maker_user":U,"maker_client_order_id":C,"taker_user":U,
//!  "taker_client_order_id":C,"maker_fee":F,"taker_fee":F,"maker_order_id":O,"taker_order_id":O,
//!  "taker_side":"BUY","maker_leaves":L,"taker_leaves":L}
//! {"event":"cancelled","user":U,"client_order_id":C,"qty":Q,"reason":"NAME","symbol":"S","order_id":O,"leaves":L}
//! {"event":"amended","user":U,"client_order_id":C,"price":P,"qty":Q,"symbol":"S","order_id":O}
//! {"event":"triggered","user":U,"client_order_id":C,"symbol":"S","order_id":O}
//! {"event":"mass_cancelled","user":U,"symbol":"S" or null,"count":N}
//! {"event":"deposited","user":U,"currency":"K","amount":A}
//! {"event":"withdrawal_requested","withdrawal_id":W,"user":U,"currency":"K","amount":A}
//! {"event":"withdrawal_approved","withdrawal_id":W,"operator":O,"user":U,"approvals":N}
//! {"event":"withdrawal_completed","withdrawal_id":W,"user":U,"currency":"K","amount":A}
//! {"event":"withdrawal_rejected","withdrawal_id":W,"operator":O,"user":U}
//! {"event":"rejected","operator":O,"withdrawal_id":W,"code":N,"reason":"NAME"}   # an approve / reject_withdrawal refused
//! {"event":"balance_update","user":U,"currency":"K","available":A,"locked":L}
//! {"event":"order_status","user":U,"client_order_id":C,"found":false}             # neither live nor in the window
//! {"event":"order_status","found":true,"status":"NEW","filled_notional":N,"user":U,"symbol":"S",
//!  "client_order_id":C,"order_id":O,"side":"BUY","type":"LIMIT","tif":"GTC","price":P,
//!  "stop_price":SP,"leaves_qty":L,"visible_qty":V,"filled_qty":F,"display_qty":D,"post_only":false,
//!  "stp":"NONE"}                                                                  # live: NEW or PARTIALLY_FILLED
//!                                   # a live GTD or DAY order ends with ,"expire_at":T (Unix nanoseconds)
//! {"event":"order_status","found":true,"status":"CANCELLED","reason":"USER","user":U,"symbol":"S",
//!  "client_order_id":C,"order_id":O,"side":"BUY","type":"LIMIT","price":P,"filled_qty":F,
//!  "filled_notional":N,"ts":T}                                                     # finished (docs/matching.md, "Order status"):
//!                                   # FILLED and EXPIRED have no "reason"; REJECTED has "code":N,"reason":"NAME" and order id 0
//! {"event":"open_order", …the order fields of a live order_status…}              # acceptance order
//! {"event":"open_orders_end","user":U,"count":N}                                   # N: live in all
//! {"event":"balance","user":U,"currency":"K","available":A,"locked":L}             # currency order
//! {"event":"balances_end","user":U,"count":N}
//! {"event":"book_level","symbol":"S","side":"BUY","price":P,"qty":Q}               # bids, then asks, best first
//! {"event":"book_end","symbol":"S","bid_levels":B,"ask_levels":A}
//! ```
//!
//! A query is refused with a `rejected` event whose client order id is 0: `query_balances` of an
//! account never opened (`UNKNOWN_USER`) or with `--no-risk` (`ACCOUNTS_DISABLED`: unlike the
//! account commands it is not a line error, the engine answers it), `query_book` of a symbol id
//! not configured (`UNKNOWN_SYMBOL`, user 0).
//!
//! With `--market-data` the market data built from the events (docs/market-data.md) comes too:
//!
//! ```text
//! {"event":"md_trade","symbol":"S","trade_id":I,"ts":T,"price":P,"qty":Q,"taker_side":"BUY","md_seq":N}   # right after its trade
//! {"event":"md_depth","symbol":"S","md_seq":N,"ts":T,"bids":[[P,Q,COUNT],…],"asks":[…],"trades":K}      # after the command's events
//! ```
//!
//! `md_depth` lists the levels the command changed (best first per side; Q and COUNT 0: the
//! level is gone) and closes update N, whose K trades came before it. With `--final`, before
//! the book lines: every kept candle, symbol by symbol, interval by interval (1m … 1w), oldest
//! first, `{"event":"md_candle","symbol":"S","interval":"1m","open_time":T,"open":P,"high":P,
//! "low":P,"close":P,"volume":V,"quote_volume":QV,"trades":N}`, then each symbol's
//! `{"event":"md_ticker","symbol":"S","open_time":T,"close_time":T,"open":P,"high":P,"low":P,
//! "last":P,"change":C,"change_pct":"D","volume":V,"quote_volume":QV,"vwap":"D","trades":N,
//! "best_bid":[P,Q],"best_ask":[P,Q]}` (`null` for a price without trades, a missing side or a
//! VWAP without volume).
//!
//! A deposit and each withdrawal step end with a `balance_update` of the account they changed.
//! Trading does not print balances (docs/risk.md: they follow from `trade` and `cancelled`);
//! `--final` does.
//!
//! With `--final`, after the script: one `{"event":"book","symbol":"S","bids":[[P,Q],…],"asks":[…]}`
//! per configured symbol in id order (every level, visible quantity, best first); with risk on,
//! then one `{"event":"balance","user":U,"currency":"K","available":A,"locked":L}` per open
//! account (user id order) and currency (config order), every currency of the account, and one
//! `{"event":"fees","currency":"K","collected":F}` per currency (config order); last
//! `{"event":"state_hash","hash":"<16 hex digits>"}`. Same script, same bytes.
//!
//! # Modes and exit status
//!
//! Risk is on by default (`Engine::new`): accounts open with their first deposit, every order
//! locks what it can spend, trades settle and pay fees (docs/risk.md). `--no-risk` runs the
//! order books alone (`RiskMode::Off`): no accounts, no locks, no settlement; there `deposit`,
//! `withdraw`, `approve` and `reject_withdrawal` lines are line errors (accounts are off), and
//! `--final` prints no balance or fee lines.
//!
//! `--pipeline` runs the same commands through the threaded pipeline (`Pipeline`, every thread
//! waiting with `Yield`, so no layout spins more threads than there are cores): every parsed
//! command is submitted in order, the output handler prints each command's events with the same
//! printer, and `--final` prints the engine `shutdown()` returns. The output is the single-
//! threaded run's, byte for byte (tests/pipeline_replay.rs). Without `--journal` nothing is
//! journaled; with it the pipeline first recovers what DIR holds (a fresh directory: nothing),
//! and `ringbook journal replay DIR` later prints the same `--final` lines.
//!
//! A line that cannot be parsed (or is not supported in this mode) is reported on stderr as
//! `line N: <reason>` and skipped; the run goes on and exits with status 1. A line longer than
//! 4096 bytes is refused so (`longer than 4096 bytes`), without being read into memory. A run that cannot
//! start or finish (bad arguments, config, unreadable script, failed output) exits with status 2.
//! Otherwise the status is 0. An engine reject is an event, not an error.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ringbook_engine::pipeline::{Layout, Output, OutputKind, Pipeline, Transport, WaitStrategy};
use ringbook_engine::prelude::*;
use ringbook_engine::Vocab;
use ringbook_journal::JournalConfig;

use crate::printer::Printer;

/// Arguments of `ringbook scenario`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Engine configuration (TOML, see docs/configuration.md); the embedded default if absent.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// After the script, print every symbol's book, (with risk on) every open account's
    /// balances and the collected fees, then the state hash.
    #[arg(long = "final")]
    pub final_state: bool,
    /// Run the order books alone, without accounts, pre-trade risk or settlement; account
    /// commands are then line errors.
    #[arg(long)]
    pub no_risk: bool,
    /// Run the script through the threaded pipeline (journal → risk → matching → settlement
    /// on ring buffers, every thread yielding when idle) instead of the single-threaded engine:
    /// the output is the same, byte for byte.
    #[arg(long)]
    pub pipeline: bool,
    /// Also print the market data built from the events (docs/market-data.md): `md_trade`
    /// after each trade, `md_depth` (the changed levels) after each command that changed the
    /// visible book; with --final also every `md_candle` and each symbol's `md_ticker`.
    #[arg(long)]
    pub market_data: bool,
    /// The pipeline's thread layout: fused (= JRMS), J|RMS, or split (= J|R|M|S).
    #[arg(
        long,
        value_name = "LAYOUT",
        default_value = "fused",
        requires = "pipeline"
    )]
    pub layout: Layout,
    /// The queues between the pipeline's stages: disruptor or crossbeam.
    #[arg(
        long,
        value_name = "TRANSPORT",
        default_value = "disruptor",
        requires = "pipeline"
    )]
    pub transport: Transport,
    /// Journal every command into DIR (recovering what it already holds first: the run then
    /// continues from that state). Without it the pipeline runs with no journal.
    #[arg(long, value_name = "DIR", requires = "pipeline")]
    pub journal: Option<PathBuf>,
    /// With --journal: also write a snapshot every N commands (0: none).
    #[arg(long, value_name = "N", default_value_t = 0, requires = "journal")]
    pub snapshot_every: u64,
    /// The command script, or `-` for standard input.
    #[arg(value_name = "SCRIPT")]
    pub script: PathBuf,
}

/// Exit status when the run itself cannot happen or finish.
const EXIT_USAGE: u8 = 2;

/// Runs the subcommand.
pub fn run(args: Args) -> ExitCode {
    match run_inner(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(Fatal::Quiet) => ExitCode::from(EXIT_USAGE),
        Err(Fatal::Message(m)) => {
            eprintln!("ringbook scenario: {m}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Why a run stopped before its end.
enum Fatal {
    /// Already explained (or nothing to explain: the reader of our output went away).
    Quiet,
    /// Print this and stop.
    Message(String),
}

impl From<String> for Fatal {
    fn from(m: String) -> Fatal {
        Fatal::Message(m)
    }
}

/// Runs the script; returns the number of lines that could not be run.
fn run_inner(args: &Args) -> Result<u64, Fatal> {
    let config = match &args.config {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let risk = if args.no_risk {
        RiskMode::Off
    } else {
        RiskMode::On
    };
    let mut input: Box<dyn BufRead> = if args.script.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.script)
            .map_err(|e| format!("cannot open {}: {e}", args.script.display()))?;
        Box::new(BufReader::new(file))
    };
    let script_name = if args.script.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        args.script.display().to_string()
    };
    let bad_lines = if args.pipeline {
        let backend = Threaded::start(args, &config, risk)?;
        run_script(
            backend,
            &mut *input,
            &script_name,
            &config,
            risk,
            args.final_state,
        )?
    } else {
        let mut out = Printer::new(BufWriter::new(io::stdout().lock()), &config);
        if args.market_data {
            out = out.with_market_data(&config);
        }
        let backend = Direct {
            engine: Engine::with_risk(&config, risk).map_err(|e| e.to_string())?,
            out,
        };
        run_script(
            backend,
            &mut *input,
            &script_name,
            &config,
            risk,
            args.final_state,
        )?
    };
    if bad_lines > 0 {
        eprintln!(
            "ringbook scenario: {bad_lines} line{} of {script_name} could not be run",
            if bad_lines == 1 { "" } else { "s" }
        );
    }
    Ok(bad_lines)
}

/// Reads, parses and runs every line of the script, then (with `final_state`) prints the final
/// state; returns the number of lines that could not be run.
fn run_script(
    mut backend: impl Backend,
    input: &mut dyn BufRead,
    script_name: &str,
    config: &Config,
    risk: RiskMode,
    final_state: bool,
) -> Result<u64, Fatal> {
    let mut bad_lines = 0u64;
    let mut raw = Vec::new();
    let mut line_no = 0u64;
    let mut clock = ScriptClock::default();
    loop {
        raw.clear();
        // At most LINE_BYTES_MAX bytes of text and a CRLF ending are kept: a longer line is
        // refused whole and the rest of it skipped, so one huge line costs no memory and no
        // huge error message. The limit is on the text, whichever line ending follows it.
        let read = io::Read::take(&mut *input, LINE_BYTES_MAX as u64 + 2)
            .read_until(b'\n', &mut raw)
            .and_then(|n| {
                if raw.len() == LINE_BYTES_MAX + 2 && raw.last() != Some(&b'\n') {
                    skip_line(input)?;
                }
                Ok(n)
            });
        let too_long = match read {
            Ok(0) => break,
            Ok(_) => {
                let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
                text.strip_suffix(b"\r").unwrap_or(text).len() > LINE_BYTES_MAX
            }
            Err(e) => {
                backend.sync()?;
                return Err(format!("cannot read {script_name}: {e}").into());
            }
        };
        line_no += 1;
        let parsed = match std::str::from_utf8(&raw) {
            _ if too_long => Err(format!("longer than {LINE_BYTES_MAX} bytes")),
            Ok(text) => parse_line(text, config, risk),
            Err(_) => Err("not valid UTF-8".to_string()),
        };
        match parsed.and_then(|line| match line {
            // A clock line is a tick: time alone, sequenced, so expiries happen on it.
            Some(Line::Clock(ms)) => clock.set(ms).map(|()| Some(Command::Tick)),
            Some(Line::Command(cmd)) => Ok(Some(cmd)),
            None => Ok(None),
        }) {
            Ok(None) => {}
            Ok(Some(cmd)) => {
                let ts = match cmd {
                    Command::Query(_) => clock.query_stamp(),
                    Command::Tick => clock.tick_stamp(),
                    _ => clock.stamp(),
                };
                backend.run(cmd, ts)?
            }
            Err(reason) => {
                // Every event before it first, so a terminal shows the error after them.
                backend.sync()?;
                eprintln!("line {line_no}: {reason}");
                bad_lines += 1;
            }
        }
    }
    backend.finish(final_state)?;
    Ok(bad_lines)
}

/// The longest script line, without its line ending (a command is well under 200 bytes).
const LINE_BYTES_MAX: usize = 4096;

/// Skips the rest of a line: up to and including its newline, or to the end of the input.
fn skip_line(input: &mut dyn BufRead) -> io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// The script's time: what each command is stamped with (engine time, docs/matching.md).
/// Without `clock` lines the first command is stamped 0 and each next one 1 µs later; a
/// `clock,<unix_ms>` line moves the stamp of the commands after it to that time (or leaves it
/// if the script is already past it), and they go on 1 µs apart from there. A query takes no
/// script time: it is stamped with the previous command's time, so that a script with queries
/// ends in the state (engine time included) of the same script without them.
#[derive(Debug, Default)]
struct ScriptClock {
    /// The next command's stamp, Unix nanoseconds.
    next_ns: u64,
    /// The last stamp given to a command that is not a query (0 before any).
    last_ns: u64,
    /// The last `clock` line's value.
    last_ms: Option<u64>,
}

impl ScriptClock {
    /// A `clock,<unix_ms>` line: monotonic, so an earlier value than the last is a line error.
    fn set(&mut self, ms: u64) -> Result<(), String> {
        if let Some(last) = self.last_ms.filter(|&last| ms < last) {
            return Err(format!(
                "clock goes backwards: {ms} ms is before the previous clock line's {last} ms"
            ));
        }
        let ns = ms
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("clock {ms} ms is too late: nanoseconds overflow 64 bits"))?;
        self.last_ms = Some(ms);
        self.next_ns = self.next_ns.max(ns);
        Ok(())
    }

    /// The stamp of the next command; the clock moves on 1 µs.
    fn stamp(&mut self) -> u64 {
        let ts = self.next_ns;
        self.last_ns = ts;
        self.next_ns = self.next_ns.saturating_add(1_000);
        ts
    }

    /// The stamp of a `clock` line's tick: the time the line set (the next command's too);
    /// the clock does not move on.
    fn tick_stamp(&mut self) -> u64 {
        self.last_ns = self.next_ns;
        self.next_ns
    }

    /// The stamp of a query: the previous command's; the clock does not move.
    fn query_stamp(&self) -> u64 {
        self.last_ns
    }
}

/// Where the commands run: the single-threaded engine, or the threaded pipeline. Either way
/// the same printer writes the same lines.
trait Backend {
    /// Runs one command stamped `ts_ns` (its events are printed in order, now or soon); stops
    /// the run if output has failed.
    fn run(&mut self, cmd: Command, ts_ns: u64) -> Result<(), Fatal>;
    /// Waits until every event of the commands run so far is printed, and flushes them.
    fn sync(&mut self) -> Result<(), Fatal>;
    /// Ends the run: every event printed, then (with `final_state`) the final lines, flushed.
    fn finish(self, final_state: bool) -> Result<(), Fatal>;
}

/// The single-threaded engine: `Engine::process`, events printed as they come.
struct Direct<W: Write> {
    engine: Engine,
    out: Printer<W>,
}

impl<W: Write> Backend for Direct<W> {
    fn run(&mut self, cmd: Command, ts_ns: u64) -> Result<(), Fatal> {
        let out = &mut self.out;
        self.engine
            .process_at(ts_ns, &cmd, &mut |e: &Event| out.event(e));
        out.command_done(ts_ns);
        self.out
            .take_error()
            .map_or(Ok(()), |e| Err(output_error(e)))
    }

    fn sync(&mut self) -> Result<(), Fatal> {
        self.out.flush().map_err(output_error)
    }

    fn finish(mut self, final_state: bool) -> Result<(), Fatal> {
        if final_state {
            self.out.final_state(&self.engine);
        }
        self.sync()
    }
}

/// The threaded pipeline (`--pipeline`): commands are submitted in order; the output handler
/// (on the pipeline's outbound thread) prints each event and records each command's `Done`.
struct Threaded {
    pipeline: Pipeline,
    out: Arc<Mutex<Printer<BufWriter<io::Stdout>>>>,
    /// The sequence of the last command whose events are all printed.
    done: Arc<AtomicU64>,
    /// The sequence of the last command submitted (0: none).
    submitted: u64,
}

impl Threaded {
    fn start(args: &Args, config: &Config, risk: RiskMode) -> Result<Threaded, Fatal> {
        let mut printer = Printer::new(BufWriter::new(io::stdout()), config);
        if args.market_data {
            printer = printer.with_market_data(config);
        }
        let out = Arc::new(Mutex::new(printer));
        let done = Arc::new(AtomicU64::new(0));
        let (handler_out, handler_done) = (Arc::clone(&out), Arc::clone(&done));
        let mut builder = Pipeline::builder(config)
            .layout(args.layout)
            .transport(args.transport)
            // Never more spinning threads than cores, whatever the layout.
            .wait(WaitStrategy::Yield)
            .risk(risk)
            .on_output(move |o: &Output| match &o.kind {
                OutputKind::Event(e) => lock(&handler_out).event(e),
                OutputKind::Done => {
                    lock(&handler_out).command_done(o.ts);
                    handler_done.store(o.seq.0, Ordering::Release)
                }
            });
        if let Some(dir) = &args.journal {
            builder = builder
                .journal(dir, JournalConfig::default())
                .snapshot_every(args.snapshot_every);
        }
        let pipeline = builder
            .start()
            .map_err(|e| format!("cannot start the pipeline: {e}"))?;
        // A recovered journal continues its numbering: nothing of this run is done yet.
        done.store(pipeline.next_seq().0.saturating_sub(1), Ordering::Release);
        let submitted = pipeline.next_seq().0.saturating_sub(1);
        Ok(Threaded {
            pipeline,
            out,
            done,
            submitted,
        })
    }

    fn check(&self) -> Result<(), Fatal> {
        lock(&self.out)
            .take_error()
            .map_or(Ok(()), |e| Err(output_error(e)))
    }
}

/// The printer, even if a thread panicked while holding it (it holds no invariant a panic
/// could break that the lines would not show).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backend for Threaded {
    fn run(&mut self, cmd: Command, ts_ns: u64) -> Result<(), Fatal> {
        self.submitted = self
            .pipeline
            .submit_at(cmd, ts_ns)
            .map_err(|e| format!("command {}: {e}", self.submitted + 1))?
            .0;
        self.check()
    }

    fn sync(&mut self) -> Result<(), Fatal> {
        while self.done.load(Ordering::Acquire) < self.submitted {
            std::thread::yield_now();
        }
        lock(&self.out).flush().map_err(output_error)
    }

    fn finish(self, final_state: bool) -> Result<(), Fatal> {
        let report = self
            .pipeline
            .shutdown()
            .map_err(|e| format!("the pipeline failed: {e}"))?;
        let mut out = lock(&self.out);
        if final_state {
            out.final_state(&report.engine);
        }
        out.flush().map_err(output_error)
    }
}

// ---------------------------------------------------------------- parsing

/// A parsed script line.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A command for the engine.
    Command(Command),
    /// `clock,<unix_ms>`: the time of the commands that follow.
    Clock(u64),
}

/// Parses one script line: `Ok(None)` for a blank or comment line, the line, or why not.
/// With risk off, account commands are errors: there are no accounts to apply them to.
fn parse_line(line: &str, config: &Config, risk: RiskMode) -> Result<Option<Line>, String> {
    let body = line
        .split_once('#')
        .map_or(line, |(before, _)| before)
        .trim();
    if body.is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = body.split(',').map(str::trim).collect();
    let word = fields[0];
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    let account_command = ["deposit", "withdraw", "approve", "reject_withdrawal"]
        .into_iter()
        .find(|name| is(name));
    if let (Some(name), RiskMode::Off) = (account_command, risk) {
        return Err(format!(
            "{name}: accounts are off (--no-risk runs the order books alone; run without it \
             for deposits, withdrawals and approvals)"
        ));
    }
    if is("clock") {
        expect_fields(&fields, 2, 2, CLOCK_USAGE)?;
        return Ok(Some(Line::Clock(number(
            "unix_ms",
            fields[1],
            u64::MIN,
            u64::MAX,
        )?)));
    }
    let cmd = if is("order") {
        parse_order(&fields, config)?
    } else if is("cancel") {
        expect_fields(&fields, 4, 4, CANCEL_USAGE)?;
        Command::Cancel {
            user: user(fields[1])?,
            symbol: symbol(fields[2], config)?,
            client_order_id: client_order_id(fields[3])?,
        }
    } else if is("amend") {
        expect_fields(&fields, 6, 6, AMEND_USAGE)?;
        Command::Amend {
            user: user(fields[1])?,
            symbol: symbol(fields[2], config)?,
            client_order_id: client_order_id(fields[3])?,
            price: price("new_price", fields[4])?,
            qty: qty("new_qty", fields[5])?,
        }
    } else if is("cancel_order") {
        expect_fields(&fields, 4, 4, CANCEL_ORDER_USAGE)?;
        Command::CancelOrder {
            user: user(fields[1])?,
            symbol: symbol(fields[2], config)?,
            order_id: order_id(fields[3])?,
        }
    } else if is("amend_order") {
        expect_fields(&fields, 6, 6, AMEND_ORDER_USAGE)?;
        Command::AmendOrder {
            user: user(fields[1])?,
            symbol: symbol(fields[2], config)?,
            order_id: order_id(fields[3])?,
            price: price("new_price", fields[4])?,
            qty: qty("new_qty", fields[5])?,
        }
    } else if is("mass_cancel") {
        expect_fields(&fields, 2, 3, MASS_CANCEL_USAGE)?;
        Command::MassCancel {
            user: user(fields[1])?,
            symbol: match fields.get(2) {
                Some(s) => Some(symbol(s, config)?),
                None => None,
            },
            on_disconnect: false,
        }
    } else if is("deposit") {
        expect_fields(&fields, 4, 4, DEPOSIT_USAGE)?;
        Command::Deposit {
            user: user(fields[1])?,
            currency: currency(fields[2], config)?,
            amount: amount(fields[3])?,
        }
    } else if is("withdraw") {
        expect_fields(&fields, 4, 4, WITHDRAW_USAGE)?;
        Command::Withdraw {
            user: user(fields[1])?,
            currency: currency(fields[2], config)?,
            amount: amount(fields[3])?,
        }
    } else if is("approve") {
        expect_fields(&fields, 3, 3, APPROVE_USAGE)?;
        Command::ApproveWithdrawal {
            operator: operator(fields[1])?,
            withdrawal_id: withdrawal_id(fields[2])?,
        }
    } else if is("reject_withdrawal") {
        expect_fields(&fields, 3, 3, REJECT_WITHDRAWAL_USAGE)?;
        Command::RejectWithdrawal {
            operator: operator(fields[1])?,
            withdrawal_id: withdrawal_id(fields[2])?,
        }
    } else if is("query_order") {
        expect_fields(&fields, 3, 3, QUERY_ORDER_USAGE)?;
        Command::Query(Query::Order {
            user: user(fields[1])?,
            client_order_id: client_order_id(fields[2])?,
        })
    } else if is("query_order_id") {
        expect_fields(&fields, 3, 3, QUERY_ORDER_ID_USAGE)?;
        Command::Query(Query::OrderById {
            user: user(fields[1])?,
            order_id: order_id(fields[2])?,
        })
    } else if is("query_open_orders") {
        expect_fields(&fields, 2, 3, QUERY_OPEN_ORDERS_USAGE)?;
        Command::Query(Query::OpenOrders {
            user: user(fields[1])?,
            limit: match fields.get(2) {
                Some(text) => number("limit", text, u32::MIN, u32::MAX)?,
                None => u32::MAX,
            },
        })
    } else if is("query_balances") {
        expect_fields(&fields, 2, 2, QUERY_BALANCES_USAGE)?;
        Command::Query(Query::Balances {
            user: user(fields[1])?,
        })
    } else if is("query_book") {
        expect_fields(&fields, 2, 3, QUERY_BOOK_USAGE)?;
        Command::Query(Query::Book {
            symbol: symbol(fields[1], config)?,
            depth: match fields.get(2) {
                Some(text) => number("depth", text, u32::MIN, u32::MAX)?,
                None => u32::MAX,
            },
        })
    } else {
        return Err(format!(
            "unknown command {word:?} (expected order, cancel, amend, cancel_order, \
             amend_order, mass_cancel, deposit, withdraw, approve, reject_withdrawal, \
             query_order, query_order_id, query_open_orders, query_balances, query_book or \
             clock)"
        ));
    };
    Ok(Some(Line::Command(cmd)))
}

const ORDER_USAGE: &str =
    "order,<user>,<symbol>,<client_order_id>,<side>,<type>,<tif>,<price>,<qty>[,key=value…]";
const CANCEL_USAGE: &str = "cancel,<user>,<symbol>,<client_order_id>";
const AMEND_USAGE: &str = "amend,<user>,<symbol>,<client_order_id>,<new_price>,<new_qty>";
const MASS_CANCEL_USAGE: &str = "mass_cancel,<user>[,<symbol>]";
const CANCEL_ORDER_USAGE: &str = "cancel_order,<user>,<symbol>,<order_id>";
const AMEND_ORDER_USAGE: &str = "amend_order,<user>,<symbol>,<order_id>,<new_price>,<new_qty>";
const DEPOSIT_USAGE: &str = "deposit,<user>,<currency>,<amount>";
const WITHDRAW_USAGE: &str = "withdraw,<user>,<currency>,<amount>";
const APPROVE_USAGE: &str = "approve,<operator>,<withdrawal_id>";
const REJECT_WITHDRAWAL_USAGE: &str = "reject_withdrawal,<operator>,<withdrawal_id>";
const QUERY_ORDER_USAGE: &str = "query_order,<user>,<client_order_id>";
const QUERY_ORDER_ID_USAGE: &str = "query_order_id,<user>,<order_id>";
const QUERY_OPEN_ORDERS_USAGE: &str = "query_open_orders,<user>[,<limit>]";
const QUERY_BALANCES_USAGE: &str = "query_balances,<user>";
const QUERY_BOOK_USAGE: &str = "query_book,<symbol>[,<depth>]";
const CLOCK_USAGE: &str = "clock,<unix_ms>";

/// Checks that a command has between `min` and `max` fields (its name included).
fn expect_fields(fields: &[&str], min: usize, max: usize, usage: &str) -> Result<(), String> {
    let n = fields.len();
    if n < min {
        Err(format!("missing fields: expected {usage}"))
    } else if n > max {
        Err(format!("too many fields: expected {usage}"))
    } else {
        Ok(())
    }
}

/// The option keys of an `order` line.
const ORDER_KEYS: &str = "post_only, stp, display, stop, budget, expire";

fn parse_order(fields: &[&str], config: &Config) -> Result<Command, String> {
    expect_fields(fields, 9, usize::MAX, ORDER_USAGE)?;
    let mut order = NewOrder {
        user: user(fields[1])?,
        symbol: symbol(fields[2], config)?,
        client_order_id: client_order_id(fields[3])?,
        side: vocab_word("side", fields[4])?,
        order_type: vocab_word("type", fields[5])?,
        tif: vocab_word("time in force", fields[6])?,
        price: price("price", fields[7])?,
        qty: qty("qty", fields[8])?,
        stop_price: Price(0),
        display_qty: Qty(0),
        post_only: false,
        stp: StpMode::None,
        budget: 0,
        expire_at: 0,
    };
    let mut seen: Vec<&str> = Vec::new();
    for option in &fields[9..] {
        let Some((key, value)) = option.split_once('=') else {
            return Err(format!(
                "option {option:?} is not key=value (keys: {ORDER_KEYS})"
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let key = ["post_only", "stp", "display", "stop", "budget", "expire"]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(key))
            .ok_or_else(|| format!("unknown option {key:?} (keys: {ORDER_KEYS})"))?;
        if seen.contains(&key) {
            return Err(format!("option {key} given twice"));
        }
        seen.push(key);
        match key {
            "post_only" => {
                order.post_only = word("post_only", value, &[("1", true), ("0", false)])?;
            }
            "stp" => {
                order.stp = vocab_word("stp", value)?;
            }
            "display" => order.display_qty = qty("display", value)?,
            "budget" => {
                // 0 is the engine's "no budget": written out, it is a mistake.
                order.budget = number("budget", value, 1, u64::MAX)?;
                if order.budget == 0 {
                    return Err("budget must be at least 1 (quote minimal units)".into());
                }
            }
            "expire" => {
                let ms: u64 = number("expire (unix_ms)", value, 1, u64::MAX)?;
                if ms == 0 {
                    return Err("expire must be a Unix time in milliseconds, not 0".into());
                }
                order.expire_at = ms.checked_mul(1_000_000).ok_or_else(|| {
                    format!("expire {ms} ms is too late: nanoseconds overflow 64 bits")
                })?;
            }
            _ => order.stop_price = price("stop", value)?,
        }
    }
    Ok(Command::NewOrder(order))
}

/// One of a fixed set of words, case-insensitively.
/// A value of a vocabulary enum by its engine name (any case), from the engine's one table.
fn vocab_word<T: Vocab>(what: &str, text: &str) -> Result<T, String> {
    let choices: Vec<(&str, T)> = T::ALL.iter().map(|&v| (v.name(), v)).collect();
    word(what, text, &choices)
}

fn word<T: Copy>(what: &str, text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    if let Some(&(_, v)) = choices.iter().find(|(w, _)| w.eq_ignore_ascii_case(text)) {
        return Ok(v);
    }
    let names: Vec<&str> = choices.iter().map(|&(w, _)| w).collect();
    Err(format!(
        "{what} {text:?} is not one of {}",
        names.join(", ")
    ))
}

/// A decimal integer of type `T`.
fn number<T: FromStr + fmt::Display>(what: &str, text: &str, min: T, max: T) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{what} {text:?} is not an integer in {min}..={max}"))
}

fn user(text: &str) -> Result<UserId, String> {
    number("user", text, u32::MIN, u32::MAX).map(UserId)
}

fn order_id(text: &str) -> Result<OrderId, String> {
    number("order_id", text, u64::MIN, u64::MAX).map(OrderId)
}

fn client_order_id(text: &str) -> Result<ClientOrderId, String> {
    number("client_order_id", text, u64::MIN, u64::MAX).map(ClientOrderId)
}

fn price(what: &str, text: &str) -> Result<Price, String> {
    number(what, text, i64::MIN, i64::MAX).map(Price)
}

fn qty(what: &str, text: &str) -> Result<Qty, String> {
    number(what, text, u64::MIN, u64::MAX).map(Qty)
}

fn amount(text: &str) -> Result<u64, String> {
    number("amount", text, u64::MIN, u64::MAX)
}

fn operator(text: &str) -> Result<OperatorId, String> {
    number("operator", text, u32::MIN, u32::MAX).map(OperatorId)
}

fn withdrawal_id(text: &str) -> Result<WithdrawalId, String> {
    number("withdrawal_id", text, u64::MIN, u64::MAX).map(WithdrawalId)
}

/// A configured currency code, or a numeric currency id (which the engine checks).
fn currency(text: &str, config: &Config) -> Result<CurrencyId, String> {
    if let Some(id) = config.currency_id(text) {
        return Ok(id);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return number("currency id", text, u16::MIN, u16::MAX).map(CurrencyId);
    }
    let codes: Vec<&str> = config.currencies.iter().map(|c| c.code.as_str()).collect();
    Err(format!(
        "unknown currency {text:?} (configured: {})",
        codes.join(", ")
    ))
}

/// A configured symbol name, or a numeric symbol id (which the engine checks).
fn symbol(text: &str, config: &Config) -> Result<SymbolId, String> {
    if let Some(id) = config.symbol_id(text) {
        return Ok(id);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return number("symbol id", text, u16::MIN, u16::MAX).map(SymbolId);
    }
    let names: Vec<&str> = config.symbols.iter().map(|s| s.name.as_str()).collect();
    Err(format!(
        "unknown symbol {text:?} (configured: {})",
        names.join(", ")
    ))
}

// ---------------------------------------------------------------- output

fn output_error(e: io::Error) -> Fatal {
    if e.kind() == io::ErrorKind::BrokenPipe {
        // Whoever reads our output has stopped (`| head`): nothing useful to say.
        Fatal::Quiet
    } else {
        Fatal::Message(format!("cannot write output: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(line: Option<Line>) -> Option<Command> {
        line.map(|l| match l {
            Line::Command(cmd) => cmd,
            Line::Clock(ms) => panic!("a clock line ({ms}), not a command"),
        })
    }

    fn parse(line: &str) -> Result<Option<Command>, String> {
        parse_line(line, &Config::default(), RiskMode::On).map(command)
    }

    fn parse_no_risk(line: &str) -> Result<Option<Command>, String> {
        parse_line(line, &Config::default(), RiskMode::Off).map(command)
    }

    #[test]
    fn clock_lines_and_the_script_clock() {
        let clock = |l: &str| parse_line(l, &Config::default(), RiskMode::Off);
        assert_eq!(
            clock("Clock, 1700000000000"),
            Ok(Some(Line::Clock(1_700_000_000_000)))
        );
        assert!(clock("clock").unwrap_err().contains("missing fields"));
        assert!(clock("clock,1,2").unwrap_err().contains("too many fields"));
        assert!(clock("clock,-1").unwrap_err().contains("unix_ms"));

        // Without clock lines: 0, then 1 µs a command.
        let mut c = ScriptClock::default();
        assert_eq!((c.stamp(), c.stamp()), (0, 1_000));
        // A clock line moves the next stamp; the commands after it go on 1 µs apart.
        c.set(5).unwrap();
        assert_eq!((c.stamp(), c.stamp()), (5_000_000, 5_001_000));
        // The same value again is not backwards, and the script is already past it.
        c.set(5).unwrap();
        assert_eq!(c.stamp(), 5_002_000);
        // Earlier than the last clock line: a line error, nothing changed.
        assert!(c.set(4).unwrap_err().contains("backwards"));
        assert_eq!(c.stamp(), 5_003_000);
        assert!(c.set(u64::MAX).unwrap_err().contains("overflow"));
        assert_eq!(c.stamp(), 5_004_000);
        // A query is stamped with the previous command's time and moves nothing.
        assert_eq!((c.query_stamp(), c.query_stamp()), (5_004_000, 5_004_000));
        assert_eq!(c.stamp(), 5_005_000);
        // A clock line's tick is stamped with the time it sets, which the next command gets
        // too; a query after it has the tick's time.
        c.set(9).unwrap();
        assert_eq!(c.tick_stamp(), 9_000_000);
        assert_eq!(c.query_stamp(), 9_000_000);
        assert_eq!(c.stamp(), 9_000_000);
    }

    #[test]
    fn budget_and_expiry_options() {
        let order = |l: &str| match parse(l) {
            Ok(Some(Command::NewOrder(o))) => Ok(o),
            other => Err(format!("{other:?}")),
        };
        let o = order("order,2,BTC-KRW,3,BUY,MARKET,IOC,15100,0,budget=100000").unwrap();
        assert_eq!((o.budget, o.qty, o.expire_at), (100_000, Qty(0), 0));
        let o = order("order,2,BTC-KRW,4,SELL,LIMIT,gtd,15100,2,Expire=1733400120000").unwrap();
        assert_eq!(
            (o.tif, o.expire_at),
            (TimeInForce::Gtd, 1_733_400_120_000_000_000)
        );
        assert_eq!(
            order("order,2,BTC-KRW,5,BUY,LIMIT,DAY,15100,2")
                .unwrap()
                .tif,
            TimeInForce::Day
        );
        let err = |l: &str| parse(l).unwrap_err();
        assert!(err("order,2,BTC-KRW,3,BUY,MARKET,IOC,1,0,budget=0").contains("at least 1"));
        assert!(err("order,2,BTC-KRW,3,BUY,MARKET,IOC,1,0,budget=-5").contains("budget"));
        assert!(err("order,2,BTC-KRW,3,BUY,LIMIT,GTD,1,1,expire=0").contains("not 0"));
        assert!(
            err("order,2,BTC-KRW,3,BUY,LIMIT,GTD,1,1,expire=18446744073709551")
                .contains("overflow")
        );
        assert!(err("order,2,BTC-KRW,3,BUY,LIMIT,GTC,1,1,budget=1,budget=2").contains("twice"));
        assert!(err("order,2,BTC-KRW,3,BUY,LIMIT,GTC,1,1,ttl=5").contains("budget, expire"));
    }

    #[test]
    fn blank_and_comment_lines_are_nothing() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   \r\n"), Ok(None));
        assert_eq!(parse("# order,1,BTC-KRW,1,BUY,LIMIT,GTC,1,1"), Ok(None));
    }

    #[test]
    fn an_order_with_every_option() {
        let cmd = parse(
            " Order , 7 , 0 , 9 , sell , stop_limit , gtc , 100 , 50 , display=5, STP=decrement,\
             post_only=1 , stop = 90 # trailing comment",
        )
        .unwrap()
        .unwrap();
        let Command::NewOrder(o) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(
            o,
            NewOrder {
                user: UserId(7),
                symbol: SymbolId(0),
                client_order_id: ClientOrderId(9),
                side: Side::Sell,
                order_type: OrderType::StopLimit,
                tif: TimeInForce::Gtc,
                price: Price(100),
                qty: Qty(50),
                stop_price: Price(90),
                display_qty: Qty(5),
                post_only: true,
                stp: StpMode::Decrement,
                budget: 0,
                expire_at: 0,
            }
        );
    }

    #[test]
    fn shape_errors_are_reported() {
        let err = |l: &str| parse(l).unwrap_err();
        assert!(err("order,1,BTC-KRW,1,BUY,LIMIT,GTC,100").contains("missing fields"));
        assert!(err("cancel,1,BTC-KRW,1,2").contains("too many fields"));
        assert!(err("order,1,XRP-KRW,1,BUY,LIMIT,GTC,100,1").contains("unknown symbol"));
        assert!(err("order,1,BTC-KRW,1,HOLD,LIMIT,GTC,100,1").contains("side"));
        assert!(err("order,1,BTC-KRW,1,BUY,LIMIT,GTC,1.5,1").contains("price"));
        assert!(err("order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,-1").contains("qty"));
        assert!(err("order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1,colour=red").contains("unknown option"));
        assert!(err("order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1,stop=1,stop=2").contains("twice"));
        assert!(err("order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1,post_only=yes").contains("post_only"));
        assert!(err("mass_cancel,4294967296").contains("user"));
        assert!(err("mass_cancel,1,65536").contains("symbol id"));
        assert!(err("deposit,1,KRW").contains("missing fields"));
        assert!(err("deposit,1,KRW,100,5").contains("too many fields"));
        assert!(err("deposit,1,DOGE,100").contains("unknown currency"));
        assert!(err("deposit,1,krw,100").contains("unknown currency"));
        assert!(err("deposit,1,KRW,-1").contains("amount"));
        assert!(err("deposit,1,KRW,18446744073709551616").contains("amount"));
        assert!(err("withdraw,1,65536,1").contains("currency id"));
        assert!(err("approve,900").contains("missing fields"));
        assert!(err("approve,-900,1").contains("operator"));
        assert!(err("reject_withdrawal,900,x").contains("withdrawal_id"));
        assert!(err("query_order,1").contains("missing fields"));
        assert!(err("query_order,1,2,3").contains("too many fields"));
        assert!(err("query_order,1,x").contains("client_order_id"));
        assert!(err("query_open_orders").contains("missing fields"));
        assert!(err("query_open_orders,1,4294967296").contains("limit"));
        assert!(err("query_balances,1,KRW").contains("too many fields"));
        assert!(err("query_balances,-1").contains("user"));
        assert!(err("query_book,XRP-KRW").contains("unknown symbol"));
        assert!(err("query_book,BTC-KRW,-1").contains("depth"));
        assert!(err("query_book,BTC-KRW,1,2").contains("too many fields"));
        assert!(err("frobnicate,1").contains("unknown command"));
        assert!(err("cancel_order,1,BTC-KRW").contains("missing fields"));
        assert!(err("cancel_order,1,BTC-KRW,x").contains("order_id"));
        assert!(err("amend_order,1,BTC-KRW,3,100").contains("missing fields"));
        assert!(err("amend_order,1,BTC-KRW,3,100,-1").contains("new_qty"));
        assert_eq!(
            parse("cancel_order, 2, ETH-KRW, 18446744073709551615"),
            Ok(Some(Command::CancelOrder {
                user: UserId(2),
                symbol: SymbolId(1),
                order_id: OrderId(u64::MAX),
            }))
        );
        assert_eq!(
            parse("Amend_Order,2,0,7,-5,0"),
            Ok(Some(Command::AmendOrder {
                user: UserId(2),
                symbol: SymbolId(0),
                order_id: OrderId(7),
                price: Price(-5),
                qty: Qty(0),
            }))
        );
    }

    #[test]
    fn account_commands() {
        assert_eq!(
            parse("Deposit, 3, BTC, 50000 # by code"),
            Ok(Some(Command::Deposit {
                user: UserId(3),
                currency: CurrencyId(2),
                amount: 50_000,
            }))
        );
        // A numeric id is passed on: the engine judges it (UNKNOWN_CURRENCY).
        assert_eq!(
            parse("withdraw,3,77,18446744073709551615"),
            Ok(Some(Command::Withdraw {
                user: UserId(3),
                currency: CurrencyId(77),
                amount: u64::MAX,
            }))
        );
        assert_eq!(
            parse("APPROVE,900,1"),
            Ok(Some(Command::ApproveWithdrawal {
                operator: OperatorId(900),
                withdrawal_id: WithdrawalId(1),
            }))
        );
        assert_eq!(
            parse("reject_withdrawal,901,2"),
            Ok(Some(Command::RejectWithdrawal {
                operator: OperatorId(901),
                withdrawal_id: WithdrawalId(2),
            }))
        );
    }

    #[test]
    fn queries_with_and_without_their_optional_field() {
        let q = |line: &str| match parse(line) {
            Ok(Some(Command::Query(q))) => q,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(
            q("query_order,3,18446744073709551615"),
            Query::Order {
                user: UserId(3),
                client_order_id: ClientOrderId(u64::MAX),
            }
        );
        assert_eq!(
            q("query_order_id,3,42"),
            Query::OrderById {
                user: UserId(3),
                order_id: OrderId(42),
            }
        );
        assert_eq!(
            q("Query_Open_Orders, 3"),
            Query::OpenOrders {
                user: UserId(3),
                limit: u32::MAX,
            }
        );
        assert_eq!(
            q("query_open_orders,3,0"),
            Query::OpenOrders {
                user: UserId(3),
                limit: 0,
            }
        );
        assert_eq!(q("query_balances,4"), Query::Balances { user: UserId(4) });
        assert_eq!(
            q("query_book,ETH-KRW"),
            Query::Book {
                symbol: SymbolId(1),
                depth: u32::MAX,
            }
        );
        // A numeric symbol id is passed on: the engine judges it (UNKNOWN_SYMBOL).
        assert_eq!(
            q("QUERY_BOOK,77,5 # top five"),
            Query::Book {
                symbol: SymbolId(77),
                depth: 5,
            }
        );
        // With risk off a balances query is the engine's to refuse, not a line error.
        assert!(matches!(
            parse_no_risk("query_balances,4"),
            Ok(Some(Command::Query(Query::Balances { .. })))
        ));
    }

    #[test]
    fn account_commands_are_errors_with_risk_off() {
        for (line, name) in [
            ("deposit,1,KRW,100", "deposit"),
            ("WITHDRAW,1,KRW,100", "withdraw"),
            ("approve,900,1", "approve"),
            ("reject_withdrawal,900,1", "reject_withdrawal"),
            // Off is off, whatever the shape of the rest of the line.
            ("deposit,1", "deposit"),
        ] {
            let e = parse_no_risk(line).unwrap_err();
            assert!(e.starts_with(name) && e.contains("accounts are off"), "{e}");
        }
        assert!(parse_no_risk("order,1,BTC-KRW,1,BUY,LIMIT,GTC,100,1").is_ok());
    }
}
