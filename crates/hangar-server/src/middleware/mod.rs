//! Tower middleware, outermost first: request id → observe (metrics, access log) → security
//! headers → CORS → timeout → auth → rate limit (conversation routes only) → routes. See
//! `app::router` for the assembly.

pub mod observe;
pub mod rate_limit;
pub mod request_id;
pub mod security_headers;
