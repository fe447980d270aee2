//! The dashboard (SPEC §8, `docs/dashboard.md`): server-rendered HTML pages at `/`, signed in
//! with a one-time link of `remediate login-link`, in a session stored in the database. Routes:
//! `GET /` (overview), `GET /scripts/{id}`, `GET /devices/{id}`, `POST /devices/{id}/run` (Run
//! remediation), `GET /login` (signed out), `GET /login/{token}` (redeem a link), `POST /logout`,
//! `GET /assets/dashboard.css`, the Export buttons `POST /scripts/{id}/export` and `POST /export`
//! with the job's page `GET /export-jobs/{id}` (`export`), `GET /scripts/{id}/history`, and the
//! OIDC sign-in `GET /oidc/login` and `GET /oidc/callback` (`oidc`). Pages read with the API's
//! permission checks and store calls (`pages`); sessions, cookies and CSRF are `session`;
//! escaping and the frame are `html`. The
//! editing pages (`/scripts/new`, `/scripts/{id}/edit|assign|delete`, `/groups…`, `/filters…`,
//! `/secrets…`, `GET /rules/check`, `GET /assets/dashboard.js`) are `edit` and `directory`, their
//! form bodies `form`. Every answer carries a strict Content-Security-Policy (scripts only from
//! this origin and never inline, same-origin style, forms only to this origin) and is never
//! cached, except the stylesheet and the script.

mod directory;
mod edit;
mod export;
mod form;
mod html;
mod oidc;
mod pages;
mod session;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode};

use crate::error::ApiError;
use crate::AppState;

pub use oidc::OidcLogin;
pub use session::{create_login_link, ABSOLUTE_TIMEOUT, COOKIE, IDLE_TIMEOUT, LINK_LIFETIME};

/// Is `path` one of the dashboard's?
pub fn is_dashboard(path: &str) -> bool {
    path == "/"
        || path == "/login"
        || path == "/logout"
        || path == "/export"
        || path == "/oidc/login"
        || path == "/oidc/callback"
        || edit::is_edit_path(path)
        || [
            "/login/",
            "/scripts/",
            "/devices/",
            "/assets/",
            "/export-jobs/",
        ]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// One answer of the dashboard.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn html(status: StatusCode, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/html; charset=utf-8",
            body,
            headers: Vec::new(),
        }
    }

    fn redirect(location: &str) -> Reply {
        Reply {
            status: StatusCode::SEE_OTHER,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
            headers: vec![("location", location.to_owned())],
        }
    }

    fn with(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// An error as a page: its status, and the message (escaped).
fn error_page(error: &ApiError) -> Reply {
    let status = error.kind.status();
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::BAD_REQUEST => "Bad request",
        _ => "Something went wrong",
    };
    let body = format!(
        "<h1>{title}</h1><p>{}</p><p><a href=\"/\">Back to the overview</a></p>",
        html::esc(&error.message)
    );
    let mut reply = Reply::html(status, html::page(title, None, &body));
    reply.headers.extend(error.headers.iter().cloned());
    reply
}

fn signed_out_page(status: StatusCode, message: &str) -> Reply {
    let body = format!(
        "<h1>Sign in</h1><p>{}</p><p>An administrator makes a one-time sign-in link on the server with \
         <code>remediate login-link --tenant TENANT --scope DeviceManagementScripts.Read.All …</code>; \
         it is valid for 5 minutes and opens one session.</p>",
        html::esc(message)
    );
    Reply::html(status, html::page("Sign in", None, &body))
}

/// Is the browser's connection https (or the public URL)?
fn secure(state: &AppState, request: &http::request::Parts) -> bool {
    request
        .extensions
        .get::<crate::Origin>()
        .is_some_and(|o| o.scheme == "https")
        || state
            .config
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
}

/// Serve a dashboard request (`is_dashboard(path)`), with the same size, body, in-flight and
/// time limits as the API.
pub async fn serve(state: Arc<AppState>, request: Request, request_id: &str) -> Response {
    let started = std::time::Instant::now();
    let route = crate::metrics::dashboard_label(request.uri().path());
    let method = request.method().clone();
    let reply = match handle(&state, request).await {
        Ok(reply) => reply,
        Err(error) => error_page(&error),
    };
    tracing::info!(
        status = reply.status.as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request done"
    );
    state
        .metrics
        .request_done(route, &method, reply.status, started.elapsed());
    to_http(reply, request_id)
}

