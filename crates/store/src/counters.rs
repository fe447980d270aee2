//! Counters kept in the same transaction as every change they count (migration 0003), so the
//! summaries and unfiltered counts cost the same at a million run states as at ten. The rows stay
//! the truth: [`FILL`] rebuilds every counter from them, and [`check`] compares the two
//! (`remediate recount [--check]`, and the invariant tests).

use std::collections::BTreeMap;

use crate::db::{self, Conn, DbError};

/// Rebuilds every counter from the rows, on empty counter tables.
pub(crate) const FILL: &str = include_str!("../migrations/counters_fill.sql");

/// Concurrent PostgreSQL transactions spread their additions over this many rows per counter.
pub(crate) const SHARDS: u64 = 16;

/// Run states of a script that are in the given detection and remediation state.
fn state_name(script_id: &str, detection: i64, remediation: i64) -> String {
    format!("s/{script_id}/{detection}/{remediation}")
}

/// Devices with a remediated history record of the script.
pub(crate) fn cumulative_name(script_id: &str) -> String {
    format!("c/{script_id}")
}

/// Devices with a remediated current run state (tenant-wide).
pub(crate) const REMEDIATED: &str = "r";
/// Managed devices of the tenant.
pub(crate) const DEVICES: &str = "d";

/// The part of a run state that counters depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counted {
    pub detection: i64,
    pub remediation: i64,
    /// `managedDeviceId`, or `scriptId:id` for an unbound run state.
    pub device_key: String,
}

/// `remediationState` = `success`.
const REMEDIATED_STATE: i64 = 2;

/// Add `delta` to a counter.
pub(crate) async fn bump(
    c: &mut dyn Conn,
    tenant: &str,
    name: &str,
    shard: i64,
    delta: i64,
) -> Result<(), DbError> {
    if delta == 0 {
        return Ok(());
    }
    c.execute(
        "INSERT INTO counters (\"tenant\", \"name\", \"shard\", \"n\") VALUES ($1, $2, $3, $4) \
         ON CONFLICT (\"tenant\", \"name\", \"shard\") DO UPDATE SET \"n\" = counters.\"n\" + excluded.\"n\"",
        &[db::text(tenant), db::text(name), db::int(shard), db::int(delta)],
    )
    .await?;
    Ok(())
}

/// What a change of one run state does to the counters: the state counters to add to (sorted by
/// name) and the remediated-device counts to change (sorted by key). The statement-by-statement
/// path ([`state_changed`]) and PostgreSQL's one-call path (migration 0009) apply the same plan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct StatePlan {
    pub states: Vec<(String, i64)>,
    pub devices: Vec<(String, i64)>,
}

/// The counters' part of a run state of `script_id` changing from `before` to `after` (`None`: did
/// not exist / deleted).
pub(crate) fn plan_state_change(
    script_id: &str,
    before: Option<&Counted>,
    after: Option<&Counted>,
) -> StatePlan {
    let mut plan = StatePlan::default();
    if before == after {
        return plan;
    }
    let cell = |s: &Counted| (s.detection, s.remediation);
    if before.map(cell) != after.map(cell) {
        // Counter rows are locked in one global order by every transaction (state counters by
        // name, then the remediated device, then the tenant's count, then history), so
        // concurrent writes on PostgreSQL wait for each other but never deadlock.
        plan.states = before
            .map(|b| (state_name(script_id, b.detection, b.remediation), -1))
            .into_iter()
            .chain(after.map(|a| (state_name(script_id, a.detection, a.remediation), 1)))
            .collect();
        plan.states.sort();
    }
    let remediated = |s: Option<&Counted>| {
        s.filter(|s| s.remediation == REMEDIATED_STATE)
            .map(|s| s.device_key.clone())
    };
    let (was, is) = (remediated(before), remediated(after));
    if was != is {
        plan.devices = was
            .map(|k| (k, -1))
            .into_iter()
            .chain(is.map(|k| (k, 1)))
            .collect();
        plan.devices.sort();
    }
    plan
}

/// A run state of `script_id` changed from `before` to `after` (`None`: did not exist / deleted).
pub(crate) async fn state_changed(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
    shard: i64,
    before: Option<&Counted>,
    after: Option<&Counted>,
) -> Result<(), DbError> {
    let plan = plan_state_change(script_id, before, after);
    for (name, delta) in &plan.states {
        bump(c, tenant, name, shard, *delta).await?;
    }
    if !plan.devices.is_empty() {
        let mut devices = 0;
        for (key, delta) in &plan.devices {
            devices += remediated_device(c, tenant, key, *delta).await?;
        }
        bump(c, tenant, REMEDIATED, shard, devices).await?;
    }
    Ok(())
}

