//! Proxy mode (`--proxy-listen`): an HTTP proxy for tools that cannot be given another base URL.
//! `CONNECT host:443` to `graph.microsoft.com`, `login.microsoftonline.com` or a `--proxy-host`
//! name is answered `200 Connection established`; the tunnel's TLS is terminated with a leaf of the
//! local CA for that host (one per host, kept) and its HTTP/1.1 requests are served in process by
//! the same router as the main listener, with links on the host the client asked for
//! ([`crate::Origin`]). Plain-HTTP absolute-form requests to those hosts are served the same way.
//! Any other target is refused with a 403 saying why, unless pass-through is on, in which case a
//! `CONNECT` is tunnelled byte for byte to the real host (never decrypted). The connection cap and
//! the header, idle and body deadlines are the main listener's.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body as AxumBody;
use http::{HeaderValue, Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::guard::{ConnectionTimer, LimitedListener, ServerLimits, TimedStream};
use crate::server::{http_builder, ConnectionService, ResponseDone, TimedBody};
use crate::tls::{LocalCa, ServerTls};
use crate::{AppState, Origin};

/// The hosts the proxy always serves itself.
pub const DEFAULT_HOSTS: &[&str] = &["graph.microsoft.com", "login.microsoftonline.com"];

/// How long a pass-through tunnel may take to reach its host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy's settings (`--proxy-listen`, `--proxy-host`, `--proxy-pass-through`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    /// Hosts served besides [`DEFAULT_HOSTS`].
    pub hosts: Vec<String>,
    /// Tunnel `CONNECT`s to every other host instead of refusing them.
    pub pass_through: bool,
}

impl ProxyConfig {
    /// Every host the proxy serves itself: [`DEFAULT_HOSTS`], then `hosts` (lower case, once).
    pub fn served_hosts(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for host in DEFAULT_HOSTS
            .iter()
            .copied()
            .chain(self.hosts.iter().map(String::as_str))
        {
            let host = normalize(host);
            if !host.is_empty() && !all.contains(&host) {
                all.push(host);
            }
        }
        all
    }
}

