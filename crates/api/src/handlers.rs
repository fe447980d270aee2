//! Request handling: authenticate, route, authorize, parse and validate, call storage, shape
//! the Graph response. Handlers are thin; rules live in `domain`, JSON in `wire`, SQL in `store`.

use http::{HeaderMap, Method, StatusCode};
use remediate_domain::model::{
    EntityType, DEVICE_HEALTH_SCRIPT, DEVICE_HEALTH_SCRIPT_ASSIGNMENT, DEVICE_RUN_STATE,
    MANAGED_DEVICE, RUN_SUMMARY,
};
use remediate_domain::ops;
use remediate_domain::query::{Filter, ListQuery, Scope};
use remediate_domain::write::Write;
use remediate_domain::Record;
use remediate_store::EntityRef;
use remediate_wire::{decode_entity_with, entity_object, RecordJson, Shape};
use serde_json::{Map, Value as Json};

use crate::auth::{permissions as perm, Principal};
use crate::error::ApiError;
use crate::query::{self, Bound, DEFAULT_TOP};
use crate::respond::ApiResponse;
use crate::route::{self, Route};
use crate::AppState;

/// One request to `/beta`, independent of the HTTP server (also built from `$batch` items).
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// Path after `/beta/`, still percent-encoded.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// Absolute base for links, e.g. `http://127.0.0.1:8080/beta`.
    pub base_url: String,
}

/// Handle one `/beta` request. Boxed (and declared `Send`) because `$batch` calls it recursively.
pub fn dispatch<'a>(
    state: &'a AppState,
    req: &'a ApiRequest,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ApiResponse, ApiError>> + Send + 'a>>
{
    Box::pin(dispatch_inner(state, req))
}

