//! `/api/tenants`: tenant CRUD (seed contract §1.2). Listing, creating, updating and deleting
//! tenants is for admins; a tenant key may read its own tenant.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hangar_protocol::{ErrorBody, Tenant, TenantCreate, TenantId, TenantStatus, TenantUpdate};
use hangar_store::TenantFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::paging;
use crate::auth::{RequireAdmin, TenantAccess};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// Only tenants with this status.
    status: Option<TenantStatus>,
    /// Page size (1–1000, default 100).
    limit: Option<i64>,
    /// Rows to skip.
    offset: Option<i64>,
}

/// List tenants, newest first.
#[utoipa::path(get, path = "/api/tenants", tag = "tenants", params(TenantQuery),
    responses((status = 200, body = [Tenant]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_tenants(
    State(state): State<AppState>,
    _admin: RequireAdmin,
    ApiQuery(query): ApiQuery<TenantQuery>,
) -> ApiResult<Json<Vec<Tenant>>> {
    let (limit, offset) = paging(query.limit, query.offset, 100, 1000)?;
    let filter = TenantFilter {
        status: query.status,
        limit,
        offset,
    };
    Ok(Json(state.store.list_tenants(&filter).await?))
}

/// Create a tenant. Its default model, if given, must exist (404) and be active (400).
#[utoipa::path(post, path = "/api/tenants", tag = "tenants", request_body = TenantCreate,
    responses((status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn create_tenant(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiJson(body): ApiJson<TenantCreate>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    ApiError::check(body.validate())?;
    let tenant = state.store.create_tenant(&admin.actor(), &body).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Get a tenant. A tenant key can read only its own tenant.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_tenant(State(state): State<AppState>, access: TenantAccess) -> ApiResult<Json<Tenant>> {
    Ok(Json(state.store.get_tenant(&access.tenant_id).await?))
}

/// Update a tenant: fields left out are kept, `null` clears `system_prompt` or `model_id`.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}", tag = "tenants", request_body = TenantUpdate,
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn update_tenant(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(tenant_id): ApiPath<TenantId>,
    ApiJson(body): ApiJson<TenantUpdate>,
) -> ApiResult<Json<Tenant>> {
    ApiError::check(body.validate())?;
    Ok(Json(
        state
            .store
            .update_tenant(&admin.actor(), &tenant_id, &body)
            .await?,
    ))
}

/// Delete a tenant and its API keys. 409, with counts, while it still owns conversations,
/// chats, usage records, skills, MCP servers or workspaces.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}", tag = "tenants",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete_tenant(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(tenant_id): ApiPath<TenantId>,
) -> ApiResult<StatusCode> {
    state.store.delete_tenant(&admin.actor(), &tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
