//! The request head: reading it (bounded in size), parsing the request line, headers and target,
//! deciding how the body is framed (refusing ambiguous framing), and rewriting the head for the
//! origin.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::body::Body;
use super::policy::{is_valid_hostname, normalize_name};

/// Longest accepted method name (the longest registered ones have 17 characters).
const MAX_METHOD_LEN: usize = 32;
/// Connection-level headers never forwarded to the origin (besides `Proxy-*` and `Host`).
const HOP_BY_HOP: [&str; 5] = ["connection", "keep-alive", "te", "trailer", "upgrade"];

/// A request head and whatever the client sent right behind it.
#[derive(Debug)]
pub(super) struct Head {
    /// Request line and headers, through the blank line.
    pub(super) bytes: Vec<u8>,
    /// Bytes read past the head (body, TLS ClientHello, …).
    pub(super) rest: Vec<u8>,
}

#[derive(Debug)]
pub(super) enum HeadError {
    /// The client closed before sending anything.
    Closed,
    /// The client closed in the middle of the head.
    Incomplete,
    TooLarge,
    Io(io::Error),
}

/// Reads until the blank line ending the head; at most `limit` bytes of head.
pub(super) async fn read_head<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> Result<Head, HeadError> {
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
pub(super) struct Request {
    pub(super) method: String,
    /// Lower-case name without trailing dot, or an IP literal without brackets.
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Connect,
    Http(HttpForward),
}

/// A plain HTTP request ready for the origin.
#[derive(Debug)]
pub(super) struct HttpForward {
    /// The rewritten head (origin-form request line, filtered headers, `Connection: close`).
    pub(super) head: Vec<u8>,
    pub(super) body: Body,
}

/// A malformed request: what we know of the method, and a short description that never
/// echoes client input.
#[derive(Debug)]
pub(super) struct BadRequest {
    pub(super) method: String,
    pub(super) detail: &'static str,
}

type Header<'a> = (&'a str, &'a str);

pub(super) fn parse_request(head: &[u8]) -> Result<Request, BadRequest> {
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
pub(super) fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<Header<'a>>, &'static str> {
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
pub(super) fn body_framing(headers: &[Header<'_>]) -> Result<Body, &'static str> {
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

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

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

    #[test]
    fn v6_literal_host_header() {
        let authority = Authority {
            host: Ipv6Addr::LOCALHOST.to_string(),
            port: 80,
        };
        assert_eq!(authority.host_header(), "[::1]");
    }
}
