//! The sandbox's syscall filter.
//!
//! The supervisor (PID 1 inside every sandbox) calls [`install`] on itself before it starts any
//! thread or child, so the filter covers it and everything it ever spawns; a seccomp filter is
//! inherited across `fork` and `execve` and cannot be removed.
//!
//! # Threat
//!
//! Namespaces, bind mounts and dropped capabilities already keep sandboxed code away from the
//! host; this filter shrinks the *kernel* attack surface behind them. Sandboxed code is untrusted
//! and may be actively malicious, so the syscalls most often used to escape containers or to
//! exploit kernel bugs are refused: mount and namespace manipulation (`mount`, `unshare`,
//! `setns`, `clone` with namespace flags, the new mount API), tracing other processes (`ptrace`,
//! `process_vm_*`, `pidfd_getfd`), kernel modules and `kexec`, the keyring, `bpf`,
//! `perf_event_open`, `userfaultfd` (a classic tool to win kernel races), `io_uring` (a large,
//! fast-moving interface that seccomp cannot inspect), file handles (`open_by_handle_at`, the
//! "shocker" escape), clocks, swap, accounting, quotas, raw port I/O, and terminal injection
//! through `ioctl(TIOCSTI)` / `ioctl(TIOCLINUX)`.
//!
//! # Design
//!
//! The policy is a deny-list: everything not named here is allowed, so ordinary programs (shells,
//! Python, pip, git, compilers, loopback sockets) keep working. Denied calls fail with `EPERM`
//! rather than killing the caller, which lets well-behaved software degrade gracefully.
//!
//! The program is built in two parts and concatenated:
//!
//! 1. A hand-written preamble for what `seccompiler` cannot express with its single "match"
//!    action: `clone3` returns `ENOSYS` (its flags live in memory a filter cannot read, and libc
//!    then falls back to `clone`, whose flags *can* be checked), and on x86_64 every syscall
//!    number with the x32 bit set returns `ENOSYS` — otherwise `mount` could be reached as
//!    `0x40000000 + SYS_mount` and bypass a deny-list.
//! 2. The `seccompiler` filter with the `EPERM` rules. Its first instructions check the
//!    architecture and kill the process on a mismatch, which stops 32-bit compat syscalls
//!    (`int 0x80`, AArch32) whose numbers differ from the native ones — 32-bit programs therefore
//!    cannot run in a sandbox.
//!
//! Argument checks compare only the low 32 bits of `ioctl`'s request and of `personality`'s
//! argument, because the kernel itself ignores the high bits of those `unsigned int` parameters.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    sock_filter,
};

use crate::error::{Result, SandboxError};

/// Namespace flags refused in `clone`'s flags (argument 0 on x86_64 and aarch64).
const CLONE_NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWTIME", 0x0000_0080),
    ("CLONE_NEWNS", 0x0002_0000),
    ("CLONE_NEWCGROUP", 0x0200_0000),
    ("CLONE_NEWUTS", 0x0400_0000),
    ("CLONE_NEWIPC", 0x0800_0000),
    ("CLONE_NEWUSER", 0x1000_0000),
    ("CLONE_NEWPID", 0x2000_0000),
    ("CLONE_NEWNET", 0x4000_0000),
];

/// `ioctl` requests refused: pushing bytes into a terminal's input queue (`TIOCSTI`) and the
/// Linux console's multiplexer (`TIOCLINUX`). Same numbers on x86_64 and aarch64.
const DENIED_IOCTLS: &[u64] = &[0x5412, 0x541C];

/// `personality` values allowed (as Docker does): `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26` and the `0xffffffff` query. Everything else — notably
/// `ADDR_NO_RANDOMIZE` and `READ_IMPLIES_EXEC` — weakens exploit mitigations and is refused.
const ALLOWED_PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// On x86_64, syscall numbers with this bit set use the x32 ABI.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `open_tree_attr` (Linux 6.15) is not in `libc` yet; its number is the same on every arch.
const SYS_OPEN_TREE_ATTR: i64 = 467;

