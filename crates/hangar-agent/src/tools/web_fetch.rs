//! `WebFetch`: fetches a URL for the model and returns the page as readable text.
//!
//! The request goes out from the host, so it is held to the same [`EgressPolicy`] as the
//! sandboxes' egress proxy ([`hangar_sandbox::egress`]), with the same checks: only `http` and
//! `https` URLs without credentials; the host must be an allowed domain (an IP literal must lie
//! in an allowed network) and the port an allowed port; the name is resolved here, through the
//! given [`Resolve`], and every address must pass [`EgressPolicy::address_allowed`]. The client
//! then connects to exactly those vetted addresses (it cannot resolve anything itself, so there
//! is no window for DNS rebinding) and uses no proxy from the environment. Redirects are followed
//! by hand, at most [`WebFetchLimits::max_redirects`], each hop vetted again.
//!
//! The server builds one per run, with the tenant's policy, and registers it only when the
//! tenant allows some domains: it is not part of [`builtin`](super::builtin).
//!
//! HTML becomes plain text with `html2text` (headings, paragraphs, lists, links as
//! `text (url)`; scripts and styles dropped); other text, JSON and XML come back as they are;
//! anything else is refused. We do not run a second model over `prompt`: it is echoed above
//! the page, and the calling model answers it itself.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hangar_sandbox::egress::{CONNECT_TIMEOUT, EgressPolicy, RESOLVE_TIMEOUT, Resolve, non_public_reason};
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_input;
use crate::tool::{Tool, ToolContext, ToolError, ToolOutput};

mod html;

/// Sent with every request.
const USER_AGENT: &str = concat!("Hangar-WebFetch/", env!("CARGO_PKG_VERSION"));
const ACCEPT_VALUE: &str = "text/html, application/xhtml+xml, text/*;q=0.9, application/json;q=0.9, \
                            application/xml;q=0.8, */*;q=0.1";
/// Bytes looked at to decide whether a body without a content type is text.
const SNIFF_BYTES: usize = 8 * 1024;

/// How much a fetch may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebFetchLimits {
    /// The whole fetch (every hop, headers and body) must finish within this.
    pub timeout: Duration,
    /// Largest response body read; a larger one is refused.
    pub max_body_bytes: usize,
    /// Characters of text returned; the rest is cut, with a note saying how much.
    pub max_output_chars: usize,
    /// Redirects followed.
    pub max_redirects: usize,
}

impl Default for WebFetchLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_body_bytes: 5 * 1024 * 1024,
            max_output_chars: 100_000,
            max_redirects: 5,
        }
    }
}

/// Fetches web pages allowed by a tenant's egress policy.
pub struct WebFetch {
    policy: EgressPolicy,
    resolver: Arc<dyn Resolve>,
    limits: WebFetchLimits,
}

impl WebFetch {
    /// A `WebFetch` held to `policy`, resolving names with `resolver` (in production
    /// [`SystemResolver`](hangar_sandbox::egress::SystemResolver)), with the default limits.
    pub fn new(policy: EgressPolicy, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            policy,
            resolver,
            limits: WebFetchLimits::default(),
        }
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: WebFetchLimits) -> Self {
        self.limits = limits;
        self
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    url: String,
    #[serde(default)]
    prompt: Option<String>,
}

#[async_trait]
impl Tool for WebFetch {
    fn name(&self) -> &str {
        "WebFetch"
    }

