//! Tenant isolation through nextLink, `$batch` and `/$count`: another tenant's rows are
//! indistinguishable from missing ones.

use super::*;

both!(tenant_isolation_through_next_link_batch_and_count, |app| {
    let script = app.script(SECRET_NAME).await;
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(app.device(&format!("secret-pc-{i}")).await);
    }
    let state = app.run_state(&script, &devices[0], "").await;
    assert_eq!(state.status, 201, "{}", state.text);
    let state_id = state.json["id"].as_str().unwrap().to_owned();
    let b = app.mint("tenant-b", WRITE_SCOPES, &[]);

    let first = app.get(&format!("{DEVICES}?$top=1")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let next = first.json["@odata.nextLink"]
        .as_str()
        .expect("a nextLink")
        .to_owned();
    // Tenant A can follow it; tenant B cannot, and sees none of A's rows.
    let own = app.get(&next).await;
    assert_eq!(own.status, 200, "{}", own.text);
    let reply = app.send("GET", &next, Some(&b), None).await;
    reply.assert_error(400, "BadRequest", "$skiptoken");
    assert!(!reply.text.contains("secret-pc"), "{}", reply.text);
    // Also when tenant B has rows of its own to page through.
    for i in 0..2 {
        let r = app
            .send(
                "POST",
                DEVICES,
                Some(&b),
                Some(&format!(r#"{{"deviceName":"b-pc-{i}"}}"#)),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let reply = app.send("GET", &next, Some(&b), None).await;
    reply.assert_error(400, "BadRequest", "$skiptoken");
    assert!(!reply.text.contains("secret-pc"), "{}", reply.text);
    // Tenant A's token on a script list with the device list's token: a different query.
    let token = next
        .split("$skiptoken=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let reply = app
        .get(&format!("{SCRIPTS}?$top=1&$skiptoken={token}"))
        .await;
    reply.assert_error(400, "BadRequest", "$skiptoken");

    // $batch of GETs of A's ids.
    let urls = [
        format!("/deviceManagement/deviceHealthScripts/{script}"),
        format!("/deviceManagement/deviceHealthScripts('{script}')/assignments"),
        format!("/deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
        format!("/deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{state_id}"),
        format!("/deviceManagement/deviceHealthScripts/{script}/runSummary"),
        format!("/deviceManagement/managedDevices/{}", devices[0]),
        format!("/deviceManagement/managedDevices('{}')", devices[1]),
        format!(
            "/deviceManagement/managedDevices/{}/pendingOnDemandRemediations",
            devices[2]
        ),
    ];
    let requests: Vec<Value> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| json!({"id": i.to_string(), "method": "GET", "url": url}))
        .collect();
    let reply = app
        .send(
            "POST",
            "$batch",
            Some(&b),
            Some(&json!({"requests": requests}).to_string()),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let responses = reply.json["responses"].as_array().unwrap();
    assert_eq!(responses.len(), urls.len());
    for r in responses {
        assert_eq!(
            r["status"],
            404,
            "{}: {}",
            urls[r["id"].as_str().unwrap().parse::<usize>().unwrap()],
            r
        );
        assert_eq!(r["body"]["error"]["code"], "ResourceNotFound", "{r}");
    }
    assert!(
        !reply.text.contains(SECRET_NAME) && !reply.text.contains("secret-pc"),
        "{}",
        reply.text
    );

    // /$count.
    assert_eq!(app.get(&format!("{DEVICES}/$count")).await.text, "3");
    assert_eq!(
        app.send("GET", &format!("{DEVICES}/$count"), Some(&b), None)
            .await
            .text,
        "2"
    );
    assert_eq!(app.get(&format!("{SCRIPTS}/$count")).await.text, "1");
    assert_eq!(script_count(&app, &b).await, "0");
    let reply = app
        .send(
            "GET",
            &format!("{DEVICES}/$count?$filter=startswith(deviceName,'secret')"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.text, "0", "{}", reply.text);
    let reply = app
        .send(
            "GET",
            &format!("{SCRIPTS}/{script}/deviceRunStates/$count"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
});