async fn dispatch_inner(state: &AppState, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    // `$metadata` is public, as in Graph.
    if req.path.trim_matches('/') == "$metadata" {
        if req.method != Method::GET {
            return Err(ApiError::new(
                remediate_wire::ErrorKind::MethodNotAllowed,
                "Only GET is allowed on $metadata.",
            )
            .with_header("allow", "GET".into()));
        }
        return Ok(crate::metadata::response());
    }
    let principal = authenticate(state, &req.headers).await?;
    let route = route::parse(&req.path)?;
    // Inner requests of a batch are counted one by one, not the batch itself.
    if route != Route::Batch {
        state
            .guard
            .throttle(&principal.tenant, &principal.app, req.method != Method::GET)?;
    }
    if !route.methods().contains(&req.method.as_str()) {
        return Err(ApiError::new(
            remediate_wire::ErrorKind::MethodNotAllowed,
            format!(
                "The method '{}' is not allowed on this resource; allowed: {}.",
                req.method,
                route.methods().join(", ")
            ),
        )
        .with_header("allow", route.methods().join(", ")));
    }
    let options = query::parse(&req.query, &state.guard.limits.odata)?;
    let ctx = Ctx {
        state,
        req,
        principal: &principal,
        options,
    };
    if let Some(device) = &principal.device {
        return crate::device::dispatch(&ctx, route, device).await;
    }
    match (route, &req.method) {
        (Route::Metadata, _) => Ok(crate::metadata::response()),
        (Route::Batch, _) => {
            ctx.no_options("$batch")?;
            crate::batch::run(state, req).await
        }
        (Route::Assignments { script_id }, &Method::GET) => {
            principal.require(perm::SCRIPTS_READ)?;
            let context = assignments_context(&script_id);
            ctx.list(Scope::Assignments { script_id }, context).await
        }
        (Route::Assignments { script_id }, _) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("a create")?;
            let body = ctx.body(&DEVICE_HEALTH_SCRIPT_ASSIGNMENT)?;
            let write = ops::create_assignment(&script_id, body.fields)?;
            ctx.created(write, assignments_context(&script_id), |r| {
                format!(
                    "deviceManagement/deviceHealthScripts/{}/assignments/{}",
                    enc(&script_id),
                    enc(r.id())
                )
            })
            .await
        }
        (Route::Assignment { script_id, id }, &Method::GET) => {
            principal.require(perm::SCRIPTS_READ)?;
            let context = format!("{}/$entity", assignments_context(&script_id));
            ctx.item(
                &DEVICE_HEALTH_SCRIPT_ASSIGNMENT,
                EntityRef::Assignment { script_id, id },
                context,
            )
            .await
        }
        (Route::Assignment { script_id, id }, &Method::PATCH) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("an update")?;
            let body = ctx.body(&DEVICE_HEALTH_SCRIPT_ASSIGNMENT)?;
            ctx.write(ops::update_assignment(script_id, id, body.fields)?)
                .await
        }
        (Route::Assignment { script_id, id }, _) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("a delete")?;
            ctx.write(Write::DeleteAssignment { script_id, id }).await
        }
        (Route::RunSummary { script_id }, _) => {
            principal.require(perm::SCRIPTS_READ)?;
            let bound = query::bind_item(&RUN_SUMMARY, &ctx.options)?;
            let Some(summary) = state
                .store
                .run_summary(&principal.tenant, &script_id)
                .await?
            else {
                return Err(ApiError::not_found(format!(
                    "The deviceHealthScript '{script_id}' does not exist."
                )));
            };
            let context = format!(
                "deviceManagement/deviceHealthScripts('{}')/runSummary/$entity",
                odata_key(&script_id)
            );
            Ok(ctx.item_response(&summary, &bound, context, None))
        }
        (
            Route::History {
                script_id,
                state_id,
            },
            _,
        ) => {
            principal.require(perm::SCRIPTS_READ)?;
            let key = EntityRef::RunState {
                script_id: script_id.clone(),
                id: state_id.clone(),
            };
            if state.store.get(&principal.tenant, &key).await?.is_none() {
                return Err(ApiError::not_found(format!(
                    "The deviceRunState '{state_id}' does not exist in deviceHealthScript '{script_id}'."
                )));
            }
            let context = format!(
                "deviceManagement/deviceHealthScripts('{}')/deviceRunStates('{}')/history",
                odata_key(&script_id),
                odata_key(&state_id)
            );
            ctx.list(
                Scope::History {
                    script_id,
                    state_id,
                },
                context,
            )
            .await
        }
        (Route::DeviceScriptStates { device_id }, _) => {
            principal.require(perm::RUN_STATE_DEVICE_READ)?;
            ctx.no_options("deviceHealthScriptStates")?;
            let Some(states) = state
                .store
                .device_script_states(&principal.tenant, &device_id)
                .await?
            else {
                return Err(ApiError::not_found(format!(
                    "The managedDevice '{device_id}' does not exist."
                )));
            };
            let mut object = Map::new();
            object.insert(
                "@odata.context".into(),
                ctx.context(&format!(
                    "deviceManagement/managedDevices('{}')/deviceHealthScriptStates",
                    odata_key(&device_id)
                )),
            );
            let items = states
                .iter()
                .map(|r| Json::Object(entity_object(r, None, Shape::Item)))
                .collect();
            object.insert("value".into(), Json::Array(items));
            Ok(ApiResponse::json(StatusCode::OK, object))
        }
        (Route::PendingOnDemand { device_id }, _) => {
            principal.require(perm::DEVICES_READ)?;
            pending_on_demand(&ctx, &device_id).await
        }
        (Route::Operation(operation), _) => {
            ctx.no_options("an action or function")?;
            crate::operations::run(&ctx, operation).await
        }
        (Route::Scripts, &Method::GET) => {
            principal.require(perm::SCRIPTS_READ)?;
            ctx.list(
                Scope::Scripts,
                "deviceManagement/deviceHealthScripts".into(),
            )
            .await
        }
        (Route::Scripts, _) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("a create")?;
            let body = ctx.body(&DEVICE_HEALTH_SCRIPT)?;
            let write = ops::create_script(body.fields)?;
            ctx.created(write, "deviceManagement/deviceHealthScripts".into(), |r| {
                format!("deviceManagement/deviceHealthScripts/{}", enc(r.id()))
            })
            .await
        }
        (Route::Script(id), &Method::GET) => {
            principal.require(perm::SCRIPTS_READ)?;
            ctx.item(
                &DEVICE_HEALTH_SCRIPT,
                EntityRef::Script(id),
                "deviceManagement/deviceHealthScripts/$entity".into(),
            )
            .await
        }
        (Route::Script(id), &Method::PATCH) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("an update")?;
            let body = ctx.body(&DEVICE_HEALTH_SCRIPT)?;
            ctx.write(ops::update_script(id, body.fields)?).await
        }
        (Route::Script(id), _) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("a delete")?;
            ctx.write(Write::DeleteScript { id }).await
        }
        (Route::RunStates { script_id }, &Method::GET) => {
            principal.require(perm::SCRIPTS_READ)?;
            let context = run_states_context(&script_id);
            ctx.list(Scope::RunStates { script_id }, context).await
        }
        (Route::RunStates { script_id }, _) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("a create")?;
            let body = ctx.body(&DEVICE_RUN_STATE)?;
            let device = bound_device(&body)?;
            let write = ops::create_run_state(script_id.clone(), body.fields, device);
            ctx.created(write, run_states_context(&script_id), |r| {
                format!(
                    "deviceManagement/deviceHealthScripts/{}/deviceRunStates/{}",
                    enc(&script_id),
                    enc(r.id())
                )
            })
            .await
        }
        (Route::RunState { script_id, id }, &Method::GET) => {
            principal.require(perm::SCRIPTS_READ)?;
            let context = format!("{}/$entity", run_states_context(&script_id));
            ctx.item(
                &DEVICE_RUN_STATE,
                EntityRef::RunState { script_id, id },
                context,
            )
            .await
        }
        (Route::RunState { script_id, id }, &Method::PATCH) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("an update")?;
            let body = ctx.body(&DEVICE_RUN_STATE)?;
            let bind_device = bound_device(&body)?;
            ctx.write(Write::UpdateRunState {
                script_id,
                id,
                changes: body.fields,
                bind_device,
            })
            .await
        }
        (Route::RunState { script_id, id }, _) => {
            principal.require(perm::SCRIPTS_WRITE)?;
            ctx.no_options("a delete")?;
            ctx.write(Write::DeleteRunState { script_id, id }).await
        }
        (Route::RunStateDevice { script_id, id }, _) => {
            principal.require(perm::RUN_STATE_DEVICE_READ)?;
            let bound = query::bind_item(&MANAGED_DEVICE, &ctx.options)?;
            let state_ref = EntityRef::RunState {
                script_id: script_id.clone(),
                id: id.clone(),
            };
            let Some(run_state) = state.store.get(&principal.tenant, &state_ref).await? else {
                return Err(ApiError::not_found(format!(
                    "The deviceRunState '{id}' does not exist in deviceHealthScript '{script_id}'."
                )));
            };
            let Some(device_id) = run_state.device_id else {
                return Err(ApiError::not_found(format!(
                    "No managedDevice is bound to the deviceRunState '{id}'."
                )));
            };
            let Some(device) = state
                .store
                .get(&principal.tenant, &EntityRef::Device(device_id.clone()))
                .await?
            else {
                return Err(ApiError::not_found(format!("The managedDevice '{device_id}' bound to this deviceRunState no longer exists.")));
            };
            Ok(ctx.item_response(
                &device,
                &bound,
                "deviceManagement/managedDevices/$entity".into(),
                None,
            ))
        }
        (Route::Count(inner), _) => {
            let scope = match *inner {
                Route::Scripts => {
                    principal.require(perm::SCRIPTS_READ)?;
                    Scope::Scripts
                }
                Route::RunStates { script_id } => {
                    principal.require(perm::SCRIPTS_READ)?;
                    Scope::RunStates { script_id }
                }
                Route::Assignments { script_id } => {
                    principal.require(perm::SCRIPTS_READ)?;
                    Scope::Assignments { script_id }
                }
                Route::History {
                    script_id,
                    state_id,
                } => {
                    principal.require(perm::SCRIPTS_READ)?;
                    let key = EntityRef::RunState {
                        script_id: script_id.clone(),
                        id: state_id.clone(),
                    };
                    if state.store.get(&principal.tenant, &key).await?.is_none() {
                        return Err(ApiError::not_found(format!(
                            "The deviceRunState '{state_id}' does not exist."
                        )));
                    }
                    Scope::History {
                        script_id,
                        state_id,
                    }
                }
                _ => {
                    principal.require(perm::DEVICES_READ)?;
                    Scope::Devices
                }
            };
            ctx.count(scope).await
        }
        (Route::Devices, &Method::GET) => {
            principal.require(perm::DEVICES_READ)?;
            ctx.list(Scope::Devices, "deviceManagement/managedDevices".into())
                .await
        }
        (Route::Devices, _) => {
            principal.require(perm::DEVICES_WRITE)?;
            ctx.no_options("a create")?;
            let body = ctx.body(&MANAGED_DEVICE)?;
            ctx.created(
                ops::create_device(body.fields),
                "deviceManagement/managedDevices".into(),
                |r| format!("deviceManagement/managedDevices/{}", enc(r.id())),
            )
            .await
        }
        (Route::Device(id), &Method::GET) => {
            principal.require(perm::DEVICES_READ)?;
            ctx.item(
                &MANAGED_DEVICE,
                EntityRef::Device(id),
                "deviceManagement/managedDevices/$entity".into(),
            )
            .await
        }
        (Route::Device(id), &Method::PATCH) => {
            principal.require(perm::DEVICES_WRITE)?;
            ctx.no_options("an update")?;
            let body = ctx.body(&MANAGED_DEVICE)?;
            ctx.write(Write::UpdateDevice {
                id,
                changes: body.fields,
            })
            .await
        }
        (Route::Device(id), _) => {
            principal.require(perm::DEVICES_WRITE)?;
            ctx.no_options("a delete")?;
            ctx.write(Write::DeleteDevice { id }).await
        }
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

