//! What the host supports: the checks behind `hangar sandbox check` and `/health`.
//!
//! Sandboxing depends on the host: bubblewrap and runc must be installed, the kernel must allow
//! user namespaces and seccomp, and resource limits need a writable cgroup hierarchy. When any
//! of that is missing, commands must never silently run with weaker isolation; instead the
//! operator needs one place that says what is missing and how to fix it. [`report`] gathers
//! every check into a [`HostReport`]; each [`CheckItem`] carries a human-readable detail and,
//! when it fails, a concrete fix.
//!
//! The checks only observe: they run `--version`, run one throw-away bubblewrap sandbox and read
//! `/proc` and `/sys`. Nothing is created or modified (cgroup writability is tested with
//! `access(W_OK)`, not by creating a group). [`report`] blocks for up to a few seconds (the
//! bubblewrap probe has a 5 s timeout), so async callers should use `spawn_blocking`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    /// Stable identifier (`bubblewrap`, `bubblewrap_works`, `runc`, `user_namespaces`,
    /// `cgroups`, `seccomp`, `landlock`, `cgroup_v1_memory_swap`).
    pub name: &'static str,
    pub ok: bool,
    /// What was found, e.g. `0.8.0 at /usr/bin/bwrap`.
    pub detail: String,
    /// How to fix a failed check; `None` when `ok`.
    pub fix: Option<String>,
}

/// Everything [`report`] found out about the host.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub items: Vec<CheckItem>,
    pub cgroup: CgroupVersion,
}

/// The cgroup hierarchy mounted at `/sys/fs/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies (including "hybrid" hosts that also mount an empty
    /// unified hierarchy at `/sys/fs/cgroup/unified`).
    V1,
    /// The unified hierarchy.
    V2,
    /// No usable cgroup hierarchy.
    None,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `statfs` magic of a cgroup v1 hierarchy (`CGROUP_SUPER_MAGIC`).
const CGROUP_SUPER_MAGIC: i128 = 0x0027_e0eb;
/// Wall-time limit of every program the checks run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Directories searched after `PATH`; servers often run with a minimal `PATH`.
const EXTRA_PATH: &[&str] = &["/usr/bin", "/usr/sbin", "/bin", "/sbin"];
/// Longest detail kept from a program's output.
const MAX_DETAIL: usize = 400;

/// [`CgroupVersion::V2`] if `/sys/fs/cgroup/cgroup.controllers` exists (unified hierarchy);
/// [`CgroupVersion::V1`] if `/sys/fs/cgroup/memory` or `/sys/fs/cgroup/pids` is a v1 hierarchy
/// mount; otherwise [`CgroupVersion::None`].
pub fn cgroup_version() -> CgroupVersion {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").is_file() {
        CgroupVersion::V2
    } else if ["memory", "pids"]
        .iter()
        .any(|c| is_cgroup_v1_mount(&root.join(c)))
    {
        CgroupVersion::V1
    } else {
        CgroupVersion::None
    }
}

fn is_cgroup_v1_mount(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|fs| i128::from(fs.f_type) == CGROUP_SUPER_MAGIC)
}

/// Finds an executable called `name` in `PATH`, then in `/usr/bin`, `/usr/sbin`, `/bin` and
/// `/sbin`. Names containing `/` are not searched.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_PATH.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs every check. Blocks for up to a few seconds.
pub fn report() -> HostReport {
    let cgroup = cgroup_version();
    let items = vec![
        check_bubblewrap(),
        check_bubblewrap_works(),
        check_runc(),
        check_user_namespaces(),
        check_cgroups(cgroup),
        check_seccomp(),
        check_landlock(),
        check_memory_swap(cgroup),
    ];
    HostReport { items, cgroup }
}

impl HostReport {
    /// The item called `name`.
    pub fn item(&self, name: &str) -> Option<&CheckItem> {
        self.items.iter().find(|item| item.name == name)
    }

