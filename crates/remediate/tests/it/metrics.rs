//! `/metrics`: scraped before and after known requests, each series must have moved by exactly
//! what those requests did (requests by route template, latency histograms, group commits and
//! commit durations, run states stored, recently synced devices, pool use, shed and throttled
//! requests), and `--metrics-listen` moves it to its own address. On SQLite and PostgreSQL.

use std::collections::BTreeMap;

use crate::both;
use crate::harness::TestApp;

const SCRIPTS: &str = "deviceManagement/deviceHealthScripts";
const SCRIPTS_ROUTE: &str = "/deviceManagement/deviceHealthScripts";
const SCRIPT_ROUTE: &str = "/deviceManagement/deviceHealthScripts/{scriptId}";
const RUN_STATES_ROUTE: &str = "/deviceManagement/deviceHealthScripts/{scriptId}/deviceRunStates";
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One scrape: every sample as (name, labels, value).
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}').expect(line)),
                None => (series, ""),
            };
            let mut map = BTreeMap::new();
            // Label values here never hold `,` or `"` (templates, methods, statuses, tenants).
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').expect(line);
                map.insert(key.to_owned(), value.trim_matches('"').to_owned());
            }
            samples.push((name.to_owned(), map, value));
        }
        Scrape(samples)
    }

    /// The sample with exactly these labels, if present.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    }

    /// The sample's value; a series not (yet) present counts as 0.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).unwrap_or(0.0)
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, _)| n == name)
    }
}

async fn scrape_at(app: &TestApp, url: &str) -> Scrape {
    let reply = app.client.get(url).send().await.expect("scrape");
    assert_eq!(reply.status().as_u16(), 200);
    let content_type = reply.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, CONTENT_TYPE);
    Scrape::parse(&reply.text().await.unwrap())
}

async fn scrape(app: &TestApp) -> Scrape {
    scrape_at(app, &app.base.replace("/beta", "/metrics")).await
}

fn requests(route: &str, method: &str, status: &str) -> (String, Vec<(&'static str, String)>) {
    (
        "remediate_http_requests_total".into(),
        vec![
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_owned()),
        ],
    )
}

