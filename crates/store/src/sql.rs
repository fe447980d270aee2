//! [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver: one implementation, one SQL
//! text per statement for both dialects (with `$n` placeholders, which both understand), and
//! dialect switches only where the databases differ (pragmas, row locks, schema files).

use std::time::Duration;

use async_trait::async_trait;
use remediate_domain::model::{
    EntityType, DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE,
    MANAGED_DEVICE, RUN_RECORD,
};
use remediate_domain::query::{After, ListQuery, Page, RemediationHistory, Scope};
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Record, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

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
}

pub struct SqlStore {
    dialect: Dialect,
    read: AnyPool,
    /// SQLite has one writer; a single connection serializes write transactions without
    /// SQLITE_BUSY upgrade failures. On PostgreSQL this is the same pool as `read`.
    write: AnyPool,
    secret: Vec<u8>,
    /// SQLite: the group committer that gathers concurrent writes into one transaction.
    committer: Option<tokio::sync::mpsc::Sender<Job>>,
}

/// One write waiting for the group committer.
struct Job {
    tenant: String,
    write: Write,
    reply: tokio::sync::oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

/// Most writes committed together (each in its own savepoint).
const MAX_GROUP: usize = 256;

fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict("An entity with the same key already exists.".into())
        }
        sqlx::Error::Database(db) if db.message().contains("database is locked") => {
            StoreError::Unavailable(db.message().to_owned())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

impl SqlStore {
    /// Connect, create the PostgreSQL database if it does not exist, and migrate the schema.
    pub async fn connect(options: &StoreOptions) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if options.url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if options.url.starts_with("postgres:") || options.url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Internal(format!(
                "unsupported database URL '{}': use sqlite://FILE or postgres://USER@HOST/DB",
                options.url
            )));
        };
        if dialect == Dialect::Postgres {
            use sqlx::migrate::MigrateDatabase;
            let exists = sqlx::Any::database_exists(&options.url)
                .await
                .map_err(map_err)?;
            if !exists {
                if let Err(e) = sqlx::Any::create_database(&options.url).await {
                    // Another process may have created it concurrently.
                    if !sqlx::Any::database_exists(&options.url)
                        .await
                        .map_err(map_err)?
                    {
                        return Err(map_err(e));
                    }
                }
            }
        }
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(if dialect == Dialect::Sqlite { 1 } else { 0 })
                .acquire_timeout(options.acquire_timeout)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if dialect == Dialect::Sqlite {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA busy_timeout = 10000",
                                "PRAGMA foreign_keys = ON",
                            ] {
                                conn.execute(pragma).await?;
                            }
                        }
                        Ok(())
                    })
                })
        };
        let read = pool(options.max_connections.max(1))
            .connect(&options.url)
            .await
            .map_err(map_err)?;
        let write = match dialect {
            Dialect::Sqlite => pool(1).connect(&options.url).await.map_err(map_err)?,
            Dialect::Postgres => read.clone(),
        };
        {
            let mut conn = write.acquire().await.map_err(map_err)?;
            crate::migrate::run(&mut conn, dialect)
                .await
                .map_err(map_err)?;
        }
        let secret = load_secret(&write).await.map_err(map_err)?;
        let committer = match dialect {
            Dialect::Sqlite => {
                let (sender, receiver) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
                tokio::spawn(commit_loop(write.clone(), Writer { dialect }, receiver));
                Some(sender)
            }
            Dialect::Postgres => None,
        };
        Ok(SqlStore {
            dialect,
            read,
            write,
            secret,
            committer,
        })
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