/// Unconditionally denied syscalls of the running architecture, with their numbers.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod table {
    use nix::libc;

    /// Present on x86_64 and aarch64 alike.
    const COMMON: &[(&str, i64)] = &[
        ("mount", libc::SYS_mount),
        ("umount2", libc::SYS_umount2),
        ("pivot_root", libc::SYS_pivot_root),
        ("chroot", libc::SYS_chroot),
        ("reboot", libc::SYS_reboot),
        ("kexec_load", libc::SYS_kexec_load),
        ("kexec_file_load", libc::SYS_kexec_file_load),
        ("init_module", libc::SYS_init_module),
        ("finit_module", libc::SYS_finit_module),
        ("delete_module", libc::SYS_delete_module),
        ("ptrace", libc::SYS_ptrace),
        ("process_vm_readv", libc::SYS_process_vm_readv),
        ("process_vm_writev", libc::SYS_process_vm_writev),
        ("pidfd_getfd", libc::SYS_pidfd_getfd),
        ("process_madvise", libc::SYS_process_madvise),
        ("kcmp", libc::SYS_kcmp),
        ("settimeofday", libc::SYS_settimeofday),
        ("clock_settime", libc::SYS_clock_settime),
        ("adjtimex", libc::SYS_adjtimex),
        ("clock_adjtime", libc::SYS_clock_adjtime),
        ("swapon", libc::SYS_swapon),
        ("swapoff", libc::SYS_swapoff),
        ("acct", libc::SYS_acct),
        ("unshare", libc::SYS_unshare),
        ("setns", libc::SYS_setns),
        ("keyctl", libc::SYS_keyctl),
        ("add_key", libc::SYS_add_key),
        ("request_key", libc::SYS_request_key),
        ("bpf", libc::SYS_bpf),
        ("perf_event_open", libc::SYS_perf_event_open),
        ("userfaultfd", libc::SYS_userfaultfd),
        ("open_by_handle_at", libc::SYS_open_by_handle_at),
        ("name_to_handle_at", libc::SYS_name_to_handle_at),
        ("io_uring_setup", libc::SYS_io_uring_setup),
        ("io_uring_enter", libc::SYS_io_uring_enter),
        ("io_uring_register", libc::SYS_io_uring_register),
        ("move_mount", libc::SYS_move_mount),
        ("fsopen", libc::SYS_fsopen),
        ("fsconfig", libc::SYS_fsconfig),
        ("fsmount", libc::SYS_fsmount),
        ("fspick", libc::SYS_fspick),
        ("open_tree", libc::SYS_open_tree),
        ("open_tree_attr", super::SYS_OPEN_TREE_ATTR),
        ("mount_setattr", libc::SYS_mount_setattr),
        ("quotactl", libc::SYS_quotactl),
        ("quotactl_fd", libc::SYS_quotactl_fd),
        ("lookup_dcookie", libc::SYS_lookup_dcookie),
        ("nfsservctl", libc::SYS_nfsservctl),
        ("vhangup", libc::SYS_vhangup),
        ("syslog", libc::SYS_syslog),
    ];

    /// Legacy and port-I/O syscalls that only x86_64 has. (`create_module` has no entry point
    /// on x86_64 and aarch64 any more; it always fails with `ENOSYS`.)
    #[cfg(target_arch = "x86_64")]
    const ARCH_ONLY: &[(&str, i64)] = &[
        ("iopl", libc::SYS_iopl),
        ("ioperm", libc::SYS_ioperm),
        ("_sysctl", libc::SYS__sysctl),
        ("uselib", libc::SYS_uselib),
        ("ustat", libc::SYS_ustat),
        ("sysfs", libc::SYS_sysfs),
    ];

    #[cfg(target_arch = "aarch64")]
    const ARCH_ONLY: &[(&str, i64)] = &[];

    /// `seccompiler`'s name for the running architecture.
    #[cfg(target_arch = "x86_64")]
    pub(super) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    pub(super) const TARGET: seccompiler::TargetArch = seccompiler::TargetArch::aarch64;

    /// `AUDIT_ARCH_*` value the kernel reports for native syscalls.
    #[cfg(target_arch = "x86_64")]
    pub(super) const AUDIT_ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    pub(super) const AUDIT_ARCH: u32 = 0xC000_00B7;

    /// Whether the x32 syscall range must be refused.
    pub(super) const HAS_X32: bool = cfg!(target_arch = "x86_64");

    pub(super) fn denied() -> impl Iterator<Item = (&'static str, i64)> {
        COMMON.iter().chain(ARCH_ONLY).copied()
    }
}

