//! Host-side state shared by the backends: the sandbox's private directory, the supervisor's
//! listening socket, generated `/etc` files, the cgroup, the egress proxy, and the [`Running`]
//! handle that tears all of it down.
//!
//! Layout of `<state dir>/<sandbox id>/` (mode 0700, never mounted into the sandbox except
//! `egress/`): `sup.sock` (the supervisor's socket, passed in as fd 3), `egress/egress.sock`
//! (the proxy, bound read-only at `/.hangar/egress`), `owner` (pid of the server, for the
//! start-up reaper).

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr};
use tokio::sync::Mutex;

use crate::cgroup::{Cgroup, Cgroups};
use crate::client::{ExecHandle, SupervisorClient};
use crate::egress::{Cidr, EgressAudit, EgressPolicy, EgressProxy, Resolve};
use crate::error::{Result, SandboxError};
use crate::spec::{ExecRequest, NetworkPolicy, SandboxId, SandboxSpec, check_env};
use crate::supervisor::{EGRESS_PORT, SupervisorConfig};
use crate::{Sandbox, metrics_names};

/// Where the supervisor binary and the egress proxy socket appear inside every sandbox.
pub const INSIDE_SUPERVISOR: &str = "/.hangar/hangar";
pub const INSIDE_EGRESS_DIR: &str = "/.hangar/egress";
pub const INSIDE_HOME: &str = "/home/sandbox";
pub const INSIDE_WORKSPACE: &str = "/workspace";
/// uid/gid of commands inside the sandbox.
pub const INSIDE_UID: u32 = 1000;

/// How long a new sandbox may take to answer its first ping.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Egress settings shared by all sandboxes of a backend.
#[derive(Clone)]
pub struct EgressSettings {
    pub resolver: Arc<dyn Resolve>,
    pub audit: EgressAudit,
    /// Private networks an operator allows anyway (an internal package mirror, tests).
    pub allowed_networks: Vec<Cidr>,
    /// Ports allowed besides 80 and 443.
    pub extra_ports: Vec<u16>,
}

/// Configuration common to the backends.
#[derive(Clone)]
pub struct HostConfig {
    /// The `hangar` binary bound into sandboxes as the supervisor.
    pub supervisor: PathBuf,
    /// `<data dir>/sandboxes`.
    pub state_dir: PathBuf,
    /// Extra host directories bound read-only at the same path (a tools venv, for example).
    pub ro_binds: Vec<PathBuf>,
    /// Install the seccomp filter in the supervisor. Always true outside tests of the filter.
    pub seccomp: bool,
    pub egress: Option<EgressSettings>,
    /// Host uid/gid that sandboxed processes run as when the server runs as root. Never root:
    /// a sandbox user mapped to host root would own the host's procfs files (sysctls,
    /// `sysrq-trigger`) and could leave set-uid-root files in its workspace.
    pub host_uid: u32,
}

/// Default [`HostConfig::host_uid`]: an id no distribution hands out to people or daemons.
pub const DEFAULT_HOST_UID: u32 = 200_000;

impl HostConfig {
    pub fn new(supervisor: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            supervisor: supervisor.into(),
            state_dir: state_dir.into(),
            ro_binds: Vec::new(),
            seccomp: true,
            egress: None,
            host_uid: DEFAULT_HOST_UID,
        }
    }

    /// The uid to switch to before starting a sandbox: `host_uid` when we are root, else none
    /// (we already are unprivileged).
    pub fn drop_to(&self) -> Option<u32> {
        nix::unistd::geteuid().is_root().then_some(self.host_uid)
    }

    /// Names this server's cgroups: a short hash of the state directory.
    pub fn instance(&self) -> String {
        let digest = self
            .state_dir
            .to_string_lossy()
            .bytes()
            .fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
            });
        format!("{digest:016x}")
    }
}

/// A sandbox's host-side pieces before its processes start.
pub struct Prepared {
    pub id: SandboxId,
    pub dir: PathBuf,
    pub listener: std::os::unix::net::UnixListener,
    pub cgroup: Option<Cgroup>,
    pub egress: Option<EgressProxy>,
    pub config: SupervisorConfig,
    pub started: Instant,
}

