//! Validators for complex (structured) property values, which are stored as canonical JSON.

use remediate_domain::model::ComplexKind;
use serde_json::{Map, Value as Json};

use crate::decode::{describe, DecodeError};

/// Validate a complex value and return its canonical JSON text (with `#`-prefixed `@odata.type`
/// and every property present).
pub fn validate(kind: ComplexKind, property: &str, json: &Json) -> Result<String, DecodeError> {
    let canonical = match kind {
        ComplexKind::ScriptParameters => script_parameters(property, json)?,
        ComplexKind::AssignmentTarget => assignment_target(property, json)?,
        ComplexKind::RunSchedule => run_schedule(property, json)?,
    };
    Ok(canonical.to_string())
}

const PARAMETER_TYPES: [&str; 3] = [
    "deviceHealthScriptStringParameter",
    "deviceHealthScriptIntegerParameter",
    "deviceHealthScriptBooleanParameter",
];

fn script_parameters(property: &str, json: &Json) -> Result<Json, DecodeError> {
    let err = |m: String| DecodeError(m);
    let Json::Array(items) = json else {
        return Err(err(format!("The property '{property}' must be an array of deviceHealthScriptParameter objects, but the request has {}.", describe(json))));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{property}[{i}]");
        let Json::Object(map) = item else {
            return Err(err(format!(
                "'{at}' must be an object, but the request has {}.",
                describe(item)
            )));
        };
        let type_name = match map.get("@odata.type") {
            Some(Json::String(t)) => {
                let bare = t.trim_start_matches('#').trim_start_matches("microsoft.graph.");
                PARAMETER_TYPES.iter().find(|n| **n == bare).copied().ok_or_else(|| {
                    err(format!("'{at}' has '@odata.type' '{t}'; expected one of #microsoft.graph.{}.", PARAMETER_TYPES.join(", #microsoft.graph.")))
                })?
            }
            _ => return Err(err(format!("'{at}' needs an '@odata.type' (deviceHealthScriptParameter is abstract); expected one of #microsoft.graph.{}.", PARAMETER_TYPES.join(", #microsoft.graph.")))),
        };
        let mut canonical = Map::new();
        canonical.insert(
            "@odata.type".into(),
            Json::String(format!("#microsoft.graph.{type_name}")),
        );
        let get = |key: &str| map.get(key).filter(|v| !v.is_null());
        for key in ["name", "description"] {
            match get(key) {
                None => canonical.insert(key.into(), Json::Null),
                Some(Json::String(s)) => canonical.insert(key.into(), Json::String(s.clone())),
                Some(other) => {
                    return Err(err(format!(
                        "'{at}.{key}' must be a string, but the request has {}.",
                        describe(other)
                    )))
                }
            };
        }
        for key in ["isRequired", "applyDefaultValueWhenNotAssigned"] {
            match map.get(key) {
                None => canonical.insert(key.into(), Json::Bool(false)),
                Some(Json::Bool(b)) => canonical.insert(key.into(), Json::Bool(*b)),
                Some(other) => {
                    return Err(err(format!(
                        "'{at}.{key}' must be true or false, but the request has {}.",
                        describe(other)
                    )))
                }
            };
        }
        let default = map.get("defaultValue");
        let default = match (type_name, default) {
            ("deviceHealthScriptStringParameter", None | Some(Json::Null)) => Json::Null,
            ("deviceHealthScriptStringParameter", Some(Json::String(s))) => Json::String(s.clone()),
            ("deviceHealthScriptIntegerParameter", None) => Json::from(0),
            ("deviceHealthScriptIntegerParameter", Some(Json::Number(n)))
                if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) =>
            {
                Json::Number(n.clone())
            }
            ("deviceHealthScriptBooleanParameter", None) => Json::Bool(false),
            ("deviceHealthScriptBooleanParameter", Some(Json::Bool(b))) => Json::Bool(*b),
            (_, Some(other)) => {
                return Err(err(format!(
                    "'{at}.defaultValue' has {}, which is not valid for {type_name}.",
                    describe(other)
                )))
            }
            (_, None) => Json::Null,
        };
        canonical.insert("defaultValue".into(), default);
        for key in map.keys() {
            if !canonical.contains_key(key) {
                return Err(err(format!("The property '{key}' does not exist on type 'microsoft.graph.{type_name}' (in '{at}').")));
            }
        }
        out.push(Json::Object(canonical));
    }
    Ok(Json::Array(out))
}

