//! Admin subcommands. Input is turned into the same protocol types the HTTP API accepts, checked
//! by the same `validate`, and stored through the same `Store` methods; output is the API's JSON.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Subcommand;
use hangar_protocol::{
    ApiKeyCreate, ErrorDetail, ModelCreate, ModelId, ModelStatus, ModelUpdate, TenantCreate, TenantId,
    TenantStatus, TenantUpdate,
};
use hangar_store::{Actor, Store, TenantFilter};
use serde::Serialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Show one tenant.
    Get { tenant_id: String },
    /// Create a tenant.
    Create {
        tenant_id: String,
        #[arg(long)]
        system_prompt: Option<String>,
        /// Default model for new conversations.
        #[arg(long)]
        model: Option<String>,
        /// What its agents may use, as JSON:
        /// `{"allowed_tools": [..] | null, "denied_tools": [..], "egress_domains": [..]}`.
        #[arg(long)]
        policy: Option<String>,
    },
    /// Change a tenant.
    Update {
        tenant_id: String,
        #[arg(long, conflicts_with = "clear_system_prompt")]
        system_prompt: Option<String>,
        #[arg(long)]
        clear_system_prompt: bool,
        #[arg(long, conflicts_with = "clear_model")]
        model: Option<String>,
        #[arg(long)]
        clear_model: bool,
        /// active or inactive.
        #[arg(long)]
        status: Option<String>,
        /// Replaces the policy (JSON, as for `create`).
        #[arg(long)]
        policy: Option<String>,
    },
    /// Delete a tenant (refused while it owns data).
    Delete { tenant_id: String },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List models.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one model.
    Get { model_id: String },
    /// Add a model. Prices are USD per 1,000 tokens.
    Create {
        model_id: String,
        #[arg(long)]
        display_name: String,
        /// The provider's id for the model (stored as bedrock_model_id).
        #[arg(long)]
        provider_model_id: String,
        #[arg(long)]
        region: Option<String>,
        #[arg(long, default_value = "0")]
        input_price: String,
        #[arg(long, default_value = "0")]
        output_price: String,
        #[arg(long, default_value = "0")]
        cache_write_5m_price: String,
        #[arg(long, default_value = "0")]
        cache_write_1h_price: String,
        #[arg(long, default_value = "0")]
        cache_read_price: String,
        #[arg(long, default_value_t = 200_000)]
        context_window: i64,
        #[arg(long, default_value_t = 64_000)]
        max_output_tokens: i64,
    },
    /// Change a model with a JSON patch in the API's shape, e.g. '{"input_token_price":"3"}'.
    Update { model_id: String, patch: String },
    /// Set a model's status (active or deprecated).
    Status { model_id: String, status: String },
    /// Delete a model (refused while anything refers to it).
    Delete { model_id: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key for a tenant and print it (the only time it is shown).
    Create {
        tenant_id: String,
        #[arg(long)]
        name: Option<String>,
        /// RFC 3339 instant after which the key stops working.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List a tenant's keys.
    List { tenant_id: String },
    /// Revoke a key.
    Revoke { tenant_id: String, key_id: String },
}

fn print(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// Deserialises `value` as the API would, so the same validation applies.
fn parse<T: serde::de::DeserializeOwned>(value: Value) -> anyhow::Result<T> {
    serde_json::from_value(value).context("invalid input")
}

/// `--policy`: a JSON object (checked when the tenant body is parsed).
fn policy_json(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).context("--policy is not valid JSON")
}

fn check(violations: Vec<ErrorDetail>) -> anyhow::Result<()> {
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations
        .into_iter()
        .map(|v| {
            format!(
                "{}: {}",
                v.field.unwrap_or_default().trim_start_matches("body."),
                v.message
            )
        })
        .collect();
    bail!("invalid input:\n  {}", lines.join("\n  "))
}

fn tenant_id(raw: String) -> anyhow::Result<TenantId> {
    Ok(raw.parse()?)
}

fn model_id(raw: String) -> anyhow::Result<ModelId> {
    Ok(raw.parse()?)
}

pub async fn tenants(store: &dyn Store, cmd: TenantCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        TenantCommand::List {
            status,
            limit,
            offset,
        } => {
            let status = status
                .map(|s| TenantStatus::parse(&s).with_context(|| format!("unknown status {s:?}")))
                .transpose()?;
            print(
                &store
                    .list_tenants(&TenantFilter {
                        status,
                        limit: limit.clamp(1, 1000),
                        offset: offset.max(0),
                    })
                    .await?,
            )
        }
        TenantCommand::Get { tenant_id: id } => print(&store.get_tenant(&tenant_id(id)?).await?),
        TenantCommand::Create {
            tenant_id,
            system_prompt,
            model,
            policy,
        } => {
            let mut new =
                json!({ "tenant_id": tenant_id, "system_prompt": system_prompt, "model_id": model });
            if let Some(policy) = policy {
                new["policy"] = policy_json(&policy)?;
            }
            let new: TenantCreate = parse(new)?;
            check(new.validate())?;
            print(&store.create_tenant(&actor, &new).await?)
        }
        TenantCommand::Update {
            tenant_id: id,
            system_prompt,
            clear_system_prompt,
            model,
            clear_model,
            status,
            policy,
        } => {
            let mut patch = Map::new();
            if clear_system_prompt {
                patch.insert("system_prompt".into(), Value::Null);
            } else if let Some(prompt) = system_prompt {
                patch.insert("system_prompt".into(), prompt.into());
            }
            if clear_model {
                patch.insert("model_id".into(), Value::Null);
            } else if let Some(model) = model {
                patch.insert("model_id".into(), model.into());
            }
            if let Some(status) = status {
                patch.insert("status".into(), status.into());
            }
            if let Some(policy) = policy {
                patch.insert("policy".into(), policy_json(&policy)?);
            }
            let patch: TenantUpdate = parse(Value::Object(patch))?;
            check(patch.validate())?;
            print(&store.update_tenant(&actor, &tenant_id(id)?, &patch).await?)
        }
        TenantCommand::Delete { tenant_id: id } => {
            let id = tenant_id(id)?;
            store.delete_tenant(&actor, &id).await?;
            print(&json!({ "deleted": id }))
        }
    }
}

