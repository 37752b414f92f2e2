//! Fresh databases for tests: a SQLite file in a temporary directory, or a PostgreSQL schema of
//! its own in the database named by `TEST_POSTGRES_URL` (which `scripts/test` sets). A missing
//! `TEST_POSTGRES_URL` fails the test: the PostgreSQL suite is never skipped silently.

#![expect(
    clippy::expect_used,
    reason = "test support fails the test with a message when its setup breaks"
)]

use std::sync::Arc;

use crate::{SqlStore, Store, StoreOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated, empty database that lives as long as this value.
pub struct TestDb {
    pub url: String,
    pub store: Arc<SqlStore>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                (format!("sqlite://{}/hangar.db", dir.path().display()), Some(dir))
            }
            Backend::Postgres => (postgres_schema_url().await, None),
        };
        let store = SqlStore::connect(&url, &StoreOptions::default())
            .await
            .expect("connect test database");
        store.migrate().await.expect("migrate test database");
        Self {
            url,
            store: Arc::new(store),
            _dir: dir,
        }
    }
}

/// Owning the temporary directory, a `TestDb` must not be taken apart: with this (empty) `Drop`,
/// a closure that uses `db.store` captures the whole value instead of only that field, so the
/// SQLite file outlives every connection to it.
impl Drop for TestDb {
    fn drop(&mut self) {}
}

impl TestDb {
    /// An existing database at `url` (migrated if needed), e.g. one a CLI test created.
    pub async fn open(url: &str) -> Self {
        let store = SqlStore::connect(url, &StoreOptions::default())
            .await
            .expect("connect database");
        store.migrate().await.expect("migrate database");
        Self {
            url: url.to_owned(),
            store: Arc::new(store),
            _dir: None,
        }
    }
}

/// The base URL of the PostgreSQL test database.
pub fn postgres_base_url() -> String {
    std::env::var("TEST_POSTGRES_URL").expect(
        "TEST_POSTGRES_URL is not set: run ./scripts/test, or set it to a PostgreSQL database \
         (e.g. postgres://postgres@127.0.0.1:5432/hangar_test)",
    )
}

/// Creates a schema named after a fresh UUID and returns a URL whose connections use it.
async fn postgres_schema_url() -> String {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let base = postgres_base_url();
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(&base)
        .await
        .expect("connect to TEST_POSTGRES_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create test schema");
    conn.close().await.ok();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}
