-- Workspace manifests, versioned per workspace. The PostgreSQL tree has the same file (BIGINT
-- for INTEGER).
--
-- `seq` numbers every row a workspace gains (1, 2, 3, … with no gaps), so "the workspace at
-- change N" is, per path, the row with the greatest seq <= N; `workspaces.last_seq` is the
-- counter, bumped in the transaction that writes the rows. Existing rows are numbered in the
-- order they were written.
ALTER TABLE workspace_files ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
UPDATE workspace_files SET seq = (
    SELECT COUNT(*) FROM workspace_files g
    WHERE g.workspace_id = workspace_files.workspace_id
      AND (g.created_at < workspace_files.created_at
           OR (g.created_at = workspace_files.created_at AND g.version < workspace_files.version)
           OR (g.created_at = workspace_files.created_at AND g.version = workspace_files.version
               AND g.file_id <= workspace_files.file_id))
);
UPDATE workspaces SET last_seq = (
    SELECT COALESCE(MAX(f.seq), 0) FROM workspace_files f WHERE f.workspace_id = workspaces.workspace_id
);
CREATE UNIQUE INDEX ux_workspace_files_seq ON workspace_files (workspace_id, seq);
CREATE INDEX ix_workspace_files_path_seq ON workspace_files (workspace_id, path, seq);
-- Reference counting for blob garbage collection: which rows still name a digest.
CREATE INDEX ix_workspace_files_sha256 ON workspace_files (sha256);

-- What a run left: the workspace's change number when the run ended, with the file count and
-- bytes of that state, so a run's files can be listed, diffed and restored later.
CREATE TABLE workspace_snapshots (
    workspace_id TEXT NOT NULL REFERENCES workspaces (workspace_id) ON DELETE CASCADE,
    run_id       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    files        INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, run_id)
);
CREATE INDEX ix_workspace_snapshots_seq ON workspace_snapshots (workspace_id, seq);
