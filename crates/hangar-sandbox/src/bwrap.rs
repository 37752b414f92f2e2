//! The default backend: bubblewrap. Every sandbox gets new user, PID, mount, IPC, UTS, cgroup and
//! network namespaces (only its own loopback), no capabilities, read-only system directories, a
//! clean `/etc` built from an allow-list plus generated `passwd`/`group`/`hosts`, private size-
//! capped tmpfs `/tmp` and home, and the workspace read-write at `/workspace`. The supervisor runs
//! as PID 1 (`--as-pid-1`), so when it dies the kernel kills everything else in the sandbox;
//! `--die-with-parent` ties it to the server.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use async_trait::async_trait;

use crate::cgroup::Cgroups;
use crate::check::find_program;
use crate::error::{Result, SandboxError};
use crate::host::{
    HostConfig, INSIDE_SUPERVISOR, INSIDE_UID, INSIDE_WORKSPACE, Prepared, Teardown, reachable_by_others,
};
use crate::layout::{self, Mount};
use crate::spec::SandboxSpec;
use crate::{Backend, Sandbox, supervisor};

pub struct Bwrap {
    bwrap: Option<PathBuf>,
    host: HostConfig,
    cgroups: Cgroups,
}

impl Bwrap {
    pub fn new(mut host: HostConfig) -> Result<Self> {
        std::fs::create_dir_all(&host.state_dir)?;
        layout::build_etc(&host)?;
        if host.drop_to().is_some() && host.supervisor.is_file() && !reachable_by_others(&host.supervisor) {
            host.supervisor = publish_supervisor(&host)?;
        }
        Ok(Self {
            bwrap: find_program("bwrap"),
            cgroups: Cgroups::detect(&host.instance()),
            host,
        })
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// bwrap's arguments. It runs as the unprivileged host uid, so every bind source must be
    /// reachable by that uid ([`Bwrap::ready`] checks the state directory).
    fn args(&self, spec: &SandboxSpec, prepared: &Prepared) -> Result<Vec<String>> {
        let mut args: Vec<String> = [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--hostname",
            "sandbox",
        ]
        .map(str::to_owned)
        .to_vec();
        let uid = INSIDE_UID.to_string();
        push(&mut args, &["--uid", &uid, "--gid", &uid]);
        for mount in layout::mounts(&self.host, spec, prepared) {
            match mount {
                Mount::ReadOnly { source, target } => {
                    push(&mut args, &["--ro-bind", &source.to_string_lossy(), &target])
                }
                Mount::ReadWrite { source, target } => {
                    push(&mut args, &["--bind", &source.to_string_lossy(), &target])
                }
                Mount::Symlink { target, link } => push(&mut args, &["--symlink", &target, &link]),
                // bwrap 0.8 cannot chown a tmpfs; the sandbox user is the only user inside.
                Mount::Tmpfs { target, size } => push(
                    &mut args,
                    &["--size", &size.to_string(), "--perms", "1777", "--tmpfs", &target],
                ),
                Mount::Proc => push(&mut args, &["--proc", "/proc"]),
                Mount::Dev => push(&mut args, &["--dev", "/dev"]),
            }
        }
        // The root bwrap builds is a tmpfs; once everything is mounted it becomes read-only, so
        // `rm -rf /` cannot break the sandbox's own /bin symlinks or /etc.
        push(&mut args, &["--remount-ro", "/"]);
        push(
            &mut args,
            &[
                "--chdir",
                INSIDE_WORKSPACE,
                "--",
                INSIDE_SUPERVISOR,
                supervisor::ARG,
            ],
        );
        args.push(prepared.config_json()?);
        Ok(args)
    }
}

/// Shutdown: the instance's own cgroup directory goes (each sandbox removes its own on destroy).
impl Drop for Bwrap {
    fn drop(&mut self) {
        self.cgroups.remove_instance();
    }
}

/// Makes the supervisor binary reachable by the sandbox uid when it lives somewhere that uid
/// cannot walk to (a build directory under /root): a hard link in `<state dir>/bin`, or a copy
/// when the link crosses filesystems.
fn publish_supervisor(host: &HostConfig) -> Result<PathBuf> {
    let bin = host.state_dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    let target = bin.join("hangar");
    let _ = std::fs::remove_file(&target);
    if std::fs::hard_link(&host.supervisor, &target).is_err() {
        std::fs::copy(&host.supervisor, &target)?;
    }
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    Ok(target)
}

fn push(args: &mut Vec<String>, more: &[&str]) {
    args.extend(more.iter().map(|s| (*s).to_owned()));
}

#[async_trait]
impl Backend for Bwrap {
    fn name(&self) -> &'static str {
        "bwrap"
    }

