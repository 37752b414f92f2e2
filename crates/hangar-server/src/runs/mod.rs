//! Agent runs on this node: starting them, watching them, cancelling them, draining them at
//! shutdown and closing what a crash left open.

mod execute;
mod live;
mod observer;
mod seams;
mod submit;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_coord::{Lease, LeaseError, Leases};
use hangar_protocol::{Done, DoneStatus, RunEvent, RunStatus};
use hangar_store::{RunOutcome, Store, StoredEvent};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use execute::{RunRequest, start};
pub use live::LiveRun;
pub use submit::{Upload, submit};

use crate::config::Settings;
use crate::error::{ApiError, ApiResult};

/// How long cancelled runs get to write their `done` at shutdown.
pub const CANCEL_GRACE: Duration = Duration::from_secs(5);

pub struct Runs {
    node_id: String,
    leases: Arc<dyn Leases>,
    live: Mutex<HashMap<Uuid, Arc<LiveRun>>>,
    accepting: AtomicBool,
    tracker: TaskTracker,
}

impl Runs {
    pub fn new(node_id: String, leases: Arc<dyn Leases>) -> Self {
        Self {
            node_id,
            leases,
            live: Mutex::new(HashMap::new()),
            accepting: AtomicBool::new(true),
            tracker: TaskTracker::new(),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Takes the conversation's lease for `holder` (a run, or a delete): 409 while someone
    /// else holds it.
    pub async fn lease(&self, conversation: Uuid, holder: Uuid) -> ApiResult<Lease> {
        match self.leases.try_acquire(&conversation.to_string(), holder).await {
            Ok(lease) => Ok(lease),
            Err(LeaseError::Held { holder, .. }) => Err(ApiError::conflict(format!(
                "conversation {conversation} is busy with run {holder}; wait for it to finish or cancel it"
            ))),
            Err(err @ LeaseError::Backend(_)) => Err(ApiError::unavailable(err.to_string())),
        }
    }

    pub fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    fn insert(&self, run: Arc<LiveRun>) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(run.run_id, run);
        }
    }

    fn remove(&self, run_id: Uuid) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&run_id);
        }
    }

    /// The run if it is in progress on this node.
    pub fn get(&self, run_id: Uuid) -> Option<Arc<LiveRun>> {
        self.live.lock().ok().and_then(|live| live.get(&run_id).cloned())
    }

    /// The conversation's run if one is in progress on this node.
    pub fn for_conversation(&self, conversation_id: Uuid) -> Option<Arc<LiveRun>> {
        self.live.lock().ok().and_then(|live| {
            live.values()
                .find(|run| run.conversation_id == conversation_id)
                .cloned()
        })
    }

    /// Runs in progress on this node.
    pub fn count(&self) -> usize {
        self.live.lock().map(|live| live.len()).unwrap_or(0)
    }

    /// Stops accepting runs, lets running ones finish for up to `grace`, then cancels the rest
    /// (they end with `done{status: cancelled}`) and waits for them to close.
    pub async fn shutdown(&self, grace: Duration) {
        self.accepting.store(false, Ordering::SeqCst);
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_ok() {
            return;
        }
        let remaining: Vec<Arc<LiveRun>> = self
            .live
            .lock()
            .map(|live| live.values().cloned().collect())
            .unwrap_or_default();
        tracing::warn!(
            runs = remaining.len(),
            "shutdown: cancelling runs still in progress"
        );
        for run in remaining {
            run.cancel.cancel();
        }
        if tokio::time::timeout(CANCEL_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!("shutdown: some runs did not close in time");
        }
    }

    /// Waits up to `limit` for every run to have closed (after [`Runs::shutdown`] began).
    pub async fn wait_closed(&self, limit: Duration) {
        self.tracker.close();
        if tokio::time::timeout(limit, self.tracker.wait()).await.is_err() {
            tracing::error!(runs = self.count(), "runs still open at exit");
        }
    }

    /// Closes runs this node left `running` when it stopped without closing them (a crash, a
    /// kill): each gets an `error` and a final `done{status: interrupted}`. Returns how many.
    pub async fn recover(&self, store: &dyn Store) -> usize {
        let runs = match store.running_runs(&self.node_id).await {
            Ok(runs) => runs,
            Err(err) => {
                tracing::error!(error = %err, "could not look for interrupted runs");
                return 0;
            }
        };
        let mut closed = 0;
        for run in runs {
            let last = match store.last_run_event_seq(run.run_id).await {
                Ok(last) => last,
                Err(err) => {
                    tracing::error!(run_id = %run.run_id, error = %err, "could not read interrupted run");
                    continue;
                }
            };
            let message =
                "The server stopped while this run was in progress; send the message again to continue.";
            let events = [
                RunEvent::Error {
                    error_type: "interrupted".to_owned(),
                    message: message.to_owned(),
                    recoverable: true,
                },
                RunEvent::Done(Done {
                    status: DoneStatus::Interrupted,
                    result: None,
                    is_error: true,
                    errors: Some(vec![message.to_owned()]),
                    usage: run.usage,
                    cost_usd: run.cost_usd,
                    turn_count: u32::try_from(run.turn_count).unwrap_or(0),
                    duration_ms: 0,
                    session_id: Some(run.conversation_id.to_string()),
                    run_id: run.run_id.to_string(),
                }),
            ];
            let stored: Vec<StoredEvent> = (last + 1..)
                .zip(&events)
                .map(|(seq, event)| live::encode(seq, event, None))
                .collect();
            if let Err(err) = store.append_run_events(run.run_id, &stored).await {
                tracing::error!(run_id = %run.run_id, error = %err, "could not close interrupted run");
                continue;
            }
            let outcome = RunOutcome {
                status: RunStatus::Interrupted,
                turn_count: run.turn_count,
                usage: run.usage,
                cost: run.cost_usd,
                error: Some("interrupted by a server restart".to_owned()),
            };
            if let Ok(true) = store.finish_run(run.run_id, &outcome).await {
                closed += 1;
            }
        }
        closed
    }
}

/// This node's name in the runs table: `HANGAR_NODE_ID`, else the host name.
pub fn node_id(settings: &Settings) -> String {
    settings
        .hangar_node_id
        .clone()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".to_owned())
}
