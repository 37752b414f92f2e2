//! [`EgressProxy`]: the accept loop and each connection's course: read and parse the request head,
//! open the origin (vetted in `origin`), relay the request (`relay`) — or refuse it with a status
//! and a one-line reason.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::audit::{Attempt, record};
use super::head::{HeadError, Kind, parse_request, read_head};
use super::origin::open_origin;
use super::relay::{forward_http, tunnel};
use super::{CONNECT_TIMEOUT, EgressAudit, EgressPolicy, HEAD_LIMIT, HEAD_TIMEOUT, RESOLVE_TIMEOUT, Resolve};

/// After a refusal, how much the client may still send, and for how long, before it is cut off.
const LINGER_BYTES: u64 = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Limits of a proxy; the module's constants, shortened by tests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    head_limit: usize,
    head_timeout: Duration,
    pub(super) resolve_timeout: Duration,
    pub(super) connect_timeout: Duration,
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
pub(super) struct Shared {
    pub(super) policy: EgressPolicy,
    pub(super) resolver: Arc<dyn Resolve>,
    pub(super) audit: EgressAudit,
    pub(super) settings: Settings,
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

    pub(super) fn spawn_with(listener: UnixListener, shared: Shared) -> Self {
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

/// Why a request is not served, with the status it is answered with.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
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
    record(&shared.audit, &attempt, "allowed", Some(address));
    let result = match request.kind {
        Kind::Connect => tunnel(client, origin, head.rest).await,
        Kind::Http(forward) => forward_http(client, origin, forward, head.rest).await,
    };
    if let Err(error) = result {
        tracing::debug!(host = %attempt.host, port = attempt.port, %error, "egress connection failed");
    }
}

async fn refuse(client: &mut UnixStream, shared: &Shared, attempt: &Attempt, refusal: Refusal) {
    record(&shared.audit, attempt, refusal.reason(), None);
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
pub(super) async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut rest = (&mut *reader).take(LINGER_BYTES);
    let _ = timeout(LINGER_TIME, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    use tokio::time::timeout;

    use super::*;
    use crate::egress::relay::CONNECT_ESTABLISHED;
    use crate::egress::testing::{Echo, Harness, WAIT, status};
    use crate::egress::{EgressPolicy, HEAD_LIMIT, StaticResolver};

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
    async fn shutdown_stops_accepting_and_closes_tunnels() {
        let echo = Echo::start().await;
        let harness = Harness::loopback("pypi.test", echo.port);

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
}
