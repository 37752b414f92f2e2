//! Hangar's agent loop.
//!
//! A run is one user message processed to completion: the [`Agent`] calls the model with the
//! conversation's history and the tools, executes the tool calls it asks for (independent
//! read-only ones in parallel), feeds the results back and repeats until the model stops, a
//! limit is reached or the run is cancelled. Everything it does goes to a [`RunObserver`]:
//! events to stream, model calls to bill, history to store.

mod agent;
pub mod context;
pub mod history;
mod model;
mod observer;
pub mod prompt;
mod tool;
pub mod tools;

pub use agent::{Agent, AgentConfig, Outcome, Stop, Subagents};
pub use model::{DirectClient, ModelClient, ModelStream};
pub use observer::{ModelCall, RunObserver};
pub use tool::{
    RunState, SandboxProvider, Todo, TodoStatus, Tool, ToolContext, ToolError, ToolOutput, WORKSPACE_MOUNT,
    display_path, workspace_file, workspace_path,
};
