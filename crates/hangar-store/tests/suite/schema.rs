//! Both dialects' migrations describe the same tables and columns.

use std::collections::BTreeSet;

use hangar_store::Store;
use hangar_store::testing::{Backend, TestDb};
use pretty_assertions::assert_eq;
use sqlx::AnyPool;

use super::*;

/// `(table, column, nullable)` for every column of every table but sqlx's own.
type Columns = BTreeSet<(String, String, bool)>;

async fn sqlite_columns(pool: &AnyPool) -> Columns {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT m.name, p.name, p.\"notnull\", p.pk FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT IN ('_sqlx_migrations', 'sqlite_sequence')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    // SQLite lets a TEXT PRIMARY KEY hold NULL unless told otherwise; PostgreSQL never does.
    // Both reject NULL ids in practice only on PostgreSQL, so primary keys count as NOT NULL here.
    rows.into_iter()
        .map(|(t, c, notnull, pk)| (t, c, notnull == 0 && pk == 0))
        .collect()
}

async fn postgres_columns(pool: &AnyPool) -> Columns {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, is_nullable::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(t, c, nullable)| (t, c, nullable == "YES"))
        .collect()
}

fn names(columns: &Columns) -> BTreeSet<(String, String)> {
    columns.iter().map(|(t, c, _)| (t.clone(), c.clone())).collect()
}

#[tokio::test]
async fn dialects_have_the_same_columns() {
    let sqlite = TestDb::new(Backend::Sqlite).await;
    let postgres = TestDb::new(Backend::Postgres).await;
    let lite = sqlite_columns(&raw(&sqlite).await).await;
    let pg = postgres_columns(&raw(&postgres).await).await;

    // The queries see the schema at all (and the right one on PostgreSQL).
    assert!(lite.len() > 100, "only {} SQLite columns", lite.len());
    let tables: BTreeSet<_> = lite.iter().map(|(t, _, _)| t.as_str()).collect();
    let expected_tables = [
        "agent_skills",
        "api_keys",
        "audit_log",
        "conversation_history",
        "conversations",
        "mcp_servers",
        "messages_log",
        "models",
        "run_events",
        "runs",
        "simple_chat_messages",
        "simple_chats",
        "tenants",
        "usage_logs",
        "workspace_files",
        "workspace_snapshots",
        "workspaces",
    ];
    assert_eq!(tables, expected_tables.into_iter().collect());

    assert_eq!(
        names(&lite),
        names(&pg),
        "(table, column) pairs differ between the dialects"
    );
    assert_eq!(lite, pg, "nullability differs between the dialects");
}

store_test!(migrate_is_idempotent, |db| async move {
    db.store.migrate().await.unwrap();
    db.store.ping().await.unwrap();
    let pool = raw(&db).await;
    let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Applying again adds nothing: one row per migration file of the dialect.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    assert_eq!(applied, i64::try_from(files).unwrap());
    assert!(applied >= 2);
});

store_test!(ping_then_close, |db| async move {
    db.store.ping().await.unwrap();
    db.store.close().await;
    match db.store.ping().await {
        Err(hangar_store::StoreError::Database(_)) => {}
        other => panic!("ping after close: {other:?}"),
    }
});
