//! HTTPS and proxy mode (issue 16): `--tls` with the data directory's local CA (reused across
//! restarts, https links), `--tls-cert`/`--tls-key` reloaded on SIGHUP, and `--proxy-listen`
//! serving `https://graph.microsoft.com/beta/…` (and `--proxy-host` names) with the same router
//! while refusing other hosts, or tunnelling them with `--proxy-pass-through`. Clients trust
//! only the CA under test (`tls_built_in_root_certs(false)`).

use std::io::{Read, Write};
use std::time::Duration;

use crate::both;
use crate::harness::{free_port, TestApp};

const SCRIPTS: &str = "deviceManagement/deviceHealthScripts";

/// A client that trusts only `ca_pem` (and, with `proxy`, sends everything through it).
fn client(ca_pem: &[u8], proxy: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("a PEM certificate"))
        .tls_info(true)
        // Every request on a new connection: what the server presents now.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    if let Some(proxy) = proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy).unwrap());
    }
    builder.build().unwrap()
}

/// Restart `app` with `args` (its data and database kept); `https` bases for TLS.
fn restart(app: &mut TestApp, args: &[&str]) {
    app.stop();
    app.args = args.iter().map(|a| (*a).to_owned()).collect();
    app.spawn();
    let tls = args.iter().any(|a| a.starts_with("--tls"));
    if tls && app.base.starts_with("http://") {
        // The in-process harness writes `http://`; the binary prints the scheme it serves.
        app.base = app.base.replacen("http://", "https://", 1);
    }
}

fn port_of(base: &str) -> u16 {
    let authority = base.split("://").nth(1).unwrap().split('/').next().unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

/// The DER of the first PEM block of `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// The certificate the server presented for this response.
fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .expect("a TLS response carries the server's certificate")
        .to_vec()
}

async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text)),
    )
}

async fn post_script(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
) -> reqwest::Response {
    client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"displayName":"{name}","detectionScriptContent":"ZWNobyAx"}}"#
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e:?}"))
}

both!(https_with_the_local_ca, |app| {
    let mut app = app;
    restart(&mut app, &["--tls", "--tls-name", "remediate.test"]);
    let ca_path = app.data_dir.join("ca.pem");
    let ca = std::fs::read(&ca_path).expect("--tls creates ca.pem in the data directory");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.data_dir.join("ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the CA key is private");
    }
    let port = port_of(&app.base);
    let https = client(&ca, None);
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}/beta/{SCRIPTS}");
        let (status, _, body) = get_json(&https, &url, &app.token).await;
        assert_eq!(status, 200, "{host}: {body}");
        assert!(body["value"].is_array(), "{body}");
    }
    // A --tls-name is in the certificate too.
    let named = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("remediate.test", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let url = format!("https://remediate.test:{port}/beta/{SCRIPTS}");
    assert_eq!(get_json(&named, &url, &app.token).await.0, 200);
    // A client that does not trust the CA is refused; plain http gets no answer.
    let untrusting = reqwest::Client::builder().use_rustls_tls().build().unwrap();
    let refused = untrusting
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // Links are https on the host the client used.
    let scripts = format!("https://localhost:{port}/beta/{SCRIPTS}");
    for name in ["one", "two"] {
        let response = post_script(&https, &scripts, &app.token, name).await;
        assert_eq!(response.status(), 201);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&format!("https://localhost:{port}/beta/")),
            "{location}"
        );
    }
    let (status, _, page) = get_json(&https, &format!("{scripts}?$top=1"), &app.token).await;
    assert_eq!(status, 200, "{page}");
    let next = page["@odata.nextLink"].as_str().expect("a next page");
    assert!(
        next.starts_with(&format!("https://localhost:{port}/beta/{SCRIPTS}?")),
        "{next}"
    );
    let (status, _, second) = get_json(&https, next, &app.token).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["value"].as_array().unwrap().len(), 1);
    assert_ne!(second["value"][0]["id"], page["value"][0]["id"]);

    // The CA is made once: a restart keeps the same file, so clients keep trusting it.
    restart(&mut app, &["--tls"]);
    assert_eq!(std::fs::read(&ca_path).unwrap(), ca, "the CA is reused");
    let port = port_of(&app.base);
    let url = format!("https://127.0.0.1:{port}/beta/{SCRIPTS}");
    let (status, _, body) = get_json(&https, &url, &app.token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"].as_array().unwrap().len(), 2, "{body}");
});

