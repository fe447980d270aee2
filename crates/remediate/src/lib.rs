//! The `remediate` server as a library: the resolved configuration ([`config`]), the wiring of a
//! [`Server`] from it (store, signing key, OIDC, local CA and TLS, `AppState`), serving on a given
//! listener (and the proxy's, and reloading `--tls-cert` on SIGHUP) until a shutdown future
//! completes, `recount` and token minting. `src/main.rs` (the binary) is a thin
//! caller that adds the command line, the runtime's memory hooks and the signal handling; the
//! integration tests (`tests/it`) run the same wiring inside the test process.

pub mod config;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use remediate_api::{auth, ApiConfig, AppState};
use remediate_store::{SqlStore, Store, StoreOptions};

use crate::config::Config;

/// The runtime `serve` runs on: twice as many workers as cores (at least 4) — SQLite reads run on
/// the workers, and all but one of them may be reading at once (`store::connect`). The binary adds
/// its idle hook (`on_thread_park`) before building it.
pub fn serve_runtime() -> tokio::runtime::Builder {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads((2 * cores).max(4)).enable_all();
    builder
}

/// Log to stderr, filtered by `REMEDIATE_LOG` (default `info`), as text or JSON lines.
///
/// A filter of plain `target=level` directives is applied as `Targets`, which keeps no state per
/// span; one with span or field directives (`[request{path=…}]=debug`) needs an `EnvFilter`,
/// which takes a lock each time a span is entered or left — on every poll of a request's future
/// (docs/benchmarks.md, "Issue 17").
pub fn init_tracing(json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    const DEFAULT: &str = "info";
    let spec = std::env::var("REMEDIATE_LOG").unwrap_or_else(|_| DEFAULT.to_owned());
    // (`Targets` would read `[request]` as a target's name: span directives go to `EnvFilter`.)
    let targets = if spec.contains(['[', '{']) {
        None
    } else {
        spec.parse::<tracing_subscriber::filter::Targets>().ok()
    };
    let filter = match targets {
        Some(targets) => targets.boxed(),
        None => tracing_subscriber::EnvFilter::try_new(&spec)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT))
            .boxed(),
    };
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let layer = if json {
        layer.json().boxed()
    } else {
        layer.boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .init();
}

/// Open (creating the data directory, and the database when missing) and migrate the store.
pub async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    SqlStore::connect(&StoreOptions {
        url: config.database.clone(),
        max_connections: config.db_connections,
        acquire_timeout: Duration::from_secs(5),
        statement_timeout: config.statement_timeout,
    })
    .await
    .map_err(|e| anyhow::anyhow!("opening the database: {e}"))
}

/// A server ready to serve: its store opened, its signing key loaded, its OIDC issuers' keys
/// fetched and its `AppState` built.
pub struct Server {
    config: Config,
    store: Arc<SqlStore>,
    state: Arc<AppState>,
    /// The data directory's local CA, when `--tls` (without files) or the proxy needs it.
    ca: Option<Arc<remediate_api::tls::LocalCa>>,
    /// The main listener's TLS (`--tls`, `--tls-cert`).
    tls: Option<remediate_api::tls::ServerTls>,
    /// The proxy's listener, bound by [`Server::bind`].
    proxy_listener: std::sync::Mutex<Option<tokio::net::TcpListener>>,
    /// `/metrics`' own listener (`--metrics-listen`), bound by [`Server::bind`].
    metrics_listener: std::sync::Mutex<Option<tokio::net::TcpListener>>,
}

