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
