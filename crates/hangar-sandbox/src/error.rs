//! Errors of the sandbox layer. Each says what failed in words an operator can act on.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The host lacks something the backend needs (bubblewrap missing, user namespaces off…).
    /// Commands never run unsandboxed instead.
    #[error("sandbox unavailable: {reason} (fix: {fix})")]
    Unavailable { reason: String, fix: String },
    /// The sandbox could not be started.
    #[error("sandbox failed to start: {0}")]
    Start(String),
    /// The sandbox is gone (destroyed, crashed, killed by a limit).
    #[error("sandbox is not running: {0}")]
    Gone(String),
    /// The supervisor broke the protocol or the connection to it failed.
    #[error("sandbox supervisor: {0}")]
    Supervisor(String),
    /// The request itself is invalid (bad path, empty command, forbidden environment variable…).
    #[error("invalid sandbox request: {0}")]
    Invalid(String),
    #[error("sandbox I/O: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
