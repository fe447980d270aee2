//! OIDC / Entra ID mode: tokens from configured issuers, verified with keys from a JWKS URL or
//! file. Keys are cached and refreshed when a token names an unknown `kid`, at most once per
//! `min_refresh_interval`, so bad tokens cannot make the server hammer the JWKS endpoint.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use tokio::sync::{Mutex, RwLock};

use super::{claims_to_principal, jwt_failure, Principal, LEEWAY_SECONDS};
use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Accepted `iss` values; `{tenantid}` stands for the token's own `tid` (Entra multi-tenant).
    pub issuers: Vec<String>,
    /// Accepted `aud` values, e.g. `https://graph.microsoft.com` or an application id URI.
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Least time between two JWKS fetches triggered by unknown key ids.
    pub min_refresh_interval: Duration,
}

impl OidcConfig {
    /// Check the configuration before anything is fetched; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.issuers.iter().all(|i| i.trim().is_empty()) {
            return Err("OIDC needs at least one issuer (--oidc-issuer)".into());
        }
        if self.audiences.iter().all(|a| a.trim().is_empty()) {
            return Err("OIDC needs at least one audience (--oidc-audience)".into());
        }
        if let JwksSource::Url(url) = &self.jwks {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("the JWKS URL must be http(s), got '{url}'"));
            }
        }
        Ok(())
    }
}

struct Key {
    key: DecodingKey,
    algorithm: Algorithm,
}

struct Inner {
    config: OidcConfig,
    keys: RwLock<HashMap<String, Key>>,
    last_refresh: Mutex<Instant>,
    client: reqwest::Client,
    generation: std::sync::atomic::AtomicU64,
}

/// Verifies tokens of the configured OIDC issuers.
pub struct Oidc {
    inner: Arc<Inner>,
}

impl Oidc {
    /// Validate the configuration and load the keys; an error explains the bad setting.
    pub async fn new(config: OidcConfig) -> Result<Oidc, String> {
        Ok(Oidc {
            inner: Arc::new(Inner::new(config).await?),
        })
    }

    pub async fn verify(&self, token: &str, header: &Header) -> Result<Principal, ApiError> {
        self.inner.verify(token, header).await
    }

    /// Increases whenever the key set is replaced; verified-token caches compare it.
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Keys older than this are refreshed in the background.
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

impl Inner {
    /// Validate the configuration and load the keys; an error explains the bad setting.
    async fn new(config: OidcConfig) -> Result<Inner, String> {
        config.validate()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for the JWKS: {e}"))?;
        let oidc = Inner {
            config,
            keys: RwLock::new(HashMap::new()),
            last_refresh: Mutex::new(Instant::now()),
            client,
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        let keys = oidc.load().await?;
        *oidc.keys.write().await = keys;
        Ok(oidc)
    }

    async fn load(&self) -> Result<HashMap<String, Key>, String> {
        let text = match &self.config.jwks {
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?,
            JwksSource::Url(url) => {
                let response = self
                    .client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("cannot fetch the JWKS from {url}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!(
                        "fetching the JWKS from {url} answered {}",
                        response.status()
                    ));
                }
                response
                    .text()
                    .await
                    .map_err(|e| format!("cannot read the JWKS from {url}: {e}"))?
            }
        };
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("the JWKS is not a valid JSON Web Key Set: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), Key { key, algorithm });
            }
        }
        if keys.is_empty() {
            return Err("the JWKS holds no usable RS256 or ES256 key with a 'kid'".into());
        }
        Ok(keys)
    }

    /// Refetch the keys unless that happened less than `min_refresh_interval` ago.
    async fn refresh(&self) {
        {
            // The lock only decides who refreshes; it is not held during the fetch, so requests
            // with known keys never wait for a slow JWKS endpoint.
            let mut last = self.last_refresh.lock().await;
            if last.elapsed() < self.config.min_refresh_interval {
                return;
            }
            *last = Instant::now();
        }
        match self.load().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "refreshed the OIDC signing keys");
                *self.keys.write().await = keys;
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the OIDC signing keys failed; keeping the cached ones")
            }
        }
    }

    async fn verify(self: &Arc<Self>, token: &str, header: &Header) -> Result<Principal, ApiError> {
        let Some(kid) = &header.kid else {
            return Err(ApiError::unauthenticated(
                "Access token validation failure: the token names no signing key ('kid').",
            ));
        };
        let known = self.keys.read().await.contains_key(kid);
        if !known {
            self.refresh().await;
        } else if self.last_refresh.lock().await.elapsed() > MAX_KEY_AGE {
            // Periodic refresh in the background; this request uses the cached key.
            let me = Arc::clone(self);
            tokio::spawn(async move { me.refresh().await });
        }
        let keys = self.keys.read().await;
        let Some(key) = keys.get(kid) else {
            return Err(ApiError::unauthenticated(format!(
                "Access token validation failure: the signing key '{kid}' is not one of the issuer's keys."
            )));
        };
        if key.algorithm != header.alg {
            return Err(ApiError::unauthenticated(
                "Access token validation failure: the signing algorithm does not match the key.",
            ));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation)
            .map_err(|e| jwt_failure(&e))?;
        let claims = data.claims;
        let issuer = claims.get("iss").and_then(|v| v.as_str()).unwrap_or("");
        let tid = claims.get("tid").and_then(|v| v.as_str()).unwrap_or("");
        let trusted = self
            .config
            .issuers
            .iter()
            .any(|template| template.replace("{tenantid}", tid) == issuer);
        if !trusted {
            return Err(ApiError::unauthenticated(
                "Access token validation failure: the issuer is not trusted.",
            ));
        }
        claims_to_principal(&claims, false)
    }
}
