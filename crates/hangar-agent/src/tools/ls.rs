//! `LS`: a tree listing of a workspace directory.
//!
//! Directories are listed breadth-first with
//! [`WorkspaceDir::read_dir`](hangar_sandbox::hostfs::WorkspaceDir::read_dir), which reports
//! symlinks without following them, up to [`MAX_ENTRIES`] entries; the cache and VCS
//! directories below the listed one are left out.

use std::collections::{BTreeMap, VecDeque};

use async_trait::async_trait;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use hangar_sandbox::hostfs::{DirEntryInfo, EntryKind, RelPath, WorkspaceDir};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::fs_util;
use super::parse_input;
use crate::tool::{Tool, ToolContext, ToolError, ToolOutput, display_path, workspace_path};

/// Most entries listed.
const MAX_ENTRIES: usize = 1000;

/// Lists a directory as a tree.
pub struct Ls;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    path: String,
    #[serde(default)]
    ignore: Vec<String>,
}

#[async_trait]
impl Tool for Ls {
    fn name(&self) -> &str {
        "LS"
    }

    fn description(&self) -> String {
        format!(
            "Lists a workspace directory as a tree, recursively (at most {MAX_ENTRIES} entries).\n\n\
             - path is /workspace, a directory under it, or a path relative to it.\n\
             - Directories end with `/`; symlinks are shown but never followed.\n\
             - ignore takes glob patterns of names to leave out (e.g. [\"*.log\", \"dist\"]).\n\
             - {} below the listed directory are not shown.\n\
             - Prefer Glob and Grep to find files in large trees.",
            fs_util::SKIPPED_DIRS.join(", ")
        )
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "path": {
                    "type": "string",
                    "description": "The directory to list: /workspace/... or a path relative to /workspace."
                },
                "ignore": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Glob patterns of entries to leave out, matched against names and workspace-relative paths."
                }
            },
            "required": ["path"],
            "additionalProperties": false
        })
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: Input = parse_input(self.name(), input)?;
        let base = workspace_path(&input.path)?;
        let ignore = ignore_set(&input.ignore)?;
        let cancel = ctx.cancel.clone();
        let text = fs_util::blocking(ctx, move |workspace| {
            fs_util::check_target(workspace, base.as_ref(), false)?;
            let tree = collect(workspace, base.as_ref(), &ignore, &cancel)?;
            Ok(tree.render(base.as_ref()))
        })
        .await?;
        Ok(ToolOutput::text(text))
    }
}

