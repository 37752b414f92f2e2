//! A workspace in a temporary directory and a [`ToolContext`] over it, for the file tools'
//! unit tests. The temporary directory also holds `outside/secret`, a host file the tools must
//! never reach.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use hangar_llm::ToolResultContent;
use hangar_sandbox::Sandbox;
use hangar_sandbox::hostfs::{RelPath, WorkspaceDir};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::tool::{RunState, SandboxProvider, Tool, ToolContext, ToolError, ToolOutput};

pub(crate) const SECRET: &str = "host secret";

struct NoSandbox;

#[async_trait]
impl SandboxProvider for NoSandbox {
    async fn sandbox(&self) -> Result<Arc<dyn Sandbox>, String> {
        Err("no sandbox in unit tests".to_owned())
    }
}

pub(crate) struct TestWorkspace {
    _tmp: tempfile::TempDir,
    /// The workspace root on the host.
    pub root: PathBuf,
    /// A directory next to the workspace holding `secret`.
    pub outside: PathBuf,
    pub ctx: ToolContext,
}

impl TestWorkspace {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ws");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), SECRET).unwrap();
        let workspace = Arc::new(WorkspaceDir::open(&root).unwrap());
        let ctx = ToolContext::new(
            workspace,
            Arc::new(NoSandbox),
            Arc::new(RunState::default()),
            CancellationToken::new(),
        );
        Self {
            _tmp: tmp,
            root,
            outside,
            ctx,
        }
    }

    /// Writes a file in the workspace (directly, as sandboxed code would), creating parents.
    pub fn put(&self, path: &str, content: impl AsRef<[u8]>) {
        let full = self.root.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(full, content).unwrap();
    }

    /// A workspace file's content, read directly.
    pub fn get(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap()
    }

    /// Places a symlink at `path` in the workspace pointing at `outside/secret`.
    pub fn link_secret(&self, path: &str) {
        std::os::unix::fs::symlink(self.outside.join("secret"), self.root.join(path)).unwrap();
    }

    /// Marks `path` as read in this run, as a `Read` call would.
    pub fn mark_read(&self, path: &str) {
        self.ctx.run.mark_read(&RelPath::parse(path).unwrap());
    }

    /// Calls `tool` after checking `input` against its schema, as the registry does.
    pub async fn call(&self, tool: &dyn Tool, input: Value) -> Result<ToolOutput, ToolError> {
        let schema = tool.input_schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        let validator = jsonschema::validator_for(&schema).unwrap();
        if let Err(err) = validator.validate(&input) {
            panic!("{} input {input} does not match its schema: {err}", tool.name());
        }
        tool.call(input, &self.ctx).await
    }

    /// Calls `tool` and returns its text, failing the test on an error.
    pub async fn ok(&self, tool: &dyn Tool, input: Value) -> String {
        match self.call(tool, input).await {
            Ok(output) => {
                assert!(!output.is_error);
                output.text_content()
            }
            Err(err) => panic!("{} failed: {err}", tool.name()),
        }
    }

    /// Calls `tool` expecting [`ToolError::Failed`] and returns its message.
    pub async fn fails(&self, tool: &dyn Tool, input: Value) -> String {
        match self.call(tool, input).await {
            Err(ToolError::Failed(message)) => message,
            Err(other) => panic!("{} should fail for the model, got {other:?}", tool.name()),
            Ok(output) => panic!("{} should fail, got {:?}", tool.name(), output.text_content()),
        }
    }
}

/// The text of the only text part of `output`.
pub(crate) fn only_text(output: &ToolOutput) -> &str {
    match output.content.as_slice() {
        [ToolResultContent::Text { text }] => text,
        other => panic!("expected one text part, got {other:?}"),
    }
}
