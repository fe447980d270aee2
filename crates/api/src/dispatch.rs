//! The dispatch table: authenticate the bearer token → parse the path into a [`Route`] → check
//! the method (405, from the collection declarations) → throttle → parse query options →
//! authorize (the declared permissions, or for a device token its declared device access, in
//! [`crate::device`]) → handle. Every route and method pair has its own arm; nothing falls through.

use http::{HeaderMap, Method, StatusCode};
use remediate_domain::collections::{
    permissions as perm, rules, Collection, CollectionId, Parent, DEVICES,
};
use remediate_domain::model::{NavId, Navigation, MANAGED_DEVICE, RUN_SUMMARY};
use remediate_store::EntityRef;
use remediate_wire::{entity_object, ErrorKind, Shape};
use serde_json::{Map, Value as Json};

use crate::auth::Principal;
use crate::ctx::{bound_device, not_found, pending_on_demand, Ctx};
use crate::device::Narrowing;
use crate::error::ApiError;
use crate::query;
use crate::respond::{ApiRequest, ApiResponse};
use crate::route::{self, Route, Verb};
use crate::urls::{enc, odata_key};
use crate::AppState;

/// Handle one `/beta` request. Boxed (and declared `Send`) because `$batch` calls it recursively.
pub fn dispatch<'a>(
    state: &'a AppState,
    req: &'a ApiRequest,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ApiResponse, ApiError>> + Send + 'a>>
{
    Box::pin(dispatch_inner(state, req))
}

fn method_not_allowed(method: &str, route: &Route) -> ApiError {
    let allow = route.allow();
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("The method '{method}' is not allowed on this resource; allowed: {allow}."),
    )
    .with_header("allow", allow)
}

async fn dispatch_inner(state: &AppState, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    // `$metadata` is public, as in Graph.
    if req.path.trim_matches('/') == "$metadata" {
        if req.method != Method::GET {
            return Err(ApiError::new(
                ErrorKind::MethodNotAllowed,
                "Only GET is allowed on $metadata.",
            )
            .with_header("allow", "GET".into()));
        }
        return Ok(crate::metadata::response());
    }
    let principal = authenticate(state, &req.headers).await?;
    dispatch_as(state, req, principal).await
}

/// Handle one `/beta` request for a caller already authenticated (by its bearer token, or by
/// the dashboard's session, `crate::dashboard`): everything after authentication is the same —
/// routing, 405, throttling, the declared permissions, body validation, the rules and the
/// store call — so a page's write is validated and refused exactly as the API's.
pub async fn dispatch_as(
    state: &AppState,
    req: &ApiRequest,
    principal: Principal,
) -> Result<ApiResponse, ApiError> {
    let route = route::parse(&req.path);
    // A check-in proves its agent's credential with its own write (`agents::check_in`).
    if !matches!(route, Ok(Route::AgentCheckIn { .. })) {
        crate::agents::check_credential(state, &principal).await?;
    }
    let route = route?;
    // Inner requests of a batch are counted one by one, not the batch itself.
    if route != Route::Batch {
        state
            .guard
            .throttle(&principal.tenant, &principal.app, req.method != Method::GET)?;
    }
    let verb = Verb::of(&req.method)
        .filter(|verb| route.verbs().contains(verb))
        .ok_or_else(|| method_not_allowed(req.method.as_str(), &route))?;
    let options = query::parse(&req.query, &state.guard.limits.odata)?;
    let ctx = Ctx {
        state,
        req,
        principal: &principal,
        options,
    };
    let narrowing = match &principal.device {
        Some(device) => crate::device::authorize(&ctx, &route, verb, device).await?,
        None => {
            if let Some(allowed) = permissions(&route, verb) {
                principal.require(allowed)?;
            }
            Narrowing::default()
        }
    };
    handle(&ctx, route, verb, narrowing).await
}