async fn load_secret(pool: &AnyPool) -> Result<Vec<u8>, sqlx::Error> {
    let mut fresh = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
        .map_err(|_| sqlx::Error::Protocol("no system randomness".into()))?;
    let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('paging_secret', $1) ON CONFLICT (key) DO NOTHING",
    )
    .bind(hex)
    .execute(pool)
    .await?;
    let (value,): (String,) = sqlx::query_as("SELECT value FROM meta WHERE key = 'paging_secret'")
        .fetch_one(pool)
        .await?;
    Ok(value.into_bytes())
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Bytes(v) => query.bind(v),
        };
    }
    query
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
    row: &AnyRow,
    offset: usize,
) -> Result<Record, sqlx::Error> {
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
        record.set_link(*link, row.try_get::<Option<String>, _>(offset + n + i)?);
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

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Executes write commands inside a transaction; holds only what that needs.
#[derive(Debug, Clone, Copy)]
struct Writer {
    dialect: Dialect,
}

impl Writer {
    async fn fetch(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        key: &EntityRef,
        lock: bool,
    ) -> Result<Option<Record>, sqlx::Error> {
        let entity = entity_of(key);
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {} FROM \"{}\" t",
            select_columns(entity, "t", false),
            entity.table
        ));
        key_where(&mut sql, tenant, key);
        if lock && self.dialect == Dialect::Postgres {
            sql.push(" FOR UPDATE");
        }
        let row = bind_all(sqlx::query(&sql.text), sql.args)
            .fetch_optional(&mut **tx)
            .await?;
        row.map(|r| decode_record(entity, &r, 0)).transpose()
    }

    async fn exists(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        key: &EntityRef,
    ) -> Result<bool, sqlx::Error> {
        let entity = entity_of(key);
        let mut sql = Sql::default();
        sql.push(&format!("SELECT 1 FROM \"{}\" t", entity.table));
        key_where(&mut sql, tenant, key);
        Ok(bind_all(sqlx::query(&sql.text), sql.args)
            .fetch_optional(&mut **tx)
            .await?
            .is_some())
    }

    async fn update_columns(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        key: &EntityRef,
        record: &Record,
        changed: &[usize],
        device: Option<&str>,
    ) -> Result<(), sqlx::Error> {
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
        bind_all(sqlx::query(&sql.text), sql.args)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Append a run record of `state`, in the same transaction as the change.
    async fn append_history(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        state: &Record,
    ) -> Result<(), sqlx::Error> {
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
        bind_all(sqlx::query(&sql.text), sql.args)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The device has reported the script: its queued on-demand run is done.
    async fn clear_on_demand(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        state: &Record,
    ) -> Result<(), sqlx::Error> {
        if let (Some(device), Some(script)) = (&state.device_id, &state.parent) {
            sqlx::query("DELETE FROM on_demand_requests WHERE \"tenant\" = $1 AND \"managedDeviceId\" = $2 AND \"scriptId\" = $3")
                .bind(tenant.to_owned())
                .bind(device.clone())
                .bind(script.clone())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Check that `device` exists and no other run state of `script_id` is bound to it.
    async fn check_bind(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        script_id: &str,
        device: &str,
    ) -> Result<Result<(), StoreError>, sqlx::Error> {
        if !self
            .exists(tx, tenant, &EntityRef::Device(device.to_owned()))
            .await?
        {
            return Ok(Err(StoreError::InvalidReference(format!(
                "The managedDevice '{device}' named by 'managedDevice@odata.bind' does not exist."
            ))));
        }
        let existing: Option<(String,)> = sqlx::query_as(
            "SELECT \"id\" FROM device_run_states WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"managedDeviceId\" = $3",
        )
        .bind(tenant.to_owned())
        .bind(script_id.to_owned())
        .bind(device.to_owned())
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((id,)) = existing {
            return Ok(Err(StoreError::Conflict(format!(
                "A deviceRunState for managedDevice '{device}' already exists for this deviceHealthScript: '{id}'. Update it with PATCH instead."
            ))));
        }
        Ok(Ok(()))
    }

    async fn execute(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        write: Write,
    ) -> Result<Result<WriteOutcome, StoreError>, sqlx::Error> {
        match write {
            Write::CreateScript { record } | Write::CreateDevice { record } => {
                let sql = insert_sql(tenant, &record);
                bind_all(sqlx::query(&sql.text), sql.args)
                    .execute(&mut **tx)
                    .await?;
                Ok(Ok(WriteOutcome::Created(record)))
            }
            Write::CreateRunState { record } => {
                let script_id = record.parent.clone().unwrap_or_default();
                if !self
                    .exists(tx, tenant, &EntityRef::Script(script_id.clone()))
                    .await?
                {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{script_id}' does not exist."
                    ))));
                }
                if let Some(device) = &record.device_id {
                    if let Err(e) = self.check_bind(tx, tenant, &script_id, device).await? {
                        return Ok(Err(e));
                    }
                }
                let sql = insert_sql(tenant, &record);
                bind_all(sqlx::query(&sql.text), sql.args)
                    .execute(&mut **tx)
                    .await?;
                self.append_history(tx, tenant, &record).await?;
                self.clear_on_demand(tx, tenant, &record).await?;
                Ok(Ok(WriteOutcome::Created(record)))
            }
            Write::UpdateScript { id, changes } => {
                let key = EntityRef::Script(id.clone());
                let Some(mut record) = self.fetch(tx, tenant, &key, true).await? else {
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
                self.update_columns(tx, tenant, &key, &record, &changed, None)
                    .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::UpdateDevice { id, changes } => {
                let key = EntityRef::Device(id.clone());
                let Some(mut record) = self.fetch(tx, tenant, &key, true).await? else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The managedDevice '{id}' does not exist."
                    ))));
                };
                let changed: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
                for (index, value) in changes {
                    record.values[index] = value;
                }
                self.update_columns(tx, tenant, &key, &record, &changed, None)
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
                let Some(mut record) = self.fetch(tx, tenant, &key, true).await? else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
                    ))));
                };
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
                            if let Err(e) = self.check_bind(tx, tenant, &script_id, &device).await? {
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
                self.update_columns(tx, tenant, &key, &record, &changed, new_device.as_deref())
                    .await?;
                let after: Vec<Value> = tracked.iter().map(|n| record.get(n).clone()).collect();
                if before != after {
                    self.append_history(tx, tenant, &record).await?;
                }
                self.clear_on_demand(tx, tenant, &record).await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::DeleteScript { id } => {
                for table in [
                    "run_history",
                    "device_run_states",
                    "device_health_script_assignments",
                    "on_demand_requests",
                ] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE \"tenant\" = $1 AND \"scriptId\" = $2"
                    ))
                    .bind(tenant.to_owned())
                    .bind(id.clone())
                    .execute(&mut **tx)
                    .await?;
                }
                self.delete(
                    tx,
                    tenant,
                    &EntityRef::Script(id.clone()),
                    format!("The deviceHealthScript '{id}' does not exist."),
                )
                .await
            }
            Write::CreateAssignment { record } => {
                let script_id = record.parent.clone().unwrap_or_default();
                if !self
                    .exists(tx, tenant, &EntityRef::Script(script_id.clone()))
                    .await?
                {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{script_id}' does not exist."
                    ))));
                }
                let key = EntityRef::Assignment {
                    script_id,
                    id: record.id().to_owned(),
                };
                if self.exists(tx, tenant, &key).await? {
                    return Ok(Err(StoreError::Conflict(format!(
                        "An assignment with the id '{}' (the same target group) already exists for this deviceHealthScript.",
                        record.id()
                    ))));
                }
                let sql = insert_sql(tenant, &record);
                bind_all(sqlx::query(&sql.text), sql.args)
                    .execute(&mut **tx)
                    .await?;
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
                let Some(mut record) = self.fetch(tx, tenant, &key, true).await? else {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScriptAssignment '{id}' does not exist in deviceHealthScript '{script_id}'."
                    ))));
                };
                let changed: Vec<usize> = changes.iter().map(|(i, _)| *i).collect();
                for (index, value) in changes {
                    record.values[index] = value;
                }
                self.update_columns(tx, tenant, &key, &record, &changed, None)
                    .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::DeleteAssignment { script_id, id } => {
                let message = format!("The deviceHealthScriptAssignment '{id}' does not exist in deviceHealthScript '{script_id}'.");
                self.delete(
                    tx,
                    tenant,
                    &EntityRef::Assignment { script_id, id },
                    message,
                )
                .await
            }
            Write::Assign { script_id, records } => {
                if !self
                    .exists(tx, tenant, &EntityRef::Script(script_id.clone()))
                    .await?
                {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The deviceHealthScript '{script_id}' does not exist."
                    ))));
                }
                sqlx::query("DELETE FROM device_health_script_assignments WHERE \"tenant\" = $1 AND \"scriptId\" = $2")
                    .bind(tenant.to_owned())
                    .bind(script_id.clone())
                    .execute(&mut **tx)
                    .await?;
                for record in &records {
                    let sql = insert_sql(tenant, record);
                    bind_all(sqlx::query(&sql.text), sql.args)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::RequestOnDemand {
                device_id,
                script_id,
            } => {
                if !self
                    .exists(tx, tenant, &EntityRef::Device(device_id.clone()))
                    .await?
                {
                    return Ok(Err(StoreError::NotFound(format!(
                        "The managedDevice '{device_id}' does not exist."
                    ))));
                }
                if !self
                    .exists(tx, tenant, &EntityRef::Script(script_id.clone()))
                    .await?
                {
                    return Ok(Err(StoreError::InvalidReference(format!(
                        "The scriptPolicyId '{script_id}' does not name a deviceHealthScript of this tenant."
                    ))));
                }
                sqlx::query(
                    "INSERT INTO on_demand_requests (\"tenant\", \"managedDeviceId\", \"scriptId\", \"requestedDateTime\") \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (\"tenant\", \"managedDeviceId\", \"scriptId\") \
                     DO UPDATE SET \"requestedDateTime\" = excluded.\"requestedDateTime\"",
                )
                .bind(tenant.to_owned())
                .bind(device_id)
                .bind(script_id)
                .bind(Instant::now().ticks())
                .execute(&mut **tx)
                .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::SetGlobalScriptsState { state } => {
                sqlx::query(
                    "INSERT INTO tenant_settings (\"tenant\", \"globalScriptsState\") VALUES ($1, $2) \
                     ON CONFLICT (\"tenant\") DO UPDATE SET \"globalScriptsState\" = excluded.\"globalScriptsState\"",
                )
                .bind(tenant.to_owned())
                .bind(state)
                .execute(&mut **tx)
                .await?;
                Ok(Ok(WriteOutcome::Updated))
            }
            Write::DeleteDevice { id } => {
                self.delete(
                    tx,
                    tenant,
                    &EntityRef::Device(id.clone()),
                    format!("The managedDevice '{id}' does not exist."),
                )
                .await
            }
            Write::DeleteRunState { script_id, id } => {
                let message = format!(
                    "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
                );
                self.delete(tx, tenant, &EntityRef::RunState { script_id, id }, message)
                    .await
            }
        }
    }

    async fn delete(
        &self,
        tx: &mut Tx<'_>,
        tenant: &str,
        key: &EntityRef,
        missing: String,
    ) -> Result<Result<WriteOutcome, StoreError>, sqlx::Error> {
        let entity = entity_of(key);
        let mut sql = Sql::default();
        // The alias keeps `key_where` usable; both databases accept `DELETE FROM x AS t`.
        sql.push(&format!("DELETE FROM \"{}\" AS t", entity.table));
        key_where(&mut sql, tenant, key);
        let done = bind_all(sqlx::query(&sql.text), sql.args)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(Err(StoreError::NotFound(missing)));
        }
        Ok(Ok(WriteOutcome::Deleted))
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn write(&self, tenant: &str, write: Write) -> Result<WriteOutcome, StoreError> {
        if let Some(committer) = &self.committer {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job {
                tenant: tenant.to_owned(),
                write,
                reply,
            };
            committer
                .send(job)
                .await
                .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
            return answer
                .await
                .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        }
        let writer = Writer {
            dialect: self.dialect,
        };
        let mut tx = self.write.begin().await.map_err(map_err)?;
        match writer.execute(&mut tx, tenant, write).await {
            Ok(Ok(outcome)) => {
                tx.commit().await.map_err(map_err)?;
                Ok(outcome)
            }
            Ok(Err(e)) => {
                tx.rollback().await.map_err(map_err)?;
                Err(e)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(map_err(e))
            }
        }
    }

    async fn get(&self, tenant: &str, key: &EntityRef) -> Result<Option<Record>, StoreError> {
        let entity = entity_of(key);
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {} FROM \"{}\" t",
            select_columns(entity, "t", false),
            entity.table
        ));
        key_where(&mut sql, tenant, key);
        let row = bind_all(sqlx::query(&sql.text), sql.args)
            .fetch_optional(&self.read)
            .await
            .map_err(map_err)?;
        row.map(|r| decode_record(entity, &r, 0))
            .transpose()
            .map_err(map_err)
    }

    async fn list(&self, tenant: &str, query: &ListQuery) -> Result<Page, StoreError> {
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
        from.push(" WHERE t.\"tenant\" = ")
            .arg(Arg::Text(Some(tenant.to_owned())));
        match &query.scope {
            Scope::RunStates { script_id } | Scope::Assignments { script_id } => {
                from.push(" AND t.\"scriptId\" = ")
                    .arg(Arg::Text(Some(script_id.clone())));
            }
            Scope::History {
                script_id,
                state_id,
            } => {
                from.push(" AND t.\"scriptId\" = ")
                    .arg(Arg::Text(Some(script_id.clone())));
                from.push(" AND t.\"stateId\" = ")
                    .arg(Arg::Text(Some(state_id.clone())));
            }
            Scope::Scripts | Scope::Devices => {}
        }
        if let Some(filter) = &query.filter {
            from.push(" AND ");
            translate::filter(&mut from, filter);
        }
        let count = if query.count {
            let sql = Sql {
                text: format!("SELECT COUNT(*){}", from.text),
                args: from.args.clone(),
            };
            let row = bind_all(sqlx::query(&sql.text), sql.args)
                .fetch_one(&self.read)
                .await
                .map_err(map_err)?;
            Some(row.try_get::<i64, _>(0).map_err(map_err)?.max(0) as u64)
        } else {
            None
        };
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
        let rows = bind_all(sqlx::query(&sql.text), sql.args)
            .fetch_all(&self.read)
            .await
            .map_err(map_err)?;
        let has_more = rows.len() > query.top;
        let mut page = Page {
            records: Vec::new(),
            devices: Vec::new(),
            next: None,
            count,
        };
        let base = column_count(entity);
        let device_width = if query.expand_device {
            column_count(&MANAGED_DEVICE)
        } else {
            0
        };
        for row in rows.iter().take(query.top) {
            page.records
                .push(decode_record(entity, row, 0).map_err(map_err)?);
            if query.expand_device {
                let device_id: Option<String> = row.try_get(base).map_err(map_err)?;
                page.devices.push(match device_id {
                    Some(_) => Some(decode_record(&MANAGED_DEVICE, row, base).map_err(map_err)?),
                    None => None,
                });
            }
        }
        if has_more {
            if let Some(row) = rows.get(query.top.saturating_sub(1)) {
                let offset = base + device_width;
                let mut values = Vec::new();
                for (i, key) in keys.iter().enumerate().take(keys.len() - 1) {
                    values.push(if key.text {
                        row.try_get::<Option<String>, _>(offset + i)
                            .map_err(map_err)?
                            .map_or(Value::Null, Value::Str)
                    } else {
                        row.try_get::<Option<i64>, _>(offset + i)
                            .map_err(map_err)?
                            .map_or(Value::Null, Value::Int)
                    });
                }
                let id: String = row.try_get(offset + keys.len() - 1).map_err(map_err)?;
                page.next = Some(After { values, id });
            }
        }
        Ok(page)
    }

    async fn run_summary(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<Record>, StoreError> {
        crate::views::run_summary(&self.read, tenant, script_id)
            .await
            .map_err(map_err)
    }

    async fn remediation_history(
        &self,
        tenant: &str,
        script_id: &str,
    ) -> Result<Option<RemediationHistory>, StoreError> {
        crate::views::remediation_history(&self.read, tenant, script_id)
            .await
            .map_err(map_err)
    }

    async fn remediation_summary(&self, tenant: &str) -> Result<(i64, i64), StoreError> {
        crate::views::remediation_summary(&self.read, tenant)
            .await
            .map_err(map_err)
    }

    async fn device_script_states(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<Record>>, StoreError> {
        crate::views::device_script_states(&self.read, tenant, device_id)
            .await
            .map_err(map_err)
    }

    async fn pending_on_demand(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<Vec<(String, Instant)>>, StoreError> {
        crate::views::pending_on_demand(&self.read, tenant, device_id)
            .await
            .map_err(map_err)
    }

    async fn global_scripts_state(&self, tenant: &str) -> Result<i64, StoreError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT \"globalScriptsState\" FROM tenant_settings WHERE \"tenant\" = $1",
        )
        .bind(tenant.to_owned())
        .fetch_optional(&self.read)
        .await
        .map_err(map_err)?;
        Ok(row.map_or(0, |(v,)| v))
    }

    async fn prune_history(&self, cutoff: Instant) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM run_history WHERE \"recordedDateTime\" < $1")
            .bind(cutoff.ticks())
            .execute(&self.write)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn assignment_targets(&self, tenant: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT \"scriptId\", \"target\" FROM device_health_script_assignments WHERE \"tenant\" = $1",
        )
        .bind(tenant.to_owned())
        .fetch_all(&self.read)
        .await
        .map_err(map_err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, t)| Some((s, t?)))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn paging_secret(&self) -> &[u8] {
        &self.secret
    }

    fn dialect(&self) -> Dialect {
        self.dialect
    }
}

