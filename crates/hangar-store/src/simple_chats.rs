//! Simple chats and their messages (seed contract §1.10, §11). Messages are numbered per chat;
//! appending locks the chat row so concurrent appends get consecutive numbers.

use hangar_protocol::{ChatRole, ChatStatus, ModelId, SimpleChat, SimpleChatMessage, TenantId};
use uuid::Uuid;

use crate::sql::{Lock, SqlStore, concat};
use crate::time::{from_ms, now_ms};
use crate::{Result, StoreError};

/// What a new chat is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSimpleChat {
    pub tenant_id: TenantId,
    pub user_id: String,
    pub model_id: ModelId,
    pub application_type: String,
    pub system_prompt: String,
}

#[derive(Debug, Clone)]
pub struct SimpleChatFilter {
    pub user_id: Option<String>,
    pub application_type: Option<String>,
    pub status: Option<ChatStatus>,
    pub limit: i64,
    pub offset: i64,
}

#[async_trait::async_trait]
pub trait SimpleChatStore {
    async fn create_simple_chat(&self, new: &NewSimpleChat) -> Result<SimpleChat>;
    /// NotFound also when the chat belongs to another tenant.
    async fn get_simple_chat(&self, tenant: &TenantId, chat: Uuid) -> Result<SimpleChat>;
    /// A page of chats, most recently updated first, and the total matching the filter.
    async fn list_simple_chats(
        &self,
        tenant: &TenantId,
        filter: &SimpleChatFilter,
    ) -> Result<(Vec<SimpleChat>, i64)>;
    /// Oldest first.
    async fn simple_chat_messages(&self, chat: Uuid) -> Result<Vec<SimpleChatMessage>>;
    /// Appends a message with the next sequence number and touches the chat.
    async fn append_simple_chat_message(
        &self,
        chat: Uuid,
        role: ChatRole,
        content: &str,
    ) -> Result<SimpleChatMessage>;
    async fn set_simple_chat_title(&self, chat: Uuid, title: &str) -> Result<()>;
    async fn archive_simple_chat(&self, tenant: &TenantId, chat: Uuid) -> Result<SimpleChat>;
    /// Deletes the chat and its messages; its usage records stay (their `simple_chat_id`
    /// becomes null) so the bill is kept.
    async fn delete_simple_chat(&self, tenant: &TenantId, chat: Uuid) -> Result<()>;
}

#[derive(sqlx::FromRow)]
struct ChatRow {
    chat_id: String,
    tenant_id: String,
    user_id: String,
    model_id: String,
    application_type: String,
    system_prompt: String,
    title: Option<String>,
    status: String,
    created_at: i64,
    updated_at: i64,
}

fn uuid(text: &str) -> Result<Uuid> {
    text.parse()
        .map_err(|_| StoreError::corrupt(format!("uuid {text:?}")))
}

impl TryFrom<ChatRow> for SimpleChat {
    type Error = StoreError;

