//! Resilience (issue 6): graceful shutdown under load loses nothing; a PostgreSQL outage is
//! answered with 503 and `Retry-After` (never a 500, never a hang), and the server recovers by
//! itself when the database is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::both;
use crate::harness::{Backend, Mode, TestApp};
use crate::pg_cluster::{serve_from, wait_for_a_write};

// A child process: the test sends it SIGTERM.
both!(
    sigterm_under_load_finishes_in_flight_requests_and_loses_none,
    Process,
    |app| {
        let mut app = app;
        let acknowledged: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for writer in 0..16 {
            let (base, token, acknowledged) =
                (app.base.clone(), app.token.clone(), acknowledged.clone());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0.. {
                    let body = format!(r#"{{"deviceName":"w{writer}-{i}"}}"#);
                    let sent = client
                        .post(format!("{base}/deviceManagement/managedDevices"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(reply) => {
                            let status = reply.status().as_u16();
                            let json: serde_json::Value = match reply.json().await {
                                Ok(json) => json,
                                Err(e) => panic!("a response was cut off during shutdown: {e}"),
                            };
                            assert_eq!(status, 201, "{json}");
                            acknowledged
                                .lock()
                                .unwrap()
                                .push(json["id"].as_str().unwrap().to_owned());
                        }
                        // Refused once the listener is closed: the request never reached the server.
                        Err(e) if e.is_connect() || e.is_request() => return,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        let pid = app.pid().unwrap();
        let started = Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        app.reap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "shutdown took {:?}",
            started.elapsed()
        );
        app.spawn();
        let ids = acknowledged.lock().unwrap().clone();
        assert!(!ids.is_empty());
        let count = app.get("deviceManagement/managedDevices/$count").await;
        assert_eq!(
            count.text,
            ids.len().to_string(),
            "every acknowledged create is stored, and nothing else"
        );
        for id in ids.iter().step_by(7) {
            assert_eq!(
                app.get(&format!("deviceManagement/managedDevices/{id}"))
                    .await
                    .status,
                200
            );
        }
    }
);

/// A TCP proxy to PostgreSQL that can cut the database off.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
}

async fn proxy() -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let down = Arc::new(AtomicBool::new(false));
    let flag = down.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            if flag.load(Ordering::SeqCst) {
                let _ = inbound.shutdown().await;
                continue;
            }
            let flag = flag.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await else {
                    return;
                };
                let (mut ri, mut wi) = inbound.split();
                let (mut ro, mut wo) = outbound.split();
                let watch = async {
                    while !flag.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                tokio::select! {
                    _ = tokio::io::copy(&mut ri, &mut wo) => {}
                    _ = tokio::io::copy(&mut ro, &mut wi) => {}
                    () = watch => {}
                }
            });
        }
    });
    Proxy { port, down }
}

// Multi-threaded: the proxy runs on this runtime while `spawn` blocks until the server listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_with_retry_after_and_recovers_without_restart() {
    let Some(mut app) = TestApp::start(Backend::Postgres).await else {
        return;
    };
    let proxy = proxy().await;
    serve_from(&mut app, format!("127.0.0.1:{}", proxy.port));
    let created = app.device("before").await;
    proxy.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for attempt in 0..3 {
        let started = Instant::now();
        let reply = app
            .post(
                "deviceManagement/managedDevices",
                r#"{"deviceName":"during"}"#,
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "attempt {attempt} hung for {:?}",
            started.elapsed()
        );
        reply.assert_error(503, "ServiceUnavailable", "retry");
        assert!(!reply.header("retry-after").is_empty());
        let read = app
            .get(&format!("deviceManagement/managedDevices/{created}"))
            .await;
        assert_eq!(read.status, 503, "{}", read.text);
    }
    let ready = app.service("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503);
    proxy.down.store(false, Ordering::SeqCst);
    wait_for_a_write(&app, "after the proxy reconnected", Duration::from_secs(20)).await;
    let list = app.get("deviceManagement/managedDevices?$count=true").await;
    assert_eq!(
        list.json["@odata.count"], 2,
        "only the acknowledged creates exist: {}",
        list.text
    );
}

/// Far more concurrent clients than the server serves at once: every request completes in bounded
/// time with a 2xx or a 503 + Retry-After, memory stays bounded, and the server serves normally
/// when the load drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_bounded_latency_and_memory() {
    // A child process: the peak resident memory is read from /proc/<pid>.
    let mut app = TestApp::start_in(Backend::Sqlite, Mode::Process)
        .await
        .unwrap();
    app.stop();
    app.args = vec![
        "--max-in-flight".into(),
        "16".into(),
        "--request-timeout-secs".into(),
        "10".into(),
    ];
    app.spawn();
    let script = app.script("overload").await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (client, base, token, script) = (
            client.clone(),
            app.base.clone(),
            app.token.clone(),
            script.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let reply = if i % 2 == 0 {
                client
                    .post(format!("{base}/deviceManagement/deviceHealthScripts/{script}/deviceRunStates"))
                    .bearer_auth(token)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"preRemediationDetectionScriptOutput":"{}"}}"#, "x".repeat(900)))
                    .send()
                    .await
            } else {
                client.get(format!("{base}/deviceManagement/deviceHealthScripts/{script}/deviceRunStates?$top=100")).bearer_auth(token).send().await
            };
            let reply = reply.expect("every request gets an answer");
            let status = reply.status().as_u16();
            let retry = reply.headers().contains_key("retry-after");
            (status, retry, sent.elapsed())
        }));
    }
    let (mut served, mut shed) = (0, 0);
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (status, retry, took) = task.await.unwrap();
        slowest = slowest.max(took);
        match status {
            200 | 201 => served += 1,
            503 => {
                assert!(retry, "a shed request carries Retry-After");
                shed += 1;
            }
            other => panic!("unexpected status {other} under overload"),
        }
    }
    assert!(served > 0);
    assert!(
        slowest < Duration::from_secs(15),
        "a request took {slowest:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.pid().unwrap())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(peak_kb < 200 * 1024, "peak RSS {peak_kb} kB");
    eprintln!("overload: 400 concurrent clients, {served} served, {shed} shed, slowest {slowest:?}, peak RSS {} MB, {:?} total", peak_kb / 1024, started.elapsed());
    let after = Instant::now();
    assert_eq!(app.get("deviceManagement/managedDevices").await.status, 200);
    assert!(
        after.elapsed() < Duration::from_secs(1),
        "the server recovers when the load drops"
    );
}