    fn description(&self) -> String {
        let domains = if self.policy.domains.is_empty() {
            "none".to_owned()
        } else {
            self.policy.domains.join(", ")
        };
        format!(
            "Fetches a URL and returns its content as readable text.\n\n\
             - Only http:// and https:// URLs on the allowed domains can be fetched: {domains} \
             (`*.example.com` means any subdomain). Other hosts, private and internal addresses, \
             and URLs with a user name or password are refused.\n\
             - HTML is converted to plain text: headings, paragraphs, lists, tables, and links as \
             `text (url)`; scripts and styles are dropped. Plain text, JSON and XML are returned \
             as they are. Images, PDFs and other binary content are not supported.\n\
             - Redirects are followed (at most {}) as long as they stay on allowed hosts.\n\
             - Responses over {} are refused, the text returned is cut after {} characters, \
             and a fetch may take at most {} seconds.\n\
             - `prompt` (what you want to know from the page) is not answered by this tool: it is \
             repeated above the page, and you read the page and answer it yourself.",
            self.limits.max_redirects,
            size(self.limits.max_body_bytes),
            self.limits.max_output_chars,
            self.limits.timeout.as_secs(),
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "url": {
                    "type": "string",
                    "format": "uri",
                    "description": "The URL to fetch (http or https)."
                },
                "prompt": {
                    "type": "string",
                    "description": "What you want to find out from the page (shown above the content)."
                }
            },
            "required": ["url"],
            "additionalProperties": false
        })
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: Input = parse_input(self.name(), input)?;
        let url = parse_url(&input.url)?;
        let shown = url.to_string();
        let fetched = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
            fetched = tokio::time::timeout(self.limits.timeout, self.fetch(url)) => fetched,
        };
        let page = fetched.map_err(|_| {
            ToolError::Failed(format!(
                "fetching {shown} took longer than {} seconds; gave up",
                self.limits.timeout.as_secs_f64()
            ))
        })??;
        let header = page.header(input.prompt.as_deref());
        let max_chars = self.limits.max_output_chars;
        let converting = tokio::task::spawn_blocking(move || page.into_text(max_chars));
        let text = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
            text = converting => text.map_err(|err| ToolError::Failed(format!("converting {shown} to text failed: {err}")))?,
        }?;
        Ok(ToolOutput::text(header + &text))
    }
}

/// A response body that passed every check.
struct Page {
    requested: Url,
    url: Url,
    content_type: Option<String>,
    kind: Kind,
    body: Vec<u8>,
}

/// How a body becomes text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Text,
    /// No content type: decided from the body.
    Sniff,
}

/// Where one hop may connect: the URL's host and its vetted addresses.
struct Target {
    host: String,
    addresses: Vec<SocketAddr>,
}

impl WebFetch {
    /// Follows `url` through redirects to a successful response and reads its body.
    async fn fetch(&self, requested: Url) -> Result<Page, ToolError> {
        let mut url = requested.clone();
        let mut redirects = 0;
        loop {
            let target = self
                .vet(&url)
                .await
                .map_err(|reason| refused(&requested, &url, &reason))?;
            let response = self
                .client(&target)?
                .get(url.clone())
                .header(ACCEPT, ACCEPT_VALUE)
                .send()
                .await
                .map_err(|err| ToolError::Failed(format!("fetching {url} failed: {}", chain(&err))))?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(LOCATION)
            {
                if redirects == self.limits.max_redirects {
                    return Err(ToolError::Failed(format!(
                        "fetching {requested} was redirected more than {} times; gave up at {url}",
                        self.limits.max_redirects
                    )));
                }
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|location| url.join(location).ok())
                    .ok_or_else(|| {
                        ToolError::Failed(format!("{url} redirected to an invalid location {location:?}"))
                    })?;
                check_scheme_and_credentials(&next).map_err(|reason| refused(&requested, &next, &reason))?;
                redirects += 1;
                url = next;
                continue;
            }
            if !status.is_success() {
                return Err(ToolError::Failed(format!("{url} answered HTTP {status}")));
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
                .filter(|value| !value.is_empty());
            let kind = classify(content_type.as_deref()).ok_or_else(|| unsupported(&url, &content_type))?;
            let body = self.read_body(&url, response).await?;
            return Ok(Page {
                requested,
                url,
                content_type,
                kind,
                body,
            });
        }
    }

    /// Checks `url` against the policy and resolves its host; the reason is shown to the model.
    async fn vet(&self, url: &Url) -> Result<Target, String> {
        check_scheme_and_credentials(url)?;
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip_literal = literal.parse::<IpAddr>().ok();
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        match ip_literal {
            Some(ip) if !self.policy.network_allowed(ip) => {
                return Err(format!("IP address {ip} is not in an allowed network"));
            }
            None if !self.policy.domain_allowed(&name) => {
                return Err(format!("{name} is not an allowed domain"));
            }
            _ => {}
        }
        if !self.policy.port_allowed(port) {
            return Err(format!("port {port} is not allowed"));
        }
        let addresses = match ip_literal {
            Some(ip) => vec![ip],
            None => self.resolve(&name, port).await?,
        };
        if let Some(&bad) = addresses.iter().find(|ip| !self.policy.address_allowed(**ip)) {
            let class = non_public_reason(bad).unwrap_or("not allowed");
            return Err(format!("{host} resolves to {bad}, which is {class}"));
        }
        Ok(Target {
            host: host.to_owned(),
            addresses: addresses
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect(),
        })
    }

