//! Test support for Hangar.
//!
//! The main piece is [`fake_model`]: a fake model API server, a real axum HTTP server bound on
//! `127.0.0.1`, that speaks the wire formats Hangar's providers talk to, byte for byte:
//! Anthropic Messages SSE (`POST /v1/messages`), AWS Bedrock InvokeModelWithResponseStream and
//! ConverseStream binary event streams with SigV4-verified requests
//! (`POST /model/{modelId}/invoke-with-response-stream`, `.../converse-stream`), and OpenAI
//! chat-completions SSE (`POST /v1/chat/completions`). It does not depend on Hangar's own
//! provider code, so it tests that code independently.
//!
//! A test describes what the "model" should do as a [`Script`]: a queue of [`Response`]s, one
//! consumed per request. A response is either a [`Reply`] (content blocks of text, thinking
//! with a signature, redacted thinking and tool calls; a stop reason; usage with cache writes
//! and reads; optionally slow tokens, a stall, an in-stream provider error or a dropped
//! connection) or a [`Fault`] (an HTTP error such as 429 with `retry-after`, in the
//! provider's error shape). The same reply renders in whichever format the request used.
//!
//! Typical use: start a server with `FakeModelServer::start(FakeModelConfig::new(script))`,
//! adding `.aws(AwsTestCredentials::example())` to have Bedrock signatures checked; point the
//! provider under test at `server.url()`; queue more with `server.push(Reply::text("Hello")
//! .usage(Usage::new(10, 5)).stop("end_turn"))` or `server.push(Fault::rate_limited()
//! .retry_after(2))`; run the code; then assert on `server.requests()` (method, path,
//! percent-decoded Bedrock model id, headers, parsed JSON body, SigV4 outcome, status). Scripts
//! are serde data, so `Script::from_json_file` loads the same thing from a file, and
//! [`serve_script_file`] runs a server from one until ctrl-c (for `hangar dev fake-model`).

pub mod fake_model;

pub use fake_model::{
    AwsTestCredentials, Block, FakeModelConfig, FakeModelServer, Fault, Interrupt, RecordedRequest, Reply,
    Response, Script, SignatureCheck, Stall, StreamError, Usage, WireFormat, serve_script_file,
};
