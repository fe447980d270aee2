//! Hostile tokens (SPEC §6): forged, tampered and mis-scoped local tokens; OIDC tokens verified
//! against a loopback JWKS (rotation, refresh rate limit, file mode); OIDC startup errors; device
//! agent tokens; tenant isolation through nextLink, `$batch` and `/$count`.

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

// ---------------------------------------------------------------------------------------------
// 1. Local tokens
// ---------------------------------------------------------------------------------------------

both!(hostile_local_tokens_are_401_and_change_nothing, |app| {
    app.script(SECRET_NAME).await;
    let (pkcs8, public, kid) = local_key(&app);
    let local = EncodingKey::from_ed_der(&pkcs8);
    let good = local_claims("tenant-a");
    let eddsa = |claims: &Value| jwt(Algorithm::EdDSA, Some(&kid), claims, &local);
    let now = now();

    // Header-level failures.
    let no_header = app.send_with_headers("GET", SCRIPTS, &[], None).await;
    assert_rejected(&no_header, "empty");
    for value in [
        "Bearer ",
        "Bearer",
        "Bearer    ",
        "Basic dXNlcjpwYXNz",
        "bearer",
    ] {
        let reply = app
            .send_with_headers("GET", SCRIPTS, &[("authorization", value)], None)
            .await;
        assert_rejected(&reply, "Bearer <token>");
    }

    // Token-level failures: (token, what the message must say).
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(good.to_string().as_bytes())
    );
    let mut flipped = eddsa(&good);
    {
        let (rest, signature) = flipped.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 0x01;
        flipped = format!("{rest}.{}", b64(&bytes));
    }
    // A valid token whose payload is swapped for another tenant's (signature kept).
    let tampered = {
        let token = eddsa(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let other = with(good.clone(), "tid", json!("tenant-b"));
        format!(
            "{}.{}.{}",
            parts[0],
            b64(other.to_string().as_bytes()),
            parts[2]
        )
    };
    let foreign_pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let foreign = EncodingKey::from_ed_der(foreign_pkcs8.as_ref());
    let rsa = EncodingKey::from_rsa_der(include_bytes!("../fixtures/rsa-test-key.der"));
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "garbage".into(), "malformed"),
        ("three empty parts", "..".into(), "malformed"),
        ("alg none", unsigned, "malformed"),
        (
            "HS256 keyed with the public key",
            jwt(
                Algorithm::HS256,
                Some(&kid),
                &good,
                &EncodingKey::from_secret(&public),
            ),
            "HS256",
        ),
        (
            "HS256 keyed with the PKCS#8 bytes",
            jwt(
                Algorithm::HS256,
                Some(&kid),
                &good,
                &EncodingKey::from_secret(&pkcs8),
            ),
            "HS256",
        ),
        ("flipped signature byte", flipped, "signature"),
        ("payload swapped", tampered, "signature"),
        (
            "another key under the same kid",
            jwt(Algorithm::EdDSA, Some(&kid), &good, &foreign),
            "signature",
        ),
        (
            "RS256 without OIDC configured",
            jwt(Algorithm::RS256, Some("rsa-1"), &good, &rsa),
            "no OIDC issuer",
        ),
        (
            "expired beyond the leeway",
            eddsa(&with(good.clone(), "exp", json!(now - 400))),
            "expired",
        ),
        (
            "not valid before, beyond the leeway",
            eddsa(&with(good.clone(), "nbf", json!(now + 400))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            eddsa(&with(good.clone(), "iss", json!("https://evil.example/"))),
            "issuer",
        ),
        (
            "wrong audience",
            eddsa(&with(good.clone(), "aud", json!("api://someone-else"))),
            "audience",
        ),
        ("missing tid", eddsa(&without(good.clone(), "tid")), "'tid'"),
        (
            "blank tid",
            eddsa(&with(good.clone(), "tid", json!("  "))),
            "'tid'",
        ),
        ("missing exp", eddsa(&without(good.clone(), "exp")), "'exp'"),
        ("missing aud", eddsa(&without(good.clone(), "aud")), "aud"),
        ("missing iss", eddsa(&without(good.clone(), "iss")), "iss"),
    ];
    for (what, token, needle) in &cases {
        let reply = app.send("GET", SCRIPTS, Some(token), None).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
        assert_rejected(&reply, needle);
        let body = r#"{"displayName":"forged","detectionScriptContent":"ZWNobyAx"}"#;
        let reply = app.send("POST", SCRIPTS, Some(token), Some(body)).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
    }
    let another_server = TestApp::start(Backend::Sqlite).await.unwrap();
    let reply = app
        .send("GET", SCRIPTS, Some(&another_server.token.clone()), None)
        .await;
    assert_rejected(&reply, "signature");

    // Within the leeway is accepted.
    for (what, claims) in [
        (
            "expired 60 s ago",
            with(good.clone(), "exp", json!(now - 60)),
        ),
        ("nbf 60 s ahead", with(good.clone(), "nbf", json!(now + 60))),
    ] {
        let reply = app.send("GET", SCRIPTS, Some(&eddsa(&claims)), None).await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.text);
    }
    // Nothing was created by any rejected request.
    assert_eq!(script_count(&app, &app.token).await, "1");
    let names = app.get(SCRIPTS).await;
    assert_eq!(names.json["value"][0]["displayName"], SECRET_NAME);
});

// ---------------------------------------------------------------------------------------------
// 2. OIDC
// ---------------------------------------------------------------------------------------------

