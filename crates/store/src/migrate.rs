//! Schema migrations, embedded in the binary and applied on start, one transaction each.
//! Migrations are append-only: a released file is never edited.

use sqlx::{AnyConnection, Connection, Executor};

use crate::sql::Dialect;

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "state_time_index",
        sqlite: include_str!("../migrations/sqlite/0002_state_time_index.sql"),
        postgres: include_str!("../migrations/postgres/0002_state_time_index.sql"),
    },
];

/// Apply every migration that is not yet applied. On PostgreSQL an advisory lock serializes
/// concurrent starts of several server processes.
pub async fn run(conn: &mut AnyConnection, dialect: Dialect) -> Result<(), sqlx::Error> {
    if dialect == Dialect::Postgres {
        conn.execute("SELECT pg_advisory_lock(727274)").await?;
    }
    let result = apply(conn, dialect).await;
    if dialect == Dialect::Postgres {
        conn.execute("SELECT pg_advisory_unlock(727274)").await?;
    }
    result
}

async fn apply(conn: &mut AnyConnection, dialect: Dialect) -> Result<(), sqlx::Error> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .await?;
    for migration in MIGRATIONS {
        let applied: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(&mut *conn)
                .await?;
        if applied.is_some() {
            continue;
        }
        let mut tx = conn.begin().await?;
        let script = match dialect {
            Dialect::Sqlite => migration.sqlite,
            Dialect::Postgres => migration.postgres,
        };
        sqlx::raw_sql(script).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied schema migration"
        );
    }
    Ok(())
}
