//! Conversations, their message log and their model-facing history (seed contract §1.4, §2.10).
//!
//! Two records of one conversation are kept apart on purpose: the message log is what clients
//! read back (one `user` row per turn, one `assistant` row with the run's events), the history is
//! what the model is sent (provider-neutral messages, cut short by summaries). Both are numbered
//! per conversation; appending locks the conversation row so concurrent appends get consecutive
//! numbers.

use chrono::{DateTime, Utc};
use hangar_protocol::{Conversation, ConversationStatus, ConversationUpdate, MessageLog, ModelId, TenantId};
use uuid::Uuid;

use crate::sql::{Lock, SqlStore, concat};
use crate::time::{from_ms, now_ms, to_ms};
use crate::{Result, StoreError};

/// What a new conversation is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    pub tenant_id: TenantId,
    pub user_id: String,
    pub model_id: ModelId,
    pub workspace_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct ConversationFilter {
    pub user_id: Option<String>,
    pub status: Option<ConversationStatus>,
    /// Created at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Created at or before this instant.
    pub to: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// What a history entry is: a message of the exchange, or a summary standing for everything
/// before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKind {
    Message,
    Summary,
}

impl HistoryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Summary => "summary",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "message" => Some(Self::Message),
            "summary" => Some(Self::Summary),
            _ => None,
        }
    }
}

/// One entry of the model-facing history. The message is the agent's provider-neutral message
/// (JSON); the store does not look inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub kind: HistoryKind,
    pub message: serde_json::Value,
}

#[async_trait::async_trait]
pub trait ConversationStore {
    async fn create_conversation(&self, new: &NewConversation) -> Result<Conversation>;
    /// NotFound also when it belongs to another tenant.
    async fn get_conversation(&self, tenant: &TenantId, id: Uuid) -> Result<Conversation>;
    /// A page of conversations, most recently updated first, and the total matching the filter.
    async fn list_conversations(
        &self,
        tenant: &TenantId,
        filter: &ConversationFilter,
    ) -> Result<(Vec<Conversation>, i64)>;
    /// Sets the fields given; NotFound also when it belongs to another tenant.
    async fn update_conversation(
        &self,
        tenant: &TenantId,
        id: Uuid,
        update: &ConversationUpdate,
    ) -> Result<Conversation>;
    async fn set_conversation_title(&self, id: Uuid, title: &str) -> Result<()>;
    /// Moves the conversation to another model (its own was deprecated).
    async fn set_conversation_model(&self, id: Uuid, model: &ModelId) -> Result<()>;
    /// Adds a run's tokens to the counters and sets the context estimate and flag; touches
    /// `updated_at`.
    async fn record_conversation_usage(
        &self,
        id: Uuid,
        input_tokens: i64,
        output_tokens: i64,
        context_tokens: i64,
        context_limit_reached: bool,
    ) -> Result<()>;
    /// Deletes it with its message log, runs, run events and history; its usage records stay
    /// (their `conversation_id` becomes null) so the bill is kept. Conflict while one of its runs
    /// is running.
    async fn delete_conversation(&self, tenant: &TenantId, id: Uuid) -> Result<()>;
    /// Appends a row with the next `message_seq` and touches the conversation.
    async fn append_message_log(
        &self,
        conversation: Uuid,
        message_type: &str,
        content: &serde_json::Value,
    ) -> Result<MessageLog>;
    /// Ordered by `message_seq`; NotFound if the conversation is not in this tenant.
    async fn message_log(&self, tenant: &TenantId, conversation: Uuid) -> Result<Vec<MessageLog>>;
    /// Appends model-facing history entries written by `run_id`, numbered on from the last.
    async fn append_history(&self, conversation: Uuid, run_id: Uuid, entries: &[HistoryEntry]) -> Result<()>;
    /// The entries from the latest `summary` (inclusive) onward, oldest first; all of them when
    /// there is no summary.
    async fn history(&self, conversation: Uuid) -> Result<Vec<HistoryEntry>>;
}

pub(crate) fn uuid(text: &str) -> Result<Uuid> {
    text.parse()
        .map_err(|_| StoreError::corrupt(format!("uuid {text:?}")))
}

