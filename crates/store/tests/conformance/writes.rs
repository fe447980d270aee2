//! Every write command, what it changes, and what a refused write leaves behind (nothing).

use remediate_domain::model::{
    ALL_DEVICES_GROUP, DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE,
    MANAGED_DEVICE,
};
use remediate_domain::ops;
use remediate_domain::query::{Filter, Scope};
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Record, Value};
use remediate_store::{EntityRef, Store, StoreError};

use crate::both;
use crate::values::*;

fn ticks(record: &Record, name: &str) -> i64 {
    match record.get(name) {
        Value::Time(t) => t.ticks(),
        other => panic!("{name} is {other:?}"),
    }
}

both!(scripts_create_read_update_delete, |s| {
    let write = ops::create_script(vec![
        field(&DEVICE_HEALTH_SCRIPT, "displayName", text("Disk cleanup")),
        field(&DEVICE_HEALTH_SCRIPT, "publisher", text("Contoso")),
        field(
            &DEVICE_HEALTH_SCRIPT,
            "detectionScriptContent",
            Value::Bin(b"exit 1".to_vec()),
        ),
    ])
    .unwrap();
    let record = created(&s, A, write.clone()).await;
    let id = record.id().to_owned();
    // Every property reads back as written (bytes, JSON, collections, times, defaults).
    assert_eq!(get_script(&s, A, &id).await, Some(record.clone()));
    // The same key again is refused.
    assert_eq!(s.write(A, write).await, Err(taken_key()));
    // Lists leave the script contents out, as Intune does.
    let listed = rows(&s, A, &list(Scope::scripts())).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].get("detectionScriptContent"), &Value::Null);
    assert_eq!(listed[0].get("displayName"), &text("Disk cleanup"));

    // An update that leaves the contents alone keeps the version and moves lastModifiedDateTime.
    let rename = vec![field(
        &DEVICE_HEALTH_SCRIPT,
        "displayName",
        text("Disk cleanup v2"),
    )];
    assert_eq!(
        s.write(A, ops::update_script(id.clone(), rename).unwrap())
            .await,
        Ok(WriteOutcome::Updated)
    );
    let renamed = get_script(&s, A, &id).await.unwrap();
    assert_eq!(renamed.get("displayName"), &text("Disk cleanup v2"));
    assert_eq!(renamed.get("publisher"), &text("Contoso"));
    assert_eq!(renamed.get("version"), &text("1"));
    assert_eq!(
        renamed.get("createdDateTime"),
        record.get("createdDateTime")
    );
    assert!(ticks(&renamed, "lastModifiedDateTime") > ticks(&record, "lastModifiedDateTime"));

    // New content bumps the version; the same content again does not.
    let content = |name: &str, bytes: &[u8]| {
        vec![field(
            &DEVICE_HEALTH_SCRIPT,
            name,
            Value::Bin(bytes.to_vec()),
        )]
    };
    for (name, bytes, version) in [
        ("detectionScriptContent", &b"exit 0"[..], "2"),
        ("detectionScriptContent", &b"exit 0"[..], "2"),
        (
            "remediationScriptContent",
            &b"Remove-Item $env:TEMP"[..],
            "3",
        ),
    ] {
        ok(
            &s,
            A,
            ops::update_script(id.clone(), content(name, bytes)).unwrap(),
        )
        .await;
        let updated = get_script(&s, A, &id).await.unwrap();
        assert_eq!(updated.get("version"), &text(version), "after {name}");
        assert_eq!(updated.get(name), &Value::Bin(bytes.to_vec()));
    }

    assert_eq!(
        s.write(A, Write::DeleteScript { id: id.clone() }).await,
        Ok(WriteOutcome::Deleted)
    );
    assert_eq!(get_script(&s, A, &id).await, None);
    assert_eq!(
        s.write(A, Write::DeleteScript { id: id.clone() }).await,
        Err(script_missing(&id))
    );
    let rename = vec![field(&DEVICE_HEALTH_SCRIPT, "displayName", text("x"))];
    assert_eq!(
        s.write(A, ops::update_script(id.clone(), rename).unwrap())
            .await,
        Err(script_missing(&id))
    );
    assert!(rows(&s, A, &list(Scope::scripts())).await.is_empty());
});

