//! Rate limiting of the conversation API (contract §4.3, with its QUIRKs fixed): every route at
//! or below `/api/tenants/{tenant_id}/conversations` (list/create, one conversation, archive,
//! messages, stream, runs, run events, cancel, and whatever is added there later: files,
//! workspace, WebSocket) counts against `RATE_LIMIT_REQUESTS` per `RATE_LIMIT_PERIOD` seconds.
//! Simple chats, admin APIs, health, metrics and docs are not limited.
//!
//! Installed inside the auth layer (it keys on the authenticated principal) and decided by the
//! matched route template, never by the raw path. Admitted responses carry `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds at which the whole quota is
//! back); a refusal is a 429 `RATE_LIMIT_EXCEEDED` envelope whose `error.retry_after` field
//! (beside `code` and `message`, as in the contract) repeats the `Retry-After` header, with
//! `X-RateLimit-Remaining: 0`. A failing limiter backend lets the request through (fail open)
//! and logs a warning.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hangar_coord::{RateDecision, RateLimiter};
use hangar_protocol::ErrorCode;

use crate::auth::Principal;
use crate::config::Settings;
use crate::error::ApiError;

/// Routes whose template is this or starts with it plus `/` are limited.
const LIMITED_PREFIX: &str = "/api/tenants/{tenant_id}/conversations";
/// Longest `X-User-ID` kept in a key; longer values share the quota of their prefix.
const MAX_USER_CHARS: usize = 128;

/// The limiter and the settings it enforces; the state of [`layer`].
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<dyn RateLimiter>,
    enabled: bool,
    limit: u32,
    period: Duration,
}

impl RateLimit {
    pub fn new(settings: &Settings, limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            limiter,
            enabled: settings.rate_limit_enabled,
            limit: settings.rate_limit_requests,
            period: Duration::from_secs(settings.rate_limit_period),
        }
    }
}

fn is_limited(template: &str) -> bool {
    template
        .strip_prefix(LIMITED_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The quota a request counts against.
///
/// It is the authenticated principal (an admin key's fingerprint, or a tenant key's tenant and
/// key id), then the `{tenant_id}` of the path, then `X-User-ID` when present. Headers alone never
/// choose the quota: the contract's `X-Tenant-ID`/`X-User-ID` key (or, without them, the first
/// `X-Forwarded-For` entry) let any caller pick a fresh budget per request. `X-User-ID` still
/// counts because a tenant's backend calls on behalf of its users: it partitions the quota inside
/// the already-authenticated principal and tenant, so one busy user does not starve the others.
/// (It follows that a principal sending a new `X-User-ID` each time gets a new budget each time:
/// the limit protects users from each other and the service from runaway clients, not from a
/// tenant that means harm.) Parts are quoted so that no tenant or user id can impersonate another
/// key.
fn key(principal: &Principal, tenant: &str, user: Option<&str>) -> String {
    match user {
        Some(user) => format!("{}:{tenant:?}:{user:?}", principal.label()),
        None => format!("{}:{tenant:?}", principal.label()),
    }
}

fn user_header(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get("x-user-id")?;
    let user: String = String::from_utf8_lossy(raw.as_bytes())
        .trim()
        .chars()
        .take(MAX_USER_CHARS)
        .collect();
    (!user.is_empty()).then_some(user)
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: u64) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, value);
    }
}

