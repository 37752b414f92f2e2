//! End-to-end tests of the fake model server over real HTTP (reqwest), plus round trips through
//! the real AWS SDK for Bedrock.

#![expect(
    clippy::unwrap_used,
    reason = "helpers shared by the tests (outside #[test] fns) fail the test loudly on broken setup"
)]

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use hangar_testkit::fake_model::split_chars;
use hangar_testkit::{
    AwsTestCredentials, Block, FakeModelConfig, FakeModelServer, Fault, Reply, Response, Script,
    SignatureCheck, StreamError, Usage, WireFormat,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

const MODEL_ID_ENCODED: &str = "us.anthropic.claude-3-5-haiku-20241022-v1%3A0";
const MODEL_ID: &str = "us.anthropic.claude-3-5-haiku-20241022-v1:0";

fn rich_reply() -> Reply {
    Reply::new()
        .with_block(Block::thinking_chunks(["Let me ", "think."], "sig-abc"))
        .with_block(Block::text_chunks(["Hel", "lo"]))
        .with_block(Block::tool_use("toolu_1", "Bash", json!({"command": "ls -la"})).split_input(8))
        .usage(
            Usage::new(10, 20)
                .cache_write_5m(3)
                .cache_write_1h(4)
                .cache_read(5),
        )
}

async fn start(script: Script) -> FakeModelServer {
    FakeModelServer::start(FakeModelConfig::new(script))
        .await
        .unwrap()
}

async fn start_aws(script: Script) -> FakeModelServer {
    FakeModelServer::start(FakeModelConfig::new(script).aws(AwsTestCredentials::example()))
        .await
        .unwrap()
}

fn anthropic_body(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

async fn post_anthropic(server: &FakeModelServer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn openai_body(include_usage: bool) -> Value {
    json!({
        "model": "gpt-4o",
        "stream": true,
        "stream_options": {"include_usage": include_usage},
        "messages": [{"role": "user", "content": "hi"}],
    })
}

async fn post_openai(server: &FakeModelServer, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.url()))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Parses SSE text into (event name, data) pairs.
fn parse_sse(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

fn decode_frames(bytes: &[u8]) -> Vec<Message> {
    let mut buffer = bytes;
    let mut frames = Vec::new();
    while !buffer.is_empty() {
        frames.push(read_message_from(&mut buffer).unwrap());
    }
    frames
}

fn header(message: &Message, name: &str) -> String {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .map(|h| h.value().as_string().unwrap().as_str().to_owned())
        .unwrap_or_else(|| panic!("frame has no header {name}"))
}

fn payload(message: &Message) -> Value {
    serde_json::from_slice(message.payload()).unwrap()
}

/// Signs a Bedrock request with `aws-sigv4` (the SDK's signer) and returns the headers to send.
fn sigv4_headers(creds: &AwsTestCredentials, secret: &str, url: &str, body: &[u8]) -> Vec<(String, String)> {
    sigv4_headers_at(creds, secret, url, body, SystemTime::now())
}

fn sigv4_headers_at(
    creds: &AwsTestCredentials,
    secret: &str,
    url: &str,
    body: &[u8],
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity =
        Credentials::new(creds.access_key_id.clone(), secret.to_owned(), None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&creds.region)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let base = [
        ("content-type", "application/json"),
        ("accept", "application/vnd.amazon.eventstream"),
    ];
    let signable =
        SignableRequest::new("POST", url, base.iter().copied(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder().method("POST").uri(url);
    for (name, value) in base {
        request = request.header(name, value);
    }
    let mut request = request.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut request);
    request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect()
}

async fn post_bedrock(
    server: &FakeModelServer,
    op: &str,
    body: &Value,
    secret: Option<&str>,
) -> reqwest::Response {
    let url = format!("{}/model/{MODEL_ID_ENCODED}/{op}", server.url());
    let bytes = serde_json::to_vec(body).unwrap();
    let mut request = reqwest::Client::new().post(&url);
    match secret {
        Some(secret) => {
            for (name, value) in sigv4_headers(&AwsTestCredentials::example(), secret, &url, &bytes) {
                request = request.header(name, value);
            }
        }
        None => request = request.header("content-type", "application/json"),
    }
    request.body(bytes).send().await.unwrap()
}

fn invoke_body() -> Value {
    json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 512,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

fn converse_body() -> Value {
    json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

// ---------------------------------------------------------------- Anthropic

#[tokio::test]
async fn anthropic_sse_transcript_matches_documented_events() {
    let server = start(Script::new().then(rich_reply())).await;
    let response = post_anthropic(&server, &anthropic_body(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    // Byte-exact first event: `type` first, fields in the documented order.
    assert!(text.starts_with(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_fake_000000\",\
         \"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\
         \"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\
         \"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":5,\"cache_creation\":\
         {\"ephemeral_5m_input_tokens\":3,\"ephemeral_1h_input_tokens\":4},\"output_tokens\":1,\
         \"service_tier\":\"standard\"}}}\n\n"
    ));
    let data: Vec<Value> = events
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    for ((name, _), value) in events.iter().zip(&data) {
        assert_eq!(
            value["type"],
            name.as_deref().unwrap(),
            "data.type matches the event name"
        );
    }
    assert_eq!(data[1], json!({"type": "ping"}));
    assert_eq!(
        data[2],
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}})
    );
    assert_eq!(
        data[3],
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}})
    );
    assert_eq!(
        data[5],
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig-abc"}})
    );
    assert_eq!(data[6], json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        data[7],
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        data[8],
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hel"}})
    );
    assert_eq!(
        data[11],
        json!({"type": "content_block_start", "index": 2,
               "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}})
    );
    let partial: String = data[12..15]
        .iter()
        .map(|d| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"command": "ls -la"})
    );
    assert_eq!(
        data[16],
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
               "usage": {"output_tokens": 20}})
    );
    assert_eq!(data[17], json!({"type": "message_stop"}));
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[tokio::test]
async fn anthropic_non_streaming_message_and_redacted_thinking() {
    let reply = Reply::new()
        .with_block(Block::redacted_thinking("EncryptedBlob=="))
        .with_text("Done.")
        .stop_sequence("STOP")
        .usage(Usage::new(3, 4));
    let server = start(Script::new().then(reply.clone()).then(reply)).await;
    let message: Value = post_anthropic(&server, &anthropic_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(
        message["content"],
        json!([{"type": "redacted_thinking", "data": "EncryptedBlob=="}, {"type": "text", "text": "Done."}])
    );
    assert_eq!(message["stop_reason"], "stop_sequence");
    assert_eq!(message["stop_sequence"], "STOP");
    assert_eq!(message["usage"]["output_tokens"], 4);

    let text = post_anthropic(&server, &anthropic_body(true))
        .await
        .text()
        .await
        .unwrap();
    let data: Vec<Value> = parse_sse(&text)
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        data[2],
        json!({"type": "content_block_start", "index": 0,
               "content_block": {"type": "redacted_thinking", "data": "EncryptedBlob=="}})
    );
    assert_eq!(data[3], json!({"type": "content_block_stop", "index": 0}));
}

#[tokio::test]
async fn anthropic_requires_key_and_version_and_rejects_malformed_bodies() {
    let server = start(Script::new().then(Reply::text("unused"))).await;
    let url = format!("{}/v1/messages", server.url());
    let client = reqwest::Client::new();

    let response = client
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let response = client
        .post(&url)
        .header("x-api-key", "k")
        .json(&anthropic_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let response = client
        .post(&url)
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let response = post_anthropic(&server, &json!({"model": "m", "messages": []})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("max_tokens"));

    // None of the rejected requests consumed the scripted reply; all were recorded.
    assert_eq!(server.remaining(), 1);
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 400, 400, 400]);
    assert!(server.requests().iter().all(|r| r.script_index.is_none()));
}

