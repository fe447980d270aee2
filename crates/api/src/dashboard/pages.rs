//! The dashboard's pages — overview, script, device — and its one action (Run remediation).
//! Each reads through the same `Store` calls the API's handlers make, after the same permission
//! checks (`Principal::require` with the collections' declared permissions), with filters and
//! orderings bound by the API's own OData binder (`crate::query`), so a page shows exactly what
//! the matching Graph request returns. Lists are paged on the server with the API's signed keyset
//! tokens: a page reads one page of rows, never all of them.

use std::collections::HashMap;
use std::fmt::Write as _;

use remediate_domain::collections::{
    permissions as perm, ASSIGNMENTS, ASSIGNMENT_FILTERS, DEVICES, GROUPS, HISTORY, RUN_STATES,
    SCRIPTS,
};
use remediate_domain::model::{
    JOIN_TYPE, OWNER_TYPE, REMEDIATION_STATE, RUN_AS_ACCOUNT, RUN_STATE,
};
use remediate_domain::query::{After, ListQuery, Page, Scope};
use remediate_domain::write::Write;
use remediate_domain::{Record, Value};
use remediate_store::EntityRef;

use super::html::{self, attr, enc, esc, query, Frame};
use super::session::Signed;
use crate::error::ApiError;
use crate::AppState;

/// Rows per page of the overview and of the device status table.
pub const PAGE_SIZE: usize = 25;
/// The longest search text accepted (longer is cut).
const MAX_SEARCH: usize = 200;

/// A request's query parameters.
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn search(&self, name: &str) -> String {
        self.get(name).trim().chars().take(MAX_SEARCH).collect()
    }
}

/// An OData string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A list query bound from OData options, exactly as the API binds `$filter`/`$orderby`/`$expand`.
fn bind(
    state: &AppState,
    scope: Scope,
    options: &[(&str, String)],
    top: usize,
    after: Option<After>,
    count: bool,
) -> Result<ListQuery, ApiError> {
    let raw: Vec<String> = options
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| format!("{n}={}", enc(v)))
        .collect();
    let options = crate::query::parse(&raw.join("&"), &state.guard.limits.odata)?;
    let bound = crate::query::bind_list(&scope, &options)?;
    Ok(ListQuery {
        scope,
        filter: bound.filter,
        order: bound.order,
        top,
        skip: 0,
        after,
        count,
        expand_device: bound.expand_device.is_some(),
    })
}

/// The keyset position of `after`, checked against the query it was made for.
fn cursor(state: &AppState, fingerprint: &str, token: &str) -> Result<Option<After>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    crate::paging::decode(state.store.paging_secret(), fingerprint, token).map(Some)
}

fn fingerprint(signed: &Signed, path: &str, pairs: &[(&str, &str)]) -> String {
    let raw: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{}={}", enc(n), enc(v)))
        .collect();
    crate::paging::query_fingerprint(
        &format!("dashboard|{}|{path}", signed.principal.tenant),
        &raw.join("&"),
    )
}

/// "Rows a–b of n", First page, Next page.
fn pager(
    state: &AppState,
    page: &Page,
    fingerprint: &str,
    shown_before: u64,
    base: &[(&str, &str)],
    path: &str,
    what: &str,
) -> String {
    let mut out = String::from("<nav class=\"pager\" aria-label=\"Pages\">");
    if page.records.is_empty() {
        let _ = write!(out, "<p>No {what} match.</p>");
    } else {
        let of = page.count.map(|n| format!(" of {n}")).unwrap_or_default();
        let _ = write!(
            out,
            "<p>{what} {}–{}{of}</p>",
            shown_before + 1,
            shown_before + page.records.len() as u64
        );
    }
    if shown_before > 0 {
        let _ = write!(
            out,
            "<a href=\"{}\">First page</a>",
            attr(&format!("{path}{}", query(base)))
        );
    }
    if let Some(next) = &page.next {
        let token = crate::paging::encode(state.store.paging_secret(), fingerprint, next);
        let n = (shown_before + page.records.len() as u64).to_string();
        let mut pairs = base.to_vec();
        pairs.push(("after", &token));
        pairs.push(("n", &n));
        let _ = write!(
            out,
            "<a href=\"{}\" rel=\"next\">Next page</a>",
            attr(&format!("{path}{}", query(&pairs)))
        );
    }
    out.push_str("</nav>");
    out
}

/// A sortable column header: a link that sorts by it (toggling the direction when it is the
/// current sort), with `aria-sort`.
fn sort_header(
    label: &str,
    key: &str,
    sort: &str,
    desc: bool,
    base: &[(&str, &str)],
    path: &str,
) -> String {
    let current = key == sort;
    let next_dir = if current && !desc { "desc" } else { "asc" };
    let mut pairs: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .filter(|(n, _)| *n != "sort" && *n != "dir")
        .collect();
    pairs.push(("sort", key));
    pairs.push(("dir", next_dir));
    let (aria, mark) = match (current, desc) {
        (true, false) => (
            " aria-sort=\"ascending\"",
            " <span class=\"note\">(ascending)</span>",
        ),
        (true, true) => (
            " aria-sort=\"descending\"",
            " <span class=\"note\">(descending)</span>",
        ),
        _ => ("", ""),
    };
    format!(
        "<th scope=\"col\"{aria}><a href=\"{}\">{label}</a>{mark}</th>",
        attr(&format!("{path}{}", query(&pairs)))
    )
}