both!(devices_create_update_delete_and_count, |s| {
    let d1 = new_device(&s, A, Some("laptop-1")).await;
    let d2 = new_device(&s, A, Some("laptop-2")).await;
    let _d3 = new_device(&s, A, None).await;
    // The unfiltered count comes from a counter, the filtered one from the rows.
    let all = Some(Filter::Const(true));
    assert_eq!(count(&s, A, Scope::devices(), None).await, 3);
    assert_eq!(count(&s, A, Scope::devices(), all.clone()).await, 3);

    let changes = vec![
        field(&MANAGED_DEVICE, "deviceName", text("laptop-one")),
        field(&MANAGED_DEVICE, "complianceState", Value::Enum(2)),
    ];
    assert_eq!(
        s.write(
            A,
            Write::UpdateDevice {
                id: d1.clone(),
                changes
            }
        )
        .await,
        Ok(WriteOutcome::Updated)
    );
    let device = s
        .get(A, &EntityRef::Device(d1.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(device.get("deviceName"), &text("laptop-one"));
    assert_eq!(device.get("complianceState"), &Value::Enum(2));
    assert_eq!(device.get("osVersion"), &text(""), "untouched default");
    let missing =
        |id: &str| StoreError::NotFound(format!("The managedDevice '{id}' does not exist."));
    assert_eq!(
        s.write(
            A,
            Write::UpdateDevice {
                id: "nope".into(),
                changes: vec![]
            }
        )
        .await,
        Err(missing("nope"))
    );

    assert_eq!(
        s.write(A, Write::DeleteDevice { id: d2.clone() }).await,
        Ok(WriteOutcome::Deleted)
    );
    assert_eq!(s.get(A, &EntityRef::Device(d2.clone())).await, Ok(None));
    assert_eq!(
        s.write(A, Write::DeleteDevice { id: d2.clone() }).await,
        Err(missing(&d2))
    );
    assert_eq!(count(&s, A, Scope::devices(), None).await, 2);
    assert_eq!(count(&s, A, Scope::devices(), all.clone()).await, 2);

    // A device registering with the id its token names; the same id again is refused.
    let registered = register_device(&s, A, "Laptop-ABC", "abc").await;
    assert_eq!(
        s.get(A, &EntityRef::Device("Laptop-ABC".into())).await,
        Ok(Some(registered.clone()))
    );
    assert_eq!(
        s.write(A, Write::CreateDevice { record: registered }).await,
        Err(taken_key())
    );
    assert_eq!(count(&s, A, Scope::devices(), None).await, 3);
    assert_eq!(count(&s, A, Scope::devices(), all).await, 3);
    assert_counters_agree(&s).await;
});

both!(run_states_create_bind_update_delete, |s| {
    let script = new_script(&s, A, "s").await;
    let d1 = new_device(&s, A, Some("one")).await;
    let d2 = new_device(&s, A, Some("two")).await;
    let bound = report(&s, A, &script, Some(&d1), states(det::FAIL, rem::SUCCESS)).await;
    assert_eq!(bound.id(), format!("{script}:{d1}"));
    let bound_key = EntityRef::RunState {
        script_id: script.clone(),
        id: bound.id().to_owned(),
    };
    assert_eq!(s.get(A, &bound_key).await, Ok(Some(bound.clone())));

    let already = |device: &str| {
        StoreError::Conflict(format!(
            "A deviceRunState for managedDevice '{device}' already exists for this deviceHealthScript: '{script}:{device}'. Update it with PATCH instead."
        ))
    };
    let again = ops::create_run_state(script.clone(), vec![], Some(d1.clone()));
    assert_eq!(s.write(A, again).await, Err(already(&d1)));
    let to_missing = ops::create_run_state(script.clone(), vec![], Some("nope".into()));
    assert_eq!(
        s.write(A, to_missing).await,
        Err(StoreError::InvalidReference(
            "The managedDevice 'nope' named by 'managedDevice@odata.bind' does not exist.".into()
        ))
    );
    let in_missing = ops::create_run_state("missing".into(), vec![], Some(d1.clone()));
    assert_eq!(s.write(A, in_missing).await, Err(script_missing("missing")));

    // An unbound run state, bound later by a PATCH.
    let unbound = report(&s, A, &script, None, states(det::SUCCESS, rem::UNKNOWN)).await;
    let uid = unbound.id().to_owned();
    assert_eq!(unbound.device_id, None);
    assert_eq!(
        update_state(&s, A, &script, &uid, vec![], Some(&d1)).await,
        Err(already(&d1))
    );
    assert_eq!(
        update_state(
            &s,
            A,
            &script,
            &uid,
            states(det::FAIL, rem::FAILED),
            Some(&d2)
        )
        .await,
        Ok(WriteOutcome::Updated)
    );
    let key = EntityRef::RunState {
        script_id: script.clone(),
        id: uid.clone(),
    };
    let now_bound = s.get(A, &key).await.unwrap().unwrap();
    assert_eq!(now_bound.device_id.as_deref(), Some(d2.as_str()));
    assert_eq!(enum_of(&now_bound, "detectionState"), det::FAIL);
    assert_eq!(enum_of(&now_bound, "remediationState"), rem::FAILED);
    // Binding to the same device again is fine; to another is refused.
    assert_eq!(
        update_state(&s, A, &script, &uid, vec![], Some(&d2)).await,
        Ok(WriteOutcome::Updated)
    );
    assert_eq!(
        update_state(&s, A, &script, &uid, vec![], Some(&d1)).await,
        Err(StoreError::InvalidReference(format!(
            "The deviceRunState '{uid}' is already bound to managedDevice '{d2}'; its device cannot be changed."
        )))
    );

    // The device's view of its script states.
    let views = s.device_script_states(A, &d2).await.unwrap().unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].id(), uid);
    assert_eq!(views[0].get("policyId"), &text(&script));
    assert_eq!(views[0].get("policyName"), &text("s"));
    assert_eq!(views[0].get("deviceName"), &text("two"));
    assert_eq!(views[0].get("detectionState"), &Value::Enum(det::FAIL));
    assert_eq!(s.device_script_states(A, "nope").await, Ok(None));

    let not_in = |id: &str, script: &str| {
        StoreError::NotFound(format!(
            "The deviceRunState '{id}' does not exist in deviceHealthScript '{script}'."
        ))
    };
    assert_eq!(
        update_state(&s, A, &script, "nope", vec![], None).await,
        Err(not_in("nope", &script))
    );
    assert_eq!(
        update_state(&s, A, "missing", &uid, vec![], None).await,
        Err(not_in(&uid, "missing"))
    );

    let delete = Write::DeleteRunState {
        script_id: script.clone(),
        id: bound.id().to_owned(),
    };
    assert_eq!(s.write(A, delete.clone()).await, Ok(WriteOutcome::Deleted));
    assert_eq!(s.get(A, &bound_key).await, Ok(None));
    assert_eq!(s.write(A, delete).await, Err(not_in(bound.id(), &script)));
    let scope = Scope::run_states(script.clone());
    assert_eq!(count(&s, A, scope, None).await, 1);
    // The freed device can be bound again.
    report(&s, A, &script, Some(&d1), vec![]).await;
    assert_counters_agree(&s).await;
});

