//! AWS Bedrock through the official SDK, which owns SigV4 signing, the credential chain and the
//! binary event-stream framing. Anthropic models go through `InvokeModelWithResponseStream` with
//! the Anthropic JSON body (prompt caching, thinking and tools exactly as on the Anthropic API,
//! decoded by the same [`AnthropicDecoder`]); every other model goes through `ConverseStream`.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region, StalledStreamProtectionConfig};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::types::error::{ConverseStreamOutputError, ResponseStreamError};
use aws_sdk_bedrockruntime::types::{ConverseStreamOutput as ConverseEvent, ResponseStream};
use aws_smithy_types::event_stream::RawMessage;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::anthropic_stream::AnthropicDecoder;
use super::bedrock_converse::{ConverseDecoder, converse_request};
use super::{RawDecoder, anthropic, cancellable, drive, http};
use crate::{EventStream, LlmError, ModelProvider, ModelRequest, StreamEvent};

/// Static AWS credentials (otherwise the standard chain is used).
#[derive(Clone, PartialEq, Eq)]
pub struct BedrockCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for BedrockCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// How to reach Bedrock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockConfig {
    pub region: String,
    /// Overrides the regional endpoint (tests: `http://127.0.0.1:PORT`).
    pub endpoint_url: Option<String>,
    /// `None`: the standard chain (environment, profile, web identity, container, instance).
    pub credentials: Option<BedrockCredentials>,
    /// Bounds connecting, waiting for the response, and each wait for the next stream event.
    pub timeout: Duration,
}

impl BedrockConfig {
    /// `region` with the standard credential chain and a 120 s timeout.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            endpoint_url: None,
            credentials: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Streams from Bedrock models.
#[derive(Debug, Clone)]
pub struct BedrockProvider {
    client: aws_sdk_bedrockruntime::Client,
    timeout: Duration,
}

impl BedrockProvider {
    /// Builds the SDK client. With explicit credentials nothing is probed (no profile files, no
    /// instance metadata); without, the standard chain is resolved lazily on the first call. The
    /// SDK's own retries are off: the gateway retries, with its own budget and breaker.
    pub async fn new(config: BedrockConfig) -> Result<Self, LlmError> {
        if config.region.trim().is_empty() {
            return Err(LlmError::Config("the Bedrock region is empty".into()));
        }
        let region = Region::new(config.region.clone());
        let mut builder = match &config.credentials {
            Some(creds) => aws_sdk_bedrockruntime::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(region)
                .credentials_provider(Credentials::new(
                    creds.access_key_id.clone(),
                    creds.secret_access_key.clone(),
                    creds.session_token.clone(),
                    None,
                    "hangar-static",
                )),
            None => {
                let shared = aws_config::defaults(BehaviorVersion::latest())
                    .region(region)
                    .load()
                    .await;
                aws_sdk_bedrockruntime::config::Builder::from(&shared)
            }
        };
        builder = builder
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .timeout_config(TimeoutConfig::builder().connect_timeout(config.timeout).build());
        if let Some(url) = &config.endpoint_url {
            http::endpoint(url, "")?;
            builder = builder.endpoint_url(url.trim_end_matches('/'));
        }
        Ok(Self {
            client: aws_sdk_bedrockruntime::Client::from_conf(builder.build()),
            timeout: config.timeout,
        })
    }

    /// Whether `model_id` (a model id, an inference profile id or its ARN) is an Anthropic model,
    /// which is called with the Anthropic body instead of Converse.
    pub fn uses_anthropic_body(model_id: &str) -> bool {
        let id = model_id.to_ascii_lowercase();
        id.starts_with("anthropic") || id.contains("anthropic.")
    }

    /// The `InvokeModelWithResponseStream` body for an Anthropic model: the Messages API body
    /// without `model` and `stream`, with `"anthropic_version": "bedrock-2023-05-31"`.
    pub fn anthropic_body(request: &ModelRequest) -> Value {
        anthropic::bedrock_body(request)
    }

    async fn invoke(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, LlmError> {
        let body = serde_json::to_vec(&Self::anthropic_body(request))
            .map_err(|e| LlmError::Config(format!("cannot encode the request: {e}")))?;
        let call = self
            .client
            .invoke_model_with_response_stream()
            .model_id(&request.model)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(body))
            .send();
        let output = cancellable(&cancel, self.bounded(call)).await?;
        let source = events(output.body, self.timeout);
        Ok(drive(source, InvokeDecoder(AnthropicDecoder::new()), cancel))
    }

