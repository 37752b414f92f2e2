-- Hangar schema, PostgreSQL dialect. Portable subset (see crates/hangar-store/src/lib.rs):
-- ids and JSON are TEXT, timestamps are BIGINT epoch milliseconds, booleans are BIGINT 0/1,
-- prices are BIGINT micro-USD per 1K tokens, costs are BIGINT nano-USD.
-- The SQLite tree has a file of the same name with the same tables and columns.

CREATE TABLE models (
    model_id                  TEXT PRIMARY KEY,
    display_name              TEXT NOT NULL,
    bedrock_model_id          TEXT NOT NULL,
    model_region              TEXT,
    input_token_price         BIGINT NOT NULL DEFAULT 0,
    output_token_price        BIGINT NOT NULL DEFAULT 0,
    cache_creation_5m_price   BIGINT NOT NULL DEFAULT 0,
    cache_creation_1h_price   BIGINT NOT NULL DEFAULT 0,
    cache_read_price          BIGINT NOT NULL DEFAULT 0,
    context_window            BIGINT NOT NULL DEFAULT 200000,
    max_output_tokens         BIGINT NOT NULL DEFAULT 64000,
    supports_extended_context BIGINT NOT NULL DEFAULT 0 CHECK (supports_extended_context IN (0, 1)),
    extended_context_window   BIGINT,
    status                    TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deprecated')),
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);
CREATE INDEX ix_models_status ON models (status);

