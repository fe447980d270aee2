//! The Entra-shaped token endpoint: what MSAL-based clients (azure-identity, msal-node, the Graph
//! SDKs' credential providers) ask of `login.microsoftonline.com`, answered by remediate, so that
//! such a client gets tokens this server accepts without any code change (issue 16). No token is
//! needed; `crate::server` hands every `/{tenant}/oauth2/…`, `/{tenant}/v2.0/…` and
//! `/{tenant}/discovery/…` request here.
//!
//! - `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant of an application registered
//!   with `remediate app create` (its secret in the form or by HTTP Basic). `<resource>/.default`
//!   yields an hour's token signed by the local key, as `remediate token` mints, carrying the
//!   app's roles (`roles`), scopes (`scp`), `appid`/`azp` and `tid`. remediate is the only resource
//!   it issues tokens for, so every resource's `.default` yields a token for Graph (a client that
//!   derives its scope from remediate's own URL works too).
//! - `GET /{tenant}/v2.0/.well-known/openid-configuration`, `GET /{tenant}/discovery/v2.0/keys`
//!   (the local Ed25519 key as an OKP JWK) and `GET /common/discovery/instance` (MSAL's instance
//!   discovery), with URLs on the scheme and host the request came to (through the proxy mode:
//!   `https://login.microsoftonline.com`).
//! - Errors are Entra's JSON (`error`, `error_description` starting with the AADSTS code,
//!   `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`), with the statuses and
//!   codes Entra uses for the same mistakes; `authorize` and the other interactive endpoints answer
//!   a clear `invalid_request`: remediate has no users to sign in.

use http::{HeaderMap, Method, StatusCode};
use remediate_domain::agents::hash_secret;
use remediate_domain::Instant;
use serde::Serialize;
use serde_json::{json, Value as Json};

use crate::auth::{AUDIENCE, LOCAL_ISSUER};
use crate::respond::{ApiResponse, Body};
use crate::AppState;

/// Lifetime of the tokens the endpoint issues (Entra's `expires_in` for app tokens is about an
/// hour; it answers 3599).
pub const TOKEN_SECONDS: u64 = 3599;

/// The request id the edge assigned (`request-id` header, the log's `request_id`), put into the
/// request's extensions so Entra-shaped answers can carry it as `trace_id`.
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// The hosts of Microsoft's public cloud login service: reached only over https, and aliases of
/// one another in instance discovery.
const MICROSOFT_LOGIN_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.windows.net",
    "login.microsoft.com",
    "sts.windows.net",
];

/// OAuth scopes that name no resource (OpenID Connect's); a client credentials request may carry
/// them beside the `.default` scope.
const OIDC_SCOPES: &[&str] = &["openid", "profile", "offline_access", "email"];

/// Is `path` one of the login endpoints this module answers: a first segment (the tenant) and
/// then `oauth2/`, `v2.0/` or `discovery/`?
pub fn is_entra_path(path: &str) -> bool {
    let mut segments = path.strip_prefix('/').unwrap_or(path).splitn(3, '/');
    let (Some(first), Some(second)) = (segments.next(), segments.next()) else {
        return false;
    };
    !first.is_empty()
        && !matches!(first, "beta" | "agent")
        && matches!(second, "oauth2" | "v2.0" | "discovery")
}

