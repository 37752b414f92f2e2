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

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// Longest accepted method name (the longest registered ones have 17 characters).
const MAX_METHOD_LEN: usize = 32;
/// Longest line accepted inside a chunked request body (chunk sizes, trailers).
const BODY_LINE_LIMIT: usize = 4096;
/// After a refusal, how much the client may still send, and for how long, before it is cut off.
const LINGER_BYTES: u64 = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);
const METRIC_TOTAL: &str = "hangar_sandbox_egress_total";
const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";
/// Connection-level headers never forwarded to the origin (besides `Proxy-*` and `Host`).
const HOP_BY_HOP: [&str; 5] = ["connection", "keep-alive", "te", "trailer", "upgrade"];

// ---------------------------------------------------------------------------------------------
// CIDR
// ---------------------------------------------------------------------------------------------

/// An IP network such as `10.0.0.0/8` or `fd00::/8`.
///
/// Parsed from `addr/prefix` or a bare address (a single host: `/32` or `/128`). Host bits are
/// cleared, so `10.1.2.3/8` is `10.0.0.0/8`. Serialized as its string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid address in network {0:?}")]
    Address(String),
    #[error("invalid prefix length in network {0:?}")]
    Prefix(String),
}

impl Cidr {
    /// The network of `addr` with a `prefix`-bit mask; fails if `prefix` is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, CidrError> {
        let network = match addr {
            IpAddr::V4(v4) if prefix <= 32 => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask_v4(prefix))),
            IpAddr::V6(v6) if prefix <= 128 => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask_v6(prefix))),
            _ => return Err(CidrError::Prefix(format!("{addr}/{prefix}"))),
        };
        Ok(Self { network, prefix })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) also
    /// matches as its IPv4 address, since connecting to it reaches that IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exact(ip) || self.contains_exact(ip.to_canonical())
    }

    fn contains_exact(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => u32::from(ip) & mask_v4(self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => u128::from(ip) & mask_v6(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        let (addr, prefix) = match trimmed.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (trimmed, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::Address(input.to_string()))?;
        let prefix = match prefix {
            None if addr.is_ipv4() => 32,
            None => 128,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| CidrError::Prefix(input.to_string()))?
            }
            Some(_) => return Err(CidrError::Prefix(input.to_string())),
        };
        Self::new(addr, prefix).map_err(|_| CidrError::Prefix(input.to_string()))
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<Cidr> for String {
    fn from(value: Cidr) -> Self {
        value.to_string()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Address classification
// ---------------------------------------------------------------------------------------------

/// Whether `ip` is a public unicast address a sandbox may reach.
///
/// Not public: loopback, private (RFC 1918, unique-local `fc00::/7` incl. AWS's `fd00:ec2::254`),
/// link-local (incl. the `169.254.169.254` metadata service), CGNAT `100.64/10`, unspecified,
/// multicast, broadcast, reserved, benchmarking and documentation ranges, Teredo, and anything
/// outside the IPv6 global unicast block `2000::/3`. IPv6 forms embedding an IPv4 address
/// (mapped, compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

/// Why `ip` is not public (for example `"private"` or `"link-local"`), or `None` if it is.
/// Reads as "address … is {reason}".
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    // First match wins: broadcast is listed before the reserved block containing it.
    const RANGES: [([u8; 4], u8, &str); 16] = [
        ([0, 0, 0, 0], 8, "unspecified"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "in the CGNAT shared range"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "reserved"),
        ([192, 0, 2, 0], 24, "in a documentation range"),
        ([192, 88, 99, 0], 24, "reserved"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "in the benchmarking range"),
        ([198, 51, 100, 0], 24, "in a documentation range"),
        ([203, 0, 113, 0], 24, "in a documentation range"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([255, 255, 255, 255], 32, "broadcast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    let bits = u32::from(ip);
    RANGES
        .iter()
        .find(|(net, prefix, _)| bits & mask_v4(*prefix) == u32::from_be_bytes(*net))
        .map(|(_, _, reason)| *reason)
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    const RANGES: [(u128, u8, &str); 10] = [
        (0x0064_ff9b_0001 << 80, 48, "in the local-use NAT64 range"),
        (0x0100 << 112, 64, "in the discard-only range"),
        (0x2001_0000 << 96, 32, "a Teredo address"),
        (0x2001_0db8 << 96, 32, "in a documentation range"),
        (0x2001 << 112, 23, "reserved"),
        (0x3fff << 112, 20, "in a documentation range"),
        (0xfc00 << 112, 7, "private"),
        (0xfe80 << 112, 10, "link-local"),
        (0xfec0 << 112, 10, "site-local"),
        (0xff00 << 112, 8, "multicast"),
    ];
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let bits = u128::from(ip);
    if let Some(embedded) = embedded_v4(bits) {
        return classify_v4(embedded);
    }
    if let Some((_, _, reason)) = RANGES
        .iter()
        .find(|(net, prefix, _)| bits & mask_v6(*prefix) == *net)
    {
        return Some(reason);
    }
    if bits & mask_v6(3) != 0x2000 << 112 {
        return Some("not a global unicast address");
    }
    None
}

/// The IPv4 address an IPv6 address stands for: mapped `::ffff:0:0/96`, compatible `::/96`,
/// NAT64 `64:ff9b::/96` and 6to4 `2002::/16`. (`::` and `::1` are handled before.)
fn embedded_v4(bits: u128) -> Option<Ipv4Addr> {
    let low32 = Ipv4Addr::from(bits as u32);
    let in_net = |net: u128, prefix: u8| bits & mask_v6(prefix) == net;
    if in_net(0xffff << 32, 96) || in_net(0, 96) || in_net(0x0064_ff9b << 96, 96) {
        return Some(low32);
    }
    if in_net(0x2002 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

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
fn normalize_name(name: &str) -> String {
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
fn is_valid_hostname(name: &str) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

/// Resolves host names for the proxy. The proxy vets every returned address itself.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// All addresses of `host` (a validated, lower-case name without trailing dot).
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo` through [`tokio::net::lookup_host`]). Names are looked up
/// as absolute names (a trailing dot is added), so resolver search domains are never appended.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<IpAddr>> {
        let absolute = if host.ends_with('.') || host.parse::<IpAddr>().is_ok() {
            host.to_string()
        } else {
            format!("{host}.")
        };
        Ok(tokio::net::lookup_host((absolute.as_str(), port))
            .await?
            .map(|addr| addr.ip())
            .collect())
    }
}

/// A fixed table of names, for tests. Unknown names fail with [`io::ErrorKind::NotFound`].
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    entries: HashMap<String, Vec<IpAddr>>,
}

impl StaticResolver {
    /// A resolver answering `name → addresses` for each entry (names are case-insensitive).
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, Vec<IpAddr>)>) -> Self {
        let entries = entries
            .into_iter()
            .map(|(name, addrs)| (normalize_name(name), addrs))
            .collect();
        Self { entries }
    }
}

#[async_trait]
impl Resolve for StaticResolver {
    async fn resolve(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        self.entries
            .get(&normalize_name(host))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("unknown host {host}")))
    }
}

// ---------------------------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Proxy
// ---------------------------------------------------------------------------------------------

/// Limits of a proxy; the constants above, shortened by tests.
#[derive(Debug, Clone, Copy)]
struct Settings {
    head_limit: usize,
    head_timeout: Duration,
    resolve_timeout: Duration,
    connect_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            head_limit: HEAD_LIMIT,
            head_timeout: HEAD_TIMEOUT,
            resolve_timeout: RESOLVE_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

/// What every connection task needs.
struct Shared {
    policy: EgressPolicy,
    resolver: Arc<dyn Resolve>,
    audit: EgressAudit,
    settings: Settings,
}

/// A running egress proxy. Stops accepting, and closes every open connection, when dropped or
/// [shut down](Self::shutdown).
#[derive(Debug)]
pub struct EgressProxy {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl EgressProxy {
    /// Serves on `listener` until dropped or `shutdown()`; each connection in its own task; the
    /// tasks stop when the proxy stops. Must be called within a Tokio runtime.
    pub fn spawn(
        listener: UnixListener,
        policy: EgressPolicy,
        resolver: Arc<dyn Resolve>,
        audit: EgressAudit,
    ) -> Self {
        Self::spawn_with(
            listener,
            Shared {
                policy,
                resolver,
                audit,
                settings: Settings::default(),
            },
        )
    }

    fn spawn_with(listener: UnixListener, shared: Shared) -> Self {
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::new(shared), cancel.clone()));
        Self {
            cancel,
            task: Some(task),
        }
    }

    /// Stops accepting, closes every open connection and waits until all tasks have ended.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::warn!(%error, "egress proxy task failed");
        }
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                let cancel = cancel.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = handle_connection(stream, &shared) => {}
                    }
                });
            }
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "egress proxy accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// What the audit records about a request before the outcome is known.
struct Attempt {
    host: String,
    port: u16,
    method: String,
}

impl Attempt {
    /// A request whose host and port could not be read.
    fn unreadable(method: String) -> Self {
        Self {
            host: String::new(),
            port: 0,
            method,
        }
    }
}

/// Why a request is not served, with the status it is answered with.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    BadRequest(String),
    Forbidden(String),
    BadGateway(String),
}

impl Refusal {
    fn reason(&self) -> &str {
        match self {
            Self::BadRequest(reason) | Self::Forbidden(reason) | Self::BadGateway(reason) => reason,
        }
    }

    /// The complete response: status line, headers and a one-line body.
    fn response(&self, host: &str) -> Vec<u8> {
        let (status, title) = match self {
            Self::BadRequest(_) => ("400 Bad Request", "Bad Request"),
            Self::Forbidden(_) => ("403 Forbidden", "Forbidden"),
            Self::BadGateway(_) => ("502 Bad Gateway", "Bad Gateway"),
        };
        let body = if host.is_empty() {
            format!("{title}: {}\n", self.reason())
        } else {
            format!("{title}: {}: {host}\n", self.reason())
        };
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

async fn handle_connection(mut client: UnixStream, shared: &Shared) {
    let settings = shared.settings;
    let head = match timeout(settings.head_timeout, read_head(&mut client, settings.head_limit)).await {
        Ok(Ok(head)) => head,
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::Io(error))) => {
            tracing::debug!(%error, "egress client read failed");
            return;
        }
        Ok(Err(HeadError::TooLarge)) => {
            let refusal = Refusal::BadRequest(format!(
                "bad request: head larger than {} bytes",
                settings.head_limit
            ));
            return refuse(&mut client, shared, &Attempt::unreadable(String::new()), refusal).await;
        }
        Ok(Err(HeadError::Incomplete)) => {
            let refusal = Refusal::BadRequest("bad request: incomplete head".to_string());
            return refuse(&mut client, shared, &Attempt::unreadable(String::new()), refusal).await;
        }
        Err(_) => {
            let refusal = Refusal::BadRequest("bad request: no request head in time".to_string());
            return refuse(&mut client, shared, &Attempt::unreadable(String::new()), refusal).await;
        }
    };
    let request = match parse_request(&head.bytes) {
        Ok(request) => request,
        Err(bad) => {
            let refusal = Refusal::BadRequest(format!("bad request: {}", bad.detail));
            return refuse(&mut client, shared, &Attempt::unreadable(bad.method), refusal).await;
        }
    };
    let attempt = Attempt {
        host: request.host.clone(),
        port: request.port,
        method: request.method.clone(),
    };
    let (origin, address) = match open_origin(shared, &request.host, request.port).await {
        Ok(opened) => opened,
        Err(refusal) => return refuse(&mut client, shared, &attempt, refusal).await,
    };
    record(shared, &attempt, "allowed", Some(address));
    let result = match request.kind {
        Kind::Connect => tunnel(client, origin, head.rest).await,
        Kind::Http(forward) => forward_http(client, origin, forward, head.rest).await,
    };
    if let Err(error) = result {
        tracing::debug!(host = %attempt.host, port = attempt.port, %error, "egress connection failed");
    }
}

/// Audits and counts a decision; `address` is `Some` exactly when the request is allowed.
fn record(shared: &Shared, attempt: &Attempt, reason: &str, address: Option<SocketAddr>) {
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
    (shared.audit)(&decision);
}

async fn refuse(client: &mut UnixStream, shared: &Shared, attempt: &Attempt, refusal: Refusal) {
    record(shared, attempt, refusal.reason(), None);
    let response = refusal.response(&attempt.host);
    if let Err(error) = client.write_all(&response).await {
        tracing::debug!(%error, "egress refusal not delivered");
        return;
    }
    // The client may already be gone; nothing more to do either way.
    let _ = client.shutdown().await;
    linger(client).await;
}

/// Reads and discards what the client still sends (bounded in bytes and time) after a refusal:
/// closing a Unix socket with unread data resets the peer, which could then lose the response.
async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut rest = (&mut *reader).take(LINGER_BYTES);
    let _ = timeout(LINGER_TIME, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
}

/// Vets `host:port` against the policy, resolves it and connects to the first vetted address
/// that answers.
async fn open_origin(shared: &Shared, host: &str, port: u16) -> Result<(TcpStream, SocketAddr), Refusal> {
    let addresses = vet(shared, host, port).await?;
    let (stream, address) = connect_first(&addresses, port, shared.settings.connect_timeout)
        .await
        .map_err(|error| Refusal::BadGateway(format!("connection failed: {error}")))?;
    // Best effort: tunnels carry interactive protocols (TLS handshakes).
    let _ = stream.set_nodelay(true);
    Ok((stream, address))
}

/// The addresses `host:port` may be reached at, all checked against the policy.
async fn vet(shared: &Shared, host: &str, port: u16) -> Result<Vec<IpAddr>, Refusal> {
    let policy = &shared.policy;
    if !policy.port_allowed(port) {
        return Err(Refusal::Forbidden(format!("port {port} not allowed")));
    }
    let addresses = match host.parse::<IpAddr>() {
        Ok(ip) if policy.network_allowed(ip) => vec![ip],
        Ok(_) => {
            return Err(Refusal::Forbidden(
                "IP address not in an allowed network".to_string(),
            ));
        }
        Err(_) if !policy.domain_allowed(host) => {
            return Err(Refusal::Forbidden("domain not in allow-list".to_string()));
        }
        Err(_) => resolve(shared, host, port).await?,
    };
    if let Some(&bad) = addresses.iter().find(|ip| !policy.address_allowed(**ip)) {
        let class = non_public_reason(bad).unwrap_or("not allowed");
        return Err(Refusal::Forbidden(format!("address {bad} is {class}")));
    }
    Ok(addresses)
}

async fn resolve(shared: &Shared, host: &str, port: u16) -> Result<Vec<IpAddr>, Refusal> {
    let failed = |detail: String| Refusal::BadGateway(format!("resolution failed: {detail}"));
    let mut addresses = match timeout(
        shared.settings.resolve_timeout,
        shared.resolver.resolve(host, port),
    )
    .await
    {
        Err(_) => return Err(failed("timed out".to_string())),
        Ok(Err(error)) => return Err(failed(error.to_string())),
        Ok(Ok(addresses)) => addresses,
    };
    let mut seen = std::collections::HashSet::new();
    addresses.retain(|ip| seen.insert(*ip));
    if addresses.is_empty() {
        return Err(failed("no addresses".to_string()));
    }
    Ok(addresses)
}

async fn connect_first(
    addresses: &[IpAddr],
    port: u16,
    limit: Duration,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
    for &ip in addresses {
        let address = SocketAddr::new(ip, port);
        match timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok((stream, address)),
            Ok(Err(error)) => last = error,
            Err(_) => {
                last = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {address} timed out"),
                )
            }
        }
    }
    Err(last)
}

/// Answers a `CONNECT` and copies bytes both ways until either side is done.
async fn tunnel(mut client: UnixStream, mut origin: TcpStream, early: Vec<u8>) -> io::Result<()> {
    client.write_all(CONNECT_ESTABLISHED).await?;
    // Clients may send the TLS ClientHello right behind the CONNECT head.
    if !early.is_empty() {
        origin.write_all(&early).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut origin).await?;
    Ok(())
}

/// Sends the rewritten head and the request body to the origin while streaming the response
/// back; done when the origin has sent everything. Bytes pipelined behind the body are never
/// forwarded.
async fn forward_http(
    client: UnixStream,
    origin: TcpStream,
    forward: HttpForward,
    early: Vec<u8>,
) -> io::Result<()> {
    let (client_read, mut client_write) = client.into_split();
    let (mut origin_read, mut origin_write) = origin.into_split();
    origin_write.write_all(&forward.head).await?;
    let mut body = BufReader::new(io::Cursor::new(early).chain(client_read));
    let (result, body_complete) = {
        let mut upload = std::pin::pin!(async {
            let sent = forward_body(&mut body, &mut origin_write, forward.body).await;
            if let Err(error) = &sent {
                tracing::debug!(%error, "egress request body not forwarded");
                // Tell the origin nothing more is coming so it answers or closes.
                let _ = origin_write.shutdown().await;
            }
            sent.is_ok()
        });
        let mut download = std::pin::pin!(async {
            tokio::io::copy(&mut origin_read, &mut client_write).await?;
            client_write.shutdown().await
        });
        // The origin may answer before the body is complete; the response decides when we are done.
        let mut body_complete = None;
        let result = loop {
            tokio::select! {
                result = &mut download => break result,
                sent = &mut upload, if body_complete.is_none() => body_complete = Some(sent),
            }
        };
        (result, body_complete)
    };
    if body_complete == Some(true) {
        linger(&mut body).await;
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Request head
// ---------------------------------------------------------------------------------------------

/// A request head and whatever the client sent right behind it.
#[derive(Debug)]
struct Head {
    /// Request line and headers, through the blank line.
    bytes: Vec<u8>,
    /// Bytes read past the head (body, TLS ClientHello, …).
    rest: Vec<u8>,
}

#[derive(Debug)]
enum HeadError {
    /// The client closed before sending anything.
    Closed,
    /// The client closed in the middle of the head.
    Incomplete,
    TooLarge,
    Io(io::Error),
}

/// Reads until the blank line ending the head; at most `limit` bytes of head.
async fn read_head<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> Result<Head, HeadError> {
    const END: &[u8] = b"\r\n\r\n";
    let mut buf = Vec::with_capacity(1024);
    loop {
        let searched = buf.len().saturating_sub(END.len() - 1);
        buf.reserve(4096);
        let read = reader.read_buf(&mut buf).await.map_err(HeadError::Io)?;
        if read == 0 {
            return Err(if buf.is_empty() {
                HeadError::Closed
            } else {
                HeadError::Incomplete
            });
        }
        if let Some(at) = buf[searched..]
            .windows(END.len())
            .position(|window| window == END)
        {
            let end = searched + at + END.len();
            if end > limit {
                return Err(HeadError::TooLarge);
            }
            let rest = buf.split_off(end);
            return Ok(Head { bytes: buf, rest });
        }
        if buf.len() >= limit {
            return Err(HeadError::TooLarge);
        }
    }
}

/// A parsed proxy request.
#[derive(Debug)]
struct Request {
    method: String,
    /// Lower-case name without trailing dot, or an IP literal without brackets.
    host: String,
    port: u16,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Connect,
    Http(HttpForward),
}

/// A plain HTTP request ready for the origin.
#[derive(Debug)]
struct HttpForward {
    /// The rewritten head (origin-form request line, filtered headers, `Connection: close`).
    head: Vec<u8>,
    body: Body,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// A malformed request: what we know of the method, and a short description that never
/// echoes client input.
#[derive(Debug)]
struct BadRequest {
    method: String,
    detail: &'static str,
}

type Header<'a> = (&'a str, &'a str);

fn parse_request(head: &[u8]) -> Result<Request, BadRequest> {
    let bad = |method: &str, detail| BadRequest {
        method: method.to_string(),
        detail,
    };
    let text = std::str::from_utf8(head).map_err(|_| bad("", "head is not UTF-8"))?;
    let text = text.strip_suffix("\r\n\r\n").unwrap_or(text);
    let mut lines = text.split("\r\n");
    let (method, target, version) = lines
        .next()
        .and_then(parse_request_line)
        .ok_or_else(|| bad("", "malformed request line"))?;
    let headers = parse_headers(lines).map_err(|detail| bad(method, detail))?;
    if method == "CONNECT" {
        let authority = parse_authority(target, None).map_err(|detail| bad(method, detail))?;
        return Ok(Request {
            method: method.to_string(),
            host: authority.host,
            port: authority.port,
            kind: Kind::Connect,
        });
    }
    let (authority, path) = split_absolute_url(target).map_err(|detail| bad(method, detail))?;
    let authority = parse_authority(authority, Some(80)).map_err(|detail| bad(method, detail))?;
    let body = body_framing(&headers).map_err(|detail| bad(method, detail))?;
    let head = rewrite_head(method, &path, version, &authority, &headers);
    Ok(Request {
        method: method.to_string(),
        host: authority.host,
        port: authority.port,
        kind: Kind::Http(HttpForward { head, body }),
    })
}

/// `METHOD SP target SP HTTP/1.x`.
fn parse_request_line(line: &str) -> Option<(&str, &str, &str)> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && is_token(method)
        && method.len() <= MAX_METHOD_LEN
        && !target.is_empty()
        && !target.bytes().any(|b| b.is_ascii_control())
        && (version == "HTTP/1.1" || version == "HTTP/1.0");
    valid.then_some((method, target, version))
}

/// `name: value` lines; no obsolete line folding, no control characters in values.
fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<Header<'a>>, &'static str> {
    lines
        .map(|line| {
            let (name, value) = line.split_once(':').ok_or("malformed header line")?;
            if !is_token(name) {
                return Err("malformed header name");
            }
            if value.bytes().any(|b| b != b'\t' && b.is_ascii_control()) {
                return Err("control character in header value");
            }
            Ok((name, value.trim_matches([' ', '\t'])))
        })
        .collect()
}

/// An RFC 9110 token (method, header name).
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `http://authority/path?query` → (`authority`, `/path?query`); the fragment is dropped.
fn split_absolute_url(target: &str) -> Result<(&str, String), &'static str> {
    let scheme = |prefix: &str| {
        target
            .get(..prefix.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(prefix))
    };
    if scheme("https://") {
        return Err("https URLs must be tunnelled with CONNECT");
    }
    let rest = match target.get("http://".len()..) {
        Some(rest) if scheme("http://") => rest,
        _ => return Err("absolute http:// URL required"),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = path.split('#').next().unwrap_or_default();
    let path = match path.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{path}"),
        Some(_) => path.to_string(),
    };
    Ok((authority, path))
}

/// A validated `host[:port]`.
#[derive(Debug, PartialEq, Eq)]
struct Authority {
    /// Lower-case name without trailing dot, or an IP literal without brackets.
    host: String,
    port: u16,
}

impl Authority {
    /// The value for the `Host` header.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// `host:port`, `[v6]:port`; without a port only if `default_port` is given. No user info.
fn parse_authority(authority: &str, default_port: Option<u16>) -> Result<Authority, &'static str> {
    if authority.contains('@') {
        return Err("user info in URL not allowed");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']').ok_or("malformed IPv6 literal")?;
        let ip: Ipv6Addr = inside.parse().map_err(|_| "malformed IPv6 literal")?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or("malformed authority")?),
        };
        (ip.to_string(), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host = normalize_name(host);
        if host.parse::<Ipv4Addr>().is_err() && !is_valid_hostname(&host) {
            return Err("malformed host");
        }
        (host, port)
    };
    let port = match port {
        Some(port) => parse_port(port)?,
        None => default_port.ok_or("port required")?,
    };
    Ok(Authority { host, port })
}

fn parse_port(port: &str) -> Result<u16, &'static str> {
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("malformed port");
    }
    port.parse().map_err(|_| "malformed port")
}

/// How the body is delimited; refuses ambiguous framing (request smuggling).
fn body_framing(headers: &[Header<'_>]) -> Result<Body, &'static str> {
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(|v| v.trim_matches([' ', '\t']))
            .collect()
    };
    let codings = values("transfer-encoding");
    let lengths = values("content-length");
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err("both Transfer-Encoding and Content-Length");
        }
        let chunked_last = codings.last().is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
        let chunked_count = codings
            .iter()
            .filter(|c| c.eq_ignore_ascii_case("chunked"))
            .count();
        if !chunked_last || chunked_count != 1 {
            return Err("unsupported Transfer-Encoding");
        }
        return Ok(Body::Chunked);
    }
    let Some(first) = lengths.first() else {
        return Ok(Body::None);
    };
    if lengths.iter().any(|l| l != first) || first.is_empty() || first.len() > 18 {
        return Err("malformed Content-Length");
    }
    if !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err("malformed Content-Length");
    }
    match first.parse() {
        Ok(0) => Ok(Body::None),
        Ok(length) => Ok(Body::Length(length)),
        Err(_) => Err("malformed Content-Length"),
    }
}

/// The head sent to the origin: origin-form request line, `Host` from the URL, no hop-by-hop,
/// `Proxy-*` or `Connection`-listed headers, and `Connection: close`.
fn rewrite_head(
    method: &str,
    path: &str,
    version: &str,
    authority: &Authority,
    headers: &[Header<'_>],
) -> Vec<u8> {
    let listed: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|token| token.trim_matches([' ', '\t']).to_ascii_lowercase())
        .collect();
    let keep = |name: &str| {
        let name = name.to_ascii_lowercase();
        // The framing headers always go along: the body is forwarded exactly as they delimit it,
        // and the origin must delimit it the same way (a `Connection: content-length` must not
        // turn the body into a second request).
        if name == "content-length" || name == "transfer-encoding" {
            return true;
        }
        !(name == "host"
            || name.starts_with("proxy-")
            || HOP_BY_HOP.contains(&name.as_str())
            || listed.contains(&name))
    };
    let mut head = format!(
        "{method} {path} {version}\r\nHost: {}\r\n",
        authority.host_header()
    );
    for (name, value) in headers.iter().filter(|(name, _)| keep(name)) {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Request body
// ---------------------------------------------------------------------------------------------

/// Copies exactly the request body (as framed by `body`) from `reader` to `writer`.
async fn forward_body<R, W>(reader: &mut R, writer: &mut W, body: Body) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match body {
        Body::None => {}
        Body::Length(length) => copy_exact(reader, writer, length).await?,
        Body::Chunked => forward_chunked(reader, writer).await?,
    }
    writer.flush().await
}

async fn copy_exact<R, W>(reader: &mut R, writer: &mut W, length: u64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(&mut (&mut *reader).take(length), writer).await?;
    if copied < length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client closed inside the request body",
        ));
    }
    Ok(())
}

