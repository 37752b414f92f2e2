//! Authentication and tenant scoping (DESIGN §7).
//!
//! Admin keys come from `API_KEYS` and reach everything. Tenant keys (`hgr_…`, created through
//! the admin API, stored hashed) reach only `/api/tenants/{their id}/…`: another tenant's id
//! answers 404 exactly as a missing tenant would, and admin-only routes answer 403. A key is
//! read from `X-API-Key` or `Authorization: Bearer` (a WebSocket upgrade may use `?token=`).
//! With no admin keys configured (development only), requests without a key are treated as
//! admin and a warning is logged at start-up; a key that is presented is still checked.

use axum::extract::{FromRequestParts, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hangar_protocol::{ApiKeyId, TenantId};
use hangar_store::{Actor, AuditEntry, KEY_PREFIX};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::middleware::observe::PrincipalLabel;
use crate::middleware::request_id;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An `API_KEYS` key, known by a short fingerprint of its hash.
    Admin { fingerprint: String },
    /// A tenant-scoped key.
    Tenant { tenant_id: TenantId, key_id: ApiKeyId },
    /// No key, with authentication switched off (development without `API_KEYS`).
    Anonymous,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::Admin { .. } | Self::Anonymous)
    }

    pub fn label(&self) -> String {
        match self {
            Self::Admin { fingerprint } => format!("admin:{fingerprint}"),
            Self::Tenant { tenant_id, key_id } => format!("tenant:{tenant_id}:{key_id}"),
            Self::Anonymous => "anonymous".to_owned(),
        }
    }

    /// The actor recorded in the audit log for changes made by this principal.
    pub fn actor(&self) -> Actor {
        Actor::new(self.label(), request_id::current())
    }
}

/// SHA-256 digests of the admin keys; a presented key is compared against every one of them
/// in constant time.
#[derive(Debug, Clone, Default)]
pub struct AdminKeys(Vec<[u8; 32]>);

impl AdminKeys {
    pub fn new(keys: &[String]) -> Self {
        Self(keys.iter().map(|k| Sha256::digest(k.as_bytes()).into()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fingerprint of the matching key, if any.
    fn check(&self, presented: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for known in &self.0 {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(hex::encode(&known[..4]));
            }
        }
        found
    }
}

/// The key a request presents, from `X-API-Key` or `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A WebSocket upgrade may carry the key as `?token=` instead: browsers cannot set headers on
/// WebSocket requests. Only there; the access log redacts it.
fn query_token(request: &Request) -> Option<String> {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    let Query(query) =
        Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri()).ok()?;
    query.get("token").map(|t| t.trim().to_owned())
}

/// Paths that never need a key (probes, docs). `/metrics` is decided by settings.
fn is_public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/health" | "/health/live" | "/health/ready" | "/openapi.json"
    ) || path == "/docs"
        || path.starts_with("/docs/")
}

pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let metrics_public = path == "/metrics" && !state.metrics_protected();
    if request.method() == Method::OPTIONS || is_public(path) || metrics_public {
        return next.run(request).await;
    }
    let presented = presented_key(request.headers())
        .map(str::to_owned)
        .or_else(|| query_token(&request));
    let principal = match authenticate(&state, presented.as_deref()).await {
        Ok(principal) => principal,
        Err(refusal) => {
            let path = path.to_owned();
            refusal.audit(&state, &path).await;
            return refusal.into_response();
        }
    };
    request.extensions_mut().insert(principal.clone());
    let mut response = next.run(request).await;
    response
        .extensions_mut()
        .insert(PrincipalLabel(principal.label()));
    response
}

/// Why a request was refused, kept apart from the response so it can be audited.
struct Refusal {
    reason: &'static str,
    key_id: Option<String>,
    error: ApiError,
}

