//! Going back in a workspace's history: what changed between two runs, and restoring a run's
//! snapshot as new versions (history is never rewritten).

use hangar_protocol::{RestoreResult, TenantId, WorkspaceDiff};
use hangar_store::{Change, WorkspaceId};
use uuid::Uuid;

use super::sync::{SyncResult, Workspaces, digests};

impl Workspaces {
    /// The paths added, modified and deleted from `from_run`'s snapshot to `to_run`'s.
    pub async fn diff(
        &self,
        workspace: WorkspaceId,
        from_run: Uuid,
        to_run: Uuid,
    ) -> SyncResult<WorkspaceDiff> {
        let from = self.store().snapshot_of(workspace, from_run).await?;
        let to = self.store().snapshot_of(workspace, to_run).await?;
        let before = self.store().files(workspace, Some(from.seq)).await?;
        let after = self.store().files(workspace, Some(to.seq)).await?;
        let (before, after) = (digests(&before), digests(&after));
        let mut diff = WorkspaceDiff {
            from_run,
            to_run,
            added: Vec::new(),
            modified: Vec::new(),
            deleted: Vec::new(),
        };
        for (path, sha) in &after {
            match before.get(path) {
                None => diff.added.push((*path).to_owned()),
                Some(old) if old != sha => diff.modified.push((*path).to_owned()),
                Some(_) => {}
            }
        }
        diff.deleted = before
            .keys()
            .filter(|path| !after.contains_key(*path))
            .map(|path| (*path).to_owned())
            .collect();
        Ok(diff)
    }

    /// Brings the workspace back to `run_id`'s snapshot by recording new versions (and
    /// deletions) for every path that differs, then updates this node's directory when it has
    /// one. The caller holds the conversation's lease (no run is writing meanwhile).
    pub async fn restore(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        workspace: WorkspaceId,
        run_id: Uuid,
    ) -> SyncResult<RestoreResult> {
        let snapshot = self.store().snapshot_of(workspace, run_id).await?;
        let then = self.store().files(workspace, Some(snapshot.seq)).await?;
        let now = self.store().files(workspace, None).await?;
        let current = digests(&now);
        let mut changes = Vec::new();
        let mut result = RestoreResult {
            run_id,
            restored: Vec::new(),
            deleted: Vec::new(),
        };
        for file in &then {
            let Some(sha) = file.sha256.clone() else { continue };
            if current.get(file.path.as_str()) == Some(&sha.as_str()) {
                continue;
            }
            result.restored.push(file.path.clone());
            changes.push(Change::Put {
                path: file.path.clone(),
                size: file.size,
                sha256: sha,
                mime_type: file.mime_type.clone(),
                source: file.source,
                original_name: file.original_name.clone(),
                original_relative_path: file.original_relative_path.clone(),
            });
        }
        let kept = digests(&then);
        for path in current.keys().filter(|path| !kept.contains_key(*path)) {
            result.deleted.push((*path).to_owned());
            changes.push(Change::Delete {
                path: (*path).to_owned(),
            });
        }
        if !changes.is_empty() {
            self.store().record_changes(workspace, None, &changes).await?;
        }
        self.refresh_local(tenant, conversation, workspace).await?;
        Ok(result)
    }

    /// Applies the manifest to this node's directory, if this node has one (otherwise the next
    /// run materialises it wherever it runs).
    pub async fn refresh_local(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        workspace: WorkspaceId,
    ) -> SyncResult<()> {
        if !tokio::fs::try_exists(self.dir(tenant, conversation))
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        let dir = self.open(tenant, conversation).await?;
        self.materialise(tenant, conversation, workspace, &dir)
            .await
            .map(|_| ())
    }
}
