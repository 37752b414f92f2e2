//! What a sandbox is asked to be: its workspace, limits, network policy and environment.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SandboxError};

/// A sandbox's identity: `sb-` and 24 hex digits. Also names its host directory and cgroup, so
/// it is validated wherever it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxId(String);

impl SandboxId {
    pub fn generate() -> Self {
        let bytes: [u8; 12] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("sb-{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SandboxId {
    type Error = SandboxError;
    fn try_from(value: String) -> Result<Self> {
        let ok = value.len() == 27
            && value.starts_with("sb-")
            && value[3..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(value))
        } else {
            Err(SandboxError::Invalid(format!("bad sandbox id {value:?}")))
        }
    }
}

impl From<SandboxId> for String {
    fn from(id: SandboxId) -> Self {
        id.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resource limits of one sandbox. Memory, processes and CPU are enforced by cgroups (v1 or v2)
/// when the host lets us create them; the rest by rlimits, tmpfs sizes and the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory of all processes together, tmpfs pages included; swap is not allowed.
    pub memory_bytes: u64,
    /// Processes and threads of the sandbox together.
    pub pids: u64,
    /// CPU time per wall second, in thousandths of a CPU (2000 = two CPUs).
    pub cpu_millis: u64,
    /// Size of the private `/tmp`.
    pub tmp_bytes: u64,
    /// Size of the private home directory.
    pub home_bytes: u64,
    /// Bytes the workspace may hold; also the largest single file (`RLIMIT_FSIZE`).
    pub workspace_bytes: u64,
    /// Open files per process (`RLIMIT_NOFILE`).
    pub open_files: u64,
    /// Default and largest wall time of one command.
    pub command_timeout: Duration,
    pub max_command_timeout: Duration,
    /// Output kept per command and stream: the first half and the last half of this many bytes.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            memory_bytes: 2048 * MIB,
            pids: 256,
            cpu_millis: 2000,
            tmp_bytes: 512 * MIB,
            home_bytes: 256 * MIB,
            workspace_bytes: 1024 * MIB,
            open_files: 1024,
            command_timeout: Duration::from_secs(120),
            max_command_timeout: Duration::from_secs(600),
            output_bytes: 64 * 1024,
        }
    }
}

/// Network access of a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum NetworkPolicy {
    /// No network at all: the sandbox has only its own loopback.
    #[default]
    None,
    /// HTTP(S) through the host's egress proxy to these domains only (`example.com` or
    /// `*.example.com`).
    Egress { domains: Vec<String> },
}

/// Everything needed to create a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// Who it is for (`tenant/conversation`), for logs, metrics labels and the audit log.
    pub owner: String,
    /// Host directory bound read-write at `/workspace`. Created if missing.
    pub workspace: PathBuf,
    pub limits: Limits,
    pub network: NetworkPolicy,
    /// Extra environment for commands. Names are checked: no `LD_*`, no proxy or credential
    /// variables (see [`check_env`]).
    pub env: BTreeMap<String, String>,
}

impl SandboxSpec {
    pub fn new(owner: impl Into<String>, workspace: impl Into<PathBuf>) -> Self {
        Self {
            owner: owner.into(),
            workspace: workspace.into(),
            limits: Limits::default(),
            network: NetworkPolicy::None,
            env: BTreeMap::new(),
        }
    }
}

/// One command to run without a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Working directory inside the sandbox; `/workspace` when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Added to the sandbox's environment for this command only.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bytes written to the command's standard input, which is then closed.
    #[serde(default)]
    pub stdin: Option<Vec<u8>>,
    /// Wall-time limit; the sandbox's default when absent, capped at its maximum.
    #[serde(default, with = "opt_millis")]
    pub timeout: Option<Duration>,
}

impl ExecRequest {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            timeout: None,
        }
    }
}

/// Environment names a caller may never set inside a sandbox: dynamic-loader controls, the proxy
/// variables the supervisor owns, and anything that looks like a credential.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<()> {
    for name in env.keys() {
        let upper = name.to_ascii_uppercase();
        let bad_shape = name.is_empty()
            || name.contains('=')
            || name.contains('\0')
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let reserved = upper.starts_with("LD_")
            || upper.ends_with("_PROXY")
            || upper.starts_with("HANGAR_")
            || upper.starts_with("AWS_")
            || ["_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD"]
                .iter()
                .any(|s| upper.ends_with(s));
        if bad_shape || reserved {
            return Err(SandboxError::Invalid(format!(
                "environment variable {name:?} is not allowed"
            )));
        }
    }
    Ok(())
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_junk() {
        let id = SandboxId::generate();
        assert_eq!(SandboxId::try_from(id.to_string()).unwrap(), id);
        for bad in [
            "",
            "sb-",
            "sb-../../etc/passwd",
            "xx-0123456789abcdef01234567",
            "sb-0123456789ABCDEF01234567",
        ] {
            assert!(SandboxId::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_environment_names_are_refused() {
        for name in [
            "LD_PRELOAD",
            "HTTPS_PROXY",
            "http_proxy",
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "AWS_REGION",
            "A=B",
            "",
        ] {
            let env = BTreeMap::from([(name.to_owned(), "x".to_owned())]);
            assert!(check_env(&env).is_err(), "{name}");
        }
        let env = BTreeMap::from([("PYTHONUNBUFFERED".to_owned(), "1".to_owned())]);
        assert!(check_env(&env).is_ok());
    }
}
