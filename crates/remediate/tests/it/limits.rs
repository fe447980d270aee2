//! Limits that protect the server, each with its status, and the optional Graph realism
//! (throttling, injected latency and failures).

use std::time::Duration;

use crate::harness::{Backend, TestApp};

async fn app_with(args: &[&str]) -> TestApp {
    let mut app = TestApp::start(Backend::Sqlite).await.unwrap();
    app.stop();
    app.args = args.iter().map(|s| (*s).to_owned()).collect();
    app.spawn();
    app
}

#[tokio::test]
async fn size_limits_answer_414_431_and_400() {
    let app = app_with(&[
        "--max-header-bytes",
        "4096",
        "--max-uri-bytes",
        "600",
        "--max-query-option-bytes",
        "100",
        "--max-filter-depth",
        "3",
    ])
    .await;
    let big = "x".repeat(5000);
    let reply = app
        .client
        .get(app.url("deviceManagement/managedDevices"))
        .bearer_auth(&app.token)
        .header("x-padding", big)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 431);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RequestHeaderFieldsTooLarge");
    let long = format!(
        "deviceManagement/managedDevices?$filter=deviceName eq '{}'",
        "a".repeat(700)
    );
    app.get(&long)
        .await
        .assert_error(414, "RequestUriTooLong", "limit of 600");
    let option = format!(
        "deviceManagement/managedDevices?$filter=deviceName eq '{}'",
        "a".repeat(120)
    );
    app.get(&option)
        .await
        .assert_error(400, "BadRequest", "$filter");
    app.get("deviceManagement/managedDevices?$filter=((((deviceName eq 'a'))))")
        .await
        .assert_error(400, "BadRequest", "$filter");
    assert_eq!(
        app.get("deviceManagement/managedDevices?$filter=((deviceName eq 'a'))")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn page_and_batch_sizes_are_configurable() {
    let app = app_with(&["--max-page-size", "2", "--max-batch-requests", "2"]).await;
    for i in 0..3 {
        app.device(&format!("PC-{i}")).await;
    }
    let page = app.get("deviceManagement/managedDevices?$top=10").await;
    assert_eq!(
        page.json["value"].as_array().unwrap().len(),
        2,
        "$top is capped"
    );
    assert!(page.json["@odata.nextLink"].is_string());
    let batch = serde_json::json!({"requests": (0..3).map(|i| serde_json::json!({"id": i.to_string(), "method": "GET", "url": "/deviceManagement/managedDevices"})).collect::<Vec<_>>()});
    app.post("$batch", &batch.to_string())
        .await
        .assert_error(400, "BadRequest", "at most 2");
}

#[tokio::test]
async fn slow_requests_time_out_with_504_and_overload_sheds_with_503() {
    let app = app_with(&[
        "--request-timeout-secs",
        "1",
        "--inject-latency-ms",
        "3000",
        "--chaos-seed",
        "7",
    ])
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(app.get("deviceManagement/managedDevices").await.status);
    }
    assert!(statuses.contains(&504), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let app = app_with(&["--max-in-flight", "1", "--inject-latency-ms", "400"]).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = app.url("deviceManagement/managedDevices");
        let token = app.token.clone();
        tasks.push(tokio::spawn(async move {
            let reply = client.get(url).bearer_auth(token).send().await.unwrap();
            (
                reply.status().as_u16(),
                reply.headers().get("retry-after").is_some(),
            )
        }));
    }
    let mut shed = 0;
    for task in tasks {
        let (status, retry_after) = task.await.unwrap();
        assert!(status == 200 || status == 503, "{status}");
        if status == 503 {
            assert!(retry_after);
            shed += 1;
        }
    }
    assert!(shed > 0, "some requests must be shed");
    assert_eq!(app.service("/healthz").await.status().as_u16(), 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let app = app_with(&["--max-connections", "2"]).await;
    let address = app
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/beta")
        .to_owned();
    let first = tokio::net::TcpStream::connect(&address).await.unwrap();
    let second = tokio::net::TcpStream::connect(&address).await.unwrap();
    let waiting = app
        .client
        .get(app.url("deviceManagement/managedDevices"))
        .bearer_auth(&app.token)
        .timeout(Duration::from_millis(800))
        .send()
        .await;
    assert!(
        waiting.is_err(),
        "a third connection is not served while two are open"
    );
    drop(first);
    drop(second);
    let served = app
        .client
        .get(app.url("deviceManagement/managedDevices"))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
}

#[tokio::test]
async fn throttling_follows_intune_limits_per_app_and_tenant() {
    let app = app_with(&["--throttle-window-secs", "10"]).await;
    let script = app.script("throttle").await;
    let path = format!("deviceManagement/deviceHealthScripts/{script}");
    // One app may write 200 times per window (the script create above was one).
    let mut throttled = None;
    for i in 0..200 {
        let reply = app
            .patch(&path, &format!(r#"{{"description":"{i}"}}"#))
            .await;
        if reply.status == 429 {
            throttled = Some((i, reply));
            break;
        }
        assert_eq!(reply.status, 200);
    }
    let (at, reply) = throttled.expect("the 201st write of one app is throttled");
    assert_eq!(at, 199);
    reply.assert_error(
        429,
        "TooManyRequests",
        "400 writes and 4000 requests per 10 seconds",
    );
    let wait: u64 = reply.header("retry-after").parse().unwrap();
    assert!((1..=10).contains(&wait), "{wait}");
    // The change was not applied, reads are still allowed, and another app has its own budget.
    assert_eq!(app.get(&path).await.json["description"], "198");
    let other = app.mint_request(remediate::TokenRequest {
        tenant: "tenant-a".into(),
        scopes: vec!["DeviceManagementScripts.ReadWrite.All".into()],
        app_id: Some("other-app".into()),
        ..remediate::TokenRequest::default()
    });
    assert_eq!(
        app.send(
            "PATCH",
            &path,
            Some(&other),
            Some(r#"{"description":"other"}"#)
        )
        .await
        .status,
        200
    );
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        app.patch(&path, r#"{"description":"after"}"#).await.status,
        200,
        "the window reset"
    );
}

#[tokio::test]
async fn injected_failures_change_nothing() {
    let app = app_with(&["--inject-error-rate", "1.0"]).await;
    let reply = app
        .post("deviceManagement/managedDevices", r#"{"deviceName":"x"}"#)
        .await;
    reply.assert_error(503, "ServiceUnavailable", "Injected");
    assert_eq!(reply.header("retry-after"), "1");
    assert_eq!(app.service("/readyz").await.status().as_u16(), 200);
}

// A read that runs past `--statement-timeout-ms` is stopped by the database (SQLite's progress
// handler, PostgreSQL's statement_timeout) and answered 504; the server keeps serving.
crate::both!(slow_reads_are_stopped_at_the_statement_timeout, |app| {
    let mut app = app;
    let script = app.script("slow").await;
    let collection = format!("/deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
    // 5,000 rows in 250 batches of 20, eight batches at a time (concurrent writes share commits).
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let (client, url, token, collection) = (
            app.client.clone(),
            app.url("$batch"),
            app.token.clone(),
            collection.clone(),
        );
        writers.spawn(async move {
            for chunk in (writer..250).step_by(8) {
                let requests: Vec<serde_json::Value> = (0..20)
                    .map(|i| {
                        serde_json::json!({
                            "id": (i + 1).to_string(), "method": "POST", "url": collection,
                            "headers": {"Content-Type": "application/json"},
                            "body": {"detectionState": "fail", "preRemediationDetectionScriptOutput": format!("row {chunk}-{i}")}
                        })
                    })
                    .collect();
                let reply = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(serde_json::json!({ "requests": requests }).to_string())
                    .send()
                    .await
                    .unwrap();
                let status = reply.status().as_u16();
                let text = reply.text().await.unwrap_or_default();
                assert_eq!(status, 200, "{text}");
                let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
                for inner in answer["responses"].as_array().unwrap() {
                    assert_eq!(inner["status"], 201, "{inner}");
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let count = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/deviceRunStates/$count"
        ))
        .await;
    assert_eq!(count.text, "5000");
    app.stop();
    app.args = vec!["--statement-timeout-ms".into(), "1".into()];
    app.spawn();
    let slow = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$count=true&$filter=contains(preRemediationDetectionScriptOutput,'zzz') or contains(preRemediationDetectionScriptError,'zzz')&$top=1000"
        ))
        .await;
    slow.assert_error(504, "RequestTimeout", "statement timeout");
    // The server is fine afterwards (and its database answers).
    let ready = app.service("/readyz").await;
    assert_eq!(ready.status().as_u16(), 200);
});
