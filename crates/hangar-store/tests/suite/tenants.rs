//! Tenants: create, read, list, update, delete and its protections.

use std::sync::Arc;

use hangar_protocol::{
    ApiKeyCreate, ModelStatus, ModelUpdate, TenantCreate, TenantPolicy, TenantStatus, TenantUpdate,
};
use hangar_store::{ApiKeyStore, ModelStore, TenantFilter, TenantStore};

use super::*;

store_test!(create_get_list, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m1", "Model One"))
        .await
        .unwrap();
    let new = TenantCreate {
        tenant_id: tid("acme"),
        system_prompt: Some("Be terse.".to_owned()),
        model_id: Some(mid("m1")),
        policy: Default::default(),
    };
    let created = store.create_tenant(&actor(), &new).await.unwrap();
    assert_eq!(created.tenant_id, tid("acme"));
    assert_eq!(created.system_prompt.as_deref(), Some("Be terse."));
    assert_eq!(created.model_id, Some(mid("m1")));
    assert_eq!(created.status, TenantStatus::Active);
    assert_eq!(created.created_at, created.updated_at);
    assert_recent(created.created_at);

    let plain = store
        .create_tenant(&actor(), &new_tenant("plain", None))
        .await
        .unwrap();
    assert_eq!((plain.system_prompt, plain.model_id), (None, None));

    assert_eq!(store.get_tenant(&tid("acme")).await.unwrap(), created);
    let listed = store.list_tenants(&all_tenants()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&created));
    assert_not_found(store.get_tenant(&tid("nobody")).await, "tenant", "nobody");
});

store_test!(list_order_filter_paging, |db| async move {
    let store = &db.store;
    for id in ["t-a", "t-b", "t-c", "t-d"] {
        store
            .create_tenant(&actor(), &new_tenant(id, None))
            .await
            .unwrap();
        tick().await;
    }
    let patch = TenantUpdate {
        status: Some(TenantStatus::Inactive),
        ..Default::default()
    };
    store.update_tenant(&actor(), &tid("t-b"), &patch).await.unwrap();

    let ids = |tenants: Vec<hangar_protocol::Tenant>| {
        tenants
            .into_iter()
            .map(|t| t.tenant_id.to_string())
            .collect::<Vec<_>>()
    };
    let list = |status: Option<TenantStatus>, limit: i64, offset: i64| {
        let store = Arc::clone(store);
        async move {
            ids(store
                .list_tenants(&TenantFilter {
                    status,
                    limit,
                    offset,
                })
                .await
                .unwrap())
        }
    };
    // Newest first, by creation (an update does not move a tenant).
    assert_eq!(list(None, 100, 0).await, ["t-d", "t-c", "t-b", "t-a"]);
    assert_eq!(
        list(Some(TenantStatus::Active), 100, 0).await,
        ["t-d", "t-c", "t-a"]
    );
    assert_eq!(list(Some(TenantStatus::Inactive), 100, 0).await, ["t-b"]);
    assert_eq!(list(None, 2, 0).await, ["t-d", "t-c"]);
    assert_eq!(list(None, 2, 2).await, ["t-b", "t-a"]);
    assert_eq!(list(None, 2, 3).await, ["t-a"]);
    assert_eq!(list(None, 2, 4).await, Vec::<String>::new());
    assert_eq!(list(Some(TenantStatus::Active), 1, 1).await, ["t-c"]);
});

store_test!(duplicate_id_conflicts, |db| async move {
    let store = &db.store;
    let first = TenantCreate {
        system_prompt: Some("first".to_owned()),
        ..new_tenant("dup", None)
    };
    let created = store.create_tenant(&actor(), &first).await.unwrap();
    let second = TenantCreate {
        system_prompt: Some("second".to_owned()),
        ..new_tenant("dup", None)
    };
    let details = assert_conflict(
        store.create_tenant(&actor(), &second).await,
        "'dup' already exists",
    );
    assert_eq!(details, vec![]);
    // The original is untouched.
    assert_eq!(store.get_tenant(&tid("dup")).await.unwrap(), created);
    assert_eq!(store.list_tenants(&all_tenants()).await.unwrap().len(), 1);
});