/// Names of the syscalls that are always denied with `EPERM` on this architecture (empty on
/// architectures without a filter). See [`restricted_syscalls`] for those denied depending on
/// their arguments.
pub fn denied_syscalls() -> &'static [&'static str] {
    static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(denied_names);
    NAMES.as_slice()
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn denied_names() -> Vec<&'static str> {
    table::denied().map(|(name, _)| name).collect()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn denied_names() -> Vec<&'static str> {
    Vec::new()
}

/// Syscalls that are denied only for some arguments, with what is denied (for docs and
/// `hangar sandbox check`).
pub fn restricted_syscalls() -> &'static [(&'static str, &'static str)] {
    &[
        ("clone", "any namespace flag (CLONE_NEW*) fails with EPERM"),
        ("clone3", "always fails with ENOSYS, so libc falls back to clone"),
        ("ioctl", "TIOCSTI and TIOCLINUX fail with EPERM"),
        (
            "personality",
            "anything but PER_LINUX, PER_LINUX32, UNAME26 and the query fails with EPERM",
        ),
    ]
}

/// Builds the filter for the running architecture (x86_64 and aarch64 supported; other
/// architectures get [`SandboxError::Unavailable`]).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub fn filter() -> Result<BpfProgram> {
    let compiled = seccompiler_part().map_err(|e| invalid_filter(&e))?;
    let mut program = preamble(table::AUDIT_ARCH, table::HAS_X32);
    program.extend(compiled);
    // BPF_MAXINSNS: the kernel refuses longer programs.
    if program.len() > 4096 {
        return Err(invalid_filter(&format!(
            "{} instructions, more than 4096",
            program.len()
        )));
    }
    Ok(program)
}

/// Builds the filter for the running architecture (x86_64 and aarch64 supported; other
/// architectures get [`SandboxError::Unavailable`]).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn filter() -> Result<BpfProgram> {
    Err(SandboxError::Unavailable {
        reason: format!(
            "no seccomp filter for the {} architecture",
            std::env::consts::ARCH
        ),
        fix: "run Hangar on x86_64 or aarch64".to_owned(),
    })
}

/// Sets `PR_SET_NO_NEW_PRIVS` and installs [`filter`] on every thread of the calling process.
/// Irreversible; call it before starting threads or children.
pub fn install() -> Result<()> {
    let program = filter()?;
    nix::sys::prctl::set_no_new_privs()
        .map_err(|e| SandboxError::Start(format!("setting PR_SET_NO_NEW_PRIVS failed: {e}")))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| install_error(&e))
}

fn install_error(error: &seccompiler::Error) -> SandboxError {
    let unsupported = matches!(
        error,
        seccompiler::Error::Seccomp(io) if matches!(io.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS))
    );
    if unsupported {
        SandboxError::Unavailable {
            reason: format!("the kernel refused the seccomp filter: {error}"),
            fix: "use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER".to_owned(),
        }
    } else {
        SandboxError::Start(format!("installing the seccomp filter failed: {error}"))
    }
}

fn invalid_filter(error: &dyn std::fmt::Display) -> SandboxError {
    SandboxError::Start(format!("building the seccomp filter failed: {error}"))
}

/// The `EPERM` part of the filter, compiled by `seccompiler`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn seccompiler_part() -> std::result::Result<BpfProgram, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        table::denied().map(|(_, number)| (number, Vec::new())).collect();
    rules.insert(libc::SYS_clone, clone_rules()?);
    rules.insert(libc::SYS_ioctl, ioctl_rules()?);
    rules.insert(libc::SYS_personality, personality_rules()?);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM.unsigned_abs()),
        table::TARGET,
    )?;
    BpfProgram::try_from(filter)
}

