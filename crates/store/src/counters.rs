//! Counters kept in the same transaction as every change they count (migration 0003), so the
//! summaries and unfiltered counts cost the same at a million run states as at ten, and the
//! per-day aggregate of the run history (migration 0010: [`history_day_recorded`],
//! [`history_days_pruned`]), so getRemediationHistory costs O(days) at a million records. The
//! rows stay the truth: [`FILL`] and [`HISTORY_FILL`] rebuild everything from them, and
//! [`check`] compares the two (`remediate recount [--check]`, and the invariant tests).

use std::collections::BTreeMap;

use crate::db::{self, Conn, DbError};

/// Rebuilds every counter from the rows, on empty counter tables.
pub(crate) const FILL: &str = include_str!("../migrations/counters_fill.sql");

/// Rebuilds the per-day history aggregate from the run history, on empty tables.
pub(crate) const HISTORY_FILL: &str = include_str!("../migrations/history_days_fill.sql");

/// The ids that run states are bound to and no managed device has (a deleted device's run states
/// stay): what `deleted_devices` must hold (migration 0011) for the device-driven plans
/// (`crate::plans`) to find them. The delete trigger adds every deleted device; [`prune_deleted_devices`]
/// drops the ones no run state is bound to any more.
const DELETED_DEVICES_FILL: &str = "INSERT INTO deleted_devices (\"tenant\", \"id\") \
     SELECT DISTINCT t.\"tenant\", t.\"managedDeviceId\" FROM device_run_states t \
     WHERE t.\"managedDeviceId\" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM managed_devices d \
       WHERE d.\"tenant\" = t.\"tenant\" AND d.\"id\" = t.\"managedDeviceId\")";

/// Drop the `deleted_devices` rows no run state is bound to (their run states were deleted, or
/// their script); returns how many. Safe beside writers: a run state is only ever bound to an
/// existing device (whose row the binding locks), so a device listed here gains no run state, and
/// a row can only go once its last run state is gone from what this statement sees.
pub(crate) async fn prune_deleted_devices(c: &mut dyn Conn) -> Result<u64, DbError> {
    c.execute(
        "DELETE FROM deleted_devices WHERE NOT EXISTS (SELECT 1 FROM device_run_states t \
           WHERE t.\"tenant\" = deleted_devices.\"tenant\" \
             AND t.\"managedDeviceId\" = deleted_devices.\"id\")",
        &[],
    )
    .await
}

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
    for table in ["remediated_history", "history_days", "history_day_counts"] {
        c.execute(
            &format!("DELETE FROM {table} WHERE \"tenant\" = $1 AND \"scriptId\" = $2"),
            &[db::text(tenant), db::text(script_id)],
        )
        .await?;
    }
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

/// 100 ns ticks per day: a history record's day is its time in ticks divided by this.
pub(crate) const TICKS_PER_DAY: i64 = 864_000_000_000;

/// The classes of getRemediationHistory (docs/computed-views.md), as `history_days` stores them.
pub(crate) const CLASS_NONE: i64 = 0;
pub(crate) const CLASS_REMEDIATED: i64 = 1;
pub(crate) const CLASS_NO_ISSUE: i64 = 2;
pub(crate) const CLASS_DETECT_FAILED: i64 = 3;

/// The class of a history record by its detection and remediation state (`None`: SQL NULL, which
/// compares as neither equal nor unequal): the `CASE` of `history_days_fill.sql`.
pub(crate) fn history_class(detection: Option<i64>, remediation: Option<i64>) -> i64 {
    match (detection, remediation) {
        (_, Some(REMEDIATED_STATE)) => CLASS_REMEDIATED,
        (Some(1), Some(_)) => CLASS_NO_ISSUE,
        (Some(2 | 3), Some(_)) => CLASS_DETECT_FAILED,
        _ => CLASS_NONE,
    }
}

