//! The few API calls `hangar chat` makes, over one tenant: conversations, the run stream, the
//! run's replay and cancel. A failing response becomes an error carrying the API envelope's
//! message; an event stream becomes [`WireEvent`]s (heartbeats and unknown events skipped).

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use futures::stream::BoxStream;
use hangar_protocol::{
    Conversation, ConversationCreate, ConversationUpdate, ModelId, RunEvent, StreamRequest, TenantId,
};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use uuid::Uuid;

/// How long a plain (non-streaming) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A stream silent this long is dead: the server sends a `ping` every 10 seconds.
const READ_TIMEOUT: Duration = Duration::from_secs(45);

/// One event of a run as received.
#[derive(Debug, Clone, PartialEq)]
pub struct WireEvent {
    pub seq: u64,
    /// Set on a subagent's events.
    pub agent: Option<String>,
    pub event: RunEvent,
}

pub type Events = BoxStream<'static, anyhow::Result<WireEvent>>;

pub struct Client {
    http: reqwest::Client,
    /// `{url}/api/tenants/{tenant}`.
    base: String,
}

impl Client {
    /// A client for `tenant`'s API at `url`, as `user` (also sent as `X-User-ID`, which the
    /// server's rate limit counts per user).
    pub fn new(url: &str, api_key: Option<&str>, tenant: &TenantId, user: &str) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid --url {url:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("invalid --url {url:?}: use http:// or https://");
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = api_key {
            let mut value = HeaderValue::from_str(key).context("the API key is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
        // A header carries visible ASCII only; other user ids share the key's quota.
        if let Ok(value) = HeaderValue::from_str(user) {
            headers.insert("x-user-id", value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("hangar-chat/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            base: format!("{}/api/tenants/{tenant}", url.trim_end_matches('/')),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    pub async fn conversation(&self, id: Uuid) -> anyhow::Result<Conversation> {
        let request = self.request(Method::GET, &format!("/conversations/{id}"));
        Ok(send(request.timeout(REQUEST_TIMEOUT)).await?.json().await?)
    }

    pub async fn create_conversation(
        &self,
        user: &str,
        model: Option<ModelId>,
    ) -> anyhow::Result<Conversation> {
        let body = ConversationCreate {
            user_id: user.to_owned(),
            model_id: model,
            workspace_enabled: true,
        };
        let request = self.request(Method::POST, "/conversations").json(&body);
        Ok(send(request.timeout(REQUEST_TIMEOUT)).await?.json().await?)
    }

    pub async fn set_title(&self, id: Uuid, title: &str) -> anyhow::Result<()> {
        let body = ConversationUpdate {
            title: Some(title.to_owned()),
            status: None,
        };
        let request = self
            .request(Method::PUT, &format!("/conversations/{id}"))
            .json(&body);
        send(request.timeout(REQUEST_TIMEOUT)).await?;
        Ok(())
    }

    /// Sends a message; returns the run's id (`X-Run-ID`) and its events.
    pub async fn stream(
        &self,
        conversation: Uuid,
        body: &StreamRequest,
    ) -> anyhow::Result<(Option<Uuid>, Events)> {
        let request = self.request(Method::POST, &format!("/conversations/{conversation}/stream"));
        let response = send(request.json(body)).await?;
        let run_id = response
            .headers()
            .get("x-run-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok((run_id, events(response)))
    }

    /// The run's events after `seq` (replayed, then live until `done`).
    pub async fn follow(&self, conversation: Uuid, run: Uuid, seq: u64) -> anyhow::Result<Events> {
        let request = self
            .request(
                Method::GET,
                &format!("/conversations/{conversation}/runs/{run}/events"),
            )
            .header("last-event-id", seq.to_string());
        Ok(events(send(request).await?))
    }

    pub async fn cancel(&self, conversation: Uuid, run: Uuid) -> anyhow::Result<()> {
        let request = self.request(
            Method::POST,
            &format!("/conversations/{conversation}/runs/{run}/cancel"),
        );
        send(request.timeout(REQUEST_TIMEOUT)).await?;
        Ok(())
    }
}

/// Sends the request; a non-2xx answer becomes an error with the envelope's message.
async fn send(request: RequestBuilder) -> anyhow::Result<Response> {
    let response = request.send().await.map_err(|err| anyhow!(describe(&err)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(anyhow!(api_error(status, &body)))
}

/// The message of an error envelope (with its field details), or the status and body.
pub fn api_error(status: reqwest::StatusCode, body: &str) -> String {
    let envelope: Value = serde_json::from_str(body).unwrap_or_default();
    let error = &envelope["error"];
    let Some(message) = error["message"].as_str() else {
        let body: String = body.trim().chars().take(200).collect();
        return format!("the server answered {status}: {body}");
    };
    let mut text = message.to_owned();
    for detail in error["details"].as_array().into_iter().flatten() {
        let field = detail["field"]
            .as_str()
            .map(|f| format!("{f}: "))
            .unwrap_or_default();
        text.push_str(&format!(
            "; {field}{}",
            detail["message"].as_str().unwrap_or_default()
        ));
    }
    format!("{text} ({status})")
}

/// A transport error with its causes (`error sending request` alone says little).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    if error.is_connect() {
        text.push_str(" (is the server running, and --url or HANGAR_URL right?)");
    }
    text
}

fn events(response: Response) -> Events {
    response
        .bytes_stream()
        .eventsource()
        .filter_map(|item| async move {
            match item {
                Ok(event) => parse(&event.event, &event.data).map(Ok),
                Err(err) => Some(Err(anyhow!("{err}"))),
            }
        })
        .boxed()
}

/// A run event from its SSE name and data; `None` for heartbeats and events this client does
/// not know.
pub fn parse(name: &str, data: &str) -> Option<WireEvent> {
    if name == "ping" {
        return None;
    }
    let data: Value = serde_json::from_str(data).ok()?;
    let seq = data["seq"].as_u64()?;
    let agent = data["parent_agent_id"].as_str().map(str::to_owned);
    let event = RunEvent::from_wire(name, &data).ok()?;
    Some(WireEvent { seq, agent, event })
}

#[cfg(test)]
mod tests {
    use hangar_protocol::{ProgressKind, TextBlock};
    use pretty_assertions::assert_eq;
    use reqwest::StatusCode;

    use super::*;

    #[test]
    fn errors_show_the_envelopes_message() {
        let body = r#"{"error":{"code":"VALIDATION_ERROR","message":"invalid request_data",
            "details":[{"field":"body.user_input","message":"must not be empty","code":"missing"}]}}"#;
        assert_eq!(
            api_error(StatusCode::BAD_REQUEST, body),
            "invalid request_data; body.user_input: must not be empty (400 Bad Request)"
        );
        assert_eq!(
            api_error(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>\n"),
            "the server answered 502 Bad Gateway: <html>bad gateway</html>"
        );
    }

    #[test]
    fn events_keep_their_seq_and_agent_and_pings_are_skipped() {
        let event = RunEvent::Assistant {
            content_blocks: vec![TextBlock::Text { text: "hi".into() }],
            index: 0,
            delta: true,
        };
        let data = Value::Object(event.wire_data(7, "t", Some("agent-1"))).to_string();
        let parsed = parse("assistant", &data).unwrap();
        assert_eq!(
            parsed,
            WireEvent {
                seq: 7,
                agent: Some("agent-1".into()),
                event
            }
        );
        let progress = RunEvent::progress(ProgressKind::Setup, "Starting");
        let data = Value::Object(progress.wire_data(1, "t", None)).to_string();
        assert_eq!(parse("progress", &data).unwrap().agent, None);
        assert_eq!(parse("ping", r#"{"seq":0,"timestamp":"t"}"#), None);
        assert_eq!(parse("future_event", r#"{"seq":3,"timestamp":"t"}"#), None);
        assert_eq!(parse("assistant", "not json"), None);
    }
}
