//! Probes, metrics, docs and graceful shutdown.

use std::time::{Duration, Instant};

use pretty_assertions::assert_eq;
use reqwest::StatusCode;

use super::*;

both!(probes, |app| {
    let root = app.send(Method::GET, "/", None, None).await;
    assert_eq!(root.body["name"], "Hangar");
    assert_eq!(root.body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(root.body["docs_url"], "/docs");
    let health = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "healthy");
    assert_eq!(health.body["checks"]["database"]["status"], "healthy");
    assert!(health.body["checks"]["database"]["latency_ms"].is_number());
    assert_eq!(
        app.send(Method::GET, "/health/live", None, None).await.body["status"],
        "alive"
    );
    assert_eq!(
        app.send(Method::GET, "/health/ready", None, None).await.body["status"],
        "ready"
    );
});

#[tokio::test]
async fn health_reports_a_dead_database_with_503() {
    let app = TestApp::start(hangar_store::testing::Backend::Sqlite, &[]).await;
    app.state.store.close().await;
    let health = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "{}", health.body);
    assert_eq!(health.body["status"], "unhealthy");
    assert_eq!(health.body["checks"]["database"]["status"], "unhealthy");
    let ready = app.send(Method::GET, "/health/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.code(), "SERVICE_UNAVAILABLE");
    let api = app.get("/api/tenants").await;
    assert_eq!(
        api.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a closed pool is a 503, not a 500: {}",
        api.body
    );
    assert_eq!(
        app.send(Method::GET, "/health/live", None, None).await.status,
        StatusCode::OK
    );
}

both!(metrics_by_route_template, |app| {
    app.tenant("metrics-tenant", None).await;
    app.get("/api/tenants/metrics-tenant").await;
    app.get("/api/tenants/ghost-tenant").await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains(r#"route="/api/tenants/{tenant_id}""#), "{text}");
    assert!(!text.contains("metrics-tenant"), "raw paths never become labels");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains(r#"errors_total{code="NOT_FOUND"}"#), "{text}");
});

#[tokio::test]
async fn metrics_can_be_disabled() {
    let app = TestApp::start(
        hangar_store::testing::Backend::Sqlite,
        &[("METRICS_ENABLED", "false")],
    )
    .await;
    let reply = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "NOT_FOUND");
}

both!(docs_page_is_served_locally, |app| {
    let page = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://"), "no CDN: {html}");
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    let spec = app.send(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(spec.body["openapi"], "3.1.0");
});

#[tokio::test]
async fn shutdown_completes_promptly_and_closes_the_listener() {
    let app = TestApp::start(
        hangar_store::testing::Backend::Sqlite,
        &[("SHUTDOWN_TIMEOUT", "5")],
    )
    .await;
    let url = app.url("/health/live");
    assert_eq!(
        app.client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let client = app.client.clone();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("stopped in time")
        .expect("clean stop");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "idle server waits for nothing: {:?}",
        started.elapsed()
    );
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        fresh.get(&url).send().await.is_err(),
        "no longer accepting connections"
    );
    drop(client);
}

#[tokio::test]
async fn health_includes_the_sandbox_backend() {
    let app = TestApp::start(hangar_store::testing::Backend::Sqlite, &[]).await;
    let health = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(
        health.body["checks"]["sandbox"]["status"], "healthy",
        "{}",
        health.body
    );
    assert_eq!(health.body["checks"]["sandbox"]["message"], "bwrap ready");
}

/// A data directory the sandbox uid cannot reach: the server starts, `/health` says why
/// (degraded, not down), and nothing runs unsandboxed.
#[tokio::test]
async fn health_explains_an_unusable_sandbox_and_stays_up() {
    use std::os::unix::fs::PermissionsExt;
    let locked = tempfile::tempdir().unwrap();
    std::fs::set_permissions(locked.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = locked.path().join("data").display().to_string();
    let app = TestApp::start(
        hangar_store::testing::Backend::Sqlite,
        &[("HANGAR_DATA_DIR", &data)],
    )
    .await;
    let health = app.send(Method::GET, "/health", None, None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);
    assert_eq!(health.body["status"], "degraded");
    let sandbox = &health.body["checks"]["sandbox"];
    assert_eq!(sandbox["status"], "degraded");
    let message = sandbox["message"].as_str().unwrap();
    assert!(
        message.contains("cannot reach") && message.contains("fix:"),
        "{message}"
    );
    let spec = hangar_sandbox::SandboxSpec::new("t/c", locked.path().join("ws"));
    let refused = app.state.sandboxes.acquire("t/c", spec).await.err().unwrap();
    assert!(refused.to_string().contains("sandbox unavailable"), "{refused}");
}
