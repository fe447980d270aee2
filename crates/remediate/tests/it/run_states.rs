//! The seed endpoint: `POST …/deviceHealthScripts/{id}/deviceRunStates` and the run-state item routes.

use serde_json::json;

use crate::both;

const SEED_TYPE: &str = "#microsoft.management.services.api.deviceHealthScriptDeviceState";

both!(
    seed_request_with_real_values_creates_the_full_entity,
    |app| {
        let script = app.script("seed").await;
        let device = app.device("PC-001").await;
        let body = json!({
            "@odata.type": SEED_TYPE,
            "managedDevice@odata.bind": format!("https://graph.microsoft.com/beta/deviceManagement/managedDevices('{device}')"),
            "detectionState": "fail",
            "lastStateUpdateDateTime": "2025-03-01T10:00:00.1234567+02:00",
            "expectedStateUpdateDateTime": "2025-03-02T08:00:00Z",
            "lastSyncDateTime": "2025-03-01T07:59:59.5-00:30",
            "preRemediationDetectionScriptOutput": "Disk 91% full\r\nC:\\ needs cleanup",
            "preRemediationDetectionScriptError": "",
            "remediationScriptError": "warning: Größe unbekannt",
            "postRemediationDetectionScriptOutput": "Disk 40% full",
            "postRemediationDetectionScriptError": "none",
            "remediationState": "success"
        });
        let reply = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
                &body.to_string(),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let v = &reply.json;
        let id = format!("{script}:{device}");
        assert_eq!(v["id"], id);
        assert!(
            v.get("@odata.type").is_none(),
            "minimal metadata: the entity is of its declared type: {v}"
        );
        assert!(v["@odata.context"].as_str().unwrap().ends_with(&format!(
            "$metadata#deviceManagement/deviceHealthScripts('{script}')/deviceRunStates/$entity"
        )));
        assert_eq!(v["detectionState"], "fail");
        assert_eq!(v["remediationState"], "success");
        assert_eq!(v["lastStateUpdateDateTime"], "2025-03-01T08:00:00.1234567Z");
        assert_eq!(v["expectedStateUpdateDateTime"], "2025-03-02T08:00:00Z");
        assert_eq!(v["lastSyncDateTime"], "2025-03-01T08:29:59.5Z");
        assert_eq!(
            v["preRemediationDetectionScriptOutput"],
            "Disk 91% full\r\nC:\\ needs cleanup"
        );
        assert_eq!(v["preRemediationDetectionScriptError"], "");
        assert_eq!(v["remediationScriptError"], "warning: Größe unbekannt");
        assert_eq!(v["assignmentFilterIds"], json!([]));
        let props: Vec<&String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !k.starts_with('@'))
            .collect();
        assert_eq!(props.len(), 12, "all twelve properties: {props:?}");
        // The Location header is the entity's URL, and it reads back the same entity.
        let location = reply.header("location").to_owned();
        assert!(location.starts_with("http://127.0.0.1:"), "{location}");
        let again = app.get(&location).await;
        assert_eq!(again.status, 200, "{}", again.text);
        for key in [
            "id",
            "detectionState",
            "lastStateUpdateDateTime",
            "lastSyncDateTime",
            "remediationScriptError",
        ] {
            assert_eq!(again.json[key], v[key], "{key}");
        }
    }
);

both!(
    omitted_properties_take_their_defaults_and_unbound_states_get_a_guid,
    |app| {
        let script = app.script("defaults").await;
        let reply = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
                "{}",
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let v = &reply.json;
        assert_eq!(v["detectionState"], "unknown");
        assert_eq!(v["remediationState"], "unknown");
        assert_eq!(v["lastStateUpdateDateTime"], "0001-01-01T00:00:00Z");
        assert_eq!(v["lastSyncDateTime"], "0001-01-01T00:00:00Z");
        assert!(v["expectedStateUpdateDateTime"].is_null());
        assert!(v["preRemediationDetectionScriptOutput"].is_null());
        assert!(
            uuid::Uuid::parse_str(v["id"].as_str().unwrap()).is_ok(),
            "{}",
            v["id"]
        );
        // No device is bound: the navigation is a 404.
        let nav = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{}/managedDevice",
                v["id"].as_str().unwrap()
            ))
            .await;
        nav.assert_error(404, "ResourceNotFound", "No managedDevice is bound");
    }
);

both!(
    the_seeds_literal_placeholder_body_is_rejected_and_nothing_is_stored,
    |app| {
        let script = app.script("placeholders").await;
        let literal = r##"{
      "@odata.type": "#microsoft.management.services.api.deviceHealthScriptDeviceState",
      "detectionState": "String",
      "lastStateUpdateDateTime": "String (timestamp)",
      "expectedStateUpdateDateTime": "String (timestamp)",
      "lastSyncDateTime": "String (timestamp)",
      "preRemediationDetectionScriptOutput": "String",
      "preRemediationDetectionScriptError": "String",
      "remediationScriptError": "String",
      "postRemediationDetectionScriptOutput": "String",
      "postRemediationDetectionScriptError": "String",
      "remediationState": "String"
    }"##;
        let reply = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
                literal,
            )
            .await;
        reply.assert_error(400, "BadRequest", "'detectionState'");
        for name in [
            "lastStateUpdateDateTime",
            "expectedStateUpdateDateTime",
            "lastSyncDateTime",
            "remediationState",
        ] {
            assert!(
                reply.json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(name),
                "{name} not named: {}",
                reply.text
            );
        }
        let list = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$count=true"
            ))
            .await;
        assert_eq!(list.json["@odata.count"], 0);
    }
);

