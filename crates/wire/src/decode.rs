//! Request bodies: JSON text in, validated property values out, or a message that names the
//! property and what was expected. Nothing is truncated or dropped: a body is accepted whole or
//! rejected whole.

use std::fmt;

use base64::Engine;
use remediate_domain::model::{Access, EntityType, Kind, Property, OUTPUT_FIELD_MAX};
use remediate_domain::{Instant, Value};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;

/// A validation failure; always answered with 400 `BadRequest` and this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

fn fail<T>(message: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError(message.into()))
}

/// A decoded entity body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityBody {
    /// Supplied writable properties, by property index, in body order.
    pub fields: Vec<(usize, Value)>,
    /// Navigation bindings (`name@odata.bind`), e.g. `("managedDevice", url)`.
    pub binds: Vec<(String, String)>,
}

impl EntityBody {
    pub fn has(&self, index: usize) -> bool {
        self.fields.iter().any(|(i, _)| *i == index)
    }
}

/// The top-level members of a JSON object in order, keeping duplicates so they can be rejected.
pub struct Members(pub Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Json>()? {
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Parse a body that must be one JSON object, rejecting duplicate member names.
pub fn parse_object(bytes: &[u8]) -> Result<Vec<(String, Json)>, DecodeError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return fail("The request body is empty; a JSON object is required.");
    }
    let members: Members = match serde_json::from_slice(bytes) {
        Ok(m) => m,
        Err(e) if e.is_data() => return fail("The request body must be a JSON object."),
        Err(e) => return fail(format!("The request body is not valid JSON: {e}.")),
    };
    let mut seen = std::collections::HashSet::new();
    for (key, _) in &members.0 {
        if !seen.insert(key.as_str()) {
            return fail(format!(
                "The property '{key}' appears more than once in the request body."
            ));
        }
    }
    Ok(members.0)
}

/// Configurable validation limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum characters of each run-state output and error field (SPEC §3.2; default 64 KiB).
    pub output_field_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            output_field_chars: OUTPUT_FIELD_MAX,
        }
    }
}

/// Decode an entity body with the default limits.
pub fn decode_entity(entity: &'static EntityType, bytes: &[u8]) -> Result<EntityBody, DecodeError> {
    decode_entity_with(entity, bytes, &Limits::default())
}

/// Decode an entity body for create or update. The entity's navigation properties declared
/// bindable in the model may be set with `name@odata.bind`.
pub fn decode_entity_with(
    entity: &'static EntityType,
    bytes: &[u8],
    limits: &Limits,
) -> Result<EntityBody, DecodeError> {
    let members = parse_object(bytes)?;
    let mut body = EntityBody::default();
    // Invalid property values are all reported at once, so a client sees every problem.
    let mut invalid: Vec<String> = Vec::new();
    for (key, value) in members {
        if let Some(annotation) = key.strip_prefix('@') {
            match annotation {
                "odata.type" => {
                    let Json::String(t) = &value else {
                        return fail("The '@odata.type' annotation must be a string.");
                    };
                    if !entity.accepts_type(t) {
                        return fail(format!(
                            "The '@odata.type' value '{t}' is not valid here; expected '{}'.",
                            entity.type_annotation()
                        ));
                    }
                }
                // Echoed from responses by clients that round-trip entities; they carry no data.
                "odata.context" | "odata.etag" | "odata.id" | "odata.editLink" => {}
                _ => {
                    return fail(format!(
                        "The annotation '{key}' is not supported on a request body."
                    ))
                }
            }
            continue;
        }
        if let Some((name, annotation)) = key.split_once('@') {
            match annotation {
                "odata.bind" => {
                    if !entity.navigation(name).is_some_and(|n| n.bind) {
                        return fail(format!(
                            "'{name}' is not a navigation property of '{}' that can be bound.",
                            entity.qualified_name()
                        ));
                    }
                    let Json::String(url) = value else {
                        return fail(format!(
                            "'{key}' must be a string with the URL of the entity to bind."
                        ));
                    };
                    body.binds.push((name.to_owned(), url));
                }
                // Type annotations on properties (e.g. `roleScopeTagIds@odata.type`) are checked
                // against the declared type of the property, which is authoritative.
                "odata.type" if entity.property(name).is_some() => {
                    if !matches!(value, Json::String(_)) {
                        return fail(format!("'{key}' must be a string."));
                    }
                }
                // Echoed from an answer with `$expand` by clients that round-trip entities
                // (`assignments@odata.context`); they carry no data.
                "odata.context" | "odata.count" | "odata.nextLink"
                    if entity.navigation(name).is_some() => {}
                _ => {
                    return fail(format!(
                        "The annotation '{key}' is not supported on a request body."
                    ))
                }
            }
            continue;
        }
        let Some((index, property)) = entity.property(&key) else {
            let hint = entity
                .properties
                .iter()
                .find(|p| p.name.eq_ignore_ascii_case(&key))
                .map(|p| {
                    format!(
                        " Property names are case-sensitive: did you mean '{}'?",
                        p.name
                    )
                })
                .unwrap_or_default();
            return fail(format!(
                "The property '{key}' does not exist on type '{}'.{hint}",
                entity.qualified_name()
            ));
        };
        // Validate read-only values too (a wrong type is still a client bug), then ignore them.
        match decode_value_with(property, &value, limits) {
            Ok(value) if property.access == Access::ReadWrite => body.fields.push((index, value)),
            Ok(_) => {}
            Err(e) => invalid.push(e.0),
        }
    }
    if !invalid.is_empty() {
        return fail(invalid.join(" "));
    }
    Ok(body)
}

