//! Conformance and end-to-end tests of the Anthropic, OpenAI-compatible and Bedrock providers.
//!
//! Fixtures under `tests/fixtures/` are transcripts written from the providers' documentation;
//! they are decoded into the normalised stream and compared as whole values. The end-to-end tests
//! run each provider against a tiny HTTP/1.1 server on 127.0.0.1 defined below (raw tokio TCP, so
//! that connections can be dropped or held open at will).

// Test helpers outside `#[test]` functions panic on broken fixtures, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use hangar_llm::{
    AnthropicConfig, AnthropicDecoder, AnthropicProvider, BedrockConfig, BedrockCredentials, BedrockProvider,
    BlockKind, CacheTtl, ContentBlock, ImageSource, LlmError, Message, ModelProvider, ModelRequest,
    OpenAiConfig, OpenAiDecoder, OpenAiProvider, Role, StopReason, StreamEvent, SystemBlock,
    ToolResultContent, ToolSpec, Usage,
};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

type Item = Result<StreamEvent, LlmError>;

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The SSE events of a transcript, parsed by the same parser the providers use.
async fn sse_events(text: &str) -> Vec<eventsource_stream::Event> {
    futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(text.to_owned()))])
        .eventsource()
        .map(|event| event.unwrap())
        .collect()
        .await
}

/// What a provider's stream yields for a transcript: the events, then the error that ends it.
async fn decode_anthropic(text: &str) -> Vec<Item> {
    let mut decoder = AnthropicDecoder::new();
    let mut out = Vec::new();
    for event in sse_events(text).await {
        match decoder.feed(&event.event, &event.data) {
            Ok(events) => out.extend(events.into_iter().map(Ok)),
            Err(error) => {
                out.push(Err(error));
                return out;
            }
        }
    }
    if let Err(error) = decoder.finish() {
        out.push(Err(error));
    }
    out
}

async fn decode_openai(text: &str) -> Vec<Item> {
    let mut decoder = OpenAiDecoder::new();
    let mut out = Vec::new();
    for event in sse_events(text).await {
        match decoder.feed(&event.data) {
            Ok(events) => out.extend(events.into_iter().map(Ok)),
            Err(error) => {
                out.push(Err(error));
                return out;
            }
        }
    }
    if let Err(error) = decoder.finish() {
        out.push(Err(error));
    }
    out
}

fn ok(events: Vec<StreamEvent>) -> Vec<Item> {
    events.into_iter().map(Ok).collect()
}

fn text_start(index: usize) -> StreamEvent {
    StreamEvent::BlockStart {
        index,
        block: BlockKind::Text,
    }
}

fn text(index: usize, text: &str) -> StreamEvent {
    StreamEvent::TextDelta {
        index,
        text: text.into(),
    }
}

fn tool_start(index: usize, id: &str, name: &str) -> StreamEvent {
    StreamEvent::BlockStart {
        index,
        block: BlockKind::ToolUse {
            id: id.into(),
            name: name.into(),
        },
    }
}

fn input(index: usize, json: &str) -> StreamEvent {
    StreamEvent::ToolInputDelta {
        index,
        partial_json: json.into(),
    }
}

fn stop(index: usize) -> StreamEvent {
    StreamEvent::BlockStop { index }
}