#[tokio::test]
async fn configured_api_key_must_match() {
    let config =
        FakeModelConfig::new(Script::new().then(Reply::text("a")).then(Reply::text("b"))).api_key("sk-right");
    let server = FakeModelServer::start(config).await.unwrap();
    assert_eq!(post_anthropic(&server, &anthropic_body(true)).await.status(), 401);
    assert_eq!(post_openai(&server, &openai_body(false)).await.status(), 401);
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", server.url()))
        .bearer_auth("sk-right")
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

// ---------------------------------------------------------------- OpenAI

#[tokio::test]
async fn openai_chunks_with_tool_calls_usage_and_done() {
    let server = start(Script::new().then(rich_reply())).await;
    let response = post_openai(&server, &openai_body(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let events = parse_sse(&text);
    assert!(
        events.iter().all(|(name, _)| name.is_none()),
        "OpenAI sends data-only events"
    );
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert!(text.ends_with("data: [DONE]\n\n"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks.len(), 9);
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], "chatcmpl-fake-000000");
        assert_eq!(chunk["model"], "gpt-4o");
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": null},
                "logprobs": null, "finish_reason": null}])
    );
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "Hel"}));
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({"content": "lo"}));
    assert_eq!(
        chunks[3]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                               "function": {"name": "Bash", "arguments": ""}}]})
    );
    let arguments: String = chunks[4..7]
        .iter()
        .map(|c| {
            let call = &c["choices"][0]["delta"]["tool_calls"][0];
            assert_eq!(call["index"], 0);
            assert!(call.get("id").is_none());
            call["function"]["arguments"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"command": "ls -la"})
    );
    assert_eq!(chunks[7]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[7]["choices"][0]["finish_reason"], "tool_calls");
    for chunk in &chunks[..8] {
        assert_eq!(chunk["usage"], Value::Null);
        assert!(chunk.as_object().unwrap().contains_key("usage"));
    }
    assert_eq!(chunks[8]["choices"], json!([]));
    assert_eq!(
        chunks[8]["usage"],
        json!({"prompt_tokens": 15, "completion_tokens": 20, "total_tokens": 35,
               "prompt_tokens_details": {"cached_tokens": 5, "audio_tokens": 0},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                             "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}})
    );
}

#[tokio::test]
async fn openai_without_include_usage_and_non_streaming() {
    let server = start(
        Script::new()
            .then(Reply::text("Hi").stop("max_tokens"))
            .then(rich_reply()),
    )
    .await;
    let text = post_openai(&server, &openai_body(false))
        .await
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    assert_eq!(events.len(), 4);
    let finish: Value = serde_json::from_str(&events[2].1).unwrap();
    assert!(finish.get("usage").is_none());
    assert_eq!(finish["choices"][0]["finish_reason"], "length");

    let mut body = openai_body(false);
    body["stream"] = json!(false);
    let completion: Value = post_openai(&server, &body).await.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["choices"][0]["message"]["content"], "Hello");
    assert_eq!(
        completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"command":"ls -la"}"#
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(completion["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
}

// ---------------------------------------------------------------- Bedrock

#[tokio::test]
async fn bedrock_invoke_stream_frames_carry_base64_anthropic_events() {
    let server = start_aws(Script::new().then(rich_reply())).await;
    let response = post_bedrock(
        &server,
        "invoke-with-response-stream",
        &invoke_body(),
        Some(SECRET),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    assert_eq!(
        response.headers()["x-amzn-bedrock-content-type"],
        "application/json"
    );
    let frames = decode_frames(&response.bytes().await.unwrap());
    assert_eq!(frames.len(), 17, "the Anthropic events minus ping");
    let mut events = Vec::new();
    for frame in &frames {
        assert_eq!(header(frame, ":event-type"), "chunk");
        assert_eq!(header(frame, ":content-type"), "application/json");
        assert_eq!(header(frame, ":message-type"), "event");
        let payload = payload(frame);
        assert_eq!(payload.as_object().unwrap().len(), 1);
        let bytes = BASE64.decode(payload["bytes"].as_str().unwrap()).unwrap();
        events.push(serde_json::from_slice::<Value>(&bytes).unwrap());
    }
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "message_start");
    assert!(!types.contains(&"ping"));
    assert_eq!(events[0]["message"]["model"], MODEL_ID);
    assert_eq!(
        events[0]["message"]["usage"]["cache_creation"]["ephemeral_1h_input_tokens"],
        4
    );
    assert_eq!(events[1]["content_block"]["type"], "thinking");
    assert_eq!(types[15], "message_delta");
    assert_eq!(events[16]["type"], "message_stop");
    let metrics = &events[16]["amazon-bedrock-invocationMetrics"];
    assert_eq!(metrics["inputTokenCount"], 10);
    assert_eq!(metrics["outputTokenCount"], 20);
    assert_eq!(metrics["cacheReadInputTokenCount"], 5);
    assert_eq!(metrics["cacheWriteInputTokenCount"], 7);

    let recorded = server.last_request().unwrap();
    assert_eq!(recorded.format, WireFormat::BedrockInvoke);
    assert_eq!(recorded.model.as_deref(), Some(MODEL_ID));
    assert_eq!(
        recorded.path,
        format!("/model/{MODEL_ID_ENCODED}/invoke-with-response-stream")
    );
    assert_eq!(recorded.signature, SignatureCheck::Valid);
    assert!(recorded.is_signed_correctly());
    assert_eq!(recorded.body, Some(invoke_body()));
}

#[tokio::test]
async fn bedrock_converse_stream_frames() {
    let server = start_aws(Script::new().then(rich_reply())).await;
    let response = post_bedrock(&server, "converse-stream", &converse_body(), Some(SECRET)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.amazon.eventstream"
    );
    let frames = decode_frames(&response.bytes().await.unwrap());
    let transcript: Vec<(String, Value)> = frames
        .iter()
        .map(|f| {
            assert_eq!(header(f, ":message-type"), "event");
            assert_eq!(header(f, ":content-type"), "application/json");
            (header(f, ":event-type"), payload(f))
        })
        .collect();
    let expected = vec![
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me "}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "think."}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig-abc"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "Hel"}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"text": "lo"}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "toolu_1", "name": "Bash"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"comman"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "d\":\"ls -"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "la\"}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 2})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 42,
                             "cacheReadInputTokens": 5, "cacheWriteInputTokens": 7},
                   "metrics": {"latencyMs": 0}}),
        ),
    ];
    let expected: Vec<(String, Value)> = expected.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
    assert_eq!(transcript, expected);
    // Byte order of the metadata payload is the documented one.
    assert_eq!(
        std::str::from_utf8(frames[14].payload()).unwrap(),
        r#"{"usage":{"inputTokens":10,"outputTokens":20,"totalTokens":42,"cacheReadInputTokens":5,"cacheWriteInputTokens":7},"metrics":{"latencyMs":0}}"#
    );
    let recorded = server.last_request().unwrap();
    assert_eq!(recorded.format, WireFormat::BedrockConverse);
    assert_eq!(recorded.model.as_deref(), Some(MODEL_ID));
}

