//! `Grep`: searches file contents with ripgrep's engine (the `grep` crates).
//!
//! Files are listed with [`WorkspaceDir::walk`](hangar_sandbox::hostfs::WorkspaceDir::walk) and
//! opened with `WorkspaceDir::open_file`, never by path, so symlinks are neither searched nor
//! followed. Binary files (a NUL byte) are skipped, as are the cache and VCS directories.

use std::cmp::Reverse;
use std::io;
use std::time::SystemTime;

use async_trait::async_trait;
use globset::{GlobBuilder, GlobMatcher};
use grep::regex::{RegexMatcher, RegexMatcherBuilder};
use grep::searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkContext, SinkMatch};
use hangar_sandbox::hostfs::{RelPath, WorkspaceDir};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::fs_util::{self, Target};
use super::parse_input;
use crate::tool::{Tool, ToolContext, ToolError, ToolOutput, display_path, workspace_path};

/// Lines or entries returned when no `head_limit` is given.
const DEFAULT_HEAD_LIMIT: usize = 250;
/// Matched lines are cut at this many characters.
const MAX_LINE_CHARS: usize = 500;

/// The `type` names understood, with their file extensions.
const FILE_TYPES: &[(&str, &[&str])] = &[
    ("c", &["c", "h"]),
    ("cpp", &["cpp", "cc", "cxx", "c++", "hpp", "hh", "hxx", "h"]),
    ("csv", &["csv"]),
    ("go", &["go"]),
    ("html", &["html", "htm"]),
    ("java", &["java"]),
    ("js", &["js", "mjs", "cjs", "jsx"]),
    ("json", &["json"]),
    ("md", &["md", "markdown"]),
    ("py", &["py", "pyi"]),
    ("rs", &["rs"]),
    ("toml", &["toml"]),
    ("ts", &["ts", "tsx", "mts", "cts"]),
    ("txt", &["txt"]),
    ("yaml", &["yaml", "yml"]),
];

/// Searches file contents by regular expression.
pub struct Grep;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutputMode {
    Content,
    #[default]
    FilesWithMatches,
    Count,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default, rename = "type")]
    file_type: Option<String>,
    #[serde(default)]
    output_mode: OutputMode,
    #[serde(default, rename = "-i")]
    case_insensitive: bool,
    #[serde(default, rename = "-n")]
    line_numbers: Option<bool>,
    #[serde(default, rename = "-A")]
    after: Option<u64>,
    #[serde(default, rename = "-B")]
    before: Option<u64>,
    #[serde(default, rename = "-C")]
    context: Option<u64>,
    #[serde(default)]
    multiline: bool,
    #[serde(default)]
    head_limit: Option<u64>,
}

#[async_trait]
impl Tool for Grep {
    fn name(&self) -> &str {
        "Grep"
    }

    fn description(&self) -> String {
        let types: Vec<&str> = FILE_TYPES.iter().map(|(name, _)| *name).collect();
        format!(
            "Searches file contents in the workspace with a regular expression (ripgrep syntax).\n\n\
             - pattern is a regex, e.g. \"log.*Error\" or \"fn\\s+\\w+\"; escape literal braces \
             (\"interface\\{{\\}}\").\n\
             - path is a file or directory (default /workspace). Narrow the files with glob \
             (\"*.js\", \"*.{{ts,tsx}}\"; without a `/` it matches file names) or type ({}).\n\
             - output_mode: \"files_with_matches\" (default) lists matching files, newest first; \
             \"content\" shows matching lines (with -n line numbers, on by default, and -A/-B/-C \
             context lines); \"count\" shows matches per file.\n\
             - -i: case-insensitive. multiline: true lets patterns span lines (`.` then matches \
             newlines too).\n\
             - Output is cut after head_limit lines or entries (default {DEFAULT_HEAD_LIMIT}).\n\
             - Binary files, symlinks and the directories {} are skipped.",
            types.join(", "),
            fs_util::SKIPPED_DIRS.join(", ")
        )
    }

