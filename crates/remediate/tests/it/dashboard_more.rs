//! The dashboard beyond its first pages (`docs/dashboard.md`), through the real router on both
//! databases: the Export buttons (a script's device status with the page's filters, and
//! everything) make Graph export jobs whose CSV rows equal the API's rows for the same filter;
//! their job page, permissions, CSRF and tenant isolation.

use std::collections::{BTreeMap, BTreeSet};

use crate::both;
use crate::dashboard::{fleet, Browser, Page, OPERATOR, READ_ALL};
use crate::exports::{parse_csv, unzip};
use crate::harness::TestApp;

/// The records of a CSV by column name.
fn records(text: &str) -> Vec<BTreeMap<String, String>> {
    let rows = parse_csv(text);
    let (header, rows) = rows.split_first().expect("a header row");
    rows.iter()
        .map(|row| header.iter().cloned().zip(row.iter().cloned()).collect())
        .collect()
}

/// An attribute's value after `marker` (e.g. `id="export-download" href="`), unescaped.
fn attribute_after(page: &Page, marker: &str) -> Option<String> {
    let at = page.text.find(marker)?;
    let rest = &page.text[at + marker.len()..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// Open the job page until the job is completed (the runner works in the background); its
/// download link.
async fn completed_link(browser: &Browser<'_>, job_page: &str) -> String {
    for _ in 0..300 {
        let page = browser.get(job_page).await;
        assert_eq!(page.status, 200, "{}", page.text);
        if page.text.contains("data-status=\"completed\"") {
            assert!(!page.text.contains("id=\"export-refresh\""));
            return attribute_after(&page, "id=\"export-download\" href=\"")
                .expect("a download link");
        }
        assert!(
            !page.text.contains("data-status=\"failed\""),
            "{}",
            page.text
        );
        assert!(page.text.contains("id=\"export-refresh\""), "{}", page.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the export job {job_page} did not complete");
}

/// POST an Export form and follow it to the CSV's records: (job id, records).
async fn export(
    app: &TestApp,
    browser: &Browser<'_>,
    path: &str,
    form: &str,
) -> (String, Vec<BTreeMap<String, String>>) {
    let created = browser.post(path, form).await;
    assert_eq!(created.status, 303, "{}", created.text);
    let job_page = created.location().to_owned();
    let job = job_page
        .strip_prefix("/export-jobs/")
        .unwrap_or_else(|| panic!("sent to the job's page: {job_page}"))
        .to_owned();
    let link = completed_link(browser, &job_page).await;
    // The link needs no session and no token.
    let response = app.client.get(&link).send().await.expect("download");
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.unwrap();
    let text = unzip(&bytes, &format!("{job}.csv"));
    (job, records(&text))
}

/// The API's run states of `script` with this `$filter` (every page), by id, with their
/// device's name.
async fn api_rows(app: &TestApp, script: &str, filter: &str) -> BTreeMap<String, String> {
    let mut url = format!(
        "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$expand=managedDevice&$top=7{}",
        if filter.is_empty() {
            String::new()
        } else {
            format!("&$filter={filter}")
        }
    );
    let mut rows = BTreeMap::new();
    loop {
        let page = app.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for row in page.json["value"].as_array().unwrap() {
            rows.insert(
                row["id"].as_str().unwrap().to_owned(),
                row["managedDevice"]["deviceName"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
        match page.json["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return rows,
        }
    }
}

fn by_key(records: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    records
        .iter()
        .map(|r| (r["UniqueKustoKey"].clone(), r["DeviceName"].clone()))
        .collect()
}

both!(export_buttons_export_the_rows_the_api_returns, |app| {
    let (script, _) = fleet(&app, "Disk cleanup", 30).await;
    let (other, _) = fleet(&app, "Printer", 4).await;
    let browser = Browser::sign_in(&app, "tenant-a", OPERATOR).await;

    // The script page's Export form carries the page's filters.
    let page = browser
        .get(&format!(
            "/scripts/{script}?detection=fail&remediation=success"
        ))
        .await;
    assert_eq!(page.status, 200);
    assert!(page
        .text
        .contains(&format!("action=\"/scripts/{script}/export\"")));
    assert!(page
        .text
        .contains("name=\"detection\" value=\"fail\"><input type=\"hidden\" name=\"remediation\" value=\"success\">"));
    let csrf = page.csrf();

    // Filtered by detection and remediation: every matching row (more than a page of 25 when
    // unfiltered), exactly the API's.
    for (detection, remediation, filter) in [
        (
            "fail",
            "success",
            "detectionState eq 'fail' and remediationState eq 'success'",
        ),
        ("fail", "", "detectionState eq 'fail'"),
        ("", "", ""),
    ] {
        let (job, rows) = export(
            &app,
            &browser,
            &format!("/scripts/{script}/export"),
            &format!("csrf={csrf}&detection={detection}&remediation={remediation}"),
        )
        .await;
        assert!(
            job.starts_with("DeviceRunStatesByProactiveRemediation_"),
            "{job}"
        );
        let expected = api_rows(&app, &script, filter).await;
        assert!(!expected.is_empty());
        assert_eq!(by_key(&rows), expected, "filter {filter:?}");
        assert!(rows.iter().all(|r| r["PolicyId"] == script));
        if filter.is_empty() {
            assert_eq!(rows.len(), 30, "not only the rows on screen");
        }
        // The API sees the same job, made for the session's tenant.
        let through_api = app
            .get(&format!("deviceManagement/reports/exportJobs/{job}"))
            .await;
        assert_eq!(through_api.status, 200, "{}", through_api.text);
        assert_eq!(through_api.json["status"], "completed");
    }

    // Export everything: every run state of every script.
    let overview = browser.get("/").await;
    assert!(overview.text.contains("action=\"/export\""));
    let (job, rows) = export(&app, &browser, "/export", &format!("csrf={csrf}")).await;
    assert!(
        job.starts_with("PolicyRunStatesByProactiveRemediation_"),
        "{job}"
    );
    let mut expected = api_rows(&app, &script, "").await;
    expected.extend(api_rows(&app, &other, "").await);
    assert_eq!(by_key(&rows), expected);
    let names: BTreeSet<&str> = rows.iter().map(|r| r["PolicyName"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["Disk cleanup", "Printer"]));
});

both!(export_buttons_are_checked_like_the_api, |app| {
    let (script, _) = fleet(&app, "Disk cleanup", 3).await;
    let operator = Browser::sign_in(&app, "tenant-a", OPERATOR).await;
    let csrf = operator.get("/").await.csrf();

    // A session without the export permission sees no button, and a forged post is 403.
    let reader = Browser::sign_in(&app, "tenant-a", READ_ALL).await;
    let page = reader.get(&format!("/scripts/{script}")).await;
    assert_eq!(page.status, 200);
    assert!(!page.text.contains("export-form"));
    assert!(!reader.get("/").await.text.contains("export-form"));
    let reader_csrf = page.csrf();
    let forged = reader.post("/export", &format!("csrf={reader_csrf}")).await;
    assert_eq!(forged.status, 403);
    assert!(
        forged
            .text
            .contains("DeviceManagementManagedDevices.ReadWrite.All"),
        "{}",
        forged.text
    );

    // CSRF: no token, another session's token, a cross-site post.
    assert_eq!(operator.post("/export", "").await.status, 403);
    assert_eq!(
        operator
            .post("/export", &format!("csrf={reader_csrf}"))
            .await
            .status,
        403
    );
    let cross = operator
        .send(
            "POST",
            "/export",
            Some(&format!("csrf={csrf}")),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(cross.status, 403);
    let jobs = app.get("deviceManagement/reports/exportJobs").await;
    assert_eq!(
        jobs.json["value"].as_array().unwrap().len(),
        0,
        "nothing created"
    );

    // Bad input: an unknown script is 404, an unknown state 400, as pages.
    let missing = operator
        .post("/scripts/nope/export", &format!("csrf={csrf}"))
        .await;
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("does not exist"));
    let bad = operator
        .post(
            &format!("/scripts/{script}/export"),
            &format!("csrf={csrf}&detection=broken"),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.text.contains("&#39;broken&#39; is not one of"),
        "{}",
        bad.text
    );
    assert_eq!(operator.get("/export").await.status, 405);

    // The job's page belongs to its tenant.
    let created = operator
        .post(
            &format!("/scripts/{script}/export"),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(created.status, 303);
    let job_page = created.location().to_owned();
    assert_eq!(operator.get(&job_page).await.status, 200);
    let stranger = Browser::sign_in(&app, "tenant-b", OPERATOR).await;
    assert_eq!(stranger.get(&job_page).await.status, 404);
    assert_eq!(stranger.get("/export-jobs/nope").await.status, 404);
    // Signed out: sent to sign in.
    let signed_out = Browser::new(&app);
    assert_eq!(signed_out.get(&job_page).await.location(), "/login");
});

async fn created(app: &TestApp, path: &str, body: serde_json::Value) -> String {
    let reply = app.post(path, &body.to_string()).await;
    assert_eq!(reply.status, 201, "POST {path}: {}", reply.text);
    reply.json["id"].as_str().unwrap().to_owned()
}

/// The cells of the table with this id, row by row (header cell first), as text.
fn table(page: &Page, id: &str) -> Vec<Vec<String>> {
    let start = page
        .text
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id}: {}", page.text));
    let body = &page.text[start..];
    let body = &body[body.find("<tbody>").unwrap()..body.find("</table>").unwrap()];
    body.split("<tr>")
        .skip(1)
        .map(|row| {
            row.split(['<'])
                .filter_map(|part| {
                    part.strip_prefix("th scope=\"row\">")
                        .or_else(|| part.strip_prefix("td>"))
                })
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

both!(pages_name_groups_and_filters_and_chart_the_history, |app| {
    let (script, devices) = fleet(&app, "Disk cleanup", 6).await;
    let empty = app.script("Never run").await;
    let group = created(
        &app,
        "groups",
        serde_json::json!({"displayName": "Finance <laptops>", "mailEnabled": false,
            "mailNickname": "fin", "securityEnabled": true}),
    )
    .await;
    let excluded = created(
        &app,
        "groups",
        serde_json::json!({"displayName": "Kiosks", "mailEnabled": false,
            "mailNickname": "kiosks", "securityEnabled": true}),
    )
    .await;
    let filter = created(
        &app,
        "deviceManagement/assignmentFilters",
        serde_json::json!({"displayName": "Dell only", "platform": "windows10AndLater",
            "rule": "(device.manufacturer -eq \"Dell\")"}),
    )
    .await;
    let assign = serde_json::json!({"deviceHealthScriptAssignments": [
        {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group,
                    "deviceAndAppManagementAssignmentFilterId": filter,
                    "deviceAndAppManagementAssignmentFilterType": "include"},
         "runRemediationScript": true},
        {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": excluded},
         "runRemediationScript": false}]});
    let done = app
        .post(
            &format!("deviceManagement/deviceHealthScripts/{script}/assign"),
            &assign.to_string(),
        )
        .await;
    assert_eq!(done.status / 100, 2, "{}", done.text);
    let member = app
        .post(
            &format!("groups/{group}/members/$ref"),
            &serde_json::json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{}", devices[0])}).to_string(),
        )
        .await;
    assert_eq!(member.status, 204, "{}", member.text);

    const ADMIN: &[&str] = &[
        "DeviceManagementScripts.Read.All",
        "DeviceManagementManagedDevices.Read.All",
        "DeviceManagementConfiguration.Read.All",
        "Group.Read.All",
    ];
    let admin = Browser::sign_in(&app, "tenant-a", ADMIN).await;
    let page = admin.get(&format!("/scripts/{script}")).await;
    assert_eq!(page.status, 200);
    // Assignments: group and filter names (escaped), ids beside them.
    assert!(
        page.text.contains(&format!(
            "Group <strong>Finance &lt;laptops&gt;</strong> <span class=\"note\">({group})</span>; filter <strong>Dell only</strong>"
        )),
        "{}",
        page.text
    );
    assert!(page.text.contains("Excluded group <strong>Kiosks</strong>"));
    // Without group and filter reads: the ids only.
    let reader = Browser::sign_in(&app, "tenant-a", READ_ALL).await;
    let plain = reader.get(&format!("/scripts/{script}")).await;
    assert!(
        plain
            .text
            .contains(&format!("Group {group}; filter {filter}")),
        "{}",
        plain.text
    );
    assert!(!plain.text.contains("Finance"));

    // The history chart (its own page, linked): an SVG with a text alternative, and a table
    // equal to the API's.
    assert!(page.text.contains(&format!(
        "id=\"history-link\" href=\"/scripts/{script}/history\""
    )));
    let page = admin.get(&format!("/scripts/{script}/history")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("<svg viewBox=\"0 0 720 200\" role=\"img\" aria-labelledby=\"history-title\" aria-describedby=\"history-desc\">"));
    let history = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/getRemediationHistory"
        ))
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let expected: Vec<Vec<String>> = history.json["historyData"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            vec![
                d["date"].as_str().unwrap().to_owned(),
                d["remediatedDeviceCount"].to_string(),
                d["noIssueDeviceCount"].to_string(),
                d["detectFailedDeviceCount"].to_string(),
            ]
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(table(&page, "history-table"), expected);
    assert_eq!(admin.get("/scripts/nope/history").await.status, 404);
    let never = admin.get(&format!("/scripts/{empty}/history")).await;
    assert!(never.text.contains("No runs recorded yet."));

    // The device page: its groups by name.
    let device = admin.get(&format!("/devices/{}", devices[0])).await;
    assert_eq!(device.status, 200);
    assert!(
        device.text.contains(&format!(
            "<ul id=\"device-groups\"><li><strong>Finance &lt;laptops&gt;</strong> <span class=\"note\">({group})</span></li></ul>"
        )),
        "{}",
        device.text
    );
    let other = admin.get(&format!("/devices/{}", devices[1])).await;
    assert!(other.text.contains("Not a member of any group."));
    let hidden = reader.get(&format!("/devices/{}", devices[0])).await;
    assert!(hidden.text.contains("This session may not read groups"));
    assert!(!hidden.text.contains("Finance"));

    // The overview's last run: the latest lastStateUpdateDateTime of the script's run states.
    let stamp = "2031-05-06T07:08:09Z";
    let states = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$top=1"
        ))
        .await;
    let state_id = states.json["value"][0]["id"].as_str().unwrap().to_owned();
    let patched = app
        .patch(
            &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{state_id}"),
            &serde_json::json!({"lastStateUpdateDateTime": stamp}).to_string(),
        )
        .await;
    assert_eq!(patched.status / 100, 2, "{}", patched.text);
    let overview = admin.get("/").await;
    let row = |id: &str| {
        let at = overview
            .text
            .find(&format!("<tr data-script=\"{id}\""))
            .unwrap();
        let row = &overview.text[at..];
        row[..row.find("</tr>").unwrap()].to_owned()
    };
    assert!(
        row(&script).contains("<td class=\"last-run\">2031-05-06 07:08:09 UTC</td>"),
        "{}",
        row(&script)
    );
    assert!(row(&empty).contains("<td class=\"last-run\">never</td>"));
});

/// The value of the series `name{labels}` in a `/metrics` answer (0 when absent).
fn series(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}{{{labels}}} ")))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

both!(dashboard_requests_are_counted_by_route_template, |app| {
    let (script, _) = fleet(&app, "Disk cleanup", 2).await;
    let browser = Browser::sign_in(&app, "tenant-a", OPERATOR).await;
    let metrics = || async {
        let url = app.base.replace("/beta", "/metrics");
        app.client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let key = "route=\"dashboard:/scripts/{id}\",method=\"GET\",status=\"200\"";
    let before = series(&metrics().await, "remediate_http_requests_total", key);
    for _ in 0..3 {
        assert_eq!(browser.get(&format!("/scripts/{script}")).await.status, 200);
    }
    assert_eq!(browser.get("/scripts/missing").await.status, 404);
    let text = metrics().await;
    assert_eq!(
        series(&text, "remediate_http_requests_total", key) - before,
        3.0,
        "{text}"
    );
    assert!(
        series(
            &text,
            "remediate_http_requests_total",
            "route=\"dashboard:/scripts/{id}\",method=\"GET\",status=\"404\""
        ) >= 1.0
    );
    assert!(
        series(
            &text,
            "remediate_http_request_duration_seconds_count",
            "route=\"dashboard:/scripts/{id}\",method=\"GET\""
        ) >= 4.0
    );
    // No raw path (no script id) in any label.
    assert!(!text.contains(&script));
    assert!(
        series(
            &text,
            "remediate_http_requests_total",
            "route=\"dashboard:/login/{id}\",method=\"GET\",status=\"303\""
        ) >= 1.0
    );
});

// ------------------------------------------------------------------------------ OIDC sign-in

mod fake_idp {
    //! A small OIDC provider for the tests: discovery, JWKS, an authorization endpoint that
    //! approves at once (recording the PKCE challenge and nonce), and a token endpoint that
    //! checks the code, client, redirect and PKCE verifier before it signs an ID token (ES256).

    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    pub const CLIENT: &str = "remediate-dashboard";
    pub const REDIRECT: &str = "https://dashboard.example/oidc/callback";

    /// A fresh P-256 key: (signing key, its public JWK under `kid`).
    pub fn ec_key(kid: &str) -> (EncodingKey, Value) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]), "y": URL_SAFE_NO_PAD.encode(&public[33..])});
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
    }

    #[derive(Default)]
    pub struct Log {
        /// code → (challenge, method, nonce, client id, redirect).
        codes: HashMap<String, [String; 5]>,
        /// Verifiers the token endpoint checked and accepted.
        pub verified: Vec<String>,
        /// Token requests refused, with why.
        pub refused: Vec<String>,
        /// Claims put over the ID token's (e.g. another `aud`).
        pub overrides: Value,
        /// Sign with a key that is not in the JWKS (same `kid`).
        pub foreign_key: bool,
    }

    pub struct Idp {
        pub issuer: String,
        pub log: Arc<Mutex<Log>>,
    }

    fn query(text: &str) -> HashMap<String, String> {
        reqwest::Url::parse(&format!("http://x/?{text}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    impl Idp {
        pub fn start() -> Idp {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let issuer = format!("http://{}/tenant", listener.local_addr().unwrap());
            let log = Arc::new(Mutex::new(Log {
                overrides: json!({}),
                ..Log::default()
            }));
            let (key, jwk) = ec_key("idp-1");
            let (foreign, _) = ec_key("idp-1");
            let keys = Arc::new((key, foreign, json!({"keys": [jwk]})));
            let (i, l) = (issuer.clone(), log.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (i, l, k) = (i.clone(), l.clone(), keys.clone());
                    std::thread::spawn(move || serve(stream, &i, &l, &k));
                }
            });
            Idp { issuer, log }
        }
    }

    fn serve(
        mut stream: std::net::TcpStream,
        issuer: &str,
        log: &Mutex<Log>,
        keys: &(EncodingKey, EncodingKey, Value),
    ) {
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&request[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while request.len() < head_end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&request[head_end..head_end + length]).into_owned();
        let line = head.lines().next().unwrap_or("");
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
        let path = path.strip_prefix("/tenant").unwrap_or("");
        let json_answer = |status: &str, value: Value| (status.to_owned(), value.to_string(), None);
        let (status, text, location): (String, String, Option<String>) = match (method, path) {
            ("GET", "/.well-known/openid-configuration") => json_answer(
                "200 OK",
                json!({"issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"),
                       "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/keys"),
                       "code_challenge_methods_supported": ["S256"]}),
            ),
            ("GET", "/keys") => json_answer("200 OK", keys.2.clone()),
            ("GET", "/authorize") => {
                let q = query(raw_query);
                let code = uuid::Uuid::new_v4().to_string();
                let field = |k: &str| q.get(k).cloned().unwrap_or_default();
                log.lock().unwrap().codes.insert(
                    code.clone(),
                    [
                        field("code_challenge"),
                        field("code_challenge_method"),
                        field("nonce"),
                        field("client_id"),
                        field("redirect_uri"),
                    ],
                );
                let to = reqwest::Url::parse_with_params(
                    &field("redirect_uri"),
                    &[("code", code.as_str()), ("state", field("state").as_str())],
                )
                .map(String::from)
                .unwrap_or_default();
                ("302 Found".to_owned(), String::new(), Some(to))
            }
            ("POST", "/token") => {
                let q = query(&body);
                let field = |k: &str| q.get(k).cloned().unwrap_or_default();
                let mut log = log.lock().unwrap();
                // A code is used once.
                let grant = log.codes.remove(&field("code"));
                let verifier = field("code_verifier");
                let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
                    &ring::digest::SHA256,
                    verifier.as_bytes(),
                ));
                let why = match &grant {
                    None => Some("unknown or used code"),
                    Some(g) if g[1] != "S256" => Some("not S256"),
                    Some(g) if g[0] != challenge => Some("wrong PKCE verifier"),
                    Some(g) if g[3] != field("client_id") => Some("wrong client"),
                    Some(g) if g[4] != field("redirect_uri") => Some("wrong redirect"),
                    Some(_) if field("grant_type") != "authorization_code" => Some("grant type"),
                    Some(_) => None,
                };
                match (why, grant) {
                    (Some(why), _) => {
                        log.refused.push(why.to_owned());
                        json_answer(
                            "400 Bad Request",
                            json!({"error": "invalid_grant", "error_description": why}),
                        )
                    }
                    (None, None) => {
                        json_answer("400 Bad Request", json!({"error": "invalid_grant"}))
                    }
                    (None, Some(grant)) => {
                        log.verified.push(verifier);
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs();
                        let mut claims = json!({
                            "iss": issuer, "aud": CLIENT, "sub": "alice", "tid": "tenant-oidc",
                            "nonce": grant[2], "iat": now, "exp": now + 600,
                            "roles": ["DeviceManagementScripts.Read.All"],
                            "scp": "DeviceManagementManagedDevices.Read.All",
                        });
                        for (k, v) in log.overrides.as_object().unwrap() {
                            claims[k] = v.clone();
                        }
                        let mut header = Header::new(Algorithm::ES256);
                        header.kid = Some("idp-1".into());
                        let key = if log.foreign_key { &keys.1 } else { &keys.0 };
                        let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
                        json_answer(
                            "200 OK",
                            json!({"access_token": "opaque", "token_type": "Bearer", "id_token": token}),
                        )
                    }
                }
            }
            _ => json_answer("404 Not Found", json!({})),
        };
        let location = location
            .map(|l| format!("Location: {l}\r\n"))
            .unwrap_or_default();
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{location}Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.flush();
    }
}