/// Is `text` a GUID in its usual form (8-4-4-4-12 hexadecimal digits)? Tenant ids and client ids
/// of the token endpoint are.
pub fn is_guid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The tenant segment of a login URL, as Entra reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tenant {
    /// A tenant id (lower case).
    Id(String),
    /// `common` or `organizations`: any organization's tenant (not for client credentials).
    Multi(&'static str),
    /// Looks like a domain name (`contoso.onmicrosoft.com`) or is `consumers`: a tenant this
    /// server does not know (it names tenants by id only).
    Unknown(String),
    /// Neither an id nor a domain name.
    Invalid(String),
}

impl Tenant {
    fn parse(segment: &str) -> Tenant {
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8_lossy()
            .into_owned();
        let lower = decoded.to_ascii_lowercase();
        if is_guid(&lower) {
            return Tenant::Id(lower);
        }
        match lower.as_str() {
            "common" => return Tenant::Multi("common"),
            "organizations" => return Tenant::Multi("organizations"),
            "consumers" => return Tenant::Unknown(decoded),
            _ => {}
        }
        let dns = lower.contains('.')
            && lower.len() <= 253
            && lower.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if dns {
            Tenant::Unknown(decoded)
        } else {
            Tenant::Invalid(decoded)
        }
    }

    /// The tenant as it appears in URLs of the discovery documents.
    fn segment(&self) -> &str {
        match self {
            Tenant::Id(id) => id,
            Tenant::Multi(name) => name,
            Tenant::Unknown(name) | Tenant::Invalid(name) => name,
        }
    }
}

/// The ids an Entra-shaped answer carries: `trace_id` (the edge's request id) and
/// `correlation_id` (the client's `client-request-id`, as MSAL sends it, else the request id, as
/// the edge echoes it).
struct Ids {
    trace: String,
    correlation: String,
}

impl Ids {
    fn of(extensions: &http::Extensions, headers: &HeaderMap) -> Ids {
        let trace = extensions
            .get::<TraceId>()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), |t| t.0.clone());
        let correlation = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map_or_else(|| trace.clone(), str::to_owned);
        Ids { trace, correlation }
    }
}

/// An Entra error: its OAuth `error`, its HTTP status, its AADSTS number and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntraError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    message: String,
}

fn fail(
    status: StatusCode,
    error: &'static str,
    code: u32,
    message: impl Into<String>,
) -> EntraError {
    EntraError {
        status,
        error,
        code,
        message: message.into(),
    }
}

fn missing(parameter: &str) -> EntraError {
    fail(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900_144,
        format!("The request body must contain the following parameter: '{parameter}'."),
    )
}

fn malformed(message: impl Into<String>) -> EntraError {
    fail(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        9_002_313,
        format!(
            "Invalid request. Request is malformed or invalid: {}",
            message.into()
        ),
    )
}

fn unknown_app(client_id: &str, tenant: &str) -> EntraError {
    fail(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700_016,
        format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. \
             This can happen if the application has not been installed by the administrator of the \
             tenant or consented to by any user in the tenant. You may have sent your authentication \
             request to the wrong tenant. (Register one with `remediate app create --tenant {tenant} \
             --role …`.)"
        ),
    )
}

fn invalid_secret(client_id: &str, why: &str) -> EntraError {
    fail(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_215,
        format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the \
             client secret value, not the client secret ID, for a secret added to app \
             '{client_id}'.{why}"
        ),
    )
}

/// The tenant errors of a request that needs one specific tenant (the token endpoint).
fn tenant_error(tenant: &Tenant) -> Option<EntraError> {
    match tenant {
        Tenant::Id(_) => None,
        Tenant::Multi(_) => Some(fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            50_059,
            "No tenant-identifying information found in either the request or implied by any \
             provided credentials. (The client credentials flow needs the tenant id in the URL, \
             not 'common' or 'organizations'.)",
        )),
        // The token endpoint says `invalid_request` where discovery says `invalid_tenant`.
        Tenant::Unknown(name) => Some(EntraError {
            error: "invalid_request",
            ..tenant_not_found(name)
        }),
        Tenant::Invalid(name) => Some(fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_023,
            format!(
                "Specified tenant identifier '{name}' is neither a valid DNS name, nor a valid external domain."
            ),
        )),
    }
}

fn tenant_not_found(name: &str) -> EntraError {
    fail(
        StatusCode::BAD_REQUEST,
        "invalid_tenant",
        90_002,
        format!(
            "Tenant '{name}' not found. Check to make sure you have the correct tenant ID and are \
             signing into the correct cloud. (remediate knows tenants by their id, a GUID.)"
        ),
    )
}