/// One more (`delta` 1) or one fewer (-1) remediated run state of a device. Returns the change
/// of the tenant's count of remediated devices: 1 when the device's first one appears, -1 when
/// its last one goes. Each statement reads and changes the row atomically (the row stays
/// locked to the end of the transaction), so concurrent changes of one device's count — its
/// run states in several scripts — are applied one after the other and none is lost.
async fn remediated_device(
    c: &mut dyn Conn,
    tenant: &str,
    key: &str,
    delta: i64,
) -> Result<i64, DbError> {
    let args = [db::text(tenant), db::text(key)];
    if delta > 0 {
        let n = c
            .query_one(
                "INSERT INTO remediated_devices (\"tenant\", \"device\", \"n\") VALUES ($1, $2, 1) \
                 ON CONFLICT (\"tenant\", \"device\") DO UPDATE SET \"n\" = remediated_devices.\"n\" + 1 \
                 RETURNING \"n\"",
                &args,
            )
            .await?
            .count(0)?;
        return Ok(i64::from(n == 1));
    }
    let left = c
        .query_opt(
            "UPDATE remediated_devices SET \"n\" = \"n\" - 1 \
             WHERE \"tenant\" = $1 AND \"device\" = $2 RETURNING \"n\"",
            &args,
        )
        .await?
        .map(|row| row.count(0))
        .transpose()?;
    match left {
        Some(n) if n <= 0 => {
            c.execute(
                "DELETE FROM remediated_devices WHERE \"tenant\" = $1 AND \"device\" = $2",
                &args,
            )
            .await?;
            Ok(-1)
        }
        Some(_) => Ok(0),
        None => {
            // Only after the counters were changed by hand; the write itself is right, and
            // `remediate recount` rebuilds the counters.
            tracing::warn!(
                tenant,
                device = key,
                "a remediated-device counter was missing; run `remediate recount`"
            );
            Ok(0)
        }
    }
}

/// A history record with `remediationState` = `success` was appended at `recorded`.
pub(crate) async fn remediated_record(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
    device: &str,
    recorded: i64,
    shard: i64,
) -> Result<(), DbError> {
    let args = [
        db::text(tenant),
        db::text(script_id),
        db::text(device),
        db::int(recorded),
    ];
    let new = c
        .execute(
            "INSERT INTO remediated_history (\"tenant\", \"scriptId\", \"device\", \"recorded\") \
             VALUES ($1, $2, $3, $4) ON CONFLICT (\"tenant\", \"scriptId\", \"device\") DO NOTHING",
            &args,
        )
        .await?;
    if new > 0 {
        bump(c, tenant, &cumulative_name(script_id), shard, 1).await
    } else {
        c.execute(
            "UPDATE remediated_history SET \"recorded\" = $4 \
             WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"device\" = $3 AND \"recorded\" < $4",
            &args,
        )
        .await?;
        Ok(())
    }
}

/// A script is being deleted with its run states and history: take them out of the counters.
/// Runs before the run states are deleted.
pub(crate) async fn script_deleted(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
    shard: i64,
) -> Result<(), DbError> {
    let keys = c
        .query(
            "SELECT COALESCE(\"managedDeviceId\", \"scriptId\" || ':' || \"id\") FROM device_run_states \
             WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"remediationState\" = 2",
            &[db::text(tenant), db::text(script_id)],
        )
        .await?;
    // In key order, then the tenant's count once: the lock order of `state_changed`.
    let mut keys: Vec<String> = keys
        .into_iter()
        .filter_map(|row| row.text(0).transpose())
        .collect::<Result<_, _>>()?;
    keys.sort();
    let mut devices = 0;
    for key in keys {
        devices += remediated_device(c, tenant, &key, -1).await?;
    }
    bump(c, tenant, REMEDIATED, shard, devices).await?;
    let (low, high) = state_range(script_id);
    c.execute(
        "DELETE FROM counters WHERE \"tenant\" = $1 AND ((\"name\" >= $2 AND \"name\" < $3) OR \"name\" = $4)",
        &[
            db::text(tenant),
            db::text(&low),
            db::text(&high),
            db::text(&cumulative_name(script_id)),
        ],
    )
    .await?;
    c.execute(
        "DELETE FROM remediated_history WHERE \"tenant\" = $1 AND \"scriptId\" = $2",
        &[db::text(tenant), db::text(script_id)],
    )
    .await?;
    Ok(())
}

