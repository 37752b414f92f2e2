//! The supervisor protocol: one Unix-socket connection per request, carrying frames of
//! `u32 length (big-endian) · u8 kind · payload`. Control frames carry JSON; output frames carry
//! raw bytes, so binary output needs no re-encoding. Closing the connection cancels the command.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::spec::ExecRequest;

/// Largest frame accepted in either direction.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// Protocol version, checked by `Ping`.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Control = 0,
    Stdout = 1,
    Stderr = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Host → supervisor, the first and only control frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Exec(ExecRequest),
    Shell {
        session: String,
        command: String,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Resource usage of the sandbox so far, as the supervisor sees it.
    Usage,
}

/// Supervisor → host control frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        version: u32,
        pid: u32,
    },
    Started {
        pid: u32,
    },
    /// `bytes` of this stream were dropped between the kept head and the tail that follows.
    Truncated {
        stream: Stream,
        bytes: u64,
    },
    Exit(ExitInfo),
    Usage(UsageInfo),
    Error {
        message: String,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code when the command exited normally.
    pub code: Option<i32>,
    /// Signal number when it was killed.
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Why the supervisor (not the command) ended it, in words for the model and the user.
    pub message: Option<String>,
    pub duration_ms: u64,
    /// Working directory after a shell command.
    pub cwd: Option<String>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInfo {
    pub processes: u64,
    pub sessions: u64,
    pub counters: BTreeMap<String, u64>,
}

/// One decoded frame.
#[derive(Debug)]
pub enum Frame {
    Control(Vec<u8>),
    Output(Stream, Vec<u8>),
}

pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: Kind,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(payload.len() + 1)
        .ok()
        .filter(|&n| n as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = kind as u8;
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    w.flush().await
}

pub async fn write_json<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    write_frame(w, Kind::Control, &bytes).await
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad frame length {len}"),
        ));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).await?;
    let mut payload = vec![0u8; len - 1];
    r.read_exact(&mut payload).await?;
    match kind[0] {
        0 => Ok(Some(Frame::Control(payload))),
        1 => Ok(Some(Frame::Output(Stream::Stdout, payload))),
        2 => Ok(Some(Frame::Output(Stream::Stderr, payload))),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad frame kind {other}"),
        )),
    }
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> std::io::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_json(&mut a, &Request::Ping).await.unwrap();
        write_frame(&mut a, Kind::Stderr, b"\x00\xffbinary")
            .await
            .unwrap();
        drop(a);
        let Some(Frame::Control(bytes)) = read_frame(&mut b).await.unwrap() else {
            panic!()
        };
        assert_eq!(decode::<Request>(&bytes).unwrap(), Request::Ping);
        let Some(Frame::Output(Stream::Stderr, out)) = read_frame(&mut b).await.unwrap() else {
            panic!()
        };
        assert_eq!(out, b"\x00\xffbinary");
        assert!(read_frame(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_and_unknown_frames_are_errors() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(read_frame(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 2, 9, 0]).await.unwrap();
        assert!(read_frame(&mut b).await.is_err());
    }
}
