//! Route groups, one file each. `api()` gathers them into one `OpenApiRouter`, so the OpenAPI
//! document is generated from the very handlers that serve the requests.

mod api_keys;
mod audit;
mod conversations;
mod files;
mod models;
mod ops;
mod runs;
mod simple_chats;
mod socket;
mod tenants;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub use ops::{OpenApiJson, no_route, wrong_method};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hangar",
        description = "Multi-tenant backend for running AI agents. Admin keys (API_KEYS) reach every route; \
                       tenant keys reach only /api/tenants/{their tenant}/…"
    ),
    modifiers(&Security),
    // The WebSocket's frames (no handler body names them).
    components(schemas(hangar_protocol::ClientMessage, hangar_protocol::ServerNotice)),
    tags(
        (name = "ops", description = "Probes, metrics and this document"),
        (name = "tenants", description = "Organisations served by Hangar"),
        (name = "models", description = "The model catalogue with prices"),
        (name = "api-keys", description = "Tenant-scoped API keys"),
        (name = "audit", description = "Audit log of admin actions and refused requests"),
        (name = "conversations", description = "Agent conversations and their message logs"),
        (name = "runs", description = "Agent runs: start, stream, replay, cancel"),
        (name = "files", description = "Conversation workspaces: versioned files, snapshots per run, diff, restore"),
        (name = "simple-chats", description = "Direct chats with a model, streamed as server-sent events"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops::routes())
        .merge(tenants::routes())
        .merge(models::routes())
        .merge(api_keys::routes())
        .merge(audit::routes())
        .merge(simple_chats::routes())
        .merge(conversations::routes())
        .merge(runs::routes())
        .merge(socket::routes())
        .merge(files::routes())
}

/// Resolves `limit`/`offset` query values (kept as plain fields of each query struct: serde's
/// `flatten` would turn them into strings under `serde_urlencoded`).
pub fn paging(limit: Option<i64>, offset: Option<i64>, default: i64, max: i64) -> ApiResult<(i64, i64)> {
    let limit = limit.unwrap_or(default);
    let offset = offset.unwrap_or(0);
    let mut problems = Vec::new();
    if !(1..=max).contains(&limit) {
        problems.push(hangar_protocol::ErrorDetail::field(
            "query.limit",
            "out_of_range",
            format!("limit must be between 1 and {max}"),
        ));
    }
    if offset < 0 {
        problems.push(hangar_protocol::ErrorDetail::field(
            "query.offset",
            "out_of_range",
            "offset must be at least 0",
        ));
    }
    ApiError::check(problems)?;
    Ok((limit, offset))
}
