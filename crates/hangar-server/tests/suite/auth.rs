//! Authentication, tenant scoping, CORS ordering and the audit trail of refusals.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

both!(admin_key_sources, |app| {
    let none = app.send(Method::GET, "/api/tenants", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.code(), "UNAUTHORIZED");
    assert!(none.body["error"]["request_id"].is_string());
    let wrong = app
        .send(
            Method::GET,
            "/api/tenants",
            Some("wrong-key-0000000000000000"),
            None,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body["error"]["message"], "invalid API key");
    let bearer = app
        .client
        .get(app.url("/api/tenants"))
        .header("authorization", format!("Bearer {ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
    // Public endpoints need no key.
    for path in [
        "/",
        "/health",
        "/health/live",
        "/health/ready",
        "/openapi.json",
        "/metrics",
    ] {
        assert_eq!(
            app.send(Method::GET, path, None, None).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    // Unknown /api paths are not a way around authentication.
    assert_eq!(
        app.send(Method::GET, "/api/nope", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Refusals are audited, without the key.
    let audit = app.get("/api/audit-log?action=auth.denied").await;
    let rows = audit.body.as_array().unwrap();
    assert!(rows.len() >= 3, "{}", audit.body);
    assert!(rows.iter().all(|r| r["outcome"] == "denied"));
    assert!(
        !audit.body.to_string().contains("wrong-key"),
        "presented keys are never stored"
    );
});

both!(tenant_key_scope, |app| {
    app.model("m1").await;
    app.tenant("acme", Some("m1")).await;
    app.tenant("other", None).await;
    let key = app.tenant_key("acme").await;
    let as_tenant = |method: Method, path: &'static str, body: Option<Value>| {
        let key = key.clone();
        let app = &app;
        async move { app.send(method, path, Some(&key), body).await }
    };
    assert_eq!(
        as_tenant(Method::GET, "/api/tenants/acme", None).await.status,
        StatusCode::OK
    );
    let other = as_tenant(Method::GET, "/api/tenants/other", None).await;
    assert_eq!(
        other.status,
        StatusCode::NOT_FOUND,
        "another tenant looks like no tenant"
    );
    let ghost = as_tenant(Method::GET, "/api/tenants/ghost", None).await;
    assert_eq!(
        other.body["error"]["message"]
            .as_str()
            .map(|m| m.replace("other", "X")),
        ghost.body["error"]["message"]
            .as_str()
            .map(|m| m.replace("ghost", "X"))
    );
    assert_eq!(
        as_tenant(Method::GET, "/api/models", None).await.status,
        StatusCode::OK,
        "the catalogue is readable"
    );
    assert_eq!(
        as_tenant(Method::GET, "/api/models/m1", None).await.status,
        StatusCode::OK
    );
    for (method, path, body) in [
        (
            Method::POST,
            "/api/models",
            Some(json!({ "model_id": "x", "display_name": "x", "bedrock_model_id": "x" })),
        ),
        (
            Method::PUT,
            "/api/models/m1",
            Some(json!({ "display_name": "mine" })),
        ),
        (Method::PATCH, "/api/models/m1/status?status=deprecated", None),
        (Method::DELETE, "/api/models/m1", None),
        (Method::GET, "/api/tenants", None),
        (Method::POST, "/api/tenants", Some(json!({ "tenant_id": "new" }))),
        (
            Method::PUT,
            "/api/tenants/acme",
            Some(json!({ "status": "inactive" })),
        ),
        (Method::DELETE, "/api/tenants/acme", None),
        (Method::POST, "/api/tenants/acme/api-keys", Some(json!({}))),
        (Method::GET, "/api/tenants/acme/api-keys", None),
        (Method::GET, "/api/audit-log", None),
    ] {
        let reply = as_tenant(method.clone(), path, body).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            reply.body
        );
        assert_eq!(reply.code(), "FORBIDDEN");
    }
    assert_eq!(
        app.get("/api/models/m1").await.body["display_name"],
        "Model m1",
        "nothing changed"
    );
    assert_eq!(app.get("/api/tenants/acme").await.body["status"], "active");
    let tampered = format!("{}x", &key[..key.len() - 1]);
    assert_eq!(
        app.send(Method::GET, "/api/tenants/acme", Some(&tampered), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
});

both!(cors_runs_before_auth, |app| {
    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/api/models/m1/status"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "PATCH")
        .header("access-control-request-headers", "x-api-key")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let allowed = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allowed.contains("PATCH"), "{allowed}");

    let refused = app
        .client
        .get(app.url("/api/tenants"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let h = refused.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h.contains_key("x-request-id"));
    assert!(
        h["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-chat-id")
    );

    let foreign = app
        .client
        .get(app.url("/api/tenants"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!foreign.headers().contains_key("access-control-allow-origin"));
});

#[tokio::test]
async fn no_keys_means_open_in_development() {
    let app = TestApp::start_with(hangar_store::testing::Backend::Sqlite, &[("LOG_LEVEL", "warn")]).await;
    let reply = app
        .send(
            Method::POST,
            "/api/tenants",
            None,
            Some(json!({ "tenant_id": "open" })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let key = app
        .send(Method::POST, "/api/tenants/open/api-keys", None, Some(json!({})))
        .await;
    let key = key.body["key"].as_str().unwrap().to_owned();
    // A presented key is still honoured, and scoped.
    app.send(
        Method::POST,
        "/api/tenants",
        None,
        Some(json!({ "tenant_id": "second" })),
    )
    .await;
    assert_eq!(
        app.send(Method::GET, "/api/tenants/second", Some(&key), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(Method::GET, "/api/tenants", Some("bogus-key-xxxxxxxxxxxx"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let audit = app
        .send(Method::GET, "/api/audit-log?action=tenant.create", None, None)
        .await;
    assert_eq!(audit.body[0]["actor"], "anonymous");
}

#[tokio::test]
async fn metrics_need_an_admin_key_in_production() {
    let vars = [
        ("APP_ENV", "production"),
        ("CORS_ORIGINS", "https://console.example.com"),
    ];
    let app = TestApp::start(hangar_store::testing::Backend::Sqlite, &vars).await;
    assert_eq!(
        app.send(Method::GET, "/metrics", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.tenant("acme", None).await;
    let key = app.tenant_key("acme").await;
    assert_eq!(
        app.send(Method::GET, "/metrics", Some(&key), None).await.status,
        StatusCode::FORBIDDEN
    );
    let ok = app
        .client
        .get(app.url("/metrics"))
        .header("x-api-key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let public = TestApp::start(
        hangar_store::testing::Backend::Sqlite,
        &[
            ("APP_ENV", "production"),
            ("CORS_ORIGINS", "https://console.example.com"),
            ("METRICS_PUBLIC", "true"),
        ],
    )
    .await;
    assert_eq!(
        public.send(Method::GET, "/metrics", None, None).await.status,
        StatusCode::OK
    );
}
