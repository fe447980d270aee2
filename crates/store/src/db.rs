//! The two database drivers behind one small interface ([`Conn`]): rusqlite for SQLite and tokio-postgres
//! (pooled by deadpool-postgres) for PostgreSQL. Everything above this module writes one SQL text per statement (with `$n`
//! placeholders, which both databases understand) and reads rows of four kinds of cells.
//!
//! SQLite runs in-process and never waits on the network, so its connection answers every call
//! synchronously: the futures of [`SqliteConn`] complete on their first poll, which lets the same
//! async store code run to completion on the current thread through [`run_now`] (reads on the
//! calling tokio worker thread, `crate::connect`; the writer on its own thread, `crate::writer`)
//! without a per-row hand-off between threads.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;

use crate::translate::Arg;

/// The escape character of stored text: U+FDD0, a Unicode noncharacter (reserved for a
/// program's internal use, so it does not occur in real text).
/// What NUL is stored as: U+FDD0, a Unicode noncharacter (reserved for a program's internal use).
const NUL_MARK: char = '\u{FDD0}';
/// The escape of a literal U+FDD0 or U+FDD1 (the next noncharacter) in stored text.
const ESCAPE: char = '\u{FDD1}';
/// The first byte of the UTF-8 form of [`NUL_MARK`] and [`ESCAPE`] (`EF B7 90`, `EF B7 91`).
const NONCHAR_LEAD: u8 = 0xEF;

/// The stored form of a text value. PostgreSQL text cannot hold U+0000 and SQLite's string
/// functions (`length`, `LIKE`, `instr`) stop at it, yet a device's script output may contain it
/// (UTF-16 output read as UTF-8). In both databases NUL is stored as the single character U+FDD0,
/// and a literal U+FDD0 or U+FDD1 as U+FDD1 followed by itself. Every ordinary character stands
/// for itself and every NUL for one character, so equality, prefixes and `LIKE` patterns (`%`,
/// `_` and `\` are untouched) behave on stored text exactly as on the originals, `contains` and
/// `endswith` included: a search text without these two noncharacters can only match a run of
/// ordinary characters and NULs, which is a run of the original. Only a search for text holding
/// U+FDD0/U+FDD1 themselves could match inside an escape, and strings that differ at a NUL sort by
/// U+FDD0 (docs/decisions.md).
pub(crate) fn text_in(text: &str) -> std::borrow::Cow<'_, str> {
    // Fast path: U+FDD0 and U+FDD1 both start with the byte 0xEF in UTF-8 (which starts only
    // characters U+F000–U+FFFF), so text without NUL and 0xEF needs no look at its characters.
    if !text.bytes().any(|b| b == 0 || b == NONCHAR_LEAD)
        || !text.contains(['\0', NUL_MARK, ESCAPE])
    {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => out.push(NUL_MARK),
            NUL_MARK | ESCAPE => out.extend([ESCAPE, c]),
            c => out.push(c),
        }
    }
    out.into()
}

/// The value of stored text ([`text_in`] undone).
pub(crate) fn text_out(stored: String) -> String {
    // Fast path (a `memchr` over the bytes): no 0xEF, so neither U+FDD0 nor U+FDD1 (see [`text_in`]).
    if !stored.as_bytes().contains(&NONCHAR_LEAD) || !stored.contains([NUL_MARK, ESCAPE]) {
        return stored;
    }
    let mut out = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        match c {
            NUL_MARK => out.push('\0'),
            ESCAPE => out.push(chars.next().unwrap_or(ESCAPE)),
            c => out.push(c),
        }
    }
    out
}

