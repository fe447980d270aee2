//! Graph's export jobs at the edge (`docs/exports.md`): creating, reading and deleting jobs
//! (`deviceManagement/reports/exportJobs`, on `/beta` and `/v1.0`), the background runner that
//! turns a job into a zip file in the data directory, and the expiring signed link that
//! downloads the file without a token.
//!
//! - **Runner** ([`run`]): every server process runs one. It takes jobs that are `notStarted`, or
//!   `inProgress` under a runner silent for [`LEASE`] (its process died), by an atomic claim in
//!   the database, so on PostgreSQL several processes never run one job twice. A running job
//!   reads its rows a page at a time (`Store::export_rows`, keyset paging, pages sized by bytes)
//!   and hands each page to a blocking thread that writes CSV (RFC 4180) or JSON into a deflated
//!   zip entry: memory stays at a few pages whatever the size of the export. It beats a heartbeat
//!   every [`HEARTBEAT`]; on a graceful stop it gives its jobs back (`notStarted`), so the next
//!   start runs them again; after a crash they run again once their heartbeat is [`LEASE`] old.
//! - **Link**: `{origin}/exports/{jobId}.zip?tenant=…&se=…&sig=…`, where `se` is the expiry in
//!   Unix seconds and `sig` an HMAC-SHA256 of tenant, job and expiry under the database's paging
//!   secret (every process of one database accepts it). Served by [`download`] at the edge,
//!   before authentication; a changed link is 403, an expired one 403, a job or file that is
//!   gone 404.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use remediate_domain::collections::{rules, Collection, EXPORT_JOBS};
use remediate_domain::exports::{
    self as domain, status, Column, ColumnType, ExportRow, ExportSpec, Field, Format, JobChange,
    Localization,
};
use remediate_domain::write::Write;
use remediate_domain::{Instant, Value};
use remediate_store::{EntityRef, StoreError};
use remediate_wire::ErrorKind;
use serde_json::Value as Json;

use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::respond::{ApiResponse, Body};
use crate::urls::enc;
use crate::AppState;

/// A running job says it is alive this often.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A job whose runner has been silent this long is run again by another runner.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a runner looks for jobs nobody told it about (created by another process, or left
/// by a dead one).
const SWEEP: Duration = Duration::from_secs(3);
/// Jobs one process runs at once.
const WORKERS: usize = 2;
/// A page holds at most this many rows, and about this many bytes.
const PAGE_ROWS: usize = 2000;
const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// `1970-01-01T00:00:00Z` in ticks.
const UNIX_EPOCH_TICKS: i64 = 719_162 * 864_000_000_000;
/// The path the download links live under.
const DOWNLOAD_PREFIX: &str = "/exports/";

/// The exports of one server process: where files go, who runs jobs here, how long links live.
pub struct Exports {
    dir: PathBuf,
    runner: String,
    wake: tokio::sync::Notify,
    link_lifetime: Duration,
}

impl Exports {
    /// Files under `dir` (`{data dir}/exports`), links valid for `link_lifetime`.
    pub fn new(dir: PathBuf, link_lifetime: Duration) -> Exports {
        Exports {
            dir,
            runner: uuid::Uuid::new_v4().to_string(),
            wake: tokio::sync::Notify::new(),
            link_lifetime,
        }
    }

    /// Tell the runner a job was created.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The file of a job: `{dir}/{hash of the tenant}/{jobId}.zip`.
    fn file(&self, tenant: &str, id: &str) -> PathBuf {
        let digest = ring::digest::digest(&ring::digest::SHA256, tenant.as_bytes());
        let folder: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // Job ids are `<report>_<guid>`; anything else cannot name a file outside the folder.
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(folder).join(format!("{safe}.zip"))
    }
}

// ------------------------------------------------------------------------------- endpoints

/// `/v1.0/…`: remediate serves only export jobs (and `$metadata`) there. `Ok(None)` for a path
/// outside `/v1.0`, `Ok(Some(rest))` for one it serves, 400 for the rest of `/v1.0`.
pub fn v1_path(path: &str) -> Result<Option<&str>, ApiError> {
    let Some(rest) = path
        .strip_prefix("/v1.0/")
        .or_else(|| (path == "/v1.0").then_some(""))
    else {
        return Ok(None);
    };
    let decoded = percent_encoding::percent_decode_str(rest).decode_utf8_lossy();
    let jobs = "deviceManagement/reports/exportJobs";
    let served = decoded == "$metadata"
        || decoded
            .strip_prefix(jobs)
            .is_some_and(|after| after.is_empty() || after.starts_with(['/', '(']));
    if served {
        Ok(Some(rest))
    } else {
        Err(ApiError::bad_request(format!(
            "Resource not found for the segment '{}'. Under /v1.0 this server serves only export jobs ({jobs}); everything else is under /beta.",
            decoded.split('/').next().unwrap_or("")
        )))
    }
}

