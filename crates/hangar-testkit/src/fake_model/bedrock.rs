//! AWS Bedrock runtime: `POST /model/{modelId}/invoke-with-response-stream` and
//! `POST /model/{modelId}/converse-stream`, answered with `application/vnd.amazon.eventstream`
//! bodies of AWS event-stream frames encoded by `aws-smithy-eventstream` (CRCs included).
//!
//! - InvokeModelWithResponseStream: one frame per Anthropic stream event (no `ping`), headers
//!   `:event-type: chunk`, `:content-type: application/json`, `:message-type: event`, payload
//!   `{"bytes":"<base64 of the Anthropic event JSON>"}`; the final `message_stop` carries
//!   `amazon-bedrock-invocationMetrics`. The response also has `x-amzn-bedrock-content-type`.
//! - ConverseStream: `messageStart`, then per block `contentBlockStart` (tool use only, as
//!   Bedrock does), `contentBlockDelta` (`text`, `reasoningContent.text`/`.signature`/
//!   `.redactedContent` (base64 of the block's data), `toolUse.input`), `contentBlockStop`, then
//!   `messageStop` and `metadata` (usage and `latencyMs`, the scripted pauses).
//! - In-stream errors are exception frames (`:message-type: exception`, `:exception-type`,
//!   payload `{"message":..}`). Errors before the stream are AWS JSON errors
//!   (`{"message":..}` with `x-amzn-ErrorType`).
//!
//! The model id is recorded percent-decoded. Requests are SigV4-verified (see `sigv4.rs`)
//! when the server has AWS credentials.

use std::sync::Arc;
use std::time::SystemTime;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::Shared;
use super::anthropic::{self, InvocationMetrics};
use super::{
    Block, Exchange, RenderCtx, Reply, Response, SignatureCheck, StreamError, WireFormat, fault_parts,
    json_response, scripted_latency_ms, sigv4, stream_body, to_json,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    Invoke,
    Converse,
}

