//! What a tool is and what it may use while it runs.
//!
//! A [`Tool`] has a name, a description and a JSON Schema for its input, which the model sees;
//! the registry validates every call's input against that schema before [`Tool::call`] runs, so
//! a tool can deserialize its input into a struct and treat a failure there as a bug-free
//! "invalid input" result. Failures come in two kinds ([`ToolError`]): those returned to the
//! model as an error result, which it can fix and retry, and those fatal to the run.
//!
//! Tools reach the conversation's files through [`ToolContext::workspace`] — a host-side handle
//! that never follows symlinks out of the workspace — and its sandbox through
//! [`ToolContext::sandbox`], created on first use.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hangar_llm::ToolResultContent;
use hangar_sandbox::Sandbox;
use hangar_sandbox::hostfs::{RelPath, WorkspaceDir};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Where the workspace appears inside the sandbox; tools accept paths under it or relative ones.
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// A built-in or external tool the model can call.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The name the model calls it by (`Bash`, `Read`, `mcp__server__tool`).
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> String;
    /// JSON Schema (an object schema) of its input.
    fn input_schema(&self) -> Value;
    /// Whether it only reads. Independent calls of read-only tools in one turn run in parallel.
    fn read_only(&self) -> bool {
        false
    }
    /// Runs one call. `input` has already been validated against [`Tool::input_schema`].
    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError>;
}

/// What a call returns to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub content: Vec<ToolResultContent>,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            content: vec![ToolResultContent::Text { text: text.into() }],
            is_error: false,
        }
    }

    /// An error result: the call failed in a way the model can see and react to.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            content: vec![ToolResultContent::Text { text: text.into() }],
            is_error: true,
        }
    }

    /// The text parts joined, for events and logs.
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            match part {
                ToolResultContent::Text { text } => {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(text);
                }
                ToolResultContent::Image { source } => {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&format!("[image {}]", source.media_type));
                }
            }
        }
        out
    }
}

/// Why a call did not produce an output.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The model's request cannot be carried out (bad path, missing file, no match…). Returned
    /// to the model as an error result.
    #[error("{0}")]
    Failed(String),
    /// The run cannot go on (an internal failure the model cannot fix).
    #[error("{0}")]
    Fatal(String),
    /// The run was cancelled while the tool ran.
    #[error("cancelled")]
    Cancelled,
}

impl ToolError {
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

/// Gives tools the conversation's sandbox, starting it on first use.
#[async_trait]
pub trait SandboxProvider: Send + Sync + 'static {
    /// The sandbox, or why there is none (the message is shown to the model and the user).
    async fn sandbox(&self) -> Result<Arc<dyn Sandbox>, String>;
}

/// One item of the `TodoWrite` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    pub content: String,
    pub status: TodoStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, rename = "activeForm", skip_serializing_if = "Option::is_none")]
    pub active_form: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TodoStatus {
    Pending,
    InProgress,
    Completed,
}

/// State a run's tools share.
#[derive(Debug, Default)]
pub struct RunState {
    /// Workspace paths read in full or in part during the run (`Edit` requires it).
    pub read_files: Mutex<BTreeSet<String>>,
    /// Workspace paths written or edited during the run.
    pub written_files: Mutex<BTreeSet<String>>,
    /// Paths passed to `present_files`, in order, without duplicates.
    pub presented: Mutex<Vec<String>>,
    pub todos: Mutex<Vec<Todo>>,
}

impl RunState {
    pub fn mark_read(&self, path: &RelPath) {
        if let Ok(mut set) = self.read_files.lock() {
            set.insert(path.as_str().to_owned());
        }
    }

    pub fn was_read(&self, path: &RelPath) -> bool {
        self.read_files
            .lock()
            .map(|set| set.contains(path.as_str()))
            .unwrap_or(false)
    }

    pub fn was_written(&self, path: &RelPath) -> bool {
        self.written_files
            .lock()
            .map(|set| set.contains(path.as_str()))
            .unwrap_or(false)
    }

