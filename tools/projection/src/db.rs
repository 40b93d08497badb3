//! PostgreSQL: connecting, migrating, loading a resumed projection's state, and writing a
//! batch in one transaction with the projection state.

use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, GenericClient, NoTls, Transaction};
use ringbook_engine::marketdata::Interval;
use ringbook_engine::Config;

use crate::copy::Copy;
use crate::mapper::{BalanceRow, Batch, OrderRow, WithdrawalRow, LIVE_STATUSES};
use crate::schema::{MIGRATIONS, SECONDARY_INDEXES, TABLES};
use crate::ProjectionError;

/// Connects, with a connect timeout of 10 s unless the URL sets one.
pub fn connect(url: &str) -> Result<Client, ProjectionError> {
    let mut config = postgres::Config::from_str(url)
        .map_err(|e| ProjectionError::Usage(format!("--postgres {url:?}: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.keepalives_idle(Duration::from_secs(30));
    config
        .application_name("ringbook-projection")
        .connect(NoTls)
        .map_err(ProjectionError::Db)
}

/// The projector's two connections: `main` writes every table but the ledger and the
/// projection state; `ledger` writes the ledger at the same time, in its own transaction, which
/// commits before `main`'s (docs/persistence.md, "Exactly once").
pub struct Conns {
    /// Everything but the ledger, and the projection state.
    pub main: Client,
    /// The ledger.
    pub ledger: Client,
    /// The two connections' server processes, main then ledger, each as [`BACKEND_ID`] names
    /// it (its pid and start time: a pid alone may have been reused by another session since):
    /// after a reconnect, a lock still held by one of them is this projector's own (a
    /// connection the server has not yet seen die), which [`Conns::reconnect`] ends.
    backends: [String; 2],
}

impl std::fmt::Debug for Conns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The keys of the session-level advisory locks a projector's two connections hold for as
/// long as they are open (`"ringbook"` and `"ringbooL"` in ASCII): `main` the first, `ledger`
/// the second. Advisory locks belong to one database, so this is one projector per database:
/// a second one is refused before it writes or deletes anything (without the lock, a starting
/// projector's trim of the ledger could delete the ledger rows of a batch the running one had
/// committed but not yet recorded: a red-team finding), and as long as either connection of
/// the first lives (a ledger connection still committing after its main one died is fenced
/// too).
pub(crate) const PROJECTOR_LOCKS: [i64; 2] = [0x7269_6e67_626f_6f6b, 0x7269_6e67_626f_6f4c];

/// A server process's identity in SQL over `pg_stat_activity a`: its pid and its start time to
/// the microsecond, in UTC whatever the session's settings (`4711@20261207143012123456`).
/// Pids are reused; the pair is not.
const BACKEND_ID: &str =
    "a.pid::text || '@' || to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')";

/// Takes the projector lock `key` on `client`, or says who holds it. Returns the connection's
/// server process ([`BACKEND_ID`]).
fn take_lock(client: &mut Client, key: i64) -> Result<String, ProjectionError> {
    let row = client.query_one(
        &format!(
            "SELECT pg_try_advisory_lock($1), {BACKEND_ID} FROM pg_stat_activity a
              WHERE a.pid = pg_backend_pid()"
        ),
        &[&key],
    )?;
    let (locked, backend): (bool, String) = (row.try_get(0)?, row.try_get(1)?);
    if !locked {
        // Who holds it, where that can be read (another role's sessions may hide their
        // details); refused either way.
        let who = holder(client, key).unwrap_or_default();
        return Err(ProjectionError::Busy(format!(
            "another projector is writing to this database{who}: one projector per \
             database; stop it first (or project into another database)"
        )));
    }
    Ok(backend)
}

impl Conns {
    /// Opens both, each taking its projector lock ([`ProjectionError::Busy`] if another
    /// session holds one).
    pub fn connect(url: &str) -> Result<Conns, ProjectionError> {
        let mut main = connect(url)?;
        let main_backend = take_lock(&mut main, PROJECTOR_LOCKS[0])?;
        let mut ledger = connect(url)?;
        let ledger_backend = take_lock(&mut ledger, PROJECTOR_LOCKS[1]).inspect_err(|_| {
            // Released now, not whenever the dropped connection's process has exited.
            let _ = main.batch_execute("SELECT pg_advisory_unlock_all()");
        })?;
        Ok(Conns {
            main,
            ledger,
            backends: [main_backend, ledger_backend],
        })
    }

    /// The two connections' server processes, main then ledger ([`BACKEND_ID`]).
    pub fn backends(&self) -> &[String; 2] {
        &self.backends
    }

    /// Opens a new pair after a failure. `own` are the server processes of this projector's
    /// earlier connections (kept by the caller across failed attempts, so a reconnect that
    /// fails while the network is down still knows them at the next one). If a projector lock
    /// is held by one of them — a connection that died without the server noticing yet (a
    /// half-open TCP connection lingers until the server's keepalive gives up), or one whose
    /// process has not finished exiting — that process is ended (`pg_terminate_backend`, in
    /// this database only) and the lock waited for, up to 5 s; then the connect is tried again.
    /// Anyone else's lock is a refusal ([`ProjectionError::Busy`]): waited for by the caller.
    pub fn reconnect(own: &[String], url: &str) -> Result<Conns, ProjectionError> {
        match Conns::connect(url) {
            Err(ProjectionError::Busy(why)) if !own.is_empty() => {
                let mut c = connect(url)?;
                // The projector locks of this database, with their holders.
                let locks = "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                        AND l.database = (SELECT oid FROM pg_database
                                           WHERE datname = current_database())
                        AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY($2)";
                // A session of another role may hide its start time: its lock is someone else's.
                let own_holder = format!("coalesce(({BACKEND_ID}) = ANY($1), false)");
                let held_by = |c: &mut Client, own_only: bool| -> Result<i64, ProjectionError> {
                    Ok(c.query_one(
                        &format!("SELECT count(*) {locks} AND {own_holder} = $3"),
                        &[&own, &&PROJECTOR_LOCKS[..], &own_only],
                    )?
                    .try_get(0)?)
                };
                if held_by(&mut c, false)? > 0 {
                    // Someone else's: wait for it, as for any other projector.
                    return Err(ProjectionError::Busy(why));
                }
                c.execute(
                    &format!("SELECT pg_terminate_backend(l.pid) {locks} AND {own_holder}"),
                    &[&own, &&PROJECTOR_LOCKS[..]],
                )?;
                // The one-argument form works on every supported version; the lock goes when
                // the process has exited.
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while held_by(&mut c, true)? > 0 && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                drop(c);
                Conns::connect(url)
            }
            other => other,
        }
    }

    /// Whether either connection is closed.
    pub fn is_closed(&self) -> bool {
        self.main.is_closed() || self.ledger.is_closed()
    }
}

/// Who holds projector lock `key`, in words (` (PostgreSQL backend …)`), or nothing.
fn holder(client: &mut Client, key: i64) -> Result<String, ProjectionError> {
    let row = client.query_opt(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'),
                coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), '?')
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
        &[&key],
    )?;
    Ok(match row {
        Some(r) => {
            let (pid, app, host, since): (i32, String, String, String) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            format!(" (PostgreSQL backend {pid}, application {app:?} from {host}, connected since {since} UTC)")
        }
        None => String::new(),
    })
}