/// Render an Entra error: `error_description` is `AADSTS<code>: <message>` followed by the trace
/// and correlation ids and the timestamp, as Entra writes it.
fn error_response(e: &EntraError, ids: &Ids) -> ApiResponse {
    let now = Instant::now().to_seconds_string();
    let timestamp = format!("{}Z", now.trim_end_matches('Z').replace('T', " "));
    let body = json!({
        "error": e.error,
        "error_description": format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {timestamp}",
            e.code, e.message, ids.trace, ids.correlation
        ),
        "error_codes": [e.code],
        "timestamp": timestamp,
        "trace_id": ids.trace,
        "correlation_id": ids.correlation,
        "error_uri": format!("https://login.microsoftonline.com/error?code={}", e.code),
    });
    let mut response = json_response(e.status, &body, &ids.trace);
    if e.status == StatusCode::UNAUTHORIZED {
        response = response.with_header("www-authenticate", "Basic realm=\"remediate\"".into());
    }
    response
}

fn json_response(status: StatusCode, body: &Json, trace: &str) -> ApiResponse {
    ApiResponse {
        status,
        headers: vec![
            ("content-type", "application/json; charset=utf-8".into()),
            ("x-ms-request-id", trace.to_owned()),
        ],
        body: Body::Json(serde_json::to_vec(body).unwrap_or_default()),
    }
}

/// Answer one login request (`is_entra_path(path)`); `body` is the request body, already read.
pub async fn endpoint(
    state: &AppState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    extensions: &http::Extensions,
    body: &[u8],
) -> ApiResponse {
    let ids = Ids::of(extensions, headers);
    let (segment, rest) = path
        .strip_prefix('/')
        .unwrap_or(path)
        .split_once('/')
        .unwrap_or_default();
    let tenant = Tenant::parse(segment);
    let origin = origin(state, headers, extensions);
    let get_only = |answer: &dyn Fn() -> Result<ApiResponse, EntraError>| {
        if method != Method::GET && method != Method::HEAD {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900_561,
                format!("The endpoint only accepts GET requests. Received a {method} request."),
            ));
        }
        answer()
    };
    let result = match rest {
        "oauth2/v2.0/token" => token(state, method, &tenant, headers, body, &ids).await,
        "v2.0/.well-known/openid-configuration" => {
            get_only(&|| openid_configuration(&origin, &tenant, &ids))
        }
        "discovery/v2.0/keys" | "discovery/keys" => get_only(&|| keys(state, &tenant, &ids)),
        "discovery/instance" => get_only(&|| instance_discovery(&origin, &tenant, query, &ids)),
        "oauth2/v2.0/authorize"
        | "oauth2/authorize"
        | "oauth2/v2.0/devicecode"
        | "oauth2/devicecode"
        | "oauth2/v2.0/logout"
        | "oauth2/logout"
        | "oauth2/token" => Err(malformed(format!(
            "remediate serves only the client credentials flow of the v2.0 endpoint (POST \
                 /{{tenant}}/oauth2/v2.0/token with a client id and secret from `remediate app \
                 create`); '{rest}' (interactive sign-in, device code, v1.0 tokens) is not \
                 available: there are no users to sign in."
        ))),
        _ => Err(fail(
            StatusCode::NOT_FOUND,
            "invalid_request",
            9_002_313,
            format!(
                "Invalid request. '/{segment}/{rest}' is not an endpoint of this server; it serves \
                 /{{tenant}}/oauth2/v2.0/token, /{{tenant}}/v2.0/.well-known/openid-configuration, \
                 /{{tenant}}/discovery/v2.0/keys and /common/discovery/instance."
            ),
        )),
    };
    match result {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(
                error = e.error,
                code = e.code,
                "login endpoint refused the request"
            );
            error_response(&e, &ids)
        }
    }
}

