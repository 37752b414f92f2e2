//! Conversations: create, read, list, update, delete with its cascade, the message log and the
//! model-facing history.

use std::collections::BTreeSet;
use std::sync::Arc;

use hangar_protocol::{Conversation, ConversationStatus, ConversationUpdate, RunStatus, RunUsage, Usd};
use hangar_store::{
    ConversationFilter, ConversationStore, HistoryEntry, HistoryKind, ModelStore, NewConversation, NewRun,
    NewUsage, RunOutcome, RunStore, SqlStore, StoredEvent, TenantStore, UsageStore,
};
use serde_json::json;
use uuid::Uuid;

use super::*;

/// Model `m1` and tenants `t1`, `t2`.
pub async fn setup(store: &SqlStore) {
    store
        .create_model(&actor(), &new_model("m1", "Model One"))
        .await
        .unwrap();
    for tenant in ["t1", "t2"] {
        store
            .create_tenant(&actor(), &new_tenant(tenant, Some("m1")))
            .await
            .unwrap();
    }
}

pub fn new_conversation(tenant: &str, user: &str) -> NewConversation {
    NewConversation {
        tenant_id: tid(tenant),
        user_id: user.to_owned(),
        model_id: mid("m1"),
        workspace_enabled: true,
    }
}

fn filter() -> ConversationFilter {
    ConversationFilter {
        user_id: None,
        status: None,
        from: None,
        to: None,
        limit: 100,
        offset: 0,
    }
}

fn ids(conversations: &[Conversation]) -> Vec<Uuid> {
    conversations.iter().map(|c| c.conversation_id).collect()
}

fn message(text: &str) -> HistoryEntry {
    HistoryEntry {
        kind: HistoryKind::Message,
        message: json!({"role": "user", "content": text}),
    }
}

fn summary(text: &str) -> HistoryEntry {
    HistoryEntry {
        kind: HistoryKind::Summary,
        message: json!({"role": "user", "content": format!("Summary: {text}")}),
    }
}

store_test!(create_and_get, |db| async move {
    let store = &db.store;
    setup(store).await;
    let created = store
        .create_conversation(&new_conversation("t1", "user-1"))
        .await
        .unwrap();
    assert_eq!(created.tenant_id, tid("t1"));
    assert_eq!(created.user_id, "user-1");
    assert_eq!(created.model_id, mid("m1"));
    assert_eq!(created.status, ConversationStatus::Active);
    assert_eq!(
        (created.title.as_deref(), created.session_id.as_deref()),
        (None, None)
    );
    assert!(created.workspace_enabled);
    assert_eq!(
        (
            created.total_input_tokens,
            created.total_output_tokens,
            created.estimated_context_tokens,
            created.context_limit_reached
        ),
        (0, 0, 0, false)
    );
    assert_eq!(created.created_at, created.updated_at);
    assert_recent(created.created_at);

    let id = created.conversation_id;
    assert_eq!(store.get_conversation(&tid("t1"), id).await.unwrap(), created);
    let id_text = id.to_string();
    assert_not_found(
        store.get_conversation(&tid("t2"), id).await,
        "conversation",
        &id_text,
    );
    let unknown = Uuid::now_v7();
    assert_not_found(
        store.get_conversation(&tid("t1"), unknown).await,
        "conversation",
        &unknown.to_string(),
    );

    let no_workspace = NewConversation {
        workspace_enabled: false,
        ..new_conversation("t1", "user-2")
    };
    let plain = store.create_conversation(&no_workspace).await.unwrap();
    assert!(!plain.workspace_enabled);
    assert_ne!(plain.conversation_id, id);
    assert!(
        !store
            .get_conversation(&tid("t1"), plain.conversation_id)
            .await
            .unwrap()
            .workspace_enabled
    );
});