/// A leaf certificate and key (PEM) of a new CA in `dir`, with that CA's certificate.
fn operator_certificate(dir: &std::path::Path) -> (String, String, Vec<u8>) {
    let ca = remediate_api::tls::LocalCa::load_or_create(dir).unwrap();
    let (cert, key) = ca
        .issue_pem(&["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap();
    (cert, key, std::fs::read(ca.cert_path()).unwrap())
}

#[tokio::test]
async fn operator_certificates_are_reloaded_on_sighup() {
    let mut app = TestApp::start_in(
        crate::harness::Backend::Sqlite,
        crate::harness::Mode::Process,
    )
    .await
    .unwrap();
    let (cert_a, key_a, ca_a) = operator_certificate(&app.data_dir.join("ca-a"));
    let (cert_b, key_b, ca_b) = operator_certificate(&app.data_dir.join("ca-b"));
    let cert_path = app.data_dir.join("server.pem");
    let key_path = app.data_dir.join("server-key.pem");
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let (cert_arg, key_arg) = (
        cert_path.to_str().unwrap().to_owned(),
        key_path.to_str().unwrap().to_owned(),
    );
    restart(&mut app, &["--tls-cert", &cert_arg, "--tls-key", &key_arg]);
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    // No local CA is made for an operator's certificate.
    assert!(!app.data_dir.join("ca.pem").exists());
    let healthz = app.base.replace("/beta", "/healthz");
    let (trusts_a, trusts_b) = (client(&ca_a, None), client(&ca_b, None));
    let response = trusts_a.get(&healthz).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(peer_certificate(&response), pem_der(&cert_a));

    let hang_up = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &app.pid().unwrap().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    // Replaced files are read on SIGHUP: new connections see the new certificate.
    std::fs::write(&cert_path, &cert_b).unwrap();
    std::fs::write(&key_path, &key_b).unwrap();
    hang_up();
    let mut seen = None;
    for _ in 0..50 {
        if let Ok(response) = trusts_b.get(&healthz).send().await {
            seen = Some((response.status().as_u16(), peer_certificate(&response)));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, presented) = seen.expect("the new certificate is served after SIGHUP");
    assert_eq!(status, 200);
    assert_eq!(presented, pem_der(&cert_b));
    assert!(trusts_a.get(&healthz).send().await.is_err());

    // A broken pair is refused and the certificate in use stays.
    std::fs::write(&key_path, &key_a).unwrap();
    hang_up();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = trusts_b.get(&healthz).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(peer_certificate(&response), pem_der(&cert_b));
}

/// A free port for the proxy (the in-process harness reports only the main listener's address).
/// Send raw bytes to the proxy and read its answer's head and body (up to `Content-Length`, or
/// everything until the proxy closes the connection with `until_eof`).
fn raw(proxy: &str, request: &str, until_eof: bool) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(proxy).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if !until_eof && body.len() >= length {
                return (head.to_owned(), body.to_owned());
            }
        }
        let n = stream.read(&mut buffer).unwrap();
        if n == 0 {
            let text = String::from_utf8_lossy(&received).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
            return (head.to_owned(), body.to_owned());
        }
        received.extend_from_slice(&buffer[..n]);
    }
}

both!(the_proxy_serves_graph_and_refuses_other_hosts, |app| {
    let mut app = app;
    let proxy = format!("127.0.0.1:{}", free_port());
    restart(
        &mut app,
        &["--proxy-listen", &proxy, "--proxy-host", "intune.test"],
    );
    let ca = std::fs::read(app.data_dir.join("ca.pem")).expect("the proxy makes the local CA");
    let through = client(&ca, Some(&format!("http://{proxy}")));
    let graph = format!("https://graph.microsoft.com/beta/{SCRIPTS}");

    let (status, _, body) = get_json(&through, &graph, &app.token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], serde_json::json!([]), "{body}");
    assert_eq!(
        body["@odata.context"],
        "https://graph.microsoft.com/beta/$metadata#deviceManagement/deviceHealthScripts"
    );

    // A POST through the proxy is read back through it and on the main listener.
    let response = post_script(&through, &graph, &app.token, "proxied").await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location
            .starts_with("https://graph.microsoft.com/beta/deviceManagement/deviceHealthScripts"),
        "{location}"
    );
    let created: serde_json::Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let (status, _, read) = get_json(&through, &format!("{graph}/{id}"), &app.token).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["displayName"], "proxied");
    let direct = app.get(&format!("{SCRIPTS}/{id}")).await;
    assert_eq!(direct.status, 200, "{}", direct.text);
    assert_eq!(direct.json["displayName"], "proxied");

    // Paging follows the host the client asked for.
    let response = post_script(&through, &graph, &app.token, "second").await;
    assert_eq!(response.status(), 201);
    let (status, _, page) = get_json(&through, &format!("{graph}?$top=1"), &app.token).await;
    assert_eq!(status, 200, "{page}");
    let next = page["@odata.nextLink"].as_str().expect("a next page");
    assert!(
        next.starts_with(&format!("https://graph.microsoft.com/beta/{SCRIPTS}?")),
        "{next}"
    );
    let (status, _, second) = get_json(&through, next, &app.token).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["value"][0]["id"], page["value"][0]["id"]);

    // A --proxy-host name is served too, with links on it.
    let (status, _, page) = get_json(
        &through,
        &format!("https://intune.test/beta/{SCRIPTS}?$top=1"),
        &app.token,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with("https://intune.test/beta/"),
        "{page}"
    );
    // Without a token, the answer is remediate's own 401.
    let response = through.get(&graph).send().await.unwrap();
    assert_eq!(response.status(), 401);

    // The CONNECT answer, and a refusal that says why.
    let (head, _) = raw(
        &proxy,
        "CONNECT graph.microsoft.com:443 HTTP/1.1\r\nHost: graph.microsoft.com:443\r\n\r\n",
        false,
    );
    assert!(
        head.starts_with("HTTP/1.1 200 Connection established"),
        "{head}"
    );
    let (head, body) = raw(
        &proxy,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        false,
    );
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        body.contains("does not forward to example.com:443")
            && body.contains("graph.microsoft.com, login.microsoftonline.com, intune.test")
            && body.contains("--proxy-pass-through"),
        "{body}"
    );
    let refused = through.get("https://example.com/").send().await;
    assert!(refused.is_err(), "{refused:?}");
    // A listed host on another port is not served either.
    let (head, _) = raw(
        &proxy,
        "CONNECT graph.microsoft.com:8443 HTTP/1.1\r\nHost: graph.microsoft.com:8443\r\n\r\n",
        false,
    );
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    // Plain-HTTP absolute-form requests: served for listed hosts, refused for others.
    let (status, _, body) = get_json(
        &through,
        &format!("http://graph.microsoft.com/beta/{SCRIPTS}?$top=1"),
        &app.token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with("http://graph.microsoft.com/beta/"),
        "{body}"
    );
    let response = through.get("http://example.com/").send().await.unwrap();
    assert_eq!(response.status(), 403);
    let reason = response.text().await.unwrap();
    assert!(
        reason.contains("does not forward to example.com"),
        "{reason}"
    );
});

