//! Rate limiting over HTTP (contract §4.3, fixed): which routes count, the headers, the 429
//! envelope, and whose quota a request uses. The limiter does not touch the store, so these run
//! on SQLite only.

use hangar_store::testing::Backend;
use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

/// A server allowing `limit` conversation requests per minute, with model `m1` and tenants
/// `acme` and `beta`.
async fn limited(limit: &str, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("RATE_LIMIT_REQUESTS", limit), ("RATE_LIMIT_PERIOD", "60")];
    vars.extend_from_slice(extra);
    let app = TestApp::start(Backend::Sqlite, &vars).await;
    app.model("m1").await;
    app.tenant("acme", Some("m1")).await;
    app.tenant("beta", Some("m1")).await;
    app
}

/// Sends `method path` with the admin key and an optional `X-User-ID`.
async fn call(app: &TestApp, method: Method, path: &str, user: Option<&str>) -> Reply {
    call_as(app, method, path, ADMIN_KEY, user).await
}

async fn call_as(app: &TestApp, method: Method, path: &str, key: &str, user: Option<&str>) -> Reply {
    let mut request = app.client.request(method, app.url(path)).header("x-api-key", key);
    if let Some(user) = user {
        request = request.header("x-user-id", user);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

fn number(reply: &Reply, name: &str) -> u64 {
    header(reply, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing or not a number: {:?}", reply.headers))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn conversation_routes_count_down_then_refuse_with_the_envelope() {
    let app = limited("3", &[]).await;
    let before = now_secs();
    // Three different conversation routes share one budget (answers that are not 2xx count too).
    let missing = "/api/tenants/acme/conversations/00000000-0000-4000-8000-000000000000";
    let replies = [
        call(&app, Method::GET, "/api/tenants/acme/conversations", None).await,
        call(&app, Method::GET, missing, None).await,
        call(&app, Method::GET, &format!("{missing}/runs"), None).await,
    ];
    let statuses: Vec<_> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::NOT_FOUND, StatusCode::NOT_FOUND]
    );
    let remaining: Vec<_> = replies
        .iter()
        .map(|r| number(r, "x-ratelimit-remaining"))
        .collect();
    assert_eq!(remaining, [2, 1, 0]);
    for reply in &replies {
        assert_eq!(number(reply, "x-ratelimit-limit"), 3);
        let reset = number(reply, "x-ratelimit-reset");
        assert!((before + 60..=now_secs() + 61).contains(&reset), "reset {reset}");
    }

    let refused = call(&app, Method::GET, "/api/tenants/acme/conversations", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.body);
    assert_eq!(refused.code(), "RATE_LIMIT_EXCEEDED");
    let retry_after = refused.body["error"]["retry_after"].as_u64().unwrap();
    assert!((1..=60).contains(&retry_after), "{}", refused.body);
    assert_eq!(number(&refused, "retry-after"), retry_after);
    assert_eq!(number(&refused, "x-ratelimit-limit"), 3);
    assert_eq!(number(&refused, "x-ratelimit-remaining"), 0);
    assert!(number(&refused, "x-ratelimit-reset") >= before + 60);
    // The usual envelope, and the usual outer headers (a 429 is no longer produced outside them).
    let error = &refused.body["error"];
    assert!(error["message"].as_str().unwrap().contains("rate limit"));
    assert_eq!(
        error["request_id"].as_str(),
        header(&refused, "x-request-id"),
        "{}",
        refused.body
    );
    assert!(error["timestamp"].is_string());
    assert_eq!(header(&refused, "x-content-type-options"), Some("nosniff"));

    // Refusals are counted for Prometheus.
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("rate_limited_total{")
            && l.contains("route=\"/api/tenants/{tenant_id}/conversations\"")),
        "{text}"
    );
}

#[tokio::test]
async fn archive_and_writes_are_limited() {
    let app = limited("3", &[]).await;
    let created = app
        .post("/api/tenants/acme/conversations", json!({"user_id": "u1"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(number(&created, "x-ratelimit-remaining"), 2);
    let id = created.body["conversation_id"].as_str().unwrap().to_owned();
    let archive = format!("/api/tenants/acme/conversations/{id}/archive");
    let first = call(&app, Method::POST, &archive, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(number(&first, "x-ratelimit-remaining"), 1);
    let second = call(&app, Method::POST, &archive, None).await;
    assert_eq!(number(&second, "x-ratelimit-remaining"), 0);
    let third = call(&app, Method::POST, &archive, None).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS, "{}", third.body);
    let stream = call(
        &app,
        Method::POST,
        &format!("/api/tenants/acme/conversations/{id}/stream"),
        None,
    )
    .await;
    assert_eq!(stream.status, StatusCode::TOO_MANY_REQUESTS, "{}", stream.body);
}

#[tokio::test]
async fn users_tenants_and_keys_have_their_own_budgets() {
    let app = limited("2", &[]).await;
    let acme = "/api/tenants/acme/conversations";
    for _ in 0..2 {
        assert_eq!(
            call(&app, Method::GET, acme, Some("u1")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(
        call(&app, Method::GET, acme, Some("u1")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Another user of the same tenant, and the tenant without a user, have full budgets.
    let u2 = call(&app, Method::GET, acme, Some("u2")).await;
    assert_eq!(u2.status, StatusCode::OK);
    assert_eq!(number(&u2, "x-ratelimit-remaining"), 1);
    let anyone = call(&app, Method::GET, acme, None).await;
    assert_eq!(number(&anyone, "x-ratelimit-remaining"), 1);
    // So does the same user in another tenant.
    let beta = call(&app, Method::GET, "/api/tenants/beta/conversations", Some("u1")).await;
    assert_eq!(beta.status, StatusCode::OK);
    assert_eq!(number(&beta, "x-ratelimit-remaining"), 1);
    // And another authenticated principal: acme's own tenant key.
    let key = app.tenant_key("acme").await;
    let own = call_as(&app, Method::GET, acme, &key, Some("u1")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(number(&own, "x-ratelimit-remaining"), 1);

    // Headers the contract keyed on do not buy a new budget.
    for forwarded in ["203.0.113.1", "203.0.113.2"] {
        let spoofed = app
            .client
            .get(app.url(acme))
            .header("x-api-key", ADMIN_KEY)
            .header("x-user-id", "u1")
            .header("x-tenant-id", forwarded)
            .header("x-forwarded-for", forwarded)
            .send()
            .await
            .unwrap();
        assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn other_routes_are_not_limited() {
    let app = limited("1", &[]).await;
    for path in [
        "/api/tenants/acme/simple-chats",
        "/api/tenants/acme",
        "/api/tenants",
        "/api/models",
        "/health",
        "/health/live",
    ] {
        for _ in 0..3 {
            let reply = call(&app, Method::GET, path, Some("u1")).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
            assert_eq!(header(&reply, "x-ratelimit-limit"), None, "{path}");
        }
    }
    // None of that used the conversation budget.
    let first = call(&app, Method::GET, "/api/tenants/acme/conversations", Some("u1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(number(&first, "x-ratelimit-remaining"), 0);
}

#[tokio::test]
async fn disabled_means_no_limit_and_no_headers() {
    let app = limited("1", &[("RATE_LIMIT_ENABLED", "false")]).await;
    for _ in 0..3 {
        let reply = call(&app, Method::GET, "/api/tenants/acme/conversations", None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, "x-ratelimit-limit"), None);
        assert_eq!(header(&reply, "x-ratelimit-remaining"), None);
    }
}
