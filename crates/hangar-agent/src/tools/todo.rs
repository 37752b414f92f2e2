//! `TodoWrite`: the model's own task list for the run, replaced as a whole on every call. The
//! list is kept in the run state and shown to the user through the tool-call event.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_input;
use crate::{Todo, TodoStatus, Tool, ToolContext, ToolError, ToolOutput};

pub struct TodoWrite;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    todos: Vec<Todo>,
}

#[async_trait]
impl Tool for TodoWrite {
    fn name(&self) -> &str {
        "TodoWrite"
    }

    fn description(&self) -> String {
        "Creates or replaces your task list for this piece of work. Use it for tasks with several \
         steps: mark one item in_progress while you work on it and completed as soon as it is done."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "todos": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "content": {"type": "string", "minLength": 1},
                            "status": {"type": "string", "enum": ["pending", "in_progress", "completed"]},
                            "id": {"type": "string"},
                            "activeForm": {"type": "string"}
                        },
                        "required": ["content", "status"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["todos"],
            "additionalProperties": false
        })
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let Input { todos } = parse_input(self.name(), input)?;
        let in_progress = todos
            .iter()
            .filter(|t| t.status == TodoStatus::InProgress)
            .count();
        let done = todos.iter().filter(|t| t.status == TodoStatus::Completed).count();
        let total = todos.len();
        if let Ok(mut list) = ctx.run.todos.lock() {
            *list = todos;
        }
        let mut text = format!("Todo list updated: {done}/{total} completed");
        if in_progress > 1 {
            text.push_str(&format!(
                "; note: {in_progress} items are in_progress, keep only one in progress at a time"
            ));
        }
        Ok(ToolOutput::text(text))
    }
}