/// A history record's place in the per-day aggregate (`history_days`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryDayEntry {
    /// `managedDeviceId`, or `stateId` when unbound.
    pub device: String,
    /// The day of `lastStateUpdateDateTime` when > 0, else of `recordedDateTime`.
    pub day: i64,
    pub id: String,
    pub class: i64,
    /// `recordedDateTime`.
    pub recorded: i64,
}

/// Add `delta` to the count of a script's devices whose latest record of `day` is in `class`.
async fn bump_day(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
    day: i64,
    class: i64,
    shard: i64,
    delta: i64,
) -> Result<(), DbError> {
    if delta == 0 {
        return Ok(());
    }
    c.execute(
        "INSERT INTO history_day_counts (\"tenant\", \"scriptId\", \"day\", \"class\", \"shard\", \"n\") \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (\"tenant\", \"scriptId\", \"day\", \"class\", \"shard\") \
         DO UPDATE SET \"n\" = history_day_counts.\"n\" + excluded.\"n\"",
        &[
            db::text(tenant),
            db::text(script_id),
            db::int(day),
            db::int(class),
            db::int(shard),
            db::int(delta),
        ],
    )
    .await?;
    Ok(())
}

/// A record (`entry`) was appended to the history of `script_id`: the device's row of its day
/// takes it when its id is greater than the row's, and the counts of the two classes move, in
/// the row's shard. A new row is counted in `shard`. PostgreSQL (`postgres`) locks the row (after
/// every other lock of the write: the lock order of `crate::commands`); the report function of
/// migration 0010 takes the same steps.
pub(crate) async fn history_day_recorded(
    c: &mut dyn Conn,
    postgres: bool,
    tenant: &str,
    script_id: &str,
    shard: i64,
    entry: &HistoryDayEntry,
) -> Result<(), DbError> {
    let key = || {
        vec![
            db::text(tenant),
            db::text(script_id),
            db::text(&entry.device),
            db::int(entry.day),
        ]
    };
    let lock = if postgres { " FOR UPDATE" } else { "" };
    // A row deleted by pruning between the INSERT and the SELECT is inserted again.
    for _ in 0..10 {
        let mut args = key();
        args.extend([
            db::text(&entry.id),
            db::int(entry.class),
            db::int(entry.recorded),
            db::int(shard),
        ]);
        let inserted = c
            .execute(
                "INSERT INTO history_days (\"tenant\", \"scriptId\", \"device\", \"day\", \"id\", \"class\", \
                   \"recorded\", \"lastRecorded\", \"shard\") VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8) \
                 ON CONFLICT (\"tenant\", \"scriptId\", \"device\", \"day\") DO NOTHING",
                &args,
            )
            .await?;
        if inserted > 0 {
            return bump_day(c, tenant, script_id, entry.day, entry.class, shard, 1).await;
        }
        let Some(row) = c
            .query_opt(
                &format!(
                    "SELECT \"id\", \"class\", \"shard\" FROM history_days \
                     WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"device\" = $3 AND \"day\" = $4{lock}"
                ),
                &key(),
            )
            .await?
        else {
            continue;
        };
        let (old_id, old_class, row_shard) = (
            row.text(0)?.unwrap_or_default(),
            row.count(1)?,
            row.count(2)?,
        );
        let mut args = key();
        args.push(db::int(entry.recorded));
        if old_id < entry.id {
            args.extend([db::text(&entry.id), db::int(entry.class)]);
            c.execute(
                "UPDATE history_days SET \"id\" = $6, \"class\" = $7, \"recorded\" = $5, \
                   \"lastRecorded\" = CASE WHEN \"lastRecorded\" < $5 THEN $5 ELSE \"lastRecorded\" END \
                 WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"device\" = $3 AND \"day\" = $4",
                &args,
            )
            .await?;
            if old_class != entry.class {
                let mut moves = [(old_class, -1), (entry.class, 1)];
                moves.sort();
                for (class, delta) in moves {
                    bump_day(c, tenant, script_id, entry.day, class, row_shard, delta).await?;
                }
            }
        } else {
            c.execute(
                "UPDATE history_days SET \"lastRecorded\" = $5 \
                 WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"device\" = $3 AND \"day\" = $4 \
                   AND \"lastRecorded\" < $5",
                &args,
            )
            .await?;
        }
        return Ok(());
    }
    Err(DbError::other(
        "a day of the history aggregate kept disappearing while a record was added",
    ))
}

