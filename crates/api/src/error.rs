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

/// A database message as a log line may carry it: at most [`LOGGED_CHARS`] characters, the cut
/// said, so a statement with a huge text (the driver may quote it whole) never floods the log.
fn loggable(message: &str) -> std::borrow::Cow<'_, str> {
    match message.char_indices().nth(LOGGED_CHARS) {
        None => message.into(),
        Some((end, _)) => format!(
            "{}… ({} more bytes not logged)",
            &message[..end],
            message.len() - end
        )
        .into(),
    }
}

/// Longest database message written to the log.
const LOGGED_CHARS: usize = 512;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::new(ErrorKind::Conflict, m),
            StoreError::InvalidReference(m) | StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %loggable(&m), "database unavailable");
                ApiError::new(
                    ErrorKind::ServiceUnavailable,
                    "The database is temporarily unavailable; retry later.",
                )
                .with_header("retry-after", "5".into())
            }
            StoreError::Timeout(m) => ApiError::new(ErrorKind::Timeout, m),
            StoreError::InsufficientStorage(m) => {
                tracing::warn!(error = %loggable(&m), "the database's disk is full");
                ApiError::new(
                    ErrorKind::InsufficientStorage,
                    "The server's disk is full: the change was not saved. Reads still work; \
                     retry once space has been freed.",
                )
                .with_header("retry-after", "30".into())
            }
            StoreError::Internal(m) => {
                tracing::error!(error = %loggable(&m), "storage failure");
                ApiError::new(
                    ErrorKind::Internal,
                    "An internal error occurred; it has been logged.",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{loggable, LOGGED_CHARS};

    #[test]
    fn long_database_messages_are_cut_in_logs_and_the_cut_is_said() {
        assert_eq!(loggable("short"), "short");
        let statement = format!("near \"ORDER\": {}", "x".repeat(10_000_000));
        let logged = loggable(&statement);
        assert!(
            logged.chars().count() < LOGGED_CHARS + 64,
            "{}",
            logged.len()
        );
        assert!(logged.ends_with("more bytes not logged)"), "{logged}");
        assert!(logged.contains(&format!("({} more bytes", statement.len() - LOGGED_CHARS)));
    }
}
