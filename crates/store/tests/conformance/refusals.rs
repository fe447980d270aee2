//! Refused writes: every kind of refusal leaves nothing a client can read changed (also a write
//! that fails halfway), refused writes next to accepted ones in the same SQLite group commit do
//! not undo them, and tenants see and change only their own rows.

use remediate_domain::model::DEVICE_HEALTH_SCRIPT;
use remediate_domain::ops;
use remediate_domain::query::Scope;
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Record};
use remediate_store::{EntityRef, SqlStore, Store, StoreError};

use crate::both;
use crate::values::*;

/// Everything a client of tenant `A` can read about the fixture (records as [`brief`]s).
#[derive(Debug, PartialEq)]
struct Snapshot {
    scripts: Vec<String>,
    devices: Vec<String>,
    states: Vec<String>,
    assignments: Vec<String>,
    history: Vec<String>,
    pending: Option<Vec<(String, Instant)>>,
    summary: Option<String>,
    remediation: (i64, i64),
    device_count: u64,
    state_count: u64,
    targets: Vec<(String, String)>,
}

fn briefs(records: Vec<Record>) -> Vec<String> {
    records.iter().map(brief).collect()
}

async fn snapshot(s: &SqlStore, script: &str, device: &str, state: &str) -> Snapshot {
    let mut scripts = Vec::new();
    for listed in rows(s, A, &list(Scope::scripts())).await {
        let script = get_script(s, A, listed.id()).await;
        scripts.push(script.as_ref().map_or("missing".into(), brief));
    }
    let in_script = Scope::run_states(script.to_owned());
    let assignments = Scope::assignments(script.to_owned());
    let history = Scope::history(script.to_owned(), state.to_owned());
    Snapshot {
        scripts,
        devices: briefs(rows(s, A, &list(Scope::devices())).await),
        states: briefs(rows(s, A, &list(in_script.clone())).await),
        assignments: briefs(rows(s, A, &list(assignments)).await),
        history: briefs(rows(s, A, &list(history)).await),
        pending: s.pending_on_demand(A, device).await.unwrap(),
        summary: s.run_summary(A, script).await.unwrap().as_ref().map(brief),
        remediation: s.remediation_summary(A).await.unwrap(),
        device_count: count(s, A, Scope::devices(), None).await,
        state_count: count(s, A, in_script, None).await,
        targets: s.assignment_targets(A).await.unwrap(),
    }
}

