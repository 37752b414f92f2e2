//! The conversation WebSocket over a real connection: a run driven by `chat` carries exactly the
//! events SSE watchers see, `interrupt` cancels, refused frames leave the socket open,
//! `resume` replays, and authentication happens before the upgrade.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hangar_llm::Step;
use hangar_store::testing::Backend;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::runs::{check_framing, events_after, message, setup, setup_with, tool_call, usage};
use super::*;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(app: &TestApp, conversation: &str) -> String {
    app.url(&format!("/api/tenants/acme/conversations/{conversation}/ws"))
        .replacen("http://", "ws://", 1)
}

/// Connects with the admin key in a header.
async fn connect(app: &TestApp, conversation: &str) -> Socket {
    let mut request = ws_url(app, conversation).into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", ADMIN_KEY.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text frame (pings are answered by the library).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("a frame within 30 s")
            .expect("the socket is open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// Frames up to and including `done`, as (name, data) pairs like the SSE parser gives.
async fn until_done(socket: &mut Socket) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    loop {
        let mut frame = next(socket).await;
        let name = frame["event"].as_str().unwrap().to_owned();
        frame.as_object_mut().unwrap().remove("event");
        let done = name == "done";
        events.push((name, frame));
        if done {
            return events;
        }
    }
}

fn chat(text: &str) -> Value {
    let mut frame = message(text);
    frame["type"] = json!("chat");
    frame
}

#[tokio::test]
async fn websocket_and_sse_watchers_see_the_same_run() {
    let steps = vec![
        tool_call("t1", "Bash", json!({"command": "sleep 1; echo slow"})),
        Step::text_reply("All done.", usage(500, 20)),
    ];
    let (app, _, conversation) = setup(Backend::Sqlite, steps).await;
    let mut socket = connect(&app, &conversation).await;
    send(&mut socket, chat("run something slow")).await;
    let accepted = next(&mut socket).await;
    assert_eq!(accepted["event"], "accepted", "{accepted}");
    let run_id = accepted["run_id"].as_str().unwrap().to_owned();

    // Two SSE watchers join while the run goes on.
    let watchers: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (
                app.client.clone(),
                app.url(&format!(
                    "/api/tenants/acme/conversations/{conversation}/runs/{run_id}/events"
                )),
            );
            tokio::spawn(async move {
                let text = client
                    .get(url)
                    .header("x-api-key", ADMIN_KEY)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                sse_events(&text)
                    .into_iter()
                    .filter(|(n, _)| n != "ping")
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let over_socket = until_done(&mut socket).await;
    let done = check_framing(&over_socket);
    assert_eq!(done["status"], "success", "{done}");
    assert!(
        over_socket
            .iter()
            .any(|(n, d)| n == "tool_result" && d["content"].to_string().contains("slow"))
    );
    for watcher in watchers {
        assert_eq!(
            watcher.await.unwrap(),
            over_socket,
            "SSE and WebSocket transcripts differ"
        );
    }
    assert_eq!(
        events_after(&app, &conversation, &run_id, None).await,
        over_socket
    );

    // The socket stays open for the next message; resume replays a finished run from a seq.
    send(
        &mut socket,
        json!({"type": "resume", "run_id": run_id, "after": 3}),
    )
    .await;
    assert_eq!(next(&mut socket).await["event"], "accepted");
    let replayed = until_done(&mut socket).await;
    assert_eq!(replayed, over_socket[3..].to_vec());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn interrupt_cancels_the_run_and_refused_frames_keep_the_socket() {
    let steps = vec![
        tool_call("t1", "Bash", json!({"command": "sleep 60"})),
        Step::text_reply("never", usage(1, 1)),
    ];
    let (app, _, conversation) = setup(Backend::Sqlite, steps).await;
    let mut socket = connect(&app, &conversation).await;

    send(&mut socket, json!({"type": "interrupt"})).await;
    let refused = next(&mut socket).await;
    assert_eq!(refused["event"], "rejected");
    assert_eq!(refused["error"]["code"], "CONFLICT", "{refused}");

    send(&mut socket, json!({"type": "chat", "user_input": "hi"})).await;
    let refused = next(&mut socket).await;
    assert_eq!(refused["error"]["code"], "VALIDATION_ERROR", "{refused}");
    assert!(
        refused["error"]["details"].to_string().contains("executor"),
        "{refused}"
    );

    socket.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next(&mut socket).await["error"]["code"], "VALIDATION_ERROR");
    socket.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next(&mut socket).await["event"], "rejected");
    send(&mut socket, json!({"type": "teleport"})).await;
    assert_eq!(next(&mut socket).await["event"], "rejected");

    send(&mut socket, chat("sleep please")).await;
    assert_eq!(next(&mut socket).await["event"], "accepted");
    // Wait for the command to be running, then interrupt it.
    loop {
        let frame = next(&mut socket).await;
        assert_ne!(frame["event"], "done", "{frame}");
        if frame["event"] == "tool_call" {
            break;
        }
    }
    send(&mut socket, chat("a second message")).await;
    let busy = next(&mut socket).await;
    assert_eq!(busy["error"]["code"], "CONFLICT", "{busy}");
    let started = std::time::Instant::now();
    send(&mut socket, json!({"type": "interrupt"})).await;
    let rest = until_done(&mut socket).await;
    let (_, done) = rest.last().unwrap();
    assert_eq!(done["status"], "cancelled", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_caller_is_checked_before_the_upgrade_and_frames_are_size_limited() {
    let (app, _, conversation) = setup_with(Backend::Sqlite, &[("MAX_BODY_BYTES", "4096")], Vec::new()).await;
    let url = ws_url(&app, &conversation);
    let status = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
        Ok(_) => 101,
    };
    // No key, a wrong key, an unknown conversation, another tenant's key.
    assert_eq!(status(tokio_tungstenite::connect_async(url.as_str()).await), 401);
    assert_eq!(
        status(tokio_tungstenite::connect_async(format!("{url}?token=wrong")).await),
        401
    );
    let unknown = url.replace(&conversation, "00000000-0000-4000-8000-000000000000");
    assert_eq!(
        status(tokio_tungstenite::connect_async(format!("{unknown}?token={ADMIN_KEY}")).await),
        404
    );
    app.tenant("other", Some("m1")).await;
    let other_key = app.tenant_key("other").await;
    assert_eq!(
        status(tokio_tungstenite::connect_async(format!("{url}?token={other_key}")).await),
        404
    );
    // The query token is for WebSocket upgrades only.
    let plain = app
        .client
        .get(app.url(&format!(
            "/api/tenants/acme/conversations/{conversation}/runs?token={ADMIN_KEY}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNAUTHORIZED);
    // Not an upgrade: the API's envelope, not a bare framework answer.
    let reply = app
        .send(
            Method::GET,
            &format!("/api/tenants/acme/conversations/{conversation}/ws"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.code(), "VALIDATION_ERROR");

    let acme_key = app.tenant_key("acme").await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{url}?token={acme_key}"))
        .await
        .unwrap();
    send(&mut socket, json!({"type": "interrupt"})).await;
    assert_eq!(next(&mut socket).await["event"], "rejected");
    socket
        .send(Message::Text("x".repeat(10_000).into()))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an oversized frame must close the socket");
    app.stop().await.unwrap();
}