pub async fn layer(
    State(config): State<RateLimit>,
    matched: Option<MatchedPath>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response {
    let Some(route) = matched.filter(|m| config.enabled && is_limited(m.as_str())) else {
        return next.run(request).await;
    };
    // Auth lets only probes and OPTIONS through without a principal; neither has a quota.
    let Some(principal) = request.extensions().get::<Principal>() else {
        return next.run(request).await;
    };
    let tenant = params
        .ok()
        .and_then(|params| {
            params
                .iter()
                .find(|(name, _)| *name == "tenant_id")
                .map(|(_, value)| value.to_owned())
        })
        .unwrap_or_default();
    let key = key(principal, &tenant, user_header(request.headers()).as_deref());
    let decision = match config.limiter.check(&key, config.limit, config.period).await {
        Ok(decision) => decision,
        Err(err) => {
            tracing::warn!(error = %err, "rate limiter unavailable; request let through");
            return next.run(request).await;
        }
    };
    let limit = u64::from(config.limit);
    match decision {
        RateDecision::Allowed { remaining, reset_at } => {
            let mut response = next.run(request).await;
            let headers = response.headers_mut();
            set_header(headers, "x-ratelimit-limit", limit);
            set_header(headers, "x-ratelimit-remaining", u64::from(remaining));
            set_header(headers, "x-ratelimit-reset", reset_at);
            response
        }
        RateDecision::Refused {
            retry_after,
            reset_at,
        } => {
            metrics::counter!("rate_limited_total", "route" => route.as_str().to_owned()).increment(1);
            tracing::debug!(key, retry_after, "rate limit exceeded");
            let mut error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimitExceeded,
                format!(
                    "rate limit exceeded: at most {limit} requests per {} s; retry in {retry_after} s",
                    config.period.as_secs()
                ),
            );
            error.retry_after = Some(retry_after);
            let mut response = error.into_response();
            let headers = response.headers_mut();
            set_header(headers, "x-ratelimit-limit", limit);
            set_header(headers, "x-ratelimit-remaining", 0);
            set_header(headers, "x-ratelimit-reset", reset_at);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use axum::body::Body;
    use axum::routing::get;
    use axum::{Extension, Router, middleware};
    use hangar_coord::{InProcessRateLimiter, RateLimitError};
    use hangar_protocol::{ApiKeyId, TenantId};
    use tower::ServiceExt;

    use super::*;

    struct Broken;

    #[async_trait]
    impl RateLimiter for Broken {
        async fn check(&self, _: &str, _: u32, _: Duration) -> Result<RateDecision, RateLimitError> {
            Err(RateLimitError::Backend("connection refused".into()))
        }
    }

    fn app(limiter: Arc<dyn RateLimiter>, limit: u32) -> Router {
        let config = RateLimit {
            limiter,
            enabled: true,
            limit,
            period: Duration::from_secs(60),
        };
        Router::new()
            .route("/api/tenants/{tenant_id}/conversations", get(|| async { "ok" }))
            .route("/api/tenants/{tenant_id}/simple-chats", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(config, layer))
            .layer(Extension(Principal::Anonymous))
    }

    async fn call(app: &Router, path: &str) -> Response {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn a_broken_backend_lets_requests_through() {
        let app = app(Arc::new(Broken), 1);
        for _ in 0..3 {
            let response = call(&app, "/api/tenants/acme/conversations").await;
            assert_eq!(response.status(), StatusCode::OK);
            assert!(response.headers().get("x-ratelimit-limit").is_none());
        }
    }

    #[tokio::test]
    async fn only_conversation_routes_count() {
        let app = app(Arc::new(InProcessRateLimiter::default()), 1);
        let first = call(&app, "/api/tenants/acme/conversations").await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["x-ratelimit-remaining"], "0");
        let refused = call(&app, "/api/tenants/acme/conversations").await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let chats = call(&app, "/api/tenants/acme/simple-chats").await;
        assert_eq!(chats.status(), StatusCode::OK);
        assert!(chats.headers().get("x-ratelimit-limit").is_none());
    }

    #[test]
    fn limited_templates() {
        for template in [
            "/api/tenants/{tenant_id}/conversations",
            "/api/tenants/{tenant_id}/conversations/{conversation_id}/archive",
            "/api/tenants/{tenant_id}/conversations/{conversation_id}/runs/{run_id}/cancel",
            "/api/tenants/{tenant_id}/conversations/{conversation_id}/files/{*path}",
        ] {
            assert!(is_limited(template), "{template}");
        }
        for template in [
            "/api/tenants/{tenant_id}/simple-chats",
            "/api/tenants/{tenant_id}/conversations-export",
            "/api/tenants/{tenant_id}",
            "/health",
        ] {
            assert!(!is_limited(template), "{template}");
        }
    }

    #[test]
    fn keys_separate_principals_tenants_and_users() {
        let admin = Principal::Admin {
            fingerprint: "abcd1234".into(),
        };
        let tenant = Principal::Tenant {
            tenant_id: "acme".parse::<TenantId>().unwrap(),
            key_id: "k1".parse::<ApiKeyId>().unwrap(),
        };
        let keys = [
            key(&admin, "acme", None),
            key(&admin, "acme", Some("u1")),
            key(&admin, "acme", Some("u2")),
            key(&admin, "beta", Some("u1")),
            key(&tenant, "acme", Some("u1")),
            // A tenant id that tries to look like a tenant plus a user.
            key(&admin, "acme\":\"u1", None),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert_eq!(keys[1], "admin:abcd1234:\"acme\":\"u1\"");
    }

    #[test]
    fn user_header_is_trimmed_and_bounded() {
        let mut headers = HeaderMap::new();
        assert_eq!(user_header(&headers), None);
        headers.insert("x-user-id", HeaderValue::from_static("  "));
        assert_eq!(user_header(&headers), None);
        headers.insert("x-user-id", HeaderValue::from_static(" u1 "));
        assert_eq!(user_header(&headers).as_deref(), Some("u1"));
        let long = "x".repeat(1_000);
        headers.insert("x-user-id", HeaderValue::from_str(&long).unwrap());
        assert_eq!(user_header(&headers).map(|u| u.len()), Some(MAX_USER_CHARS));
    }
}