/// The derived type named by an object's `@odata.type`, with or without `#` and namespace.
fn derived_type<'a>(
    at: &str,
    map: &Map<String, Json>,
    allowed: &[&'a str],
    abstract_name: &str,
) -> Result<&'a str, DecodeError> {
    let list = format!("#microsoft.graph.{}", allowed.join(", #microsoft.graph."));
    match map.get("@odata.type") {
        Some(Json::String(t)) => {
            let bare = t
                .trim_start_matches('#')
                .trim_start_matches("microsoft.graph.");
            allowed.iter().find(|n| **n == bare).copied().ok_or_else(|| {
                DecodeError(format!("'{at}' has '@odata.type' '{t}', which is not a concrete {abstract_name}; expected one of {list}."))
            })
        }
        Some(other) => Err(DecodeError(format!(
            "'{at}.@odata.type' must be a string, but the request has {}.",
            describe(other)
        ))),
        None => Err(DecodeError(format!(
            "'{at}' needs an '@odata.type' ({abstract_name} is abstract); expected one of {list}."
        ))),
    }
}

fn reject_unknown(
    at: &str,
    type_name: &str,
    map: &Map<String, Json>,
    known: &Map<String, Json>,
) -> Result<(), DecodeError> {
    for key in map.keys() {
        if !known.contains_key(key) {
            return Err(DecodeError(format!("The property '{key}' does not exist on type 'microsoft.graph.{type_name}' (in '{at}').")));
        }
    }
    Ok(())
}

const TARGET_TYPES: [&str; 4] = [
    "allDevicesAssignmentTarget",
    "allLicensedUsersAssignmentTarget",
    "groupAssignmentTarget",
    "exclusionGroupAssignmentTarget",
];

fn assignment_target(at: &str, json: &Json) -> Result<Json, DecodeError> {
    let Json::Object(map) = json else {
        return Err(DecodeError(format!(
            "'{at}' must be an object, but the request has {}.",
            describe(json)
        )));
    };
    let type_name = derived_type(
        at,
        map,
        &TARGET_TYPES,
        "deviceAndAppManagementAssignmentTarget",
    )?;
    let mut out = Map::new();
    out.insert(
        "@odata.type".into(),
        Json::String(format!("#microsoft.graph.{type_name}")),
    );
    let (filter_id, filter_type) = assignment_filter(at, map)?;
    out.insert(
        "deviceAndAppManagementAssignmentFilterId".into(),
        Json::String(filter_id),
    );
    out.insert(
        "deviceAndAppManagementAssignmentFilterType".into(),
        Json::String(filter_type),
    );
    if type_name.contains("roupAssignmentTarget") {
        match map.get("groupId") {
            Some(Json::String(g)) if !g.trim().is_empty() => {
                out.insert("groupId".into(), Json::String(g.clone()))
            }
            _ => {
                return Err(DecodeError(format!(
                    "'{at}.groupId' is required for {type_name} and must be a non-empty string."
                )))
            }
        };
    }
    reject_unknown(at, type_name, map, &out)?;
    Ok(Json::Object(out))
}

/// The filter id Intune answers for a target without an assignment filter (with the filter type
/// `none`): targets never carry a null filter id.
pub const NO_FILTER_ID: &str = "00000000-0000-0000-0000-000000000000";

