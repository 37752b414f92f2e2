//! Operational endpoints: `/`, `/health`, `/health/live`, `/health/ready`, `/metrics` and
//! `/openapi.json`. None needs a key, except `/metrics` in production (see `auth`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use hangar_protocol::{ComponentHealth, ErrorBody, HealthReport, HealthStatus, ReadyStatus, RootInfo};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(root))
        .routes(routes!(health))
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// Name and version.
#[utoipa::path(get, path = "/", tag = "ops", responses((status = 200, body = RootInfo)))]
async fn root(State(state): State<AppState>) -> Json<RootInfo> {
    Json(RootInfo {
        name: "Hangar".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        docs_url: state.settings.docs_enabled.then(|| "/docs".into()),
    })
}

async fn check_database(state: &AppState) -> ComponentHealth {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await;
    let latency_ms = Some((started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0);
    let (status, message) = match outcome {
        Ok(Ok(())) => (
            HealthStatus::Healthy,
            format!("{} reachable", state.store.backend()),
        ),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "database health check failed");
            (
                HealthStatus::Unhealthy,
                format!("{} unreachable", state.store.backend()),
            )
        }
        Err(_) => (
            HealthStatus::Unhealthy,
            format!("{} did not answer within 5 s", state.store.backend()),
        ),
    };
    ComponentHealth {
        status,
        message,
        latency_ms,
    }
}

/// Status of every backend Hangar depends on; HTTP 503 when any is unhealthy.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport)))]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<HealthReport>) {
    let mut checks = BTreeMap::new();
    checks.insert("database".to_owned(), check_database(&state).await);
    checks.insert("sandbox".to_owned(), crate::sandbox::health(&state.sandboxes));
    let status = checks
        .values()
        .map(|c| c.status)
        .max()
        .unwrap_or(HealthStatus::Healthy);
    let code = if status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let report = HealthReport {
        status,
        version: env!("CARGO_PKG_VERSION").into(),
        environment: state.settings.app_env.as_str().into(),
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        checks,
    };
    (code, Json(report))
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health/live", tag = "ops", responses((status = 200, body = ReadyStatus)))]
async fn live() -> Json<ReadyStatus> {
    Json(ReadyStatus {
        status: "alive".into(),
    })
}

/// Readiness: the database answers and the server is not shutting down.
#[utoipa::path(get, path = "/health/ready", tag = "ops",
    responses((status = 200, body = ReadyStatus), (status = 503, body = ErrorBody)))]
async fn ready(State(state): State<AppState>) -> ApiResult<Json<ReadyStatus>> {
    if state.is_shutting_down() {
        return Err(ApiError::unavailable("shutting down"));
    }
    match tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(ReadyStatus {
            status: "ready".into(),
        })),
        _ => Err(ApiError::unavailable(
            "service not ready: the database does not answer",
        )),
    }
}

/// Prometheus metrics (text format). In production an admin key is needed unless
/// `METRICS_PUBLIC=true`.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain", body = String), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn metrics(
    State(state): State<AppState>,
    principal: Option<Extension<Principal>>,
) -> ApiResult<Response> {
    let Some(handle) = state.metrics.as_ref().filter(|_| state.settings.metrics_enabled) else {
        return Err(ApiError::not_found(
            "metrics are disabled (METRICS_ENABLED=false)",
        ));
    };
    if state.metrics_protected() && !principal.is_some_and(|Extension(p)| p.is_admin()) {
        return Err(ApiError::forbidden(
            "metrics require an admin key in production (or METRICS_PUBLIC=true)",
        ));
    }
    handle.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response())
}

/// The rendered OpenAPI document, computed once at start-up.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<str>);

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.to_string()).into_response()
}

/// Unknown route: 404 in the envelope.
pub async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

/// Known route, wrong method: 405 in the envelope.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        hangar_protocol::ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
