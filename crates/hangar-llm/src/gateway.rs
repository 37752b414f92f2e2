//! The one way the rest of Hangar calls a model: retries, circuit breakers and the fallback
//! chain around [`ModelProvider::stream`].
//!
//! [`Gateway::stream`] walks a model's fallback chain of [`Target`]s in order. For each target it
//! asks the target's breaker for a permit (an open breaker skips the target without calling it),
//! calls the provider with `request.model` set to the target's provider model id, and retries
//! [retryable](LlmError::is_retryable) errors per the [`RetryPolicy`], waiting at least the
//! provider's `retry-after`. An error that retrying did not cure moves on to the next target when
//! it [allows fallback](LlmError::allows_fallback); any other error is returned at once.
//!
//! Once a stream is handed out it is never retried or replaced silently, because output may
//! already have reached the user: a mid-stream `Err` item is passed through unchanged (and counts
//! as a breaker failure when it [trips the breaker](LlmError::trips_breaker)); a stream that ends
//! normally counts as a success; a stream dropped early counts as neither.
//!
//! Every attempt is logged (`tracing`, info on success, warn on failure) and counted:
//! `hangar_llm_attempts_total{provider,model,outcome}` (outcome `ok` or the error kind;
//! `circuit_open` means the provider was not called), `hangar_llm_fallbacks_total{from,to}`,
//! `hangar_llm_stream_errors_total{provider,model,kind}` and the histogram
//! `hangar_llm_time_to_first_event_seconds{provider,model}`, measured from the start of the
//! gateway call (retries and backoff included, as the user experiences it). `model` labels are
//! provider model ids, as on the breaker gauge.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    CircuitBreakers, EventStream, LlmError, ModelProvider, ModelRequest, Permit, RetryPolicy, StreamEvent,
};

/// One entry of a model's fallback chain.
#[derive(Clone)]
pub struct Target {
    /// Hangar's id of the model row this target belongs to.
    pub model_id: String,
    pub provider: Arc<dyn ModelProvider>,
    /// The provider's model id, sent as `ModelRequest::model`.
    pub request_model: String,
}

impl Target {
    pub fn new(
        model_id: impl Into<String>,
        provider: Arc<dyn ModelProvider>,
        request_model: impl Into<String>,
    ) -> Self {
        Self {
            model_id: model_id.into(),
            provider,
            request_model: request_model.into(),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("model_id", &self.model_id)
            .field("provider", &self.provider.name())
            .field("request_model", &self.request_model)
            .finish()
    }
}

/// What happened to one call (or skipped call) of one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub model_id: String,
    pub provider: String,
    pub request_model: String,
    /// 1 for the first call of this target, 2 for its first retry, ...
    pub number: u32,
    /// `ok`, or the [kind](LlmError::kind) of the error; `circuit_open` means the provider was not
    /// called.
    pub outcome: &'static str,
    /// The backoff waited before this call (zero for a target's first call).
    pub delay_before: Duration,
}

/// A started model call: which target answered, every attempt it took, and the events.
pub struct GatewayStream {
    /// Hangar's model id of the target that answered.
    pub model_id: String,
    pub provider: String,
    pub request_model: String,
    /// All attempts of the call, the successful last one included.
    pub attempts: Vec<Attempt>,
    pub events: EventStream,
}

impl fmt::Debug for GatewayStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayStream")
            .field("model_id", &self.model_id)
            .field("provider", &self.provider)
            .field("request_model", &self.request_model)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// A failed model call with the attempts that led to the failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}")]
pub struct GatewayFailure {
    pub error: LlmError,
    pub attempts: Vec<Attempt>,
}

/// Retries, breakers and fallback around providers. Cheap to clone; share one per process so the
/// breakers persist across requests.
#[derive(Debug, Clone)]
pub struct Gateway {
    retry: RetryPolicy,
    breakers: CircuitBreakers,
    rng: Arc<Mutex<StdRng>>,
}

impl Default for Gateway {
    fn default() -> Self {
        Self::new(RetryPolicy::default(), CircuitBreakers::default())
    }
}

impl Gateway {
    pub fn new(retry: RetryPolicy, breakers: CircuitBreakers) -> Self {
        Self {
            retry,
            breakers,
            rng: Arc::new(Mutex::new(StdRng::from_rng(&mut rand::rng()))),
        }
    }

    /// Makes the backoff jitter reproducible (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
        self
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    pub fn breakers(&self) -> &CircuitBreakers {
        &self.breakers
    }

