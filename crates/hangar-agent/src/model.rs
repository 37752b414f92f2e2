//! The loop's view of the model layer: start one streaming call, learn which model answered.
//! The server implements it over its gateway (retries, circuit breakers, fallback chains);
//! tests use a scripted provider.

use std::sync::Arc;

use async_trait::async_trait;
use hangar_llm::{EventStream, LlmError, ModelProvider, ModelRequest};
use tokio_util::sync::CancellationToken;

/// A started call.
pub struct ModelStream {
    /// The id of the model row answering (after any fallback), for billing.
    pub model_id: String,
    pub events: EventStream,
}

#[async_trait]
pub trait ModelClient: Send + Sync + 'static {
    /// Starts one call. `request.model` is filled in by the client.
    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<ModelStream, LlmError>;
}

/// One provider and one model, no fallback: for tests and tools.
pub struct DirectClient {
    pub provider: Arc<dyn ModelProvider>,
    pub model_id: String,
}

#[async_trait]
impl ModelClient for DirectClient {
    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<ModelStream, LlmError> {
        let mut request = request.clone();
        request.model = self.model_id.clone();
        let events = self.provider.stream(&request, cancel).await?;
        Ok(ModelStream {
            model_id: self.model_id.clone(),
            events,
        })
    }
}