/// `POST /model/{modelId}/invoke-with-response-stream`.
pub(crate) async fn invoke_stream(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    model_id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> axum::response::Response {
    handle(Api::Invoke, shared, method, uri, headers, model_id, body).await
}

/// `POST /model/{modelId}/converse-stream`.
pub(crate) async fn converse_stream(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    model_id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> axum::response::Response {
    handle(Api::Converse, shared, method, uri, headers, model_id, body).await
}

async fn handle(
    api: Api,
    shared: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    model_id: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> axum::response::Response {
    let format = match api {
        Api::Invoke => WireFormat::BedrockInvoke,
        Api::Converse => WireFormat::BedrockConverse,
    };
    let mut exchange = Exchange::new(shared, format, &method, &uri, &headers, &body);
    let model_id = match model_id {
        Ok(Path(id)) => id,
        Err(e) => {
            let response = aws_error(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                &format!("Invalid model id: {e}"),
            );
            return exchange.finish(response, None);
        }
    };
    exchange.set_model(model_id);
    if let Some(creds) = exchange.shared().aws.clone() {
        match sigv4::verify(&creds, &method, &uri, &headers, &body, SystemTime::now()) {
            Ok(()) => exchange.set_signature(SignatureCheck::Valid),
            Err(rejection) => {
                exchange.set_signature(rejection.check);
                let response = aws_error(StatusCode::FORBIDDEN, rejection.error_type, &rejection.message);
                return exchange.finish(response, None);
            }
        }
    }
    let valid = match api {
        Api::Invoke => validate_invoke(exchange.body()),
        Api::Converse => validate_converse(exchange.body()),
    };
    if let Err(message) = valid {
        return exchange.finish(
            aws_error(StatusCode::BAD_REQUEST, "ValidationException", &message),
            None,
        );
    }
    let Some((index, response)) = exchange.next_response() else {
        let message = "fake model script exhausted: no response queued for this request";
        let response = aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            message,
        );
        return exchange.finish(response, None);
    };
    let response = match response {
        Response::Fault(fault) => {
            let kind = fault
                .error_type
                .clone()
                .unwrap_or_else(|| error_type_for(fault.status).into());
            let rendered = to_json(&AwsError {
                message: &fault.effective_message(),
            });
            let (status, mut headers, body) = fault_parts(&fault, rendered).await;
            if let Ok(value) = kind.parse() {
                headers.insert("x-amzn-errortype", value);
            }
            json_response(status, headers, body)
        }
        Response::Reply(reply) => {
            let ctx = RenderCtx::new(exchange.seq(), exchange.model(), &reply);
            stream_response(api, &reply, &ctx)
        }
    };
    exchange.finish(response, Some(index))
}

#[derive(Serialize)]
struct AwsError<'a> {
    message: &'a str,
}

/// An AWS JSON error: `{"message":..}` with `x-amzn-ErrorType`.
fn aws_error(status: StatusCode, error_type: &str, message: &str) -> axum::response::Response {
    let mut headers = HeaderMap::new();
    if let Ok(value) = error_type.parse() {
        headers.insert("x-amzn-errortype", value);
    }
    json_response(status, headers, to_json(&AwsError { message }))
}

/// Bedrock's `x-amzn-ErrorType` for an HTTP status.
fn error_type_for(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        424 => "ModelErrorException",
        429 => "ThrottlingException",
        503 | 529 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

fn malformed(detail: &str) -> String {
    format!("Malformed input request: #: {detail}, please reformat your input and try again.")
}

/// The Anthropic-on-Bedrock body: `anthropic_version`, `max_tokens`, `messages`; no `model` or
/// `stream` (Bedrock rejects them).
fn validate_invoke(body: Option<&Value>) -> Result<(), String> {
    let Some(Value::Object(object)) = body else {
        return Err("Malformed input request, please reformat your input and try again.".into());
    };
    for key in ["model", "stream"] {
        if object.contains_key(key) {
            return Err(malformed(&format!("extraneous key [{key}] is not permitted")));
        }
    }
    for key in ["anthropic_version", "max_tokens", "messages"] {
        if !object.contains_key(key) {
            return Err(malformed(&format!("required key [{key}] not found")));
        }
    }
    if !object.get("anthropic_version").is_some_and(Value::is_string)
        || !object.get("max_tokens").is_some_and(|v| v.is_u64())
        || !object.get("messages").is_some_and(Value::is_array)
    {
        return Err(malformed(
            "anthropic_version, max_tokens or messages has the wrong type",
        ));
    }
    Ok(())
}

fn validate_converse(body: Option<&Value>) -> Result<(), String> {
    let Some(Value::Object(object)) = body else {
        return Err("Unable to parse request body as JSON".into());
    };
    if !object.get("messages").is_some_and(Value::is_array) {
        return Err(
            "1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null"
                .into(),
        );
    }
    Ok(())
}

/// One event-stream frame with string headers.
fn frame(headers: &[(&'static str, &str)], payload: Vec<u8>) -> Bytes {
    let message = headers
        .iter()
        .fold(Message::new(payload), |message, (name, value)| {
            message.add_header(Header::new(*name, HeaderValue::String(value.to_string().into())))
        });
    let mut buffer = Vec::new();
    if let Err(e) = write_message_to(&message, &mut buffer) {
        tracing::error!(error = %e, "cannot encode event-stream frame");
    }
    Bytes::from(buffer)
}

fn event_frame(event_type: &str, payload: String) -> Bytes {
    frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.into_bytes(),
    )
}

fn exception_frame(error: &StreamError) -> Bytes {
    frame(
        &[
            (":exception-type", &error.bedrock_exception),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        to_json(&AwsError {
            message: &error.message,
        })
        .into_bytes(),
    )
}

#[derive(Serialize)]
struct Chunk {
    bytes: String,
}

fn invoke_frames(reply: &Reply, ctx: &RenderCtx) -> Vec<Bytes> {
    let usage = reply.usage;
    let nonzero = |n: u64| (n > 0).then_some(n);
    // Frame count is known before rendering: it does not depend on the metrics' values.
    let count = anthropic::stream_events(reply, ctx, None).len();
    let latency = scripted_latency_ms(reply, count);
    let metrics = InvocationMetrics {
        input_token_count: usage.input_tokens,
        output_token_count: usage.output_tokens,
        invocation_latency: latency,
        first_byte_latency: latency.min(reply.event_delay_ms),
        cache_read_input_token_count: nonzero(usage.cache_read),
        cache_write_input_token_count: nonzero(usage.cache_write()),
    };
    anthropic::stream_events(reply, ctx, Some(metrics))
        .iter()
        .map(|event| {
            let bytes = BASE64.encode(to_json(event));
            event_frame("chunk", to_json(&Chunk { bytes }))
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageStart {
    role: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    content_block_index: usize,
    start: StartKind,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum StartKind {
    ToolUse {
        #[serde(rename = "toolUseId")]
        tool_use_id: String,
        name: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    content_block_index: usize,
    delta: DeltaKind,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum DeltaKind {
    Text(String),
    ReasoningContent(Reasoning),
    ToolUse { input: String },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Reasoning {
    Text(String),
    Signature(String),
    RedactedContent(String),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BlockStop {
    content_block_index: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    stop_reason: String,
}

#[derive(Serialize)]
struct Metadata {
    usage: ConverseUsage,
    metrics: ConverseMetrics,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseUsage {
    input_tokens: u64,
    output_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_read_input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_input_tokens: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseMetrics {
    latency_ms: u64,
}

/// Converse's `stopReason` for an Anthropic stop reason.
fn converse_stop_reason(stop_reason: &str) -> String {
    match stop_reason {
        "refusal" => "content_filtered",
        "pause_turn" => "end_turn",
        other => other,
    }
    .into()
}

fn converse_frames(reply: &Reply) -> Vec<Bytes> {
    let mut frames = vec![event_frame(
        "messageStart",
        to_json(&MessageStart { role: "assistant" }),
    )];
    for (index, block) in reply.content.iter().enumerate() {
        let delta = |delta| {
            event_frame(
                "contentBlockDelta",
                to_json(&BlockDelta {
                    content_block_index: index,
                    delta,
                }),
            )
        };
        match block {
            Block::Text { text } => frames.extend(text.iter().map(|t| delta(DeltaKind::Text(t.clone())))),
            Block::Thinking { thinking, signature } => {
                frames.extend(
                    thinking
                        .iter()
                        .map(|t| delta(DeltaKind::ReasoningContent(Reasoning::Text(t.clone())))),
                );
                if !signature.is_empty() {
                    frames.push(delta(DeltaKind::ReasoningContent(Reasoning::Signature(
                        signature.clone(),
                    ))));
                }
            }
            Block::RedactedThinking { data } => {
                let blob = BASE64.encode(data.as_bytes());
                frames.push(delta(DeltaKind::ReasoningContent(Reasoning::RedactedContent(
                    blob,
                ))));
            }
            Block::ToolUse { id, name, .. } => {
                let start = BlockStart {
                    content_block_index: index,
                    start: StartKind::ToolUse {
                        tool_use_id: id.clone(),
                        name: name.clone(),
                    },
                };
                frames.push(event_frame("contentBlockStart", to_json(&start)));
                frames.extend(
                    block
                        .input_fragments()
                        .into_iter()
                        .map(|input| delta(DeltaKind::ToolUse { input })),
                );
            }
        }
        let stop = BlockStop {
            content_block_index: index,
        };
        frames.push(event_frame("contentBlockStop", to_json(&stop)));
    }
    let stop = MessageStop {
        stop_reason: converse_stop_reason(&reply.effective_stop_reason()),
    };
    frames.push(event_frame("messageStop", to_json(&stop)));
    let usage = reply.usage;
    let nonzero = |n: u64| (n > 0).then_some(n);
    let metadata = Metadata {
        usage: ConverseUsage {
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            total_tokens: usage.input_tokens + usage.output_tokens + usage.cache_read + usage.cache_write(),
            cache_read_input_tokens: nonzero(usage.cache_read),
            cache_write_input_tokens: nonzero(usage.cache_write()),
        },
        metrics: ConverseMetrics {
            latency_ms: scripted_latency_ms(reply, frames.len() + 1),
        },
    };
    frames.push(event_frame("metadata", to_json(&metadata)));
    frames
}

fn stream_response(api: Api, reply: &Reply, ctx: &RenderCtx) -> axum::response::Response {
    let frames = match api {
        Api::Invoke => invoke_frames(reply, ctx),
        Api::Converse => converse_frames(reply),
    };
    let body = stream_body(reply, frames, exception_frame);
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    if let Ok(value) = format!("00000000-0000-4000-8000-{:012}", ctx.seq).parse() {
        headers.insert("x-amzn-requestid", value);
    }
    if api == Api::Invoke {
        headers.insert(
            "x-amzn-bedrock-content-type",
            axum::http::HeaderValue::from_static("application/json"),
        );
    }
    (StatusCode::OK, headers, body).into_response()
}