store_test!(list_filters_order_and_paging, |db| async move {
    let store = &db.store;
    setup(store).await;
    let mut made = Vec::new();
    for user in ["u1", "u1", "u2", "u1"] {
        made.push(
            store
                .create_conversation(&new_conversation("t1", user))
                .await
                .unwrap(),
        );
        tick().await;
    }
    store
        .create_conversation(&new_conversation("t2", "u1"))
        .await
        .unwrap();
    let [a, b, c, d] = <[Conversation; 4]>::try_from(made).unwrap();

    // Newest update first: created d, c, b, a; then b is archived, which makes it the newest.
    let (all, total) = store.list_conversations(&tid("t1"), &filter()).await.unwrap();
    assert_eq!(
        ids(&all),
        vec![
            d.conversation_id,
            c.conversation_id,
            b.conversation_id,
            a.conversation_id
        ]
    );
    assert_eq!(total, 4);
    let archive = ConversationUpdate {
        title: None,
        status: Some(ConversationStatus::Archived),
    };
    store
        .update_conversation(&tid("t1"), b.conversation_id, &archive)
        .await
        .unwrap();
    let (all, _) = store.list_conversations(&tid("t1"), &filter()).await.unwrap();
    assert_eq!(
        ids(&all),
        vec![
            b.conversation_id,
            d.conversation_id,
            c.conversation_id,
            a.conversation_id
        ]
    );

    let by_user = ConversationFilter {
        user_id: Some("u1".into()),
        ..filter()
    };
    let (items, total) = store.list_conversations(&tid("t1"), &by_user).await.unwrap();
    assert_eq!(
        (ids(&items), total),
        (vec![b.conversation_id, d.conversation_id, a.conversation_id], 3)
    );

    let active_u1 = ConversationFilter {
        status: Some(ConversationStatus::Active),
        ..by_user.clone()
    };
    let (items, total) = store.list_conversations(&tid("t1"), &active_u1).await.unwrap();
    assert_eq!(
        (ids(&items), total),
        (vec![d.conversation_id, a.conversation_id], 2)
    );
    let archived = ConversationFilter {
        status: Some(ConversationStatus::Archived),
        ..filter()
    };
    let (items, total) = store.list_conversations(&tid("t1"), &archived).await.unwrap();
    assert_eq!((ids(&items), total), (vec![b.conversation_id], 1));

    // Dates filter on created_at, both ends inclusive.
    let window = ConversationFilter {
        from: Some(b.created_at),
        to: Some(c.created_at),
        ..filter()
    };
    let (items, total) = store.list_conversations(&tid("t1"), &window).await.unwrap();
    assert_eq!(
        (ids(&items), total),
        (vec![b.conversation_id, c.conversation_id], 2)
    );
    let since = ConversationFilter {
        from: Some(c.created_at),
        ..filter()
    };
    let (items, _) = store.list_conversations(&tid("t1"), &since).await.unwrap();
    assert_eq!(ids(&items), vec![d.conversation_id, c.conversation_id]);
    let until = ConversationFilter {
        to: Some(a.created_at),
        ..filter()
    };
    let (items, _) = store.list_conversations(&tid("t1"), &until).await.unwrap();
    assert_eq!(ids(&items), vec![a.conversation_id]);

    // A page: the total still counts every match.
    let page = ConversationFilter {
        limit: 2,
        offset: 1,
        ..filter()
    };
    let (items, total) = store.list_conversations(&tid("t1"), &page).await.unwrap();
    assert_eq!(
        (ids(&items), total),
        (vec![d.conversation_id, c.conversation_id], 4)
    );
    let past_end = ConversationFilter {
        offset: 10,
        ..filter()
    };
    let (items, total) = store.list_conversations(&tid("t1"), &past_end).await.unwrap();
    assert_eq!((items.len(), total), (0, 4));

    let (other, total) = store.list_conversations(&tid("t2"), &filter()).await.unwrap();
    assert_eq!((other.len(), total), (1, 1));
    assert_eq!(other[0].tenant_id, tid("t2"));
});

