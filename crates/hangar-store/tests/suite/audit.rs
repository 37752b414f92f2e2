//! The audit log: admin changes are recorded with who did them; refused changes are not.

use hangar_protocol::{ApiKeyCreate, ModelUpdate, TenantCreate, TenantStatus, TenantUpdate};
use hangar_store::{Actor, ApiKeyStore, AuditEntry, AuditFilter, AuditStore, ModelStore, TenantStore};
use serde_json::json;

use super::*;

fn filter(tenant: Option<&str>, action: Option<&str>) -> AuditFilter {
    AuditFilter {
        tenant_id: tenant.map(str::to_owned),
        action: action.map(str::to_owned),
        ..all_audit()
    }
}

store_test!(admin_actions_are_recorded, |db| async move {
    let store = &db.store;
    let admin = Actor::new("admin:3f9a", Some("req-42".to_owned()));
    store.create_model(&admin, &new_model("m1", "One")).await.unwrap();
    tick().await;
    let new = TenantCreate {
        system_prompt: Some("p".to_owned()),
        ..new_tenant("acme", Some("m1"))
    };
    store.create_tenant(&admin, &new).await.unwrap();
    tick().await;
    let patch = TenantUpdate {
        system_prompt: Some(None),
        status: Some(TenantStatus::Inactive),
        model_id: None,
        policy: Default::default(),
    };
    store.update_tenant(&admin, &tid("acme"), &patch).await.unwrap();
    tick().await;
    let key = store
        .create_api_key(
            &admin,
            &tid("acme"),
            &ApiKeyCreate {
                name: Some("ci".into()),
                expires_at: None,
            },
        )
        .await
        .unwrap();
    tick().await;
    let key_id = key.api_key.key_id.to_string();
    store
        .revoke_api_key(&admin, &tid("acme"), &key.api_key.key_id)
        .await
        .unwrap();
    tick().await;
    let model_patch = ModelUpdate {
        display_name: Some("Uno".into()),
        model_region: Some(None),
        ..Default::default()
    };
    store
        .update_model(&admin, &mid("m1"), &model_patch)
        .await
        .unwrap();
    tick().await;
    store.delete_tenant(&admin, &tid("acme")).await.unwrap();
    tick().await;
    store.delete_model(&Actor::cli(), &mid("m1")).await.unwrap();

    let records = store.list_audit(&all_audit()).await.unwrap();
    let summary: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.action.as_str(),
                r.actor.as_str(),
                r.resource_type.as_deref(),
                r.resource_id.as_deref(),
                r.tenant_id.as_deref(),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        summary,
        vec![
            ("model.delete", "cli", Some("model"), Some("m1"), None),
            (
                "tenant.delete",
                "admin:3f9a",
                Some("tenant"),
                Some("acme"),
                Some("acme")
            ),
            ("model.update", "admin:3f9a", Some("model"), Some("m1"), None),
            (
                "api_key.revoke",
                "admin:3f9a",
                Some("api_key"),
                Some(key_id.as_str()),
                Some("acme")
            ),
            (
                "api_key.create",
                "admin:3f9a",
                Some("api_key"),
                Some(key_id.as_str()),
                Some("acme")
            ),
            (
                "tenant.update",
                "admin:3f9a",
                Some("tenant"),
                Some("acme"),
                Some("acme")
            ),
            (
                "tenant.create",
                "admin:3f9a",
                Some("tenant"),
                Some("acme"),
                Some("acme")
            ),
            ("model.create", "admin:3f9a", Some("model"), Some("m1"), None),
        ]
    );
    for r in &records {
        assert_eq!(r.outcome, "success");
        assert_recent(r.occurred_at);
        let expected_request = if r.actor == "cli" { None } else { Some("req-42") };
        assert_eq!(r.request_id.as_deref(), expected_request, "{}", r.action);
    }
    for pair in records.windows(2) {
        assert!(pair[0].occurred_at >= pair[1].occurred_at, "not newest first");
        assert_ne!(pair[0].audit_id, pair[1].audit_id);
    }
    // Details say what changed, with the patch's explicit nulls kept.
    let details = |action: &str| {
        records
            .iter()
            .find(|r| r.action == action)
            .unwrap()
            .details
            .clone()
    };
    assert_eq!(details("tenant.create"), json!({ "model_id": "m1" }));
    assert_eq!(
        details("tenant.update"),
        json!({ "system_prompt": null, "status": "inactive" })
    );
    assert_eq!(
        details("model.update"),
        json!({ "display_name": "Uno", "model_region": null })
    );
    assert_eq!(
        details("api_key.create"),
        json!({ "name": "ci", "expires_at": null })
    );
    assert_eq!(details("tenant.delete"), serde_json::Value::Null);
    // The audit log never holds the key itself.
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains(&key.key), "audit log holds the secret");
});