type RulesResult = std::result::Result<Vec<SeccompRule>, seccompiler::BackendError>;

/// One rule per namespace flag: `flags & FLAG == FLAG`. Rules are OR-ed, so any flag denies.
/// Only the low 32 bits count: legacy `clone` ignores the rest (`lower_32_bits(clone_flags)`).
fn clone_rules() -> RulesResult {
    CLONE_NAMESPACE_FLAGS
        .iter()
        .map(|&(_, flag)| {
            let condition =
                SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(flag), flag)?;
            SeccompRule::new(vec![condition])
        })
        .collect()
}

/// `ioctl(fd, request)` with a denied request; only the low 32 bits count, as in the kernel.
fn ioctl_rules() -> RulesResult {
    DENIED_IOCTLS
        .iter()
        .map(|&request| {
            let condition = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)?;
            SeccompRule::new(vec![condition])
        })
        .collect()
}

/// A single rule matching when the argument equals none of the allowed values.
fn personality_rules() -> RulesResult {
    let conditions = ALLOWED_PERSONALITIES
        .iter()
        .map(|&value| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, value))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(vec![SeccompRule::new(conditions)?])
}

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// The hand-written start of the program: for native syscalls, `clone3` (and on x86_64 the x32
/// range) return `ENOSYS`; everything else falls through to the `seccompiler` part, which
/// begins by reloading what it needs. Foreign-arch syscalls skip straight to that part, whose
/// architecture check kills the process.
///
/// ```text
///   ld  arch
///   jeq AUDIT_ARCH, 0, <seccompiler part>
///   ld  nr
///   jge 0x40000000, <enosys>, 0        (x86_64 only)
///   jeq SYS_clone3, <enosys>, <seccompiler part>
/// enosys:
///   ret ERRNO(ENOSYS)
/// ```
fn preamble(audit_arch: u32, x32: bool) -> BpfProgram {
    let mut checks = Vec::new();
    if x32 {
        checks.push((BPF_JGE_K, X32_SYSCALL_BIT));
    }
    checks.push((BPF_JEQ_K, syscall_u32(libc::SYS_clone3)));
    let n = u8::try_from(checks.len()).unwrap_or(u8::MAX);

    let mut program = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        // Skip `ld nr`, the checks and the return.
        jump(BPF_JEQ_K, audit_arch, 0, n + 2),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    for (i, (code, k)) in (0u8..).zip(checks) {
        let last = i + 1 == n;
        program.push(jump(code, k, n - i - 1, u8::from(last)));
    }
    program.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS.unsigned_abs()));
    program
}

