//! The HTTP edge: the accept loop (connection cap, header, idle and body timeouts), one axum
//! service that reads the request (with size and time limits), assigns the request id, hands
//! `/beta` requests to [`dispatch`](crate::dispatch::dispatch) and writes Graph's headers and
//! error envelope on every answer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant as Clock;

use axum::body::Body as AxumBody;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode};
use remediate_domain::Instant;
use remediate_wire::{error::error_json, ErrorKind, JSON_CONTENT_TYPE};
use tracing::Instrument;

use crate::dispatch::dispatch;
use crate::error::ApiError;
use crate::guard::{ConnectionTimer, ServerLimits, TimedStream};
use crate::respond::{ApiRequest, ApiResponse, Body};
use crate::AppState;

pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

/// Serve plain HTTP until `shutdown` completes, then drain in-flight requests ([`run_tls`]
/// without TLS).
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_tls(listener, state, None, shutdown).await
}

/// Serve until `shutdown` completes, then drain in-flight requests; over TLS when `tls` is given.
///
/// Each accepted connection (at most `max_connections`, `guard::LimitedListener`) is served by
/// hyper's HTTP/1 connection with keep-alive; its stream is a [`TimedStream`] that closes it when
/// the request head does not arrive within the header read timeout or when it stays idle between
/// requests past the idle timeout. On `shutdown` the listener is closed, idle connections are
/// closed, and requests in progress finish (hyper's graceful shutdown) before this returns.
/// Over TLS the handshake runs in the connection's own task, on the same stream, so it must
/// also end within the header read timeout; links then start with `https://`
/// ([`crate::Origin`]).
pub async fn run_tls(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    tls: Option<crate::tls::ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::Listener as _;
    let limits = state.guard.limits.clone();
    let mut listener = crate::guard::LimitedListener::new(listener, limits.max_connections);
    let router = router(state);
    let http = http_builder();
    let origin = tls.is_some().then_some(crate::Origin {
        scheme: "https",
        proxied: None,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let timer = Arc::new(ConnectionTimer::new(
            limits.header_read_timeout,
            limits.idle_timeout,
        ));
        let stream = TimedStream::new(stream, timer.clone());
        let service = ConnectionService {
            router: router.clone(),
            timer,
            origin: origin.clone(),
        };
        let Some(tls) = &tls else {
            let io = hyper_util::rt::TokioIo::new(stream);
            let connection = graceful.watch(http.serve_connection(io, service));
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
            continue;
        };
        let accepting = tls.acceptor().accept(stream);
        let (watcher, http) = (graceful.watcher(), http.clone());
        tokio::spawn(async move {
            let stream = match accepting.await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = watcher.watch(http.serve_connection(io, service)).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// hyper's HTTP/1 connection settings of every listener (the main one, the proxy's tunnels).
pub(crate) fn http_builder() -> hyper::server::conn::http1::Builder {
    let mut http = hyper::server::conn::http1::Builder::new();
    // The head and idle deadlines are the `TimedStream`'s (see `guard::ConnectionTimer`).
    http.keep_alive(true).header_read_timeout(None);
    http
}

/// The hyper service of one connection: the router, plus the marks of where each request starts
/// (its head was read) and ends (its response body was written), for the connection's timer, and
/// how its requests arrived ([`crate::Origin`], given to each request as an extension).
#[derive(Clone)]
pub(crate) struct ConnectionService {
    pub(crate) router: axum::Router,
    pub(crate) timer: Arc<ConnectionTimer>,
    pub(crate) origin: Option<crate::Origin>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = http::Response<TimedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        use tower::ServiceExt as _;
        self.timer.request_started();
        let done = ResponseDone(self.timer.clone());
        let router = self.router.clone();
        let mut request = request.map(AxumBody::new);
        if let Some(origin) = &self.origin {
            request.extensions_mut().insert(origin.clone());
        }
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(|inner| TimedBody::new(inner, Some(done))))
        })
    }
}

/// Ends the request on the connection's timer when dropped: hyper drops the response body once it
/// has written it (or when the connection ends).
pub(crate) struct ResponseDone(pub(crate) Arc<ConnectionTimer>);

impl Drop for ResponseDone {
    fn drop(&mut self) {
        self.0.response_finished();
    }
}

/// A response body that ends its request on the connection's timer when dropped (without a
/// [`ResponseDone`], e.g. a proxy's `CONNECT` answer, the connection stays busy: it is a tunnel).
pub(crate) struct TimedBody {
    inner: AxumBody,
    _done: Option<ResponseDone>,
}

impl TimedBody {
    pub(crate) fn new(inner: AxumBody, done: Option<ResponseDone>) -> TimedBody {
        TimedBody { inner, _done: done }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
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
        let mut request = request;
        // The login endpoints (`crate::entra`) answer with the request id as their `trace_id`.
        request
            .extensions_mut()
            .insert(crate::entra::TraceId(ids.request_id.clone()));
        if crate::exports::is_download(&path) {
            // An export's signed download link (no token; `crate::exports`).
            let (method, uri) = (request.method(), request.uri());
            return crate::exports::download(
                &state,
                method,
                uri,
                &ids.request_id,
                &ids.client_request_id,
            )
            .await;
        }
        if crate::dashboard::is_dashboard(&path) {
            // The dashboard's HTML pages (session cookie, not a token; `crate::dashboard`).
            return crate::dashboard::serve(state, request, &ids.request_id).await;
        }
        let result = route(&state, request).await;
        let response = match result {
            Ok(response) => response,
            Err(error) => error_response(&error, &ids),
        };
        let elapsed = started.elapsed();
        tracing::info!(
            status = response.status.as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request done"
        );
        let route = crate::metrics::request_route(&state, &path);
        state
            .metrics
            .request_done(route, &method, response.status, elapsed);
        to_http(response, &ids)
    }
    .instrument(span)
    .await
}

/// `POST /agent/enroll` and `POST /agent/token` (no token; `crate::agents`).
async fn agent_endpoint(
    state: &AppState,
    endpoint: &str,
    request: Request,
) -> Result<ApiResponse, ApiError> {
    let known = matches!(endpoint, "enroll" | "token");
    if !known {
        return Err(ApiError::new(
            remediate_wire::ErrorKind::NotFound,
            format!("There is no agent endpoint '{endpoint}'; use /agent/enroll or /agent/token."),
        ));
    }
    if request.method() != Method::POST {
        return Err(ApiError::new(
            remediate_wire::ErrorKind::MethodNotAllowed,
            format!("Only POST is allowed on /agent/{endpoint}."),
        )
        .with_header("allow", "POST".into()));
    }
    crate::ctx::check_json_content_type(request.headers())?;
    let (_, body) = request.into_parts();
    let body = read_body(body, &state.guard.limits).await?;
    let _slot = state.guard.admit()?;
    match endpoint {
        "enroll" => crate::agents::enroll(state, &body).await,
        _ => crate::agents::token(state, &body).await,
    }
}

async fn route(state: &AppState, request: Request) -> Result<ApiResponse, ApiError> {
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/healthz" => return Ok(text(StatusCode::OK, "ok")),
        "/openapi.json" => return Ok(crate::openapi::response()),
        "/metrics" if !state.metrics.separate_listener() => {
            return Ok(crate::metrics::response(state).await)
        }
        "/readyz" => {
            return match state.store.ping().await {
                Ok(()) => Ok(text(StatusCode::OK, "ready")),
                Err(e) => Err(ApiError::from(e)),
            }
        }
        _ => {}
    }
    state.guard.check_sizes(request.uri(), request.headers())?;
    if let Some(endpoint) = path.strip_prefix("/agent/") {
        return agent_endpoint(state, endpoint, request).await;
    }
    if crate::entra::is_entra_path(&path) {
        // The Entra-shaped login endpoints (no token; `crate::entra`).
        let (parts, body) = request.into_parts();
        let body = read_body(body, &state.guard.limits).await?;
        let _slot = state.guard.admit()?;
        return Ok(crate::entra::endpoint(
            state,
            &parts.method,
            &path,
            parts.uri.query().unwrap_or(""),
            &parts.headers,
            &parts.extensions,
            &body,
        )
        .await);
    }
    // Export jobs are served under /v1.0 too (`crate::exports`).
    let v1 = crate::exports::v1_path(&path)?;
    let Some(rest) = v1.or_else(|| {
        path.strip_prefix("/beta/")
            .or_else(|| (path == "/beta").then_some(""))
    }) else {
        return Err(ApiError::bad_request(format!(
            "Resource not found for the segment '{}'. This server serves the Microsoft Graph beta API under /beta.",
            path.trim_start_matches('/').split('/').next().unwrap_or("")
        )));
    };
    let base_url = state.link_base(request.headers(), request.extensions().get());
    let base_url = match v1 {
        Some(_) => format!("{}/v1.0", base_url.trim_end_matches("/beta")),
        None => base_url,
    };
    let (parts, body) = request.into_parts();
    // The body is read before the request takes an in-flight slot, so clients that send it
    // slowly (or not at all) hold only their connection, and only until the body deadlines.
    let body = read_body(body, &state.guard.limits).await?;
    let api_request = ApiRequest {
        method: parts.method,
        // `/beta//deviceManagement/…` (what the SDKs send when their base URL ends with `/`, as
        // msgraph-beta's default does) is the same path: one form, so paging tokens match it.
        path: rest.trim_start_matches('/').to_owned(),
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
    let _permit = state.guard.admit()?;
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

/// Read the body up to `max_body_bytes`. A larger body is drained (up to a hard cap, so the client
/// can read the 413 instead of seeing a reset connection) and answered with 413.
///
/// The whole body must arrive within `body_read_timeout`, and once `body_rate_grace` has passed,
/// at least `min_body_bytes_per_sec` on average: the next chunk is awaited only until the bytes
/// received so far fall below that rate. Otherwise 408, and the connection is closed.
pub(crate) async fn read_body(
    body: AxumBody,
    limits: &ServerLimits,
) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt;
    use hyper::body::Body as _;
    const DRAIN_CAP: usize = 64 * 1024 * 1024;
    if body.is_end_stream() {
        return Ok(bytes::Bytes::new());
    }
    let limit = limits.max_body_bytes;
    let started = tokio::time::Instant::now();
    let whole = started + limits.body_read_timeout;
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::new();
    let mut total = 0usize;
    loop {
        let due = match limits.min_body_bytes_per_sec {
            0 => whole,
            rate => {
                // The time `total` bytes cover at the minimum rate (never less than the grace).
                let covered = std::time::Duration::from_secs_f64(total as f64 / rate as f64);
                whole.min(started + covered.max(limits.body_rate_grace))
            }
        };
        let next = match tokio::time::timeout_at(due, stream.next()).await {
            Ok(next) => next,
            Err(_) if total > limit => {
                return Err(too_large(limit).with_header("connection", "close".into()))
            }
            Err(_) => return Err(slow_body(limits, total, due == whole)),
        };
        let Some(chunk) = next else { break };
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

fn slow_body(limits: &ServerLimits, received: usize, whole: bool) -> ApiError {
    let message = if whole {
        format!(
            "The request body did not arrive within {} s ({received} bytes received); the connection is closed.",
            limits.body_read_timeout.as_secs_f64()
        )
    } else {
        format!(
            "The request body arrived slower than the minimum of {} bytes per second ({received} bytes received); the connection is closed.",
            limits.min_body_bytes_per_sec
        )
    };
    ApiError::new(ErrorKind::ClientTimeout, message).with_header("connection", "close".into())
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
