//! Running one differential query: walk every page the server returns (following nextLinks,
//! checking `@odata.count`) and compare rows and order with the oracle's evaluation; failures are
//! collected so one run reports all of them.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::json;

use super::generate::backend;
use crate::harness::TestApp;
use crate::oracle::*;

// ---------------------------------------------------------------------------------------------
// Running a query: walk every page and compare with the reference
// ---------------------------------------------------------------------------------------------

pub(crate) fn describe_row(row: &Row, props: &[Prop]) -> String {
    let mut s = format!("{} id={}", row.label, row.id);
    for (p, v) in props.iter().zip(&row.vals).skip(1) {
        write!(s, " {}={v}", p.path).unwrap();
    }
    s
}

/// Send `q` to `path`, follow every nextLink, and compare with the reference evaluation over `rows`.
pub(crate) async fn check_query(
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
pub(crate) struct Failures {
    pub(crate) header: String,
    pub(crate) list: Vec<String>,
}

impl Failures {
    pub(crate) fn new(test: &str, app: &TestApp, seed: Option<u64>) -> Failures {
        let replay = match seed {
            Some(seed) => format!(" (seed {seed}, replay with REMEDIATE_DIFF_SEED={seed})"),
            None => String::new(),
        };
        Failures {
            header: format!("differential::{test} on {}{replay}", backend(app)),
            list: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, what: String) {
        eprintln!("{}: FAILED {what}", self.header);
        self.list.push(what);
    }

    pub(crate) fn finish(self, total: usize) {
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