/// The base URL without its version (`http://host:port`).
fn origin(base_url: &str) -> String {
    base_url
        .strip_suffix("/beta")
        .or_else(|| base_url.strip_suffix("/v1.0"))
        .unwrap_or(base_url)
        .to_owned()
}

/// Enum members written in another case (`LocalizedValuesAsAdditionalColumn`, as Microsoft's
/// example sends it; `CSV`) become Graph's; anything else is left for the decoder to judge.
fn normalize_enums(body: &[u8]) -> Option<Vec<u8>> {
    let Ok(Json::Object(mut object)) = serde_json::from_slice::<Json>(body) else {
        return None;
    };
    let mut changed = false;
    for (name, members) in [
        ("format", &domain::REPORT_FILE_FORMAT),
        ("localizationType", &domain::EXPORT_LOCALIZATION_TYPE),
    ] {
        if let Some(Json::String(value)) = object.get_mut(name) {
            if let Some((member, _)) = members
                .members
                .iter()
                .find(|(m, _)| m.eq_ignore_ascii_case(value) && *m != value.as_str())
            {
                *value = (*member).to_owned();
                changed = true;
            }
        }
    }
    changed.then(|| serde_json::to_vec(&Json::Object(object)).unwrap_or_default())
}

/// `POST …/exportJobs`: 201 with the job (`notStarted`); the runner is told at once.
pub(crate) async fn create(
    ctx: &Ctx<'_>,
    of: &'static Collection,
    parents: Vec<String>,
) -> Result<ApiResponse, ApiError> {
    ctx.no_options("a create")?;
    crate::ctx::check_json_content_type(&ctx.req.headers)?;
    let normalized = normalize_enums(&ctx.req.body);
    let bytes = normalized.as_deref().unwrap_or(&ctx.req.body);
    let body = remediate_wire::decode_entity_with(of.entity, bytes, &ctx.state.config.limits)?;
    if let Some((name, _)) = body.binds.first() {
        return Err(ApiError::bad_request(format!(
            "'{name}@odata.bind' is not supported on an export job."
        )));
    }
    let write = match rules::create(of, &parents, body.fields, None)? {
        Write::CreateExportJob { record, .. } => Write::CreateExportJob {
            record,
            origin: origin(&ctx.req.base_url),
        },
        other => other,
    };
    let response = ctx
        .created(write, of.context_path(&parents), |record| {
            of.item_path(&[record.id().to_owned()], enc)
        })
        .await?;
    ctx.state.metrics.export_job_status("notStarted");
    ctx.state.exports.wake();
    Ok(response)
}

/// `GET …/exportJobs/{id}`: the job; a failed one also says why, as the instance annotation
/// `status@remediate.reason` (Graph has no property for it).
pub(crate) async fn item(
    ctx: &Ctx<'_>,
    of: &'static Collection,
    keys: &[String],
) -> Result<ApiResponse, ApiError> {
    let mut response = ctx.item(of, keys).await?;
    let Body::Json(bytes) = &mut response.body else {
        return Ok(response);
    };
    let Ok(Json::Object(mut object)) = serde_json::from_slice::<Json>(bytes) else {
        return Ok(response);
    };
    if object.get("status").and_then(Json::as_str) != Some("failed") {
        return Ok(response);
    }
    let id = keys.last().map_or("", String::as_str);
    if let Some(state) = ctx
        .state
        .store
        .export_job_state(&ctx.principal.tenant, id)
        .await?
    {
        let reason = state.reason.unwrap_or_default();
        let mut annotated = serde_json::Map::with_capacity(object.len() + 1);
        for (name, value) in std::mem::take(&mut object) {
            let is_status = name == "status";
            annotated.insert(name, value);
            if is_status {
                annotated.insert(
                    "status@remediate.reason".into(),
                    Json::String(reason.clone()),
                );
            }
        }
        *bytes = serde_json::to_vec(&Json::Object(annotated)).unwrap_or_default();
    }
    Ok(response)
}

