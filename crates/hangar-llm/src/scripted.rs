//! A scripted, in-memory [`ModelProvider`] for tests of this crate and of the crates above it.
//!
//! Each call to [`ModelProvider::stream`] takes the next [`Step`] of the script: fail before the
//! first event, stream a list of events (optionally paced, optionally hanging at the end until
//! cancelled), or wait first. Every request is recorded for assertions. Waits go through
//! `tokio::time`, so tests with `tokio::time::pause()` never sleep for real. When the script runs
//! out, the [default step](ScriptedProvider::with_default) is used if one was set, and otherwise the
//! call fails with [`LlmError::Config`] (so a test that makes more calls than it scripted fails
//! loudly instead of hanging).
//!
//! ```
//! use hangar_llm::{ScriptedProvider, Step, Usage, LlmError};
//!
//! let provider = ScriptedProvider::new(
//!     "scripted",
//!     [
//!         Step::Fail(LlmError::Connection("refused".into())),
//!         Step::text_reply("hello", Usage { input_tokens: 10, output_tokens: 1, ..Usage::default() }),
//!     ],
//! );
//! assert_eq!(provider.remaining(), 2);
//! ```

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{BlockKind, EventStream, LlmError, ModelProvider, ModelRequest, StopReason, StreamEvent, Usage};

/// One scripted item of a stream: an event, or an error that ends the stream.
pub type ScriptItem = Result<StreamEvent, LlmError>;

/// What one call of a [`ScriptedProvider`] does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `stream()` fails with this error (an error before the first event).
    Fail(LlmError),
    /// `stream()` returns a stream of these items, in order; an `Err` item ends it.
    Events(Vec<ScriptItem>),
    /// Like [`Step::Events`], with a wait of `gap` before each item.
    Paced { gap: Duration, items: Vec<ScriptItem> },
    /// Streams `items`, then neither yields nor ends until the call is cancelled, when it yields
    /// `Err(Cancelled)` (a model that stalls mid-answer).
    Stall(Vec<ScriptItem>),
    /// `stream()` itself waits this long (returning `Err(Cancelled)` if cancelled meanwhile), then
    /// performs the inner step (a slow time to first byte).
    Delay(Duration, Box<Step>),
}

impl Step {
    /// A successful stream of these events.
    pub fn events(events: impl IntoIterator<Item = StreamEvent>) -> Self {
        Self::Events(events.into_iter().map(Ok).collect())
    }

    /// A complete text answer: message start, one text block, the usage, `end_turn`.
    pub fn text_reply(text: impl Into<String>, usage: Usage) -> Self {
        Self::events(text_reply_events(text, usage))
    }

    /// A complete answer that calls one tool: message start, one tool-use block with `input` as
    /// its (single-fragment) JSON, the usage, `tool_use`.
    pub fn tool_use_reply(
        id: impl Into<String>,
        name: impl Into<String>,
        input: &Value,
        usage: Usage,
    ) -> Self {
        let (id, name) = (id.into(), name.into());
        Self::tool_calls_reply(&[(id.as_str(), name.as_str(), input.to_string().as_str())], usage)
    }

    /// A complete answer that calls several tools at once, each `(id, name, input JSON text)`;
    /// the text is sent as is, so it may be malformed on purpose.
    pub fn tool_calls_reply(calls: &[(&str, &str, &str)], usage: Usage) -> Self {
        let mut events = vec![StreamEvent::MessageStart {
            id: None,
            model: None,
        }];
        for (index, (id, name, json)) in calls.iter().enumerate() {
            events.push(StreamEvent::BlockStart {
                index,
                block: BlockKind::ToolUse {
                    id: (*id).to_owned(),
                    name: (*name).to_owned(),
                },
            });
            events.push(StreamEvent::ToolInputDelta {
                index,
                partial_json: (*json).to_owned(),
            });
            events.push(StreamEvent::BlockStop { index });
        }
        events.push(StreamEvent::Usage(usage));
        events.push(StreamEvent::Stop {
            reason: StopReason::ToolUse,
            stop_sequence: None,
        });
        Self::events(events)
    }

