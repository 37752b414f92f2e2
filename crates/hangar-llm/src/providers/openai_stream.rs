//! Decodes OpenAI-compatible `chat.completion.chunk` streams (OpenAI, vLLM, Ollama, llama.cpp)
//! into normalised [`StreamEvent`]s. Pure (fed each SSE `data:` payload), so recorded transcripts
//! are testable without HTTP.
//!
//! Chat completions have no content blocks, so the decoder makes them: the text is block 0 (started
//! on the first non-empty text), and each streamed tool call gets its own block, numbered from 1 in
//! the order the calls appear. Blocks stay open until `finish_reason` (tool-call fragments may
//! interleave), then all are stopped in index order.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{BlockKind, LlmError, StopReason, StreamEvent, Usage};

/// The normalised index of the text block.
const TEXT_INDEX: usize = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    NotStarted,
    Open,
    Closed,
}

/// Turns one chat-completions stream into normalised events.
///
/// Feed each SSE `data` payload in order, including the final `[DONE]`, after which
/// [`is_finished`](Self::is_finished) is true. When the transport ends, call
/// [`finish`](Self::finish): a stream without `[DONE]` is an [`LlmError::Protocol`].
#[derive(Debug, Clone, Default)]
pub struct OpenAiDecoder {
    started: bool,
    finished: bool,
    text: State,
    /// The provider's tool-call index → (normalised block index, state).
    tools: BTreeMap<u64, (usize, State)>,
    finish_reason: Option<StopReason>,
}

fn protocol(message: impl Into<String>) -> LlmError {
    LlmError::Protocol(message.into())
}

/// Maps `finish_reason`.
pub(crate) fn finish_reason(reason: &str) -> StopReason {
    match reason {
        "stop" => StopReason::EndTurn,
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::Refusal,
        other => StopReason::Other(other.to_owned()),
    }
}

/// Maps a `usage` object: cached prompt tokens are reported inside `prompt_tokens`, so they are
/// moved from the input count to the cache-read count.
pub(crate) fn usage(value: &Value) -> Usage {
    let count = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).unwrap_or(0);
    let prompt = count(value, "prompt_tokens");
    let cached = value
        .get("prompt_tokens_details")
        .map(|details| count(details, "cached_tokens"))
        .unwrap_or(0)
        .min(prompt);
    Usage {
        input_tokens: prompt - cached,
        output_tokens: count(value, "completion_tokens"),
        cache_read_tokens: cached,
        ..Usage::default()
    }
}

/// An error object inside the stream: `{"error": {...}}` (OpenAI, llama.cpp) or a top-level
/// `{"object": "error", ...}` (vLLM).
fn stream_error(value: &Value) -> Option<LlmError> {
    let error = match value.get("error") {
        Some(error) if !error.is_null() => error,
        _ if value.get("object").and_then(Value::as_str) == Some("error") => value,
        _ => return None,
    };
    if let Some(message) = error.as_str() {
        return Some(LlmError::Stream {
            kind: "error".into(),
            message: message.to_owned(),
        });
    }
    let text = |key: &str| match error.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Some(LlmError::Stream {
        kind: text("type")
            .or_else(|| text("code"))
            .unwrap_or_else(|| "error".into()),
        message: text("message").unwrap_or_default(),
    })
}

