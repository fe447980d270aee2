//! Hostile tokens (SPEC §6), by topic: forged, tampered and mis-scoped local tokens ([`local`]);
//! OIDC tokens verified against a loopback JWKS — rotation, refresh rate limit, file mode
//! ([`oidc`]); OIDC startup errors ([`startup`]); device agent tokens ([`device`], and the table
//! of every route and method a device token may try, [`device_matrix`]); tenant isolation through
//! nextLink, `$batch` and `/$count` ([`tenant_isolation`]). Shared helpers live here.

mod device;
mod device_matrix;
mod local;
mod oidc;
mod startup;
mod tenant_isolation;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::both;
use crate::harness::{Backend, Reply, TestApp, WRITE_SCOPES};

const LOCAL_ISS: &str = "https://remediate.local/";
const GRAPH: &str = "https://graph.microsoft.com";
const SCRIPTS: &str = "deviceManagement/deviceHealthScripts";
const DEVICES: &str = "deviceManagement/managedDevices";
const SECRET_NAME: &str = "top-secret-script";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwt(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Claims of a well-formed local token for `tenant` with write scopes.
fn local_claims(tenant: &str) -> Value {
    let now = now();
    json!({
        "iss": LOCAL_ISS, "aud": GRAPH, "tid": tenant, "sub": "attacker",
        "iat": now, "nbf": now, "exp": now + 3600,
        "scp": WRITE_SCOPES.join(" "),
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

/// The local signing key of a server's data directory: (PKCS#8 bytes, raw public key, kid).
fn local_key(app: &TestApp) -> (Vec<u8>, Vec<u8>, String) {
    let pkcs8 = std::fs::read(app.data_dir.join("signing-key.pk8")).expect("read the local key");
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("Ed25519 PKCS#8");
    let public = pair.public_key().as_ref().to_vec();
    // The kid of a minted token.
    let minted = app.mint("tenant-a", &["DeviceManagementScripts.Read.All"], &[]);
    let kid = jsonwebtoken::decode_header(&minted).unwrap().kid.unwrap();
    (pkcs8, public, kid)
}

/// 401 `InvalidAuthenticationToken` with a Bearer challenge, a message containing `needle`, and
/// nothing of the tenant's data.
fn assert_rejected(reply: &Reply, needle: &str) {
    reply.assert_error(401, "InvalidAuthenticationToken", needle);
    assert!(
        reply.header("www-authenticate").starts_with("Bearer"),
        "{:?}",
        reply.headers
    );
    assert!(reply.json.get("value").is_none(), "{}", reply.text);
    assert!(!reply.text.contains(SECRET_NAME), "{}", reply.text);
}

async fn script_count(app: &TestApp, token: &str) -> String {
    let reply = app
        .send("GET", &format!("{SCRIPTS}/$count"), Some(token), None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.text
}