/// `/`: every script of the tenant with its run summary; the tenant's remediation summary on top.
pub async fn overview(
    state: &AppState,
    signed: &Signed,
    params: &Params,
) -> Result<String, ApiError> {
    signed.principal.require(SCRIPTS.read_permissions)?;
    let tenant = &signed.principal.tenant;
    let store = &state.store;
    let q = params.search("q");
    let (sort, column) = match params.get("sort") {
        "publisher" => ("publisher", "publisher"),
        "modified" => ("modified", "lastModifiedDateTime"),
        _ => ("name", "displayName"),
    };
    let desc = params.get("dir") == "desc";
    let dir = if desc { "desc" } else { "asc" };
    let base = [("q", q.as_str()), ("sort", sort), ("dir", dir)];
    let fp = fingerprint(signed, "/", &base);
    let after = cursor(state, &fp, params.get("after"))?;
    let shown_before = if after.is_some() {
        params.get("n").parse::<u64>().unwrap_or(0)
    } else {
        0
    };
    let filter = if q.is_empty() {
        String::new()
    } else {
        format!("contains(displayName,{})", literal(&q))
    };
    let list = bind(
        state,
        Scope::scripts(),
        &[("$filter", filter), ("$orderby", format!("{column} {dir}"))],
        PAGE_SIZE,
        after,
        true,
    )?;
    let page = store.list(tenant, &list).await?;
    let (script_count, remediated) = store.remediation_summary(tenant).await?;
    let mut assignments: HashMap<String, usize> = HashMap::new();
    for (script, _) in store.assignment_targets(tenant).await? {
        *assignments.entry(script).or_default() += 1;
    }
    let mut body = String::with_capacity(16 * 1024);
    body.push_str("<h1>Remediations</h1>");
    let _ = write!(
        body,
        "<section aria-labelledby=\"sum\"><h2 id=\"sum\">Remediation summary</h2>\
         <dl class=\"props\"><dt>Scripts</dt><dd data-summary=\"scriptCount\">{script_count}</dd>\
         <dt>Devices with an issue fixed</dt><dd data-summary=\"remediatedDeviceCount\">{remediated}</dd></dl></section>"
    );
    body.push_str("<h2 id=\"scripts\">Scripts</h2>");
    body.push_str(&super::edit::overview_actions(signed));
    if super::export::may_export(signed) {
        body.push_str(&super::export::everything_form(signed));
    }
    let _ = write!(
        body,
        "<form method=\"get\" action=\"/\" class=\"filters\" role=\"search\" aria-label=\"Filter scripts\">\
         <div><label for=\"q\">Filter by name</label><input type=\"search\" id=\"q\" name=\"q\" value=\"{}\"></div>\
         <input type=\"hidden\" name=\"sort\" value=\"{sort}\"><input type=\"hidden\" name=\"dir\" value=\"{dir}\">\
         <div><button type=\"submit\">Apply</button></div></form>",
        attr(&q)
    );
    body.push_str(&pager(
        state,
        &page,
        &fp,
        shown_before,
        &base,
        "/",
        "Scripts",
    ));
    body.push_str("<table aria-labelledby=\"scripts\"><thead><tr>");
    body.push_str(&sort_header("Name", "name", sort, desc, &base, "/"));
    body.push_str(&sort_header(
        "Publisher",
        "publisher",
        sort,
        desc,
        &base,
        "/",
    ));
    body.push_str(&sort_header(
        "Last modified",
        "modified",
        sort,
        desc,
        &base,
        "/",
    ));
    body.push_str(
        "<th scope=\"col\">Assignments</th><th scope=\"col\">Last run</th><th scope=\"col\">Run summary</th></tr></thead><tbody>",
    );
    for record in &page.records {
        let id = record.id();
        let summary = store.run_summary(tenant, id).await?;
        let last_run = last_run(state, tenant, id).await?;
        let name = match record.get("displayName") {
            Value::Str(s) if !s.trim().is_empty() => esc(s),
            _ => "(no name)".to_owned(),
        };
        let _ = write!(
            body,
            "<tr data-script=\"{}\"><th scope=\"row\"><a href=\"/scripts/{}\">{name}</a></th><td>{}</td><td>{}</td><td>{}</td><td class=\"last-run\">{}</td><td>{}</td></tr>",
            attr(id),
            attr(&enc(id)),
            html::text(record, "publisher"),
            html::time(record.get("lastModifiedDateTime")),
            assignments.get(id).copied().unwrap_or(0),
            html::time(&last_run),
            summary.as_ref().map(html::summary_bar).unwrap_or_default(),
        );
    }
    body.push_str("</tbody></table>");
    let frame = Frame {
        tenant,
        csrf: &signed.csrf(),
    };
    Ok(html::page("Remediations", Some(&frame), &body))
}

/// A script's last run: the latest `lastStateUpdateDateTime` of its run states — one row read
/// through the run-state index on (tenant, script, lastStateUpdateDateTime, id), whatever the
/// number of run states; `Null` when none has run.
async fn last_run(state: &AppState, tenant: &str, script_id: &str) -> Result<Value, ApiError> {
    let list = bind(
        state,
        Scope::run_states(script_id),
        &[("$orderby", "lastStateUpdateDateTime desc".to_owned())],
        1,
        None,
        false,
    )?;
    let page = state.store.list(tenant, &list).await?;
    Ok(page
        .records
        .first()
        .map_or(Value::Null, |r| r.get("lastStateUpdateDateTime").clone()))
}

