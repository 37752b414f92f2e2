//! What a sandbox sees, independent of the backend: read-only system directories, a clean `/etc`
//! from an allow-list plus generated files, private tmpfs `/tmp` and home, the workspace
//! read-write at `/workspace`, the supervisor binary, and the egress socket directory when egress
//! is on. Backends render the list into their own terms (bwrap arguments, OCI mounts).

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::host::{
    HostConfig, INSIDE_EGRESS_DIR, INSIDE_HOME, INSIDE_SUPERVISOR, INSIDE_WORKSPACE, Prepared,
};
use crate::spec::SandboxSpec;

/// Host files under `/etc` a sandbox may see. Nothing secret: no shadow, sudoers, ssh keys or
/// private TLS keys.
const ETC_ALLOW: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gitconfig",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "magic",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "protocols",
    "python3",
    "python3.11",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
];

/// Generated `/etc` files: only the sandbox's own users, and an empty `resolv.conf` (names are
/// resolved by the egress proxy on the host, never inside).
const ETC_GENERATED: &[(&str, &str)] = &[
    (
        "passwd",
        "root:x:0:0:root:/root:/usr/sbin/nologin\n\
         sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/bash\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    ),
    ("group", "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n"),
    ("hosts", "127.0.0.1 localhost sandbox\n::1 localhost\n"),
    ("resolv.conf", ""),
];

/// System directories bound read-only, or recreated as symlinks where the host has symlinks.
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// One entry of a sandbox's filesystem, in mount order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    ReadOnly {
        source: PathBuf,
        target: String,
    },
    ReadWrite {
        source: PathBuf,
        target: String,
    },
    Symlink {
        target: String,
        link: String,
    },
    /// A private tmpfs owned by the sandbox user.
    Tmpfs {
        target: String,
        size: u64,
    },
    Proc,
    Dev,
}

/// Writes the generated `/etc` files into `<state dir>/etc` (shared by all sandboxes, read-only
/// inside).
pub fn write_generated_etc(host: &HostConfig) -> Result<PathBuf> {
    let dir = host.state_dir.join("etc");
    std::fs::create_dir_all(&dir)?;
    for (name, content) in ETC_GENERATED {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(dir)
}

/// The mounts of one sandbox.
pub fn mounts(host: &HostConfig, spec: &SandboxSpec, prepared: &Prepared) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::read_link(path) {
            Ok(target) => mounts.push(Mount::Symlink {
                target: target.to_string_lossy().into_owned(),
                link: (*dir).to_owned(),
            }),
            Err(_) if path.is_dir() => mounts.push(read_only(path.to_path_buf(), dir)),
            Err(_) => {}
        }
    }
    for entry in ETC_ALLOW {
        let path = Path::new("/etc").join(entry);
        if path.exists() {
            let target = path.to_string_lossy().into_owned();
            mounts.push(read_only(path, &target));
        }
    }
    let etc = host.state_dir.join("etc");
    for (name, _) in ETC_GENERATED {
        mounts.push(read_only(etc.join(name), &format!("/etc/{name}")));
    }
    for extra in &host.ro_binds {
        mounts.push(read_only(extra.clone(), &extra.to_string_lossy()));
    }
    mounts.push(Mount::Proc);
    mounts.push(Mount::Dev);
    mounts.push(Mount::Tmpfs {
        target: "/tmp".to_owned(),
        size: spec.limits.tmp_bytes,
    });
    mounts.push(Mount::Tmpfs {
        target: INSIDE_HOME.to_owned(),
        size: spec.limits.home_bytes,
    });
    mounts.push(Mount::ReadWrite {
        source: spec.workspace.clone(),
        target: INSIDE_WORKSPACE.to_owned(),
    });
    mounts.push(read_only(host.supervisor.clone(), INSIDE_SUPERVISOR));
    if prepared.egress.is_some() {
        mounts.push(read_only(prepared.dir.join("egress"), INSIDE_EGRESS_DIR));
    }
    mounts
}

fn read_only(source: PathBuf, target: &str) -> Mount {
    Mount::ReadOnly {
        source,
        target: target.to_owned(),
    }
}
