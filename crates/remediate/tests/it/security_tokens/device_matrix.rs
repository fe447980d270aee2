//! The device-token matrix: every route and method the server answers, tried with a device
//! agent's token, as a table of (token, method, path, expected status). Every row runs (reads
//! alone and again inside `$batch`) and every mismatch is collected, so one failure does not hide
//! the rest; then one assertion shows the whole list. On top of the statuses: no successful answer
//! may mention another device or a script not assigned to the device, and nothing of another
//! device or of the scripts changes.
//!
//! The rules (`crates/api/src/device.rs`, from the declarations in
//! `crates/domain/src/collections.rs`): a device reads only the scripts assigned to it (and their
//! assignments), reads and writes only its own run states under those scripts (and their
//! history), reads and updates its own device record (a create registers it under its own id),
//! and reads its own on-demand queue. Another device's data is 404, as if missing; everything
//! else (deletes, counts, computed navigations, operations) is 403; a method a route does not
//! answer is 405 for everyone. `$metadata` is the public schema.

use super::*;

/// Who sends a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// Device `{d1}` of tenant A, member of group g1.
    Own,
    /// The same device id in tenant B.
    Foreign,
}

/// Every path the server routes, with the expected status of GET, POST, PATCH and DELETE by the
/// device token (`Tok::Own`). Placeholders: `{S}` is `deviceManagement/deviceHealthScripts`,
/// `{M}` is `deviceManagement/managedDevices`; scripts `{A}` (assigned to all devices), `{B}`
/// (assigned to group g1, the device's group), `{C}` (assigned to group g2 only), `{D}` (all
/// devices but group g1); devices `{d1}` (the token's) and `{d2}`; assignments `{aA}` of A and
/// `{aC}` of C. Run states: `{A}:{d1}` and `{C}:{d1}` (the device's own), `{A}:{d2}` and
/// `{B}:{d2}` (another device's); `{B}:{d1}` does not exist until the device creates it.
#[rustfmt::skip]
const ROUTES: &[(&str, [u16; 4])] = &[
    // Devices: its own record; its own on-demand queue (first: its
    // queue still holds the request for `{A}` that its next report on `{A}` clears).
    ("{M}",                                             [200, 409, 405, 405]),
    ("{M}/$count",                                      [403, 405, 405, 405]),
    ("{M}/{d1}",                                        [200, 405, 200, 403]),
    ("{M}('{d1}')",                                     [200, 405, 200, 403]),
    ("{M}/{d2}",                                        [404, 405, 404, 403]),
    ("{M}/{d1}/pendingOnDemandRemediations",            [200, 405, 405, 405]),
    ("{M}/{d2}/pendingOnDemandRemediations",            [404, 405, 405, 405]),
    // Scripts: the assigned ones; never written.
    ("{S}",                                             [200, 403, 405, 405]),
    ("{S}/$count",                                      [403, 405, 405, 405]),
    ("{S}/{A}",                                         [200, 405, 403, 403]),
    ("{S}('{A}')",                                      [200, 405, 403, 403]),
    ("{S}/{B}",                                         [200, 405, 403, 403]),
    ("{S}/{C}",                                         [404, 405, 403, 403]),
    ("{S}/{D}",                                         [404, 405, 403, 403]),
    ("{S}/missing-script",                              [404, 405, 403, 403]),
    // Assignments of an assigned script: readable; of another: missing.
    ("{S}/{A}/assignments",                             [200, 403, 405, 405]),
    ("{S}/{A}/assignments/$count",                      [403, 405, 405, 405]),
    ("{S}/{A}/assignments/{aA}",                        [200, 405, 403, 403]),
    ("{S}/{C}/assignments",                             [404, 403, 405, 405]),
    ("{S}/{C}/assignments/{aC}",                        [404, 405, 403, 403]),
    // Run states: own ones under assigned scripts.
    ("{S}/{A}/deviceRunStates",                         [200, 409, 405, 405]),
    ("{S}/{A}/deviceRunStates/$count",                  [403, 405, 405, 405]),
    ("{S}/{B}/deviceRunStates",                         [200, 201, 405, 405]),
    ("{S}/{C}/deviceRunStates",                         [404, 404, 405, 405]),
    ("{S}/{D}/deviceRunStates",                         [404, 404, 405, 405]),
    ("{S}/{A}/deviceRunStates/{A}:{d1}",                [200, 405, 200, 403]),
    ("{S}('{A}')/deviceRunStates('{A}:{d1}')",          [200, 405, 200, 403]),
    ("{S}/{A}/deviceRunStates/{A}:{d2}",                [404, 405, 404, 403]),
    ("{S}/{B}/deviceRunStates/{B}:{d2}",                [404, 405, 404, 403]),
    ("{S}/{C}/deviceRunStates/{C}:{d1}",                [404, 405, 404, 403]),
    // History of run states.
    ("{S}/{A}/deviceRunStates/{A}:{d1}/history",        [200, 405, 405, 405]),
    ("{S}/{A}/deviceRunStates/{A}:{d1}/history/$count", [403, 405, 405, 405]),
    ("{S}/{A}/deviceRunStates/{A}:{d1}/history/x",      [405, 405, 405, 405]),
    ("{S}/{A}/deviceRunStates/{A}:{d2}/history",        [404, 405, 405, 405]),
    ("{S}/{C}/deviceRunStates/{C}:{d1}/history",        [404, 405, 405, 405]),
    // Computed navigations.
    ("{S}/{A}/runSummary",                              [403, 405, 405, 405]),
    ("{S}/{A}/deviceRunStates/{A}:{d1}/managedDevice",  [403, 405, 405, 405]),
    ("{S}/{A}/deviceRunStates/{A}:{d2}/managedDevice",  [403, 405, 405, 405]),
    ("{M}/{d1}/deviceHealthScriptStates",               [403, 405, 405, 405]),
    ("{M}/{d2}/deviceHealthScriptStates",               [403, 405, 405, 405]),
    // Operations.
    ("{S}/{A}/assign",                                  [405, 403, 405, 405]),
    ("{S}/{A}/getRemediationHistory()",                 [403, 405, 405, 405]),
    ("{S}/{A}/getGlobalScriptHighestAvailableVersion",  [405, 403, 405, 405]),
    ("{S}/{A}/updateGlobalScript",                      [405, 403, 405, 405]),
    ("{S}/getRemediationSummary()",                     [403, 405, 405, 405]),
    ("{S}/areGlobalScriptsAvailable()",                 [403, 405, 405, 405]),
    ("{S}/enableGlobalScripts",                         [405, 403, 405, 405]),
    ("{M}/{d1}/initiateOnDemandProactiveRemediation",   [405, 403, 405, 405]),
    ("{M}/{d2}/initiateOnDemandProactiveRemediation",   [405, 403, 405, 405]),
    // The service documents.
    ("$batch",                                          [405, 200, 405, 405]),
    ("$metadata",                                       [200, 405, 405, 405]),
];

