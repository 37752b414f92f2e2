//! The [`Store`] trait: everything Hangar persists, one sub-trait per entity.

use crate::{
    ApiKeyStore, AuditStore, ConversationStore, ModelStore, Result, RunStore, SimpleChatStore, TenantStore,
    UsageStore, WorkspaceStore,
};

/// Who is making a change, written to the audit log in the same transaction as the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `admin:<fingerprint>`, `tenant-key:<key_id>`, `cli`, `system`, `anonymous`.
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, request_id: Option<String>) -> Self {
        Self {
            name: name.into(),
            request_id,
        }
    }

    pub fn cli() -> Self {
        Self::new("cli", None)
    }
}

/// All of Hangar's persistent state. Held as `Arc<dyn Store>`; [`crate::SqlStore`] implements it
/// for SQLite and PostgreSQL.
#[async_trait::async_trait]
pub trait Store:
    TenantStore
    + ModelStore
    + ApiKeyStore
    + AuditStore
    + SimpleChatStore
    + UsageStore
    + ConversationStore
    + RunStore
    + WorkspaceStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// A trivial round trip, for health checks.
    async fn ping(&self) -> Result<()>;

    /// Applies pending migrations for this store's dialect.
    async fn migrate(&self) -> Result<()>;

    /// Closes the connection pools.
    async fn close(&self);
}
