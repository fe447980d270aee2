//! URL paths to typed routes. Keys may be path segments (`/x/{id}`) or OData key syntax
//! (`x('{id}')`), percent-encoded either way. A path that names no resource is Graph's
//! `Resource not found for the segment '…'.` (400).

use crate::error::ApiError;

/// Every resource remediate serves under `/beta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Scripts,
    Script(String),
    RunStates {
        script_id: String,
    },
    RunState {
        script_id: String,
        id: String,
    },
    RunStateDevice {
        script_id: String,
        id: String,
    },
    Devices,
    Device(String),
    /// `/$count` of a collection route.
    Count(Box<Route>),
    Assignments {
        script_id: String,
    },
    Assignment {
        script_id: String,
        id: String,
    },
    RunSummary {
        script_id: String,
    },
    History {
        script_id: String,
        state_id: String,
    },
    /// A bound action or function (see [`Operation`]).
    Operation(Operation),
    DeviceScriptStates {
        device_id: String,
    },
    /// Extension for device agents: on-demand runs queued for the device.
    PendingOnDemand {
        device_id: String,
    },
    Batch,
    Metadata,
}

/// Actions and functions bound to scripts and devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Assign { script_id: String },
    GetRemediationHistory { script_id: String },
    GetGlobalScriptHighestAvailableVersion { script_id: String },
    UpdateGlobalScript { script_id: String },
    GetRemediationSummary,
    AreGlobalScriptsAvailable,
    EnableGlobalScripts,
    InitiateOnDemandProactiveRemediation { device_id: String },
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

impl Route {
    /// Methods this route answers (for 405 and `Allow`).
    pub fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Scripts | Route::RunStates { .. } | Route::Devices => &["GET", "POST"],
            Route::Script(_) | Route::RunState { .. } | Route::Device(_) => {
                &["GET", "PATCH", "DELETE"]
            }
            Route::RunStateDevice { .. }
            | Route::Count(_)
            | Route::RunSummary { .. }
            | Route::History { .. }
            | Route::DeviceScriptStates { .. }
            | Route::PendingOnDemand { .. }
            | Route::Metadata => &["GET"],
            Route::Assignments { .. } => &["GET", "POST"],
            Route::Assignment { .. } => &["GET", "PATCH", "DELETE"],
            Route::Batch => &["POST"],
            Route::Operation(op) => {
                if op.method() == "GET" {
                    &["GET"]
                } else {
                    &["POST"]
                }
            }
        }
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
        .is_some_and(|(name, raw)| name == "$count" && raw == "$count")
    {
        parts.pop();
        let inner = parse_parts(&parts)?;
        return match inner {
            Route::Scripts
            | Route::RunStates { .. }
            | Route::Devices
            | Route::Assignments { .. }
            | Route::History { .. } => Ok(Route::Count(Box::new(inner))),
            _ => Err(ApiError::bad_request(
                "'$count' is supported only after a collection.",
            )),
        };
    }
    parse_parts(&parts)
}

