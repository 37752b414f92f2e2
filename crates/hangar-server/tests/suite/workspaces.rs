//! Versioned workspaces end to end: runs in a real sandbox create, change and delete files;
//! each run leaves a snapshot; unchanged files are neither uploaded nor versioned again; a node
//! without the directory gets it back from the blob store; symlinks are never synced; deleting
//! the conversation removes its blobs.

use hangar_llm::Step;
use hangar_sandbox::hostfs::RelPath;
use hangar_store::testing::Backend;
use hangar_store::{FileSource, WorkspaceId};
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::runs::{LiveStream, check_framing, message, run, setup, tool_call, usage};
use super::*;

fn bash(id: &str, command: &str) -> Step {
    tool_call(id, "Bash", json!({"command": command}))
}

/// The conversation's manifest: (path, version, source, sha) of the latest state.
async fn manifest(app: &TestApp, workspace: WorkspaceId) -> Vec<(String, u64, FileSource)> {
    app.state
        .store
        .files(workspace, None)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.version, f.source))
        .collect()
}

async fn run_ok(app: &TestApp, conversation: &str, text: &str) -> Vec<(String, Value)> {
    let (status, _, events) = run(app, conversation, message(text)).await;
    assert_eq!(status, StatusCode::OK);
    let done = check_framing(&events);
    assert_eq!(done["status"], "success", "{events:#?}");
    events
}

