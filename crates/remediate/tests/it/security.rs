//! Tokens, permissions and tenant isolation (SPEC §6, local key mode).

use crate::both;

both!(missing_or_bad_tokens_are_401_with_www_authenticate, |app| {
    for token in [
        None,
        Some("garbage"),
        Some("eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ4In0."),
    ] {
        let reply = app
            .send("GET", "deviceManagement/deviceHealthScripts", token, None)
            .await;
        reply.assert_error(401, "InvalidAuthenticationToken", "");
        assert!(
            reply.header("www-authenticate").starts_with("Bearer"),
            "{:?}",
            reply.headers
        );
    }
    // A token of another server's key.
    let other = crate::harness::TestApp::start(crate::harness::Backend::Sqlite)
        .await
        .unwrap();
    let reply = app
        .send(
            "GET",
            "deviceManagement/deviceHealthScripts",
            Some(&other.token.clone()),
            None,
        )
        .await;
    reply.assert_error(401, "InvalidAuthenticationToken", "signature");
});

both!(permissions_decide_reads_and_writes, |app| {
    let script = app.script("perm").await;
    let reader = app.mint("tenant-a", &["DeviceManagementScripts.Read.All"], &[]);
    let reply = app
        .send(
            "GET",
            &format!("deviceManagement/deviceHealthScripts/{script}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let reply = app
        .send(
            "POST",
            &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
            Some(&reader),
            Some("{}"),
        )
        .await;
    reply.assert_error(403, "Forbidden", "DeviceManagementScripts.ReadWrite.All");
    let reply = app
        .send(
            "GET",
            "deviceManagement/managedDevices",
            Some(&reader),
            None,
        )
        .await;
    reply.assert_error(403, "Forbidden", "DeviceManagementManagedDevices.Read.All");
    // Legacy configuration permissions and application roles work too.
    let legacy = app.mint(
        "tenant-a",
        &[],
        &["DeviceManagementConfiguration.ReadWrite.All"],
    );
    let reply = app
        .send(
            "POST",
            &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
            Some(&legacy),
            Some("{}"),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
});

both!(another_tenants_data_is_not_found, |app| {
    let script = app.script("tenant-a-script").await;
    let device = app.device("PC-a").await;
    let state = app.run_state(&script, &device, "").await;
    let state_id = state.json["id"].as_str().unwrap().to_owned();
    let b = app.mint("tenant-b", crate::harness::WRITE_SCOPES, &[]);
    for path in [
        format!("deviceManagement/deviceHealthScripts/{script}"),
        format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
        format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{state_id}"),
        format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{state_id}/managedDevice"),
        format!("deviceManagement/managedDevices/{device}"),
    ] {
        let reply = app.send("GET", &path, Some(&b), None).await;
        reply.assert_error(404, "ResourceNotFound", "");
    }
    let reply = app
        .send(
            "PATCH",
            &format!("deviceManagement/deviceHealthScripts/{script}"),
            Some(&b),
            Some(r#"{"displayName":"x"}"#),
        )
        .await;
    assert_eq!(reply.status, 404);
    let reply = app
        .send(
            "DELETE",
            &format!("deviceManagement/managedDevices/{device}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.status, 404);
    let reply = app
        .send(
            "POST",
            &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
            Some(&b),
            Some("{}"),
        )
        .await;
    assert_eq!(reply.status, 404);
    // Tenant B cannot bind tenant A's device either.
    let b_script = app
        .send(
            "POST",
            "deviceManagement/deviceHealthScripts",
            Some(&b),
            Some(r#"{"detectionScriptContent":"eA=="}"#),
        )
        .await;
    let b_script = b_script.json["id"].as_str().unwrap().to_owned();
    let bind = format!(r#"{{"managedDevice@odata.bind":"managedDevices('{device}')"}}"#);
    let reply = app
        .send(
            "POST",
            &format!("deviceManagement/deviceHealthScripts/{b_script}/deviceRunStates"),
            Some(&b),
            Some(&bind),
        )
        .await;
    assert_eq!(reply.status, 400);
    let list = app
        .send(
            "GET",
            "deviceManagement/deviceHealthScripts?$count=true",
            Some(&b),
            None,
        )
        .await;
    assert_eq!(
        list.json["@odata.count"], 1,
        "tenant B sees only its own script"
    );
    assert_eq!(
        app.get(&format!("deviceManagement/deviceHealthScripts/{script}"))
            .await
            .json["displayName"],
        "tenant-a-script"
    );
});

both!(tokens_and_data_survive_a_restart, |app| {
    let mut app = app;
    let script = app.script("durable").await;
    let device = app.device("PC-durable").await;
    assert_eq!(
        app.run_state(&script, &device, r#""detectionState":"fail""#)
            .await
            .status,
        201
    );
    app.stop();
    app.spawn();
    let state = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{script}:{device}"
        ))
        .await;
    assert_eq!(state.status, 200, "{}", state.text);
    assert_eq!(state.json["detectionState"], "fail");
});
