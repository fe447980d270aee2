//! JSON batching (SPEC §5): up to 20 requests, each authorized and executed exactly as if sent
//! alone (through the same `dispatch`), in an order that honours `dependsOn`; a request whose
//! dependency failed gets 424.
//!
//! The format is Graph's (learn.microsoft.com/graph/json-batching, the OData JSON Format 4.01
//! batch section it implements):
//! - a request id is a non-empty string or, as many tools send it, an integer (`"id": 1`); an
//!   integer is the id written in decimal, so `1` and `"1"` are one id (a duplicate), `dependsOn`
//!   takes either spelling, and every answer carries its id as a JSON string (`"id": "1"`), the
//!   type Graph documents and its SDKs read;
//! - item answers name their headers as Graph does (`Cache-Control`, `OData-Version`,
//!   `Content-Type`, `Location`, …: JSON keys are case-sensitive, and clients look them up
//!   exactly) and carry what the same request alone gets: `Cache-Control`, `OData-Version`, the
//!   content type of a body and the handler's own headers;
//! - a request body given as a string is, unless the item's media type is `text/*`, the
//!   base64url-encoded body (OData: "for all other media types the value of body is a string
//!   containing the base64url-encoded value of the request body"; Graph's ODataLib reader
//!   decodes any non-text string body, `application/json` included). Both base64 alphabets,
//!   padded or not, with line breaks, are read; a string that is not base64 is a 400 for its item.

use std::collections::{HashMap, HashSet};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
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
                ("id", id) => {
                    item.id = request_id(&id).map_err(|found| {
                        ApiError::bad_request(format!(
                            "requests[{i}].id must be a non-empty string or an integer; found {found}."
                        ))
                    })?;
                }
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
                    for (j, dep) in deps.iter().enumerate() {
                        let dep = request_id(dep).map_err(|found| {
                            ApiError::bad_request(format!(
                                "requests[{i}].dependsOn[{j}] must be a request id (a non-empty \
                                 string or an integer); found {found}."
                            ))
                        })?;
                        item.depends_on.push(dep);
                    }
                }
                (name, _)
                    if ["method", "url", "headers", "dependsOn", "depends_on"].contains(&name) =>
                {
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
                "requests[{i}] needs an 'id' (a non-empty string or an integer)."
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

/// A request id (or a `dependsOn` reference) as the batch keys it: a non-empty string as it is, an
/// integer in decimal (`1` → `"1"`, `-7` → `"-7"`). Anything else is refused, described for the
/// message: a number with a fraction or an exponent (`1.5`, `1.0`, `1e3`) too, since its text
/// would not be the id the client reads back.
fn request_id(value: &Json) -> Result<String, String> {
    match value {
        Json::String(id) if !id.is_empty() => Ok(id.clone()),
        Json::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Json::Number(n) => Err(format!(
            "the number {n}, which is not an integer (write 1, not 1.0 or 1e0)"
        )),
        Json::String(_) => Err("an empty string".into()),
        Json::Bool(b) => Err(format!("the boolean {b}")),
        Json::Null => Err("null".into()),
        Json::Array(_) => Err("an array".into()),
        Json::Object(_) => Err("an object".into()),
    }
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
        Some(Json::String(text)) => string_body(item, &headers, text)?,
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

/// A request body given as a JSON string (OData JSON Format 4.01, batch request `body`): the text
/// itself for a `text/*` media type; for any other (`application/json` included) the
/// base64url-encoded bytes, decoded here. Without a Content-Type the text goes through as it is
/// (the inner request answers 415, as it would alone).
fn string_body(item: &Item, headers: &HeaderMap, text: &str) -> Result<bytes::Bytes, ApiError> {
    let Some(content_type) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(bytes::Bytes::from(text.to_owned()));
    };
    let content_type = String::from_utf8_lossy(content_type.as_bytes());
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let top_level = essence.split('/').next().unwrap_or("");
    if top_level.eq_ignore_ascii_case("text") {
        return Ok(bytes::Bytes::from(text.to_owned()));
    }
    decode_base64(text).map(bytes::Bytes::from).map_err(|why| {
        ApiError::bad_request(format!(
            "The body of request '{}' is a string, which for Content-Type '{content_type}' must be \
             the base64url-encoded request body (a JSON body can also be given as a JSON object); \
             it is not base64: {why}.",
            item.id
        ))
    })
}

/// Base64 as Graph's reader takes it (ODataLib maps base64url to base64, then
/// `Convert.FromBase64String`, which skips white space): either alphabet, even mixed, padded or
/// not, line breaks ignored.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let normalized: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            b => b,
        })
        .collect();
    LENIENT.decode(&normalized).map_err(|e| match e {
        base64::DecodeError::InvalidByte(_, b'=') => "'=' appears before its end".to_owned(),
        base64::DecodeError::InvalidByte(_, byte) => {
            format!(
                "it holds '{}', which is not a base64 character",
                char::from(byte).escape_default()
            )
        }
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidLastSymbol(..) => {
            "its length is not that of base64 text (it is cut short or has a character too many)"
                .to_owned()
        }
        base64::DecodeError::InvalidPadding => "its '=' padding is wrong".to_owned(),
    })
}

