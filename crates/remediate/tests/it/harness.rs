//! Test harness: every test starts a real server on port 0 with a fresh database, on SQLite and
//! on PostgreSQL, and talks HTTP to it. By default the server runs inside the test process (the
//! library's wiring, `remediate::Server`, on its own runtime and thread, configured from the same
//! `serve` flags); tests that signal, kill or measure the server, or need two of them, start the
//! `remediate` binary as a child process instead ([`Mode::Process`]). Tokens are minted in
//! process with the data directory's signing key, as `remediate token` does.
//!
//! PostgreSQL runs on 127.0.0.1:5432 (trust auth, user postgres); each server gets its own new
//! database (for in-process servers a copy of a migrated template, see [`postgres`]), dropped
//! afterwards. Without a reachable PostgreSQL the PostgreSQL half of each test
//! is skipped with a message, except under `CI=true`, where that is a failure.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub const WRITE_SCOPES: &[&str] = &[
    "DeviceManagementScripts.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
    "DeviceManagementRBAC.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "Group.ReadWrite.All",
    "Device.Read.All",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test's server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The real router on port 0 inside the test process, on its own runtime (the default).
    InProcess,
    /// The `remediate` binary as a child process: for tests that signal or kill it, read its
    /// memory by pid, or need a second process.
    Process,
}

pub struct TestApp {
    pub base: String,
    pub data_dir: PathBuf,
    pub token: String,
    pub client: reqwest::Client,
    database: Option<String>,
    mode: Mode,
    server: Option<Running>,
    /// Extra `serve` flags (resolved by the same configuration code in both modes).
    pub args: Vec<String>,
    /// Where the server reaches PostgreSQL (a test may put a proxy in between).
    pub db_address: String,
}

/// The running server of a [`TestApp`].
enum Running {
    Child(Child),
    InProcess(InProcessServer),
}

