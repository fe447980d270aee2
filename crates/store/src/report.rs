//! Device reports in one round trip on PostgreSQL (docs/storage.md, "Device reports in one round
//! trip"). Creating and changing a run state is the hot path of every agent. The statement-by-
//! statement path (`commands.rs`, which SQLite keeps: in-process statements cost no round trip)
//! takes six to ten statements inside `BEGIN`/`COMMIT`; here the writer reads what it needs (for a
//! change: the row and its version), decides everything in Rust with the same functions — the new
//! row, [`counters::plan_state_change`], [`history_record`] — and sends the plan to one call of
//! `remediate_run_state_write` (migration 0009), which runs as its own transaction with the same
//! checks and lock order. A row changed between the read and the call is detected by its version
//! (`xmin`) and the change is computed again from the new row.

use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::Record;

use crate::codec::{columns_json, decode_record, key_where, row_json, select_columns};
use crate::commands::{
    bind_allowed, change_run_state, counted, history_record, missing_run_state, remediated_key,
    script_not_found, RunStateChange,
};
use crate::counters::{self, StatePlan};
use crate::db::{self, Conn, DbError};
use crate::error::ExecError;
use crate::translate::{self, Arg, Sql};
use crate::EntityRef;

/// How often a change is computed again when its row keeps changing under it.
const ATTEMPTS: usize = 20;

/// The run-state writes this path takes; anything else goes through `commands.rs`.
pub(crate) fn is_report(write: &Write) -> bool {
    matches!(
        write,
        Write::CreateRunState { .. } | Write::UpdateRunState { .. }
    )
}

/// One call of the report function.
#[derive(Default)]
struct Call {
    bind: Option<String>,
    insert: Option<serde_json::Value>,
    state: Option<(String, String)>,
    set: Option<serde_json::Value>,
    plan: StatePlan,
    history: Option<Record>,
    clear: Option<String>,
}

/// What the function answered.
enum Outcome {
    Ok,
    NoScript,
    Changed,
    NoDevice,
    Bound(Option<String>),
}

/// Execute a [`is_report`] write on a PostgreSQL connection outside any transaction.
pub(crate) async fn execute(
    c: &mut dyn Conn,
    tenant: &str,
    shard: i64,
    write: Write,
) -> Result<WriteOutcome, ExecError> {
    match write {
        Write::CreateRunState { record } => {
            let script_id = record.parent.clone().unwrap_or_default();
            let counted_after = counted(&record);
            let (history, _) = history_record(&record);
            let call = Call {
                bind: record.device_id.clone(),
                insert: Some(row_json(tenant, &record)),
                plan: counters::plan_state_change(&script_id, None, Some(&counted_after)),
                history: Some(history),
                clear: record.device_id.clone(),
                ..Call::default()
            };
            match call_function(c, tenant, &script_id, shard, &call, &record).await? {
                Outcome::Ok => Ok(WriteOutcome::Created(record)),
                Outcome::NoScript => Err(script_not_found(&script_id)),
                Outcome::NoDevice => Err(no_bind(&record, false, None)),
                Outcome::Bound(existing) => Err(no_bind(&record, true, existing)),
                Outcome::Changed => Err(ExecError::Db(DbError::other(
                    "the report function answered 'changed' to a creation",
                ))),
            }
        }
        Write::UpdateRunState {
            script_id,
            id,
            changes,
            bind_device,
        } => {
            for _ in 0..ATTEMPTS {
                let Some((record, version)) = read_versioned(c, tenant, &script_id, &id).await?
                else {
                    return Err(missing_state(&script_id, &id));
                };
                match update(
                    c,
                    tenant,
                    shard,
                    record,
                    version,
                    changes.clone(),
                    bind_device.clone(),
                )
                .await?
                {
                    Some(outcome) => return Ok(outcome),
                    None => continue,
                }
            }
            Err(ExecError::Db(DbError {
                kind: db::DbErrorKind::Retry,
                message: format!(
                    "the deviceRunState '{id}' kept changing while this change was applied"
                ),
            }))
        }
        other => Err(ExecError::Db(DbError::other(format!(
            "not a device report: {other:?}"
        )))),
    }
}

/// One attempt of a change computed from `record` as read at `version`; `None`: the row changed
/// since (read again).
async fn update(
    c: &mut dyn Conn,
    tenant: &str,
    shard: i64,
    record: Record,
    version: String,
    changes: Vec<(usize, remediate_domain::Value)>,
    bind_device: Option<String>,
) -> Result<Option<WriteOutcome>, ExecError> {
    let script_id = record.parent.clone().unwrap_or_default();
    let id = record.id().to_owned();
    let RunStateChange {
        record,
        changed,
        new_device,
        counted_before,
        history_due,
    } = change_run_state(record, changes, bind_device)?;
    let mut set: Vec<(String, Arg)> = Vec::new();
    for &index in &changed {
        let p = &record.entity.properties[index];
        set.extend(
            translate::column_names(p)
                .into_iter()
                .zip(translate::value_args(p, &record.values[index])),
        );
    }
    if let Some(device) = &new_device {
        set.push((
            "\"managedDeviceId\"".to_owned(),
            Arg::Text(Some(device.clone())),
        ));
    }
    let call = Call {
        bind: new_device.clone(),
        state: Some((id.clone(), version)),
        set: (!set.is_empty()).then(|| columns_json(set)),
        plan: counters::plan_state_change(
            &script_id,
            Some(&counted_before),
            Some(&counted(&record)),
        ),
        history: history_due.then(|| history_record(&record).0),
        clear: record.device_id.clone(),
        ..Call::default()
    };
    match call_function(c, tenant, &script_id, shard, &call, &record).await? {
        Outcome::Ok => Ok(Some(WriteOutcome::Updated)),
        Outcome::Changed => Ok(None),
        Outcome::NoScript => Err(missing_state(&script_id, &id)),
        Outcome::NoDevice => Err(no_bind(&record, false, None)),
        Outcome::Bound(existing) => Err(no_bind(&record, true, existing)),
    }
}