store_test!(update_title_usage, |db| async move {
    let store = &db.store;
    setup(store).await;
    let conv = store
        .create_conversation(&new_conversation("t1", "u1"))
        .await
        .unwrap();
    let id = conv.conversation_id;
    tick().await;

    let update = ConversationUpdate {
        title: Some("Quarterly report".into()),
        status: Some(ConversationStatus::Archived),
    };
    let updated = store.update_conversation(&tid("t1"), id, &update).await.unwrap();
    assert_eq!(updated.title.as_deref(), Some("Quarterly report"));
    assert_eq!(updated.status, ConversationStatus::Archived);
    assert!(updated.updated_at > conv.updated_at);
    assert_eq!(updated.created_at, conv.created_at);

    // Fields left out stay; an empty update changes nothing.
    let reactivate = ConversationUpdate {
        title: None,
        status: Some(ConversationStatus::Active),
    };
    let active = store
        .update_conversation(&tid("t1"), id, &reactivate)
        .await
        .unwrap();
    assert_eq!(active.title.as_deref(), Some("Quarterly report"));
    assert_eq!(active.status, ConversationStatus::Active);
    let same = store
        .update_conversation(&tid("t1"), id, &ConversationUpdate::default())
        .await
        .unwrap();
    assert_eq!(same, active);

    let id_text = id.to_string();
    assert_not_found(
        store.update_conversation(&tid("t2"), id, &update).await,
        "conversation",
        &id_text,
    );
    assert_eq!(store.get_conversation(&tid("t1"), id).await.unwrap(), active);

    tick().await;
    store.set_conversation_title(id, "Generated title").await.unwrap();
    let titled = store.get_conversation(&tid("t1"), id).await.unwrap();
    assert_eq!(titled.title.as_deref(), Some("Generated title"));
    assert!(titled.updated_at > active.updated_at);

    store
        .record_conversation_usage(id, 100, 20, 120, false)
        .await
        .unwrap();
    store
        .record_conversation_usage(id, 50, 5, 9_000, true)
        .await
        .unwrap();
    let used = store.get_conversation(&tid("t1"), id).await.unwrap();
    assert_eq!(
        (
            used.total_input_tokens,
            used.total_output_tokens,
            used.estimated_context_tokens,
            used.context_limit_reached
        ),
        (150, 25, 9_000, true)
    );
    assert!(used.updated_at >= titled.updated_at);
    store
        .record_conversation_usage(id, 1, 1, 10, false)
        .await
        .unwrap();
    let reset = store.get_conversation(&tid("t1"), id).await.unwrap();
    assert_eq!(
        (
            reset.total_input_tokens,
            reset.estimated_context_tokens,
            reset.context_limit_reached
        ),
        (151, 10, false)
    );

    let unknown = Uuid::now_v7();
    let unknown_text = unknown.to_string();
    assert_not_found(
        store.set_conversation_title(unknown, "x").await,
        "conversation",
        &unknown_text,
    );
    assert_not_found(
        store.record_conversation_usage(unknown, 1, 1, 1, false).await,
        "conversation",
        &unknown_text,
    );
});

store_test!(message_log_numbering, |db| async move {
    let store = &db.store;
    setup(store).await;
    let conv = store
        .create_conversation(&new_conversation("t1", "u1"))
        .await
        .unwrap();
    let id = conv.conversation_id;
    tick().await;

    let user = json!({"type": "user", "subtype": null, "timestamp": "2025-01-01T00:00:00Z", "text": "hi"});
    let assistant =
        json!({"type": "assistant", "subtype": null, "events": [{"event": "assistant", "seq": 3}]});
    let first = store.append_message_log(id, "user", &user).await.unwrap();
    let second = store
        .append_message_log(id, "assistant", &assistant)
        .await
        .unwrap();
    assert_eq!((first.message_seq, second.message_seq), (1, 2));
    assert_eq!(first.conversation_id, id);
    assert_eq!(first.message_subtype, None);
    assert_recent(first.timestamp);

    let log = store.message_log(&tid("t1"), id).await.unwrap();
    assert_eq!(log, vec![first.clone(), second.clone()]);
    assert_eq!(log[0].content.as_ref(), Some(&user));
    assert_eq!(log[1].message_type, "assistant");
    assert_eq!(log[1].content.as_ref(), Some(&assistant));
    // Appending touches the conversation.
    let touched = store.get_conversation(&tid("t1"), id).await.unwrap();
    assert!(touched.updated_at > conv.updated_at);

    let id_text = id.to_string();
    assert_not_found(store.message_log(&tid("t2"), id).await, "conversation", &id_text);
    let unknown = Uuid::now_v7();
    assert_not_found(
        store.append_message_log(unknown, "user", &user).await,
        "conversation",
        &unknown.to_string(),
    );

    // Another conversation numbers from 1 on its own.
    let other = store
        .create_conversation(&new_conversation("t1", "u2"))
        .await
        .unwrap();
    let row = store
        .append_message_log(other.conversation_id, "user", &user)
        .await
        .unwrap();
    assert_eq!(row.message_seq, 1);
    assert_eq!(
        store
            .message_log(&tid("t1"), other.conversation_id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.message_log(&tid("t1"), id).await.unwrap().len(), 2);
});

store_test!(concurrent_appends_get_consecutive_numbers, |db| async move {
    let store: Arc<SqlStore> = Arc::clone(&db.store);
    setup(&store).await;
    let id = store
        .create_conversation(&new_conversation("t1", "u1"))
        .await
        .unwrap()
        .conversation_id;
    let tasks: Vec<_> = (0..16)
        .map(|n| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .append_message_log(id, "user", &json!({"n": n}))
                    .await
                    .unwrap()
                    .message_seq
            })
        })
        .collect();
    let mut seqs = BTreeSet::new();
    for task in tasks {
        assert!(seqs.insert(task.await.unwrap()), "duplicate message_seq");
    }
    assert_eq!(seqs, (1..=16).collect());
    let log = store.message_log(&tid("t1"), id).await.unwrap();
    assert_eq!(
        log.iter().map(|m| m.message_seq).collect::<Vec<_>>(),
        (1..=16).collect::<Vec<_>>()
    );
    let contents: BTreeSet<i64> = log
        .iter()
        .map(|m| m.content.as_ref().unwrap()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(contents, (0..16).collect());
});