/// History records recorded before `cutoff` were just deleted: the device-days they were all of
/// go, and a device-day that lost its latest record but not every record takes the latest of
/// those left (only where record ids do not follow their `recordedDateTime`, as the server's do:
/// a rare lookup that reads the script's history). Rows first, then the counts in key order (the
/// lock order of writes; `postgres` locks the rows it reads); counts that reach zero are deleted.
pub(crate) async fn history_days_pruned(
    c: &mut dyn Conn,
    postgres: bool,
    cutoff: i64,
) -> Result<(), DbError> {
    type CountKey = (String, String, i64, i64, i64);
    let mut deltas: BTreeMap<CountKey, i64> = BTreeMap::new();
    // Counted per (script, day, class, shard) as they go, so a prune of millions of device-days
    // holds only those groups: PostgreSQL in one statement (the rows deleted are exactly the rows
    // counted, whatever writes run beside it); SQLite's single writer counts, then deletes.
    let gone = if postgres {
        c.query(
            "WITH gone AS (DELETE FROM history_days WHERE \"recorded\" < $1 AND \"lastRecorded\" < $1 \
               RETURNING \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\") \
             SELECT \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\", COUNT(*) FROM gone \
             GROUP BY \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\"",
            &[db::int(cutoff)],
        )
        .await?
    } else {
        let gone = c
            .query(
                "SELECT \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\", COUNT(*) FROM history_days \
                 WHERE \"recorded\" < $1 AND \"lastRecorded\" < $1 \
                 GROUP BY \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\"",
                &[db::int(cutoff)],
            )
            .await?;
        c.execute(
            "DELETE FROM history_days WHERE \"recorded\" < $1 AND \"lastRecorded\" < $1",
            &[db::int(cutoff)],
        )
        .await?;
        gone
    };
    for row in gone {
        let key = (
            row.text(0)?.unwrap_or_default(),
            row.text(1)?.unwrap_or_default(),
            row.count(2)?,
            row.count(3)?,
            row.count(4)?,
        );
        *deltas.entry(key).or_default() -= row.count(5)?;
    }
    let lock = if postgres { " FOR UPDATE" } else { "" };
    let partial = c
        .query(
            &format!(
                "SELECT \"tenant\", \"scriptId\", \"device\", \"day\", \"class\", \"shard\" \
                 FROM history_days WHERE \"recorded\" < $1{lock}"
            ),
            &[db::int(cutoff)],
        )
        .await?;
    for row in partial {
        let tenant = row.text(0)?.unwrap_or_default();
        let script_id = row.text(1)?.unwrap_or_default();
        let device = row.text(2)?.unwrap_or_default();
        let (day, class, shard) = (row.count(3)?, row.count(4)?, row.count(5)?);
        let key = [
            db::text(&tenant),
            db::text(&script_id),
            db::text(&device),
            db::int(day),
        ];
        let latest = c
            .query_opt(
                &format!(
                    "SELECT \"id\", {CLASS_SQL}, \"recordedDateTime\" FROM run_history \
                     WHERE \"tenant\" = $1 AND \"scriptId\" = $2 \
                       AND COALESCE(\"managedDeviceId\", \"stateId\") = $3 AND {DAY_SQL} = $4 \
                     ORDER BY \"id\" DESC LIMIT 1"
                ),
                &key,
            )
            .await?;
        let new_class = match latest {
            Some(latest) => {
                let new_class = latest.count(1)?;
                let mut args = key.to_vec();
                args.extend([
                    db::text(&latest.text(0)?.unwrap_or_default()),
                    db::int(new_class),
                    crate::translate::Arg::Int(latest.int(2)?),
                ]);
                c.execute(
                    "UPDATE history_days SET \"id\" = $5, \"class\" = $6, \"recorded\" = $7 \
                     WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"device\" = $3 AND \"day\" = $4",
                    &args,
                )
                .await?;
                Some(new_class)
            }
            None => {
                c.execute(
                    "DELETE FROM history_days \
                     WHERE \"tenant\" = $1 AND \"scriptId\" = $2 AND \"device\" = $3 AND \"day\" = $4",
                    &key,
                )
                .await?;
                None
            }
        };
        if new_class != Some(class) {
            *deltas
                .entry((tenant.clone(), script_id.clone(), day, class, shard))
                .or_default() -= 1;
            if let Some(new_class) = new_class {
                *deltas
                    .entry((tenant, script_id, day, new_class, shard))
                    .or_default() += 1;
            }
        }
    }
    for ((tenant, script_id, day, class, shard), delta) in deltas {
        bump_day(c, &tenant, &script_id, day, class, shard, delta).await?;
    }
    // Each row is counted in its own shard, so a zero is exact (and a concurrent write that
    // raises it first keeps it: the condition is checked again on the row it changed).
    c.execute("DELETE FROM history_day_counts WHERE \"n\" = 0", &[])
        .await?;
    Ok(())
}

