//! getRemediationHistory from the per-day aggregate kept on write (migration 0010) against its
//! definition evaluated on the rows: the window-function query `views::remediation_history` ran
//! before the aggregate existed is the oracle here, run directly on the database. Random report
//! sequences (several devices and days, same-day repeats, records with and without a run time,
//! unbound run states bound later, run times out of order, run-state and script deletions,
//! pruning at cutoffs that split days) through both write paths (SQLite's statements, the
//! PostgreSQL report function), concurrent writers with pruning beside them, records whose ids do
//! not follow their receipt time, and the migration's fill of an existing database.

use remediate_domain::model::DEVICE_RUN_STATE;
use remediate_domain::ops;
use remediate_domain::query::HistoryDay;
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Value};
use remediate_store::{SqlStore, Store, StoreError, StoreOptions};

use crate::values::*;
use crate::{both, Backend, TestStore};

const TICKS_PER_DAY: i64 = 864_000_000_000;

/// The definition (docs/computed-views.md): each device counts once per UTC day, classified by
/// its last record of that day by id. The query getRemediationHistory ran over every record.
const ORACLE: &str = "SELECT day, \
       COUNT(CASE WHEN rem = 2 THEN 1 END), \
       COUNT(CASE WHEN det = 1 AND rem <> 2 THEN 1 END), \
       COUNT(CASE WHEN det IN (2, 3) AND rem <> 2 THEN 1 END) \
     FROM (SELECT day, det, rem, ROW_NUMBER() OVER (PARTITION BY day, dev ORDER BY id DESC) AS rn \
           FROM (SELECT (CASE WHEN \"lastStateUpdateDateTime\" > 0 THEN \"lastStateUpdateDateTime\" ELSE \"recordedDateTime\" END) / 864000000000 AS day, \
                        COALESCE(\"managedDeviceId\", \"stateId\") AS dev, \"detectionState\" AS det, \"remediationState\" AS rem, \"id\" AS id \
                 FROM run_history WHERE \"tenant\" = $1 AND \"scriptId\" = $2) x) y \
     WHERE rn = 1 GROUP BY day ORDER BY day";

const LAST: &str =
    "SELECT MAX(\"recordedDateTime\") FROM run_history WHERE \"tenant\" = $1 AND \"scriptId\" = $2";

fn day_of(day: i64, counts: [i64; 3]) -> HistoryDay {
    HistoryDay {
        date: Instant::from_ticks(day * TICKS_PER_DAY)
            .unwrap()
            .date_string(),
        remediated: counts[0],
        no_issue: counts[1],
        detect_failed: counts[2],
    }
}

/// The oracle's days and newest receipt, evaluated on the database under the store.
async fn oracle(s: &TestStore, script: &str) -> (Vec<HistoryDay>, Option<Instant>) {
    match s.backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(&s._scratch.name).unwrap();
            let sql = ORACLE.replace("$1", "?1").replace("$2", "?2");
            let mut statement = conn.prepare(&sql).unwrap();
            let days = statement
                .query_map([A, script], |r| {
                    Ok(day_of(r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?]))
                })
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let last: Option<i64> = conn
                .query_row(
                    &LAST.replace("$1", "?1").replace("$2", "?2"),
                    [A, script],
                    |r| r.get(0),
                )
                .unwrap();
            (days, last.and_then(Instant::from_ticks))
        }
        Backend::Postgres => {
            let conn = crate::pg_connect(&s._scratch.url).await.unwrap();
            let days = conn
                .query(ORACLE, &[&A, &script])
                .await
                .unwrap()
                .into_iter()
                .map(|r| day_of(r.get::<_, i64>(0), [r.get(1), r.get(2), r.get(3)]))
                .collect();
            let last: Option<i64> = conn.query_one(LAST, &[&A, &script]).await.unwrap().get(0);
            (days, last.and_then(Instant::from_ticks))
        }
    }
}

/// Statements run directly on the database (no store).
pub(crate) async fn raw(s: &TestStore, sql: &str) {
    match s.backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(&s._scratch.name).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            conn.execute_batch(sql).unwrap();
        }
        Backend::Postgres => {
            let conn = crate::pg_connect(&s._scratch.url).await.unwrap();
            conn.batch_execute(sql).await.unwrap();
        }
    }
}

/// getRemediationHistory of `script` equals the oracle.
async fn assert_history(s: &TestStore, script: &str, step: &str) {
    let served = s.remediation_history(A, script).await.unwrap().unwrap();
    let (days, last) = oracle(s, script).await;
    assert_eq!(served.days, days, "days of {script} after {step}");
    assert_eq!(
        served.last_modified, last,
        "lastModified of {script} after {step}"
    );
}

