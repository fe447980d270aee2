//! Connecting: [`StoreOptions`], opening either database (creating a missing PostgreSQL database,
//! migrating the schema, loading the paging secret), the read connections of each, statement
//! timeouts, and [`SqlStore::read`], which runs a read on a connection.
//!
//! How work reaches the database:
//! - SQLite: reads run on the calling tokio worker thread, each on a pooled read connection (WAL
//!   readers never wait for the writer); every write goes to one writer thread that gathers
//!   concurrent writes into one transaction (group commit, `crate::writer`).
//! - PostgreSQL: a sqlx pool; each read runs on a pooled connection, each write is one
//!   transaction on a pooled connection (`crate::writer`). A URL may name several hosts
//!   (libpq's `postgres://u@h1:p1,h2:p2/db?target_session_attrs=read-write`, [`pg_targets`]):
//!   the pool then connects to the host that accepts writes and a watch task follows a
//!   failover ([`watch_hosts`]; docs/deployment.md).
//!
//! What `/metrics` reads of the store is here too: the pool's use ([`SqlStore::pool_use`]), the
//! write observer ([`SqlStore::observe_writes`]) and two counts read at scrape time
//! ([`SqlStore::scrape_counts`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

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
    /// PostgreSQL with several hosts: the task that moves the pool to the host accepting
    /// writes ([`watch_hosts`]); stopped with the store.
    _hosts_watch: Option<HostsWatch>,
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
            _hosts_watch: None,
        })
    }

    async fn connect_postgres(options: &StoreOptions) -> Result<SqlStore, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        let pg = |e: sqlx::Error| store_error(db::pg_error(e));
        let targets = pg_targets(&options.url).map_err(StoreError::Internal)?;
        let hosts: Vec<PgConnectOptions> = targets
            .urls
            .iter()
            .map(|url| url.parse::<PgConnectOptions>())
            .collect::<Result<_, _>>()
            .map_err(pg)?;
        let several = hosts.len() > 1;
        let patience = options.acquire_timeout.min(PROBE_PATIENCE);
        // Several hosts, or a server that must accept writes: the first host that will do, in
        // the order given (as libpq tries them).
        let first = if several || targets.read_write {
            let mut first = None;
            for (i, host) in hosts.iter().enumerate() {
                // The database may not exist yet: ask the maintenance database, as the
                // existence check below does.
                let maintenance = host.clone().database("postgres");
                if try_host(&maintenance, targets.read_write, patience)
                    .await
                    .is_some()
                {
                    first = Some(i);
                    break;
                }
            }
            first.ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "no PostgreSQL host of {} {}",
                    labels(&hosts).join(", "),
                    if targets.read_write {
                        "accepts writes"
                    } else {
                        "answers"
                    }
                ))
            })?
        } else {
            0
        };
        let url = &targets.urls[first];
        if !sqlx::Postgres::database_exists(url).await.map_err(pg)? {
            if let Err(e) = sqlx::Postgres::create_database(url).await {
                // Another process may have created it concurrently.
                if !sqlx::Postgres::database_exists(url).await.map_err(pg)? {
                    return Err(pg(e));
                }
            }
        }
        let statement_timeout = statement_timeout_sql(options.statement_timeout);
        let shared = Arc::new(HostsShared {
            read_write: targets.read_write,
            wake: tokio::sync::Notify::new(),
            switched: Mutex::new(None),
        });
        let on_connect = shared.clone();
        let mut pool_options = PgPoolOptions::new()
            .after_connect(move |conn, _meta| {
                let set = statement_timeout.clone();
                let shared = on_connect.clone();
                Box::pin(async move {
                    if shared.read_write && !accepts_writes(conn).await? {
                        // Not this server: the pool tries again (with the host the watch finds).
                        shared.wake.notify_one();
                        return Err(sqlx::Error::Protocol(
                            "the PostgreSQL server does not accept writes (a standby?)".into(),
                        ));
                    }
                    sqlx::Executor::execute(conn, set.as_str()).await?;
                    Ok(())
                })
            })
            .max_connections(options.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(options.acquire_timeout);
        if several {
            let on_acquire = shared.clone();
            pool_options = pool_options.before_acquire(move |_conn, meta| {
                // A connection made before the pool moved to another host is closed, not used.
                let fresh = !on_acquire.made_before_switch(meta.age);
                Box::pin(async move { Ok(fresh) })
            });
        }
        let pool = pool_options
            .connect_with(hosts[first].clone())
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
        let hosts_watch = several.then(|| {
            HostsWatch(tokio::spawn(watch_hosts(
                pool.clone(),
                hosts,
                first,
                shared,
                patience,
            )))
        });
        Ok(SqlStore {
            backend: Backend::Postgres { pool },
            secret,
            observer: ObserverSlot::default(),
            panic_next_group: Arc::default(),
            _hosts_watch: hosts_watch,
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
                // A read transaction that failed to end (`read_snapshot`) would pin its snapshot
                // on a pooled connection: close that connection instead.
                if !conn.in_transaction() {
                    readers.give(conn);
                }
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
                use sqlx::Connection as _;
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| store_error(db::pg_error(e)))?;
                // A transaction dropped before its end (a cancelled request) is rolled back
                // before the connection is pooled again (sqlx).
                let mut tx = conn
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await
                    .map_err(|e| store_error(db::pg_error(e)))?;
                let value = f(&mut db::Snapshot(&mut *tx)).await.map_err(Into::into)?;
                tx.commit()
                    .await
                    .map_err(|e| store_error(db::pg_error(e)))?;
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

// ------------------------------------------------------------------ several PostgreSQL hosts

/// Where the PostgreSQL store connects: one single-host URL per host of the configured URL, in
/// the order given, and whether only a server that accepts writes will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgTargets {
    pub(crate) urls: Vec<String>,
    pub(crate) read_write: bool,
}

/// Split a libpq-style URL with several hosts, `postgres://user@h1:5432,h2:5433/db?…`, into one
/// URL per host (sqlx takes one host). `target_session_attrs` is read and taken out of the
/// query: `read-write` and `primary` accept only a server that is not in recovery and not
/// read-only, `any` any server that answers; without it, several hosts mean `read-write`
/// (remediate writes; libpq's default, `any`, could land on a standby) and one host means `any`.
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
    let hosts: Vec<&str> = hosts.split(',').collect();
    if hosts.len() > 1 && hosts.iter().any(|h| h.is_empty()) {
        return Err(format!("the database URL names an empty host: '{url}'"));
    }
    let read_write = match attrs {
        None => hosts.len() > 1,
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
        urls: hosts
            .iter()
            .map(|host| format!("{scheme}://{userinfo}{host}{path}{query}"))
            .collect(),
        read_write,
    })
}