impl Prepared {
    pub fn new(host: &HostConfig, cgroups: &Cgroups, spec: &SandboxSpec) -> Result<Self> {
        check_env(&spec.env)?;
        let started = Instant::now();
        let id = SandboxId::generate();
        let dir = host.state_dir.join(id.as_str());
        // Once `Self` exists its `Drop` cleans up; until then an error removes the directory here.
        Self::build(host, cgroups, spec, id, dir.clone(), started).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })
    }

    fn build(
        host: &HostConfig,
        cgroups: &Cgroups,
        spec: &SandboxSpec,
        id: SandboxId,
        dir: PathBuf,
        started: Instant,
    ) -> Result<Self> {
        create_private_dir(&dir)?;
        std::fs::write(dir.join("owner"), std::process::id().to_string())?;
        std::fs::create_dir_all(&spec.workspace)?;
        if let Some(uid) = host.drop_to() {
            std::os::unix::fs::chown(&spec.workspace, Some(uid), Some(uid))?;
        }
        let listener = std::os::unix::net::UnixListener::bind(dir.join("sup.sock"))?;
        std::fs::set_permissions(dir.join("sup.sock"), std::fs::Permissions::from_mode(0o600))?;
        let egress = match &spec.network {
            NetworkPolicy::None => None,
            NetworkPolicy::Egress { domains } => Some(start_egress(host, &dir, &spec.owner, domains)?),
        };
        // The cgroup is the last thing that can fail, so an error never strands one.
        let cgroup = if cgroups.available() {
            let cgroup = cgroups.create(&id, &spec.limits);
            Some(cgroup.map_err(|e| SandboxError::Start(format!("cgroup: {e}")))?)
        } else {
            None
        };
        let config = supervisor_config(host, spec, cgroup.is_none(), egress.is_some());
        Ok(Self {
            id,
            dir,
            listener,
            cgroup,
            egress,
            config,
            started,
        })
    }

    pub fn config_json(&self) -> Result<String> {
        serde_json::to_string(&self.config).map_err(|e| SandboxError::Start(e.to_string()))
    }

    /// Makes the spawned process inherit the supervisor socket as fd 3 and join the cgroup
    /// before it executes anything.
    pub fn inherit(&self, command: &mut tokio::process::Command) -> Result<()> {
        let listen = self.listener.try_clone()?;
        let fds: Vec<(OwnedFd, RawFd)> = vec![(OwnedFd::from(listen), crate::supervisor::LISTEN_FD)];
        let procs = match &self.cgroup {
            Some(cgroup) => cgroup.procs_files()?,
            None => Vec::new(),
        };
        pre_exec(command, fds, procs);
        Ok(())
    }

    /// Waits for the supervisor's first answer, or reports why the process died instead.
    pub async fn into_running(mut self, mut child: Child, teardown: Teardown) -> Result<Running> {
        // From here on `Running` owns the directory and the cgroup; `self`'s `Drop` finds nothing.
        let dir = std::mem::take(&mut self.dir);
        let client = SupervisorClient::new(dir.join("sup.sock"));
        let mut stderr = child.stderr.take();
        let ready = tokio::select! {
            ready = client.wait_ready(READY_TIMEOUT) => ready.map(|_| ()),
            status = child.wait() => Err(SandboxError::Start(format!(
                "the sandbox exited at start ({}): {}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                read_all(stderr.take()).await,
            ))),
        };
        if let Some(stderr) = stderr {
            log_stderr(self.id.clone(), stderr);
        }
        let running = Running {
            id: self.id.clone(),
            dir,
            client,
            child: Mutex::new(Some(child)),
            cgroup: self.cgroup.take(),
            egress: Mutex::new(self.egress.take()),
            teardown,
            destroyed: AtomicBool::new(false),
        };
        if let Err(e) = ready {
            let _ = running.destroy().await;
            return Err(e);
        }
        metrics::histogram!(metrics_names::START_SECONDS).record(self.started.elapsed().as_secs_f64());
        metrics::counter!(metrics_names::STARTED).increment(1);
        metrics::gauge!(metrics_names::ACTIVE).increment(1.0);
        Ok(running)
    }
}

/// A sandbox that never started (an error between preparing and running it) leaves nothing behind:
/// its cgroup (still empty of processes) and its directory go.
impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The sandbox's directory: traversable (bubblewrap, running as the sandbox uid, binds the
/// egress directory from inside it) but not listable, under an unguessable name; the supervisor
/// socket in it only accepts the server (mode 0600).
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    Ok(())
}

