//! The global model catalogue: prices, limits, lifecycle status, delete protection.

use hangar_protocol::{
    Model, ModelCreate, ModelId, ModelStatus, ModelUpdate, ModelUsage, Price, ProviderKind, check_provider,
};

use crate::audit::{AuditEntry, insert_audit};
use crate::sql::{Lock, SqlStore, concat, count_where};
use crate::time::{from_ms, now_ms};
use crate::{Actor, Result, StoreError};

#[async_trait::async_trait]
pub trait ModelStore {
    /// Ordered by display name.
    async fn list_models(&self, status: Option<ModelStatus>) -> Result<Vec<Model>>;
    async fn get_model(&self, id: &ModelId) -> Result<Model>;
    async fn create_model(&self, actor: &Actor, new: &ModelCreate) -> Result<Model>;
    async fn update_model(&self, actor: &Actor, id: &ModelId, patch: &ModelUpdate) -> Result<Model>;
    /// What refers to the model.
    async fn model_usage(&self, id: &ModelId) -> Result<ModelUsage>;
    /// Conflict (with [`ModelUsage`] details) while anything refers to the model.
    async fn delete_model(&self, actor: &Actor, id: &ModelId) -> Result<()>;
}

#[derive(sqlx::FromRow)]
struct ModelRow {
    model_id: String,
    display_name: String,
    provider: String,
    bedrock_model_id: String,
    model_region: Option<String>,
    base_url: Option<String>,
    api_key_env: Option<String>,
    fallback_model_ids: String,
    input_token_price: i64,
    output_token_price: i64,
    cache_creation_5m_price: i64,
    cache_creation_1h_price: i64,
    cache_read_price: i64,
    context_window: i64,
    max_output_tokens: i64,
    supports_extended_context: i64,
    extended_context_window: Option<i64>,
    status: String,
    created_at: i64,
    updated_at: i64,
}

fn price(micros: i64) -> Result<Price> {
    Price::from_micros(micros).map_err(|e| StoreError::corrupt(format!("price {micros}: {e}")))
}

impl TryFrom<ModelRow> for Model {
    type Error = StoreError;

    fn try_from(row: ModelRow) -> Result<Self> {
        Ok(Model {
            model_id: row.model_id.try_into().map_err(StoreError::corrupt)?,
            display_name: row.display_name,
            provider: ProviderKind::parse(&row.provider).ok_or_else(|| StoreError::corrupt(&row.provider))?,
            bedrock_model_id: row.bedrock_model_id,
            model_region: row.model_region,
            base_url: row.base_url,
            api_key_env: row.api_key_env,
            fallback_model_ids: serde_json::from_str(&row.fallback_model_ids).map_err(StoreError::corrupt)?,
            input_token_price: price(row.input_token_price)?,
            output_token_price: price(row.output_token_price)?,
            cache_creation_5m_price: price(row.cache_creation_5m_price)?,
            cache_creation_1h_price: price(row.cache_creation_1h_price)?,
            cache_read_price: price(row.cache_read_price)?,
            context_window: row.context_window,
            max_output_tokens: row.max_output_tokens,
            supports_extended_context: row.supports_extended_context != 0,
            extended_context_window: row.extended_context_window,
            status: ModelStatus::parse(&row.status).ok_or_else(|| StoreError::corrupt(&row.status))?,
            created_at: from_ms(row.created_at)?,
            updated_at: from_ms(row.updated_at)?,
        })
    }
}

const SELECT: &str = "SELECT model_id, display_name, provider, bedrock_model_id, model_region, base_url, \
     api_key_env, fallback_model_ids, input_token_price, \
     output_token_price, cache_creation_5m_price, cache_creation_1h_price, cache_read_price, context_window, \
     max_output_tokens, supports_extended_context, extended_context_window, status, created_at, updated_at \
     FROM models";

async fn fetch(conn: &mut sqlx::AnyConnection, id: &ModelId, lock: &'static str) -> Result<Model> {
    let row: Option<ModelRow> = sqlx::query_as(concat(&[SELECT, " WHERE model_id = $1", lock]))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    row.ok_or_else(|| StoreError::not_found("model", id))?.try_into()
}