/// The optional columns of the device status table: (parameter, header, property).
const OUTPUT_COLUMNS: [(&str, &str, &str); 5] = [
    (
        "pre",
        "Detection output",
        "preRemediationDetectionScriptOutput",
    ),
    (
        "preerr",
        "Detection error",
        "preRemediationDetectionScriptError",
    ),
    ("remerr", "Remediation error", "remediationScriptError"),
    (
        "post",
        "Post-remediation output",
        "postRemediationDetectionScriptOutput",
    ),
    (
        "posterr",
        "Post-remediation error",
        "postRemediationDetectionScriptError",
    ),
];

/// The sortable columns of the device status table: (parameter, header, `$orderby` path).
const STATUS_SORTS: [(&str, &str, &str); 6] = [
    ("device", "Device", "managedDevice/deviceName"),
    ("user", "User", "managedDevice/userPrincipalName"),
    ("detection", "Detection status", "detectionState"),
    ("remediation", "Remediation status", "remediationState"),
    ("updated", "Last update", "lastStateUpdateDateTime"),
    ("synced", "Last sync", "lastSyncDateTime"),
];

/// Above this many run states, the device status table does not count the rows a device-name
/// search matches (counting them reads every run state of the script). Every sort is offered at
/// any size: the store serves each from an index (migration 0011) or from the devices
/// (`store::plans`), and counts detection and remediation filters from its counters.
pub const SCAN_LIMIT: u64 = 20_000;

/// The device status table's sort named `key` (`sort=`), and the property path it orders by:
/// every column, at any size (docs/dashboard.md "At scale"); `None` for no such sort.
pub fn status_sort(key: &str) -> Option<(&'static str, &'static str)> {
    STATUS_SORTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(k, _, path)| (*k, *path))
}

fn content(record: &Record, name: &str) -> String {
    match record.get(name) {
        Value::Bin(bytes) if !bytes.is_empty() => format!(
            "<pre class=\"code\">{}</pre>",
            esc(&String::from_utf8_lossy(bytes))
        ),
        _ => "<p class=\"note\">None.</p>".to_owned(),
    }
}

fn enum_text(record: &Record, name: &str, of: &remediate_domain::model::EnumType) -> String {
    match record.get(name) {
        Value::Enum(v) => esc(of.name_of(*v).unwrap_or("unknown")),
        _ => String::new(),
    }
}

/// The names of groups and assignment filters, by id, as far as the session may read them.
#[derive(Default)]
struct Names {
    groups: HashMap<String, String>,
    filters: HashMap<String, String>,
}

/// The `displayName` of each item of `of` named in `ids` (missing items are left out).
async fn display_names(
    state: &AppState,
    tenant: &str,
    of: &'static remediate_domain::collections::Collection,
    ids: Vec<String>,
) -> Result<HashMap<String, String>, ApiError> {
    let mut names = HashMap::new();
    for id in ids {
        if names.contains_key(&id) {
            continue;
        }
        let key = EntityRef::Item {
            of,
            keys: vec![id.clone()],
        };
        if let Some(record) = state.store.get(tenant, &key).await? {
            if let Some(name) = record.get("displayName").as_str() {
                names.insert(id, name.to_owned());
            }
        }
    }
    Ok(names)
}

/// A group or filter: its name (with its id after it) when known, else its id.
fn named(kind: &str, id: &str, names: &HashMap<String, String>) -> String {
    match names.get(id).filter(|n| !n.trim().is_empty()) {
        Some(name) => format!(
            "{kind} <strong>{}</strong> <span class=\"note\">({})</span>",
            esc(name),
            esc(id)
        ),
        None => format!("{kind} {}", esc(id)),
    }
}

