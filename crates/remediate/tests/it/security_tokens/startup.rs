//! OIDC misconfiguration stops `remediate serve` at startup with a message naming the problem
//! (the binary as a child process: the test needs its exit status and stderr).

use super::oidc::{ec_key, jwks, rsa_modulus, JwksServer, ISSUER_TEMPLATE};
use super::*;

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
    // Each case is its own process; they run side by side (a failing one panics its thread, and
    // the scope re-raises after every case has finished).
    std::thread::scope(|scope| {
        for (args, needle) in &cases {
            scope.spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                assert_startup_fails(&args, needle);
            });
        }
    });
    let _ = std::fs::remove_dir_all(&files);
}