/// Further rows: the same device id in another tenant, query options, and bodies that name
/// another device. (token, method, path, body, expected status); a `None` body is chosen from
/// the path as for [`ROUTES`].
#[rustfmt::skip]
const EXTRA: &[(Tok, &str, &str, Option<&str>, u16)] = &[
    // Query options: $expand of what a device may read (runSummary never); filters and counts
    // see only the device's own rows.
    (Tok::Own, "GET", "{S}?$expand=assignments", None, 200),
    (Tok::Own, "GET", "{S}?$expand=runSummary", None, 403),
    (Tok::Own, "GET", "{S}/{A}?$expand=runSummary", None, 403),
    (Tok::Own, "GET", "{S}/{A}?$expand=runSummary($select=issueDetectedDeviceCount)", None, 403),
    (Tok::Own, "GET", "{S}/{A}/deviceRunStates?$expand=managedDevice", None, 200),
    (Tok::Own, "GET", "{S}/{A}/deviceRunStates?$filter=managedDevice/id eq '{d2}'", None, 200),
    (Tok::Own, "GET", "{S}/{A}/deviceRunStates?$filter=managedDevice/deviceName eq 'other-pc'", None, 200),
    (Tok::Own, "GET", "{S}/{A}/deviceRunStates?$count=true", None, 200),
    (Tok::Own, "GET", "{S}?$count=true", None, 200),
    (Tok::Own, "GET", "{S}?$filter=displayName eq 'unassigned-secret'", None, 200),
    (Tok::Own, "GET", "{M}?$filter=id eq '{d2}'", None, 200),
    (Tok::Own, "GET", "{M}?$count=true", None, 200),
    // Writes that name another device, or none.
    (Tok::Own, "POST", "{S}/{B}/deviceRunStates",
        Some(r#"{"managedDevice@odata.bind":"managedDevices('{d2}')","detectionState":"fail"}"#), 403),
    (Tok::Own, "POST", "{S}/{D}/deviceRunStates",
        Some(r#"{"managedDevice@odata.bind":"managedDevices('{d1}')","detectionState":"fail"}"#), 404),
    (Tok::Own, "POST", "{S}/{A}/deviceRunStates", Some(r#"{"detectionState":"fail"}"#), 400),
    (Tok::Own, "PATCH", "{S}/{A}/deviceRunStates/{A}:{d1}",
        Some(r#"{"managedDevice@odata.bind":"managedDevices('{d2}')"}"#), 403),
    (Tok::Own, "POST", "{M}", Some(r#"{"id":"{d2}","deviceName":"other-pc"}"#), 409),
    // The same device id in another tenant: nothing of tenant A.
    (Tok::Foreign, "GET", "{S}", None, 200),
    (Tok::Foreign, "GET", "{S}/{A}", None, 404),
    (Tok::Foreign, "GET", "{S}/{A}/deviceRunStates", None, 404),
    (Tok::Foreign, "GET", "{S}/{A}/deviceRunStates/{A}:{d1}", None, 404),
    (Tok::Foreign, "PATCH", "{S}/{A}/deviceRunStates/{A}:{d1}", None, 404),
    (Tok::Foreign, "GET", "{M}", None, 200),
    (Tok::Foreign, "GET", "{M}/{d1}", None, 404),
    (Tok::Foreign, "PATCH", "{M}/{d1}", None, 404),
    (Tok::Foreign, "GET", "{M}/{d1}/pendingOnDemandRemediations", None, 404),
];

const METHODS: [&str; 4] = ["GET", "POST", "PATCH", "DELETE"];

/// What the matrix runs against.
struct World {
    names: Vec<(&'static str, String)>,
    own: String,
    foreign: String,
    /// Text no answer to the device may contain (other devices, unassigned scripts).
    secrets: Vec<String>,
}

impl World {
    fn fill(&self, template: &str) -> String {
        let mut text = template.replace("{S}", SCRIPTS).replace("{M}", DEVICES);
        for (name, value) in &self.names {
            text = text.replace(&format!("{{{name}}}"), value);
        }
        text
    }

    fn token(&self, tok: Tok) -> &str {
        match tok {
            Tok::Own => &self.own,
            Tok::Foreign => &self.foreign,
        }
    }
}

/// The start of an answer, for messages.
fn cut(text: &str) -> String {
    match text.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A body for a write to `path` that would be valid for an administrator (so the answer is about
/// who asks, not about what was sent).
fn body_for(method: &str, path: &str) -> Option<String> {
    if method == "GET" || method == "DELETE" {
        return None;
    }
    let last = path.rsplit('/').next().unwrap_or("");
    let body = if path == "$batch" {
        r#"{"requests":[{"id":"1","method":"GET","url":"/deviceManagement/managedDevices/{d1}"}]}"#
    } else if path.contains("/deviceRunStates") {
        if method == "POST" {
            r#"{"managedDevice@odata.bind":"https://graph.microsoft.com/beta/deviceManagement/managedDevices('{d1}')","detectionState":"success"}"#
        } else {
            r#"{"detectionState":"fail","preRemediationDetectionScriptOutput":"patched by the device"}"#
        }
    } else if path.contains("/assignments") {
        r##"{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}"##
    } else if last == "assign" {
        r#"{"deviceHealthScriptAssignments":[]}"#
    } else if last == "updateGlobalScript" {
        r#"{"version":"1.0"}"#
    } else if last == "initiateOnDemandProactiveRemediation" {
        r#"{"scriptPolicyId":"{A}"}"#
    } else if path.contains("deviceHealthScripts") {
        r#"{"displayName":"pwned","detectionScriptContent":"ZWNobyAx"}"#
    } else if path.contains("managedDevices") {
        if method == "POST" {
            r#"{"deviceName":"own-pc again"}"#
        } else {
            r#"{"osVersion":"10.0.2"}"#
        }
    } else {
        "{}"
    };
    Some(body.to_owned())
}

async fn assign(app: &TestApp, script: &str, targets: &[Value]) -> String {
    let assignments: Vec<Value> = targets.iter().map(|t| json!({"target": t})).collect();
    let reply = app
        .post(
            &format!("{SCRIPTS}/{script}/assign"),
            &json!({"deviceHealthScriptAssignments": assignments}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let list = app.get(&format!("{SCRIPTS}/{script}/assignments")).await;
    list.json["value"][0]["id"].as_str().unwrap().to_owned()
}

/// Create the world of the table, as an administrator.
async fn world(app: &TestApp) -> World {
    let all = json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"});
    let group =
        |g: &str| json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": g});
    let not_g1 =
        json!({"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g1"});
    let a = app.script("assigned-all").await;
    let b = app.script("assigned-group").await;
    let c = app.script("unassigned-secret").await;
    let d = app.script("excluded-secret").await;
    let a_assignment = assign(app, &a, std::slice::from_ref(&all)).await;
    assign(app, &b, &[group("g1")]).await;
    let c_assignment = assign(app, &c, &[group("g2")]).await;
    assign(app, &d, &[all, not_g1]).await;
    let d1 = app.device("own-pc").await;
    let d2 = app.device("other-pc").await;
    for (script, device) in [(&a, &d1), (&a, &d2), (&b, &d2), (&c, &d1)] {
        let reply = app
            .run_state(script, device, r#""detectionState":"fail""#)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let privileged = app.mint(
        "tenant-a",
        &[
            "DeviceManagementManagedDevices.PrivilegedOperations.All",
            "DeviceManagementManagedDevices.Read.All",
        ],
        &[],
    );
    for (device, script) in [(&d1, &a), (&d2, &a), (&d2, &d)] {
        let reply = app
            .send(
                "POST",
                &format!("{DEVICES}/{device}/initiateOnDemandProactiveRemediation"),
                Some(&privileged),
                Some(&format!(r#"{{"scriptPolicyId":"{script}"}}"#)),
            )
            .await;
        assert_eq!(reply.status, 204, "{}", reply.text);
    }
    World {
        own: app.mint_device("tenant-a", &d1, &["g1"]),
        foreign: app.mint_device("tenant-b", &d1, &["g1"]),
        secrets: vec![
            d2.clone(),
            "other-pc".into(),
            c.clone(),
            d.clone(),
            "unassigned-secret".into(),
            "excluded-secret".into(),
        ],
        names: vec![
            ("A", a),
            ("B", b),
            ("C", c),
            ("D", d),
            ("d1", d1),
            ("d2", d2),
            ("aA", a_assignment),
            ("aC", c_assignment),
        ],
    }
}

/// What an administrator sees of everything the device must not change.
async fn protected(app: &TestApp, world: &World) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    for path in [
        "{S}/{A}",
        "{S}/{B}",
        "{S}/{C}",
        "{S}/{D}",
        "{S}/{A}/assignments",
        "{S}/{B}/assignments",
        "{S}/{C}/assignments",
        "{S}/{D}/assignments",
        "{S}/{A}/deviceRunStates/{A}:{d2}",
        "{S}/{B}/deviceRunStates/{B}:{d2}",
        "{S}/{C}/deviceRunStates/{C}:{d1}",
        "{S}/{A}/deviceRunStates/{A}:{d2}/history",
        "{S}/{C}/deviceRunStates/{C}:{d1}/history",
        "{S}/{D}/deviceRunStates",
        "{M}/{d2}",
        "{M}/{d2}/pendingOnDemandRemediations",
        "{M}/$count",
        "{S}/$count",
    ] {
        let path = world.fill(path);
        let reply = app.get(&path).await;
        seen.push((path, format!("{} {}", reply.status, reply.text)));
    }
    seen
}

/// One row of the table, expanded.
struct Row {
    tok: Tok,
    method: &'static str,
    template: &'static str,
    body: Option<&'static str>,
    expected: u16,
}

fn rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (template, statuses) in ROUTES {
        for (method, expected) in METHODS.iter().zip(statuses) {
            rows.push(Row {
                tok: Tok::Own,
                method,
                template,
                body: None,
                expected: *expected,
            });
        }
    }
    for (tok, method, template, body, expected) in EXTRA {
        rows.push(Row {
            tok: *tok,
            method,
            template,
            body: *body,
            expected: *expected,
        });
    }
    rows
}

both!(
    a_device_token_gets_the_expected_status_on_every_route,
    |app| {
        let world = world(&app).await;
        let before = protected(&app, &world).await;
        let rows = rows();
        let leaks_secret = |text: &str| world.secrets.iter().any(|s| text.contains(s.as_str()));
        let (mut mismatches, mut leaks) = (Vec::new(), Vec::new());
        // The GET rows, with their statuses, to ask again inside $batch.
        let mut reads: Vec<(Tok, &str, u16)> = Vec::new();
        for row in &rows {
            let path = world.fill(row.template);
            let body = match row.body {
                Some(body) => Some(world.fill(body)),
                None => body_for(row.method, &path).map(|b| world.fill(&b)),
            };
            let token = world.token(row.tok);
            let reply = app
                .send(row.method, &path, Some(token), body.as_deref())
                .await;
            let label = format!("{:?} {} {}", row.tok, row.method, row.template);
            if reply.status != row.expected {
                mismatches.push(format!(
                    "{label}: expected {}, got {} {}",
                    row.expected,
                    reply.status,
                    cut(&reply.text)
                ));
            }
            if reply.status < 300 && leaks_secret(&reply.text) {
                leaks.push(format!("{label}: {}", cut(&reply.text)));
            }
            if row.method == "GET" && !row.template.starts_with('$') {
                reads.push((row.tok, row.template, reply.status));
            }
        }
        // The same reads inside `$batch`: each inner request is judged as if alone.
        for tok in [Tok::Own, Tok::Foreign] {
            let mine: Vec<&(Tok, &str, u16)> = reads.iter().filter(|r| r.0 == tok).collect();
            for chunk in mine.chunks(20) {
                let requests: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, template, _))| {
                    json!({"id": i.to_string(), "method": "GET", "url": format!("/{}", world.fill(template))})
                })
                .collect();
                let batch = json!({ "requests": requests }).to_string();
                let reply = app
                    .send("POST", "$batch", Some(world.token(tok)), Some(&batch))
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.text);
                for response in reply.json["responses"].as_array().unwrap() {
                    let i: usize = response["id"].as_str().unwrap().parse().unwrap();
                    let (_, template, alone) = chunk[i];
                    let status = response["status"].as_u64().unwrap_or(0);
                    let label = format!("{tok:?} GET {template} (in $batch)");
                    if status != u64::from(*alone) {
                        mismatches.push(format!(
                            "{label}: {alone} alone, {status} in $batch: {}",
                            cut(&response.to_string())
                        ));
                    }
                    let text = response["body"].to_string();
                    if status < 300 && leaks_secret(&text) {
                        leaks.push(format!("{label}: {}", cut(&text)));
                    }
                }
            }
        }
        let after = protected(&app, &world).await;
        let changed: Vec<String> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|((path, b), (_, a))| format!("{path}:\n  before {}\n  after  {}", cut(b), cut(a)))
            .collect();
        assert!(
        mismatches.is_empty() && leaks.is_empty() && changed.is_empty(),
        "{} of {} rows differ:\n{}\n\nanswers naming another device or an unassigned script:\n{}\n\nchanged by the device:\n{}",
        mismatches.len(),
        rows.len(),
        mismatches.join("\n"),
        leaks.join("\n"),
        changed.join("\n")
    );
    }
);