    /// Starts `request` on the first target of `chain` that answers (see the module docs).
    pub async fn stream(
        &self,
        chain: &[Target],
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<GatewayStream, LlmError> {
        self.stream_detailed(chain, request, cancel)
            .await
            .map_err(|failure| failure.error)
    }

    /// Like [`Gateway::stream`], but a failure also carries the attempts made.
    pub async fn stream_detailed(
        &self,
        chain: &[Target],
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<GatewayStream, GatewayFailure> {
        let started = Instant::now();
        let mut attempts = Vec::new();
        let mut last_error = LlmError::Config("the model has no provider to call".into());
        for (index, target) in chain.iter().enumerate() {
            if index > 0 {
                let from = &chain[index - 1].request_model;
                tracing::warn!(
                    from = from.as_str(),
                    to = target.request_model.as_str(),
                    model_id = target.model_id.as_str(),
                    error = last_error.kind(),
                    "falling back to the next model"
                );
                metrics::counter!(
                    "hangar_llm_fallbacks_total",
                    "from" => from.clone(),
                    "to" => target.request_model.clone()
                )
                .increment(1);
            }
            match self.call_target(target, request, &cancel, &mut attempts).await {
                Ok((events, permit)) => {
                    let provider = target.provider.name().to_owned();
                    let events = Box::pin(Observed {
                        inner: events,
                        permit: Some(permit),
                        provider: provider.clone(),
                        model: target.request_model.clone(),
                        started,
                        seen_first: false,
                        done: false,
                    });
                    return Ok(GatewayStream {
                        model_id: target.model_id.clone(),
                        provider,
                        request_model: target.request_model.clone(),
                        attempts,
                        events,
                    });
                }
                Err(error) if error.allows_fallback() => last_error = error,
                Err(error) => return Err(GatewayFailure { error, attempts }),
            }
        }
        Err(GatewayFailure {
            error: last_error,
            attempts,
        })
    }

    /// Calls one target with retries. Returns the stream and the breaker permit of the call that
    /// produced it, or the error that retrying did not cure.
    async fn call_target(
        &self,
        target: &Target,
        request: &ModelRequest,
        cancel: &CancellationToken,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(EventStream, Permit), LlmError> {
        let provider = target.provider.name();
        let model = target.request_model.as_str();
        let mut request = request.clone();
        request.model = target.request_model.clone();
        let mut delay_before = Duration::ZERO;
        let mut number = 0u32;
        loop {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            number += 1;
            let permit = match self.breakers.check(provider, model) {
                Ok(permit) => permit,
                Err(error) => {
                    record(attempts, target, number, &error, delay_before);
                    return Err(error);
                }
            };
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => Err(LlmError::Cancelled),
                result = target.provider.stream(&request, cancel.clone()) => result,
            };
            let error = match result {
                Ok(events) => {
                    tracing::info!(
                        provider,
                        model,
                        model_id = target.model_id.as_str(),
                        attempt = number,
                        delay_before = ?delay_before,
                        "model call started"
                    );
                    metrics::counter!(
                        "hangar_llm_attempts_total",
                        "provider" => provider.to_owned(),
                        "model" => model.to_owned(),
                        "outcome" => "ok"
                    )
                    .increment(1);
                    attempts.push(Attempt {
                        model_id: target.model_id.clone(),
                        provider: provider.to_owned(),
                        request_model: model.to_owned(),
                        number,
                        outcome: "ok",
                        delay_before,
                    });
                    return Ok((events, permit));
                }
                Err(error) => error,
            };
            if error.trips_breaker() {
                permit.failure();
            } else {
                drop(permit);
            }
            record(attempts, target, number, &error, delay_before);
            if error == LlmError::Cancelled || !error.is_retryable() || number >= self.retry.attempts() {
                return Err(error);
            }
            delay_before = {
                let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
                self.retry.delay(number - 1, error.retry_after(), &mut *rng)
            };
            tracing::info!(
                provider,
                model,
                attempt = number + 1,
                delay = ?delay_before,
                retry_after = ?error.retry_after(),
                "retrying the model call after a backoff"
            );
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(LlmError::Cancelled),
                () = tokio::time::sleep(delay_before) => {}
            }
        }
    }
}

/// Logs, counts and lists a failed (or skipped) attempt.
fn record(
    attempts: &mut Vec<Attempt>,
    target: &Target,
    number: u32,
    error: &LlmError,
    delay_before: Duration,
) {
    let provider = target.provider.name();
    let model = target.request_model.as_str();
    tracing::warn!(
        provider,
        model,
        model_id = target.model_id.as_str(),
        attempt = number,
        kind = error.kind(),
        delay_before = ?delay_before,
        %error,
        "model call failed"
    );
    metrics::counter!(
        "hangar_llm_attempts_total",
        "provider" => provider.to_owned(),
        "model" => model.to_owned(),
        "outcome" => error.kind()
    )
    .increment(1);
    attempts.push(Attempt {
        model_id: target.model_id.clone(),
        provider: provider.to_owned(),
        request_model: model.to_owned(),
        number,
        outcome: error.kind(),
        delay_before,
    });
}

/// The handed-out stream: passes every item through unchanged, reports the outcome to the
/// breaker, ends after the first `Err` item, and measures the time to the first event.
struct Observed {
    inner: EventStream,
    permit: Option<Permit>,
    provider: String,
    model: String,
    started: Instant,
    seen_first: bool,
    done: bool,
}

impl Stream for Observed {
    type Item = Result<StreamEvent, LlmError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(event))) => {
                if !this.seen_first {
                    this.seen_first = true;
                    metrics::histogram!(
                        "hangar_llm_time_to_first_event_seconds",
                        "provider" => this.provider.clone(),
                        "model" => this.model.clone()
                    )
                    .record(this.started.elapsed().as_secs_f64());
                }
                Poll::Ready(Some(Ok(event)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.done = true;
                if let Some(permit) = this.permit.take()
                    && error.trips_breaker()
                {
                    permit.failure();
                }
                tracing::warn!(
                    provider = this.provider.as_str(),
                    model = this.model.as_str(),
                    kind = error.kind(),
                    %error,
                    "model stream failed mid-way; not retried"
                );
                metrics::counter!(
                    "hangar_llm_stream_errors_total",
                    "provider" => this.provider.clone(),
                    "model" => this.model.clone(),
                    "kind" => error.kind()
                )
                .increment(1);
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.done = true;
                if let Some(permit) = this.permit.take() {
                    permit.success();
                }
                Poll::Ready(None)
            }
        }
    }
}