#[tokio::test]
async fn sigv4_wrong_secret_and_unsigned_requests_get_403() {
    let server = start_aws(Script::new().then(Reply::text("ok"))).await;

    let response = post_bedrock(&server, "converse-stream", &converse_body(), Some("wrong-secret")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "InvalidSignatureException"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("The request signature we calculated does not match"),
        "{body}"
    );

    let response = post_bedrock(&server, "invoke-with-response-stream", &invoke_body(), None).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );

    // A correctly signed request whose body was altered after signing.
    let url = format!("{}/model/{MODEL_ID_ENCODED}/converse-stream", server.url());
    let signed_body = serde_json::to_vec(&converse_body()).unwrap();
    let mut request = reqwest::Client::new().post(&url);
    for (name, value) in sigv4_headers(&AwsTestCredentials::example(), SECRET, &url, &signed_body) {
        request = request.header(name, value);
    }
    let tampered = serde_json::to_vec(&json!({"messages": []})).unwrap();
    assert_eq!(request.body(tampered).send().await.unwrap().status(), 403);

    // Another access key id.
    let other = AwsTestCredentials::new("AKIDOTHER", SECRET, "us-east-1");
    let body = serde_json::to_vec(&converse_body()).unwrap();
    let mut request = reqwest::Client::new().post(&url);
    for (name, value) in sigv4_headers(&other, SECRET, &url, &body) {
        request = request.header(name, value);
    }
    let response = request.body(body).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "UnrecognizedClientException"
    );

    let checks: Vec<SignatureCheck> = server.requests().into_iter().map(|r| r.signature).collect();
    assert!(matches!(checks[0], SignatureCheck::Invalid { .. }));
    assert_eq!(checks[1], SignatureCheck::Missing);
    assert!(matches!(checks[2], SignatureCheck::Invalid { .. }));
    assert!(matches!(checks[3], SignatureCheck::Invalid { .. }));
    assert_eq!(
        server.remaining(),
        1,
        "rejected requests do not consume the script"
    );

    // And the correct signature still works.
    let response = post_bedrock(&server, "converse-stream", &converse_body(), Some(SECRET)).await;
    assert_eq!(response.status(), 200);
    assert!(server.last_request().unwrap().is_signed_correctly());
}

