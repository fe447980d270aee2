//! Random data and random queries of the differential tests: a seeded generator (printed, and
//! replayed with `REMEDIATE_DIFF_SEED`), value pools with the awkward cases (case variants,
//! Unicode, quotes, times in many zones), random filters and orderings over the oracle's model,
//! and random devices and run states created through the API.

use serde_json::{json, Map, Value};

use crate::harness::TestApp;
use crate::oracle::*;

// ---------------------------------------------------------------------------------------------
// Seeded PRNG (xorshift64*)
// ---------------------------------------------------------------------------------------------

pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        // splitmix64 once, so that small or similar seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub(crate) fn backend(app: &TestApp) -> &'static str {
    if app.database_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

pub(crate) fn seed(test: &str, app: &TestApp) -> u64 {
    let seed = match std::env::var("REMEDIATE_DIFF_SEED") {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("REMEDIATE_DIFF_SEED={text:?} is not a u64"))
        }
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    };
    eprintln!(
        "[differential::{test} {}] seed {seed} (replay with REMEDIATE_DIFF_SEED={seed})",
        backend(app)
    );
    seed
}

pub(crate) fn query_budget(default: usize) -> usize {
    std::env::var("REMEDIATE_DIFF_QUERIES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Random values: times in many spellings, and pools with the awkward cases
// ---------------------------------------------------------------------------------------------

pub(crate) const BASE_TIMES: &[&str] = &[
    "2025-03-01T10:00:00Z",
    "2025-03-01T10:00:00.5Z",
    "2024-12-31T23:59:59.9999999Z",
    "2025-06-15T00:00:00Z",
    "2020-02-29T12:34:56.1234567Z",
];

/// A random instant: often exactly a shared base instant (so that values tie), else near one.
pub(crate) fn random_instant(rng: &mut Rng) -> i64 {
    let base = parse_time(rng.pick::<&str>(BASE_TIMES)).unwrap();
    match rng.below(10) {
        0..=3 => base,
        4..=5 => base + rng.range(-9_999_999, 9_999_999),
        6..=7 => base + rng.range(-7200, 7200) * TICKS_PER_SECOND,
        8 => base + rng.range(-400, 400) * TICKS_PER_DAY,
        _ => base + rng.range(-1, 1),
    }
}

/// A textual form of `ticks` for input: a random zone, and at least as many fraction digits as the
/// value needs (sometimes more, with trailing zeros).
pub(crate) fn random_time_text(rng: &mut Rng, ticks: i64) -> String {
    let frac = ticks.rem_euclid(TICKS_PER_SECOND);
    let needed = format!("{frac:07}").trim_end_matches('0').len();
    let digits = rng.range(needed as i64, 7) as usize;
    if ticks < parse_time("0002-01-01T00:00:00Z").unwrap() {
        return render_time(ticks, None, Some(digits));
    }
    let offset = *rng.pick(&[
        None,
        None,
        Some(0),
        Some(120),
        Some(-30),
        Some(345),
        Some(-480),
        Some(840),
        Some(-720),
    ]);
    render_time(ticks, offset, Some(digits))
}

pub(crate) const NAME_POOL: &[&str] = &[
    "alpha",
    "Alpha",
    "ALPHA",
    "alpha ",
    "beta",
    "Beta",
    "gamma",
    "Ärger",
    "ärger",
    "ÄRGER",
    "straße",
    "STRASSE",
    "strasse",
    "İstanbul",
    "istanbul",
    "ISTANBUL",
    "ǅ",
    "ǆ",
    "Ǆ",
    "ǅx",
    "ΟΔΟΣ",
    "οδος",
    "\u{212A}elvin",
    "kelvin",
    "100%",
    "100",
    "1000",
    "a_b",
    "axb",
    "a%b",
    "back\\slash",
    "back_slash",
    "O'Brien",
    "o'brien",
    "O''Brien",
    "",
    "PC-01",
    "pc-01",
    "pc-10",
    "zeta",
    "Zeta",
    "a+b",
    "a b",
    "C#",
    "R&D",
    "x=1?",
    "%20",
    "50%25",
    "\u{1F600}x",
];

pub(crate) const OS_POOL: &[&str] = &[
    "Windows",
    "windows",
    "WINDOWS",
    "Windows 11",
    "macOS",
    "MacOS",
    "Linux",
    "linux",
    "iOS",
    "",
    "win_dows",
    "50%",
];

pub(crate) const SPECIAL_STRINGS: &[&str] = &[
    "%",
    "_",
    "'",
    "''",
    "\\",
    "a_",
    "0%",
    "_b",
    "%'",
    "",
    " ",
    "Ä",
    "ß",
    "ss",
    "i",
    "İ",
    "I",
    "ǆ",
    "σ",
    "ς",
    "k",
    "\u{212A}",
    "%%",
    "\\_",
    "\\%",
    "'B",
    "+",
    "#",
    "&",
    "=",
    "%2",
    "%25",
    " b",
    "\u{1F600}",
];

pub(crate) const STORAGE_POOL: &[i64] = &[
    0,
    1,
    2,
    1 << 30,
    64 << 30,
    128 << 30,
    128 << 30,
    256 << 30,
    1 << 40,
    9_007_199_254_740_993,
];

// ---------------------------------------------------------------------------------------------
// Random query generation
// ---------------------------------------------------------------------------------------------

pub(crate) fn case_variant(rng: &mut Rng, s: &str) -> String {
    match rng.below(10) {
        0..=4 => s.to_owned(),
        5..=6 => s.to_uppercase(),
        7..=8 => s.to_lowercase(),
        _ => {
            let mut chars = s.chars();
            match chars.next() {
                Some(c) if c.is_lowercase() => c.to_uppercase().chain(chars).collect(),
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        }
    }
}

pub(crate) fn existing(rows: &[Row], p: usize) -> Vec<&Value> {
    rows.iter()
        .map(|r| &r.vals[p])
        .filter(|v| !v.is_null())
        .collect()
}

pub(crate) fn random_string(rng: &mut Rng, rows: &[Row], p: usize, pool: &[&str]) -> String {
    let values = existing(rows, p);
    let source: String = if !values.is_empty() && rng.chance(60) {
        as_str(rng.pick::<&Value>(&values)).to_owned()
    } else {
        (*rng.pick(pool)).to_owned()
    };
    match rng.below(10) {
        0..=4 => case_variant(rng, &source),
        5..=7 => {
            let chars: Vec<char> = source.chars().collect();
            let from = rng.below(chars.len() + 1);
            let to = from + rng.below(chars.len() - from + 1);
            case_variant(rng, &chars[from..to].iter().collect::<String>())
        }
        8 => (*rng.pick(SPECIAL_STRINGS)).to_owned(),
        _ => {
            let n = 1 + rng.below(2);
            (0..n)
                .map(|_| *rng.pick(&['a', 'B', 'e', 'o', 'r', 'z', '0', '1', ' ', '-']))
                .collect()
        }
    }
}

pub(crate) fn random_lit(
    rng: &mut Rng,
    rows: &[Row],
    props: &[Prop],
    p: usize,
    pool: &[&str],
) -> Lit {
    if rng.chance(8) {
        return Lit::Null;
    }
    match props[p].kind {
        Kind::Str => Lit::Str(random_string(rng, rows, p, pool)),
        Kind::Id => {
            let values = existing(rows, p);
            let id = if values.is_empty() {
                "00000000-0000-0000-0000-000000000000".to_owned()
            } else {
                as_str(rng.pick::<&Value>(&values)).to_owned()
            };
            match rng.below(10) {
                0 => Lit::Str(id.to_uppercase()),
                1 => Lit::Str(id[..id.len() / 2].to_owned()),
                _ => Lit::Str(id),
            }
        }
        Kind::Enum(e) => Lit::Enum(rng.pick(e.members).0.to_owned(), rng.chance(30)),
        Kind::Time => {
            let values = existing(rows, p);
            let ticks = if !values.is_empty() && rng.chance(55) {
                parse_time(as_str(rng.pick::<&Value>(&values))).unwrap()
            } else if rng.chance(10) {
                min_date()
            } else {
                random_instant(rng)
            };
            Lit::Time(ticks, random_time_text(rng, ticks))
        }
        Kind::Int => {
            let values = existing(rows, p);
            let base = if !values.is_empty() && rng.chance(60) {
                (*rng.pick(&values)).as_i64().unwrap()
            } else {
                *rng.pick(STORAGE_POOL)
            };
            Lit::Int(base.saturating_add(rng.range(-1, 1) * i64::from(rng.chance(30))))
        }
        Kind::Bool => Lit::Bool(rng.chance(50)),
    }
}

pub(crate) fn random_leaf(rng: &mut Rng, rows: &[Row], props: &[Prop], pool: &[&str]) -> Filter {
    let p = rng.below(props.len());
    let cmp = |rng: &mut Rng, ops: &[Op]| Filter::Cmp {
        p,
        op: *rng.pick(ops),
        lit: random_lit(rng, rows, props, p, pool),
        flipped: rng.chance(20),
    };
    let in_list = |rng: &mut Rng| Filter::In {
        p,
        list: (0..1 + rng.below(4))
            .map(|_| random_lit(rng, rows, props, p, pool))
            .collect(),
    };
    match props[p].kind {
        Kind::Bool => match rng.below(3) {
            0 => Filter::Bare { p },
            _ => cmp(rng, &[Op::Eq, Op::Ne]),
        },
        Kind::Str => match rng.below(20) {
            0..=8 => cmp(rng, &Op::ALL),
            9..=11 => in_list(rng),
            _ => Filter::Call {
                f: *rng.pick(&[Func::StartsWith, Func::EndsWith, Func::Contains]),
                p,
                arg: random_string(rng, rows, p, pool),
            },
        },
        _ => match rng.below(10) {
            0..=6 => cmp(rng, &Op::ALL),
            _ => in_list(rng),
        },
    }
}

/// A filter tree at most three levels deep (`depth` is the level of the node made here, from 1).
pub(crate) fn random_filter(
    rng: &mut Rng,
    rows: &[Row],
    props: &[Prop],
    pool: &[&str],
    depth: usize,
) -> Filter {
    if depth >= 3 || rng.chance(30) {
        return random_leaf(rng, rows, props, pool);
    }
    let sub = |rng: &mut Rng| Box::new(random_filter(rng, rows, props, pool, depth + 1));
    let f = match rng.below(10) {
        0..=1 => Filter::Not(sub(rng)),
        2..=5 => Filter::And(sub(rng), sub(rng)),
        _ => Filter::Or(sub(rng), sub(rng)),
    };
    if rng.chance(15) {
        Filter::Paren(Box::new(f))
    } else {
        f
    }
}

pub(crate) fn random_query(rng: &mut Rng, rows: &[Row], props: &[Prop], pool: &[&str]) -> Query {
    let filter = if rng.chance(85) {
        Some(random_filter(rng, rows, props, pool, 1))
    } else {
        None
    };
    let orderable: Vec<usize> = (0..props.len()).filter(|&i| props[i].orderable).collect();
    let mut orderby: Vec<(usize, Dir)> = Vec::new();
    for _ in 0..rng.below(3) {
        let p = *rng.pick(&orderable);
        if orderby.iter().all(|(q, _)| *q != p) {
            orderby.push((
                p,
                *rng.pick(&[Dir::Default, Dir::Asc, Dir::Desc, Dir::Desc]),
            ));
        }
    }
    Query {
        filter,
        orderby,
        top: if rng.chance(90) {
            Some(1 + rng.below(7))
        } else {
            None
        },
        skip: if rng.chance(30) {
            Some(rng.below(6))
        } else {
            None
        },
        count: rng.chance(70),
    }
}

// ---------------------------------------------------------------------------------------------
// Random data through the API
// ---------------------------------------------------------------------------------------------

pub(crate) async fn create(app: &TestApp, path: &str, body: &Value) -> Value {
    let reply = app.post(path, &body.to_string()).await;
    assert_eq!(reply.status, 201, "POST {path} {body}: {}", reply.text);
    reply.json
}

pub(crate) fn pool_string(rng: &mut Rng, pool: &[&str]) -> Value {
    if rng.chance(5) {
        Value::Null
    } else {
        json!(rng.pick(pool))
    }
}

/// Check that a written property reads back as written (times: the same instant, canonical form).
pub(crate) fn assert_written(
    what: &str,
    written: &Map<String, Value>,
    got: &Value,
    defaults: &[(&str, Value)],
) {
    for (key, sent) in written {
        if key.contains('@') {
            continue;
        }
        let got = &got[key];
        let same = match (sent.as_str().and_then(parse_time), got.as_str()) {
            (Some(ticks), Some(text)) => text == canonical_time(ticks),
            _ => got == sent,
        };
        assert!(same, "{what}: {key} written as {sent}, read back as {got}");
    }
    for (key, default) in defaults {
        if !written.contains_key(*key) {
            assert_eq!(&got[*key], default, "{what}: default of omitted {key}");
        }
    }
}

pub(crate) async fn random_device(app: &TestApp, rng: &mut Rng) -> Value {
    let mut body = Map::new();
    if !rng.chance(5) {
        body.insert("deviceName".into(), pool_string(rng, NAME_POOL));
    }
    if !rng.chance(10) {
        body.insert("operatingSystem".into(), pool_string(rng, OS_POOL));
    }
    if !rng.chance(20) {
        body.insert("isEncrypted".into(), json!(rng.chance(50)));
    }
    if !rng.chance(20) {
        body.insert(
            "totalStorageSpaceInBytes".into(),
            json!(rng.pick(STORAGE_POOL)),
        );
    }
    if !rng.chance(20) {
        body.insert(
            "complianceState".into(),
            json!(rng.pick(COMPLIANCE_STATE.members).0),
        );
    }
    let device = create(
        app,
        "deviceManagement/managedDevices",
        &Value::Object(body.clone()),
    )
    .await;
    assert_written(
        "device",
        &body,
        &device,
        &[
            ("deviceName", json!("")),
            ("operatingSystem", json!("")),
            ("isEncrypted", json!(false)),
            ("totalStorageSpaceInBytes", json!(0)),
            ("complianceState", json!("unknown")),
        ],
    );
    device
}

/// A random run-state body: for a create (binding `device` if any), or for a PATCH (fewer members).
pub(crate) fn random_state_body(
    rng: &mut Rng,
    device: Option<&str>,
    patch: bool,
) -> Map<String, Value> {
    let omit = |rng: &mut Rng, percent: u64| rng.chance(if patch { 60 } else { percent });
    let mut body = Map::new();
    if let Some(device) = device {
        body.insert(
            "managedDevice@odata.bind".into(),
            json!(format!(
                "https://graph.microsoft.com/beta/deviceManagement/managedDevices('{device}')"
            )),
        );
    }
    if !omit(rng, 15) {
        body.insert(
            "detectionState".into(),
            json!(rng.pick(RUN_STATE.members).0),
        );
    }
    if !omit(rng, 15) {
        body.insert(
            "remediationState".into(),
            json!(rng.pick(REMEDIATION_STATE.members).0),
        );
    }
    for (key, percent) in [
        ("lastStateUpdateDateTime", 10),
        ("expectedStateUpdateDateTime", 35),
        ("lastSyncDateTime", 30),
    ] {
        if !omit(rng, percent) {
            let ticks = random_instant(rng);
            body.insert(key.into(), json!(random_time_text(rng, ticks)));
        }
    }
    if rng.chance(5) {
        body.insert("expectedStateUpdateDateTime".into(), Value::Null);
    }
    if !omit(rng, 25) {
        let output = if rng.chance(15) {
            Value::Null
        } else {
            json!(rng.pick(NAME_POOL))
        };
        body.insert("preRemediationDetectionScriptOutput".into(), output);
    }
    body
}

pub(crate) async fn random_run_state(
    app: &TestApp,
    rng: &mut Rng,
    script: &str,
    device: Option<&str>,
) -> Value {
    let body = random_state_body(rng, device, false);
    let path = format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates");
    let state = create(app, &path, &Value::Object(body.clone())).await;
    let min = json!("0001-01-01T00:00:00Z");
    assert_written(
        "run state",
        &body,
        &state,
        &[
            ("detectionState", json!("unknown")),
            ("remediationState", json!("unknown")),
            ("lastStateUpdateDateTime", min.clone()),
            ("lastSyncDateTime", min),
            ("expectedStateUpdateDateTime", Value::Null),
            ("preRemediationDetectionScriptOutput", Value::Null),
        ],
    );
    state
}

/// PATCH `path` with `body` (200 with the entity), then GET it and check that the change reads
/// back, in the PATCH's answer as in the GET.
pub(crate) async fn patch_and_read(app: &TestApp, path: &str, body: Map<String, Value>) -> Value {
    let reply = app
        .patch(path, &Value::Object(body.clone()).to_string())
        .await;
    assert_eq!(reply.status, 200, "PATCH {path} {:?}: {}", body, reply.text);
    let item = app.get(path).await;
    assert_eq!(item.status, 200, "GET {path}: {}", item.text);
    assert_eq!(reply.json, item.json, "PATCH {path} answers what GET does");
    assert_written(&format!("PATCH {path}"), &body, &item.json, &[]);
    item.json
}
