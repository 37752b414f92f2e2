//! Memory, process and CPU limits through cgroups, v1 or v2, whichever the host has.
//!
//! Each sandbox gets `…/hangar/<instance>/<sandbox id>` (one directory per v1 controller, one
//! directory on v2). `<instance>` names the server's data directory, so a server only ever
//! reaps the cgroups of its own sandboxes. The sandbox's first process joins before it executes
//! anything: the host opens the `cgroup.procs` files and the child writes `0` (itself) to them
//! between fork and exec, so nothing it forks can start outside the limits.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::check::{CgroupVersion, cgroup_version};
use crate::spec::{Limits, SandboxId};

const MOUNT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Where this server's sandbox cgroups live, or why there are none.
#[derive(Debug, Clone)]
pub enum Cgroups {
    V1 {
        instance: PathBuf,
    },
    V2 {
        instance: PathBuf,
    },
    /// Limits fall back to rlimits only; the reason says why.
    Unavailable(String),
}

/// One sandbox's cgroup directories.
#[derive(Debug)]
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    version: CgroupVersion,
}

impl Cgroups {
    /// Finds the hierarchy and prepares `hangar/<instance>` in it.
    pub fn detect(instance: &str) -> Self {
        let relative = Path::new("hangar").join(instance);
        match cgroup_version() {
            CgroupVersion::V1 => {
                for controller in V1_CONTROLLERS {
                    let dir = Path::new(MOUNT).join(controller).join(&relative);
                    if let Err(e) = std::fs::create_dir_all(&dir) {
                        return Self::Unavailable(format!("cannot create {}: {e}", dir.display()));
                    }
                }
                Self::V1 { instance: relative }
            }
            CgroupVersion::V2 => match prepare_v2(&relative) {
                Ok(()) => Self::V2 { instance: relative },
                Err(e) => Self::Unavailable(format!("cgroup v2: {e}")),
            },
            CgroupVersion::None => Self::Unavailable("no cgroup hierarchy is mounted".to_owned()),
        }
    }

    pub fn available(&self) -> bool {
        !matches!(self, Self::Unavailable(_))
    }

    /// The directories a sandbox's cgroup has (or would have) in this hierarchy.
    fn cgroup(&self, id: &SandboxId) -> Option<Cgroup> {
        match self {
            Self::V1 { instance } => Some(Cgroup {
                dirs: V1_CONTROLLERS
                    .iter()
                    .map(|c| Path::new(MOUNT).join(c).join(instance).join(id.as_str()))
                    .collect(),
                version: CgroupVersion::V1,
            }),
            Self::V2 { instance } => Some(Cgroup {
                dirs: vec![Path::new(MOUNT).join(instance).join(id.as_str())],
                version: CgroupVersion::V2,
            }),
            Self::Unavailable(_) => None,
        }
    }