/// The permissions a route and method need (any one of them); `None`: checked by the handler
/// (operations) or none needed (`$batch`: each inner request is authorized on its own).
fn permissions(route: &Route, verb: Verb) -> Option<&'static [&'static str]> {
    match (route, verb) {
        (Route::Collection { of, .. } | Route::Item { of, .. }, Verb::Get)
        | (Route::Count { of, .. }, _) => Some(of.read_permissions),
        (
            Route::Collection { of, .. } | Route::Item { of, .. },
            Verb::Post | Verb::Patch | Verb::Delete,
        ) => Some(of.write_permissions),
        (Route::Navigation { of, nav, .. }, _) => Some(match nav.id {
            NavId::ManagedDevice | NavId::DeviceScriptStates => perm::RUN_STATE_DEVICE_READ,
            NavId::RunSummary
            | NavId::DeviceRunStates
            | NavId::Assignments
            | NavId::History
            | NavId::Members
            | NavId::MemberOf => of.read_permissions,
        }),
        (Route::PendingOnDemand { .. }, _) => Some(perm::DEVICES_READ),
        (Route::AgentCheckIn { .. }, _) => Some(perm::DEVICES_WRITE),
        (Route::Ref { of, .. }, _) => Some(of.write_permissions),
        (Route::Operation(_) | Route::Batch | Route::Metadata, _) => None,
    }
}

async fn handle(
    ctx: &Ctx<'_>,
    route: Route,
    verb: Verb,
    narrowing: Narrowing,
) -> Result<ApiResponse, ApiError> {
    let method = verb.name();
    match (route, verb) {
        (Route::Metadata, _) => Ok(crate::metadata::response()),
        (Route::Batch, _) => {
            ctx.no_options("$batch")?;
            crate::batch::run(ctx.state, ctx.req).await
        }
        (Route::Collection { of, parents }, Verb::Get) => {
            ensure_parent(ctx, of, &parents).await?;
            ctx.list_with(
                of.scope(&parents),
                of.context_path(&parents),
                narrowing.filter,
            )
            .await
        }
        // Export jobs: created with the base URL of their link, read with why they failed,
        // deleted with their file (`crate::exports`).
        (Route::Collection { of, parents }, Verb::Post) if of.id == CollectionId::ExportJobs => {
            crate::exports::create(ctx, of, parents).await
        }
        (Route::Item { of, keys }, Verb::Get) if of.id == CollectionId::ExportJobs => {
            crate::exports::item(ctx, of, &keys).await
        }
        (Route::Item { of, keys }, Verb::Delete) if of.id == CollectionId::ExportJobs => {
            crate::exports::delete(ctx, of, &keys).await
        }
        (Route::Collection { of, parents }, Verb::Post) => {
            create(ctx, of, parents, &narrowing).await
        }
        (route @ Route::Collection { .. }, Verb::Patch | Verb::Delete) => {
            Err(method_not_allowed(method, &route))
        }
        (Route::Item { of, keys }, Verb::Get) => ctx.item(of, &keys).await,
        (Route::Item { of, keys }, Verb::Patch) => {
            ctx.no_options("an update")?;
            let body = ctx.body(of.entity)?;
            let device = bound_device(&body)?;
            narrowing.check_bind(device.as_deref(), false)?;
            ctx.write(rules::update(of, &keys, body.fields, device)?)
                .await
        }
        (Route::Item { of, keys }, Verb::Delete) => {
            ctx.no_options("a delete")?;
            ctx.write(rules::delete(of, &keys)?).await
        }
        (route @ Route::Item { .. }, Verb::Post) => Err(method_not_allowed(method, &route)),
        (Route::Count { of, parents }, _) => {
            ensure_parent(ctx, of, &parents).await?;
            ctx.count(of.scope(&parents)).await
        }
        (Route::Navigation { of, keys, nav }, _) => navigation(ctx, of, keys, nav).await,
        (Route::Operation(operation), _) => {
            ctx.no_options("an action or function")?;
            crate::operations::run(ctx, operation).await
        }
        (Route::PendingOnDemand { device_id }, _) => pending_on_demand(ctx, &device_id).await,
        (Route::AgentCheckIn { device_id }, _) => crate::agents::check_in(ctx, &device_id).await,
        (Route::Ref { of, parents, item }, _) => {
            crate::directory::reference(ctx, of, parents, item).await
        }
    }
}

/// A collection two levels down (a run state's history) answers 404 when its parent item is
/// missing. Collections directly under a root item are checked by storage, which reports a
/// missing script when the page is empty (rows cannot outlive their script).
async fn ensure_parent(
    ctx: &Ctx<'_>,
    of: &'static Collection,
    parents: &[String],
) -> Result<(), ApiError> {
    let Parent::Item(parent) = of.parent else {
        return Ok(());
    };
    if matches!(parent.parent, Parent::Root(_)) {
        return Ok(());
    }
    let found = match EntityRef::of(parent, parents) {
        Some(key) => ctx.state.store.get(&ctx.principal.tenant, &key).await?,
        None => None,
    };
    match found {
        Some(_) => Ok(()),
        None => Err(not_found(parent, parents)),
    }
}