/// `scheme://host` of the login service as the client reached it: Microsoft's login hosts (the
/// proxy mode) are always https; otherwise where the server's links point
/// ([`AppState::link_base`]: the host asked of the proxy, `--public-url`, or the request's `Host`
/// on the connection's scheme), on https when a TLS-terminating proxy in front says so
/// (`X-Forwarded-Proto`).
fn origin(state: &AppState, headers: &HeaderMap, extensions: &http::Extensions) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let bare = host.split(':').next().unwrap_or_default();
    if MICROSOFT_LOGIN_HOSTS.contains(&bare) {
        return format!("https://{host}");
    }
    let base = state.link_base(headers, extensions.get::<crate::Origin>());
    let base = base.strip_suffix("/beta").unwrap_or(&base).to_owned();
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    match base.strip_prefix("http://") {
        Some(rest) if forwarded_https => format!("https://{rest}"),
        _ => base,
    }
}

/// The OpenID Connect discovery document of a tenant (also of `common` and `organizations`,
/// whose issuer says `{tenantid}` as Entra's does).
fn openid_configuration(
    origin: &str,
    tenant: &Tenant,
    ids: &Ids,
) -> Result<ApiResponse, EntraError> {
    match tenant {
        Tenant::Id(_) | Tenant::Multi(_) => {}
        Tenant::Unknown(name) | Tenant::Invalid(name) => return Err(tenant_not_found(name)),
    }
    let t = tenant.segment();
    let issuer_tenant = match tenant {
        Tenant::Id(id) => id.as_str(),
        _ => "{tenantid}",
    };
    let body = json!({
        "token_endpoint": format!("{origin}/{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "grant_types_supported": ["client_credentials"],
        "jwks_uri": format!("{origin}/{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{origin}/{issuer_tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{origin}/{t}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{origin}/{t}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{origin}/{t}/oauth2/v2.0/logout"),
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "appid", "azp", "roles", "scp",
        ],
        "tenant_region_scope": "WW",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    });
    Ok(json_response(StatusCode::OK, &body, &ids.trace))
}

/// The JWKS: the local Ed25519 key (the key of every token the endpoint issues) as an OKP JWK.
fn keys(state: &AppState, tenant: &Tenant, ids: &Ids) -> Result<ApiResponse, EntraError> {
    match tenant {
        Tenant::Id(_) | Tenant::Multi(_) => {}
        Tenant::Unknown(name) | Tenant::Invalid(name) => return Err(tenant_not_found(name)),
    }
    use base64::Engine as _;
    let key = &state.auth.local;
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public_key());
    let body = json!({
        "keys": [{
            "kty": "OKP",
            "use": "sig",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "kid": key.kid(),
            "x": x,
        }]
    });
    Ok(json_response(StatusCode::OK, &body, &ids.trace))
}

/// MSAL's instance discovery (`GET /common/discovery/instance?api-version=…&authorization_endpoint=
/// https://HOST/TENANT/oauth2/v2.0/authorize`): where the authority's OpenID configuration is,
/// and the aliases of its host. Any https host is accepted (remediate answers for whatever name
/// it is reached by); Microsoft's public cloud hosts are aliases of one another.
fn instance_discovery(
    origin: &str,
    tenant: &Tenant,
    query: &str,
    ids: &Ids,
) -> Result<ApiResponse, EntraError> {
    match tenant {
        Tenant::Id(_) | Tenant::Multi(_) => {}
        Tenant::Unknown(name) | Tenant::Invalid(name) => return Err(tenant_not_found(name)),
    }
    let params = parse_form(query.as_bytes()).map_err(malformed)?;
    let Some(endpoint) = first(&params, "authorization_endpoint") else {
        return Err(missing("authorization_endpoint"));
    };
    let invalid = || {
        fail(
            StatusCode::BAD_REQUEST,
            "invalid_instance",
            50_049,
            format!(
                "Unknown or invalid instance: '{endpoint}' is not an https authority URL with a \
                 tenant (https://HOST/TENANT/oauth2/v2.0/authorize)."
            ),
        )
    };
    let rest = endpoint.strip_prefix("https://").ok_or_else(invalid)?;
    let (host, path) = rest.split_once('/').ok_or_else(invalid)?;
    let authority_tenant = path.split('/').next().unwrap_or_default();
    let host = host.to_ascii_lowercase();
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c));
    if !host_ok || authority_tenant.is_empty() {
        return Err(invalid());
    }
    let microsoft = json!({
        "preferred_network": "login.microsoftonline.com",
        "preferred_cache": "login.windows.net",
        "aliases": MICROSOFT_LOGIN_HOSTS,
    });
    let mut metadata = vec![microsoft];
    let own_host = origin.split_once("://").map_or("", |(_, h)| h);
    for candidate in [host.as_str(), own_host] {
        let bare = candidate.split(':').next().unwrap_or_default();
        let listed = MICROSOFT_LOGIN_HOSTS.contains(&bare)
            || metadata.iter().any(|m| m["preferred_network"] == candidate);
        if !candidate.is_empty() && !listed {
            metadata.push(json!({
                "preferred_network": candidate,
                "preferred_cache": candidate,
                "aliases": [candidate],
            }));
        }
    }
    let body = json!({
        "tenant_discovery_endpoint": format!(
            "https://{host}/{authority_tenant}/v2.0/.well-known/openid-configuration"
        ),
        "api-version": "1.1",
        "metadata": metadata,
    });
    Ok(json_response(StatusCode::OK, &body, &ids.trace))
}

