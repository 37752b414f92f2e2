//! One command without a shell: spawned in its own process group with the sandbox's clean
//! environment, streamed through the output caps, killed as a group on timeout, quota breach or
//! when the host hangs up. Whatever the command left running in its group is killed when it ends.

use std::borrow::Cow;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use rustix::fs::{OFlags, fcntl_setfl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::Ctx;
use super::pump::Pump;
use super::reaper::Ended;
use crate::spec::{ExecRequest, check_env};
use crate::wire::{ExitInfo, Reply, Stream};

/// How long output may keep arriving after the process exited (a background child can hold the
/// pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 16 * 1024;

pub async fn run<R, W>(ctx: &Ctx, request: ExecRequest, hangup: R, writer: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pump = Pump::new(writer, ctx.config.output_bytes);
    let Some(program) = request.argv.first() else {
        return pump
            .control(&Reply::Error {
                message: "empty command".to_owned(),
            })
            .await;
    };
    if let Err(e) = check_env(&request.env) {
        return pump
            .control(&Reply::Error {
                message: e.to_string(),
            })
            .await;
    }
    let mut command = Command::new(program);
    command
        .args(&request.argv[1..])
        .env_clear()
        .envs(&ctx.config.env)
        .envs(&request.env)
        .current_dir(request.cwd.as_deref().unwrap_or(&ctx.config.workdir))
        .stdin(if request.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut proc = match Proc::spawn(ctx, &mut command) {
        Ok(proc) => proc,
        Err(e) => {
            let message = format!("cannot run {program}: {e}");
            return pump.control(&Reply::Error { message }).await;
        }
    };
    if let (Some(bytes), Some(stdin)) = (request.stdin, proc.stdin.take()) {
        tokio::spawn(async move {
            let mut stdin = stdin;
            let _ = stdin.write_all(&bytes).await;
        });
    }
    pump.control(&Reply::Started {
        pid: proc.pgid as u32,
    })
    .await?;
    let timeout = ctx.config.timeout(
        request
            .timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
    );
    let Some(exit) = proc
        .drive(ctx, &mut pump, &mut Passthrough, timeout, hangup)
        .await?
    else {
        return Ok(());
    };
    kill_group(proc.pgid);
    pump.finish(exit).await
}

/// A spawned child with its pipes.
pub struct Proc {
    pub pgid: i32,
    pub stdin: Option<pipe::Sender>,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub exit: oneshot::Receiver<Ended>,
    pub started: Instant,
}

impl Proc {
    pub fn spawn(ctx: &Ctx, command: &mut Command) -> std::io::Result<Self> {
        let (mut child, exit) = ctx.reaper.spawn(command)?;
        let stdin = child.stdin.take().map(|s| sender(OwnedFd::from(s))).transpose()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr pipe"))?;
        Ok(Self {
            pgid: child.id() as i32,
            stdin,
            stdout: receiver(OwnedFd::from(stdout))?,
            stderr: receiver(OwnedFd::from(stderr))?,
            exit,
            started: Instant::now(),
        })
    }

    /// Streams output through `filter` until the process ends or the filter says the command is
    /// done. Returns `None` when the host hung up (the group is killed and nothing more is sent).
    pub async fn drive<R, W>(
        &mut self,
        ctx: &Ctx,
        pump: &mut Pump<W>,
        filter: &mut dyn Filter,
        timeout: Duration,
        mut hangup: R,
    ) -> std::io::Result<Option<ExitInfo>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (_active, mut breach) = ctx.quota.enter();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let drain = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(drain);
        let (mut out_buf, mut err_buf) = (vec![0u8; READ_CHUNK], vec![0u8; READ_CHUNK]);
        let (mut out_open, mut err_open) = (true, true);
        let mut ended: Option<Ended> = None;
        let mut info = ExitInfo::default();
        let mut probe = [0u8; 1];
        while !filter.done() && (ended.is_none() || out_open || err_open) {
            tokio::select! {
                r = self.stdout.read(&mut out_buf), if out_open => match r {
                    Ok(n) if n > 0 => pump.output(Stream::Stdout, &filter.stdout(&out_buf[..n])).await?,
                    _ => out_open = false,
                },
                r = self.stderr.read(&mut err_buf), if err_open => match r {
                    Ok(n) if n > 0 => pump.output(Stream::Stderr, &filter.stderr(&err_buf[..n])).await?,
                    _ => err_open = false,
                },
                status = &mut self.exit, if ended.is_none() => {
                    ended = Some(status.unwrap_or(Ended::Signaled(Signal::SIGKILL as i32)));
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                }
                () = &mut drain, if ended.is_some() => break,
                () = &mut deadline, if !info.timed_out && ended.is_none() => {
                    kill_group(self.pgid);
                    info.timed_out = true;
                    info.message = Some(format!("command timed out after {} s and was killed", timeout.as_secs_f64()));
                }
                changed = breach.changed(), if info.message.is_none() => {
                    if changed.is_ok() && let Some(message) = breach.borrow_and_update().clone() {
                        kill_group(self.pgid);
                        info.message = Some(message);
                    }
                }
                _ = hangup.read(&mut probe) => {
                    kill_group(self.pgid);
                    return Ok(None);
                }
            }
        }
        ctx.quota.finished();
        if info.message.is_none() {
            info.message = ctx.quota.over();
        }
        match ended {
            Some(Ended::Exited(code)) => info.code = Some(code),
            Some(Ended::Signaled(sig)) => info.signal = Some(sig),
            None => {}
        }
        info.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(Some(info))
    }
}

/// Sees output before it is sent; a persistent shell uses it to find the end of a command.
pub trait Filter: Send {
    fn stdout<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]>;
    fn stderr<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]>;
    /// The command is over although the process may live on.
    fn done(&self) -> bool;
}

struct Passthrough;

impl Filter for Passthrough {
    fn stdout<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(chunk)
    }
    fn stderr<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        Cow::Borrowed(chunk)
    }
    fn done(&self) -> bool {
        false
    }
}

/// SIGKILL to a whole process group; a group that is already gone is fine.
pub fn kill_group(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

fn receiver(fd: OwnedFd) -> std::io::Result<pipe::Receiver> {
    fcntl_setfl(&fd, OFlags::NONBLOCK)?;
    pipe::Receiver::from_owned_fd(fd)
}

fn sender(fd: OwnedFd) -> std::io::Result<pipe::Sender> {
    fcntl_setfl(&fd, OFlags::NONBLOCK)?;
    pipe::Sender::from_owned_fd(fd)
}
