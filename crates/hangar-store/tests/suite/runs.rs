//! Runs: one running run per conversation, finishing once, events and crash recovery.

use std::sync::Arc;

use hangar_protocol::{Run, RunStatus, RunUsage, Usd};
use hangar_store::{ConversationStore, NewRun, RunOutcome, RunStore, SqlStore, StoredEvent};
use uuid::Uuid;

use super::conversations::{new_conversation, setup};
use super::*;

fn new_run(conversation: Uuid, tenant: &str, node: &str) -> NewRun {
    NewRun {
        run_id: Uuid::now_v7(),
        tenant_id: tid(tenant),
        conversation_id: conversation,
        user_id: "u1".into(),
        model_id: mid("m1"),
        node_id: node.into(),
    }
}

fn outcome(status: RunStatus) -> RunOutcome {
    RunOutcome {
        status,
        turn_count: 3,
        usage: RunUsage {
            input_tokens: 1_000,
            output_tokens: 200,
            cache_creation_5m_tokens: 30,
            cache_creation_1h_tokens: 4,
            cache_read_tokens: 500,
            total_tokens: 1_734,
        },
        cost: Usd::from_nanos(12_345_678),
        error: None,
    }
}

fn events(seqs: impl IntoIterator<Item = u64>) -> Vec<StoredEvent> {
    seqs.into_iter()
        .map(|seq| StoredEvent {
            seq,
            event: if seq % 2 == 0 { "assistant" } else { "thinking" }.to_owned(),
            data: format!(r#"{{"seq":{seq},"content":"part {seq}"}}"#),
        })
        .collect()
}

fn run_ids(runs: &[Run]) -> Vec<Uuid> {
    runs.iter().map(|r| r.run_id).collect()
}

async fn conversation(store: &SqlStore, tenant: &str) -> Uuid {
    store
        .create_conversation(&new_conversation(tenant, "u1"))
        .await
        .unwrap()
        .conversation_id
}

store_test!(create_get_list, |db| async move {
    let store = &db.store;
    setup(store).await;
    let conv = conversation(store, "t1").await;
    let new = new_run(conv, "t1", "node-a");
    let run = store.create_run(&new).await.unwrap();
    assert_eq!(run.run_id, new.run_id);
    assert_eq!(run.conversation_id, conv);
    assert_eq!(
        (run.tenant_id.clone(), run.user_id.as_str(), run.model_id.clone()),
        (tid("t1"), "u1", mid("m1"))
    );
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(
        (run.turn_count, run.usage, run.cost_usd),
        (0, RunUsage::default(), Usd::ZERO)
    );
    assert_eq!((run.error.as_deref(), run.finished_at), (None, None));
    assert_recent(run.started_at);

    let id = run.run_id;
    let id_text = id.to_string();
    assert_eq!(store.get_run(&tid("t1"), conv, id).await.unwrap(), run);
    assert_not_found(store.get_run(&tid("t2"), conv, id).await, "run", &id_text);
    assert_not_found(
        store.get_run(&tid("t1"), Uuid::now_v7(), id).await,
        "run",
        &id_text,
    );
    assert_run_not_found(store.get_run(&tid("t1"), conv, Uuid::now_v7()).await);

    // More runs, one after the other; newest first.
    let mut all = vec![run];
    for _ in 0..3 {
        store
            .finish_run(all.last().unwrap().run_id, &outcome(RunStatus::Success))
            .await
            .unwrap();
        tick().await;
        all.push(store.create_run(&new_run(conv, "t1", "node-a")).await.unwrap());
    }
    all.reverse();
    let (items, total) = store.list_runs(&tid("t1"), conv, 100, 0).await.unwrap();
    assert_eq!((run_ids(&items), total), (run_ids(&all), 4));
    assert_eq!(items[0].status, RunStatus::Running);
    assert_eq!(items[1].status, RunStatus::Success);
    let (page, total) = store.list_runs(&tid("t1"), conv, 2, 1).await.unwrap();
    assert_eq!((run_ids(&page), total), (run_ids(&all[1..3]), 4));

    let conv_text = conv.to_string();
    assert_not_found(
        store.list_runs(&tid("t2"), conv, 100, 0).await,
        "conversation",
        &conv_text,
    );
    let empty = conversation(store, "t1").await;
    assert_eq!(
        store.list_runs(&tid("t1"), empty, 100, 0).await.unwrap(),
        (Vec::new(), 0)
    );

    // A run only starts in a conversation of its own tenant.
    assert_not_found(
        store.create_run(&new_run(conv, "t2", "node-a")).await,
        "conversation",
        &conv_text,
    );
});

/// `assert_not_found` with the id unknown beforehand: only the resource is checked.
#[track_caller]
fn assert_run_not_found<T: std::fmt::Debug>(result: Result<T, hangar_store::StoreError>) {
    match result {
        Err(hangar_store::StoreError::NotFound { resource, .. }) => assert_eq!(resource, "run"),
        other => panic!("expected NotFound run, got {other:?}"),
    }
}

store_test!(one_running_run_per_conversation, |db| async move {
    let store = &db.store;
    setup(store).await;
    let conv = conversation(store, "t1").await;
    let first = store.create_run(&new_run(conv, "t1", "node-a")).await.unwrap();
    // Refused by the unique index, whichever node asks.
    assert_conflict(
        store.create_run(&new_run(conv, "t1", "node-a")).await,
        "running run",
    );
    assert_conflict(
        store.create_run(&new_run(conv, "t1", "node-b")).await,
        "running run",
    );
    // Other conversations are not affected.
    let other = conversation(store, "t1").await;
    store.create_run(&new_run(other, "t1", "node-a")).await.unwrap();

    assert!(
        store
            .finish_run(first.run_id, &outcome(RunStatus::Error))
            .await
            .unwrap()
    );
    let second = store.create_run(&new_run(conv, "t1", "node-b")).await.unwrap();
    assert_eq!(second.status, RunStatus::Running);
    let (_, total) = store.list_runs(&tid("t1"), conv, 100, 0).await.unwrap();
    assert_eq!(total, 2);

    // A run id is used once.
    store
        .finish_run(second.run_id, &outcome(RunStatus::Success))
        .await
        .unwrap();
    let again = NewRun {
        run_id: second.run_id,
        ..new_run(conv, "t1", "node-a")
    };
    assert_conflict(store.create_run(&again).await, "already exists");
    assert_run_not_found(store.get_run(&tid("t1"), conv, Uuid::now_v7()).await);
});

store_test!(concurrent_starts_admit_one, |db| async move {
    let store: Arc<SqlStore> = Arc::clone(&db.store);
    setup(&store).await;
    let conv = conversation(&store, "t1").await;
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_run(&new_run(conv, "t1", &format!("node-{n}"))).await })
        })
        .collect();
    let mut started = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(run) => {
                assert_eq!(run.status, RunStatus::Running);
                started += 1;
            }
            Err(hangar_store::StoreError::Conflict { message, .. }) => {
                assert!(message.contains("running run"), "{message}");
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(started, 1);
    let (runs, total) = store.list_runs(&tid("t1"), conv, 100, 0).await.unwrap();
    assert_eq!((runs.len(), total), (1, 1));
});

