//! The global model catalogue with prices (seed contract §1.3, §3.1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ErrorDetail, ModelId, Price, Violations, double_option};

const MAX_TOKENS_FIELD: i64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    Active,
    Deprecated,
}

impl ModelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deprecated => "deprecated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "deprecated" => Some(Self::Deprecated),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub model_id: ModelId,
    pub display_name: String,
    /// The provider's own id for the model (kept under the original's name).
    pub bedrock_model_id: String,
    pub model_region: Option<String>,
    /// USD per 1,000 input tokens.
    pub input_token_price: Price,
    /// USD per 1,000 output tokens.
    pub output_token_price: Price,
    /// USD per 1,000 tokens written to the 5-minute prompt cache.
    pub cache_creation_5m_price: Price,
    /// USD per 1,000 tokens written to the 1-hour prompt cache.
    pub cache_creation_1h_price: Price,
    /// USD per 1,000 tokens read from the prompt cache.
    pub cache_read_price: Price,
    pub context_window: i64,
    pub max_output_tokens: i64,
    pub supports_extended_context: bool,
    pub extended_context_window: Option<i64>,
    pub status: ModelStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn default_context_window() -> i64 {
    200_000
}

fn default_max_output_tokens() -> i64 {
    64_000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelCreate {
    pub model_id: ModelId,
    pub display_name: String,
    pub bedrock_model_id: String,
    #[serde(default)]
    pub model_region: Option<String>,
    #[serde(default)]
    pub input_token_price: Price,
    #[serde(default)]
    pub output_token_price: Price,
    #[serde(default)]
    pub cache_creation_5m_price: Price,
    #[serde(default)]
    pub cache_creation_1h_price: Price,
    #[serde(default)]
    pub cache_read_price: Price,
    #[serde(default = "default_context_window")]
    pub context_window: i64,
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: i64,
    #[serde(default)]
    pub supports_extended_context: bool,
    #[serde(default)]
    pub extended_context_window: Option<i64>,
}

/// Every field optional: fields present are applied, fields absent are kept. `null` clears the
/// nullable ones (`model_region`, `extended_context_window`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock_model_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub model_region: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_token_price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_token_price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_5m_price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_1h_price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_price: Option<Price>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_extended_context: Option<bool>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i64>)]
    pub extended_context_window: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ModelStatus>,
}

/// What still refers to a model; a model can only be deleted when every count is zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelUsage {
    pub tenants: i64,
    pub conversations: i64,
    pub simple_chats: i64,
    pub usage_logs: i64,
}

impl ModelUsage {
    pub fn is_unused(&self) -> bool {
        self.tenants == 0 && self.conversations == 0 && self.simple_chats == 0 && self.usage_logs == 0
    }

    pub fn details(&self) -> Vec<ErrorDetail> {
        [
            ("tenants", self.tenants, "tenants use it as their default model"),
            ("conversations", self.conversations, "conversations use it"),
            ("simple_chats", self.simple_chats, "simple chats use it"),
            ("usage_logs", self.usage_logs, "usage records refer to it"),
        ]
        .into_iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(field, n, what)| ErrorDetail::count(field, n, format!("{n} {what}")))
        .collect()
    }
}

fn check_text(field: &str, value: &str, max: usize, out: &mut Violations) {
    if value.trim().is_empty() {
        out.push(ErrorDetail::field(
            format!("body.{field}"),
            "empty",
            format!("{field} must not be empty"),
        ));
    } else if value.chars().count() > max {
        out.push(ErrorDetail::field(
            format!("body.{field}"),
            "too_long",
            format!("{field} must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        out.push(ErrorDetail::field(
            format!("body.{field}"),
            "control_character",
            format!("{field} must not contain control characters"),
        ));
    }
}

fn check_tokens(field: &str, value: i64, out: &mut Violations) {
    if !(1..=MAX_TOKENS_FIELD).contains(&value) {
        out.push(ErrorDetail::field(
            format!("body.{field}"),
            "out_of_range",
            format!("{field} must be between 1 and {MAX_TOKENS_FIELD}"),
        ));
    }
}

impl ModelCreate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        check_text("display_name", &self.display_name, 200, &mut out);
        check_text("bedrock_model_id", &self.bedrock_model_id, 200, &mut out);
        if let Some(region) = &self.model_region {
            check_text("model_region", region, 50, &mut out);
        }
        check_tokens("context_window", self.context_window, &mut out);
        check_tokens("max_output_tokens", self.max_output_tokens, &mut out);
        if let Some(window) = self.extended_context_window {
            check_tokens("extended_context_window", window, &mut out);
        }
        out
    }
}

impl ModelUpdate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        if let Some(name) = &self.display_name {
            check_text("display_name", name, 200, &mut out);
        }
        if let Some(id) = &self.bedrock_model_id {
            check_text("bedrock_model_id", id, 200, &mut out);
        }
        if let Some(Some(region)) = &self.model_region {
            check_text("model_region", region, 50, &mut out);
        }
        for (field, value) in [
            ("context_window", self.context_window),
            ("max_output_tokens", self.max_output_tokens),
            ("extended_context_window", self.extended_context_window.flatten()),
        ] {
            if let Some(value) = value {
                check_tokens(field, value, &mut out);
            }
        }
        out
    }
}