/// A target's filter, as (id, type): no filter is ([`NO_FILTER_ID`], `none`) however it is sent
/// (id left out, null or the zero GUID; type left out or `none`). A filter id with the type `none`
/// and the type `include`/`exclude` without a filter id are refused: either would store a filter
/// that does nothing, or no filter where one was meant.
fn assignment_filter(at: &str, map: &Map<String, Json>) -> Result<(String, String), DecodeError> {
    const ID: &str = "deviceAndAppManagementAssignmentFilterId";
    const TYPE: &str = "deviceAndAppManagementAssignmentFilterType";
    let filter_id = match map.get(ID) {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) if s == NO_FILTER_ID => None,
        Some(Json::String(s)) if is_guid(s) => Some(s.clone()),
        Some(other) => {
            return Err(DecodeError(format!(
                "'{at}.{ID}' must be the id of an assignment filter (a GUID) or null, but the request has {}.",
                describe(other)
            )))
        }
    };
    let (filter_type, type_given) = match map.get(TYPE) {
        None => ("none".to_owned(), false),
        Some(Json::String(s)) if ["none", "include", "exclude"].contains(&s.as_str()) => {
            (s.clone(), true)
        }
        Some(other) => {
            return Err(DecodeError(format!(
                "'{at}.{TYPE}' has {}, which is not a member of microsoft.graph.deviceAndAppManagementAssignmentFilterType; expected one of 'none', 'include', 'exclude'.",
                describe(other)
            )))
        }
    };
    match (filter_id, filter_type.as_str()) {
        (None, "none") => Ok((NO_FILTER_ID.to_owned(), filter_type)),
        (Some(id), "include" | "exclude") => Ok((id, filter_type)),
        (Some(id), _) => {
            let given = if type_given {
                "is 'none'"
            } else {
                "is left out, so it is 'none'"
            };
            Err(DecodeError(format!(
                "'{at}.{ID}' is '{id}', but '{at}.{TYPE}' {given}: a filter applies only with the type 'include' or 'exclude' (or leave the filter id out, or send {NO_FILTER_ID}, for no filter)."
            )))
        }
        (None, _) => Err(DecodeError(format!(
            "'{at}.{TYPE}' is '{filter_type}', which needs a filter, but '{at}.{ID}' is {}: give the id (a GUID) of the assignment filter, or the type 'none' for no filter.",
            match map.get(ID) {
                None => "left out".to_owned(),
                Some(Json::Null) => "null".to_owned(),
                Some(_) => format!("the zero GUID {NO_FILTER_ID} (no filter)"),
            }
        ))),
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hexadecimal digits of either case.
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A stored complex value made to read as Graph answers it today: an assignment target stored
/// before filter ids defaulted to [`NO_FILTER_ID`] (a null or missing filter id, a missing
/// filter type) reads as having no filter. Other values are left as they are.
pub fn normalize_stored(kind: ComplexKind, json: &mut Json) {
    const ID: &str = "deviceAndAppManagementAssignmentFilterId";
    const TYPE: &str = "deviceAndAppManagementAssignmentFilterType";
    if kind != ComplexKind::AssignmentTarget {
        return;
    }
    let Json::Object(map) = json else {
        return;
    };
    let has_id = map.get(ID).is_some_and(|v| !v.is_null());
    let has_type = map.get(TYPE).is_some_and(|v| !v.is_null());
    if has_id && has_type {
        return;
    }
    // Rebuilt in the canonical member order: @odata.type, the filter id and type, the rest.
    let mut out = Map::with_capacity(map.len() + 2);
    if let Some(t) = map.get("@odata.type") {
        out.insert("@odata.type".into(), t.clone());
    }
    let id = match map.get(ID) {
        Some(v) if !v.is_null() => v.clone(),
        _ => Json::String(NO_FILTER_ID.to_owned()),
    };
    out.insert(ID.into(), id);
    let filter_type = match map.get(TYPE) {
        Some(v) if !v.is_null() => v.clone(),
        _ => Json::String("none".to_owned()),
    };
    out.insert(TYPE.into(), filter_type);
    for (key, value) in std::mem::take(map) {
        if !out.contains_key(&key) {
            out.insert(key, value);
        }
    }
    *map = out;
}

const SCHEDULE_TYPES: [&str; 3] = [
    "deviceHealthScriptRunOnceSchedule",
    "deviceHealthScriptHourlySchedule",
    "deviceHealthScriptDailySchedule",
];

fn run_schedule(at: &str, json: &Json) -> Result<Json, DecodeError> {
    let Json::Object(map) = json else {
        return Err(DecodeError(format!(
            "'{at}' must be an object, but the request has {}.",
            describe(json)
        )));
    };
    let type_name = derived_type(at, map, &SCHEDULE_TYPES, "deviceHealthScriptRunSchedule")?;
    let mut out = Map::new();
    out.insert(
        "@odata.type".into(),
        Json::String(format!("#microsoft.graph.{type_name}")),
    );
    let interval = match map.get("interval") {
        None => 1,
        Some(Json::Number(n)) if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {
            n.as_i64().unwrap_or(1)
        }
        Some(other) => {
            return Err(DecodeError(format!(
                "'{at}.interval' must be an integer, but the request has {}.",
                describe(other)
            )))
        }
    };
    let valid = match type_name {
        "deviceHealthScriptHourlySchedule" => (1..=23).contains(&interval),
        _ => interval >= 1,
    };
    if !valid {
        let range = if type_name == "deviceHealthScriptHourlySchedule" {
            "1 to 23 hours"
        } else {
            "at least 1"
        };
        return Err(DecodeError(format!(
            "'{at}.interval' is {interval}; {type_name} needs {range}."
        )));
    }
    out.insert("interval".into(), Json::from(interval));
    if type_name != "deviceHealthScriptHourlySchedule" {
        let time = match map.get("time") {
            None | Some(Json::Null) => Json::Null,
            Some(Json::String(t)) => Json::String(time_of_day(at, t)?),
            Some(other) => {
                return Err(DecodeError(format!(
                    "'{at}.time' must be a time of day 'HH:MM:SS.fffffff', but the request has {}.",
                    describe(other)
                )))
            }
        };
        out.insert("time".into(), time);
        let use_utc = match map.get("useUtc") {
            None => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                return Err(DecodeError(format!(
                    "'{at}.useUtc' must be true or false, but the request has {}.",
                    describe(other)
                )))
            }
        };
        out.insert("useUtc".into(), Json::Bool(use_utc));
    }
    if type_name == "deviceHealthScriptRunOnceSchedule" {
        let date = match map.get("date") {
            None | Some(Json::Null) => Json::Null,
            Some(Json::String(d)) if valid_date(d) => Json::String(d.clone()),
            Some(other) => {
                return Err(DecodeError(format!(
                    "'{at}.date' must be a date 'YYYY-MM-DD', but the request has {}.",
                    describe(other)
                )))
            }
        };
        out.insert("date".into(), date);
    }
    reject_unknown(at, type_name, map, &out)?;
    Ok(Json::Object(out))
}