store_test!(missing_default_model_not_found, |db| async move {
    let store = &db.store;
    let result = store
        .create_tenant(&actor(), &new_tenant("acme", Some("ghost")))
        .await;
    assert_not_found(result, "model", "ghost");
    assert_not_found(store.get_tenant(&tid("acme")).await, "tenant", "acme");
});

store_test!(deprecated_default_model_invalid, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("old", "Old"))
        .await
        .unwrap();
    let patch = ModelUpdate {
        status: Some(ModelStatus::Deprecated),
        ..Default::default()
    };
    store.update_model(&actor(), &mid("old"), &patch).await.unwrap();
    assert_invalid(
        store
            .create_tenant(&actor(), &new_tenant("acme", Some("old")))
            .await,
        "model_id",
    );
    assert_not_found(store.get_tenant(&tid("acme")).await, "tenant", "acme");
});

store_test!(update_applies_present_fields_only, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();
    store
        .create_model(&actor(), &new_model("m2", "Two"))
        .await
        .unwrap();
    let new = TenantCreate {
        system_prompt: Some("prompt".to_owned()),
        ..new_tenant("acme", Some("m1"))
    };
    let created = store.create_tenant(&actor(), &new).await.unwrap();
    tick().await;

    // Nothing present: nothing changes but the update time.
    let same = store
        .update_tenant(&actor(), &tid("acme"), &TenantUpdate::default())
        .await
        .unwrap();
    assert_eq!(
        (&same.system_prompt, &same.model_id, same.status),
        (&created.system_prompt, &created.model_id, created.status)
    );
    assert_eq!(same.created_at, created.created_at);
    assert!(same.updated_at > created.updated_at, "updated_at did not move");

    // Status only.
    let patch = TenantUpdate {
        status: Some(TenantStatus::Inactive),
        ..Default::default()
    };
    let t = store.update_tenant(&actor(), &tid("acme"), &patch).await.unwrap();
    assert_eq!(t.status, TenantStatus::Inactive);
    assert_eq!(t.system_prompt.as_deref(), Some("prompt"));
    assert_eq!(t.model_id, Some(mid("m1")));

    // Model only.
    let patch = TenantUpdate {
        model_id: Some(Some(mid("m2"))),
        ..Default::default()
    };
    let t = store.update_tenant(&actor(), &tid("acme"), &patch).await.unwrap();
    assert_eq!(t.model_id, Some(mid("m2")));
    assert_eq!(t.system_prompt.as_deref(), Some("prompt"));
    assert_eq!(t.status, TenantStatus::Inactive);

    // Explicit null clears the prompt, leaves the model.
    let patch = TenantUpdate {
        system_prompt: Some(None),
        ..Default::default()
    };
    let t = store.update_tenant(&actor(), &tid("acme"), &patch).await.unwrap();
    assert_eq!(t.system_prompt, None);
    assert_eq!(t.model_id, Some(mid("m2")));

    // Explicit null clears the model; a new prompt is set in the same patch.
    let patch = TenantUpdate {
        model_id: Some(None),
        system_prompt: Some(Some("new".to_owned())),
        status: None,
        policy: Default::default(),
    };
    let t = store.update_tenant(&actor(), &tid("acme"), &patch).await.unwrap();
    assert_eq!(t.model_id, None);
    assert_eq!(t.system_prompt.as_deref(), Some("new"));
    assert_eq!(t.status, TenantStatus::Inactive);

    // What update returns is what is stored.
    assert_eq!(store.get_tenant(&tid("acme")).await.unwrap(), t);
    // m2 is no longer referenced.
    assert_eq!(store.model_usage(&mid("m2")).await.unwrap().tenants, 0);
});

store_test!(update_checks_new_default_model, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();
    store
        .create_model(&actor(), &new_model("old", "Old"))
        .await
        .unwrap();
    let patch = ModelUpdate {
        status: Some(ModelStatus::Deprecated),
        ..Default::default()
    };
    store.update_model(&actor(), &mid("old"), &patch).await.unwrap();
    let created = store
        .create_tenant(&actor(), &new_tenant("acme", Some("m1")))
        .await
        .unwrap();

    let to = |m: &str| TenantUpdate {
        model_id: Some(Some(mid(m))),
        system_prompt: Some(Some("x".into())),
        status: None,
        policy: Default::default(),
    };
    assert_not_found(
        store.update_tenant(&actor(), &tid("acme"), &to("ghost")).await,
        "model",
        "ghost",
    );
    assert_invalid(
        store.update_tenant(&actor(), &tid("acme"), &to("old")).await,
        "model_id",
    );
    // A refused update changes nothing, not even the fields that were fine.
    assert_eq!(store.get_tenant(&tid("acme")).await.unwrap(), created);
});

