//! Per-request metrics (by route template, never by raw path, so cardinality stays bounded) and
//! one JSON access-log line per request with secrets redacted from the query string.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::redact::redact_uri;

/// The matched route template, carried from inside the router to the outer observer.
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub String);

/// Who made the request (`admin`, `tenant:<id>`, `anonymous`), set by the auth layer.
#[derive(Debug, Clone)]
pub struct PrincipalLabel(pub String);

/// Installed with `Router::route_layer`, where the matched path is known.
pub async fn capture_route(request: Request, next: Next) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(template) = template {
        response.extensions_mut().insert(RouteTemplate(template));
    }
    response
}

fn is_quiet(path: &str) -> bool {
    path.starts_with("/health") || path == "/metrics"
}

pub async fn layer(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = redact_uri(request.uri());
    let path = request.uri().path().to_owned();
    let user_agent = request
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect::<String>());
    let mut response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or_else(|| "<unmatched>".to_owned(), |r| r.0.clone());
    let principal = response.extensions().get::<PrincipalLabel>().map(|p| p.0.clone());
    metrics::counter!(
        "http_requests_total",
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method.to_string(), "route" => route.clone())
        .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&format!("{:.4}", elapsed.as_secs_f64())) {
        response.headers_mut().insert("x-process-time", value);
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if is_quiet(&path) {
        tracing::debug!(target: "hangar::access", %method, %uri, route, status, latency_ms, "request completed");
    } else {
        tracing::info!(
            target: "hangar::access",
            %method, %uri, route, status, latency_ms, principal, user_agent,
            "request completed"
        );
    }
    response
}
