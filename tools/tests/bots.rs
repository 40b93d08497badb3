//! `ringbook bots` against a live `ringbook serve` (in-process engine, a free loopback port):
//! a market maker, a noise taker and a grid trade for a bounded number of steps, and each
//! bot's own position book must reconcile with the server's balances. Proposals: a bot
//! configured with a pending proposal refuses to start until `ringbook bots approve`.
//!
//! `cargo test -p ringbook-tools --test bots`
//!
//! Every wait is bounded; nothing passes or fails on wall-clock speed.

use std::path::Path;
use std::process::Command as Proc;
use std::time::{Duration, Instant};

use ringbook_client::protocol::{ClientMsg, ServerMsg};
use ringbook_client::Client;
use ringbook_engine::SymbolId;

mod support;
use support::{Server, BIN};

/// `ringbook serve --in-process` on a free port (no web edge), with `extra` flags, listening.
fn start_with(extra: &[&str]) -> Server {
    let mut args = vec![
        "serve",
        "--no-http",
        "--in-process",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

const RISK: &str =
    "[bot.risk]\ncapital = 100000000\nmax_position = 50000000\nmax_daily_loss = 50000000\n";

fn config(extra_bot: &str) -> String {
    maker_config(
        "40ms",
        30,
        &format!(
            r#"[[bot]]
name = "taker"
strategy = "taker"
login = "bob"
password = "bob-demo"
cash = 100000000
base = 2000
reference = 50000
params = {{ seed = 7, qty = 4, max_inventory = 200 }}
{RISK}
{extra_bot}"#
        ),
    )
}

fn run_bots(addr: &str, config: &Path, steps: &str) -> std::process::Output {
    Proc::new(BIN)
        .args(["bots", "--addr", addr, "--config"])
        .arg(config)
        .args(["--json", "--steps", steps])
        .output()
        .expect("run ringbook bots")
}

#[test]
fn bots_trade_and_reconcile_with_the_server() {
    let server = start_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let grid = format!(
        "[[bot]]\nname = \"grid\"\nstrategy = \"grid\"\nlogin = \"carol\"\npassword = \"carol-demo\"\ncash = 100000000\nreference = 50000\nparams = {{ low = 49980, high = 50020, levels = 9, qty = 3 }}\n{RISK}"
    );
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, config(&grid)).unwrap();
    let out = run_bots(&server.addr.to_string(), &cfg, "30");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bots failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps = lines.iter().filter(|l| l.get("step").is_some()).count();
    assert_eq!(steps, 3 * 30, "one status per bot and step");
    let outcomes: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.get("reconciled").is_some())
        .collect();
    assert_eq!(outcomes.len(), 3);
    for o in &outcomes {
        assert_eq!(
            o["reconciled"], true,
            "server balances differ from the bot's book: {o}"
        );
        assert_eq!(o["quote"].as_i64(), o["expected_quote"].as_i64());
        assert_eq!(o["base"].as_i64(), o["expected_base"].as_i64());
    }
    let fills = |name: &str| {
        outcomes.iter().find(|o| o["bot"] == name).unwrap()["fills"]
            .as_u64()
            .unwrap()
    };
    assert!(fills("taker") > 0, "the taker traded: {outcomes:?}");
    assert!(fills("mm") > 0, "the maker's quotes were hit: {outcomes:?}");
    for o in &outcomes {
        assert_eq!(o["failed"], 0, "{o}");
    }

    // An order left working on the maker's account (alice, user 1), placed by another client
    // (a run killed with its server leaves the same): the next run cancels it before it
    // takes its starting point and says so; its fills broke reconciliation (a red-team
    // finding). Its client order id is the wall clock in ns, below the next run's.
    let mut c = Client::connect(server.addr).unwrap();
    support::login_patient(&mut c, "alice", 9);
    let coid = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    {
        use ringbook_engine::prelude::*;
        c.send(
            &Command::NewOrder(NewOrder::limit(
                UserId(1),
                SymbolId(0),
                ClientOrderId(coid),
                Side::Sell,
                Price(50_004),
                Qty(30),
            ))
            .into(),
        )
        .unwrap();
    }
    let deadline = Instant::now() + support::WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no acceptance of the stray order"
        );
        match c.recv_timeout(support::WAIT).unwrap() {
            Some(ServerMsg::Accepted {
                client_order_id, ..
            }) if client_order_id == coid => break,
            Some(ServerMsg::Rejected { code, .. }) => panic!("the stray order was refused: {code}"),
            _ => {}
        }
    }
    let _ = c.logout();

    // A second run on the same accounts and sessions: the server retransmits the first run's
    // messages to the re-used sessions (they must not reach the new books), client order ids
    // must keep increasing, and the funds already there are the starting point.
    let out = run_bots(&server.addr.to_string(), &cfg, "10");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "second run: {stderr}\n{stdout}");
    assert!(
        stderr.contains("bot mm: cancelled 1 order(s) left working"),
        "{stderr}"
    );
    let again: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l.get("reconciled").is_some())
        .collect();
    assert_eq!(again.len(), 3);
    for o in &again {
        assert_eq!(
            (&o["reconciled"], &o["failed"]),
            (&serde_json::json!(true), &serde_json::json!(0)),
            "{o}"
        );
    }
    assert!(
        again.iter().any(|o| o["fills"].as_u64().unwrap() > 0),
        "{again:?}"
    );
}