store_test!(update_unknown_not_found, |db| async move {
    let patch = TenantUpdate {
        status: Some(TenantStatus::Inactive),
        ..Default::default()
    };
    assert_not_found(
        db.store.update_tenant(&actor(), &tid("nobody"), &patch).await,
        "tenant",
        "nobody",
    );
    assert_eq!(db.store.list_tenants(&all_tenants()).await.unwrap(), vec![]);
});

store_test!(delete_then_get_not_found, |db| async move {
    let store = &db.store;
    store
        .create_tenant(&actor(), &new_tenant("gone", None))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("stays", None))
        .await
        .unwrap();
    store.delete_tenant(&actor(), &tid("gone")).await.unwrap();
    assert_not_found(store.get_tenant(&tid("gone")).await, "tenant", "gone");
    let left: Vec<_> = store
        .list_tenants(&all_tenants())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tenant_id)
        .collect();
    assert_eq!(left, vec![tid("stays")]);
    assert_not_found(
        store.delete_tenant(&actor(), &tid("gone")).await,
        "tenant",
        "gone",
    );
    assert_not_found(
        store.delete_tenant(&actor(), &tid("never")).await,
        "tenant",
        "never",
    );
    // The id is free again.
    store
        .create_tenant(&actor(), &new_tenant("gone", None))
        .await
        .unwrap();
});

store_test!(delete_cascades_api_keys, |db| async move {
    let store = &db.store;
    store
        .create_tenant(&actor(), &new_tenant("acme", None))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("other", None))
        .await
        .unwrap();
    let k1 = store
        .create_api_key(&actor(), &tid("acme"), &ApiKeyCreate::default())
        .await
        .unwrap();
    let k2 = store
        .create_api_key(&actor(), &tid("acme"), &ApiKeyCreate::default())
        .await
        .unwrap();
    let kept = store
        .create_api_key(&actor(), &tid("other"), &ApiKeyCreate::default())
        .await
        .unwrap();
    assert!(store.authenticate_api_key(&k1.key).await.unwrap().is_some());

    store.delete_tenant(&actor(), &tid("acme")).await.unwrap();

    let pool = raw(&db).await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1",
            "acme"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1",
            "other"
        )
        .await,
        1
    );
    assert_eq!(store.authenticate_api_key(&k1.key).await.unwrap(), None);
    assert_eq!(store.authenticate_api_key(&k2.key).await.unwrap(), None);
    assert!(store.authenticate_api_key(&kept.key).await.unwrap().is_some());
    // A tenant re-created under the same id does not inherit the old keys.
    store
        .create_tenant(&actor(), &new_tenant("acme", None))
        .await
        .unwrap();
    assert_eq!(store.list_api_keys(&tid("acme")).await.unwrap(), vec![]);
    assert_eq!(store.authenticate_api_key(&k1.key).await.unwrap(), None);
});

store_test!(delete_refused_while_tenant_owns_data, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("acme", None))
        .await
        .unwrap();
    let key = store
        .create_api_key(&actor(), &tid("acme"), &ApiKeyCreate::default())
        .await
        .unwrap();
    let pool = raw(&db).await;
    insert_conversation(&pool, "c1", "acme", "m1").await;
    insert_conversation(&pool, "c2", "acme", "m1").await;

    let details = assert_conflict(store.delete_tenant(&actor(), &tid("acme")).await, "'acme'");
    assert_eq!(details, vec![in_use("conversations", 2)]);

    insert_usage_log(&pool, "u1", "acme", "m1").await;
    let details = assert_conflict(
        store.delete_tenant(&actor(), &tid("acme")).await,
        "cannot be deleted",
    );
    assert_eq!(details, vec![in_use("conversations", 2), in_use("usage_logs", 1)]);

    // Nothing was deleted, not even the keys (which would otherwise go with the tenant).
    store.get_tenant(&tid("acme")).await.unwrap();
    assert_eq!(store.list_api_keys(&tid("acme")).await.unwrap().len(), 1);
    assert!(store.authenticate_api_key(&key.key).await.unwrap().is_some());

    // Once the data is gone the delete goes through.
    sqlx::query("DELETE FROM usage_logs")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM conversations")
        .execute(&pool)
        .await
        .unwrap();
    store.delete_tenant(&actor(), &tid("acme")).await.unwrap();
    assert_not_found(store.get_tenant(&tid("acme")).await, "tenant", "acme");
});

