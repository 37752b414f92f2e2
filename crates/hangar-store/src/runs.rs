//! Runs of conversations and the events they streamed.
//!
//! A run is inserted `running` when it starts and finished once. A partial unique index keeps a
//! conversation to one running run even when two nodes start one at the same moment; the
//! violation comes back as a Conflict. Events are stored as the JSON text that was sent, numbered
//! by the run, so a client that reconnects is replayed exactly what it missed.

use hangar_protocol::{ModelId, Run, RunStatus, RunUsage, TenantId, Usd};
use uuid::Uuid;

use crate::conversations::uuid;
use crate::sql::{Lock, SqlStore, concat};
use crate::time::{from_ms, from_ms_opt, now_ms};
use crate::{Result, StoreError};

/// A run about to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub run_id: Uuid,
    pub tenant_id: TenantId,
    pub conversation_id: Uuid,
    pub user_id: String,
    pub model_id: ModelId,
    /// The node (server process) running it, to find it again after that node crashed.
    pub node_id: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Anything but `running`.
    pub status: RunStatus,
    pub turn_count: i64,
    pub usage: RunUsage,
    pub cost: Usd,
    pub error: Option<String>,
}

/// One streamed event of a run: its number, its SSE event name and its JSON object as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: String,
    /// The whole JSON object, as text.
    pub data: String,
}

#[async_trait::async_trait]
pub trait RunStore {
    /// Records a new `running` run. NotFound unless the conversation is in the run's tenant;
    /// Conflict if the run id exists or the conversation already has a running run.
    async fn create_run(&self, new: &NewRun) -> Result<Run>;
    /// NotFound unless the run belongs to this tenant and conversation.
    async fn get_run(&self, tenant: &TenantId, conversation: Uuid, run: Uuid) -> Result<Run>;
    /// A page of the conversation's runs, newest first, and their total. NotFound if the
    /// conversation is not in this tenant.
    async fn list_runs(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Run>, i64)>;
    /// Sets the final status, usage, cost, error and `finished_at`, only if the run is still
    /// running; returns whether it was. Invalid if `outcome.status` is `running`.
    async fn finish_run(&self, run: Uuid, outcome: &RunOutcome) -> Result<bool>;
    /// Stores the events in one transaction. NotFound if the run does not exist; Conflict if one
    /// of the numbers is already stored.
    async fn append_run_events(&self, run: Uuid, events: &[StoredEvent]) -> Result<()>;
    /// Events numbered above `after`, ascending, at most `limit`.
    async fn run_events(&self, run: Uuid, after: u64, limit: i64) -> Result<Vec<StoredEvent>>;
    /// The number of the run's last stored event (0 when there is none).
    async fn last_run_event_seq(&self, run: Uuid) -> Result<u64>;
    /// Runs still `running` that `node_id` started (left over by a crash of that node), oldest
    /// first.
    async fn running_runs(&self, node_id: &str) -> Result<Vec<Run>>;
}

#[derive(sqlx::FromRow)]
struct RunRow {
    run_id: String,
    conversation_id: String,
    tenant_id: String,
    user_id: String,
    model_id: String,
    status: String,
    turn_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    cache_creation_5m_tokens: i64,
    cache_creation_1h_tokens: i64,
    cache_read_tokens: i64,
    total_tokens: i64,
    cost_nano_usd: i64,
    error: Option<String>,
    started_at: i64,
    finished_at: Option<i64>,
}

fn count(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(format!("{column} = {value}")))
}

