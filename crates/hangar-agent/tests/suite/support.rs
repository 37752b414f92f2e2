//! A recording observer, test tools and a context over a temporary workspace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hangar_agent::tools::{ToolRegistry, task_spec};
use hangar_agent::{
    Agent, AgentConfig, DirectClient, ModelCall, RunObserver, RunState, SandboxProvider, Subagents, Tool,
    ToolContext, ToolError, ToolOutput,
};
use hangar_llm::{Message, ScriptedProvider, Step};
use hangar_protocol::RunEvent;
use hangar_sandbox::Sandbox;
use hangar_sandbox::hostfs::WorkspaceDir;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(Option<String>, RunEvent)>>,
    pub calls: Mutex<Vec<ModelCall>>,
    pub history: Mutex<Vec<Message>>,
    pub summaries: Mutex<Vec<Message>>,
}

impl Recorder {
    pub fn events(&self) -> Vec<(Option<String>, RunEvent)> {
        self.events.lock().unwrap().clone()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.events().iter().map(|(_, e)| e.name()).collect()
    }

    pub fn tool_results(&self) -> Vec<(String, bool, String)> {
        self.events()
            .into_iter()
            .filter_map(|(_, e)| match e {
                RunEvent::ToolResult {
                    tool_name,
                    is_error,
                    content,
                    ..
                } => Some((tool_name, is_error, content)),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl RunObserver for Recorder {
    async fn event(&self, agent_id: Option<&str>, event: RunEvent) {
        self.events
            .lock()
            .unwrap()
            .push((agent_id.map(str::to_owned), event));
    }
    async fn model_call(&self, call: &ModelCall) {
        self.calls.lock().unwrap().push(call.clone());
    }
    async fn history(&self, message: &Message) {
        self.history.lock().unwrap().push(message.clone());
    }
    async fn compacted(&self, summary: &Message) {
        self.summaries.lock().unwrap().push(summary.clone());
    }
}

pub struct NoSandbox;

#[async_trait]
impl SandboxProvider for NoSandbox {
    async fn sandbox(&self) -> Result<Arc<dyn Sandbox>, String> {
        Err("no sandbox in this test".to_owned())
    }
}

/// A read-only tool that waits, counting how many of its calls run at the same time.
#[derive(Default)]
pub struct Wait {
    pub running: AtomicUsize,
    pub peak: AtomicUsize,
}

#[async_trait]
impl Tool for Wait {
    fn name(&self) -> &str {
        "Wait"
    }
    fn description(&self) -> String {
        "waits".into()
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}},
               "required": ["ms"], "additionalProperties": false})
    }
    fn read_only(&self) -> bool {
        true
    }
    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let ms = input["ms"].as_u64().unwrap_or(0);
        let result = tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(ToolOutput::text(format!("waited {ms}"))),
            () = ctx.cancel.cancelled() => Err(ToolError::Cancelled),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

pub struct Rig {
    pub model: Arc<ScriptedProvider>,
    pub recorder: Arc<Recorder>,
    pub wait: Arc<Wait>,
    pub ctx: ToolContext,
    pub cancel: CancellationToken,
    pub _dir: tempfile::TempDir,
}

impl Rig {
    pub fn new(steps: Vec<Step>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let workspace = Arc::new(WorkspaceDir::open(dir.path()).unwrap());
        let cancel = CancellationToken::new();
        let ctx = ToolContext::new(
            workspace,
            Arc::new(NoSandbox),
            Arc::new(RunState::default()),
            cancel.clone(),
        );
        Self {
            model: Arc::new(ScriptedProvider::new("scripted", steps)),
            recorder: Arc::new(Recorder::default()),
            wait: Arc::new(Wait::default()),
            ctx,
            cancel,
            _dir: dir,
        }
    }

    pub fn registry(&self, task: bool) -> ToolRegistry {
        let mut tools: Vec<Arc<dyn Tool>> = hangar_agent::tools::builtin();
        tools.push(self.wait.clone());
        let mut registry = ToolRegistry::new(tools).unwrap();
        if task {
            registry.add_loop_tool(task_spec()).unwrap();
        }
        registry
    }

    pub fn agent(&self, config: AgentConfig) -> Agent {
        let client = Arc::new(DirectClient {
            provider: self.model.clone(),
            model_id: "test-model".into(),
        });
        Agent::new(
            client.clone(),
            Arc::new(self.registry(true)),
            self.recorder.clone(),
            config.clone(),
        )
        .with_subagents(Subagents {
            client,
            tools: Arc::new(self.registry(false)),
            config,
        })
    }
}
