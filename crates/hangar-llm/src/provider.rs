//! The one trait every model provider implements.

use std::pin::Pin;

use futures::Stream;
use tokio_util::sync::CancellationToken;

use crate::{LlmError, ModelRequest, StreamEvent};

/// The events of one model call. An `Err` item ends the stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

#[async_trait::async_trait]
pub trait ModelProvider: Send + Sync + 'static {
    /// `anthropic`, `bedrock`, `openai`, or a test name.
    fn name(&self) -> &str;

    /// Starts one streaming call. Returns `Err` when the call fails before any event (HTTP
    /// status, connection), which a caller may retry. Once the stream is returned, failures are
    /// `Err` items of it. Cancelling `cancel` ends the stream with [`LlmError::Cancelled`] and
    /// closes the connection.
    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, LlmError>;
}
