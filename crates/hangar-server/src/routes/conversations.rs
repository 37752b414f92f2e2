//! `/api/tenants/{tenant_id}/conversations`: conversations and their message log (contract
//! §1.4, QUIRKs fixed: the message log is tenant-scoped and 404s for unknown conversations, a
//! conversation with a run in progress cannot be deleted (409), deleting one removes its
//! workspace's versions and blobs).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hangar_protocol::{
    Conversation, ConversationCreate, ConversationList, ConversationStatus, ConversationUpdate, ErrorBody,
    MessageLog, ModelStatus, TenantId,
};
use hangar_store::{ConversationFilter, NewConversation};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::paging;
use crate::auth::TenantAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations, create_conversation))
        .routes(routes!(
            get_conversation,
            update_conversation,
            delete_conversation
        ))
        .routes(routes!(archive_conversation))
        .routes(routes!(conversation_messages))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    user_id: Option<String>,
    status: Option<ConversationStatus>,
    /// Created at or after (RFC 3339).
    from_date: Option<DateTime<Utc>>,
    /// Created at or before (RFC 3339).
    to_date: Option<DateTime<Utc>>,
    /// Page size (1–100, default 50).
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The tenant's conversations, most recently active first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations", tag = "conversations",
    params(("tenant_id" = String, Path, description = "Tenant id"), ConversationQuery),
    responses((status = 200, body = ConversationList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_conversations(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiQuery(query): ApiQuery<ConversationQuery>,
) -> ApiResult<Json<ConversationList>> {
    let (limit, offset) = paging(query.limit, query.offset, 50, 100)?;
    state.store.get_tenant(&access.tenant_id).await?;
    let filter = ConversationFilter {
        user_id: query.user_id,
        status: query.status,
        from: query.from_date,
        to: query.to_date,
        limit,
        offset,
    };
    let (items, total) = state.store.list_conversations(&access.tenant_id, &filter).await?;
    Ok(Json(ConversationList {
        items,
        total,
        limit,
        offset,
    }))
}

/// Start a conversation. Without `model_id` the tenant's default model is used.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations", tag = "conversations",
    request_body = ConversationCreate,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = Conversation), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn create_conversation(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiJson(body): ApiJson<ConversationCreate>,
) -> ApiResult<(StatusCode, Json<Conversation>)> {
    ApiError::check(body.validate())?;
    let tenant = state.store.get_tenant(&access.tenant_id).await?;
    let model_id = body
        .model_id
        .clone()
        .or(tenant.model_id.clone())
        .ok_or_else(|| ApiError::bad_request("no model_id given and the tenant has no default model"))?;
    let model = state.store.get_model(&model_id).await?;
    if model.status != ModelStatus::Active {
        return Err(ApiError::bad_request(format!("model '{model_id}' is deprecated")));
    }
    let conversation = state
        .store
        .create_conversation(&NewConversation {
            tenant_id: tenant.tenant_id,
            user_id: body.user_id,
            model_id,
            workspace_enabled: body.workspace_enabled,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(conversation)))
}

/// One conversation.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}", tag = "conversations",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_conversation(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<Json<Conversation>> {
    let (_, id) = path;
    Ok(Json(state.store.get_conversation(&access.tenant_id, id).await?))
}

/// Change the title or the status.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}", tag = "conversations",
    request_body = ConversationUpdate,
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn update_conversation(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiJson(body): ApiJson<ConversationUpdate>,
) -> ApiResult<Json<Conversation>> {
    let (_, id) = path;
    ApiError::check(body.validate())?;
    Ok(Json(
        state
            .store
            .update_conversation(&access.tenant_id, id, &body)
            .await?,
    ))
}

/// Archive a conversation: it stays readable but takes no more messages.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/archive",
    tag = "conversations",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = Conversation), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn archive_conversation(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<Json<Conversation>> {
    let (_, id) = path;
    let update = ConversationUpdate {
        title: None,
        status: Some(ConversationStatus::Archived),
    };
    Ok(Json(
        state
            .store
            .update_conversation(&access.tenant_id, id, &update)
            .await?,
    ))
}

/// Delete a conversation with its messages, runs and sandbox; usage records are kept. A
/// conversation with a run in progress answers 409.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}", tag = "conversations",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete_conversation(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<StatusCode> {
    let (_, id) = path;
    state.store.get_conversation(&access.tenant_id, id).await?;
    // Hold the lease while deleting, so no run can start meanwhile.
    let _lease = state.runs.lease(id, Uuid::now_v7()).await?;
    let manifest = state.store.workspace_for(&access.tenant_id, id).await?;
    state.store.delete_conversation(&access.tenant_id, id).await?;
    state
        .sandboxes
        .release(&id.to_string(), "conversation deleted")
        .await;
    state.workspaces.remove(&access.tenant_id, id, manifest).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The conversation's message log: the user's messages and the assistant's turns (the events
/// of each run, whole blocks, secrets redacted), oldest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/messages",
    tag = "conversations",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = [MessageLog]), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn conversation_messages(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<Json<Vec<MessageLog>>> {
    let (_, id) = path;
    Ok(Json(state.store.message_log(&access.tenant_id, id).await?))
}
