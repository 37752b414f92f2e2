//! Circuit breakers per model target that persist across requests.
//!
//! The seed built its breaker per request, so it never tripped (contract §11, QUIRK). Here one
//! [`CircuitBreakers`] registry lives as long as the process (clone it freely, it is an `Arc`)
//! and holds one breaker per `(provider name, provider model id)`:
//!
//! * **closed**: calls pass; `failure_threshold` (5) consecutive failures open it;
//! * **open**: calls fail at once with [`LlmError::CircuitOpen`] for `open_for` (60 s);
//! * **half-open**: after `open_for`, exactly one trial call at a time may pass; its success
//!   closes the breaker, its failure opens it again for another `open_for`.
//!
//! A call holds a [`Permit`] and reports its verdict with [`Permit::success`] or
//! [`Permit::failure`]. **A permit dropped without a verdict counts as neither**: that happens when
//! the caller gave up (client disconnect, cancellation) or the error said nothing about the
//! target's health (a rejected request), and neither should open a breaker. A dropped half-open
//! trial frees the trial slot, so the next call becomes the trial.
//!
//! Verdicts of permits issued before the breaker last changed state are ignored (each state change
//! starts a new *generation*): a slow call that started while closed does not close a breaker that
//! has opened since, nor re-open one that a trial has just closed.
//!
//! Time is `tokio::time::Instant`, so tests can advance it with `tokio::time::pause()`.
//!
//! Every state change sets the gauge `hangar_llm_circuit_state{provider,model}` (0 closed,
//! 1 half-open, 2 open). An open breaker whose time has run out is reported as half-open by
//! [`CircuitBreakers::state`], although the stored state (and the gauge) only changes with the next
//! call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::LlmError;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open a closed breaker (`0` is treated as `1`).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before it lets one trial through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(60),
        }
    }
}

/// The observable state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    /// The value of the `hangar_llm_circuit_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_in_flight: bool },
}

#[derive(Debug)]
struct Breaker {
    state: State,
    generation: u64,
}

type Key = (String, String);

#[derive(Debug)]
struct Inner {
    config: BreakerConfig,
    breakers: Mutex<HashMap<Key, Breaker>>,
}

/// The process-wide registry of circuit breakers, keyed by `(provider name, provider model id)`.
#[derive(Debug, Clone)]
pub struct CircuitBreakers {
    inner: Arc<Inner>,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

impl CircuitBreakers {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                breakers: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> BreakerConfig {
        self.inner.config
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Breaker>> {
        // The map stays consistent under every panic point (there are none while locked).
        self.inner.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks to call `provider`/`model`. Returns a [`Permit`] to report the outcome on, or
    /// [`LlmError::CircuitOpen`] when the breaker is open (or half-open with its one trial call
    /// already running; `retry_in` is then zero).
    pub fn check(&self, provider: &str, model: &str) -> Result<Permit, LlmError> {
        let now = Instant::now();
        let mut map = self.lock();
        let key = (provider.to_owned(), model.to_owned());
        let breaker = map.entry(key.clone()).or_insert(Breaker {
            state: State::Closed { failures: 0 },
            generation: 0,
        });
        let trial = match breaker.state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => {
                return Err(open_error(provider, model, until - now));
            }
            State::Open { .. } => {
                transition(
                    breaker,
                    &key,
                    State::HalfOpen {
                        trial_in_flight: true,
                    },
                );
                tracing::info!(
                    provider,
                    model,
                    "circuit half-open: letting one trial call through"
                );
                true
            }
            State::HalfOpen {
                trial_in_flight: true,
            } => {
                return Err(open_error(provider, model, Duration::ZERO));
            }
            State::HalfOpen {
                trial_in_flight: false,
            } => {
                breaker.state = State::HalfOpen {
                    trial_in_flight: true,
                };
                true
            }
        };
        Ok(Permit {
            breakers: self.clone(),
            key,
            generation: breaker.generation,
            trial,
            settled: false,
        })
    }

    /// The state of the breaker of `provider`/`model` now (closed when it was never used).
    pub fn state(&self, provider: &str, model: &str) -> CircuitState {
        let map = self.lock();
        map.get(&(provider.to_owned(), model.to_owned()))
            .map_or(CircuitState::Closed, |b| observed(b.state, Instant::now()))
    }

