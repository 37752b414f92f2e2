//! `/api/audit-log`: what admins changed and which requests were refused, newest first.

use axum::Json;
use axum::extract::State;
use hangar_protocol::{AuditRecord, ErrorBody};
use hangar_store::AuditFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::paging;
use crate::auth::RequireAdmin;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only records about this tenant.
    tenant_id: Option<String>,
    /// Only this action, e.g. `tenant.create` or `auth.denied`.
    action: Option<String>,
    /// Page size (1–1000, default 100).
    limit: Option<i64>,
    /// Rows to skip.
    offset: Option<i64>,
}

/// List audit records (admin only).
#[utoipa::path(get, path = "/api/audit-log", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditRecord]), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_audit(
    State(state): State<AppState>,
    _admin: RequireAdmin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    let (limit, offset) = paging(query.limit, query.offset, 100, 1000)?;
    let filter = AuditFilter {
        tenant_id: query.tenant_id,
        action: query.action,
        limit,
        offset,
    };
    Ok(Json(state.store.list_audit(&filter).await?))
}
