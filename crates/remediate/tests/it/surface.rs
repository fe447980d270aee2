//! The Graph surface around run states: assignments, runSummary, history, functions, device
//! states, on-demand runs, `$batch` and `$metadata` (SPEC §2, §3.2 "History", §3.4, §5).

use serde_json::json;

use crate::both;
use crate::harness::{Backend, TestApp};

const ALL_DEVICES: &str = "adadadad-808e-44e2-905a-0b7873a8a531";

both!(assignments_crud_and_assign_replaces_the_set, |app| {
    let script = app.script("assign").await;
    let base = format!("deviceManagement/deviceHealthScripts/{script}");
    let created = app
        .post(&format!("{base}/assignments"), &json!({
            "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"},
            "runRemediationScript": true,
            "runSchedule": {"@odata.type": "microsoft.graph.deviceHealthScriptDailySchedule", "interval": 1, "time": "20:00:00", "useUtc": false}
        }).to_string())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["id"], format!("{script}:{ALL_DEVICES}"));
    let context = created.json["@odata.context"].as_str().unwrap();
    assert!(
        context.ends_with(&format!(
            "$metadata#deviceManagement/deviceHealthScripts('{script}')/assignments/$entity"
        )),
        "{context}"
    );
    assert_eq!(
        created.json["target"]["@odata.type"],
        "#microsoft.graph.allDevicesAssignmentTarget"
    );
    assert_eq!(
        created.json["target"]["deviceAndAppManagementAssignmentFilterType"],
        "none"
    );
    assert_eq!(created.json["runSchedule"]["time"], "20:00:00.0000000");
    let again = app
        .post(
            &format!("{base}/assignments"),
            r##"{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}"##,
        )
        .await;
    again.assert_error(409, "Conflict", ALL_DEVICES);
    let item = format!("{base}/assignments('{script}:{ALL_DEVICES}')");
    assert_eq!(
        app.patch(&item, r#"{"runRemediationScript":false}"#)
            .await
            .status,
        200
    );
    assert_eq!(app.get(&item).await.json["runRemediationScript"], false);
    // assign replaces the whole set.
    let body = json!({"deviceHealthScriptAssignments": [
        {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1"}, "runRemediationScript": true,
         "runSchedule": {"@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule", "interval": 4}},
        {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g2"}}
    ]});
    let reply = app.post(&format!("{base}/assign"), &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let list = app.get(&format!("{base}/assignments?$count=true")).await;
    assert_eq!(list.json["@odata.count"], 2);
    let ids: Vec<&str> = list.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [format!("{script}:g1"), format!("{script}:g2")]);
    // Invalid sets change nothing.
    let bad = json!({"deviceHealthScriptAssignments": [{"target": {"@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule"}}]});
    app.post(&format!("{base}/assign"), &bad.to_string())
        .await
        .assert_error(400, "BadRequest", "deviceHealthScriptAssignments[0]");
    let hourly = json!({"deviceHealthScriptAssignments": [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"},
        "runSchedule": {"@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule", "interval": 24}}]});
    app.post(&format!("{base}/assign"), &hourly.to_string())
        .await
        .assert_error(400, "BadRequest", "1 to 23");
    assert_eq!(
        app.get(&format!("{base}/assignments/$count")).await.text,
        "2"
    );
    let expanded = app
        .get("deviceManagement/deviceHealthScripts?$expand=assignments")
        .await;
    assert_eq!(
        expanded.json["value"][0]["assignments"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{}",
        expanded.text
    );
    // An empty set removes every assignment.
    assert_eq!(
        app.post(
            &format!("{base}/assign"),
            r#"{"deviceHealthScriptAssignments":[]}"#
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.get(&format!("{base}/assignments/$count")).await.text,
        "0"
    );
});

both!(run_summary_counts_equal_the_states, |app| {
    let script = app.script("summary").await;
    let cases = [
        ("success", "unknown"),
        ("success", "skipped"),
        ("fail", "success"),
        ("fail", "remediationFailed"),
        ("fail", "scriptError"),
        ("scriptError", "unknown"),
        ("pending", "unknown"),
        ("notApplicable", "unknown"),
        ("success", "success"),
    ];
    for (i, (detection, remediation)) in cases.iter().enumerate() {
        let device = app.device(&format!("PC-{i}")).await;
        let members = format!(
            r#""detectionState":"{detection}","remediationState":"{remediation}","lastStateUpdateDateTime":"2025-05-0{}T10:00:00Z""#,
            i + 1
        );
        assert_eq!(app.run_state(&script, &device, &members).await.status, 201);
    }
    let summary = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/runSummary"
        ))
        .await;
    assert_eq!(summary.status, 200, "{}", summary.text);
    let s = &summary.json;
    assert_eq!(s["id"], script);
    assert_eq!(
        s["noIssueDetectedDeviceCount"], 2,
        "success without a successful remediation"
    );
    assert_eq!(s["issueDetectedDeviceCount"], 3);
    assert_eq!(s["detectionScriptErrorDeviceCount"], 1);
    assert_eq!(s["detectionScriptPendingDeviceCount"], 1);
    assert_eq!(s["detectionScriptNotApplicableDeviceCount"], 1);
    assert_eq!(s["issueRemediatedDeviceCount"], 2);
    assert_eq!(s["remediationSkippedDeviceCount"], 1);
    assert_eq!(s["issueReoccurredDeviceCount"], 1);
    assert_eq!(s["remediationScriptErrorDeviceCount"], 1);
    assert_eq!(s["issueRemediatedCumulativeDeviceCount"], 2);
    assert_eq!(s["lastScriptRunDateTime"], "2025-05-09T10:00:00Z");
    let expanded = app.get(&format!("deviceManagement/deviceHealthScripts/{script}?$expand=runSummary($select=issueDetectedDeviceCount)")).await;
    assert_eq!(
        expanded.json["runSummary"]["issueDetectedDeviceCount"], 3,
        "{}",
        expanded.text
    );
    let empty = app.script("empty").await;
    let summary = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{empty}/runSummary"
        ))
        .await;
    assert!(summary.json["lastScriptRunDateTime"].is_null());
    assert_eq!(summary.json["issueDetectedDeviceCount"], 0);
    let totals = app
        .get("deviceManagement/deviceHealthScripts/getRemediationSummary()")
        .await;
    assert_eq!(totals.json["value"]["scriptCount"], 2, "{}", totals.text);
    assert_eq!(totals.json["value"]["remediatedDeviceCount"], 2);
    app.get("deviceManagement/deviceHealthScripts/missing/runSummary")
        .await
        .assert_error(404, "ResourceNotFound", "missing");
});