async fn handle(state: &AppState, request: Request) -> Result<Reply, ApiError> {
    state.guard.check_sizes(request.uri(), request.headers())?;
    let (parts, body) = request.into_parts();
    let body = crate::server::read_body(body, &state.guard.limits).await?;
    let _slot = state.guard.admit()?;
    let timeout = state.guard.limits.request_timeout;
    match tokio::time::timeout(timeout, route(state, &parts, &body)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            remediate_wire::ErrorKind::Timeout,
            format!(
                "The page did not complete within {} s.",
                timeout.as_secs_f64()
            ),
        )),
    }
}

fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError::new(
        remediate_wire::ErrorKind::MethodNotAllowed,
        format!("Only {allow} is allowed here."),
    )
    .with_header("allow", allow.to_owned())
}

/// A path segment, percent-decoded.
fn segment(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

async fn route(
    state: &AppState,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let path = parts.uri.path();
    let method = &parts.method;
    let get = *method == Method::GET || *method == Method::HEAD;
    let store = state.store.as_ref();
    if path == "/assets/dashboard.css" {
        if !get {
            return Err(method_not_allowed("GET"));
        }
        return Ok(Reply {
            status: StatusCode::OK,
            content_type: "text/css; charset=utf-8",
            body: html::CSS.to_owned(),
            headers: vec![("cache-control", "public, max-age=3600".to_owned())],
        });
    }
    if path == "/assets/dashboard.js" {
        return edit::script_asset(get);
    }
    if path == "/login" {
        if !get {
            return Err(method_not_allowed("GET"));
        }
        if state.config.dashboard_oidc.is_some() {
            let body = "<h1>Sign in</h1><p><a class=\"button\" id=\"oidc-sign-in\" href=\"/oidc/login\">Sign in</a> \
                        with your organization's account, or open a one-time sign-in link you were given.</p>";
            return Ok(Reply::html(
                StatusCode::OK,
                html::page("Sign in", None, body),
            ));
        }
        return Ok(signed_out_page(
            StatusCode::OK,
            "Open the sign-in link you were given.",
        ));
    }
    if path == "/oidc/login" || path == "/oidc/callback" {
        if !get {
            return Err(method_not_allowed("GET"));
        }
        let Some(config) = &state.config.dashboard_oidc else {
            return Err(ApiError::not_found(
                "Sign-in with OIDC is not configured on this server (serve --dashboard-oidc-issuer).",
            ));
        };
        let secure = secure(state, parts);
        if path == "/oidc/login" {
            let (url, cookie) = oidc::start(state, config, secure).await?;
            return Ok(Reply::redirect(&url).with("set-cookie", cookie));
        }
        let params = html::parse_pairs(parts.uri.query().unwrap_or(""));
        return Ok(
            match oidc::finish(state, config, &parts.headers, &params).await {
                // A page of this origin moves on to the overview, so the SameSite=Strict
                // cookie is sent (a redirect chain that began at the issuer is cross-site).
                Ok(id) => Reply::html(
                    StatusCode::OK,
                    html::page(
                        "Signed in",
                        None,
                        "<h1>Signed in</h1><p><a id=\"continue\" href=\"/\">Continue to the dashboard</a></p>",
                    ),
                )
                .with("set-cookie", session::set_cookie(&id, secure))
                .with("set-cookie", oidc::clear_pending(secure))
                .with("refresh", "0; url=/".to_owned()),
                Err(error) => {
                    let mut page = error_page(&error);
                    page.headers.push(("set-cookie", oidc::clear_pending(secure)));
                    page
                }
            },
        );
    }
    if let Some(token) = path.strip_prefix("/login/") {
        if !get {
            return Err(method_not_allowed("GET"));
        }
        return Ok(match session::redeem(store, token).await? {
            Some((id, _)) => Reply::redirect("/")
                .with("set-cookie", session::set_cookie(&id, secure(state, parts))),
            None => signed_out_page(
                StatusCode::FORBIDDEN,
                "This sign-in link is not valid: it was used already, it has expired, or it never existed.",
            ),
        });
    }
    let signed = session::current(store, &parts.headers).await?;
    let form = html::parse_pairs(std::str::from_utf8(body).unwrap_or(""));
    let form_value = |name: &str| {
        form.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if path == "/logout" {
        if *method != Method::POST {
            return Err(method_not_allowed("POST"));
        }
        let clear = session::clear_cookie(secure(state, parts));
        let Some(signed) = signed else {
            return Ok(Reply::redirect("/login").with("set-cookie", clear));
        };
        if !session::same_origin_form(&signed, &parts.headers, form_value("csrf")) {
            return Err(csrf_refused());
        }
        store.end_session(&session::hash(&signed.id)).await?;
        return Ok(Reply::redirect("/login").with("set-cookie", clear));
    }
    let Some(signed) = signed else {
        if get {
            return Ok(Reply::redirect("/login"));
        }
        return Err(crate::auth::forbidden(
            "Sign in first: this session does not exist or has ended.",
        ));
    };
    let params = pages::Params(html::parse_pairs(parts.uri.query().unwrap_or("")));
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // The editing pages (`edit`, `directory`), before `/scripts/{id}` would take `/scripts/new`.
    if let Some(reply) = edit::route(state, parts, body, &signed, &segments).await {
        return reply;
    }
    match segments.as_slice() {
        [""] if get => Ok(Reply::html(
            StatusCode::OK,
            pages::overview(state, &signed, &params).await?,
        )),
        ["scripts", id] if get && !id.is_empty() => Ok(Reply::html(
            StatusCode::OK,
            pages::script(state, &signed, &segment(id), &params).await?,
        )),
        ["scripts", id, "history"] if get && !id.is_empty() => Ok(Reply::html(
            StatusCode::OK,
            pages::history(state, &signed, &segment(id)).await?,
        )),
        ["devices", id] if get && !id.is_empty() => Ok(Reply::html(
            StatusCode::OK,
            pages::device(state, &signed, &segment(id), &params).await?,
        )),
        ["devices", id, "run"] if *method == Method::POST && !id.is_empty() => {
            if !session::same_origin_form(&signed, &parts.headers, form_value("csrf")) {
                return Err(csrf_refused());
            }
            let id = segment(id);
            pages::run_remediation(state, &signed, &id, form_value("script").unwrap_or("")).await?;
            Ok(Reply::redirect(&format!(
                "/devices/{}?queued=1",
                html::enc(&id)
            )))
        }
        ["scripts", id, "export"] if *method == Method::POST && !id.is_empty() => {
            if !session::same_origin_form(&signed, &parts.headers, form_value("csrf")) {
                return Err(csrf_refused());
            }
            let id = segment(id);
            let scope = export::Scope::Script {
                id: &id,
                detection: form_value("detection").unwrap_or(""),
                remediation: form_value("remediation").unwrap_or(""),
            };
            let base = state.link_base(&parts.headers, parts.extensions.get());
            let job = export::create(state, &signed, scope, &base).await?;
            Ok(Reply::redirect(&format!(
                "/export-jobs/{}",
                html::enc(&job)
            )))
        }
        ["export"] if *method == Method::POST => {
            if !session::same_origin_form(&signed, &parts.headers, form_value("csrf")) {
                return Err(csrf_refused());
            }
            let base = state.link_base(&parts.headers, parts.extensions.get());
            let job = export::create(state, &signed, export::Scope::Everything, &base).await?;
            Ok(Reply::redirect(&format!(
                "/export-jobs/{}",
                html::enc(&job)
            )))
        }
        ["export-jobs", id] if get && !id.is_empty() => Ok(Reply::html(
            StatusCode::OK,
            export::job_page(state, &signed, &segment(id)).await?,
        )),
        ["scripts", id, "export"] if !id.is_empty() => Err(method_not_allowed("POST")),
        ["scripts", id, "history"] if !id.is_empty() => Err(method_not_allowed("GET")),
        ["export"] => Err(method_not_allowed("POST")),
        ["export-jobs", id] if !id.is_empty() => Err(method_not_allowed("GET")),
        [""] => Err(method_not_allowed("GET")),
        ["scripts", id] | ["devices", id] if !id.is_empty() => Err(method_not_allowed("GET")),
        ["devices", id, "run"] if !id.is_empty() => Err(method_not_allowed("POST")),
        _ => Err(ApiError::not_found(format!(
            "There is no dashboard page at '{path}'."
        ))),
    }
}

fn csrf_refused() -> ApiError {
    crate::auth::forbidden(
        "This form was not sent from this dashboard's own page (its CSRF token or origin is wrong); nothing was changed.",
    )
}

fn to_http(reply: Reply, request_id: &str) -> Response {
    let mut http = Response::new(Body::from(reply.body));
    *http.status_mut() = reply.status;
    let headers = http.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    for (name, value) in [
        ("cache-control", "no-store"),
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("request-id", v);
    }
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            // Several cookies may be set at once (the session, and the end of an OIDC sign-in).
            if name == "set-cookie" {
                headers.append(name, v);
            } else {
                headers.insert(name, v);
            }
        }
    }
    http
}
