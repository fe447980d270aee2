//! Bad input of every kind gets a Graph error with the right status and changes nothing.

use crate::both;

both!(
    every_validation_rule_answers_400_and_changes_nothing,
    |app| {
        let script = app.script("validation").await;
        let device = app.device("PC-v").await;
        let path = format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
        let created = app
            .run_state(&script, &device, r#""detectionState":"success""#)
            .await;
        let item = format!("{path}/{}", created.json["id"].as_str().unwrap());
        let cases: &[(&str, &str)] = &[
            (r#"{"bogus":1}"#, "'bogus' does not exist"),
            (
                r#"{"DetectionState":"fail"}"#,
                "did you mean 'detectionState'",
            ),
            (
                r#"{"detectionState":1}"#,
                "'detectionState' must be a member",
            ),
            (
                r#"{"detectionState":null}"#,
                "'detectionState' cannot be null",
            ),
            (
                r#"{"lastStateUpdateDateTime":null}"#,
                "'lastStateUpdateDateTime' cannot be null",
            ),
            (r#"{"detectionState":"Fail"}"#, "'Fail'"),
            (
                r#"{"remediationState":"failed"}"#,
                "microsoft.graph.remediationState",
            ),
            (
                r#"{"lastStateUpdateDateTime":"2025-01-01T00:00:00"}"#,
                "zone offset",
            ),
            (
                r#"{"lastStateUpdateDateTime":"yesterday"}"#,
                "'lastStateUpdateDateTime'",
            ),
            (
                r#"{"expectedStateUpdateDateTime":1700000000}"#,
                "'expectedStateUpdateDateTime'",
            ),
            (
                r#"{"preRemediationDetectionScriptOutput":{"a":1}}"#,
                "must be a string",
            ),
            (r#"{"assignmentFilterIds":"a"}"#, "array of strings"),
            (r#"{"detectionState":"fail""#, "not valid JSON"),
            (r#"["detectionState"]"#, "JSON object"),
            (
                r#"{"detectionState":"fail","detectionState":"success"}"#,
                "more than once",
            ),
            (
                r##"{"@odata.type":"#microsoft.graph.managedDevice"}"##,
                "'@odata.type'",
            ),
            (r#"{"@odata.foo":"x"}"#, "not supported"),
        ];
        for (body, needle) in cases {
            let reply = app.patch(&item, body).await;
            reply.assert_error(400, "BadRequest", needle);
            let reply = app.post(&path, body).await;
            reply.assert_error(400, "BadRequest", needle);
        }
        let state = app.get(&item).await;
        assert_eq!(state.json["detectionState"], "success");
        let list = app.get(&format!("{path}?$count=true")).await;
        assert_eq!(
            list.json["@odata.count"], 1,
            "no bad request created anything"
        );
    }
);

both!(content_type_and_body_size_are_enforced, |app| {
    let script = app.script("media").await;
    let path = app.url(&format!(
        "deviceManagement/deviceHealthScripts/{script}/deviceRunStates"
    ));
    let no_type = app
        .client
        .post(&path)
        .bearer_auth(&app.token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(no_type.status().as_u16(), 415);
    let text = app
        .client
        .post(&path)
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    let json_charset = app
        .client
        .post(&path)
        .bearer_auth(&app.token)
        .header("content-type", "application/json; charset=utf-8")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json_charset.status().as_u16(), 201);
    let huge = format!(
        r#"{{"remediationScriptError":"{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let reply = app
        .post(
            &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
            &huge,
        )
        .await;
    reply.assert_error(413, "RequestEntityTooLarge", "limit");
    let list = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$count=true"
        ))
        .await;
    assert_eq!(list.json["@odata.count"], 1);
});

both!(routing_errors_use_graph_wording, |app| {
    app.get("deviceManagement/deviceHealthScripts/x/nope")
        .await
        .assert_error(
            400,
            "BadRequest",
            "Resource not found for the segment 'nope'.",
        );
    app.get("users").await.assert_error(
        400,
        "BadRequest",
        "Resource not found for the segment 'users'.",
    );
    let reply = app
        .send(
            "PUT",
            "deviceManagement/deviceHealthScripts",
            Some(&app.token.clone()),
            Some("{}"),
        )
        .await;
    reply.assert_error(405, "MethodNotAllowed", "PUT");
    assert_eq!(reply.header("allow"), "GET, POST");
    app.get("deviceManagement/deviceHealthScripts?$search=abc")
        .await
        .assert_error(400, "BadRequest", "$search");
    app.get("deviceManagement/deviceHealthScripts?$apply=x")
        .await
        .assert_error(400, "BadRequest", "$apply");
    app.get("deviceManagement/deviceHealthScripts?$top=abc")
        .await
        .assert_error(400, "BadRequest", "$top");
    app.get("deviceManagement/deviceHealthScripts?$filter=displayName eq")
        .await
        .assert_error(400, "BadRequest", "position");
    app.get("deviceManagement/deviceHealthScripts?$filter=nope eq 'x'")
        .await
        .assert_error(400, "BadRequest", "'nope'");
    app.get("deviceManagement/deviceHealthScripts('missing')")
        .await
        .assert_error(404, "ResourceNotFound", "missing");
});

both!(response_headers_follow_graph, |app| {
    let reply = app
        .client
        .get(app.url("deviceManagement/deviceHealthScripts"))
        .bearer_auth(&app.token)
        .header("client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    let headers = reply.headers();
    assert_eq!(headers["client-request-id"], "abc-123");
    assert!(uuid::Uuid::parse_str(headers["request-id"].to_str().unwrap()).is_ok());
    assert_eq!(headers["odata-version"], "4.0");
    assert_eq!(
        headers["content-type"],
        "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
    );
    let error = app
        .send("GET", "deviceManagement/deviceHealthScripts", None, None)
        .await;
    assert_eq!(
        error.json["error"]["innerError"]["client-request-id"],
        error.json["error"]["innerError"]["request-id"]
    );
    let health = app.service("/healthz").await;
    assert_eq!(health.status().as_u16(), 200);
    let ready = app.service("/readyz").await;
    assert_eq!(ready.status().as_u16(), 200);
});
