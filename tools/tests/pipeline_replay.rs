//! `ringbook scenario --pipeline` and `ringbook journal replay`, end to end on the real binary.
//!
//! - `--pipeline` prints the same bytes (stdout, stderr, exit status) as the single-threaded
//!   run, on the demo script and on generated scripts (every order type, cancels, amends, mass
//!   cancels, queries, deposits, withdrawals, approvals and rejections, over several users and
//!   symbols), for every layout and both transports, risk on and off.
//! - `journal replay` of the journal a `scenario --pipeline --journal DIR` run wrote prints the
//!   scenario's `--final` lines; `--to SEQ` prints the state after the first SEQ commands; a
//!   journal with snapshots replays to the same state as without them; replay leaves the
//!   directory byte for byte as it was; its errors have the documented exit status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ringbook");
const LAYOUTS: [&str; 3] = ["fused", "J|RMS", "split"];
const TRANSPORTS: [&str; 2] = ["disruptor", "crossbeam"];

// ---------------------------------------------------------------- running the binary

#[derive(Debug, PartialEq, Eq)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `ringbook ARGS` with `stdin` as its standard input.
fn ringbook(args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringbook");
    let mut input = child.stdin.take().unwrap();
    let text = stdin.as_bytes().to_vec();
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

fn demo_script() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/demo.script");
    std::fs::read_to_string(path).expect("read the demo script")
}

