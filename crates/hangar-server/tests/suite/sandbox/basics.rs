//! What commands can do: run with a clean environment, keep a persistent shell, time out, get
//! their output capped, be cancelled.

use std::time::{Duration, Instant};

use hangar_sandbox::{ExecEvent, ExecRequest};

use super::{COUNT_SLEEPS, assert_healthy, sh, sh_timeout};

sandboxed!(commands_run_in_the_workspace_with_a_clean_environment, |rig| {
    let sb = rig.sandbox("clean-env").await;
    let out = sh(&*sb, "pwd; id -u; echo out; echo err >&2; exit 7").await;
    assert_eq!(
        out.stdout_text(),
        format!("/workspace\n{}\nout\n", rig.command_uid())
    );
    assert_eq!(out.stderr_text(), "err\n");
    assert_eq!(out.exit.code, Some(7));
    // Exactly the allow-listed environment: nothing of the host's (or the server's) leaks in.
    let env = sh(&*sb, "env -0").await.stdout_text();
    let mut names: Vec<&str> = env
        .split('\0')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "HOME",
            "LANG",
            "LOGNAME",
            "PATH",
            "PIP_DISABLE_PIP_VERSION_CHECK",
            "PIP_NO_INPUT",
            "PWD",
            "PYTHONUNBUFFERED",
            "SHELL",
            "SHLVL",
            "TERM",
            "TMPDIR",
            "USER",
            "_",
        ]
    );
    let mut request = ExecRequest::new(["/bin/cat"]);
    request.stdin = Some(b"piped\0bytes".to_vec());
    let out = sb.exec(request).await.unwrap().collect().await.unwrap();
    assert_eq!(out.stdout, b"piped\0bytes");
    sb.destroy().await.unwrap();
});

sandboxed!(the_shell_keeps_its_directory_and_exports, |rig| {
    let sb = rig.sandbox("shell").await;
    let run = |cmd: &'static str| {
        let sb = &sb;
        async move {
            sb.shell("main", cmd, None)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
        }
    };
    let out = run("mkdir -p /tmp/d && cd /tmp/d && export GREETING=hi && false").await;
    assert_eq!(
        (out.exit.code, out.exit.cwd.as_deref()),
        (Some(1), Some("/tmp/d"))
    );
    let out = run("pwd; echo $GREETING").await;
    assert_eq!(out.stdout_text(), "/tmp/d\nhi\n");
    // Output that looks like the framing, and output without a final newline.
    let out = run("echo '__HANGAR_00000000000000000000000000000000 0 /x'; printf 'no newline'").await;
    assert_eq!(
        out.stdout_text(),
        "__HANGAR_00000000000000000000000000000000 0 /x\nno newline"
    );
    let out = run("cat <<'EOF'\nheredoc $HOME\nEOF").await;
    assert_eq!(out.stdout_text(), "heredoc $HOME\n");
    // `set -e` survives the framing, and leading and trailing blanks of a command are kept.
    let out = run("set -e\n  echo '  spaced  '  ").await;
    assert_eq!(
        (out.stdout_text().as_str(), out.exit.code),
        ("  spaced  \n", Some(0))
    );
    assert_eq!(run("echo still-alive").await.stdout_text(), "still-alive\n");
    run("set +e").await;
    // `exit` ends the session; the next command gets a fresh one in the last directory.
    let out = run("exit 3").await;
    assert_eq!(out.exit.code, Some(3));
    assert!(
        out.exit
            .message
            .unwrap_or_default()
            .contains("exported variables are lost")
    );
    let out = run("pwd; echo \"[$GREETING]\"").await;
    assert_eq!(out.stdout_text(), "/tmp/d\n[]\n");
    // Another session is independent.
    let other = sb
        .shell("second", "pwd", None)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(other.stdout_text(), "/workspace\n");
    sb.destroy().await.unwrap();
});

sandboxed!(timeouts_kill_the_whole_process_group, |rig| {
    let sb = rig.sandbox("timeout").await;
    let started = Instant::now();
    let out = sh_timeout(
        &*sb,
        "sleep 300 & sleep 300; echo never",
        Some(Duration::from_secs(1)),
    )
    .await;
    assert!(out.exit.timed_out, "{out:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.exit.message.unwrap_or_default().contains("timed out"));
    let left = sh(&*sb, COUNT_SLEEPS).await;
    assert_eq!(left.stdout_text().trim(), "0", "background sleep survived");
    // A timed-out shell command restarts the session in the last directory it reported.
    sb.shell("s", "cd /tmp", None)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let out = sb
        .shell("s", "sleep 300", Some(Duration::from_secs(1)))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert!(out.exit.timed_out);
    assert!(
        out.exit
            .message
            .unwrap_or_default()
            .contains("starts a new one in /tmp")
    );
    let out = sb.shell("s", "pwd", None).await.unwrap().collect().await.unwrap();
    assert_eq!(out.stdout_text(), "/tmp\n");
    assert_healthy(&*sb).await;
    sb.destroy().await.unwrap();
});

sandboxed!(output_keeps_head_and_tail, |rig| {
    let sb = rig.sandbox("output").await;
    let out = sh(
        &*sb,
        "echo FIRST; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo LAST",
    )
    .await;
    let text = out.stdout_text();
    assert!(text.starts_with("FIRST\n"), "{}", &text[..20]);
    assert!(text.ends_with("\nLAST\n"));
    assert!(out.truncated_bytes > 4_000_000, "{}", out.truncated_bytes);
    assert!(text.contains("bytes of output omitted"));
    assert!(out.stdout.len() < 100_000);
    sb.destroy().await.unwrap();
});

sandboxed!(dropping_the_handle_cancels_the_command, |rig| {
    let sb = rig.sandbox("cancel").await;
    let mut handle = sb
        .exec(ExecRequest::new([
            "/bin/bash",
            "-c",
            "echo started; exec sleep 300",
        ]))
        .await
        .unwrap();
    assert_eq!(
        handle.next().await.unwrap(),
        Some(ExecEvent::Stdout("started\n".into()))
    );
    drop(handle);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = sh(&*sb, COUNT_SLEEPS).await;
        if left.stdout_text().trim() == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "the cancelled command still runs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sb.destroy().await.unwrap();
});