/// Removes ledger entries beyond the projected sequence: the ledger's transaction of a batch
/// commits just before the batch's main transaction, so a crash between the two leaves them;
/// the batch is projected again. (Readers never see them: `ledger_legs` stops at `last_seq`.)
/// `last_seq` is the projected sequence, read (and checked: [`projected`]) first.
pub fn trim_ledger(client: &mut Client, last_seq: u64) -> Result<u64, ProjectionError> {
    Ok(client.execute("DELETE FROM ledger WHERE seq > $1", &[&big(last_seq)?])?)
}

/// Drops the secondary (history) indexes before a bulk load, in one transaction; the tables'
/// contents are untouched. [`ensure_secondary_indexes`] builds them again.
pub fn drop_secondary_indexes(client: &mut Client) -> Result<(), ProjectionError> {
    let mut tx = client.transaction()?;
    for (_, name, _) in SECONDARY_INDEXES {
        tx.batch_execute(&format!("DROP INDEX IF EXISTS {name}"))?;
    }
    tx.commit()?;
    Ok(())
}

/// Creates every secondary index that is missing (after a bulk load, or a bulk load that
/// crashed), the migration's own statements, on both connections at once: every other index of
/// [`SECONDARY_INDEXES`] on each (so each builds one of the ledger's two big ones). Returns how
/// many were created (0: all there, nothing done).
pub fn ensure_secondary_indexes(conns: &mut Conns) -> Result<usize, ProjectionError> {
    fn create(client: &mut Client, half: usize) -> Result<usize, ProjectionError> {
        let mut created = 0;
        for (_, name, sql) in SECONDARY_INDEXES.iter().skip(half).step_by(2) {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[name])?
                .get(0);
            if !exists {
                client.batch_execute(&format!("SET maintenance_work_mem = '128MB'; {sql}"))?;
                created += 1;
            }
        }
        Ok(created)
    }
    let Conns { main, ledger, .. } = conns;
    std::thread::scope(|scope| {
        let l = scope.spawn(|| create(ledger, 1));
        let m = create(main, 0);
        let l = l.join().unwrap_or_else(|_| {
            Err(ProjectionError::Data(
                "the index builder panicked".to_string(),
            ))
        });
        Ok(m? + l?)
    })
}

