//! End-to-end simple-chat latency that Hangar adds on top of the model, against the fake model
//! server.
//!
//! `cargo bench -p hangar-server --bench chat` starts, in this process:
//!
//! - the **fake model server** (`hangar_testkit::FakeModelServer`) on its own tokio runtime (one
//!   worker thread), scripted (`Script::default_response`) to answer every request with the same
//!   reply of N text chunks, and a replay of it (below) on the same runtime;
//! - the **real application** (`router`, middleware, SQLite in a fresh temporary directory) on its
//!   own runtime (two worker threads, as in `benches/http.rs`), with its providers pointed at the
//!   fake server through `Registry::new(ProviderSettings { .. })`;
//! - the **client** on a third runtime (one worker thread by default), using hyper's low-level
//!   HTTP/1.1 client over keep-alive connections to 127.0.0.1.
//!
//! For each provider (Anthropic Messages SSE, OpenAI chat-completions SSE, Bedrock
//! InvokeModelWithResponseStream through the AWS SDK) and each N it measures:
//!
//! - **baseline**: the same request body Hangar sends (built with the provider's own
//!   `request_body`), POSTed straight to the fake server; time to the first body byte and to the
//!   end of the body;
//! - **Hangar**: `POST /api/tenants/{t}/simple-chats/stream` creating a new chat each time; time to
//!   the response headers, the first and last `text_delta`, and `done`.
//!
//! Before `done`, Hangar writes the chat, the user message, the usage row, the assistant message
//! and the (fallback) title to SQLite. Those are a fixed cost per exchange, not per event, so the
//! report separates them: time to first token, the streaming span (first to last `text_delta`),
//! the tail (last `text_delta` to `done`), and the per-event slope between the smallest and the
//! largest N.
//!
//! Neither `hangar serve` nor the fake server sets `TCP_NODELAY` on accepted connections (axum
//! 0.8's `serve` leaves it off), so a small write that follows an unacknowledged one waits for
//! the peer's delayed ACK (40 ms on Linux). The bench therefore runs each scenario in these
//! setups (`HANGAR_BENCH_SETUPS`, default `shipped,nodelay`):
//!
//! - `shipped`: Hangar exactly as `hangar serve` binds it, upstream the fake server itself;
//! - `nodelay`: Hangar's listening socket has `TCP_NODELAY`, which Linux copies to every accepted
//!   connection (no code change: the bench binds the listener it passes to `serve`), and the
//!   upstream is a **replay** of the fake server's recorded response (same bytes, headers and
//!   one write per event) from a bench-local axum server whose connections have `TCP_NODELAY`;
//!   the baseline then goes to that replay as well. This isolates what Hangar itself adds;
//! - `hangar-nodelay` (optional): Hangar with `TCP_NODELAY`, upstream the fake server as is.
//!
//! The replies above come all at once, which measures throughput-bound cost. In the setups with
//! the replay there is also a **paced pass**: N = 20 events, one every `HANGAR_BENCH_PACE_MS`
//! (default 5) ms, replayed on a fixed schedule from a thread of its own (the fake server's
//! tokio sleeps have 1 ms resolution and drift), as a model streams tokens. For each event i it
//! reports the lag behind the direct stream (`arrival_i − median direct arrival_i`) and the lag
//! beyond the first token's, with the same measures for the baseline as the noise floor.
//!
//! Environment: `HANGAR_BENCH_REQUESTS` (measured sequential requests per scenario, default 200),
//! `HANGAR_BENCH_WARMUP` (default 20, not counted), `HANGAR_BENCH_CHUNKS` (comma-separated N,
//! default `1,50,500`), `HANGAR_BENCH_CONCURRENCY` (second pass at N = 50 with this many
//! connections, default 16; 0 skips it), `HANGAR_BENCH_CONCURRENT_REQUESTS` (default 400),
//! `HANGAR_BENCH_PROVIDERS` (default `anthropic,openai,bedrock`), `HANGAR_BENCH_CLIENT_THREADS`
//! (default 1), `HANGAR_BENCH_SETUPS`, `HANGAR_BENCH_PACE_MS` (0 skips the paced pass),
//! `HANGAR_BENCH_PACED_REQUESTS` (default 100). Traffic only ever goes to 127.0.0.1. See
//! docs/benchmarks.md, "Model layer".

#![expect(clippy::print_stdout, reason = "a benchmark reports its results on stdout")]

#[path = "support/server.rs"]
mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use axum::serve::ListenerExt;
use hangar_llm::{
    AnthropicProvider, BedrockCredentials, BedrockProvider, Message, ModelRequest, OpenAiProvider,
    ProviderSettings, Registry, SystemBlock,
};
use hangar_server::Llm;
use hangar_testkit::{AwsTestCredentials, FakeModelConfig, FakeModelServer, Reply, Response, Script, Usage};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use support::{ADMIN_KEY, Sender, Server, connect, nodelay_listener};

const TENANT: &str = "bench";
const ANTHROPIC_KEY: &str = "sk-ant-bench-0123456789";
const OPENAI_KEY_ENV: &str = "HANGAR_BENCH_OPENAI_API_KEY";
const SYSTEM_PROMPT: &str = "Be brief.";
const USER_MESSAGE: &str = "Say hello.";
/// As in `chat.rs`: what Hangar asks for.
const MAX_TOKENS: u32 = 4096;
const TEMPERATURE: f32 = 1.0;
/// The target: Hangar adds less than this per streamed event at p99.
const TARGET_PER_EVENT_MS: f64 = 1.0;
/// The N of the concurrent pass and of the main reading.
const MAIN_CHUNKS: usize = 50;

