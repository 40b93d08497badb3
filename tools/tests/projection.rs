//! `ringbook project` against a real PostgreSQL (docs/persistence.md): generated scripts are
//! journaled by the real pipeline (`ringbook scenario --pipeline --journal`), projected by the
//! real binary, and reconciled with the engine (`--verify`); the projector is SIGKILLed inside a
//! batch's transaction and resumes exactly once; a private PostgreSQL cluster is stopped and
//! started under a following projector; `--rebuild` yields identical tables (a hash per table).
//!
//! Needs RINGBOOK_TEST_POSTGRES (a superuser URL; `tools/ci/test.sh` starts a private server and
//! sets it). Each test creates its own uniquely named database and drops it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};
use support::{Server, BIN};

/// Tables compared by hash (projection_state by its sequence columns).
const TABLES: &[&str] = &[
    "currencies",
    "symbols",
    "accounts",
    "orders",
    "trades",
    "ledger",
    "balances",
    "withdrawals",
    "withdrawal_approvals",
    "candles",
];

fn admin_url() -> String {
    std::env::var("RINGBOOK_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "RINGBOOK_TEST_POSTGRES is not set: these tests need a real PostgreSQL server. Run \
             them through tools/ci/test.sh (it starts a private one and sets the variable), or \
             set it to a superuser URL such as postgres://ringbook@127.0.0.1:5432/postgres"
        )
    })
}

/// A database of the test's own (named after `tag`), a temporary directory, and the journal
/// directory in it (not created yet).
fn fresh(tag: &str) -> (TestDb, tempfile::TempDir, PathBuf) {
    let db = TestDb::new(&admin_url(), tag);
    let tmp = tempdir();
    let dir = tmp.path().join("journal");
    (db, tmp, dir)
}

/// The projected sequence, 0 until the projector has migrated (no table yet).
fn committed(c: &mut Client) -> i64 {
    c.query_one("SELECT last_seq FROM projection_state", &[])
        .map_or(0, |r| r.get::<_, i64>(0))
}