/// xorshift64: a reproducible sequence without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Random states and, mostly, a run time on one of four days (out of order), or none.
fn report_fields(rng: &mut Rng) -> Vec<(usize, Value)> {
    let mut fields = states(rng.below(6) as i64, rng.below(5) as i64);
    if rng.below(5) > 0 {
        let day = 1 + rng.below(4);
        let hour = rng.below(24);
        fields.push(field(
            &DEVICE_RUN_STATE,
            "lastStateUpdateDateTime",
            Value::Time(time(&format!("2024-06-0{day}T{hour:02}:17:00Z"))),
        ));
    }
    fields
}

/// One step of a random sequence against scripts, devices and unbound run states.
struct World {
    scripts: Vec<String>,
    devices: Vec<String>,
    /// Unbound run states: (script, id).
    unbound: Vec<(String, String)>,
    /// Instants between steps: pruning cutoffs.
    marks: Vec<Instant>,
    created: u32,
}

impl World {
    async fn step(&mut self, s: &SqlStore, rng: &mut Rng) -> String {
        self.marks.push(Instant::now());
        let script = self.scripts[rng.below(self.scripts.len() as u64) as usize].clone();
        let device = self.devices[rng.below(self.devices.len() as u64) as usize].clone();
        match rng.below(20) {
            // A device report: create or update its run state.
            0..=10 => {
                let id = format!("{script}:{device}");
                let fields = report_fields(rng);
                match update_state(s, A, &script, &id, fields.clone(), None).await {
                    Ok(_) => format!("a report of {device} to {script}"),
                    Err(StoreError::NotFound(_)) => {
                        let write =
                            ops::create_run_state(script.clone(), fields, Some(device.clone()));
                        match s.write(A, write).await {
                            // Conflict: a run state bound to the device after being unbound.
                            Ok(_) | Err(StoreError::Conflict(_)) => {}
                            Err(e) => panic!("create: {e:?}"),
                        }
                        format!("a first report of {device} to {script}")
                    }
                    Err(e) => panic!("report: {e:?}"),
                }
            }
            // The same report again (same states and time): no new record.
            11 => {
                let id = format!("{script}:{device}");
                let fields = states(det::SUCCESS, rem::UNKNOWN);
                let _ = update_state(s, A, &script, &id, fields.clone(), None).await;
                let _ = update_state(s, A, &script, &id, fields, None).await;
                format!("a repeated report of {device} to {script}")
            }
            // An unbound run state, updated, later bound.
            12 | 13 => {
                let state = report(s, A, &script, None, report_fields(rng)).await;
                self.unbound.push((script.clone(), state.id().to_owned()));
                "an unbound run state".to_owned()
            }
            14 | 15 if !self.unbound.is_empty() => {
                let (script, id) =
                    self.unbound[rng.below(self.unbound.len() as u64) as usize].clone();
                let bind = (rng.below(3) == 0).then_some(device.clone());
                match update_state(s, A, &script, &id, report_fields(rng), bind.as_deref()).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    // Already bound elsewhere, or the device has a run state of the script.
                    Err(StoreError::InvalidReference(_) | StoreError::Conflict(_)) => {
                        let _ = update_state(s, A, &script, &id, report_fields(rng), None).await;
                    }
                    Err(e) => panic!("unbound update: {e:?}"),
                }
                format!("a report of the unbound {id}")
            }
            // A run state deleted (its history stays), reported again later.
            16 => {
                let _ = s
                    .write(
                        A,
                        Write::DeleteRunState {
                            script_id: script.clone(),
                            id: format!("{script}:{device}"),
                        },
                    )
                    .await;
                format!("deleting the run state of {device} in {script}")
            }
            // Pruning at a cutoff between earlier steps: device-days recorded on both sides split.
            17 if self.marks.len() > 4 => {
                let at = self.marks.len() - 1 - rng.below(self.marks.len() as u64 / 2) as usize;
                let cutoff = self.marks[at];
                s.prune_history(cutoff).await.unwrap();
                format!("pruning before step {at}")
            }
            // A script deleted (and another created).
            18 if rng.below(4) == 0 => {
                ok(s, A, Write::DeleteScript { id: script.clone() }).await;
                self.scripts.retain(|x| *x != script);
                self.unbound.retain(|(x, _)| *x != script);
                self.created += 1;
                self.scripts
                    .push(new_script(s, A, &format!("s{}", self.created)).await);
                format!("deleting {script}")
            }
            _ => {
                let id = format!("{script}:{device}");
                let _ = update_state(s, A, &script, &id, report_fields(rng), None).await;
                format!("another report of {device} to {script}")
            }
        }
    }
}

