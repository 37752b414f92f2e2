//! The model catalogue: exact prices, ordering, partial updates, usage and delete protection.

use hangar_protocol::{ModelCreate, ModelStatus, ModelUpdate, ModelUsage, TenantUpdate};
use hangar_store::{ModelStore, TenantStore};

use super::*;

fn priced(id: &str) -> ModelCreate {
    ModelCreate {
        model_region: Some("us-east-1".to_owned()),
        input_token_price: price("3.5"),
        output_token_price: price("15"),
        cache_creation_5m_price: price("0.375"),
        cache_creation_1h_price: price(".000001"),
        cache_read_price: price("9999.999999"),
        context_window: 200_000,
        max_output_tokens: 32_000,
        supports_extended_context: true,
        extended_context_window: Some(1_000_000),
        ..new_model(id, "Priced")
    }
}

store_test!(create_with_exact_prices, |db| async move {
    let store = &db.store;
    let model = store.create_model(&actor(), &priced("sonnet")).await.unwrap();
    let prices = |m: &hangar_protocol::Model| {
        [
            m.input_token_price.to_string(),
            m.output_token_price.to_string(),
            m.cache_creation_5m_price.to_string(),
            m.cache_creation_1h_price.to_string(),
            m.cache_read_price.to_string(),
        ]
    };
    let expected = ["3.500000", "15.000000", "0.375000", "0.000001", "9999.999999"];
    assert_eq!(prices(&model), expected);
    assert_eq!(model.model_id, mid("sonnet"));
    assert_eq!(model.display_name, "Priced");
    assert_eq!(model.bedrock_model_id, "provider.sonnet-v1:0");
    assert_eq!(model.model_region.as_deref(), Some("us-east-1"));
    assert_eq!((model.context_window, model.max_output_tokens), (200_000, 32_000));
    assert!(model.supports_extended_context);
    assert_eq!(model.extended_context_window, Some(1_000_000));
    assert_eq!(model.status, ModelStatus::Active);
    assert_eq!(model.created_at, model.updated_at);
    assert_recent(model.created_at);

    let read = store.get_model(&mid("sonnet")).await.unwrap();
    assert_eq!(read, model);
    assert_eq!(prices(&read), expected);
    assert_eq!(
        serde_json::to_value(read.input_token_price).unwrap(),
        serde_json::json!("3.500000")
    );

    // Stored as integer micro-USD, not as a float.
    let pool = raw(&db).await;
    let (input, cache_1h, read_price): (i64, i64, i64) = sqlx::query_as(
        "SELECT input_token_price, cache_creation_1h_price, cache_read_price FROM models WHERE model_id = $1",
    )
    .bind("sonnet")
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((input, cache_1h, read_price), (3_500_000, 1, 9_999_999_999));

    // Defaults: zero prices, no region, no extended context.
    let plain = store
        .create_model(&actor(), &new_model("plain", "Plain"))
        .await
        .unwrap();
    assert_eq!(plain.input_token_price.to_string(), "0.000000");
    assert_eq!(
        (
            plain.model_region,
            plain.supports_extended_context,
            plain.extended_context_window
        ),
        (None, false, None)
    );
    assert_not_found(store.get_model(&mid("ghost")).await, "model", "ghost");
});

store_test!(duplicate_id_conflicts, |db| async move {
    let store = &db.store;
    let first = store
        .create_model(&actor(), &new_model("m1", "First"))
        .await
        .unwrap();
    let details = assert_conflict(
        store.create_model(&actor(), &new_model("m1", "Second")).await,
        "'m1' already exists",
    );
    assert_eq!(details, vec![]);
    assert_eq!(store.get_model(&mid("m1")).await.unwrap(), first);
    assert_eq!(store.list_models(None).await.unwrap().len(), 1);
});

store_test!(list_by_display_name_and_status, |db| async move {
    let store = &db.store;
    for (id, name) in [
        ("a-model", "Charlie"),
        ("z-model", "Alpha"),
        ("m-model", "Bravo"),
        ("b-model", "Delta"),
    ] {
        store.create_model(&actor(), &new_model(id, name)).await.unwrap();
        tick().await;
    }
    let patch = ModelUpdate {
        status: Some(ModelStatus::Deprecated),
        ..Default::default()
    };
    store
        .update_model(&actor(), &mid("m-model"), &patch)
        .await
        .unwrap();

    let names =
        |models: Vec<hangar_protocol::Model>| models.into_iter().map(|m| m.display_name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_models(None).await.unwrap()),
        ["Alpha", "Bravo", "Charlie", "Delta"]
    );
    assert_eq!(
        names(store.list_models(Some(ModelStatus::Active)).await.unwrap()),
        ["Alpha", "Charlie", "Delta"]
    );
    assert_eq!(
        names(store.list_models(Some(ModelStatus::Deprecated)).await.unwrap()),
        ["Bravo"]
    );
});