/// Applies every migration the database lacks, in one transaction, under an advisory lock
/// (two projectors starting at once migrate once). Refuses a database whose schema is newer
/// than this build knows.
pub fn migrate(client: &mut Client) -> Result<(), ProjectionError> {
    let mut tx = client.transaction()?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7236841001);
         CREATE TABLE IF NOT EXISTS ringbook_schema_migrations (
             version     INTEGER PRIMARY KEY,
             name        TEXT NOT NULL,
             applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
         );",
    )?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM ringbook_schema_migrations",
            &[],
        )?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > known {
        return Err(ProjectionError::Usage(format!(
            "the database's projection schema is at version {current}, newer than this ringbook \
             knows ({known}): use a newer ringbook or --rebuild"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).map_err(|e| {
            ProjectionError::Usage(format!(
                "migration {} ({}): {}",
                m.version,
                m.name,
                ProjectionError::Db(e)
            ))
        })?;
        tx.execute(
            "INSERT INTO ringbook_schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Drops every projection table (and the migration record), in one transaction.
pub fn drop_all(client: &mut Client) -> Result<(), ProjectionError> {
    let mut tx = client.transaction()?;
    tx.batch_execute("SELECT pg_advisory_xact_lock(7236841001)")?;
    for t in TABLES.iter().rev() {
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {t} CASCADE"))?;
    }
    tx.batch_execute("DROP TABLE IF EXISTS ringbook_schema_migrations")?;
    tx.commit()?;
    Ok(())
}

/// Writes the reference data of an empty projection, or checks that the stored reference data
/// is the configuration's (a journal must be projected with the config it was written with).
pub fn reference_data(client: &mut Client, config: &Config) -> Result<(), ProjectionError> {
    let mut tx = client.transaction()?;
    let stored: i64 = tx.query_one("SELECT count(*) FROM currencies", &[])?.get(0);
    if stored == 0 {
        for c in &config.currencies {
            tx.execute(
                "INSERT INTO currencies VALUES ($1, $2, $3)",
                &[&(c.id as i16), &c.code, &i16::from(c.scale)],
            )?;
        }
        for s in symbol_rows(config)? {
            tx.execute(
                "INSERT INTO symbols VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &s.0, &s.1, &s.2, &s.3, &s.4, &s.5, &s.6, &s.7, &s.8, &s.9, &s.10,
                ],
            )?;
        }
        tx.commit()?;
        return Ok(());
    }
    let mut differences = Vec::new();
    let rows = tx.query(
        "SELECT currency_id, code, scale FROM currencies ORDER BY currency_id",
        &[],
    )?;
    let want: Vec<(i16, String, i16)> = config
        .currencies
        .iter()
        .map(|c| (c.id as i16, c.code.clone(), i16::from(c.scale)))
        .collect();
    let have = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<(i16, String, i16)>, postgres::Error>>()?;
    if want != have {
        differences.push(format!("currencies: stored {have:?}, config {want:?}"));
    }
    // Every column: fees, the price band and the largest order change what a journal's
    // commands do (a projection resumed with other fees wrote wrong rows until a balance
    // disagreed: a red-team finding).
    let rows = tx.query(
        "SELECT symbol_id, name, base_currency_id, quote_currency_id, lot_size, tick_size,
                price_min, price_max, maker_fee_bps, taker_fee_bps, max_order_qty
         FROM symbols ORDER BY symbol_id",
        &[],
    )?;
    let have = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
                r.try_get(9)?,
                r.try_get(10)?,
            ))
        })
        .collect::<Result<Vec<SymbolRow>, postgres::Error>>()?;
    let want = symbol_rows(config)?;
    for (h, w) in have.iter().zip(&want) {
        if h != w {
            differences.push(format!("symbol {}: stored {h:?}, config {w:?}", w.1));
        }
    }
    if have.len() != want.len() {
        differences.push(format!(
            "{} symbols stored, {} configured",
            have.len(),
            want.len()
        ));
    }
    if !differences.is_empty() {
        return Err(ProjectionError::Usage(format!(
            "the database holds a projection made with another configuration ({}); use the \
             journal's --config, or --rebuild",
            differences.join("; ")
        )));
    }
    Ok(())
}

/// A `symbols` row: id, name, base and quote currency ids, lot and tick size, price band,
/// maker and taker fee (bps), largest order quantity.
type SymbolRow = (i16, String, i16, i16, i64, i64, i64, i64, i32, i32, i64);

/// The configuration's `symbols` rows, as stored.
fn symbol_rows(config: &Config) -> Result<Vec<SymbolRow>, ProjectionError> {
    config
        .symbols
        .iter()
        .map(|s| {
            let currency = |code: &str| config.currency_id(code).map_or(0, |c| c.0) as i16;
            Ok((
                s.id as i16,
                s.name.clone(),
                currency(&s.base),
                currency(&s.quote),
                big(s.lot_size)?,
                big(s.tick_size)?,
                s.price_min,
                s.price_max,
                s.maker_fee_bps as i32,
                s.taker_fee_bps as i32,
                big(s.max_order_qty)?,
            ))
        })
        .collect()
}

fn big(v: u64) -> Result<i64, ProjectionError> {
    i64::try_from(v).map_err(|_| ProjectionError::Data(format!("{v} does not fit a BIGINT")))
}

fn opt_big(v: Option<u64>) -> Result<Option<i64>, ProjectionError> {
    v.map(big).transpose()
}

/// The projection state: the last projected sequence (0: none) and its time.
pub fn projected(client: &mut impl GenericClient) -> Result<(u64, u64), ProjectionError> {
    let row = client
        .query_opt(
            "SELECT last_seq, last_ts FROM projection_state WHERE id = 1",
            &[],
        )?
        .ok_or_else(|| {
            ProjectionError::Data(
                "projection_state has no row (id 1): the table was changed by hand; \
                 `ringbook project --rebuild` rebuilds the projection"
                    .to_string(),
            )
        })?;
    let (seq, ts): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    match (u64::try_from(seq), u64::try_from(ts)) {
        (Ok(seq), Ok(ts)) => Ok((seq, ts)),
        _ => Err(ProjectionError::Data(format!(
            "projection_state holds last_seq {seq}, last_ts {ts}: negative, so changed by hand; \
             `ringbook project --rebuild` rebuilds the projection"
        ))),
    }
}

/// The digest of the last projected journal record (`None`: none stored).
pub fn projected_digest(client: &mut impl GenericClient) -> Result<Option<u64>, ProjectionError> {
    // `--verify` reads a database it does not migrate: one from before migration 3 has no
    // digest column, which reads as none stored.
    let row = match client.query_one("SELECT last_digest FROM projection_state WHERE id = 1", &[]) {
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_COLUMN) => {
            return Ok(None)
        }
        other => other?,
    };
    Ok(row.try_get::<_, Option<i64>>(0)?.map(|d| d as u64))
}

