//! [`Store`] on SQLite or PostgreSQL: one implementation, one SQL text per statement for both
//! dialects (with `$n` placeholders, which both understand), run through the small driver
//! interface of [`crate::db`], and dialect switches only where the databases differ (row locks,
//! schema files, how work reaches a connection).
//!
//! How work reaches the database:
//! - SQLite: reads run on the calling tokio worker, each on a pooled read connection (WAL
//!   readers never wait for the writer); every write goes to one writer thread that gathers concurrent
//!   writes into one transaction (group commit, see [`writer_thread`]).
//! - PostgreSQL: a sqlx pool; each write is one transaction on a pooled connection.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use remediate_domain::model::{
    EntityType, DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE,
    MANAGED_DEVICE, RUN_RECORD,
};
use remediate_domain::query::{After, ListQuery, Page, RemediationHistory, Scope};
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Record, Value};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::counters;
use crate::db::{self, run_now, Conn, DbError, DbErrorKind, Row, SqliteConn};
use crate::translate::{self, Arg, Sql};
use crate::{EntityRef, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
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

pub struct SqlStore {
    backend: Backend,
    secret: Vec<u8>,
}

enum Backend {
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
struct SqliteReaders {
    path: String,
    idle: Mutex<Vec<SqliteConn>>,
    permits: Arc<tokio::sync::Semaphore>,
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

/// Work for the SQLite writer thread.
enum Job {
    /// A write command, answered after its group's commit.
    Write {
        tenant: String,
        write: Write,
        reply: tokio::sync::oneshot::Sender<Result<WriteOutcome, StoreError>>,
    },
    /// Maintenance that must not run beside the writer (history pruning, `PRAGMA optimize`).
    Task(Box<dyn FnOnce(&mut SqliteConn) + Send>),
}

/// Page caches: the writer's holds the indexes every insert walks; readers share the OS cache.
const WRITER_CACHE_MIB: u32 = 32;
const READER_CACHE_MIB: u32 = 8;

/// Most writes committed together (each in its own savepoint).
const MAX_GROUP: usize = 256;

fn store_error(e: DbError) -> StoreError {
    match e.kind {
        DbErrorKind::Unique => {
            StoreError::Conflict("An entity with the same key already exists.".into())
        }
        DbErrorKind::Unavailable | DbErrorKind::Retry => StoreError::Unavailable(e.message),
        DbErrorKind::Timeout => StoreError::Timeout(
            "The query ran longer than the server's statement timeout; narrow it with $filter or $top.".into(),
        ),
        DbErrorKind::Other => StoreError::Internal(e.message),
    }
}

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
        let writer_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = writer_done.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_thread(checkpointer, &done))
            .map_err(|e| {
                StoreError::Internal(format!("cannot start the SQLite checkpointer: {e}"))
            })?;
        // Statistics for the planner, as SQLite recommends for long-lived connections.
        run_now(conn.batch("PRAGMA optimize = 0x10002")).map_err(store_error)?;
        let secret = run_now(load_secret(&mut conn)).map_err(store_error)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                writer_thread(conn, receiver);
                writer_done.store(true, std::sync::atomic::Ordering::Relaxed);
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the SQLite writer: {e}")))?;
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
            acquire_timeout: options.acquire_timeout,
            statement_timeout: options.statement_timeout,
        };
        Ok(SqlStore {
            backend: Backend::Sqlite {
                readers: Arc::new(readers),
                writer: sender,
            },
            secret,
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
        })
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

    /// Run `f` on a read connection: SQLite on the calling worker thread, PostgreSQL on the
    /// async pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T, DbError>> + Send + 'static,
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
                out.map_err(store_error)
            }
            Backend::Postgres { pool } => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| store_error(db::pg_error(e)))?;
                f(&mut *conn).await.map_err(store_error)
            }
        }
    }

    /// Run maintenance `f` in a transaction where writes run: on the SQLite writer thread (between
    /// groups) or on a PostgreSQL connection. `commit: false` rolls it back (read-only checks
    /// that work on scratch copies).
    async fn maintain<T, F>(&self, commit: bool, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T, DbError>> + Send + 'static,
    {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let task = Box::new(move |conn: &mut SqliteConn| {
                    let out = run_now(async {
                        conn.batch("BEGIN IMMEDIATE").await?;
                        match f(conn).await {
                            Ok(v) => {
                                conn.batch(if commit { "COMMIT" } else { "ROLLBACK" })
                                    .await?;
                                Ok(v)
                            }
                            Err(e) => {
                                let _ = conn.batch("ROLLBACK").await;
                                Err(e)
                            }
                        }
                    });
                    let _ = reply.send(out);
                });
                writer
                    .send(Job::Task(task))
                    .await
                    .map_err(|_| writer_stopped())?;
                answer
                    .await
                    .map_err(|_| writer_stopped())?
                    .map_err(store_error)
            }
            Backend::Postgres { pool } => {
                let pg = |e: sqlx::Error| store_error(db::pg_error(e));
                let mut tx = pool.begin().await.map_err(pg)?;
                // Maintenance (pruning, recounting) may take long: no statement timeout.
                tx.batch("SET LOCAL statement_timeout = 0")
                    .await
                    .map_err(store_error)?;
                if !commit {
                    // One snapshot for the whole check.
                    tx.batch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        .await
                        .map_err(store_error)?;
                }
                let out = f(&mut *tx).await.map_err(store_error)?;
                if commit {
                    tx.commit().await.map_err(pg)?;
                } else {
                    tx.rollback().await.map_err(pg)?;
                }
                Ok(out)
            }
        }
    }
}

