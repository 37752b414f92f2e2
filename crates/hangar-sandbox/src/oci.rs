//! The OCI backend: every sandbox is a runc container started from a bundle generated for it.
//!
//! The sandbox looks the same as with [`bwrap`](crate::bwrap) — the [`layout`] mounts, the
//! supervisor as PID 1 serving its socket on fd 3, the workspace at `/workspace` — but the
//! isolation is built differently:
//!
//! - **No user namespace.** The supervisor and every command run as the dedicated host uid/gid
//!   [`HostConfig::host_uid`] (200000 by default), the same unprivileged id bwrap maps its
//!   sandbox user to, with all five capability sets empty and `no_new_privs`. Never a uid a
//!   person or daemon of the host has (the common first user, 1000, would be one). The
//!   workspace directory itself is therefore chowned to it before start; files the server or
//!   another backend created in it keep their owner.
//! - **Cgroups by runc.** runc creates `/hangar/<instance>-oci/<sandbox id>` from the bundle's
//!   `linux.resources` (memory without extra swap, pids, CPU quota), so the host prepares none
//!   and the supervisor sets no `RLIMIT_NPROC`: the pids cgroup limits processes.
//! - **Namespaces:** PID, network (runc brings its `lo` up), IPC, UTS, mount and cgroup.
//! - **Root filesystem:** an empty directory, read-only once the mounts are in place. Symlinks
//!   (`/bin -> usr/bin`) and mount points are created in it on the host before start, with
//!   explicit modes, so the outcome does not depend on the server's umask.
//!
//! - **Dying with the server,** like bwrap's `--die-with-parent`: runc has no such option, and a
//!   container outlives a killed runc. So both are started through `setpriv --pdeathsig KILL`
//!   (util-linux): runc is killed when the server (the thread that spawned it) dies, and the
//!   supervisor — whose parent is the foreground runc — when runc dies; PID 1 gone, the kernel
//!   kills the rest of the sandbox. Dropping a sandbox without `destroy()` therefore stops it
//!   too (`kill_on_drop` kills runc), and the dropped handle removes runc's state and cgroup
//!   in the background.
//!
//! The sandbox's directory stays 0700 and root's: runc (root) reads the bundle and binds the
//! sources, so the sandbox uid needs no access to them on the host — except that the supervisor binary
//! must be executable by others (mode 0755), which [`Oci::ready`](crate::Backend::ready) checks.
//!
//! Layout of `<sandbox dir>/bundle/`: `config.json` and `rootfs/`. runc keeps its state under
//! `<state dir>/runc` (`--root` on every call); the container id is the sandbox id. runc runs in
//! the foreground and passes the supervisor socket through with `--preserve-fds 1`. Destroying a
//! sandbox runs `runc kill` and `runc delete --force` (the container's state and cgroup go), then
//! waits for `runc run` to exit; the start-up reaper does the same for containers of a server
//! that died, and removes the empty `hangar/<instance>-oci` cgroup directories; dropping the
//! backend removes them too.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::cgroup::Cgroups;
use crate::check::{CgroupVersion, cgroup_version, find_program};
use crate::error::{Result, SandboxError};
use crate::host::{HostConfig, INSIDE_SUPERVISOR, INSIDE_WORKSPACE, Prepared, Teardown, owner_alive};
use crate::layout::{self, Mount, make_parents};
use crate::spec::{Limits, SandboxId, SandboxSpec};
use crate::{Backend, Sandbox, supervisor};

/// Version of the runtime spec the bundle follows (runc 1.1 implements 1.0.2).
const OCI_VERSION: &str = "1.0.2";

/// Bind options; `rbind` so submounts of a source stay visible.
const BIND_RO: [&str; 4] = ["rbind", "ro", "nosuid", "nodev"];
const BIND_RW: [&str; 4] = ["rbind", "rw", "nosuid", "nodev"];

/// Kernel interfaces hidden (masked) or read-only inside, as in runc's default spec.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where `setpriv` may be: system directories, which the sandbox sees at the same paths.
const SETPRIV: &[&str] = &[
    "/usr/bin/setpriv",
    "/bin/setpriv",
    "/usr/sbin/setpriv",
    "/sbin/setpriv",
];

/// Arguments of `setpriv` that make the program it runs get SIGKILL when its parent dies.
const DIE_WITH_PARENT: [&str; 3] = ["--pdeathsig", "KILL", "--"];

