//! The `hangar` binary: admin commands share the server's store and validation; production
//! refuses unsafe settings before touching anything.

use std::process::{Command, Output};

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

fn hangar(data_dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hangar"));
    command
        .env_clear()
        .env("HANGAR_DATA_DIR", data_dir)
        .env("LOG_LEVEL", "warn")
        .args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run hangar")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn admin_commands_and_server_share_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = json(&hangar(
        d,
        &[],
        &[
            "models",
            "create",
            "m1",
            "--display-name",
            "M1",
            "--provider-model-id",
            "anthropic.m1",
            "--input-price",
            "0.003",
        ],
    ));
    assert_eq!(model["input_token_price"], "0.003000");
    let tenant = json(&hangar(
        d,
        &[],
        &[
            "tenants",
            "create",
            "acme",
            "--model",
            "m1",
            "--system-prompt",
            "Hi",
        ],
    ));
    assert_eq!(tenant["model_id"], "m1");
    let key = json(&hangar(d, &[], &["api-keys", "create", "acme", "--name", "cli"]));
    let secret = key["key"].as_str().unwrap().to_owned();
    let updated = json(&hangar(
        d,
        &[],
        &["tenants", "update", "acme", "--clear-system-prompt"],
    ));
    assert_eq!(updated["system_prompt"], Value::Null);

    let bad = hangar(d, &[], &["tenants", "create", "../etc"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("tenant_id"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let in_use = hangar(d, &[], &["models", "delete", "m1"]);
    assert!(!in_use.status.success());
    assert!(String::from_utf8_lossy(&in_use.stderr).contains("in use"));

    // The server sees what the CLI made, and the CLI's key works against it.
    let url = format!("sqlite://{}/hangar.db", d.display());
    let vars = [("DATABASE_URL", url.as_str())];
    let app = TestApp::start_cli_db(&vars).await;
    let reply = app
        .send(Method::GET, "/api/tenants/acme", Some(&secret), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let audit = app.get("/api/audit-log?action=tenant.create").await;
    assert_eq!(audit.body[0]["actor"], "cli");
}

#[test]
fn production_refuses_unsafe_settings_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = hangar(
        dir.path(),
        &[("APP_ENV", "production"), ("CORS_ORIGINS", "*")],
        &["migrate"],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("API_KEYS is empty"), "{stderr}");
    assert!(stderr.contains("CORS_ORIGINS contains '*'"), "{stderr}");
    assert!(!dir.path().join("hangar.db").exists(), "nothing was touched");
    let bad_port = hangar(dir.path(), &[("APP_PORT", "http")], &["migrate"]);
    assert_eq!(bad_port.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_port.stderr).contains("app_port"));
}

#[test]
fn migrate_creates_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let out = hangar(&data, &[], &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(data.join("hangar.db").exists());
    let openapi = hangar(&data, &[], &["openapi"]);
    assert_eq!(json(&openapi)["openapi"], "3.1.0");
}

#[tokio::test]
async fn dev_fake_model_serves_a_script_file() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/fake-model.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hangar"))
        .env_clear()
        .env("LOG_LEVEL", "warn")
        .args([
            "dev",
            "fake-model",
            "--script",
            script,
            "--addr",
            &addr.to_string(),
        ])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{addr}/v1/messages");
    let body = json!({ "model": "fake-1", "max_tokens": 10, "stream": true,
                       "messages": [{ "role": "user", "content": "hi" }] });
    let mut reply = None;
    for _ in 0..100 {
        let sent = client
            .post(&url)
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await;
        if let Ok(response) = sent {
            reply = Some(response);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let text = reply
        .expect("the fake model server came up")
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: message_start"), "{text}");
    assert!(text.contains("I am a scripted model"), "{text}");
    child.kill().await.unwrap();
}

#[test]
fn sandbox_check_and_run() {
    let data = tempfile::tempdir().unwrap();
    let check = hangar(data.path(), &[], &["sandbox", "check"]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for item in [
        "bubblewrap",
        "runc",
        "user_namespaces",
        "cgroups",
        "seccomp",
        "landlock",
    ] {
        assert!(text.contains(item), "{item} missing from:\n{text}");
    }
    assert!(text.contains("configured backend bwrap: ready"), "{text}");
    let run = hangar(
        data.path(),
        &[],
        &[
            "sandbox",
            "run",
            "--",
            "/bin/sh",
            "-c",
            "echo in-sandbox; id -u; exit 4",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout), "in-sandbox\n1000\n");
    assert_eq!(run.status.code(), Some(4));
    let oci = hangar(
        data.path(),
        &[("SANDBOX_BACKEND", "oci")],
        &["sandbox", "run", "--", "/bin/echo", "via runc"],
    );
    assert_eq!(
        String::from_utf8_lossy(&oci.stdout),
        "via runc\n",
        "{}",
        String::from_utf8_lossy(&oci.stderr)
    );
}
