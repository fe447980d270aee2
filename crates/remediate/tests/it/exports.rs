//! Graph's export jobs (`deviceManagement/reports/exportJobs`, `docs/exports.md`): create (201,
//! `<reportName>_<guid>`, `notStarted`), the background run to `completed`, the zip fetched
//! without a token through the signed link, its CSV read back with an RFC 4180 parser (column
//! order, values, outputs holding quotes, commas and line breaks), `select`, the filter, the
//! `json` format, the policy report against `runSummary`, refused links, tenant isolation,
//! permissions, `/v1.0`, and jobs left unfinished by a stopped server run again after a restart.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::both;
use crate::harness::{Reply, TestApp};

const JOBS: &str = "deviceManagement/reports/exportJobs";
const DEVICE_REPORT: &str = "DeviceRunStatesByProactiveRemediation";
const POLICY_REPORT: &str = "PolicyRunStatesByProactiveRemediation";

/// The columns of the device report without `select`, in their documented order.
const DEVICE_COLUMNS: [&str; 29] = [
    "PolicyId",
    "DeviceId",
    "UserId",
    "InternalVersion",
    "ModifiedTime",
    "PostRemediationDetectionScriptError",
    "PostRemediationDetectionScriptOutput",
    "PreRemediationDetectionScriptError",
    "PreRemediationDetectionScriptOutput",
    "RemediationScriptErrorDetails",
    "RemediationStatus",
    "DeviceName",
    "OSVersion",
    "UPN",
    "UserEmail",
    "UserName",
    "DetectionStatus",
    "UniqueKustoKey",
    "DetectionScriptStatus",
    "RemediationScriptStatus",
    "DisplayName",
    "FilterIdsCSV",
    "JoinType",
    "LastAgentUpdateTime",
    "Model",
    "NextExecutionDateTime",
    "OSDescription",
    "PrimaryUser",
    "RemediationScriptOutputDetails",
];

/// Script output that needs every kind of CSV quoting.
const TRICKY: &str = "line \"one\", two\r\nthree\nfour,\"\" end ";

