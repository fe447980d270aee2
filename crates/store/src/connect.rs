//! Connecting: [`StoreOptions`], opening either database (creating a missing PostgreSQL database,
//! migrating the schema, loading the paging secret), the read connections of each, statement
//! timeouts, and [`SqlStore::read`], which runs a read on a connection.
//!
//! How work reaches the database:
//! - SQLite: reads run on the calling tokio worker thread, each on a pooled read connection (WAL
//!   readers never wait for the writer); every write goes to one writer thread that gathers
//!   concurrent writes into one transaction (group commit, `crate::writer`).
//! - PostgreSQL: a pool of tokio-postgres connections (deadpool-postgres); each read runs on a
//!   pooled connection, each write is one transaction on a pooled connection (`crate::writer`).
//!   A URL may name several hosts (libpq's
//!   `postgres://u@h1:p1,h2:p2/db?target_session_attrs=read-write`, [`pg_targets`]): each new
//!   connection goes to the first host, in the order given, that accepts writes, and a
//!   connection whose server went away or stopped accepting writes is closed instead of pooled
//!   again ([`db::PgConn`]), so the pool follows a failover (docs/deployment.md).
//!
//! What `/metrics` reads of the store is here too: the pool's use ([`SqlStore::pool_use`]), the
//! write observer ([`SqlStore::observe_writes`]) and two counts read at scrape time
//! ([`SqlStore::scrape_counts`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::db::{self, run_now, Conn, DbError, PgConn, SqliteConn};
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
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db` (or several hosts,
    /// `postgres://user@h1:p1,h2:p2/db`).
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
        pool: deadpool_postgres::Pool,
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
        use tokio_postgres::config::TargetSessionAttrs;
        let targets = pg_targets(&options.url).map_err(StoreError::Internal)?;
        let mut config: tokio_postgres::Config = targets.url.parse().map_err(|e| {
            StoreError::Internal(format!("the database URL '{}': {e}", targets.url))
        })?;
        // Several hosts, or a server that must accept writes: each connection goes to the first
        // host, in the order given, that will do (as libpq tries them).
        config.target_session_attrs(if targets.read_write {
            TargetSessionAttrs::ReadWrite
        } else {
            TargetSessionAttrs::Any
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.acquire_timeout.min(PROBE_PATIENCE));
        }
        ensure_database(&config, &targets).await?;
        // Every connection of the pool starts with the statement timeout (a startup option: no
        // round trip).
        let timeout = format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis().max(1)
        );
        let mut pooled = config.clone();
        pooled.options(match config.get_options() {
            Some(given) => format!("{given} {timeout}"),
            None => timeout,
        });
        let manager = deadpool_postgres::Manager::from_config(
            pooled,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(options.max_connections.max(1) as usize)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.acquire_timeout))
            .recycle_timeout(Some(options.acquire_timeout))
            .build()
            .map_err(|e| StoreError::Internal(format!("the PostgreSQL pool: {e}")))?;
        let secret = {
            let mut conn = pg_connection(&pool).await?;
            // Migrations may take long on a large database: no statement timeout for them.
            conn.batch("SET statement_timeout = 0")
                .await
                .map_err(store_error)?;
            crate::migrate::run(&mut conn, Dialect::Postgres)
                .await
                .map_err(store_error)?;
            let secret = load_secret(&mut conn).await.map_err(store_error)?;
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
                let status = pool.status();
                PoolUse {
                    in_use: status.size.saturating_sub(status.available) as u64,
                    idle: status.available as u64,
                    max: status.max_size as u64,
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
            Backend::Postgres { pool } => pool.close(),
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
                // A read transaction that failed to end (`read_snapshot`) would pin its snapshot
                // on a pooled connection: close that connection instead.
                if !conn.in_transaction() {
                    readers.give(conn);
                }
                out.map_err(Into::into)
            }
            Backend::Postgres { pool } => {
                let mut conn = pg_connection(pool).await?;
                f(&mut conn).await.map_err(Into::into)
            }
        }
    }
}

