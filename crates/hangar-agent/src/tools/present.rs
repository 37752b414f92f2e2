//! `present_files`: marks workspace files as the run's results to show the user (the original's
//! `mcp__file-presentation__present_files`, whose presented-files list was always empty). Each
//! path must be an existing regular file in the workspace.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_input;
use crate::{Tool, ToolContext, ToolError, ToolOutput, display_path, workspace_file};

pub struct PresentFiles;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    file_paths: Vec<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "shown in the tool_call event only")]
    description: Option<String>,
}

#[async_trait]
impl Tool for PresentFiles {
    fn name(&self) -> &str {
        "present_files"
    }

    fn description(&self) -> String {
        "Presents files you created or changed in /workspace to the user as results. Call it after \
         creating files the user asked for (also files created by a subagent), with every path."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "file_paths": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                "description": {"type": "string"}
            },
            "required": ["file_paths"],
            "additionalProperties": false
        })
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let Input { file_paths, .. } = parse_input(self.name(), input)?;
        let paths = file_paths
            .iter()
            .map(|p| workspace_file(p))
            .collect::<Result<Vec<_>, _>>()?;
        let workspace = ctx.workspace().clone();
        let checked = paths.clone();
        let missing = tokio::task::spawn_blocking(move || {
            checked
                .iter()
                .filter(|path| !workspace.metadata(path).is_ok_and(|m| m.file_type().is_file()))
                .map(|path| display_path(Some(path)))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|err| ToolError::Fatal(format!("file check failed: {err}")))?;
        if !missing.is_empty() {
            return Err(ToolError::Failed(format!(
                "not a file in the workspace: {}",
                missing.join(", ")
            )));
        }
        if let Ok(mut presented) = ctx.run.presented.lock() {
            for path in &paths {
                if !presented.iter().any(|p| p == path.as_str()) {
                    presented.push(path.as_str().to_owned());
                }
            }
        }
        let shown: Vec<String> = paths.iter().map(|p| display_path(Some(p))).collect();
        Ok(ToolOutput::text(format!(
            "Presented to the user: {}",
            shown.join(", ")
        )))
    }
}
