//! The dashboard's Export buttons (`docs/dashboard.md`, "Exports"): a form post creates one of
//! Graph's export jobs (`deviceManagement/reports/exportJobs`, `crate::exports`) for the
//! session's tenant, with the permissions the API asks of a create — the script page's device
//! status (`DeviceRunStatesByProactiveRemediation`, `PolicyId eq '…'` and the page's detection
//! and remediation filters) or the overview's everything (`PolicyRunStatesByProactiveRemediation`)
//! — and the job's page shows its status and, once completed, its signed download link. The
//! same runner writes the file as for a job made through the API: every row of the filter, not
//! the rows on screen.

use std::fmt::Write as _;

use remediate_domain::collections::{EXPORT_JOBS, SCRIPTS};
use remediate_domain::exports::{status, Report};
use remediate_domain::model::{REMEDIATION_STATE, RUN_STATE};
use remediate_domain::write::WriteOutcome;
use remediate_domain::Value;
use remediate_store::EntityRef;
use remediate_wire::ErrorKind;

use super::html::{self, attr, enc, esc, Frame};
use super::session::Signed;
use crate::error::ApiError;
use crate::AppState;

/// What the button exports.
pub enum Scope<'a> {
    /// One script's device status, with the page's detection and remediation filters (member
    /// names of `runState` and `remediationState`; empty: any).
    Script {
        id: &'a str,
        detection: &'a str,
        remediation: &'a str,
    },
    /// Every run state of every script of the tenant.
    Everything,
}

/// May this session create export jobs (the API's permission for a create)?
pub fn may_export(signed: &Signed) -> bool {
    signed.may(EXPORT_JOBS.write_permissions)
}

/// The export job's filter for a script's device status with these filters.
pub fn script_filter(id: &str, detection: &str, remediation: &str) -> String {
    let mut filter = format!("(PolicyId eq '{}')", id.replace('\'', "''"));
    if !detection.is_empty() {
        let _ = write!(filter, " and (DetectionStatus eq '{detection}')");
    }
    if !remediation.is_empty() {
        let _ = write!(filter, " and (RemediationStatus eq '{remediation}')");
    }
    filter
}

/// The Export form of a script page (hidden fields carry the page's filters).
pub fn script_form(signed: &Signed, script_id: &str, detection: &str, remediation: &str) -> String {
    let described = match (detection.is_empty(), remediation.is_empty()) {
        (true, true) => "every device of this script".to_owned(),
        _ => {
            let mut parts = Vec::new();
            if !detection.is_empty() {
                parts.push(format!(
                    "detection status {}",
                    html::detection_label(detection).0
                ));
            }
            if !remediation.is_empty() {
                parts.push(format!(
                    "remediation status {}",
                    html::remediation_label(remediation).0
                ));
            }
            format!("the devices with {}", parts.join(" and "))
        }
    };
    format!(
        "<form method=\"post\" action=\"/scripts/{}/export\" class=\"filters\" id=\"export-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"detection\" value=\"{}\"><input type=\"hidden\" name=\"remediation\" value=\"{}\">\
         <div><button type=\"submit\">Export</button></div>\
         <p class=\"note\">A CSV of {} (every row, not only this page; the device-name search is not part of Graph's export filter).</p></form>",
        attr(&enc(script_id)),
        attr(&signed.csrf()),
        attr(detection),
        attr(remediation),
        esc(&described)
    )
}

/// The overview's "Export everything" form.
pub fn everything_form(signed: &Signed) -> String {
    format!(
        "<form method=\"post\" action=\"/export\" class=\"filters\" id=\"export-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <div><button type=\"submit\">Export everything</button></div>\
         <p class=\"note\">A CSV of every script's device status (Graph's PolicyRunStatesByProactiveRemediation report).</p></form>",
        attr(&signed.csrf())
    )
}

