//! Slow and idle clients (issue 11, item 1): a request takes an in-flight slot only once its body
//! has arrived, the head and the body have their own deadlines (and the body a minimum rate), and
//! idle kept-alive connections are closed. Each test starts the server with small limits, on SQLite
//! and on PostgreSQL, and drives it with raw TCP sockets.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::both;
use crate::harness::TestApp;

const DEVICES: &str = "deviceManagement/managedDevices";

/// Restart `app` with these `serve` flags.
fn restart(app: &mut TestApp, args: &[&str]) {
    app.stop();
    app.args = args.iter().map(|s| (*s).to_owned()).collect();
    app.spawn();
}

fn address(app: &TestApp) -> String {
    app.base
        .trim_start_matches("http://")
        .trim_end_matches("/beta")
        .to_owned()
}

/// Read until the server closes the connection (end of stream or reset); `None` if it is still
/// open at `deadline`.
async fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// Read one response framed by its `content-length`: (status, body).
async fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if received.len() >= end + 4 + length {
                    let status = head[9..12].parse().unwrap();
                    let body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]);
                    return (status, body.into_owned());
                }
            }
            let n = stream.read(&mut buffer).await.expect("read the response");
            assert!(n > 0, "the connection closed before a whole response");
            received.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s")
}

/// Assert that `received` is a Graph 408 `RequestTimeout` whose message contains `needle`.
fn assert_408(received: &[u8], needle: &str) {
    let text = String::from_utf8_lossy(received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"RequestTimeout""#), "{text}");
    assert!(text.contains(needle), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
}

both!(stalled_bodies_hold_no_in_flight_slot_and_get_408, |app| {
    let mut app = app;
    restart(
        &mut app,
        &[
            "--header-read-timeout-secs",
            "1",
            "--body-read-timeout-secs",
            "2",
            "--max-in-flight",
            "4",
        ],
    );
    let address = address(&app);
    // Three times the in-flight limit: headers and one byte of a 100-byte body, then nothing.
    let sent = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..12 {
        let mut socket = TcpStream::connect(&address).await.unwrap();
        socket
            .write_all(b"POST /beta/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{")
            .await
            .unwrap();
        stalled.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..8 {
        let reply = app
            .client
            .get(app.url(DEVICES))
            .bearer_auth(&app.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .expect("served while the stalled bodies are open");
        assert_eq!(
            reply.status().as_u16(),
            200,
            "{}",
            reply.text().await.unwrap_or_default()
        );
    }
    // Each stalled request is answered 408 and closed once the body timeout has passed.
    let deadline = sent + Duration::from_secs(2 + 5);
    for socket in &mut stalled {
        let received = read_until_closed(socket, deadline)
            .await
            .expect("the stalled connection is closed within the body timeout and 5 s");
        assert_408(&received, "did not arrive within 2 s");
    }
});

both!(silent_connections_do_not_block_new_clients, |app| {
    let mut app = app;
    restart(
        &mut app,
        &["--max-connections", "10", "--header-read-timeout-secs", "1"],
    );
    let address = address(&app);
    // Every connection the server allows, and not a byte on any of them.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let reply = app
        .client
        .get(app.url(DEVICES))
        .bearer_auth(&app.token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("a new client is served once the silent connections time out");
    assert_eq!(reply.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The silent connections were closed without an answer.
    let received = read_until_closed(&mut silent[0], Instant::now() + Duration::from_secs(5))
        .await
        .expect("a silent connection is closed after the header read timeout");
    assert!(received.is_empty(), "{received:?}");
});

both!(
    idle_keep_alive_connections_are_closed_after_the_idle_timeout,
    |app| {
        let mut app = app;
        restart(
            &mut app,
            &[
                "--header-read-timeout-secs",
                "1",
                "--idle-timeout-secs",
                "3",
            ],
        );
        let mut socket = TcpStream::connect(address(&app)).await.unwrap();
        let request = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
        socket.write_all(request).await.unwrap();
        assert_eq!(read_response(&mut socket).await, (200, "ok".to_owned()));
        // Idle for longer than the header read timeout, shorter than the idle timeout: still open.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        socket.write_all(request).await.unwrap();
        assert_eq!(read_response(&mut socket).await, (200, "ok".to_owned()));
        // Then idle past the idle timeout: closed by the server.
        let received = read_until_closed(&mut socket, Instant::now() + Duration::from_secs(3 + 3))
            .await
            .expect("the idle connection is closed within the idle timeout and 3 s");
        assert!(received.is_empty(), "{received:?}");
    }
);

/// Send a device create whose body (padded with JSON whitespace to 400 bytes) is written in
/// `chunk`-byte pieces every `every`; returns what the server sent before it closed.
async fn create_slowly(app: &TestApp, name: &str, chunk: usize, every: Duration) -> Vec<u8> {
    let body = format!("{{\"deviceName\":\"{name}\"}}{}", " ".repeat(400));
    let body = body[..400].to_owned();
    let head = format!(
        "POST /beta/{DEVICES} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        app.token,
        body.len()
    );
    let socket = TcpStream::connect(address(app)).await.unwrap();
    socket.set_nodelay(true).unwrap();
    let (mut reader, mut writer) = socket.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let sending = tokio::spawn(async move {
        for piece in body.as_bytes().chunks(chunk) {
            if writer.write_all(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut received)).await;
    sending.abort();
    // A reset after the answer still leaves the answer read.
    assert!(read.is_ok(), "the server answers and closes within 10 s");
    received
}

both!(
    slow_but_steady_bodies_succeed_and_slower_ones_get_408,
    |app| {
        let mut app = app;
        restart(
            &mut app,
            &[
                "--body-read-timeout-secs",
                "20",
                "--min-body-bytes-per-sec",
                "100",
                "--body-rate-grace-secs",
                "1",
            ],
        );
        // 200 bytes per second for 2 s: twice the minimum rate, past the grace period.
        let steady = create_slowly(&app, "steady", 40, Duration::from_millis(200)).await;
        let text = String::from_utf8_lossy(&steady);
        assert!(text.starts_with("HTTP/1.1 201"), "{text}");
        // 20 bytes per second: below the minimum once the grace period is over.
        let started = Instant::now();
        let starved = create_slowly(&app, "starved", 10, Duration::from_millis(500)).await;
        assert_408(&starved, "minimum of 100 bytes per second");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let list = app.get(&format!("{DEVICES}?$select=deviceName")).await;
        let names: Vec<&str> = list.json["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["deviceName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["steady"], "the starved create changed nothing");
    }
);
