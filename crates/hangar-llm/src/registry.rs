//! From a model row to the provider that serves it. Providers are built on first use and shared
//! (one HTTP client per endpoint and key), so connection pools and circuit breakers are reused
//! across requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hangar_protocol::{Model, ProviderKind};

use crate::{
    AnthropicConfig, AnthropicProvider, BedrockConfig, BedrockCredentials, BedrockProvider, LlmError,
    ModelProvider, OpenAiConfig, OpenAiProvider, Target,
};

/// Reads an environment variable (injected, so tests never touch the process environment).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where the providers are and how to authenticate.
#[derive(Clone)]
pub struct ProviderSettings {
    /// Default Anthropic key (`ANTHROPIC_API_KEY`); a model may name another variable.
    pub anthropic_api_key: Option<String>,
    pub anthropic_base_url: String,
    pub aws_region: String,
    pub bedrock_endpoint_url: Option<String>,
    /// Explicit Bedrock credentials; `None` uses the standard AWS chain.
    pub bedrock_credentials: Option<BedrockCredentials>,
    /// Longest a model call may take.
    pub timeout: Duration,
    /// Looks up the variables that models name in `api_key_env`.
    pub env: EnvLookup,
}

impl ProviderSettings {
    /// Settings read from the process environment: `ANTHROPIC_API_KEY`, and per-model key
    /// variables at the time a model is first used.
    pub fn from_process_env(
        anthropic_base_url: String,
        aws_region: String,
        bedrock_endpoint_url: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            anthropic_api_key: std::env::var("ANTHROPIC_API_KEY").ok().filter(|k| !k.is_empty()),
            anthropic_base_url,
            aws_region,
            bedrock_endpoint_url,
            bedrock_credentials: None,
            timeout,
            env: Arc::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
        }
    }
}

enum Source {
    Configured(ProviderSettings),
    /// Every model is served by this provider (tests, demos).
    Fixed(Arc<dyn ModelProvider>),
}

pub struct Registry {
    source: Source,
    built: Mutex<HashMap<String, Arc<dyn ModelProvider>>>,
    bedrock: tokio::sync::OnceCell<Arc<dyn ModelProvider>>,
}

impl Registry {
    pub fn new(settings: ProviderSettings) -> Self {
        Self {
            source: Source::Configured(settings),
            built: Mutex::default(),
            bedrock: tokio::sync::OnceCell::new(),
        }
    }

    /// A registry that answers every model with `provider`.
    pub fn fixed(provider: Arc<dyn ModelProvider>) -> Self {
        Self {
            source: Source::Fixed(provider),
            built: Mutex::default(),
            bedrock: tokio::sync::OnceCell::new(),
        }
    }

    /// The target that serves `model`, or a `Config` error saying what is missing.
    pub async fn target(&self, model: &Model) -> Result<Target, LlmError> {
        let provider = match &self.source {
            Source::Fixed(provider) => provider.clone(),
            Source::Configured(settings) => self.provider(settings, model).await?,
        };
        Ok(Target::new(
            model.model_id.as_str(),
            provider,
            model.bedrock_model_id.clone(),
        ))
    }

    fn cached(
        &self,
        key: String,
        build: impl FnOnce() -> Result<Arc<dyn ModelProvider>, LlmError>,
    ) -> Result<Arc<dyn ModelProvider>, LlmError> {
        let mut built = self
            .built
            .lock()
            .map_err(|_| LlmError::Config("provider registry poisoned".into()))?;
        if let Some(provider) = built.get(&key) {
            return Ok(provider.clone());
        }
        let provider = build()?;
        built.insert(key, provider.clone());
        Ok(provider)
    }

    fn key_from(settings: &ProviderSettings, model: &Model) -> Result<Option<String>, LlmError> {
        match &model.api_key_env {
            Some(name) => (settings.env)(name).map(Some).ok_or_else(|| {
                LlmError::Config(format!("{name} (named by model '{}') is not set", model.model_id))
            }),
            None => Ok(None),
        }
    }

    async fn provider(
        &self,
        settings: &ProviderSettings,
        model: &Model,
    ) -> Result<Arc<dyn ModelProvider>, LlmError> {
        match model.provider {
            ProviderKind::Anthropic => {
                let key = Self::key_from(settings, model)?
                    .or_else(|| settings.anthropic_api_key.clone())
                    .ok_or_else(|| {
                        LlmError::Config(format!(
                            "ANTHROPIC_API_KEY is not set (needed by model '{}')",
                            model.model_id
                        ))
                    })?;
                let base_url = model
                    .base_url
                    .clone()
                    .unwrap_or_else(|| settings.anthropic_base_url.clone());
                let cache_key = format!(
                    "anthropic {base_url} {}",
                    model.api_key_env.as_deref().unwrap_or("ANTHROPIC_API_KEY")
                );
                self.cached(cache_key, || {
                    let config = AnthropicConfig {
                        base_url,
                        timeout: settings.timeout,
                        ..AnthropicConfig::new(key)
                    };
                    Ok(Arc::new(AnthropicProvider::new(config)?))
                })
            }
            ProviderKind::Openai => {
                let base_url = model.base_url.clone().ok_or_else(|| {
                    LlmError::Config(format!(
                        "model '{}' uses provider openai but has no base_url",
                        model.model_id
                    ))
                })?;
                let key = Self::key_from(settings, model)?;
                let cache_key = format!(
                    "openai {base_url} {}",
                    model.api_key_env.as_deref().unwrap_or("-")
                );
                self.cached(cache_key, || {
                    let config = OpenAiConfig {
                        base_url,
                        api_key: key,
                        timeout: settings.timeout,
                    };
                    Ok(Arc::new(OpenAiProvider::new(config)?))
                })
            }
            ProviderKind::Bedrock => {
                let provider = self
                    .bedrock
                    .get_or_try_init(|| async {
                        let config = BedrockConfig {
                            region: settings.aws_region.clone(),
                            endpoint_url: settings.bedrock_endpoint_url.clone(),
                            credentials: settings.bedrock_credentials.clone(),
                            timeout: settings.timeout,
                        };
                        let provider: Arc<dyn ModelProvider> = Arc::new(BedrockProvider::new(config).await?);
                        Ok::<_, LlmError>(provider)
                    })
                    .await?;
                Ok(provider.clone())
            }
        }
    }
}