fn ignore_set(patterns: &[String]) -> Result<GlobSet, ToolError> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|err| ToolError::Failed(format!("invalid ignore pattern {pattern:?}: {err}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|err| ToolError::Failed(format!("invalid ignore patterns: {err}")))
}

/// The entries found, by parent directory.
struct Tree {
    children: BTreeMap<Option<RelPath>, Vec<DirEntryInfo>>,
    truncated: bool,
}

/// Lists `base` breadth-first, so a deep subtree cannot crowd out the top levels.
fn collect(
    workspace: &WorkspaceDir,
    base: Option<&RelPath>,
    ignore: &GlobSet,
    cancel: &CancellationToken,
) -> Result<Tree, ToolError> {
    let mut tree = Tree {
        children: BTreeMap::new(),
        truncated: false,
    };
    let mut count = 0;
    let mut pending = VecDeque::from([base.cloned()]);
    while let Some(dir) = pending.pop_front() {
        if cancel.is_cancelled() {
            return Err(ToolError::Cancelled);
        }
        let entries = match workspace.read_dir(dir.as_ref()) {
            Ok(entries) => entries,
            Err(err) if dir.as_ref() == base => return Err(fs_util::io_failed(base, &err)),
            // A subdirectory that vanished or was swapped for a symlink meanwhile.
            Err(_) => continue,
        };
        let mut kept = Vec::new();
        for entry in entries {
            let Ok(path) = (match &dir {
                Some(dir) => dir.join(&entry.name),
                None => RelPath::parse(&entry.name),
            }) else {
                continue;
            };
            let is_dir = entry.kind == EntryKind::Dir;
            if (is_dir && fs_util::is_skipped_dir(&entry.name))
                || ignore.is_match(&entry.name)
                || ignore.is_match(path.as_str())
            {
                continue;
            }
            if count == MAX_ENTRIES {
                tree.truncated = true;
                break;
            }
            count += 1;
            if is_dir {
                pending.push_back(Some(path));
            }
            kept.push(entry);
        }
        tree.children.insert(dir, kept);
        if tree.truncated {
            break;
        }
    }
    Ok(tree)
}

impl Tree {
    fn render(&self, base: Option<&RelPath>) -> String {
        let mut out = format!("- {}/\n", display_path(base));
        self.render_dir(base, 1, &mut out);
        if self.children.get(&base.cloned()).is_some_and(Vec::is_empty) {
            out.push_str("  (empty directory)\n");
        }
        if self.truncated {
            out.push_str(&format!(
                "(Listing cut at {MAX_ENTRIES} entries. LS a subdirectory, or use Glob and Grep, to \
                 see more.)\n"
            ));
        }
        out
    }

    fn render_dir(&self, dir: Option<&RelPath>, depth: usize, out: &mut String) {
        let Some(entries) = self.children.get(&dir.cloned()) else {
            return;
        };
        let indent = "  ".repeat(depth);
        for entry in entries {
            match entry.kind {
                EntryKind::Dir => {
                    out.push_str(&format!("{indent}- {}/\n", entry.name));
                    let child = match dir {
                        Some(dir) => dir.join(&entry.name).ok(),
                        None => RelPath::parse(&entry.name).ok(),
                    };
                    if let Some(child) = child {
                        self.render_dir(Some(&child), depth + 1, out);
                    }
                }
                EntryKind::File => out.push_str(&format!("{indent}- {}\n", entry.name)),
                EntryKind::Symlink => {
                    out.push_str(&format!("{indent}- {} -> (symlink, not followed)\n", entry.name));
                }
                EntryKind::Other => out.push_str(&format!("{indent}- {} (special file)\n", entry.name)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::tools::test_support::{SECRET, TestWorkspace};

    #[tokio::test]
    async fn lists_a_tree() {
        let ws = TestWorkspace::new();
        ws.put("README.md", "x");
        ws.put("src/main.rs", "x");
        ws.put("src/util/mod.rs", "x");
        ws.put("node_modules/pkg/index.js", "x");
        ws.put(".git/HEAD", "x");
        ws.put("build.log", "x");
        std::fs::create_dir(ws.root.join("empty")).unwrap();
        ws.link_secret("evil");
        std::os::unix::fs::symlink(&ws.outside, ws.root.join("outdir")).unwrap();
        let text = ws.ok(&Ls, json!({"path": "/workspace"})).await;
        assert_eq!(
            text,
            "- /workspace/\n\
             \x20 - README.md\n\
             \x20 - build.log\n\
             \x20 - empty/\n\
             \x20 - evil -> (symlink, not followed)\n\
             \x20 - outdir -> (symlink, not followed)\n\
             \x20 - src/\n\
             \x20   - main.rs\n\
             \x20   - util/\n\
             \x20     - mod.rs\n"
        );
        assert!(!text.contains("secret"));
        let text = ws
            .ok(&Ls, json!({"path": "src", "ignore": ["util", "*.md"]}))
            .await;
        assert_eq!(text, "- /workspace/src/\n  - main.rs\n");
        let text = ws.ok(&Ls, json!({"path": "node_modules"})).await;
        assert_eq!(text, "- /workspace/node_modules/\n  - pkg/\n    - index.js\n");
        let text = ws.ok(&Ls, json!({"path": "empty"})).await;
        assert_eq!(text, "- /workspace/empty/\n  (empty directory)\n");
    }

    #[tokio::test]
    async fn caps_entries_breadth_first() {
        let ws = TestWorkspace::new();
        for n in 0..1100 {
            ws.put(&format!("deep/f{n:04}"), "x");
        }
        ws.put("top.txt", "x");
        let text = ws.ok(&Ls, json!({"path": "."})).await;
        assert!(text.contains("  - top.txt\n"), "top level is listed first");
        assert_eq!(
            text.lines()
                .filter(|line| line.trim_start().starts_with("- f"))
                .count(),
            998
        );
        assert!(text.ends_with(
            "(Listing cut at 1000 entries. LS a subdirectory, or use Glob and Grep, to see more.)\n"
        ));
    }

    #[tokio::test]
    async fn refuses_symlinks_files_and_outside_paths() {
        let ws = TestWorkspace::new();
        ws.put("file.txt", "x");
        std::os::unix::fs::symlink(&ws.outside, ws.root.join("outdir")).unwrap();
        let error = ws.fails(&Ls, json!({"path": "outdir"})).await;
        assert!(error.contains("symlink"), "{error}");
        let error = ws.fails(&Ls, json!({"path": "file.txt"})).await;
        assert!(error.contains("not a directory"), "{error}");
        for path in ["../outside", "/tmp", "outdir/x"] {
            let error = ws.fails(&Ls, json!({"path": path})).await;
            assert!(!error.contains(SECRET), "{error}");
        }
        ws.fails(&Ls, json!({"path": ".", "ignore": ["a["]})).await;
    }
}
