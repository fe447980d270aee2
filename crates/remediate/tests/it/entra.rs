//! The Entra-shaped token endpoint (`remediate_api::entra`) over HTTP, on both databases: apps
//! registered as `remediate app create` does get tokens for the client credentials grant (in the
//! form or by HTTP Basic) that work on `/beta` with exactly the app's roles; every refusal is
//! Entra's JSON with Entra's status, `error` and AADSTS code; a revoked app gets no token; the
//! discovery documents (OpenID configuration, JWKS, instance discovery) describe the endpoint on
//! the scheme and host the client used, and the JWKS key verifies the tokens. The command line
//! (`app create | list | revoke`) is checked through the binary.

use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use crate::both;
use crate::harness::{Reply, TestApp};

const TENANT: &str = "5b2f3c1e-8d4a-4f6b-9c0d-1e2f3a4b5c6d";
const OTHER_TENANT: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";
const SCRIPTS_RW: &str = "DeviceManagementScripts.ReadWrite.All";

fn origin(app: &TestApp) -> String {
    app.base.trim_end_matches("/beta").to_owned()
}

/// `serve`'s configuration of this app's data directory and database (what the CLI reads).
fn config(app: &TestApp) -> remediate::config::Config {
    let mut flags = vec!["--data-dir".to_owned(), app.data_dir.display().to_string()];
    if let Some(url) = app.database_url() {
        flags.extend(["--database".to_owned(), url]);
    }
    let args = remediate::config::ServeArgs::from_flags(flags).expect("serve flags");
    remediate::config::Config::resolve(args).expect("configuration")
}

/// Register an app as `remediate app create` does: (client id, secret).
async fn register(
    app: &TestApp,
    tenant: &str,
    roles: &[&str],
    scopes: &[&str],
) -> (String, String) {
    let created = remediate::create_app(
        config(app),
        &remediate::AppRequest {
            tenant: tenant.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            name: Some("entra-it".to_owned()),
        },
    )
    .await
    .expect("register an app");
    (created.app.client_id, created.client_secret)
}

/// Percent-encode every byte but ASCII letters and digits (form and query values).
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A request to a login endpoint (outside `/beta`), with a `client-request-id`.
async fn login(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Reply {
    let mut request = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", origin(app)))
        .header("client-request-id", "7d4c9a52-1111-4222-8333-944455556666");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

async fn token_request(app: &TestApp, tenant: &str, pairs: &[(&str, &str)]) -> Reply {
    login(
        app,
        "POST",
        &format!("/{tenant}/oauth2/v2.0/token"),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form(pairs)),
    )
    .await
}

/// The claims of a JWT (not verified).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A successful token answer: Entra's shape; returns the access token.
fn assert_token(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["token_type"], "Bearer", "{}", reply.text);
    assert_eq!(reply.json["expires_in"], 3599, "{}", reply.text);
    assert_eq!(reply.json["ext_expires_in"], 3599, "{}", reply.text);
    assert!(reply.header("content-type").starts_with("application/json"));
    assert!(reply.header("cache-control").contains("no-store"));
    reply.json["access_token"]
        .as_str()
        .expect("an access_token")
        .to_owned()
}

/// An Entra error answer: status, `error`, the AADSTS code first in the description and alone in
/// `error_codes`, the ids (trace = the request id; correlation = the client's request id) and the
/// timestamp; returns the description.
fn assert_entra_error(reply: &Reply, status: u16, error: &str, code: u32) -> String {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json["error"], error, "{}", reply.text);
    let description = reply.json["error_description"].as_str().unwrap_or("");
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert_eq!(reply.json["error_codes"], serde_json::json!([code]));
    assert_eq!(reply.json["trace_id"], reply.header("request-id"));
    assert_eq!(
        reply.json["correlation_id"],
        "7d4c9a52-1111-4222-8333-944455556666"
    );
    let timestamp = reply.json["timestamp"].as_str().unwrap_or("");
    assert_eq!(timestamp.len(), 20, "{timestamp}");
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b' ');
    assert!(description.contains(&format!(
        "Trace ID: {}",
        reply.json["trace_id"].as_str().unwrap()
    )));
    assert!(reply.header("content-type").starts_with("application/json"));
    description.to_owned()
}

