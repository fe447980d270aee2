//! Schema parity: the SQLite and the PostgreSQL migrations (`crates/store/migrations/{sqlite,
//! postgres}`), applied by the store to fresh databases, must describe the same tables, columns,
//! column types (as mapped below), nullability, primary keys and indexes (names, uniqueness,
//! partiality, key columns and their direction). [`differences`] compares two descriptions;
//! its unit tests show that it reports each kind of disagreement.
//!
//! Normalisations — each a difference between the databases that does not change what the store
//! reads or writes:
//! 1. **Types** are compared by what the row codec reads (`db::Cell`): SQLite declared types by
//!    SQLite's affinity rules (contains `INT` → integer; `CHAR`, `CLOB` or `TEXT` → text; `BLOB`
//!    or none → bytes; anything else → "other", which matches nothing), PostgreSQL `bigint`,
//!    `integer`, `smallint`, `boolean` → integer, `text` and `character varying` → text,
//!    `bytea` → bytes.
//! 2. **Primary-key columns are NOT NULL** on SQLite: PostgreSQL implies it; SQLite does not for a
//!    key that is not `INTEGER PRIMARY KEY` (`"key" TEXT PRIMARY KEY` reports nullable), and the
//!    store never writes a null key.
//! 3. **Collations** are compared on text columns only: SQLite `BINARY` and PostgreSQL `"C"` (or
//!    `"POSIX"`) are both byte order and count as the same; PostgreSQL's database default (a
//!    column without `COLLATE "C"`) or any other collation is reported. (SQLite's table_info does
//!    not report a column's collation; the loader reads it from a probe index on the column,
//!    created and rolled back.)
//! 4. **Primary-key indexes** (`sqlite_autoindex_*` with origin `pk`, PostgreSQL's `*_pkey`) are
//!    compared as the primary key, not as named indexes.
//! 5. **`NULLS FIRST` / `NULLS LAST`** of index keys are ignored: SQLite reports no NULL placement
//!    (it always sorts NULLs first ascending), and every query's `ORDER BY` names its NULL
//!    placement, so it decides only whether PostgreSQL can walk the index
//!    (docs/query-plans.md), not any result. Key direction (`DESC`) is compared.
//! 6. **Index key collations** are ignored: an index follows its column's collation (3).
//! 7. **SQLite's own tables** (`sqlite_*`, e.g. the planner statistics of `PRAGMA optimize`) are
//!    left out.
//! 8. **`schema_migrations`' collations** are not compared: the migrator creates that table itself
//!    (`migrate.rs`, one statement for both databases, so its `name` has PostgreSQL's database
//!    collation), before and outside the migration files this test is about; nothing sorts or
//!    compares its names. Its columns, types, nullability and key are compared.
//! 9. **Full-text indexes** are left out: SQLite's FTS5 virtual tables and their shadow tables
//!    (`pragma_table_list` types `virtual` and `shadow`) and PostgreSQL's indexes other than
//!    B-trees (the GIN trigram index) — each database's own way to find a device-name search
//!    (migration 0012, docs/query-plans.md); both are read only to narrow rows the generic
//!    condition then decides.
//!
//! Column order is not compared: every statement names its columns.

use std::collections::{BTreeMap, BTreeSet};

use remediate_store::{SqlStore, StoreOptions};

