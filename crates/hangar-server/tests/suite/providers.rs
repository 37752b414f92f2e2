//! A simple chat end to end through each real provider adapter, against the fake model server
//! speaking each wire format byte-accurately (Anthropic SSE, Bedrock event streams with SigV4,
//! OpenAI SSE). Usage and cost rows must match hand-computed values exactly.

use std::sync::Arc;
use std::time::Duration;

use hangar_llm::{BedrockCredentials, ProviderSettings, Registry};
use hangar_store::testing::Backend;
use hangar_testkit::{
    AwsTestCredentials, FakeModelConfig, FakeModelServer, Reply, Script, Usage, WireFormat,
};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

const API_KEY: &str = "sk-test-0123456789";

async fn setup() -> (TestApp, FakeModelServer) {
    let aws = AwsTestCredentials::example();
    let fake = FakeModelServer::start(
        FakeModelConfig::new(Script::new())
            .aws(aws.clone())
            .api_key(API_KEY),
    )
    .await
    .expect("fake model server");
    let settings = ProviderSettings {
        anthropic_api_key: Some(API_KEY.into()),
        anthropic_base_url: fake.url(),
        aws_region: aws.region.clone(),
        bedrock_endpoint_url: Some(fake.url()),
        bedrock_credentials: Some(BedrockCredentials {
            access_key_id: aws.access_key_id.clone(),
            secret_access_key: aws.secret_access_key.clone(),
            session_token: None,
        }),
        timeout: Duration::from_secs(10),
        env: Arc::new(|name| (name == "TEST_OPENAI_API_KEY").then(|| API_KEY.to_owned())),
    };
    let app = TestApp::start_llm(Backend::Sqlite, &[], Registry::new(settings)).await;
    app.tenant("acme", None).await;
    (app, fake)
}