/// Token counts beyond `i64::MAX` do not happen; saturate rather than fail the write.
fn column(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;

    fn try_from(row: RunRow) -> Result<Self> {
        Ok(Run {
            run_id: uuid(&row.run_id)?,
            conversation_id: uuid(&row.conversation_id)?,
            tenant_id: row.tenant_id.try_into().map_err(StoreError::corrupt)?,
            user_id: row.user_id,
            model_id: row.model_id.try_into().map_err(StoreError::corrupt)?,
            status: RunStatus::parse(&row.status).ok_or_else(|| StoreError::corrupt(&row.status))?,
            turn_count: row.turn_count,
            usage: RunUsage {
                input_tokens: count(row.input_tokens, "input_tokens")?,
                output_tokens: count(row.output_tokens, "output_tokens")?,
                cache_creation_5m_tokens: count(row.cache_creation_5m_tokens, "cache_creation_5m_tokens")?,
                cache_creation_1h_tokens: count(row.cache_creation_1h_tokens, "cache_creation_1h_tokens")?,
                cache_read_tokens: count(row.cache_read_tokens, "cache_read_tokens")?,
                total_tokens: count(row.total_tokens, "total_tokens")?,
            },
            cost_usd: Usd::from_nanos(row.cost_nano_usd),
            error: row.error,
            started_at: from_ms(row.started_at)?,
            finished_at: from_ms_opt(row.finished_at)?,
        })
    }
}

const SELECT: &str = "SELECT run_id, conversation_id, tenant_id, user_id, model_id, status, turn_count, \
     input_tokens, output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, \
     total_tokens, cost_nano_usd, error, started_at, finished_at FROM runs";

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

async fn fetch_run(conn: &mut sqlx::AnyConnection, run: Uuid) -> Result<Run> {
    let row: Option<RunRow> = sqlx::query_as(concat(&[SELECT, " WHERE run_id = $1"]))
        .bind(run.to_string())
        .fetch_optional(conn)
        .await?;
    row.ok_or_else(|| StoreError::not_found("run", run))?.try_into()
}

/// NotFound unless the conversation is in `tenant`.
async fn check_conversation(
    conn: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    conversation: Uuid,
) -> Result<()> {
    let found: Option<(String,)> = sqlx::query_as(
        "SELECT conversation_id FROM conversations WHERE conversation_id = $1 AND tenant_id = $2",
    )
    .bind(conversation.to_string())
    .bind(tenant.as_str())
    .fetch_optional(conn)
    .await?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::not_found("conversation", conversation))
}