/// Forwards a chunked body verbatim, stopping after the last chunk and the trailer section.
async fn forward_chunked<R, W>(reader: &mut R, writer: &mut W) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let line = read_crlf_line(reader, BODY_LINE_LIMIT).await?;
        let size = parse_chunk_size(&line)?;
        writer.write_all(&line).await?;
        if size == 0 {
            break;
        }
        copy_exact(reader, writer, size).await?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).await?;
        if &crlf != b"\r\n" {
            return Err(invalid_body("chunk not followed by CRLF"));
        }
        writer.write_all(&crlf).await?;
    }
    let mut trailer_bytes = 0;
    loop {
        let line = read_crlf_line(reader, BODY_LINE_LIMIT).await?;
        trailer_bytes += line.len();
        if trailer_bytes > HEAD_LIMIT {
            return Err(invalid_body("trailer section too large"));
        }
        writer.write_all(&line).await?;
        if line == b"\r\n" {
            return Ok(());
        }
    }
}

/// One line ending in CRLF, at most `limit` bytes.
async fn read_crlf_line<R: AsyncBufRead + Unpin>(reader: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    (&mut *reader)
        .take(limit as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if line.ends_with(b"\r\n") {
        Ok(line)
    } else {
        Err(invalid_body("malformed line in chunked body"))
    }
}

/// `1a;ext=1\r\n` → 26.
fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let size = line.split(|&b| b == b';').next().unwrap_or_default();
    let size = size.trim_ascii();
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid_body("malformed chunk size"));
    }
    let size = std::str::from_utf8(size).map_err(|_| invalid_body("malformed chunk size"))?;
    u64::from_str_radix(size, 16).map_err(|_| invalid_body("malformed chunk size"))
}

