//! What a sandbox sees, independent of the backend: read-only system directories, a clean `/etc`
//! (a copy of an allow-list of host files plus generated ones, see [`build_etc`]), private tmpfs
//! `/tmp` and home, the workspace read-write at `/workspace`, the supervisor binary, and the
//! egress socket directory when egress is on. Backends render the list into their own terms (bwrap arguments, OCI mounts).

use std::os::unix::fs::PermissionsExt;
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

/// Builds the sandboxes' `/etc` as one directory, `<state dir>/etc`, bound read-only as a whole
/// (one mount instead of one per file, which made up a fifth of a sandbox's start-up): a copy of
/// the allow-listed host entries plus the generated files. Symlinks are copied as symlinks,
/// never followed; files the host keeps from other users (not world-readable) are left out.
/// The copy is taken when the backend starts; host changes to these files (new CA
/// certificates, `ld.so.cache`) reach sandboxes at the server's next start.
///
/// The new tree is built beside the old one and swapped in with one rename, so a sandbox that
/// still runs from a previous start keeps a complete `/etc`.
pub fn build_etc(host: &HostConfig) -> Result<PathBuf> {
    build_etc_from(host, Path::new("/etc"))
}

fn build_etc_from(host: &HostConfig, source: &Path) -> Result<PathBuf> {
    let target = host.state_dir.join("etc");
    let fresh = host.state_dir.join(format!(
        "etc.new-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let built = fill_etc(source, &fresh).and_then(|()| swap_into_place(&fresh, &target));
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&fresh);
    }
    built.map(|()| target)
}

fn fill_etc(source: &Path, fresh: &Path) -> Result<()> {
    std::fs::create_dir(fresh)?;
    std::fs::set_permissions(fresh, std::fs::Permissions::from_mode(0o755))?;
    for entry in ETC_ALLOW {
        let to = fresh.join(entry);
        if make_parents(fresh, &to)? {
            copy_entry(&source.join(entry), &to, ETC_MAX_DEPTH)?;
        }
    }
    for (name, content) in ETC_GENERATED {
        let path = fresh.join(name);
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// How deep the copy descends into an allow-listed directory.
const ETC_MAX_DEPTH: usize = 8;

/// Copies one entry without following symlinks: a regular file readable by everyone (mode 0644),
/// a symlink as the same symlink, a directory (0755) with its contents. Anything else, a missing
/// entry, a private file or a directory deeper than `depth` is skipped.
fn copy_entry(from: &Path, to: &Path, depth: usize) -> Result<()> {
    let Ok(meta) = from.symlink_metadata() else {
        return Ok(());
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
    } else if kind.is_file() && meta.permissions().mode() & 0o004 != 0 {
        std::fs::copy(from, to)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o644))?;
    } else if kind.is_dir() && depth > 0 {
        std::fs::create_dir(to)?;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
        for child in std::fs::read_dir(from)? {
            let child = child?;
            copy_entry(&child.path(), &to.join(child.file_name()), depth - 1)?;
        }
    }
    Ok(())
}

/// Creates the directories between `rootfs` and `path`, each 0755 whatever the umask. Returns false, creating nothing more,
/// when one of them is a symlink.
pub(crate) fn make_parents(rootfs: &Path, path: &Path) -> Result<bool> {
    let Some(parent) = path.parent() else {
        return Ok(true);
    };
    let Ok(relative) = parent.strip_prefix(rootfs) else {
        return Ok(true);
    };
    let mut dir = rootfs.to_path_buf();
    for part in relative.components() {
        dir.push(part);
        match dir.symlink_metadata() {
            Ok(meta) if meta.file_type().is_symlink() => return Ok(false),
            Ok(_) => {}
            Err(_) => {
                std::fs::create_dir(&dir)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
            }
        }
    }
    Ok(true)
}