/// A database of its own for one test, dropped at the end.
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    fn new(admin: &str, tag: &str) -> TestDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let name = format!(
            "rb_proj_{tag}_{}_{}",
            std::process::id(),
            nanos % 1_000_000_000
        );
        let mut c = Client::connect(admin, NoTls).expect("connect to RINGBOOK_TEST_POSTGRES");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the test database");
        let base = admin.rsplit_once('/').expect("a URL with a database").0;
        TestDb {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.admin, NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A small deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// A script of `commands` commands exercising every command and order kind of the default
/// config: deposits, withdrawals (approved, rejected), limit/market/stop orders with every TIF,
/// post-only, icebergs, self-trade prevention, budget market buys, GTD orders that expire and DAY
/// orders (refused: no session end here), cancels, amends, mass cancels, queries, and clock
/// ticks across candle boundaries. `coid_base` keeps client order ids increasing across scripts
/// journaled one after the other.
fn script(seed: u64, commands: usize, coid_base: u64) -> String {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let users = 8u64;
    let mut coid = vec![coid_base; users as usize + 1];
    let mut s = String::from("clock,1733400000000\n");
    let symbols = [
        ("BTC-KRW", 15_000i64),
        ("ETH-KRW", 2_000),
        ("AAPL-USD", 19_000),
    ];
    let mut withdrawals = 0u64;
    for u in 1..=users {
        s += &format!("deposit,{u},KRW,2000000000\ndeposit,{u},BTC,50000000\n");
        s += &format!("deposit,{u},ETH,500000000\ndeposit,{u},USD,500000000\n");
        s += &format!("deposit,{u},AAPL,5000\n");
    }
    let mut ms = 1_733_400_000_000u64;
    for _ in 0..commands {
        let u = 1 + r.below(users);
        let (sym, mid) = symbols[r.below(3) as usize];
        let roll = r.below(100);
        if roll < 55 {
            coid[u as usize] += 1;
            let c = coid[u as usize];
            let side = r.pick(&["BUY", "SELL"]);
            let price = mid - 30 + r.below(61) as i64;
            let qty = 1 + r.below(20);
            let kind = r.below(20);
            let line = match kind {
                0 => format!(
                    "order,{u},{sym},{c},{side},MARKET,IOC,{},{qty}",
                    if side == "BUY" { mid + 60 } else { mid - 60 }
                ),
                1 => format!("order,{u},{sym},{c},{side},LIMIT,IOC,{price},{qty}"),
                2 => format!("order,{u},{sym},{c},{side},LIMIT,FOK,{price},{qty}"),
                3 => format!("order,{u},{sym},{c},{side},LIMIT,GTC,{price},{qty},post_only=1"),
                4 => format!(
                    "order,{u},{sym},{c},{side},LIMIT,GTC,{price},{},display=3",
                    qty + 10
                ),
                5 => {
                    let stp =
                        r.pick(&["CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH", "DECREMENT"]);
                    format!("order,{u},{sym},{c},{side},LIMIT,GTC,{price},{qty},stp={stp}")
                }
                6 => {
                    let stop = if side == "BUY" { mid + 5 } else { mid - 5 };
                    format!("order,{u},{sym},{c},{side},STOP_LIMIT,GTC,{price},{qty},stop={stop}")
                }
                7 => {
                    let (stop, prot) = if side == "BUY" {
                        (mid + 3, mid + 80)
                    } else {
                        (mid - 3, mid - 80)
                    };
                    format!("order,{u},{sym},{c},{side},STOP_MARKET,IOC,{prot},{qty},stop={stop}")
                }
                8 => format!(
                    "order,{u},{sym},{c},{side},LIMIT,GTC,{price},{}",
                    qty * 1_000_000
                ), // too big: rejected
                9 => format!(
                    "order,{u},{sym},{c},BUY,MARKET,IOC,{},0,budget={}",
                    mid + 60,
                    1 + r.below(mid as u64 * 30)
                ),
                10 => format!(
                    "order,{u},{sym},{c},{side},LIMIT,GTD,{price},{qty},expire={}",
                    ms + 1 + r.below(120_000)
                ),
                // No session end in this config: NO_SESSION_END.
                11 => format!("order,{u},{sym},{c},{side},LIMIT,DAY,{price},{qty}"),
                _ => format!("order,{u},{sym},{c},{side},LIMIT,GTC,{price},{qty}"),
            };
            s += &line;
        } else if roll < 70 {
            let back = coid[u as usize].saturating_sub(r.below(10)).max(1);
            s += &format!("cancel,{u},{sym},{back}");
        } else if roll < 80 {
            let back = coid[u as usize].saturating_sub(r.below(10)).max(1);
            let price = mid - 30 + r.below(61) as i64;
            s += &format!("amend,{u},{sym},{back},{price},{}", r.below(25));
        } else if roll < 82 {
            s += &format!("cancel_order,{u},{sym},{}", 1 + r.below(2000));
        } else if roll < 83 {
            s += &format!(
                "amend_order,{u},{sym},{},{},{}",
                1 + r.below(2000),
                mid,
                1 + r.below(9)
            );
        } else if roll < 85 {
            if r.below(2) == 0 {
                s += &format!("mass_cancel,{u},{sym}");
            } else {
                s += &format!("mass_cancel,{u}");
            }
        } else if roll < 88 {
            withdrawals += 1;
            let cur = r.pick(&["KRW", "BTC", "USD"]);
            s += &format!("withdraw,{u},{cur},{}", 1 + r.below(100_000));
        } else if roll < 93 && withdrawals > 0 {
            let w = 1 + r.below(withdrawals);
            let op = r.pick(&["900", "901", "902"]);
            if r.below(5) == 0 {
                s += &format!("reject_withdrawal,{op},{w}");
            } else {
                s += &format!("approve,{op},{w}");
            }
        } else if roll < 95 {
            s += &format!("query_balances,{u}");
        } else if roll < 96 {
            s += &format!("deposit,{u},KRW,{}", 1 + r.below(1_000_000));
        } else {
            ms += 1 + r.below(90_000);
            s += &format!("clock,{ms}");
        }
        s.push('\n');
    }
    s
}

/// The commands a script journals: every line (a `clock` line is a tick).
fn commands_in(script: &str) -> u64 {
    script.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

/// Journals `script` with the real pipeline into `dir` (appending to what it holds); returns the
/// scenario's stdout.
fn journal(dir: &Path, script: &str) -> String {
    journal_with(BIN, dir, script)
}

/// [`journal`] with the `ringbook` binary `bin`.
fn journal_with(bin: &str, dir: &Path, script: &str) -> String {
    journal_args(bin, dir, script, &[])
}

/// [`journal_with`] with more `scenario` arguments (`--snapshot-every N`).
fn journal_args(bin: &str, dir: &Path, script: &str, extra: &[&str]) -> String {
    let file = dir.with_extension("script");
    std::fs::write(&file, script).expect("write the script");
    let out = Command::new(bin)
        .args(["scenario", "--pipeline", "--journal"])
        .arg(dir)
        .args(extra)
        .arg(&file)
        .output()
        .expect("run ringbook scenario");
    // Status 1: some lines were refused by the parser (none are expected) — show them.
    assert!(
        out.status.success(),
        "scenario failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn project(dir: &Path, url: &str, extra: &[&str]) -> Output {
    project_with(BIN, dir, url, extra)
}

/// [`project`] with the `ringbook` binary `bin`.
fn project_with(bin: &str, dir: &Path, url: &str, extra: &[&str]) -> Output {
    Command::new(bin)
        .args(["project", "--journal"])
        .arg(dir)
        .args(["--postgres", url])
        .args(extra)
        .output()
        .expect("run ringbook project")
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ringbook project failed: {text}");
    text
}

/// `--verify` must pass with 0 differences.
fn verify_clean(dir: &Path, url: &str) -> String {
    let out = project(dir, url, &["--verify"]);
    let text = ok(&out);
    assert!(text.contains(" 0 difference(s)"), "{text}");
    text
}

/// md5 of each table's rows (sorted), and of the projection state's sequence columns.
fn table_hashes(c: &mut Client) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = TABLES
        .iter()
        .map(|t| {
            let h: String = c
                .query_one(
                    &format!(
                        "SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) \
                         FROM {t} t"
                    ),
                    &[],
                )
                .expect("hash a table")
                .get(0);
            (t.to_string(), h)
        })
        .collect();
    let s: String = c
        .query_one(
            "SELECT (last_seq, last_ts, commands)::text FROM projection_state",
            &[],
        )
        .expect("projection state")
        .get(0);
    v.push(("projection_state".into(), s));
    v
}

/// Every index of the public schema: (table, name, definition).
fn index_defs(c: &mut Client) -> Vec<(String, String, String)> {
    c.query(
        "SELECT tablename::text, indexname::text, indexdef FROM pg_indexes
          WHERE schemaname = 'public' ORDER BY 1, 2",
        &[],
    )
    .expect("list the indexes")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

/// The indexes of a database migrated by the migrations' own SQL, run by hand: what every
/// projection must end with, however it was loaded (a bulk load drops and rebuilds some).
fn migrated_index_defs(admin: &str) -> Vec<(String, String, String)> {
    let db = TestDb::new(admin, "idx");
    let mut c = db.client();
    c.batch_execute(include_str!("../projection/migrations/0001_initial.sql"))
        .expect("migration 1");
    c.batch_execute(include_str!(
        "../projection/migrations/0002_budget_expiry.sql"
    ))
    .expect("migration 2");
    c.batch_execute(
        "CREATE TABLE ringbook_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT \
         NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .expect("the migrations table");
    index_defs(&mut c)
}

fn last_seq(c: &mut Client) -> i64 {
    c.query_one("SELECT last_seq FROM projection_state", &[])
        .expect("projection state")
        .get(0)
}

/// Ledger checks straight in SQL: per currency the user and fee accounts hold deposits minus
/// withdrawals, and all accounts together nothing.
fn ledger_balances(c: &mut Client) {
    for r in c
        .query(
            "SELECT currency_id,
                    sum(amount) FILTER (WHERE account <> 'external')::text,
                    (sum(amount) FILTER (WHERE kind = 'deposit' AND account = 'available')
                     - coalesce(sum(amount) FILTER (WHERE kind = 'withdrawal' AND account = 'external'), 0))::text,
                    sum(amount)::text
               FROM ledger_legs GROUP BY currency_id",
            &[],
        )
        .unwrap()
    {
        let (cur, held, net, total): (i16, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!(held, net, "currency {cur}: held vs deposits - withdrawals");
        assert_eq!(total, "0", "currency {cur}: the whole ledger sums to zero");
    }
    // A user's leg names one of that user's own orders, never the counterparty's (a trade's
    // credit showed the other side's order id: a review finding); every trade leg names one.
    let foreign: i64 = c
        .query_one(
            "SELECT count(*) FROM ledger_legs l JOIN orders o ON o.order_id = l.order_id
              WHERE l.user_id IS NOT NULL AND l.user_id <> o.user_id",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0, "legs naming another user's order");
    let unnamed: i64 = c
        .query_one(
            "SELECT count(*) FROM ledger_legs
              WHERE kind = 'trade' AND user_id IS NOT NULL AND order_id IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(unnamed, 0, "trade legs without an order");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// A database projected before migration 4 (no `to_order_id`: a trade's credit named the
/// counterparty's order) is upgraded in place: the column comes NULL, the view finds each
/// trade's other order in `trades`, and the legs equal a fresh projection's.
#[test]
fn migration_4_names_each_trade_legs_own_order_in_a_database_projected_before_it() {
    let admin = admin_url();
    let db = TestDb::new(&admin, "mig4");
    let tmp = tempdir();
    let dir = tmp.path().join("journal");
    journal(&dir, &script(7, 2_000, 0));
    ok(&project(&dir, &db.url, &["--once"]));
    let mut c = db.client();
    let legs = |c: &mut Client| -> Vec<(i64, i32, i16, Option<i64>)> {
        c.query(
            "SELECT seq, entry, leg, order_id FROM ledger_legs ORDER BY seq, entry, leg",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    };
    let fresh = legs(&mut c);
    // Back to the schema before migration 4, with what the old projector wrote.
    c.batch_execute(
        "DROP VIEW ledger_legs;
         ALTER TABLE ledger DROP COLUMN to_order_id;
         CREATE VIEW ledger_legs AS
             SELECT seq, entry, 1::smallint AS leg, ts, kind, currency_id, from_account AS account,
                    from_user_id AS user_id, -amount AS amount, symbol_id, order_id, trade_id,
                    withdrawal_id
               FROM ledger WHERE seq <= (SELECT last_seq FROM projection_state WHERE id = 1)
             UNION ALL
             SELECT seq, entry, 2::smallint AS leg, ts, kind, currency_id, to_account AS account,
                    to_user_id AS user_id, amount, symbol_id, order_id, trade_id, withdrawal_id
               FROM ledger WHERE seq <= (SELECT last_seq FROM projection_state WHERE id = 1);
         DELETE FROM ringbook_schema_migrations WHERE version = 4;",
    )
    .unwrap();
    let old = legs(&mut c);
    let named_other = old.iter().zip(&fresh).filter(|(o, f)| o != f).count();
    assert!(
        named_other > 100,
        "the old view names the counterparty's order ({named_other})"
    );
    let text = ok(&project(&dir, &db.url, &["--once"]));
    assert!(text.contains("caught up at sequence"), "{text}");
    assert_eq!(legs(&mut c), fresh);
    ledger_balances(&mut c);
    verify_clean(&dir, &db.url);
}

#[test]
fn generated_scripts_project_equal_to_the_engine_and_tampering_is_found() {
    let admin = admin_url();
    for seed in 1..=3u64 {
        let db = TestDb::new(&admin, "gen");
        let tmp = tempdir();
        let dir = tmp.path().join("journal");
        let events = journal(&dir, &script(seed, 3_000, 0));
        let text = ok(&project(&dir, &db.url, &["--once", "--batch", "700"]));
        assert!(text.contains("caught up at sequence"), "{text}");
        verify_clean(&dir, &db.url);
        let mut c = db.client();
        ledger_balances(&mut c);
        // Every trade the engine printed is a row, once.
        let printed = events
            .lines()
            .filter(|l| l.contains(r#""event":"trade""#))
            .count();
        let rows: i64 = c
            .query_one("SELECT count(*) FROM trades", &[])
            .unwrap()
            .get(0);
        assert_eq!(rows as usize, printed, "seed {seed}");
        assert!(printed > 100, "the script trades (seed {seed}: {printed})");
        // Every accepted or rejected new order is a row.
        let orders: i64 = c
            .query_one("SELECT count(*) FROM orders", &[])
            .unwrap()
            .get(0);
        let accepted = events
            .lines()
            .filter(|l| l.contains(r#""event":"accepted""#))
            .count();
        let rejected: i64 = c
            .query_one("SELECT count(*) FROM orders WHERE status = 'REJECTED'", &[])
            .unwrap()
            .get(0);
        assert!(rejected > 0, "seed {seed}: some orders are rejected");
        assert_eq!(orders - rejected, accepted as i64, "seed {seed}");
        // Budget buys that traded, GTD orders that expired, DAY orders refused (no session end).
        for (what, sql) in [
            (
                "a budget buy that traded",
                "SELECT count(*) FROM orders WHERE budget IS NOT NULL AND filled_qty > 0",
            ),
            (
                "an expired GTD order",
                "SELECT count(*) FROM orders WHERE status = 'EXPIRED' AND tif = 'GTD' \
                 AND cancel_reason = 'EXPIRED' AND expire_at IS NOT NULL",
            ),
            (
                "a refused DAY order",
                "SELECT count(*) FROM orders WHERE tif = 'DAY' AND reject_name = 'NO_SESSION_END'",
            ),
        ] {
            let n: i64 = c.query_one(sql, &[]).unwrap().get(0);
            assert!(n > 0, "seed {seed}: no {what}");
        }
        for status in ["FILLED", "CANCELLED", "NEW", "PARTIALLY_FILLED"] {
            let n: i64 = c
                .query_one("SELECT count(*) FROM orders WHERE status = $1", &[&status])
                .unwrap()
                .get(0);
            assert!(n > 0, "seed {seed}: no {status} order");
        }
        let done: i64 = c
            .query_one(
                "SELECT count(*) FROM withdrawals WHERE status IN ('COMPLETED', 'REJECTED')",
                &[],
            )
            .unwrap()
            .get(0);
        assert!(done > 0, "seed {seed}: withdrawals finish");
        // A projection that disagrees with the engine is reported, difference by difference.
        if seed == 1 {
            c.batch_execute(
                "UPDATE balances SET available = available + 1
                  WHERE (user_id, currency_id) = (SELECT user_id, currency_id FROM balances
                                                   ORDER BY 1, 2 LIMIT 1);
                 UPDATE orders SET leaves_qty = leaves_qty + 1
                  WHERE seq = (SELECT min(seq) FROM orders WHERE status = 'NEW')",
            )
            .unwrap();
            let out = project(&dir, &db.url, &["--verify"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            assert_eq!(out.status.code(), Some(1), "{text}");
            assert!(text.contains("DIFFERENCE: balance user"), "{text}");
            assert!(text.contains("DIFFERENCE: open order"), "{text}");
            assert!(text.contains("its ledger legs sum to"), "{text}");
        }
    }
}

#[test]
fn a_projector_killed_mid_batch_resumes_exactly_once_and_rebuild_is_identical() {
    let admin = admin_url();
    let (db, _tmp, dir) = fresh("kill");
    // With snapshots: the resumed projector rebuilds its engine from one plus the tail.
    journal_args(
        BIN,
        &dir,
        &script(7, 6_000, 0),
        &["--snapshot-every", "1500"],
    );
    // Hold every transaction open for a while after its rows are written; SIGKILL the process
    // inside the third one.
    let mut p = Server::spawn(&[
        "project",
        "--journal",
        dir.to_str().unwrap(),
        "--postgres",
        &db.url,
        "--once",
        "--batch",
        "1000",
        "--hold-batch-ms",
        "400",
    ]);
    p.wait_line("holding batch 1..=");
    p.wait_line("holding batch 1001..=");
    let third = p.wait_line("holding batch 2001..=");
    p.kill();
    assert!(third.contains("2001..=3000"), "{third}");
    let mut c = db.client();
    // The third batch's rows were written but never committed: the tables stand at 2000.
    assert_eq!(last_seq(&mut c), 2000);
    // A bulk load (--once into an empty projection) builds its history indexes at the end:
    // killed before it, they are missing now, and the next run builds them.
    let want = migrated_index_defs(&admin);
    let have = index_defs(&mut c);
    assert!(have.len() < want.len(), "{have:?}");
    assert!(have.iter().all(|i| want.contains(i)), "{have:?}");
    for table in ["trades", "orders", "ledger_legs"] {
        let max: Option<i64> = c
            .query_one(&format!("SELECT max(seq) FROM {table}"), &[])
            .unwrap()
            .get(0);
        assert!(max.unwrap() <= 2000, "{table}: {max:?}");
    }
    // The ledger's own transaction of the third batch committed (it commits just before the
    // main one, which was held open): those entries lie beyond last_seq, hidden by
    // ledger_legs, and the restart removes them.
    let raw: Option<i64> = c
        .query_one("SELECT max(seq) FROM ledger", &[])
        .unwrap()
        .get(0);
    let raw = raw.unwrap();
    assert!((2001..=3000).contains(&raw), "{raw}");
    // Resume: exactly the rest, once.
    let text = ok(&project(&dir, &db.url, &["--once", "--batch", "1000"]));
    assert!(text.contains("resuming after sequence 2000"), "{text}");
    assert!(
        text.contains("engine rebuilt from the snapshot at "),
        "{text}"
    );
    assert!(text.contains("built 6 missing history index(es)"), "{text}");
    assert_eq!(index_defs(&mut c), want);
    verify_clean(&dir, &db.url);
    ledger_balances(&mut c);
    let resumed = table_hashes(&mut c);
    // A projection in one go (a rebuild) gives the same tables, row for row.
    let text = ok(&project(&dir, &db.url, &["--once", "--rebuild"]));
    assert!(text.contains("dropped every projection table"), "{text}");
    assert!(text.contains("built the 6 history index(es)"), "{text}");
    let rebuilt = table_hashes(&mut c);
    assert_eq!(resumed, rebuilt);
    assert_eq!(index_defs(&mut c), want);
    // And so does a fresh database projected in different batch sizes (many batches: the
    // mapper builds the next one while the writer writes this one).
    let other = TestDb::new(&admin, "kill2");
    ok(&project(&dir, &other.url, &["--once", "--batch", "37"]));
    let mut oc = other.client();
    assert_eq!(table_hashes(&mut oc), rebuilt);
    assert_eq!(index_defs(&mut oc), want);
    // And a following projector (no bulk load: the indexes stay), stopped once caught up.
    let third = TestDb::new(&admin, "kill3");
    let mut p = Server::spawn(&[
        "project",
        "--journal",
        dir.to_str().unwrap(),
        "--postgres",
        &third.url,
        "--batch",
        "500",
    ]);
    let end = last_seq(&mut c);
    p.wait_line(&format!("caught up at sequence {end}"));
    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, log) = p.exit_within(Duration::from_secs(20));
    assert!(status.success(), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("history index")), "{log:#?}");
    let mut tc = third.client();
    assert_eq!(table_hashes(&mut tc), rebuilt);
    assert_eq!(index_defs(&mut tc), want);
}

/// One projector per database: a second one is refused before it writes or deletes anything,
/// while the first holds a batch open (it deleted the first one's committed ledger rows, and
/// both exited 0: a red-team finding). The first is stopped (SIGSTOP) inside a batch, so the
/// second runs while it certainly holds the database, whatever the timing.
#[test]
fn a_second_projector_on_the_same_database_is_refused_and_changes_nothing() {
    let (db, _tmp, dir) = fresh("second");
    journal(&dir, &script(11, 3_000, 0));
    let mut first = Server::spawn(&[
        "project",
        "--journal",
        dir.to_str().unwrap(),
        "--postgres",
        &db.url,
        "--once",
        "--batch",
        "1000",
        "--hold-batch-ms",
        "1000",
    ]);
    first.wait_line("holding batch 1001..=");
    let pid = first.child.id().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let mut c = db.client();
    // Whatever it had committed when it stopped (the first batch at least) stays.
    let seq_before = last_seq(&mut c);
    assert!(seq_before >= 1000, "{seq_before}");
    let ledger_before: i64 = c
        .query_one("SELECT count(*) FROM ledger", &[])
        .unwrap()
        .get(0);
    assert!(ledger_before > 0);
    for extra in [&["--once"][..], &["--once", "--rebuild"][..]] {
        let out = project(&dir, &db.url, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("another projector is writing to this database (PostgreSQL backend")
                && stderr.contains("application \"ringbook-projection\""),
            "{extra:?}: {stderr}"
        );
    }
    // Nothing was deleted or dropped: the first projector's committed batch and its ledger
    // rows (the held batch's too, committed on its own connection) are all there.
    assert_eq!(last_seq(&mut c), seq_before);
    let ledger_after: i64 = c
        .query_one("SELECT count(*) FROM ledger", &[])
        .unwrap()
        .get(0);
    assert_eq!(ledger_after, ledger_before);
    signal("-CONT");
    let (status, log) = first.exit_within(Duration::from_secs(120));
    assert!(status.success(), "{log:#?}");
    verify_clean(&dir, &db.url);
    ledger_balances(&mut c);
    // Once it is gone, the database is free again.
    let text = ok(&project(&dir, &db.url, &["--once"]));
    assert!(text.contains("projected 0 commands"), "{text}");
}

/// A following projector whose ledger connection alone is terminated (a DBA's
/// `pg_terminate_backend`, a pooler, a reset) reconnects and goes on: its old main connection,
/// which holds the projector lock, is dropped before the new pair connects (it was dropped
/// after, so the new pair never got the lock and the projector waited on itself for good: a
/// red-team finding).
#[test]
fn a_projector_whose_ledger_connection_is_killed_reconnects_and_goes_on() {
    let (db, _tmp, dir) = fresh("ledgerkill");
    journal(&dir, &script(31, 600, 0));
    let mut c = db.client();
    let mut p = Server::spawn(&[
        "project",
        "--journal",
        dir.to_str().unwrap(),
        "--postgres",
        &db.url,
        "--batch",
        "100",
    ]);
    let end = {
        let deadline = Instant::now() + support::WAIT;
        loop {
            let n = committed(&mut c);
            if n > 0
                && p.log_now()
                    .iter()
                    .any(|l| l.contains("caught up at sequence"))
            {
                break n;
            }
            assert!(Instant::now() < deadline, "{:#?}", p.log_now());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The projector's ledger connection: the holder of the ledger's lock ("ringbooL").
    let killed: i64 = c
        .query_one(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
              WHERE l.locktype = 'advisory' AND l.granted
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND ((l.classid::bigint << 32) | l.objid::bigint) = x'72696e67626f6f4c'::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    // More commands: the next batch meets the dead connection, reconnects, and is written.
    journal(&dir, &script(32, 300, 1_000_000));
    let more = journal_last_seq(&dir) as i64;
    assert!(more > end);
    let deadline = Instant::now() + support::WAIT;
    while committed(&mut c) < more {
        assert!(Instant::now() < deadline, "{:#?}", p.log_now());
        std::thread::sleep(Duration::from_millis(20));
    }
    p.wait_line("PostgreSQL back: sequences");
    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, log) = p.exit_within(Duration::from_secs(20));
    assert!(status.success(), "{log:#?}");
    assert!(
        !log.iter().any(|l| l.contains("another projector")),
        "{log:#?}"
    );
    verify_clean(&dir, &db.url);
    ledger_balances(&mut c);
}

/// `ringbook project` expecting exit 2 with `says` on stderr.
fn refused(dir: &Path, url: &str, extra: &[&str], says: &str) {
    let out = project(dir, url, extra);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
    assert!(stderr.contains(says), "{extra:?}: {stderr}");
}

/// A database is a projection of one journal, made with one configuration: another journal, a
/// configuration with other fees, and hand-edited state are refused with words that say so,
/// and nothing is written (red-team findings: another journal was resumed silently, other fees
/// wrote wrong rows until a balance disagreed, a retyped column panicked the projector, a
/// negative `last_seq` deleted the whole ledger).
#[test]
fn a_projection_refuses_another_journal_other_fees_and_hand_edited_state() {
    let admin = admin_url();
    let db = TestDb::new(&admin, "identity");
    let tmp = tempdir();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    journal(&a, &script(21, 800, 0));
    journal(&b, &script(22, 800, 0));
    ok(&project(&a, &db.url, &["--once"]));
    let mut c = db.client();
    let hashes = table_hashes(&mut c);
    // Another journal: refused by the digest of the projected record, and verify says so in
    // one difference.
    refused(
        &b,
        &db.url,
        &["--once"],
        "this database holds a projection of another journal: record",
    );
    let out = project(&b, &db.url, &["--verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("DIFFERENCE: ").count(), 1, "{text}");
    assert!(text.contains("projection of another journal"), "{text}");
    // Other fees.
    let fees = tmp.path().join("fees.toml");
    let config = include_str!("../../engine/src/default_config.toml")
        .replace("taker_fee_bps = 10\n", "taker_fee_bps = 20\n");
    std::fs::write(&fees, config).unwrap();
    refused(
        &a,
        &db.url,
        &["--once", "--config", fees.to_str().unwrap()],
        "the database holds a projection made with another configuration (symbol",
    );
    assert_eq!(table_hashes(&mut c), hashes);
    // A column retyped by hand: the projector stops with an error (exit 2), not a panic's 101.
    c.batch_execute("ALTER TABLE balances ALTER COLUMN locked TYPE numeric")
        .unwrap();
    refused(&a, &db.url, &["--once"], "the projection panicked (");
    refused(&a, &db.url, &["--verify"], "verify panicked (");
    c.batch_execute("ALTER TABLE balances ALTER COLUMN locked TYPE bigint")
        .unwrap();
    // A value the client cannot read is not a connection failure: a following projector stops
    // on it (exit 2) instead of retrying for ever with its running gauge at 1.
    c.batch_execute("ALTER TABLE projection_state ALTER COLUMN last_ts TYPE text")
        .unwrap();
    let follower = Server::spawn(&[
        "project",
        "--journal",
        a.to_str().unwrap(),
        "--postgres",
        &db.url,
    ]);
    let (status, log) = follower.exit_within(support::WAIT);
    assert_eq!(status.code(), Some(2), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("retrying")), "{log:#?}");
    c.batch_execute(
        "ALTER TABLE projection_state ALTER COLUMN last_ts TYPE bigint USING last_ts::bigint",
    )
    .unwrap();
    // A negative or missing projection state: said, and the ledger left alone.
    let ledger = |c: &mut Client| -> i64 {
        c.query_one("SELECT count(*) FROM ledger", &[])
            .unwrap()
            .get(0)
    };
    let entries = ledger(&mut c);
    let seq = last_seq(&mut c);
    c.execute("UPDATE projection_state SET last_seq = -5", &[])
        .unwrap();
    refused(
        &a,
        &db.url,
        &["--once"],
        "projection_state holds last_seq -5",
    );
    assert_eq!(ledger(&mut c), entries);
    c.execute("UPDATE projection_state SET last_seq = $1", &[&seq])
        .unwrap();
    assert_eq!(table_hashes(&mut c), hashes);
    verify_clean(&a, &db.url);
    c.execute("DELETE FROM projection_state", &[]).unwrap();
    refused(&a, &db.url, &["--once"], "projection_state has no row");
}

// ------------------------------------------------------------------ a private PostgreSQL

/// A throwaway PostgreSQL cluster of this test's own (initdb, pg_ctl), so it can be stopped and
/// started without touching the shared server. Run as the `postgres` user when root.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    port: u16,
}

fn pg_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql: tools/ci/test.sh \
             (tools/ci/services.sh) installs Debian's postgresql package"
        )
    })
}

fn as_pg_user(program: &Path) -> Command {
    // SAFETY-free check of the effective user: root runs PostgreSQL's programs as `postgres`.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Cluster {
    fn start() -> Cluster {
        let bin = pg_bin();
        let dir = tempdir();
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        let _ = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir.path())
            .status();
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let out = as_pg_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "ringbook", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Cluster {
            bin,
            data,
            _dir: dir,
            port,
        };
        c.pg_ctl_start();
        c
    }

    fn pg_ctl_start(&self) {
        let out = as_pg_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.join("server.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
                self.port,
                self.data.display()
            ))
            .arg("start")
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An immediate stop: the server dies as in a crash (no shutdown checkpoint).
    fn stop(&self) {
        let out = as_pg_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://ringbook@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_pg_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[test]
fn a_following_projector_survives_postgres_stopping_and_catches_up() {
    // The shared server's variable must be set like for every test here (tools/ci/test.sh),
    // though this test runs its own cluster.
    let _ = admin_url();
    let cluster = Cluster::start();
    let mut admin = Client::connect(&cluster.url("postgres"), NoTls).expect("private cluster");
    admin.batch_execute("CREATE DATABASE proj").unwrap();
    let url = cluster.url("proj");
    let tmp = tempdir();
    let dir = tmp.path().join("journal");
    let first = script(11, 2_000, 0);
    journal(&dir, &first);
    let mut p = Server::spawn(&[
        "project",
        "--journal",
        dir.to_str().unwrap(),
        "--postgres",
        &url,
        "--batch",
        "500",
    ]);
    let line = p.wait_line("caught up at sequence");
    let first_end: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(first_end, commands_in(&first), "{line}");
    drop(admin);
    cluster.stop();
    // The journal grows while PostgreSQL is down: the projector cannot write it, and says so.
    let second = script(12, 2_000, 1_000_000);
    journal(&dir, &second);
    let total = first_end + commands_in(&second);
    p.wait_line("retrying (the projection lags");
    cluster.pg_ctl_start();
    p.wait_line("written");
    // It catches up with everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    let end = loop {
        let line = p.wait_line("caught up at sequence");
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        if n == total {
            break n;
        }
        assert!(Instant::now() < deadline, "no catch-up: {:#?}", p.log);
    };
    // A clean stop (SIGTERM) ends it with status 0.
    let status = Command::new("kill")
        .args(["-TERM", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, log) = p.exit_within(Duration::from_secs(20));
    assert!(status.success(), "{log:#?}");
    let mut c = Client::connect(&url, NoTls).unwrap();
    assert_eq!(last_seq(&mut c) as u64, end);
    verify_clean(&dir, &url);
    ledger_balances(&mut c);
    // Identical to a projection that never saw PostgreSQL go away.
    let mut admin = Client::connect(&cluster.url("postgres"), NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE fresh").unwrap();
    ok(&project(&dir, &cluster.url("fresh"), &["--once"]));
    let fresh = table_hashes(&mut Client::connect(&cluster.url("fresh"), NoTls).unwrap());
    assert_eq!(table_hashes(&mut c), fresh);
}

// ------------------------------------------------------------------ serve --postgres

/// Sends `msgs` and waits until the server has answered `answers` of them (any reply).
fn send_all(c: &mut ringbook_client::Client, msgs: &[ringbook_client::protocol::ClientMsg]) {
    for m in msgs {
        c.send(m).expect("send");
    }
    let mut answered = 0;
    while answered < msgs.len() {
        match c.recv_timeout(support::WAIT) {
            Ok(Some(_)) => answered += 1,
            other => panic!(
                "waiting for replies ({answered} of {}): {other:?}",
                msgs.len()
            ),
        }
    }
}

fn trade_flow(addr: std::net::SocketAddr, rounds: u64) {
    use ringbook_engine::prelude::*;
    let mut ops = support::ops(addr);
    let deposits: Vec<_> = [(1u32, 2u16, 100_000_000u64), (2, 0, 10_000_000_000)]
        .iter()
        .map(|&(user, currency, amount)| {
            Command::Deposit {
                user: UserId(user),
                currency: CurrencyId(currency),
                amount,
            }
            .into()
        })
        .collect();
    send_all(&mut ops, &deposits);
    let mut alice = ringbook_client::Client::connect(addr).unwrap();
    alice.login("alice", "alice-demo", 1, false).unwrap();
    let mut bob = ringbook_client::Client::connect(addr).unwrap();
    bob.login("bob", "bob-demo", 1, false).unwrap();
    for i in 0..rounds {
        let sell = NewOrder::limit(
            UserId(1),
            SymbolId(0),
            ClientOrderId(i + 1),
            Side::Sell,
            Price(15_000 + (i % 7) as i64),
            Qty(3),
        );
        place(&mut alice, sell);
        let buy = NewOrder::limit(
            UserId(2),
            SymbolId(0),
            ClientOrderId(i + 1),
            Side::Buy,
            Price(15_010),
            Qty(2 + i % 3),
        );
        place(&mut bob, buy);
    }
}

/// Sends a new order and reads (so nothing backs up) until its acceptance or rejection.
fn place(c: &mut ringbook_client::Client, o: ringbook_engine::NewOrder) {
    use ringbook_client::protocol::ServerMsg;
    c.send(&ringbook_engine::Command::NewOrder(o).into())
        .expect("send");
    for _ in 0..100_000 {
        match c.recv_timeout(support::WAIT) {
            Ok(Some(ServerMsg::Accepted {
                client_order_id, ..
            }))
            | Ok(Some(ServerMsg::Rejected {
                client_order_id, ..
            })) if client_order_id == o.client_order_id.0 => return,
            Ok(Some(_)) => {}
            other => panic!("waiting for order {}: {other:?}", o.client_order_id.0),
        }
    }
    panic!("no answer to order {}", o.client_order_id.0);
}

fn journal_last_seq(dir: &Path) -> u64 {
    let out = Command::new(BIN)
        .args(["journal", "replay", "--json"])
        .arg(dir)
        .output()
        .expect("run journal replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let first = stdout.lines().next().expect("a replay line");
    first
        .split(r#""last_seq":"#)
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no last_seq in {first}"))
}

/// The web edge's base URL, from the server's start-up line.
fn web_base(srv: &mut Server) -> String {
    let line = srv.wait_line_seen("web edge on http://");
    let addr = line.split("web edge on http://").nth(1).unwrap();
    format!("http://{}", addr.split_whitespace().next().unwrap())
}

/// One scrape of the web edge's `/metrics` text.
struct Metrics(String);

impl Metrics {
    fn scrape(base: &str) -> Metrics {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
            Metrics(r.text().await.unwrap())
        })
    }

    /// The value of the unlabelled sample `name`.
    fn get(&self, name: &str) -> u64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {}", self.0))
    }

    /// The lag is the pipeline's last sequence minus the committed one (not the other way
    /// round, not the acknowledged sequence).
    fn assert_lag_is_submitted_minus_committed(&self) {
        let (submitted, committed) = (
            self.get("ringbook_pipeline_submitted_sequence"),
            self.get("ringbook_projection_committed_sequence"),
        );
        assert_eq!(
            self.get("ringbook_projection_lag_commands"),
            submitted - committed,
            "{}",
            self.0
        );
    }
}

/// Linux's scheduling policies, as `/proc/…/stat` reports them (field 41).
const SCHED_OTHER: u32 = 0;
const SCHED_IDLE: u32 = 5;

/// Each thread of process `pid`: its name and scheduling policy.
fn thread_classes(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc is mounted") {
        let path = task.unwrap().path();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        let name = stat[open + 1..close].to_string();
        let policy = stat[close + 2..]
            .split(' ')
            .nth(38)
            .unwrap()
            .parse()
            .unwrap();
        out.push((name, policy));
    }
    out
}

/// Waits (bounded) until the server has both its gateway thread and the projection's mapper
/// thread (the projection's last to start), and returns every thread's class then.
fn classes_once_projecting(srv: &mut Server) -> Vec<(String, u32)> {
    let deadline = Instant::now() + support::WAIT;
    loop {
        let classes = thread_classes(srv.child.id());
        let has = |name: &str| classes.iter().any(|(n, _)| n == name);
        if has("projection-map") && has("ringbook-gatewa") {
            return classes;
        }
        assert!(
            Instant::now() < deadline,
            "no gateway or mapper thread: {classes:?} {:#?}",
            srv.log_now()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `serve` on a journal in `dir`, a loopback port and no web edge, projecting into `url`.
fn serve_projecting<'a>(dir: &'a Path, url: &'a str) -> Vec<&'a str> {
    let dir = dir.to_str().unwrap();
    let listen = ["--listen", "127.0.0.1:0", "--no-http"];
    [
        &["serve", "--journal", dir][..],
        &listen,
        &["--postgres", url],
    ]
    .concat()
}

/// The CPUs a thread of process `pid` named `name` may run on (`Cpus_allowed_list`).
fn allowed_cpus(pid: u32, name: &str) -> String {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc is mounted") {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let status = std::fs::read_to_string(path.join("status")).unwrap();
            return status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_string();
        }
    }
    panic!("no thread {name:?}");
}

/// `serve --postgres` runs the projection's threads (the one it starts and the mapper that one
/// starts) only on otherwise idle cores (`SCHED_IDLE`), the exchange's own threads as ordinary
/// ones; `--projection-sched normal` keeps the projection ordinary too. With
/// `--projection-cpus`, the projection's threads run on those CPUs only, the others anywhere.
#[test]
fn serve_runs_its_projection_on_idle_cores_only_unless_told_otherwise() {
    let admin = admin_url();
    // The CPUs this process may use (the server's threads inherit them), and the first of
    // them, which the projection is confined to.
    let own = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    let first = own.split([',', '-']).next().unwrap().to_string();
    for (db_name, extra, want) in [
        ("sched_idle", None, SCHED_IDLE),
        ("sched_normal", Some("normal"), SCHED_OTHER),
    ] {
        let db = TestDb::new(&admin, db_name);
        let tmp = tempdir();
        let dir = tmp.path().join("journal");
        let mut args = serve_projecting(&dir, &db.url);
        if let Some(class) = extra {
            args.extend(["--projection-sched", class]);
        } else {
            args.extend(["--projection-cpus", &first]);
        }
        let mut srv = Server::start(&args);
        srv.wait_line_seen("projecting the journal into PostgreSQL");
        let classes = classes_once_projecting(&mut srv);
        let of = |name: &str| {
            classes
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no thread {name:?} in {classes:?}"))
                .1
        };
        assert_eq!(of("projection"), want, "{extra:?}: {classes:?}");
        assert_eq!(of("projection-map"), want, "{extra:?}: {classes:?}");
        assert_eq!(of("ringbook-gatewa"), SCHED_OTHER, "{classes:?}");
        let pid = srv.child.id();
        let projection_cpus = if extra.is_none() { &first } else { &own };
        assert_eq!(&allowed_cpus(pid, "projection"), projection_cpus);
        assert_eq!(&allowed_cpus(pid, "projection-map"), projection_cpus);
        assert_eq!(allowed_cpus(pid, "ringbook-gatewa"), own);
        let (status, log) = srv.terminate();
        assert!(status.success(), "{log:#?}");
    }
}

/// `serve` warns at start when the projection is to run on idle cores only but its own
/// busy-spinning threads leave no core idle: here the server is confined to one core, on which
/// the busy-polled gateway loop spins. With `--projection-sched normal`, or no spinner, it does
/// not. (No database is needed: the warning comes before the projection connects.)
#[test]
fn serve_warns_when_its_spinners_leave_an_idle_class_projection_no_core() {
    use std::os::unix::process::CommandExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("postgres://ringbook@127.0.0.1:{port}/nowhere");
    const WARNING: &str = "warning: the projection runs only on idle cores";
    for (extra, warned) in [
        (&["--busy-poll"][..], true),
        (&["--busy-poll", "--projection-sched", "normal"][..], false),
        (&[][..], false),
    ] {
        let tmp = tempdir();
        let dir = tmp.path().join("journal");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--journal", dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--no-http", "--layout", "inline"])
            .args(["--postgres", &nowhere])
            .args(extra);
        // SAFETY: runs in the forked child before exec and makes only the two affinity system
        // calls, on a cpu_set_t on its own stack (async-signal-safe; no allocation, no lock).
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(|| {
                let size = std::mem::size_of::<libc::cpu_set_t>();
                let mut allowed: libc::cpu_set_t = std::mem::zeroed();
                if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let Some(first) =
                    (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &allowed))
                else {
                    return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
                };
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(first, &mut one);
                if libc::sched_setaffinity(0, size, &one) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut srv = Server::spawn_command(cmd).listening();
        // The warning, when there is one, is logged before the gateway's "listening on".
        let seen = srv.log_now().iter().any(|l| l.contains(WARNING));
        let (status, log) = srv.terminate();
        assert!(status.success(), "{log:#?}");
        assert_eq!(seen, warned, "{extra:?}: {log:#?}");
        assert_eq!(
            log.iter().any(|l| l.contains(WARNING)),
            warned,
            "{extra:?}: {log:#?}"
        );
        if warned {
            let line = log.iter().find(|l| l.contains(WARNING)).unwrap();
            assert!(line.contains("keep all 1 core(s) busy"), "{line}");
            assert!(line.contains("ringbook_projection_lag_commands"), "{line}");
        }
    }
    // A CPU the projection cannot run on (none is numbered 1023 here) is refused at start.
    let tmp = tempdir();
    let dir = tmp.path().join("journal");
    let mut args = serve_projecting(&dir, &nowhere);
    args.extend(["--projection-cpus", "1023"]);
    let srv = Server::spawn(&args);
    let (status, log) = srv.exit_within(support::WAIT);
    assert!(!status.success(), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("the projection cannot run on CPUs [1023]")),
        "{log:#?}"
    );
}

#[test]
fn serve_projects_on_its_own_thread_and_trades_with_postgres_unreachable() {
    let (db, _tmp, dir) = fresh("serve");
    let journal = dir.to_str().unwrap();
    let args = [
        "serve",
        "--journal",
        journal,
        "--listen",
        "127.0.0.1:0",
        "--no-http",
    ];
    let mut with_pg = args.to_vec();
    // An ordinary thread here: this test is about following and catching up, and an idle-class
    // projection could wait long on a machine busy with the other tests (the class has a test
    // of its own).
    with_pg.extend(["--postgres", &db.url, "--projection-sched", "normal"]);
    let mut srv = Server::start(&with_pg);
    srv.wait_line_seen("projecting the journal into PostgreSQL");
    trade_flow(srv.addr, 200);
    // The projection follows while the server runs.
    let mut c = db.client();
    let deadline = Instant::now() + support::WAIT;
    // (The tables appear once the projection thread has migrated the database.)
    let projected = |c: &mut Client| {
        c.query_one("SELECT last_seq FROM projection_state", &[])
            .map_or(0, |r| r.get::<_, i64>(0))
    };
    while projected(&mut c) < 200 {
        assert!(
            Instant::now() < deadline,
            "the projection does not follow: {:#?}",
            srv.log_now()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("projection lag (a batch's oldest command")),
        "{log:#?}"
    );
    // A clean stop leaves it caught up with the journal's last record, and equal to the engine.
    assert_eq!(last_seq(&mut c) as u64, journal_last_seq(&dir));
    verify_clean(&dir, &db.url);
    let trades: i64 = c
        .query_one("SELECT count(*) FROM trades", &[])
        .unwrap()
        .get(0);
    assert!(trades >= 200, "{trades}");

    // PostgreSQL unreachable (nothing listens on the port): the server trades all the same, the
    // projection lags and says so; the next run catches up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("postgres://ringbook@127.0.0.1:{port}/nowhere");
    // With the web edge this time, for what /metrics says of a projection that cannot start.
    let mut down: Vec<&str> = args.iter().copied().filter(|a| *a != "--no-http").collect();
    down.extend(["--http", "127.0.0.1:0", "--postgres", &nowhere]);
    let mut srv = Server::start(&down);
    let base = web_base(&mut srv);
    srv.wait_line_seen("cannot reach PostgreSQL");
    trade_flow(srv.addr, 50);
    // Still trying, nothing committed (it never read its database), every command behind.
    let m = Metrics::scrape(&base);
    assert_eq!(m.get("ringbook_projection_running"), 1, "{}", m.0);
    assert_eq!(
        m.get("ringbook_projection_committed_sequence"),
        0,
        "{}",
        m.0
    );
    assert!(m.get("ringbook_projection_db_errors_total") > 0, "{}", m.0);
    assert!(m.get("ringbook_projection_lag_commands") >= 100, "{}", m.0);
    m.assert_lag_is_submitted_minus_committed();
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:#?}");
    assert!(journal_last_seq(&dir) > last_seq(&mut c) as u64);
    ok(&project(&dir, &db.url, &["--once"]));
    assert_eq!(last_seq(&mut c) as u64, journal_last_seq(&dir));
    verify_clean(&dir, &db.url);
}

/// Projection throughput from a recorded journal (docs/benchmarks.md, "Projection"): not a
/// pass/fail test. Run it against a release build:
///
/// ```sh
/// cargo build --release -p ringbook-tools --bin ringbook
/// RINGBOOK_PROJECTION_BENCH_BIN=target/release/ringbook RINGBOOK_PROJECTION_BENCH_COMMANDS=300000 \
///     cargo test -p ringbook-tools --test projection -- --ignored --nocapture projection_throughput
/// ```
///
/// (The test itself only generates the script; the journal is written and projected by
/// `RINGBOOK_PROJECTION_BENCH_BIN`, the binary under test otherwise.)
#[test]
#[ignore = "a measurement, run by hand (docs/benchmarks.md)"]
fn projection_throughput() {
    let admin = admin_url();
    let commands: usize = std::env::var("RINGBOOK_PROJECTION_BENCH_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let bin = std::env::var("RINGBOOK_PROJECTION_BENCH_BIN").unwrap_or_else(|_| BIN.to_string());
    // RINGBOOK_PROJECTION_BENCH_JOURNAL=DIR: record the journal there once and reuse it.
    let tmp = tempdir();
    let dir = std::env::var("RINGBOOK_PROJECTION_BENCH_JOURNAL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("journal"));
    if !dir.exists() {
        let started = Instant::now();
        let s = script(42, commands, 0);
        journal_with(&bin, &dir, &s);
        println!(
            "journaled {} commands in {:?}",
            commands_in(&s),
            started.elapsed()
        );
    }
    for batch in ["20000", "5000"] {
        let db = TestDb::new(&admin, "bench");
        let text = ok(&project_with(
            &bin,
            &dir,
            &db.url,
            &["--once", "--batch", batch],
        ));
        let line = text
            .lines()
            .find(|l| l.contains("commands/s"))
            .expect("a summary line");
        println!("--batch {batch}: {line}");
        verify_clean(&dir, &db.url);
    }
}

// ------------------------------------------------------------------ history over HTTP

/// GET `path` with `token`: status and JSON body.
async fn get_json(
    c: &reqwest::Client,
    url: String,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut rq = c.get(url);
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.expect("an HTTP answer");
    let status = r.status().as_u16();
    (status, r.json().await.expect("a JSON body"))
}

/// Every page of a history endpoint, following `next_cursor` (the page size `limit`).
async fn pages(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    key: &str,
    limit: usize,
) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{base}{path}{sep}limit={limit}");
        if let Some(cur) = &cursor {
            url += &format!("&cursor={cur}");
        }
        let (st, v) = get_json(c, url, Some(token)).await;
        assert_eq!(st, 200, "{v}");
        let items = v[key].as_array().expect("a page").clone();
        assert!(items.len() <= limit);
        all.extend(items);
        match v["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => return all,
        }
    }
    panic!("no end of pages");
}

#[test]
fn history_endpoints_paginate_orders_trades_and_the_ledger_from_the_projection() {
    let (db, _tmp, dir) = fresh("hist");
    let mut srv = Server::start(&[
        "serve",
        "--journal",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--postgres",
        &db.url,
        "--projection-sched",
        "normal",
    ]);
    let base = web_base(&mut srv);
    trade_flow(srv.addr, 60);
    // Then a self-trade (the default STP mode is NONE): only bob bids, so his sell at 14 000
    // takes his own best bid — the bid at 14 000 he places first, or a higher one left over.
    {
        use ringbook_engine::prelude::*;
        let mut bob = ringbook_client::Client::connect(srv.addr).unwrap();
        bob.login("bob", "bob-demo", 2, false).unwrap();
        for (coid, side) in [(1000, Side::Buy), (1001, Side::Sell)] {
            let o = NewOrder::limit(
                UserId(2),
                SymbolId(0),
                ClientOrderId(coid),
                side,
                Price(14_000),
                Qty(1),
            );
            place(&mut bob, o);
        }
    }
    // 2 deposits and 122 orders: wait until the projection has them.
    let mut c = db.client();
    let deadline = Instant::now() + support::WAIT;
    loop {
        if committed(&mut c) >= 124 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not projected: {:#?}",
            srv.log_now()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // What the tables hold (the server is idle now), read before the HTTP client's runtime runs.
    // Bob's sides of trades: a self-trade counts twice.
    let want: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM trades WHERE maker_user_id = 2)
                  + (SELECT count(*) FROM trades WHERE taker_user_id = 2)",
            &[],
        )
        .unwrap()
        .get(0);
    let selfs: i64 = c
        .query_one(
            "SELECT count(*) FROM trades WHERE maker_user_id = 2 AND taker_user_id = 2",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(selfs, 1, "the self-trade");
    let (available, locked): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT available, locked FROM balances WHERE user_id = 2 AND currency_id = 0",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let total: i64 = c
        .query_one("SELECT count(*) FROM trades", &[])
        .unwrap()
        .get(0);
    // A trade row of bob's beyond the projected sequence, as a batch committing between a
    // reply's two reads would leave it: the pages are bounded by the `projected_seq` they
    // report, so it shows in none of them (read after the rows, the sequence could be behind
    // them).
    c.batch_execute(
        "CREATE TEMP TABLE ahead AS
           SELECT * FROM trades WHERE maker_user_id = 2 OR taker_user_id = 2 LIMIT 1;
         UPDATE ahead SET seq = seq + 1000000, trade_id = trade_id + 1000000;
         INSERT INTO trades SELECT * FROM ahead;",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // /metrics follows the projection: once idle, it has committed the pipeline's last
    // sequence and is 0 commands behind, running, with no database errors.
    let deadline = Instant::now() + support::WAIT;
    loop {
        let m = Metrics::scrape(&base);
        let committed = m.get("ringbook_projection_committed_sequence");
        assert_eq!(m.get("ringbook_projection_running"), 1, "{}", m.0);
        assert_eq!(m.get("ringbook_projection_db_errors_total"), 0, "{}", m.0);
        m.assert_lag_is_submitted_minus_committed();
        if m.get("ringbook_projection_lag_commands") == 0 {
            assert!(committed >= 124, "{}", m.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the projection's lag stays: {}",
            m.0
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "bob", "password": "bob-demo"}))
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        let bob = v["token"].as_str().expect("a token").to_string();

        // Orders: newest first, every one once, across pages of 7.
        let orders = pages(&http, &base, "/api/v1/history/orders", &bob, "orders", 7).await;
        let seqs: Vec<i64> = orders.iter().map(|o| o["seq"].as_i64().unwrap()).collect();
        assert_eq!(seqs.len(), 62);
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
        assert!(orders.iter().all(|o| o["symbol"] == "BTC-KRW"));
        assert_eq!(orders.iter().filter(|o| o["side"] == "SELL").count(), 1);
        // Filtered by time: the first ten orders' creation times.
        let mut ts: Vec<i64> = orders
            .iter()
            .map(|o| o["created_ts"].as_i64().unwrap())
            .collect();
        ts.sort();
        let path = format!("/api/v1/history/orders?from={}&to={}", ts[0], ts[10]);
        let early = pages(&http, &base, &path, &bob, "orders", 4).await;
        assert_eq!(early.len(), 10);

        // Trades: each once, as many as the table holds for bob.
        let trades = pages(&http, &base, "/api/v1/history/trades", &bob, "trades", 9).await;
        assert!(want > 0);
        assert_eq!(trades.len() as i64, want);
        let mut keys: Vec<(i64, i64, String)> = trades
            .iter()
            .map(|t| {
                let liquidity = t["liquidity"].as_str().unwrap().to_string();
                (
                    t["seq"].as_i64().unwrap(),
                    t["trade_id"].as_i64().unwrap(),
                    liquidity,
                )
            })
            .collect();
        keys.dedup();
        assert_eq!(keys.len(), trades.len());
        // The self-trade shows both of bob's sides, the taking sell first (newest first, so at
        // the top), each with its own order; every other trade is one of bob's buys taking.
        let (sell, bid) = (&trades[0], &trades[1]);
        assert_eq!(
            (&sell["side"], &sell["liquidity"]),
            (&"SELL".into(), &"TAKER".into())
        );
        assert_eq!(
            (&bid["side"], &bid["liquidity"]),
            (&"BUY".into(), &"MAKER".into())
        );
        assert_eq!(sell["trade_id"], bid["trade_id"]);
        assert_ne!(sell["order_id"], bid["order_id"]);
        assert!(trades[2..]
            .iter()
            .all(|t| t["side"] == "BUY" && t["liquidity"] == "TAKER"));

        // The KRW statement sums to the balance.
        let legs = pages(
            &http,
            &base,
            "/api/v1/history/ledger?currency=KRW",
            &bob,
            "entries",
            13,
        )
        .await;
        let sum = |account: &str| -> i64 {
            legs.iter()
                .filter(|l| l["account"] == account)
                .map(|l| l["amount"].as_i64().unwrap())
                .sum()
        };
        assert_eq!((sum("available"), sum("locked")), (available, locked));
        assert!(legs.iter().any(|l| l["kind"] == "deposit"));
        assert!(legs.iter().any(|l| l["kind"] == "trade"));

        // Candles, public: every trade is in the 1m candles.
        let (st, v) = get_json(
            &http,
            format!("{base}/api/v1/history/klines/BTC-KRW?interval=1m"),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let in_candles: i64 = v["klines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["trades"].as_i64().unwrap())
            .sum();
        assert_eq!(in_candles, total);

        // Bad input: a clear error. A cursor of another endpoint, one whose part would wrap
        // into another row's key, and a limit outside 1..=1000 are refused, not served (a
        // red-team finding: all three were 200).
        for bad in [
            "orders?cursor=x-y",
            "trades?cursor=l-3-1-2",
            "ledger?cursor=l-4000-4294967297-2",
            "trades?cursor=t-9-70000-4-1",
            "orders?limit=0",
            "ledger?limit=1001",
        ] {
            let (st, v) = get_json(&http, format!("{base}/api/v1/history/{bad}"), Some(&bob)).await;
            assert_eq!((st, v["code"].as_u64()), (400, Some(4001)), "{bad}: {v}");
        }
        // Naming another user is refused, as everywhere in the API; naming oneself is fine.
        for path in ["orders", "trades", "ledger"] {
            let url = format!("{base}/api/v1/history/{path}?user=1");
            let (st, v) = get_json(&http, url, Some(&bob)).await;
            assert_eq!(
                (st, v["reason"].as_str()),
                (403, Some("NOT_YOUR_ACCOUNT")),
                "{v}"
            );
            let url = format!("{base}/api/v1/history/{path}?user=2&limit=1");
            let (st, v) = get_json(&http, url, Some(&bob)).await;
            assert_eq!(st, 200, "{v}");
        }
        let (st, v) = get_json(&http, format!("{base}/api/v1/history/orders"), None).await;
        assert_eq!(st, 401, "{v}");
    });
    let (status, log) = srv.terminate();
    assert!(status.success(), "{log:#?}");
}
