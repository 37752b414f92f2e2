//! The `hangar` server: HTTP API (axum), authentication and tenant scoping, middleware, health,
//! metrics, the OpenAPI document, configuration and the admin CLI.
//!
//! `router(state)` builds the application; `serve(state, listener, shutdown)` runs it. The
//! binary (`src/main.rs`) only parses the command line and calls into `cli`.

mod app;
mod auth;
mod chat;
pub mod cli;
pub mod config;
mod error;
mod extract;
pub mod llm;
mod middleware;
mod redact;
mod routes;
mod runs;
pub mod sandbox;
mod sse;
mod state;
pub mod telemetry;
mod title;
pub mod workspace;

pub use app::{openapi, router, serve};
pub use auth::Principal;
pub use config::{AppEnv, Settings};
pub use llm::Llm;
pub use state::AppState;