/// `Graph.Microsoft.com.` → `graph.microsoft.com`.
fn normalize(host: &str) -> String {
    host.trim()
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

struct Proxy {
    hosts: Vec<String>,
    pass_through: bool,
    ca: Arc<LocalCa>,
    /// The TLS configuration of each served host, made on its first `CONNECT`.
    configs: Mutex<HashMap<String, ServerTls>>,
    router: axum::Router,
    limits: ServerLimits,
}

/// Serve the proxy on `listener` until `shutdown` completes; then stop accepting, let requests
/// in progress on its tunnels finish, close pass-through tunnels, and return.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    ca: Arc<LocalCa>,
    config: &ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::Listener as _;
    let limits = state.guard.limits.clone();
    let proxy = Arc::new(Proxy {
        hosts: config.served_hosts(),
        pass_through: config.pass_through,
        ca,
        configs: Mutex::default(),
        router: crate::server::router(state),
        limits: limits.clone(),
    });
    let mut listener = LimitedListener::new(listener, limits.max_connections);
    // Every connection and tunnel holds a receiver: told to stop, waited for until all are gone.
    let (stop, _) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let timer = Arc::new(ConnectionTimer::new(
            limits.header_read_timeout,
            limits.idle_timeout,
        ));
        let io = TokioIo::new(TimedStream::new(stream, timer.clone()));
        let service = ProxyService {
            proxy: proxy.clone(),
            timer,
            stop: stop.subscribe(),
        };
        let mut stopping = stop.subscribe();
        tokio::spawn(async move {
            let connection = http_builder().serve_connection(io, service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "proxy connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.send_replace(());
    stop.closed().await;
    Ok(())
}

/// The hyper service of one connection to the proxy.
#[derive(Clone)]
struct ProxyService {
    proxy: Arc<Proxy>,
    timer: Arc<ConnectionTimer>,
    stop: watch::Receiver<()>,
}

type Reply = http::Response<TimedBody>;

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ProxyService {
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>> + Send>>;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.timer.request_started();
        let service = self.clone();
        Box::pin(async move { Ok(service.answer(request).await) })
    }
}

impl ProxyService {
    async fn answer(self, request: http::Request<hyper::body::Incoming>) -> Reply {
        if request.method() == Method::CONNECT {
            return self.connect(request).await;
        }
        let Some(authority) = request.uri().authority().cloned() else {
            return self.text(
                StatusCode::BAD_REQUEST,
                "This is remediate's proxy: send requests through it (HTTPS_PROXY=http://this-address) \
                 or to remediate's main listener.\n"
                    .to_owned(),
            );
        };
        let host = normalize(authority.host());
        if request.uri().scheme_str() != Some("http") || !self.proxy.serves(&host) {
            let target = authority.as_str();
            return self.text(StatusCode::FORBIDDEN, self.proxy.refusal(target, false));
        }
        // A plain-HTTP request to a served host: the router, with links on that host.
        let linked = match authority.port_u16() {
            Some(port) if port != 80 => format!("{host}:{port}"),
            _ => host,
        };
        let (mut parts, body) = request.into_parts();
        parts.uri = match parts.uri.path_and_query() {
            Some(path) => path.as_str().parse().unwrap_or_default(),
            None => http::Uri::from_static("/"),
        };
        parts.headers.remove("proxy-authorization");
        parts.headers.remove("proxy-connection");
        let mut request = http::Request::from_parts(parts, AxumBody::new(body));
        request.extensions_mut().insert(Origin {
            scheme: "http",
            proxied: Some(linked),
        });
        let done = ResponseDone(self.timer.clone());
        use tower::ServiceExt as _;
        match self.proxy.router.clone().oneshot(request).await {
            Ok(response) => response.map(|inner| TimedBody::new(inner, Some(done))),
            Err(never) => match never {},
        }
    }

    /// `CONNECT host:port`: a tunnel served here, a pass-through tunnel, or a refusal.
    async fn connect(self, request: http::Request<hyper::body::Incoming>) -> Reply {
        let Some(authority) = request.uri().authority().cloned() else {
            return self.text(
                StatusCode::BAD_REQUEST,
                "CONNECT needs a target host:port.\n".to_owned(),
            );
        };
        let host = normalize(authority.host());
        let port = authority.port_u16().unwrap_or(443);
        if port == 443 && self.proxy.serves(&host) {
            let tls = match self.proxy.tls_for(&host) {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::warn!(error = %e, %host, "no certificate for a proxied host");
                    return self.text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("remediate could not make a certificate for {host}: {e}\n"),
                    );
                }
            };
            let (proxy, stop) = (self.proxy.clone(), self.stop.clone());
            tokio::spawn(async move {
                match hyper::upgrade::on(request).await {
                    Ok(upgraded) => proxy.serve_tunnel(upgraded, host, tls, stop).await,
                    Err(e) => tracing::debug!(error = %e, "the CONNECT was not upgraded"),
                }
            });
            return established();
        }
        if !self.proxy.pass_through {
            return self.text(
                StatusCode::FORBIDDEN,
                self.proxy.refusal(authority.as_str(), true),
            );
        }
        let connecting = tokio::net::TcpStream::connect((host.as_str(), port));
        let mut remote = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(remote)) => remote,
            Ok(Err(e)) => {
                return self.text(
                    StatusCode::BAD_GATEWAY,
                    format!("remediate's proxy could not reach {authority}: {e}\n"),
                )
            }
            Err(_) => {
                return self.text(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "remediate's proxy could not reach {authority} within {} s\n",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                )
            }
        };
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let upgraded = match hyper::upgrade::on(request).await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "the CONNECT was not upgraded");
                    return;
                }
            };
            let mut client = TokioIo::new(upgraded);
            tokio::select! {
                copied = tokio::io::copy_bidirectional(&mut client, &mut remote) => {
                    if let Err(e) = copied {
                        tracing::debug!(error = %e, "pass-through tunnel ended with an error");
                    }
                }
                _ = stop.changed() => {}
            }
        });
        established()
    }

    /// A plain-text answer of the proxy itself; the connection's request ends when it is written.
    fn text(&self, status: StatusCode, body: String) -> Reply {
        let mut response = http::Response::new(TimedBody::new(
            AxumBody::from(body),
            Some(ResponseDone(self.timer.clone())),
        ));
        *response.status_mut() = status;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// `200 Connection established`. Its body never ends the connection's request on its timer: the
/// connection is a tunnel now (the tunnel's own timer keeps the deadlines of its requests).
fn established() -> Reply {
    let mut response = http::Response::new(TimedBody::new(AxumBody::empty(), None));
    response
        .extensions_mut()
        .insert(hyper::ext::ReasonPhrase::from_static(
            b"Connection established",
        ));
    response
}

impl Proxy {
    fn serves(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host)
    }

    /// Why `target` is refused, naming what the proxy does serve.
    fn refusal(&self, target: &str, tunnel: bool) -> String {
        let served = self.hosts.join(", ");
        let remedy = if tunnel {
            "Add a host with --proxy-host NAME, or start remediate with --proxy-pass-through to \
             tunnel other hosts unchanged."
        } else {
            "Add a host with --proxy-host NAME (plain-HTTP requests are never passed through)."
        };
        format!(
            "remediate's proxy does not forward to {target}: it serves only {served} (port 443, \
             or plain HTTP) itself and refuses every other host. {remedy}\n"
        )
    }

    /// The TLS configuration presenting the local CA's leaf for `host` (made once).
    fn tls_for(&self, host: &str) -> Result<ServerTls, crate::tls::TlsError> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tls) = configs.get(host) {
            return Ok(tls.clone());
        }
        let tls = self.ca.server_config(&[host.to_owned()])?;
        configs.insert(host.to_owned(), tls.clone());
        Ok(tls)
    }

    /// Terminate the tunnel's TLS and serve its requests with the router, as the main listener
    /// does (the handshake and each request head within the header read timeout, idle timeout
    /// between requests).
    async fn serve_tunnel(
        self: Arc<Self>,
        upgraded: hyper::upgrade::Upgraded,
        host: String,
        tls: ServerTls,
        mut stop: watch::Receiver<()>,
    ) {
        let timer = Arc::new(ConnectionTimer::new(
            self.limits.header_read_timeout,
            self.limits.idle_timeout,
        ));
        let stream = TimedStream::new(TokioIo::new(upgraded), timer.clone());
        let accepted = tokio::select! {
            accepted = tls.acceptor().accept(stream) => accepted,
            _ = stop.changed() => return,
        };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, %host, "TLS handshake in a proxy tunnel failed");
                return;
            }
        };
        let service = ConnectionService {
            router: self.router.clone(),
            timer,
            origin: Some(Origin {
                scheme: "https",
                proxied: Some(host),
            }),
        };
        let connection = http_builder().serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            _ = stop.changed() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "proxy tunnel ended with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_hosts_are_the_defaults_then_the_extra_ones_once() {
        let config = ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            hosts: vec![
                "Graph.Microsoft.com.".into(),
                "intune.example".into(),
                "INTUNE.example".into(),
            ],
            pass_through: false,
        };
        assert_eq!(
            config.served_hosts(),
            [
                "graph.microsoft.com",
                "login.microsoftonline.com",
                "intune.example"
            ]
        );
    }
}