/// Create the job (`POST /scripts/{id}/export`, `POST /export`): its id. `base_url` is the base
/// the request reached (`AppState::link_base`), from which the download link is made.
pub async fn create(
    state: &AppState,
    signed: &Signed,
    scope: Scope<'_>,
    base_url: &str,
) -> Result<String, ApiError> {
    signed.principal.require(EXPORT_JOBS.write_permissions)?;
    let tenant = &signed.principal.tenant;
    let body = match scope {
        Scope::Script {
            id,
            detection,
            remediation,
        } => {
            signed.principal.require(SCRIPTS.read_permissions)?;
            if state
                .store
                .get(tenant, &EntityRef::Script(id.to_owned()))
                .await?
                .is_none()
            {
                return Err(ApiError::not_found(format!(
                    "The deviceHealthScript '{id}' does not exist."
                )));
            }
            if !detection.is_empty() && RUN_STATE.value_of(detection).is_none() {
                return Err(ApiError::bad_request(format!(
                    "The detection status '{detection}' is not one of {}.",
                    member_list(RUN_STATE.members)
                )));
            }
            if !remediation.is_empty() && REMEDIATION_STATE.value_of(remediation).is_none() {
                return Err(ApiError::bad_request(format!(
                    "The remediation status '{remediation}' is not one of {}.",
                    member_list(REMEDIATION_STATE.members)
                )));
            }
            serde_json::json!({
                "reportName": Report::DeviceRunStates.name(),
                "filter": script_filter(id, detection, remediation),
                "format": "csv",
            })
        }
        Scope::Everything => serde_json::json!({
            "reportName": Report::PolicyRunStates.name(),
            "format": "csv",
        }),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let decoded =
        remediate_wire::decode_entity_with(EXPORT_JOBS.entity, &bytes, &state.config.limits)?;
    let origin = base_url
        .strip_suffix("/beta")
        .unwrap_or(base_url)
        .to_owned();
    let write = remediate_domain::exports::create_job(decoded.fields, origin)?;
    let WriteOutcome::Created(record) = state.store.write(tenant, write).await? else {
        return Err(ApiError::new(
            ErrorKind::Internal,
            "The create did not return the new export job.",
        ));
    };
    state.metrics.export_job_status("notStarted");
    state.exports.wake();
    Ok(record.id().to_owned())
}

fn member_list(members: &[(&str, i64)]) -> String {
    members
        .iter()
        .map(|(m, _)| format!("'{m}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /export-jobs/{id}`: the job's request and status; once completed, its download link;
/// failed, why. The page does not refresh itself (no script, no meta refresh): a Refresh link.
pub async fn job_page(state: &AppState, signed: &Signed, id: &str) -> Result<String, ApiError> {
    signed.principal.require(EXPORT_JOBS.read_permissions)?;
    let tenant = &signed.principal.tenant;
    let key = EntityRef::Item {
        of: &EXPORT_JOBS,
        keys: vec![id.to_owned()],
    };
    let Some(job) = state.store.get(tenant, &key).await? else {
        return Err(ApiError::not_found(format!(
            "The deviceManagementExportJob '{id}' does not exist."
        )));
    };
    let status_value = match job.get("status") {
        Value::Enum(v) => *v,
        _ => 0,
    };
    let (words, class) = match status_value {
        status::NOT_STARTED => ("Not started", "pending"),
        status::IN_PROGRESS => ("In progress", "pending"),
        status::COMPLETED => ("Completed", "ok"),
        status::FAILED => ("Failed", "error"),
        _ => ("Unknown", "na"),
    };
    let mut body = String::with_capacity(4096);
    body.push_str("<h1>Export</h1>");
    let _ = write!(
        body,
        "<p role=\"status\" id=\"export-status\" data-status=\"{}\">Status: <span class=\"st st-{class}\">{words}</span></p>",
        attr(
            remediate_domain::exports::REPORT_STATUS
                .name_of(status_value)
                .unwrap_or("unknown")
        )
    );
    let path = format!("/export-jobs/{}", enc(id));
    match status_value {
        status::COMPLETED => {
            if let Value::Str(url) = job.get("url") {
                let _ = write!(
                    body,
                    "<p><a id=\"export-download\" href=\"{}\" download>Download {}.zip</a> (a zip holding <code>{}.csv</code>; the link needs no sign-in and works until {}).</p>",
                    attr(url),
                    esc(id),
                    esc(id),
                    html::time(job.get("expirationDateTime"))
                );
            }
        }
        status::FAILED => {
            let reason = state
                .store
                .export_job_state(tenant, id)
                .await?
                .and_then(|s| s.reason)
                .unwrap_or_default();
            let _ = write!(
                body,
                "<p class=\"msg\">The export failed: {}</p>",
                esc(&reason)
            );
        }
        _ => {
            let _ = write!(
                body,
                "<p>The file is being written in the background. <a id=\"export-refresh\" href=\"{}\">Refresh</a> to see whether it is ready.</p>",
                attr(&path)
            );
        }
    }
    body.push_str("<h2>Request</h2><dl class=\"props\">");
    for (label, value) in [
        ("Job id", esc(id)),
        ("Report", html::text(&job, "reportName")),
        ("Filter", html::text(&job, "filter")),
        ("Format", "CSV".to_owned()),
        ("Requested", html::time(job.get("requestDateTime"))),
    ] {
        let _ = write!(body, "<dt>{label}</dt><dd>{value}</dd>");
    }
    body.push_str("</dl>");
    let _ = write!(
        body,
        "<p class=\"note\">The same job is at <code>/beta/deviceManagement/reports/exportJobs/{}</code> in the API.</p>",
        esc(id)
    );
    let frame = Frame {
        tenant,
        csrf: &signed.csrf(),
    };
    Ok(html::page("Export", Some(&frame), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_the_export_grammar() {
        assert_eq!(script_filter("a'b", "", ""), "(PolicyId eq 'a''b')");
        let text = script_filter("s", "fail", "success");
        assert_eq!(
            text,
            "(PolicyId eq 's') and (DetectionStatus eq 'fail') and (RemediationStatus eq 'success')"
        );
        let parsed =
            remediate_domain::exports::parse_filter(Report::DeviceRunStates, Some(&text)).unwrap();
        assert_eq!(parsed.policy.as_deref(), Some("s"));
        assert_eq!(parsed.detection, Some(vec![2]));
        assert_eq!(parsed.remediation, Some(vec![2]));
    }
}
