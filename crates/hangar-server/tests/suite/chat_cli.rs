//! `hangar chat` against the real server and a scripted model: a one-shot message renders the
//! answer, a folded tool line and the summary, and the conversation continues from stdin; API
//! errors end the client with the envelope's message and a non-zero status; Ctrl-C cancels the
//! run; a stream broken mid-run is resumed without losing or repeating an event.

use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hangar_llm::{BlockKind, Registry, ScriptedProvider, Step, StreamEvent, Usage, text_reply_events};
use hangar_store::testing::Backend;
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// `hangar chat <args>` against `app` with the admin key, its streams piped.
fn spawn(app: &TestApp, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hangar"))
        .env_clear()
        .env("HANGAR_URL", &app.base)
        .env("HANGAR_API_KEY", ADMIN_KEY)
        .arg("chat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run hangar chat")
}

/// Runs `hangar chat <args>` with `input` on stdin, in a bounded time.
async fn chat(app: &TestApp, args: &[&str], input: &str) -> Output {
    let mut child = spawn(app, args);
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("write stdin");
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("hangar chat finishes")
        .expect("hangar chat output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_one_shot_message_shows_the_run_and_the_conversation_continues() {
    let steps = vec![
        Step::tool_use_reply("t1", "Bash", &json!({"command": "echo hi"}), usage(1_000, 100)),
        Step::text_reply("The command said hi.", usage(2_000, 50)),
        Step::text_reply("Still here.", usage(3_000, 10)),
    ];
    let provider = Arc::new(ScriptedProvider::new("scripted", steps));
    let app = TestApp::start_llm(Backend::Sqlite, &[], Registry::fixed(provider)).await;
    app.model("m1").await;
    app.tenant("acme", Some("m1")).await;

    let out = chat(
        &app,
        &[
            "--tenant", "acme", "--user", "u1", "--title", "Greeting", "-m", "hi",
        ],
        "",
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("⚙ Bash: echo hi\n  ↳ ok: hi\n"), "{stdout}");
    assert!(stdout.contains("The command said hi.\n"), "{stdout}");
    assert_eq!(stdout.matches("The command said hi.").count(), 1, "{stdout}");
    assert!(
        stdout.contains("done: success · 2 turns · 3000 in / 150 out tokens · $0."),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no escape codes off a terminal: {stdout:?}"
    );

    // The conversation's id is on stderr, and it is the one the server has, with its title.
    let id = stderr
        .split_whitespace()
        .nth(1)
        .expect("conversation id on stderr")
        .to_owned();
    assert!(stderr.starts_with("conversation "), "{stderr}");
    let conversation = app.get(&format!("/api/tenants/acme/conversations/{id}")).await;
    assert_eq!(conversation.status, StatusCode::OK, "{}", conversation.body);
    assert_eq!(conversation.body["user_id"], "u1");
    assert_eq!(conversation.body["title"], "Greeting");

    // Without -m, every line of stdin is a message, until /quit.
    let args = ["--tenant", "acme", "--conversation", &id];
    let again = chat(&app, &args, "\n  still there?  \n/quit\nnot sent\n").await;
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}\n{}", text(&again.stderr));
    assert!(
        stdout.starts_with("Still here.\ndone: success · 1 turn · "),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let runs = app
        .get(&format!("/api/tenants/acme/conversations/{id}/runs"))
        .await;
    assert_eq!(runs.body["total"], 2);
}

#[tokio::test]
async fn api_errors_end_the_client_with_their_message() {
    let app = TestApp::start(Backend::Sqlite, &[]).await;
    let out = chat(&app, &["--tenant", "nobody", "-m", "hi"], "").await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("hangar: tenant 'nobody' not found"),
        "{stderr}"
    );
    assert!(stderr.trim_end().ends_with("(404 Not Found)"), "{stderr}");
    assert_eq!(text(&out.stdout), "");

    let unknown = chat(&app, &["--tenant", "nobody", "--conversation", "not-a-uuid"], "").await;
    assert_eq!(unknown.status.code(), Some(2), "clap rejects it");
}

