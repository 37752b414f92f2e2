//! Host-side client of the supervisor: one connection per request. An [`ExecHandle`] streams a
//! command's output; dropping it closes the connection, which makes the supervisor kill the
//! command's process group — cancellation needs no extra message.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{Result, SandboxError};
use crate::spec::ExecRequest;
use crate::wire::{self, ExitInfo, Frame, Reply, Request, Stream, UsageInfo};

/// Talks to one sandbox's supervisor through its host-side socket path.
#[derive(Debug, Clone)]
pub struct SupervisorClient {
    socket: PathBuf,
}

/// One piece of a running command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Stdout(Bytes),
    Stderr(Bytes),
    /// This many bytes were dropped from the middle of the stream; its tail follows.
    Truncated {
        stream: Stream,
        bytes: u64,
    },
}

/// Everything a finished command produced. Where output was cut, the text says so inline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated_bytes: u64,
    pub exit: ExitInfo,
}

impl ExecOutcome {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A running command. Dropping it cancels the command.
#[derive(Debug)]
pub struct ExecHandle {
    reader: OwnedReadHalf,
    _writer: OwnedWriteHalf,
    pid: u32,
    exit: Option<ExitInfo>,
}

impl SupervisorClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    async fn connect(&self, request: &Request) -> Result<(OwnedReadHalf, OwnedWriteHalf)> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| SandboxError::Gone(format!("supervisor socket: {e}")))?;
        let (reader, mut writer) = stream.into_split();
        wire::write_json(&mut writer, request).await.map_err(gone)?;
        Ok((reader, writer))
    }

    /// Round trip to the supervisor; returns its pid (1 inside a PID namespace).
    pub async fn ping(&self) -> Result<u32> {
        let (mut reader, _writer) = self.connect(&Request::Ping).await?;
        match read_reply(&mut reader).await? {
            Reply::Pong { version, pid } if version == wire::VERSION => Ok(pid),
            Reply::Pong { version, .. } => Err(SandboxError::Supervisor(format!(
                "protocol version {version}, expected {}",
                wire::VERSION
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until the supervisor answers, for at most `within`.
    pub async fn wait_ready(&self, within: Duration) -> Result<u32> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.ping().await {
                Ok(pid) => return Ok(pid),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }

    pub async fn usage(&self) -> Result<UsageInfo> {
        let (mut reader, _writer) = self.connect(&Request::Usage).await?;
        match read_reply(&mut reader).await? {
            Reply::Usage(usage) => Ok(usage),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn exec(&self, request: ExecRequest) -> Result<ExecHandle> {
        self.start(&Request::Exec(request)).await
    }

    pub async fn shell(&self, session: &str, command: &str, timeout: Option<Duration>) -> Result<ExecHandle> {
        let timeout_ms = timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let request = Request::Shell {
            session: session.to_owned(),
            command: command.to_owned(),
            timeout_ms,
        };
        self.start(&request).await
    }

    async fn start(&self, request: &Request) -> Result<ExecHandle> {
        let (mut reader, writer) = self.connect(request).await?;
        match read_reply(&mut reader).await? {
            Reply::Started { pid } => Ok(ExecHandle {
                reader,
                _writer: writer,
                pid,
                exit: None,
            }),
            Reply::Error { message } => Err(SandboxError::Invalid(message)),
            other => Err(unexpected(&other)),
        }
    }
}

impl ExecHandle {
    /// Process (group) id inside the sandbox.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Next piece of output; `None` once the command has ended (see [`exit`](Self::exit)).
    pub async fn next(&mut self) -> Result<Option<ExecEvent>> {
        if self.exit.is_some() {
            return Ok(None);
        }
        match wire::read_frame(&mut self.reader).await.map_err(gone)? {
            None => Err(SandboxError::Gone(
                "the supervisor closed the connection mid-command".to_owned(),
            )),
            Some(Frame::Output(Stream::Stdout, bytes)) => Ok(Some(ExecEvent::Stdout(bytes.into()))),
            Some(Frame::Output(Stream::Stderr, bytes)) => Ok(Some(ExecEvent::Stderr(bytes.into()))),
            Some(Frame::Control(bytes)) => match wire::decode::<Reply>(&bytes).map_err(protocol)? {
                Reply::Exit(info) => {
                    self.exit = Some(info);
                    Ok(None)
                }
                Reply::Truncated { stream, bytes } => Ok(Some(ExecEvent::Truncated { stream, bytes })),
                Reply::Error { message } => Err(SandboxError::Supervisor(message)),
                other => Err(unexpected(&other)),
            },
        }
    }

    /// How the command ended, once [`next`](Self::next) has returned `None`.
    pub fn exit(&self) -> Option<&ExitInfo> {
        self.exit.as_ref()
    }

    /// Reads everything to the end.
    pub async fn collect(mut self) -> Result<ExecOutcome> {
        let mut outcome = ExecOutcome::default();
        while let Some(event) = self.next().await? {
            match event {
                ExecEvent::Stdout(b) => outcome.stdout.extend_from_slice(&b),
                ExecEvent::Stderr(b) => outcome.stderr.extend_from_slice(&b),
                ExecEvent::Truncated { stream, bytes } => {
                    outcome.truncated_bytes += bytes;
                    let note = format!("\n[… {bytes} bytes of output omitted …]\n");
                    match stream {
                        Stream::Stdout => outcome.stdout.extend_from_slice(note.as_bytes()),
                        Stream::Stderr => outcome.stderr.extend_from_slice(note.as_bytes()),
                    }
                }
            }
        }
        outcome.exit = self.exit.take().unwrap_or_default();
        Ok(outcome)
    }
}

async fn read_reply(reader: &mut OwnedReadHalf) -> Result<Reply> {
    match wire::read_frame(reader).await.map_err(gone)? {
        Some(Frame::Control(bytes)) => wire::decode(&bytes).map_err(protocol),
        Some(Frame::Output(..)) => Err(SandboxError::Supervisor(
            "output before the command started".to_owned(),
        )),
        None => Err(SandboxError::Gone(
            "the supervisor closed the connection".to_owned(),
        )),
    }
}

fn gone(e: std::io::Error) -> SandboxError {
    SandboxError::Gone(format!("supervisor connection: {e}"))
}

fn protocol(e: std::io::Error) -> SandboxError {
    SandboxError::Supervisor(format!("bad frame: {e}"))
}

fn unexpected(reply: &Reply) -> SandboxError {
    SandboxError::Supervisor(format!("unexpected reply {reply:?}"))
}