/// A history record's day in SQL (`history_days_fill.sql`).
const DAY_SQL: &str =
    "((CASE WHEN \"lastStateUpdateDateTime\" > 0 THEN \"lastStateUpdateDateTime\" \
     ELSE \"recordedDateTime\" END) / 864000000000)";
/// A history record's class in SQL (`history_days_fill.sql`).
const CLASS_SQL: &str = "(CASE WHEN \"remediationState\" = 2 THEN 1 \
     WHEN \"detectionState\" = 1 AND \"remediationState\" <> 2 THEN 2 \
     WHEN \"detectionState\" IN (2, 3) AND \"remediationState\" <> 2 THEN 3 ELSE 0 END)";

/// `(day, [remediated, no issue, detection failed])` of a script: every day with at least one
/// device, in order, from the counts (O(days)).
pub(crate) async fn history_days(
    c: &mut dyn Conn,
    tenant: &str,
    script_id: &str,
) -> Result<Vec<(i64, [i64; 3])>, DbError> {
    let rows = c
        .query(
            "SELECT \"day\", \"class\", CAST(SUM(\"n\") AS BIGINT) FROM history_day_counts \
             WHERE \"tenant\" = $1 AND \"scriptId\" = $2 GROUP BY \"day\", \"class\" ORDER BY \"day\", \"class\"",
            &[db::text(tenant), db::text(script_id)],
        )
        .await?;
    let mut out: Vec<(i64, [i64; 3], i64)> = Vec::new();
    for row in rows {
        let (day, class, n) = (row.count(0)?, row.count(1)?, row.count(2)?);
        if out.last().map(|(d, _, _)| *d) != Some(day) {
            out.push((day, [0; 3], 0));
        }
        let Some((_, counts, devices)) = out.last_mut() else {
            continue;
        };
        *devices += n;
        if let Some(slot) = usize::try_from(class - 1)
            .ok()
            .and_then(|i| counts.get_mut(i))
        {
            *slot += n;
        }
    }
    Ok(out
        .into_iter()
        .filter(|(_, _, devices)| *devices > 0)
        .map(|(day, counts, _)| (day, counts))
        .collect())
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
        "DELETE FROM counters; DELETE FROM remediated_history; DELETE FROM remediated_devices; \
         DELETE FROM history_days; DELETE FROM history_day_counts; DELETE FROM deleted_devices;",
    )
    .await?;
    c.batch(FILL).await?;
    c.batch(DELETED_DEVICES_FILL).await?;
    c.batch(HISTORY_FILL).await
}

