//! Persistent `bash` sessions. Each command is sent to the session's stdin wrapped so that bash
//! prints a marker with a fresh random nonce, the exit code and the working directory after it:
//! output is framed exactly even when the command prints marker-like text, because it cannot
//! know the nonce. A command that times out, breaks the quota or is cancelled takes the session
//! down with it (its whole process group is killed); the next command starts a new session in the
//! last known directory, and the exit message says that exported variables were lost.

use std::borrow::Cow;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::Ctx;
use super::exec::{Filter, Proc, kill_group};
use super::pump::Pump;
use crate::wire::Reply;

#[derive(Default)]
pub struct Shells {
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    proc: Option<Proc>,
    cwd: Option<String>,
}

impl Shells {
    fn slot(&self, name: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.entry(name.to_owned()).or_default().clone()
    }

    pub fn count(&self) -> u64 {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).len() as u64
    }
}

fn valid_session(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn run<R, W>(
    ctx: &Ctx,
    session: &str,
    command: &str,
    timeout_ms: Option<u64>,
    hangup: R,
    writer: W,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pump = Pump::new(writer, ctx.config.output_bytes);
    if !valid_session(session) {
        let message = "session names are 1-64 letters, digits, '-' or '_'".to_owned();
        return pump.control(&Reply::Error { message }).await;
    }
    if command.contains('\0') {
        return pump
            .control(&Reply::Error {
                message: "command contains a NUL byte".to_owned(),
            })
            .await;
    }
    let slot = ctx.shells.slot(session);
    let mut slot = slot.lock().await;
    let marker = format!("__HANGAR_{:032x}", rand::random::<u128>());
    let script = wrap(command, &marker);
    let proc = match send(ctx, &mut slot, &script).await {
        Ok(proc) => proc,
        Err(e) => {
            return pump
                .control(&Reply::Error {
                    message: format!("cannot start bash: {e}"),
                })
                .await;
        }
    };
    proc.started = Instant::now();
    pump.control(&Reply::Started {
        pid: proc.pgid as u32,
    })
    .await?;
    let mut filter = Markers::new(&marker);
    let timeout = ctx.config.timeout(timeout_ms);
    let Some(mut info) = proc.drive(ctx, &mut pump, &mut filter, timeout, hangup).await? else {
        slot.proc = None;
        return Ok(());
    };
    if let Some((code, cwd)) = filter.result {
        info.code = Some(code);
        info.cwd = Some(cwd.clone());
        slot.cwd = Some(cwd);
    } else {
        kill_group(proc.pgid);
        slot.proc = None;
        let cwd = slot.cwd.as_deref().unwrap_or(&ctx.config.workdir);
        let note = format!(
            "the shell session ended; the next command starts a new one in {cwd} (exported variables are lost)"
        );
        info.message = Some(match info.message.take() {
            Some(message) => format!("{message}; {note}"),
            None => note,
        });
    }
    pump.finish(info).await
}

/// Sends the script to the session, starting it (once more if the old one had died).
async fn send<'s>(ctx: &Ctx, slot: &'s mut Slot, script: &str) -> std::io::Result<&'s mut Proc> {
    for _ in 0..2 {
        if slot.proc.is_none() {
            slot.proc = Some(spawn(ctx, slot.cwd.as_deref())?);
        }
        let Some(proc) = slot.proc.as_mut() else { continue };
        let written = match proc.stdin.as_mut() {
            Some(stdin) => stdin.write_all(script.as_bytes()).await,
            None => Err(std::io::Error::other("no stdin")),
        };
        match written {
            Ok(()) => break,
            Err(_) => {
                kill_group(proc.pgid);
                slot.proc = None;
            }
        }
    }
    slot.proc
        .as_mut()
        .ok_or_else(|| std::io::Error::other("the shell exits immediately"))
}

fn spawn(ctx: &Ctx, cwd: Option<&str>) -> std::io::Result<Proc> {
    let mut command = Command::new("/bin/bash");
    command
        .args(["--noprofile", "--norc"])
        .env_clear()
        .envs(&ctx.config.env)
        .current_dir(cwd.unwrap_or(&ctx.config.workdir))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Proc::spawn(ctx, &mut command).or_else(|_| {
        // The last directory may be gone; fall back to the workspace.
        command.current_dir(&ctx.config.workdir);
        Proc::spawn(ctx, &mut command)
    })
}

/// The command, quoted by a here-document whose delimiter is the marker and read by the `read`
/// builtin (no subshell, no `cat`: about 1.7 ms less per command; `|| true` because `read` fails at
/// the end of its input, which would end a session that ran `set -e`), then the trailers.
fn wrap(command: &str, marker: &str) -> String {
    format!(
        "IFS= read -r -d '' __hangar_cmd <<'{marker}' || true\n{command}\n{marker}\n\
         eval \"$__hangar_cmd\" </dev/null\n\
         __hangar_ec=$?\n\
         printf '\\n{marker} %d %s\\n{marker}_END\\n' \"$__hangar_ec\" \"$PWD\"\n\
         printf '\\n{marker}_ERR\\n' >&2\n"
    )
}

