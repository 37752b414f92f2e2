//! Agent runs end to end over HTTP with a scripted model and a real sandbox: the event stream,
//! persistence, billing, replay, continuation, conflicts, cancellation, failures, bad input
//! and runs interrupted by a restart.

use std::sync::Arc;
use std::time::Duration;

use hangar_llm::{BlockKind, LlmError, Registry, ScriptedProvider, Step, StreamEvent, Usage};
use hangar_store::testing::Backend;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

pub(super) fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

pub(super) fn tool_call(id: &str, name: &str, input: Value) -> Step {
    Step::tool_use_reply(id, name, &input, usage(1_000, 100))
}

/// A server with model `m1`, tenant `acme` and one conversation; returns its id.
pub(super) async fn setup(backend: Backend, steps: Vec<Step>) -> (TestApp, Arc<ScriptedProvider>, String) {
    setup_with(backend, &[], steps).await
}

/// [`setup`] with extra settings.
pub(super) async fn setup_with(
    backend: Backend,
    extra: &[(&str, &str)],
    steps: Vec<Step>,
) -> (TestApp, Arc<ScriptedProvider>, String) {
    let provider = Arc::new(ScriptedProvider::new("scripted", steps));
    let app = TestApp::start_llm(backend, extra, Registry::fixed(provider.clone())).await;
    app.model("m1").await;
    app.tenant("acme", Some("m1")).await;
    let reply = app
        .post("/api/tenants/acme/conversations", json!({"user_id": "u1"}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["model_id"], "m1");
    let id = reply.body["conversation_id"].as_str().unwrap().to_owned();
    (app, provider, id)
}

pub(super) fn message(text: &str) -> Value {
    json!({"user_input": text, "executor": {"user_id": "u1", "name": "U", "email": "u@example.com"}})
}

/// Posts a message and returns the status, the run id and the events.
pub(super) async fn run(
    app: &TestApp,
    conversation: &str,
    body: Value,
) -> (StatusCode, Option<String>, Vec<(String, Value)>) {
    let response = app
        .client
        .post(app.url(&format!("/api/tenants/acme/conversations/{conversation}/stream")))
        .header("x-api-key", ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let run_id = response
        .headers()
        .get("x-run-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    (
        status,
        run_id,
        sse_events(&text)
            .into_iter()
            .filter(|(n, _)| n != "ping")
            .collect(),
    )
}

/// A run's SSE stream read piece by piece, for tests that act while the run goes on.
pub(super) struct LiveStream {
    response: reqwest::Response,
    /// Everything received so far.
    pub text: String,
}

impl LiveStream {
    pub(super) async fn post(app: &TestApp, conversation: &str, body: Value) -> Self {
        let response = app
            .client
            .post(app.url(&format!("/api/tenants/acme/conversations/{conversation}/stream")))
            .header("x-api-key", ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        Self {
            response,
            text: String::new(),
        }
    }

    /// Reads until `needle` has arrived.
    pub(super) async fn until(&mut self, needle: &str) {
        while !self.text.contains(needle) {
            let chunk = self
                .response
                .chunk()
                .await
                .unwrap()
                .expect("the stream ends only after done");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads to the end; the events without pings.
    pub(super) async fn finish(mut self) -> Vec<(String, Value)> {
        while let Some(chunk) = self.response.chunk().await.unwrap() {
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
        sse_events(&self.text)
            .into_iter()
            .filter(|(n, _)| n != "ping")
            .collect()
    }
}

/// seq from 1 without gaps, `done` last and exactly once.
pub(super) fn check_framing(events: &[(String, Value)]) -> &Value {
    let seqs: Vec<u64> = events.iter().map(|(_, d)| d["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{events:#?}");
    assert_eq!(
        events.iter().filter(|(n, _)| n == "done").count(),
        1,
        "{events:#?}"
    );
    let (name, done) = events.last().unwrap();
    assert_eq!(name, "done");
    done
}

pub(super) async fn events_after(
    app: &TestApp,
    conversation: &str,
    run_id: &str,
    last_event_id: Option<u64>,
) -> Vec<(String, Value)> {
    let mut request = app
        .client
        .get(app.url(&format!(
            "/api/tenants/acme/conversations/{conversation}/runs/{run_id}/events"
        )))
        .header("x-api-key", ADMIN_KEY);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    sse_events(&text)
        .into_iter()
        .filter(|(n, _)| n != "ping")
        .collect()
}

#[tokio::test]
async fn a_run_uses_tools_in_a_real_sandbox_streams_bills_and_replays() {
    let steps = vec![
        tool_call(
            "t1",
            "TodoWrite",
            json!({"todos": [{"content": "write the file", "status": "in_progress"}]}),
        ),
        tool_call(
            "t2",
            "Bash",
            json!({"command": "cd /workspace && echo sandboxed > made.txt && pwd && id -u"}),
        ),
        tool_call("t3", "Read", json!({"file_path": "/workspace/made.txt"})),
        tool_call("t4", "present_files", json!({"file_paths": ["made.txt"]})),
        Step::text_reply("Created made.txt.", usage(2_000, 50)),
        // The second run.
        Step::text_reply("Still here.", usage(3_000, 10)),
    ];
    let (app, provider, conversation) = setup(Backend::Sqlite, steps).await;
    let (status, run_id, events) = run(
        &app,
        &conversation,
        message("Make a file, token sk-ant-SECRETSECRETSECRET1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let run_id = run_id.expect("X-Run-ID");
    let done = check_framing(&events).clone();
    assert_eq!(done["status"], "success", "{events:#?}");
    assert_eq!(done["result"], "Created made.txt.");
    assert_eq!(done["turn_count"], 5);
    assert_eq!(done["run_id"], run_id.as_str());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "progress");
    for expected in [
        "init",
        "tool_call",
        "tool_result",
        "assistant",
        "context_status",
        "title",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let results: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "tool_result")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(|r| r["is_error"] == false), "{results:#?}");
    let bash = results[1]["content"].as_str().unwrap();
    assert!(bash.contains("/workspace"), "{bash}");
    assert!(
        !bash.lines().any(|l| l.trim() == "0"),
        "the sandbox must not run as root: {bash}"
    );
    assert!(results[2]["content"].as_str().unwrap().contains("sandboxed"));

    // Billed exactly: four tool turns at 1,000/100 and the answer at 2,000/50.
    assert_eq!(done["usage"]["input_tokens"], 6_000);
    assert_eq!(done["usage"]["output_tokens"], 450);
    let stored = app
        .scalar(&format!(
            "SELECT SUM(cost_nano_usd) FROM usage_logs WHERE run_id = '{run_id}'"
        ))
        .await;
    let shown: f64 = done["cost_usd"].as_str().unwrap().parse().unwrap();
    assert_eq!((shown * 1e9).round() as i64, stored);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM usage_logs WHERE run_id = '{run_id}'"
        ))
        .await,
        5
    );

    // The run, its replay from any point, with Last-Event-ID or ?after=.
    let base = format!("/api/tenants/acme/conversations/{conversation}/runs");
    let runs = app.get(&base).await;
    assert_eq!(runs.body["total"], 1);
    assert_eq!(runs.body["items"][0]["status"], "success");
    let replay = events_after(&app, &conversation, &run_id, None).await;
    assert_eq!(replay, events);
    let tail = events_after(&app, &conversation, &run_id, Some(5)).await;
    assert_eq!(tail, events[5..].to_vec());
    let after = app.get(&format!("{base}/{run_id}/events?after=7")).await;
    assert_eq!(after.status, StatusCode::OK);

    // The message log: the user turn and the assistant's events, whole and redacted.
    let log = app
        .get(&format!(
            "/api/tenants/acme/conversations/{conversation}/messages"
        ))
        .await;
    let log = log.body.as_array().unwrap().clone();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["message_type"], "user");
    assert_eq!(log[1]["message_type"], "assistant");
    let logged = log[1]["content"]["events"].as_array().unwrap();
    assert!(
        logged
            .iter()
            .any(|e| e["event"] == "assistant" && e["content_blocks"][0]["text"] == "Created made.txt.")
    );

    // The conversation: title and counters.
    let conv = app
        .get(&format!("/api/tenants/acme/conversations/{conversation}"))
        .await;
    assert!(conv.body["title"].as_str().unwrap().starts_with("Make a file"));
    assert_eq!(conv.body["total_input_tokens"], 6_000);

    // A second run continues with exactly what the model saw.
    let (status, _, events) = run(&app, &conversation, message("Are you there?")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(check_framing(&events)["status"], "success");
    let requests = provider.requests();
    let last = requests.last().unwrap();
    // user, (assistant tool_use, user tool_result) × 4, assistant text, user.
    assert_eq!(last.messages.len(), 11);
    assert_eq!(last.messages[..9], requests[4].messages[..]);
    assert_eq!(
        last.messages[9],
        hangar_llm::Message::assistant("Created made.txt.")
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_second_run_is_refused_and_cancel_ends_the_first_with_done() {
    let stall = Step::Stall(vec![
        Ok(StreamEvent::BlockStart {
            index: 0,
            block: BlockKind::Text,
        }),
        Ok(StreamEvent::TextDelta {
            index: 0,
            text: "thinking about it".into(),
        }),
    ]);
    let (app, _, conversation) = setup(Backend::Sqlite, vec![stall]).await;
    let url = app.url(&format!("/api/tenants/acme/conversations/{conversation}/stream"));
    let response = app
        .client
        .post(&url)
        .header("x-api-key", ADMIN_KEY)
        .json(&message("take your time"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let run_id = response.headers()["x-run-id"].to_str().unwrap().to_owned();
    let first = tokio::spawn(async move { sse_events(&response.text().await.unwrap()) });

    // Wait until the model is streaming, then try a second run.
    let base = format!("/api/tenants/acme/conversations/{conversation}/runs/{run_id}");
    for _ in 0..100 {
        if app
            .scalar(&format!(
                "SELECT COUNT(*) FROM run_events WHERE run_id = '{run_id}' AND event = 'assistant'"
            ))
            .await
            > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, _) = run(&app, &conversation, message("me too")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Nor can it be deleted meanwhile.
    let delete = app
        .delete(&format!("/api/tenants/acme/conversations/{conversation}"))
        .await;
    assert_eq!(delete.status, StatusCode::CONFLICT, "{}", delete.body);

    let cancel = app.post(&format!("{base}/cancel"), json!({})).await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);
    let events = tokio::time::timeout(Duration::from_secs(5), first)
        .await
        .unwrap()
        .unwrap();
    let events: Vec<_> = events.into_iter().filter(|(n, _)| n != "ping").collect();
    let done = check_framing(&events);
    assert_eq!(done["status"], "cancelled");
    assert_eq!(app.get(&base).await.body["status"], "cancelled");
    // The lease is free again.
    let delete = app
        .delete(&format!("/api/tenants/acme/conversations/{conversation}"))
        .await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT, "{}", delete.body);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_failing_model_ends_the_run_with_error_then_done() {
    let fail = Step::Fail(LlmError::InvalidRequest {
        status: 400,
        message: "prompt is too long".into(),
    });
    let (app, _, conversation) = setup(Backend::Postgres, vec![fail]).await;
    let (status, run_id, events) = run(&app, &conversation, message("hi")).await;
    assert_eq!(status, StatusCode::OK);
    let done = check_framing(&events).clone();
    assert_eq!(done["status"], "error");
    let error = events.iter().find(|(n, _)| n == "error").map(|(_, d)| d).unwrap();
    assert!(error["message"].as_str().unwrap().contains("prompt is too long"));
    let run = app
        .get(&format!(
            "/api/tenants/acme/conversations/{conversation}/runs/{}",
            run_id.unwrap()
        ))
        .await;
    assert_eq!(run.body["status"], "error");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_refused_in_the_envelope() {
    let (app, _, conversation) = setup(Backend::Sqlite, vec![]).await;
    let path = format!("/api/tenants/acme/conversations/{conversation}/stream");
    let unknown = app
        .post(
            &format!("/api/tenants/acme/conversations/{}/stream", uuid::Uuid::new_v4()),
            message("x"),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_tenant = app
        .post(
            &format!("/api/tenants/nobody/conversations/{conversation}/stream"),
            message("x"),
        )
        .await;
    assert_eq!(no_tenant.status, StatusCode::NOT_FOUND);
    let empty = app.post(&path, message("  ")).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
    let unknown_field = app
        .post(
            &path,
            json!({"user_input": "x", "executor": {"user_id": "u"}, "extra": 1}),
        )
        .await;
    assert_eq!(
        unknown_field.status,
        StatusCode::BAD_REQUEST,
        "{}",
        unknown_field.body
    );

    // The contract's multipart form: malformed request_data, and files without metadata.
    let boundary = "XyZ";
    let form = |parts: &[(&str, Option<&str>, &str)]| {
        let mut body = String::new();
        for (name, filename, content) in parts {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
            ));
            if let Some(f) = filename {
                body.push_str(&format!("; filename=\"{f}\""));
            }
            body.push_str(&format!("\r\n\r\n{content}\r\n"));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        body
    };
    let send = |body: String| {
        app.client
            .post(app.url(&path))
            .header("x-api-key", ADMIN_KEY)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
    };
    let response = send(form(&[("request_data", None, "{not json")])).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    let request_data = message("with a file").to_string();
    let response = send(form(&[
        ("request_data", None, &request_data),
        ("files", Some("a.txt"), "hello"),
    ]))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let lying = json!([{"filename": "a.txt", "relative_path": "a.txt", "size": 999}]).to_string();
    let response = send(form(&[
        ("request_data", None, &request_data),
        ("files", Some("a.txt"), "hello"),
        ("file_metadata", None, &lying),
    ]))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let escaping = json!([{"filename": "a.txt", "relative_path": "../../etc/x", "size": 5}]).to_string();
    let response = send(form(&[
        ("request_data", None, &request_data),
        ("files", Some("a.txt"), "hello"),
        ("file_metadata", None, &escaping),
    ]))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Oversize JSON body.
    let huge = json!({"user_input": "x".repeat(2 * 1024 * 1024), "executor": {"user_id": "u"}});
    let response = app.post(&path, huge).await;
    assert_eq!(
        response.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        response.body
    );

    // Archived.
    let archived = app
        .post(
            &format!("/api/tenants/acme/conversations/{conversation}/archive"),
            json!({}),
        )
        .await;
    assert_eq!(archived.status, StatusCode::OK);
    let refused = app.post(&path, message("x")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("archived")
    );

    // The message log is tenant-scoped.
    app.tenant("other", Some("m1")).await;
    let other = app
        .get(&format!(
            "/api/tenants/other/conversations/{conversation}/messages"
        ))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM runs").await,
        0,
        "no refused request started a run"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_run_left_running_by_a_crash_is_closed_as_interrupted_at_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let url = db.url.clone();
    let (app, _, conversation) = {
        let provider = Arc::new(ScriptedProvider::new("scripted", vec![]));
        let app = TestApp::start_on(
            db,
            &[("API_KEYS", ADMIN_KEY), ("LOG_LEVEL", "warn")],
            Some(Registry::fixed(provider.clone())),
        )
        .await;
        app.model("m1").await;
        app.tenant("acme", Some("m1")).await;
        let reply = app
            .post("/api/tenants/acme/conversations", json!({"user_id": "u1"}))
            .await;
        let id = reply.body["conversation_id"].as_str().unwrap().to_owned();
        (app, provider, id)
    };
    let run_id = uuid::Uuid::new_v4();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    app.sql(&format!(
        "INSERT INTO runs (run_id, tenant_id, conversation_id, user_id, model_id, node_id, status, started_at) \
         VALUES ('{run_id}', 'acme', '{conversation}', 'u1', 'm1', '{node}', 'running', 0)"
    ))
    .await;
    app.sql(&format!(
        "INSERT INTO run_events (run_id, seq, event, data, created_at) VALUES ('{run_id}', 1, 'progress', '{{\"seq\":1}}', 0)"
    ))
    .await;
    let restarted = TestApp::start_cli_db(&[("DATABASE_URL", &url)]).await;
    let base = format!("/api/tenants/acme/conversations/{conversation}/runs/{run_id}");
    assert_eq!(restarted.get(&base).await.body["status"], "interrupted");
    let events = events_after(&restarted, &conversation, &run_id.to_string(), None).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["progress", "error", "done"]);
    assert_eq!(events[2].1["status"], "interrupted");
    assert_eq!(events[2].1["seq"], 3);
    restarted.stop().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn conversations_crud_follows_the_contract() {
    let (app, _, conversation) = setup(Backend::Postgres, vec![]).await;
    let list = app.get("/api/tenants/acme/conversations?user_id=u1").await;
    assert_eq!(list.body["total"], 1);
    let updated = app
        .put(
            &format!("/api/tenants/acme/conversations/{conversation}"),
            json!({"title": "Renamed"}),
        )
        .await;
    assert_eq!(updated.body["title"], "Renamed");
    let too_long = app
        .put(
            &format!("/api/tenants/acme/conversations/{conversation}"),
            json!({"title": "x".repeat(501)}),
        )
        .await;
    assert!(too_long.status.is_client_error());
    let missing_model = app
        .post(
            "/api/tenants/acme/conversations",
            json!({"user_id": "u1", "model_id": "nope"}),
        )
        .await;
    assert_eq!(missing_model.status, StatusCode::NOT_FOUND);
    app.tenant("bare", None).await;
    let no_model = app
        .post("/api/tenants/bare/conversations", json!({"user_id": "u1"}))
        .await;
    assert_eq!(no_model.status, StatusCode::BAD_REQUEST);
    let other = app
        .get(&format!("/api/tenants/bare/conversations/{conversation}"))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let gone = app
        .delete(&format!("/api/tenants/acme/conversations/{conversation}"))
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let again = app
        .get(&format!("/api/tenants/acme/conversations/{conversation}"))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_fallback_model_answers_the_title_model_names_and_every_call_is_billed() {
    let overloaded = LlmError::Overloaded {
        retry_after: None,
        message: "busy".into(),
    };
    let steps = vec![
        Step::Fail(overloaded),
        Step::text_reply("Here is the answer.", usage(1_000, 1_000)),
        // The title model's call.
        Step::text_reply("\"Greeting Exchange\"", usage(100, 10)),
    ];
    let provider = Arc::new(ScriptedProvider::new("scripted", steps));
    let app = TestApp::start_llm(
        Backend::Postgres,
        &[("BEDROCK_MAX_RETRIES", "1"), ("TITLE_MODEL_ID", "m2")],
        Registry::fixed(provider.clone()),
    )
    .await;
    app.model("m2").await;
    let m1 = json!({
        "model_id": "m1", "display_name": "M1", "bedrock_model_id": "provider.m1", "fallback_model_ids": ["m2"],
        "input_token_price": "1", "output_token_price": "1"
    });
    assert_eq!(app.post("/api/models", m1).await.status, StatusCode::CREATED);
    app.tenant("acme", Some("m1")).await;
    let conversation = app
        .post("/api/tenants/acme/conversations", json!({"user_id": "u1"}))
        .await
        .body["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, run_id, events) = run(&app, &conversation, message("hello there")).await;
    assert_eq!(status, StatusCode::OK);
    let done = check_framing(&events).clone();
    assert_eq!(done["status"], "success", "{events:#?}");
    assert_eq!(done["result"], "Here is the answer.");
    let title = events.iter().find(|(n, _)| n == "title").map(|(_, d)| d).unwrap();
    assert_eq!(title["title"], "Greeting Exchange");
    let models: Vec<String> = provider.requests().into_iter().map(|r| r.model).collect();
    assert_eq!(models, ["provider.m1", "provider.m2", "provider.m2"]);
    // Both calls answered by m2 (0.003 / 0.015 per 1K): 0.018 + 0.00045.
    assert_eq!(done["cost_usd"], "0.018450");
    assert_eq!(done["usage"]["input_tokens"], 1_100);
    let run_id = run_id.unwrap();
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM usage_logs WHERE run_id = '{run_id}' AND model_id = 'm2'"
        ))
        .await,
        2
    );
    let stored = app
        .get(&format!("/api/tenants/acme/conversations/{conversation}"))
        .await;
    assert_eq!(stored.body["title"], "Greeting Exchange");
    assert_eq!(
        stored.body["model_id"], "m1",
        "a fallback answer does not change the conversation's model"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_tenant_policy_decides_which_tools_agents_get() {
    let steps = vec![
        tool_call(
            "t1",
            "Bash",
            json!({"command": "echo should-not-run > /workspace/ran"}),
        ),
        Step::text_reply("Could not.", usage(10, 10)),
    ];
    let (app, provider, conversation) = setup(Backend::Sqlite, steps).await;
    let invalid = app
        .put(
            "/api/tenants/acme",
            json!({"policy": {"egress_domains": ["10.0.0.1", "*.com"], "denied_tools": ["no spaces"]}}),
        )
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.body
    );
    assert_eq!(
        invalid.body["error"]["details"].as_array().unwrap().len(),
        3,
        "{}",
        invalid.body
    );
    let updated = app
        .put(
            "/api/tenants/acme",
            json!({"policy": {"denied_tools": ["Bash", "Task"]}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        updated.body["policy"],
        json!({"allowed_tools": null, "denied_tools": ["Bash", "Task"], "egress_domains": []})
    );

    let (_, _, events) = run(&app, &conversation, message("run a command")).await;
    check_framing(&events);
    let init = events.iter().find(|(n, _)| n == "init").map(|(_, d)| d).unwrap();
    let tools: Vec<&str> = init["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"Read") && !tools.contains(&"Bash") && !tools.contains(&"Task"),
        "{tools:?}"
    );
    let result = events
        .iter()
        .find(|(n, _)| n == "tool_result")
        .map(|(_, d)| d)
        .unwrap();
    assert_eq!(result["status"], "error", "{result}");
    assert!(result["content"].to_string().contains("Bash"), "{result}");
    let workspace = app
        .state
        .settings
        .hangar_data_dir
        .join(format!("workspaces/acme/{conversation}/ran"));
    assert!(!workspace.exists(), "a denied tool ran");
    assert!(
        !tools.contains(&"WebFetch"),
        "no egress domains, no WebFetch: {tools:?}"
    );

    // Egress domains give the agent WebFetch, held to them: a refused domain is never resolved.
    let updated = app
        .put(
            "/api/tenants/acme",
            json!({"policy": {"egress_domains": ["docs.example.test"]}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    provider.push(tool_call(
        "t2",
        "WebFetch",
        json!({"url": "https://elsewhere.example.test/"}),
    ));
    provider.push(Step::text_reply("Refused.", usage(10, 10)));
    let (_, _, events) = run(&app, &conversation, message("fetch a page")).await;
    check_framing(&events);
    let init = events.iter().find(|(n, _)| n == "init").map(|(_, d)| d).unwrap();
    assert!(init["tools"].to_string().contains("\"WebFetch\""), "{init}");
    let result = events
        .iter()
        .find(|(n, _)| n == "tool_result")
        .map(|(_, d)| d)
        .unwrap();
    assert_eq!(result["status"], "error", "{result}");
    assert!(
        result["content"].to_string().contains("elsewhere.example.test"),
        "{result}"
    );
    app.stop().await.unwrap();
}

/// The conversation's sandbox outlives a run; a tenant's new egress domains must still reach the
/// next run, through a new sandbox with the proxy.
#[tokio::test]
async fn a_policy_change_reaches_the_conversations_next_run() {
    let proxy_of = |id: &str| tool_call(id, "Bash", json!({"command": "echo proxy=${HTTPS_PROXY:-none}"}));
    let steps = vec![proxy_of("t1"), Step::text_reply("Checked.", usage(10, 10))];
    let (app, provider, conversation) = setup(Backend::Sqlite, steps).await;
    let output = |events: &[(String, Value)]| {
        let result = events
            .iter()
            .find(|(n, _)| n == "tool_result")
            .map(|(_, d)| d.clone())
            .unwrap();
        assert_eq!(result["status"], "completed", "{result}");
        result["content"].to_string()
    };
    let (_, _, events) = run(&app, &conversation, message("check")).await;
    check_framing(&events);
    assert!(output(&events).contains("proxy=none"), "{events:?}");

    let updated = app
        .put(
            "/api/tenants/acme",
            json!({"policy": {"egress_domains": ["docs.example.test"]}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    provider.push(proxy_of("t2"));
    provider.push(Step::text_reply("Checked again.", usage(10, 10)));
    let (_, _, events) = run(&app, &conversation, message("check again")).await;
    check_framing(&events);
    assert!(
        output(&events).contains("proxy=http://127.0.0.1:3128"),
        "{events:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_cancels_a_run_past_the_grace_period_and_its_stream_ends_with_done() {
    let steps = vec![
        tool_call("t1", "Bash", json!({"command": "sleep 60"})),
        Step::text_reply("never", usage(1, 1)),
    ];
    let (app, _, conversation) = setup_with(Backend::Sqlite, &[("SHUTDOWN_TIMEOUT", "1")], steps).await;
    let mut stream = LiveStream::post(&app, &conversation, message("sleep")).await;
    stream.until("event: tool_call").await;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(app.stop());
    let events = stream.finish().await;
    let done = check_framing(&events);
    assert_eq!(done["status"], "cancelled", "{done}");
    stopping.await.unwrap().unwrap();
    // 1 s of grace, then the command is killed: far less than its 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn every_file_tool_and_a_subagent_work_over_http_in_a_real_sandbox() {
    let notes = "/workspace/notes.md";
    let steps = vec![
        tool_call(
            "w",
            "Write",
            json!({"file_path": notes, "content": "alpha\nbeta\n"}),
        ),
        tool_call(
            "e",
            "Edit",
            json!({"file_path": notes, "old_string": "alpha", "new_string": "ALPHA"}),
        ),
        tool_call(
            "m",
            "MultiEdit",
            json!({"file_path": notes, "edits": [{"old_string": "beta", "new_string": "BETA"}]}),
        ),
        // Read-only calls in one answer run in parallel; results come back in call order.
        Step::tool_calls_reply(
            &[
                ("g", "Glob", r#"{"pattern": "**/*.md"}"#),
                ("r", "Grep", r#"{"pattern": "BETA", "output_mode": "content"}"#),
                ("l", "LS", r#"{"path": "/workspace"}"#),
                ("rd", "Read", r#"{"file_path": "/workspace/notes.md"}"#),
            ],
            usage(100, 10),
        ),
        tool_call(
            "t",
            "Task",
            json!({"description": "count lines", "prompt": "Count the lines of notes.md"}),
        ),
        // The subagent's own turns.
        tool_call("sb", "Bash", json!({"command": "wc -l < /workspace/notes.md"})),
        Step::text_reply("2 lines.", usage(50, 5)),
        // Back in the main agent.
        Step::text_reply("notes.md has 2 lines.", usage(200, 20)),
    ];
    let (app, _, conversation) = setup(Backend::Sqlite, steps).await;
    let (status, _, events) = run(&app, &conversation, message("work on notes")).await;
    assert_eq!(status, StatusCode::OK);
    let done = check_framing(&events);
    assert_eq!(done["status"], "success", "{events:#?}");
    assert_eq!(done["result"], "notes.md has 2 lines.");

    let results: Vec<(&str, &Value)> = events
        .iter()
        .filter(|(n, _)| n == "tool_result")
        .map(|(_, d)| (d["tool_use_id"].as_str().unwrap(), d))
        .collect();
    let ids: Vec<&str> = results.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, ["w", "e", "m", "g", "r", "l", "rd", "sb", "t"]);
    for (id, result) in &results {
        assert_eq!(result["status"], "completed", "{id}: {result}");
    }
    let content = |id: &str| results.iter().find(|(i, _)| *i == id).unwrap().1["content"].to_string();
    assert!(content("g").contains("notes.md"), "{}", content("g"));
    assert!(content("r").contains("BETA"), "{}", content("r"));
    assert!(content("l").contains("notes.md"), "{}", content("l"));
    assert!(content("rd").contains("ALPHA"), "{}", content("rd"));
    assert!(content("sb").contains('2'), "{}", content("sb"));
    assert!(content("t").contains("2 lines."), "{}", content("t"));

    // The subagent's events sit between its start and end, tagged with its id.
    let start = events.iter().position(|(n, _)| n == "subagent_start").unwrap();
    let end = events.iter().position(|(n, _)| n == "subagent_end").unwrap();
    let agent = events[start].1["agent_id"].as_str().unwrap().to_owned();
    let inner = &events[start + 1..end];
    assert!(inner.iter().any(|(n, _)| n == "tool_call"));
    for (name, data) in inner {
        assert_eq!(data["parent_agent_id"], agent.as_str(), "{name}: {data}");
    }
    let on_disk = std::fs::read_to_string(
        app.state
            .settings
            .hangar_data_dir
            .join(format!("workspaces/acme/{conversation}/notes.md")),
    )
    .unwrap();
    assert_eq!(on_disk, "ALPHA\nBETA\n");
    app.stop().await.unwrap();
}