/// One column value of a result row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cell {
    #[default]
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// A result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell, DbError> {
        self.0
            .get(i)
            .ok_or_else(|| DbError::other(format!("no column {i} in a row of {}", self.0.len())))
    }

    /// Move a cell out of the row (no copy), leaving `Null`.
    fn take(&mut self, i: usize) -> Result<Cell, DbError> {
        self.0
            .get_mut(i)
            .map(std::mem::take)
            .ok_or_else(|| DbError::other(format!("no column {i}")))
    }

    fn mismatch(i: usize, expected: &str, found: &Cell) -> DbError {
        DbError::other(format!("column {i}: expected {expected}, found {found:?}"))
    }

    pub fn int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            other => Err(Self::mismatch(i, "an integer", other)),
        }
    }

    /// A non-null integer (counts, sums cast to BIGINT).
    pub fn count(&self, i: usize) -> Result<i64, DbError> {
        Ok(self.int(i)?.unwrap_or(0))
    }

    pub fn text(&self, i: usize) -> Result<Option<String>, DbError> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v.clone())),
            other => Err(Self::mismatch(i, "text", other)),
        }
    }

    /// Move a text cell out of the row (no copy).
    pub fn take_text(&mut self, i: usize) -> Result<Option<String>, DbError> {
        match self.take(i)? {
            Cell::Null => Ok(None),
            Cell::Text(v) => Ok(Some(v)),
            other => Err(Self::mismatch(i, "text", &other)),
        }
    }

    /// Move a bytes cell out of the row (no copy).
    pub fn take_blob(&mut self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
        match self.take(i)? {
            Cell::Null => Ok(None),
            Cell::Blob(v) => Ok(Some(v)),
            other => Err(Self::mismatch(i, "bytes", &other)),
        }
    }
}

/// What went wrong in the database, classified for [`crate::StoreError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A unique key or primary key is taken.
    Unique,
    /// The database cannot be reached, is locked or is shutting down: retry later.
    Unavailable,
    /// Two transactions waited on each other (PostgreSQL deadlock or serialization failure).
    Retry,
    /// The statement ran past its deadline and was stopped.
    Timeout,
    /// The disk (or the database's tablespace) is full: nothing can be written until space is
    /// freed; reads still work.
    Full,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl DbError {
    pub fn other(message: impl Into<String>) -> DbError {
        DbError {
            kind: DbErrorKind::Other,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A connection (or a transaction on one).
#[async_trait]
pub trait Conn: Send {
    /// Is this a SQLite connection (else PostgreSQL)? For the few plans whose SQL differs beyond
    /// what `translate` spells per dialect (`plans`' trigram search).
    fn is_sqlite(&self) -> bool;
    /// Run one statement and return all of its rows.
    async fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError>;
    /// Run one statement and return the number of rows it changed.
    async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError>;
    /// Run statements without parameters (migrations, transaction control).
    async fn batch(&mut self, sql: &str) -> Result<(), DbError>;
    /// Do this connection's statements all read one snapshot of the database ([`Snapshot`])?
    /// Plans that read the counters to decide which rows to read rely on it (`plans`).
    fn in_snapshot(&self) -> bool {
        false
    }

    async fn query_opt(&mut self, sql: &str, args: &[Arg]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, args).await?.into_iter().next())
    }

    async fn query_one(&mut self, sql: &str, args: &[Arg]) -> Result<Row, DbError> {
        self.query_opt(sql, args)
            .await?
            .ok_or_else(|| DbError::other("the statement returned no row"))
    }
}

/// A connection inside a read transaction that sees one snapshot of the database
/// (`SqlStore::read_snapshot`): the counters it reads agree with the rows it reads.
pub struct Snapshot<'c>(pub &'c mut dyn Conn);

#[async_trait]
impl Conn for Snapshot<'_> {
    fn is_sqlite(&self) -> bool {
        self.0.is_sqlite()
    }

    async fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError> {
        self.0.query(sql, args).await
    }

    async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        self.0.execute(sql, args).await
    }

    async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.0.batch(sql).await
    }

    fn in_snapshot(&self) -> bool {
        true
    }
}

/// `Arg::Text(Some(s))` for a borrowed string.
pub fn text(s: &str) -> Arg {
    Arg::Text(Some(s.to_owned()))
}

/// `Arg::Int(Some(v))`.
pub fn int(v: i64) -> Arg {
    Arg::Int(Some(v))
}

/// Drive a future that never waits (one on a [`SqliteConn`]) to completion on this thread.
///
/// # Panics
/// If the future is not ready on its first poll: that would mean a SQLite call waited on
/// something, which this module's design rules out.
pub fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a SQLite operation waited; SQLite futures must complete at once"),
    }
}

// ------------------------------------------------------------------------------------- SQLite

