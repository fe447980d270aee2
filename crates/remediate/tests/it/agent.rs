//! The device agent end to end: the real server and real `remediate-agent` processes running
//! shell scripts written by the tests — enrollment, the outcome table, reports through the
//! seed's endpoint, on-demand runs, pending scripts, revocation, and reports queued while the
//! server is away and delivered exactly once when it is back.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use serde_json::{json, Value};

use crate::both;
use crate::harness::TestApp;

pub(crate) const AGENT: &str = env!("CARGO_BIN_EXE_remediate-agent");
const SCRIPTS: &str = "deviceManagement/deviceHealthScripts";

pub(crate) fn b64(content: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(content)
}

pub(crate) fn state_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("remediate-agent-it-{}", uuid::Uuid::new_v4()));
    // The agent creates it (0700) itself.
    dir
}

pub(crate) fn server_url(app: &TestApp) -> String {
    app.base.trim_end_matches("/beta").to_owned()
}

/// Run the agent with `args`; (exit code, stdout, stderr).
pub(crate) fn agent(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(AGENT)
        .args(args)
        .env("REMEDIATE_AGENT_LOG", "info")
        .output()
        .expect("the agent runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub(crate) async fn secret(app: &TestApp, body: Value) -> String {
    let reply = app
        .post("deviceManagement/agentEnrollmentSecrets", &body.to_string())
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(reply.json["secret"].as_str().unwrap().starts_with("rmd_"));
    reply.json["secret"].as_str().unwrap().to_owned()
}

pub(crate) async fn enroll(
    app: &TestApp,
    dir: &std::path::Path,
    name: &str,
    secret: &str,
) -> String {
    let (code, out, err) = agent(&[
        "enroll",
        "--server",
        &server_url(app),
        "--secret",
        secret,
        "--state-dir",
        dir.to_str().unwrap(),
        "--name",
        name,
    ]);
    assert_eq!(code, 0, "enroll: {out}{err}");
    out.trim().rsplit(' ').next().unwrap_or_default().to_owned()
}

pub(crate) fn run_once(dir: &std::path::Path) -> (i32, String, String) {
    run_once_with(dir, &[])
}

/// `run --once` with more arguments.
pub(crate) fn run_once_with(dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "run",
        "--once",
        "--state-dir",
        dir.to_str().unwrap(),
        "--script-timeout",
        "20",
    ];
    args.extend_from_slice(extra);
    agent(&args)
}

/// A script with these detection and remediation shell scripts, assigned to all devices.
async fn assigned(
    app: &TestApp,
    name: &str,
    detection: &str,
    remediation: Option<&str>,
    remediate: bool,
    schedule: Value,
) -> String {
    let mut body = json!({"displayName": name, "detectionScriptContent": b64(detection)});
    if let Some(r) = remediation {
        body["remediationScriptContent"] = json!(b64(r));
    }
    assigned_body(app, body, remediate, schedule).await
}

/// Create a script from `body` and assign it to all devices.
pub(crate) async fn assigned_body(
    app: &TestApp,
    body: Value,
    remediate: bool,
    schedule: Value,
) -> String {
    let reply = app.post(SCRIPTS, &body.to_string()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.json["id"].as_str().unwrap().to_owned();
    let assign = json!({"deviceHealthScriptAssignments": [{
        "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"},
        "runRemediationScript": remediate, "runSchedule": schedule}]});
    let reply = app
        .post(&format!("{SCRIPTS}/{id}/assign"), &assign.to_string())
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    id
}

pub(crate) async fn state_of(app: &TestApp, script: &str, device: &str) -> Value {
    let reply = app
        .get(&format!(
            "{SCRIPTS}/{script}/deviceRunStates/{script}:{device}"
        ))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json
}

pub(crate) async fn history_len(app: &TestApp, script: &str, device: &str) -> usize {
    let reply = app
        .get(&format!(
            "{SCRIPTS}/{script}/deviceRunStates/{script}:{device}/history"
        ))
        .await;
    reply.json["value"].as_array().map_or(0, Vec::len)
}

pub(crate) fn daily() -> Value {
    json!({"@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule", "interval": 23})
}