pub(crate) fn bound_device(body: &remediate_wire::EntityBody) -> Result<Option<String>, ApiError> {
    match body.binds.as_slice() {
        [] => Ok(None),
        [(_, url)] => route::bound_device_id(url).map(Some),
        _ => Err(ApiError::bad_request(
            "'managedDevice@odata.bind' may be given only once.",
        )),
    }
}

/// Percent-encode a key for a path segment.
pub(crate) fn enc(key: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b':');
    percent_encoding::utf8_percent_encode(key, SEGMENT).to_string()
}

/// The context path of a script's run states.
pub(crate) fn run_states_context(script_id: &str) -> String {
    format!(
        "deviceManagement/deviceHealthScripts('{}')/deviceRunStates",
        odata_key(script_id)
    )
}

/// The context path of a script's assignments.
pub(crate) fn assignments_context(script_id: &str) -> String {
    format!(
        "deviceManagement/deviceHealthScripts('{}')/assignments",
        odata_key(script_id)
    )
}

/// A key inside OData key syntax `('…')`.
pub(crate) fn odata_key(key: &str) -> String {
    key.replace('\'', "''")
}

pub(crate) struct Ctx<'a> {
    pub(crate) state: &'a AppState,
    pub(crate) req: &'a ApiRequest,
    pub(crate) principal: &'a Principal,
    pub(crate) options: remediate_odata::QueryOptions,
}

