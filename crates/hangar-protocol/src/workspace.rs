//! A conversation's workspace files over the API (contract §1.6, with its QUIRKs fixed:
//! checksums are real, `is_presented` is set by `present_files` and `POST …/files/present`,
//! and every route checks the conversation belongs to the tenant).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// One version of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationFileInfo {
    pub file_id: Uuid,
    /// Relative to `/workspace`.
    pub file_path: String,
    /// The name it was uploaded with, else its file name.
    pub original_name: String,
    pub original_relative_path: Option<String>,
    pub file_size: u64,
    pub mime_type: Option<String>,
    /// 1 for the first version of the path.
    pub version: u64,
    /// `user_upload`, `ai_created` or `ai_modified`.
    pub source: String,
    pub is_presented: bool,
    /// `sha256:<hex>` of the content.
    pub checksum: Option<String>,
    /// Always null (kept for the contract's shape).
    pub description: Option<String>,
    /// The run that produced this version (null for uploads outside a run).
    pub run_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// Versions are immutable: the same as `created_at`.
    pub updated_at: DateTime<Utc>,
}

/// `GET …/files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationFiles {
    pub conversation_id: Uuid,
    pub files: Vec<ConversationFileInfo>,
    pub total_count: u64,
    pub total_size: u64,
}

/// `GET …/files/presented`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PresentedFiles {
    pub conversation_id: Uuid,
    pub files: Vec<ConversationFileInfo>,
}

/// `POST …/files/present`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresentRequest {
    pub paths: Vec<String>,
    /// `false` takes the mark away.
    #[serde(default = "yes")]
    pub presented: bool,
}

fn yes() -> bool {
    true
}

/// The workspace as a run left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceSnapshot {
    pub run_id: Uuid,
    /// The workspace's change number at the end of the run.
    pub seq: u64,
    pub files: u64,
    pub bytes: u64,
    pub created_at: DateTime<Utc>,
}

/// What changed between two runs' snapshots (paths, sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkspaceDiff {
    pub from_run: Uuid,
    pub to_run: Uuid,
    pub added: Vec<String>,
    pub modified: Vec<String>,
    pub deleted: Vec<String>,
}

/// `POST …/workspace/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// The run whose snapshot to go back to.
    pub run_id: Uuid,
}

/// What a restore did: new versions bringing every path back to the snapshot's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RestoreResult {
    pub run_id: Uuid,
    pub restored: Vec<String>,
    pub deleted: Vec<String>,
}