both!(app_tokens_work_on_beta_with_exactly_the_apps_roles, |app| {
    let (id, secret) = register(&app, TENANT, &[SCRIPTS_RW], &[]).await;
    let reply = token_request(
        &app,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", GRAPH_DEFAULT),
        ],
    )
    .await;
    let token = assert_token(&reply);
    let c = claims(&token);
    assert_eq!(c["tid"], TENANT);
    assert_eq!(c["appid"], id.as_str());
    assert_eq!(c["azp"], id.as_str());
    assert_eq!(c["roles"], serde_json::json!([SCRIPTS_RW]));
    assert_eq!(c["aud"], "https://graph.microsoft.com");
    assert_eq!(c["idtyp"], "app");
    assert!(c.get("scp").is_none(), "{c}");
    let exp = c["exp"].as_u64().unwrap();
    assert_eq!(exp - c["iat"].as_u64().unwrap(), 3599);

    // The token is a Graph token of the tenant: scripts (its role) yes, devices (not) 403.
    let created = app
        .send(
            "POST",
            "deviceManagement/deviceHealthScripts",
            Some(&token),
            Some(r#"{"displayName":"from an app","detectionScriptContent":"ZWNobyAx"}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let listed = app
        .send(
            "GET",
            "deviceManagement/deviceHealthScripts",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(listed.json["value"].as_array().unwrap().len(), 1);
    app.send("GET", "deviceManagement/managedDevices", Some(&token), None)
        .await
        .assert_error(403, "Forbidden", "DeviceManagementManagedDevices");
    // Another tenant's data is not the app's: the default tenant's scripts are not listed.
    let other = app.get("deviceManagement/deviceHealthScripts").await;
    assert_eq!(
        other.json["value"].as_array().unwrap().len(),
        0,
        "{}",
        other.text
    );

    // The secret by HTTP Basic (RFC 6749: form-url-encoded, then base64), another resource's
    // `.default` and OpenID scopes beside it: the same token shape.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", id, enc(&secret)));
    let reply = login(
        &app,
        "POST",
        &format!("/{}/oauth2/v2.0/token", TENANT.to_uppercase()),
        &[
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("authorization", &format!("Basic {basic}")),
        ],
        Some(form(&[
            ("grant_type", "client_credentials"),
            (
                "scope",
                "00000003-0000-0000-c000-000000000000/.default openid profile",
            ),
        ])),
    )
    .await;
    let token = assert_token(&reply);
    assert_eq!(claims(&token)["tid"], TENANT);
    let listed = app
        .send(
            "GET",
            "deviceManagement/deviceHealthScripts",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);

    // An app with several roles and a scope: all of them, and the devices call now works.
    let (id, secret) = register(
        &app,
        TENANT,
        &[SCRIPTS_RW, "DeviceManagementManagedDevices.Read.All"],
        &["DeviceManagementRBAC.Read.All"],
    )
    .await;
    let reply = token_request(
        &app,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", "https://graph.microsoft.com//.default"),
        ],
    )
    .await;
    let token = assert_token(&reply);
    let c = claims(&token);
    assert_eq!(
        c["roles"],
        serde_json::json!([SCRIPTS_RW, "DeviceManagementManagedDevices.Read.All"])
    );
    assert_eq!(c["scp"], "DeviceManagementRBAC.Read.All");
    let devices = app
        .send("GET", "deviceManagement/managedDevices", Some(&token), None)
        .await;
    assert_eq!(devices.status, 200, "{}", devices.text);
});

/// (what, the form's parameters, status, `error`, AADSTS code).
type Case<'a> = (&'a str, Vec<(&'a str, String)>, u16, &'a str, u32);

both!(every_refusal_is_entra_shaped, |app| {
    let (id, secret) = register(&app, TENANT, &[SCRIPTS_RW], &[]).await;
    let (other_id, other_secret) = register(&app, OTHER_TENANT, &[SCRIPTS_RW], &[]).await;
    let good = |overrides: &[(&'static str, Option<&'static str>)]| {
        let mut pairs: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", id.clone()),
            ("client_secret", secret.clone()),
            ("scope", GRAPH_DEFAULT.into()),
        ];
        for (name, value) in overrides {
            pairs.retain(|(n, _)| n != name);
            if let Some(value) = value {
                pairs.push((name, (*value).to_owned()));
            }
        }
        pairs
    };
    let cases: Vec<Case> = vec![
        (
            "no grant_type",
            good(&[("grant_type", None)]),
            400,
            "invalid_request",
            900144,
        ),
        (
            "a password grant",
            good(&[("grant_type", Some("password"))]),
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            "no client_id",
            good(&[("client_id", None)]),
            400,
            "invalid_request",
            900144,
        ),
        (
            "no scope",
            good(&[("scope", None)]),
            400,
            "invalid_request",
            900144,
        ),
        (
            "a delegated scope",
            good(&[(
                "scope",
                Some("https://graph.microsoft.com/DeviceManagementScripts.Read.All"),
            )]),
            400,
            "invalid_scope",
            1002012,
        ),
        (
            "only openid",
            good(&[("scope", Some("openid"))]),
            400,
            "invalid_scope",
            70011,
        ),
        (
            "two resources",
            good(&[(
                "scope",
                Some("https://graph.microsoft.com/.default api://other/.default"),
            )]),
            400,
            "invalid_scope",
            28000,
        ),
        (
            "no secret",
            good(&[("client_secret", None)]),
            401,
            "invalid_client",
            7000218,
        ),
        (
            "a wrong secret",
            good(&[("client_secret", Some("rma~not-the-secret"))]),
            401,
            "invalid_client",
            7000215,
        ),
        (
            "a client assertion",
            good(&[
                ("client_secret", None),
                ("client_assertion", Some("eyJ.eyJ.sig")),
                (
                    "client_assertion_type",
                    Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ),
            ]),
            401,
            "invalid_client",
            700027,
        ),
        (
            "an unknown client id",
            good(&[("client_id", Some("11111111-2222-4333-8444-555555555555"))]),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            "a client id that is no GUID",
            good(&[("client_id", Some("my-app"))]),
            400,
            "unauthorized_client",
            700016,
        ),
    ];
    for (what, pairs, status, error, code) in &cases {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = token_request(&app, TENANT, &pairs).await;
        eprintln!("{what}: {}", reply.text);
        assert_entra_error(&reply, *status, error, *code);
    }
    // 401s say how to authenticate.
    let reply = token_request(
        &app,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", "wrong"),
            ("scope", GRAPH_DEFAULT),
        ],
    )
    .await;
    assert!(reply.header("www-authenticate").starts_with("Basic"));
    // The app of another tenant is unknown in this one, with its own secret too.
    let reply = token_request(
        &app,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &other_id),
            ("client_secret", &other_secret),
            ("scope", GRAPH_DEFAULT),
        ],
    )
    .await;
    let description = assert_entra_error(&reply, 400, "unauthorized_client", 700016);
    assert!(
        description.contains(&other_id) && description.contains(TENANT),
        "{description}"
    );
    // … and its own tenant gives it a token of that tenant.
    let reply = token_request(
        &app,
        OTHER_TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &other_id),
            ("client_secret", &other_secret),
            ("scope", GRAPH_DEFAULT),
        ],
    )
    .await;
    assert_eq!(claims(&assert_token(&reply))["tid"], OTHER_TENANT);

    // The tenant of the URL: client credentials need a specific tenant, as Entra says.
    let valid: Vec<(&str, &str)> = vec![
        ("grant_type", "client_credentials"),
        ("client_id", &id),
        ("client_secret", &secret),
        ("scope", GRAPH_DEFAULT),
    ];
    for (tenant, status, error, code) in [
        ("common", 400, "invalid_request", 50059),
        ("organizations", 400, "invalid_request", 50059),
        ("contoso.onmicrosoft.com", 400, "invalid_request", 90002),
        ("tenant-a", 400, "invalid_request", 900023),
    ] {
        let reply = token_request(&app, tenant, &valid).await;
        assert_entra_error(&reply, status, error, code);
    }

    // The shape of the request itself.
    let token_path = format!("/{TENANT}/oauth2/v2.0/token");
    let reply = login(&app, "GET", &token_path, &[], None).await;
    assert_entra_error(&reply, 400, "invalid_request", 900561);
    let json_body =
        serde_json::json!({"grant_type": "client_credentials", "client_id": id}).to_string();
    let reply = login(
        &app,
        "POST",
        &token_path,
        &[("content-type", "application/json")],
        Some(json_body),
    )
    .await;
    assert_entra_error(&reply, 400, "invalid_request", 900144);
    let twice = format!("{}&client_id={id}", form(&valid));
    let reply = login(
        &app,
        "POST",
        &token_path,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(twice),
    )
    .await;
    assert_entra_error(&reply, 400, "invalid_request", 9002313);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let reply = login(
        &app,
        "POST",
        &token_path,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &format!("Basic {basic}")),
        ],
        Some(form(&valid)),
    )
    .await;
    let description = assert_entra_error(&reply, 400, "invalid_request", 9002313);
    assert!(description.contains("both"), "{description}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:wrong"));
    let reply = login(
        &app,
        "POST",
        &token_path,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &format!("Basic {basic}")),
        ],
        Some(form(&[
            ("grant_type", "client_credentials"),
            ("scope", GRAPH_DEFAULT),
        ])),
    )
    .await;
    assert_entra_error(&reply, 401, "invalid_client", 7000215);

    // Interactive sign-in is not served, and says so.
    let reply = login(
        &app,
        "GET",
        &format!("/{TENANT}/oauth2/v2.0/authorize?client_id={id}&response_type=code"),
        &[],
        None,
    )
    .await;
    let description = assert_entra_error(&reply, 400, "invalid_request", 9002313);
    assert!(description.contains("client credentials"), "{description}");
    let reply = login(
        &app,
        "GET",
        &format!("/{TENANT}/oauth2/v2.0/nothing"),
        &[],
        None,
    )
    .await;
    assert_entra_error(&reply, 404, "invalid_request", 9002313);
});

