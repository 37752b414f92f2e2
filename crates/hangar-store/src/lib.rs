//! Hangar's persistence: one [`Store`] trait, one SQL implementation that runs on SQLite (the
//! embedded default) and PostgreSQL (production).
//!
//! Business logic is written once, against sqlx's `Any` driver, in a portable SQL subset:
//! `$N` placeholders; ids and JSON as TEXT; timestamps as epoch milliseconds; booleans as 0/1
//! integers; prices as integer micro-USD per 1K tokens and costs as integer nano-USD. Only the
//! DDL differs per dialect: `migrations/sqlite` and `migrations/postgres` hold files of the same
//! names describing the same tables (a test compares them). On SQLite every write goes through a
//! single-connection pool and starts with `BEGIN IMMEDIATE`, so writers queue instead of failing
//! with `SQLITE_BUSY`; reads use a separate pool and WAL lets them run beside the writer.

mod api_keys;
mod audit;
mod blob;
mod conversations;
mod error;
mod models;
mod runs;
mod simple_chats;
mod sql;
mod store;
mod tenants;
#[cfg(feature = "testing")]
pub mod testing;
mod time;
mod usage;
mod workspaces;

pub use api_keys::{ApiKeyStore, AuthenticatedKey, KEY_PREFIX};
pub use audit::{AuditEntry, AuditFilter, AuditStore};
pub use blob::{
    BlobError, BlobRef, BlobResult, BlobStore, MAX_PARTS_IN_FLIGHT, PART_SIZE, S3Config, S3Credentials,
    validate_digest,
};
pub use conversations::{ConversationFilter, ConversationStore, HistoryEntry, HistoryKind, NewConversation};
pub use error::{Result, StoreError};
pub use models::ModelStore;
pub use runs::{NewRun, RunOutcome, RunStore, StoredEvent};
pub use simple_chats::{NewSimpleChat, SimpleChatFilter, SimpleChatStore};
pub use sql::{Dialect, SqlStore, StoreOptions};
pub use store::{Actor, Store};
pub use tenants::{TenantFilter, TenantStore};
pub use usage::{NewUsage, UsageStore};
pub use workspaces::{
    Change, FileSource, FileVersion, Snapshot, WorkspaceId, WorkspaceStore, WorkspaceUsage,
};