/// PostgreSQL's `statement_timeout` for the pool's connections.
fn statement_timeout_sql(timeout: Duration) -> String {
    format!("SET statement_timeout = {}", timeout.as_millis().max(1))
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
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

/// `"a", "b", …` for an entity's properties as stored, with `NULL` for properties a list leaves out.
pub(crate) fn select_columns(entity: &EntityType, alias: &str, list: bool) -> String {
    let mut columns: Vec<String> = entity
        .properties
        .iter()
        .map(|p| {
            if list && !p.in_list {
                "NULL".to_owned()
            } else {
                format!("{alias}.\"{}\"", p.name)
            }
        })
        .collect();
    for link in entity.links {
        columns.push(format!("{alias}.\"{}\"", link.column()));
    }
    columns.join(", ")
}

fn column_count(entity: &EntityType) -> usize {
    entity.properties.len() + entity.links.len()
}

pub(crate) fn decode_record(
    entity: &'static EntityType,
    row: &mut Row,
    offset: usize,
) -> Result<Record, DbError> {
    let mut values = Vec::with_capacity(entity.properties.len());
    for (i, p) in entity.properties.iter().enumerate() {
        values.push(translate::decode(p, row, offset + i)?);
    }
    let mut record = Record {
        entity,
        values,
        parent: None,
        device_id: None,
        state_id: None,
    };
    let n = entity.properties.len();
    for (i, link) in entity.links.iter().enumerate() {
        record.set_link(*link, row.take_text(offset + n + i)?);
    }
    Ok(record)
}

fn insert_sql(tenant: &str, record: &Record) -> Sql {
    let entity = record.entity;
    let mut columns = vec!["\"tenant\"".to_owned()];
    let mut args = vec![Arg::Text(Some(tenant.to_owned()))];
    for link in entity.links {
        columns.push(format!("\"{}\"", link.column()));
        args.push(Arg::Text(record.link(*link).map(str::to_owned)));
    }
    for (p, v) in entity.properties.iter().zip(&record.values) {
        columns.extend(translate::column_names(p));
        args.extend(translate::value_args(p, v));
    }
    let mut sql = Sql::default();
    sql.push(&format!(
        "INSERT INTO \"{}\" ({}) VALUES (",
        entity.table,
        columns.join(", ")
    ));
    for (i, arg) in args.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.arg(arg);
    }
    sql.push(")");
    sql
}

/// `WHERE` clause addressing one entity (alias `t`).
fn key_where(sql: &mut Sql, tenant: &str, key: &EntityRef) {
    sql.push(" WHERE t.\"tenant\" = ")
        .arg(Arg::Text(Some(tenant.to_owned())));
    match key {
        EntityRef::Script(id) | EntityRef::Device(id) => {
            sql.push(" AND t.\"id\" = ")
                .arg(Arg::Text(Some(id.clone())));
        }
        EntityRef::RunState { script_id, id } | EntityRef::Assignment { script_id, id } => {
            sql.push(" AND t.\"scriptId\" = ")
                .arg(Arg::Text(Some(script_id.clone())));
            sql.push(" AND t.\"id\" = ")
                .arg(Arg::Text(Some(id.clone())));
        }
    }
}

fn entity_of(key: &EntityRef) -> &'static EntityType {
    match key {
        EntityRef::Script(_) => &DEVICE_HEALTH_SCRIPT,
        EntityRef::RunState { .. } => &DEVICE_RUN_STATE,
        EntityRef::Device(_) => &MANAGED_DEVICE,
        EntityRef::Assignment { .. } => &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
    }
}

/// How often a PostgreSQL write rolled back by a deadlock or serialization failure is run.
const WRITE_ATTEMPTS: u32 = 3;

/// Executes write commands inside a transaction; holds only what that needs.
#[derive(Debug, Clone, Copy)]
struct Writer {
    dialect: Dialect,
    /// The counter shard this transaction adds to (`counters::SHARDS`; always 0 on SQLite).
    shard: i64,
}

/// May a run state of a script be bound to `device`? Only if the device exists and no other run
/// state of the script is bound to it (`existing`).
fn bind_allowed(device: &str, found: bool, existing: Option<String>) -> Result<(), StoreError> {
    if !found {
        return Err(StoreError::InvalidReference(format!(
            "The managedDevice '{device}' named by 'managedDevice@odata.bind' does not exist."
        )));
    }
    if let Some(id) = existing {
        return Err(StoreError::Conflict(format!(
            "A deviceRunState for managedDevice '{device}' already exists for this deviceHealthScript: '{id}'. Update it with PATCH instead."
        )));
    }
    Ok(())
}

/// Does the entity exist?
pub(crate) async fn exists(
    c: &mut dyn Conn,
    tenant: &str,
    key: &EntityRef,
) -> Result<bool, DbError> {
    let entity = entity_of(key);
    let mut sql = Sql::default();
    sql.push(&format!("SELECT 1 FROM \"{}\" t", entity.table));
    key_where(&mut sql, tenant, key);
    Ok(c.query_opt(&sql.text, &sql.args).await?.is_some())
}

/// What the counters know of a run state.
fn counted(record: &Record) -> counters::Counted {
    let state = |name: &str| match record.get(name) {
        Value::Enum(v) | Value::Int(v) => *v,
        _ => 0,
    };
    counters::Counted {
        detection: state("detectionState"),
        remediation: state("remediationState"),
        device_key: match &record.device_id {
            Some(device) => device.clone(),
            None => format!(
                "{}:{}",
                record.parent.as_deref().unwrap_or_default(),
                record.id()
            ),
        },
    }
}