/// `DELETE …/exportJobs/{id}`: the job and its file.
pub(crate) async fn delete(
    ctx: &Ctx<'_>,
    of: &'static Collection,
    keys: &[String],
) -> Result<ApiResponse, ApiError> {
    ctx.no_options("a delete")?;
    let response = ctx.write(rules::delete(of, keys)?).await?;
    let id = keys.last().map_or("", String::as_str);
    remove(&ctx.state.exports.file(&ctx.principal.tenant, id));
    Ok(response)
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an export file");
        }
    }
}

// ------------------------------------------------------------------------------- the link

fn signed_text(tenant: &str, id: &str, expires: i64) -> String {
    format!("remediate-export\n{tenant}\n{id}\n{expires}")
}

fn signature(secret: &[u8], tenant: &str, id: &str, expires: i64) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::sign(&key, signed_text(tenant, id, expires).as_bytes())
        .as_ref()
        .to_vec()
}

/// Is `given` the signature of (tenant, id, expires)? (Constant time.)
fn verify(secret: &[u8], tenant: &str, id: &str, expires: i64, given: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, signed_text(tenant, id, expires).as_bytes(), given).is_ok()
}

/// The download link of a job's file, valid until `expires`.
pub fn link(secret: &[u8], origin: &str, tenant: &str, id: &str, expires: Instant) -> String {
    let se = expires.unix_seconds();
    let sig = URL_SAFE_NO_PAD.encode(signature(secret, tenant, id, se));
    let tenant = percent_encoding::utf8_percent_encode(tenant, percent_encoding::NON_ALPHANUMERIC);
    format!(
        "{}{DOWNLOAD_PREFIX}{}.zip?tenant={tenant}&se={se}&sig={sig}",
        origin.trim_end_matches('/'),
        enc(id)
    )
}

/// Is this path a download link's?
pub fn is_download(path: &str) -> bool {
    path.starts_with(DOWNLOAD_PREFIX)
}

/// Serve a download link (no token: the link's signature is the authorization), with the
/// request's ids; errors in Graph's envelope.
pub async fn download(
    state: &AppState,
    method: &http::Method,
    uri: &http::Uri,
    request_id: &str,
    client_request_id: &str,
) -> axum::response::Response {
    let mut response = match serve_download(state, method, uri).await {
        Ok(response) => response,
        Err(error) => {
            let date = Instant::now().to_seconds_string();
            let body = remediate_wire::error::error_json(
                error.kind,
                &error.message,
                &date,
                request_id,
                client_request_id,
            );
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = error.kind.status();
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(remediate_wire::JSON_CONTENT_TYPE),
            );
            for (name, value) in error.headers {
                if let Ok(value) = http::HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
            response
        }
    };
    tracing::info!(status = response.status().as_u16(), "export download");
    let headers = response.headers_mut();
    for (name, value) in [
        ("request-id", request_id),
        ("client-request-id", client_request_id),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Forbidden, message)
}

