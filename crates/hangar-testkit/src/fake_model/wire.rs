//! Response plumbing shared by the three formats: the render context, the paced/interrupted
//! streaming body (slow tokens, stalls, in-stream errors, cut connections), fault responses,
//! SSE and JSON helpers, and minimal request-body validation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::{Fault, Interrupt, Reply, StreamError};

/// Facts the renderers need about the request being answered.
pub(crate) struct RenderCtx {
    pub seq: usize,
    pub model: String,
    pub created: u64,
}

impl RenderCtx {
    pub(crate) fn new(seq: usize, model: Option<&str>, reply: &Reply) -> Self {
        let model = reply
            .model
            .clone()
            .or_else(|| model.map(str::to_owned))
            .unwrap_or_else(|| "fake-model".into());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Self { seq, model, created }
    }
}

/// What the response body does, step by step.
enum Step {
    Wait(Duration),
    Send(Bytes),
    Cut,
}

/// A streaming body sending `events` with the reply's pacing and interruption; `error_event`
/// encodes the format's in-stream error.
pub(crate) fn stream_body(
    reply: &Reply,
    mut events: Vec<Bytes>,
    error_event: impl FnOnce(&StreamError) -> Bytes,
) -> Body {
    let mut cut = false;
    if let Some(interrupt) = &reply.interrupt {
        events.truncate(interrupt.after_events());
        match interrupt {
            Interrupt::Error(error) => events.push(error_event(error)),
            Interrupt::Drop { .. } => cut = true,
        }
    }
    let delay = Duration::from_millis(reply.event_delay_ms);
    let stall = reply.stall.map(|s| {
        (
            s.after_events.min(events.len()),
            Duration::from_millis(s.duration_ms),
        )
    });
    let mut steps = Vec::with_capacity(events.len() * 2 + 2);
    let count = events.len();
    for (i, event) in events.into_iter().enumerate() {
        if let Some((at, duration)) = stall
            && at == i
        {
            steps.push(Step::Wait(duration));
        }
        if i > 0 && !delay.is_zero() {
            steps.push(Step::Wait(delay));
        }
        steps.push(Step::Send(event));
    }
    if let Some((at, duration)) = stall
        && at == count
    {
        steps.push(Step::Wait(duration));
    }
    if cut {
        // Let the server flush what was sent before cutting, so the client sees a truncated
        // body rather than no response at all.
        steps.push(Step::Wait(Duration::from_millis(20)));
        steps.push(Step::Cut);
    }
    let stream = futures::stream::unfold(steps.into_iter(), |mut steps| async move {
        loop {
            match steps.next()? {
                Step::Wait(duration) => tokio::time::sleep(duration).await,
                Step::Send(bytes) => return Some((Ok(bytes), steps)),
                Step::Cut => {
                    return Some((
                        Err(std::io::Error::other("fake model: connection dropped by script")),
                        steps,
                    ));
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// Sum of the pauses a reply's stream is scripted to make, in milliseconds.
pub(crate) fn scripted_latency_ms(reply: &Reply, events: usize) -> u64 {
    let delays = reply
        .event_delay_ms
        .saturating_mul(events.saturating_sub(1) as u64);
    delays.saturating_add(reply.stall.map(|s| s.duration_ms).unwrap_or_default())
}

/// Applies a fault's delay, then returns its status, headers and body: the fault's verbatim
/// body, or `rendered` (the format's error shape).
pub(crate) async fn fault_parts(fault: &Fault, rendered: String) -> (StatusCode, HeaderMap, String) {
    if fault.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
    }
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if let Some(seconds) = fault.retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        headers.insert("retry-after", value);
    }
    for (name, value) in &fault.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    let body = fault.body.as_ref().map(Value::to_string).unwrap_or(rendered);
    (status, headers, body)
}

/// A JSON response (body already serialised) with extra headers.
pub(crate) fn json_response(
    status: StatusCode,
    mut headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    (status, headers, body).into_response()
}

/// Serialises a wire struct (field order as declared) to JSON text.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"serialisation_error\":\"{e}\"}}"))
}

/// The JSON type a required body field must have.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    String,
    Array,
    Integer,
}

/// Checks that `body` is a JSON object with `fields` of the given kinds; the error names the
/// first offender.
pub(crate) fn check_fields(body: Option<&Value>, fields: &[(&str, Kind)]) -> Result<(), String> {
    let Some(Value::Object(object)) = body else {
        return Err("request body must be a JSON object".into());
    };
    for (name, kind) in fields {
        let Some(value) = object.get(*name) else {
            return Err(format!("{name}: Field required"));
        };
        let ok = match kind {
            Kind::String => value.is_string(),
            Kind::Array => value.is_array(),
            Kind::Integer => value.is_u64() || value.is_i64(),
        };
        if !ok {
            return Err(format!("{name}: wrong JSON type"));
        }
    }
    Ok(())
}

/// `text/event-stream` response headers.
pub(crate) fn sse_headers(request_id_header: &'static str, request_id: String) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    if let Ok(value) = request_id.parse() {
        headers.insert(request_id_header, value);
    }
    headers
}

/// Formats one SSE event (`event:` line only when `name` is given).
pub(crate) fn sse_event(name: Option<&str>, data: &str) -> Bytes {
    match name {
        Some(name) => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}