impl Writer {
    /// The entity, its row locked until the transaction ends (PostgreSQL; SQLite's single
    /// writer needs no lock) when `lock`.
    async fn fetch(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        key: &EntityRef,
        lock: bool,
    ) -> Result<Option<Record>, DbError> {
        fetch_entity(c, tenant, key, lock && self.dialect == Dialect::Postgres).await
    }

    /// Does the script exist? On PostgreSQL its row is also locked until the transaction ends:
    /// `FOR KEY SHARE` by every write to the script's run states, assignments and on-demand runs
    /// (they do not block each other), `FOR UPDATE` by its deletion — so a deletion waits for
    /// the writes under way and the writes after it find the script gone: nothing is left behind
    /// for a deleted script. The script row is always the first lock a write takes, which keeps
    /// the order of locks the same in every transaction (no deadlock).
    async fn lock_script(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        script_id: &str,
        exclusive: bool,
    ) -> Result<bool, DbError> {
        let lock = match (self.dialect, exclusive) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, false) => " FOR KEY SHARE",
            (Dialect::Postgres, true) => " FOR UPDATE",
        };
        let sql = format!(
            "SELECT 1 FROM device_health_scripts WHERE \"tenant\" = $1 AND \"id\" = $2{lock}"
        );
        Ok(c.query_opt(&sql, &[db::text(tenant), db::text(script_id)])
            .await?
            .is_some())
    }

    async fn update_columns(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        key: &EntityRef,
        record: &Record,
        changed: &[usize],
        device: Option<&str>,
    ) -> Result<(), DbError> {
        let entity = record.entity;
        let mut sql = Sql::default();
        sql.push(&format!("UPDATE \"{}\" AS t SET ", entity.table));
        let mut first = true;
        for &index in changed {
            let p = &entity.properties[index];
            for (column, arg) in translate::column_names(p)
                .into_iter()
                .zip(translate::value_args(p, &record.values[index]))
            {
                if !first {
                    sql.push(", ");
                }
                first = false;
                sql.push(&column).push(" = ").arg(arg);
            }
        }
        if let Some(device) = device {
            if !first {
                sql.push(", ");
            }
            first = false;
            sql.push("\"managedDeviceId\" = ")
                .arg(Arg::Text(Some(device.to_owned())));
        }
        if first {
            return Ok(());
        }
        key_where(&mut sql, tenant, key);
        c.execute(&sql.text, &sql.args).await?;
        Ok(())
    }

    /// Append a run record of `state`, in the same transaction as the change.
    async fn append_history(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        state: &Record,
    ) -> Result<(), DbError> {
        let now = Instant::now();
        let mut record = Record::with_defaults(&RUN_RECORD);
        let suffix = &remediate_domain::new_id()[..8];
        record.set("id", Value::Str(format!("{:020}-{suffix}", now.ticks())));
        record.set("recordedDateTime", Value::Time(now));
        record.set(
            "managedDeviceId",
            state.device_id.clone().map_or(Value::Null, Value::Str),
        );
        for name in [
            "detectionState",
            "remediationState",
            "lastStateUpdateDateTime",
            "preRemediationDetectionScriptOutput",
            "preRemediationDetectionScriptError",
            "remediationScriptError",
            "postRemediationDetectionScriptOutput",
            "postRemediationDetectionScriptError",
        ] {
            record.set(name, state.get(name).clone());
        }
        record.parent = state.parent.clone();
        record.state_id = Some(state.id().to_owned());
        let sql = insert_sql(tenant, &record);
        c.execute(&sql.text, &sql.args).await?;
        if let (Value::Enum(2), Some(script_id)) = (record.get("remediationState"), &state.parent) {
            let device = state.device_id.as_deref().unwrap_or(state.id());
            counters::remediated_record(c, tenant, script_id, device, now.ticks(), self.shard)
                .await?;
        }
        Ok(())
    }

    /// The device has reported the script: its queued on-demand run is done.
    async fn clear_on_demand(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        state: &Record,
    ) -> Result<(), DbError> {
        if let (Some(device), Some(script)) = (&state.device_id, &state.parent) {
            c.execute("DELETE FROM on_demand_requests WHERE \"tenant\" = $1 AND \"managedDeviceId\" = $2 AND \"scriptId\" = $3", &[db::text(tenant), db::text(device), db::text(script)]).await?;
        }
        Ok(())
    }

    /// Check that `device` exists and no other run state of `script_id` is bound to it.
    async fn check_bind(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        script_id: &str,
        device: &str,
    ) -> Result<Result<(), StoreError>, DbError> {
        let found = exists(c, tenant, &EntityRef::Device(device.to_owned())).await?;
        let existing = c
            .query_opt(
                "SELECT \"id\" FROM device_run_states WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"managedDeviceId\" = $3",
                &[db::text(tenant), db::text(script_id), db::text(device)],
            )
            .await?
            .map(|row| row.text(0))
            .transpose()?
            .flatten();
        Ok(bind_allowed(device, found, existing))
    }

    async fn execute(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        write: Write,
    ) -> Result<Result<WriteOutcome, StoreError>, DbError> {
        match write {
            Write::CreateScript { record } => {
                let sql = insert_sql(tenant, &record);
                c.execute(&sql.text, &sql.args).await?;
                Ok(Ok(WriteOutcome::Created(record)))
            }
            Write::CreateDevice { record } => {
                let sql = insert_sql(tenant, &record);
                c.execute(&sql.text, &sql.args).await?;
                counters::bump(c, tenant, counters::DEVICES, self.shard, 1).await?;
                Ok(Ok(WriteOutcome::Created(record)))
            }
            Write::CreateRunState { record } => {
                let script_id = record.parent.clone().unwrap_or_default();
                // Every check in one round trip (this is the hot path of device reports).
                let device = record.device_id.as_deref();
                // The script's row is locked first (see `lock_script`), then the device's.
                let lock = match self.dialect {
                    Dialect::Sqlite => "",
                    Dialect::Postgres => " FOR KEY SHARE",
                };
                let row = c
                    .query_one(
                        &format!("SELECT \
                           (SELECT 1 FROM device_health_scripts WHERE \"tenant\" = $1 AND \"id\" = $2{lock}), \
                           (SELECT 1 FROM managed_devices WHERE \"tenant\" = $1 AND \"id\" = $3{lock}), \
                           (SELECT \"id\" FROM device_run_states WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"managedDeviceId\" = $3), \
                           (SELECT 1 FROM on_demand_requests WHERE \"tenant\" = $1 AND \"managedDeviceId\" = $3 AND \"scriptId\" = $2)"),
                        &[
                            db::text(tenant),
                            db::text(&script_id),
                            Arg::Text(device.map(str::to_owned)),
                        ],
                    )
                    .await?;
                if row.int(0)?.is_none() {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{script_id}' does not exist."
                    ))));
                }
                if let Some(device) = device {
                    if let Err(e) = bind_allowed(device, row.int(1)?.is_some(), row.text(2)?) {
                        return Ok(Err(e));
                    }
                }
                let on_demand_pending = row.int(3)?.is_some();
                let sql = insert_sql(tenant, &record);
                c.execute(&sql.text, &sql.args).await?;
                counters::state_changed(
                    c,
                    tenant,
                    &script_id,
                    self.shard,
                    None,
                    Some(&counted(&record)),
                )
                .await?;
                self.append_history(c, tenant, &record).await?;
                if on_demand_pending {
                    self.clear_on_demand(c, tenant, &record).await?;
                }
                Ok(Ok(WriteOutcome::Created(record)))
            }
            Write::UpdateScript { id, changes } => {
                let key = EntityRef::Script(id.clone());
                let Some(mut record) = self.fetch(c, tenant, &key, true).await? else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{id}' does not exist."
                    ))));
                };
                let mut changed: Vec<usize> = Vec::new();
                let mut content_changed = false;
                for (index, value) in changes {
                    let name = record.entity.properties[index].name;
                    if record.values[index] != value && name.ends_with("ScriptContent") {
                        content_changed = true;
                    }
                    record.values[index] = value;
                    changed.push(index);
                }
                if content_changed {
                    let next = match record.get("version") {
                        Value::Str(v) => v.parse::<u64>().map(|n| n + 1).unwrap_or(1),
                        _ => 1,
                    };
                    record.set("version", Value::Str(next.to_string()));
                    changed.push(record.entity.index("version"));
                }
                record.set("lastModifiedDateTime", Value::Time(Instant::now()));
                changed.push(record.entity.index("lastModifiedDateTime"));
                self.update_columns(c, tenant, &key, &record, &changed, None)
                    .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::UpdateDevice { id, changes } => {
                let key = EntityRef::Device(id.clone());
                let Some(mut record) = self.fetch(c, tenant, &key, true).await? else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The managedDevice '{id}' does not exist."
                    ))));
                };
                let changed: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
                for (index, value) in changes {
                    record.values[index] = value;
                }
                self.update_columns(c, tenant, &key, &record, &changed, None)
                    .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::UpdateRunState {
                script_id,
                id,
                changes,
                bind_device,
            } => {
                let key = EntityRef::RunState {
                    script_id: script_id.clone(),
                    id: id.clone(),
                };
                let found = self.lock_script(c, tenant, &script_id, false).await?;
                let record = match found {
                    true => self.fetch(c, tenant, &key, true).await?,
                    false => None,
                };
                let Some(mut record) = record else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
                    ))));
                };
                let counted_before = counted(&record);
                let mut new_device = None;
                if let Some(device) = bind_device {
                    match &record.device_id {
                        Some(current) if *current == device => {}
                        Some(current) => {
                            return Ok(Err(StoreError::InvalidReference(format!(
                                "The deviceRunState '{id}' is already bound to managedDevice '{current}'; its device cannot be changed."
                            ))))
                        }
                        None => {
                            if let Err(e) = self.check_bind(c, tenant, &script_id, &device).await? {
                                return Ok(Err(e));
                            }
                            record.device_id = Some(device.clone());
                            new_device = Some(device);
                        }
                    }
                }
                let tracked = [
                    "detectionState",
                    "remediationState",
                    "lastStateUpdateDateTime",
                ];
                let before: Vec<Value> = tracked.iter().map(|n| record.get(n).clone()).collect();
                let changed: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
                for (index, value) in changes {
                    record.values[index] = value;
                }
                self.update_columns(c, tenant, &key, &record, &changed, new_device.as_deref())
                    .await?;
                counters::state_changed(
                    c,
                    tenant,
                    &script_id,
                    self.shard,
                    Some(&counted_before),
                    Some(&counted(&record)),
                )
                .await?;
                let after: Vec<Value> = tracked.iter().map(|n| record.get(n).clone()).collect();
                if before != after {
                    self.append_history(c, tenant, &record).await?;
                }
                self.clear_on_demand(c, tenant, &record).await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::DeleteScript { id } => {
                if !self.lock_script(c, tenant, &id, true).await? {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{id}' does not exist."
                    ))));
                }
                counters::script_deleted(c, tenant, &id, self.shard).await?;
                for table in [
                    "run_history",
                    "device_run_states",
                    "device_health_script_assignments",
                    "on_demand_requests",
                ] {
                    c.execute(
                        &format!("DELETE FROM {table} WHERE \"tenant\" = $1 AND \"scriptId\" = $2"),
                        &[db::text(tenant), db::text(&id)],
                    )
                    .await?;
                }
                self.delete(
                    c,
                    tenant,
                    &EntityRef::Script(id.clone()),
                    format!("The deviceHealthScript '{id}' does not exist."),
                )
                .await
            }
            Write::CreateAssignment { record } => {
                let script_id = record.parent.clone().unwrap_or_default();
                if !self.lock_script(c, tenant, &script_id, false).await? {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{script_id}' does not exist."
                    ))));
                }
                let key = EntityRef::Assignment {
                    script_id,
                    id: record.id().to_owned(),
                };
                if exists(c, tenant, &key).await? {
                    return Ok(Err(StoreError::Conflict(format!(
                        "An assignment with the id '{}' (the same target group) already exists for this deviceHealthScript.",
                        record.id()
                    ))));
                }
                let sql = insert_sql(tenant, &record);
                c.execute(&sql.text, &sql.args).await?;
                Ok(Ok(WriteOutcome::Created(record)))
            }
            Write::UpdateAssignment {
                script_id,
                id,
                changes,
            } => {
                let key = EntityRef::Assignment {
                    script_id: script_id.clone(),
                    id: id.clone(),
                };
                let found = self.lock_script(c, tenant, &script_id, false).await?;
                let record = match found {
                    true => self.fetch(c, tenant, &key, true).await?,
                    false => None,
                };
                let Some(mut record) = record else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScriptAssignment '{id}' does not exist in deviceHealthScript '{script_id}'."
                    ))));
                };
                let changed: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
                for (index, value) in changes {
                    record.values[index] = value;
                }
                self.update_columns(c, tenant, &key, &record, &changed, None)
                    .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::DeleteAssignment { script_id, id } => {
                let message = format!("The deviceHealthScriptAssignment '{id}' does not exist in deviceHealthScript '{script_id}'.");
                if !self.lock_script(c, tenant, &script_id, false).await? {
                    return Ok(Err(StoreError::NotFound(message)));
                }
                self.delete(c, tenant, &EntityRef::Assignment { script_id, id }, message)
                    .await
            }
            Write::Assign { script_id, records } => {
                if !self.lock_script(c, tenant, &script_id, false).await? {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{script_id}' does not exist."
                    ))));
                }
                c.execute("DELETE FROM device_health_script_assignments WHERE \"tenant\" = $1 AND \"scriptId\" = $2", &[db::text(tenant), db::text(&script_id)]).await?;
                for record in &records {
                    let sql = insert_sql(tenant, record);
                    c.execute(&sql.text, &sql.args).await?;
                }
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::RequestOnDemand {
                device_id,
                script_id,
            } => {
                if !exists(c, tenant, &EntityRef::Device(device_id.clone())).await? {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The managedDevice '{device_id}' does not exist."
                    ))));
                }
                if !self.lock_script(c, tenant, &script_id, false).await? {
                    return Ok(Err(StoreError::InvalidReference(format!(
                        "The scriptPolicyId '{script_id}' does not name a deviceHealthScript of this tenant."
                    ))));
                }
                c.execute(
                    "INSERT INTO on_demand_requests (\"tenant\", \"managedDeviceId\", \"scriptId\", \"requestedDateTime\") \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (\"tenant\", \"managedDeviceId\", \"scriptId\") \
                     DO UPDATE SET \"requestedDateTime\" = excluded.\"requestedDateTime\"",
                    &[
                        db::text(tenant),
                        Arg::Text(Some(device_id)),
                        Arg::Text(Some(script_id)),
                        db::int(Instant::now().ticks()),
                    ],
                )
                .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::SetGlobalScriptsState { state } => {
                c.execute(
                    "INSERT INTO tenant_settings (\"tenant\", \"globalScriptsState\") VALUES ($1, $2) \
                     ON CONFLICT (\"tenant\") DO UPDATE SET \"globalScriptsState\" = excluded.\"globalScriptsState\"",
                    &[db::text(tenant), db::int(state)],
                )
                .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::DeleteDevice { id } => {
                let deleted = self
                    .delete(
                        c,
                        tenant,
                        &EntityRef::Device(id.clone()),
                        format!("The managedDevice '{id}' does not exist."),
                    )
                    .await?;
                if deleted.is_ok() {
                    counters::bump(c, tenant, counters::DEVICES, self.shard, -1).await?;
                }
                Ok(deleted)
            }
            Write::DeleteRunState { script_id, id } => {
                let key = EntityRef::RunState {
                    script_id: script_id.clone(),
                    id: id.clone(),
                };
                let found = self.lock_script(c, tenant, &script_id, false).await?;
                let record = match found {
                    true => self.fetch(c, tenant, &key, true).await?,
                    false => None,
                };
                let Some(record) = record else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
                    ))));
                };
                let deleted = self.delete(c, tenant, &key, String::new()).await?;
                if deleted.is_ok() {
                    counters::state_changed(
                        c,
                        tenant,
                        &script_id,
                        self.shard,
                        Some(&counted(&record)),
                        None,
                    )
                    .await?;
                }
                Ok(deleted)
            }
        }
    }

    async fn delete(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        key: &EntityRef,
        missing: String,
    ) -> Result<Result<WriteOutcome, StoreError>, DbError> {
        let entity = entity_of(key);
        let mut sql = Sql::default();
        // The alias keeps `key_where` usable; both databases accept `DELETE FROM x AS t`.
        sql.push(&format!("DELETE FROM \"{}\" AS t", entity.table));
        key_where(&mut sql, tenant, key);
        let done = c.execute(&sql.text, &sql.args).await?;
        if done == 0 {
            return Ok(Err(StoreError::NotFound(missing)));
        }
        Ok(Ok(WriteOutcome::Deleted))
    }
}

