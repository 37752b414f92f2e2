//! Bad input gets a clear 4xx in the envelope, never a 500.

use pretty_assertions::assert_eq;
use reqwest::StatusCode;
use serde_json::json;

use super::*;

fn assert_envelope(reply: &Reply) {
    let error = &reply.body["error"];
    assert!(error["code"].is_string(), "{}", reply.body);
    assert!(error["message"].is_string(), "{}", reply.body);
    assert!(error["timestamp"].is_string(), "{}", reply.body);
    assert_eq!(
        error["request_id"].as_str(),
        reply.headers["x-request-id"].to_str().ok(),
        "{}",
        reply.body
    );
}

async fn raw(app: &TestApp, method: Method, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("x-api-key", ADMIN_KEY)
        .body(body);
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// (name, content type, body, expected status, expected code)
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    StatusCode,
    &'static str,
);

both!(malformed_bodies, |app| {
    let json_ct = Some("application/json");
    let cases: Vec<Case> = vec![
        (
            "truncated",
            json_ct,
            br#"{"tenant_id": "a""#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "not json",
            json_ct,
            b"tenant_id=a".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "trailing",
            json_ct,
            br#"{"tenant_id": "a"} {}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "wrong type",
            json_ct,
            br#"{"tenant_id": ["a"]}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "unknown field",
            json_ct,
            br#"{"tenant_id": "a", "sytem_prompt": "x"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "array",
            json_ct,
            b"[]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "empty",
            json_ct,
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "invalid utf-8",
            json_ct,
            b"{\"tenant_id\": \"\xff\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        ),
        (
            "no content type",
            None,
            br#"{"tenant_id": "a"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "text",
            Some("text/plain"),
            br#"{"tenant_id": "a"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "oversize",
            json_ct,
            format!(
                r#"{{"tenant_id": "a", "system_prompt": "{}"}}"#,
                "x".repeat(2 << 20)
            )
            .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (name, ct, body, status, code) in cases {
        let reply = raw(&app, Method::POST, "/api/tenants", ct, body).await;
        assert_eq!(reply.status, status, "{name}: {}", reply.body);
        assert_eq!(reply.code(), code, "{name}");
        assert_envelope(&reply);
    }
    let detail = raw(
        &app,
        Method::POST,
        "/api/tenants",
        json_ct,
        br#"{"tenant_id": 7}"#.to_vec(),
    )
    .await;
    assert_eq!(detail.body["error"]["details"][0]["field"], "body.tenant_id");
    assert_eq!(detail.body["error"]["details"][0]["code"], "json_invalid");
    assert_eq!(
        app.get("/api/tenants").await.body,
        json!([]),
        "nothing was created"
    );
    // A big system prompt under the body limit is still refused by validation.
    let big = app
        .post(
            "/api/tenants",
            json!({ "tenant_id": "big", "system_prompt": "x".repeat(100_001) }),
        )
        .await;
    assert_eq!(big.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(big.body["error"]["details"][0]["field"], "body.system_prompt");
});

both!(unknown_routes_and_methods, |app| {
    let missing = app.get("/api/does-not-exist").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "NOT_FOUND");
    assert_envelope(&missing);
    let method = app
        .send(Method::PATCH, "/api/tenants", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(method.code(), "METHOD_NOT_ALLOWED");
    assert_envelope(&method);
    let root_missing = app.send(Method::GET, "/nothing-here", None, None).await;
    assert_eq!(
        root_missing.status,
        StatusCode::UNAUTHORIZED,
        "only the documented public paths skip auth"
    );
});

both!(request_ids, |app| {
    let kept = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "abc-123.x")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "abc-123.x");
    let replaced = app
        .client
        .get(app.url("/api/nope"))
        .header("x-request-id", "bad id<script>")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id<script>");
    assert_eq!(id.len(), 36, "a fresh UUID: {id}");
    let body: Value = replaced.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], id.as_str());
    let timed = app.get("/health/live").await;
    assert!(
        timed.headers["x-process-time"]
            .to_str()
            .unwrap()
            .parse::<f64>()
            .is_ok()
    );
});
