//! The run-state list's plans chosen from counters at scale (`store::plans`,
//! docs/query-plans.md "The device status table") return exactly the rows, order, counts and
//! pages of the generic plan: every sort of the dashboard's device status table in both
//! directions, detection/remediation filters (one matching nothing), device-name searches with
//! `%`, `_` and quotes (rare, none and common ones; those of 3 characters or more through the
//! trigram indexes), walked page by page through the API with the scale plans forced on
//! (threshold 0) and off. The data holds unbound run states, run states of deleted devices, devices
//! without a name or user, and duplicate names and users (ties broken by id).

use serde_json::{json, Value};

use crate::both;
use crate::harness::TestApp;

/// Every run-state id of a query, walking `@odata.nextLink`, and the `@odata.count`.
async fn walk(app: &TestApp, first: &str) -> (Vec<String>, Value) {
    let mut url = first.to_owned();
    let mut ids = Vec::new();
    let mut count = Value::Null;
    for _ in 0..200 {
        let page = app.get(&url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.text);
        if count == Value::Null {
            count = page.json["@odata.count"].clone();
        }
        for item in page.json["value"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            // An expanded device is the run state's own (its id is `<script>:<device>`).
            if let Some(device) = item["managedDevice"]["id"].as_str() {
                assert!(id.ends_with(&format!(":{device}")), "{url}: {item}");
            }
            ids.push(id.to_owned());
        }
        match page.json["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return (ids, count),
        }
    }
    panic!("{first}: paging loops");
}

