//! Computed views (SPEC §3.4): run summaries, remediation history and summary, a device's state
//! in every script. The counts come from the counters and the per-day history aggregate kept in
//! the transaction of every change (`crate::counters`), so they always equal what the rows say.
//! Counter definitions are in `docs/computed-views.md`.

use remediate_domain::model::{DEVICE_RUN_STATE, POLICY_STATE, RUN_SUMMARY};
use remediate_domain::query::{HistoryDay, RemediationHistory};
use remediate_domain::{Instant, Record, Value};

use crate::codec::{decode_record, select_columns};
use crate::counters;
use crate::db::{self, Conn, DbError};
use crate::reads::exists;
use crate::EntityRef;

pub async fn run_summary(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
) -> Result<Option<Record>, DbError> {
    if !exists(c, tenant, &EntityRef::Script(script_id.to_owned())).await? {
        return Ok(None);
    }
    // From the counters (constant time, docs/computed-views.md); the newest run time from the
    // (tenant, scriptId, lastStateUpdateDateTime) index.
    let cells = counters::state_counts(c, tenant, script_id).await?;
    let sum = |f: &dyn Fn(i64, i64) -> bool| -> i64 {
        cells
            .iter()
            .filter(|(d, r, _)| f(*d, *r))
            .map(|(_, _, n)| n)
            .sum()
    };
    let counts = [
        sum(&|d, r| d == 1 && r != 2),
        sum(&|d, _| d == 2),
        sum(&|d, _| d == 3),
        sum(&|d, _| d == 4),
        sum(&|d, _| d == 5),
        sum(&|_, r| r == 2),
        sum(&|_, r| r == 1),
        sum(&|_, r| r == 3),
        sum(&|_, r| r == 4),
    ];
    let last = c
        .query_one(
            "SELECT MAX(\"lastStateUpdateDateTime\") FROM device_run_states WHERE \"tenant\" = $1 AND \"scriptId\" = $2",
            &[db::text(tenant), db::text(script_id)],
        )
        .await?
        .int(0)?;
    let cumulative = counters::cumulative(c, tenant, script_id).await?;
    let mut record = Record::with_defaults(&RUN_SUMMARY);
    record.set("id", Value::Str(script_id.to_owned()));
    let names = [
        "noIssueDetectedDeviceCount",
        "issueDetectedDeviceCount",
        "detectionScriptErrorDeviceCount",
        "detectionScriptPendingDeviceCount",
        "detectionScriptNotApplicableDeviceCount",
        "issueRemediatedDeviceCount",
        "remediationSkippedDeviceCount",
        "issueReoccurredDeviceCount",
        "remediationScriptErrorDeviceCount",
    ];
    for (name, count) in names.iter().zip(counts) {
        record.set(name, Value::Int(count));
    }
    record.set(
        "lastScriptRunDateTime",
        last.and_then(Instant::from_ticks)
            .map_or(Value::Null, Value::Time),
    );
    record.set(
        "issueRemediatedCumulativeDeviceCount",
        Value::Int(cumulative),
    );
    Ok(Some(record))
}

pub async fn remediation_history(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
) -> Result<Option<RemediationHistory>, DbError> {
    if !exists(c, tenant, &EntityRef::Script(script_id.to_owned())).await? {
        return Ok(None);
    }
    // Each device counts once per UTC day, classified by its last record of that day (the day
    // of the run, lastStateUpdateDateTime, or of receipt for records without a run time): read
    // from the per-day aggregate kept on write (`counters::history_day_recorded`), O(days).
    let mut days = Vec::new();
    for (day, [remediated, no_issue, detect_failed]) in
        counters::history_days(c, tenant, script_id).await?
    {
        let date = Instant::from_ticks(day * counters::TICKS_PER_DAY)
            .map(Instant::date_string)
            .unwrap_or_default();
        days.push(HistoryDay {
            date,
            remediated,
            no_issue,
            detect_failed,
        });
    }
    // The newest receipt: the end of the (tenant, scriptId, recordedDateTime) index.
    let last = c.query_one("SELECT MAX(\"recordedDateTime\") FROM run_history WHERE \"tenant\" = $1 AND \"scriptId\" = $2", &[db::text(tenant), db::text(script_id)]).await?
        .int(0)?;
    Ok(Some(RemediationHistory {
        last_modified: last.and_then(Instant::from_ticks),
        days,
    }))
}