/// How much a series moved between two scrapes.
fn moved(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

fn requests_moved(before: &Scrape, after: &Scrape, route: &str, method: &str, status: &str) -> f64 {
    let (name, labels) = requests(route, method, status);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    moved(before, after, &name, &labels)
}

fn latency_moved(before: &Scrape, after: &Scrape, route: &str, method: &str) -> f64 {
    let labels = [("route", route), ("method", method)];
    let count = moved(
        before,
        after,
        "remediate_http_request_duration_seconds_count",
        &labels,
    );
    // The +Inf bucket is the count, and the sum grew by some positive time.
    let inf = [("route", route), ("method", method), ("le", "+Inf")];
    assert_eq!(
        moved(
            before,
            after,
            "remediate_http_request_duration_seconds_bucket",
            &inf
        ),
        count
    );
    if count > 0.0 {
        assert!(
            moved(
                before,
                after,
                "remediate_http_request_duration_seconds_sum",
                &labels
            ) > 0.0
        );
    }
    count
}

both!(series_move_by_what_the_requests_did, |app| {
    let sqlite = app.database_url().is_none();
    let before = scrape(&app).await;
    assert!(before.has("remediate_http_requests_in_flight"));
    assert_eq!(
        before.has("remediate_db_group_commit_writes_count"),
        sqlite,
        "group commits are SQLite's"
    );
    // No export job has been counted: the series does not exist (no invented zero).
    assert!(!before.has("remediate_export_jobs_total"));

    // Writes: a script, two devices (one synced now, one long ago), a run state (the seed POST).
    let script = app.script("metrics").await;
    let now = remediate_domain::Instant::now().to_seconds_string();
    let synced = app
        .post(
            "deviceManagement/managedDevices",
            &format!(r#"{{"deviceName":"synced","lastSyncDateTime":"{now}"}}"#),
        )
        .await;
    assert_eq!(synced.status, 201, "{}", synced.text);
    let device = synced.json["id"].as_str().unwrap().to_owned();
    let old = app
        .post(
            "deviceManagement/managedDevices",
            r#"{"deviceName":"old","lastSyncDateTime":"2020-01-01T00:00:00Z"}"#,
        )
        .await;
    assert_eq!(old.status, 201, "{}", old.text);
    let seeded = app
        .run_state(&script, &device, r#""detectionState":"success""#)
        .await;
    assert_eq!(seeded.status, 201, "{}", seeded.text);
    let writes = 4.0;
    // Reads: one found, one missing (404), one path that names nothing (400).
    assert_eq!(app.get(&format!("{SCRIPTS}/{script}")).await.status, 200);
    assert_eq!(app.get(&format!("{SCRIPTS}/missing")).await.status, 404);
    assert_eq!(app.get("deviceManagement/nothing").await.status, 400);
    // The other key form is the same template.
    assert_eq!(
        app.get(&format!("{SCRIPTS}('{script}')/deviceRunStates"))
            .await
            .status,
        200
    );

    let after = scrape(&app).await;
    let r = |route, method, status| requests_moved(&before, &after, route, method, status);
    assert_eq!(r(SCRIPTS_ROUTE, "POST", "201"), 1.0);
    assert_eq!(r("/deviceManagement/managedDevices", "POST", "201"), 2.0);
    assert_eq!(r(RUN_STATES_ROUTE, "POST", "201"), 1.0);
    assert_eq!(r(RUN_STATES_ROUTE, "GET", "200"), 1.0);
    assert_eq!(r(SCRIPT_ROUTE, "GET", "200"), 1.0);
    assert_eq!(r(SCRIPT_ROUTE, "GET", "404"), 1.0);
    assert_eq!(r("(unmatched)", "GET", "400"), 1.0);
    // The first scrape is counted once it was answered.
    assert_eq!(r("/metrics", "GET", "200"), 1.0);
    // No raw path (a script id) ever becomes a label.
    assert!(
        !after
            .0
            .iter()
            .any(|(_, l, _)| l.values().any(|v| v.contains(&script))),
        "a key leaked into a label"
    );
    let l = |route, method| latency_moved(&before, &after, route, method);
    assert_eq!(l(SCRIPTS_ROUTE, "POST"), 1.0);
    assert_eq!(l(SCRIPT_ROUTE, "GET"), 2.0);
    assert_eq!(l(RUN_STATES_ROUTE, "POST"), 1.0);

    // Every write was committed in a transaction the store reported.
    let commits = moved(
        &before,
        &after,
        "remediate_db_commit_duration_seconds_count",
        &[],
    );
    assert!(
        moved(
            &before,
            &after,
            "remediate_db_commit_duration_seconds_sum",
            &[]
        ) > 0.0,
        "commits take time"
    );
    if sqlite {
        let groups = moved(
            &before,
            &after,
            "remediate_db_group_commit_writes_count",
            &[],
        );
        let grouped = moved(&before, &after, "remediate_db_group_commit_writes_sum", &[]);
        assert_eq!(grouped, writes, "each write is in exactly one group");
        assert!((1.0..=writes).contains(&groups), "{groups} groups");
        assert_eq!(commits, groups, "one commit per group");
    } else {
        assert_eq!(commits, writes, "one transaction per write");
    }

    // Read from the database at scrape time.
    assert_eq!(
        moved(&before, &after, "remediate_run_states_stored", &[]),
        1.0
    );
    assert_eq!(
        after.get("remediate_agents_checked_in_last_5m", &[]),
        1.0,
        "only the device synced now"
    );
    let max = after.get("remediate_db_connections_max", &[]);
    let in_use = after.get("remediate_db_connections", &[("state", "in_use")]);
    let idle = after.get("remediate_db_connections", &[("state", "idle")]);
    assert!(max >= 1.0, "{max}");
    assert!(idle >= 1.0, "the reads' connections went back idle: {idle}");
    assert!(in_use + idle <= max, "{in_use} + {idle} > {max}");
    if !sqlite {
        assert_eq!(max, 8.0, "the default --db-connections");
    }
    assert_eq!(after.get("remediate_http_requests_in_flight", &[]), 0.0);
    assert_eq!(
        after.get("remediate_http_requests_in_flight_max", &[]),
        512.0
    );
});

both!(shed_and_throttled_requests_are_counted, |app| {
    let mut app = app;
    app.stop();
    // One slot; the first request admitted sleeps 102 ms (the seeded latency of --chaos-seed 1).
    app.args = [
        "--max-in-flight",
        "1",
        "--inject-latency-ms",
        "300",
        "--chaos-seed",
        "1",
    ]
    .map(String::from)
    .to_vec();
    app.spawn();
    let before = scrape(&app).await;
    assert_eq!(
        before.get("remediate_http_requests_in_flight_max", &[]),
        1.0
    );
    // Shedding: eight requests at once through one slot; watch the in-flight gauge meanwhile.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, token) = (
            app.client.clone(),
            app.url("deviceManagement/managedDevices"),
            app.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let reply = client.get(url).bearer_auth(token).send().await.unwrap();
            reply.status().as_u16()
        }));
    }
    let mut seen = Vec::new();
    while !tasks.iter().all(|t| t.is_finished()) {
        seen.push(
            scrape(&app)
                .await
                .get("remediate_http_requests_in_flight", &[]),
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let shed = statuses.iter().filter(|s| **s == 503).count() as f64;
    let served = statuses.iter().filter(|s| **s == 200).count() as f64;
    assert!(shed > 0.0, "{statuses:?}");
    assert_eq!(shed + served, 8.0, "{statuses:?}");
    assert!(seen.iter().all(|n| *n <= 1.0), "{seen:?}");
    assert!(
        seen.contains(&1.0),
        "a scrape saw the request in its slot: {seen:?}"
    );
    let after = scrape(&app).await;
    assert_eq!(
        moved(&before, &after, "remediate_http_requests_shed_total", &[]),
        shed
    );
    let devices = "/deviceManagement/managedDevices";
    assert_eq!(requests_moved(&before, &after, devices, "GET", "503"), shed);
    assert_eq!(
        requests_moved(&before, &after, devices, "GET", "200"),
        served
    );
    assert_eq!(after.get("remediate_http_requests_in_flight", &[]), 0.0);

    // Throttling: one app may write 200 times per window; refused bodies count as writes too,
    // so nothing is stored. Every 429 is counted for the token's tenant.
    assert!(!after.has("remediate_http_requests_throttled_total"));
    app.stop();
    app.args = ["--throttle-window-secs", "600"].map(String::from).to_vec();
    app.spawn();
    let after = scrape(&app).await;
    let mut throttled = 0.0;
    for _ in 0..203 {
        let reply = app.post("deviceManagement/managedDevices", "{").await;
        match reply.status {
            400 => {}
            429 => throttled += 1.0,
            other => panic!("{other}: {}", reply.text),
        }
    }
    assert_eq!(throttled, 3.0);
    let last = scrape(&app).await;
    assert_eq!(
        last.get(
            "remediate_http_requests_throttled_total",
            &[("tenant", "tenant-a")]
        ),
        throttled
    );
    assert_eq!(
        requests_moved(&after, &last, devices, "POST", "429"),
        throttled
    );
    assert_eq!(requests_moved(&after, &last, devices, "POST", "400"), 200.0);
});

both!(metrics_listen_moves_metrics_to_their_own_address, |app| {
    let mut app = app;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    app.stop();
    app.args = vec!["--metrics-listen".into(), format!("127.0.0.1:{port}")];
    app.spawn();
    let own = format!("http://127.0.0.1:{port}/metrics");
    let before = scrape_at(&app, &own).await;
    // The main listener answers /metrics as any unknown path outside /beta.
    let main = app.service("/metrics").await;
    assert_eq!(main.status().as_u16(), 400);
    let body: serde_json::Value = main.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'metrics'"),
        "{body}"
    );
    assert_eq!(app.get(SCRIPTS).await.status, 200);
    let after = scrape_at(&app, &own).await;
    assert_eq!(
        requests_moved(&before, &after, SCRIPTS_ROUTE, "GET", "200"),
        1.0
    );
    assert_eq!(
        requests_moved(&before, &after, "(unmatched)", "GET", "400"),
        1.0
    );
    // Scrapes of the metrics address are not requests of the API.
    assert_eq!(
        requests_moved(&before, &after, "/metrics", "GET", "200"),
        0.0
    );
    let other = app
        .client
        .get(format!("http://127.0.0.1:{port}/beta/{SCRIPTS}"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
});

#[test]
fn metrics_listen_comes_from_the_flag_or_the_file() {
    let dir = std::env::temp_dir().join(format!("remediate-metrics-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("remediate.toml");
    std::fs::write(&file, "metrics_listen = \"127.0.0.1:9464\"\n").unwrap();
    let resolve = |flags: &[&str]| {
        let args = remediate::config::ServeArgs::from_flags(flags).unwrap();
        remediate::config::Config::resolve(args)
            .unwrap()
            .metrics_listen
    };
    let path = file.to_str().unwrap();
    assert_eq!(
        resolve(&["--config", path]),
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(
        resolve(&["--config", path, "--metrics-listen", "127.0.0.1:9100"]),
        Some("127.0.0.1:9100".parse().unwrap())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
