//! [`SqlStore`]: connection pools, dialect selection and migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Transaction};

use crate::{Result, Store, StoreError};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Config(
                "DATABASE_URL must start with sqlite: or postgres:// (e.g. sqlite://./data/hangar.db)".into(),
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &SQLITE_MIGRATIONS,
            Self::Postgres => &POSTGRES_MIGRATIONS,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections for reads (and for writes on PostgreSQL).
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The store over SQLite or PostgreSQL through sqlx's `Any` driver.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    pub(crate) dialect: Dialect,
}

/// Creates the directory holding a SQLite file, so a fresh machine needs no setup.
fn ensure_sqlite_dir(url: &str) -> Result<bool> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return Ok(true);
    }
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", parent.display())))?;
    }
    Ok(false)
}

impl SqlStore {
    /// Connects to `url` (`sqlite://path`, `postgres://…`). Does not migrate; call
    /// [`Store::migrate`].
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        // An embedded database is created on first use unless the URL asks otherwise.
        let url = if dialect == Dialect::Sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_owned()
        };
        let url = url.as_str();
        let mut connect = AnyConnectOptions::from_str(url)?;
        connect = sqlx::ConnectOptions::log_statements(connect, tracing::log::LevelFilter::Trace);
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(options.acquire_timeout)
                // A SQLite connection is a local file that cannot hang up; pinging it before every
                // use doubled the round trips to its worker thread. PostgreSQL connections can
                // die with the server or the network, so they are still checked.
                .test_before_acquire(dialect == Dialect::Postgres)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if dialect == Dialect::Sqlite {
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                        }
                        Ok(())
                    })
                })
        };
        match dialect {
            Dialect::Sqlite => {
                let in_memory = ensure_sqlite_dir(url)?;
                if in_memory {
                    // Every connection to `:memory:` is its own database: use exactly one.
                    let only = pool(1).connect_with(connect).await?;
                    return Ok(Self {
                        read: only.clone(),
                        write: only,
                        dialect,
                    });
                }
                let write = pool(1).connect_with(connect.clone()).await?;
                sqlx::query("PRAGMA journal_mode = WAL").execute(&write).await?;
                let read = pool(options.max_connections.max(1)).connect_with(connect).await?;
                Ok(Self { read, write, dialect })
            }
            Dialect::Postgres => {
                let shared = pool(options.max_connections.max(2)).connect_with(connect).await?;
                Ok(Self {
                    read: shared.clone(),
                    write: shared,
                    dialect,
                })
            }
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The clause that takes `lock` on the rows a `SELECT` returns, in this dialect.
    pub(crate) fn lock(&self, lock: Lock) -> &'static str {
        match (self.dialect, lock) {
            (Dialect::Sqlite, _) => "",
            (Dialect::Postgres, Lock::Update) => " FOR UPDATE",
            (Dialect::Postgres, Lock::KeyShare) => " FOR KEY SHARE",
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.write.begin().await?,
        })
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.dialect.name()
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn migrate(&self) -> Result<()> {
        self.dialect.migrator().run(&self.write).await?;
        Ok(())
    }

    async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Joins compile-time SQL fragments (a shared `SELECT`, its `WHERE`, a lock clause); never user
/// input.
pub(crate) fn concat(parts: &[&'static str]) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(parts.concat())
}

/// Row locks taken by read-modify-write transactions. On SQLite they are empty: `BEGIN IMMEDIATE`
/// already serialises writers. On PostgreSQL they stop two concurrent updates from losing one
/// another's changes, and a delete from racing an insert that references the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// The row is about to be changed or deleted.
    Update,
    /// The row is about to be referenced by a foreign key; it must not be deleted meanwhile.
    KeyShare,
}

/// Runs a `SELECT COUNT(*) … WHERE x = $1` with one text argument.
pub(crate) async fn count_where(
    conn: &mut sqlx::AnyConnection,
    sql: &'static str,
    value: &str,
) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as(sql).bind(value).fetch_one(conn).await?;
    Ok(n)
}