impl Server {
    /// Wire a server from a resolved configuration (what `remediate serve` does before it binds).
    pub async fn open(config: Config) -> anyhow::Result<Server> {
        let store = Arc::new(open_store(&config).await?);
        let key = auth::LocalKey::load_or_create(&config.data_dir)
            .context("loading the local signing key")?;
        let (ca, tls) = open_tls(&config)?;
        let oidc = match &config.oidc {
            Some(oidc) => Some(
                auth::Oidc::new(oidc.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("OIDC configuration: {e}"))?,
            ),
            None => None,
        };
        let state = Arc::new(AppState {
            store: store.clone(),
            auth: auth::Authenticator::new(key, oidc),
            config: ApiConfig {
                public_url: config.public_url.clone(),
                limits: remediate_wire::Limits {
                    output_field_chars: config.max_output_chars,
                },
                dashboard_oidc: config.dashboard_oidc.clone(),
            },
            guard: remediate_api::guard::Guard::new(config.limits.clone(), config.realism.clone()),
            credentials: remediate_api::agents::CredentialCache::default(),
            metrics: Arc::new(remediate_api::metrics::Metrics::new(
                store.clone(),
                config.metrics_listen.is_some(),
            )),
            exports: remediate_api::exports::Exports::new(
                config.data_dir.join("exports"),
                config.export_link_lifetime,
            ),
        });
        Ok(Server {
            config,
            store,
            state,
            ca,
            tls,
            proxy_listener: std::sync::Mutex::new(None),
            metrics_listener: std::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bind the configured address (`--listen`; port 0 picks a free port), and the proxy's
    /// (`--proxy-listen`), which [`Server::serve`] then serves.
    pub async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .with_context(|| format!("binding {}", self.config.listen))?;
        if let Some(proxy) = &self.config.proxy {
            let bound = tokio::net::TcpListener::bind(proxy.listen)
                .await
                .with_context(|| format!("binding the proxy's address {}", proxy.listen))?;
            *self
                .proxy_listener
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(bound);
        }
        if let Some(address) = self.config.metrics_listen {
            let bound = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the metrics address {address}"))?;
            *self
                .metrics_listener
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(bound);
        }
        Ok(listener)
    }

    /// `/metrics`' own bound address (`--metrics-listen`, after [`Server::bind`]).
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        let bound = self
            .metrics_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        bound.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The proxy's bound address (after [`Server::bind`]).
    pub fn proxy_address(&self) -> Option<std::net::SocketAddr> {
        let bound = self
            .proxy_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        bound.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Log the start and print the address (`listening on http://…`) and how to mint a token.
    pub fn announce(&self, listener: &tokio::net::TcpListener) -> anyhow::Result<()> {
        let address = listener.local_addr()?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(%address, scheme, database = store_kind(&self.config.database), "remediate started");
        remediate_agent::say!("listening on {scheme}://{address}");
        if let Some(metrics) = self.metrics_address() {
            tracing::info!(address = %metrics, "metrics served on their own address");
            remediate_agent::say!("metrics on http://{metrics}/metrics");
        }
        if let (Some(proxy), Some(bound)) = (&self.config.proxy, self.proxy_address()) {
            let hosts = proxy.served_hosts().join(", ");
            let others = if proxy.pass_through {
                "other hosts are tunnelled unchanged"
            } else {
                "other hosts are refused"
            };
            tracing::info!(address = %bound, %hosts, pass_through = proxy.pass_through, "proxy started");
            remediate_agent::say!("proxy listening on http://{bound} (serves {hosts}; {others}): HTTPS_PROXY=http://{bound}");
        }
        if let Some(ca) = &self.ca {
            tracing::info!(
                ca = %ca.cert_path().display(),
                fingerprint = %ca.fingerprint(),
                "local CA in use; clients must trust its certificate (see the startup output)"
            );
            remediate_agent::say!("{}", ca.trust_instructions());
        }
        remediate_agent::say!(
            "mint a token: remediate token --data-dir {} --tenant <tenant> --scope DeviceManagementScripts.ReadWrite.All",
            self.config.data_dir.display()
        );
        use std::io::Write;
        std::io::stdout().flush().ok();
        Ok(())
    }

    /// Serve on `listener` (with the history retention running) until `shutdown` completes,
    /// then drain the requests in flight and close the store.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let retention = tokio::spawn(prune_history(
            self.store.clone(),
            self.config.history_retention_days,
        ));
        #[cfg(unix)]
        let reloader = self
            .tls
            .clone()
            .filter(remediate_api::tls::ServerTls::reloadable)
            .map(|tls| tokio::spawn(reload_on_sighup(tls)));
        // One shutdown for both listeners.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        // Export jobs run in the background; at the stop they are given back (`notStarted`).
        let exports = tokio::spawn(remediate_api::exports::run(
            self.state.clone(),
            stopped.clone(),
        ));
        let proxy_listener = self
            .proxy_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let proxy = async {
            let (Some(config), Some(ca)) = (&self.config.proxy, &self.ca) else {
                return Ok(());
            };
            let listener = match proxy_listener {
                Some(listener) => listener,
                None => tokio::net::TcpListener::bind(config.listen).await?,
            };
            let shutdown = until_stopped(stopped.clone());
            remediate_api::proxy::run(listener, self.state.clone(), ca.clone(), config, shutdown)
                .await
        };
        let metrics_listener = self
            .metrics_listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let metrics = metrics_listener.map(|listener| {
            let shutdown = until_stopped(stopped.clone());
            tokio::spawn(remediate_api::metrics::serve(
                listener,
                self.state.clone(),
                shutdown,
            ))
        });
        let main = remediate_api::server::run_tls(
            listener,
            self.state.clone(),
            self.tls.clone(),
            until_stopped(stopped.clone()),
        );
        let (served, proxied) = tokio::join!(main, proxy);
        if tokio::time::timeout(Duration::from_secs(10), exports)
            .await
            .is_err()
        {
            tracing::warn!("the export jobs did not stop within 10 s");
        }
        if let Some(mut metrics) = metrics {
            // A scrape in progress may finish; the metrics listener holds nothing to drain.
            match tokio::time::timeout(Duration::from_secs(5), &mut metrics).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the metrics listener failed"),
                Ok(_) => {}
                Err(_) => metrics.abort(),
            }
        }
        #[cfg(unix)]
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        retention.abort();
        self.store.close().await;
        served?;
        proxied.context("the proxy")?;
        tracing::info!("remediate stopped");
        Ok(())
    }
}

