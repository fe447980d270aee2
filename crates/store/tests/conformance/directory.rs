//! Role scope tags, groups and their members (by hand and by rule), assignment filters and what
//! targeting reads of a device, through `Store`, including dynamic membership under concurrent
//! device registrations and rule changes.

#![allow(clippy::cloned_ref_to_slice_refs)] // `[id.clone()]` reads better in assertions.

use remediate_domain::collections::{
    ASSIGNMENT_FILTERS, DEVICE_MEMBER_OF, GROUPS, GROUP_MEMBERS, ROLE_SCOPE_TAGS,
};
use remediate_domain::directory;
use remediate_domain::model::{
    ASSIGNMENT_FILTER, DEVICE_HEALTH_SCRIPT, GROUP, MANAGED_DEVICE, ROLE_SCOPE_TAG,
};
use remediate_domain::ops;
use remediate_domain::query::Scope;
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::Value;
use remediate_store::{EntityRef, SqlStore, Store, StoreError};

use crate::both;
use crate::values::*;

fn group_fields(name: &str, rule: Option<&str>) -> Vec<(usize, Value)> {
    let mut fields = vec![
        field(&GROUP, "displayName", text(name)),
        field(&GROUP, "mailNickname", text(name)),
    ];
    if let Some(rule) = rule {
        fields.push(field(
            &GROUP,
            "groupTypes",
            Value::StrList(vec!["DynamicMembership".into()]),
        ));
        fields.push(field(&GROUP, "membershipRule", text(rule)));
    }
    fields
}

async fn new_group(s: &SqlStore, tenant: &str, name: &str, rule: Option<&str>) -> String {
    let write = directory::create(&GROUPS, group_fields(name, rule)).unwrap();
    created(s, tenant, write).await.id().to_owned()
}

async fn members(s: &SqlStore, tenant: &str, group: &str) -> Vec<String> {
    let mut ids = ids(
        s,
        tenant,
        &list(Scope::new(&GROUP_MEMBERS, vec![group.to_owned()])),
    )
    .await;
    ids.sort();
    ids
}

async fn device_named(s: &SqlStore, tenant: &str, name: &str, maker: &str) -> String {
    new_device_with(
        s,
        tenant,
        vec![
            field(&MANAGED_DEVICE, "deviceName", text(name)),
            field(&MANAGED_DEVICE, "manufacturer", text(maker)),
        ],
    )
    .await
}

both!(role_scope_tags_default_references_and_use, |s| {
    let tags = |tenant| {
        let s = &s;
        async move { ids(s, tenant, &list(Scope::new(&ROLE_SCOPE_TAGS, vec![]))).await }
    };
    assert_eq!(tags(A).await, ["0"]);
    let write = directory::create(
        &ROLE_SCOPE_TAGS,
        vec![field(&ROLE_SCOPE_TAG, "displayName", text("Paris"))],
    )
    .unwrap();
    let tag = created(&s, A, write).await.id().to_owned();
    let mut expected = vec!["0".to_owned(), tag.clone()];
    expected.sort();
    let mut seen = tags(A).await;
    seen.sort();
    assert_eq!(seen, expected);
    assert_eq!(tags(B).await, ["0"], "tenants do not share their own tags");
    // A script naming a missing tag is refused and leaves nothing behind.
    let mut fields = script_fields("s");
    fields.push(field(
        &DEVICE_HEALTH_SCRIPT,
        "roleScopeTagIds",
        Value::StrList(vec!["0".into(), "missing".into()]),
    ));
    let refused = s.write(A, ops::create_script(fields).unwrap()).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidReference(ref m)) if m.contains("'missing'")),
        "{refused:?}"
    );
    assert_eq!(count(&s, A, Scope::scripts(), None).await, 0);
    // Tenant B cannot use tenant A's tag.
    let mut fields = script_fields("s");
    fields.push(field(
        &DEVICE_HEALTH_SCRIPT,
        "roleScopeTagIds",
        Value::StrList(vec![tag.clone()]),
    ));
    assert!(matches!(
        s.write(B, ops::create_script(fields.clone()).unwrap())
            .await,
        Err(StoreError::InvalidReference(_))
    ));
    let script = created(&s, A, ops::create_script(fields).unwrap()).await;
    // In use: refused, naming the script; then free to delete.
    let delete = directory::delete(&ROLE_SCOPE_TAGS, &[tag.clone()]).unwrap();
    assert!(
        matches!(s.write(A, delete.clone()).await, Err(StoreError::Invalid(ref m)) if m.contains(script.id()))
    );
    ok(
        &s,
        A,
        Write::DeleteScript {
            id: script.id().to_owned(),
        },
    )
    .await;
    assert_eq!(s.write(A, delete.clone()).await, Ok(WriteOutcome::Deleted));
    assert!(matches!(
        s.write(A, delete).await,
        Err(StoreError::NotFound(_))
    ));
    // The built-in tag is readable by key in every tenant.
    let builtin = EntityRef::of(&ROLE_SCOPE_TAGS, &["0".into()]).unwrap();
    assert_eq!(
        s.get(B, &builtin).await.unwrap().unwrap().get("isBuiltIn"),
        &Value::Bool(true)
    );
});

