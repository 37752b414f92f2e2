//! Removing secrets from what gets logged: query parameters with secret-looking names (the
//! original's list, §4.8). Headers are never logged at all.

use axum::http::Uri;

const SECRET_PARAM: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "api_key",
    "apikey",
    "access_token",
    "auth",
    "signature",
    "credential",
];

const REDACTED: &str = "***REDACTED***";

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAM.iter().any(|s| name.contains(s))
}

/// The path and query of `uri`, with the values of secret-looking query parameters replaced.
pub fn redact_uri(uri: &Uri) -> String {
    let path = uri.path();
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_secrets_are_redacted() {
        let uri: Uri = "/api/x?token=abc&limit=5&API_KEY=zzz&flag".parse().unwrap();
        assert_eq!(
            redact_uri(&uri),
            "/api/x?token=***REDACTED***&limit=5&API_KEY=***REDACTED***&flag"
        );
        let uri: Uri = "/api/x".parse().unwrap();
        assert_eq!(redact_uri(&uri), "/api/x");
    }
}
