//! Graph's exact answers (issue 13): item payloads compared member by member with payloads
//! observed from the real service, `@odata.type` only where an instance's type is derived from
//! the declared one (minimal metadata), PATCH answering 200 with the entity a following GET
//! returns, `assign` answering 200, and assignment targets without a filter carrying the zero GUID
//! and `none`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::both;
use crate::harness::TestApp;

const ALL_DEVICES: &str = "adadadad-808e-44e2-905a-0b7873a8a531";
const NO_FILTER: &str = "00000000-0000-0000-0000-000000000000";
const GRAPH: &str = "https://graph.microsoft.com/beta";

/// `GET /beta/deviceManagement/deviceHealthScripts/{id}` as the real service answered it (the
/// shared spec's `examples/devicehealthscript-get-observed.json`, copied so the test stands alone).
const OBSERVED_SCRIPT: &str = r#"{
  "remediationScriptContent": "",
  "detectionScriptContent": "77u/77u/U3RhcnQtVHJhbnNjcmlwdCAiQzpcUHJvZ3JhbURhdGFcTWljcm9zb2Z0XEludHVuZU1hbmFnZW1lbnRFeHRlbnNpb25cTG9nc1xJbnR1bmVfUmVtZWRpYXRpb25fRXh0ZW5zaW9uQXR0cmlidXRlMS5sb2ciIC1Gb3JjZQ0KDQokZG9tYWluID0gKEdldC1XbWlPYmplY3QgLUNsYXNzIFdpbjMyX0NvbXB1dGVyU3lzdGVtIHwgU2VsZWN0IGRvbWFpbikuZG9tYWluDQoNCldyaXRlLU91dHB1dCAkZG9tYWluDQpFeGl0IDA=",
  "enforceSignatureCheck": false,
  "description": "Outputs the domain name to be used for Azure Automation.",
  "runAs32Bit": true,
  "createdDateTime": "2025-04-04T00:37:33.6892117Z",
  "remediationScriptParameters": [],
  "publisher": " ",
  "deviceHealthScriptType": "deviceHealthScript",
  "@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/deviceHealthScripts/$entity",
  "roleScopeTagIds": ["0"],
  "lastModifiedDateTime": "2025-04-04T00:37:33.6892117Z",
  "detectionScriptParameters": [],
  "highestAvailableVersion": null,
  "id": "13c2f40a-a837-4c9d-a377-4b28310a8fea",
  "runAsAccount": "system",
  "version": "1",
  "isGlobalScript": false,
  "displayName": "JoeLoveless - ExtensionAttributes - DomainName"
}"#;

/// An assignment as the real service answered it (the shared spec's
/// `examples/devicehealthscriptassignment-observed.json`: an item of a collection, so without
/// `@odata.context`).
const OBSERVED_ASSIGNMENT: &str = r##"{
  "id": "13c2f40a-a837-4c9d-a377-4b28310a8fea:adadadad-808e-44e2-905a-0b7873a8a531",
  "runRemediationScript": false,
  "target": {
    "@odata.type": "#microsoft.graph.allDevicesAssignmentTarget",
    "deviceAndAppManagementAssignmentFilterId": "00000000-0000-0000-0000-000000000000",
    "deviceAndAppManagementAssignmentFilterType": "none"
  },
  "runSchedule": {
    "@odata.type": "#microsoft.graph.deviceHealthScriptDailySchedule",
    "time": "20:00:00.0000000",
    "useUtc": false,
    "interval": 1
  }
}"##;

