//! Validators for complex (structured) property values, which are stored as canonical JSON.

use remediate_domain::model::ComplexKind;
use serde_json::{Map, Value as Json};

use crate::decode::{describe, DecodeError};

/// Validate a complex value and return its canonical JSON text (with `#`-prefixed `@odata.type`
/// and every property present).
pub fn validate(kind: ComplexKind, property: &str, json: &Json) -> Result<String, DecodeError> {
    let canonical = match kind {
        ComplexKind::ScriptParameters => script_parameters(property, json)?,
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
}