both!(
    history_records_every_state_change_and_feeds_remediation_history,
    |app| {
        let script = app.script("history").await;
        let device = app.device("PC-h").await;
        let created = app
            .run_state(
                &script,
                &device,
                r#""detectionState":"fail","lastStateUpdateDateTime":"2025-06-01T08:00:00Z""#,
            )
            .await;
        let id = created.json["id"].as_str().unwrap().to_owned();
        let item = format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{id}");
        assert_eq!(
            app.patch(
                &item,
                r#"{"remediationState":"success","lastStateUpdateDateTime":"2025-06-01T08:05:00Z"}"#
            )
            .await
            .status,
            200
        );
        // An update that changes no tracked property appends nothing.
        assert_eq!(
            app.patch(&item, r#"{"postRemediationDetectionScriptOutput":"ok"}"#)
                .await
                .status,
            200
        );
        assert_eq!(app.patch(&item, r#"{"detectionState":"success","remediationState":"unknown","lastStateUpdateDateTime":"2025-06-02T08:00:00Z"}"#).await.status, 200);
        let history = app.get(&format!("{item}/history?$count=true")).await;
        assert_eq!(history.status, 200, "{}", history.text);
        assert_eq!(history.json["@odata.count"], 3);
        let states: Vec<(&str, &str)> = history.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["detectionState"].as_str().unwrap(),
                    v["remediationState"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                ("fail", "unknown"),
                ("fail", "success"),
                ("success", "unknown")
            ]
        );
        assert_eq!(history.json["value"][0]["managedDeviceId"], device);
        let filtered = app
            .get(&format!(
                "{item}/history?$filter=remediationState eq 'success'"
            ))
            .await;
        assert_eq!(
            filtered.json["value"].as_array().unwrap().len(),
            1,
            "{}",
            filtered.text
        );
        let report = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/getRemediationHistory()"
            ))
            .await;
        assert_eq!(report.status, 200, "{}", report.text);
        assert_eq!(
            report.json["value"]["historyData"],
            json!([
                {"date": "2025-06-01", "remediatedDeviceCount": 1, "noIssueDeviceCount": 0, "detectFailedDeviceCount": 0},
                {"date": "2025-06-02", "remediatedDeviceCount": 0, "noIssueDeviceCount": 1, "detectFailedDeviceCount": 0},
            ])
        );
        assert!(report.json["value"]["lastModifiedDateTime"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        let same = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/getRemediationHistory"
            ))
            .await;
        assert_eq!(
            same.json["value"]["historyData"],
            report.json["value"]["historyData"]
        );
    }
);

