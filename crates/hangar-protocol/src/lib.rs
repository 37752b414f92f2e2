//! Hangar's wire types: what crosses the HTTP API, the CLI and the store boundary.
//!
//! Nothing here does I/O. Every type that a client sends or receives lives here once, with its
//! serde shape and its OpenAPI schema, so the server, the admin CLI and the store agree on it.

mod api_key;
mod audit;
mod conversation;
mod error;
mod event;
mod ids;
mod model;
mod ops;
mod patch;
mod price;
mod run;
mod simple_chat;
mod socket;
mod stream;
mod tenant;
mod text_enum;
mod usd;
mod workspace;

pub use api_key::{ApiKey, ApiKeyCreate, ApiKeyCreated};
pub use audit::AuditRecord;
pub use conversation::{
    Conversation, ConversationCreate, ConversationList, ConversationStatus, ConversationUpdate,
    MAX_TITLE_CHARS, MAX_USER_ID_CHARS, MessageLog,
};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, ErrorInfo};
pub use event::{Done, DoneStatus, ProgressKind, RunEvent, TextBlock, ToolStatus, WarningLevel};
pub use ids::{ApiKeyId, IdError, ModelId, TenantId};
pub use model::{
    MAX_FALLBACKS, Model, ModelCreate, ModelStatus, ModelUpdate, ModelUsage, ProviderKind, check_provider,
};
pub use ops::{ComponentHealth, HealthReport, HealthStatus, ReadyStatus, RootInfo};
pub use patch::double_option;
pub use price::{Price, PriceError};
pub use run::{Run, RunList, RunStatus, RunUsage};
pub use simple_chat::{
    ChatDone, ChatError, ChatRole, ChatStatus, ChatTextDelta, ChatUsage, SimpleChat, SimpleChatDetail,
    SimpleChatList, SimpleChatMessage, SimpleChatStreamRequest,
};
pub use socket::{ClientMessage, ServerNotice};
pub use stream::{Executor, FileUploadMetadata, MAX_USER_INPUT_CHARS, StreamRequest};
pub use tenant::{MAX_POLICY_ENTRIES, Tenant, TenantCreate, TenantPolicy, TenantStatus, TenantUpdate};
pub use usd::Usd;
pub use workspace::{
    ConversationFileInfo, ConversationFiles, PresentRequest, PresentedFiles, RestoreRequest, RestoreResult,
    WorkspaceDiff, WorkspaceSnapshot,
};

/// A field-level problem found while validating a request body, before it reaches the store.
pub type Violations = Vec<ErrorDetail>;
