//! Schema migrations, embedded in the binary and applied on start, one transaction each.
//! Migrations are append-only: a released file is never edited. `schema_migrations` records each
//! applied migration's version, name and checksum (SHA-256 of its script), and a database another
//! build migrated is refused on start ([`check_recorded`]).

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

impl Migration {
    /// The script this dialect runs.
    fn script(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }

    /// SHA-256 of [`Self::script`], in hex: what `schema_migrations.checksum` records.
    fn checksum(&self, dialect: Dialect) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.script(dialect).as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Refuse a database that another build migrated: one that records a migration this build does
/// not have (a newer remediate migrated it), or one of this build's migrations under another name
/// or with other contents (a draft of it). A database migrated before checksums were recorded
/// gets this build's (its files are the released ones: migrations are never edited).
async fn check_recorded(c: &mut dyn Conn, dialect: Dialect) -> Result<(), DbError> {
    let has_checksum = match dialect {
        Dialect::Sqlite => {
            c.query_one(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM pragma_table_info('schema_migrations') \
                 WHERE name = 'checksum'",
                &[],
            )
            .await?
            .count(0)?
                > 0
        }
        Dialect::Postgres => {
            c.batch("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum TEXT")
                .await?;
            true
        }
    };
    if !has_checksum {
        c.batch("ALTER TABLE schema_migrations ADD COLUMN checksum TEXT")
            .await?;
    }
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let rows = c
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    for row in rows {
        let version = row.count(0)?;
        let name = row.text(1)?.unwrap_or_default();
        let Some(migration) = MIGRATIONS.iter().find(|m| m.version == version) else {
            return Err(DbError::other(format!(
                "the database records schema migration {version} ('{name}'), which this build \
                 does not have (it knows migrations 1 to {known}): a newer remediate migrated it; \
                 run that version (or a later one)"
            )));
        };
        let expected = migration.checksum(dialect);
        let recorded = row.text(2)?;
        let same = name == migration.name && recorded.as_ref().is_none_or(|r| *r == expected);
        if same && recorded.is_none() {
            // Recorded before checksums were: this build's is the released one.
            c.execute(
                "UPDATE schema_migrations SET checksum = $1 WHERE version = $2",
                &[db::text(&expected), db::int(version)],
            )
            .await?;
        }
        if !same {
            return Err(DbError::other(format!(
                "the database records schema migration {version} as '{name}' with other contents \
                 than this build's migration {version} ('{}'): another build of remediate (a draft \
                 of the migration?) migrated it; restore a backup, or start from an empty database",
                migration.name
            )));
        }
    }
    Ok(())
}

async fn apply(c: &mut dyn Conn, dialect: Dialect) -> Result<(), DbError> {
    c.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
    )
    .await?;
    check_recorded(c, dialect).await?;
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
        let script = migration.script(dialect);
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
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[
                    db::int(migration.version),
                    db::text(migration.name),
                    db::text(&migration.checksum(dialect)),
                ],
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
