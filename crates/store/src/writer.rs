//! Where writes run. SQLite: one writer thread with a **group commit** ([`writer_thread`]) and
//! a checkpointer thread beside it. PostgreSQL: one transaction per write on a pooled
//! connection, run again when a deadlock or serialization failure rolled it back
//! ([`WRITE_ATTEMPTS`]). Maintenance transactions (history pruning, recounting) run where the
//! writes run: on the SQLite writer thread between groups ([`SqlStore::maintain`]).
//!
//! What each write does inside its transaction is `crate::commands`. How long the transactions
//! take (and how many writes each SQLite group holds) is told to a [`WriteObserver`], when one
//! is set (`/metrics`).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use remediate_domain::write::{Write, WriteOutcome};

use crate::commands::Writer;
use crate::connect::{pg_connection, Backend, Dialect, SqlStore};
use crate::counters;
use crate::db::{run_now, Conn, DbError, DbErrorKind, SqliteConn};
use crate::error::{store_error, ExecError};
use crate::StoreError;

/// Work for the SQLite writer thread.
pub(crate) enum Job {
    /// A write command, answered after its group's commit.
    Write {
        tenant: String,
        write: Box<Write>,
        reply: Reply,
    },
    /// Maintenance that must not run beside the writer (history pruning, `PRAGMA optimize`).
    Task(Box<dyn FnOnce(&mut SqliteConn) + Send>),
}

type Reply = tokio::sync::oneshot::Sender<Result<WriteOutcome, StoreError>>;

/// Most writes committed together (each in its own savepoint).
const MAX_GROUP: usize = 256;

/// How often a PostgreSQL write rolled back by a deadlock or serialization failure is run.
const WRITE_ATTEMPTS: u32 = 3;

/// Told about every write transaction, for `/metrics` (the API implements it; the store knows
/// nothing of metrics). Called on the SQLite writer thread or on the writing request's task, once
/// per transaction: it must be cheap and must never block.
pub trait WriteObserver: Send + Sync + 'static {
    /// SQLite: a group of `writes` ran in one transaction that took `duration`, from `BEGIN` to
    /// the end of its `COMMIT` (the group's one fsync) or of its rollback.
    fn group_committed(&self, writes: usize, duration: Duration);
    /// PostgreSQL: one write transaction took `duration`, from `BEGIN` to the end of its
    /// `COMMIT` or `ROLLBACK` (each run of a write that is run again counts).
    fn transaction_ended(&self, duration: Duration);
}

/// The observer, once set (`SqlStore::observe_writes`), shared with the SQLite writer thread.
pub(crate) type ObserverSlot = Arc<OnceLock<Arc<dyn WriteObserver>>>;

/// Tells the observer how long one PostgreSQL write transaction took, when dropped.
struct TransactionTimer<'a> {
    observer: Option<&'a dyn WriteObserver>,
    started: std::time::Instant,
}