both!(assignments_and_the_assign_action, |s| {
    let script = new_script(&s, A, "s").await;
    let write = ops::create_assignment(&script, assignment_fields(group_target("g1"))).unwrap();
    let assignment = created(&s, A, write.clone()).await;
    assert_eq!(assignment.id(), format!("{script}:g1"));
    let key = EntityRef::Assignment {
        script_id: script.clone(),
        id: assignment.id().to_owned(),
    };
    assert_eq!(s.get(A, &key).await, Ok(Some(assignment.clone())));
    assert_eq!(
        s.write(A, write).await,
        Err(StoreError::Conflict(format!(
            "An assignment with the id '{script}:g1' (the same target group) already exists for this deviceHealthScript."
        )))
    );
    let orphan = ops::create_assignment("missing", assignment_fields(group_target("g1"))).unwrap();
    assert_eq!(s.write(A, orphan).await, Err(script_missing("missing")));

    let run = vec![field(
        &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
        "runRemediationScript",
        Value::Bool(true),
    )];
    let update = ops::update_assignment(script.clone(), assignment.id().to_owned(), run.clone());
    ok(&s, A, update.unwrap()).await;
    let updated = s.get(A, &key).await.unwrap().unwrap();
    assert_eq!(updated.get("runRemediationScript"), &Value::Bool(true));
    assert_eq!(updated.get("target"), &group_target("g1"));
    let other = format!("{script}:g9");
    let update = ops::update_assignment(script.clone(), other.clone(), run).unwrap();
    let not_in = |id: &str| {
        StoreError::NotFound(format!(
            "The deviceHealthScriptAssignment '{id}' does not exist in deviceHealthScript '{script}'."
        ))
    };
    assert_eq!(s.write(A, update).await, Err(not_in(&other)));
    let Value::Json(target) = group_target("g1") else {
        unreachable!()
    };
    assert_eq!(
        s.assignment_targets(A).await,
        Ok(vec![(script.clone(), target)])
    );

    // `assign` replaces the whole set.
    let assign = ops::assign(
        &script,
        vec![
            assignment_fields(all_devices_target()),
            assignment_fields(group_target("g2")),
        ],
    )
    .unwrap();
    assert_eq!(s.write(A, assign).await, Ok(WriteOutcome::Updated));
    let scope = Scope::assignments(script.clone());
    let mut expected = vec![
        format!("{script}:{ALL_DEVICES_GROUP}"),
        format!("{script}:g2"),
    ];
    expected.sort();
    assert_eq!(ids(&s, A, &list(scope.clone())).await, expected);
    let assign_missing = ops::assign("missing", vec![]).unwrap();
    assert_eq!(
        s.write(A, assign_missing).await,
        Err(script_missing("missing"))
    );

    let delete = Write::DeleteAssignment {
        script_id: script.clone(),
        id: format!("{script}:g2"),
    };
    assert_eq!(s.write(A, delete.clone()).await, Ok(WriteOutcome::Deleted));
    assert_eq!(
        s.write(A, delete).await,
        Err(not_in(&format!("{script}:g2")))
    );
    ok(&s, A, ops::assign(&script, vec![]).unwrap()).await;
    // An empty collection of an existing script is an empty page; of a missing one, an error.
    assert!(rows(&s, A, &list(scope)).await.is_empty());
    let missing = Scope::assignments("missing");
    assert_eq!(
        s.list(A, &list(missing)).await.map(|p| p.records),
        Err(script_missing("missing"))
    );
    assert_eq!(s.assignment_targets(A).await, Ok(vec![]));
});