#[test]
fn an_unapproved_proposal_is_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let proposal = serde_json::json!({
        "status": "pending",
        "strategy": "maker",
        "data": "x.csv",
        "key": "half_spread",
        "metric": "pnl",
        "train_share": "0.7",
        "split_ms": 0,
        "ranking": [],
        "proposed_value": "4",
        "params": "half_spread = 4\nqty = 5\nmax_inventory = 100\n\n[risk]\ncapital = 1\n\n[backtest]\ncash = 1\n",
        "approved_digest": null
    });
    let pfile = dir.path().join("proposal.json");
    std::fs::write(&pfile, serde_json::to_string_pretty(&proposal).unwrap()).unwrap();
    let bot = format!(
        "[[bot]]\nname = \"tuned\"\nstrategy = \"maker\"\nlogin = \"carol\"\npassword = \"carol-demo\"\ncash = 1000000\nreference = 50000\nproposal = \"proposal.json\"\n{RISK}"
    );
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, config(&bot)).unwrap();
    // Refused before anything connects (port 9 is not served).
    let out = run_bots("127.0.0.1:9", &cfg, "2");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not approved"), "{err}");
    // An edited approved proposal is refused too.
    let a = Proc::new(BIN)
        .args(["bots", "approve"])
        .arg(&pfile)
        .output()
        .unwrap();
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let text = std::fs::read_to_string(&pfile).unwrap();
    std::fs::write(&pfile, text.replace("qty = 5", "qty = 6")).unwrap();
    let out = run_bots("127.0.0.1:9", &cfg, "2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed after it was approved"));
    // Approved as it stands (the approval says the params changed): the bots run with it.
    let a = Proc::new(BIN)
        .args(["bots", "approve"])
        .arg(&pfile)
        .output()
        .unwrap();
    assert!(a.status.success());
    assert!(String::from_utf8_lossy(&a.stdout).contains("re-approved"));
    let server = start_with(&[]);
    let out = run_bots(&server.addr.to_string(), &cfg, "3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"bot\":\"tuned\""));
}