#[tokio::test]
async fn runs_version_their_files_and_a_fresh_node_gets_them_back() {
    let steps = vec![
        // Run 1: two files, a cache file and a planted symlink.
        bash(
            "c1",
            "cd /workspace && printf alpha > a.txt && mkdir -p d/__pycache__ && printf beta > d/b.txt \
             && printf x > d/__pycache__/m.pyc && ln -s /etc/passwd leak",
        ),
        Step::text_reply("made", usage(10, 1)),
        // Run 2: nothing changes.
        bash("c2", "true"),
        Step::text_reply("idle", usage(10, 1)),
        // Run 3: one change, one deletion.
        bash("c3", "cd /workspace && printf ALPHA2 > a.txt && rm d/b.txt"),
        Step::text_reply("changed", usage(10, 1)),
        // Run 4, on a "fresh node": the files are back.
        bash("c4", "cat /workspace/a.txt; ls /workspace/d"),
        Step::text_reply("read", usage(10, 1)),
    ];
    let (app, _, conversation) = setup(Backend::Sqlite, steps).await;
    let tenant: hangar_protocol::TenantId = "acme".parse().unwrap();
    let conversation_id: uuid::Uuid = conversation.parse().unwrap();
    let workspace = app
        .state
        .store
        .workspace_for(&tenant, conversation_id)
        .await
        .unwrap();
    let blobs = |app: &TestApp| {
        let (blobs, tenant) = (app.state.workspaces.blobs().clone(), tenant.clone());
        async move { blobs.list(&tenant).await.unwrap().len() }
    };

    run_ok(&app, &conversation, "make files").await;
    assert_eq!(
        manifest(&app, workspace).await,
        [
            ("a.txt".to_owned(), 1, FileSource::AiCreated),
            ("d/b.txt".to_owned(), 1, FileSource::AiCreated),
        ],
        "caches and symlinks are not synced"
    );
    assert_eq!(blobs(&app).await, 2);
    let first = app.state.store.snapshots(workspace).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].files, first[0].bytes), (2, 9));

    run_ok(&app, &conversation, "do nothing").await;
    let versions = app.state.store.versions(workspace, None).await.unwrap();
    assert_eq!(versions.len(), 2, "an unchanged run adds no version");
    assert_eq!(blobs(&app).await, 2, "and uploads nothing");
    let snapshots = app.state.store.snapshots(workspace).await.unwrap();
    assert_eq!(snapshots.len(), 2);
    assert_eq!(snapshots[0].seq, snapshots[1].seq);

    run_ok(&app, &conversation, "change things").await;
    assert_eq!(
        manifest(&app, workspace).await,
        [("a.txt".to_owned(), 2, FileSource::AiModified)]
    );
    let deleted = app
        .state
        .store
        .versions(workspace, Some("d/b.txt"))
        .await
        .unwrap();
    assert!(deleted[0].deleted, "{deleted:?}");
    // The first run's snapshot still has both files as they were.
    let at_first = app
        .state
        .store
        .files(workspace, Some(first[0].seq))
        .await
        .unwrap();
    assert_eq!(at_first.len(), 2);

    // Another node: no directory, no index, no sandbox.
    app.state
        .sandboxes
        .release(&conversation, "test: another node")
        .await;
    let dir = app.state.workspaces.dir(&tenant, conversation_id);
    std::fs::remove_dir_all(&dir).unwrap();
    let events = run_ok(&app, &conversation, "read it").await;
    let result = events
        .iter()
        .find(|(n, d)| n == "tool_result" && d["tool_use_id"] == "c4")
        .unwrap();
    assert!(result.1["content"].to_string().contains("ALPHA2"), "{}", result.1);
    assert!(!dir.join("d/b.txt").exists(), "a deleted file is not restored");
    assert_eq!(std::fs::read_to_string(dir.join("a.txt")).unwrap(), "ALPHA2");
    assert_eq!(app.state.store.versions(workspace, None).await.unwrap().len(), 4);

    // Deleting the conversation removes its versions and blobs.
    let reply = app
        .delete(&format!("/api/tenants/acme/conversations/{conversation}"))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    assert_eq!(blobs(&app).await, 0);
    assert!(!dir.exists());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn attached_files_become_user_uploads_before_the_run_reads_them() {
    let steps = vec![
        bash("c1", "cat /workspace/uploads/docs/brief.md"),
        Step::text_reply("read", usage(10, 1)),
    ];
    let (app, _, conversation) = setup(Backend::Sqlite, steps).await;
    let metadata = json!([{"filename": "brief.md", "relative_path": "docs/brief.md", "size": 5,
                           "content_type": "text/markdown"}]);
    let body = format!(
        "--B\r\nContent-Disposition: form-data; name=\"request_data\"\r\n\r\n{}\r\n\
         --B\r\nContent-Disposition: form-data; name=\"file_metadata\"\r\n\r\n{metadata}\r\n\
         --B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"brief.md\"\r\n\r\nhello\r\n\
         --B--\r\n",
        message("read the brief")
    );
    let response = app
        .client
        .post(app.url(&format!("/api/tenants/acme/conversations/{conversation}/stream")))
        .header("x-api-key", ADMIN_KEY)
        .header("content-type", "multipart/form-data; boundary=B")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events: Vec<_> = sse_events(&response.text().await.unwrap())
        .into_iter()
        .filter(|(n, _)| n != "ping")
        .collect();
    assert_eq!(check_framing(&events)["status"], "success", "{events:#?}");
    let result = events.iter().find(|(n, _)| n == "tool_result").unwrap();
    assert!(result.1["content"].to_string().contains("hello"), "{}", result.1);

    let tenant: hangar_protocol::TenantId = "acme".parse().unwrap();
    let workspace = app
        .state
        .store
        .workspace_for(&tenant, conversation.parse().unwrap())
        .await
        .unwrap();
    let files = app.state.store.files(workspace, None).await.unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].path, "uploads/docs/brief.md");
    assert_eq!(
        files[0].source,
        FileSource::UserUpload,
        "the run does not re-version it"
    );
    assert_eq!(files[0].original_name.as_deref(), Some("brief.md"));
    assert_eq!(files[0].run_id, None);
    assert!(RelPath::parse(&files[0].path).is_ok());
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_long_run_saves_its_files_before_it_ends() {
    let steps = vec![
        bash("c1", "printf early > /workspace/early.txt"),
        bash("c2", "sleep 4"),
        Step::text_reply("done", usage(10, 1)),
    ];
    let (app, _, conversation) =
        super::runs::setup_with(Backend::Sqlite, &[("WORKSPACE_SYNC_INTERVAL", "0.2")], steps).await;
    let tenant: hangar_protocol::TenantId = "acme".parse().unwrap();
    let workspace = app
        .state
        .store
        .workspace_for(&tenant, conversation.parse().unwrap())
        .await
        .unwrap();
    let mut stream = LiveStream::post(&app, &conversation, message("write, then wait")).await;
    stream.until("\"tool_use_id\":\"c2\"").await;
    // The second command sleeps; the first one's file is saved meanwhile.
    let mut saved = Vec::new();
    for _ in 0..30 {
        saved = app.state.store.files(workspace, None).await.unwrap();
        if !saved.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        !stream.text.contains("event: done"),
        "the run ended before the check"
    );
    assert_eq!(saved.len(), 1, "nothing saved during the run");
    assert_eq!(saved[0].path, "early.txt");
    assert!(saved[0].run_id.is_some());
    let events = stream.finish().await;
    assert_eq!(check_framing(&events)["status"], "success");
    assert_eq!(
        app.state.store.versions(workspace, None).await.unwrap().len(),
        1,
        "the final sync adds nothing for an unchanged file"
    );
    app.stop().await.unwrap();
}
