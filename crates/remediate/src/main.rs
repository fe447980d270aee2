//! The `remediate` binary: `serve` runs the server, `token` mints a token for the local key,
//! `recount` rebuilds (or checks) the summary counters.

mod config;
mod memory;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remediate_api::{auth, ApiConfig, AppState};
use remediate_store::{SqlStore, StoreOptions};

#[derive(Parser)]
#[command(
    name = "remediate",
    version,
    about = "A Microsoft Graph (beta) compatible server for Intune Remediations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<config::ServeArgs>),
    /// Print a JWT signed by the local key of a data directory.
    Token(TokenArgs),
    /// Rebuild the summary counters from the rows (after editing the database by hand), or
    /// with --check only compare them and exit 1 when they differ. Takes serve's options.
    Recount(RecountArgs),
}

#[derive(clap::Args)]
struct RecountArgs {
    /// Compare only: print every difference and exit 1 if there is one; change nothing.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    serve: Box<config::ServeArgs>,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// Data directory holding the signing key (created if missing).
    #[arg(long, env = "REMEDIATE_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    data_dir: std::path::PathBuf,
    /// Tenant id (the `tid` claim); all data is partitioned by it.
    #[arg(long)]
    tenant: String,
    /// Delegated permission (`scp`), repeatable, e.g. DeviceManagementScripts.ReadWrite.All.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Application permission (`roles`), repeatable.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Application id (`appid` claim; default remediate-cli), e.g. to act as several apps.
    #[arg(long)]
    app_id: Option<String>,
    /// Mint a device agent's token for this managed device id (no --scope/--role needed).
    #[arg(long)]
    device: Option<String>,
    /// Group id the device belongs to (repeatable; the `groups` claim), for group assignments.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Lifetime: seconds, or with a unit (90m, 12h, 7d). Default 1h.
    #[arg(long, default_value = "1h", value_parser = config::parse_duration)]
    expires_in: u64,
}

/// mimalloc: a request allocates many small strings and JSON nodes on several threads; glibc's
/// allocator spent a quarter of the GET page's CPU time in its own bookkeeping (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = config::Config::resolve(*args)?;
            init_tracing(config.log_json);
            // Twice as many workers as cores (at least 4): SQLite reads run on the workers, and
            // all but one of them may be reading at once (store::sql).
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads((2 * cores).max(4))
                .on_thread_park(memory::on_worker_idle)
                .enable_all()
                .build()?;
            runtime.block_on(serve(config))
        }
        Command::Recount(args) => {
            let config = config::Config::resolve(*args.serve)?;
            init_tracing(config.log_json);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(recount(config, args.check))
        }
        Command::Token(args) => {
            if args.tenant.trim().is_empty() {
                anyhow::bail!("--tenant must not be empty");
            }
            if args.scopes.is_empty() && args.roles.is_empty() && args.device.is_none() {
                anyhow::bail!("give at least one --scope or --role (e.g. --scope DeviceManagementScripts.ReadWrite.All)");
            }
            let key = auth::LocalKey::load_or_create(&args.data_dir).with_context(|| {
                format!("loading the signing key in {}", args.data_dir.display())
            })?;
            let mut claims =
                auth::local_claims(&args.tenant, &args.scopes, &args.roles, args.expires_in);
            claims.deviceid = args.device.clone();
            if let Some(app) = &args.app_id {
                claims.appid = Some(app.clone());
            }
            claims.groups = args.groups.clone();
            println!("{}", key.mint(&claims)?);
            Ok(())
        }
    }
}

fn init_tracing(json: bool) {
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

async fn open_store(config: &config::Config) -> anyhow::Result<SqlStore> {
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

async fn recount(config: config::Config, check: bool) -> anyhow::Result<()> {
    use remediate_store::Store;
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

async fn serve(config: config::Config) -> anyhow::Result<()> {
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
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, database = store_kind(&config.database), "remediate started");
    println!("listening on http://{address}");
    println!(
        "mint a token: remediate token --data-dir {} --tenant <tenant> --scope DeviceManagementScripts.ReadWrite.All",
        config.data_dir.display()
    );
    use std::io::Write;
    std::io::stdout().flush().ok();
    memory::start_returning_freed_memory().context("starting the memory-return thread")?;
    let retention = tokio::spawn(prune_history(store.clone(), config.history_retention_days));
    remediate_api::run(listener, state, shutdown_signal()).await?;
    retention.abort();
    store.close().await;
    tracing::info!("remediate stopped");
    Ok(())
}

/// Apply the history retention at start and then hourly.
async fn prune_history(store: Arc<SqlStore>, days: u32) {
    use remediate_store::Store;
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

async fn shutdown_signal() {
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