/// `application/x-www-form-urlencoded` pairs (also a query string); an error for text that is not
/// UTF-8 once decoded. Public (hidden) for the `token_form` fuzz target.
#[doc(hidden)]
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8".to_owned())?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((form_decode(name)?, form_decode(value)?))
        })
        .collect()
}

/// One form-url-encoded component: `+` is a space, then percent-decoding.
fn form_decode(text: &str) -> Result<String, String> {
    let plus = text.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "a form value is not UTF-8 once decoded".to_owned())
}

/// The value of a parameter (empty counts as absent, as Entra treats it).
fn first<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// The client id and secret of an `Authorization: Basic` header (RFC 6749 §2.3.1: each
/// form-url-encoded before base64); `None` without one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, EntraError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default().trim();
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed(
            "the Authorization header is not 'Basic <credentials>'.",
        ));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed(format!(
            "the token endpoint takes client credentials by HTTP Basic authentication or in the \
             form, not a '{scheme}' Authorization header."
        )));
    }
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| malformed("the Basic credentials are not base64 of UTF-8 text."))?;
    let Some((id, secret)) = decoded.split_once(':') else {
        return Err(malformed(
            "the Basic credentials are not 'client_id:client_secret'.",
        ));
    };
    Ok(Some((
        form_decode(id).map_err(malformed)?,
        form_decode(secret).map_err(malformed)?,
    )))
}

/// What the `.default` scope of a client credentials request names: the resource, checked as
/// Entra checks it.
fn check_scope(scope: &str) -> Result<(), EntraError> {
    let requested: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !OIDC_SCOPES.contains(&s.to_ascii_lowercase().as_str()))
        .collect();
    let invalid = || {
        fail(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70_011,
            format!(
                "The provided request must include a 'scope' input parameter. The provided value \
                 for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        )
    };
    if requested.is_empty() {
        return Err(invalid());
    }
    let mut resources = Vec::new();
    for s in &requested {
        let Some(resource) = s.strip_suffix("/.default") else {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1_002_012,
                format!(
                    "The provided value for scope {s} is not valid. Client credential flows must \
                     have a scope value with /.default suffixed to the resource identifier \
                     (application ID URI)."
                ),
            ));
        };
        let resource = resource.trim_end_matches('/');
        if resource.is_empty() {
            return Err(invalid());
        }
        if !resources.contains(&resource) {
            resources.push(resource);
        }
    }
    if resources.len() > 1 {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            28_000,
            format!(
                "Provided value for the input parameter scope is not valid because it contains \
                 more than one resource. Scope {scope} is not valid."
            ),
        ));
    }
    Ok(())
}

