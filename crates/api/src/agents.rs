//! The endpoints of device agents (SPEC §7) that are not Graph's: enrolling with a secret
//! (`POST /agent/enroll`, no token), exchanging the device credential for a short-lived device
//! token (`POST /agent/token`, no token), and the check-in (`POST /beta/deviceManagement/
//! managedDevices/{id}/agentCheckIn`, device token) that tells an agent its scripts in one small
//! answer. A token from `/agent/token` stops working within a minute of its device's deletion:
//! the dispatcher checks, at most [`RECHECK`] apart, that the credential still exists.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant as Clock};

use http::StatusCode;
use remediate_domain::agents::{enrolled_device, hash_secret, new_secret};
use remediate_domain::collections::SCRIPTS;
use remediate_domain::directory;
use remediate_domain::model::MANAGED_DEVICE;
use remediate_domain::write::{Write, WriteOutcome};
use remediate_domain::{Instant, Value};
use serde_json::{json, Map, Value as Json};

use crate::auth::{local_claims, Principal};
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::respond::ApiResponse;
use crate::AppState;
use remediate_wire::ErrorKind;

/// How long a device token from `/agent/token` lives.
pub const AGENT_TOKEN_SECONDS: u64 = 600;
/// How long a credential, once seen, is trusted without looking again.
pub const RECHECK: Duration = Duration::from_secs(60);

/// When each (tenant, device) credential was last seen to exist.
#[derive(Default)]
pub struct CredentialCache {
    seen: Mutex<HashMap<(String, String), Clock>>,
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Unauthenticated, message)
        .with_header("www-authenticate", "Bearer".into())
}

/// 401 when an agent's token speaks for a device whose credential is gone.
pub(crate) async fn check_credential(
    state: &AppState,
    principal: &Principal,
) -> Result<(), ApiError> {
    let Some(device) = principal.device.as_ref().filter(|_| principal.agent) else {
        return Ok(());
    };
    let key = (principal.tenant.clone(), device.clone());
    let fresh = {
        let seen = state
            .credentials
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        seen.get(&key).is_some_and(|at| at.elapsed() < RECHECK)
    };
    if fresh {
        return Ok(());
    }
    if state
        .store
        .credential_hash(&principal.tenant, device)
        .await?
        .is_none()
    {
        return Err(revoked(device));
    }
    credential_seen(state, &principal.tenant, device);
    Ok(())
}

fn revoked(device: &str) -> ApiError {
    unauthorized(format!(
        "The credential of device '{device}' was revoked (the managed device was deleted); enroll again."
    ))
}

/// The credential of `device` was just seen to exist.
fn credential_seen(state: &AppState, tenant: &str, device: &str) {
    let mut seen = state
        .credentials
        .seen
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.len() > 1_000_000 {
        seen.retain(|_, at| at.elapsed() < RECHECK);
    }
    seen.insert((tenant.to_owned(), device.to_owned()), Clock::now());
}

fn body_object(body: &[u8]) -> Result<Map<String, Json>, ApiError> {
    let members = remediate_wire::decode::parse_object(body)?;
    Ok(members.into_iter().collect())
}

fn string(object: &Map<String, Json>, name: &str) -> Result<Option<String>, ApiError> {
    match object.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if !s.is_empty() && s.len() <= 512 => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!(
            "'{name}' must be a non-empty string of at most 512 characters."
        ))),
    }
}

