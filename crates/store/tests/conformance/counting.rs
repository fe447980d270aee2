//! Counters and computed views against the rows they summarize: runSummary,
//! getRemediationSummary and unfiltered counts after sequences of writes, recounting, run
//! history appended per state change and pruned by retention, and concurrent writers.

use std::collections::BTreeSet;

use remediate_domain::model::{DEVICE_RUN_STATE, RUN_SUMMARY};
use remediate_domain::ops;
use remediate_domain::query::{Filter, HistoryDay, Scope};
use remediate_domain::write::Write;
use remediate_domain::{Instant, Record, Value};
use remediate_store::{SqlStore, Store, StoreError};

use crate::both;
use crate::values::*;

const SUMMARY: [&str; 9] = [
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

/// runSummary's counts as docs/computed-views.md defines them, from the rows.
fn summary_from_rows(states: &[Record]) -> [i64; 9] {
    let n = |f: &dyn Fn(i64, i64) -> bool| {
        states
            .iter()
            .filter(|r| f(enum_of(r, "detectionState"), enum_of(r, "remediationState")))
            .count() as i64
    };
    [
        n(&|d, r| d == det::SUCCESS && r != rem::SUCCESS),
        n(&|d, _| d == det::FAIL),
        n(&|d, _| d == det::SCRIPT_ERROR),
        n(&|d, _| d == det::PENDING),
        n(&|d, _| d == det::NOT_APPLICABLE),
        n(&|_, r| r == rem::SUCCESS),
        n(&|_, r| r == rem::SKIPPED),
        n(&|_, r| r == rem::FAILED),
        n(&|_, r| r == rem::SCRIPT_ERROR),
    ]
}

fn int(record: &Record, name: &str) -> i64 {
    match record.get(name) {
        Value::Int(v) => *v,
        other => panic!("{name} is {other:?}"),
    }
}

/// Compare every summary of tenant `A` with what its rows say; returns each script's
/// `issueRemediatedCumulativeDeviceCount` (which the rows of run states cannot show).
async fn check_views(s: &SqlStore) -> Vec<(String, i64)> {
    assert_counters_agree(s).await;
    let scripts = rows(s, A, &list(Scope::scripts())).await;
    let mut remediated = BTreeSet::new();
    let mut cumulative = Vec::new();
    for script in &scripts {
        let id = script.id();
        let states = run_states(s, A, id).await;
        let summary = s.run_summary(A, id).await.unwrap().unwrap();
        assert!(std::ptr::eq(summary.entity, &RUN_SUMMARY));
        let served: Vec<i64> = SUMMARY.iter().map(|n| int(&summary, n)).collect();
        assert_eq!(served, summary_from_rows(&states), "runSummary of {id}");
        let last = states
            .iter()
            .map(|r| r.get("lastStateUpdateDateTime").clone())
            .max_by_key(|v| match v {
                Value::Time(t) => t.ticks(),
                _ => -1,
            })
            .unwrap_or(Value::Null);
        assert_eq!(summary.get("lastScriptRunDateTime"), &last);
        let scope = Scope::run_states(id.to_owned());
        assert_eq!(count(s, A, scope.clone(), None).await, states.len() as u64);
        assert_eq!(
            count(s, A, scope, Some(Filter::Const(true))).await,
            states.len() as u64
        );
        for state in states
            .iter()
            .filter(|r| enum_of(r, "remediationState") == rem::SUCCESS)
        {
            remediated.insert(
                state
                    .device_id
                    .clone()
                    .unwrap_or_else(|| format!("{id}:{}", state.id())),
            );
        }
        cumulative.push((
            script.get("displayName").as_str().unwrap().to_owned(),
            int(&summary, "issueRemediatedCumulativeDeviceCount"),
        ));
    }
    assert_eq!(
        s.remediation_summary(A).await,
        Ok((scripts.len() as i64, remediated.len() as i64))
    );
    cumulative.sort();
    cumulative
}

fn cumulative(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    out.sort();
    out
}

both!(counters_and_summaries_follow_the_rows, |s| {
    let s1 = new_script(&s, A, "s1").await;
    let s2 = new_script(&s, A, "s2").await;
    let mut d = Vec::new();
    for i in 0..5 {
        d.push(new_device(&s, A, Some(&format!("d{i}"))).await);
    }
    let on = |t: &str, det: i64, rem: i64| {
        let mut fields = states(det, rem);
        fields.push(field(
            &DEVICE_RUN_STATE,
            "lastStateUpdateDateTime",
            Value::Time(time(t)),
        ));
        fields
    };
    report(
        &s,
        A,
        &s1,
        Some(&d[0]),
        on("2024-05-01T08:00:00Z", det::SUCCESS, rem::UNKNOWN),
    )
    .await;
    report(
        &s,
        A,
        &s1,
        Some(&d[1]),
        on("2024-05-02T08:00:00Z", det::FAIL, rem::SUCCESS),
    )
    .await;
    report(&s, A, &s1, Some(&d[2]), states(det::FAIL, rem::FAILED)).await;
    let u1 = report(&s, A, &s1, None, states(det::SCRIPT_ERROR, rem::UNKNOWN)).await;
    let u2 = report(&s, A, &s1, None, states(det::SUCCESS, rem::SUCCESS)).await;
    report(&s, A, &s2, Some(&d[0]), states(det::FAIL, rem::SUCCESS)).await;
    report(&s, A, &s2, Some(&d[3]), states(det::PENDING, rem::SKIPPED)).await;
    report(
        &s,
        A,
        &s2,
        Some(&d[4]),
        states(det::NOT_APPLICABLE, rem::SCRIPT_ERROR),
    )
    .await;
    assert_eq!(check_views(&s).await, cumulative(&[("s1", 2), ("s2", 1)]));
    // Remediated now: s1/d1, s1/u2 (unbound), s2/d0.
    assert_eq!(s.remediation_summary(A).await, Ok((2, 3)));
    let summary = s.run_summary(A, &s1).await.unwrap().unwrap();
    assert_eq!(
        summary.get("lastScriptRunDateTime"),
        &Value::Time(time("2024-05-02T08:00:00Z"))
    );

    // State changes in and out of remediated, and a bind that moves a remediated key.
    let update = |script: &String, id: String, fields, bind: Option<&String>| {
        let store = s.store.clone();
        let script = script.clone();
        let bind = bind.cloned();
        async move {
            update_state(&store, A, &script, &id, fields, bind.as_deref())
                .await
                .unwrap()
        }
    };
    update(
        &s1,
        format!("{s1}:{}", d[1]),
        states(det::SUCCESS, rem::UNKNOWN),
        None,
    )
    .await;
    update(
        &s2,
        format!("{s2}:{}", d[0]),
        states(det::SUCCESS, rem::UNKNOWN),
        None,
    )
    .await;
    update(
        &s1,
        u1.id().to_owned(),
        states(det::FAIL, rem::SUCCESS),
        Some(&d[3]),
    )
    .await;
    assert_eq!(check_views(&s).await, cumulative(&[("s1", 3), ("s2", 1)]));
    assert_eq!(s.remediation_summary(A).await, Ok((2, 2)));

    // Deletes: a run state, a device (its run states stay).
    ok(
        &s,
        A,
        Write::DeleteRunState {
            script_id: s1.clone(),
            id: format!("{s1}:{}", d[2]),
        },
    )
    .await;
    ok(&s, A, Write::DeleteDevice { id: d[4].clone() }).await;
    assert_eq!(count(&s, A, Scope::devices(), None).await, 4);
    check_views(&s).await;
    // d3 remediated in both scripts counts once; the remediated unbound u2 bound to the freed d2
    // moves its key without a new history record.
    update(
        &s2,
        format!("{s2}:{}", d[3]),
        states(det::FAIL, rem::SUCCESS),
        None,
    )
    .await;
    update(&s1, u2.id().to_owned(), vec![], Some(&d[2])).await;
    assert_eq!(check_views(&s).await, cumulative(&[("s1", 3), ("s2", 2)]));
    assert_eq!(s.remediation_summary(A).await, Ok((2, 2)));

    // Deleting s2 takes its run states out of the counts; d3 stays remediated through s1.
    ok(&s, A, Write::DeleteScript { id: s2.clone() }).await;
    assert_eq!(check_views(&s).await, cumulative(&[("s1", 3)]));
    assert_eq!(s.remediation_summary(A).await, Ok((1, 2)));
    // Rebuilding the counters from the rows changes nothing a client sees.
    let before = s.run_summary(A, &s1).await.unwrap();
    s.recount().await.unwrap();
    assert_eq!(s.run_summary(A, &s1).await.unwrap(), before);
    assert_eq!(check_views(&s).await, cumulative(&[("s1", 3)]));
});

fn history_of(script: &str, state: &str) -> Scope {
    Scope::history(script.to_owned(), state.to_owned())
}

both!(history_is_appended_per_state_change_and_pruned, |s| {
    let script = new_script(&s, A, "s").await;
    let d1 = new_device(&s, A, Some("d1")).await;
    let d2 = new_device(&s, A, Some("d2")).await;
    let at = |t: &str| {
        field(
            &DEVICE_RUN_STATE,
            "lastStateUpdateDateTime",
            Value::Time(time(t)),
        )
    };
    let output = |o: &str| {
        field(
            &DEVICE_RUN_STATE,
            "preRemediationDetectionScriptOutput",
            text(o),
        )
    };
    let started = Instant::now();
    let mut fields = states(det::SUCCESS, rem::UNKNOWN);
    fields.extend([at("2024-03-01T10:00:00Z"), output("o1")]);
    let state = report(&s, A, &script, Some(&d1), fields).await;
    let id = state.id().to_owned();
    let history = history_of(&script, &id);
    let first = rows(&s, A, &list(history.clone())).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].get("detectionState"), &Value::Enum(det::SUCCESS));
    assert_eq!(first[0].get("managedDeviceId"), &text(&d1));
    assert_eq!(
        first[0].get("preRemediationDetectionScriptOutput"),
        &text("o1")
    );
    assert_eq!(
        first[0].get("lastStateUpdateDateTime"),
        &Value::Time(time("2024-03-01T10:00:00Z"))
    );
    match first[0].get("recordedDateTime") {
        Value::Time(t) => assert!(*t >= started && *t <= Instant::now()),
        other => panic!("recordedDateTime is {other:?}"),
    }

    let patch = |fields| {
        let (store, script, id) = (s.store.clone(), script.clone(), id.clone());
        async move {
            update_state(&store, A, &script, &id, fields, None)
                .await
                .unwrap();
            rows(&store, A, &list(history_of(&script, &id))).await.len()
        }
    };
    // An output alone is not a state change; the next record carries it.
    assert_eq!(patch(vec![output("o2")]).await, 1);
    let mut fields = states(det::FAIL, rem::UNKNOWN);
    fields.push(at("2024-03-02T09:00:00Z"));
    assert_eq!(patch(fields.clone()).await, 2);
    // The same values again change nothing.
    assert_eq!(patch(fields).await, 2);
    let mut fields = states(det::FAIL, rem::SUCCESS);
    fields.push(at("2024-03-02T11:00:00Z"));
    assert_eq!(patch(fields).await, 3);
    let records = rows(&s, A, &list(history.clone())).await;
    let sequence: Vec<(i64, i64)> = records
        .iter()
        .map(|r| (enum_of(r, "detectionState"), enum_of(r, "remediationState")))
        .collect();
    assert_eq!(
        sequence,
        [
            (det::SUCCESS, rem::UNKNOWN),
            (det::FAIL, rem::UNKNOWN),
            (det::FAIL, rem::SUCCESS)
        ],
        "history in the order it was appended"
    );
    assert_eq!(
        records[1].get("preRemediationDetectionScriptOutput"),
        &text("o2")
    );

    let mut fields = states(det::FAIL, rem::UNKNOWN);
    fields.push(at("2024-03-01T12:00:00Z"));
    let other = report(&s, A, &script, Some(&d2), fields).await;
    let days = s.remediation_history(A, &script).await.unwrap().unwrap();
    let day = |date: &str, remediated, no_issue, detect_failed| HistoryDay {
        date: date.into(),
        remediated,
        no_issue,
        detect_failed,
    };
    assert_eq!(
        days.days,
        [day("2024-03-01", 0, 1, 1), day("2024-03-02", 1, 0, 0)]
    );
    let summary = s.run_summary(A, &script).await.unwrap().unwrap();
    assert_eq!(int(&summary, "issueRemediatedCumulativeDeviceCount"), 1);

    // Retention: everything recorded before the cutoff goes, with what it counted.
    let cutoff = Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut fields = states(det::SUCCESS, rem::SUCCESS);
    fields.push(at("2024-03-03T08:00:00Z"));
    update_state(&s, A, &script, other.id(), fields, None)
        .await
        .unwrap();
    let summary = s.run_summary(A, &script).await.unwrap().unwrap();
    assert_eq!(int(&summary, "issueRemediatedCumulativeDeviceCount"), 2);
    assert_eq!(s.prune_history(cutoff).await, Ok(4));
    assert!(rows(&s, A, &list(history)).await.is_empty());
    let left = rows(&s, A, &list(history_of(&script, other.id()))).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].get("remediationState"), &Value::Enum(rem::SUCCESS));
    let summary = s.run_summary(A, &script).await.unwrap().unwrap();
    assert_eq!(int(&summary, "issueRemediatedCumulativeDeviceCount"), 1);
    let days = s.remediation_history(A, &script).await.unwrap().unwrap();
    assert_eq!(days.days, [day("2024-03-03", 1, 0, 0)]);
    assert_eq!(s.prune_history(cutoff).await, Ok(0));
    // The run states themselves are untouched.
    assert_eq!(run_states(&s, A, &script).await.len(), 2);
    assert_counters_agree(&s).await;
});

