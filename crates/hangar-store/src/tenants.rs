//! Tenants: create, read, update, delete, with the default model checked on the way in.

use hangar_protocol::{
    ErrorDetail, ModelId, ModelStatus, Tenant, TenantCreate, TenantId, TenantPolicy, TenantStatus,
    TenantUpdate,
};
use serde_json::json;

use crate::audit::{AuditEntry, insert_audit};
use crate::sql::{Lock, SqlStore, concat, count_where};
use crate::time::{from_ms, now_ms};
use crate::{Actor, Result, StoreError};

#[derive(Debug, Clone)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub limit: i64,
    pub offset: i64,
}

impl Default for TenantFilter {
    fn default() -> Self {
        Self {
            status: None,
            limit: 100,
            offset: 0,
        }
    }
}

#[async_trait::async_trait]
pub trait TenantStore {
    /// Newest first.
    async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant>;
    /// Conflict if the id exists; NotFound/Invalid if the default model is missing/deprecated.
    async fn create_tenant(&self, actor: &Actor, new: &TenantCreate) -> Result<Tenant>;
    async fn update_tenant(&self, actor: &Actor, id: &TenantId, patch: &TenantUpdate) -> Result<Tenant>;
    /// Conflict (with counts) while anything still belongs to the tenant. API keys go with it.
    async fn delete_tenant(&self, actor: &Actor, id: &TenantId) -> Result<()>;
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    tenant_id: String,
    system_prompt: Option<String>,
    model_id: Option<String>,
    status: String,
    policy: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self> {
        Ok(Tenant {
            tenant_id: row.tenant_id.try_into().map_err(StoreError::corrupt)?,
            system_prompt: row.system_prompt,
            model_id: row
                .model_id
                .map(ModelId::try_from)
                .transpose()
                .map_err(StoreError::corrupt)?,
            status: TenantStatus::parse(&row.status).ok_or_else(|| StoreError::corrupt(&row.status))?,
            policy: serde_json::from_str(&row.policy).map_err(StoreError::corrupt)?,
            created_at: from_ms(row.created_at)?,
            updated_at: from_ms(row.updated_at)?,
        })
    }
}

const SELECT: &str =
    "SELECT tenant_id, system_prompt, model_id, status, policy, created_at, updated_at FROM tenants";

