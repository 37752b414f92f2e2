//! Workspace manifests: versions and change numbers, snapshots, presented flags, tenant isolation,
//! concurrency, reference counting for blob GC and usage totals.

use std::collections::HashSet;
use std::sync::Arc;

use hangar_store::{
    Change, ConversationStore, FileSource, FileVersion, ModelStore, NewConversation, SqlStore, TenantStore,
    WorkspaceId, WorkspaceStore, WorkspaceUsage,
};
use uuid::Uuid;

use super::*;

/// A digest that passes validation, distinct per `n`.
fn sha(n: u32) -> String {
    format!("{n:064x}")
}

fn put(path: &str, size: u64, n: u32, source: FileSource) -> Change {
    Change::Put {
        path: path.to_owned(),
        size,
        sha256: sha(n),
        mime_type: Some("text/plain".to_owned()),
        source,
        original_name: None,
        original_relative_path: None,
    }
}

fn delete(path: &str) -> Change {
    Change::Delete {
        path: path.to_owned(),
    }
}

/// `(path, version, seq, deleted)` of each row, to compare whole lists at a glance.
fn summary(rows: &[FileVersion]) -> Vec<(String, u64, u64, bool)> {
    rows.iter()
        .map(|r| (r.path.clone(), r.version, r.seq, r.deleted))
        .collect()
}

fn paths(rows: &[FileVersion]) -> Vec<&str> {
    rows.iter().map(|r| r.path.as_str()).collect()
}

/// Model `m1` and tenants `acme` and `other`.
async fn setup(store: &SqlStore) {
    store
        .create_model(&actor(), &new_model("m1", "Model One"))
        .await
        .unwrap();
    for tenant in ["acme", "other"] {
        store
            .create_tenant(&actor(), &new_tenant(tenant, None))
            .await
            .unwrap();
    }
}

async fn conversation(store: &SqlStore, tenant: &str) -> Uuid {
    let new = NewConversation {
        tenant_id: tid(tenant),
        user_id: "user-1".to_owned(),
        model_id: mid("m1"),
        workspace_enabled: true,
    };
    store.create_conversation(&new).await.unwrap().conversation_id
}

async fn workspace(store: &SqlStore, tenant: &str) -> WorkspaceId {
    let conversation = conversation(store, tenant).await;
    store.workspace_for(&tid(tenant), conversation).await.unwrap()
}

store_test!(versions_and_seqs_across_change_sets, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let ws = workspace(store, "acme").await;
    let run1 = Uuid::now_v7();
    let first = store
        .record_changes(
            ws,
            Some(run1),
            &[
                put("a.txt", 10, 1, FileSource::UserUpload),
                put("dir/b.txt", 20, 2, FileSource::AiCreated),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        summary(&first),
        [("a.txt".into(), 1, 1, false), ("dir/b.txt".into(), 1, 2, false)]
    );
    assert_eq!(first[0].source, FileSource::UserUpload);
    assert_eq!(first[0].sha256.as_deref(), Some(sha(1).as_str()));
    assert_eq!(first[0].mime_type.as_deref(), Some("text/plain"));
    assert_eq!((first[0].size, first[0].run_id), (10, Some(run1)));
    assert!(!first[0].presented);
    assert_recent(first[0].created_at);

    let run2 = Uuid::now_v7();
    let second = store
        .record_changes(
            ws,
            Some(run2),
            &[
                put("a.txt", 11, 3, FileSource::AiModified),
                delete("dir/b.txt"),
                put("c.txt", 5, 4, FileSource::AiCreated),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        summary(&second),
        [
            ("a.txt".into(), 2, 3, false),
            ("dir/b.txt".into(), 2, 4, true),
            ("c.txt".into(), 1, 5, false),
        ]
    );
    let deletion = &second[1];
    assert_eq!((deletion.size, deletion.sha256.as_deref()), (0, None));
    assert_eq!(deletion.run_id, Some(run2));

    // The latest state: one row per existing path, by path; the stored rows are what was returned.
    let files = store.files(ws, None).await.unwrap();
    assert_eq!(files, vec![second[0].clone(), second[2].clone()]);
    // All versions newest first, per path or for the whole workspace.
    let a = store.versions(ws, Some("a.txt")).await.unwrap();
    assert_eq!(a, vec![second[0].clone(), first[0].clone()]);
    let all = store.versions(ws, None).await.unwrap();
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 4, 3, 2, 1]);
    assert!(store.versions(ws, Some("nope")).await.unwrap().is_empty());

    // Several changes to one path in one set each become a version.
    let third = store
        .record_changes(
            ws,
            None,
            &[
                put("c.txt", 6, 5, FileSource::AiModified),
                put("c.txt", 7, 6, FileSource::AiModified),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        summary(&third),
        [("c.txt".into(), 2, 6, false), ("c.txt".into(), 3, 7, false)]
    );
    assert_eq!(third[0].run_id, None);
});

