//! [`EgressPolicy`]: the domains, ports and networks a sandbox may reach, and the host-name rules
//! (normalization, wildcard patterns, valid names) that request parsing and resolution share.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::{Cidr, DEFAULT_PORTS, is_public};

/// What a sandbox may reach through the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    /// Allowed hosts: `example.com` (exactly that name) or `*.example.com` (any subdomain, not the
    /// apex). Case-insensitive; a trailing dot is ignored.
    pub domains: Vec<String>,
    /// Allowed destination ports (default `[80, 443]`).
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Networks that may be reached even though they are not public (an internal package mirror),
    /// and the only networks IP-literal hosts may name. Empty by default.
    #[serde(default)]
    pub allowed_networks: Vec<Cidr>,
}

fn default_ports() -> Vec<u16> {
    DEFAULT_PORTS.to_vec()
}

impl EgressPolicy {
    /// A policy allowing `domains` on ports 80 and 443, with no extra networks.
    pub fn new(domains: Vec<String>) -> Self {
        Self {
            domains,
            ports: default_ports(),
            allowed_networks: Vec::new(),
        }
    }

    /// Replaces the allowed ports.
    pub fn with_ports(mut self, ports: Vec<u16>) -> Self {
        self.ports = ports;
        self
    }

    /// Replaces the allowed networks.
    pub fn with_allowed_networks(mut self, networks: Vec<Cidr>) -> Self {
        self.allowed_networks = networks;
        self
    }

    /// Whether the host name `host` matches the allow-list. IP literals and syntactically invalid
    /// names never match.
    pub fn domain_allowed(&self, host: &str) -> bool {
        let host = normalize_name(host);
        if !is_valid_hostname(&host) || host.parse::<Ipv4Addr>().is_ok() {
            return false;
        }
        self.domains
            .iter()
            .any(|pattern| pattern_matches(&normalize_name(pattern), &host))
    }

    /// Whether `port` may be reached.
    pub fn port_allowed(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    /// Whether `ip` lies in one of [`Self::allowed_networks`].
    pub fn network_allowed(&self, ip: IpAddr) -> bool {
        self.allowed_networks.iter().any(|net| net.contains(ip))
    }

    /// Whether a resolved address may be connected to: public, or in an allowed network.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.network_allowed(ip)
    }
}

/// Lower-cases and drops surrounding whitespace and one trailing dot.
pub(super) fn normalize_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some(stripped) => stripped.to_string(),
        None => lower,
    }
}

/// `pattern` and `host` are normalized. `*.suffix` matches names with at least one more label.
fn pattern_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            is_valid_hostname(suffix)
                && host
                    .strip_suffix(suffix)
                    .and_then(|prefix| prefix.strip_suffix('.'))
                    .is_some_and(|labels| !labels.is_empty())
        }
        None => !pattern.is_empty() && pattern == host,
    }
}

/// A DNS name (already normalized): 1–253 characters, labels of 1–63 letters, digits, `-`, `_`.
pub(super) fn is_valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::testing::{cidr, ip};

    #[test]
    fn domain_matching() {
        let policy = EgressPolicy::new(vec![
            "pypi.org".into(),
            "*.Example.TEST.".into(),
            "*".into(),
            "".into(),
        ]);
        for allowed in [
            "pypi.org",
            "PyPI.org",
            "pypi.org.",
            "a.example.test",
            "a.b.example.test",
            "X.Example.Test.",
        ] {
            assert!(policy.domain_allowed(allowed), "{allowed}");
        }
        for refused in [
            "example.test",
            "badexample.test",
            ".example.test",
            "a..example.test",
            "files.pypi.org",
            "pypi.org.evil.test",
            "evil.test",
            "",
            ".",
            "*",
            "127.0.0.1",
            "::1",
            "a b.example.test",
            "a/b.example.test",
            "a.example.test:443",
        ] {
            assert!(!policy.domain_allowed(refused), "{refused}");
        }
        assert!(!EgressPolicy::new(vec!["*.".into()]).domain_allowed("a"));
        // IP literals are never domains, even when listed as one.
        assert!(!EgressPolicy::new(vec!["1.2.3.4".into()]).domain_allowed("1.2.3.4"));
    }

    #[test]
    fn policy_defaults_and_addresses() {
        let policy = EgressPolicy::new(vec!["a.test".into()]);
        assert_eq!(policy.ports, vec![80, 443]);
        assert!(policy.allowed_networks.is_empty());
        assert!(policy.port_allowed(443) && !policy.port_allowed(25));
        assert!(!policy.address_allowed(ip("127.0.0.1")));
        assert!(policy.address_allowed(ip("8.8.8.8")));
        let policy = policy
            .with_allowed_networks(vec![cidr("10.1.0.0/16")])
            .with_ports(vec![8080]);
        assert!(policy.address_allowed(ip("10.1.2.3")));
        assert!(!policy.address_allowed(ip("10.2.0.1")));
        assert!(policy.port_allowed(8080) && !policy.port_allowed(443));
    }

    #[test]
    fn policy_deserializes_with_defaults() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{Error, MapDeserializer};

        let fields = [("domains", vec!["pypi.org".to_string()])];
        let map =
            MapDeserializer::<_, Error>::new(fields.into_iter().map(|(k, v)| (k, v.into_deserializer())));
        let policy = EgressPolicy::deserialize(map).unwrap();
        assert_eq!(policy, EgressPolicy::new(vec!["pypi.org".into()]));

        let fields = [
            ("domains", vec![]),
            (
                "allowed_networks",
                vec!["10.1.0.0/16".to_string(), "127.0.0.1".to_string()],
            ),
        ];
        let map =
            MapDeserializer::<_, Error>::new(fields.into_iter().map(|(k, v)| (k, v.into_deserializer())));
        let policy = EgressPolicy::deserialize(map).unwrap();
        assert_eq!(
            policy.allowed_networks,
            vec![cidr("10.1.0.0/16"), cidr("127.0.0.1/32")]
        );

        let fields = [("allowed_networks", vec!["10.1.0.0/33".to_string()])];
        let map =
            MapDeserializer::<_, Error>::new(fields.into_iter().map(|(k, v)| (k, v.into_deserializer())));
        assert!(EgressPolicy::deserialize(map).is_err());
    }
}