/// Whether a uid other than the owner can walk to `path` (every ancestor has `o+x`).
pub fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0))
}

fn start_egress(host: &HostConfig, dir: &Path, owner: &str, domains: &[String]) -> Result<EgressProxy> {
    let settings = host.egress.as_ref().ok_or_else(|| SandboxError::Unavailable {
        reason: "egress was requested but this server has no egress proxy configured".to_owned(),
        fix: "enable the sandbox egress proxy in the configuration".to_owned(),
    })?;
    let egress_dir = dir.join("egress");
    std::fs::create_dir_all(&egress_dir)?;
    std::fs::set_permissions(&egress_dir, std::fs::Permissions::from_mode(0o755))?;
    let socket = egress_dir.join("egress.sock");
    let std_listener = std::os::unix::net::UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(std_listener)?;
    let mut policy =
        EgressPolicy::new(domains.to_vec()).with_allowed_networks(settings.allowed_networks.clone());
    policy.ports.extend(&settings.extra_ports);
    let owner = owner.to_owned();
    let audit = settings.audit.clone();
    let tagged: EgressAudit = Arc::new(move |decision| {
        tracing::info!(sandbox_owner = %owner, host = %decision.host, port = decision.port,
            allowed = decision.allowed, reason = %decision.reason, "sandbox egress");
        audit(decision);
    });
    Ok(EgressProxy::spawn(
        listener,
        policy,
        settings.resolver.clone(),
        tagged,
    ))
}

