//! Helpers the file tools share: running blocking [`WorkspaceDir`] calls off the async runtime,
//! turning I/O errors into messages the model can act on, walking the workspace without the
//! cache and VCS directories, and `cat -n` style line numbering.
//!
//! Every workspace access of the file tools goes through [`WorkspaceDir`], which never follows
//! symlinks and never leaves the workspace; nothing here touches workspace paths with `std::fs`.

use std::fs::Metadata;
use std::io;
use std::sync::Arc;

use hangar_sandbox::hostfs::{RelPath, WorkspaceDir};
use tokio_util::sync::CancellationToken;

use crate::tool::{RunState, ToolContext, ToolError, display_path};

/// Directories the searching and listing tools never descend into (below the directory they
/// were asked about).
pub(crate) const SKIPPED_DIRS: [&str; 6] = [
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    ".mypy_cache",
    ".pytest_cache",
];

/// Largest text file `Read` and `Edit` load.
pub(crate) const MAX_TEXT_BYTES: u64 = 10 * 1024 * 1024;

/// Lines longer than this many characters are cut when shown.
pub(crate) const MAX_LINE_CHARS: usize = 2000;

pub(crate) fn is_skipped_dir(name: &str) -> bool {
    SKIPPED_DIRS.contains(&name)
}

/// Runs `f` with the workspace on the blocking thread pool.
pub(crate) async fn blocking<T, F>(ctx: &ToolContext, f: F) -> Result<T, ToolError>
where
    T: Send + 'static,
    F: FnOnce(&WorkspaceDir) -> Result<T, ToolError> + Send + 'static,
{
    let workspace = Arc::clone(ctx.workspace());
    tokio::task::spawn_blocking(move || f(&workspace))
        .await
        .map_err(|err| ToolError::Fatal(format!("workspace file task failed: {err}")))?
}

/// An I/O error on `path` as a message for the model. Only a host that cannot do safe
/// workspace access at all (no `openat2`) is fatal.
pub(crate) fn io_failed(path: Option<&RelPath>, err: &io::Error) -> ToolError {
    let shown = display_path(path);
    let message = match err.kind() {
        io::ErrorKind::NotFound => format!("{shown} does not exist"),
        io::ErrorKind::IsADirectory => {
            format!("{shown} is a directory, not a file; use LS to list it")
        }
        io::ErrorKind::NotADirectory => {
            format!("{shown}: a component of the path is a file, not a directory")
        }
        io::ErrorKind::PermissionDenied => format!(
            "cannot access {shown}: {err} (symlinks in the workspace are never followed by the file \
             tools; use the real path)"
        ),
        io::ErrorKind::InvalidInput => {
            format!("{shown} is not a regular file (a fifo, socket or device): {err}")
        }
        io::ErrorKind::Unsupported => return ToolError::Fatal(err.to_string()),
        _ => format!("cannot access {shown}: {err}"),
    };
    ToolError::Failed(message)
}

/// Whether the run has read or written `path` (what `Write` and `Edit` require of an existing
/// file).
pub(crate) fn seen_in_run(run: &RunState, path: &RelPath) -> bool {
    run.was_read(path) || run.was_written(path)
}

/// What a directory argument (`None`: the workspace root) turned out to be.
pub(crate) enum Target {
    Dir,
    File,
}

/// Checks that `path` is a directory or (if `allow_file`) a regular file, without following
/// symlinks.
pub(crate) fn check_target(
    workspace: &WorkspaceDir,
    path: Option<&RelPath>,
    allow_file: bool,
) -> Result<Target, ToolError> {
    let Some(rel) = path else {
        return Ok(Target::Dir);
    };
    let metadata = workspace.metadata(rel).map_err(|err| io_failed(path, &err))?;
    let kind = metadata.file_type();
    let shown = display_path(path);
    if kind.is_dir() {
        Ok(Target::Dir)
    } else if kind.is_file() && allow_file {
        Ok(Target::File)
    } else if kind.is_file() {
        Err(ToolError::Failed(format!("{shown} is a file, not a directory")))
    } else if kind.is_symlink() {
        Err(ToolError::Failed(format!(
            "{shown} is a symlink; the file tools never follow symlinks, use the path it points to"
        )))
    } else {
        Err(ToolError::Failed(format!(
            "{shown} is not a regular file or directory"
        )))
    }
}