fn invalid_body(detail: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn loopback_only() -> Vec<Cidr> {
        vec![cidr("127.0.0.1/32")]
    }

    /// A proxy on a Unix socket in a temporary directory, recording its decisions.
    struct Harness {
        _dir: tempfile::TempDir,
        path: PathBuf,
        proxy: EgressProxy,
        decisions: Arc<Mutex<Vec<EgressDecision>>>,
    }

    impl Harness {
        fn new(policy: EgressPolicy, resolver: StaticResolver) -> Self {
            Self::with_settings(policy, resolver, Settings::default())
        }

        fn with_settings(policy: EgressPolicy, resolver: StaticResolver, settings: Settings) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("egress.sock");
            let listener = UnixListener::bind(&path).unwrap();
            let decisions = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&decisions);
            let audit: EgressAudit = Arc::new(move |d: &EgressDecision| sink.lock().unwrap().push(d.clone()));
            let shared = Shared {
                policy,
                resolver: Arc::new(resolver),
                audit,
                settings,
            };
            let proxy = EgressProxy::spawn_with(listener, shared);
            Self {
                _dir: dir,
                path,
                proxy,
                decisions,
            }
        }

        fn decisions(&self) -> Vec<EgressDecision> {
            self.decisions.lock().unwrap().clone()
        }

        fn only_decision(&self) -> EgressDecision {
            let decisions = self.decisions();
            assert_eq!(decisions.len(), 1, "{decisions:?}");
            decisions[0].clone()
        }

        /// Sends `request`, returns everything the proxy answers until it closes.
        async fn exchange(&self, request: &[u8]) -> String {
            exchange(&self.path, request).await
        }
    }

    async fn exchange(path: &Path, request: &[u8]) -> String {
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut response = Vec::new();
        timeout(WAIT, stream.read_to_end(&mut response))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&response).into_owned()
    }

    /// A TCP echo server on 127.0.0.1 that counts the connections it accepts.
    struct Echo {
        port: u16,
        accepted: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl Echo {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let accepted = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&accepted);
            let task = tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let (mut read, mut write) = stream.split();
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                    });
                }
            });
            Self { port, accepted, task }
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// What the tiny HTTP origin received: the head and the body (as framed by the head).
    #[derive(Debug)]
    struct Received {
        head: String,
        body: Vec<u8>,
        /// Whatever arrived after the body before the origin answered.
        extra: Vec<u8>,
    }

    /// A one-request-per-connection HTTP origin on 127.0.0.1 answering `200 hello`.
    async fn http_origin() -> (u16, mpsc::UnboundedReceiver<Received>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let head = read_head(&mut stream, HEAD_LIMIT).await.unwrap();
                let text = String::from_utf8(head.bytes.clone()).unwrap();
                let lines = text.trim_end_matches("\r\n").split("\r\n").skip(1);
                let headers = parse_headers(lines).unwrap();
                let framing = body_framing(&headers).unwrap();
                let (mut read, mut write) = stream.split();
                let mut reader = BufReader::new(io::Cursor::new(head.rest).chain(&mut read));
                let mut body = Vec::new();
                forward_body(&mut reader, &mut body, framing).await.unwrap();
                let mut extra = reader.buffer().to_vec();
                if extra.is_empty() {
                    let mut chunk = [0u8; 256];
                    if let Ok(Ok(n)) = timeout(Duration::from_millis(200), reader.read(&mut chunk)).await {
                        extra.extend_from_slice(&chunk[..n]);
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
                write.write_all(reply).await.unwrap();
                write.shutdown().await.unwrap();
                sender
                    .send(Received {
                        head: text,
                        body,
                        extra,
                    })
                    .unwrap();
            }
        });
        (port, receiver)
    }

    /// A free port on 127.0.0.1 with nothing listening.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn status(response: &str) -> &str {
        response.lines().next().unwrap_or_default()
    }

    // --- pure functions -----------------------------------------------------------------------

    #[test]
    fn cidr_parses_and_matches() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.255.1.2")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert_eq!(net.to_string(), "10.0.0.0/8");

        let host = cidr("127.0.0.1");
        assert_eq!(host.prefix(), 32);
        assert!(host.contains(ip("127.0.0.1")));
        assert!(
            host.contains(ip("::ffff:127.0.0.1")),
            "mapped form reaches the same host"
        );
        assert!(!host.contains(ip("127.0.0.2")));

        assert_eq!(cidr("10.1.2.3/8"), net, "host bits are cleared");
        assert_eq!(cidr(" 192.168.0.0/16 ").to_string(), "192.168.0.0/16");
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));

        let v6 = cidr("fd00::/8");
        assert!(v6.contains(ip("fd00:ec2::254")));
        assert!(!v6.contains(ip("fe80::1")));
        assert_eq!(v6.to_string(), "fd00::/8");
        assert_eq!(cidr("::1").prefix(), 128);
        assert!(cidr("::/0").contains(ip("2606:4700::1111")));
        assert!(cidr("::ffff:0:0/96").contains(ip("::ffff:10.0.0.1")));
        assert_eq!(cidr("2001:db8::1/32"), Cidr::new(ip("2001:db8::"), 32).unwrap());
    }

    #[test]
    fn cidr_rejects_garbage() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/8/8",
            "10.0.0.0/0x8",
            "fe80::1%eth0",
            "10.0.0.0/0008",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        assert!(Cidr::new(ip("10.0.0.0"), 33).is_err());
    }

    #[test]
    fn cidr_serde_round_trip() {
        let nets: Vec<Cidr> = serde::Deserialize::deserialize(serde::de::value::SeqDeserializer::<
            _,
            serde::de::value::Error,
        >::new(
            ["127.0.0.1/32".to_string(), "fd00::/8".to_string()].into_iter(),
        ))
        .unwrap();
        assert_eq!(nets, vec![cidr("127.0.0.1/32"), cidr("fd00::/8")]);
        assert_eq!(String::from(nets[1]), "fd00::/8");
    }

    #[test]
    fn is_public_table() {
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for text in public {
            assert!(is_public(ip(text)), "{text} should be public");
        }
        let private = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.0.0.1", "private"),
            ("100.64.0.1", "in the CGNAT shared range"),
            ("100.127.255.255", "in the CGNAT shared range"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "reserved"),
            ("192.0.2.1", "in a documentation range"),
            ("192.88.99.1", "reserved"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "in the benchmarking range"),
            ("198.19.255.255", "in the benchmarking range"),
            ("198.51.100.7", "in a documentation range"),
            ("203.0.113.7", "in a documentation range"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "loopback"),
            ("::10.1.1.1", "private"),
            ("64:ff9b::a00:1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b:1::8.8.8.8", "in the local-use NAT64 range"),
            ("2002:a00:1::1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("2001::1", "a Teredo address"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo address"),
            ("2001:2::1", "reserved"),
            ("2001:db8::1", "in a documentation range"),
            ("3fff::1", "in a documentation range"),
            ("100::1", "in the discard-only range"),
            ("fc00::1", "private"),
            ("fd00:ec2::254", "private"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("4000::1", "not a global unicast address"),
            ("1::1", "not a global unicast address"),
        ];
        for (text, reason) in private {
            assert!(!is_public(ip(text)), "{text} should not be public");
            assert_eq!(non_public_reason(ip(text)), Some(reason), "{text}");
        }
    }

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
    fn parses_connect() {
        let request = parse_request(b"CONNECT Pypi.Test.:443 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (request.method.as_str(), request.host.as_str(), request.port),
            ("CONNECT", "pypi.test", 443)
        );
        assert!(matches!(request.kind, Kind::Connect));

        let request = parse_request(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((request.host.as_str(), request.port), ("::1", 8443));
        let request = parse_request(b"CONNECT 10.0.0.1:443 HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(request.host, "10.0.0.1");
    }

    #[test]
    fn rewrites_absolute_form() {
        let head = b"GET http://PyPI.test:8080/simple/?q=1#frag HTTP/1.1\r\n\
            Host: elsewhere.test\r\n\
            User-Agent: pip\r\n\
            Proxy-Connection: keep-alive\r\n\
            Proxy-Authorization: Basic c2VjcmV0\r\n\
            Connection: keep-alive, X-Drop-Me, Content-Length\r\n\
            X-Drop-Me: 1\r\n\
            Keep-Alive: 300\r\n\
            TE: trailers\r\n\
            Trailer: X-T\r\n\
            Upgrade: h2c\r\n\
            Accept:  */* \r\n\
            Content-Length: 3\r\n\r\n";
        let request = parse_request(head).unwrap();
        assert_eq!((request.host.as_str(), request.port), ("pypi.test", 8080));
        let Kind::Http(forward) = request.kind else {
            panic!("not http")
        };
        assert_eq!(forward.body, Body::Length(3));
        assert_eq!(
            String::from_utf8(forward.head).unwrap(),
            "GET /simple/?q=1 HTTP/1.1\r\nHost: pypi.test:8080\r\nUser-Agent: pip\r\nAccept: */*\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\n"
        );

        for (target, path, host) in [
            ("http://a.test", "/", "a.test"),
            ("http://a.test?x", "/?x", "a.test"),
            ("HTTP://a.test:80/p", "/p", "a.test"),
            ("http://[2606:4700::1111]:8080/", "/", "[2606:4700::1111]:8080"),
        ] {
            let head = format!("GET {target} HTTP/1.1\r\n\r\n");
            let Kind::Http(forward) = parse_request(head.as_bytes()).unwrap().kind else {
                panic!()
            };
            let text = String::from_utf8(forward.head).unwrap();
            assert!(
                text.starts_with(&format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n")),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_requests() {
        let long_method = format!("{} http://pypi.test/ HTTP/1.1\r\n\r\n", "A".repeat(33));
        let cases: [&[u8]; 25] = [
            long_method.as_bytes(),
            b"GARBAGE\r\n\r\n",
            b"GET /simple/ HTTP/1.1\r\nHost: pypi.test\r\n\r\n",
            b"GET https://pypi.test/ HTTP/1.1\r\n\r\n",
            b"GET ftp://pypi.test/ HTTP/1.1\r\n\r\n",
            b"GET http:// HTTP/1.1\r\n\r\n",
            b"GET http://user@pypi.test/ HTTP/1.1\r\n\r\n",
            b"GET http://pypi.test:/ HTTP/1.1\r\n\r\n",
            b"GET http://pypi.test:99999/ HTTP/1.1\r\n\r\n",
            b"GET http://pypi.test:+80/ HTTP/1.1\r\n\r\n",
            b"GET http://pypi.test/ HTTP/2.0\r\n\r\n",
            b"GET  http://pypi.test/ HTTP/1.1\r\n\r\n",
            b"GET http://pypi.test/ HTTP/1.1 extra\r\n\r\n",
            b"G\xc3\xa9T http://pypi.test/ HTTP/1.1\r\n\r\n",
            b"GET http://pypi.test/ HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET http://pypi.test/ HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET http://pypi.test/ HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET http://pypi.test/ HTTP/1.1\r\nA: b\nInjected: c\r\n\r\n",
            b"GET http://pypi.test/ HTTP/1.1\r\n\xff: x\r\n\r\n",
            b"POST http://pypi.test/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST http://pypi.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST http://pypi.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST http://pypi.test/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"CONNECT pypi.test HTTP/1.1\r\n\r\n",
            b"CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n",
        ];
        for case in cases {
            assert!(
                parse_request(case).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn body_framing_rules() {
        let framing = |headers: &[Header<'_>]| body_framing(headers);
        assert_eq!(framing(&[]), Ok(Body::None));
        assert_eq!(framing(&[("Content-Length", "0")]), Ok(Body::None));
        assert_eq!(framing(&[("content-length", "12")]), Ok(Body::Length(12)));
        assert_eq!(framing(&[("Content-Length", "7, 7")]), Ok(Body::Length(7)));
        assert_eq!(
            framing(&[("Transfer-Encoding", "gzip, chunked")]),
            Ok(Body::Chunked)
        );
        assert!(framing(&[("Transfer-Encoding", "chunked, chunked")]).is_err());
        assert!(framing(&[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "gzip")]).is_err());
        assert!(framing(&[("Content-Length", "99999999999999999999")]).is_err());
    }

    #[tokio::test]
    async fn chunked_bodies_are_delimited() {
        let input =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET http://next.test/ HTTP/1.1\r\n\r\n";
        let mut reader = BufReader::new(&input[..]);
        let mut out = Vec::new();
        forward_body(&mut reader, &mut out, Body::Chunked).await.unwrap();
        assert_eq!(out, b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n");

        for bad in [
            &b"zz\r\n"[..],
            b"4\r\nWikiXX",
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWi",
            b"10000000000000000\r\n",
        ] {
            let mut reader = BufReader::new(bad);
            assert!(
                forward_body(&mut reader, &mut Vec::new(), Body::Chunked)
                    .await
                    .is_err(),
                "{bad:?}"
            );
        }
        let mut reader = BufReader::new(&b"abc"[..]);
        assert!(
            forward_body(&mut reader, &mut Vec::new(), Body::Length(4))
                .await
                .is_err()
        );
    }

    #[test]
    fn refusal_responses() {
        let response = Refusal::Forbidden("domain not in allow-list".into()).response("evil.test");
        let text = String::from_utf8(response).unwrap();
        let body = "Forbidden: domain not in allow-list: evil.test\n";
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            )
        );
        let text = String::from_utf8(Refusal::BadRequest("bad request: x".into()).response("")).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n")
                && text.ends_with("\r\n\r\nBad Request: bad request: x\n")
        );
    }

    // --- end to end ---------------------------------------------------------------------------

    #[tokio::test]
    async fn connect_tunnels_to_allowed_domain() {
        let echo = Echo::start().await;
        let policy = EgressPolicy::new(vec!["pypi.test".into()])
            .with_ports(vec![443, echo.port])
            .with_allowed_networks(loopback_only());
        let harness = Harness::new(
            policy,
            StaticResolver::new([("pypi.test", vec![ip("127.0.0.1")])]),
        );

        let mut stream = UnixStream::connect(&harness.path).await.unwrap();
        // The first tunnelled bytes ride along with the head, as eager TLS clients do.
        let head = format!(
            "CONNECT pypi.test:{} HTTP/1.1\r\nHost: pypi.test\r\n\r\nearly ",
            echo.port
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut reply = vec![0u8; CONNECT_ESTABLISHED.len() + "early ".len()];
        timeout(WAIT, stream.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&reply[..CONNECT_ESTABLISHED.len()], CONNECT_ESTABLISHED);
        assert_eq!(&reply[CONNECT_ESTABLISHED.len()..], b"early ");

        stream.write_all(b"ping over tunnel").await.unwrap();
        let mut echoed = [0u8; 16];
        timeout(WAIT, stream.read_exact(&mut echoed))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echoed, b"ping over tunnel");
        assert_eq!(echo.accepted(), 1);

        let decision = harness.only_decision();
        assert_eq!(
            decision,
            EgressDecision {
                host: "pypi.test".into(),
                port: echo.port,
                method: "CONNECT".into(),
                allowed: true,
                reason: "allowed".into(),
                address: Some(SocketAddr::new(ip("127.0.0.1"), echo.port)),
            }
        );
    }

    #[tokio::test]
    async fn plain_get_is_rewritten_and_forwarded() {
        let (port, mut received) = http_origin().await;
        let policy = EgressPolicy::new(vec!["pypi.test".into()])
            .with_ports(vec![port])
            .with_allowed_networks(loopback_only());
        let harness = Harness::new(
            policy,
            StaticResolver::new([("pypi.test", vec![ip("127.0.0.1")])]),
        );

        let request = format!(
            "GET http://pypi.test:{port}/simple/ HTTP/1.1\r\nHost: pypi.test:{port}\r\nUser-Agent: pip/24\r\n\
             Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\nAccept: */*\r\n\r\n"
        );
        let response = harness.exchange(request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nhello"), "{response}");

        let got = timeout(WAIT, received.recv()).await.unwrap().unwrap();
        assert!(got.head.starts_with("GET /simple/ HTTP/1.1\r\n"), "{}", got.head);
        assert!(
            got.head.contains(&format!("\r\nHost: pypi.test:{port}\r\n")),
            "{}",
            got.head
        );
        assert!(got.head.contains("\r\nUser-Agent: pip/24\r\n"));
        assert!(got.head.contains("\r\nAccept: */*\r\n"));
        assert!(
            got.head.ends_with("\r\nConnection: close\r\n\r\n"),
            "{}",
            got.head
        );
        assert!(!got.head.to_ascii_lowercase().contains("proxy-"), "{}", got.head);
        assert!(got.body.is_empty() && got.extra.is_empty());

        let decision = harness.only_decision();
        assert!(decision.allowed);
        assert_eq!(decision.method, "GET");
        assert_eq!(decision.address, Some(SocketAddr::new(ip("127.0.0.1"), port)));
    }

    #[tokio::test]
    async fn request_bodies_are_forwarded_exactly() {
        let (port, mut received) = http_origin().await;
        let policy = EgressPolicy::new(vec!["pypi.test".into()])
            .with_ports(vec![port])
            .with_allowed_networks(loopback_only());
        let harness = Harness::new(
            policy,
            StaticResolver::new([("pypi.test", vec![ip("127.0.0.1")])]),
        );
        let smuggled = "GET http://pypi.test/admin HTTP/1.1\r\nHost: internal\r\n\r\n";

        let request = format!(
            "POST http://pypi.test:{port}/upload HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world{smuggled}"
        );
        let response = harness.exchange(request.as_bytes()).await;
        assert!(response.ends_with("hello"), "{response}");
        let got = timeout(WAIT, received.recv()).await.unwrap().unwrap();
        assert!(got.head.starts_with("POST /upload HTTP/1.1\r\n"));
        assert_eq!(got.body, b"hello world");
        assert!(
            got.extra.is_empty(),
            "pipelined bytes reached the origin: {:?}",
            got.extra
        );

        let request = format!(
            "POST http://pypi.test:{port}/upload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n{smuggled}"
        );
        let response = harness.exchange(request.as_bytes()).await;
        assert!(response.ends_with("hello"), "{response}");
        let got = timeout(WAIT, received.recv()).await.unwrap().unwrap();
        assert!(
            got.head.contains("\r\nTransfer-Encoding: chunked\r\n"),
            "{}",
            got.head
        );
        assert_eq!(got.body, b"5\r\nhello\r\n0\r\n\r\n");
        assert!(
            got.extra.is_empty(),
            "pipelined bytes reached the origin: {:?}",
            got.extra
        );
    }

    #[tokio::test]
    async fn refuses_domain_not_listed() {
        let echo = Echo::start().await;
        let policy = EgressPolicy::new(vec!["pypi.test".into()]).with_allowed_networks(loopback_only());
        let harness = Harness::new(
            policy,
            StaticResolver::new([("evil.test", vec![ip("127.0.0.1")])]),
        );

        let response = harness.exchange(b"CONNECT evil.test:443 HTTP/1.1\r\n\r\n").await;
        assert_eq!(status(&response), "HTTP/1.1 403 Forbidden");
        assert!(
            response.ends_with("\r\n\r\nForbidden: domain not in allow-list: evil.test\n"),
            "{response}"
        );
        let request = format!("GET http://evil.test:{}/ HTTP/1.1\r\n\r\n", echo.port);
        assert_eq!(
            status(&harness.exchange(request.as_bytes()).await),
            "HTTP/1.1 403 Forbidden"
        );

        let decisions = harness.decisions();
        assert_eq!(
            decisions[0],
            EgressDecision {
                host: "evil.test".into(),
                port: 443,
                method: "CONNECT".into(),
                allowed: false,
                reason: "domain not in allow-list".into(),
                address: None,
            }
        );
        assert_eq!(decisions[1].method, "GET");
        assert_eq!(decisions[1].reason, format!("port {} not allowed", echo.port));
        assert_eq!(echo.accepted(), 0);
    }

    #[tokio::test]
    async fn wildcard_semantics() {
        let echo = Echo::start().await;
        let policy = EgressPolicy::new(vec!["*.example.test".into()])
            .with_ports(vec![echo.port])
            .with_allowed_networks(loopback_only());
        let localhost = vec![ip("127.0.0.1")];
        let resolver = StaticResolver::new([
            ("a.example.test", localhost.clone()),
            ("example.test", localhost.clone()),
            ("badexample.test", localhost),
        ]);
        let harness = Harness::new(policy, resolver);

        let mut stream = UnixStream::connect(&harness.path).await.unwrap();
        let head = format!("CONNECT A.Example.Test:{} HTTP/1.1\r\n\r\n", echo.port);
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut reply = vec![0u8; CONNECT_ESTABLISHED.len()];
        timeout(WAIT, stream.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, CONNECT_ESTABLISHED);
        drop(stream);

        for host in ["example.test", "badexample.test"] {
            let request = format!("CONNECT {host}:{} HTTP/1.1\r\n\r\n", echo.port);
            let response = harness.exchange(request.as_bytes()).await;
            assert_eq!(status(&response), "HTTP/1.1 403 Forbidden", "{host}");
        }
        let reasons: Vec<_> = harness
            .decisions()
            .into_iter()
            .map(|d| (d.host, d.allowed))
            .collect();
        assert_eq!(
            reasons,
            [
                ("a.example.test".into(), true),
                ("example.test".into(), false),
                ("badexample.test".into(), false)
            ]
        );
        assert_eq!(echo.accepted(), 1);
    }

    #[tokio::test]
    async fn refuses_names_resolving_to_non_public_addresses() {
        let echo = Echo::start().await;
        let cases = [
            ("private.test", "10.0.0.1", "private"),
            ("metadata.test", "169.254.169.254", "link-local"),
            ("loopback.test", "127.0.0.1", "loopback"),
            ("loopback6.test", "::1", "loopback"),
            ("mapped.test", "::ffff:127.0.0.1", "loopback"),
            ("aws6.test", "fd00:ec2::254", "private"),
            ("cgnat.test", "100.64.0.1", "in the CGNAT shared range"),
        ];
        let policy = EgressPolicy::new(cases.iter().map(|(host, _, _)| host.to_string()).collect())
            .with_ports(vec![echo.port]);
        let resolver = StaticResolver::new(cases.iter().map(|(host, addr, _)| (*host, vec![ip(addr)])));
        let harness = Harness::new(policy, resolver);

        for (host, addr, class) in cases {
            for request in [
                format!("CONNECT {host}:{} HTTP/1.1\r\n\r\n", echo.port),
                format!("GET http://{host}:{}/ HTTP/1.1\r\n\r\n", echo.port),
            ] {
                let response = harness.exchange(request.as_bytes()).await;
                assert_eq!(status(&response), "HTTP/1.1 403 Forbidden", "{host}");
                let reason = format!("address {} is {class}", ip(addr));
                assert!(
                    response.ends_with(&format!("Forbidden: {reason}: {host}\n")),
                    "{response}"
                );
                let decision = harness.decisions().pop().unwrap();
                assert_eq!(
                    (decision.allowed, decision.reason, decision.address),
                    (false, reason, None)
                );
            }
        }
        assert_eq!(echo.accepted(), 0, "a refused address was connected to");
    }

    #[tokio::test]
    async fn refuses_when_any_address_is_not_public() {
        let echo = Echo::start().await;
        let policy = EgressPolicy::new(vec!["mixed.test".into()])
            .with_ports(vec![echo.port])
            .with_allowed_networks(loopback_only());
        let harness = Harness::new(
            policy,
            StaticResolver::new([("mixed.test", vec![ip("127.0.0.1"), ip("10.0.0.1")])]),
        );

        let request = format!("CONNECT mixed.test:{} HTTP/1.1\r\n\r\n", echo.port);
        assert_eq!(
            status(&harness.exchange(request.as_bytes()).await),
            "HTTP/1.1 403 Forbidden"
        );
        assert_eq!(harness.only_decision().reason, "address 10.0.0.1 is private");
        assert_eq!(echo.accepted(), 0);
    }

    #[tokio::test]
    async fn ip_literal_hosts_need_an_allowed_network() {
        let echo = Echo::start().await;
        let policy =
            EgressPolicy::new(vec!["127.0.0.1".into(), "pypi.test".into()]).with_ports(vec![443, echo.port]);
        let harness = Harness::new(policy, StaticResolver::default());
        for request in [
            format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", echo.port),
            format!("GET http://127.0.0.1:{}/ HTTP/1.1\r\n\r\n", echo.port),
            "CONNECT [::1]:443 HTTP/1.1\r\n\r\n".to_string(),
            "CONNECT 8.8.8.8:443 HTTP/1.1\r\n\r\n".to_string(),
        ] {
            let response = harness.exchange(request.as_bytes()).await;
            assert_eq!(status(&response), "HTTP/1.1 403 Forbidden", "{request}");
        }
        let decisions = harness.decisions();
        let hosts: Vec<_> = decisions.iter().map(|d| d.host.as_str()).collect();
        assert_eq!(hosts, ["127.0.0.1", "127.0.0.1", "::1", "8.8.8.8"]);
        assert!(
            decisions
                .iter()
                .all(|d| !d.allowed && d.reason == "IP address not in an allowed network")
        );
        assert_eq!(echo.accepted(), 0);
        harness.proxy.shutdown().await;

        // In an allowed network, a literal is fine.
        let policy = EgressPolicy::new(Vec::new())
            .with_ports(vec![echo.port])
            .with_allowed_networks(loopback_only());
        let harness = Harness::new(policy, StaticResolver::default());
        let mut stream = UnixStream::connect(&harness.path).await.unwrap();
        stream
            .write_all(format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", echo.port).as_bytes())
            .await
            .unwrap();
        let mut reply = vec![0u8; CONNECT_ESTABLISHED.len()];
        timeout(WAIT, stream.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, CONNECT_ESTABLISHED);
        assert!(harness.only_decision().allowed);
    }

    #[tokio::test]
    async fn refuses_disallowed_port() {
        let policy = EgressPolicy::new(vec!["pypi.test".into()]);
        let harness = Harness::new(
            policy,
            StaticResolver::new([("pypi.test", vec![ip("127.0.0.1")])]),
        );
        let response = harness.exchange(b"CONNECT pypi.test:25 HTTP/1.1\r\n\r\n").await;
        assert_eq!(status(&response), "HTTP/1.1 403 Forbidden");
        assert!(
            response.ends_with("Forbidden: port 25 not allowed: pypi.test\n"),
            "{response}"
        );
        let decision = harness.only_decision();
        assert_eq!(
            (decision.port, decision.reason.as_str()),
            (25, "port 25 not allowed")
        );
    }

    #[tokio::test]
    async fn malformed_requests_get_400() {
        let harness = Harness::new(
            EgressPolicy::new(vec!["pypi.test".into()]),
            StaticResolver::default(),
        );
        for request in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /simple/ HTTP/1.1\r\nHost: pypi.test\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            b"GET http://pypi.test/ HTTP/1.1\r\nA: b\nInjected: c\r\n\r\n",
        ] {
            let response = harness.exchange(request).await;
            assert_eq!(status(&response), "HTTP/1.1 400 Bad Request", "{request:?}");
        }
        let decisions = harness.decisions();
        assert_eq!(decisions.len(), 4);
        assert!(
            decisions
                .iter()
                .all(|d| !d.allowed && d.reason.starts_with("bad request: ") && d.port == 0)
        );
        assert_eq!(decisions[0].reason, "bad request: malformed request line");
        assert_eq!(decisions[1].method, "GET");

        // Closing without sending anything is not a request at all.
        drop(UnixStream::connect(&harness.path).await.unwrap());
        // Half a head, then EOF.
        let mut stream = UnixStream::connect(&harness.path).await.unwrap();
        stream.write_all(b"GET http://pypi.test/ HT").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut response = String::new();
        timeout(WAIT, stream.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status(&response), "HTTP/1.1 400 Bad Request");
        assert_eq!(harness.decisions().len(), 5);
    }

    #[tokio::test]
    async fn oversized_head_gets_400() {
        let harness = Harness::new(
            EgressPolicy::new(vec!["pypi.test".into()]),
            StaticResolver::default(),
        );
        let mut request = b"GET http://pypi.test/ HTTP/1.1\r\nX-Filler: ".to_vec();
        request.resize(HEAD_LIMIT + 4096, b'a');
        let response = harness.exchange(&request).await;
        assert_eq!(status(&response), "HTTP/1.1 400 Bad Request");
        assert!(harness.only_decision().reason.contains("head larger than"));

        // Exactly at the limit is still fine (refused for another reason).
        let mut request = b"GET http://evil.test/ HTTP/1.1\r\nX-Filler: ".to_vec();
        request.resize(HEAD_LIMIT - 4, b'a');
        request.extend_from_slice(b"\r\n\r\n");
        let response = harness.exchange(&request).await;
        assert_eq!(status(&response), "HTTP/1.1 403 Forbidden");
    }

    #[tokio::test]
    async fn slow_head_gets_400() {
        let settings = Settings {
            head_timeout: Duration::from_millis(200),
            ..Settings::default()
        };
        let harness = Harness::with_settings(
            EgressPolicy::new(vec!["pypi.test".into()]),
            StaticResolver::default(),
            settings,
        );
        let mut stream = UnixStream::connect(&harness.path).await.unwrap();
        stream
            .write_all(b"GET http://pypi.test/ HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        timeout(WAIT, stream.read_to_string(&mut response))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status(&response), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            harness.only_decision().reason,
            "bad request: no request head in time"
        );
    }

    #[tokio::test]
    async fn resolution_failure_gets_502() {
        let harness = Harness::new(
            EgressPolicy::new(vec!["missing.test".into(), "empty.test".into()]),
            StaticResolver::new([("empty.test", vec![])]),
        );
        let response = harness
            .exchange(b"CONNECT missing.test:443 HTTP/1.1\r\n\r\n")
            .await;
        assert_eq!(status(&response), "HTTP/1.1 502 Bad Gateway");
        let decision = harness.only_decision();
        assert!(!decision.allowed);
        assert!(
            decision.reason.starts_with("resolution failed: "),
            "{}",
            decision.reason
        );

        let response = harness.exchange(b"GET http://empty.test/ HTTP/1.1\r\n\r\n").await;
        assert_eq!(status(&response), "HTTP/1.1 502 Bad Gateway");
        assert_eq!(harness.decisions()[1].reason, "resolution failed: no addresses");
    }

    #[tokio::test]
    async fn connection_failure_gets_502() {
        let port = closed_port().await;
        let policy = EgressPolicy::new(vec!["down.test".into()])
            .with_ports(vec![port])
            .with_allowed_networks(loopback_only());
        let harness = Harness::new(
            policy,
            StaticResolver::new([("down.test", vec![ip("127.0.0.1")])]),
        );
        let response = harness
            .exchange(format!("CONNECT down.test:{port} HTTP/1.1\r\n\r\n").as_bytes())
            .await;
        assert_eq!(status(&response), "HTTP/1.1 502 Bad Gateway");
        let decision = harness.only_decision();
        assert!(
            !decision.allowed && decision.reason.starts_with("connection failed: "),
            "{decision:?}"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_closes_tunnels() {
        let echo = Echo::start().await;
        let policy = EgressPolicy::new(vec!["pypi.test".into()])
            .with_ports(vec![echo.port])
            .with_allowed_networks(loopback_only());
        let harness = Harness::new(
            policy,
            StaticResolver::new([("pypi.test", vec![ip("127.0.0.1")])]),
        );

        let mut tunnel = UnixStream::connect(&harness.path).await.unwrap();
        tunnel
            .write_all(format!("CONNECT pypi.test:{} HTTP/1.1\r\n\r\n", echo.port).as_bytes())
            .await
            .unwrap();
        let mut reply = vec![0u8; CONNECT_ESTABLISHED.len()];
        timeout(WAIT, tunnel.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();

        let Harness {
            _dir, path, proxy, ..
        } = harness;
        timeout(WAIT, proxy.shutdown()).await.unwrap();

        let mut rest = Vec::new();
        let read = timeout(WAIT, tunnel.read_to_end(&mut rest)).await.unwrap();
        assert!(read.is_err() || rest.is_empty(), "tunnel still open: {rest:?}");
        assert!(
            UnixStream::connect(&path).await.is_err(),
            "still accepting after shutdown"
        );
    }

    #[tokio::test]
    async fn dropping_the_proxy_stops_it() {
        let harness = Harness::new(EgressPolicy::new(Vec::new()), StaticResolver::default());
        let Harness {
            _dir, path, proxy, ..
        } = harness;
        let idle = UnixStream::connect(&path).await.unwrap();
        drop(proxy);
        let refused = timeout(WAIT, async {
            loop {
                if UnixStream::connect(&path).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        refused.await.unwrap();
        let mut idle = idle;
        let mut rest = Vec::new();
        let read = timeout(WAIT, idle.read_to_end(&mut rest)).await.unwrap();
        assert!(read.is_err() || rest.is_empty());
    }

    #[test]
    fn v6_literal_host_header() {
        let authority = Authority {
            host: Ipv6Addr::LOCALHOST.to_string(),
            port: 80,
        };
        assert_eq!(authority.host_header(), "[::1]");
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
