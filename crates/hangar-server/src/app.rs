//! Assembling the application: `router(state)` builds the axum app with its middleware, and
//! `serve` runs it on a listener until a shutdown signal, draining in-flight requests for at most
//! `SHUTDOWN_TIMEOUT`. Tests call both with a listener on `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::{Extension, Router, middleware};
use hangar_protocol::ErrorCode;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::auth;
use crate::error::ApiError;
use crate::middleware::rate_limit::RateLimit;
use crate::middleware::security_headers::SecurityHeaders;
use crate::middleware::{observe, rate_limit, request_id, security_headers};
use crate::routes::{self, OpenApiJson};
use crate::state::AppState;

/// Headers a browser on another origin may read.
const EXPOSED_HEADERS: &[&str] = &[
    "x-request-id",
    "x-process-time",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "retry-after",
    "x-chat-id",
];

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::api().into_openapi()
}

fn cors(state: &AppState) -> CorsLayer {
    let settings = &state.settings;
    let methods: Vec<Method> = settings
        .cors_methods
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    let headers: Vec<HeaderName> = settings
        .cors_headers
        .iter()
        .filter_map(|h| h.parse().ok())
        .collect();
    let exposed: Vec<HeaderName> = EXPOSED_HEADERS
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    let layer = CorsLayer::new()
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers(exposed);
    if settings.cors_origins.iter().any(|o| o == "*") {
        // Any origin, but then without credentials (browsers refuse the combination).
        layer.allow_origin(AllowOrigin::any())
    } else {
        let origins: Vec<HeaderValue> = settings
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        layer.allow_origin(origins).allow_credentials(true)
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("handler panicked");
    axum::response::IntoResponse::into_response(ApiError::internal())
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    let (api, doc) = routes::api().split_for_parts();
    let doc_json: Arc<str> = doc.to_pretty_json().unwrap_or_else(|_| "{}".into()).into();
    let mut app = api;
    if state.settings.docs_enabled {
        app = app.merge(SwaggerUi::new("/docs").config(Config::from("/openapi.json")));
    }
    let timeout =
        TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, state.settings.request_timeout());
    let security = SecurityHeaders::new(state.settings.hsts_enabled.then_some(state.settings.hsts_max_age));
    let rate_limit = RateLimit::new(&state.settings, state.rate_limiter.clone());
    app.route_layer(middleware::from_fn(observe::capture_route))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::wrong_method)
        .layer(Extension(OpenApiJson(doc_json)))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        // Inside auth: the quota is the authenticated principal's.
        .layer(middleware::from_fn_with_state(rate_limit, rate_limit::layer))
        .layer(middleware::from_fn_with_state(state.clone(), auth::layer))
        .layer(timeout)
        .layer(middleware::map_response(timeout_envelope))
        .layer(cors(&state))
        .layer(middleware::from_fn_with_state(security, security_headers::layer))
        .layer(middleware::from_fn(observe::layer))
        .layer(middleware::from_fn(request_id::layer))
        .with_state(state)
}

/// The timeout layer answers with an empty 408; give it the envelope.
async fn timeout_envelope(response: axum::response::Response) -> axum::response::Response {
    if response.status() == StatusCode::REQUEST_TIMEOUT && response.headers().get("content-type").is_none() {
        let error = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            "request timed out",
        );
        return axum::response::IntoResponse::into_response(error);
    }
    response
}

/// Serves `router(state)` on `listener` until `shutdown` completes, then waits up to
/// `SHUTDOWN_TIMEOUT` for in-flight requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grace = state.settings.shutdown_timeout();
    match state.sandboxes.start().await {
        Ok(0) => {}
        Ok(reaped) => tracing::warn!(reaped, "removed sandboxes left behind by a previous process"),
        Err(err) => tracing::warn!(error = %err, "sandbox start-up clean-up failed"),
    }
    let recovered = state.runs.recover(&*state.store).await;
    if recovered > 0 {
        tracing::warn!(recovered, "closed runs interrupted by the previous process's end");
    }
    if let Err(err) = state.sandboxes.backend().ready() {
        tracing::warn!(error = %err, "sandboxes are unavailable; commands will fail until this is fixed");
    }
    let app = router(state.clone());
    let upkeep = state
        .metrics
        .clone()
        .map(|handle| tokio::spawn(metrics_upkeep(handle)));
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let draining_state = state.clone();
    // Without TCP_NODELAY the first SSE event after the headers waits for the client's delayed
    // ACK: ~40 ms added to every fast first token (measured by benches/chat.rs).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        draining_state.begin_shutdown();
        // Runs get the grace period to finish, then are cancelled and close with `done`;
        // their SSE streams end with them.
        let runs = draining_state.runs.clone();
        tokio::spawn(async move { runs.shutdown(grace).await });
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: draining in-flight requests"
        );
        let _ = signalled_tx.send(());
    });
    let deadline = async move {
        if signalled_rx.await.is_ok() {
            tokio::time::sleep(grace + crate::runs::CANCEL_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!("shutdown timeout reached; dropping remaining connections"),
    }
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    state.runs.wait_closed(grace + crate::runs::CANCEL_GRACE).await;
    state.sandboxes.shutdown().await;
    state.store.close().await;
    Ok(())
}

/// Drains the Prometheus histograms every few seconds. Without it they are drained only when
/// `/metrics` is scraped, and an unscraped server's memory grows with every request.
async fn metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}