impl SqlStore {
    /// [`Self::read`] with every statement of `f` reading one snapshot of the database: a SQLite
    /// read transaction (`BEGIN` … `COMMIT`; WAL readers keep the snapshot of their first read),
    /// a PostgreSQL `REPEATABLE READ, READ ONLY` transaction. For the plans that read the
    /// counters to decide which rows to read (`plans::segments`): `f` gets a connection whose
    /// [`Conn::in_snapshot`] is true. A transaction that fails to end closes its connection.
    pub(crate) async fn read_snapshot<T, E, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        E: Into<StoreError>,
        F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite { .. } => {
                self.read(move |c| {
                    Box::pin(async move {
                        c.batch("BEGIN").await.map_err(store_error)?;
                        let out = f(&mut db::Snapshot(&mut *c)).await.map_err(Into::into);
                        // Read only: COMMIT and ROLLBACK end it alike; a failed read rolls back.
                        let end = c
                            .batch(if out.is_ok() { "COMMIT" } else { "ROLLBACK" })
                            .await
                            .map_err(store_error);
                        let value = out?;
                        end?;
                        Ok::<T, StoreError>(value)
                    })
                })
                .await
            }
            Backend::Postgres { pool } => {
                let mut conn = pg_connection(pool).await?;
                // A transaction dropped before its end (a cancelled request) closes its
                // connection, which ends the transaction on the server (`db::PgConn`).
                conn.begin("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await
                    .map_err(store_error)?;
                let out = f(&mut db::Snapshot(&mut conn)).await.map_err(Into::into);
                let end = if out.is_ok() {
                    conn.commit().await
                } else {
                    conn.rollback().await
                };
                let value = out?;
                end.map_err(store_error)?;
                Ok(value)
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

/// A connection from the PostgreSQL pool.
pub(crate) async fn pg_connection(pool: &deadpool_postgres::Pool) -> Result<PgConn, StoreError> {
    pool.get()
        .await
        .map(PgConn::new)
        .map_err(|e| store_error(db::pg_pool_error(e)))
}

/// Create the database of `config` when it does not exist, through the maintenance database
/// `postgres` on the first host that will do.
async fn ensure_database(
    config: &tokio_postgres::Config,
    targets: &PgTargets,
) -> Result<(), StoreError> {
    let name = config
        .get_dbname()
        .or(config.get_user())
        .ok_or_else(|| StoreError::Internal("the database URL names no database".into()))?
        .to_owned();
    let mut maintenance = config.clone();
    maintenance.dbname("postgres");
    let (client, connection) = maintenance
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            let e = db::pg_error(e);
            if e.kind == db::DbErrorKind::Unavailable {
                StoreError::Unavailable(format!(
                    "no PostgreSQL host of {} {}: {}",
                    targets.hosts.join(", "),
                    if targets.read_write {
                        "accepts writes"
                    } else {
                        "answers"
                    },
                    e.message
                ))
            } else {
                store_error(e)
            }
        })?;
    let connection = tokio::spawn(connection);
    let pg = |e| store_error(db::pg_error(e));
    let exists = || async {
        client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map(|row| row.is_some())
            .map_err(pg)
    };
    if !exists().await? {
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = client.batch_execute(&create).await {
            // Another process may have created it concurrently.
            if !exists().await? {
                return Err(pg(e));
            }
        }
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// Where the PostgreSQL store connects: the configured URL without `target_session_attrs`
/// (tokio-postgres tries its hosts in order), its hosts (for messages), and whether only a
/// server that accepts writes will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgTargets {
    pub(crate) url: String,
    pub(crate) hosts: Vec<String>,
    pub(crate) read_write: bool,
}

/// Read a libpq-style URL with one or several hosts, `postgres://user@h1:5432,h2:5433/db?…`.
/// `target_session_attrs` is read and taken out of the query: `read-write` and `primary`
/// accept only a server that accepts writes (not a standby, not read-only), `any` any server
/// that answers; without it, several hosts mean `read-write` (remediate writes; libpq's
/// default, `any`, could land on a standby) and one host means `any`.
pub(crate) fn pg_targets(url: &str) -> Result<PgTargets, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not a postgres:// URL"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => (tail, ""),
    };
    let mut kept = Vec::new();
    let mut attrs = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("target_session_attrs", value)) => attrs = Some(value),
            _ => kept.push(pair),
        }
    }
    let host_list: Vec<&str> = hosts.split(',').collect();
    if host_list.len() > 1 && host_list.iter().any(|h| h.is_empty()) {
        return Err(format!("the database URL names an empty host: '{url}'"));
    }
    let read_write = match attrs {
        None => host_list.len() > 1,
        Some("any") => false,
        Some("read-write" | "primary") => true,
        Some(other) => {
            return Err(format!(
                "target_session_attrs={other} is not supported: remediate writes, use read-write, primary or any"
            ))
        }
    };
    let query = if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    };
    Ok(PgTargets {
        url: format!("{scheme}://{userinfo}{hosts}{path}{query}"),
        hosts: host_list.iter().map(|h| (*h).to_owned()).collect(),
        read_write,
    })
}

