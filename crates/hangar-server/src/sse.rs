//! Server-sent events with the contract's framing: every event's data starts with `seq`
//! (monotonic from 1 per stream) and `timestamp`, followed by the event's own fields.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// The sending side of one SSE stream. Sending after the client left is harmless: the work
/// that produces events goes on (and persists its results) whether anyone listens or not.
#[derive(Debug)]
pub struct EventSink {
    tx: mpsc::Sender<Event>,
    seq: u64,
}

/// Now, as the contract shows it: UTC, microseconds, `Z`.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl EventSink {
    /// Sends `name` with `fields` (an object), prefixed by the next `seq` and a timestamp.
    /// Returns the `seq` used.
    pub async fn send(&mut self, name: &str, fields: impl Serialize) -> u64 {
        self.seq += 1;
        let mut data = Map::new();
        data.insert("seq".into(), self.seq.into());
        data.insert("timestamp".into(), timestamp().into());
        if let Ok(Value::Object(fields)) = serde_json::to_value(fields) {
            for (key, value) in fields {
                if key != "seq" && key != "timestamp" {
                    data.insert(key, value);
                }
            }
        }
        let event = Event::default().event(name).data(Value::Object(data).to_string());
        // A closed channel means the client went away; the caller carries on regardless.
        let _ = self.tx.send(event).await;
        self.seq
    }
}

/// A sink and the SSE response that streams what is sent into it, with 15 s keep-alive comments.
pub fn channel() -> (EventSink, Sse<impl Stream<Item = Result<Event, Infallible>>>) {
    let (tx, rx) = mpsc::channel(256);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("ping"));
    (EventSink { tx, seq: 0 }, sse)
}
