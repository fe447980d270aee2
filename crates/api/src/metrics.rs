//! `/metrics`: the Prometheus text exposition format (0.0.4), without a token, on the main
//! listener or on its own (`--metrics-listen`, [`serve`]). [`Metrics`] is the registry: what the
//! edge records per request (by route template, never by raw path), the write transactions the
//! store reports (a [`remediate_store::WriteObserver`]), and the hook of export jobs
//! ([`Metrics::export_job_status`]); [`render`] adds what is read at scrape time (in-flight, shed
//! and throttled requests from the guard, the store's pool and two counts from the database).
//!
//! The hot path is parsing the path once more for its template (about half a microsecond in a
//! release build) and a few atomic additions: the label sets are `&'static str`s and a status
//! code (nothing allocated once a series exists), the histograms are fixed buckets of atomics
//! ([`AtomicHistogram`]), and no lock is held across an await. README "Metrics" lists every
//! series.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus_client::encoding::{
    prometheus_text, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use remediate_domain::collections::{Collection, Parent, ASSIGNMENT_FILTERS, DEVICES, SCRIPTS};
use remediate_store::SqlStore;

use crate::respond::{ApiResponse, Body};
use crate::route::{Operation, Route};
use crate::AppState;

/// The `Content-Type` of the answer.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The route label of a request whose path names no route.
pub const UNMATCHED: &str = "(unmatched)";

/// Request latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Writes in one SQLite group commit (at most 256, `store::writer`).
const GROUP_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How recent a managed device's `lastSyncDateTime` must be to count as checked in.
pub const CHECKED_IN_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

type Durations = Family<RouteLabels, AtomicHistogram, fn() -> AtomicHistogram>;

/// The registry of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Durations,
    export_jobs: Family<StatusLabel, Counter>,
    store: Arc<SqlStore>,
    separate_listener: bool,
    /// Scrapes whose database counts could not be read.
    read_failures: Counter,
}

impl Metrics {
    /// The registry of a server on `store` (which from now on reports its write transactions
    /// here). `separate_listener`: `/metrics` is served by [`serve`] on its own address, and the
    /// main listener answers it as any unknown path.
    pub fn new(store: Arc<SqlStore>, separate_listener: bool) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "remediate_http_requests",
            "HTTP requests answered, by route template (the /openapi.json path, without /beta), method and status",
            requests.clone(),
        );
        let durations: Durations =
            Family::new_with_constructor(|| AtomicHistogram::new(LATENCY_BUCKETS));
        registry.register(
            "remediate_http_request_duration_seconds",
            "Time from a request's arrival to its answer being ready, by route template and method",
            durations.clone(),
        );
        let writes = Arc::new(WriteMetrics {
            group_sizes: AtomicHistogram::new(GROUP_BUCKETS),
            durations: AtomicHistogram::new(LATENCY_BUCKETS),
        });
        if store.backend_name() == "sqlite" {
            registry.register(
                "remediate_db_group_commit_writes",
                "Writes committed together in one SQLite group commit (one transaction, one fsync)",
                writes.group_sizes.clone(),
            );
        }
        registry.register(
            "remediate_db_commit_duration_seconds",
            "Write transactions from BEGIN to the end of COMMIT: SQLite one group commit, PostgreSQL one write transaction (each run of a retried one)",
            writes.durations.clone(),
        );
        let export_jobs = Family::<StatusLabel, Counter>::default();
        registry.register(
            "remediate_export_jobs",
            "Export jobs (deviceManagement/reports/exportJobs) that reached each status in this process",
            export_jobs.clone(),
        );
        let read_failures = Counter::default();
        registry.register(
            "remediate_metrics_database_read_failures",
            "Scrapes of /metrics whose database counts could not be read (those series were left out)",
            read_failures.clone(),
        );
        store.observe_writes(writes);
        Metrics {
            registry,
            requests,
            durations,
            export_jobs,
            store,
            separate_listener,
            read_failures,
        }
    }

    /// Is `/metrics` served on its own listener (`--metrics-listen`)?
    pub fn separate_listener(&self) -> bool {
        self.separate_listener
    }

    /// Count one answered request: `route` from [`route_label`], the time since it arrived.
    pub fn request_done(
        &self,
        route: &'static str,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status: status.as_u16(),
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels { route, method })
            .observe(elapsed.as_secs_f64());
    }

    /// The hook of the export jobs: call it once each time a job reaches `status` (e.g.
    /// `notStarted` when created, then `inProgress`, `completed` or `failed`), and it is
    /// counted in `remediate_export_jobs_total{status}`. Only `'static` names, so the labels
    /// stay bounded. Until it is first called the series does not exist.
    pub fn export_job_status(&self, status: &'static str) {
        self.export_jobs
            .get_or_create(&StatusLabel { status })
            .inc();
    }
}