    /// Creates the sandbox's cgroup with its limits.
    pub fn create(&self, id: &SandboxId, limits: &Limits) -> io::Result<Cgroup> {
        let Some(cgroup) = self.cgroup(id) else {
            let reason = if let Self::Unavailable(reason) = self {
                reason.clone()
            } else {
                String::new()
            };
            return Err(io::Error::other(reason));
        };
        if let Self::V2 { instance } = self
            && !Path::new(MOUNT).join(instance).is_dir()
        {
            // Removed by a backend on this state directory that shut down meanwhile.
            prepare_v2(instance)?;
        }
        for dir in &cgroup.dirs {
            if let Err(e) = std::fs::create_dir_all(dir) {
                cgroup.remove();
                return Err(e);
            }
        }
        if let Err(e) = cgroup.set_limits(limits) {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// This instance's own directories, `hangar/<instance>` (one per v1 controller).
    pub fn instance_dirs(&self) -> Vec<PathBuf> {
        match self {
            Self::V1 { instance } => V1_CONTROLLERS
                .iter()
                .map(|c| Path::new(MOUNT).join(c).join(instance))
                .collect(),
            Self::V2 { instance } => vec![Path::new(MOUNT).join(instance)],
            Self::Unavailable(_) => Vec::new(),
        }
    }

    /// Removes this instance's directories at shutdown. rmdir only: one still holding a sandbox's
    /// cgroup stays (with a warning).
    pub fn remove_instance(&self) {
        for dir in self.instance_dirs() {
            remove_empty(&dir);
        }
    }

    /// Cgroups of sandboxes this instance created earlier (for the start-up reaper).
    pub fn leftovers(&self) -> Vec<(SandboxId, Cgroup)> {
        let base = match self {
            Self::V1 { instance } => Path::new(MOUNT).join("pids").join(instance),
            Self::V2 { instance } => Path::new(MOUNT).join(instance),
            Self::Unavailable(_) => return Vec::new(),
        };
        let Ok(entries) = std::fs::read_dir(&base) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| SandboxId::try_from(e.file_name().to_string_lossy().into_owned()).ok())
            .filter_map(|id| self.cgroup(&id).map(|cgroup| (id, cgroup)))
            .collect()
    }
}

/// `hangar/<name>` in every mounted hierarchy where it exists: runc creates a container's parent
/// cgroup under each v1 controller it knows, not only the three Hangar limits.
pub fn named_instance_dirs(name: &str) -> Vec<PathBuf> {
    let relative = Path::new("hangar").join(name);
    let mut dirs = vec![Path::new(MOUNT).join(&relative)];
    if let Ok(entries) = std::fs::read_dir(MOUNT) {
        dirs.extend(entries.flatten().map(|e| e.path().join(&relative)));
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// rmdir of an (empty) cgroup directory; never recursive, cgroupfs has no files to delete. A
/// directory still in use (a child cgroup or a process: `EBUSY`) is left with a warning.
pub fn remove_empty(dir: &Path) {
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cgroup directory left in place"),
    }
}

fn prepare_v2(relative: &Path) -> io::Result<()> {
    let mut dir = PathBuf::from(MOUNT);
    for part in relative.components() {
        // Controllers must be enabled in every ancestor's subtree_control to reach the leaf.
        std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
        dir.push(part);
        std::fs::create_dir_all(&dir)?;
    }
    std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu")
}

impl Cgroup {
    fn set_limits(&self, limits: &Limits) -> io::Result<()> {
        let quota = limits.cpu_millis.saturating_mul(100).max(1000);
        match self.version {
            CgroupVersion::V1 => {
                let [memory, pids, cpu] = [&self.dirs[0], &self.dirs[1], &self.dirs[2]];
                write(memory, "memory.limit_in_bytes", limits.memory_bytes)?;
                // Without swap accounting the memsw file is absent; swap then stays uncapped.
                if memory.join("memory.memsw.limit_in_bytes").exists() {
                    write(memory, "memory.memsw.limit_in_bytes", limits.memory_bytes)?;
                }
                write(pids, "pids.max", limits.pids)?;
                write(cpu, "cpu.cfs_period_us", 100_000)?;
                write(cpu, "cpu.cfs_quota_us", quota)
            }
            _ => {
                let dir = &self.dirs[0];
                write(dir, "memory.max", limits.memory_bytes)?;
                write(dir, "memory.swap.max", 0)?;
                write(dir, "pids.max", limits.pids)?;
                std::fs::write(dir.join("cpu.max"), format!("{quota} 100000"))
            }
        }
    }

    /// `cgroup.procs` of every directory, opened for writing, for the child to join with `0`.
    pub fn procs_files(&self) -> io::Result<Vec<File>> {
        self.dirs
            .iter()
            .map(|d| OpenOptions::new().write(true).open(d.join("cgroup.procs")))
            .collect()
    }

    /// Processes in the cgroup right now.
    pub fn pids(&self) -> Vec<i32> {
        let dir = match self.version {
            CgroupVersion::V1 => &self.dirs[1],
            _ => &self.dirs[0],
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Times the memory limit killed a process (v1 `oom_kill`, v2 `oom_kill` in memory.events).
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            CgroupVersion::V1 => (self.dirs[0].join("memory.oom_control"), "oom_kill"),
            _ => (self.dirs[0].join("memory.events"), "oom_kill"),
        };
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Kills every process in the cgroup, repeating until none is left (processes can fork while
    /// being killed; the pids limit bounds how long that lasts).
    pub async fn kill_all(&self) {
        if self.version == CgroupVersion::V2 && std::fs::write(self.dirs[0].join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for _ in 0..50 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Removes the directories (they must be empty of processes).
    pub fn remove(&self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn write(dir: &Path, file: &str, value: u64) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(dir.join(file))?;
    f.write_all(value.to_string().as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
}