/// Swap accounting file of cgroup v1; without it runc cannot cap swap and refuses a swap limit.
const V1_MEMSW: &str = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes";

pub struct Oci {
    runc: Option<PathBuf>,
    /// `setpriv`, to tie runc to the server and the supervisor to runc.
    setpriv: Option<PathBuf>,
    host: HostConfig,
    /// runc's state directory, `<state dir>/runc`.
    root: PathBuf,
    /// Whether the memory limit can also cap swap (see [`V1_MEMSW`]).
    swap_limit: bool,
}

impl Oci {
    pub fn new(mut host: HostConfig) -> Result<Self> {
        // runc and the mount sources must not depend on the server's working directory.
        host.state_dir = std::path::absolute(&host.state_dir)?;
        host.supervisor = std::path::absolute(&host.supervisor)?;
        std::fs::create_dir_all(&host.state_dir)?;
        layout::build_etc(&host)?;
        let root = host.state_dir.join("runc");
        std::fs::create_dir_all(&root)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
        let swap_limit = match cgroup_version() {
            CgroupVersion::V1 => Path::new(V1_MEMSW).exists(),
            // runc ignores a swap limit of 0 extra bytes when the kernel has no swap accounting.
            CgroupVersion::V2 => true,
            CgroupVersion::None => false,
        };
        Ok(Self {
            runc: find_program("runc"),
            setpriv: SETPRIV.iter().map(PathBuf::from).find(|p| p.is_file()),
            host,
            root,
            swap_limit,
        })
    }

    /// runc's state root (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup runc creates for a sandbox, relative to each hierarchy's root.
    pub fn cgroups_path(&self, id: &SandboxId) -> String {
        format!("/hangar/{}-oci/{id}", self.host.instance())
    }

    /// The sandbox's host-side pieces, without a host-made cgroup (runc makes its own).
    fn prepare(&self, spec: &SandboxSpec) -> Result<Prepared> {
        let mut prepared = Prepared::new(
            &self.host,
            &Cgroups::Unavailable("managed by runc".to_owned()),
            spec,
        )?;
        // The pids cgroup limits processes; RLIMIT_NPROC would count every process of the host
        // uid, other sandboxes' included.
        prepared.config.nproc = None;
        Ok(prepared)
    }

    /// Writes `<sandbox dir>/bundle` and returns its path.
    fn write_bundle(&self, spec: &SandboxSpec, prepared: &Prepared) -> Result<PathBuf> {
        let bundle = prepared.dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs)?;
        std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o755))?;
        let mounts = layout::mounts(&self.host, spec, prepared);
        prepare_rootfs(&rootfs, &mounts)?;
        let config = self.config(spec, prepared, &mounts)?;
        let text = serde_json::to_vec_pretty(&config).map_err(|e| SandboxError::Start(e.to_string()))?;
        std::fs::write(bundle.join("config.json"), text)?;
        Ok(bundle)
    }

    /// The bundle's `config.json`.
    fn config(&self, spec: &SandboxSpec, prepared: &Prepared, mounts: &[Mount]) -> Result<Value> {
        let mut args = Vec::new();
        if let Some(setpriv) = &self.setpriv {
            args.push(setpriv.to_string_lossy().into_owned());
            args.extend(DIE_WITH_PARENT.map(str::to_owned));
        }
        args.extend([
            INSIDE_SUPERVISOR.to_owned(),
            supervisor::ARG.to_owned(),
            prepared.config_json()?,
        ]);
        Ok(json!({
            "ociVersion": OCI_VERSION,
            "root": { "path": "rootfs", "readonly": true },
            "hostname": "sandbox",
            "process": process(args, &spec.limits, self.host.host_uid),
            "mounts": render_mounts(mounts, self.host.host_uid),
            "linux": linux(&spec.limits, &self.cgroups_path(&prepared.id), self.swap_limit),
        }))
    }

    /// `runc run` in the foreground, with the supervisor socket as fd 3, killed when the server
    /// dies.
    fn command(&self, runc: &Path, bundle: &Path, prepared: &Prepared) -> Result<tokio::process::Command> {
        let mut command = match &self.setpriv {
            Some(setpriv) => {
                let mut command = tokio::process::Command::new(setpriv);
                command.args(DIE_WITH_PARENT).arg(runc);
                command
            }
            None => tokio::process::Command::new(runc),
        };
        command
            .arg("--root")
            .arg(&self.root)
            .arg("run")
            .arg("--bundle")
            .arg(bundle);
        command.args(["--preserve-fds", "1", prepared.id.as_str()]);
        command
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.kill_on_drop(true);
        prepared.inherit(&mut command)?;
        Ok(command)
    }

    /// Ids of the containers in our runc root that are sandboxes.
    async fn containers(&self, runc: &Path) -> Vec<SandboxId> {
        let output = tokio::process::Command::new(runc)
            .arg("--root")
            .arg(&self.root)
            .args(["list", "--format", "json"])
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .await;
        match output {
            Ok(output) if output.status.success() => parse_list(&output.stdout),
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                tracing::warn!(status = %output.status, stderr = %stderr.trim(), "runc list failed");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "runc list failed");
                Vec::new()
            }
        }
    }

    /// Removes containers whose sandbox directory is gone or whose owner is dead. Returns how
    /// many of them had no directory left (those with one are counted when it is removed).
    async fn reap_containers(&self, runc: &Path) -> usize {
        let mut without_dir = 0;
        for id in self.containers(runc).await {
            let dir = self.host.state_dir.join(id.as_str());
            let has_dir = dir.exists();
            if has_dir && owner_alive(&dir) {
                continue;
            }
            tracing::warn!(sandbox = %id, "removing a runc container left behind by a previous server process");
            delete(runc, &self.root, &id).await;
            if !has_dir {
                without_dir += 1;
            }
        }
        without_dir
    }

    fn start(&self, runc: &Path, spec: &SandboxSpec, prepared: &Prepared) -> Result<tokio::process::Child> {
        let uid = self.host.host_uid;
        std::os::unix::fs::chown(&spec.workspace, Some(uid), Some(uid))?;
        let bundle = self.write_bundle(spec, prepared)?;
        let mut command = self.command(runc, &bundle, prepared)?;
        command
            .spawn()
            .map_err(|e| SandboxError::Start(format!("runc: {e}")))
    }
}