/// One script with three devices' run states: no issue, issue fixed (with [`TRICKY`] output),
/// and a detection error. Returns (script, [device ids]).
async fn seed(app: &TestApp, token: &str, name: &str) -> (String, Vec<String>) {
    let script = app
        .send(
            "POST",
            "deviceManagement/deviceHealthScripts",
            Some(token),
            Some(&json!({"displayName": name, "detectionScriptContent": "ZWNobyAx"}).to_string()),
        )
        .await;
    assert_eq!(script.status, 201, "{}", script.text);
    let script = script.json["id"].as_str().unwrap().to_owned();
    let states = [
        (
            "success",
            "unknown",
            json!({"preRemediationDetectionScriptOutput": "all good"}),
        ),
        (
            "fail",
            "success",
            json!({"preRemediationDetectionScriptOutput": TRICKY,
                   "remediationScriptError": "warn, \"x\"",
                   "postRemediationDetectionScriptOutput": "fixed\n"}),
        ),
        (
            "scriptError",
            "skipped",
            json!({"preRemediationDetectionScriptError": "boom"}),
        ),
    ];
    let mut devices = Vec::new();
    for (i, (detection, remediation, outputs)) in states.into_iter().enumerate() {
        let device = app
            .send(
                "POST",
                "deviceManagement/managedDevices",
                Some(token),
                Some(
                    &json!({"deviceName": format!("{name}-PC{i}"), "osVersion": "10.0.22631",
                            "userPrincipalName": format!("user{i}@contoso.com"), "model": "Surface, \"Pro\"",
                            "operatingSystem": "Windows", "joinType": "azureADJoined"})
                    .to_string(),
                ),
            )
            .await;
        assert_eq!(device.status, 201, "{}", device.text);
        let device = device.json["id"].as_str().unwrap().to_owned();
        let mut body = json!({
            "managedDevice@odata.bind": format!("https://graph.microsoft.com/beta/deviceManagement/managedDevices('{device}')"),
            "detectionState": detection,
            "remediationState": remediation,
            "lastStateUpdateDateTime": "2025-03-04T05:06:07Z",
        });
        for (k, v) in outputs.as_object().unwrap() {
            body[k] = v.clone();
        }
        let state = app
            .send(
                "POST",
                &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
                Some(token),
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(state.status, 201, "{}", state.text);
        devices.push(device);
    }
    (script, devices)
}

async fn create(app: &TestApp, body: Value) -> Reply {
    app.post(JOBS, &body.to_string()).await
}

/// Create a job, expecting 201, and return its id.
async fn created(app: &TestApp, body: Value) -> String {
    let reply = create(app, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json["id"].as_str().unwrap().to_owned()
}

/// Poll the job (as clients do) until it is completed or failed.
async fn finished_with(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply = app
            .send("GET", &format!("{JOBS}/{id}"), Some(token), None)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        match reply.json["status"].as_str().unwrap() {
            "completed" | "failed" => return reply.json,
            "notStarted" | "inProgress" => {}
            other => panic!("unexpected status {other}: {}", reply.text),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not finish: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn finished(app: &TestApp, id: &str) -> Value {
    finished_with(app, &app.token.clone(), id).await
}

/// GET a download link without a token: (status, body).
async fn fetch(app: &TestApp, url: &str) -> (u16, Vec<u8>, Value) {
    let response = app.client.get(url).send().await.expect("download");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap().to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, bytes, json)
}

/// The one entry of the zip, which must be named `name`.
pub(crate) fn unzip(bytes: &[u8], name: &str) -> String {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    assert_eq!(archive.len(), 1);
    let mut entry = archive.by_index(0).unwrap();
    assert_eq!(entry.name().unwrap(), name);
    assert_eq!(entry.compression(), zip::CompressionMethod::Deflated);
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    text
}

/// A strict RFC 4180 reader: records end in CRLF, quoted fields may hold anything (`""` is a
/// quote), an unquoted field holds no quote, CR or LF.
pub(crate) fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                assert!(
                    field.is_empty() && !was_quoted,
                    "a quote inside an unquoted field"
                );
                quoted = true;
                was_quoted = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF outside quotes");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                was_quoted = false;
            }
            '\n' => panic!("LF without CR outside quotes"),
            c => {
                assert!(!was_quoted, "text after a closing quote");
                field.push(c);
            }
        }
    }
    assert!(!quoted, "an unterminated quoted field");
    assert!(
        field.is_empty() && row.is_empty(),
        "the last record has no CRLF"
    );
    rows
}

/// The CSV of a completed job (fetched through its link), as header and records by column.
async fn csv_of(app: &TestApp, job: &Value) -> (Vec<String>, Vec<HashMap<String, String>>) {
    assert_eq!(job["status"], "completed", "{job}");
    let id = job["id"].as_str().unwrap();
    let (status, bytes, _) = fetch(app, job["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let rows = parse_csv(&unzip(&bytes, &format!("{id}.csv")));
    let header = rows[0].clone();
    let records = rows[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len());
            header.iter().cloned().zip(r.iter().cloned()).collect()
        })
        .collect();
    (header, records)
}