/// The write transactions the store reports ([`remediate_store::WriteObserver`]).
#[derive(Debug)]
pub struct WriteMetrics {
    group_sizes: AtomicHistogram,
    durations: AtomicHistogram,
}

impl remediate_store::WriteObserver for WriteMetrics {
    fn group_committed(&self, writes: usize, duration: Duration) {
        self.group_sizes.observe(writes as f64);
        self.durations.observe(duration.as_secs_f64());
    }

    fn transaction_ended(&self, duration: Duration) {
        self.durations.observe(duration.as_secs_f64());
    }
}

/// A histogram with fixed buckets of atomic counters: observing is one search over the bounds
/// and two atomic additions, without a lock (prometheus-client's own `Histogram` takes a mutex
/// per observation). The buckets are summed at scrape time, so `_count` always equals the
/// `+Inf` bucket.
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<HistogramCells>,
}

#[derive(Debug)]
struct HistogramCells {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of the observations, as `f64` bits.
    sum: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        AtomicHistogram {
            inner: Arc::new(HistogramCells {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    pub fn observe(&self, value: f64) {
        let cells = &self.inner;
        let bucket = cells.bounds.partition_point(|bound| *bound < value);
        cells.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = cells
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.inner.sum.load(Ordering::Relaxed))
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let cells = &self.inner;
        let buckets: Vec<(f64, u64)> = cells
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(cells.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "PUT" => "PUT",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// The route label of a request to the main listener: [`route_label`], except that a path
/// longer than the URI limit (answered 414) is not parsed, and `/metrics` is [`UNMATCHED`] when
/// it is served on its own listener.
pub fn request_route(state: &AppState, path: &str) -> &'static str {
    if path.len() > state.guard.limits.max_uri_bytes
        || (path == "/metrics" && state.metrics.separate_listener)
    {
        return UNMATCHED;
    }
    route_label(path)
}

/// The route label of a request path: the server's own paths as they are (`/healthz`,
/// `/metrics`, `/agent/enroll`, …), the login endpoints with `{tenant}`
/// (`/{tenant}/oauth2/v2.0/token`, …), a `/beta` path as its route's template over the collection
/// declarations, without `/beta` and with `{key}` for each key (the paths of `/openapi.json`,
/// e.g. `/deviceManagement/deviceHealthScripts/{scriptId}/deviceRunStates`), and anything else
/// [`UNMATCHED`]. The labels are bounded by the declarations.
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/healthz" => return "/healthz",
        "/readyz" => return "/readyz",
        "/openapi.json" => return "/openapi.json",
        "/metrics" => return "/metrics",
        "/agent/enroll" => return "/agent/enroll",
        "/agent/token" => return "/agent/token",
        _ => {}
    }
    let rest = match path.strip_prefix("/beta/") {
        Some(rest) => rest,
        None if path == "/beta" => "",
        None => return login_label(path),
    };
    match crate::route::parse(rest) {
        Ok(route) => template(&route),
        Err(_) => UNMATCHED,
    }
}

/// The words of dashboard paths kept in their route label; any other segment is a key
/// (`{id}`).
const DASHBOARD_WORDS: &[&str] = &[
    "login",
    "logout",
    "scripts",
    "devices",
    "run",
    "export",
    "export-jobs",
    "assets",
    "groups",
    "filters",
    "secrets",
    "new",
    "edit",
    "delete",
    "assign",
    "assignments",
    "members",
    "revoke",
    "validate",
    "content",
    "history",
    "rules",
    "check",
    "oidc",
    "callback",
];

/// The route label of a dashboard request (`crate::dashboard`): `dashboard:` and the path with
/// every segment that is not one of the dashboard's words as `{id}` (`dashboard:/scripts/{id}`,
/// `dashboard:/login/{id}`), at most four segments deep (deeper paths are
/// `dashboard:(other)`). The words are a fixed list, so the labels stay bounded.
pub fn dashboard_label(path: &str) -> &'static str {
    static LABELS: OnceLock<RwLock<HashMap<String, &'static str>>> = OnceLock::new();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.len() > 4 {
        return "dashboard:(other)";
    }
    let mut label = String::from("dashboard:");
    for segment in &segments {
        label.push('/');
        if segment.is_empty() {
            continue;
        }
        match DASHBOARD_WORDS.iter().find(|w| **w == *segment) {
            Some(word) => label.push_str(word),
            None => label.push_str("{id}"),
        }
    }
    let labels = LABELS.get_or_init(|| RwLock::new(HashMap::new()));
    if let Some(found) = labels.read().ok().and_then(|l| l.get(&label).copied()) {
        return found;
    }
    let Ok(mut write) = labels.write() else {
        return "dashboard:(other)";
    };
    write
        .entry(label.clone())
        .or_insert_with(|| Box::leak(label.into_boxed_str()))
}

