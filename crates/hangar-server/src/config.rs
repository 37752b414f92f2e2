//! Settings: built-in defaults ← optional TOML file ← environment variables (the original's
//! names: `APP_PORT`, `API_KEYS`, `CORS_ORIGINS`, …). Keys in the TOML file are the same names in
//! lower case. `validate` refuses unsafe combinations, most of all under `APP_ENV=production`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppEnv {
    Development,
    Production,
    Test,
}

impl AppEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
            Self::Test => "test",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Every setting, named after its environment variable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub app_env: AppEnv,
    pub app_host: IpAddr,
    pub app_port: u16,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Root of everything Hangar keeps on local disk.
    pub hangar_data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default `sqlite://<HANGAR_DATA_DIR>/hangar.db`.
    pub database_url: Option<String>,
    pub db_pool_size: u32,
    /// Admin keys (comma-separated in the environment), each at least 16 characters.
    #[serde(deserialize_with = "list")]
    pub api_keys: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub cors_origins: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub cors_methods: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub cors_headers: Vec<String>,
    pub rate_limit_enabled: bool,
    pub rate_limit_requests: u32,
    /// Seconds.
    pub rate_limit_period: u64,
    pub hsts_enabled: bool,
    pub hsts_max_age: u64,
    /// Seconds to wait for in-flight requests on SIGTERM/SIGINT.
    pub shutdown_timeout: f64,
    /// Seconds before a (non-streaming) request is answered with 408.
    pub request_timeout: f64,
    /// Largest accepted request body for JSON endpoints.
    pub max_body_bytes: usize,
    /// Largest accepted body of a stream request with attached files (multipart).
    pub max_upload_bytes: usize,
    /// Seconds one agent run may take before it is stopped (`done{status: error}`).
    pub run_time_limit: f64,
    pub metrics_enabled: bool,
    /// Serve `/metrics` without an admin key even in production.
    pub metrics_public: bool,
    /// Serve the interactive API docs at `/docs`.
    pub docs_enabled: bool,
    /// Endpoint of the Anthropic Messages API (the key comes from `ANTHROPIC_API_KEY`, which is
    /// read from the environment only and never stored in settings).
    pub anthropic_base_url: String,
    /// Region of Bedrock calls (credentials come from the standard AWS chain).
    pub aws_region: String,
    /// Overrides the Bedrock runtime endpoint (e.g. a local test server).
    pub aws_endpoint_url_bedrock_runtime: Option<String>,
    /// Workspace files go to this S3 bucket (in `AWS_REGION`, credentials from the standard
    /// chain); without it, to `HANGAR_DATA_DIR/blobs`.
    pub s3_bucket_name: Option<String>,
    /// An S3-compatible endpoint (MinIO, moto, …) instead of AWS.
    pub aws_endpoint_url: Option<String>,
    /// Path-style bucket addressing (`endpoint/bucket/key`), as most S3-compatible servers want.
    pub s3_force_path_style: bool,
    /// Most bytes and files one conversation's workspace may keep (latest versions).
    pub workspace_max_bytes: u64,
    pub workspace_max_files: u64,
    /// Most bytes all of a tenant's workspaces may keep together (0: no limit).
    pub tenant_workspace_max_bytes: u64,
    /// During a run, files are saved this many seconds after a tool changed them (besides
    /// the save at the end of the run).
    pub workspace_sync_interval: f64,
    /// Attempts per model call before falling back (the original's name; all providers).
    pub bedrock_max_retries: u32,
    /// Base of the exponential backoff, in seconds.
    pub bedrock_retry_base_delay: f64,
    /// Cap of the exponential backoff, in seconds.
    pub bedrock_retry_max_delay: f64,
    /// Seconds a model call may take before it fails with a connection error.
    pub model_request_timeout: f64,
    /// A cheap model for chat titles; without it a title is the start of the first message.
    pub title_model_id: Option<String>,
    /// `bwrap` (bubblewrap, the default) or `oci` (runc).
    pub sandbox_backend: SandboxBackendKind,
    /// The `hangar` binary re-invoked inside sandboxes as their supervisor; this binary when
    /// unset (set it when Hangar is embedded in another executable, as the test suite is).
    pub sandbox_supervisor: Option<PathBuf>,
    /// This node's name in the runs table (`HANGAR_NODE_ID`); the host name when unset.
    pub hangar_node_id: Option<String>,
    /// CPU time per 100 ms period in microseconds (200000 = two CPUs), the original's unit.
    pub container_cpu_quota: u64,
    /// Bytes of memory per sandbox, tmpfs included; no swap.
    pub container_memory_limit: u64,
    /// Processes and threads per sandbox.
    pub container_pids_limit: u64,
    /// Bytes a conversation's workspace may hold (also the largest file).
    pub sandbox_disk_limit: u64,
    /// Size of each sandbox's private `/tmp`.
    pub sandbox_tmp_size: u64,
    /// Seconds without use before a sandbox is destroyed.
    pub container_inactive_ttl: u64,
    /// Seconds after which a sandbox is destroyed however busy.
    pub container_absolute_ttl: u64,
    /// Largest wall time of one command, in seconds.
    pub container_execution_timeout: u64,
    /// Seconds between lifecycle sweeps.
    pub container_gc_interval: u64,
    /// Ready sandboxes kept for new conversations.
    pub warm_pool_min_size: usize,
    pub warm_pool_max_size: usize,
    /// Private networks (CIDRs) the egress proxy may reach anyway, e.g. an internal package mirror.
    #[serde(deserialize_with = "list")]
    pub sandbox_egress_allowed_networks: Vec<String>,
    /// Host directories bound read-only into every sandbox (e.g. a prepared Python environment).
    #[serde(deserialize_with = "list")]
    pub sandbox_ro_binds: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxBackendKind {
    Bwrap,
    Oci,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            app_env: AppEnv::Development,
            app_host: IpAddr::from([127, 0, 0, 1]),
            app_port: 8000,
            log_level: "info".into(),
            log_format: LogFormat::Json,
            hangar_data_dir: PathBuf::from("./data"),
            database_url: None,
            db_pool_size: 8,
            api_keys: Vec::new(),
            cors_origins: vec!["http://localhost:3000".into(), "http://localhost:3001".into()],
            cors_methods: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
                .map(String::from)
                .to_vec(),
            cors_headers: [
                "Content-Type",
                "Authorization",
                "X-API-Key",
                "X-Request-ID",
                "X-Tenant-ID",
                "X-User-ID",
                "X-Admin-ID",
                "Last-Event-ID",
            ]
            .map(String::from)
            .to_vec(),
            rate_limit_enabled: true,
            rate_limit_requests: 100,
            rate_limit_period: 60,
            hsts_enabled: false,
            hsts_max_age: 31_536_000,
            shutdown_timeout: 30.0,
            request_timeout: 30.0,
            max_body_bytes: 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            run_time_limit: 1800.0,
            metrics_enabled: true,
            metrics_public: false,
            docs_enabled: true,
            anthropic_base_url: "https://api.anthropic.com".into(),
            aws_region: "us-west-2".into(),
            aws_endpoint_url_bedrock_runtime: None,
            s3_bucket_name: None,
            aws_endpoint_url: None,
            s3_force_path_style: false,
            workspace_max_bytes: 1024 * 1024 * 1024,
            workspace_max_files: 10_000,
            tenant_workspace_max_bytes: 0,
            workspace_sync_interval: 30.0,
            bedrock_max_retries: 3,
            bedrock_retry_base_delay: 1.0,
            bedrock_retry_max_delay: 10.0,
            model_request_timeout: 600.0,
            title_model_id: None,
            sandbox_backend: SandboxBackendKind::Bwrap,
            sandbox_supervisor: None,
            hangar_node_id: None,
            container_cpu_quota: 200_000,
            container_memory_limit: 2 * 1024 * 1024 * 1024,
            container_pids_limit: 256,
            sandbox_disk_limit: 1024 * 1024 * 1024,
            sandbox_tmp_size: 512 * 1024 * 1024,
            container_inactive_ttl: 3600,
            container_absolute_ttl: 8 * 3600,
            container_execution_timeout: 600,
            container_gc_interval: 60,
            warm_pool_min_size: 0,
            warm_pool_max_size: 10,
            sandbox_egress_allowed_networks: Vec::new(),
            sandbox_ro_binds: Vec::new(),
        }
    }
}

