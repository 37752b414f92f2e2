//! What a model call can fail with, classified by what the caller should do about it.

use std::time::Duration;

pub type Result<T, E = LlmError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// HTTP 429: throttled. Retry after the given delay, if any.
    #[error("rate limited by the provider: {message}")]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },
    /// HTTP 529 (Anthropic) or 503: the provider is overloaded.
    #[error("the provider is overloaded: {message}")]
    Overloaded {
        retry_after: Option<Duration>,
        message: String,
    },
    /// Any other HTTP 5xx.
    #[error("provider error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    /// The connection failed, was refused, reset or timed out before a response.
    #[error("connection to the provider failed: {0}")]
    Connection(String),
    /// HTTP 401/403: credentials missing, wrong or not allowed. Not retried.
    #[error("the provider refused the credentials (HTTP {status}): {message}")]
    Auth { status: u16, message: String },
    /// Any other HTTP 4xx: the request is wrong. Not retried.
    #[error("the provider rejected the request (HTTP {status}): {message}")]
    InvalidRequest { status: u16, message: String },
    /// The provider reported an error inside an already started stream.
    #[error("the provider reported {kind} mid-stream: {message}")]
    Stream { kind: String, message: String },
    /// The response did not follow the wire format (malformed, truncated, out of order).
    #[error("malformed provider response: {0}")]
    Protocol(String),
    /// The circuit breaker for this provider and model is open.
    #[error("{provider}/{model} is failing; not calling it for another {retry_in:?}")]
    CircuitOpen {
        provider: String,
        model: String,
        retry_in: Duration,
    },
    #[error("cancelled")]
    Cancelled,
    /// Hangar's own configuration is wrong (missing key, unknown provider).
    #[error("model configuration: {0}")]
    Config(String),
}

impl LlmError {
    /// Worth another attempt at the same target after a delay.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Overloaded { .. } | Self::Server { .. } | Self::Connection(_)
        )
    }

    /// The provider's `retry-after`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Overloaded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Worth trying the next model of a fallback chain (when retrying did not cure it).
    pub fn allows_fallback(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                Self::CircuitOpen { .. } | Self::Auth { .. } | Self::Config(_)
            )
    }

    /// Counts against the circuit breaker of the target.
    pub fn trips_breaker(&self) -> bool {
        self.is_retryable() || matches!(self, Self::Stream { .. } | Self::Protocol(_))
    }

    /// A short machine-readable name, for events and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::Server { .. } => "server_error",
            Self::Connection(_) => "connection_error",
            Self::Auth { .. } => "auth_error",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Stream { .. } => "stream_error",
            Self::Protocol(_) => "protocol_error",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Cancelled => "cancelled",
            Self::Config(_) => "config_error",
        }
    }
}
