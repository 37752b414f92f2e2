//! Security headers on every response (seed contract §4.4), added only where a handler did not
//! set its own. The API gets a CSP that allows nothing; the docs page gets one that allows its
//! own scripts and styles (all served locally, no CDN).

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    hsts: Option<HeaderValue>,
}

impl SecurityHeaders {
    pub fn new(hsts_max_age: Option<u64>) -> Self {
        let hsts = hsts_max_age
            .and_then(|age| HeaderValue::from_str(&format!("max-age={age}; includeSubDomains")).ok());
        Self { hsts }
    }
}

fn is_docs(path: &str) -> bool {
    path == "/openapi.json" || path == "/docs" || path.starts_with("/docs/")
}

pub async fn layer(State(config): State<SecurityHeaders>, request: Request, next: Next) -> Response {
    let docs = is_docs(request.uri().path());
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut add = |name: HeaderName, value: &'static str| {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    };
    add(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    add(header::X_FRAME_OPTIONS, "DENY");
    add(header::X_XSS_PROTECTION, "1; mode=block");
    add(header::REFERRER_POLICY, "strict-origin-when-cross-origin");
    add(
        HeaderName::from_static("permissions-policy"),
        "geolocation=(), microphone=(), camera=()",
    );
    add(
        header::CONTENT_SECURITY_POLICY,
        if docs { DOCS_CSP } else { API_CSP },
    );
    if !docs {
        add(
            header::CACHE_CONTROL,
            "no-store, no-cache, must-revalidate, proxy-revalidate",
        );
        add(header::PRAGMA, "no-cache");
        add(header::EXPIRES, "0");
    }
    if let Some(hsts) = &config.hsts {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| hsts.clone());
    }
    response
}
