//! The Graph error envelope and the one table that maps each error kind to its HTTP status and code.

use serde::Serialize;

/// Every kind of error remediate answers with. Adding a variant forces a choice of status and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or invalid request (body, query option, path).
    BadRequest,
    /// Missing, malformed, expired or untrusted token.
    Unauthenticated,
    /// Valid token without a permission that allows the call.
    Forbidden,
    /// The resource does not exist in the caller's tenant.
    NotFound,
    /// Known path, unsupported method.
    MethodNotAllowed,
    /// Unique key taken (one run state per script and device).
    Conflict,
    /// Body larger than the configured limit.
    PayloadTooLarge,
    /// Body sent with a content type other than JSON.
    UnsupportedMediaType,
    /// Request URI longer than the configured limit.
    UriTooLong,
    /// Request headers larger than the configured limit.
    HeaderTooLarge,
    /// A `$batch` request whose dependency failed.
    FailedDependency,
    /// Too many requests (optional throttling).
    TooManyRequests,
    /// The database is unreachable; retry later.
    ServiceUnavailable,
    /// The request took longer than the configured timeout.
    Timeout,
    /// The client did not send its request body within the body read timeout or the minimum rate.
    ClientTimeout,
    /// The disk holding the database is full: a write was not stored (reads still work).
    InsufficientStorage,
    /// A bug or an unexpected failure; details are logged, never returned.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::BadRequest,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Conflict,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::UriTooLong,
        ErrorKind::HeaderTooLarge,
        ErrorKind::FailedDependency,
        ErrorKind::TooManyRequests,
        ErrorKind::ServiceUnavailable,
        ErrorKind::Timeout,
        ErrorKind::ClientTimeout,
        ErrorKind::InsufficientStorage,
        ErrorKind::Internal,
    ];

    pub fn status(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ErrorKind::BadRequest => S::BAD_REQUEST,
            ErrorKind::Unauthenticated => S::UNAUTHORIZED,
            ErrorKind::Forbidden => S::FORBIDDEN,
            ErrorKind::NotFound => S::NOT_FOUND,
            ErrorKind::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            ErrorKind::Conflict => S::CONFLICT,
            ErrorKind::PayloadTooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => S::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::UriTooLong => S::URI_TOO_LONG,
            ErrorKind::HeaderTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorKind::FailedDependency => S::FAILED_DEPENDENCY,
            ErrorKind::TooManyRequests => S::TOO_MANY_REQUESTS,
            ErrorKind::ServiceUnavailable => S::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => S::GATEWAY_TIMEOUT,
            ErrorKind::ClientTimeout => S::REQUEST_TIMEOUT,
            ErrorKind::InsufficientStorage => S::INSUFFICIENT_STORAGE,
            ErrorKind::Internal => S::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Graph `error.code` string.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "BadRequest",
            ErrorKind::Unauthenticated => "InvalidAuthenticationToken",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::NotFound => "ResourceNotFound",
            ErrorKind::MethodNotAllowed => "MethodNotAllowed",
            ErrorKind::Conflict => "Conflict",
            ErrorKind::PayloadTooLarge => "RequestEntityTooLarge",
            ErrorKind::UnsupportedMediaType => "UnsupportedMediaType",
            ErrorKind::UriTooLong => "RequestUriTooLong",
            ErrorKind::HeaderTooLarge => "RequestHeaderFieldsTooLarge",
            ErrorKind::FailedDependency => "FailedDependency",
            ErrorKind::TooManyRequests => "TooManyRequests",
            ErrorKind::ServiceUnavailable => "ServiceUnavailable",
            ErrorKind::Timeout => "RequestTimeout",
            ErrorKind::ClientTimeout => "RequestTimeout",
            ErrorKind::InsufficientStorage => "InsufficientStorage",
            ErrorKind::Internal => "InternalServerError",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(rename = "innerError")]
    pub inner_error: InnerError<'a>,
}

#[derive(Debug, Serialize)]
pub struct InnerError<'a> {
    pub date: &'a str,
    #[serde(rename = "request-id")]
    pub request_id: &'a str,
    #[serde(rename = "client-request-id")]
    pub client_request_id: &'a str,
}

/// Serialize the Graph error envelope.
pub fn error_json(
    kind: ErrorKind,
    message: &str,
    date: &str,
    request_id: &str,
    client_request_id: &str,
) -> Vec<u8> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: kind.code(),
            message,
            inner_error: InnerError {
                date,
                request_id,
                client_request_id,
            },
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_table_is_what_clients_see() {
        let table: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.status().as_u16(), k.code()))
            .collect();
        assert_eq!(
            table,
            [
                "400 BadRequest",
                "401 InvalidAuthenticationToken",
                "403 Forbidden",
                "404 ResourceNotFound",
                "405 MethodNotAllowed",
                "409 Conflict",
                "413 RequestEntityTooLarge",
                "415 UnsupportedMediaType",
                "414 RequestUriTooLong",
                "431 RequestHeaderFieldsTooLarge",
                "424 FailedDependency",
                "429 TooManyRequests",
                "503 ServiceUnavailable",
                "504 RequestTimeout",
                "408 RequestTimeout",
                "507 InsufficientStorage",
                "500 InternalServerError",
            ]
        );
    }

    #[test]
    fn envelope_has_graph_shape() {
        let body = error_json(
            ErrorKind::NotFound,
            "gone",
            "2025-01-01T00:00:00Z",
            "r1",
            "c1",
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "ResourceNotFound");
        assert_eq!(v["error"]["message"], "gone");
        assert_eq!(v["error"]["innerError"]["request-id"], "r1");
        assert_eq!(v["error"]["innerError"]["client-request-id"], "c1");
        assert_eq!(v["error"]["innerError"]["date"], "2025-01-01T00:00:00Z");
    }
}
