//! Protection and realism at the edge: request limits (header and URI size, in-flight requests,
//! per-request timeout, connections, slow and idle clients) and the optional Graph realism of
//! SPEC §10 — Intune's throttling limits answered with 429 and `Retry-After`, and seeded latency
//! and 5xx injection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use remediate_wire::ErrorKind;

/// Limits that protect the server; each has its own status (see README "Limits").
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Request body (413).
    pub max_body_bytes: usize,
    /// Sum of header names and values (431).
    pub max_header_bytes: usize,
    /// Path and query (414).
    pub max_uri_bytes: usize,
    /// Query-option length, `$filter` nesting depth, `in` list size (400).
    pub odata: remediate_odata::Limits,
    /// Largest page (`$top` above it is capped, as in Graph).
    pub max_page_size: usize,
    /// Requests in one `$batch` (400 above).
    pub max_batch_requests: usize,
    /// Time one request may take (504).
    pub request_timeout: Duration,
    /// Requests processed at once; beyond it 503 with `Retry-After` (load shedding).
    pub max_in_flight: usize,
    /// Open connections; beyond it new connections wait in the listen backlog.
    pub max_connections: usize,
    /// Time for a request's head (request line and headers) to arrive: from the accept on a new
    /// connection, from the first byte of the next request on a kept-alive one. The connection is
    /// closed after it.
    pub header_read_timeout: Duration,
    /// Time for a whole request body to arrive (408, connection closed).
    pub body_read_timeout: Duration,
    /// Least average rate of a request body once `body_rate_grace` has passed (408, connection
    /// closed); 0 turns the rate check off.
    pub min_body_bytes_per_sec: u64,
    /// Time a body may take before the minimum rate applies.
    pub body_rate_grace: Duration,
    /// Time a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 4 * 1024 * 1024,
            max_header_bytes: 32 * 1024,
            max_uri_bytes: 16 * 1024,
            odata: remediate_odata::Limits::default(),
            max_page_size: 1000,
            max_batch_requests: 20,
            request_timeout: Duration::from_secs(30),
            max_in_flight: 512,
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            min_body_bytes_per_sec: 1024,
            body_rate_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Optional Graph realism (off by default).
#[derive(Debug, Clone, Default)]
pub struct Realism {
    /// Throttle with Intune's limits per window (SPEC §10: 400 writes / 4000 requests per 20 s per
    /// tenant, half of that per app). `None`: off.
    pub throttle_window: Option<Duration>,
    /// Added latency, uniformly 0..=N ms per request.
    pub latency_ms: u64,
    /// Share of requests answered with an injected 503 (0.0–1.0), before they touch anything.
    pub error_rate: f64,
    /// Seed of the latency and error sequence.
    pub seed: u64,
}

pub const TENANT_WRITES: u64 = 400;
pub const TENANT_REQUESTS: u64 = 4000;
pub const APP_WRITES: u64 = 200;
pub const APP_REQUESTS: u64 = 2000;

#[derive(Default)]
struct Window {
    started: Option<Instant>,
    writes: u64,
    requests: u64,
}

/// Distinct tenants counted one by one in [`Guard::throttled`]; 429s of further tenants are
/// counted together under [`OTHER_TENANTS`] (bounded `/metrics` labels).
pub const MAX_THROTTLED_TENANTS: usize = 1000;
pub const OTHER_TENANTS: &str = "(other)";

pub struct Guard {
    pub limits: ServerLimits,
    pub realism: Realism,
    in_flight: Arc<Semaphore>,
    windows: Mutex<HashMap<(String, Option<String>), Window>>,
    sequence: AtomicU64,
    /// Requests answered 503 by [`Guard::admit`] (`/metrics`).
    shed: AtomicU64,
    /// Requests answered 429 by [`Guard::throttle`], by tenant (`/metrics`).
    throttled: Mutex<HashMap<String, u64>>,
}

impl Guard {
    pub fn new(limits: ServerLimits, realism: Realism) -> Guard {
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
        Guard {
            limits,
            realism,
            in_flight,
            windows: Mutex::new(HashMap::new()),
            sequence: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            throttled: Mutex::new(HashMap::new()),
        }
    }

    /// Requests holding an in-flight slot now.
    pub fn in_flight(&self) -> usize {
        self.limits
            .max_in_flight
            .max(1)
            .saturating_sub(self.in_flight.available_permits())
    }

