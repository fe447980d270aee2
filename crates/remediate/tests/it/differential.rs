//! Differential tests: random data and random OData queries sent over HTTP, compared with a small
//! in-memory reference evaluator written from SPEC §4 (independently of the server code).
//!
//! Every test prints its seed; `REMEDIATE_DIFF_SEED=<seed>` replays the same data and queries
//! (ids are new on every run, but which rows a query names is not). `REMEDIATE_DIFF_QUERIES=<n>`
//! sets the number of random queries per test; `REMEDIATE_DIFF_VERBOSE=1` prints every query.
//!
//! Reference semantics (SPEC §4 and project decisions):
//! - strings compare case-insensitively through Rust's `str::to_lowercase` of both sides; `id` and
//!   `managedDevice/id` compare exactly;
//! - enums compare and sort by declared member value; times compare as instants;
//! - two-valued logic: `x eq null` iff null, `ne` is its negation, `gt ge lt le` and functions are
//!   false when either side is null, `not` negates exactly;
//! - order: `$orderby` keys (strings by lower case, then exact value; nulls first ascending, last
//!   descending; `desc` reverses both), then `id` ascending.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as Atomic};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::both;
use crate::harness::TestApp;

// ---------------------------------------------------------------------------------------------
// Seeded PRNG (xorshift64*)
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 once, so that small or similar seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn backend(app: &TestApp) -> &'static str {
    if app.database_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