    fn input_schema(&self) -> Value {
        let types: Vec<&str> = FILE_TYPES.iter().map(|(name, _)| *name).collect();
        let context = |what: &str| json!({"type": "integer", "minimum": 0, "description": what});
        json!({
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "The regular expression to search for."},
                "path": {"type": "string", "description": "File or directory to search (default /workspace)."},
                "glob": {"type": "string", "description": "Only search files matching this glob, e.g. \"*.js\" or \"src/**/*.{ts,tsx}\"."},
                "type": {"type": "string", "enum": types, "description": "Only search files of this type."},
                "output_mode": {
                    "type": "string",
                    "enum": ["content", "files_with_matches", "count"],
                    "description": "What to show (default files_with_matches)."
                },
                "-i": {"type": "boolean", "description": "Case-insensitive search."},
                "-n": {"type": "boolean", "description": "Show line numbers (content mode; default true)."},
                "-A": context("Lines to show after each match (content mode)."),
                "-B": context("Lines to show before each match (content mode)."),
                "-C": context("Lines to show before and after each match (content mode)."),
                "multiline": {"type": "boolean", "description": "Let the pattern match across lines; `.` also matches newlines."},
                "head_limit": {"type": "integer", "minimum": 1, "description": "Show at most this many lines or entries (default 250)."}
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
        let filter = FileFilter::new(input.glob.as_deref(), input.file_type.as_deref())?;
        let matcher = build_matcher(&input.pattern, input.case_insensitive, input.multiline)?;
        let content_mode = input.output_mode == OutputMode::Content;
        let before = input.before.or(input.context).unwrap_or(0);
        let after = input.after.or(input.context).unwrap_or(0);
        let search = Search {
            matcher,
            mode: input.output_mode,
            line_numbers: input.line_numbers.unwrap_or(true),
            multiline: input.multiline,
            before: if content_mode {
                usize::try_from(before).unwrap_or(usize::MAX)
            } else {
                0
            },
            after: if content_mode {
                usize::try_from(after).unwrap_or(usize::MAX)
            } else {
                0
            },
            limit: input.head_limit.map_or(DEFAULT_HEAD_LIMIT, |n| {
                usize::try_from(n.max(1)).unwrap_or(usize::MAX)
            }),
        };
        let cancel = ctx.cancel.clone();
        let pattern = input.pattern;
        let where_ = display_path(base.as_ref());
        let text = fs_util::blocking(ctx, move |workspace| {
            let (files, single) = list_files(workspace, base.as_ref(), &filter, &cancel)?;
            let found = search.run(workspace, &files, single, &cancel)?;
            Ok(found.render(&search, &pattern, &where_))
        })
        .await?;
        Ok(ToolOutput::text(text))
    }
}

/// Which files of a directory search are searched (`glob` and `type`).
struct FileFilter {
    glob: Option<(GlobMatcher, bool)>,
    extensions: Option<&'static [&'static str]>,
}

impl FileFilter {
    fn new(glob: Option<&str>, file_type: Option<&str>) -> Result<Self, ToolError> {
        let glob = match glob {
            Some(glob) => {
                let matcher = GlobBuilder::new(glob)
                    .literal_separator(true)
                    .build()
                    .map_err(|err| ToolError::Failed(format!("invalid glob {glob:?}: {err}")))?
                    .compile_matcher();
                Some((matcher, glob.contains('/')))
            }
            None => None,
        };
        let extensions = match file_type {
            Some(name) => {
                let found = FILE_TYPES.iter().find(|(known, _)| *known == name);
                let Some((_, extensions)) = found else {
                    let known: Vec<&str> = FILE_TYPES.iter().map(|(known, _)| *known).collect();
                    return Err(ToolError::Failed(format!(
                        "unknown type {name:?}; use one of {}, or a glob such as \"*.ext\"",
                        known.join(", ")
                    )));
                };
                Some(*extensions)
            }
            None => None,
        };
        Ok(Self { glob, extensions })
    }

