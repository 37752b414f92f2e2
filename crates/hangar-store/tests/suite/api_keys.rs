//! Tenant API keys: creation, listing without secrets, authentication, revocation, expiry.

use std::time::Duration;

use chrono::Utc;
use hangar_protocol::{ApiKeyCreate, ApiKeyId};
use hangar_store::{ApiKeyStore, AuthenticatedKey, KEY_PREFIX, TenantStore};

use super::*;

/// `key` with the character at `index` replaced by a different one of the same class.
fn change_char(key: &str, index: usize) -> String {
    let mut bytes = key.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

async fn setup(store: &hangar_store::SqlStore) {
    store
        .create_tenant(&actor(), &new_tenant("acme", None))
        .await
        .unwrap();
    store
        .create_tenant(&actor(), &new_tenant("other", None))
        .await
        .unwrap();
}

fn named(name: &str) -> ApiKeyCreate {
    ApiKeyCreate {
        name: Some(name.to_owned()),
        expires_at: None,
    }
}

store_test!(create_returns_secret_once, |db| async move {
    let store = &db.store;
    setup(store).await;
    let created = store
        .create_api_key(&actor(), &tid("acme"), &named("ci"))
        .await
        .unwrap();
    let key = &created.key;
    let api_key = &created.api_key;
    assert!(key.starts_with(KEY_PREFIX) && KEY_PREFIX == "hgr_", "{key}");
    assert_eq!(api_key.prefix, format!("hgr_{}", api_key.key_id));
    assert!(
        key.starts_with(&format!("{}_", api_key.prefix)),
        "{key} vs {}",
        api_key.prefix
    );
    let secret = &key[api_key.prefix.len() + 1..];
    assert!(secret.len() >= 32, "secret too short: {secret}");
    assert_eq!(api_key.tenant_id, tid("acme"));
    assert_eq!(api_key.name.as_deref(), Some("ci"));
    assert_eq!(
        (api_key.expires_at, api_key.last_used_at, api_key.revoked_at),
        (None, None, None)
    );
    assert_recent(api_key.created_at);

    // A second key is different.
    tick().await;
    let second = store
        .create_api_key(&actor(), &tid("acme"), &ApiKeyCreate::default())
        .await
        .unwrap();
    assert_ne!(second.key, created.key);
    assert_ne!(second.api_key.key_id, created.api_key.key_id);
    assert_eq!(second.api_key.name, None);

    // Listing: newest first, the tenant's keys only, and never the secret.
    let listed = store.list_api_keys(&tid("acme")).await.unwrap();
    assert_eq!(listed, vec![second.api_key.clone(), created.api_key.clone()]);
    let json = serde_json::to_string(&listed).unwrap();
    for k in [&created, &second] {
        let secret = &k.key[k.api_key.prefix.len() + 1..];
        assert!(!json.contains(secret), "list exposes a secret: {json}");
    }
    assert_eq!(store.list_api_keys(&tid("other")).await.unwrap(), vec![]);

    // The database holds a hash, not the key or its secret.
    let pool = raw(&db).await;
    let (stored,): (String,) = sqlx::query_as("SELECT key_hash FROM api_keys WHERE key_id = $1")
        .bind(api_key.key_id.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!stored.contains(secret), "secret stored in clear");
    assert_eq!(stored.len(), 64, "expected a hex SHA-256, got {stored}");
});

store_test!(create_for_unknown_tenant_not_found, |db| async move {
    let result = db
        .store
        .create_api_key(&actor(), &tid("ghost"), &ApiKeyCreate::default())
        .await;
    assert_not_found(result, "tenant", "ghost");
    let pool = raw(&db).await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM api_keys WHERE tenant_id = $1",
            "ghost"
        )
        .await,
        0
    );
});

store_test!(authenticate_exact_key_only, |db| async move {
    let store = &db.store;
    setup(store).await;
    let acme = store
        .create_api_key(&actor(), &tid("acme"), &named("a"))
        .await
        .unwrap();
    let other = store
        .create_api_key(&actor(), &tid("other"), &named("o"))
        .await
        .unwrap();

    let auth = store.authenticate_api_key(&acme.key).await.unwrap();
    assert_eq!(
        auth,
        Some(AuthenticatedKey {
            key_id: acme.api_key.key_id.clone(),
            tenant_id: tid("acme")
        })
    );
    let auth = store.authenticate_api_key(&other.key).await.unwrap();
    assert_eq!(
        auth,
        Some(AuthenticatedKey {
            key_id: other.api_key.key_id.clone(),
            tenant_id: tid("other")
        })
    );

    // Authentication records the use.
    let listed = store.list_api_keys(&tid("acme")).await.unwrap();
    let used = listed[0]
        .last_used_at
        .expect("last_used_at set by authentication");
    assert_recent(used);

    // One changed character anywhere (last, first of the secret, inside the key id) is refused.
    let key = &acme.key;
    let secret_start = acme.api_key.prefix.len() + 1;
    for index in [
        key.len() - 1,
        secret_start,
        secret_start + 10,
        KEY_PREFIX.len(),
        KEY_PREFIX.len() + 5,
    ] {
        let forged = change_char(key, index);
        assert_ne!(&forged, key);
        assert_eq!(
            store.authenticate_api_key(&forged).await.unwrap(),
            None,
            "{forged} accepted"
        );
    }
    // The other tenant's key id with this key's secret.
    let mixed = format!("{}_{}", other.api_key.prefix, &key[secret_start..]);
    assert_eq!(store.authenticate_api_key(&mixed).await.unwrap(), None);
    // The key id in upper case (ids are matched exactly; stored ones are lower case).
    let upper = format!(
        "hgr_{}_{}",
        acme.api_key.key_id.as_str().to_uppercase(),
        &key[secret_start..]
    );
    if &upper != key {
        assert_eq!(store.authenticate_api_key(&upper).await.unwrap(), None);
    }

    // Malformed strings.
    let truncated = &key[..key.len() - 1];
    let with_space = format!("{key} ");
    let bearer = format!("Bearer {key}");
    for bad in [
        "",
        "hgr_",
        "hgr__",
        "hgr_abc_def",
        "garbage",
        acme.api_key.prefix.as_str(),
        &format!("{}_", acme.api_key.prefix),
        truncated,
        &with_space,
        &bearer,
        &key.replacen("hgr_", "xyz_", 1),
        "hgr_abcdef12345!_deadbeef",
        "hgr_' OR '1'='1_x",
    ] {
        assert_eq!(
            store.authenticate_api_key(bad).await.unwrap(),
            None,
            "{bad:?} accepted"
        );
    }
    // The real key still works after all that.
    assert!(store.authenticate_api_key(key).await.unwrap().is_some());
});

