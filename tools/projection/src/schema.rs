//! The schema: embedded, versioned migrations, applied in order at start
//! ([`crate::db::migrate`]). docs/sql/schema.sql is all of them, in order (a test holds it so).

/// One migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its version: 1, 2, 3, … in order, never reused.
    pub version: i32,
    /// What it does, in a word or two.
    pub name: &'static str,
    /// The SQL, run in the migrating transaction.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "budget and expiry",
        sql: include_str!("../migrations/0002_budget_expiry.sql"),
    },
    Migration {
        version: 3,
        name: "journal digest",
        sql: include_str!("../migrations/0003_journal_digest.sql"),
    },
    Migration {
        version: 4,
        name: "ledger leg orders",
        sql: include_str!("../migrations/0004_ledger_leg_orders.sql"),
    },
];

/// The tables the projection owns, in creation order (dropped in reverse by `--rebuild`).
pub const TABLES: &[&str] = &[
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
    "projection_state",
];

/// The secondary (history) indexes of migration 1, exactly as it creates them: what a bulk load
/// (`--once` into an empty projection) drops first and builds once at the end, sorted, instead
/// of maintaining them row by row ([`crate::db::drop_secondary_indexes`],
/// [`crate::db::ensure_secondary_indexes`]). Primary keys and unique constraints stay: the
/// upserts and the ledger's retry delete use them. `(table, statement)`; a test holds every
/// statement verbatim in the migrations.
pub const SECONDARY_INDEXES: &[(&str, &str, &str)] = &[
    (
        "orders",
        "orders_user_history",
        "CREATE INDEX orders_user_history ON orders (user_id, symbol_id, seq)",
    ),
    (
        "orders",
        "orders_live",
        "CREATE INDEX orders_live ON orders (user_id) WHERE status IN ('NEW', 'PARTIALLY_FILLED')",
    ),
    (
        "trades",
        "trades_maker_user",
        "CREATE INDEX trades_maker_user ON trades (maker_user_id, seq)",
    ),
    (
        "trades",
        "trades_taker_user",
        "CREATE INDEX trades_taker_user ON trades (taker_user_id, seq)",
    ),
    (
        "ledger",
        "ledger_from_user",
        "CREATE INDEX ledger_from_user ON ledger (from_user_id, currency_id, seq) WHERE from_user_id IS NOT NULL",
    ),
    (
        "ledger",
        "ledger_to_user",
        "CREATE INDEX ledger_to_user ON ledger (to_user_id, currency_id, seq) WHERE to_user_id IS NOT NULL",
    ),
];

/// The whole schema as docs/sql/schema.sql shows it: every migration in order.
pub fn schema_sql() -> String {
    let mut s = String::from(
        "-- ringbook projection schema: every migration of tools/projection/migrations, in order.\n\
         -- Generated from the embedded migrations; `ringbook project` applies them itself.\n",
    );
    for m in MIGRATIONS {
        s.push_str(&format!("\n-- migration {}: {}\n", m.version, m.name));
        s.push_str(m.sql);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_sql_schema_is_every_migration_in_order() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sql/schema.sql");
        let doc = std::fs::read_to_string(path).expect("docs/sql/schema.sql");
        assert_eq!(
            doc,
            schema_sql(),
            "docs/sql/schema.sql is stale: regenerate it from the migrations"
        );
    }

    #[test]
    fn the_secondary_indexes_are_the_migrations_own() {
        let all = schema_sql();
        for (table, name, sql) in SECONDARY_INDEXES {
            assert!(all.contains(&format!("{sql};")), "{sql}");
            assert!(sql.starts_with(&format!("CREATE INDEX {name} ON {table} (")));
        }
        // And no other secondary index exists that a bulk load would leave alone unknowingly.
        let created = all.matches("CREATE INDEX ").count();
        assert_eq!(created, SECONDARY_INDEXES.len());
    }

    #[test]
    fn versions_are_dense_and_every_table_is_created() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
        }
        let all = schema_sql();
        for t in TABLES {
            assert!(all.contains(&format!("CREATE TABLE {t} (")), "{t}");
        }
    }
}