#[test]
fn serve_demo_runs_a_maker_and_takers() {
    let server = start_with(&["--demo"]);
    let mut c = Client::connect(server.addr).unwrap();
    c.login("dave", "dave-demo", 1, false).unwrap();
    // The maker's two-sided quote appears on BTC-KRW, and moves as the takers trade with it
    // (its inventory skew shifts the quotes): wait for two different quotes, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quotes = Vec::new();
    let mut request = 0;
    while Instant::now() < deadline {
        request += 1;
        c.send(&ClientMsg::BookSnapshot {
            request_id: request,
            symbol: SymbolId(0),
            depth: 1,
        })
        .unwrap();
        let (mut bid, mut ask) = (None, None);
        loop {
            match c
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("a book reply")
            {
                ServerMsg::BookLevels {
                    request_id,
                    side,
                    count,
                    levels,
                    ..
                } if request_id == request && count > 0 => {
                    if side == ringbook_engine::Side::Buy {
                        bid = Some(levels[0].0);
                    } else {
                        ask = Some(levels[0].0);
                    }
                }
                ServerMsg::BookEnd { request_id, .. } if request_id == request => break,
                _ => {}
            }
        }
        if let (Some(b), Some(a)) = (bid, ask) {
            assert!(b < a);
            if quotes.last() != Some(&(b, a)) {
                quotes.push((b, a));
            }
            if quotes.len() >= 2 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the demo bots did not quote and trade within 30 s: quotes seen {quotes:?}");
}

#[test]
fn backtest_bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/lobster/AAPL_2012-06-21_34200000_57600000_message_10.csv");
    let run = |strategy: &str, params: &str| {
        let p = dir.path().join("p.toml");
        std::fs::write(&p, params).unwrap();
        let out = Proc::new(BIN)
            .args(["backtest", "--strategy", strategy, "--params"])
            .arg(&p)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join("r.json"))
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let ok = "low = 58530\nhigh = 58590\nlevels = 5\nqty = 10\n[risk]\ncapital = 1\n[backtest]\ncash = 1000\n";
    for (strategy, params, want) in [
        ("nope", ok, "unknown strategy"),
        ("grid", "low = 1\n[backtest]\ncash = 1\n", "no [risk] table"),
        (
            "grid",
            &ok.replace("levels = 5", "levels = 1"),
            "levels must be at least 2",
        ),
        (
            "grid",
            &ok.replace("qty = 10", "qty = 10\nspeed = 3"),
            "unknown field `speed`",
        ),
        (
            "grid",
            &ok.replace("cash = 1000", "cash = 1000\ninterval = \"1y\""),
            "unknown unit",
        ),
    ] {
        let (code, err) = run(strategy, params);
        assert_eq!(code, Some(2), "{strategy}: {err}");
        assert!(
            err.contains(want),
            "{strategy}: expected {want:?} in {err:?}"
        );
    }
    assert!(
        !dir.path().join("r.json").exists(),
        "no report from a refused run"
    );
}

/// One funded maker on alice, `interval` and `steps` as given, and `extra` after it.
fn maker_config(interval: &str, steps: u64, extra: &str) -> String {
    format!(
        r#"symbol = "BTC-KRW"
interval = "{interval}"
steps = {steps}

[funding]
login = "ops1"
password = "ops1-demo"

[[bot]]
name = "mm"
strategy = "maker"
login = "alice"
password = "alice-demo"
cash = 100000000
base = 2000
reference = 50000
params = {{ half_spread = 3, qty = 10, skew = 0.05, max_inventory = 400 }}
{RISK}
{extra}"#
    )
}

fn outcomes(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l.get("reconciled").is_some())
        .collect()
}

/// An interval longer than the server's heartbeat timeout (3 × 1 s): the bots heartbeat while
/// they wait between steps. A red-team pass saw every such run cut off with
/// HEARTBEAT_TIMEOUT. Two steps of 3 s must complete and reconcile.
#[test]
fn a_long_interval_keeps_the_session_alive() {
    let server = start_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, maker_config("3s", 2, "")).unwrap();
    let out = run_bots(&server.addr.to_string(), &cfg, "2");
    assert!(
        out.status.success(),
        "bots failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let o = outcomes(&out.stdout);
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0]["reconciled"], true, "{o:?}");
}

/// A bot on an account that never had a deposit: the engine refuses its balances query with
/// UNKNOWN_USER, which the bot reports as such, naming the bot and the account (it waited and
/// died of HEARTBEAT_TIMEOUT). The other bot still runs to its outcome, which is printed
/// before the run exits non-zero.
#[test]
fn an_unopened_account_is_a_clear_error_and_the_others_finish() {
    let server = start_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dave = format!(
        "[[bot]]\nname = \"idle\"\nstrategy = \"taker\"\nlogin = \"dave\"\npassword = \"dave-demo\"\nreference = 50000\nparams = {{ seed = 7, qty = 2, max_inventory = 200 }}\n{RISK}"
    );
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, maker_config("40ms", 5, &dave)).unwrap();
    let out = run_bots(&server.addr.to_string(), &cfg, "5");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bot idle: account dave is not open (no deposits)"),
        "{err}"
    );
    assert!(!err.contains("HEARTBEAT_TIMEOUT"), "{err}");
    let o = outcomes(&out.stdout);
    assert_eq!(o.len(), 1, "the maker's outcome is printed: {o:?}");
    assert_eq!(
        (&o[0]["bot"], &o[0]["reconciled"]),
        (&"mm".into(), &true.into())
    );
}

