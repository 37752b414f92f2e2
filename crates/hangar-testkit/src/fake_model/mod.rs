//! A fake model API server for tests and local demos: a real HTTP server on loopback that speaks
//! the Anthropic Messages SSE, AWS Bedrock event-stream (InvokeModelWithResponseStream and
//! ConverseStream, SigV4-verified) and OpenAI chat-completions SSE wire formats, answers each
//! request with the next response of a [`Script`], and records every request.
//!
//! Routes (all `POST`):
//! - `/v1/messages`: Anthropic (`anthropic.rs`);
//! - `/v1/chat/completions` and `/chat/completions`: OpenAI (`openai.rs`);
//! - `/model/{modelId}/invoke-with-response-stream` and `/model/{modelId}/converse-stream`:
//!   Bedrock (`bedrock.rs`), verified by `sigv4.rs` when [`FakeModelConfig::aws`] is set.
//!
//! Any other path is answered 404 (and recorded). Requests rejected before the script is
//! consulted (missing credentials, bad signature, malformed body) do not consume a scripted
//! response. When the script is exhausted (and has no `default` or `repeat_last`) the server
//! answers 500 in the format's error shape, with a message saying so.
//!
//! A script file (for [`Script::from_json_file`], [`FakeModelConfig::from_json_file`] and
//! [`serve_script_file`]) looks like this; a config file wraps it as
//! `{"script": {..}, "aws": {"access_key_id": .., "secret_access_key": .., "region": ..},
//! "api_key": ..}`:
//!
//! ```json
//! {
//!   "responses": [
//!     {"fault": {"status": 429, "retry_after": 2}},
//!     {"reply": {
//!       "content": [
//!         {"type": "thinking", "thinking": ["Let me ", "think."], "signature": "sig-abc"},
//!         {"type": "text", "text": ["Hel", "lo"]},
//!         {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}
//!       ],
//!       "stop_reason": "tool_use",
//!       "usage": {"input_tokens": 10, "output_tokens": 20, "cache_write_5m": 3,
//!                 "cache_write_1h": 4, "cache_read": 5}
//!     }},
//!     {"reply": {"content": [{"type": "text", "text": "slow"}], "event_delay_ms": 50,
//!                "stall": {"after_events": 2, "duration_ms": 1000},
//!                "interrupt": {"type": "error", "after_events": 3, "message": "Overloaded"}}},
//!     {"reply": {"content": [{"type": "text", "text": "cut"}],
//!                "interrupt": {"type": "drop", "after_events": 2}}}
//!   ],
//!   "default": {"reply": {"content": [{"type": "text", "text": "Hello from the fake model"}]}},
//!   "repeat_last": false
//! }
//! ```

mod anthropic;
mod bedrock;
mod fault;
mod openai;
mod record;
mod script;
mod sigv4;
mod wire;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use fault::{Fault, Interrupt, Stall, StreamError};
pub use record::{RecordedRequest, SignatureCheck, WireFormat};
pub use script::{Block, Reply, Response, Script, Usage, split_chars};

use wire::{
    Kind, RenderCtx, check_fields, fault_parts, json_response, scripted_latency_ms, sse_event, sse_headers,
    stream_body, to_json,
};

/// AWS credentials and region the server verifies Bedrock SigV4 signatures against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsTestCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl AwsTestCredentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            region: region.into(),
        }
    }

    /// The AWS documentation's example key pair, in `us-east-1`.
    pub fn example() -> Self {
        Self::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
        )
    }
}

/// How to start a [`FakeModelServer`]. Also the format of a config file (see
/// [`FakeModelConfig::from_json_file`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FakeModelConfig {
    #[serde(default)]
    pub script: Script,
    /// Verify Bedrock SigV4 signatures against these; `None` = accept Bedrock requests unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsTestCredentials>,
    /// Require this exact key (Anthropic `x-api-key`, OpenAI `Authorization: Bearer`). Without
    /// it the Anthropic key only has to be present and OpenAI needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl FakeModelConfig {
    pub fn new(script: Script) -> Self {
        Self {
            script,
            ..Self::default()
        }
    }

    pub fn aws(mut self, credentials: AwsTestCredentials) -> Self {
        self.aws = Some(credentials);
        self
    }

    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Reads a JSON file holding either a whole config (an object with a `script` key) or just
    /// a [`Script`].
    pub fn from_json_file(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
        let config = if value.get("script").is_some() {
            serde_json::from_value(value)
        } else {
            serde_json::from_value(value).map(Self::new)
        };
        config.map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))
    }
}

/// A running fake model server. Dropping it stops it.
pub struct FakeModelServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeModelServer {
    /// Starts the server on `127.0.0.1` with a free port.
    pub async fn start(config: FakeModelConfig) -> anyhow::Result<Self> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the server on `addr`.
    pub async fn start_on(config: FakeModelConfig, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding fake model server to {addr}: {e}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // Stream events as they are written (no Nagle delay behind the client's ACK).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake model server stopped with an error");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues another response after the ones already queued.
    pub fn push(&self, response: impl Into<Response>) {
        self.shared.queue().pending.push_back(response.into());
    }

    /// Replaces the response served when the queue is empty.
    pub fn set_default(&self, response: Option<Response>) {
        self.shared.queue().default = response;
    }

    /// How many queued responses have not been served yet.
    pub fn remaining(&self) -> usize {
        self.shared.queue().pending.len()
    }

    /// Every request received so far, in the order they were answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.log().clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.log().len()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.log().last().cloned()
    }

