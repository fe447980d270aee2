//! Local tokens: forged, tampered, mis-scoped and expired tokens of the local key are 401 with a
//! Bearer challenge and change nothing; tokens within the leeway are accepted.

use super::*;

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
    let rsa = EncodingKey::from_rsa_der(include_bytes!("../../fixtures/rsa-test-key.der"));
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