/// `process`: the supervisor as the sandbox's host uid/gid, no capabilities, `no_new_privs`. Its
/// environment is empty: the supervisor builds every command's environment from its config.
fn process(args: Vec<String>, limits: &Limits, uid: u32) -> Value {
    let none: [&str; 0] = [];
    json!({
        "terminal": false,
        "user": { "uid": uid, "gid": uid, "additionalGids": none },
        "args": args,
        "env": none,
        "cwd": INSIDE_WORKSPACE,
        "capabilities": {
            "bounding": none,
            "effective": none,
            "inheritable": none,
            "permitted": none,
            "ambient": none,
        },
        "noNewPrivileges": true,
        "rlimits": [
            { "type": "RLIMIT_CORE", "hard": 0, "soft": 0 },
            { "type": "RLIMIT_NOFILE", "hard": limits.open_files, "soft": limits.open_files },
        ],
    })
}

/// `linux`: namespaces (no user namespace), resources, masked and read-only kernel paths.
fn linux(limits: &Limits, cgroups_path: &str, swap_limit: bool) -> Value {
    let namespaces: Vec<Value> = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
        .iter()
        .map(|ns| json!({ "type": ns }))
        .collect();
    let mut memory = json!({ "limit": limits.memory_bytes });
    if swap_limit {
        // memory + swap = memory: no swap at all.
        memory["swap"] = json!(limits.memory_bytes);
    }
    json!({
        "namespaces": namespaces,
        "resources": {
            "memory": memory,
            "pids": { "limit": limits.pids },
            // Same floor as the host-made cgroups: the kernel refuses quotas under 1 ms.
            "cpu": { "quota": limits.cpu_millis.saturating_mul(100).max(1000), "period": 100_000 },
        },
        "cgroupsPath": cgroups_path,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
    })
}

/// The layout's mounts in OCI terms. Symlinks are not mounts: [`prepare_rootfs`] creates them.
fn render_mounts(mounts: &[Mount], uid: u32) -> Vec<Value> {
    let mut out = Vec::new();
    for mount in mounts {
        match mount {
            Mount::ReadOnly { source, target } => out.push(bind(source, target, &BIND_RO)),
            Mount::ReadWrite { source, target } => out.push(bind(source, target, &BIND_RW)),
            Mount::Symlink { .. } => {}
            Mount::Tmpfs { target, size } => {
                let size = format!("size={size}");
                let gid = format!("gid={uid}");
                let uid = format!("uid={uid}");
                let options = ["nosuid", "nodev", "mode=755", &size, &uid, &gid];
                out.push(fs_mount(target, "tmpfs", "tmpfs", &options));
            }
            Mount::Proc => out.push(fs_mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])),
            Mount::Dev => out.extend(dev_mounts()),
        }
    }
    out
}