/// The environment every command starts from; nothing of the server's own environment.
pub fn supervisor_config(
    host: &HostConfig,
    spec: &SandboxSpec,
    no_cgroup: bool,
    egress: bool,
) -> SupervisorConfig {
    let mut env: BTreeMap<String, String> = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", INSIDE_HOME),
        ("USER", "sandbox"),
        ("LOGNAME", "sandbox"),
        ("SHELL", "/bin/bash"),
        ("LANG", "C.UTF-8"),
        ("TERM", "dumb"),
        ("TMPDIR", "/tmp"),
        ("PYTHONUNBUFFERED", "1"),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
        ("PIP_NO_INPUT", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if egress {
        let proxy = format!("http://127.0.0.1:{EGRESS_PORT}");
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.insert(name.to_owned(), proxy.clone());
        }
        env.insert("NO_PROXY".to_owned(), "localhost,127.0.0.1".to_owned());
    }
    env.extend(spec.env.clone());
    let limits = &spec.limits;
    SupervisorConfig {
        env,
        workdir: INSIDE_WORKSPACE.to_owned(),
        default_timeout_ms: millis(limits.command_timeout),
        max_timeout_ms: millis(limits.max_command_timeout),
        output_bytes: limits.output_bytes,
        file_size_bytes: limits.workspace_bytes,
        open_files: limits.open_files,
        nproc: no_cgroup.then_some(limits.pids),
        workspace_quota: Some(limits.workspace_bytes),
        egress_socket: egress.then(|| format!("{INSIDE_EGRESS_DIR}/egress.sock")),
        seccomp: host.seccomp,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[expect(unsafe_code, reason = "fd and cgroup set-up between fork and exec")]
fn pre_exec(command: &mut tokio::process::Command, fds: Vec<(OwnedFd, RawFd)>, procs: Vec<std::fs::File>) {
    // Targets are small numbers; sources are first moved above all of them so that placing one
    // descriptor can never overwrite another that is still to be placed.
    let above = fds.iter().map(|(_, target)| *target).max().unwrap_or(0) + 1;
    let mut moved: Vec<RawFd> = vec![-1; fds.len()];
    // SAFETY: between fork and exec the closure only makes async-signal-safe syscalls (write,
    // fcntl, dup2) on descriptors open in the parent and therefore in the child, and allocates
    // nothing (`moved` is allocated here). It owns the descriptors and cgroup files, so they stay
    // open until the spawn is done.
    unsafe {
        command.pre_exec(move || {
            for file in &procs {
                if libc::write(file.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (slot, (fd, _)) in moved.iter_mut().zip(&fds) {
                *slot = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, above);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (&from, (_, target)) in moved.iter().zip(&fds) {
                if libc::dup2(from, *target) != *target {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Logs what the sandbox's own process (bwrap, runc, the supervisor) prints after start-up.
fn log_stderr(id: SandboxId, stderr: ChildStderr) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(sandbox = %id, "{line}");
        }
    });
}

async fn read_all(stderr: Option<ChildStderr>) -> String {
    let Some(stderr) = stderr else {
        return String::new();
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut out = Vec::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await {
        out.push(line);
        if out.len() >= 20 {
            break;
        }
    }
    out.join("\n")
}

/// Removes sandboxes a previous server process on this state directory left behind (it crashed
/// or was killed): their processes, cgroups and directories. Sandboxes whose owner is alive —
/// another server sharing the directory by mistake, or this one — are left alone.
pub async fn reap_leftovers(host: &HostConfig, cgroups: &Cgroups) -> Result<usize> {
    let mut removed = 0;
    for (id, cgroup) in cgroups.leftovers() {
        let dir = host.state_dir.join(id.as_str());
        if dir.exists() && owner_alive(&dir) {
            continue;
        }
        cgroup.kill_all().await;
        cgroup.remove();
    }
    let Ok(entries) = std::fs::read_dir(&host.state_dir) else {
        return Ok(0);
    };
    for entry in entries.flatten() {
        let Ok(id) = SandboxId::try_from(entry.file_name().to_string_lossy().into_owned()) else {
            continue;
        };
        let dir = entry.path();
        if owner_alive(&dir) {
            continue;
        }
        tracing::warn!(sandbox = %id, "removing a sandbox left behind by a previous server process");
        let _ = std::fs::remove_dir_all(&dir);
        removed += 1;
    }
    Ok(removed)
}

/// Whether the server process that created the sandbox directory `dir` (its `owner` file) is
/// still running; this process counts as alive.
pub(crate) fn owner_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("owner")) else {
        return false;
    };
    match text.trim().parse::<u32>() {
        Ok(pid) if pid == std::process::id() => true,
        Ok(pid) => Path::new("/proc").join(pid.to_string()).exists(),
        Err(_) => false,
    }
}

/// What else has to go when a sandbox is destroyed.
#[derive(Clone)]
pub enum Teardown {
    /// Killing the process is enough (bubblewrap: PID 1 dies, the namespace with it).
    Process,
    /// `runc delete --force <id>` with this runc binary and state root.
    Runc { runc: PathBuf, root: PathBuf },
}

/// A running sandbox of either backend.
pub struct Running {
    id: SandboxId,
    dir: PathBuf,
    client: SupervisorClient,
    child: Mutex<Option<Child>>,
    cgroup: Option<Cgroup>,
    egress: Mutex<Option<EgressProxy>>,
    teardown: Teardown,
    destroyed: AtomicBool,
}

impl Running {
    pub fn client(&self) -> &SupervisorClient {
        &self.client
    }

    /// Times the memory limit killed a process in this sandbox.
    pub fn oom_kills(&self) -> u64 {
        self.cgroup.as_ref().map_or(0, Cgroup::oom_kills)
    }
}

#[async_trait]
impl Sandbox for Running {
    fn id(&self) -> &SandboxId {
        &self.id
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecHandle> {
        self.client.exec(request).await
    }

    async fn shell(&self, session: &str, command: &str, timeout: Option<Duration>) -> Result<ExecHandle> {
        self.client.shell(session, command, timeout).await
    }

    async fn alive(&self) -> bool {
        !self.destroyed.load(Ordering::SeqCst)
            && tokio::time::timeout(Duration::from_secs(2), self.client.ping())
                .await
                .is_ok_and(|r| r.is_ok())
    }

    async fn destroy(&self) -> Result<()> {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let child = self.child.lock().await.take();
        tear_down(&self.id, child, &self.teardown, self.cgroup.as_ref(), &self.dir).await;
        if let Some(egress) = self.egress.lock().await.take() {
            egress.shutdown().await;
        }
        metrics::gauge!(metrics_names::ACTIVE).decrement(1.0);
        Ok(())
    }
}

/// A sandbox dropped without [`Sandbox::destroy`] is torn down in the background (dropping the
/// child already kills bwrap or runc; this also removes runc's container, the cgroup and the
/// directory). Without a runtime, on a small one of its own.
impl Drop for Running {
    fn drop(&mut self) {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return;
        }
        metrics::gauge!(metrics_names::ACTIVE).decrement(1.0);
        let id = self.id.clone();
        let child = self.child.get_mut().take();
        let teardown = self.teardown.clone();
        let cgroup = self.cgroup.take();
        let dir = std::mem::take(&mut self.dir);
        let cleanup = async move { tear_down(&id, child, &teardown, cgroup.as_ref(), &dir).await };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(cleanup);
            }
            Err(_) => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime.block_on(cleanup),
                Err(e) => tracing::warn!(error = %e, "cannot clean up a dropped sandbox"),
            },
        }
    }
}

/// Stops a sandbox's processes and removes its host-side state.
///
/// runc: the container goes first (`runc kill`, `runc delete --force`) while `runc run` still
/// parents the supervisor, so the dead supervisor is reaped there; then `runc run` exits and is
/// waited for. Killing `runc run` first would leave the supervisor to the host's PID 1 as a
/// zombie until the kernel got around to it.
async fn tear_down(
    id: &SandboxId,
    child: Option<Child>,
    teardown: &Teardown,
    cgroup: Option<&Cgroup>,
    dir: &Path,
) {
    if let Teardown::Runc { runc, root } = teardown {
        crate::oci::delete(runc, root, id).await;
    }
    if let Some(mut child) = child {
        let grace = match teardown {
            Teardown::Runc { .. } => Duration::from_secs(5),
            Teardown::Process => Duration::ZERO,
        };
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
    if let Some(cgroup) = cgroup {
        cgroup.kill_all().await;
        cgroup.remove();
    }
    if !dir.as_os_str().is_empty() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Raises this process's soft limit on open files to its hard limit and returns the new soft
/// limit. The server holds two descriptors per running sandbox (its stderr pipe and a pidfd) on
/// top of its connections, so the usual soft limit of 1024 would run out at a few hundred
/// sandboxes.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(std::io::Error::from)?;
    }
    Ok(soft.max(hard))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(256), hard).unwrap();
        assert_eq!(raise_open_files_limit().unwrap(), hard);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }

    use super::*;

    /// A `Running` of the runc backend whose "runc" is a script logging each call and whether
    /// the stand-in for `runc run` (a `sleep`) is still alive; `delete` then ends the stand-in,
    /// as a real container's end ends `runc run`.
    async fn fake_runc(dir: &Path) -> (Running, PathBuf) {
        let child = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let log = dir.join("log");
        let runc = dir.join("runc");
        let script = format!(
            "#!/bin/sh\nif kill -0 {pid} 2>/dev/null; then a=alive; else a=dead; fi\n\
             echo \"$3 $a\" >> {log}\n[ \"$3\" = delete ] && kill {pid}\nexit 0\n",
            log = log.display()
        );
        // Written by a child process, so no fd of this (multi-threaded) process keeps the script
        // open for writing while it is executed (ETXTBSY).
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("printf '%s' \"$1\" > \"$2\" && chmod 755 \"$2\"")
            .args(["sh", &script, &runc.to_string_lossy()])
            .status()
            .unwrap();
        assert!(status.success());
        let sandbox_dir = dir.join("sandbox");
        std::fs::create_dir(&sandbox_dir).unwrap();
        let running = Running {
            id: SandboxId::generate(),
            dir: sandbox_dir,
            client: SupervisorClient::new(dir.join("sup.sock")),
            child: Mutex::new(Some(child)),
            cgroup: None,
            egress: Mutex::new(None),
            teardown: Teardown::Runc {
                runc,
                root: dir.to_path_buf(),
            },
            destroyed: AtomicBool::new(false),
        };
        (running, log)
    }

    #[tokio::test]
    async fn runc_destroy_removes_the_container_before_runc_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (running, log) = fake_runc(dir.path()).await;
        running.destroy().await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "kill alive\ndelete alive\n"
        );
        assert!(running.child.lock().await.is_none());
        assert!(!dir.path().join("sandbox").exists());
    }

    #[tokio::test]
    async fn a_dropped_runc_sandbox_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (running, log) = fake_runc(dir.path()).await;
        drop(running);
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir.path().join("sandbox").exists() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!dir.path().join("sandbox").exists());
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            log.ends_with("delete alive\n") || log.ends_with("delete dead\n"),
            "{log}"
        );
        assert!(log.starts_with("kill "), "{log}");
    }
}
