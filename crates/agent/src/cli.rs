//! `remediate-agent`'s command line: `enroll`, `run` (`--once`), `status`, `install` (enroll and
//! write the systemd unit / launchd plist).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::agent::{Agent, Options, Stopped, EXIT_QUEUED};
use crate::install::{self, ServiceKind};
use crate::state::{Identity, StateDir};

/// `println!` that does not panic when standard output is closed (`remediate-agent status |
/// head`): what the reader no longer wants is dropped, as Unix tools do; any other write error is
/// reported on standard error. Both command lines use it (`remediate` too).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

/// One line to standard output for [`say!`].
pub fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(line).and_then(|()| out.write_all(b"\n")) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write to standard output: {e}");
        }
        _ => {}
    }
}

#[derive(Parser)]
#[command(
    name = "remediate-agent",
    version,
    about = "Runs the detection and remediation scripts a remediate server assigns to this machine, and reports every result"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register this machine with a server using an enrollment secret.
    Enroll {
        /// The server's base URL (`https://remediate.example.com`; `/beta` is added, and accepted).
        #[arg(long)]
        server: String,
        /// An enrollment secret (`remediate enrollment create`); never stored.
        #[arg(long, env = "REMEDIATE_ENROLLMENT_SECRET")]
        secret: String,
        /// The agent's state directory (created 0700).
        #[arg(long)]
        state_dir: PathBuf,
        /// The device name (default: the host name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Run until SIGTERM: check in, run what is due, report.
    Run {
        #[arg(long)]
        state_dir: PathBuf,
        /// One pass: run what is due and the on-demand runs, deliver the queue, exit (0: all
        /// delivered, 75: reports remain queued).
        #[arg(long)]
        once: bool,
        /// Seconds between check-ins (jittered by up to a tenth).
        #[arg(long, default_value_t = 60)]
        check_in_interval: u64,
        /// Seconds a script may run before its whole process group is killed (Intune: 60 min).
        #[arg(long, default_value_t = 3600)]
        script_timeout: u64,
        /// Characters of each output stream reported (the tail; a cut is marked). Intune: 2048.
        #[arg(long, default_value_t = 2048)]
        output_chars: usize,
        /// The user that scripts with runAsAccount 'user' run as (the agent must run as root;
        /// the state directory becomes mode 0711 so that user can reach its script).
        #[arg(long)]
        run_as_user: Option<String>,
        /// A public key file (`remediate sign-script --public-key-out`) whose signatures make
        /// scripts with enforceSignatureCheck runnable (repeatable).
        #[arg(long = "trust-key", value_name = "FILE")]
        trust_keys: Vec<PathBuf>,
    },
    /// The fleet simulator: N virtual devices enrolled with one secret check in every interval
    /// and report their scripts' schedules (no script runs); prints check-in latency percentiles.
    Simulate {
        #[arg(long)]
        server: String,
        #[arg(long, env = "REMEDIATE_ENROLLMENT_SECRET")]
        secret: String,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Seconds to run after every device enrolled.
        #[arg(long, default_value_t = 180)]
        duration: u64,
        #[arg(long, default_value_t = 60)]
        check_in_interval: u64,
        #[arg(long, default_value_t = 64)]
        enroll_concurrency: usize,
        /// Seconds at the start (every device's first check-in and first reports) whose
        /// check-ins and errors are counted apart from the steady state.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
    },
    /// Print the enrollment, the assigned scripts with their last outcome, and the queue length.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// As root: enroll into the state directory and write the service that runs the agent at
    /// boot (systemd unit, or launchd plist on macOS); it is not started.
    Install {
        /// The server's base URL.
        #[arg(long)]
        server: String,
        /// An enrollment secret (`remediate enrollment create`); never stored.
        #[arg(long, env = "REMEDIATE_ENROLLMENT_SECRET")]
        secret: String,
        /// The device name (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// The agent's state directory.
        #[arg(long, default_value = install::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Where the service file goes (default: /etc/systemd/system, on macOS
        /// /Library/LaunchDaemons).
        #[arg(long)]
        unit_dir: Option<PathBuf>,
        /// A public key file the service's agent trusts (`run --trust-key`; repeatable).
        #[arg(long = "trust-key", value_name = "FILE")]
        trust_keys: Vec<PathBuf>,
        /// The user the service's agent runs runAsAccount 'user' scripts as (`run --run-as-user`).
        #[arg(long)]
        run_as_user: Option<String>,
    },
}

