//! `/api/tenants/{id}/api-keys` over HTTP.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

both!(create_list_revoke, |app| {
    app.tenant("acme", None).await;
    let created = app
        .post("/api/tenants/acme/api-keys", json!({ "name": "ci" }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = created.body["key"].as_str().unwrap().to_owned();
    let key_id = created.body["key_id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("hgr_{key_id}_")), "{key}");
    assert_eq!(created.body["tenant_id"], "acme");
    assert_eq!(created.body["name"], "ci");

    // An empty body is fine too.
    let bare = app
        .send(Method::POST, "/api/tenants/acme/api-keys", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(bare.status, StatusCode::CREATED, "{}", bare.body);

    let list = app.get("/api/tenants/acme/api-keys").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    assert!(
        !list.body.to_string().contains(&key[20..]),
        "secrets are never listed"
    );
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("key").is_none())
    );

    assert_eq!(
        app.send(Method::GET, "/api/tenants/acme", Some(&key), None)
            .await
            .status,
        StatusCode::OK
    );
    let revoked = app.delete(&format!("/api/tenants/acme/api-keys/{key_id}")).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.send(Method::GET, "/api/tenants/acme", Some(&key), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let again = app.delete(&format!("/api/tenants/acme/api-keys/{key_id}")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let listed = app.get("/api/tenants/acme/api-keys").await;
    assert!(
        listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["key_id"] == key_id.as_str() && k["revoked_at"].is_string())
    );
});

both!(refusals, |app| {
    app.tenant("acme", None).await;
    app.tenant("other", None).await;
    let other_key = app.post("/api/tenants/other/api-keys", json!({})).await;
    let other_id = other_key.body["key_id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post("/api/tenants/ghost/api-keys", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/tenants/ghost/api-keys").await.status,
        StatusCode::NOT_FOUND
    );
    let cross = app
        .delete(&format!("/api/tenants/acme/api-keys/{other_id}"))
        .await;
    assert_eq!(
        cross.status,
        StatusCode::NOT_FOUND,
        "a key is revoked through its own tenant only"
    );
    let past = app
        .post(
            "/api/tenants/acme/api-keys",
            json!({ "expires_at": "2001-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(past.status, StatusCode::UNPROCESSABLE_ENTITY);
    let extra = app
        .post("/api/tenants/acme/api-keys", json!({ "scope": "all" }))
        .await;
    assert_eq!(extra.status, StatusCode::UNPROCESSABLE_ENTITY);
});