/// One entity by key, `FOR UPDATE` when `for_update`.
async fn fetch_entity(
    c: &mut dyn Conn,
    tenant: &str,
    key: &EntityRef,
    for_update: bool,
) -> Result<Option<Record>, DbError> {
    let entity = entity_of(key);
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {} FROM \"{}\" t",
        select_columns(entity, "t", false),
        entity.table
    ));
    key_where(&mut sql, tenant, key);
    if for_update {
        sql.push(" FOR UPDATE");
    }
    c.query_opt(&sql.text, &sql.args)
        .await?
        .map(|mut r| decode_record(entity, &mut r, 0))
        .transpose()
}

/// One page of a collection (and its count when asked for); `Err` when the collection's script
/// does not exist (checked only when the page is empty: rows cannot outlive their script).
async fn list_page(
    c: &mut dyn Conn,
    tenant: &str,
    query: &ListQuery,
) -> Result<Result<Page, StoreError>, DbError> {
    let page = page_of(c, tenant, query).await?;
    if let (true, Scope::RunStates { script_id } | Scope::Assignments { script_id }) =
        (page.records.is_empty(), &query.scope)
    {
        let script = EntityRef::Script(script_id.clone());
        if exists(c, tenant, &script).await? {
            return Ok(Ok(page));
        }
        return Ok(Err(StoreError::NotFound(format!(
            "The deviceHealthScript '{script_id}' does not exist."
        ))));
    }
    Ok(Ok(page))
}

