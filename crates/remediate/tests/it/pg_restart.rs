//! A real PostgreSQL restart under load (issue 17): the test starts its own cluster (`initdb`,
//! `pg_ctl` on a free port, in a temporary directory; the shared server is not touched), runs
//! concurrent writers against remediate, and restarts the cluster with a fast and then an
//! immediate shutdown. While it is down every answer is a 503 with `Retry-After` (never a 500,
//! never a hang); service comes back without restarting remediate; every acknowledged write is
//! stored and the counters agree with the rows (`recount --check`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Backend, TestApp};
use crate::pg_cluster::{wait_for_a_write, Cluster};

/// What the writers saw: run states acknowledged (device ids), and every answer's status.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<String>,
    unavailable: usize,
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_postgres_restart_fast_and_immediate_is_503_then_recovers_with_nothing_lost() {
    // The shared server must be there in CI (the harness's rule); this test needs only the
    // server binaries beside it.
    let Some(mut app) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let cluster = Cluster::init();
    app.stop();
    app.db_address = cluster.address();
    app.spawn();
    let script = app.script("restart").await;
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Arc::new(app);
    let mut writers = Vec::new();
    for w in 0..4 {
        let (app, stop, seen, script) = (app.clone(), stop.clone(), seen.clone(), script.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let started = Instant::now();
                let device = app
                    .post(
                        "deviceManagement/managedDevices",
                        &format!(r#"{{"deviceName":"w{w}-{n}"}}"#),
                    )
                    .await;
                let reply = if device.status == 201 {
                    let id = device.json["id"].as_str().unwrap().to_owned();
                    let reply = app
                        .run_state(
                            &script,
                            &id,
                            r#""detectionState":"fail","remediationState":"success""#,
                        )
                        .await;
                    if reply.status == 201 {
                        seen.lock().unwrap().acknowledged.push(id);
                        continue;
                    }
                    reply
                } else {
                    device
                };
                let mut seen = seen.lock().unwrap();
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "a write hung for {:?}",
                    started.elapsed()
                );
                if reply.status == 503 && !reply.header("retry-after").is_empty() {
                    seen.unavailable += 1;
                } else {
                    seen.other.push(format!(
                        "{} {} {}",
                        reply.status,
                        reply.header("retry-after"),
                        reply.text
                    ));
                }
            }
        }));
    }
    for mode in ["fast", "immediate"] {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let before = seen.lock().unwrap().acknowledged.len();
        assert!(
            before > 0,
            "no write was acknowledged before the {mode} stop"
        );
        cluster.stop(mode);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Down: reads too are a 503 with Retry-After.
        let read = app.get("deviceManagement/managedDevices?$top=1").await;
        assert_eq!(
            read.status, 503,
            "a read while PostgreSQL is down: {}",
            read.text
        );
        assert!(!read.header("retry-after").is_empty());
        cluster.start();
        wait_for_a_write(&app, mode, Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.expect("a writer panicked");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.other.is_empty(),
        "answers other than 2xx or 503 + Retry-After: {:?}",
        seen.other
    );
    assert!(seen.unavailable > 0, "no write met the outage");
    // Every acknowledged run state is stored, with its counters.
    let mut stored = std::collections::HashSet::new();
    let mut next = Some(format!(
        "deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$select=id&$expand=managedDevice($select=id)&$top=500"
    ));
    while let Some(url) = next {
        let page = app.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        for state in page.json["value"].as_array().unwrap() {
            stored.insert(state["managedDevice"]["id"].as_str().unwrap().to_owned());
        }
        next = page.json["@odata.nextLink"].as_str().map(str::to_owned);
    }
    let lost: Vec<&String> = seen
        .acknowledged
        .iter()
        .filter(|d| !stored.contains(*d))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let summary = app
        .get(&format!(
            "deviceManagement/deviceHealthScripts/{script}/runSummary"
        ))
        .await;
    assert_eq!(
        summary.json["issueRemediatedDeviceCount"].as_u64(),
        Some(stored.len() as u64),
        "{}",
        summary.text
    );
    let (agrees, output) = app.recount_check();
    assert!(agrees, "recount --check: {output}");
}