/// Finds a needle in a stream, holding back bytes that could be its beginning.
struct Scanner {
    needle: Vec<u8>,
    pending: Vec<u8>,
}

impl Scanner {
    fn new(needle: String) -> Self {
        Self {
            needle: needle.into_bytes(),
            pending: Vec::new(),
        }
    }

    /// Returns the bytes that are certainly output, and what follows the needle once found.
    fn feed(&mut self, chunk: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        self.pending.extend_from_slice(chunk);
        if let Some(at) = find(&self.pending, &self.needle) {
            let rest = self.pending.split_off(at + self.needle.len());
            self.pending.truncate(at);
            return (std::mem::take(&mut self.pending), Some(rest));
        }
        let keep = (self.needle.len() - 1).min(self.pending.len());
        let tail = self.pending.split_off(self.pending.len() - keep);
        (std::mem::replace(&mut self.pending, tail), None)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The shell filter: strips the trailers and reads the exit code and directory from them.
struct Markers {
    stdout: Scanner,
    stderr: Scanner,
    end: String,
    trailer: Option<Vec<u8>>,
    stderr_done: bool,
    result: Option<(i32, String)>,
}

impl Markers {
    fn new(marker: &str) -> Self {
        Self {
            stdout: Scanner::new(format!("\n{marker} ")),
            stderr: Scanner::new(format!("\n{marker}_ERR\n")),
            end: format!("\n{marker}_END\n"),
            trailer: None,
            stderr_done: false,
            result: None,
        }
    }

    fn take_trailer(&mut self, bytes: &[u8]) {
        let Some(trailer) = self.trailer.as_mut() else {
            return;
        };
        trailer.extend_from_slice(bytes);
        let Some(at) = find(trailer, self.end.as_bytes()) else {
            return;
        };
        let text = String::from_utf8_lossy(&trailer[..at]).into_owned();
        let (code, cwd) = text.split_once(' ').unwrap_or((&text, ""));
        self.result = Some((code.trim().parse().unwrap_or(-1), cwd.to_owned()));
    }
}

impl Filter for Markers {
    fn stdout<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        if self.trailer.is_some() {
            self.take_trailer(chunk);
            return Cow::Borrowed(&[]);
        }
        let (out, rest) = self.stdout.feed(chunk);
        if let Some(rest) = rest {
            self.trailer = Some(Vec::new());
            self.take_trailer(&rest);
        }
        Cow::Owned(out)
    }

    fn stderr<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        if self.stderr_done {
            return Cow::Borrowed(&[]);
        }
        let (out, rest) = self.stderr.feed(chunk);
        self.stderr_done = rest.is_some();
        Cow::Owned(out)
    }

    fn done(&self) -> bool {
        self.result.is_some() && self.stderr_done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_filter(marker: &str, chunks: &[&[u8]]) -> (Vec<u8>, Markers) {
        let mut m = Markers::new(marker);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend_from_slice(&m.stdout(chunk));
        }
        (out, m)
    }

    #[test]
    fn trailer_split_anywhere_is_found_and_stripped() {
        let whole = b"hello\nworld\n__HANGAR_x 3 /workspace/a b\n__HANGAR_x_END\n";
        for split in 0..whole.len() {
            let (out, m) = run_filter("__HANGAR_x", &[&whole[..split], &whole[split..]]);
            assert_eq!(out, b"hello\nworld", "split at {split}");
            assert_eq!(m.result, Some((3, "/workspace/a b".to_owned())));
        }
    }

    #[test]
    fn lookalike_markers_pass_through() {
        let (out, m) = run_filter(
            "__HANGAR_abc",
            &[
                b"__HANGAR_abd 0 /x\n__HANGAR_ab 0\n",
                b"\n__HANGAR_abc 0 /w\n__HANGAR_abc_END\n",
            ],
        );
        assert_eq!(out, b"__HANGAR_abd 0 /x\n__HANGAR_ab 0\n");
        assert_eq!(m.result, Some((0, "/w".to_owned())));
    }

    #[test]
    fn stderr_marker_ends_stderr() {
        let mut m = Markers::new("__HANGAR_q");
        assert_eq!(&*m.stderr(b"oops\n\n__HANGAR_q_ERR\n"), b"oops\n");
        assert!(!m.done());
        let _ = m.stdout(b"\n__HANGAR_q 1 /\n__HANGAR_q_END\n");
        assert!(m.done());
    }

    #[test]
    fn wrapped_command_is_quoted_by_the_marker() {
        let script = wrap("echo 'EOF'\ncat <<EOF\nx\nEOF", "__HANGAR_n");
        assert!(script.starts_with("IFS= read -r -d '' __hangar_cmd <<'__HANGAR_n' || true\necho 'EOF'\n"));
        assert!(script.contains("\n__HANGAR_n\neval "));
    }

    #[test]
    fn session_names_are_checked() {
        assert!(valid_session("default"));
        assert!(!valid_session("../x"));
        assert!(!valid_session(""));
    }
}