    /// All breakers that were ever used, with their state now, sorted by provider and model.
    pub fn snapshot(&self) -> Vec<(String, String, CircuitState)> {
        let now = Instant::now();
        let map = self.lock();
        let mut all: Vec<_> = map
            .iter()
            .map(|((p, m), b)| (p.clone(), m.clone(), observed(b.state, now)))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    fn settle(&self, permit: &Permit, verdict: Verdict) {
        let mut map = self.lock();
        let Some(breaker) = map.get_mut(&permit.key) else {
            return;
        };
        if breaker.generation != permit.generation {
            return;
        }
        let (provider, model) = (&permit.key.0, &permit.key.1);
        match (breaker.state, verdict) {
            (State::Closed { .. }, Verdict::Success) => {
                breaker.state = State::Closed { failures: 0 };
            }
            (State::Closed { failures }, Verdict::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.inner.config.failure_threshold.max(1) {
                    let until = Instant::now() + self.inner.config.open_for;
                    transition(breaker, &permit.key, State::Open { until });
                    tracing::warn!(
                        provider = provider.as_str(),
                        model = model.as_str(),
                        failures,
                        open_for = ?self.inner.config.open_for,
                        "circuit opened"
                    );
                } else {
                    breaker.state = State::Closed { failures };
                }
            }
            (State::HalfOpen { .. }, Verdict::Success) if permit.trial => {
                transition(breaker, &permit.key, State::Closed { failures: 0 });
                tracing::info!(
                    provider = provider.as_str(),
                    model = model.as_str(),
                    "circuit closed"
                );
            }
            (State::HalfOpen { .. }, Verdict::Failure) if permit.trial => {
                let until = Instant::now() + self.inner.config.open_for;
                transition(breaker, &permit.key, State::Open { until });
                tracing::warn!(
                    provider = provider.as_str(),
                    model = model.as_str(),
                    open_for = ?self.inner.config.open_for,
                    "circuit re-opened: the trial call failed"
                );
            }
            (State::HalfOpen { .. }, Verdict::Neutral) if permit.trial => {
                breaker.state = State::HalfOpen {
                    trial_in_flight: false,
                };
            }
            // Closed + neutral, or a non-trial permit while half-open/open: nothing to learn.
            _ => {}
        }
    }
}

fn open_error(provider: &str, model: &str, retry_in: Duration) -> LlmError {
    LlmError::CircuitOpen {
        provider: provider.to_owned(),
        model: model.to_owned(),
        retry_in,
    }
}

fn observed(state: State, now: Instant) -> CircuitState {
    match state {
        State::Closed { .. } => CircuitState::Closed,
        State::Open { until } if now < until => CircuitState::Open,
        State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
    }
}

/// Changes state, starts a new generation and updates the gauge.
fn transition(breaker: &mut Breaker, key: &Key, state: State) {
    breaker.state = state;
    breaker.generation = breaker.generation.wrapping_add(1);
    let shown = match state {
        State::Closed { .. } => CircuitState::Closed,
        State::Open { .. } => CircuitState::Open,
        State::HalfOpen { .. } => CircuitState::HalfOpen,
    };
    metrics::gauge!("hangar_llm_circuit_state", "provider" => key.0.clone(), "model" => key.1.clone())
        .set(shown.gauge_value());
}

#[derive(Debug, Clone, Copy)]
enum Verdict {
    Success,
    Failure,
    Neutral,
}

/// Leave to make one call through a breaker. Report the outcome with [`Permit::success`] or
/// [`Permit::failure`]; dropping it without either counts as neither (see the module docs).
#[derive(Debug)]
#[must_use = "report the call's outcome with success() or failure()"]
pub struct Permit {
    breakers: CircuitBreakers,
    key: Key,
    generation: u64,
    trial: bool,
    settled: bool,
}

impl Permit {
    /// Whether this is the one trial call of a half-open breaker.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// The call worked: closes a half-open breaker, resets the failure count of a closed one.
    pub fn success(mut self) {
        self.settled = true;
        self.breakers.settle(&self, Verdict::Success);
    }