store_test!(update_partial_and_null_clears, |db| async move {
    let store = &db.store;
    let created = store.create_model(&actor(), &priced("sonnet")).await.unwrap();
    tick().await;

    // One field present: only it changes.
    let patch = ModelUpdate {
        display_name: Some("Renamed".to_owned()),
        ..Default::default()
    };
    let m = store
        .update_model(&actor(), &mid("sonnet"), &patch)
        .await
        .unwrap();
    assert_eq!(m.display_name, "Renamed");
    assert!(m.updated_at > created.updated_at, "updated_at did not move");
    assert_eq!(m.created_at, created.created_at);
    let unchanged = hangar_protocol::Model {
        display_name: created.display_name.clone(),
        updated_at: created.updated_at,
        ..m.clone()
    };
    assert_eq!(unchanged, created);

    // Explicit nulls clear the nullable fields; absent ones stay.
    let patch = ModelUpdate {
        model_region: Some(None),
        extended_context_window: Some(None),
        ..Default::default()
    };
    let m = store
        .update_model(&actor(), &mid("sonnet"), &patch)
        .await
        .unwrap();
    assert_eq!(m.model_region, None);
    assert_eq!(m.extended_context_window, None);
    assert_eq!(m.display_name, "Renamed");
    assert!(m.supports_extended_context);
    assert_eq!(m.input_token_price.to_string(), "3.500000");

    // Prices, limits, flags and values for the nullable fields.
    let patch = ModelUpdate {
        output_token_price: Some(price("0.25")),
        cache_read_price: Some(price("0")),
        max_output_tokens: Some(8_192),
        supports_extended_context: Some(false),
        model_region: Some(Some("eu-west-1".to_owned())),
        extended_context_window: Some(Some(500_000)),
        bedrock_model_id: Some("provider.other".to_owned()),
        ..Default::default()
    };
    let m = store
        .update_model(&actor(), &mid("sonnet"), &patch)
        .await
        .unwrap();
    assert_eq!(m.output_token_price.to_string(), "0.250000");
    assert_eq!(m.cache_read_price, hangar_protocol::Price::ZERO);
    assert_eq!(m.input_token_price.to_string(), "3.500000");
    assert_eq!(m.max_output_tokens, 8_192);
    assert_eq!(m.context_window, 200_000);
    assert!(!m.supports_extended_context);
    assert_eq!(m.model_region.as_deref(), Some("eu-west-1"));
    assert_eq!(m.extended_context_window, Some(500_000));
    assert_eq!(m.bedrock_model_id, "provider.other");
    assert_eq!(m.status, ModelStatus::Active);

    // Status change, and back.
    let deprecate = ModelUpdate {
        status: Some(ModelStatus::Deprecated),
        ..Default::default()
    };
    let m = store
        .update_model(&actor(), &mid("sonnet"), &deprecate)
        .await
        .unwrap();
    assert_eq!(m.status, ModelStatus::Deprecated);
    assert_eq!(m.display_name, "Renamed");
    assert_eq!(store.get_model(&mid("sonnet")).await.unwrap(), m);
    let revive = ModelUpdate {
        status: Some(ModelStatus::Active),
        ..Default::default()
    };
    assert_eq!(
        store
            .update_model(&actor(), &mid("sonnet"), &revive)
            .await
            .unwrap()
            .status,
        ModelStatus::Active
    );
});

store_test!(update_unknown_not_found, |db| async move {
    let patch = ModelUpdate {
        display_name: Some("x".to_owned()),
        ..Default::default()
    };
    assert_not_found(
        db.store.update_model(&actor(), &mid("ghost"), &patch).await,
        "model",
        "ghost",
    );
    assert_eq!(db.store.list_models(None).await.unwrap(), vec![]);
});

store_test!(usage_counts_references, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();
    store
        .create_model(&actor(), &new_model("m2", "Two"))
        .await
        .unwrap();
    assert_eq!(
        store.model_usage(&mid("m1")).await.unwrap(),
        ModelUsage::default()
    );

    store
        .create_tenant(&actor(), &new_tenant("t1", Some("m1")))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("t2", Some("m1")))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("t3", Some("m2")))
        .await
        .unwrap();
    let pool = raw(&db).await;
    insert_conversation(&pool, "c1", "t3", "m1").await;
    insert_usage_log(&pool, "u1", "t3", "m1").await;
    insert_usage_log(&pool, "u2", "t3", "m1").await;
    insert_usage_log(&pool, "u3", "t3", "m2").await;
    // A run m2 answered in a conversation that has moved to m1 since.
    sqlx::query(
        "INSERT INTO runs (run_id, tenant_id, conversation_id, user_id, model_id, node_id, status, started_at) \
         VALUES ('r1', 't3', 'c1', 'user-1', 'm2', 'n', 'success', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();

    assert_eq!(
        store.model_usage(&mid("m1")).await.unwrap(),
        ModelUsage {
            fallback_for: 0,
            tenants: 2,
            conversations: 1,
            simple_chats: 0,
            runs: 0,
            usage_logs: 2
        }
    );
    assert_eq!(
        store.model_usage(&mid("m2")).await.unwrap(),
        ModelUsage {
            fallback_for: 0,
            tenants: 1,
            conversations: 0,
            simple_chats: 0,
            runs: 1,
            usage_logs: 1
        }
    );
    assert_not_found(store.model_usage(&mid("ghost")).await, "model", "ghost");
});

