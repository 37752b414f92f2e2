//! `/api/models` over HTTP.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

both!(crud_round_trip, |app| {
    let created = app
        .post(
            "/api/models",
            json!({
                "model_id": "claude-sonnet-4-5", "display_name": "Sonnet", "bedrock_model_id": "anthropic.sonnet",
                "model_region": "us-west-2", "input_token_price": "0.003", "output_token_price": 0.015,
                "cache_creation_5m_price": "0.00375", "cache_creation_1h_price": "0.006", "cache_read_price": "0.0003",
                "context_window": 200000, "max_output_tokens": 64000, "supports_extended_context": true,
                "extended_context_window": 1000000
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["input_token_price"], "0.003000");
    assert_eq!(created.body["output_token_price"], "0.015000");
    assert_eq!(created.body["cache_creation_5m_price"], "0.003750");
    assert_eq!(created.body["cache_read_price"], "0.000300");
    assert_eq!(created.body["status"], "active");
    assert_eq!(created.body["supports_extended_context"], true);

    assert_eq!(app.get("/api/models/claude-sonnet-4-5").await.body, created.body);
    app.model("aaa").await;
    let list = app.get("/api/models").await;
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Model aaa", "Sonnet"], "ordered by display name");

    let updated = app
        .put(
            "/api/models/claude-sonnet-4-5",
            json!({ "display_name": "Sonnet 4.5", "model_region": null, "input_token_price": "5" }),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["display_name"], "Sonnet 4.5");
    assert_eq!(updated.body["model_region"], Value::Null);
    assert_eq!(updated.body["input_token_price"], "5.000000");
    assert_eq!(
        updated.body["output_token_price"], "0.015000",
        "absent fields are kept"
    );

    let deprecated = app
        .send(
            Method::PATCH,
            "/api/models/claude-sonnet-4-5/status?status=deprecated",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(deprecated.status, StatusCode::OK);
    assert_eq!(deprecated.body["status"], "deprecated");
    let active = app.get("/api/models?status=active").await;
    assert_eq!(active.body.as_array().unwrap().len(), 1);
    let bad = app
        .send(
            Method::PATCH,
            "/api/models/claude-sonnet-4-5/status?status=gone",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let missing = app
        .send(
            Method::PATCH,
            "/api/models/claude-sonnet-4-5/status",
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(app.delete("/api/models/aaa").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/models/aaa").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete("/api/models/aaa").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.put("/api/models/aaa", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
});

both!(validation_and_conflicts, |app| {
    app.model("m1").await;
    let dup = app
        .post(
            "/api/models",
            json!({ "model_id": "m1", "display_name": "x", "bedrock_model_id": "y" }),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    for (body, field) in [
        (
            json!({ "model_id": "m2", "display_name": "", "bedrock_model_id": "y" }),
            "body.display_name",
        ),
        (
            json!({ "model_id": "m2", "display_name": "x", "bedrock_model_id": "y", "input_token_price": "-1" }),
            "body.input_token_price",
        ),
        (
            json!({ "model_id": "m2", "display_name": "x", "bedrock_model_id": "y", "input_token_price": "0.0000001" }),
            "body.input_token_price",
        ),
        (
            json!({ "model_id": "m2", "display_name": "x", "bedrock_model_id": "y", "context_window": 0 }),
            "body.context_window",
        ),
        (json!({ "model_id": "m2", "display_name": "x" }), "body"),
        (
            json!({ "model_id": "../m", "display_name": "x", "bedrock_model_id": "y" }),
            "body.model_id",
        ),
    ] {
        let reply = app.post("/api/models", body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.body
        );
        assert_eq!(
            reply.body["error"]["details"][0]["field"], field,
            "{body}: {}",
            reply.body
        );
    }
    assert_eq!(app.get("/api/models/m2").await.status, StatusCode::NOT_FOUND);
});

both!(delete_protection_names_counts, |app| {
    app.model("m1").await;
    app.tenant("a", Some("m1")).await;
    app.tenant("b", Some("m1")).await;
    app.sql(
        "INSERT INTO usage_logs (usage_log_id, tenant_id, model_id, executed_at) VALUES ('u1', 'a', 'm1', 0)",
    )
    .await;
    let refused = app.delete("/api/models/m1").await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    let details = refused.body["error"]["details"].as_array().unwrap();
    let counts: Vec<(String, i64)> = details
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().to_owned(),
                d["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts, [("tenants".to_owned(), 2), ("usage_logs".to_owned(), 1)]);
    assert_eq!(app.get("/api/models/m1").await.status, StatusCode::OK);
});