/// Validate one JSON value against a property's declared type.
pub fn decode_value(property: &Property, json: &Json) -> Result<Value, DecodeError> {
    decode_value_with(property, json, &Limits::default())
}

/// Validate one JSON value against a property's declared type and the limits.
pub fn decode_value_with(
    property: &Property,
    json: &Json,
    limits: &Limits,
) -> Result<Value, DecodeError> {
    let name = property.name;
    if json.is_null() {
        if property.nullable {
            return Ok(Value::Null);
        }
        return fail(format!("The property '{name}' cannot be null."));
    }
    let type_error = |expected: &str| {
        DecodeError(format!(
            "The property '{name}' must be {expected}, but the request has {}.",
            describe(json)
        ))
    };
    let value = match property.kind {
        Kind::String => {
            let Json::String(s) = json else {
                return Err(type_error("a string"));
            };
            check_length(property, s.chars().count(), limits)?;
            Value::Str(s.clone())
        }
        Kind::Binary => {
            let Json::String(s) = json else {
                return Err(type_error("a base64-encoded string (Edm.Binary)"));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
                .map_err(|e| {
                    DecodeError(format!(
                        "The property '{name}' must be base64-encoded (Edm.Binary): {e}."
                    ))
                })?;
            check_length(property, bytes.len(), limits)?;
            Value::Bin(bytes)
        }
        Kind::Boolean => Value::Bool(json.as_bool().ok_or_else(|| type_error("true or false"))?),
        Kind::Int32 => {
            let n = json
                .as_i64()
                .ok_or_else(|| type_error("an integer (Edm.Int32)"))?;
            if i32::try_from(n).is_err() {
                return fail(format!(
                    "The property '{name}' value {n} is outside the range of Edm.Int32."
                ));
            }
            Value::Int(n)
        }
        Kind::Int64 => Value::Int(
            json.as_i64()
                .ok_or_else(|| type_error("an integer (Edm.Int64)"))?,
        ),
        Kind::DateTimeOffset => {
            let Json::String(s) = json else {
                return Err(type_error(
                    "an ISO 8601 date and time with a zone offset (Edm.DateTimeOffset)",
                ));
            };
            let instant = Instant::parse(s)
                .map_err(|e| DecodeError(format!("The property '{name}' is invalid: {e}.")))?;
            Value::Time(instant)
        }
        Kind::Enum(e) => {
            let Json::String(s) = json else {
                return Err(type_error(&format!(
                    "a member of microsoft.graph.{}",
                    e.name
                )));
            };
            let v = e.value_of(s).ok_or_else(|| {
                DecodeError(format!(
                    "The property '{name}' has the value '{s}', which is not a member of microsoft.graph.{}; expected one of {}.",
                    e.name,
                    e.member_list()
                ))
            })?;
            Value::Enum(v)
        }
        Kind::StringCollection => {
            let Json::Array(items) = json else {
                return Err(type_error("an array of strings"));
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let Json::String(s) = item else {
                    return fail(format!(
                        "The property '{name}' must contain only strings; item {i} is {}.",
                        describe(item)
                    ));
                };
                check_length(property, s.chars().count(), limits)?;
                out.push(s.clone());
            }
            Value::StrList(out)
        }
        Kind::Complex(kind) => Value::Json(crate::complex::validate(kind, name, json)?),
    };
    Ok(value)
}

fn check_length(property: &Property, len: usize, limits: &Limits) -> Result<(), DecodeError> {
    let max = match property.max_len {
        Some(OUTPUT_FIELD_MAX) => Some(limits.output_field_chars),
        other => other,
    };
    match max {
        Some(max) if len > max => fail(format!(
            "The property '{}' is {len} {} long, over the limit of {max}; nothing was stored.",
            property.name,
            if matches!(property.kind, Kind::Binary) {
                "bytes"
            } else {
                "characters"
            }
        )),
        _ => Ok(()),
    }
}

/// A short description of a JSON value for error messages.
pub fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) if s.chars().count() > 40 => {
            format!("a string '{}…'", s.chars().take(40).collect::<String>())
        }
        Json::String(s) => format!("'{s}'"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remediate_domain::model::{DEVICE_HEALTH_SCRIPT, DEVICE_RUN_STATE};

    fn run_state(json: &str) -> Result<EntityBody, String> {
        decode_entity(&DEVICE_RUN_STATE, json.as_bytes()).map_err(|e| e.0)
    }

    #[test]
    fn the_seed_body_with_real_values_decodes_every_property() {
        let body = run_state(r##"{
          "@odata.type": "#microsoft.management.services.api.deviceHealthScriptDeviceState",
          "detectionState": "fail", "lastStateUpdateDateTime": "2025-03-01T10:00:00+02:00",
          "expectedStateUpdateDateTime": "2025-03-02T10:00:00Z", "lastSyncDateTime": "2025-03-01T09:00:00Z",
          "preRemediationDetectionScriptOutput": "a", "preRemediationDetectionScriptError": "b",
          "remediationScriptError": "c", "postRemediationDetectionScriptOutput": "d",
          "postRemediationDetectionScriptError": "e", "remediationState": "success"}"##)
        .unwrap();
        assert_eq!(body.fields.len(), 10);
        assert_eq!(body.fields[0], (1, Value::Enum(2)));
    }

    #[test]
    fn annotations_echoed_from_expanded_answers_are_ignored_on_navigations_only() {
        let script =
            |json: &str| decode_entity(&DEVICE_HEALTH_SCRIPT, json.as_bytes()).map_err(|e| e.0);
        let body = script(
            r#"{"displayName": "x", "assignments@odata.context": "https://h/beta/$metadata#x"}"#,
        )
        .unwrap();
        assert_eq!(body.fields.len(), 1);
        let err = script(r#"{"displayName@odata.context": "c"}"#).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
        let err = script(r#"{"assignments@odata.deltaLink": "c"}"#).unwrap_err();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn the_seed_placeholders_are_rejected_naming_the_property() {
        let err = run_state(r#"{"detectionState": "String"}"#).unwrap_err();
        assert!(
            err.contains("'detectionState'") && err.contains("'String'") && err.contains("'fail'"),
            "{err}"
        );
        let err = run_state(r#"{"lastStateUpdateDateTime": "String (timestamp)"}"#).unwrap_err();
        assert!(err.contains("'lastStateUpdateDateTime'"), "{err}");
    }

    #[test]
    fn every_kind_of_bad_input_is_named() {
        for (json, needle) in [
            (r#"{"detectionState": "Fail"}"#, "not a member"),
            (r#"{"detectionState": null}"#, "cannot be null"),
            (r#"{"detectionState": 2}"#, "must be a member"),
            (
                r#"{"lastSyncDateTime": "2025-01-01T00:00:00"}"#,
                "zone offset",
            ),
            (r#"{"bogus": 1}"#, "'bogus' does not exist"),
            (
                r#"{"DetectionState": "fail"}"#,
                "did you mean 'detectionState'",
            ),
            (
                r#"{"detectionState": "fail", "detectionState": "success"}"#,
                "more than once",
            ),
            (r#"{"remediationScriptError": 5}"#, "must be a string"),
            (r#"{"assignmentFilterIds": ["a", 1]}"#, "item 1"),
            (
                r##"{"@odata.type": "#microsoft.graph.managedDevice"}"##,
                "not valid here",
            ),
            (r#"{"device@odata.bind": "x"}"#, "not a navigation property"),
            (r#"[1,2]"#, "must be a JSON object"),
            (r#"{"a": "#, "not valid JSON"),
            ("", "empty"),
        ] {
            let err = run_state(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn every_invalid_property_is_reported_at_once() {
        let err = run_state(r#"{"detectionState": "String", "lastSyncDateTime": "String (timestamp)", "remediationState": "String"}"#)
            .unwrap_err();
        for name in [
            "'detectionState'",
            "'lastSyncDateTime'",
            "'remediationState'",
        ] {
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn outputs_over_the_limit_are_rejected_not_truncated() {
        let long = "x".repeat(64 * 1024 + 1);
        let err = run_state(&format!(r#"{{"remediationScriptError": "{long}"}}"#)).unwrap_err();
        assert!(err.contains("over the limit"), "{err}");
        let fits = "é".repeat(64 * 1024);
        assert!(run_state(&format!(r#"{{"remediationScriptError": "{fits}"}}"#)).is_ok());
    }

    #[test]
    fn read_only_properties_are_ignored_and_binds_collected() {
        let body = run_state(r#"{"id": "x", "managedDevice@odata.bind": "managedDevices('d1')"}"#)
            .unwrap();
        assert!(body.fields.is_empty());
        assert_eq!(
            body.binds,
            [(
                "managedDevice".to_owned(),
                "managedDevices('d1')".to_owned()
            )]
        );
    }

    #[test]
    fn script_content_must_be_base64() {
        let err = decode_entity(
            &DEVICE_HEALTH_SCRIPT,
            br#"{"detectionScriptContent": "not base64!"}"#,
        )
        .unwrap_err();
        assert!(err.0.contains("base64"), "{err}");
        let ok = decode_entity(
            &DEVICE_HEALTH_SCRIPT,
            br#"{"detectionScriptContent": "ZWNobyAx"}"#,
        )
        .unwrap();
        assert_eq!(ok.fields[0].1, Value::Bin(b"echo 1".to_vec()));
    }
}
