//! Simple chats end to end over HTTP, with a scripted model provider: streaming, persistence,
//! usage and exact cost, titles, continuation, fallback and failures.

use std::sync::Arc;

use hangar_llm::{LlmError, Registry, ScriptedProvider, Step, StreamEvent, Usage};
use hangar_store::testing::Backend;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

/// Runs `$name(Backend)` on SQLite and on PostgreSQL.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(hangar_store::testing::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(hangar_store::testing::Backend::Postgres).await;
            }
        }
    };
}

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

async fn app_with(
    backend: Backend,
    extra: &[(&str, &str)],
    steps: Vec<Step>,
) -> (TestApp, Arc<ScriptedProvider>) {
    let provider = Arc::new(ScriptedProvider::new("scripted", steps));
    let app = TestApp::start_llm(backend, extra, Registry::fixed(provider.clone())).await;
    (app, provider)
}

fn new_chat(message: &str) -> Value {
    json!({
        "user_id": "u1", "application_type": "translate", "system_prompt": "Translate into English.",
        "model_id": "m1", "message": message
    })
}

/// Checks the stream's framing: seq from 1 upwards, `done` last and exactly once.
fn check_framing(events: &[(String, Value)]) -> &Value {
    let seqs: Vec<u64> = events
        .iter()
        .map(|(_, d)| d["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{events:?}");
    assert!(
        events
            .iter()
            .all(|(_, d)| d["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')))
    );
    assert_eq!(
        events.iter().filter(|(n, _)| n == "done").count(),
        1,
        "{events:?}"
    );
    let (name, done) = events.last().expect("events");
    assert_eq!(name, "done");
    done
}

fn text_of(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(n, _)| n == "text_delta")
        .map(|(_, d)| d["content"].as_str().unwrap_or_default())
        .collect()
}

async fn streams_stores_and_bills(backend: Backend) {
    let steps = vec![Step::text_reply(
        "Hello, world.",
        Usage {
            cache_read_tokens: 2_000,
            ..usage(1_000, 500)
        },
    )];
    let (app, provider) = app_with(backend, &[], steps).await;
    app.model("m1").await;
    app.tenant("acme", None).await;
    let key = app.tenant_key("acme").await;

    let (status, headers, events) = app
        .chat("acme", &key, new_chat("Bonjour tout le monde, comment ça va ?"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let chat_id = headers["x-chat-id"].to_str().unwrap().to_owned();
    let done = check_framing(&events);
    assert_eq!(text_of(&events), "Hello, world.");
    assert_eq!(done["status"], "success");
    assert_eq!(done["model_id"], "m1");
    // Without a title model, the title is the start of the first message.
    assert_eq!(done["title"], "Bonjour tout le monde, comment ça va ?");
    assert_eq!(done["usage"]["input_tokens"], 1_000);
    assert_eq!(done["usage"]["cache_read_tokens"], 2_000);
    assert_eq!(done["usage"]["total_tokens"], 3_500);
    // 1,000 × 0.003/1K + 500 × 0.015/1K = 0.003 + 0.0075 (cache reads are free for this model).
    assert_eq!(done["cost_usd"], "0.010500");

    // What the provider was sent.
    let request = &provider.requests()[0];
    assert_eq!(request.model, "provider.m1");
    assert_eq!(request.system[0].text, "Translate into English.");
    assert_eq!(request.messages.len(), 1);
    assert_eq!(request.max_tokens, 4096);

    // What was stored, and billed: exactly the cost the stream showed.
    let detail = app
        .send(
            Method::GET,
            &format!("/api/tenants/acme/simple-chats/{chat_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert_eq!(detail.body["title"], done["title"]);
    let messages = detail.body["messages"].as_array().unwrap();
    let turns: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        turns,
        [
            ("user", "Bonjour tout le monde, comment ça va ?"),
            ("assistant", "Hello, world.")
        ]
    );
    let where_chat = format!("WHERE simple_chat_id = '{chat_id}'");
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM usage_logs {where_chat}"))
            .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT CAST(SUM(cost_nano_usd) AS BIGINT) FROM usage_logs {where_chat}"
        ))
        .await,
        10_500_000
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT CAST(SUM(total_tokens) AS BIGINT) FROM usage_logs {where_chat}"
        ))
        .await,
        3_500
    );
}
on_both!(streams_stores_and_bills);