/// The local CA (when `--tls` without files or the proxy needs one) and the main listener's TLS.
fn open_tls(
    config: &Config,
) -> anyhow::Result<(
    Option<Arc<remediate_api::tls::LocalCa>>,
    Option<remediate_api::tls::ServerTls>,
)> {
    use remediate_api::tls::{LocalCa, ServerTls, TlsSource};
    let needs_ca = matches!(config.tls, Some(TlsSource::LocalCa { .. })) || config.proxy.is_some();
    let ca = match needs_ca {
        true => Some(Arc::new(
            LocalCa::load_or_create(&config.data_dir).context("the local CA")?,
        )),
        false => None,
    };
    let tls = match &config.tls {
        Some(source) => Some(ServerTls::new(source, ca.as_ref()).context("TLS")?),
        None => None,
    };
    Ok((ca, tls))
}

/// Read the TLS certificate files again on every SIGHUP (the one in use stays when they are
/// broken).
#[cfg(unix)]
async fn reload_on_sighup(tls: remediate_api::tls::ServerTls) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        match tls.reload() {
            Ok(Some(cert)) => {
                tracing::info!(cert = %cert.display(), "reloaded the TLS certificate")
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "reloading the TLS certificate failed; the previous one stays in use")
            }
        }
    }
}

/// `remediate recount [--check]`: rebuild the summary counters from the rows, or only compare
/// them (printing every difference; an error when there is one).
pub async fn recount(config: Config, check: bool) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    if check {
        let differences = store
            .check_counters()
            .await
            .map_err(|e| anyhow::anyhow!("checking the counters: {e}"))?;
        for difference in &differences {
            remediate_agent::say!("{difference}");
        }
        store.close().await;
        if !differences.is_empty() {
            anyhow::bail!("{} counters differ from the rows", differences.len());
        }
        remediate_agent::say!("the counters agree with the rows");
    } else {
        store
            .recount()
            .await
            .map_err(|e| anyhow::anyhow!("rebuilding the counters: {e}"))?;
        store.close().await;
        remediate_agent::say!("the counters were rebuilt from the rows");
    }
    Ok(())
}

/// What `remediate enrollment create` makes.
#[derive(Debug, Clone, Default)]
pub struct EnrollmentRequest {
    pub tenant: String,
    pub groups: Vec<String>,
    /// Lifetime in seconds (default 7 days).
    pub expires_in: Option<u64>,
    pub uses: Option<i64>,
    pub name: Option<String>,
}

/// `remediate enrollment create`: a new enrollment secret in the configured database (the same
/// command as `POST deviceManagement/agentEnrollmentSecrets`); returns the secret.
pub async fn create_enrollment(
    config: Config,
    request: &EnrollmentRequest,
) -> anyhow::Result<String> {
    use remediate_domain::model::ENROLLMENT_SECRET;
    use remediate_domain::{Instant, Value};
    use remediate_store::Store;
    let store = open_store(&config).await?;
    let mut fields = vec![(
        ENROLLMENT_SECRET.index("groupIds"),
        Value::StrList(request.groups.clone()),
    )];
    if let Some(name) = &request.name {
        fields.push((
            ENROLLMENT_SECRET.index("displayName"),
            Value::Str(name.clone()),
        ));
    }
    if let Some(seconds) = request.expires_in {
        let ticks = i64::try_from(seconds)
            .ok()
            .and_then(|s| s.checked_mul(10_000_000))
            .and_then(|t| t.checked_add(Instant::now().ticks()))
            .and_then(Instant::from_ticks)
            .ok_or_else(|| anyhow::anyhow!("--expires-in is too large"))?;
        fields.push((
            ENROLLMENT_SECRET.index("expirationDateTime"),
            Value::Time(ticks),
        ));
    }
    if let Some(uses) = request.uses {
        fields.push((ENROLLMENT_SECRET.index("usesRemaining"), Value::Int(uses)));
    }
    let write =
        remediate_domain::agents::create_secret(fields).map_err(|e| anyhow::anyhow!(e.0))?;
    let remediate_domain::write::Write::CreateEnrollmentSecret { secret, .. } = &write else {
        anyhow::bail!("the enrollment secret was not made");
    };
    let secret = secret.clone();
    let result = store.write(&request.tenant, write).await;
    store.close().await;
    result.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(secret)
}