both!(deleting_a_script_removes_what_it_contains, |s| {
    let keep = new_script(&s, A, "keep").await;
    let gone = new_script(&s, A, "gone").await;
    let d1 = new_device(&s, A, Some("one")).await;
    let d2 = new_device(&s, A, Some("two")).await;
    let state = report(&s, A, &gone, Some(&d1), states(det::FAIL, rem::SUCCESS)).await;
    report(&s, A, &gone, Some(&d2), states(det::SUCCESS, rem::UNKNOWN)).await;
    report(&s, A, &gone, None, states(det::FAIL, rem::SUCCESS)).await;
    report(&s, A, &keep, Some(&d1), states(det::SUCCESS, rem::UNKNOWN)).await;
    ok(
        &s,
        A,
        ops::create_assignment(&gone, assignment_fields(group_target("g1"))).unwrap(),
    )
    .await;
    for script in [&gone, &keep] {
        let write = Write::RequestOnDemand {
            device_id: d2.clone(),
            script_id: script.clone(),
        };
        ok(&s, A, write).await;
    }
    assert_eq!(s.remediation_summary(A).await, Ok((2, 2)));

    assert_eq!(
        s.write(A, Write::DeleteScript { id: gone.clone() }).await,
        Ok(WriteOutcome::Deleted)
    );
    let scope = Scope::run_states(gone.clone());
    assert_eq!(
        s.list(A, &list(scope)).await.map(|p| p.records),
        Err(script_missing(&gone))
    );
    let key = EntityRef::RunState {
        script_id: gone.clone(),
        id: state.id().to_owned(),
    };
    assert_eq!(s.get(A, &key).await, Ok(None));
    let d1_states = s.device_script_states(A, &d1).await.unwrap().unwrap();
    assert_eq!(d1_states.len(), 1);
    assert_eq!(d1_states[0].get("policyId"), &text(&keep));
    let pending = s.pending_on_demand(A, &d2).await.unwrap().unwrap();
    assert_eq!(
        pending.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        vec![keep.clone()]
    );
    assert_eq!(s.assignment_targets(A).await, Ok(vec![]));
    let history = Scope::history(gone.clone(), state.id().to_owned());
    assert!(rows(&s, A, &list(history)).await.is_empty());
    assert_eq!(s.run_summary(A, &gone).await, Ok(None));
    assert_eq!(s.remediation_history(A, &gone).await, Ok(None));
    assert_eq!(s.remediation_summary(A).await, Ok((1, 0)));
    let summary = s.run_summary(A, &keep).await.unwrap().unwrap();
    assert_eq!(summary.get("noIssueDetectedDeviceCount"), &Value::Int(1));
    // A late report for the deleted script is refused and leaves nothing.
    let late = ops::create_run_state(gone.clone(), vec![], Some(d1.clone()));
    assert_eq!(s.write(A, late).await, Err(script_missing(&gone)));
    assert_counters_agree(&s).await;
});

