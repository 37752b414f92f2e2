//! Workspace manifests: which files a workspace holds, every version of each, and what a run left.
//!
//! A workspace belongs to a tenant; a conversation gets one on demand ([`WorkspaceStore::workspace_for`])
//! and several conversations may share one. Its manifest is one row per (path, version) naming a
//! content-addressed blob (see [`crate::BlobStore`]) by SHA-256; a deletion is a row too, so history
//! is never rewritten. Every row a workspace gains takes the next number of a workspace-wide
//! counter (`seq`, 1, 2, 3, … without gaps), allocated in the transaction that writes the rows
//! under a lock of the workspace row, so the state "at change N" is, per path, the row with the
//! greatest seq ≤ N. A snapshot records that number when a run ends; listing, diffing and
//! restoring a run's files are reads at its seq.
//!
//! Blobs are per tenant, so reference counting is per tenant: [`WorkspaceStore::delete_workspace`]
//! returns the digests no row of the tenant names any more, computed in the transaction that
//! deletes the rows, and the caller deletes those blobs.
//!
//! These are store types; the HTTP API has wire types of its own.

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use hangar_protocol::TenantId;
use uuid::Uuid;

use crate::blob::validate_digest;
use crate::conversations::uuid;
use crate::sql::{Lock, SqlStore, concat};
use crate::time::{from_ms, now_ms};
use crate::{Result, StoreError};

/// A workspace's id. A type of its own so a conversation id is never passed where a workspace id
/// is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceId(pub Uuid);

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Who produced a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileSource {
    UserUpload,
    AiCreated,
    AiModified,
}

impl FileSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserUpload => "user_upload",
            Self::AiCreated => "ai_created",
            Self::AiModified => "ai_modified",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "user_upload" => Some(Self::UserUpload),
            "ai_created" => Some(Self::AiCreated),
            "ai_modified" => Some(Self::AiModified),
            _ => None,
        }
    }
}