    async fn converse(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, LlmError> {
        let mapped = converse_request(request)?;
        let call = self
            .client
            .converse_stream()
            .model_id(&request.model)
            .set_system((!mapped.system.is_empty()).then_some(mapped.system))
            .set_messages(Some(mapped.messages))
            .set_tool_config(mapped.tool_config)
            .inference_config(mapped.inference)
            .send();
        let output = cancellable(&cancel, self.bounded(call)).await?;
        let source = events(output.stream, self.timeout);
        Ok(drive(
            source,
            ConverseStreamDecoder(ConverseDecoder::new(&request.model)),
            cancel,
        ))
    }

    /// Awaits an SDK call for at most the configured timeout, mapping its error.
    async fn bounded<T, E>(
        &self,
        call: impl Future<Output = Result<T, SdkError<E, aws_sdk_bedrockruntime::config::http::HttpResponse>>>,
    ) -> Result<T, LlmError>
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| sdk_error(&e)),
            Err(_) => Err(LlmError::Connection(format!(
                "no response from Bedrock within {:?}",
                self.timeout
            ))),
        }
    }
}

#[async_trait::async_trait]
impl ModelProvider for BedrockProvider {
    fn name(&self) -> &str {
        "bedrock"
    }

    async fn stream(
        &self,
        request: &ModelRequest,
        cancel: CancellationToken,
    ) -> Result<EventStream, LlmError> {
        let anthropic = Self::uses_anthropic_body(&request.model);
        tracing::debug!(model = %request.model, anthropic, "bedrock stream");
        if anthropic {
            self.invoke(request, cancel).await
        } else {
            self.converse(request, cancel).await
        }
    }
}

/// The wire name of an exception inside an event stream. The SDK does not fill in the error
/// code of modelled stream exceptions, so it is recovered from the variant.
pub(crate) trait StreamException: ProvideErrorMetadata + StdError + Send + Sync + 'static {
    fn exception_type(&self) -> Option<&'static str>;
}

impl StreamException for ResponseStreamError {
    fn exception_type(&self) -> Option<&'static str> {
        Some(match self {
            Self::InternalServerException(_) => "internalServerException",
            Self::ModelStreamErrorException(_) => "modelStreamErrorException",
            Self::ValidationException(_) => "validationException",
            Self::ThrottlingException(_) => "throttlingException",
            Self::ModelTimeoutException(_) => "modelTimeoutException",
            Self::ServiceUnavailableException(_) => "serviceUnavailableException",
            _ => return None,
        })
    }
}

impl StreamException for ConverseStreamOutputError {
    fn exception_type(&self) -> Option<&'static str> {
        Some(match self {
            Self::InternalServerException(_) => "internalServerException",
            Self::ModelStreamErrorException(_) => "modelStreamErrorException",
            Self::ValidationException(_) => "validationException",
            Self::ThrottlingException(_) => "throttlingException",
            Self::ServiceUnavailableException(_) => "serviceUnavailableException",
            _ => return None,
        })
    }
}

/// The events of an SDK event stream; each wait is bounded by `idle`.
fn events<T, E>(receiver: EventReceiver<T, E>, idle: Duration) -> BoxStream<'static, Result<T, LlmError>>
where
    T: Send + 'static,
    E: StreamException,
{
    futures::stream::unfold(Some(receiver), move |receiver| async move {
        let mut receiver = receiver?;
        match tokio::time::timeout(idle, receiver.recv()).await {
            Err(_) => Some((
                Err(LlmError::Connection(format!(
                    "no stream event from Bedrock within {idle:?}"
                ))),
                None,
            )),
            Ok(Ok(Some(event))) => Some((Ok(event), Some(receiver))),
            Ok(Ok(None)) => None,
            Ok(Err(error)) => Some((Err(stream_error(&error)), None)),
        }
    })
    .boxed()
}

/// Feeds `InvokeModelWithResponseStream` chunks (Anthropic JSON events) to the decoder.
struct InvokeDecoder(AnthropicDecoder);

impl RawDecoder for InvokeDecoder {
    type Item = ResponseStream;

    fn decode(&mut self, item: ResponseStream) -> Result<Vec<StreamEvent>, LlmError> {
        match item {
            ResponseStream::Chunk(part) => {
                let bytes = part.bytes().map(|b| b.as_ref()).unwrap_or_default();
                let data = std::str::from_utf8(bytes)
                    .map_err(|e| LlmError::Protocol(format!("a Bedrock chunk is not UTF-8: {e}")))?;
                self.0.feed("", data)
            }
            _ => Ok(Vec::new()),
        }
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        self.0.finish().map(|()| Vec::new())
    }
}

struct ConverseStreamDecoder(ConverseDecoder);

impl RawDecoder for ConverseStreamDecoder {
    type Item = ConverseEvent;