fn seed(test: &str, app: &TestApp) -> u64 {
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

fn query_budget(default: usize) -> usize {
    std::env::var("REMEDIATE_DIFF_QUERIES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// Time: 100 ns ticks since 1970-01-01T00:00:00Z
// ---------------------------------------------------------------------------------------------

const TICKS_PER_SECOND: i64 = 10_000_000;
const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,7}]` then `Z` or `±HH:MM`, as ticks (UTC).
fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let t = s.get(from..to)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let digits = j - i - 1;
        if digits == 0 || digits > 7 {
            return None;
        }
        frac = num(i + 1, j)? * 10i64.pow((7 - digits) as u32);
        i = j;
    }
    let offset = match &s[i..] {
        "Z" => 0,
        rest if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
            if &rest[3..4] != ":" {
                return None;
            }
            let minutes = num(i + 1, i + 3)? * 60 + num(i + 4, i + 6)?;
            if rest.starts_with('-') {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    let local = days_from_civil(y, mo, d) * TICKS_PER_DAY
        + ((h * 60 + mi) * 60 + se) * TICKS_PER_SECOND
        + frac;
    Some(local - offset * 60 * TICKS_PER_SECOND)
}

/// `ticks` in the zone `offset` minutes east of UTC (`None`: written `Z`), with exactly `digits`
/// fraction digits (`None`: the canonical output form, trailing zeros trimmed).
fn render_time(ticks: i64, offset: Option<i64>, digits: Option<usize>) -> String {
    let local = ticks + offset.unwrap_or(0) * 60 * TICKS_PER_SECOND;
    let (y, m, d) = civil_from_days(local.div_euclid(TICKS_PER_DAY));
    let rem = local.rem_euclid(TICKS_PER_DAY);
    let secs = rem / TICKS_PER_SECOND;
    let frac = format!("{:07}", rem % TICKS_PER_SECOND);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    match digits {
        None => {
            let trimmed = frac.trim_end_matches('0');
            if !trimmed.is_empty() {
                s.push('.');
                s.push_str(trimmed);
            }
        }
        Some(0) => {}
        Some(n) => {
            s.push('.');
            s.push_str(&frac[..n]);
        }
    }
    match offset {
        None => s.push('Z'),
        Some(o) => {
            let sign = if o < 0 { '-' } else { '+' };
            write!(s, "{sign}{:02}:{:02}", o.abs() / 60, o.abs() % 60).unwrap();
        }
    }
    s
}

fn canonical_time(ticks: i64) -> String {
    render_time(ticks, None, None)
}

fn min_date() -> i64 {
    parse_time("0001-01-01T00:00:00Z").unwrap()
}

const BASE_TIMES: &[&str] = &[
    "2025-03-01T10:00:00Z",
    "2025-03-01T10:00:00.5Z",
    "2024-12-31T23:59:59.9999999Z",
    "2025-06-15T00:00:00Z",
    "2020-02-29T12:34:56.1234567Z",
];

/// A random instant: often exactly a shared base instant (so that values tie), else near one.
fn random_instant(rng: &mut Rng) -> i64 {
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
fn random_time_text(rng: &mut Rng, ticks: i64) -> String {
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

// ---------------------------------------------------------------------------------------------
// Model: the properties queried, as the API shows them
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct EnumDef {
    name: &'static str,
    members: &'static [(&'static str, i64)],
}

const RUN_STATE: EnumDef = EnumDef {
    name: "runState",
    members: &[
        ("unknown", 0),
        ("success", 1),
        ("fail", 2),
        ("scriptError", 3),
        ("pending", 4),
        ("notApplicable", 5),
    ],
};

const REMEDIATION_STATE: EnumDef = EnumDef {
    name: "remediationState",
    members: &[
        ("unknown", 0),
        ("skipped", 1),
        ("success", 2),
        ("remediationFailed", 3),
        ("scriptError", 4),
        ("unknownFutureValue", 5),
    ],
};

const COMPLIANCE_STATE: EnumDef = EnumDef {
    name: "complianceState",
    members: &[
        ("unknown", 0),
        ("compliant", 1),
        ("noncompliant", 2),
        ("conflict", 3),
        ("error", 4),
        ("inGracePeriod", 254),
        ("configManager", 255),
    ],
};

impl EnumDef {
    fn value(&self, member: &str) -> i64 {
        self.members
            .iter()
            .find(|(m, _)| *m == member)
            .unwrap_or_else(|| panic!("{member:?} is not a member of {}", self.name))
            .1
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Case-insensitive string.
    Str,
    /// Exact (case-sensitive) string key.
    Id,
    Enum(EnumDef),
    Time,
    Int,
    Bool,
}

#[derive(Clone, Copy, Debug)]
struct Prop {
    path: &'static str,
    kind: Kind,
    orderable: bool,
}

const fn prop(path: &'static str, kind: Kind) -> Prop {
    Prop {
        path,
        kind,
        orderable: true,
    }
}

const RUN_STATE_PROPS: &[Prop] = &[
    prop("id", Kind::Id),
    prop("detectionState", Kind::Enum(RUN_STATE)),
    prop("remediationState", Kind::Enum(REMEDIATION_STATE)),
    prop("lastStateUpdateDateTime", Kind::Time),
    prop("expectedStateUpdateDateTime", Kind::Time),
    prop("preRemediationDetectionScriptOutput", Kind::Str),
    prop("managedDevice/deviceName", Kind::Str),
    Prop {
        path: "managedDevice/id",
        kind: Kind::Id,
        orderable: false,
    },
];

const DEVICE_PROPS: &[Prop] = &[
    prop("id", Kind::Id),
    prop("deviceName", Kind::Str),
    prop("operatingSystem", Kind::Str),
    prop("isEncrypted", Kind::Bool),
    prop("totalStorageSpaceInBytes", Kind::Int),
    prop("complianceState", Kind::Enum(COMPLIANCE_STATE)),
];

const NAME_POOL: &[&str] = &[
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

const OS_POOL: &[&str] = &[
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

const SPECIAL_STRINGS: &[&str] = &[
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

const STORAGE_POOL: &[i64] = &[
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

/// One row as the API returns it, with the values of the queried properties.
struct Row {
    id: String,
    label: String,
    vals: Vec<Value>,
    json: Value,
}

fn strip_annotations(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('@'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn make_row(props: &[Prop], label: String, json: &Value, device: Option<&Value>) -> Row {
    let json = strip_annotations(json);
    let vals = props
        .iter()
        .map(|p| match p.path.strip_prefix("managedDevice/") {
            Some(rest) => device.map_or(Value::Null, |d| d[rest].clone()),
            None => json[p.path].clone(),
        })
        .collect();
    Row {
        id: json["id"].as_str().expect("row id").to_owned(),
        label,
        vals,
        json,
    }
}

// ---------------------------------------------------------------------------------------------
// Query structures, rendering and reference evaluation
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Lit {
    Null,
    Str(String),
    /// Member name; qualified (`microsoft.graph.runState'fail'`) or not.
    Enum(String, bool),
    /// Instant and the text written.
    Time(i64, String),
    Int(i64),
    Bool(bool),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    const ALL: [Op; 6] = [Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];

    fn word(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        }
    }

    /// The operator with the operands swapped: `a gt b` is `b lt a`.
    fn mirror(self) -> Op {
        match self {
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            other => other,
        }
    }

    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Func {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Clone, Debug)]
enum Filter {
    /// `path op lit`, or `lit op path` when `flipped`.
    Cmp {
        p: usize,
        op: Op,
        lit: Lit,
        flipped: bool,
    },
    In {
        p: usize,
        list: Vec<Lit>,
    },
    Call {
        f: Func,
        p: usize,
        arg: String,
    },
    /// A bare boolean property.
    Bare {
        p: usize,
    },
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Paren(Box<Filter>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dir {
    Default,
    Asc,
    Desc,
}

struct Query {
    filter: Option<Filter>,
    orderby: Vec<(usize, Dir)>,
    top: Option<usize>,
    skip: Option<usize>,
    count: bool,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn render_lit(lit: &Lit, kind: Kind) -> String {
    match lit {
        Lit::Null => "null".into(),
        Lit::Str(s) => quote(s),
        Lit::Enum(m, qualified) => match (qualified, kind) {
            (true, Kind::Enum(e)) => format!("microsoft.graph.{}'{m}'", e.name),
            _ => format!("'{m}'"),
        },
        Lit::Time(_, text) => text.clone(),
        Lit::Int(i) => i.to_string(),
        Lit::Bool(b) => b.to_string(),
    }
}

fn render_filter(f: &Filter, props: &[Prop]) -> String {
    let r = |x: &Filter| render_filter(x, props);
    match f {
        Filter::Cmp {
            p,
            op,
            lit,
            flipped,
        } => {
            let lit = render_lit(lit, props[*p].kind);
            if *flipped {
                format!("{lit} {} {}", op.word(), props[*p].path)
            } else {
                format!("{} {} {lit}", props[*p].path, op.word())
            }
        }
        Filter::In { p, list } => {
            let items: Vec<String> = list.iter().map(|l| render_lit(l, props[*p].kind)).collect();
            format!("{} in ({})", props[*p].path, items.join(","))
        }
        Filter::Call { f, p, arg } => {
            let name = match f {
                Func::StartsWith => "startswith",
                Func::EndsWith => "endswith",
                Func::Contains => "contains",
            };
            format!("{name}({},{})", props[*p].path, quote(arg))
        }
        Filter::Bare { p } => props[*p].path.to_owned(),
        Filter::Not(x) => match **x {
            Filter::Call { .. } | Filter::Bare { .. } | Filter::Paren(_) | Filter::Not(_) => {
                format!("not {}", r(x))
            }
            _ => format!("not ({})", r(x)),
        },
        Filter::And(a, b) => {
            let side = |x: &Filter| match x {
                Filter::Or(..) => format!("({})", r(x)),
                _ => r(x),
            };
            format!("{} and {}", side(a), side(b))
        }
        Filter::Or(a, b) => format!("{} or {}", r(a), r(b)),
        Filter::Paren(x) => format!("({})", r(x)),
    }
}

/// Percent-encode a query option value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~'(),/:*!".contains(&b) {
            out.push(b as char);
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

/// The query string, readable and percent-encoded.
fn render_query(q: &Query, props: &[Prop]) -> (String, String) {
    let mut options: Vec<(&str, String)> = Vec::new();
    if let Some(f) = &q.filter {
        options.push(("$filter", render_filter(f, props)));
    }
    if !q.orderby.is_empty() {
        let keys: Vec<String> = q
            .orderby
            .iter()
            .map(|(p, dir)| match dir {
                Dir::Default => props[*p].path.to_owned(),
                Dir::Asc => format!("{} asc", props[*p].path),
                Dir::Desc => format!("{} desc", props[*p].path),
            })
            .collect();
        options.push(("$orderby", keys.join(",")));
    }
    if let Some(top) = q.top {
        options.push(("$top", top.to_string()));
    }
    if let Some(skip) = q.skip {
        options.push(("$skip", skip.to_string()));
    }
    if q.count {
        options.push(("$count", "true".into()));
    }
    let readable: Vec<String> = options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let encoded: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    (readable.join("&"), encoded.join("&"))
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn as_str(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Compare a non-null property value with a non-null literal.
fn compare(kind: Kind, v: &Value, lit: &Lit) -> Ordering {
    match (kind, lit) {
        (Kind::Str, Lit::Str(l)) => lower(as_str(v)).cmp(&lower(l)),
        (Kind::Id, Lit::Str(l)) => as_str(v).cmp(l.as_str()),
        (Kind::Enum(e), Lit::Enum(m, _)) => e.value(as_str(v)).cmp(&e.value(m)),
        (Kind::Time, Lit::Time(t, _)) => parse_time(as_str(v))
            .unwrap_or_else(|| panic!("bad time {v}"))
            .cmp(t),
        (Kind::Int, Lit::Int(i)) => v.as_i64().expect("integer").cmp(i),
        (Kind::Bool, Lit::Bool(b)) => v.as_bool().expect("boolean").cmp(b),
        _ => panic!("literal {lit:?} does not fit {kind:?}"),
    }
}

fn eval_cmp(kind: Kind, v: &Value, op: Op, lit: &Lit) -> bool {
    match (v.is_null(), matches!(lit, Lit::Null)) {
        (_, true) => match op {
            Op::Eq => v.is_null(),
            Op::Ne => !v.is_null(),
            _ => false,
        },
        (true, false) => op == Op::Ne,
        (false, false) => op.holds(compare(kind, v, lit)),
    }
}

fn eval(f: &Filter, row: &Row, props: &[Prop]) -> bool {
    match f {
        Filter::Cmp {
            p,
            op,
            lit,
            flipped,
        } => {
            let op = if *flipped { op.mirror() } else { *op };
            eval_cmp(props[*p].kind, &row.vals[*p], op, lit)
        }
        Filter::In { p, list } => list
            .iter()
            .any(|l| eval_cmp(props[*p].kind, &row.vals[*p], Op::Eq, l)),
        Filter::Call { f, p, arg } => match row.vals[*p].as_str() {
            None => false,
            Some(v) => {
                let (v, arg) = (lower(v), lower(arg));
                match f {
                    Func::StartsWith => v.starts_with(&arg),
                    Func::EndsWith => v.ends_with(&arg),
                    Func::Contains => v.contains(&arg),
                }
            }
        },
        Filter::Bare { p } => row.vals[*p].as_bool() == Some(true),
        Filter::Not(x) => !eval(x, row, props),
        Filter::And(a, b) => eval(a, row, props) && eval(b, row, props),
        Filter::Or(a, b) => eval(a, row, props) || eval(b, row, props),
        Filter::Paren(x) => eval(x, row, props),
    }
}

/// Ascending order of two values of one property (nulls first).
fn order_values(kind: Kind, a: &Value, b: &Value) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    match kind {
        Kind::Str => {
            let (x, y) = (as_str(a), as_str(b));
            lower(x).cmp(&lower(y)).then_with(|| x.cmp(y))
        }
        Kind::Id => as_str(a).cmp(as_str(b)),
        Kind::Enum(e) => e.value(as_str(a)).cmp(&e.value(as_str(b))),
        Kind::Time => parse_time(as_str(a)).cmp(&parse_time(as_str(b))),
        Kind::Int => a.as_i64().cmp(&b.as_i64()),
        Kind::Bool => a.as_bool().cmp(&b.as_bool()),
    }
}

fn order_rows(a: &Row, b: &Row, keys: &[(usize, Dir)], props: &[Prop]) -> Ordering {
    for (p, dir) in keys {
        let o = order_values(props[*p].kind, &a.vals[*p], &b.vals[*p]);
        let o = if *dir == Dir::Desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    // Ties by id, in the direction of the last key.
    match keys.last() {
        Some((_, Dir::Desc)) => b.id.cmp(&a.id),
        _ => a.id.cmp(&b.id),
    }
}

// ---------------------------------------------------------------------------------------------
// Random query generation
// ---------------------------------------------------------------------------------------------

fn case_variant(rng: &mut Rng, s: &str) -> String {
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

fn existing(rows: &[Row], p: usize) -> Vec<&Value> {
    rows.iter()
        .map(|r| &r.vals[p])
        .filter(|v| !v.is_null())
        .collect()
}

fn random_string(rng: &mut Rng, rows: &[Row], p: usize, pool: &[&str]) -> String {
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

fn random_lit(rng: &mut Rng, rows: &[Row], props: &[Prop], p: usize, pool: &[&str]) -> Lit {
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

fn random_leaf(rng: &mut Rng, rows: &[Row], props: &[Prop], pool: &[&str]) -> Filter {
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
fn random_filter(
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

fn random_query(rng: &mut Rng, rows: &[Row], props: &[Prop], pool: &[&str]) -> Query {
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
// Running a query: walk every page and compare with the reference
// ---------------------------------------------------------------------------------------------

fn describe_row(row: &Row, props: &[Prop]) -> String {
    let mut s = format!("{} id={}", row.label, row.id);
    for (p, v) in props.iter().zip(&row.vals).skip(1) {
        write!(s, " {}={v}", p.path).unwrap();
    }
    s
}

/// Send `q` to `path`, follow every nextLink, and compare with the reference evaluation over `rows`.
async fn check_query(
    app: &TestApp,
    path: &str,
    props: &[Prop],
    rows: &[Row],
    q: &Query,
) -> Result<(), String> {
    let mut matching: Vec<&Row> = rows
        .iter()
        .filter(|r| q.filter.as_ref().is_none_or(|f| eval(f, r, props)))
        .collect();
    matching.sort_by(|a, b| order_rows(a, b, &q.orderby, props));
    let count = matching.len();
    let expected: Vec<&Row> = matching.into_iter().skip(q.skip.unwrap_or(0)).collect();
    let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
    let (readable, encoded) = render_query(q, props);
    let page_size = q.top.unwrap_or(100);
    let max_pages = expected.len() / page_size + 2;

    let mut url = format!("{path}?{encoded}");
    let mut actual: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut pages = 0;
    loop {
        let page = app.get(&url).await;
        pages += 1;
        if page.status != 200 {
            problems.push(format!("page {pages}: HTTP {} {}", page.status, page.text));
            break;
        }
        let Some(value) = page.json["value"].as_array() else {
            problems.push(format!("page {pages}: no value array: {}", page.text));
            break;
        };
        if value.len() > page_size {
            problems.push(format!(
                "page {pages}: {} rows, more than $top={page_size}",
                value.len()
            ));
        }
        match (q.count, page.json.get("@odata.count")) {
            (true, Some(c)) if *c == json!(count) => {}
            (true, c) => problems.push(format!(
                "page {pages}: @odata.count {c:?}, expected {count}"
            )),
            (false, Some(c)) => {
                problems.push(format!("page {pages}: @odata.count {c} without $count"))
            }
            (false, None) => {}
        }
        for item in value {
            let id = item["id"].as_str().unwrap_or("<no id>").to_owned();
            if let Some(row) = by_id.get(id.as_str()) {
                let got = strip_annotations(item);
                if got != row.json {
                    problems.push(format!(
                        "row {} differs from what was written:\n      list:    {got}\n      written: {}",
                        row.label, row.json
                    ));
                }
            }
            actual.push(id);
        }
        match page.json["@odata.nextLink"].as_str() {
            None => break,
            Some(next) => {
                if !next.starts_with("http") {
                    problems.push(format!("page {pages}: nextLink is not absolute: {next}"));
                    break;
                }
                if pages >= max_pages {
                    problems.push(format!(
                        "still a nextLink after {pages} pages (at most {max_pages} expected): {next}"
                    ));
                    break;
                }
                url = next.to_owned();
            }
        }
    }

    let expected_ids: Vec<&str> = expected.iter().map(|r| r.id.as_str()).collect();
    let actual_ids: Vec<&str> = actual.iter().map(String::as_str).collect();
    if actual_ids != expected_ids {
        let mut seen = HashSet::new();
        let duplicates: Vec<&str> = actual_ids
            .iter()
            .copied()
            .filter(|id| !seen.insert(*id))
            .collect();
        if !duplicates.is_empty() {
            problems.push(format!("duplicate ids across pages: {duplicates:?}"));
        }
        problems.push("rows (or their order) differ from the reference".into());
    }
    if std::env::var_os("REMEDIATE_DIFF_VERBOSE").is_some() {
        eprintln!(
            "  {} of {count} rows (skip {:?}), {pages} pages: {readable}",
            expected_ids.len(),
            q.skip
        );
    }
    if problems.is_empty() {
        return Ok(());
    }

    let label = |id: &str| by_id.get(id).map_or(format!("?{id}"), |r| r.label.clone());
    let mut report = String::new();
    writeln!(report, "GET {path}?{readable}").unwrap();
    writeln!(report, "  encoded: {path}?{encoded}").unwrap();
    writeln!(
        report,
        "  expected {} rows (count {count}): [{}]",
        expected_ids.len(),
        expected_ids
            .iter()
            .map(|id| label(id))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    writeln!(
        report,
        "  actual   {} rows in {pages} pages: [{}]",
        actual_ids.len(),
        actual_ids
            .iter()
            .map(|id| label(id))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .unwrap();
    for p in &problems {
        writeln!(report, "  problem: {p}").unwrap();
    }
    // The rows that make the difference: missing, extra, and those around the first misplacement.
    let expected_set: HashSet<&str> = expected_ids.iter().copied().collect();
    let actual_set: HashSet<&str> = actual_ids.iter().copied().collect();
    let mut involved: Vec<&str> = Vec::new();
    for id in expected_ids.iter().filter(|id| !actual_set.contains(*id)) {
        involved.push(id);
    }
    for id in actual_ids.iter().filter(|id| !expected_set.contains(*id)) {
        involved.push(id);
    }
    if let Some(i) =
        (0..expected_ids.len().min(actual_ids.len())).find(|&i| expected_ids[i] != actual_ids[i])
    {
        for id in expected_ids[i.saturating_sub(1)..(i + 3).min(expected_ids.len())]
            .iter()
            .chain(&actual_ids[i..(i + 2).min(actual_ids.len())])
        {
            involved.push(id);
        }
    }
    let mut shown = HashSet::new();
    for id in involved.into_iter().filter(|id| shown.insert(*id)).take(16) {
        match by_id.get(id) {
            Some(row) => {
                let tag = match (expected_set.contains(id), actual_set.contains(id)) {
                    (true, false) => "missing",
                    (false, true) => "extra  ",
                    _ => "order  ",
                };
                writeln!(report, "  {tag} {}", describe_row(row, props)).unwrap();
            }
            None => writeln!(report, "  unknown id {id}").unwrap(),
        }
    }
    Err(report)
}

/// Collects failing queries so one run reports all of them.
struct Failures {
    header: String,
    list: Vec<String>,
}

impl Failures {
    fn new(test: &str, app: &TestApp, seed: Option<u64>) -> Failures {
        let replay = match seed {
            Some(seed) => format!(" (seed {seed}, replay with REMEDIATE_DIFF_SEED={seed})"),
            None => String::new(),
        };
        Failures {
            header: format!("differential::{test} on {}{replay}", backend(app)),
            list: Vec::new(),
        }
    }

    fn add(&mut self, what: String) {
        eprintln!("{}: FAILED {what}", self.header);
        self.list.push(what);
    }

    fn finish(self, total: usize) {
        if self.list.is_empty() {
            return;
        }
        let mut message = format!(
            "{}: {} of {total} queries disagree with the reference\n",
            self.header,
            self.list.len()
        );
        for f in self.list.iter().take(8) {
            message.push_str(f);
            message.push('\n');
        }
        panic!("{message}");
    }
}

// ---------------------------------------------------------------------------------------------
// Random data through the API
// ---------------------------------------------------------------------------------------------

async fn create(app: &TestApp, path: &str, body: &Value) -> Value {
    let reply = app.post(path, &body.to_string()).await;
    assert_eq!(reply.status, 201, "POST {path} {body}: {}", reply.text);
    reply.json
}

fn pool_string(rng: &mut Rng, pool: &[&str]) -> Value {
    if rng.chance(5) {
        Value::Null
    } else {
        json!(rng.pick(pool))
    }
}

/// Check that a written property reads back as written (times: the same instant, canonical form).
fn assert_written(
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

async fn random_device(app: &TestApp, rng: &mut Rng) -> Value {
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
fn random_state_body(rng: &mut Rng, device: Option<&str>, patch: bool) -> Map<String, Value> {
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

async fn random_run_state(
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

/// PATCH `path` with `body` (204), then GET it and check that the change reads back.
async fn patch_and_read(app: &TestApp, path: &str, body: Map<String, Value>) -> Value {
    let reply = app
        .patch(path, &Value::Object(body.clone()).to_string())
        .await;
    assert_eq!(reply.status, 204, "PATCH {path} {:?}: {}", body, reply.text);
    let item = app.get(path).await;
    assert_eq!(item.status, 200, "GET {path}: {}", item.text);
    assert_written(&format!("PATCH {path}"), &body, &item.json, &[]);
    item.json
}

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
