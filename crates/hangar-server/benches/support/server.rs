//! The server under test, shared by the HTTP benchmarks (`http`, `chat`): the application with
//! settings from a list of variables, on its own two-worker runtime on a background thread, as
//! `hangar serve` runs it, until [`Server::stop`]. Also the loopback-only client connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::thread::JoinHandle;

use anyhow::{Result, anyhow, bail};
use hangar_server::{AppState, Llm, Settings, cli::open_store, serve, telemetry};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// 32 characters, so it passes the 16-character minimum with room to spare.
pub const ADMIN_KEY: &str = "bench-admin-key-0123456789abcdef";

pub struct Server {
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    thread: JoinHandle<Result<()>>,
}

impl Server {
    /// `vars` come after the admin key, data directory and database and may override them;
    /// `nodelay` sets `TCP_NODELAY` on the listening socket (see [`nodelay_listener`]); `llm`
    /// builds the model layer from the settings (the providers a benchmark talks to).
    pub fn start(
        data_dir: &std::path::Path,
        database_url: &str,
        vars: Vec<(&'static str, String)>,
        nodelay: bool,
        llm: impl FnOnce(&Settings) -> Llm,
    ) -> Result<Self> {
        let mut all = vec![
            ("API_KEYS", ADMIN_KEY.to_owned()),
            ("HANGAR_DATA_DIR", data_dir.display().to_string()),
            ("DATABASE_URL", database_url.to_owned()),
            ("LOG_LEVEL", "warn".to_owned()),
            ("RATE_LIMIT_ENABLED", "false".to_owned()),
            ("SHUTDOWN_TIMEOUT", "5".to_owned()),
        ];
        all.extend(vars);
        let settings = Settings::from_sources(None, all.into_iter().map(|(k, v)| (k.to_owned(), v)))?;
        let problems = settings.problems();
        if !problems.is_empty() {
            bail!("invalid bench settings: {}", problems.join("; "));
        }
        // The subscriber is process-global: install it once, for the first server.
        static LOGGING: std::sync::Once = std::sync::Once::new();
        LOGGING.call_once(|| telemetry::init_logging(&settings));
        let llm = std::sync::Arc::new(llm(&settings));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hangar-server")
            .enable_all()
            .build()?;
        let (state, listener) = runtime.block_on(async {
            let store = open_store(&settings).await?;
            let listener = if nodelay {
                nodelay_listener()?
            } else {
                // As `hangar serve` binds it.
                TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?
            };
            anyhow::Ok((
                AppState::new(settings, store, telemetry::metrics_handle(), llm)?,
                listener,
            ))
        })?;
        let addr = listener.local_addr()?;
        let (shutdown, signalled) = oneshot::channel::<()>();
        // Spawned, not block_on'ed, so the accept loop also runs on the server's two workers.
        let task = runtime.spawn(serve(state, listener, async move {
            let _ = signalled.await;
        }));
        let thread = std::thread::Builder::new()
            .name("hangar-server-main".into())
            .spawn(move || {
                let outcome = runtime.block_on(task);
                // Dropping the runtime here, outside any async context, ends its worker threads.
                drop(runtime);
                outcome?
            })?;
        Ok(Self {
            addr,
            shutdown,
            thread,
        })
    }

    pub fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(());
        self.thread
            .join()
            .map_err(|_| anyhow!("the server thread panicked"))?
    }
}

/// A loopback listener with `TCP_NODELAY` set on the listening socket; Linux copies the option to
/// every connection it accepts, so the server's own accept loop needs no change.
pub fn nodelay_listener() -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_nodelay(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(socket.listen(1024)?)
}

pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// An HTTP/1.1 connection with `TCP_NODELAY`, to loopback only; the handle drives it.
pub async fn connect(addr: SocketAddr) -> Result<(Sender, tokio::task::JoinHandle<()>)> {
    if !addr.ip().is_loopback() {
        bail!("refusing to send traffic to {addr}: the benchmark only talks to loopback");
    }
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("client connection error: {err}");
        }
    });
    Ok((sender, driver))
}