both!(a_revoked_app_gets_no_token, |app| {
    let (id, secret) = register(&app, TENANT, &[SCRIPTS_RW], &[]).await;
    let (kept, kept_secret) = register(&app, TENANT, &[SCRIPTS_RW], &[]).await;
    let request = |id: String, secret: String| {
        let app = &app;
        async move {
            token_request(
                app,
                TENANT,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &id),
                    ("client_secret", &secret),
                    ("scope", GRAPH_DEFAULT),
                ],
            )
            .await
        }
    };
    let before = assert_token(&request(id.clone(), secret.clone()).await);

    let revoked = remediate::revoke_app(config(&app), TENANT, &id.to_uppercase())
        .await
        .expect("revoke");
    assert!(revoked.revoked.is_some());
    let first_revocation = revoked.revoked;
    // Revoking again keeps the first time.
    let again = remediate::revoke_app(config(&app), TENANT, &id)
        .await
        .unwrap();
    assert_eq!(again.revoked, first_revocation);
    assert!(
        remediate::revoke_app(config(&app), TENANT, "11111111-2222-4333-8444-555555555555")
            .await
            .is_err()
    );
    assert!(remediate::revoke_app(config(&app), OTHER_TENANT, &id)
        .await
        .is_err());

    let description = assert_entra_error(
        &request(id.clone(), secret.clone()).await,
        401,
        "invalid_client",
        7000215,
    );
    assert!(description.contains("revoked"), "{description}");
    // Without the secret nothing tells that the app exists or was revoked.
    let description = assert_entra_error(
        &request(id.clone(), "rma~guess".into()).await,
        401,
        "invalid_client",
        7000215,
    );
    assert!(!description.contains("revoked"), "{description}");
    // The other app is untouched; a token issued before stays valid until it expires.
    assert_token(&request(kept.clone(), kept_secret).await);
    let still = app
        .send(
            "GET",
            "deviceManagement/deviceHealthScripts",
            Some(&before),
            None,
        )
        .await;
    assert_eq!(still.status, 200, "{}", still.text);

    let apps = remediate::list_apps(config(&app), TENANT).await.unwrap();
    assert_eq!(apps.len(), 2);
    let listed = apps.iter().find(|a| a.client_id == id).unwrap();
    assert_eq!(listed.revoked, first_revocation);
    assert!(apps
        .iter()
        .any(|a| a.client_id == kept && a.revoked.is_none()));
    assert!(apps
        .iter()
        .all(|a| a.roles == [SCRIPTS_RW] && a.display_name == "entra-it"));
    assert!(remediate::list_apps(config(&app), OTHER_TENANT)
        .await
        .unwrap()
        .is_empty());
});