#[tokio::test]
async fn the_proxy_tunnels_other_hosts_with_pass_through() {
    let mut app = TestApp::start(crate::harness::Backend::Sqlite)
        .await
        .unwrap();
    let proxy = format!("127.0.0.1:{}", free_port());
    restart(
        &mut app,
        &["--proxy-listen", &proxy, "--proxy-pass-through"],
    );
    // The main listener (plain HTTP) stands for "another host": bytes go through unchanged.
    let target = app.base.trim_start_matches("http://").replace("/beta", "");
    let (head, body) = raw(
        &proxy,
        &format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        ),
        true,
    );
    assert!(
        head.starts_with("HTTP/1.1 200 Connection established"),
        "{head}"
    );
    assert!(
        body.starts_with("HTTP/1.1 200") && body.ends_with("ok"),
        "{body}"
    );
    // Plain-HTTP requests are never passed through.
    let (head, body) = raw(
        &proxy,
        &format!("GET http://{target}/healthz HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        false,
    );
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(body.contains("never passed through"), "{body}");
}

#[test]
fn tls_and_proxy_settings_resolve_from_the_file_and_refuse_half_configurations() {
    use remediate::config::{Config, ServeArgs};
    let dir = std::env::temp_dir().join(format!("remediate-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("remediate.toml");
    std::fs::write(
        &file,
        "tls = true\ntls_names = [\"remediate.test\"]\nproxy_listen = \"127.0.0.1:0\"\n\
         proxy_hosts = [\"intune.test\"]\nproxy_pass_through = true\n",
    )
    .unwrap();
    let resolve = |flags: &[&str]| {
        let mut all = vec!["--config", file.to_str().unwrap()];
        all.extend_from_slice(flags);
        Config::resolve(ServeArgs::from_flags(all).map_err(|e| anyhow::anyhow!("{e}"))?)
    };
    let config = resolve(&[]).unwrap();
    assert_eq!(
        config.tls,
        Some(remediate_api::tls::TlsSource::LocalCa {
            names: vec!["remediate.test".into()]
        })
    );
    let proxy = config.proxy.unwrap();
    assert!(proxy.pass_through);
    assert_eq!(proxy.hosts, ["intune.test"]);
    // Flags win over the file.
    let config = resolve(&["--tls=false", "--tls-name", "x.test"]);
    assert!(config.is_err(), "a name without TLS is refused");
    let config = resolve(&["--proxy-pass-through=no"]).unwrap();
    assert!(!config.proxy.unwrap().pass_through);
    let error = resolve(&["--tls-cert", "/nonexistent.pem"]).unwrap_err();
    assert!(error.to_string().contains("tls_key"), "{error}");
    std::fs::write(&file, "proxy_hosts = [\"intune.test\"]\n").unwrap();
    let error = resolve(&[]).unwrap_err();
    assert!(error.to_string().contains("proxy_listen"), "{error}");
    let error = resolve(&["--tls", "--tls-name", "bad name"]).unwrap_err();
    assert!(error.to_string().contains("bad name"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