/// The Entra-shaped login endpoints (`crate::entra`), with the tenant as `{tenant}`.
fn login_label(path: &str) -> &'static str {
    let Some((tenant, rest)) = path.trim_start_matches('/').split_once('/') else {
        return UNMATCHED;
    };
    if tenant.is_empty() {
        return UNMATCHED;
    }
    match rest {
        "oauth2/v2.0/token" => "/{tenant}/oauth2/v2.0/token",
        "v2.0/.well-known/openid-configuration" => {
            "/{tenant}/v2.0/.well-known/openid-configuration"
        }
        "discovery/v2.0/keys" => "/{tenant}/discovery/v2.0/keys",
        "discovery/keys" => "/{tenant}/discovery/keys",
        "discovery/instance" => "/{tenant}/discovery/instance",
        _ => UNMATCHED,
    }
}

/// Where a template sits relative to its collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    Collection,
    Item,
    Count,
    /// `{collection}/$ref`.
    Ref,
    /// `{collection}/{key}/$ref`.
    ItemRef,
    /// A name after the collection (a collection-bound action or function).
    OnCollection(&'static str),
    /// A name after an item (a navigation, an action or function, an agent extension).
    OnItem(&'static str),
}

/// The template of a parsed route.
fn template(route: &Route) -> &'static str {
    let (of, shape): (&'static Collection, Shape) = match route {
        Route::Batch => return "/$batch",
        Route::Metadata => return "/$metadata",
        Route::Collection { of, .. } => (of, Shape::Collection),
        Route::Item { of, .. } => (of, Shape::Item),
        Route::Count { of, .. } => (of, Shape::Count),
        Route::Navigation { of, nav, .. } => (of, Shape::OnItem(nav.name)),
        Route::Ref { of, item: None, .. } => (of, Shape::Ref),
        Route::Ref {
            of, item: Some(_), ..
        } => (of, Shape::ItemRef),
        Route::PendingOnDemand { .. } => (&DEVICES, Shape::OnItem("pendingOnDemandRemediations")),
        Route::AgentCheckIn { .. } => (&DEVICES, Shape::OnItem("agentCheckIn")),
        Route::Operation(operation) => match operation {
            Operation::Assign { .. } => (&SCRIPTS, Shape::OnItem("assign")),
            Operation::GetRemediationHistory { .. } => {
                (&SCRIPTS, Shape::OnItem("getRemediationHistory"))
            }
            Operation::GetGlobalScriptHighestAvailableVersion { .. } => (
                &SCRIPTS,
                Shape::OnItem("getGlobalScriptHighestAvailableVersion"),
            ),
            Operation::UpdateGlobalScript { .. } => (&SCRIPTS, Shape::OnItem("updateGlobalScript")),
            Operation::GetRemediationSummary => {
                (&SCRIPTS, Shape::OnCollection("getRemediationSummary"))
            }
            Operation::AreGlobalScriptsAvailable => {
                (&SCRIPTS, Shape::OnCollection("areGlobalScriptsAvailable"))
            }
            Operation::EnableGlobalScripts => {
                (&SCRIPTS, Shape::OnCollection("enableGlobalScripts"))
            }
            Operation::InitiateOnDemandProactiveRemediation { .. } => (
                &DEVICES,
                Shape::OnItem("initiateOnDemandProactiveRemediation"),
            ),
            Operation::ValidateFilter => {
                (&ASSIGNMENT_FILTERS, Shape::OnCollection("validateFilter"))
            }
        },
    };
    interned(of, shape)
}

