//! A user's message becoming a run, the same for every transport (SSE `…/stream`, WebSocket
//! `chat`): the request checked, the tenant and conversation usable, the model resolved (with
//! the deprecated-model fallback), attached files saved to the workspace, then [`start`].

use std::sync::Arc;

use hangar_protocol::{
    Conversation, ConversationStatus, FileUploadMetadata, Model, ModelStatus, StreamRequest, Tenant,
    TenantId, TenantStatus,
};
use hangar_sandbox::hostfs::RelPath;
use uuid::Uuid;

use super::{LiveRun, RunRequest, start};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::workspace::SyncError;

/// Where files attached to a message land in the workspace.
const UPLOAD_DIR: &str = "uploads";

/// A file attached to the message, with its metadata.
pub struct Upload {
    pub meta: FileUploadMetadata,
    pub bytes: axum::body::Bytes,
}

/// Checks the request and starts the run; errors are the API's (404, 400, 409, 503).
pub async fn submit(
    state: &AppState,
    tenant_id: &TenantId,
    conversation_id: Uuid,
    body: StreamRequest,
    uploads: Vec<Upload>,
) -> ApiResult<Arc<LiveRun>> {
    let problems = body.validate();
    if !problems.is_empty() {
        return Err(ApiError::bad_request("invalid request_data").with_details(problems));
    }
    let tenant = state.store.get_tenant(tenant_id).await?;
    if tenant.status != TenantStatus::Active {
        return Err(ApiError::bad_request(format!(
            "tenant '{}' is inactive",
            tenant.tenant_id
        )));
    }
    let mut conversation = state
        .store
        .get_conversation(&tenant.tenant_id, conversation_id)
        .await?;
    if conversation.status == ConversationStatus::Archived {
        return Err(ApiError::bad_request(format!(
            "conversation {conversation_id} is archived"
        )));
    }
    let model = resolve_model(state, &tenant, &mut conversation).await?;
    let chain = state
        .llm
        .chain(&*state.store, model.clone())
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "model not usable");
            ApiError::unavailable(format!("model '{}' cannot be called: {err}", model.model_id))
        })?;
    if !uploads.is_empty() {
        if conversation.workspace_enabled {
            save_uploads(state, &conversation, uploads).await?;
        } else {
            tracing::info!(%conversation_id, "files ignored: the conversation has no workspace");
        }
    }
    start(
        state,
        RunRequest {
            tenant,
            conversation,
            model,
            chain,
            user_id: body.executor.user_id.clone(),
            preferred_skills: body.preferred_skills.clone(),
            secrets: body.tokens.values().cloned().collect(),
            user_input: body.user_input,
        },
    )
    .await
}

/// Writes attached files under `uploads/` in the conversation's workspace and, when it keeps a
/// versioned one, records them as `user_upload` versions before the run reads them.
async fn save_uploads(state: &AppState, conversation: &Conversation, uploads: Vec<Upload>) -> ApiResult<()> {
    let mut targets = Vec::with_capacity(uploads.len());
    for upload in uploads {
        let path = RelPath::parse(&format!("{UPLOAD_DIR}/{}", upload.meta.relative_path)).map_err(|err| {
            ApiError::bad_request(format!(
                "invalid relative_path {:?}: {err}",
                upload.meta.relative_path
            ))
        })?;
        targets.push((path, upload.bytes, upload.meta.filename));
    }
    let (tenant, id) = (&conversation.tenant_id, conversation.conversation_id);
    let unavailable = |err: SyncError| {
        tracing::error!(conversation_id = %id, error = %err, "could not store attached files");
        ApiError::unavailable("the conversation's workspace is unavailable; retry later")
    };
    let dir = state.workspaces.open(tenant, id).await.map_err(unavailable)?;
    let manifest = state.store.workspace_for(tenant, id).await?;
    state
        .workspaces
        .record_uploads(tenant, manifest, &targets)
        .await
        .map_err(unavailable)?;
    tokio::task::spawn_blocking(move || {
        for (path, bytes, _) in &targets {
            dir.write(path, bytes)?;
        }
        Ok::<_, std::io::Error>(())
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|err| ApiError::bad_request(format!("could not store the attached files: {err}")))
}

/// The conversation's model, or the fallback for a deprecated one (contract §10), which then
/// becomes the conversation's model.
async fn resolve_model(
    state: &AppState,
    tenant: &Tenant,
    conversation: &mut Conversation,
) -> ApiResult<Model> {
    let model = state.store.get_model(&conversation.model_id).await?;
    if model.status == ModelStatus::Active {
        return Ok(model);
    }
    let mut replacement = None;
    if let Some(default) = tenant
        .model_id
        .as_ref()
        .filter(|id| **id != conversation.model_id)
        && let Ok(candidate) = state.store.get_model(default).await
        && candidate.status == ModelStatus::Active
    {
        replacement = Some(candidate);
    }
    if replacement.is_none() {
        let mut active: Vec<_> = state
            .store
            .list_models(Some(ModelStatus::Active))
            .await?
            .into_iter()
            .collect();
        active.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        replacement = active.into_iter().next();
    }
    let replacement = replacement.ok_or_else(|| {
        ApiError::bad_request(format!(
            "model '{}' is deprecated and no active model can replace it",
            conversation.model_id
        ))
    })?;
    state
        .store
        .set_conversation_model(conversation.conversation_id, &replacement.model_id)
        .await?;
    tracing::info!(
        conversation_id = %conversation.conversation_id,
        from = %conversation.model_id,
        to = %replacement.model_id,
        "deprecated model replaced"
    );
    conversation.model_id = replacement.model_id.clone();
    Ok(replacement)
}