struct Config {
    requests: usize,
    warmup: usize,
    chunks: Vec<usize>,
    concurrency: usize,
    concurrent_requests: usize,
    providers: Vec<Provider>,
    client_threads: usize,
    setups: Vec<Setup>,
    /// The paced pass: N events one `pace` apart (`None`: off).
    paced: Option<Shape>,
    paced_requests: usize,
}

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={raw:?} is not a whole number")),
        _ => Ok(default),
    }
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Config {
    fn from_env() -> Result<Self> {
        let mut chunks = env_list("HANGAR_BENCH_CHUNKS", "1,50,500")
            .iter()
            .map(|n| {
                n.parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| anyhow!("HANGAR_BENCH_CHUNKS: {n:?} is not a positive number"))
            })
            .collect::<Result<Vec<_>>>()?;
        chunks.sort_unstable();
        chunks.dedup();
        let providers = env_list("HANGAR_BENCH_PROVIDERS", "anthropic,openai,bedrock")
            .iter()
            .map(|name| Provider::parse(name))
            .collect::<Result<Vec<_>>>()?;
        let setups = env_list("HANGAR_BENCH_SETUPS", "shipped,nodelay")
            .iter()
            .map(|name| Setup::parse(name))
            .collect::<Result<Vec<_>>>()?;
        let pace = env_usize("HANGAR_BENCH_PACE_MS", 5)?;
        let paced = (pace > 0).then(|| Shape {
            n: 20,
            pace: Duration::from_millis(pace as u64),
        });
        Ok(Self {
            setups,
            paced,
            paced_requests: env_usize("HANGAR_BENCH_PACED_REQUESTS", 100)?.max(1),
            requests: env_usize("HANGAR_BENCH_REQUESTS", 200)?.max(1),
            warmup: env_usize("HANGAR_BENCH_WARMUP", 20)?,
            chunks,
            concurrency: env_usize("HANGAR_BENCH_CONCURRENCY", 16)?,
            concurrent_requests: env_usize("HANGAR_BENCH_CONCURRENT_REQUESTS", 400)?.max(1),
            providers,
            client_threads: env_usize("HANGAR_BENCH_CLIENT_THREADS", 1)?.max(1),
        })
    }
}

/// Which sockets have `TCP_NODELAY`, and what Hangar's upstream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setup {
    name: &'static str,
    /// Hangar's listener has `TCP_NODELAY` (inherited by accepted connections on Linux).
    hangar_nodelay: bool,
    /// The upstream (and the baseline's target) is the `TCP_NODELAY` replay of the fake server.
    replay: bool,
}

impl Setup {
    fn parse(name: &str) -> Result<Self> {
        let (hangar_nodelay, replay) = match name {
            "shipped" => (false, false),
            "nodelay" => (true, true),
            "hangar-nodelay" => (true, false),
            other => {
                bail!("unknown setup {other:?} in HANGAR_BENCH_SETUPS (shipped, nodelay, hangar-nodelay)")
            }
        };
        Ok(Self {
            name: match name {
                "shipped" => "shipped",
                "nodelay" => "nodelay",
                _ => "hangar-nodelay",
            },
            hangar_nodelay,
            replay,
        })
    }

    fn describe(self) -> String {
        format!(
            "hangar listener TCP_NODELAY {} | upstream: {}",
            if self.hangar_nodelay {
                "on"
            } else {
                "off (as `hangar serve`)"
            },
            if self.replay {
                "replay of the fake server's responses, TCP_NODELAY on"
            } else {
                "the fake server (TCP_NODELAY off)"
            }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Provider {
    Anthropic,
    OpenAi,
    Bedrock,
}

impl Provider {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "anthropic" => Ok(Self::Anthropic),
            "openai" => Ok(Self::OpenAi),
            "bedrock" => Ok(Self::Bedrock),
            other => bail!("unknown provider {other:?} in HANGAR_BENCH_PROVIDERS"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
            Self::Bedrock => "bedrock",
        }
    }

    /// Hangar's model id for this provider.
    fn model_id(self) -> &'static str {
        match self {
            Self::Anthropic => "bench-anthropic",
            Self::OpenAi => "bench-openai",
            Self::Bedrock => "bench-bedrock",
        }
    }

    /// The provider's own model name (the model row's `bedrock_model_id`). The Bedrock one starts
    /// with `anthropic.`, so it goes through InvokeModelWithResponseStream with the Anthropic body.
    fn provider_model(self) -> &'static str {
        match self {
            Self::Anthropic => "claude-bench",
            Self::OpenAi => "gpt-bench",
            Self::Bedrock => "anthropic.claude-bench-v1",
        }
    }

    /// The model row Hangar is given.
    fn model_row(self, fake_url: &str) -> Value {
        let mut row = json!({
            "model_id": self.model_id(), "display_name": self.model_id(), "provider": self.name(),
            "bedrock_model_id": self.provider_model(),
            "input_token_price": "0.003", "output_token_price": "0.015", "cache_creation_5m_price": "0.00375",
            "cache_creation_1h_price": "0.006", "cache_read_price": "0.0003"
        });
        if self == Self::OpenAi
            && let Some(object) = row.as_object_mut()
        {
            object.insert("base_url".into(), json!(format!("{fake_url}/v1")));
            object.insert("api_key_env".into(), json!(OPENAI_KEY_ENV));
        }
        row
    }

