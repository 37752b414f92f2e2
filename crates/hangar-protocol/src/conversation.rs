//! Conversations with the agent and their message log (seed contract §1.4, §2.10).
//!
//! A conversation belongs to one tenant and one (opaque) user id; each streamed exchange is a
//! run (see [`crate::Run`]). The message log is what clients read back: one `user` row per turn
//! and one `assistant` row holding that run's sanitised events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ErrorDetail, ModelId, TenantId, Violations};

/// Longest `user_id` accepted (characters).
pub const MAX_USER_ID_CHARS: usize = 255;
/// Longest conversation title accepted (characters).
pub const MAX_TITLE_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationStatus {
    Active,
    Archived,
}

crate::text_enum::text_enum!(ConversationStatus { Active => "active", Archived => "archived" });

/// A conversation as the API returns it (the contract's `ConversationResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub conversation_id: Uuid,
    /// The original's SDK session id; kept for wire compatibility.
    pub session_id: Option<String>,
    pub tenant_id: TenantId,
    pub user_id: String,
    pub model_id: ModelId,
    /// Set after the first exchange (generated) or by `PUT`.
    pub title: Option<String>,
    pub status: ConversationStatus,
    /// Whether runs get a sandbox with the conversation's files.
    pub workspace_enabled: bool,
    /// Input tokens of every run so far.
    pub total_input_tokens: i64,
    /// Output tokens of every run so far.
    pub total_output_tokens: i64,
    /// Size of the model-facing history after the last run, as the model counted it.
    pub estimated_context_tokens: i64,
    /// The history no longer fits the model's context window.
    pub context_limit_reached: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn default_true() -> bool {
    true
}

/// `POST /api/tenants/{tenant_id}/conversations`. Without `model_id` the tenant's default model
/// is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationCreate {
    pub user_id: String,
    #[serde(default)]
    pub model_id: Option<ModelId>,
    #[serde(default = "default_true")]
    #[schema(default = true)]
    pub workspace_enabled: bool,
}

/// `PUT /api/tenants/{tenant_id}/conversations/{conversation_id}`: fields left out stay as they
/// are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ConversationStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    pub items: Vec<Conversation>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// One row of a conversation's message log (the contract's `MessageLogResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageLog {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    /// 1, 2, 3… within the conversation.
    pub message_seq: i64,
    /// `user` or `assistant`.
    pub message_type: String,
    pub message_subtype: Option<String>,
    /// `{type: "user", subtype, timestamp, text}` or `{type: "assistant", subtype, timestamp,
    /// events: […]}`.
    pub content: Option<serde_json::Value>,
    /// When the row was written.
    pub timestamp: DateTime<Utc>,
}

impl ConversationCreate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        let user = &self.user_id;
        if user.trim().is_empty()
            || user.chars().count() > MAX_USER_ID_CHARS
            || user.chars().any(char::is_control)
        {
            out.push(ErrorDetail::field(
                "body.user_id",
                "invalid",
                format!("user_id must be 1 to {MAX_USER_ID_CHARS} characters without control characters"),
            ));
        }
        out
    }
}

impl ConversationUpdate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        if self
            .title
            .as_ref()
            .is_some_and(|t| t.chars().count() > MAX_TITLE_CHARS)
        {
            out.push(ErrorDetail::field(
                "body.title",
                "too_long",
                format!("title must be at most {MAX_TITLE_CHARS} characters"),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    #[test]
    fn status_texts_match_serde() {
        for status in [ConversationStatus::Active, ConversationStatus::Archived] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(status.as_str()));
            assert_eq!(ConversationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ConversationStatus::parse("Active"), None);
    }

    #[test]
    fn create_defaults_and_rejects_unknown_fields() {
        let create: ConversationCreate = serde_json::from_value(json!({"user_id": "u1"})).unwrap();
        assert_eq!(
            create,
            ConversationCreate {
                user_id: "u1".into(),
                model_id: None,
                workspace_enabled: true
            }
        );
        assert!(create.validate().is_empty());
        let err = serde_json::from_value::<ConversationCreate>(json!({"user_id": "u1", "x": 1}));
        assert!(err.is_err());
        assert!(serde_json::from_value::<ConversationCreate>(json!({})).is_err());
    }

    #[test]
    fn create_validates_user_id() {
        let fields = |user: &str| {
            ConversationCreate {
                user_id: user.into(),
                model_id: None,
                workspace_enabled: false,
            }
            .validate()
            .into_iter()
            .map(|d| d.field.unwrap_or_default())
            .collect::<Vec<_>>()
        };
        assert_eq!(fields(""), ["body.user_id"]);
        assert_eq!(fields("  "), ["body.user_id"]);
        assert_eq!(fields("a\nb"), ["body.user_id"]);
        assert_eq!(fields(&"u".repeat(256)), ["body.user_id"]);
        assert!(fields(&"ü".repeat(255)).is_empty());
    }

    #[test]
    fn update_validates_title() {
        let update: ConversationUpdate =
            serde_json::from_value(json!({"title": "t".repeat(501), "status": "archived"})).unwrap();
        assert_eq!(update.status, Some(ConversationStatus::Archived));
        assert_eq!(update.validate().len(), 1);
        let ok = ConversationUpdate {
            title: Some("é".repeat(500)),
            status: None,
        };
        assert!(ok.validate().is_empty());
        assert!(serde_json::from_value::<ConversationUpdate>(json!({"status": "gone"})).is_err());
        assert!(serde_json::from_value::<ConversationUpdate>(json!({"other": 1})).is_err());
    }
}