impl Ctx<'_> {
    pub(crate) fn no_options(&self, what: &str) -> Result<(), ApiError> {
        query::expect_none(&self.options, what)
    }

    pub(crate) fn body(
        &self,
        entity: &'static EntityType,
    ) -> Result<remediate_wire::EntityBody, ApiError> {
        check_json_content_type(&self.req.headers)?;
        Ok(decode_entity_with(
            entity,
            &self.req.body,
            &self.state.config.limits,
        )?)
    }

    pub(crate) fn context(&self, suffix: &str) -> Json {
        Json::String(format!("{}/$metadata#{suffix}", self.req.base_url))
    }

    pub(crate) async fn write(&self, write: Write) -> Result<ApiResponse, ApiError> {
        self.state
            .store
            .write(&self.principal.tenant, write)
            .await?;
        Ok(ApiResponse::no_content())
    }

    /// Execute a create and answer 201 with the entity. `collection` is the context path of the
    /// collection the entity was created in (e.g. `deviceManagement/managedDevices`).
    pub(crate) async fn created(
        &self,
        write: Write,
        collection: String,
        location: impl Fn(&Record) -> String,
    ) -> Result<ApiResponse, ApiError> {
        let remediate_domain::write::WriteOutcome::Created(record) = self
            .state
            .store
            .write(&self.principal.tenant, write)
            .await?
        else {
            return Err(ApiError::new(
                remediate_wire::ErrorKind::Internal,
                "The create did not return the new entity.",
            ));
        };
        let context = format!("{collection}/$entity");
        let mut response = self.item_response(&record, &Bound::default(), context, None);
        response.status = StatusCode::CREATED;
        Ok(response.with_header(
            "location",
            format!("{}/{}", self.req.base_url, location(&record)),
        ))
    }

    pub(crate) async fn item(
        &self,
        entity: &'static EntityType,
        key: EntityRef,
        context: String,
    ) -> Result<ApiResponse, ApiError> {
        let bound = query::bind_item(entity, &self.options)?;
        let Some(record) = self.state.store.get(&self.principal.tenant, &key).await? else {
            let (what, id) = match &key {
                EntityRef::Script(id) => ("deviceHealthScript", id),
                EntityRef::RunState { id, .. } => ("deviceRunState", id),
                EntityRef::Device(id) => ("managedDevice", id),
                EntityRef::Assignment { id, .. } => ("deviceHealthScriptAssignment", id),
            };
            return Err(ApiError::not_found(format!(
                "The {what} '{id}' does not exist."
            )));
        };
        let device = match (&bound.expand_device, &record.device_id) {
            (Some(_), Some(device_id)) => Some(
                self.state
                    .store
                    .get(
                        &self.principal.tenant,
                        &EntityRef::Device(device_id.clone()),
                    )
                    .await?,
            ),
            (Some(_), None) => Some(None),
            (None, _) => None,
        };
        let mut response_object = self.item_object(&record, &bound, context, device);
        let mut expanded = Vec::new();
        self.expand_script(&mut expanded, &record, &bound).await?;
        response_object.extend(expanded);
        Ok(ApiResponse::json(StatusCode::OK, response_object))
    }

    /// `$expand=assignments` / `$expand=runSummary` on a script.
    async fn expand_script(
        &self,
        object: &mut Vec<(String, Json)>,
        record: &Record,
        bound: &Bound,
    ) -> Result<(), ApiError> {
        if !std::ptr::eq(record.entity, &DEVICE_HEALTH_SCRIPT) {
            return Ok(());
        }
        if let Some(select) = &bound.expand_assignments {
            let list = ListQuery {
                scope: Scope::Assignments {
                    script_id: record.id().to_owned(),
                },
                filter: None,
                order: Vec::new(),
                top: self.state.guard.limits.max_page_size,
                skip: 0,
                after: None,
                count: false,
                expand_device: false,
            };
            let page = self.state.store.list(&self.principal.tenant, &list).await?;
            let items = page
                .records
                .iter()
                .map(|r| Json::Object(entity_object(r, select.as_deref(), Shape::Item)))
                .collect();
            object.push((
                "assignments@odata.context".into(),
                self.context(&format!(
                    "deviceManagement/deviceHealthScripts('{}')/assignments",
                    odata_key(record.id())
                )),
            ));
            object.push(("assignments".into(), Json::Array(items)));
        }
        if let Some(select) = &bound.expand_run_summary {
            let summary = self
                .state
                .store
                .run_summary(&self.principal.tenant, record.id())
                .await?;
            object.push((
                "runSummary".into(),
                summary.map_or(Json::Null, |s| {
                    Json::Object(entity_object(&s, select.as_deref(), Shape::Item))
                }),
            ));
        }
        Ok(())
    }

    pub(crate) fn item_response(
        &self,
        record: &Record,
        bound: &Bound,
        context: String,
        device: Option<Option<Record>>,
    ) -> ApiResponse {
        ApiResponse::json(
            StatusCode::OK,
            self.item_object(record, bound, context, device),
        )
    }

    fn item_object(
        &self,
        record: &Record,
        bound: &Bound,
        context: String,
        device: Option<Option<Record>>,
    ) -> Map<String, Json> {
        let mut object = Map::new();
        object.insert("@odata.context".into(), self.context(&context));
        object.insert(
            "@odata.type".into(),
            Json::String(record.entity.type_annotation()),
        );
        object.extend(entity_object(record, bound.select.as_deref(), Shape::Item));
        if let (Some(device), Some(select)) = (device, &bound.expand_device) {
            object.insert(
                "managedDevice".into(),
                expanded_device(device.as_ref(), select.as_deref()),
            );
        }
        object
    }

    async fn list(&self, scope: Scope, context: String) -> Result<ApiResponse, ApiError> {
        self.list_with(scope, context, None).await
    }

    /// A list whose filter is narrowed by `extra` (device tokens see only their own rows).
    pub(crate) async fn list_with(
        &self,
        scope: Scope,
        context: String,
        extra: Option<Filter>,
    ) -> Result<ApiResponse, ApiError> {
        let mut bound = query::bind_list(&scope, &self.options)?;
        if let Some(extra) = extra {
            bound.filter = Some(match bound.filter.take() {
                Some(filter) => Filter::And(Box::new(extra), Box::new(filter)),
                None => extra,
            });
        }
        // Paging tokens are bound to the tenant too: a nextLink never crosses tenants.
        let fingerprint = crate::paging::query_fingerprint(
            &format!("{}|{}", self.principal.tenant, self.req.path),
            &self.req.query,
        );
        let secret = self.state.store.paging_secret();
        let after = match &bound.skiptoken {
            Some(token) => Some(crate::paging::decode(secret, &fingerprint, token)?),
            None => None,
        };
        let top = bound.top.map_or(DEFAULT_TOP, |t| {
            usize::try_from(t)
                .unwrap_or(usize::MAX)
                .min(self.state.guard.limits.max_page_size)
        });
        let list = ListQuery {
            scope,
            filter: bound.filter.clone(),
            order: bound.order.clone(),
            top,
            skip: bound.skip,
            after,
            count: bound.count,
            expand_device: bound.expand_device.is_some(),
        };
        let page = self.state.store.list(&self.principal.tenant, &list).await?;
        let next_link = page
            .next
            .as_ref()
            .map(|next| self.next_link(&crate::paging::encode(secret, &fingerprint, next)));
        let mut items = Vec::with_capacity(page.records.len());
        for (i, record) in page.records.iter().enumerate() {
            let mut extra = Vec::new();
            if let Some(select) = &bound.expand_device {
                let device = page.devices.get(i).and_then(Option::as_ref);
                extra.push((
                    "managedDevice".to_owned(),
                    expanded_device(device, select.as_deref()),
                ));
            }
            self.expand_script(&mut extra, record, &bound).await?;
            items.push(RecordJson {
                record,
                select: bound.select.as_deref(),
                shape: Shape::ListItem,
                extra,
            });
        }
        let body = ListBody {
            context: self.context(&context),
            count: page.count,
            next_link,
            value: items,
        };
        ApiResponse::json_body(StatusCode::OK, &body)
    }

    /// `/$count`: the number of matching rows as `text/plain` (only `$filter` applies).
    pub(crate) async fn count(&self, scope: Scope) -> Result<ApiResponse, ApiError> {
        let only_filter = remediate_odata::QueryOptions {
            filter: None,
            ..self.options.clone()
        };
        query::expect_none(&only_filter, "/$count (only $filter is)")?;
        let bound = query::bind_list(&scope, &self.options)?;
        let list = ListQuery {
            scope,
            filter: bound.filter,
            order: Vec::new(),
            top: 0,
            skip: 0,
            after: None,
            count: true,
            expand_device: false,
        };
        let page = self.state.store.list(&self.principal.tenant, &list).await?;
        Ok(ApiResponse {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: crate::respond::Body::Text(page.count.unwrap_or(0).to_string()),
        })
    }

    /// The request's own URL with `$skiptoken` replaced and `$skip` dropped (already applied).
    fn next_link(&self, token: &str) -> String {
        let mut params: Vec<&str> = self
            .req
            .query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split('=').next().unwrap_or("");
                let name = percent_encoding::percent_decode_str(name)
                    .decode_utf8_lossy()
                    .to_ascii_lowercase();
                let bare = name.trim_start_matches('$');
                bare != "skiptoken" && bare != "skip"
            })
            .collect();
        let token_param = format!("$skiptoken={token}");
        params.push(&token_param);
        format!(
            "{}/{}?{}",
            self.req.base_url,
            self.req.path.trim_start_matches('/'),
            params.join("&")
        )
    }
}

