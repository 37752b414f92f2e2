//! A conversation's workspace files (contract §1.6, QUIRKs fixed): list (latest or every
//! version), download any version, presented files, upload, delete, present; and its history:
//! per-run snapshots, the diff between two runs, restore to a run. Every route checks the
//! conversation belongs to the caller's tenant; changes take the conversation's lease, so they
//! answer 409 while a run is writing the same files.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hangar_protocol::{
    ConversationFileInfo, ConversationFiles, ErrorBody, PresentRequest, PresentedFiles, RestoreRequest,
    RestoreResult, TenantId, WorkspaceDiff, WorkspaceSnapshot,
};
use hangar_sandbox::hostfs::RelPath;
use hangar_store::{BlobError, Change, FileSource, FileVersion, WorkspaceId};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::TenantAccess;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, multipart, multipart_error};
use crate::state::AppState;
use crate::workspace::{SyncError, mime_type};

/// Where uploaded files go unless the form names a directory.
const UPLOAD_DIR: &str = "uploads";
const MIB: u64 = 1024 * 1024;

pub fn routes() -> OpenApiRouter<AppState> {
    let upload = OpenApiRouter::new()
        .routes(routes!(upload_files))
        .layer(axum::extract::DefaultBodyLimit::disable());
    OpenApiRouter::new()
        .merge(upload)
        .routes(routes!(list_files, delete_file))
        .routes(routes!(download_file))
        .routes(routes!(presented_files))
        .routes(routes!(present_files))
        .routes(routes!(snapshots))
        .routes(routes!(diff))
        .routes(routes!(restore))
}

/// The conversation's workspace, after checking the conversation is the tenant's and keeps one.
async fn workspace(state: &AppState, tenant: &TenantId, conversation: Uuid) -> ApiResult<WorkspaceId> {
    let found = state.store.get_conversation(tenant, conversation).await?;
    if !found.workspace_enabled {
        return Err(ApiError::bad_request(format!(
            "conversation {conversation} has no workspace (workspace_enabled is false)"
        )));
    }
    Ok(state.store.workspace_for(tenant, conversation).await?)
}

impl From<SyncError> for ApiError {
    fn from(err: SyncError) -> Self {
        match err {
            SyncError::Store(err) => err.into(),
            SyncError::Quota(message) => ApiError::too_large(message),
            SyncError::Blob(BlobError::Corrupt { .. }) => {
                tracing::error!(error = %err, "stored file content failed its integrity check");
                ApiError::unavailable("the stored content of this file failed its integrity check")
            }
            other => {
                tracing::error!(error = %other, "workspace storage failed");
                ApiError::unavailable("workspace storage is unavailable; retry later")
            }
        }
    }
}

fn info(file: FileVersion) -> ConversationFileInfo {
    let name = file.path.rsplit('/').next().unwrap_or(&file.path).to_owned();
    ConversationFileInfo {
        file_id: file.file_id,
        original_name: file.original_name.unwrap_or(name),
        original_relative_path: file.original_relative_path,
        file_size: file.size,
        mime_type: file.mime_type,
        version: file.version,
        source: file.source.as_str().to_owned(),
        is_presented: file.presented,
        checksum: file.sha256.map(|sha| format!("sha256:{sha}")),
        description: None,
        run_id: file.run_id,
        created_at: file.created_at,
        updated_at: file.created_at,
        file_path: file.path,
    }
}

