//! The in-sandbox supervisor: the `hangar` binary re-invoked inside the sandbox as PID 1
//! (`hangar __sandbox-supervisor '<config json>'`).
//!
//! Before anything else it hardens itself — rlimits, non-dumpable (so commands of the same uid
//! cannot read its memory), `no_new_privs` and the seccomp filter, which every child inherits —
//! then serves the [`wire`](crate::wire) protocol on the listening socket the host passed as a file
//! descriptor. The socket's path exists only on the host, so sandboxed code cannot replace it.
//! Each connection is one request: a command, a persistent-shell command, a ping or a usage query.

mod bridge;
mod exec;
mod output;
mod pump;
mod quota;
mod reaper;
mod shell;

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::resource::{Resource, setrlimit};
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};

use crate::wire::{self, Reply, Request};

/// The first argument that makes `hangar` act as the supervisor.
pub const ARG: &str = "__sandbox-supervisor";

/// File descriptor of the listening socket inside the sandbox.
pub const LISTEN_FD: i32 = 3;

/// Port inside the sandbox that is bridged to the host's egress proxy.
pub const EGRESS_PORT: u16 = 3128;

/// Everything the supervisor needs, passed as one JSON argument. No secrets go in here.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorConfig {
    /// Complete environment of commands (the supervisor's own environment is not inherited).
    pub env: BTreeMap<String, String>,
    /// Default working directory.
    pub workdir: String,
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    /// Output kept per stream and command (head + tail).
    pub output_bytes: usize,
    /// `RLIMIT_FSIZE`: the largest file a command can write.
    pub file_size_bytes: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    /// `RLIMIT_NPROC`, only when no pids cgroup limits the sandbox.
    pub nproc: Option<u64>,
    /// Bytes the workspace may hold; commands that grow it past this are stopped.
    pub workspace_quota: Option<u64>,
    /// Unix socket (inside the sandbox) of the host's egress proxy, bridged to
    /// `127.0.0.1:EGRESS_PORT`.
    pub egress_socket: Option<String>,
    /// Install the seccomp filter (always on in production; tests of the filter itself turn it
    /// off to compare).
    pub seccomp: bool,
}

impl SupervisorConfig {
    pub fn timeout(&self, asked_ms: Option<u64>) -> Duration {
        Duration::from_millis(
            asked_ms
                .unwrap_or(self.default_timeout_ms)
                .clamp(1, self.max_timeout_ms),
        )
    }
}

/// Shared state of the running supervisor.
pub(crate) struct Ctx {
    config: SupervisorConfig,
    reaper: reaper::Reaper,
    shells: shell::Shells,
    quota: quota::Quota,
}

/// Entry point, called by `hangar`'s `main` when `argv[1] == ARG`.
pub fn main(config_json: &str) -> ExitCode {
    match run(config_json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hangar supervisor: {e}");
            ExitCode::from(70)
        }
    }
}

fn run(config_json: &str) -> Result<(), String> {
    let config: SupervisorConfig =
        serde_json::from_str(config_json).map_err(|e| format!("bad config: {e}"))?;
    harden(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(serve(config))
}

/// Limits and filters that the supervisor and every child inherit.
fn harden(config: &SupervisorConfig) -> Result<(), String> {
    let limit = |resource, value: u64, what: &str| {
        setrlimit(resource, value, value).map_err(|e| format!("setrlimit {what}: {e}"))
    };
    limit(Resource::RLIMIT_CORE, 0, "core")?;
    limit(Resource::RLIMIT_FSIZE, config.file_size_bytes, "fsize")?;
    limit(Resource::RLIMIT_NOFILE, config.open_files, "nofile")?;
    if let Some(nproc) = config.nproc {
        limit(Resource::RLIMIT_NPROC, nproc, "nproc")?;
    }
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl dumpable: {e}"))?;
    if config.seccomp {
        crate::seccomp::install().map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn serve(config: SupervisorConfig) -> Result<(), String> {
    let listener = listener_from_fd()?;
    let reaper = reaper::Reaper::start().map_err(|e| format!("SIGCHLD: {e}"))?;
    if let Some(socket) = &config.egress_socket {
        bridge::start(socket.clone(), EGRESS_PORT)
            .await
            .map_err(|e| format!("egress bridge: {e}"))?;
    }
    let quota = quota::Quota::start(config.workdir.clone(), config.workspace_quota);
    let ctx = Arc::new(Ctx {
        config,
        reaper,
        shells: shell::Shells::default(),
        quota,
    });
    loop {
        let (conn, _) = listener.accept().await.map_err(|e| format!("accept: {e}"))?;
        tokio::spawn(handle(ctx.clone(), conn));
    }
}

#[expect(unsafe_code, reason = "adopting the listening socket the host passed as fd 3")]
fn listener_from_fd() -> Result<UnixListener, String> {
    // SAFETY: fd 3 is the listening socket the host placed there before exec (bwrap and runc
    // pass it through); nothing else in this process owns or closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FD) };
    let std_listener = std::os::unix::net::UnixListener::from(fd);
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("listen fd: {e}"))?;
    UnixListener::from_std(std_listener).map_err(|e| format!("listen fd: {e}"))
}

async fn handle(ctx: Arc<Ctx>, conn: UnixStream) {
    let (mut rd, mut wr) = conn.into_split();
    let request = match wire::read_frame(&mut rd).await {
        Ok(Some(wire::Frame::Control(bytes))) => wire::decode::<Request>(&bytes),
        Ok(_) => return,
        Err(e) => Err(e),
    };
    let result = match request {
        Err(e) => {
            wire::write_json(
                &mut wr,
                &Reply::Error {
                    message: format!("bad request: {e}"),
                },
            )
            .await
        }
        Ok(Request::Ping) => {
            wire::write_json(
                &mut wr,
                &Reply::Pong {
                    version: wire::VERSION,
                    pid: std::process::id(),
                },
            )
            .await
        }
        Ok(Request::Usage) => {
            let usage = wire::UsageInfo {
                processes: ctx.reaper.running(),
                sessions: ctx.shells.count(),
                counters: BTreeMap::from([("reaped_orphans".to_owned(), ctx.reaper.reaped_orphans())]),
            };
            wire::write_json(&mut wr, &Reply::Usage(usage)).await
        }
        Ok(Request::Exec(request)) => exec::run(&ctx, request, rd, wr).await,
        Ok(Request::Shell {
            session,
            command,
            timeout_ms,
        }) => shell::run(&ctx, &session, &command, timeout_ms, rd, wr).await,
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "supervisor connection ended");
    }
}
