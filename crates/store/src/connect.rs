//! Connecting: [`StoreOptions`], opening either database (creating a missing PostgreSQL database,
//! migrating the schema, loading the paging secret), the read connections of each, statement
//! timeouts, and [`SqlStore::read`], which runs a read on a connection.
//!
//! How work reaches the database:
//! - SQLite: reads run on the calling tokio worker thread, each on a pooled read connection (WAL
//!   readers never wait for the writer); every write goes to one writer thread that gathers
//!   concurrent writes into one transaction (group commit, `crate::writer`).
//! - PostgreSQL: a sqlx pool; each read runs on a pooled connection, each write is one
//!   transaction on a pooled connection (`crate::writer`).
//!
//! What `/metrics` reads of the store is here too: the pool's use ([`SqlStore::pool_use`]), the
//! write observer ([`SqlStore::observe_writes`]) and two counts read at scrape time
//! ([`SqlStore::scrape_counts`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::db::{self, run_now, Conn, DbError, SqliteConn};
use crate::error::store_error;
use crate::translate::Arg;
use crate::writer::{self, Job, ObserverSlot, WriteObserver};
use crate::StoreError;

/// Which database a connection speaks, where statements must differ (row locks, schema files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`.
    pub url: String,
    /// Connections for reads (and, on PostgreSQL, writes).
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable.
    pub acquire_timeout: Duration,
    /// Reads running longer are stopped (answered 504): SQLite by a progress handler,
    /// PostgreSQL by `statement_timeout`.
    pub statement_timeout: Duration,
}

/// [`crate::Store`] on SQLite or PostgreSQL.
pub struct SqlStore {
    pub(crate) backend: Backend,
    pub(crate) secret: Vec<u8>,
    /// Told about every write transaction, once set (`/metrics`).
    pub(crate) observer: ObserverSlot,
    /// The test-only fault hook ([`SqlStore::inject_panic_in_next_write_group`]).
    pub(crate) panic_next_group: Arc<std::sync::atomic::AtomicBool>,
}

/// The connections of the store at one moment (`/metrics`). SQLite: the read connections (the
/// writer and the checkpointer have one each, always open, not counted); PostgreSQL: the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections running a read or a write.
    pub in_use: u64,
    /// Open connections waiting for work.
    pub idle: u64,
    /// Most connections (SQLite: most reads at once).
    pub max: u64,
}

/// Counts `/metrics` reads of the database at scrape time, over every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrapeCounts {
    /// Run states stored: the sum of the run-state counters (`crate::counters`), which every
    /// write keeps exact in its own transaction; no run state row is read.
    pub run_states: i64,
    /// Managed devices whose `lastSyncDateTime` is at or after the given instant (a scan of
    /// the managed devices: there is no index on that column).
    pub devices_synced_since: i64,
}

pub(crate) enum Backend {
    Sqlite {
        readers: Arc<SqliteReaders>,
        /// The group-commit writer thread's queue.
        writer: tokio::sync::mpsc::Sender<Job>,
    },
    Postgres {
        pool: PgPool,
    },
}

/// SQLite read connections, opened on demand up to the configured number.
pub(crate) struct SqliteReaders {
    path: String,
    idle: Mutex<Vec<SqliteConn>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Most reads at once (the permits' number).
    concurrent: usize,
    acquire_timeout: Duration,
    statement_timeout: Duration,
}

impl SqliteReaders {
    fn take(&self) -> Result<SqliteConn, DbError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => SqliteConn::open(&self.path, READER_CACHE_MIB),
        }
    }

    fn give(&self, conn: SqliteConn) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// Page caches: the writer's holds the indexes every insert walks; readers share the OS cache.
const WRITER_CACHE_MIB: u32 = 32;
const READER_CACHE_MIB: u32 = 8;

/// The file of a `sqlite://` URL (query parameters such as `?mode=rwc` are dropped: the file
/// is always created when missing).
fn sqlite_path(url: &str) -> String {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    rest.split('?').next().unwrap_or(rest).to_owned()
}