both!(a_device_report_is_created_run_and_downloaded, |app| {
    let token = app.token.clone();
    let (script, devices) = seed(&app, &token, "Fix").await;
    let reply = create(
        &app,
        json!({"reportName": DEVICE_REPORT, "filter": format!("PolicyId eq '{script}'"),
               "localizationType": "LocalizedValuesAsAdditionalColumn", "format": "csv"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.json["id"].as_str().unwrap().to_owned();
    let guid = id.strip_prefix(&format!("{DEVICE_REPORT}_")).unwrap();
    assert!(uuid::Uuid::parse_str(guid).is_ok(), "{id}");
    assert_eq!(reply.json["status"], "notStarted");
    assert_eq!(reply.json["url"], Value::Null);
    assert_eq!(reply.json["format"], "csv");
    assert_eq!(
        reply.json["localizationType"],
        "localizedValuesAsAdditionalColumn"
    );
    assert_eq!(reply.json["expirationDateTime"], "0001-01-01T00:00:00Z");
    assert!(reply.json["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("/$metadata#deviceManagement/reports/exportJobs/$entity"));
    assert!(reply
        .header("location")
        .ends_with(&format!("/beta/{JOBS}/{id}")));

    let job = finished(&app, &id).await;
    let url = job["url"].as_str().unwrap();
    let origin = app.base.trim_end_matches("/beta");
    assert!(
        url.starts_with(&format!("{origin}/exports/{id}.zip?")),
        "{url}"
    );
    // The link expires about 6 hours after the job completed.
    let expires = job["expirationDateTime"].as_str().unwrap();
    let requested = job["requestDateTime"].as_str().unwrap();
    let hours = |t: &str| {
        let (date, time) = t.split_once('T').unwrap();
        let day: f64 = date[8..10].parse().unwrap();
        let h: f64 = time[0..2].parse().unwrap();
        let m: f64 = time[3..5].parse().unwrap();
        day * 24.0 + h + m / 60.0
    };
    let lifetime = hours(expires) - hours(requested);
    assert!((5.9..=6.1).contains(&lifetime), "{requested} → {expires}");

    let (header, records) = csv_of(&app, &job).await;
    assert_eq!(header, DEVICE_COLUMNS);
    assert_eq!(records.len(), 3);
    // Rows come in run state id order; find each device's.
    let by_device: HashMap<&str, &HashMap<String, String>> = records
        .iter()
        .map(|r| (r["DeviceId"].as_str(), r))
        .collect();
    let fixed = by_device[devices[1].as_str()];
    assert_eq!(fixed["PreRemediationDetectionScriptOutput"], TRICKY);
    assert_eq!(fixed["RemediationScriptErrorDetails"], "warn, \"x\"");
    assert_eq!(fixed["PostRemediationDetectionScriptOutput"], "fixed\n");
    assert_eq!(fixed["PolicyId"], script);
    assert_eq!(fixed["DisplayName"], "Fix");
    assert_eq!(fixed["DetectionStatus"], "2");
    assert_eq!(fixed["RemediationStatus"], "2");
    assert_eq!(fixed["DetectionScriptStatus"], "With issues");
    assert_eq!(fixed["RemediationScriptStatus"], "Issue fixed");
    assert_eq!(fixed["DeviceName"], "Fix-PC1");
    assert_eq!(fixed["UPN"], "user1@contoso.com");
    assert_eq!(fixed["Model"], "Surface, \"Pro\"");
    assert_eq!(fixed["OSVersion"], "10.0.22631");
    assert_eq!(fixed["OSDescription"], "Windows");
    assert_eq!(fixed["JoinType"], "azureADJoined");
    assert_eq!(fixed["ModifiedTime"], "2025-03-04T05:06:07Z");
    assert_eq!(fixed["UniqueKustoKey"], format!("{script}:{}", devices[1]));
    assert_eq!(fixed["InternalVersion"], "1");
    let ok = by_device[devices[0].as_str()];
    assert_eq!(ok["DetectionStatus"], "1");
    assert_eq!(ok["DetectionScriptStatus"], "Without issues");
    assert_eq!(ok["RemediationStatus"], "0");
    let error = by_device[devices[2].as_str()];
    assert_eq!(error["DetectionStatus"], "3");
    assert_eq!(error["PreRemediationDetectionScriptError"], "boom");
    assert_eq!(error["RemediationScriptStatus"], "Not run");

    // The list shows the job; DELETE removes it and its file.
    let list = app.get(JOBS).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(list.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["id"] == id.as_str() && j["status"] == "completed"));
    assert_eq!(app.delete(&format!("{JOBS}('{id}')")).await.status, 204);
    assert_eq!(app.get(&format!("{JOBS}/{id}")).await.status, 404);
    let (status, _, body) = fetch(&app, url).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not available"));
});

both!(
    select_chooses_and_orders_columns_and_the_filter_narrows_rows,
    |app| {
        let token = app.token.clone();
        let (script, devices) = seed(&app, &token, "Sel").await;
        let job = finished(
        &app,
        &created(
            &app,
            json!({"reportName": DEVICE_REPORT,
                   "filter": format!("(PolicyId eq '{script}') and (DetectionStatus eq '2')"),
                   "select": ["DeviceName", "detectionstatus", "PolicyId", "PreRemediationDetectionScriptOutput"]}),
        )
        .await,
    )
    .await;
        assert_eq!(
            job["select"],
            json!([
                "DeviceName",
                "DetectionStatus",
                "PolicyId",
                "PreRemediationDetectionScriptOutput"
            ])
        );
        let (header, records) = csv_of(&app, &job).await;
        assert_eq!(
            header,
            [
                "DeviceName",
                "DetectionStatus",
                "PolicyId",
                "PreRemediationDetectionScriptOutput"
            ]
        );
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["DeviceName"], "Sel-PC1");
        assert_eq!(records[0]["PreRemediationDetectionScriptOutput"], TRICKY);

        // Several values with `in`, names of Graph's members, and the remediation state.
        let job = finished(
        &app,
        &created(
            &app,
            json!({"reportName": DEVICE_REPORT, "select": ["DeviceId"],
                   "filter": format!("PolicyId eq '{script}' and DetectionStatus in ('success', 3)")}),
        )
        .await,
    )
    .await;
        let (_, records) = csv_of(&app, &job).await;
        let mut ids: Vec<&str> = records.iter().map(|r| r["DeviceId"].as_str()).collect();
        ids.sort_unstable();
        let mut expected = vec![devices[0].as_str(), devices[2].as_str()];
        expected.sort_unstable();
        assert_eq!(ids, expected);
        let job = finished(
            &app,
            &created(
                &app,
                json!({"reportName": DEVICE_REPORT, "select": ["DeviceId"],
                   "filter": format!("PolicyId eq '{script}' and RemediationStatus eq 1"),
                   "localizationType": "replaceLocalizableValues"}),
            )
            .await,
        )
        .await;
        let (_, records) = csv_of(&app, &job).await;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["DeviceId"], devices[2]);
    }
);

both!(bad_requests_name_what_is_wrong, |app| {
    let cases = [
        (
            json!({"reportName": DEVICE_REPORT}),
            "needs the script in its filter: PolicyId eq",
        ),
        (
            json!({"reportName": DEVICE_REPORT, "filter": "DetectionStatus eq 1"}),
            "PolicyId eq",
        ),
        (
            json!({"reportName": "DeviceStatusesNope", "filter": "PolicyId eq 'x'"}),
            "The report 'DeviceStatusesNope' is not supported",
        ),
        (
            json!({"filter": "PolicyId eq 'x'"}),
            "'reportName' is required",
        ),
        (
            json!({"reportName": DEVICE_REPORT, "filter": "PolicyId eq 'x'", "select": ["DeviceName", "Nope"]}),
            "'select' names 'Nope', which is not a column",
        ),
        (
            json!({"reportName": DEVICE_REPORT, "filter": "PolicyId eq 'x'", "format": "pdf"}),
            "'pdf' is not supported",
        ),
        (
            json!({"reportName": DEVICE_REPORT, "filter": "PolicyId eq 'x'", "format": "xlsx"}),
            "not a member of microsoft.graph.deviceManagementReportFileFormat",
        ),
        (
            json!({"reportName": DEVICE_REPORT, "filter": "PolicyId eq 'x' or PolicyId eq 'y'"}),
            "'or' at position 16 is not supported",
        ),
        (
            json!({"reportName": DEVICE_REPORT, "filter": "PolicyId eq 'x' and DetectionStatus eq 7"}),
            "not a value of DetectionStatus",
        ),
        (
            json!({"reportName": DEVICE_REPORT, "filter": "PolicyId eq 'x", "select": []}),
            "no closing quote",
        ),
        (
            json!({"reportName": POLICY_REPORT, "snapshotId": "DeviceRunStates_00000000-0000-0000-0000-000000000000"}),
            "'snapshotId'",
        ),
        (
            json!({"reportName": POLICY_REPORT, "status": "completed", "nope": 1}),
            "nope",
        ),
        (json!({"reportName": 7}), "'reportName' must be a string"),
        (
            json!({"reportName": POLICY_REPORT, "select": "DeviceName"}),
            "'select' must be an array",
        ),
        (json!([1, 2]), "JSON object"),
    ];
    for (body, needle) in cases {
        let reply = create(&app, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        let message = reply.json["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(needle),
            "{body}: {message:?} should contain {needle:?}"
        );
    }
    // No job was created by any of them.
    assert_eq!(app.get(&format!("{JOBS}/$count")).await.text, "0");
    // A job cannot be changed once created.
    let id = created(&app, json!({"reportName": POLICY_REPORT})).await;
    let reply = app
        .patch(&format!("{JOBS}/{id}"), r#"{"filter":"x"}"#)
        .await;
    reply.assert_error(405, "MethodNotAllowed", "PATCH");
    assert_eq!(reply.header("allow"), "GET, DELETE");
});

both!(links_refuse_changes_expiry_and_other_tenants, |app| {
    let mut app = app;
    let token = app.token.clone();
    let (script, _) = seed(&app, &token, "Link").await;
    let id = created(
        &app,
        json!({"reportName": DEVICE_REPORT, "filter": format!("PolicyId eq '{script}'")}),
    )
    .await;
    let job = finished(&app, &id).await;
    let url = job["url"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&app, &url).await.0, 200);
    let (path, query) = url.split_once('?').unwrap();
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    let with = |name: &str, value: &str| {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", if *k == name { value } else { v }))
            .collect();
        format!("{path}?{}", query.join("&"))
    };
    let se: i64 = params
        .iter()
        .find(|(k, _)| *k == "se")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let sig = params.iter().find(|(k, _)| *k == "sig").unwrap().1;
    let mut forged = sig.to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for tampered in [
        with("sig", &forged),
        with("se", &(se + 3600).to_string()),
        with("tenant", "tenant-b"),
        format!("{path}?tenant=tenant-a"),
        url.replace(
            &format!("{id}.zip"),
            &format!("{DEVICE_REPORT}_00000000-0000-0000-0000-000000000000.zip"),
        ),
    ] {
        let (status, _, body) = fetch(&app, &tampered).await;
        assert_eq!(status, 403, "{tampered}: {body}");
        assert_eq!(body["error"]["code"], "Forbidden", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("download link"), "{message}");
    }
    let post = app.client.post(&url).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);

    // Another tenant sees no job, and its export of this tenant's script has no rows.
    let other = app.mint("tenant-b", crate::harness::WRITE_SCOPES, &[]);
    let reply = app
        .send("GET", &format!("{JOBS}/{id}"), Some(&other), None)
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
    let theirs = app
        .send(
            "POST",
            JOBS,
            Some(&other),
            Some(
                &json!({"reportName": DEVICE_REPORT, "filter": format!("PolicyId eq '{script}'")})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    let theirs = finished_with(&app, &other, theirs.json["id"].as_str().unwrap()).await;
    let (header, records) = csv_of(&app, &theirs).await;
    assert_eq!(header.len(), 29);
    assert!(records.is_empty());
    let theirs = app
        .send(
            "POST",
            JOBS,
            Some(&other),
            Some(&json!({"reportName": POLICY_REPORT}).to_string()),
        )
        .await;
    let theirs = finished_with(&app, &other, theirs.json["id"].as_str().unwrap()).await;
    assert!(csv_of(&app, &theirs).await.1.is_empty());

    // An expired link is refused.
    app.stop();
    app.args = vec!["--export-link-lifetime-secs".into(), "1".into()];
    app.spawn();
    let id = created(&app, json!({"reportName": POLICY_REPORT})).await;
    let job = finished(&app, &id).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, body) = fetch(&app, job["url"].as_str().unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("The download link expired at"));
});

both!(the_json_format_holds_the_same_rows, |app| {
    let token = app.token.clone();
    let (script, _) = seed(&app, &token, "Json").await;
    let id = created(
        &app,
        json!({"reportName": DEVICE_REPORT, "filter": format!("PolicyId eq '{script}'"),
               "format": "json", "select": ["PolicyId", "DetectionStatus", "PreRemediationDetectionScriptOutput", "ModifiedTime"]}),
    )
    .await;
    let job = finished(&app, &id).await;
    assert_eq!(job["format"], "json");
    let (status, bytes, _) = fetch(&app, job["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&unzip(&bytes, &format!("{id}.json"))).unwrap();
    assert_eq!(
        document["Schema"],
        json!([
            {"Column": "PolicyId", "PropertyType": "String"},
            {"Column": "DetectionStatus", "PropertyType": "Int32"},
            {"Column": "PreRemediationDetectionScriptOutput", "PropertyType": "String"},
            {"Column": "ModifiedTime", "PropertyType": "DateTime"},
        ])
    );
    assert_eq!(document["TotalRowCount"], 3);
    let values = document["Values"].as_array().unwrap();
    assert_eq!(values.len(), 3);
    let tricky = values.iter().find(|v| v[1] == 2).unwrap();
    assert_eq!(tricky, &json!([script, 2, TRICKY, "2025-03-04T05:06:07Z"]));
});

both!(
    the_policy_report_covers_every_script_and_agrees_with_run_summary,
    |app| {
        let token = app.token.clone();
        let (first, _) = seed(&app, &token, "One").await;
        let (second, _) = seed(&app, &token, "Two").await;
        // A fourth state in the second script: pending.
        let device = app.device("Two-extra").await;
        let reply = app
            .run_state(&second, &device, r#""detectionState":"pending""#)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        let job = finished(
            &app,
            &created(&app, json!({"reportName": POLICY_REPORT})).await,
        )
        .await;
        let (header, records) = csv_of(&app, &job).await;
        assert!(header.contains(&"PolicyName".to_owned()));
        assert!(!header.contains(&"DisplayName".to_owned()));
        assert_eq!(records.len(), 7);
        for script in [&first, &second] {
            let rows: Vec<&HashMap<String, String>> = records
                .iter()
                .filter(|r| &r["PolicyId"] == script)
                .collect();
            let count = |f: &dyn Fn(i64, i64) -> bool| {
                rows.iter()
                    .filter(|r| {
                        f(
                            r["DetectionStatus"].parse().unwrap(),
                            r["RemediationStatus"].parse().unwrap(),
                        )
                    })
                    .count() as i64
            };
            let summary = app
                .get(&format!(
                    "deviceManagement/deviceHealthScripts/{script}/runSummary"
                ))
                .await
                .json;
            for (name, n) in [
                (
                    "noIssueDetectedDeviceCount",
                    count(&|d, r| d == 1 && r != 2),
                ),
                ("issueDetectedDeviceCount", count(&|d, _| d == 2)),
                ("detectionScriptErrorDeviceCount", count(&|d, _| d == 3)),
                ("detectionScriptPendingDeviceCount", count(&|d, _| d == 4)),
                (
                    "detectionScriptNotApplicableDeviceCount",
                    count(&|d, _| d == 5),
                ),
                ("issueRemediatedDeviceCount", count(&|_, r| r == 2)),
                ("remediationSkippedDeviceCount", count(&|_, r| r == 1)),
                ("remediationScriptErrorDeviceCount", count(&|_, r| r == 4)),
            ] {
                assert_eq!(summary[name], n, "{script} {name}: {summary}");
            }
            let name = if script == &first { "One" } else { "Two" };
            assert!(rows.iter().all(|r| r["PolicyName"] == name));
        }
        // Rows come script by script.
        let order: Vec<&str> = records.iter().map(|r| r["PolicyId"].as_str()).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted);
    }
);

both!(permissions_device_tokens_and_v1, |app| {
    let body = json!({"reportName": POLICY_REPORT}).to_string();
    let reader = app.mint("tenant-a", &["DeviceManagementConfiguration.Read.All"], &[]);
    let reply = app.send("POST", JOBS, Some(&reader), Some(&body)).await;
    reply.assert_error(
        403,
        "Forbidden",
        "DeviceManagementConfiguration.ReadWrite.All",
    );
    assert_eq!(app.send("GET", JOBS, Some(&reader), None).await.status, 200);
    let scripts_only = app.mint("tenant-a", &["DeviceManagementScripts.ReadWrite.All"], &[]);
    let reply = app.send("GET", JOBS, Some(&scripts_only), None).await;
    reply.assert_error(403, "Forbidden", "DeviceManagementConfiguration.Read.All");
    let writer = app.mint(
        "tenant-a",
        &["DeviceManagementManagedDevices.ReadWrite.All"],
        &[],
    );
    let reply = app.send("POST", JOBS, Some(&writer), Some(&body)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let device = app.device("PC-token").await;
    let device_token = app.mint_device("tenant-a", &device, &[]);
    for (method, body) in [("GET", None), ("POST", Some(body.as_str()))] {
        let reply = app.send(method, JOBS, Some(&device_token), body).await;
        assert_eq!(reply.status, 403, "{method}: {}", reply.text);
    }
    assert_eq!(app.send("GET", JOBS, None, None).await.status, 401);

    // /v1.0 serves export jobs (and only them).
    let v1 = app.base.replace("/beta", "/v1.0");
    let reply = app
        .send(
            "POST",
            &format!("{v1}/{JOBS}"),
            Some(&app.token.clone()),
            Some(&body),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(reply.json["@odata.context"]
        .as_str()
        .unwrap()
        .contains("/v1.0/$metadata#deviceManagement/reports/exportJobs/$entity"));
    let id = reply.json["id"].as_str().unwrap().to_owned();
    assert!(reply.header("location").contains("/v1.0/"));
    let reply = app
        .send(
            "GET",
            &format!("{v1}/{JOBS}('{id}')"),
            Some(&app.token.clone()),
            None,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let reply = app
        .send(
            "GET",
            &format!("{v1}/deviceManagement/deviceHealthScripts"),
            Some(&app.token.clone()),
            None,
        )
        .await;
    reply.assert_error(400, "BadRequest", "only export jobs");
    let metadata = app
        .send("GET", &format!("{v1}/$metadata"), None, None)
        .await;
    assert_eq!(metadata.status, 200);
    assert!(metadata.text.contains("deviceManagementExportJob"));
});

/// Put a job back as a stopped server may leave it: `status` 1 (notStarted) or 2 (inProgress
/// under a runner that beat its heartbeat last at `heartbeat`, in ticks).
async fn set_left_at(app: &TestApp, id: &str, status: i64, heartbeat: i64) {
    let sql = "UPDATE export_jobs SET \"status\" = $1, \"runner\" = 'dead', \"heartbeat\" = $3, \"url\" = NULL WHERE \"id\" = $2";
    match app.database_url() {
        None => {
            let conn = rusqlite::Connection::open(app.data_dir.join("remediate.db")).unwrap();
            let changed = conn
                .execute(
                    &sql.replace('$', "?"),
                    rusqlite::params![status, id, heartbeat],
                )
                .unwrap();
            assert_eq!(changed, 1);
        }
        Some(url) => {
            let conn = crate::harness::pg_connect(&url).await.unwrap();
            let done = conn
                .execute(sql, &[&status, &id, &heartbeat])
                .await
                .unwrap();
            assert_eq!(done, 1);
        }
    }
}

/// As [`set_left_at`], with a heartbeat long ago (a runner that died long ago).
async fn set_left(app: &TestApp, id: &str, status: i64) {
    set_left_at(app, id, status, 1).await;
}

both!(jobs_left_unfinished_run_again_after_a_restart, |app| {
    let mut app = app;
    let token = app.token.clone();
    let (script, _) = seed(&app, &token, "Again").await;
    let body = json!({"reportName": DEVICE_REPORT, "filter": format!("PolicyId eq '{script}'")});
    let waiting = created(&app, body.clone()).await;
    let running = created(&app, body).await;
    finished(&app, &waiting).await;
    finished(&app, &running).await;
    // The server comes back on its address: the links the jobs were created with lead there.
    let address = app
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/beta")
        .to_owned();
    app.stop();
    app.args = vec!["--listen".into(), address];
    set_left(&app, &waiting, 1).await;
    set_left(&app, &running, 2).await;
    app.spawn();
    for id in [&waiting, &running] {
        let job = finished(&app, id).await;
        let (_, records) = csv_of(&app, &job).await;
        assert_eq!(records.len(), 3, "{id}");
    }
});

both!(a_job_that_cannot_be_written_fails_and_says_why, |app| {
    // The exports folder cannot be made: a file stands where it would be.
    std::fs::write(app.data_dir.join("exports"), b"not a folder").unwrap();
    let id = created(&app, json!({"reportName": POLICY_REPORT})).await;
    let job = finished(&app, &id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["url"], Value::Null);
    let reason = job["status@remediate.reason"].as_str().unwrap_or("");
    assert!(reason.contains("creating"), "{job}");
    // Lists show the job without the reason.
    let list = app.get(JOBS).await;
    let listed = &list.json["value"][0];
    assert_eq!(listed["status"], "failed");
    assert!(listed.get("status@remediate.reason").is_none());
});

both!(
    a_job_of_a_killed_server_runs_again_once_its_heartbeat_is_stale,
    Process,
    |app| {
        let mut app = app;
        let token = app.token.clone();
        let (script, _) = seed(&app, &token, "Killed").await;
        let id = created(
            &app,
            json!({"reportName": DEVICE_REPORT, "filter": format!("PolicyId eq '{script}'")}),
        )
        .await;
        finished(&app, &id).await;
        let address = app
            .base
            .trim_start_matches("http://")
            .trim_end_matches("/beta")
            .to_owned();
        let pid = app.pid().unwrap();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        app.reap();
        // As the killed process left it: in progress, its heartbeat just now.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let ticks = (now.as_secs() as i64 + 62_135_596_800) * 10_000_000;
        set_left_at(&app, &id, 2, ticks).await;
        app.args = vec!["--listen".into(), address];
        let restarted = std::time::Instant::now();
        app.spawn();
        // Within the lease (10 s) nobody takes the job: its runner might still be alive.
        let job = app.get(&format!("{JOBS}/{id}")).await;
        assert_eq!(job.json["status"], "inProgress", "{}", job.text);
        let job = finished(&app, &id).await;
        assert!(
            restarted.elapsed() >= Duration::from_secs(5),
            "taken after {:?}",
            restarted.elapsed()
        );
        let (_, records) = csv_of(&app, &job).await;
        assert_eq!(records.len(), 3);
    }
);
