//! URL paths to typed routes. Keys may be path segments (`/x/{id}`) or OData key syntax
//! (`x('{id}')`), percent-encoded either way. A path that names no resource is Graph's
//! `Resource not found for the segment '…'.` (400).

use remediate_domain::collections::{Collection, CollectionId, Parent, ALL_COLLECTIONS};
use remediate_domain::model::Navigation;

use crate::error::ApiError;

/// Every resource remediate serves under `/beta`. Collections and their items are generic over
/// the declarations of `remediate_domain::collections`; keys are listed outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A collection (GET lists, POST creates) inside the items named by `parents`.
    Collection {
        of: &'static Collection,
        parents: Vec<String>,
    },
    /// One item: its ancestors' keys, then its own.
    Item {
        of: &'static Collection,
        keys: Vec<String>,
    },
    /// `/$count` of a collection.
    Count {
        of: &'static Collection,
        parents: Vec<String>,
    },
    /// A navigation of an item that is not a collection of its own (`runSummary`,
    /// `managedDevice`, `deviceHealthScriptStates`).
    Navigation {
        of: &'static Collection,
        keys: Vec<String>,
        nav: &'static Navigation,
    },
    /// `…/{collection}/$ref` (POST adds a reference) and `…/{collection}/{id}/$ref` (DELETE
    /// removes it), for collections of references (`groups/{id}/members`).
    Ref {
        of: &'static Collection,
        parents: Vec<String>,
        item: Option<String>,
    },
    /// A bound action or function (see [`Operation`]).
    Operation(Operation),
    /// Extension for device agents: on-demand runs queued for the device.
    PendingOnDemand {
        device_id: String,
    },
    /// Extension for device agents: the check-in (`crate::agents::check_in`).
    AgentCheckIn {
        device_id: String,
    },
    Batch,
    Metadata,
}

/// Actions and functions bound to scripts and devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Assign {
        script_id: String,
    },
    GetRemediationHistory {
        script_id: String,
    },
    GetGlobalScriptHighestAvailableVersion {
        script_id: String,
    },
    UpdateGlobalScript {
        script_id: String,
    },
    GetRemediationSummary,
    AreGlobalScriptsAvailable,
    EnableGlobalScripts,
    InitiateOnDemandProactiveRemediation {
        device_id: String,
    },
    /// `assignmentFilters/validateFilter`.
    ValidateFilter,
}

impl Operation {
    /// Functions answer GET, actions POST.
    pub fn method(&self) -> &'static str {
        match self {
            Operation::GetRemediationHistory { .. }
            | Operation::GetRemediationSummary
            | Operation::AreGlobalScriptsAvailable => "GET",
            _ => "POST",
        }
    }
}

/// Bound functions, which may be written with or without `()`.
const FUNCTIONS: &[&str] = &[
    "getRemediationHistory",
    "getRemediationSummary",
    "areGlobalScriptsAvailable",
];

/// The methods a request may use, after routing (405 for the others, `Allow` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    pub fn of(method: &http::Method) -> Option<Verb> {
        match method.as_str() {
            "GET" => Some(Verb::Get),
            "POST" => Some(Verb::Post),
            "PATCH" => Some(Verb::Patch),
            "DELETE" => Some(Verb::Delete),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }
}

impl Route {
    /// Methods this route answers (for 405 and `Allow`), from the collection declarations.
    pub fn verbs(&self) -> Vec<Verb> {
        let pick = |pairs: &[(bool, Verb)]| -> Vec<Verb> {
            pairs
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, v)| *v)
                .collect()
        };
        match self {
            Route::Collection { of, .. } => pick(&[(of.list, Verb::Get), (of.create, Verb::Post)]),
            Route::Item { of, .. } => pick(&[
                (of.read, Verb::Get),
                (of.update, Verb::Patch),
                (of.delete, Verb::Delete),
            ]),
            Route::Count { .. }
            | Route::Navigation { .. }
            | Route::PendingOnDemand { .. }
            | Route::Metadata => vec![Verb::Get],
            Route::Batch | Route::AgentCheckIn { .. } => vec![Verb::Post],
            Route::Ref { item: None, .. } => vec![Verb::Post],
            Route::Ref { item: Some(_), .. } => vec![Verb::Delete],
            Route::Operation(op) => match op.method() {
                "GET" => vec![Verb::Get],
                _ => vec![Verb::Post],
            },
        }
    }

    /// `GET, POST` for the `Allow` header and messages.
    pub fn allow(&self) -> String {
        self.verbs()
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One path segment: a name with an optional key given in parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    name: String,
    key: Option<String>,
    raw: String,
}

fn decode(raw: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "The path segment '{raw}' is not valid percent-encoded UTF-8."
            ))
        })
}

