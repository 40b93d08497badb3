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
    format!(
        r#"symbol = "BTC-KRW"
interval = "40ms"
steps = 30

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
[[bot]]
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

    // A second run on the same accounts and sessions: the server retransmits the first run's
    // messages to the re-used sessions (they must not reach the new books), client order ids
    // must keep increasing, and the funds already there are the starting point.
    let out = run_bots(&server.addr.to_string(), &cfg, "10");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "second run: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
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
    std::fs::write(&pfile, text.replace("half_spread = 4", "half_spread = 1")).unwrap();
    let out = run_bots("127.0.0.1:9", &cfg, "2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed after it was approved"));
    // Approved as it stands: the bots run with it.
    let a = Proc::new(BIN)
        .args(["bots", "approve"])
        .arg(&pfile)
        .output()
        .unwrap();
    assert!(a.status.success());
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