    /// The request Hangar sends to the provider, built by the provider's own encoder, as a raw
    /// HTTP request to the fake server.
    fn baseline_request(self, fake: SocketAddr) -> Result<Request<Full<Bytes>>> {
        let request = ModelRequest {
            model: self.provider_model().to_owned(),
            system: vec![SystemBlock {
                text: SYSTEM_PROMPT.to_owned(),
                cache: None,
            }],
            messages: vec![Message::user(USER_MESSAGE)],
            tools: Vec::new(),
            max_tokens: MAX_TOKENS,
            temperature: Some(TEMPERATURE),
            stop_sequences: Vec::new(),
            thinking_budget: None,
        };
        let builder = Request::builder()
            .method(Method::POST)
            .header(header::HOST, fake.to_string())
            .header(header::CONTENT_TYPE, "application/json");
        let (builder, body) = match self {
            Self::Anthropic => (
                builder
                    .uri("/v1/messages")
                    .header("x-api-key", ANTHROPIC_KEY)
                    .header("anthropic-version", "2023-06-01")
                    .header(header::ACCEPT, "text/event-stream"),
                AnthropicProvider::request_body(&request),
            ),
            Self::OpenAi => (
                builder
                    .uri("/v1/chat/completions")
                    .header(header::AUTHORIZATION, format!("Bearer {ANTHROPIC_KEY}")),
                OpenAiProvider::request_body(&request),
            ),
            // Unsigned: the fake server checks SigV4 only when it is given AWS credentials.
            Self::Bedrock => (
                builder
                    .uri(format!(
                        "/model/{}/invoke-with-response-stream",
                        self.provider_model()
                    ))
                    .header(header::ACCEPT, "application/json"),
                BedrockProvider::anthropic_body(&request),
            ),
        };
        Ok(builder.body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?)
    }
}

/// The shape of the scripted reply: `n` text chunks, and the pause before every event after the
/// first (zero: the whole reply at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    n: usize,
    pace: Duration,
}

/// The scripted answer.
fn reply(shape: Shape) -> Reply {
    const WORDS: [&str; 8] = ["Hello", " from", " the", " fake", " model", ",", " again", "."];
    Reply::text_chunks((0..shape.n).map(|i| WORDS[i % WORDS.len()]))
        .usage(Usage::new(1_200, shape.n as u64))
        .event_delay(shape.pace)
}

// ---------------------------------------------------------------------------------------------
// The processes under test.

/// Providers that all talk to `upstream_url` (the fake model server or the replay server).
fn providers(upstream_url: &str) -> ProviderSettings {
    let aws = AwsTestCredentials::example();
    ProviderSettings {
        anthropic_api_key: Some(ANTHROPIC_KEY.to_owned()),
        anthropic_base_url: upstream_url.to_owned(),
        aws_region: aws.region.clone(),
        bedrock_endpoint_url: Some(upstream_url.to_owned()),
        bedrock_credentials: Some(BedrockCredentials {
            access_key_id: aws.access_key_id.clone(),
            secret_access_key: aws.secret_access_key.clone(),
            session_token: None,
        }),
        timeout: Duration::from_secs(30),
        env: Arc::new(|name| (name == OPENAI_KEY_ENV).then(|| ANTHROPIC_KEY.to_owned())),
    }
}

/// Whether connections accepted by a [`nodelay_listener`] really have `TCP_NODELAY` here.
async fn nodelay_is_inherited() -> Result<bool> {
    let listener = nodelay_listener()?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (accepted, _) = listener.accept().await?;
    drop(client);
    Ok(accepted.nodelay()?)
}

/// One recorded fake-server response: its headers and its body cut into one piece per event
/// (SSE event or event-stream frame), as the fake server wrote it.
#[derive(Clone)]
struct Recorded {
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
    pieces: Vec<Bytes>,
    /// Replayed before every piece after the first, as the fake server paces its events.
    pace: Duration,
}

type Recordings = Arc<Mutex<HashMap<Provider, Recorded>>>;

/// Cuts a body into its events: after each blank line (SSE) or by the frames' length prefixes.
fn pieces(provider: Provider, body: &Bytes) -> Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let len = match provider {
            Provider::Bedrock => {
                let prefix: [u8; 4] = body
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| anyhow!("truncated event-stream frame"))?;
                u32::from_be_bytes(prefix) as usize
            }
            Provider::Anthropic | Provider::OpenAi => body[at..]
                .windows(2)
                .position(|w| w == b"\n\n")
                .map_or(body.len() - at, |end| end + 2),
        };
        ensure!(
            len > 0 && at + len <= body.len(),
            "bad event boundary at byte {at}"
        );
        out.push(body.slice(at..at + len));
        at += len;
    }
    Ok(out)
}

/// Asks the fake server for its current reply once and records it for the replay.
async fn record(fake: SocketAddr, provider: Provider, pace: Duration) -> Result<Recorded> {
    let mut sender = connect(fake).await?.0;
    sender.ready().await?;
    let response = sender.send_request(provider.baseline_request(fake)?).await?;
    ensure!(
        response.status() == StatusCode::OK,
        "recording: fake server answered {}",
        response.status()
    );
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| {
            ![
                header::TRANSFER_ENCODING,
                header::CONTENT_LENGTH,
                header::DATE,
                header::CONNECTION,
            ]
            .contains(name)
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Recorded {
        headers,
        pieces: pieces(provider, &body)?,
        pace,
    })
}

/// The replay upstream: answers each provider's route with the recorded response, one body
/// frame per event, from connections with `TCP_NODELAY`. The request body is read and dropped.
async fn replay(
    axum::extract::State(recordings): axum::extract::State<Recordings>,
    uri: http::Uri,
    _body: Bytes,
) -> axum::response::Response {
    let path = uri.path();
    let provider = if path == "/v1/messages" {
        Provider::Anthropic
    } else if path.ends_with("/chat/completions") {
        Provider::OpenAi
    } else {
        Provider::Bedrock
    };
    let recorded = recordings.lock().ok().and_then(|r| r.get(&provider).cloned());
    let Some(recorded) = recorded else {
        let mut response = axum::response::Response::new(axum::body::Body::from("nothing recorded"));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return response;
    };
    let body = if recorded.pace.is_zero() {
        axum::body::Body::from_stream(futures::stream::iter(
            recorded.pieces.into_iter().map(Ok::<Bytes, Infallible>),
        ))
    } else {
        // Paced on a thread of its own against a fixed schedule (piece i at start + i × pace):
        // `std::thread::sleep` overshoots by tens of µs, where tokio's timer has a 1 ms
        // resolution and sequential sleeps drift.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(recorded.pieces.len().max(1));
        let pace = recorded.pace;
        let pieces = recorded.pieces;
        let spawned = std::thread::Builder::new()
            .name("replay-pacer".into())
            .spawn(move || {
                let start = Instant::now();
                for (i, piece) in pieces.into_iter().enumerate() {
                    let due = start + pace * u32::try_from(i).unwrap_or(u32::MAX);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if tx.blocking_send(piece).is_err() {
                        break;
                    }
                }
            });
        if let Err(err) = spawned {
            eprintln!("replay: cannot start the pacer thread: {err}");
        }
        axum::body::Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|piece| (Ok::<Bytes, Infallible>(piece), rx))
        }))
    };
    let mut response = axum::response::Response::new(body);
    for (name, value) in recorded.headers {
        response.headers_mut().insert(name, value);
    }
    response
}

