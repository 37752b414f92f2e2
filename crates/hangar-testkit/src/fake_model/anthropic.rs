//! The Anthropic Messages API (`POST /v1/messages`): `text/event-stream` with the documented
//! events (`message_start`, `ping`, `content_block_start`/`_delta`/`_stop` per block with
//! `text_delta`, `thinking_delta`, `signature_delta` and `input_json_delta`, `message_delta`,
//! `message_stop`, and `error` for in-stream errors), or one message JSON when `stream` is not
//! true. The event structs here are also the payloads Bedrock's InvokeModelWithResponseStream
//! wraps (see `bedrock.rs`).
//!
//! Requests need an `x-api-key` (401 `authentication_error` otherwise) and an
//! `anthropic-version` header (400 `invalid_request_error` otherwise, as the real API does), and
//! a body with `model`, `messages` and `max_tokens`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Serialize;

use super::{
    Block, Exchange, Kind, RenderCtx, Reply, Response, Shared, WireFormat, check_fields, fault_parts,
    json_response, sse_event, sse_headers, stream_body, to_json,
};

/// One streamed event. Serialised with `type` first, like the real API.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event {
    MessageStart {
        message: Message,
    },
    Ping,
    ContentBlockStart {
        index: usize,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: StopDelta,
        usage: OutputUsage,
    },
    MessageStop {
        /// Only on Bedrock, which appends its metrics to the last event.
        #[serde(
            rename = "amazon-bedrock-invocationMetrics",
            skip_serializing_if = "Option::is_none"
        )]
        metrics: Option<InvocationMetrics>,
    },
    Error {
        error: ErrorBody,
    },
}