async fn usage(conn: &mut sqlx::AnyConnection, id: &ModelId) -> Result<ModelUsage> {
    let id = id.as_str();
    // Ids never contain a double quote, so the quoted id matches exactly one JSON array element;
    // `_` (allowed in ids) is a LIKE wildcard and is escaped.
    let pattern = format!(
        "%\"{}\"%",
        id.replace('\\', "\\\\").replace('_', "\\_").replace('%', "\\%")
    );
    Ok(ModelUsage {
        fallback_for: count_where(
            conn,
            "SELECT COUNT(*) FROM models WHERE fallback_model_ids LIKE $1 ESCAPE '\\'",
            &pattern,
        )
        .await?,
        tenants: count_where(conn, "SELECT COUNT(*) FROM tenants WHERE model_id = $1", id).await?,
        conversations: count_where(conn, "SELECT COUNT(*) FROM conversations WHERE model_id = $1", id)
            .await?,
        simple_chats: count_where(conn, "SELECT COUNT(*) FROM simple_chats WHERE model_id = $1", id).await?,
        runs: count_where(conn, "SELECT COUNT(*) FROM runs WHERE model_id = $1", id).await?,
        usage_logs: count_where(conn, "SELECT COUNT(*) FROM usage_logs WHERE model_id = $1", id).await?,
    })
}

