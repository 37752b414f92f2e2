//! `Glob`: finds workspace files by name pattern, newest first.
//!
//! Files come from [`WorkspaceDir::walk`](hangar_sandbox::hostfs::WorkspaceDir::walk), which
//! never follows symlinks; the cache and VCS directories are left out.

use std::cmp::Reverse;
use std::time::SystemTime;

use async_trait::async_trait;
use globset::GlobBuilder;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fs_util;
use super::parse_input;
use crate::tool::{Tool, ToolContext, ToolError, ToolOutput, WORKSPACE_MOUNT, display_path, workspace_path};

/// Most paths returned.
const MAX_RESULTS: usize = 100;

/// Finds files by glob pattern.
pub struct Glob;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
}

#[async_trait]
impl Tool for Glob {
    fn name(&self) -> &str {
        "Glob"
    }

    fn description(&self) -> String {
        format!(
            "Finds files in the workspace by glob pattern, like \"**/*.py\" or \"src/**/*.ts\".\n\n\
             - The pattern is matched against paths relative to `path` (default /workspace). \
             `*` does not cross `/`: \"*.py\" matches only files directly in `path`, \
             \"**/*.py\" matches at any depth. `{{a,b}}` and `[abc]` are supported.\n\
             - Returns matching file paths, most recently modified first, at most {MAX_RESULTS}.\n\
             - Directories named {} are not searched, and symlinks are not followed.\n\
             - To search file contents use Grep.",
            fs_util::SKIPPED_DIRS.join(", ")
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "pattern": {
                    "type": "string",
                    "description": "The glob pattern to match file paths against."
                },
                "path": {
                    "type": "string",
                    "description": "The directory to search in (default /workspace)."
                }
            },
            "required": ["pattern"],
            "additionalProperties": false
        })
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: Input = parse_input(self.name(), input)?;
        let base = match input.path.as_deref() {
            Some(path) => workspace_path(path)?,
            None => None,
        };
        // A pattern under /workspace is matched against workspace-relative paths.
        let trimmed = input.pattern.trim();
        let (pattern, from_root) = match trimmed.strip_prefix(WORKSPACE_MOUNT) {
            Some(rest) if rest.starts_with('/') => (rest.trim_start_matches('/'), true),
            _ if trimmed.starts_with('/') => {
                return Err(ToolError::Failed(format!(
                    "pattern {trimmed:?} is outside the workspace; use a pattern relative to `path`, \
                     like \"**/*.py\""
                )));
            }
            _ => (trimmed.trim_start_matches("./"), false),
        };
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|err| ToolError::Failed(format!("invalid glob pattern {pattern:?}: {err}")))?
            .compile_matcher();

        let cancel = ctx.cancel.clone();
        let walk_base = base.clone();
        let mut found = fs_util::blocking(ctx, move |workspace| {
            fs_util::check_target(workspace, walk_base.as_ref(), false)?;
            let files = fs_util::walk_files(workspace, walk_base.as_ref(), &cancel)?;
            Ok(files
                .into_iter()
                .filter(|(path, _)| {
                    let candidate = if from_root {
                        path.as_str()
                    } else {
                        fs_util::relative_to(path, walk_base.as_ref())
                    };
                    matcher.is_match(candidate)
                })
                .map(|(path, metadata)| {
                    let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    (path, modified)
                })
                .collect::<Vec<_>>())
        })
        .await?;

        if found.is_empty() {
            return Ok(ToolOutput::text(format!(
                "No files found matching {pattern:?} in {}",
                display_path(base.as_ref())
            )));
        }
        found.sort_by(|a, b| Reverse(a.1).cmp(&Reverse(b.1)).then_with(|| a.0.cmp(&b.0)));
        let total = found.len();
        let mut out: Vec<String> = found
            .iter()
            .take(MAX_RESULTS)
            .map(|(path, _)| display_path(Some(path)))
            .collect();
        if total > MAX_RESULTS {
            out.push(format!(
                "(Showing the {MAX_RESULTS} most recently modified of {total} matching files; {} \
                 more were cut. Use a more specific pattern or path.)",
                total - MAX_RESULTS
            ));
        }
        Ok(ToolOutput::text(out.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::tools::test_support::TestWorkspace;

    fn set_age(ws: &TestWorkspace, path: &str, seconds_ago: u64) {
        let file = std::fs::File::options()
            .write(true)
            .open(ws.root.join(path))
            .unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(seconds_ago))
            .unwrap();
    }

    #[tokio::test]
    async fn matches_newest_first() {
        let ws = TestWorkspace::new();
        for (path, age) in [
            ("a.py", 30),
            ("src/b.py", 10),
            ("src/deep/c.py", 20),
            ("src/d.rs", 0),
        ] {
            ws.put(path, "x");
            set_age(&ws, path, age);
        }
        let text = ws.ok(&Glob, json!({"pattern": "**/*.py"})).await;
        assert_eq!(
            text,
            "/workspace/src/b.py\n/workspace/src/deep/c.py\n/workspace/a.py"
        );
        let text = ws.ok(&Glob, json!({"pattern": "*.py"})).await;
        assert_eq!(text, "/workspace/a.py");
        let text = ws
            .ok(&Glob, json!({"pattern": "*.py", "path": "/workspace/src"}))
            .await;
        assert_eq!(text, "/workspace/src/b.py");
        let text = ws
            .ok(&Glob, json!({"pattern": "/workspace/src/**/*.{py,rs}"}))
            .await;
        assert_eq!(
            text,
            "/workspace/src/d.rs\n/workspace/src/b.py\n/workspace/src/deep/c.py"
        );
        let text = ws.ok(&Glob, json!({"pattern": "**/*.java"})).await;
        assert_eq!(text, "No files found matching \"**/*.java\" in /workspace");
    }

    #[tokio::test]
    async fn caps_results() {
        let ws = TestWorkspace::new();
        for n in 0..105 {
            let path = format!("f{n:03}.txt");
            ws.put(&path, "x");
            set_age(&ws, &path, 1000 - n);
        }
        let text = ws.ok(&Glob, json!({"pattern": "**/*.txt"})).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 101);
        assert_eq!(lines[0], "/workspace/f104.txt");
        assert_eq!(lines[99], "/workspace/f005.txt");
        assert!(
            lines[100].contains("of 105 matching files; 5 more were cut"),
            "{}",
            lines[100]
        );
    }

    #[tokio::test]
    async fn skips_cache_dirs_and_symlinks() {
        let ws = TestWorkspace::new();
        ws.put("app.js", "x");
        ws.put("node_modules/lib/index.js", "x");
        ws.put(".git/hooks/pre-commit.js", "x");
        ws.link_secret("secret.js");
        std::os::unix::fs::symlink(&ws.outside, ws.root.join("outdir")).unwrap();
        let text = ws.ok(&Glob, json!({"pattern": "**/*"})).await;
        assert_eq!(text, "/workspace/app.js");
        // Asked for explicitly, a cache directory is searched.
        let text = ws
            .ok(&Glob, json!({"pattern": "**/*.js", "path": "node_modules"}))
            .await;
        assert_eq!(text, "/workspace/node_modules/lib/index.js");
        let error = ws.fails(&Glob, json!({"pattern": "*", "path": "outdir"})).await;
        assert!(error.contains("symlink"), "{error}");
        for path in ["../outside", "/tmp"] {
            ws.fails(&Glob, json!({"pattern": "*", "path": path})).await;
        }
        ws.fails(&Glob, json!({"pattern": "/etc/*"})).await;
        let error = ws.fails(&Glob, json!({"pattern": "a[", "path": "."})).await;
        assert!(error.contains("invalid glob"), "{error}");
        let error = ws.fails(&Glob, json!({"pattern": "*", "path": "app.js"})).await;
        assert!(error.contains("not a directory"), "{error}");
    }

    #[tokio::test]
    async fn cancellation_stops_the_walk() {
        let ws = TestWorkspace::new();
        ws.put("a.txt", "x");
        ws.ctx.cancel.cancel();
        let result = ws.call(&Glob, json!({"pattern": "*"})).await;
        assert!(matches!(result, Err(ToolError::Cancelled)), "{result:?}");
    }
}
