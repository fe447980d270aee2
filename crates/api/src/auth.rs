//! Authentication and authorization (SPEC §6).
//!
//! Two key sources: the **local** Ed25519 key in the data directory (always on; `remediate token`
//! mints with it) and, when configured, **OIDC / Entra ID** issuers whose signing keys come from a
//! JWKS URL or file (`oidc`). Permissions come from `scp` (delegated, space-separated) or `roles`
//! (application); the `tid` claim partitions all data. A token with a `deviceid` claim is a device
//! agent's token and is authorized by the device rules instead of permissions.

mod local;
mod oidc;

use std::collections::BTreeSet;

use serde_json::Value as Json;

use crate::error::ApiError;

pub use local::{local_claims, Claims, LocalKey};
pub use oidc::{JwksSource, Oidc, OidcConfig};

pub const LOCAL_ISSUER: &str = "https://remediate.local/";
pub const AUDIENCE: &str = "https://graph.microsoft.com";
/// Clock skew tolerated on `exp` and `nbf` (SPEC §6: five minutes).
pub(crate) const LEEWAY_SECONDS: u64 = 300;

/// Graph's permission sets, declared with the collections (`domain::collections`).
pub use remediate_domain::collections::permissions;

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: String,
    pub permissions: BTreeSet<String>,
    /// The application (`appid` / `azp`), for per-app throttling.
    pub app: String,
    /// Set for a device agent's token: the managed device it speaks for.
    pub device: Option<String>,
    /// Group ids the token carries (`groups`), used to decide which scripts a device may read.
    pub groups: Vec<String>,
    /// The token's `exp` (Unix seconds).
    pub expires: u64,
    /// A device token an enrolled agent got for its credential (see `crate::agents`).
    pub agent: bool,
}

impl Principal {
    /// 403 unless the caller holds one of `allowed`. Device tokens hold no permissions.
    pub fn require(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if self.device.is_none() && allowed.iter().any(|p| self.permissions.contains(*p)) {
            return Ok(());
        }
        if self.device.is_some() {
            return Err(forbidden("A device token may only read the scripts assigned to its device and write that device's own run states and device record."));
        }
        Err(forbidden(&format!(
            "The token does not grant a permission that allows this call. It needs one of: {}.",
            allowed.join(", ")
        )))
    }
}

pub fn forbidden(message: &str) -> ApiError {
    ApiError::new(remediate_wire::ErrorKind::Forbidden, message)
}