#[async_trait::async_trait]
impl RunStore for SqlStore {
    async fn create_run(&self, new: &NewRun) -> Result<Run> {
        let mut tx = self.begin_write().await?;
        // A share lock: the conversation cannot be deleted meanwhile, but two nodes starting a
        // run at once both get here and the unique index picks the one that wins.
        let found: Option<(String,)> = sqlx::query_as(concat(&[
            "SELECT conversation_id FROM conversations WHERE conversation_id = $1 AND tenant_id = $2",
            self.lock(Lock::KeyShare),
        ]))
        .bind(new.conversation_id.to_string())
        .bind(new.tenant_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Err(StoreError::not_found("conversation", new.conversation_id));
        }
        let (exists,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM runs WHERE run_id = $1")
            .bind(new.run_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if exists > 0 {
            return Err(StoreError::conflict(format!(
                "run '{}' already exists",
                new.run_id
            )));
        }
        let inserted = sqlx::query(
            "INSERT INTO runs (run_id, tenant_id, conversation_id, user_id, model_id, node_id, status, turn_count, \
             input_tokens, output_tokens, cache_creation_5m_tokens, cache_creation_1h_tokens, cache_read_tokens, \
             total_tokens, cost_nano_usd, started_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'running', 0, 0, 0, 0, 0, 0, 0, 0, $7)",
        )
        .bind(new.run_id.to_string())
        .bind(new.tenant_id.as_str())
        .bind(new.conversation_id.to_string())
        .bind(&new.user_id)
        .bind(new.model_id.as_str())
        .bind(&new.node_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::conflict(format!(
                    "conversation '{}' already has a running run",
                    new.conversation_id
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let run = fetch_run(&mut tx, new.run_id).await?;
        tx.commit().await?;
        Ok(run)
    }

    async fn get_run(&self, tenant: &TenantId, conversation: Uuid, run: Uuid) -> Result<Run> {
        let row: Option<RunRow> = sqlx::query_as(concat(&[
            SELECT,
            " WHERE run_id = $1 AND conversation_id = $2 AND tenant_id = $3",
        ]))
        .bind(run.to_string())
        .bind(conversation.to_string())
        .bind(tenant.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.ok_or_else(|| StoreError::not_found("run", run))?.try_into()
    }

    async fn list_runs(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Run>, i64)> {
        let mut conn = self.read.acquire().await?;
        check_conversation(&mut conn, tenant, conversation).await?;
        let key = conversation.to_string();
        let rows: Vec<RunRow> = sqlx::query_as(concat(&[
            SELECT,
            " WHERE conversation_id = $1 AND tenant_id = $2 ORDER BY started_at DESC, run_id DESC \
             LIMIT $3 OFFSET $4",
        ]))
        .bind(&key)
        .bind(tenant.as_str())
        .bind(limit.max(0))
        .bind(offset.max(0))
        .fetch_all(&mut *conn)
        .await?;
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM runs WHERE conversation_id = $1 AND tenant_id = $2")
                .bind(&key)
                .bind(tenant.as_str())
                .fetch_one(&mut *conn)
                .await?;
        let items = rows.into_iter().map(Run::try_from).collect::<Result<_>>()?;
        Ok((items, total))
    }

    async fn finish_run(&self, run: Uuid, outcome: &RunOutcome) -> Result<bool> {
        if outcome.status == RunStatus::Running {
            return Err(StoreError::invalid("status", "a run cannot finish as running"));
        }
        let usage = &outcome.usage;
        let done = sqlx::query(
            "UPDATE runs SET status = $1, turn_count = $2, input_tokens = $3, output_tokens = $4, \
             cache_creation_5m_tokens = $5, cache_creation_1h_tokens = $6, cache_read_tokens = $7, \
             total_tokens = $8, cost_nano_usd = $9, error = $10, finished_at = $11 \
             WHERE run_id = $12 AND status = 'running'",
        )
        .bind(outcome.status.as_str())
        .bind(outcome.turn_count)
        .bind(column(usage.input_tokens))
        .bind(column(usage.output_tokens))
        .bind(column(usage.cache_creation_5m_tokens))
        .bind(column(usage.cache_creation_1h_tokens))
        .bind(column(usage.cache_read_tokens))
        .bind(column(usage.total_tokens))
        .bind(outcome.cost.nanos())
        .bind(outcome.error.as_deref())
        .bind(now_ms())
        .bind(run.to_string())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn append_run_events(&self, run: Uuid, events: &[StoredEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let key = run.to_string();
        let mut tx = self.begin_write().await?;
        let found: Option<(String,)> = sqlx::query_as(concat(&[
            "SELECT run_id FROM runs WHERE run_id = $1",
            self.lock(Lock::KeyShare),
        ]))
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Err(StoreError::not_found("run", run));
        }
        let now = now_ms();
        for event in events {
            let seq = i64::try_from(event.seq).map_err(|_| {
                StoreError::invalid("seq", format!("event number {} is too large", event.seq))
            })?;
            let inserted = sqlx::query(
                "INSERT INTO run_events (run_id, seq, event, data, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&key)
            .bind(seq)
            .bind(&event.event)
            .bind(&event.data)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::conflict(format!(
                        "event {} of run '{run}' is already stored",
                        event.seq
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn run_events(&self, run: Uuid, after: u64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, event, data FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run.to_string())
        .bind(column(after))
        .bind(limit.max(0))
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(seq, event, data)| {
                Ok(StoredEvent {
                    seq: count(seq, "seq")?,
                    event,
                    data,
                })
            })
            .collect()
    }

    async fn last_run_event_seq(&self, run: Uuid) -> Result<u64> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM run_events WHERE run_id = $1")
            .bind(run.to_string())
            .fetch_one(&self.read)
            .await?;
        count(last.unwrap_or(0), "seq")
    }

    async fn running_runs(&self, node_id: &str) -> Result<Vec<Run>> {
        let rows: Vec<RunRow> = sqlx::query_as(concat(&[
            SELECT,
            " WHERE node_id = $1 AND status = 'running' ORDER BY started_at, run_id",
        ]))
        .bind(node_id)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(Run::try_from).collect()
    }
}
