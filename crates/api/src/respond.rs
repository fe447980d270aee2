//! Requests and responses independent of axum, so `$batch` can run inner requests through the
//! same code.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value as Json};

/// One request to `/beta`, independent of the HTTP server (also built from `$batch` items).
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// Path after `/beta/`, still percent-encoded.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
    /// Absolute base for links, e.g. `http://127.0.0.1:8080/beta`.
    pub base_url: String,
}

#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Vec<u8>),
    Text(String),
    /// `application/xml` (the `$metadata` document).
    Xml(String),
}

impl ApiResponse {
    pub fn json(status: StatusCode, object: Map<String, Json>) -> ApiResponse {
        let bytes = serde_json::to_vec(&Json::Object(object)).unwrap_or_default();
        ApiResponse {
            status,
            headers: Vec::new(),
            body: Body::Json(bytes),
        }
    }

    /// A JSON body serialized straight from `body` (no intermediate tree).
    pub fn json_body(
        status: StatusCode,
        body: &impl serde::Serialize,
    ) -> Result<ApiResponse, crate::error::ApiError> {
        let mut bytes = Vec::with_capacity(16 * 1024);
        serde_json::to_writer(&mut bytes, body).map_err(|e| {
            crate::error::ApiError::new(
                remediate_wire::ErrorKind::Internal,
                format!("the response could not be serialized: {e}"),
            )
        })?;
        Ok(ApiResponse {
            status,
            headers: Vec::new(),
            body: Body::Json(bytes),
        })
    }

    pub fn no_content() -> ApiResponse {
        ApiResponse {
            status: StatusCode::NO_CONTENT,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> ApiResponse {
        self.headers.push((name, value));
        self
    }
}
