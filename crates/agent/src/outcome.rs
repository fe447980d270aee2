//! Detect → remediate → detect again, mapped to Graph's `detectionState` (runState) and
//! `remediationState` and to the five output fields of a `deviceHealthScriptDeviceState`
//! (`docs/agent-runs.md`, "Outcome").
//!
//! | detection | remediation | detection again | detectionState | remediationState |
//! |---|---|---|---|---|
//! | exit 0 | not run | – | success | unknown |
//! | exit 1 | not allowed | – | fail | skipped |
//! | exit 1 | exit 0 | exit 0 | fail | success |
//! | exit 1 | exit 0 | exit 1, anything else, or not run | fail | remediationFailed |
//! | exit 1 | other exit, signal, timeout, cannot start, not applicable | – | fail | scriptError |
//! | other exit, signal, timeout or cannot start | not run | – | scriptError | unknown |
//! | not applicable (no pwsh) | not run | – | notApplicable | unknown |

use crate::exec::{run_script, Exit, RunResult, RunSpec};

/// One script pair as assigned to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub detection: Vec<u8>,
    /// `None`, empty or only white space: there is nothing to remediate with.
    pub remediation: Option<Vec<u8>>,
    /// Remediation is allowed (Graph: the assignment's `runRemediationScript`).
    pub run_remediation: bool,
    pub detection_args: Vec<String>,
    pub remediation_args: Vec<String>,
}

/// What one run reports: Graph's member names and output fields. An output field is `None`
/// when its script did not run or said nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub detection_state: &'static str,
    pub remediation_state: &'static str,
    pub pre_detection_output: Option<String>,
    pub pre_detection_error: Option<String>,
    pub remediation_error: Option<String>,
    pub post_detection_output: Option<String>,
    pub post_detection_error: Option<String>,
}

impl Report {
    /// A script the agent refuses or is unable to run at all (unsupported settings,
    /// undecodable content): detectionState `scriptError`, remediationState `unknown`, the
    /// reason in the pre-detection error field.
    pub fn cannot_run(why: String) -> Report {
        Report {
            detection_state: "scriptError",
            remediation_state: "unknown",
            pre_detection_output: None,
            pre_detection_error: Some(format!("[remediate: {why}]")),
            remediation_error: None,
            post_detection_output: None,
            post_detection_error: None,
        }
    }
}

/// Runs detection, then (non-compliant and allowed) remediation, then (remediation exited
/// 0) detection again. `base` gives everything but the content and arguments, which are
/// replaced per run.
pub async fn run(script: &Script, base: &RunSpec) -> Report {
    let with = |content: &[u8], args: &[String]| RunSpec {
        content: content.to_vec(),
        args: args.to_vec(),
        ..base.clone()
    };
    let remediation = script
        .remediation
        .as_deref()
        .filter(|content| !content.iter().all(u8::is_ascii_whitespace));
    let allowed = script.run_remediation && remediation.is_some();

    let detection = run_script(&with(&script.detection, &script.detection_args)).await;
    let mut remediated = None;
    let mut again = None;
    if let (Exit::Code(1), true, Some(content)) = (&detection.exit, allowed, remediation) {
        let result = run_script(&with(content, &script.remediation_args)).await;
        if result.exit == Exit::Code(0) {
            again = Some(run_script(&with(&script.detection, &script.detection_args)).await);
        }
        remediated = Some(result);
    }
    let (detection_state, remediation_state) =
        map(&detection, remediated.as_ref(), again.as_ref(), allowed);
    Report {
        detection_state,
        remediation_state,
        pre_detection_output: non_empty(&detection.stdout),
        pre_detection_error: error_text(&detection, "detection", DETECTION_CODES),
        remediation_error: remediated
            .as_ref()
            .and_then(|r| error_text(r, "remediation", "0 (done)")),
        post_detection_output: again.as_ref().and_then(|r| non_empty(&r.stdout)),
        post_detection_error: again
            .as_ref()
            .and_then(|r| error_text(r, "detection", DETECTION_CODES)),
    }
}

const DETECTION_CODES: &str = "0 (compliant) or 1 (not compliant)";

