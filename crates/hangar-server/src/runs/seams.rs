//! The agent loop's seams as the server fills them: model calls through the gateway (retries,
//! breakers, the model's fallback chain) and the conversation's sandbox from the manager.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use hangar_agent::{ModelClient, ModelStream, SandboxProvider};
use hangar_llm::{LlmError, ModelRequest};
use hangar_sandbox::manager::SandboxManager;
use hangar_sandbox::{Limits, NetworkPolicy, Sandbox, SandboxSpec};
use tokio_util::sync::CancellationToken;

use crate::llm::{Chain, Llm};

pub struct ChainClient {
    pub llm: Arc<Llm>,
    pub chain: Chain,
}

#[async_trait]
impl ModelClient for ChainClient {
    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<ModelStream, LlmError> {
        let started = self.llm.stream(&self.chain, request, cancel).await?;
        Ok(ModelStream {
            model_id: started.model.model_id.as_str().to_owned(),
            events: started.events,
        })
    }
}

/// Starts (or reuses) the conversation's sandbox on the first tool call that needs it.
pub struct ConversationSandbox {
    pub manager: Arc<SandboxManager>,
    /// The manager's key: the conversation id.
    pub key: String,
    pub owner: String,
    pub workspace: PathBuf,
    pub limits: Limits,
    pub network: NetworkPolicy,
}

#[async_trait]
impl SandboxProvider for ConversationSandbox {
    async fn sandbox(&self) -> Result<Arc<dyn Sandbox>, String> {
        let mut spec = SandboxSpec::new(self.owner.clone(), self.workspace.clone());
        spec.limits = self.limits.clone();
        spec.network = self.network.clone();
        self.manager
            .acquire(&self.key, spec)
            .await
            .map_err(|err| format!("the sandbox is unavailable: {err}"))
    }
}
