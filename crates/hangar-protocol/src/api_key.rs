//! Tenant-scoped API keys. The secret is shown once, at creation; only its hash is stored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiKeyId, ErrorDetail, TenantId, Violations};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub key_id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: Option<String>,
    /// The first characters of the key, to recognise it (`hgr_<key_id>_…`).
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyCreate {
    /// A label for people: which system holds the key.
    #[serde(default)]
    pub name: Option<String>,
    /// After this instant the key is refused.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiKeyCreate {
    pub fn validate(&self, now: DateTime<Utc>) -> Violations {
        let mut out = Vec::new();
        if let Some(name) = &self.name
            && (name.chars().count() > 200 || name.chars().any(char::is_control))
        {
            out.push(ErrorDetail::field(
                "body.name",
                "invalid",
                "name must be at most 200 characters without control characters",
            ));
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            out.push(ErrorDetail::field(
                "body.expires_at",
                "in_past",
                "expires_at must be in the future",
            ));
        }
        out
    }
}

/// Returned once by `POST /api/tenants/{tenant_id}/api-keys`: the only time `key` is visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The secret. Store it now: Hangar keeps only a hash and cannot show it again.
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKey,
}