/// `POST /agent/enroll` `{"secret", "device": {managedDevice properties}, "deviceId"?, "credential"?}`:
/// registers the machine (or, with a valid credential, updates the device it already is) and
/// answers `{"tenantId", "deviceId", "credential"}`.
pub async fn enroll(state: &AppState, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let object = body_object(body)?;
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "secret" | "device" | "deviceId" | "credential"
        ) {
            return Err(ApiError::bad_request(format!(
                "'{key}' is not a member of an enrollment; expected secret, device, deviceId, credential."
            )));
        }
    }
    let Some(secret) = string(&object, "secret")? else {
        return Err(ApiError::bad_request("The enrollment needs its 'secret'."));
    };
    let device = match object.get("device") {
        Some(d @ Json::Object(_)) => serde_json::to_vec(d).unwrap_or_default(),
        None => b"{}".to_vec(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "'device' must be an object of managedDevice properties.",
            ))
        }
    };
    let decoded =
        remediate_wire::decode_entity_with(&MANAGED_DEVICE, &device, &state.config.limits)?;
    let secret_hash = hash_secret(&secret);
    let invalid = "The enrollment secret is not valid: it is unknown, revoked, expired or used up.";
    let Some(tenant) = state.store.secret_tenant(&secret_hash).await? else {
        return Err(unauthorized(invalid));
    };
    let existing = match (string(&object, "deviceId")?, string(&object, "credential")?) {
        (Some(id), Some(credential)) => Some((id, hash_secret(&credential), credential)),
        _ => None,
    };
    let credential = match &existing {
        Some((_, _, credential)) => credential.clone(),
        None => new_secret(),
    };
    let write = Write::Enroll {
        secret_hash,
        device: enrolled_device(decoded.fields),
        credential_hash: hash_secret(&credential),
        existing: existing.map(|(id, hash, _)| (id, hash)),
    };
    let record = match state.store.write(&tenant, write).await {
        Ok(WriteOutcome::Created(record)) => record,
        Ok(_) => {
            return Err(ApiError::new(
                ErrorKind::Internal,
                "The enrollment returned no device.",
            ))
        }
        Err(remediate_store::StoreError::InvalidReference(m)) if m == invalid => {
            return Err(unauthorized(invalid))
        }
        Err(e) => return Err(e.into()),
    };
    // With a credential that did not match, the agent became a new device whose credential is
    // the one it sent (stored hashed for it): the answer names the device it now is.
    Ok(ApiResponse::json(
        StatusCode::OK,
        json!({"tenantId": tenant, "deviceId": record.id(), "credential": credential})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    ))
}

