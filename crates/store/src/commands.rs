//! The write-command executor: [`Writer::execute`] runs one validated [`Write`] inside an open
//! transaction (which `crate::writer` begins, commits or rolls back) and ends in a
//! [`WriteOutcome`] or an [`ExecError`]: a rejection (missing entity, taken key, bad reference;
//! nothing of the write may remain) or a database failure.
//!
//! PostgreSQL lock order, the same in every transaction so concurrent writes wait for each other
//! but never deadlock: the script row first ([`Writer::lock_script`]: `FOR KEY SHARE` by writes
//! to what the script contains, `FOR UPDATE` by its deletion), then the entity's own row, then
//! counter rows in one global order (`crate::counters`). SQLite's single writer needs no locks.

use remediate_domain::model::RUN_RECORD;
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Record, Value};

use crate::codec::{entity_of, insert_sql, key_where};
use crate::connect::Dialect;
use crate::counters;
use crate::db::{self, Conn, DbError};
use crate::error::ExecError;
use crate::reads::{exists, fetch_entity};
use crate::translate::{self, Arg, Sql};
use crate::{EntityRef, StoreError};

/// Executes write commands inside a transaction; holds only what that needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer {
    pub dialect: Dialect,
    /// The counter shard this transaction adds to (`counters::SHARDS`; always 0 on SQLite).
    pub shard: i64,
}

