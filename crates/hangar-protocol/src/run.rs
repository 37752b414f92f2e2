//! Runs: one streamed agent exchange in a conversation, from the user's message to `done`.
//!
//! A run is recorded when it starts (`running`) and finished exactly once with its outcome, its
//! token usage and its cost. At most one run of a conversation is `running` at a time.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{ChatUsage, ModelId, TenantId, Usd};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not finished (or its node died; see `interrupted`).
    Running,
    Success,
    Error,
    /// Stopped on the client's request.
    Cancelled,
    /// Its node stopped while it ran; found and closed at the node's next start.
    Interrupted,
}

crate::text_enum::text_enum!(RunStatus {
    Running => "running",
    Success => "success",
    Error => "error",
    Cancelled => "cancelled",
    Interrupted => "interrupted",
});

/// A run's token counts: the same five counters (and their total) as a simple chat's.
pub type RunUsage = ChatUsage;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    pub run_id: Uuid,
    pub conversation_id: Uuid,
    pub tenant_id: TenantId,
    pub user_id: String,
    pub model_id: ModelId,
    pub status: RunStatus,
    /// Model calls made by the run.
    pub turn_count: i64,
    pub usage: RunUsage,
    /// What the run cost, equal to the sum of its usage rows.
    #[schema(value_type = String)]
    pub cost_usd: Usd,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub items: Vec<Run>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    #[test]
    fn status_texts_match_serde() {
        for status in [
            RunStatus::Running,
            RunStatus::Success,
            RunStatus::Error,
            RunStatus::Cancelled,
            RunStatus::Interrupted,
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(status.as_str()));
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("Running"), None);
    }

    #[test]
    fn run_serialises_cost_as_decimal_text() {
        let run = Run {
            run_id: Uuid::nil(),
            conversation_id: Uuid::nil(),
            tenant_id: "t1".parse().unwrap(),
            user_id: "u1".into(),
            model_id: "m1".parse().unwrap(),
            status: RunStatus::Success,
            turn_count: 2,
            usage: RunUsage {
                input_tokens: 10,
                output_tokens: 5,
                total_tokens: 15,
                ..RunUsage::default()
            },
            cost_usd: Usd::from_nanos(315_000),
            error: None,
            started_at: DateTime::UNIX_EPOCH,
            finished_at: None,
        };
        let value = serde_json::to_value(&run).unwrap();
        assert_eq!(value["cost_usd"], "0.000315");
        assert_eq!(value["status"], "success");
        assert_eq!(value["usage"]["total_tokens"], 15);
        assert_eq!(serde_json::from_value::<Run>(value).unwrap(), run);
    }
}