    async fn resolve(&self, name: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        let mut addresses =
            match tokio::time::timeout(RESOLVE_TIMEOUT, self.resolver.resolve(name, port)).await {
                Err(_) => return Err(format!("resolving {name} timed out")),
                Ok(Err(err)) => return Err(format!("resolving {name} failed: {err}")),
                Ok(Ok(addresses)) => addresses,
            };
        let mut seen = std::collections::HashSet::new();
        addresses.retain(|ip| seen.insert(*ip));
        if addresses.is_empty() {
            return Err(format!("{name} has no addresses"));
        }
        Ok(addresses)
    }

    /// A client that reaches `target.host` only at its vetted addresses and no other name at all.
    fn client(&self, target: &Target) -> Result<reqwest::Client, ToolError> {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .dns_resolver(Arc::new(Unvetted))
            .resolve_to_addrs(&target.host, &target.addresses)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(self.limits.timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|err| ToolError::Failed(format!("WebFetch is unavailable: {}", chain(&err))))
    }

    /// Reads the body, stopping as soon as it is larger than the limit.
    async fn read_body(&self, url: &Url, mut response: reqwest::Response) -> Result<Vec<u8>, ToolError> {
        let max = self.limits.max_body_bytes;
        let too_large = || {
            ToolError::Failed(format!(
                "{url} is larger than {}, the most WebFetch reads",
                size(max)
            ))
        };
        if response
            .content_length()
            .is_some_and(|length| length > max as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| ToolError::Failed(format!("reading {url} failed: {}", chain(&err))))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Reqwest's resolver for the fetch: every name is refused. The one name a client may reach
/// is overridden with its vetted addresses, and overrides are consulted first.
struct Unvetted;

impl reqwest::dns::Resolve for Unvetted {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let message = format!("{} was not vetted by the egress policy", name.as_str());
        Box::pin(async move { Err(message.into()) })
    }
}

fn parse_url(given: &str) -> Result<Url, ToolError> {
    let url =
        Url::parse(given.trim()).map_err(|err| ToolError::Failed(format!("invalid URL {given:?}: {err}")))?;
    // Credentials must not be echoed back in the message.
    check_scheme_and_credentials(&url)
        .map_err(|reason| ToolError::Failed(format!("WebFetch refused the URL: {reason}")))?;
    Ok(url)
}

fn check_scheme_and_credentials(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("the {other}: scheme is not supported; use http or https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URLs with a user name or password are not allowed".to_owned());
    }
    Ok(())
}

/// A refusal of `url`, reached from `requested` (directly or through redirects).
fn refused(requested: &Url, url: &Url, reason: &str) -> ToolError {
    let url = without_credentials(url);
    if requested.as_str() == url.as_str() {
        ToolError::Failed(format!("WebFetch refused {url}: {reason}"))
    } else {
        ToolError::Failed(format!(
            "WebFetch refused a redirect from {requested} to {url}: {reason}"
        ))
    }
}

fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    // Only fails for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// How a content type is turned into text, or `None` if it is not supported.
fn classify(content_type: Option<&str>) -> Option<Kind> {
    let Some(content_type) = content_type else {
        return Some(Kind::Sniff);
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/html" | "application/xhtml+xml" => Some(Kind::Html),
        "application/json"
        | "application/xml"
        | "application/javascript"
        | "application/ecmascript"
        | "application/yaml"
        | "application/x-yaml"
        | "application/toml" => Some(Kind::Text),
        _ if essence.starts_with("text/") || essence.ends_with("+json") || essence.ends_with("+xml") => {
            Some(Kind::Text)
        }
        _ => None,
    }
}

fn unsupported(url: &Url, content_type: &Option<String>) -> ToolError {
    let what = match content_type {
        Some(content_type) => format!("content of type {content_type}, which is not supported"),
        None => "no content type, and its content does not look like text".to_owned(),
    };
    ToolError::Failed(format!(
        "{url} returned {what}: WebFetch returns only HTML, text, JSON and XML"
    ))
}

