//! The escape suite: each attack, its expected outcome, and a healthy sandbox (and host)
//! afterwards.

use std::time::{Duration, Instant};

use hangar_sandbox::hostfs::{RelPath, WorkspaceDir};

use super::{assert_healthy, sh, sh_timeout};

sandboxed!(rm_rf_root_only_empties_what_the_sandbox_owns, |rig| {
    let sb = rig.sandbox("rmrf").await;
    let outside = rig.dir.path().join("outside.txt");
    std::fs::write(&outside, "host data").unwrap();
    std::fs::write(rig.workspace("rmrf").join("mine.txt"), "x").unwrap();
    let out = sh(&*sb, "rm -rf --no-preserve-root / 2>/dev/null; echo done").await;
    assert_eq!(out.stdout_text(), "done\n");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host data");
    assert!(std::path::Path::new("/usr/bin/bash").exists());
    assert!(
        !rig.workspace("rmrf").join("mine.txt").exists(),
        "the workspace is the sandbox's to delete"
    );
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(disk_fill_is_stopped_at_the_quota, |rig| {
    let sb = rig.sandbox("diskfill").await;
    // One big file: RLIMIT_FSIZE stops it at the quota (32 MiB) with SIGXFSZ.
    let out = sh(
        &*sb,
        "dd if=/dev/zero of=/workspace/big bs=1M count=100; echo rc=$?",
    )
    .await;
    assert!(out.stderr_text().contains("File size limit exceeded"), "{out:?}");
    assert!(out.stdout_text().contains("rc=153"), "{out:?}");
    let size = std::fs::metadata(rig.workspace("diskfill").join("big"))
        .unwrap()
        .len();
    assert!(size <= 32 * 1024 * 1024, "{size}");
    // Many files written over time: the quota watcher stops the command.
    let started = Instant::now();
    let script = "for i in $(seq 1 400); do head -c 262144 /dev/zero > /workspace/f$i; sleep 0.01; done; echo finished";
    let out = sh(&*sb, script).await;
    assert!(!out.stdout_text().contains("finished"), "{out:?}");
    assert!(
        out.exit
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("workspace quota exceeded"),
        "{out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // /tmp is a tmpfs of its own size.
    let out = sh(&*sb, "head -c 64M /dev/zero > /tmp/fill; echo rc=$?").await;
    assert!(out.stderr_text().contains("No space left"), "{out:?}");
    // Deleting brings the workspace back under its quota.
    let out = sh(&*sb, "rm -f /workspace/f* /workspace/big; echo cleaned").await;
    assert_eq!(out.stdout_text(), "cleaned\n");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let out = sh(&*sb, "echo ok").await;
    assert_eq!(out.exit.message, None, "{out:?}");
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(fork_bomb_hits_the_process_limit, |rig| {
    let sb = rig.sandbox("forkbomb").await;
    let out = sh_timeout(
        &*sb,
        "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived",
        Some(Duration::from_secs(10)),
    )
    .await;
    // Whatever the bomb managed, the limit held and the command was reaped.
    assert!(out.exit.timed_out || out.exit.code.is_some(), "{out:?}");
    sh(&*sb, "pkill -9 -f bomb 2>/dev/null; true").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(memory_bomb_is_killed_by_the_memory_limit, |rig| {
    let sb = rig.sandbox("membomb").await;
    let out = sh(
        &*sb,
        "python3 -c 'a = bytearray(1024 * 1024 * 1024); print(\"allocated\")'",
    )
    .await;
    assert!(!out.stdout_text().contains("allocated"), "{out:?}");
    assert!(out.exit.code != Some(0), "{out:?}");
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(cpu_spin_is_killed_at_the_timeout, |rig| {
    let sb = rig.sandbox("spin").await;
    let started = Instant::now();
    let out = sh_timeout(&*sb, "while :; do :; done", Some(Duration::from_secs(1))).await;
    assert!(out.exit.timed_out, "{out:?}");
    assert_eq!(out.exit.signal, Some(9));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(host_files_are_out_of_sight, |rig| {
    let other = rig.sandbox("victim").await;
    std::fs::write(rig.workspace("victim").join("secret.txt"), "tenant B data").unwrap();
    let sb = rig.sandbox("reader").await;
    let state = rig.dir.path().display().to_string();
    let victim = rig.workspace("victim").display().to_string();
    let script = format!(
        "cat /etc/shadow; ls {state}; cat {victim}/secret.txt; cat /proc/1/environ; \
         ls /root; ls /sys/fs/cgroup; cat /etc/passwd | grep -c x"
    );
    let out = sh(&*sb, &script).await;
    let stdout = out.stdout_text();
    assert!(
        !stdout.contains("tenant B data") && !stdout.contains("root:$"),
        "{out:?}"
    );
    let stderr = out.stderr_text();
    for expected in [
        "/etc/shadow: No such file",
        "cannot access",
        "secret.txt: No such file",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in {stderr}");
    }
    // PID 1 (the supervisor) is not dumpable, so its environment cannot be read; it is clean anyway.
    assert!(
        stderr.contains("/proc/1/environ: Permission denied") || !stdout.contains("PATH=/root"),
        "{out:?}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("3"),
        "only the generated passwd is visible: {stdout}"
    );
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
    other.destroy().await.unwrap();
});

sandboxed!(writes_outside_the_workspace_fail, |rig| {
    let sb = rig.sandbox("writes").await;
    for target in [
        "/usr/bin/evil",
        "/etc/evil",
        "/.hangar/evil",
        "/evil",
        "/proc/sys/kernel/hostname",
        "/proc/sysrq-trigger",
    ] {
        let out = sh(&*sb, &format!("echo x > {target} && echo WROTE")).await;
        assert!(!out.stdout_text().contains("WROTE"), "{target}: {out:?}");
    }
    // A global sysctl, rewritten with its own value so nothing changes if the write got through.
    let out = sh(
        &*sb,
        "cat /proc/sys/vm/swappiness > /tmp/v && cat /tmp/v > /proc/sys/vm/swappiness && echo WROTE",
    )
    .await;
    assert!(!out.stdout_text().contains("WROTE"), "{out:?}");
    assert!(!std::path::Path::new("/usr/bin/evil").exists());
    let out = sh(
        &*sb,
        "echo x > /workspace/ok && echo x > /tmp/ok && echo x > $HOME/ok && echo WROTE",
    )
    .await;
    assert_eq!(out.stdout_text(), "WROTE\n");
    sb.destroy().await.unwrap();
});

sandboxed!(workspace_symlinks_do_not_lead_the_host_out, |rig| {
    let sb = rig.sandbox("links").await;
    sh(&*sb, "ln -s /etc/hostname /workspace/host-file; ln -s / /workspace/root; ln /etc/hostname /workspace/hard 2>/dev/null; mkfifo /workspace/fifo").await;
    let ws = WorkspaceDir::open(&rig.workspace("links")).unwrap();
    for path in ["host-file", "root/etc/hostname", "fifo"] {
        let read = ws.read(&RelPath::parse(path).unwrap(), 1 << 20);
        assert!(read.is_err(), "{path} was followed: {read:?}");
    }
    // A hard link to a host file cannot exist: host files are not mounted in the sandbox.
    assert!(!rig.workspace("links").join("hard").exists());
    assert!(RelPath::parse("../state").is_err());
    sb.destroy().await.unwrap();
});

sandboxed!(privileged_syscalls_are_refused, |rig| {
    let sb = rig.sandbox("syscalls").await;
    // x86_64 numbers; the suite runs on x86_64 (asserted below).
    let probe = r#"
import ctypes, os, platform
assert platform.machine() == "x86_64", platform.machine()
libc = ctypes.CDLL(None, use_errno=True)
calls = {"ptrace": (101, 16, 1, 0, 0), "mount": (165, 0, 0, 0, 0), "umount2": (166, 0, 0),
  "unshare_user": (272, 0x10000000), "unshare_net": (272, 0x40000000), "setns": (308, 0, 0),
  "keyctl": (250, 0, 0), "add_key": (248, 0, 0, 0, 0, 0), "init_module": (175, 0, 0, 0),
  "finit_module": (313, 0, 0, 0), "delete_module": (176, 0, 0), "bpf": (321, 0, 0, 0),
  "perf_event_open": (298, 0, 0, -1, -1, 0), "userfaultfd": (323, 0), "kexec_load": (246, 0, 0, 0, 0),
  "pivot_root": (155, 0, 0), "chroot": (161, 0), "io_uring_setup": (425, 1, 0),
  "process_vm_readv": (310, 1, 0, 0, 0, 0, 0), "open_by_handle_at": (304, 0, 0, 0), "swapon": (167, 0, 0),
  "reboot": (169, 0, 0, 0, 0), "clone3": (435, 0, 0)}
for name, (nr, *args) in calls.items():
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    print(name, "refused" if r == -1 else "ALLOWED", ctypes.get_errno())
"#;
    let mut request = hangar_sandbox::ExecRequest::new(["python3", "-c", probe]);
    request.timeout = Some(Duration::from_secs(20));
    let out = sb.exec(request).await.unwrap().collect().await.unwrap();
    let text = out.stdout_text();
    assert_eq!(text.lines().count(), 23, "{out:?}");
    assert!(!text.contains("ALLOWED"), "{text}");
    for tool in [
        "mount -t tmpfs none /tmp",
        "unshare -U true",
        "unshare -n true",
        "su -c id root </dev/null",
    ] {
        let out = sh(&*sb, &format!("{tool} && echo SUCCEEDED")).await;
        assert!(
            !out.stdout_text().contains("SUCCEEDED") && !out.stdout_text().contains("uid=0"),
            "{tool}: {out:?}"
        );
    }
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(no_capabilities_and_no_new_privileges, |rig| {
    let sb = rig.sandbox("caps").await;
    let out = sh(
        &*sb,
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
    )
    .await;
    let text = out.stdout_text();
    for line in text.lines() {
        let (key, value) = line.split_once(':').unwrap();
        let value = value.trim();
        match key {
            "NoNewPrivs" => assert_eq!(value, "1"),
            "Seccomp" => assert_eq!(value, "2"),
            _ => assert_eq!(value, "0000000000000000", "{key}"),
        }
    }
    assert_eq!(text.lines().count(), 7, "{text}");
    sb.destroy().await.unwrap();
});

sandboxed!(host_processes_cannot_be_signalled, |rig| {
    let sb = rig.sandbox("signals").await;
    let mut victim = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let pid = victim.id();
    let out = sh(
        &*sb,
        &format!("kill -9 {pid} && echo KILLED; kill -9 -1; echo after"),
    )
    .await;
    assert!(!out.stdout_text().contains("KILLED"), "{out:?}");
    assert!(
        victim.try_wait().unwrap().is_none(),
        "a host process was killed from inside"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(installs_stay_inside_one_sandbox, |rig| {
    let a = rig.sandbox("install-a").await;
    let b = rig.sandbox("install-b").await;
    let out = sh(
        &*a,
        "python3 -m venv --without-pip $HOME/venv && mkdir -p /workspace/lib /tmp/site \
        && echo 'X = 1' > /workspace/lib/pkg.py && echo 'X = 1' > /tmp/site/leak.py && echo installed",
    )
    .await;
    assert_eq!(out.stdout_text(), "installed\n", "{out:?}");
    let out = sh(
        &*a,
        "PYTHONPATH=/workspace/lib python3 -c 'import pkg; print(pkg.X)'",
    )
    .await;
    assert_eq!(out.stdout_text(), "1\n");
    let out = sh(
        &*b,
        "ls $HOME/venv /workspace/lib /tmp/site 2>&1 | grep -c 'No such file'",
    )
    .await;
    assert_eq!(out.stdout_text(), "3\n", "{out:?}");
    a.destroy().await.unwrap();
    b.destroy().await.unwrap();
});
