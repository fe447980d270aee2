//! The `remediate` binary: `serve` runs the server, `token` mints a token for the local key,
//! `login-link` prints a one-time sign-in link to the dashboard,
//! `recount` rebuilds (or checks) the summary counters, `sign-script` signs scripts for devices
//! that enforce signature checks. The wiring lives in the library
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
    /// Applications of the Entra-shaped token endpoint (`POST /{tenant}/oauth2/v2.0/token`):
    /// MSAL-based clients (azure-identity's ClientSecretCredential, msal-node) get tokens with
    /// their client id and secret. Take serve's database options.
    #[command(subcommand)]
    App(AppCommand),
    /// Print a one-time sign-in link to the dashboard (single use, valid 5 minutes) that opens a
    /// session of a tenant with these permissions. Takes serve's options: the database, and the
    /// link's base (--public-url, else the listen address).
    LoginLink(LoginLinkArgs),
    /// Sign a script for devices that enforce signature checks (enforceSignatureCheck): the
    /// script with a last `# remediate-signature:` line (Ed25519). Also creates a key
    /// (--new-key) and exports its public key (--public-key-out), for `remediate-agent run
    /// --trust-key`.
    SignScript(SignScriptArgs),
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("signing_key").required(true).args(["key", "new_key"])))]
struct SignScriptArgs {
    /// The private key (PKCS#8, PEM or base64) to sign with.
    #[arg(long, value_name = "FILE", conflicts_with = "new_key")]
    key: Option<std::path::PathBuf>,
    /// Create a new private key in FILE (mode 0600; never overwrites) and print its public key
    /// (one line of base64) on stdout.
    #[arg(long, value_name = "FILE")]
    new_key: Option<std::path::PathBuf>,
    /// Write the key's public key (one line of base64) to FILE: what devices trust.
    #[arg(long, value_name = "FILE")]
    public_key_out: Option<std::path::PathBuf>,
    /// The script to sign (`-`: stdin); a signature it already has is replaced.
    #[arg(value_name = "SCRIPT", conflicts_with = "new_key")]
    script: Option<std::path::PathBuf>,
    /// Write the signed script to FILE instead of stdout.
    #[arg(long, value_name = "FILE", requires = "script")]
    out: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum EnrollmentCommand {
    /// Make a secret; it is printed as the last line of stdout (and never stored: only its hash).
    Create(EnrollmentCreateArgs),
}

#[derive(Subcommand)]
enum AppCommand {
    /// Register an app. Stdout ends with two lines: the client id, then the client secret
    /// (shown once: only its hash is stored).
    Create(AppCreateArgs),
    /// Revoke an app: it gets no more tokens (tokens it has stay valid until they expire, at
    /// most an hour).
    Revoke(AppRevokeArgs),
    /// List a tenant's apps, one per line: client id, status, roles, scopes, created, name
    /// (tab-separated, after a header line).
    List(AppListArgs),
}

#[derive(clap::Args)]
struct AppCreateArgs {
    /// Tenant id (a GUID): the `tid` of the app's tokens.
    #[arg(long)]
    tenant: String,
    /// Application permission (the tokens' `roles`), repeatable, e.g.
    /// DeviceManagementScripts.ReadWrite.All.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Delegated permission name (the tokens' `scp`), repeatable; Entra's app tokens carry
    /// only roles, so use this only for tools that look for scp.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Display name (the tokens' `app_displayname`; default "remediate app").
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    serve: Box<config::ServeArgs>,
}

#[derive(clap::Args)]
struct AppRevokeArgs {
    /// Tenant id (a GUID).
    #[arg(long)]
    tenant: String,
    /// The app's client id.
    #[arg(long)]
    client_id: String,
    #[command(flatten)]
    serve: Box<config::ServeArgs>,
}

#[derive(clap::Args)]
struct AppListArgs {
    /// Tenant id (a GUID).
    #[arg(long)]
    tenant: String,
    #[command(flatten)]
    serve: Box<config::ServeArgs>,
}

#[derive(clap::Args)]
struct LoginLinkArgs {
    /// Tenant the session reads and changes.
    #[arg(long)]
    tenant: String,
    /// Delegated permission (`scp`) of the session, repeatable, e.g.
    /// DeviceManagementScripts.Read.All.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Application permission (`roles`) of the session, repeatable.
    #[arg(long = "role")]
    roles: Vec<String>,
    #[command(flatten)]
    serve: Box<config::ServeArgs>,
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
            remediate_agent::say!("{secret}");
            Ok(())
        }
        Command::LoginLink(args) => {
            let config = config::Config::resolve(*args.serve)?;
            remediate::init_tracing(config.log_json);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let url = runtime.block_on(remediate::login_link(
                config,
                &remediate::LoginLinkRequest {
                    tenant: args.tenant,
                    scopes: args.scopes,
                    roles: args.roles,
                },
            ))?;
            remediate_agent::say!("{url}");
            Ok(())
        }
        Command::App(command) => app(command),
        Command::SignScript(args) => sign_script(args),
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
            remediate_agent::say!("{token}");
            Ok(())
        }
    }
}