/// `Edm.TimeOfDay`: `HH:MM[:SS[.f{1,7}]]`, canonical `HH:MM:SS.fffffff`.
fn time_of_day(at: &str, text: &str) -> Result<String, DecodeError> {
    let err = || {
        DecodeError(format!(
            "'{at}.time' is '{text}', not a time of day 'HH:MM:SS.fffffff'."
        ))
    };
    let (clock, fraction) = text.split_once('.').unwrap_or((text, ""));
    let parts: Vec<&str> = clock.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err());
    }
    let number = |i: usize| {
        parts
            .get(i)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (h, m, s) = (number(0), number(1), number(2));
    if h > 23
        || m > 59
        || s > 59
        || fraction.len() > 7
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && fraction.is_empty())
    {
        return Err(err());
    }
    Ok(format!("{h:02}:{m:02}:{s:02}.{fraction:0<7}"))
}

fn valid_date(text: &str) -> bool {
    remediate_domain::Instant::parse(&format!("{text}T00:00:00Z")).is_ok() && text.len() == 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_canonicalized_and_checked() {
        let json: Json = serde_json::from_str(r#"[{"@odata.type":"microsoft.graph.deviceHealthScriptStringParameter","name":"p","defaultValue":"v"}]"#).unwrap();
        let text = validate(
            ComplexKind::ScriptParameters,
            "detectionScriptParameters",
            &json,
        )
        .unwrap();
        assert_eq!(
            text,
            r##"[{"@odata.type":"#microsoft.graph.deviceHealthScriptStringParameter","name":"p","description":null,"isRequired":false,"applyDefaultValueWhenNotAssigned":false,"defaultValue":"v"}]"##
        );
        let bad: Json = serde_json::from_str(r#"[{"name":"p"}]"#).unwrap();
        assert!(validate(
            ComplexKind::ScriptParameters,
            "detectionScriptParameters",
            &bad
        )
        .unwrap_err()
        .0
        .contains("abstract"));
        let bad: Json = serde_json::from_str(r##"[{"@odata.type":"#microsoft.graph.deviceHealthScriptIntegerParameter","defaultValue":"x"}]"##).unwrap();
        assert!(validate(ComplexKind::ScriptParameters, "p", &bad).is_err());
    }

    fn check(kind: ComplexKind, json: &str) -> Result<String, String> {
        validate(kind, "x", &serde_json::from_str(json).unwrap()).map_err(|e| e.0)
    }

    #[test]
    fn assignment_targets_and_schedules_are_polymorphic_and_checked() {
        let t = check(
            ComplexKind::AssignmentTarget,
            r#"{"@odata.type":"microsoft.graph.groupAssignmentTarget","groupId":"g1"}"#,
        )
        .unwrap();
        assert_eq!(
            t,
            r##"{"@odata.type":"#microsoft.graph.groupAssignmentTarget","deviceAndAppManagementAssignmentFilterId":"00000000-0000-0000-0000-000000000000","deviceAndAppManagementAssignmentFilterType":"none","groupId":"g1"}"##
        );
        assert!(check(
            ComplexKind::AssignmentTarget,
            r##"{"@odata.type":"#microsoft.graph.groupAssignmentTarget"}"##
        )
        .unwrap_err()
        .contains("groupId"));
        assert!(check(
            ComplexKind::AssignmentTarget,
            r#"{"@odata.type":"microsoft.graph.deviceAndAppManagementAssignmentTarget"}"#
        )
        .unwrap_err()
        .contains("not a concrete"));
        let s = check(ComplexKind::RunSchedule, r##"{"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","interval":1,"time":"20:00:00","useUtc":false}"##).unwrap();
        assert!(!s.contains("FilterId"), "{s}");
        assert!(s.contains(r#""time":"20:00:00.0000000""#), "{s}");
        assert!(check(
            ComplexKind::RunSchedule,
            r##"{"@odata.type":"#microsoft.graph.deviceHealthScriptHourlySchedule","interval":24}"##
        )
        .unwrap_err()
        .contains("1 to 23"));
        assert!(check(
            ComplexKind::RunSchedule,
            r#"{"@odata.type":"microsoft.graph.runSchedule"}"#
        )
        .is_err());
        assert!(check(ComplexKind::RunSchedule, r##"{"@odata.type":"#microsoft.graph.deviceHealthScriptDailySchedule","time":"25:00:00"}"##).is_err());
        let once = check(ComplexKind::RunSchedule, r##"{"@odata.type":"#microsoft.graph.deviceHealthScriptRunOnceSchedule","date":"2025-02-28","time":"11:58:36.255"}"##).unwrap();
        assert!(
            once.contains(r#""date":"2025-02-28""#) && once.contains("11:58:36.2550000"),
            "{once}"
        );
    }

    #[test]
    fn targets_without_a_filter_get_the_zero_guid_and_none() {
        let target = |members: &str| {
            check(
                ComplexKind::AssignmentTarget,
                &format!(
                    r##"{{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"{members}}}"##
                ),
            )
        };
        let none = r##"{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget","deviceAndAppManagementAssignmentFilterId":"00000000-0000-0000-0000-000000000000","deviceAndAppManagementAssignmentFilterType":"none"}"##;
        for members in [
            "",
            r#","deviceAndAppManagementAssignmentFilterId":null"#,
            r#","deviceAndAppManagementAssignmentFilterType":"none""#,
            r#","deviceAndAppManagementAssignmentFilterId":"00000000-0000-0000-0000-000000000000","deviceAndAppManagementAssignmentFilterType":"none""#,
        ] {
            assert_eq!(target(members).unwrap(), none, "{members}");
        }
        let filter = "9D8C3F3E-2d6a-4b0f-8a59-5c7e1f0a2b11";
        assert!(target(&format!(
            r#","deviceAndAppManagementAssignmentFilterId":"{filter}","deviceAndAppManagementAssignmentFilterType":"exclude""#
        ))
        .unwrap()
        .contains(filter));
        for (members, needle) in [
            (format!(r#","deviceAndAppManagementAssignmentFilterId":"{filter}""#), "is left out, so it is 'none'"),
            (format!(r#","deviceAndAppManagementAssignmentFilterId":"{filter}","deviceAndAppManagementAssignmentFilterType":"none""#), "is 'none'"),
            (r#","deviceAndAppManagementAssignmentFilterType":"include""#.to_owned(), "is left out"),
            (r#","deviceAndAppManagementAssignmentFilterId":null,"deviceAndAppManagementAssignmentFilterType":"include""#.to_owned(), "is null"),
            (r#","deviceAndAppManagementAssignmentFilterId":"00000000-0000-0000-0000-000000000000","deviceAndAppManagementAssignmentFilterType":"exclude""#.to_owned(), "zero GUID"),
            (r#","deviceAndAppManagementAssignmentFilterId":"f1","deviceAndAppManagementAssignmentFilterType":"include""#.to_owned(), "a GUID"),
            (r#","deviceAndAppManagementAssignmentFilterId":7"#.to_owned(), "a GUID"),
        ] {
            let error = target(&members).unwrap_err();
            assert!(error.contains(needle), "{members}: {error}");
        }
    }

    #[test]
    fn stored_targets_without_a_filter_read_as_the_zero_guid() {
        let mut old: Json = serde_json::from_str(
            r##"{"@odata.type":"#microsoft.graph.groupAssignmentTarget","deviceAndAppManagementAssignmentFilterId":null,"groupId":"g1"}"##,
        )
        .unwrap();
        normalize_stored(ComplexKind::AssignmentTarget, &mut old);
        assert_eq!(
            old.to_string(),
            r##"{"@odata.type":"#microsoft.graph.groupAssignmentTarget","deviceAndAppManagementAssignmentFilterId":"00000000-0000-0000-0000-000000000000","deviceAndAppManagementAssignmentFilterType":"none","groupId":"g1"}"##
        );
        let current = r##"{"@odata.type":"#microsoft.graph.groupAssignmentTarget","deviceAndAppManagementAssignmentFilterId":"9d8c3f3e-2d6a-4b0f-8a59-5c7e1f0a2b11","deviceAndAppManagementAssignmentFilterType":"include","groupId":"g1"}"##;
        let mut json: Json = serde_json::from_str(current).unwrap();
        normalize_stored(ComplexKind::AssignmentTarget, &mut json);
        assert_eq!(json.to_string(), current);
        let mut schedule: Json = serde_json::from_str(r#"{"interval":1}"#).unwrap();
        normalize_stored(ComplexKind::RunSchedule, &mut schedule);
        assert_eq!(schedule.to_string(), r#"{"interval":1}"#);
    }
}
