//! Tenants: the organisations Hangar serves (seed contract §1.2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ErrorDetail, ModelId, TenantId, Violations, double_option};

/// Longest tenant system prompt accepted (bytes).
pub const MAX_SYSTEM_PROMPT_BYTES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Inactive,
}

crate::text_enum::text_enum!(TenantStatus { Active => "active", Inactive => "inactive" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub tenant_id: TenantId,
    /// Prepended to every agent run's system prompt in this tenant.
    pub system_prompt: Option<String>,
    /// Default model for new conversations.
    pub model_id: Option<ModelId>,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantCreate {
    pub tenant_id: TenantId,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub model_id: Option<ModelId>,
}

/// Fields left out stay as they are; `null` clears `system_prompt` or `model_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub model_id: Option<Option<ModelId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TenantStatus>,
}

fn check_prompt(prompt: Option<&str>, out: &mut Violations) {
    if prompt.is_some_and(|p| p.len() > MAX_SYSTEM_PROMPT_BYTES) {
        out.push(ErrorDetail::field(
            "body.system_prompt",
            "too_long",
            format!("system_prompt must be at most {MAX_SYSTEM_PROMPT_BYTES} bytes"),
        ));
    }
}

impl TenantCreate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        check_prompt(self.system_prompt.as_deref(), &mut out);
        out
    }
}

impl TenantUpdate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        check_prompt(self.system_prompt.as_ref().and_then(|p| p.as_deref()), &mut out);
        out
    }
}