both!(
    device_states_on_demand_runs_and_global_script_functions,
    |app| {
        let first = app.script("first").await;
        let second = app.script("second").await;
        let device = app.post("deviceManagement/managedDevices", r#"{"deviceName":"PC-s","osVersion":"10.0.1","userPrincipalName":"ann@contoso.com"}"#).await;
        let device = device.json["id"].as_str().unwrap().to_owned();
        assert_eq!(
            app.run_state(&first, &device, r#""detectionState":"fail""#)
                .await
                .status,
            201
        );
        assert_eq!(
            app.run_state(&second, &device, r#""detectionState":"success""#)
                .await
                .status,
            201
        );
        let states = app
            .get(&format!(
                "deviceManagement/managedDevices/{device}/deviceHealthScriptStates"
            ))
            .await;
        assert_eq!(states.status, 200, "{}", states.text);
        let value = states.json["value"].as_array().unwrap();
        assert_eq!(value.len(), 2);
        let first_state = value.iter().find(|v| v["policyId"] == first).unwrap();
        assert_eq!(first_state["policyName"], "first");
        assert_eq!(first_state["deviceName"], "PC-s");
        assert_eq!(first_state["userName"], "ann@contoso.com");
        assert_eq!(first_state["osVersion"], "10.0.1");
        assert_eq!(first_state["detectionState"], "fail");
        assert_eq!(first_state["deviceId"], device);
        // On-demand runs need the privileged permission, queue per script, and clear when the device reports.
        let action = format!(
            "deviceManagement/managedDevices/{device}/initiateOnDemandProactiveRemediation"
        );
        let body = format!(r#"{{"scriptPolicyId":"{first}"}}"#);
        app.post(&action, &body)
            .await
            .assert_error(403, "Forbidden", "PrivilegedOperations");
        let privileged = app.mint(
            "tenant-a",
            &[
                "DeviceManagementManagedDevices.PrivilegedOperations.All",
                "DeviceManagementManagedDevices.Read.All",
            ],
            &[],
        );
        let reply = app
            .send("POST", &action, Some(&privileged), Some(&body))
            .await;
        assert_eq!(reply.status, 204, "{}", reply.text);
        let pending = app
            .get(&format!(
                "deviceManagement/managedDevices/{device}/pendingOnDemandRemediations"
            ))
            .await;
        assert_eq!(
            pending.json["value"][0]["scriptPolicyId"], first,
            "{}",
            pending.text
        );
        let reply = app
            .send(
                "POST",
                &action,
                Some(&privileged),
                Some(r#"{"scriptPolicyId":"nope"}"#),
            )
            .await;
        reply.assert_error(400, "BadRequest", "nope");
        let reply = app
            .send(
                "POST",
                "deviceManagement/managedDevices/nope/initiateOnDemandProactiveRemediation",
                Some(&privileged),
                Some(&body),
            )
            .await;
        reply.assert_error(404, "ResourceNotFound", "nope");
        let patch = app
            .patch(
                &format!(
                    "deviceManagement/deviceHealthScripts/{first}/deviceRunStates/{first}:{device}"
                ),
                r#"{"detectionState":"success"}"#,
            )
            .await;
        assert_eq!(patch.status, 200, "{}", patch.text);
        let pending = app
            .get(&format!(
                "deviceManagement/managedDevices/{device}/pendingOnDemandRemediations"
            ))
            .await;
        assert_eq!(
            pending.json["value"],
            json!([]),
            "the report cleared the request"
        );
        // Global scripts: state per tenant; remediate serves no Microsoft-authored scripts.
        assert_eq!(
            app.get("deviceManagement/deviceHealthScripts/areGlobalScriptsAvailable()")
                .await
                .json["value"],
            "notConfigured"
        );
        assert_eq!(
            app.post(
                "deviceManagement/deviceHealthScripts/enableGlobalScripts",
                ""
            )
            .await
            .status,
            204
        );
        assert_eq!(
            app.get("deviceManagement/deviceHealthScripts/areGlobalScriptsAvailable")
                .await
                .json["value"],
            "enabled"
        );
        let version = app.post(&format!("deviceManagement/deviceHealthScripts/{first}/getGlobalScriptHighestAvailableVersion"), "").await;
        assert_eq!(version.status, 200, "{}", version.text);
        assert!(version.json["value"].is_null());
        let update = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{first}/updateGlobalScript"),
                r#"{"version":"2"}"#,
            )
            .await;
        update.assert_error(400, "BadRequest", "not a global script");
        app.get(&format!(
            "deviceManagement/deviceHealthScripts/{first}/assign"
        ))
        .await
        .assert_error(405, "MethodNotAllowed", "GET");
    }
);

both!(batch_runs_requests_as_if_alone_with_dependencies, |app| {
    let script = app.script("batch").await;
    let device = app.device("PC-b").await;
    let body = json!({"requests": [
        {"id": "1", "method": "POST", "url": format!("/deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
         "headers": {"Content-Type": "application/json"},
         "body": {"managedDevice@odata.bind": format!("managedDevices('{device}')"), "detectionState": "fail"}},
        {"id": "2", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts('{script}')/runSummary"), "dependsOn": ["1"]},
        {"id": "3", "method": "POST", "url": format!("/deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
         "headers": {"Content-Type": "application/json"}, "body": {"detectionState": "Fail"}},
        {"id": "4", "method": "GET", "url": "/deviceManagement/managedDevices?$top=1", "dependsOn": ["3"]},
        {"id": "5", "method": "GET", "url": "/deviceManagement/nope"},
        {"id": "6", "method": "GET", "url": "/deviceManagement/deviceHealthScripts/$count"}
    ]});
    let reply = app.post("$batch", &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let responses = reply.json["responses"].as_array().unwrap();
    let by_id = |id: &str| responses.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(by_id("1")["status"], 201);
    assert_eq!(by_id("1")["body"]["id"], format!("{script}:{device}"));
    assert_eq!(by_id("2")["status"], 200);
    assert_eq!(
        by_id("2")["body"]["issueDetectedDeviceCount"],
        1,
        "2 ran after 1"
    );
    assert_eq!(by_id("3")["status"], 400);
    assert_eq!(by_id("3")["body"]["error"]["code"], "BadRequest");
    assert_eq!(by_id("4")["status"], 424);
    assert_eq!(by_id("5")["status"], 400);
    assert_eq!(by_id("6")["body"], "1");
    // Each inner request is authorized on its own.
    let reader = app.mint("tenant-a", &["DeviceManagementScripts.Read.All"], &[]);
    let mixed = json!({"requests": [
        {"id": "a", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{script}")},
        {"id": "b", "method": "DELETE", "url": format!("/deviceManagement/deviceHealthScripts/{script}")}
    ]});
    let reply = app
        .send("POST", "$batch", Some(&reader), Some(&mixed.to_string()))
        .await;
    let responses = reply.json["responses"].as_array().unwrap();
    assert_eq!(responses[0]["status"], 200);
    assert_eq!(responses[1]["status"], 403);
    // Malformed batches are a 400 for the whole batch.
    let many: Vec<_> = (0..21).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/deviceManagement/managedDevices"})).collect();
    app.post("$batch", &json!({"requests": many}).to_string())
        .await
        .assert_error(400, "BadRequest", "at most 20");
    let dup = json!({"requests": [{"id": "1", "method": "GET", "url": "/a"}, {"id": "1", "method": "GET", "url": "/b"}]});
    app.post("$batch", &dup.to_string())
        .await
        .assert_error(400, "BadRequest", "more than once");
    let cycle = json!({"requests": [{"id": "1", "method": "GET", "url": "/a", "dependsOn": ["2"]}, {"id": "2", "method": "GET", "url": "/b", "dependsOn": ["1"]}]});
    app.post("$batch", &cycle.to_string())
        .await
        .assert_error(400, "BadRequest", "cycle");
    let unknown =
        json!({"requests": [{"id": "1", "method": "GET", "url": "/a", "dependsOn": ["9"]}]});
    app.post("$batch", &unknown.to_string())
        .await
        .assert_error(400, "BadRequest", "'9'");
    app.post("$batch", "not json")
        .await
        .assert_error(400, "BadRequest", "JSON");
    let tenant_b = app.mint("tenant-b", crate::harness::WRITE_SCOPES, &[]);
    let peek = json!({"requests": [{"id": "1", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{script}")}]});
    let reply = app
        .send("POST", "$batch", Some(&tenant_b), Some(&peek.to_string()))
        .await;
    assert_eq!(reply.json["responses"][0]["status"], 404);
});

both!(
    metadata_is_public_and_matches_the_committed_document,
    |app| {
        let reply = app.send("GET", "$metadata", None, None).await;
        assert_eq!(reply.status, 200);
        assert!(reply.header("content-type").starts_with("application/xml"));
        let committed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/metadata.xml"
        ))
        .unwrap();
        assert_eq!(reply.text, committed);
        assert!(reply.text.contains(
            r#"<EntityType Name="deviceHealthScriptDeviceState" BaseType="graph.entity">"#
        ));
    }
);

both!(counters_equal_the_rows_after_random_writes, |app| {
    // runSummary, getRemediationSummary and unfiltered counts come from counters kept in the
    // write transactions; random creates (bound and unbound), binds, updates, deletes, failed
    // writes and a deleted script must leave them equal to what the rows say.
    let scripts = [
        app.script("invariant-a").await,
        app.script("invariant-b").await,
    ];
    let doomed = app.script("invariant-doomed").await;
    let mut devices = Vec::new();
    for i in 0..10 {
        devices.push(app.device(&format!("PC-{i}")).await);
    }
    let detection = [
        "unknown",
        "success",
        "fail",
        "scriptError",
        "pending",
        "notApplicable",
    ];
    let remediation = [
        "unknown",
        "skipped",
        "success",
        "remediationFailed",
        "scriptError",
    ];
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let states =
        |script: &str| format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
    let mut unbound: Vec<(String, String)> = Vec::new();
    for step in 0..160 {
        let script = if step % 7 == 0 {
            doomed.clone()
        } else {
            scripts[next(2)].clone()
        };
        let device = &devices[next(devices.len())];
        let d = detection[next(detection.len())];
        let r = remediation[next(remediation.len())];
        let members = format!(r#""detectionState":"{d}","remediationState":"{r}""#);
        let path = format!("{}/{script}:{device}", states(&script));
        match next(6) {
            0 => {
                let _ = app.delete(&path).await;
            }
            1 => {
                let reply = app.post(&states(&script), &format!("{{{members}}}")).await;
                assert_eq!(reply.status, 201, "{}", reply.text);
                unbound.push((script, reply.json["id"].as_str().unwrap().to_owned()));
            }
            2 if !unbound.is_empty() => {
                // Bind an unbound run state to a device (its device key changes), or fail to
                // because the device already has one in that script (nothing may change then).
                let (script, id) = unbound.swap_remove(next(unbound.len()));
                let body = format!(
                    r#"{{"managedDevice@odata.bind":"https://graph.microsoft.com/beta/deviceManagement/managedDevices('{device}')",{members}}}"#
                );
                let reply = app.patch(&format!("{}/{id}", states(&script)), &body).await;
                assert!(
                    [200, 409, 404].contains(&reply.status),
                    "{} {}",
                    reply.status,
                    reply.text
                );
            }
            3 => {
                // A write that fails validation changes nothing.
                let reply = app.patch(&path, r#"{"detectionState":"notAState"}"#).await;
                assert!([400, 404].contains(&reply.status), "{}", reply.text);
            }
            _ => {
                if app.patch(&path, &format!("{{{members}}}")).await.status == 404 {
                    // 409: a run state created unbound has since been bound to this device.
                    let status = app.run_state(&script, device, &members).await.status;
                    assert!([201, 409].contains(&status), "{status}");
                }
            }
        }
    }
    assert_eq!(
        app.delete(&format!("deviceManagement/deviceHealthScripts/{doomed}"))
            .await
            .status,
        204
    );

    let mut remediated_keys = std::collections::BTreeSet::new();
    for script in &scripts {
        let reply = app
            .get(&format!(
                "{}?$top=1000&$count=true&$expand=managedDevice($select=id)",
                states(script)
            ))
            .await;
        let rows = reply.json["value"].as_array().unwrap().clone();
        assert_eq!(reply.json["@odata.count"], rows.len(), "{}", reply.text);
        let text_count = app.get(&format!("{}/$count", states(script))).await;
        assert_eq!(text_count.text, rows.len().to_string());
        for row in &rows {
            if row["remediationState"] == "success" {
                // A device counts once however many scripts remediated it; an unbound run
                // state counts on its own.
                let key = match row["managedDevice"]["id"].as_str() {
                    Some(device) => device.to_owned(),
                    None => format!("{script}:{}", row["id"].as_str().unwrap()),
                };
                remediated_keys.insert(key);
            }
        }
        let count =
            |f: &dyn Fn(&serde_json::Value) -> bool| rows.iter().filter(|r| f(r)).count() as i64;
        let summary = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/runSummary"
            ))
            .await
            .json;
        let expected = [
            (
                "noIssueDetectedDeviceCount",
                count(&|r| r["detectionState"] == "success" && r["remediationState"] != "success"),
            ),
            (
                "issueDetectedDeviceCount",
                count(&|r| r["detectionState"] == "fail"),
            ),
            (
                "detectionScriptErrorDeviceCount",
                count(&|r| r["detectionState"] == "scriptError"),
            ),
            (
                "detectionScriptPendingDeviceCount",
                count(&|r| r["detectionState"] == "pending"),
            ),
            (
                "detectionScriptNotApplicableDeviceCount",
                count(&|r| r["detectionState"] == "notApplicable"),
            ),
            (
                "issueRemediatedDeviceCount",
                count(&|r| r["remediationState"] == "success"),
            ),
            (
                "remediationSkippedDeviceCount",
                count(&|r| r["remediationState"] == "skipped"),
            ),
            (
                "issueReoccurredDeviceCount",
                count(&|r| r["remediationState"] == "remediationFailed"),
            ),
            (
                "remediationScriptErrorDeviceCount",
                count(&|r| r["remediationState"] == "scriptError"),
            ),
        ];
        for (name, want) in expected {
            assert_eq!(summary[name], want, "{name}: {summary}");
        }
        assert!(
            summary["issueRemediatedCumulativeDeviceCount"]
                .as_i64()
                .unwrap()
                >= summary["issueRemediatedDeviceCount"].as_i64().unwrap(),
            "{summary}"
        );
    }
    let totals = app
        .get("deviceManagement/deviceHealthScripts/getRemediationSummary()")
        .await
        .json;
    assert_eq!(totals["scriptCount"], 2, "{totals}");
    assert_eq!(
        totals["remediatedDeviceCount"],
        remediated_keys.len(),
        "{totals}"
    );
    let gone = format!("deviceManagement/managedDevices/{}", devices[0]);
    assert_eq!(app.delete(&gone).await.status, 204);
    let devices_reply = app.get("deviceManagement/managedDevices?$count=true").await;
    assert_eq!(devices_reply.json["@odata.count"], devices.len() - 1);
    // Everything else (cumulative counts, the helper tables, every shard) against a recount
    // from the rows, by the binary's own checker.
    let (ok, output) = app.recount_check();
    assert!(ok, "the counters differ from the rows:\n{output}");
});

both!(openapi_document_is_public_and_lists_every_route, |app| {
    let reply = app.service("/openapi.json").await;
    assert_eq!(reply.status().as_u16(), 200);
    let doc: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/deviceManagement/deviceHealthScripts/{scriptId}/deviceRunStates",
        "/$batch",
        "/deviceManagement/managedDevices/{deviceId}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
});

/// History pruning takes devices whose newest remediated record it deletes out of the
/// cumulative count, in the same transaction (PostgreSQL: records are aged with psql).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_history_leaves_the_cumulative_count() {
    let Some(mut app) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let script = app.script("pruned").await;
    let old = app.device("PC-old").await;
    let recent = app.device("PC-recent").await;
    for device in [&old, &recent] {
        let reply = app
            .run_state(
                &script,
                device,
                r#""detectionState":"fail","remediationState":"success""#,
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let summary_path = format!("deviceManagement/deviceHealthScripts/{script}/runSummary");
    let summary = app.get(&summary_path).await.json;
    assert_eq!(
        summary["issueRemediatedCumulativeDeviceCount"], 2,
        "{summary}"
    );
    // Age every record of one device by 100 days (both its history rows and what is kept beside
    // them: the newest-record time and its per-day history aggregate, so the database stays
    // consistent; its records have no run time, so their day moves too).
    let days_100: i64 = 100 * 864_000_000_000;
    let sql = format!(
        "UPDATE run_history SET \"recordedDateTime\" = \"recordedDateTime\" - {days_100} WHERE \"managedDeviceId\" = '{old}'; \
         UPDATE remediated_history SET \"recorded\" = \"recorded\" - {days_100} WHERE \"device\" = '{old}'; \
         UPDATE history_days SET \"day\" = \"day\" - 100, \"recorded\" = \"recorded\" - {days_100}, \
           \"lastRecorded\" = \"lastRecorded\" - {days_100} WHERE \"device\" = '{old}'; \
         DELETE FROM history_day_counts; \
         INSERT INTO history_day_counts SELECT \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\", COUNT(*) \
           FROM history_days GROUP BY \"tenant\", \"scriptId\", \"day\", \"class\", \"shard\";"
    );
    let url = app.database_url().unwrap();
    let status = std::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &url, "-c", &sql])
        .status()
        .expect("psql");
    assert!(status.success());
    // A restart applies the retention (30 days) at start, in the background.
    app.stop();
    app.args = vec!["--history-retention-days".into(), "30".into()];
    app.spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let summary = loop {
        let summary = app.get(&summary_path).await.json;
        if summary["issueRemediatedCumulativeDeviceCount"] != 2
            || std::time::Instant::now() > deadline
        {
            break summary;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        summary["issueRemediatedCumulativeDeviceCount"], 1,
        "{summary}"
    );
    assert_eq!(summary["issueRemediatedDeviceCount"], 2, "{summary}");
    let history = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{script}:{old}/history?$count=true"
        ))
        .await;
    assert_eq!(history.json["@odata.count"], 0, "{}", history.text);
    let (ok, output) = app.recount_check();
    assert!(ok, "counters differ from the rows after pruning:\n{output}");
}
