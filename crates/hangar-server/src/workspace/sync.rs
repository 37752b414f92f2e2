//! Keeping a conversation's local workspace directory and its versioned manifest in step.
//!
//! Before a run, [`Workspaces::materialise`] writes the manifest's latest state into the
//! directory — only files that are missing or differ, so a warm node downloads nothing and a
//! fresh node (or one that lost its cache) gets everything — and removes files the manifest
//! has since deleted. After a run, [`Workspaces::sync`] scans the directory (hashing only what
//! changed, see [`scan`]), uploads only blobs the store lacks, records a version only for files
//! whose content really changed and a deletion for files that are gone, then snapshots the
//! state as the run's.
//!
//! The directory is writable by sandboxed code, so every host-side access goes through
//! [`WorkspaceDir`] (no symlinks followed, nothing outside the root): a symlink planted in the
//! workspace is never uploaded, and a download never writes through one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use hangar_protocol::TenantId;
use hangar_sandbox::hostfs::{RelPath, WorkspaceDir};
use hangar_store::{BlobStore, Change, FileSource, FileVersion, Snapshot, Store, WorkspaceId};
use uuid::Uuid;

use super::mime::mime_type;
use super::scan::{self, Index, LocalFile, excluded};

/// Path → content digest of a state (deletion rows have none and are left out).
pub(super) fn digests(files: &[FileVersion]) -> BTreeMap<&str, &str> {
    files
        .iter()
        .filter_map(|f| f.sha256.as_deref().map(|sha| (f.path.as_str(), sha)))
        .collect()
}

/// What a sync or materialisation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncStats {
    /// Files whose content was hashed this time.
    pub hashed: usize,
    /// Blobs sent to the blob store (content it did not have yet).
    pub uploaded: usize,
    /// Files written into the directory.
    pub downloaded: usize,
    /// Versions recorded (deletions included).
    pub versions: usize,
    /// Files removed from the directory.
    pub removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("workspace files: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob store: {0}")]
    Blob(#[from] hangar_store::BlobError),
    #[error("manifest: {0}")]
    Store(#[from] hangar_store::StoreError),
    #[error("workspace sync task failed")]
    Task,
    #[error("{0}")]
    Quota(String),
}

/// How much a workspace, and all of a tenant's, may keep (latest versions; history is free).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub workspace_bytes: u64,
    pub workspace_files: u64,
    /// `None`: no tenant-wide limit.
    pub tenant_bytes: Option<u64>,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            workspace_bytes: u64::MAX,
            workspace_files: u64::MAX,
            tenant_bytes: None,
        }
    }
}

pub type SyncResult<T> = Result<T, SyncError>;

/// The workspaces of this node: local directories under `root`, their scan indexes under
/// `index_root`, content in `blobs`, versions in the store.
pub struct Workspaces {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    root: PathBuf,
    index_root: PathBuf,
    quota: Quota,
}

impl Workspaces {
    pub fn new(store: Arc<dyn Store>, blobs: BlobStore, root: PathBuf, index_root: PathBuf) -> Self {
        Self {
            store,
            blobs,
            root,
            index_root,
            quota: Quota::default(),
        }
    }

    pub fn with_quota(mut self, quota: Quota) -> Self {
        self.quota = quota;
        self
    }