impl OpenAiDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once `[DONE]` was decoded.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The transport ended: `Err(Protocol)` unless `[DONE]` was seen.
    pub fn finish(&self) -> Result<(), LlmError> {
        if self.finished {
            Ok(())
        } else {
            Err(protocol("the stream ended before [DONE]"))
        }
    }

    /// Decodes one SSE `data` payload.
    pub fn feed(&mut self, data: &str) -> Result<Vec<StreamEvent>, LlmError> {
        let data = data.trim();
        if data.is_empty() || self.finished {
            return Ok(Vec::new());
        }
        if data == "[DONE]" {
            return self.done();
        }
        let value: Value =
            serde_json::from_str(data).map_err(|e| protocol(format!("malformed JSON chunk: {e}")))?;
        if let Some(error) = stream_error(&value) {
            return Err(error);
        }
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            let text = |key| value.get(key).and_then(Value::as_str).map(str::to_owned);
            events.push(StreamEvent::MessageStart {
                id: text("id"),
                model: text("model"),
            });
        }
        let choices = value
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        // Only the first choice is followed (Hangar never asks for `n > 1`).
        let first = choices
            .iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
        if let Some(choice) = first {
            if let Some(delta) = choice.get("delta") {
                self.delta(delta, &mut events)?;
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(finish_reason(reason));
                self.close_blocks(&mut events);
            }
        }
        if let Some(usage_value) = value.get("usage").filter(|u| u.is_object()) {
            events.push(StreamEvent::Usage(usage(usage_value)));
        }
        Ok(events)
    }

    fn delta(&mut self, delta: &Value, events: &mut Vec<StreamEvent>) -> Result<(), LlmError> {
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            match self.text {
                State::NotStarted => {
                    self.text = State::Open;
                    events.push(StreamEvent::BlockStart {
                        index: TEXT_INDEX,
                        block: BlockKind::Text,
                    });
                }
                State::Open => {}
                State::Closed => return Err(protocol("text after finish_reason")),
            }
            events.push(StreamEvent::TextDelta {
                index: TEXT_INDEX,
                text: text.to_owned(),
            });
        }
        let calls = delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for (position, call) in calls.iter().enumerate() {
            self.tool_call(position, call, events)?;
        }
        Ok(())
    }

    fn tool_call(
        &mut self,
        position: usize,
        call: &Value,
        events: &mut Vec<StreamEvent>,
    ) -> Result<(), LlmError> {
        // Ollama has sent whole calls without `index`; their position stands in for it.
        let key = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = call.get("function").unwrap_or(&Value::Null);
        let index = match self.tools.get(&key) {
            Some((index, State::Open)) => *index,
            Some(_) => return Err(protocol(format!("tool call {key} continued after finish_reason"))),
            None => {
                let Some(name) = function
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                else {
                    return Err(protocol(format!(
                        "tool call {key} starts without a function name"
                    )));
                };
                let index = TEXT_INDEX + 1 + self.tools.len();
                let id = match call.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) {
                    Some(id) => id.to_owned(),
                    // Some servers omit ids; the result only has to refer back to the same call.
                    None => format!("call_{index}"),
                };
                self.tools.insert(key, (index, State::Open));
                events.push(StreamEvent::BlockStart {
                    index,
                    block: BlockKind::ToolUse {
                        id,
                        name: name.to_owned(),
                    },
                });
                index
            }
        };
        let arguments = match function.get("arguments") {
            Some(Value::String(fragment)) => fragment.clone(),
            // A server that sends the arguments as an object (not a JSON string) sends them whole.
            Some(object @ Value::Object(_)) => object.to_string(),
            _ => String::new(),
        };
        if !arguments.is_empty() {
            events.push(StreamEvent::ToolInputDelta {
                index,
                partial_json: arguments,
            });
        }
        Ok(())
    }

    fn close_blocks(&mut self, events: &mut Vec<StreamEvent>) {
        if self.text == State::Open {
            self.text = State::Closed;
            events.push(StreamEvent::BlockStop { index: TEXT_INDEX });
        }
        let mut open: Vec<usize> = Vec::new();
        for (index, state) in self.tools.values_mut() {
            if *state == State::Open {
                *state = State::Closed;
                open.push(*index);
            }
        }
        open.sort_unstable();
        events.extend(open.into_iter().map(|index| StreamEvent::BlockStop { index }));
    }

    fn done(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        if !self.started {
            return Err(protocol("[DONE] before any chunk"));
        }
        self.finished = true;
        let mut events = Vec::new();
        self.close_blocks(&mut events);
        events.push(StreamEvent::Stop {
            reason: self
                .finish_reason
                .take()
                .unwrap_or_else(|| StopReason::Other("unspecified".into())),
            stop_sequence: None,
        });
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason("stop"), StopReason::EndTurn);
        assert_eq!(finish_reason("length"), StopReason::MaxTokens);
        assert_eq!(finish_reason("tool_calls"), StopReason::ToolUse);
        assert_eq!(finish_reason("content_filter"), StopReason::Refusal);
        assert_eq!(finish_reason("eos"), StopReason::Other("eos".into()));
    }

    #[test]
    fn usage_moves_cached_tokens_out_of_the_input() {
        let value = json!({"prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 60}});
        let expected = Usage {
            input_tokens: 40,
            output_tokens: 7,
            cache_read_tokens: 60,
            ..Usage::default()
        };
        assert_eq!(usage(&value), expected);
        // A server claiming more cached than prompt tokens cannot drive the input negative.
        let odd = json!({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}});
        assert_eq!(usage(&odd).input_tokens, 0);
    }

    #[test]
    fn errors_in_chunks() {
        let mut decoder = OpenAiDecoder::new();
        assert_eq!(
            decoder.feed(r#"{"error":{"message":"boom","type":"server_error","code":null}}"#),
            Err(LlmError::Stream {
                kind: "server_error".into(),
                message: "boom".into()
            })
        );
        assert_eq!(
            decoder.feed(r#"{"object":"error","message":"bad","type":"BadRequestError","code":400}"#),
            Err(LlmError::Stream {
                kind: "BadRequestError".into(),
                message: "bad".into()
            })
        );
        assert!(matches!(decoder.feed("{oops"), Err(LlmError::Protocol(_))));
        assert!(matches!(
            OpenAiDecoder::new().feed("[DONE]"),
            Err(LlmError::Protocol(_))
        ));
    }

    #[test]
    fn whole_tool_calls_without_index_or_id() {
        let mut decoder = OpenAiDecoder::new();
        let chunk = json!({"id": "c", "model": "llama", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"function": {"name": "a", "arguments": {"x": 1}}},
            {"id": "t2", "function": {"name": "b", "arguments": "{}"}}
        ]}, "finish_reason": "tool_calls"}]});
        let events = decoder.feed(&chunk.to_string()).unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::MessageStart {
                    id: Some("c".into()),
                    model: Some("llama".into())
                },
                StreamEvent::BlockStart {
                    index: 1,
                    block: BlockKind::ToolUse {
                        id: "call_1".into(),
                        name: "a".into()
                    }
                },
                StreamEvent::ToolInputDelta {
                    index: 1,
                    partial_json: r#"{"x":1}"#.into()
                },
                StreamEvent::BlockStart {
                    index: 2,
                    block: BlockKind::ToolUse {
                        id: "t2".into(),
                        name: "b".into()
                    }
                },
                StreamEvent::ToolInputDelta {
                    index: 2,
                    partial_json: "{}".into()
                },
                StreamEvent::BlockStop { index: 1 },
                StreamEvent::BlockStop { index: 2 },
            ]
        );
        assert_eq!(
            decoder.feed("[DONE]").unwrap(),
            vec![StreamEvent::Stop {
                reason: StopReason::ToolUse,
                stop_sequence: None
            }]
        );
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn text_after_finish_is_a_protocol_error() {
        let mut decoder = OpenAiDecoder::new();
        decoder
            .feed(r#"{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}]}"#)
            .unwrap();
        assert!(matches!(
            decoder.feed(r#"{"choices":[{"index":0,"delta":{"content":"b"}}]}"#),
            Err(LlmError::Protocol(_))
        ));
        assert!(matches!(
            OpenAiDecoder::new().finish(),
            Err(LlmError::Protocol(_))
        ));
    }
}