/// Each template is written once, on its first request, and kept for the life of the process
/// (a bounded set: the declarations' collections times their shapes).
fn interned(of: &'static Collection, shape: Shape) -> &'static str {
    type Table = RwLock<HashMap<(usize, Shape), &'static str>>;
    static TABLE: OnceLock<Table> = OnceLock::new();
    let table = TABLE.get_or_init(Table::default);
    let key = (std::ptr::from_ref(of) as usize, shape);
    if let Some(found) = table.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return found;
    }
    let mut table = table.write().unwrap_or_else(|e| e.into_inner());
    table
        .entry(key)
        .or_insert_with(|| Box::leak(write_template(of, shape).into_boxed_str()))
}

fn write_template(of: &Collection, shape: Shape) -> String {
    let collection = collection_template(of);
    let item = || format!("{collection}/{{{}}}", of.key_param);
    match shape {
        Shape::Collection => collection,
        Shape::Item => item(),
        Shape::Count => format!("{collection}/$count"),
        Shape::Ref => format!("{collection}/$ref"),
        Shape::ItemRef => format!("{}/$ref", item()),
        Shape::OnCollection(name) => format!("{collection}/{name}"),
        Shape::OnItem(name) => format!("{}/{name}", item()),
    }
}

/// `/deviceManagement/deviceHealthScripts/{scriptId}/deviceRunStates` (as `/openapi.json`).
fn collection_template(c: &Collection) -> String {
    match c.parent {
        Parent::Root("") => format!("/{}", c.segment),
        Parent::Root(root) => format!("/{root}/{}", c.segment),
        Parent::Item(parent) => format!(
            "{}/{{{}}}/{}",
            collection_template(parent),
            parent.key_param,
            c.segment
        ),
    }
}

/// The answer to `GET /metrics`.
pub async fn response(state: &AppState) -> ApiResponse {
    ApiResponse {
        status: StatusCode::OK,
        headers: vec![("content-type", CONTENT_TYPE.to_owned())],
        body: Body::Text(render(state).await),
    }
}

/// Every series, in the Prometheus text format: the registry, then what is read at scrape time.
pub async fn render(state: &AppState) -> String {
    let metrics = &state.metrics;
    let now = remediate_domain::Instant::now();
    let window = CHECKED_IN_WINDOW.as_secs() as i64 * 10_000_000;
    let since = remediate_domain::Instant::from_ticks(now.ticks() - window)
        .unwrap_or(remediate_domain::Instant::MIN);
    let counts = match metrics.store.scrape_counts(since).await {
        Ok(counts) => Some(counts),
        Err(e) => {
            metrics.read_failures.inc();
            tracing::warn!(error = %e, "/metrics could not read its counts from the database");
            None
        }
    };
    let mut scrape = Registry::default();
    scrape.register(
        "remediate_http_requests_in_flight",
        "Requests being processed now (each holds an in-flight slot)",
        ConstGauge::new(state.guard.in_flight() as i64),
    );
    scrape.register(
        "remediate_http_requests_in_flight_max",
        "Most requests processed at once (--max-in-flight); more are shed with 503",
        ConstGauge::new(state.guard.limits.max_in_flight as i64),
    );
    scrape.register(
        "remediate_http_requests_shed",
        "Requests answered 503 because the in-flight limit was reached",
        ConstCounter::new(state.guard.shed()),
    );
    let throttled = Family::<TenantLabel, Counter>::default();
    for (tenant, n) in state.guard.throttled() {
        throttled.get_or_create(&TenantLabel { tenant }).inc_by(n);
    }
    scrape.register(
        "remediate_http_requests_throttled",
        "Requests answered 429 by the Intune throttling limits (--throttle-window-secs), by tenant; past 1000 tenants the rest are counted as (other)",
        throttled,
    );
    let pool = metrics.store.pool_use();
    let connections = Family::<StateLabel, prometheus_client::metrics::gauge::Gauge>::default();
    connections
        .get_or_create(&StateLabel { state: "in_use" })
        .set(pool.in_use as i64);
    connections
        .get_or_create(&StateLabel { state: "idle" })
        .set(pool.idle as i64);
    scrape.register(
        "remediate_db_connections",
        "Database connections in use and idle (SQLite: the read connections; the writer's is apart)",
        connections,
    );
    scrape.register(
        "remediate_db_connections_max",
        "Most database connections (SQLite: most reads at once)",
        ConstGauge::new(pool.max as i64),
    );
    if let Some(counts) = counts {
        scrape.register(
            "remediate_run_states_stored",
            "Device run states stored, every tenant (the sum of the run-state counters, read at scrape time)",
            ConstGauge::new(counts.run_states),
        );
        scrape.register(
            "remediate_agents_checked_in_last_5m",
            "Managed devices whose lastSyncDateTime is within the last 5 minutes, every tenant and process (read from the database at scrape time)",
            ConstGauge::new(counts.devices_synced_since),
        );
    }
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_text::encode(&mut out, &metrics.registry);
    let _ = prometheus_text::encode(&mut out, &scrape);
    out
}

