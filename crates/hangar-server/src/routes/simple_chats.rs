//! `/api/tenants/{tenant_id}/simple-chats`: direct multi-turn chat with a model (seed contract
//! §1.10). One endpoint creates (no `chat_id`) or continues a chat and streams the answer as SSE:
//! `text_delta`… then `done` (after an `error` when something failed).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hangar_protocol::{
    ChatRole, ChatStatus, ErrorBody, ModelStatus, SimpleChat, SimpleChatDetail, SimpleChatList,
    SimpleChatStreamRequest, TenantId, TenantStatus,
};
use hangar_store::{NewSimpleChat, SimpleChatFilter};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::paging;
use crate::auth::TenantAccess;
use crate::chat::{self, Exchange};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::sse;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream_chat))
        .routes(routes!(list_chats))
        .routes(routes!(get_chat, delete_chat))
        .routes(routes!(archive_chat))
}

/// Send a message: creates a chat (no `chat_id`; the new id is in the `X-Chat-ID` header) or
/// continues one, and streams the answer as server-sent events: `text_delta {content}`… then
/// `done {status, title, model_id, usage, cost_usd}`, preceded by `error {error_type, message,
/// recoverable}` when the call failed. The answer is stored and billed even if the client
/// disconnects.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/simple-chats/stream", tag = "simple-chats",
    request_body = SimpleChatStreamRequest,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, content_type = "text/event-stream", description = "text_delta… then done",
         headers(("X-Chat-ID" = String, description = "Id of a newly created chat"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn stream_chat(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<SimpleChatStreamRequest>,
) -> ApiResult<Response> {
    let problems = body.validate();
    if !problems.is_empty() {
        return Err(ApiError::bad_request("invalid chat request").with_details(problems));
    }
    let tenant = state.store.get_tenant(&access.tenant_id).await?;
    if tenant.status != TenantStatus::Active {
        return Err(ApiError::bad_request(format!(
            "tenant '{}' is inactive",
            tenant.tenant_id
        )));
    }
    let (existing, model_id) = match body.chat_id {
        Some(id) => {
            let chat = state.store.get_simple_chat(&tenant.tenant_id, id).await?;
            if chat.status == ChatStatus::Archived {
                return Err(ApiError::bad_request(format!("chat {id} is archived")));
            }
            let model_id = chat.model_id.clone();
            (Some(chat), model_id)
        }
        None => (
            None,
            body.model_id
                .clone()
                .ok_or_else(|| ApiError::bad_request("model_id is required"))?,
        ),
    };
    let model = state.store.get_model(&model_id).await?;
    if model.status != ModelStatus::Active {
        return Err(ApiError::bad_request(format!("model '{model_id}' is deprecated")));
    }
    let chain = state.llm.chain(&*state.store, model).await.map_err(|err| {
        tracing::warn!(error = %err, "model not usable");
        ApiError::unavailable(format!("model '{model_id}' cannot be called: {err}"))
    })?;
    let (chat, created) = match existing {
        Some(chat) => (chat, false),
        None => {
            let new = NewSimpleChat {
                tenant_id: tenant.tenant_id.clone(),
                user_id: body.user_id.clone().unwrap_or_default(),
                model_id: model_id.clone(),
                application_type: body.application_type.clone().unwrap_or_default(),
                system_prompt: body.system_prompt.clone().unwrap_or_default(),
            };
            (state.store.create_simple_chat(&new).await?, true)
        }
    };
    state
        .store
        .append_simple_chat_message(chat.chat_id, ChatRole::User, &body.message)
        .await?;
    let history = state.store.simple_chat_messages(chat.chat_id).await?;
    let chat_id = chat.chat_id;
    let (sink, sse) = sse::channel();
    let exchange = Exchange { chat, chain, history };
    tokio::spawn(chat::run(state.clone(), exchange, sink, CancellationToken::new()));
    let mut response = sse.into_response();
    if created && let Ok(value) = HeaderValue::from_str(&chat_id.to_string()) {
        response.headers_mut().insert("x-chat-id", value);
    }
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatQuery {
    user_id: Option<String>,
    application_type: Option<String>,
    status: Option<ChatStatus>,
    /// Page size (1–100, default 50).
    limit: Option<i64>,
    /// Rows to skip.
    offset: Option<i64>,
}

/// List the tenant's chats, most recently active first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/simple-chats", tag = "simple-chats",
    params(("tenant_id" = String, Path, description = "Tenant id"), ChatQuery),
    responses((status = 200, body = SimpleChatList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_chats(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(query): ApiQuery<ChatQuery>,
) -> ApiResult<Json<SimpleChatList>> {
    let (limit, offset) = paging(query.limit, query.offset, 50, 100)?;
    state.store.get_tenant(&access.tenant_id).await?;
    let filter = SimpleChatFilter {
        user_id: query.user_id,
        application_type: query.application_type,
        status: query.status,
        limit,
        offset,
    };
    let (items, total) = state.store.list_simple_chats(&access.tenant_id, &filter).await?;
    Ok(Json(SimpleChatList {
        items,
        total,
        limit,
        offset,
    }))
}

/// A chat with its messages, oldest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/simple-chats/{chat_id}", tag = "simple-chats",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("chat_id" = Uuid, Path, description = "Chat id")),
    responses((status = 200, body = SimpleChatDetail), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_chat(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<Json<SimpleChatDetail>> {
    let (_, chat_id) = path;
    let chat = state.store.get_simple_chat(&access.tenant_id, chat_id).await?;
    let messages = state.store.simple_chat_messages(chat_id).await?;
    Ok(Json(SimpleChatDetail { chat, messages }))
}

/// Archive a chat: it stays readable but takes no more messages.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/simple-chats/{chat_id}/archive", tag = "simple-chats",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("chat_id" = Uuid, Path, description = "Chat id")),
    responses((status = 200, body = SimpleChat), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn archive_chat(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<Json<SimpleChat>> {
    let (_, chat_id) = path;
    Ok(Json(
        state
            .store
            .archive_simple_chat(&access.tenant_id, chat_id)
            .await?,
    ))
}

/// Delete a chat and its messages. Its usage records are kept for billing.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/simple-chats/{chat_id}", tag = "simple-chats",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("chat_id" = Uuid, Path, description = "Chat id")),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete_chat(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<StatusCode> {
    let (_, chat_id) = path;
    state.store.delete_simple_chat(&access.tenant_id, chat_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