/// A server on its own runtime and thread inside the test process.
struct InProcessServer {
    /// Dropping or sending starts the graceful shutdown.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// Told when the server has drained and closed its store.
    done: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessServer {
    /// Start the graceful shutdown and wait up to `patience` for it; `false` if it did not end.
    fn stop(&mut self, patience: Duration) -> bool {
        drop(self.shutdown.take());
        let done = self.done.lock().unwrap().recv_timeout(patience);
        match done {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                true
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_remediate")
}

pub fn postgres_available() -> bool {
    std::net::TcpStream::connect_timeout(&"127.0.0.1:5432".parse().unwrap(), Duration::from_secs(2))
        .is_ok()
}

/// A direct connection to PostgreSQL beside the server (for reading or changing its database), its
/// connection driven by a spawned task until the client is dropped.
pub async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The in-process server's logs go to the test's captured output (`REMEDIATE_LOG`, default warn).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMEDIATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

impl TestApp {
    /// Start a server in this process on `backend`; `None` when PostgreSQL is unavailable
    /// outside CI.
    pub async fn start(backend: Backend) -> Option<TestApp> {
        TestApp::start_in(backend, Mode::InProcess).await
    }

    /// Start a server on `backend` in `mode`; `None` when PostgreSQL is unavailable outside CI.
    pub async fn start_in(backend: Backend, mode: Mode) -> Option<TestApp> {
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
        if let (Some(db), Mode::InProcess) = (&database, mode) {
            postgres::create_from_template(db).await;
        }
        let mut app = TestApp {
            base: String::new(),
            data_dir,
            token: String::new(),
            client: reqwest::Client::new(),
            database,
            mode,
            server: None,
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

    /// `serve`'s flags for this app: port 0, its data directory and database, then `args`.
    fn serve_flags(&self) -> Vec<std::ffi::OsString> {
        let mut flags: Vec<std::ffi::OsString> = Vec::new();
        // A test that restarts on the same address names it in `args`.
        if !self.args.iter().any(|a| a == "--listen") {
            flags.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        flags.extend(["--data-dir".into(), self.data_dir.clone().into()]);
        if let Some(url) = self.database_url() {
            flags.push("--database".into());
            flags.push(url.into());
        }
        flags.extend(self.args.iter().map(Into::into));
        flags
    }

    /// Start (or restart) the server on the same data, in this process or as a child process
    /// (the app's [`Mode`]), with `args` as extra `serve` flags.
    pub fn spawn(&mut self) {
        assert!(self.server.is_none(), "the server is already running");
        // No pooled connection may outlive the server it was made to (a restart can reuse the port).
        self.client = reqwest::Client::new();
        match self.mode {
            Mode::InProcess => self.start_in_process(),
            Mode::Process => self.start_process(),
        }
    }

    fn start_in_process(&mut self) {
        init_tracing();
        let args = remediate::config::ServeArgs::from_flags(self.serve_flags())
            .unwrap_or_else(|e| panic!("serve flags {:?}: {e}", self.args));
        let config = remediate::config::Config::resolve(args)
            .unwrap_or_else(|e| panic!("serve flags {:?}: {e:#}", self.args));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("remediate-server".into())
            .spawn(move || {
                let runtime = remediate::serve_runtime()
                    .build()
                    .expect("the server's runtime");
                runtime.block_on(async move {
                    let opened = async {
                        let server = remediate::Server::open(config).await?;
                        let listener = server.bind().await?;
                        anyhow::Ok((server, listener))
                    }
                    .await;
                    let (server, listener) = match opened {
                        Ok(opened) => opened,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(listener.local_addr().map_err(|e| e.to_string()));
                    let stopped = async {
                        let _ = shutdown_rx.await;
                    };
                    if let Err(e) = server.serve(listener, stopped).await {
                        eprintln!("the in-process server failed: {e:#}");
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(5));
                let _ = done_tx.send(());
            })
            .expect("start the server thread");
        let address = ready_rx
            .recv()
            .expect("the server thread ended before listening")
            .unwrap_or_else(|e| panic!("the in-process server did not start: {e}"));
        self.base = format!("http://{address}/beta");
        self.server = Some(Running::InProcess(InProcessServer {
            shutdown: Some(shutdown),
            done: std::sync::Mutex::new(done),
            thread: Some(thread),
        }));
    }

    fn start_process(&mut self) {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .args(self.serve_flags())
            .env("REMEDIATE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
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
        self.server = Some(Running::Child(child));
    }

    /// Stop the server gracefully (SIGTERM for a child process; the same drain in process) and
    /// wait for it to finish.
    pub fn stop(&mut self) {
        match self.server.take() {
            Some(Running::Child(mut child)) => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = child.wait();
            }
            Some(Running::InProcess(mut server)) => {
                assert!(
                    server.stop(Duration::from_secs(60)),
                    "the in-process server did not drain within 60 s"
                );
            }
            None => {}
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

    /// A token of the local key for `tenant` with these scopes and roles (minted in this
    /// process, as `remediate token` does).
    pub fn mint(&self, tenant: &str, scopes: &[&str], roles: &[&str]) -> String {
        self.mint_request(remediate::TokenRequest {
            tenant: tenant.to_owned(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..remediate::TokenRequest::default()
        })
    }

    /// A token of the local key for any claims `remediate token` can mint (an hour's lifetime
    /// unless `expires_in` says otherwise).
    pub fn mint_request(&self, mut request: remediate::TokenRequest) -> String {
        if request.expires_in == 0 {
            request.expires_in = 3600;
        }
        remediate::mint_token(&self.data_dir, &request)
            .unwrap_or_else(|e| panic!("minting {request:?}: {e:#}"))
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
        match self.server.take() {
            Some(Running::Child(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::InProcess(mut server)) => {
                // Drain briefly; a test that failed mid-request must not hang here.
                server.stop(Duration::from_secs(10));
            }
            None => {}
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
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Not waited for: the drop finishes on its own after the test.
                .spawn();
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

/// Define a test that runs once on SQLite and once on PostgreSQL: `both!(name, |app| { … })`
/// with the server in the test process, `both!(name, Process, |app| { … })` with the binary as a
/// child process.
#[macro_export]
macro_rules! both {
    ($name:ident, |$app:ident| $body:block) => {
        $crate::both!($name, InProcess, |$app| $body);
    };
    ($name:ident, $mode:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($app: $crate::harness::TestApp) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::harness::TestApp::start_in($crate::harness::Backend::Sqlite, $crate::harness::Mode::$mode).await.unwrap()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(app) = $crate::harness::TestApp::start_in($crate::harness::Backend::Postgres, $crate::harness::Mode::$mode).await {
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
        self.mint_request(remediate::TokenRequest {
            tenant: tenant.to_owned(),
            device: Some(device.to_owned()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            ..remediate::TokenRequest::default()
        })
    }
}

impl TestApp {
    /// The server's process id (a [`Mode::Process`] app; `None` once it was stopped or killed).
    pub fn pid(&self) -> Option<u32> {
        match &self.server {
            Some(Running::Child(child)) => Some(child.id()),
            Some(Running::InProcess(_)) => {
                panic!("this test needs the server's process: start it with Mode::Process")
            }
            None => None,
        }
    }

    /// Wait for a killed server process to be gone.
    pub fn reap(&mut self) {
        if let Some(Running::Child(mut child)) = self.server.take() {
            let _ = child.wait();
        }
    }
}

/// PostgreSQL databases of in-process tests are copies of a template database that the server's
/// own code migrated once (per version of `crates/store/migrations/postgres`, named by a hash of
/// those files), which saves each test the migrations. The copy loses the template's paging
/// secret, so each database makes its own when the server opens it. Child-process tests keep the
/// path of a fresh server (it creates and migrates a missing database itself). Any failure here
/// falls back to that path.
mod postgres {
    use tokio_postgres::Client;

    const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    /// `remediate_it_tpl_<hash of the migrations>`.
    fn template_name() -> String {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/migrations/postgres");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        // FNV-1a: stable across builds and processes.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for file in files {
            let name = file
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read(&file).unwrap_or_default();
            for byte in name.bytes().chain([0]).chain(text).chain([0]) {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("remediate_it_tpl_{:012x}", hash >> 16)
    }

    /// Create `db` as a copy of the template (building the template first if needed).
    pub async fn create_from_template(db: &str) {
        let template = template_name();
        if let Err(e) = copy(db, &template).await {
            eprintln!("creating {db} from {template} failed ({e}); the server will create it");
        }
    }

    async fn copy(db: &str, template: &str) -> Result<(), String> {
        let admin = super::pg_connect(ADMIN_URL)
            .await
            .map_err(|e| e.to_string())?;
        let exists: Option<i32> = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .map_err(|e| e.to_string())?
            .map(|row| row.get(0));
        if exists.is_none() {
            build(&admin, template).await?;
        }
        // A copy fails while anything else is connected to the template (rarely, autovacuum).
        let mut last = String::new();
        for _ in 0..5 {
            match admin
                .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE {template}"))
                .await
            {
                Ok(()) => {
                    // Dropping the client ends the session (its task sends Terminate).
                    drop(admin);
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(last)
    }

    /// Migrate a new database with the server's code, drop its paging secret, and rename it to
    /// `template` (another process may have won the race: then ours is dropped).
    async fn build(admin: &Client, template: &str) -> Result<(), String> {
        let building = format!(
            "{template}_b{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let url = format!("postgres://postgres@127.0.0.1:5432/{building}");
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .map_err(|e| e.to_string())?;
        let migrated = async {
            let dir = std::env::temp_dir().join(format!("remediate-it-{}", uuid::Uuid::new_v4()));
            let args = remediate::config::ServeArgs::from_flags([
                "--data-dir".into(),
                dir.clone().into_os_string(),
                "--database".into(),
                url.clone().into(),
            ])
            .map_err(|e| e.to_string())?;
            let config = remediate::config::Config::resolve(args).map_err(|e| e.to_string())?;
            let store = remediate::open_store(&config)
                .await
                .map_err(|e| e.to_string())?;
            store.close().await;
            let _ = std::fs::remove_dir_all(&dir);
            // Closed (not just dropped) before the rename, which needs no session on `building`:
            // the connection's task is awaited after the client goes.
            let (conn, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            let connection = tokio::spawn(connection);
            let deleted = conn
                .execute("DELETE FROM meta WHERE key = 'paging_secret'", &[])
                .await
                .map_err(|e| e.to_string());
            drop(conn);
            let closed = connection.await.map_err(|e| e.to_string())?;
            deleted?;
            closed.map_err(|e| e.to_string())
        }
        .await;
        let renamed = match migrated {
            Ok(()) => admin
                .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if renamed.is_err() {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .await;
        }
        match renamed {
            Ok(_) => Ok(()),
            // Someone else's template is there now.
            Err(_) if exists(admin, template).await => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn exists(admin: &Client, name: &str) -> bool {
        admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .ok()
            .flatten()
            .map(|row| row.get::<_, i32>(0))
            .is_some()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a process the test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