/// Serve `/metrics` alone on `listener` (`--metrics-listen`) until `shutdown` completes; any
/// other path is 404. At most 16 connections at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::response::IntoResponse;
    let scrape = |axum::extract::State(state): axum::extract::State<Arc<AppState>>| async move {
        let body = render(&state).await;
        ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
    };
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: this address serves /metrics",
            )
        })
        .with_state(state);
    let listener = crate::guard::LimitedListener::new(listener, 16);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_paths_are_labelled_by_a_bounded_template() {
        assert_eq!(dashboard_label("/"), "dashboard:/");
        assert_eq!(dashboard_label("/scripts/abc-1"), "dashboard:/scripts/{id}");
        assert_eq!(dashboard_label("/scripts/other"), "dashboard:/scripts/{id}");
        assert_eq!(
            dashboard_label("/scripts/abc/export"),
            "dashboard:/scripts/{id}/export"
        );
        assert_eq!(dashboard_label("/login/0123abcd"), "dashboard:/login/{id}");
        assert_eq!(dashboard_label("/a/b/c/d/e"), "dashboard:(other)");
        // The same label is the same interned string.
        assert!(std::ptr::eq(
            dashboard_label("/devices/x/run"),
            dashboard_label("/devices/y/run")
        ));
    }

    #[test]
    fn routes_are_labelled_by_their_template() {
        assert_eq!(
            route_label("/beta/deviceManagement/deviceHealthScripts/abc/deviceRunStates"),
            "/deviceManagement/deviceHealthScripts/{scriptId}/deviceRunStates"
        );
        assert_eq!(
            route_label("/beta/deviceManagement/deviceHealthScripts('x')/deviceRunStates('x:d')"),
            route_label("/beta/deviceManagement/deviceHealthScripts/y/deviceRunStates/y%3Ae"),
        );
        assert_eq!(
            route_label("/beta/deviceManagement/deviceHealthScripts/getRemediationSummary()"),
            "/deviceManagement/deviceHealthScripts/getRemediationSummary"
        );
        assert_eq!(
            route_label("/beta/deviceManagement/managedDevices/d/$count"),
            UNMATCHED
        );
        assert_eq!(
            route_label("/beta/deviceManagement/managedDevices/$count"),
            "/deviceManagement/managedDevices/$count"
        );
        assert_eq!(route_label("/beta/$batch"), "/$batch");
        assert_eq!(route_label("/beta/nothing/here"), UNMATCHED);
        assert_eq!(route_label("/wp-admin"), UNMATCHED);
        assert_eq!(route_label("/healthz"), "/healthz");
        assert_eq!(
            route_label("/contoso.onmicrosoft.com/oauth2/v2.0/token"),
            "/{tenant}/oauth2/v2.0/token"
        );
        assert_eq!(route_label("/contoso/oauth2/v2.0/nothing"), UNMATCHED);
        // The same template is the same &'static str: written once.
        assert!(std::ptr::eq(
            route_label("/beta/deviceManagement/managedDevices/a"),
            route_label("/beta/deviceManagement/managedDevices/b"),
        ));
    }

    #[test]
    fn the_atomic_histogram_counts_into_le_buckets() {
        let histogram = AtomicHistogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            histogram.observe(v);
        }
        assert_eq!(histogram.count(), 4);
        assert_eq!(histogram.sum(), 6.0);
        let mut registry = Registry::default();
        registry.register("h", "help", histogram);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("h_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"2\"} 3\n"), "{text}");
        assert!(text.contains("h_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("h_count 4\n"), "{text}");
    }
}