/// Members whose values are instance data (ids and times): only their JSON kind is compared.
const INSTANCE: &[&str] = &["id", "createdDateTime", "lastModifiedDateTime"];

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `ours` against `observed`, member by member and recursively into nested objects and arrays:
/// the same members (so a stray `@odata.type` or a missing default fails) and equal values,
/// except the members named in [`INSTANCE`], whose values need only be of the same kind.
fn assert_like(path: &str, ours: &Value, observed: &Value) {
    match (ours, observed) {
        (Value::Object(a), Value::Object(b)) => {
            let ours_keys: BTreeSet<&str> = a.keys().map(String::as_str).collect();
            let their_keys: BTreeSet<&str> = b.keys().map(String::as_str).collect();
            assert_eq!(
                ours_keys, their_keys,
                "{path}: the members differ\n  ours:     {ours}\n  observed: {observed}"
            );
            for (key, theirs) in b {
                let at = format!("{path}.{key}");
                if INSTANCE.contains(&key.as_str()) {
                    assert_eq!(kind(&a[key]), kind(theirs), "{at}: {}", a[key]);
                } else {
                    assert_like(&at, &a[key], theirs);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{path}: {ours} vs {observed}");
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert_like(&format!("{path}[{i}]"), x, y);
            }
        }
        _ => assert_eq!(ours, observed, "{path}"),
    }
}

/// Our answer with the test server's base URL replaced by Graph's (in `@odata.context`).
fn as_graph(app: &TestApp, value: &Value) -> Value {
    serde_json::from_str(&value.to_string().replace(&app.base, GRAPH)).unwrap()
}

/// No `@odata.type` on the entity itself (its type is the declared type of its context).
fn assert_no_entity_type(what: &str, value: &Value) {
    assert!(
        value.get("@odata.type").is_none(),
        "{what} carries @odata.type: {value}"
    );
}

both!(a_script_reads_as_the_observed_payload, |app| {
    let observed: Value = serde_json::from_str(OBSERVED_SCRIPT).unwrap();
    // The observed entity sent back as a create, as clients that round-trip entities do
    // (read-only members are ignored); `remediationScriptContent` is left out for its default.
    let mut body = observed.clone();
    body.as_object_mut()
        .unwrap()
        .remove("remediationScriptContent");
    let created = app
        .post("deviceManagement/deviceHealthScripts", &body.to_string())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_like("POST", &as_graph(&app, &created.json), &observed);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_ne!(id, observed["id"], "the server assigns the id");
    for path in [
        format!("deviceManagement/deviceHealthScripts/{id}"),
        format!("deviceManagement/deviceHealthScripts('{id}')"),
    ] {
        let item = app.get(&path).await;
        assert_eq!(item.status, 200, "{}", item.text);
        assert_like(
            &format!("GET {path}"),
            &as_graph(&app, &item.json),
            &observed,
        );
    }
});

both!(an_assignment_reads_as_the_observed_payload, |app| {
    let observed: Value = serde_json::from_str(OBSERVED_ASSIGNMENT).unwrap();
    let script = app.script("observed").await;
    let base = format!("deviceManagement/deviceHealthScripts/{script}");
    let id = format!("{script}:{ALL_DEVICES}");
    let mut sent = observed.clone();
    sent.as_object_mut().unwrap().remove("id");
    // Through assign and through a create, the same payload comes back.
    let assigned = app
        .post(
            &format!("{base}/assign"),
            &json!({ "deviceHealthScriptAssignments": [sent] }).to_string(),
        )
        .await;
    assert!(
        assigned.status < 300,
        "{}: {}",
        assigned.status,
        assigned.text
    );
    let item_context = format!(
        "{GRAPH}/$metadata#deviceManagement/deviceHealthScripts('{script}')/assignments/$entity"
    );
    let item = app.get(&format!("{base}/assignments/{id}")).await;
    assert_eq!(item.status, 200, "{}", item.text);
    let mut ours = as_graph(&app, &item.json);
    assert_eq!(
        ours.as_object_mut().unwrap().shift_remove("@odata.context"),
        Some(json!(item_context))
    );
    assert_like("GET item", &ours, &observed);
    assert!(ours["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{ALL_DEVICES}")));
    let list = app.get(&format!("{base}/assignments")).await;
    assert_like("list item", &list.json["value"][0], &observed);
    let expanded = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}?$expand=assignments"
        ))
        .await;
    assert_like("$expand item", &expanded.json["assignments"][0], &observed);
    assert_eq!(
        app.delete(&format!("{base}/assignments/{id}")).await.status,
        204
    );
    let created = app
        .post(&format!("{base}/assignments"), &sent.to_string())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let mut ours = as_graph(&app, &created.json);
    assert_eq!(
        ours.as_object_mut().unwrap().shift_remove("@odata.context"),
        Some(json!(item_context))
    );
    assert_like("POST", &ours, &observed);
});