    fn accepts(&self, path: &RelPath, base: Option<&RelPath>) -> bool {
        if let Some(extensions) = self.extensions {
            let extension = path.file_name().rsplit_once('.').map(|(_, ext)| ext);
            if !extension.is_some_and(|ext| extensions.iter().any(|known| ext.eq_ignore_ascii_case(known))) {
                return false;
            }
        }
        match &self.glob {
            None => true,
            Some((glob, false)) => glob.is_match(path.file_name()),
            Some((glob, true)) => {
                glob.is_match(fs_util::relative_to(path, base)) || glob.is_match(path.as_str())
            }
        }
    }
}

fn build_matcher(pattern: &str, case_insensitive: bool, multiline: bool) -> Result<RegexMatcher, ToolError> {
    let mut builder = RegexMatcherBuilder::new();
    // `^` and `$` match at line boundaries, as in ripgrep.
    builder.case_insensitive(case_insensitive).multi_line(true);
    if multiline {
        builder.dot_matches_new_line(true);
    } else {
        builder.line_terminator(Some(b'\n'));
    }
    builder.build(pattern).map_err(|err| {
        let hint = if !multiline && pattern.contains("\\n") {
            " (to match across lines, set multiline to true)"
        } else {
            ""
        };
        ToolError::Failed(format!("invalid regex {pattern:?}: {err}{hint}"))
    })
}

/// The files to search with their modification times: `base` itself if it is a file (then
/// `true`), else the accepted files beneath it.
fn list_files(
    workspace: &WorkspaceDir,
    base: Option<&RelPath>,
    filter: &FileFilter,
    cancel: &CancellationToken,
) -> Result<(Vec<(RelPath, SystemTime)>, bool), ToolError> {
    let modified = |metadata: &std::fs::Metadata| metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    match (fs_util::check_target(workspace, base, true)?, base) {
        (Target::File, Some(file)) => {
            let metadata = workspace
                .metadata(file)
                .map_err(|err| fs_util::io_failed(base, &err))?;
            Ok((vec![(file.clone(), modified(&metadata))], true))
        }
        _ => {
            let files = fs_util::walk_files(workspace, base, cancel)?
                .into_iter()
                .filter(|(path, _)| filter.accepts(path, base))
                .map(|(path, metadata)| {
                    let time = modified(&metadata);
                    (path, time)
                })
                .collect();
            Ok((files, false))
        }
    }
}

struct Search {
    matcher: RegexMatcher,
    mode: OutputMode,
    line_numbers: bool,
    multiline: bool,
    before: usize,
    after: usize,
    limit: usize,
}

/// What a search found, before rendering.
#[derive(Default)]
struct Found {
    /// Content lines (content mode) or per-file counts (count mode), at most `limit`.
    lines: Vec<String>,
    /// All lines or entries there would have been.
    total_lines: usize,
    /// Matching files with their modification times.
    files: Vec<(RelPath, SystemTime)>,
    /// Matching lines over all files.
    matches: usize,
}

impl Search {
    /// Searches `files`; `single` means the model named this one file, so failing to open it
    /// is an error rather than a file to skip.
    fn run(
        &self,
        workspace: &WorkspaceDir,
        files: &[(RelPath, SystemTime)],
        single: bool,
        cancel: &CancellationToken,
    ) -> Result<Found, ToolError> {
        let mut searcher = SearcherBuilder::new()
            .binary_detection(BinaryDetection::quit(b'\0'))
            .line_number(true)
            .multi_line(self.multiline)
            .before_context(self.before)
            .after_context(self.after)
            .build();
        let mut found = Found::default();
        for (path, modified) in files {
            if cancel.is_cancelled() {
                return Err(ToolError::Cancelled);
            }
            let shown = display_path(Some(path));
            let file = match workspace.open_file(path) {
                Ok(file) => file,
                Err(err) if single => return Err(fs_util::io_failed(Some(path), &err)),
                // Vanished or replaced (by a symlink, say) since the walk.
                Err(_) => continue,
            };
            let budget = self.limit.saturating_sub(found.lines.len());
            let mut sink = FileSink::new(self, &shown, budget);
            match searcher.search_file(&self.matcher, &file, &mut sink) {
                Ok(()) => {}
                Err(err) if single => {
                    return Err(ToolError::Failed(format!("cannot search {shown}: {err}")));
                }
                Err(_) => continue,
            }
            if sink.binary || sink.matches == 0 {
                continue;
            }
            found.matches += sink.matches;
            found.files.push((path.clone(), *modified));
            match self.mode {
                OutputMode::Content => {
                    let separate = (self.before > 0 || self.after > 0) && found.total_lines > 0;
                    if separate {
                        found.total_lines += 1;
                        if found.lines.len() < self.limit {
                            found.lines.push("--".to_owned());
                        }
                    }
                    let room = self.limit.saturating_sub(found.lines.len());
                    found.total_lines += sink.total_lines;
                    found.lines.extend(sink.lines.into_iter().take(room));
                }
                OutputMode::Count => {
                    found.total_lines += 1;
                    if found.lines.len() < self.limit {
                        found.lines.push(format!("{shown}:{}", sink.matches));
                    }
                }
                OutputMode::FilesWithMatches => {}
            }
        }
        Ok(found)
    }
}