/// A SQLite connection. Statements are prepared once per connection and cached.
pub struct SqliteConn {
    conn: rusqlite::Connection,
    /// When set (milliseconds since [`epoch`]), statements running past it are interrupted.
    deadline: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The clock of SQLite deadlines.
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

fn since_epoch_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `$1` … `$99`: SQLite treats `$n` as a named parameter; binding by name keeps repeated
/// placeholders right.
fn placeholder(n: usize) -> String {
    format!("${n}")
}

fn sqlite_error(e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(failure, message) = &e {
        let message = message.clone().unwrap_or_else(|| e.to_string());
        let kind = match failure.code {
            ErrorCode::ConstraintViolation => match failure.extended_code {
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => DbErrorKind::Unique,
                _ => DbErrorKind::Other,
            },
            ErrorCode::OperationInterrupted => DbErrorKind::Timeout,
            ErrorCode::DiskFull => DbErrorKind::Full,
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen => DbErrorKind::Unavailable,
            _ => DbErrorKind::Other,
        };
        return DbError { kind, message };
    }
    DbError::other(e.to_string())
}

impl SqliteConn {
    /// Open `path` with the server's settings: WAL, `synchronous=FULL` (a commit is on disk
    /// before it returns), foreign keys, a busy timeout, statement journals (savepoints) in
    /// memory, a page cache of `cache_mib`, a cache of prepared statements, and the query
    /// planner stability guarantee.
    pub fn open(path: &str, cache_mib: u32) -> Result<SqliteConn, DbError> {
        let conn = rusqlite::Connection::open(path).map_err(sqlite_error)?;
        conn.set_prepared_statement_cache_capacity(256);
        // With the statistics `PRAGMA optimize` gathers (`sqlite_stat4`), SQLite plans a
        // statement for the values bound to it and prepares it again whenever they change: every
        // execution of a cached statement (18% of a GET page's CPU, docs/benchmarks.md). The
        // guarantee (QPSG) plans once for any values, from the per-index averages
        // (`sqlite_stat1`), which the page plans are built for (docs/query-plans.md).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(sqlite_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sqlite_error)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{};",
            cache_mib * 1024
        ))
        .map_err(sqlite_error)?;
        let deadline = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let watched = deadline.clone();
        // Every 10,000 virtual-machine steps (well under a millisecond), check the deadline.
        conn.progress_handler(
            10_000,
            Some(move || {
                let at = watched.load(std::sync::atomic::Ordering::Relaxed);
                at != 0 && since_epoch_ms() > at
            }),
        );
        Ok(SqliteConn { conn, deadline })
    }

    /// Stop statements that run past `limit` from now (`None`: no limit).
    /// Is a transaction open on this connection (one that failed to end must not be reused)?
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    pub fn set_deadline(&self, limit: Option<std::time::Duration>) {
        let at = limit.map_or(0, |d| {
            since_epoch_ms().saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        self.deadline
            .store(at, std::sync::atomic::Ordering::Relaxed);
    }

    fn prepare<'c>(
        &'c self,
        sql: &str,
        args: &[Arg],
    ) -> Result<rusqlite::CachedStatement<'c>, DbError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(sqlite_error)?;
        for (i, arg) in args.iter().enumerate() {
            let Some(index) = statement
                .parameter_index(&placeholder(i + 1))
                .map_err(sqlite_error)?
            else {
                continue;
            };
            let bound = match arg {
                Arg::Int(v) => statement.raw_bind_parameter(index, v),
                Arg::Text(v) => statement.raw_bind_parameter(index, v.as_deref().map(text_in)),
                Arg::Bytes(v) => statement.raw_bind_parameter(index, v),
            };
            bound.map_err(sqlite_error)?;
        }
        Ok(statement)
    }
}

#[async_trait]
impl Conn for SqliteConn {
    fn is_sqlite(&self) -> bool {
        true
    }

    async fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError> {
        let mut statement = self.prepare(sql, args)?;
        let width = statement.column_count();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                use rusqlite::types::ValueRef as V;
                // `i` is below the statement's column count: the index cannot be out of range
                // (the only error of `get_ref`), so no `Result` per cell.
                cells.push(match row.get_ref_unwrap(i) {
                    V::Null => Cell::Null,
                    V::Integer(v) => Cell::Int(v),
                    // Only integers are stored and every aggregate is cast to BIGINT.
                    V::Real(v) => {
                        return Err(DbError::other(format!(
                            "column {i} is the real {v}: cast it to BIGINT"
                        )))
                    }
                    V::Text(bytes) => Cell::Text(text_out(
                        String::from_utf8(bytes.to_vec())
                            .map_err(|e| DbError::other(format!("column {i}: {e}")))?,
                    )),
                    V::Blob(bytes) => Cell::Blob(bytes.to_vec()),
                });
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        let mut statement = self.prepare(sql, args)?;
        let changed = statement.raw_execute().map_err(sqlite_error)?;
        Ok(changed as u64)
    }