store_test!(finish_only_once, |db| async move {
    let store = &db.store;
    setup(store).await;
    let conv = conversation(store, "t1").await;
    let run = store.create_run(&new_run(conv, "t1", "node-a")).await.unwrap();

    assert_invalid(
        store.finish_run(run.run_id, &outcome(RunStatus::Running)).await,
        "status",
    );
    let failed = RunOutcome {
        error: Some("model unavailable".into()),
        ..outcome(RunStatus::Error)
    };
    assert!(store.finish_run(run.run_id, &failed).await.unwrap());
    let done = store.get_run(&tid("t1"), conv, run.run_id).await.unwrap();
    assert_eq!(done.status, RunStatus::Error);
    assert_eq!(done.turn_count, 3);
    assert_eq!(done.usage, failed.usage);
    assert_eq!(done.cost_usd, Usd::from_nanos(12_345_678));
    assert_eq!(done.error.as_deref(), Some("model unavailable"));
    assert_eq!(done.started_at, run.started_at);
    let finished_at = done.finished_at.unwrap();
    assert!(finished_at >= done.started_at);
    assert_recent(finished_at);

    // The second finish (e.g. a cancel racing the end) changes nothing.
    assert!(
        !store
            .finish_run(run.run_id, &outcome(RunStatus::Cancelled))
            .await
            .unwrap()
    );
    assert_eq!(store.get_run(&tid("t1"), conv, run.run_id).await.unwrap(), done);
    assert!(
        !store
            .finish_run(Uuid::now_v7(), &outcome(RunStatus::Success))
            .await
            .unwrap()
    );
});