/// A workspace path from the caller: `/workspace/` may lead; then it must be a clean relative
/// path (no `..`, no absolute path, no NUL, backslash or control characters).
fn workspace_path(raw: &str) -> ApiResult<RelPath> {
    let trimmed = raw.strip_prefix("/workspace/").unwrap_or(raw);
    RelPath::parse(trimmed).map_err(|err| {
        ApiError::bad_request(format!("invalid path {raw:?}: {err}")).with_details(vec![
            hangar_protocol::ErrorDetail::field("query.path", "invalid", err.to_string()),
        ])
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Every version of every file instead of the latest ones.
    #[serde(default)]
    all_versions: bool,
}

/// The workspace's files: the latest version of each, or with `all_versions=true` every
/// version (newest first).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/files", tag = "files",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"), ListQuery),
    responses((status = 200, body = ConversationFiles), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn list_files(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<ConversationFiles>> {
    let (_, conversation_id) = path;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    let rows = if query.all_versions {
        state.store.versions(workspace, None).await?
    } else {
        state.store.files(workspace, None).await?
    };
    let files: Vec<ConversationFileInfo> = rows.into_iter().filter(|f| !f.deleted).map(info).collect();
    Ok(Json(ConversationFiles {
        conversation_id,
        total_count: files.len() as u64,
        total_size: files.iter().map(|f| f.file_size).sum(),
        files,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// Relative to `/workspace` (a leading `/workspace/` is accepted).
    path: String,
    /// A version of the file (default: the latest).
    version: Option<u64>,
}

/// One file's bytes, as an attachment.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/files/download",
    tag = "files",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"), FileQuery),
    responses((status = 200, content_type = "application/octet-stream", description = "The file's content"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn download_file(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiQuery(query): ApiQuery<FileQuery>,
) -> ApiResult<Response> {
    let (_, conversation_id) = path;
    let file_path = workspace_path(&query.path)?;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    let found = match query.version {
        Some(version) => state
            .store
            .versions(workspace, Some(file_path.as_str()))
            .await?
            .into_iter()
            .find(|f| f.version == version && !f.deleted),
        None => state
            .store
            .files(workspace, None)
            .await?
            .into_iter()
            .find(|f| f.path == file_path.as_str()),
    };
    let not_found = || ApiError::not_found(format!("file {:?} not found", file_path.as_str()));
    let file = found.ok_or_else(not_found)?;
    let sha = file.sha256.as_deref().ok_or_else(not_found)?;
    let bytes = state
        .workspaces
        .blobs()
        .get(&access.tenant_id, sha)
        .await
        .map_err(SyncError::from)?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    let mime = file.mime_type.as_deref().unwrap_or("application/octet-stream");
    if let Ok(value) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_disposition(file_path.file_name())) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `attachment; filename*=UTF-8''…` with the name percent-encoded (RFC 5987).
fn content_disposition(name: &str) -> String {
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename*=UTF-8''{encoded}")
}

/// Files the agent (`present_files`) or a user (`POST …/files/present`) marked for the user.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/files/presented",
    tag = "files",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = PresentedFiles), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn presented_files(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<Json<PresentedFiles>> {
    let (_, conversation_id) = path;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    let files = state.store.files(workspace, None).await?;
    Ok(Json(PresentedFiles {
        conversation_id,
        files: files.into_iter().filter(|f| f.presented).map(info).collect(),
    }))
}

/// Marks files as presented to the user (or not).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/files/present",
    tag = "files", request_body = PresentRequest,
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = PresentedFiles), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn present_files(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiJson(body): ApiJson<PresentRequest>,
) -> ApiResult<Json<PresentedFiles>> {
    let (_, conversation_id) = path;
    let paths = body
        .paths
        .iter()
        .map(|p| workspace_path(p).map(|p| p.to_string()))
        .collect::<ApiResult<Vec<_>>>()?;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    state
        .store
        .set_presented(workspace, &paths, body.presented)
        .await?;
    let files = state.store.files(workspace, None).await?;
    Ok(Json(PresentedFiles {
        conversation_id,
        files: files.into_iter().filter(|f| f.presented).map(info).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Relative to `/workspace`.
    path: String,
}

/// Deletes a file (a new, deleted version: earlier versions stay downloadable and restorable).
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/files",
    tag = "files",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"), DeleteQuery),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn delete_file(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiQuery(query): ApiQuery<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let (_, conversation_id) = path;
    let file_path = workspace_path(&query.path)?;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    let _lease = state.runs.lease(conversation_id, Uuid::now_v7()).await?;
    let exists = state
        .store
        .files(workspace, None)
        .await?
        .iter()
        .any(|f| f.path == file_path.as_str());
    if !exists {
        return Err(ApiError::not_found(format!(
            "file {:?} not found",
            file_path.as_str()
        )));
    }
    let change = Change::Delete {
        path: file_path.to_string(),
    };
    state.store.record_changes(workspace, None, &[change]).await?;
    state
        .workspaces
        .refresh_local(&access.tenant_id, conversation_id, workspace)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Largest upload by category (contract §6.5), checked on the bytes received, not on what the
/// client declares.
fn upload_limit(name: &str) -> u64 {
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" | "png" | "gif" | "webp" => 5 * MIB,
        "pdf" => 20 * MIB,
        "xlsx" | "xls" | "docx" | "doc" | "pptx" | "ppt" => 30 * MIB,
        _ => 5 * MIB,
    }
}

/// Uploads files (multipart: one or more `file` parts, and an optional `directory` text part
/// sent before them, default `uploads`). Each file is streamed to the blob store and becomes a
/// `user_upload` version. Images and text are limited to 5 MiB, PDFs to 20 MiB, office
/// documents to 30 MiB (413 beyond).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/files",
    tag = "files",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    request_body(content_type = "multipart/form-data", description = "`file` parts and an optional `directory`"),
    responses((status = 201, body = ConversationFiles), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn upload_files(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    request: Request,
) -> ApiResult<(StatusCode, Json<ConversationFiles>)> {
    let (_, conversation_id) = path;
    let tenant = access.tenant_id;
    let workspace = workspace(&state, &tenant, conversation_id).await?;
    let _lease = state.runs.lease(conversation_id, Uuid::now_v7()).await?;
    let limit = state.settings.max_upload_bytes;
    let mut form = multipart(&state, request, limit).await?;
    let form_error = |err: MultipartError| multipart_error(&err, limit);
    let mut directory = UPLOAD_DIR.to_owned();
    let mut changes = Vec::new();
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        match field.name().unwrap_or_default() {
            "directory" => {
                let text = field.text().await.map_err(form_error)?;
                directory = workspace_path(text.trim_end_matches('/'))?.to_string();
            }
            "file" => {
                let name = field
                    .file_name()
                    .ok_or_else(|| ApiError::bad_request("each file part needs a filename"))?
                    .to_owned();
                let target = workspace_path(&format!("{directory}/{name}"))?;
                let max = upload_limit(&name);
                let over = Arc::new(AtomicBool::new(false));
                let flag = over.clone();
                let mut seen = 0u64;
                let stream = field.map(move |chunk| {
                    let chunk = chunk.map_err(std::io::Error::other)?;
                    seen += chunk.len() as u64;
                    if seen > max {
                        flag.store(true, Ordering::SeqCst);
                        return Err(std::io::Error::other("file too large"));
                    }
                    Ok(chunk)
                });
                let stored = state.workspaces.blobs().put_stream(&tenant, stream).await;
                if over.load(Ordering::SeqCst) {
                    return Err(ApiError::too_large(format!(
                        "{name:?} is larger than its limit of {max} bytes"
                    )));
                }
                let blob = stored.map_err(|err| match err {
                    BlobError::Io { .. } => {
                        ApiError::bad_request(format!("the upload of {name:?} failed: {err}"))
                    }
                    other => SyncError::from(other).into(),
                })?;
                changes.push(Change::Put {
                    path: target.to_string(),
                    size: blob.size,
                    sha256: blob.sha256,
                    mime_type: Some(mime_type(target.as_str()).to_owned()),
                    source: FileSource::UserUpload,
                    original_name: Some(name),
                    original_relative_path: None,
                });
            }
            other => return Err(ApiError::bad_request(format!("unexpected form field {other:?}"))),
        }
    }
    if changes.is_empty() {
        return Err(ApiError::bad_request("no file part in the form"));
    }
    let mut sizes: HashMap<String, u64> = state
        .store
        .files(workspace, None)
        .await?
        .into_iter()
        .map(|f| (f.path, f.size))
        .collect();
    for change in &changes {
        if let Change::Put { path, size, .. } = change {
            sizes.insert(path.clone(), *size);
        }
    }
    let (files, bytes) = (sizes.len() as u64, sizes.values().sum());
    if let Err(err) = state
        .workspaces
        .check_quota(&tenant, workspace, files, bytes)
        .await
    {
        forget_uploads(&state, &tenant, &changes).await;
        return Err(err.into());
    }
    let written = state.store.record_changes(workspace, None, &changes).await?;
    state
        .workspaces
        .refresh_local(&tenant, conversation_id, workspace)
        .await?;
    let files: Vec<ConversationFileInfo> = written.into_iter().map(info).collect();
    Ok((
        StatusCode::CREATED,
        Json(ConversationFiles {
            conversation_id,
            total_count: files.len() as u64,
            total_size: files.iter().map(|f| f.file_size).sum(),
            files,
        }),
    ))
}

/// Deletes the blobs of a refused upload that nothing else of the tenant refers to.
async fn forget_uploads(state: &AppState, tenant: &TenantId, changes: &[Change]) {
    let shas: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Put { sha256, .. } => Some(sha256.clone()),
            Change::Delete { .. } => None,
        })
        .collect();
    let Ok(in_use) = state.store.blobs_in_use(tenant, &shas).await else {
        return;
    };
    for sha in shas.iter().filter(|sha| !in_use.contains(*sha)) {
        if let Err(err) = state.workspaces.blobs().delete(tenant, sha).await {
            tracing::warn!(%sha, error = %err, "could not delete a refused upload's blob");
        }
    }
}

/// The workspace as each run left it, newest first.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/workspace/snapshots",
    tag = "files",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = [WorkspaceSnapshot]), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn snapshots(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
) -> ApiResult<Json<Vec<WorkspaceSnapshot>>> {
    let (_, conversation_id) = path;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    let snapshots = state.store.snapshots(workspace).await?;
    Ok(Json(
        snapshots
            .into_iter()
            .map(|s| WorkspaceSnapshot {
                run_id: s.run_id,
                seq: s.seq,
                files: s.files,
                bytes: s.bytes,
                created_at: s.created_at,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    from_run: Uuid,
    to_run: Uuid,
}

/// The paths added, modified and deleted between two runs' snapshots.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/workspace/diff",
    tag = "files",
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id"), DiffQuery),
    responses((status = 200, body = WorkspaceDiff), (status = 404, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn diff(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiQuery(query): ApiQuery<DiffQuery>,
) -> ApiResult<Json<WorkspaceDiff>> {
    let (_, conversation_id) = path;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    Ok(Json(
        state
            .workspaces
            .diff(workspace, query.from_run, query.to_run)
            .await?,
    ))
}

/// Brings the files back to a run's snapshot, as new versions (nothing is lost: the versions
/// in between stay).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/conversations/{conversation_id}/workspace/restore",
    tag = "files", request_body = RestoreRequest,
    params(("tenant_id" = String, Path, description = "Tenant id"),
           ("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, body = RestoreResult), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = []), ("bearer" = [])))]
async fn restore(
    State(state): State<AppState>,
    access: TenantAccess,
    ApiPath(path): ApiPath<(TenantId, Uuid)>,
    ApiJson(body): ApiJson<RestoreRequest>,
) -> ApiResult<Json<RestoreResult>> {
    let (_, conversation_id) = path;
    let workspace = workspace(&state, &access.tenant_id, conversation_id).await?;
    let _lease = state.runs.lease(conversation_id, Uuid::now_v7()).await?;
    Ok(Json(
        state
            .workspaces
            .restore(&access.tenant_id, conversation_id, workspace, body.run_id)
            .await?,
    ))
}
