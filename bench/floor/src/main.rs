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
//!
//!   floor page (--db FILE | --postgres URL) --listen ADDR --tenant T --script S [--base URL] [--query Q]
//!       The same-work floor of the GET page: for every GET, runs remediate's own statement for
//!       `$filter=detectionState eq 'fail'&$orderby=lastStateUpdateDateTime desc&$top=100` on one script's
//!       run states (the statement remediate's store builds, LIMIT 101, the same selected columns) on the
//!       database remediate's benchmark used, and serializes the rows as remediate's page (`@odata.context`,
//!       `@odata.nextLink` with a keyset `$skiptoken`, `value`; enum names, ISO 8601 UTC times). SQLite: one
//!       connection per worker thread (remediate's reader settings), the query on the calling worker;
//!       PostgreSQL: 8 connections (remediate's default pool), the statement prepared on each; requests are
//!       spread over them and pipelined (several queries in flight on one connection), or with `--pool` each
//!       request takes a connection for itself as from a pool (one query in flight per connection, as sqlx).
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
        Some("page") => page(&args),
        _ => {
            eprintln!("usage: floor sqlite|http|page ...");
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

// ---------------------------------------------------------------- the same-work GET page floor ----------

/// remediate's statement for the benchmark's page (captured from its log with REMEDIATE_LOG=sqlx=debug; built by
/// crates/store/src/reads.rs `page_of` and translate.rs): $1 tenant, $2 script, $3 detectionState (2 = fail),
/// $4 the page size + 1.
const PAGE_SQL: &str = "SELECT t.\"id\", t.\"detectionState\", t.\"lastStateUpdateDateTime\", \
t.\"expectedStateUpdateDateTime\", t.\"lastSyncDateTime\", t.\"preRemediationDetectionScriptOutput\", \
t.\"preRemediationDetectionScriptError\", t.\"remediationScriptError\", t.\"postRemediationDetectionScriptOutput\", \
t.\"postRemediationDetectionScriptError\", t.\"remediationState\", t.\"assignmentFilterIds\", t.\"scriptId\", \
t.\"managedDeviceId\", t.\"lastStateUpdateDateTime\", t.\"id\" FROM \"device_run_states\" t WHERE (t.\"tenant\" = $1) \
AND t.\"scriptId\" = $2 AND (t.\"detectionState\" = $3) ORDER BY t.\"lastStateUpdateDateTime\" DESC, t.\"id\" DESC \
LIMIT $4";
const TOP: usize = 100;
const FAIL: i64 = 2;
const RUN_STATE: [&str; 6] = ["unknown", "success", "fail", "scriptError", "pending", "notApplicable"];
const REMEDIATION_STATE: [&str; 6] =
    ["unknown", "skipped", "success", "remediationFailed", "scriptError", "unknownFutureValue"];
const STRINGS: [&str; 5] = [
    "preRemediationDetectionScriptOutput",
    "preRemediationDetectionScriptError",
    "remediationScriptError",
    "postRemediationDetectionScriptOutput",
    "postRemediationDetectionScriptError",
];

/// One row of the page query, decoded (as remediate decodes it into a record).
struct PageRow {
    id: String,
    detection: Option<i64>,
    updated: Option<i64>,
    expected: Option<i64>,
    synced: Option<i64>,
    strings: [Option<String>; 5],
    remediation: Option<i64>,
    filters: Option<Vec<String>>,
}

/// An instant in 100 ns ticks since 0001-01-01 as remediate writes it: UTC, `Z`, fraction's trailing zeros trimmed.
fn put_time(out: &mut Vec<u8>, ticks: i64) {
    const TPS: i64 = 10_000_000;
    const TPD: i64 = 86_400 * TPS;
    let days = ticks.div_euclid(TPD) - 719_162;
    let in_day = ticks.rem_euclid(TPD);
    // civil_from_days (Howard Hinnant), as remediate's domain::time
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let secs = in_day / TPS;
    let frac = in_day % TPS;
    fn put(buf: &mut [u8], value: i64) {
        let mut v = value;
        for slot in buf.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    let mut b = *b"\"0000-00-00T00:00:00.0000000Z\"";
    put(&mut b[1..5], y);
    put(&mut b[6..8], m);
    put(&mut b[9..11], d);
    put(&mut b[12..14], secs / 3600);
    put(&mut b[15..17], secs / 60 % 60);
    put(&mut b[18..20], secs % 60);
    let len = if frac == 0 {
        b[20] = b'Z';
        b[21] = b'"';
        22
    } else {
        put(&mut b[21..28], frac);
        let mut end = 28;
        while b[end - 1] == b'0' {
            end -= 1;
        }
        b[end] = b'Z';
        b[end + 1] = b'"';
        end + 2
    };
    out.extend_from_slice(&b[..len]);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).unwrap();
}

fn put_opt_time(out: &mut Vec<u8>, t: Option<i64>) {
    match t {
        Some(t) => put_time(out, t),
        None => out.extend_from_slice(b"null"),
    }
}

fn put_enum(out: &mut Vec<u8>, names: &[&str], v: Option<i64>) {
    match v.and_then(|v| usize::try_from(v).ok()).and_then(|v| names.get(v)) {
        Some(name) => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// base64url without padding (the `$skiptoken`).
fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The page as remediate writes it: `@odata.context`, `@odata.nextLink` (when a 101st row exists), `value`.
fn render(rows: &[PageRow], has_more: bool, ctx: &PageCtx, host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(b"{\"@odata.context\":");
    put_str(&mut out, &format!("http://{host}/beta/$metadata#deviceManagement/deviceHealthScripts('{}')/deviceRunStates", ctx.script));
    if has_more {
        if let Some(last) = rows.last() {
            // the keyset after the last row: its run time and id (remediate also signs the token with an HMAC)
            let key = serde_json::json!({"k": [last.updated], "id": last.id, "q": ctx.query_hash});
            let token = base64url(serde_json::to_string(&key).unwrap().as_bytes());
            out.extend_from_slice(b",\"@odata.nextLink\":");
            put_str(&mut out, &format!(
                "http://{host}/beta/deviceManagement/deviceHealthScripts/{}/deviceRunStates?{}&$skiptoken={token}",
                ctx.script, ctx.query
            ));
        }
    }
    out.extend_from_slice(b",\"value\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        put_str(&mut out, &r.id);
        out.extend_from_slice(b",\"detectionState\":");
        put_enum(&mut out, &RUN_STATE, r.detection);
        out.extend_from_slice(b",\"lastStateUpdateDateTime\":");
        put_opt_time(&mut out, r.updated);
        out.extend_from_slice(b",\"expectedStateUpdateDateTime\":");
        put_opt_time(&mut out, r.expected);
        out.extend_from_slice(b",\"lastSyncDateTime\":");
        put_opt_time(&mut out, r.synced);
        for (name, v) in STRINGS.iter().zip(r.strings.iter()) {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match v {
                Some(s) => put_str(&mut out, s),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"remediationState\":");
        put_enum(&mut out, &REMEDIATION_STATE, r.remediation);
        out.extend_from_slice(b",\"assignmentFilterIds\":");
        match &r.filters {
            Some(list) => serde_json::to_writer(&mut out, list).unwrap(),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

struct PageCtx {
    tenant: String,
    script: String,
    query: String,
    query_hash: String,
}

fn parse_filters(text: Option<String>) -> Option<Vec<String>> {
    text.map(|t| serde_json::from_str(&t).expect("assignmentFilterIds is a JSON array"))
}

thread_local! {
    static SQLITE: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
}

fn sqlite_page(db: &str, ctx: &PageCtx) -> Result<(Vec<PageRow>, bool), String> {
    SQLITE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            // remediate's reader settings (store::db::SqliteConn::open with an 8 MiB page cache: the
            // query planner stability guarantee too), read-only use
            let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
            conn.set_prepared_statement_cache_capacity(256);
            conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
                .map_err(|e| e.to_string())?;
            conn.busy_timeout(Duration::from_secs(10)).map_err(|e| e.to_string())?;
            conn.execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                 PRAGMA temp_store = MEMORY; PRAGMA cache_size = -8192; PRAGMA query_only = ON;",
            )
            .map_err(|e| e.to_string())?;
            *slot = Some(conn);
        }
        let conn = slot.as_ref().unwrap();
        let mut stmt = conn.prepare_cached(PAGE_SQL).map_err(|e| e.to_string())?;
        let mut rows = stmt
            .query(rusqlite::params![ctx.tenant, ctx.script, FAIL, (TOP + 1) as i64])
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(TOP + 1);
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let g = |i: usize| -> Option<String> { r.get(i).unwrap() };
            out.push(PageRow {
                id: r.get(0).unwrap(),
                detection: r.get(1).unwrap(),
                updated: r.get(2).unwrap(),
                expected: r.get(3).unwrap(),
                synced: r.get(4).unwrap(),
                strings: [g(5), g(6), g(7), g(8), g(9)],
                remediation: r.get(10).unwrap(),
                filters: parse_filters(g(11)),
            });
        }
        let more = out.len() > TOP;
        out.truncate(TOP);
        Ok((out, more))
    })
}

async fn postgres_page(
    client: &tokio_postgres::Client,
    stmt: &tokio_postgres::Statement,
    ctx: &PageCtx,
) -> Result<(Vec<PageRow>, bool), String> {
    let limit = (TOP + 1) as i64;
    let rows = client
        .query(stmt, &[&ctx.tenant, &ctx.script, &FAIL, &limit])
        .await
        .map_err(|e| e.to_string())?;
    let more = rows.len() > TOP;
    let out = rows
        .iter()
        .take(TOP)
        .map(|r| {
            let g = |i: usize| -> Option<String> { r.get(i) };
            PageRow {
                id: r.get(0),
                detection: r.get(1),
                updated: r.get(2),
                expected: r.get(3),
                synced: r.get(4),
                strings: [g(5), g(6), g(7), g(8), g(9)],
                remediation: r.get(10),
                filters: parse_filters(g(11)),
            }
        })
        .collect();
    Ok((out, more))
}

fn page(args: &[String]) {
    let opt = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
    };
    let query = opt("--query").unwrap_or_else(|| {
        "$filter=detectionState%20eq%20'fail'&$orderby=lastStateUpdateDateTime%20desc&$top=100".to_owned()
    });
    let ctx = std::sync::Arc::new(PageCtx {
        tenant: arg(args, "--tenant"),
        script: arg(args, "--script"),
        // remediate's token carries a 16-character hash of the query: 16 characters here too
        query_hash: base64url(&query.as_bytes()[..12.min(query.len())]),
        query,
    });
    let listen = arg(args, "--listen");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // remediate's runtime: two workers per core, at least 4 (crates/remediate/src/lib.rs)
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads((2 * cores).max(4))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        enum Db {
            Sqlite(String),
            Postgres(Vec<(tokio_postgres::Client, tokio_postgres::Statement)>),
        }
        // --pool: a connection per request, as a pool hands them out (8 permits, a free list)
        let pooled = args.iter().any(|a| a == "--pool");
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
        let free = std::sync::Arc::new(std::sync::Mutex::new((0..8).collect::<Vec<usize>>()));
        let db = if let Some(path) = opt("--db") {
            // check once that the page is there
            let (rows, _) = sqlite_page(&path, &ctx).expect("the page query runs");
            assert!(rows.len() == TOP, "the script has fewer than {TOP} failed run states");
            Db::Sqlite(path)
        } else {
            let url = opt("--postgres").expect("--db FILE or --postgres URL");
            let mut clients = Vec::new();
            for _ in 0..8 {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        eprintln!("postgres connection: {e}");
                    }
                });
                let stmt = client.prepare(PAGE_SQL).await.expect("prepare");
                clients.push((client, stmt));
            }
            let (rows, _) = postgres_page(&clients[0].0, &clients[0].1, &ctx).await.expect("the page query runs");
            assert!(rows.len() == TOP, "the script has fewer than {TOP} failed run states");
            Db::Postgres(clients)
        };
        let db = std::sync::Arc::new(db);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        println!("listening on http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            let db = db.clone();
            let ctx = ctx.clone();
            let next = next.clone();
            let permits = permits.clone();
            let free = free.clone();
            async move {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost")
                    .to_owned();
                let result = match &*db {
                    Db::Sqlite(path) => sqlite_page(path, &ctx),
                    Db::Postgres(clients) if pooled => {
                        // the connection goes back to the free list even when the request is dropped midway
                        struct Lease(usize, std::sync::Arc<std::sync::Mutex<Vec<usize>>>);
                        impl Drop for Lease {
                            fn drop(&mut self) {
                                self.1.lock().unwrap_or_else(|e| e.into_inner()).push(self.0);
                            }
                        }
                        let _permit = permits.acquire().await.unwrap();
                        let i = free.lock().unwrap().pop().expect("a free connection under a permit");
                        let lease = Lease(i, free.clone());
                        postgres_page(&clients[lease.0].0, &clients[lease.0].1, &ctx).await
                    }
                    Db::Postgres(clients) => {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % clients.len();
                        postgres_page(&clients[i].0, &clients[i].1, &ctx).await
                    }
                };
                match result {
                    Ok((rows, more)) => (
                        [(header::CONTENT_TYPE, "application/json;odata.metadata=minimal")],
                        render(&rows, more, &ctx, &host),
                    )
                        .into_response(),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
                }
            }
        });
        axum::serve(listener, app).await.unwrap();
    });
}