fn syscall_u32(number: libc::c_long) -> u32 {
    u32::try_from(number).unwrap_or(u32::MAX)
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_KILL_PROCESS: u32 = 0x8000_0000;
    const RET_EPERM: u32 = SECCOMP_RET_ERRNO | 1;
    const RET_ENOSYS: u32 = SECCOMP_RET_ERRNO | 38;
    const PROBE_ENV: &str = "HANGAR_SECCOMP_PROBE";

    /// A tiny classic-BPF interpreter, enough for what `seccompiler` and [`preamble`] emit.
    fn run(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_ne_bytes());
        }
        let load = |offset: u32| {
            let at = offset as usize;
            u32::from_ne_bytes(data[at..at + 4].try_into().unwrap())
        };
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &program[pc];
            pc += 1;
            let taken = |cond: bool| if cond { ins.jt as usize } else { ins.jf as usize };
            match ins.code {
                0x20 => acc = load(ins.k),
                0x54 => acc &= ins.k,
                0x05 => pc += ins.k as usize,
                0x15 => pc += taken(acc == ins.k),
                0x25 => pc += taken(acc > ins.k),
                0x35 => pc += taken(acc >= ins.k),
                0x06 => return ins.k,
                other => panic!("unexpected BPF opcode {other:#x}"),
            }
        }
    }

    fn native(nr: libc::c_long, args: [u64; 6]) -> u32 {
        run(&filter().unwrap(), table::AUDIT_ARCH, syscall_u32(nr), args)
    }

    #[test]
    fn filter_compiles_on_this_arch() {
        let program = filter().unwrap();
        assert!(
            program.len() > 60 && program.len() < 4096,
            "{} instructions",
            program.len()
        );
    }

    #[test]
    fn denied_list_is_complete() {
        let names = denied_syscalls();
        let required = [
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "reboot",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "kcmp",
            "settimeofday",
            "clock_settime",
            "adjtimex",
            "clock_adjtime",
            "swapon",
            "swapoff",
            "acct",
            "unshare",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "open_by_handle_at",
            "name_to_handle_at",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "move_mount",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "open_tree",
            "mount_setattr",
            "quotactl",
            "lookup_dcookie",
            "vhangup",
            "syslog",
            "nfsservctl",
        ];
        for name in required {
            assert!(names.contains(&name), "{name} is not denied");
        }
        if cfg!(target_arch = "x86_64") {
            assert!(names.contains(&"iopl") && names.contains(&"ioperm"));
        }
        let restricted: Vec<_> = restricted_syscalls().iter().map(|(name, _)| *name).collect();
        assert_eq!(restricted, ["clone", "clone3", "ioctl", "personality"]);
    }

    #[test]
    fn every_denied_syscall_returns_eperm() {
        for (name, number) in table::denied() {
            assert_eq!(native(number, [0; 6]), RET_EPERM, "{name}");
        }
    }

    #[test]
    fn ordinary_syscalls_are_allowed() {
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_wait4,
            libc::SYS_seccomp,
            libc::SYS_prctl,
        ] {
            assert_eq!(native(nr, [0; 6]), RET_ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn clone_with_namespace_flags_is_denied() {
        const SIGCHLD: u64 = 17;
        for &(name, flag) in CLONE_NAMESPACE_FLAGS {
            assert_eq!(
                native(libc::SYS_clone, [flag | SIGCHLD, 0, 0, 0, 0, 0]),
                RET_EPERM,
                "{name}"
            );
        }
        // glibc's pthread_create fallback and fork.
        let thread = 0x003d_0f00;
        assert_eq!(native(libc::SYS_clone, [thread, 1, 2, 3, 4, 5]), RET_ALLOW);
        assert_eq!(
            native(libc::SYS_clone, [0x0120_0000 | SIGCHLD, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn clone3_returns_enosys() {
        assert_eq!(native(libc::SYS_clone3, [0; 6]), RET_ENOSYS);
    }

    #[test]
    fn terminal_injection_ioctls_are_denied() {
        assert_eq!(native(libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0]), RET_EPERM);
        assert_eq!(native(libc::SYS_ioctl, [0, 0x541C, 0, 0, 0, 0]), RET_EPERM);
        // The kernel ignores the high half of the request, so must the filter.
        assert_eq!(
            native(libc::SYS_ioctl, [0, (1 << 32) | 0x5412, 0, 0, 0, 0]),
            RET_EPERM
        );
        // TCGETS and FIONREAD stay usable.
        assert_eq!(native(libc::SYS_ioctl, [0, 0x5401, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(native(libc::SYS_ioctl, [0, 0x541B, 0, 0, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn personality_allows_only_harmless_values() {
        for value in [0, 8, 0x2_0000, 0xffff_ffff, 0xffff_ffff_ffff_ffff] {
            assert_eq!(
                native(libc::SYS_personality, [value, 0, 0, 0, 0, 0]),
                RET_ALLOW,
                "{value:#x}"
            );
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC.
        for value in [0x0004_0000, 0x0040_0000] {
            assert_eq!(
                native(libc::SYS_personality, [value, 0, 0, 0, 0, 0]),
                RET_EPERM,
                "{value:#x}"
            );
        }
    }

    #[test]
    fn foreign_architectures_are_killed() {
        // AUDIT_ARCH_I386 and AUDIT_ARCH_ARM.
        for arch in [0x4000_0003, 0x4000_0028] {
            assert_eq!(run(&filter().unwrap(), arch, 0, [0; 6]), RET_KILL_PROCESS);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_syscalls_return_enosys() {
        let mount = X32_SYSCALL_BIT | syscall_u32(libc::SYS_mount);
        assert_eq!(
            run(&filter().unwrap(), table::AUDIT_ARCH, mount, [0; 6]),
            RET_ENOSYS
        );
        assert_eq!(
            run(&filter().unwrap(), table::AUDIT_ARCH, X32_SYSCALL_BIT, [0; 6]),
            RET_ENOSYS
        );
    }

    /// Installs the filter for real in a fresh copy of this test binary (a filter can never be
    /// removed, so it must not touch the process running the other tests).
    #[test]
    fn installed_filter_denies_escapes_and_keeps_normal_work() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp::tests::child_probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "probe failed: {}\n{stdout}\n{stderr}",
            output.status
        );
        assert!(
            stdout.contains("seccomp probe: all checks passed"),
            "probe did not run:\n{stdout}"
        );
    }

    /// Runs only as the child of the test above.
    #[test]
    fn child_probe() {
        if std::env::var_os(PROBE_ENV).is_none() {
            return;
        }
        install().unwrap();
        probe::denied_by_nix();
        probe::normal_work_still_runs();
        probe::python_syscalls();
        probe::bwrap_cannot_create_namespaces();
        println!("seccomp probe: all checks passed");
    }

    mod probe {
        use std::io::{Read, Write};
        use std::process::Command;

        use nix::errno::Errno;
        use nix::libc;
        use nix::sched::CloneFlags;

        use crate::check::find_program;

        pub(super) fn denied_by_nix() {
            assert!(nix::sys::prctl::get_no_new_privs().unwrap());
            assert_eq!(nix::sched::unshare(CloneFlags::CLONE_NEWUSER), Err(Errno::EPERM));
            assert_eq!(nix::sched::unshare(CloneFlags::CLONE_NEWNS), Err(Errno::EPERM));
            // Unfiltered, an unknown file system type would fail with ENODEV and a missing
            // mount point with ENOENT; EPERM shows the filter answered first.
            let mounted = nix::mount::mount(
                Some("none"),
                "/",
                Some("hangar-no-such-fs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
            assert_eq!(mounted, Err(Errno::EPERM));
            let unmounted = nix::mount::umount2("/hangar-no-such-dir", nix::mount::MntFlags::MNT_DETACH);
            assert_eq!(unmounted, Err(Errno::EPERM));
            assert_eq!(nix::unistd::chroot("/"), Err(Errno::EPERM));
        }

        pub(super) fn normal_work_still_runs() {
            assert!(Command::new("/bin/true").status().unwrap().success());
            let piped = Command::new("/bin/sh")
                .args(["-c", "echo hangar | cat | tr a-z A-Z"])
                .output();
            assert_eq!(piped.unwrap().stdout, b"HANGAR\n");
            let joined = std::thread::spawn(|| 40 + 2).join().unwrap();
            assert_eq!(joined, 42);
            loopback_tcp();
            if let Some(git) = find_program("git") {
                assert!(Command::new(git).arg("--version").status().unwrap().success());
            }
        }

        fn loopback_tcp() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).unwrap();
                stream.write_all(&buf).unwrap();
            });
            let mut client = std::net::TcpStream::connect(address).unwrap();
            client.write_all(b"ping").unwrap();
            let mut echo = [0u8; 4];
            client.read_exact(&mut echo).unwrap();
            assert_eq!(&echo, b"ping");
            server.join().unwrap();
        }

        /// Syscalls without a safe Rust wrapper, made through Python's `ctypes`; also proves
        /// that Python with threads and subprocesses works under the filter.
        pub(super) fn python_syscalls() {
            let Some(python) = find_program("python3") else {
                println!("python3 not found; skipping the ctypes probe");
                return;
            };
            let output = Command::new(python)
                .args(["-c", &python_script()])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "python probe failed:\n{stdout}\n{stderr}"
            );
            assert!(stdout.contains("python probe ok"), "{stdout}\n{stderr}");
        }

        fn python_script() -> String {
            let checks = [
                (
                    "ptrace_attach",
                    libc::SYS_ptrace,
                    "16, sleeper.pid, 0, 0",
                    libc::EPERM,
                ),
                ("keyctl", libc::SYS_keyctl, "0, -3, 0", libc::EPERM),
                ("add_key", libc::SYS_add_key, "0, 0, 0, 0, -3", libc::EPERM),
                ("bpf", libc::SYS_bpf, "0, 0, 0", libc::EPERM),
                (
                    "perf_event_open",
                    libc::SYS_perf_event_open,
                    "0, 0, -1, -1, 0",
                    libc::EPERM,
                ),
                ("userfaultfd", libc::SYS_userfaultfd, "0", libc::EPERM),
                ("io_uring_setup", libc::SYS_io_uring_setup, "1, 0", libc::EPERM),
                (
                    "kexec_load",
                    libc::SYS_kexec_load,
                    "0, 0, 0, 0xdead0000",
                    libc::EPERM,
                ),
                ("setns", libc::SYS_setns, "-1, 0", libc::EPERM),
                (
                    "open_by_handle_at",
                    libc::SYS_open_by_handle_at,
                    "-1, 0, 0",
                    libc::EPERM,
                ),
                ("fsopen", libc::SYS_fsopen, "0, 0", libc::EPERM),
                ("syslog", libc::SYS_syslog, "10, 0, 0", libc::EPERM),
                (
                    "personality_aslr_off",
                    libc::SYS_personality,
                    "0x0040000",
                    libc::EPERM,
                ),
                ("ioctl_tiocsti", libc::SYS_ioctl, "-1, 0x5412, 0", libc::EPERM),
                (
                    "ioctl_tcgets_allowed",
                    libc::SYS_ioctl,
                    "-1, 0x5401, 0",
                    libc::EBADF,
                ),
                ("clone3", libc::SYS_clone3, "0, 0", libc::ENOSYS),
                (
                    "clone_newuser",
                    libc::SYS_clone,
                    "0x10000000 | 17, 0, 0, 0, 0",
                    libc::EPERM,
                ),
                (
                    "clone_newnet",
                    libc::SYS_clone,
                    "0x40000000 | 17, 0, 0, 0, 0",
                    libc::EPERM,
                ),
            ];
            let mut lines = Vec::new();
            for (name, nr, args, errno) in checks {
                lines.push(format!("expect({name:?}, {nr}, ({args},), {errno})"));
            }
            format!("{PYTHON_PRELUDE}\n{}\n{PYTHON_EPILOGUE}", lines.join("\n"))
        }

        const PYTHON_PRELUDE: &str = r#"
import ctypes, os, subprocess, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
sleeper = subprocess.Popen(["sleep", "30"])
failures = []
def expect(name, nr, args, errno):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    e = ctypes.get_errno()
    if r == 0 and name.startswith("clone"):
        os._exit(0)  # a child the filter should have refused: leave at once
    if r != -1 or e != errno:
        failures.append(f"{name}: returned {r}, errno {e}, expected errno {errno}")
"#;

        const PYTHON_EPILOGUE: &str = r#"
sleeper.kill(); sleeper.wait()
r = libc.personality(ctypes.c_ulong(0xffffffff))
if r < 0:
    failures.append(f"personality query failed: {r}")
results = []
threads = [threading.Thread(target=lambda: results.append(subprocess.run(["/bin/true"]).returncode)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
if results != [0, 0, 0, 0]:
    failures.append(f"threads and subprocesses: {results}")
if failures:
    print("\n".join(failures)); sys.exit(1)
print("python probe ok")
"#;

        /// bubblewrap creates its namespaces with `clone(CLONE_NEW*)`; it must fail now.
        pub(super) fn bwrap_cannot_create_namespaces() {
            let Some(bwrap) = find_program("bwrap") else {
                println!("bwrap not found; skipping the namespace probe");
                return;
            };
            let output = Command::new(bwrap)
                .args([
                    "--unshare-user",
                    "--unshare-net",
                    "--ro-bind",
                    "/",
                    "/",
                    "/bin/true",
                ])
                .output()
                .unwrap();
            assert!(
                !output.status.success(),
                "bwrap created namespaces under the filter"
            );
        }
    }
}
