//! Differential tests: random data and random OData queries sent over HTTP, compared with a small
//! in-memory reference evaluator written from SPEC §4 (independently of the server code).
//!
//! Every test prints its seed; `REMEDIATE_DIFF_SEED=<seed>` replays the same data and queries
//! (ids are new on every run, but which rows a query names is not). `REMEDIATE_DIFF_QUERIES=<n>`
//! sets the number of random queries per test; `REMEDIATE_DIFF_VERBOSE=1` prints every query.
//!
//! The reference evaluator is `crate::oracle`; the generators are in `generate`, the page walk
//! and comparison in `check`.

mod check;
mod generate;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as Atomic};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::both;
use crate::harness::TestApp;

use self::check::*;
use self::generate::*;
use crate::oracle::*;

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

both!(differential_run_state_queries_match_the_reference, |app| {
    let started = Instant::now();
    let seed = seed("run_state_queries", &app);
    let mut rng = Rng::new(seed);

    let mut devices: Vec<Value> = Vec::new();
    for _ in 0..40 {
        let mut body = Map::new();
        body.insert("deviceName".into(), pool_string(&mut rng, NAME_POOL));
        devices.push(
            create(
                &app,
                "deviceManagement/managedDevices",
                &Value::Object(body),
            )
            .await,
        );
    }
    let device_ids: Vec<String> = devices
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    let scripts = [
        app.script("differential A").await,
        app.script("differential B").await,
    ];

    // Script A: every device once, in random order, plus unbound states; script B: a random subset.
    let mut order: Vec<usize> = (0..devices.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut plan: Vec<(usize, Option<usize>)> = order.iter().map(|&d| (0, Some(d))).collect();
    plan.extend((0..6).map(|_| (0, None)));
    plan.extend(order.iter().take(13).map(|&d| (1, Some(d))));
    plan.extend((0..2).map(|_| (1, None)));
    for i in (1..plan.len()).rev() {
        plan.swap(i, rng.below(i + 1));
    }
    let mut states: Vec<(usize, Option<usize>, Value)> = Vec::new();
    for (s, d) in plan {
        let state = random_run_state(
            &app,
            &mut rng,
            &scripts[s],
            d.map(|d| device_ids[d].as_str()),
        )
        .await;
        if let Some(d) = d {
            assert_eq!(state["id"], format!("{}:{}", scripts[s], device_ids[d]));
        }
        states.push((s, d, state));
    }
    // Later changes: a few states are updated, a few devices renamed (queries on
    // `managedDevice/deviceName` must see the device's current name).
    for _ in 0..8 {
        let i = rng.below(states.len());
        let (s, _, state) = &mut states[i];
        let path = format!(
            "deviceManagement/deviceHealthScripts/{}/deviceRunStates/{}",
            scripts[*s],
            state["id"].as_str().unwrap()
        );
        let body = random_state_body(&mut rng, None, true);
        *state = patch_and_read(&app, &path, body).await;
    }
    for _ in 0..6 {
        let d = rng.below(devices.len());
        let mut body = Map::new();
        body.insert("deviceName".into(), pool_string(&mut rng, NAME_POOL));
        let path = format!("deviceManagement/managedDevices/{}", device_ids[d]);
        devices[d] = patch_and_read(&app, &path, body).await;
    }
    let mut rows: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
    for (n, (s, d, state)) in states.iter().enumerate() {
        rows[*s].push(make_row(
            RUN_STATE_PROPS,
            format!("#{n}"),
            state,
            d.map(|d| &devices[d]),
        ));
    }
    eprintln!(
        "[{}] data created in {:.1?}",
        backend(&app),
        started.elapsed()
    );

    let total = query_budget(90);
    let mut failures = Failures::new("run_state_queries", &app, Some(seed));
    for n in 0..total {
        let s = usize::from(rng.chance(15));
        let q = random_query(&mut rng, &rows[s], RUN_STATE_PROPS, NAME_POOL);
        let path = format!(
            "deviceManagement/deviceHealthScripts/{}/deviceRunStates",
            scripts[s]
        );
        if let Err(report) = check_query(&app, &path, RUN_STATE_PROPS, &rows[s], &q).await {
            failures.add(format!("query {n} (script {}):\n{report}", ["A", "B"][s]));
        }
    }
    eprintln!(
        "[{}] {total} queries done in {:.1?}",
        backend(&app),
        started.elapsed()
    );
    failures.finish(total);
});

both!(
    differential_managed_device_queries_match_the_reference,
    |app| {
        let started = Instant::now();
        let seed = seed("managed_device_queries", &app);
        let mut rng = Rng::new(seed);
        let mut rows = Vec::new();
        for n in 0..40 {
            let device = random_device(&app, &mut rng).await;
            rows.push(make_row(DEVICE_PROPS, format!("#{n}"), &device, None));
        }
        eprintln!(
            "[{}] data created in {:.1?}",
            backend(&app),
            started.elapsed()
        );
        let total = query_budget(70);
        let mut failures = Failures::new("managed_device_queries", &app, Some(seed));
        let pool: Vec<&str> = NAME_POOL.iter().chain(OS_POOL).copied().collect();
        for n in 0..total {
            let q = random_query(&mut rng, &rows, DEVICE_PROPS, &pool);
            if let Err(report) = check_query(
                &app,
                "deviceManagement/managedDevices",
                DEVICE_PROPS,
                &rows,
                &q,
            )
            .await
            {
                failures.add(format!("query {n}:\n{report}"));
            }
        }
        eprintln!(
            "[{}] {total} queries done in {:.1?}",
            backend(&app),
            started.elapsed()
        );
        failures.finish(total);
    }
);

both!(
    differential_datetime_literals_may_leave_out_seconds,
    |app| {
        // OData's ABNF (dateTimeOffsetValue) makes the seconds optional, SPEC §4 accepts "unquoted
        // ISO dates/datetimes", and the `$filter` lexer takes `THH:MM`: `2025-03-01T10:00Z` is
        // the instant 2025-03-01T10:00:00Z.
        let script = app.script("short times").await;
        let path = format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
        let mut rows = Vec::new();
        let times = [
            "2025-03-01T10:00:00Z",
            "2025-03-01T10:00:00.5Z",
            "2025-03-01T09:59:59Z",
        ];
        for (n, time) in times.iter().enumerate() {
            let device = create(
                &app,
                "deviceManagement/managedDevices",
                &json!({ "deviceName": format!("short-{n}") }),
            )
            .await;
            let bind = format!(
                "https://graph.microsoft.com/beta/deviceManagement/managedDevices('{}')",
                device["id"].as_str().unwrap()
            );
            let state = create(
                &app,
                &path,
                &json!({ "managedDevice@odata.bind": bind, "lastStateUpdateDateTime": time }),
            )
            .await;
            rows.push(make_row(
                RUN_STATE_PROPS,
                format!("#{n}"),
                &state,
                Some(&device),
            ));
        }
        let p = RUN_STATE_PROPS
            .iter()
            .position(|p| p.path == "lastStateUpdateDateTime")
            .unwrap();
        let cases = [
            (Op::Eq, "2025-03-01T10:00Z"),
            (Op::Ge, "2025-03-01T12:00+02:00"),
            (Op::Lt, "2025-03-01T09:30-00:30"),
        ];
        let mut failures = Failures::new("datetime_literals_may_leave_out_seconds", &app, None);
        for (op, text) in cases {
            let ticks = parse_time(&format!("{}:00{}", &text[..16], &text[16..])).unwrap();
            let q = Query {
                filter: Some(Filter::Cmp {
                    p,
                    op,
                    lit: Lit::Time(ticks, text.to_owned()),
                    flipped: false,
                }),
                orderby: Vec::new(),
                top: Some(2),
                skip: None,
                count: true,
            };
            if let Err(report) = check_query(&app, &path, RUN_STATE_PROPS, &rows, &q).await {
                failures.add(report);
            }
        }
        failures.finish(cases.len());
    }
);

const WALK_NAMES: &[&str] = &["dev", "Dev", "DEV", "node", "Node", "ärger", "Ärger", "zz"];

fn walk_name(rng: &mut Rng) -> String {
    format!("{}{:02}", rng.pick(WALK_NAMES), rng.below(40))
}

async fn create_named(app: &TestApp, name: &str) -> String {
    let device = create(
        app,
        "deviceManagement/managedDevices",
        &json!({ "deviceName": name }),
    )
    .await;
    device["id"].as_str().unwrap().to_owned()
}

/// One page walk of `$top=7&$orderby=deviceName [desc]`, waiting after each page until the
/// concurrent writer has done at least one more operation. Returns (id, deviceName) in order.
async fn concurrent_walk(
    app: &TestApp,
    desc: bool,
    ops: &AtomicUsize,
    context: &str,
) -> Vec<(String, String)> {
    let order = if desc {
        "deviceName desc"
    } else {
        "deviceName"
    };
    let mut url = format!(
        "deviceManagement/managedDevices?$top=7&$orderby={}",
        encode(order)
    );
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let before = ops.load(Atomic::SeqCst);
        let page = app.get(&url).await;
        pages += 1;
        assert_eq!(
            page.status, 200,
            "{context}: page {pages} of {order}: {}",
            page.text
        );
        let value = page.json["value"].as_array().expect("value");
        assert!(
            value.len() <= 7,
            "{context}: page {pages} has {} rows",
            value.len()
        );
        for item in value {
            items.push((
                item["id"].as_str().unwrap().to_owned(),
                item["deviceName"].as_str().unwrap().to_owned(),
            ));
        }
        match page.json["@odata.nextLink"].as_str() {
            None => break,
            Some(next) => url = next.to_owned(),
        }
        assert!(
            pages < 60,
            "{context}: walk of {order} does not end after {pages} pages"
        );
        let waited = Instant::now();
        while ops.load(Atomic::SeqCst) == before && waited.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    items
}

both!(
    differential_concurrent_walk_sees_every_stable_row_once,
    |app| {
        let seed = seed("concurrent_walk", &app);
        let context = format!("concurrent walk on {} (seed {seed})", backend(&app));
        let mut rng = Rng::new(seed);
        let mut originals = HashSet::new();
        for _ in 0..60 {
            originals.insert(create_named(&app, &walk_name(&mut rng)).await);
        }
        let mut deletable = Vec::new();
        for _ in 0..15 {
            deletable.push(create_named(&app, &walk_name(&mut rng)).await);
        }
        let mut known: HashSet<String> = originals.iter().chain(&deletable).cloned().collect();

        let done = AtomicBool::new(false);
        let ops = AtomicUsize::new(0);
        let writer = async {
            let mut rng = Rng::new(seed ^ 0x5EED);
            let mut created = Vec::new();
            while !done.load(Atomic::SeqCst) {
                if !deletable.is_empty() && rng.chance(45) {
                    let id = deletable.swap_remove(rng.below(deletable.len()));
                    let reply = app
                        .delete(&format!("deviceManagement/managedDevices/{id}"))
                        .await;
                    assert_eq!(reply.status, 204, "{context}: delete {id}: {}", reply.text);
                } else {
                    let id = create_named(&app, &walk_name(&mut rng)).await;
                    if rng.chance(60) {
                        deletable.push(id.clone());
                    }
                    created.push(id);
                }
                ops.fetch_add(1, Atomic::SeqCst);
            }
            created
        };
        let walker = async {
            let start = ops.load(Atomic::SeqCst);
            let asc = concurrent_walk(&app, false, &ops, &context).await;
            let middle = ops.load(Atomic::SeqCst);
            let desc = concurrent_walk(&app, true, &ops, &context).await;
            let end = ops.load(Atomic::SeqCst);
            done.store(true, Atomic::SeqCst);
            (asc, desc, middle - start, end - middle)
        };
        let (created, (asc, desc, ops_asc, ops_desc)) = tokio::join!(writer, walker);
        known.extend(created);

        for (walk, items, writes) in [("asc", &asc, ops_asc), ("desc", &desc, ops_desc)] {
            assert!(
                writes >= 3,
                "{context}: only {writes} concurrent writes during the {walk} walk"
            );
            let mut seen = HashSet::new();
            for (id, _) in items.iter() {
                assert!(
                    seen.insert(id.as_str()),
                    "{context}: {walk} walk returned {id} twice"
                );
                assert!(
                    known.contains(id),
                    "{context}: {walk} walk returned unknown id {id}"
                );
            }
            let missing: Vec<&String> = originals
                .iter()
                .filter(|id| !seen.contains(id.as_str()))
                .collect();
            assert!(
                missing.is_empty(),
                "{context}: {walk} walk missed {} original devices: {missing:?}",
                missing.len()
            );
            // Keyset order: names never change, so the rows must come strictly in sort order.
            for pair in items.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                // Ties by id in the walk's direction.
                let order =
                    order_values(Kind::Str, &json!(a.1), &json!(b.1)).then_with(|| a.0.cmp(&b.0));
                let order = if walk == "desc" {
                    order.reverse()
                } else {
                    order
                };
                assert_eq!(
                    order,
                    Ordering::Less,
                    "{context}: {walk} walk out of order: {a:?} before {b:?}"
                );
            }
            eprintln!(
                "[{}] {walk} walk: {} rows, {writes} concurrent writes",
                backend(&app),
                items.len()
            );
        }
    }
);