/// What a resumed mapper carries: live orders, balances, pending withdrawals, open accounts.
#[derive(Debug)]
pub struct Resumed {
    pub live: Vec<OrderRow>,
    pub balances: Vec<((u32, u16), BalanceRow)>,
    pub pending: Vec<WithdrawalRow>,
    pub accounts: Vec<u32>,
}

fn static_name(s: &str, names: &[&'static str]) -> Result<&'static str, ProjectionError> {
    names
        .iter()
        .copied()
        .find(|n| *n == s)
        .ok_or_else(|| ProjectionError::Data(format!("unexpected stored value {s:?}")))
}

const SIDES: [&str; 2] = ["BUY", "SELL"];
const TYPES: [&str; 4] = ["LIMIT", "MARKET", "STOP_LIMIT", "STOP_MARKET"];
const TIFS: [&str; 5] = ["GTC", "IOC", "FOK", "GTD", "DAY"];
const STPS: [&str; 5] = [
    "NONE",
    "CANCEL_NEWEST",
    "CANCEL_OLDEST",
    "CANCEL_BOTH",
    "DECREMENT",
];
const REASONS: [&str; 7] = [
    "USER",
    "IOC",
    "FOK",
    "STP",
    "POST_ONLY",
    "EXPIRED",
    "DISCONNECT",
];

/// Loads what a resumed mapper needs.
pub fn load_resumed(client: &mut Client) -> Result<Resumed, ProjectionError> {
    let mut live = Vec::new();
    for r in client.query(
        "SELECT seq, order_id, user_id, symbol_id, client_order_id::text, side, order_type, tif,
                price, stop_price, qty, display_qty, post_only, stp, status, leaves_qty,
                filled_qty, filled_notional, fees, cancel_reason, triggered_ts, created_ts,
                updated_ts, updated_seq, budget, expire_at
           FROM orders WHERE status IN ('NEW', 'PARTIALLY_FILLED') ORDER BY seq",
        &[],
    )? {
        let side = static_name(r.get(5), &SIDES)?;
        let coid: &str = r.get(4);
        live.push(OrderRow {
            seq: r.get::<_, i64>(0) as u64,
            order_id: r.get::<_, Option<i64>>(1).map(|v| v as u64),
            user: r.get::<_, i64>(2) as u32,
            symbol: r.get::<_, i16>(3) as u16,
            client_order_id: coid
                .parse()
                .map_err(|_| ProjectionError::Data(format!("client order id {coid:?}")))?,
            side,
            order_type: static_name(r.get(6), &TYPES)?,
            tif: static_name(r.get(7), &TIFS)?,
            price: r.get(8),
            stop_price: r.get(9),
            qty: r.get::<_, i64>(10) as u64,
            display_qty: r.get::<_, i64>(11) as u64,
            post_only: r.get(12),
            stp: static_name(r.get(13), &STPS)?,
            status: static_name(r.get(14), &LIVE_STATUSES)?,
            leaves_qty: r.get::<_, i64>(15) as u64,
            filled_qty: r.get::<_, i64>(16) as u64,
            filled_notional: r.get::<_, i64>(17) as u64,
            fees: r.get::<_, i64>(18) as u64,
            reject_code: None,
            reject_name: None,
            cancel_reason: r
                .get::<_, Option<&str>>(19)
                .map(|s| static_name(s, &REASONS))
                .transpose()?,
            triggered_ts: r.get::<_, Option<i64>>(20).map(|v| v as u64),
            created_ts: r.get::<_, i64>(21) as u64,
            updated_ts: r.get::<_, i64>(22) as u64,
            updated_seq: r.get::<_, i64>(23) as u64,
            budget: r.get::<_, Option<i64>>(24).map(|v| v as u64),
            expire_at: r.get::<_, Option<i64>>(25).map(|v| v as u64),
            side_enum: crate::mapper::side_from_name(side).expect("checked"),
        });
    }
    let balances = client
        .query(
            "SELECT user_id, currency_id, available, locked, updated_seq FROM balances",
            &[],
        )?
        .iter()
        .map(|r| {
            (
                (r.get::<_, i64>(0) as u32, r.get::<_, i16>(1) as u16),
                BalanceRow {
                    available: r.get(2),
                    locked: r.get(3),
                    updated_seq: r.get::<_, i64>(4) as u64,
                },
            )
        })
        .collect();
    let mut pending = Vec::new();
    for r in client.query(
        "SELECT withdrawal_id, user_id, currency_id, amount, approvals, requested_seq,
                requested_ts
           FROM withdrawals WHERE status = 'PENDING'",
        &[],
    )? {
        pending.push(WithdrawalRow {
            withdrawal_id: r.get::<_, i64>(0) as u64,
            user: r.get::<_, i64>(1) as u32,
            currency: r.get::<_, i16>(2) as u16,
            amount: r.get::<_, i64>(3) as u64,
            status: "PENDING",
            approvals: r.get::<_, i16>(4) as u8,
            rejected_by: None,
            requested_seq: r.get::<_, i64>(5) as u64,
            requested_ts: r.get::<_, i64>(6) as u64,
            finished_seq: None,
            finished_ts: None,
        });
    }
    let accounts = client
        .query("SELECT user_id FROM accounts", &[])?
        .iter()
        .map(|r| r.get::<_, i64>(0) as u32)
        .collect();
    Ok(Resumed {
        live,
        balances,
        pending,
        accounts,
    })
}

/// What [`write_batch`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The batch's rows and its last sequence were committed.
    Committed,
    /// The projection state already stood at the batch's last sequence: an earlier attempt
    /// committed it and the acknowledgement was lost. Nothing was written.
    AlreadyThere,
}

/// Hooks for tests of crash handling: hold the transaction open before committing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Sleep this long inside each batch's transaction, after its rows and before the commit,
    /// announcing it on stderr.
    pub hold_batch: Option<Duration>,
}