store_test!(concurrent_creates_all_succeed, |db| async move {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(&db.store);
            tokio::spawn(async move {
                let new = TenantCreate {
                    system_prompt: Some(format!("prompt {i}")),
                    ..new_tenant(&format!("c-{i:02}"), None)
                };
                store.create_tenant(&actor(), &new).await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let tenant = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("create c-{i:02}: {e:?}"));
        assert_eq!(tenant.system_prompt, Some(format!("prompt {i}")));
    }
    let mut ids: Vec<_> = db
        .store
        .list_tenants(&all_tenants())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tenant_id.to_string())
        .collect();
    ids.sort();
    let expected: Vec<_> = (0..20).map(|i| format!("c-{i:02}")).collect();
    assert_eq!(ids, expected);
    let audit = hangar_store::AuditStore::list_audit(
        &*db.store,
        &hangar_store::AuditFilter {
            action: Some("tenant.create".into()),
            ..all_audit()
        },
    )
    .await
    .unwrap();
    assert_eq!(audit.len(), 20);
});

store_test!(concurrent_partial_updates_keep_both, |db| async move {
    for round in 0..20 {
        let id = tid(&format!("t-{round}"));
        let new = TenantCreate {
            system_prompt: Some("old".to_owned()),
            ..new_tenant(id.as_str(), None)
        };
        db.store.create_tenant(&actor(), &new).await.unwrap();
        let prompt = TenantUpdate {
            system_prompt: Some(Some("new".to_owned())),
            ..Default::default()
        };
        let status = TenantUpdate {
            status: Some(TenantStatus::Inactive),
            ..Default::default()
        };
        let tasks = [prompt, status].map(|patch| {
            let (store, id) = (Arc::clone(&db.store), id.clone());
            tokio::spawn(async move { store.update_tenant(&actor(), &id, &patch).await })
        });
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let t = db.store.get_tenant(&id).await.unwrap();
        assert_eq!(
            (t.system_prompt.as_deref(), t.status),
            (Some("new"), TenantStatus::Inactive),
            "round {round}: one of two concurrent updates was lost"
        );
    }
});

store_test!(policy_round_trips_and_is_replaced_whole, |db| async move {
    let store = &db.store;
    let policy = TenantPolicy {
        allowed_tools: Some(vec!["Bash".to_owned(), "Read".to_owned()]),
        denied_tools: vec!["Bash".to_owned()],
        egress_domains: vec!["pypi.org".to_owned(), "*.pythonhosted.org".to_owned()],
    };
    let new = TenantCreate {
        policy: policy.clone(),
        ..new_tenant("acme", None)
    };
    let created = store.create_tenant(&actor(), &new).await.unwrap();
    assert_eq!(created.policy, policy);
    assert_eq!(store.get_tenant(&tid("acme")).await.unwrap().policy, policy);

    let prompt_only = TenantUpdate {
        system_prompt: Some(Some("p".to_owned())),
        ..Default::default()
    };
    let kept = store
        .update_tenant(&actor(), &tid("acme"), &prompt_only)
        .await
        .unwrap();
    assert_eq!(kept.policy, policy, "a patch without policy keeps it");

    let replace = TenantUpdate {
        policy: Some(TenantPolicy::default()),
        ..Default::default()
    };
    let cleared = store
        .update_tenant(&actor(), &tid("acme"), &replace)
        .await
        .unwrap();
    assert_eq!(cleared.policy, TenantPolicy::default());
    let plain = store
        .create_tenant(&actor(), &new_tenant("plain", None))
        .await
        .unwrap();
    assert_eq!(plain.policy, TenantPolicy::default());
});
