//! Reconciliation: the tables against the engine state rebuilt from the journal.

use std::collections::{BTreeMap, BTreeSet};

use ringbook_engine::pipeline::replay_journal;
use ringbook_engine::{CurrencyId, Engine, RiskMode, Seq, SymbolId};

use crate::{db, Options, ProjectionError};

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    /// The projected sequence the comparison was made at (0: nothing projected).
    pub projected_seq: u64,
    /// The journal's last record (the projection's lag is the difference).
    pub journal_last_seq: Option<u64>,
    /// Every difference, one line each; empty means the tables agree with the engine.
    pub differences: Vec<String>,
    /// What was compared, one line each (counts), for the report.
    pub checked: Vec<String>,
}

/// Compares PostgreSQL with the engine state the journal describes at the projected sequence:
/// accounts, every balance (available and locked), every open order, fees and supply per
/// currency, pending withdrawals, and every balance against the sum of its ledger legs (an
/// entry balances by construction: one amount from one account to another). Reads only; writes
/// nothing anywhere.
///
/// Every table is read in one `REPEATABLE READ READ ONLY` transaction: one snapshot, so a
/// projector committing batches meanwhile (`serve --postgres` under load) cannot make the
/// tables disagree with each other or with `last_seq` (separate statements reported false
/// differences against a live projection: a red-team finding).
///
/// A panic inside (a column retyped by hand) is returned as an error, as [`crate::run`]'s is.
pub fn verify(opts: &Options) -> Result<Verification, ProjectionError> {
    crate::caught("verify", || verify_inner(opts))
}

/// The journal's last committed record, read with the Tailer from `from` (a live journal's
/// end is read as a follower reads it: the Reader, which expects a journal at rest, took the
/// frame being written for damage).
fn journal_end(opts: &Options, from: u64) -> Result<Option<u64>, ProjectionError> {
    let mut tailer = ringbook_journal::Tailer::open(&opts.journal, from)?;
    let mut last = None;
    while let Some(r) = tailer.poll()? {
        last = Some(r.sequence);
    }
    Ok(last)
}

