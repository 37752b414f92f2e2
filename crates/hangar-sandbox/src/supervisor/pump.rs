//! Streams a command's output to the host through the caps of [`output`](super::output).

use tokio::io::AsyncWrite;

use super::output::Capped;
use crate::wire::{self, ExitInfo, Kind, Reply, Stream};

pub struct Pump<W> {
    writer: W,
    stdout: Capped,
    stderr: Capped,
}

impl<W: AsyncWrite + Unpin> Pump<W> {
    pub fn new(writer: W, budget: usize) -> Self {
        Self {
            writer,
            stdout: Capped::new(budget),
            stderr: Capped::new(budget),
        }
    }

    pub async fn control(&mut self, reply: &Reply) -> std::io::Result<()> {
        wire::write_json(&mut self.writer, reply).await
    }

    /// Sends what the cap lets through now; keeps the rest for the tail.
    pub async fn output(&mut self, stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
        let (cap, kind) = match stream {
            Stream::Stdout => (&mut self.stdout, Kind::Stdout),
            Stream::Stderr => (&mut self.stderr, Kind::Stderr),
        };
        let now = cap.admit(bytes);
        if now.is_empty() {
            Ok(())
        } else {
            wire::write_frame(&mut self.writer, kind, now).await
        }
    }

    /// Sends each stream's tail (after a `Truncated` notice when bytes were dropped), then `Exit`.
    pub async fn finish(mut self, exit: ExitInfo) -> std::io::Result<()> {
        for (stream, kind, cap) in [
            (Stream::Stdout, Kind::Stdout, self.stdout),
            (Stream::Stderr, Kind::Stderr, self.stderr),
        ] {
            let (dropped, tail) = cap.finish();
            if dropped > 0 {
                wire::write_json(
                    &mut self.writer,
                    &Reply::Truncated {
                        stream,
                        bytes: dropped,
                    },
                )
                .await?;
            }
            if !tail.is_empty() {
                wire::write_frame(&mut self.writer, kind, &tail).await?;
            }
        }
        wire::write_json(&mut self.writer, &Reply::Exit(exit)).await
    }
}
