//! Lists: `$top`, keyset `@odata.nextLink`, `$count`, and the query options bound so far.

use std::collections::HashSet;

use crate::both;

both!(a_nextlink_walk_returns_every_row_once, |app| {
    let script = app.script("paging").await;
    for i in 0..23 {
        let device = app.device(&format!("PC-{i:02}")).await;
        assert_eq!(app.run_state(&script, &device, "").await.status, 201);
    }
    let mut url =
        format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$top=5&$count=true");
    let mut seen = HashSet::new();
    let mut pages = 0;
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert_eq!(page.json["@odata.count"], 23);
        for item in page.json["value"].as_array().unwrap() {
            assert!(
                seen.insert(item["id"].as_str().unwrap().to_owned()),
                "duplicate {}",
                item["id"]
            );
        }
        pages += 1;
        match page.json["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with("http://127.0.0.1:"),
                    "absolute nextLink: {next}"
                );
                url = next.to_owned();
            }
            None => break,
        }
        assert!(pages < 10, "paging loops");
    }
    assert_eq!(seen.len(), 23);
    assert_eq!(pages, 5);
});

both!(
    skiptokens_cannot_be_forged_or_replayed_on_another_query,
    |app| {
        for i in 0..3 {
            app.device(&format!("PC-{i}")).await;
        }
        let first = app.get("deviceManagement/managedDevices?$top=1").await;
        let next = first.json["@odata.nextLink"].as_str().unwrap().to_owned();
        assert_eq!(app.get(&next).await.status, 200);
        let forged = next.replace("$skiptoken=", "$skiptoken=x");
        app.get(&forged)
            .await
            .assert_error(400, "BadRequest", "$skiptoken");
        let replayed = next.replace("$top=1", "$top=1&$filter=deviceName eq 'PC-1'");
        app.get(&replayed)
            .await
            .assert_error(400, "BadRequest", "different query");
    }
);

both!(top_defaults_and_filters_sort_and_select, |app| {
    let names = ["beta", "Alpha", "gamma", "alpha"];
    for name in names {
        app.device(name).await;
    }
    let all = app.get("deviceManagement/managedDevices").await;
    assert_eq!(all.json["value"].as_array().unwrap().len(), 4);
    assert!(all.json.get("@odata.nextLink").is_none());
    let sorted = app
        .get("deviceManagement/managedDevices?$orderby=deviceName desc&$select=deviceName")
        .await;
    let got: Vec<&str> = sorted.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["deviceName"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ["gamma", "beta", "alpha", "Alpha"],
        "case-insensitive order, ties by exact value (descending)"
    );
    let item = &sorted.json["value"][0];
    assert_eq!(
        item.as_object().unwrap().len(),
        2,
        "only id and the selected property: {item}"
    );
    let filtered = app
        .get("deviceManagement/managedDevices?$filter=deviceName eq 'ALPHA'&$count=true")
        .await;
    assert_eq!(filtered.json["@odata.count"], 2, "{}", filtered.text);
    let filtered = app.get("deviceManagement/managedDevices?$filter=startswith(deviceName,'g') or deviceName eq 'beta'&$count=true").await;
    assert_eq!(filtered.json["@odata.count"], 2, "{}", filtered.text);
    let zero = app
        .get("deviceManagement/managedDevices?$top=0&$count=true")
        .await;
    assert_eq!(zero.json["value"].as_array().unwrap().len(), 0);
    assert_eq!(zero.json["@odata.count"], 4);
});

both!(run_states_filter_by_state_time_and_device, |app| {
    let script = app.script("filters").await;
    let mut devices = Vec::new();
    for (i, (state, time)) in [
        ("fail", "2025-01-02T00:00:00Z"),
        ("success", "2025-01-03T00:00:00Z"),
        ("fail", "2024-12-31T23:59:59.9999999Z"),
    ]
    .iter()
    .enumerate()
    {
        let device = app.device(&format!("PC-{i}")).await;
        let members = format!(r#""detectionState":"{state}","lastStateUpdateDateTime":"{time}""#);
        assert_eq!(app.run_state(&script, &device, &members).await.status, 201);
        devices.push(device);
    }
    let base = format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
    let reply = app.get(&format!("{base}?$filter=detectionState eq 'fail' and lastStateUpdateDateTime ge 2025-01-01T00:00:00Z&$count=true")).await;
    assert_eq!(reply.json["@odata.count"], 1, "{}", reply.text);
    let reply = app
        .get(&format!(
            "{base}?$filter=detectionState eq microsoft.graph.runState'fail'&$count=true"
        ))
        .await;
    assert_eq!(reply.json["@odata.count"], 2, "{}", reply.text);
    let reply = app
        .get(&format!(
            "{base}?$filter=managedDevice/id eq '{}'&$expand=managedDevice($select=deviceName)",
            devices[1]
        ))
        .await;
    let value = reply.json["value"].as_array().unwrap();
    assert_eq!(value.len(), 1, "{}", reply.text);
    assert_eq!(value[0]["managedDevice"]["deviceName"], "PC-1");
    let reply = app
        .get(&format!("{base}?$orderby=lastStateUpdateDateTime desc"))
        .await;
    let times: Vec<&str> = reply.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["lastStateUpdateDateTime"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2025-01-03T00:00:00Z",
            "2025-01-02T00:00:00Z",
            "2024-12-31T23:59:59.9999999Z"
        ]
    );
    app.get(&format!("{base}?$filter=detectionState eq 'Fail'"))
        .await
        .assert_error(400, "BadRequest", "'Fail'");
});