/// How long one host may take to accept a connection (capped by the acquire timeout), unless
/// the URL sets `connect_timeout`.
const PROBE_PATIENCE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::{pg_targets, PgTargets, SqlStore, StoreOptions};
    use crate::db::{Conn, DbError, SqliteConn};
    use std::time::Duration;

    /// A connection of its own to `url`, outside the store.
    async fn connect_elsewhere(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }

    /// Commit a row to `meta` through a connection of its own, outside the store.
    async fn insert_elsewhere(url: &str) {
        const INSERT: &str = "INSERT INTO meta (key, value) VALUES ('snapshot-test', 'x')";
        match url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut conn = SqliteConn::open(path, 1).expect("open");
                conn.execute(INSERT, &[]).await.expect("insert");
            }
            None => {
                let client = connect_elsewhere(url).await;
                client.batch_execute(INSERT).await.expect("insert");
            }
        }
    }

    /// A current-thread runtime, and a name no other run uses (process id and time).
    fn runtime_and_unique() -> (tokio::runtime::Runtime, String) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let unique = format!(
            "{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        (runtime, unique)
    }

    /// A store on `url` (created and migrated) with `max_connections` connections.
    async fn store_on(url: &str, max_connections: u32) -> SqlStore {
        SqlStore::connect(&StoreOptions {
            url: url.to_owned(),
            max_connections,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        })
        .await
        .expect("connect")
    }

    /// The URL of database `name` on the shared PostgreSQL server.
    fn postgres_url(name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{name}")
    }

    /// Drop a test's database on the shared PostgreSQL server.
    async fn drop_database(name: &str) {
        connect_elsewhere(&postgres_url("postgres"))
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .expect("drop");
    }

    /// Is the shared PostgreSQL server there? In CI it must be.
    fn postgres_reachable() -> bool {
        let postgres = "127.0.0.1:5432".parse().expect("address");
        let up = std::net::TcpStream::connect_timeout(&postgres, Duration::from_secs(2)).is_ok();
        if !up {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "no PostgreSQL");
        }
        up
    }

    /// `read_snapshot` (the segment plan's counters and rows): every statement of the read sees
    /// the database as of its first, so a row another connection commits meanwhile shows only in
    /// the next read — on both databases.
    #[test]
    fn a_snapshot_read_does_not_see_a_write_committed_during_it() {
        let (runtime, unique) = runtime_and_unique();
        let dir = std::env::temp_dir().join(format!("remediate-snapshot-{unique}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut urls = vec![format!("sqlite://{}", dir.join("store.db").display())];
        if postgres_reachable() {
            urls.push(postgres_url(&format!("remediate_snapshot_{unique}")));
        } else {
            eprintln!("SKIPPED (PostgreSQL half): PostgreSQL is not reachable");
        }
        runtime.block_on(async {
            for url in urls {
                let store = store_on(&url, 4).await;
                const COUNT: &str = "SELECT CAST(COUNT(*) AS BIGINT) FROM meta";
                let writer = url.clone();
                let (before, during) = store
                    .read_snapshot(move |c| {
                        Box::pin(async move {
                            let before = c.query_one(COUNT, &[]).await?.count(0)?;
                            insert_elsewhere(&writer).await;
                            let during = c.query_one(COUNT, &[]).await?.count(0)?;
                            Ok::<_, DbError>((before, during))
                        })
                    })
                    .await
                    .expect("snapshot read");
                assert_eq!(during, before, "{url}: the read saw a later commit");
                let after = store
                    .read(|c| Box::pin(async move { c.query_one(COUNT, &[]).await?.count(0) }))
                    .await
                    .expect("read");
                assert_eq!(after, before + 1, "{url}: the next read misses the commit");
                store.close().await;
                if let Some(name) = url
                    .rsplit('/')
                    .next()
                    .filter(|_| url.starts_with("postgres"))
                {
                    drop_database(name).await;
                }
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A PostgreSQL read transaction whose request is cancelled mid-statement (the client went
    /// away) must not leave its connection inside the transaction for the next request: that
    /// request would read the old snapshot, and a writer's statements would join a read-only
    /// transaction. The connection is closed instead of pooled (`db::PgConn`), and the next
    /// read, on the pool's only connection, is a fresh session.
    #[test]
    fn a_cancelled_snapshot_read_does_not_leave_its_transaction_to_the_next_request() {
        if !postgres_reachable() {
            eprintln!("SKIPPED: PostgreSQL is not reachable");
            return;
        }
        let (runtime, unique) = runtime_and_unique();
        let name = format!("remediate_cancelled_{unique}");
        runtime.block_on(async {
            let store = store_on(&postgres_url(&name), 1).await;
            const ISOLATION: &str = "SELECT current_setting('transaction_isolation')";
            let cancelled = tokio::time::timeout(
                Duration::from_millis(300),
                store.read_snapshot(|c| {
                    Box::pin(async move {
                        c.query_one(ISOLATION, &[]).await?;
                        c.execute("SELECT pg_sleep(5)", &[]).await?;
                        Ok::<_, DbError>(())
                    })
                }),
            )
            .await;
            assert!(cancelled.is_err(), "the snapshot read was not cancelled");
            for _ in 0..3 {
                let isolation = store
                    .read(|c| Box::pin(async move { c.query_one(ISOLATION, &[]).await?.text(0) }))
                    .await
                    .expect("the next read");
                assert_eq!(isolation.as_deref(), Some("read committed"));
            }
            let written = store
                .read(|c| {
                    Box::pin(async move {
                        c.execute(
                            "INSERT INTO meta (key, value) VALUES ('after-cancel', 'x')",
                            &[],
                        )
                        .await
                    })
                })
                .await
                .expect("a write after the cancelled read");
            assert_eq!(written, 1);
            store.close().await;
            drop_database(&name).await;
        });
    }

    /// PostgreSQL cells of every type the store reads become the four kinds of cells, text with
    /// its stored NUL undone; a cell of another type is an error naming it, unless it is NULL.
    #[test]
    fn postgres_cells_of_each_type_are_read_and_other_types_refused() {
        use crate::db::Cell;
        if !postgres_reachable() {
            eprintln!("SKIPPED: PostgreSQL is not reachable");
            return;
        }
        let (runtime, unique) = runtime_and_unique();
        let name = format!("remediate_cells_{unique}");
        runtime.block_on(async {
            let store = store_on(&postgres_url(&name), 2).await;
            let row = store
                .read(|c| {
                    Box::pin(async move {
                        c.query_one(
                            "SELECT CAST($1 AS BIGINT), CAST(7 AS INTEGER), CAST(-2 AS SMALLINT), \
                             true, CAST('v' AS VARCHAR), $2, CAST($3 AS BYTEA), CAST(NULL AS NUMERIC), \
                             CAST(NULL AS TEXT)",
                            &[
                                crate::db::int(i64::MIN),
                                crate::db::text("a\0b"),
                                crate::translate::Arg::Bytes(Some(vec![0, 255])),
                            ],
                        )
                        .await
                    })
                })
                .await
                .expect("a row of every kind");
            assert_eq!(
                row.0,
                [
                    Cell::Int(i64::MIN),
                    Cell::Int(7),
                    Cell::Int(-2),
                    Cell::Int(1),
                    Cell::Text("v".into()),
                    Cell::Text("a\0b".into()),
                    Cell::Blob(vec![0, 255]),
                    Cell::Null,
                    Cell::Null,
                ]
            );
            let refused = store
                .read(|c| {
                    Box::pin(async move { c.query_one("SELECT CAST(1.5 AS NUMERIC)", &[]).await })
                })
                .await
                .expect_err("a numeric cell");
            assert!(
                refused.to_string().contains("unexpected type numeric"),
                "{refused}"
            );
            store.close().await;
            drop_database(&name).await;
        });
    }

    #[test]
    fn target_session_attrs_is_read_and_taken_out_of_the_url() {
        assert_eq!(
            pg_targets("postgres://postgres@127.0.0.1:5432/db"),
            Ok(PgTargets {
                url: "postgres://postgres@127.0.0.1:5432/db".into(),
                hosts: vec!["127.0.0.1:5432".into()],
                read_write: false
            })
        );
        let several = "postgresql://u:p@h1:5432,h2,[::1]:5434/db?sslmode=disable&target_session_attrs=read-write&application_name=r";
        assert_eq!(
            pg_targets(several),
            Ok(PgTargets {
                url: "postgresql://u:p@h1:5432,h2,[::1]:5434/db?sslmode=disable&application_name=r"
                    .into(),
                hosts: vec!["h1:5432".into(), "h2".into(), "[::1]:5434".into()],
                read_write: true
            })
        );
        // What is left is a URL the driver reads, hosts and ports in order.
        let config: tokio_postgres::Config = pg_targets(several).unwrap().url.parse().unwrap();
        assert_eq!(config.get_hosts().len(), 3);
        assert_eq!(config.get_ports(), [5432, 5432, 5434]);
        // Several hosts default to read-write; one host may ask for it; `any` turns it off.
        assert!(pg_targets("postgres://h1,h2/db").unwrap().read_write);
        assert!(
            pg_targets("postgres://h1/db?target_session_attrs=primary")
                .unwrap()
                .read_write
        );
        let any = pg_targets("postgres://h1,h2?target_session_attrs=any").unwrap();
        assert_eq!(any.url, "postgres://h1,h2");
        assert!(!any.read_write);
        let refused = pg_targets("postgres://h1,h2/db?target_session_attrs=standby").unwrap_err();
        assert!(
            refused.contains("target_session_attrs=standby is not supported"),
            "{refused}"
        );
        assert!(pg_targets("postgres://h1,,h2/db")
            .unwrap_err()
            .contains("empty host"));
    }
}
