//! Scripts and managed devices: create, read, update, delete.

use serde_json::json;

use crate::both;

both!(scripts_round_trip_and_lists_hide_content, |app| {
    let tag = app
        .post(
            "deviceManagement/roleScopeTags",
            r#"{"displayName":"Paris"}"#,
        )
        .await;
    assert_eq!(tag.status, 201, "{}", tag.text);
    let tag = tag.json["id"].as_str().unwrap().to_owned();
    let body = json!({
        "@odata.type": "#microsoft.graph.deviceHealthScript",
        "displayName": "Disk cleanup", "description": "d", "publisher": "IT",
        "detectionScriptContent": "IyEvYmluL3NoCmV4aXQgMQ==", "remediationScriptContent": "ZWNobyBmaXg=",
        "runAsAccount": "user", "enforceSignatureCheck": true, "runAs32Bit": true, "roleScopeTagIds": ["0", tag],
        "detectionScriptParameters": [{"@odata.type": "#microsoft.graph.deviceHealthScriptStringParameter", "name": "p", "defaultValue": "v"}]
    });
    let created = app
        .post("deviceManagement/deviceHealthScripts", &body.to_string())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.json["version"], "1");
    assert_eq!(
        created.header("location"),
        format!("{}/deviceManagement/deviceHealthScripts/{id}", app.base)
    );
    let item = app
        .get(&format!("deviceManagement/deviceHealthScripts('{id}')"))
        .await;
    assert_eq!(
        item.json["detectionScriptContent"],
        "IyEvYmluL3NoCmV4aXQgMQ=="
    );
    assert_eq!(item.json["runAsAccount"], "user");
    assert_eq!(item.json["roleScopeTagIds"], json!(["0", tag]));
    assert_eq!(
        item.json["detectionScriptParameters"][0]["@odata.type"],
        "#microsoft.graph.deviceHealthScriptStringParameter"
    );
    let list = app.get("deviceManagement/deviceHealthScripts").await;
    assert_eq!(list.json["value"][0]["displayName"], "Disk cleanup");
    assert!(
        list.json["value"][0]["detectionScriptContent"].is_null(),
        "lists leave out script content"
    );
    // Changing content bumps the version; other changes do not. A PATCH answers the entity.
    let patched = app
        .patch(
            &format!("deviceManagement/deviceHealthScripts/{id}"),
            r#"{"description":"new"}"#,
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["version"], "1");
    assert_eq!(
        app.get(&format!("deviceManagement/deviceHealthScripts/{id}"))
            .await
            .json["version"],
        "1"
    );
    let patched = app
        .patch(
            &format!("deviceManagement/deviceHealthScripts/{id}"),
            r#"{"detectionScriptContent":"ZXhpdCAw"}"#,
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["version"], "2");
    let item = app
        .get(&format!("deviceManagement/deviceHealthScripts/{id}"))
        .await;
    assert_eq!(item.json["version"], "2");
    assert_eq!(item.json["description"], "new");
});

both!(script_rules_match_intune, |app| {
    app.post(
        "deviceManagement/deviceHealthScripts",
        r#"{"displayName":"x"}"#,
    )
    .await
    .assert_error(400, "BadRequest", "detectionScriptContent");
    app.post(
        "deviceManagement/deviceHealthScripts",
        r#"{"detectionScriptContent":""}"#,
    )
    .await
    .assert_error(400, "BadRequest", "detectionScriptContent");
    app.post(
        "deviceManagement/deviceHealthScripts",
        r#"{"detectionScriptContent":"!!"}"#,
    )
    .await
    .assert_error(400, "BadRequest", "base64");
    app.post(
        "deviceManagement/deviceHealthScripts",
        r#"{"detectionScriptContent":"eA==","isGlobalScript":true}"#,
    )
    .await
    .assert_error(400, "BadRequest", "isGlobalScript");
    let list = app
        .get("deviceManagement/deviceHealthScripts?$count=true")
        .await;
    assert_eq!(list.json["@odata.count"], 0);
});

both!(deleting_a_script_removes_its_run_states, |app| {
    let script = app.script("gone").await;
    let device = app.device("PC-gone").await;
    assert_eq!(app.run_state(&script, &device, "").await.status, 201);
    assert_eq!(
        app.delete(&format!("deviceManagement/deviceHealthScripts/{script}"))
            .await
            .status,
        204
    );
    app.get(&format!(
        "deviceManagement/deviceHealthScripts/{script}/deviceRunStates"
    ))
    .await
    .assert_error(404, "ResourceNotFound", &script);
    app.delete(&format!("deviceManagement/deviceHealthScripts/{script}"))
        .await
        .assert_error(404, "ResourceNotFound", &script);
});

both!(managed_devices_crud_with_graph_defaults, |app| {
    let created = app.post("deviceManagement/managedDevices", r#"{"deviceName":"PC-1","operatingSystem":"Windows","osVersion":"10.0.19044.3693","complianceState":"compliant","isEncrypted":true,"totalStorageSpaceInBytes":512110190592}"#).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.json["userPrincipalName"], "",
        "unset strings are empty, as in Intune"
    );
    assert_eq!(created.json["enrolledDateTime"], "0001-01-01T00:00:00Z");
    assert_eq!(created.json["managementAgent"], "unknown");
    assert_eq!(created.json["totalStorageSpaceInBytes"], 512110190592_i64);
    let patched = app
        .patch(
            &format!("deviceManagement/managedDevices('{id}')"),
            r#"{"managedDeviceName":"renamed","complianceState":"noncompliant"}"#,
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.json["managedDeviceName"], "renamed");
    let item = app
        .get(&format!("deviceManagement/managedDevices/{id}"))
        .await;
    assert_eq!(item.json["managedDeviceName"], "renamed");
    assert_eq!(item.json["complianceState"], "noncompliant");
    assert_eq!(item.json["deviceName"], "PC-1");
    app.patch(
        &format!("deviceManagement/managedDevices/{id}"),
        r#"{"complianceState":"Compliant"}"#,
    )
    .await
    .assert_error(400, "BadRequest", "complianceState");
    assert_eq!(
        app.delete(&format!("deviceManagement/managedDevices/{id}"))
            .await
            .status,
        204
    );
    app.get(&format!("deviceManagement/managedDevices/{id}"))
        .await
        .assert_error(404, "ResourceNotFound", &id);
});
