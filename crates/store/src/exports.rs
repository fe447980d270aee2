//! Export jobs in storage (`docs/exports.md`): creating a job with the base URL of its link, the
//! runner's changes of a job (claim, heartbeat, release, complete, fail — each only while the
//! runner holds the job), the runners' sweep of jobs to run, and the paged read of exported rows.
//!
//! Rows are read one page at a time in `(scriptId, id)` order — the run states' primary key
//! order — each page a keyset seek past the previous page's last row, so an export of any size
//! holds one page in memory and every page costs the same. Each page is its own snapshot: a run
//! state changed during an export appears once, as it was when its page was read.

use remediate_domain::exports::{status, ExportFilter, ExportRow, JobChange, JobState};
use remediate_domain::write::WriteOutcome;
use remediate_domain::{Instant, Record};

use crate::codec::insert_sql_with;
use crate::commands::Writer;
use crate::db::{self, Conn, DbError, Row};
use crate::error::ExecError;
use crate::translate::{Arg, Sql};
use crate::StoreError;

impl Writer {
    /// `Write::CreateExportJob`.
    pub(crate) async fn create_export_job(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        record: Record,
        origin: String,
    ) -> Result<WriteOutcome, ExecError> {
        let sql = insert_sql_with(tenant, &record, vec![("origin", Arg::Text(Some(origin)))]);
        c.execute(&sql.text, &sql.args).await?;
        Ok(WriteOutcome::Created(record))
    }

    /// `Write::UpdateExportJob`: `NotFound` when the job is gone or not (any more) held by the
    /// runner (for a claim: not claimable).
    pub(crate) async fn update_export_job(
        &self,
        c: &mut dyn Conn,
        tenant: &str,
        id: String,
        change: JobChange,
    ) -> Result<WriteOutcome, ExecError> {
        const HELD: &str = "\"tenant\" = $1 AND \"id\" = $2 AND \"runner\" = $3 AND \"status\" = 2";
        let key = |runner: &str| vec![db::text(tenant), db::text(&id), db::text(runner)];
        let changed = match change {
            JobChange::Claim {
                runner,
                now,
                stale_before,
            } => {
                let mut args = key(&runner);
                args.extend([db::int(now.ticks()), db::int(stale_before.ticks())]);
                c.execute(
                    "UPDATE export_jobs SET \"status\" = 2, \"runner\" = $3, \"heartbeat\" = $4 \
                     WHERE \"tenant\" = $1 AND \"id\" = $2 AND (\"status\" = 1 OR (\"status\" = 2 AND (\"heartbeat\" IS NULL OR \"heartbeat\" < $5)))",
                    &args,
                )
                .await?
            }
            JobChange::Heartbeat { runner, now } => {
                let mut args = key(&runner);
                args.push(db::int(now.ticks()));
                c.execute(
                    &format!("UPDATE export_jobs SET \"heartbeat\" = $4 WHERE {HELD}"),
                    &args,
                )
                .await?
            }
            JobChange::Release { runner } => {
                c.execute(
                    &format!(
                        "UPDATE export_jobs SET \"status\" = 1, \"runner\" = NULL, \"heartbeat\" = NULL WHERE {HELD}"
                    ),
                    &key(&runner),
                )
                .await?
            }
            JobChange::Complete {
                runner,
                url,
                expires,
                rows,
            } => {
                let mut args = key(&runner);
                args.extend([db::text(&url), db::int(expires.ticks()), db::int(rows)]);
                c.execute(
                    &format!(
                        "UPDATE export_jobs SET \"status\" = {}, \"url\" = $4, \"expirationDateTime\" = $5, \"rowCount\" = $6, \"heartbeat\" = NULL WHERE {HELD}",
                        status::COMPLETED
                    ),
                    &args,
                )
                .await?
            }
            JobChange::Fail { runner, reason } => {
                let mut args = key(&runner);
                args.push(db::text(&reason));
                c.execute(
                    &format!(
                        "UPDATE export_jobs SET \"status\" = {}, \"failureReason\" = $4, \"heartbeat\" = NULL WHERE {HELD}",
                        status::FAILED
                    ),
                    &args,
                )
                .await?
            }
        };
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "The deviceManagementExportJob '{id}' does not exist or is not held by this runner."
            ))
            .into());
        }
        Ok(WriteOutcome::Updated)
    }
}

