//! Extractors whose rejections use the error envelope: `ApiJson` (415 for a wrong content type,
//! 413 past the body limit, 422 with the offending field for malformed or mistyped JSON),
//! `ApiQuery` and `ApiPath` (422 naming the parameter), and multipart forms read under a byte
//! limit (`multipart`, `multipart_error`: 413 past it, else 400).

use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Multipart, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use hangar_protocol::{ErrorCode, ErrorDetail};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The request's multipart form, its body cut off after `limit` bytes (reading a field past
/// it fails; [`multipart_error`] makes that a 413).
pub async fn multipart<S: Send + Sync>(
    state: &S,
    request: Request,
    limit: usize,
) -> Result<Multipart, ApiError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit));
    Multipart::from_request(Request::from_parts(parts, body), state)
        .await
        .map_err(|err| ApiError::bad_request(format!("invalid multipart form: {err}")))
}

/// A failure reading a [`multipart`] form: 413 past its `limit`, else 400.
pub fn multipart_error(err: &MultipartError, limit: usize) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("the request body is larger than {limit} bytes"))
    } else {
        ApiError::bad_request(format!("invalid multipart form: {err}"))
    }
}

/// A JSON request body.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

fn is_json(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Parses JSON, naming the path of the first offending field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        json_error(
            if path.is_empty() || path == "." {
                None
            } else {
                Some(path)
            },
            &err.into_inner(),
        )
    })?;
    de.end().map_err(|err| json_error(None, &err))?;
    Ok(value)
}

fn json_error(path: Option<String>, err: &serde_json::Error) -> ApiError {
    let (message, code) = if err.is_syntax() || err.is_eof() {
        ("malformed JSON body", "json_syntax")
    } else {
        ("invalid request body", "json_invalid")
    };
    let field = path.map_or_else(|| "body".to_owned(), |p| format!("body.{p}"));
    ApiError::validation(message, vec![ErrorDetail::field(field, code, err.to_string())])
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&request) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    ApiError::too_large("request body too large")
                }
                other => {
                    ApiError::bad_request(format!("could not read the request body: {}", other.body_text()))
                }
            })?;
        parse_json(&bytes).map(Self)
    }
}

/// A JSON body that may also be left out entirely (then `T::default()`).
#[derive(Debug, Clone)]
pub struct ApiJsonOrDefault<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let empty = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            || (!request.headers().contains_key(header::CONTENT_LENGTH)
                && !request.headers().contains_key(header::TRANSFER_ENCODING));
        if empty {
            return Ok(Self(T::default()));
        }
        ApiJson::from_request(request, state)
            .await
            .map(|ApiJson(v)| Self(v))
    }
}

/// Query parameters.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|rejection| {
                let message = rejection.body_text();
                let message = message
                    .trim_start_matches("Failed to deserialize query string: ")
                    .to_owned();
                ApiError::validation(
                    "invalid query parameters",
                    vec![ErrorDetail::field("query", "invalid", message)],
                )
            })
    }
}

/// Path parameters; ids are validated by their types (`TenantId`, `ModelId`, …).
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|rejection| {
                ApiError::validation(
                    "invalid path parameter",
                    vec![ErrorDetail::field("path", "invalid", rejection.body_text())],
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use hangar_protocol::TenantCreate;

    use super::*;

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_json::<TenantCreate>(br#"{"tenant_id": 5}"#).unwrap_err();
        let detail = &err.details.unwrap()[0];
        assert_eq!(detail.field.as_deref(), Some("body.tenant_id"));
        let err = parse_json::<TenantCreate>(br#"{"tenant_id": "a/b"}"#).unwrap_err();
        assert!(err.details.unwrap()[0].message.contains("'/'"));
        let err = parse_json::<TenantCreate>(br#"{"tenant_id": "a""#).unwrap_err();
        assert_eq!(err.message, "malformed JSON body");
        let err = parse_json::<TenantCreate>(br#"{"tenant_id": "a"} x"#).unwrap_err();
        assert_eq!(err.message, "malformed JSON body");
        let err = parse_json::<TenantCreate>(br#"{"tenant_id": "a", "sytem_prompt": ""}"#).unwrap_err();
        assert!(err.details.unwrap()[0].message.contains("unknown field"));
    }
}