    fn decode(&mut self, item: ConverseEvent) -> Result<Vec<StreamEvent>, LlmError> {
        self.0.feed(item)
    }

    fn is_finished(&self) -> bool {
        false
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        self.0.end()
    }
}

/// Classifies a Bedrock service error by its code, falling back to the HTTP status.
pub(crate) fn classify_service_error(
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> LlmError {
    let message = message
        .filter(|m| !m.is_empty())
        .or(code)
        .unwrap_or("Bedrock returned an error")
        .to_owned();
    let status_or = |default: u16| status.unwrap_or(default);
    match code.unwrap_or("") {
        "ThrottlingException" | "TooManyRequestsException" => LlmError::RateLimited {
            retry_after: None,
            message,
        },
        "ServiceUnavailableException" | "ModelNotReadyException" => LlmError::Overloaded {
            retry_after: None,
            message,
        },
        "InternalServerException" | "InternalFailure" | "ModelTimeoutException" | "ModelErrorException" => {
            LlmError::Server {
                status: status_or(500),
                message,
            }
        }
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "ExpiredTokenException" => LlmError::Auth {
            status: status_or(403),
            message,
        },
        "ValidationException"
        | "ResourceNotFoundException"
        | "ServiceQuotaExceededException"
        | "ConflictException" => LlmError::InvalidRequest {
            status: status_or(400),
            message,
        },
        _ => match status {
            Some(status) => http::classify_status(status, message, None),
            None => LlmError::Server { status: 500, message },
        },
    }
}

/// Maps the error of an SDK call that failed before streaming.
pub(crate) fn sdk_error<E>(
    error: &SdkError<E, aws_sdk_bedrockruntime::config::http::HttpResponse>,
) -> LlmError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match error {
        SdkError::ServiceError(service) => {
            let raw = service.raw();
            let mut mapped = classify_service_error(
                service.err().code(),
                service.err().message(),
                Some(raw.status().as_u16()),
            );
            let after = raw
                .headers()
                .get("retry-after")
                .and_then(|v| http::parse_retry_after(v, std::time::SystemTime::now()));
            if let LlmError::RateLimited { retry_after, .. } | LlmError::Overloaded { retry_after, .. } =
                &mut mapped
            {
                *retry_after = after;
            }
            mapped
        }
        SdkError::TimeoutError(_) => {
            LlmError::Connection(format!("Bedrock timed out: {}", http::error_chain(error)))
        }
        SdkError::DispatchFailure(_) => {
            LlmError::Connection(format!("cannot reach Bedrock: {}", http::error_chain(error)))
        }
        SdkError::ResponseError(_) => LlmError::Protocol(format!(
            "unreadable Bedrock response: {}",
            http::error_chain(error)
        )),
        SdkError::ConstructionFailure(_) => LlmError::Config(format!(
            "cannot build the Bedrock request: {}",
            http::error_chain(error)
        )),
        _ => LlmError::Connection(http::error_chain(error)),
    }
}

