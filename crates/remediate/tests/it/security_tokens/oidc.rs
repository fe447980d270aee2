//! OIDC tokens verified against a loopback JWKS: algorithms, issuers, audiences and tenants, key
//! rotation and the refresh rate limit, file mode, `deviceid` claims that grant nothing, and slow
//! refreshes that do not stall known keys.

use super::*;

/// A loopback HTTP/1.1 server answering `GET /keys` with the current JWKS (one response per
/// connection), counting the fetches. Runs on its own threads, so it answers while the test thread
/// blocks waiting for the server to start (which fetches the JWKS first).
pub(super) struct JwksServer {
    pub(super) url: String,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    /// Milliseconds to wait before answering.
    delay_ms: Arc<AtomicUsize>,
}

impl JwksServer {
    pub(super) fn start(jwks: &Value) -> JwksServer {
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
pub(super) const ISSUER_TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";

fn entra_issuer(tid: &str) -> String {
    ISSUER_TEMPLATE.replace("{tenantid}", tid)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_der(include_bytes!("../../fixtures/rsa-test-key.der"))
}

pub(super) fn rsa_modulus() -> &'static str {
    include_str!("../../fixtures/rsa-test-key.n").trim()
}

fn rsa_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": rsa_modulus(), "e": "AQAB"})
}

/// A fresh P-256 key: (signing key, its public JWK under `kid`).
pub(super) fn ec_key(kid: &str) -> (EncodingKey, Value) {
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

pub(super) fn jwks(keys: &[&Value]) -> Value {
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
    assert_eq!(patched.status, 200, "{}", patched.text);
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
    assert_eq!(assigned.status, 200, "{}", assigned.text);
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
