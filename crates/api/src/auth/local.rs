//! Local key mode: an Ed25519 key in the data directory signs tokens minted by `remediate token`.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use super::{claims_to_principal, jwt_failure, Principal, AUDIENCE, LEEWAY_SECONDS, LOCAL_ISSUER};
use crate::error::ApiError;

const KEY_FILE: &str = "signing-key.pk8";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub tid: String,
    pub sub: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// A device agent's token: the managed device it speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deviceid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Issued to an enrolled agent for its credential (`/agent/token`): the server checks, at most
    /// a minute apart, that the credential still exists (deleting the device revokes it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent: bool,
}

/// The local Ed25519 key pair.
pub struct LocalKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    /// The raw Ed25519 public key (32 bytes), for the JWKS of the token endpoint (`crate::entra`).
    public: Vec<u8>,
}

impl LocalKey {
    /// Load the key from `data_dir`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<LocalKey> {
        std::fs::create_dir_all(data_dir)?;
        let path: PathBuf = data_dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let generated = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .map_err(|_| std::io::Error::other("could not generate an Ed25519 key"))?;
                write_private(&path, generated.as_ref())?;
                // Another process may have won the race; always use what is on disk.
                std::fs::read(&path)?
            }
            Err(e) => return Err(e),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| {
            std::io::Error::other(format!(
                "{} is not an Ed25519 PKCS#8 key: {e}",
                path.display()
            ))
        })?;
        let public = pair.public_key().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &public);
        let kid: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(LocalKey {
            encoding: EncodingKey::from_ed_der(&pkcs8),
            decoding: DecodingKey::from_ed_der(&public),
            kid,
            public,
        })
    }

    /// The key id (`kid`) of the tokens it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw Ed25519 public key (32 bytes).
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Sign `claims` (a [`Claims`], or the claims of the token endpoint's app tokens).
    pub fn mint(&self, claims: &impl Serialize) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// Verify a token signed by the local key and return the caller.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[LOCAL_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &validation)
            .map_err(|e| jwt_failure(&e))?;
        claims_to_principal(&data.claims, true)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(bytes)?;
            file.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Claims for a token minted by `remediate token`.
pub fn local_claims(
    tenant: &str,
    scopes: &[String],
    roles: &[String],
    lifetime_seconds: u64,
) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    Claims {
        iss: LOCAL_ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        tid: tenant.to_owned(),
        sub: "remediate-token".to_owned(),
        iat: now,
        nbf: now,
        exp: now + lifetime_seconds,
        scp: (!scopes.is_empty()).then(|| scopes.join(" ")),
        roles: roles.to_vec(),
        appid: Some("remediate-cli".to_owned()),
        deviceid: None,
        groups: Vec::new(),
        agent: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_across_reloads_of_the_key() {
        let dir = std::env::temp_dir().join(format!("remediate-auth-{}", uuid::Uuid::new_v4()));
        let key = LocalKey::load_or_create(&dir).unwrap();
        let token = key
            .mint(&local_claims(
                "t1",
                &["DeviceManagementScripts.Read.All".into()],
                &[],
                60,
            ))
            .unwrap();
        let again = LocalKey::load_or_create(&dir).unwrap();
        let principal = again.verify(&token).unwrap();
        assert_eq!(principal.tenant, "t1");
        assert!(principal
            .require(super::super::permissions::SCRIPTS_READ)
            .is_ok());
        assert!(principal
            .require(super::super::permissions::SCRIPTS_WRITE)
            .is_err());
        let other = LocalKey::load_or_create(&dir.join("other")).unwrap();
        assert!(
            other.verify(&token).is_err(),
            "a token of another key must not verify"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn expired_tokens_are_rejected_beyond_the_leeway() {
        let dir = std::env::temp_dir().join(format!("remediate-auth-{}", uuid::Uuid::new_v4()));
        let key = LocalKey::load_or_create(&dir).unwrap();
        let mut claims = local_claims("t1", &["x".into()], &[], 60);
        claims.exp -= 60 + 301;
        let err = key.verify(&key.mint(&claims).unwrap()).unwrap_err();
        assert!(err.message.contains("expired"), "{}", err.message);
        std::fs::remove_dir_all(&dir).ok();
    }
}