fn parse_segment(raw: &str) -> Result<Segment, ApiError> {
    let text = decode(raw)?;
    let Some(open) = text.find('(') else {
        return Ok(Segment {
            name: text,
            key: None,
            raw: raw.to_owned(),
        });
    };
    let name = text[..open].to_owned();
    let rest = &text[open + 1..];
    let Some(inner) = rest.strip_suffix(')') else {
        return Err(ApiError::bad_request(format!(
            "The key in the segment '{text}' is missing its closing ')'."
        )));
    };
    let key = if let Some(quoted) = inner.strip_prefix('\'') {
        let Some(body) = quoted.strip_suffix('\'') else {
            return Err(ApiError::bad_request(format!(
                "The key in the segment '{text}' is missing its closing quote."
            )));
        };
        // Inside the quotes, '' is an escaped quote; a lone quote is malformed.
        if body.replace("''", "").contains('\'') {
            return Err(ApiError::bad_request(format!(
                "The key in the segment '{text}' has an unescaped quote."
            )));
        }
        body.replace("''", "'")
    } else if let Some(named) = inner.strip_prefix("id=") {
        named.trim_matches('\'').to_owned()
    } else {
        inner.to_owned()
    };
    Ok(Segment {
        name,
        key: Some(key),
        raw: raw.to_owned(),
    })
}

fn not_found(segment: &str) -> ApiError {
    ApiError::bad_request(format!("Resource not found for the segment '{segment}'."))
}

fn check_key(key: &str, segment: &str) -> Result<String, ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request(format!(
            "The key in the segment '{segment}' is empty."
        )));
    }
    if key.len() > 512 {
        return Err(ApiError::bad_request(
            "The key is longer than 512 characters.",
        ));
    }
    Ok(key.to_owned())
}

/// Parse the part of the path after `/beta/`.
pub fn parse(path: &str) -> Result<Route, ApiError> {
    let raw: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Expand `name('key')` into `name`, `key` so both forms share one grammar.
    let mut parts: Vec<(String, String)> = Vec::new();
    for segment in &raw {
        let parsed = parse_segment(segment)?;
        match parsed.key {
            Some(key) if key.is_empty() && FUNCTIONS.contains(&parsed.name.as_str()) => {
                parts.push((parsed.name, parsed.raw));
            }
            Some(key) => {
                parts.push((parsed.name.clone(), parsed.raw.clone()));
                parts.push((check_key(&key, &parsed.raw)?, parsed.raw));
            }
            None => parts.push((parsed.name, parsed.raw)),
        }
    }
    match parts.as_slice() {
        [(name, _)] if name == "$batch" => return Ok(Route::Batch),
        [(name, _)] if name == "$metadata" => return Ok(Route::Metadata),
        _ => {}
    }
    if parts
        .last()
        .is_some_and(|(name, raw)| name == "$ref" && raw == "$ref")
    {
        parts.pop();
        return match parse_parts(&parts)? {
            Route::Collection { of, parents } if of.via.is_some() => Ok(Route::Ref {
                of,
                parents,
                item: None,
            }),
            Route::Item { of, mut keys } if of.via.is_some() => {
                let item = keys.pop();
                Ok(Route::Ref {
                    of,
                    parents: keys,
                    item,
                })
            }
            _ => Err(ApiError::bad_request(
                "'$ref' is supported only after a collection of references (such as a group's members).",
            )),
        };
    }
    if parts
        .last()
        .is_some_and(|(name, raw)| name == "$count" && raw == "$count")
    {
        parts.pop();
        return match parse_parts(&parts)? {
            Route::Collection { of, parents } => Ok(Route::Count { of, parents }),
            _ => Err(ApiError::bad_request(
                "'$count' is supported only after a collection.",
            )),
        };
    }
    parse_parts(&parts)
}

/// Operations bound to a collection (`deviceHealthScripts/getRemediationSummary()`).
fn collection_operation(of: &Collection, name: &str) -> Option<Operation> {
    match (of.id, name) {
        (CollectionId::Scripts, "getRemediationSummary") => Some(Operation::GetRemediationSummary),
        (CollectionId::Scripts, "areGlobalScriptsAvailable") => {
            Some(Operation::AreGlobalScriptsAvailable)
        }
        (CollectionId::Scripts, "enableGlobalScripts") => Some(Operation::EnableGlobalScripts),
        (CollectionId::AssignmentFilters, "validateFilter") => Some(Operation::ValidateFilter),
        _ => None,
    }
}

