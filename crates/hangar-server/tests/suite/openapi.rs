//! The OpenAPI document: complete, and snapshot-tested so any change to the API is reviewed.

use std::collections::BTreeSet;

use pretty_assertions::assert_eq;

#[test]
fn every_route_is_documented_with_schemas() {
    let doc = serde_json::to_value(hangar_server::openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.insert(format!("{} {path}", method.to_uppercase()));
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} has no responses"
            );
        }
    }
    let expected: BTreeSet<String> = [
        "GET /",
        "GET /health",
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
        "GET /openapi.json",
        "GET /api/tenants",
        "POST /api/tenants",
        "GET /api/tenants/{tenant_id}",
        "PUT /api/tenants/{tenant_id}",
        "DELETE /api/tenants/{tenant_id}",
        "GET /api/models",
        "POST /api/models",
        "GET /api/models/{model_id}",
        "PUT /api/models/{model_id}",
        "DELETE /api/models/{model_id}",
        "PATCH /api/models/{model_id}/status",
        "GET /api/tenants/{tenant_id}/api-keys",
        "POST /api/tenants/{tenant_id}/api-keys",
        "DELETE /api/tenants/{tenant_id}/api-keys/{key_id}",
        "GET /api/audit-log",
        "POST /api/tenants/{tenant_id}/simple-chats/stream",
        "GET /api/tenants/{tenant_id}/simple-chats",
        "GET /api/tenants/{tenant_id}/simple-chats/{chat_id}",
        "DELETE /api/tenants/{tenant_id}/simple-chats/{chat_id}",
        "POST /api/tenants/{tenant_id}/simple-chats/{chat_id}/archive",
        "GET /api/tenants/{tenant_id}/conversations",
        "POST /api/tenants/{tenant_id}/conversations",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}",
        "PUT /api/tenants/{tenant_id}/conversations/{conversation_id}",
        "DELETE /api/tenants/{tenant_id}/conversations/{conversation_id}",
        "POST /api/tenants/{tenant_id}/conversations/{conversation_id}/archive",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/messages",
        "POST /api/tenants/{tenant_id}/conversations/{conversation_id}/stream",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/runs",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/runs/{run_id}",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/runs/{run_id}/events",
        "POST /api/tenants/{tenant_id}/conversations/{conversation_id}/runs/{run_id}/cancel",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/ws",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/files",
        "POST /api/tenants/{tenant_id}/conversations/{conversation_id}/files",
        "DELETE /api/tenants/{tenant_id}/conversations/{conversation_id}/files",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/files/download",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/files/presented",
        "POST /api/tenants/{tenant_id}/conversations/{conversation_id}/files/present",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/workspace/snapshots",
        "GET /api/tenants/{tenant_id}/conversations/{conversation_id}/workspace/diff",
        "POST /api/tenants/{tenant_id}/conversations/{conversation_id}/workspace/restore",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(operations, expected);
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "Tenant",
        "TenantCreate",
        "TenantUpdate",
        "Model",
        "ModelCreate",
        "ModelUpdate",
        "ErrorBody",
        "ApiKeyCreated",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[test]
fn document_snapshot() {
    insta::assert_json_snapshot!("openapi", hangar_server::openapi());
}