impl<'a> TransactionTimer<'a> {
    fn start(slot: &'a ObserverSlot) -> TransactionTimer<'a> {
        TransactionTimer {
            observer: slot.get().map(|o| &**o),
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for TransactionTimer<'_> {
    fn drop(&mut self) {
        if let Some(observer) = self.observer {
            observer.transaction_ended(self.started.elapsed());
        }
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Unavailable("the SQLite writer has stopped".into())
}

/// Start the SQLite writer thread on `conn` and the checkpointer on `checkpointer`; returns the
/// writer's queue. The checkpointer ends with the writer.
pub(crate) fn start_sqlite(
    conn: SqliteConn,
    checkpointer: SqliteConn,
    observer: ObserverSlot,
    panic_next_group: Arc<std::sync::atomic::AtomicBool>,
) -> Result<tokio::sync::mpsc::Sender<Job>, StoreError> {
    let writer_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = writer_done.clone();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || checkpoint_thread(checkpointer, &done))
        .map_err(|e| StoreError::Internal(format!("cannot start the SQLite checkpointer: {e}")))?;
    let (sender, receiver) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || {
            writer_thread(conn, receiver, &observer, &panic_next_group);
            writer_done.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .map_err(|e| StoreError::Internal(format!("cannot start the SQLite writer: {e}")))?;
    Ok(sender)
}

impl SqlStore {
    /// Execute one write command in one transaction (SQLite: in its own savepoint of the
    /// writer's current group).
    pub(crate) async fn write_command(
        &self,
        tenant: &str,
        write: Write,
    ) -> Result<WriteOutcome, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let (reply, answer) = tokio::sync::oneshot::channel();
                let job = Job::Write {
                    tenant: tenant.to_owned(),
                    write: Box::new(write),
                    reply,
                };
                writer.send(job).await.map_err(|_| writer_stopped())?;
                answer.await.map_err(|_| writer_stopped())?
            }
            Backend::Postgres { pool } => {
                // Round-robin over the counter shards: concurrent transactions add to different rows.
                static NEXT_SHARD: std::sync::atomic::AtomicU64 =
                    std::sync::atomic::AtomicU64::new(0);
                let shard = NEXT_SHARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % counters::SHARDS;
                let writer = Writer {
                    dialect: Dialect::Postgres,
                    shard: shard as i64,
                };
                // One statement that touches one row and nothing else is its own transaction:
                // one round trip instead of BEGIN, the statement and COMMIT.
                if matches!(write, Write::CheckIn { .. }) {
                    let mut conn = pg_connection(pool).await?;
                    return match writer.execute(&mut conn, tenant, write).await {
                        Ok(outcome) => Ok(outcome),
                        Err(ExecError::Rejected(e)) => Err(e),
                        Err(ExecError::Db(e)) => Err(store_error(e)),
                    };
                }
                // A device report is one call of a server-side function, its own transaction
                // (`crate::report`); a deadlock rolls it back and it runs again.
                if crate::report::is_report(&write) {
                    let mut attempt = 1;
                    loop {
                        let mut conn = pg_connection(pool).await?;
                        let _timer = TransactionTimer::start(&self.observer);
                        match crate::report::execute(&mut conn, tenant, writer.shard, write.clone())
                            .await
                        {
                            Ok(outcome) => return Ok(outcome),
                            Err(ExecError::Rejected(e)) => return Err(e),
                            Err(ExecError::Db(e)) => {
                                if e.kind != DbErrorKind::Retry || attempt >= WRITE_ATTEMPTS {
                                    return Err(store_error(e));
                                }
                            }
                        }
                        tracing::warn!(
                            attempt,
                            "a device report was rolled back by a deadlock; running it again"
                        );
                        attempt += 1;
                    }
                }
                // A deadlock or serialization failure rolled the whole transaction back: run it
                // again (the lock order of `lock_script` and the counters makes this rare).
                let mut attempt = 1;
                loop {
                    let mut tx = pg_connection(pool).await?;
                    tx.begin("BEGIN").await.map_err(store_error)?;
                    // Dropped (and told to the observer) once the transaction has ended.
                    let _timer = TransactionTimer::start(&self.observer);
                    match writer.execute(&mut tx, tenant, write.clone()).await {
                        Ok(outcome) => match tx.commit().await {
                            Ok(()) => return Ok(outcome),
                            Err(e) if e.kind == DbErrorKind::Retry && attempt < WRITE_ATTEMPTS => {}
                            Err(e) => return Err(store_error(e)),
                        },
                        Err(ExecError::Rejected(e)) => {
                            tx.rollback().await.map_err(store_error)?;
                            return Err(e);
                        }
                        Err(ExecError::Db(e)) => {
                            let _ = tx.rollback().await;
                            if e.kind != DbErrorKind::Retry || attempt >= WRITE_ATTEMPTS {
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

    /// Run maintenance `f` in a transaction where writes run: on the SQLite writer thread (between
    /// groups) or on a PostgreSQL connection. `commit: false` rolls it back (read-only checks
    /// that work on scratch copies).
    pub(crate) async fn maintain<T, F>(&self, commit: bool, f: F) -> Result<T, StoreError>
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
                let mut tx = pg_connection(pool).await?;
                tx.begin("BEGIN").await.map_err(store_error)?;
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
                let out = f(&mut tx).await.map_err(store_error)?;
                if commit {
                    tx.commit().await.map_err(store_error)?;
                } else {
                    tx.rollback().await.map_err(store_error)?;
                }
                Ok(out)
            }
        }
    }
}

/// The SQLite writer: take every write waiting, run each in its own savepoint inside one
/// transaction, commit once (one fsync for the group under `synchronous=FULL`), then answer
/// each request (group commit). A write that fails rolls back only its savepoint; if the commit
/// itself fails, every write of the group gets the error, so no request is ever acknowledged
/// without being durable. A panic while executing a group rolls it back, answers its writes
/// with an error and leaves the thread serving the next group.
fn writer_thread(
    mut conn: SqliteConn,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    observer: &ObserverSlot,
    panic_next_group: &std::sync::atomic::AtomicBool,
) {
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
                } => group.push((tenant, *write, reply)),
                Job::Task(task) => {
                    // Maintenance runs alone, after the writes that came before it.
                    flush_group(
                        &mut conn,
                        writer,
                        std::mem::take(&mut group),
                        observer,
                        panic_next_group,
                    );
                    if std::panic::catch_unwind(AssertUnwindSafe(|| task(&mut conn))).is_err() {
                        let _ = run_now(conn.batch("ROLLBACK"));
                    }
                }
            }
            if group.len() < MAX_GROUP {
                next = jobs.try_recv().ok();
            }
        }
        flush_group(&mut conn, writer, group, observer, panic_next_group);
    }
}

/// Copy the WAL into the database file every 100 ms (PASSIVE: never waits for readers or the
/// writer), so the WAL stays small without checkpoints inside the writer's commits. Ends with
/// the writer.
/// A failing checkpoint (a full disk: the database file cannot grow) is logged once, and once
/// more when checkpoints succeed again, not every 100 ms.
fn checkpoint_thread(mut conn: SqliteConn, writer_done: &std::sync::atomic::AtomicBool) {
    let mut failing = false;
    while !writer_done.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        match run_now(conn.batch("PRAGMA wal_checkpoint(PASSIVE)")) {
            Ok(()) => {
                if failing {
                    tracing::info!("SQLite checkpoints succeed again");
                }
                failing = false;
            }
            Err(e) if e.kind == DbErrorKind::Unavailable => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "SQLite checkpoint failed (retried every 100 ms; logged again once it succeeds)");
                }
                failing = true;
            }
        }
    }
}