/// The bots send the symbol's id from their own engine config; against a server whose
/// symbol under that id has another price band, the first refusal that only a different
/// symbol explains (PRICE_OUT_OF_BAND for a price inside our band) stops the bot with a
/// message that says so and points at `engine_config` (it traded on silently).
#[test]
fn a_server_with_other_reference_data_is_detected() {
    // The bots compare their symbol with the server's reference data after logging in, before
    // anything is deposited or placed. A wider band was noticed only when an order was refused
    // as PRICE_OUT_OF_BAND; another lot size (the same band) went unnoticed, and the bots
    // traded lots ten times the size they were configured with.
    let dir = tempfile::tempdir().unwrap();
    let default = ringbook_engine::config::DEFAULT_CONFIG_TOML;
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, maker_config("40ms", 5, "")).unwrap();
    for (line, instead, want) in [
        (
            "price_max = 100000      # up to 1,000,000,000 KRW per BTC",
            "price_max = 50000",
            "differs from the embedded default config (engine_config unset): price_max 100000 here, 50000 on the server",
        ),
        (
            "lot_size = 10000        # 0.0001 BTC per lot",
            "lot_size = 100000",
            "lot_size 10000 here, 100000 on the server",
        ),
        (
            "name = \"BTC-KRW\"",
            "name = \"XBT-KRW\"",
            "the server has no symbol BTC-KRW (it has XBT-KRW, ETH-KRW, AAPL-USD)",
        ),
    ] {
        assert!(
            default.contains(line),
            "the default config changed: update this test ({line})"
        );
        let server_cfg = dir.path().join("server.toml");
        std::fs::write(&server_cfg, default.replacen(line, instead, 1)).unwrap();
        let server = start_with(&["--config", server_cfg.to_str().unwrap()]);
        let out = run_bots(&server.addr.to_string(), &cfg, "5");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(want) && err.contains("set engine_config to the server's configuration"),
            "{want:?} in {err}"
        );
        // Stopped before the funding: the server took no deposit.
        let mut ops = Client::connect(server.addr).unwrap();
        ops.login("ops1", "ops1-demo", 1, false).unwrap();
        assert_eq!(ops.stats(1).unwrap().commands, 0, "{instead}");
    }
}

fn approve(file: &Path) -> std::process::Output {
    Proc::new(BIN)
        .args(["bots", "approve"])
        .arg(file)
        .output()
        .unwrap()
}

fn grid_proposal() -> serde_json::Value {
    serde_json::json!({
        "status": "pending",
        "strategy": "grid",
        "data": "candles.csv",
        "key": "qty",
        "metric": "pnl",
        "train_share": "0.7",
        "split_ms": 0,
        "ranking": [],
        "proposed_value": "3",
        "params": "low = 49950\nhigh = 50050\nlevels = 3\nqty = 3\n\n[risk]\ncapital = 1\n\n[backtest]\ncash = 1\nsymbol = \"BTC-KRW\"\n",
        "approved_digest": null
    })
}

