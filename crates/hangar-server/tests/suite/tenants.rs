//! `/api/tenants` over HTTP.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

both!(crud_round_trip, |app| {
    app.model("m1").await;
    let created = app.tenant("acme", Some("m1")).await;
    assert_eq!(created["tenant_id"], "acme");
    assert_eq!(created["model_id"], "m1");
    assert_eq!(created["status"], "active");
    assert_eq!(created["system_prompt"], Value::Null);

    let got = app.get("/api/tenants/acme").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, created);

    let updated = app
        .put(
            "/api/tenants/acme",
            json!({ "system_prompt": "Be brief.", "status": "inactive" }),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["system_prompt"], "Be brief.");
    assert_eq!(updated.body["status"], "inactive");
    assert_eq!(updated.body["model_id"], "m1", "absent fields are kept");

    let cleared = app
        .put(
            "/api/tenants/acme",
            json!({ "system_prompt": null, "model_id": null }),
        )
        .await;
    assert_eq!(cleared.body["system_prompt"], Value::Null);
    assert_eq!(cleared.body["model_id"], Value::Null);

    app.tenant("beta", None).await;
    let list = app.get("/api/tenants").await;
    let ids: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["beta", "acme"], "newest first");
    let inactive = app.get("/api/tenants?status=inactive").await;
    assert_eq!(inactive.body.as_array().unwrap().len(), 1);
    let paged = app.get("/api/tenants?limit=1&offset=1").await;
    assert_eq!(paged.body[0]["tenant_id"], "acme");

    let deleted = app.delete("/api/tenants/acme").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/tenants/acme").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.delete("/api/tenants/acme").await.status,
        StatusCode::NOT_FOUND
    );
});

both!(create_refusals, |app| {
    app.tenant("acme", None).await;
    let dup = app.post("/api/tenants", json!({ "tenant_id": "acme" })).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.code(), "CONFLICT");

    let missing = app
        .post("/api/tenants", json!({ "tenant_id": "t2", "model_id": "nope" }))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert_eq!(
        app.get("/api/tenants/t2").await.status,
        StatusCode::NOT_FOUND,
        "nothing half-created"
    );

    app.model("old").await;
    app.send(
        Method::PATCH,
        "/api/models/old/status?status=deprecated",
        Some(ADMIN_KEY),
        None,
    )
    .await;
    let deprecated = app
        .post("/api/tenants", json!({ "tenant_id": "t3", "model_id": "old" }))
        .await;
    assert_eq!(deprecated.status, StatusCode::BAD_REQUEST, "{}", deprecated.body);
    assert_eq!(deprecated.body["error"]["details"][0]["field"], "body.model_id");
    let update = app.put("/api/tenants/acme", json!({ "model_id": "old" })).await;
    assert_eq!(update.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.put("/api/tenants/ghost", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
});

both!(bad_ids, |app| {
    for bad in [
        json!("a/b"),
        json!(".."),
        json!("a\u{0}b"),
        json!("x".repeat(101)),
        json!(""),
        json!(5),
    ] {
        let reply = app.post("/api/tenants", json!({ "tenant_id": bad })).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            reply.body
        );
        assert_eq!(reply.body["error"]["details"][0]["field"], "body.tenant_id");
    }
    for path in [
        "/api/tenants/..",
        "/api/tenants/a%2Fb",
        "/api/tenants/a%00b",
        "/api/tenants/a..b",
    ] {
        let reply = app.get(path).await;
        assert!(reply.status.is_client_error(), "{path}: {}", reply.status);
        assert!(reply.body["error"]["code"].is_string(), "{path}: {}", reply.body);
    }
    let long = format!("/api/tenants/{}", "y".repeat(101));
    let reply = app.get(&long).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.body["error"]["details"][0]["field"], "path.tenant_id");
    let bad_limit = app.get("/api/tenants?limit=0").await;
    assert_eq!(bad_limit.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_limit.body["error"]["details"][0]["field"], "query.limit");
    assert_eq!(
        app.get("/api/tenants?status=sleepy").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.get("/api/tenants?limit=ten").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
});

both!(delete_refused_while_in_use, |app| {
    app.model("m1").await;
    app.tenant("acme", None).await;
    let key = app.tenant_key("acme").await;
    app.sql(
        "INSERT INTO conversations (conversation_id, tenant_id, user_id, model_id, created_at, updated_at) \
         VALUES ('c1', 'acme', 'u1', 'm1', 0, 0)",
    )
    .await;
    let refused = app.delete("/api/tenants/acme").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    let details = &refused.body["error"]["details"];
    assert_eq!(details[0]["field"], "conversations");
    assert_eq!(details[0]["count"], 1);
    assert_eq!(
        app.get("/api/tenants/acme").await.status,
        StatusCode::OK,
        "nothing was deleted"
    );
    assert_eq!(
        app.send(Method::GET, "/api/tenants/acme", Some(&key), None)
            .await
            .status,
        StatusCode::OK
    );

    app.sql("DELETE FROM conversations").await;
    assert_eq!(
        app.delete("/api/tenants/acme").await.status,
        StatusCode::NO_CONTENT
    );
    let gone = app.send(Method::GET, "/api/tenants/acme", Some(&key), None).await;
    assert_eq!(
        gone.status,
        StatusCode::UNAUTHORIZED,
        "the tenant's keys went with it"
    );
});