both!(on_demand_requests_are_cleared_by_the_next_report, |s| {
    let s1 = new_script(&s, A, "one").await;
    let s2 = new_script(&s, A, "two").await;
    let d1 = new_device(&s, A, Some("d1")).await;
    let d2 = new_device(&s, A, Some("d2")).await;
    let request = |device: &str, script: &str| Write::RequestOnDemand {
        device_id: device.to_owned(),
        script_id: script.to_owned(),
    };
    let pending = |device: String| {
        let store = s.store.clone();
        async move {
            store
                .pending_on_demand(A, &device)
                .await
                .unwrap()
                .unwrap()
                .into_iter()
                .map(|(script, _)| script)
                .collect::<Vec<_>>()
        }
    };
    ok(&s, A, request(&d1, &s1)).await;
    let first = s.pending_on_demand(A, &d1).await.unwrap().unwrap();
    assert_eq!(first.len(), 1);
    // Asking again moves the request's time; it stays one request.
    ok(&s, A, request(&d1, &s1)).await;
    let second = s.pending_on_demand(A, &d1).await.unwrap().unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].1 > first[0].1);
    ok(&s, A, request(&d1, &s2)).await;
    ok(&s, A, request(&d2, &s1)).await;
    assert_eq!(pending(d1.clone()).await, [s1.clone(), s2.clone()]);
    assert_eq!(
        s.write(A, request("nope", &s1)).await,
        Err(StoreError::NotFound(
            "The managedDevice 'nope' does not exist.".into()
        ))
    );
    assert_eq!(
        s.write(A, request(&d1, "nope")).await,
        Err(StoreError::InvalidReference(
            "The scriptPolicyId 'nope' does not name a deviceHealthScript of this tenant.".into()
        ))
    );
    assert_eq!(s.pending_on_demand(A, "nope").await, Ok(None));

    // d1's first report of s1 clears d1's request for s1 only.
    report(&s, A, &s1, Some(&d1), states(det::SUCCESS, rem::UNKNOWN)).await;
    assert_eq!(pending(d1.clone()).await, vec![s2.clone()]);
    assert_eq!(pending(d2.clone()).await, vec![s1.clone()]);
    // Any later report (here one that changes only an output) clears a new request.
    ok(&s, A, request(&d1, &s1)).await;
    assert_eq!(pending(d1.clone()).await, [s2.clone(), s1.clone()]);
    let output = vec![field(
        &DEVICE_RUN_STATE,
        "preRemediationDetectionScriptOutput",
        text("ok"),
    )];
    let state = format!("{s1}:{d1}");
    assert_eq!(
        update_state(&s, A, &s1, &state, output, None).await,
        Ok(WriteOutcome::Updated)
    );
    assert_eq!(pending(d1.clone()).await, vec![s2.clone()]);
    // An unbound run state bound to the device is the device's report too.
    let unbound = report(&s, A, &s2, None, vec![]).await;
    assert_eq!(pending(d1.clone()).await, vec![s2.clone()]);
    update_state(&s, A, &s2, unbound.id(), vec![], Some(&d1))
        .await
        .unwrap();
    assert!(pending(d1.clone()).await.is_empty());
    assert_eq!(pending(d2.clone()).await, vec![s1.clone()]);
});

