//! Tower middleware, outermost first: request id → observe (metrics, access log) → security
//! headers → CORS → timeout → auth → routes. See `app::router` for the assembly.

pub mod observe;
pub mod request_id;
pub mod security_headers;
