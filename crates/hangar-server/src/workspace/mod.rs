//! Conversation workspaces on this node: the directory the sandbox sees, kept in step with the
//! versioned manifest (`hangar_store::WorkspaceStore`) and the blob store.

mod history;
mod mime;
pub mod scan;
mod sync;

pub use mime::mime_type;
pub use sync::{Quota, SyncError, Workspaces};

use std::sync::Arc;

use hangar_store::{BlobStore, S3Config, S3Credentials, Store};

use crate::config::Settings;

/// The node's workspaces: directories under `HANGAR_DATA_DIR/workspaces`, blobs in S3 when
/// `S3_BUCKET_NAME` is set, else under `HANGAR_DATA_DIR/blobs`.
pub fn from_settings(settings: &Settings, store: Arc<dyn Store>) -> anyhow::Result<Workspaces> {
    let data = &settings.hangar_data_dir;
    let blobs = match &settings.s3_bucket_name {
        Some(bucket) => BlobStore::s3(&S3Config {
            bucket: bucket.clone(),
            region: settings.aws_region.clone(),
            endpoint: settings.aws_endpoint_url.clone(),
            path_style: settings.s3_force_path_style,
            allow_http: settings
                .aws_endpoint_url
                .as_deref()
                .is_some_and(|url| url.starts_with("http://")),
            credentials: S3Credentials::Chain,
        })?,
        None => BlobStore::local(data.join("blobs"))?,
    };
    let quota = Quota {
        workspace_bytes: settings.workspace_max_bytes,
        workspace_files: settings.workspace_max_files,
        tenant_bytes: (settings.tenant_workspace_max_bytes > 0)
            .then_some(settings.tenant_workspace_max_bytes),
    };
    Ok(Workspaces::new(
        store,
        blobs,
        data.join("workspaces"),
        data.join("workspace-index"),
    )
    .with_quota(quota))
}
