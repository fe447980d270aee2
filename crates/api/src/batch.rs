//! JSON batching (SPEC §5): up to 20 requests, each authorized and executed exactly as if sent
//! alone (through the same `dispatch`), in an order that honours `dependsOn`; a request whose
//! dependency failed gets 424.

use std::collections::{HashMap, HashSet};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value as Json};

use crate::ctx::check_json_content_type;
use crate::dispatch::dispatch;
use crate::error::ApiError;
use crate::respond::{ApiRequest, ApiResponse, Body};
use crate::AppState;

struct Item {
    id: String,
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Json>,
    depends_on: Vec<String>,
}

fn parse(req: &ApiRequest, max_requests: usize) -> Result<Vec<Item>, ApiError> {
    check_json_content_type(&req.headers)?;
    let members = remediate_wire::decode::parse_object(&req.body)?;
    let mut requests = None;
    for (key, value) in members {
        match key.as_str() {
            "requests" => requests = Some(value),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "'{key}' is not a member of a batch request; expected only 'requests'."
                )))
            }
        }
    }
    let Some(Json::Array(list)) = requests else {
        return Err(ApiError::bad_request("A batch needs a 'requests' array."));
    };
    if list.is_empty() {
        return Err(ApiError::bad_request("A batch needs at least one request."));
    }
    if list.len() > max_requests {
        return Err(ApiError::bad_request(format!(
            "A batch may hold at most {max_requests} requests; this one has {}.",
            list.len()
        )));
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, entry) in list.into_iter().enumerate() {
        let Json::Object(map) = entry else {
            return Err(ApiError::bad_request(format!(
                "requests[{i}] must be an object."
            )));
        };
        let mut item = Item {
            id: String::new(),
            method: Method::GET,
            url: String::new(),
            headers: Vec::new(),
            body: None,
            depends_on: Vec::new(),
        };
        for (key, value) in map {
            match (key.as_str(), value) {
                ("id", Json::String(id)) if !id.is_empty() => item.id = id,
                ("method", Json::String(m)) => {
                    item.method = match m.to_ascii_uppercase().as_str() {
                        "GET" => Method::GET,
                        "POST" => Method::POST,
                        "PATCH" => Method::PATCH,
                        "PUT" => Method::PUT,
                        "DELETE" => Method::DELETE,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                            "requests[{i}].method '{m}' is not an HTTP method a batch can carry."
                        )))
                        }
                    }
                }
                ("url", Json::String(url)) => item.url = url,
                ("headers", Json::Object(h)) => {
                    for (name, value) in h {
                        let Json::String(v) = value else {
                            return Err(ApiError::bad_request(format!(
                                "requests[{i}].headers.{name} must be a string."
                            )));
                        };
                        item.headers.push((name, v));
                    }
                }
                ("body", body) => item.body = Some(body),
                // msgraph-core for Python (1.5) sends `depends_on`; it means `dependsOn`.
                ("dependsOn" | "depends_on", Json::Array(deps)) => {
                    for dep in deps {
                        let Json::String(d) = dep else {
                            return Err(ApiError::bad_request(format!(
                                "requests[{i}].dependsOn must be an array of request ids."
                            )));
                        };
                        item.depends_on.push(d);
                    }
                }
                (name, _) if ["id", "method", "url", "headers", "dependsOn"].contains(&name) => {
                    return Err(ApiError::bad_request(format!(
                        "requests[{i}].{name} has the wrong type or is empty."
                    )))
                }
                (name, _) => {
                    return Err(ApiError::bad_request(format!(
                        "requests[{i}] has an unknown member '{name}'."
                    )))
                }
            }
        }
        if item.id.is_empty() {
            return Err(ApiError::bad_request(format!(
                "requests[{i}] needs an 'id' (a non-empty string)."
            )));
        }
        if item.url.is_empty() {
            return Err(ApiError::bad_request(format!(
                "requests[{i}] needs a 'url' relative to /beta."
            )));
        }
        if item.url.contains("://") {
            return Err(ApiError::bad_request(format!("requests[{i}].url must be relative to /beta, e.g. /deviceManagement/managedDevices.")));
        }
        items.push(item);
    }
    let mut ids = HashSet::new();
    for item in &items {
        if !ids.insert(item.id.as_str()) {
            return Err(ApiError::bad_request(format!(
                "The request id '{}' appears more than once in the batch.",
                item.id
            )));
        }
    }
    for item in &items {
        for dep in &item.depends_on {
            if !ids.contains(dep.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "Request '{}' depends on '{dep}', which is not in the batch.",
                    item.id
                )));
            }
        }
    }
    Ok(items)
}

/// Decode and check a `$batch` body without running it: the request ids in execution order, or
/// the 400 the whole batch would get. (Used by the fuzz target.)
pub fn decode(body: &[u8], max_requests: usize) -> Result<Vec<String>, ApiError> {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let request = ApiRequest {
        method: Method::POST,
        path: "$batch".into(),
        query: String::new(),
        headers,
        body: bytes::Bytes::copy_from_slice(body),
        base_url: "http://localhost/beta".into(),
    };
    let items = parse(&request, max_requests)?;
    let sequence = order(&items)?;
    for item in &items {
        inner_request(&request, item)?;
    }
    Ok(sequence.into_iter().map(|i| items[i].id.clone()).collect())
}

/// An execution order honouring `dependsOn` (stable: otherwise request order), or a 400 on a cycle.
fn order(items: &[Item]) -> Result<Vec<usize>, ApiError> {
    let index: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let mut done = vec![false; items.len()];
    let mut out = Vec::with_capacity(items.len());
    while out.len() < items.len() {
        let next = (0..items.len())
            .find(|&i| !done[i] && items[i].depends_on.iter().all(|d| done[index[d.as_str()]]));
        match next {
            Some(i) => {
                done[i] = true;
                out.push(i);
            }
            None => {
                return Err(ApiError::bad_request(
                    "The dependsOn references of the batch form a cycle.",
                ))
            }
        }
    }
    Ok(out)
}

