//! The `remediate` server as a library: the resolved configuration ([`config`]), the wiring of a
//! [`Server`] from it (store, signing key, OIDC, `AppState`), serving on a given listener until a
//! shutdown future completes, `recount` and token minting. `src/main.rs` (the binary) is a thin
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

/// Log to stderr, filtered by `REMEDIATE_LOG` (default `info,sqlx=warn`), as text or JSON lines.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMEDIATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
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
}

impl Server {
    /// Wire a server from a resolved configuration (what `remediate serve` does before it binds).
    pub async fn open(config: Config) -> anyhow::Result<Server> {
        let store = Arc::new(open_store(&config).await?);
        let key = auth::LocalKey::load_or_create(&config.data_dir)
            .context("loading the local signing key")?;
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
            },
            guard: remediate_api::guard::Guard::new(config.limits.clone(), config.realism.clone()),
            credentials: remediate_api::agents::CredentialCache::default(),
        });
        Ok(Server {
            config,
            store,
            state,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bind the configured address (`--listen`; port 0 picks a free port).
    pub async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::bind(self.config.listen)
            .await
            .with_context(|| format!("binding {}", self.config.listen))
    }

    /// Log the start and print the address (`listening on http://…`) and how to mint a token.
    pub fn announce(&self, listener: &tokio::net::TcpListener) -> anyhow::Result<()> {
        let address = listener.local_addr()?;
        tracing::info!(%address, database = store_kind(&self.config.database), "remediate started");
        println!("listening on http://{address}");
        println!(
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
        let served = remediate_api::run(listener, self.state, shutdown).await;
        retention.abort();
        self.store.close().await;
        served?;
        tracing::info!("remediate stopped");
        Ok(())
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
            println!("{difference}");
        }
        store.close().await;
        if !differences.is_empty() {
            anyhow::bail!("{} counters differ from the rows", differences.len());
        }
        println!("the counters agree with the rows");
    } else {
        store
            .recount()
            .await
            .map_err(|e| anyhow::anyhow!("rebuilding the counters: {e}"))?;
        store.close().await;
        println!("the counters were rebuilt from the rows");
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
pub async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