/// What `remediate login-link` makes: a one-time sign-in link to the dashboard.
#[derive(Debug, Clone, Default)]
pub struct LoginLinkRequest {
    pub tenant: String,
    /// Delegated permissions of the session (`scp`).
    pub scopes: Vec<String>,
    /// Application permissions of the session (`roles`).
    pub roles: Vec<String>,
}

/// The base of a link to this server: `--public-url`, else the listen address (`localhost` for
/// an unspecified one), `https` with TLS.
pub fn link_origin(config: &Config) -> String {
    if let Some(public) = &config.public_url {
        return public.trim_end_matches('/').to_owned();
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let listen = config.listen;
    let port = listen.port();
    match listen.ip() {
        ip if ip.is_unspecified() => format!("{scheme}://localhost:{port}"),
        std::net::IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{port}"),
        ip => format!("{scheme}://{ip}:{port}"),
    }
}

/// `remediate login-link`: store a one-time link (its token's hash, with the tenant and
/// permissions) in the configured database; returns the URL (`{base}/login/{token}`), which
/// opens one session within 5 minutes.
pub async fn login_link(config: Config, request: &LoginLinkRequest) -> anyhow::Result<String> {
    let tenant = request.tenant.trim();
    if tenant.is_empty() || tenant.len() > 256 || tenant.chars().any(char::is_control) {
        anyhow::bail!("--tenant must be a tenant id (1 to 256 characters)");
    }
    let scopes = permission_names("--scope", &request.scopes)?;
    let roles = permission_names("--role", &request.roles)?;
    if scopes.is_empty() && roles.is_empty() {
        anyhow::bail!("give at least one --scope (e.g. --scope DeviceManagementScripts.Read.All)");
    }
    let store = open_store(&config).await?;
    let result = remediate_api::dashboard::create_login_link(&store, tenant, &scopes, &roles).await;
    store.close().await;
    let token = result.map_err(|e| anyhow::anyhow!("storing the sign-in link: {e}"))?;
    Ok(format!("{}/login/{token}", link_origin(&config)))
}

/// What `remediate app create` registers: an application of the Entra-shaped token endpoint
/// (`remediate_api::entra`).
#[derive(Debug, Clone, Default)]
pub struct AppRequest {
    /// The tenant id (a GUID) the app's tokens are for (`tid`).
    pub tenant: String,
    /// Application permissions (the tokens' `roles`).
    pub roles: Vec<String>,
    /// Delegated permission names (the tokens' `scp`).
    pub scopes: Vec<String>,
    /// Display name (default `remediate app`).
    pub name: Option<String>,
}

/// A registered app and its client secret (shown once: only its hash is stored).
#[derive(Debug, Clone)]
pub struct CreatedApp {
    pub app: remediate_store::RegisteredApp,
    pub client_secret: String,
}

/// The tenant id of `remediate app …`: a GUID (what Entra tenant ids are and the token endpoint's
/// URLs carry), in lower case.
fn app_tenant(tenant: &str) -> anyhow::Result<String> {
    let tenant = tenant.trim().to_ascii_lowercase();
    if !remediate_api::entra::is_guid(&tenant) {
        anyhow::bail!(
            "--tenant must be a tenant id, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47 (the token endpoint is /{{tenant}}/oauth2/v2.0/token)"
        );
    }
    Ok(tenant)
}

/// A permission name of `--role`/`--scope`: one word of printable characters.
fn permission_names(flag: &str, names: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty()
            || name.len() > 256
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            anyhow::bail!("{flag} '{name}' is not a permission name (one word, e.g. DeviceManagementScripts.ReadWrite.All)");
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// `remediate app create`: register an application in the configured database; returns it with
/// its client secret.
pub async fn create_app(config: Config, request: &AppRequest) -> anyhow::Result<CreatedApp> {
    let tenant = app_tenant(&request.tenant)?;
    let roles = permission_names("--role", &request.roles)?;
    let scopes = permission_names("--scope", &request.scopes)?;
    if roles.is_empty() && scopes.is_empty() {
        anyhow::bail!(
            "give at least one --role (e.g. --role DeviceManagementScripts.ReadWrite.All)"
        );
    }
    let name = request.name.as_deref().unwrap_or("remediate app").trim();
    if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
        anyhow::bail!("--name must be 1 to 256 characters without control characters");
    }
    let client_secret = format!(
        "rma~{}{}",
        remediate_domain::new_id().replace('-', ""),
        remediate_domain::new_id().replace('-', "")
    );
    let app = remediate_store::RegisteredApp {
        tenant,
        client_id: remediate_domain::new_id(),
        display_name: name.to_owned(),
        roles,
        scopes,
        secret_hash: remediate_domain::agents::hash_secret(&client_secret),
        created: remediate_domain::Instant::now(),
        revoked: None,
    };
    let store = open_store(&config).await?;
    let result = store.create_app(&app).await;
    store.close().await;
    result.map_err(|e| anyhow::anyhow!("registering the app: {e}"))?;
    Ok(CreatedApp { app, client_secret })
}

/// `remediate app revoke`: the app gets no more tokens (those it has stay valid until they
/// expire, at most an hour). Returns the app; an error when it is not registered in the tenant.
pub async fn revoke_app(
    config: Config,
    tenant: &str,
    client_id: &str,
) -> anyhow::Result<remediate_store::RegisteredApp> {
    let tenant = app_tenant(tenant)?;
    let client_id = client_id.trim().to_ascii_lowercase();
    let store = open_store(&config).await?;
    let result = store.revoke_app(&tenant, &client_id).await;
    store.close().await;
    result
        .map_err(|e| anyhow::anyhow!("revoking the app: {e}"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no app with the client id '{client_id}' is registered in the tenant {tenant}"
            )
        })
}

