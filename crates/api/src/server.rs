//! The HTTP edge: one axum service that reads the request (with size limits), assigns the
//! request id, hands `/beta` requests to [`dispatch`](crate::handlers::dispatch) and writes
//! Graph's headers and error envelope on every answer.

use std::sync::Arc;
use std::time::Instant as Clock;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode};
use remediate_domain::Instant;
use remediate_wire::{error::error_json, ErrorKind, JSON_CONTENT_TYPE};
use tracing::Instrument;

use crate::error::ApiError;
use crate::handlers::{dispatch, ApiRequest};
use crate::respond::{ApiResponse, Body};
use crate::AppState;

pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

/// Serve until `shutdown` completes, then drain in-flight requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = crate::guard::LimitedListener::new(listener, state.guard.limits.max_connections);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

struct Ids {
    request_id: String,
    client_request_id: String,
}

async fn handle(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Clock::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = request
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map_or_else(|| request_id.clone(), str::to_owned);
    let ids = Ids {
        request_id,
        client_request_id,
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %ids.request_id, %method, %path);
    // The span is attached to the future (not entered on the thread), so it follows the request
    // across awaits and never leaks into other requests on the same worker.
    async move {
        let result = route(&state, request).await;
        let response = match result {
            Ok(response) => response,
            Err(error) => error_response(&error, &ids),
        };
        tracing::info!(
            status = response.status.as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request done"
        );
        to_http(response, &ids)
    }
    .instrument(span)
    .await
}

async fn route(state: &AppState, request: Request) -> Result<ApiResponse, ApiError> {
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/healthz" => return Ok(text(StatusCode::OK, "ok")),
        "/openapi.json" => return Ok(crate::openapi::response()),
        "/readyz" => {
            return match state.store.ping().await {
                Ok(()) => Ok(text(StatusCode::OK, "ready")),
                Err(e) => Err(ApiError::from(e)),
            }
        }
        _ => {}
    }
    state.guard.check_sizes(request.uri(), request.headers())?;
    let _permit = state.guard.admit()?;
    let Some(rest) = path
        .strip_prefix("/beta/")
        .or_else(|| (path == "/beta").then_some(""))
    else {
        return Err(ApiError::bad_request(format!(
            "Resource not found for the segment '{}'. This server serves the Microsoft Graph beta API under /beta.",
            path.trim_start_matches('/').split('/').next().unwrap_or("")
        )));
    };
    let base_url = state.base_url(request.headers());
    let (parts, body) = request.into_parts();
    let limit = state.guard.limits.max_body_bytes;
    let body = read_body(body, limit).await?;
    let api_request = ApiRequest {
        method: parts.method,
        path: rest.to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers,
        body,
        base_url,
    };
    if api_request.method == Method::HEAD || api_request.method == Method::OPTIONS {
        return Err(ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!("The method '{}' is not supported.", api_request.method),
        ));
    }
    let timeout = state.guard.limits.request_timeout;
    let work = async {
        state.guard.inject().await?;
        dispatch(state, &api_request).await
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            ErrorKind::Timeout,
            format!("The request did not complete within {} s; it was cancelled and its transaction rolled back.", timeout.as_secs_f64()),
        )),
    }
}

/// Read the body up to `limit` bytes. A larger body is drained (up to a hard cap, so the client
/// can read the 413 instead of seeing a reset connection) and answered with 413.
async fn read_body(body: AxumBody, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt;
    const DRAIN_CAP: usize = 64 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(format!("The request body could not be read: {e}."))
        })?;
        total += chunk.len();
        if total > limit {
            if total > DRAIN_CAP {
                break;
            }
            continue;
        }
        buffer.extend_from_slice(&chunk);
    }
    if total > limit {
        return Err(too_large(limit));
    }
    Ok(buffer.freeze())
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::PayloadTooLarge,
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}

fn text(status: StatusCode, body: &str) -> ApiResponse {
    ApiResponse {
        status,
        headers: Vec::new(),
        body: Body::Text(body.to_owned()),
    }
}

fn error_response(error: &ApiError, ids: &Ids) -> ApiResponse {
    let date = Instant::now().to_seconds_string();
    let body = error_json(
        error.kind,
        &error.message,
        &date,
        &ids.request_id,
        &ids.client_request_id,
    );
    ApiResponse {
        status: error.kind.status(),
        headers: error.headers.clone(),
        body: Body::Json(body),
    }
}

fn to_http(response: ApiResponse, ids: &Ids) -> Response {
    let (content_type, body) = match response.body {
        Body::Empty => (None, AxumBody::empty()),
        Body::Json(bytes) => (Some(JSON_CONTENT_TYPE), AxumBody::from(bytes)),
        Body::Text(text) => (Some("text/plain; charset=utf-8"), AxumBody::from(text)),
        Body::Xml(text) => (Some("application/xml"), AxumBody::from(text)),
    };
    let mut http = Response::new(body);
    *http.status_mut() = response.status;
    let headers = http.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
    }
    headers.insert("odata-version", HeaderValue::from_static("4.0"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        headers.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ids.client_request_id) {
        headers.insert("client-request-id", v);
    }
    for (name, value) in response.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    http
}