/// How long one host may take to answer a probe (capped by the acquire timeout).
const PROBE_PATIENCE: Duration = Duration::from_secs(2);

/// How often the current host is checked when nothing asks sooner.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// What the pool's hooks and the host watch share (never the pool itself).
struct HostsShared {
    read_write: bool,
    /// Asks the watch to check the hosts now (a new connection landed on a standby).
    wake: tokio::sync::Notify,
    /// When the pool last moved to another host.
    switched: Mutex<Option<std::time::Instant>>,
}

impl HostsShared {
    /// Whether a connection `age` old was made before the pool last moved to another host.
    fn made_before_switch(&self, age: Duration) -> bool {
        self.switched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| age > at.elapsed())
    }
}

/// The host watch's task, aborted when the store is dropped.
struct HostsWatch(tokio::task::JoinHandle<()>);

impl Drop for HostsWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn labels(hosts: &[PgConnectOptions]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| format!("{}:{}", h.get_host(), h.get_port()))
        .collect()
}

/// Whether the server of `conn` accepts writes: not a standby (in recovery), not read-only.
async fn accepts_writes(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let read_only: bool = sqlx::query_scalar(
        "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'",
    )
    .fetch_one(conn)
    .await?;
    Ok(!read_only)
}

/// A connection to `host` if it answers within `patience` (and, with `read_write`, accepts
/// writes).
async fn try_host(
    host: &PgConnectOptions,
    read_write: bool,
    patience: Duration,
) -> Option<PgConnection> {
    use sqlx::Connection;
    let attempt = async {
        let mut conn = PgConnection::connect_with(host).await.ok()?;
        let fits = if read_write {
            accepts_writes(&mut conn).await.ok()?
        } else {
            conn.ping().await.is_ok()
        };
        if fits {
            Some(conn)
        } else {
            let _ = conn.close().await;
            None
        }
    };
    tokio::time::timeout(patience, attempt).await.ok().flatten()
}