both!(refused_writes_change_nothing, |s| {
    let script = new_script(&s, A, "s").await;
    let script_record = get_script(&s, A, &script).await.unwrap();
    let d1 = new_device(&s, A, Some("one")).await;
    let d2 = new_device(&s, A, Some("two")).await;
    let device_record = s
        .get(A, &EntityRef::Device(d1.clone()))
        .await
        .unwrap()
        .unwrap();
    let bound = report(&s, A, &script, Some(&d1), states(det::FAIL, rem::SUCCESS)).await;
    report(
        &s,
        A,
        &script,
        Some(&d2),
        states(det::SUCCESS, rem::UNKNOWN),
    )
    .await;
    let unbound = report(&s, A, &script, None, states(det::FAIL, rem::UNKNOWN)).await;
    ok(
        &s,
        A,
        ops::create_assignment(&script, assignment_fields(group_target("g1"))).unwrap(),
    )
    .await;
    let other = new_script(&s, A, "other").await;
    ok(
        &s,
        A,
        Write::RequestOnDemand {
            device_id: d1.clone(),
            script_id: other.clone(),
        },
    )
    .await;
    let before = snapshot(&s, &script, &d1, bound.id()).await;
    assert_eq!(before.states.len(), 3);
    assert_eq!(before.history.len(), 1);

    let change = states(det::SUCCESS, rem::SUCCESS);
    let update = |id: &str, bind: Option<&str>| Write::UpdateRunState {
        script_id: script.clone(),
        id: id.to_owned(),
        changes: change.clone(),
        bind_device: bind.map(str::to_owned),
    };
    let twice = ops::assignment_record(&script, assignment_fields(group_target("g2"))).unwrap();
    let refused: Vec<(Write, StoreError)> = vec![
        (
            ops::create_run_state("missing".into(), change.clone(), Some(d2.clone())),
            script_missing("missing"),
        ),
        (
            ops::create_run_state(script.clone(), change.clone(), Some("nope".into())),
            StoreError::InvalidReference(
                "The managedDevice 'nope' named by 'managedDevice@odata.bind' does not exist."
                    .into(),
            ),
        ),
        (
            ops::create_run_state(script.clone(), change.clone(), Some(d1.clone())),
            StoreError::Conflict(format!(
                "A deviceRunState for managedDevice '{d1}' already exists for this deviceHealthScript: '{}'. Update it with PATCH instead.",
                bound.id()
            )),
        ),
        (
            update(unbound.id(), Some("nope")),
            StoreError::InvalidReference(
                "The managedDevice 'nope' named by 'managedDevice@odata.bind' does not exist."
                    .into(),
            ),
        ),
        (
            update(bound.id(), Some(&d2)),
            StoreError::InvalidReference(format!(
                "The deviceRunState '{}' is already bound to managedDevice '{d1}'; its device cannot be changed.",
                bound.id()
            )),
        ),
        (
            Write::CreateScript {
                record: script_record,
            },
            taken_key(),
        ),
        (
            Write::CreateDevice {
                record: device_record,
            },
            taken_key(),
        ),
        (
            ops::create_assignment(&script, assignment_fields(group_target("g1"))).unwrap(),
            StoreError::Conflict(format!(
                "An assignment with the id '{script}:g1' (the same target group) already exists for this deviceHealthScript."
            )),
        ),
        (
            Write::UpdateScript {
                id: "missing".into(),
                changes: vec![],
            },
            script_missing("missing"),
        ),
        (
            Write::DeleteDevice {
                id: "missing".into(),
            },
            StoreError::NotFound("The managedDevice 'missing' does not exist.".into()),
        ),
        (
            Write::DeleteRunState {
                script_id: script.clone(),
                id: "missing".into(),
            },
            StoreError::NotFound(format!(
                "The deviceRunState 'missing' does not exist in deviceHealthScript '{script}'."
            )),
        ),
        (
            Write::DeleteScript {
                id: "missing".into(),
            },
            script_missing("missing"),
        ),
        (
            Write::RequestOnDemand {
                device_id: d1.clone(),
                script_id: "missing".into(),
            },
            StoreError::InvalidReference(
                "The scriptPolicyId 'missing' does not name a deviceHealthScript of this tenant."
                    .into(),
            ),
        ),
        (
            Write::Assign {
                script_id: "missing".into(),
                records: vec![],
            },
            script_missing("missing"),
        ),
        // Fails halfway (the old set deleted, one row inserted, then a taken key): nothing of it
        // may remain. `ops::assign` refuses such a set; the store must not rely on that.
        (
            Write::Assign {
                script_id: script.clone(),
                records: vec![twice.clone(), twice],
            },
            taken_key(),
        ),
    ];
    for (write, error) in refused {
        let what = label(&write);
        assert_eq!(s.write(A, write).await, Err(error), "{what}");
        assert_eq!(
            snapshot(&s, &script, &d1, bound.id()).await,
            before,
            "after {what}"
        );
    }
    assert_counters_agree(&s).await;
});