/// `remediate app list`: the tenant's apps, oldest first.
pub async fn list_apps(
    config: Config,
    tenant: &str,
) -> anyhow::Result<Vec<remediate_store::RegisteredApp>> {
    let tenant = app_tenant(tenant)?;
    let store = open_store(&config).await?;
    let result = store.apps(&tenant).await;
    store.close().await;
    result.map_err(|e| anyhow::anyhow!("listing the apps: {e}"))
}

/// What `remediate token` mints.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// The `tid` claim.
    pub tenant: String,
    /// Delegated permissions (`scp`).
    pub scopes: Vec<String>,
    /// Application permissions (`roles`).
    pub roles: Vec<String>,
    /// The `appid` claim (default `remediate-cli`).
    pub app_id: Option<String>,
    /// A device agent's token for this managed device id.
    pub device: Option<String>,
    /// The `groups` claim.
    pub groups: Vec<String>,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Mint a token signed by the local key of `data_dir` (created if missing), as `remediate token`.
pub fn mint_token(data_dir: &Path, request: &TokenRequest) -> anyhow::Result<String> {
    if request.tenant.trim().is_empty() {
        anyhow::bail!("--tenant must not be empty");
    }
    if request.scopes.is_empty() && request.roles.is_empty() && request.device.is_none() {
        anyhow::bail!("give at least one --scope or --role (e.g. --scope DeviceManagementScripts.ReadWrite.All)");
    }
    let key = auth::LocalKey::load_or_create(data_dir)
        .with_context(|| format!("loading the signing key in {}", data_dir.display()))?;
    let mut claims = auth::local_claims(
        &request.tenant,
        &request.scopes,
        &request.roles,
        request.expires_in,
    );
    claims.deviceid = request.device.clone();
    if let Some(app) = &request.app_id {
        claims.appid = Some(app.clone());
    }
    claims.groups = request.groups.clone();
    Ok(key.mint(&claims)?)
}

/// Apply the history retention at start and then hourly.
async fn prune_history(store: Arc<SqlStore>, days: u32) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = remediate_domain::Instant::now().ticks();
        let cutoff = remediate_domain::Instant::from_ticks(now - i64::from(days) * 864_000_000_000)
            .unwrap_or(remediate_domain::Instant::MIN);
        match store.prune_history(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, days, "pruned run history beyond the retention"),
            Err(e) => tracing::warn!(error = %e, "pruning run history failed; retrying in an hour"),
        }
    }
}

fn store_kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

/// Completes on Ctrl-C or SIGTERM (the binary's shutdown).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // The handlers are installed now, not when the future is first polled: a SIGTERM that
    // arrives right after the server announced itself must drain it, not kill it.
    #[cfg(unix)]
    let (terminate, interrupt) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok();
        }
        tracing::info!("shutdown signal received; draining in-flight requests");
    }
}
