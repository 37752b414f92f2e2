//! Faults a script can inject: [`Fault`], an HTTP error answered before any stream starts, and
//! the in-stream ones a [`Reply`](super::Reply) can carry: a [`Stall`] (no bytes for a while),
//! an [`Interrupt`] (the provider's in-stream error event, or a cut connection). Slow tokens
//! are `Reply::event_delay`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::script::{is_zero, millis};

/// No bytes at all for `duration_ms`, after `after_events` events; then the stream continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    pub after_events: usize,
    pub duration_ms: u64,
}

/// How a stream ends early. `after_events` counts the events of the format actually sent
/// (Anthropic SSE events incl. `ping`; OpenAI `data:` lines incl. `[DONE]`; Bedrock frames).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Interrupt {
    /// The provider's in-stream error event, then the stream ends cleanly.
    Error(StreamError),
    /// The connection is cut (no terminating chunk, no final event).
    Drop { after_events: usize },
}

impl Interrupt {
    pub fn after_events(&self) -> usize {
        match self {
            Self::Error(e) => e.after_events,
            Self::Drop { after_events } => *after_events,
        }
    }
}

/// A provider error inside a stream. The type names are per format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    pub after_events: usize,
    #[serde(default = "default_stream_message")]
    pub message: String,
    /// Anthropic `error.type` of the `event: error`.
    #[serde(default = "default_anthropic_type")]
    pub anthropic_type: String,
    /// Bedrock `:exception-type` of the exception frame.
    #[serde(default = "default_bedrock_exception")]
    pub bedrock_exception: String,
    /// OpenAI `error.type` of the error chunk.
    #[serde(default = "default_openai_type")]
    pub openai_type: String,
}

fn default_stream_message() -> String {
    "Overloaded".into()
}
fn default_anthropic_type() -> String {
    "overloaded_error".into()
}
fn default_bedrock_exception() -> String {
    "modelStreamErrorException".into()
}
fn default_openai_type() -> String {
    "server_error".into()
}

impl StreamError {
    /// An "overloaded" error after `after_events` events.
    pub fn after(after_events: usize) -> Self {
        Self {
            after_events,
            message: default_stream_message(),
            anthropic_type: default_anthropic_type(),
            bedrock_exception: default_bedrock_exception(),
            openai_type: default_openai_type(),
        }
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn anthropic_type(mut self, error_type: impl Into<String>) -> Self {
        self.anthropic_type = error_type.into();
        self
    }

    pub fn bedrock_exception(mut self, exception: impl Into<String>) -> Self {
        self.bedrock_exception = exception.into();
        self
    }

    pub fn openai_type(mut self, error_type: impl Into<String>) -> Self {
        self.openai_type = error_type.into();
        self
    }
}

/// An HTTP error answered before any stream starts, in the error shape of the request's
/// format (Anthropic `{"type":"error","error":{..}}`, AWS JSON error with `x-amzn-ErrorType`,
/// OpenAI `{"error":{..}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub status: u16,
    /// Error message; default derived from the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Overrides the format's error type (Anthropic `error.type`, Bedrock `x-amzn-ErrorType`,
    /// OpenAI `error.type`); default derived from the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// `retry-after` header, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// A body sent verbatim instead of the format's error shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Extra response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Wait this long before answering.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
}

impl Fault {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            message: None,
            error_type: None,
            retry_after: None,
            body: None,
            headers: BTreeMap::new(),
            delay_ms: 0,
        }
    }

    /// 429 rate limited.
    pub fn rate_limited() -> Self {
        Self::status(429)
    }

    /// 529 overloaded (Anthropic).
    pub fn overloaded() -> Self {
        Self::status(529)
    }

    pub fn server_error() -> Self {
        Self::status(500)
    }

    pub fn unavailable() -> Self {
        Self::status(503)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::status(400).message(message)
    }

    pub fn unauthorized() -> Self {
        Self::status(401)
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn error_type(mut self, error_type: impl Into<String>) -> Self {
        self.error_type = Some(error_type.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay_ms = millis(delay);
        self
    }

    /// The message to send: explicit, or a stock one for the status.
    pub fn effective_message(&self) -> String {
        if let Some(message) = &self.message {
            return message.clone();
        }
        match self.status {
            400 => "Invalid request",
            401 => "Invalid authentication credentials",
            403 => "Permission denied",
            404 => "Not found",
            429 => "Rate limit exceeded",
            503 => "Service unavailable",
            529 => "Overloaded",
            _ => "Internal server error",
        }
        .into()
    }
}
