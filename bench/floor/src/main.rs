//! Floors for bench/run.sh: what the hardware and libraries give without remediate's work.
//!
//!   floor sqlite --db FILE --ddl FILE --row FILE --rows-per-tx N --seconds S
//!       Inserts copies of one stored run-state row (a JSON object: column -> value, as remediate stored
//!       it) into the table and indexes of DDL (remediate's own device_run_states DDL), each copy with a
//!       fresh id (and device), N rows per transaction, for S seconds, with journal_mode=WAL and synchronous=FULL
//!       (remediate's pragmas). Prints one JSON line: rows/s, transactions/s, per-transaction p50/p99.
//!
//!   floor http --listen ADDR --page FILE
//!       Minimal HTTP server (axum/hyper/tokio, as remediate): any POST parses its JSON body and echoes it
//!       re-serialized with 201; `GET /serialized` serializes FILE's page (parsed once at start, held as a
//!       JSON value) for every request, as any server producing that page must; any other GET answers the
//!       stored bytes of FILE (a page remediate served) with 200.
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// splitmix64: random device ids for the floor's rows.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| panic!("missing {name}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("sqlite") => sqlite(&args),
        Some("http") => http(&args),
        _ => {
            eprintln!("usage: floor sqlite|http ...");
            std::process::exit(2)
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn sqlite(args: &[String]) {
    let db = arg(args, "--db");
    let ddl = std::fs::read_to_string(arg(args, "--ddl")).expect("ddl");
    let row: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(arg(args, "--row")).expect("row")).expect("row json");
    let per_tx: usize = arg(args, "--rows-per-tx").parse().unwrap();
    let seconds: f64 = arg(args, "--seconds").parse().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").unwrap();
    conn.execute_batch(&ddl).unwrap();
    let columns: Vec<&String> = row.keys().collect();
    let sql = format!(
        "INSERT INTO \"device_run_states\" ({}) VALUES ({})",
        columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", "),
        (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
    );
    let id_at = columns.iter().position(|c| c.as_str() == "id").expect("id column");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    // a bound row: each copy binds a fresh device, and its id is "{scriptId}:{deviceId}" as the server forms it
    let device_at = columns
        .iter()
        .position(|c| c.as_str() == "managedDeviceId")
        .filter(|&i| !row[columns[i].as_str()].is_null());
    let script_id = row["scriptId"].as_str().unwrap_or_default().to_owned();
    let values: Vec<rusqlite::types::Value> = row
        .values()
        .map(|v| match v {
            serde_json::Value::Null => rusqlite::types::Value::Null,
            serde_json::Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().unwrap()),
            serde_json::Value::String(s) => rusqlite::types::Value::Text(s.clone()),
            other => rusqlite::types::Value::Text(other.to_string()),
        })
        .collect();
    let mut lat = Vec::new();
    let mut n: u64 = 0;
    let start = Instant::now();
    let deadline = Duration::from_secs_f64(seconds);
    while start.elapsed() < deadline {
        let t = Instant::now();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare_cached(&sql).unwrap();
            for _ in 0..per_tx {
                n += 1;
                let mut v = values.clone();
                // a random device id, as real devices have (random positions in every index)
                let r = splitmix(&mut seed);
                let fresh = format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    r >> 32,
                    (r >> 16) & 0xffff,
                    r & 0xfff,
                    (n as u64 ^ r.rotate_left(17)) & 0xfff,
                    splitmix(&mut seed) & 0xffff_ffff_ffff
                );
                v[id_at] = rusqlite::types::Value::Text(match device_at {
                    Some(d) => {
                        v[d] = rusqlite::types::Value::Text(fresh.clone());
                        format!("{script_id}:{fresh}")
                    }
                    None => fresh,
                });
                stmt.execute(rusqlite::params_from_iter(v)).unwrap();
            }
        }
        tx.commit().unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{}",
        serde_json::json!({
            "rows": n, "seconds": secs, "rows_per_tx": per_tx,
            "rows_per_s": n as f64 / secs, "tx_per_s": lat.len() as f64 / secs,
            "tx_p50_ms": percentile(&lat, 0.5), "tx_p99_ms": percentile(&lat, 0.99),
            "sqlite_version": rusqlite::version(),
        })
    );
}

#[tokio::main]
async fn http_main(listen: String, page: Bytes) {
    let parsed: std::sync::Arc<serde_json::Value> =
        std::sync::Arc::new(serde_json::from_slice(&page).expect("the page is JSON"));
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(move |method: Method, uri: axum::http::Uri, body: Bytes| {
        let page = page.clone();
        let parsed = parsed.clone();
        async move {
            if method == Method::GET && uri.path() == "/serialized" {
                return (
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::to_vec(&*parsed).unwrap(),
                )
                    .into_response();
            }
            if method == Method::POST {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(v) => (
                        StatusCode::CREATED,
                        [(header::CONTENT_TYPE, "application/json")],
                        serde_json::to_vec(&v).unwrap(),
                    )
                        .into_response(),
                    Err(_) => StatusCode::BAD_REQUEST.into_response(),
                }
            } else {
                let r: Response = ([(header::CONTENT_TYPE, "application/json")], page).into_response();
                r
            }
        }
    });
    axum::serve(listener, app).await.unwrap();
}

fn http(args: &[String]) {
    let page = std::fs::read(arg(args, "--page")).expect("page");
    http_main(arg(args, "--listen"), Bytes::from(page));
}