/// The outcome table over three results: the first detection, the remediation (`None`: not
/// run) and the second detection (`None`: not run). `allowed` is false when remediation may
/// not run (not enabled, or no remediation script); `allowed` with no remediation result is
/// taken as not allowed.
pub fn map(
    detection: &RunResult,
    remediation: Option<&RunResult>,
    again: Option<&RunResult>,
    allowed: bool,
) -> (&'static str, &'static str) {
    match (&detection.exit, remediation.filter(|_| allowed)) {
        (Exit::Code(0), _) => ("success", "unknown"),
        (Exit::NotApplicable(_), _) => ("notApplicable", "unknown"),
        (Exit::Code(1), None) => ("fail", "skipped"),
        (Exit::Code(1), Some(remediation)) => match (&remediation.exit, again.map(|r| &r.exit)) {
            (Exit::Code(0), Some(Exit::Code(0))) => ("fail", "success"),
            // Ran, but the problem is not confirmed gone: still there (exit 1), or the second
            // detection errored, timed out or did not run — its error field says which.
            (Exit::Code(0), _) => ("fail", "remediationFailed"),
            _ => ("fail", "scriptError"),
        },
        (Exit::Code(_) | Exit::Signal(_) | Exit::Timeout | Exit::CannotStart(_), _) => {
            ("scriptError", "unknown")
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// stderr, followed by the agent's reason when the run did not end with an expected code.
fn error_text(result: &RunResult, which: &str, expected: &str) -> Option<String> {
    let reason = match &result.exit {
        Exit::Code(0) => None,
        Exit::Code(1) if which == "detection" => None,
        Exit::Code(code) => Some(format!(
            "the {which} script exited with code {code}; expected {expected}"
        )),
        Exit::Signal(signal) => Some(format!("the {which} script was killed by signal {signal}")),
        Exit::Timeout => Some(format!(
            "the {which} script ran longer than the timeout and was stopped (its process group \
             was killed)"
        )),
        Exit::CannotStart(why) => Some(format!("the {which} script could not start: {why}")),
        Exit::NotApplicable(why) => Some(format!("the {which} script does not apply: {why}")),
    };
    match reason {
        None => non_empty(&result.stderr),
        Some(reason) => {
            let mut text = result.stderr.clone();
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!("[remediate: {reason}]"));
            Some(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn result(exit: Exit) -> RunResult {
        RunResult {
            exit,
            stdout: String::new(),
            stderr: String::new(),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn mapping_table() {
        use Exit::*;
        let timeout = || Timeout;
        let cannot = || CannotStart("no interpreter".into());
        let na = || NotApplicable("no pwsh".into());
        // (detection, remediation, detection again, allowed) → (detectionState, remediationState)
        #[allow(clippy::type_complexity)]
        let rows: Vec<(Exit, Option<Exit>, Option<Exit>, bool, (&str, &str))> = vec![
            // exit 0 — not run.
            (Code(0), None, None, true, ("success", "unknown")),
            (Code(0), None, None, false, ("success", "unknown")),
            // exit 1 — not allowed.
            (Code(1), None, None, false, ("fail", "skipped")),
            (
                Code(1),
                Some(Code(0)),
                Some(Code(0)),
                false,
                ("fail", "skipped"),
            ),
            (Code(1), None, None, true, ("fail", "skipped")),
            // exit 1 — exit 0 — exit 0.
            (
                Code(1),
                Some(Code(0)),
                Some(Code(0)),
                true,
                ("fail", "success"),
            ),
            // exit 1 — exit 0 — exit 1 (and, as decided, anything else or nothing).
            (
                Code(1),
                Some(Code(0)),
                Some(Code(1)),
                true,
                ("fail", "remediationFailed"),
            ),
            (
                Code(1),
                Some(Code(0)),
                Some(Code(2)),
                true,
                ("fail", "remediationFailed"),
            ),
            (
                Code(1),
                Some(Code(0)),
                Some(Signal(9)),
                true,
                ("fail", "remediationFailed"),
            ),
            (
                Code(1),
                Some(Code(0)),
                Some(timeout()),
                true,
                ("fail", "remediationFailed"),
            ),
            (
                Code(1),
                Some(Code(0)),
                Some(cannot()),
                true,
                ("fail", "remediationFailed"),
            ),
            (
                Code(1),
                Some(Code(0)),
                Some(na()),
                true,
                ("fail", "remediationFailed"),
            ),
            (
                Code(1),
                Some(Code(0)),
                None,
                true,
                ("fail", "remediationFailed"),
            ),
            // exit 1 — non-zero exit, timeout or cannot start.
            (Code(1), Some(Code(1)), None, true, ("fail", "scriptError")),
            (Code(1), Some(Code(2)), None, true, ("fail", "scriptError")),
            (Code(1), Some(Code(-1)), None, true, ("fail", "scriptError")),
            (
                Code(1),
                Some(Signal(15)),
                None,
                true,
                ("fail", "scriptError"),
            ),
            (
                Code(1),
                Some(timeout()),
                None,
                true,
                ("fail", "scriptError"),
            ),
            (Code(1), Some(cannot()), None, true, ("fail", "scriptError")),
            (Code(1), Some(na()), None, true, ("fail", "scriptError")),
            // other exit, timeout or cannot start — not run.
            (Code(2), None, None, true, ("scriptError", "unknown")),
            (Code(255), None, None, true, ("scriptError", "unknown")),
            (Code(-1), None, None, false, ("scriptError", "unknown")),
            (Signal(9), None, None, true, ("scriptError", "unknown")),
            (timeout(), None, None, true, ("scriptError", "unknown")),
            (cannot(), None, None, true, ("scriptError", "unknown")),
            // not applicable (no pwsh).
            (na(), None, None, true, ("notApplicable", "unknown")),
        ];
        for (detection, remediation, again, allowed, want) in rows {
            let label = format!("{detection:?} / {remediation:?} / {again:?} / allowed {allowed}");
            let remediation = remediation.map(result);
            let again = again.map(result);
            let got = map(
                &result(detection),
                remediation.as_ref(),
                again.as_ref(),
                allowed,
            );
            assert_eq!(got, want, "{label}");
        }
    }

    #[test]
    fn cannot_run_is_a_script_error_with_the_reason() {
        let report = Report::cannot_run("no signature checks".into());
        assert_eq!(
            (report.detection_state, report.remediation_state),
            ("scriptError", "unknown")
        );
        assert_eq!(
            report.pre_detection_error.as_deref(),
            Some("[remediate: no signature checks]")
        );
    }

    #[test]
    fn error_fields_carry_the_reason() {
        let mut r = result(Exit::Timeout);
        r.stderr = "partial".into();
        let text = error_text(&r, "remediation", "0").unwrap();
        assert!(
            text.starts_with(
                "partial\n[remediate: the remediation script ran longer than the timeout"
            ),
            "{text}"
        );
        let r = result(Exit::CannotStart("no /usr/bin/foo".into()));
        assert!(error_text(&r, "detection", DETECTION_CODES)
            .unwrap()
            .contains("could not start: no /usr/bin/foo"));
        let r = result(Exit::Code(1));
        assert_eq!(error_text(&r, "detection", DETECTION_CODES), None);
        let r = result(Exit::Code(1));
        assert!(error_text(&r, "remediation", "0 (done)")
            .unwrap()
            .contains("exited with code 1"));
        let mut r = result(Exit::Code(0));
        r.stderr = "warning\n".into();
        assert_eq!(
            error_text(&r, "detection", DETECTION_CODES).as_deref(),
            Some("warning\n")
        );
    }

    fn base() -> (RunSpec, PathBuf) {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "remediate-outcome-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = RunSpec {
            content: vec![],
            args: vec![],
            timeout: Duration::from_secs(30),
            run_as: None,
            work_dir: dir.join("work"),
            output_chars: 2048,
            env: vec![("STATE".into(), dir.join("state").display().to_string())],
        };
        (spec, dir)
    }

    fn script(detection: &str, remediation: Option<&str>, run_remediation: bool) -> Script {
        Script {
            detection: detection.as_bytes().to_vec(),
            remediation: remediation.map(|r| r.as_bytes().to_vec()),
            run_remediation,
            detection_args: vec![],
            remediation_args: vec![],
        }
    }

    /// Compliant when the file $STATE exists.
    const DETECT: &str = "if [ -e \"$STATE\" ]; then echo compliant; exit 0; fi\necho missing; echo 'no state' >&2; exit 1";

    #[tokio::test]
    async fn real_runs() {
        // Compliant.
        let (spec, dir) = base();
        std::fs::write(dir.join("state"), "").unwrap();
        let report = run(&script(DETECT, Some("touch \"$STATE\""), true), &spec).await;
        assert_eq!(
            report,
            Report {
                detection_state: "success",
                remediation_state: "unknown",
                pre_detection_output: Some("compliant\n".into()),
                pre_detection_error: None,
                remediation_error: None,
                post_detection_output: None,
                post_detection_error: None,
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // Not compliant, fixed.
        let (spec, dir) = base();
        let report = run(
            &script(DETECT, Some("echo fixing >&2; touch \"$STATE\""), true),
            &spec,
        )
        .await;
        assert_eq!(
            report,
            Report {
                detection_state: "fail",
                remediation_state: "success",
                pre_detection_output: Some("missing\n".into()),
                pre_detection_error: Some("no state\n".into()),
                remediation_error: Some("fixing\n".into()),
                post_detection_output: Some("compliant\n".into()),
                post_detection_error: None,
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();

        // Not compliant, remediation exits 0 but does not fix it.
        let (spec, dir) = base();
        let report = run(&script(DETECT, Some("true"), true), &spec).await;
        assert_eq!(
            (report.detection_state, report.remediation_state),
            ("fail", "remediationFailed")
        );
        assert_eq!(report.post_detection_output.as_deref(), Some("missing\n"));
        assert_eq!(report.post_detection_error.as_deref(), Some("no state\n"));
        std::fs::remove_dir_all(&dir).unwrap();

        // Not allowed: disabled, absent, or blank remediation.
        for s in [
            script(DETECT, Some("touch \"$STATE\""), false),
            script(DETECT, None, true),
            script(DETECT, Some(" \n"), true),
        ] {
            let (spec, dir) = base();
            let report = run(&s, &spec).await;
            assert_eq!(
                (report.detection_state, report.remediation_state),
                ("fail", "skipped")
            );
            assert!(!dir.join("state").exists());
            assert_eq!(report.remediation_error, None);
            std::fs::remove_dir_all(&dir).unwrap();
        }

        // Remediation fails.
        let (spec, dir) = base();
        let report = run(
            &script(DETECT, Some("echo broken >&2; exit 5"), true),
            &spec,
        )
        .await;
        assert_eq!(
            (report.detection_state, report.remediation_state),
            ("fail", "scriptError")
        );
        assert_eq!(
            report.remediation_error.as_deref(),
            Some(
                "broken\n[remediate: the remediation script exited with code 5; expected 0 (done)]"
            )
        );
        assert_eq!(report.post_detection_output, None);
        std::fs::remove_dir_all(&dir).unwrap();

        // Remediation times out.
        let (mut spec, dir) = base();
        spec.timeout = Duration::from_millis(500);
        let report = run(&script(DETECT, Some("sleep 30"), true), &spec).await;
        assert_eq!(
            (report.detection_state, report.remediation_state),
            ("fail", "scriptError")
        );
        assert!(report.remediation_error.unwrap().contains("timeout"));
        std::fs::remove_dir_all(&dir).unwrap();

        // Detection errors: no remediation.
        let (spec, dir) = base();
        let report = run(
            &script("echo oops >&2; exit 7", Some("touch \"$STATE\""), true),
            &spec,
        )
        .await;
        assert_eq!(
            (report.detection_state, report.remediation_state),
            ("scriptError", "unknown")
        );
        assert!(report
            .pre_detection_error
            .unwrap()
            .starts_with("oops\n[remediate: the detection script exited with code 7"));
        assert!(!dir.join("state").exists());
        std::fs::remove_dir_all(&dir).unwrap();

        // Detection cannot start.
        let (spec, dir) = base();
        let report = run(
            &script("#!/usr/bin/no-such-shell\nexit 0", None, true),
            &spec,
        )
        .await;
        assert_eq!(
            (report.detection_state, report.remediation_state),
            ("scriptError", "unknown")
        );
        assert!(report
            .pre_detection_error
            .unwrap()
            .contains("could not start"));
        std::fs::remove_dir_all(&dir).unwrap();

        // Arguments reach each script.
        let (spec, dir) = base();
        let mut s = script(
            "[ -e \"$STATE\" ] && { echo \"post $1\"; exit 0; }; echo \"pre $1\"; exit 1",
            Some("echo \"rem $1\" > \"$STATE\"; cat \"$STATE\" >&2"),
            true,
        );
        s.detection_args = vec!["d".into()];
        s.remediation_args = vec!["r".into()];
        let report = run(&s, &spec).await;
        assert_eq!(report.pre_detection_output.as_deref(), Some("pre d\n"));
        assert_eq!(report.remediation_error.as_deref(), Some("rem r\n"));
        assert_eq!(report.post_detection_output.as_deref(), Some("post d\n"));
        assert_eq!(report.remediation_state, "success");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
