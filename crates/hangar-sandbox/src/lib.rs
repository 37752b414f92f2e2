//! Per-conversation sandboxes.
//!
//! A [`Backend`] creates a [`Sandbox`] from a [`SandboxSpec`]. Inside every sandbox runs the
//! supervisor — the `hangar` binary re-invoked as PID 1 — which takes requests over a Unix socket
//! that only the host can reach, spawns commands and persistent shells, enforces timeouts and
//! output caps and reaps zombies. Backends differ only in how they build the isolation around it:
//! [`bwrap`] (bubblewrap, the default) or [`oci`] (runc with a generated bundle).
//!
//! Network is off unless the spec allows domains; then the supervisor bridges
//! `127.0.0.1:3128` inside to the host's [`egress`] proxy, which enforces the allow-list and
//! refuses private addresses after resolving names itself.

pub mod bwrap;
pub mod cgroup;
pub mod check;
mod client;
pub mod egress;
mod error;
pub mod fake;
pub mod host;
pub mod hostfs;
pub mod layout;
pub mod manager;
pub mod oci;
pub mod seccomp;
mod spec;
pub mod supervisor;
pub mod wire;

pub use client::{ExecEvent, ExecHandle, ExecOutcome, SupervisorClient};
pub use error::{Result, SandboxError};
pub use spec::{ExecRequest, Limits, NetworkPolicy, SandboxId, SandboxSpec};

use async_trait::async_trait;

/// Creates sandboxes. One per host; cheap to share.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `bwrap`, `oci` or `fake`.
    fn name(&self) -> &'static str;
    /// Whether this backend can run here; `Err` says what is missing and how to fix it.
    fn ready(&self) -> Result<()>;
    /// Starts a sandbox and waits until its supervisor answers.
    async fn create(&self, spec: SandboxSpec) -> Result<Box<dyn Sandbox>>;
    /// Removes leftovers of sandboxes this host's previous process owned (after a crash).
    /// Returns how many were removed.
    async fn reap_leftovers(&self) -> Result<usize>;
}

/// One running sandbox.
#[async_trait]
pub trait Sandbox: Send + Sync + 'static {
    fn id(&self) -> &SandboxId;
    /// Runs one command (argv, no shell) and streams its output.
    async fn exec(&self, request: ExecRequest) -> Result<ExecHandle>;
    /// Runs a command line in the persistent `bash` session `session` (created on first use):
    /// the working directory and exported variables survive between calls.
    async fn shell(
        &self,
        session: &str,
        command: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<ExecHandle>;
    /// Whether the supervisor still answers.
    async fn alive(&self) -> bool;
    /// Stops every process and removes the sandbox's host-side state. Idempotent.
    async fn destroy(&self) -> Result<()>;
}

/// Metric names, in one place.
pub mod metrics_names {
    /// Gauge: sandboxes running now.
    pub const ACTIVE: &str = "hangar_sandboxes_active";
    /// Counter: sandboxes started.
    pub const STARTED: &str = "hangar_sandboxes_started_total";
    /// Histogram: seconds from create to the supervisor's first answer.
    pub const START_SECONDS: &str = "hangar_sandbox_start_seconds";
    /// Counter: sandboxes found dead while in use.
    pub const CRASHES: &str = "hangar_sandbox_crashes_total";
    /// Counter: processes killed by a limit, by `limit` (memory, timeout, quota).
    pub const LIMIT_KILLS: &str = "hangar_sandbox_limit_kills_total";
}
