//! Caller-chosen identifiers, validated once at the edge so that no invalid id ever reaches a
//! query, a log line or a path on disk.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest id accepted for tenants and models (the original's `varchar(100)`).
pub const MAX_ID_LEN: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(String);

impl IdError {
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Checks an id: non-empty, at most `max` bytes, only ASCII letters, digits and `extra`,
/// starting with a letter or digit, and never containing `..`.
fn validate(kind: &str, value: &str, max: usize, extra: &[char]) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError(format!("{kind} must not be empty")));
    }
    if value.len() > max {
        return Err(IdError(format!("{kind} must be at most {max} characters")));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(IdError(format!("{kind} must start with a letter or digit")));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !extra.contains(c))
    {
        let allowed: String = extra.iter().collect();
        return Err(IdError(format!(
            "{kind} contains {bad:?}; allowed are ASCII letters, digits and {allowed:?}"
        )));
    }
    if value.contains("..") {
        return Err(IdError(format!("{kind} must not contain \"..\"")));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $extra:expr, $example:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, example = $example)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                validate($kind, &value, $max, $extra)?;
                Ok(Self(value))
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A tenant (organisation) id: letters, digits, `_` and `-`, at most 100 characters.
    TenantId, "tenant_id", MAX_ID_LEN, &['_', '-'], "acme"
);
id_type!(
    /// A model id: letters, digits, `_`, `-`, `.` and `:` (Bedrock-style names), at most 100
    /// characters, never `..`.
    ModelId, "model_id", MAX_ID_LEN, &['_', '-', '.', ':'], "claude-sonnet-4-5"
);
id_type!(
    /// The public half of a tenant API key, used to list and revoke it.
    ApiKeyId, "key_id", 64, &['_', '-'], "k3v9x2m4q8ta"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for ok in ["acme", "a", "Tenant_1-x", &"a".repeat(100)] {
            assert!(ok.parse::<TenantId>().is_ok(), "{ok}");
        }
        for ok in ["claude-3.5:v1", "us.anthropic.claude-3-5-haiku-20241022-v1:0"] {
            assert!(ok.parse::<ModelId>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_dangerous_ids() {
        let long = "a".repeat(101);
        for bad in [
            "", "a/b", "..", "a..b", "a\0b", "-lead", ".hidden", "sp ace", "é", &long,
        ] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad:?} accepted as tenant id");
            assert!(bad.parse::<ModelId>().is_err(), "{bad:?} accepted as model id");
        }
        assert!("a.b".parse::<TenantId>().is_err());
    }

    #[test]
    fn serde_validates() {
        let err = serde_json::from_str::<TenantId>("\"a/b\"").unwrap_err();
        assert!(err.to_string().contains("tenant_id contains '/'"), "{err}");
    }
}