/// Prices (USD per 1K): input 0.003, output 0.015, 5-minute write 0.00375, 1-hour write 0.006,
/// read 0.0003.
async fn model(app: &TestApp, id: &str, provider: &str, provider_model: &str, extra: Value) {
    let mut body = json!({
        "model_id": id, "display_name": id, "provider": provider, "bedrock_model_id": provider_model,
        "input_token_price": "0.003", "output_token_price": "0.015", "cache_creation_5m_price": "0.00375",
        "cache_creation_1h_price": "0.006", "cache_read_price": "0.0003"
    });
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    let reply = app.post("/api/models", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

async fn chat(app: &TestApp, model_id: &str) -> (Value, String) {
    let body = json!({
        "user_id": "u1", "application_type": "demo", "system_prompt": "Be brief.", "model_id": model_id,
        "message": "Say hello."
    });
    let (status, headers, events) = app.chat("acme", ADMIN_KEY, body).await;
    assert_eq!(status, StatusCode::OK);
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "text_delta")
        .map(|(_, d)| d["content"].as_str().unwrap())
        .collect();
    let (name, done) = events.last().cloned().expect("events");
    assert_eq!(name, "done", "{events:?}");
    assert_eq!(done["status"], "success", "{events:?}");
    let chat_id = headers["x-chat-id"].to_str().unwrap().to_owned();
    let stored = app
        .scalar(&format!(
            "SELECT CAST(SUM(cost_nano_usd) AS BIGINT) FROM usage_logs WHERE simple_chat_id = '{chat_id}'"
        ))
        .await;
    assert_eq!(
        Some(stored),
        done["cost_usd"].as_str().map(usd_nanos),
        "stored cost = streamed cost"
    );
    (done, text)
}

fn usd_nanos(text: &str) -> i64 {
    text.parse::<hangar_protocol::Usd>().expect("usd").nanos()
}

#[tokio::test]
async fn anthropic_messages_api() {
    let (app, fake) = setup().await;
    model(&app, "claude", "anthropic", "claude-sonnet-4-5", json!({})).await;
    let usage = Usage::new(1_000, 200)
        .cache_write_5m(100)
        .cache_write_1h(50)
        .cache_read(500);
    fake.push(Reply::text_chunks(["Hel", "lo!"]).usage(usage));
    let (done, text) = chat(&app, "claude").await;
    assert_eq!(text, "Hello!");
    // 1000×0.000003 + 200×0.000015 + 100×0.00000375 + 50×0.000006 + 500×0.0000003
    // = 0.003 + 0.003 + 0.000375 + 0.0003 + 0.00015
    assert_eq!(done["cost_usd"], "0.006825");
    assert_eq!(done["usage"]["cache_creation_5m_tokens"], 100);
    assert_eq!(done["usage"]["cache_creation_1h_tokens"], 50);
    let request = fake.last_request().expect("request");
    assert_eq!(request.format, WireFormat::Anthropic);
    assert_eq!(request.header("x-api-key"), Some(API_KEY));
    assert_eq!(
        request.body.clone().unwrap_or_default()["model"],
        "claude-sonnet-4-5"
    );
    assert_eq!(request.body.clone().unwrap_or_default()["stream"], true);
    assert_eq!(
        request.body.clone().unwrap_or_default()["system"][0]["text"],
        "Be brief."
    );
    assert_eq!(
        request.body.clone().unwrap_or_default()["messages"][0]["content"][0]["text"],
        "Say hello."
    );
}

#[tokio::test]
async fn bedrock_invoke_with_response_stream() {
    let (app, fake) = setup().await;
    model(
        &app,
        "haiku",
        "bedrock",
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        json!({}),
    )
    .await;
    let usage = Usage::new(1_000, 200)
        .cache_write_5m(100)
        .cache_write_1h(50)
        .cache_read(500);
    fake.push(Reply::text("Hello from Bedrock.").usage(usage));
    let (done, text) = chat(&app, "haiku").await;
    assert_eq!(text, "Hello from Bedrock.");
    assert_eq!(done["cost_usd"], "0.006825");
    let request = fake.last_request().expect("request");
    assert_eq!(request.format, WireFormat::BedrockInvoke);
    assert!(
        request.is_signed_correctly(),
        "SigV4-signed with the configured credentials"
    );
    assert_eq!(
        request.model.as_deref(),
        Some("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    );
    assert_eq!(
        request.body.clone().unwrap_or_default()["anthropic_version"],
        "bedrock-2023-05-31"
    );
}

#[tokio::test]
async fn bedrock_converse_stream() {
    let (app, fake) = setup().await;
    model(&app, "nova", "bedrock", "amazon.nova-pro-v1:0", json!({})).await;
    fake.push(
        Reply::text("Hello from Nova.").usage(Usage::new(1_000, 200).cache_write_5m(100).cache_read(500)),
    );
    let (done, text) = chat(&app, "nova").await;
    assert_eq!(text, "Hello from Nova.");
    // 0.003 + 0.003 + 100×0.00000375 + 500×0.0000003 = 0.006525
    assert_eq!(done["cost_usd"], "0.006525");
    let request = fake.last_request().expect("request");
    assert_eq!(request.format, WireFormat::BedrockConverse);
    assert!(request.is_signed_correctly());
}

#[tokio::test]
async fn openai_compatible_chat_completions() {
    let (app, fake) = setup().await;
    let extra = json!({ "base_url": format!("{}/v1", fake.url()), "api_key_env": "TEST_OPENAI_API_KEY" });
    model(&app, "local", "openai", "qwen2.5-7b-instruct", extra).await;
    fake.push(Reply::text_chunks(["Hi ", "there."]).usage(Usage::new(1_000, 200).cache_read(500)));
    let (done, text) = chat(&app, "local").await;
    assert_eq!(text, "Hi there.");
    // OpenAI reports prompt_tokens = 1,500 with 500 cached: billed 1,000 input + 500 read.
    assert_eq!(done["usage"]["input_tokens"], 1_000);
    assert_eq!(done["usage"]["cache_read_tokens"], 500);
    assert_eq!(done["cost_usd"], "0.006150");
    let request = fake.last_request().expect("request");
    assert_eq!(request.format, WireFormat::OpenAi);
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(
        request.body.clone().unwrap_or_default()["stream_options"]["include_usage"],
        true
    );
    assert_eq!(
        request.body.clone().unwrap_or_default()["messages"][0]["role"],
        "system"
    );
}

#[tokio::test]
async fn retried_then_fallen_back_across_providers() {
    let (app, fake) = setup().await;
    model(&app, "backup", "anthropic", "claude-backup", json!({})).await;
    model(
        &app,
        "primary",
        "bedrock",
        "us.anthropic.claude-primary-v1:0",
        json!({ "fallback_model_ids": ["backup"] }),
    )
    .await;
    // Bedrock throttles three times (every attempt), then the Anthropic fallback answers.
    for _ in 0..3 {
        fake.push(hangar_testkit::Fault::rate_limited());
    }
    fake.push(Reply::text("Fallback answer.").usage(Usage::new(10, 10)));
    let started = std::time::Instant::now();
    let (done, text) = chat(&app, "primary").await;
    assert_eq!(text, "Fallback answer.");
    assert_eq!(done["model_id"], "backup");
    let formats: Vec<WireFormat> = fake.requests().iter().map(|r| r.format).collect();
    assert_eq!(
        formats,
        [
            WireFormat::BedrockInvoke,
            WireFormat::BedrockInvoke,
            WireFormat::BedrockInvoke,
            WireFormat::Anthropic
        ]
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_provider_that_is_not_configured_is_a_clear_503() {
    let (app, fake) = setup().await;
    let extra = json!({ "base_url": format!("{}/v1", fake.url()), "api_key_env": "MISSING_API_KEY" });
    model(&app, "nokey", "openai", "m", extra).await;
    let body = json!({
        "user_id": "u1", "application_type": "demo", "system_prompt": "x", "model_id": "nokey", "message": "hi"
    });
    let reply = app
        .send(
            Method::POST,
            "/api/tenants/acme/simple-chats/stream",
            Some(ADMIN_KEY),
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MISSING_API_KEY")
    );
    assert_eq!(fake.request_count(), 0);
    assert_eq!(
        app.get("/api/tenants/acme/simple-chats").await.body["total"],
        0,
        "no chat was created"
    );
}