/// The values of the `Set-Cookie` headers of an answer, by cookie name.
fn set_cookies(page: &Page) -> BTreeMap<String, String> {
    page.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (name, rest) = v.split_once('=')?;
            Some((name.to_owned(), rest.to_owned()))
        })
        .collect()
}

/// One sign-in up to the callback: (the callback's path and query as the issuer sent it, the
/// pending cookie `name=value`).
async fn authorize(app: &TestApp, idp: &fake_idp::Idp) -> (String, String) {
    let browser = Browser::new(app);
    let start = browser.get("/oidc/login").await;
    assert_eq!(start.status, 303, "{}", start.text);
    let to_idp = start.location().to_owned();
    assert!(
        to_idp.starts_with(&format!("{}/authorize?response_type=code&client_id=remediate-dashboard&redirect_uri=https%3A%2F%2Fdashboard.example%2Foidc%2Fcallback&scope=openid%20profile&state=", idp.issuer)),
        "{to_idp}"
    );
    assert!(to_idp.contains("&code_challenge_method=S256"));
    let pending = set_cookies(&start)["remediate_oidc"].clone();
    assert!(
        pending.contains("; HttpOnly; SameSite=Lax; Path=/oidc/"),
        "{pending}"
    );
    let cookie = format!("remediate_oidc={}", pending.split(';').next().unwrap());
    let approved = browser
        .client
        .get(&to_idp)
        .send()
        .await
        .expect("the issuer answers");
    assert_eq!(approved.status().as_u16(), 302);
    let back = approved.headers()["location"].to_str().unwrap().to_owned();
    let callback = back
        .strip_prefix("https://dashboard.example")
        .unwrap_or_else(|| panic!("sent back to the redirect: {back}"))
        .to_owned();
    (callback, cookie)
}

