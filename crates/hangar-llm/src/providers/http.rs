//! What the HTTP providers (Anthropic, OpenAI-compatible) share: the reqwest client, sending a
//! request and classifying a failed response, `retry-after` parsing, and turning a response body
//! into a stream of server-sent events. Bedrock reuses the status classification for service
//! errors it does not recognise by name.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::LlmError;

/// Error bodies are read up to this many bytes (enough for any JSON error envelope).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Messages taken from a non-JSON error body are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// A client for one provider. `timeout` bounds connecting and each wait for response bytes, not
/// the whole call: a healthy stream may run for many minutes.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| LlmError::Config(format!("cannot build the HTTP client: {}", error_chain(&e))))
}

/// Joins `base` and `path` with exactly one slash, after checking that `base` is an http(s) URL.
pub(crate) fn endpoint(base: &str, path: &str) -> Result<String, LlmError> {
    let url = format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'));
    match reqwest::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(url),
        Ok(_) => Err(LlmError::Config(format!("base URL {base:?} is not http(s)"))),
        Err(e) => Err(LlmError::Config(format!("base URL {base:?} is invalid: {e}"))),
    }
}

/// Sends `request`, waits for the response headers (or `cancel`), and returns the response if
/// its status is 2xx. Any other status is read and classified with [`status_error`].
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    cancel: &CancellationToken,
) -> Result<reqwest::Response, LlmError> {
    let response = super::cancellable(cancel, async {
        request.send().await.map_err(|e| transport_error(&e))
    })
    .await?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    let body = super::cancellable(cancel, read_limited(response)).await?;
    Err(status_error(status.as_u16(), &headers, &body))
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, LlmError> {
    let mut body = Vec::new();
    // A body that breaks off still leaves the status to classify by.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    Ok(body)
}

/// Classifies a non-2xx response: the message comes from the body's `error.message` (or a plain
/// `error` string) when it is JSON, and the delay from `retry-after` / `retry-after-ms`.
pub(crate) fn status_error(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let message = error_message(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            format!("HTTP {status}")
        } else {
            text.chars().take(MAX_MESSAGE_CHARS).collect()
        }
    });
    classify_status(status, message, retry_after(headers, SystemTime::now()))
}

/// The error for an HTTP status (or a status a service error carried).
pub(crate) fn classify_status(status: u16, message: String, retry_after: Option<Duration>) -> LlmError {
    match status {
        429 => LlmError::RateLimited { retry_after, message },
        503 | 529 => LlmError::Overloaded { retry_after, message },
        401 | 403 => LlmError::Auth { status, message },
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::InvalidRequest { status, message },
    }
}

/// `error.message` (Anthropic, OpenAI, vLLM), a plain string `error` (Ollama) or a top-level
/// `message` (vLLM's error object), when `body` is JSON.
pub(crate) fn error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error");
    let message = error
        .and_then(|e| e.get("message"))
        .or_else(|| error.filter(|e| e.is_string()))
        .or_else(|| value.get("message"))?;
    message.as_str().map(str::to_owned)
}

/// The delay a response asks for: `retry-after-ms` (milliseconds), else `retry-after` in
/// seconds or as an HTTP-date (a date in the past means "now").
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let ms = headers.get("retry-after-ms").and_then(|v| v.to_str().ok());
    if let Some(delay) =
        ms.and_then(|ms| Duration::try_from_secs_f64(ms.trim().parse::<f64>().ok()? / 1000.0).ok())
    {
        return Some(delay);
    }
    let value = headers.get("retry-after")?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// Parses a `retry-after` value: delta-seconds (fractions tolerated) or an IMF-fixdate.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = parse_http_date(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses the IMF-fixdate form of an HTTP-date, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110
/// §5.6.7; the obsolete forms are not accepted).
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let (_weekday, rest) = value.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return None;
    }
    if !(0..=60).contains(&second) || !(1970..=9999).contains(&year) {
        return None;
    }
    let days = days_from_civil(year, month, i64::from(day));
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A transport failure (refused, reset, timed out, broken body) as [`LlmError::Connection`].
pub(crate) fn transport_error(error: &reqwest::Error) -> LlmError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "response body broke off"
    } else {
        "request failed"
    };
    LlmError::Connection(format!("{what}: {}", error_chain(error)))
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The server-sent events of a streaming response body.
pub(crate) fn sse_events(response: reqwest::Response) -> BoxStream<'static, Result<Event, LlmError>> {
    response
        .bytes_stream()
        .eventsource()
        .map(|item| {
            item.map_err(|error| match error {
                EventStreamError::Transport(e) => transport_error(&e),
                EventStreamError::Utf8(e) => LlmError::Protocol(format!("event stream is not UTF-8: {e}")),
                EventStreamError::Parser(e) => LlmError::Protocol(format!("malformed event stream: {e}")),
            })
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 1.5 ", now), Some(Duration::from_millis(1500)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(at(1_835_438_400))
        );
        for bad in [
            "",
            "-3",
            "NaN",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_ms_header_wins() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, at(0)), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers, at(0)), Some(Duration::from_millis(250)));
    }

    #[test]
    fn statuses_classify() {
        let headers = HeaderMap::new();
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            status_error(529, &headers, anthropic),
            LlmError::Overloaded {
                retry_after: None,
                message: "Overloaded".into()
            }
        );
        assert!(matches!(
            status_error(503, &headers, b""),
            LlmError::Overloaded { .. }
        ));
        assert!(matches!(
            status_error(429, &headers, b""),
            LlmError::RateLimited { .. }
        ));
        assert!(matches!(
            status_error(502, &headers, b""),
            LlmError::Server { status: 502, .. }
        ));
        assert!(matches!(
            status_error(401, &headers, b""),
            LlmError::Auth { status: 401, .. }
        ));
        assert!(matches!(
            status_error(403, &headers, b""),
            LlmError::Auth { status: 403, .. }
        ));
        assert_eq!(
            status_error(404, &headers, br#"{"error":"model 'x' not found"}"#),
            LlmError::InvalidRequest {
                status: 404,
                message: "model 'x' not found".into()
            }
        );
        assert_eq!(
            status_error(400, &headers, b"  plain text  "),
            LlmError::InvalidRequest {
                status: 400,
                message: "plain text".into()
            }
        );
        assert_eq!(
            status_error(500, &headers, b""),
            LlmError::Server {
                status: 500,
                message: "HTTP 500".into()
            }
        );
    }

    #[test]
    fn endpoints_join_and_validate() {
        assert_eq!(
            endpoint("https://api.anthropic.com/", "/v1/messages").ok(),
            Some("https://api.anthropic.com/v1/messages".to_owned())
        );
        assert_eq!(
            endpoint("http://127.0.0.1:11434/v1", "chat/completions").ok(),
            Some("http://127.0.0.1:11434/v1/chat/completions".to_owned())
        );
        assert!(matches!(endpoint("ftp://x", "a"), Err(LlmError::Config(_))));
        assert!(matches!(endpoint("not a url", "a"), Err(LlmError::Config(_))));
    }
}
