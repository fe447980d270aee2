//! Bound actions and functions (SPEC §2, `graph-api.md` §4.3 and §4.7). Statuses as Graph
//! answers them: functions and `getGlobalScriptHighestAvailableVersion` 200 with their value,
//! `assign` 200 with the new assignment set (docs/decisions.md), `enableGlobalScripts` and
//! `initiateOnDemandProactiveRemediation` 204.

use http::StatusCode;
use remediate_domain::model::{DEVICE_HEALTH_SCRIPT_ASSIGNMENT, GLOBAL_SCRIPT_STATE};
use remediate_domain::ops;
use remediate_domain::write::Write;
use remediate_domain::Value;
use remediate_store::EntityRef;
use remediate_wire::{entity_object, Shape};
use serde_json::{json, Map, Value as Json};

use crate::ctx::{check_json_content_type, Ctx};
use crate::error::ApiError;
use crate::respond::ApiResponse;
use crate::route::Operation;
use remediate_domain::collections::permissions as perm;

/// The parameters of an action: a JSON object whose members are exactly `allowed` (an empty body
/// is an empty object).
fn parameters(ctx: &Ctx<'_>, allowed: &[&str]) -> Result<Map<String, Json>, ApiError> {
    if ctx.req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    check_json_content_type(&ctx.req.headers)?;
    let members = remediate_wire::decode::parse_object(&ctx.req.body)?;
    let mut map = Map::new();
    for (key, value) in members {
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::bad_request(if allowed.is_empty() {
                format!("This action takes no parameters, but the body has '{key}'.")
            } else {
                format!(
                    "'{key}' is not a parameter of this action; expected: {}.",
                    allowed.join(", ")
                )
            }));
        }
        map.insert(key, value);
    }
    Ok(map)
}

fn value_response(ctx: &Ctx<'_>, context: &str, value: Json) -> ApiResponse {
    let mut object = Map::new();
    object.insert("@odata.context".into(), ctx.context(context));
    object.insert("value".into(), value);
    ApiResponse::json(StatusCode::OK, object)
}

/// A complex function result. SPEC §2 (and Microsoft's docs) show it wrapped in `value`; OData
/// and the generated SDKs read it unwrapped. Both are served: the properties at the top level and
/// the same object under `value`, so either reader gets the data.
fn complex_response(ctx: &Ctx<'_>, context: &str, value: Json) -> ApiResponse {
    let mut object = Map::new();
    object.insert("@odata.context".into(), ctx.context(context));
    if let Json::Object(members) = &value {
        for (key, member) in members {
            object.insert(key.clone(), member.clone());
        }
    }
    object.insert("value".into(), value);
    ApiResponse::json(StatusCode::OK, object)
}