both!(scale_plans_return_the_generic_plans_rows, |app| {
    let script = app.script("status plans").await;
    let other = app.script("other").await;
    let names = [
        Some("PC-%1"),
        Some("pc_2"),
        Some("O'Brien's PC"),
        Some("Dup"),
        Some("dup"),
        Some("DUP"),
        None,
        Some("zeta"),
        Some("Alpha"),
        Some("50%_off"),
    ];
    let users = [Some("a@x"), Some("B@x"), None, Some("a@x")];
    let detections = [
        "success",
        "fail",
        "fail",
        "scriptError",
        "pending",
        "unknown",
    ];
    let remediations = [
        "skipped",
        "remediationFailed",
        "success",
        "unknown",
        "scriptError",
    ];
    let mut deleted = Vec::new();
    let mut renamed = Vec::new();
    for i in 0..48usize {
        let mut body = serde_json::Map::new();
        if let Some(name) = names[i % names.len()] {
            body.insert("deviceName".into(), json!(name));
        }
        if let Some(user) = users[i % users.len()] {
            body.insert("userPrincipalName".into(), json!(user));
        }
        let reply = app
            .post(
                "deviceManagement/managedDevices",
                &Value::Object(body).to_string(),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let device = reply.json["id"].as_str().unwrap().to_owned();
        let state = format!(
            r#""detectionState":"{}","remediationState":"{}","lastSyncDateTime":"2025-0{}-01T00:00:00Z","lastStateUpdateDateTime":"2025-01-0{}T00:00:00Z""#,
            detections[i % detections.len()],
            remediations[i % remediations.len()],
            1 + i % 3,
            1 + i % 7,
        );
        assert_eq!(app.run_state(&script, &device, &state).await.status, 201);
        if i % 5 == 0 {
            assert_eq!(app.run_state(&other, &device, "").await.status, 201);
        }
        if i % 11 == 3 {
            deleted.push(device);
        } else if i % 13 == 7 {
            renamed.push(device);
        }
    }
    // Unbound run states, and run states whose device is deleted afterwards.
    for i in 0..5usize {
        let reply = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
                &format!(
                    r#"{{"detectionState":"{}","remediationState":"skipped"}}"#,
                    detections[i % 2]
                ),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    // Renamed devices: the trigram indexes follow the new name (and forget the old one).
    for (i, device) in renamed.iter().enumerate() {
        let name = ["Zeta-renamed", "O'Brien 50%_off"][i % 2];
        let body = json!({ "deviceName": name }).to_string();
        let reply = app
            .patch(&format!("deviceManagement/managedDevices/{device}"), &body)
            .await;
        assert!(matches!(reply.status, 200 | 204), "{}", reply.text);
    }
    for device in &deleted {
        let reply = app
            .delete(&format!("deviceManagement/managedDevices/{device}"))
            .await;
        assert_eq!(reply.status, 204, "{}", reply.text);
    }

    let orders = [
        "",
        "detectionState",
        "remediationState",
        "lastStateUpdateDateTime",
        "lastSyncDateTime",
        "managedDevice/deviceName",
        "managedDevice/userPrincipalName",
        // Two keys: a time after a device property (the state filters' plans must leave a
        // text key alone).
        "managedDevice/deviceName,lastSyncDateTime",
    ];
    let filters = [
        "",
        "detectionState eq 'fail'",
        "remediationState eq 'skipped'",
        "detectionState eq 'fail' and remediationState eq 'remediationFailed'",
        "detectionState eq 'notApplicable'",
        "detectionState eq 'success' and detectionState eq 'fail'",
        // Every search in a top-level conjunct takes the search plan: up to 2 characters by
        // reading every device name ('%', '_' and quotes literal, case folded, a rare 'zq',
        // across a deleted device 'Z'), 3 or more through the trigram indexes on SQLite: rare,
        // none, across a deleted device ('zeta'), case, wildcards and quotes taken literally;
        // and searches the plan must not serve alone (under `or`/`not`).
        "contains(managedDevice/deviceName,'%')",
        "contains(managedDevice/deviceName,'_')",
        "contains(managedDevice/deviceName,'''')",
        "detectionState eq 'fail' and contains(managedDevice/deviceName,'p')",
        "contains(managedDevice/deviceName,'zq')",
        "contains(managedDevice/deviceName,'Z')",
        "contains(managedDevice/deviceName,'dup')",
        "contains(managedDevice/deviceName,'zeta')",
        "contains(managedDevice/deviceName,'ETA')",
        "contains(managedDevice/deviceName,'zzz')",
        "contains(managedDevice/deviceName,'50%_')",
        "contains(managedDevice/deviceName,'%_o')",
        "contains(managedDevice/deviceName,'c-%')",
        "contains(managedDevice/deviceName,'c_2')",
        "contains(managedDevice/deviceName,'c%2')",
        "contains(managedDevice/deviceName,'o''b')",
        "contains(managedDevice/deviceName,'\\_2')",
        "remediationState eq 'skipped' and contains(managedDevice/deviceName,'dup')",
        // State conjuncts beside a search bound the matches: none at all (no run state is
        // notApplicable) answers without a query, a few keep the device-driven plan away.
        "detectionState eq 'notApplicable' and contains(managedDevice/deviceName,'p')",
        "remediationState eq 'scriptError' and contains(managedDevice/deviceName,'u')",
        "contains(managedDevice/deviceName,'dup') and contains(managedDevice/deviceName,'p_')",
        "contains(managedDevice/deviceName,'zeta') or detectionState eq 'fail'",
        "not contains(managedDevice/deviceName,'dup')",
    ];
    let mut checked = 0;
    for order in orders {
        for dir in ["asc", "desc"] {
            if order.is_empty() && dir == "desc" {
                continue;
            }
            for filter in filters {
                let mut url = format!(
                    "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$top=4&$count=true&$expand=managedDevice"
                );
                if !order.is_empty() {
                    url.push_str(&format!("&$orderby={order} {dir}"));
                }
                if !filter.is_empty() {
                    url.push_str(&format!("&$filter={}", filter.replace('%', "%25")));
                }
                remediate_store::set_list_plan_min_rows(None);
                let generic = walk(&app, &url).await;
                // `$expand` changes no row or order: without a device property in the filter or
                // order, the device is joined to the page's rows only.
                let plain = url.replace("&$expand=managedDevice", "");
                assert_eq!(walk(&app, &plain).await, generic, "{plain}");
                // Always, then as chosen from the counters (53 run states of 44 devices: the
                // device-driven plan for unfiltered sorts, the generic one for rare filters).
                for min_rows in [0, 40] {
                    remediate_store::set_list_plan_min_rows(Some(min_rows));
                    let planned = walk(&app, &url).await;
                    assert_eq!(planned, generic, "{url} (threshold {min_rows})");
                }
                checked += 1;
            }
        }
    }
    // A state filter sorted by the other state column is read one sort value at a time, and a
    // `$skip` passes over whole values by their counts: every offset, both directions, with
    // and without a search.
    for (filter, order) in [
        ("detectionState eq 'fail'", "remediationState"),
        ("remediationState eq 'skipped'", "detectionState"),
        (
            "detectionState eq 'fail' and contains(managedDevice/deviceName,'p')",
            "remediationState",
        ),
    ] {
        for dir in ["asc", "desc"] {
            for skip in 0..14 {
                let url = format!(
                    "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$top=3&$skip={skip}&$count=true&$orderby={order} {dir}&$filter={filter}"
                );
                remediate_store::set_list_plan_min_rows(None);
                let generic = walk(&app, &url).await;
                remediate_store::set_list_plan_min_rows(Some(0));
                assert_eq!(walk(&app, &url).await, generic, "{url}");
                checked += 1;
            }
        }
    }
    // The state counts were read from the counters: they equal the rows.
    let (all, count) = walk(
        &app,
        &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$count=true&$filter=detectionState eq 'fail'"),
    )
    .await;
    assert_eq!(count, json!(all.len()));
    assert!(!all.is_empty());
    remediate_store::set_list_plan_min_rows(None);
    assert_eq!(checked, 15 * filters.len() + 3 * 2 * 14);
});

// The dashboard's device status table, page after page through its Next links: every sort in
// both directions, with and without filters, renders the same pages (rows, totals, links) with
// the scale plans forced on as with them off.
both!(
    the_status_table_renders_the_same_pages_with_the_scale_plans,
    |app| {
        use crate::dashboard::{Browser, READ_ALL};
        let script = app.script("status table").await;
        for i in 0..30usize {
            let name = ["Dup", "dup", "Zed", "alpha"][i % 4];
            let device = if i % 7 == 6 {
                app.post("deviceManagement/managedDevices", "{}").await.json["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            } else {
                app.device(&format!("{name}-{}", i % 5)).await
            };
            let state = format!(
                r#""detectionState":"{}","remediationState":"{}""#,
                ["success", "fail"][i % 2],
                ["skipped", "remediationFailed", "success"][i % 3]
            );
            assert_eq!(app.run_state(&script, &device, &state).await.status, 201);
        }
        // Run states without a device: NULL device names and users, ordered by id among themselves.
        for i in 0..4usize {
            let reply = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
                &format!(
                    r#"{{"detectionState":"{}","remediationState":"skipped","lastSyncDateTime":"2025-0{}-01T00:00:00Z"}}"#,
                    ["success", "fail"][i % 2],
                    1 + i
                ),
            )
            .await;
            assert_eq!(reply.status, 201, "{}", reply.text);
        }
        let browser = Browser::sign_in(&app, "tenant-a", READ_ALL).await;
        let pages = |first: String| {
            let browser = &browser;
            async move {
                let mut out = Vec::new();
                let mut path = first;
                for _ in 0..10 {
                    let page = browser.get(&path).await;
                    assert_eq!(page.status, 200, "{path}: {}", page.text);
                    let next = page
                        .text
                        .split("<a href=\"")
                        .skip(1)
                        .filter_map(|s| s.split_once('"'))
                        .find(|(_, rest)| rest.starts_with(" rel=\"next\""))
                        .map(|(href, _)| href.replace("&amp;", "&"));
                    out.push(page.text);
                    match next {
                        Some(href) => path = href,
                        None => return out,
                    }
                }
                panic!("{path}: paging loops");
            }
        };
        for sort in [
            "device",
            "user",
            "detection",
            "remediation",
            "updated",
            "synced",
        ] {
            for dir in ["asc", "desc"] {
                for filter in [
                    "",
                    "&detection=fail",
                    "&remediation=skipped",
                    "&q=dup",
                    "&q=ZED-1",
                    "&q=zzz",
                    "&detection=fail&q=alpha",
                ] {
                    let first = format!("/scripts/{script}?sort={sort}&dir={dir}{filter}");
                    remediate_store::set_list_plan_min_rows(None);
                    let generic = pages(first.clone()).await;
                    remediate_store::set_list_plan_min_rows(Some(0));
                    let planned = pages(first.clone()).await;
                    remediate_store::set_list_plan_min_rows(None);
                    assert!(!generic.is_empty(), "{first}");
                    assert_eq!(planned.len(), generic.len(), "{first}");
                    for (a, b) in planned.iter().zip(&generic) {
                        assert!(a == b, "{first}: the pages differ");
                    }
                }
            }
        }
    }
);
