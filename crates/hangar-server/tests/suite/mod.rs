//! Shared harness: a server on `127.0.0.1:0` over a fresh database, and a client for it.

/// Runs the test body once against SQLite and once against PostgreSQL.
macro_rules! both {
    ($name:ident, |$app:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use pretty_assertions::assert_eq;

            async fn run($app: $crate::suite::TestApp) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::suite::TestApp::start(hangar_store::testing::Backend::Sqlite, &[]).await).await;
            }

            #[tokio::test]
            async fn postgres() {
                run($crate::suite::TestApp::start(hangar_store::testing::Backend::Postgres, &[]).await).await;
            }
        }
    };
}

mod api_keys;
mod auth;
mod chat_cli;
mod cli;
mod errors;
mod files;
mod models;
mod openapi;
mod ops;
mod providers;
mod rate_limit;
mod runs;
mod sandbox;
mod simple_chats;
mod socket;
mod tenants;
mod workspaces;

use std::sync::Arc;

use hangar_server::{AppState, Settings};
use hangar_store::testing::{Backend, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// `HANGAR_DATA_DIR` (sandbox state, workspaces) of this server alone.
    _data: tempfile::TempDir,
}

/// `(event, data)` pairs of an SSE body (comments and keep-alives skipped).
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let data = if data.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&data).unwrap_or(Value::String(data))
            };
            name.map(|n| (n, data))
        })
        .collect()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `error.code` of an envelope.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    /// A server with the admin key `ADMIN_KEY`, plus any extra settings.
    pub async fn start(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let mut vars = vec![("API_KEYS", ADMIN_KEY), ("LOG_LEVEL", "warn")];
        vars.extend_from_slice(extra);
        Self::start_with(backend, &vars).await
    }

    pub async fn start_with(backend: Backend, vars: &[(&str, &str)]) -> Self {
        Self::start_on(TestDb::new(backend).await, vars, None).await
    }

    /// A server whose models are served by `registry` (a scripted provider, or providers pointed
    /// at the fake model server), with the admin key and any extra settings.
    pub async fn start_llm(backend: Backend, extra: &[(&str, &str)], registry: hangar_llm::Registry) -> Self {
        let mut vars = vec![("API_KEYS", ADMIN_KEY), ("LOG_LEVEL", "warn")];
        vars.extend_from_slice(extra);
        Self::start_on(TestDb::new(backend).await, &vars, Some(registry)).await
    }

    /// A server (with `ADMIN_KEY`) on an existing database given by `DATABASE_URL` in `vars`.
    pub async fn start_cli_db(vars: &[(&str, &str)]) -> Self {
        let url = vars
            .iter()
            .find(|(k, _)| *k == "DATABASE_URL")
            .map(|(_, v)| *v)
            .expect("DATABASE_URL");
        let db = TestDb::open(url).await;
        Self::start_on(db, &[("API_KEYS", ADMIN_KEY), ("LOG_LEVEL", "warn")], None).await
    }

    pub async fn start_on(db: TestDb, vars: &[(&str, &str)], registry: Option<hangar_llm::Registry>) -> Self {
        let mut vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        vars.push(("DATABASE_URL".into(), db.url.clone()));
        let data = tempfile::tempdir().expect("data dir");
        if !vars.iter().any(|(k, _)| k == "HANGAR_DATA_DIR") {
            vars.push(("HANGAR_DATA_DIR".into(), data.path().display().to_string()));
        }
        // Rate limiting stays on, with a budget no test reaches by accident; `rate_limit.rs`
        // tests small ones.
        if !vars.iter().any(|(k, _)| k == "RATE_LIMIT_REQUESTS") {
            vars.push(("RATE_LIMIT_REQUESTS".into(), "1000000".into()));
        }
        if !vars.iter().any(|(k, _)| k == "SANDBOX_SUPERVISOR") {
            vars.push(("SANDBOX_SUPERVISOR".into(), env!("CARGO_BIN_EXE_hangar").into()));
        }
        let settings = Settings::from_sources(None, vars).expect("settings");
        assert!(settings.problems().is_empty(), "{:?}", settings.problems());
        let store: Arc<dyn hangar_store::Store> = db.store.clone();
        // Without a registry of its own, a test's models are served by an empty script: a call
        // fails with a configuration error instead of reaching anything.
        let registry = registry.unwrap_or_else(|| {
            hangar_llm::Registry::fixed(Arc::new(hangar_llm::ScriptedProvider::new("unscripted", [])))
        });
        let llm = Arc::new(hangar_server::Llm::with_registry(&settings, registry));
        let state = AppState::new(settings, store, hangar_server::telemetry::metrics_handle(), llm)
            .expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(hangar_server::serve(state.clone(), listener, async {
            rx.await.ok();
        }));
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        Self {
            base,
            client,
            db,
            state,
            shutdown: Some(tx),
            server: Some(server),
            _data: data,
        }
    }

    /// Posts a simple-chat message and returns the response headers and its parsed SSE events.
    pub async fn chat(
        &self,
        tenant: &str,
        key: &str,
        body: Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<(String, Value)>) {
        let response = self
            .client
            .post(self.url(&format!("/api/tenants/{tenant}/simple-chats/stream")))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (status, headers, sse_events(&text))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with `key` (None: no key) and an optional JSON body.
    pub async fn send(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(ADMIN_KEY), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(ADMIN_KEY), Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(ADMIN_KEY), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, Some(ADMIN_KEY), None).await
    }

    /// Creates a model with the given id (prices 3 and 15 USD per 1M tokens).
    pub async fn model(&self, id: &str) -> Value {
        let reply = self
            .post(
                "/api/models",
                serde_json::json!({
                    "model_id": id, "display_name": format!("Model {id}"), "bedrock_model_id": format!("provider.{id}"),
                    "input_token_price": "0.003", "output_token_price": "0.015"
                }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    pub async fn tenant(&self, id: &str, model: Option<&str>) -> Value {
        let reply = self
            .post(
                "/api/tenants",
                serde_json::json!({ "tenant_id": id, "model_id": model }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body
    }

    /// Creates a tenant key and returns the secret.
    pub async fn tenant_key(&self, tenant: &str) -> String {
        let reply = self
            .post(
                &format!("/api/tenants/{tenant}/api-keys"),
                serde_json::json!({ "name": "test" }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["key"].as_str().expect("key").to_owned()
    }

    /// Runs raw SQL against the test database (to plant rows no API creates yet).
    pub async fn sql(&self, statement: &str) {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.db.url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(&pool)
            .await
            .expect("sql");
        pool.close().await;
    }

    /// The first column of the first row of `query` as an integer (`COUNT(*)`, sums…).
    pub async fn scalar(&self, query: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.db.url).await.expect("connect");
        let value: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(query.to_owned()))
            .fetch_one(&pool)
            .await
            .expect("query");
        pool.close().await;
        value
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