/// Writes every column of `model` (inserting or updating by id).
async fn write_row(conn: &mut sqlx::AnyConnection, model: &Model, insert: bool) -> Result<u64> {
    let sql = if insert {
        "INSERT INTO models (display_name, bedrock_model_id, model_region, input_token_price, \
         output_token_price, cache_creation_5m_price, cache_creation_1h_price, cache_read_price, \
         context_window, max_output_tokens, supports_extended_context, extended_context_window, status, \
         updated_at, model_id, provider, base_url, api_key_env, fallback_model_ids, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $14) \
         ON CONFLICT (model_id) DO NOTHING"
    } else {
        "UPDATE models SET display_name = $1, bedrock_model_id = $2, model_region = $3, \
         input_token_price = $4, output_token_price = $5, cache_creation_5m_price = $6, \
         cache_creation_1h_price = $7, cache_read_price = $8, context_window = $9, max_output_tokens = $10, \
         supports_extended_context = $11, extended_context_window = $12, status = $13, updated_at = $14, \
         provider = $16, base_url = $17, api_key_env = $18, fallback_model_ids = $19 WHERE model_id = $15"
    };
    let done = sqlx::query(sql)
        .bind(&model.display_name)
        .bind(&model.bedrock_model_id)
        .bind(model.model_region.as_deref())
        .bind(model.input_token_price.micros())
        .bind(model.output_token_price.micros())
        .bind(model.cache_creation_5m_price.micros())
        .bind(model.cache_creation_1h_price.micros())
        .bind(model.cache_read_price.micros())
        .bind(model.context_window)
        .bind(model.max_output_tokens)
        .bind(i64::from(model.supports_extended_context))
        .bind(model.extended_context_window)
        .bind(model.status.as_str())
        .bind(now_ms())
        .bind(model.model_id.as_str())
        .bind(model.provider.as_str())
        .bind(model.base_url.as_deref())
        .bind(model.api_key_env.as_deref())
        .bind(serde_json::to_string(&model.fallback_model_ids).map_err(StoreError::corrupt)?)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

#[async_trait::async_trait]
impl ModelStore for SqlStore {
    async fn list_models(&self, status: Option<ModelStatus>) -> Result<Vec<Model>> {
        let rows: Vec<ModelRow> = sqlx::query_as(concat(&[
            SELECT,
            " WHERE ($1 IS NULL OR status = $1) ORDER BY display_name, model_id",
        ]))
        .bind(status.map(ModelStatus::as_str))
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(Model::try_from).collect()
    }

    async fn get_model(&self, id: &ModelId) -> Result<Model> {
        let mut conn = self.read.acquire().await?;
        fetch(&mut conn, id, "").await
    }

    async fn create_model(&self, actor: &Actor, new: &ModelCreate) -> Result<Model> {
        let now = chrono::Utc::now();
        let model = Model {
            model_id: new.model_id.clone(),
            display_name: new.display_name.clone(),
            provider: new.provider,
            bedrock_model_id: new.bedrock_model_id.clone(),
            model_region: new.model_region.clone(),
            base_url: new.base_url.clone(),
            api_key_env: new.api_key_env.clone(),
            fallback_model_ids: new.fallback_model_ids.clone(),
            input_token_price: new.input_token_price,
            output_token_price: new.output_token_price,
            cache_creation_5m_price: new.cache_creation_5m_price,
            cache_creation_1h_price: new.cache_creation_1h_price,
            cache_read_price: new.cache_read_price,
            context_window: new.context_window,
            max_output_tokens: new.max_output_tokens,
            supports_extended_context: new.supports_extended_context,
            extended_context_window: new.extended_context_window,
            status: ModelStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.begin_write().await?;
        check_fallbacks(self, &mut tx, &model).await?;
        if write_row(&mut tx, &model, true).await? == 0 {
            return Err(StoreError::conflict(format!(
                "model '{}' already exists",
                new.model_id
            )));
        }
        let model = fetch(&mut tx, &new.model_id, "").await?;
        insert_audit(
            &mut tx,
            &AuditEntry::admin(actor, "model.create", "model", model.model_id.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(model)
    }

    async fn update_model(&self, actor: &Actor, id: &ModelId, patch: &ModelUpdate) -> Result<Model> {
        let mut tx = self.begin_write().await?;
        let mut model = fetch(&mut tx, id, self.lock(Lock::Update)).await?;
        apply(&mut model, patch);
        if let Some(problem) = check_provider(model.provider, model.base_url.as_deref())
            .into_iter()
            .next()
        {
            let field = problem.field.unwrap_or_default();
            return Err(StoreError::invalid(
                field.trim_start_matches("body."),
                problem.message,
            ));
        }
        check_fallbacks(self, &mut tx, &model).await?;
        write_row(&mut tx, &model, false).await?;
        let model = fetch(&mut tx, id, "").await?;
        let details = serde_json::to_value(patch).unwrap_or_default();
        insert_audit(
            &mut tx,
            &AuditEntry::admin(actor, "model.update", "model", id.as_str()).details(details),
        )
        .await?;
        tx.commit().await?;
        Ok(model)
    }

    async fn model_usage(&self, id: &ModelId) -> Result<ModelUsage> {
        let mut conn = self.read.acquire().await?;
        fetch(&mut conn, id, "").await?;
        usage(&mut conn, id).await
    }

    async fn delete_model(&self, actor: &Actor, id: &ModelId) -> Result<()> {
        let mut tx = self.begin_write().await?;
        fetch(&mut tx, id, self.lock(Lock::Update)).await?;
        let used = usage(&mut tx, id).await?;
        if !used.is_unused() {
            return Err(StoreError::Conflict {
                message: format!("model '{id}' is in use and cannot be deleted"),
                details: used.details(),
            });
        }
        sqlx::query("DELETE FROM models WHERE model_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        insert_audit(
            &mut tx,
            &AuditEntry::admin(actor, "model.delete", "model", id.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Every fallback must be an existing model other than the model itself; `Lock::KeyShare` keeps
/// it from being deleted before this model names it.
async fn check_fallbacks(store: &SqlStore, conn: &mut sqlx::AnyConnection, model: &Model) -> Result<()> {
    for id in &model.fallback_model_ids {
        if *id == model.model_id {
            return Err(StoreError::invalid(
                "fallback_model_ids",
                "a model cannot be its own fallback",
            ));
        }
        let found: Option<(String,)> = sqlx::query_as(concat(&[
            "SELECT model_id FROM models WHERE model_id = $1",
            store.lock(Lock::KeyShare),
        ]))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if found.is_none() {
            return Err(StoreError::invalid(
                "fallback_model_ids",
                format!("fallback model '{id}' does not exist"),
            ));
        }
    }
    Ok(())
}

/// Applies the fields present in `patch`. The destructuring names every field of `ModelUpdate`,
/// so a field added there without being applied here fails to compile.
fn apply(model: &mut Model, patch: &ModelUpdate) {
    macro_rules! apply_present {
        ($($field:ident),* $(,)?) => {
            let ModelUpdate { $($field),* } = patch.clone();
            $( if let Some(value) = $field { model.$field = value; } )*
        };
    }
    apply_present!(
        display_name,
        provider,
        bedrock_model_id,
        model_region,
        base_url,
        api_key_env,
        fallback_model_ids,
        input_token_price,
        output_token_price,
        cache_creation_5m_price,
        cache_creation_1h_price,
        cache_read_price,
        context_window,
        max_output_tokens,
        supports_extended_context,
        extended_context_window,
        status,
    );
}
