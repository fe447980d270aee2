//! The migrator refuses a database another build migrated (`migrate::check_recorded`): a
//! migration this build does not have (a newer remediate), or one of its migrations recorded
//! with other contents or another name (a draft). A database migrated before checksums were
//! recorded gets them on its next start.

use remediate_store::{SqlStore, StoreOptions};

use crate::history_days::raw;
use crate::{both, TestStore};

/// Start a store on the test's database again: its error's text when it refuses.
async fn reopen(s: &TestStore) -> Result<SqlStore, String> {
    SqlStore::connect(&StoreOptions {
        url: s._scratch.url.clone(),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(10),
        statement_timeout: std::time::Duration::from_secs(30),
    })
    .await
    .map_err(|e| e.to_string())
}

/// `schema_migrations` as (version, name, checksum), in version order.
async fn recorded(s: &TestStore) -> Vec<(i64, String, Option<String>)> {
    const SQL: &str = "SELECT version, name, checksum FROM schema_migrations ORDER BY version";
    match s.backend {
        crate::Backend::Sqlite => {
            let conn = rusqlite::Connection::open(&s._scratch.name).unwrap();
            let mut statement = conn.prepare(SQL).unwrap();
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            rows.map(Result::unwrap).collect()
        }
        crate::Backend::Postgres => {
            let conn = crate::pg_connect(&s._scratch.url).await.unwrap();
            conn.query(SQL, &[])
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        }
    }
}

both!(a_database_another_build_migrated_is_refused, |s| {
    let fresh = recorded(&s).await;
    assert!(fresh.len() >= 12, "{fresh:?}");
    assert!(
        fresh
            .iter()
            .all(|(_, _, sum)| sum.as_ref().is_some_and(|sum| sum.len() == 64)),
        "every applied migration records its checksum: {fresh:?}"
    );
    // A draft of migration 11 (other contents under the same name): refused, naming it.
    raw(
        &s,
        "UPDATE schema_migrations SET checksum = 'draft' WHERE version = 11",
    )
    .await;
    let refused = reopen(&s)
        .await
        .err()
        .expect("a draft of migration 11 is refused");
    assert!(
        refused.contains("migration 11") && refused.contains("other contents"),
        "{refused}"
    );
    // A database migrated before checksums were recorded (no column): accepted, and its
    // checksums filled from this build.
    raw(&s, "ALTER TABLE schema_migrations DROP COLUMN checksum").await;
    reopen(&s)
        .await
        .expect("a database without checksums starts");
    assert_eq!(recorded(&s).await, fresh);
    // A migration under another name: refused.
    raw(
        &s,
        "UPDATE schema_migrations SET name = 'other', checksum = NULL WHERE version = 3",
    )
    .await;
    let refused = reopen(&s).await.err().expect("another name is refused");
    assert!(refused.contains("migration 3 as 'other'"), "{refused}");
    // A refused row is not given this build's checksum.
    let third = recorded(&s).await.into_iter().find(|r| r.0 == 3).unwrap();
    assert_eq!(third.2, None, "{third:?}");
    raw(
        &s,
        "UPDATE schema_migrations SET name = 'counters' WHERE version = 3",
    )
    .await;
    reopen(&s).await.expect("restored");
    assert_eq!(recorded(&s).await, fresh);
    // A migration this build does not have: a newer remediate migrated the database.
    raw(
        &s,
        "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')",
    )
    .await;
    let refused = reopen(&s).await.err().expect("a newer schema is refused");
    assert!(
        refused.contains("migration 999") && refused.contains("newer remediate"),
        "{refused}"
    );
});