/// `/dev` as runc's default spec has it; runc adds the standard devices (null, zero, full,
/// random, urandom, tty) and the `fd`, `stdin`… links.
fn dev_mounts() -> [Value; 4] {
    [
        fs_mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        fs_mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        ),
        fs_mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        fs_mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ]
}

fn bind(source: &Path, target: &str, options: &[&str]) -> Value {
    let source = std::path::absolute(source).unwrap_or_else(|_| source.to_path_buf());
    json!({ "destination": target, "type": "bind", "source": source, "options": options })
}

fn fs_mount(target: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": target, "type": kind, "source": source, "options": options })
}

/// Creates the layout's symlinks and the mount points in the (still writable) root directory:
/// directories 0755, files 0644, whatever the umask.
fn prepare_rootfs(rootfs: &Path, mounts: &[Mount]) -> Result<()> {
    for mount in mounts {
        match mount {
            Mount::Symlink { target, link } => {
                let path = inside(rootfs, link)?;
                make_parents(rootfs, &path)?;
                std::os::unix::fs::symlink(target, &path)?;
            }
            Mount::ReadOnly { source, target } | Mount::ReadWrite { source, target } => {
                mount_point(rootfs, target, !source.is_dir())?;
            }
            Mount::Tmpfs { target, .. } => mount_point(rootfs, target, false)?,
            Mount::Proc => mount_point(rootfs, "/proc", false)?,
            Mount::Dev => mount_point(rootfs, "/dev", false)?,
        }
    }
    Ok(())
}

/// Creates the mount point `target` unless it exists or lies below a symlink (runc resolves
/// those inside the root itself; following one here could leave the root directory).
fn mount_point(rootfs: &Path, target: &str, file: bool) -> Result<()> {
    let path = inside(rootfs, target)?;
    if path.symlink_metadata().is_ok() || !make_parents(rootfs, &path)? {
        return Ok(());
    }
    if file {
        std::fs::write(&path, b"")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    } else {
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// `rootfs` joined with an absolute in-sandbox path that has no `..`.
fn inside(rootfs: &Path, path: &str) -> Result<PathBuf> {
    let relative = Path::new(path).strip_prefix("/").unwrap_or(Path::new(""));
    let normal = relative.components().all(|c| matches!(c, Component::Normal(_)));
    if !normal || relative.as_os_str().is_empty() {
        return Err(SandboxError::Invalid(format!(
            "bad path inside the sandbox: {path:?}"
        )));
    }
    Ok(rootfs.join(relative))
}

/// Sandbox ids in the output of `runc list --format json` (an array, or `null` when empty).
fn parse_list(stdout: &[u8]) -> Vec<SandboxId> {
    let Ok(Value::Array(containers)) = serde_json::from_slice::<Value>(stdout) else {
        return Vec::new();
    };
    containers
        .iter()
        .filter_map(|c| c.get("id").and_then(Value::as_str))
        .filter_map(|id| SandboxId::try_from(id.to_owned()).ok())
        .collect()
}

#[async_trait]
impl Backend for Oci {
    fn name(&self) -> &'static str {
        "oci"
    }

    fn ready(&self) -> Result<()> {
        if self.runc.is_none() {
            return Err(SandboxError::Unavailable {
                reason: "runc is not installed".to_owned(),
                fix: "apt-get install -y runc".to_owned(),
            });
        }
        if self.setpriv.is_none() {
            return Err(SandboxError::Unavailable {
                reason: "setpriv (util-linux) is not installed; it ties containers to the server".to_owned(),
                fix: "apt-get install -y util-linux".to_owned(),
            });
        }
        if !rustix::process::geteuid().is_root() {
            return Err(SandboxError::Unavailable {
                reason: "the OCI backend starts containers with runc as root".to_owned(),
                fix: "run Hangar as root, or use the bwrap backend".to_owned(),
            });
        }
        let supervisor = &self.host.supervisor;
        let meta = match std::fs::metadata(supervisor) {
            Ok(meta) if meta.is_file() => meta,
            _ => return Err(missing_supervisor(supervisor)),
        };
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(SandboxError::Unavailable {
                reason: format!(
                    "the supervisor binary {} is not executable by others",
                    supervisor.display()
                ),
                fix: format!(
                    "chmod 755 {} (it runs as uid {} in the sandbox)",
                    supervisor.display(),
                    self.host.host_uid
                ),
            });
        }
        Ok(())
    }

    async fn create(&self, spec: SandboxSpec) -> Result<Box<dyn Sandbox>> {
        self.ready()?;
        let Some(runc) = &self.runc else {
            return Err(SandboxError::Start("runc vanished".to_owned()));
        };
        let prepared = self.prepare(&spec)?;
        let child = match self.start(runc, &spec, &prepared) {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&prepared.dir);
                return Err(e);
            }
        };
        let teardown = Teardown::Runc {
            runc: runc.clone(),
            root: self.root.clone(),
        };
        Ok(Box::new(prepared.into_running(child, teardown).await?))
    }

    async fn reap_leftovers(&self) -> Result<usize> {
        let containers = match &self.runc {
            Some(runc) => self.reap_containers(runc).await,
            None => 0,
        };
        let cgroups = Cgroups::Unavailable("managed by runc".to_owned());
        let removed = containers + crate::host::reap_leftovers(&self.host, &cgroups).await?;
        self.reap_cgroups();
        Ok(removed)
    }
}