async fn page_of(c: &mut dyn Conn, tenant: &str, query: &ListQuery) -> Result<Page, DbError> {
    let entity = query.scope.entity();
    let join_device = query.expand_device
        || query.order.iter().any(|k| k.column.via_device)
        || query.filter.as_ref().is_some_and(uses_device);
    let keys = translate::key_exprs(&query.order);
    let mut from = Sql::default();
    from.push(&format!(" FROM \"{}\" t", entity.table));
    if join_device {
        from.push(" LEFT JOIN managed_devices d ON d.\"tenant\" = t.\"tenant\" AND d.\"id\" = t.\"managedDeviceId\"");
    }
    from.push(" WHERE t.\"tenant\" = ").arg(db::text(tenant));
    match &query.scope {
        Scope::RunStates { script_id } | Scope::Assignments { script_id } => {
            from.push(" AND t.\"scriptId\" = ").arg(db::text(script_id));
        }
        Scope::History {
            script_id,
            state_id,
        } => {
            from.push(" AND t.\"scriptId\" = ").arg(db::text(script_id));
            from.push(" AND t.\"stateId\" = ").arg(db::text(state_id));
        }
        Scope::Scripts | Scope::Devices => {}
    }
    if let Some(filter) = &query.filter {
        from.push(" AND ");
        translate::filter(&mut from, filter);
    }
    let count = if !query.count {
        None
    } else {
        // Unfiltered counts of run states and devices come from the counters (constant time).
        let n = match (&query.scope, &query.filter) {
            (Scope::RunStates { script_id }, None) => {
                counters::run_states(c, tenant, script_id).await?
            }
            (Scope::Devices, None) => counters::total(c, tenant, counters::DEVICES).await?,
            _ => {
                let text = format!("SELECT COUNT(*){}", from.text);
                c.query_one(&text, &from.args).await?.count(0)?
            }
        };
        Some(n.max(0) as u64)
    };
    if query.top == 0 && query.count {
        return Ok(Page {
            records: Vec::new(),
            devices: Vec::new(),
            next: None,
            count,
        });
    }
    let mut sql = Sql::default();
    sql.push("SELECT ").push(&select_columns(entity, "t", true));
    if query.expand_device {
        sql.push(", ")
            .push(&select_columns(&MANAGED_DEVICE, "d", false));
    }
    for key in &keys {
        sql.push(", ").push(&key.sql);
    }
    // Re-number the FROM clause's placeholders after the (parameterless) select list.
    sql.text.push_str(&from.text);
    sql.args = from.args;
    if let Some(after) = &query.after {
        translate::after_condition(&mut sql, &keys, after);
    }
    translate::order_by(&mut sql, &keys);
    sql.push(" LIMIT ")
        .arg(Arg::Int(Some(query.top as i64 + 1)));
    if query.after.is_none() && query.skip > 0 {
        sql.push(" OFFSET ").arg(Arg::Int(Some(
            i64::try_from(query.skip).unwrap_or(i64::MAX),
        )));
    }
    let mut rows = c.query(&sql.text, &sql.args).await?;
    let has_more = rows.len() > query.top;
    let base = column_count(entity);
    let device_width = if query.expand_device {
        column_count(&MANAGED_DEVICE)
    } else {
        0
    };
    // The keyset position after the page's last row, read before the rows are taken apart.
    let mut next = None;
    if has_more {
        if let Some(row) = rows.get(query.top.saturating_sub(1)) {
            let offset = base + device_width;
            let mut values = Vec::new();
            for (i, key) in keys.iter().enumerate().take(keys.len() - 1) {
                values.push(if key.text {
                    row.text(offset + i)?.map_or(Value::Null, Value::Str)
                } else {
                    row.int(offset + i)?.map_or(Value::Null, Value::Int)
                });
            }
            let id = row
                .text(offset + keys.len() - 1)?
                .ok_or_else(|| DbError::other("a row without id"))?;
            next = Some(After { values, id });
        }
    }
    rows.truncate(query.top);
    let mut page = Page {
        records: Vec::with_capacity(rows.len()),
        devices: Vec::new(),
        next,
        count,
    };
    for mut row in rows {
        page.records.push(decode_record(entity, &mut row, 0)?);
        if query.expand_device {
            page.devices.push(match row.text(base)? {
                Some(_) => Some(decode_record(&MANAGED_DEVICE, &mut row, base)?),
                None => None,
            });
        }
    }
    Ok(page)
}