/// The upstream the scenarios use: the fake server, and its replay.
struct Upstream {
    fake: FakeModelServer,
    replay: SocketAddr,
    recordings: Recordings,
}

impl Upstream {
    /// Starts the fake server and the replay on `runtime`.
    fn start(runtime: &tokio::runtime::Runtime) -> Result<Self> {
        let recordings: Recordings = Arc::default();
        let app = axum::Router::new()
            .fallback(replay)
            .with_state(recordings.clone());
        let (fake, replay) = runtime.block_on(async {
            let first = reply(Shape {
                n: 1,
                pace: Duration::ZERO,
            });
            let fake =
                FakeModelServer::start(FakeModelConfig::new(Script::new().default_response(first))).await?;
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            let addr = listener.local_addr()?;
            let listener = listener.tap_io(|stream| {
                if let Err(err) = stream.set_nodelay(true) {
                    eprintln!("replay: cannot set TCP_NODELAY: {err}");
                }
            });
            tokio::spawn(async move {
                if let Err(err) = axum::serve(listener, app).await {
                    eprintln!("replay server stopped: {err}");
                }
            });
            anyhow::Ok((fake, addr))
        })?;
        Ok(Self {
            fake,
            replay,
            recordings,
        })
    }

    /// Where Hangar and the baseline send their requests in `setup`.
    fn addr(&self, setup: Setup) -> SocketAddr {
        if setup.replay {
            self.replay
        } else {
            self.fake.addr()
        }
    }

    /// Scripts the reply (and records it for the replay when `setup` uses it).
    fn prepare(
        &self,
        client: &tokio::runtime::Runtime,
        setup: Setup,
        provider: Provider,
        shape: Shape,
    ) -> Result<()> {
        if setup.replay {
            // Recorded without pauses; the replay puts them back.
            let unpaced = Shape {
                pace: Duration::ZERO,
                ..shape
            };
            self.fake.set_default(Some(Response::Reply(reply(unpaced))));
            let recorded = client.block_on(record(self.fake.addr(), provider, shape.pace))?;
            self.recordings
                .lock()
                .map_err(|_| anyhow!("recordings poisoned"))?
                .insert(provider, recorded);
        }
        self.fake.set_default(Some(Response::Reply(reply(shape))));
        self.fake.clear_requests();
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The client.

/// Sends a JSON request to Hangar with the admin key and returns the status and body.
async fn admin_call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Value,
) -> Result<(StatusCode, String)> {
    let mut sender = connect(addr).await?.0;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string())
        .header("x-api-key", ADMIN_KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Microseconds since `start` (saturating at ~71 minutes, far beyond any request here).
fn micros(start: Instant, at: Instant) -> u32 {
    u32::try_from(at.saturating_duration_since(start).as_micros()).unwrap_or(u32::MAX)
}

/// The timings of one exchange, in µs from the send.
#[derive(Debug, Clone, Default)]
struct Sample {
    /// Response headers.
    headers: u32,
    /// Baseline: first body byte. Hangar: first `text_delta`.
    first: u32,
    /// Baseline: end of the body. Hangar: `done`.
    end: u32,
    /// When each text event arrived: baseline, the wire event carrying it; Hangar, its
    /// `text_delta`.
    deltas: Vec<u32>,
}

impl Sample {
    fn last_delta(&self) -> u32 {
        self.deltas.last().copied().unwrap_or(self.end)
    }

    fn first_delta(&self) -> u32 {
        self.deltas.first().copied().unwrap_or(self.end)
    }
}

/// Finds complete wire events (SSE events, or event-stream frames) in a growing body.
#[derive(Default)]
struct WireEvents {
    buffer: Vec<u8>,
    scanned: usize,
    count: usize,
}

impl WireEvents {
    /// Adds `data`; returns how many events completed.
    fn push(&mut self, provider: Provider, data: &[u8]) -> usize {
        self.buffer.extend_from_slice(data);
        let before = self.count;
        loop {
            let rest = &self.buffer[self.scanned..];
            let len = match provider {
                Provider::Bedrock => match rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                    Some(prefix) if rest.len() >= u32::from_be_bytes(prefix) as usize => {
                        u32::from_be_bytes(prefix) as usize
                    }
                    _ => break,
                },
                Provider::Anthropic | Provider::OpenAi => match rest.windows(2).position(|w| w == b"\n\n") {
                    Some(end) => end + 2,
                    None => break,
                },
            };
            if len == 0 {
                break;
            }
            self.scanned += len;
            self.count += 1;
        }
        self.count - before
    }
}

/// One baseline exchange with the upstream.
async fn baseline_exchange(
    sender: &mut Sender,
    provider: Provider,
    upstream: SocketAddr,
    n: usize,
) -> Result<Sample> {
    let request = provider.baseline_request(upstream)?;
    sender.ready().await?;
    let start = Instant::now();
    let response = sender.send_request(request).await?;
    let headers = micros(start, Instant::now());
    let status = response.status();
    let mut body = response.into_body();
    let mut first = None;
    let mut wire = WireEvents::default();
    let mut deltas = Vec::with_capacity(n);
    // The wire events before the first text event: message_start, ping and content_block_start
    // (Anthropic); the role chunk (OpenAI); message_start and content_block_start (Bedrock).
    let offset = match provider {
        Provider::Anthropic => 3,
        Provider::OpenAi => 1,
        Provider::Bedrock => 2,
    };
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let now = micros(start, Instant::now());
        if first.is_none() && !data.is_empty() {
            first = Some(now);
        }
        let before = wire.count;
        let completed = wire.push(provider, &data);
        for index in before..before + completed {
            if index >= offset && index < offset + n {
                deltas.push(now);
            }
        }
    }
    let end = micros(start, Instant::now());
    ensure!(
        status == StatusCode::OK,
        "upstream answered {status}: {}",
        String::from_utf8_lossy(&wire.buffer)
    );
    ensure!(
        deltas.len() == n && wire.scanned == wire.buffer.len(),
        "incomplete baseline body: {} of {n} text events, {} wire events",
        deltas.len(),
        wire.count
    );
    Ok(Sample {
        headers,
        first: first.unwrap_or(end),
        end,
        deltas,
    })
}

