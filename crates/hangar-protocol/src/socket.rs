//! The WebSocket of a conversation (`GET …/conversations/{id}/ws`). The client sends JSON text
//! frames ([`ClientMessage`]); the server sends each run event as
//! `{"event": <name>, "seq", "timestamp", …}` — the SSE event's name and data in one object —
//! plus two control frames of its own ([`ServerNotice`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ErrorInfo, StreamRequest};

/// A client's frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Send a message and start a run: the fields of `request_data`.
    Chat(StreamRequest),
    /// Cancel the conversation's run in progress.
    Interrupt,
    /// Follow a run's events after `after` (0: from the start), e.g. after reconnecting.
    Resume {
        run_id: Uuid,
        #[serde(default)]
        after: u64,
    },
}

/// A server frame that is not a run event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ServerNotice {
    /// A `chat` started this run (its events follow), or a `resume` follows it.
    Accepted { run_id: Uuid },
    /// A frame was refused; the socket stays open. `error` is the API's error object (404,
    /// 409 while a run is going, 400 for a malformed frame, …).
    Rejected { error: ErrorInfo },
}