both!(discovery_documents_describe_the_endpoint, |app| {
    let base = origin(&app);
    let config_path = format!("/{TENANT}/v2.0/.well-known/openid-configuration");
    let reply = login(&app, "GET", &config_path, &[], None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let doc = &reply.json;
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/token")
    );
    assert_eq!(
        doc["jwks_uri"],
        format!("{base}/{TENANT}/discovery/v2.0/keys")
    );
    assert_eq!(doc["issuer"], format!("{base}/{TENANT}/v2.0"));
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/{TENANT}/oauth2/v2.0/authorize")
    );
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert!(doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap()
        .contains(&Value::from("client_secret_basic")));

    // As reached through the proxy (Microsoft's host) or behind a TLS-terminating proxy: https.
    let reply = login(
        &app,
        "GET",
        &config_path,
        &[("host", "login.microsoftonline.com")],
        None,
    )
    .await;
    assert_eq!(
        reply.json["token_endpoint"],
        format!("https://login.microsoftonline.com/{TENANT}/oauth2/v2.0/token")
    );
    let reply = login(
        &app,
        "GET",
        &config_path,
        &[("x-forwarded-proto", "https")],
        None,
    )
    .await;
    assert_eq!(
        reply.json["token_endpoint"],
        format!(
            "{}/{TENANT}/oauth2/v2.0/token",
            base.replace("http://", "https://")
        )
    );
    // `common` and `organizations` are served as Entra serves them; names it does not know are not.
    let reply = login(
        &app,
        "GET",
        "/common/v2.0/.well-known/openid-configuration",
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["issuer"], format!("{base}/{{tenantid}}/v2.0"));
    assert_eq!(
        reply.json["token_endpoint"],
        format!("{base}/common/oauth2/v2.0/token")
    );
    let reply = login(
        &app,
        "GET",
        "/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
        &[],
        None,
    )
    .await;
    assert_entra_error(&reply, 400, "invalid_tenant", 90002);
    let reply = login(&app, "POST", &config_path, &[], Some(String::new())).await;
    assert_entra_error(&reply, 400, "invalid_request", 900561);

    // The JWKS holds the key that verifies the endpoint's tokens.
    let (id, secret) = register(&app, TENANT, &[SCRIPTS_RW], &[]).await;
    let token = assert_token(
        &token_request(
            &app,
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", GRAPH_DEFAULT),
            ],
        )
        .await,
    );
    let reply = login(
        &app,
        "GET",
        &format!("/{TENANT}/discovery/v2.0/keys"),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let keys = reply.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", reply.text);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), keys[0]["kid"].as_str());
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(keys[0].clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["https://graph.microsoft.com"]);
    let verified = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("verifies");
    assert_eq!(verified.claims["appid"], id.as_str());
    let common = login(&app, "GET", "/common/discovery/v2.0/keys", &[], None).await;
    assert_eq!(common.json, reply.json);

    // Instance discovery, as MSAL asks for it.
    let authority = format!(
        "{}/{TENANT}/oauth2/v2.0/authorize",
        base.replace("http://", "https://")
    );
    let host = base.trim_start_matches("http://");
    let reply = login(
        &app,
        "GET",
        &format!(
            "/common/discovery/instance?api-version=1.1&authorization_endpoint={}",
            enc(&authority)
        ),
        &[],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json["tenant_discovery_endpoint"],
        format!("https://{host}/{TENANT}/v2.0/.well-known/openid-configuration")
    );
    let metadata = reply.json["metadata"].as_array().unwrap();
    assert!(metadata
        .iter()
        .any(|m| m["preferred_network"] == host && m["aliases"] == serde_json::json!([host])));
    assert!(metadata
        .iter()
        .any(|m| m["preferred_network"] == "login.microsoftonline.com"
            && m["aliases"]
                .as_array()
                .unwrap()
                .contains(&Value::from("login.windows.net"))));
    let reply = login(
        &app,
        "GET",
        "/common/discovery/instance?api-version=1.1&authorization_endpoint=https%3A%2F%2Flogin.microsoftonline.com%2Fcommon%2Foauth2%2Fv2.0%2Fauthorize",
        &[],
        None,
    )
    .await;
    assert_eq!(
        reply.json["tenant_discovery_endpoint"],
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
    );
    let reply = login(
        &app,
        "GET",
        "/common/discovery/instance?api-version=1.1",
        &[],
        None,
    )
    .await;
    assert_entra_error(&reply, 400, "invalid_request", 900144);
    let reply = login(
        &app,
        "GET",
        "/common/discovery/instance?api-version=1.1&authorization_endpoint=http%3A%2F%2Fexample.com%2Ft%2Foauth2%2Fv2.0%2Fauthorize",
        &[],
        None,
    )
    .await;
    assert_entra_error(&reply, 400, "invalid_instance", 50049);
});