impl Oci {
    /// `hangar/<instance>-oci` in every hierarchy where runc made it.
    fn instance_cgroups(&self) -> Vec<PathBuf> {
        crate::cgroup::named_instance_dirs(&format!("{}-oci", self.host.instance()))
    }

    /// Empty cgroups of sandboxes whose owner is gone (runc's state lost before `runc delete`
    /// could remove them), then the instance directories if nothing else is in them; runc
    /// makes them again for the next container. rmdir only.
    fn reap_cgroups(&self) {
        for instance in self.instance_cgroups() {
            let Ok(entries) = std::fs::read_dir(&instance) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if SandboxId::try_from(name.clone()).is_err() || !entry.path().is_dir() {
                    continue;
                }
                if !owner_alive(&self.host.state_dir.join(&name)) {
                    crate::cgroup::remove_empty(&entry.path());
                }
            }
            crate::cgroup::remove_empty(&instance);
        }
    }
}

/// Shutdown: the instance's cgroup directories go (runc removed each container's own).
impl Drop for Oci {
    fn drop(&mut self) {
        for dir in self.instance_cgroups() {
            crate::cgroup::remove_empty(&dir);
        }
    }
}

fn missing_supervisor(path: &Path) -> SandboxError {
    SandboxError::Unavailable {
        reason: format!("the supervisor binary {} does not exist", path.display()),
        fix: "point the sandbox supervisor at the hangar binary".to_owned(),
    }
}