/// `app create | revoke | list`: the registered applications of the token endpoint.
fn app(command: AppCommand) -> anyhow::Result<()> {
    let open = |serve: Box<config::ServeArgs>| -> anyhow::Result<_> {
        let config = config::Config::resolve(*serve)?;
        remediate::init_tracing(config.log_json);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok((config, runtime))
    };
    match command {
        AppCommand::Create(args) => {
            let (config, runtime) = open(args.serve)?;
            let created = runtime.block_on(remediate::create_app(
                config,
                &remediate::AppRequest {
                    tenant: args.tenant,
                    roles: args.roles,
                    scopes: args.scopes,
                    name: args.name,
                },
            ))?;
            let app = &created.app;
            eprintln!(
                "registered the app '{}' in the tenant {} (roles: {}; scopes: {}). Its token \
                 endpoint is /{}/oauth2/v2.0/token (scope https://graph.microsoft.com/.default); \
                 the client secret is shown once, below the client id: store it now.",
                app.display_name,
                app.tenant,
                list_or_none(&app.roles),
                list_or_none(&app.scopes),
                app.tenant
            );
            remediate_agent::say!("{}", app.client_id);
            remediate_agent::say!("{}", created.client_secret);
        }
        AppCommand::Revoke(args) => {
            let (config, runtime) = open(args.serve)?;
            let app =
                runtime.block_on(remediate::revoke_app(config, &args.tenant, &args.client_id))?;
            let at = app
                .revoked
                .map(|t| t.to_seconds_string())
                .unwrap_or_default();
            remediate_agent::say!(
                "revoked the app {} ('{}') at {at}",
                app.client_id,
                app.display_name
            );
        }
        AppCommand::List(args) => {
            let (config, runtime) = open(args.serve)?;
            let apps = runtime.block_on(remediate::list_apps(config, &args.tenant))?;
            remediate_agent::say!("CLIENT ID\tSTATUS\tROLES\tSCOPES\tCREATED\tNAME");
            for app in apps {
                let status = match app.revoked {
                    Some(t) => format!("revoked {}", t.to_seconds_string()),
                    None => "active".to_owned(),
                };
                remediate_agent::say!(
                    "{}\t{status}\t{}\t{}\t{}\t{}",
                    app.client_id,
                    list_or_none(&app.roles),
                    list_or_none(&app.scopes),
                    app.created.to_seconds_string(),
                    app.display_name
                );
            }
        }
    }
    Ok(())
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

/// `sign-script`: create a key, export a public key, sign a script.
fn sign_script(args: SignScriptArgs) -> anyhow::Result<()> {
    use remediate_agent::signature;
    use std::io::{Read, Write};
    let key = match (&args.key, &args.new_key) {
        (_, Some(path)) => {
            let key = signature::create_key_file(path)?;
            eprintln!(
                "created the private key {} (key id {}); keep it secret. Devices trust its public \
                 key with `remediate-agent run --trust-key FILE`",
                path.display(),
                key.id()
            );
            remediate_agent::say!("{}", key.public_key().to_base64());
            key
        }
        (Some(path), None) => signature::load_key_pair(path)?,
        (None, None) => anyhow::bail!("give --key FILE (or --new-key FILE)"),
    };
    if let Some(path) = &args.public_key_out {
        signature::write_public_key(path, &key.public_key())?;
        eprintln!(
            "wrote the public key {} (key id {})",
            path.display(),
            key.id()
        );
    }
    let Some(script) = &args.script else {
        if args.key.is_some() && args.public_key_out.is_none() {
            anyhow::bail!("nothing to do: give a SCRIPT to sign (or --public-key-out FILE)");
        }
        return Ok(());
    };
    let content = if script.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading the script from stdin")?;
        buf
    } else {
        std::fs::read(script).with_context(|| format!("reading {}", script.display()))?
    };
    let signed = signature::sign(&content, &key);
    match &args.out {
        Some(out) => {
            std::fs::write(out, &signed).with_context(|| format!("writing {}", out.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&signed)
                .and_then(|()| stdout.flush())
                .context("writing the signed script")?;
        }
    }
    Ok(())
}

async fn serve(config: config::Config) -> anyhow::Result<()> {
    let server = remediate::Server::open(config).await?;
    let listener = server.bind().await?;
    // Listen for SIGTERM before anyone can know the address (and send one).
    let shutdown = remediate::shutdown_signal();
    server.announce(&listener)?;
    memory::start_returning_freed_memory().context("starting the memory-return thread")?;
    server.serve(listener, shutdown).await
}