both!(
    entities_carry_no_odata_type_but_derived_complex_values_do,
    |app| {
        let script = app.script("types").await;
        let device = app.device("PC-types").await;
        let run_state = app.run_state(&script, &device, "").await;
        assert_eq!(run_state.status, 201, "{}", run_state.text);
        assert_no_entity_type("a created run state", &run_state.json);
        let created = app
            .post(
                "deviceManagement/deviceHealthScripts",
                r#"{"detectionScriptContent":"eA=="}"#,
            )
            .await;
        assert_no_entity_type("a created script", &created.json);
        let created = app
            .post(
                "deviceManagement/managedDevices",
                r#"{"deviceName":"PC-2"}"#,
            )
            .await;
        assert_no_entity_type("a created device", &created.json);
        let base = format!("deviceManagement/deviceHealthScripts/{script}");
        let assignment = app
        .post(
            &format!("{base}/assignments"),
            &json!({"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1"},
                    "runSchedule": {"@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule", "interval": 2}})
            .to_string(),
        )
        .await;
        assert_eq!(assignment.status, 201, "{}", assignment.text);
        assert_no_entity_type("a created assignment", &assignment.json);
        assert_eq!(
            assignment.json["target"]["@odata.type"],
            "#microsoft.graph.groupAssignmentTarget"
        );
        assert_eq!(
            assignment.json["runSchedule"]["@odata.type"],
            "#microsoft.graph.deviceHealthScriptHourlySchedule"
        );
        let state = format!("{base}/deviceRunStates/{script}:{device}");
        for path in [
            base.clone(),
            format!("deviceManagement/managedDevices/{device}"),
            state.clone(),
            format!("{state}?$expand=managedDevice"),
            format!("{state}/managedDevice"),
            format!("{base}/runSummary"),
            format!("{base}/assignments/{script}:g1"),
            format!("{base}?$expand=assignments,runSummary"),
        ] {
            let item = app.get(&path).await;
            assert_eq!(item.status, 200, "{path}: {}", item.text);
            assert_no_entity_type(&path, &item.json);
            for nested in ["managedDevice", "runSummary"] {
                if item.json[nested].is_object() {
                    assert_no_entity_type(&format!("{path} {nested}"), &item.json[nested]);
                }
            }
        }
        let expanded = app.get(&format!("{base}?$expand=assignments")).await;
        assert_eq!(
            expanded.json["assignments"][0]["target"]["@odata.type"],
            "#microsoft.graph.groupAssignmentTarget"
        );
        for path in [
            "deviceManagement/deviceHealthScripts?$expand=assignments".to_owned(),
            format!("{base}/deviceRunStates?$expand=managedDevice"),
            format!("{base}/assignments"),
            "deviceManagement/managedDevices".to_owned(),
        ] {
            let list = app.get(&path).await;
            for item in list.json["value"].as_array().unwrap() {
                assert_no_entity_type(&path, item);
            }
        }
        let batch = json!({"requests": [
            {"id": "1", "method": "GET", "url": format!("/{base}")},
            {"id": "2", "method": "GET", "url": format!("/{state}")}
        ]});
        let reply = app.post("$batch", &batch.to_string()).await;
        for response in reply.json["responses"].as_array().unwrap() {
            assert_eq!(response["status"], 200, "{response}");
            assert_no_entity_type("a $batch item", &response["body"]);
        }
    }
);