/// `POST /agent/token` `{"tenantId", "deviceId", "credential"}` → a device token.
pub async fn token(state: &AppState, body: &[u8]) -> Result<ApiResponse, ApiError> {
    let object = body_object(body)?;
    let (Some(tenant), Some(device), Some(credential)) = (
        string(&object, "tenantId")?,
        string(&object, "deviceId")?,
        string(&object, "credential")?,
    ) else {
        return Err(ApiError::bad_request(
            "The exchange needs 'tenantId', 'deviceId' and 'credential'.",
        ));
    };
    let stored = state.store.credential_hash(&tenant, &device).await?;
    let given = hash_secret(&credential);
    // Digests are compared (not secrets): timing reveals nothing about the credential.
    let matches = stored.is_some_and(|h| h == given);
    if !matches {
        return Err(unauthorized(format!(
            "The credential of device '{device}' is not valid (revoked when the device was deleted); enroll again."
        )));
    }
    let mut claims = local_claims(&tenant, &[], &[], AGENT_TOKEN_SECONDS);
    claims.sub = device.clone();
    claims.appid = Some("remediate-agent".into());
    claims.deviceid = Some(device);
    claims.agent = true;
    let token = state
        .auth
        .local
        .mint(&claims)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("cannot sign a token: {e}")))?;
    Ok(ApiResponse::json(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": AGENT_TOKEN_SECONDS, "access_token": token})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    ))
}

/// `POST …/managedDevices/{id}/agentCheckIn` `{"etag"?}`: records the sync, and answers the
/// scripts assigned to the device — each with the assignment that applies (schedule, whether to
/// remediate) and its version — plus pending on-demand runs; `"changed": false` and no list when
/// the agent's `etag` is current.
pub(crate) async fn check_in(ctx: &Ctx<'_>, device_id: &str) -> Result<ApiResponse, ApiError> {
    ctx.no_options("agentCheckIn")?;
    let object = if ctx.req.body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        body_object(&ctx.req.body)?
    };
    let known = string(&object, "etag")?;
    let tenant = &ctx.principal.tenant;
    let store = &ctx.state.store;
    // An agent's token: the check-in's own write proves the credential still exists (the
    // dispatcher skips its separate re-check for this route).
    let agent = ctx.principal.agent;
    let write = Write::CheckIn {
        device_id: device_id.to_owned(),
        at: Instant::now(),
        credential: agent,
    };
    match store.write(tenant, write).await {
        Ok(_) => {}
        Err(remediate_store::StoreError::NotFound(_)) if agent => {
            return Err(revoked(device_id));
        }
        Err(e) => return Err(e.into()),
    }
    if agent {
        credential_seen(ctx.state, tenant, device_id);
    }
    let Some(view) = store.check_in_view(tenant, device_id).await? else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("The managedDevice '{device_id}' does not exist."),
        ));
    };
    let mut targeting = view.targeting;
    targeting
        .groups
        .extend(ctx.principal.groups.iter().cloned());
    let mut scripts = Vec::new();
    // Assignments come grouped by script, in assignment id order: the first one that includes
    // the device decides the schedule; an exclusion of the same script hides it.
    for group in view.assignments.chunk_by(|a, b| a.0.parent == b.0.parent) {
        let targets: Vec<(String, String)> = group
            .iter()
            .filter_map(|(a, _)| match a.get("target") {
                Value::Json(t) => Some((String::new(), t.clone())),
                _ => None,
            })
            .collect();
        let script_visible = !directory::visible_scripts(&targets, &targeting).is_empty();
        if !script_visible {
            continue;
        }
        let applies = group.iter().find(|(a, _)| match a.get("target") {
            Value::Json(t) => {
                !directory::visible_scripts(&[(a.id().to_owned(), t.clone())], &targeting)
                    .is_empty()
            }
            _ => false,
        });
        let Some((assignment, script)) = applies else {
            continue;
        };
        let id = script.id();
        let json_of = |v: &Value| match v {
            Value::Json(t) => serde_json::from_str(t).unwrap_or(Json::Null),
            _ => Json::Null,
        };
        let text = |name: &str| match script.get(name) {
            Value::Str(s) => Json::String(s.clone()),
            _ => Json::Null,
        };
        scripts.push(json!({
            "id": id,
            "version": text("version"),
            "displayName": text("displayName"),
            "lastModifiedDateTime": remediate_wire::encode::value_json(
                &SCRIPTS.entity.properties[SCRIPTS.entity.index("lastModifiedDateTime")],
                script.get("lastModifiedDateTime")),
            "runAsAccount": remediate_wire::encode::value_json(
                &SCRIPTS.entity.properties[SCRIPTS.entity.index("runAsAccount")],
                script.get("runAsAccount")),
            "enforceSignatureCheck": script.get("enforceSignatureCheck") == &Value::Bool(true),
            "assignmentId": assignment.id(),
            "runRemediationScript": assignment.get("runRemediationScript") == &Value::Bool(true),
            "runSchedule": json_of(assignment.get("runSchedule")),
        }));
    }
    let pending: Vec<Json> = view
        .pending_on_demand
        .into_iter()
        .map(Json::String)
        .collect();
    let listing = Json::Array(scripts);
    let etag = remediate_domain::agents::hash_secret(&listing.to_string());
    let mut answer = Map::new();
    answer.insert("etag".into(), Json::String(etag.clone()));
    answer.insert(
        "changed".into(),
        Json::Bool(known.as_deref() != Some(etag.as_str())),
    );
    if known.as_deref() != Some(etag.as_str()) {
        answer.insert("scripts".into(), listing);
    }
    answer.insert("pendingOnDemand".into(), Json::Array(pending));
    Ok(ApiResponse::json(StatusCode::OK, answer))
}
