//! The device agent end to end, beyond plain runs: signed scripts (`enforceSignatureCheck`,
//! signed with `remediate sign-script`, checked against `run --trust-key`), scripts that run as
//! a user (`runAsAccount: user` with `--run-as-user`, as root), and `remediate-agent install`
//! (enrollment and the systemd unit, as root). The root-only tests skip, saying so, elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::agent::{
    agent, assigned_body, b64, enroll, run_once_with, secret, server_url, state_of, AGENT,
};
use crate::both;
use crate::harness::TestApp;

const REMEDIATE: &str = env!("CARGO_BIN_EXE_remediate");

/// A fresh path under the temporary directory (not created).
fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("remediate-{tag}-{}", uuid::Uuid::new_v4()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Run a program with `args`; (exit code, stdout, stderr).
fn command(program: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(program)
        .args(args)
        .env("REMEDIATE_AGENT_LOG", "info")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the program runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A script (`extra` are more properties: enforceSignatureCheck, runAsAccount), assigned to all
/// devices, remediation allowed, every 23 hours.
async fn assigned(
    app: &TestApp,
    name: &str,
    detection: &[u8],
    remediation: Option<&[u8]>,
    extra: Value,
) -> String {
    let mut body = json!({"displayName": name, "detectionScriptContent": b64(detection)});
    if let Some(r) = remediation {
        body["remediationScriptContent"] = json!(b64(r));
    }
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let schedule =
        json!({"@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule", "interval": 23});
    assigned_body(app, body, true, schedule).await
}

/// `remediate sign-script --key KEY` of `content`: the signed bytes.
fn signed(key: &Path, content: &str) -> Vec<u8> {
    let file = temp_path("unsigned");
    std::fs::write(&file, content).unwrap();
    let out = temp_path("signed");
    let (code, stdout, err) = command(
        REMEDIATE,
        &[
            "sign-script",
            "--key",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "sign-script: {stdout}{err}");
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&out);
    bytes
}

/// A new key (`sign-script --new-key`, `--public-key-out`): (private key, public key) files.
fn new_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub")),
    );
    let (code, stdout, err) = command(
        REMEDIATE,
        &[
            "sign-script",
            "--new-key",
            private.to_str().unwrap(),
            "--public-key-out",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "sign-script --new-key: {stdout}{err}");
    // The public key is printed, and is what was written.
    assert_eq!(
        stdout.trim(),
        std::fs::read_to_string(&public).unwrap().trim()
    );
    (private, public)
}

/// The reason in a refused script's report.
fn reason(state: &Value) -> String {
    state["preRemediationDetectionScriptError"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

both!(
    signed_scripts_run_only_with_a_valid_trusted_signature,
    |app| {
        let keys = temp_path("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let (key, public) = new_key(&keys, "signing");
        let (other_key, _) = new_key(&keys, "other");
        let markers = temp_path("markers");
        std::fs::create_dir_all(&markers).unwrap();
        let marker = |name: &str| markers.join(name);
        let m = |name: &str| marker(name).display().to_string();
        let enforce = json!({"enforceSignatureCheck": true});

        // Signed and valid: runs; what runs is the content without the signature line.
        let valid = assigned(
            &app,
            "valid",
            &signed(
                &key,
                "#!/bin/sh\ngrep -c 'remediate-[s]ignature:' \"$0\" || echo no signature line\nexit 0\n",
            ),
            None,
            enforce.clone(),
        )
        .await;
        // Signed detection and remediation: both checked, both run.
        let fixed = assigned(
            &app,
            "fixed",
            &signed(
                &key,
                &format!("#!/bin/sh\n[ -f {} ] && exit 0\nexit 1\n", m("fixed")),
            ),
            Some(&signed(&key, &format!("#!/bin/sh\ntouch {}\n", m("fixed")))),
            enforce.clone(),
        )
        .await;
        // Changed after signing: never runs.
        let mut tampered_content = signed(
            &key,
            &format!(
                "#!/bin/sh\ntouch {}\necho harmless\nexit 0\n",
                m("tampered")
            ),
        );
        let at = tampered_content
            .windows(8)
            .position(|w| w == b"harmless")
            .unwrap();
        tampered_content[at] = b'H';
        let tampered = assigned(&app, "tampered", &tampered_content, None, enforce.clone()).await;
        // Valid detection, tampered remediation: nothing runs.
        let mut bad_fix = signed(&key, &format!("#!/bin/sh\ntouch {}\n", m("bad-fix")));
        bad_fix.splice(0..0, format!("touch {}\n", m("bad-fix-extra")).bytes());
        let bad_remediation = assigned(
            &app,
            "bad remediation",
            &signed(
                &key,
                &format!("#!/bin/sh\ntouch {}\nexit 1\n", m("bad-fix-detect")),
            ),
            Some(&bad_fix),
            enforce.clone(),
        )
        .await;
        let unsigned = assigned(
            &app,
            "unsigned",
            format!("#!/bin/sh\ntouch {}\n", m("unsigned")).as_bytes(),
            None,
            enforce.clone(),
        )
        .await;
        let other = assigned(
            &app,
            "other key",
            &signed(&other_key, &format!("#!/bin/sh\ntouch {}\n", m("other"))),
            None,
            enforce.clone(),
        )
        .await;
        // No enforceSignatureCheck: a signature line (even a broken one) is just a comment.
        let mut broken = signed(&other_key, "#!/bin/sh\necho plain\nexit 0\n");
        let sig = broken.len() - 30; // inside the signature's base64
        broken[sig] = if broken[sig] == b'A' { b'B' } else { b'A' };
        let not_enforced = assigned(&app, "not enforced", &broken, None, json!({})).await;

        let secret = secret(&app, json!({})).await;
        let dir = temp_path("agent-signing");
        let device = enroll(&app, &dir, "LAB-SIGNED-1", &secret).await;
        let (code, out, err) = run_once_with(&dir, &["--trust-key", public.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");

        let state = state_of(&app, &valid, &device).await;
        assert_eq!(state["detectionState"], "success", "{state}");
        assert_eq!(
            state["preRemediationDetectionScriptOutput"], "0\nno signature line\n",
            "{state}"
        );
        let state = state_of(&app, &fixed, &device).await;
        assert_eq!(
            (&state["detectionState"], &state["remediationState"]),
            (&json!("fail"), &json!("success")),
            "{state}"
        );
        for (id, which, why, markers_absent) in [
            (
                &tampered,
                "detection",
                "the signature does not match",
                &["tampered"][..],
            ),
            (
                &bad_remediation,
                "remediation",
                "the signature does not match",
                &["bad-fix", "bad-fix-extra", "bad-fix-detect"][..],
            ),
            (&unsigned, "detection", "unsigned", &["unsigned"][..]),
            (
                &other,
                "detection",
                "signed by an untrusted key",
                &["other"][..],
            ),
        ] {
            let state = state_of(&app, id, &device).await;
            assert_eq!(state["detectionState"], "scriptError", "{which}: {state}");
            assert_eq!(state["remediationState"], "unknown", "{which}: {state}");
            let text = reason(&state);
            assert!(
                text.contains("enforceSignatureCheck")
                    && text.contains(&format!("the {which} script failed it"))
                    && text.contains(why),
                "{why}: {text}"
            );
            for name in markers_absent {
                assert!(!marker(name).exists(), "{name}: the script ran");
            }
        }
        let state = state_of(&app, &not_enforced, &device).await;
        assert_eq!(state["detectionState"], "success", "{state}");
        assert_eq!(state["preRemediationDetectionScriptOutput"], "plain\n");

        // An agent that trusts no key runs no script that requires a signature.
        let bare = temp_path("agent-signing");
        let bare_device = enroll(&app, &bare, "LAB-SIGNED-2", &secret).await;
        let (code, out, err) = run_once_with(&bare, &[]);
        assert_eq!(code, 0, "{out}{err}");
        let state = state_of(&app, &valid, &bare_device).await;
        assert_eq!(state["detectionState"], "scriptError", "{state}");
        let text = reason(&state);
        assert!(
            text.contains("signed by an untrusted key") && text.contains("--trust-key"),
            "{text}"
        );
        // A trusted key that cannot be read stops the agent before it runs anything.
        let (code, _, err) = run_once_with(&bare, &["--trust-key", "/nonexistent/key.pub"]);
        assert_eq!(code, 1);
        assert!(err.contains("/nonexistent/key.pub"), "{err}");

        for d in [&dir, &bare, &keys, &markers] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
);

both!(user_scripts_run_as_the_run_as_user, |app| {
    if !is_root() {
        eprintln!(
            "user_scripts_run_as_the_run_as_user: needs root (to run scripts as nobody): skipped"
        );
        return;
    }
    let (code, nobody, _) = command("id", &["-u", "nobody"]);
    if code != 0 {
        eprintln!("user_scripts_run_as_the_run_as_user: no user nobody: skipped");
        return;
    }
    let script = assigned(
        &app,
        "as user",
        b"#!/bin/sh\nid -u\n",
        None,
        json!({"runAsAccount": "user"}),
    )
    .await;
    let system = assigned(&app, "as system", b"#!/bin/sh\nid -u\n", None, json!({})).await;
    let secret = secret(&app, json!({})).await;

    let dir = temp_path("agent-run-as");
    let device = enroll(&app, &dir, "LAB-USER-1", &secret).await;
    let (code, out, err) = run_once_with(&dir, &["--run-as-user", "nobody"]);
    assert_eq!(code, 0, "{out}{err}");
    let state = state_of(&app, &script, &device).await;
    assert_eq!(state["detectionState"], "success", "{state}");
    assert_eq!(
        state["preRemediationDetectionScriptOutput"].as_str(),
        Some(nobody.as_str()),
        "{state}"
    );
    // Scripts of the system account still run as root.
    let state = state_of(&app, &system, &device).await;
    assert_eq!(state["preRemediationDetectionScriptOutput"], "0\n");
    // The state directory lets nobody pass, but its files stay private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dir), 0o711);
    assert_eq!(mode(&dir.join("identity.json")), 0o600);
    assert_eq!(mode(&dir.join("queue")), 0o700);

    // Without --run-as-user: not run, and the report says why.
    let other = temp_path("agent-run-as");
    let other_device = enroll(&app, &other, "LAB-USER-2", &secret).await;
    let (code, out, err) = run_once_with(&other, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mode(&other), 0o700);
    let state = state_of(&app, &script, &other_device).await;
    assert_eq!(state["detectionState"], "scriptError", "{state}");
    let text = reason(&state);
    assert!(
        text.contains("runAsAccount 'user'") && text.contains("--run-as-user"),
        "{text}"
    );
    // The same directory run without --run-as-user again is private again.
    let (code, out, err) = run_once_with(&dir, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mode(&dir), 0o700);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
});

both!(install_enrolls_and_writes_the_systemd_unit, |app| {
    if !is_root() {
        eprintln!("install_enrolls_and_writes_the_systemd_unit: install needs root: skipped");
        return;
    }
    let secret = secret(&app, json!({})).await;
    let state = temp_path("agent-install-state");
    let units = temp_path("agent-install-units");
    let keys = temp_path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (_, public) = new_key(&keys, "signing");
    let install = |unit_dir: &Path| {
        agent(&[
            "install",
            "--server",
            &server_url(&app),
            "--secret",
            &secret,
            "--name",
            "LAB-INSTALLED-1",
            "--state-dir",
            state.to_str().unwrap(),
            "--unit-dir",
            unit_dir.to_str().unwrap(),
            "--trust-key",
            public.to_str().unwrap(),
        ])
    };
    // A unit directory that does not exist: refused before enrolling.
    let (code, _, err) = install(&units);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a directory"), "{err}");
    assert!(!state.join("identity.json").exists());

    std::fs::create_dir_all(&units).unwrap();
    let (code, out, err) = install(&units);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("systemctl enable --now remediate-agent"),
        "{out}"
    );
    let device = out
        .lines()
        .find_map(|l| l.strip_prefix("enrolled as managed device "))
        .expect("the device id is printed")
        .to_owned();
    let item = app
        .get(&format!("deviceManagement/managedDevices/{device}"))
        .await;
    assert_eq!(item.status, 200, "{}", item.text);
    assert_eq!(item.json["deviceName"], "LAB-INSTALLED-1");
    let (_, status, _) = agent(&["status", "--state-dir", state.to_str().unwrap()]);
    assert!(status.contains(&device), "{status}");

    let unit_file = units.join("remediate-agent.service");
    let unit = std::fs::read_to_string(&unit_file).unwrap();
    let exe = std::fs::canonicalize(AGENT).unwrap();
    let exec_start = format!(
        "ExecStart={} run --state-dir {} --trust-key {}",
        exe.display(),
        state.display(),
        std::fs::canonicalize(&public).unwrap().display()
    );
    assert!(
        unit.lines().any(|l| l == exec_start),
        "{exec_start}\n{unit}"
    );
    for line in [
        "Restart=always",
        "KillMode=mixed",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line}\n{unit}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let (code, _, err) = command("systemd-analyze", &["verify", unit_file.to_str().unwrap()]);
        let ours: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("remediate-agent"))
            .collect();
        assert!(code == 0 && ours.is_empty(), "{err}\n{unit}");
    } else {
        eprintln!("systemd-analyze is not installed: the written unit is not verified");
    }
    // The installed agent's command line works as written (one pass, same state directory).
    let (code, out, err) = run_once_with(&state, &["--trust-key", public.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    // Installing again keeps the device.
    let (code, out, err) = install(&units);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&device), "{out}");
    for d in [&state, &units, &keys] {
        let _ = std::fs::remove_dir_all(d);
    }
});
