//! Test harness: every test starts the real `remediate` binary on port 0 with a fresh database,
//! on SQLite and on PostgreSQL, and talks HTTP to it.
//!
//! PostgreSQL runs on 127.0.0.1:5432 (trust auth, user postgres); each server gets its own new
//! database, dropped afterwards. Without a reachable PostgreSQL the PostgreSQL half of each test
//! is skipped with a message, except under `CI=true`, where that is a failure.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const WRITE_SCOPES: &[&str] = &[
    "DeviceManagementScripts.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub data_dir: PathBuf,
    pub token: String,
    pub client: reqwest::Client,
    database: Option<String>,
    child: Option<Child>,
    /// Extra `serve` flags.
    pub args: Vec<String>,
    /// Where the server reaches PostgreSQL (a test may put a proxy in between).
    pub db_address: String,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_remediate")
}

pub fn postgres_available() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:5432".parse().unwrap(), Duration::from_secs(2))
        .is_ok()
}

impl TestApp {
    /// Start a server on `backend`; `None` when PostgreSQL is unavailable outside CI.
    pub async fn start(backend: Backend) -> Option<TestApp> {
        let data_dir = std::env::temp_dir().join(format!("remediate-it-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&data_dir).unwrap();
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                if !postgres_available() {
                    if std::env::var("CI").as_deref() == Ok("true") {
                        panic!("PostgreSQL is not reachable on 127.0.0.1:5432, and CI=true requires it");
                    }
                    eprintln!(
                        "SKIPPED (PostgreSQL half): PostgreSQL is not reachable on 127.0.0.1:5432"
                    );
                    return None;
                }
                Some(format!("remediate_it_{}", uuid::Uuid::new_v4().simple()))
            }
        };
        let mut app = TestApp {
            base: String::new(),
            data_dir,
            token: String::new(),
            client: reqwest::Client::new(),
            database,
            child: None,
            args: Vec::new(),
            db_address: "127.0.0.1:5432".into(),
        };
        app.spawn();
        app.token = app.mint("tenant-a", WRITE_SCOPES, &[]);
        Some(app)
    }

    pub fn database_url(&self) -> Option<String> {
        self.database
            .as_ref()
            .map(|db| format!("postgres://postgres@{}/{db}", self.db_address))
    }

    /// Start (or restart) the server process on the same data.
    pub fn spawn(&mut self) {
        let mut command = Command::new(binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&self.data_dir)
            .env("REMEDIATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(url) = self.database_url() {
            command.args(["--database", &url]);
        }
        command.args(&self.args);
        let mut child = command.spawn().expect("start remediate");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(address) = line.strip_prefix("listening on ") {
                break address.to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        self.base = format!("{address}/beta");
        self.child = Some(child);
    }

    /// Stop the server with SIGTERM and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// `remediate recount --check` on this server's database: (agrees, its output).
    pub fn recount_check(&self) -> (bool, String) {
        let mut command = Command::new(binary());
        command
            .args(["recount", "--check", "--data-dir"])
            .arg(&self.data_dir)
            .env("REMEDIATE_LOG", "warn");
        if let Some(url) = self.database_url() {
            command.args(["--database", &url]);
        }
        let output = command.output().expect("run remediate recount");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    pub fn mint(&self, tenant: &str, scopes: &[&str], roles: &[&str]) -> String {
        let mut command = Command::new(binary());
        command
            .args(["token", "--tenant", tenant, "--data-dir"])
            .arg(&self.data_dir);
        for s in scopes {
            command.args(["--scope", s]);
        }
        for r in roles {
            command.args(["--role", r]);
        }
        let output = command.output().expect("run remediate token");
        assert!(
            output.status.success(),
            "token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// GET one of the server's own routes outside `/beta` (`/healthz`, `/readyz`, `/openapi.json`).
    pub async fn service(&self, route: &str) -> reqwest::Response {
        self.client
            .get(self.base.replace("/beta", route))
            .send()
            .await
            .expect("the server answers")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            self.url(path)
        };
        let mut request = self.client.request(method.parse().unwrap(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        Reply::from(request.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, Some(&self.token.clone()), None)
            .await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.send("POST", path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: &str) -> Reply {
        self.send("PATCH", path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, Some(&self.token.clone()), None)
            .await
    }

    /// Create a script and return its id.
    pub async fn script(&self, name: &str) -> String {
        let reply = self
            .post(
                "deviceManagement/deviceHealthScripts",
                &format!(r#"{{"displayName":"{name}","detectionScriptContent":"ZWNobyAx"}}"#),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json["id"].as_str().unwrap().to_owned()
    }

    /// Create a managed device and return its id.
    pub async fn device(&self, name: &str) -> String {
        let reply = self
            .post(
                "deviceManagement/managedDevices",
                &format!(r#"{{"deviceName":"{name}"}}"#),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json["id"].as_str().unwrap().to_owned()
    }

    /// Create a run state of `script` bound to `device` with extra JSON members.
    pub async fn run_state(&self, script: &str, device: &str, members: &str) -> Reply {
        let sep = if members.is_empty() { "" } else { "," };
        self.post(
            &format!("deviceManagement/deviceHealthScripts/{script}/deviceRunStates"),
            &format!(r#"{{"managedDevice@odata.bind":"https://graph.microsoft.com/beta/deviceManagement/managedDevices('{device}')"{sep}{members}}}"#),
        )
        .await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(db) = &self.database {
            let _ = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                    "-q",
                    "-c",
                ])
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    async fn from(response: reqwest::Response) -> Reply {
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

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Assert a Graph error with this status and code, whose message contains `needle`.
    pub fn assert_error(&self, status: u16, code: &str, needle: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.json["error"]["code"], code, "{}", self.text);
        let message = self.json["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains(needle),
            "message {message:?} should contain {needle:?}"
        );
        assert!(
            self.json["error"]["innerError"]["request-id"].is_string(),
            "{}",
            self.text
        );
        assert!(
            self.json["error"]["innerError"]["date"]
                .as_str()
                .unwrap_or("")
                .ends_with('Z'),
            "{}",
            self.text
        );
    }
}

/// Define a test that runs once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: $crate::harness::TestApp) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::harness::TestApp::start($crate::harness::Backend::Sqlite).await.unwrap()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(app) = $crate::harness::TestApp::start($crate::harness::Backend::Postgres).await {
                    run(app).await;
                }
            }
        }
    };
}

impl TestApp {
    /// Send a request with exactly these headers (no bearer token added), e.g. a malformed
    /// `Authorization` value.
    pub async fn send_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            self.url(path)
        };
        let mut request = self.client.request(method.parse().unwrap(), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        Reply::from(request.send().await.expect("request")).await
    }

    /// Mint a device agent's token (`remediate token --device ID --group G…`).
    pub fn mint_device(&self, tenant: &str, device: &str, groups: &[&str]) -> String {
        let mut command = Command::new(binary());
        command
            .args([
                "token",
                "--tenant",
                tenant,
                "--device",
                device,
                "--data-dir",
            ])
            .arg(&self.data_dir);
        for g in groups {
            command.args(["--group", g]);
        }
        let output = command.output().expect("run remediate token");
        assert!(
            output.status.success(),
            "token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

impl TestApp {
    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Wait for a killed server to be gone.
    pub fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}