impl Found {
    fn render(mut self, search: &Search, pattern: &str, where_: &str) -> String {
        if self.files.is_empty() {
            return format!("No matches found for {pattern:?} in {where_}");
        }
        let files = self.files.len();
        let (mut out, total) = match search.mode {
            OutputMode::FilesWithMatches => {
                self.files
                    .sort_by(|a, b| Reverse(a.1).cmp(&Reverse(b.1)).then_with(|| a.0.cmp(&b.0)));
                let mut out = vec![format!("Found {}", fs_util::plural(files, "file"))];
                out.extend(
                    self.files
                        .iter()
                        .take(search.limit)
                        .map(|(path, _)| display_path(Some(path))),
                );
                (out, files)
            }
            OutputMode::Count => {
                let mut out = self.lines;
                out.push(format!(
                    "Found {} in {}",
                    fs_util::plural(self.matches, "matching line"),
                    fs_util::plural(files, "file")
                ));
                (out, self.total_lines)
            }
            OutputMode::Content => (self.lines, self.total_lines),
        };
        if total > search.limit {
            let what = match search.mode {
                OutputMode::Content => "lines",
                OutputMode::Count | OutputMode::FilesWithMatches => "files",
            };
            out.push(format!(
                "(Showing the first {} of {total} {what}; {} more were cut. Narrow the search or raise \
                 head_limit.)",
                search.limit,
                total - search.limit
            ));
        }
        out.join("\n")
    }
}

/// Collects one file's results.
struct FileSink<'a> {
    search: &'a Search,
    shown: &'a str,
    /// Most lines kept; the rest are only counted.
    budget: usize,
    lines: Vec<String>,
    total_lines: usize,
    matches: usize,
    binary: bool,
}

impl<'a> FileSink<'a> {
    fn new(search: &'a Search, shown: &'a str, budget: usize) -> Self {
        Self {
            search,
            shown,
            budget,
            lines: Vec::new(),
            total_lines: 0,
            matches: 0,
            binary: false,
        }
    }

    fn push(&mut self, number: Option<u64>, separator: char, bytes: &[u8]) {
        self.total_lines += 1;
        if self.lines.len() >= self.budget {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim_end_matches('\n').trim_end_matches('\r');
        let mut line = String::from(self.shown);
        line.push(separator);
        if let (true, Some(number)) = (self.search.line_numbers, number) {
            line.push_str(&number.to_string());
            line.push(separator);
        }
        fs_util::push_truncated(&mut line, text, MAX_LINE_CHARS);
        self.lines.push(line);
    }
}

impl Sink for FileSink<'_> {
    type Error = io::Error;

    fn matched(&mut self, _: &Searcher, found: &SinkMatch<'_>) -> Result<bool, io::Error> {
        let first = found.line_number();
        for (offset, line) in found.lines().enumerate() {
            self.matches += 1;
            if self.search.mode == OutputMode::Content {
                self.push(first.map(|n| n + offset as u64), ':', line);
            }
        }
        // One match is enough to list the file.
        Ok(self.search.mode != OutputMode::FilesWithMatches)
    }