    pub fn mark_written(&self, path: &RelPath) {
        if let Ok(mut set) = self.written_files.lock() {
            set.insert(path.as_str().to_owned());
        }
    }
}

/// What a running tool may use.
#[derive(Clone)]
pub struct ToolContext {
    workspace: Arc<WorkspaceDir>,
    sandbox: Arc<dyn SandboxProvider>,
    pub run: Arc<RunState>,
    pub cancel: CancellationToken,
}

impl ToolContext {
    pub fn new(
        workspace: Arc<WorkspaceDir>,
        sandbox: Arc<dyn SandboxProvider>,
        run: Arc<RunState>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            workspace,
            sandbox,
            run,
            cancel,
        }
    }

    /// The workspace, for host-side file access (blocking calls: use `spawn_blocking`).
    pub fn workspace(&self) -> &Arc<WorkspaceDir> {
        &self.workspace
    }

    pub async fn sandbox(&self) -> Result<Arc<dyn Sandbox>, ToolError> {
        self.sandbox.sandbox().await.map_err(ToolError::Failed)
    }

    /// The same context with another cancellation token (a subagent's).
    pub fn with_cancel(&self, cancel: CancellationToken) -> Self {
        Self {
            cancel,
            ..self.clone()
        }
    }
}

/// Turns a path the model gave (`/workspace/a/b.txt`, `a/b.txt`, `./a/b.txt`, `/workspace`)
/// into a workspace-relative path; `None` is the workspace root. Anything outside the
/// workspace, or not a valid [`RelPath`], is an error the model sees.
pub fn workspace_path(given: &str) -> Result<Option<RelPath>, ToolError> {
    let trimmed = given.trim();
    let relative = if let Some(rest) = trimmed.strip_prefix(WORKSPACE_MOUNT) {
        if rest.is_empty() {
            ""
        } else if let Some(rest) = rest.strip_prefix('/') {
            rest
        } else {
            return Err(outside(given));
        }
    } else if Path::new(trimmed).is_absolute() {
        return Err(outside(given));
    } else {
        trimmed
    };
    let relative = relative.trim_start_matches("./").trim_end_matches('/');
    if relative.is_empty() || relative == "." {
        return Ok(None);
    }
    RelPath::parse(relative)
        .map(Some)
        .map_err(|err| ToolError::Failed(format!("invalid path {given:?}: {err}")))
}

/// Like [`workspace_path`] but the root is not a file.
pub fn workspace_file(given: &str) -> Result<RelPath, ToolError> {
    workspace_path(given)?
        .ok_or_else(|| ToolError::Failed(format!("{given:?} is the workspace directory, not a file")))
}

/// How a workspace path is shown to the model: absolute, under `/workspace`.
pub fn display_path(path: Option<&RelPath>) -> String {
    match path {
        Some(path) => format!("{WORKSPACE_MOUNT}/{path}"),
        None => WORKSPACE_MOUNT.to_owned(),
    }
}

fn outside(given: &str) -> ToolError {
    ToolError::Failed(format!(
        "{given:?} is outside the workspace; use a path under {WORKSPACE_MOUNT} or a relative path"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_into_the_workspace() {
        let ok = |s: &str| workspace_path(s).unwrap().map(|p| p.as_str().to_owned());
        assert_eq!(ok("/workspace"), None);
        assert_eq!(ok("/workspace/"), None);
        assert_eq!(ok("."), None);
        assert_eq!(ok("/workspace/a/b.txt").as_deref(), Some("a/b.txt"));
        assert_eq!(ok("a/b.txt").as_deref(), Some("a/b.txt"));
        assert_eq!(ok("./a/").as_deref(), Some("a"));
        for bad in [
            "/etc/passwd",
            "/workspacex/a",
            "../a",
            "a/../../b",
            "a\0b",
            "/workspace/../etc",
        ] {
            assert!(workspace_path(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