    /// Refuses a change that would leave the workspace with `files` files of `bytes` bytes
    /// when that is over the workspace's or the tenant's quota.
    pub async fn check_quota(
        &self,
        tenant: &TenantId,
        workspace: WorkspaceId,
        files: u64,
        bytes: u64,
    ) -> SyncResult<()> {
        let quota = self.quota;
        if files > quota.workspace_files {
            return Err(SyncError::Quota(format!(
                "the workspace would hold {files} files; its quota is {}",
                quota.workspace_files
            )));
        }
        if bytes > quota.workspace_bytes {
            return Err(SyncError::Quota(format!(
                "the workspace would hold {bytes} bytes; its quota is {}",
                quota.workspace_bytes
            )));
        }
        if let Some(limit) = quota.tenant_bytes {
            let tenant_now = self.store.tenant_workspace_usage(tenant).await?.bytes;
            let here_now = self.store.workspace_usage(workspace).await?.bytes;
            let after = tenant_now.saturating_sub(here_now).saturating_add(bytes);
            if after > limit {
                return Err(SyncError::Quota(format!(
                    "the tenant's workspaces would hold {after} bytes; its quota is {limit}"
                )));
            }
        }
        Ok(())
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub(super) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The conversation's local directory (bound into its sandbox at `/workspace`).
    pub fn dir(&self, tenant: &TenantId, conversation: Uuid) -> PathBuf {
        self.root.join(tenant.as_str()).join(conversation.to_string())
    }

    fn index_path(&self, tenant: &TenantId, conversation: Uuid) -> PathBuf {
        self.index_root
            .join(tenant.as_str())
            .join(format!("{conversation}.json"))
    }

    /// Opens (creating it if needed) the conversation's directory.
    pub async fn open(&self, tenant: &TenantId, conversation: Uuid) -> SyncResult<Arc<WorkspaceDir>> {
        let path = self.dir(tenant, conversation);
        let dir = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&path)?;
            WorkspaceDir::open(&path)
        })
        .await
        .map_err(|_| SyncError::Task)??;
        Ok(Arc::new(dir))
    }

    /// Scans the directory with the conversation's index and saves the updated index.
    async fn scan(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        dir: &Arc<WorkspaceDir>,
    ) -> SyncResult<scan::Scan> {
        let index_path = self.index_path(tenant, conversation);
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut index = Index::load(&index_path);
            let found = scan::scan(&dir, &mut index)?;
            index.save(&index_path)?;
            Ok::<_, std::io::Error>(found)
        })
        .await
        .map_err(|_| SyncError::Task)?
        .map_err(SyncError::from)
    }

    /// Brings the directory to the manifest's latest state.
    pub async fn materialise(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        workspace: WorkspaceId,
        dir: &Arc<WorkspaceDir>,
    ) -> SyncResult<SyncStats> {
        let manifest = self.store.files(workspace, None).await?;
        let scanned = self.scan(tenant, conversation, dir).await?;
        let mut stats = SyncStats {
            hashed: scanned.hashed,
            ..SyncStats::default()
        };
        let local: HashMap<&str, &LocalFile> = scanned.files.iter().map(|f| (f.path.as_str(), f)).collect();
        for file in &manifest {
            let Some(sha) = file.sha256.as_deref() else {
                continue;
            };
            if local.get(file.path.as_str()).is_some_and(|l| l.sha256 == sha) {
                continue;
            }
            let path = RelPath::parse(&file.path)
                .map_err(|err| std::io::Error::other(format!("manifest path {:?}: {err}", file.path)))?;
            let bytes = self.blobs.get(tenant, sha).await?;
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || dir.write(&path, &bytes))
                .await
                .map_err(|_| SyncError::Task)??;
            stats.downloaded += 1;
        }
        // Paths deleted in the manifest since this node last saw them: removed when the local
        // file is content the manifest knew (not something new that was never synced).
        let present: HashSet<&str> = manifest.iter().map(|f| f.path.as_str()).collect();
        let mut known: HashMap<String, HashSet<String>> = HashMap::new();
        for version in self.store.versions(workspace, None).await? {
            if let Some(sha) = version.sha256 {
                known.entry(version.path).or_default().insert(sha);
            }
        }
        for file in &scanned.files {
            let path = file.path.as_str();
            if !present.contains(path) && known.get(path).is_some_and(|shas| shas.contains(&file.sha256)) {
                let (dir, path) = (dir.clone(), file.path.clone());
                tokio::task::spawn_blocking(move || dir.remove_file(&path))
                    .await
                    .map_err(|_| SyncError::Task)??;
                stats.removed += 1;
            }
        }
        Ok(stats)
    }

    /// Records what the run changed in the directory and snapshots the result as the run's.
    pub async fn sync(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        workspace: WorkspaceId,
        dir: &Arc<WorkspaceDir>,
        run_id: Uuid,
    ) -> SyncResult<(SyncStats, Snapshot)> {
        let stats = self.record(tenant, conversation, workspace, dir, run_id).await?;
        let snapshot = self.store.snapshot(workspace, run_id).await?;
        Ok((stats, snapshot))
    }

    /// Records what changed in the directory as versions of `run_id` (no snapshot): the sync
    /// after a run, and the intermediate ones during a long run.
    pub async fn record(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        workspace: WorkspaceId,
        dir: &Arc<WorkspaceDir>,
        run_id: Uuid,
    ) -> SyncResult<SyncStats> {
        let scanned = self.scan(tenant, conversation, dir).await?;
        let manifest = self.store.files(workspace, None).await?;
        let latest = digests(&manifest);
        let mut stats = SyncStats {
            hashed: scanned.hashed,
            ..SyncStats::default()
        };
        let total: u64 = scanned.files.iter().map(|f| f.size).sum();
        self.check_quota(tenant, workspace, scanned.files.len() as u64, total)
            .await?;
        let mut changes = Vec::new();
        for file in &scanned.files {
            let previous = latest.get(file.path.as_str());
            if previous == Some(&file.sha256.as_str()) {
                continue;
            }
            let (blob, uploaded) = {
                let (dir, path) = (dir.clone(), file.path.clone());
                let opened = tokio::task::spawn_blocking(move || dir.open_file(&path))
                    .await
                    .map_err(|_| SyncError::Task)?;
                match opened {
                    Ok(handle) => self.blobs.put_open(tenant, handle, file.path.as_str()).await?,
                    // Gone (or replaced by a symlink) since the scan: the next sync sees it.
                    Err(err) => {
                        tracing::debug!(path = %file.path, error = %err, "file changed during sync; skipped");
                        continue;
                    }
                }
            };
            if uploaded {
                stats.uploaded += 1;
            }
            changes.push(Change::Put {
                path: file.path.to_string(),
                size: blob.size,
                sha256: blob.sha256,
                mime_type: Some(mime_type(file.path.as_str()).to_owned()),
                source: if previous.is_some() {
                    FileSource::AiModified
                } else {
                    FileSource::AiCreated
                },
                original_name: None,
                original_relative_path: None,
            });
        }
        let local: HashSet<&str> = scanned.files.iter().map(|f| f.path.as_str()).collect();
        for file in &manifest {
            let excluded_now = RelPath::parse(&file.path).is_ok_and(|p| excluded(&p, false));
            if !local.contains(file.path.as_str()) && !excluded_now {
                changes.push(Change::Delete {
                    path: file.path.clone(),
                });
            }
        }
        if !changes.is_empty() {
            stats.versions = self
                .store
                .record_changes(workspace, Some(run_id), &changes)
                .await?
                .len();
        }
        Ok(stats)
    }

    /// Forgets a deleted conversation's workspace: its versions, the blobs nothing else of the
    /// tenant refers to, and this node's directory and index. Failures are logged: the
    /// conversation is gone either way, and leftovers hold no one's data but the tenant's.
    pub async fn remove(&self, tenant: &TenantId, conversation: Uuid, workspace: WorkspaceId) {
        match self.store.delete_workspace(tenant, workspace).await {
            Ok(orphans) => {
                // A run elsewhere in the tenant may have named one of them since: checked again
                // just before deleting (the window left is the time between the two calls).
                let in_use = self
                    .store
                    .blobs_in_use(tenant, &orphans)
                    .await
                    .unwrap_or_else(|err| {
                        tracing::warn!(error = %err, "could not re-check blobs; keeping them all");
                        orphans.iter().cloned().collect()
                    });
                for sha in orphans.into_iter().filter(|sha| !in_use.contains(sha)) {
                    if let Err(err) = self.blobs.delete(tenant, &sha).await {
                        tracing::warn!(%tenant, %sha, error = %err, "could not delete an unreferenced blob");
                    }
                }
            }
            Err(err) => {
                tracing::warn!(%conversation, error = %err, "could not delete the workspace's versions")
            }
        }
        let dir = self.dir(tenant, conversation);
        if let Err(err) = tokio::fs::remove_dir_all(&dir).await
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), error = %err, "could not remove the workspace directory");
        }
        let _ = tokio::fs::remove_file(self.index_path(tenant, conversation)).await;
    }

    /// Stores files a user attached to a message (already written to the directory) as
    /// `user_upload` versions, before the run that reads them.
    pub async fn record_uploads(
        &self,
        tenant: &TenantId,
        workspace: WorkspaceId,
        uploads: &[(RelPath, axum::body::Bytes, String)],
    ) -> SyncResult<()> {
        let mut changes = Vec::with_capacity(uploads.len());
        for (path, bytes, original_name) in uploads {
            let blob = self.blobs.put(tenant, bytes.clone()).await?;
            changes.push(Change::Put {
                path: path.to_string(),
                size: blob.size,
                sha256: blob.sha256,
                mime_type: Some(mime_type(path.as_str()).to_owned()),
                source: FileSource::UserUpload,
                original_name: Some(original_name.clone()),
                original_relative_path: path.as_str().strip_prefix("uploads/").map(str::to_owned),
            });
        }
        self.store.record_changes(workspace, None, &changes).await?;
        Ok(())
    }
}
