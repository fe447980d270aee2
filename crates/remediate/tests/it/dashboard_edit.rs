//! The dashboard's editing pages (`remediate_api::dashboard::edit` and `::directory`,
//! `docs/dashboard.md` "Editing") through the real router, on both databases: scripts created
//! from uploaded files (multipart), edited, assigned (group, exclusion, filter, schedule) and
//! deleted, each checked through the API; the API's own validation messages shown with the
//! input kept; groups (dynamic rule refused and checked by `/rules/check` with the API's
//! message, static members added and removed), assignment filters, enrollment secrets (shown
//! once with the install command, usable by `/agent/enroll`, revoked); write controls hidden
//! from a read-only session and its forged posts refused with 403; cross-site posts refused;
//! an upload over the body limit refused with 413.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::both;
use crate::dashboard::{root, Browser, Page};

const EDITOR: &[&str] = &[
    "DeviceManagementScripts.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    "Group.ReadWrite.All",
    "Device.Read.All",
];
const READER: &[&str] = &[
    "DeviceManagementScripts.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Group.Read.All",
];
const BOUNDARY: &str = "----remediateTestBoundary7MA4YWxk";

/// One part of a multipart body: a field, or a file (name, filename, bytes).
enum Part<'a> {
    Field(&'a str, &'a str),
    File(&'a str, &'a str, &'a [u8]),
}

fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Field(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}")
                        .as_bytes(),
                );
            }
            Part::File(name, filename, bytes) => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A multipart form post of the signed-in browser.