pub async fn run(state: &AppState, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let items = parse(req, state.guard.limits.max_batch_requests)?;
    let sequence = order(&items)?;
    let mut statuses: HashMap<String, u16> = HashMap::new();
    // Each answer is written out as it comes (its body copied as the bytes the inner request
    // produced, never parsed back into a tree), so a batch holds at most its answers once.
    let mut responses: Vec<(usize, Vec<u8>)> = Vec::with_capacity(items.len());
    for i in sequence {
        let item = &items[i];
        let failed = item
            .depends_on
            .iter()
            .find(|d| statuses.get(d.as_str()).is_none_or(|s| *s >= 400));
        let (status, headers, body) = if let Some(dep) = failed {
            let error = ApiError::new(
                remediate_wire::ErrorKind::FailedDependency,
                format!(
                    "The request '{}' was not run because its dependency '{dep}' failed.",
                    item.id
                ),
            );
            render_error(&error)
        } else {
            let result = match inner_request(req, item) {
                Err(e) => Err(e),
                Ok(inner) => dispatch(state, &inner).await,
            };
            match result {
                Ok(response) => render(response),
                Err(error) => render_error(&error),
            }
        };
        statuses.insert(item.id.clone(), status);
        let mut entry = Vec::with_capacity(128 + body.as_ref().map_or(0, Vec::len));
        entry.extend_from_slice(b"{\"id\":");
        entry.extend_from_slice(&json_text(&item.id));
        entry.extend_from_slice(format!(",\"status\":{status},\"headers\":").as_bytes());
        entry.extend_from_slice(&serde_json::to_vec(&Json::Object(headers)).unwrap_or_default());
        if let Some(body) = body {
            entry.extend_from_slice(b",\"body\":");
            entry.extend_from_slice(&body);
        }
        entry.push(b'}');
        responses.push((i, entry));
    }
    responses.sort_by_key(|(i, _)| *i);
    let total: usize = responses.iter().map(|(_, r)| r.len() + 1).sum();
    let mut bytes = Vec::with_capacity(total + 16);
    bytes.extend_from_slice(b"{\"responses\":[");
    for (n, (_, entry)) in responses.into_iter().enumerate() {
        if n > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(&entry);
    }
    bytes.extend_from_slice(b"]}");
    Ok(ApiResponse {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: Body::Json(bytes),
    })
}

/// A string as JSON text.
fn json_text(text: &str) -> Vec<u8> {
    serde_json::to_vec(text).unwrap_or_default()
}

fn inner_request(outer: &ApiRequest, item: &Item) -> Result<ApiRequest, ApiError> {
    let url = item.url.trim_start_matches('/');
    let url = url.strip_prefix("beta/").unwrap_or(url);
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    // The inner URL is routed by the same parser as an outer one (percent-decoding included),
    // before anything else: a batch inside a batch is refused however it is spelled.
    if crate::route::parse(path).is_ok_and(|route| route == crate::route::Route::Batch) {
        return Err(ApiError::bad_request(format!(
            "Request '{}' is a $batch request (url '{}'); a batch cannot contain another batch.",
            item.id, item.url
        )));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &item.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ApiError::bad_request(format!("The header name '{name}' is not valid."))
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            ApiError::bad_request(format!("The value of header '{name}' is not valid."))
        })?;
        headers.insert(name, value);
    }
    // Inner requests carry the batch's own credentials.
    if let Some(auth) = outer.headers.get(http::header::AUTHORIZATION) {
        headers.insert(http::header::AUTHORIZATION, auth.clone());
    }
    let body = match &item.body {
        None => bytes::Bytes::new(),
        Some(Json::String(text)) => bytes::Bytes::from(text.clone()),
        Some(json) => bytes::Bytes::from(serde_json::to_vec(json).unwrap_or_default()),
    };
    Ok(ApiRequest {
        method: item.method.clone(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body,
        base_url: outer.base_url.clone(),
    })
}

fn render(response: ApiResponse) -> (u16, Map<String, Json>, Option<Vec<u8>>) {
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        headers.insert((*name).to_owned(), Json::String(value.clone()));
    }
    let body = match response.body {
        Body::Empty => None,
        Body::Json(bytes) => {
            headers.insert(
                "content-type".into(),
                Json::String(remediate_wire::JSON_CONTENT_TYPE.to_owned()),
            );
            Some(bytes)
        }
        Body::Text(text) => {
            headers.insert(
                "content-type".into(),
                Json::String("text/plain; charset=utf-8".into()),
            );
            Some(json_text(&text))
        }
        Body::Xml(text) => {
            headers.insert(
                "content-type".into(),
                Json::String("application/xml".into()),
            );
            Some(json_text(&text))
        }
    };
    (response.status.as_u16(), headers, body)
}

fn render_error(error: &ApiError) -> (u16, Map<String, Json>, Option<Vec<u8>>) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let date = remediate_domain::Instant::now().to_seconds_string();
    let mut headers = Map::new();
    headers.insert(
        "content-type".into(),
        Json::String(remediate_wire::JSON_CONTENT_TYPE.to_owned()),
    );
    for (name, value) in &error.headers {
        headers.insert((*name).to_owned(), Json::String(value.clone()));
    }
    let body = json!({"error": {"code": error.kind.code(), "message": error.message,
        "innerError": {"date": date, "request-id": request_id, "client-request-id": request_id}}});
    (
        error.kind.status().as_u16(),
        headers,
        Some(serde_json::to_vec(&body).unwrap_or_default()),
    )
}
