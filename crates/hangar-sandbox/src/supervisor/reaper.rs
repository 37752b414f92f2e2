//! Child bookkeeping for PID 1. The supervisor is the sandbox's init, so orphans of every command
//! are re-parented to it. One task waits for `SIGCHLD` and reaps *every* exited child with
//! `waitpid(-1)`: statuses of children we spawned go to whoever waits for them, the rest (orphans)
//! are simply reaped so no zombie survives. `tokio::process` is not used here because its own
//! per-child waiting would race with `waitpid(-1)`.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signaled(i32),
}

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, oneshot::Sender<Ended>>,
    reaped_orphans: u64,
}

/// Spawns children and delivers their exit statuses.
#[derive(Clone, Default)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
}

impl Reaper {
    /// Starts the reaping task. Must be called inside the runtime before any child is spawned.
    pub fn start() -> io::Result<Self> {
        let reaper = Self::default();
        let mut sigchld = signal(SignalKind::child())?;
        let table = reaper.table.clone();
        tokio::spawn(async move {
            loop {
                reap_all(&table);
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Spawns `command` and returns it with a receiver of its exit status. Registration happens
    /// under the table lock, so the reaper cannot miss it.
    pub fn spawn(&self, command: &mut Command) -> io::Result<(Child, oneshot::Receiver<Ended>)> {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        let child = command.spawn()?;
        let (tx, rx) = oneshot::channel();
        table.waiting.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// Children being waited for right now.
    pub fn running(&self) -> u64 {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .len() as u64
    }

    pub fn reaped_orphans(&self) -> u64 {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reaped_orphans
    }
}

fn reap_all(table: &Mutex<Table>) {
    loop {
        let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => status,
        };
        let (pid, ended) = match status {
            WaitStatus::Exited(pid, code) => (pid, Ended::Exited(code)),
            WaitStatus::Signaled(pid, sig, _) => (pid, Ended::Signaled(sig as i32)),
            _ => continue,
        };
        let mut table = table.lock().unwrap_or_else(PoisonError::into_inner);
        match table.waiting.remove(&pid.as_raw()) {
            Some(tx) => {
                let _ = tx.send(ended);
            }
            None => table.reaped_orphans += 1,
        }
    }
}