fn verify_inner(opts: &Options) -> Result<Verification, ProjectionError> {
    let mut conn = db::connect(&opts.postgres)?;
    let mut client = conn
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let (seq, _) = db::projected(&mut client).map_err(|e| {
        ProjectionError::Usage(format!(
            "no projection in this database ({e}): run `ringbook project` first"
        ))
    })?;
    let mut v = Verification {
        projected_seq: seq,
        ..Verification::default()
    };
    // The journal's end, for the report (the projection's lag): a journal that does not
    // read to its end says why instead of "none".
    match journal_end(opts, seq) {
        Ok(end) => v.journal_last_seq = end,
        Err(e) => v.checked.push(format!(
            "the journal's end is unknown: it does not read to its end ({e})"
        )),
    }
    // A projection of another journal: one difference says so; comparing would list
    // everything else.
    match crate::check_journal_digest(opts, seq, db::projected_digest(&mut client)?) {
        Err(ProjectionError::Usage(other)) => {
            v.differences.push(other);
            return Ok(v);
        }
        other => other?,
    }
    let engine = if seq == 0 {
        Engine::with_risk(&opts.config, RiskMode::On)
            .map_err(|e| ProjectionError::Usage(format!("configuration: {e}")))?
    } else {
        replay_journal(
            &opts.config,
            RiskMode::On,
            &opts.journal,
            opts.first_sequence,
            Some(Seq(seq)),
        )?
        .0
    };
    let diff = &mut v.differences;
    let currencies = opts.config.currencies.len();
    let accounts = engine.accounts();

    // Accounts.
    let engine_users: BTreeSet<i64> = accounts.open_users().map(|u| i64::from(u.0)).collect();
    let pg_users: BTreeSet<i64> = client
        .query("SELECT user_id FROM accounts", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for u in engine_users.difference(&pg_users) {
        diff.push(format!(
            "account {u}: open in the engine, missing in PostgreSQL"
        ));
    }
    for u in pg_users.difference(&engine_users) {
        diff.push(format!(
            "account {u}: in PostgreSQL, not open in the engine"
        ));
    }
    v.checked.push(format!("{} accounts", engine_users.len()));

    // Balances.
    let mut engine_bal: BTreeMap<(i64, i16), (i64, i64)> = BTreeMap::new();
    for u in accounts.open_users() {
        for c in 0..currencies {
            let b = accounts.balance(u, CurrencyId(c as u16));
            if b.available != 0 || b.locked != 0 {
                engine_bal.insert(
                    (i64::from(u.0), c as i16),
                    (b.available as i64, b.locked as i64),
                );
            }
        }
    }
    let mut pg_bal: BTreeMap<(i64, i16), (i64, i64)> = BTreeMap::new();
    for r in client.query(
        "SELECT user_id, currency_id, available, locked FROM balances",
        &[],
    )? {
        let (a, l): (i64, i64) = (r.get(2), r.get(3));
        if a != 0 || l != 0 {
            pg_bal.insert((r.get(0), r.get(1)), (a, l));
        }
    }
    let keys: BTreeSet<_> = engine_bal.keys().chain(pg_bal.keys()).copied().collect();
    for k in &keys {
        let e = engine_bal.get(k).copied().unwrap_or_default();
        let p = pg_bal.get(k).copied().unwrap_or_default();
        if e != p {
            diff.push(format!(
                "balance user {} currency {}: engine available {} locked {}, PostgreSQL \
                 available {} locked {}",
                k.0, k.1, e.0, e.1, p.0, p.1
            ));
        }
    }
    v.checked.push(format!("{} non-zero balances", keys.len()));

    // Balances against their ledger legs.
    for r in client.query(
        "WITH l AS (
             SELECT user_id, currency_id,
                    sum(amount) FILTER (WHERE account = 'available') AS available,
                    sum(amount) FILTER (WHERE account = 'locked') AS locked
               FROM ledger_legs WHERE user_id IS NOT NULL GROUP BY user_id, currency_id)
         SELECT coalesce(b.user_id, l.user_id), coalesce(b.currency_id, l.currency_id),
                coalesce(b.available, 0)::text, coalesce(b.locked, 0)::text,
                coalesce(l.available, 0)::text, coalesce(l.locked, 0)::text
           FROM balances b FULL JOIN l USING (user_id, currency_id)
          WHERE coalesce(b.available, 0) <> coalesce(l.available, 0)
             OR coalesce(b.locked, 0) <> coalesce(l.locked, 0)",
        &[],
    )? {
        diff.push(format!(
            "balance user {} currency {}: the balances table says available {} locked {}, its \
             ledger legs sum to available {} locked {}",
            r.get::<_, i64>(0),
            r.get::<_, i16>(1),
            r.get::<_, &str>(2),
            r.get::<_, &str>(3),
            r.get::<_, &str>(4),
            r.get::<_, &str>(5)
        ));
    }

    // Fees and supply per currency.
    let mut sums: BTreeMap<(i16, String), i128> = BTreeMap::new();
    for r in client.query(
        "SELECT currency_id, account, sum(amount)::text FROM ledger_legs GROUP BY 1, 2",
        &[],
    )? {
        let s: &str = r.get(2);
        sums.insert(
            (r.get(0), r.get::<_, String>(1)),
            s.parse()
                .map_err(|_| ProjectionError::Data(format!("ledger sum {s:?}")))?,
        );
    }
    for c in 0..currencies {
        let id = CurrencyId(c as u16);
        let get = |a: &str| sums.get(&(c as i16, a.to_string())).copied().unwrap_or(0);
        let fees = get("fees");
        if fees != i128::from(accounts.fees(id)) {
            diff.push(format!(
                "fees currency {c}: engine {}, ledger {fees}",
                accounts.fees(id)
            ));
        }
        let supply = -get("external");
        if supply != i128::from(accounts.supply(id)) {
            diff.push(format!(
                "supply currency {c} (deposits minus withdrawals): engine {}, ledger {supply}",
                accounts.supply(id)
            ));
        }
        let held = get("available") + get("locked") + fees;
        if held != supply {
            diff.push(format!(
                "currency {c}: user and fee accounts hold {held}, deposits minus withdrawals \
                 are {supply}"
            ));
        }
    }
    v.checked.push(format!(
        "fees and supply of {currencies} currencies, {} ledger accounts",
        sums.len()
    ));

    // Open orders.
    type OrderKey = (i64, i16, String, String, i64, Option<i64>, i64, i64);
    let mut engine_orders: BTreeMap<i64, OrderKey> = BTreeMap::new();
    for s in 0..opts.config.symbols.len() {
        engine.for_each_order(SymbolId(s as u16), |_, o| {
            let stop = o.order_type.is_stop().then_some(o.stop_price.0);
            engine_orders.insert(
                o.order_id.0 as i64,
                (
                    i64::from(o.user.0),
                    o.symbol.0 as i16,
                    o.side.name().to_string(),
                    o.order_type.name().to_string(),
                    o.price.0,
                    stop,
                    o.leaves_qty.0 as i64,
                    o.filled_qty.0 as i64,
                ),
            );
        });
    }
    let mut pg_orders: BTreeMap<i64, OrderKey> = BTreeMap::new();
    for r in client.query(
        "SELECT order_id, user_id, symbol_id, side, order_type, price, stop_price, leaves_qty,
                filled_qty
           FROM orders WHERE status IN ('NEW', 'PARTIALLY_FILLED')",
        &[],
    )? {
        let id: Option<i64> = r.get(0);
        let Some(id) = id else {
            diff.push("a live order without an order id in PostgreSQL".into());
            continue;
        };
        pg_orders.insert(
            id,
            (
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
            ),
        );
    }
    let ids: BTreeSet<i64> = engine_orders
        .keys()
        .chain(pg_orders.keys())
        .copied()
        .collect();
    for id in &ids {
        match (engine_orders.get(id), pg_orders.get(id)) {
            (Some(e), Some(p)) if e == p => {}
            (Some(e), Some(p)) => diff.push(format!(
                "open order {id}: engine (user, symbol, side, type, price, stop, leaves, filled) \
                 {e:?}, PostgreSQL {p:?}"
            )),
            (Some(e), None) => diff.push(format!(
                "open order {id}: live in the engine {e:?}, not open in PostgreSQL"
            )),
            (None, Some(p)) => diff.push(format!(
                "open order {id}: open in PostgreSQL {p:?}, not live in the engine"
            )),
            (None, None) => {}
        }
    }
    v.checked
        .push(format!("{} open orders", engine_orders.len()));

    // Pending withdrawals.
    let engine_w: BTreeMap<i64, (i64, i16, i64, i16)> = accounts
        .pending_withdrawals()
        .map(|w| {
            (
                w.id.0 as i64,
                (
                    i64::from(w.user.0),
                    w.currency.0 as i16,
                    w.amount as i64,
                    i16::from(w.first_approval.is_some()),
                ),
            )
        })
        .collect();
    let pg_w: BTreeMap<i64, (i64, i16, i64, i16)> = client
        .query(
            "SELECT withdrawal_id, user_id, currency_id, amount, approvals FROM withdrawals
              WHERE status = 'PENDING'",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect();
    if engine_w != pg_w {
        diff.push(format!(
            "pending withdrawals (id: user, currency, amount, approvals): engine {engine_w:?}, \
             PostgreSQL {pg_w:?}"
        ));
    }
    v.checked
        .push(format!("{} pending withdrawals", engine_w.len()));
    Ok(v)
}