/// Writes `batch` and moves the projection state to its last sequence, in one transaction.
/// The state row is locked first and must stand right before the batch (or at its end: then
/// the batch is already there).
pub fn write_batch(
    conns: &mut Conns,
    batch: &Batch,
    faults: Faults,
) -> Result<Written, ProjectionError> {
    let Conns { main, ledger, .. } = conns;
    let mut tx = main.transaction()?;
    let (last, _) = {
        let row = tx.query_one(
            "SELECT last_seq, last_ts FROM projection_state WHERE id = 1 FOR UPDATE",
            &[],
        )?;
        (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1))
    };
    if last == batch.last_seq {
        return Ok(Written::AlreadyThere);
    }
    if last + 1 != batch.first_seq && !(last == 0 && batch.first_seq > 0 && is_start(&mut tx)?) {
        return Err(ProjectionError::StateMoved(format!(
            "the projection state stands at sequence {last}, but this batch starts at {}: \
             another projector wrote to this database while this one was disconnected, or it \
             was changed by hand",
            batch.first_seq
        )));
    }
    // The ledger on its own connection, at the same time as the other tables: its transaction
    // commits first, then the main one (with the sequence) — or, if anything failed, neither
    // is committed here.
    std::thread::scope(|scope| {
        let ledger_rows = scope.spawn(|| write_ledger(ledger, batch));
        let main_rows = copy_rows(&mut tx, batch);
        let ledger_rows = ledger_rows.join().unwrap_or_else(|_| {
            Err(ProjectionError::Data(
                "the ledger writer panicked".to_string(),
            ))
        });
        main_rows.and(ledger_rows)
    })?;
    if let Some(hold) = faults.hold_batch {
        eprintln!(
            "ringbook project: holding batch {}..={} open (fault injection)",
            batch.first_seq, batch.last_seq
        );
        std::thread::sleep(hold);
    }
    tx.execute(
        "UPDATE projection_state SET last_seq = $1, last_ts = $2, commands = commands + $3,
                last_digest = $4, updated_at = now() WHERE id = 1",
        &[
            &big(batch.last_seq)?,
            &big(batch.last_ts)?,
            &big(batch.commands)?,
            &(batch.last_digest as i64),
        ],
    )?;
    tx.commit()?;
    Ok(Written::Committed)
}

/// A projection at sequence 0 (nothing yet) may start at the journal's first sequence, whatever
/// it is; `true` when nothing has been projected at all.
fn is_start(tx: &mut Transaction<'_>) -> Result<bool, ProjectionError> {
    let commands: i64 = tx
        .query_one("SELECT commands FROM projection_state WHERE id = 1", &[])?
        .get(0);
    Ok(commands == 0)
}

/// The batch's ledger entries in a transaction of their own on `client`, committed on return.
/// Entries from an earlier attempt at this batch that committed (the main transaction then
/// failed) are replaced.
fn write_ledger(client: &mut Client, batch: &Batch) -> Result<(), ProjectionError> {
    let mut tx = client.transaction()?;
    tx.execute(
        "DELETE FROM ledger WHERE seq >= $1",
        &[&big(batch.first_seq)?],
    )?;
    if !batch.ledger.is_empty() {
        let mut w = Copy::start(
            &mut tx,
            "COPY ledger (seq, entry, ts, kind, currency_id, from_account, from_user_id,
                          to_account, to_user_id, amount, symbol_id, order_id, to_order_id,
                          trade_id, withdrawal_id) FROM STDIN BINARY",
            15,
        )?;
        for l in &batch.ledger {
            w.row()?
                .i64(big(l.seq)?)
                .i32(l.entry as i32)
                .i64(big(l.ts)?)
                .text(l.kind)
                .i16(l.currency as i16)
                .text(l.from_account)
                .opt_i64(l.from_user.map(i64::from))
                .text(l.to_account)
                .opt_i64(l.to_user.map(i64::from))
                .i64(l.amount)
                .opt_i16(l.symbol.map(|s| s as i16))
                .opt_i64(opt_big(l.order_id)?)
                .opt_i64(opt_big(l.to_order_id)?)
                .opt_i64(opt_big(l.trade_id)?)
                .opt_i64(opt_big(l.withdrawal_id)?);
        }
        w.finish()?;
    }
    tx.commit()?;
    Ok(())
}