fn chat_request(addr: SocketAddr, provider: Provider) -> Result<Request<Full<Bytes>>> {
    let body = json!({
        "user_id": "bench-user", "application_type": "bench", "system_prompt": SYSTEM_PROMPT,
        "model_id": provider.model_id(), "message": USER_MESSAGE
    });
    Ok(Request::builder()
        .method(Method::POST)
        .uri(format!("/api/tenants/{TENANT}/simple-chats/stream"))
        .header(header::HOST, addr.to_string())
        .header("x-api-key", ADMIN_KEY)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "text/event-stream")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?)
}

/// One new simple chat through Hangar, its SSE answer parsed as it arrives.
async fn hangar_exchange(
    sender: &mut Sender,
    provider: Provider,
    addr: SocketAddr,
    n: usize,
) -> Result<Sample> {
    let request = chat_request(addr, provider)?;
    sender.ready().await?;
    let start = Instant::now();
    let response = sender.send_request(request).await?;
    let headers = micros(start, Instant::now());
    let status = response.status();
    let mut body = response.into_body();
    let mut buffer: Vec<u8> = Vec::new();
    let mut done = None;
    let mut deltas = Vec::with_capacity(n);
    let mut outcome = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        let now = micros(start, Instant::now());
        buffer.extend_from_slice(&data);
        let mut consumed = 0;
        while let Some(at) = buffer[consumed..].windows(2).position(|w| w == b"\n\n") {
            let block = std::str::from_utf8(&buffer[consumed..consumed + at])?;
            let mut name = "";
            let mut payload = "";
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim();
                } else if let Some(value) = line.strip_prefix("data:") {
                    payload = value.trim();
                }
            }
            match name {
                "text_delta" => deltas.push(now),
                "done" => {
                    done = Some(now);
                    let value: Value = serde_json::from_str(payload)?;
                    outcome = value["status"].as_str().unwrap_or("?").to_owned();
                }
                "error" => outcome = format!("error event: {payload}"),
                _ => {}
            }
            consumed += at + 2;
        }
        buffer.drain(..consumed);
    }
    ensure!(
        status == StatusCode::OK,
        "Hangar answered {status}: {}",
        String::from_utf8_lossy(&buffer)
    );
    ensure!(
        outcome == "success" && deltas.len() == n,
        "Hangar streamed {} of {n} text deltas, outcome {outcome:?}",
        deltas.len()
    );
    let end = done.ok_or_else(|| anyhow!("no done event"))?;
    Ok(Sample {
        headers,
        first: deltas.first().copied().unwrap_or(end),
        end,
        deltas,
    })
}

/// How many connections send how many requests.
#[derive(Debug, Clone, Copy)]
struct Load {
    connections: usize,
    warmup: usize,
    requests: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Baseline,
    Hangar,
}