CREATE TABLE tenants (
    tenant_id     TEXT PRIMARY KEY,
    system_prompt TEXT,
    model_id      TEXT REFERENCES models (model_id),
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX ix_tenants_status ON tenants (status);
CREATE INDEX ix_tenants_model ON tenants (model_id);

CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    name         TEXT,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX ix_api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE workspaces (
    workspace_id TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (tenant_id),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX ix_workspaces_tenant ON workspaces (tenant_id);

CREATE TABLE conversations (
    conversation_id          TEXT PRIMARY KEY,
    tenant_id                TEXT NOT NULL REFERENCES tenants (tenant_id),
    user_id                  TEXT NOT NULL,
    model_id                 TEXT NOT NULL REFERENCES models (model_id),
    workspace_id             TEXT REFERENCES workspaces (workspace_id),
    session_id               TEXT,
    title                    TEXT,
    status                   TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    workspace_enabled        BIGINT NOT NULL DEFAULT 1 CHECK (workspace_enabled IN (0, 1)),
    total_input_tokens       BIGINT NOT NULL DEFAULT 0,
    total_output_tokens      BIGINT NOT NULL DEFAULT 0,
    estimated_context_tokens BIGINT NOT NULL DEFAULT 0,
    context_limit_reached    BIGINT NOT NULL DEFAULT 0 CHECK (context_limit_reached IN (0, 1)),
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL
);
CREATE INDEX ix_conversations_tenant_user ON conversations (tenant_id, user_id);
CREATE INDEX ix_conversations_tenant_updated ON conversations (tenant_id, updated_at);
CREATE INDEX ix_conversations_model ON conversations (model_id);

CREATE TABLE messages_log (
    message_id      TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    message_seq     BIGINT NOT NULL,
    message_type    TEXT NOT NULL,
    message_subtype TEXT,
    content         TEXT,
    created_at      BIGINT NOT NULL,
    UNIQUE (conversation_id, message_seq)
);

CREATE TABLE simple_chats (
    chat_id          TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (tenant_id),
    user_id          TEXT NOT NULL,
    model_id         TEXT NOT NULL REFERENCES models (model_id),
    application_type TEXT NOT NULL,
    system_prompt    TEXT NOT NULL,
    title            TEXT,
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX ix_simple_chats_tenant_user ON simple_chats (tenant_id, user_id);
CREATE INDEX ix_simple_chats_tenant_app ON simple_chats (tenant_id, application_type);
CREATE INDEX ix_simple_chats_model ON simple_chats (model_id);

CREATE TABLE simple_chat_messages (
    message_id  TEXT PRIMARY KEY,
    chat_id     TEXT NOT NULL REFERENCES simple_chats (chat_id) ON DELETE CASCADE,
    message_seq BIGINT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (chat_id, message_seq)
);

-- Usage rows outlive what they describe: deleting a conversation or chat keeps the bill.
CREATE TABLE usage_logs (
    usage_log_id             TEXT PRIMARY KEY,
    tenant_id                TEXT NOT NULL REFERENCES tenants (tenant_id),
    user_id                  TEXT,
    model_id                 TEXT NOT NULL REFERENCES models (model_id),
    conversation_id          TEXT REFERENCES conversations (conversation_id) ON DELETE SET NULL,
    simple_chat_id           TEXT REFERENCES simple_chats (chat_id) ON DELETE SET NULL,
    run_id                   TEXT,
    session_id               TEXT,
    input_tokens             BIGINT NOT NULL DEFAULT 0,
    output_tokens            BIGINT NOT NULL DEFAULT 0,
    cache_creation_5m_tokens BIGINT NOT NULL DEFAULT 0,
    cache_creation_1h_tokens BIGINT NOT NULL DEFAULT 0,
    cache_read_tokens        BIGINT NOT NULL DEFAULT 0,
    total_tokens             BIGINT NOT NULL DEFAULT 0,
    cost_nano_usd            BIGINT NOT NULL DEFAULT 0,
    executed_at              BIGINT NOT NULL
);
CREATE INDEX ix_usage_logs_tenant_time ON usage_logs (tenant_id, executed_at);
CREATE INDEX ix_usage_logs_tenant_user ON usage_logs (tenant_id, user_id);
CREATE INDEX ix_usage_logs_model ON usage_logs (model_id);
CREATE INDEX ix_usage_logs_conversation ON usage_logs (conversation_id);
CREATE INDEX ix_usage_logs_chat ON usage_logs (simple_chat_id);

CREATE TABLE agent_skills (
    skill_id                  TEXT PRIMARY KEY,
    tenant_id                 TEXT NOT NULL REFERENCES tenants (tenant_id),
    name                      TEXT NOT NULL,
    display_title             TEXT,
    description               TEXT,
    version                   BIGINT NOT NULL DEFAULT 1,
    slash_command             TEXT,
    slash_command_description TEXT,
    is_user_selectable        BIGINT NOT NULL DEFAULT 1 CHECK (is_user_selectable IN (0, 1)),
    status                    TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE mcp_servers (
    mcp_server_id    TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (tenant_id),
    name             TEXT NOT NULL,
    display_name     TEXT,
    env              TEXT,
    headers_template TEXT,
    allowed_tools    TEXT,
    description      TEXT,
    openapi_spec     TEXT,
    openapi_base_url TEXT,
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive')),
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX ix_mcp_servers_tenant ON mcp_servers (tenant_id);

-- One row per (path, version): the manifest of a workspace; blobs are content-addressed.
CREATE TABLE workspace_files (
    file_id                TEXT PRIMARY KEY,
    workspace_id           TEXT NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    path                   TEXT NOT NULL,
    version                BIGINT NOT NULL,
    size_bytes             BIGINT NOT NULL,
    mime_type              TEXT,
    sha256                 TEXT,
    source                 TEXT NOT NULL CHECK (source IN ('user_upload', 'ai_created', 'ai_modified')),
    is_presented           BIGINT NOT NULL DEFAULT 0 CHECK (is_presented IN (0, 1)),
    is_deleted             BIGINT NOT NULL DEFAULT 0 CHECK (is_deleted IN (0, 1)),
    run_id                 TEXT,
    original_name          TEXT,
    original_relative_path TEXT,
    created_at             BIGINT NOT NULL,
    UNIQUE (workspace_id, path, version)
);

CREATE TABLE audit_log (
    audit_id      TEXT PRIMARY KEY,
    occurred_at   BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    tenant_id     TEXT,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    outcome       TEXT NOT NULL,
    request_id    TEXT,
    details       TEXT
);
CREATE INDEX ix_audit_log_time ON audit_log (occurred_at);
CREATE INDEX ix_audit_log_tenant_time ON audit_log (tenant_id, occurred_at);
