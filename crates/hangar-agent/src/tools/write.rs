//! `Write`: creates or replaces a workspace file with the given content.
//!
//! Overwriting an existing file requires having read (or written) it earlier in the run, so the
//! model cannot clobber a file it has never looked at.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fs_util;
use super::parse_input;
use crate::tool::{Tool, ToolContext, ToolError, ToolOutput, display_path, workspace_file};

/// Writes a whole file.
pub struct Write;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    file_path: String,
    content: String,
}

#[async_trait]
impl Tool for Write {
    fn name(&self) -> &str {
        "Write"
    }

    fn description(&self) -> String {
        "Writes a file in the workspace (/workspace), replacing it if it exists.\n\n\
         - file_path is a path under /workspace or relative to it; missing parent directories \
         are created.\n\
         - If the file already exists you must Read it first, or the write is refused.\n\
         - Prefer Edit or MultiEdit to change part of an existing file; use Write for new \
         files or complete rewrites."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "file_path": {
                    "type": "string",
                    "description": "The file to write: /workspace/... or a path relative to /workspace."
                },
                "content": {
                    "type": "string",
                    "description": "The complete new content of the file."
                }
            },
            "required": ["file_path", "content"],
            "additionalProperties": false
        })
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: Input = parse_input(self.name(), input)?;
        let path = workspace_file(&input.file_path)?;
        let shown = display_path(Some(&path));
        let seen = fs_util::seen_in_run(&ctx.run, &path);
        let rel = path.clone();
        let content = input.content;
        let (existed, content) = fs_util::blocking(ctx, move |workspace| {
            let existed = match workspace.metadata(&rel) {
                Ok(metadata) if metadata.is_file() => true,
                Ok(metadata) if metadata.is_dir() => {
                    return Err(ToolError::Failed(format!(
                        "{} is a directory",
                        display_path(Some(&rel))
                    )));
                }
                Ok(_) => {
                    return Err(ToolError::Failed(format!(
                        "refusing to write {}: it is a symlink or special file, not a regular file",
                        display_path(Some(&rel))
                    )));
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
                Err(err) => return Err(fs_util::io_failed(Some(&rel), &err)),
            };
            if existed && !seen {
                return Err(ToolError::Failed(format!(
                    "{} already exists and has not been read in this run; Read it first, then \
                     Write (or use Edit to change part of it)",
                    display_path(Some(&rel))
                )));
            }
            workspace
                .write(&rel, content.as_bytes())
                .map_err(|err| fs_util::io_failed(Some(&rel), &err))?;
            Ok((existed, content))
        })
        .await?;
        ctx.run.mark_written(&path);
        ctx.run.mark_read(&path);
        let verb = if existed { "Updated" } else { "Created" };
        Ok(ToolOutput::text(format!(
            "{verb} {shown} ({}, {})",
            fs_util::plural(content.len(), "byte"),
            fs_util::plural(content.lines().count(), "line")
        )))
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::tools::read::Read;
    use crate::tools::test_support::{SECRET, TestWorkspace};

    #[tokio::test]
    async fn creates_files_and_parents() {
        let ws = TestWorkspace::new();
        let text = ws
            .ok(
                &Write,
                json!({"file_path": "/workspace/a/b/new.txt", "content": "one\ntwo\n"}),
            )
            .await;
        assert_eq!(text, "Created /workspace/a/b/new.txt (8 bytes, 2 lines)");
        assert_eq!(ws.get("a/b/new.txt"), "one\ntwo\n");
        // Written files may be written again and edited without a Read.
        let text = ws
            .ok(&Write, json!({"file_path": "a/b/new.txt", "content": "x"}))
            .await;
        assert_eq!(text, "Updated /workspace/a/b/new.txt (1 byte, 1 line)");
        assert_eq!(ws.get("a/b/new.txt"), "x");
    }

    #[tokio::test]
    async fn existing_files_must_be_read_first() {
        let ws = TestWorkspace::new();
        ws.put("notes.md", "keep me");
        let error = ws
            .fails(&Write, json!({"file_path": "notes.md", "content": "gone"}))
            .await;
        assert!(error.contains("Read it first"), "{error}");
        assert_eq!(ws.get("notes.md"), "keep me");
        ws.ok(&Read, json!({"file_path": "notes.md"})).await;
        ws.ok(&Write, json!({"file_path": "notes.md", "content": "replaced"}))
            .await;
        assert_eq!(ws.get("notes.md"), "replaced");
    }

    #[tokio::test]
    async fn never_writes_through_symlinks_or_outside() {
        let ws = TestWorkspace::new();
        ws.link_secret("evil.txt");
        ws.mark_read("evil.txt");
        std::os::unix::fs::symlink(&ws.outside, ws.root.join("outdir")).unwrap();
        for path in [
            "evil.txt",
            "outdir/secret",
            "outdir/planted",
            "../outside/planted",
            "/tmp/planted",
        ] {
            ws.fails(&Write, json!({"file_path": path, "content": "pwned"}))
                .await;
        }
        assert_eq!(
            std::fs::read_to_string(ws.outside.join("secret")).unwrap(),
            SECRET
        );
        let outside: Vec<_> = std::fs::read_dir(&ws.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(outside, ["secret"]);
        assert!(
            std::fs::symlink_metadata(ws.root.join("evil.txt"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let error = ws
            .fails(&Write, json!({"file_path": "/workspace", "content": "x"}))
            .await;
        assert!(error.contains("not a file"), "{error}");
    }
}