/// The run state and the version (`xmin`) it was read at; `None` when it does not exist.
async fn read_versioned(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
    id: &str,
) -> Result<Option<(Record, String)>, DbError> {
    let key = EntityRef::RunState {
        script_id: script_id.to_owned(),
        id: id.to_owned(),
    };
    let entity = crate::codec::entity_of(&key);
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {}, t.xmin::TEXT FROM \"{}\" t",
        select_columns(entity, "t", false),
        entity.table
    ));
    key_where(&mut sql, tenant, &key);
    let Some(mut row) = c.query_opt(&sql.text, &sql.args).await? else {
        return Ok(None);
    };
    let version = row
        .text(crate::codec::column_count(entity))?
        .unwrap_or_default();
    let record = decode_record(entity, &mut row, 0)?;
    Ok(Some((record, version)))
}

async fn call_function(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
    shard: i64,
    call: &Call,
    state: &Record,
) -> Result<Outcome, ExecError> {
    // JSON travels as UTF-8 bytes: its strings are already in their stored form (`db::text_in`,
    // no NUL), and bytes are bound as they are (text arguments would be escaped a second time).
    let bytes = |v: Option<serde_json::Value>| Arg::Bytes(v.map(|v| v.to_string().into_bytes()));
    let text_array = |items: Vec<&str>| {
        bytes(Some(serde_json::Value::from(
            items
                .into_iter()
                .map(|t| db::text_in(t).into_owned())
                .collect::<Vec<_>>(),
        )))
    };
    let int_array = |items: Vec<i64>| bytes(Some(serde_json::Value::from(items)));
    let json = |v: &Option<serde_json::Value>| bytes(v.clone());
    let (history, remediated, recorded) = match &call.history {
        Some(h) => {
            let recorded = match h.get("recordedDateTime") {
                remediate_domain::Value::Time(t) => t.ticks(),
                _ => 0,
            };
            (
                Some(row_json(tenant, h)),
                remediated_key(h, state).map(|(_, device)| device),
                recorded,
            )
        }
        None => (None, None, 0),
    };
    // Arrays travel as JSON text (the driver's arguments are text, integers and bytes).
    let row = c
        .query_one(
            "SELECT \"outcome\", \"existing\" FROM remediate_run_state_write(\
               $1, $2, $3, $4, convert_from($5, 'UTF8')::JSONB, $6, $7, \
               convert_from($8, 'UTF8')::JSONB, \
               ARRAY(SELECT jsonb_array_elements_text(convert_from($9, 'UTF8')::JSONB)), \
               ARRAY(SELECT jsonb_array_elements_text(convert_from($10, 'UTF8')::JSONB)::BIGINT), \
               ARRAY(SELECT jsonb_array_elements_text(convert_from($11, 'UTF8')::JSONB)), \
               ARRAY(SELECT jsonb_array_elements_text(convert_from($12, 'UTF8')::JSONB)::BIGINT), \
               $13, convert_from($14, 'UTF8')::JSONB, $15, $16, $17, $18)",
            &[
                db::text(tenant),
                db::text(script_id),
                db::int(shard),
                Arg::Text(call.bind.clone()),
                json(&call.insert),
                Arg::Text(call.state.as_ref().map(|(id, _)| id.clone())),
                Arg::Text(call.state.as_ref().map(|(_, v)| v.clone())),
                json(&call.set),
                text_array(call.plan.states.iter().map(|(n, _)| n.as_str()).collect()),
                int_array(call.plan.states.iter().map(|(_, d)| *d).collect()),
                text_array(call.plan.devices.iter().map(|(k, _)| k.as_str()).collect()),
                int_array(call.plan.devices.iter().map(|(_, d)| *d).collect()),
                db::text(counters::REMEDIATED),
                json(&history),
                Arg::Text(remediated),
                db::text(&counters::cumulative_name(script_id)),
                db::int(recorded),
                Arg::Text(call.clear.clone()),
            ],
        )
        .await?;
    Ok(match row.text(0)?.as_deref() {
        Some("ok") => Outcome::Ok,
        Some("no-script") => Outcome::NoScript,
        Some("changed") => Outcome::Changed,
        Some("no-device") => Outcome::NoDevice,
        Some("bound") => Outcome::Bound(row.text(1)?),
        other => {
            return Err(ExecError::Db(DbError::other(format!(
                "the report function answered {other:?}"
            ))))
        }
    })
}

/// The refusal of binding the run state to its device (`found`: the device exists).
fn no_bind(record: &Record, found: bool, existing: Option<String>) -> ExecError {
    let device = record.device_id.clone().unwrap_or_default();
    match bind_allowed(&device, found, existing) {
        Err(e) => e.into(),
        Ok(()) => ExecError::Db(DbError::other("a refused binding was allowed")),
    }
}

fn missing_state(script_id: &str, id: &str) -> ExecError {
    missing_run_state(script_id, id).into()
}