store_test!(history_from_latest_summary, |db| async move {
    let store = &db.store;
    setup(store).await;
    let id = store
        .create_conversation(&new_conversation("t1", "u1"))
        .await
        .unwrap()
        .conversation_id;
    assert_eq!(store.history(id).await.unwrap(), Vec::new());
    let (run1, run2, run3) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    store
        .append_history(id, run1, &[message("q1"), message("a1")])
        .await
        .unwrap();
    store.append_history(id, run1, &[]).await.unwrap();
    assert_eq!(
        store.history(id).await.unwrap(),
        vec![message("q1"), message("a1")]
    );

    store
        .append_history(id, run2, &[summary("one"), message("q2"), message("a2")])
        .await
        .unwrap();
    assert_eq!(
        store.history(id).await.unwrap(),
        vec![summary("one"), message("q2"), message("a2")]
    );

    store
        .append_history(id, run3, &[message("q3"), summary("two"), message("a3")])
        .await
        .unwrap();
    assert_eq!(
        store.history(id).await.unwrap(),
        vec![summary("two"), message("a3")]
    );

    // Numbering continued from the last entry across runs: every entry is stored once.
    let pool = raw(&db).await;
    let (n, max): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MAX(seq) FROM conversation_history WHERE conversation_id = $1")
            .bind(id.to_string())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((n, max), (8, 8));
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM conversation_history WHERE run_id = $1",
            &run3.to_string()
        )
        .await,
        3
    );

    // Another conversation's history is its own.
    let other = store
        .create_conversation(&new_conversation("t1", "u2"))
        .await
        .unwrap()
        .conversation_id;
    store.append_history(other, run1, &[message("x")]).await.unwrap();
    assert_eq!(store.history(other).await.unwrap(), vec![message("x")]);

    let unknown = Uuid::now_v7();
    assert_not_found(
        store.append_history(unknown, run1, &[message("x")]).await,
        "conversation",
        &unknown.to_string(),
    );
});

fn finished() -> RunOutcome {
    RunOutcome {
        status: RunStatus::Success,
        turn_count: 1,
        usage: RunUsage::default(),
        cost: Usd::ZERO,
        error: None,
    }
}

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

/// A conversation with a message log, a finished run with events, history and a usage row.
async fn populated(store: &SqlStore, tenant: &str) -> (Uuid, Uuid) {
    let id = store
        .create_conversation(&new_conversation(tenant, "u1"))
        .await
        .unwrap()
        .conversation_id;
    store
        .append_message_log(id, "user", &json!({"text": "hi"}))
        .await
        .unwrap();
    let run = store
        .create_run(&new_run(id, tenant, "node-a"))
        .await
        .unwrap()
        .run_id;
    let events = [1, 2].map(|seq| StoredEvent {
        seq,
        event: "assistant".into(),
        data: json!({"seq": seq}).to_string(),
    });
    store.append_run_events(run, &events).await.unwrap();
    store.append_history(id, run, &[message("hi")]).await.unwrap();
    store.finish_run(run, &finished()).await.unwrap();
    store
        .record_usage(&NewUsage {
            tenant_id: Some(tid(tenant)),
            user_id: Some("u1".into()),
            model_id: Some(mid("m1")),
            conversation_id: Some(id),
            run_id: Some(run),
            input_tokens: 10,
            output_tokens: 5,
            cost: Usd::from_nanos(1_234),
            ..NewUsage::default()
        })
        .await
        .unwrap();
    (id, run)
}