#[async_trait]
impl Store for SqlStore {
    async fn write(&self, tenant: &str, write: Write) -> Result<WriteOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let job = Job::Write {
                    tenant: tenant.to_owned(),
                    write,
                    reply,
                };
                writer.send(job).await.map_err(|_| writer_stopped())?;
                answer.await.map_err(|_| writer_stopped())?
            }
            Backend::Postgres { pool } => {
                let pg = |e: sqlx::Error| store_error(db::pg_error(e));
                // Round-robin over the counter shards: concurrent transactions add to different rows.
                static NEXT_SHARD: std::sync::atomic::AtomicU64 =
                    std::sync::atomic::AtomicU64::new(0);
                let shard = NEXT_SHARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % counters::SHARDS;
                let writer = Writer {
                    dialect: Dialect::Postgres,
                    shard: shard as i64,
                };
                // A deadlock or serialization failure rolled the whole transaction back: run it
                // again (the lock order of `lock_script` and the counters makes this rare).
                let mut attempt = 1;
                loop {
                    let mut tx = pool.begin().await.map_err(pg)?;
                    match writer.execute(&mut *tx, tenant, write.clone()).await {
                        Ok(Ok(outcome)) => match tx.commit().await.map_err(db::pg_error) {
                            Ok(()) => return Ok(outcome),
                            Err(e)
                                if e.kind == db::DbErrorKind::Retry && attempt < WRITE_ATTEMPTS => {
                            }
                            Err(e) => return Err(store_error(e)),
                        },
                        Ok(Err(e)) => {
                            tx.rollback().await.map_err(pg)?;
                            return Err(e);
                        }
                        Err(e) => {
                            let _ = tx.rollback().await;
                            if e.kind != db::DbErrorKind::Retry || attempt >= WRITE_ATTEMPTS {
                                return Err(store_error(e));
                            }
                        }
                    }
                    tracing::warn!(attempt, "a write was rolled back by a deadlock or serialization failure; running it again");
                    attempt += 1;
                }
            }
        }
    }

    async fn get(&self, tenant: &str, key: &EntityRef) -> Result<Option<Record>, StoreError> {
        let tenant = tenant.to_owned();
        let key = key.clone();
        self.read(move |c| Box::pin(async move { fetch_entity(c, &tenant, &key, false).await }))
            .await
    }

    async fn list(&self, tenant: &str, query: &ListQuery) -> Result<Page, StoreError> {
        let tenant = tenant.to_owned();
        let query = query.clone();
        self.read(move |c| Box::pin(async move { list_page(c, &tenant, &query).await }))
            .await?
    }

    async fn run_summary(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<Record>, StoreError> {
        let (tenant, script_id) = (tenant.to_owned(), script_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { crate::views::run_summary(c, &tenant, &script_id).await })
        })
        .await
    }

    async fn remediation_history(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<RemediationHistory>, StoreError> {
        let (tenant, script_id) = (tenant.to_owned(), script_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { crate::views::remediation_history(c, &tenant, &script_id).await })
        })
        .await
    }

    async fn remediation_summary(&self, tenant: &str) -> Result<(i64, i64), StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| {
            Box::pin(async move { crate::views::remediation_summary(c, &tenant).await })
        })
        .await
    }

    async fn device_script_states(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<Record>>, StoreError> {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(
                async move { crate::views::device_script_states(c, &tenant, &device_id).await },
            )
        })
        .await
    }

    async fn pending_on_demand(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<(String, Instant)>>, StoreError> {
        let (tenant, device_id) = (tenant.to_owned(), device_id.to_owned());
        self.read(move |c| {
            Box::pin(async move { crate::views::pending_on_demand(c, &tenant, &device_id).await })
        })
        .await
    }

    async fn global_scripts_state(&self, tenant: &str) -> Result<i64, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT \"globalScriptsState\" FROM tenant_settings WHERE \"tenant\" = $1",
                        &[db::text(&tenant)],
                    )
                    .await?;
                Ok(match row {
                    Some(row) => row.count(0)?,
                    None => 0,
                })
            })
        })
        .await
    }

    async fn prune_history(&self, cutoff: Instant) -> Result<u64, StoreError> {
        self.maintain(true, move |c| {
            Box::pin(async move {
                counters::history_pruned(c, cutoff.ticks()).await?;
                c.execute(
                    "DELETE FROM run_history WHERE \"recordedDateTime\" < $1",
                    &[db::int(cutoff.ticks())],
                )
                .await
            })
        })
        .await
    }

    async fn assignment_targets(&self, tenant: &str) -> Result<Vec<(String, String)>, StoreError> {
        let tenant = tenant.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT \"scriptId\", \"target\" FROM device_health_script_assignments WHERE \"tenant\" = $1",
                        &[db::text(&tenant)],
                    )
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    if let (Some(script), Some(target)) = (row.text(0)?, row.text(1)?) {
                        out.push((script, target));
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    async fn recount(&self) -> Result<(), StoreError> {
        self.maintain(true, |c| Box::pin(counters::recount(c)))
            .await
    }

    async fn check_counters(&self) -> Result<Vec<String>, StoreError> {
        self.maintain(false, |c| Box::pin(counters::check(c))).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|c| Box::pin(async move { c.query("SELECT 1", &[]).await.map(drop) }))
            .await
    }

    fn paging_secret(&self) -> &[u8] {
        &self.secret
    }

    fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres { .. } => Dialect::Postgres,
        }
    }
}

