//! `hangar sandbox check` and `hangar sandbox run -- CMD`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use hangar_sandbox::egress::EgressAudit;
use hangar_sandbox::{ExecEvent, ExecRequest, NetworkPolicy, SandboxSpec, check};

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Report what this host supports (bubblewrap, runc, user namespaces, cgroups, seccomp,
    /// landlock), what is missing and how to fix it. Fails when the configured backend cannot run.
    Check,
    /// Run one command in a throwaway sandbox with the configured backend and limits.
    Run {
        /// Host directory to use as /workspace (default: a fresh empty one, removed afterwards).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// Allow egress to this domain through the proxy (repeatable; default: no network).
        #[arg(long = "allow-domain")]
        allow_domains: Vec<String>,
        /// Seconds before the command is killed.
        #[arg(long)]
        timeout: Option<u64>,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

pub async fn run(settings: &Settings, command: SandboxCommand) -> anyhow::Result<()> {
    let audit: EgressAudit = Arc::new(|d| {
        tracing::info!(host = %d.host, port = d.port, allowed = d.allowed, reason = %d.reason, "egress");
    });
    let backend = crate::sandbox::backend(settings, crate::sandbox::host_config(settings, audit));
    match command {
        SandboxCommand::Check => {
            let report = check::report();
            let mut out = std::io::stdout().lock();
            write!(out, "{}", report.render())?;
            match backend.ready() {
                Ok(()) => writeln!(out, "\nconfigured backend {}: ready", backend.name())?,
                Err(e) => {
                    writeln!(out, "\nconfigured backend {}: NOT READY", backend.name())?;
                    anyhow::bail!("{e}");
                }
            }
            Ok(())
        }
        SandboxCommand::Run {
            workspace,
            allow_domains,
            timeout,
            command,
        } => {
            let scratch = tempfile_dir(settings)?;
            let mut spec = SandboxSpec::new(
                "cli",
                workspace.clone().unwrap_or_else(|| scratch.join("workspace")),
            );
            spec.limits = crate::sandbox::limits(settings);
            if !allow_domains.is_empty() {
                spec.network = NetworkPolicy::Egress {
                    domains: allow_domains,
                };
            }
            let sandbox = backend.create(spec).await?;
            let mut request = ExecRequest::new(command);
            request.timeout = timeout.map(std::time::Duration::from_secs);
            let code = stream(&*sandbox, request).await;
            sandbox.destroy().await?;
            let _ = std::fs::remove_dir_all(&scratch);
            let code = code?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}

/// Streams a command's output to ours; returns its exit code (128 + signal when killed).
async fn stream(sandbox: &dyn hangar_sandbox::Sandbox, request: ExecRequest) -> anyhow::Result<i32> {
    let mut handle = sandbox.exec(request).await?;
    while let Some(event) = handle.next().await? {
        match event {
            ExecEvent::Stdout(bytes) => std::io::stdout().lock().write_all(&bytes)?,
            ExecEvent::Stderr(bytes) => std::io::stderr().lock().write_all(&bytes)?,
            ExecEvent::Truncated { bytes, .. } => eprintln!("\n[… {bytes} bytes of output omitted …]"),
        }
    }
    let exit = handle.exit().cloned().unwrap_or_default();
    if let Some(message) = &exit.message {
        eprintln!("hangar: {message}");
    }
    Ok(exit.code.or(exit.signal.map(|s| 128 + s)).unwrap_or(1))
}

fn tempfile_dir(settings: &Settings) -> anyhow::Result<PathBuf> {
    let dir = settings
        .hangar_data_dir
        .join("tmp")
        .join(uuid::Uuid::new_v4().simple().to_string());
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
