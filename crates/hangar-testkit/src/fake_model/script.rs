//! The script a [`FakeModelServer`](super::FakeModelServer) follows: a queue of [`Response`]s,
//! consumed one per model request, each either a [`Reply`] (streamed in whichever wire format
//! the request used) or a [`Fault`] (an HTTP error before any byte of a stream).
//!
//! Everything here is plain serde data, so a script can live in a JSON file (see
//! [`Script::from_json_file`]) as well as being built in Rust with the builder methods.
//! Stream-level faults (a provider error in the middle of a stream, a dropped connection, slow
//! tokens, a stall; see `fault.rs`) are properties of a [`Reply`], because they need content to
//! stream first.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fault::{Fault, Interrupt, Stall, StreamError};

/// A queue of responses, consumed one per request, in order, across all wire formats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// Served in order, one per request.
    #[serde(default)]
    pub responses: Vec<Response>,
    /// Served whenever the queue is empty (after `repeat_last` is considered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Response>,
    /// When the queue is empty, serve the last response taken from it again.
    #[serde(default, skip_serializing_if = "is_false")]
    pub repeat_last: bool,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a response to the queue.
    pub fn then(mut self, response: impl Into<Response>) -> Self {
        self.responses.push(response.into());
        self
    }

    /// Sets the response served when the queue is empty.
    pub fn default_response(mut self, response: impl Into<Response>) -> Self {
        self.default = Some(response.into());
        self
    }

    /// Serve the last queued response again once the queue is empty.
    pub fn repeat_last(mut self) -> Self {
        self.repeat_last = true;
        self
    }

    /// Parses a script from JSON text.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    /// Reads a script from a JSON file.
    pub fn from_json_file(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading script {}: {e}", path.display()))?;
        Self::from_json(&text).map_err(|e| anyhow::anyhow!("parsing script {}: {e}", path.display()))
    }

    pub fn to_json_pretty(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)?)
    }
}

/// One scripted answer to one request. JSON: `{"reply": {...}}` or `{"fault": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Reply(Reply),
    Fault(Fault),
}

impl From<Reply> for Response {
    fn from(reply: Reply) -> Self {
        Self::Reply(reply)
    }
}

impl From<Fault> for Response {
    fn from(fault: Fault) -> Self {
        Self::Fault(fault)
    }
}

/// Token counts reported for a reply. Rendered per format: Anthropic `usage` (with the
/// `cache_creation` 5m/1h breakdown), Bedrock metrics/Converse `usage`, OpenAI `usage` (where
/// `prompt_tokens = input_tokens + cache_read`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_write_5m: u64,
    #[serde(default)]
    pub cache_write_1h: u64,
    #[serde(default)]
    pub cache_read: u64,
}

impl Usage {
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    pub fn cache_write_5m(mut self, tokens: u64) -> Self {
        self.cache_write_5m = tokens;
        self
    }

    pub fn cache_write_1h(mut self, tokens: u64) -> Self {
        self.cache_write_1h = tokens;
        self
    }

    pub fn cache_read(mut self, tokens: u64) -> Self {
        self.cache_read = tokens;
        self
    }

    /// Cache writes of both lifetimes.
    pub fn cache_write(&self) -> u64 {
        self.cache_write_5m + self.cache_write_1h
    }
}

/// One content block of a reply. Text and thinking are given as a list of chunks, one delta
/// event each; in JSON a single string is accepted too (`"text": "Hi"` or
/// `"text": ["H", "i"]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        #[serde(with = "chunks")]
        text: Vec<String>,
    },
    Thinking {
        #[serde(with = "chunks")]
        thinking: Vec<String>,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
        /// The partial-JSON fragments to stream, verbatim. Absent: the compact JSON of `input`
        /// in one fragment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input_chunks: Option<Vec<String>>,
    },
}

impl Block {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text {
            text: vec![text.into()],
        }
    }

    pub fn text_chunks<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Self::Text {
            text: chunks.into_iter().map(Into::into).collect(),
        }
    }

    pub fn thinking(thinking: impl Into<String>, signature: impl Into<String>) -> Self {
        Self::Thinking {
            thinking: vec![thinking.into()],
            signature: signature.into(),
        }
    }

    pub fn thinking_chunks<S: Into<String>>(
        chunks: impl IntoIterator<Item = S>,
        signature: impl Into<String>,
    ) -> Self {
        Self::Thinking {
            thinking: chunks.into_iter().map(Into::into).collect(),
            signature: signature.into(),
        }
    }

    pub fn redacted_thinking(data: impl Into<String>) -> Self {
        Self::RedactedThinking { data: data.into() }
    }

    pub fn tool_use(id: impl Into<String>, name: impl Into<String>, input: Value) -> Self {
        Self::ToolUse {
            id: id.into(),
            name: name.into(),
            input,
            input_chunks: None,
        }
    }

    /// For a tool_use block: streams the input as these partial-JSON fragments.
    pub fn with_input_chunks<S: Into<String>>(mut self, fragments: impl IntoIterator<Item = S>) -> Self {
        if let Self::ToolUse { input_chunks, .. } = &mut self {
            *input_chunks = Some(fragments.into_iter().map(Into::into).collect());
        }
        self
    }

    /// For a tool_use block: streams the compact JSON of the input in fragments of at most
    /// `chars` characters.
    pub fn split_input(self, chars: usize) -> Self {
        let fragments = match &self {
            Self::ToolUse { input, .. } => split_chars(&input.to_string(), chars),
            _ => return self,
        };
        self.with_input_chunks(fragments)
    }

    /// The tool input fragments to stream (tool_use blocks only).
    pub(crate) fn input_fragments(&self) -> Vec<String> {
        match self {
            Self::ToolUse {
                input_chunks: Some(chunks),
                ..
            } => chunks.clone(),
            Self::ToolUse { input, .. } => vec![input.to_string()],
            _ => Vec::new(),
        }
    }
}

