//! HTML for the dashboard: escaping (every value that comes from a client, a device or the
//! database goes through [`esc`] or [`attr`]), URL building, the page frame (skip link, header,
//! sign-out form), the stylesheet served at `/assets/dashboard.css`, and the small widgets the
//! pages share (the run-summary bar, state labels, times).

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use remediate_domain::model::{REMEDIATION_STATE, RUN_STATE};
use remediate_domain::{Instant, Record, Value};

/// Characters left as they are in a query value or a path segment.
const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Text → HTML text (also safe inside a double- or single-quoted attribute).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The same as [`esc`], named for attribute values.
pub fn attr(text: &str) -> String {
    esc(text)
}

/// Percent-encode a path segment or a query value.
pub fn enc(text: &str) -> String {
    utf8_percent_encode(text, KEEP).to_string()
}

/// A query string from pairs (empty values left out), starting with `?` (empty when none).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(if out.is_empty() { '?' } else { '&' });
        let _ = write!(out, "{}={}", enc(name), enc(value));
    }
    out
}

/// Decode `a=1&b=2` (query strings and `application/x-www-form-urlencoded` bodies).
pub fn parse_pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(name), decode(value))
        })
        .collect()
}

/// What the frame shows of the signed-in session.
pub struct Frame<'a> {
    pub tenant: &'a str,
    pub csrf: &'a str,
}