pub(crate) async fn run(ctx: &Ctx<'_>, operation: Operation) -> Result<ApiResponse, ApiError> {
    let tenant = &ctx.principal.tenant;
    let store = &ctx.state.store;
    match operation {
        Operation::Assign { script_id } => {
            ctx.principal.require(perm::SCRIPTS_WRITE)?;
            let params = parameters(ctx, &["deviceHealthScriptAssignments"])?;
            let Some(Json::Array(items)) = params.get("deviceHealthScriptAssignments") else {
                return Err(ApiError::bad_request(
                    "The body must be {\"deviceHealthScriptAssignments\": [ … ]} with an array (empty to remove every assignment).",
                ));
            };
            let mut decoded = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let bytes = serde_json::to_vec(item).unwrap_or_default();
                let body = remediate_wire::decode_entity_with(
                    &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
                    &bytes,
                    &ctx.state.config.limits,
                )
                .map_err(|e| {
                    ApiError::bad_request(format!("deviceHealthScriptAssignments[{i}]: {}", e.0))
                })?;
                decoded.push(body.fields);
            }
            let write = ops::assign(&script_id, decoded)?;
            // 200 with the new set, as a list of the script's assignments shows it (the records
            // are stored exactly as built; encoded before the write so none is copied).
            let Write::Assign { records, .. } = &write else {
                return Err(ApiError::new(
                    remediate_wire::ErrorKind::Internal,
                    "The assign action did not build an assignment set.",
                ));
            };
            let value = records
                .iter()
                .map(|r| Json::Object(entity_object(r, None, Shape::Item)))
                .collect();
            store.write(tenant, write).await?;
            Ok(value_response(
                ctx,
                "Collection(microsoft.graph.deviceHealthScriptAssignment)",
                Json::Array(value),
            ))
        }
        Operation::GetRemediationHistory { script_id } => {
            ctx.principal.require(perm::SCRIPTS_READ)?;
            let Some(history) = store.remediation_history(tenant, &script_id).await? else {
                return Err(ApiError::not_found(format!(
                    "The deviceHealthScript '{script_id}' does not exist."
                )));
            };
            let data: Vec<Json> = history
                .days
                .iter()
                .map(|d| {
                    json!({
                        "date": d.date,
                        "remediatedDeviceCount": d.remediated,
                        "noIssueDeviceCount": d.no_issue,
                        "detectFailedDeviceCount": d.detect_failed,
                    })
                })
                .collect();
            let value = json!({
                "@odata.type": "#microsoft.graph.deviceHealthScriptRemediationHistory",
                "lastModifiedDateTime": history.last_modified.map(|t| t.to_string()),
                "historyData": data,
            });
            Ok(complex_response(
                ctx,
                "microsoft.graph.deviceHealthScriptRemediationHistory",
                value,
            ))
        }
        Operation::GetRemediationSummary => {
            ctx.principal.require(perm::SCRIPTS_READ)?;
            let (scripts, remediated) = store.remediation_summary(tenant).await?;
            let value = json!({
                "@odata.type": "#microsoft.graph.deviceHealthScriptRemediationSummary",
                "scriptCount": scripts,
                "remediatedDeviceCount": remediated,
            });
            Ok(complex_response(
                ctx,
                "microsoft.graph.deviceHealthScriptRemediationSummary",
                value,
            ))
        }
        Operation::AreGlobalScriptsAvailable => {
            ctx.principal.require(perm::SCRIPTS_READ)?;
            let state = store.global_scripts_state(tenant).await?;
            let name = GLOBAL_SCRIPT_STATE
                .name_of(state)
                .unwrap_or("notConfigured");
            Ok(value_response(
                ctx,
                "microsoft.graph.globalDeviceHealthScriptState",
                Json::String(name.to_owned()),
            ))
        }
        Operation::EnableGlobalScripts => {
            ctx.principal.require(perm::SCRIPTS_WRITE)?;
            parameters(ctx, &[])?;
            let enabled = GLOBAL_SCRIPT_STATE.value_of("enabled").unwrap_or(2);
            ctx.write(Write::SetGlobalScriptsState { state: enabled })
                .await
        }
        Operation::GetGlobalScriptHighestAvailableVersion { script_id } => {
            ctx.principal.require(perm::SCRIPTS_WRITE)?;
            parameters(ctx, &[])?;
            let Some(script) = store
                .get(tenant, &EntityRef::Script(script_id.clone()))
                .await?
            else {
                return Err(ApiError::not_found(format!(
                    "The deviceHealthScript '{script_id}' does not exist."
                )));
            };
            // remediate serves no Microsoft-authored scripts: the stored value (null for custom scripts).
            let value = match script.get("highestAvailableVersion") {
                Value::Str(v) => Json::String(v.clone()),
                _ => Json::Null,
            };
            Ok(value_response(ctx, "Edm.String", value))
        }
        Operation::UpdateGlobalScript { script_id } => {
            ctx.principal.require(perm::SCRIPTS_WRITE)?;
            let params = parameters(ctx, &["version"])?;
            let Some(Json::String(version)) = params.get("version") else {
                return Err(ApiError::bad_request(
                    "The parameter 'version' is required and must be a string.",
                ));
            };
            let Some(script) = store
                .get(tenant, &EntityRef::Script(script_id.clone()))
                .await?
            else {
                return Err(ApiError::not_found(format!(
                    "The deviceHealthScript '{script_id}' does not exist."
                )));
            };
            if script.get("isGlobalScript") != &Value::Bool(true) {
                return Err(ApiError::bad_request(format!(
                    "The deviceHealthScript '{script_id}' is not a global script; only Microsoft-authored global scripts can be updated to version '{version}', and remediate serves none."
                )));
            }
            Err(ApiError::bad_request(format!(
                "The version '{version}' is not available."
            )))
        }
        Operation::InitiateOnDemandProactiveRemediation { device_id } => {
            ctx.principal.require(perm::PRIVILEGED_OPERATIONS)?;
            let params = parameters(ctx, &["scriptPolicyId"])?;
            let script_id = match params.get("scriptPolicyId") {
                Some(Json::String(id)) if !id.trim().is_empty() => id.clone(),
                _ => return Err(ApiError::bad_request(
                    "The parameter 'scriptPolicyId' is required and must be a non-empty string.",
                )),
            };
            ctx.write(Write::RequestOnDemand {
                device_id,
                script_id,
            })
            .await
        }
        Operation::ValidateFilter => crate::directory::validate_filter(ctx).await,
    }
}