/// A collection page, serialized straight from the records.
#[derive(serde::Serialize)]
struct ListBody<'a> {
    #[serde(rename = "@odata.context")]
    context: Json,
    #[serde(rename = "@odata.count", skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
    value: Vec<RecordJson<'a>>,
}

fn expanded_device(device: Option<&Record>, select: Option<&[usize]>) -> Json {
    match device {
        Some(device) => Json::Object(entity_object(device, select, Shape::Item)),
        None => Json::Null,
    }
}

/// The extension route agents poll: on-demand runs queued for a device.
pub(crate) async fn pending_on_demand(
    ctx: &Ctx<'_>,
    device_id: &str,
) -> Result<ApiResponse, ApiError> {
    ctx.no_options("pendingOnDemandRemediations")?;
    let Some(pending) = ctx
        .state
        .store
        .pending_on_demand(&ctx.principal.tenant, device_id)
        .await?
    else {
        return Err(ApiError::not_found(format!(
            "The managedDevice '{device_id}' does not exist."
        )));
    };
    let items = pending
        .into_iter()
        .map(|(script, at)| serde_json::json!({"scriptPolicyId": script, "requestedDateTime": at.to_string()}))
        .collect();
    let mut object = Map::new();
    object.insert("value".into(), Json::Array(items));
    Ok(ApiResponse::json(StatusCode::OK, object))
}

pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = |found: &str| {
        ApiError::new(
            remediate_wire::ErrorKind::UnsupportedMediaType,
            format!("The request body must be sent with 'Content-Type: application/json'; found {found}."),
        )
    };
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Err(unsupported("no Content-Type header"));
    };
    let text = value
        .to_str()
        .map_err(|_| unsupported("an unreadable Content-Type"))?;
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != "application/json" {
        return Err(unsupported(&format!("'{text}'")));
    }
    Ok(())
}
