//! The Anthropic Messages API over HTTPS with server-sent events. Hangar's normalised request is
//! modelled on this API, so the encoding is nearly one to one; it is shared with Bedrock, whose
//! `InvokeModelWithResponseStream` takes the same JSON body (minus `model`/`stream`, plus a
//! Bedrock `anthropic_version`) and streams the same events, decoded by
//! [`AnthropicDecoder`](super::AnthropicDecoder).

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::anthropic_stream::AnthropicDecoder;
use super::{RawDecoder, drive, http};
use crate::{
    CacheTtl, ContentBlock, EventStream, ImageSource, LlmError, Message, ModelProvider, ModelRequest, Role,
    StreamEvent, SystemBlock, ToolResultContent, ToolSpec,
};

/// The public API endpoint.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The `anthropic-version` header this encoding follows.
pub const ANTHROPIC_DEFAULT_VERSION: &str = "2023-06-01";
/// The body's `anthropic_version` for Anthropic models on Bedrock.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// How to reach the Messages API.
#[derive(Clone, PartialEq, Eq)]
pub struct AnthropicConfig {
    /// Scheme, host and optional path prefix; `/v1/messages` is appended.
    pub base_url: String,
    pub api_key: String,
    /// Bounds connecting and each wait for response bytes (not the whole call).
    pub timeout: Duration,
    /// The `anthropic-version` header.
    pub anthropic_version: String,
}

impl AnthropicConfig {
    /// The public endpoint with `api_key`, a 120 s timeout and version `2023-06-01`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            base_url: ANTHROPIC_DEFAULT_BASE_URL.to_owned(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(120),
            anthropic_version: ANTHROPIC_DEFAULT_VERSION.to_owned(),
        }
    }
}

impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("anthropic_version", &self.anthropic_version)
            .finish()
    }
}

/// Streams messages from the Anthropic Messages API.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    client: reqwest::Client,
    url: String,
    api_key: String,
    version: String,
}

impl AnthropicProvider {
    /// Builds the HTTP client. Fails with [`LlmError::Config`] on an empty key or a bad URL.
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        if config.api_key.trim().is_empty() {
            return Err(LlmError::Config("the Anthropic API key is empty".into()));
        }
        Ok(Self {
            client: http::client(config.timeout)?,
            url: http::endpoint(&config.base_url, "v1/messages")?,
            api_key: config.api_key,
            version: config.anthropic_version,
        })
    }

    /// The JSON body this provider POSTs for `request` (with `"stream": true`).
    pub fn request_body(request: &ModelRequest) -> Value {
        let mut body = encode_body(request);
        body.insert("model".into(), Value::String(request.model.clone()));
        body.insert("stream".into(), Value::Bool(true));
        Value::Object(body)
    }
}

#[async_trait::async_trait]
impl ModelProvider for AnthropicProvider {
    fn name(&self) -> &str {
        "anthropic"
    }

    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, LlmError> {
        let call = self
            .client
            .post(&self.url)
            .header("x-api-key", &self.api_key)
            .header("anthropic-version", &self.version)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&Self::request_body(request));
        let response = http::send(call, &cancel).await?;
        tracing::debug!(model = %request.model, "anthropic stream started");
        Ok(drive(
            http::sse_events(response),
            SseDecoder(AnthropicDecoder::new()),
            cancel,
        ))
    }
}

/// Feeds server-sent events to the [`AnthropicDecoder`].
struct SseDecoder(AnthropicDecoder);

impl RawDecoder for SseDecoder {
    type Item = eventsource_stream::Event;

    fn decode(&mut self, event: Self::Item) -> Result<Vec<StreamEvent>, LlmError> {
        self.0.feed(&event.event, &event.data)
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        self.0.finish().map(|()| Vec::new())
    }
}

/// The Messages API body for `request` without `model` and `stream` (shared with Bedrock).
pub(crate) fn encode_body(request: &ModelRequest) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("max_tokens".into(), json!(request.max_tokens));
    if !request.system.is_empty() {
        body.insert(
            "system".into(),
            Value::Array(request.system.iter().map(system_block).collect()),
        );
    }
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(message).collect()),
    );
    if !request.tools.is_empty() {
        body.insert(
            "tools".into(),
            Value::Array(request.tools.iter().map(tool).collect()),
        );
    }
    if let Some(temperature) = request.temperature {
        body.insert("temperature".into(), json!(temperature));
    }
    if !request.stop_sequences.is_empty() {
        body.insert("stop_sequences".into(), json!(request.stop_sequences));
    }
    if let Some(budget) = request.thinking_budget {
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    body
}

/// The body Bedrock's `InvokeModel*` takes for an Anthropic model.
pub(crate) fn bedrock_body(request: &ModelRequest) -> Value {
    let mut body = encode_body(request);
    body.insert("anthropic_version".into(), json!(BEDROCK_ANTHROPIC_VERSION));
    Value::Object(body)
}

fn cache_control(ttl: Option<CacheTtl>) -> Option<Value> {
    ttl.map(|ttl| match ttl {
        CacheTtl::FiveMinutes => json!({"type": "ephemeral"}),
        CacheTtl::OneHour => json!({"type": "ephemeral", "ttl": "1h"}),
    })
}

fn with_cache(mut block: Value, ttl: Option<CacheTtl>) -> Value {
    if let (Some(control), Some(object)) = (cache_control(ttl), block.as_object_mut()) {
        object.insert("cache_control".into(), control);
    }
    block
}

fn system_block(block: &SystemBlock) -> Value {
    with_cache(json!({"type": "text", "text": block.text}), block.cache)
}

fn image(source: &ImageSource) -> Value {
    json!({
        "type": "image",
        "source": {"type": "base64", "media_type": source.media_type, "data": source.data},
    })
}

fn message(message: &Message) -> Value {
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let content: Vec<Value> = message.content.iter().map(content_block).collect();
    json!({"role": role, "content": content})
}

fn content_block(block: &ContentBlock) -> Value {
    match block {
        ContentBlock::Text { text, cache } => with_cache(json!({"type": "text", "text": text}), *cache),
        ContentBlock::Image { source } => image(source),
        ContentBlock::ToolUse { id, name, input } => {
            // The API requires an object; a missing input is an empty one.
            let input = if input.is_null() { json!({}) } else { input.clone() };
            json!({"type": "tool_use", "id": id, "name": name, "input": input})
        }
        ContentBlock::ToolResult {
            tool_use_id,
            content,
            is_error,
            cache,
        } => {
            let content: Vec<Value> = content
                .iter()
                .map(|part| match part {
                    ToolResultContent::Text { text } => json!({"type": "text", "text": text}),
                    ToolResultContent::Image { source } => image(source),
                })
                .collect();
            let mut block = json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content});
            if *is_error && let Some(object) = block.as_object_mut() {
                object.insert("is_error".into(), Value::Bool(true));
            }
            with_cache(block, *cache)
        }
        ContentBlock::Thinking { thinking, signature } => {
            json!({"type": "thinking", "thinking": thinking, "signature": signature})
        }
        ContentBlock::RedactedThinking { data } => json!({"type": "redacted_thinking", "data": data}),
    }
}

fn tool(tool: &ToolSpec) -> Value {
    with_cache(
        json!({"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}),
        tool.cache,
    )
}
