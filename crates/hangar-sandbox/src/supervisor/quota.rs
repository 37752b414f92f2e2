//! Workspace disk quota. A bind-mounted host directory has no size of its own, so the supervisor
//! measures it: while commands run it walks `/workspace` twice a second, and once more after each
//! command. When the total grows past the quota every running command is told to stop (commands
//! that shrink the workspace, like `rm`, are left alone), and until the workspace is back under
//! its quota every command's exit carries the message. `RLIMIT_FSIZE` stops a single oversized
//! file at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

const POLL: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct Quota {
    active: Arc<AtomicUsize>,
    breach: watch::Receiver<Option<String>>,
    finished: Arc<Notify>,
}

/// Counts a running command while alive.
pub struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Quota {
    pub fn start(workdir: String, limit: Option<u64>) -> Self {
        let active = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(Notify::new());
        let (tx, breach) = watch::channel(None);
        if let Some(limit) = limit {
            tokio::spawn(watch_usage(
                PathBuf::from(workdir),
                limit,
                active.clone(),
                finished.clone(),
                tx,
            ));
        }
        Self {
            active,
            breach,
            finished,
        }
    }

    /// A command ended: measure once more soon.
    pub fn finished(&self) {
        self.finished.notify_one();
    }

    /// The over-quota message while the workspace is over its quota.
    pub fn over(&self) -> Option<String> {
        self.breach.borrow().clone()
    }

    /// Marks a command as running and returns a receiver that changes to `Some(message)` when
    /// the workspace grows past its quota.
    pub fn enter(&self) -> (Active, watch::Receiver<Option<String>>) {
        self.active.fetch_add(1, Ordering::SeqCst);
        let mut rx = self.breach.clone();
        rx.mark_unchanged();
        (Active(self.active.clone()), rx)
    }
}

async fn watch_usage(
    root: PathBuf,
    limit: u64,
    active: Arc<AtomicUsize>,
    finished: Arc<Notify>,
    tx: watch::Sender<Option<String>>,
) {
    let mut last = 0u64;
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {
                if active.load(Ordering::SeqCst) == 0 {
                    continue;
                }
            }
            () = finished.notified() => {}
        }
        let dir = root.clone();
        let Ok(used) = tokio::task::spawn_blocking(move || usage(&dir)).await else {
            continue;
        };
        if used <= limit {
            tx.send_if_modified(|v| v.take().is_some());
        } else if used > last || tx.borrow().is_none() {
            let _ = tx.send(Some(format!(
                "workspace quota exceeded: {used} bytes used, limit {limit} bytes; commands that write \
                 more are stopped. Delete files to continue."
            )));
        }
        last = used;
    }
}

/// Apparent size of all files beneath `root`, not following symlinks.
pub fn usage(root: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}