store_test!(delete_refused_while_in_use, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("t1", Some("m1")))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("t2", Some("m1")))
        .await
        .unwrap();

    let details = assert_conflict(store.delete_model(&actor(), &mid("m1")).await, "'m1' is in use");
    assert_eq!(details, vec![in_use("tenants", 2)]);

    let pool = raw(&db).await;
    insert_conversation(&pool, "c1", "t1", "m1").await;
    let details = assert_conflict(store.delete_model(&actor(), &mid("m1")).await, "in use");
    assert_eq!(details, vec![in_use("tenants", 2), in_use("conversations", 1)]);
    store.get_model(&mid("m1")).await.unwrap();

    // Releasing every reference makes it deletable.
    sqlx::query("DELETE FROM conversations")
        .execute(&pool)
        .await
        .unwrap();
    let clear = TenantUpdate {
        model_id: Some(None),
        ..Default::default()
    };
    store.update_tenant(&actor(), &tid("t1"), &clear).await.unwrap();
    let details = assert_conflict(store.delete_model(&actor(), &mid("m1")).await, "in use");
    assert_eq!(details, vec![in_use("tenants", 1)]);
    store.update_tenant(&actor(), &tid("t2"), &clear).await.unwrap();
    store.delete_model(&actor(), &mid("m1")).await.unwrap();
    assert_not_found(store.get_model(&mid("m1")).await, "model", "m1");
});

store_test!(delete_unused, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m1", "One"))
        .await
        .unwrap();
    store
        .create_model(&actor(), &new_model("m2", "Two"))
        .await
        .unwrap();
    store.delete_model(&actor(), &mid("m1")).await.unwrap();
    assert_not_found(store.get_model(&mid("m1")).await, "model", "m1");
    let left: Vec<_> = store
        .list_models(None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.model_id)
        .collect();
    assert_eq!(left, vec![mid("m2")]);
    assert_not_found(store.delete_model(&actor(), &mid("m1")).await, "model", "m1");
    // The id can be reused.
    store
        .create_model(&actor(), &new_model("m1", "One again"))
        .await
        .unwrap();
});

store_test!(fallback_chain_checked_and_protected, |db| async move {
    let store = &db.store;
    store
        .create_model(&actor(), &new_model("m2", "Two"))
        .await
        .unwrap();
    let mut m1 = new_model("m1", "One");
    m1.fallback_model_ids = vec![mid("ghost")];
    assert_invalid(store.create_model(&actor(), &m1).await, "fallback_model_ids");
    m1.fallback_model_ids = vec![mid("m2")];
    let created = store.create_model(&actor(), &m1).await.unwrap();
    assert_eq!(created.fallback_model_ids, vec![mid("m2")]);
    // m2 cannot go while m1 names it; the count says why.
    assert_eq!(store.model_usage(&mid("m2")).await.unwrap().fallback_for, 1);
    assert!(matches!(
        store.delete_model(&actor(), &mid("m2")).await,
        Err(StoreError::Conflict { .. })
    ));
    // `_` in an id is not a wildcard: "m_" does not match "m2".
    store
        .create_model(&actor(), &new_model("m_", "Underscore"))
        .await
        .unwrap();
    assert_eq!(store.model_usage(&mid("m_")).await.unwrap().fallback_for, 0);
    let patch = ModelUpdate {
        fallback_model_ids: Some(vec![mid("m1")]),
        ..Default::default()
    };
    assert_invalid(
        store.update_model(&actor(), &mid("m1"), &patch).await,
        "fallback_model_ids",
    );
    let patch = ModelUpdate {
        fallback_model_ids: Some(Vec::new()),
        ..Default::default()
    };
    store.update_model(&actor(), &mid("m1"), &patch).await.unwrap();
    store.delete_model(&actor(), &mid("m2")).await.unwrap();
    // Provider rules hold on the merged model: openai needs a base_url.
    let patch = ModelUpdate {
        provider: Some(hangar_protocol::ProviderKind::Openai),
        ..Default::default()
    };
    assert_invalid(store.update_model(&actor(), &mid("m1"), &patch).await, "base_url");
});