    async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        self.conn.execute_batch(sql).map_err(sqlite_error)
    }
}

// --------------------------------------------------------------------------------- PostgreSQL

/// Prepared statements kept per PostgreSQL connection; past it the connection's cache is emptied
/// (a client can make any number of distinct statements with its `$filter`s).
const PG_STATEMENT_CACHE: usize = 256;

/// Whether a tokio-postgres error means the server cannot be reached or went away (no
/// SQLSTATE: the connection failed, closed or timed out).
fn pg_unreachable(e: &tokio_postgres::Error) -> bool {
    use std::error::Error as _;
    if e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>()) {
        return true;
    }
    let text = e.to_string();
    [
        "error connecting to server",
        "error communicating with the server",
        "timeout waiting for server",
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix))
}

pub fn pg_error(e: tokio_postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        let kind = match db.code().code() {
            "23505" => DbErrorKind::Unique,
            // deadlock_detected, serialization_failure
            "40P01" | "40001" => DbErrorKind::Retry,
            // query_canceled (statement_timeout)
            "57014" => DbErrorKind::Timeout,
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections,
            // read_only_sql_transaction (a standby, or a primary made read-only)
            "57P01" | "57P02" | "57P03" | "53300" | "25006" => DbErrorKind::Unavailable,
            // disk_full
            "53100" => DbErrorKind::Full,
            _ => DbErrorKind::Other,
        };
        let mut message = format!("error returned from database: {}", db.message());
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        return DbError { kind, message };
    }
    let kind = if pg_unreachable(&e) {
        DbErrorKind::Unavailable
    } else {
        DbErrorKind::Other
    };
    let message = match std::error::Error::source(&e) {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    };
    DbError { kind, message }
}

/// A connection could not be had from the pool.
pub fn pg_pool_error(e: deadpool_postgres::PoolError) -> DbError {
    use deadpool_postgres::PoolError;
    let unavailable = |message: &str| DbError {
        kind: DbErrorKind::Unavailable,
        message: message.to_owned(),
    };
    match e {
        PoolError::Backend(e) => pg_error(e),
        PoolError::Timeout(_) => unavailable("no PostgreSQL connection became free in time"),
        PoolError::Closed => unavailable("the store is closed"),
        PoolError::PostCreateHook(e) => unavailable(&e.to_string()),
        PoolError::NoRuntimeSpecified => DbError::other("the PostgreSQL pool has no runtime"),
    }
}

/// One bound parameter, sent with the type its [`Arg`] names (BIGINT, TEXT or BYTEA), as the
/// statement was prepared with.
#[derive(Debug)]
enum PgParam<'a> {
    Int(Option<i64>),
    Text(Option<std::borrow::Cow<'a, str>>),
    Bytes(Option<&'a [u8]>),
}

impl tokio_postgres::types::ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            PgParam::Int(v) => v.to_sql(ty, out),
            PgParam::Text(v) => v.as_deref().to_sql(ty, out),
            PgParam::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || <&str as tokio_postgres::types::ToSql>::accepts(ty)
            || <&[u8] as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

fn pg_params(args: &[Arg]) -> (Vec<tokio_postgres::types::Type>, Vec<PgParam<'_>>) {
    use tokio_postgres::types::Type;
    args.iter()
        .map(|arg| match arg {
            Arg::Int(v) => (Type::INT8, PgParam::Int(*v)),
            Arg::Text(v) => (Type::TEXT, PgParam::Text(v.as_deref().map(text_in))),
            Arg::Bytes(v) => (Type::BYTEA, PgParam::Bytes(v.as_deref())),
        })
        .unzip()
}

/// The parameters as the driver takes them.
fn pg_refs<'p>(params: &'p [PgParam<'_>]) -> Vec<&'p (dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p as _).collect()
}

/// How a result column's cells are read: from its type, looked up once per statement.
#[derive(Debug, Clone, Copy)]
enum PgKind {
    Int8,
    Int4,
    Int2,
    Bool,
    Text,
    Bytea,
    /// Any other type: an error for a cell that is not NULL.
    Other,
}

fn pg_kind(ty: &tokio_postgres::types::Type) -> PgKind {
    use tokio_postgres::types::Type;
    if *ty == Type::INT8 {
        PgKind::Int8
    } else if *ty == Type::INT4 {
        PgKind::Int4
    } else if *ty == Type::INT2 {
        PgKind::Int2
    } else if *ty == Type::BOOL {
        PgKind::Bool
    } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty) {
        PgKind::Text
    } else if *ty == Type::BYTEA {
        PgKind::Bytea
    } else {
        PgKind::Other
    }
}