both!(
    one_state_per_script_and_device_with_409_naming_the_existing_id,
    |app| {
        let script = app.script("dup").await;
        let device = app.device("PC-dup").await;
        assert_eq!(
            app.run_state(&script, &device, r#""detectionState":"success""#)
                .await
                .status,
            201
        );
        let again = app
            .run_state(&script, &device, r#""detectionState":"fail""#)
            .await;
        again.assert_error(409, "Conflict", &format!("{script}:{device}"));
        let state = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{script}:{device}"
            ))
            .await;
        assert_eq!(
            state.json["detectionState"], "success",
            "the conflicting create changed nothing"
        );
        // The same device may report for another script.
        let other = app.script("other").await;
        assert_eq!(app.run_state(&other, &device, "").await.status, 201);
    }
);

both!(
    binding_a_missing_device_or_posting_to_a_missing_script_fails,
    |app| {
        let script = app.script("missing").await;
        let reply = app.run_state(&script, "no-such-device", "").await;
        reply.assert_error(400, "BadRequest", "no-such-device");
        let reply = app.run_state("no-such-script", "x", "").await;
        reply.assert_error(404, "ResourceNotFound", "no-such-script");
        let reply = app
            .post(
                &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
                r#"{"managedDevice@odata.bind":"https://graph.microsoft.com/beta/users('x')"}"#,
            )
            .await;
        reply.assert_error(400, "BadRequest", "managedDevice@odata.bind");
    }
);

both!(patch_merges_validates_and_delete_removes, |app| {
    let script = app.script("patch").await;
    let device = app.device("PC-patch").await;
    let created = app
        .run_state(
            &script,
            &device,
            r#""detectionState":"fail","preRemediationDetectionScriptOutput":"before""#,
        )
        .await;
    let path = format!(
        "deviceManagement/deviceHealthScripts('{script}')/deviceRunStates('{}')",
        created.json["id"].as_str().unwrap()
    );
    let reply = app
        .patch(
            &path,
            r#"{"remediationState":"success","postRemediationDetectionScriptOutput":"after"}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let state = app.get(&path).await;
    assert_eq!(
        reply.json, state.json,
        "the PATCH answers the updated entity"
    );
    assert_eq!(
        state.json["detectionState"], "fail",
        "unchanged properties are kept"
    );
    assert_eq!(state.json["preRemediationDetectionScriptOutput"], "before");
    assert_eq!(state.json["remediationState"], "success");
    assert_eq!(state.json["postRemediationDetectionScriptOutput"], "after");
    // A bad PATCH changes nothing, even its valid parts.
    let bad = app
        .patch(
            &path,
            r#"{"postRemediationDetectionScriptOutput":"lost?","detectionState":"Fail"}"#,
        )
        .await;
    bad.assert_error(400, "BadRequest", "'Fail'");
    let state = app.get(&path).await;
    assert_eq!(state.json["postRemediationDetectionScriptOutput"], "after");
    assert_eq!(app.delete(&path).await.status, 204);
    app.delete(&path)
        .await
        .assert_error(404, "ResourceNotFound", "does not exist");
    app.get(&path)
        .await
        .assert_error(404, "ResourceNotFound", "does not exist");
});

both!(a_device_can_be_bound_by_patch_once, |app| {
    let script = app.script("bind").await;
    let device = app.device("PC-bind").await;
    let created = app
        .post(
            &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
            "{}",
        )
        .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let path = format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{id}");
    let bind =
        format!(r#"{{"managedDevice@odata.bind":"deviceManagement/managedDevices('{device}')"}}"#);
    let bound = app.patch(&path, &bind).await;
    assert_eq!(bound.status, 200, "{}", bound.text);
    assert_eq!(bound.json["id"], id, "binding by PATCH keeps the id");
    let nav = app.get(&format!("{path}/managedDevice")).await;
    assert_eq!(nav.status, 200, "{}", nav.text);
    assert_eq!(nav.json["deviceName"], "PC-bind");
    let other = app.device("PC-other").await;
    let rebind =
        format!(r#"{{"managedDevice@odata.bind":"deviceManagement/managedDevices('{other}')"}}"#);
    app.patch(&path, &rebind)
        .await
        .assert_error(400, "BadRequest", "already bound");
});

both!(outputs_keep_every_character_up_to_the_limit, |app| {
    let script = app.script("limits").await;
    let device = app.device("PC-limit").await;
    let exact = "ä".repeat(64 * 1024);
    let reply = app
        .run_state(
            &script,
            &device,
            &format!(r#""remediationScriptError":"{exact}""#),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.json["remediationScriptError"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        64 * 1024
    );
    let device2 = app.device("PC-limit-2").await;
    let over = format!("{exact}x");
    let reply = app
        .run_state(
            &script,
            &device2,
            &format!(r#""remediationScriptError":"{over}""#),
        )
        .await;
    reply.assert_error(400, "BadRequest", "over the limit");
});

both!(the_output_limit_is_configurable, |app| {
    let mut app = app;
    app.stop();
    app.args = vec!["--max-output-chars".into(), "10".into()];
    app.spawn();
    let script = app.script("configured").await;
    let device = app.device("PC-c").await;
    let reply = app
        .run_state(
            &script,
            &device,
            r#""remediationScriptError":"01234567890""#,
        )
        .await;
    reply.assert_error(400, "BadRequest", "over the limit of 10");
    let reply = app
        .run_state(&script, &device, r#""remediationScriptError":"0123456789""#)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
});
