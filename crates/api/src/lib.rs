//! The HTTP API of remediate: the axum edge, routing, authentication and authorization, OData
//! query binding, paging tokens and response shaping. See `ARCHITECTURE.md` for the request flow.

pub mod agents;
pub mod auth;
pub mod batch;
mod ctx;
mod device;
mod directory;
pub mod dispatch;
pub mod error;
pub mod guard;
pub mod metadata;
pub mod openapi;
mod operations;
pub mod paging;
pub mod query;
pub mod respond;
pub mod route;
pub mod server;
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
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub auth: auth::Authenticator,
    pub config: ApiConfig,
    /// Limits, throttling and injected faults.
    pub guard: guard::Guard,
    /// When each agent's credential was last seen to exist (revocation within a minute).
    pub credentials: agents::CredentialCache,
}

impl AppState {
    /// `{public url or http://Host}/beta`.
    pub fn base_url(&self, headers: &http::HeaderMap) -> String {
        if let Some(public) = &self.config.public_url {
            return format!("{}/beta", public.trim_end_matches('/'));
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("http://{host}/beta")
    }
}

pub use server::{router, run};