/// Jobs a runner should take, as (tenant, id), oldest request first: not started, or in progress
/// with a runner silent since before `stale_before`.
pub(crate) async fn jobs_to_run(
    c: &mut dyn Conn,
    stale_before: Instant,
    limit: usize,
) -> Result<Vec<(String, String)>, DbError> {
    let rows = c
        .query(
            "SELECT \"tenant\", \"id\" FROM export_jobs \
             WHERE \"status\" = 1 OR (\"status\" = 2 AND (\"heartbeat\" IS NULL OR \"heartbeat\" < $1)) \
             ORDER BY \"requestDateTime\", \"id\" LIMIT $2",
            &[
                db::int(stale_before.ticks()),
                db::int(i64::try_from(limit).unwrap_or(i64::MAX)),
            ],
        )
        .await?;
    rows.into_iter()
        .map(|mut row| {
            Ok((
                row.take_text(0)?.unwrap_or_default(),
                row.take_text(1)?.unwrap_or_default(),
            ))
        })
        .collect()
}

/// What storage keeps of a job besides its record; `None` when it does not exist in the tenant.
pub(crate) async fn job_state(
    c: &mut dyn Conn,
    tenant: &str,
    id: &str,
) -> Result<Option<JobState>, DbError> {
    let Some(mut row) = c
        .query_opt(
            "SELECT \"origin\", \"failureReason\", \"rowCount\" FROM export_jobs WHERE \"tenant\" = $1 AND \"id\" = $2",
            &[db::text(tenant), db::text(id)],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(JobState {
        origin: row.take_text(0)?.unwrap_or_default(),
        reason: row.take_text(1)?,
        rows: row.int(2)?,
    }))
}

/// The columns of a page, in the order [`decode_row`] reads them.
const COLUMNS: &str = "r.\"scriptId\", r.\"id\", r.\"managedDeviceId\", \
    r.\"detectionState\", r.\"remediationState\", r.\"lastStateUpdateDateTime\", \
    r.\"expectedStateUpdateDateTime\", r.\"lastSyncDateTime\", \
    r.\"preRemediationDetectionScriptOutput\", r.\"preRemediationDetectionScriptError\", \
    r.\"remediationScriptError\", r.\"postRemediationDetectionScriptOutput\", \
    r.\"postRemediationDetectionScriptError\", r.\"assignmentFilterIds\", \
    d.\"userId\", d.\"deviceName\", d.\"osVersion\", d.\"userPrincipalName\", d.\"emailAddress\", \
    d.\"userDisplayName\", d.\"model\", d.\"operatingSystem\", d.\"joinType\"";

fn states(sql: &mut Sql, column: &str, values: &[i64]) {
    if values.is_empty() {
        sql.push(" AND 1 = 0");
        return;
    }
    sql.push(&format!(" AND r.\"{column}\" IN ("));
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.arg(db::int(*v));
    }
    sql.push(")");
}

