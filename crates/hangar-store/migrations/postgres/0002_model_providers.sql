-- Model providers (issue: model layer): which API serves a model, its endpoint and key
-- variable, and the chain of models to fall back to. The SQLite tree has the same file.
ALTER TABLE models ADD COLUMN provider TEXT NOT NULL DEFAULT 'bedrock'
    CHECK (provider IN ('anthropic', 'bedrock', 'openai'));
ALTER TABLE models ADD COLUMN base_url TEXT;
ALTER TABLE models ADD COLUMN api_key_env TEXT;
-- JSON array of model ids.
ALTER TABLE models ADD COLUMN fallback_model_ids TEXT NOT NULL DEFAULT '[]';