/// Puts `fresh` at `target` atomically: an exchange when `target` exists (the old tree is then
/// removed), a plain rename otherwise.
fn swap_into_place(fresh: &Path, target: &Path) -> Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    if target.symlink_metadata().is_err() {
        std::fs::rename(fresh, target)?;
        return Ok(());
    }
    renameat_with(CWD, fresh, CWD, target, RenameFlags::EXCHANGE).map_err(std::io::Error::from)?;
    // `fresh` now holds the previous tree.
    std::fs::remove_dir_all(fresh)?;
    Ok(())
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
    mounts.push(read_only(host.state_dir.join("etc"), "/etc"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        path.symlink_metadata().unwrap().permissions().mode() & 0o7777
    }

    /// A host `/etc` with allowed entries of every kind and some that must not be copied.
    fn fake_etc(root: &Path) -> PathBuf {
        let etc = root.join("host-etc");
        std::fs::create_dir_all(etc.join("ssl/certs")).unwrap();
        std::fs::create_dir_all(etc.join("ssl/private")).unwrap();
        std::fs::write(etc.join("ssl/private/key.pem"), b"secret").unwrap();
        std::fs::write(etc.join("ssl/certs/ca.pem"), b"ca").unwrap();
        std::os::unix::fs::symlink("/usr/share/ca/x.crt", etc.join("ssl/certs/x.pem")).unwrap();
        std::fs::write(etc.join("nsswitch.conf"), b"hosts: files").unwrap();
        std::fs::set_permissions(etc.join("nsswitch.conf"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::write(etc.join("os-release"), b"ID=test").unwrap();
        std::fs::set_permissions(etc.join("os-release"), std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::write(etc.join("shadow"), b"root:x").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", etc.join("localtime")).unwrap();
        std::fs::write(etc.join("passwd"), b"root:x:0:0:host root").unwrap();
        etc
    }

    #[test]
    fn etc_is_a_copy_of_the_allow_list_plus_generated_files() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostConfig::new("/bin/true", dir.path().join("state"));
        std::fs::create_dir_all(&host.state_dir).unwrap();
        let source = fake_etc(dir.path());
        let etc = build_etc_from(&host, &source).unwrap();
        assert_eq!(etc, host.state_dir.join("etc"));
        assert_eq!(mode(&etc), 0o755);
        // Copied: world-readable files (as 0644), symlinks as they are (never followed), dirs.
        assert_eq!(std::fs::read(etc.join("ssl/certs/ca.pem")).unwrap(), b"ca");
        assert_eq!(mode(&etc.join("ssl/certs/ca.pem")), 0o644);
        assert_eq!(mode(&etc.join("os-release")), 0o644);
        assert_eq!(
            std::fs::read_link(etc.join("ssl/certs/x.pem")).unwrap(),
            Path::new("/usr/share/ca/x.crt")
        );
        assert_eq!(
            std::fs::read_link(etc.join("localtime")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert_eq!(mode(&etc.join("ssl")), 0o755);
        // Left out: entries not on the list, and a listed file other users cannot read.
        for absent in ["shadow", "ssl/private", "nsswitch.conf"] {
            assert!(
                etc.join(absent).symlink_metadata().is_err(),
                "{absent} was copied"
            );
        }
        // Generated files replace the host's.
        let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap();
        assert!(passwd.contains("sandbox:x:1000:1000"), "{passwd}");
        assert!(!passwd.contains("host root"));
        assert_eq!(std::fs::read(etc.join("resolv.conf")).unwrap(), b"");
    }

    #[test]
    fn a_rebuild_swaps_the_whole_tree_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostConfig::new("/bin/true", dir.path().join("state"));
        std::fs::create_dir_all(&host.state_dir).unwrap();
        let source = fake_etc(dir.path());
        let etc = build_etc_from(&host, &source).unwrap();
        std::fs::remove_file(source.join("os-release")).unwrap();
        std::fs::write(source.join("timezone"), b"UTC").unwrap();
        build_etc_from(&host, &source).unwrap();
        assert!(etc.join("os-release").symlink_metadata().is_err());
        assert_eq!(std::fs::read(etc.join("timezone")).unwrap(), b"UTC");
        let names: Vec<String> = std::fs::read_dir(&host.state_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["etc".to_owned()]);
    }

    #[test]
    fn sandboxes_get_one_etc_mount() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostConfig::new("/bin/true", dir.path().join("state"));
        let spec = SandboxSpec::new("t/c", dir.path().join("ws"));
        let cgroups = crate::cgroup::Cgroups::Unavailable("test".to_owned());
        let prepared = Prepared::new(&host, &cgroups, &spec).unwrap();
        let etc: Vec<Mount> = mounts(&host, &spec, &prepared)
            .into_iter()
            .filter(|m| matches!(m, Mount::ReadOnly { target, .. } if target.starts_with("/etc")))
            .collect();
        assert_eq!(etc, vec![read_only(host.state_dir.join("etc"), "/etc")]);
    }
}