async fn rows(pool: &sqlx::AnyPool, conversation: Uuid, run: Uuid) -> [i64; 5] {
    let c = conversation.to_string();
    let r = run.to_string();
    [
        count(
            pool,
            "SELECT COUNT(*) FROM messages_log WHERE conversation_id = $1",
            &c,
        )
        .await,
        count(pool, "SELECT COUNT(*) FROM runs WHERE conversation_id = $1", &c).await,
        count(pool, "SELECT COUNT(*) FROM run_events WHERE run_id = $1", &r).await,
        count(
            pool,
            "SELECT COUNT(*) FROM conversation_history WHERE conversation_id = $1",
            &c,
        )
        .await,
        count(
            pool,
            "SELECT COUNT(*) FROM usage_logs WHERE conversation_id = $1",
            &c,
        )
        .await,
    ]
}

store_test!(delete_cascades_but_keeps_usage, |db| async move {
    let store = &db.store;
    setup(store).await;
    let pool = raw(&db).await;
    let (gone, gone_run) = populated(store, "t1").await;
    let (kept, kept_run) = populated(store, "t1").await;
    assert_eq!(rows(&pool, gone, gone_run).await, [1, 1, 2, 1, 1]);

    // Another tenant cannot delete it, and trying changes nothing.
    let gone_text = gone.to_string();
    assert_not_found(
        store.delete_conversation(&tid("t2"), gone).await,
        "conversation",
        &gone_text,
    );
    assert_eq!(rows(&pool, gone, gone_run).await, [1, 1, 2, 1, 1]);

    store.delete_conversation(&tid("t1"), gone).await.unwrap();
    assert_not_found(
        store.get_conversation(&tid("t1"), gone).await,
        "conversation",
        &gone_text,
    );
    assert_eq!(rows(&pool, gone, gone_run).await, [0, 0, 0, 0, 0]);
    // The bill stays, detached from the conversation.
    let run_text = gone_run.to_string();
    let (conversation, cost): (Option<String>, i64) =
        sqlx::query_as("SELECT conversation_id, cost_nano_usd FROM usage_logs WHERE run_id = $1")
            .bind(&run_text)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((conversation, cost), (None, 1_234));
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM usage_logs WHERE tenant_id = $1",
            "t1"
        )
        .await,
        2
    );

    // The other conversation is untouched.
    assert_eq!(rows(&pool, kept, kept_run).await, [1, 1, 2, 1, 1]);
    assert_not_found(
        store.delete_conversation(&tid("t1"), gone).await,
        "conversation",
        &gone_text,
    );
    assert_not_found(
        store.message_log(&tid("t1"), gone).await,
        "conversation",
        &gone_text,
    );
});

store_test!(delete_refused_while_running, |db| async move {
    let store = &db.store;
    setup(store).await;
    let pool = raw(&db).await;
    let id = store
        .create_conversation(&new_conversation("t1", "u1"))
        .await
        .unwrap()
        .conversation_id;
    store
        .append_message_log(id, "user", &json!({"text": "hi"}))
        .await
        .unwrap();
    let run = store
        .create_run(&new_run(id, "t1", "node-a"))
        .await
        .unwrap()
        .run_id;

    assert_conflict(store.delete_conversation(&tid("t1"), id).await, "running run");
    assert!(store.get_conversation(&tid("t1"), id).await.is_ok());
    assert_eq!(rows(&pool, id, run).await, [1, 1, 0, 0, 0]);

    let cancelled = RunOutcome {
        status: RunStatus::Cancelled,
        ..finished()
    };
    assert!(store.finish_run(run, &cancelled).await.unwrap());
    store.delete_conversation(&tid("t1"), id).await.unwrap();
    assert_eq!(rows(&pool, id, run).await, [0, 0, 0, 0, 0]);
});