fn flag(value: i64, column: &str) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::corrupt(format!("{column} = {other}"))),
    }
}

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("json: {e}")))
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    conversation_id: String,
    session_id: Option<String>,
    tenant_id: String,
    user_id: String,
    model_id: String,
    title: Option<String>,
    status: String,
    workspace_enabled: i64,
    total_input_tokens: i64,
    total_output_tokens: i64,
    estimated_context_tokens: i64,
    context_limit_reached: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;

    fn try_from(row: ConversationRow) -> Result<Self> {
        Ok(Conversation {
            conversation_id: uuid(&row.conversation_id)?,
            session_id: row.session_id,
            tenant_id: row.tenant_id.try_into().map_err(StoreError::corrupt)?,
            user_id: row.user_id,
            model_id: row.model_id.try_into().map_err(StoreError::corrupt)?,
            title: row.title,
            status: ConversationStatus::parse(&row.status).ok_or_else(|| StoreError::corrupt(&row.status))?,
            workspace_enabled: flag(row.workspace_enabled, "workspace_enabled")?,
            total_input_tokens: row.total_input_tokens,
            total_output_tokens: row.total_output_tokens,
            estimated_context_tokens: row.estimated_context_tokens,
            context_limit_reached: flag(row.context_limit_reached, "context_limit_reached")?,
            created_at: from_ms(row.created_at)?,
            updated_at: from_ms(row.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MessageLogRow {
    message_id: String,
    conversation_id: String,
    message_seq: i64,
    message_type: String,
    message_subtype: Option<String>,
    content: Option<String>,
    created_at: i64,
}

impl TryFrom<MessageLogRow> for MessageLog {
    type Error = StoreError;

    fn try_from(row: MessageLogRow) -> Result<Self> {
        Ok(MessageLog {
            message_id: uuid(&row.message_id)?,
            conversation_id: uuid(&row.conversation_id)?,
            message_seq: row.message_seq,
            message_type: row.message_type,
            message_subtype: row.message_subtype,
            content: row.content.as_deref().map(json).transpose()?,
            timestamp: from_ms(row.created_at)?,
        })
    }
}

const SELECT: &str = "SELECT conversation_id, session_id, tenant_id, user_id, model_id, title, status, \
     workspace_enabled, total_input_tokens, total_output_tokens, estimated_context_tokens, \
     context_limit_reached, created_at, updated_at FROM conversations";

const FILTER: &str = " WHERE tenant_id = $1 AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR status = $3) \
     AND ($4 IS NULL OR created_at >= $4) AND ($5 IS NULL OR created_at <= $5)";

/// The conversation if it is in `tenant`, its row locked with `lock` (an empty string for none).
async fn fetch(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    id: Uuid,
    lock: &'static str,
) -> Result<Conversation> {
    let row: Option<ConversationRow> = sqlx::query_as(concat(&[
        SELECT,
        " WHERE conversation_id = $1 AND tenant_id = $2",
        lock,
    ]))
    .bind(id.to_string())
    .bind(tenant.as_str())
    .fetch_optional(conn)
    .await?;
    row.ok_or_else(|| StoreError::not_found("conversation", id))?
        .try_into()
}

impl SqlStore {
    /// Takes `lock` on the conversation's row (in any tenant); NotFound if there is none.
    pub(crate) async fn lock_conversation(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: Uuid,
        lock: Lock,
    ) -> Result<()> {
        let found: Option<(String,)> = sqlx::query_as(concat(&[
            "SELECT conversation_id FROM conversations WHERE conversation_id = $1",
            self.lock(lock),
        ]))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?;
        found
            .map(|_| ())
            .ok_or_else(|| StoreError::not_found("conversation", id))
    }
}

#[async_trait::async_trait]
impl ConversationStore for SqlStore {
    async fn create_conversation(&self, new: &NewConversation) -> Result<Conversation> {
        let id = Uuid::now_v7();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO conversations (conversation_id, tenant_id, user_id, model_id, status, workspace_enabled, \
             total_input_tokens, total_output_tokens, estimated_context_tokens, context_limit_reached, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'active', $5, 0, 0, 0, 0, $6, $6)",
        )
        .bind(id.to_string())
        .bind(new.tenant_id.as_str())
        .bind(&new.user_id)
        .bind(new.model_id.as_str())
        .bind(i64::from(new.workspace_enabled))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let conversation = fetch(&mut tx, &new.tenant_id, id, "").await?;
        tx.commit().await?;
        Ok(conversation)
    }

    async fn get_conversation(&self, tenant: &TenantId, id: Uuid) -> Result<Conversation> {
        let mut conn = self.read.acquire().await?;
        fetch(&mut conn, tenant, id, "").await
    }

    async fn list_conversations(
        &self,
        tenant: &TenantId,
        filter: &ConversationFilter,
    ) -> Result<(Vec<Conversation>, i64)> {
        let status = filter.status.map(ConversationStatus::as_str);
        let from = filter.from.map(to_ms);
        let to = filter.to.map(to_ms);
        let rows: Vec<ConversationRow> = sqlx::query_as(concat(&[
            SELECT,
            FILTER,
            " ORDER BY updated_at DESC, conversation_id DESC LIMIT $6 OFFSET $7",
        ]))
        .bind(tenant.as_str())
        .bind(filter.user_id.as_deref())
        .bind(status)
        .bind(from)
        .bind(to)
        .bind(filter.limit.max(0))
        .bind(filter.offset.max(0))
        .fetch_all(&self.read)
        .await?;
        let (total,): (i64,) = sqlx::query_as(concat(&["SELECT COUNT(*) FROM conversations", FILTER]))
            .bind(tenant.as_str())
            .bind(filter.user_id.as_deref())
            .bind(status)
            .bind(from)
            .bind(to)
            .fetch_one(&self.read)
            .await?;
        let items = rows
            .into_iter()
            .map(Conversation::try_from)
            .collect::<Result<_>>()?;
        Ok((items, total))
    }

    async fn update_conversation(
        &self,
        tenant: &TenantId,
        id: Uuid,
        update: &ConversationUpdate,
    ) -> Result<Conversation> {
        let mut tx = self.begin_write().await?;
        let current = fetch(&mut tx, tenant, id, self.lock(Lock::Update)).await?;
        if update.title.is_none() && update.status.is_none() {
            return Ok(current);
        }
        sqlx::query(
            "UPDATE conversations SET title = COALESCE($1, title), status = COALESCE($2, status), \
             updated_at = $3 WHERE conversation_id = $4",
        )
        .bind(update.title.as_deref())
        .bind(update.status.map(ConversationStatus::as_str))
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let updated = fetch(&mut tx, tenant, id, "").await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn set_conversation_title(&self, id: Uuid, title: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE conversations SET title = $1, updated_at = $2 WHERE conversation_id = $3")
                .bind(title)
                .bind(now_ms())
                .bind(id.to_string())
                .execute(&self.write)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("conversation", id));
        }
        Ok(())
    }

    async fn set_conversation_model(&self, id: Uuid, model: &ModelId) -> Result<()> {
        let done =
            sqlx::query("UPDATE conversations SET model_id = $1, updated_at = $2 WHERE conversation_id = $3")
                .bind(model.as_str())
                .bind(now_ms())
                .bind(id.to_string())
                .execute(&self.write)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("conversation", id));
        }
        Ok(())
    }

    async fn record_conversation_usage(
        &self,
        id: Uuid,
        input_tokens: i64,
        output_tokens: i64,
        context_tokens: i64,
        context_limit_reached: bool,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE conversations SET total_input_tokens = total_input_tokens + $1, \
             total_output_tokens = total_output_tokens + $2, estimated_context_tokens = $3, \
             context_limit_reached = $4, updated_at = $5 WHERE conversation_id = $6",
        )
        .bind(input_tokens)
        .bind(output_tokens)
        .bind(context_tokens)
        .bind(i64::from(context_limit_reached))
        .bind(now_ms())
        .bind(id.to_string())
        .execute(&self.write)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("conversation", id));
        }
        Ok(())
    }

    async fn delete_conversation(&self, tenant: &TenantId, id: Uuid) -> Result<()> {
        let mut tx = self.begin_write().await?;
        // The lock also waits out a concurrent `create_run`, which takes a share lock on the row.
        fetch(&mut tx, tenant, id, self.lock(Lock::Update)).await?;
        let key = id.to_string();
        let running: Option<(String,)> =
            sqlx::query_as("SELECT run_id FROM runs WHERE conversation_id = $1 AND status = 'running'")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((run,)) = running {
            return Err(StoreError::conflict(format!(
                "conversation '{id}' has a running run ('{run}'); cancel it first"
            )));
        }
        // Explicit rather than relying on ON DELETE actions, which SQLite applies only with
        // foreign keys on.
        for sql in [
            "UPDATE usage_logs SET conversation_id = NULL WHERE conversation_id = $1",
            "DELETE FROM run_events WHERE run_id IN (SELECT run_id FROM runs WHERE conversation_id = $1)",
            "DELETE FROM runs WHERE conversation_id = $1",
            "DELETE FROM conversation_history WHERE conversation_id = $1",
            "DELETE FROM messages_log WHERE conversation_id = $1",
            "DELETE FROM conversations WHERE conversation_id = $1",
        ] {
            sqlx::query(sql).bind(&key).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn append_message_log(
        &self,
        conversation: Uuid,
        message_type: &str,
        content: &serde_json::Value,
    ) -> Result<MessageLog> {
        let text =
            serde_json::to_string(content).map_err(|e| StoreError::invalid("content", e.to_string()))?;
        let mut tx = self.begin_write().await?;
        self.lock_conversation(&mut tx, conversation, Lock::Update)
            .await?;
        let key = conversation.to_string();
        let (next,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(message_seq), 0) + 1 FROM messages_log WHERE conversation_id = $1",
        )
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?;
        let id = Uuid::now_v7();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO messages_log (message_id, conversation_id, message_seq, message_type, message_subtype, \
             content, created_at) VALUES ($1, $2, $3, $4, NULL, $5, $6)",
        )
        .bind(id.to_string())
        .bind(&key)
        .bind(next)
        .bind(message_type)
        .bind(&text)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE conversations SET updated_at = $1 WHERE conversation_id = $2")
            .bind(now)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(MessageLog {
            message_id: id,
            conversation_id: conversation,
            message_seq: next,
            message_type: message_type.to_owned(),
            message_subtype: None,
            content: Some(content.clone()),
            timestamp: from_ms(now)?,
        })
    }

    async fn message_log(&self, tenant: &TenantId, conversation: Uuid) -> Result<Vec<MessageLog>> {
        let mut conn = self.read.acquire().await?;
        fetch(&mut conn, tenant, conversation, "").await?;
        let rows: Vec<MessageLogRow> = sqlx::query_as(
            "SELECT message_id, conversation_id, message_seq, message_type, message_subtype, content, created_at \
             FROM messages_log WHERE conversation_id = $1 ORDER BY message_seq",
        )
        .bind(conversation.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(MessageLog::try_from).collect()
    }

    async fn append_history(&self, conversation: Uuid, run_id: Uuid, entries: &[HistoryEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let texts = entries
            .iter()
            .map(|e| serde_json::to_string(&e.message))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::invalid("message", e.to_string()))?;
        let mut tx = self.begin_write().await?;
        self.lock_conversation(&mut tx, conversation, Lock::Update)
            .await?;
        let key = conversation.to_string();
        let (last,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(seq), 0) FROM conversation_history WHERE conversation_id = $1",
        )
        .bind(&key)
        .fetch_one(&mut *tx)
        .await?;
        let now = now_ms();
        for ((entry, text), seq) in entries.iter().zip(&texts).zip(last + 1..) {
            sqlx::query(
                "INSERT INTO conversation_history (conversation_id, seq, run_id, kind, message, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&key)
            .bind(seq)
            .bind(run_id.to_string())
            .bind(entry.kind.as_str())
            .bind(text)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn history(&self, conversation: Uuid) -> Result<Vec<HistoryEntry>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT kind, message FROM conversation_history WHERE conversation_id = $1 AND seq >= \
             (SELECT COALESCE(MAX(seq), 0) FROM conversation_history WHERE conversation_id = $1 \
             AND kind = 'summary') ORDER BY seq",
        )
        .bind(conversation.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(kind, message)| {
                Ok(HistoryEntry {
                    kind: HistoryKind::parse(&kind).ok_or_else(|| StoreError::corrupt(&kind))?,
                    message: json(&message)?,
                })
            })
            .collect()
    }
}
