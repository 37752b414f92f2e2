//! Decodes the Anthropic Messages streaming events into normalised [`StreamEvent`]s. It is pure
//! (fed `(event name, JSON data)` pairs, no I/O) so that recorded transcripts can be tested
//! without HTTP, and so that Bedrock's `InvokeModelWithResponseStream`, whose chunks carry the
//! same JSON events, can reuse it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{BlockKind, LlmError, StopReason, StreamEvent, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Thinking,
    RedactedThinking,
    ToolUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Open(Kind),
    Closed,
    /// A block type this version does not know (e.g. server tools); its events are skipped.
    Ignored,
}

/// Turns one Messages API response stream into normalised events, checking the event order.
///
/// Feed every event in order; after `message_stop` [`is_finished`](Self::is_finished) is true.
/// When the transport ends, call [`finish`](Self::finish): a stream cut short is an
/// [`LlmError::Protocol`].
#[derive(Debug, Clone, Default)]
pub struct AnthropicDecoder {
    started: bool,
    finished: bool,
    blocks: BTreeMap<usize, Block>,
    usage: Usage,
    stop_reason: Option<StopReason>,
    stop_sequence: Option<String>,
}

fn protocol(message: impl Into<String>) -> LlmError {
    LlmError::Protocol(message.into())
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn u64_field(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

/// Maps the API's `stop_reason`.
pub(crate) fn stop_reason(reason: &str) -> StopReason {
    match reason {
        "end_turn" => StopReason::EndTurn,
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "pause_turn" => StopReason::PauseTurn,
        "refusal" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

/// Merges an API `usage` object into `usage`. Fields that are absent keep their value, because
/// `message_delta` may carry only `output_tokens` (its counts are cumulative, not increments).
///
/// Cache writes come from `cache_creation.ephemeral_5m_input_tokens` and
/// `ephemeral_1h_input_tokens`; whatever part of the top-level `cache_creation_input_tokens` the
/// breakdown does not account for (all of it when there is no breakdown) counts as 5-minute
/// writes, so that no write is ever counted twice or lost.
pub(crate) fn merge_usage(usage: &mut Usage, value: &Value) {
    if let Some(n) = u64_field(value, "input_tokens") {
        usage.input_tokens = n;
    }
    if let Some(n) = u64_field(value, "output_tokens") {
        usage.output_tokens = n;
    }
    if let Some(n) = u64_field(value, "cache_read_input_tokens") {
        usage.cache_read_tokens = n;
    }
    let total = u64_field(value, "cache_creation_input_tokens");
    let breakdown = value.get("cache_creation").filter(|b| b.is_object());
    if total.is_none() && breakdown.is_none() {
        return;
    }
    let five = breakdown
        .and_then(|b| u64_field(b, "ephemeral_5m_input_tokens"))
        .unwrap_or(0);
    let hour = breakdown
        .and_then(|b| u64_field(b, "ephemeral_1h_input_tokens"))
        .unwrap_or(0);
    let unattributed = total.unwrap_or(0).saturating_sub(five.saturating_add(hour));
    usage.cache_write_5m_tokens = five.saturating_add(unattributed);
    usage.cache_write_1h_tokens = hour;
}

impl AnthropicDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once `message_stop` was decoded.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The usage decoded so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The transport ended: `Err(Protocol)` unless `message_stop` was seen.
    pub fn finish(&self) -> Result<(), LlmError> {
        if self.finished {
            Ok(())
        } else if self.started {
            Err(protocol("the stream ended before message_stop"))
        } else {
            Err(protocol("the stream ended before message_start"))
        }
    }

    /// Decodes one event. `event` is the SSE event name (may be empty, as on Bedrock); the JSON's
    /// own `type` decides. Unknown event types are skipped; malformed JSON, an `error` event and
    /// events out of order are errors.
    pub fn feed(&mut self, event: &str, data: &str) -> Result<Vec<StreamEvent>, LlmError> {
        if data.trim().is_empty() {
            return match event {
                "ping" => Ok(vec![StreamEvent::Ping]),
                _ => Ok(Vec::new()),
            };
        }
        let value: Value = serde_json::from_str(data)
            .map_err(|e| protocol(format!("malformed JSON in {event:?} event: {e}")))?;
        let kind = str_field(&value, "type").unwrap_or(event).to_owned();
        if self.finished {
            return Ok(Vec::new());
        }
        match kind.as_str() {
            "ping" => Ok(vec![StreamEvent::Ping]),
            "error" => Err(stream_error(&value)),
            "message_start" => self.message_start(&value),
            _ if !self.started && is_message_event(&kind) => {
                Err(protocol(format!("{kind} before message_start")))
            }
            "content_block_start" => self.block_start(&value),
            "content_block_delta" => self.block_delta(&value),
            "content_block_stop" => self.block_stop(&value),
            "message_delta" => self.message_delta(&value),
            "message_stop" => self.message_stop(),
            _ => Ok(Vec::new()),
        }
    }

    fn message_start(&mut self, value: &Value) -> Result<Vec<StreamEvent>, LlmError> {
        if self.started {
            return Err(protocol("a second message_start"));
        }
        self.started = true;
        let message = value.get("message").unwrap_or(&Value::Null);
        let mut events = vec![StreamEvent::MessageStart {
            id: str_field(message, "id").map(str::to_owned),
            model: str_field(message, "model").map(str::to_owned),
        }];
        if let Some(usage) = message.get("usage").filter(|u| u.is_object()) {
            merge_usage(&mut self.usage, usage);
            events.push(StreamEvent::Usage(self.usage));
        }
        Ok(events)
    }

    fn index(value: &Value) -> Result<usize, LlmError> {
        u64_field(value, "index")
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| protocol("a content block event without a valid index"))
    }

    fn block_start(&mut self, value: &Value) -> Result<Vec<StreamEvent>, LlmError> {
        let index = Self::index(value)?;
        if self.blocks.contains_key(&index) {
            return Err(protocol(format!("content block {index} started twice")));
        }
        let block = value.get("content_block").unwrap_or(&Value::Null);
        let text = |key| str_field(block, key).filter(|s| !s.is_empty()).map(str::to_owned);
        let mut events = Vec::new();
        let kind = match str_field(block, "type") {
            Some("text") => {
                events.push(StreamEvent::BlockStart {
                    index,
                    block: BlockKind::Text,
                });
                if let Some(text) = text("text") {
                    events.push(StreamEvent::TextDelta { index, text });
                }
                Kind::Text
            }
            Some("thinking") => {
                events.push(StreamEvent::BlockStart {
                    index,
                    block: BlockKind::Thinking,
                });
                if let Some(thinking) = text("thinking") {
                    events.push(StreamEvent::ThinkingDelta { index, thinking });
                }
                if let Some(signature) = text("signature") {
                    events.push(StreamEvent::SignatureDelta { index, signature });
                }
                Kind::Thinking
            }
            Some("redacted_thinking") => {
                let data = text("data").unwrap_or_default();
                events.push(StreamEvent::BlockStart {
                    index,
                    block: BlockKind::RedactedThinking { data },
                });
                Kind::RedactedThinking
            }
            Some("tool_use") => {
                let (Some(id), Some(name)) = (text("id"), text("name")) else {
                    return Err(protocol(format!("tool_use block {index} without id or name")));
                };
                events.push(StreamEvent::BlockStart {
                    index,
                    block: BlockKind::ToolUse { id, name },
                });
                // Streaming starts with `{}` and sends the input as deltas; a non-empty start
                // input is passed on so that it is not lost.
                if let Some(input) = block
                    .get("input")
                    .and_then(Value::as_object)
                    .filter(|o| !o.is_empty())
                {
                    events.push(StreamEvent::ToolInputDelta {
                        index,
                        partial_json: Value::Object(input.clone()).to_string(),
                    });
                }
                Kind::ToolUse
            }
            _ => {
                self.blocks.insert(index, Block::Ignored);
                return Ok(Vec::new());
            }
        };
        self.blocks.insert(index, Block::Open(kind));
        Ok(events)
    }

    fn open_block(&self, index: usize, what: &str) -> Result<Option<Kind>, LlmError> {
        match self.blocks.get(&index) {
            Some(Block::Open(kind)) => Ok(Some(*kind)),
            Some(Block::Ignored) => Ok(None),
            Some(Block::Closed) => Err(protocol(format!("{what} for closed content block {index}"))),
            None => Err(protocol(format!(
                "{what} for content block {index}, which never started"
            ))),
        }
    }

    fn block_delta(&mut self, value: &Value) -> Result<Vec<StreamEvent>, LlmError> {
        let index = Self::index(value)?;
        let Some(kind) = self.open_block(index, "content_block_delta")? else {
            return Ok(Vec::new());
        };
        let delta = value.get("delta").unwrap_or(&Value::Null);
        let delta_type = str_field(delta, "type").unwrap_or("");
        let (expected, field) = match delta_type {
            "text_delta" => (Kind::Text, "text"),
            "thinking_delta" => (Kind::Thinking, "thinking"),
            "signature_delta" => (Kind::Thinking, "signature"),
            "input_json_delta" => (Kind::ToolUse, "partial_json"),
            // e.g. citations_delta: nothing to normalise.
            _ => return Ok(Vec::new()),
        };
        if kind != expected {
            return Err(protocol(format!("{delta_type} for a {kind:?} block {index}")));
        }
        let Some(text) = str_field(delta, field).map(str::to_owned) else {
            return Err(protocol(format!("{delta_type} without {field}")));
        };
        if text.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![match delta_type {
            "text_delta" => StreamEvent::TextDelta { index, text },
            "thinking_delta" => StreamEvent::ThinkingDelta {
                index,
                thinking: text,
            },
            "signature_delta" => StreamEvent::SignatureDelta {
                index,
                signature: text,
            },
            _ => StreamEvent::ToolInputDelta {
                index,
                partial_json: text,
            },
        }])
    }

    fn block_stop(&mut self, value: &Value) -> Result<Vec<StreamEvent>, LlmError> {
        let index = Self::index(value)?;
        if self.open_block(index, "content_block_stop")?.is_none() {
            return Ok(Vec::new());
        }
        self.blocks.insert(index, Block::Closed);
        Ok(vec![StreamEvent::BlockStop { index }])
    }

    fn message_delta(&mut self, value: &Value) -> Result<Vec<StreamEvent>, LlmError> {
        if let Some(delta) = value.get("delta") {
            if let Some(reason) = str_field(delta, "stop_reason") {
                self.stop_reason = Some(stop_reason(reason));
            }
            if let Some(sequence) = str_field(delta, "stop_sequence") {
                self.stop_sequence = Some(sequence.to_owned());
            }
        }
        match value.get("usage").filter(|u| u.is_object()) {
            Some(usage) => {
                merge_usage(&mut self.usage, usage);
                Ok(vec![StreamEvent::Usage(self.usage)])
            }
            None => Ok(Vec::new()),
        }
    }

    fn message_stop(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        let Some(reason) = self.stop_reason.take() else {
            return Err(protocol("message_stop without a stop_reason"));
        };
        self.finished = true;
        // Blocks are always closed before message_stop; close stragglers rather than fail.
        let mut events: Vec<StreamEvent> = Vec::new();
        for (index, block) in &mut self.blocks {
            if matches!(block, Block::Open(_)) {
                *block = Block::Closed;
                events.push(StreamEvent::BlockStop { index: *index });
            }
        }
        events.push(StreamEvent::Stop {
            reason,
            stop_sequence: self.stop_sequence.take(),
        });
        Ok(events)
    }
}

fn is_message_event(kind: &str) -> bool {
    matches!(
        kind,
        "content_block_start"
            | "content_block_delta"
            | "content_block_stop"
            | "message_delta"
            | "message_stop"
    )
}

/// An `error` event: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`.
fn stream_error(value: &Value) -> LlmError {
    let error = value.get("error").unwrap_or(&Value::Null);
    LlmError::Stream {
        kind: str_field(error, "type").unwrap_or("error").to_owned(),
        message: str_field(error, "message").unwrap_or("").to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn usage(value: Value) -> Usage {
        let mut usage = Usage::default();
        merge_usage(&mut usage, &value);
        usage
    }

    #[test]
    fn cache_writes_prefer_the_breakdown_and_keep_the_remainder() {
        let writes = |value: Value| {
            let u = usage(value);
            (u.cache_write_5m_tokens, u.cache_write_1h_tokens)
        };
        let breakdown = json!({"input_tokens": 10, "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}});
        assert_eq!(writes(breakdown), (100, 200));
        assert_eq!(writes(json!({"cache_creation_input_tokens": 42})), (42, 0));
        // The original's "5m is 0, so use the total" would count these 1h writes twice.
        let only_hour = json!({"cache_creation_input_tokens": 50,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 50}});
        assert_eq!(writes(only_hour), (0, 50));
        let zero_breakdown = json!({"cache_creation_input_tokens": 7,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}});
        assert_eq!(writes(zero_breakdown), (7, 0));
        assert_eq!(writes(json!({"output_tokens": 3})), (0, 0));
    }

    #[test]
    fn message_delta_usage_is_cumulative_and_partial() {
        let mut decoder = AnthropicDecoder::new();
        let start = json!({"type": "message_start", "message": {"id": "msg_1", "model": "m",
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5}}});
        decoder.feed("message_start", &start.to_string()).unwrap();
        let delta = json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}});
        let events = decoder.feed("message_delta", &delta.to_string()).unwrap();
        let expected = Usage {
            input_tokens: 25,
            output_tokens: 15,
            cache_read_tokens: 5,
            ..Usage::default()
        };
        assert_eq!(events, vec![StreamEvent::Usage(expected)]);
        assert_eq!(
            decoder
                .feed("message_stop", r#"{"type":"message_stop"}"#)
                .unwrap(),
            vec![StreamEvent::Stop {
                reason: StopReason::EndTurn,
                stop_sequence: None
            }]
        );
        assert!(decoder.is_finished());
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn out_of_order_and_malformed_events_are_protocol_errors() {
        let mut fresh = AnthropicDecoder::new();
        assert!(matches!(
            fresh.feed(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#
            ),
            Err(LlmError::Protocol(_))
        ));
        let mut decoder = AnthropicDecoder::new();
        decoder
            .feed("message_start", r#"{"type":"message_start","message":{}}"#)
            .unwrap();
        assert!(matches!(
            decoder.feed("message_delta", "{not json"),
            Err(LlmError::Protocol(_))
        ));
        assert!(matches!(
            decoder.feed(
                "content_block_delta",
                r#"{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"x"}}"#
            ),
            Err(LlmError::Protocol(_))
        ));
        decoder
            .feed(
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            )
            .unwrap();
        assert!(matches!(
            decoder.feed("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#),
            Err(LlmError::Protocol(_))
        ));
        assert!(matches!(
            decoder.feed("message_stop", r#"{"type":"message_stop"}"#),
            Err(LlmError::Protocol(_))
        ));
        assert!(matches!(decoder.finish(), Err(LlmError::Protocol(_))));
    }

    #[test]
    fn unknown_events_and_blocks_are_skipped() {
        let mut decoder = AnthropicDecoder::new();
        decoder
            .feed(
                "message_start",
                r#"{"type":"message_start","message":{"id":"m"}}"#,
            )
            .unwrap();
        assert_eq!(
            decoder
                .feed("future_event", r#"{"type":"future_event","x":1}"#)
                .unwrap(),
            vec![]
        );
        let server_tool = r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#;
        assert_eq!(decoder.feed("content_block_start", server_tool).unwrap(), vec![]);
        let delta = r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#;
        assert_eq!(decoder.feed("content_block_delta", delta).unwrap(), vec![]);
        assert_eq!(
            decoder
                .feed("content_block_stop", r#"{"type":"content_block_stop","index":0}"#)
                .unwrap(),
            vec![]
        );
        assert_eq!(decoder.feed("ping", "").unwrap(), vec![StreamEvent::Ping]);
    }

    #[test]
    fn error_event_is_a_stream_error() {
        let mut decoder = AnthropicDecoder::new();
        let error = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            decoder.feed("error", error),
            Err(LlmError::Stream {
                kind: "overloaded_error".into(),
                message: "Overloaded".into()
            })
        );
    }
}
