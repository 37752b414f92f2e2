//! Shared helpers and the [`store_test!`] macro that runs one body on both backends.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hangar_protocol::{ModelCreate, ModelId, Price, TenantCreate, TenantId};
use hangar_store::testing::{Backend, TestDb};
use hangar_store::{Actor, AuditFilter, StoreError, TenantFilter};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// `store_test!(name, |db| async move { ... })` expands to a module `name` with two tests,
/// `sqlite` and `postgres`, each running the body against a fresh, migrated [`TestDb`].
macro_rules! store_test {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            // Explicit, so it wins over both the glob above and the prelude.
            #[allow(unused_imports)]
            use pretty_assertions::{assert_eq, assert_ne};

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::suite::run(hangar_store::testing::Backend::Sqlite, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::suite::run(hangar_store::testing::Backend::Postgres, $body).await;
            }
        }
    };
}

mod api_keys;
mod audit;
mod blob;
mod conversations;
mod models;
mod runs;
mod schema;
mod tenants;
mod workspaces;

/// Creates a fresh database for `backend`, checks the store really talks to that backend, and
/// runs `body` with it.
///
/// The body gets the database behind an `Arc` and this function keeps a clone until the body
/// is done: an `async move` block that only mentions `db.store` captures just that field
/// (edition 2021 disjoint captures), which would drop the rest of the `TestDb`, including the
/// temporary directory holding the SQLite file, while the store still needs it.
pub async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<TestDb>) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = Arc::new(TestDb::new(backend).await);
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(hangar_store::Store::backend(&*db.store), expected);
    body(Arc::clone(&db)).await;
    drop(db);
}

pub fn actor() -> Actor {
    Actor::new("admin:test", Some("req-test".to_owned()))
}

pub fn tid(id: &str) -> TenantId {
    id.parse().unwrap()
}

pub fn mid(id: &str) -> ModelId {
    id.parse().unwrap()
}

pub fn price(text: &str) -> Price {
    text.parse().unwrap()
}

pub fn new_tenant(id: &str, model: Option<&str>) -> TenantCreate {
    TenantCreate {
        tenant_id: tid(id),
        system_prompt: None,
        model_id: model.map(mid),
        policy: Default::default(),
    }
}

pub fn new_model(id: &str, display_name: &str) -> ModelCreate {
    ModelCreate {
        model_id: mid(id),
        display_name: display_name.to_owned(),
        provider: hangar_protocol::ProviderKind::Bedrock,
        bedrock_model_id: format!("provider.{id}-v1:0"),
        model_region: None,
        base_url: None,
        api_key_env: None,
        fallback_model_ids: Vec::new(),
        input_token_price: Price::ZERO,
        output_token_price: Price::ZERO,
        cache_creation_5m_price: Price::ZERO,
        cache_creation_1h_price: Price::ZERO,
        cache_read_price: Price::ZERO,
        context_window: 200_000,
        max_output_tokens: 64_000,
        supports_extended_context: false,
        extended_context_window: None,
    }
}

/// Every tenant (more than the default page of 100).
pub fn all_tenants() -> TenantFilter {
    TenantFilter {
        status: None,
        limit: 1_000,
        offset: 0,
    }
}

/// Every audit record.
pub fn all_audit() -> AuditFilter {
    AuditFilter {
        tenant_id: None,
        action: None,
        limit: 1_000,
        offset: 0,
    }
}

/// Waits long enough for the millisecond clock to move, so `created_at` orders rows.
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Asserts that `at` is within a minute of now (the store stamps rows with the current time).
#[track_caller]
pub fn assert_recent(at: DateTime<Utc>) {
    let age = (Utc::now() - at).num_seconds().abs();
    assert!(age < 60, "timestamp {at} is {age}s away from now");
}

/// A separate connection pool to the test database, for raw SQL the store has no API for yet.
pub async fn raw(db: &TestDb) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .expect("raw connection to test db")
}

pub async fn insert_conversation(pool: &AnyPool, id: &str, tenant: &str, model: &str) {
    sqlx::query(
        "INSERT INTO conversations (conversation_id, tenant_id, user_id, model_id, title, status, \
         workspace_enabled, context_limit_reached, created_at, updated_at) \
         VALUES ($1, $2, 'user-1', $3, 'hello', 'active', 1, 0, $4, $4)",
    )
    .bind(id)
    .bind(tenant)
    .bind(model)
    .bind(now_ms())
    .execute(pool)
    .await
    .expect("insert conversation");
}

pub async fn insert_usage_log(pool: &AnyPool, id: &str, tenant: &str, model: &str) {
    sqlx::query(
        "INSERT INTO usage_logs (usage_log_id, tenant_id, user_id, model_id, input_tokens, output_tokens, \
         total_tokens, cost_nano_usd, executed_at) VALUES ($1, $2, 'user-1', $3, 10, 20, 30, 1234, $4)",
    )
    .bind(id)
    .bind(tenant)
    .bind(model)
    .bind(now_ms())
    .execute(pool)
    .await
    .expect("insert usage log");
}

pub async fn count(pool: &AnyPool, sql: &'static str, value: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql)
        .bind(value)
        .fetch_one(pool)
        .await
        .expect("count query");
    n
}

#[track_caller]
pub fn assert_not_found<T: Debug>(result: Result<T, StoreError>, resource: &str, id: &str) {
    match result {
        Err(StoreError::NotFound { resource: r, id: i }) => {
            assert_eq!((r, i.as_str()), (resource, id), "wrong NotFound");
        }
        other => panic!("expected NotFound {resource} '{id}', got {other:?}"),
    }
}

/// Asserts a Conflict and returns its details as `(field, count, code)`.
#[track_caller]
pub fn assert_conflict<T: Debug>(
    result: Result<T, StoreError>,
    message_contains: &str,
) -> Vec<(String, Option<i64>, Option<String>)> {
    match result {
        Err(StoreError::Conflict { message, details }) => {
            assert!(message.contains(message_contains), "conflict message {message:?}");
            details
                .into_iter()
                .map(|d| (d.field.unwrap_or_default(), d.count, d.code))
                .collect()
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_invalid<T: Debug>(result: Result<T, StoreError>, field: &str) {
    match result {
        Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
        other => panic!("expected Invalid on {field}, got {other:?}"),
    }
}

/// `(field, count, "IN_USE")`, as a Conflict detail about something still in use.
pub fn in_use(field: &str, n: i64) -> (String, Option<i64>, Option<String>) {
    (field.to_owned(), Some(n), Some("IN_USE".to_owned()))
}