both!(history_days_follow_random_reports_and_pruning, |s| {
    let mut world = World {
        scripts: Vec::new(),
        devices: Vec::new(),
        unbound: Vec::new(),
        marks: Vec::new(),
        created: 0,
    };
    for i in 0..3 {
        world
            .scripts
            .push(new_script(&s, A, &format!("s{i}")).await);
    }
    world.created = 3;
    for i in 0..5 {
        world
            .devices
            .push(new_device(&s, A, Some(&format!("d{i}"))).await);
    }
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut prunes = 0;
    for step in 0..160 {
        let what = world.step(&s, &mut rng).await;
        prunes += usize::from(what.starts_with("pruning"));
        for script in world.scripts.clone() {
            assert_history(&s, &script, &format!("step {step}: {what}")).await;
        }
        if step % 40 == 39 {
            assert_counters_agree(&s).await;
        }
    }
    assert!(prunes >= 3, "only {prunes} prunings");
    // Finally everything goes.
    s.prune_history(Instant::now()).await.unwrap();
    for script in world.scripts.clone() {
        assert_history(&s, &script, "pruning everything").await;
        let served = s.remediation_history(A, &script).await.unwrap().unwrap();
        assert!(served.days.is_empty() && served.last_modified.is_none());
    }
    assert_counters_agree(&s).await;
});

both!(concurrent_reports_and_pruning_keep_the_history_exact, |s| {
    let script = new_script(&s, A, "s").await;
    let mut devices = Vec::new();
    for i in 0..4 {
        devices.push(new_device(&s, A, Some(&format!("d{i}"))).await);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let (store, script, devices) = (s.store.clone(), script.clone(), devices.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((task + 1) * 0x1000_0001));
            for _ in 0..30 {
                let device = devices[rng.below(4) as usize].clone();
                let id = format!("{script}:{device}");
                // Two days only: many writers on the same device-days.
                let mut fields = states(rng.below(6) as i64, rng.below(5) as i64);
                if rng.below(4) > 0 {
                    fields.push(field(
                        &DEVICE_RUN_STATE,
                        "lastStateUpdateDateTime",
                        Value::Time(time(&format!(
                            "2024-06-0{}T{:02}:00:00Z",
                            1 + rng.below(2),
                            rng.below(24)
                        ))),
                    ));
                }
                match update_state(&store, A, &script, &id, fields.clone(), None).await {
                    Ok(_) => {}
                    Err(StoreError::NotFound(_)) => {
                        let write = ops::create_run_state(script.clone(), fields, Some(device));
                        match store.write(A, write).await {
                            Ok(WriteOutcome::Created(_)) | Err(StoreError::Conflict(_)) => {}
                            other => panic!("create: {other:?}"),
                        }
                    }
                    Err(e) => panic!("update: {e:?}"),
                }
            }
        }));
    }
    // Pruning beside the writers, at cutoffs while they write.
    let pruner = {
        let store = s.store.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let cutoff = Instant::from_ticks(
                    started.ticks() + (Instant::now().ticks() - started.ticks()) / 2,
                )
                .unwrap();
                store.prune_history(cutoff).await.unwrap();
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    pruner.await.unwrap();
    assert_history(&s, &script, "concurrent reports").await;
    assert_counters_agree(&s).await;
    s.prune_history(Instant::now()).await.unwrap();
    assert_history(&s, &script, "pruning everything").await;
    assert_counters_agree(&s).await;
});

/// A history record written directly (as a copy or a hand edit would), bypassing the aggregate.
fn raw_record(
    script: &str,
    device: Option<&str>,
    id: &str,
    recorded: i64,
    run: Option<i64>,
    (det, rem): (i64, i64),
) -> String {
    let device = device.map_or("NULL".to_owned(), |d| format!("'{d}'"));
    let run = run.map_or("NULL".to_owned(), |t| t.to_string());
    format!(
        "INSERT INTO run_history (\"tenant\", \"scriptId\", \"stateId\", \"id\", \"recordedDateTime\", \
           \"managedDeviceId\", \"detectionState\", \"remediationState\", \"lastStateUpdateDateTime\") \
         VALUES ('{A}', '{script}', 'state-{id}', '{id}', {recorded}, {device}, {det}, {rem}, {run});"
    )
}