async fn post_multipart(browser: &Browser<'_>, path: &str, parts: &[Part<'_>]) -> Page {
    browser
        .send_body(
            "POST",
            path,
            Some((
                &format!("multipart/form-data; boundary={BOUNDARY}"),
                multipart(parts),
            )),
            &[],
        )
        .await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Percent-encode every byte but ASCII letters and digits.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

both!(
    a_script_is_created_from_files_edited_assigned_and_deleted,
    |app| {
        let browser = Browser::sign_in(&app, "tenant-a", EDITOR).await;
        let overview = browser.get("/").await;
        assert!(overview.text.contains("href=\"/scripts/new\""));
        let form = browser.get("/scripts/new").await;
        assert_eq!(form.status, 200, "{}", form.text);
        assert!(form.text.contains("enctype=\"multipart/form-data\""));
        let csrf = form.csrf();

        // Without a detection file: the API's own message, the input kept.
        let refused = post_multipart(
            &browser,
            "/scripts/new",
            &[
                Part::Field("csrf", &csrf),
                Part::Field("displayName", "Disk <cleanup>"),
                Part::File("remediation", "fix.sh", b"rm -rf /tmp/cache\n"),
                Part::File("detection", "", b""),
            ],
        )
        .await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert!(
        refused.text.contains(
            "The property &#39;detectionScriptContent&#39; is required and must not be null or empty."
        ),
        "{}",
        refused.text
    );
        assert!(refused.text.contains("value=\"Disk &lt;cleanup&gt;\""));
        // The remediation file uploaded with the refused form is kept for the next attempt.
        assert!(refused.text.contains("fix.sh (18 bytes) is kept"));
        let kept = b64(b"rm -rf /tmp/cache\n");
        assert!(refused.text.contains(&format!("value=\"{kept}\"")));

        let detection = b"#!/bin/sh\r\ndf -h / | tail -1\nexit 1\n\x00\xff";
        let created = post_multipart(
            &browser,
            "/scripts/new",
            &[
                Part::Field("csrf", &csrf),
                Part::Field("displayName", "Disk <cleanup>"),
                Part::Field("description", "Frees space"),
                Part::Field("publisher", "IT"),
                Part::Field("runAsAccount", "user"),
                Part::Field("enforceSignatureCheck", "true"),
                Part::File("detection", "detect.sh", detection),
                Part::Field("remediationKept", &kept),
                Part::Field("remediationKeptName", "fix.sh"),
            ],
        )
        .await;
        assert_eq!(created.status, 303, "{}", created.text);
        let id = created
            .location()
            .strip_prefix("/scripts/")
            .unwrap()
            .to_owned();
        let script = app
            .get(&format!("deviceManagement/deviceHealthScripts/{id}"))
            .await;
        assert_eq!(script.status, 200);
        assert_eq!(script.json["displayName"], "Disk <cleanup>");
        assert_eq!(script.json["description"], "Frees space");
        assert_eq!(script.json["runAsAccount"], "user");
        assert_eq!(script.json["enforceSignatureCheck"], true);
        assert_eq!(script.json["runAs32Bit"], false);
        assert_eq!(script.json["detectionScriptContent"], b64(detection));
        assert_eq!(script.json["remediationScriptContent"], kept);

        // The script page offers the editing controls.
        let page = browser.get(created.location()).await;
        assert!(page.text.contains(&format!("href=\"/scripts/{id}/edit\"")));
        assert!(page
            .text
            .contains(&format!("href=\"/scripts/{id}/assign\"")));
        assert!(page
            .text
            .contains(&format!("action=\"/scripts/{id}/delete\"")));

        // Edit: new settings, the detection file kept (none chosen), the remediation removed.
        let edit = browser.get(&format!("/scripts/{id}/edit")).await;
        assert_eq!(edit.status, 200, "{}", edit.text);
        assert!(edit.text.contains("value=\"Disk &lt;cleanup&gt;\""));
        assert!(edit.text.contains("df -h / | tail -1"));
        let saved = post_multipart(
            &browser,
            &format!("/scripts/{id}/edit"),
            &[
                Part::Field("csrf", &csrf),
                Part::Field("displayName", "Disk cleanup v2"),
                Part::Field("description", ""),
                Part::Field("publisher", "IT ops"),
                Part::Field("runAsAccount", "system"),
                Part::Field("runAs32Bit", "true"),
                Part::File("detection", "", b""),
                Part::Field("removeRemediation", "true"),
            ],
        )
        .await;
        assert_eq!(saved.status, 303, "{}", saved.text);
        let script = app
            .get(&format!("deviceManagement/deviceHealthScripts/{id}"))
            .await;
        assert_eq!(script.json["displayName"], "Disk cleanup v2");
        assert_eq!(script.json["description"], Value::Null);
        assert_eq!(script.json["publisher"], "IT ops");
        assert_eq!(script.json["runAsAccount"], "system");
        assert_eq!(script.json["enforceSignatureCheck"], false);
        assert_eq!(script.json["runAs32Bit"], true);
        assert_eq!(script.json["detectionScriptContent"], b64(detection));
        assert_eq!(script.json["remediationScriptContent"], "");
        // An edit the API refuses: its message, nothing changed.
        let long = "x".repeat(5000);
        let refused = post_multipart(
            &browser,
            &format!("/scripts/{id}/edit"),
            &[
                Part::Field("csrf", &csrf),
                Part::Field("displayName", &long),
            ],
        )
        .await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert!(refused.text.contains("displayName"), "{}", refused.text);
        assert!(refused.text.contains(&long));

        // Assign: a group with a filter, remediation and a daily schedule; an excluded group.
        let group = app
        .post(
            "groups",
            r#"{"displayName":"Lab","mailNickname":"lab","mailEnabled":false,"securityEnabled":true}"#,
        )
        .await;
        assert_eq!(group.status, 201, "{}", group.text);
        let group = group.json["id"].as_str().unwrap().to_owned();
        let excluded = app
        .post(
            "groups",
            r#"{"displayName":"VIP","mailNickname":"vip","mailEnabled":false,"securityEnabled":true}"#,
        )
        .await;
        let excluded = excluded.json["id"].as_str().unwrap().to_owned();
        let filter = app
        .post(
            "deviceManagement/assignmentFilters",
            r#"{"displayName":"Linux","platform":"windows10AndLater","rule":"(device.deviceName -startsWith \"LAB\")"}"#,
        )
        .await;
        assert_eq!(filter.status, 201, "{}", filter.text);
        let filter = filter.json["id"].as_str().unwrap().to_owned();
        let assign = browser.get(&format!("/scripts/{id}/assign")).await;
        assert_eq!(assign.status, 200, "{}", assign.text);
        assert!(assign
            .text
            .contains(&format!("<option value=\"{group}\">Lab</option>")));
        assert!(assign
            .text
            .contains(&format!("<option value=\"{filter}\">Linux</option>")));
        let rows = format!(
        "csrf={csrf}&rows=3\
         &target-0=include&group-0={group}&filter-0={filter}&filterMode-0=include&remediate-0=true\
         &schedule-0=daily&interval-0=2&time-0=09%3A30&date-0=\
         &target-1=exclude&group-1={excluded}&filter-1=&filterMode-1=include&schedule-1=&interval-1=&time-1=&date-1=\
         &target-2=&group-2=&filter-2=&schedule-2=&interval-2=&time-2=&date-2="
    );
        let assigned = browser.post(&format!("/scripts/{id}/assign"), &rows).await;
        assert_eq!(assigned.status, 303, "{}", assigned.text);
        let listed = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{id}/assignments"
            ))
            .await;
        let mut items: Vec<Value> = listed.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                json!({
                    "target": a["target"],
                    "runRemediationScript": a["runRemediationScript"],
                    "runSchedule": a["runSchedule"],
                })
            })
            .collect();
        items.sort_by_key(|a| a["target"]["@odata.type"].to_string());
        assert_eq!(
            items,
            vec![
                json!({
                    "target": {
                        "@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget",
                        "deviceAndAppManagementAssignmentFilterId": "00000000-0000-0000-0000-000000000000",
                        "deviceAndAppManagementAssignmentFilterType": "none",
                        "groupId": excluded,
                    },
                    "runRemediationScript": false,
                    "runSchedule": null,
                }),
                json!({
                    "target": {
                        "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                        "deviceAndAppManagementAssignmentFilterId": filter,
                        "deviceAndAppManagementAssignmentFilterType": "include",
                        "groupId": group,
                    },
                    "runRemediationScript": true,
                    "runSchedule": {
                        "@odata.type": "#microsoft.graph.deviceHealthScriptDailySchedule",
                        "interval": 2,
                        "time": "09:30:00.0000000",
                        "useUtc": false,
                    },
                }),
            ]
        );
        // The form shows the assignments back as they are.
        let again = browser.get(&format!("/scripts/{id}/assign")).await;
        assert!(again.text.contains(&format!(
            "<option value=\"{excluded}\" selected>VIP</option>"
        )));
        assert!(again.text.contains("value=\"09:30:00\""));
        // An assignment the API refuses: its message, the rows kept, nothing changed.
        let bad = rows.replace("time-0=09%3A30", "time-0=25%3A00");
        let refused = browser.post(&format!("/scripts/{id}/assign"), &bad).await;
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert!(
            refused
                .text
                .contains("time&#39; is &#39;25:00&#39;, not a time of day"),
            "{}",
            refused.text
        );
        assert!(refused.text.contains("value=\"25:00\""));
        let unchanged = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{id}/assignments"
            ))
            .await;
        assert_eq!(unchanged.json["value"].as_array().unwrap().len(), 2);
        // "Add a row" saves nothing and shows one more row.
        let more = browser
            .post(&format!("/scripts/{id}/assign"), &format!("{rows}&more=1"))
            .await;
        assert_eq!(more.status, 200);
        assert!(more.text.contains("name=\"target-3\""));
        assert!(!more.text.contains("name=\"target-4\""));

        // Delete.
        let deleted = browser
            .post(&format!("/scripts/{id}/delete"), &format!("csrf={csrf}"))
            .await;
        assert_eq!(deleted.status, 303, "{}", deleted.text);
        assert_eq!(deleted.location(), "/");
        let gone = app
            .get(&format!("deviceManagement/deviceHealthScripts/{id}"))
            .await;
        assert_eq!(gone.status, 404);
        // Editing a script that does not exist is the error page of the API's 404.
        let missing = browser.get(&format!("/scripts/{id}/edit")).await;
        assert_eq!(missing.status, 404);
        assert!(missing.text.contains(&id));
        assert_eq!(browser.get("/scripts//edit").await.status, 404);
        assert_eq!(browser.get("/groups/").await.status, 404);
    }
);