    fn context(&mut self, _: &Searcher, context: &SinkContext<'_>) -> Result<bool, io::Error> {
        self.push(context.line_number(), '-', context.bytes());
        Ok(true)
    }

    fn context_break(&mut self, _: &Searcher) -> Result<bool, io::Error> {
        self.total_lines += 1;
        if self.lines.len() < self.budget {
            self.lines.push("--".to_owned());
        }
        Ok(true)
    }

    fn binary_data(&mut self, _: &Searcher, _: u64) -> Result<bool, io::Error> {
        self.binary = true;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::tools::test_support::{SECRET, TestWorkspace};

    fn workspace() -> TestWorkspace {
        let ws = TestWorkspace::new();
        ws.put(
            "src/app.py",
            "import os\n\ndef main():\n    print('Hello')\n    return 0\n",
        );
        ws.put("src/lib.rs", "fn hello() {}\nfn other() {}\n");
        ws.put("README.md", "# Project\nSay hello to everyone.\n");
        let old = SystemTime::now() - Duration::from_secs(100);
        for path in ["src/app.py", "src/lib.rs"] {
            let file = std::fs::File::options()
                .write(true)
                .open(ws.root.join(path))
                .unwrap();
            file.set_modified(old).unwrap();
        }
        ws
    }

    #[tokio::test]
    async fn lists_matching_files_newest_first() {
        let ws = workspace();
        let text = ws.ok(&Grep, json!({"pattern": "hello"})).await;
        assert_eq!(text, "Found 2 files\n/workspace/README.md\n/workspace/src/lib.rs");
        let text = ws
            .ok(
                &Grep,
                json!({"pattern": "hello", "-i": true, "path": "/workspace/src"}),
            )
            .await;
        assert_eq!(
            text,
            "Found 2 files\n/workspace/src/app.py\n/workspace/src/lib.rs"
        );
        let text = ws.ok(&Grep, json!({"pattern": "nothing like this"})).await;
        assert_eq!(text, "No matches found for \"nothing like this\" in /workspace");
    }

    #[tokio::test]
    async fn content_mode_with_numbers_and_context() {
        let ws = workspace();
        let input = json!({"pattern": "hello", "output_mode": "content", "-i": true, "type": "py"});
        let text = ws.ok(&Grep, input).await;
        assert_eq!(text, "/workspace/src/app.py:4:    print('Hello')");
        let input = json!({"pattern": "^fn", "output_mode": "content", "-n": false, "glob": "*.rs"});
        let text = ws.ok(&Grep, input).await;
        assert_eq!(
            text,
            "/workspace/src/lib.rs:fn hello() {}\n/workspace/src/lib.rs:fn other() {}"
        );
        let input =
            json!({"pattern": "import|return", "output_mode": "content", "-A": 1, "path": "src/app.py"});
        let text = ws.ok(&Grep, input).await;
        assert_eq!(
            text,
            "/workspace/src/app.py:1:import os\n/workspace/src/app.py-2-\n--\n/workspace/src/app.py:5:    return 0"
        );
        let input = json!({"pattern": "print", "output_mode": "content", "-C": 1});
        let text = ws.ok(&Grep, input).await;
        assert_eq!(
            text,
            "/workspace/src/app.py-3-def main():\n/workspace/src/app.py:4:    print('Hello')\n\
             /workspace/src/app.py-5-    return 0"
        );
    }

    #[tokio::test]
    async fn count_mode_and_multiline() {
        let ws = workspace();
        let text = ws
            .ok(&Grep, json!({"pattern": "fn|def", "output_mode": "count"}))
            .await;
        assert_eq!(
            text,
            "/workspace/src/app.py:1\n/workspace/src/lib.rs:2\nFound 3 matching lines in 2 files"
        );
        let input = json!({"pattern": "hello\\(\\) \\{\\}\\nfn other", "output_mode": "content"});
        let error = ws.fails(&Grep, input.clone()).await;
        assert!(error.contains("set multiline to true"), "{error}");
        let mut multiline = input;
        multiline["multiline"] = json!(true);
        let text = ws.ok(&Grep, multiline).await;
        assert_eq!(
            text,
            "/workspace/src/lib.rs:1:fn hello() {}\n/workspace/src/lib.rs:2:fn other() {}"
        );
    }

    #[tokio::test]
    async fn head_limit_cuts_and_says_so() {
        let ws = TestWorkspace::new();
        let content: String = (0..300).map(|n| format!("match {n}\n")).collect();
        ws.put("many.txt", &content);
        let text = ws
            .ok(&Grep, json!({"pattern": "match", "output_mode": "content"}))
            .await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 251);
        assert_eq!(lines[249], "/workspace/many.txt:250:match 249");
        assert!(
            lines[250].contains("first 250 of 300 lines; 50 more were cut"),
            "{}",
            lines[250]
        );
        let input = json!({"pattern": "match", "output_mode": "content", "head_limit": 2});
        let text = ws.ok(&Grep, input).await;
        assert_eq!(text.lines().count(), 3);
        for n in 0..5 {
            ws.put(&format!("f{n}.txt"), "match");
        }
        let text = ws.ok(&Grep, json!({"pattern": "match", "head_limit": 3})).await;
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.starts_with("Found 6 files\n"), "{text}");
        assert!(
            text.ends_with("first 3 of 6 files; 3 more were cut. Narrow the search or raise head_limit.)")
        );
    }

    #[tokio::test]
    async fn skips_binary_files_and_cache_dirs() {
        let ws = TestWorkspace::new();
        ws.put("text.txt", "needle\n");
        ws.put("early.bin", b"needle\n\0\x01\x02");
        // The NUL comes after the first buffer was searched: the match found there is dropped.
        let mut late = b"needle\n".to_vec();
        late.extend(vec![b'x'; 200_000]);
        late.extend(b"\0needle\n");
        ws.put("late.bin", &late);
        ws.put("node_modules/pkg/index.js", "needle");
        ws.put(".git/config", "needle");
        let text = ws
            .ok(&Grep, json!({"pattern": "needle", "output_mode": "content"}))
            .await;
        assert_eq!(text, "/workspace/text.txt:1:needle");
        let text = ws
            .ok(&Grep, json!({"pattern": "needle", "output_mode": "count"}))
            .await;
        assert_eq!(text, "/workspace/text.txt:1\nFound 1 matching line in 1 file");
        let text = ws
            .ok(&Grep, json!({"pattern": "needle", "path": "node_modules"}))
            .await;
        assert_eq!(text, "Found 1 file\n/workspace/node_modules/pkg/index.js");
    }

    #[tokio::test]
    async fn never_reads_through_symlinks() {
        let ws = TestWorkspace::new();
        ws.put("plain.txt", "nothing here");
        ws.link_secret("secret-link.txt");
        std::os::unix::fs::symlink(&ws.outside, ws.root.join("outdir")).unwrap();
        let input = json!({"pattern": "secret", "output_mode": "content", "-i": true});
        let text = ws.ok(&Grep, input).await;
        assert_eq!(text, "No matches found for \"secret\" in /workspace");
        for path in ["secret-link.txt", "outdir", "outdir/secret", "../outside", "/etc"] {
            let error = ws.fails(&Grep, json!({"pattern": "host", "path": path})).await;
            assert!(!error.contains(SECRET), "{path}: {error}");
        }
    }

    #[tokio::test]
    async fn bad_input_is_reported() {
        let ws = workspace();
        let error = ws.fails(&Grep, json!({"pattern": "fn("})).await;
        assert!(error.starts_with("invalid regex \"fn(\""), "{error}");
        let error = ws.fails(&Grep, json!({"pattern": "x", "glob": "a[b"})).await;
        assert!(error.contains("invalid glob"), "{error}");
        let error = ws.fails(&Grep, json!({"pattern": "x", "path": "missing"})).await;
        assert_eq!(error, "/workspace/missing does not exist");
        let error = Grep
            .call(json!({"pattern": "x", "type": "cobol"}), &ws.ctx)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("unknown type \"cobol\""), "{error}");
    }
}