/// Routes bound to one item that are neither collections nor navigations.
fn item_route(of: &Collection, id: &str, name: &str) -> Option<Route> {
    let script_id = id.to_owned();
    let operation = match (of.id, name) {
        (CollectionId::Scripts, "assign") => Operation::Assign { script_id },
        (CollectionId::Scripts, "getRemediationHistory") => {
            Operation::GetRemediationHistory { script_id }
        }
        (CollectionId::Scripts, "getGlobalScriptHighestAvailableVersion") => {
            Operation::GetGlobalScriptHighestAvailableVersion { script_id }
        }
        (CollectionId::Scripts, "updateGlobalScript") => {
            Operation::UpdateGlobalScript { script_id }
        }
        (CollectionId::Devices, "initiateOnDemandProactiveRemediation") => {
            Operation::InitiateOnDemandProactiveRemediation {
                device_id: id.to_owned(),
            }
        }
        (CollectionId::Devices, "pendingOnDemandRemediations") => {
            return Some(Route::PendingOnDemand {
                device_id: id.to_owned(),
            })
        }
        (CollectionId::Devices, "agentCheckIn") => {
            return Some(Route::AgentCheckIn {
                device_id: id.to_owned(),
            })
        }
        _ => return None,
    };
    Some(Route::Operation(operation))
}

/// Walk the collection tree of the declarations: a root, then (key, child)* pairs.
fn parse_parts(parts: &[(String, String)]) -> Result<Route, ApiError> {
    let raw_of = |i: usize| parts.get(i).map(|(_, r)| r.as_str()).unwrap_or("");
    let name_of = |i: usize| parts.get(i).map(|(n, _)| n.as_str());
    let Some(root) = name_of(0) else {
        return Err(not_found(""));
    };
    // A collection at the top (`/groups`), or one under a fixed path (`/deviceManagement/…`).
    let top = ALL_COLLECTIONS
        .into_iter()
        .find(|c| matches!(c.parent, Parent::Root("")) && c.segment == root);
    let (mut of, mut i) = match top {
        Some(of) => (of, 1),
        None => {
            // A fixed path of one or more segments (`deviceManagement`, `deviceManagement/reports`)
            // then the collection's segment. Unknown paths name the first segment no collection's
            // path continues with.
            let mut deepest = 0;
            let mut found = None;
            for c in ALL_COLLECTIONS {
                let Parent::Root(path) = c.parent else {
                    continue;
                };
                if path.is_empty() {
                    continue;
                }
                let full: Vec<&str> = path.split('/').chain([c.segment]).collect();
                let matched = full
                    .iter()
                    .enumerate()
                    .take_while(|(k, segment)| name_of(*k) == Some(**segment))
                    .count();
                if matched == full.len() {
                    found = Some((c, matched));
                    break;
                }
                deepest = deepest.max(matched);
            }
            match found {
                Some(found) => found,
                None => return Err(not_found(raw_of(deepest))),
            }
        }
    };
    let mut keys: Vec<String> = Vec::new();
    // After a route that must end the path, anything more is an unknown segment.
    let last = |route: Route, i: usize| {
        if parts.len() > i + 1 {
            Err(not_found(raw_of(i + 1)))
        } else {
            Ok(route)
        }
    };
    loop {
        let Some(key) = name_of(i) else {
            return Ok(Route::Collection { of, parents: keys });
        };
        if let Some(operation) = collection_operation(of, key) {
            return last(Route::Operation(operation), i);
        }
        keys.push(check_key(key, raw_of(i))?);
        let Some(name) = name_of(i + 1) else {
            return Ok(Route::Item { of, keys });
        };
        if let Some(child) = of.children().find(|c| c.segment == name) {
            of = child;
            i += 2;
            continue;
        }
        if let Some(nav) = of.entity.navigation(name) {
            return last(Route::Navigation { of, keys, nav }, i + 1);
        }
        let id = keys.last().cloned().unwrap_or_default();
        return match item_route(of, &id, name) {
            Some(route) => last(route, i + 1),
            None => Err(not_found(raw_of(i + 1))),
        };
    }
}

