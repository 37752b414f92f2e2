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

crate::text_enum::text_enum!(ModelStatus { Active => "active", Deprecated => "deprecated" });

/// Which API serves a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The Anthropic Messages API (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`).
    Anthropic,
    /// AWS Bedrock (the original's only provider, hence the default).
    #[default]
    Bedrock,
    /// Any OpenAI-compatible chat-completions endpoint (`base_url` required).
    Openai,
}

crate::text_enum::text_enum!(ProviderKind { Anthropic => "anthropic", Bedrock => "bedrock", Openai => "openai" });

/// Most models a fallback chain may name.
pub const MAX_FALLBACKS: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub model_id: ModelId,
    pub display_name: String,
    /// Which API serves the model.
    pub provider: ProviderKind,
    /// The provider's own id for the model (kept under the original's name for every provider).
    pub bedrock_model_id: String,
    pub model_region: Option<String>,
    /// Endpoint of the provider's API: required for `openai` (e.g. `http://127.0.0.1:11434/v1`),
    /// optional for `anthropic` (overrides `ANTHROPIC_BASE_URL`).
    pub base_url: Option<String>,
    /// Name of the environment variable that holds the API key for this model (`openai`, or
    /// `anthropic` to override `ANTHROPIC_API_KEY`). Must end in `_API_KEY` or `_TOKEN`.
    pub api_key_env: Option<String>,
    /// Models to try, in order, when this one fails in a way retrying did not cure.
    pub fallback_model_ids: Vec<ModelId>,
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
    #[serde(default)]
    pub provider: ProviderKind,
    pub bedrock_model_id: String,
    #[serde(default)]
    pub model_region: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub fallback_model_ids: Vec<ModelId>,
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
    pub provider: Option<ProviderKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bedrock_model_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub model_region: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub base_url: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub api_key_env: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_model_ids: Option<Vec<ModelId>>,
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
    /// Other models that name this one in their fallback chain.
    pub fallback_for: i64,
    pub tenants: i64,
    pub conversations: i64,
    pub simple_chats: i64,
    /// Agent runs it answered (their conversations may have moved to another model since).
    pub runs: i64,
    pub usage_logs: i64,
}

impl ModelUsage {
    pub fn is_unused(&self) -> bool {
        self.fallback_for == 0
            && self.tenants == 0
            && self.conversations == 0
            && self.simple_chats == 0
            && self.runs == 0
            && self.usage_logs == 0
    }

    pub fn details(&self) -> Vec<ErrorDetail> {
        [
            ("fallback_for", self.fallback_for, "models name it as a fallback"),
            ("tenants", self.tenants, "tenants use it as their default model"),
            ("conversations", self.conversations, "conversations use it"),
            ("simple_chats", self.simple_chats, "simple chats use it"),
            ("runs", self.runs, "agent runs used it"),
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

fn check_base_url(url: &str, out: &mut Violations) {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 500
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        out.push(ErrorDetail::field(
            "body.base_url",
            "invalid_url",
            "base_url must be an http:// or https:// URL of at most 500 characters",
        ));
    }
}

/// Only variables meant to hold model credentials can be named, so a model row can never make
/// Hangar send an unrelated secret (say `DATABASE_URL`) to an arbitrary endpoint.
fn check_key_env(name: &str, out: &mut Violations) {
    let shape = name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !(shape && (name.ends_with("_API_KEY") || name.ends_with("_TOKEN"))) {
        out.push(ErrorDetail::field(
            "body.api_key_env",
            "invalid_env_name",
            "api_key_env must be an upper-case variable name ending in _API_KEY or _TOKEN",
        ));
    }
}

fn check_fallbacks(own: Option<&ModelId>, ids: &[ModelId], out: &mut Violations) {
    let mut seen = std::collections::BTreeSet::new();
    if ids.len() > MAX_FALLBACKS {
        out.push(ErrorDetail::field(
            "body.fallback_model_ids",
            "too_many",
            format!("at most {MAX_FALLBACKS} fallback models"),
        ));
    }
    for id in ids {
        if Some(id) == own || !seen.insert(id) {
            out.push(ErrorDetail::field(
                "body.fallback_model_ids",
                "duplicate",
                format!("'{id}' appears twice or names the model itself"),
            ));
        }
    }
}

/// Provider-specific requirements, checked on the model as it will be stored.
pub fn check_provider(provider: ProviderKind, base_url: Option<&str>) -> Violations {
    let mut out = Vec::new();
    match (provider, base_url) {
        (ProviderKind::Openai, None) => out.push(ErrorDetail::field(
            "body.base_url",
            "required",
            "an openai model needs base_url (e.g. http://127.0.0.1:11434/v1)",
        )),
        (ProviderKind::Bedrock, Some(_)) => out.push(ErrorDetail::field(
            "body.base_url",
            "not_applicable",
            "bedrock models take their endpoint from AWS_REGION / AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        )),
        _ => {}
    }
    out
}

impl ModelCreate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        if let Some(url) = &self.base_url {
            check_base_url(url, &mut out);
        }
        if let Some(name) = &self.api_key_env {
            check_key_env(name, &mut out);
        }
        check_fallbacks(Some(&self.model_id), &self.fallback_model_ids, &mut out);
        out.extend(check_provider(self.provider, self.base_url.as_deref()));
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
    /// Field checks; provider-specific requirements are checked on the merged model
    /// ([`check_provider`]).
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        if let Some(Some(url)) = &self.base_url {
            check_base_url(url, &mut out);
        }
        if let Some(Some(name)) = &self.api_key_env {
            check_key_env(name, &mut out);
        }
        if let Some(ids) = &self.fallback_model_ids {
            check_fallbacks(None, ids, &mut out);
        }
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