    /// Requests shed (503) because the in-flight limit was reached, since the start.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Requests throttled (429) since the start, by tenant (at most [`MAX_THROTTLED_TENANTS`]
    /// tenants by name, the rest under [`OTHER_TENANTS`]).
    pub fn throttled(&self) -> Vec<(String, u64)> {
        let counts = self.throttled.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(t, n)| (t.clone(), *n)).collect()
    }

    /// A slot for one request, or 503 when the server is at its in-flight limit. Taken only for a
    /// complete request (head and body read), so slow or stalled clients never hold one.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            self.shed.fetch_add(1, Ordering::Relaxed);
            ApiError::new(
                ErrorKind::ServiceUnavailable,
                "The server is at its limit of requests in flight; retry shortly.",
            )
            .with_header("retry-after", "1".into())
        })
    }

    /// Header and URI size checks.
    pub fn check_sizes(&self, uri: &http::Uri, headers: &http::HeaderMap) -> Result<(), ApiError> {
        let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len());
        if uri_len > self.limits.max_uri_bytes {
            return Err(ApiError::new(
                ErrorKind::UriTooLong,
                format!(
                    "The request URI is {uri_len} bytes long, over the limit of {}.",
                    self.limits.max_uri_bytes
                ),
            ));
        }
        let header_len: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        if header_len > self.limits.max_header_bytes {
            return Err(ApiError::new(
                ErrorKind::HeaderTooLarge,
                format!(
                    "The request headers are {header_len} bytes, over the limit of {}.",
                    self.limits.max_header_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The next value of the seeded sequence (splitmix64), uniform in [0, 1).
    fn next_unit(&self) -> f64 {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .realism
            .seed
            .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Injected latency and failures (before the request touches anything).
    pub async fn inject(&self) -> Result<(), ApiError> {
        if self.realism.latency_ms > 0 {
            let ms = (self.next_unit() * (self.realism.latency_ms + 1) as f64) as u64;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if self.realism.error_rate > 0.0 && self.next_unit() < self.realism.error_rate {
            return Err(ApiError::new(
                ErrorKind::ServiceUnavailable,
                "Injected failure (--inject-error-rate); nothing was changed.",
            )
            .with_header("retry-after", "1".into()));
        }
        Ok(())
    }

    /// Intune's throttling: count this request for the tenant and for the app in the tenant.
    pub fn throttle(&self, tenant: &str, app: &str, write: bool) -> Result<(), ApiError> {
        let Some(window) = self.realism.throttle_window else {
            return Ok(());
        };
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let mut retry_after: Option<Duration> = None;
        let keys = [
            ((tenant.to_owned(), None), TENANT_WRITES, TENANT_REQUESTS),
            (
                (tenant.to_owned(), Some(app.to_owned())),
                APP_WRITES,
                APP_REQUESTS,
            ),
        ];
        for (key, max_writes, max_requests) in &keys {
            let w = windows.entry(key.clone()).or_default();
            if w.started.is_none_or(|s| now.duration_since(s) >= window) {
                *w = Window {
                    started: Some(now),
                    writes: 0,
                    requests: 0,
                };
            }
            if w.requests >= *max_requests || (write && w.writes >= *max_writes) {
                let left = window.saturating_sub(now.duration_since(w.started.unwrap_or(now)));
                retry_after = Some(retry_after.map_or(left, |r| r.max(left)));
            }
        }
        if let Some(left) = retry_after {
            drop(windows);
            self.count_throttled(tenant);
            let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(ApiError::new(
                ErrorKind::TooManyRequests,
                format!(
                    "Too many requests for this tenant or application (Intune limits: 400 writes and 4000 requests per {} seconds per tenant, half per application).",
                    window.as_secs()
                ),
            )
            .with_header("retry-after", seconds.max(1).to_string()));
        }
        for (key, _, _) in keys {
            if let Some(w) = windows.get_mut(&key) {
                w.requests += 1;
                if write {
                    w.writes += 1;
                }
            }
        }
        Ok(())
    }
}

impl Guard {
    fn count_throttled(&self, tenant: &str) {
        let mut counts = self.throttled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(tenant) {
            *n += 1;
        } else if counts.len() < MAX_THROTTLED_TENANTS {
            counts.insert(tenant.to_owned(), 1);
        } else {
            *counts.entry(OTHER_TENANTS.to_owned()).or_default() += 1;
        }
    }
}

/// A TCP listener that holds at most `max` connections open; further connections wait in the
/// kernel's backlog until one closes.
pub struct LimitedListener {
    inner: tokio::net::TcpListener,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    pub fn new(inner: tokio::net::TcpListener, max: usize) -> LimitedListener {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

pub struct LimitedStream {
    stream: tokio::net::TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl tokio::io::AsyncRead for LimitedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    // Vectored writes let hyper queue a response body instead of copying it into its own write
    // buffer, which keeps the capacity of the largest answer for the life of the connection.
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => std::future::pending().await,
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (
                        LimitedStream {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The deadlines of one connection outside its requests: the request head must arrive within
/// `header_read_timeout` (counted from the accept on a new connection, from the first byte on a
/// kept-alive one), and a kept-alive connection waiting for its next request is closed after
/// `idle_timeout`. While a request is being served (from its head until its response is written)
/// no deadline applies here: the body has its own (`server::read_body`) and the work has the
/// request timeout.
///
/// Shared by the connection's stream ([`TimedStream`], which enforces the deadline on reads) and
/// its service (which marks where requests start and end). hyper's own `header_read_timeout`
/// is not used because it also runs while a kept-alive connection waits for its next request, so
/// the idle time could not be longer than the header time.
#[derive(Debug)]
pub struct ConnectionTimer {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<TimerState>,
}

#[derive(Debug)]
struct TimerState {
    phase: Phase,
    /// The connection's task, when it last waited for bytes while a request was served: woken
    /// when the response is written, so that the idle deadline is armed even when hyper does not
    /// read again by itself.
    reader: Option<std::task::Waker>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request head since this instant (`idle`: no byte of it yet, after a response).
    Head {
        since: tokio::time::Instant,
        idle: bool,
    },
    /// A request is being served.
    Busy,
}

impl ConnectionTimer {
    /// The timer of a connection accepted now.
    pub fn new(header_read_timeout: Duration, idle_timeout: Duration) -> ConnectionTimer {
        ConnectionTimer {
            header_read_timeout,
            idle_timeout,
            state: Mutex::new(TimerState {
                phase: Phase::Head {
                    since: tokio::time::Instant::now(),
                    idle: false,
                },
                reader: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request head has been read: no deadline until its response is written.
    pub fn request_started(&self) {
        self.state().phase = Phase::Busy;
    }

    /// The response has been written: the connection is idle until the next request's first byte.
    pub fn response_finished(&self) {
        let reader = {
            let mut state = self.state();
            state.phase = Phase::Head {
                since: tokio::time::Instant::now(),
                idle: true,
            };
            state.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Bytes arrived: on an idle connection the next head has begun.
    fn bytes_arrived(&self) {
        let mut state = self.state();
        if let Phase::Head { idle: true, .. } = state.phase {
            state.phase = Phase::Head {
                since: tokio::time::Instant::now(),
                idle: false,
            };
        }
    }

    /// When a read still waiting must give up, if at all; without a deadline (a request is being
    /// served) the reader is kept to be woken when the response is written.
    fn deadline(&self, reader: &std::task::Waker) -> Option<(tokio::time::Instant, &'static str)> {
        let mut state = self.state();
        match state.phase {
            Phase::Head { since, idle: true } => Some((
                since + self.idle_timeout,
                "the connection was idle past the idle timeout",
            )),
            Phase::Head { since, idle: false } => Some((
                since + self.header_read_timeout,
                "the request head did not arrive within the header read timeout",
            )),
            Phase::Busy => {
                if !state.reader.as_ref().is_some_and(|w| w.will_wake(reader)) {
                    state.reader = Some(reader.clone());
                }
                None
            }
        }
    }
}

/// A connection's stream whose reads fail with `TimedOut` past the [`ConnectionTimer`]'s
/// deadline, which makes hyper close the connection.
pub struct TimedStream<S> {
    inner: S,
    timer: Arc<ConnectionTimer>,
    sleep: Option<(tokio::time::Instant, std::pin::Pin<Box<tokio::time::Sleep>>)>,
}

impl<S> TimedStream<S> {
    pub fn new(inner: S, timer: Arc<ConnectionTimer>) -> TimedStream<S> {
        TimedStream {
            inner,
            timer,
            sleep: None,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for TimedStream<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.timer.bytes_arrived();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let Some((deadline, why)) = this.timer.deadline(cx.waker()) else {
            return Poll::Pending;
        };
        match &mut this.sleep {
            Some((armed, sleep)) if *armed != deadline => {
                sleep.as_mut().reset(deadline);
                *armed = deadline;
            }
            Some(_) => {}
            None => this.sleep = Some((deadline, Box::pin(tokio::time::sleep_until(deadline)))),
        }
        let Some((_, sleep)) = this.sleep.as_mut() else {
            return Poll::Pending;
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for TimedStream<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
