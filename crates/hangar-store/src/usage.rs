//! Usage records: one row per model call, with the five token counts and the exact cost.

use hangar_protocol::{ModelId, TenantId, Usd};
use uuid::Uuid;

use crate::Result;
use crate::sql::SqlStore;
use crate::time::now_ms;

/// One model call to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewUsage {
    pub tenant_id: Option<TenantId>,
    pub user_id: Option<String>,
    pub model_id: Option<ModelId>,
    pub conversation_id: Option<Uuid>,
    pub simple_chat_id: Option<Uuid>,
    pub run_id: Option<Uuid>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_5m_tokens: i64,
    pub cache_creation_1h_tokens: i64,
    pub cache_read_tokens: i64,
    pub cost: Usd,
}

impl NewUsage {
    pub fn total_tokens(&self) -> i64 {
        self.input_tokens
            + self.output_tokens
            + self.cache_creation_5m_tokens
            + self.cache_creation_1h_tokens
            + self.cache_read_tokens
    }
}

#[async_trait::async_trait]
pub trait UsageStore {
    /// Writes one usage row and returns its id.
    async fn record_usage(&self, usage: &NewUsage) -> Result<Uuid>;
}

#[async_trait::async_trait]
impl UsageStore for SqlStore {
    async fn record_usage(&self, usage: &NewUsage) -> Result<Uuid> {
        let (Some(tenant), Some(model)) = (&usage.tenant_id, &usage.model_id) else {
            return Err(crate::StoreError::invalid(
                "usage",
                "a usage record needs a tenant and a model",
            ));
        };
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO usage_logs (usage_log_id, tenant_id, user_id, model_id, conversation_id, simple_chat_id, \
             run_id, input_tokens, output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, \
             cache_read_tokens, total_tokens, cost_nano_usd, executed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(id.to_string())
        .bind(tenant.as_str())
        .bind(usage.user_id.as_deref())
        .bind(model.as_str())
        .bind(usage.conversation_id.map(|id| id.to_string()))
        .bind(usage.simple_chat_id.map(|id| id.to_string()))
        .bind(usage.run_id.map(|id| id.to_string()))
        .bind(usage.input_tokens)
        .bind(usage.output_tokens)
        .bind(usage.cache_creation_5m_tokens)
        .bind(usage.cache_creation_1h_tokens)
        .bind(usage.cache_read_tokens)
        .bind(usage.total_tokens())
        .bind(usage.cost.nanos())
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(id)
    }
}
