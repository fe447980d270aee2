//! Dashboard sign-in: one-time login links (made by `remediate login-link`, single use, valid
//! [`LINK_LIFETIME`]), sessions stored in the database by the hash of their id (a random 256-bit
//! value in an `HttpOnly; SameSite=Strict; Path=/` cookie, `Secure` over https), their idle and
//! absolute timeouts, and the CSRF token of every form (derived from the session id, so only the
//! holder of the cookie can know it; checked with `Origin` and `Sec-Fetch-Site`).

use std::collections::BTreeSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use remediate_domain::Instant;
use remediate_store::{LoginLink, Session, SessionClock, Store, StoreError};

use crate::auth::Principal;

/// How long a login link opens a session.
pub const LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// A session unused this long is over.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session is over this long after it was opened, used or not.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// A session's last use is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The session cookie.
pub const COOKIE: &str = "remediate_session";

/// 256 random bits as 64 hex digits.
fn random_token() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // The system's generator failing is not survivable for a sign-in: two v4 UUIDs instead.
        return format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex): what is stored of a token or session id.
pub fn hash(token: &str) -> String {
    remediate_domain::agents::hash_secret(token)
}

fn ticks(d: Duration) -> i64 {
    i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX)
}

fn before(now: Instant, d: Duration) -> Instant {
    Instant::from_ticks(now.ticks().saturating_sub(ticks(d))).unwrap_or(Instant::MIN)
}

/// Make a login link for `tenant` with these permissions; returns its token (the path
/// `/login/{token}` opens a session once, within [`LINK_LIFETIME`]). Only the token's hash is
/// stored.
pub async fn create_login_link(
    store: &dyn Store,
    tenant: &str,
    scopes: &[String],
    roles: &[String],
) -> Result<String, StoreError> {
    let token = random_token();
    let now = Instant::now();
    let expires = Instant::from_ticks(now.ticks().saturating_add(ticks(LINK_LIFETIME)))
        .unwrap_or(Instant::MAX);
    store
        .create_login_link(&LoginLink {
            token_hash: hash(&token),
            tenant: tenant.to_owned(),
            scopes: scopes.to_vec(),
            roles: roles.to_vec(),
            created: now,
            expires,
        })
        .await?;
    Ok(token)
}

/// Redeem a link's token: the new session's id (the cookie's value) and the session, or `None`
/// when the link is unknown, used or expired.
pub async fn redeem(
    store: &dyn Store,
    token: &str,
) -> Result<Option<(String, Session)>, StoreError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let id = random_token();
    let now = Instant::now();
    let clock = SessionClock {
        now,
        idle_before: before(now, IDLE_TIMEOUT),
        opened_before: before(now, ABSOLUTE_TIMEOUT),
    };
    let session = store.open_session(&hash(token), &hash(&id), clock).await?;
    Ok(session.map(|s| (id, s)))
}

/// The signed-in session of a request.
pub struct Signed {
    /// The cookie's value (never stored).
    pub id: String,
    /// The session's permissions as the API sees a token's.
    pub principal: Principal,
}

impl Signed {
    /// The CSRF token of this session's forms.
    pub fn csrf(&self) -> String {
        csrf_token(&self.id)
    }

    /// May this session use something that needs one of `allowed`?
    pub fn may(&self, allowed: &[&str]) -> bool {
        self.principal.require(allowed).is_ok()
    }
}

/// The CSRF token of a session: SHA-256 of a label and the session id.
pub fn csrf_token(session_id: &str) -> String {
    hash(&format!("remediate-dashboard-csrf\u{0}{session_id}"))
}

/// The value of the cookie `name` in a request, if any.
pub fn cookie_named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// The session cookie's value in a request, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE).filter(|v| !v.is_empty() && v.len() <= 128)
}

/// What the server hands the browser to give back unchanged (a sign-in in progress, a secret
/// to show once): `payload.signature`, the JSON payload base64url-encoded and signed with
/// HMAC-SHA256 under `key` for one `purpose` (a value signed for one purpose is refused for
/// another).
pub fn seal(key: &[u8], purpose: &str, payload: &serde_json::Value) -> String {
    use base64::Engine as _;
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signature = ring::hmac::sign(&key, format!("{purpose}\n{payload}").as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The payload of a [`seal`]ed value, if its signature holds for `purpose`.
pub fn unseal(key: &[u8], purpose: &str, value: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let (payload, signature) = value.split_once('.')?;
    let given = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(&key, format!("{purpose}\n{payload}").as_bytes(), &given).ok()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Seconds since 1970 (the expiry clock of sealed cookies).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The live session of a request: `None` without a cookie, for an unknown session, or for one
/// past its idle or absolute timeout (which is then deleted). Its last use is written at most
/// once a minute.
pub async fn current(store: &dyn Store, headers: &HeaderMap) -> Result<Option<Signed>, StoreError> {
    let Some(id) = cookie(headers) else {
        return Ok(None);
    };
    let id_hash = hash(&id);
    let Some(session) = store.session(&id_hash).await? else {
        return Ok(None);
    };
    let now = Instant::now();
    if session.last_seen < before(now, IDLE_TIMEOUT)
        || session.created < before(now, ABSOLUTE_TIMEOUT)
    {
        store.end_session(&id_hash).await?;
        return Ok(None);
    }
    if session.last_seen < before(now, TOUCH_EVERY) {
        store.touch_session(&id_hash, now).await?;
    }
    let permissions: BTreeSet<String> = session
        .scopes
        .iter()
        .chain(&session.roles)
        .cloned()
        .collect();
    let principal = Principal {
        tenant: session.tenant.clone(),
        permissions,
        app: "remediate-dashboard".to_owned(),
        device: None,
        groups: Vec::new(),
        expires: 0,
        agent: false,
    };
    Ok(Some(Signed { id, principal }))
}

/// The `Set-Cookie` value opening a session (`secure` over https).
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        ABSOLUTE_TIMEOUT.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value removing the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Is a state-changing request from this session's own pages? The form's `csrf` must be the
/// session's token, and the browser must not say it came from another site (`Sec-Fetch-Site`,
/// `Origin` against `Host`).
pub fn same_origin_form(signed: &Signed, headers: &HeaderMap, form_csrf: Option<&str>) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    if let Some(origin) = header("origin") {
        let host = header("host").unwrap_or("");
        let origin_host = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest.trim_end_matches('/'));
        if origin == "null" || origin_host != host {
            return false;
        }
    }
    let expected = signed.csrf();
    match form_csrf {
        Some(given) => {
            given.len() == expected.len()
                && given
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
        None => false,
    }
}