/// One row of a manifest: a version of a path, or its deletion (`deleted`, no digest, size 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileVersion {
    pub file_id: Uuid,
    /// Relative to the workspace root; validated by the caller before it gets here.
    pub path: String,
    /// 1 for the first version of the path, one more for each later one (deletions included).
    pub version: u64,
    /// The workspace-wide change number of this row.
    pub seq: u64,
    pub size: u64,
    pub mime_type: Option<String>,
    /// Lowercase hex SHA-256 of the content; `None` for a deletion.
    pub sha256: Option<String>,
    pub source: FileSource,
    pub presented: bool,
    pub deleted: bool,
    /// The run that produced it; `None` for user uploads outside a run.
    pub run_id: Option<Uuid>,
    pub original_name: Option<String>,
    pub original_relative_path: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One change of a change set given to [`WorkspaceStore::record_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// New content at `path` (the blob is already stored).
    Put {
        path: String,
        size: u64,
        sha256: String,
        mime_type: Option<String>,
        source: FileSource,
        original_name: Option<String>,
        original_relative_path: Option<String>,
    },
    /// `path` is gone.
    Delete { path: String },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Self::Put { path, .. } | Self::Delete { path } => path,
        }
    }
}

/// What a run left: the workspace's change number when it was taken, with the number and total
/// size of the files of that state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub run_id: Uuid,
    pub seq: u64,
    pub files: u64,
    pub bytes: u64,
    pub created_at: DateTime<Utc>,
}

/// Files and bytes of a latest state (deleted paths and older versions do not count), for quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkspaceUsage {
    pub files: u64,
    pub bytes: u64,
}

#[async_trait::async_trait]
pub trait WorkspaceStore {
    /// The conversation's workspace, created and linked on first use; concurrent callers get the
    /// same one. NotFound unless the conversation is in `tenant`. Whether the conversation wants
    /// a workspace (`workspace_enabled`) is the caller's decision.
    async fn workspace_for(&self, tenant: &TenantId, conversation: Uuid) -> Result<WorkspaceId>;
    /// The files at change `at` (`None`: the latest), one row per path that exists there, by path.
    async fn files(&self, workspace: WorkspaceId, at: Option<u64>) -> Result<Vec<FileVersion>>;
    /// Every row (deletions included) of `path`, or of all paths, newest first.
    async fn versions(&self, workspace: WorkspaceId, path: Option<&str>) -> Result<Vec<FileVersion>>;
    /// Applies `changes` in order, in one transaction, and returns the rows written. A `Put` of
    /// the content the path already has, and a `Delete` of a path that does not exist, write
    /// nothing. A new version keeps the `presented` flag of the version it replaces. Invalid for
    /// an empty path or a malformed digest.
    async fn record_changes(
        &self,
        workspace: WorkspaceId,
        run_id: Option<Uuid>,
        changes: &[Change],
    ) -> Result<Vec<FileVersion>>;
    /// Records the current state as `run_id`'s snapshot; a second call returns the first one.
    async fn snapshot(&self, workspace: WorkspaceId, run_id: Uuid) -> Result<Snapshot>;
    /// The workspace's snapshots, newest first.
    async fn snapshots(&self, workspace: WorkspaceId) -> Result<Vec<Snapshot>>;
    /// NotFound if the run left no snapshot here.
    async fn snapshot_of(&self, workspace: WorkspaceId, run_id: Uuid) -> Result<Snapshot>;
    /// Sets the flag on the latest versions of `paths` (no new version). NotFound naming the
    /// first path that does not exist (nothing is changed then).
    async fn set_presented(&self, workspace: WorkspaceId, paths: &[String], presented: bool) -> Result<()>;
    /// Which of `shas` some row of some workspace of `tenant` still names.
    async fn blobs_in_use(&self, tenant: &TenantId, shas: &[String]) -> Result<HashSet<String>>;
    /// Deletes the workspace, its rows and snapshots, and unlinks its conversations; returns the
    /// digests it named that no other row of the tenant names (sorted): the blobs to delete.
    /// NotFound unless the workspace is in `tenant`.
    async fn delete_workspace(&self, tenant: &TenantId, workspace: WorkspaceId) -> Result<Vec<String>>;
    /// Files and bytes of the workspace's latest state.
    async fn workspace_usage(&self, workspace: WorkspaceId) -> Result<WorkspaceUsage>;
    /// Files and bytes of the latest states of all the tenant's workspaces.
    async fn tenant_workspace_usage(&self, tenant: &TenantId) -> Result<WorkspaceUsage>;
}

#[derive(sqlx::FromRow)]
struct FileRow {
    file_id: String,
    path: String,
    version: i64,
    seq: i64,
    size_bytes: i64,
    mime_type: Option<String>,
    sha256: Option<String>,
    source: String,
    is_presented: i64,
    is_deleted: i64,
    run_id: Option<String>,
    original_name: Option<String>,
    original_relative_path: Option<String>,
    created_at: i64,
}

fn unsigned(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(format!("{column} = {value}")))
}

fn signed(value: u64, field: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::invalid(field, format!("{field} {value} is too large")))
}

fn flag(value: i64, column: &str) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::corrupt(format!("{column} = {other}"))),
    }
}

impl TryFrom<FileRow> for FileVersion {
    type Error = StoreError;

    fn try_from(row: FileRow) -> Result<Self> {
        Ok(FileVersion {
            file_id: uuid(&row.file_id)?,
            path: row.path,
            version: unsigned(row.version, "version")?,
            seq: unsigned(row.seq, "seq")?,
            size: unsigned(row.size_bytes, "size_bytes")?,
            mime_type: row.mime_type,
            sha256: row.sha256,
            source: FileSource::parse(&row.source).ok_or_else(|| StoreError::corrupt(&row.source))?,
            presented: flag(row.is_presented, "is_presented")?,
            deleted: flag(row.is_deleted, "is_deleted")?,
            run_id: row.run_id.as_deref().map(uuid).transpose()?,
            original_name: row.original_name,
            original_relative_path: row.original_relative_path,
            created_at: from_ms(row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SnapshotRow {
    run_id: String,
    seq: i64,
    files: i64,
    bytes: i64,
    created_at: i64,
}

impl TryFrom<SnapshotRow> for Snapshot {
    type Error = StoreError;

    fn try_from(row: SnapshotRow) -> Result<Self> {
        Ok(Snapshot {
            run_id: uuid(&row.run_id)?,
            seq: unsigned(row.seq, "seq")?,
            files: unsigned(row.files, "files")?,
            bytes: unsigned(row.bytes, "bytes")?,
            created_at: from_ms(row.created_at)?,
        })
    }
}

const SELECT_FILES: &str = "SELECT f.file_id, f.path, f.version, f.seq, f.size_bytes, f.mime_type, f.sha256, \
     f.source, f.is_presented, f.is_deleted, f.run_id, f.original_name, f.original_relative_path, f.created_at \
     FROM workspace_files f";

/// Keeps, per path, the row with the greatest seq not above `$2`.
const AT_SEQ: &str = " AND f.seq = (SELECT MAX(g.seq) FROM workspace_files g \
     WHERE g.workspace_id = f.workspace_id AND g.path = f.path AND g.seq <= $2)";

/// Keeps, per path, the latest row.
const LATEST: &str = " AND f.seq = (SELECT MAX(g.seq) FROM workspace_files g \
     WHERE g.workspace_id = f.workspace_id AND g.path = f.path)";

const SELECT_SNAPSHOTS: &str = "SELECT run_id, seq, files, bytes, created_at FROM workspace_snapshots";

/// Digests per `IN (…)` list, well below every backend's limit on bound parameters.
const IN_CHUNK: usize = 500;

/// The workspace's `last_seq`, taking `lock` on its row; NotFound if it does not exist.
async fn last_seq(conn: &mut sqlx::AnyConnection, workspace: WorkspaceId, lock: &'static str) -> Result<i64> {
    let found: Option<(i64,)> = sqlx::query_as(concat(&[
        "SELECT last_seq FROM workspaces WHERE workspace_id = $1",
        lock,
    ]))
    .bind(workspace.to_string())
    .fetch_optional(conn)
    .await?;
    found
        .map(|(seq,)| seq)
        .ok_or_else(|| StoreError::not_found("workspace", workspace))
}

/// Every path's latest row, deletions included.
async fn latest_rows(conn: &mut sqlx::AnyConnection, workspace: WorkspaceId) -> Result<Vec<FileVersion>> {
    let rows: Vec<FileRow> = sqlx::query_as(concat(&[SELECT_FILES, " WHERE f.workspace_id = $1", LATEST]))
        .bind(workspace.to_string())
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(FileVersion::try_from).collect()
}

async fn usage_of(conn: &mut sqlx::AnyConnection, sql: &'static str, key: &str) -> Result<WorkspaceUsage> {
    let (files, bytes): (i64, i64) = sqlx::query_as(sql).bind(key).fetch_one(conn).await?;
    Ok(WorkspaceUsage {
        files: unsigned(files, "files")?,
        bytes: unsigned(bytes, "bytes")?,
    })
}

const WORKSPACE_USAGE: &str = "SELECT COUNT(*), CAST(COALESCE(SUM(f.size_bytes), 0) AS BIGINT) \
     FROM workspace_files f WHERE f.workspace_id = $1 AND f.is_deleted = 0 \
     AND f.seq = (SELECT MAX(g.seq) FROM workspace_files g WHERE g.workspace_id = f.workspace_id AND g.path = f.path)";

const TENANT_USAGE: &str = "SELECT COUNT(*), CAST(COALESCE(SUM(f.size_bytes), 0) AS BIGINT) \
     FROM workspace_files f JOIN workspaces w ON w.workspace_id = f.workspace_id \
     WHERE w.tenant_id = $1 AND f.is_deleted = 0 \
     AND f.seq = (SELECT MAX(g.seq) FROM workspace_files g WHERE g.workspace_id = f.workspace_id AND g.path = f.path)";

/// Which of `shas` a row of a workspace of `tenant` names.
async fn referenced(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    shas: &[String],
) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in shas.chunks(IN_CHUNK) {
        let placeholders = (2..chunk.len() + 2)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Only placeholders are formatted into the text; the digests are bound.
        let sql = format!(
            "SELECT DISTINCT f.sha256 FROM workspace_files f JOIN workspaces w ON w.workspace_id = f.workspace_id \
             WHERE w.tenant_id = $1 AND f.sha256 IN ({placeholders})"
        );
        let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str());
        for sha in chunk {
            query = query.bind(sha);
        }
        found.extend(query.fetch_all(&mut *conn).await?.into_iter().map(|(sha,)| sha));
    }
    Ok(found)
}

async fn insert_row(conn: &mut sqlx::AnyConnection, workspace: WorkspaceId, row: &FileVersion) -> Result<()> {
    sqlx::query(
        "INSERT INTO workspace_files (file_id, workspace_id, path, version, seq, size_bytes, mime_type, sha256, \
         source, is_presented, is_deleted, run_id, original_name, original_relative_path, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(row.file_id.to_string())
    .bind(workspace.to_string())
    .bind(&row.path)
    .bind(signed(row.version, "version")?)
    .bind(signed(row.seq, "seq")?)
    .bind(signed(row.size, "size")?)
    .bind(row.mime_type.as_deref())
    .bind(row.sha256.as_deref())
    .bind(row.source.as_str())
    .bind(i64::from(row.presented))
    .bind(i64::from(row.deleted))
    .bind(row.run_id.map(|id| id.to_string()))
    .bind(row.original_name.as_deref())
    .bind(row.original_relative_path.as_deref())
    .bind(row.created_at.timestamp_millis())
    .execute(conn)
    .await?;
    Ok(())
}

fn check_changes(changes: &[Change]) -> Result<()> {
    for change in changes {
        if change.path().is_empty() {
            return Err(StoreError::invalid("path", "a file path must not be empty"));
        }
        if let Change::Put { sha256, size, .. } = change {
            validate_digest(sha256).map_err(|e| StoreError::invalid("sha256", e.to_string()))?;
            signed(*size, "size")?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl WorkspaceStore for SqlStore {
    async fn workspace_for(&self, tenant: &TenantId, conversation: Uuid) -> Result<WorkspaceId> {
        let sql = "SELECT workspace_id FROM conversations WHERE conversation_id = $1 AND tenant_id = $2";
        let key = conversation.to_string();
        // Most calls find the link made by an earlier run: no write transaction for them.
        let linked: Option<(Option<String>,)> = sqlx::query_as(sql)
            .bind(&key)
            .bind(tenant.as_str())
            .fetch_optional(&self.read)
            .await?;
        match linked {
            None => return Err(StoreError::not_found("conversation", conversation)),
            Some((Some(id),)) => return Ok(WorkspaceId(uuid(&id)?)),
            Some((None,)) => {}
        }
        let mut tx = self.begin_write().await?;
        // The row lock (PostgreSQL) or the write lock (SQLite) makes a concurrent caller wait and
        // then see the link this one made.
        let linked: Option<(Option<String>,)> = sqlx::query_as(concat(&[sql, self.lock(Lock::Update)]))
            .bind(&key)
            .bind(tenant.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let id = match linked {
            None => return Err(StoreError::not_found("conversation", conversation)),
            Some((Some(id),)) => WorkspaceId(uuid(&id)?),
            Some((None,)) => {
                let id = WorkspaceId(Uuid::now_v7());
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO workspaces (workspace_id, tenant_id, last_seq, created_at, updated_at) \
                     VALUES ($1, $2, 0, $3, $3)",
                )
                .bind(id.to_string())
                .bind(tenant.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE conversations SET workspace_id = $1 WHERE conversation_id = $2")
                    .bind(id.to_string())
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        tx.commit().await?;
        Ok(id)
    }

    async fn files(&self, workspace: WorkspaceId, at: Option<u64>) -> Result<Vec<FileVersion>> {
        let mut conn = self.read.acquire().await?;
        last_seq(&mut conn, workspace, "").await?;
        let at = at.map_or(i64::MAX, |seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let rows: Vec<FileRow> = sqlx::query_as(concat(&[
            SELECT_FILES,
            " WHERE f.workspace_id = $1 AND f.is_deleted = 0",
            AT_SEQ,
            " ORDER BY f.path",
        ]))
        .bind(workspace.to_string())
        .bind(at)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(FileVersion::try_from).collect()
    }

    async fn versions(&self, workspace: WorkspaceId, path: Option<&str>) -> Result<Vec<FileVersion>> {
        let mut conn = self.read.acquire().await?;
        last_seq(&mut conn, workspace, "").await?;
        let rows: Vec<FileRow> = match path {
            Some(path) => {
                sqlx::query_as(concat(&[
                    SELECT_FILES,
                    " WHERE f.workspace_id = $1 AND f.path = $2 ORDER BY f.seq DESC",
                ]))
                .bind(workspace.to_string())
                .bind(path)
                .fetch_all(&mut *conn)
                .await?
            }
            None => {
                sqlx::query_as(concat(&[
                    SELECT_FILES,
                    " WHERE f.workspace_id = $1 ORDER BY f.seq DESC",
                ]))
                .bind(workspace.to_string())
                .fetch_all(&mut *conn)
                .await?
            }
        };
        rows.into_iter().map(FileVersion::try_from).collect()
    }

    async fn record_changes(
        &self,
        workspace: WorkspaceId,
        run_id: Option<Uuid>,
        changes: &[Change],
    ) -> Result<Vec<FileVersion>> {
        check_changes(changes)?;
        let mut tx = self.begin_write().await?;
        let mut seq = unsigned(
            last_seq(&mut tx, workspace, self.lock(Lock::Update)).await?,
            "last_seq",
        )?;
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut latest: HashMap<String, FileVersion> = latest_rows(&mut tx, workspace)
            .await?
            .into_iter()
            .map(|row| (row.path.clone(), row))
            .collect();
        let created_at = from_ms(now_ms())?;
        let mut written = Vec::new();
        for change in changes {
            let previous = latest.get(change.path());
            let live = previous.filter(|row| !row.deleted);
            let version = previous.map_or(1, |row| row.version + 1);
            let row = match change {
                Change::Delete { path } => {
                    let Some(live) = live else { continue };
                    FileVersion {
                        file_id: Uuid::now_v7(),
                        path: path.clone(),
                        version,
                        seq: seq + 1,
                        size: 0,
                        mime_type: live.mime_type.clone(),
                        sha256: None,
                        source: live.source,
                        presented: false,
                        deleted: true,
                        run_id,
                        original_name: None,
                        original_relative_path: None,
                        created_at,
                    }
                }
                Change::Put {
                    path,
                    size,
                    sha256,
                    mime_type,
                    source,
                    original_name,
                    original_relative_path,
                } => {
                    if live.is_some_and(|row| row.sha256.as_deref() == Some(sha256.as_str())) {
                        continue;
                    }
                    FileVersion {
                        file_id: Uuid::now_v7(),
                        path: path.clone(),
                        version,
                        seq: seq + 1,
                        size: *size,
                        mime_type: mime_type.clone(),
                        sha256: Some(sha256.clone()),
                        source: *source,
                        presented: live.is_some_and(|row| row.presented),
                        deleted: false,
                        run_id,
                        original_name: original_name.clone(),
                        original_relative_path: original_relative_path.clone(),
                        created_at,
                    }
                }
            };
            insert_row(&mut tx, workspace, &row).await?;
            seq = row.seq;
            latest.insert(row.path.clone(), row.clone());
            written.push(row);
        }
        if !written.is_empty() {
            sqlx::query("UPDATE workspaces SET last_seq = $1, updated_at = $2 WHERE workspace_id = $3")
                .bind(signed(seq, "seq")?)
                .bind(created_at.timestamp_millis())
                .bind(workspace.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    async fn snapshot(&self, workspace: WorkspaceId, run_id: Uuid) -> Result<Snapshot> {
        let mut tx = self.begin_write().await?;
        // The lock keeps changes out until the snapshot is recorded, and makes a concurrent
        // snapshot of the same run wait and find this one.
        let seq = last_seq(&mut tx, workspace, self.lock(Lock::Update)).await?;
        let key = workspace.to_string();
        let existing: Option<SnapshotRow> = sqlx::query_as(concat(&[
            SELECT_SNAPSHOTS,
            " WHERE workspace_id = $1 AND run_id = $2",
        ]))
        .bind(&key)
        .bind(run_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return row.try_into();
        }
        let usage = usage_of(&mut tx, WORKSPACE_USAGE, &key).await?;
        let snapshot = Snapshot {
            run_id,
            seq: unsigned(seq, "last_seq")?,
            files: usage.files,
            bytes: usage.bytes,
            created_at: from_ms(now_ms())?,
        };
        sqlx::query(
            "INSERT INTO workspace_snapshots (workspace_id, run_id, seq, files, bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key)
        .bind(run_id.to_string())
        .bind(seq)
        .bind(signed(snapshot.files, "files")?)
        .bind(signed(snapshot.bytes, "bytes")?)
        .bind(snapshot.created_at.timestamp_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(snapshot)
    }

    async fn snapshots(&self, workspace: WorkspaceId) -> Result<Vec<Snapshot>> {
        let mut conn = self.read.acquire().await?;
        last_seq(&mut conn, workspace, "").await?;
        let rows: Vec<SnapshotRow> = sqlx::query_as(concat(&[
            SELECT_SNAPSHOTS,
            " WHERE workspace_id = $1 ORDER BY seq DESC, created_at DESC, run_id DESC",
        ]))
        .bind(workspace.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(Snapshot::try_from).collect()
    }

    async fn snapshot_of(&self, workspace: WorkspaceId, run_id: Uuid) -> Result<Snapshot> {
        let row: Option<SnapshotRow> = sqlx::query_as(concat(&[
            SELECT_SNAPSHOTS,
            " WHERE workspace_id = $1 AND run_id = $2",
        ]))
        .bind(workspace.to_string())
        .bind(run_id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.ok_or_else(|| StoreError::not_found("snapshot", run_id))?
            .try_into()
    }

    async fn set_presented(&self, workspace: WorkspaceId, paths: &[String], presented: bool) -> Result<()> {
        let mut tx = self.begin_write().await?;
        last_seq(&mut tx, workspace, self.lock(Lock::Update)).await?;
        for path in paths {
            let done = sqlx::query(
                "UPDATE workspace_files SET is_presented = $1 \
                 WHERE workspace_id = $2 AND path = $3 AND is_deleted = 0 \
                 AND seq = (SELECT MAX(g.seq) FROM workspace_files g \
                 WHERE g.workspace_id = workspace_files.workspace_id AND g.path = workspace_files.path)",
            )
            .bind(i64::from(presented))
            .bind(workspace.to_string())
            .bind(path)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                // Dropping the transaction rolls back the paths already updated.
                return Err(StoreError::not_found("file", path));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn blobs_in_use(&self, tenant: &TenantId, shas: &[String]) -> Result<HashSet<String>> {
        let mut conn = self.read.acquire().await?;
        referenced(&mut conn, tenant, shas).await
    }

    async fn delete_workspace(&self, tenant: &TenantId, workspace: WorkspaceId) -> Result<Vec<String>> {
        let key = workspace.to_string();
        let mut tx = self.begin_write().await?;
        let found: Option<(String,)> = sqlx::query_as(concat(&[
            "SELECT workspace_id FROM workspaces WHERE workspace_id = $1 AND tenant_id = $2",
            self.lock(Lock::Update),
        ]))
        .bind(&key)
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Err(StoreError::not_found("workspace", workspace));
        }
        let named: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT sha256 FROM workspace_files WHERE workspace_id = $1 AND sha256 IS NOT NULL",
        )
        .bind(&key)
        .fetch_all(&mut *tx)
        .await?;
        // Explicit rather than relying on ON DELETE actions, which SQLite applies only with
        // foreign keys on.
        for sql in [
            "UPDATE conversations SET workspace_id = NULL WHERE workspace_id = $1",
            "DELETE FROM workspace_snapshots WHERE workspace_id = $1",
            "DELETE FROM workspace_files WHERE workspace_id = $1",
            "DELETE FROM workspaces WHERE workspace_id = $1",
        ] {
            sqlx::query(sql).bind(&key).execute(&mut *tx).await?;
        }
        let named: Vec<String> = named.into_iter().map(|(sha,)| sha).collect();
        let still = referenced(&mut tx, tenant, &named).await?;
        tx.commit().await?;
        let mut orphans: Vec<String> = named.into_iter().filter(|sha| !still.contains(sha)).collect();
        orphans.sort();
        Ok(orphans)
    }

    async fn workspace_usage(&self, workspace: WorkspaceId) -> Result<WorkspaceUsage> {
        let mut conn = self.read.acquire().await?;
        last_seq(&mut conn, workspace, "").await?;
        usage_of(&mut conn, WORKSPACE_USAGE, &workspace.to_string()).await
    }

    async fn tenant_workspace_usage(&self, tenant: &TenantId) -> Result<WorkspaceUsage> {
        let mut conn = self.read.acquire().await?;
        usage_of(&mut conn, TENANT_USAGE, tenant.as_str()).await
    }
}