fn copy_rows(tx: &mut Transaction<'_>, batch: &Batch) -> Result<(), ProjectionError> {
    if !batch.accounts.is_empty() {
        let mut w = Copy::start(
            tx,
            "COPY accounts (user_id, opened_seq, opened_ts) FROM STDIN BINARY",
            3,
        )?;
        for a in &batch.accounts {
            w.row()?
                .i64(i64::from(a.user))
                .i64(big(a.opened_seq)?)
                .i64(big(a.opened_ts)?);
        }
        w.finish()?;
    }
    if !batch.trades.is_empty() {
        let mut w = Copy::start(
            tx,
            "COPY trades (symbol_id, trade_id, seq, ts, price, qty, notional, aggressor_side,
                          maker_order_id, maker_user_id, maker_fee, taker_order_id,
                          taker_user_id, taker_fee) FROM STDIN BINARY",
            14,
        )?;
        for r in &batch.trades {
            let t = &r.trade;
            w.row()?
                .i16(t.symbol.0 as i16)
                .i64(big(t.trade_id.0)?)
                .i64(big(r.seq)?)
                .i64(big(t.ts)?)
                .i64(t.price.0)
                .i64(big(t.qty.0)?)
                .i64(big(r.notional)?)
                .text(t.taker_side.name())
                .i64(big(t.maker.order_id.0)?)
                .i64(i64::from(t.maker.user.0))
                .i64(big(t.maker.fee)?)
                .i64(big(t.taker.order_id.0)?)
                .i64(i64::from(t.taker.user.0))
                .i64(big(t.taker.fee)?);
        }
        w.finish()?;
    }
    if !batch.approvals.is_empty() {
        let mut w = Copy::start(
            tx,
            "COPY withdrawal_approvals (withdrawal_id, operator_id, approvals, seq, ts)
             FROM STDIN BINARY",
            5,
        )?;
        for a in &batch.approvals {
            w.row()?
                .i64(big(a.withdrawal_id)?)
                .i64(i64::from(a.operator))
                .i16(i16::from(a.approvals))
                .i64(big(a.seq)?)
                .i64(big(a.ts)?);
        }
        w.finish()?;
    }
    if !batch.orders.is_empty() {
        // Orders placed in this batch cannot be in the table yet (it stands right before the
        // batch): straight in. Orders placed earlier replace their stored version.
        let (new, old): (Vec<&OrderRow>, Vec<&OrderRow>) = batch
            .orders
            .values()
            .partition(|o| o.seq >= batch.first_seq);
        if !new.is_empty() {
            copy_orders(tx, "orders", &new)?;
        }
        if !old.is_empty() {
            tx.batch_execute(
                "CREATE TEMP TABLE IF NOT EXISTS stage_orders
                     (LIKE orders INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
            )?;
            copy_orders(tx, "stage_orders", &old)?;
            let updates = ORDER_COLUMNS
                .split(',')
                .map(str::trim)
                .filter(|c| *c != "seq")
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            tx.batch_execute(&format!(
                "INSERT INTO orders ({ORDER_COLUMNS}) SELECT {ORDER_COLUMNS} FROM stage_orders
                 ON CONFLICT (seq) DO UPDATE SET {updates}"
            ))?;
        }
    }
    if !batch.balances.is_empty() {
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_balances
                 (LIKE balances) ON COMMIT DELETE ROWS",
        )?;
        let mut w = Copy::start(
            tx,
            "COPY stage_balances (user_id, currency_id, available, locked, updated_seq)
             FROM STDIN BINARY",
            5,
        )?;
        for (&(user, currency), b) in &batch.balances {
            w.row()?
                .i64(i64::from(user))
                .i16(currency as i16)
                .i64(b.available)
                .i64(b.locked)
                .i64(big(b.updated_seq)?);
        }
        w.finish()?;
        tx.batch_execute(
            "INSERT INTO balances SELECT * FROM stage_balances
             ON CONFLICT (user_id, currency_id) DO UPDATE SET available = EXCLUDED.available,
                 locked = EXCLUDED.locked, updated_seq = EXCLUDED.updated_seq",
        )?;
    }
    if !batch.withdrawals.is_empty() {
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_withdrawals
                 (LIKE withdrawals) ON COMMIT DELETE ROWS",
        )?;
        let mut w = Copy::start(tx, "COPY stage_withdrawals FROM STDIN BINARY", 11)?;
        for r in batch.withdrawals.values() {
            w.row()?
                .i64(big(r.withdrawal_id)?)
                .i64(i64::from(r.user))
                .i16(r.currency as i16)
                .i64(big(r.amount)?)
                .text(r.status)
                .i16(i16::from(r.approvals))
                .opt_i64(r.rejected_by.map(i64::from))
                .i64(big(r.requested_seq)?)
                .i64(big(r.requested_ts)?)
                .opt_i64(opt_big(r.finished_seq)?)
                .opt_i64(opt_big(r.finished_ts)?);
        }
        w.finish()?;
        tx.batch_execute(
            "INSERT INTO withdrawals SELECT * FROM stage_withdrawals
             ON CONFLICT (withdrawal_id) DO UPDATE SET status = EXCLUDED.status,
                 approvals = EXCLUDED.approvals, rejected_by = EXCLUDED.rejected_by,
                 finished_seq = EXCLUDED.finished_seq, finished_ts = EXCLUDED.finished_ts",
        )?;
    }
    if !batch.candles.is_empty() {
        tx.batch_execute(
            "CREATE TEMP TABLE IF NOT EXISTS stage_candles
                 (LIKE candles) ON COMMIT DELETE ROWS",
        )?;
        let mut w = Copy::start(
            tx,
            "COPY stage_candles (symbol_id, interval, open_time, open, high, low, close, volume,
                                 quote_volume, trades, first_trade_id, last_trade_id)
             FROM STDIN BINARY",
            12,
        )?;
        for (&(symbol, interval, open_time), c) in &batch.candles {
            let name = Interval::from_code(interval).map_or("?", Interval::name);
            w.row()?
                .i16(symbol as i16)
                .text(name)
                .i64(big(open_time)?)
                .i64(c.open)
                .i64(c.high)
                .i64(c.low)
                .i64(c.close)
                .i64(big(c.volume)?)
                .i64(big(c.quote_volume)?)
                .i64(big(c.trades)?)
                .i64(big(c.first_trade_id)?)
                .i64(big(c.last_trade_id)?);
        }
        w.finish()?;
        tx.batch_execute(
            "INSERT INTO candles SELECT * FROM stage_candles
             ON CONFLICT (symbol_id, interval, open_time) DO UPDATE SET
                 high = GREATEST(candles.high, EXCLUDED.high),
                 low = LEAST(candles.low, EXCLUDED.low),
                 close = EXCLUDED.close,
                 volume = candles.volume + EXCLUDED.volume,
                 quote_volume = candles.quote_volume + EXCLUDED.quote_volume,
                 trades = candles.trades + EXCLUDED.trades,
                 last_trade_id = EXCLUDED.last_trade_id",
        )?;
    }
    Ok(())
}