impl Page {
    /// What is shown above the content.
    fn header(&self, prompt: Option<&str>) -> String {
        let mut out = String::new();
        if let Some(prompt) = prompt.map(str::trim).filter(|p| !p.is_empty()) {
            let _ = writeln!(out, "# {}", prompt.replace('\n', " "));
            out.push_str(
                "(WebFetch does not answer the prompt: read the page below and answer it yourself.)\n\n",
            );
        }
        let _ = write!(out, "Source: {}", self.url);
        if self.url != self.requested {
            let _ = write!(out, " (redirected from {})", self.requested);
        }
        let _ = writeln!(
            out,
            "\nContent-Type: {}\n",
            self.content_type.as_deref().unwrap_or("(none)")
        );
        out
    }

    /// The body as text, cut after `max_chars` characters.
    fn into_text(self, max_chars: usize) -> Result<String, ToolError> {
        let kind = match self.kind {
            Kind::Sniff => sniff(&self.body).ok_or_else(|| unsupported(&self.url, &None))?,
            kind => kind,
        };
        let text = match kind {
            Kind::Html => html::html_to_text(&String::from_utf8_lossy(&self.body), &self.url),
            _ => String::from_utf8_lossy(&self.body).into_owned(),
        };
        if text.trim().is_empty() {
            return Ok("(The page has no text.)".to_owned());
        }
        Ok(truncate(text, max_chars))
    }
}

/// The kind of a body that came without a content type, if it looks like text.
fn sniff(body: &[u8]) -> Option<Kind> {
    let head = &body[..body.len().min(SNIFF_BYTES)];
    if head.contains(&0) {
        return None;
    }
    // A multi-byte character may be cut at the end of the sample.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(err) => err.error_len().is_none(),
    };
    if !valid {
        return None;
    }
    let start = String::from_utf8_lossy(&head[..head.len().min(512)])
        .trim_start()
        .to_ascii_lowercase();
    if start.starts_with("<!doctype html") || start.starts_with("<html") {
        Some(Kind::Html)
    } else {
        Some(Kind::Text)
    }
}

fn truncate(text: String, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text;
    }
    let cut = text
        .char_indices()
        .nth(max_chars)
        .map_or(text.len(), |(index, _)| index);
    format!(
        "{}\n\n[… {} more characters of {total} were cut: the text is longer than {max_chars} characters.]",
        &text[..cut],
        total - max_chars
    )
}

fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{bytes} bytes")
    }
}

/// An error with its sources, which is where reqwest says what actually went wrong.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        let _ = write!(out, ": {err}");
        source = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn content_types_decide_the_conversion() {
        for (content_type, kind) in [
            (Some("text/html; charset=utf-8"), Some(Kind::Html)),
            (Some("Application/XHTML+XML"), Some(Kind::Html)),
            (Some("text/plain"), Some(Kind::Text)),
            (Some("text/markdown"), Some(Kind::Text)),
            (Some("application/json"), Some(Kind::Text)),
            (Some("application/ld+json"), Some(Kind::Text)),
            (Some("application/atom+xml"), Some(Kind::Text)),
            (None, Some(Kind::Sniff)),
            (Some("image/png"), None),
            (Some("application/pdf"), None),
            (Some("application/octet-stream"), None),
        ] {
            assert_eq!(classify(content_type), kind, "{content_type:?}");
        }
        assert_eq!(sniff(b"  <!DOCTYPE html><p>x"), Some(Kind::Html));
        assert_eq!(sniff(b"just words \xc3"), Some(Kind::Text));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0"), None);
        assert_eq!(sniff(b"\xff\xfe\xfd latin-1 garbage"), None);
    }

    #[test]
    fn urls_need_http_and_no_credentials() {
        assert!(parse_url(" https://docs.example.test/a ").is_ok());
        let error = parse_url("https://me:s3cret@docs.example.test/")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "WebFetch refused the URL: URLs with a user name or password are not allowed"
        );
        let error = parse_url("gopher://docs.example.test/").unwrap_err().to_string();
        assert!(error.contains("the gopher: scheme is not supported"), "{error}");
        assert!(parse_url("docs.example.test/page").is_err());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo".to_owned(), 5), "héllo");
        assert_eq!(
            truncate("héllo wörld".to_owned(), 2),
            "hé\n\n[… 9 more characters of 11 were cut: the text is longer than 2 characters.]"
        );
    }
}
