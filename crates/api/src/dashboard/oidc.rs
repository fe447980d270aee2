//! Dashboard sign-in with OIDC (`docs/dashboard.md`, "Signing in with OIDC"): the
//! authorization-code flow with PKCE (S256) against the issuer of `serve
//! --dashboard-oidc-issuer`, as the client `--dashboard-oidc-client-id` with the redirect
//! `--dashboard-oidc-redirect` (`{public URL}/oidc/callback`).
//!
//! - `GET /oidc/login`: reads the issuer's discovery document (`/.well-known/openid-configuration`,
//!   cached per process; its `issuer` must be the configured one), makes a random `state`,
//!   `nonce` and PKCE verifier, keeps them in a short-lived signed cookie ([`PENDING_COOKIE`],
//!   `HttpOnly; SameSite=Lax`, HMAC-SHA256 under the database's secret, 10 minutes) and sends
//!   the browser to the authorization endpoint with the verifier's S256 challenge.
//! - `GET /oidc/callback?code&state`: the cookie must be intact, unexpired and hold the same
//!   `state` (else 403); the code is exchanged at the token endpoint with the verifier (and the
//!   client secret when one is configured); the ID token is verified with the issuer's JWKS by
//!   `auth::Oidc` (signature, `iss`, `aud` = the client id, `exp`/`nbf`) and must carry the
//!   `nonce`. The session gets the token's `tid` as its tenant and its `roles` and `scp` as its
//!   permissions — exactly what the API grants a bearer token with those claims — and opens
//!   through a one-time link of its own, as `remediate login-link` does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value as Json;

use super::session::{cookie_named, seal, unix_now, unseal};
use crate::auth::{JwksSource, Oidc, OidcConfig};
use crate::error::ApiError;
use crate::AppState;

/// The cookie that carries a sign-in in progress.
pub const PENDING_COOKIE: &str = "remediate_oidc";
/// How long a sign-in may take at the issuer.
const PENDING_LIFETIME: Duration = Duration::from_secs(600);

/// The dashboard's OIDC client (flags of `serve`). Its `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcLogin {
    /// The issuer (its discovery document is `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// For a confidential client; a public client sends only the PKCE verifier.
    pub client_secret: Option<String>,
    /// Where the issuer sends the browser back: this server's `/oidc/callback`.
    pub redirect_uri: String,
}

impl std::fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "(set)"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

impl OidcLogin {
    /// Check the settings; the message names the flag to fix.
    pub fn validate(&self) -> Result<(), String> {
        let http = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if !http(&self.issuer) {
            return Err(format!(
                "--dashboard-oidc-issuer must be an http(s) URL, got '{}'",
                self.issuer
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(
                "--dashboard-oidc-client-id is required with --dashboard-oidc-issuer".into(),
            );
        }
        if !http(&self.redirect_uri) || !self.redirect_uri.ends_with("/oidc/callback") {
            return Err(format!(
                "--dashboard-oidc-redirect must be this server's http(s) URL ending in /oidc/callback, got '{}'",
                self.redirect_uri
            ));
        }
        Ok(())
    }
}

/// What discovery says, and the verifier of its ID tokens.
struct Provider {
    authorization_endpoint: String,
    token_endpoint: String,
    verifier: Oidc,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

fn unavailable(message: String) -> ApiError {
    tracing::warn!(%message, "dashboard OIDC sign-in");
    ApiError::new(remediate_wire::ErrorKind::ServiceUnavailable, message)
}

/// Providers by (issuer, client id).
type Providers = HashMap<(String, String), Arc<Provider>>;

/// The issuer's endpoints and keys, read once per process (again after a failure).
async fn provider(config: &OidcLogin) -> Result<Arc<Provider>, ApiError> {
    static CACHE: OnceLock<Mutex<Providers>> = OnceLock::new();
    let key = (config.issuer.clone(), config.client_id.clone());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(found) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(found);
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        config.issuer.trim_end_matches('/')
    );
    let failed = |e: String| {
        unavailable(format!(
            "The sign-in provider's discovery document ({url}) could not be read: {e}"
        ))
    };
    let response = client()
        .get(&url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("it answered {}", response.status())));
    }
    let document: Json = response.json().await.map_err(|e| failed(e.to_string()))?;
    let text = |name: &str| {
        document[name]
            .as_str()
            .filter(|v| v.starts_with("https://") || v.starts_with("http://"))
            .map(str::to_owned)
            .ok_or_else(|| failed(format!("'{name}' is missing or not an http(s) URL")))
    };
    if document["issuer"].as_str() != Some(config.issuer.as_str()) {
        return Err(failed(format!(
            "its 'issuer' ({}) is not the configured issuer",
            document["issuer"]
        )));
    }
    let verifier = Oidc::new(OidcConfig {
        issuers: vec![config.issuer.clone()],
        audiences: vec![config.client_id.clone()],
        jwks: JwksSource::Url(text("jwks_uri")?),
        min_refresh_interval: Duration::from_secs(60),
    })
    .await
    .map_err(failed)?;
    let provider = Arc::new(Provider {
        authorization_endpoint: text("authorization_endpoint")?,
        token_endpoint: text("token_endpoint")?,
        verifier,
    });
    if let Ok(mut cache) = cache.lock() {
        cache.insert(key, provider.clone());
    }
    Ok(provider)
}