impl SqlStore {
    /// Connect, create the PostgreSQL database if it does not exist, and migrate the schema.
    pub async fn connect(options: &StoreOptions) -> Result<SqlStore, StoreError> {
        if options.url.starts_with("sqlite:") {
            Self::connect_sqlite(options).await
        } else if options.url.starts_with("postgres:") || options.url.starts_with("postgresql:") {
            Self::connect_postgres(options).await
        } else {
            Err(StoreError::Internal(format!(
                "unsupported database URL '{}': use sqlite://FILE or postgres://USER@HOST/DB",
                options.url
            )))
        }
    }

    async fn connect_sqlite(options: &StoreOptions) -> Result<SqlStore, StoreError> {
        let path = sqlite_path(&options.url);
        let mut conn = SqliteConn::open(&path, WRITER_CACHE_MIB).map_err(store_error)?;
        run_now(crate::migrate::run(&mut conn, Dialect::Sqlite)).map_err(store_error)?;
        // Checkpoints (copying the WAL into the database file) run on their own thread, so the
        // writer never pays for them inside a commit.
        run_now(conn.batch("PRAGMA wal_autocheckpoint = 0")).map_err(store_error)?;
        let checkpointer = SqliteConn::open(&path, 1).map_err(store_error)?;
        // Statistics for the planner, as SQLite recommends for long-lived connections.
        run_now(conn.batch("PRAGMA optimize = 0x10002")).map_err(store_error)?;
        let secret = run_now(load_secret(&mut conn)).map_err(store_error)?;
        let observer = ObserverSlot::default();
        let panic_next_group = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = writer::start_sqlite(
            conn,
            checkpointer,
            observer.clone(),
            panic_next_group.clone(),
        )?;
        // Reads run on the runtime's worker threads (they never wait on I/O, so there is nothing
        // to gain from a hop to another thread); at most all workers but one read at a time, so
        // a slow read never stalls the server.
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let concurrent_reads = (options.max_connections.max(1) as usize)
            .min(workers.saturating_sub(1))
            .max(1);
        let readers = SqliteReaders {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(concurrent_reads)),
            concurrent: concurrent_reads,
            acquire_timeout: options.acquire_timeout,
            statement_timeout: options.statement_timeout,
        };
        Ok(SqlStore {
            backend: Backend::Sqlite {
                readers: Arc::new(readers),
                writer: sender,
            },
            secret,
            observer,
            panic_next_group,
        })
    }

    async fn connect_postgres(options: &StoreOptions) -> Result<SqlStore, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        let pg = |e: sqlx::Error| store_error(db::pg_error(e));
        if !sqlx::Postgres::database_exists(&options.url)
            .await
            .map_err(pg)?
        {
            if let Err(e) = sqlx::Postgres::create_database(&options.url).await {
                // Another process may have created it concurrently.
                if !sqlx::Postgres::database_exists(&options.url)
                    .await
                    .map_err(pg)?
                {
                    return Err(pg(e));
                }
            }
        }
        let statement_timeout = statement_timeout_sql(options.statement_timeout);
        let pool = PgPoolOptions::new()
            .after_connect(move |conn, _meta| {
                let set = statement_timeout.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(conn, set.as_str()).await?;
                    Ok(())
                })
            })
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout)
            .connect(&options.url)
            .await
            .map_err(pg)?;
        let secret = {
            let mut conn = pool.acquire().await.map_err(pg)?;
            // Migrations may take long on a large database: no statement timeout for them.
            conn.batch("SET statement_timeout = 0")
                .await
                .map_err(store_error)?;
            crate::migrate::run(&mut *conn, Dialect::Postgres)
                .await
                .map_err(store_error)?;
            let secret = load_secret(&mut *conn).await.map_err(store_error)?;
            conn.batch(&statement_timeout_sql(options.statement_timeout))
                .await
                .map_err(store_error)?;
            secret
        };
        Ok(SqlStore {
            backend: Backend::Postgres { pool },
            secret,
            observer: ObserverSlot::default(),
            panic_next_group: Arc::default(),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// A test-only fault hook: the SQLite writer's next group of writes panics after running its
    /// writes and before its commit, so tests can prove the panic path (the group rolled back,
    /// each of its writes answered with an error, the writer serving the next group). No effect
    /// on PostgreSQL, whose writes have no shared writer.
    #[doc(hidden)]
    pub fn inject_panic_in_next_write_group(&self) {
        self.panic_next_group
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Tell `observer` about every write transaction from now on (`/metrics`). Only the first
    /// observer is kept; `false` when one was already set.
    pub fn observe_writes(&self, observer: Arc<dyn WriteObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// The connections in use, idle and at most, now (no database round trip).
    pub fn pool_use(&self) -> PoolUse {
        match &self.backend {
            Backend::Sqlite { readers, .. } => {
                let max = readers.concurrent as u64;
                let idle = readers.idle.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
                PoolUse {
                    in_use: max.saturating_sub(readers.permits.available_permits() as u64),
                    idle,
                    max,
                }
            }
            Backend::Postgres { pool } => {
                let idle = pool.num_idle() as u64;
                PoolUse {
                    in_use: u64::from(pool.size()).saturating_sub(idle),
                    idle,
                    max: u64::from(pool.options().get_max_connections()),
                }
            }
        }
    }

    /// The counts `/metrics` reads at scrape time (see [`ScrapeCounts`]), in one read under the
    /// statement timeout.
    pub async fn scrape_counts(
        &self,
        synced_since: remediate_domain::Instant,
    ) -> Result<ScrapeCounts, StoreError> {
        let since = synced_since.ticks();
        self.read(move |c: &mut dyn Conn| {
            Box::pin(async move {
                let run_states = c
                    .query_one(
                        "SELECT CAST(COALESCE(SUM(\"n\"), 0) AS BIGINT) FROM counters \
                         WHERE substr(\"name\", 1, 2) = 's/'",
                        &[],
                    )
                    .await?
                    .count(0)?;
                let devices_synced_since = c
                    .query_one(
                        "SELECT COUNT(*) FROM managed_devices WHERE \"lastSyncDateTime\" >= $1",
                        &[db::int(since)],
                    )
                    .await?
                    .count(0)?;
                Ok::<_, DbError>(ScrapeCounts {
                    run_states,
                    devices_synced_since,
                })
            })
        })
        .await
    }

    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite { readers, .. } => {
                readers
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
            }
            Backend::Postgres { pool } => pool.close().await,
        }
    }

    /// Run the read `f` on a read connection: SQLite on the calling worker thread, PostgreSQL on
    /// the async pool.
    pub(crate) async fn read<T, E, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        E: Into<StoreError>,
        F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite { readers, .. } => {
                let permit = tokio::time::timeout(
                    readers.acquire_timeout,
                    readers.permits.clone().acquire_owned(),
                )
                .await
                .map_err(|_| {
                    StoreError::Unavailable("no SQLite read connection became free in time".into())
                })?
                .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
                // Run on this worker thread: a hop to another thread costs more than most reads
                // (docs/benchmarks.md). The permits keep at least one worker free of reads.
                let _permit = permit;
                let mut conn = readers.take().map_err(store_error)?;
                conn.set_deadline(Some(readers.statement_timeout));
                let out = run_now(f(&mut conn));
                readers.give(conn);
                out.map_err(Into::into)
            }
            Backend::Postgres { pool } => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| store_error(db::pg_error(e)))?;
                f(&mut *conn).await.map_err(Into::into)
            }
        }
    }
}

/// PostgreSQL's `statement_timeout` for the pool's connections.
fn statement_timeout_sql(timeout: Duration) -> String {
    format!("SET statement_timeout = {}", timeout.as_millis().max(1))
}

async fn load_secret(c: &mut dyn Conn) -> Result<Vec<u8>, DbError> {
    let mut fresh = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
        .map_err(|_| DbError::other("no system randomness"))?;
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('paging_secret', $1) ON CONFLICT (key) DO NOTHING",
        &[Arg::Text(Some(hex))],
    )
    .await?;
    let value = c
        .query_one("SELECT value FROM meta WHERE key = 'paging_secret'", &[])
        .await?
        .text(0)?
        .ok_or_else(|| DbError::other("the paging secret is missing"))?;
    Ok(value.into_bytes())
}