/// Runs `warmup + requests` exchanges over `connections` keep-alive connections (each sending
/// its next request when the last one is done) and returns the measured samples and the wall
/// time of the measured part.
fn run(
    client: &tokio::runtime::Runtime,
    path: Path,
    provider: Provider,
    target: SocketAddr,
    n: usize,
    load: Load,
) -> Result<(Vec<Sample>, Duration)> {
    let Load {
        connections,
        warmup,
        requests,
    } = load;
    client.block_on(async move {
        let issued = Arc::new(AtomicUsize::new(0));
        let measured_from = Arc::new(Mutex::new(None::<Instant>));
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let issued = issued.clone();
                let measured_from = measured_from.clone();
                tokio::spawn(async move {
                    let mut sender = connect(target).await?.0;
                    let mut samples = Vec::new();
                    loop {
                        let i = issued.fetch_add(1, Ordering::Relaxed);
                        if i >= warmup + requests {
                            break;
                        }
                        if i == warmup
                            && let Ok(mut from) = measured_from.lock()
                        {
                            *from = Some(Instant::now());
                        }
                        let sample = match path {
                            Path::Baseline => baseline_exchange(&mut sender, provider, target, n).await,
                            Path::Hangar => hangar_exchange(&mut sender, provider, target, n).await,
                        }
                        .with_context(|| format!("{path:?} {} request {i}", provider.name()))?;
                        if i >= warmup {
                            samples.push(sample);
                        }
                    }
                    anyhow::Ok(samples)
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(requests);
        for task in tasks {
            samples.extend(task.await??);
        }
        let from = measured_from
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .unwrap_or_else(Instant::now);
        Ok((samples, from.elapsed()))
    })
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report.

/// Nearest-rank percentile of `values` (sorted here).
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = (p * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// p50, p99 and maximum, in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Stat {
    p50: f64,
    p99: f64,
    max: f64,
}

/// Statistics of values given in µs.
fn stat_of(mut values: Vec<f64>) -> Stat {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Stat {
        p50: percentile(&mut values, 0.50) / 1000.0,
        p99: percentile(&mut values, 0.99) / 1000.0,
        max: if max.is_finite() { max / 1000.0 } else { 0.0 },
    }
}

fn stat(samples: &[Sample], field: impl Fn(&Sample) -> u32) -> Stat {
    stat_of(samples.iter().map(|s| f64::from(field(s))).collect())
}

/// How late each text event arrives, against the direct stream: `direct_i` is the median over
/// the baseline exchanges of the arrival of event i (from the send). For an exchange's event i,
/// `lag_i = arrival_i − direct_i` (absolute: what a user sees, fixed costs included) and
/// `extra_i = lag_i − lag_0` (beyond the first token's lag: the per-event part).
#[derive(Debug, Clone, Copy, Default)]
struct Delays {
    lag: Stat,
    extra: Stat,
    /// The same measures for the baseline exchanges themselves: the noise floor (timer jitter
    /// of the paced upstream, scheduling).
    base_lag: Stat,
    base_extra: Stat,
}

fn delays(base: &[Sample], hangar: &[Sample], n: usize) -> Delays {
    let complete = |samples: &[Sample]| -> Vec<Vec<f64>> {
        samples
            .iter()
            .filter(|s| s.deltas.len() == n)
            .map(|s| s.deltas.iter().map(|t| f64::from(*t)).collect())
            .collect()
    };
    let (base, hangar) = (complete(base), complete(hangar));
    let direct: Vec<f64> = (0..n)
        .map(|i| {
            let mut values: Vec<f64> = base.iter().map(|s| s[i]).collect();
            percentile(&mut values, 0.5)
        })
        .collect();
    let measure = |samples: &[Vec<f64>]| {
        let mut lag = Vec::new();
        let mut extra = Vec::new();
        for s in samples {
            let first = s[0] - direct[0];
            for i in 0..n {
                lag.push(s[i] - direct[i]);
                if i > 0 {
                    extra.push(s[i] - direct[i] - first);
                }
            }
        }
        (stat_of(lag), stat_of(extra))
    };
    let (lag, extra) = measure(&hangar);
    let (base_lag, base_extra) = measure(&base);
    Delays {
        lag,
        extra,
        base_lag,
        base_extra,
    }
}

/// What one scenario (setup, provider, reply shape, connections) measured.
struct Scenario {
    setup: Setup,
    provider: Provider,
    shape: Shape,
    connections: usize,
    base_first: Stat,
    /// The baseline's first text event (the first byte, when the reply is not paced).
    base_first_event: Stat,
    base_end: Stat,
    headers: Stat,
    first: Stat,
    span: Stat,
    tail: Stat,
    end: Stat,
    /// Only for paced replies.
    delays: Option<Delays>,
    base_rate: f64,
    hangar_rate: f64,
}

impl Scenario {
    /// The brief's reading: (Hangar `done` − baseline end) / N, at p50 and at p99.
    fn added_per_event(&self) -> Stat {
        let n = self.shape.n as f64;
        Stat {
            p50: (self.end.p50 - self.base_end.p50) / n,
            p99: (self.end.p99 - self.base_end.p99) / n,
            max: (self.end.max - self.base_end.max) / n,
        }
    }

    fn paced(&self) -> bool {
        !self.shape.pace.is_zero()
    }

    /// Hangar's first `text_delta` − the baseline's first text event.
    fn added_ttft(&self) -> Stat {
        diff(self.first, self.base_first_event)
    }

    /// The per-event part of the paced lag (noise floor included, so an upper bound).
    fn paced_extra(&self) -> Option<Stat> {
        self.delays.map(|d| d.extra)
    }
}

fn diff(a: Stat, b: Stat) -> Stat {
    Stat {
        p50: a.p50 - b.p50,
        p99: a.p99 - b.p99,
        max: a.max - b.max,
    }
}

fn print_line(label: &str, stat: Stat) {
    println!(
        "    {label:<62} {:>9.3} {:>9.3} {:>9.3}",
        stat.p50, stat.p99, stat.max
    );
}

fn scenario(
    client: &tokio::runtime::Runtime,
    upstream: &Upstream,
    setup: Setup,
    hangar: SocketAddr,
    provider: Provider,
    shape: Shape,
    load: Load,
) -> Result<Scenario> {
    let n = shape.n;
    let Load {
        connections,
        warmup,
        requests,
    } = load;
    upstream.prepare(client, setup, provider, shape)?;
    let (base, base_wall) = run(client, Path::Baseline, provider, upstream.addr(setup), n, load)?;
    let (chat, chat_wall) = run(client, Path::Hangar, provider, hangar, n, load)?;
    upstream.fake.clear_requests();
    let result = Scenario {
        setup,
        provider,
        shape,
        connections,
        base_first: stat(&base, |s| s.first),
        base_first_event: stat(&base, Sample::first_delta),
        base_end: stat(&base, |s| s.end),
        headers: stat(&chat, |s| s.headers),
        first: stat(&chat, Sample::first_delta),
        span: stat(&chat, |s| s.last_delta().saturating_sub(s.first_delta())),
        tail: stat(&chat, |s| s.end.saturating_sub(s.last_delta())),
        end: stat(&chat, |s| s.end),
        delays: (!shape.pace.is_zero() && n > 1).then(|| delays(&base, &chat, n)),
        base_rate: base.len() as f64 / base_wall.as_secs_f64(),
        hangar_rate: chat.len() as f64 / chat_wall.as_secs_f64(),
    };
    println!(
        "  [{} / {}] N = {n} text events{}, {} connection{}, {requests} measured requests each after {warmup} \
         warm-up",
        setup.name,
        provider.name(),
        if shape.pace.is_zero() {
            ", all at once".to_owned()
        } else {
            format!(" {} ms apart", shape.pace.as_millis())
        },
        connections,
        if connections == 1 { "" } else { "s" },
    );
    println!("    {:<62} {:>9} {:>9} {:>9}", "", "p50 ms", "p99 ms", "max ms");
    print_line("baseline: first body byte (upstream direct)", result.base_first);
    if !shape.pace.is_zero() {
        print_line("baseline: first text event", result.base_first_event);
    }
    print_line("baseline: end of body", result.base_end);
    print_line(
        "hangar:   response headers (chat + user message stored)",
        result.headers,
    );
    print_line("hangar:   first text_delta (time to first token)", result.first);
    print_line("hangar:   first -> last text_delta (streaming span)", result.span);
    print_line(
        "hangar:   last text_delta -> done (usage, answer, title)",
        result.tail,
    );
    print_line("hangar:   done", result.end);
    print_line(
        "added: time to first token (hangar − baseline first text event)",
        result.added_ttft(),
    );
    print_line(
        "added: whole exchange (hangar done − baseline end)",
        diff(result.end, result.base_end),
    );
    print_line(
        "added per streamed event: (done − baseline end) / N",
        result.added_per_event(),
    );
    if let Some(d) = result.delays {
        print_line("lag of each event vs direct (hangar_i − direct_i)", d.lag);
        print_line("  the same for the baseline itself (noise floor)", d.base_lag);
        print_line("lag beyond the first token's (lag_i − lag_0)", d.extra);
        print_line("  the same for the baseline itself (noise floor)", d.base_extra);
    }
    println!(
        "    throughput: baseline {:.0} exchanges/s, hangar {:.0} exchanges/s",
        result.base_rate, result.hangar_rate
    );
    println!();
    Ok(result)
}

/// The per-event slope between the smallest and the largest N of one provider (sequential,
/// unpaced runs): the growth of Hangar's added time with N, from which the fixed per-exchange
/// cost cancels out. Also returns that fixed cost (the intercept).
fn slope(results: &[Scenario], setup: Setup, provider: Provider) -> Option<(usize, usize, Stat, Stat)> {
    let runs: Vec<&Scenario> = results
        .iter()
        .filter(|s| s.setup == setup && s.provider == provider && s.connections == 1 && !s.paced())
        .collect();
    let low = runs.iter().min_by_key(|s| s.shape.n)?;
    let high = runs.iter().max_by_key(|s| s.shape.n)?;
    if high.shape.n == low.shape.n {
        return None;
    }
    let dn = (high.shape.n - low.shape.n) as f64;
    let (low_added, high_added) = (diff(low.end, low.base_end), diff(high.end, high.base_end));
    let per_event = Stat {
        p50: (high_added.p50 - low_added.p50) / dn,
        p99: (high_added.p99 - low_added.p99) / dn,
        max: (high_added.max - low_added.max) / dn,
    };
    let low_n = low.shape.n as f64;
    let fixed = Stat {
        p50: low_added.p50 - per_event.p50 * low_n,
        p99: low_added.p99 - per_event.p99 * low_n,
        max: low_added.max - per_event.max * low_n,
    };
    Some((low.shape.n, high.shape.n, per_event, fixed))
}

/// Starts Hangar for `setup`, creates the tenant and the models, and runs every scenario.
fn run_setup(
    config: &Config,
    client: &tokio::runtime::Runtime,
    upstream: &Upstream,
    setup: Setup,
) -> Result<Vec<Scenario>> {
    println!("setup {}: {}", setup.name, setup.describe());
    println!();
    let dir = tempfile::tempdir()?;
    let upstream_url = format!("http://{}", upstream.addr(setup));
    let database_url = format!("sqlite://{}/bench.db", dir.path().display());
    let server = Server::start(
        dir.path(),
        &database_url,
        Vec::new(),
        setup.hangar_nodelay,
        |settings| Llm::with_registry(settings, Registry::new(providers(&upstream_url))),
    )?;
    let addr = server.addr;
    let outcome = (|| -> Result<Vec<Scenario>> {
        let (status, body) = client.block_on(admin_call(
            addr,
            Method::POST,
            "/api/tenants",
            json!({ "tenant_id": TENANT, "system_prompt": "bench" }),
        ))?;
        ensure!(
            status == StatusCode::CREATED,
            "creating the tenant: {status} {body}"
        );
        for provider in &config.providers {
            let (status, body) = client.block_on(admin_call(
                addr,
                Method::POST,
                "/api/models",
                provider.model_row(&upstream_url),
            ))?;
            ensure!(status == StatusCode::CREATED, "creating a model: {status} {body}");
        }
        let sequential = Load {
            connections: 1,
            warmup: config.warmup,
            requests: config.requests,
        };
        let mut results = Vec::new();
        for provider in &config.providers {
            for &n in &config.chunks {
                let shape = Shape {
                    n,
                    pace: Duration::ZERO,
                };
                results.push(scenario(
                    client, upstream, setup, addr, *provider, shape, sequential,
                )?);
            }
        }
        if config.concurrency > 1 {
            let concurrent = Load {
                connections: config.concurrency,
                warmup: config.warmup,
                requests: config.concurrent_requests,
            };
            let shape = Shape {
                n: MAIN_CHUNKS,
                pace: Duration::ZERO,
            };
            for provider in &config.providers {
                results.push(scenario(
                    client, upstream, setup, addr, *provider, shape, concurrent,
                )?);
            }
        }
        // Paced only where the upstream is the replay: its schedule is exact, while the fake
        // server's tokio sleeps have a 1 ms resolution and drift.
        if let Some(shape) = config.paced.filter(|_| setup.replay) {
            let paced = Load {
                connections: 1,
                warmup: config.warmup.min(10),
                requests: config.paced_requests,
            };
            for provider in &config.providers {
                results.push(scenario(client, upstream, setup, addr, *provider, shape, paced)?);
            }
        }
        Ok(results)
    })();
    server.stop()?;
    outcome
}

fn main() -> Result<()> {
    let config = Config::from_env()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("hangar simple-chat latency benchmark (fake model server, SQLite)");
    println!(
        "  machine: {cores} cores | hangar: 2 tokio workers | fake model server + replay: 1 worker | client: {} \
         worker(s), all in this process",
        config.client_threads
    );
    println!(
        "  replies of N text events, all at once: N = {:?}, {} sequential requests after {} warm-up each",
        config.chunks, config.requests, config.warmup
    );
    if config.concurrency > 1 {
        println!(
            "  concurrent pass: N = {MAIN_CHUNKS}, {} connections, {} requests",
            config.concurrency, config.concurrent_requests
        );
    }
    if let Some(shape) = config.paced {
        println!(
            "  paced pass: N = {}, one event every {} ms (as a model streams tokens), {} sequential requests",
            shape.n,
            shape.pace.as_millis(),
            config.paced_requests
        );
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  load average before start: {} (other work on the machine distorts the numbers)",
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("  target: Hangar adds < {TARGET_PER_EVENT_MS} ms per streamed event at p99");

    let upstream_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-model")
        .enable_all()
        .build()?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let inherited = client.block_on(nodelay_is_inherited())?;
    println!(
        "  TCP_NODELAY on a listening socket is inherited by accepted connections: {}",
        if inherited {
            "yes"
        } else {
            "NO (the nodelay setups do not have it on Hangar's side)"
        }
    );
    println!();
    let upstream = Upstream::start(&upstream_runtime)?;

    let mut results = Vec::new();
    let mut failure = None;
    for setup in &config.setups {
        match run_setup(&config, &client, &upstream, *setup) {
            Ok(scenarios) => results.extend(scenarios),
            Err(err) => {
                failure = Some(err);
                break;
            }
        }
    }
    let Upstream { fake, .. } = upstream;
    upstream_runtime.block_on(fake.shutdown());
    drop(upstream_runtime);
    if let Some(err) = failure {
        return Err(err);
    }

    println!("summary (ms; added = Hangar minus the baseline measured in the same run and setup)");
    println!(
        "  {:<14} {:<10} {:>9} {:>5} | {:>17} | {:>17} | {:>17} | {:>19} | {:>19}",
        "setup",
        "provider",
        "N",
        "conns",
        "TTFT p50 / p99",
        "added TTFT",
        "added total",
        "(total)/N p50/p99",
        "paced extra p50/p99"
    );
    for s in &results {
        let per_event = s.added_per_event();
        let n = if s.paced() {
            format!("{}@{}ms", s.shape.n, s.shape.pace.as_millis())
        } else {
            s.shape.n.to_string()
        };
        let delay = s.paced_extra().map_or_else(
            || format!("{:>19}", "-"),
            |d| format!("{:>8.4} / {:>8.4}", d.p50, d.p99),
        );
        let ttft = s.added_ttft();
        println!(
            "  {:<14} {:<10} {:>9} {:>5} | {:>7.3} / {:>7.3} | {:>7.3} / {:>7.3} | {:>7.3} / {:>7.3} | {:>8.4} / \
             {:>8.4} | {delay}",
            s.setup.name,
            s.provider.name(),
            n,
            s.connections,
            s.first.p50,
            s.first.p99,
            ttft.p50,
            ttft.p99,
            s.end.p50 - s.base_end.p50,
            s.end.p99 - s.base_end.p99,
            per_event.p50,
            per_event.p99
        );
    }
    println!();
    println!(
        "per-event cost with the fixed per-exchange cost removed (slope of added time over N, sequential):"
    );
    for setup in &config.setups {
        for provider in &config.providers {
            if let Some((low, high, per_event, fixed)) = slope(&results, *setup, *provider) {
                println!(
                    "  {:<14} {:<10} N {low} -> {high}: {:>7.4} ms/event p50, {:>7.4} ms/event p99 | fixed per \
                     exchange ≈ {:.3} ms p50, {:.3} ms p99{}",
                    setup.name,
                    provider.name(),
                    per_event.p50,
                    per_event.p99,
                    fixed.p50,
                    fixed.p99,
                    if setup.replay {
                        ""
                    } else {
                        " (distorted: the 40 ms stalls are not the same at small and large N)"
                    }
                );
            }
        }
    }
    println!();
    println!(
        "reading against the target: per streamed event, Hangar adds the worst of (a) the p99 slope above, \
         (b) the p99 of (done − baseline end) / N at N = {MAIN_CHUNKS}, sequential and concurrent, and \
         (c) the p99 lag beyond the first token's in the paced pass (its noise floor included); the time \
         to first token is reported apart"
    );
    for setup in &config.setups {
        let mut worst: f64 = f64::NEG_INFINITY;
        let mut note = Vec::new();
        for s in results.iter().filter(|s| s.setup == *setup) {
            if s.shape.n == MAIN_CHUNKS && !s.paced() {
                worst = worst.max(s.added_per_event().p99);
            }
            if let Some(extra) = s.paced_extra() {
                worst = worst.max(extra.p99);
                note.push(format!("paced {} {:.3}", s.provider.name(), extra.p99));
            }
        }
        // Without the replay the 40 ms stalls differ between small and large N, so the slope is
        // not a per-event cost there.
        for provider in config.providers.iter().filter(|_| setup.replay) {
            if let Some((_, _, per_event, _)) = slope(&results, *setup, *provider) {
                worst = worst.max(per_event.p99);
            }
        }
        let ttft = results
            .iter()
            .filter(|s| s.setup == *setup && s.connections == 1)
            .map(|s| s.added_ttft().p99)
            .fold(f64::NEG_INFINITY, f64::max);
        println!(
            "  setup {:<14} {} — worst p99 per-event figure {worst:.4} ms{}; worst added time to first token \
             (p99, sequential) {ttft:.3} ms",
            setup.name,
            if worst < TARGET_PER_EVENT_MS {
                "MET    "
            } else {
                "NOT MET"
            },
            if note.is_empty() {
                String::new()
            } else {
                format!(" ({})", note.join(", "))
            }
        );
    }
    Ok(())
}
