//! Directory requests that are neither collections nor items: adding and removing a group's
//! members through `$ref` (`POST groups/{id}/members/$ref` with an `@odata.id`, `DELETE
//! groups/{id}/members/{memberId}/$ref`), and `assignmentFilters/validateFilter`.

use http::StatusCode;
use remediate_domain::collections::{permissions as perm, Collection};
use remediate_domain::model::ASSIGNMENT_FILTER;
use remediate_domain::rule::{self, Dialect};
use remediate_domain::write::Write;
use remediate_domain::Value;
use serde_json::{Map, Value as Json};

use crate::ctx::{check_json_content_type, Ctx};
use crate::error::ApiError;
use crate::respond::ApiResponse;

/// `POST …/$ref` (item `None`, the body names it) or `DELETE …/{id}/$ref`.
pub(crate) async fn reference(
    ctx: &Ctx<'_>,
    of: &'static Collection,
    parents: Vec<String>,
    item: Option<String>,
) -> Result<ApiResponse, ApiError> {
    ctx.no_options("a reference")?;
    let parent = parents.last().cloned().unwrap_or_default();
    let write = match item {
        Some(item) => Write::RemoveReference { of, parent, item },
        None => {
            check_json_content_type(&ctx.req.headers)?;
            let members = remediate_wire::decode::parse_object(&ctx.req.body)?;
            let mut target = None;
            for (key, value) in members {
                match (key.as_str(), value) {
                    ("@odata.id", Json::String(url)) => target = Some(url),
                    ("@odata.id", _) => {
                        return Err(ApiError::bad_request("'@odata.id' must be a string URL."))
                    }
                    (other, _) => {
                        return Err(ApiError::bad_request(format!(
                            "A reference body holds only '@odata.id'; '{other}' is not allowed."
                        )))
                    }
                }
            }
            let Some(url) = target else {
                return Err(ApiError::bad_request(
                    "The body must be {\"@odata.id\": \"https://graph.microsoft.com/beta/directoryObjects/{id}\"}.",
                ));
            };
            Write::AddReference {
                of,
                parent,
                item: referenced_id(&url)?,
            }
        }
    };
    ctx.state.store.write(&ctx.principal.tenant, write).await?;
    Ok(ApiResponse::no_content())
}

/// The object id an `@odata.id` names: `…/directoryObjects/{id}`, `…/devices/{id}` or the
/// key forms `directoryObjects('{id}')`, absolute (any host) or relative.
pub(crate) fn referenced_id(url: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "'@odata.id' must be the URL of a directory object, e.g. 'https://graph.microsoft.com/beta/directoryObjects/{{id}}'; got '{url}'."
        ))
    };
    let path = crate::urls::url_path(url);
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let kinds = ["directoryObjects", "devices"];
    let (last, rest) = segments.split_last().ok_or_else(bad)?;
    let id = if let Some(kind) = kinds.iter().find(|k| last.starts_with(&format!("{k}("))) {
        let inner = &last[kind.len() + 1..];
        let inner = inner.strip_suffix(')').ok_or_else(bad)?;
        inner.trim_matches('\'').replace("''", "'")
    } else if rest.last().is_some_and(|k| kinds.contains(&k.as_str())) {
        last.clone()
    } else {
        return Err(bad());
    };
    if id.is_empty() || id.len() > 512 {
        return Err(bad());
    }
    Ok(id)
}

/// `POST deviceManagement/assignmentFilters/validateFilter`: is the rule of the given filter
/// valid? Answers `assignmentFilterValidationResult` (`isValidRule`).
pub(crate) async fn validate_filter(ctx: &Ctx<'_>) -> Result<ApiResponse, ApiError> {
    ctx.principal.require(perm::FILTERS_WRITE)?;
    check_json_content_type(&ctx.req.headers)?;
    let members = remediate_wire::decode::parse_object(&ctx.req.body)?;
    let mut filter = None;
    for (key, value) in members {
        match key.as_str() {
            "deviceAndAppManagementAssignmentFilter" => filter = Some(value),
            other => {
                return Err(ApiError::bad_request(format!(
                    "'{other}' is not a parameter of validateFilter; expected: deviceAndAppManagementAssignmentFilter."
                )))
            }
        }
    }
    let Some(filter @ Json::Object(_)) = filter else {
        return Err(ApiError::bad_request(
            "The body must be {\"deviceAndAppManagementAssignmentFilter\": {\"rule\": \"…\", …}}.",
        ));
    };
    // The filter is decoded as one (every property checked for its type), then its rule judged.
    let bytes = serde_json::to_vec(&filter).unwrap_or_default();
    let body =
        remediate_wire::decode_entity_with(&ASSIGNMENT_FILTER, &bytes, &ctx.state.config.limits)?;
    let rule_index = ASSIGNMENT_FILTER.index("rule");
    let valid = match body.fields.iter().find(|(i, _)| *i == rule_index) {
        Some((_, Value::Str(text))) => rule::parse(text, Dialect::Filter).is_ok(),
        _ => {
            return Err(ApiError::bad_request(
                "The filter to validate needs its 'rule' (a string).",
            ))
        }
    };
    let mut object = Map::new();
    object.insert(
        "@odata.context".into(),
        ctx.context("microsoft.graph.assignmentFilterValidationResult"),
    );
    object.insert("isValidRule".into(), Json::Bool(valid));
    Ok(ApiResponse::json(StatusCode::OK, object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_in_every_common_form() {
        for url in [
            "https://graph.microsoft.com/v1.0/directoryObjects/d1",
            "https://graph.microsoft.com/beta/devices/d1",
            "http://127.0.0.1:8080/beta/directoryObjects('d1')",
            "directoryObjects/d1",
        ] {
            assert_eq!(referenced_id(url).unwrap(), "d1", "{url}");
        }
        for url in ["", "https://x/beta/groups/d1", "d1", "directoryObjects"] {
            assert!(referenced_id(url).is_err(), "{url}");
        }
    }
}