    fn try_from(row: ChatRow) -> Result<Self> {
        Ok(SimpleChat {
            chat_id: uuid(&row.chat_id)?,
            tenant_id: row.tenant_id.try_into().map_err(StoreError::corrupt)?,
            user_id: row.user_id,
            model_id: row.model_id.try_into().map_err(StoreError::corrupt)?,
            application_type: row.application_type,
            system_prompt: row.system_prompt,
            title: row.title,
            status: ChatStatus::parse(&row.status).ok_or_else(|| StoreError::corrupt(&row.status))?,
            created_at: from_ms(row.created_at)?,
            updated_at: from_ms(row.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    message_id: String,
    chat_id: String,
    message_seq: i64,
    role: String,
    content: String,
    created_at: i64,
}

impl TryFrom<MessageRow> for SimpleChatMessage {
    type Error = StoreError;

    fn try_from(row: MessageRow) -> Result<Self> {
        Ok(SimpleChatMessage {
            message_id: uuid(&row.message_id)?,
            chat_id: uuid(&row.chat_id)?,
            message_seq: row.message_seq,
            role: ChatRole::parse(&row.role).ok_or_else(|| StoreError::corrupt(&row.role))?,
            content: row.content,
            created_at: from_ms(row.created_at)?,
        })
    }
}

const SELECT: &str = "SELECT chat_id, tenant_id, user_id, model_id, application_type, system_prompt, title, \
     status, created_at, updated_at FROM simple_chats";

const FILTER: &str = " WHERE tenant_id = $1 AND ($2 IS NULL OR user_id = $2) \
     AND ($3 IS NULL OR application_type = $3) AND ($4 IS NULL OR status = $4)";

async fn fetch(conn: &mut sqlx::AnyConnection, tenant: &TenantId, chat: Uuid) -> Result<SimpleChat> {
    let row: Option<ChatRow> = sqlx::query_as(concat(&[SELECT, " WHERE chat_id = $1 AND tenant_id = $2"]))
        .bind(chat.to_string())
        .bind(tenant.as_str())
        .fetch_optional(conn)
        .await?;
    row.ok_or_else(|| StoreError::not_found("simple_chat", chat))?
        .try_into()
}

#[async_trait::async_trait]
impl SimpleChatStore for SqlStore {
    async fn create_simple_chat(&self, new: &NewSimpleChat) -> Result<SimpleChat> {
        let id = Uuid::now_v7();
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO simple_chats (chat_id, tenant_id, user_id, model_id, application_type, system_prompt, \
             status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7)",
        )
        .bind(id.to_string())
        .bind(new.tenant_id.as_str())
        .bind(&new.user_id)
        .bind(new.model_id.as_str())
        .bind(&new.application_type)
        .bind(&new.system_prompt)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let chat = fetch(&mut tx, &new.tenant_id, id).await?;
        tx.commit().await?;
        Ok(chat)
    }

    async fn get_simple_chat(&self, tenant: &TenantId, chat: Uuid) -> Result<SimpleChat> {
        let mut conn = self.read.acquire().await?;
        fetch(&mut conn, tenant, chat).await
    }

    async fn list_simple_chats(
        &self,
        tenant: &TenantId,
        filter: &SimpleChatFilter,
    ) -> Result<(Vec<SimpleChat>, i64)> {
        let status = filter.status.map(ChatStatus::as_str);
        let rows: Vec<ChatRow> = sqlx::query_as(concat(&[
            SELECT,
            FILTER,
            " ORDER BY updated_at DESC, chat_id DESC LIMIT $5 OFFSET $6",
        ]))
        .bind(tenant.as_str())
        .bind(filter.user_id.as_deref())
        .bind(filter.application_type.as_deref())
        .bind(status)
        .bind(filter.limit.max(0))
        .bind(filter.offset.max(0))
        .fetch_all(&self.read)
        .await?;
        let (total,): (i64,) = sqlx::query_as(concat(&["SELECT COUNT(*) FROM simple_chats", FILTER]))
            .bind(tenant.as_str())
            .bind(filter.user_id.as_deref())
            .bind(filter.application_type.as_deref())
            .bind(status)
            .fetch_one(&self.read)
            .await?;
        let items = rows
            .into_iter()
            .map(SimpleChat::try_from)
            .collect::<Result<_>>()?;
        Ok((items, total))
    }

    async fn simple_chat_messages(&self, chat: Uuid) -> Result<Vec<SimpleChatMessage>> {
        let rows: Vec<MessageRow> = sqlx::query_as(
            "SELECT message_id, chat_id, message_seq, role, content, created_at FROM simple_chat_messages \
             WHERE chat_id = $1 ORDER BY message_seq",
        )
        .bind(chat.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(SimpleChatMessage::try_from).collect()
    }

    async fn append_simple_chat_message(
        &self,
        chat: Uuid,
        role: ChatRole,
        content: &str,
    ) -> Result<SimpleChatMessage> {
        let mut tx = self.begin_write().await?;
        let locked: Option<(String,)> = sqlx::query_as(concat(&[
            "SELECT chat_id FROM simple_chats WHERE chat_id = $1",
            self.lock(Lock::Update),
        ]))
        .bind(chat.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if locked.is_none() {
            return Err(StoreError::not_found("simple_chat", chat));
        }
        let (next,): (i64,) = sqlx::query_as(
            "SELECT COALESCE(MAX(message_seq), 0) + 1 FROM simple_chat_messages WHERE chat_id = $1",
        )
        .bind(chat.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let id = Uuid::now_v7();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO simple_chat_messages (message_id, chat_id, message_seq, role, content, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(chat.to_string())
        .bind(next)
        .bind(role.as_str())
        .bind(content)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE simple_chats SET updated_at = $1 WHERE chat_id = $2")
            .bind(now)
            .bind(chat.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SimpleChatMessage {
            message_id: id,
            chat_id: chat,
            message_seq: next,
            role,
            content: content.to_owned(),
            created_at: from_ms(now)?,
        })
    }

    async fn set_simple_chat_title(&self, chat: Uuid, title: &str) -> Result<()> {
        sqlx::query("UPDATE simple_chats SET title = $1, updated_at = $2 WHERE chat_id = $3")
            .bind(title)
            .bind(now_ms())
            .bind(chat.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn archive_simple_chat(&self, tenant: &TenantId, chat: Uuid) -> Result<SimpleChat> {
        let mut tx = self.begin_write().await?;
        fetch(&mut tx, tenant, chat).await?;
        sqlx::query("UPDATE simple_chats SET status = 'archived', updated_at = $1 WHERE chat_id = $2")
            .bind(now_ms())
            .bind(chat.to_string())
            .execute(&mut *tx)
            .await?;
        let archived = fetch(&mut tx, tenant, chat).await?;
        tx.commit().await?;
        Ok(archived)
    }

    async fn delete_simple_chat(&self, tenant: &TenantId, chat: Uuid) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let found: Option<(String,)> = sqlx::query_as(concat(&[
            "SELECT chat_id FROM simple_chats WHERE chat_id = $1 AND tenant_id = $2",
            self.lock(Lock::Update),
        ]))
        .bind(chat.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Err(StoreError::not_found("simple_chat", chat));
        }
        // Explicit rather than relying on ON DELETE actions, which SQLite applies only with
        // foreign keys on.
        sqlx::query("UPDATE usage_logs SET simple_chat_id = NULL WHERE simple_chat_id = $1")
            .bind(chat.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM simple_chat_messages WHERE chat_id = $1")
            .bind(chat.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM simple_chats WHERE chat_id = $1")
            .bind(chat.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
