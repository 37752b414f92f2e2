//! OpenAI chat completions (`POST /v1/chat/completions`, also `/chat/completions`). With
//! `"stream": true`: SSE `data: {chunk}` lines of `chat.completion.chunk` objects (a role chunk,
//! content deltas, streamed `tool_calls` with index/id/name then argument fragments, a
//! `finish_reason` chunk, a usage chunk with empty `choices` when
//! `stream_options.include_usage` is true, in which case every other chunk carries
//! `"usage": null`), then `data: [DONE]`. Without it: one `chat.completion` object.
//!
//! Thinking blocks have no chat-completions equivalent and are left out. Usage maps as
//! `prompt_tokens = input_tokens + cache_read`, `prompt_tokens_details.cached_tokens =
//! cache_read`. In-stream errors are a chunk holding only an `error` object, after which the
//! stream ends without `[DONE]`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{
    Block, Exchange, Kind, RenderCtx, Reply, Response, Shared, WireFormat, check_fields, fault_parts,
    json_response, sse_event, sse_headers, stream_body, to_json,
};

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice>,
    /// Absent without `include_usage`; `null` on every chunk but the last with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<ApiUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice {
    index: u32,
    delta: Delta,
    logprobs: Option<()>,
    finish_reason: Option<String>,
}

#[derive(Serialize, Default)]
struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Serialize)]
struct ToolCallDelta {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta,
}

#[derive(Serialize)]
struct FunctionDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    arguments: String,
}

#[derive(Serialize, Clone, Copy)]
struct ApiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize, Clone, Copy)]
struct PromptDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct CompletionDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [CompletionChoice; 1],
    usage: ApiUsage,
}

#[derive(Serialize)]
struct CompletionChoice {
    index: u32,
    message: CompletionMessage,
    logprobs: Option<()>,
    finish_reason: String,
}

#[derive(Serialize)]
struct CompletionMessage {
    role: &'static str,
    content: Option<String>,
    refusal: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall>,
}

#[derive(Serialize)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function,
}

#[derive(Serialize)]
struct Function {
    name: String,
    arguments: String,
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: Option<&'a str>,
}

fn api_usage(reply: &Reply) -> ApiUsage {
    let u = reply.usage;
    let prompt = u.input_tokens + u.cache_read;
    ApiUsage {
        prompt_tokens: prompt,
        completion_tokens: u.output_tokens,
        total_tokens: prompt + u.output_tokens,
        prompt_tokens_details: PromptDetails {
            cached_tokens: u.cache_read,
            audio_tokens: 0,
        },
        completion_tokens_details: CompletionDetails {
            reasoning_tokens: 0,
            audio_tokens: 0,
            accepted_prediction_tokens: 0,
            rejected_prediction_tokens: 0,
        },
    }
}

/// OpenAI's `finish_reason` for an Anthropic stop reason.
fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
    .into()
}

fn completion_id(reply: &Reply, ctx: &RenderCtx) -> String {
    reply
        .id
        .clone()
        .unwrap_or_else(|| format!("chatcmpl-fake-{:06}", ctx.seq))
}

/// The `data:` payloads of a streamed reply, `[DONE]` included.
fn stream_payloads(reply: &Reply, ctx: &RenderCtx, include_usage: bool) -> Vec<String> {
    let id = completion_id(reply, ctx);
    let chunk = |delta: Delta, finish: Option<String>| Chunk {
        id: &id,
        object: "chat.completion.chunk",
        created: ctx.created,
        model: &ctx.model,
        system_fingerprint: "fp_fake",
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        }],
        usage: include_usage.then_some(None),
    };
    let mut out = vec![to_json(&chunk(
        Delta {
            role: Some("assistant"),
            content: Some(String::new()),
            refusal: Some(None),
            tool_calls: None,
        },
        None,
    ))];
    let mut tool_index = 0;
    for block in &reply.content {
        match block {
            Block::Text { text } => out.extend(text.iter().map(|t| {
                to_json(&chunk(
                    Delta {
                        content: Some(t.clone()),
                        ..Delta::default()
                    },
                    None,
                ))
            })),
            Block::ToolUse { id, name, .. } => {
                let call = |id: Option<String>, name: Option<String>, arguments: String| Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: tool_index,
                        kind: id.as_ref().map(|_| "function"),
                        id,
                        function: FunctionDelta { name, arguments },
                    }]),
                    ..Delta::default()
                };
                out.push(to_json(&chunk(
                    call(Some(id.clone()), Some(name.clone()), String::new()),
                    None,
                )));
                for fragment in block.input_fragments() {
                    out.push(to_json(&chunk(call(None, None, fragment), None)));
                }
                tool_index += 1;
            }
            Block::Thinking { .. } | Block::RedactedThinking { .. } => {}
        }
    }
    out.push(to_json(&chunk(
        Delta::default(),
        Some(finish_reason(&reply.effective_stop_reason())),
    )));
    if include_usage {
        out.push(to_json(&Chunk {
            choices: Vec::new(),
            usage: Some(Some(api_usage(reply))),
            ..chunk(Delta::default(), None)
        }));
    }
    out.push("[DONE]".into());
    out
}

