//! A sandbox dropped without `destroy()` stops, and what a dead server left behind is reaped —
//! but never a live owner's sandbox.

use std::time::Duration;

/// Host pids of processes whose command line is exactly `argv`.
fn host_pids(argv: &[&str]) -> Vec<u32> {
    let wanted = argv.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .collect()
}

/// Starts a `sleep` with a unique duration in a persistent shell of the sandbox (it outlives the
/// command), waits until the host sees it, and returns its argv.
async fn start_marker(sb: &dyn hangar_sandbox::Sandbox) -> Vec<String> {
    let seconds = format!("900000.{}", uuid::Uuid::new_v4().as_u128() % 1_000_000_000);
    let out = sb
        .shell("keep", &format!("sleep {seconds} &"), None)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(out.exit.code, Some(0), "{out:?}");
    for _ in 0..100 {
        if host_pids(&["sleep", &seconds]).len() == 1 {
            return vec!["sleep".to_owned(), seconds];
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the marker process never ran");
}

async fn wait_gone(argv: &[String]) -> bool {
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    for _ in 0..100 {
        if host_pids(&argv).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

sandboxed!(a_dropped_sandbox_stops, |rig| {
    let sb = rig.sandbox("dropped").await;
    let marker = start_marker(&*sb).await;
    drop(sb);
    assert!(
        wait_gone(&marker).await,
        "processes outlived their dropped sandbox"
    );
    // What is left (directory, cgroup, runc state) belongs to the start-up reaper.
    assert!(rig.backend.reap_leftovers().await.unwrap() <= 1);
});

sandboxed!(leftovers_of_a_dead_server_are_reaped, |rig| {
    let sb = rig.sandbox("leftover").await;
    let marker = start_marker(&*sb).await;
    assert_eq!(
        rig.backend.reap_leftovers().await.unwrap(),
        0,
        "a live owner's sandbox stays"
    );
    assert!(sb.alive().await);
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let dir = rig.dir.path().join("state").join(sb.id().as_str());
    std::fs::write(dir.join("owner"), dead_pid.to_string()).unwrap();
    assert_eq!(rig.backend.reap_leftovers().await.unwrap(), 1);
    assert!(!dir.exists());
    assert!(
        wait_gone(&marker).await,
        "the reaper left the sandbox's processes running"
    );
    assert!(!sb.alive().await);
    sb.destroy().await.unwrap();
});