both!(global_scripts_state_is_kept_per_tenant, |s| {
    assert_eq!(s.global_scripts_state(A).await, Ok(0));
    for state in [1, 2, 0, 2] {
        ok(&s, A, Write::SetGlobalScriptsState { state }).await;
        assert_eq!(s.global_scripts_state(A).await, Ok(state));
    }
    assert_eq!(s.global_scripts_state(B).await, Ok(0));
});

/// The SQLite writer's panic path, through its test-only fault hook: the group that panics after
/// running its writes is rolled back (nothing of it is stored, counters unchanged), every write of
/// it is answered with an error, and the writer serves the next writes. (PostgreSQL has no shared
/// writer: each write is its own transaction on the request's task.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_inside_a_write_group_rolls_it_back_and_the_writer_serves_on() {
    let s = crate::TestStore::open(crate::Backend::Sqlite)
        .await
        .unwrap();
    let before = new_script(&s, A, "before").await;
    s.inject_panic_in_next_write_group();
    // Several writes at once: the first group panics; writes that came after it are served.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = s.store.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("during {i}");
            let write = ops::create_script(script_fields(&name)).unwrap();
            (name, store.write(A, write).await)
        }));
    }
    let mut failed = Vec::new();
    let mut stored = vec!["before".to_owned()];
    for task in tasks {
        match task.await.unwrap() {
            (name, Ok(WriteOutcome::Created(_))) => stored.push(name),
            (name, Err(StoreError::Internal(message))) => {
                assert!(message.contains("rolled back"), "{message}");
                failed.push(name);
            }
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
    assert!(!failed.is_empty(), "no write met the injected panic");
    let after = new_script(&s, A, "after").await;
    stored.push("after".to_owned());
    let mut names: Vec<String> = rows(&s, A, &list(Scope::scripts()))
        .await
        .iter()
        .map(|r| match r.get("displayName") {
            Value::Str(name) => name.clone(),
            other => panic!("displayName {other:?}"),
        })
        .collect();
    names.sort();
    stored.sort();
    assert_eq!(
        names, stored,
        "the panicking group's writes ({failed:?}) must not be stored"
    );
    assert!(get_script(&s, A, &before).await.is_some());
    assert!(get_script(&s, A, &after).await.is_some());
    assert_eq!(s.check_counters().await, Ok(Vec::new()));
}