    /// This step, after `stream()` waited `delay`.
    pub fn delayed(self, delay: Duration) -> Self {
        Self::Delay(delay, Box::new(self))
    }
}

/// The events of [`Step::text_reply`], for tests that want to compare against them.
pub fn text_reply_events(text: impl Into<String>, usage: Usage) -> Vec<StreamEvent> {
    vec![
        StreamEvent::MessageStart {
            id: None,
            model: None,
        },
        StreamEvent::BlockStart {
            index: 0,
            block: BlockKind::Text,
        },
        StreamEvent::TextDelta {
            index: 0,
            text: text.into(),
        },
        StreamEvent::BlockStop { index: 0 },
        StreamEvent::Usage(usage),
        StreamEvent::Stop {
            reason: StopReason::EndTurn,
            stop_sequence: None,
        },
    ]
}

#[derive(Debug, Default)]
struct Script {
    steps: VecDeque<Step>,
    default: Option<Step>,
    requests: Vec<ModelRequest>,
}

/// A [`ModelProvider`] that plays a script. Share it as `Arc<ScriptedProvider>` (which coerces
/// to `Arc<dyn ModelProvider>`) and keep a clone to inspect [`requests`](Self::requests).
#[derive(Debug)]
pub struct ScriptedProvider {
    name: String,
    script: Mutex<Script>,
}