both!(membership_by_hand_and_by_rule, |s| {
    let lab1 = device_named(&s, A, "LAB-1", "Dell").await;
    let lab2 = device_named(&s, A, "LAB-2", "HP").await;
    let desk = device_named(&s, A, "DESK-1", "Dell").await;
    let pilot = new_group(&s, A, "Pilot", None).await;
    let add = |group: &str, item: &str| Write::AddReference {
        of: &GROUP_MEMBERS,
        parent: group.to_owned(),
        item: item.to_owned(),
    };
    ok(&s, A, add(&pilot, &desk)).await;
    assert!(matches!(
        s.write(A, add(&pilot, &desk)).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.write(A, add(&pilot, "nope")).await,
        Err(StoreError::InvalidReference(_))
    ));
    assert!(
        matches!(
            s.write(B, add(&pilot, &desk)).await,
            Err(StoreError::NotFound(_))
        ),
        "another tenant's group"
    );
    assert_eq!(members(&s, A, &pilot).await, [desk.clone()]);
    let lab = new_group(
        &s,
        A,
        "Lab",
        Some(r#"device.displayName -startsWith "lab""#),
    )
    .await;
    let mut both_labs = vec![lab1.clone(), lab2.clone()];
    both_labs.sort();
    assert_eq!(members(&s, A, &lab).await, both_labs);
    assert!(
        matches!(
            s.write(A, add(&lab, &desk)).await,
            Err(StoreError::Invalid(_))
        ),
        "dynamic groups are computed"
    );
    // memberOf reads the other way.
    let of_desk = ids(
        &s,
        A,
        &list(Scope::new(&DEVICE_MEMBER_OF, vec![desk.clone()])),
    )
    .await;
    assert_eq!(of_desk, [pilot.clone()]);
    // A device change re-evaluates; a rule change re-evaluates; a device deletion leaves.
    ok(
        &s,
        A,
        Write::UpdateDevice {
            id: lab2.clone(),
            changes: vec![field(&MANAGED_DEVICE, "deviceName", text("DESK-2"))],
        },
    )
    .await;
    assert_eq!(members(&s, A, &lab).await, [lab1.clone()]);
    let rule = field(
        &GROUP,
        "membershipRule",
        text(r#"device.deviceManufacturer -eq "Dell""#),
    );
    ok(
        &s,
        A,
        directory::update(&GROUPS, &[lab.clone()], vec![rule]).unwrap(),
    )
    .await;
    let mut dells = vec![lab1.clone(), desk.clone()];
    dells.sort();
    assert_eq!(members(&s, A, &lab).await, dells);
    same_visibility(&s, &desk).await;
    let targeting = s.device_targeting(A, &desk).await.unwrap();
    let mut groups = targeting.groups.clone();
    groups.sort();
    let mut expected = vec![pilot.clone(), lab.clone()];
    expected.sort();
    assert_eq!(groups, expected);
    ok(&s, A, Write::DeleteDevice { id: desk.clone() }).await;
    assert_eq!(members(&s, A, &lab).await, [lab1.clone()]);
    assert_eq!(members(&s, A, &pilot).await, Vec::<String>::new());
    // An invalid merged record is refused whole.
    let bad = field(&GROUP, "membershipRule", text("device.nope -eq 1"));
    assert!(matches!(
        s.write(
            A,
            directory::update(&GROUPS, &[lab.clone()], vec![bad]).unwrap()
        )
        .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(members(&s, A, &lab).await, [lab1.clone()]);
});

both!(filters_in_use_and_targeting_reads, |s| {
    let write = directory::create(
        &ASSIGNMENT_FILTERS,
        vec![
            field(&ASSIGNMENT_FILTER, "displayName", text("Dell")),
            field(
                &ASSIGNMENT_FILTER,
                "rule",
                text(r#"device.manufacturer -eq "Dell""#),
            ),
        ],
    )
    .unwrap();
    let filter = created(&s, A, write).await.id().to_owned();
    let script = new_script(&s, A, "s").await;
    let target = Value::Json(format!(
        r##"{{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget","deviceAndAppManagementAssignmentFilterId":"{filter}","deviceAndAppManagementAssignmentFilterType":"include"}}"##
    ));
    let assignment = ops::create_assignment(&script, assignment_fields(target)).unwrap();
    created(&s, A, assignment).await;
    let delete = directory::delete(&ASSIGNMENT_FILTERS, &[filter.clone()]).unwrap();
    assert!(
        matches!(s.write(A, delete).await, Err(StoreError::Invalid(ref m)) if m.contains(&script))
    );
    let dell = device_named(&s, A, "D", "Dell").await;
    let targeting = s.device_targeting(A, &dell).await.unwrap();
    assert!(targeting.filters.contains_key(&filter));
    let visible = directory::visible_scripts(&s.assignment_targets(A).await.unwrap(), &targeting);
    assert_eq!(visible, [script.clone()]);
    let hp = device_named(&s, A, "H", "HP").await;
    same_visibility(&s, &dell).await;
    same_visibility(&s, &hp).await;
    // A token of a device that is not registered: no groups, the tenant's filters.
    same_visibility(&s, "not-registered").await;
    let targeting = s.device_targeting(A, &hp).await.unwrap();
    assert!(
        directory::visible_scripts(&s.assignment_targets(A).await.unwrap(), &targeting).is_empty()
    );
});

/// `device_visibility` (one statement) reads what `assignment_targets` and `device_targeting`
/// read separately.
async fn same_visibility(s: &SqlStore, device: &str) {
    let (mut targets, one) = s.device_visibility(A, device).await.unwrap();
    let mut separate_targets = s.assignment_targets(A).await.unwrap();
    let separate = s.device_targeting(A, device).await.unwrap();
    assert_eq!(
        directory::visible_scripts(&targets, &one),
        directory::visible_scripts(&separate_targets, &separate)
    );
    targets.sort();
    separate_targets.sort();
    assert_eq!(targets, separate_targets);
    let (mut groups, mut separate_groups) = (one.groups.clone(), separate.groups.clone());
    groups.sort();
    separate_groups.sort();
    assert_eq!(groups, separate_groups);
    assert_eq!(one.has_user, separate.has_user);
    assert_eq!(format!("{:?}", one.facts), format!("{:?}", separate.facts));
    let mut filters: Vec<_> = one.filters.keys().collect();
    let mut separate_filters: Vec<_> = separate.filters.keys().collect();
    filters.sort();
    separate_filters.sort();
    assert_eq!(filters, separate_filters);
}

// Devices registering while a dynamic group is created and its rule changed: afterwards the
// members are exactly the devices the final rule matches (no write misses another's row).
both!(dynamic_membership_is_exact_under_concurrent_changes, |s| {
    let s = s.store.clone();
    let group = new_group(
        &s,
        A,
        "Lab",
        Some(r#"device.displayName -startsWith "lab""#),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let name = if i % 2 == 0 {
                format!("LAB-{i}")
            } else {
                format!("DESK-{i}")
            };
            let maker = if i % 3 == 0 { "Dell" } else { "HP" };
            device_named(&s, A, &name, maker).await;
        }));
    }
    for rule in [
        r#"device.deviceManufacturer -eq "Dell""#,
        r#"device.displayName -startsWith "lab""#,
    ] {
        let s = s.clone();
        let group = group.clone();
        tasks.push(tokio::spawn(async move {
            let rule = field(&GROUP, "membershipRule", text(rule));
            ok(
                &s,
                A,
                directory::update(&GROUPS, &[group], vec![rule]).unwrap(),
            )
            .await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Which rule won is up to the scheduler; the members must match the stored rule exactly.
    let stored = s
        .get(A, &EntityRef::of(&GROUPS, &[group.clone()]).unwrap())
        .await
        .unwrap()
        .unwrap();
    let devices = rows(&s, A, &list(Scope::devices())).await;
    let mut expected: Vec<String> = devices
        .iter()
        .filter(|d| {
            directory::dynamic_member(
                &stored,
                &remediate_domain::rule::DeviceFacts::of_managed_device(d, d.id()),
            )
        })
        .map(|d| d.id().to_owned())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(members(&s, A, &group).await, expected);
});

// An agent's check-in reads the device's groups and its pending on-demand runs (oldest request
// first) in one statement; what it sees equals the separate reads, and a device that does not
// exist has no view.
both!(check_in_view_reads_groups_and_pending_runs_in_order, |s| {
    let device = device_named(&s, A, "LAB-9", "Dell").await;
    let group = new_group(&s, A, "Pilot", None).await;
    let dynamic = new_group(
        &s,
        A,
        "Dells",
        Some(r#"device.deviceManufacturer -eq "Dell""#),
    )
    .await;
    ok(
        &s,
        A,
        Write::AddReference {
            of: &GROUP_MEMBERS,
            parent: group.clone(),
            item: device.clone(),
        },
    )
    .await;
    let first = new_script(&s, A, "first").await;
    let second = new_script(&s, A, "second").await;
    for script in [&second, &first] {
        ok(
            &s,
            A,
            Write::RequestOnDemand {
                device_id: device.clone(),
                script_id: script.clone(),
            },
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let view = s.check_in_view(A, &device).await.unwrap().unwrap();
    assert_eq!(view.pending_on_demand, [second.clone(), first.clone()]);
    let mut groups = view.targeting.groups.clone();
    groups.sort();
    let mut expected = vec![group.clone(), dynamic.clone()];
    expected.sort();
    assert_eq!(groups, expected);
    same_visibility(&s, &device).await;
    assert!(s
        .check_in_view(A, "not-registered")
        .await
        .unwrap()
        .is_none());
    assert!(s.check_in_view(B, &device).await.unwrap().is_none());
});