pub async fn models(store: &dyn Store, cmd: ModelCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        ModelCommand::List { status } => {
            let status = status
                .map(|s| ModelStatus::parse(&s).with_context(|| format!("unknown status {s:?}")))
                .transpose()?;
            print(&store.list_models(status).await?)
        }
        ModelCommand::Get { model_id: id } => print(&store.get_model(&model_id(id)?).await?),
        ModelCommand::Create {
            model_id,
            display_name,
            provider_model_id,
            region,
            input_price,
            output_price,
            cache_write_5m_price,
            cache_write_1h_price,
            cache_read_price,
            context_window,
            max_output_tokens,
        } => {
            let new: ModelCreate = parse(json!({
                "model_id": model_id,
                "display_name": display_name,
                "bedrock_model_id": provider_model_id,
                "model_region": region,
                "input_token_price": input_price,
                "output_token_price": output_price,
                "cache_creation_5m_price": cache_write_5m_price,
                "cache_creation_1h_price": cache_write_1h_price,
                "cache_read_price": cache_read_price,
                "context_window": context_window,
                "max_output_tokens": max_output_tokens,
            }))?;
            check(new.validate())?;
            print(&store.create_model(&actor, &new).await?)
        }
        ModelCommand::Update { model_id: id, patch } => {
            let patch: ModelUpdate = parse(serde_json::from_str(&patch).context("the patch is not JSON")?)?;
            check(patch.validate())?;
            print(&store.update_model(&actor, &model_id(id)?, &patch).await?)
        }
        ModelCommand::Status { model_id: id, status } => {
            let patch: ModelUpdate = parse(json!({ "status": status }))?;
            print(&store.update_model(&actor, &model_id(id)?, &patch).await?)
        }
        ModelCommand::Delete { model_id: id } => {
            let id = model_id(id)?;
            store.delete_model(&actor, &id).await?;
            print(&json!({ "deleted": id }))
        }
    }
}

pub async fn keys(store: &dyn Store, cmd: KeyCommand) -> anyhow::Result<()> {
    let actor = Actor::cli();
    match cmd {
        KeyCommand::Create {
            tenant_id: id,
            name,
            expires_at,
        } => {
            let new: ApiKeyCreate = parse(json!({ "name": name, "expires_at": expires_at }))?;
            check(new.validate(chrono::Utc::now()))?;
            print(&store.create_api_key(&actor, &tenant_id(id)?, &new).await?)
        }
        KeyCommand::List { tenant_id: id } => {
            let id = tenant_id(id)?;
            store.get_tenant(&id).await?;
            print(&store.list_api_keys(&id).await?)
        }
        KeyCommand::Revoke {
            tenant_id: id,
            key_id,
        } => {
            let revoked = store
                .revoke_api_key(&actor, &tenant_id(id)?, &key_id.parse()?)
                .await?;
            print(&revoked)
        }
    }
}