fn flush_group(
    conn: &mut SqliteConn,
    writer: Writer,
    group: Vec<(String, Write, Reply)>,
    observer: &ObserverSlot,
    panic_next_group: &std::sync::atomic::AtomicBool,
) {
    if group.is_empty() {
        return;
    }
    let (work, replies): (Vec<(String, Write)>, Vec<Reply>) = group
        .into_iter()
        .map(|(tenant, write, reply)| ((tenant, write), reply))
        .unzip();
    let count = work.len();
    let started = std::time::Instant::now();
    let results = match std::panic::catch_unwind(AssertUnwindSafe(|| {
        run_now(commit_group(conn, writer, work, panic_next_group))
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
    if let Some(observer) = observer.get() {
        observer.group_committed(count, started.elapsed());
    }
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(result);
    }
}

/// One group: every write in its own savepoint (a failed or rejected write rolls back only its
/// own), one commit for all; a failed commit fails every write of the group.
async fn commit_group(
    c: &mut dyn Conn,
    writer: Writer,
    work: Vec<(String, Write)>,
    panic_next_group: &std::sync::atomic::AtomicBool,
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
        // A full disk: SQLite may have rolled the whole transaction back already, and nothing
        // more can be stored. Roll the group back and refuse each of its writes (none was
        // answered yet), rather than run the rest outside a transaction.
        if let Err(ExecError::Db(e)) = &result {
            if e.kind == DbErrorKind::Full {
                let e = e.clone();
                let _ = c.batch("ROLLBACK").await;
                return all(e);
            }
        }
        let end = if result.is_err() {
            c.batch("ROLLBACK TO w; RELEASE w").await
        } else {
            c.batch("RELEASE w").await
        };
        results.push(match (result, end) {
            (Ok(outcome), Ok(())) => Ok(outcome),
            (Err(ExecError::Rejected(e)), _) => Err(e),
            (Err(ExecError::Db(e)), _) | (Ok(_), Err(e)) => Err(store_error(e)),
        });
    }
    // The test-only fault hook (`SqlStore::inject_panic_in_next_write_group`): the writes ran,
    // nothing is committed yet.
    if panic_next_group.swap(false, std::sync::atomic::Ordering::SeqCst) {
        panic!("injected fault: a panic inside a write group, before its commit");
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