/// Binary COPY of order rows into `table` (`orders` or its staging table).
fn copy_orders(
    tx: &mut Transaction<'_>,
    table: &str,
    orders: &[&OrderRow],
) -> Result<(), ProjectionError> {
    let mut w = Copy::start(
        tx,
        &format!("COPY {table} ({ORDER_COLUMNS}) FROM STDIN BINARY"),
        28,
    )?;
    for o in orders {
        w.row()?
            .i64(big(o.seq)?)
            .opt_i64(opt_big(o.order_id)?)
            .i64(i64::from(o.user))
            .i16(o.symbol as i16)
            .numeric_u64(o.client_order_id)
            .text(o.side)
            .text(o.order_type)
            .text(o.tif)
            .i64(o.price)
            .opt_i64(o.stop_price)
            .i64(big(o.qty)?)
            .i64(big(o.display_qty)?)
            .bool(o.post_only)
            .text(o.stp)
            .text(o.status)
            .i64(big(o.leaves_qty)?)
            .i64(big(o.filled_qty)?)
            .i64(big(o.filled_notional)?)
            .i64(big(o.fees)?)
            .opt_i32(o.reject_code.map(i32::from))
            .opt_text(o.reject_name)
            .opt_text(o.cancel_reason)
            .opt_i64(opt_big(o.triggered_ts)?)
            .i64(big(o.created_ts)?)
            .i64(big(o.updated_ts)?)
            .i64(big(o.updated_seq)?)
            .opt_i64(opt_big(o.budget)?)
            .opt_i64(opt_big(o.expire_at)?);
    }
    w.finish()?;
    Ok(())
}

