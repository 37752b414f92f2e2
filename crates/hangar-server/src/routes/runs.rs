//! Running the agent: `POST …/conversations/{id}/stream` starts a run and streams its events;
//! `…/runs` lists runs, `…/runs/{run_id}/events` replays one from any point then follows it
//! live (any number of watchers, `Last-Event-ID` or `?after=`), `…/runs/{run_id}/cancel`
//! stops it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use hangar_protocol::{ErrorBody, FileUploadMetadata, Run, RunList, StreamRequest, TenantId};
use hangar_store::StoredEvent;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::paging;
use crate::auth::TenantAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, ApiQuery, multipart, multipart_error, parse_json};
use crate::runs::{self, Upload};
use crate::sse::timestamp;
use crate::state::AppState;

/// A `ping` event after this long without one.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(10);
/// Events read from the store per page when replaying a finished run.
const REPLAY_PAGE: i64 = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    // The stream endpoint enforces its own limits (JSON and multipart differ), see `read_body`.
    let stream_route = OpenApiRouter::new()
        .routes(routes!(stream))
        .layer(axum::extract::DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(stream_route)
        .routes(routes!(list_runs))
        .routes(routes!(get_run))
        .routes(routes!(run_events))
        .routes(routes!(cancel_run))
}

/// Send a message and stream the agent's run as server-sent events (`progress`, `init`,
/// `assistant`, `thinking`, `tool_call`, `tool_result`, `subagent_start`, `subagent_end`,
/// `context_status`, `title`, `error`, then always `done`). The body is the contract's
/// multipart form (`request_data`, `files`, `file_metadata`) or a `StreamRequest` as JSON. The
/// run belongs to the server: a client that disconnects can follow it again from
/// `…/runs/{run_id}/events` (the id is in `X-Run-ID` and in `init`).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/stream",
    tag = "runs", request_body = StreamRequest,
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "The run's events",
         headers(("X-Run-ID" = String, description = "The run's id"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn stream(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    request: Request,
) -> ApiResult<Response> {
    let (_, conversation_id) = path;
    let (body, uploads) = read_body(&state, request).await?;
    let live = runs::submit(&state, &access.tenant_id, conversation_id, body, uploads).await?;
    let mut response = sse(live.watch(0, HEARTBEAT)).into_response();
    if let Ok(value) = HeaderValue::from_str(&live.run_id.to_string()) {
        response.headers_mut().insert("x-run-id", value);
    }
    Ok(response)
}

/// The request as JSON or as the contract's multipart form.
async fn read_body(state: &AppState, request: Request) -> ApiResult<(StreamRequest, Vec<Upload>)> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        let bytes = axum::body::to_bytes(request.into_body(), state.settings.max_body_bytes)
            .await
            .map_err(|_| {
                ApiError::too_large(format!(
                    "the request body is larger than {} bytes",
                    state.settings.max_body_bytes
                ))
            })?;
        return Ok((form_json(&bytes)?, Vec::new()));
    }
    let limit = state.settings.max_upload_bytes;
    let mut form = multipart(state, request, limit).await?;
    let mut request_data = None;
    let mut metadata = None;
    let mut files = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return Err(multipart_error(&err, limit)),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(|err| multipart_error(&err, limit))?;
        match name.as_str() {
            "request_data" => request_data = Some(bytes),
            "file_metadata" => metadata = Some(bytes),
            "files" => files.push(bytes),
            other => return Err(ApiError::bad_request(format!("unexpected form field {other:?}"))),
        }
    }
    let request_data =
        request_data.ok_or_else(|| ApiError::bad_request("the form field request_data is required"))?;
    let body = form_json(&request_data)?;
    let metadata: Vec<FileUploadMetadata> = match metadata {
        Some(bytes) => form_json(&bytes)?,
        None => Vec::new(),
    };
    if metadata.len() != files.len() {
        return Err(ApiError::bad_request(format!(
            "{} files but {} file_metadata entries; send one entry per file, in order",
            files.len(),
            metadata.len()
        )));
    }
    let uploads = metadata
        .into_iter()
        .zip(files)
        .map(|(meta, bytes)| {
            if meta.size != bytes.len() as u64 {
                return Err(ApiError::bad_request(format!(
                    "file {:?} declares {} bytes but has {}",
                    meta.filename,
                    meta.size,
                    bytes.len()
                )));
            }
            Ok(Upload { meta, bytes })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok((body, uploads))
}

/// Parses a JSON part; the contract answers malformed `request_data` or `file_metadata` with
/// 400 (not 422) and the details.
fn form_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    parse_json(bytes).map_err(|mut err| {
        if err.status == axum::http::StatusCode::UNPROCESSABLE_ENTITY {
            err.status = axum::http::StatusCode::BAD_REQUEST;
        }
        err
    })
}

