//! `ApiError`: the one place where failures become HTTP responses in the contract's envelope.
//! The client sees a safe message; the detail of internal errors goes to the log only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hangar_protocol::{ErrorBody, ErrorCode, ErrorDetail, ErrorInfo};
use hangar_store::StoreError;

use crate::middleware::request_id;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Vec<ErrorDetail>>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Vec<ErrorDetail>) -> Self {
        self.details = (!details.is_empty()).then_some(details);
        self
    }

    pub fn validation(message: impl Into<String>, details: Vec<ErrorDetail>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationError,
            message,
        )
        .with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::ValidationError, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            message,
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "internal server error",
        )
    }

    /// Returns `Err` with a 422 listing `violations` unless there are none.
    pub fn check(violations: Vec<ErrorDetail>) -> ApiResult<()> {
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Self::validation("invalid input", violations))
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorInfo {
                code: self.code,
                message: self.message.clone(),
                details: self.details.clone(),
                request_id: request_id::current(),
                timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                retry_after: self.retry_after,
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { resource, id } => Self::not_found(format!("{resource} '{id}' not found"))
                .with_details(vec![ErrorDetail {
                    field: Some(resource.to_owned()),
                    message: format!("no {resource} with id '{id}'"),
                    code: Some("not_found".into()),
                    count: None,
                }]),
            StoreError::Conflict { message, details } => {
                Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).with_details(details)
            }
            StoreError::Invalid { field, message } => {
                Self::bad_request(message.clone()).with_details(vec![ErrorDetail::field(
                    format!("body.{field}"),
                    "invalid",
                    message,
                )])
            }
            err @ (StoreError::Database(_) | StoreError::Migrate(_)) => {
                tracing::error!(error = %err, "store failure");
                if err.is_unavailable() {
                    Self::unavailable("the database is unavailable; try again shortly")
                } else {
                    Self::internal()
                }
            }
            err @ (StoreError::Corrupt(_) | StoreError::Config(_)) => {
                tracing::error!(error = %err, "store failure");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("errors_total", "code" => self.code.as_str()).increment(1);
        if self.status.is_server_error() {
            tracing::warn!(
                status = self.status.as_u16(),
                code = self.code.as_str(),
                "request failed"
            );
        }
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