/// Splits `text` into pieces of at most `chars` characters (at least one piece).
pub fn split_chars(text: &str, chars: usize) -> Vec<String> {
    let chars = chars.max(1);
    let all: Vec<char> = text.chars().collect();
    if all.is_empty() {
        return vec![String::new()];
    }
    all.chunks(chars).map(|c| c.iter().collect()).collect()
}

/// A successful model answer, rendered in the wire format of the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Message id; default `msg_fake_<n>` (`chatcmpl-fake-<n>` for OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Model reported in the stream; default: the model of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub content: Vec<Block>,
    /// Anthropic vocabulary (`end_turn`, `tool_use`, `max_tokens`, `stop_sequence`,
    /// `pause_turn`, `refusal`), mapped for the other formats. Default: `tool_use` when the
    /// reply has a tool_use block, else `end_turn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    /// Slow tokens: pause this long before every event after the first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub event_delay_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<Stall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupt: Option<Interrupt>,
}

impl Reply {
    /// An empty reply (no blocks); add blocks with the `with_*` methods.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn text(text: impl Into<String>) -> Self {
        Self::new().with_block(Block::text(text))
    }

    pub fn text_chunks<S: Into<String>>(chunks: impl IntoIterator<Item = S>) -> Self {
        Self::new().with_block(Block::text_chunks(chunks))
    }

    pub fn thinking(thinking: impl Into<String>, signature: impl Into<String>) -> Self {
        Self::new().with_block(Block::thinking(thinking, signature))
    }

    pub fn tool_use(id: impl Into<String>, name: impl Into<String>, input: Value) -> Self {
        Self::new().with_block(Block::tool_use(id, name, input))
    }

    pub fn with_block(mut self, block: Block) -> Self {
        self.content.push(block);
        self
    }

    pub fn with_text(self, text: impl Into<String>) -> Self {
        self.with_block(Block::text(text))
    }

    pub fn with_thinking(self, thinking: impl Into<String>, signature: impl Into<String>) -> Self {
        self.with_block(Block::thinking(thinking, signature))
    }

    pub fn with_tool_use(self, id: impl Into<String>, name: impl Into<String>, input: Value) -> Self {
        self.with_block(Block::tool_use(id, name, input))
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    pub fn stop(mut self, reason: impl Into<String>) -> Self {
        self.stop_reason = Some(reason.into());
        self
    }

    pub fn stop_sequence(mut self, sequence: impl Into<String>) -> Self {
        self.stop_reason = Some("stop_sequence".into());
        self.stop_sequence = Some(sequence.into());
        self
    }

    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Slow tokens: wait `delay` before every event after the first.
    pub fn event_delay(mut self, delay: Duration) -> Self {
        self.event_delay_ms = millis(delay);
        self
    }

    /// Send nothing for `duration` after `after_events` events, then carry on.
    pub fn stall_after(mut self, after_events: usize, duration: Duration) -> Self {
        self.stall = Some(Stall {
            after_events,
            duration_ms: millis(duration),
        });
        self
    }

    /// An in-stream "overloaded" provider error after `after_events` events.
    pub fn error_after(self, after_events: usize) -> Self {
        self.stream_error(StreamError::after(after_events))
    }

    pub fn stream_error(mut self, error: StreamError) -> Self {
        self.interrupt = Some(Interrupt::Error(error));
        self
    }

    /// Cut the connection after `after_events` events.
    pub fn drop_after(mut self, after_events: usize) -> Self {
        self.interrupt = Some(Interrupt::Drop { after_events });
        self
    }

    /// The stop reason to report (explicit, or derived from the content).
    pub fn effective_stop_reason(&self) -> String {
        match &self.stop_reason {
            Some(reason) => reason.clone(),
            None if self.content.iter().any(|b| matches!(b, Block::ToolUse { .. })) => "tool_use".into(),
            None => "end_turn".into(),
        }
    }
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Serde for a list of chunks that is written as a plain string when there is exactly one.
mod chunks {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }

    pub fn serialize<S: Serializer>(chunks: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        match chunks {
            [one] => one.serialize(serializer),
            many => many.serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
        Ok(match OneOrMany::deserialize(deserializer)? {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        })
    }
}
