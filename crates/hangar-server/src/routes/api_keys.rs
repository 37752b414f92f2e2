//! `/api/tenants/{tenant_id}/api-keys`: tenant-scoped keys, managed by admins. The secret is
//! returned once by `POST`; listing shows only the prefix.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hangar_protocol::{ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyId, ErrorBody, TenantId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::RequireAdmin;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJsonOrDefault, ApiPath};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
}

/// Create a key for the tenant. The response holds the key itself, shown this once.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/api-keys", tag = "api-keys",
    request_body(content = ApiKeyCreate, description = "Optional; an empty body is accepted"),
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 201, body = ApiKeyCreated), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn create_api_key(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(tenant_id): ApiPath<TenantId>,
    ApiJsonOrDefault(body): ApiJsonOrDefault<ApiKeyCreate>,
) -> ApiResult<(StatusCode, Json<ApiKeyCreated>)> {
    ApiError::check(body.validate(chrono::Utc::now()))?;
    let created = state
        .store
        .create_api_key(&admin.actor(), &tenant_id, &body)
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// List the tenant's keys (revoked ones too), newest first. Secrets are never shown.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/api-keys", tag = "api-keys",
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses((status = 200, body = [ApiKey]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_api_keys(
    State(state): State<AppState>,
    _admin: RequireAdmin,
    ApiPath(tenant_id): ApiPath<TenantId>,
) -> ApiResult<Json<Vec<ApiKey>>> {
    state.store.get_tenant(&tenant_id).await?;
    Ok(Json(state.store.list_api_keys(&tenant_id).await?))
}

/// Revoke a key: it stops working at once. 409 if it was already revoked.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/api-keys/{key_id}", tag = "api-keys",
    params(("tenant_id" = String, Path, description = "Tenant id"), ("key_id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn revoke_api_key(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath((tenant_id, key_id)): ApiPath<(TenantId, ApiKeyId)>,
) -> ApiResult<StatusCode> {
    state
        .store
        .revoke_api_key(&admin.actor(), &tenant_id, &key_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