    fn ready(&self) -> Result<()> {
        if self.bwrap.is_none() {
            return Err(SandboxError::Unavailable {
                reason: "bubblewrap (bwrap) is not installed".to_owned(),
                fix: "apt-get install -y bubblewrap".to_owned(),
            });
        }
        if !self.host.supervisor.is_file() {
            return Err(SandboxError::Unavailable {
                reason: format!(
                    "the supervisor binary {} does not exist",
                    self.host.supervisor.display()
                ),
                fix: "point the sandbox supervisor at the hangar binary".to_owned(),
            });
        }
        if let Some(uid) = self.host.drop_to()
            && !reachable_by_others(&self.host.state_dir)
        {
            return Err(SandboxError::Unavailable {
                reason: format!(
                    "sandboxes run as uid {uid}, which cannot reach {}",
                    self.host.state_dir.display()
                ),
                fix:
                    "give every parent directory of HANGAR_DATA_DIR o+x, or put HANGAR_DATA_DIR outside /root"
                        .to_owned(),
            });
        }
        Ok(())
    }

    async fn create(&self, spec: SandboxSpec) -> Result<Box<dyn Sandbox>> {
        self.ready()?;
        let Some(bwrap) = &self.bwrap else {
            return Err(SandboxError::Start("bwrap vanished".to_owned()));
        };
        let prepared = Prepared::new(&self.host, &self.cgroups, &spec)?;
        let args = self.args(&spec, &prepared)?;
        let mut command = tokio::process::Command::new(bwrap);
        command
            .args(&args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.kill_on_drop(true);
        if let Some(uid) = self.host.drop_to() {
            command.uid(uid).gid(uid);
        }
        prepared.inherit(&mut command)?;
        let child = command
            .spawn()
            .map_err(|e| SandboxError::Start(format!("bwrap: {e}")))?;
        Ok(Box::new(prepared.into_running(child, Teardown::Process).await?))
    }

    async fn reap_leftovers(&self) -> Result<usize> {
        crate::host::reap_leftovers(&self.host, &self.cgroups).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::{Limits, SandboxId};

    fn backend(dir: &Path) -> Bwrap {
        // The sandbox uid must reach the state directory (tempdirs are 0700).
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Bwrap::new(HostConfig::new("/bin/true", dir.join("state"))).unwrap()
    }

    fn sandbox_dirs(state: &Path) -> Vec<String> {
        std::fs::read_dir(state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| SandboxId::try_from(name.clone()).is_ok())
            .collect()
    }

    #[test]
    fn shutdown_removes_the_instance_cgroups() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bwrap = backend(dir.path());
        let instance = bwrap.cgroups().instance_dirs();
        assert!(!instance.is_empty(), "{:?}", bwrap.cgroups());
        assert!(instance.iter().all(|d| d.is_dir()));
        let cgroup = bwrap
            .cgroups()
            .create(&SandboxId::generate(), &Limits::default())
            .unwrap();
        cgroup.remove();
        drop(bwrap);
        for dir in &instance {
            assert!(!dir.exists(), "{} is left", dir.display());
        }
    }

    #[tokio::test]
    async fn a_failed_create_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut bwrap = backend(dir.path());
        let state = dir.path().join("state");
        // Fails after the sandbox directory and cgroup are made: bwrap cannot be spawned.
        bwrap.bwrap = Some(PathBuf::from("/nonexistent/bwrap"));
        let spec = SandboxSpec::new("t/c", dir.path().join("ws"));
        assert!(matches!(bwrap.create(spec).await, Err(SandboxError::Start(_))));
        assert_eq!(sandbox_dirs(&state), Vec::<String>::new());
        assert!(bwrap.cgroups().leftovers().is_empty());
        // Fails while preparing, after the sandbox directory is made: the workspace lies below a file.
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let spec = SandboxSpec::new("t/c", dir.path().join("file/ws"));
        assert!(bwrap.create(spec).await.is_err());
        assert_eq!(sandbox_dirs(&state), Vec::<String>::new());
        assert!(bwrap.cgroups().leftovers().is_empty());
    }
}