/// An SSE response of run events (`id:` = `seq`) with `ping` heartbeats.
fn sse(events: impl Stream<Item = Option<Arc<StoredEvent>>> + Send + 'static) -> Response {
    let started = Instant::now();
    let stream = events.map(move |item| {
        Ok::<_, Infallible>(match item {
            Some(event) => Event::default()
                .id(event.seq.to_string())
                .event(event.event.as_str())
                .data(event.data.as_str()),
            None => Event::default().event("ping").data(
                json!({"seq": 0, "timestamp": timestamp(), "elapsed_ms": started.elapsed().as_millis() as u64})
                    .to_string(),
            ),
        })
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("ping"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Page size (1–100, default 20).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The conversation's runs, newest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/runs", tag = "runs",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"), RunQuery),
    responses((status = 200, body = RunList), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_runs(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiQuery(query): ApiQuery<RunQuery>,
) -> ApiResult<Json<RunList>> {
    let (_, conversation_id) = path;
    let (limit, offset) = paging(query.limit, query.offset, 20, 100)?;
    state
        .store
        .get_conversation(&access.tenant_id, conversation_id)
        .await?;
    let (items, total) = state
        .store
        .list_runs(&access.tenant_id, conversation_id, limit, offset)
        .await?;
    Ok(Json(RunList {
        items,
        total,
        limit,
        offset,
    }))
}

/// One run: status, turns, usage and cost.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/runs/{run_id}", tag = "runs",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"),
           ("run_id" = Uuid, Path, description = "Run id")),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_run(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid, Uuid)>,
) -> ApiResult<Json<Run>> {
    let (_, conversation_id, run_id) = path;
    Ok(Json(
        state
            .store
            .get_run(&access.tenant_id, conversation_id, run_id)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay events after this `seq` (overrides `Last-Event-ID`).
    after: Option<u64>,
}

/// A run's events as server-sent events: everything after `Last-Event-ID` (or `?after=`),
/// then, while the run goes on, the live tail until `done`.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/runs/{run_id}/events",
    tag = "runs",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"),
           ("run_id" = Uuid, Path, description = "Run id"), EventsQuery,
           ("Last-Event-ID" = Option<u64>, Header, description = "The last seq received")),
    responses((status = 200, content_type = "text/event-stream", description = "The run's events"),
              (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn run_events(
    State(state): State<AppState>,
    access: TenantAccess,
    headers: HeaderMap,
    ApiPath(path): ApiPath<(TenantId, Uuid, Uuid)>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    let (_, conversation_id, run_id) = path;
    let after = match query.after {
        Some(after) => after,
        None => match headers.get("last-event-id").map(|v| v.to_str().map(str::trim)) {
            None => 0,
            Some(Ok(text)) => text
                .parse()
                .map_err(|_| ApiError::bad_request("Last-Event-ID must be a run event's seq"))?,
            Some(Err(_)) => return Err(ApiError::bad_request("Last-Event-ID must be a run event's seq")),
        },
    };
    Ok(sse(follow(
        &state,
        &access.tenant_id,
        conversation_id,
        run_id,
        after,
    )
    .await?))
}

/// The events of a run after `after`: live from memory while it runs on this node, else from
/// the store.
pub(super) async fn follow(
    state: &AppState,
    tenant: &TenantId,
    conversation_id: Uuid,
    run_id: Uuid,
    after: u64,
) -> ApiResult<BoxStream<'static, Option<Arc<StoredEvent>>>> {
    state.store.get_run(tenant, conversation_id, run_id).await?;
    if let Some(live) = state.runs.get(run_id) {
        return Ok(live.watch(after, HEARTBEAT).boxed());
    }
    let store = state.store.clone();
    Ok(futures::stream::unfold(Some(after), move |cursor| {
        let store = store.clone();
        async move {
            let cursor = cursor?;
            match store.run_events(run_id, cursor, REPLAY_PAGE).await {
                Ok(page) if !page.is_empty() => {
                    let next = page.last().map(|e| e.seq);
                    let items: Vec<Option<Arc<StoredEvent>>> =
                        page.into_iter().map(|e| Some(Arc::new(e))).collect();
                    Some((futures::stream::iter(items), next))
                }
                Ok(_) => None,
                Err(err) => {
                    tracing::error!(%run_id, error = %err, "replay failed");
                    None
                }
            }
        }
    })
    .flatten()
    .boxed())
}

/// Stop a run: the model stream, running tools and sandbox commands stop within a second and
/// the run ends with `done{status: cancelled}`. Cancelling a finished run changes nothing.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/runs/{run_id}/cancel",
    tag = "runs",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"),
           ("run_id" = Uuid, Path, description = "Run id")),
    responses((status = 202, body = Run), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn cancel_run(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid, Uuid)>,
) -> ApiResult<(axum::http::StatusCode, Json<Run>)> {
    let (_, conversation_id, run_id) = path;
    let run = state
        .store
        .get_run(&access.tenant_id, conversation_id, run_id)
        .await?;
    if let Some(live) = state.runs.get(run_id) {
        live.cancel.cancel();
    }
    Ok((axum::http::StatusCode::ACCEPTED, Json(run)))
}