fn pg_row(row: &tokio_postgres::Row, kinds: &[PgKind]) -> Result<Row, DbError> {
    let mut cells = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        let cell = match kind {
            PgKind::Int8 => row.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
            PgKind::Int4 => row
                .try_get::<_, Option<i32>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            PgKind::Int2 => row
                .try_get::<_, Option<i16>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            PgKind::Bool => row
                .try_get::<_, Option<bool>>(i)
                .map(|v| v.map(|v| Cell::Int(v.into()))),
            PgKind::Text => row
                .try_get::<_, Option<&str>>(i)
                .map(|v| v.map(|v| Cell::Text(text_out(v.to_owned())))),
            PgKind::Bytea => row
                .try_get::<_, Option<Vec<u8>>>(i)
                .map(|v| v.map(Cell::Blob)),
            PgKind::Other => match row.try_get::<_, Option<PgAny>>(i) {
                Ok(None) => Ok(None),
                _ => {
                    return Err(DbError::other(format!(
                        "column {i} has the unexpected type {} (cast it to BIGINT or TEXT)",
                        row.columns()[i].type_()
                    )))
                }
            },
        }
        .map_err(pg_error)?;
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

/// Any value, only to tell NULL from a value of a type the store does not read.
struct PgAny;

impl<'a> tokio_postgres::types::FromSql<'a> for PgAny {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        _: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgAny)
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// A pooled PostgreSQL connection. Transactions are begun and ended with [`PgConn::begin`],
/// [`PgConn::commit`] and [`PgConn::rollback`]; a connection dropped inside one (a cancelled
/// request) or after the server went away (a failover, a restart, a server turned read-only) is
/// closed instead of pooled again, so the server rolls back what it held and the next request
/// gets a fresh connection (to the host that now accepts writes).
pub struct PgConn {
    client: Option<deadpool_postgres::Object>,
    in_transaction: bool,
    discard: bool,
}

impl PgConn {
    pub fn new(client: deadpool_postgres::Object) -> PgConn {
        PgConn {
            client: Some(client),
            in_transaction: false,
            discard: false,
        }
    }

    fn client(&self) -> Result<&deadpool_postgres::Object, DbError> {
        self.client
            .as_ref()
            .ok_or_else(|| DbError::other("the PostgreSQL connection was closed"))
    }

    /// Remember an error that means this connection must not be used again.
    fn note<T>(&mut self, out: Result<T, DbError>) -> Result<T, DbError> {
        if let Err(e) = &out {
            if e.kind == DbErrorKind::Unavailable {
                self.discard = true;
            }
        }
        out
    }

    /// Begin a transaction (`begin` is the statement: `BEGIN`, or with an isolation level).
    pub async fn begin(&mut self, begin: &str) -> Result<(), DbError> {
        self.batch(begin).await?;
        self.in_transaction = true;
        Ok(())
    }

    pub async fn commit(&mut self) -> Result<(), DbError> {
        self.end("COMMIT").await
    }

    pub async fn rollback(&mut self) -> Result<(), DbError> {
        self.end("ROLLBACK").await
    }

    async fn end(&mut self, end: &str) -> Result<(), DbError> {
        // A transaction that failed to end leaves the connection in an unknown state: closed
        // when dropped (`in_transaction` stays set).
        self.batch(end).await?;
        self.in_transaction = false;
        Ok(())
    }

    /// The statement prepared for `sql` with parameters of `types` (cached per connection).
    async fn statement(
        &self,
        sql: &str,
        types: &[tokio_postgres::types::Type],
    ) -> Result<tokio_postgres::Statement, DbError> {
        let client = self.client()?;
        if client.statement_cache.size() >= PG_STATEMENT_CACHE {
            client.statement_cache.clear();
        }
        client
            .prepare_typed_cached(sql, types)
            .await
            .map_err(pg_error)
    }

    async fn run_query(&self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError> {
        let (types, params) = pg_params(args);
        let statement = self.statement(sql, &types).await?;
        let rows = self
            .client()?
            .query(&statement, &pg_refs(&params))
            .await
            .map_err(pg_error)?;
        let kinds: Vec<PgKind> = statement
            .columns()
            .iter()
            .map(|c| pg_kind(c.type_()))
            .collect();
        rows.iter().map(|row| pg_row(row, &kinds)).collect()
    }

    async fn run_execute(&self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        let (types, params) = pg_params(args);
        let statement = self.statement(sql, &types).await?;
        self.client()?
            .execute(&statement, &pg_refs(&params))
            .await
            .map_err(pg_error)
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if self.in_transaction || self.discard {
            if let Some(client) = self.client.take() {
                // Out of the pool and dropped: the connection closes.
                drop(deadpool_postgres::Object::take(client));
            }
        }
    }
}

#[async_trait]
impl Conn for PgConn {
    fn is_sqlite(&self) -> bool {
        false
    }

    async fn query(&mut self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, DbError> {
        let out = self.run_query(sql, args).await;
        self.note(out)
    }

    async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, DbError> {
        let out = self.run_execute(sql, args).await;
        self.note(out)
    }

    async fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        // The simple-query protocol, which allows several statements in one text.
        let out = match self.client() {
            Ok(client) => client.batch_execute(sql).await.map_err(pg_error),
            Err(e) => Err(e),
        };
        self.note(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{text_in, text_out, SqliteConn, NUL_MARK};

    /// Times the statement was prepared again after rebinding, over executions with values
    /// that the statistics tell apart.
    fn reprepares(conn: &rusqlite::Connection) -> i32 {
        let mut statement = conn.prepare("SELECT COUNT(*) FROM t WHERE k = ?1").unwrap();
        for value in ["common", "rare", "common", "rare", "none"] {
            let _: i64 = statement.query_row([value], |r| r.get(0)).unwrap();
        }
        statement.get_status(rusqlite::StatementStatus::RePrepare)
    }

    #[test]
    fn cached_statements_are_not_planned_again_for_each_binding() {
        let dir = std::env::temp_dir().join(format!("remediate-qpsg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qpsg.db");
        let path = path.to_str().unwrap();
        {
            // Skewed values and the statistics `PRAGMA optimize` gathers (with STAT4 samples).
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL); \
                 CREATE INDEX t_k ON t (k); \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
                 INSERT INTO t (k) SELECT CASE WHEN i % 100 = 0 THEN 'rare' ELSE 'common' END FROM n; \
                 ANALYZE;",
            )
            .unwrap();
            let samples: i64 = conn
                .query_row("SELECT COUNT(*) FROM sqlite_stat4", [], |r| r.get(0))
                .unwrap();
            assert!(samples > 0, "the bundled SQLite keeps STAT4 samples");
            // Without the guarantee, every new binding prepares the statement again.
            assert!(reprepares(&conn) > 0);
        }
        let server = SqliteConn::open(path, 1).unwrap();
        assert_eq!(reprepares(&server.conn), 0);
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stored_text_round_trips_nul_and_the_noncharacters() {
        for text in [
            "",
            "plain",
            "a\0b",
            "\0",
            "\0\0",
            "x\u{FDD0}y",
            "\u{FDD0}0",
            "\u{FDD1}\u{FDD0}",
            "\u{FDD0}\0\u{FDD1}",
            "\u{FDD1}",
            "1\u{0}0\u{0}",
        ] {
            let stored = text_in(text);
            assert!(!stored.contains('\0'), "{stored:?}");
            assert_eq!(text_out(stored.into_owned()), text, "{text:?}");
        }
        // Text without NUL or the two noncharacters is stored as it is (no copy).
        assert!(matches!(text_in("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(text_in("a\0b"), format!("a{NUL_MARK}b"));
    }

    #[test]
    fn searches_match_stored_text_exactly_as_the_original() {
        // UTF-16 output of "10" read as UTF-8: "1\0" "0\0". A search for "00" must not match.
        let stored = text_in("1\u{0}0\u{0}");
        assert!(!stored.contains("00"));
        assert!(stored.contains(&*text_in("0\u{0}")));
        assert!(stored.ends_with(&*text_in("\u{0}")));
        let (a, b) = ("out\0put", "out\0put!");
        assert!(text_in(b).starts_with(&*text_in(a)));
        assert_ne!(text_in(a), text_in("out0put"));
    }
}