both!(a_refused_write_does_not_undo_the_writes_beside_it, |s| {
    // Sent at once, these meet in the SQLite writer's groups: each refused write must roll back
    // only itself, each accepted one must commit.
    let taken = register_device(&s, A, "taken", "x").await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let write = match i % 4 {
            0 | 2 => {
                let Write::CreateDevice { mut record } = ops::create_device(vec![]) else {
                    unreachable!()
                };
                record.set("id", text(&format!("new-{i:02}")));
                Write::CreateDevice { record }
            }
            1 => Write::CreateDevice {
                record: taken.clone(),
            },
            _ => Write::DeleteDevice {
                id: format!("missing-{i}"),
            },
        };
        let store = s.store.clone();
        tasks.push(tokio::spawn(async move { store.write(A, write).await }));
    }
    let mut expected = vec!["taken".to_owned()];
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        match i % 4 {
            0 | 2 => {
                let id = format!("new-{i:02}");
                assert!(
                    matches!(&result, Ok(WriteOutcome::Created(r)) if r.id() == id),
                    "{result:?}"
                );
                expected.push(id);
            }
            1 => assert_eq!(result, Err(taken_key())),
            _ => assert_eq!(
                result,
                Err(StoreError::NotFound(format!(
                    "The managedDevice 'missing-{i}' does not exist."
                )))
            ),
        }
    }
    expected.sort();
    assert_eq!(ids(&s, A, &list(Scope::devices())).await, expected);
    assert_eq!(count(&s, A, Scope::devices(), None).await, 21);
    assert_counters_agree(&s).await;
});

both!(tenants_see_and_change_only_their_own_rows, |s| {
    let script = new_script(&s, A, "a's script").await;
    let device = register_device(&s, A, "shared-id", "a's device").await;
    let state = report(
        &s,
        A,
        &script,
        Some("shared-id"),
        states(det::FAIL, rem::SUCCESS),
    )
    .await;
    ok(
        &s,
        A,
        ops::create_assignment(&script, assignment_fields(group_target("g1"))).unwrap(),
    )
    .await;
    let before = snapshot(&s, &script, "shared-id", state.id()).await;

    let script_key = EntityRef::Script(script.clone());
    let state_key = EntityRef::RunState {
        script_id: script.clone(),
        id: state.id().to_owned(),
    };
    assert_eq!(s.get(B, &script_key).await, Ok(None));
    assert_eq!(s.get(B, &state_key).await, Ok(None));
    assert_eq!(
        s.get(B, &EntityRef::Device("shared-id".into())).await,
        Ok(None)
    );
    assert!(rows(&s, B, &list(Scope::scripts())).await.is_empty());
    assert!(rows(&s, B, &list(Scope::devices())).await.is_empty());
    let in_script = Scope::run_states(script.clone());
    assert_eq!(
        s.list(B, &list(in_script)).await.map(|p| p.records),
        Err(script_missing(&script))
    );
    assert_eq!(count(&s, B, Scope::devices(), None).await, 0);
    assert_eq!(s.run_summary(B, &script).await, Ok(None));
    assert_eq!(s.remediation_summary(B).await, Ok((0, 0)));
    assert_eq!(s.device_script_states(B, "shared-id").await, Ok(None));
    assert_eq!(s.assignment_targets(B).await, Ok(vec![]));

    let rename = vec![field(&DEVICE_HEALTH_SCRIPT, "displayName", text("mine"))];
    assert_eq!(
        s.write(B, ops::update_script(script.clone(), rename).unwrap())
            .await,
        Err(script_missing(&script))
    );
    assert_eq!(
        s.write(B, Write::DeleteScript { id: script.clone() }).await,
        Err(script_missing(&script))
    );
    let report_b = ops::create_run_state(script.clone(), vec![], None);
    assert_eq!(s.write(B, report_b).await, Err(script_missing(&script)));
    // Keys are per tenant: B may register a device with the same id.
    let b_device = register_device(&s, B, "shared-id", "b's device").await;
    assert_ne!(b_device.get("deviceName"), device.get("deviceName"));
    assert_eq!(count(&s, B, Scope::devices(), None).await, 1);
    assert_eq!(snapshot(&s, &script, "shared-id", state.id()).await, before);
    assert_counters_agree(&s).await;
});