/// The header name as Graph writes it in an item answer: a known header in its usual spelling,
/// Graph's own lower-case ones (`request-id`, `client-request-id`, `x-ms-…`) in lower case, any
/// other in Train-Case (`foo-bar` → `Foo-Bar`).
fn graph_header_name(name: &str) -> String {
    const KNOWN: [&str; 16] = [
        "Content-Type",
        "OData-Version",
        "Cache-Control",
        "Location",
        "Retry-After",
        "ETag",
        "Allow",
        "OData-EntityId",
        "OData-MaxVersion",
        "Preference-Applied",
        "WWW-Authenticate",
        "Content-Location",
        "Content-Encoding",
        "Last-Modified",
        "request-id",
        "client-request-id",
    ];
    if let Some(known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return (*known).to_owned();
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("x-ms-") {
        return lower;
    }
    let mut out = String::with_capacity(name.len());
    let mut word_start = true;
    for c in lower.chars() {
        out.push(if word_start {
            c.to_ascii_uppercase()
        } else {
            c
        });
        word_start = c == '-';
    }
    out
}

/// The headers of an item answer: those every answer carries alone (`api::server`'s
/// `Cache-Control` and `OData-Version`), the body's content type, then the handler's own
/// (`Location`, `Retry-After`, `Allow`, …) — not `Connection`, which is the batch's.
fn item_headers(content_type: Option<&str>, own: &[(&'static str, String)]) -> Map<String, Json> {
    let mut headers = Map::new();
    headers.insert("Cache-Control".into(), Json::String("no-cache".into()));
    headers.insert("OData-Version".into(), Json::String("4.0".into()));
    if let Some(content_type) = content_type {
        headers.insert("Content-Type".into(), Json::String(content_type.to_owned()));
    }
    for (name, value) in own {
        if !name.eq_ignore_ascii_case("connection") {
            headers.insert(graph_header_name(name), Json::String(value.clone()));
        }
    }
    headers
}

fn render(response: ApiResponse) -> (u16, Map<String, Json>, Option<Vec<u8>>) {
    let (content_type, body) = match response.body {
        Body::Empty => (None, None),
        Body::Json(bytes) => (Some(remediate_wire::JSON_CONTENT_TYPE), Some(bytes)),
        Body::Text(text) => (Some("text/plain; charset=utf-8"), Some(json_text(&text))),
        Body::Xml(text) => (Some("application/xml"), Some(json_text(&text))),
    };
    let headers = item_headers(content_type, &response.headers);
    (response.status.as_u16(), headers, body)
}

fn render_error(error: &ApiError) -> (u16, Map<String, Json>, Option<Vec<u8>>) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let date = remediate_domain::Instant::now().to_seconds_string();
    let headers = item_headers(Some(remediate_wire::JSON_CONTENT_TYPE), &error.headers);
    let body = json!({"error": {"code": error.kind.code(), "message": error.message,
        "innerError": {"date": date, "request-id": request_id, "client-request-id": request_id}}});
    (
        error.kind.status().as_u16(),
        headers,
        Some(serde_json::to_vec(&body).unwrap_or_default()),
    )
}