store_test!(events_paging_and_atomic_batches, |db| async move {
    let store = &db.store;
    setup(store).await;
    let conv = conversation(store, "t1").await;
    let run = store
        .create_run(&new_run(conv, "t1", "node-a"))
        .await
        .unwrap()
        .run_id;
    let other = conversation(store, "t1").await;
    let other_run = store
        .create_run(&new_run(other, "t1", "node-a"))
        .await
        .unwrap()
        .run_id;

    store.append_run_events(run, &events(1..=3)).await.unwrap();
    store.append_run_events(run, &events(4..=7)).await.unwrap();
    store.append_run_events(run, &[]).await.unwrap();
    store.append_run_events(other_run, &events(1..=2)).await.unwrap();

    assert_eq!(store.run_events(run, 0, 100).await.unwrap(), events(1..=7));
    assert_eq!(store.run_events(run, 2, 2).await.unwrap(), events(3..=4));
    assert_eq!(store.run_events(run, 5, 100).await.unwrap(), events(6..=7));
    assert_eq!(store.run_events(run, 7, 100).await.unwrap(), Vec::new());
    assert_eq!(store.run_events(run, 0, 0).await.unwrap(), Vec::new());
    assert_eq!(store.run_events(other_run, 0, 100).await.unwrap(), events(1..=2));
    assert_eq!(
        store.run_events(Uuid::now_v7(), 0, 100).await.unwrap(),
        Vec::new()
    );
    assert_eq!(store.last_run_event_seq(run).await.unwrap(), 7);
    assert_eq!(store.last_run_event_seq(other_run).await.unwrap(), 2);
    assert_eq!(store.last_run_event_seq(Uuid::now_v7()).await.unwrap(), 0);
    // The data comes back exactly as sent.
    assert_eq!(
        store.run_events(run, 0, 1).await.unwrap()[0].data,
        r#"{"seq":1,"content":"part 1"}"#
    );

    // A batch with a number already stored is refused whole.
    assert_conflict(
        store.append_run_events(run, &events([8, 9, 3])).await,
        "already stored",
    );
    assert_eq!(store.run_events(run, 0, 100).await.unwrap(), events(1..=7));
    let unknown = Uuid::now_v7();
    assert_not_found(
        store.append_run_events(unknown, &events([1])).await,
        "run",
        &unknown.to_string(),
    );

    // Events outlive the run's end (a late reconnect can still replay them).
    store.finish_run(run, &outcome(RunStatus::Success)).await.unwrap();
    assert_eq!(store.run_events(run, 6, 100).await.unwrap(), events([7]));
});

store_test!(running_runs_by_node, |db| async move {
    let store = &db.store;
    setup(store).await;
    let mut on_a = Vec::new();
    for _ in 0..3 {
        let conv = conversation(store, "t1").await;
        on_a.push(store.create_run(&new_run(conv, "t1", "node-a")).await.unwrap());
        tick().await;
    }
    let conv_b = conversation(store, "t2").await;
    let on_b = store.create_run(&new_run(conv_b, "t2", "node-b")).await.unwrap();
    store
        .finish_run(on_a[1].run_id, &outcome(RunStatus::Success))
        .await
        .unwrap();

    let left = store.running_runs("node-a").await.unwrap();
    assert_eq!(run_ids(&left), vec![on_a[0].run_id, on_a[2].run_id]);
    assert_eq!(store.running_runs("node-b").await.unwrap(), vec![on_b.clone()]);
    assert_eq!(store.running_runs("node-c").await.unwrap(), Vec::new());

    // Closing them as interrupted leaves nothing for the next start.
    for run in &left {
        assert!(
            store
                .finish_run(run.run_id, &outcome(RunStatus::Interrupted))
                .await
                .unwrap()
        );
    }
    assert_eq!(store.running_runs("node-a").await.unwrap(), Vec::new());
    let closed = store
        .get_run(&tid("t1"), on_a[0].conversation_id, on_a[0].run_id)
        .await
        .unwrap();
    assert_eq!(closed.status, RunStatus::Interrupted);
});
