//! Where a run's effects go: events (to be numbered, stored and streamed), model calls (to be
//! billed) and the main agent's model-facing history (to be stored so a continuation sends
//! exactly what the model saw). The server implements it; tests record.

use async_trait::async_trait;
use hangar_llm::{Message, Usage};
use hangar_protocol::RunEvent;

/// One model call, finished or broken off midway (its usage so far is still billed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelCall {
    pub model_id: String,
    pub usage: Usage,
    /// The subagent that made it, `None` for the main agent.
    pub agent_id: Option<String>,
}

#[async_trait]
pub trait RunObserver: Send + Sync + 'static {
    /// An event; `agent_id` is the subagent that produced it (`None` for the main agent).
    async fn event(&self, agent_id: Option<&str>, event: RunEvent);
    async fn model_call(&self, call: &ModelCall);
    /// A message appended to the main agent's history, in order.
    async fn history(&self, message: &Message);
    /// Older history was replaced by `summary`: later loads start from it.
    async fn compacted(&self, summary: &Message);
}
