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
    /// Enrollment secrets for device agents (`remediate-agent enroll --secret …`).
    #[command(subcommand)]
    Enrollment(EnrollmentCommand),
}

#[derive(Subcommand)]
enum EnrollmentCommand {
    /// Make a secret; it is printed as the last line of stdout (and never stored: only its hash).
    Create(EnrollmentCreateArgs),
}

#[derive(clap::Args)]
struct EnrollmentCreateArgs {
    /// Tenant the enrolled devices join.
    #[arg(long)]
    tenant: String,
    /// Group the enrolled devices become members of (repeatable; must exist).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Lifetime: seconds, or with a unit: 30m, 12h, 7d (default 7d).
    #[arg(long, value_parser = parse_duration)]
    expires_in: Option<u64>,
    /// How many enrollments it allows (default: no limit until it expires).
    #[arg(long)]
    uses: Option<i64>,
    /// A label shown in the list of secrets.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    serve: Box<config::ServeArgs>,
}

/// `90`, `30m`, `12h`, `7d` → seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 90, 30m, 12h, 7d)"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("'{text}': the unit must be s, m, h or d")),
    };
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("'{text}' is not a positive duration"))
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
        Command::Enrollment(EnrollmentCommand::Create(args)) => {
            let config = config::Config::resolve(*args.serve)?;
            remediate::init_tracing(config.log_json);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let secret = runtime.block_on(remediate::create_enrollment(
                config,
                &remediate::EnrollmentRequest {
                    tenant: args.tenant,
                    groups: args.groups,
                    expires_in: args.expires_in,
                    uses: args.uses,
                    name: args.name,
                },
            ))?;
            println!("{secret}");
            Ok(())
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
