//! The binary's command line, run as child processes: `remediate token` mints tokens the server
//! accepts (scopes, roles, app id, device and groups, lifetime) and refuses incomplete requests;
//! `remediate serve` takes its settings from `remediate.toml`, the `REMEDIATE_*` environment and
//! its flags, in that order of precedence. (`recount --check` runs in the tests that check
//! counters, through `TestApp::recount_check`.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{Backend, TestApp};

const SCRIPTS: &str = "deviceManagement/deviceHealthScripts";

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_remediate"));
    command.env("REMEDIATE_LOG", "warn");
    command
}

/// `remediate token --data-dir <app's> <args>`: (exit success, stdout, stderr).
fn token(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = binary()
        .arg("token")
        .arg("--data-dir")
        .arg(&app.data_dir)
        .args(args)
        .output()
        .expect("run remediate token");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn the_token_command_mints_tokens_the_server_accepts() {
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    // A delegated read scope: reads, no writes.
    let (ok, reader, stderr) = token(
        &app,
        &[
            "--tenant",
            "tenant-a",
            "--scope",
            "DeviceManagementScripts.Read.All",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        app.send("GET", SCRIPTS, Some(&reader), None).await.status,
        200
    );
    let body = r#"{"displayName":"cli","detectionScriptContent":"ZWNobyAx"}"#;
    app.send("POST", SCRIPTS, Some(&reader), Some(body))
        .await
        .assert_error(403, "Forbidden", "");
    let c = claims(&reader);
    assert_eq!(c["tid"], "tenant-a");
    assert_eq!(c["scp"], "DeviceManagementScripts.Read.All");
    assert_eq!(c["appid"], "remediate-cli");
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        3600
    );

    // An application role, another app id and a lifetime with a unit.
    let (ok, writer, stderr) = token(
        &app,
        &[
            "--tenant",
            "tenant-a",
            "--role",
            "DeviceManagementScripts.ReadWrite.All",
            "--app-id",
            "other-app",
            "--expires-in",
            "90m",
        ],
    );
    assert!(ok, "{stderr}");
    let created = app.send("POST", SCRIPTS, Some(&writer), Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let c = claims(&writer);
    assert_eq!(c["roles"], json!(["DeviceManagementScripts.ReadWrite.All"]));
    assert_eq!(c["appid"], "other-app");
    assert_eq!(
        c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
        5400
    );

    // A device agent's token with a group: sees the script assigned to its group.
    let script = created.json["id"].as_str().unwrap().to_owned();
    let assign = json!({"deviceHealthScriptAssignments": [{"target": {
        "@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1"}}]});
    let reply = app
        .send(
            "POST",
            &format!("{SCRIPTS}/{script}/assign"),
            Some(&writer),
            Some(&assign.to_string()),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let (ok, device, stderr) = token(
        &app,
        &["--tenant", "tenant-a", "--device", "pc-1", "--group", "g1"],
    );
    assert!(ok, "{stderr}");
    let c = claims(&device);
    assert_eq!(c["deviceid"], "pc-1");
    assert_eq!(c["groups"], json!(["g1"]));
    let seen = app.send("GET", SCRIPTS, Some(&device), None).await;
    assert_eq!(seen.status, 200, "{}", seen.text);
    assert_eq!(
        seen.json["value"][0]["id"],
        script.as_str(),
        "{}",
        seen.text
    );

    // Incomplete requests are refused with a message, and print no token.
    for (args, needle) in [
        (
            vec!["--tenant", " ", "--scope", "x"],
            "--tenant must not be empty",
        ),
        (
            vec!["--tenant", "tenant-a"],
            "give at least one --scope or --role",
        ),
        (
            vec!["--tenant", "tenant-a", "--scope", "x", "--expires-in", "7y"],
            "unknown unit",
        ),
    ] {
        let (ok, stdout, stderr) = token(&app, &args);
        assert!(!ok, "{args:?} succeeded: {stdout}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// `remediate serve` reads `--config FILE`, then the environment, then flags (each overriding
/// the one before); the in-process harness resolves flags through the same code.
#[tokio::test]
async fn serve_takes_the_file_then_the_environment_then_the_flags() {
    let data_dir = std::env::temp_dir().join(format!("remediate-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let file = data_dir.join("remediate.toml");
    std::fs::write(
        &file,
        "max_page_size = 7\nmax_batch_requests = 5\nmax_uri_bytes = 600\n",
    )
    .unwrap();
    let mut child = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .arg("--config")
        .arg(&file)
        .args(["--max-page-size", "2"])
        .env("REMEDIATE_MAX_PAGE_SIZE", "3")
        .env("REMEDIATE_MAX_BATCH_REQUESTS", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start remediate serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(address) = line.strip_prefix("listening on ") {
            break format!("{address}/beta");
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let token = remediate::mint_token(
        &data_dir,
        &remediate::TokenRequest {
            tenant: "tenant-a".into(),
            scopes: crate::harness::WRITE_SCOPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            expires_in: 600,
            ..remediate::TokenRequest::default()
        },
    )
    .unwrap();
    let client = reqwest::Client::new();
    for i in 0..4 {
        let reply = client
            .post(format!("{base}/deviceManagement/managedDevices"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(format!(r#"{{"deviceName":"PC-{i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status().as_u16(), 201);
    }
    // The flag (2) beats the environment (3) and the file (7).
    let page: Value = client
        .get(format!("{base}/deviceManagement/managedDevices?$top=10"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["value"].as_array().unwrap().len(), 2, "{page}");
    // The environment (3) beats the file (5).
    let requests: Vec<Value> = (0..4)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/deviceManagement/managedDevices"}))
        .collect();
    let batch: Value = client
        .post(format!("{base}/$batch"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({ "requests": requests }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = batch["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("at most 3"), "{batch}");
    // The file alone (600).
    let long = format!(
        "{base}/deviceManagement/managedDevices?$filter=deviceName eq '{}'",
        "a".repeat(700)
    );
    let reply = client.get(long).bearer_auth(&token).send().await.unwrap();
    assert_eq!(reply.status().as_u16(), 414);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data_dir);
}