/// An assignment's target in words, with group and filter names.
fn target_text(record: &Record, names: &Names) -> String {
    let Value::Json(text) = record.get("target") else {
        return String::new();
    };
    let json: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let kind = json["@odata.type"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("#microsoft.graph.");
    let group = json["groupId"].as_str().unwrap_or("");
    let mut out = match kind {
        "allDevicesAssignmentTarget" => "All devices".to_owned(),
        "allLicensedUsersAssignmentTarget" => "All users".to_owned(),
        "groupAssignmentTarget" => named("Group", group, &names.groups),
        "exclusionGroupAssignmentTarget" => named("Excluded group", group, &names.groups),
        other => esc(other),
    };
    if let Some(filter) = assignment_filter_id(&json) {
        let mode = json["deviceAndAppManagementAssignmentFilterType"]
            .as_str()
            .unwrap_or("");
        let _ = write!(
            out,
            "; {} ({})",
            named("filter", filter, &names.filters),
            esc(mode)
        );
    }
    out
}

fn assignment_filter_id(target: &serde_json::Value) -> Option<&str> {
    target["deviceAndAppManagementAssignmentFilterId"]
        .as_str()
        .filter(|f| !f.is_empty() && *f != "00000000-0000-0000-0000-000000000000")
}

/// The names the assignments of a script refer to, read with the session's permissions
/// (group names need a group read, filter names a filter read; without them ids are shown).
async fn assignment_names(
    state: &AppState,
    signed: &Signed,
    assignments: &[Record],
) -> Result<Names, ApiError> {
    let tenant = &signed.principal.tenant;
    let targets: Vec<serde_json::Value> = assignments
        .iter()
        .filter_map(|a| match a.get("target") {
            Value::Json(text) => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect();
    let mut names = Names::default();
    if signed.may(GROUPS.read_permissions) {
        let ids = targets
            .iter()
            .filter_map(|t| t["groupId"].as_str())
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        names.groups = display_names(state, tenant, &GROUPS, ids).await?;
    }
    if signed.may(ASSIGNMENT_FILTERS.read_permissions) {
        let ids = targets
            .iter()
            .filter_map(assignment_filter_id)
            .map(str::to_owned)
            .collect();
        names.filters = display_names(state, tenant, &ASSIGNMENT_FILTERS, ids).await?;
    }
    Ok(names)
}

/// A series of the history chart: label, colour class, its count of a day.
type Series = (
    &'static str,
    &'static str,
    fn(&remediate_domain::query::HistoryDay) -> i64,
);

/// Days of `getRemediationHistory` the chart shows (the latest ones).
const HISTORY_DAYS: usize = 60;

/// `getRemediationHistory` as a chart over time: one stacked column per day with records
/// (issue fixed, without issues, detection failed), server-rendered SVG (no script), with the
/// same numbers in a table for screen readers and anyone who wants them.
fn history_chart(history: &remediate_domain::query::RemediationHistory) -> String {
    let days = &history.days[history.days.len().saturating_sub(HISTORY_DAYS)..];
    if days.is_empty() {
        return "<p class=\"note\">No runs recorded yet.</p>".to_owned();
    }
    let series: [Series; 3] = [
        ("Issue fixed", "fixed", |d| d.remediated),
        ("Without issues", "ok", |d| d.no_issue),
        ("Detection failed", "issue", |d| d.detect_failed),
    ];
    let max = days
        .iter()
        .map(|d| d.remediated + d.no_issue + d.detect_failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, height, left, bottom) = (720i64, 200i64, 48i64, 24i64);
    let plot = height - bottom - 8;
    let slot = (width - left) / days.len().max(1) as i64;
    let bar = (slot * 3 / 4).clamp(2, 40);
    let first = &days[0].date;
    let last = &days[days.len() - 1].date;
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(
        out,
        "<figure class=\"chart\"><svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"history-title\" aria-describedby=\"history-desc\">\
         <title id=\"history-title\">Remediation history</title>\
         <desc id=\"history-desc\">Devices per day from {} to {} by result: issue fixed, without issues, detection failed; the same numbers are in the table below. Largest day: {max} devices.</desc>",
        esc(first),
        esc(last)
    );
    // Axis and the largest value.
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{y}\" x2=\"{width}\" y2=\"{y}\"></line>\
         <line class=\"axis\" x1=\"{left}\" y1=\"8\" x2=\"{left}\" y2=\"{y}\"></line>\
         <text class=\"tick\" x=\"{tx}\" y=\"16\" text-anchor=\"end\">{max}</text>\
         <text class=\"tick\" x=\"{tx}\" y=\"{y}\" text-anchor=\"end\">0</text>",
        y = height - bottom,
        tx = left - 4
    );
    for (i, day) in days.iter().enumerate() {
        let x = left + i as i64 * slot + (slot - bar) / 2;
        let mut y = height - bottom;
        for (label, class, value) in &series {
            let v = value(day);
            if v == 0 {
                continue;
            }
            let h = (v * plot / max).max(1);
            y -= h;
            let _ = write!(
                out,
                "<rect class=\"seg-{class}\" x=\"{x}\" y=\"{y}\" width=\"{bar}\" height=\"{h}\"><title>{}: {label} {v}</title></rect>",
                esc(&day.date)
            );
        }
    }
    let _ = write!(
        out,
        "<text class=\"tick\" x=\"{left}\" y=\"{}\">{}</text><text class=\"tick\" x=\"{width}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        height - 6,
        esc(first),
        height - 6,
        esc(last)
    );
    out.push_str("<figcaption><ul class=\"counts\">");
    for (label, class, _) in &series {
        let _ = write!(
            out,
            "<li><span class=\"sw seg-{class}\" aria-hidden=\"true\"></span>{label}</li>"
        );
    }
    out.push_str("</ul></figcaption></figure>");
    out.push_str("<details><summary>The history as a table</summary><table id=\"history-table\" aria-label=\"Remediation history by day\"><thead><tr><th scope=\"col\">Day (UTC)</th>");
    for (label, _, _) in &series {
        let _ = write!(out, "<th scope=\"col\">{label}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for day in days {
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&day.date),
            day.remediated,
            day.no_issue,
            day.detect_failed
        );
    }
    out.push_str("</tbody></table></details>");
    if history.days.len() > days.len() {
        let _ = write!(
            out,
            "<p class=\"note\">The latest {HISTORY_DAYS} days with runs of {} are shown.</p>",
            history.days.len()
        );
    }
    out
}

fn schedule_text(record: &Record) -> String {
    let Value::Json(text) = record.get("runSchedule") else {
        return "Not scheduled".to_owned();
    };
    let json: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let kind = json["@odata.type"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("#microsoft.graph.deviceHealthScript");
    let interval = json["interval"].as_i64().unwrap_or(1);
    let time = json["time"].as_str().unwrap_or("");
    let utc = if json["useUtc"].as_bool() == Some(true) {
        " UTC"
    } else {
        ""
    };
    let words = match kind {
        "RunOnceSchedule" => format!(
            "Once on {} at {time}{utc}",
            json["date"].as_str().unwrap_or("")
        ),
        "HourlySchedule" => format!("Every {interval} hour(s)"),
        "DailySchedule" => format!("Every {interval} day(s) at {time}{utc}"),
        "" => "Not scheduled".to_owned(),
        other => other.to_owned(),
    };
    esc(&words)
}

/// `/scripts/{id}`: settings, content, assignments, run summary and the device status table.
pub async fn script(
    state: &AppState,
    signed: &Signed,
    id: &str,
    params: &Params,
) -> Result<String, ApiError> {
    signed.principal.require(SCRIPTS.read_permissions)?;
    let tenant = &signed.principal.tenant;
    let store = &state.store;
    let Some(script) = store.get(tenant, &EntityRef::Script(id.to_owned())).await? else {
        return Err(ApiError::not_found(format!(
            "The deviceHealthScript '{id}' does not exist."
        )));
    };
    let path = format!("/scripts/{}", enc(id));
    let name = match script.get("displayName") {
        Value::Str(s) if !s.trim().is_empty() => s.clone(),
        _ => "(no name)".to_owned(),
    };
    let mut body = String::with_capacity(32 * 1024);
    let _ = write!(body, "<h1>{}</h1>", esc(&name));
    body.push_str(&super::edit::script_actions(signed, id));
    body.push_str("<h2>Settings</h2><dl class=\"props\">");
    for (label, value) in [
        ("Id", esc(id)),
        ("Description", html::text(&script, "description")),
        ("Publisher", html::text(&script, "publisher")),
        ("Version", html::text(&script, "version")),
        (
            "Run as",
            enum_text(&script, "runAsAccount", &RUN_AS_ACCOUNT),
        ),
        (
            "Enforce signature check",
            html::text(&script, "enforceSignatureCheck"),
        ),
        ("Run as 32-bit", html::text(&script, "runAs32Bit")),
        ("Scope tags", html::text(&script, "roleScopeTagIds")),
        ("Created", html::time(script.get("createdDateTime"))),
        (
            "Last modified",
            html::time(script.get("lastModifiedDateTime")),
        ),
    ] {
        let _ = write!(body, "<dt>{label}</dt><dd>{value}</dd>");
    }
    body.push_str("</dl><h2>Run summary</h2>");
    if let Some(summary) = store.run_summary(tenant, id).await? {
        body.push_str(&html::summary_bar(&summary));
    }
    body.push_str("<h2>Detection script</h2>");
    body.push_str(&content(&script, "detectionScriptContent"));
    body.push_str("<h2>Remediation script</h2>");
    body.push_str(&content(&script, "remediationScriptContent"));

    // Assignments (the same read as GET …/deviceHealthScripts/{id}/assignments).
    signed.principal.require(ASSIGNMENTS.read_permissions)?;
    let list = bind(state, Scope::assignments(id), &[], 1000, None, false)?;
    let assignments = store.list(tenant, &list).await?;
    body.push_str("<h2 id=\"assignments\">Assignments</h2>");
    if assignments.records.is_empty() {
        body.push_str("<p class=\"note\">Not assigned.</p>");
    } else {
        body.push_str("<table aria-labelledby=\"assignments\"><thead><tr><th scope=\"col\">Target</th><th scope=\"col\">Remediation</th><th scope=\"col\">Schedule</th></tr></thead><tbody>");
        let names = assignment_names(state, signed, &assignments.records).await?;
        for a in &assignments.records {
            let remediate = if a.get("runRemediationScript") == &Value::Bool(true) {
                "Runs"
            } else {
                "Detection only"
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{remediate}</td><td>{}</td></tr>",
                target_text(a, &names),
                schedule_text(a)
            );
        }
        body.push_str("</tbody></table>");
    }

    // The history is its own page (a chart and a table of every day): `getRemediationHistory`
    // reads the per-day aggregate kept on write (O(days), milliseconds at a million records).
    let _ = write!(
        body,
        "<h2 id=\"history\">Remediation history</h2><p><a id=\"history-link\" href=\"{}/history\">The remediation history as a chart over time</a> \
         (devices per day: issue fixed, without issues, detection failed).</p>",
        attr(&path)
    );

    body.push_str(&device_status(state, signed, id, &path, params).await?);
    let frame = Frame {
        tenant,
        csrf: &signed.csrf(),
    };
    Ok(html::page(&name, Some(&frame), &body))
}

/// `/scripts/{id}/history`: `getRemediationHistory` as a chart, with its table.
pub async fn history(state: &AppState, signed: &Signed, id: &str) -> Result<String, ApiError> {
    signed.principal.require(SCRIPTS.read_permissions)?;
    let tenant = &signed.principal.tenant;
    let Some(script) = state
        .store
        .get(tenant, &EntityRef::Script(id.to_owned()))
        .await?
    else {
        return Err(ApiError::not_found(format!(
            "The deviceHealthScript '{id}' does not exist."
        )));
    };
    let name = match script.get("displayName") {
        Value::Str(s) if !s.trim().is_empty() => s.clone(),
        _ => "(no name)".to_owned(),
    };
    let mut body = String::with_capacity(16 * 1024);
    let _ = write!(
        body,
        "<p><a href=\"/scripts/{}\">{}</a></p><h1>Remediation history</h1>",
        attr(&enc(id)),
        esc(&name)
    );
    if let Some(history) = state.store.remediation_history(tenant, id).await? {
        if let Some(at) = history.last_modified {
            let _ = write!(
                body,
                "<p class=\"note\">Last record {}.</p>",
                html::time(&Value::Time(at))
            );
        }
        body.push_str(&history_chart(&history));
    }
    let frame = Frame {
        tenant,
        csrf: &signed.csrf(),
    };
    Ok(html::page(
        &format!("{name}: remediation history"),
        Some(&frame),
        &body,
    ))
}

/// The device status table of a script: filtered, searched, sorted, paged on the server.
async fn device_status(
    state: &AppState,
    signed: &Signed,
    script_id: &str,
    path: &str,
    params: &Params,
) -> Result<String, ApiError> {
    signed.principal.require(RUN_STATES.read_permissions)?;
    let tenant = &signed.principal.tenant;
    let detection = params.get("detection");
    let detection = if RUN_STATE.value_of(detection).is_some() {
        detection
    } else {
        ""
    };
    let remediation = params.get("remediation");
    let remediation = if REMEDIATION_STATE.value_of(remediation).is_some() {
        remediation
    } else {
        ""
    };
    let q = params.search("q");
    // Every run state of the script: a counter, whatever the size.
    let all = bind(state, Scope::run_states(script_id), &[], 1, None, true)?;
    let total = state.store.list(tenant, &all).await?.count.unwrap_or(0);
    let (sort, order_path) =
        status_sort(params.get("sort")).unwrap_or(("updated", "lastStateUpdateDateTime"));
    let desc = match params.get("dir") {
        "asc" => false,
        "desc" => true,
        _ => params.get("sort").is_empty(),
    };
    let dir = if desc { "desc" } else { "asc" };
    // Which optional columns: the form sends `cols=1` with the boxes ticked; without it the
    // outputs before and after remediation are shown.
    let chosen: Vec<&str> = if params.get("cols") == "1" {
        params.all("col")
    } else {
        vec!["pre", "post"]
    };
    let shown: Vec<&(&str, &str, &str)> = OUTPUT_COLUMNS
        .iter()
        .filter(|(key, _, _)| chosen.contains(key))
        .collect();
    let col_keys: Vec<&str> = shown.iter().map(|(k, _, _)| *k).collect();
    let mut base: Vec<(&str, &str)> = vec![
        ("detection", detection),
        ("remediation", remediation),
        ("q", q.as_str()),
        ("sort", sort),
        ("dir", dir),
        ("cols", "1"),
    ];
    for key in &col_keys {
        base.push(("col", key));
    }
    let fp = fingerprint(
        signed,
        path,
        &base[..5], // the rows do not depend on the columns shown
    );
    let after = cursor(state, &fp, params.get("after"))?;
    let shown_before = if after.is_some() {
        params.get("n").parse::<u64>().unwrap_or(0)
    } else {
        0
    };
    let mut filters = Vec::new();
    if !detection.is_empty() {
        filters.push(format!("detectionState eq {}", literal(detection)));
    }
    if !remediation.is_empty() {
        filters.push(format!("remediationState eq {}", literal(remediation)));
    }
    if !q.is_empty() {
        filters.push(format!(
            "contains(managedDevice/deviceName,{})",
            literal(&q)
        ));
    }
    let list = bind(
        state,
        Scope::run_states(script_id),
        &[
            ("$filter", filters.join(" and ")),
            ("$orderby", format!("{order_path} {dir}")),
            ("$expand", "managedDevice".to_owned()),
        ],
        PAGE_SIZE,
        after,
        q.is_empty() || total <= SCAN_LIMIT,
    )?;
    let page = state.store.list(tenant, &list).await?;
    let link_devices = signed.may(DEVICES.read_permissions);

    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<h2 id=\"status\">Device status</h2>");
    let _ = write!(
        out,
        "<form method=\"get\" action=\"{}\" class=\"filters\" aria-label=\"Filter device status\">",
        attr(path)
    );
    out.push_str("<div><label for=\"detection\">Detection status</label><select id=\"detection\" name=\"detection\"><option value=\"\">Any</option>");
    for (member, _) in RUN_STATE.members {
        let (words, _) = html::detection_label(member);
        let selected = if *member == detection {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{member}\"{selected}>{words}</option>");
    }
    out.push_str("</select></div><div><label for=\"remediation\">Remediation status</label><select id=\"remediation\" name=\"remediation\"><option value=\"\">Any</option>");
    for (member, _) in REMEDIATION_STATE.members {
        if *member == "unknownFutureValue" {
            continue;
        }
        let (words, _) = html::remediation_label(member);
        let selected = if *member == remediation {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{member}\"{selected}>{words}</option>");
    }
    let _ = write!(
        out,
        "</select></div><div><label for=\"q\">Device name contains</label><input type=\"search\" id=\"q\" name=\"q\" value=\"{}\"></div>\
         <input type=\"hidden\" name=\"sort\" value=\"{sort}\"><input type=\"hidden\" name=\"dir\" value=\"{dir}\"><input type=\"hidden\" name=\"cols\" value=\"1\">\
         <fieldset><legend>Columns</legend>",
        attr(&q)
    );
    for (key, label, _) in OUTPUT_COLUMNS {
        let checked = if col_keys.contains(&key) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<input type=\"checkbox\" id=\"col-{key}\" name=\"col\" value=\"{key}\"{checked}><label for=\"col-{key}\">{label}</label>"
        );
    }
    out.push_str("</fieldset><div><button type=\"submit\">Apply</button></div></form>");
    if super::export::may_export(signed) {
        out.push_str(&super::export::script_form(
            signed,
            script_id,
            detection,
            remediation,
        ));
    }
    if total > SCAN_LIMIT && !q.is_empty() {
        let _ = write!(
            out,
            "<p class=\"note\">This script has {total} devices: the devices a name search finds are \
             not counted (beyond {SCAN_LIMIT} devices counting them would read every row).</p>"
        );
    }
    out.push_str(&pager(
        state,
        &page,
        &fp,
        shown_before,
        &base,
        path,
        "Devices",
    ));
    out.push_str("<table id=\"device-status\" aria-labelledby=\"status\"><thead><tr>");
    for (key, label, _) in STATUS_SORTS {
        out.push_str(&sort_header(label, key, sort, desc, &base, path));
    }
    for (_, label, _) in &shown {
        let _ = write!(out, "<th scope=\"col\">{label}</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for (i, row) in page.records.iter().enumerate() {
        let device = page.devices.get(i).and_then(Option::as_ref);
        let device_name = device
            .and_then(|d| d.get("deviceName").as_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("(unnamed device)");
        let device_cell = match (device, link_devices) {
            (Some(d), true) => format!(
                "<a href=\"/devices/{}\">{}</a>",
                attr(&enc(d.id())),
                esc(device_name)
            ),
            _ => esc(device_name),
        };
        let user = device
            .map(|d| html::text(d, "userPrincipalName"))
            .unwrap_or_default();
        let _ = write!(
            out,
            "<tr><th scope=\"row\">{device_cell}</th><td>{user}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            html::detection_badge(row.get("detectionState")),
            html::remediation_badge(row.get("remediationState")),
            html::time(row.get("lastStateUpdateDateTime")),
            html::time(row.get("lastSyncDateTime")),
        );
        for (_, _, property) in &shown {
            let _ = write!(out, "<td><pre>{}</pre></td>", html::text(row, property));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    Ok(out)
}

/// `/devices/{id}`: properties, every script's state with its run history, pending on-demand
/// runs and the Run remediation form.
pub async fn device(
    state: &AppState,
    signed: &Signed,
    id: &str,
    params: &Params,
) -> Result<String, ApiError> {
    signed.principal.require(DEVICES.read_permissions)?;
    let tenant = &signed.principal.tenant;
    let store = &state.store;
    let Some(device) = store.get(tenant, &EntityRef::Device(id.to_owned())).await? else {
        return Err(ApiError::not_found(format!(
            "The managedDevice '{id}' does not exist."
        )));
    };
    let name = device
        .get("deviceName")
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("(unnamed device)")
        .to_owned();
    let csrf = signed.csrf();
    let mut body = String::with_capacity(32 * 1024);
    let _ = write!(body, "<h1>{}</h1>", esc(&name));
    if params.get("queued") == "1" {
        body.push_str("<p class=\"msg\" role=\"status\">Remediation requested. It is pending until the device's agent checks in and reports the result.</p>");
    }
    body.push_str("<h2>Properties</h2><dl class=\"props\">");
    for (label, value) in [
        ("Id", esc(id)),
        ("User", html::text(&device, "userPrincipalName")),
        ("User name", html::text(&device, "userDisplayName")),
        ("Operating system", html::text(&device, "operatingSystem")),
        ("OS version", html::text(&device, "osVersion")),
        ("Manufacturer", html::text(&device, "manufacturer")),
        ("Model", html::text(&device, "model")),
        ("Serial number", html::text(&device, "serialNumber")),
        ("Ownership", enum_text(&device, "ownerType", &OWNER_TYPE)),
        ("Join type", enum_text(&device, "joinType", &JOIN_TYPE)),
        ("Entra device id", html::text(&device, "azureADDeviceId")),
        ("Enrolled", html::time(device.get("enrolledDateTime"))),
        ("Last sync", html::time(device.get("lastSyncDateTime"))),
    ] {
        let _ = write!(body, "<dt>{label}</dt><dd>{value}</dd>");
    }
    body.push_str("</dl>");

    // Its groups (static and dynamic memberships), as targeting sees them.
    body.push_str("<h2 id=\"groups\">Groups</h2>");
    if signed.may(GROUPS.read_permissions) {
        let targeting = store.device_targeting(tenant, id).await?;
        let names = display_names(state, tenant, &GROUPS, targeting.groups.clone()).await?;
        if targeting.groups.is_empty() {
            body.push_str("<p class=\"note\">Not a member of any group.</p>");
        } else {
            body.push_str("<ul id=\"device-groups\">");
            for group in &targeting.groups {
                let _ = write!(body, "<li>{}</li>", named("", group, &names).trim_start());
            }
            body.push_str("</ul>");
        }
    } else {
        let _ = write!(
            body,
            "<p class=\"note\">This session may not read groups (it needs one of {}).</p>",
            esc(&GROUPS.read_permissions.join(", "))
        );
    }

    // Pending on-demand runs (what agents poll).
    let pending = store
        .pending_on_demand(tenant, id)
        .await?
        .unwrap_or_default();
    let states = if signed.may(perm::RUN_STATE_DEVICE_READ) {
        store
            .device_script_states(tenant, id)
            .await?
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut names: HashMap<String, String> = HashMap::new();
    for s in &states {
        if let (Some(script), Some(n)) = (s.get("policyId").as_str(), s.get("policyName").as_str())
        {
            names.insert(script.to_owned(), n.to_owned());
        }
    }
    let scripts = if signed.may(SCRIPTS.read_permissions) {
        let list = bind(
            state,
            Scope::scripts(),
            &[("$orderby", "displayName asc".to_owned())],
            state.guard.limits.max_page_size,
            None,
            false,
        )?;
        store.list(tenant, &list).await?.records
    } else {
        Vec::new()
    };
    for s in &scripts {
        if let Some(n) = s.get("displayName").as_str() {
            names.insert(s.id().to_owned(), n.to_owned());
        }
    }
    let script_name = |script: &str| -> String {
        names
            .get(script)
            .filter(|n| !n.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| script.to_owned())
    };

    body.push_str("<h2 id=\"pending\">Pending on-demand runs</h2>");
    if pending.is_empty() {
        body.push_str("<p class=\"note\">None.</p>");
    } else {
        body.push_str("<ul id=\"pending-runs\">");
        for (script, at) in &pending {
            let _ = write!(
                body,
                "<li data-script=\"{}\"><strong>Pending</strong>: {} (requested {})</li>",
                attr(script),
                esc(&script_name(script)),
                html::time(&Value::Time(*at))
            );
        }
        body.push_str("</ul>");
    }
    if signed.may(perm::PRIVILEGED_OPERATIONS) {
        let mut options: Vec<(String, String)> = if scripts.is_empty() {
            states
                .iter()
                .filter_map(|s| {
                    s.get("policyId")
                        .as_str()
                        .map(|p| (p.to_owned(), script_name(p)))
                })
                .collect()
        } else {
            scripts
                .iter()
                .map(|s| (s.id().to_owned(), script_name(s.id())))
                .collect()
        };
        options.dedup();
        if !options.is_empty() {
            let _ = write!(
                body,
                "<h2 id=\"run\">Run remediation</h2><form method=\"post\" action=\"/devices/{}/run\" class=\"filters\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><div><label for=\"script\">Script</label><select id=\"script\" name=\"script\">",
                attr(&enc(id)),
                attr(&csrf)
            );
            for (value, label) in &options {
                let _ = write!(
                    body,
                    "<option value=\"{}\">{}</option>",
                    attr(value),
                    esc(label)
                );
            }
            body.push_str(
                "</select></div><div><button type=\"submit\">Run remediation</button></div></form>",
            );
        }
    }

    body.push_str("<h2 id=\"states\">Scripts on this device</h2>");
    if !signed.may(perm::RUN_STATE_DEVICE_READ) {
        body.push_str("<p class=\"note\">This session may not read script states.</p>");
    } else if states.is_empty() {
        body.push_str("<p class=\"note\">No script has run on this device yet.</p>");
    } else {
        body.push_str("<table aria-labelledby=\"states\"><thead><tr><th scope=\"col\">Script</th><th scope=\"col\">Detection status</th><th scope=\"col\">Remediation status</th><th scope=\"col\">Last update</th><th scope=\"col\">Last sync</th></tr></thead><tbody>");
        for s in &states {
            let script = s.get("policyId").as_str().unwrap_or("");
            let pending_mark = if pending.iter().any(|(p, _)| p == script) {
                " <span class=\"st st-pending\">Run pending</span>"
            } else {
                ""
            };
            let _ = write!(
                body,
                "<tr><th scope=\"row\"><a href=\"/scripts/{}\">{}</a></th><td>{}{pending_mark}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                attr(&enc(script)),
                esc(&script_name(script)),
                html::detection_badge(s.get("detectionState")),
                html::remediation_badge(s.get("remediationState")),
                html::time(s.get("lastStateUpdateDateTime")),
                html::time(s.get("lastSyncDateTime")),
            );
        }
        body.push_str("</tbody></table>");
        if signed.may(HISTORY.read_permissions) {
            body.push_str("<h2>Run history</h2>");
            for (n, s) in states.iter().enumerate().take(50) {
                let script = s.get("policyId").as_str().unwrap_or("");
                let list = bind(
                    state,
                    Scope::history(script, s.id()),
                    &[("$orderby", "recordedDateTime desc".to_owned())],
                    20,
                    None,
                    false,
                )?;
                let runs = store.list(tenant, &list).await?;
                let _ = write!(body, "<h3 id=\"h{n}\">{}</h3>", esc(&script_name(script)));
                if runs.records.is_empty() {
                    body.push_str("<p class=\"note\">No runs recorded.</p>");
                    continue;
                }
                let _ = write!(body, "<table aria-labelledby=\"h{n}\"><thead><tr><th scope=\"col\">Recorded</th><th scope=\"col\">Detection status</th><th scope=\"col\">Remediation status</th>");
                for (_, label, _) in OUTPUT_COLUMNS {
                    let _ = write!(body, "<th scope=\"col\">{label}</th>");
                }
                body.push_str("</tr></thead><tbody>");
                for run in &runs.records {
                    let _ = write!(
                        body,
                        "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td>",
                        html::time(run.get("recordedDateTime")),
                        html::detection_badge(run.get("detectionState")),
                        html::remediation_badge(run.get("remediationState")),
                    );
                    for (_, _, property) in OUTPUT_COLUMNS {
                        let _ = write!(body, "<td><pre>{}</pre></td>", html::text(run, property));
                    }
                    body.push_str("</tr>");
                }
                body.push_str("</tbody></table>");
            }
        }
    }
    let frame = Frame {
        tenant,
        csrf: &csrf,
    };
    Ok(html::page(&name, Some(&frame), &body))
}

/// `POST /devices/{id}/run`: the write `initiateOnDemandProactiveRemediation` makes, with its
/// permission.
pub async fn run_remediation(
    state: &AppState,
    signed: &Signed,
    device_id: &str,
    script_id: &str,
) -> Result<(), ApiError> {
    signed.principal.require(perm::PRIVILEGED_OPERATIONS)?;
    if script_id.trim().is_empty() {
        return Err(ApiError::bad_request(
            "The parameter 'scriptPolicyId' is required and must be a non-empty string.",
        ));
    }
    state
        .store
        .write(
            &signed.principal.tenant,
            Write::RequestOnDemand {
                device_id: device_id.to_owned(),
                script_id: script_id.to_owned(),
            },
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_is_a_sort() {
        for (key, _, path) in STATUS_SORTS {
            assert_eq!(status_sort(key), Some((key, path)), "{key}");
        }
        assert_eq!(status_sort("name"), None);
    }
}
