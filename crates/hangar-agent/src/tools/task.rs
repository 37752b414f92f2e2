//! `Task`: hands a self-contained piece of work to a subagent with its own context. The loop
//! carries it out (it needs the model and the other tools); this file holds what the model is
//! told and the input's shape.

use hangar_llm::ToolSpec;
use serde::Deserialize;
use serde_json::json;

pub const TASK_TOOL: &str = "Task";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    /// A short (3-5 word) description, shown to the user.
    pub description: String,
    /// The full instructions for the subagent.
    pub prompt: String,
    #[serde(default)]
    pub subagent_type: Option<String>,
}

/// The `Task` tool as the model sees it.
pub fn task_spec() -> ToolSpec {
    ToolSpec {
        name: TASK_TOOL.to_owned(),
        description: "Launches a subagent to carry out a self-contained task with its own context \
                      and the same tools and workspace (except Task). Give it complete instructions: \
                      it cannot see this conversation. It returns its final answer as the result."
            .to_owned(),
        input_schema: json!({
            "type": "object",
            "properties": {
                "description": {"type": "string", "minLength": 1, "description": "A short (3-5 word) description of the task."},
                "prompt": {"type": "string", "minLength": 1, "description": "The task for the subagent to perform."},
                "subagent_type": {"type": "string", "description": "The kind of subagent (general-purpose by default)."}
            },
            "required": ["description", "prompt"],
            "additionalProperties": false
        }),
        cache: None,
    }
}
