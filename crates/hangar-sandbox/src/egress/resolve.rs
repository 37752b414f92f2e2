//! Name resolution for the proxy: the [`Resolve`] seam, the system resolver, and a fixed table for
//! tests. Whatever a resolver returns is vetted by the proxy before it connects.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;

use async_trait::async_trait;

use super::policy::normalize_name;

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