/// PATCH `path` with `body`: 200, with the body a following GET answers.
async fn assert_patch_answers_the_entity(app: &TestApp, path: &str, body: &str) -> Value {
    let patched = app.patch(path, body).await;
    assert_eq!(patched.status, 200, "PATCH {path}: {}", patched.text);
    assert!(
        patched
            .header("content-type")
            .starts_with("application/json"),
        "{:?}",
        patched.headers
    );
    let read = app.get(path).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(
        patched.json, read.json,
        "PATCH {path} answered what a GET does"
    );
    patched.json
}

both!(patch_answers_200_with_the_entity_a_get_returns, |app| {
    let script = app.script("patched").await;
    let device = app.device("PC-patched").await;
    assert_eq!(app.run_state(&script, &device, "").await.status, 201);
    let base = format!("deviceManagement/deviceHealthScripts/{script}");
    let assigned = app
        .post(
            &format!("{base}/assignments"),
            r##"{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}"##,
        )
        .await;
    assert_eq!(assigned.status, 201, "{}", assigned.text);

    let patched = assert_patch_answers_the_entity(&app, &base, r#"{"description":"new"}"#).await;
    assert_eq!(patched["description"], "new");
    assert_eq!(
        patched["@odata.context"],
        format!(
            "{}/$metadata#deviceManagement/deviceHealthScripts/$entity",
            app.base
        )
    );
    let observed: Value = serde_json::from_str(OBSERVED_SCRIPT).unwrap();
    let mut shaped = as_graph(&app, &patched);
    shaped["remediationScriptContent"] = json!("");
    shaped["runAs32Bit"] = json!(true);
    for key in [
        "detectionScriptContent",
        "description",
        "publisher",
        "displayName",
    ] {
        shaped[key] = observed[key].clone();
    }
    assert_like("PATCH", &shaped, &observed);
    // A content change bumps the version, and the answer already shows it.
    let patched = assert_patch_answers_the_entity(
        &app,
        &format!("deviceManagement/deviceHealthScripts('{script}')"),
        r#"{"detectionScriptContent":"ZXhpdCAw"}"#,
    )
    .await;
    assert_eq!(patched["version"], "2");

    let state = format!("{base}/deviceRunStates/{script}:{device}");
    let patched = assert_patch_answers_the_entity(
        &app,
        &state,
        r#"{"detectionState":"fail","remediationState":"success"}"#,
    )
    .await;
    assert_eq!(patched["remediationState"], "success");
    assert!(patched["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with(&format!(
            "$metadata#deviceManagement/deviceHealthScripts('{script}')/deviceRunStates/$entity"
        )));

    let assignment = format!("{base}/assignments('{script}:{ALL_DEVICES}')");
    let patched =
        assert_patch_answers_the_entity(&app, &assignment, r#"{"runRemediationScript":true}"#)
            .await;
    assert_eq!(patched["runRemediationScript"], true);
    assert!(patched["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with(&format!(
            "$metadata#deviceManagement/deviceHealthScripts('{script}')/assignments/$entity"
        )));

    let patched = assert_patch_answers_the_entity(
        &app,
        &format!("deviceManagement/managedDevices/{device}"),
        r#"{"managedDeviceName":"renamed"}"#,
    )
    .await;
    assert_eq!(patched["managedDeviceName"], "renamed");
    assert_eq!(
        patched["@odata.context"],
        format!(
            "{}/$metadata#deviceManagement/managedDevices/$entity",
            app.base
        )
    );

    // Inside $batch too.
    let batch = json!({"requests": [{"id": "1", "method": "PATCH", "url": format!("/{base}"),
        "headers": {"Content-Type": "application/json"}, "body": {"displayName": "batched"}}]});
    let reply = app.post("$batch", &batch.to_string()).await;
    let inner = &reply.json["responses"][0];
    assert_eq!(inner["status"], 200, "{}", reply.text);
    assert_eq!(inner["body"], app.get(&base).await.json);
    assert_eq!(inner["body"]["displayName"], "batched");

    // A refused PATCH is still an error, and a missing entity a 404.
    app.patch(&base, r#"{"runAsAccount":"nobody"}"#)
        .await
        .assert_error(400, "BadRequest", "runAsAccount");
    app.patch(
        "deviceManagement/managedDevices/no-such-device",
        r#"{"managedDeviceName":"x"}"#,
    )
    .await
    .assert_error(404, "ResourceNotFound", "no-such-device");
});

both!(assign_answers_200_with_the_new_assignments, |app| {
    let script = app.script("assign-200").await;
    let base = format!("deviceManagement/deviceHealthScripts/{script}");
    let body = json!({"deviceHealthScriptAssignments": [
        {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g2"}, "runRemediationScript": true,
         "runSchedule": {"@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule", "interval": 4}},
        {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}
    ]});
    let reply = app.post(&format!("{base}/assign"), &body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["@odata.context"],
        format!(
            "{}/$metadata#Collection(microsoft.graph.deviceHealthScriptAssignment)",
            app.base
        )
    );
    let list = app.get(&format!("{base}/assignments")).await;
    let by_id = |items: &Value| {
        let mut items = items.as_array().unwrap().clone();
        items.sort_by_key(|i| i["id"].as_str().unwrap().to_owned());
        items
    };
    assert_eq!(by_id(&reply.json["value"]), by_id(&list.json["value"]));
    assert_eq!(reply.json["value"].as_array().unwrap().len(), 2);
    let emptied = app
        .post(
            &format!("{base}/assign"),
            r#"{"deviceHealthScriptAssignments":[]}"#,
        )
        .await;
    assert_eq!(emptied.status, 200, "{}", emptied.text);
    assert_eq!(emptied.json["value"], json!([]));
});

both!(
    targets_without_a_filter_carry_the_zero_guid_and_none,
    |app| {
        let script = app.script("filters").await;
        let base = format!("deviceManagement/deviceHealthScripts/{script}");
        let unfiltered = |kind: &str| {
            json!({"@odata.type": format!("#microsoft.graph.{kind}"),
               "deviceAndAppManagementAssignmentFilterId": NO_FILTER,
               "deviceAndAppManagementAssignmentFilterType": "none"})
        };
        // On create.
        let created = app
            .post(
                &format!("{base}/assignments"),
                r##"{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}"##,
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(
            created.json["target"],
            unfiltered("allDevicesAssignmentTarget")
        );
        let item = app
            .get(&format!("{base}/assignments/{script}:{ALL_DEVICES}"))
            .await;
        assert_eq!(
            item.json["target"],
            unfiltered("allDevicesAssignmentTarget")
        );
        // On assign, with the filter id left out or null; and one with a filter of the tenant.
        let made = app
            .post(
                "deviceManagement/assignmentFilters",
                &json!({"displayName": "Dell only", "platform": "windows10AndLater",
                        "rule": "(device.manufacturer -eq \"Dell\")"})
                .to_string(),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
        let filter = made.json["id"].as_str().unwrap().to_owned();
        let filter = filter.as_str();
        let body = json!({"deviceHealthScriptAssignments": [
            {"target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}},
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1",
                        "deviceAndAppManagementAssignmentFilterId": null}},
            {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g2",
                        "deviceAndAppManagementAssignmentFilterType": "none"}},
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g3",
                        "deviceAndAppManagementAssignmentFilterId": filter,
                        "deviceAndAppManagementAssignmentFilterType": "include"}}
        ]});
        let reply = app.post(&format!("{base}/assign"), &body.to_string()).await;
        assert!(reply.status < 300, "{}: {}", reply.status, reply.text);
        let list = app.get(&format!("{base}/assignments")).await;
        let targets: Vec<&Value> = list.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["target"])
            .collect();
        assert_eq!(targets.len(), 4, "{}", list.text);
        for target in &targets {
            let filtered = target["groupId"] == "g3";
            assert_eq!(
                target["deviceAndAppManagementAssignmentFilterId"],
                if filtered { filter } else { NO_FILTER },
                "{target}"
            );
            assert_eq!(
                target["deviceAndAppManagementAssignmentFilterType"],
                if filtered { "include" } else { "none" },
                "{target}"
            );
        }
        // A filter id with type none, or include/exclude without a filter id, is a 400.
        for (target, needle) in [
            (
                json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g4",
                   "deviceAndAppManagementAssignmentFilterId": filter}),
                "deviceAndAppManagementAssignmentFilterType",
            ),
            (
                json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g4",
                   "deviceAndAppManagementAssignmentFilterId": filter,
                   "deviceAndAppManagementAssignmentFilterType": "none"}),
                "'none'",
            ),
            (
                json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g4",
                   "deviceAndAppManagementAssignmentFilterType": "exclude"}),
                "deviceAndAppManagementAssignmentFilterId",
            ),
            (
                json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g4",
                   "deviceAndAppManagementAssignmentFilterId": NO_FILTER,
                   "deviceAndAppManagementAssignmentFilterType": "include"}),
                "deviceAndAppManagementAssignmentFilterId",
            ),
        ] {
            app.post(
                &format!("{base}/assignments"),
                &json!({ "target": target }).to_string(),
            )
            .await
            .assert_error(400, "BadRequest", needle);
            app.post(
                &format!("{base}/assign"),
                &json!({"deviceHealthScriptAssignments": [{ "target": target }]}).to_string(),
            )
            .await
            .assert_error(400, "BadRequest", needle);
        }
        assert_eq!(
            app.get(&format!("{base}/assignments/$count")).await.text,
            "4",
            "refused writes changed nothing"
        );
    }
);