async fn serve_download(
    state: &AppState,
    method: &http::Method,
    uri: &http::Uri,
) -> Result<axum::response::Response, ApiError> {
    if method != http::Method::GET {
        return Err(ApiError::new(
            ErrorKind::MethodNotAllowed,
            format!("The method '{method}' is not allowed on a download link; use GET."),
        )
        .with_header("allow", "GET".into()));
    }
    let name = uri.path().strip_prefix(DOWNLOAD_PREFIX).unwrap_or("");
    let Some(id) = name.strip_suffix(".zip").filter(|id| !id.contains('/')) else {
        return Err(ApiError::not_found(format!(
            "There is no export file '{name}': download links end in '<jobId>.zip'."
        )));
    };
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned();
    let mut tenant = None;
    let mut se = None;
    let mut sig = None;
    for pair in uri.query().unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8_lossy()
            .into_owned();
        match key {
            "tenant" => tenant = Some(value),
            "se" => se = Some(value),
            "sig" => sig = Some(value),
            _ => {}
        }
    }
    let (Some(tenant), Some(se), Some(sig)) = (tenant, se, sig) else {
        return Err(forbidden(
            "The download link is incomplete: it needs its 'tenant', 'se' and 'sig' parameters, exactly as the export job's 'url' gives them.",
        ));
    };
    let invalid = || {
        forbidden("The download link is not valid: its signature does not match (was the link changed?). Use the export job's 'url' exactly as given.")
    };
    let expires: i64 = se.parse().map_err(|_| invalid())?;
    let given = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
    if !verify(state.store.paging_secret(), &tenant, &id, expires, &given) {
        return Err(invalid());
    }
    if Instant::now().unix_seconds() >= expires {
        let at = Instant::from_ticks(
            expires
                .saturating_mul(10_000_000)
                .saturating_add(UNIX_EPOCH_TICKS),
        )
        .map_or_else(|| expires.to_string(), |t| t.to_seconds_string());
        return Err(forbidden(format!(
            "The download link expired at {at}; create a new export job for a fresh copy."
        )));
    }
    let gone = || {
        ApiError::not_found(format!(
            "The export of the job '{id}' is not available (the job was deleted, or its file is gone)."
        ))
    };
    let key = EntityRef::Item {
        of: &EXPORT_JOBS,
        keys: vec![id.clone()],
    };
    let Some(job) = state.store.get(&tenant, &key).await? else {
        return Err(gone());
    };
    if job.get("status") != &Value::Enum(status::COMPLETED) {
        return Err(gone());
    }
    let path = state.exports.file(&tenant, &id);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(_) => return Err(gone()),
    };
    let length = file.metadata().await.map(|m| m.len()).ok();
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/zip"),
    );
    if let Some(length) = length {
        headers.insert(http::header::CONTENT_LENGTH, length.into());
    }
    if let Ok(value) = http::HeaderValue::from_str(&format!(
        "attachment; filename=\"{}.zip\"",
        id.replace(['"', '\\'], "_")
    )) {
        headers.insert(http::header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

// ------------------------------------------------------------------------------- the runner

/// Run export jobs until `stop` turns true; then give back the jobs still running and return.
pub async fn run(state: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let exports = &state.exports;
    let slots = Arc::new(tokio::sync::Semaphore::new(WORKERS));
    let mut jobs = tokio::task::JoinSet::new();
    let mut last_prune = std::time::Instant::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or_else(std::time::Instant::now);
    loop {
        if *stop.borrow() {
            break;
        }
        if slots.available_permits() > 0 {
            claim_jobs(&state, &slots, &mut jobs, &stop).await;
        }
        if last_prune.elapsed() > Duration::from_secs(600) {
            last_prune = std::time::Instant::now();
            let (dir, keep) = (exports.dir.clone(), exports.link_lifetime);
            let _ = tokio::task::spawn_blocking(move || prune_files(&dir, keep)).await;
        }
        tokio::select! {
            () = exports.wake.notified() => {}
            () = tokio::time::sleep(SWEEP) => {}
            _ = stop.changed() => {}
            Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
        }
    }
    while jobs.join_next().await.is_some() {}
}

async fn claim_jobs(
    state: &Arc<AppState>,
    slots: &Arc<tokio::sync::Semaphore>,
    jobs: &mut tokio::task::JoinSet<()>,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let exports = &state.exports;
    let now = Instant::now();
    let stale_before = Instant::from_ticks(now.ticks() - LEASE.as_secs() as i64 * 10_000_000)
        .unwrap_or(Instant::MIN);
    let candidates = match state.store.export_jobs_to_run(stale_before, 16).await {
        Ok(candidates) => candidates,
        Err(e) => {
            tracing::warn!(error = %e, "looking for export jobs failed; trying again shortly");
            return;
        }
    };
    for (tenant, id) in candidates {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            return;
        };
        let claim = Write::UpdateExportJob {
            id: id.clone(),
            change: JobChange::Claim {
                runner: exports.runner.clone(),
                now,
                stale_before,
            },
        };
        match state.store.write(&tenant, claim).await {
            Ok(_) => {
                state.metrics.export_job_status("inProgress");
                let (state, stop) = (state.clone(), stop.clone());
                jobs.spawn(async move {
                    run_job(&state, &tenant, &id, stop).await;
                    drop(slot);
                });
            }
            // Another runner took it first.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, job = %id, "claiming an export job failed"),
        }
    }
}

/// How a job's run ended, short of failing.
enum Ended {
    Completed(i64),
    /// The server is stopping: the job goes back to `notStarted`.
    Stopped,
    /// The job was deleted, or another runner holds it now.
    Lost,
}

async fn run_job(
    state: &AppState,
    tenant: &str,
    id: &str,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let exports = &state.exports;
    let runner = exports.runner.clone();
    let started = std::time::Instant::now();
    let path = exports.file(tenant, id);
    let change = match export(state, tenant, id, &path, stop).await {
        Ok(Ended::Completed(rows)) => {
            state.metrics.export_job_status("completed");
            tracing::info!(job = %id, rows, elapsed_ms = started.elapsed().as_millis() as u64, "export job completed");
            return;
        }
        Ok(Ended::Lost) => {
            remove(&path);
            return;
        }
        Ok(Ended::Stopped) => JobChange::Release { runner },
        Err(reason) => {
            state.metrics.export_job_status("failed");
            tracing::warn!(job = %id, %reason, "export job failed");
            remove(&path);
            JobChange::Fail { runner, reason }
        }
    };
    let write = Write::UpdateExportJob {
        id: id.to_owned(),
        change,
    };
    if let Err(e) = state.store.write(tenant, write).await {
        tracing::warn!(job = %id, error = %e, "recording the end of an export job failed");
    }
}

fn ticks_after(now: Instant, duration: Duration) -> Instant {
    let ticks = i64::try_from(duration.as_micros())
        .unwrap_or(i64::MAX / 20)
        .saturating_mul(10);
    Instant::from_ticks(now.ticks().saturating_add(ticks)).unwrap_or(now)
}

/// Write the job's file; `Err` is the reason it failed.
async fn export(
    state: &AppState,
    tenant: &str,
    id: &str,
    path: &Path,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Ended, String> {
    let store = &state.store;
    let exports = &state.exports;
    let key = EntityRef::Item {
        of: &EXPORT_JOBS,
        keys: vec![id.to_owned()],
    };
    let failed = |what: &str, e: StoreError| format!("{what} failed: {e}");
    let Some(record) = store
        .get(tenant, &key)
        .await
        .map_err(|e| failed("reading the job", e))?
    else {
        return Ok(Ended::Lost);
    };
    let Some(job) = store
        .export_job_state(tenant, id)
        .await
        .map_err(|e| failed("reading the job", e))?
    else {
        return Ok(Ended::Lost);
    };
    let spec = domain::spec(&record).map_err(|e| e.0)?;
    let folder = path.parent().unwrap_or(&exports.dir).to_owned();
    let part = path.with_extension("zip.part");
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<ExportRow>>(2);
    let entry = format!("{id}.{}", spec.format.extension());
    let writer = {
        let (part, spec) = (part.clone(), spec.clone());
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&folder)
                .map_err(|e| format!("creating {}: {e}", folder.display()))?;
            write_zip(&part, &entry, &spec, receiver)
        })
    };
    let outcome = read_pages(state, tenant, id, &spec, sender, stop).await;
    let written = writer
        .await
        .map_err(|e| format!("the file writer stopped: {e}"))?;
    match outcome {
        Ok(None) => {}
        Ok(Some(ended)) => {
            remove(&part);
            return Ok(ended);
        }
        Err(reason) => {
            remove(&part);
            return Err(reason);
        }
    }
    let rows = match written {
        Ok(rows) => rows,
        Err(reason) => {
            remove(&part);
            return Err(reason);
        }
    };
    std::fs::rename(&part, path).map_err(|e| format!("storing the file failed: {e}"))?;
    let now = Instant::now();
    let expires = ticks_after(now, exports.link_lifetime);
    let url = link(store.paging_secret(), &job.origin, tenant, id, expires);
    let complete = Write::UpdateExportJob {
        id: id.to_owned(),
        change: JobChange::Complete {
            runner: exports.runner.clone(),
            url,
            expires,
            rows,
        },
    };
    match store.write(tenant, complete).await {
        Ok(_) => Ok(Ended::Completed(rows)),
        Err(StoreError::NotFound(_)) => Ok(Ended::Lost),
        Err(e) => Err(failed("recording the completed job", e)),
    }
}