/// Keep the pool on a host that will do. Every [`WATCH_INTERVAL`] (or when a new connection
/// landed on a standby) the current host is checked on the watch's own connection; when it
/// does not answer or no longer accepts writes, the hosts are tried in order and the pool's
/// new connections go to the first that will do (a promoted standby). Connections made before
/// the move are closed instead of used. Ends when the pool is closed.
async fn watch_hosts(
    pool: PgPool,
    hosts: Vec<PgConnectOptions>,
    mut current: usize,
    shared: Arc<HostsShared>,
    patience: Duration,
) {
    let names = labels(&hosts);
    let mut probe: Option<PgConnection> = None;
    let mut lost = false;
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
        if pool.is_closed() {
            return;
        }
        if let Some(conn) = probe.as_mut() {
            let check = async {
                if shared.read_write {
                    accepts_writes(conn).await.unwrap_or(false)
                } else {
                    sqlx::Connection::ping(conn).await.is_ok()
                }
            };
            if tokio::time::timeout(patience, check).await == Ok(true) {
                continue;
            }
        }
        probe = None;
        for (i, host) in hosts.iter().enumerate() {
            let Some(conn) = try_host(host, shared.read_write, patience).await else {
                continue;
            };
            if i != current {
                tracing::warn!(from = %names[current], to = %names[i], "PostgreSQL: new connections go to another host");
                pool.set_connect_options(host.clone());
                *shared.switched.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now());
                current = i;
            }
            probe = Some(conn);
            break;
        }
        match (&probe, lost) {
            (None, false) => {
                tracing::warn!(hosts = %names.join(", "), "PostgreSQL: no host accepts connections for writes; retrying")
            }
            (Some(_), true) => {
                tracing::info!(host = %names[current], "PostgreSQL: a host accepts writes again")
            }
            _ => {}
        }
        lost = probe.is_none();
    }
}

#[cfg(test)]
mod tests {
    use super::{pg_targets, PgTargets, SqlStore, StoreOptions};
    use crate::db::{Conn, DbError, SqliteConn};
    use std::time::Duration;

    /// Commit a row to `meta` through a connection of its own, outside the store.
    async fn insert_elsewhere(url: &str) {
        const INSERT: &str = "INSERT INTO meta (key, value) VALUES ('snapshot-test', 'x')";
        match url.strip_prefix("sqlite://") {
            Some(path) => {
                let mut conn = SqliteConn::open(path, 1).expect("open");
                conn.execute(INSERT, &[]).await.expect("insert");
            }
            None => {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::query(INSERT)
                    .execute(&mut conn)
                    .await
                    .expect("insert");
            }
        }
    }

    /// `read_snapshot` (the segment plan's counters and rows): every statement of the read sees
    /// the database as of its first, so a row another connection commits meanwhile shows only in
    /// the next read — on both databases.
    #[test]
    fn a_snapshot_read_does_not_see_a_write_committed_during_it() {
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
        let dir = std::env::temp_dir().join(format!("remediate-snapshot-{unique}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut urls = vec![format!("sqlite://{}", dir.join("store.db").display())];
        let postgres = "127.0.0.1:5432".parse().expect("address");
        if std::net::TcpStream::connect_timeout(&postgres, Duration::from_secs(2)).is_ok() {
            urls.push(format!(
                "postgres://postgres@127.0.0.1:5432/remediate_snapshot_{unique}"
            ));
        } else {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "no PostgreSQL");
            eprintln!("SKIPPED (PostgreSQL half): PostgreSQL is not reachable");
        }
        runtime.block_on(async {
            for url in urls {
                let store = SqlStore::connect(&StoreOptions {
                    url: url.clone(),
                    max_connections: 4,
                    acquire_timeout: Duration::from_secs(10),
                    statement_timeout: Duration::from_secs(30),
                })
                .await
                .expect("connect");
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
                    use sqlx::Connection as _;
                    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
                    let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect");
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                        .expect("drop");
                }
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn several_hosts_become_one_url_each_and_target_session_attrs_is_read() {
        assert_eq!(
            pg_targets("postgres://postgres@127.0.0.1:5432/db"),
            Ok(PgTargets {
                urls: vec!["postgres://postgres@127.0.0.1:5432/db".into()],
                read_write: false
            })
        );
        assert_eq!(
            pg_targets("postgresql://u:p@h1:5432,h2,[::1]:5434/db?sslmode=disable&target_session_attrs=read-write&application_name=r"),
            Ok(PgTargets {
                urls: vec![
                    "postgresql://u:p@h1:5432/db?sslmode=disable&application_name=r".into(),
                    "postgresql://u:p@h2/db?sslmode=disable&application_name=r".into(),
                    "postgresql://u:p@[::1]:5434/db?sslmode=disable&application_name=r".into(),
                ],
                read_write: true
            })
        );
        // Several hosts default to read-write; one host may ask for it; `any` turns it off.
        assert!(pg_targets("postgres://h1,h2/db").unwrap().read_write);
        assert!(
            pg_targets("postgres://h1/db?target_session_attrs=primary")
                .unwrap()
                .read_write
        );
        let any = pg_targets("postgres://h1,h2?target_session_attrs=any").unwrap();
        assert_eq!(any.urls, ["postgres://h1", "postgres://h2"]);
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
