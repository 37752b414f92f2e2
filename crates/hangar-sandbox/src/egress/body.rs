//! The request body: copied to the origin exactly as its head frames it (`Content-Length` or
//! chunked), so nothing the client pipelines behind it ever reaches the origin.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::HEAD_LIMIT;

/// Longest line accepted inside a chunked request body (chunk sizes, trailers).
const BODY_LINE_LIMIT: usize = 4096;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    None,
    Length(u64),
    Chunked,
}

/// Copies exactly the request body (as framed by `body`) from `reader` to `writer`.
pub(super) async fn forward_body<R, W>(reader: &mut R, writer: &mut W, body: Body) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match body {
        Body::None => {}
        Body::Length(length) => copy_exact(reader, writer, length).await?,
        Body::Chunked => forward_chunked(reader, writer).await?,
    }
    writer.flush().await
}

async fn copy_exact<R, W>(reader: &mut R, writer: &mut W, length: u64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let copied = tokio::io::copy(&mut (&mut *reader).take(length), writer).await?;
    if copied < length {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client closed inside the request body",
        ));
    }
    Ok(())
}

/// Forwards a chunked body verbatim, stopping after the last chunk and the trailer section.
async fn forward_chunked<R, W>(reader: &mut R, writer: &mut W) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let line = read_crlf_line(reader, BODY_LINE_LIMIT).await?;
        let size = parse_chunk_size(&line)?;
        writer.write_all(&line).await?;
        if size == 0 {
            break;
        }
        copy_exact(reader, writer, size).await?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).await?;
        if &crlf != b"\r\n" {
            return Err(invalid_body("chunk not followed by CRLF"));
        }
        writer.write_all(&crlf).await?;
    }
    let mut trailer_bytes = 0;
    loop {
        let line = read_crlf_line(reader, BODY_LINE_LIMIT).await?;
        trailer_bytes += line.len();
        if trailer_bytes > HEAD_LIMIT {
            return Err(invalid_body("trailer section too large"));
        }
        writer.write_all(&line).await?;
        if line == b"\r\n" {
            return Ok(());
        }
    }
}

/// One line ending in CRLF, at most `limit` bytes.
async fn read_crlf_line<R: AsyncBufRead + Unpin>(reader: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    (&mut *reader)
        .take(limit as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if line.ends_with(b"\r\n") {
        Ok(line)
    } else {
        Err(invalid_body("malformed line in chunked body"))
    }
}

/// `1a;ext=1\r\n` → 26.
fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let size = line.split(|&b| b == b';').next().unwrap_or_default();
    let size = size.trim_ascii();
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(invalid_body("malformed chunk size"));
    }
    let size = std::str::from_utf8(size).map_err(|_| invalid_body("malformed chunk size"))?;
    u64::from_str_radix(size, 16).map_err(|_| invalid_body("malformed chunk size"))
}

fn invalid_body(detail: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

#[cfg(test)]
mod tests {
    use tokio::io::BufReader;

    use super::*;

    #[tokio::test]
    async fn chunked_bodies_are_delimited() {
        let input =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET http://next.test/ HTTP/1.1\r\n\r\n";
        let mut reader = BufReader::new(&input[..]);
        let mut out = Vec::new();
        forward_body(&mut reader, &mut out, Body::Chunked).await.unwrap();
        assert_eq!(out, b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n");

        for bad in [
            &b"zz\r\n"[..],
            b"4\r\nWikiXX",
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWi",
            b"10000000000000000\r\n",
        ] {
            let mut reader = BufReader::new(bad);
            assert!(
                forward_body(&mut reader, &mut Vec::new(), Body::Chunked)
                    .await
                    .is_err(),
                "{bad:?}"
            );
        }
        let mut reader = BufReader::new(&b"abc"[..]);
        assert!(
            forward_body(&mut reader, &mut Vec::new(), Body::Length(4))
                .await
                .is_err()
        );
    }
}