/// `remediate app …` with this app's data directory and database; (exit code, stdout, stderr).
fn cli(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_remediate"));
    command
        .arg("app")
        .args(args)
        .arg("--data-dir")
        .arg(&app.data_dir)
        .env("REMEDIATE_LOG", "warn");
    if let Some(url) = app.database_url() {
        command.args(["--database", &url]);
    }
    let output = command.output().expect("run remediate app");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

both!(the_app_commands_register_list_and_revoke, |app| {
    let (code, out, err) = cli(
        &app,
        &[
            "create",
            "--tenant",
            &TENANT.to_uppercase(),
            "--role",
            SCRIPTS_RW,
            "--role",
            "DeviceManagementManagedDevices.Read.All",
            "--name",
            "Lab automation",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    let (id, secret) = (lines[lines.len() - 2], lines[lines.len() - 1]);
    assert!(remediate_api::entra::is_guid(id), "{out}");
    assert!(secret.starts_with("rma~") && secret.len() > 40, "{out}");
    assert!(err.contains("shown once"), "{err}");
    // The secret works at once on the running server.
    let reply = token_request(
        &app,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", GRAPH_DEFAULT),
        ],
    )
    .await;
    assert_eq!(
        claims(&assert_token(&reply))["app_displayname"],
        "Lab automation"
    );

    let (code, out, err) = cli(&app, &["list", "--tenant", TENANT]);
    assert_eq!(code, 0, "{out}{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("CLIENT ID\tSTATUS"), "{out}");
    let fields: Vec<&str> = rows[1].split('\t').collect();
    assert_eq!(fields[0], id);
    assert_eq!(fields[1], "active");
    assert_eq!(
        fields[2],
        format!("{SCRIPTS_RW},DeviceManagementManagedDevices.Read.All")
    );
    assert_eq!(fields[3], "-");
    assert_eq!(fields[5], "Lab automation");
    assert!(!out.contains(secret), "the secret is never shown again");

    let (code, out, err) = cli(&app, &["revoke", "--tenant", TENANT, "--client-id", id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("revoked the app"), "{out}");
    let (_, out, _) = cli(&app, &["list", "--tenant", TENANT]);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .split('\t')
            .nth(1)
            .unwrap()
            .starts_with("revoked "),
        "{out}"
    );

    // Refusals of the command line.
    let (code, _, err) = cli(
        &app,
        &["create", "--tenant", "tenant-a", "--role", SCRIPTS_RW],
    );
    assert_ne!(code, 0);
    assert!(err.contains("GUID"), "{err}");
    let (code, _, err) = cli(&app, &["create", "--tenant", TENANT]);
    assert_ne!(code, 0);
    assert!(err.contains("--role"), "{err}");
    let (code, _, err) = cli(&app, &["create", "--tenant", TENANT, "--role", "two words"]);
    assert_ne!(code, 0);
    assert!(err.contains("permission name"), "{err}");
    let (code, _, err) = cli(
        &app,
        &[
            "revoke",
            "--tenant",
            TENANT,
            "--client-id",
            "11111111-2222-4333-8444-555555555555",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("no app"), "{err}");
});

// msgraph-beta's GraphServiceClient, built with credentials as against Microsoft, has the base URL
// `https://graph.microsoft.com/beta/` and so requests `/beta//deviceManagement/…`: its nextLinks
// must page like those of `/beta/deviceManagement/…` (found by tests/sdk/test_entra.py).
both!(a_base_url_ending_in_a_slash_pages_like_one_without, |app| {
    let script = app.script("double slash").await;
    for i in 0..3 {
        let device = app.device(&format!("PC-{i}")).await;
        let reply = app.run_state(&script, &device, "").await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let token = app.token.clone();
    let mut url = format!(
        "{}//deviceManagement/deviceHealthScripts/{script}/deviceRunStates?%24top=2&%24count=true",
        app.base
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let reply = app.send("GET", &url, Some(&token), None).await;
        assert_eq!(reply.status, 200, "{url}: {}", reply.text);
        seen.extend(
            reply.json["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_owned()),
        );
        match reply.json["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "{seen:?}");
});