    /// The call failed in a way that says the target is unhealthy.
    pub fn failure(mut self) {
        self.settled = true;
        self.breakers.settle(&self, Verdict::Failure);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled {
            self.breakers.settle(self, Verdict::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    fn fail_n(breakers: &CircuitBreakers, n: u32) {
        for _ in 0..n {
            breakers.check("p", "m").unwrap().failure();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_consecutive_failures() {
        let breakers = CircuitBreakers::default();
        fail_n(&breakers, 4);
        assert_eq!(breakers.state("p", "m"), CircuitState::Closed);
        breakers.check("p", "m").unwrap().success();
        fail_n(&breakers, 4);
        assert_eq!(
            breakers.state("p", "m"),
            CircuitState::Closed,
            "a success resets the count"
        );
        fail_n(&breakers, 1);
        assert_eq!(breakers.state("p", "m"), CircuitState::Open);
        let err = breakers.check("p", "m").unwrap_err();
        assert_eq!(
            err,
            LlmError::CircuitOpen {
                provider: "p".into(),
                model: "m".into(),
                retry_in: Duration::from_secs(60),
            }
        );
        // Other targets are unaffected.
        assert_eq!(breakers.state("p", "other"), CircuitState::Closed);
        assert!(breakers.check("p", "other").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_allows_one_trial_and_closes_on_success() {
        let breakers = CircuitBreakers::default();
        fail_n(&breakers, 5);
        tokio::time::advance(Duration::from_secs(59)).await;
        match breakers.check("p", "m") {
            Err(LlmError::CircuitOpen { retry_in, .. }) => assert_eq!(retry_in, Duration::from_secs(1)),
            other => panic!("expected CircuitOpen, got {other:?}"),
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(breakers.state("p", "m"), CircuitState::HalfOpen);
        let trial = breakers.check("p", "m").unwrap();
        assert!(trial.is_trial());
        match breakers.check("p", "m") {
            Err(LlmError::CircuitOpen { retry_in, .. }) => assert_eq!(retry_in, Duration::ZERO),
            other => panic!("a second trial must be refused, got {other:?}"),
        }
        trial.success();
        assert_eq!(breakers.state("p", "m"), CircuitState::Closed);
        assert!(!breakers.check("p", "m").unwrap().is_trial());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens_for_another_period() {
        let breakers = CircuitBreakers::default();
        fail_n(&breakers, 5);
        tokio::time::advance(Duration::from_secs(60)).await;
        breakers.check("p", "m").unwrap().failure();
        assert_eq!(breakers.state("p", "m"), CircuitState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(breakers.check("p", "m").is_err());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(breakers.check("p", "m").unwrap().is_trial());
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_permit_counts_as_neither_and_frees_the_trial() {
        let breakers = CircuitBreakers::default();
        fail_n(&breakers, 4);
        drop(breakers.check("p", "m").unwrap());
        assert_eq!(breakers.state("p", "m"), CircuitState::Closed);
        fail_n(&breakers, 1);
        assert_eq!(
            breakers.state("p", "m"),
            CircuitState::Open,
            "the drop did not reset the count"
        );

        tokio::time::advance(Duration::from_secs(60)).await;
        drop(breakers.check("p", "m").unwrap());
        assert_eq!(breakers.state("p", "m"), CircuitState::HalfOpen);
        let trial = breakers.check("p", "m").unwrap();
        assert!(trial.is_trial(), "the slot of the dropped trial is free again");
        trial.success();
        assert_eq!(breakers.state("p", "m"), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_verdicts_are_ignored() {
        let breakers = CircuitBreakers::default();
        let slow_success = breakers.check("p", "m").unwrap();
        let slow_failure = breakers.check("p", "m").unwrap();
        fail_n(&breakers, 5);
        slow_success.success();
        assert_eq!(
            breakers.state("p", "m"),
            CircuitState::Open,
            "an old success does not close it"
        );

        tokio::time::advance(Duration::from_secs(60)).await;
        breakers.check("p", "m").unwrap().success();
        fail_n(&breakers, 4);
        slow_failure.failure();
        assert_eq!(
            breakers.state("p", "m"),
            CircuitState::Closed,
            "an old failure does not count"
        );
        fail_n(&breakers, 1);
        assert_eq!(breakers.state("p", "m"), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn snapshot_lists_every_breaker() {
        let breakers = CircuitBreakers::new(BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(10),
        });
        breakers.check("b", "x").unwrap().success();
        breakers.check("a", "y").unwrap().failure();
        assert_eq!(
            breakers.snapshot(),
            vec![
                ("a".to_owned(), "y".to_owned(), CircuitState::Open),
                ("b".to_owned(), "x".to_owned(), CircuitState::Closed),
            ]
        );
        assert_eq!(CircuitState::HalfOpen.gauge_value(), 1.0);
    }
}
