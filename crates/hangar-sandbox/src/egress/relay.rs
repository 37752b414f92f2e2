//! Serving an allowed request: a `CONNECT` tunnel copying bytes both ways, or a plain HTTP request
//! sent with exactly its body while the response streams back.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use super::body::forward_body;
use super::head::HttpForward;
use super::proxy::linger;

pub(super) const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// Answers a `CONNECT` and copies bytes both ways until either side is done.
pub(super) async fn tunnel(mut client: UnixStream, mut origin: TcpStream, early: Vec<u8>) -> io::Result<()> {
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
pub(super) async fn forward_http(
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::time::timeout;

    use super::*;
    use crate::egress::testing::{Echo, Harness, WAIT, http_origin, ip, loopback_only};
    use crate::egress::{EgressDecision, EgressPolicy, StaticResolver};

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
        let harness = Harness::loopback("pypi.test", port);

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
        let harness = Harness::loopback("pypi.test", port);
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
}
