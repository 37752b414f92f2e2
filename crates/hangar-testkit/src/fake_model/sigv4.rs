//! SigV4 verification of Bedrock requests, done the way a server must: parse the
//! `Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/bedrock/aws4_request,
//! SignedHeaders=..., Signature=...` header, check the credential scope and the `x-amz-date`
//! (within 5 minutes), then recompute the signature with the `aws-sigv4` crate (the SDK's own
//! signer) over exactly the headers the client says it signed, the raw (still percent-encoded)
//! path and query, and the body bytes, and compare it with the one sent.
//!
//! The settings are the SDK's defaults for non-S3 services (double percent-encoding of the
//! path, path normalisation, no `x-amz-content-sha256`), except that the default list of
//! headers excluded from signing is cleared, since the client's `SignedHeaders` list is
//! authoritative. Failures carry the AWS error type and message a real endpoint would send.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use axum::http::{HeaderMap, Method, Uri};

use super::{AwsTestCredentials, SignatureCheck};

/// The service name Bedrock runtime requests are signed for.
pub(crate) const SERVICE: &str = "bedrock";

/// Largest accepted difference between `x-amz-date` and the server clock.
const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Why a request was refused (403).
#[derive(Debug)]
pub(crate) struct Rejection {
    /// `x-amzn-ErrorType`.
    pub error_type: &'static str,
    pub message: String,
    pub check: SignatureCheck,
}

impl Rejection {
    fn invalid(error_type: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            error_type,
            check: SignatureCheck::Invalid {
                reason: message.clone(),
            },
            message,
        }
    }
}

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// The parts of an `Authorization` header.
struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Rejection> {
    let incomplete = |what: &str| {
        Rejection::invalid(
            "IncompleteSignatureException",
            format!("Authorization header requires '{what}' parameter. Authorization={value}"),
        )
    };
    let Some(rest) = value.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(Rejection::invalid(
            "IncompleteSignatureException",
            format!("Unsupported authorization type or algorithm: {value}"),
        ));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let Some((key, val)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| incomplete("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| incomplete("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(Rejection::invalid(
            "IncompleteSignatureException",
            format!("Credential is malformed: {credential}"),
        ));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers: signed_headers.split(';').collect(),
        signature,
    })
}

/// Parses the SigV4 basic time format `YYYYMMDDTHHMMSSZ`.
pub(crate) fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Verifies the request's SigV4 signature against `creds` at server time `now`.
pub(crate) fn verify(
    creds: &AwsTestCredentials,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), Rejection> {
    let Some(auth) = headers.get("authorization") else {
        return Err(Rejection {
            error_type: "MissingAuthenticationTokenException",
            message: "Missing Authentication Token".into(),
            check: SignatureCheck::Missing,
        });
    };
    let auth = auth.to_str().map_err(|_| {
        Rejection::invalid(
            "IncompleteSignatureException",
            "Authorization header is not ASCII",
        )
    })?;
    let auth = parse_authorization(auth)?;
    if auth.access_key_id != creds.access_key_id {
        return Err(Rejection::invalid(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if auth.region != creds.region {
        return Err(Rejection::invalid(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region. (got '{}', expected '{}')",
                auth.region, creds.region
            ),
        ));
    }
    if auth.service != SERVICE || auth.terminator != "aws4_request" {
        return Err(Rejection::invalid(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{SERVICE}'."),
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Rejection::invalid(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        })?;
    let time = parse_amz_date(amz_date).ok_or_else(|| {
        Rejection::invalid(
            "IncompleteSignatureException",
            format!("Invalid X-Amz-Date: {amz_date}"),
        )
    })?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(Rejection::invalid(
            "InvalidSignatureException",
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{amz_date}'",
                auth.date
            ),
        ));
    }
    let skew = now
        .duration_since(time)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(Rejection::invalid(
            "InvalidSignatureException",
            format!(
                "Signature expired or not yet current: {amz_date} is more than 5 minutes from the server time."
            ),
        ));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(Rejection::invalid(
                "InvalidSignatureException",
                format!("'{required}' must be a signed header"),
            ));
        }
    }

    // The headers the client signed, with their values as received.
    let authority = uri.authority().map(|a| a.as_str().to_owned());
    let mut signed: Vec<(&str, String)> = Vec::new();
    for name in &auth.signed_headers {
        let mut values = headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            match (*name, &authority) {
                ("host", Some(authority)) => signed.push(("host", authority.clone())),
                _ => {
                    return Err(Rejection::invalid(
                        "InvalidSignatureException",
                        format!("signed header '{name}' is missing from the request"),
                    ));
                }
            }
        }
        for value in values {
            let value = value.to_str().map_err(|_| {
                Rejection::invalid(
                    "InvalidSignatureException",
                    format!("header '{name}' is not ASCII"),
                )
            })?;
            signed.push((name, value.to_owned()));
        }
    }
    let host = signed
        .iter()
        .find(|(n, _)| *n == "host")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "localhost".into());
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("http://{host}{path_and_query}");

    let recomputed =
        recompute(creds, method.as_str(), &url, &signed, body, time, auth.region).map_err(|e| {
            Rejection::invalid(
                "InvalidSignatureException",
                format!("cannot verify signature: {e}"),
            )
        })?;
    if recomputed.as_bytes() != auth.signature.as_bytes() {
        return Err(Rejection::invalid("InvalidSignatureException", MISMATCH));
    }
    Ok(())
}

/// The signature the SDK's signer produces for this request with the server's credentials.
fn recompute(
    creds: &AwsTestCredentials,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    time: SystemTime,
    region: &str,
) -> anyhow::Result<String> {
    let identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        None,
        None,
        "hangar-testkit",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(n, v)| (*n, v.as_str())),
        SignableBody::Bytes(body),
    )?;
    let (_, signature) = sign(request, &params)?.into_parts();
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_basic_amz_date_format() {
        let time = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(time.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_440_938_160);
        let leap = parse_amz_date("20240229T000000Z").unwrap();
        assert_eq!(leap.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_709_164_800);
        for bad in [
            "",
            "20150830T123600",
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "2015083xT123600Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_authorization_headers() {
        let auth = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature=abc123",
        )
        .unwrap();
        assert_eq!(auth.access_key_id, "AKID");
        assert_eq!(auth.date, "20150830");
        assert_eq!(auth.region, "us-east-1");
        assert_eq!(auth.service, "bedrock");
        assert_eq!(auth.signed_headers, ["content-type", "host", "x-amz-date"]);
        assert_eq!(auth.signature, "abc123");
        assert!(parse_authorization("Bearer x").is_err());
        assert!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=x").is_err()
        );
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b/c/d/e, Signature=x").is_err());
    }
}