/// Accepts `"a,b,c"` (from the environment) or a TOML array.
fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::One(text) => text.split(',').map(str::to_owned).collect(),
        Raw::Many(items) => items,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect())
}

/// The environment variables Hangar reads, as a figment provider that names its source.
struct Environment(Dict);

impl Environment {
    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let known: BTreeMap<String, ()> = figment::value::Value::serialize(Settings::default())
            .ok()
            .and_then(|v| v.into_dict())
            .map(|d| d.into_keys().map(|k| (k, ())).collect())
            .unwrap_or_default();
        let dict = vars
            .into_iter()
            .filter_map(|(k, v)| {
                let key = k.to_ascii_lowercase();
                known.contains_key(&key).then(|| {
                    // Lists stay strings (split by `list`); everything else is parsed like TOML
                    // scalars, so `APP_PORT=8000` is a number and `HSTS_ENABLED=true` a bool.
                    let value = if matches!(
                        key.as_str(),
                        "api_keys"
                            | "cors_origins"
                            | "cors_methods"
                            | "cors_headers"
                            | "sandbox_egress_allowed_networks"
                            | "sandbox_ro_binds"
                    ) || key.ends_with("_url")
                        || key == "log_level"
                    {
                        Value::from(v)
                    } else {
                        v.parse::<Value>().unwrap_or_else(|_| Value::from(v))
                    };
                    (key, value)
                })
            })
            .collect();
        Self(dict)
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

impl Settings {
    /// Loads from the process environment and, if given, a TOML file.
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_sources(config_file, std::env::vars())
    }

