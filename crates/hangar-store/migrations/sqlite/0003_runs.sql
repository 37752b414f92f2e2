-- Runs, their events and the model-facing history of conversations. The PostgreSQL tree has the
-- same file.

-- One streamed agent exchange. `node_id` names the server process that runs it, so a node that
-- restarts after a crash can find and close the runs it left `running`.
CREATE TABLE runs (
    run_id                   TEXT PRIMARY KEY,
    tenant_id                TEXT NOT NULL REFERENCES tenants (tenant_id),
    conversation_id          TEXT NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    user_id                  TEXT NOT NULL,
    model_id                 TEXT NOT NULL REFERENCES models (model_id),
    node_id                  TEXT NOT NULL,
    status                   TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'success', 'error', 'cancelled', 'interrupted')),
    turn_count               INTEGER NOT NULL DEFAULT 0,
    input_tokens             INTEGER NOT NULL DEFAULT 0,
    output_tokens            INTEGER NOT NULL DEFAULT 0,
    cache_creation_5m_tokens INTEGER NOT NULL DEFAULT 0,
    cache_creation_1h_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens        INTEGER NOT NULL DEFAULT 0,
    total_tokens             INTEGER NOT NULL DEFAULT 0,
    cost_nano_usd            INTEGER NOT NULL DEFAULT 0,
    error                    TEXT,
    started_at               INTEGER NOT NULL,
    finished_at              INTEGER
);
CREATE INDEX ix_runs_conversation_started ON runs (conversation_id, started_at);
-- At most one running run per conversation, whichever node started it.
CREATE UNIQUE INDEX ux_runs_conversation_running ON runs (conversation_id) WHERE status = 'running';
CREATE INDEX ix_runs_node_running ON runs (node_id) WHERE status = 'running';
CREATE INDEX ix_runs_model ON runs (model_id);

-- The events a run streamed, numbered from 1, each stored as the JSON object that was sent, so
-- a client that reconnects can be replayed what it missed.
CREATE TABLE run_events (
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    event      TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- What the model is sent as the conversation so far: provider-neutral messages (JSON), and
-- summaries that replace everything before them once the history grows too long.
CREATE TABLE conversation_history (
    conversation_id TEXT NOT NULL REFERENCES conversations (conversation_id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    run_id          TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('message', 'summary')),
    message         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