both!(groups_filters_and_enrollment_secrets_are_edited, |app| {
    let browser = Browser::sign_in(&app, "tenant-a", EDITOR).await;
    let form = browser.get("/groups/new").await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(form.text.contains("data-rule-dialect=\"membership\""));
    assert!(form
        .text
        .contains("<script src=\"/assets/dashboard.js\" defer></script>"));
    let csrf = form.csrf();

    // The rule check answers what the API answers.
    let bad_rule = "device.displayName -startsWith";
    let check = browser
        .get(&format!(
            "/rules/check?dialect=membership&rule={}",
            enc(bad_rule)
        ))
        .await;
    assert_eq!(check.status, 200);
    let check: Value = serde_json::from_str(&check.text).unwrap();
    assert_eq!(check["valid"], false);
    let api = app
        .post(
            "groups",
            &json!({"displayName":"x","mailNickname":"x","mailEnabled":false,"securityEnabled":true,
                "groupTypes":["DynamicMembership"],"membershipRule":bad_rule})
            .to_string(),
        )
        .await;
    assert_eq!(api.status, 400);
    assert_eq!(check["message"], api.json["error"]["message"]);
    let good = browser
        .get(&format!(
            "/rules/check?dialect=filter&rule={}",
            enc("(device.deviceName -startsWith \"LAB\")")
        ))
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&good.text).unwrap()["valid"],
        true
    );
    // The server checks again on submit.
    let refused = browser
        .post(
            "/groups/new",
            &format!(
                "csrf={csrf}&displayName=Lab+machines&mailNickname=lab&membership=dynamic&membershipRule={}",
                enc(bad_rule)
            ),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused
        .text
        .contains("The &#39;membershipRule&#39; is not valid"));
    assert!(refused.text.contains("value=\"Lab machines\""));
    let created = browser
        .post(
            "/groups/new",
            &format!(
                "csrf={csrf}&displayName=Lab+machines&mailNickname=lab&membership=dynamic&membershipRule={}",
                enc("device.displayName -startsWith \"LAB-\"")
            ),
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.text);
    let dynamic = created
        .location()
        .strip_prefix("/groups/")
        .unwrap()
        .to_owned();
    let stored = app.get(&format!("groups/{dynamic}")).await;
    assert_eq!(stored.json["groupTypes"], json!(["DynamicMembership"]));
    assert_eq!(
        stored.json["membershipRule"],
        "device.displayName -startsWith \"LAB-\""
    );

    // A static group: members added and removed.
    let created = browser
        .post(
            "/groups/new",
            &format!("csrf={csrf}&displayName=Pilot&mailNickname=pilot&membership=assigned&membershipRule="),
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.text);
    let pilot = created
        .location()
        .strip_prefix("/groups/")
        .unwrap()
        .to_owned();
    let device = app.device("LAB-7").await;
    let page = browser.get(created.location()).await;
    assert!(page
        .text
        .contains(&format!("<option value=\"{device}\">LAB-7</option>")));
    let added = browser
        .post(
            &format!("/groups/{pilot}/members"),
            &format!("csrf={csrf}&device={device}"),
        )
        .await;
    assert_eq!(added.status, 303, "{}", added.text);
    let members = app.get(&format!("groups/{pilot}/members")).await;
    assert_eq!(members.json["value"][0]["id"], device.as_str());
    let unknown = browser
        .post(
            &format!("/groups/{pilot}/members"),
            &format!("csrf={csrf}&device=no-such-device"),
        )
        .await;
    assert!(
        unknown.status == 400 || unknown.status == 404,
        "{} {}",
        unknown.status,
        unknown.text
    );
    let removed = browser
        .post(
            &format!("/groups/{pilot}/members/{device}/remove"),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(removed.status, 303, "{}", removed.text);
    let members = app.get(&format!("groups/{pilot}/members")).await;
    assert_eq!(members.json["value"], json!([]));
    // The dynamic group's page has the device as a member by its rule, and no member form.
    let page = browser.get(&format!("/groups/{dynamic}")).await;
    assert!(page.text.contains("LAB-7"), "{}", page.text);
    assert!(!page.text.contains("Add member"));

    // An assignment filter.
    let refused = browser
        .post(
            "/filters/new",
            &format!(
                "csrf={csrf}&displayName=Lab&platform=windows10AndLater&rule={}",
                enc("(device.nope -eq \"x\")")
            ),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text.contains("The &#39;rule&#39; is not valid"),
        "{}",
        refused.text
    );
    let created = browser
        .post(
            "/filters/new",
            &format!(
                "csrf={csrf}&displayName=Lab&platform=windows10AndLater&rule={}",
                enc("(device.deviceName -startsWith \"LAB\")")
            ),
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.text);
    let filters = app.get("deviceManagement/assignmentFilters").await;
    assert_eq!(filters.json["value"][0]["displayName"], "Lab");
    assert_eq!(
        filters.json["value"][0]["rule"],
        "(device.deviceName -startsWith \"LAB\")"
    );
    assert!(browser.get("/filters").await.text.contains(">Lab</a>"));

    // An enrollment secret: shown once with the install command, then usable, then revoked.
    let page = browser.get("/secrets").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains(&format!("value=\"{pilot}\"")));
    assert!(
        !page.text.contains(&format!("value=\"{dynamic}\"")),
        "dynamic groups are not offered"
    );
    let refused = browser
        .post(
            "/secrets",
            &format!("csrf={csrf}&displayName=Lab&group={pilot}&expires=2001-01-01T00%3A00&uses="),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert!(refused
        .text
        .contains("&#39;expirationDateTime&#39; must be in the future."));
    let created = browser
        .post(
            "/secrets",
            &format!("csrf={csrf}&displayName=Lab+rollout&group={pilot}&expires=2099-01-01T12%3A00&uses=5"),
        )
        .await;
    // Post, redirect, get: the secret travels in a sealed cookie of this session to the list
    // page, which shows it once and clears the cookie — a reload shows it no more and creates
    // nothing.
    assert_eq!(created.status, 303, "{}", created.text);
    assert_eq!(created.headers["location"], "/secrets");
    let flash = created.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        flash.contains("HttpOnly")
            && flash.contains("SameSite=Strict")
            && flash.contains("Path=/secrets"),
        "{flash}"
    );
    let flash = flash.split(';').next().unwrap().to_owned();
    let created = browser
        .send("GET", "/secrets", None, &[("cookie", &flash)])
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert!(created.headers["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("remediate_created=; "));
    let at = created.text.find("<code id=\"secret\">").unwrap() + "<code id=\"secret\">".len();
    let secret = &created.text[at..at + created.text[at..].find('<').unwrap()];
    assert!(secret.starts_with("rmd_"), "{secret}");
    assert!(created.text.contains(&format!(
        "remediate-agent install --server {} --secret {secret}",
        root(&app)
    )));
    let listed = app.get("deviceManagement/agentEnrollmentSecrets").await;
    let item = &listed.json["value"][0];
    assert_eq!(item["displayName"], "Lab rollout");
    assert_eq!(item["groupIds"], json!([pilot]));
    assert_eq!(item["usesRemaining"], 5);
    assert!(item["expirationDateTime"]
        .as_str()
        .unwrap()
        .starts_with("2099-01-01T12:00:00"));
    let secret_id = item["id"].as_str().unwrap().to_owned();
    // Shown once: the list does not carry it, and the cookie is of this session only.
    let list = browser.get("/secrets").await;
    assert!(!list.text.contains(secret));
    assert!(list.text.contains("Lab rollout"));
    let other = Browser::sign_in(&app, "tenant-a", EDITOR).await;
    let elsewhere = other
        .send("GET", "/secrets", None, &[("cookie", &flash)])
        .await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.text);
    assert!(!elsewhere.text.contains(secret));
    let mut forged = flash.clone();
    forged.insert(forged.find('=').unwrap() + 1, 'A');
    let forged = browser
        .send("GET", "/secrets", None, &[("cookie", &forged)])
        .await;
    assert!(!forged.text.contains(secret));
    assert_eq!(
        app.get("deviceManagement/agentEnrollmentSecrets")
            .await
            .json["value"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let enroll = |secret: String| {
        let url = format!("{}/agent/enroll", root(&app));
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&json!({"secret": secret, "device": {"deviceName": "PILOT-1"}}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(enroll(secret.to_owned()).await, 200);
    let members = app.get(&format!("groups/{pilot}/members")).await;
    assert_eq!(members.json["value"][0]["displayName"], "PILOT-1");
    let revoked = browser
        .post(
            &format!("/secrets/{secret_id}/revoke"),
            &format!("csrf={csrf}"),
        )
        .await;
    assert_eq!(revoked.status, 303, "{}", revoked.text);
    let listed = app.get("deviceManagement/agentEnrollmentSecrets").await;
    assert_eq!(listed.json["value"], json!([]));
    assert_eq!(enroll(secret.to_owned()).await, 401);

    // Groups and filters are deleted.
    let deleted = browser
        .post(&format!("/groups/{pilot}/delete"), &format!("csrf={csrf}"))
        .await;
    assert_eq!(deleted.status, 303);
    assert_eq!(app.get(&format!("groups/{pilot}")).await.status, 404);
});

both!(
    read_only_sessions_see_no_write_controls_and_forged_writes_are_403,
    |app| {
        let script = app.script("Printer").await;
        let group = app
        .post(
            "groups",
            r#"{"displayName":"Lab","mailNickname":"lab","mailEnabled":false,"securityEnabled":true}"#,
        )
        .await;
        let group = group.json["id"].as_str().unwrap().to_owned();
        let browser = Browser::sign_in(&app, "tenant-a", READER).await;
        let overview = browser.get("/").await;
        assert_eq!(overview.status, 200);
        assert!(!overview.text.contains("/scripts/new"));
        let page = browser.get(&format!("/scripts/{script}")).await;
        assert_eq!(page.status, 200);
        for control in ["/edit\"", "/assign\"", "/delete\""] {
            assert!(!page.text.contains(control), "{control}");
        }
        let groups = browser.get("/groups").await;
        assert_eq!(groups.status, 200, "{}", groups.text);
        assert!(groups.text.contains(">Lab</a>"));
        assert!(!groups.text.contains("/groups/new"));
        let group_page = browser.get(&format!("/groups/{group}")).await;
        assert_eq!(group_page.status, 200);
        assert!(!group_page
            .text
            .contains("<form method=\"post\" action=\"/groups/"));
        let filters = browser.get("/filters").await;
        assert!(!filters.text.contains("/filters/new"));
        // Pages of write forms are 403.
        for path in [
            "/scripts/new".to_owned(),
            format!("/scripts/{script}/edit"),
            format!("/scripts/{script}/assign"),
            "/groups/new".to_owned(),
            "/filters/new".to_owned(),
            "/secrets".to_owned(),
        ] {
            assert_eq!(browser.get(&path).await.status, 403, "{path}");
        }
        // Forged posts with this session's valid CSRF token: 403 naming the permission, nothing
        // changed.
        let csrf = overview.csrf();
        let forged = post_multipart(
            &browser,
            "/scripts/new",
            &[
                Part::Field("csrf", &csrf),
                Part::Field("displayName", "Forged"),
                Part::File("detection", "d.sh", b"exit 0"),
            ],
        )
        .await;
        assert_eq!(forged.status, 403, "{}", forged.text);
        assert!(forged
            .text
            .contains("DeviceManagementScripts.ReadWrite.All"));
        for (path, form) in [
            (format!("/scripts/{script}/delete"), String::new()),
            (
                format!("/scripts/{script}/assign"),
                "rows=1&target-0=all-devices".to_owned(),
            ),
            (
                "/groups/new".to_owned(),
                "displayName=F&mailNickname=f&membership=assigned".to_owned(),
            ),
            (format!("/groups/{group}/delete"), String::new()),
            (format!("/groups/{group}/members"), "device=x".to_owned()),
            ("/secrets".to_owned(), "displayName=F".to_owned()),
        ] {
            let page = browser.post(&path, &format!("csrf={csrf}&{form}")).await;
            assert_eq!(page.status, 403, "{path}: {}", page.text);
        }
        let scripts = app.get("deviceManagement/deviceHealthScripts").await;
        assert_eq!(scripts.json["value"].as_array().unwrap().len(), 1);
        let assignments = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/assignments"
            ))
            .await;
        assert_eq!(assignments.json["value"], json!([]));
        assert_eq!(app.get(&format!("groups/{group}")).await.status, 200);
        let secrets = app.get("deviceManagement/agentEnrollmentSecrets").await;
        assert_eq!(secrets.json["value"], json!([]));
    }
);

both!(cross_site_and_tokenless_form_posts_are_refused, |app| {
    let browser = Browser::sign_in(&app, "tenant-a", EDITOR).await;
    let csrf = browser.get("/scripts/new").await.csrf();
    let body = multipart(&[
        Part::Field("csrf", &csrf),
        Part::Field("displayName", "Cross-site"),
        Part::File("detection", "d.sh", b"exit 0"),
    ]);
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
        vec![("origin", "null")],
    ] {
        let page = browser
            .send_body(
                "POST",
                "/scripts/new",
                Some((&content_type, body.clone())),
                &headers,
            )
            .await;
        assert_eq!(page.status, 403, "{headers:?}");
        assert!(page.text.contains("CSRF"), "{}", page.text);
    }
    // A wrong or missing token.
    for token in ["", "csrf=0000&", "csrf=&"] {
        let page = browser
            .post(
                "/groups/new",
                &format!("{token}displayName=X&mailNickname=x"),
            )
            .await;
        assert_eq!(page.status, 403, "{token}");
    }
    // The same form from the dashboard's own page is accepted.
    let page = browser
        .send_body(
            "POST",
            "/scripts/new",
            Some((&content_type, body.clone())),
            &[("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.text);
    let scripts = app.get("deviceManagement/deviceHealthScripts").await;
    assert_eq!(scripts.json["value"].as_array().unwrap().len(), 1);
    // Without a session: no page, no write.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = anonymous
        .post(format!("{}/groups/new", root(&app)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("displayName=X&mailNickname=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = anonymous
        .get(format!("{}/groups", root(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
});

both!(
    uploads_over_the_body_limit_are_413_and_the_script_asset_is_served,
    |app| {
        let browser = Browser::sign_in(&app, "tenant-a", EDITOR).await;
        let csrf = browser.get("/scripts/new").await.csrf();
        let big = vec![b'#'; 4 * 1024 * 1024 + 1];
        let page = post_multipart(
            &browser,
            "/scripts/new",
            &[
                Part::Field("csrf", &csrf),
                Part::File("detection", "big.sh", &big),
            ],
        )
        .await;
        assert_eq!(page.status, 413, "{}", page.text);
        // Within the body limit, but over it once base64-encoded for the API: the API's limit.
        let large = vec![b'#'; 3 * 1024 * 1024 + 512 * 1024];
        let page = post_multipart(
            &browser,
            "/scripts/new",
            &[
                Part::Field("csrf", &csrf),
                Part::File("detection", "large.sh", &large),
            ],
        )
        .await;
        assert_eq!(
            page.status,
            413,
            "{}",
            &page.text[..page.text.len().min(500)]
        );
        assert!(page.text.contains("the API accepts at most"));
        let scripts = app.get("deviceManagement/deviceHealthScripts").await;
        assert_eq!(scripts.json["value"], json!([]));

        // The script: same origin, cached, without a session; pages allow it in their CSP.
        let response = reqwest::get(format!("{}/assets/dashboard.js", root(&app)))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(response.text().await.unwrap().contains("/rules/check"));
    }
);

both!(long_lists_are_paged_and_long_choosers_ask_for_ids, |app| {
    // 1,001 groups: the list pages 100 at a time through every one, in name order; a chooser
    // (at most 1,000 options) gives way to typing ids rather than offering part of the list.
    let mut names = Vec::new();
    for i in 0..1001 {
        let name = format!("Group {i:04}");
        let created = app
            .post(
                "groups",
                &json!({"displayName": name, "mailNickname": format!("g{i}"),
                    "mailEnabled": false, "securityEnabled": true})
                .to_string(),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        names.push(name);
    }
    let browser = Browser::sign_in(&app, "tenant-a", EDITOR).await;
    let mut seen = Vec::new();
    let mut path = "/groups".to_owned();
    let mut pages = 0;
    loop {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        pages += 1;
        let rows = page.rows("groups");
        assert!(rows.len() <= 100);
        let first = seen.len() + 1;
        seen.extend(rows.iter().cloned());
        assert!(
            page.text
                .contains(&format!("<p>Groups {first}–{}</p>", seen.len())),
            "page {pages} says which rows it shows"
        );
        assert_eq!(pages > 1, page.text.contains(">First page</a>"));
        let Some(at) = page.text.find("\" rel=\"next\">Next page</a>") else {
            break;
        };
        let start = page.text[..at].rfind("<a href=\"").unwrap() + "<a href=\"".len();
        path = page.text[start..at].replace("&amp;", "&");
    }
    assert_eq!(pages, 11);
    assert_eq!(seen, names);
    // A forged continuation is the API's 400, not a wrong page.
    let forged = browser.get("/groups?after=forged&n=100").await;
    assert_eq!(forged.status, 400, "{}", forged.text);

    let secrets = browser.get("/secrets").await;
    assert_eq!(secrets.status, 200, "{}", secrets.text);
    assert!(!secrets.text.contains("name=\"group\" value="));
    assert!(secrets.text.contains("name=\"groupIds\""));
});
