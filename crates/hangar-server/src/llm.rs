//! The server's view of the model layer: a model row and its fallback chain become gateway
//! targets; a call returns which model row answered, so its prices bill the call (one usage row
//! per call, [`usage_row`]).

use std::time::Duration;

use hangar_llm::{
    BreakerConfig, CircuitBreakers, EventStream, Gateway, LlmError, ModelRequest, ProviderSettings, Registry,
    RetryPolicy, Target, Usage,
};
use hangar_protocol::{Model, ModelId, ModelStatus, Usd};
use hangar_store::{NewUsage, Store};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::state::AppState;

/// A model and the fallbacks that can serve, in order, with their providers.
#[derive(Clone)]
pub struct Chain {
    models: Vec<Model>,
    targets: Vec<Target>,
}

impl Chain {
    /// The models that may answer, primary first.
    pub fn models(&self) -> &[Model] {
        &self.models
    }
}

/// A started call: the model row that is answering, and its events.
pub struct ChainStream {
    pub model: Model,
    pub events: EventStream,
}

pub struct Llm {
    registry: Registry,
    gateway: Gateway,
    title_model: Option<ModelId>,
}

impl Llm {
    pub fn new(registry: Registry, gateway: Gateway, title_model: Option<ModelId>) -> Self {
        Self {
            registry,
            gateway,
            title_model,
        }
    }

    /// The retry policy and breakers from settings around `registry`.
    pub fn with_registry(settings: &Settings, registry: Registry) -> Self {
        let secs = Duration::from_secs_f64;
        let retry = RetryPolicy {
            max_attempts: settings.bedrock_max_retries,
            base_delay: secs(settings.bedrock_retry_base_delay),
            max_delay: secs(settings.bedrock_retry_max_delay),
            ..RetryPolicy::default()
        };
        let gateway = Gateway::new(retry, CircuitBreakers::new(BreakerConfig::default()));
        let title_model = settings.title_model_id.as_deref().and_then(|id| id.parse().ok());
        Self::new(registry, gateway, title_model)
    }

    /// Providers configured from settings and the process environment (`ANTHROPIC_API_KEY`, the
    /// AWS credential chain, per-model key variables).
    pub fn from_settings(settings: &Settings) -> Self {
        let providers = ProviderSettings::from_process_env(
            settings.anthropic_base_url.clone(),
            settings.aws_region.clone(),
            settings.aws_endpoint_url_bedrock_runtime.clone(),
            Duration::from_secs_f64(settings.model_request_timeout),
        );
        Self::with_registry(settings, Registry::new(providers))
    }

    /// `primary` followed by its fallbacks that exist, are active and have a configured
    /// provider. An unconfigured primary is an error (with what is missing); an unusable fallback
    /// is skipped with a warning.
    pub async fn chain(&self, store: &dyn Store, primary: Model) -> Result<Chain, LlmError> {
        let mut models = Vec::new();
        let mut targets = Vec::new();
        targets.push(self.registry.target(&primary).await?);
        let fallback_ids = primary.fallback_model_ids.clone();
        models.push(primary);
        for id in fallback_ids {
            let model = match store.get_model(&id).await {
                Ok(model) if model.status == ModelStatus::Active => model,
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(model_id = %id, error = %err, "fallback model unavailable; skipped");
                    continue;
                }
            };
            match self.registry.target(&model).await {
                Ok(target) => {
                    targets.push(target);
                    models.push(model);
                }
                Err(err) => {
                    tracing::warn!(model_id = %id, error = %err, "fallback model not configured; skipped")
                }
            }
        }
        Ok(Chain { models, targets })
    }

    /// Streams one call through the chain with retries, circuit breakers and fallback.
    pub async fn stream(
        &self,
        chain: &Chain,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<ChainStream, LlmError> {
        let started = self.gateway.stream(&chain.targets, request, cancel).await?;
        let model = chain
            .models
            .iter()
            .find(|m| m.model_id.as_str() == started.model_id)
            .cloned()
            .ok_or_else(|| {
                LlmError::Config(format!(
                    "gateway answered with unknown model {}",
                    started.model_id
                ))
            })?;
        Ok(ChainStream {
            model,
            events: started.events,
        })
    }

    /// The chain of the configured title model, if there is one and it can serve.
    pub async fn title_chain(&self, state: &AppState) -> Option<Chain> {
        let id = self.title_model.as_ref()?;
        let model = state
            .store
            .get_model(id)
            .await
            .ok()
            .filter(|m| m.status == ModelStatus::Active)?;
        self.chain(&*state.store, model).await.ok()
    }
}

/// A token count as the store keeps it (`i64`), saturating.
pub(crate) fn store_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The token counts and cost of one model call as a usage row; the caller says whose call it was.
pub(crate) fn usage_row(usage: &Usage, cost: Usd) -> NewUsage {
    NewUsage {
        input_tokens: store_count(usage.input_tokens),
        output_tokens: store_count(usage.output_tokens),
        cache_creation_5m_tokens: store_count(usage.cache_write_5m_tokens),
        cache_creation_1h_tokens: store_count(usage.cache_write_1h_tokens),
        cache_read_tokens: store_count(usage.cache_read_tokens),
        cost,
        ..NewUsage::default()
    }
}