#[tokio::test]
async fn ctrl_c_cancels_the_run_and_the_client_shows_it_ending() {
    let stall = Step::Stall(vec![
        Ok(StreamEvent::BlockStart {
            index: 0,
            block: BlockKind::Text,
        }),
        Ok(StreamEvent::TextDelta {
            index: 0,
            text: "Let me think".into(),
        }),
    ]);
    let provider = Arc::new(ScriptedProvider::new("scripted", vec![stall]));
    let app = TestApp::start_llm(Backend::Sqlite, &[], Registry::fixed(provider)).await;
    app.model("m1").await;
    app.tenant("acme", Some("m1")).await;
    let mut child = spawn(&app, &["--tenant", "acme", "-m", "take your time"]);
    let mut stdout = child.stdout.take().expect("stdout");
    // Once the streamed text shows, the run is going.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    while !text(&seen).contains("Let me think") {
        let read = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut chunk))
            .await
            .expect("streamed text in time")
            .expect("read stdout");
        assert!(read > 0, "stdout ended early: {}", text(&seen));
        seen.extend_from_slice(&chunk[..read]);
    }
    let pid = child.id().expect("pid").to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await;
    assert!(kill.expect("kill").success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the client ends once the run is cancelled")
        .expect("wait");
    stdout.read_to_end(&mut seen).await.expect("read stdout");
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("stderr");
    pipe.read_to_string(&mut stderr).await.expect("read stderr");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelling the run"), "{stderr}");
    let stdout = text(&seen);
    assert!(stdout.starts_with("Let me think\ndone: cancelled · "), "{stdout}");
}

/// A proxy to `target` (`host:port`) that breaks the first run stream (`POST …/stream`) right
/// after relaying the first response bytes that contain `marker`.
async fn flaky_proxy(target: String, marker: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let broken = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&target).await.expect("connect");
            tokio::spawn(relay(client, server, broken.clone(), marker));
        }
    });
    format!("http://{addr}")
}

async fn relay(client: TcpStream, server: TcpStream, broken: Arc<AtomicBool>, marker: &str) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let streaming = AtomicBool::new(false);
    let has = |bytes: &[u8], text: &str| String::from_utf8_lossy(bytes).contains(text);
    let up = async {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            if has(&buf[..n], "/stream HTTP") {
                streaming.store(true, Ordering::SeqCst);
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if streaming.load(Ordering::SeqCst)
                && has(&buf[..n], marker)
                && !broken.swap(true, Ordering::SeqCst)
            {
                break;
            }
        }
    };
    // Either side ending closes both connections.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_without_losing_or_repeating_events() {
    let answer = text_reply_events("The command said hi.", usage(2_000, 50));
    let steps = vec![
        Step::tool_use_reply("t1", "Bash", &json!({"command": "echo hi"}), usage(1_000, 100)),
        // Slow enough that the stream breaks while the run goes on.
        Step::Paced {
            gap: Duration::from_millis(150),
            items: answer.into_iter().map(Ok).collect(),
        },
    ];
    let provider = Arc::new(ScriptedProvider::new("scripted", steps));
    let mut app = TestApp::start_llm(Backend::Sqlite, &[], Registry::fixed(provider)).await;
    app.model("m1").await;
    app.tenant("acme", Some("m1")).await;
    let server = app.base.trim_start_matches("http://").to_owned();
    app.base = flaky_proxy(server, "tool_result").await;

    let out = chat(&app, &["--tenant", "acme", "-m", "hi"], "").await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("reconnecting (1/3)"), "{stderr}");
    let summary = stdout.lines().last().unwrap_or_default().to_owned();
    assert!(summary.starts_with("done: success · 2 turns"), "{stdout}");
    assert_eq!(
        stdout,
        format!("⚙ Bash: echo hi\n  ↳ ok: hi\nThe command said hi.\n{summary}\n")
    );
}