/// A loopback HTTP/1.1 server answering `GET /keys` with the current JWKS (one response per
/// connection), counting the fetches. Runs on its own threads, so it answers while the test thread
/// blocks waiting for the server to start (which fetches the JWKS first).
struct JwksServer {
    url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    /// Milliseconds to wait before answering.
    delay_ms: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start(jwks: &Value) -> JwksServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(jwks.to_string()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicUsize::new(0));
        let (b, f, d) = (body.clone(), fetches.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (b, f, d) = (b.clone(), f.clone(), d.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(d.load(Ordering::SeqCst) as u64));
                    answer(stream, &b, &f)
                });
            }
        });
        JwksServer {
            url,
            body,
            fetches,
            delay_ms,
        }
    }

    fn set(&self, jwks: &str) {
        *self.body.lock().unwrap() = jwks.to_owned();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn answer(mut stream: std::net::TcpStream, body: &Mutex<String>, fetches: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut request = Vec::new();
    let mut chunk = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&request);
    let (status, text) = if head.starts_with("GET /keys ") {
        fetches.fetch_add(1, Ordering::SeqCst);
        ("200 OK", body.lock().unwrap().clone())
    } else {
        ("404 Not Found", "{}".to_owned())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.flush();
}

const TENANT1: &str = "11111111-1111-1111-1111-111111111111";
const TENANT2: &str = "22222222-2222-2222-2222-222222222222";
const ISSUER_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

fn entra_issuer(tid: &str) -> String {
    ISSUER_TEMPLATE.replace("{tenantid}", tid)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_der(include_bytes!("../fixtures/rsa-test-key.der"))
}

fn rsa_modulus() -> &'static str {
    include_str!("../fixtures/rsa-test-key.n").trim()
}

fn rsa_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": rsa_modulus(), "e": "AQAB"})
}

/// A fresh P-256 key: (signing key, its public JWK under `kid`).
fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = pair.public_key().as_ref();
    assert_eq!(public.len(), 65);
    assert_eq!(public[0], 4);
    let jwk = json!({"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": kid,
        "x": b64(&public[1..33]), "y": b64(&public[33..])});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn jwks(keys: &[&Value]) -> Value {
    json!({"keys": keys})
}

/// Claims of an Entra-style token for `tid`.
fn entra_claims(tid: &str, aud: &str) -> Value {
    let now = now();
    json!({
        "iss": entra_issuer(tid), "aud": aud, "tid": tid, "azp": "client-app", "sub": "user",
        "iat": now, "nbf": now, "exp": now + 3600,
    })
}

fn oidc_args(jwks: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--oidc-issuer",
        ISSUER_TEMPLATE,
        "--oidc-audience",
        GRAPH,
        "--oidc-audience",
        "api://remediate",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if jwks.starts_with("http") {
        args.extend(["--oidc-jwks-url".into(), jwks.into()]);
    } else {
        args.extend(["--oidc-jwks-file".into(), jwks.into()]);
    }
    args.extend(["--oidc-refresh-secs".into(), "1".into()]);
    args
}