/// Run the command line; the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let filter = std::env::var("REMEDIATE_AGENT_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return 1;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Enroll {
            server,
            secret,
            state_dir,
            name,
        } => {
            let device = enroll(&server, &secret, &state_dir, name).await?;
            say!("enrolled as managed device {device}");
            Ok(0)
        }
        Command::Install {
            server,
            secret,
            name,
            state_dir,
            unit_dir,
            trust_keys,
            run_as_user,
        } => {
            install_service(
                &server,
                &secret,
                name,
                &state_dir,
                unit_dir,
                &trust_keys,
                run_as_user,
            )
            .await
        }
        Command::Run {
            state_dir,
            once,
            check_in_interval,
            script_timeout,
            output_chars,
            run_as_user,
            trust_keys,
        } => {
            let trusted_keys = trust_keys
                .iter()
                .map(|path| crate::signature::load_public_key(path))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let state = StateDir::open(&state_dir)?;
            let _lock = state.lock()?;
            // A script run as another user must reach its file under work/.
            state.set_traversable(run_as_user.is_some())?;
            let Some(identity) = state.identity()? else {
                anyhow::bail!(
                    "{} is not enrolled: run `remediate-agent enroll` first",
                    state_dir.display()
                );
            };
            let agent = Agent::new(
                state,
                identity,
                Options {
                    check_in_interval: Duration::from_secs(check_in_interval.max(1)),
                    script_timeout: Duration::from_secs(script_timeout.max(1)),
                    output_chars: output_chars.max(1),
                    run_as_user,
                    trusted_keys,
                    once,
                },
            )?;
            Ok(match agent.run().await? {
                Stopped::Once { delivered: true } | Stopped::Signalled => 0,
                Stopped::Once { delivered: false } => EXIT_QUEUED,
            })
        }
        Command::Simulate {
            server,
            secret,
            devices,
            duration,
            check_in_interval,
            enroll_concurrency,
            warmup,
        } => {
            let report = crate::simulate::simulate(crate::simulate::SimOptions {
                server,
                secret,
                devices,
                duration: Duration::from_secs(duration),
                check_in_interval: Duration::from_secs(check_in_interval.max(1)),
                enroll_concurrency,
                warmup: Duration::from_secs(warmup),
            })
            .await?;
            say!("{}", report.summary());
            Ok(if report.errors.is_empty() { 0 } else { 1 })
        }
        Command::Status { state_dir } => {
            let state = StateDir::open(&state_dir)?;
            let Some(identity) = state.identity()? else {
                say!("not enrolled");
                return Ok(0);
            };
            say!("server: {}", identity.server);
            say!("tenant: {}", identity.tenant);
            say!("device: {}", identity.device_id);
            say!("enrolled: {}", identity.enrolled_at);
            let scripts = state.scripts()?;
            let runs = state.runs()?;
            say!("scripts: {}", scripts.scripts.len());
            for s in &scripts.scripts {
                let last = runs.runs.get(&s.id);
                say!(
                    "  {} {:?} version {}: last {} ({} / {}){}",
                    s.id,
                    s.display_name.as_deref().unwrap_or(""),
                    s.version,
                    last.map_or("never", |r| r.finished_at.as_str()),
                    last.map_or("-", |r| r.detection_state.as_str()),
                    last.map_or("-", |r| r.remediation_state.as_str()),
                    if last.is_some_and(|r| !r.reported) {
                        ", not yet reported"
                    } else {
                        ""
                    },
                );
            }
            say!("queued reports: {}", state.queue()?.len()?);
            Ok(0)
        }
    }
}