#[tokio::test]
async fn bedrock_rejects_bodies_bedrock_would_reject() {
    let server = start_aws(Script::new().then(Reply::text("ok"))).await;
    let mut body = invoke_body();
    body["model"] = json!("claude");
    let response = post_bedrock(&server, "invoke-with-response-stream", &body, Some(SECRET)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-amzn-errortype"], "ValidationException");
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("extraneous key [model]")
    );
    let response = post_bedrock(&server, "converse-stream", &json!({"system": []}), Some(SECRET)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(server.remaining(), 1);
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn status_faults_in_each_format_with_retry_after() {
    let script = Script::new()
        .then(Fault::rate_limited().retry_after(2))
        .then(Fault::rate_limited().retry_after(3))
        .then(Fault::rate_limited().retry_after(4))
        .then(Fault::overloaded())
        .then(Fault::unavailable().message("try later"));
    let server = start_aws(script).await;

    let response = post_anthropic(&server, &anthropic_body(true)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Rate limit exceeded"}})
    );

    let response = post_bedrock(&server, "converse-stream", &converse_body(), Some(SECRET)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3");
    assert_eq!(response.headers()["x-amzn-errortype"], "ThrottlingException");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"message": "Rate limit exceeded"})
    );

    let response = post_openai(&server, &openai_body(true)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "4");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let response = post_anthropic(&server, &anthropic_body(true)).await;
    assert_eq!(response.status(), 529);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["type"],
        "overloaded_error"
    );

    let response = post_bedrock(
        &server,
        "invoke-with-response-stream",
        &invoke_body(),
        Some(SECRET),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "ServiceUnavailableException"
    );
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"message": "try later"})
    );

    let indexes: Vec<Option<usize>> = server.requests().iter().map(|r| r.script_index).collect();
    assert_eq!(indexes, [Some(0), Some(1), Some(2), Some(3), Some(4)]);
}

