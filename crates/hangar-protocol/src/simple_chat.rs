//! Simple chats: direct multi-turn text chat with a model, no agent, no sandbox (seed contract
//! §1.10, §2.9, §11).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ErrorDetail, ModelId, TenantId, Usd, Violations};

pub const MAX_MESSAGE_BYTES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatStatus {
    Active,
    Archived,
}

crate::text_enum::text_enum!(ChatStatus { Active => "active", Archived => "archived" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimpleChat {
    pub chat_id: Uuid,
    pub tenant_id: TenantId,
    pub user_id: String,
    pub model_id: ModelId,
    /// Free label used to filter chats by the application that owns them.
    pub application_type: String,
    pub system_prompt: String,
    pub title: Option<String>,
    pub status: ChatStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    User,
    Assistant,
}

crate::text_enum::text_enum!(ChatRole { User => "user", Assistant => "assistant" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimpleChatMessage {
    pub message_id: Uuid,
    pub chat_id: Uuid,
    pub message_seq: i64,
    pub role: ChatRole,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimpleChatDetail {
    #[serde(flatten)]
    pub chat: SimpleChat,
    pub messages: Vec<SimpleChatMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimpleChatList {
    pub items: Vec<SimpleChat>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `POST …/simple-chats/stream`: without `chat_id` a new chat is created (then `user_id`,
/// `application_type`, `system_prompt` and `model_id` are required); with it the chat continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimpleChatStreamRequest {
    #[serde(default)]
    pub chat_id: Option<Uuid>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub application_type: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub model_id: Option<ModelId>,
    pub message: String,
}

fn check_label(field: &str, value: &str, max: usize, out: &mut Violations) {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        out.push(ErrorDetail::field(
            format!("body.{field}"),
            "invalid",
            format!("{field} must be 1 to {max} characters without control characters"),
        ));
    }
}

impl SimpleChatStreamRequest {
    /// Field checks, and for a new chat the fields it needs.
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        if self.message.trim().is_empty() || self.message.len() > MAX_MESSAGE_BYTES {
            out.push(ErrorDetail::field(
                "body.message",
                "invalid",
                format!("message must be non-empty and at most {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        if let Some(user) = &self.user_id {
            check_label("user_id", user, 100, &mut out);
        }
        if let Some(app) = &self.application_type {
            check_label("application_type", app, 100, &mut out);
        }
        if self
            .system_prompt
            .as_ref()
            .is_some_and(|p| p.len() > crate::tenant::MAX_SYSTEM_PROMPT_BYTES)
        {
            out.push(ErrorDetail::field(
                "body.system_prompt",
                "too_long",
                "system_prompt is too long",
            ));
        }
        if self.chat_id.is_none() {
            let missing = [
                ("user_id", self.user_id.is_none()),
                ("application_type", self.application_type.is_none()),
                (
                    "system_prompt",
                    self.system_prompt.as_ref().is_none_or(|p| p.trim().is_empty()),
                ),
                ("model_id", self.model_id.is_none()),
            ];
            for (field, absent) in missing {
                if absent {
                    out.push(ErrorDetail::field(
                        format!("body.{field}"),
                        "required",
                        format!("{field} is required to start a new chat"),
                    ));
                }
            }
        }
        out
    }
}

/// Token counts reported in a simple chat's `done` event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_5m_tokens: u64,
    pub cache_creation_1h_tokens: u64,
    pub cache_read_tokens: u64,
    pub total_tokens: u64,
}

/// SSE `text_delta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatTextDelta {
    pub seq: u64,
    pub timestamp: String,
    pub content: String,
}

/// SSE `done`: always the last event of a simple-chat stream, exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatDone {
    pub seq: u64,
    pub timestamp: String,
    /// `success` or `error`.
    pub status: String,
    /// The chat's title when this exchange gave it one.
    pub title: Option<String>,
    /// The model that answered (differs from the chat's model after a fallback).
    pub model_id: Option<ModelId>,
    pub usage: ChatUsage,
    /// What this exchange cost, equal to the sum of the usage rows written for it.
    #[schema(value_type = String)]
    pub cost_usd: Usd,
}

/// SSE `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChatError {
    pub seq: u64,
    pub timestamp: String,
    pub error_type: String,
    pub message: String,
    pub recoverable: bool,
}
