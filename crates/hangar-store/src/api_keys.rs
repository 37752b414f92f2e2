//! Tenant-scoped API keys: `hgr_<key_id>_<secret>`. Only SHA-256 of the whole key is stored;
//! the key id (public) finds the row, and the hash is compared in constant time. Keys carry 256
//! bits of randomness, so a fast hash is the right one (no password stretching needed).

use hangar_protocol::{ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyId, TenantId};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::audit::{AuditEntry, insert_audit};
use crate::sql::SqlStore;
use crate::time::{from_ms, from_ms_opt, now_ms, to_ms};
use crate::{Actor, Result, StoreError};

/// Every tenant key starts with this, which also tells them apart from admin keys.
pub const KEY_PREFIX: &str = "hgr_";
const KEY_ID_LEN: usize = 12;
/// `last_used_at` is refreshed at most this often, so authentication stays a read.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// A key that passed authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedKey {
    pub key_id: ApiKeyId,
    pub tenant_id: TenantId,
}

#[async_trait::async_trait]
pub trait ApiKeyStore {
    /// Creates a key for an existing tenant and returns it with its secret (shown once).
    async fn create_api_key(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        new: &ApiKeyCreate,
    ) -> Result<ApiKeyCreated>;
    /// All keys of the tenant, revoked ones included, newest first.
    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>>;
    /// NotFound if the tenant has no such key; Conflict if it was already revoked.
    async fn revoke_api_key(&self, actor: &Actor, tenant: &TenantId, key: &ApiKeyId) -> Result<ApiKey>;
    /// The key's identity if `presented` is a live key (not revoked, not expired), else `None`.
    async fn authenticate_api_key(&self, presented: &str) -> Result<Option<AuthenticatedKey>>;
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Splits `hgr_<key_id>_<secret>` into its key id, if it has that shape.
fn key_id_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == KEY_ID_LEN && !secret.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(id)
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    tenant_id: String,
    name: Option<String>,
    prefix: String,
    key_hash: String,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = StoreError;

    fn try_from(row: KeyRow) -> Result<Self> {
        Ok(ApiKey {
            key_id: row.key_id.try_into().map_err(StoreError::corrupt)?,
            tenant_id: row.tenant_id.try_into().map_err(StoreError::corrupt)?,
            name: row.name,
            prefix: row.prefix,
            created_at: from_ms(row.created_at)?,
            expires_at: from_ms_opt(row.expires_at)?,
            last_used_at: from_ms_opt(row.last_used_at)?,
            revoked_at: from_ms_opt(row.revoked_at)?,
        })
    }
}

const SELECT: &str = "SELECT key_id, tenant_id, name, prefix, key_hash, created_at, expires_at, last_used_at, \
     revoked_at FROM api_keys";

async fn fetch(conn: &mut sqlx::AnyConnection, key_id: &str) -> Result<Option<KeyRow>> {
    Ok(
        sqlx::query_as(crate::sql::concat(&[SELECT, " WHERE key_id = $1"]))
            .bind(key_id)
            .fetch_optional(conn)
            .await?,
    )
}

#[async_trait::async_trait]
impl ApiKeyStore for SqlStore {
    async fn create_api_key(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        new: &ApiKeyCreate,
    ) -> Result<ApiKeyCreated> {
        let (key_id, secret) = {
            let mut rng = rand::rng();
            let id: String = (&mut rng)
                .sample_iter(Alphanumeric)
                .take(KEY_ID_LEN)
                .map(char::from)
                .collect();
            let secret: [u8; 32] = rng.random();
            (id.to_ascii_lowercase(), hex::encode(secret))
        };
        let key = format!("{KEY_PREFIX}{key_id}_{secret}");
        let prefix = format!("{KEY_PREFIX}{key_id}");
        let mut tx = self.begin_write().await?;
        let exists: Option<(String,)> = sqlx::query_as("SELECT tenant_id FROM tenants WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::not_found("tenant", tenant));
        }
        sqlx::query(
            "INSERT INTO api_keys (key_id, tenant_id, name, prefix, key_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key_id)
        .bind(tenant.as_str())
        .bind(new.name.as_deref())
        .bind(&prefix)
        .bind(hash(&key))
        .bind(now_ms())
        .bind(new.expires_at.map(to_ms))
        .execute(&mut *tx)
        .await?;
        let row = fetch(&mut tx, &key_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("key vanished"))?;
        let entry = AuditEntry::admin(actor, "api_key.create", "api_key", &key_id)
            .tenant(tenant)
            .details(json!({ "name": new.name, "expires_at": new.expires_at }));
        insert_audit(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(ApiKeyCreated {
            key,
            api_key: row.try_into()?,
        })
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(crate::sql::concat(&[
            SELECT,
            " WHERE tenant_id = $1 ORDER BY created_at DESC, key_id",
        ]))
        .bind(tenant.as_str())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(ApiKey::try_from).collect()
    }

    async fn revoke_api_key(&self, actor: &Actor, tenant: &TenantId, key: &ApiKeyId) -> Result<ApiKey> {
        let mut tx = self.begin_write().await?;
        // Conditional on `revoked_at IS NULL`, so of concurrent revokes exactly one succeeds.
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND tenant_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(key.as_str())
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked == 0 {
            let exists = fetch(&mut tx, key.as_str())
                .await?
                .is_some_and(|row| row.tenant_id == tenant.as_str());
            return Err(if exists {
                StoreError::conflict(format!("api key '{key}' is already revoked"))
            } else {
                StoreError::not_found("api_key", key)
            });
        }
        let row = fetch(&mut tx, key.as_str())
            .await?
            .ok_or_else(|| StoreError::corrupt("key vanished"))?;
        insert_audit(
            &mut tx,
            &AuditEntry::admin(actor, "api_key.revoke", "api_key", key.as_str()).tenant(tenant),
        )
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn authenticate_api_key(&self, presented: &str) -> Result<Option<AuthenticatedKey>> {
        let Some(key_id) = key_id_of(presented) else {
            return Ok(None);
        };
        let mut conn = self.read.acquire().await?;
        let Some(row) = fetch(&mut conn, key_id).await? else {
            return Ok(None);
        };
        drop(conn);
        let matches: bool = hash(presented).as_bytes().ct_eq(row.key_hash.as_bytes()).into();
        let now = now_ms();
        if !matches || row.revoked_at.is_some() || row.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        if row
            .last_used_at
            .is_none_or(|at| now - at >= LAST_USED_GRANULARITY_MS)
        {
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE key_id = $2")
                .bind(now)
                .bind(&row.key_id)
                .execute(&self.write)
                .await?;
        }
        Ok(Some(AuthenticatedKey {
            key_id: row.key_id.try_into().map_err(StoreError::corrupt)?,
            tenant_id: row.tenant_id.try_into().map_err(StoreError::corrupt)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_parsing() {
        assert_eq!(key_id_of("hgr_abcdef123456_deadbeef"), Some("abcdef123456"));
        for bad in [
            "",
            "hgr_",
            "hgr_abc_def",
            "xyz_abcdef123456_x",
            "hgr_abcdef123456_",
            "hgr_abcdef12345!_x",
        ] {
            assert_eq!(key_id_of(bad), None, "{bad:?}");
        }
    }
}
