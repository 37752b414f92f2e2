//! A fake backend for tests of other crates. Its sandboxes run nothing: an in-process task speaks
//! the real supervisor protocol on a real Unix socket and answers every command from a handler,
//! so callers exercise the same client, streaming and cancellation paths as with a real sandbox.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::client::{ExecHandle, SupervisorClient};
use crate::error::Result;
use crate::spec::{ExecRequest, SandboxId, SandboxSpec};
use crate::wire::{self, ExitInfo, Kind, Reply, Request};
use crate::{Backend, Sandbox};

/// What a fake sandbox was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCommand {
    Exec(ExecRequest),
    Shell { session: String, command: String },
}

/// The scripted answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
    /// Sleep this long before answering (to test cancellation and timeouts).
    pub delay: Duration,
}

impl FakeOutput {
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        Self {
            stdout: stdout.into(),
            ..Self::default()
        }
    }
}

pub type FakeHandler = Arc<dyn Fn(&FakeCommand) -> FakeOutput + Send + Sync>;

pub struct FakeBackend {
    dir: PathBuf,
    handler: FakeHandler,
    created: AtomicUsize,
}

impl FakeBackend {
    /// Sockets go in `dir`.
    pub fn new(dir: impl Into<PathBuf>, handler: FakeHandler) -> Self {
        Self {
            dir: dir.into(),
            handler,
            created: AtomicUsize::new(0),
        }
    }

    /// Sandboxes created so far.
    pub fn created(&self) -> usize {
        self.created.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn ready(&self) -> Result<()> {
        Ok(())
    }

    async fn create(&self, _spec: SandboxSpec) -> Result<Box<dyn Sandbox>> {
        std::fs::create_dir_all(&self.dir)?;
        let id = SandboxId::generate();
        let socket = self.dir.join(format!("{id}.sock"));
        let listener = UnixListener::bind(&socket)?;
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, self.handler.clone(), stop.clone()));
        self.created.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(FakeSandbox {
            id,
            client: SupervisorClient::new(socket),
            stop,
            destroyed: AtomicBool::new(false),
        }))
    }

    async fn reap_leftovers(&self) -> Result<usize> {
        Ok(0)
    }
}

struct FakeSandbox {
    id: SandboxId,
    client: SupervisorClient,
    stop: CancellationToken,
    destroyed: AtomicBool,
}

#[async_trait]
impl Sandbox for FakeSandbox {
    fn id(&self) -> &SandboxId {
        &self.id
    }

    async fn exec(&self, request: ExecRequest) -> Result<ExecHandle> {
        self.client.exec(request).await
    }

    async fn shell(&self, session: &str, command: &str, timeout: Option<Duration>) -> Result<ExecHandle> {
        self.client.shell(session, command, timeout).await
    }

    async fn alive(&self) -> bool {
        !self.destroyed.load(Ordering::SeqCst) && self.client.ping().await.is_ok()
    }

    async fn destroy(&self) -> Result<()> {
        self.destroyed.store(true, Ordering::SeqCst);
        self.stop.cancel();
        Ok(())
    }
}

async fn serve(listener: UnixListener, handler: FakeHandler, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { break };
                tokio::spawn(answer(conn, handler.clone()));
            }
        }
    }
}

async fn answer(conn: UnixStream, handler: FakeHandler) -> std::io::Result<()> {
    let (mut rd, mut wr) = conn.into_split();
    let Some(wire::Frame::Control(bytes)) = wire::read_frame(&mut rd).await? else {
        return Ok(());
    };
    let command = match wire::decode::<Request>(&bytes)? {
        Request::Ping => {
            return wire::write_json(
                &mut wr,
                &Reply::Pong {
                    version: wire::VERSION,
                    pid: 1,
                },
            )
            .await;
        }
        Request::Usage => return wire::write_json(&mut wr, &Reply::Usage(wire::UsageInfo::default())).await,
        Request::Exec(request) => FakeCommand::Exec(request),
        Request::Shell { session, command, .. } => FakeCommand::Shell { session, command },
    };
    let output = handler(&command);
    wire::write_json(&mut wr, &Reply::Started { pid: 2 }).await?;
    tokio::time::sleep(output.delay).await;
    if !output.stdout.is_empty() {
        wire::write_frame(&mut wr, Kind::Stdout, &output.stdout).await?;
    }
    if !output.stderr.is_empty() {
        wire::write_frame(&mut wr, Kind::Stderr, &output.stderr).await?;
    }
    let exit = ExitInfo {
        code: Some(output.code),
        ..ExitInfo::default()
    };
    wire::write_json(&mut wr, &Reply::Exit(exit)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_from_the_handler_through_the_real_client() {
        let dir = tempfile::tempdir().unwrap();
        let handler: FakeHandler = Arc::new(|cmd| match cmd {
            FakeCommand::Shell { command, .. } => FakeOutput::ok(format!("ran {command}")),
            FakeCommand::Exec(req) => FakeOutput {
                code: 3,
                stderr: req.argv.join(" ").into(),
                ..Default::default()
            },
        });
        let backend = FakeBackend::new(dir.path(), handler);
        let sandbox = backend
            .create(SandboxSpec::new("t/c", dir.path().join("ws")))
            .await
            .unwrap();
        let out = sandbox
            .shell("main", "ls", None)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "ran ls");
        let out = sandbox
            .exec(ExecRequest::new(["false", "x"]))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!((out.exit.code, out.stderr_text().as_str()), (Some(3), "false x"));
        assert!(sandbox.alive().await);
        sandbox.destroy().await.unwrap();
        assert!(!sandbox.alive().await);
        assert_eq!(backend.created(), 1);
    }
}