/// One page of exported rows of `tenant` matching `filter`, after the row `(scriptId, id)`
/// `after`, at most `limit` of them.
pub(crate) async fn rows(
    c: &mut dyn Conn,
    tenant: &str,
    filter: &ExportFilter,
    after: Option<&(String, String)>,
    limit: usize,
) -> Result<Vec<ExportRow>, DbError> {
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {COLUMNS} FROM device_run_states r \
         LEFT JOIN managed_devices d ON d.\"tenant\" = r.\"tenant\" AND d.\"id\" = r.\"managedDeviceId\" \
         WHERE r.\"tenant\" = "
    ))
    .arg(db::text(tenant));
    if let Some(policy) = &filter.policy {
        sql.push(" AND r.\"scriptId\" = ").arg(db::text(policy));
    }
    if let Some(values) = &filter.detection {
        states(&mut sql, "detectionState", values);
    }
    if let Some(values) = &filter.remediation {
        states(&mut sql, "remediationState", values);
    }
    if let Some((script, id)) = after {
        if filter.policy.is_some() {
            sql.push(" AND r.\"id\" > ").arg(db::text(id));
        } else {
            sql.push(" AND (r.\"scriptId\" > ")
                .arg(db::text(script))
                .push(" OR (r.\"scriptId\" = ")
                .arg(db::text(script))
                .push(" AND r.\"id\" > ")
                .arg(db::text(id))
                .push("))");
        }
    }
    sql.push(" ORDER BY r.\"scriptId\", r.\"id\" LIMIT ")
        .arg(db::int(i64::try_from(limit).unwrap_or(i64::MAX)));
    let rows = c.query(&sql.text, &sql.args).await?;
    let mut rows = rows
        .into_iter()
        .map(decode_row)
        .collect::<Result<Vec<ExportRow>, DbError>>()?;
    // The scripts' names and versions, once per script of the page (a join would let the planner
    // loop over scripts outside the run states and sort every remaining row for each page).
    let mut scripts: Vec<&str> = rows.iter().map(|r| r.policy_id.as_str()).collect();
    scripts.dedup();
    let mut lookup = Sql::default();
    lookup
        .push("SELECT \"id\", \"displayName\", \"version\" FROM device_health_scripts WHERE \"tenant\" = ")
        .arg(db::text(tenant))
        .push(" AND \"id\" IN (");
    for (i, id) in scripts.iter().enumerate() {
        if i > 0 {
            lookup.push(", ");
        }
        lookup.arg(db::text(id));
    }
    lookup.push(")");
    if scripts.is_empty() {
        return Ok(rows);
    }
    let mut names = std::collections::HashMap::new();
    for mut script in c.query(&lookup.text, &lookup.args).await? {
        let id = script.take_text(0)?.unwrap_or_default();
        names.insert(id, (script.take_text(1)?, script.take_text(2)?));
    }
    for row in &mut rows {
        if let Some((name, version)) = names.get(&row.policy_id) {
            row.policy_name.clone_from(name);
            row.policy_version.clone_from(version);
        }
    }
    Ok(rows)
}

fn decode_row(mut row: Row) -> Result<ExportRow, DbError> {
    let time = |row: &Row, i: usize| -> Result<Option<Instant>, DbError> {
        Ok(row.int(i)?.and_then(Instant::from_ticks))
    };
    Ok(ExportRow {
        policy_id: row.take_text(0)?.unwrap_or_default(),
        policy_name: None,
        policy_version: None,
        state_id: row.take_text(1)?.unwrap_or_default(),
        device_id: row.take_text(2)?,
        detection: row.count(3)?,
        remediation: row.count(4)?,
        modified: time(&row, 5)?,
        next_execution: time(&row, 6)?,
        last_sync: time(&row, 7)?,
        pre_output: row.take_text(8)?,
        pre_error: row.take_text(9)?,
        remediation_error: row.take_text(10)?,
        post_output: row.take_text(11)?,
        post_error: row.take_text(12)?,
        filter_ids: row.take_text(13)?,
        user_id: row.take_text(14)?,
        device_name: row.take_text(15)?,
        os_version: row.take_text(16)?,
        upn: row.take_text(17)?,
        email: row.take_text(18)?,
        user_name: row.take_text(19)?,
        model: row.take_text(20)?,
        os: row.take_text(21)?,
        join_type: row.int(22)?,
    })
}