store_test!(unchanged_put_and_missing_delete_are_no_ops, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let ws = workspace(store, "acme").await;
    store
        .record_changes(ws, None, &[put("a.txt", 10, 1, FileSource::UserUpload)])
        .await
        .unwrap();
    // Same content (whatever the other fields say), a path that never existed: nothing written.
    let none = store
        .record_changes(
            ws,
            None,
            &[put("a.txt", 10, 1, FileSource::AiModified), delete("never.txt")],
        )
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    assert!(store.record_changes(ws, None, &[]).await.unwrap().is_empty());
    // No seq was used up: the next real change gets 2.
    let next = store
        .record_changes(ws, None, &[delete("a.txt"), delete("a.txt")])
        .await
        .unwrap();
    assert_eq!(summary(&next), [("a.txt".into(), 2, 2, true)]);
    // A second delete of a deleted path is a no-op too.
    assert!(
        store
            .record_changes(ws, None, &[delete("a.txt")])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.versions(ws, None).await.unwrap().len(), 2);
});

store_test!(delete_then_recreate_continues_the_version, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let ws = workspace(store, "acme").await;
    store
        .record_changes(ws, None, &[put("a.txt", 10, 1, FileSource::AiCreated)])
        .await
        .unwrap();
    store.record_changes(ws, None, &[delete("a.txt")]).await.unwrap();
    assert!(store.files(ws, None).await.unwrap().is_empty());
    // The same content as before the delete is a real change: the path did not exist.
    let back = store
        .record_changes(ws, None, &[put("a.txt", 10, 1, FileSource::AiCreated)])
        .await
        .unwrap();
    assert_eq!(summary(&back), [("a.txt".into(), 3, 3, false)]);
    assert_eq!(store.files(ws, None).await.unwrap(), back);
});

store_test!(state_at_a_snapshot_and_snapshot_idempotence, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let ws = workspace(store, "acme").await;
    let (run1, run2) = (Uuid::now_v7(), Uuid::now_v7());
    let first = store
        .record_changes(
            ws,
            Some(run1),
            &[
                put("a.txt", 10, 1, FileSource::AiCreated),
                put("b.txt", 20, 2, FileSource::AiCreated),
            ],
        )
        .await
        .unwrap();
    let snap1 = store.snapshot(ws, run1).await.unwrap();
    assert_eq!(
        (snap1.run_id, snap1.seq, snap1.files, snap1.bytes),
        (run1, 2, 2, 30)
    );
    assert_recent(snap1.created_at);

    tick().await;
    store
        .record_changes(
            ws,
            Some(run2),
            &[
                put("a.txt", 15, 3, FileSource::AiModified),
                delete("b.txt"),
                put("c.txt", 1, 4, FileSource::AiCreated),
            ],
        )
        .await
        .unwrap();
    let snap2 = store.snapshot(ws, run2).await.unwrap();
    assert_eq!((snap2.seq, snap2.files, snap2.bytes), (5, 2, 16));

    // Run 1's files are exactly what it wrote; the latest state is run 2's.
    assert_eq!(store.files(ws, Some(snap1.seq)).await.unwrap(), first);
    assert_eq!(paths(&store.files(ws, None).await.unwrap()), ["a.txt", "c.txt"]);
    assert_eq!(
        paths(&store.files(ws, Some(3)).await.unwrap()),
        ["a.txt", "b.txt"]
    );
    assert!(store.files(ws, Some(0)).await.unwrap().is_empty());

    // Taking run 1's snapshot again, after later changes, returns the first one.
    assert_eq!(store.snapshot(ws, run1).await.unwrap(), snap1);
    assert_eq!(store.snapshot_of(ws, run1).await.unwrap(), snap1);
    assert_eq!(store.snapshots(ws).await.unwrap(), vec![snap2.clone(), snap1]);
    let unknown = Uuid::now_v7();
    assert_not_found(
        store.snapshot_of(ws, unknown).await,
        "snapshot",
        &unknown.to_string(),
    );
    // A snapshot of another workspace is not this one's.
    let other_ws = workspace(store, "acme").await;
    assert_not_found(
        store.snapshot_of(other_ws, run2).await,
        "snapshot",
        &run2.to_string(),
    );
    assert!(store.snapshots(other_ws).await.unwrap().is_empty());
});