both!(
    an_enrolled_agent_runs_its_scripts_and_reports_every_outcome,
    |app| {
        let marker =
            std::env::temp_dir().join(format!("remediate-marker-{}", uuid::Uuid::new_v4()));
        let m = marker.display();
        // Every row of the outcome table (docs/agent-runs.md).
        let rows = [
            (
                "clean",
                "#!/bin/sh\necho all good\nexit 0\n".to_owned(),
                None,
                true,
                "success",
                "unknown",
            ),
            (
                "not allowed",
                "#!/bin/sh\nexit 1\n".to_owned(),
                Some("#!/bin/sh\nexit 0\n".to_owned()),
                false,
                "fail",
                "skipped",
            ),
            (
                "fixed",
                format!("#!/bin/sh\n[ -f {m} ] && exit 0\necho missing\nexit 1\n"),
                Some(format!("#!/bin/sh\ntouch {m}\n")),
                true,
                "fail",
                "success",
            ),
            (
                "still broken",
                "#!/bin/sh\necho broken\nexit 1\n".to_owned(),
                Some("#!/bin/sh\nexit 0\n".to_owned()),
                true,
                "fail",
                "remediationFailed",
            ),
            (
                "fix fails",
                "#!/bin/sh\nexit 1\n".to_owned(),
                Some("#!/bin/sh\necho cannot >&2\nexit 2\n".to_owned()),
                true,
                "fail",
                "scriptError",
            ),
            (
                "detection error",
                "#!/bin/sh\necho oops >&2\nexit 3\n".to_owned(),
                None,
                true,
                "scriptError",
                "unknown",
            ),
        ];
        let mut ids = Vec::new();
        for (name, detection, remediation, allowed, _, _) in &rows {
            ids.push(
                assigned(
                    &app,
                    name,
                    detection,
                    remediation.as_deref(),
                    *allowed,
                    daily(),
                )
                .await,
            );
        }
        let secret = secret(&app, json!({"displayName": "lab"})).await;
        let dir = state_dir();
        let device = enroll(&app, &dir, "LAB-AGENT-1", &secret).await;
        let item = app
            .get(&format!("deviceManagement/managedDevices/{device}"))
            .await;
        assert_eq!(item.json["deviceName"], "LAB-AGENT-1");
        assert_eq!(item.json["operatingSystem"], "Linux");
        let (code, out, err) = run_once(&dir);
        assert_eq!(code, 0, "{out}{err}");
        let mut wrong = Vec::new();
        for ((name, _, _, _, detection, remediation), id) in rows.iter().zip(&ids) {
            let state = state_of(&app, id, &device).await;
            if state["detectionState"] != *detection || state["remediationState"] != *remediation {
                wrong.push(format!(
                    "{name}: {} / {} ({state})",
                    state["detectionState"], state["remediationState"]
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let clean = state_of(&app, &ids[0], &device).await;
        assert_eq!(clean["preRemediationDetectionScriptOutput"], "all good\n");
        assert!(clean["expectedStateUpdateDateTime"].is_string());
        let fails = state_of(&app, &ids[4], &device).await;
        assert!(fails["remediationScriptError"]
            .as_str()
            .unwrap()
            .contains("cannot"));
        // The check-in recorded the sync; the run summary counts the device.
        let summary = app.get(&format!("{SCRIPTS}/{}/runSummary", ids[2])).await;
        assert_eq!(
            summary.json["issueRemediatedDeviceCount"], 1,
            "{}",
            summary.text
        );
        // A second pass: nothing is due (every 23 hours), nothing reported again.
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        assert_eq!(history_len(&app, &ids[0], &device).await, 1);
        // Enrolling again with the same state directory keeps the device.
        let again = enroll(&app, &dir, "LAB-AGENT-1", &secret).await;
        assert_eq!(again, device);
        let (_, status, _) = agent(&["status", "--state-dir", dir.to_str().unwrap()]);
        assert!(
            status.contains(&device) && status.contains("queued reports: 0"),
            "{status}"
        );
        // A reader that is gone before the first line (`status | head -0`) ends the command
        // quietly: exit 0, nothing on stderr (it panicked on the broken pipe).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(AGENT)
            .args(["status", "--state-dir", dir.to_str().unwrap()])
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "{:?}: {err}",
            out.status
        );
        let _ = std::fs::remove_file(&marker);
        let _ = std::fs::remove_dir_all(&dir);
    }
);

both!(on_demand_runs_pending_scripts_and_revocation, |app| {
    let now_script = assigned(&app, "now", "#!/bin/sh\nexit 0\n", None, false, daily()).await;
    let later = assigned(
        &app,
        "later",
        "#!/bin/sh\nexit 0\n",
        None,
        false,
        json!({"@odata.type": "#microsoft.graph.deviceHealthScriptRunOnceSchedule", "interval": 1,
               "date": "2099-01-01", "time": "08:00:00.0000000", "useUtc": true}),
    )
    .await;
    let secret = secret(&app, json!({"usesRemaining": 1})).await;
    let dir = state_dir();
    let device = enroll(&app, &dir, "LAB-AGENT-2", &secret).await;
    let (code, _, err) = run_once(&dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(history_len(&app, &now_script, &device).await, 1);
    // Not due yet: reported pending, with the time it will run.
    let pending = state_of(&app, &later, &device).await;
    assert_eq!(pending["detectionState"], "pending");
    assert!(pending["expectedStateUpdateDateTime"]
        .as_str()
        .unwrap()
        .starts_with("2099-01-01T08:00:00"));
    // On demand: run at the next check-in, whatever the schedule.
    let operator = app.mint(
        "tenant-a",
        &["DeviceManagementManagedDevices.PrivilegedOperations.All"],
        &[],
    );
    let reply = app
        .send(
            "POST",
            &format!(
                "deviceManagement/managedDevices/{device}/initiateOnDemandProactiveRemediation"
            ),
            Some(&operator),
            Some(&json!({"scriptPolicyId": now_script}).to_string()),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let (code, _, err) = run_once(&dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(history_len(&app, &now_script, &device).await, 2);
    // The secret allowed one use.
    let (code, _, err) = agent(&[
        "enroll",
        "--server",
        &server_url(&app),
        "--secret",
        &secret,
        "--state-dir",
        state_dir().to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("not valid"), "{err}");
    // Deleting the device revokes the credential: the agent stops and says so.
    assert_eq!(
        app.delete(&format!("deviceManagement/managedDevices/{device}"))
            .await
            .status,
        204
    );
    let (code, _, err) = run_once(&dir);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("credential"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
});

both!(
    reports_queue_while_the_server_is_away_and_arrive_once,
    |app| {
        let mut app = app;
        // Run once, a few seconds from now (UTC): the first pass reports the scripts pending, the
        // second (server away) runs them and must queue the reports.
        // Far enough ahead that the first pass (enroll, check-in) ends before it even on a
        // loaded CI machine.
        let schedule = run_once_soon(10);
        let script = assigned(
            &app,
            "q",
            "#!/bin/sh\necho queued\nexit 1\n",
            None,
            false,
            schedule.clone(),
        )
        .await;
        let other = assigned(&app, "q2", "#!/bin/sh\nexit 0\n", None, false, schedule).await;
        let secret = secret(&app, json!({})).await;
        let dir = state_dir();
        let device = enroll(&app, &dir, "LAB-AGENT-3", &secret).await;
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            state_of(&app, &script, &device).await["detectionState"],
            "pending"
        );
        tokio::time::sleep(std::time::Duration::from_secs(11)).await;
        let address = app
            .base
            .trim_start_matches("http://")
            .trim_end_matches("/beta")
            .to_owned();
        app.stop();
        let (code, _, err) = run_once(&dir);
        assert_eq!(
            code, 75,
            "reports stay queued while the server is away: {err}"
        );
        let (_, status, _) = agent(&["status", "--state-dir", dir.to_str().unwrap()]);
        assert!(status.contains("queued reports: 2"), "{status}");
        app.args = vec!["--listen".into(), address];
        app.spawn();
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        // Once more: nothing new is sent.
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        for id in [&script, &other] {
            // The pending report and the run: each exactly once.
            assert_eq!(history_len(&app, id, &device).await, 2, "{id}");
        }
        let state = state_of(&app, &script, &device).await;
        assert_eq!(state["detectionState"], "fail");
        assert_eq!(state["remediationState"], "skipped");
        assert_eq!(state["preRemediationDetectionScriptOutput"], "queued\n");
        let (ok, report) = app.recount_check();
        assert!(ok, "{report}");
        let _ = std::fs::remove_dir_all(&dir);
    }
);

/// A run-once schedule `seconds` from now (UTC).
pub(crate) fn run_once_soon(seconds: u64) -> Value {
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    json!({"@odata.type": "#microsoft.graph.deviceHealthScriptRunOnceSchedule", "interval": 1,
           "date": civil_date(days as i64),
           "time": format!("{:02}:{:02}:{:02}.0000000", rest / 3600, rest % 3600 / 60, rest % 60),
           "useUtc": true})
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (civil-from-days).
pub(crate) fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

both!(
    changed_scripts_are_downloaded_again_and_unassigned_ones_stop,
    |app| {
        let marker = std::env::temp_dir().join(format!("remediate-v2-{}", uuid::Uuid::new_v4()));
        let script = assigned(
            &app,
            "versioned",
            "#!/bin/sh\necho v1\nexit 0\n",
            None,
            false,
            daily(),
        )
        .await;
        let secret = secret(&app, json!({})).await;
        let dir = state_dir();
        let device = enroll(&app, &dir, "LAB-AGENT-4", &secret).await;
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            state_of(&app, &script, &device).await["preRemediationDetectionScriptOutput"],
            "v1\n"
        );
        // New content: a new version; the agent downloads it at the next check-in. It runs on
        // demand (its schedule is not due again).
        let v2 = format!("#!/bin/sh\ntouch {}\necho v2\nexit 0\n", marker.display());
        let reply = app
            .patch(
                &format!("{SCRIPTS}/{script}"),
                &json!({"detectionScriptContent": b64(&v2)}).to_string(),
            )
            .await;
        assert_eq!(reply.json["version"], "2", "{}", reply.text);
        let operator = app.mint(
            "tenant-a",
            &["DeviceManagementManagedDevices.PrivilegedOperations.All"],
            &[],
        );
        let on_demand = |id: String| {
            let app = &app;
            let operator = operator.clone();
            let device = device.clone();
            async move {
                app.send(
                "POST",
                &format!("deviceManagement/managedDevices/{device}/initiateOnDemandProactiveRemediation"),
                Some(&operator),
                Some(&json!({"scriptPolicyId": id}).to_string()),
            )
            .await
            .status
            }
        };
        assert_eq!(on_demand(script.clone()).await, 204);
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("script content downloaded"), "{err}");
        assert_eq!(
            state_of(&app, &script, &device).await["preRemediationDetectionScriptOutput"],
            "v2\n"
        );
        assert!(marker.exists());
        // Unassigned: the agent forgets it and never runs it again, even when asked.
        let reply = app
            .post(
                &format!("{SCRIPTS}/{script}/assign"),
                r#"{"deviceHealthScriptAssignments":[]}"#,
            )
            .await;
        assert_eq!(reply.status, 200);
        let _ = std::fs::remove_file(&marker);
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        assert!(!marker.exists(), "an unassigned script ran");
        let (_, status, _) = agent(&["status", "--state-dir", dir.to_str().unwrap()]);
        assert!(status.contains("scripts: 0"), "{status}");
        assert_eq!(history_len(&app, &script, &device).await, 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
);

both!(
    long_outputs_are_cut_visibly_and_hung_scripts_are_killed,
    |app| {
        let pid_file =
            std::env::temp_dir().join(format!("remediate-hang-{}", uuid::Uuid::new_v4()));
        let loud = assigned(
        &app,
        "loud",
        "#!/bin/sh\ni=0\nwhile [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done\nexit 0\n",
        None,
        false,
        daily(),
    )
    .await;
        let hang = assigned(
            &app,
            "hang",
            &format!(
                "#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n",
                pid_file.display()
            ),
            None,
            false,
            daily(),
        )
        .await;
        let secret = secret(&app, json!({})).await;
        let dir = state_dir();
        let device = enroll(&app, &dir, "LAB-AGENT-5", &secret).await;
        let (code, _, err) = agent(&[
            "run",
            "--once",
            "--state-dir",
            dir.to_str().unwrap(),
            "--script-timeout",
            "2",
            "--output-chars",
            "500",
        ]);
        assert_eq!(code, 0, "{err}");
        let output = state_of(&app, &loud, &device).await["preRemediationDetectionScriptOutput"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            output.starts_with("[remediate: "),
            "the cut is marked: {}",
            &output[..80.min(output.len())]
        );
        assert!(
            output.ends_with("line-1999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"),
            "the tail is kept"
        );
        assert!(
            output.chars().count() < 600,
            "{} characters",
            output.chars().count()
        );
        let hung = state_of(&app, &hang, &device).await;
        assert_eq!(hung["detectionState"], "scriptError", "{hung}");
        // The whole process group was killed: the backgrounded sleep is gone.
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
        let pid = pid.trim();
        assert!(!pid.is_empty());
        // Gone, or a zombie waiting for its new parent to reap it (killed either way).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .chars()
            .next();
        assert!(
            matches!(state, None | Some('Z') | Some('X')),
            "the grandchild {pid} survived the timeout: {stat}"
        );
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_dir_all(&dir);
    }
);

both!(
    secrets_join_groups_and_targeting_decides_what_agents_run,
    |app| {
        let group = app
        .post(
            "groups",
            r#"{"displayName":"Pilot","mailEnabled":false,"mailNickname":"pilot","securityEnabled":true}"#,
        )
        .await;
        assert_eq!(group.status, 201, "{}", group.text);
        let group = group.json["id"].as_str().unwrap().to_owned();
        let make = |name: &'static str, target: Value| {
            let app = &app;
            async move {
                let body = json!({"displayName": name, "detectionScriptContent": b64("#!/bin/sh\nexit 0\n")});
                let reply = app.post(SCRIPTS, &body.to_string()).await;
                let id = reply.json["id"].as_str().unwrap().to_owned();
                let assign = json!({"deviceHealthScriptAssignments": [{"target": target, "runSchedule": daily()}]});
                assert_eq!(
                    app.post(&format!("{SCRIPTS}/{id}/assign"), &assign.to_string())
                        .await
                        .status,
                    200
                );
                id
            }
        };
        let pilot = make(
            "pilot",
            json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": group}),
        )
        .await;
        let others = make("others", json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "7d4c5a2e-0000-4000-8000-000000000001"})).await;
        let pilot_secret = secret(&app, json!({"groupIds": [group]})).await;
        let plain_secret = secret(&app, json!({})).await;
        let (in_dir, out_dir) = (state_dir(), state_dir());
        let member = enroll(&app, &in_dir, "PILOT-1", &pilot_secret).await;
        let outsider = enroll(&app, &out_dir, "OTHER-1", &plain_secret).await;
        let members = app.get(&format!("groups/{group}/members")).await;
        assert_eq!(
            members.json["value"][0]["id"],
            member.as_str(),
            "{}",
            members.text
        );
        for dir in [&in_dir, &out_dir] {
            let (code, _, err) = run_once(dir);
            assert_eq!(code, 0, "{err}");
        }
        assert_eq!(history_len(&app, &pilot, &member).await, 1);
        let reply = app
            .get(&format!(
                "{SCRIPTS}/{pilot}/deviceRunStates/{pilot}:{outsider}"
            ))
            .await;
        assert_eq!(reply.status, 404, "the outsider never ran the pilot script");
        let reply = app
            .get(&format!("{SCRIPTS}/{others}/deviceRunStates"))
            .await;
        assert_eq!(reply.json["value"], json!([]));
        for dir in [in_dir, out_dir] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
);

// A retry after a lost answer repeats a report the server already stored: same run state, same
// lastStateUpdateDateTime and content. It changes nothing — no second history record, counters
// unchanged — whether it comes back as the POST or as the PATCH.
both!(a_repeated_report_is_a_no_op, |app| {
    let script = app.script("repeat").await;
    let device = app.device("REPEAT-1").await;
    let report = r#""detectionState":"fail","remediationState":"success","lastStateUpdateDateTime":"2026-12-01T10:00:00.123Z","preRemediationDetectionScriptOutput":"x""#;
    assert_eq!(app.run_state(&script, &device, report).await.status, 201);
    let state = format!("{SCRIPTS}/{script}/deviceRunStates/{script}:{device}");
    let summary = app
        .get(&format!("{SCRIPTS}/{script}/runSummary"))
        .await
        .json;
    // The POST again (its answer was lost): 409, nothing changed; then the PATCH twice.
    assert_eq!(app.run_state(&script, &device, report).await.status, 409);
    for _ in 0..2 {
        let reply = app.patch(&state, &format!("{{{report}}}")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(history_len(&app, &script, &device).await, 1);
    assert_eq!(
        app.get(&format!("{SCRIPTS}/{script}/runSummary"))
            .await
            .json,
        summary
    );
    let (ok, text) = app.recount_check();
    assert!(ok, "{text}");
});

// The agent killed with SIGKILL while it delivers queued reports (each answer slowed down by the
// server): whatever it had sent, the next run delivers the rest; no report is lost or doubled.
both!(
    an_agent_killed_mid_delivery_loses_and_doubles_nothing,
    |app| {
        let mut app = app;
        // Far enough ahead that the first pass (enroll, check-in) ends before it even on a
        // loaded CI machine.
        let schedule = run_once_soon(10);
        let mut scripts = Vec::new();
        for i in 0..6 {
            scripts.push(
                assigned(
                    &app,
                    &format!("k{i}"),
                    "#!/bin/sh\nexit 0\n",
                    None,
                    false,
                    schedule.clone(),
                )
                .await,
            );
        }
        let secret = secret(&app, json!({})).await;
        let dir = state_dir();
        let device = enroll(&app, &dir, "LAB-AGENT-6", &secret).await;
        assert_eq!(run_once(&dir).0, 0);
        tokio::time::sleep(std::time::Duration::from_secs(11)).await;
        let address = app
            .base
            .trim_start_matches("http://")
            .trim_end_matches("/beta")
            .to_owned();
        app.stop();
        assert_eq!(run_once(&dir).0, 75, "six reports queued");
        app.args = vec![
            "--listen".into(),
            address,
            "--inject-latency-ms".into(),
            "400".into(),
        ];
        app.spawn();
        let mut child = Command::new(AGENT)
            .args(["run", "--once", "--state-dir", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let (code, _, err) = run_once(&dir);
        assert_eq!(code, 0, "{err}");
        for id in &scripts {
            assert_eq!(
                history_len(&app, id, &device).await,
                2,
                "{id}: the pending report and one run"
            );
            assert_eq!(
                state_of(&app, id, &device).await["detectionState"],
                "success"
            );
        }
        let (ok, report) = app.recount_check();
        assert!(ok, "{report}");
        let _ = std::fs::remove_dir_all(&dir);
    }
);

both!(
    a_check_in_proves_its_credential_and_a_deleted_device_is_refused_at_once,
    |app| {
        // Over HTTP, as the agent speaks: enroll, exchange the credential, check in.
        let secret = secret(&app, json!({})).await;
        let raw = |path: &str, body: Value| {
            let url = app.url("").replace("/beta/", path);
            let client = reqwest::Client::new();
            async move {
                let response = client.post(url).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
        let (status, enrolled) = raw(
            "/agent/enroll",
            json!({"secret": secret, "device": {"deviceName": "CHECKIN-1"}}),
        )
        .await;
        assert_eq!(status, 200, "{enrolled}");
        let device = enrolled["deviceId"].as_str().unwrap().to_owned();
        let (status, token) = raw("/agent/token", enrolled.clone()).await;
        assert_eq!(status, 200, "{token}");
        let token = token["access_token"].as_str().unwrap().to_owned();
        let check_in = format!("deviceManagement/managedDevices/{device}/agentCheckIn");
        let first = app.send("POST", &check_in, Some(&token), Some("{}")).await;
        assert_eq!(first.status, 200, "{}", first.text);
        assert_eq!(first.json["changed"], true);
        let synced = app
            .get(&format!("deviceManagement/managedDevices/{device}"))
            .await;
        assert_ne!(synced.json["lastSyncDateTime"], "0001-01-01T00:00:00Z");
        // The same etag: nothing changed, no listing.
        let again = app
            .send(
                "POST",
                &check_in,
                Some(&token),
                Some(&json!({"etag": first.json["etag"]}).to_string()),
            )
            .await;
        assert_eq!(again.status, 200, "{}", again.text);
        assert_eq!(again.json["changed"], false);
        assert!(again.json.get("scripts").is_none(), "{}", again.text);
        // Deleted: the very next check-in with the still-unexpired token is refused (no minute
        // of grace: the check-in's write needs the credential), and so is the exchange.
        assert_eq!(
            app.delete(&format!("deviceManagement/managedDevices/{device}"))
                .await
                .status,
            204
        );
        let refused = app.send("POST", &check_in, Some(&token), Some("{}")).await;
        assert_eq!(refused.status, 401, "{}", refused.text);
        assert!(refused.text.contains("revoked"), "{}", refused.text);
        let (status, _) = raw("/agent/token", enrolled).await;
        assert_eq!(status, 401);
    }
);
