//! The agent's loop: check in (learn the assigned scripts, download content that changed, pick
//! up on-demand runs), run what is due, queue each report on disk before sending it, deliver
//! the queue in order (backing off while the server is away), sleep until the next check-in.
//! `--once` does one pass and exits 0 when everything was delivered, 75 when reports remain.

use std::time::Duration;

use base64::Engine as _;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Unit};
use serde_json::{json, Value};

use crate::client::{AssignedScript, Client, Failure};
use crate::exec::RunSpec;
use crate::outcome::{self, Report, Script};
use crate::queue::{backoff, random_u64, Queue};
use crate::schedule;
use crate::state::{CachedScript, Identity, LastRun, RunLog, ScriptCache, StateDir};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub check_in_interval: Duration,
    pub script_timeout: Duration,
    pub output_chars: usize,
    pub run_as_user: Option<String>,
    /// Keys whose signatures make a script with `enforceSignatureCheck` runnable (`--trust-key`).
    pub trusted_keys: Vec<crate::signature::PublicKey>,
    pub once: bool,
}

/// Exit status of `run --once` when reports remain queued (EX_TEMPFAIL).
pub const EXIT_QUEUED: i32 = 75;

/// Why the loop stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// `--once`: everything delivered (true) or not.
    Once { delivered: bool },
    /// SIGTERM / SIGINT.
    Signalled,
}

