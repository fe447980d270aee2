//! Schema migrations, embedded in the binary and applied on start, one transaction each.
//! Migrations are append-only: a released file is never edited.

use crate::db::{self, Conn, DbError};

use crate::connect::Dialect;

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
    /// Dialect-neutral statements run after the schema change, in its transaction.
    then: Option<&'static str>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
        then: None,
    },
    Migration {
        version: 2,
        name: "state_time_index",
        sqlite: include_str!("../migrations/sqlite/0002_state_time_index.sql"),
        postgres: include_str!("../migrations/postgres/0002_state_time_index.sql"),
        then: None,
    },
    Migration {
        version: 3,
        name: "counters",
        sqlite: include_str!("../migrations/sqlite/0003_counters.sql"),
        postgres: include_str!("../migrations/postgres/0003_counters.sql"),
        then: Some(crate::counters::FILL),
    },
    Migration {
        version: 4,
        name: "directory",
        sqlite: include_str!("../migrations/sqlite/0004_directory.sql"),
        postgres: include_str!("../migrations/postgres/0004_directory.sql"),
        then: None,
    },
    Migration {
        version: 5,
        name: "agents",
        sqlite: include_str!("../migrations/sqlite/0005_agents.sql"),
        postgres: include_str!("../migrations/postgres/0005_agents.sql"),
        then: None,
    },
    Migration {
        version: 6,
        name: "apps",
        sqlite: include_str!("../migrations/sqlite/0006_apps.sql"),
        postgres: include_str!("../migrations/postgres/0006_apps.sql"),
        then: None,
    },
    Migration {
        version: 7,
        name: "export_jobs",
        sqlite: include_str!("../migrations/sqlite/0007_export_jobs.sql"),
        postgres: include_str!("../migrations/postgres/0007_export_jobs.sql"),
        then: None,
    },
    Migration {
        version: 8,
        name: "sessions",
        sqlite: include_str!("../migrations/sqlite/0008_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0008_sessions.sql"),
        then: None,
    },
    Migration {
        version: 9,
        name: "report_function",
        sqlite: include_str!("../migrations/sqlite/0009_report_function.sql"),
        postgres: include_str!("../migrations/postgres/0009_report_function.sql"),
        then: None,
    },
    Migration {
        version: 10,
        name: "history_days",
        sqlite: include_str!("../migrations/sqlite/0010_history_days.sql"),
        postgres: include_str!("../migrations/postgres/0010_history_days.sql"),
        then: Some(crate::counters::HISTORY_FILL),
    },
    Migration {
        version: 11,
        name: "status_table",
        sqlite: include_str!("../migrations/sqlite/0011_status_table.sql"),
        postgres: include_str!("../migrations/postgres/0011_status_table.sql"),
        then: None,
    },
    Migration {
        version: 12,
        name: "name_search",
        sqlite: include_str!("../migrations/sqlite/0012_name_search.sql"),
        postgres: include_str!("../migrations/postgres/0012_name_search.sql"),
        then: None,
    },
];

/// Apply every migration that is not yet applied. On PostgreSQL an advisory lock serializes
/// concurrent starts of several server processes.
pub async fn run(c: &mut dyn Conn, dialect: Dialect) -> Result<(), DbError> {
    if dialect == Dialect::Postgres {
        c.batch("SELECT pg_advisory_lock(727274)").await?;
    }
    let result = apply(c, dialect).await;
    if dialect == Dialect::Postgres {
        c.batch("SELECT pg_advisory_unlock(727274)").await?;
    }
    result
}

async fn apply(c: &mut dyn Conn, dialect: Dialect) -> Result<(), DbError> {
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .await?;
    for migration in MIGRATIONS {
        let applied = c
            .query_opt(
                "SELECT version FROM schema_migrations WHERE version = $1",
                &[db::int(migration.version)],
            )
            .await?;
        if applied.is_some() {
            continue;
        }
        let script = match dialect {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        };
        c.batch(if dialect == Dialect::Sqlite {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        })
        .await?;
        let applied = async {
            c.batch(script).await?;
            if let Some(then) = migration.then {
                c.batch(then).await?;
            }
            c.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[db::int(migration.version), db::text(migration.name)],
            )
            .await?;
            c.batch("COMMIT").await
        }
        .await;
        if let Err(e) = applied {
            let _ = c.batch("ROLLBACK").await;
            return Err(e);
        }
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied schema migration"
        );
    }
    Ok(())
}