/// History records older than `cutoff` are being pruned: devices whose newest remediated record
/// goes with them leave the cumulative counts.
pub(crate) async fn history_pruned(c: &mut dyn Conn, cutoff: i64) -> Result<(), DbError> {
    let rows = c
        .query(
            "DELETE FROM remediated_history WHERE \"recorded\" < $1 RETURNING \"tenant\", \"scriptId\"",
            &[db::int(cutoff)],
        )
        .await?;
    let mut gone: BTreeMap<(String, String), i64> = BTreeMap::new();
    for row in rows {
        let key = (
            row.text(0)?.unwrap_or_default(),
            row.text(1)?.unwrap_or_default(),
        );
        *gone.entry(key).or_default() += 1;
    }
    for ((tenant, script_id), n) in gone {
        bump(c, &tenant, &cumulative_name(&script_id), 0, -n).await?;
    }
    Ok(())
}

/// `[low, high)` of the state counter names of a script (`'0'` follows `'/'`).
fn state_range(script_id: &str) -> (String, String) {
    (format!("s/{script_id}/"), format!("s/{script_id}0"))
}

/// `(detectionState, remediationState, run states)` of a script, from its counters.
pub(crate) async fn state_counts(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
) -> Result<Vec<(i64, i64, i64)>, DbError> {
    let (low, high) = state_range(script_id);
    let rows = c
        .query(
            "SELECT \"name\", CAST(SUM(\"n\") AS BIGINT) FROM counters \
             WHERE \"tenant\" = $1 AND \"name\" >= $2 AND \"name\" < $3 GROUP BY \"name\"",
            &[db::text(tenant), db::text(&low), db::text(&high)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let name = row.text(0)?.unwrap_or_default();
        let mut parts = name.rsplit('/');
        let parse = |s: Option<&str>| {
            s.and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| DbError::other(format!("malformed counter name '{name}'")))
        };
        let remediation = parse(parts.next())?;
        let detection = parse(parts.next())?;
        out.push((detection, remediation, row.count(1)?));
    }
    Ok(out)
}

/// The value of a single counter.
pub(crate) async fn total(c: &mut dyn Conn, tenant: &str, name: &str) -> Result<i64, DbError> {
    c.query_one(
        "SELECT CAST(SUM(\"n\") AS BIGINT) FROM counters WHERE \"tenant\" = $1 AND \"name\" = $2",
        &[db::text(tenant), db::text(name)],
    )
    .await?
    .count(0)
}

/// The cumulative remediated devices of a script.
pub(crate) async fn cumulative(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
) -> Result<i64, DbError> {
    total(c, tenant, &cumulative_name(script_id)).await
}

/// The run states of a script, from its counters.
pub(crate) async fn run_states(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
) -> Result<i64, DbError> {
    Ok(state_counts(c, tenant, script_id)
        .await?
        .iter()
        .map(|(_, _, n)| n)
        .sum())
}

/// Throw every counter away and rebuild them from the rows.
pub(crate) async fn recount(c: &mut dyn Conn) -> Result<(), DbError> {
    c.batch(
        "DELETE FROM counters; DELETE FROM remediated_history; DELETE FROM remediated_devices;",
    )
    .await?;
    c.batch(FILL).await
}

/// Every difference between the counters and what the rows say, in words (empty: they agree).
/// Recounts in place: run it in a transaction that is then rolled back.
pub(crate) async fn check(c: &mut dyn Conn) -> Result<Vec<String>, DbError> {
    let kept = snapshot(c).await?;
    recount(c).await?;
    let expected = snapshot(c).await?;
    let mut differences = Vec::new();
    for (key, want) in &expected {
        let have = kept.get(key).copied().unwrap_or(0);
        if have != *want {
            differences.push(format!("{key}: kept {have}, the rows say {want}"));
        }
    }
    for (key, have) in &kept {
        if !expected.contains_key(key) && *have != 0 {
            differences.push(format!("{key}: kept {have}, the rows say 0"));
        }
    }
    Ok(differences)
}

/// Every counter (summed over shards) and every row of the two helper tables, as named numbers.
async fn snapshot(c: &mut dyn Conn) -> Result<BTreeMap<String, i64>, DbError> {
    let mut out = BTreeMap::new();
    for (what, sql) in [
        (
            "counter",
            "SELECT \"tenant\", \"name\", CAST(SUM(\"n\") AS BIGINT) FROM counters GROUP BY \"tenant\", \"name\"",
        ),
        (
            "remediated device",
            "SELECT \"tenant\", \"device\", \"n\" FROM remediated_devices",
        ),
        (
            "remediated history",
            "SELECT \"tenant\", \"scriptId\" || ' ' || \"device\", \"recorded\" FROM remediated_history",
        ),
    ] {
        for row in c.query(sql, &[]).await? {
            let tenant = row.text(0)?.unwrap_or_default();
            let name = row.text(1)?.unwrap_or_default();
            let n = row.count(2)?;
            if n != 0 {
                out.insert(format!("{what} {tenant}/{name}"), n);
            }
        }
    }
    Ok(out)
}