/// Whether `path` is `base` or lies beneath it (everything lies beneath the root, `None`).
pub(crate) fn is_within(path: &RelPath, base: Option<&RelPath>) -> bool {
    match base {
        None => true,
        Some(base) => path
            .as_str()
            .strip_prefix(base.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
    }
}

/// `path` relative to `base` (`path` must be within it); empty for `base` itself.
pub(crate) fn relative_to<'a>(path: &'a RelPath, base: Option<&RelPath>) -> &'a str {
    match base {
        None => path.as_str(),
        Some(base) => path
            .as_str()
            .strip_prefix(base.as_str())
            .map_or(path.as_str(), |rest| rest.trim_start_matches('/')),
    }
}

/// Every regular file beneath `base` (the root for `None`), sorted by path, leaving out the
/// [`SKIPPED_DIRS`] below `base` and never following symlinks. Stops early, with
/// [`ToolError::Cancelled`], once `cancel` fires.
pub(crate) fn walk_files(
    workspace: &WorkspaceDir,
    base: Option<&RelPath>,
    cancel: &CancellationToken,
) -> Result<Vec<(RelPath, Metadata)>, ToolError> {
    let skip = |path: &RelPath, is_dir: bool| {
        if cancel.is_cancelled() {
            // Skipping everything ends the walk quickly; the result is thrown away below.
            return true;
        }
        if !is_within(path, base) {
            // Keep descending only towards `base`.
            let towards_base = is_dir && base.is_some_and(|base| is_within(base, Some(path)));
            return !towards_base;
        }
        is_dir && Some(path) != base && is_skipped_dir(path.file_name())
    };
    let files = workspace.walk(&skip).map_err(|err| io_failed(base, &err))?;
    if cancel.is_cancelled() {
        return Err(ToolError::Cancelled);
    }
    Ok(files)
}

/// Appends one line in `cat -n` style: the number right-aligned to width 6, a tab, the line
/// (cut at [`MAX_LINE_CHARS`] characters), a newline.
pub(crate) fn push_numbered(out: &mut String, number: usize, line: &str) {
    out.push_str(&format!("{number:>6}\t"));
    push_truncated(out, line, MAX_LINE_CHARS);
    out.push('\n');
}

/// Appends `line`, cut at `max_chars` characters with a note saying how much was left out.
pub(crate) fn push_truncated(out: &mut String, line: &str, max_chars: usize) {
    match line.char_indices().nth(max_chars) {
        None => out.push_str(line),
        Some((cut, _)) => {
            out.push_str(&line[..cut]);
            let rest = line[cut..].chars().count();
            out.push_str(&format!("… [line truncated, {rest} more characters]"));
        }
    }
}

/// A count with its noun, singular or plural (`1 line`, `3 lines`).
pub(crate) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::parse(s).unwrap()
    }

    #[test]
    fn within_and_relative() {
        assert!(is_within(&rel("a/b"), None));
        assert!(is_within(&rel("a/b"), Some(&rel("a"))));
        assert!(is_within(&rel("a"), Some(&rel("a"))));
        assert!(!is_within(&rel("ab/c"), Some(&rel("a"))));
        assert_eq!(relative_to(&rel("a/b/c"), Some(&rel("a"))), "b/c");
        assert_eq!(relative_to(&rel("a/b/c"), None), "a/b/c");
    }

    #[test]
    fn numbering_and_truncation() {
        let mut out = String::new();
        push_numbered(&mut out, 7, "hello");
        assert_eq!(out, "     7\thello\n");
        let mut out = String::new();
        push_truncated(&mut out, "héllo wörld", 5);
        assert_eq!(out, "héllo… [line truncated, 6 more characters]");
        assert_eq!(plural(1, "line"), "1 line");
        assert_eq!(plural(0, "line"), "0 lines");
    }
}
