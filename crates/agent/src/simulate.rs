//! The fleet simulator (`remediate-agent simulate`): N virtual devices enrolled with one secret,
//! each checking in every interval (spread evenly, jittered) and reporting its assigned scripts as
//! their schedules come due — with the agent's own client code over real HTTP, one shared
//! connection pool. Scripts are not executed: each due script is reported `success`. It prints
//! the check-in latency percentiles and every error, the capacity figure of issue 14.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::json;
use tokio::sync::{Mutex, Semaphore};

use crate::client::{self, AssignedScript, Client};
use crate::schedule;
use crate::state::Identity;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub server: String,
    pub secret: String,
    pub devices: usize,
    /// How long to run after every device enrolled.
    pub duration: Duration,
    pub check_in_interval: Duration,
    /// Enrollments in flight at once.
    pub enroll_concurrency: usize,
    /// Check-ins and errors of the first seconds (every device's first check-in and first
    /// reports) are counted apart, so the steady state can be read on its own.
    pub warmup: Duration,
}

/// What was measured.
#[derive(Debug, Default, Clone)]
pub struct SimReport {
    /// Check-ins and errors during the warm-up.
    pub warmup_check_ins: usize,
    pub warmup_errors: usize,
    pub enrolled: usize,
    pub enroll_seconds: f64,
    pub check_ins: usize,
    pub reports: usize,
    pub errors: Vec<String>,
    /// Check-in latencies, sorted.
    pub latencies: Vec<Duration>,
}

impl SimReport {
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    /// One line per figure.
    pub fn summary(&self) -> String {
        format!(
            "devices enrolled: {} in {:.1} s\nwarm-up: {} check-ins, {} errors (not counted below)\ncheck-ins: {} (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms)\nreports: {}\nerrors: {}{}",
            self.enrolled,
            self.enroll_seconds,
            self.warmup_check_ins,
            self.warmup_errors,
            self.check_ins,
            self.percentile(50.0).as_secs_f64() * 1000.0,
            self.percentile(99.0).as_secs_f64() * 1000.0,
            self.latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
            self.reports,
            self.errors.len(),
            self.errors
                .iter()
                .take(5)
                .map(|e| format!("\n  {e}"))
                .collect::<String>(),
        )
    }
}

#[derive(Default)]
struct Shared {
    warmup_check_ins: usize,
    warmup_errors: usize,
    check_ins: usize,
    reports: usize,
    errors: Vec<String>,
    latencies: Vec<Duration>,
}

/// Run the simulation.
pub async fn simulate(options: SimOptions) -> anyhow::Result<SimReport> {
    let http = client::http_client();
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(options.enroll_concurrency.max(1)));
    let mut enrollments = Vec::with_capacity(options.devices);
    for i in 0..options.devices {
        let gate = gate.clone();
        let (server, secret) = (options.server.clone(), options.secret.clone());
        enrollments.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            let device = json!({"deviceName": format!("sim-{i:06}"), "operatingSystem": "Linux", "osVersion": "sim"});
            client::enroll(&server, &secret, device, None).await
        }));
    }
    let mut identities = Vec::with_capacity(options.devices);
    let shared = Arc::new(Mutex::new(Shared::default()));
    for e in enrollments {
        match e.await? {
            Ok(enrolled) => identities.push(Identity {
                server: client::server_root(&options.server),
                tenant: enrolled.tenant,
                device_id: enrolled.device_id,
                credential: enrolled.credential,
                enrolled_at: String::new(),
            }),
            Err(err) => shared.lock().await.errors.push(format!("enroll: {err}")),
        }
    }
    let enroll_seconds = started.elapsed().as_secs_f64();
    let steady = Instant::now() + options.warmup;
    let deadline = steady + options.duration;
    let n = identities.len().max(1);
    let mut devices = Vec::with_capacity(identities.len());
    for (i, identity) in identities.into_iter().enumerate() {
        let client = Client::with_http(identity, http.clone());
        let shared = shared.clone();
        let interval = options.check_in_interval;
        // Spread the first check-ins evenly over one interval.
        let offset = interval.mul_f64(i as f64 / n as f64);
        devices.push(tokio::spawn(async move {
            device_loop(client, shared, interval, offset, steady, deadline).await
        }));
    }
    for d in devices {
        d.await?;
    }
    let shared = Arc::try_unwrap(shared)
        .map_err(|_| anyhow::anyhow!("devices still running"))?
        .into_inner();
    let mut latencies = shared.latencies;
    latencies.sort();
    Ok(SimReport {
        warmup_check_ins: shared.warmup_check_ins,
        warmup_errors: shared.warmup_errors,
        enrolled: n.min(options.devices),
        enroll_seconds,
        check_ins: shared.check_ins,
        reports: shared.reports,
        errors: shared.errors,
        latencies,
    })
}

async fn device_loop(
    client: Client,
    shared: Arc<Mutex<Shared>>,
    interval: Duration,
    offset: Duration,
    steady: Instant,
    deadline: Instant,
) {
    tokio::time::sleep(offset).await;
    let tz = TimeZone::UTC;
    let assigned_at = Timestamp::now();
    let mut etag: Option<String> = None;
    let mut scripts: Vec<AssignedScript> = Vec::new();
    let mut last_runs: std::collections::HashMap<String, Timestamp> = Default::default();
    while Instant::now() < deadline {
        let begun = Instant::now();
        match client.check_in(etag.as_deref()).await {
            Ok(answer) => {
                let took = begun.elapsed();
                let mut s = shared.lock().await;
                if begun < steady {
                    s.warmup_check_ins += 1;
                } else {
                    s.check_ins += 1;
                    s.latencies.push(took);
                }
                drop(s);
                etag = Some(answer.etag);
                if let Some(list) = answer.scripts {
                    scripts = list;
                }
            }
            Err(e) => {
                let mut s = shared.lock().await;
                if begun < steady {
                    s.warmup_errors += 1;
                } else {
                    s.errors.push(format!("check-in: {e}"));
                }
            }
        }
        for script in &scripts {
            let schedule = schedule::parse(script.run_schedule.as_ref())
                .unwrap_or(schedule::Schedule::Default);
            let last = last_runs.get(&script.id).copied();
            if !schedule::is_due(&schedule, last, assigned_at, Timestamp::now(), &tz) {
                continue;
            }
            // Graph's precision is 100 ns: report milliseconds, as the agent does.
            let now = Timestamp::now()
                .round(jiff::Unit::Millisecond)
                .unwrap_or_else(|_| Timestamp::now());
            let body = json!({
                "detectionState": "success", "remediationState": "unknown",
                "lastStateUpdateDateTime": now.to_string(), "lastSyncDateTime": now.to_string(),
            });
            match client.report(&script.id, &body, last.is_none()).await {
                Ok(()) => shared.lock().await.reports += 1,
                Err(e) => {
                    let mut s = shared.lock().await;
                    if begun < steady {
                        s.warmup_errors += 1;
                    } else {
                        s.errors.push(format!("report: {e}"));
                    }
                }
            }
            last_runs.insert(script.id.clone(), now);
        }
        let jitter = interval.mul_f64((crate::queue::random_u64() % 100) as f64 / 1000.0);
        let next = begun + interval + jitter;
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
    }
}