store_test!(presented_flags, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let ws = workspace(store, "acme").await;
    store
        .record_changes(
            ws,
            None,
            &[
                put("a.txt", 1, 1, FileSource::AiCreated),
                put("b.txt", 1, 2, FileSource::AiCreated),
            ],
        )
        .await
        .unwrap();
    store
        .record_changes(ws, None, &[put("a.txt", 2, 3, FileSource::AiModified)])
        .await
        .unwrap();
    store
        .set_presented(ws, &["a.txt".to_owned()], true)
        .await
        .unwrap();
    let presented = |rows: Vec<FileVersion>| {
        rows.into_iter()
            .map(|r| (r.path, r.version, r.presented))
            .collect::<Vec<_>>()
    };
    // Only the latest version is flagged; no version was added.
    assert_eq!(
        presented(store.versions(ws, None).await.unwrap()),
        [
            ("a.txt".to_owned(), 2, true),
            ("b.txt".to_owned(), 1, false),
            ("a.txt".to_owned(), 1, false),
        ]
    );
    // A new version of a presented file stays presented; a deleted path cannot be presented.
    let next = store
        .record_changes(
            ws,
            None,
            &[put("a.txt", 3, 4, FileSource::AiModified), delete("b.txt")],
        )
        .await
        .unwrap();
    assert!(next[0].presented);
    assert_not_found(
        store.set_presented(ws, &["b.txt".to_owned()], true).await,
        "file",
        "b.txt",
    );
    // An unknown path fails the whole call: the known one before it is left as it was.
    assert_not_found(
        store
            .set_presented(ws, &["a.txt".to_owned(), "nope.txt".to_owned()], false)
            .await,
        "file",
        "nope.txt",
    );
    assert!(store.files(ws, None).await.unwrap()[0].presented);
    store
        .set_presented(ws, &["a.txt".to_owned()], false)
        .await
        .unwrap();
    assert!(!store.files(ws, None).await.unwrap()[0].presented);
});

