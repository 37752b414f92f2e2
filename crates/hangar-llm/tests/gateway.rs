//! The gateway against scripted providers: retries with backoff and `retry-after`, the fallback
//! chain, circuit breakers that persist across calls, mid-stream errors and cancellation. Every
//! test runs on tokio's paused clock, so no test sleeps for real.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hangar_llm::{
    Attempt, BreakerConfig, CircuitBreakers, CircuitState, Gateway, GatewayFailure, LlmError, Message,
    ModelRequest, RetryPolicy, ScriptItem, ScriptedProvider, Step, StreamEvent, Target, Usage,
    text_reply_events,
};
use pretty_assertions::assert_eq;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SEED: u64 = 2024;

fn request() -> ModelRequest {
    ModelRequest {
        model: "caller-set-this".into(),
        system: vec![],
        messages: vec![Message::user("hi")],
        tools: vec![],
        max_tokens: 256,
        temperature: None,
        stop_sequences: vec![],
        thinking_budget: None,
    }
}

fn usage() -> Usage {
    Usage {
        input_tokens: 12,
        output_tokens: 3,
        ..Usage::default()
    }
}

fn reply_items(text: &str) -> Vec<ScriptItem> {
    text_reply_events(text, usage()).into_iter().map(Ok).collect()
}

fn overloaded() -> LlmError {
    LlmError::Overloaded {
        retry_after: None,
        message: "busy".into(),
    }
}

fn server_error() -> LlmError {
    LlmError::Server {
        status: 500,
        message: "boom".into(),
    }
}

fn provider(name: &str, steps: impl IntoIterator<Item = Step>) -> Arc<ScriptedProvider> {
    Arc::new(ScriptedProvider::new(name, steps))
}

fn target(model_id: &str, provider: &Arc<ScriptedProvider>, request_model: &str) -> Target {
    Target::new(model_id, provider.clone(), request_model)
}

fn attempt(target: &Target, number: u32, outcome: &'static str, delay_before: Duration) -> Attempt {
    Attempt {
        model_id: target.model_id.clone(),
        provider: target.provider.name().to_owned(),
        request_model: target.request_model.clone(),
        number,
        outcome,
        delay_before,
    }
}