pub async fn remediation_summary(c: &mut dyn Conn, tenant: &str) -> Result<(i64, i64), DbError> {
    let scripts: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM device_health_scripts WHERE \"tenant\" = $1",
            &[db::text(tenant)],
        )
        .await?
        .count(0)?;
    let devices = counters::total(c, tenant, counters::REMEDIATED).await?;
    Ok((scripts, devices))
}

pub async fn device_script_states(
    c: &mut dyn Conn,
    tenant: &str,
    device_id: &str,
) -> Result<Option<Vec<Record>>, DbError> {
    let device = c.query_opt("SELECT \"userPrincipalName\", \"deviceName\", \"osVersion\" FROM managed_devices WHERE \"tenant\" = $1 AND \"id\" = $2", &[db::text(tenant), db::text(device_id)]).await?;
    let Some(device) = device else {
        return Ok(None);
    };
    let user = device.text(0)?;
    let device_name: Option<String> = device.text(1)?;
    let os_version: Option<String> = device.text(2)?;
    let rows = c
        .query(
            &format!(
        "SELECT {}, s.\"displayName\" FROM device_run_states t JOIN device_health_scripts s \
         ON s.\"tenant\" = t.\"tenant\" AND s.\"id\" = t.\"scriptId\" \
         WHERE t.\"tenant\" = $1 AND t.\"managedDeviceId\" = $2 ORDER BY t.\"scriptId\", t.\"id\"",
        select_columns(&DEVICE_RUN_STATE, "t", false)
    ),
            &[db::text(tenant), db::text(device_id)],
        )
        .await?;
    let width = DEVICE_RUN_STATE.properties.len() + DEVICE_RUN_STATE.links.len();
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        let state = decode_record(&DEVICE_RUN_STATE, &mut row, 0)?;
        let policy_name = row.text(width)?;
        let mut record = Record::with_defaults(&POLICY_STATE);
        let text = |v: Option<String>| v.map_or(Value::Null, Value::Str);
        record.set("id", Value::Str(state.id().to_owned()));
        record.set("deviceId", Value::Str(device_id.to_owned()));
        record.set("policyId", text(state.parent.clone()));
        record.set("userName", text(user.clone()));
        record.set("deviceName", text(device_name.clone()));
        record.set("policyName", text(policy_name));
        record.set("osVersion", text(os_version.clone()));
        for (index, p) in POLICY_STATE.properties.iter().enumerate().skip(7) {
            record.values[index] = state.get(p.name).clone();
        }
        out.push(record);
    }
    Ok(Some(out))
}

pub async fn pending_on_demand(
    c: &mut dyn Conn,
    tenant: &str,
    device_id: &str,
) -> Result<Option<Vec<(String, Instant)>>, DbError> {
    if !exists(c, tenant, &EntityRef::Device(device_id.to_owned())).await? {
        return Ok(None);
    }
    let rows = c.query("SELECT \"scriptId\", \"requestedDateTime\" FROM on_demand_requests WHERE \"tenant\" = $1 AND \"managedDeviceId\" = $2 \
         ORDER BY \"requestedDateTime\", \"scriptId\"", &[db::text(tenant), db::text(device_id)]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let ticks = row.count(1)?;
        out.push((
            row.text(0)?.unwrap_or_default(),
            Instant::from_ticks(ticks).unwrap_or(Instant::MIN),
        ));
    }
    Ok(Some(out))
}