/// Enroll (again) into a state directory: the managed device's id. An existing identity is the
/// proof that keeps the same device.
async fn enroll(
    server: &str,
    secret: &str,
    state_dir: &Path,
    name: Option<String>,
) -> anyhow::Result<String> {
    let state = StateDir::open(state_dir)?;
    let _lock = state.lock()?;
    let existing = state.identity()?;
    let proof = existing
        .as_ref()
        .map(|i| (i.device_id.as_str(), i.credential.as_str()));
    let enrolled = crate::client::enroll(server, secret, machine(name), proof)
        .await
        .map_err(|e| anyhow::anyhow!("enrollment failed: {e}"))?;
    let identity = Identity {
        server: crate::client::server_root(server),
        tenant: enrolled.tenant,
        device_id: enrolled.device_id.clone(),
        credential: enrolled.credential,
        enrolled_at: crate::state::now_rfc3339(),
    };
    state.save_identity(&identity)?;
    Ok(enrolled.device_id)
}

/// `install`: check everything that can be checked, enroll, write the service definition, say
/// how to start it.
async fn install_service(
    server: &str,
    secret: &str,
    name: Option<String>,
    state_dir: &Path,
    unit_dir: Option<PathBuf>,
    trust_keys: &[PathBuf],
    run_as_user: Option<String>,
) -> anyhow::Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "install must run as root: the service runs the agent as root, with a state directory \
             root owns, and the service file goes to a system directory"
        );
    }
    let kind = ServiceKind::native();
    let unit_dir = unit_dir.unwrap_or_else(|| PathBuf::from(kind.default_dir()));
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| anyhow::anyhow!("cannot find this program's own path: {e}"))?;
    let exe = exe
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("this program's path {} is not UTF-8", exe.display()))?
        .to_owned();
    let absolute = |p: &Path| std::path::absolute(p).map_err(anyhow::Error::from);
    let state_dir = absolute(state_dir)?;
    let mut keys = Vec::with_capacity(trust_keys.len());
    for key in trust_keys {
        crate::signature::load_public_key(key)?;
        keys.push(std::fs::canonicalize(key)?);
    }
    if let Some(user) = &run_as_user {
        crate::exec::lookup_user(user).map_err(|e| anyhow::anyhow!("--run-as-user: {e}"))?;
    }
    let keys: Vec<&Path> = keys.iter().map(PathBuf::as_path).collect();
    let args = install::agent_args(&state_dir, &keys, run_as_user.as_deref())
        .map_err(anyhow::Error::msg)?;
    let text = kind.definition(&exe, &args).map_err(anyhow::Error::msg)?;
    if !unit_dir.is_dir() {
        anyhow::bail!(
            "{} is not a directory (the service file goes there)",
            unit_dir.display()
        );
    }
    let file = unit_dir.join(kind.file_name());
    let device = enroll(server, secret, &state_dir, name).await?;
    say!("enrolled as managed device {device}");
    install::write_definition(&file, &text).map_err(|e| {
        anyhow::anyhow!("{e:#} (the device is enrolled; running install again keeps it)")
    })?;
    say!("wrote {}", file.display());
    say!(
        "start it now and at every boot with: {}",
        kind.start_hint(&file)
    );
    Ok(0)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// What the machine can tell of itself, as managedDevice properties.
fn machine(name: Option<String>) -> Value {
    let hostname = read("/proc/sys/kernel/hostname")
        .or_else(|| read("/etc/hostname"))
        .unwrap_or_else(|| "unknown-host".into());
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "macOS",
        other => other,
    };
    let os_version = read("/etc/os-release")
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("VERSION_ID=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .or_else(|| read("/proc/sys/kernel/osrelease"))
        .unwrap_or_default();
    let memory = read("/proc/meminfo")
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024);
    json!({
        "deviceName": name.unwrap_or(hostname),
        "operatingSystem": os,
        "osVersion": os_version,
        "serialNumber": read("/sys/class/dmi/id/product_serial").unwrap_or_default(),
        "manufacturer": read("/sys/class/dmi/id/sys_vendor").unwrap_or_default(),
        "model": read("/sys/class/dmi/id/product_name").unwrap_or_default(),
        "physicalMemoryInBytes": memory,
        "managementAgent": "mdm",
        "ownerType": "company",
    })
}