    /// A human-readable table, one line per item:
    /// `ok      bubblewrap             0.8.0 at /usr/bin/bwrap` or
    /// `MISSING runc                   not found (fix: apt-get install -y runc)`.
    pub fn render(&self) -> String {
        let width = self.items.iter().map(|item| item.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for item in &self.items {
            let status = if item.ok { "ok" } else { "MISSING" };
            let _ = write!(out, "{status:<7} {:<width$}  {}", item.name, item.detail);
            if let (false, Some(fix)) = (item.ok, &item.fix) {
                let _ = write!(out, " (fix: {fix})");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "cgroup hierarchy: {}", cgroup_label(self.cgroup));
        out
    }
}

fn cgroup_label(version: CgroupVersion) -> &'static str {
    match version {
        CgroupVersion::V1 => "v1",
        CgroupVersion::V2 => "v2",
        CgroupVersion::None => "none",
    }
}

fn passed(name: &'static str, detail: impl Into<String>) -> CheckItem {
    CheckItem {
        name,
        ok: true,
        detail: detail.into(),
        fix: None,
    }
}

fn failed(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> CheckItem {
    CheckItem {
        name,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// `ok` when `ok` is true, otherwise a failure with `fix`.
fn item(name: &'static str, ok: bool, detail: String, fix: &str) -> CheckItem {
    if ok {
        passed(name, detail)
    } else {
        failed(name, detail, fix)
    }
}

fn check_bubblewrap() -> CheckItem {
    const FIX: &str = "apt-get install -y bubblewrap";
    check_version("bubblewrap", "bwrap", FIX)
}

fn check_runc() -> CheckItem {
    const FIX: &str = "apt-get install -y runc";
    check_version("runc", "runc", FIX)
}

/// Finds `program` and reports the version printed by `program --version`.
fn check_version(name: &'static str, program: &str, fix: &str) -> CheckItem {
    let Some(path) = find_program(program) else {
        return failed(
            name,
            format!("`{program}` not found in PATH or /usr/bin, /usr/sbin, /bin, /sbin"),
            fix,
        );
    };
    match run_with_timeout(Command::new(&path).arg("--version"), PROBE_TIMEOUT) {
        Ok(out) if out.success => {
            let version = parse_version(&out.stdout).unwrap_or("unknown version");
            passed(name, format!("{version} at {}", path.display()))
        }
        Ok(out) => failed(
            name,
            format!("`{} --version` failed: {}", path.display(), out.summary()),
            fix,
        ),
        Err(e) => failed(name, format!("could not run {}: {e}", path.display()), fix),
    }
}

/// The first word starting with a digit on the first line: `bubblewrap 0.8.0` → `0.8.0`,
/// `runc version 1.1.5+ds1` → `1.1.5+ds1`.
fn parse_version(output: &str) -> Option<&str> {
    output
        .lines()
        .next()?
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
}

fn check_bubblewrap_works() -> CheckItem {
    const NAME: &str = "bubblewrap_works";
    const FIX: &str = "allow user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 and \
                       sysctl -w user.max_user_namespaces=15000 (on Ubuntu also \
                       sysctl -w kernel.apparmor_restrict_unprivileged_userns=0); inside a container, \
                       run it with seccomp=unconfined or --privileged";
    let Some(bwrap) = find_program("bwrap") else {
        return failed(
            NAME,
            "bubblewrap is not installed",
            "apt-get install -y bubblewrap",
        );
    };
    let mut command = Command::new(&bwrap);
    command.args([
        "--unshare-all",
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
    ]);
    command.args(["--dev", "/dev", "--", "/bin/true"]);
    match run_with_timeout(&mut command, PROBE_TIMEOUT) {
        Ok(out) if out.success => passed(NAME, "a test sandbox with all namespaces ran /bin/true"),
        Ok(out) => failed(NAME, format!("a test sandbox failed: {}", out.summary()), FIX),
        Err(e) => failed(NAME, format!("could not run a test sandbox: {e}"), FIX),
    }
}

fn check_user_namespaces() -> CheckItem {
    const NAME: &str = "user_namespaces";
    let max = read_trimmed("/proc/sys/user/max_user_namespaces");
    let max_count = max.as_deref().and_then(|v| v.parse::<u64>().ok());
    // Debian/Ubuntu patch; absent elsewhere, where unprivileged user namespaces are allowed.
    let clone = read_trimmed("/proc/sys/kernel/unprivileged_userns_clone");
    // Ubuntu 23.10+ restricts them through AppArmor.
    let apparmor = read_trimmed("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let max_ok = max_count.is_some_and(|n| n > 0);
    let clone_ok = clone.as_deref().is_none_or(|v| v == "1");
    let apparmor_ok = apparmor.as_deref().is_none_or(|v| v == "0");
    let mut detail = format!(
        "user.max_user_namespaces = {}",
        max.as_deref().unwrap_or("unreadable")
    );
    if let Some(value) = &clone {
        let _ = write!(detail, ", kernel.unprivileged_userns_clone = {value}");
    }
    if let Some(value) = &apparmor {
        let _ = write!(detail, ", kernel.apparmor_restrict_unprivileged_userns = {value}");
    }
    let fix = user_namespace_fix(max_ok, clone_ok);
    item(NAME, max_ok && clone_ok && apparmor_ok, detail, &fix)
}

fn user_namespace_fix(max_ok: bool, clone_ok: bool) -> String {
    if !max_ok {
        "sysctl -w user.max_user_namespaces=15000".to_owned()
    } else if !clone_ok {
        "sysctl -w kernel.unprivileged_userns_clone=1".to_owned()
    } else {
        "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or install an AppArmor profile \
         that allows userns for bwrap"
            .to_owned()
    }
}

fn check_cgroups(version: CgroupVersion) -> CheckItem {
    const NAME: &str = "cgroups";
    const FIX: &str = "run Hangar as root, or delegate a cgroup subtree to its user (systemd: \
                       Delegate=yes in its unit)";
    const FALLBACK: &str = "memory, process and CPU limits fall back to rlimits";
    let root = Path::new(CGROUP_ROOT);
    let (label, writable_dirs) = match version {
        CgroupVersion::None => {
            return failed(
                NAME,
                format!("no cgroup hierarchy at {CGROUP_ROOT}; {FALLBACK}"),
                FIX,
            );
        }
        CgroupVersion::V2 => ("v2", vec![root.to_path_buf()]),
        CgroupVersion::V1 => (
            "v1",
            ["memory", "pids", "cpu"].iter().map(|c| root.join(c)).collect(),
        ),
    };
    let denied: Vec<String> = writable_dirs
        .iter()
        .filter(|dir| rustix::fs::access(dir.as_path(), rustix::fs::Access::WRITE_OK).is_err())
        .map(|dir| dir.display().to_string())
        .collect();
    if denied.is_empty() {
        let shown: Vec<String> = writable_dirs.iter().map(|d| d.display().to_string()).collect();
        passed(NAME, format!("{label}, writable: {}", shown.join(", ")))
    } else {
        failed(
            NAME,
            format!("{label}, not writable: {}; {FALLBACK}", denied.join(", ")),
            FIX,
        )
    }
}

fn check_seccomp() -> CheckItem {
    const NAME: &str = "seccomp";
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mode = status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .map(str::trim);
    let Some(mode) = mode else {
        return failed(
            NAME,
            "the kernel does not report seccomp support (no Seccomp: line in /proc/self/status)",
            "use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER",
        );
    };
    match crate::seccomp::filter() {
        Ok(program) => passed(
            NAME,
            format!(
                "supported (this process: mode {mode}); filter of {} instructions denies {} syscalls",
                program.len(),
                crate::seccomp::denied_syscalls().len()
            ),
        ),
        Err(e) => failed(
            NAME,
            format!("the sandbox filter cannot be built: {e}"),
            "run on x86_64 or aarch64",
        ),
    }
}

fn check_landlock() -> CheckItem {
    use landlock::{LandlockStatus, RestrictSelf};
    const NAME: &str = "landlock";
    const FIX: &str = "optional: boot a kernel with CONFIG_SECURITY_LANDLOCK and landlock in its lsm= list";
    // With no flags and no_new_privs off, apply() only queries the kernel's Landlock ABI.
    let status = RestrictSelf::default()
        .no_new_privs(false)
        .apply()
        .map(|s| s.landlock);
    match status {
        Ok(LandlockStatus::Available {
            effective_abi,
            kernel_abi,
        }) => {
            let newer = kernel_abi
                .map(|v| format!(" (kernel ABI {v})"))
                .unwrap_or_default();
            passed(NAME, format!("ABI v{effective_abi}{newer}"))
        }
        Ok(LandlockStatus::NotEnabled) => failed(NAME, "built into the kernel but not enabled", FIX),
        Ok(LandlockStatus::NotImplemented) => failed(NAME, "not built into the kernel", FIX),
        Err(e) => failed(NAME, format!("cannot query Landlock: {e}"), FIX),
    }
}

fn check_memory_swap(version: CgroupVersion) -> CheckItem {
    const NAME: &str = "cgroup_v1_memory_swap";
    match version {
        CgroupVersion::V1 => {
            let present = Path::new(CGROUP_ROOT)
                .join("memory/memory.memsw.limit_in_bytes")
                .exists();
            let detail = if present {
                "memory.memsw.limit_in_bytes present: swap can be capped".to_owned()
            } else {
                "memory.memsw.limit_in_bytes missing: sandboxes may swap beyond their memory limit".to_owned()
            };
            item(
                NAME,
                present,
                detail,
                "optional: add swapaccount=1 to the kernel command line",
            )
        }
        CgroupVersion::V2 => passed(NAME, "not applicable: cgroup v2 caps swap with memory.swap.max"),
        CgroupVersion::None => passed(NAME, "not applicable: no cgroup hierarchy"),
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// What a probe program did.
struct ProbeOutput {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl ProbeOutput {
    /// Exit status and stderr (or stdout), on one line, shortened.
    fn summary(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut summary = format!("{}: {one_line}", self.status);
        if summary.len() > MAX_DETAIL {
            let cut = (0..=MAX_DETAIL)
                .rev()
                .find(|&i| summary.is_char_boundary(i))
                .unwrap_or(0);
            summary.truncate(cut);
            summary.push('…');
        }
        summary
    }
}

/// Runs `command` with no stdin, capturing output, and kills it after `timeout`.
fn run_with_timeout(command: &mut Command, timeout: Duration) -> std::io::Result<ProbeOutput> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Grandchildren may hold the pipes open; do not wait for them long.
    let grace = Duration::from_secs(1);
    Ok(ProbeOutput {
        success: status.success(),
        status: status.to_string(),
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
    })
}

/// Reads a pipe to its end (at most 64 KiB) on a helper thread.
fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.take(64 * 1024).read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 8] = [
        "bubblewrap",
        "bubblewrap_works",
        "runc",
        "user_namespaces",
        "cgroups",
        "seccomp",
        "landlock",
        "cgroup_v1_memory_swap",
    ];

    #[test]
    fn report_has_every_item_and_renders_them() {
        let report = report();
        let names: Vec<_> = report.items.iter().map(|item| item.name).collect();
        assert_eq!(names, NAMES);
        let rendered = report.render();
        for name in NAMES {
            assert!(rendered.contains(name), "{name} missing from\n{rendered}");
            let item = report.item(name).unwrap();
            assert!(!item.detail.is_empty(), "{name} has no detail");
            assert_eq!(item.fix.is_some(), !item.ok, "{name}: a fix exactly when failing");
        }
        assert!(report.item("nope").is_none());
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["cgroup"].is_string());
        println!("{rendered}");
    }

    #[test]
    fn installed_tools_are_found_and_versioned() {
        let report = report();
        if find_program("bwrap").is_some() {
            let bwrap = report.item("bubblewrap").unwrap();
            assert!(bwrap.ok && bwrap.detail.contains(" at /"), "{bwrap:?}");
        }
        if find_program("runc").is_some() {
            assert!(report.item("runc").unwrap().ok);
        }
        assert!(report.item("seccomp").unwrap().ok);
    }

    #[test]
    fn render_shows_fixes_of_failed_items() {
        let report = HostReport {
            items: vec![
                passed("bubblewrap", "0.8.0 at /usr/bin/bwrap"),
                failed("runc", "`runc` not found", "apt-get install -y runc"),
            ],
            cgroup: CgroupVersion::V1,
        };
        let rendered = report.render();
        let lines: Vec<_> = rendered.lines().collect();
        assert_eq!(lines[0], "ok      bubblewrap  0.8.0 at /usr/bin/bwrap");
        assert_eq!(
            lines[1],
            "MISSING runc        `runc` not found (fix: apt-get install -y runc)"
        );
        assert_eq!(lines[2], "cgroup hierarchy: v1");
    }

    /// Decides the version from /proc/self/mountinfo instead of statfs.
    fn version_from_mountinfo() -> CgroupVersion {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut version = CgroupVersion::None;
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let mount_point = fields[4];
            let dash = fields.iter().position(|f| *f == "-").unwrap();
            let fs_type = fields[dash + 1];
            let options = fields.get(dash + 3).copied().unwrap_or("");
            if mount_point == CGROUP_ROOT && fs_type == "cgroup2" {
                return CgroupVersion::V2;
            }
            let v1 = fs_type == "cgroup" && mount_point.starts_with("/sys/fs/cgroup/");
            if v1 && options.split(',').any(|o| o == "memory" || o == "pids") {
                version = CgroupVersion::V1;
            }
        }
        version
    }

    #[test]
    fn cgroup_version_matches_the_mounts() {
        assert_eq!(cgroup_version(), version_from_mountinfo());
    }

    #[test]
    fn finds_programs() {
        assert!(find_program("sh").is_some());
        assert!(find_program("hangar-no-such-program").is_none());
        assert!(find_program("/bin/sh").is_none());
        assert!(find_program("").is_none());
    }

    #[test]
    fn parses_versions() {
        assert_eq!(parse_version("bubblewrap 0.8.0\n"), Some("0.8.0"));
        assert_eq!(
            parse_version("runc version 1.1.5+ds1\ncommit: x\nspec: 1.0.2"),
            Some("1.1.5+ds1")
        );
        assert_eq!(parse_version("no digits"), None);
    }

    #[test]
    fn timeouts_kill_the_probe() {
        let started = Instant::now();
        let result = run_with_timeout(Command::new("sleep").arg("10"), Duration::from_millis(200));
        assert_eq!(result.err().map(|e| e.kind()), Some(std::io::ErrorKind::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