/// The device id named by a `managedDevice@odata.bind` URL: absolute (any host) or relative,
/// ending in `managedDevices('{id}')` or `managedDevices/{id}`.
pub fn bound_device_id(url: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "'managedDevice@odata.bind' must be the URL of a managed device, e.g. 'https://graph.microsoft.com/beta/deviceManagement/managedDevices('{{id}}')'; got '{url}'."
        ))
    };
    let path = crate::urls::url_path(url);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let position = segments.iter().rposition(|s| {
        decode(s)
            .map(|d| d == "managedDevices" || d.starts_with("managedDevices("))
            .unwrap_or(false)
    });
    let Some(position) = position else {
        return Err(bad());
    };
    let prefix_ok = segments[..position]
        .iter()
        .all(|s| matches!(*s, "beta" | "v1.0" | "deviceManagement"));
    if !prefix_ok {
        return Err(bad());
    }
    let segment = parse_segment(segments[position]).map_err(|_| bad())?;
    let id = match (segment.key, segments.get(position + 1)) {
        (Some(key), None) => key,
        (None, Some(next)) if segments.len() == position + 2 => decode(next)?,
        _ => return Err(bad()),
    };
    check_key(&id, url).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use remediate_domain::collections::{ASSIGNMENTS, DEVICES, HISTORY, RUN_STATES, SCRIPTS};

    #[test]
    fn both_key_forms_address_the_same_resource() {
        let a = parse("deviceManagement/deviceHealthScripts/abc/deviceRunStates/abc%3Ad1").unwrap();
        let b =
            parse("deviceManagement/deviceHealthScripts('abc')/deviceRunStates('abc:d1')").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            Route::Item {
                of: &RUN_STATES,
                keys: vec!["abc".into(), "abc:d1".into()]
            }
        );
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts(%27a%27%27b%27)").unwrap(),
            Route::Item {
                of: &SCRIPTS,
                keys: vec!["a'b".into()]
            }
        );
        assert_eq!(
            parse("deviceManagement/managedDevices('d1')").unwrap(),
            Route::Item {
                of: &DEVICES,
                keys: vec!["d1".into()]
            }
        );
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts/s/deviceRunStates/s:d/history").unwrap(),
            Route::Collection {
                of: &HISTORY,
                parents: vec!["s".into(), "s:d".into()]
            }
        );
    }

    #[test]
    fn unknown_segments_are_named() {
        let err = parse("deviceManagement/deviceHealthScripts/abc/nope").unwrap_err();
        assert_eq!(err.message, "Resource not found for the segment 'nope'.");
        assert!(parse("users").unwrap_err().message.contains("'users'"));
        assert!(parse("deviceManagement/deviceHealthScripts('a)").is_err());
        assert!(parse("deviceManagement/deviceHealthScripts('')").is_err());
        assert_eq!(
            parse("deviceManagement/managedDevices/$count").unwrap(),
            Route::Count {
                of: &DEVICES,
                parents: Vec::new()
            }
        );
        assert!(parse("deviceManagement/managedDevices/x/$count").is_err());
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts/getRemediationSummary()").unwrap(),
            Route::Operation(Operation::GetRemediationSummary)
        );
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts/getRemediationSummary").unwrap(),
            Route::Operation(Operation::GetRemediationSummary)
        );
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts('s')/getRemediationHistory()").unwrap(),
            Route::Operation(Operation::GetRemediationHistory {
                script_id: "s".into()
            })
        );
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts/s/assignments/s%3Ag").unwrap(),
            Route::Item {
                of: &ASSIGNMENTS,
                keys: vec!["s".into(), "s:g".into()]
            }
        );
        assert_eq!(parse("$batch").unwrap(), Route::Batch);
        assert_eq!(
            parse("deviceManagement/reports/exportJobs('R_1')").unwrap(),
            Route::Item {
                of: &remediate_domain::collections::EXPORT_JOBS,
                keys: vec!["R_1".into()]
            }
        );
        assert_eq!(
            parse("deviceManagement/reports/nope").unwrap_err().message,
            "Resource not found for the segment 'nope'."
        );
        assert_eq!(
            parse("deviceManagement/nope/exportJobs")
                .unwrap_err()
                .message,
            "Resource not found for the segment 'nope'."
        );
        assert!(parse("deviceManagement/deviceHealthScripts/s/runSummary/x").is_err());
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts/s/assign/x")
                .unwrap_err()
                .message,
            "Resource not found for the segment 'x'."
        );
        assert!(matches!(
            parse("deviceManagement/deviceHealthScripts/s/runSummary").unwrap(),
            Route::Navigation { nav, .. } if nav.name == "runSummary"
        ));
    }

    #[test]
    fn bind_urls_in_every_common_form() {
        for url in [
            "https://graph.microsoft.com/beta/deviceManagement/managedDevices('d1')",
            "http://127.0.0.1:8080/beta/deviceManagement/managedDevices/d1",
            "/deviceManagement/managedDevices('d1')",
            "deviceManagement/managedDevices/d1",
            "managedDevices('d1')",
        ] {
            assert_eq!(bound_device_id(url).unwrap(), "d1", "{url}");
        }
        for url in [
            "https://x/beta/users('d1')",
            "managedDevices",
            "managedDevices('d1')/extra",
            "",
            "https://x/beta/deviceManagement/deviceHealthScripts('d1')",
        ] {
            assert!(bound_device_id(url).is_err(), "{url}");
        }
    }
}
