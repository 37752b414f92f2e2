//! Host-side HTTP/HTTPS egress proxy for sandboxes.
//!
//! Sandboxes have no network of their own. When a tenant allows some domains, the in-sandbox
//! supervisor bridges `127.0.0.1:3128` inside the sandbox to a Unix socket on the host, on which an
//! [`EgressProxy`] listens; `HTTP_PROXY`/`HTTPS_PROXY` inside point at it.
//!
//! Each connection carries exactly one request:
//!
//! * `CONNECT host:port` opens a tunnel (HTTPS): after `200 Connection Established` bytes are
//!   copied both ways untouched.
//! * An absolute-form request (`GET http://host[:port]/path HTTP/1.1`) is rewritten to origin
//!   form, stripped of hop-by-hop and `Proxy-*` headers, given `Host` from the URL and
//!   `Connection: close`, and sent to the origin together with its body (delimited by
//!   `Content-Length` or chunked framing, so nothing pipelined after it reaches the origin); the
//!   response is streamed back until the origin closes.
//!
//! Every request is vetted in this order: the port must be listed ([`EgressPolicy::ports`]); a
//! name must match the allow-list ([`EgressPolicy::domain_allowed`]) while an IP literal must lie
//! in [`EgressPolicy::allowed_networks`]; the proxy then resolves the name itself through a
//! [`Resolve`] implementation and refuses if *any* address is not public ([`is_public`]) unless
//! it lies in an allowed network. Only then does it connect, to exactly one of the vetted
//! addresses — the client never chooses an address and nothing is resolved twice.
//!
//! Every decision is reported to an [`EgressAudit`] callback as an [`EgressDecision`] and counted
//! in `hangar_sandbox_egress_total{decision}`. Refusals are answered with `403` (policy), `400`
//! (malformed request) or `502` (resolution or connection failure) and a one-line plain-text body.
//!
//! The files follow a request: `proxy` accepts it and reads its head (`head`, `body`); `origin`
//! vets and connects it using `policy`, `address`, `cidr` and `resolve`; `relay` serves it; and
//! `audit` reports the decision.

use std::time::Duration;

mod address;
mod audit;
mod body;
mod cidr;
mod head;
mod origin;
mod policy;
mod proxy;
mod relay;
mod resolve;
#[cfg(test)]
mod testing;

pub use address::{is_public, non_public_reason};
pub use audit::{EgressAudit, EgressDecision};
pub use cidr::{Cidr, CidrError};
pub use policy::EgressPolicy;
pub use proxy::EgressProxy;
pub use resolve::{Resolve, StaticResolver, SystemResolver};

/// Largest accepted request head (request line and headers), in bytes.
pub const HEAD_LIMIT: usize = 16 * 1024;
/// How long a client may take to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long resolving a name may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to one vetted address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Ports allowed when a policy does not say otherwise.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];
