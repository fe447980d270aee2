//! The OData reference evaluator of the differential tests: a small in-memory model of the
//! queried properties, filters and orderings, rendered as query text and evaluated over rows,
//! written from SPEC §4 independently of the server code (`differential` compares the two).
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
use std::fmt::Write as _;

use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Time: 100 ns ticks since 1970-01-01T00:00:00Z
// ---------------------------------------------------------------------------------------------

pub(crate) const TICKS_PER_SECOND: i64 = 10_000_000;
pub(crate) const TICKS_PER_DAY: i64 = 86_400 * TICKS_PER_SECOND;

pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
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
pub(crate) fn parse_time(s: &str) -> Option<i64> {
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
pub(crate) fn render_time(ticks: i64, offset: Option<i64>, digits: Option<usize>) -> String {
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

pub(crate) fn canonical_time(ticks: i64) -> String {
    render_time(ticks, None, None)
}

pub(crate) fn min_date() -> i64 {
    parse_time("0001-01-01T00:00:00Z").unwrap()
}

// ---------------------------------------------------------------------------------------------
// Model: the properties queried, as the API shows them
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub(crate) struct EnumDef {
    pub(crate) name: &'static str,
    pub(crate) members: &'static [(&'static str, i64)],
}

pub(crate) const RUN_STATE: EnumDef = EnumDef {
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

pub(crate) const REMEDIATION_STATE: EnumDef = EnumDef {
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

pub(crate) const COMPLIANCE_STATE: EnumDef = EnumDef {
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
    pub(crate) fn value(&self, member: &str) -> i64 {
        self.members
            .iter()
            .find(|(m, _)| *m == member)
            .unwrap_or_else(|| panic!("{member:?} is not a member of {}", self.name))
            .1
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
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
pub(crate) struct Prop {
    pub(crate) path: &'static str,
    pub(crate) kind: Kind,
    pub(crate) orderable: bool,
}

pub(crate) const fn prop(path: &'static str, kind: Kind) -> Prop {
    Prop {
        path,
        kind,
        orderable: true,
    }
}

pub(crate) const RUN_STATE_PROPS: &[Prop] = &[
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

pub(crate) const DEVICE_PROPS: &[Prop] = &[
    prop("id", Kind::Id),
    prop("deviceName", Kind::Str),
    prop("operatingSystem", Kind::Str),
    prop("isEncrypted", Kind::Bool),
    prop("totalStorageSpaceInBytes", Kind::Int),
    prop("complianceState", Kind::Enum(COMPLIANCE_STATE)),
];

/// One row as the API returns it, with the values of the queried properties.
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) vals: Vec<Value>,
    pub(crate) json: Value,
}

pub(crate) fn strip_annotations(v: &Value) -> Value {
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

pub(crate) fn make_row(props: &[Prop], label: String, json: &Value, device: Option<&Value>) -> Row {
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
pub(crate) enum Lit {
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
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub(crate) const ALL: [Op; 6] = [Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];

    pub(crate) fn word(self) -> &'static str {
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
    pub(crate) fn mirror(self) -> Op {
        match self {
            Op::Gt => Op::Lt,
            Op::Ge => Op::Le,
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            other => other,
        }
    }

    pub(crate) fn holds(self, o: Ordering) -> bool {
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
pub(crate) enum Func {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Clone, Debug)]
pub(crate) enum Filter {
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
pub(crate) enum Dir {
    Default,
    Asc,
    Desc,
}

pub(crate) struct Query {
    pub(crate) filter: Option<Filter>,
    pub(crate) orderby: Vec<(usize, Dir)>,
    pub(crate) top: Option<usize>,
    pub(crate) skip: Option<usize>,
    pub(crate) count: bool,
}

pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) fn render_lit(lit: &Lit, kind: Kind) -> String {
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

pub(crate) fn render_filter(f: &Filter, props: &[Prop]) -> String {
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
pub(crate) fn encode(s: &str) -> String {
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
pub(crate) fn render_query(q: &Query, props: &[Prop]) -> (String, String) {
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

pub(crate) fn lower(s: &str) -> String {
    s.to_lowercase()
}

pub(crate) fn as_str(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// Compare a non-null property value with a non-null literal.
pub(crate) fn compare(kind: Kind, v: &Value, lit: &Lit) -> Ordering {
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

pub(crate) fn eval_cmp(kind: Kind, v: &Value, op: Op, lit: &Lit) -> bool {
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

pub(crate) fn eval(f: &Filter, row: &Row, props: &[Prop]) -> bool {
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
pub(crate) fn order_values(kind: Kind, a: &Value, b: &Value) -> Ordering {
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

pub(crate) fn order_rows(a: &Row, b: &Row, keys: &[(usize, Dir)], props: &[Prop]) -> Ordering {
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