/// A whole page: `body` is HTML already escaped. `frame` is `None` on signed-out pages.
pub fn page(title: &str, frame: Option<&Frame<'_>>, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 1200);
    out.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(out, "<title>{} · remediate</title>", esc(title));
    out.push_str("<link rel=\"stylesheet\" href=\"/assets/dashboard.css\">");
    if frame.is_some() {
        out.push_str("<script src=\"/assets/dashboard.js\" defer></script>");
    }
    out.push_str("</head><body>");
    out.push_str("<a class=\"skip\" href=\"#main\">Skip to content</a><header class=\"top\">");
    out.push_str("<nav aria-label=\"Main\"><a href=\"/\">Remediations</a>");
    if frame.is_some() {
        out.push_str(
            "<a href=\"/groups\">Groups</a><a href=\"/filters\">Assignment filters</a>\
             <a href=\"/secrets\">Enrollment secrets</a>",
        );
    }
    out.push_str("</nav>");
    if let Some(frame) = frame {
        let _ = write!(
            out,
            "<p class=\"who\">Tenant <strong>{}</strong></p>\
             <form method=\"post\" action=\"/logout\" class=\"signout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form>",
            esc(frame.tenant),
            attr(frame.csrf)
        );
    }
    out.push_str("</header><main id=\"main\" tabindex=\"-1\">");
    out.push_str(body);
    out.push_str("</main></body></html>\n");
    out
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC`; "never" for the minimum date and null.
pub fn time(value: &Value) -> String {
    match value {
        Value::Time(t) if *t != Instant::MIN => {
            let text = t.to_seconds_string();
            esc(&text.replacen('T', " ", 1).replace('Z', " UTC"))
        }
        _ => "never".to_owned(),
    }
}

/// A string property, escaped; empty for null.
pub fn text(record: &Record, name: &str) -> String {
    match record.get(name) {
        Value::Str(s) => esc(s),
        Value::Bool(b) => if *b { "Yes" } else { "No" }.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::StrList(list) => esc(&list.join(", ")),
        Value::Json(j) => esc(j),
        Value::Time(_) => time(record.get(name)),
        _ => String::new(),
    }
}

/// Words and a colour class for a detection state (`runState`).
pub fn detection_label(member: &str) -> (&'static str, &'static str) {
    match member {
        "success" => ("Without issues", "ok"),
        "fail" => ("With issues", "issue"),
        "scriptError" => ("Detection error", "error"),
        "pending" => ("Pending", "pending"),
        "notApplicable" => ("Not applicable", "na"),
        _ => ("Unknown", "na"),
    }
}

/// Words and a colour class for a remediation state.
pub fn remediation_label(member: &str) -> (&'static str, &'static str) {
    match member {
        "success" => ("Remediated", "fixed"),
        "skipped" => ("Skipped", "na"),
        "remediationFailed" => ("Failed", "error"),
        "scriptError" => ("Remediation error", "error"),
        _ => ("Not run", "na"),
    }
}

/// A detection state badge: words first, colour second.
pub fn detection_badge(value: &Value) -> String {
    let member = match value {
        Value::Enum(v) => RUN_STATE.name_of(*v).unwrap_or("unknown"),
        _ => "unknown",
    };
    let (words, class) = detection_label(member);
    format!("<span class=\"st st-{class}\">{words}</span>")
}

/// A remediation state badge.
pub fn remediation_badge(value: &Value) -> String {
    let member = match value {
        Value::Enum(v) => REMEDIATION_STATE.name_of(*v).unwrap_or("unknown"),
        _ => "unknown",
    };
    let (words, class) = remediation_label(member);
    format!("<span class=\"st st-{class}\">{words}</span>")
}

/// The segments of the run-summary bar: (label, colour class, `runSummary` property).
pub const SEGMENTS: [(&str, &str, &str); 8] = [
    ("Without issues", "ok", "noIssueDetectedDeviceCount"),
    ("With issues", "issue", "issueDetectedDeviceCount"),
    ("Issue fixed", "fixed", "issueRemediatedDeviceCount"),
    ("Recurred", "recur", "issueReoccurredDeviceCount"),
    (
        "Detection error",
        "error",
        "detectionScriptErrorDeviceCount",
    ),
    (
        "Remediation error",
        "rerror",
        "remediationScriptErrorDeviceCount",
    ),
    ("Pending", "pending", "detectionScriptPendingDeviceCount"),
    (
        "Not applicable",
        "na",
        "detectionScriptNotApplicableDeviceCount",
    ),
];

/// A `runSummary` as one stacked bar (SVG, so no inline style is needed) followed by every
/// segment's count as text.
pub fn summary_bar(summary: &Record) -> String {
    let counts: Vec<i64> = SEGMENTS
        .iter()
        .map(|(_, _, name)| match summary.get(name) {
            Value::Int(n) => (*n).max(0),
            _ => 0,
        })
        .collect();
    let total: i64 = counts.iter().sum();
    let mut words = Vec::new();
    for ((label, _, _), count) in SEGMENTS.iter().zip(&counts) {
        words.push(format!("{label}: {count}"));
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "<div class=\"summary\"><svg class=\"bar\" viewBox=\"0 0 1000 16\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"{}\">",
        attr(&words.join(", "))
    );
    if total == 0 {
        out.push_str(
            "<rect class=\"seg-empty\" x=\"0\" y=\"0\" width=\"1000\" height=\"16\"></rect>",
        );
    } else {
        let mut x = 0i64;
        let mut acc = 0i64;
        for ((_, class, _), count) in SEGMENTS.iter().zip(&counts) {
            if *count == 0 {
                continue;
            }
            acc += count;
            let end = acc * 1000 / total;
            let _ = write!(
                out,
                "<rect class=\"seg-{class}\" x=\"{x}\" y=\"0\" width=\"{}\" height=\"16\"></rect>",
                (end - x).max(1)
            );
            x = end;
        }
    }
    out.push_str("</svg><ul class=\"counts\">");
    for ((label, class, name), count) in SEGMENTS.iter().zip(&counts) {
        let _ = write!(
            out,
            "<li data-count=\"{name}\"><span class=\"sw seg-{class}\" aria-hidden=\"true\"></span>{label} <strong>{count}</strong></li>"
        );
    }
    out.push_str("</ul></div>");
    out
}

/// The stylesheet (same origin; no fonts or images from elsewhere). Colours meet WCAG AA
/// contrast against their backgrounds; states are always named in words too.
pub const CSS: &str = r#":root{--fg:#1b1f24;--muted:#4a5361;--bg:#fff;--line:#c9ced6;--link:#0a4fb3;--focus:#b35c00}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--link)}
a:focus,button:focus,input:focus,select:focus,summary:focus,main:focus{outline:3px solid var(--focus);outline-offset:2px}
.skip{position:absolute;left:-999px;top:0;background:#fff;padding:.5em}
.skip:focus{left:.5em;z-index:10}
header.top{display:flex;gap:1.5em;align-items:center;padding:.5em 1em;border-bottom:1px solid var(--line);background:#f3f5f8}
header.top nav a{font-weight:600;text-decoration:none;color:var(--fg)}
.who{margin:0 0 0 auto;color:var(--muted)}
.signout{margin:0}
main{padding:1em;max-width:100%}
h1{font-size:1.5em;margin:.2em 0 .6em}
h2{font-size:1.2em;margin:1.4em 0 .5em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid var(--line);padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eef1f5}
dl.props{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}
dl.props dt{font-weight:600}
dl.props dd{margin:0}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre.code{background:#f6f8fa;border:1px solid var(--line);padding:.6em}
form.filters{display:flex;flex-wrap:wrap;gap:.6em 1em;align-items:flex-end;margin:.5em 0}
form.filters label,fieldset label{display:block;font-weight:600}
fieldset{border:1px solid var(--line)}
fieldset label{display:inline;font-weight:400;margin-right:1em}
input,select,button{font:inherit;padding:.25em .4em}
button{cursor:pointer;border:1px solid #0a4fb3;background:#0a4fb3;color:#fff;border-radius:3px}
.signout button{background:#fff;color:#0a4fb3}
.pager{display:flex;gap:1em;align-items:center}
.note{color:var(--muted)}
.msg{border-left:4px solid #0a4fb3;background:#eef4fd;padding:.5em .8em}
.summary{min-width:18em}
svg.bar{display:block;width:100%;height:16px;border:1px solid var(--line)}
ul.counts{list-style:none;padding:0;margin:.3em 0 0;display:flex;flex-wrap:wrap;gap:.1em .9em;font-size:13px}
.sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;border:1px solid #555;vertical-align:-1px}
.seg-ok{fill:#2e7d32;background:#2e7d32}.seg-issue{fill:#c62828;background:#c62828}
.seg-fixed{fill:#1565c0;background:#1565c0}.seg-recur{fill:#6a1b9a;background:#6a1b9a}
.seg-error{fill:#e65100;background:#e65100}.seg-rerror{fill:#ad1457;background:#ad1457}
.seg-pending{fill:#f9a825;background:#f9a825}.seg-na{fill:#9e9e9e;background:#9e9e9e}.seg-empty{fill:#eceff1}
.st{display:inline-block;padding:0 .4em;border-radius:3px;border:1px solid}
.st-ok{color:#1b5e20;background:#e8f5e9}.st-issue{color:#8e0000;background:#ffebee}
.st-fixed{color:#0d47a1;background:#e3f2fd}.st-error{color:#8a2c00;background:#fff3e0}
.st-pending{color:#5d4300;background:#fff8e1}.st-na{color:#37474f;background:#f5f5f5}
header.top nav{display:flex;flex-wrap:wrap;gap:.4em 1.2em}
.actions{display:flex;flex-wrap:wrap;gap:.6em 1em;align-items:center;margin:.6em 0}
a.button{display:inline-block;padding:.25em .6em;border:1px solid #0a4fb3;border-radius:3px;text-decoration:none}
button.secondary{background:#fff;color:#0a4fb3}
button.danger{background:#b71c1c;border-color:#b71c1c;color:#fff}
details.danger summary{color:#8e0000;cursor:pointer}
form.edit{max-width:46em}
.field{margin:.7em 0}
.field label{display:block;font-weight:600;margin-bottom:.15em}
.field label.inline{display:inline;font-weight:400;margin-left:.4em}
form.edit input[type=text],form.edit textarea,form.edit select{width:100%}
textarea{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
textarea[aria-invalid=true]{border:2px solid #c62828}
.check{margin:.2em 0 0;min-height:1.4em}
.check-ok{color:#1b5e20}.check-bad{color:#8e0000}
.error{border-left:4px solid #c62828;background:#ffebee;padding:.3em .8em;margin:.6em 0}
.error h2{font-size:1.05em;margin:.3em 0}
.wide{overflow-x:auto}
table caption{text-align:left;font-weight:600}
figure.chart{margin:.5em 0}
figure.chart svg{display:block;width:100%;max-width:720px;height:auto}
.axis{stroke:#4a5361;stroke-width:1}
.tick{font-size:11px;fill:#1b1f24}
form.filters fieldset label{display:inline;font-weight:400;margin:0 1em 0 .2em}
a.button{display:inline-block;padding:.25em .8em;border:1px solid #0a4fb3;background:#0a4fb3;color:#fff;border-radius:3px;text-decoration:none}
"#;
