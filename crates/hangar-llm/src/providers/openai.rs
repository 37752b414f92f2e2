//! OpenAI-compatible chat completions (OpenAI itself, and the local servers that copy its API:
//! vLLM, Ollama, llama.cpp). It lets Hangar run agents on self-hosted models. Features the API
//! lacks are dropped when encoding: cache marks, thinking blocks, the thinking budget.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::openai_stream::OpenAiDecoder;
use super::{RawDecoder, drive, http};
use crate::{
    ContentBlock, EventStream, ImageSource, LlmError, Message, ModelProvider, ModelRequest, Role,
    StreamEvent, ToolResultContent,
};

/// How to reach an OpenAI-compatible server.
#[derive(Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    /// Up to and including the version path, e.g. `http://127.0.0.1:11434/v1`;
    /// `/chat/completions` is appended.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set (local servers usually need none).
    pub api_key: Option<String>,
    /// Bounds connecting and each wait for response bytes (not the whole call).
    pub timeout: Duration,
}

impl OpenAiConfig {
    /// `base_url` without a key and with a 120 s timeout.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Streams chat completions from an OpenAI-compatible server.
#[derive(Debug, Clone)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
}

impl OpenAiProvider {
    /// Builds the HTTP client. Fails with [`LlmError::Config`] on a bad URL.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        Ok(Self {
            client: http::client(config.timeout)?,
            url: http::endpoint(&config.base_url, "chat/completions")?,
            api_key: config.api_key.filter(|key| !key.trim().is_empty()),
        })
    }

    /// The JSON body this provider POSTs for `request`.
    pub fn request_body(request: &ModelRequest) -> Value {
        let mut messages = Vec::new();
        if !request.system.is_empty() {
            let system: Vec<&str> = request.system.iter().map(|b| b.text.as_str()).collect();
            messages.push(json!({"role": "system", "content": system.join("\n\n")}));
        }
        for message in &request.messages {
            match message.role {
                Role::User => user_messages(message, &mut messages),
                Role::Assistant => messages.push(assistant_message(message)),
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(request.model));
        body.insert("messages".into(), Value::Array(messages));
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|tool| {
                    json!({"type": "function", "function": {
                        "name": tool.name, "description": tool.description, "parameters": tool.input_schema,
                    }})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
        }
        body.insert("max_tokens".into(), json!(request.max_tokens));
        if let Some(temperature) = request.temperature {
            body.insert("temperature".into(), json!(temperature));
        }
        if !request.stop_sequences.is_empty() {
            body.insert("stop".into(), json!(request.stop_sequences));
        }
        body.insert("stream".into(), Value::Bool(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
        Value::Object(body)
    }
}

#[async_trait::async_trait]
impl ModelProvider for OpenAiProvider {
    fn name(&self) -> &str {
        "openai"
    }

    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, LlmError> {
        let mut call = self
            .client
            .post(&self.url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&Self::request_body(request));
        if let Some(key) = &self.api_key {
            call = call.bearer_auth(key);
        }
        let response = http::send(call, &cancel).await?;
        tracing::debug!(model = %request.model, "openai-compatible stream started");
        Ok(drive(
            http::sse_events(response),
            SseDecoder(OpenAiDecoder::new()),
            cancel,
        ))
    }
}

/// Feeds server-sent events to the [`OpenAiDecoder`].
struct SseDecoder(OpenAiDecoder);

impl RawDecoder for SseDecoder {
    type Item = eventsource_stream::Event;

    fn decode(&mut self, event: Self::Item) -> Result<Vec<StreamEvent>, LlmError> {
        self.0.feed(&event.data)
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        self.0.finish().map(|()| Vec::new())
    }
}

fn data_url(source: &ImageSource) -> Value {
    json!({"type": "image_url", "image_url": {"url": format!("data:{};base64,{}", source.media_type, source.data)}})
}

/// Text alone is sent as a plain string (understood by every server); with images, as parts.
fn user_content(parts: Vec<Value>) -> Value {
    let all_text = parts
        .iter()
        .all(|p| p.get("type").and_then(Value::as_str) == Some("text"));
    if all_text {
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        Value::String(texts.join("\n\n"))
    } else {
        Value::Array(parts)
    }
}

/// A user turn: its tool results become `tool` messages (which must directly follow the
/// assistant's `tool_calls`), then the rest is one `user` message. Images inside tool results
/// cannot go into a `tool` message, so they move into that user message.
fn user_messages(message: &Message, out: &mut Vec<Value>) {
    let mut parts = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text { text, .. } => parts.push(json!({"type": "text", "text": text})),
            ContentBlock::Image { source } => parts.push(data_url(source)),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                let mut texts = Vec::new();
                for item in content {
                    match item {
                        ToolResultContent::Text { text } => texts.push(text.as_str()),
                        ToolResultContent::Image { source } => {
                            parts.push(json!({"type": "text", "text": format!("[image from tool call {tool_use_id}]")}));
                            parts.push(data_url(source));
                        }
                    }
                }
                let mut text = texts.join("\n\n");
                if *is_error {
                    text = format!("Error: {text}");
                }
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": text}));
            }
            // Not expected from a user, and meaningless to these servers.
            ContentBlock::ToolUse { .. }
            | ContentBlock::Thinking { .. }
            | ContentBlock::RedactedThinking { .. } => {}
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": user_content(parts)}));
    }
}

fn assistant_message(message: &Message) -> Value {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    for block in &message.content {
        match block {
            ContentBlock::Text { text, .. } => texts.push(text.as_str()),
            ContentBlock::ToolUse { id, name, input } => {
                let arguments = if input.is_null() {
                    "{}".to_owned()
                } else {
                    input.to_string()
                };
                calls.push(
                    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}),
                );
            }
            // Thinking is the provider's own and cannot be replayed here; images and results are
            // not assistant content in this API.
            ContentBlock::Thinking { .. }
            | ContentBlock::RedactedThinking { .. }
            | ContentBlock::Image { .. }
            | ContentBlock::ToolResult { .. } => {}
        }
    }
    let mut object = Map::new();
    object.insert("role".into(), json!("assistant"));
    let content = if texts.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        Value::String(texts.join("\n\n"))
    };
    object.insert("content".into(), content);
    if !calls.is_empty() {
        object.insert("tool_calls".into(), Value::Array(calls));
    }
    Value::Object(object)
}