fn random() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 challenge of a PKCE verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// What the pending cookie is sealed for.
const PURPOSE: &str = "remediate-oidc";

/// A sign-in in progress, as its cookie carries it.
#[derive(Debug, PartialEq, Eq)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    /// Unix seconds.
    expires: i64,
}

fn pending_cookie(secret: &[u8], pending: &Pending, secure: bool) -> String {
    let value = seal(
        secret,
        PURPOSE,
        &serde_json::json!({"state": pending.state, "nonce": pending.nonce,
            "verifier": pending.verifier, "exp": pending.expires}),
    );
    format!(
        "{PENDING_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/oidc/; Max-Age={}{}",
        PENDING_LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` removing the pending cookie.
pub fn clear_pending(secure: bool) -> String {
    format!(
        "{PENDING_COOKIE}=; HttpOnly; SameSite=Lax; Path=/oidc/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

fn read_pending(secret: &[u8], headers: &http::HeaderMap, now: i64) -> Option<Pending> {
    let value = cookie_named(headers, PENDING_COOKIE)?;
    let json = unseal(secret, PURPOSE, &value)?;
    let pending = Pending {
        state: json["state"].as_str()?.to_owned(),
        nonce: json["nonce"].as_str()?.to_owned(),
        verifier: json["verifier"].as_str()?.to_owned(),
        expires: json["exp"].as_i64()?,
    };
    (pending.expires > now).then_some(pending)
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `GET /oidc/login`: the authorization request's URL and the pending cookie.
pub async fn start(
    state: &AppState,
    config: &OidcLogin,
    secure: bool,
) -> Result<(String, String), ApiError> {
    let provider = provider(config).await?;
    let pending = Pending {
        state: random(),
        nonce: random(),
        verifier: random(),
        expires: unix_now() + PENDING_LIFETIME.as_secs() as i64,
    };
    let enc = |v: &str| super::html::enc(v);
    let separator = if provider.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!(
        "{}{separator}response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile&state={}&nonce={}&code_challenge={}&code_challenge_method=S256",
        provider.authorization_endpoint,
        enc(&config.client_id),
        enc(&config.redirect_uri),
        enc(&pending.state),
        enc(&pending.nonce),
        enc(&challenge(&pending.verifier)),
    );
    let cookie = pending_cookie(state.store.paging_secret(), &pending, secure);
    Ok((url, cookie))
}

fn refused(message: impl Into<String>) -> ApiError {
    crate::auth::forbidden(&message.into())
}

/// `GET /oidc/callback`: check the answer, exchange the code, verify the ID token; the new
/// session's id.
pub async fn finish(
    state: &AppState,
    config: &OidcLogin,
    headers: &http::HeaderMap,
    params: &[(String, String)],
) -> Result<String, ApiError> {
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let Some(pending) = read_pending(state.store.paging_secret(), headers, unix_now()) else {
        return Err(refused(
            "This sign-in was not started here, or it took longer than 10 minutes: start again with Sign in.",
        ));
    };
    if !equal(param("state"), &pending.state) {
        return Err(refused(
            "The sign-in answer's 'state' does not match the sign-in this browser started; nothing was signed in.",
        ));
    }
    if !param("error").is_empty() {
        return Err(refused(format!(
            "The sign-in provider refused: {} {}",
            param("error"),
            param("error_description")
        )));
    }
    let code = param("code");
    if code.is_empty() {
        return Err(ApiError::bad_request("The sign-in answer has no 'code'."));
    }
    let provider = provider(config).await?;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", config.redirect_uri.as_str()),
        ("client_id", config.client_id.as_str()),
        ("code_verifier", pending.verifier.as_str()),
    ];
    if let Some(secret) = &config.client_secret {
        form.push(("client_secret", secret.as_str()));
    }
    let body: String = form
        .iter()
        .map(|(n, v)| format!("{n}={}", super::html::enc(v)))
        .collect::<Vec<_>>()
        .join("&");
    let response = client()
        .post(&provider.token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "The sign-in provider's token endpoint could not be reached: {e}"
            ))
        })?;
    let status = response.status();
    let answer: Json = response.json().await.unwrap_or(Json::Null);
    if !status.is_success() {
        return Err(refused(format!(
            "The sign-in provider did not accept the code ({status}): {} {}",
            answer["error"].as_str().unwrap_or(""),
            answer["error_description"].as_str().unwrap_or("")
        )));
    }
    let Some(id_token) = answer["id_token"].as_str() else {
        return Err(refused("The sign-in provider's answer holds no ID token."));
    };
    let header =
        jsonwebtoken::decode_header(id_token).map_err(|_| refused("The ID token is not a JWT."))?;
    let principal = provider
        .verifier
        .verify(id_token, &header)
        .await
        .map_err(|e| refused(format!("The ID token was refused: {}", e.message)))?;
    // The signature is verified: the claims can be read.
    let claims: Json = id_token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Json::Null);
    if !equal(claims["nonce"].as_str().unwrap_or(""), &pending.nonce) {
        return Err(refused(
            "The ID token's 'nonce' is not this sign-in's; nothing was signed in.",
        ));
    }
    if principal.permissions.is_empty() {
        return Err(refused(
            "The ID token grants no permission (no 'roles' or 'scp' claim): ask an administrator to assign you a role of this application.",
        ));
    }
    let strings = |name: &str| -> Vec<String> {
        match &claims[name] {
            Json::Array(a) => a
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect(),
            Json::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let store = state.store.as_ref();
    let link = super::session::create_login_link(
        store,
        &principal.tenant,
        &strings("scp"),
        &strings("roles"),
    )
    .await?;
    match super::session::redeem(store, &link).await? {
        Some((id, _)) => Ok(id),
        None => Err(ApiError::new(
            remediate_wire::ErrorKind::Internal,
            "The session could not be opened.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn pending_cookies_are_signed_and_expire() {
        let pending = Pending {
            state: "s".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            expires: 1000,
        };
        let set = pending_cookie(b"secret", &pending, false);
        let value = set.split(';').next().unwrap().to_owned();
        let headers = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::COOKIE, v.parse().unwrap());
            h
        };
        assert_eq!(
            read_pending(b"secret", &headers(&value), 999),
            Some(pending)
        );
        assert_eq!(read_pending(b"secret", &headers(&value), 1000), None);
        assert_eq!(read_pending(b"other", &headers(&value), 999), None);
        let tampered = value.replacen("remediate_oidc=e", "remediate_oidc=f", 1);
        assert_eq!(read_pending(b"secret", &headers(&tampered), 999), None);
    }
}