fn anthropic_full_expected() -> Vec<Item> {
    let start_usage = Usage {
        input_tokens: 472,
        output_tokens: 2,
        cache_write_5m_tokens: 100,
        cache_write_1h_tokens: 2000,
        cache_read_tokens: 1800,
    };
    ok(vec![
        StreamEvent::MessageStart {
            id: Some("msg_01XFDUDYJgAACzvnptvVoYEL".into()),
            model: Some("claude-sonnet-4-5-20250929".into()),
        },
        StreamEvent::Usage(start_usage),
        StreamEvent::BlockStart {
            index: 0,
            block: BlockKind::Thinking,
        },
        StreamEvent::Ping,
        StreamEvent::ThinkingDelta {
            index: 0,
            thinking: "The user wants the weather in Paris. ".into(),
        },
        StreamEvent::ThinkingDelta {
            index: 0,
            thinking: "I should call get_weather.".into(),
        },
        StreamEvent::SignatureDelta {
            index: 0,
            signature: "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into(),
        },
        stop(0),
        StreamEvent::BlockStart {
            index: 1,
            block: BlockKind::RedactedThinking {
                data: "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP".into(),
            },
        },
        stop(1),
        text_start(2),
        text(2, "Let me check "),
        text(2, "the weather."),
        stop(2),
        tool_start(3, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        input(3, r#"{"location": "Par"#),
        input(3, r#"is, France"}"#),
        stop(3),
        StreamEvent::Usage(Usage {
            output_tokens: 89,
            ..start_usage
        }),
        StreamEvent::Stop {
            reason: StopReason::ToolUse,
            stop_sequence: None,
        },
    ])
}

fn openai_tools_expected() -> Vec<Item> {
    ok(vec![
        StreamEvent::MessageStart {
            id: Some("chatcmpl-9xK2".into()),
            model: Some("gpt-4o-mini-2024-07-18".into()),
        },
        text_start(0),
        text(0, "Checking both"),
        text(0, " cities."),
        tool_start(1, "call_Paris01", "get_weather"),
        input(1, r#"{"locati"#),
        input(1, r#"on": "Paris"}"#),
        tool_start(2, "call_Tokyo02", "get_weather"),
        input(2, r#"{"location": "Tokyo"}"#),
        stop(0),
        stop(1),
        stop(2),
        StreamEvent::Usage(Usage {
            input_tokens: 176,
            output_tokens: 45,
            cache_read_tokens: 1024,
            ..Usage::default()
        }),
        StreamEvent::Stop {
            reason: StopReason::ToolUse,
            stop_sequence: None,
        },
    ])
}

// ---------------------------------------------------------------------------------------------
// Conformance: fixtures decoded as whole values.

#[tokio::test]
async fn anthropic_fixture_with_thinking_tools_cache_usage_and_ping() {
    assert_eq!(
        decode_anthropic(&fixture("anthropic_full.sse")).await,
        anthropic_full_expected()
    );
}

#[tokio::test]
async fn anthropic_fixture_with_midstream_error() {
    let mut expected = ok(vec![
        StreamEvent::MessageStart {
            id: Some("msg_02".into()),
            model: Some("claude-sonnet-4-5-20250929".into()),
        },
        StreamEvent::Usage(Usage {
            input_tokens: 25,
            output_tokens: 1,
            ..Usage::default()
        }),
        text_start(0),
        text(0, "Hello"),
    ]);
    expected.push(Err(LlmError::Stream {
        kind: "overloaded_error".into(),
        message: "Overloaded".into(),
    }));
    assert_eq!(
        decode_anthropic(&fixture("anthropic_midstream_error.sse")).await,
        expected
    );
}

#[tokio::test]
async fn anthropic_fixture_truncated() {
    let items = decode_anthropic(&fixture("anthropic_truncated.sse")).await;
    let (last, events) = items.split_last().unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(
        last,
        &Err(LlmError::Protocol("the stream ended before message_stop".into()))
    );
}

#[tokio::test]
async fn openai_fixture_with_parallel_tool_calls_and_cached_usage() {
    assert_eq!(
        decode_openai(&fixture("openai_tools.sse")).await,
        openai_tools_expected()
    );
}

#[tokio::test]
async fn openai_fixture_truncated() {
    let mut expected = ok(vec![
        StreamEvent::MessageStart {
            id: Some("chatcmpl-9xK2".into()),
            model: Some("gpt-4o-mini-2024-07-18".into()),
        },
        text_start(0),
        text(0, "Hello"),
        text(0, " there"),
    ]);
    expected.push(Err(LlmError::Protocol("the stream ended before [DONE]".into())));
    assert_eq!(decode_openai(&fixture("openai_truncated.sse")).await, expected);
}

// ---------------------------------------------------------------------------------------------
// Request encoding snapshots.

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn png() -> ImageSource {
    ImageSource {
        media_type: "image/png".into(),
        data: PNG.into(),
    }
}

/// A request with every block type, cache marks of both lifetimes, tools and thinking.
fn full_request(model: &str) -> ModelRequest {
    ModelRequest {
        model: model.into(),
        system: vec![
            SystemBlock {
                text: "You are Hangar's assistant.".into(),
                cache: None,
            },
            SystemBlock {
                text: "Tenant policy: be brief.".into(),
                cache: Some(CacheTtl::OneHour),
            },
        ],
        messages: vec![
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::text("What's the weather in Paris and Tokyo? Here is a map."),
                    ContentBlock::Image { source: png() },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::Thinking {
                        thinking: "Two cities, two calls.".into(),
                        signature: "c2lnbmF0dXJl".into(),
                    },
                    ContentBlock::RedactedThinking {
                        data: "cmVkYWN0ZWQ=".into(),
                    },
                    ContentBlock::text("Checking both cities."),
                    ContentBlock::ToolUse {
                        id: "toolu_01".into(),
                        name: "get_weather".into(),
                        input: json!({"location": "Paris"}),
                    },
                    ContentBlock::ToolUse {
                        id: "toolu_02".into(),
                        name: "get_weather".into(),
                        input: json!({"location": "Tokyo"}),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    ContentBlock::ToolResult {
                        tool_use_id: "toolu_01".into(),
                        content: vec![ToolResultContent::Text {
                            text: "18°C, sunny".into(),
                        }],
                        is_error: false,
                        cache: None,
                    },
                    ContentBlock::ToolResult {
                        tool_use_id: "toolu_02".into(),
                        content: vec![
                            ToolResultContent::Text {
                                text: "radar only".into(),
                            },
                            ToolResultContent::Image { source: png() },
                        ],
                        is_error: true,
                        cache: Some(CacheTtl::FiveMinutes),
                    },
                    ContentBlock::Text {
                        text: "Summarise in one line.".into(),
                        cache: Some(CacheTtl::FiveMinutes),
                    },
                ],
            },
        ],
        tools: vec![
            ToolSpec {
                name: "get_weather".into(),
                description: "Current weather for a location.".into(),
                input_schema: json!({"type": "object", "properties": {"location": {"type": "string"}},
                    "required": ["location"]}),
                cache: Some(CacheTtl::FiveMinutes),
            },
            ToolSpec {
                name: "search".into(),
                description: "Web search.".into(),
                input_schema: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
                cache: None,
            },
        ],
        max_tokens: 4096,
        temperature: Some(0.5),
        stop_sequences: vec!["</answer>".into()],
        thinking_budget: Some(2048),
    }
}

fn simple_request(model: &str) -> ModelRequest {
    ModelRequest {
        model: model.into(),
        system: vec![],
        messages: vec![Message::user("Hi")],
        tools: vec![],
        max_tokens: 64,
        temperature: None,
        stop_sequences: vec![],
        thinking_budget: None,
    }
}

#[test]
fn anthropic_request_body_snapshot() {
    insta::assert_json_snapshot!(
        "anthropic_body",
        AnthropicProvider::request_body(&full_request("claude-sonnet-4-5-20250929"))
    );
}

#[test]
fn bedrock_anthropic_body_snapshot() {
    let body =
        BedrockProvider::anthropic_body(&full_request("global.anthropic.claude-sonnet-4-5-20250929-v1:0"));
    assert_eq!(body.get("model"), None);
    assert_eq!(body.get("stream"), None);
    insta::assert_json_snapshot!("bedrock_anthropic_body", body);
}

#[test]
fn openai_request_body_snapshot() {
    insta::assert_json_snapshot!(
        "openai_body",
        OpenAiProvider::request_body(&full_request("gpt-4o-mini"))
    );
}

#[test]
fn anthropic_and_bedrock_bodies_differ_only_in_envelope() {
    let request = full_request("m");
    let mut direct = AnthropicProvider::request_body(&request);
    let mut bedrock = BedrockProvider::anthropic_body(&request);
    let direct = direct.as_object_mut().unwrap();
    let bedrock = bedrock.as_object_mut().unwrap();
    assert_eq!(direct.remove("model"), Some(json!("m")));
    assert_eq!(direct.remove("stream"), Some(json!(true)));
    assert_eq!(
        bedrock.remove("anthropic_version"),
        Some(json!("bedrock-2023-05-31"))
    );
    assert_eq!(direct, bedrock);
}

#[test]
fn bedrock_routes_anthropic_model_ids_to_invoke() {
    for id in [
        "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-20250514-v1:0",
    ] {
        assert!(BedrockProvider::uses_anthropic_body(id), "{id}");
    }
    for id in [
        "amazon.nova-pro-v1:0",
        "us.meta.llama3-3-70b-instruct-v1:0",
        "mistral.mistral-large-2402-v1:0",
    ] {
        assert!(!BedrockProvider::uses_anthropic_body(id), "{id}");
    }
}

// ---------------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server on 127.0.0.1.

#[derive(Debug, Clone)]
struct Captured {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Captured {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Debug, Clone)]
enum After {
    /// Terminate the chunked body properly.
    Finish,
    /// Close the socket in the middle of the chunked body.
    Drop,
    /// Keep the connection open until the client closes it.
    Hold,
}

#[derive(Debug, Clone)]
enum Reply {
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    Chunked {
        headers: Vec<(&'static str, String)>,
        chunks: Vec<Vec<u8>>,
        after: After,
    },
    /// Read the request and never answer (until the client gives up).
    Silent,
}

impl Reply {
    fn sse(body: impl Into<Vec<u8>>) -> Self {
        Self::Chunked {
            headers: vec![("content-type", "text/event-stream".into())],
            chunks: split_events(&body.into()),
            after: After::Finish,
        }
    }

    fn error(status: u16, headers: Vec<(&'static str, String)>, body: &str) -> Self {
        let mut headers = headers;
        headers.push(("content-type", "application/json".into()));
        Self::Full {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Splits an SSE transcript into one chunk per event, so that it arrives in several reads.
fn split_events(body: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(body);
    text.split_inclusive("\n\n")
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

struct Server {
    base: String,
    captured: Arc<Mutex<Vec<Captured>>>,
    /// Receives one message per connection the client closed while the server held it.
    closed: mpsc::UnboundedReceiver<()>,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let captured = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let log = captured.clone();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let reply = replies[next.min(replies.len() - 1)].clone();
                next += 1;
                tokio::spawn(handle(socket, reply, log.clone(), closed_tx.clone()));
            }
        });
        Self {
            base,
            captured,
            closed,
        }
    }

    fn requests(&self) -> Vec<Captured> {
        self.captured.lock().unwrap().clone()
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Captured> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.ok()?;
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Captured {
        method,
        path,
        headers,
        body,
    })
}

async fn wait_for_close(socket: &mut TcpStream, closed: &mpsc::UnboundedSender<()>) {
    let mut sink = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.read(&mut sink)).await {
            Ok(Ok(0) | Err(_)) => {
                let _ = closed.send(());
                return;
            }
            Ok(Ok(_)) => {}
            Err(_) => return,
        }
    }
}

async fn handle(
    mut socket: TcpStream,
    reply: Reply,
    log: Arc<Mutex<Vec<Captured>>>,
    closed: mpsc::UnboundedSender<()>,
) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    log.lock().unwrap().push(request);
    let head = |status: u16, headers: &[(&'static str, String)], framing: String| {
        let mut head = format!("HTTP/1.1 {status} Status\r\nconnection: close\r\n{framing}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    };
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut out = head(status, &headers, format!("content-length: {}", body.len()));
            out.extend_from_slice(&body);
            let _ = socket.write_all(&out).await;
            let _ = socket.shutdown().await;
        }
        Reply::Chunked {
            headers,
            chunks,
            after,
        } => {
            if socket
                .write_all(&head(200, &headers, "transfer-encoding: chunked".into()))
                .await
                .is_err()
            {
                return;
            }
            for chunk in chunks {
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                if socket.write_all(&framed).await.is_err() {
                    return;
                }
                let _ = socket.flush().await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            match after {
                After::Finish => {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                    let _ = socket.shutdown().await;
                }
                After::Drop => drop(socket),
                After::Hold => wait_for_close(&mut socket, &closed).await,
            }
        }
        Reply::Silent => wait_for_close(&mut socket, &closed).await,
    }
}

async fn collect(stream: hangar_llm::EventStream) -> Vec<Item> {
    tokio::time::timeout(Duration::from_secs(20), stream.collect::<Vec<_>>())
        .await
        .expect("the stream did not end")
}

fn anthropic(base: &str) -> AnthropicProvider {
    let mut config = AnthropicConfig::new("sk-ant-test");
    config.base_url = base.into();
    config.timeout = Duration::from_secs(10);
    AnthropicProvider::new(config).unwrap()
}

fn openai(base: &str, key: Option<&str>) -> OpenAiProvider {
    let mut config = OpenAiConfig::new(format!("{base}/v1"));
    config.api_key = key.map(str::to_owned);
    config.timeout = Duration::from_secs(10);
    OpenAiProvider::new(config).unwrap()
}

/// A port nothing listens on.
async fn refused_base() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

async fn stream_error(provider: &dyn ModelProvider, request: &ModelRequest) -> LlmError {
    match provider.stream(request, CancellationToken::new()).await {
        Ok(_) => panic!("expected an error before the stream"),
        Err(error) => error,
    }
}

/// Reads the first `n` items, cancels, and checks that the stream ends with `Cancelled` and that
/// the server saw the connection close.
async fn assert_cancels(provider: &dyn ModelProvider, server: &mut Server, request: &ModelRequest, n: usize) {
    let cancel = CancellationToken::new();
    let mut stream = provider.stream(request, cancel.clone()).await.unwrap();
    for _ in 0..n {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap();
        assert!(matches!(item, Some(Ok(_))), "{item:?}");
    }
    cancel.cancel();
    assert_eq!(stream.next().await, Some(Err(LlmError::Cancelled)));
    assert_eq!(stream.next().await, None);
    drop(stream);
    let closed = tokio::time::timeout(Duration::from_secs(10), server.closed.recv()).await;
    assert_eq!(closed, Ok(Some(())), "the connection was not closed");
}

// ---------------------------------------------------------------------------------------------
// Anthropic over HTTP.

#[tokio::test]
async fn anthropic_streams_over_http() {
    let server = Server::start(vec![Reply::sse(fixture("anthropic_full.sse"))]).await;
    let request = full_request("claude-sonnet-4-5-20250929");
    let stream = anthropic(&server.base)
        .stream(&request, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(collect(stream).await, anthropic_full_expected());
    let sent = &server.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(sent.headers["x-api-key"], "sk-ant-test");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.headers["content-type"], "application/json");
    assert_eq!(sent.json(), AnthropicProvider::request_body(&request));
}

#[tokio::test]
async fn anthropic_http_errors_are_classified() {
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    let limited = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
    let invalid =
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#;
    let server = Server::start(vec![
        Reply::error(429, vec![("retry-after", "7".into())], limited),
        Reply::error(529, vec![], overloaded),
        Reply::error(400, vec![], invalid),
        Reply::error(
            401,
            vec![],
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
        ),
        Reply::error(500, vec![], "upstream exploded"),
    ])
    .await;
    let provider = anthropic(&server.base);
    let request = simple_request("claude-haiku-4-5");
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
            message: "Number of request tokens has exceeded your per-minute rate limit".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::Overloaded {
            retry_after: None,
            message: "Overloaded".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::InvalidRequest {
            status: 400,
            message: "max_tokens: Field required".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::Auth {
            status: 401,
            message: "invalid x-api-key".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::Server {
            status: 500,
            message: "upstream exploded".into()
        }
    );
}

#[tokio::test]
async fn anthropic_connection_refused() {
    let provider = anthropic(&refused_base().await);
    let error = stream_error(&provider, &simple_request("m")).await;
    assert!(matches!(error, LlmError::Connection(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn anthropic_dropped_connection_mid_stream() {
    let transcript = fixture("anthropic_full.sse");
    let mut chunks = split_events(transcript.as_bytes());
    chunks.truncate(5);
    let server = Server::start(vec![Reply::Chunked {
        headers: vec![("content-type", "text/event-stream".into())],
        chunks,
        after: After::Drop,
    }])
    .await;
    let stream = anthropic(&server.base)
        .stream(&simple_request("m"), CancellationToken::new())
        .await
        .unwrap();
    let items = collect(stream).await;
    let (last, events) = items.split_last().unwrap();
    assert_eq!(
        events.to_vec(),
        anthropic_full_expected()[..events.len()].to_vec()
    );
    assert!(
        matches!(last, Err(LlmError::Connection(_) | LlmError::Protocol(_))),
        "{last:?}"
    );
}

#[tokio::test]
async fn anthropic_clean_end_without_message_stop_is_a_protocol_error() {
    let server = Server::start(vec![Reply::sse(fixture("anthropic_truncated.sse"))]).await;
    let stream = anthropic(&server.base)
        .stream(&simple_request("m"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        collect(stream).await,
        decode_anthropic(&fixture("anthropic_truncated.sse")).await
    );
}

#[tokio::test]
async fn anthropic_cancellation_mid_stream_closes_the_connection() {
    let transcript = fixture("anthropic_full.sse");
    let mut chunks = split_events(transcript.as_bytes());
    chunks.truncate(2);
    let mut server = Server::start(vec![Reply::Chunked {
        headers: vec![("content-type", "text/event-stream".into())],
        chunks,
        after: After::Hold,
    }])
    .await;
    let provider = anthropic(&server.base);
    // message_start (2 events) and the thinking block start.
    assert_cancels(&provider, &mut server, &simple_request("m"), 3).await;
}

#[tokio::test]
async fn anthropic_cancellation_before_the_response() {
    let mut server = Server::start(vec![Reply::Silent]).await;
    let provider = anthropic(&server.base);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let result = provider.stream(&simple_request("m"), cancel).await;
    assert!(matches!(result, Err(LlmError::Cancelled)));
    let closed = tokio::time::timeout(Duration::from_secs(10), server.closed.recv()).await;
    assert_eq!(closed, Ok(Some(())));
}

#[test]
fn anthropic_config_is_validated_and_redacted() {
    assert!(matches!(
        AnthropicProvider::new(AnthropicConfig::new("  ")),
        Err(LlmError::Config(_))
    ));
    let mut config = AnthropicConfig::new("sk-secret");
    assert!(!format!("{config:?}").contains("sk-secret"));
    config.base_url = "no scheme".into();
    assert!(matches!(AnthropicProvider::new(config), Err(LlmError::Config(_))));
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible over HTTP.

#[tokio::test]
async fn openai_streams_over_http() {
    let server = Server::start(vec![Reply::sse(fixture("openai_tools.sse"))]).await;
    let request = full_request("gpt-4o-mini");
    let provider = openai(&server.base, Some("sk-openai"));
    let stream = provider.stream(&request, CancellationToken::new()).await.unwrap();
    assert_eq!(collect(stream).await, openai_tools_expected());
    let sent = &server.requests()[0];
    assert_eq!(
        (sent.method.as_str(), sent.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(sent.headers["authorization"], "Bearer sk-openai");
    assert_eq!(sent.json(), OpenAiProvider::request_body(&request));
}

#[tokio::test]
async fn openai_without_a_key_sends_no_authorization() {
    let server = Server::start(vec![Reply::sse(fixture("openai_tools.sse"))]).await;
    let stream = openai(&server.base, None)
        .stream(&simple_request("llama3.2"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(collect(stream).await.len(), openai_tools_expected().len());
    assert!(!server.requests()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn openai_http_errors_are_classified() {
    let server = Server::start(vec![
        Reply::error(
            429,
            vec![("retry-after-ms", "1500".into()), ("retry-after", "2".into())],
            r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        ),
        Reply::error(503, vec![("retry-after", "3".into())], r#"{"error":"server busy"}"#),
        Reply::error(404, vec![], r#"{"error":{"message":"model \"x\" not found, try pulling it first","type":"api_error"}}"#),
    ])
    .await;
    let provider = openai(&server.base, None);
    let request = simple_request("x");
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
            message: "Rate limit reached".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::Overloaded {
            retry_after: Some(Duration::from_secs(3)),
            message: "server busy".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::InvalidRequest {
            status: 404,
            message: "model \"x\" not found, try pulling it first".into()
        }
    );
}

#[tokio::test]
async fn openai_connection_refused() {
    let error = stream_error(&openai(&refused_base().await, None), &simple_request("m")).await;
    assert!(matches!(error, LlmError::Connection(_)), "{error:?}");
}

#[tokio::test]
async fn openai_dropped_and_truncated_streams() {
    let transcript = fixture("openai_tools.sse");
    let mut chunks = split_events(transcript.as_bytes());
    chunks.truncate(3);
    let server = Server::start(vec![
        Reply::Chunked {
            headers: vec![("content-type", "text/event-stream".into())],
            chunks,
            after: After::Drop,
        },
        Reply::sse(fixture("openai_truncated.sse")),
    ])
    .await;
    let provider = openai(&server.base, None);
    let items = collect(
        provider
            .stream(&simple_request("m"), CancellationToken::new())
            .await
            .unwrap(),
    )
    .await;
    let (last, events) = items.split_last().unwrap();
    assert_eq!(events.to_vec(), openai_tools_expected()[..events.len()].to_vec());
    assert!(
        matches!(last, Err(LlmError::Connection(_) | LlmError::Protocol(_))),
        "{last:?}"
    );

    let items = collect(
        provider
            .stream(&simple_request("m"), CancellationToken::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(items, decode_openai(&fixture("openai_truncated.sse")).await);
}

#[tokio::test]
async fn openai_cancellation_mid_stream_closes_the_connection() {
    let transcript = fixture("openai_tools.sse");
    let mut chunks = split_events(transcript.as_bytes());
    chunks.truncate(2);
    let mut server = Server::start(vec![Reply::Chunked {
        headers: vec![("content-type", "text/event-stream".into())],
        chunks,
        after: After::Hold,
    }])
    .await;
    let provider = openai(&server.base, None);
    // MessageStart, BlockStart and the first text delta.
    assert_cancels(&provider, &mut server, &simple_request("m"), 3).await;
}

#[tokio::test]
async fn openai_error_chunk_mid_stream() {
    let body = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n\
                data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n";
    let server = Server::start(vec![Reply::sse(body)]).await;
    let items = collect(
        openai(&server.base, None)
            .stream(&simple_request("m"), CancellationToken::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        items.last(),
        Some(&Err(LlmError::Stream {
            kind: "server_error".into(),
            message: "The server had an error".into()
        }))
    );
    assert_eq!(items.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Bedrock against a local endpoint speaking AWS event-stream frames.

mod bedrock_wire {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

    fn frame(headers: Vec<(&'static str, &str)>, payload: Vec<u8>) -> Vec<u8> {
        let headers = headers
            .into_iter()
            .map(|(name, value)| Header::new(name, HeaderValue::String(value.to_owned().into())))
            .collect();
        let mut out = Vec::new();
        write_message_to(&Message::new_from_parts(headers, payload), &mut out).unwrap();
        out
    }

    /// An event frame (`chunk`, `messageStart`, …) with a JSON payload.
    pub fn event(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
        frame(
            vec![
                (":message-type", "event"),
                (":event-type", event_type),
                (":content-type", "application/json"),
            ],
            payload.to_string().into_bytes(),
        )
    }

    /// An exception frame inside the stream.
    pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
        frame(
            vec![
                (":message-type", "exception"),
                (":exception-type", exception_type),
                (":content-type", "application/json"),
            ],
            serde_json::json!({"message": message}).to_string().into_bytes(),
        )
    }
}

fn eventstream(frames: Vec<Vec<u8>>, after: After) -> Reply {
    Reply::Chunked {
        headers: vec![
            ("content-type", "application/vnd.amazon.eventstream".into()),
            ("x-amzn-bedrock-content-type", "application/json".into()),
            ("x-amzn-requestid", "7c4a0c6e-0000-4000-8000-000000000000".into()),
        ],
        chunks: frames,
        after,
    }
}

/// The Anthropic transcript as Bedrock `chunk` events (base64 of each event's JSON).
async fn anthropic_chunks(transcript: &str) -> Vec<Vec<u8>> {
    sse_events(transcript)
        .await
        .iter()
        .map(|event| {
            let bytes = base64::engine::general_purpose::STANDARD.encode(event.data.as_bytes());
            bedrock_wire::event("chunk", &json!({"bytes": bytes}))
        })
        .collect()
}

async fn bedrock(base: &str) -> BedrockProvider {
    BedrockProvider::new(BedrockConfig {
        region: "us-east-1".into(),
        endpoint_url: Some(base.into()),
        credentials: Some(BedrockCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }),
        timeout: Duration::from_secs(10),
    })
    .await
    .unwrap()
}

fn assert_signed(request: &Captured) {
    let auth = &request.headers["authorization"];
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert!(request.headers.contains_key("x-amz-date"));
}

#[tokio::test]
async fn bedrock_invoke_streams_anthropic_chunks() {
    let frames = anthropic_chunks(&fixture("anthropic_full.sse")).await;
    let server = Server::start(vec![eventstream(frames, After::Finish)]).await;
    let request = full_request("global.anthropic.claude-sonnet-4-5-20250929-v1:0");
    let stream = bedrock(&server.base)
        .await
        .stream(&request, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(collect(stream).await, anthropic_full_expected());
    let sent = &server.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.path,
        "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"
    );
    assert_signed(sent);
    assert_eq!(sent.json(), BedrockProvider::anthropic_body(&request));
}

#[tokio::test]
async fn bedrock_converse_streams_and_maps_the_request() {
    let frames = vec![
        bedrock_wire::event("messageStart", &json!({"role": "assistant"})),
        bedrock_wire::event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": "Checking"}}),
        ),
        bedrock_wire::event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 0, "delta": {"text": " Paris."}}),
        ),
        bedrock_wire::event("contentBlockStop", &json!({"contentBlockIndex": 0})),
        bedrock_wire::event(
            "contentBlockStart",
            &json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather"}}}),
        ),
        bedrock_wire::event(
            "contentBlockDelta",
            &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"location\":\"Paris\"}"}}}),
        ),
        bedrock_wire::event("contentBlockStop", &json!({"contentBlockIndex": 1})),
        bedrock_wire::event("messageStop", &json!({"stopReason": "tool_use"})),
        bedrock_wire::event(
            "metadata",
            &json!({"usage": {"inputTokens": 310, "outputTokens": 27, "totalTokens": 1337,
                "cacheReadInputTokens": 800, "cacheWriteInputTokens": 200}, "metrics": {"latencyMs": 412}}),
        ),
    ];
    let server = Server::start(vec![eventstream(frames, After::Finish)]).await;
    let request = full_request("amazon.nova-pro-v1:0");
    let stream = bedrock(&server.base)
        .await
        .stream(&request, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        collect(stream).await,
        ok(vec![
            StreamEvent::MessageStart {
                id: None,
                model: Some("amazon.nova-pro-v1:0".into()),
            },
            text_start(0),
            text(0, "Checking"),
            text(0, " Paris."),
            stop(0),
            tool_start(1, "tooluse_abc", "get_weather"),
            input(1, r#"{"location":"Paris"}"#),
            stop(1),
            StreamEvent::Usage(Usage {
                input_tokens: 310,
                output_tokens: 27,
                cache_write_5m_tokens: 200,
                cache_write_1h_tokens: 0,
                cache_read_tokens: 800,
            }),
            StreamEvent::Stop {
                reason: StopReason::ToolUse,
                stop_sequence: None,
            },
        ])
    );
    let sent = &server.requests()[0];
    assert_eq!(sent.path, "/model/amazon.nova-pro-v1%3A0/converse-stream");
    assert_signed(sent);
    // The Converse mapping, as the SDK put it on the wire (its documents are hash maps, so the
    // key order of tool schemas varies from run to run: compare with sorted keys).
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!("bedrock_converse_body", sent.json());
    });
}

#[tokio::test]
async fn bedrock_service_errors_are_classified() {
    let error = |status: u16, code: &str, message: &str| {
        Reply::error(
            status,
            vec![(
                "x-amzn-errortype",
                format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            )],
            &json!({"message": message}).to_string(),
        )
    };
    let server = Server::start(vec![
        error(
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        error(
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        error(400, "ValidationException", "max_tokens: range: 1..64000"),
        error(
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        error(500, "InternalServerException", "Internal server error"),
        error(429, "ModelNotReadyException", "The model is not ready"),
    ])
    .await;
    let provider = bedrock(&server.base).await;
    let request = simple_request("us.anthropic.claude-3-5-haiku-20241022-v1:0");
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::RateLimited {
            retry_after: None,
            message: "Too many requests, please wait before trying again.".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::Overloaded {
            retry_after: None,
            message: "Bedrock is unable to process your request.".into()
        }
    );
    assert_eq!(
        stream_error(&provider, &request).await,
        LlmError::InvalidRequest {
            status: 400,
            message: "max_tokens: range: 1..64000".into()
        }
    );
    assert!(matches!(
        stream_error(&provider, &request).await,
        LlmError::Auth { status: 403, .. }
    ));
    assert!(matches!(
        stream_error(&provider, &request).await,
        LlmError::Server { status: 500, .. }
    ));
    let converse = simple_request("amazon.nova-pro-v1:0");
    assert!(matches!(
        stream_error(&provider, &converse).await,
        LlmError::Overloaded { .. }
    ));
    assert_eq!(server.requests().len(), 6, "the SDK must not retry on its own");
}

#[tokio::test]
async fn bedrock_exception_mid_stream_is_a_stream_error() {
    let mut frames = anthropic_chunks(&fixture("anthropic_full.sse")).await;
    frames.truncate(3);
    frames.push(bedrock_wire::exception(
        "modelStreamErrorException",
        "The model stream failed",
    ));
    let server = Server::start(vec![
        eventstream(frames, After::Finish),
        eventstream(
            vec![
                bedrock_wire::event("messageStart", &json!({"role": "assistant"})),
                bedrock_wire::exception("throttlingException", "Too many tokens"),
            ],
            After::Finish,
        ),
    ])
    .await;
    let provider = bedrock(&server.base).await;
    let request = simple_request("anthropic.claude-3-haiku-20240307-v1:0");
    let items = collect(provider.stream(&request, CancellationToken::new()).await.unwrap()).await;
    assert_eq!(items[..4].to_vec(), anthropic_full_expected()[..4].to_vec());
    assert_eq!(
        items[4..].to_vec(),
        vec![Err(LlmError::Stream {
            kind: "modelStreamErrorException".into(),
            message: "The model stream failed".into()
        })]
    );
    let converse = simple_request("amazon.nova-lite-v1:0");
    let items = collect(
        provider
            .stream(&converse, CancellationToken::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        items.last(),
        Some(&Err(LlmError::Stream {
            kind: "throttlingException".into(),
            message: "Too many tokens".into()
        }))
    );
}

#[tokio::test]
async fn bedrock_truncated_streams_and_refused_connections() {
    let mut frames = anthropic_chunks(&fixture("anthropic_full.sse")).await;
    frames.truncate(5);
    let server = Server::start(vec![eventstream(frames, After::Finish)]).await;
    let provider = bedrock(&server.base).await;
    let items = collect(
        provider
            .stream(&simple_request("anthropic.claude-v2"), CancellationToken::new())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        items.last(),
        Some(&Err(LlmError::Protocol(
            "the stream ended before message_stop".into()
        )))
    );

    let refused = bedrock(&refused_base().await).await;
    let error = stream_error(&refused, &simple_request("amazon.nova-pro-v1:0")).await;
    assert!(matches!(error, LlmError::Connection(_)), "{error:?}");
}

#[tokio::test]
async fn bedrock_cancellation_mid_stream_closes_the_connection() {
    let mut frames = anthropic_chunks(&fixture("anthropic_full.sse")).await;
    frames.truncate(2);
    let mut server = Server::start(vec![eventstream(frames, After::Hold)]).await;
    let provider = bedrock(&server.base).await;
    assert_cancels(&provider, &mut server, &simple_request("anthropic.claude-v2"), 3).await;
}
