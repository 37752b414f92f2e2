//! The files API over a workspace that real runs wrote: latest and every version, downloads of
//! any version, presented files, snapshots, diff, restore, delete, upload with per-category
//! limits — and refusals for bad paths, other tenants and tampered content.

use hangar_llm::Step;
use hangar_store::testing::Backend;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::runs::{check_framing, message, run, setup, tool_call, usage};
use super::*;

async fn run_ok(app: &TestApp, conversation: &str, text: &str) -> String {
    let (status, run_id, events) = run(app, conversation, message(text)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(check_framing(&events)["status"], "success", "{events:#?}");
    run_id.unwrap()
}

async fn download(
    app: &TestApp,
    base: &str,
    query: &str,
) -> (StatusCode, String, reqwest::header::HeaderMap) {
    let response = app
        .client
        .get(app.url(&format!("{base}/files/download?{query}")))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, response.text().await.unwrap(), headers)
}

fn multipart(parts: &[(&str, Option<&str>, &str)]) -> String {
    let mut body = String::new();
    for (name, filename, content) in parts {
        body.push_str(&format!("--B\r\nContent-Disposition: form-data; name=\"{name}\""));
        if let Some(f) = filename {
            body.push_str(&format!("; filename=\"{f}\""));
        }
        body.push_str(&format!("\r\n\r\n{content}\r\n"));
    }
    body.push_str("--B--\r\n");
    body
}

