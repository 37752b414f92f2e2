//! What the fake model server saw: one [`RecordedRequest`] per HTTP request (including the ones
//! it rejected), so tests can assert on exactly what a client sent.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which API a request was addressed to (by path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireFormat {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /model/{modelId}/invoke-with-response-stream`.
    BedrockInvoke,
    /// `POST /model/{modelId}/converse-stream`.
    BedrockConverse,
    /// `POST /v1/chat/completions` or `/chat/completions`.
    OpenAi,
    /// Any other path (answered 404).
    Unknown,
}

/// The outcome of SigV4 verification of a Bedrock request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SignatureCheck {
    /// Not a Bedrock request, or the server has no AWS credentials configured.
    NotChecked,
    /// Recomputing the signature with the configured credentials gave the same signature.
    Valid,
    /// No `Authorization` header.
    Missing,
    /// Signed, but not correctly for the configured credentials (the reason says why).
    Invalid { reason: String },
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// 0-based arrival order on this server.
    pub seq: usize,
    pub format: WireFormat,
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Bedrock: the model id from the path, percent-decoded; others: the body's `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Header names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`None` when it was empty or not JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The body as text (lossy UTF-8).
    pub raw_body: String,
    pub received_at: SystemTime,
    pub signature: SignatureCheck,
    /// The HTTP status answered.
    pub status: u16,
    /// Index (0-based, counting every response taken from the script) of the scripted response
    /// served, or `None` when the request was rejected before the script was consulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_index: Option<usize>,
}

impl RecordedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether SigV4 verification succeeded.
    pub fn is_signed_correctly(&self) -> bool {
        self.signature == SignatureCheck::Valid
    }

    /// A value in the JSON body by JSON pointer (e.g. `/messages/0/content`).
    pub fn body_pointer(&self, pointer: &str) -> Option<&Value> {
        self.body.as_ref()?.pointer(pointer)
    }

    /// The body's `messages` array (all three formats have one).
    pub fn messages(&self) -> &[Value] {
        self.body
            .as_ref()
            .and_then(|b| b.get("messages"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The body's `system` field, if any.
    pub fn system(&self) -> Option<&Value> {
        self.body.as_ref()?.get("system")
    }

    /// The body's `tools` array (empty if absent). For Converse this is `toolConfig.tools`.
    pub fn tools(&self) -> &[Value] {
        let Some(body) = self.body.as_ref() else {
            return &[];
        };
        body.get("tools")
            .or_else(|| body.pointer("/toolConfig/tools"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}