impl ScriptedProvider {
    /// A provider called `name` that performs `steps`, one per call.
    pub fn new(name: impl Into<String>, steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            name: name.into(),
            script: Mutex::new(Script {
                steps: steps.into_iter().collect(),
                ..Script::default()
            }),
        }
    }

    /// Performs `step` for every call after the script ran out (instead of failing).
    pub fn with_default(self, step: Step) -> Self {
        self.lock().default = Some(step);
        self
    }

    /// Appends a step to the script (also while the provider is shared).
    pub fn push(&self, step: Step) {
        self.lock().steps.push_back(step);
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<ModelRequest> {
        self.lock().requests.clone()
    }

    /// How many times `stream()` was called.
    pub fn calls(&self) -> usize {
        self.lock().requests.len()
    }

    /// Scripted steps not yet performed (the default step not counted).
    pub fn remaining(&self) -> usize {
        self.lock().steps.len()
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl ModelProvider for ScriptedProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, LlmError> {
        let step = {
            let mut script = self.lock();
            script.requests.push(request.clone());
            script.steps.pop_front().or_else(|| script.default.clone())
        };
        let Some(mut step) = step else {
            return Err(LlmError::Config(format!(
                "scripted provider {:?} has no step left for this call",
                self.name
            )));
        };
        loop {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            match step {
                Step::Fail(error) => return Err(error),
                Step::Events(items) => return Ok(play(items, Duration::ZERO, false, cancel)),
                Step::Paced { gap, items } => return Ok(play(items, gap, false, cancel)),
                Step::Stall(items) => return Ok(play(items, Duration::ZERO, true, cancel)),
                Step::Delay(delay, then) => {
                    tokio::select! {
                        () = cancel.cancelled() => return Err(LlmError::Cancelled),
                        () = tokio::time::sleep(delay) => step = *then,
                    }
                }
            }
        }
    }
}

struct Playback {
    items: VecDeque<ScriptItem>,
    gap: Duration,
    stall: bool,
    cancel: CancellationToken,
    done: bool,
}

/// The stream of a step: yields `items` (waiting `gap` before each), then ends, or with `stall`
/// waits for cancellation. Cancellation ends it with `Err(Cancelled)`, like a real provider.
fn play(items: Vec<ScriptItem>, gap: Duration, stall: bool, cancel: CancellationToken) -> EventStream {
    let state = Playback {
        items: items.into(),
        gap,
        stall,
        cancel,
        done: false,
    };
    Box::pin(futures::stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        if !s.gap.is_zero() && !s.items.is_empty() {
            tokio::select! {
                () = s.cancel.cancelled() => {}
                () = tokio::time::sleep(s.gap) => {}
            }
        }
        if s.cancel.is_cancelled() {
            s.done = true;
            return Some((Err(LlmError::Cancelled), s));
        }
        match s.items.pop_front() {
            Some(item) => {
                s.done = item.is_err();
                Some((item, s))
            }
            None if s.stall => {
                s.cancel.cancelled().await;
                s.done = true;
                Some((Err(LlmError::Cancelled), s))
            }
            None => None,
        }
    }))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::Message;

    fn request(text: &str) -> ModelRequest {
        ModelRequest {
            model: "m".into(),
            system: vec![],
            messages: vec![Message::user(text)],
            tools: vec![],
            max_tokens: 100,
            temperature: None,
            stop_sequences: vec![],
            thinking_budget: None,
        }
    }

    async fn collect(stream: EventStream) -> Vec<ScriptItem> {
        stream.collect().await
    }

    #[tokio::test(start_paused = true)]
    async fn plays_the_script_in_order_and_records_requests() {
        let usage = Usage {
            input_tokens: 3,
            output_tokens: 1,
            ..Usage::default()
        };
        let provider = ScriptedProvider::new(
            "s",
            [
                Step::Fail(LlmError::Connection("x".into())),
                Step::text_reply("hi", usage),
            ],
        );
        let cancel = CancellationToken::new();
        let first = provider.stream(&request("a"), cancel.clone()).await;
        assert_eq!(first.err(), Some(LlmError::Connection("x".into())));
        let second = provider.stream(&request("b"), cancel.clone()).await.unwrap();
        let expected: Vec<ScriptItem> = text_reply_events("hi", usage).into_iter().map(Ok).collect();
        assert_eq!(collect(second).await, expected);
        let third = provider.stream(&request("c"), cancel).await;
        assert!(matches!(third, Err(LlmError::Config(_))), "{:?}", third.err());
        assert_eq!(
            provider.requests(),
            vec![request("a"), request("b"), request("c")]
        );
        assert_eq!(provider.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn error_item_ends_the_stream() {
        let provider = ScriptedProvider::new(
            "s",
            [Step::Events(vec![
                Ok(StreamEvent::Ping),
                Err(LlmError::Protocol("bad".into())),
                Ok(StreamEvent::Ping),
            ])],
        );
        let stream = provider
            .stream(&request("a"), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(
            collect(stream).await,
            vec![Ok(StreamEvent::Ping), Err(LlmError::Protocol("bad".into()))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delays_and_paces_in_virtual_time() {
        let provider = ScriptedProvider::new(
            "s",
            [Step::Paced {
                gap: Duration::from_secs(2),
                items: vec![Ok(StreamEvent::Ping), Ok(StreamEvent::Ping)],
            }
            .delayed(Duration::from_secs(5))],
        )
        .with_default(Step::events([StreamEvent::Ping]));
        let start = tokio::time::Instant::now();
        let stream = provider
            .stream(&request("a"), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(collect(stream).await.len(), 2);
        assert_eq!(start.elapsed(), Duration::from_secs(9));
        // The default step serves calls after the script.
        let stream = provider
            .stream(&request("b"), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(collect(stream).await, vec![Ok(StreamEvent::Ping)]);
        assert_eq!(provider.remaining(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn stall_ends_with_cancelled_when_cancelled() {
        let provider = ScriptedProvider::new("s", [Step::Stall(vec![Ok(StreamEvent::Ping)])]);
        let cancel = CancellationToken::new();
        let mut stream = provider.stream(&request("a"), cancel.clone()).await.unwrap();
        assert_eq!(stream.next().await, Some(Ok(StreamEvent::Ping)));
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            canceller.cancel();
        });
        assert_eq!(stream.next().await, Some(Err(LlmError::Cancelled)));
        assert_eq!(stream.next().await, None);
    }
}
