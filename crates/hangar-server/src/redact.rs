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

/// Key names whose values are secrets wherever they appear in stored data (contract §4.8, but
/// matched as a whole name or suffix so `max_tokens` and `input_tokens` stay readable).
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "credential",
    "credentials",
    "auth_token",
];

/// How deep [`redact_value`] looks into nested data.
const MAX_DEPTH: usize = 10;

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    SECRET_KEYS
        .iter()
        .any(|s| key == *s || key.ends_with(&format!("_{s}")))
}

fn secret_patterns() -> &'static regex::Regex {
    static PATTERNS: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| {
        // Bearer tokens, Anthropic/OpenAI keys, AWS access key ids, GitHub and Slack tokens,
        // Hangar's own tenant keys.
        regex::Regex::new(
            r"(?i:bearer\s+)[A-Za-z0-9._~+/=-]{8,}|\bsk-[A-Za-z0-9_-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{20,}|\bxox[abprs]-[A-Za-z0-9-]{10,}|\bhgr_[A-Za-z0-9_]{16,}",
        )
        .unwrap_or_else(|_| regex::Regex::new("$^").unwrap_or_else(|_| unreachable!()))
    })
}

/// Replaces secrets in data about to be stored: values under secret-looking keys, strings that
/// look like credentials, and each of `known` (e.g. the tokens a request carried) wherever it
/// occurs.
pub fn redact_value(value: &mut serde_json::Value, known: &[String]) {
    redact_at(value, known, 0);
}

fn redact_at(value: &mut serde_json::Value, known: &[String], depth: usize) {
    use serde_json::Value;
    match value {
        Value::String(text) => {
            let mut out = secret_patterns().replace_all(text, REDACTED).into_owned();
            for secret in known.iter().filter(|s| s.len() >= 4) {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), REDACTED);
                }
            }
            if out != *text {
                *text = out;
            }
        }
        Value::Array(items) if depth < MAX_DEPTH => {
            for item in items {
                redact_at(item, known, depth + 1);
            }
        }
        Value::Object(map) if depth < MAX_DEPTH => {
            for (key, item) in map.iter_mut() {
                if is_secret_key(key) && !item.is_null() {
                    *item = Value::String(REDACTED.to_owned());
                } else {
                    redact_at(item, known, depth + 1);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod value_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_replaced_but_token_counts_stay() {
        let mut value = json!({
            "input": {"command": "curl -H 'Authorization: Bearer abcdefghijk123' https://x", "api_key": "k"},
            "max_tokens": 100,
            "github_token": "ghp_aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "note": "my key is sk-ant-REALLYSECRETVALUE123 and pw hunter22",
        });
        redact_value(&mut value, &["hunter22".to_owned()]);
        assert_eq!(value["max_tokens"], 100);
        assert_eq!(value["input"]["api_key"], REDACTED);
        assert_eq!(value["github_token"], REDACTED);
        let text = value.to_string();
        assert!(!text.contains("abcdefghijk123"), "{text}");
        assert!(!text.contains("REALLYSECRET"), "{text}");
        assert!(!text.contains("hunter22"), "{text}");
    }
}
