//! The HTTP API of remediate: the axum edge, routing, authentication and authorization, OData
//! query binding, paging tokens and response shaping. See `ARCHITECTURE.md` for the request flow.

pub mod agents;
pub mod auth;
pub mod batch;
mod ctx;
pub mod dashboard;
mod device;
mod directory;
pub mod dispatch;
pub mod entra;
pub mod error;
pub mod exports;
pub mod guard;
pub mod metadata;
pub mod metrics;
pub mod openapi;
mod operations;
pub mod paging;
pub mod proxy;
pub mod query;
pub mod respond;
pub mod route;
pub mod server;
pub mod tls;
mod urls;

use std::sync::Arc;

use remediate_store::Store;

/// Settings the API needs at run time.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    /// Public base URL (without `/beta`) for links; `None` uses the request's `Host`.
    pub public_url: Option<String>,
    /// Validation limits of request bodies.
    pub limits: remediate_wire::Limits,
    /// The dashboard's OIDC sign-in (`serve --dashboard-oidc-issuer …`), when configured.
    pub dashboard_oidc: Option<dashboard::OidcLogin>,
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: auth::Authenticator,
    pub config: ApiConfig,
    /// Limits, throttling and injected faults.
    pub guard: guard::Guard,
    /// When each agent's credential was last seen to exist (revocation within a minute).
    pub credentials: agents::CredentialCache,
    /// What `/metrics` serves.
    pub metrics: Arc<metrics::Metrics>,
    /// Export jobs: where their files go, this process's runner, how long links live.
    pub exports: exports::Exports,
}

impl AppState {
    /// `{public url or http://Host}/beta`, for a request whose [`Origin`] is not known.
    pub fn base_url(&self, headers: &http::HeaderMap) -> String {
        self.link_base(headers, None)
    }

    /// The base of the links written for a request (`@odata.nextLink`, `Location`, contexts):
    /// `{scheme}://{host the client asked the proxy for}/beta` for a request that came through the
    /// proxy, else `{public url}/beta`, else `{scheme}://{Host}/beta` where the scheme is the
    /// connection's (`https` over TLS).
    pub fn link_base(&self, headers: &http::HeaderMap, origin: Option<&Origin>) -> String {
        if let Some(Origin {
            scheme,
            proxied: Some(authority),
        }) = origin
        {
            return format!("{scheme}://{authority}/beta");
        }
        if let Some(public) = &self.config.public_url {
            return format!("{}/beta", public.trim_end_matches('/'));
        }
        let scheme = origin.map_or("http", |o| o.scheme);
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("{scheme}://{host}/beta")
    }
}

/// How a request reached the server: set by the accept loops as a request extension, read by
/// [`AppState::link_base`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https` on a TLS connection, else `http`.
    pub scheme: &'static str,
    /// Through the proxy: the host (with the port when it is not the scheme's default) the client
    /// asked for, e.g. `graph.microsoft.com`.
    pub proxied: Option<String>,
}

pub use server::{router, run};