store_test!(revoked_key_refused, |db| async move {
    let store = &db.store;
    setup(store).await;
    let created = store
        .create_api_key(&actor(), &tid("acme"), &named("ci"))
        .await
        .unwrap();
    let spare = store
        .create_api_key(&actor(), &tid("acme"), &named("spare"))
        .await
        .unwrap();
    let id = created.api_key.key_id.clone();

    let revoked = store.revoke_api_key(&actor(), &tid("acme"), &id).await.unwrap();
    let at = revoked.revoked_at.expect("revoked_at set");
    assert_recent(at);
    assert_eq!(revoked.key_id, id);
    assert_eq!(store.authenticate_api_key(&created.key).await.unwrap(), None);
    // Only that key.
    assert!(store.authenticate_api_key(&spare.key).await.unwrap().is_some());

    // Revoking twice conflicts and leaves the first revocation time.
    let details = assert_conflict(
        store.revoke_api_key(&actor(), &tid("acme"), &id).await,
        "already revoked",
    );
    assert_eq!(details, vec![]);
    let listed = store.list_api_keys(&tid("acme")).await.unwrap();
    let row = listed
        .iter()
        .find(|k| k.key_id == id)
        .expect("revoked keys stay listed");
    assert_eq!(row.revoked_at, Some(at));
    assert_eq!(listed.len(), 2);
});

store_test!(revoke_other_tenants_key_not_found, |db| async move {
    let store = &db.store;
    setup(store).await;
    let created = store
        .create_api_key(&actor(), &tid("acme"), &ApiKeyCreate::default())
        .await
        .unwrap();
    let id = created.api_key.key_id.clone();
    assert_not_found(
        store.revoke_api_key(&actor(), &tid("other"), &id).await,
        "api_key",
        id.as_str(),
    );
    assert_not_found(
        store.revoke_api_key(&actor(), &tid("ghost"), &id).await,
        "api_key",
        id.as_str(),
    );
    let unknown: ApiKeyId = "zzzzzzzzzzzz".parse().unwrap();
    assert_not_found(
        store.revoke_api_key(&actor(), &tid("acme"), &unknown).await,
        "api_key",
        "zzzzzzzzzzzz",
    );
    // The key is untouched.
    assert!(store.authenticate_api_key(&created.key).await.unwrap().is_some());
    assert_eq!(
        store.list_api_keys(&tid("acme")).await.unwrap()[0].revoked_at,
        None
    );
});

store_test!(expired_key_refused, |db| async move {
    let store = &db.store;
    setup(store).await;

    // Expiry in an hour: accepted; moved to the past by hand: refused.
    let in_an_hour = Utc::now() + chrono::Duration::hours(1);
    let later = ApiKeyCreate {
        name: None,
        expires_at: Some(in_an_hour),
    };
    let key = store
        .create_api_key(&actor(), &tid("acme"), &later)
        .await
        .unwrap();
    assert_eq!(
        key.api_key.expires_at.map(|t| t.timestamp_millis()),
        Some(in_an_hour.timestamp_millis())
    );
    assert!(store.authenticate_api_key(&key.key).await.unwrap().is_some());
    let pool = raw(&db).await;
    sqlx::query("UPDATE api_keys SET expires_at = $1 WHERE key_id = $2")
        .bind(now_ms() - 1_000)
        .bind(key.api_key.key_id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(store.authenticate_api_key(&key.key).await.unwrap(), None);

    // Expiry in the near future, then the clock passes it.
    let soon = ApiKeyCreate {
        name: None,
        expires_at: Some(Utc::now() + chrono::Duration::milliseconds(1_000)),
    };
    let key = store.create_api_key(&actor(), &tid("acme"), &soon).await.unwrap();
    assert!(store.authenticate_api_key(&key.key).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(store.authenticate_api_key(&key.key).await.unwrap(), None);
});

store_test!(concurrent_revokes_succeed_once, |db| async move {
    setup(&db.store).await;
    for round in 0..20 {
        let created = db
            .store
            .create_api_key(&actor(), &tid("acme"), &ApiKeyCreate::default())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (store, id) = (std::sync::Arc::clone(&db.store), created.api_key.key_id.clone());
                tokio::spawn(async move { store.revoke_api_key(&actor(), &tid("acme"), &id).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => ok += 1,
                Err(hangar_store::StoreError::Conflict { .. }) => {}
                Err(e) => panic!("unexpected error: {e:?}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: {ok} of 4 concurrent revokes succeeded");
    }
    let revokes = hangar_store::AuditFilter {
        action: Some("api_key.revoke".to_owned()),
        ..all_audit()
    };
    assert_eq!(
        hangar_store::AuditStore::list_audit(&*db.store, &revokes)
            .await
            .unwrap()
            .len(),
        20
    );
});
