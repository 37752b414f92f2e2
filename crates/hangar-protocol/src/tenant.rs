//! Tenants: the organisations Hangar serves (seed contract §1.2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ErrorDetail, ModelId, TenantId, Violations, double_option};

/// Longest tenant system prompt accepted (bytes).
pub const MAX_SYSTEM_PROMPT_BYTES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Inactive,
}

crate::text_enum::text_enum!(TenantStatus { Active => "active", Inactive => "inactive" });

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub tenant_id: TenantId,
    /// Prepended to every agent run's system prompt in this tenant.
    pub system_prompt: Option<String>,
    /// Default model for new conversations.
    pub model_id: Option<ModelId>,
    pub status: TenantStatus,
    /// What the tenant's agents may use.
    pub policy: TenantPolicy,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantCreate {
    pub tenant_id: TenantId,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub model_id: Option<ModelId>,
    #[serde(default)]
    pub policy: TenantPolicy,
}

/// Fields left out stay as they are; `null` clears `system_prompt` or `model_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub system_prompt: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub model_id: Option<Option<ModelId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TenantStatus>,
    /// Replaces the whole policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TenantPolicy>,
}

/// Most tool names in `allowed_tools` or `denied_tools`, and most egress domains.
pub const MAX_POLICY_ENTRIES: usize = 200;

/// What a tenant's agents may use. The default: every tool, no network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// The only tools agents may use (`null`: all of them). Names as the model sees them,
    /// e.g. `Bash`, `Read`, `WebFetch`, `Task`; a trailing `*` matches a prefix
    /// (`mcp__github__*`).
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// Tools agents may never use; wins over `allowed_tools`.
    #[serde(default)]
    pub denied_tools: Vec<String>,
    /// Domains that sandboxed commands (through the egress proxy) and `WebFetch` may reach:
    /// `example.com`, or `*.example.com` for its subdomains. Empty: no network.
    #[serde(default)]
    pub egress_domains: Vec<String>,
}

impl TenantPolicy {
    fn validate(&self, out: &mut Violations) {
        let lists = [
            ("allowed_tools", self.allowed_tools.as_deref().unwrap_or_default()),
            ("denied_tools", self.denied_tools.as_slice()),
            ("egress_domains", self.egress_domains.as_slice()),
        ];
        for (name, list) in lists {
            let field = format!("body.policy.{name}");
            if list.len() > MAX_POLICY_ENTRIES {
                out.push(ErrorDetail::field(
                    field.clone(),
                    "too_long",
                    format!("{name} may hold at most {MAX_POLICY_ENTRIES} entries"),
                ));
            }
            let valid: fn(&str) -> bool = if name == "egress_domains" {
                is_domain_pattern
            } else {
                is_tool_name
            };
            for entry in list.iter().filter(|e| !valid(e)) {
                out.push(ErrorDetail::field(
                    field.clone(),
                    "invalid",
                    if name == "egress_domains" {
                        format!("{entry:?} is not a domain name or *.domain pattern")
                    } else {
                        format!(
                            "{entry:?} is not a tool name (letters, digits, '_', '-', '.', a trailing '*'; 1-128)"
                        )
                    },
                ));
            }
        }
    }
}

/// A tool name, or a prefix of one followed by `*`.
fn is_tool_name(name: &str) -> bool {
    let name = name.strip_suffix('*').unwrap_or(name);
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `example.com` or `*.example.com`: lower-case DNS labels, not an IP address.
fn is_domain_pattern(pattern: &str) -> bool {
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

fn check_prompt(prompt: Option<&str>, out: &mut Violations) {
    if prompt.is_some_and(|p| p.len() > MAX_SYSTEM_PROMPT_BYTES) {
        out.push(ErrorDetail::field(
            "body.system_prompt",
            "too_long",
            format!("system_prompt must be at most {MAX_SYSTEM_PROMPT_BYTES} bytes"),
        ));
    }
}

impl TenantCreate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        check_prompt(self.system_prompt.as_deref(), &mut out);
        self.policy.validate(&mut out);
        out
    }
}

impl TenantUpdate {
    pub fn validate(&self) -> Violations {
        let mut out = Vec::new();
        check_prompt(self.system_prompt.as_ref().and_then(|p| p.as_deref()), &mut out);
        if let Some(policy) = &self.policy {
            policy.validate(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(policy: TenantPolicy) -> Vec<String> {
        let mut out = Vec::new();
        policy.validate(&mut out);
        out.into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn policy_names_and_domains_are_checked() {
        let good = TenantPolicy {
            allowed_tools: Some(vec!["Bash".into(), "mcp__github__*".into()]),
            denied_tools: vec!["WebFetch".into()],
            egress_domains: vec!["pypi.org".into(), "*.pythonhosted.org".into()],
        };
        assert!(problems(good).is_empty());
        for domain in [
            "10.0.0.1", "com", "*.com", "Pypi.org", "a..b", "-x.org", "x.org/", "*",
        ] {
            let policy = TenantPolicy {
                egress_domains: vec![domain.into()],
                ..TenantPolicy::default()
            };
            assert_eq!(problems(policy).len(), 1, "{domain:?} accepted");
        }
        for tool in ["", "rm -rf", "a/b", "**"] {
            let policy = TenantPolicy {
                denied_tools: vec![tool.into()],
                ..TenantPolicy::default()
            };
            assert_eq!(problems(policy).len(), 1, "{tool:?} accepted");
        }
        let long = TenantPolicy {
            denied_tools: vec!["x".into(); MAX_POLICY_ENTRIES + 1],
            ..TenantPolicy::default()
        };
        assert_eq!(problems(long).len(), 1);
    }
}
