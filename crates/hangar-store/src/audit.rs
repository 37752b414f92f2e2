//! The audit log: admin actions (written in the same transaction as the action), refused
//! authentication, and later sandbox lifecycle events.

use hangar_protocol::{AuditRecord, TenantId};

use crate::sql::SqlStore;
use crate::time::{from_ms, now_ms};
use crate::{Actor, Result, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub actor: String,
    pub request_id: Option<String>,
    pub tenant_id: Option<String>,
    /// Dotted verb: `tenant.create`, `auth.denied`, `api_key.revoke`…
    pub action: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// `success` or `denied`.
    pub outcome: String,
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn admin(actor: &Actor, action: &str, resource_type: &str, resource_id: &str) -> Self {
        Self {
            actor: actor.name.clone(),
            request_id: actor.request_id.clone(),
            tenant_id: None,
            action: action.to_owned(),
            resource_type: Some(resource_type.to_owned()),
            resource_id: Some(resource_id.to_owned()),
            outcome: "success".to_owned(),
            details: serde_json::Value::Null,
        }
    }

    pub fn tenant(mut self, tenant: &TenantId) -> Self {
        self.tenant_id = Some(tenant.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

#[derive(Debug, Clone)]
pub struct AuditFilter {
    pub tenant_id: Option<String>,
    pub action: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

impl Default for AuditFilter {
    fn default() -> Self {
        Self {
            tenant_id: None,
            action: None,
            limit: 100,
            offset: 0,
        }
    }
}

#[async_trait::async_trait]
pub trait AuditStore {
    /// Records an event that has no transaction of its own (e.g. a refused request).
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()>;
    /// Newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
}

pub(crate) async fn insert_audit(conn: &mut sqlx::AnyConnection, entry: &AuditEntry) -> Result<()> {
    let details = (!entry.details.is_null()).then(|| entry.details.to_string());
    sqlx::query(
        "INSERT INTO audit_log (audit_id, occurred_at, actor, tenant_id, action, resource_type, resource_id, \
         outcome, request_id, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_ms())
    .bind(&entry.actor)
    .bind(entry.tenant_id.as_deref())
    .bind(&entry.action)
    .bind(entry.resource_type.as_deref())
    .bind(entry.resource_id.as_deref())
    .bind(&entry.outcome)
    .bind(entry.request_id.as_deref())
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    audit_id: String,
    occurred_at: i64,
    actor: String,
    tenant_id: Option<String>,
    action: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    outcome: String,
    request_id: Option<String>,
    details: Option<String>,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self> {
        let details = match row.details {
            Some(text) => serde_json::from_str(&text).map_err(StoreError::corrupt)?,
            None => serde_json::Value::Null,
        };
        Ok(AuditRecord {
            audit_id: row.audit_id,
            occurred_at: from_ms(row.occurred_at)?,
            actor: row.actor,
            tenant_id: row.tenant_id,
            action: row.action,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            outcome: row.outcome,
            request_id: row.request_id,
            details,
        })
    }
}

#[async_trait::async_trait]
impl AuditStore for SqlStore {
    async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut conn = self.write.acquire().await?;
        insert_audit(&mut conn, entry).await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT audit_id, occurred_at, actor, tenant_id, action, resource_type, resource_id, outcome, \
             request_id, details FROM audit_log \
             WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR action = $2) \
             ORDER BY occurred_at DESC, audit_id DESC LIMIT $3 OFFSET $4",
        )
        .bind(filter.tenant_id.as_deref())
        .bind(filter.action.as_deref())
        .bind(filter.limit.max(0))
        .bind(filter.offset.max(0))
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(AuditRecord::try_from).collect()
    }
}
