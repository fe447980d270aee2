//! The `remediate` binary: `serve` runs the server, `token` mints a token for the local key,
//! `recount` rebuilds (or checks) the summary counters. The wiring lives in the library
//! (`src/lib.rs`); this is the command line, the runtime with its memory hooks, and the signals.

mod memory;

use anyhow::Context;
use clap::{Parser, Subcommand};
use remediate::config;

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
            remediate::init_tracing(config.log_json);
            let runtime = remediate::serve_runtime()
                .on_thread_park(memory::on_worker_idle)
                .build()?;
            runtime.block_on(serve(config))
        }
        Command::Recount(args) => {
            let config = config::Config::resolve(*args.serve)?;
            remediate::init_tracing(config.log_json);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(remediate::recount(config, args.check))
        }
        Command::Token(args) => {
            let token = remediate::mint_token(
                &args.data_dir,
                &remediate::TokenRequest {
                    tenant: args.tenant,
                    scopes: args.scopes,
                    roles: args.roles,
                    app_id: args.app_id,
                    device: args.device,
                    groups: args.groups,
                    expires_in: args.expires_in,
                },
            )?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(config: config::Config) -> anyhow::Result<()> {
    let server = remediate::Server::open(config).await?;
    let listener = server.bind().await?;
    server.announce(&listener)?;
    memory::start_returning_freed_memory().context("starting the memory-return thread")?;
    server.serve(listener, remediate::shutdown_signal()).await
}