/// The SQLite writer: take every write waiting, run each in its own savepoint inside one
/// transaction, commit once (one fsync for the group under `synchronous=FULL`), then answer
/// each request (group commit). A write that fails rolls back only its savepoint; if the commit
/// itself fails, every write of the group gets the error, so no request is ever acknowledged
/// without being durable. A panic while executing a group rolls it back, answers its writes
/// with an error and leaves the thread serving the next group.
fn writer_thread(mut conn: SqliteConn, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
    let writer = Writer {
        dialect: Dialect::Sqlite,
        shard: 0,
    };
    while let Some(first) = jobs.blocking_recv() {
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write {
                    tenant,
                    write,
                    reply,
                } => group.push((tenant, write, reply)),
                Job::Task(task) => {
                    // Maintenance runs alone, after the writes that came before it.
                    flush_group(&mut conn, writer, std::mem::take(&mut group));
                    if std::panic::catch_unwind(AssertUnwindSafe(|| task(&mut conn))).is_err() {
                        let _ = run_now(conn.batch("ROLLBACK"));
                    }
                }
            }
            if group.len() < MAX_GROUP {
                next = jobs.try_recv().ok();
            }
        }
        flush_group(&mut conn, writer, group);
    }
}

/// Copy the WAL into the database file every 100 ms (PASSIVE: never waits for readers or the
/// writer), so the WAL stays small without checkpoints inside the writer's commits. Ends with
/// the writer.
fn checkpoint_thread(mut conn: SqliteConn, writer_done: &std::sync::atomic::AtomicBool) {
    while !writer_done.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if let Err(e) = run_now(conn.batch("PRAGMA wal_checkpoint(PASSIVE)")) {
            if e.kind != DbErrorKind::Unavailable {
                tracing::warn!(error = %e, "SQLite checkpoint failed");
            }
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<WriteOutcome, StoreError>>;

fn flush_group(conn: &mut SqliteConn, writer: Writer, group: Vec<(String, Write, Reply)>) {
    if group.is_empty() {
        return;
    }
    let (work, replies): (Vec<(String, Write)>, Vec<Reply>) = group
        .into_iter()
        .map(|(tenant, write, reply)| ((tenant, write), reply))
        .unzip();
    let count = work.len();
    let results = match std::panic::catch_unwind(AssertUnwindSafe(|| {
        run_now(commit_group(conn, writer, work))
    })) {
        Ok(results) => results,
        Err(_) => {
            let _ = run_now(conn.batch("ROLLBACK"));
            tracing::error!(writes = count, "a write group panicked; it was rolled back");
            (0..count)
                .map(|_| {
                    Err(StoreError::Internal(
                        "the write failed unexpectedly and was rolled back".into(),
                    ))
                })
                .collect()
        }
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

async fn commit_group(
    c: &mut dyn Conn,
    writer: Writer,
    work: Vec<(String, Write)>,
) -> Vec<Result<WriteOutcome, StoreError>> {
    let count = work.len();
    let all = |e: DbError| (0..count).map(|_| Err(store_error(e.clone()))).collect();
    if let Err(e) = c.batch("BEGIN IMMEDIATE").await {
        return all(e);
    }
    let mut results = Vec::with_capacity(count);
    for (tenant, write) in work {
        if let Err(e) = c.batch("SAVEPOINT w").await {
            results.push(Err(store_error(e)));
            continue;
        }
        let result = writer.execute(c, &tenant, write).await;
        let undo = !matches!(result, Ok(Ok(_)));
        let end = if undo {
            c.batch("ROLLBACK TO w; RELEASE w").await
        } else {
            c.batch("RELEASE w").await
        };
        results.push(match (result, end) {
            (Ok(Ok(outcome)), Ok(())) => Ok(outcome),
            (Ok(Err(e)), _) => Err(e),
            (Err(e), _) | (Ok(Ok(_)), Err(e)) => Err(store_error(e)),
        });
    }
    match c.batch("COMMIT").await {
        Ok(()) => results,
        Err(e) => {
            let _ = c.batch("ROLLBACK").await;
            let error = store_error(e);
            results
                .into_iter()
                .map(|r| r.and(Err(error.clone())))
                .collect()
        }
    }
}

fn uses_device(filter: &remediate_domain::query::Filter) -> bool {
    use remediate_domain::query::Filter as F;
    match filter {
        F::Compare { column, .. } | F::In { column, .. } | F::Function { column, .. } => {
            column.via_device
        }
        F::And(a, b) | F::Or(a, b) => uses_device(a) || uses_device(b),
        F::Not(a) => uses_device(a),
        F::Const(_) => false,
    }
}