#[tokio::test]
async fn files_versions_snapshots_diff_restore_delete_and_upload() {
    let steps = vec![
        tool_call(
            "c1",
            "Bash",
            json!({"command": "cd /workspace && printf 'first draft' > report.md && printf 'a,b' > data.csv"}),
        ),
        tool_call("p1", "present_files", json!({"file_paths": ["report.md"]})),
        Step::text_reply("drafted", usage(10, 1)),
        tool_call(
            "c2",
            "Bash",
            json!({"command": "printf 'second draft' > /workspace/report.md"}),
        ),
        Step::text_reply("revised", usage(10, 1)),
    ];
    let (app, _, conversation) = setup(Backend::Postgres, steps).await;
    let base = format!("/api/tenants/acme/conversations/{conversation}");
    let first = run_ok(&app, &conversation, "draft").await;
    let second = run_ok(&app, &conversation, "revise").await;

    let list = app.get(&format!("{base}/files")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["total_count"], 2);
    let report = list.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file_path"] == "report.md")
        .unwrap()
        .clone();
    assert_eq!(report["version"], 2);
    assert_eq!(report["source"], "ai_modified");
    assert_eq!(
        report["is_presented"], true,
        "presented by the tool, kept by the new version"
    );
    assert_eq!(report["mime_type"], "text/markdown; charset=utf-8");
    assert!(report["checksum"].as_str().unwrap().starts_with("sha256:"));
    let all = app.get(&format!("{base}/files?all_versions=true")).await;
    assert_eq!(all.body["total_count"], 3);

    let (status, body, headers) = download(&app, &base, "path=/workspace/report.md").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "second draft"));
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename*=UTF-8''report.md"
    );
    let (_, body, _) = download(&app, &base, "path=report.md&version=1").await;
    assert_eq!(body, "first draft");
    let presented = app.get(&format!("{base}/files/presented")).await;
    assert_eq!(presented.body["files"].as_array().unwrap().len(), 1);

    let snapshots = app.get(&format!("{base}/workspace/snapshots")).await;
    assert_eq!(snapshots.body.as_array().unwrap().len(), 2, "{}", snapshots.body);
    assert_eq!(snapshots.body[0]["run_id"], second.as_str());
    let diff = app
        .get(&format!("{base}/workspace/diff?from_run={first}&to_run={second}"))
        .await;
    assert_eq!(
        diff.body,
        json!({"from_run": first, "to_run": second, "added": [], "modified": ["report.md"], "deleted": []})
    );

    // Delete, then restore the first run: both files come back as they were, as new versions.
    let deleted = app.delete(&format!("{base}/files?path=data.csv")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let dir = app
        .state
        .settings
        .hangar_data_dir
        .join(format!("workspaces/acme/{conversation}"));
    assert!(
        !dir.join("data.csv").exists(),
        "the delete reached this node's directory"
    );
    assert_eq!(app.get(&format!("{base}/files")).await.body["total_count"], 1);
    let restored = app
        .post(&format!("{base}/workspace/restore"), json!({"run_id": first}))
        .await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.body);
    assert_eq!(restored.body["restored"], json!(["data.csv", "report.md"]));
    let (_, body, _) = download(&app, &base, "path=report.md").await;
    assert_eq!(body, "first draft");
    assert_eq!(
        std::fs::read_to_string(dir.join("report.md")).unwrap(),
        "first draft"
    );
    assert_eq!(std::fs::read_to_string(dir.join("data.csv")).unwrap(), "a,b");
    assert_eq!(
        app.get(&format!("{base}/files?all_versions=true")).await.body["total_count"],
        5
    );

    // Upload: streamed, a user_upload version; a file over its category's limit is 413.
    let send = |body: String| {
        app.client
            .post(app.url(&format!("{base}/files")))
            .header("x-api-key", ADMIN_KEY)
            .header("content-type", "multipart/form-data; boundary=B")
            .body(body)
            .send()
    };
    let response = send(multipart(&[
        ("directory", None, "inbox"),
        ("file", Some("notes.txt"), "hello"),
    ]))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let uploaded: Value = response.json().await.unwrap();
    assert_eq!(uploaded["files"][0]["file_path"], "inbox/notes.txt");
    assert_eq!(uploaded["files"][0]["source"], "user_upload");
    assert_eq!(
        std::fs::read_to_string(dir.join("inbox/notes.txt")).unwrap(),
        "hello"
    );
    let big = "x".repeat(5 * 1024 * 1024 + 1);
    let response = send(multipart(&[("file", Some("big.txt"), &big)])).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE", "{body}");
    let response = send(multipart(&[("file", Some("../escape.txt"), "x")]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!dir.join("../escape.txt").exists());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_paths_other_tenants_and_tampered_content_are_refused() {
    let steps = vec![
        tool_call(
            "c1",
            "Bash",
            json!({"command": "printf secret > /workspace/a.txt"}),
        ),
        Step::text_reply("done", usage(10, 1)),
    ];
    let (app, _, conversation) = setup(Backend::Sqlite, steps).await;
    let base = format!("/api/tenants/acme/conversations/{conversation}");
    run_ok(&app, &conversation, "write").await;

    for bad in [
        "../etc/passwd",
        "/etc/passwd",
        "a%00b",
        "a%5Cb",
        "a//b",
        "./a.txt",
    ] {
        let (status, body, _) = download(&app, &base, &format!("path={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, _, _) = download(&app, &base, "path=missing.txt").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = download(&app, &base, "path=a.txt&version=7").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let unknown_run = uuid::Uuid::new_v4();
    let diff = app
        .get(&format!(
            "{base}/workspace/diff?from_run={unknown_run}&to_run={unknown_run}"
        ))
        .await;
    assert_eq!(diff.status, StatusCode::NOT_FOUND, "{}", diff.body);
    let restore = app
        .post(
            &format!("{base}/workspace/restore"),
            json!({"run_id": unknown_run}),
        )
        .await;
    assert_eq!(restore.status, StatusCode::NOT_FOUND);

    // Another tenant's key sees nothing of it, not even that it exists.
    app.tenant("other", Some("m1")).await;
    let key = app.tenant_key("other").await;
    let foreign = app
        .send(Method::GET, &format!("{base}/files"), Some(&key), None)
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let foreign = app
        .send(
            Method::GET,
            &format!("/api/tenants/other/conversations/{conversation}/files"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);

    // A blob whose bytes no longer match its digest is reported, never served.
    let blobs = app.state.settings.hangar_data_dir.join("blobs/acme/blobs");
    let stored: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stored.len(), 1);
    std::fs::write(&stored[0], "tampered").unwrap();
    let (status, body, _) = download(&app, &base, "path=a.txt").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("integrity"), "{body}");
    assert!(!body.contains("tampered"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn quotas_hold_at_sync_and_at_upload() {
    let steps = vec![
        tool_call(
            "c1",
            "Bash",
            json!({"command": "cd /workspace && printf 1 > a && printf 2 > b && printf 3 > c"}),
        ),
        Step::text_reply("three files", usage(10, 1)),
    ];
    let (app, _, conversation) =
        super::runs::setup_with(Backend::Sqlite, &[("WORKSPACE_MAX_FILES", "2")], steps).await;
    let base = format!("/api/tenants/acme/conversations/{conversation}");
    let (status, _, events) = run(&app, &conversation, message("make three")).await;
    assert_eq!(status, StatusCode::OK);
    check_framing(&events);
    let error = events
        .iter()
        .find(|(n, d)| n == "error" && d["error_type"] == "workspace_error")
        .map(|(_, d)| d)
        .expect("a workspace_error event");
    assert!(
        error["message"].as_str().unwrap().contains("quota is 2"),
        "{error}"
    );
    assert_eq!(app.get(&format!("{base}/files")).await.body["total_count"], 0);

    let response = app
        .client
        .post(app.url(&format!("{base}/files")))
        .header("x-api-key", ADMIN_KEY)
        .header("content-type", "multipart/form-data; boundary=B")
        .body(multipart(&[
            ("file", Some("x.txt"), "x"),
            ("file", Some("y.txt"), "y"),
            ("file", Some("z.txt"), "z"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );
    let tenant: hangar_protocol::TenantId = "acme".parse().unwrap();
    let blobs = app.state.workspaces.blobs().list(&tenant).await.unwrap();
    assert!(blobs.is_empty(), "a refused upload leaves no blobs: {blobs:?}");
    app.stop().await.unwrap();
}
