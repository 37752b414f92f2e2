//! A run in progress on this node: its numbered events (kept in memory while it runs, written
//! to the store in batches), its watchers and its cancellation.
//!
//! Events are numbered under one lock as they are published, so `seq` is gap-free and ordered
//! even when parallel tool calls report at once. Watchers read from the in-memory list — a
//! watcher joining late, or one that fell behind, simply reads further — and wait on a `watch`
//! channel for more; none can lose or repeat an event. Once the run is over, the store has
//! every event and serves replays.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use hangar_protocol::{RunEvent, TenantId};
use hangar_store::{Store, StoredEvent};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::sse::timestamp;

/// Events written to the store in one transaction at most.
const BATCH: usize = 512;

/// `event` numbered `seq`, exactly as it is streamed and stored.
pub fn encode(seq: u64, event: &RunEvent, agent_id: Option<&str>) -> StoredEvent {
    StoredEvent {
        seq,
        event: event.name().to_owned(),
        data: serde_json::Value::Object(event.wire_data(seq, &timestamp(), agent_id)).to_string(),
    }
}

pub struct LiveRun {
    pub run_id: Uuid,
    pub tenant_id: TenantId,
    pub conversation_id: Uuid,
    pub cancel: CancellationToken,
    events: Mutex<Vec<Arc<StoredEvent>>>,
    /// The last published seq, and whether the run is over.
    progress: watch::Sender<(u64, bool)>,
    done_sent: AtomicBool,
    writer: Mutex<Option<(mpsc::UnboundedSender<StoredEvent>, JoinHandle<()>)>>,
}

impl LiveRun {
    pub fn new(run_id: Uuid, tenant_id: TenantId, conversation_id: Uuid, store: Arc<dyn Store>) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_events(store, run_id, rx));
        Arc::new(Self {
            run_id,
            tenant_id,
            conversation_id,
            cancel: CancellationToken::new(),
            events: Mutex::new(Vec::new()),
            progress: watch::channel((0, false)).0,
            done_sent: AtomicBool::new(false),
            writer: Mutex::new(Some((tx, writer))),
        })
    }

    /// Numbers, stores and streams `event`. After `done` nothing more is published.
    pub fn publish(&self, agent_id: Option<&str>, event: &RunEvent) {
        let is_done = matches!(event, RunEvent::Done(_));
        if self.done_sent.load(Ordering::SeqCst) || (is_done && self.done_sent.swap(true, Ordering::SeqCst)) {
            tracing::warn!(run_id = %self.run_id, event = event.name(), "event after done dropped");
            return;
        }
        let Ok(mut events) = self.events.lock() else {
            return;
        };
        let seq = events.len() as u64 + 1;
        let encoded = encode(seq, event, agent_id);
        if let Ok(writer) = self.writer.lock()
            && let Some((tx, _)) = writer.as_ref()
        {
            let _ = tx.send(encoded.clone());
        }
        events.push(Arc::new(encoded));
        self.progress.send_replace((seq, false));
    }

    /// Waits until every published event is in the store, then lets watchers finish.
    pub async fn finish(&self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some((tx, handle)) = writer {
            drop(tx);
            if let Err(err) = handle.await {
                tracing::error!(run_id = %self.run_id, error = %err, "event writer failed");
            }
        }
        let last = self.events.lock().map(|e| e.len() as u64).unwrap_or(0);
        self.progress.send_replace((last, true));
    }

    /// Events after `after`, then the live tail, until the run is over. A `None` item is a
    /// heartbeat: nothing happened for `heartbeat`.
    pub fn watch(
        self: &Arc<Self>,
        after: u64,
        heartbeat: Duration,
    ) -> impl Stream<Item = Option<Arc<StoredEvent>>> + use<> {
        let rx = self.progress.subscribe();
        futures::stream::unfold(
            (self.clone(), after, rx),
            move |(live, cursor, mut rx)| async move {
                loop {
                    let next =
                        live.events.lock().ok().and_then(|events| {
                            usize::try_from(cursor).ok().and_then(|i| events.get(i).cloned())
                        });
                    if let Some(event) = next {
                        let seq = event.seq;
                        return Some((Some(event), (live, seq, rx)));
                    }
                    let (last, over) = *rx.borrow_and_update();
                    if over && cursor >= last {
                        return None;
                    }
                    if last > cursor {
                        continue;
                    }
                    match tokio::time::timeout(heartbeat, rx.changed()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return None,
                        Err(_) => return Some((None, (live, cursor, rx))),
                    }
                }
            },
        )
    }
}

/// Writes published events to the store in batches, in order.
async fn write_events(store: Arc<dyn Store>, run_id: Uuid, mut rx: mpsc::UnboundedReceiver<StoredEvent>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        if let Err(err) = store.append_run_events(run_id, &batch).await {
            tracing::error!(%run_id, error = %err, events = batch.len(), "could not store run events");
        }
    }
}
