//! `/api/models`: the global model catalogue (seed contract §1.3). Any authenticated caller may
//! read it; changing it takes an admin key.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hangar_protocol::{ErrorBody, Model, ModelCreate, ModelId, ModelStatus, ModelUpdate};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authenticated, RequireAdmin};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models, create_model))
        .routes(routes!(get_model, update_model, delete_model))
        .routes(routes!(set_model_status))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelQuery {
    /// Only models with this status.
    status: Option<ModelStatus>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The new status.
    status: ModelStatus,
}

/// List models, ordered by display name.
#[utoipa::path(get, path = "/api/models", tag = "models", params(ModelQuery),
    responses((status = 200, body = [Model]), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_models(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiQuery(query): ApiQuery<ModelQuery>,
) -> ApiResult<Json<Vec<Model>>> {
    Ok(Json(state.store.list_models(query.status).await?))
}

/// Add a model with its prices (USD per 1,000 tokens, up to 6 decimals, as strings or numbers).
#[utoipa::path(post, path = "/api/models", tag = "models", request_body = ModelCreate,
    responses((status = 201, body = Model), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn create_model(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiJson(body): ApiJson<ModelCreate>,
) -> ApiResult<(StatusCode, Json<Model>)> {
    ApiError::check(body.validate())?;
    let model = state.store.create_model(&admin.actor(), &body).await?;
    Ok((StatusCode::CREATED, Json(model)))
}

/// Get a model.
#[utoipa::path(get, path = "/api/models/{model_id}", tag = "models",
    params(("model_id" = String, Path, description = "Model id")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn get_model(
    State(state): State<AppState>,
    _caller: Authenticated,
    ApiPath(model_id): ApiPath<ModelId>,
) -> ApiResult<Json<Model>> {
    Ok(Json(state.store.get_model(&model_id).await?))
}

/// Update a model: fields present are applied (`null` clears `model_region` and
/// `extended_context_window`), fields absent are kept.
#[utoipa::path(put, path = "/api/models/{model_id}", tag = "models", request_body = ModelUpdate,
    params(("model_id" = String, Path, description = "Model id")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn update_model(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(model_id): ApiPath<ModelId>,
    ApiJson(body): ApiJson<ModelUpdate>,
) -> ApiResult<Json<Model>> {
    ApiError::check(body.validate())?;
    Ok(Json(
        state.store.update_model(&admin.actor(), &model_id, &body).await?,
    ))
}

/// Mark a model active or deprecated.
#[utoipa::path(patch, path = "/api/models/{model_id}/status", tag = "models",
    params(("model_id" = String, Path, description = "Model id"), StatusQuery),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn set_model_status(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(model_id): ApiPath<ModelId>,
    ApiQuery(query): ApiQuery<StatusQuery>,
) -> ApiResult<Json<Model>> {
    let patch = ModelUpdate {
        status: Some(query.status),
        ..ModelUpdate::default()
    };
    Ok(Json(
        state
            .store
            .update_model(&admin.actor(), &model_id, &patch)
            .await?,
    ))
}

/// Delete a model. 409, with counts in `details`, while tenants, conversations, chats or usage
/// records refer to it.
#[utoipa::path(delete, path = "/api/models/{model_id}", tag = "models",
    params(("model_id" = String, Path, description = "Model id")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete_model(
    State(state): State<AppState>,
    RequireAdmin(admin): RequireAdmin,
    ApiPath(model_id): ApiPath<ModelId>,
) -> ApiResult<StatusCode> {
    state.store.delete_model(&admin.actor(), &model_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