/// `runc kill <id> KILL`, then `runc delete --force`, ignoring failures (the container may
/// already be gone).
pub async fn delete(runc: &Path, root: &Path, id: &SandboxId) {
    for args in [
        ["kill", id.as_str(), "KILL"].as_slice(),
        ["delete", "--force", id.as_str()].as_slice(),
    ] {
        let _ = tokio::process::Command::new(runc)
            .arg("--root")
            .arg(root)
            .args(args)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::supervisor::SupervisorConfig;

    const MIB: u64 = 1024 * 1024;

    fn backend(dir: &Path, supervisor: &str) -> Oci {
        Oci::new(HostConfig::new(supervisor, dir.join("state"))).unwrap()
    }

    fn spec(dir: &Path) -> SandboxSpec {
        let mut spec = SandboxSpec::new("t/c", dir.join("ws"));
        spec.limits.memory_bytes = 300 * MIB;
        spec.limits.pids = 77;
        spec.limits.cpu_millis = 1500;
        spec.limits.open_files = 555;
        spec.limits.tmp_bytes = 11 * MIB;
        spec
    }

    fn strings(value: &Value) -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    /// The config of a sandbox that is prepared but not started, and its layout.
    fn generated(oci: &Oci, spec: &SandboxSpec) -> (Prepared, Vec<Mount>, Value) {
        let prepared = oci.prepare(spec).unwrap();
        let mounts = layout::mounts(&oci.host, spec, &prepared);
        let config = oci.config(spec, &prepared, &mounts).unwrap();
        (prepared, mounts, config)
    }

    #[test]
    fn the_process_has_no_privileges() {
        let dir = tempfile::tempdir().unwrap();
        let oci = backend(dir.path(), "/bin/true");
        let (_prepared, _, config) = generated(&oci, &spec(dir.path()));
        assert_eq!(config["ociVersion"], "1.0.2");
        assert_eq!(config["root"], json!({ "path": "rootfs", "readonly": true }));
        assert_eq!(config["hostname"], "sandbox");
        let process = &config["process"];
        assert_eq!(process["terminal"], false);
        assert_eq!(
            process["user"],
            json!({ "uid": 200_000, "gid": 200_000, "additionalGids": [] })
        );
        assert_eq!(process["noNewPrivileges"], true);
        let caps = process["capabilities"].as_object().unwrap();
        assert_eq!(caps.len(), 5);
        for (set, value) in caps {
            assert_eq!(value, &json!([]), "{set}");
        }
        assert_eq!(process["env"], json!([]));
        assert_eq!(process["cwd"], "/workspace");
        assert_eq!(
            process["rlimits"],
            json!([
                { "type": "RLIMIT_CORE", "hard": 0, "soft": 0 },
                { "type": "RLIMIT_NOFILE", "hard": 555, "soft": 555 },
            ])
        );
    }

    #[test]
    fn the_supervisor_starts_with_its_config_and_no_nproc() {
        let dir = tempfile::tempdir().unwrap();
        let oci = backend(dir.path(), "/bin/true");
        let (prepared, _, config) = generated(&oci, &spec(dir.path()));
        let mut args = strings(&config["process"]["args"]);
        // setpriv execs the supervisor, which stays PID 1, after arranging its death with runc.
        let setpriv = oci.setpriv.clone().unwrap();
        assert_eq!(args[0], setpriv.to_str().unwrap());
        assert_eq!(args.drain(..4).skip(1).collect::<Vec<_>>(), DIE_WITH_PARENT);
        assert_eq!(args.len(), 3);
        assert_eq!(
            (args[0].as_str(), args[1].as_str()),
            (INSIDE_SUPERVISOR, supervisor::ARG)
        );
        let sup: SupervisorConfig = serde_json::from_str(&args[2]).unwrap();
        assert_eq!(sup.nproc, None, "the pids cgroup limits processes");
        assert_eq!(sup.open_files, 555);
        assert_eq!(sup.workdir, "/workspace");
        assert!(prepared.cgroup.is_none(), "runc makes the cgroup");
        assert!(prepared.dir.join("sup.sock").exists());
    }

    #[test]
    fn namespaces_resources_and_kernel_paths() {
        let dir = tempfile::tempdir().unwrap();
        let oci = backend(dir.path(), "/bin/true");
        let (prepared, _, config) = generated(&oci, &spec(dir.path()));
        let linux = &config["linux"];
        let namespaces: BTreeSet<&str> = linux["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            namespaces,
            BTreeSet::from(["pid", "network", "ipc", "uts", "mount", "cgroup"])
        );
        let resources = &linux["resources"];
        assert_eq!(resources["memory"]["limit"], 300 * MIB);
        if oci.swap_limit {
            assert_eq!(resources["memory"]["swap"], 300 * MIB);
        }
        assert_eq!(resources["pids"], json!({ "limit": 77 }));
        assert_eq!(resources["cpu"], json!({ "quota": 150_000, "period": 100_000 }));
        let path = linux["cgroupsPath"].as_str().unwrap();
        assert_eq!(
            path,
            format!("/hangar/{}-oci/{}", oci.host.instance(), prepared.id)
        );
        assert!(strings(&linux["maskedPaths"]).contains(&"/proc/kcore".to_owned()));
        assert!(strings(&linux["readonlyPaths"]).contains(&"/proc/sys".to_owned()));
        // The sandbox's own limits never go below the kernel's minimal quota.
        assert_eq!(linux_cpu_quota(1), 1000);
    }

    fn linux_cpu_quota(cpu_millis: u64) -> u64 {
        let limits = Limits {
            cpu_millis,
            ..Limits::default()
        };
        linux(&limits, "/x", false)["resources"]["cpu"]["quota"]
            .as_u64()
            .unwrap()
    }

    #[test]
    fn without_swap_accounting_swap_is_left_out() {
        let memory = &linux(&Limits::default(), "/x", false)["resources"]["memory"];
        assert_eq!(memory, &json!({ "limit": Limits::default().memory_bytes }));
    }

    #[test]
    fn every_layout_mount_is_rendered() {
        let dir = tempfile::tempdir().unwrap();
        let oci = backend(dir.path(), "/bin/true");
        let spec = spec(dir.path());
        let (_prepared, mounts, config) = generated(&oci, &spec);
        let rendered = config["mounts"].as_array().unwrap();
        let find = |target: &str| {
            let found: Vec<&Value> = rendered.iter().filter(|m| m["destination"] == target).collect();
            assert_eq!(found.len(), 1, "{target} in {rendered:#?}");
            found[0]
        };
        let mut expected = 0;
        for mount in &mounts {
            match mount {
                Mount::ReadOnly { source, target } => {
                    let m = find(target);
                    assert_eq!((&m["type"], &m["source"]), (&json!("bind"), &json!(source)));
                    assert_eq!(strings(&m["options"]), ["rbind", "ro", "nosuid", "nodev"]);
                    expected += 1;
                }
                Mount::ReadWrite { source, target } => {
                    let m = find(target);
                    assert_eq!((&m["type"], &m["source"]), (&json!("bind"), &json!(source)));
                    assert_eq!(strings(&m["options"]), ["rbind", "rw", "nosuid", "nodev"]);
                    expected += 1;
                }
                Mount::Symlink { link, .. } => {
                    assert!(
                        rendered.iter().all(|m| m["destination"] != link.as_str()),
                        "{link}"
                    );
                }
                Mount::Tmpfs { target, size } => {
                    let m = find(target);
                    assert_eq!(m["type"], "tmpfs");
                    let options = strings(&m["options"]);
                    for option in [
                        "nosuid",
                        "nodev",
                        "mode=755",
                        &format!("size={size}"),
                        "uid=200000",
                        "gid=200000",
                    ] {
                        assert!(options.iter().any(|o| o == option), "{target}: {option}");
                    }
                    expected += 1;
                }
                Mount::Proc => {
                    assert_eq!(find("/proc")["type"], "proc");
                    expected += 1;
                }
                Mount::Dev => {
                    assert_eq!(find("/dev")["type"], "tmpfs");
                    assert_eq!(find("/dev/pts")["type"], "devpts");
                    assert_eq!(find("/dev/shm")["type"], "tmpfs");
                    assert_eq!(find("/dev/mqueue")["type"], "mqueue");
                    expected += 4;
                }
            }
        }
        assert_eq!(rendered.len(), expected);
        assert_eq!(find("/workspace")["source"], json!(spec.workspace));
        assert_eq!(find("/tmp")["options"][3], format!("size={}", 11 * MIB));
        assert_eq!(find(INSIDE_SUPERVISOR)["source"], "/bin/true");
    }

    #[test]
    fn the_bundle_has_symlinks_and_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let oci = backend(dir.path(), "/bin/true");
        let spec = spec(dir.path());
        let prepared = oci.prepare(&spec).unwrap();
        let bundle = oci.write_bundle(&spec, &prepared).unwrap();
        assert_eq!(bundle, prepared.dir.join("bundle"));
        let written: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(written["root"]["path"], "rootfs");
        let rootfs = bundle.join("rootfs");
        let mode = |p: &Path| p.symlink_metadata().unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&rootfs), 0o755);
        for mount in layout::mounts(&oci.host, &spec, &prepared) {
            match mount {
                Mount::Symlink { target, link } => {
                    let path = rootfs.join(link.trim_start_matches('/'));
                    assert_eq!(std::fs::read_link(&path).unwrap(), Path::new(&target));
                }
                Mount::ReadOnly { source, target } | Mount::ReadWrite { source, target } => {
                    let path = rootfs.join(target.trim_start_matches('/'));
                    assert_eq!(path.is_dir(), source.is_dir(), "{target}");
                    assert_eq!(
                        mode(&path),
                        if source.is_dir() { 0o755 } else { 0o644 },
                        "{target}"
                    );
                }
                Mount::Tmpfs { target, .. } => assert!(rootfs.join(target.trim_start_matches('/')).is_dir()),
                Mount::Proc | Mount::Dev => {}
            }
        }
        assert_eq!(mode(&rootfs.join("home")), 0o755);
        assert!(rootfs.join(".hangar/hangar").is_file());
    }

    #[test]
    fn mount_points_never_follow_symlinks_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("opt")).unwrap();
        mount_point(&rootfs, "/opt/tools/bin", false).unwrap();
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        for bad in ["/", "", "relative", "/a/../b", "/.."] {
            assert!(inside(&rootfs, bad).is_err(), "{bad}");
        }
        assert_eq!(inside(&rootfs, "/a/b").unwrap(), rootfs.join("a/b"));
    }

    #[test]
    fn runc_list_output_is_parsed() {
        let id = SandboxId::generate();
        let listing = format!(r#"[{{"id":"{id}","pid":5,"status":"running"}},{{"id":"other","pid":6}}]"#);
        assert_eq!(parse_list(listing.as_bytes()), vec![id]);
        assert!(parse_list(b"null\n").is_empty());
        assert!(parse_list(b"").is_empty());
    }

    #[test]
    fn ready_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut oci = backend(dir.path(), "/bin/true");
        assert_eq!(oci.name(), "oci");
        oci.runc = None;
        match oci.ready() {
            Err(SandboxError::Unavailable { reason, fix }) => {
                assert_eq!(
                    (reason.as_str(), fix.as_str()),
                    ("runc is not installed", "apt-get install -y runc")
                );
            }
            other => panic!("{other:?}"),
        }
        let mut oci = backend(dir.path(), "/nonexistent/hangar");
        oci.runc = Some(PathBuf::from("/usr/sbin/runc"));
        let setpriv = oci.setpriv.take();
        assert!(
            matches!(oci.ready(), Err(SandboxError::Unavailable { fix, .. }) if fix.contains("util-linux"))
        );
        oci.setpriv = setpriv;
        if rustix::process::geteuid().is_root() {
            assert!(
                matches!(oci.ready(), Err(SandboxError::Unavailable { reason, .. }) if reason.contains("supervisor"))
            );
            let private = dir.path().join("hangar");
            std::fs::write(&private, b"").unwrap();
            std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o750)).unwrap();
            oci.host.supervisor = private;
            assert!(
                matches!(oci.ready(), Err(SandboxError::Unavailable { fix, .. }) if fix.starts_with("chmod 755"))
            );
            oci.host.supervisor = PathBuf::from("/bin/true");
            assert!(oci.ready().is_ok());
        }
    }

    /// Runs a generated bundle with a shell instead of the supervisor. Needs root and runc, like
    /// the sandbox suite of the server (`scripts/test` installs runc).
    #[test]
    fn runc_runs_a_generated_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let oci = backend(dir.path(), "/bin/true");
        let spec = spec(dir.path());
        let prepared = oci.prepare(&spec).unwrap();
        let uid = oci.host.host_uid;
        assert_ne!(uid, 1000, "uid 1000 is a person on many hosts");
        std::os::unix::fs::chown(&spec.workspace, Some(uid), Some(uid)).unwrap();
        let bundle = oci.write_bundle(&spec, &prepared).unwrap();
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let script = "id; echo uid-$(id -u) gid-$(id -g); ip addr 2>/dev/null || cat /proc/net/dev; ls /; touch /workspace/w && echo ws-ok; \
                      touch /usr/x 2>/dev/null || echo usr-ro; touch /x 2>/dev/null || echo root-ro; \
                      grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; df -h /tmp | tail -1; echo ok";
        config["process"]["args"] = json!(["/bin/sh", "-c", script]);
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
        let output = std::process::Command::new(oci.runc.as_ref().unwrap())
            .arg("--root")
            .arg(oci.root())
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(prepared.id.as_str())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success());
        // The sandbox's code runs as the dedicated host uid, never as a host user such as 1000.
        assert!(stdout.contains(&format!("uid-{uid} gid-{uid}")), "{stdout}");
        assert!(
            stdout.contains("inet 127.0.0.1/8") || stdout.contains("lo:"),
            "{stdout}"
        );
        for expected in [
            "ws-ok",
            "usr-ro",
            "root-ro",
            "CapEff:\t0000000000000000",
            "NoNewPrivs:\t1",
            "ok",
        ] {
            assert!(stdout.contains(expected), "{expected} in {stdout}");
        }
        let created = std::fs::metadata(dir.path().join("ws/w")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((created.uid(), created.gid()), (uid, uid));
        // runc made `hangar/<instance>-oci` for the container; shutting the backend down removes it.
        let instance = oci.instance_cgroups();
        assert!(!instance.is_empty());
        drop(prepared);
        drop(oci);
        for dir in &instance {
            assert!(!dir.exists(), "{} is left", dir.display());
        }
    }
}