fn failure(result: Result<hangar_llm::GatewayStream, GatewayFailure>) -> GatewayFailure {
    match result {
        Ok(stream) => panic!("expected a failure, got {stream:?}"),
        Err(failure) => failure,
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_on_429() {
    let a = provider(
        "anthropic",
        [
            Step::Fail(LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(7)),
                message: "slow down".into(),
            }),
            Step::text_reply("hello", usage()),
        ],
    );
    let chain = [target("sonnet", &a, "claude-sonnet")];
    let gateway = Gateway::default().with_seed(SEED);
    let start = Instant::now();
    let stream = gateway
        .stream(&chain, &request(), CancellationToken::new())
        .await
        .unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_secs(7), "waited only {waited:?}");
    // The first jitter window is 1 s, so the retry-after alone decides the wait.
    assert_eq!(waited, Duration::from_secs(7));
    assert_eq!(
        stream.attempts,
        vec![
            attempt(&chain[0], 1, "rate_limited", Duration::ZERO),
            attempt(&chain[0], 2, "ok", Duration::from_secs(7)),
        ]
    );
    assert_eq!(stream.events.collect::<Vec<_>>().await, reply_items("hello"));
    assert_eq!(a.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_fall_back_to_the_next_target() {
    let a = provider(
        "bedrock",
        [
            Step::Fail(overloaded()),
            Step::Fail(server_error()),
            Step::Fail(overloaded()),
        ],
    );
    let b = provider("openai", [Step::text_reply("from b", usage())]);
    let chain = [
        target("sonnet", &a, "claude-sonnet"),
        target("nova", &b, "nova-pro"),
    ];
    let gateway = Gateway::default().with_seed(SEED);

    // The gateway draws its jitter from one seeded generator, in this order.
    let policy = RetryPolicy::default();
    let mut rng = StdRng::seed_from_u64(SEED);
    let first_delay = policy.delay(0, None, &mut rng);
    let second_delay = policy.delay(1, None, &mut rng);

    let start = Instant::now();
    let stream = gateway
        .stream(&chain, &request(), CancellationToken::new())
        .await
        .unwrap();
    // tokio timers have millisecond resolution and round up.
    let waited = start.elapsed();
    let backoff = first_delay + second_delay;
    assert!(
        waited >= backoff && waited <= backoff + Duration::from_millis(2),
        "{waited:?} vs {backoff:?}"
    );
    assert_eq!(stream.model_id, "nova");
    assert_eq!(stream.provider, "openai");
    assert_eq!(stream.request_model, "nova-pro");
    assert_eq!(
        stream.attempts,
        vec![
            attempt(&chain[0], 1, "overloaded", Duration::ZERO),
            attempt(&chain[0], 2, "server_error", first_delay),
            attempt(&chain[0], 3, "overloaded", second_delay),
            attempt(&chain[1], 1, "ok", Duration::ZERO),
        ]
    );
    assert_eq!(stream.events.collect::<Vec<_>>().await, reply_items("from b"));

    // Each target got the request with its own provider model id, and nothing else changed.
    let for_a = ModelRequest {
        model: "claude-sonnet".into(),
        ..request()
    };
    let for_b = ModelRequest {
        model: "nova-pro".into(),
        ..request()
    };
    assert_eq!(a.requests(), vec![for_a.clone(), for_a.clone(), for_a]);
    assert_eq!(b.requests(), vec![for_b]);
}

#[tokio::test(start_paused = true)]
async fn invalid_request_is_returned_at_once_without_fallback() {
    let rejected = LlmError::InvalidRequest {
        status: 400,
        message: "max_tokens too large".into(),
    };
    let a = provider("anthropic", [Step::Fail(rejected.clone())]);
    let b = provider("openai", [Step::text_reply("unused", usage())]);
    let chain = [
        target("sonnet", &a, "claude-sonnet"),
        target("nova", &b, "nova-pro"),
    ];
    let gateway = Gateway::default();
    let start = Instant::now();
    let failed = failure(
        gateway
            .stream_detailed(&chain, &request(), CancellationToken::new())
            .await,
    );
    assert_eq!(
        failed,
        GatewayFailure {
            error: rejected,
            attempts: vec![attempt(&chain[0], 1, "invalid_request", Duration::ZERO)],
        }
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!((a.calls(), b.calls()), (1, 0));
    // A rejected request says nothing about the target's health.
    assert_eq!(
        gateway.breakers().state("anthropic", "claude-sonnet"),
        CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn auth_errors_fall_back_without_retrying() {
    let a = provider(
        "anthropic",
        [Step::Fail(LlmError::Auth {
            status: 401,
            message: "bad key".into(),
        })],
    );
    let b = provider("openai", [Step::text_reply("b", usage())]);
    let chain = [
        target("sonnet", &a, "claude-sonnet"),
        target("nova", &b, "nova-pro"),
    ];
    let stream = Gateway::default()
        .stream(&chain, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        stream.attempts,
        vec![
            attempt(&chain[0], 1, "auth_error", Duration::ZERO),
            attempt(&chain[1], 1, "ok", Duration::ZERO),
        ]
    );
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn last_error_is_returned_when_every_target_fails() {
    let a = Arc::new(ScriptedProvider::new("anthropic", []).with_default(Step::Fail(overloaded())));
    let b = provider("openai", [Step::Fail(LlmError::Connection("refused".into()))]);
    let chain = [
        target("sonnet", &a, "claude-sonnet"),
        target("nova", &b, "nova-pro"),
    ];
    let gateway = Gateway::new(RetryPolicy::none(), CircuitBreakers::default());
    let failed = failure(
        gateway
            .stream_detailed(&chain, &request(), CancellationToken::new())
            .await,
    );
    assert_eq!(failed.error, LlmError::Connection("refused".into()));
    assert_eq!(
        failed.attempts,
        vec![
            attempt(&chain[0], 1, "overloaded", Duration::ZERO),
            attempt(&chain[1], 1, "connection_error", Duration::ZERO),
        ]
    );
    let empty = Gateway::default()
        .stream(&[], &request(), CancellationToken::new())
        .await;
    assert!(matches!(empty, Err(LlmError::Config(_))), "{empty:?}");
}

#[tokio::test(start_paused = true)]
async fn breaker_persists_across_calls_opens_fails_fast_and_recovers() {
    let a = Arc::new(ScriptedProvider::new("bedrock", []).with_default(Step::Fail(server_error())));
    let b = provider("openai", []);
    let only_a = [target("sonnet", &a, "claude-sonnet")];
    let a_then_b = [
        target("sonnet", &a, "claude-sonnet"),
        target("nova", &b, "nova-pro"),
    ];
    // One attempt per call, so each gateway call is one failure: the count must survive calls.
    let gateway = Gateway::new(RetryPolicy::none(), CircuitBreakers::default());

    for call in 1..=5 {
        let result = gateway
            .stream(&only_a, &request(), CancellationToken::new())
            .await;
        assert_eq!(result.err(), Some(server_error()), "call {call}");
    }
    assert_eq!(a.calls(), 5);
    assert_eq!(
        gateway.breakers().state("bedrock", "claude-sonnet"),
        CircuitState::Open
    );

    // Open: fails fast without calling the provider.
    let start = Instant::now();
    let result = gateway
        .stream(&only_a, &request(), CancellationToken::new())
        .await;
    assert_eq!(
        result.err(),
        Some(LlmError::CircuitOpen {
            provider: "bedrock".into(),
            model: "claude-sonnet".into(),
            retry_in: Duration::from_secs(60),
        })
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(a.calls(), 5);

    // ... and falls back when the chain has another target.
    b.push(Step::text_reply("b answers", usage()));
    let stream = gateway
        .stream(&a_then_b, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        stream.attempts,
        vec![
            attempt(&a_then_b[0], 1, "circuit_open", Duration::ZERO),
            attempt(&a_then_b[1], 1, "ok", Duration::ZERO),
        ]
    );
    assert_eq!(stream.events.collect::<Vec<_>>().await, reply_items("b answers"));
    assert_eq!(a.calls(), 5);

    // A clone of the gateway shares the breakers.
    let other_request_handler = gateway.clone();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        gateway.breakers().state("bedrock", "claude-sonnet"),
        CircuitState::HalfOpen
    );
    a.push(Step::text_reply("a is back", usage()));
    let stream = other_request_handler
        .stream(&a_then_b, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(stream.model_id, "sonnet");
    // The trial counts once its stream has ended.
    assert_eq!(
        gateway.breakers().state("bedrock", "claude-sonnet"),
        CircuitState::HalfOpen
    );
    assert_eq!(stream.events.collect::<Vec<_>>().await, reply_items("a is back"));
    assert_eq!(
        gateway.breakers().state("bedrock", "claude-sonnet"),
        CircuitState::Closed
    );
    assert_eq!(a.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn retries_count_towards_the_breaker_and_stop_when_it_opens() {
    let a = Arc::new(ScriptedProvider::new("bedrock", []).with_default(Step::Fail(overloaded())));
    let chain = [target("sonnet", &a, "claude-sonnet")];
    let gateway = Gateway::default().with_seed(SEED);
    let first = failure(
        gateway
            .stream_detailed(&chain, &request(), CancellationToken::new())
            .await,
    );
    assert_eq!(first.error, overloaded());
    assert_eq!(first.attempts.len(), 3);
    let second = failure(
        gateway
            .stream_detailed(&chain, &request(), CancellationToken::new())
            .await,
    );
    let outcomes: Vec<_> = second.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, vec!["overloaded", "overloaded", "circuit_open"]);
    assert!(
        matches!(second.error, LlmError::CircuitOpen { .. }),
        "{:?}",
        second.error
    );
    assert_eq!(a.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn failed_trial_reopens_and_a_running_trial_blocks_other_calls() {
    let breakers = CircuitBreakers::new(BreakerConfig {
        failure_threshold: 1,
        open_for: Duration::from_secs(60),
    });
    let gateway = Gateway::new(RetryPolicy::none(), breakers);
    let a = provider("anthropic", [Step::Fail(server_error())]);
    let b = Arc::new(ScriptedProvider::new("openai", []).with_default(Step::text_reply("b", usage())));
    let chain = [
        target("sonnet", &a, "claude-sonnet"),
        target("nova", &b, "nova-pro"),
    ];
    let stream = gateway
        .stream(&chain, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(stream.model_id, "nova");
    tokio::time::advance(Duration::from_secs(60)).await;

    // The trial call streams slowly; meanwhile another call must not reach `a`.
    a.push(Step::Paced {
        gap: Duration::from_secs(5),
        items: vec![Ok(StreamEvent::Ping), Err(server_error())],
    });
    let trial = gateway
        .stream(&chain, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(trial.model_id, "sonnet");
    let meanwhile = gateway
        .stream(&chain, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(meanwhile.model_id, "nova");
    assert_eq!(meanwhile.attempts[0].outcome, "circuit_open");

    let items = trial.events.collect::<Vec<_>>().await;
    assert_eq!(items, vec![Ok(StreamEvent::Ping), Err(server_error())]);
    assert_eq!(
        gateway.breakers().state("anthropic", "claude-sonnet"),
        CircuitState::Open
    );
    assert_eq!(a.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn mid_stream_error_is_passed_through_not_retried_and_trips_the_breaker() {
    let mid_stream = LlmError::Stream {
        kind: "overloaded_error".into(),
        message: "Overloaded".into(),
    };
    let a = provider(
        "anthropic",
        [Step::Events(vec![
            Ok(StreamEvent::MessageStart {
                id: Some("msg_1".into()),
                model: None,
            }),
            Ok(StreamEvent::TextDelta {
                index: 0,
                text: "partial".into(),
            }),
            Err(mid_stream.clone()),
            Ok(StreamEvent::Ping),
        ])],
    );
    let b = provider("openai", [Step::text_reply("unused", usage())]);
    let chain = [
        target("sonnet", &a, "claude-sonnet"),
        target("nova", &b, "nova-pro"),
    ];
    let breakers = CircuitBreakers::new(BreakerConfig {
        failure_threshold: 1,
        open_for: Duration::from_secs(60),
    });
    let gateway = Gateway::new(RetryPolicy::default(), breakers);
    let stream = gateway
        .stream(&chain, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(stream.model_id, "sonnet");
    assert_eq!(
        stream.events.collect::<Vec<_>>().await,
        vec![
            Ok(StreamEvent::MessageStart {
                id: Some("msg_1".into()),
                model: None,
            }),
            Ok(StreamEvent::TextDelta {
                index: 0,
                text: "partial".into(),
            }),
            Err(mid_stream),
        ],
        "the error ends the stream; nothing after it is passed on"
    );
    assert_eq!((a.calls(), b.calls()), (1, 0));
    assert_eq!(
        gateway.breakers().state("anthropic", "claude-sonnet"),
        CircuitState::Open
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_dropped_early_counts_as_neither() {
    let a = Arc::new(
        ScriptedProvider::new("anthropic", []).with_default(Step::Stall(vec![Ok(StreamEvent::Ping)])),
    );
    let chain = [target("sonnet", &a, "claude-sonnet")];
    let breakers = CircuitBreakers::new(BreakerConfig {
        failure_threshold: 1,
        open_for: Duration::from_secs(60),
    });
    let gateway = Gateway::new(RetryPolicy::default(), breakers);
    for _ in 0..3 {
        let mut stream = gateway
            .stream(&chain, &request(), CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(stream.events.next().await, Some(Ok(StreamEvent::Ping)));
    }
    assert_eq!(
        gateway.breakers().state("anthropic", "claude-sonnet"),
        CircuitState::Closed
    );

    // A stream cancelled by the caller ends with Cancelled, which does not count either.
    let cancel = CancellationToken::new();
    let mut stream = gateway.stream(&chain, &request(), cancel.clone()).await.unwrap();
    assert_eq!(stream.events.next().await, Some(Ok(StreamEvent::Ping)));
    cancel.cancel();
    assert_eq!(stream.events.next().await, Some(Err(LlmError::Cancelled)));
    assert_eq!(stream.events.next().await, None);
    assert_eq!(
        gateway.breakers().state("anthropic", "claude-sonnet"),
        CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn cancellation_during_backoff_returns_cancelled_promptly() {
    let a = provider(
        "anthropic",
        [
            Step::Fail(LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
                message: "slow down".into(),
            }),
            Step::text_reply("never", usage()),
        ],
    );
    let chain = [target("sonnet", &a, "claude-sonnet")];
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        canceller.cancel();
    });
    let start = Instant::now();
    let result = Gateway::default().stream(&chain, &request(), cancel).await;
    assert_eq!(result.err(), Some(LlmError::Cancelled));
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancellation_while_waiting_for_the_provider_and_before_calling() {
    let a = provider(
        "anthropic",
        [Step::text_reply("slow", usage()).delayed(Duration::from_secs(100))],
    );
    let chain = [target("sonnet", &a, "claude-sonnet")];
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        canceller.cancel();
    });
    let start = Instant::now();
    let gateway = Gateway::default();
    let result = gateway.stream(&chain, &request(), cancel.clone()).await;
    assert_eq!(result.err(), Some(LlmError::Cancelled));
    assert_eq!(start.elapsed(), Duration::from_secs(1));

    // Already cancelled: the provider is not called at all.
    let result = gateway.stream(&chain, &request(), cancel).await;
    assert_eq!(result.err(), Some(LlmError::Cancelled));
    assert_eq!(a.calls(), 1);
    assert_eq!(
        gateway.breakers().state("anthropic", "claude-sonnet"),
        CircuitState::Closed
    );
}

#[tokio::test(start_paused = true)]
async fn breakers_are_per_provider_model() {
    let shared = Arc::new(ScriptedProvider::new("bedrock", []).with_default(Step::Fail(server_error())));
    let gateway = Gateway::new(
        RetryPolicy::none(),
        CircuitBreakers::new(BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        }),
    );
    let sonnet = [target("sonnet", &shared, "claude-sonnet")];
    for _ in 0..2 {
        let _ = gateway
            .stream(&sonnet, &request(), CancellationToken::new())
            .await;
    }
    assert_eq!(
        gateway.breakers().snapshot(),
        vec![(
            "bedrock".to_owned(),
            "claude-sonnet".to_owned(),
            CircuitState::Open
        )]
    );
    shared.push(Step::text_reply("haiku", usage()));
    let haiku = [target("haiku", &shared, "claude-haiku")];
    let stream = gateway
        .stream(&haiku, &request(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(stream.model_id, "haiku");
}

#[test]
fn gateway_futures_and_streams_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let gateway = Gateway::default();
    let chain: Vec<Target> = vec![];
    let request = request();
    let future = gateway.stream(&chain, &request, CancellationToken::new());
    assert_send(&future);
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Gateway>();
    assert_send_sync::<CircuitBreakers>();
    assert_send_sync::<Target>();
}