store_test!(tenant_isolation, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let acme_conv = conversation(store, "acme").await;
    let other_conv = conversation(store, "other").await;
    // Another tenant's conversation does not exist for this one, and gets no workspace.
    assert_not_found(
        store.workspace_for(&tid("other"), acme_conv).await,
        "conversation",
        &acme_conv.to_string(),
    );
    let missing = Uuid::now_v7();
    assert_not_found(
        store.workspace_for(&tid("acme"), missing).await,
        "conversation",
        &missing.to_string(),
    );
    let acme = store.workspace_for(&tid("acme"), acme_conv).await.unwrap();
    let other = store.workspace_for(&tid("other"), other_conv).await.unwrap();
    assert_ne!(acme, other);
    // Asking again returns the linked workspace.
    assert_eq!(store.workspace_for(&tid("acme"), acme_conv).await.unwrap(), acme);

    store
        .record_changes(acme, None, &[put("secret.txt", 100, 1, FileSource::UserUpload)])
        .await
        .unwrap();
    store
        .record_changes(other, None, &[put("mine.txt", 7, 2, FileSource::UserUpload)])
        .await
        .unwrap();
    assert_eq!(paths(&store.files(other, None).await.unwrap()), ["mine.txt"]);
    assert_eq!(paths(&store.versions(other, None).await.unwrap()), ["mine.txt"]);
    assert_eq!(
        store.tenant_workspace_usage(&tid("other")).await.unwrap(),
        WorkspaceUsage { files: 1, bytes: 7 }
    );
    assert!(
        store
            .blobs_in_use(&tid("other"), &[sha(1)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_not_found(
        store.delete_workspace(&tid("other"), acme).await,
        "workspace",
        &acme.to_string(),
    );
    assert_eq!(store.files(acme, None).await.unwrap().len(), 1);

    // A workspace that does not exist is NotFound, not an empty manifest.
    let ghost = WorkspaceId(Uuid::now_v7());
    let id = ghost.to_string();
    assert_not_found(store.files(ghost, None).await, "workspace", &id);
    assert_not_found(store.versions(ghost, None).await, "workspace", &id);
    assert_not_found(
        store.record_changes(ghost, None, &[delete("x")]).await,
        "workspace",
        &id,
    );
    assert_not_found(store.snapshot(ghost, Uuid::now_v7()).await, "workspace", &id);
    assert_not_found(store.workspace_usage(ghost).await, "workspace", &id);
});

store_test!(bad_changes_are_invalid, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let ws = workspace(store, "acme").await;
    let mut bad = put("a.txt", 1, 1, FileSource::AiCreated);
    if let Change::Put { sha256, .. } = &mut bad {
        *sha256 = "../../etc/passwd".to_owned();
    }
    assert_invalid(store.record_changes(ws, None, &[bad]).await, "sha256");
    assert_invalid(
        store
            .record_changes(ws, None, &[put("", 1, 1, FileSource::AiCreated)])
            .await,
        "path",
    );
    assert_invalid(
        store
            .record_changes(ws, None, &[put("big", u64::MAX, 1, FileSource::AiCreated)])
            .await,
        "size",
    );
    assert!(store.versions(ws, None).await.unwrap().is_empty());
});

store_test!(concurrent_workspace_for_yields_one_workspace, |db| async move {
    let store: Arc<SqlStore> = Arc::clone(&db.store);
    setup(&store).await;
    let conv = conversation(&store, "acme").await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.workspace_for(&tid("acme"), conv).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    let pool = raw(&db).await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM workspaces WHERE tenant_id = $1",
            "acme"
        )
        .await,
        1
    );
});

