//! Hangar's model layer: one [`ModelProvider`] trait with one streaming call, and its
//! implementations for the Anthropic Messages API, AWS Bedrock and OpenAI-compatible
//! chat-completions endpoints.
//!
//! A provider takes a normalised [`ModelRequest`] (system blocks with cache marks; messages of
//! text, image, tool-use, tool-result and thinking blocks; tool definitions; limits) and returns
//! a stream of normalised [`StreamEvent`]s. Errors before the first event are returned from
//! `stream` and may be retried; errors inside the stream are items of it and are never retried
//! silently, because output may already have reached the user.

mod breaker;
mod cost;
mod error;
mod gateway;
mod provider;
mod providers;
mod registry;
mod retry;
mod scripted;
mod types;

pub use breaker::{BreakerConfig, CircuitBreakers, CircuitState, Permit};
pub use cost::{Prices, cost_of};
pub use error::{LlmError, Result};
pub use gateway::{Attempt, Gateway, GatewayFailure, GatewayStream, Target};
pub use provider::{EventStream, ModelProvider};
pub use providers::{
    AnthropicConfig, AnthropicDecoder, AnthropicProvider, BedrockConfig, BedrockCredentials, BedrockProvider,
    OpenAiConfig, OpenAiDecoder, OpenAiProvider,
};
pub use registry::{EnvLookup, ProviderSettings, Registry};
pub use retry::RetryPolicy;
pub use scripted::{ScriptItem, ScriptedProvider, Step, text_reply_events};
pub use types::{
    BlockKind, CacheTtl, ContentBlock, ImageSource, Message, ModelRequest, Role, StopReason, StreamEvent,
    SystemBlock, ToolResultContent, ToolSpec, Usage,
};