fn completion(reply: &Reply, ctx: &RenderCtx) -> String {
    let id = completion_id(reply, ctx);
    let text: String = reply
        .content
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.concat()),
            _ => None,
        })
        .collect();
    let tool_calls = reply
        .content
        .iter()
        .filter_map(|b| match b {
            Block::ToolUse { id, name, .. } => Some(ToolCall {
                id: id.clone(),
                kind: "function",
                function: Function {
                    name: name.clone(),
                    arguments: b.input_fragments().concat(),
                },
            }),
            _ => None,
        })
        .collect::<Vec<_>>();
    let has_text = reply.content.iter().any(|b| matches!(b, Block::Text { .. }));
    to_json(&Completion {
        id: &id,
        object: "chat.completion",
        created: ctx.created,
        model: &ctx.model,
        system_fingerprint: "fp_fake",
        choices: [CompletionChoice {
            index: 0,
            message: CompletionMessage {
                role: "assistant",
                content: has_text.then_some(text),
                refusal: None,
                tool_calls,
            },
            logprobs: None,
            finish_reason: finish_reason(&reply.effective_stop_reason()),
        }],
        usage: api_usage(reply),
    })
}

fn error_json(message: &str, kind: &str, code: Option<&str>) -> String {
    to_json(&ErrorEnvelope {
        error: ErrorBody {
            message,
            kind,
            param: None,
            code,
        },
    })
}

/// OpenAI's error `type` and `code` for an HTTP status.
fn error_type_for(status: u16) -> (&'static str, Option<&'static str>) {
    match status {
        400 | 404 | 413 => ("invalid_request_error", None),
        401 => ("invalid_request_error", Some("invalid_api_key")),
        403 => ("permission_error", None),
        429 => ("requests", Some("rate_limit_exceeded")),
        _ => ("server_error", None),
    }
}

fn error_response(status: StatusCode, message: &str) -> axum::response::Response {
    let (kind, code) = error_type_for(status.as_u16());
    json_response(status, HeaderMap::new(), error_json(message, kind, code))
}

/// `POST /v1/chat/completions` and `POST /chat/completions`.
pub(crate) async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut exchange = Exchange::new(shared, WireFormat::OpenAi, &method, &uri, &headers, &body);
    if let Some(expected) = exchange.shared().api_key.as_deref() {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(expected) {
            let message = match bearer {
                None => {
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                }
                Some(_) => "Incorrect API key provided.",
            };
            return exchange.finish(error_response(StatusCode::UNAUTHORIZED, message), None);
        }
    }
    if let Err(message) = check_fields(
        exchange.body(),
        &[("model", Kind::String), ("messages", Kind::Array)],
    ) {
        return exchange.finish(error_response(StatusCode::BAD_REQUEST, &message), None);
    }
    let body = exchange.body();
    let stream = body
        .and_then(|b| b.get("stream"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_usage = body
        .and_then(|b| b.pointer("/stream_options/include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some((index, response)) = exchange.next_response() else {
        let message = "fake model script exhausted: no response queued for this request";
        return exchange.finish(error_response(StatusCode::INTERNAL_SERVER_ERROR, message), None);
    };
    let response = match response {
        Response::Fault(fault) => {
            let (kind, code) = error_type_for(fault.status);
            let kind = fault.error_type.clone().unwrap_or_else(|| kind.into());
            let rendered = error_json(&fault.effective_message(), &kind, code);
            let (status, headers, body) = fault_parts(&fault, rendered).await;
            json_response(status, headers, body)
        }
        Response::Reply(reply) => {
            let ctx = RenderCtx::new(exchange.seq(), exchange.model(), &reply);
            if stream {
                let events = stream_payloads(&reply, &ctx, include_usage)
                    .iter()
                    .map(|data| sse_event(None, data))
                    .collect();
                let body = stream_body(&reply, events, |error| {
                    sse_event(None, &error_json(&error.message, &error.openai_type, None))
                });
                let headers = sse_headers("x-request-id", format!("req_fake_{:06}", ctx.seq));
                (StatusCode::OK, headers, body).into_response()
            } else {
                json_response(StatusCode::OK, HeaderMap::new(), completion(&reply, &ctx))
            }
        }
    };
    exchange.finish(response, Some(index))
}