/// The last `n` lines of `text`, each with its newline.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() >= n,
        "{} lines, wanted the last {n}",
        lines.len()
    );
    lines[lines.len() - n..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The `--final` part of a scenario's output: the trailing book/balance/fees/state_hash lines.
fn final_lines(text: &str) -> String {
    let n = text
        .lines()
        .rev()
        .take_while(|l| {
            ["book", "balance", "fees", "state_hash"]
                .iter()
                .any(|k| l.starts_with(&format!(r#"{{"event":"{k}""#)))
        })
        .count();
    last_lines(text, n)
}

// ---------------------------------------------------------------- the script generator

/// A deterministic xorshift generator: same seed, same script.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const USERS: u64 = 8;
/// (symbol, mid price) in the default config.
const SYMBOLS: [(&str, i64); 3] = [
    ("BTC-KRW", 15_000),
    ("ETH-KRW", 3_000),
    ("AAPL-USD", 18_000),
];

/// A script of `commands` command lines (plus a few comments), all of them valid: orders of
/// every type and option, cancels and amends of orders issued before, mass cancels, queries
/// (some refused: an account never opened, a symbol not configured, balances with risk off),
/// and with `accounts` deposits, withdrawals, approvals and withdrawal rejections.
fn generate(seed: u64, commands: usize, accounts: bool) -> String {
    let mut rng = Rng(seed | 1);
    let mut s = String::new();
    let mut n = 0;
    // Every user's last client order id per symbol.
    let mut coid = [[0u64; 3]; USERS as usize + 1];
    let mut withdrawals = 0u64;
    if accounts {
        for user in 1..=USERS {
            for (currency, amount) in [
                ("KRW", 2_000_000_000u64),
                ("USD", 2_000_000_000),
                ("BTC", 100_000_000),
                ("ETH", 1_000_000_000),
                ("AAPL", 1_000_000),
            ] {
                if n < commands {
                    let _ = writeln!(s, "deposit,{user},{currency},{amount}");
                    n += 1;
                }
            }
        }
    }
    while n < commands {
        let user = 1 + rng.below(USERS);
        let sym = rng.below(3) as usize;
        let (name, mid) = SYMBOLS[sym];
        let price = |rng: &mut Rng| mid - 20 + rng.below(41) as i64;
        let roll = rng.below(106);
        if roll < 1 {
            let _ = writeln!(s, "# a comment line, {n} commands so far");
            continue;
        }
        if roll < 2 {
            // Engine time jumps (10 ms per command so far, from November 2023): trades carry it.
            // A clock line is a command (a tick): GTD orders it reaches expire on it.
            let _ = writeln!(s, "clock,{}", 1_700_000_000_000u64 + n as u64 * 10);
            n += 1;
            continue;
        }
        let line = if roll < 45 {
            coid[user as usize][sym] += 1;
            let side = rng.pick(&["BUY", "SELL"]);
            let tif = rng.pick(&["GTC", "GTC", "GTC", "IOC", "FOK", "GTD", "GTD", "DAY"]);
            let mut l = format!(
                "order,{user},{name},{},{side},LIMIT,{tif},{},{}",
                coid[user as usize][sym],
                price(&mut rng),
                1 + rng.below(40)
            );
            if tif == "GTD" {
                // On the clock lines' scale: most expire at a later clock line, some were past
                // already (EXPIRY_IN_PAST), and before the first clock line none is near.
                let _ = write!(
                    l,
                    ",expire={}",
                    1_700_000_000_000u64 + (n as u64 + rng.below(400)).saturating_sub(40) * 10
                );
            }
            match rng.below(8) {
                0 => l.push_str(",post_only=1"),
                1 => {
                    let _ = write!(l, ",display={}", 1 + rng.below(5));
                }
                2 => {
                    let stp =
                        rng.pick(&["CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH", "DECREMENT"]);
                    let _ = write!(l, ",stp={stp}");
                }
                _ => {}
            }
            l
        } else if roll < 53 {
            coid[user as usize][sym] += 1;
            let side = rng.pick(&["BUY", "SELL"]);
            let protection = if side == "BUY" { mid + 30 } else { mid - 30 };
            if side == "BUY" && rng.below(2) == 0 {
                // A market buy by quote amount: about 0 to 20 lots' worth, capped or not.
                format!(
                    "order,{user},{name},{},BUY,MARKET,IOC,{protection},{},budget={}",
                    coid[user as usize][sym],
                    rng.below(2) * (1 + rng.below(30)),
                    1 + rng.below(20 * mid as u64)
                )
            } else {
                format!(
                    "order,{user},{name},{},{side},MARKET,IOC,{protection},{}",
                    coid[user as usize][sym],
                    1 + rng.below(30)
                )
            }
        } else if roll < 60 {
            coid[user as usize][sym] += 1;
            let side = rng.pick(&["BUY", "SELL"]);
            let stop = price(&mut rng);
            if rng.below(2) == 0 {
                format!(
                    "order,{user},{name},{},{side},STOP_LIMIT,GTC,{},{},stop={stop}",
                    coid[user as usize][sym],
                    price(&mut rng),
                    1 + rng.below(20)
                )
            } else {
                let protection = if side == "BUY" { mid + 40 } else { mid - 40 };
                format!(
                    "order,{user},{name},{},{side},STOP_MARKET,IOC,{protection},{},stop={stop}",
                    coid[user as usize][sym],
                    1 + rng.below(20)
                )
            }
        } else if roll < 72 {
            let last = coid[user as usize][sym];
            if rng.below(3) == 0 {
                // By engine order id: a guess (`order_id_guess`), so the user's own order,
                // another user's or a gone one.
                format!("cancel_order,{user},{name},{}", order_id_guess(&mut rng, n))
            } else {
                format!("cancel,{user},{name},{}", rng.below(last + 2))
            }
        } else if roll < 82 {
            let last = coid[user as usize][sym];
            if rng.below(3) == 0 {
                format!(
                    "amend_order,{user},{name},{},{},{}",
                    order_id_guess(&mut rng, n),
                    price(&mut rng),
                    rng.below(40)
                )
            } else {
                format!(
                    "amend,{user},{name},{},{},{}",
                    rng.below(last + 2),
                    price(&mut rng),
                    1 + rng.below(40)
                )
            }
        } else if roll < 85 {
            if rng.below(2) == 0 {
                format!("mass_cancel,{user}")
            } else {
                format!("mass_cancel,{user},{name}")
            }
        } else if roll >= 100 {
            let last = coid[user as usize][sym];
            match roll - 100 {
                0 | 1 => format!("query_order,{user},{}", rng.below(last + 2)),
                2 => match rng.below(3) {
                    0 => format!("query_open_orders,{user}"),
                    _ => format!("query_open_orders,{user},{}", rng.below(4)),
                },
                // User USERS + 1 never deposits: UNKNOWN_USER.
                3 => format!("query_balances,{}", 1 + rng.below(USERS + 1)),
                _ => match rng.below(5) {
                    0 => format!("query_book,{name}"),
                    // Symbol id 3 is not configured: UNKNOWN_SYMBOL.
                    1 => format!("query_book,{},2", rng.below(4)),
                    _ => format!("query_book,{name},{}", rng.below(6)),
                },
            }
        } else if !accounts {
            continue;
        } else if roll < 89 {
            let currency = rng.pick(&["KRW", "USD", "BTC", "ETH", "AAPL"]);
            format!("deposit,{user},{currency},{}", 1 + rng.below(1_000_000))
        } else if roll < 94 {
            withdrawals += 1;
            let currency = rng.pick(&["KRW", "USD", "BTC", "ETH", "AAPL"]);
            format!("withdraw,{user},{currency},{}", 1 + rng.below(5_000_000))
        } else if roll < 98 {
            let operator = 900 + rng.below(4); // 903 is not an operator
            format!("approve,{operator},{}", 1 + rng.below(withdrawals + 1))
        } else {
            let operator = 900 + rng.below(3);
            format!(
                "reject_withdrawal,{operator},{}",
                1 + rng.below(withdrawals + 1)
            )
        };
        s.push_str(&line);
        s.push('\n');
        n += 1;
    }
    s
}

/// The first `n` command lines of a generated script (its comments dropped); a `clock` line is
/// a command too (a tick: time alone, journaled like any other).
/// A guess at an engine order id after `n` commands, for `cancel_order` and `amend_order`
/// lines. An id names the pool slot its order sits in (the lowest free one when it was placed:
/// docs/matching.md, "Order ids"), so ids are `k × 262 144 + slot` at the default pool, with
/// small slots while few orders live, and `k` growing as slots are reused. Half the guesses are
/// among the first 32 ids (orders placed before any slot was reused: long-lived ones among
/// them, so often another user's live order), the other half `k × 262 144 + slot` with a small
/// slot and `k` up to the commands so far (now and then a live order, mostly a gone or
/// never-issued one).
fn order_id_guess(rng: &mut Rng, n: usize) -> u64 {
    if rng.below(2) == 0 {
        1 + rng.below(32)
    } else {
        rng.below(n as u64 / 4 + 1) * 262_144 + rng.below(48)
    }
}

/// `script` followed by cancels by engine order id of up to three orders still live at its
/// end, each first by another user (NOT_YOUR_ORDER) and then by its owner, and a status query
/// of the last order that expired. The generator's
/// own guesses (`order_id_guess`) rarely name a live order, because ids jump as slots are
/// reused; the live orders' ids are learnt from one run of the script with every user's open
/// orders queried at its end (queries change nothing, and lines appended after the script
/// cannot change what it did).
fn with_cancels_of_live_orders_by_id(script: &str) -> String {
    let mut probe = script.to_owned();
    for user in 0..USERS {
        let _ = writeln!(probe, "query_open_orders,{user}");
    }
    let run = ringbook(&["scenario", "-"], &probe);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let tail: Vec<&str> = run
        .stdout
        .lines()
        .rev()
        .take_while(|l| !l.contains(r#""event":"accepted""#))
        .collect();
    let mut out = script.to_owned();
    let mut picked = 0;
    for line in tail
        .iter()
        .rev()
        .filter(|l| l.starts_with(r#"{"event":"open_order","#))
    {
        if picked == 3 {
            break;
        }
        let (user, id) = (field(line, "user"), field(line, "order_id"));
        let symbol = line
            .split(r#""symbol":""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("an open order names its symbol");
        let other = (user + 1) % USERS;
        let _ = writeln!(out, "cancel_order,{other},{symbol},{id}");
        let _ = writeln!(out, "cancel_order,{user},{symbol},{id}");
        picked += 1;
    }
    assert!(picked > 0, "no order was live at the end of the script");
    // And the status of the last order that expired (its owner's window still holds it unless
    // the owner finished many orders since).
    if let Some(line) =
        run.stdout.lines().rev().find(|l| {
            l.starts_with(r#"{"event":"cancelled","#) && l.contains(r#""reason":"EXPIRED""#)
        })
    {
        let (user, coid) = (field(line, "user"), field(line, "client_order_id"));
        let _ = writeln!(out, "query_order,{user},{coid}");
    }
    out
}

fn first_commands(script: &str, n: usize) -> String {
    let mut out = String::new();
    for line in script.lines().filter(|l| !l.starts_with('#')).take(n) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------- --pipeline

/// Every layout and transport prints exactly what the single-threaded run prints.
fn assert_pipeline_matches(script: &str, extra: &[&str]) {
    let mut args = vec!["scenario", "--final"];
    args.extend_from_slice(extra);
    args.push("-");
    let direct = ringbook(&args, script);
    for layout in LAYOUTS {
        for transport in TRANSPORTS {
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
            let piped = ringbook(&args, script);
            assert!(
                piped == direct,
                "--pipeline --layout {layout} --transport {transport} {extra:?} differs: status \
                 {} vs {}, stderr {:?} vs {:?}, stdout {} vs {} bytes",
                piped.status,
                direct.status,
                piped.stderr,
                direct.stderr,
                piped.stdout.len(),
                direct.stdout.len()
            );
        }
    }
}

#[test]
fn pipeline_equals_single_threaded_on_the_demo() {
    let script = demo_script();
    let direct = ringbook(&["scenario", "--final", "-"], &script);
    assert_eq!(direct.status, 0, "{}", direct.stderr);
    assert_pipeline_matches(&script, &[]);
}

#[test]
fn pipeline_equals_single_threaded_on_generated_scripts_risk_on() {
    let script = with_cancels_of_live_orders_by_id(&generate(0x5eed_0001, 3000, true));
    let direct = ringbook(&["scenario", "--final", "-"], &script);
    assert_eq!(direct.status, 0, "{}", direct.stderr);
    // The script exercises what it should.
    for event in [
        "trade",
        "cancelled",
        "amended",
        "triggered",
        "mass_cancelled",
        "withdrawal_completed",
        "withdrawal_rejected",
        "rejected",
        "order_status",
        "open_orders_end",
        "balances_end",
        "book_level",
    ] {
        assert!(
            direct.stdout.contains(&format!(r#""event":"{event}""#)),
            "no {event} event"
        );
    }
    for reply in [
        r#""found":true"#,
        r#""reason":"UNKNOWN_SYMBOL""#,
        r#""reason":"UNKNOWN_USER""#,
        r#""reason":"NOT_YOUR_ORDER""#,
        // GTD orders expiring (on clock lines and on other commands) and refused; DAY refused
        // (the default config has no session end); budget buys refused for funds.
        r#""reason":"EXPIRED""#,
        r#""status":"EXPIRED""#,
        r#""reason":"EXPIRY_IN_PAST""#,
        r#""reason":"NO_SESSION_END""#,
    ] {
        assert!(direct.stdout.contains(reply), "no {reply}");
    }
    // Budget buys that traded: an accepted market buy with the cap of max_order_qty (1 000 000
    // lots on BTC-KRW and ETH-KRW) and a trade of it.
    assert!(
        direct
            .stdout
            .contains(r#""side":"BUY","type":"MARKET","price":15030,"qty":1000000"#)
            || direct
                .stdout
                .contains(r#""side":"BUY","type":"MARKET","price":3030,"qty":1000000"#),
        "no uncapped budget buy"
    );
    assert_pipeline_matches(&script, &[]);
}

#[test]
fn pipeline_equals_single_threaded_on_generated_scripts_risk_off() {
    let script = generate(0x5eed_0002, 3000, false);
    let direct = ringbook(&["scenario", "--final", "--no-risk", "-"], &script);
    assert_eq!(direct.status, 0, "{}", direct.stderr);
    assert!(direct.stdout.contains(r#""event":"trade""#));
    assert_pipeline_matches(&script, &["--no-risk"]);
}

#[test]
fn pipeline_reports_parse_errors_as_the_single_threaded_run_does() {
    let mut script = generate(0x5eed_0003, 400, true);
    script.insert_str(0, "order,1,BTC-KRW,1,BUY,LIMIT,GTC,100\n");
    script.push_str("frobnicate,1\ndeposit,1,DOGE,5\n");
    let direct = ringbook(&["scenario", "--final", "-"], &script);
    assert_eq!(direct.status, 1);
    assert!(direct.stderr.contains("line 1: missing fields"));
    assert_pipeline_matches(&script, &[]);
    // Risk off: the account lines are line errors, in both modes alike.
    assert_pipeline_matches(&script, &["--no-risk"]);
}

#[test]
fn pipeline_options_need_pipeline() {
    let run = ringbook(&["scenario", "--layout", "split", "-"], "");
    assert_eq!(run.status, 2);
    let run = ringbook(&["scenario", "--pipeline", "--layout", "sideways", "-"], "");
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("unknown pipeline layout"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------- journal replay

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Runs the script through `scenario --pipeline --journal DIR --final` (plus `extra`).
fn journaled_run(script: &str, dir: &Path, extra: &[&str]) -> Run {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["scenario", "--pipeline", "--journal", dir, "--final"];
    args.extend_from_slice(extra);
    args.push("-");
    let run = ringbook(&args, script);
    assert_eq!(run.status, 0, "{}", run.stderr);
    run
}

fn replay(dir: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["journal", "replay", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    ringbook(&args, "")
}

/// Every file in `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    ringbook_journal::list(dir)
        .unwrap()
        .snapshots
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

#[test]
fn replay_prints_the_scenarios_final_state() {
    let script = generate(0x5eed_0004, 2000, true);
    let dir = tempdir();
    let run = journaled_run(&script, dir.path(), &[]);
    let expected = final_lines(&run.stdout);
    assert!(expected.contains(r#""event":"balance""#));

    let replayed = replay(dir.path(), &[]);
    assert_eq!(replayed.status, 0, "{}", replayed.stderr);
    assert_eq!(replayed.stdout, expected);
    assert!(
        replayed
            .stderr
            .contains("snapshot none, 2000 record(s) replayed, last sequence 2000"),
        "{}",
        replayed.stderr
    );

    let json = replay(dir.path(), &["--json"]);
    assert_eq!(json.status, 0, "{}", json.stderr);
    assert_eq!(
        json.stdout,
        format!(
            "{}\n{expected}",
            r#"{"event":"replay","snapshot_seq":null,"replayed":2000,"last_seq":2000,"later_snapshots":0,"damaged_snapshots":0,"end":"clean"}"#
        )
    );

    // Risk off, journaled the same way.
    let script = generate(0x5eed_0005, 1500, false);
    let dir = tempdir();
    let run = journaled_run(&script, dir.path(), &["--no-risk"]);
    let replayed = replay(dir.path(), &["--no-risk"]);
    assert_eq!(replayed.status, 0, "{}", replayed.stderr);
    assert_eq!(replayed.stdout, final_lines(&run.stdout));
}

#[test]
fn replay_to_a_sequence_is_the_state_after_that_many_commands() {
    let script = generate(0x5eed_0006, 1200, true);
    let dir = tempdir();
    journaled_run(&script, dir.path(), &[]);
    for to in [0usize, 1, 40, 41, 777, 1199, 1200] {
        let prefix = first_commands(&script, to);
        let expected = ringbook(&["scenario", "--final", "-"], &prefix);
        assert_eq!(expected.status, 0, "{}", expected.stderr);
        let replayed = replay(dir.path(), &["--to", &to.to_string()]);
        assert_eq!(replayed.status, 0, "--to {to}: {}", replayed.stderr);
        assert_eq!(replayed.stdout, final_lines(&expected.stdout), "--to {to}");
    }
}

#[test]
fn replay_with_snapshots_equals_replay_without() {
    let script = generate(0x5eed_0007, 2500, true);
    let with = tempdir();
    let run = journaled_run(&script, with.path(), &["--snapshot-every", "600"]);
    let snapshots = snapshot_files(with.path());
    // How many get written depends on fsync speed (a snapshot due while the previous one is
    // still being written is deferred), so expect at least one and read their sequences.
    assert!(!snapshots.is_empty(), "snapshots: {snapshots:?}");
    let snapshot_seqs: Vec<usize> = snapshots
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap();
            name.trim_start_matches("snapshot-").parse().unwrap()
        })
        .collect();

    // The same journal without its snapshots.
    let without = tempdir();
    for (path, bytes) in contents(with.path()) {
        if !snapshots.contains(&path) {
            std::fs::write(without.path().join(path.file_name().unwrap()), bytes).unwrap();
        }
    }
    let a = replay(with.path(), &["--json"]);
    let b = replay(without.path(), &["--json"]);
    assert_eq!(a.status, 0, "{}", a.stderr);
    assert_eq!(b.status, 0, "{}", b.stderr);
    let (a_info, a_state) = a.stdout.split_once('\n').unwrap();
    let (b_info, b_state) = b.stdout.split_once('\n').unwrap();
    assert!(!a_info.contains(r#""snapshot_seq":null"#), "{a_info}");
    assert!(
        b_info.contains(r#""snapshot_seq":null,"replayed":2500"#),
        "{b_info}"
    );
    assert_eq!(a_state, b_state);
    assert_eq!(a_state, final_lines(&run.stdout));

    // Below the newest snapshot: an older one (or none) is used, and the state is the prefix's.
    for to in [300usize, 1000, 1900] {
        let expected = ringbook(&["scenario", "--final", "-"], &first_commands(&script, to));
        let a = replay(with.path(), &["--to", &to.to_string()]);
        let b = replay(without.path(), &["--to", &to.to_string()]);
        assert_eq!(a.status, 0, "{}", a.stderr);
        assert_eq!(a.stdout, final_lines(&expected.stdout), "--to {to}");
        assert_eq!(b.stdout, a.stdout, "--to {to}");
        if snapshot_seqs.iter().any(|&seq| seq <= to) {
            assert!(a.stderr.contains("snapshot at sequence"), "{}", a.stderr);
        }
    }
}

#[test]
fn replay_does_not_modify_the_journal() {
    let script = generate(0x5eed_0008, 1000, true);
    let dir = tempdir();
    journaled_run(&script, dir.path(), &["--snapshot-every", "400"]);
    let before = contents(dir.path());
    for extra in [
        &[][..],
        &["--to", "500"],
        &["--to", "100", "--json"],
        &["--to", "5000"],
    ] {
        replay(dir.path(), extra);
        assert!(
            contents(dir.path()) == before,
            "replay {extra:?} changed the directory"
        );
    }
}

#[test]
fn replay_errors() {
    // Not a directory; a directory with no journal.
    let missing = replay(Path::new("/nonexistent/ringbook-journal"), &[]);
    assert_eq!(missing.status, 2);
    assert!(
        missing.stderr.contains("not a directory"),
        "{}",
        missing.stderr
    );
    let empty = tempdir();
    let run = replay(empty.path(), &[]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("no journal"), "{}", run.stderr);

    // Beyond the end.
    let script = generate(0x5eed_0009, 300, true);
    let dir = tempdir();
    journaled_run(&script, dir.path(), &[]);
    let run = replay(dir.path(), &["--to", "301"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("beyond the journal's end"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("300"), "{}", run.stderr);
    assert!(run.stdout.is_empty());

    // A corrupt record in the middle: what verify calls unsound, status 1 for both.
    let dump = ringbook(
        &["journal", "dump", "--json", dir.path().to_str().unwrap()],
        "",
    );
    assert_eq!(dump.status, 0, "{}", dump.stderr);
    let line = dump.stdout.lines().nth(149).unwrap();
    let offset: u64 = field(line, "offset");
    let segment = ringbook_journal::list(dir.path()).unwrap().segments[0]
        .1
        .clone();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[offset as usize + 24] ^= 0x55;
    std::fs::write(&segment, bytes).unwrap();
    assert_eq!(
        ringbook(&["journal", "verify", dir.path().to_str().unwrap()], "").status,
        1
    );
    let run = replay(dir.path(), &[]);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(run.stderr.contains("verify"), "{}", run.stderr);
    // Up to a sequence before the damage, the replay does not reach it.
    assert_eq!(replay(dir.path(), &["--to", "100"]).status, 0);

    // A record that does not decode (its checksum fine): status 2, naming the record.
    let dir = tempdir();
    {
        let mut writer =
            ringbook_journal::Writer::open(dir.path(), ringbook_journal::JournalConfig::default())
                .unwrap();
        writer.append(1, 1, 0, &[0xff, 0xee, 0xdd]).unwrap();
        writer.end_batch().unwrap();
    }
    let run = replay(dir.path(), &[]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("record 1 does not decode"),
        "{}",
        run.stderr
    );
}

/// A numeric field of a one-line JSON object.
fn field(line: &str, name: &str) -> u64 {
    let start = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
    line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------- market data

/// The generated script with its clock jumps stretched 50 000 times (500 s per command so
/// far instead of 10 ms), so candles of every interval roll and the 24h window moves.
fn stretched_clock(script: &str) -> String {
    let base = 1_700_000_000_000u64;
    script
        .lines()
        .map(|l| match l.strip_prefix("clock,") {
            Some(ms) => {
                let ms: u64 = ms.parse().unwrap();
                format!("clock,{}\n", base + (ms - base) * 50_000)
            }
            None => format!("{l}\n"),
        })
        .collect()
}

/// The market-data lines and the `--final` lines of a scenario's output.
fn md_and_final(text: &str) -> String {
    let md: String = text
        .lines()
        .filter(|l| l.starts_with(r#"{"event":"md_"#))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{md}{}", final_lines(text))
}

#[test]
fn market_data_is_the_same_through_the_pipeline_and_the_journal_replay() {
    let script = stretched_clock(&generate(0x5eed_0010, 2000, true));
    let direct = ringbook(&["scenario", "--final", "--market-data", "-"], &script);
    assert_eq!(direct.status, 0, "{}", direct.stderr);
    for what in [
        r#"{"event":"md_depth""#,
        r#"{"event":"md_trade""#,
        r#""interval":"1w""#,
        r#"{"event":"md_ticker""#,
        r#""vwap":""#,
    ] {
        assert!(direct.stdout.contains(what), "no {what}");
    }
    // Market data only adds lines.
    let plain = ringbook(&["scenario", "--final", "-"], &script);
    let without: String = direct
        .stdout
        .lines()
        .filter(|l| !l.starts_with(r#"{"event":"md_"#))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(without, plain.stdout);
    // Every layout and transport prints the same bytes.
    assert_pipeline_matches(&script, &["--market-data"]);
    assert_pipeline_matches(&script, &["--market-data", "--no-risk"]);

    // Journaled (with snapshots, which the market-data replay does not need), then replayed.
    let dir = tempdir();
    let run = journaled_run(
        &script,
        dir.path(),
        &["--market-data", "--snapshot-every", "300"],
    );
    assert_eq!(run.stdout, direct.stdout);
    let replayed = replay(dir.path(), &["--market-data"]);
    assert_eq!(replayed.status, 0, "{}", replayed.stderr);
    assert_eq!(replayed.stdout, md_and_final(&direct.stdout));
    // Up to a sequence: the market data of the first commands.
    for to in [1usize, 777] {
        let prefix = first_commands(&script, to);
        let expected = ringbook(&["scenario", "--final", "--market-data", "-"], &prefix);
        let replayed = replay(dir.path(), &["--market-data", "--to", &to.to_string()]);
        assert_eq!(replayed.status, 0, "--to {to}: {}", replayed.stderr);
        assert_eq!(replayed.stdout, md_and_final(&expected.stdout), "--to {to}");
    }
}