#[tokio::test]
async fn mid_stream_errors_in_each_format() {
    let reply = Reply::text_chunks(["a", "b", "c", "d"]).error_after(4);
    let bedrock_reply = reply.clone().stream_error(
        StreamError::after(3)
            .bedrock_exception("throttlingException")
            .message("slow down"),
    );
    let server = start_aws(Script::new().then(reply.clone()).then(reply).then(bedrock_reply)).await;

    let text = post_anthropic(&server, &anthropic_body(true))
        .await
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
    assert_eq!(
        serde_json::from_str::<Value>(&events[4].1).unwrap(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    let text = post_openai(&server, &openai_body(true))
        .await
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text);
    assert_eq!(events.len(), 5);
    assert_eq!(
        serde_json::from_str::<Value>(&events[4].1).unwrap(),
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": null}})
    );
    assert!(!text.contains("[DONE]"));

    let response = post_bedrock(&server, "converse-stream", &converse_body(), Some(SECRET)).await;
    let frames = decode_frames(&response.bytes().await.unwrap());
    assert_eq!(frames.len(), 4);
    let last = &frames[3];
    assert_eq!(header(last, ":message-type"), "exception");
    assert_eq!(header(last, ":exception-type"), "throttlingException");
    assert_eq!(payload(last), json!({"message": "slow down"}));
}

/// Reads a streaming body until it ends or fails; returns the bytes and whether it failed.
async fn read_until_error(response: reqwest::Response) -> (String, bool) {
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            Err(_) => return (text, true),
        }
    }
    (text, false)
}

#[tokio::test]
async fn dropped_connection_truncates_the_stream() {
    let reply = Reply::text_chunks(["one", "two", "three"]).drop_after(4);
    let server = start_aws(Script::new().then(reply.clone()).then(reply.clone()).then(reply)).await;

    let (text, failed) = read_until_error(post_anthropic(&server, &anthropic_body(true)).await).await;
    assert!(failed, "the client sees a body error");
    let names: Vec<String> = parse_sse(&text).into_iter().filter_map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta"
        ]
    );

    let (text, failed) = read_until_error(post_openai(&server, &openai_body(false)).await).await;
    assert!(failed);
    assert_eq!(parse_sse(&text).len(), 4);
    assert!(!text.contains("[DONE]"));

    let response = post_bedrock(&server, "converse-stream", &converse_body(), Some(SECRET)).await;
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(_) => failed = true,
        }
    }
    assert!(failed);
    assert_eq!(decode_frames(&bytes).len(), 4);
}

