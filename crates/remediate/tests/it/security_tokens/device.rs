//! Device agent tokens, told as a story: a device sees only the scripts assigned to it, its own
//! run states and record, and its own on-demand queue; `$batch` judges each inner request alone;
//! the same device id in another tenant sees nothing; run summaries stay hidden through `$expand`.

use super::*;

fn ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut ids: Vec<String> = reply.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn assign(app: &TestApp, script: &str, targets: &[Value]) {
    let assignments: Vec<Value> = targets.iter().map(|t| json!({"target": t})).collect();
    let reply = app
        .post(
            &format!("{SCRIPTS}/{script}/assign"),
            &json!({"deviceHealthScriptAssignments": assignments}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

both!(
    device_tokens_see_only_their_scripts_states_and_record,
    |app| {
        let a = app.script("A").await;
        let b = app.script("B").await;
        let c = app.script("C").await;
        let d = app.script("D").await;
        let all = json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"});
        let g1 = json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1"});
        let not_g1 = json!({"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g1"});
        assign(&app, &a, std::slice::from_ref(&all)).await;
        assign(&app, &b, &[g1]).await;
        assign(&app, &d, &[all, not_g1]).await;
        let d1 = app.device("PC-1").await;
        let d2 = app.device("PC-2").await;
        let admin_state = app.run_state(&a, &d2, r#""detectionState":"fail""#).await;
        assert_eq!(admin_state.status, 201, "{}", admin_state.text);
        let d2_state = format!("{SCRIPTS}/{a}/deviceRunStates/{a}:{d2}");
        let token = app.mint_device("tenant-a", &d1, &["g1"]);
        let t = Some(token.as_str());
        let bind = |device: &str| {
            format!(
                r#"{{"managedDevice@odata.bind":"https://graph.microsoft.com/beta/deviceManagement/managedDevices('{device}')","detectionState":"success"}}"#
            )
        };

        // Scripts: exactly the assigned ones.
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort();
        assert_eq!(ids(&app.send("GET", SCRIPTS, t, None).await), expected);
        for hidden in [&c, &d] {
            let reply = app
                .send("GET", &format!("{SCRIPTS}/{hidden}"), t, None)
                .await;
            reply.assert_error(404, "ResourceNotFound", hidden);
            let reply = app
                .send("GET", &format!("{SCRIPTS}/{hidden}/assignments"), t, None)
                .await;
            assert_eq!(reply.status, 404, "{}", reply.text);
        }
        assert_eq!(
            app.send("GET", &format!("{SCRIPTS}/{a}"), t, None)
                .await
                .status,
            200
        );
        let assignments = app
            .send("GET", &format!("{SCRIPTS}/{a}/assignments"), t, None)
            .await;
        assert_eq!(assignments.status, 200, "{}", assignments.text);
        assert_eq!(assignments.json["value"].as_array().unwrap().len(), 1);
        // A device without the group sees A and D.
        let other = app.mint_device("tenant-a", &d2, &[]);
        let mut expected_other = vec![a.clone(), d.clone()];
        expected_other.sort();
        assert_eq!(
            ids(&app.send("GET", SCRIPTS, Some(&other), None).await),
            expected_other
        );

        // Run states: only its own.
        let states = format!("{SCRIPTS}/{a}/deviceRunStates");
        let created = app.send("POST", &states, t, Some(&bind(&d1))).await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.json["id"], format!("{a}:{d1}"));
        app.send("POST", &states, t, Some(&bind(&d2)))
            .await
            .assert_error(403, "Forbidden", "own device");
        app.send("POST", &states, t, Some(r#"{"detectionState":"fail"}"#))
            .await
            .assert_error(400, "BadRequest", "managedDevice@odata.bind");
        let reply = app
            .send(
                "POST",
                &format!("{SCRIPTS}/{c}/deviceRunStates"),
                t,
                Some(&bind(&d1)),
            )
            .await;
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert_eq!(
            app.get(&format!("{SCRIPTS}/{c}/deviceRunStates/$count"))
                .await
                .text,
            "0"
        );
        assert_eq!(
            ids(&app.send("GET", &states, t, None).await),
            vec![format!("{a}:{d1}")]
        );
        let own = format!("{states}/{a}:{d1}");
        assert_eq!(app.send("GET", &own, t, None).await.status, 200);
        let patched = app
            .send("PATCH", &own, t, Some(r#"{"detectionState":"fail"}"#))
            .await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(patched.json["detectionState"], "fail", "{}", patched.text);
        assert_eq!(app.get(&own).await.json["detectionState"], "fail");
        app.send("PATCH", &own, t, Some(&bind(&d2)))
            .await
            .assert_error(403, "Forbidden", "own device");
        app.send("GET", &d2_state, t, None)
            .await
            .assert_error(404, "ResourceNotFound", "");
        let reply = app
            .send(
                "PATCH",
                &d2_state,
                t,
                Some(r#"{"detectionState":"success"}"#),
            )
            .await;
        reply.assert_error(404, "ResourceNotFound", "");
        let reply = app
            .send("GET", &format!("{d2_state}/history"), t, None)
            .await;
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert_eq!(app.get(&d2_state).await.json["detectionState"], "fail");
        app.send("DELETE", &own, t, None)
            .await
            .assert_error(403, "Forbidden", "device token");
        assert_eq!(app.get(&own).await.status, 200);
        app.send("GET", &format!("{SCRIPTS}/{a}/runSummary"), t, None)
            .await
            .assert_error(403, "Forbidden", "device token");
        app.send("DELETE", &format!("{SCRIPTS}/{a}"), t, None)
            .await
            .assert_error(403, "Forbidden", "");
        app.send(
            "PATCH",
            &format!("{SCRIPTS}/{a}"),
            t,
            Some(r#"{"displayName":"pwned"}"#),
        )
        .await
        .assert_error(403, "Forbidden", "");
        assert_eq!(
            app.get(&format!("{SCRIPTS}/{a}")).await.json["displayName"],
            "A"
        );

        // Devices: only its own record.
        assert_eq!(
            ids(&app.send("GET", DEVICES, t, None).await),
            vec![d1.clone()]
        );
        app.send("GET", &format!("{DEVICES}/{d2}"), t, None)
            .await
            .assert_error(404, "ResourceNotFound", "");
        app.send(
            "PATCH",
            &format!("{DEVICES}/{d2}"),
            t,
            Some(r#"{"deviceName":"pwned"}"#),
        )
        .await
        .assert_error(404, "ResourceNotFound", "");
        assert_eq!(
            app.get(&format!("{DEVICES}/{d2}")).await.json["deviceName"],
            "PC-2"
        );
        let renamed = app
            .send(
                "PATCH",
                &format!("{DEVICES}/{d1}"),
                t,
                Some(r#"{"deviceName":"PC-1b","osVersion":"10.0.2"}"#),
            )
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        assert_eq!(
            app.get(&format!("{DEVICES}/{d1}")).await.json["deviceName"],
            "PC-1b"
        );
        app.send("DELETE", &format!("{DEVICES}/{d1}"), t, None)
            .await
            .assert_error(403, "Forbidden", "");
        let again = app
            .send("POST", DEVICES, t, Some(r#"{"deviceName":"dup"}"#))
            .await;
        again.assert_error(409, "Conflict", &d1);
        // Registration: the id is the token's device id, whatever the body says.
        let d3 = format!("d3-{}", uuid::Uuid::new_v4());
        let t3 = app.mint_device("tenant-a", &d3, &[]);
        let registered = app
            .send("POST", DEVICES, Some(&t3), Some(r#"{"deviceName":"PC-3"}"#))
            .await;
        assert_eq!(registered.status, 201, "{}", registered.text);
        assert_eq!(registered.json["id"], d3.as_str());
        let reply = app
            .send(
                "POST",
                DEVICES,
                Some(&t3),
                Some(&format!(r#"{{"id":"{d2}","deviceName":"PC-3"}}"#)),
            )
            .await;
        assert!(reply.status == 400 || reply.status == 409, "{}", reply.text);
        assert_eq!(
            app.get(&format!("{DEVICES}/{d3}")).await.json["deviceName"],
            "PC-3"
        );
        assert_eq!(
            app.get(&format!("{DEVICES}/{d2}")).await.json["deviceName"],
            "PC-2"
        );
        // On-demand runs: read its own queue only; cannot start runs.
        let pending = app
            .send(
                "GET",
                &format!("{DEVICES}/{d1}/pendingOnDemandRemediations"),
                t,
                None,
            )
            .await;
        assert_eq!(pending.status, 200, "{}", pending.text);
        app.send(
            "GET",
            &format!("{DEVICES}/{d2}/pendingOnDemandRemediations"),
            t,
            None,
        )
        .await
        .assert_error(404, "ResourceNotFound", "");
        let reply = app
            .send(
                "POST",
                &format!("{DEVICES}/{d1}/initiateOnDemandProactiveRemediation"),
                t,
                Some(&format!(r#"{{"scriptPolicyId":"{a}"}}"#)),
            )
            .await;
        reply.assert_error(403, "Forbidden", "");

        // $batch: each inner request is judged as if alone.
        let batch = json!({"requests": [
            {"id": "1", "method": "POST", "url": format!("/deviceManagement/deviceHealthScripts/{b}/deviceRunStates"),
             "headers": {"Content-Type": "application/json"},
             "body": {"managedDevice@odata.bind": format!("managedDevices('{d1}')"), "detectionState": "success"}},
            {"id": "2", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{a}")},
            {"id": "3", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{a}/runSummary")},
            {"id": "4", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{c}")},
            {"id": "5", "method": "POST", "url": format!("/deviceManagement/deviceHealthScripts/{b}/deviceRunStates"),
             "headers": {"Content-Type": "application/json"},
             "body": {"managedDevice@odata.bind": format!("managedDevices('{d2}')")}}
        ]});
        let reply = app
            .send("POST", "$batch", t, Some(&batch.to_string()))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let responses = reply.json["responses"].as_array().unwrap();
        let status = |id: &str| responses.iter().find(|r| r["id"] == id).unwrap()["status"].clone();
        assert_eq!(status("1"), 201, "{}", reply.text);
        assert_eq!(status("2"), 200, "{}", reply.text);
        assert_eq!(status("3"), 403, "{}", reply.text);
        assert_eq!(status("4"), 404, "{}", reply.text);
        assert_eq!(status("5"), 403, "{}", reply.text);
        assert!(!reply.text.contains("\"C\""), "{}", reply.text);
        assert_eq!(
            ids(&app.get(&format!("{SCRIPTS}/{b}/deviceRunStates")).await),
            vec![format!("{b}:{d1}")]
        );

        // The same device id in another tenant sees nothing of tenant A.
        let foreign = app.mint_device("tenant-b", &d1, &["g1"]);
        assert_eq!(
            ids(&app.send("GET", SCRIPTS, Some(&foreign), None).await),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(&app.send("GET", DEVICES, Some(&foreign), None).await),
            Vec::<String>::new()
        );
        app.send("GET", &format!("{SCRIPTS}/{a}"), Some(&foreign), None)
            .await
            .assert_error(404, "ResourceNotFound", "");
        app.send("GET", &own, Some(&foreign), None)
            .await
            .assert_error(404, "ResourceNotFound", "");
    }
);

// The run summary aggregates every device's states; a device token may not read it directly
// (403), so it must not get it through `$expand` either.
both!(device_tokens_cannot_expand_run_summary, |app| {
    let a = app.script("A").await;
    assign(
        &app,
        &a,
        &[json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"})],
    )
    .await;
    app.script("unassigned").await;
    let d1 = app.device("PC-1").await;
    let d2 = app.device("PC-2").await;
    let state = app.run_state(&a, &d2, r#""detectionState":"fail""#).await;
    assert_eq!(state.status, 201, "{}", state.text);
    let token = app.mint_device("tenant-a", &d1, &[]);
    let t = Some(token.as_str());
    app.send("GET", &format!("{SCRIPTS}/{a}/runSummary"), t, None)
        .await
        .assert_error(403, "Forbidden", "device token");
    // Counts are no side channel: forbidden, or only what the device can see.
    let count = app.send("GET", &format!("{SCRIPTS}/$count"), t, None).await;
    assert!(
        count.status == 403 || (count.status == 200 && count.text == "1"),
        "{} {}",
        count.status,
        count.text
    );
    // The run summary aggregates every device's states: not reachable through $expand either.
    let mut leaks = Vec::new();
    for path in [
        format!("{SCRIPTS}/{a}?$expand=runSummary"),
        format!("{SCRIPTS}?$expand=runSummary"),
        format!("{SCRIPTS}/{a}?$expand=runSummary($select=issueDetectedDeviceCount)"),
    ] {
        let reply = app.send("GET", &path, t, None).await;
        if reply.status < 400 || reply.text.contains("issueDetectedDeviceCount") {
            leaks.push(format!("GET {path} -> {} {}", reply.status, reply.text));
        }
    }
    assert!(
        leaks.is_empty(),
        "a device token read runSummary through $expand:\n{}",
        leaks.join("\n")
    );
});
