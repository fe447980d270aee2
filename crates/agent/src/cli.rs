//! `remediate-agent`'s command line: `enroll`, `run` (`--once`), `status`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::agent::{Agent, Options, Stopped, EXIT_QUEUED};
use crate::state::{Identity, StateDir};

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
        /// The user that scripts with runAsAccount 'user' run as.
        #[arg(long)]
        run_as_user: Option<String>,
    },
    /// Print the enrollment, the assigned scripts with their last outcome, and the queue length.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
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
            let state = StateDir::open(&state_dir)?;
            let _lock = state.lock()?;
            let existing = state.identity()?;
            let proof = existing
                .as_ref()
                .map(|i| (i.device_id.as_str(), i.credential.as_str()));
            let enrolled = crate::client::enroll(&server, &secret, machine(name), proof)
                .await
                .map_err(|e| anyhow::anyhow!("enrollment failed: {e}"))?;
            let identity = Identity {
                server: crate::client::server_root(&server),
                tenant: enrolled.tenant,
                device_id: enrolled.device_id.clone(),
                credential: enrolled.credential,
                enrolled_at: crate::state::now_rfc3339(),
            };
            state.save_identity(&identity)?;
            println!("enrolled as managed device {}", enrolled.device_id);
            Ok(0)
        }
        Command::Run {
            state_dir,
            once,
            check_in_interval,
            script_timeout,
            output_chars,
            run_as_user,
        } => {
            let state = StateDir::open(&state_dir)?;
            let _lock = state.lock()?;
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
                    once,
                },
            )?;
            Ok(match agent.run().await? {
                Stopped::Once { delivered: true } | Stopped::Signalled => 0,
                Stopped::Once { delivered: false } => EXIT_QUEUED,
            })
        }
        Command::Status { state_dir } => {
            let state = StateDir::open(&state_dir)?;
            let Some(identity) = state.identity()? else {
                println!("not enrolled");
                return Ok(0);
            };
            println!("server: {}", identity.server);
            println!("tenant: {}", identity.tenant);
            println!("device: {}", identity.device_id);
            println!("enrolled: {}", identity.enrolled_at);
            let scripts = state.scripts()?;
            let runs = state.runs()?;
            println!("scripts: {}", scripts.scripts.len());
            for s in &scripts.scripts {
                let last = runs.runs.get(&s.id);
                println!(
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
            println!("queued reports: {}", state.queue()?.len()?);
            Ok(0)
        }
    }
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