store_test!(concurrent_record_changes_keep_seqs_gap_free, |db| async move {
    let store: Arc<SqlStore> = Arc::clone(&db.store);
    setup(&store).await;
    let ws = workspace(&store, "acme").await;
    let tasks: Vec<_> = (0..6u32)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for round in 0..3u32 {
                    let n = task * 100 + round * 10;
                    let changes = [
                        put(
                            &format!("task-{task}/{round}.txt"),
                            1,
                            n + 1,
                            FileSource::AiCreated,
                        ),
                        put("shared.txt", 1, n + 2, FileSource::AiModified),
                    ];
                    store.record_changes(ws, None, &changes).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let all = store.versions(ws, None).await.unwrap();
    let mut seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    seqs.reverse();
    assert_eq!(seqs, (1..=36).collect::<Vec<_>>());
    let shared = store.versions(ws, Some("shared.txt")).await.unwrap();
    let versions: Vec<u64> = shared.iter().rev().map(|r| r.version).collect();
    assert_eq!(versions, (1..=18).collect::<Vec<_>>());
    assert_eq!(store.snapshot(ws, Uuid::now_v7()).await.unwrap().seq, 36);
});

store_test!(
    delete_workspace_returns_exactly_the_orphaned_digests,
    |db| async move {
        let store = &*db.store;
        setup(store).await;
        let conv1 = conversation(store, "acme").await;
        let ws1 = store.workspace_for(&tid("acme"), conv1).await.unwrap();
        let ws2 = workspace(store, "acme").await;
        let ws3 = workspace(store, "other").await;
        let run = Uuid::now_v7();
        store
            .record_changes(
                ws1,
                Some(run),
                &[
                    put("only-here", 1, 1, FileSource::AiCreated),
                    put("shared-in-tenant", 1, 2, FileSource::AiCreated),
                    put("shared-across-tenants", 1, 3, FileSource::AiCreated),
                    put("overwritten", 1, 4, FileSource::AiCreated),
                ],
            )
            .await
            .unwrap();
        store
            .record_changes(
                ws1,
                None,
                &[
                    put("overwritten", 1, 5, FileSource::AiModified),
                    delete("only-here"),
                ],
            )
            .await
            .unwrap();
        store.snapshot(ws1, run).await.unwrap();
        store
            .record_changes(ws2, None, &[put("copy", 1, 2, FileSource::UserUpload)])
            .await
            .unwrap();
        store
            .record_changes(ws3, None, &[put("theirs", 1, 3, FileSource::UserUpload)])
            .await
            .unwrap();
        let every: Vec<String> = (1..=6).map(sha).collect();
        assert_eq!(
            store.blobs_in_use(&tid("acme"), &every).await.unwrap(),
            [1, 2, 3, 4, 5].map(sha).into_iter().collect()
        );

        // Old versions and deleted paths still name their blobs until the workspace goes; sha 2 is
        // kept for ws2, sha 3 is only named by another tenant, whose blobs are its own.
        let orphans = store.delete_workspace(&tid("acme"), ws1).await.unwrap();
        assert_eq!(orphans, [1, 3, 4, 5].map(sha));
        assert_eq!(
            store.blobs_in_use(&tid("acme"), &every).await.unwrap(),
            HashSet::from([sha(2)])
        );
        assert_eq!(
            store.blobs_in_use(&tid("other"), &every).await.unwrap(),
            HashSet::from([sha(3)])
        );
        // The rows are gone, the conversation is unlinked and gets a fresh workspace on demand.
        assert_not_found(store.files(ws1, None).await, "workspace", &ws1.to_string());
        let pool = raw(&db).await;
        for sql in [
            "SELECT COUNT(*) FROM workspace_files WHERE workspace_id = $1",
            "SELECT COUNT(*) FROM workspace_snapshots WHERE workspace_id = $1",
            "SELECT COUNT(*) FROM conversations WHERE workspace_id = $1",
        ] {
            assert_eq!(count(&pool, sql, &ws1.to_string()).await, 0, "{sql}");
        }
        let fresh = store.workspace_for(&tid("acme"), conv1).await.unwrap();
        assert_ne!(fresh, ws1);
        assert!(store.files(fresh, None).await.unwrap().is_empty());
        assert_not_found(
            store.delete_workspace(&tid("acme"), ws1).await,
            "workspace",
            &ws1.to_string(),
        );
        // An empty digest list asks nothing; more digests than one IN list holds still work.
        assert!(store.blobs_in_use(&tid("acme"), &[]).await.unwrap().is_empty());
        let many: Vec<String> = (0..1_200).map(sha).collect();
        assert_eq!(
            store.blobs_in_use(&tid("acme"), &many).await.unwrap(),
            HashSet::from([sha(2)])
        );
        assert_eq!(store.delete_workspace(&tid("acme"), ws2).await.unwrap(), [sha(2)]);
    }
);

store_test!(usage_totals, |db| async move {
    let store = &*db.store;
    setup(store).await;
    let ws1 = workspace(store, "acme").await;
    let ws2 = workspace(store, "acme").await;
    assert_eq!(
        store.workspace_usage(ws1).await.unwrap(),
        WorkspaceUsage::default()
    );
    store
        .record_changes(
            ws1,
            None,
            &[
                put("a", 10, 1, FileSource::AiCreated),
                put("b", 20, 2, FileSource::AiCreated),
            ],
        )
        .await
        .unwrap();
    store
        .record_changes(
            ws1,
            None,
            &[
                put("a", 15, 3, FileSource::AiModified),
                delete("b"),
                put("c", 5, 4, FileSource::AiCreated),
            ],
        )
        .await
        .unwrap();
    store
        .record_changes(ws2, None, &[put("x", 1_000, 5, FileSource::UserUpload)])
        .await
        .unwrap();
    store
        .record_changes(
            workspace(store, "other").await,
            None,
            &[put("y", 7, 6, FileSource::UserUpload)],
        )
        .await
        .unwrap();
    // Latest versions only: a (15) and c (5); b is deleted, a's first version replaced.
    assert_eq!(
        store.workspace_usage(ws1).await.unwrap(),
        WorkspaceUsage { files: 2, bytes: 20 }
    );
    assert_eq!(
        store.tenant_workspace_usage(&tid("acme")).await.unwrap(),
        WorkspaceUsage {
            files: 3,
            bytes: 1_020
        }
    );
    assert_eq!(
        store.tenant_workspace_usage(&tid("nobody")).await.unwrap(),
        WorkspaceUsage::default()
    );
});