#[tokio::test]
async fn slow_tokens_take_at_least_the_scripted_time() {
    let chunks = split_chars("abcdefgh", 1);
    let server =
        start(Script::new().then(Reply::text_chunks(chunks).event_delay(Duration::from_millis(30)))).await;
    let started = Instant::now();
    let text = post_anthropic(&server, &anthropic_body(true))
        .await
        .text()
        .await
        .unwrap();
    let events = parse_sse(&text).len();
    assert_eq!(events, 14);
    assert!(
        started.elapsed() >= Duration::from_millis(30 * (events as u64 - 1)),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn stall_sends_nothing_for_the_scripted_duration_then_continues() {
    let reply = Reply::text_chunks(["a", "b"]).stall_after(3, Duration::from_millis(400));
    let server = start(Script::new().then(reply)).await;
    let response = post_anthropic(&server, &anthropic_body(true)).await;
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    let mut gap = Duration::ZERO;
    let mut last = Instant::now();
    while let Some(chunk) = stream.next().await {
        let now = Instant::now();
        gap = gap.max(now - last);
        last = now;
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert!(gap >= Duration::from_millis(390), "longest gap {gap:?}");
    assert!(text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

// ---------------------------------------------------------------- script and recording

#[tokio::test]
async fn recording_captures_headers_body_and_order() {
    let server = start(Script::new().then(Reply::text("a"))).await;
    server.push(Reply::text("b"));
    let body = anthropic_body(true);
    post_anthropic(&server, &body).await.text().await.unwrap();
    post_openai(&server, &openai_body(true))
        .await
        .text()
        .await
        .unwrap();
    let requests = server.wait_for_requests(2, Duration::from_secs(5)).await.unwrap();
    assert_eq!(requests[0].format, WireFormat::Anthropic);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/messages");
    assert_eq!(requests[0].model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(requests[0].header("X-Api-Key"), Some("sk-test"));
    assert_eq!(requests[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(requests[0].body.as_ref(), Some(&body));
    assert_eq!(requests[0].messages().len(), 1);
    assert_eq!(
        requests[0].body_pointer("/messages/0/content"),
        Some(&json!("hi"))
    );
    assert_eq!(requests[0].signature, SignatureCheck::NotChecked);
    assert_eq!(requests[1].format, WireFormat::OpenAi);
    assert_eq!(requests[1].header("authorization"), Some("Bearer sk-test"));
    assert_eq!(requests[1].script_index, Some(1));
    assert!(requests[0].received_at <= requests[1].received_at);
    assert_eq!(server.requests_for(WireFormat::OpenAi).len(), 1);
    assert!(
        server
            .wait_for_requests(3, Duration::from_millis(50))
            .await
            .is_err()
    );
    server.clear_requests();
    assert_eq!(server.request_count(), 0);
}

#[tokio::test]
async fn exhausted_script_default_and_repeat_last() {
    let server = start(Script::new().then(Reply::text("once"))).await;
    post_anthropic(&server, &anthropic_body(true))
        .await
        .text()
        .await
        .unwrap();
    let response = post_anthropic(&server, &anthropic_body(true)).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("script exhausted")
    );
    server.set_default(Some(Response::Fault(Fault::status(418))));
    assert_eq!(post_anthropic(&server, &anthropic_body(true)).await.status(), 418);

    let server = start(
        Script::new()
            .then(Fault::server_error())
            .then(Reply::text("again"))
            .repeat_last(),
    )
    .await;
    assert_eq!(post_anthropic(&server, &anthropic_body(true)).await.status(), 500);
    for _ in 0..2 {
        let text = post_anthropic(&server, &anthropic_body(true))
            .await
            .text()
            .await
            .unwrap();
        assert!(text.contains(r#""text":"again""#));
    }
}

#[tokio::test]
async fn unknown_routes_are_recorded_404s() {
    let server = start(Script::new()).await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/other", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let recorded = server.last_request().unwrap();
    assert_eq!(recorded.format, WireFormat::Unknown);
    assert_eq!(recorded.status, 404);
}

const EXAMPLE_SCRIPT: &str = r#"{
  "responses": [
    {"fault": {"status": 429, "retry_after": 2}},
    {"reply": {
      "content": [
        {"type": "thinking", "thinking": ["Let me ", "think."], "signature": "sig-abc"},
        {"type": "text", "text": ["Hel", "lo"]},
        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls -la"},
         "input_chunks": ["{\"comman", "d\":\"ls -", "la\"}"]}
      ],
      "usage": {"input_tokens": 10, "output_tokens": 20, "cache_write_5m": 3, "cache_write_1h": 4, "cache_read": 5}
    }},
    {"reply": {"content": [{"type": "text", "text": "partial"}], "event_delay_ms": 20,
               "stall": {"after_events": 2, "duration_ms": 100},
               "interrupt": {"type": "error", "after_events": 3, "message": "Overloaded"}}},
    {"reply": {"content": [{"type": "text", "text": "cut"}], "interrupt": {"type": "drop", "after_events": 2}}}
  ],
  "default": {"reply": {"content": [{"type": "text", "text": "default"}], "stop_reason": "end_turn"}}
}"#;

#[test]
fn script_json_matches_builders_and_round_trips() {
    let parsed = Script::from_json(EXAMPLE_SCRIPT).unwrap();
    let built = Script::new()
        .then(Fault::rate_limited().retry_after(2))
        .then(rich_reply())
        .then(
            Reply::text("partial")
                .event_delay(Duration::from_millis(20))
                .stall_after(2, Duration::from_millis(100))
                .error_after(3),
        )
        .then(Reply::text("cut").drop_after(2))
        .default_response(Reply::text("default").stop("end_turn"));
    assert_eq!(parsed, built);
    let text = built.to_json_pretty().unwrap();
    assert_eq!(Script::from_json(&text).unwrap(), built);
    // Single-chunk text is written back as a plain string.
    assert!(text.contains(r#""text": "partial""#));
}

#[tokio::test]
async fn script_and_config_load_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("script.json");
    std::fs::write(&script_path, EXAMPLE_SCRIPT).unwrap();
    let script = Script::from_json_file(&script_path).unwrap();
    assert_eq!(script.responses.len(), 4);
    let config = FakeModelConfig::from_json_file(&script_path).unwrap();
    assert_eq!(config.script, script);
    assert_eq!(config.aws, None);

    let config_path = dir.path().join("config.json");
    let config = FakeModelConfig::new(script.clone())
        .aws(AwsTestCredentials::example())
        .api_key("k");
    std::fs::write(&config_path, serde_json::to_string(&config).unwrap()).unwrap();
    let loaded = FakeModelConfig::from_json_file(&config_path).unwrap();
    assert_eq!(loaded, config);

    std::fs::write(&config_path, "{\"responses\": [{\"nope\": {}}]}").unwrap();
    assert!(FakeModelConfig::from_json_file(&config_path).is_err());
    assert!(Script::from_json_file(dir.path().join("missing.json")).is_err());

    let server = FakeModelServer::start(FakeModelConfig::from_json_file(&script_path).unwrap())
        .await
        .unwrap();
    assert_eq!(post_anthropic(&server, &anthropic_body(true)).await.status(), 429);
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let server = start(Script::new()).await;
    let url = server.url();
    server.shutdown().await;
    assert!(
        reqwest::Client::new()
            .post(format!("{url}/v1/messages"))
            .send()
            .await
            .is_err()
    );
    let server = start(Script::new()).await;
    let url = server.url();
    drop(server);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        reqwest::Client::new()
            .post(format!("{url}/v1/messages"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn sigv4_rejects_stale_signatures_and_other_regions() {
    let server = start_aws(Script::new().then(Reply::text("ok"))).await;
    let url = format!("{}/model/{MODEL_ID_ENCODED}/converse-stream", server.url());
    let body = serde_json::to_vec(&converse_body()).unwrap();
    let ten_minutes_ago = SystemTime::now() - Duration::from_secs(600);
    let mut request = reqwest::Client::new().post(&url);
    for (name, value) in sigv4_headers_at(
        &AwsTestCredentials::example(),
        SECRET,
        &url,
        &body,
        ten_minutes_ago,
    ) {
        request = request.header(name, value);
    }
    let response = request.body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "InvalidSignatureException"
    );
    let message = response.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("Signature expired"), "{message}");

    let elsewhere = AwsTestCredentials::new("AKIDEXAMPLE", SECRET, "eu-west-1");
    let mut request = reqwest::Client::new().post(&url);
    for (name, value) in sigv4_headers(&elsewhere, SECRET, &url, &body) {
        request = request.header(name, value);
    }
    assert_eq!(request.body(body).send().await.unwrap().status(), 403);
    assert_eq!(server.remaining(), 1);
}

#[tokio::test]
async fn a_client_that_gives_up_during_a_delayed_fault_is_still_recorded() {
    let server = start(Script::new().then(Fault::server_error().delay(Duration::from_secs(2)))).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let result = client
        .post(format!("{}/v1/messages", server.url()))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_body(true))
        .send()
        .await;
    assert!(result.is_err());
    let requests = server.wait_for_requests(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(requests[0].status, 499);
    assert_eq!(requests[0].script_index, Some(0));
}

#[tokio::test]
async fn serve_script_file_reports_a_missing_file() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let error = hangar_testkit::serve_script_file("/nonexistent/script.json", addr)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("/nonexistent/script.json"), "{error}");
}

// ---------------------------------------------------------------- the real AWS SDK

fn sdk_client(server: &FakeModelServer, secret: &str) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Region, retry::RetryConfig};
    let creds = AwsTestCredentials::example();
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(creds.region.clone()))
        .credentials_provider(Credentials::new(creds.access_key_id, secret, None, None, "test"))
        .endpoint_url(server.url())
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

fn sdk_message() -> aws_sdk_bedrockruntime::types::Message {
    use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn aws_sdk_converse_stream_decodes_the_fake_stream() {
    use aws_sdk_bedrockruntime::types::{
        ContentBlockDelta, ContentBlockStart, ConverseStreamOutput as Out, ReasoningContentBlockDelta,
    };
    let server = start_aws(
        Script::new()
            .then(rich_reply())
            .then(Reply::text("x").error_after(1)),
    )
    .await;
    let client = sdk_client(&server, SECRET);
    let mut output = client
        .converse_stream()
        .model_id(MODEL_ID)
        .messages(sdk_message())
        .send()
        .await
        .unwrap();
    let (mut text, mut thinking, mut signature, mut tool_input) =
        (String::new(), String::new(), None, String::new());
    let (mut tool_name, mut stop, mut usage) = (None, None, None);
    while let Some(event) = output.stream.recv().await.unwrap() {
        match event {
            Out::ContentBlockStart(start) => {
                if let Some(ContentBlockStart::ToolUse(tool)) = start.start {
                    tool_name = Some((tool.tool_use_id, tool.name));
                }
            }
            Out::ContentBlockDelta(delta) => match delta.delta.unwrap() {
                ContentBlockDelta::Text(t) => text.push_str(&t),
                ContentBlockDelta::ToolUse(t) => tool_input.push_str(&t.input),
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(t)) => {
                    thinking.push_str(&t)
                }
                ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Signature(s)) => {
                    signature = Some(s)
                }
                other => panic!("unexpected delta {other:?}"),
            },
            Out::MessageStop(m) => stop = Some(m.stop_reason),
            Out::Metadata(m) => usage = m.usage,
            _ => {}
        }
    }
    assert_eq!(text, "Hello");
    assert_eq!(thinking, "Let me think.");
    assert_eq!(signature.as_deref(), Some("sig-abc"));
    assert_eq!(tool_name, Some(("toolu_1".to_owned(), "Bash".to_owned())));
    assert_eq!(
        serde_json::from_str::<Value>(&tool_input).unwrap(),
        json!({"command": "ls -la"})
    );
    assert_eq!(stop.unwrap().as_str(), "tool_use");
    let usage = usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.total_tokens),
        (10, 20, 42)
    );
    assert_eq!(
        (usage.cache_read_input_tokens, usage.cache_write_input_tokens),
        (Some(5), Some(7))
    );

    let recorded = server.last_request().unwrap();
    assert!(
        recorded.is_signed_correctly(),
        "the SDK's own signature verifies: {:?}",
        recorded.signature
    );
    assert_eq!(recorded.model.as_deref(), Some(MODEL_ID));
    assert_eq!(
        recorded.path,
        format!("/model/{MODEL_ID_ENCODED}/converse-stream")
    );

    // A mid-stream exception surfaces as the SDK's typed stream error.
    let mut output = client
        .converse_stream()
        .model_id(MODEL_ID)
        .messages(sdk_message())
        .send()
        .await
        .unwrap();
    let mut error = None;
    loop {
        match output.stream.recv().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let error = error.expect("stream error");
    assert!(
        matches!(
            error.as_service_error(),
            Some(
                aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError::ModelStreamErrorException(_)
            )
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn aws_sdk_invoke_with_response_stream_and_errors() {
    use aws_sdk_bedrockruntime::primitives::Blob;
    use aws_sdk_bedrockruntime::types::ResponseStream;
    let server = start_aws(
        Script::new()
            .then(rich_reply())
            .then(Fault::rate_limited().message("Too many requests")),
    )
    .await;
    let client = sdk_client(&server, SECRET);
    let body = serde_json::to_vec(&invoke_body()).unwrap();
    let mut output = client
        .invoke_model_with_response_stream()
        .model_id(MODEL_ID)
        .content_type("application/json")
        .body(Blob::new(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(output.content_type(), "application/json");
    let mut types = Vec::new();
    while let Some(event) = output.body.recv().await.unwrap() {
        if let ResponseStream::Chunk(part) = event {
            let event: Value = serde_json::from_slice(part.bytes.unwrap().as_ref()).unwrap();
            types.push(event["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(types.len(), 17);
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    assert!(server.last_request().unwrap().is_signed_correctly());

    let error = client
        .invoke_model_with_response_stream()
        .model_id(MODEL_ID)
        .body(Blob::new(body.clone()))
        .send()
        .await
        .unwrap_err();
    let service = error.into_service_error();
    assert!(service.is_throttling_exception(), "{service:?}");

    // Signed with the wrong secret: the SDK reports the 403.
    let bad = sdk_client(&server, "wrong");
    let error = bad
        .invoke_model_with_response_stream()
        .model_id(MODEL_ID)
        .body(Blob::new(body))
        .send()
        .await
        .unwrap_err();
    let raw = error.raw_response().map(|r| r.status().as_u16());
    assert_eq!(raw, Some(403));
}
