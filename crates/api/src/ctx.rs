//! The request toolkit every handler uses: decode a body, run a write (a PATCH answers 200 with
//! the updated item, as its GET would), answer a create (201 with `Location`), read an item or a
//! page (with `$select`, `$expand`, paging links and counts), and the checks shared by them
//! (content type, bound devices).

use http::{HeaderMap, StatusCode};
use remediate_domain::collections::{Collection, ASSIGNMENTS};
use remediate_domain::model::EntityType;
use remediate_domain::query::{Filter, ListQuery, Scope};
use remediate_domain::write::Write;
use remediate_domain::Record;
use remediate_store::EntityRef;
use remediate_wire::{
    decode_entity_with, entity_object, entity_type_annotation, RecordJson, Shape,
};
use serde_json::{Map, Value as Json};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::query::{self, Bound, DEFAULT_TOP};
use crate::respond::{ApiRequest, ApiResponse};
use crate::route;
use crate::AppState;

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

    /// Execute a write. A PATCH of an item answers 200 with the updated entity, read back after
    /// the write committed and encoded exactly as a GET of the item answers (Graph: "returns a
    /// 200 OK response code and an updated object in the response body"); every other write
    /// (DELETE, actions without a result) answers 204.
    pub(crate) async fn write(&self, write: Write) -> Result<ApiResponse, ApiError> {
        self.state
            .store
            .write(&self.principal.tenant, write)
            .await?;
        if self.req.method == http::Method::PATCH {
            // The handler has already routed this path; routing it again here keeps every
            // PATCH of every collection on this one path (no per-collection answer to forget).
            if let Ok(route::Route::Item { of, keys }) = route::parse(&self.req.path) {
                if let Some(response) = self.read_item(of, &keys).await? {
                    return Ok(response);
                }
                // Deleted by another request since this write committed: the update did happen,
                // so it is still a success, without a body.
            }
        }
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
        // An enrollment secret is shown once: in this answer (storage keeps only its hash).
        let shown_secret = match &write {
            Write::CreateEnrollmentSecret { secret, .. } => Some(secret.clone()),
            _ => None,
        };
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
        if let (Some(secret), crate::respond::Body::Json(bytes)) =
            (shown_secret, &mut response.body)
        {
            if let Ok(Json::Object(mut object)) = serde_json::from_slice::<Json>(bytes) {
                object.insert("secret".into(), Json::String(secret));
                *bytes = serde_json::to_vec(&object).unwrap_or_default();
            }
        }
        Ok(response.with_header(
            "location",
            format!("{}/{}", self.req.base_url, location(&record)),
        ))
    }

    /// GET of one item of `of` (keys outermost first), with `$select` and `$expand`.
    pub(crate) async fn item(
        &self,
        of: &'static Collection,
        keys: &[String],
    ) -> Result<ApiResponse, ApiError> {
        match self.read_item(of, keys).await? {
            Some(response) => Ok(response),
            None => Err(ApiError::not_found(format!(
                "The {} '{}' does not exist.",
                of.item_name,
                keys.last().map_or("", String::as_str)
            ))),
        }
    }

    /// The answer of a GET of one item (200), or `None` when it does not exist.
    async fn read_item(
        &self,
        of: &'static Collection,
        keys: &[String],
    ) -> Result<Option<ApiResponse>, ApiError> {
        let bound = query::bind_item(of.entity, &self.options)?;
        let record = match EntityRef::of(of, keys) {
            Some(key) => self.state.store.get(&self.principal.tenant, &key).await?,
            None => None,
        };
        let Some(record) = record else {
            return Ok(None);
        };
        let parents = &keys[..keys.len().saturating_sub(1)];
        let context = format!("{}/$entity", of.context_path(parents));
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
        if let Some(odata_type) = entity_type_annotation(record.entity, of.declared_type) {
            response_object = with_type(response_object, odata_type);
        }
        let mut expanded = Vec::new();
        self.expand_script(&mut expanded, &record, &bound).await?;
        response_object.extend(expanded);
        Ok(Some(ApiResponse::json(StatusCode::OK, response_object)))
    }

    /// `$expand=assignments` / `$expand=runSummary` (bound only where the model declares them).
    async fn expand_script(
        &self,
        object: &mut Vec<(String, Json)>,
        record: &Record,
        bound: &Bound,
    ) -> Result<(), ApiError> {
        let keys = [record.id().to_owned()];
        if let Some(select) = &bound.expand_assignments {
            let list = ListQuery {
                scope: ASSIGNMENTS.scope(&keys),
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
                self.context(&ASSIGNMENTS.context_path(&keys)),
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
        // No `@odata.type`: the entity is of the declared type of its context (minimal metadata,
        // as Graph answers; see `wire::encode`). Items of collections declared with a base type
        // get theirs from `with_type`.
        object.extend(entity_object(record, bound.select.as_deref(), Shape::Item));
        if let (Some(device), Some(select)) = (device, &bound.expand_device) {
            object.insert(
                "managedDevice".into(),
                expanded_device(device.as_ref(), select.as_deref()),
            );
        }
        object
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
        let declared = scope.of.declared_type;
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
            if bound.expand_assignments.is_some() || bound.expand_run_summary.is_some() {
                self.expand_script(&mut extra, record, &bound).await?;
            }
            items.push(RecordJson {
                record,
                odata_type: entity_type_annotation(record.entity, declared),
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

/// `object` (which starts with `@odata.context`) with `@odata.type` right after the context.
fn with_type(object: Map<String, Json>, odata_type: String) -> Map<String, Json> {
    let mut typed = Map::with_capacity(object.len() + 1);
    let mut members = object.into_iter();
    if let Some((name, context)) = members.next() {
        typed.insert(name, context);
    }
    typed.insert("@odata.type".into(), Json::String(odata_type));
    typed.extend(members);
    typed
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

pub(crate) fn bound_device(body: &remediate_wire::EntityBody) -> Result<Option<String>, ApiError> {
    match body.binds.as_slice() {
        [] => Ok(None),
        [(_, url)] => route::bound_device_id(url).map(Some),
        _ => Err(ApiError::bad_request(
            "'managedDevice@odata.bind' may be given only once.",
        )),
    }
}

/// `The deviceRunState 'x' does not exist in deviceHealthScript 's'.`
pub(crate) fn not_found(of: &Collection, keys: &[String]) -> ApiError {
    let id = keys.last().map_or("", String::as_str);
    match (&of.parent, keys.len()) {
        (remediate_domain::collections::Parent::Item(parent), n) if n >= 2 => {
            ApiError::not_found(format!(
                "The {} '{id}' does not exist in {} '{}'.",
                of.item_name,
                parent.item_name,
                keys[n - 2]
            ))
        }
        _ => ApiError::not_found(format!("The {} '{id}' does not exist.", of.item_name)),
    }
}