/// A tenant's default model must exist (404) and be active (400). `lock` keeps it from being
/// deleted before the referencing row is written.
async fn check_default_model(
    conn: &mut sqlx::AnyConnection,
    model_id: &ModelId,
    lock: &'static str,
) -> Result<()> {
    let status: Option<(String,)> =
        sqlx::query_as(concat(&["SELECT status FROM models WHERE model_id = $1", lock]))
            .bind(model_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    match status {
        None => Err(StoreError::not_found("model", model_id)),
        Some((s,)) if s == ModelStatus::Active.as_str() => Ok(()),
        Some(_) => Err(StoreError::invalid(
            "model_id",
            format!("model '{model_id}' is deprecated"),
        )),
    }
}

fn policy_json(policy: &TenantPolicy) -> Result<String> {
    serde_json::to_string(policy).map_err(StoreError::corrupt)
}

async fn fetch(conn: &mut sqlx::AnyConnection, id: &TenantId, lock: &'static str) -> Result<Tenant> {
    let row: Option<TenantRow> = sqlx::query_as(concat(&[SELECT, " WHERE tenant_id = $1", lock]))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    row.ok_or_else(|| StoreError::not_found("tenant", id))?.try_into()
}

#[async_trait::async_trait]
impl TenantStore for SqlStore {
    async fn list_tenants(&self, filter: &TenantFilter) -> Result<Vec<Tenant>> {
        let rows: Vec<TenantRow> = sqlx::query_as(concat(&[
            SELECT,
            " WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, tenant_id LIMIT $2 OFFSET $3",
        ]))
        .bind(filter.status.map(TenantStatus::as_str))
        .bind(filter.limit.max(0))
        .bind(filter.offset.max(0))
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(Tenant::try_from).collect()
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Tenant> {
        let mut conn = self.read.acquire().await?;
        fetch(&mut conn, id, "").await
    }

    async fn create_tenant(&self, actor: &Actor, new: &TenantCreate) -> Result<Tenant> {
        let mut tx = self.begin_write().await?;
        if let Some(model_id) = &new.model_id {
            check_default_model(&mut tx, model_id, self.lock(Lock::KeyShare)).await?;
        }
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO tenants (tenant_id, system_prompt, model_id, status, policy, created_at, updated_at) \
             VALUES ($1, $2, $3, 'active', $4, $5, $5) ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(new.tenant_id.as_str())
        .bind(new.system_prompt.as_deref())
        .bind(new.model_id.as_ref().map(ModelId::as_str))
        .bind(policy_json(&new.policy)?)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::conflict(format!(
                "tenant '{}' already exists",
                new.tenant_id
            )));
        }
        let tenant = fetch(&mut tx, &new.tenant_id, "").await?;
        let entry = AuditEntry::admin(actor, "tenant.create", "tenant", new.tenant_id.as_str())
            .tenant(&new.tenant_id)
            .details(json!({ "model_id": new.model_id }));
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    async fn update_tenant(&self, actor: &Actor, id: &TenantId, patch: &TenantUpdate) -> Result<Tenant> {
        let mut tx = self.begin_write().await?;
        let mut tenant = fetch(&mut tx, id, self.lock(Lock::Update)).await?;
        if let Some(Some(model_id)) = &patch.model_id
            && tenant.model_id.as_ref() != Some(model_id)
        {
            check_default_model(&mut tx, model_id, self.lock(Lock::KeyShare)).await?;
        }
        if let Some(prompt) = &patch.system_prompt {
            tenant.system_prompt.clone_from(prompt);
        }
        if let Some(model_id) = &patch.model_id {
            tenant.model_id.clone_from(model_id);
        }
        if let Some(status) = patch.status {
            tenant.status = status;
        }
        if let Some(policy) = &patch.policy {
            tenant.policy.clone_from(policy);
        }
        sqlx::query(
            "UPDATE tenants SET system_prompt = $1, model_id = $2, status = $3, policy = $4, updated_at = $5 \
             WHERE tenant_id = $6",
        )
        .bind(tenant.system_prompt.as_deref())
        .bind(tenant.model_id.as_ref().map(ModelId::as_str))
        .bind(tenant.status.as_str())
        .bind(policy_json(&tenant.policy)?)
        .bind(now_ms())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        let tenant = fetch(&mut tx, id, "").await?;
        let entry = AuditEntry::admin(actor, "tenant.update", "tenant", id.as_str())
            .tenant(id)
            .details(serde_json::to_value(patch).unwrap_or_default());
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    async fn delete_tenant(&self, actor: &Actor, id: &TenantId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        fetch(&mut tx, id, self.lock(Lock::Update)).await?;
        let mut details = Vec::new();
        for (what, sql) in [
            (
                "conversations",
                "SELECT COUNT(*) FROM conversations WHERE tenant_id = $1",
            ),
            (
                "simple_chats",
                "SELECT COUNT(*) FROM simple_chats WHERE tenant_id = $1",
            ),
            (
                "usage_logs",
                "SELECT COUNT(*) FROM usage_logs WHERE tenant_id = $1",
            ),
            (
                "agent_skills",
                "SELECT COUNT(*) FROM agent_skills WHERE tenant_id = $1",
            ),
            (
                "mcp_servers",
                "SELECT COUNT(*) FROM mcp_servers WHERE tenant_id = $1",
            ),
            (
                "workspaces",
                "SELECT COUNT(*) FROM workspaces WHERE tenant_id = $1",
            ),
        ] {
            let n = count_where(&mut tx, sql, id.as_str()).await?;
            if n > 0 {
                details.push(ErrorDetail::count(
                    what,
                    n,
                    format!("{n} {what} belong to the tenant"),
                ));
            }
        }
        if !details.is_empty() {
            return Err(StoreError::Conflict {
                message: format!("tenant '{id}' still owns data and cannot be deleted"),
                details,
            });
        }
        sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM tenants WHERE tenant_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &AuditEntry::admin(actor, "tenant.delete", "tenant", id.as_str()).tenant(id),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