both!(
    recount_and_pruning_handle_ids_that_do_not_follow_receipt,
    |s| {
        let script = new_script(&s, A, "s").await;
        let day = time("2024-06-01T00:00:00Z").ticks();
        let hour = 36_000_000_000;
        let old = time("2024-01-01T00:00:00Z").ticks();
        let new = time("2024-03-01T00:00:00Z").ticks();
        let cutoff = time("2024-02-01T00:00:00Z");
        let mut sql = String::new();
        // d1: the latest by id was received first (pruned), an earlier id later (kept): the day
        // takes the kept record's class.
        sql += &raw_record(&script, Some("d1"), "9-z", old, Some(day + hour), (1, 0));
        sql += &raw_record(
            &script,
            Some("d1"),
            "1-a",
            new,
            Some(day + 2 * hour),
            (2, 0),
        );
        // d2: every record of the day pruned.
        sql += &raw_record(&script, Some("d2"), "5-a", old, Some(day), (1, 2));
        sql += &raw_record(&script, Some("d2"), "5-b", old + 1, Some(day), (2, 0));
        // d3: the latest kept, an earlier one pruned: nothing changes.
        sql += &raw_record(&script, Some("d3"), "2-a", old, Some(day), (2, 3));
        sql += &raw_record(&script, Some("d3"), "8-a", new, Some(day), (1, 0));
        // Unbound records (stateId), records without a run time (their day is their receipt's) and
        // one without a receipt time (never pruned).
        sql += &raw_record(&script, None, "3-a", new, Some(day + TICKS_PER_DAY), (3, 4));
        sql += &raw_record(&script, Some("d4"), "4-a", old, None, (1, 1));
        sql += &raw_record(&script, Some("d4"), "4-b", new, None, (2, 2));
        sql += &format!(
        "INSERT INTO run_history (\"tenant\", \"scriptId\", \"stateId\", \"id\", \"managedDeviceId\", \
           \"detectionState\", \"remediationState\", \"lastStateUpdateDateTime\") \
         VALUES ('{A}', '{script}', 'st', '0-n', 'd5', 1, 0, {day});"
    );
        raw(&s, &sql).await;
        // Copied rows are not in the aggregate until a recount.
        assert!(!s.check_counters().await.unwrap().is_empty());
        s.recount().await.unwrap();
        assert_counters_agree(&s).await;
        assert_history(&s, &script, "the recount").await;
        assert_eq!(s.prune_history(cutoff).await, Ok(5));
        assert_history(&s, &script, "pruning").await;
        let served = s.remediation_history(A, &script).await.unwrap().unwrap();
        assert!(
            served
                .days
                .iter()
                .any(|d| d.date == "2024-06-01" && d.detect_failed >= 1),
            "{served:?}"
        );
        assert_counters_agree(&s).await;
        // A report through the store beside the copied rows.
        let device = new_device(&s, A, Some("d")).await;
        report(&s, A, &script, Some(&device), report_fields(&mut Rng(7))).await;
        assert_history(&s, &script, "a report").await;
        assert_counters_agree(&s).await;
        // The aggregate changed by hand is found by the check.
        raw(&s, "UPDATE history_day_counts SET \"n\" = \"n\" + 1;").await;
        let differences = s.check_counters().await.unwrap();
        assert!(
            differences.iter().any(|d| d.contains("history day count")),
            "{differences:#?}"
        );
        s.recount().await.unwrap();
        assert_counters_agree(&s).await;
        assert_history(&s, &script, "the second recount").await;
    }
);

both!(
    the_migration_fills_the_aggregate_of_an_existing_database,
    |s| {
        let script = new_script(&s, A, "s").await;
        let mut rng = Rng(0x1234_5678_9ABC_DEF1);
        let mut devices = Vec::new();
        for i in 0..4 {
            devices.push(new_device(&s, A, Some(&format!("d{i}"))).await);
        }
        for _ in 0..40 {
            let device = &devices[rng.below(4) as usize];
            let id = format!("{script}:{device}");
            let fields = report_fields(&mut rng);
            if update_state(&s, A, &script, &id, fields.clone(), None)
                .await
                .is_err()
            {
                report(&s, A, &script, Some(device), fields).await;
            }
        }
        report(&s, A, &script, None, report_fields(&mut rng)).await;
        let before = s.remediation_history(A, &script).await.unwrap().unwrap();
        // The database as migration 9 left it: no aggregate, migration 10 not applied.
        raw(
            &s,
            "DROP TABLE history_days; DROP TABLE history_day_counts; \
         DELETE FROM schema_migrations WHERE version = 10;",
        )
        .await;
        let reopened = SqlStore::connect(&StoreOptions {
            url: s._scratch.url.clone(),
            max_connections: 2,
            acquire_timeout: std::time::Duration::from_secs(10),
            statement_timeout: std::time::Duration::from_secs(30),
        })
        .await
        .unwrap();
        let after = reopened
            .remediation_history(A, &script)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(after, before);
        let (days, _) = oracle(&s, &script).await;
        assert_eq!(after.days, days);
        assert!(days.len() >= 3, "{days:?}");
        assert_counters_agree(&reopened).await;
    }
);