    /// Loads from explicit sources (tests pass their own variables instead of the process's).
    pub fn from_sources(
        config_file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                anyhow::bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment.merge(Environment::from_vars(vars)).extract()?;
        Ok(settings)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/hangar.db", self.hangar_data_dir.display()))
    }

    pub fn auth_enabled(&self) -> bool {
        !self.api_keys.is_empty()
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_timeout.max(0.0))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout.max(0.001))
    }

    /// Problems that make these settings unusable or unsafe, each saying which setting and why.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for key in &self.api_keys {
            if key.chars().count() < 16 {
                out.push(format!(
                    "API_KEYS: a key of {} characters is too short; each admin key must have at least 16 \
                     (generate one with `openssl rand -hex 32`)",
                    key.chars().count()
                ));
            }
        }
        for origin in &self.cors_origins {
            if origin != "*" && !origin.starts_with("http://") && !origin.starts_with("https://") {
                out.push(format!(
                    "CORS_ORIGINS: {origin:?} must start with http:// or https:// (or be *)"
                ));
            }
        }
        if !(self.shutdown_timeout.is_finite() && self.shutdown_timeout >= 0.0) {
            out.push("SHUTDOWN_TIMEOUT must be a non-negative number of seconds".into());
        }
        if !(self.run_time_limit.is_finite() && self.run_time_limit > 0.0) {
            out.push("RUN_TIME_LIMIT must be a positive number of seconds".into());
        }
        if !(self.request_timeout.is_finite() && self.request_timeout > 0.0) {
            out.push("REQUEST_TIMEOUT must be a positive number of seconds".into());
        }
        if let Some(id) = &self.title_model_id
            && id.parse::<hangar_protocol::ModelId>().is_err()
        {
            out.push(format!("TITLE_MODEL_ID: {id:?} is not a valid model id"));
        }
        for (name, secs) in [
            ("BEDROCK_RETRY_BASE_DELAY", self.bedrock_retry_base_delay),
            ("BEDROCK_RETRY_MAX_DELAY", self.bedrock_retry_max_delay),
            ("MODEL_REQUEST_TIMEOUT", self.model_request_timeout),
        ] {
            if !(secs.is_finite() && secs > 0.0) {
                out.push(format!("{name} must be a positive number of seconds"));
            }
        }
        for cidr in &self.sandbox_egress_allowed_networks {
            if cidr.parse::<hangar_sandbox::egress::Cidr>().is_err() {
                out.push(format!(
                    "SANDBOX_EGRESS_ALLOWED_NETWORKS: {cidr:?} is not a CIDR like 10.1.2.0/24"
                ));
            }
        }
        for path in &self.sandbox_ro_binds {
            if !Path::new(path).is_absolute() {
                out.push(format!("SANDBOX_RO_BINDS: {path:?} must be an absolute path"));
            }
        }
        if self.container_execution_timeout == 0 || self.container_gc_interval == 0 {
            out.push("CONTAINER_EXECUTION_TIMEOUT and CONTAINER_GC_INTERVAL must be positive".into());
        }
        if self.rate_limit_enabled && (self.rate_limit_requests == 0 || self.rate_limit_period == 0) {
            out.push(
                "RATE_LIMIT_REQUESTS and RATE_LIMIT_PERIOD must be positive when rate limiting is on".into(),
            );
        }
        if self.app_env == AppEnv::Production {
            out.extend(self.production_problems());
        }
        out
    }

    fn production_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.api_keys.is_empty() {
            out.push(
                "API_KEYS is empty: in production every /api request must be authenticated, so at least \
                 one admin key is required"
                    .into(),
            );
        }
        if self.database_url().contains("aiagent_password") {
            out.push(
                "DATABASE_URL uses the well-known default password 'aiagent_password'; set a real one".into(),
            );
        }
        for origin in &self.cors_origins {
            if origin == "*" {
                out.push(
                    "CORS_ORIGINS contains '*': in production list the exact origins allowed to call the API"
                        .into(),
                );
            } else if origin.contains("localhost") || origin.contains("127.0.0.1") {
                out.push(format!(
                    "CORS_ORIGINS contains {origin:?}: a local development origin must not be trusted in production"
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_safe_for_development() {
        let s = Settings::from_sources(None, vars(&[])).unwrap();
        assert_eq!(s.app_port, 8000);
        assert_eq!(s.database_url(), "sqlite://./data/hangar.db");
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert!(s.cors_methods.iter().any(|m| m == "PATCH"));
    }

    #[test]
    fn environment_overrides_and_lists() {
        let s = Settings::from_sources(
            None,
            vars(&[
                ("APP_PORT", "9100"),
                ("API_KEYS", "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb,"),
                ("HSTS_ENABLED", "true"),
                ("SHUTDOWN_TIMEOUT", "2.5"),
                ("DATABASE_URL", "postgres://u:p@h/db"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.app_port, 9100);
        assert_eq!(s.api_keys, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
        assert!(s.hsts_enabled);
        assert_eq!(s.shutdown_timeout(), Duration::from_millis(2500));
        assert_eq!(s.database_url(), "postgres://u:p@h/db");
    }

    #[test]
    fn toml_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hangar.toml");
        std::fs::write(
            &path,
            "app_port = 7000\nlog_level = \"debug\"\ncors_origins = [\"https://a.example\"]\n",
        )
        .unwrap();
        let s = Settings::from_sources(Some(&path), vars(&[("LOG_LEVEL", "warn")])).unwrap();
        assert_eq!(s.app_port, 7000);
        assert_eq!(s.log_level, "warn");
        assert_eq!(s.cors_origins, ["https://a.example"]);
    }

    #[test]
    fn bad_values_name_their_source() {
        let err = Settings::from_sources(None, vars(&[("APP_PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("app_port") && err.contains("environment variable"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.toml");
        std::fs::write(&path, "app_prot = 1\n").unwrap();
        let err = Settings::from_sources(Some(&path), vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("app_prot"), "{err}");
    }

    #[test]
    fn production_refuses_unsafe_settings() {
        let s = Settings::from_sources(
            None,
            vars(&[
                ("APP_ENV", "production"),
                ("DATABASE_URL", "postgres://aiagent:aiagent_password@db/aiagent"),
                ("CORS_ORIGINS", "*,http://localhost:3000"),
            ]),
        )
        .unwrap();
        let problems = s.problems().join("\n");
        for needle in [
            "API_KEYS is empty",
            "aiagent_password",
            "contains '*'",
            "localhost",
        ] {
            assert!(problems.contains(needle), "missing {needle:?} in:\n{problems}");
        }
        let ok = Settings::from_sources(
            None,
            vars(&[
                ("APP_ENV", "production"),
                ("API_KEYS", "0123456789abcdef0123"),
                ("CORS_ORIGINS", "https://console.example.com"),
            ]),
        )
        .unwrap();
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
    }

    #[test]
    fn short_keys_and_bad_origins_always_refused() {
        let s = Settings::from_sources(None, vars(&[("API_KEYS", "short"), ("CORS_ORIGINS", "ftp://x")]))
            .unwrap();
        let problems = s.problems().join("\n");
        assert!(
            problems.contains("too short") && problems.contains("ftp://x"),
            "{problems}"
        );
    }
}