/// Turn verified claims into a principal (shared by both key sources). Only tokens of the local key
/// may speak for a device (`trust_device`): a `deviceid` claim in an Entra token describes the
/// user's device, not an agent, and grants nothing.
pub(crate) fn claims_to_principal(
    claims: &Json,
    trust_device: bool,
) -> Result<Principal, ApiError> {
    let tid = claims
        .get("tid")
        .and_then(Json::as_str)
        .map(str::trim)
        .unwrap_or("");
    if tid.is_empty() {
        return Err(ApiError::unauthenticated(
            "Access token validation failure: the 'tid' claim is missing.",
        ));
    }
    let mut permissions = BTreeSet::new();
    if let Some(roles) = claims.get("roles").and_then(Json::as_array) {
        permissions.extend(roles.iter().filter_map(Json::as_str).map(str::to_owned));
    }
    if let Some(scp) = claims.get("scp").and_then(Json::as_str) {
        permissions.extend(scp.split_whitespace().map(str::to_owned));
    }
    let app = ["appid", "azp", "sub"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(Json::as_str))
        .unwrap_or("unknown")
        .to_owned();
    let device = claims
        .get("deviceid")
        .and_then(Json::as_str)
        .filter(|d| trust_device && !d.is_empty())
        .map(str::to_owned);
    let groups = claims
        .get("groups")
        .and_then(Json::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let expires = claims.get("exp").and_then(Json::as_u64).unwrap_or(0);
    Ok(Principal {
        tenant: tid.to_owned(),
        permissions,
        app,
        agent: device.is_some() && claims.get("agent").and_then(Json::as_bool) == Some(true),
        device,
        groups,
        expires,
    })
}

/// Map a jsonwebtoken failure to a 401 that says what was wrong.
pub(crate) fn jwt_failure(e: &jsonwebtoken::errors::Error) -> ApiError {
    use jsonwebtoken::errors::ErrorKind as K;
    let why = match e.kind() {
        K::ExpiredSignature => "the token has expired".to_owned(),
        K::ImmatureSignature => "the token is not valid yet".to_owned(),
        K::InvalidSignature => "the signature is invalid".to_owned(),
        K::InvalidIssuer => "the issuer is not trusted".to_owned(),
        K::InvalidAudience => "the audience is not accepted".to_owned(),
        K::InvalidAlgorithm => "the signing algorithm does not match the key".to_owned(),
        K::MissingRequiredClaim(c) => format!("the '{c}' claim is missing"),
        other => format!("{other:?}"),
    };
    ApiError::unauthenticated(format!("Access token validation failure: {why}."))
}

/// Verifies bearer tokens from every configured key source.
pub struct Authenticator {
    pub local: LocalKey,
    pub oidc: Option<Oidc>,
    cache: TokenCache,
}

/// Verified tokens, so a known-good token does not pay for signature verification again. Entries
/// live until the token expires; OIDC entries die with the key set they were verified against.
/// Bounded: when full, expired entries go first, then everything.
struct TokenCache {
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], Cached>>,
    capacity: usize,
}

struct Cached {
    principal: Principal,
    /// Unix seconds after which the token is no longer accepted (exp + leeway).
    until: u64,
    /// The OIDC key generation it was verified with (`None`: the local key, which never rotates).
    generation: Option<u64>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Authenticator {
    pub fn new(local: LocalKey, oidc: Option<Oidc>) -> Authenticator {
        Authenticator {
            local,
            oidc,
            cache: TokenCache {
                entries: std::sync::Mutex::new(std::collections::HashMap::new()),
                capacity: 10_000,
            },
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let now = unix_now();
        let generation = self.oidc.as_ref().map(Oidc::generation);
        {
            let entries = self.cache.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(hit) = entries.get(&key) {
                let current = hit.generation.is_none() || hit.generation == generation;
                if hit.until > now && current {
                    return Ok(hit.principal.clone());
                }
            }
        }
        let principal = self.verify_signature(token).await?;
        let from_oidc = !matches!(
            jsonwebtoken::decode_header(token).map(|h| h.alg),
            Ok(jsonwebtoken::Algorithm::EdDSA)
        );
        let mut entries = self.cache.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.cache.capacity {
            entries.retain(|_, c| c.until > now);
            if entries.len() >= self.cache.capacity {
                entries.clear();
            }
        }
        let until = principal.expires.saturating_add(LEEWAY_SECONDS);
        entries.insert(
            key,
            Cached {
                principal: principal.clone(),
                until,
                generation: if from_oidc { generation } else { None },
            },
        );
        Ok(principal)
    }

    async fn verify_signature(&self, token: &str) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            ApiError::unauthenticated(format!("The access token is malformed: {e}."))
        })?;
        match header.alg {
            jsonwebtoken::Algorithm::EdDSA => self.local.verify(token),
            jsonwebtoken::Algorithm::RS256 | jsonwebtoken::Algorithm::ES256 => match &self.oidc {
                Some(oidc) => oidc.verify(token, &header).await,
                None => Err(ApiError::unauthenticated(format!(
                    "The access token is signed with {:?}, but no OIDC issuer is configured; local tokens are EdDSA.",
                    header.alg
                ))),
            },
            other => Err(ApiError::unauthenticated(format!(
                "The access token is signed with {other:?}, which this server does not accept (EdDSA, RS256, ES256)."
            ))),
        }
    }
}