impl Event {
    /// The SSE `event:` name (the `type`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::Ping => "ping",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop { .. } => "message_stop",
            Self::Error { .. } => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: String,
    pub content: Vec<ContentBlock>,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: ApiUsage,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ContentBlock {
    Text {
        text: String,
    },
    Thinking {
        thinking: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    RedactedThinking {
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: serde_json::Value,
    },
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub(crate) enum Delta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "signature_delta")]
    Signature { signature: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StopDelta {
    pub stop_reason: String,
    pub stop_sequence: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ApiUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation: CacheCreation,
    pub output_tokens: u64,
    pub service_tier: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CacheCreation {
    pub ephemeral_5m_input_tokens: u64,
    pub ephemeral_1h_input_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct OutputUsage {
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvocationMetrics {
    pub input_token_count: u64,
    pub output_token_count: u64,
    pub invocation_latency: u64,
    pub first_byte_latency: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_token_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_input_token_count: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// `{"type":"error","error":{"type":..,"message":..}}`.
#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: &'a ErrorBody,
}

fn api_usage(reply: &Reply, output_tokens: u64) -> ApiUsage {
    let usage = reply.usage;
    ApiUsage {
        input_tokens: usage.input_tokens,
        cache_creation_input_tokens: usage.cache_write(),
        cache_read_input_tokens: usage.cache_read,
        cache_creation: CacheCreation {
            ephemeral_5m_input_tokens: usage.cache_write_5m,
            ephemeral_1h_input_tokens: usage.cache_write_1h,
        },
        output_tokens,
        service_tier: "standard",
    }
}

fn message_id(reply: &Reply, ctx: &RenderCtx) -> String {
    reply
        .id
        .clone()
        .unwrap_or_else(|| format!("msg_fake_{:06}", ctx.seq))
}

/// The stream events of a reply, without `ping` (the SSE renderer adds it).
pub(crate) fn stream_events(
    reply: &Reply,
    ctx: &RenderCtx,
    metrics: Option<InvocationMetrics>,
) -> Vec<Event> {
    let mut events = vec![Event::MessageStart {
        message: Message {
            id: message_id(reply, ctx),
            kind: "message",
            role: "assistant",
            model: ctx.model.clone(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: api_usage(reply, reply.usage.output_tokens.min(1)),
        },
    }];
    for (index, block) in reply.content.iter().enumerate() {
        let delta = |delta| Event::ContentBlockDelta { index, delta };
        match block {
            Block::Text { text } => {
                events.push(Event::ContentBlockStart {
                    index,
                    content_block: ContentBlock::Text { text: String::new() },
                });
                events.extend(text.iter().map(|t| delta(Delta::Text { text: t.clone() })));
            }
            Block::Thinking { thinking, signature } => {
                events.push(Event::ContentBlockStart {
                    index,
                    content_block: ContentBlock::Thinking {
                        thinking: String::new(),
                        signature: None,
                    },
                });
                events.extend(
                    thinking
                        .iter()
                        .map(|t| delta(Delta::Thinking { thinking: t.clone() })),
                );
                if !signature.is_empty() {
                    events.push(delta(Delta::Signature {
                        signature: signature.clone(),
                    }));
                }
            }
            Block::RedactedThinking { data } => events.push(Event::ContentBlockStart {
                index,
                content_block: ContentBlock::RedactedThinking { data: data.clone() },
            }),
            Block::ToolUse { id, name, .. } => {
                events.push(Event::ContentBlockStart {
                    index,
                    content_block: ContentBlock::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: serde_json::json!({}),
                    },
                });
                events.extend(
                    block
                        .input_fragments()
                        .into_iter()
                        .map(|partial_json| delta(Delta::InputJson { partial_json })),
                );
            }
        }
        events.push(Event::ContentBlockStop { index });
    }
    events.push(Event::MessageDelta {
        delta: StopDelta {
            stop_reason: reply.effective_stop_reason(),
            stop_sequence: reply.stop_sequence.clone(),
        },
        usage: OutputUsage {
            output_tokens: reply.usage.output_tokens,
        },
    });
    events.push(Event::MessageStop { metrics });
    events
}

/// The whole (non-streamed) message JSON of a reply.
fn full_message(reply: &Reply, ctx: &RenderCtx) -> Message {
    let content = reply
        .content
        .iter()
        .map(|block| match block {
            Block::Text { text } => ContentBlock::Text { text: text.concat() },
            Block::Thinking { thinking, signature } => ContentBlock::Thinking {
                thinking: thinking.concat(),
                signature: Some(signature.clone()),
            },
            Block::RedactedThinking { data } => ContentBlock::RedactedThinking { data: data.clone() },
            Block::ToolUse { id, name, input, .. } => ContentBlock::ToolUse {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
            },
        })
        .collect();
    Message {
        id: message_id(reply, ctx),
        kind: "message",
        role: "assistant",
        model: ctx.model.clone(),
        content,
        stop_reason: Some(reply.effective_stop_reason()),
        stop_sequence: reply.stop_sequence.clone(),
        usage: api_usage(reply, reply.usage.output_tokens),
    }
}

/// The Anthropic error body.
pub(crate) fn error_json(kind: &str, message: &str) -> String {
    to_json(&ErrorEnvelope {
        kind: "error",
        error: &ErrorBody {
            kind: kind.into(),
            message: message.into(),
        },
    })
}

/// Anthropic's `error.type` for an HTTP status.
pub(crate) fn error_type_for(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> axum::response::Response {
    json_response(status, HeaderMap::new(), error_json(kind, message))
}

/// `POST /v1/messages`.
pub(crate) async fn messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut exchange = Exchange::new(shared, WireFormat::Anthropic, &method, &uri, &headers, &body);
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    match (key, exchange.shared().api_key.as_deref()) {
        (None, _) => {
            let response = error_response(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
            );
            return exchange.finish(response, None);
        }
        (Some(key), Some(expected)) if key != expected => {
            let response = error_response(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
            );
            return exchange.finish(response, None);
        }
        _ => {}
    }
    if !headers.contains_key("anthropic-version") {
        let response = error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
        return exchange.finish(response, None);
    }
    let fields = [
        ("model", Kind::String),
        ("messages", Kind::Array),
        ("max_tokens", Kind::Integer),
    ];
    if let Err(message) = check_fields(exchange.body(), &fields) {
        let response = error_response(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
        return exchange.finish(response, None);
    }
    let stream = exchange
        .body()
        .and_then(|b| b.get("stream"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let Some((index, response)) = exchange.next_response() else {
        let response = error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "fake model script exhausted: no response queued for this request",
        );
        return exchange.finish(response, None);
    };
    let response = match response {
        Response::Fault(fault) => {
            let kind = fault
                .error_type
                .clone()
                .unwrap_or_else(|| error_type_for(fault.status).into());
            let rendered = error_json(&kind, &fault.effective_message());
            let (status, headers, body) = fault_parts(&fault, rendered).await;
            json_response(status, headers, body)
        }
        Response::Reply(reply) => {
            let ctx = RenderCtx::new(exchange.seq(), exchange.model(), &reply);
            if stream {
                sse_response(&reply, &ctx)
            } else {
                json_response(
                    StatusCode::OK,
                    HeaderMap::new(),
                    to_json(&full_message(&reply, &ctx)),
                )
            }
        }
    };
    exchange.finish(response, Some(index))
}

fn sse_response(reply: &Reply, ctx: &RenderCtx) -> axum::response::Response {
    let mut events = stream_events(reply, ctx, None);
    events.insert(1, Event::Ping);
    let encoded = events
        .iter()
        .map(|e| sse_event(Some(e.name()), &to_json(e)))
        .collect();
    let body = stream_body(reply, encoded, |error| {
        let event = Event::Error {
            error: ErrorBody {
                kind: error.anthropic_type.clone(),
                message: error.message.clone(),
            },
        };
        sse_event(Some(event.name()), &to_json(&event))
    });
    let headers = sse_headers("request-id", format!("req_fake_{:06}", ctx.seq));
    (StatusCode::OK, headers, body).into_response()
}
