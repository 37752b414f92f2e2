//! From a requested `host:port` to a connected origin: the policy checks in order (port, then name
//! or network, then every resolved address), resolution within a time limit, and a connection to
//! one of the vetted addresses — never to an address the client chose.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use super::non_public_reason;
use super::proxy::{Refusal, Shared};

/// Vets `host:port` against the policy, resolves it and connects to the first vetted address
/// that answers.
pub(super) async fn open_origin(
    shared: &Shared,
    host: &str,
    port: u16,
) -> Result<(TcpStream, SocketAddr), Refusal> {
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::*;
    use crate::egress::relay::CONNECT_ESTABLISHED;
    use crate::egress::testing::{Echo, Harness, WAIT, closed_port, ip, loopback_only, status};
    use crate::egress::{EgressDecision, EgressPolicy, StaticResolver};

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
        let harness = Harness::loopback("down.test", port);
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
}