/// Every difference between the counters and what the rows say, in words (empty: they agree).
/// Recounts in place: run it in a transaction that is then rolled back.
pub(crate) async fn check(c: &mut dyn Conn) -> Result<Vec<String>, DbError> {
    let kept = snapshot(c).await?;
    let mut differences = day_shards(c).await?;
    differences.extend(unlisted_deleted_devices(c).await?);
    recount(c).await?;
    let expected = snapshot(c).await?;
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

/// Run states bound to a device that neither exists nor is listed in `deleted_devices` (the
/// device-driven plans would miss them), in words. A listed device with no run state left is not
/// a difference: the hourly maintenance ([`prune_deleted_devices`]) drops it.
async fn unlisted_deleted_devices(c: &mut dyn Conn) -> Result<Vec<String>, DbError> {
    let rows = c
        .query(
            "SELECT DISTINCT t.\"tenant\", t.\"managedDeviceId\" FROM device_run_states t \
             WHERE t.\"managedDeviceId\" IS NOT NULL \
               AND NOT EXISTS (SELECT 1 FROM managed_devices d \
                 WHERE d.\"tenant\" = t.\"tenant\" AND d.\"id\" = t.\"managedDeviceId\") \
               AND NOT EXISTS (SELECT 1 FROM deleted_devices g \
                 WHERE g.\"tenant\" = t.\"tenant\" AND g.\"id\" = t.\"managedDeviceId\") \
             ORDER BY 1, 2",
            &[],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(format!(
            "deleted device {}/{}: run states are bound to it, and it is not in deleted_devices",
            row.text(0)?.unwrap_or_default(),
            row.text(1)?.unwrap_or_default()
        ));
    }
    Ok(out)
}

/// Each shard of `history_day_counts` must count the rows of `history_days` in that shard (what
/// makes deleting a zero count exact); the differences, in words.
async fn day_shards(c: &mut dyn Conn) -> Result<Vec<String>, DbError> {
    let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (kept, sql) in [
        (
            true,
            "SELECT \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\", \"n\" FROM history_day_counts",
        ),
        (
            false,
            "SELECT \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\", COUNT(*) FROM history_days \
             GROUP BY \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\"",
        ),
    ] {
        for row in c.query(sql, &[]).await? {
            let key = format!(
                "history day count {}/{} day {} class {} shard {}",
                row.text(0)?.unwrap_or_default(),
                row.text(1)?.unwrap_or_default(),
                row.count(2)?,
                row.count(3)?,
                row.count(4)?
            );
            let entry = counts.entry(key).or_default();
            if kept {
                entry.0 += row.count(5)?;
            } else {
                entry.1 += row.count(5)?;
            }
        }
    }
    Ok(counts
        .into_iter()
        .filter(|(_, (kept, rows))| kept != rows)
        .map(|(key, (kept, rows))| {
            format!("{key}: kept {kept}, its rows in history_days say {rows}")
        })
        .collect())
}

/// Every counter (summed over shards) and every row of the helper tables, as named numbers.
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
        (
            "history day",
            "SELECT \"tenant\", \"scriptId\" || ' device ' || \"device\" || ' day ' || CAST(\"day\" AS TEXT) \
               || ': latest ' || \"id\" || ' class ' || CAST(\"class\" AS TEXT) \
               || ' recorded ' || COALESCE(CAST(\"recorded\" AS TEXT), 'null') \
               || ' last recorded ' || CAST(\"lastRecorded\" AS TEXT), 1 FROM history_days",
        ),
        (
            "history day count",
            "SELECT \"tenant\", \"scriptId\" || ' day ' || CAST(\"day\" AS TEXT) || ' class ' || CAST(\"class\" AS TEXT), \
               CAST(SUM(\"n\") AS BIGINT) FROM history_day_counts GROUP BY \"tenant\", \"scriptId\", \"day\", \"class\"",
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
