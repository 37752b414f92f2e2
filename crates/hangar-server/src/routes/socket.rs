//! `GET …/conversations/{id}/ws`: the conversation over one WebSocket. `chat` starts a run
//! (as `POST …/stream` does), `interrupt` cancels it, `resume` follows a run from a seq. Every
//! run event arrives as one text frame carrying the SSE event's name and data, so both
//! transports deliver the same transcript. The caller is authenticated and the conversation
//! checked before the upgrade; frames are size-limited; the server pings and drops a peer
//! that stops answering. Runs belong to the server: closing the socket does not stop one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use hangar_protocol::{ClientMessage, ErrorBody, ServerNotice, TenantId};
use hangar_store::StoredEvent;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::runs::{HEARTBEAT, follow};
use crate::auth::TenantAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, parse_json};
use crate::runs;
use crate::state::AppState;

/// The server pings this often…
const PING_EVERY: Duration = Duration::from_secs(20);
/// …and closes the socket after this long without hearing anything from the peer.
const PEER_TIMEOUT: Duration = Duration::from_secs(60);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(socket))
}

/// The conversation over a WebSocket. Client frames (JSON text): `{"type": "chat", …request_data
/// fields}`, `{"type": "interrupt"}`, `{"type": "resume", "run_id", "after"}`. Server frames:
/// each run event as `{"event": <name>, "seq", "timestamp", …}` (the SSE event's name and
/// data), `{"event": "accepted", "run_id"}` before a run's events, and `{"event": "rejected",
/// "error": {…}}` for a refused frame. Authenticate with `X-API-Key`, `Authorization: Bearer`
/// or, from a browser, `?token=`.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/ws", tag = "runs",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"),
           ("token" = Option<String>, Query, description = "API key, for clients that cannot send headers")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, body = ErrorBody, description = "Not a WebSocket upgrade"),
        (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn socket(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let (_, conversation_id) = path;
    state
        .store
        .get_conversation(&access.tenant_id, conversation_id)
        .await?;
    let upgrade = upgrade
        .map_err(|err| ApiError::bad_request(format!("this endpoint speaks WebSocket only: {err}")))?;
    let limit = state.settings.max_body_bytes;
    let tenant_id = access.tenant_id;
    Ok(upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            Session {
                state,
                tenant_id,
                conversation_id,
                following: None,
            }
            .run(socket)
        }))
}

/// One connected client.
struct Session {
    state: AppState,
    tenant_id: TenantId,
    conversation_id: Uuid,
    /// The run whose events this socket is relaying.
    following: Option<BoxStream<'static, Option<Arc<StoredEvent>>>>,
}

impl Session {
    async fn run(mut self, socket: WebSocket) {
        let (mut tx, mut rx) = socket.split();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        let mut heard = Instant::now();
        loop {
            let outgoing = tokio::select! {
                incoming = rx.next() => {
                    let Some(Ok(message)) = incoming else { break };
                    heard = Instant::now();
                    match message {
                        Message::Text(text) => self.handle(text.as_bytes()).await,
                        Message::Binary(_) => vec![rejected(&ApiError::bad_request(
                            "send JSON text frames, not binary ones",
                        ))],
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => Vec::new(),
                    }
                }
                event = next_event(&mut self.following) => match event {
                    Some(Some(event)) => vec![Message::Text(frame(&event))],
                    // A quiet run: the socket's own pings keep it alive.
                    Some(None) => Vec::new(),
                    None => {
                        self.following = None;
                        Vec::new()
                    }
                },
                _ = ping.tick() => {
                    if heard.elapsed() > PEER_TIMEOUT {
                        let close = CloseFrame { code: close_code::AWAY, reason: "no answer to pings".into() };
                        let _ = tx.send(Message::Close(Some(close))).await;
                        break;
                    }
                    vec![Message::Ping(Default::default())]
                }
            };
            for message in outgoing {
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        }
    }

    /// A client frame: the frames to answer with.
    async fn handle(&mut self, bytes: &[u8]) -> Vec<Message> {
        let message = match parse_json::<ClientMessage>(bytes) {
            Ok(message) => message,
            Err(err) => return vec![rejected(&err)],
        };
        match message {
            ClientMessage::Chat(request) => {
                if let Some(err) = self.busy() {
                    return vec![rejected(&err)];
                }
                match runs::submit(
                    &self.state,
                    &self.tenant_id,
                    self.conversation_id,
                    request,
                    Vec::new(),
                )
                .await
                {
                    Ok(live) => {
                        self.following = Some(live.watch(0, HEARTBEAT).boxed());
                        vec![notice(&ServerNotice::Accepted { run_id: live.run_id })]
                    }
                    Err(err) => vec![rejected(&err)],
                }
            }
            ClientMessage::Interrupt => match self.state.runs.for_conversation(self.conversation_id) {
                Some(live) => {
                    live.cancel.cancel();
                    Vec::new()
                }
                None => vec![rejected(&ApiError::conflict(
                    "no run of this conversation is in progress",
                ))],
            },
            ClientMessage::Resume { run_id, after } => {
                if let Some(err) = self.busy() {
                    return vec![rejected(&err)];
                }
                match follow(&self.state, &self.tenant_id, self.conversation_id, run_id, after).await {
                    Ok(events) => {
                        self.following = Some(events);
                        vec![notice(&ServerNotice::Accepted { run_id })]
                    }
                    Err(err) => vec![rejected(&err)],
                }
            }
        }
    }

    /// One run at a time per socket: its events would interleave with the next one's.
    fn busy(&self) -> Option<ApiError> {
        self.following
            .is_some()
            .then(|| ApiError::conflict("this socket is relaying a run; wait for its done or send interrupt"))
    }
}

/// The next event of the run being relayed; never ready when there is none.
async fn next_event(
    following: &mut Option<BoxStream<'static, Option<Arc<StoredEvent>>>>,
) -> Option<Option<Arc<StoredEvent>>> {
    match following {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

/// `{"event": <name>, …data}`: the SSE event in one object, without re-encoding the data.
fn frame(event: &StoredEvent) -> Utf8Bytes {
    let fields = event.data.strip_prefix('{').unwrap_or("}");
    let name = serde_json::Value::String(event.event.clone());
    let separator = if fields.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"event\":{name}{separator}{fields}").into()
}

fn notice(notice: &ServerNotice) -> Message {
    Message::Text(serde_json::to_string(notice).unwrap_or_default().into())
}

fn rejected(err: &ApiError) -> Message {
    notice(&ServerNotice::Rejected {
        error: err.body().error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_the_event_name_then_its_data() {
        let event = StoredEvent {
            seq: 3,
            event: "assistant".to_owned(),
            data: r#"{"seq":3,"timestamp":"t","delta":true}"#.to_owned(),
        };
        let value: serde_json::Value = serde_json::from_str(frame(&event).as_str()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "assistant", "seq": 3, "timestamp": "t", "delta": true})
        );
        let empty = StoredEvent {
            seq: 1,
            event: "x".to_owned(),
            data: "{}".to_owned(),
        };
        assert_eq!(frame(&empty).as_str(), r#"{"event":"x"}"#);
    }
}