/// The claims of an app token: Graph's application-token shape (v1.0: `appid`, `appidacr`,
/// `idtyp: app`), also with v2.0's `azp`, issued by the local key (`iss`, `aud` as every local
/// token, so the server verifies it like one from `remediate token`).
#[derive(Serialize)]
struct AppClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    tid: &'a str,
    sub: &'a str,
    oid: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    appid: &'a str,
    azp: &'a str,
    app_displayname: &'a str,
    appidacr: &'a str,
    azpacr: &'a str,
    idtyp: &'a str,
    ver: &'a str,
    uti: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    scp: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant.
async fn token(
    state: &AppState,
    method: &Method,
    tenant: &Tenant,
    headers: &HeaderMap,
    body: &[u8],
    ids: &Ids,
) -> Result<ApiResponse, EntraError> {
    if method != Method::POST {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_561,
            format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {method} request."
            ),
        ));
    }
    if let Some(e) = tenant_error(tenant) {
        return Err(e);
    }
    let Tenant::Id(tenant_id) = tenant else {
        return Err(tenant_not_found(tenant.segment()));
    };
    let form_content = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    // Entra reads only a form body: anything else carries none of the parameters.
    let params = if form_content {
        parse_form(body).map_err(malformed)?
    } else {
        Vec::new()
    };
    for (i, (name, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(n, _)| n == name) {
            return Err(malformed(format!(
                "the parameter '{name}' is given more than once."
            )));
        }
    }
    let Some(grant) = first(&params, "grant_type") else {
        return Err(missing("grant_type"));
    };
    if grant != "client_credentials" {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70_003,
            format!(
                "The app requested an unsupported grant type '{grant}'. remediate issues tokens \
                 for the client credentials grant only (grant_type=client_credentials)."
            ),
        ));
    }
    let basic = basic_credentials(headers)?;
    let form_id = first(&params, "client_id");
    let client_id = match (&basic, form_id) {
        (Some((id, _)), Some(form)) if !id.eq_ignore_ascii_case(form) => {
            return Err(malformed(
                "the client_id of the form and of the Basic credentials differ.",
            ))
        }
        (Some((id, _)), _) => id.clone(),
        (None, Some(form)) => form.to_owned(),
        (None, None) => return Err(missing("client_id")),
    };
    let client_id = client_id.trim().to_ascii_lowercase();
    let Some(scope) = first(&params, "scope") else {
        return Err(missing("scope"));
    };
    check_scope(scope)?;
    if first(&params, "client_assertion").is_some() {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            700_027,
            "Client assertion failed signature validation: remediate's apps authenticate with a \
             client secret only (certificates and federated credentials are not supported).",
        ));
    }
    let secret =
        match (&basic, first(&params, "client_secret")) {
            (Some(_), Some(_)) => return Err(malformed(
                "the client secret is given both in the form and by HTTP Basic authentication; \
                 use one.",
            )),
            (Some((_, secret)), None) if !secret.is_empty() => secret.clone(),
            (None, Some(secret)) => secret.to_owned(),
            _ => {
                return Err(fail(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7_000_218,
                    "The request body must contain the following parameter: 'client_assertion' or \
                 'client_secret'.",
                ))
            }
        };
    let app = if is_guid(&client_id) {
        state.store.app(tenant_id, &client_id).await.map_err(|e| {
            tracing::warn!(error = %e, "the token endpoint could not read the app");
            fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                90_033,
                "A transient error has occurred. Please try again.",
            )
        })?
    } else {
        None
    };
    let Some(app) = app else {
        return Err(unknown_app(&client_id, tenant_id));
    };
    let matches = hash_secret(&secret) == app.secret_hash;
    if !matches {
        return Err(invalid_secret(&client_id, ""));
    }
    if app.revoked.is_some() {
        return Err(invalid_secret(
            &client_id,
            " The app was revoked (`remediate app revoke`); register a new one.",
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = AppClaims {
        iss: LOCAL_ISSUER,
        aud: AUDIENCE,
        tid: tenant_id,
        sub: &app.client_id,
        oid: &app.client_id,
        iat: now,
        nbf: now,
        exp: now + TOKEN_SECONDS,
        appid: &app.client_id,
        azp: &app.client_id,
        app_displayname: &app.display_name,
        appidacr: "1",
        azpacr: "1",
        idtyp: "app",
        ver: "1.0",
        uti: uuid::Uuid::new_v4().simple().to_string(),
        roles: &app.roles,
        scp: (!app.scopes.is_empty()).then(|| app.scopes.join(" ")),
    };
    let access_token = state.auth.local.mint(&claims).map_err(|e| {
        tracing::error!(error = %e, "minting an app token failed");
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            90_033,
            "The token could not be signed.",
        )
    })?;
    tracing::info!(tenant = %tenant_id, client_id = %app.client_id, "issued an app token");
    let body = json!({
        "token_type": "Bearer",
        "expires_in": TOKEN_SECONDS,
        "ext_expires_in": TOKEN_SECONDS,
        "access_token": access_token,
    });
    Ok(json_response(StatusCode::OK, &body, &ids.trace)
        .with_header("cache-control", "no-store, no-cache".into())
        .with_header("pragma", "no-cache".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_paths_are_recognised_and_graph_paths_are_not() {
        for path in [
            "/b1f6c7a0-0000-4000-8000-000000000001/oauth2/v2.0/token",
            "/common/discovery/instance",
            "/organizations/v2.0/.well-known/openid-configuration",
            "/contoso.onmicrosoft.com/discovery/v2.0/keys",
        ] {
            assert!(is_entra_path(path), "{path}");
        }
        for path in [
            "/beta/deviceManagement/deviceHealthScripts",
            "/beta/oauth2/x",
            "/agent/token",
            "/healthz",
            "/",
            "//oauth2/v2.0/token",
        ] {
            assert!(!is_entra_path(path), "{path}");
        }
    }

    #[test]
    fn tenants_are_read_as_entra_reads_them() {
        assert_eq!(
            Tenant::parse("B1F6C7A0-0000-4000-8000-00000000000A"),
            Tenant::Id("b1f6c7a0-0000-4000-8000-00000000000a".into())
        );
        assert_eq!(Tenant::parse("common"), Tenant::Multi("common"));
        assert_eq!(
            Tenant::parse("Organizations"),
            Tenant::Multi("organizations")
        );
        assert_eq!(
            Tenant::parse("contoso.onmicrosoft.com"),
            Tenant::Unknown("contoso.onmicrosoft.com".into())
        );
        assert_eq!(
            Tenant::parse("consumers"),
            Tenant::Unknown("consumers".into())
        );
        assert_eq!(
            Tenant::parse("tenant-a"),
            Tenant::Invalid("tenant-a".into())
        );
        assert!(!is_guid("b1f6c7a000004000800000000000000a"));
        assert!(!is_guid("{b1f6c7a0-0000-4000-8000-00000000000a}"));
    }

    #[test]
    fn scopes_follow_the_client_credentials_rules() {
        assert!(check_scope("https://graph.microsoft.com/.default").is_ok());
        assert!(check_scope("https://graph.microsoft.com//.default openid profile").is_ok());
        assert!(check_scope("00000003-0000-0000-c000-000000000000/.default").is_ok());
        let code = |s: &str| check_scope(s).unwrap_err().code;
        assert_eq!(code("https://graph.microsoft.com/User.Read.All"), 1_002_012);
        assert_eq!(code("openid"), 70_011);
        assert_eq!(code("/.default"), 70_011);
        assert_eq!(
            code("https://graph.microsoft.com/.default api://other/.default"),
            28_000
        );
    }

    #[test]
    fn forms_and_basic_credentials_decode_as_rfc_6749_says() {
        let form = parse_form(b"a=1&scope=https%3A%2F%2Fx%2F.default+openid&b=").unwrap();
        assert_eq!(form[1].1, "https://x/.default openid");
        assert_eq!(first(&form, "b"), None);
        let mut headers = HeaderMap::new();
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode("id%3A1:s%2Bcr+t");
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&headers).unwrap(),
            Some(("id:1".into(), "s+cr t".into()))
        );
        headers.insert(http::header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert_eq!(basic_credentials(&headers).unwrap_err().code, 9_002_313);
    }
}