async fn callback(app: &TestApp, path: &str, cookie: &str) -> Page {
    Browser::new(app)
        .send("GET", path, None, &[("cookie", cookie)])
        .await
}

both!(oidc_sign_in_runs_the_code_flow_with_pkce, |app| {
    let idp = fake_idp::Idp::start();
    let mut app = app;
    app.args = vec![
        "--dashboard-oidc-issuer".into(),
        idp.issuer.clone(),
        "--dashboard-oidc-client-id".into(),
        fake_idp::CLIENT.into(),
        "--dashboard-oidc-redirect".into(),
        fake_idp::REDIRECT.into(),
    ];
    app.stop();
    app.spawn();
    let (script, _) = fleet(&app, "Disk cleanup", 2).await;
    let _ = script;

    // The sign-in page offers the button.
    let login = Browser::new(&app).get("/login").await;
    assert!(login
        .text
        .contains("id=\"oidc-sign-in\" href=\"/oidc/login\">Sign in</a>"));

    // The full flow: a session of the token's tenant with its roles and scp.
    let (path, cookie) = authorize(&app, &idp).await;
    let done = callback(&app, &path, &cookie).await;
    assert_eq!(done.status, 200, "{}", done.text);
    let cookies = set_cookies(&done);
    let session = cookies["remediate_session"].clone();
    assert!(session.contains("HttpOnly; SameSite=Strict"), "{session}");
    assert!(cookies["remediate_oidc"].contains("Max-Age=0"));
    assert_eq!(done.headers["refresh"], "0; url=/");
    {
        let log = idp.log.lock().unwrap();
        assert_eq!(
            log.verified.len(),
            1,
            "the verifier was sent and matched the challenge"
        );
        assert!(
            log.verified[0].len() >= 43,
            "RFC 7636: 43 characters at least"
        );
        assert!(log.refused.is_empty(), "{:?}", log.refused);
    }
    let mut browser = Browser::new(&app);
    browser.cookie = Some(format!(
        "remediate_session={}",
        session.split(';').next().unwrap()
    ));
    let overview = browser.get("/").await;
    assert_eq!(overview.status, 200, "{}", overview.text);
    assert!(overview
        .text
        .contains("Tenant <strong>tenant-oidc</strong>"));
    // Its permissions are the token's: scripts and devices read, no export (no write).
    assert!(!overview.text.contains("export-form"));
    assert_eq!(
        browser
            .post("/export", &format!("csrf={}", overview.csrf()))
            .await
            .status,
        403
    );

    // The same answer again (the code is used, the cookie cleared): refused.
    let again = callback(&app, &path, &cookie).await;
    assert_eq!(again.status, 403, "{}", again.text);
    assert!(!set_cookies(&again).contains_key("remediate_session"));

    // A wrong state: refused before the code is exchanged.
    let (path, cookie) = authorize(&app, &idp).await;
    let forged = path.replace("state=", "state=x");
    let refused = callback(&app, &forged, &cookie).await;
    assert_eq!(refused.status, 403);
    assert!(refused
        .text
        .contains("does not match the sign-in this browser started"));
    // Without the pending cookie (another browser): refused.
    let elsewhere = Browser::new(&app).get(&path).await;
    assert_eq!(elsewhere.status, 403);
    assert!(!set_cookies(&elsewhere).contains_key("remediate_session"));

    // A token for another audience, one signed by a key not in the JWKS, one with another
    // nonce: refused, no session.
    for (overrides, foreign, needle) in [
        (
            serde_json::json!({"aud": "someone-else"}),
            false,
            "audience",
        ),
        (serde_json::json!({}), true, "signature"),
        (serde_json::json!({"nonce": "replayed"}), false, "nonce"),
        (
            serde_json::json!({"iss": "https://evil.example"}),
            false,
            "issuer",
        ),
    ] {
        {
            let mut log = idp.log.lock().unwrap();
            log.overrides = overrides.clone();
            log.foreign_key = foreign;
        }
        let (path, cookie) = authorize(&app, &idp).await;
        let page = callback(&app, &path, &cookie).await;
        assert_eq!(page.status, 403, "{overrides}: {}", page.text);
        assert!(page.text.contains(needle), "{needle}: {}", page.text);
        assert!(!set_cookies(&page).contains_key("remediate_session"));
    }
});

#[tokio::test]
async fn oidc_sign_in_is_off_unless_configured() {
    let app = TestApp::start(crate::harness::Backend::Sqlite)
        .await
        .unwrap();
    let login = Browser::new(&app).get("/login").await;
    assert!(!login.text.contains("oidc-sign-in"));
    let start = Browser::new(&app).get("/oidc/login").await;
    assert_eq!(start.status, 404);
    assert!(start.text.contains("not configured"));
}