/// POST to a collection: 201 with the entity and its `Location`.
async fn create(
    ctx: &Ctx<'_>,
    of: &'static Collection,
    parents: Vec<String>,
    narrowing: &Narrowing,
) -> Result<ApiResponse, ApiError> {
    ctx.no_options("a create")?;
    let body = ctx.body(of.entity)?;
    let device = bound_device(&body)?;
    narrowing.check_bind(device.as_deref(), true)?;
    let write = rules::create(of, &parents, body.fields, device)?;
    let write = narrowing.register(ctx, write).await?;
    ctx.created(write, of.context_path(&parents), |record| {
        let mut keys = parents.clone();
        keys.push(record.id().to_owned());
        of.item_path(&keys, enc)
    })
    .await
}

/// GET of a navigation that is not a collection of its own.
async fn navigation(
    ctx: &Ctx<'_>,
    of: &'static Collection,
    keys: Vec<String>,
    nav: &'static Navigation,
) -> Result<ApiResponse, ApiError> {
    let tenant = &ctx.principal.tenant;
    let store = &ctx.state.store;
    let id = keys.last().cloned().unwrap_or_default();
    match nav.id {
        NavId::RunSummary => {
            let bound = query::bind_item(&RUN_SUMMARY, &ctx.options)?;
            let Some(summary) = store.run_summary(tenant, &id).await? else {
                return Err(ApiError::not_found(format!(
                    "The {} '{id}' does not exist.",
                    of.item_name
                )));
            };
            let context = format!(
                "{}('{}')/runSummary/$entity",
                of.context_path(&[]),
                odata_key(&id)
            );
            Ok(ctx.item_response(&summary, &bound, context, None))
        }
        NavId::ManagedDevice => {
            let bound = query::bind_item(&MANAGED_DEVICE, &ctx.options)?;
            let run_state = match EntityRef::of(of, &keys) {
                Some(key) => store.get(tenant, &key).await?,
                None => None,
            };
            let Some(run_state) = run_state else {
                return Err(not_found(of, &keys));
            };
            let Some(device_id) = run_state.device_id else {
                return Err(ApiError::not_found(format!(
                    "No managedDevice is bound to the {} '{id}'.",
                    of.item_name
                )));
            };
            let Some(device) = store
                .get(tenant, &EntityRef::Device(device_id.clone()))
                .await?
            else {
                return Err(ApiError::not_found(format!(
                    "The managedDevice '{device_id}' bound to this {} no longer exists.",
                    of.item_name
                )));
            };
            Ok(ctx.item_response(
                &device,
                &bound,
                format!("{}/$entity", DEVICES.context_path(&[])),
                None,
            ))
        }
        NavId::DeviceScriptStates => {
            ctx.no_options("deviceHealthScriptStates")?;
            let Some(states) = store.device_script_states(tenant, &id).await? else {
                return Err(ApiError::not_found(format!(
                    "The {} '{id}' does not exist.",
                    of.item_name
                )));
            };
            let mut object = Map::new();
            object.insert(
                "@odata.context".into(),
                ctx.context(&format!(
                    "{}('{}')/deviceHealthScriptStates",
                    of.context_path(&[]),
                    odata_key(&id)
                )),
            );
            let items = states
                .iter()
                .map(|r| Json::Object(entity_object(r, None, Shape::Item)))
                .collect();
            object.insert("value".into(), Json::Array(items));
            Ok(ApiResponse::json(StatusCode::OK, object))
        }
        // Contained collections are routed as collections, never as navigations.
        NavId::DeviceRunStates
        | NavId::Assignments
        | NavId::History
        | NavId::Members
        | NavId::MemberOf => Err(ApiError::bad_request(format!(
            "'{}' is a collection.",
            nav.name
        ))),
    }
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthenticated(
            "Access token is empty: send 'Authorization: Bearer <token>'.",
        ));
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("The Authorization header is not valid text."))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated("The Authorization header must be 'Bearer <token>'.")
        })?;
    state.auth.verify(token).await
}