fn parse_parts(parts: &[(String, String)]) -> Result<Route, ApiError> {
    let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
    let raw_of = |i: usize| parts.get(i).map(|(_, r)| r.as_str()).unwrap_or("");
    let Some(&first) = names.first() else {
        return Err(not_found(""));
    };
    if first != "deviceManagement" {
        return Err(not_found(raw_of(0)));
    }
    match names.get(1).copied() {
        Some("deviceHealthScripts") => {}
        Some("managedDevices") => {
            let Some(id) = names.get(2) else {
                return Ok(Route::Devices);
            };
            let device_id = check_key(id, raw_of(2))?;
            return match (names.get(3).copied(), names.len()) {
                (None, _) => Ok(Route::Device(device_id)),
                (Some("deviceHealthScriptStates"), 4) => {
                    Ok(Route::DeviceScriptStates { device_id })
                }
                (Some("initiateOnDemandProactiveRemediation"), 4) => Ok(Route::Operation(
                    Operation::InitiateOnDemandProactiveRemediation { device_id },
                )),
                (Some("pendingOnDemandRemediations"), 4) => {
                    Ok(Route::PendingOnDemand { device_id })
                }
                _ => Err(not_found(raw_of(3))),
            };
        }
        _ => return Err(not_found(raw_of(1))),
    }
    let collection_operation = match names.get(2).copied() {
        Some("getRemediationSummary") => Some(Operation::GetRemediationSummary),
        Some("areGlobalScriptsAvailable") => Some(Operation::AreGlobalScriptsAvailable),
        Some("enableGlobalScripts") => Some(Operation::EnableGlobalScripts),
        _ => None,
    };
    if let Some(operation) = collection_operation {
        if names.len() > 3 {
            return Err(not_found(raw_of(3)));
        }
        return Ok(Route::Operation(operation));
    }
    let script_id = match names.get(2) {
        None => return Ok(Route::Scripts),
        Some(id) => check_key(id, raw_of(2))?,
    };
    let single = |route: Route| {
        if names.len() == 4 {
            Ok(route)
        } else {
            Err(not_found(raw_of(4)))
        }
    };
    match names.get(3).copied() {
        None => Ok(Route::Script(script_id)),
        Some("deviceRunStates") => {
            let Some(id) = names.get(4) else {
                return Ok(Route::RunStates { script_id });
            };
            let id = check_key(id, raw_of(4))?;
            match names.get(5).copied() {
                None => Ok(Route::RunState { script_id, id }),
                Some("managedDevice") if names.len() == 6 => {
                    Ok(Route::RunStateDevice { script_id, id })
                }
                Some("history") if names.len() == 6 => Ok(Route::History {
                    script_id,
                    state_id: id,
                }),
                _ => Err(not_found(raw_of(5))),
            }
        }
        Some("assignments") => match (names.get(4), names.len()) {
            (None, _) => Ok(Route::Assignments { script_id }),
            (Some(id), 5) => Ok(Route::Assignment {
                script_id,
                id: check_key(id, raw_of(4))?,
            }),
            _ => Err(not_found(raw_of(5))),
        },
        Some("runSummary") => single(Route::RunSummary { script_id }),
        Some("assign") => single(Route::Operation(Operation::Assign { script_id })),
        Some("getRemediationHistory") => {
            single(Route::Operation(Operation::GetRemediationHistory {
                script_id,
            }))
        }
        Some("getGlobalScriptHighestAvailableVersion") => single(Route::Operation(
            Operation::GetGlobalScriptHighestAvailableVersion { script_id },
        )),
        Some("updateGlobalScript") => single(Route::Operation(Operation::UpdateGlobalScript {
            script_id,
        })),
        Some(_) => Err(not_found(raw_of(3))),
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
    let path = match url.find("://") {
        Some(scheme_end) => {
            let after = &url[scheme_end + 3..];
            after.find('/').map_or("", |slash| &after[slash..])
        }
        None => url,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
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

    #[test]
    fn both_key_forms_address_the_same_resource() {
        let a = parse("deviceManagement/deviceHealthScripts/abc/deviceRunStates/abc%3Ad1").unwrap();
        let b =
            parse("deviceManagement/deviceHealthScripts('abc')/deviceRunStates('abc:d1')").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a,
            Route::RunState {
                script_id: "abc".into(),
                id: "abc:d1".into()
            }
        );
        assert_eq!(
            parse("deviceManagement/deviceHealthScripts(%27a%27%27b%27)").unwrap(),
            Route::Script("a'b".into())
        );
        assert_eq!(
            parse("deviceManagement/managedDevices('d1')").unwrap(),
            Route::Device("d1".into())
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
            Route::Count(Box::new(Route::Devices))
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
            Route::Assignment {
                script_id: "s".into(),
                id: "s:g".into()
            }
        );
        assert_eq!(parse("$batch").unwrap(), Route::Batch);
        assert!(parse("deviceManagement/deviceHealthScripts/s/runSummary/x").is_err());
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