/// Maps an error inside an event stream: an exception event is the provider's mid-stream error.
pub(crate) fn stream_error<E: StreamException>(error: &SdkError<E, RawMessage>) -> LlmError {
    match error {
        SdkError::ServiceError(service) => LlmError::Stream {
            kind: (service.err().exception_type())
                .or_else(|| service.err().code())
                .unwrap_or("exception")
                .to_owned(),
            message: (service.err().message().map(str::to_owned))
                .unwrap_or_else(|| service.err().to_string()),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => LlmError::Connection(format!(
            "the Bedrock stream broke off: {}",
            http::error_chain(error)
        )),
        _ => LlmError::Protocol(format!(
            "malformed Bedrock event stream: {}",
            http::error_chain(error)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockruntime::config::http::HttpResponse;
    use aws_sdk_bedrockruntime::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_bedrockruntime::operation::invoke_model_with_response_stream::InvokeModelWithResponseStreamError as InvokeError;
    use aws_sdk_bedrockruntime::types::error::{
        AccessDeniedException, ModelStreamErrorException, ThrottlingException, ValidationException,
    };
    use aws_smithy_types::body::SdkBody;
    use pretty_assertions::assert_eq;

    fn meta(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    fn response(status: u16, retry_after: Option<&str>) -> HttpResponse {
        let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        if let Some(value) = retry_after {
            response.headers_mut().insert("retry-after", value.to_owned());
        }
        response
    }

    #[test]
    fn codes_classify() {
        let cases = [
            ("ThrottlingException", 429, "rate_limited"),
            ("ServiceUnavailableException", 503, "overloaded"),
            ("ModelNotReadyException", 429, "overloaded"),
            ("InternalServerException", 500, "server_error"),
            ("ModelTimeoutException", 408, "server_error"),
            ("AccessDeniedException", 403, "auth_error"),
            ("UnrecognizedClientException", 403, "auth_error"),
            ("ExpiredTokenException", 403, "auth_error"),
            ("ValidationException", 400, "invalid_request"),
            ("ResourceNotFoundException", 404, "invalid_request"),
            ("SomethingNew", 502, "server_error"),
            ("SomethingNew", 429, "rate_limited"),
            ("SomethingNew", 418, "invalid_request"),
        ];
        for (code, status, kind) in cases {
            assert_eq!(
                classify_service_error(Some(code), Some("m"), Some(status)).kind(),
                kind,
                "{code} {status}"
            );
        }
        assert_eq!(
            classify_service_error(None, None, None),
            LlmError::Server {
                status: 500,
                message: "Bedrock returned an error".into()
            }
        );
    }

    #[test]
    fn service_errors_map_with_retry_after() {
        let throttled = ThrottlingException::builder()
            .message("slow down")
            .meta(meta("ThrottlingException", "slow down"))
            .build();
        let error = SdkError::service_error(
            InvokeError::ThrottlingException(throttled),
            response(429, Some("4")),
        );
        assert_eq!(
            sdk_error(&error),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(4)),
                message: "slow down".into()
            }
        );
        let denied = AccessDeniedException::builder()
            .meta(meta("AccessDeniedException", "no access"))
            .build();
        let error = SdkError::service_error(InvokeError::AccessDeniedException(denied), response(403, None));
        assert_eq!(
            sdk_error(&error),
            LlmError::Auth {
                status: 403,
                message: "no access".into()
            }
        );
        let invalid = ValidationException::builder()
            .meta(meta("ValidationException", "bad max_tokens"))
            .build();
        let error = SdkError::service_error(InvokeError::ValidationException(invalid), response(400, None));
        assert_eq!(sdk_error(&error).kind(), "invalid_request");
    }

    #[test]
    fn transport_failures_map() {
        let timeout: SdkError<InvokeError, HttpResponse> = SdkError::timeout_error("too slow");
        assert_eq!(sdk_error(&timeout).kind(), "connection_error");
        let refused: SdkError<InvokeError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        assert_eq!(sdk_error(&refused).kind(), "connection_error");
        let garbled: SdkError<InvokeError, HttpResponse> =
            SdkError::response_error("bad frame", response(200, None));
        assert_eq!(sdk_error(&garbled).kind(), "protocol_error");
        let unbuildable: SdkError<InvokeError, HttpResponse> = SdkError::construction_failure("no model id");
        assert_eq!(sdk_error(&unbuildable).kind(), "config_error");
    }

    #[test]
    fn stream_exceptions_map() {
        let failed = ModelStreamErrorException::builder()
            .message("model broke")
            .build();
        let error = SdkError::service_error(
            ResponseStreamError::ModelStreamErrorException(failed),
            RawMessage::invalid(None),
        );
        let LlmError::Stream { kind, message } = stream_error(&error) else {
            panic!("not a stream error")
        };
        assert_eq!(kind, "modelStreamErrorException");
        assert!(message.contains("model broke"), "{message}");
        let throttled = aws_sdk_bedrockruntime::types::error::ThrottlingException::builder()
            .message("tokens")
            .build();
        let error = SdkError::service_error(
            ConverseStreamOutputError::ThrottlingException(throttled),
            RawMessage::invalid(None),
        );
        assert_eq!(stream_error(&error).kind(), "stream_error");
        let broken: SdkError<ResponseStreamError, RawMessage> =
            SdkError::dispatch_failure(ConnectorError::io("reset".into()));
        assert_eq!(stream_error(&broken).kind(), "connection_error");
        let garbled: SdkError<ResponseStreamError, RawMessage> =
            SdkError::response_error("bad crc", RawMessage::invalid(None));
        assert_eq!(stream_error(&garbled).kind(), "protocol_error");
    }

    #[test]
    fn credentials_are_redacted() {
        let creds = BedrockCredentials {
            access_key_id: "AKID".into(),
            secret_access_key: "very-secret".into(),
            session_token: Some("token-secret".into()),
        };
        let text = format!("{creds:?}");
        assert!(
            !text.contains("very-secret") && !text.contains("token-secret"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn empty_region_is_a_config_error() {
        let config = BedrockConfig {
            credentials: Some(BedrockCredentials {
                access_key_id: "a".into(),
                secret_access_key: "b".into(),
                session_token: None,
            }),
            ..BedrockConfig::new(" ")
        };
        assert!(matches!(
            BedrockProvider::new(config).await,
            Err(LlmError::Config(_))
        ));
    }
}
