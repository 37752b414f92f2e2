//! Helpers shared by the egress unit tests: [`Harness`], a proxy on a Unix socket in a temporary
//! directory that records every decision, and the small origins (an echo server, an HTTP origin)
//! it is pointed at.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::body::forward_body;
use super::head::{body_framing, parse_headers, read_head};
use super::proxy::{Settings, Shared};
use super::{Cidr, EgressAudit, EgressDecision, EgressPolicy, EgressProxy, HEAD_LIMIT, StaticResolver};

pub(super) const WAIT: Duration = Duration::from_secs(10);

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

pub(super) fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

pub(super) fn loopback_only() -> Vec<Cidr> {
    vec![cidr("127.0.0.1/32")]
}

/// A proxy on a Unix socket in a temporary directory, recording its decisions.
pub(super) struct Harness {
    pub(super) _dir: tempfile::TempDir,
    pub(super) path: PathBuf,
    pub(super) proxy: EgressProxy,
    decisions: Arc<Mutex<Vec<EgressDecision>>>,
}

impl Harness {
    pub(super) fn new(policy: EgressPolicy, resolver: StaticResolver) -> Self {
        Self::with_settings(policy, resolver, Settings::default())
    }

    /// A proxy allowing only `host` on `port`, which resolves to 127.0.0.1 (an allowed network).
    pub(super) fn loopback(host: &str, port: u16) -> Self {
        let policy = EgressPolicy::new(vec![host.into()])
            .with_ports(vec![port])
            .with_allowed_networks(loopback_only());
        Self::new(policy, StaticResolver::new([(host, vec![ip("127.0.0.1")])]))
    }

    pub(super) fn with_settings(policy: EgressPolicy, resolver: StaticResolver, settings: Settings) -> Self {
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

    pub(super) fn decisions(&self) -> Vec<EgressDecision> {
        self.decisions.lock().unwrap().clone()
    }

    pub(super) fn only_decision(&self) -> EgressDecision {
        let decisions = self.decisions();
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        decisions[0].clone()
    }

    /// Sends `request`, returns everything the proxy answers until it closes.
    pub(super) async fn exchange(&self, request: &[u8]) -> String {
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
pub(super) struct Echo {
    pub(super) port: u16,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Echo {
    pub(super) async fn start() -> Self {
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

    pub(super) fn accepted(&self) -> usize {
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
pub(super) struct Received {
    pub(super) head: String,
    pub(super) body: Vec<u8>,
    /// Whatever arrived after the body before the origin answered.
    pub(super) extra: Vec<u8>,
}

/// A one-request-per-connection HTTP origin on 127.0.0.1 answering `200 hello`.
pub(super) async fn http_origin() -> (u16, mpsc::UnboundedReceiver<Received>) {
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
pub(super) async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

pub(super) fn status(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}
