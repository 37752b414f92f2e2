//! `Read`: shows a workspace file to the model — text in `cat -n` style, a page at a time, or
//! an image as image content.
//!
//! Reading a file records it in the run's [`RunState`](crate::RunState), which `Write` and
//! `Edit` require before they change an existing file.

use async_trait::async_trait;
use base64::Engine as _;
use hangar_llm::{ImageSource, ToolResultContent};
use serde::Deserialize;
use serde_json::{Value, json};

use super::fs_util::{self, MAX_TEXT_BYTES};
use super::parse_input;
use crate::tool::{Tool, ToolContext, ToolError, ToolOutput, display_path, workspace_file};

/// Lines shown when no `limit` is given.
const DEFAULT_LIMIT: usize = 2000;
/// Largest image returned.
const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;
/// Binary files are recognised by a NUL byte in this many leading bytes.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;
/// The numbered text returned stops after about this many bytes, whatever the limit.
const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// Reads a file from the workspace.
pub struct Read;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    file_path: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

#[async_trait]
impl Tool for Read {
    fn name(&self) -> &str {
        "Read"
    }

    fn description(&self) -> String {
        format!(
            "Reads a file from the workspace (/workspace).\n\n\
             - file_path is a path under /workspace or relative to it.\n\
             - Text is returned in `cat -n` format: each line prefixed by its line number and a \
             tab. The prefix is not part of the file; never include it in Edit's old_string.\n\
             - By default up to {DEFAULT_LIMIT} lines from the start are returned; for longer \
             files pass offset (the 1-based line to start at) and limit (how many lines).\n\
             - Lines longer than {} characters are truncated.\n\
             - PNG, JPEG, GIF and WebP images (up to 5 MiB) are returned as images you can see.\n\
             - Other binary files and text files over 10 MiB are refused; use Grep or Bash for \
             those.\n\
             - Use LS for directories. You must Read an existing file before you Edit or \
             overwrite it.",
            fs_util::MAX_LINE_CHARS
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "file_path": {
                    "type": "string",
                    "description": "The file to read: /workspace/... or a path relative to /workspace."
                },
                "offset": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "The line number to start reading from (1-based). Only for files too long to read at once."
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "The number of lines to read. Only for files too long to read at once."
                }
            },
            "required": ["file_path"],
            "additionalProperties": false
        })
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: Input = parse_input(self.name(), input)?;
        let path = workspace_file(&input.file_path)?;
        let shown = display_path(Some(&path));
        let image = image_extension(path.file_name());
        let max_bytes = if image { MAX_IMAGE_BYTES } else { MAX_TEXT_BYTES };
        let rel = path.clone();
        let bytes = fs_util::blocking(ctx, move |workspace| {
            workspace.read(&rel, max_bytes).map_err(|err| match err.kind() {
                std::io::ErrorKind::FileTooLarge => too_large(&display_path(Some(&rel)), image),
                _ => fs_util::io_failed(Some(&rel), &err),
            })
        })
        .await?;

        let output = if image {
            read_image(&shown, &bytes)?
        } else {
            ToolOutput::text(read_text(&shown, &bytes, input.offset, input.limit)?)
        };
        ctx.run.mark_read(&path);
        Ok(output)
    }
}

fn too_large(shown: &str, image: bool) -> ToolError {
    if image {
        ToolError::Failed(format!("{shown} is larger than 5 MiB, the limit for images"))
    } else {
        ToolError::Failed(format!(
            "{shown} is larger than 10 MiB, the limit for Read; search it with Grep, or look at \
             parts of it with Bash (head, tail, sed -n)"
        ))
    }
}

fn image_extension(name: &str) -> bool {
    let Some((_, extension)) = name.rsplit_once('.') else {
        return false;
    };
    ["png", "jpg", "jpeg", "gif", "webp"]
        .iter()
        .any(|known| extension.eq_ignore_ascii_case(known))
}