both!(
    stored_targets_with_a_null_filter_read_as_the_zero_guid,
    |app| {
        let script = app.script("older").await;
        let base = format!("deviceManagement/deviceHealthScripts/{script}");
        let created = app
            .post(
                &format!("{base}/assignments"),
                r##"{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}"##,
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        // Rows written before the default existed hold a null filter id.
        let old = r##"{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget","deviceAndAppManagementAssignmentFilterId":null,"deviceAndAppManagementAssignmentFilterType":"none"}"##;
        let sql = format!(
        "UPDATE device_health_script_assignments SET target = '{old}' WHERE \"scriptId\" = '{script}';"
    );
        let status = match app.database_url() {
            Some(url) => std::process::Command::new("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", &url, "-c", &sql])
                .status(),
            None => std::process::Command::new("sqlite3")
                .arg(app.data_dir.join("remediate.db"))
                .arg(&sql)
                .status(),
        };
        match status {
            Ok(status) => assert!(status.success(), "{sql}"),
            Err(e)
                if app.database_url().is_none() && std::env::var("CI").as_deref() != Ok("true") =>
            {
                eprintln!("SKIPPED (SQLite half): the sqlite3 command is not available: {e}");
                return;
            }
            Err(e) => panic!("running {sql}: {e}"),
        }
        let expected = json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget",
        "deviceAndAppManagementAssignmentFilterId": NO_FILTER,
        "deviceAndAppManagementAssignmentFilterType": "none"});
        let item = app
            .get(&format!("{base}/assignments/{script}:{ALL_DEVICES}"))
            .await;
        assert_eq!(item.json["target"], expected, "{}", item.text);
        let list = app.get(&format!("{base}/assignments")).await;
        assert_eq!(list.json["value"][0]["target"], expected, "{}", list.text);
        let expanded = app.get(&format!("{base}?$expand=assignments")).await;
        assert_eq!(expanded.json["assignments"][0]["target"], expected);
    }
);
