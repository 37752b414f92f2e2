//! What the proxy reports about each request: an [`EgressDecision`] handed to the embedder's
//! [`EgressAudit`] callback, a debug log line, and the `hangar_sandbox_egress_total{decision}` count.

use std::net::SocketAddr;
use std::sync::Arc;

const METRIC_TOTAL: &str = "hangar_sandbox_egress_total";

/// One allow/refuse decision of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressDecision {
    /// Requested host (normalized; an IP literal without brackets); empty if the request was
    /// unreadable.
    pub host: String,
    /// Requested port; 0 if the request was unreadable.
    pub port: u16,
    /// `CONNECT` or the HTTP method; empty if the request line was unreadable.
    pub method: String,
    /// Whether the request went through: false for refusals and for failed connections.
    pub allowed: bool,
    /// `allowed`, or why not (`domain not in allow-list`, `address 10.0.0.1 is private`, …).
    pub reason: String,
    /// The address connected to, when allowed.
    pub address: Option<SocketAddr>,
}

/// Receives every [`EgressDecision`]. Called inline on the connection's task: keep it cheap.
pub type EgressAudit = Arc<dyn Fn(&EgressDecision) + Send + Sync>;

/// What the audit records about a request before the outcome is known.
pub(super) struct Attempt {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) method: String,
}

impl Attempt {
    /// A request whose host and port could not be read.
    pub(super) fn unreadable(method: String) -> Self {
        Self {
            host: String::new(),
            port: 0,
            method,
        }
    }
}

/// Audits and counts a decision; `address` is `Some` exactly when the request is allowed.
pub(super) fn record(audit: &EgressAudit, attempt: &Attempt, reason: &str, address: Option<SocketAddr>) {
    let allowed = address.is_some();
    let decision = EgressDecision {
        host: attempt.host.clone(),
        port: attempt.port,
        method: attempt.method.clone(),
        allowed,
        reason: reason.to_string(),
        address,
    };
    let label = if allowed { "allowed" } else { "refused" };
    metrics::counter!(METRIC_TOTAL, "decision" => label).increment(1);
    tracing::debug!(
        host = %decision.host,
        port = decision.port,
        method = %decision.method,
        allowed,
        reason = %decision.reason,
        "egress decision"
    );
    audit(&decision);
}