/// Retry `token` on a GET of the scripts for up to 5 s until it is accepted.
async fn accepted_within_5s(app: &TestApp, token: &str) -> Reply {
    let start = Instant::now();
    loop {
        let reply = app.send("GET", SCRIPTS, Some(token), None).await;
        if reply.status == 200 || start.elapsed() > Duration::from_secs(5) {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

both!(oidc_tokens_are_verified_against_the_jwks, |app| {
    let mut app = app;
    let (ec, ec_jwk) = ec_key("ec-1");
    let jwks_server = JwksServer::start(&jwks(&[&rsa_jwk("rsa-1"), &ec_jwk]));
    app.args = oidc_args(&jwks_server.url);
    app.stop();
    app.spawn();
    assert!(jwks_server.fetches() >= 1, "the keys are loaded at startup");
    let rsa = rsa_key();

    // RS256, delegated scope, Graph audience: create and read a script.
    let writer = jwt(
        Algorithm::RS256,
        Some("rsa-1"),
        &with(
            entra_claims(TENANT1, GRAPH),
            "scp",
            json!("DeviceManagementScripts.ReadWrite.All"),
        ),
        &rsa,
    );
    let created = app
        .send(
            "POST",
            SCRIPTS,
            Some(&writer),
            Some(&format!(
                r#"{{"displayName":"{SECRET_NAME}","detectionScriptContent":"ZWNobyAx"}}"#
            )),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let read = app
        .send("GET", &format!("{SCRIPTS}/{id}"), Some(&writer), None)
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    // ES256, application role, the second audience: reads, but may not write.
    let reader = jwt(
        Algorithm::ES256,
        Some("ec-1"),
        &with(
            entra_claims(TENANT1, "api://remediate"),
            "roles",
            json!(["DeviceManagementScripts.Read.All"]),
        ),
        &ec,
    );
    let list = app.send("GET", SCRIPTS, Some(&reader), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json["value"][0]["id"], id.as_str());
    let denied = app
        .send(
            "POST",
            SCRIPTS,
            Some(&reader),
            Some(r#"{"displayName":"x","detectionScriptContent":"ZWNobyAx"}"#),
        )
        .await;
    denied.assert_error(403, "Forbidden", "DeviceManagementScripts.ReadWrite.All");
    let es_writer = jwt(
        Algorithm::ES256,
        Some("ec-1"),
        &with(
            entra_claims(TENANT1, GRAPH),
            "scp",
            json!("DeviceManagementScripts.ReadWrite.All"),
        ),
        &ec,
    );
    let patched = app
        .send(
            "PATCH",
            &format!("{SCRIPTS}/{id}"),
            Some(&es_writer),
            Some(r#"{"description":"via ES256"}"#),
        )
        .await;
    assert_eq!(patched.status, 204, "{}", patched.text);
    // The tid partitions OIDC callers too; local tokens keep working beside OIDC.
    let other_tenant = jwt(
        Algorithm::RS256,
        Some("rsa-1"),
        &with(
            entra_claims(TENANT2, GRAPH),
            "scp",
            json!("DeviceManagementScripts.ReadWrite.All"),
        ),
        &rsa,
    );
    assert_eq!(script_count(&app, &other_tenant).await, "0");
    let reply = app
        .send("GET", &format!("{SCRIPTS}/{id}"), Some(&other_tenant), None)
        .await;
    reply.assert_error(404, "ResourceNotFound", "");
    assert_eq!(script_count(&app, &app.token).await, "0");

    // Hostile OIDC tokens.
    let good = with(
        entra_claims(TENANT1, GRAPH),
        "scp",
        json!("DeviceManagementScripts.ReadWrite.All"),
    );
    let rs = |claims: &Value| jwt(Algorithm::RS256, Some("rsa-1"), claims, &rsa);
    let (stranger, _) = ec_key("ec-1");
    let rs_tampered = {
        let token = rs(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let other = with(good.clone(), "tid", json!(TENANT2));
        let other = with(other, "iss", json!(entra_issuer(TENANT2)));
        format!(
            "{}.{}.{}",
            parts[0],
            b64(other.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "foreign issuer",
            rs(&with(
                good.clone(),
                "iss",
                json!("https://evil.example/v2.0"),
            )),
            "issuer",
        ),
        (
            "another tenant's issuer",
            rs(&with(good.clone(), "iss", json!(entra_issuer(TENANT2)))),
            "issuer",
        ),
        (
            "the issuer template itself",
            rs(&with(good.clone(), "iss", json!(ISSUER_TEMPLATE))),
            "issuer",
        ),
        (
            "wrong audience",
            rs(&with(good.clone(), "aud", json!("api://other"))),
            "audience",
        ),
        (
            "expired",
            rs(&with(good.clone(), "exp", json!(now() - 400))),
            "expired",
        ),
        // Without a tid the templated issuer cannot match, so either reason is a fair answer.
        (
            "missing tid",
            rs(&without(good.clone(), "tid")),
            "validation failure",
        ),
        (
            "unknown kid",
            jwt(Algorithm::RS256, Some("rsa-unknown"), &good, &rsa),
            "rsa-unknown",
        ),
        ("no kid", jwt(Algorithm::RS256, None, &good, &rsa), "kid"),
        (
            "HS256 keyed with the RSA modulus",
            jwt(
                Algorithm::HS256,
                Some("rsa-1"),
                &good,
                &EncodingKey::from_secret(rsa_modulus().as_bytes()),
            ),
            "HS256",
        ),
        (
            "HS256 keyed with the decoded modulus",
            jwt(
                Algorithm::HS256,
                Some("rsa-1"),
                &good,
                &EncodingKey::from_secret(&URL_SAFE_NO_PAD.decode(rsa_modulus()).unwrap()),
            ),
            "HS256",
        ),
        (
            "ES256 under the RSA key's kid",
            jwt(Algorithm::ES256, Some("rsa-1"), &good, &ec),
            "algorithm",
        ),
        (
            "RS256 under the EC key's kid",
            jwt(Algorithm::RS256, Some("ec-1"), &good, &rsa),
            "algorithm",
        ),
        (
            "another P-256 key under a trusted kid",
            jwt(Algorithm::ES256, Some("ec-1"), &good, &stranger),
            "signature",
        ),
        ("payload swapped", rs_tampered, "signature"),
    ];
    for (what, token, needle) in &cases {
        let reply = app.send("GET", SCRIPTS, Some(token), None).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
        assert_rejected(&reply, needle);
        let reply = app
            .send(
                "POST",
                SCRIPTS,
                Some(token),
                Some(r#"{"displayName":"forged","detectionScriptContent":"ZWNobyAx"}"#),
            )
            .await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text);
    }
    assert_eq!(script_count(&app, &writer).await, "1");
    assert_eq!(script_count(&app, &other_tenant).await, "0");
});

#[tokio::test]
async fn oidc_key_rotation_and_refresh_rate_limit() {
    let mut app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (old_ec, old_ec_jwk) = ec_key("ec-1");
    let jwks_server = JwksServer::start(&jwks(&[&rsa_jwk("rsa-1"), &old_ec_jwk]));
    app.args = oidc_args(&jwks_server.url);
    app.stop();
    app.spawn();
    let claims = with(
        entra_claims(TENANT1, GRAPH),
        "scp",
        json!("DeviceManagementScripts.Read.All"),
    );
    let old_rsa = jwt(Algorithm::RS256, Some("rsa-1"), &claims, &rsa_key());
    let old_es = jwt(Algorithm::ES256, Some("ec-1"), &claims, &old_ec);
    for token in [&old_rsa, &old_es] {
        let reply = app.send("GET", SCRIPTS, Some(token), None).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }

    // Rotate: the old keys are gone, a new one is published. No restart.
    let (new_ec, new_ec_jwk) = ec_key("ec-2");
    jwks_server.set(&jwks(&[&new_ec_jwk]).to_string());
    let new_es = jwt(Algorithm::ES256, Some("ec-2"), &claims, &new_ec);
    let reply = accepted_within_5s(&app, &new_es).await;
    assert_eq!(
        reply.status, 200,
        "the new key is picked up: {}",
        reply.text
    );
    for token in [&old_rsa, &old_es] {
        let reply = app.send("GET", SCRIPTS, Some(token), None).await;
        assert_rejected(&reply, "is not one of the issuer's keys");
    }
    // The old key signing under the new kid.
    let forged = jwt(Algorithm::ES256, Some("ec-2"), &claims, &old_ec);
    assert_rejected(
        &app.send("GET", SCRIPTS, Some(&forged), None).await,
        "signature",
    );

    // A broken JWKS on refresh keeps the cached keys.
    jwks_server.set("this is not a JWKS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = jwks_server.fetches();
    let unknown = jwt(Algorithm::ES256, Some("ec-unknown"), &claims, &new_ec);
    assert_rejected(
        &app.send("GET", SCRIPTS, Some(&unknown), None).await,
        "ec-unknown",
    );
    assert_eq!(
        jwks_server.fetches(),
        before + 1,
        "the unknown kid triggered one refresh"
    );
    let reply = app.send("GET", SCRIPTS, Some(&new_es), None).await;
    assert_eq!(
        reply.status, 200,
        "cached keys survive a failed refresh: {}",
        reply.text
    );
    jwks_server.set(&jwks(&[&new_ec_jwk]).to_string());

    // Rate limit: a burst of 100 unknown kids fetches the JWKS at most twice.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = jwks_server.fetches();
    let started = Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let token = jwt(
            Algorithm::ES256,
            Some(&uuid::Uuid::new_v4().to_string()),
            &claims,
            &new_ec,
        );
        let request = app.client.get(app.url(SCRIPTS)).bearer_auth(token);
        burst.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap().unwrap(), 401);
    }
    let fetched = jwks_server.fetches() - before;
    assert!(
        (1..=2).contains(&fetched),
        "100 unknown kids in {:?} caused {fetched} JWKS fetches",
        started.elapsed()
    );
    // Still serving good tokens.
    assert_eq!(
        app.send("GET", SCRIPTS, Some(&new_es), None).await.status,
        200
    );
}

#[tokio::test]
async fn oidc_jwks_file_mode_and_file_rotation() {
    let mut app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (ec, ec_jwk) = ec_key("file-1");
    let path = app.data_dir.join("jwks.json");
    std::fs::write(&path, jwks(&[&ec_jwk, &rsa_jwk("rsa-1")]).to_string()).unwrap();
    app.args = oidc_args(path.to_str().unwrap());
    app.stop();
    app.spawn();
    let claims = with(
        entra_claims(TENANT1, GRAPH),
        "scp",
        json!("DeviceManagementScripts.ReadWrite.All"),
    );
    for token in [
        jwt(Algorithm::ES256, Some("file-1"), &claims, &ec),
        jwt(Algorithm::RS256, Some("rsa-1"), &claims, &rsa_key()),
    ] {
        let reply = app
            .send(
                "POST",
                SCRIPTS,
                Some(&token),
                Some(r#"{"displayName":"from-file","detectionScriptContent":"ZWNobyAx"}"#),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let unknown = jwt(Algorithm::ES256, Some("file-9"), &claims, &ec);
    assert_rejected(
        &app.send("GET", SCRIPTS, Some(&unknown), None).await,
        "file-9",
    );
    // Rewriting the file rotates the keys without a restart.
    let (new_ec, new_jwk) = ec_key("file-2");
    std::fs::write(&path, jwks(&[&new_jwk]).to_string()).unwrap();
    let new_token = jwt(Algorithm::ES256, Some("file-2"), &claims, &new_ec);
    let reply = accepted_within_5s(&app, &new_token).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["value"].as_array().unwrap().len(), 2);
    let old = jwt(Algorithm::ES256, Some("file-1"), &claims, &ec);
    assert_rejected(&app.send("GET", SCRIPTS, Some(&old), None).await, "file-1");
}

/// An Entra token may carry `deviceid` and `groups` claims (device-bound tokens, group claims), and
/// any Graph token of the tenant has the accepted audience. Device-agent rights must not follow
/// from those claims: a token without `scp`/`roles` grants nothing.
#[tokio::test]
async fn oidc_deviceid_claim_without_permissions_grants_nothing() {
    let mut app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (ec, ec_jwk) = ec_key("ec-1");
    let jwks_server = JwksServer::start(&jwks(&[&ec_jwk]));
    app.args = oidc_args(&jwks_server.url);
    app.stop();
    app.spawn();
    let admin = jwt(
        Algorithm::ES256,
        Some("ec-1"),
        &with(
            entra_claims(TENANT1, GRAPH),
            "scp",
            json!(WRITE_SCOPES.join(" ")),
        ),
        &ec,
    );
    let created = app
        .send(
            "POST",
            SCRIPTS,
            Some(&admin),
            Some(&format!(
                r#"{{"displayName":"{SECRET_NAME}","detectionScriptContent":"c2VjcmV0"}}"#
            )),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let script = created.json["id"].as_str().unwrap().to_owned();
    let assigned = app
        .send(
            "POST",
            &format!("{SCRIPTS}/{script}/assign"),
            Some(&admin),
            Some(r##"{"deviceHealthScriptAssignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}"##),
        )
        .await;
    assert_eq!(assigned.status, 204, "{}", assigned.text);
    // A user's Graph token (User.Read only) from an Entra-registered device.
    let user = jwt(
        Algorithm::ES256,
        Some("ec-1"),
        &with(
            with(entra_claims(TENANT1, GRAPH), "scp", json!("User.Read")),
            "deviceid",
            json!("aad-device-1"),
        ),
        &ec,
    );
    let mut granted = Vec::new();
    for (method, path, body) in [
        ("GET", SCRIPTS.to_owned(), None),
        ("GET", format!("{SCRIPTS}/{script}"), None),
        (
            "POST",
            DEVICES.to_owned(),
            Some(r#"{"deviceName":"rogue"}"#),
        ),
    ] {
        let reply = app.send(method, &path, Some(&user), body).await;
        if reply.status != 403 {
            granted.push(format!(
                "{method} {path} -> {} {}",
                reply.status, reply.text
            ));
        }
    }
    let devices = app
        .send("GET", &format!("{DEVICES}/$count"), Some(&admin), None)
        .await;
    assert!(
        granted.is_empty(),
        "a User.Read OIDC token with a deviceid claim was treated as a device agent:\n{}",
        granted.join("\n")
    );
    assert_eq!(devices.text, "0", "no device was registered");
}

/// Unknown-kid refreshes are rate limited, but while one is in flight against a slow JWKS
/// endpoint, tokens with known keys must still be answered promptly.
#[tokio::test]
async fn oidc_slow_refresh_does_not_stall_known_keys() {
    let mut app = TestApp::start(Backend::Sqlite).await.unwrap();
    let (ec, ec_jwk) = ec_key("ec-1");
    let jwks_server = JwksServer::start(&jwks(&[&ec_jwk]));
    app.args = oidc_args(&jwks_server.url);
    app.stop();
    app.spawn();
    let claims = with(
        entra_claims(TENANT1, GRAPH),
        "scp",
        json!("DeviceManagementScripts.Read.All"),
    );
    let good = jwt(Algorithm::ES256, Some("ec-1"), &claims, &ec);
    assert_eq!(
        app.send("GET", SCRIPTS, Some(&good), None).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    jwks_server.delay_ms.store(3000, Ordering::SeqCst);
    let unknown = jwt(Algorithm::ES256, Some("ec-unknown"), &claims, &ec);
    let request = app.client.get(app.url(SCRIPTS)).bearer_auth(unknown);
    let slow = tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = app.send("GET", SCRIPTS, Some(&good), None).await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(slow.await.unwrap().unwrap(), 401);
    assert!(
        waited < Duration::from_millis(1000),
        "a known-key token waited {waited:?} for an unknown-kid JWKS refresh"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Startup configuration errors
// ---------------------------------------------------------------------------------------------

/// Run `remediate serve` with `args`; it must exit non-zero within 15 s with `needle` on stderr.
fn assert_startup_fails(args: &[&str], needle: &str) {
    let dir = std::env::temp_dir().join(format!("remediate-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_remediate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .args(args)
        .current_dir(&dir)
        .env("REMEDIATE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {args:?} still running after 15 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success(), "serve {args:?} exited successfully");
    assert!(
        !stdout.contains("listening on"),
        "serve {args:?} listened: {stdout}"
    );
    assert!(
        stderr.contains(needle),
        "serve {args:?}: stderr should name {needle:?}: {stderr}"
    );
}

#[test]
fn oidc_misconfiguration_stops_the_server_at_startup() {
    let files = std::env::temp_dir().join(format!("remediate-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&files).unwrap();
    let not_jwks = files.join("not-jwks.json");
    std::fs::write(&not_jwks, r#"{"hello":"world"}"#).unwrap();
    let not_json = files.join("not-json.txt");
    std::fs::write(&not_json, "-----BEGIN PUBLIC KEY-----").unwrap();
    let no_usable = files.join("no-usable.json");
    std::fs::write(
        &no_usable,
        json!({"keys": [
            {"kty": "oct", "kid": "h1", "k": "c2VjcmV0"},
            {"kty": "RSA", "n": rsa_modulus(), "e": "AQAB"}
        ]})
        .to_string(),
    )
    .unwrap();
    let (_, ec_jwk) = ec_key("ok");
    let good = files.join("good.json");
    std::fs::write(&good, jwks(&[&ec_jwk]).to_string()).unwrap();
    // A port nobody listens on.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/keys", listener.local_addr().unwrap())
    };
    let wrong_path = {
        let server = JwksServer::start(&jwks(&[&ec_jwk]));
        server.url.replace("/keys", "/nothing-here")
    };
    let p = |path: &std::path::Path| path.to_str().unwrap().to_owned();
    let aud = ["--oidc-audience", GRAPH];
    let with_aud = |rest: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--oidc-issuer", ISSUER_TEMPLATE]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(aud.iter().map(|s| s.to_string()));
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--oidc-issuer".into(), "X".into()], "no JWKS"),
        (
            with_aud(&["--oidc-jwks-url", &dead, "--oidc-jwks-file", &p(&good)]),
            "not both",
        ),
        (
            with_aud(&["--oidc-jwks-url", &dead]),
            "cannot fetch the JWKS",
        ),
        (with_aud(&["--oidc-jwks-url", &wrong_path]), "404"),
        (
            with_aud(&["--oidc-jwks-url", "file:///etc/passwd"]),
            "http(s)",
        ),
        (
            with_aud(&["--oidc-jwks-file", &p(&not_jwks)]),
            "not a valid JSON Web Key Set",
        ),
        (
            with_aud(&["--oidc-jwks-file", &p(&not_json)]),
            "not a valid JSON Web Key Set",
        ),
        (with_aud(&["--oidc-jwks-file", &p(&no_usable)]), "no usable"),
        (
            with_aud(&["--oidc-jwks-file", &p(&files.join("missing.json"))]),
            "cannot read the JWKS file",
        ),
        (
            vec![
                "--oidc-issuer".into(),
                ISSUER_TEMPLATE.into(),
                "--oidc-jwks-file".into(),
                p(&good),
            ],
            "audience",
        ),
        (
            vec![
                "--oidc-audience".into(),
                GRAPH.into(),
                "--oidc-jwks-file".into(),
                p(&good),
            ],
            "issuer",
        ),
    ];
    for (args, needle) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_startup_fails(&args, needle);
    }
    let _ = std::fs::remove_dir_all(&files);
}

// ---------------------------------------------------------------------------------------------
// 4. Device tokens
// ---------------------------------------------------------------------------------------------

fn ids(reply: &Reply) -> Vec<String> {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let mut ids: Vec<String> = reply.json["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn assign(app: &TestApp, script: &str, targets: &[Value]) {
    let assignments: Vec<Value> = targets.iter().map(|t| json!({"target": t})).collect();
    let reply = app
        .post(
            &format!("{SCRIPTS}/{script}/assign"),
            &json!({"deviceHealthScriptAssignments": assignments}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.text);
}

both!(
    device_tokens_see_only_their_scripts_states_and_record,
    |app| {
        let a = app.script("A").await;
        let b = app.script("B").await;
        let c = app.script("C").await;
        let d = app.script("D").await;
        let all = json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"});
        let g1 = json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1"});
        let not_g1 = json!({"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g1"});
        assign(&app, &a, std::slice::from_ref(&all)).await;
        assign(&app, &b, &[g1]).await;
        assign(&app, &d, &[all, not_g1]).await;
        let d1 = app.device("PC-1").await;
        let d2 = app.device("PC-2").await;
        let admin_state = app.run_state(&a, &d2, r#""detectionState":"fail""#).await;
        assert_eq!(admin_state.status, 201, "{}", admin_state.text);
        let d2_state = format!("{SCRIPTS}/{a}/deviceRunStates/{a}:{d2}");
        let token = app.mint_device("tenant-a", &d1, &["g1"]);
        let t = Some(token.as_str());
        let bind = |device: &str| {
            format!(
                r#"{{"managedDevice@odata.bind":"https://graph.microsoft.com/beta/deviceManagement/managedDevices('{device}')","detectionState":"success"}}"#
            )
        };

        // Scripts: exactly the assigned ones.
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort();
        assert_eq!(ids(&app.send("GET", SCRIPTS, t, None).await), expected);
        for hidden in [&c, &d] {
            let reply = app
                .send("GET", &format!("{SCRIPTS}/{hidden}"), t, None)
                .await;
            reply.assert_error(404, "ResourceNotFound", hidden);
            let reply = app
                .send("GET", &format!("{SCRIPTS}/{hidden}/assignments"), t, None)
                .await;
            assert_eq!(reply.status, 404, "{}", reply.text);
        }
        assert_eq!(
            app.send("GET", &format!("{SCRIPTS}/{a}"), t, None)
                .await
                .status,
            200
        );
        let assignments = app
            .send("GET", &format!("{SCRIPTS}/{a}/assignments"), t, None)
            .await;
        assert_eq!(assignments.status, 200, "{}", assignments.text);
        assert_eq!(assignments.json["value"].as_array().unwrap().len(), 1);
        // A device without the group sees A and D.
        let other = app.mint_device("tenant-a", &d2, &[]);
        let mut expected_other = vec![a.clone(), d.clone()];
        expected_other.sort();
        assert_eq!(
            ids(&app.send("GET", SCRIPTS, Some(&other), None).await),
            expected_other
        );

        // Run states: only its own.
        let states = format!("{SCRIPTS}/{a}/deviceRunStates");
        let created = app.send("POST", &states, t, Some(&bind(&d1))).await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(created.json["id"], format!("{a}:{d1}"));
        app.send("POST", &states, t, Some(&bind(&d2)))
            .await
            .assert_error(403, "Forbidden", "own device");
        app.send("POST", &states, t, Some(r#"{"detectionState":"fail"}"#))
            .await
            .assert_error(400, "BadRequest", "managedDevice@odata.bind");
        let reply = app
            .send(
                "POST",
                &format!("{SCRIPTS}/{c}/deviceRunStates"),
                t,
                Some(&bind(&d1)),
            )
            .await;
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert_eq!(
            app.get(&format!("{SCRIPTS}/{c}/deviceRunStates/$count"))
                .await
                .text,
            "0"
        );
        assert_eq!(
            ids(&app.send("GET", &states, t, None).await),
            vec![format!("{a}:{d1}")]
        );
        let own = format!("{states}/{a}:{d1}");
        assert_eq!(app.send("GET", &own, t, None).await.status, 200);
        let patched = app
            .send("PATCH", &own, t, Some(r#"{"detectionState":"fail"}"#))
            .await;
        assert_eq!(patched.status, 204, "{}", patched.text);
        assert_eq!(app.get(&own).await.json["detectionState"], "fail");
        app.send("PATCH", &own, t, Some(&bind(&d2)))
            .await
            .assert_error(403, "Forbidden", "own device");
        app.send("GET", &d2_state, t, None)
            .await
            .assert_error(404, "ResourceNotFound", "");
        let reply = app
            .send(
                "PATCH",
                &d2_state,
                t,
                Some(r#"{"detectionState":"success"}"#),
            )
            .await;
        reply.assert_error(404, "ResourceNotFound", "");
        let reply = app
            .send("GET", &format!("{d2_state}/history"), t, None)
            .await;
        assert_eq!(reply.status, 404, "{}", reply.text);
        assert_eq!(app.get(&d2_state).await.json["detectionState"], "fail");
        app.send("DELETE", &own, t, None)
            .await
            .assert_error(403, "Forbidden", "device token");
        assert_eq!(app.get(&own).await.status, 200);
        app.send("GET", &format!("{SCRIPTS}/{a}/runSummary"), t, None)
            .await
            .assert_error(403, "Forbidden", "device token");
        app.send("DELETE", &format!("{SCRIPTS}/{a}"), t, None)
            .await
            .assert_error(403, "Forbidden", "");
        app.send(
            "PATCH",
            &format!("{SCRIPTS}/{a}"),
            t,
            Some(r#"{"displayName":"pwned"}"#),
        )
        .await
        .assert_error(403, "Forbidden", "");
        assert_eq!(
            app.get(&format!("{SCRIPTS}/{a}")).await.json["displayName"],
            "A"
        );

        // Devices: only its own record.
        assert_eq!(
            ids(&app.send("GET", DEVICES, t, None).await),
            vec![d1.clone()]
        );
        app.send("GET", &format!("{DEVICES}/{d2}"), t, None)
            .await
            .assert_error(404, "ResourceNotFound", "");
        app.send(
            "PATCH",
            &format!("{DEVICES}/{d2}"),
            t,
            Some(r#"{"deviceName":"pwned"}"#),
        )
        .await
        .assert_error(404, "ResourceNotFound", "");
        assert_eq!(
            app.get(&format!("{DEVICES}/{d2}")).await.json["deviceName"],
            "PC-2"
        );
        let renamed = app
            .send(
                "PATCH",
                &format!("{DEVICES}/{d1}"),
                t,
                Some(r#"{"deviceName":"PC-1b","osVersion":"10.0.2"}"#),
            )
            .await;
        assert_eq!(renamed.status, 204, "{}", renamed.text);
        assert_eq!(
            app.get(&format!("{DEVICES}/{d1}")).await.json["deviceName"],
            "PC-1b"
        );
        app.send("DELETE", &format!("{DEVICES}/{d1}"), t, None)
            .await
            .assert_error(403, "Forbidden", "");
        let again = app
            .send("POST", DEVICES, t, Some(r#"{"deviceName":"dup"}"#))
            .await;
        again.assert_error(409, "Conflict", &d1);
        // Registration: the id is the token's device id, whatever the body says.
        let d3 = format!("d3-{}", uuid::Uuid::new_v4());
        let t3 = app.mint_device("tenant-a", &d3, &[]);
        let registered = app
            .send("POST", DEVICES, Some(&t3), Some(r#"{"deviceName":"PC-3"}"#))
            .await;
        assert_eq!(registered.status, 201, "{}", registered.text);
        assert_eq!(registered.json["id"], d3.as_str());
        let reply = app
            .send(
                "POST",
                DEVICES,
                Some(&t3),
                Some(&format!(r#"{{"id":"{d2}","deviceName":"PC-3"}}"#)),
            )
            .await;
        assert!(reply.status == 400 || reply.status == 409, "{}", reply.text);
        assert_eq!(
            app.get(&format!("{DEVICES}/{d3}")).await.json["deviceName"],
            "PC-3"
        );
        assert_eq!(
            app.get(&format!("{DEVICES}/{d2}")).await.json["deviceName"],
            "PC-2"
        );
        // On-demand runs: read its own queue only; cannot start runs.
        let pending = app
            .send(
                "GET",
                &format!("{DEVICES}/{d1}/pendingOnDemandRemediations"),
                t,
                None,
            )
            .await;
        assert_eq!(pending.status, 200, "{}", pending.text);
        app.send(
            "GET",
            &format!("{DEVICES}/{d2}/pendingOnDemandRemediations"),
            t,
            None,
        )
        .await
        .assert_error(404, "ResourceNotFound", "");
        let reply = app
            .send(
                "POST",
                &format!("{DEVICES}/{d1}/initiateOnDemandProactiveRemediation"),
                t,
                Some(&format!(r#"{{"scriptPolicyId":"{a}"}}"#)),
            )
            .await;
        reply.assert_error(403, "Forbidden", "");

        // $batch: each inner request is judged as if alone.
        let batch = json!({"requests": [
            {"id": "1", "method": "POST", "url": format!("/deviceManagement/deviceHealthScripts/{b}/deviceRunStates"),
             "headers": {"Content-Type": "application/json"},
             "body": {"managedDevice@odata.bind": format!("managedDevices('{d1}')"), "detectionState": "success"}},
            {"id": "2", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{a}")},
            {"id": "3", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{a}/runSummary")},
            {"id": "4", "method": "GET", "url": format!("/deviceManagement/deviceHealthScripts/{c}")},
            {"id": "5", "method": "POST", "url": format!("/deviceManagement/deviceHealthScripts/{b}/deviceRunStates"),
             "headers": {"Content-Type": "application/json"},
             "body": {"managedDevice@odata.bind": format!("managedDevices('{d2}')")}}
        ]});
        let reply = app
            .send("POST", "$batch", t, Some(&batch.to_string()))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let responses = reply.json["responses"].as_array().unwrap();
        let status = |id: &str| responses.iter().find(|r| r["id"] == id).unwrap()["status"].clone();
        assert_eq!(status("1"), 201, "{}", reply.text);
        assert_eq!(status("2"), 200, "{}", reply.text);
        assert_eq!(status("3"), 403, "{}", reply.text);
        assert_eq!(status("4"), 404, "{}", reply.text);
        assert_eq!(status("5"), 403, "{}", reply.text);
        assert!(!reply.text.contains("\"C\""), "{}", reply.text);
        assert_eq!(
            ids(&app.get(&format!("{SCRIPTS}/{b}/deviceRunStates")).await),
            vec![format!("{b}:{d1}")]
        );

        // The same device id in another tenant sees nothing of tenant A.
        let foreign = app.mint_device("tenant-b", &d1, &["g1"]);
        assert_eq!(
            ids(&app.send("GET", SCRIPTS, Some(&foreign), None).await),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(&app.send("GET", DEVICES, Some(&foreign), None).await),
            Vec::<String>::new()
        );
        app.send("GET", &format!("{SCRIPTS}/{a}"), Some(&foreign), None)
            .await
            .assert_error(404, "ResourceNotFound", "");
        app.send("GET", &own, Some(&foreign), None)
            .await
            .assert_error(404, "ResourceNotFound", "");
    }
);

// The run summary aggregates every device's states; a device token may not read it directly
// (403), so it must not get it through `$expand` either.
both!(device_tokens_cannot_expand_run_summary, |app| {
    let a = app.script("A").await;
    assign(
        &app,
        &a,
        &[json!({"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"})],
    )
    .await;
    app.script("unassigned").await;
    let d1 = app.device("PC-1").await;
    let d2 = app.device("PC-2").await;
    let state = app.run_state(&a, &d2, r#""detectionState":"fail""#).await;
    assert_eq!(state.status, 201, "{}", state.text);
    let token = app.mint_device("tenant-a", &d1, &[]);
    let t = Some(token.as_str());
    app.send("GET", &format!("{SCRIPTS}/{a}/runSummary"), t, None)
        .await
        .assert_error(403, "Forbidden", "device token");
    // Counts are no side channel: forbidden, or only what the device can see.
    let count = app.send("GET", &format!("{SCRIPTS}/$count"), t, None).await;
    assert!(
        count.status == 403 || (count.status == 200 && count.text == "1"),
        "{} {}",
        count.status,
        count.text
    );
    // The run summary aggregates every device's states: not reachable through $expand either.
    let mut leaks = Vec::new();
    for path in [
        format!("{SCRIPTS}/{a}?$expand=runSummary"),
        format!("{SCRIPTS}?$expand=runSummary"),
        format!("{SCRIPTS}/{a}?$expand=runSummary($select=issueDetectedDeviceCount)"),
    ] {
        let reply = app.send("GET", &path, t, None).await;
        if reply.status < 400 || reply.text.contains("issueDetectedDeviceCount") {
            leaks.push(format!("GET {path} -> {} {}", reply.status, reply.text));
        }
    }
    assert!(
        leaks.is_empty(),
        "a device token read runSummary through $expand:\n{}",
        leaks.join("\n")
    );
});

// ---------------------------------------------------------------------------------------------
// 5. Tenant isolation through nextLink, $batch and /$count
// ---------------------------------------------------------------------------------------------

both!(tenant_isolation_through_next_link_batch_and_count, |app| {
    let script = app.script(SECRET_NAME).await;
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(app.device(&format!("secret-pc-{i}")).await);
    }
    let state = app.run_state(&script, &devices[0], "").await;
    assert_eq!(state.status, 201, "{}", state.text);
    let state_id = state.json["id"].as_str().unwrap().to_owned();
    let b = app.mint("tenant-b", WRITE_SCOPES, &[]);

    let first = app.get(&format!("{DEVICES}?$top=1")).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let next = first.json["@odata.nextLink"]
        .as_str()
        .expect("a nextLink")
        .to_owned();
    // Tenant A can follow it; tenant B cannot, and sees none of A's rows.
    let own = app.get(&next).await;
    assert_eq!(own.status, 200, "{}", own.text);
    let reply = app.send("GET", &next, Some(&b), None).await;
    reply.assert_error(400, "BadRequest", "$skiptoken");
    assert!(!reply.text.contains("secret-pc"), "{}", reply.text);
    // Also when tenant B has rows of its own to page through.
    for i in 0..2 {
        let r = app
            .send(
                "POST",
                DEVICES,
                Some(&b),
                Some(&format!(r#"{{"deviceName":"b-pc-{i}"}}"#)),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let reply = app.send("GET", &next, Some(&b), None).await;
    reply.assert_error(400, "BadRequest", "$skiptoken");
    assert!(!reply.text.contains("secret-pc"), "{}", reply.text);
    // Tenant A's token on a script list with the device list's token: a different query.
    let token = next
        .split("$skiptoken=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let reply = app
        .get(&format!("{SCRIPTS}?$top=1&$skiptoken={token}"))
        .await;
    reply.assert_error(400, "BadRequest", "$skiptoken");

    // $batch of GETs of A's ids.
    let urls = [
        format!("/deviceManagement/deviceHealthScripts/{script}"),
        format!("/deviceManagement/deviceHealthScripts('{script}')/assignments"),
        format!("/deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
        format!("/deviceManagement/deviceHealthScripts/{script}/deviceRunStates/{state_id}"),
        format!("/deviceManagement/deviceHealthScripts/{script}/runSummary"),
        format!("/deviceManagement/managedDevices/{}", devices[0]),
        format!("/deviceManagement/managedDevices('{}')", devices[1]),
        format!(
            "/deviceManagement/managedDevices/{}/pendingOnDemandRemediations",
            devices[2]
        ),
    ];
    let requests: Vec<Value> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| json!({"id": i.to_string(), "method": "GET", "url": url}))
        .collect();
    let reply = app
        .send(
            "POST",
            "$batch",
            Some(&b),
            Some(&json!({"requests": requests}).to_string()),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let responses = reply.json["responses"].as_array().unwrap();
    assert_eq!(responses.len(), urls.len());
    for r in responses {
        assert_eq!(
            r["status"],
            404,
            "{}: {}",
            urls[r["id"].as_str().unwrap().parse::<usize>().unwrap()],
            r
        );
        assert_eq!(r["body"]["error"]["code"], "ResourceNotFound", "{r}");
    }
    assert!(
        !reply.text.contains(SECRET_NAME) && !reply.text.contains("secret-pc"),
        "{}",
        reply.text
    );

    // /$count.
    assert_eq!(app.get(&format!("{DEVICES}/$count")).await.text, "3");
    assert_eq!(
        app.send("GET", &format!("{DEVICES}/$count"), Some(&b), None)
            .await
            .text,
        "2"
    );
    assert_eq!(app.get(&format!("{SCRIPTS}/$count")).await.text, "1");
    assert_eq!(script_count(&app, &b).await, "0");
    let reply = app
        .send(
            "GET",
            &format!("{DEVICES}/$count?$filter=startswith(deviceName,'secret')"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.text, "0", "{}", reply.text);
    let reply = app
        .send(
            "GET",
            &format!("{SCRIPTS}/{script}/deviceRunStates/$count"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(reply.status, 404, "{}", reply.text);
});