/// xorshift64: a reproducible sequence per task without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

both!(concurrent_writes_keep_the_counters_exact, |s| {
    let mut scripts = Vec::new();
    for i in 0..2 {
        scripts.push(new_script(&s, A, &format!("s{i}")).await);
    }
    let mut devices = Vec::new();
    for i in 0..6 {
        devices.push(new_device(&s, A, Some(&format!("d{i}"))).await);
    }
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let (store, scripts, devices) = (s.store.clone(), scripts.clone(), devices.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((task + 1) * 0x1000_0001));
            let mut accepted = 0;
            for _ in 0..25 {
                let script = scripts[rng.below(2) as usize].clone();
                let device = devices[rng.below(6) as usize].clone();
                let (d, r) = (rng.below(6) as i64, rng.below(5) as i64);
                let write = match rng.below(6) {
                    0 => ops::create_run_state(script, states(d, r), Some(device)),
                    1 | 2 => Write::UpdateRunState {
                        id: format!("{script}:{device}"),
                        script_id: script,
                        changes: states(d, r),
                        bind_device: None,
                    },
                    3 => Write::DeleteRunState {
                        id: format!("{script}:{device}"),
                        script_id: script,
                    },
                    4 => {
                        // An unbound run state, bound to a device by a later report.
                        let state = ops::create_run_state(script.clone(), states(d, r), None);
                        let Ok(remediate_domain::write::WriteOutcome::Created(created)) =
                            store.write(A, state).await
                        else {
                            panic!("an unbound run state was refused")
                        };
                        Write::UpdateRunState {
                            script_id: script,
                            id: created.id().to_owned(),
                            changes: states(r % 6, d % 5),
                            bind_device: Some(device),
                        }
                    }
                    _ => Write::RequestOnDemand {
                        device_id: device,
                        script_id: script,
                    },
                };
                match store.write(A, write.clone()).await {
                    Ok(_) => accepted += 1,
                    // Another task got there first (the state exists, is gone, or is bound).
                    Err(StoreError::NotFound(_) | StoreError::Conflict(_)) => {}
                    Err(e) => panic!("{}: {e:?}", label(&write)),
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap();
    }
    assert!(accepted > 50, "only {accepted} writes were accepted");
    check_views(&s).await;
});