fn now() -> Timestamp {
    // Milliseconds: two runs in one second are two runs (the server treats a report with the
    // same lastStateUpdateDateTime and content as a repeat).
    Timestamp::now()
        .round(Unit::Millisecond)
        .unwrap_or_else(|_| Timestamp::now())
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

/// The arguments Intune passes for script parameters: `-Name value` for each.
fn parameters(script: &Value, name: &str) -> Vec<String> {
    let mut args = Vec::new();
    for p in script[name].as_array().into_iter().flatten() {
        if let Some(key) = p["name"].as_str() {
            args.push(format!("-{key}"));
            match &p["defaultValue"] {
                Value::String(s) => args.push(s.clone()),
                Value::Null => {}
                other => args.push(other.to_string()),
            }
        }
    }
    args
}

/// One agent: its state directory, server connection and options.
pub struct Agent {
    state: StateDir,
    client: Client,
    queue: Queue,
    options: Options,
    tz: TimeZone,
}

impl Agent {
    pub fn new(state: StateDir, identity: Identity, options: Options) -> anyhow::Result<Agent> {
        let queue = state.queue()?;
        Ok(Agent {
            client: Client::new(identity),
            queue,
            state,
            options,
            tz: TimeZone::system(),
        })
    }

    /// Run until SIGTERM (or one pass with `--once`).
    pub async fn run(&self) -> anyhow::Result<Stopped> {
        let mut stop = Box::pin(shutdown());
        let mut attempt = 0u32;
        loop {
            let on_demand = match self.check_in().await {
                Ok(list) => list,
                Err(Failure::Revoked(message)) => {
                    anyhow::bail!("the server refused this device's credential: {message} (enroll again with a new secret)")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "check-in failed; running the scripts already known");
                    Vec::new()
                }
            };
            self.run_due(&on_demand).await?;
            let delivered = match self.deliver().await {
                Ok(()) => {
                    attempt = 0;
                    true
                }
                Err(Failure::Revoked(message)) => {
                    anyhow::bail!("the server refused this device's credential: {message}")
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = self.queue.len().unwrap_or(0), "reports stay queued");
                    false
                }
            };
            if self.options.once {
                return Ok(Stopped::Once { delivered });
            }
            // Jittered check-in; sooner (with backoff) while reports wait.
            let interval = self.options.check_in_interval;
            let jitter =
                Duration::from_millis(random_u64() % (interval.as_millis() as u64 / 10 + 1));
            let wait = if delivered {
                interval + jitter
            } else {
                attempt += 1;
                backoff(attempt, None, random_u64()).min(interval)
            };
            tokio::select! {
                _ = &mut stop => return Ok(Stopped::Signalled),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Check in, refresh the script cache, and return the on-demand runs asked for.
    async fn check_in(&self) -> Result<Vec<String>, Failure> {
        let mut cache = self.state.scripts().map_err(local)?;
        let answer = self.client.check_in(cache.etag.as_deref()).await?;
        if let Some(listed) = answer.scripts {
            let mut fresh = Vec::with_capacity(listed.len());
            for assigned in listed {
                fresh.push(self.refresh(&cache, assigned).await?);
            }
            let mut runs = self.state.runs().map_err(local)?;
            runs.runs.retain(|id, _| fresh.iter().any(|s| &s.id == id));
            self.state.save_runs(&runs).map_err(local)?;
            cache = ScriptCache {
                etag: Some(answer.etag),
                scripts: fresh,
            };
            self.state.save_scripts(&cache).map_err(local)?;
            tracing::info!(scripts = cache.scripts.len(), "assigned scripts updated");
        }
        Ok(answer.pending_on_demand)
    }

    /// The cached form of an assigned script: content downloaded only when it changed.
    async fn refresh(
        &self,
        cache: &ScriptCache,
        assigned: AssignedScript,
    ) -> Result<CachedScript, Failure> {
        let known = cache.scripts.iter().find(|s| s.id == assigned.id);
        let unchanged = known
            .filter(|s| s.version == assigned.version && s.last_modified == assigned.last_modified);
        let (detection, remediation, detection_args, remediation_args, display_name) =
            match unchanged {
                Some(s) => (
                    s.detection.clone(),
                    s.remediation.clone(),
                    s.detection_args.clone(),
                    s.remediation_args.clone(),
                    s.display_name.clone(),
                ),
                None => {
                    let item = self.client.script(&assigned.id).await?;
                    tracing::info!(script = %assigned.id, version = %assigned.version, "script content downloaded");
                    (
                        item["detectionScriptContent"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        item["remediationScriptContent"]
                            .as_str()
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned),
                        parameters(&item, "detectionScriptParameters"),
                        parameters(&item, "remediationScriptParameters"),
                        item["displayName"].as_str().map(str::to_owned),
                    )
                }
            };
        Ok(CachedScript {
            id: assigned.id,
            version: assigned.version,
            last_modified: assigned.last_modified,
            display_name,
            detection,
            remediation,
            run_remediation: assigned.run_remediation,
            run_schedule: assigned.run_schedule,
            run_as_account: assigned.run_as_account,
            enforce_signature_check: assigned.enforce_signature_check,
            detection_args,
            remediation_args,
            assigned_at: known.map_or_else(|| now().to_string(), |s| s.assigned_at.clone()),
        })
    }

    /// Run every script that is due (or asked for on demand); report new ones as pending.
    async fn run_due(&self, on_demand: &[String]) -> anyhow::Result<()> {
        let cache = self.state.scripts()?;
        let mut runs = self.state.runs()?;
        for script in &cache.scripts {
            let schedule = match schedule::parse(script.run_schedule.as_ref()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(script = %script.id, error = %e, "unreadable runSchedule: every 24 hours");
                    schedule::Schedule::Default
                }
            };
            let last = runs.runs.get(&script.id);
            let last_run = last.and_then(|r| parse_time(&r.finished_at));
            let assigned = parse_time(&script.assigned_at).unwrap_or_else(now);
            let asked = on_demand.iter().any(|id| id == &script.id);
            let due = asked || schedule::is_due(&schedule, last_run, assigned, now(), &self.tz);
            if !due {
                if last.is_none() {
                    // A newly assigned script waits for its first run: report it pending once.
                    let next = schedule::next_due(&schedule, None, assigned, &self.tz);
                    self.queue_pending(&script.id, next, &mut runs)?;
                }
                continue;
            }
            let started = std::time::Instant::now();
            let report = self.execute(script).await;
            let finished = now();
            let next = schedule::next_due(&schedule, Some(finished), assigned, &self.tz);
            tracing::info!(
                script = %script.id,
                duration_ms = started.elapsed().as_millis() as u64,
                detection = report.detection_state,
                remediation = report.remediation_state,
                on_demand = asked,
                "script run"
            );
            let body = report_body(&report, finished, next);
            self.queue.push(&script.id, body)?;
            runs.runs.insert(
                script.id.clone(),
                LastRun {
                    finished_at: finished.to_string(),
                    detection_state: report.detection_state.to_owned(),
                    remediation_state: report.remediation_state.to_owned(),
                    reported: last.is_some_and(|l| l.reported),
                },
            );
            self.state.save_runs(&runs)?;
        }
        Ok(())
    }

    fn queue_pending(
        &self,
        script_id: &str,
        next: Option<Timestamp>,
        runs: &mut RunLog,
    ) -> anyhow::Result<()> {
        let at = now();
        let mut body = json!({
            "detectionState": "pending",
            "remediationState": "unknown",
            "lastStateUpdateDateTime": at.to_string(),
            "lastSyncDateTime": at.to_string(),
        });
        if let Some(next) = next {
            body["expectedStateUpdateDateTime"] = json!(next.to_string());
        }
        self.queue.push(script_id, body)?;
        // Not a run: the log remembers the pending report, not a finished run time.
        runs.runs.insert(
            script_id.to_owned(),
            LastRun {
                finished_at: String::new(),
                detection_state: "pending".into(),
                remediation_state: "unknown".into(),
                reported: false,
            },
        );
        self.state.save_runs(runs)?;
        Ok(())
    }

    /// Run a script (detect, maybe remediate, detect again) or say why it cannot run.
    async fn execute(&self, script: &CachedScript) -> Report {
        let decode = |b64: &str| base64::engine::general_purpose::STANDARD.decode(b64.trim());
        let refuse = |why: String| Report::cannot_run(why);
        let run_as = match (script.run_as_account.as_str(), &self.options.run_as_user) {
            ("user", None) => {
                return refuse("The script runs as the logged-on user (runAsAccount 'user'), but the agent has no --run-as-user; it was not run.".into())
            }
            ("user", Some(name)) => match crate::exec::lookup_user(name) {
                Ok(user) => Some(user),
                Err(e) => return refuse(format!("--run-as-user {name}: {e}")),
            },
            _ => None,
        };
        let Ok(detection) = decode(&script.detection) else {
            return refuse("The detection script content is not valid base64.".into());
        };
        let remediation = match &script.remediation {
            Some(text) => match decode(text) {
                Ok(bytes) if !bytes.is_empty() => Some(bytes),
                Ok(_) => None,
                Err(_) => {
                    return refuse("The remediation script content is not valid base64.".into())
                }
            },
            None => None,
        };
        // enforceSignatureCheck: both scripts must carry a valid signature by a trusted key;
        // what runs is the content signed (without the signature line). Otherwise a signature
        // line is just a comment.
        let (detection, remediation) = if script.enforce_signature_check {
            let check = |which: &str, content: &[u8]| {
                crate::signature::verify(content, &self.options.trusted_keys).map_err(|why| {
                    format!(
                        "The script requires a signature check (enforceSignatureCheck), and the \
                         {which} script failed it: {why}. It was not run."
                    )
                })
            };
            let detection = match check("detection", &detection) {
                Ok(content) => content,
                Err(why) => return refuse(why),
            };
            let remediation = match remediation.as_deref().map(|r| check("remediation", r)) {
                Some(Err(why)) => return refuse(why),
                Some(Ok(content)) => Some(content),
                None => None,
            };
            (detection, remediation)
        } else {
            (detection, remediation)
        };
        let spec = RunSpec {
            content: Vec::new(),
            args: Vec::new(),
            timeout: self.options.script_timeout,
            run_as,
            work_dir: self.state.work_dir(),
            output_chars: self.options.output_chars,
            env: vec![("REMEDIATE_SCRIPT_ID".into(), script.id.clone())],
        };
        outcome::run(
            &Script {
                detection,
                remediation,
                run_remediation: script.run_remediation,
                detection_args: script.detection_args.clone(),
                remediation_args: script.remediation_args.clone(),
            },
            &spec,
        )
        .await
    }

    /// Deliver queued reports in order until the queue is empty or the server is away.
    async fn deliver(&self) -> Result<(), Failure> {
        while let Some(report) = self.queue.peek().map_err(local)? {
            let mut runs = self.state.runs().map_err(local)?;
            let first = !runs.runs.get(&report.script_id).is_some_and(|r| r.reported);
            match self
                .client
                .report(&report.script_id, &report.body, first)
                .await
            {
                Ok(()) => {}
                Err(Failure::Rejected { status, message }) => {
                    // Retrying cannot help (the script is gone, or the report is refused): it
                    // is dropped, loudly.
                    tracing::error!(script = %report.script_id, status, %message, "report refused by the server; dropped");
                }
                Err(other) => return Err(other),
            }
            if let Some(run) = runs.runs.get_mut(&report.script_id) {
                run.reported = true;
                self.state.save_runs(&runs).map_err(local)?;
            }
            self.queue.remove(report.seq).map_err(local)?;
        }
        Ok(())
    }

    /// Queued reports (for `status`).
    pub fn queued(&self) -> usize {
        self.queue.len().unwrap_or(0)
    }
}

/// A local failure (the state directory) as a failure that stops the pass.
fn local(e: anyhow::Error) -> Failure {
    Failure::Rejected {
        status: 0,
        message: format!("state directory: {e:#}"),
    }
}

/// The run-state JSON of a report (the seed's fields).
pub fn report_body(report: &Report, finished: Timestamp, next: Option<Timestamp>) -> Value {
    let mut body = json!({
        "detectionState": report.detection_state,
        "remediationState": report.remediation_state,
        "lastStateUpdateDateTime": finished.to_string(),
        "lastSyncDateTime": finished.to_string(),
        "preRemediationDetectionScriptOutput": report.pre_detection_output,
        "preRemediationDetectionScriptError": report.pre_detection_error,
        "remediationScriptError": report.remediation_error,
        "postRemediationDetectionScriptOutput": report.post_detection_output,
        "postRemediationDetectionScriptError": report.post_detection_error,
    });
    body["expectedStateUpdateDateTime"] = match next {
        Some(next) => json!(next.to_string()),
        None => Value::Null,
    };
    body
}

/// SIGTERM or SIGINT.
async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