/// The media type of an image, from its leading bytes (the API rejects an image whose bytes do
/// not match its declared type, which would fail the whole request).
fn image_media_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn read_image(shown: &str, bytes: &[u8]) -> Result<ToolOutput, ToolError> {
    let media_type = image_media_type(bytes).ok_or_else(|| {
        ToolError::Failed(format!(
            "{shown} is not a valid PNG, JPEG, GIF or WebP image (its content does not start \
             like one)"
        ))
    })?;
    Ok(ToolOutput {
        content: vec![ToolResultContent::Image {
            source: ImageSource {
                media_type: media_type.to_owned(),
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
        }],
        is_error: false,
    })
}

fn read_text(
    shown: &str,
    bytes: &[u8],
    offset: Option<u64>,
    limit: Option<u64>,
) -> Result<String, ToolError> {
    if bytes.is_empty() {
        return Ok(format!("{shown} exists but is empty."));
    }
    let head = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
    if head.starts_with(b"%PDF-") || head.contains(&0) {
        return Err(ToolError::Failed(format!(
            "{shown} is a binary file; Read shows text files and PNG, JPEG, GIF or WebP images. \
             Inspect it with Bash instead (file, xxd, strings, or a converter such as pdftotext)"
        )));
    }
    let text = String::from_utf8_lossy(bytes);
    let total = text.lines().count();
    let start = usize::try_from(offset.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
    if start > total {
        return Err(ToolError::Failed(format!(
            "offset {start} is past the end of {shown}, which has {}",
            fs_util::plural(total, "line")
        )));
    }
    let limit = limit.map_or(DEFAULT_LIMIT, |n| usize::try_from(n.max(1)).unwrap_or(usize::MAX));
    let mut out = String::new();
    let mut next = start;
    for (index, line) in text.lines().enumerate().skip(start - 1).take(limit) {
        if out.len() >= MAX_OUTPUT_BYTES {
            break;
        }
        fs_util::push_numbered(&mut out, index + 1, line);
        next = index + 2;
    }
    let remaining = total + 1 - next;
    if remaining > 0 {
        out.push_str(&format!(
            "… {} more {}; use offset={next} to read further\n",
            remaining,
            if remaining == 1 { "line" } else { "lines" }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::tools::test_support::{SECRET, TestWorkspace, only_text};

    fn numbered(lines: &[(usize, &str)]) -> String {
        lines
            .iter()
            .map(|(n, line)| format!("{n:>6}\t{line}\n"))
            .collect()
    }

    #[tokio::test]
    async fn reads_text_with_line_numbers_and_marks_it_read() {
        let ws = TestWorkspace::new();
        ws.put("src/a.txt", "alpha\nbeta\r\n\ngamma");
        let out = ws
            .call(&Read, json!({"file_path": "/workspace/src/a.txt"}))
            .await
            .unwrap();
        assert_eq!(
            only_text(&out),
            numbered(&[(1, "alpha"), (2, "beta"), (3, ""), (4, "gamma")])
        );
        let path = hangar_sandbox::hostfs::RelPath::parse("src/a.txt").unwrap();
        assert!(ws.ctx.run.was_read(&path));
        // Relative paths work the same.
        assert_eq!(
            ws.ok(&Read, json!({"file_path": "src/a.txt"})).await,
            only_text(&out)
        );
    }

    #[tokio::test]
    async fn offset_and_limit_page_through_the_file() {
        let ws = TestWorkspace::new();
        let content: String = (1..=10).map(|n| format!("line {n}\n")).collect();
        ws.put("ten.txt", &content);
        let text = ws
            .ok(&Read, json!({"file_path": "ten.txt", "offset": 3, "limit": 2}))
            .await;
        assert_eq!(
            text,
            numbered(&[(3, "line 3"), (4, "line 4")]) + "… 6 more lines; use offset=5 to read further\n"
        );
        let tail = ws.ok(&Read, json!({"file_path": "ten.txt", "offset": 10})).await;
        assert_eq!(tail, numbered(&[(10, "line 10")]));
        let error = ws
            .fails(&Read, json!({"file_path": "ten.txt", "offset": 11}))
            .await;
        assert!(error.contains("has 10 lines"), "{error}");
    }

    #[tokio::test]
    async fn default_limit_and_long_lines() {
        let ws = TestWorkspace::new();
        let content: String = (1..=2003).map(|n| format!("{n}\n")).collect();
        ws.put("long.txt", &content);
        let text = ws.ok(&Read, json!({"file_path": "long.txt"})).await;
        assert_eq!(text.lines().count(), 2001);
        assert!(
            text.ends_with("… 3 more lines; use offset=2001 to read further\n"),
            "{text}"
        );
        ws.put("wide.txt", "x".repeat(2500));
        let text = ws.ok(&Read, json!({"file_path": "wide.txt"})).await;
        assert!(text.contains("… [line truncated, 500 more characters]"), "{text}");
        assert_eq!(text.matches('x').count(), 2000);
    }

    #[tokio::test]
    async fn empty_and_missing_files() {
        let ws = TestWorkspace::new();
        ws.put("empty.txt", "");
        let text = ws.ok(&Read, json!({"file_path": "empty.txt"})).await;
        assert_eq!(text, "/workspace/empty.txt exists but is empty.");
        let error = ws.fails(&Read, json!({"file_path": "nope.txt"})).await;
        assert_eq!(error, "/workspace/nope.txt does not exist");
        std::fs::create_dir(ws.root.join("dir")).unwrap();
        let error = ws.fails(&Read, json!({"file_path": "dir"})).await;
        assert!(error.contains("is a directory"), "{error}");
    }

    #[tokio::test]
    async fn images_come_back_as_image_content() {
        let ws = TestWorkspace::new();
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR rest".to_vec();
        ws.put("pic.PNG", &png);
        let out = ws.call(&Read, json!({"file_path": "pic.PNG"})).await.unwrap();
        let expected = ToolResultContent::Image {
            source: ImageSource {
                media_type: "image/png".to_owned(),
                data: base64::engine::general_purpose::STANDARD.encode(&png),
            },
        };
        assert_eq!(out.content, vec![expected]);
        // The content decides the type, not the extension.
        ws.put("photo.png", b"\xff\xd8\xff\xe0 jpeg");
        let out = ws.call(&Read, json!({"file_path": "photo.png"})).await.unwrap();
        assert!(
            matches!(&out.content[0], ToolResultContent::Image { source } if source.media_type == "image/jpeg")
        );
        ws.put("fake.jpg", "not an image");
        let error = ws.fails(&Read, json!({"file_path": "fake.jpg"})).await;
        assert!(error.contains("not a valid"), "{error}");
        ws.put("huge.gif", vec![b'G'; 5 * 1024 * 1024 + 1]);
        let error = ws.fails(&Read, json!({"file_path": "huge.gif"})).await;
        assert!(error.contains("5 MiB"), "{error}");
    }

    #[tokio::test]
    async fn binary_and_oversized_files_are_refused() {
        let ws = TestWorkspace::new();
        ws.put("prog.bin", b"\x7fELF\x02\x01\x01\0\0\0");
        let error = ws.fails(&Read, json!({"file_path": "prog.bin"})).await;
        assert!(error.contains("binary file"), "{error}");
        ws.put("big.log", vec![b'a'; 10 * 1024 * 1024 + 1]);
        let error = ws.fails(&Read, json!({"file_path": "big.log"})).await;
        assert!(error.contains("larger than 10 MiB"), "{error}");
        let path = hangar_sandbox::hostfs::RelPath::parse("prog.bin").unwrap();
        assert!(!ws.ctx.run.was_read(&path));
    }

    #[tokio::test]
    async fn symlinks_and_paths_outside_are_refused() {
        let ws = TestWorkspace::new();
        ws.link_secret("evil.txt");
        std::os::unix::fs::symlink(&ws.outside, ws.root.join("outdir")).unwrap();
        for path in [
            "evil.txt",
            "/workspace/evil.txt",
            "outdir/secret",
            "../outside/secret",
            "/etc/passwd",
            "/workspace/../outside/secret",
        ] {
            let error = ws.fails(&Read, json!({"file_path": path})).await;
            assert!(!error.contains(SECRET), "{path}: {error}");
        }
        let error = ws.fails(&Read, json!({"file_path": "evil.txt"})).await;
        assert!(error.contains("symlink"), "{error}");
        let error = ws.fails(&Read, json!({"file_path": "/etc/passwd"})).await;
        assert!(error.contains("outside the workspace"), "{error}");
    }
}
