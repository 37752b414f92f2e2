//! Real sandboxes, both backends: what commands can do, and an escape suite of what they must
//! not. Every test runs once with bubblewrap and once with runc, each sandbox in a tempdir of its
//! own, with the real `hangar` binary as supervisor. Nothing leaves loopback or the network
//! namespaces a test creates itself.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_sandbox::egress::{Cidr, EgressAudit, EgressDecision, StaticResolver};
use hangar_sandbox::host::{EgressSettings, HostConfig};
use hangar_sandbox::{Backend, ExecOutcome, ExecRequest, Limits, NetworkPolicy, Sandbox, SandboxSpec};

/// Runs the body once per backend with a fresh [`Rig`].
macro_rules! sandboxed {
    ($name:ident, |$rig:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use pretty_assertions::assert_eq;

            async fn run($rig: $crate::suite::sandbox::Rig) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bwrap() {
                run($crate::suite::sandbox::Rig::new($crate::suite::sandbox::Kind::Bwrap, &[])).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn oci() {
                run($crate::suite::sandbox::Rig::new($crate::suite::sandbox::Kind::Oci, &[])).await;
            }
        }
    };
}

mod basics;
mod escape;
mod lifecycle;
mod network;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bwrap,
    Oci,
}

/// A backend over a private state directory, with an egress proxy that resolves names from a
/// static table (so no lookup ever leaves the machine) and records its decisions.
pub struct Rig {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub backend: Arc<dyn Backend>,
    pub decisions: Arc<Mutex<Vec<EgressDecision>>>,
}

/// Names the test resolver knows. Only `allowed.test` is on allow-lists, and only 127.0.0.1 is
/// an allowed network; the others exist to be refused before any connection is attempted.
fn resolver() -> StaticResolver {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    StaticResolver::new([
        ("allowed.test", vec![ip("127.0.0.1")]),
        ("private.test", vec![ip("10.0.0.1")]),
        ("metadata.test", vec![ip("169.254.169.254")]),
        ("ula.test", vec![ip("fd00:ec2::254")]),
        ("unlisted.test", vec![ip("127.0.0.1")]),
    ])
}

impl Rig {
    pub fn new(kind: Kind, extra_ports: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let decisions = Arc::new(Mutex::new(Vec::new()));
        let sink = decisions.clone();
        let audit: EgressAudit = Arc::new(move |d| sink.lock().unwrap().push(d.clone()));
        let mut host = HostConfig::new(env!("CARGO_BIN_EXE_hangar"), dir.path().join("state"));
        host.egress = Some(EgressSettings {
            resolver: Arc::new(resolver()),
            audit,
            allowed_networks: vec!["127.0.0.1/32".parse::<Cidr>().unwrap()],
            extra_ports: extra_ports.to_vec(),
        });
        let backend: Arc<dyn Backend> = match kind {
            Kind::Bwrap => Arc::new(hangar_sandbox::bwrap::Bwrap::new(host).unwrap()),
            Kind::Oci => Arc::new(hangar_sandbox::oci::Oci::new(host).unwrap()),
        };
        backend.ready().unwrap();
        Self {
            kind,
            dir,
            backend,
            decisions,
        }
    }

    /// The uid commands run as: bwrap maps its sandbox user (1000) to the dedicated host uid;
    /// runc (no user namespace) runs them as that host uid itself.
    pub fn command_uid(&self) -> u32 {
        match self.kind {
            Kind::Bwrap => 1000,
            Kind::Oci => hangar_sandbox::host::DEFAULT_HOST_UID,
        }
    }

    pub fn workspace(&self, name: &str) -> PathBuf {
        self.dir.path().join("workspaces").join(name)
    }

    /// Small limits so the attacks hit them quickly.
    pub fn spec(&self, name: &str) -> SandboxSpec {
        let mut spec = SandboxSpec::new(format!("test/{name}"), self.workspace(name));
        spec.limits = Limits {
            memory_bytes: 256 * 1024 * 1024,
            pids: 64,
            cpu_millis: 1000,
            tmp_bytes: 16 * 1024 * 1024,
            home_bytes: 16 * 1024 * 1024,
            workspace_bytes: 32 * 1024 * 1024,
            command_timeout: Duration::from_secs(20),
            max_command_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        spec
    }

    pub async fn sandbox(&self, name: &str) -> Box<dyn Sandbox> {
        self.backend.create(self.spec(name)).await.unwrap()
    }

    pub async fn sandbox_with_egress(&self, name: &str, domains: &[&str]) -> Box<dyn Sandbox> {
        let mut spec = self.spec(name);
        spec.network = NetworkPolicy::Egress {
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        };
        self.backend.create(spec).await.unwrap()
    }
}

/// Runs a bash script (no persistent session) and collects everything.
pub async fn sh(sandbox: &dyn Sandbox, script: &str) -> ExecOutcome {
    sh_timeout(sandbox, script, None).await
}

pub async fn sh_timeout(sandbox: &dyn Sandbox, script: &str, timeout: Option<Duration>) -> ExecOutcome {
    let mut request = ExecRequest::new(["/bin/bash", "-c", script]);
    request.timeout = timeout;
    sandbox.exec(request).await.unwrap().collect().await.unwrap()
}

/// Prints how many `sleep` processes the sandbox has (no procps needed).
pub const COUNT_SLEEPS: &str =
    "for p in /proc/[0-9]*; do cat $p/comm 2>/dev/null; done | grep -c '^sleep$' || true";

/// The sandbox still works after an attack.
pub async fn assert_healthy(sandbox: &dyn Sandbox) {
    assert!(sandbox.alive().await, "the supervisor stopped answering");
    let out = sh(sandbox, "echo still-here").await;
    assert_eq!(out.stdout_text(), "still-here\n", "{out:?}");
}
