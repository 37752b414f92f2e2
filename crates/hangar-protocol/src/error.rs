//! The error envelope every failing response carries (seed contract §0.2), and its codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": {...}}`: the body of every non-2xx response Hangar produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    /// Machine-readable code, e.g. `NOT_FOUND`, `VALIDATION_ERROR`.
    pub code: ErrorCode,
    /// Human-readable explanation, safe to show to the caller.
    pub message: String,
    /// Field-level problems, when there are any.
    pub details: Option<Vec<ErrorDetail>>,
    /// The request's `X-Request-ID`, to quote when reporting a problem.
    pub request_id: Option<String>,
    /// When the error was produced (RFC 3339, UTC).
    pub timestamp: String,
    /// Seconds to wait before retrying (only on `RATE_LIMIT_EXCEEDED`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Dotted location of the offending input (`body.tenant_id`, `query.limit`), when known.
    pub field: Option<String>,
    pub message: String,
    pub code: Option<String>,
    /// A count that the detail is about (e.g. how many tenants still use a model).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub count: Option<i64>,
}

impl ErrorDetail {
    pub fn field(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
            code: Some(code.to_owned()),
            count: None,
        }
    }

    pub fn count(field: impl Into<String>, count: i64, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
            code: Some("IN_USE".to_owned()),
            count: Some(count),
        }
    }
}

/// Error codes. The first block is the original system's; the rest name HTTP outcomes it left
/// unconverted (405, 413, 415, 408) so that every error has the same envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    ValidationError,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    RateLimitExceeded,
    ServiceUnavailable,
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    RequestTimeout,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationError => "VALIDATION_ERROR",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::Conflict => "CONFLICT",
            Self::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::InternalError => "INTERNAL_ERROR",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
        }
    }
}