/// Group commit (SQLite): take every write waiting, run each in its own savepoint inside one
/// transaction, commit once (one fsync for the group under `synchronous=FULL`), then answer each
/// request. A write that fails rolls back only its savepoint; if the commit itself fails, every
/// write of the group gets the error, so no request is ever acknowledged without being durable.
async fn commit_loop(pool: AnyPool, writer: Writer, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (work, replies): (Vec<(String, Write)>, Vec<_>) = group
            .into_iter()
            .map(|j| ((j.tenant, j.write), j.reply))
            .unzip();
        let results = commit_group(&pool, writer, work).await;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

async fn commit_group(
    pool: &AnyPool,
    writer: Writer,
    work: Vec<(String, Write)>,
) -> Vec<Result<WriteOutcome, StoreError>> {
    let count = work.len();
    let all = |e: StoreError| (0..count).map(|_| Err(e.clone())).collect();
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return all(map_err(e)),
    };
    let mut results = Vec::with_capacity(count);
    for (tenant, write) in work {
        let mut savepoint = match sqlx::Acquire::begin(&mut tx).await {
            Ok(sp) => sp,
            Err(e) => {
                results.push(Err(map_err(e)));
                continue;
            }
        };
        match writer.execute(&mut savepoint, &tenant, write).await {
            Ok(Ok(outcome)) => match savepoint.commit().await {
                Ok(()) => results.push(Ok(outcome)),
                Err(e) => results.push(Err(map_err(e))),
            },
            Ok(Err(e)) => {
                let _ = savepoint.rollback().await;
                results.push(Err(e));
            }
            Err(e) => {
                let _ = savepoint.rollback().await;
                results.push(Err(map_err(e)));
            }
        }
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => {
            let error = map_err(e);
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