    pub fn requests_for(&self, format: WireFormat) -> Vec<RecordedRequest> {
        self.shared
            .log()
            .iter()
            .filter(|r| r.format == format)
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared.log().clear();
    }

    /// Waits until at least `count` requests have been recorded, or fails after `timeout`.
    pub async fn wait_for_requests(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<RecordedRequest>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.notify.notified();
            let requests = self.requests();
            if requests.len() >= count {
                return Ok(requests);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                anyhow::bail!(
                    "waited {timeout:?} for {count} requests, got {}",
                    self.request_count()
                );
            }
        }
    }

    /// Stops accepting connections and waits (at most a second) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(1), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for FakeModelServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for FakeModelServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeModelServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Runs a fake model server on `addr` following the script (or config) in the JSON file at
/// `path`, logging each request, until ctrl-c.
pub async fn serve_script_file(path: impl AsRef<Path>, addr: SocketAddr) -> anyhow::Result<()> {
    let config = FakeModelConfig::from_json_file(path)?;
    let server = FakeModelServer::start_on(config, addr).await?;
    tracing::info!(url = %server.url(), "fake model server listening");
    tokio::signal::ctrl_c().await?;
    tracing::info!("fake model server shutting down");
    server.shutdown().await;
    Ok(())
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/chat/completions", post(openai::chat_completions))
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(bedrock::invoke_stream),
        )
        .route(
            "/model/{model_id}/converse-stream",
            post(bedrock::converse_stream),
        )
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(shared)
}

async fn unknown_route(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let exchange = Exchange::new(shared, WireFormat::Unknown, &method, &uri, &headers, &body);
    let message = format!("no fake model route for {method} {}", uri.path());
    exchange.finish(
        (StatusCode::NOT_FOUND, axum::Json(json!({"message": message}))).into_response(),
        None,
    )
}

struct Queue {
    pending: VecDeque<Response>,
    default: Option<Response>,
    repeat_last: bool,
    last: Option<Response>,
    served: usize,
}

/// State shared by the handlers.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    log: Mutex<Vec<RecordedRequest>>,
    notify: Notify,
    next_seq: AtomicUsize,
    aws: Option<AwsTestCredentials>,
    api_key: Option<String>,
}

impl Shared {
    fn new(config: FakeModelConfig) -> Self {
        Self {
            queue: Mutex::new(Queue {
                pending: config.script.responses.into(),
                default: config.script.default,
                repeat_last: config.script.repeat_last,
                last: None,
                served: 0,
            }),
            log: Mutex::new(Vec::new()),
            notify: Notify::new(),
            next_seq: AtomicUsize::new(0),
            aws: config.aws,
            api_key: config.api_key,
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, Vec<RecordedRequest>> {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next scripted response and its index, or `None` when the script is exhausted.
    fn next_response(&self) -> Option<(usize, Response)> {
        let mut queue = self.queue();
        let response = match queue.pending.pop_front() {
            Some(response) => {
                queue.last = Some(response.clone());
                response
            }
            None if queue.repeat_last && queue.last.is_some() => queue.last.clone()?,
            None => queue.default.clone()?,
        };
        let index = queue.served;
        queue.served += 1;
        Some((index, response))
    }
}

/// One request being answered: its record is completed and logged by [`Exchange::finish`].
///
/// An exchange dropped unfinished (the client went away while a fault's delay ran) is logged
/// with status 499.
pub(crate) struct Exchange {
    shared: Arc<Shared>,
    record: RecordedRequest,
    finished: bool,
}

impl Exchange {
    pub(crate) fn new(
        shared: Arc<Shared>,
        format: WireFormat,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Self {
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let model = parsed
            .as_ref()
            .and_then(|b| b.get("model"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let record = RecordedRequest {
            seq,
            format,
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            model,
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: parsed,
            raw_body: String::from_utf8_lossy(body).into_owned(),
            received_at: SystemTime::now(),
            signature: SignatureCheck::NotChecked,
            status: 0,
            script_index: None,
        };
        Self {
            shared,
            record,
            finished: false,
        }
    }

    pub(crate) fn seq(&self) -> usize {
        self.record.seq
    }

    pub(crate) fn body(&self) -> Option<&Value> {
        self.record.body.as_ref()
    }

    pub(crate) fn set_model(&mut self, model: String) {
        self.record.model = Some(model);
    }

    pub(crate) fn model(&self) -> Option<&str> {
        self.record.model.as_deref()
    }

    pub(crate) fn set_signature(&mut self, check: SignatureCheck) {
        self.record.signature = check;
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Takes the next scripted response (and notes its index in the record).
    pub(crate) fn next_response(&mut self) -> Option<(usize, Response)> {
        let next = self.shared.next_response();
        self.record.script_index = next.as_ref().map(|(index, _)| *index);
        next
    }

    /// Logs the request with the response's status, and returns the response.
    pub(crate) fn finish(
        mut self,
        response: axum::response::Response,
        script_index: Option<usize>,
    ) -> axum::response::Response {
        self.record.status = response.status().as_u16();
        self.record.script_index = script_index;
        self.log();
        response
    }

    fn log(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        tracing::info!(
            seq = self.record.seq,
            format = ?self.record.format,
            path = %self.record.path,
            status = self.record.status,
            script_index = ?self.record.script_index,
            "fake model request"
        );
        self.shared.log().push(self.record.clone());
        self.shared.notify.notify_waiters();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.finished {
            self.record.status = 499;
            self.log();
        }
    }
}
