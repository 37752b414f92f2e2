//! The events of an agent run (seed contract §2.2, DESIGN §2), as streamed over SSE and
//! WebSocket and stored for replay.
//!
//! On the wire an event is an SSE `event:` name and a JSON object whose first fields are `seq`
//! (monotonic per run from 1, also the SSE `id:`) and `timestamp`, followed by the event's own
//! fields, and `parent_agent_id` when a subagent produced it. [`RunEvent`] is the event without
//! the envelope; [`RunEvent::wire_data`] adds it and [`RunEvent::from_wire`] takes it apart.
//!
//! Beyond the original's catalogue, Hangar restores `subagent_start` / `subagent_end` and
//! `parent_agent_id`, streams text as it arrives (`assistant` and `thinking` carry
//! `delta: true` and the block `index` while streaming; the message log keeps whole blocks with
//! `delta: false`), and ends every run with exactly one `done` whose `status` may also be
//! `cancelled` or `interrupted`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{ChatUsage, Usd};

/// One `content_blocks` entry of an `assistant` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextBlock {
    Text { text: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProgressKind {
    Setup,
    Generating,
    Thinking,
    Tool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Running,
    Completed,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WarningLevel {
    Normal,
    Warning,
    Critical,
    Blocked,
}

/// How a run ended, in `done.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DoneStatus {
    Success,
    Error,
    Cancelled,
    /// The server stopped (crash or restart) while the run was going on.
    Interrupted,
}

impl DoneStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Fields of `done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Done {
    pub status: DoneStatus,
    /// The final assistant text.
    pub result: Option<String>,
    pub is_error: bool,
    pub errors: Option<Vec<String>>,
    pub usage: ChatUsage,
    /// What the run cost, equal to the sum of the usage rows stored for it.
    #[schema(value_type = String)]
    pub cost_usd: Usd,
    pub turn_count: u32,
    pub duration_ms: u64,
    pub session_id: Option<String>,
    pub run_id: String,
}

/// An event of a run, without its envelope (`seq`, `timestamp`, `parent_agent_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    Progress {
        #[serde(rename = "type")]
        kind: ProgressKind,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_use_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_status: Option<ToolStatus>,
    },
    Init {
        session_id: String,
        run_id: String,
        tools: Vec<String>,
        model: String,
        conversation_id: String,
    },
    Assistant {
        content_blocks: Vec<TextBlock>,
        /// The model's content-block index.
        index: usize,
        /// True while streaming (the text is the next piece of the block); false for a whole
        /// block.
        delta: bool,
    },
    Thinking {
        content: String,
        index: usize,
        delta: bool,
    },
    ToolCall {
        tool_use_id: String,
        tool_name: String,
        /// The input, with string values longer than 500 characters cut.
        input: Value,
        summary: String,
    },
    ToolResult {
        tool_use_id: String,
        tool_name: String,
        status: ToolStatus,
        content: String,
        is_error: bool,
    },
    SubagentStart {
        agent_id: String,
        parent_tool_use_id: String,
        description: String,
        subagent_type: String,
    },
    SubagentEnd {
        agent_id: String,
        parent_tool_use_id: String,
        status: DoneStatus,
        turn_count: u32,
        usage: ChatUsage,
    },
    ContextStatus {
        current_context_tokens: u64,
        max_context_tokens: u64,
        usage_percent: f64,
        warning_level: WarningLevel,
        can_continue: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recommended_action: Option<String>,
    },
    /// The run compacted older turns into a summary to stay within the context window.
    Compacted {
        summarised_messages: usize,
        tokens_before: u64,
    },
    Title {
        title: String,
    },
    Error {
        error_type: String,
        message: String,
        recoverable: bool,
    },
    Done(Done),
}

impl RunEvent {
    /// A `progress` event that is not about a tool call.
    pub fn progress(kind: ProgressKind, message: impl Into<String>) -> Self {
        Self::Progress {
            kind,
            message: message.into(),
            tool_use_id: None,
            tool_name: None,
            tool_status: None,
        }
    }

    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Progress { .. } => "progress",
            Self::Init { .. } => "init",
            Self::Assistant { .. } => "assistant",
            Self::Thinking { .. } => "thinking",
            Self::ToolCall { .. } => "tool_call",
            Self::ToolResult { .. } => "tool_result",
            Self::SubagentStart { .. } => "subagent_start",
            Self::SubagentEnd { .. } => "subagent_end",
            Self::ContextStatus { .. } => "context_status",
            Self::Compacted { .. } => "compacted",
            Self::Title { .. } => "title",
            Self::Error { .. } => "error",
            Self::Done(_) => "done",
        }
    }

    /// Whether the event belongs in the conversation's message log (contract §2.10).
    pub fn is_history(&self) -> bool {
        matches!(
            self,
            Self::Assistant { .. }
                | Self::Thinking { .. }
                | Self::ToolCall { .. }
                | Self::ToolResult { .. }
                | Self::SubagentStart { .. }
                | Self::SubagentEnd { .. }
        )
    }

    /// The JSON object sent as SSE `data:`: `seq`, `timestamp`, the event's fields, and
    /// `parent_agent_id` when a subagent produced it.
    pub fn wire_data(&self, seq: u64, timestamp: &str, parent_agent_id: Option<&str>) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("seq".into(), seq.into());
        data.insert("timestamp".into(), timestamp.into());
        if let Ok(Value::Object(fields)) = serde_json::to_value(self) {
            for (key, value) in fields {
                if key != "event" {
                    data.insert(key, value);
                }
            }
        }
        if let Some(parent) = parent_agent_id {
            data.insert("parent_agent_id".into(), parent.into());
        }
        data
    }

    /// Parses an event from its SSE name and data (the envelope fields are ignored).
    pub fn from_wire(name: &str, data: &Value) -> Result<Self, serde_json::Error> {
        let mut fields = match data {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        for key in ["seq", "timestamp", "parent_agent_id"] {
            fields.remove(key);
        }
        fields.insert("event".into(), name.into());
        serde_json::from_value(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_data_starts_with_the_envelope_and_round_trips() {
        let event = RunEvent::ToolCall {
            tool_use_id: "t1".into(),
            tool_name: "Bash".into(),
            input: serde_json::json!({"command": "ls"}),
            summary: "tool execution: Bash".into(),
        };
        let data = event.wire_data(7, "2026-01-01T00:00:00.000000Z", Some("agent-1"));
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(&keys[..2], ["seq", "timestamp"]);
        assert_eq!(data["parent_agent_id"], "agent-1");
        assert!(!data.contains_key("event"));
        let back = RunEvent::from_wire("tool_call", &Value::Object(data)).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn progress_keeps_the_contracts_type_field() {
        let event = RunEvent::Progress {
            kind: ProgressKind::Setup,
            message: "starting".into(),
            tool_use_id: None,
            tool_name: None,
            tool_status: None,
        };
        let data = event.wire_data(1, "t", None);
        assert_eq!(data["type"], "setup");
        assert_eq!(event.name(), "progress");
    }
}