store_test!(refused_actions_leave_no_record, |db| async move {
    let store = &db.store;
    store
        .create_tenant(&actor(), &new_tenant("acme", None))
        .await
        .unwrap();
    assert!(
        store
            .create_tenant(&actor(), &new_tenant("acme", None))
            .await
            .is_err()
    );
    assert!(
        store
            .create_tenant(&actor(), &new_tenant("b", Some("ghost")))
            .await
            .is_err()
    );
    let patch = TenantUpdate {
        model_id: Some(Some(mid("ghost"))),
        ..Default::default()
    };
    assert!(store.update_tenant(&actor(), &tid("acme"), &patch).await.is_err());
    assert!(store.delete_tenant(&actor(), &tid("ghost")).await.is_err());
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();
    assert!(
        store
            .create_model(&actor(), &new_model("m1", "One"))
            .await
            .is_err()
    );
    let actions: Vec<_> = store
        .list_audit(&all_audit())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["model.create", "tenant.create"]);
});

store_test!(filter_by_tenant_and_action, |db| async move {
    let store = &db.store;
    store
        .create_tenant(&actor(), &new_tenant("t-a", None))
        .await
        .unwrap();
    tick().await;
    store
        .create_tenant(&actor(), &new_tenant("t-b", None))
        .await
        .unwrap();
    tick().await;
    store
        .create_api_key(&actor(), &tid("t-a"), &ApiKeyCreate::default())
        .await
        .unwrap();
    tick().await;
    let patch = TenantUpdate {
        status: Some(TenantStatus::Inactive),
        ..Default::default()
    };
    store.update_tenant(&actor(), &tid("t-b"), &patch).await.unwrap();
    tick().await;
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();

    let list = |tenant: Option<&str>, action: Option<&str>| {
        let f = filter(tenant, action);
        let store = std::sync::Arc::clone(store);
        async move {
            store
                .list_audit(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|r| format!("{}:{}", r.action, r.tenant_id.unwrap_or_default()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(None, None).await,
        [
            "model.create:",
            "tenant.update:t-b",
            "api_key.create:t-a",
            "tenant.create:t-b",
            "tenant.create:t-a"
        ]
    );
    assert_eq!(
        list(Some("t-a"), None).await,
        ["api_key.create:t-a", "tenant.create:t-a"]
    );
    assert_eq!(
        list(Some("t-b"), None).await,
        ["tenant.update:t-b", "tenant.create:t-b"]
    );
    assert_eq!(
        list(None, Some("tenant.create")).await,
        ["tenant.create:t-b", "tenant.create:t-a"]
    );
    assert_eq!(
        list(Some("t-b"), Some("tenant.create")).await,
        ["tenant.create:t-b"]
    );
    assert_eq!(
        list(Some("t-a"), Some("tenant.update")).await,
        Vec::<String>::new()
    );
    assert_eq!(list(Some("nobody"), None).await, Vec::<String>::new());

    let page = AuditFilter {
        limit: 2,
        offset: 1,
        ..all_audit()
    };
    let actions: Vec<_> = store
        .list_audit(&page)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions, ["tenant.update", "api_key.create"]);
});

store_test!(record_audit_standalone, |db| async move {
    let store = &db.store;
    let entry = AuditEntry {
        actor: "anonymous".to_owned(),
        request_id: Some("req-9".to_owned()),
        tenant_id: Some("acme".to_owned()),
        action: "auth.denied".to_owned(),
        resource_type: None,
        resource_id: None,
        outcome: "denied".to_owned(),
        details: json!({ "reason": "unknown key", "path": "/api/x" }),
    };
    store.record_audit(&entry).await.unwrap();
    tick().await;
    let bare = AuditEntry::admin(&Actor::cli(), "sandbox.start", "sandbox", "sb-1");
    store.record_audit(&bare).await.unwrap();

    let records = store.list_audit(&all_audit()).await.unwrap();
    assert_eq!(records.len(), 2);
    let bare_rec = &records[0];
    assert_eq!(
        (
            bare_rec.action.as_str(),
            bare_rec.actor.as_str(),
            bare_rec.outcome.as_str()
        ),
        ("sandbox.start", "cli", "success")
    );
    assert_eq!(
        (bare_rec.resource_type.as_deref(), bare_rec.resource_id.as_deref()),
        (Some("sandbox"), Some("sb-1"))
    );
    assert_eq!(
        (bare_rec.tenant_id.as_deref(), bare_rec.request_id.as_deref()),
        (None, None)
    );
    assert_eq!(bare_rec.details, serde_json::Value::Null);

    let r = &records[1];
    assert!(!r.audit_id.is_empty());
    assert_recent(r.occurred_at);
    assert_eq!(r.actor, "anonymous");
    assert_eq!(r.request_id.as_deref(), Some("req-9"));
    assert_eq!(r.tenant_id.as_deref(), Some("acme"));
    assert_eq!(r.action, "auth.denied");
    assert_eq!(
        (r.resource_type.as_deref(), r.resource_id.as_deref()),
        (None, None)
    );
    assert_eq!(r.outcome, "denied");
    assert_eq!(r.details, json!({ "reason": "unknown key", "path": "/api/x" }));
    assert_eq!(
        store
            .list_audit(&filter(Some("acme"), Some("auth.denied")))
            .await
            .unwrap(),
        vec![r.clone()]
    );
    // Nothing else was written: no tenant exists for the audited id.
    assert_not_found(store.get_tenant(&tid("acme")).await, "tenant", "acme");
});