use crate::{Backend, Scratch};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Type {
    Integer,
    Text,
    Bytes,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDesc {
    pub ty: Type,
    pub not_null: bool,
    /// `binary` (byte order), another collation's name, or empty for non-text columns.
    pub collation: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDesc {
    pub unique: bool,
    pub partial: bool,
    /// Key columns in order, with `true` for descending.
    pub columns: Vec<(String, bool)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDesc {
    pub columns: BTreeMap<String, ColumnDesc>,
    pub primary_key: Vec<String>,
    pub indexes: BTreeMap<String, IndexDesc>,
}

pub type Schema = BTreeMap<String, TableDesc>;

/// Every disagreement between the two schemas, in words (empty: they agree).
pub fn differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = sqlite.keys().chain(postgres.keys()).collect();
    for name in names {
        match (sqlite.get(name), postgres.get(name)) {
            (Some(a), Some(b)) => compare_tables(name, a, b, &mut out),
            (Some(_), None) => out.push(format!("table {name}: only in SQLite")),
            (None, Some(_)) => out.push(format!("table {name}: only in PostgreSQL")),
            (None, None) => unreachable!(),
        }
    }
    out
}

fn compare_tables(table: &str, a: &TableDesc, b: &TableDesc, out: &mut Vec<String>) {
    let columns: BTreeSet<&String> = a.columns.keys().chain(b.columns.keys()).collect();
    for column in columns {
        let at = format!("column {table}.{column}");
        match (a.columns.get(column), b.columns.get(column)) {
            (Some(x), Some(y)) => {
                if x.ty != y.ty {
                    out.push(format!(
                        "{at}: type {:?} on SQLite, {:?} on PostgreSQL",
                        x.ty, y.ty
                    ));
                }
                if x.not_null != y.not_null {
                    let says = |n: bool| if n { "NOT NULL" } else { "nullable" };
                    out.push(format!(
                        "{at}: {} on SQLite, {} on PostgreSQL",
                        says(x.not_null),
                        says(y.not_null)
                    ));
                }
                if x.collation != y.collation {
                    out.push(format!(
                        "{at}: collation {:?} on SQLite, {:?} on PostgreSQL",
                        x.collation, y.collation
                    ));
                }
            }
            (Some(_), None) => out.push(format!("{at}: only in SQLite")),
            (None, Some(_)) => out.push(format!("{at}: only in PostgreSQL")),
            (None, None) => unreachable!(),
        }
    }
    if a.primary_key != b.primary_key {
        out.push(format!(
            "table {table}: primary key ({}) on SQLite, ({}) on PostgreSQL",
            a.primary_key.join(", "),
            b.primary_key.join(", ")
        ));
    }
    let indexes: BTreeSet<&String> = a.indexes.keys().chain(b.indexes.keys()).collect();
    for index in indexes {
        let at = format!("index {table}.{index}");
        match (a.indexes.get(index), b.indexes.get(index)) {
            (Some(x), Some(y)) => {
                if x.unique != y.unique {
                    out.push(format!(
                        "{at}: unique {} on SQLite, {} on PostgreSQL",
                        x.unique, y.unique
                    ));
                }
                if x.partial != y.partial {
                    out.push(format!(
                        "{at}: partial {} on SQLite, {} on PostgreSQL",
                        x.partial, y.partial
                    ));
                }
                if x.columns != y.columns {
                    out.push(format!(
                        "{at}: columns {:?} on SQLite, {:?} on PostgreSQL",
                        x.columns, y.columns
                    ));
                }
            }
            (Some(_), None) => out.push(format!("{at}: only in SQLite")),
            (None, Some(_)) => out.push(format!("{at}: only in PostgreSQL")),
            (None, None) => unreachable!(),
        }
    }
}

/// Normalisations 2, 3 and 8 (see the module header); 1 and 4–7 are applied by the loaders.
pub fn normalize(schema: &mut Schema) {
    for (name, table) in schema.iter_mut() {
        if name == "schema_migrations" {
            for column in table.columns.values_mut() {
                column.collation.clear();
            }
        }
        for name in &table.primary_key {
            if let Some(column) = table.columns.get_mut(name) {
                column.not_null = true;
            }
        }
        for column in table.columns.values_mut() {
            if column.ty != Type::Text {
                column.collation.clear();
            }
        }
    }
}

fn sqlite_type(declared: &str) -> Type {
    let upper = declared.to_ascii_uppercase();
    if upper.contains("INT") {
        Type::Integer
    } else if ["CHAR", "CLOB", "TEXT"].iter().any(|t| upper.contains(t)) {
        Type::Text
    } else if upper.is_empty() || upper.contains("BLOB") {
        Type::Bytes
    } else {
        Type::Other(declared.to_owned())
    }
}

fn postgres_type(data_type: &str) -> Type {
    match data_type {
        "bigint" | "integer" | "smallint" | "boolean" => Type::Integer,
        "text" | "character varying" => Type::Text,
        "bytea" => Type::Bytes,
        other => Type::Other(other.to_owned()),
    }
}

fn collation_name(name: Option<&str>) -> String {
    match name {
        Some(n) if n.eq_ignore_ascii_case("binary") || n == "C" || n == "POSIX" => "binary".into(),
        Some(n) => n.to_owned(),
        None => "database default".into(),
    }
}

/// The schema of a SQLite file.
pub fn sqlite_schema(path: &str) -> Schema {
    let conn = rusqlite::Connection::open(path).unwrap();
    let strings = |sql: &str, arg: &str| -> Vec<String> {
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement.query_map([arg], |row| row.get::<_, String>(0));
        rows.unwrap().map(Result::unwrap).collect()
    };
    let tables = strings(
        "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
         AND substr(name, 1, 7) <> ?1",
        "sqlite_",
    );
    // Probe indexes (to read column collations) are rolled back.
    conn.execute_batch("BEGIN").unwrap();
    let mut schema = Schema::new();
    for table in tables {
        let mut desc = TableDesc::default();
        let mut statement = conn
            .prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
            .unwrap();
        let columns: Vec<(String, String, bool, i64)> = statement
            .query_map([&table], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut key: Vec<(i64, String)> = Vec::new();
        for (name, declared, not_null, pk) in columns {
            let ty = sqlite_type(&declared);
            let collation = if ty == Type::Text {
                conn.execute_batch(&format!(
                    "CREATE INDEX \"parity_probe\" ON \"{table}\" (\"{name}\")"
                ))
                .unwrap();
                let coll = conn
                    .query_row(
                        "SELECT coll FROM pragma_index_xinfo('parity_probe') WHERE key = 1",
                        [],
                        |r| r.get::<_, String>(0),
                    )
                    .unwrap();
                conn.execute_batch("DROP INDEX \"parity_probe\"").unwrap();
                collation_name(Some(&coll))
            } else {
                String::new()
            };
            if pk > 0 {
                key.push((pk, name.clone()));
            }
            desc.columns.insert(
                name,
                ColumnDesc {
                    ty,
                    not_null,
                    collation,
                },
            );
        }
        key.sort();
        desc.primary_key = key.into_iter().map(|(_, n)| n).collect();
        let mut statement = conn
            .prepare("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1)")
            .unwrap();
        let indexes: Vec<(String, bool, String, bool)> = statement
            .query_map([&table], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (name, unique, origin, partial) in indexes {
            if origin == "pk" {
                continue;
            }
            let mut statement = conn
                .prepare(
                    "SELECT name, \"desc\" FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno",
                )
                .unwrap();
            let columns = statement
                .query_map([&name], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?
                            .unwrap_or_else(|| "<expression>".into()),
                        r.get::<_, bool>(1)?,
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            desc.indexes.insert(
                name,
                IndexDesc {
                    unique,
                    partial,
                    columns,
                },
            );
        }
        schema.insert(table, desc);
    }
    conn.execute_batch("ROLLBACK").unwrap();
    schema
}

/// The schema of a PostgreSQL database's `public` schema.
pub async fn postgres_schema(url: &str) -> Schema {
    let conn = crate::pg_connect(url).await.unwrap();
    let mut schema = Schema::new();
    let tables = conn
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap();
    for row in tables {
        schema.insert(row.get(0), TableDesc::default());
    }
    let columns = conn
        .query(
            "SELECT table_name::text, column_name::text, data_type::text, is_nullable = 'NO', \
                    collation_name::text \
             FROM information_schema.columns WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap();
    for row in columns {
        let table: String = row.get(0);
        let ty = postgres_type(&row.get::<_, String>(2));
        let collation = if ty == Type::Text {
            collation_name(row.get::<_, Option<String>>(4).as_deref())
        } else {
            String::new()
        };
        // Views' columns are compared by `views` below, not as tables.
        let Some(desc) = schema.get_mut(&table) else {
            continue;
        };
        desc.columns.insert(
            row.get(1),
            ColumnDesc {
                ty,
                not_null: row.get(3),
                collation,
            },
        );
    }
    // One row per index key column; bit 1 of indoption is DESC (bit 2, NULLS FIRST, is ignored).
    let keys = conn
        .query(
            "SELECT t.relname::text, i.relname::text, ix.indisunique, ix.indisprimary, \
                    ix.indpred IS NOT NULL, COALESCE(a.attname::text, '<expression>'), \
                    (ix.indoption[(k.n - 1)::int] & 1) = 1 \
             FROM pg_index ix \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_class t ON t.oid = ix.indrelid \
             JOIN pg_namespace ns ON ns.oid = t.relnamespace \
             JOIN pg_am am ON am.oid = i.relam AND am.amname = 'btree' \
             CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
             LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum AND k.attnum > 0 \
             WHERE ns.nspname = 'public' AND k.n <= ix.indnkeyatts \
             ORDER BY 1, 2, k.n",
            &[],
        )
        .await
        .unwrap();
    for row in keys {
        let table: String = row.get(0);
        let desc = schema.get_mut(&table).expect("an index of a listed table");
        let column: String = row.get(5);
        if row.get::<_, bool>(3) {
            desc.primary_key.push(column);
            continue;
        }
        let index = desc.indexes.entry(row.get(1)).or_insert(IndexDesc {
            unique: row.get(2),
            partial: row.get(4),
            columns: Vec::new(),
        });
        index.columns.push((column, row.get(6)));
    }
    // Dropping the client ends the session (its task sends Terminate).
    drop(conn);
    schema
}

/// Let the store create and migrate a fresh database, then close it.
async fn migrate(scratch: &Scratch) {
    let store = SqlStore::connect(&StoreOptions {
        url: scratch.url.clone(),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(10),
        statement_timeout: std::time::Duration::from_secs(30),
    })
    .await
    .unwrap_or_else(|e| panic!("migrating {}: {e}", scratch.url));
    store.close().await;
}

/// The tables the store's statements use: the schemas cannot agree by both being empty.
const CORE_TABLES: [&str; 8] = [
    "device_health_scripts",
    "device_run_states",
    "managed_devices",
    "run_history",
    "device_health_script_assignments",
    "on_demand_requests",
    "counters",
    "schema_migrations",
];

fn assert_loaded(schema: &Schema, which: &str) {
    for table in CORE_TABLES {
        assert!(schema.contains_key(table), "{which} lacks {table}");
    }
    let states = &schema["device_run_states"];
    assert!(states.columns.len() >= 20, "{which}: {states:?}");
    assert_eq!(states.primary_key, ["tenant", "scriptId", "id"], "{which}");
    let index = &states.indexes["device_run_states_det_updated"];
    assert_eq!(index.columns.len(), 5, "{which}");
    assert!(states.indexes["device_run_states_device"].unique, "{which}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_migrations_agree() {
    let Some(postgres) = Scratch::new(Backend::Postgres) else {
        return;
    };
    let sqlite = Scratch::new(Backend::Sqlite).unwrap();
    migrate(&sqlite).await;
    migrate(&postgres).await;
    let mut lite = sqlite_schema(&sqlite.name);
    let mut pg = postgres_schema(&postgres.url).await;
    assert_loaded(&lite, "SQLite");
    assert_loaded(&pg, "PostgreSQL");
    normalize(&mut lite);
    normalize(&mut pg);
    let found = differences(&lite, &pg);
    assert!(
        found.is_empty(),
        "the SQLite and PostgreSQL migrations disagree:\n{}",
        found.join("\n")
    );
    // Views (Entra devices over managed devices): the same names and the same columns.
    let lite_views = sqlite_views(&sqlite.name);
    assert!(lite_views.contains_key("directory_devices"));
    assert_eq!(lite_views, postgres_views(&postgres.url).await);
}

/// Each view of a SQLite file with its column names.
fn sqlite_views(path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c WHERE m.type = 'view'",
        )
        .unwrap();
    let mut views: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rows = statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for row in rows {
        let (view, column) = row.unwrap();
        views.entry(view).or_default().insert(column);
    }
    views
}

/// Each view of a PostgreSQL database's `public` schema with its column names.
async fn postgres_views(url: &str) -> BTreeMap<String, BTreeSet<String>> {
    let conn = crate::pg_connect(url).await.unwrap();
    let rows = conn
        .query(
            "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
             JOIN information_schema.views v ON v.table_schema = c.table_schema AND v.table_name = c.table_name \
             WHERE c.table_schema = 'public'",
            &[],
        )
        .await
        .unwrap();
    let mut views: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in rows {
        views.entry(row.get(0)).or_default().insert(row.get(1));
    }
    views
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_either_database_is_caught() {
    let Some(postgres) = Scratch::new(Backend::Postgres) else {
        return;
    };
    let sqlite = Scratch::new(Backend::Sqlite).unwrap();
    migrate(&sqlite).await;
    migrate(&postgres).await;
    // What a careless migration pair might do: each change on one side only.
    {
        let conn = crate::pg_connect(&postgres.url).await.unwrap();
        conn.batch_execute(
            "ALTER TABLE managed_devices ALTER COLUMN \"serialNumber\" TYPE TEXT COLLATE \"default\"; \
             ALTER TABLE run_history ALTER COLUMN \"detectionState\" SET NOT NULL; \
             DROP INDEX run_history_script; \
             CREATE INDEX run_history_script ON run_history (\"tenant\", \"scriptId\", \"recordedDateTime\" DESC); \
             ALTER TABLE counters ADD COLUMN \"extra\" BIGINT;",
        )
        .await
        .unwrap();
        drop(conn);
    }
    let conn = rusqlite::Connection::open(&sqlite.name).unwrap();
    conn.execute_batch("CREATE INDEX \"meta_value\" ON \"meta\" (\"value\")")
        .unwrap();
    drop(conn);
    let mut lite = sqlite_schema(&sqlite.name);
    let mut pg = postgres_schema(&postgres.url).await;
    normalize(&mut lite);
    normalize(&mut pg);
    let found = differences(&lite, &pg);
    let expected = [
        "column counters.extra: only in PostgreSQL",
        "column managed_devices.serialNumber: collation \"binary\" on SQLite, \"database default\" on PostgreSQL",
        "index meta.meta_value: only in SQLite",
        "column run_history.detectionState: nullable on SQLite, NOT NULL on PostgreSQL",
        "index run_history.run_history_script: columns",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for (found, expected) in found.iter().zip(expected) {
        assert!(found.starts_with(expected), "{found:?} vs {expected:?}");
    }
}

/// The comparison itself, on hand-written descriptions.
mod comparison {
    use super::*;

    fn text_column(not_null: bool) -> ColumnDesc {
        ColumnDesc {
            ty: Type::Text,
            not_null,
            collation: "binary".into(),
        }
    }

    fn sample() -> Schema {
        let mut items = TableDesc::default();
        items.columns.insert("tenant".into(), text_column(true));
        items.columns.insert("id".into(), text_column(true));
        items.columns.insert("name".into(), text_column(false));
        items.columns.insert(
            "n".into(),
            ColumnDesc {
                ty: Type::Integer,
                not_null: false,
                collation: String::new(),
            },
        );
        items.primary_key = vec!["tenant".into(), "id".into()];
        items.indexes.insert(
            "items_n".into(),
            IndexDesc {
                unique: false,
                partial: false,
                columns: vec![("tenant".into(), false), ("n".into(), true)],
            },
        );
        let mut meta = TableDesc::default();
        meta.columns.insert("key".into(), text_column(true));
        meta.primary_key = vec!["key".into()];
        Schema::from([("items".into(), items), ("meta".into(), meta)])
    }

    #[test]
    fn identical_schemas_agree() {
        assert_eq!(differences(&sample(), &sample()), Vec::<String>::new());
    }

    #[test]
    fn every_kind_of_disagreement_is_reported() {
        type Change = fn(&mut Schema);
        let cases: Vec<(Change, &[&str])> = vec![
            (
                |s| {
                    s.remove("meta");
                },
                &["table meta: only in SQLite"],
            ),
            (
                |s| {
                    s.insert("extra".into(), TableDesc::default());
                },
                &["table extra: only in PostgreSQL"],
            ),
            (
                |s| {
                    s.get_mut("items").unwrap().columns.remove("name");
                },
                &["column items.name: only in SQLite"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.columns.get_mut("n").unwrap().ty = Type::Text;
                },
                &["column items.n: type Integer on SQLite, Text on PostgreSQL"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.columns.get_mut("n").unwrap().ty = Type::Other("real".into());
                },
                &["column items.n: type Integer on SQLite, Other(\"real\") on PostgreSQL"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.columns.get_mut("name").unwrap().not_null = true;
                },
                &["column items.name: nullable on SQLite, NOT NULL on PostgreSQL"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.columns.get_mut("name").unwrap().collation = "database default".into();
                },
                &["column items.name: collation \"binary\" on SQLite, \"database default\" on PostgreSQL"],
            ),
            (
                |s| {
                    s.get_mut("items").unwrap().primary_key.reverse();
                },
                &["table items: primary key (tenant, id) on SQLite, (id, tenant) on PostgreSQL"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.indexes.get_mut("items_n").unwrap().columns[1].1 = false;
                },
                &["index items.items_n: columns [(\"tenant\", false), (\"n\", true)] on SQLite, [(\"tenant\", false), (\"n\", false)] on PostgreSQL"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.indexes.get_mut("items_n").unwrap().columns.pop();
                },
                &["index items.items_n: columns"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.indexes.get_mut("items_n").unwrap().unique = true;
                },
                &["index items.items_n: unique false on SQLite, true on PostgreSQL"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    items.indexes.get_mut("items_n").unwrap().partial = true;
                },
                &["index items.items_n: partial false on SQLite, true on PostgreSQL"],
            ),
            (
                |s| {
                    let items = s.get_mut("items").unwrap();
                    let index = items.indexes.remove("items_n").unwrap();
                    items.indexes.insert("items_by_n".into(), index);
                },
                &[
                    "index items.items_by_n: only in PostgreSQL",
                    "index items.items_n: only in SQLite",
                ],
            ),
        ];
        for (change, expected) in cases {
            let mut postgres = sample();
            change(&mut postgres);
            let found = differences(&sample(), &postgres);
            assert_eq!(found.len(), expected.len(), "{found:#?}");
            for (found, expected) in found.iter().zip(expected) {
                assert!(found.starts_with(expected), "{found:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn normalisation_removes_only_the_documented_differences() {
        // SQLite reports `"key" TEXT PRIMARY KEY` as nullable and no collation on integers.
        let mut sqlite = sample();
        sqlite
            .get_mut("meta")
            .unwrap()
            .columns
            .get_mut("key")
            .unwrap()
            .not_null = false;
        sqlite
            .get_mut("items")
            .unwrap()
            .columns
            .get_mut("n")
            .unwrap()
            .collation = "binary".into();
        assert_eq!(differences(&sqlite, &sample()).len(), 2);
        normalize(&mut sqlite);
        assert!(differences(&sqlite, &sample()).is_empty());
        // A nullable column outside the key stays a difference.
        let mut sqlite = sample();
        let items = sqlite.get_mut("items").unwrap();
        items.columns.get_mut("name").unwrap().not_null = true;
        normalize(&mut sqlite);
        assert_eq!(differences(&sqlite, &sample()).len(), 1);
    }

    #[test]
    fn types_map_by_affinity_and_by_name() {
        assert_eq!(sqlite_type("BIGINT"), Type::Integer);
        assert_eq!(sqlite_type("INTEGER"), Type::Integer);
        assert_eq!(sqlite_type("TEXT"), Type::Text);
        assert_eq!(sqlite_type("VARCHAR(10)"), Type::Text);
        assert_eq!(sqlite_type("BLOB"), Type::Bytes);
        assert_eq!(sqlite_type("REAL"), Type::Other("REAL".into()));
        for t in ["bigint", "integer", "smallint", "boolean"] {
            assert_eq!(postgres_type(t), Type::Integer);
        }
        assert_eq!(postgres_type("bytea"), Type::Bytes);
        assert_eq!(
            postgres_type("double precision"),
            Type::Other("double precision".into())
        );
        assert_eq!(collation_name(Some("C")), "binary");
        assert_eq!(collation_name(Some("BINARY")), "binary");
        assert_eq!(collation_name(Some("NOCASE")), "NOCASE");
        assert_eq!(collation_name(None), "database default");
    }
}
