//! Storage conformance suite: calls [`Store`] directly (no HTTP, no process) on SQLite and on
//! PostgreSQL, with domain values built the way `crates/api` builds them (`domain::ops` for
//! creates, `Write` variants for the rest, `ListQuery` with bound columns).
//!
//! Every test runs twice through [`both!`]: on a SQLite file in a fresh temporary directory, and
//! on a fresh PostgreSQL database (127.0.0.1:5432, trust auth, user `postgres`) with a random
//! name, dropped afterwards. Without a reachable PostgreSQL the PostgreSQL half is skipped with a
//! message, except under `CI=true`, where that is a failure (as in `crates/remediate/tests/it`).
//!
//! Modules: `writes` (every write command), `directory` (role scope tags, groups, membership
//! by hand and by rule, filters, targeting reads), `refusals` (refused writes change nothing, also
//! beside accepted ones; tenant isolation), `queries` (filters, ordering, keyset paging, counts,
//! expansion), `text` (the filter → SQL translation of strings: case, exact `id`, LIKE
//! metacharacters, NUL), `counting` (counters, summaries, history, pruning, concurrent writes),
//! `schema` (SQLite and PostgreSQL migrations agree), `migrations` (a database another build
//! migrated is refused), `values` (domain values and reads the
//! tests share).

mod counting;
mod deleted_devices;
mod directory;
mod history_days;
mod migrations;
mod queries;
mod refusals;
mod schema;
mod text;
mod values;
mod writes;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use remediate_store::{SqlStore, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the suite finds PostgreSQL.
pub const POSTGRES: &str = "127.0.0.1:5432";

pub fn postgres_available() -> bool {
    std::net::TcpStream::connect_timeout(&POSTGRES.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

/// `false` (with a message) when PostgreSQL is unreachable outside CI; a panic under `CI=true`.
pub fn require_postgres() -> bool {
    if postgres_available() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("PostgreSQL is not reachable on {POSTGRES}, and CI=true requires it");
    }
    eprintln!("SKIPPED (PostgreSQL half): PostgreSQL is not reachable on {POSTGRES}");
    false
}

/// A direct connection to PostgreSQL beside the store (for reading or changing the database under
/// it), its connection driven by a spawned task until the client is dropped.
pub(crate) async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A fresh database of either kind, removed when dropped.
pub struct Scratch {
    pub url: String,
    /// The SQLite file, or the PostgreSQL database's name.
    pub name: String,
    pub backend: Backend,
}

impl Scratch {
    /// `None` when PostgreSQL is unavailable outside CI.
    pub fn new(backend: Backend) -> Option<Scratch> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("remediate-store-{unique}"));
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join("store.db").display().to_string();
                Some(Scratch {
                    url: format!("sqlite://{file}"),
                    name: file,
                    backend,
                })
            }
            Backend::Postgres => {
                if !require_postgres() {
                    return None;
                }
                let name = format!("remediate_store_{unique}");
                Some(Scratch {
                    url: format!("postgres://postgres@{POSTGRES}/{name}"),
                    name,
                    backend,
                })
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        match self.backend {
            Backend::Sqlite => {
                if let Some(dir) = std::path::Path::new(&self.name).parent() {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            Backend::Postgres => {
                let _ = Command::new("psql")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                        "-q",
                        "-c",
                    ])
                    .arg(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// A connected store on a fresh database.
pub struct TestStore {
    /// Shared so tests can write from several tasks at once. Dropped before the database.
    pub store: Arc<SqlStore>,
    pub backend: Backend,
    _scratch: Scratch,
}

impl std::ops::Deref for TestStore {
    type Target = SqlStore;
    fn deref(&self) -> &SqlStore {
        &self.store
    }
}

impl TestStore {
    /// Connect to a fresh database (the store creates and migrates it); `None` when PostgreSQL is
    /// unavailable outside CI.
    pub async fn open(backend: Backend) -> Option<TestStore> {
        let scratch = Scratch::new(backend)?;
        let store = SqlStore::connect(&StoreOptions {
            url: scratch.url.clone(),
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        })
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", scratch.url));
        Some(TestStore {
            store: Arc::new(store),
            backend,
            _scratch: scratch,
        })
    }
}

/// Define a test that runs once on SQLite and once on PostgreSQL (a multi-threaded runtime, as
/// the server's).
#[macro_export]
macro_rules! both {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($store: $crate::TestStore) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run($crate::TestStore::open($crate::Backend::Sqlite).await.unwrap()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(store) = $crate::TestStore::open($crate::Backend::Postgres).await {
                    run(store).await;
                }
            }
        }
    };
}
