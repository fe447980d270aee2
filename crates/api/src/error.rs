//! The one error type of the HTTP edge. Every failure becomes an [`ApiError`]: a kind from the
//! wire code table (which fixes status and Graph code) and a message for the client.

use remediate_store::StoreError;
use remediate_wire::{DecodeError, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unauthenticated, message).with_header(
            "www-authenticate",
            "Bearer realm=\"remediate\", error=\"invalid_token\"".into(),
        )
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> ApiError {
        ApiError::bad_request(e.0)
    }
}

impl From<remediate_domain::ops::RuleError> for ApiError {
    fn from(e: remediate_domain::ops::RuleError) -> ApiError {
        ApiError::bad_request(e.0)
    }
}

impl From<remediate_odata::ParseError> for ApiError {
    fn from(e: remediate_odata::ParseError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::new(ErrorKind::Conflict, m),
            StoreError::InvalidReference(m) => ApiError::bad_request(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                ApiError::new(
                    ErrorKind::ServiceUnavailable,
                    "The database is temporarily unavailable; retry later.",
                )
                .with_header("retry-after", "5".into())
            }
            StoreError::Timeout(m) => ApiError::new(ErrorKind::Timeout, m),
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "storage failure");
                ApiError::new(
                    ErrorKind::Internal,
                    "An internal error occurred; it has been logged.",
                )
            }
        }
    }
}
