//! Crash durability (issue 6): the real server under concurrent create/patch load is killed with
//! SIGKILL at random moments and restarted; every acknowledged write must be present and exact,
//! and nothing half-written may be visible (every run state has its history record).
//! `REMEDIATE_KILL_CYCLES` sets the number of kills (default 3 per backend in the test suite).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::both;
use crate::harness::TestApp;

/// What one writer knows about its run state.
#[derive(Debug, Default, Clone)]
struct Writer {
    created: bool,
    /// Last counter value acknowledged with 204 (0: only the create was acknowledged).
    acked: u64,
    /// Last counter value sent (acknowledged or not).
    attempted: u64,
}

fn kill(app: &mut TestApp) {
    if let Some(pid) = app.pid() {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    app.reap();
}

both!(acknowledged_writes_survive_sigkill, Process, |app| {
    let mut app = app;
    let cycles: usize = std::env::var("REMEDIATE_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let script = app.script("durable").await;
    let writers = 12;
    let mut devices = Vec::new();
    for i in 0..writers {
        devices.push(app.device(&format!("PC-{i}")).await);
    }
    let state: Arc<Vec<Mutex<Writer>>> = Arc::new(
        (0..writers)
            .map(|_| Mutex::new(Writer::default()))
            .collect(),
    );
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut verified = 0usize;
    for cycle in 0..cycles {
        let base = app.base.clone();
        let token = app.token.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, device) in devices.iter().enumerate() {
            let (base, token, script, device, state, stop) = (
                base.clone(),
                token.clone(),
                script.clone(),
                device.clone(),
                state.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let collection = format!("{base}/deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
                let item = format!("{collection}/{script}:{device}");
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let created = state[i].lock().unwrap().created;
                    if !created {
                        let body = format!(r#"{{"managedDevice@odata.bind":"managedDevices('{device}')","detectionState":"fail","preRemediationDetectionScriptOutput":"0"}}"#);
                        match client.post(&collection).bearer_auth(&token).header("content-type", "application/json").body(body).send().await {
                            Ok(r) if r.status().as_u16() == 201 || r.status().as_u16() == 409 => state[i].lock().unwrap().created = true,
                            Ok(_) | Err(_) => return,
                        }
                    } else {
                        let next = {
                            let mut w = state[i].lock().unwrap();
                            w.attempted += 1;
                            w.attempted
                        };
                        // The states change too, so the summary counters move with every write.
                        let (detection, remediation) = [("fail", "success"), ("success", "skipped"), ("fail", "remediationFailed")][next as usize % 3];
                        let body = format!(r#"{{"preRemediationDetectionScriptOutput":"{next}","lastStateUpdateDateTime":"2025-01-01T00:00:{:02}Z","detectionState":"{detection}","remediationState":"{remediation}"}}"#, next % 60);
                        match client.patch(&item).bearer_auth(&token).header("content-type", "application/json").body(body).send().await {
                            Ok(r) if r.status().as_u16() == 204 => state[i].lock().unwrap().acked = next,
                            Ok(_) | Err(_) => return,
                        }
                    }
                }
            }));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 500)).await;
        kill(&mut app);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in tasks {
            let _ = task.await;
        }
        app.spawn();
        // Every acknowledged write is there; nothing newer than what was sent.
        for (i, device) in devices.iter().enumerate() {
            let w = state[i].lock().unwrap().clone();
            let path = format!(
                "deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{script}:{device}"
            );
            let reply = app.get(&path).await;
            if !w.created {
                continue;
            }
            assert_eq!(
                reply.status, 200,
                "cycle {cycle}: acknowledged create of writer {i} lost: {}",
                reply.text
            );
            let value: u64 = reply.json["preRemediationDetectionScriptOutput"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                value >= w.acked && value <= w.attempted,
                "cycle {cycle}, writer {i}: stored {value}, acknowledged {}, attempted {}",
                w.acked,
                w.attempted
            );
            let history = app.get(&format!("{path}/history?$count=true&$top=1")).await;
            let records = history.json["@odata.count"].as_u64().unwrap();
            assert!(
                records >= 1,
                "cycle {cycle}, writer {i}: a run state without its history record"
            );
            // One record for the create, one per applied change of lastStateUpdateDateTime (it
            // changes on every patch except when the counter wraps to the same second).
            assert!(
                records <= 1 + value,
                "cycle {cycle}, writer {i}: {records} records for {value} changes"
            );
            state[i].lock().unwrap().attempted = value;
            verified += 1;
        }
        // The counters were changed in the same transactions as the rows: a kill leaves them equal.
        let (ok, output) = app.recount_check();
        assert!(
            ok,
            "cycle {cycle}: counters differ from the rows after SIGKILL:\n{output}"
        );
        let summary = app
            .get(&format!(
                "deviceManagement/deviceHealthScripts/{script}/runSummary"
            ))
            .await;
        let created = state.iter().filter(|w| w.lock().unwrap().created).count();
        let total: i64 = [
            "noIssueDetectedDeviceCount",
            "issueDetectedDeviceCount",
            "issueRemediatedDeviceCount",
        ]
        .iter()
        .map(|name| summary.json[*name].as_i64().unwrap())
        .sum();
        // fail+success counts in two counters; every state is one of the three pairs above.
        let remediated_failures = summary.json["issueRemediatedDeviceCount"].as_i64().unwrap();
        assert_eq!(
            total - remediated_failures,
            created as i64,
            "{}",
            summary.text
        );
    }
    eprintln!("durability: {cycles} SIGKILLs survived, {verified} acknowledged run states verified exactly");
});