/// `bots approve` checks what it approves (a red-team pass approved a rejected proposal, one
/// edited so that its params no longer say its proposed value, and params that do not build
/// the strategy), shows the parameters, and says when a re-approval changes them. A refused
/// approval leaves the file as it was.
#[test]
fn approve_checks_the_proposal_and_shows_the_params() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.json");
    for (edit, want) in [
        (("status", "\"rejected\""), "status is \"rejected\""),
        (
            (
                "params",
                "\"low = 49950\\nhigh = 50050\\nlevels = 9\\nqty = 300\\n\"",
            ),
            "qty = 300, but its proposed_value is 3",
        ),
        (("strategy", "\"nosuch\""), "unknown strategy"),
        (("comment", "\"reviewed\""), "unknown field `comment`"),
    ] {
        let mut p = grid_proposal();
        p[edit.0] = serde_json::from_str(edit.1).unwrap();
        let text = serde_json::to_string_pretty(&p).unwrap();
        std::fs::write(&f, &text).unwrap();
        let out = approve(&f);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{edit:?}: {err}");
        assert!(
            err.contains(want) && err.contains("p.json"),
            "{want:?} in {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            text,
            "the file changed"
        );
    }
    std::fs::write(&f, grid_proposal().to_string()).unwrap();
    let out = approve(&f);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("parameters approved:\n  low = 49950\n"),
        "{said}"
    );
    assert!(!said.contains("re-approved"), "{said}");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replace("high = 50050", "high = 50060")).unwrap();
    let out = approve(&f);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        said.contains("re-approved: the proposal changed since the earlier approval"),
        "{said}"
    );
    assert!(said.contains("high = 50060"), "{said}");
}

/// A write that fails (here: the file-size limit, as a full disk would) leaves the proposal
/// as it was: `bots approve` writes a temporary file and renames it over (it truncated the
/// proposal in place, and a red-team pass lost one on a full disk).
#[test]
fn a_failed_approval_write_keeps_the_proposal() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.json");
    let mut p = grid_proposal();
    p["data"] = "x".repeat(4000).into();
    let text = serde_json::to_string_pretty(&p).unwrap();
    std::fs::write(&f, &text).unwrap();
    // 512-byte blocks in dash, 1024 in bash: either way far below the file.
    let out = Proc::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 1 || exit 99; exec \"$0\" bots approve \"$1\"",
        ])
        .arg(BIN)
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("p.json"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        text,
        "the proposal was damaged"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "a temporary file was left"
    );
}

/// Stdout's reader goes away (`ringbook bots --json --steps 0 | head -1`): the process says so
/// on stderr and exits with status 2 at once (it panicked in `println!` while the bot threads
/// traded on unreported; the server cancels their orders on disconnect).
#[test]
fn a_closed_stdout_stops_the_bots() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let server = start_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, maker_config("40ms", 0, "")).unwrap();
    let mut child = Proc::new(BIN)
        .args(["bots", "--addr", &server.addr.to_string(), "--config"])
        .arg(&cfg)
        .args(["--json", "--steps", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringbook bots");
    let mut first = String::new();
    {
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut first).unwrap();
    } // the read end is dropped here
    assert!(first.contains("\"step\":1"), "{first}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringbook bots still runs 20 s after its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("ringbook bots: stdout closed") && !err.contains("panicked"),
        "{err}"
    );
}

/// Two logins the server maps to one user id: the bots refuse to run, naming both bots (the
/// check on the config compares logins only as written).
#[test]
fn two_logins_of_one_user_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let default = ringbook_engine::config::DEFAULT_CONFIG_TOML;
    let alice = "login = \"alice\"\npassword = \"alice-demo\"\nuser = 1\n";
    assert!(
        default.contains(alice),
        "the default config changed: update this test"
    );
    let server_cfg = dir.path().join("server.toml");
    let twice = format!(
        "{alice}\n[[gateway.accounts]]\nlogin = \"alice2\"\npassword = \"alice-demo\"\nuser = 1\n"
    );
    std::fs::write(&server_cfg, default.replacen(alice, &twice, 1)).unwrap();
    let server = start_with(&["--config", server_cfg.to_str().unwrap()]);
    let second = format!(
        "[[bot]]\nname = \"mm2\"\nstrategy = \"maker\"\nlogin = \"alice2\"\npassword = \"alice-demo\"\nreference = 50000\nparams = {{ half_spread = 3, qty = 10, skew = 0.05, max_inventory = 400 }}\n{RISK}"
    );
    let cfg = dir.path().join("bots.toml");
    std::fs::write(&cfg, maker_config("40ms", 3, &second)).unwrap();
    let out = run_bots(&server.addr.to_string(), &cfg, "3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bots mm and mm2 both log in to user 1 (alice and alice2)"),
        "{err}"
    );
    assert!(outcomes(&out.stdout).is_empty(), "nothing ran");
}