/// May a run state of a script be bound to `device`? Only if the device exists and no other run
/// state of the script is bound to it (`existing`).
pub(crate) fn bind_allowed(
    device: &str,
    found: bool,
    existing: Option<String>,
) -> Result<(), StoreError> {
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

pub(crate) fn script_not_found(id: &str) -> ExecError {
    StoreError::NotFound(format!("The deviceHealthScript '{id}' does not exist.")).into()
}

/// Merge changes into a record; the indexes of the properties they set.
pub(crate) fn apply(record: &mut Record, changes: Vec<(usize, Value)>) -> Vec<usize> {
    changes
        .into_iter()
        .map(|(index, value)| {
            record.values[index] = value;
            index
        })
        .collect()
}

/// What the counters know of a run state.
pub(crate) fn counted(record: &Record) -> counters::Counted {
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
    /// Execute one write command in the caller's transaction.
    pub(crate) async fn execute(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        write: Write,
    ) -> Result<WriteOutcome, ExecError> {
        match write {
            Write::Create { of, record } => self.create_item(c, tenant, of, record).await,
            Write::Update { of, keys, changes } => {
                self.update_item(c, tenant, of, keys, changes).await
            }
            Write::Delete { of, keys } => self.delete_item(c, tenant, of, keys).await,
            Write::AddReference { of, parent, item } => {
                self.add_reference(c, tenant, of, parent, item).await
            }
            Write::RemoveReference { of, parent, item } => {
                self.remove_reference(c, tenant, of, parent, item).await
            }
            Write::CreateEnrollmentSecret {
                record,
                secret_hash,
                ..
            } => self.create_secret(c, tenant, record, secret_hash).await,
            Write::CreateExportJob { record, origin } => {
                self.create_export_job(c, tenant, record, origin).await
            }
            Write::UpdateExportJob { id, change } => {
                self.update_export_job(c, tenant, id, change).await
            }
            Write::Enroll {
                secret_hash,
                device,
                credential_hash,
                existing,
            } => {
                self.enroll(c, tenant, secret_hash, device, credential_hash, existing)
                    .await
            }
            Write::CheckIn {
                device_id,
                at,
                credential,
            } => {
                let mut sql = String::from(
                    "UPDATE managed_devices SET \"lastSyncDateTime\" = $3 WHERE \"tenant\" = $1 AND \"id\" = $2",
                );
                if credential {
                    sql.push_str(
                        " AND EXISTS (SELECT 1 FROM device_credentials d WHERE d.\"tenant\" = $1 AND d.\"deviceId\" = $2)",
                    );
                }
                let changed = c
                    .execute(
                        &sql,
                        &[db::text(tenant), db::text(&device_id), db::int(at.ticks())],
                    )
                    .await?;
                if changed == 0 {
                    return Err(StoreError::NotFound(format!(
                        "The managedDevice '{device_id}' does not exist (or its credential was revoked)."
                    ))
                    .into());
                }
                Ok(WriteOutcome::Updated)
            }
            Write::CreateScript { record } => {
                self.check_references(c, tenant, &record).await?;
                let sql = insert_sql(tenant, &record);
                c.execute(&sql.text, &sql.args).await?;
                Ok(WriteOutcome::Created(record))
            }
            Write::CreateDevice { record } => {
                self.check_references(c, tenant, &record).await?;
                let sql = insert_sql(tenant, &record);
                c.execute(&sql.text, &sql.args).await?;
                self.refresh_device(c, tenant, &record).await?;
                counters::bump(c, tenant, counters::DEVICES, self.shard, 1).await?;
                Ok(WriteOutcome::Created(record))
            }
            Write::CreateRunState { record } => self.create_run_state(c, tenant, record).await,
            Write::UpdateScript { id, changes } => {
                let key = EntityRef::Script(id.clone());
                let Some(mut record) = self.fetch(c, tenant, &key, true).await? else {
                    return Err(script_not_found(&id));
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
                self.check_references(c, tenant, &record).await?;
                self.update_columns(c, tenant, &key, &record, &changed, None)
                    .await?;
                Ok(WriteOutcome::Updated)
            }
            Write::UpdateDevice { id, changes } => {
                let key = EntityRef::Device(id.clone());
                let Some(mut record) = self.fetch(c, tenant, &key, true).await? else {
                    return Err(StoreError::NotFound(format!(
                        "The managedDevice '{id}' does not exist."
                    ))
                    .into());
                };
                let changed = apply(&mut record, changes);
                self.check_references(c, tenant, &record).await?;
                self.update_columns(c, tenant, &key, &record, &changed, None)
                    .await?;
                // Memberships follow only the properties rules read (a check-in's
                // lastSyncDateTime does not pay for re-evaluating every dynamic group).
                let read_by_rules = changed.iter().any(|&i| {
                    remediate_domain::rule::MANAGED_DEVICE_RULE_INPUTS
                        .contains(&record.entity.properties[i].name)
                });
                if read_by_rules {
                    self.refresh_device(c, tenant, &record).await?;
                }
                Ok(WriteOutcome::Updated)
            }
            Write::UpdateRunState {
                script_id,
                id,
                changes,
                bind_device,
            } => {
                self.update_run_state(c, tenant, script_id, id, changes, bind_device)
                    .await
            }
            Write::DeleteScript { id } => {
                if !self.lock_script(c, tenant, &id, true).await? {
                    return Err(script_not_found(&id));
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
                    return Err(script_not_found(&script_id));
                }
                let key = EntityRef::Assignment {
                    script_id,
                    id: record.id().to_owned(),
                };
                if exists(c, tenant, &key).await? {
                    return Err(StoreError::Conflict(format!(
                        "An assignment with the id '{}' (the same target group) already exists for this deviceHealthScript.",
                        record.id()
                    ))
                    .into());
                }
                self.check_target_filter(c, tenant, record.get("target"))
                    .await?;
                let sql = insert_sql(tenant, &record);
                c.execute(&sql.text, &sql.args).await?;
                Ok(WriteOutcome::Created(record))
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
                let mut record = self
                    .fetch_in_script(c, tenant, &script_id, &key)
                    .await?
                    .ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "The deviceHealthScriptAssignment '{id}' does not exist in deviceHealthScript '{script_id}'."
                        ))
                    })?;
                let changed = apply(&mut record, changes);
                self.check_target_filter(c, tenant, record.get("target"))
                    .await?;
                self.update_columns(c, tenant, &key, &record, &changed, None)
                    .await?;
                Ok(WriteOutcome::Updated)
            }
            Write::DeleteAssignment { script_id, id } => {
                let message = format!("The deviceHealthScriptAssignment '{id}' does not exist in deviceHealthScript '{script_id}'.");
                if !self.lock_script(c, tenant, &script_id, false).await? {
                    return Err(StoreError::NotFound(message).into());
                }
                self.delete(c, tenant, &EntityRef::Assignment { script_id, id }, message)
                    .await
            }
            Write::Assign { script_id, records } => {
                if !self.lock_script(c, tenant, &script_id, false).await? {
                    return Err(script_not_found(&script_id));
                }
                c.execute("DELETE FROM device_health_script_assignments WHERE \"tenant\" = $1 AND \"scriptId\" = $2", &[db::text(tenant), db::text(&script_id)]).await?;
                for record in &records {
                    self.check_target_filter(c, tenant, record.get("target"))
                        .await?;
                    let sql = insert_sql(tenant, record);
                    c.execute(&sql.text, &sql.args).await?;
                }
                Ok(WriteOutcome::Updated)
            }
            Write::RequestOnDemand {
                device_id,
                script_id,
            } => {
                if !exists(c, tenant, &EntityRef::Device(device_id.clone())).await? {
                    return Err(StoreError::NotFound(format!(
                        "The managedDevice '{device_id}' does not exist."
                    ))
                    .into());
                }
                if !self.lock_script(c, tenant, &script_id, false).await? {
                    return Err(StoreError::InvalidReference(format!(
                        "The scriptPolicyId '{script_id}' does not name a deviceHealthScript of this tenant."
                    ))
                    .into());
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
                Ok(WriteOutcome::Updated)
            }
            Write::SetGlobalScriptsState { state } => {
                c.execute(
                    "INSERT INTO tenant_settings (\"tenant\", \"globalScriptsState\") VALUES ($1, $2) \
                     ON CONFLICT (\"tenant\") DO UPDATE SET \"globalScriptsState\" = excluded.\"globalScriptsState\"",
                    &[db::text(tenant), db::int(state)],
                )
                .await?;
                Ok(WriteOutcome::Updated)
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
                counters::bump(c, tenant, counters::DEVICES, self.shard, -1).await?;
                // Its memberships go, and its credential: the agent's next exchange is refused.
                for statement in [
                    "DELETE FROM group_members WHERE \"tenant\" = $1 AND \"memberId\" = $2",
                    "DELETE FROM device_credentials WHERE \"tenant\" = $1 AND \"deviceId\" = $2",
                ] {
                    c.execute(statement, &[db::text(tenant), db::text(&id)])
                        .await?;
                }
                Ok(deleted)
            }
            Write::DeleteRunState { script_id, id } => {
                let key = EntityRef::RunState {
                    script_id: script_id.clone(),
                    id: id.clone(),
                };
                let record = self
                    .fetch_in_script(c, tenant, &script_id, &key)
                    .await?
                    .ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
                        ))
                    })?;
                let deleted = self.delete(c, tenant, &key, String::new()).await?;
                counters::state_changed(
                    c,
                    tenant,
                    &script_id,
                    self.shard,
                    Some(&counted(&record)),
                    None,
                )
                .await?;
                Ok(deleted)
            }
        }
    }

    /// A device report creating its run state (the hot path): checks, insert, counters,
    /// history, and the on-demand request it answers.
    async fn create_run_state(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        record: Record,
    ) -> Result<WriteOutcome, ExecError> {
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
            return Err(script_not_found(&script_id));
        }
        if let Some(device) = device {
            bind_allowed(device, row.int(1)?.is_some(), row.text(2)?)?;
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
        Ok(WriteOutcome::Created(record))
    }

    /// A device report (or an admin's PATCH) changing a run state, possibly binding it to a
    /// device: counters, history when a tracked state changed, and the on-demand request it
    /// answers.
    async fn update_run_state(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        script_id: String,
        id: String,
        changes: Vec<(usize, Value)>,
        bind_device: Option<String>,
    ) -> Result<WriteOutcome, ExecError> {
        let key = EntityRef::RunState {
            script_id: script_id.clone(),
            id: id.clone(),
        };
        let record = self
            .fetch_in_script(c, tenant, &script_id, &key)
            .await?
            .ok_or_else(|| missing_run_state(&script_id, &id))?;
        let RunStateChange {
            record,
            changed,
            new_device,
            counted_before,
            history_due,
        } = change_run_state(record, changes, bind_device)?;
        if let Some(device) = &new_device {
            self.check_bind(c, tenant, &script_id, device).await?;
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
        if history_due {
            self.append_history(c, tenant, &record).await?;
        }
        self.clear_on_demand(c, tenant, &record).await?;
        Ok(WriteOutcome::Updated)
    }

    /// The entity, its row locked until the transaction ends (PostgreSQL; SQLite's single
    /// writer needs no lock) when `lock`.
    pub(crate) async fn fetch(
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
    /// An item of a script (run state, assignment), its row locked, after the script's row
    /// (see [`Writer::lock_script`]); `None` when either does not exist. SQLite's single writer
    /// needs no lock and rows never outlive their script, so there the item is read alone (one
    /// statement fewer on the PATCH of a device report).
    async fn fetch_in_script(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        script_id: &str,
        key: &EntityRef,
    ) -> Result<Option<Record>, DbError> {
        if self.dialect == Dialect::Postgres
            && !self.lock_script(c, tenant, script_id, false).await?
        {
            return Ok(None);
        }
        self.fetch(c, tenant, key, true).await
    }

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

    pub(crate) async fn update_columns(
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
        let (record, now) = history_record(state);
        let sql = insert_sql(tenant, &record);
        c.execute(&sql.text, &sql.args).await?;
        if let Some((script_id, device)) = remediated_key(&record, state) {
            counters::remediated_record(c, tenant, &script_id, &device, now.ticks(), self.shard)
                .await?;
        }
        if let (Some(script_id), Some(entry)) = (&record.parent, history_day_of(&record)) {
            counters::history_day_recorded(
                c,
                self.dialect == Dialect::Postgres,
                tenant,
                script_id,
                self.shard,
                &entry,
            )
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
    ) -> Result<(), ExecError> {
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
        Ok(bind_allowed(device, found, existing)?)
    }

    /// Delete one entity; rejected with `missing` when there is none.
    pub(crate) async fn delete(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        key: &EntityRef,
        missing: String,
    ) -> Result<WriteOutcome, ExecError> {
        let entity = entity_of(key);
        let mut sql = Sql::default();
        // The alias keeps `key_where` usable; both databases accept `DELETE FROM x AS t`.
        sql.push(&format!("DELETE FROM \"{}\" AS t", entity.table));
        key_where(&mut sql, tenant, key);
        let done = c.execute(&sql.text, &sql.args).await?;
        if done == 0 {
            return Err(StoreError::NotFound(missing).into());
        }
        Ok(WriteOutcome::Deleted)
    }
}

/// The run record appended for `state` now (SPEC §3.2), and its time.
pub(crate) fn history_record(state: &Record) -> (Record, Instant) {
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
    (record, now)
}

/// A history record's place in the per-day aggregate of getRemediationHistory (device, day,
/// class: the definitions of `migrations/history_days_fill.sql`); `None` without a day (no run
/// time and no `recordedDateTime`, which the server never writes).
pub(crate) fn history_day_of(history: &Record) -> Option<counters::HistoryDayEntry> {
    let ticks = |name: &str| match history.get(name) {
        Value::Time(t) => Some(t.ticks()),
        _ => None,
    };
    let state = |name: &str| match history.get(name) {
        Value::Enum(v) | Value::Int(v) => Some(*v),
        _ => None,
    };
    let recorded = ticks("recordedDateTime")?;
    let at = ticks("lastStateUpdateDateTime")
        .filter(|t| *t > 0)
        .unwrap_or(recorded);
    Some(counters::HistoryDayEntry {
        device: match history.get("managedDeviceId") {
            Value::Str(device) => device.clone(),
            _ => history.state_id.clone().unwrap_or_default(),
        },
        day: at / counters::TICKS_PER_DAY,
        id: history.id().to_owned(),
        class: counters::history_class(state("detectionState"), state("remediationState")),
        recorded,
    })
}

/// A remediated history record (`remediationState` = success) counts for its script and device
/// (the device, or the run state's id when unbound): `(script id, device key)`.
pub(crate) fn remediated_key(history: &Record, state: &Record) -> Option<(String, String)> {
    match (history.get("remediationState"), &state.parent) {
        (Value::Enum(2), Some(script_id)) => Some((
            script_id.clone(),
            state
                .device_id
                .clone()
                .unwrap_or_else(|| state.id().to_owned()),
        )),
        _ => None,
    }
}

/// The answer to a change of a run state that does not exist (or whose script does not).
pub(crate) fn missing_run_state(script_id: &str, id: &str) -> StoreError {
    StoreError::NotFound(format!(
        "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
    ))
}

/// A run state changed in memory ([`change_run_state`]), before anything is written.
pub(crate) struct RunStateChange {
    /// The run state as it will be stored.
    pub record: Record,
    /// The properties the change set.
    pub changed: Vec<usize>,
    /// The device the change binds the run state to, when it was unbound: the caller checks it
    /// exists and has no other run state of the script.
    pub new_device: Option<String>,
    /// What the counters knew of the run state before.
    pub counted_before: counters::Counted,
    /// A run record is due: the detection state, remediation state or update time changed.
    pub history_due: bool,
}

/// Apply `changes` (and a binding to `bind_device`) to a run state as read: the rules both write
/// paths share (the statement-by-statement one here and PostgreSQL's one call, `crate::report`).
/// A run state bound to a device is never moved to another.
pub(crate) fn change_run_state(
    mut record: Record,
    changes: Vec<(usize, Value)>,
    bind_device: Option<String>,
) -> Result<RunStateChange, StoreError> {
    let counted_before = counted(&record);
    let mut new_device = None;
    if let Some(device) = bind_device {
        match &record.device_id {
            Some(current) if *current == device => {}
            Some(current) => {
                return Err(StoreError::InvalidReference(format!(
                    "The deviceRunState '{}' is already bound to managedDevice '{current}'; its device cannot be changed.",
                    record.id()
                )))
            }
            None => {
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
    let changed = apply(&mut record, changes);
    let history_due = tracked
        .iter()
        .zip(&before)
        .any(|(n, was)| record.get(n) != was);
    Ok(RunStateChange {
        record,
        changed,
        new_device,
        counted_before,
        history_due,
    })
}