impl Refusal {
    async fn audit(&self, state: &AppState, path: &str) {
        tracing::warn!(target: "hangar::audit", reason = self.reason, path, "authentication refused");
        let entry = AuditEntry {
            actor: "unauthenticated".into(),
            request_id: request_id::current(),
            tenant_id: None,
            action: "auth.denied".into(),
            resource_type: Some("api_key".into()),
            resource_id: self.key_id.clone(),
            outcome: "denied".into(),
            details: json!({ "reason": self.reason, "path": path }),
        };
        if let Err(err) = state.store.record_audit(&entry).await {
            tracing::error!(error = %err, "could not write audit record");
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.error.into_response()
    }
}

async fn authenticate(state: &AppState, presented: Option<&str>) -> Result<Principal, Refusal> {
    let Some(key) = presented.filter(|k| !k.is_empty()) else {
        if state.admin_keys.is_empty() {
            return Ok(Principal::Anonymous);
        }
        return Err(Refusal {
            reason: "missing_key",
            key_id: None,
            error: ApiError::unauthorized("API key required: send it in X-API-Key or Authorization: Bearer"),
        });
    };
    if let Some(fingerprint) = state.admin_keys.check(key) {
        return Ok(Principal::Admin { fingerprint });
    }
    if key.starts_with(KEY_PREFIX) {
        match state.store.authenticate_api_key(key).await {
            Ok(Some(found)) => {
                return Ok(Principal::Tenant {
                    tenant_id: found.tenant_id,
                    key_id: found.key_id,
                });
            }
            Ok(None) => {}
            Err(err) => {
                return Err(Refusal {
                    reason: "store_unavailable",
                    key_id: None,
                    error: ApiError::from(err),
                });
            }
        }
    }
    let key_id = key
        .strip_prefix(KEY_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .map(|id| {
            id.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect::<String>()
        });
    Err(Refusal {
        reason: "invalid_key",
        key_id,
        error: ApiError::unauthorized("invalid API key"),
    })
}

fn principal(parts: &Parts) -> Result<Principal, ApiError> {
    parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
        tracing::error!(path = parts.uri.path(), "route reached without authentication");
        ApiError::internal()
    })
}

/// Admits admin keys only; a tenant key gets 403.
#[derive(Debug, Clone)]
pub struct RequireAdmin(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for RequireAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let principal = principal(parts)?;
        if principal.is_admin() {
            Ok(Self(principal))
        } else {
            Err(ApiError::forbidden("this endpoint requires an admin key"))
        }
    }
}

/// Admits any authenticated caller (admin or tenant key).
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        principal(parts).map(|_| Self)
    }
}

/// The `{tenant_id}` of the path, admitted for admins and for that tenant's own keys. Another
/// tenant's key gets the same 404 as a tenant that does not exist.
#[derive(Debug, Clone)]
pub struct TenantAccess {
    pub tenant_id: TenantId,
}

impl<S: Send + Sync> FromRequestParts<S> for TenantAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let principal = principal(parts)?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::internal())?;
        let raw = params
            .iter()
            .find(|(name, _)| *name == "tenant_id")
            .map(|(_, v)| v.to_owned());
        let raw = raw.ok_or_else(ApiError::internal)?;
        let tenant_id: TenantId = raw.parse().map_err(|e: hangar_protocol::IdError| {
            ApiError::validation(
                "invalid path parameter",
                vec![hangar_protocol::ErrorDetail::field(
                    "path.tenant_id",
                    "invalid_id",
                    e.message(),
                )],
            )
        })?;
        match &principal {
            Principal::Tenant { tenant_id: own, .. } if *own != tenant_id => {
                Err(ApiError::not_found(format!("tenant '{tenant_id}' not found")))
            }
            _ => Ok(Self { tenant_id }),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn admin_keys_match_exactly() {
        let keys = AdminKeys::new(&["0123456789abcdef".into(), "fedcba9876543210".into()]);
        assert!(keys.check("0123456789abcdef").is_some());
        assert!(keys.check("fedcba9876543210").is_some());
        assert_ne!(keys.check("0123456789abcdef"), keys.check("fedcba9876543210"));
        assert!(keys.check("0123456789abcdeF").is_none());
        assert!(keys.check("").is_none());
    }

    #[test]
    fn key_sources() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(presented_key(&h), Some("abc"));
        h.insert("x-api-key", HeaderValue::from_static("xyz"));
        assert_eq!(presented_key(&h), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&h), None);
    }
}