const ORDER_COLUMNS: &str = "seq, order_id, user_id, symbol_id, client_order_id, side, \
     order_type, tif, price, stop_price, qty, display_qty, post_only, stp, status, leaves_qty, \
     filled_qty, filled_notional, fees, reject_code, reject_name, cancel_reason, triggered_ts, \
     created_ts, updated_ts, updated_seq, budget, expire_at";

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of its own on the test server (`RINGBOOK_TEST_POSTGRES`, set by
    /// tools/ci/test.sh), dropped at the end.
    struct Db {
        admin: String,
        name: String,
        url: String,
    }

    impl Db {
        fn new(tag: &str) -> Db {
            let admin = std::env::var("RINGBOOK_TEST_POSTGRES").expect(
                "RINGBOOK_TEST_POSTGRES is not set: run the tests through tools/ci/test.sh",
            );
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let name = format!("unit_{tag}_{}_{nanos}", std::process::id());
            connect(&admin)
                .unwrap()
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            let url = format!("{base}/{name}");
            Db { admin, name, url }
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            if let Ok(mut c) = connect(&self.admin) {
                let _ = c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }

    /// Every kind of field the projection copies, through PostgreSQL and back: the hand-written
    /// binary COPY (`crate::copy`) encodes what the columns' types decode — NULLs, the integer
    /// extremes, `u64`s as NUMERIC up to `u64::MAX`, non-ASCII text — over more rows than one
    /// chunk holds.
    #[test]
    fn binary_copy_round_trips_every_field_kind() {
        let db = Db::new("copy");
        let mut c = connect(&db.url).unwrap();
        c.batch_execute(
            "CREATE TABLE t (k INT8 PRIMARY KEY, a INT2, b INT4, n NUMERIC(20, 0), f BOOL,
                             s TEXT, o8 INT8, o2 INT2, o4 INT4, ot TEXT)",
        )
        .unwrap();
        let numerics = [
            0,
            1,
            9_999,
            10_000,
            12_345,
            100_000_000,
            100_000_001,
            u64::MAX,
        ];
        type Row = (
            i64,
            i16,
            i32,
            u64,
            bool,
            String,
            Option<i64>,
            Option<i16>,
            Option<i32>,
            Option<String>,
        );
        let expected: Vec<Row> = (0..20_000i64)
            .map(|k| {
                let some = k % 2 == 1;
                let o8 = match k {
                    1 => i64::MIN,
                    3 => i64::MAX,
                    _ => k * k,
                };
                (
                    k,
                    (k % 65_536 - 32_768) as i16,
                    [i32::MIN, i32::MAX, -7 * k as i32][k as usize % 3],
                    numerics[k as usize % numerics.len()].wrapping_add(k as u64 / 8 * 100_000_000),
                    k % 3 == 0,
                    format!("é-{k}"),
                    some.then_some(o8),
                    some.then_some(-(k as i16)),
                    some.then_some(k as i32),
                    some.then(|| format!("x{k}")),
                )
            })
            .collect();
        let mut w = Copy::start(&mut c, "COPY t FROM STDIN BINARY", 10).unwrap();
        for r in &expected {
            w.row()
                .unwrap()
                .i64(r.0)
                .i16(r.1)
                .i32(r.2)
                .numeric_u64(r.3)
                .bool(r.4)
                .text(&r.5)
                .opt_i64(r.6)
                .opt_i16(r.7)
                .opt_i32(r.8)
                .opt_text(r.9.as_deref());
        }
        assert_eq!(w.finish().unwrap(), expected.len() as u64);
        let got: Vec<Row> = c
            .query(
                "SELECT k, a, b, n::text, f, s, o8, o2, o4, ot FROM t ORDER BY k",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| {
                let n: String = r.get(3);
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    n.parse().unwrap(),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                    r.get(8),
                    r.get(9),
                )
            })
            .collect();
        assert_eq!(got, expected);
    }

    /// A reconnect finds the projector locks still held by its own old connections' server
    /// processes (a half-open connection the server has not seen die: simulated by leaking a
    /// pair, so its sessions stay): it ends them and connects; locks held by anyone else stay
    /// a refusal.
    #[test]
    fn a_reconnect_ends_its_own_stale_lock_holders_and_no_one_elses() {
        let db = Db::new("stale");
        let leaked = Conns::connect(&db.url).unwrap();
        let backends = leaked.backends.clone();
        std::mem::forget(leaked);
        // Someone else's locks (not among the processes named as its own): refused, and
        // left alone. The same pids with another start time are other processes (a pid reused).
        let reused: Vec<String> = backends
            .iter()
            .map(|b| format!("{}@19700101000000000000", b.split('@').next().unwrap()))
            .collect();
        for others in [vec!["0@0".to_string()], reused] {
            let e = Conns::reconnect(&others, &db.url).unwrap_err();
            assert!(matches!(e, ProjectionError::Busy(_)), "{e}");
        }
        // Its own: ended, and the new pair holds both locks.
        let mut fresh = Conns::reconnect(&backends, &db.url).unwrap();
        assert_ne!(fresh.backends, backends);
        let pids: Vec<i32> = fresh
            .backends
            .iter()
            .map(|b| b.split('@').next().unwrap().parse().unwrap())
            .collect();
        let held: i64 = fresh
            .main
            .query_one(
                "SELECT count(*) FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.pid = ANY($1)
                    AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY($2)",
                &[&pids, &&PROJECTOR_LOCKS[..]],
            )
            .unwrap()
            .get(0);
        assert_eq!(held, 2);
        // A second projector now: refused while the fresh pair lives.
        let e = Conns::connect(&db.url).unwrap_err();
        assert!(matches!(e, ProjectionError::Busy(_)), "{e}");
    }

    /// Two login roles of the test server, dropped at the end (after their sessions).
    struct Roles {
        admin: String,
        names: [String; 2],
    }

    impl Drop for Roles {
        fn drop(&mut self) {
            if let Ok(mut c) = connect(&self.admin) {
                for r in &self.names {
                    let _ = c.batch_execute(&format!("DROP ROLE IF EXISTS {r}"));
                }
            }
        }
    }

    /// A projector running as an unprivileged role cannot see when another role's session
    /// started (PostgreSQL shows another role's `backend_start` as NULL), so it cannot tell
    /// that session from one of its own old ones: a projector lock held there is someone
    /// else's — refused and waited for, never ended — even when the projector names that very
    /// process among its own (what a pid reused by another role's session looks like).
    #[test]
    fn a_lock_held_by_another_roles_hidden_session_is_someone_elses() {
        let db = Db::new("roles");
        let roles = Roles {
            admin: db.admin.clone(),
            names: [format!("{}_p", db.name), format!("{}_o", db.name)],
        };
        let mut admin = connect(&db.url).unwrap();
        for r in &roles.names {
            admin
                .batch_execute(&format!("CREATE ROLE {r} LOGIN"))
                .unwrap();
        }
        let url_as = |role: &str| {
            let (scheme, rest) = db.url.split_once("://").unwrap();
            let (_, host_and_db) = rest.split_once('@').unwrap();
            format!("{scheme}://{role}@{host_and_db}")
        };
        let (projector, other) = (url_as(&roles.names[0]), url_as(&roles.names[1]));
        {
            let mut holder = connect(&other).unwrap();
            let pid: i32 = holder
                .query_one(
                    "SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock($1)) l",
                    &[&PROJECTOR_LOCKS[0]],
                )
                .unwrap()
                .get(0);
            let identity = format!("SELECT {BACKEND_ID} FROM pg_stat_activity a WHERE a.pid = $1");
            // The holder as a superuser sees it, and as the projector's role sees it: hidden.
            let real: String = admin.query_one(&identity, &[&pid]).unwrap().get(0);
            let seen: Option<String> = connect(&projector)
                .unwrap()
                .query_one(&identity, &[&pid])
                .unwrap()
                .get(0);
            assert_eq!(
                seen, None,
                "the test server shows another role's start time"
            );
            for own in [vec![real.clone()], vec!["0@0".to_string()]] {
                let e = Conns::reconnect(&own, &projector).unwrap_err();
                assert!(matches!(e, ProjectionError::Busy(_)), "{e}");
                assert!(e.to_string().contains(&format!("backend {pid}")), "{e}");
            }
            // Not ended: the holder's session still answers and still holds the lock.
            let still: bool = holder
                .query_one(
                    "SELECT count(*) = 1 FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.granted AND l.pid = pg_backend_pid()",
                    &[],
                )
                .unwrap()
                .get(0);
            assert!(still);
        }
        // Once that session is gone, the projector's role takes both locks.
        let conns = Conns::connect(&projector).unwrap();
        drop(conns);
        drop(admin);
        drop(roles);
    }
}