/// Read the pages and hand them to the writer. `Ok(None)`: every row was read.
async fn read_pages(
    state: &AppState,
    tenant: &str,
    id: &str,
    spec: &ExportSpec,
    sender: tokio::sync::mpsc::Sender<Vec<ExportRow>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Ended>, String> {
    let store = &state.store;
    let runner = &state.exports.runner;
    let mut after: Option<(String, String)> = None;
    let mut limit = PAGE_ROWS;
    let mut beat = std::time::Instant::now();
    loop {
        if *stop.borrow() {
            return Ok(Some(Ended::Stopped));
        }
        if beat.elapsed() >= HEARTBEAT {
            beat = std::time::Instant::now();
            let heartbeat = Write::UpdateExportJob {
                id: id.to_owned(),
                change: JobChange::Heartbeat {
                    runner: runner.clone(),
                    now: Instant::now(),
                },
            };
            match store.write(tenant, heartbeat).await {
                Ok(_) => {}
                Err(StoreError::NotFound(_)) => return Ok(Some(Ended::Lost)),
                Err(e) => tracing::warn!(job = %id, error = %e, "an export job's heartbeat failed"),
            }
        }
        let page = store
            .export_rows(tenant, &spec.filter, after.take(), limit)
            .await
            .map_err(|e| format!("reading the rows failed: {e}"))?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        let full = page.len() == limit;
        after = Some((last.policy_id.clone(), last.state_id.clone()));
        // Size the next page by the bytes of this one: pages of large outputs hold fewer rows.
        let bytes: usize = page.iter().map(ExportRow::weight).sum();
        let average = (bytes / page.len()).max(1);
        limit = (PAGE_BYTES / average).clamp(16, PAGE_ROWS);
        if sender.send(page).await.is_err() {
            // The writer stopped: its error says why.
            return Ok(None);
        }
        if !full {
            return Ok(None);
        }
    }
}

/// The zip's entry time: now, in UTC (zip times have no zone).
fn zip_time() -> zip::DateTime {
    let iso = Instant::now().to_seconds_string();
    let n = |range: std::ops::Range<usize>| iso.get(range).and_then(|s| s.parse::<u16>().ok());
    let parts = (n(0..4), n(5..7), n(8..10), n(11..13), n(14..16), n(17..19));
    match parts {
        (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) => {
            zip::DateTime::from_date_and_time(y, mo as u8, d as u8, h as u8, mi as u8, s as u8)
                .unwrap_or_default()
        }
        _ => zip::DateTime::default(),
    }
}

/// Write the rows the reader sends into `part`, a zip holding one deflated `entry`; the number
/// of rows. The file is on disk (`fsync`) before this returns.
fn write_zip(
    part: &Path,
    entry: &str,
    spec: &ExportSpec,
    mut pages: tokio::sync::mpsc::Receiver<Vec<ExportRow>>,
) -> Result<i64, String> {
    let io = |e: std::io::Error| format!("writing the export file failed: {e}");
    let zipped = |e: zip::result::ZipError| format!("writing the export file failed: {e}");
    let file = std::fs::File::create(part).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::with_capacity(256 * 1024, file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .last_modified_time(zip_time())
        .large_file(true);
    zip.start_file(entry, options).map_err(zipped)?;
    let mut out: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut rows: i64 = 0;
    match spec.format {
        Format::Csv => csv_header(&mut out, &spec.columns),
        Format::Json => json_header(&mut out, &spec.columns, spec.localization),
    }
    while let Some(page) = pages.blocking_recv() {
        for row in &page {
            match spec.format {
                Format::Csv => csv_row(&mut out, row, &spec.columns, spec.localization),
                Format::Json => json_row(&mut out, row, &spec.columns, spec.localization, rows),
            }
            rows += 1;
        }
        zip.write_all(&out).map_err(io)?;
        out.clear();
    }
    if spec.format == Format::Json {
        let _ = write!(out, "],\"TotalRowCount\":{rows}}}");
    }
    zip.write_all(&out).map_err(io)?;
    let buffered = zip.finish().map_err(zipped)?;
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok(rows)
}

/// An RFC 4180 field: quoted (with quotes doubled) when it holds a quote, a comma, CR or LF.
fn csv_text(out: &mut Vec<u8>, text: &str) {
    if text
        .bytes()
        .any(|b| matches!(b, b'"' | b',' | b'\r' | b'\n'))
    {
        out.push(b'"');
        for b in text.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

fn csv_header(out: &mut Vec<u8>, columns: &[Column]) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_text(out, column.name());
    }
    out.extend_from_slice(b"\r\n");
}

fn csv_row(out: &mut Vec<u8>, row: &ExportRow, columns: &[Column], localization: Localization) {
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match row.field(*column, localization) {
            Field::Empty => {}
            Field::Text(text) => csv_text(out, &text),
            Field::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Field::Time(t) => out.extend_from_slice(t.iso().as_str().as_bytes()),
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The `json` format: Intune's report shape, `{"Schema":[{"Column","PropertyType"}…],
/// "Values":[[…]…],"TotalRowCount":n}` (`docs/exports.md`).
fn json_header(out: &mut Vec<u8>, columns: &[Column], localization: Localization) {
    out.extend_from_slice(b"{\"Schema\":[");
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let kind = match column.value_type(localization) {
            ColumnType::String => "String",
            ColumnType::Int32 => "Int32",
            ColumnType::DateTime => "DateTime",
        };
        let _ = write!(
            out,
            "{{\"Column\":\"{}\",\"PropertyType\":\"{kind}\"}}",
            column.name()
        );
    }
    out.extend_from_slice(b"],\"Values\":[");
}

fn json_row(
    out: &mut Vec<u8>,
    row: &ExportRow,
    columns: &[Column],
    localization: Localization,
    index: i64,
) {
    if index > 0 {
        out.push(b',');
    }
    out.push(b'[');
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match row.field(*column, localization) {
            Field::Empty => out.extend_from_slice(b"null"),
            Field::Text(text) => {
                let _ = serde_json::to_writer(&mut *out, text.as_ref());
            }
            Field::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Field::Time(t) => {
                let _ = write!(out, "\"{}\"", t.iso().as_str());
            }
        }
    }
    out.push(b']');
}

/// Delete files older than the links to them (and leftovers of interrupted runs).
fn prune_files(dir: &Path, keep: Duration) {
    let cutoff = keep + Duration::from_secs(3600);
    let Ok(folders) = std::fs::read_dir(dir) else {
        return;
    };
    for folder in folders.flatten() {
        let Ok(files) = std::fs::read_dir(folder.path()) else {
            continue;
        };
        for file in files.flatten() {
            let old = file
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > cutoff);
            if old {
                remove(&file.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_rfc_4180_needs() {
        let mut out = Vec::new();
        csv_text(&mut out, "plain text");
        out.push(b'|');
        csv_text(&mut out, "say \"hi\", then\r\nbye\n");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain text|\"say \"\"hi\"\", then\r\nbye\n\""
        );
    }

    #[test]
    fn links_are_bound_to_tenant_job_and_expiry() {
        let secret = b"secret";
        let at = Instant::from_ticks(UNIX_EPOCH_TICKS + 1_000 * 10_000_000).unwrap();
        let url = link(secret, "http://h:1/", "t a", "R_1", at);
        assert!(url.starts_with("http://h:1/exports/R_1.zip?tenant=t%20a&se=1000&sig="));
        let a = signature(secret, "t", "R_1", 1000);
        assert_ne!(a, signature(secret, "u", "R_1", 1000));
        assert_ne!(a, signature(secret, "t", "R_2", 1000));
        assert_ne!(a, signature(secret, "t", "R_1", 1001));
        assert_ne!(a, signature(b"other", "t", "R_1", 1000));
        assert!(verify(secret, "t", "R_1", 1000, &a));
        assert!(!verify(secret, "t", "R_1", 1001, &a));
    }

    #[test]
    fn only_export_jobs_are_served_under_v1() {
        assert_eq!(v1_path("/beta/x").unwrap(), None);
        assert_eq!(
            v1_path("/v1.0/deviceManagement/reports/exportJobs('a')").unwrap(),
            Some("deviceManagement/reports/exportJobs('a')")
        );
        assert!(v1_path("/v1.0/deviceManagement/reports/exportJobs")
            .unwrap()
            .is_some());
        assert!(v1_path("/v1.0/$metadata").unwrap().is_some());
        assert!(v1_path("/v1.0/deviceManagement/deviceHealthScripts").is_err());
        assert!(v1_path("/v1.0/deviceManagement/reports/exportJobsX").is_err());
    }

    #[test]
    fn enum_members_in_another_case_become_graphs() {
        let body = br#"{"reportName":"x","localizationType":"LocalizedValuesAsAdditionalColumn","format":"CSV"}"#;
        let fixed: Json = serde_json::from_slice(&normalize_enums(body).unwrap()).unwrap();
        assert_eq!(
            fixed["localizationType"],
            "localizedValuesAsAdditionalColumn"
        );
        assert_eq!(fixed["format"], "csv");
        assert!(normalize_enums(br#"{"format":"csv"}"#).is_none());
        assert!(normalize_enums(b"not json").is_none());
    }
}