async fn continues_with_history(backend: Backend) {
    let steps = vec![
        Step::text_reply("First answer.", usage(10, 5)),
        Step::text_reply("Second answer.", usage(30, 6)),
    ];
    let (app, provider) = app_with(backend, &[], steps).await;
    app.model("m1").await;
    app.tenant("acme", None).await;
    let (_, headers, _) = app.chat("acme", ADMIN_KEY, new_chat("One")).await;
    let chat_id = headers["x-chat-id"].to_str().unwrap().to_owned();
    let (status, headers, events) = app
        .chat("acme", ADMIN_KEY, json!({ "chat_id": chat_id, "message": "Two" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !headers.contains_key("x-chat-id"),
        "only a new chat announces its id"
    );
    let done = check_framing(&events);
    assert_eq!(done["title"], Value::Null, "the chat already has a title");
    assert_eq!(text_of(&events), "Second answer.");
    let second = &provider.requests()[1];
    let roles: Vec<String> = second.messages.iter().map(|m| format!("{:?}", m.role)).collect();
    assert_eq!(roles, ["User", "Assistant", "User"]);
    let listed = app
        .get("/api/tenants/acme/simple-chats?user_id=u1&application_type=translate")
        .await;
    assert_eq!(listed.body["total"], 1);
    assert_eq!(listed.body["items"][0]["chat_id"], chat_id.as_str());
    let empty = app
        .get("/api/tenants/acme/simple-chats?application_type=other")
        .await;
    assert_eq!(empty.body["total"], 0);
}
on_both!(continues_with_history);

async fn refusals(backend: Backend) {
    let provider = ScriptedProvider::new("scripted", []).with_default(Step::text_reply("ok", usage(1, 1)));
    let app = TestApp::start_llm(backend, &[], Registry::fixed(Arc::new(provider))).await;
    app.model("m1").await;
    app.model("old").await;
    app.send(
        Method::PATCH,
        "/api/models/old/status?status=deprecated",
        Some(ADMIN_KEY),
        None,
    )
    .await;
    app.tenant("acme", None).await;
    app.tenant("other", None).await;
    let key = app.tenant_key("acme").await;
    let other_key = app.tenant_key("other").await;

    let reply = app
        .send(
            Method::POST,
            "/api/tenants/acme/simple-chats/stream",
            Some(&key),
            Some(json!({ "message": "hi" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let fields: Vec<&str> = reply.body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "body.user_id",
            "body.application_type",
            "body.system_prompt",
            "body.model_id"
        ]
    );

    let mut body = new_chat("hi");
    body["model_id"] = json!("ghost");
    assert_eq!(
        app.send(
            Method::POST,
            "/api/tenants/acme/simple-chats/stream",
            Some(&key),
            Some(body)
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let mut body = new_chat("hi");
    body["model_id"] = json!("old");
    assert_eq!(
        app.send(
            Method::POST,
            "/api/tenants/acme/simple-chats/stream",
            Some(&key),
            Some(body)
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    let ghost_chat = json!({ "chat_id": "00000000-0000-0000-0000-000000000000", "message": "hi" });
    assert_eq!(
        app.send(
            Method::POST,
            "/api/tenants/acme/simple-chats/stream",
            Some(&key),
            Some(ghost_chat)
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let bad_id = json!({ "chat_id": "not-a-uuid", "message": "hi" });
    assert_eq!(
        app.send(
            Method::POST,
            "/api/tenants/acme/simple-chats/stream",
            Some(&key),
            Some(bad_id)
        )
        .await
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.send(
            Method::POST,
            "/api/tenants/other/simple-chats/stream",
            Some(&key),
            Some(new_chat("hi"))
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // A chat of acme is invisible to other's key, whatever the path says.
    let (_, headers, _) = app.chat("acme", &key, new_chat("hello")).await;
    let chat_id = headers["x-chat-id"].to_str().unwrap().to_owned();
    let path = format!("/api/tenants/acme/simple-chats/{chat_id}");
    assert_eq!(
        app.send(Method::GET, &path, Some(&other_key), None).await.status,
        StatusCode::NOT_FOUND
    );
    let cross = format!("/api/tenants/other/simple-chats/{chat_id}");
    assert_eq!(
        app.send(Method::GET, &cross, Some(&other_key), None).await.status,
        StatusCode::NOT_FOUND
    );

    let archived = app
        .send(Method::POST, &format!("{path}/archive"), Some(&key), None)
        .await;
    assert_eq!(archived.body["status"], "archived");
    let (status, _, _) = app
        .chat("acme", &key, json!({ "chat_id": chat_id, "message": "again" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    app.put("/api/tenants/acme", json!({ "status": "inactive" }))
        .await;
    let (status, _, _) = app.chat("acme", &key, new_chat("hi")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deleting the chat keeps its bill.
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&key), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.send(Method::GET, &path, Some(&key), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(Method::DELETE, &path, Some(&key), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM usage_logs WHERE tenant_id = 'acme'")
            .await,
        1
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM usage_logs WHERE simple_chat_id IS NULL")
            .await,
        1
    );
}
on_both!(refusals);

async fn falls_back_and_reports_failures(backend: Backend) {
    let overloaded = || LlmError::Overloaded {
        retry_after: None,
        message: "busy".into(),
    };
    let steps = vec![
        // 1: the primary is overloaded (no retries configured), the fallback answers.
        Step::Fail(overloaded()),
        Step::text_reply("From the fallback.", usage(1_000, 1_000)),
        // 2: a request the provider rejects: no retry, no fallback.
        Step::Fail(LlmError::InvalidRequest {
            status: 400,
            message: "bad request".into(),
        }),
        // 3: fails after output was sent: surfaced, not retried.
        Step::Events(vec![
            Ok(StreamEvent::TextDelta {
                index: 0,
                text: "Partial".into(),
            }),
            Ok(StreamEvent::Usage(usage(100, 1))),
            Err(LlmError::Stream {
                kind: "overloaded_error".into(),
                message: "dropped".into(),
            }),
        ]),
    ];
    let (app, provider) = app_with(backend, &[("BEDROCK_MAX_RETRIES", "1")], steps).await;
    app.model("m2").await;
    let m1 = json!({
        "model_id": "m1", "display_name": "M1", "bedrock_model_id": "provider.m1", "fallback_model_ids": ["m2"],
        "input_token_price": "1", "output_token_price": "1"
    });
    assert_eq!(app.post("/api/models", m1).await.status, StatusCode::CREATED);
    app.tenant("acme", None).await;

    let (_, headers, events) = app.chat("acme", ADMIN_KEY, new_chat("hello")).await;
    let chat_id = headers["x-chat-id"].to_str().unwrap().to_owned();
    let done = check_framing(&events);
    assert_eq!(done["status"], "success");
    assert_eq!(done["model_id"], "m2", "the fallback answered");
    // Billed at m2's prices (0.003/0.015 per 1K): 0.003 + 0.015.
    assert_eq!(done["cost_usd"], "0.018000");
    let requests = provider.requests();
    assert_eq!(requests[0].model, "provider.m1");
    assert_eq!(requests[1].model, "provider.m2");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM usage_logs WHERE model_id = 'm2'")
            .await,
        1
    );

    let (_, _, events) = app
        .chat(
            "acme",
            ADMIN_KEY,
            json!({ "chat_id": chat_id, "message": "again" }),
        )
        .await;
    let done = check_framing(&events);
    assert_eq!(done["status"], "error");
    let error = &events.iter().find(|(n, _)| n == "error").expect("error event").1;
    assert_eq!(error["error_type"], "invalid_request");
    assert_eq!(error["recoverable"], false);
    assert_eq!(
        provider.calls(),
        3,
        "an invalid request is neither retried nor sent to the fallback"
    );

    let (_, _, events) = app
        .chat(
            "acme",
            ADMIN_KEY,
            json!({ "chat_id": chat_id, "message": "third" }),
        )
        .await;
    let done = check_framing(&events);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["text_delta", "error", "done"]);
    assert_eq!(events[1].1["error_type"], "stream_error");
    assert_eq!(done["status"], "error");
    assert_eq!(
        done["usage"]["input_tokens"], 100,
        "what the failed call used is still billed"
    );
    assert_eq!(
        provider.calls(),
        4,
        "a failure after output was sent is not retried"
    );
    // The failed exchanges left no assistant message behind.
    let detail = app
        .get(&format!("/api/tenants/acme/simple-chats/{chat_id}"))
        .await;
    let roles: Vec<&str> = detail.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "user"]);
}
on_both!(falls_back_and_reports_failures);

async fn titles_from_a_title_model(backend: Backend) {
    let steps = vec![
        Step::text_reply("Paris is the capital of France.", usage(1_000, 100)),
        Step::text_reply("\"Capital of France\"", usage(200, 10)),
    ];
    let (app, provider) = app_with(backend, &[("TITLE_MODEL_ID", "titler")], steps).await;
    app.model("m1").await;
    app.model("titler").await;
    app.tenant("acme", None).await;
    let (_, _, events) = app
        .chat("acme", ADMIN_KEY, new_chat("What is the capital of France?"))
        .await;
    let done = check_framing(&events);
    assert_eq!(done["title"], "Capital of France");
    // Both calls are billed and shown: 1,200 in × 0.003/1K + 110 out × 0.015/1K = 0.0036 + 0.00165.
    assert_eq!(done["cost_usd"], "0.005250");
    assert_eq!(done["usage"]["input_tokens"], 1_200);
    assert_eq!(provider.requests()[1].model, "provider.titler");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM usage_logs").await, 2);
    assert_eq!(
        app.scalar("SELECT CAST(SUM(cost_nano_usd) AS BIGINT) FROM usage_logs")
            .await,
        5_250_000
    );
}
on_both!(titles_from_a_title_model);
