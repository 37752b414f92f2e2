//! `Edit` and `MultiEdit`: exact string replacement in a workspace file.
//!
//! Both share one routine: the file (which must have been read or written earlier in the run)
//! is loaded, every replacement is applied in memory in order, and the result is written back
//! only if all of them succeeded. An `old_string` must match exactly once unless `replace_all`
//! is set. An empty `old_string` on a file that does not exist yet creates it.

use std::borrow::Cow;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use similar::TextDiff;

use super::fs_util::{self, MAX_TEXT_BYTES};
use super::parse_input;
use crate::tool::{Tool, ToolContext, ToolError, ToolOutput, display_path, workspace_file};

/// Unchanged lines shown around each change in the result.
const SNIPPET_CONTEXT: usize = 3;
/// Most lines of changed regions shown in the result.
const MAX_SNIPPET_LINES: usize = 60;

/// Replaces one string in a file.
pub struct Edit;

/// Applies several replacements to one file, all or nothing.
pub struct MultiEdit;

/// One replacement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    old_string: String,
    new_string: String,
    #[serde(default)]
    replace_all: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditInput {
    file_path: String,
    old_string: String,
    new_string: String,
    #[serde(default)]
    replace_all: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultiEditInput {
    file_path: String,
    edits: Vec<Change>,
}

fn change_properties() -> Value {
    json!({
        "old_string": {
            "type": "string",
            "description": "The exact text to replace, including whitespace and indentation (without Read's line-number prefixes)."
        },
        "new_string": {
            "type": "string",
            "description": "The text to replace it with (must differ from old_string)."
        },
        "replace_all": {
            "type": "boolean",
            "default": false,
            "description": "Replace every occurrence of old_string instead of requiring exactly one."
        }
    })
}

#[async_trait]
impl Tool for Edit {
    fn name(&self) -> &str {
        "Edit"
    }

    fn description(&self) -> String {
        "Replaces exact text in a workspace file.\n\n\
         - You must Read the file (or Write it) before editing it.\n\
         - old_string must match the file exactly, including whitespace and indentation. \
         Read shows each line as a line-number prefix, a tab, then the line: copy only what \
         comes after the tab.\n\
         - The edit fails if old_string is not found, or if it occurs more than once and \
         replace_all is false: then add surrounding lines to make it unique, or set \
         replace_all to replace every occurrence (useful to rename something).\n\
         - An empty old_string with a file_path that does not exist creates the file.\n\
         - To make several changes to one file, prefer MultiEdit."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        let mut properties = change_properties();
        properties["file_path"] = json!({
            "type": "string",
            "description": "The file to change: /workspace/... or a path relative to /workspace."
        });
        json!({
            "type": "object",
            "properties": properties,
            "required": ["file_path", "old_string", "new_string"],
            "additionalProperties": false
        })
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: EditInput = parse_input(self.name(), input)?;
        let change = Change {
            old_string: input.old_string,
            new_string: input.new_string,
            replace_all: input.replace_all,
        };
        edit_file(ctx, &input.file_path, vec![change], false).await
    }
}

#[async_trait]
impl Tool for MultiEdit {
    fn name(&self) -> &str {
        "MultiEdit"
    }

    fn description(&self) -> String {
        "Makes several exact-text replacements in one workspace file, in order, all or nothing.\n\n\
         - Each edit works like Edit's (old_string, new_string, replace_all) and applies to the \
         result of the edits before it, so make sure earlier edits do not change text a later \
         one looks for.\n\
         - If any edit fails, none is applied and the file is left unchanged; the error names \
         the failing edit.\n\
         - You must Read the file first. To create a file, give a file_path that does not \
         exist and an empty old_string in the first edit."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "file_path": {
                    "type": "string",
                    "description": "The file to change: /workspace/... or a path relative to /workspace."
                },
                "edits": {
                    "type": "array",
                    "minItems": 1,
                    "description": "The replacements, applied in order.",
                    "items": {
                        "type": "object",
                        "properties": change_properties(),
                        "required": ["old_string", "new_string"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["file_path", "edits"],
            "additionalProperties": false
        })
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: MultiEditInput = parse_input(self.name(), input)?;
        edit_file(ctx, &input.file_path, input.edits, true).await
    }
}

/// Loads the file, applies `changes`, writes the result back and describes what changed.
async fn edit_file(
    ctx: &ToolContext,
    file_path: &str,
    changes: Vec<Change>,
    multi: bool,
) -> Result<ToolOutput, ToolError> {
    let path = workspace_file(file_path)?;
    let shown = display_path(Some(&path));
    if changes.is_empty() {
        return Err(ToolError::failed("edits is empty; give at least one edit"));
    }
    let rel = path.clone();
    let loaded = fs_util::blocking(ctx, move |workspace| match workspace.read(&rel, MAX_TEXT_BYTES) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::FileTooLarge => Err(ToolError::Failed(format!(
            "{} is larger than 10 MiB, too large to edit",
            display_path(Some(&rel))
        ))),
        Err(err) => Err(fs_util::io_failed(Some(&rel), &err)),
    })
    .await?;

    let original = match loaded {
        None if changes[0].old_string.is_empty() => None,
        None => {
            return Err(ToolError::Failed(format!(
                "{shown} does not exist; create it with Write (or with an empty old_string)"
            )));
        }
        Some(_) if !fs_util::seen_in_run(&ctx.run, &path) => {
            return Err(ToolError::Failed(format!(
                "{shown} has not been read in this run; Read it first, then edit it"
            )));
        }
        Some(bytes) => Some(String::from_utf8(bytes).map_err(|_| {
            ToolError::Failed(format!("{shown} is not UTF-8 text; Edit only changes text files"))
        })?),
    };

    let total = changes.len();
    let replaced = apply_changes(original.as_deref(), &changes, &shown).map_err(|(index, message)| {
        if multi {
            ToolError::Failed(format!(
                "edit {} of {total} failed: {message}. No edit was applied; the file is unchanged.",
                index + 1
            ))
        } else {
            ToolError::Failed(message)
        }
    })?;

    let rel = path.clone();
    let created = original.is_none();
    let new_content = replaced.content;
    let snippet = fs_util::blocking(ctx, move |workspace| {
        workspace
            .write(&rel, new_content.as_bytes())
            .map_err(|err| fs_util::io_failed(Some(&rel), &err))?;
        Ok(snippet(original.as_deref().unwrap_or(""), &new_content))
    })
    .await?;
    ctx.run.mark_written(&path);
    ctx.run.mark_read(&path);

    let what = if created {
        format!("Created {shown}")
    } else if multi {
        format!(
            "Applied {} to {shown} ({})",
            fs_util::plural(total, "edit"),
            fs_util::plural(replaced.count, "replacement")
        )
    } else {
        format!(
            "Edited {shown} ({})",
            fs_util::plural(replaced.count, "replacement")
        )
    };
    Ok(ToolOutput::text(format!(
        "{what}. The changed region now reads (cat -n):\n{snippet}"
    )))
}

struct Replaced {
    content: String,
    /// Occurrences replaced, over all changes.
    count: usize,
}

/// Applies `changes` in order to `original` (`None`: the file does not exist yet). On failure,
/// the index of the failing change and why.
fn apply_changes(
    original: Option<&str>,
    changes: &[Change],
    shown: &str,
) -> Result<Replaced, (usize, String)> {
    let mut content = original.unwrap_or_default().to_owned();
    let mut count = 0;
    for (index, change) in changes.iter().enumerate() {
        if change.old_string == change.new_string {
            return Err((
                index,
                "old_string and new_string are identical; nothing would change".to_owned(),
            ));
        }
        if change.old_string.is_empty() {
            if index == 0 && content.is_empty() {
                content.clone_from(&change.new_string);
                count += 1;
                continue;
            }
            let message = if index == 0 {
                format!(
                    "old_string is empty but {shown} already has content; quote the text to replace, or \
                     use Write to replace the whole file"
                )
            } else {
                "old_string is empty; only the first edit may use an empty old_string, to create a file"
                    .to_owned()
            };
            return Err((index, message));
        }
        let (next, replaced) = replace(&content, change, shown).map_err(|message| (index, message))?;
        content = next;
        count += replaced;
    }
    Ok(Replaced { content, count })
}

/// One replacement in `content`: the new content and how many occurrences were replaced.
fn replace(content: &str, change: &Change, shown: &str) -> Result<(String, usize), String> {
    let (old, new) = with_line_endings_of(content, &change.old_string, &change.new_string);
    match content.matches(old.as_ref()).count() {
        0 => Err(not_found(&change.old_string, shown)),
        1 => Ok((content.replacen(old.as_ref(), &new, 1), 1)),
        n if change.replace_all => Ok((content.replace(old.as_ref(), &new), n)),
        n => Err(format!(
            "old_string occurs {n} times in {shown}, but replace_all is false; include more \
             surrounding lines to make it unique, or set replace_all to true to replace all {n}"
        )),
    }
}

/// Read shows CRLF files without the `\r`: when `old` is only found with CRLF line endings,
/// use them for both strings.
fn with_line_endings_of<'a>(content: &str, old: &'a str, new: &'a str) -> (Cow<'a, str>, Cow<'a, str>) {
    if !content.contains(old) && content.contains("\r\n") && old.contains('\n') && !old.contains('\r') {
        let crlf = old.replace('\n', "\r\n");
        if content.contains(&crlf) {
            return (Cow::Owned(crlf), Cow::Owned(new.replace('\n', "\r\n")));
        }
    }
    (Cow::Borrowed(old), Cow::Borrowed(new))
}

fn not_found(old: &str, shown: &str) -> String {
    let mut message = format!(
        "old_string was not found in {shown}; it must match the file exactly, including \
         whitespace and indentation (Read the file again to check)"
    );
    let has_read_prefix = old.lines().any(|line| {
        let digits = line.trim_start_matches(' ');
        let rest = digits.trim_start_matches(|c: char| c.is_ascii_digit());
        rest.len() < digits.len() && rest.starts_with('\t')
    });
    if has_read_prefix {
        message
            .push_str(". It seems to include Read's line-number prefixes (digits and a tab); leave them out");
    }
    message
}

/// The changed regions of `new` with a few lines around each, numbered like `cat -n`.
fn snippet(old: &str, new: &str) -> String {
    let lines: Vec<&str> = new.lines().collect();
    if lines.is_empty() {
        return "(the file is now empty)\n".to_owned();
    }
    let diff = TextDiff::configure()
        .timeout(Duration::from_millis(500))
        .diff_lines(old, new);
    let mut out = String::new();
    let mut shown = 0;
    for (group_index, group) in diff.grouped_ops(SNIPPET_CONTEXT).iter().enumerate() {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        if group_index > 0 {
            out.push_str("   ...\n");
        }
        for number in first.new_range().start..last.new_range().end {
            let Some(line) = lines.get(number) else { break };
            if shown == MAX_SNIPPET_LINES {
                out.push_str("… (more changed lines not shown; Read the file to see them)\n");
                return out;
            }
            fs_util::push_numbered(&mut out, number + 1, line);
            shown += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;
    use crate::tools::test_support::{SECRET, TestWorkspace};

    const CODE: &str = "fn main() {\n    let x = 1;\n    let y = 2;\n    println!(\"{}\", x + y);\n}\n";

    fn workspace_with_code() -> TestWorkspace {
        let ws = TestWorkspace::new();
        ws.put("src/main.rs", CODE);
        ws.mark_read("src/main.rs");
        ws
    }

    #[tokio::test]
    async fn replaces_a_unique_string_and_shows_the_region() {
        let ws = workspace_with_code();
        let text = ws
            .ok(
                &Edit,
                json!({"file_path": "/workspace/src/main.rs", "old_string": "let y = 2;", "new_string": "let y = 40;"}),
            )
            .await;
        assert_eq!(ws.get("src/main.rs"), CODE.replace("2;", "40;"));
        assert_eq!(
            text,
            "Edited /workspace/src/main.rs (1 replacement). The changed region now reads (cat -n):\n\
             \x20    1\tfn main() {\n\
             \x20    2\t    let x = 1;\n\
             \x20    3\t    let y = 40;\n\
             \x20    4\t    println!(\"{}\", x + y);\n\
             \x20    5\t}\n"
        );
    }

    #[tokio::test]
    async fn ambiguous_strings_need_replace_all() {
        let ws = workspace_with_code();
        let input = json!({"file_path": "src/main.rs", "old_string": "let", "new_string": "let mut"});
        let error = ws.fails(&Edit, input.clone()).await;
        assert!(error.contains("occurs 2 times"), "{error}");
        assert_eq!(ws.get("src/main.rs"), CODE);
        let mut all = input;
        all["replace_all"] = json!(true);
        let text = ws.ok(&Edit, all).await;
        assert!(text.contains("(2 replacements)"), "{text}");
        assert_eq!(ws.get("src/main.rs"), CODE.replace("let", "let mut"));
    }

    #[tokio::test]
    async fn refusals() {
        let ws = workspace_with_code();
        let edit =
            |old: &str, new: &str| json!({"file_path": "src/main.rs", "old_string": old, "new_string": new});
        let error = ws.fails(&Edit, edit("let z", "let w")).await;
        assert!(error.contains("not found"), "{error}");
        let error = ws.fails(&Edit, edit("     2\t    let x = 1;", "")).await;
        assert!(error.contains("line-number prefixes"), "{error}");
        let error = ws.fails(&Edit, edit("x", "x")).await;
        assert!(error.contains("identical"), "{error}");
        let error = ws.fails(&Edit, edit("", "new")).await;
        assert!(error.contains("already has content"), "{error}");
        assert_eq!(ws.get("src/main.rs"), CODE);

        ws.put("unread.txt", "hello");
        let input = json!({"file_path": "unread.txt", "old_string": "hello", "new_string": "bye"});
        let error = ws.fails(&Edit, input).await;
        assert!(error.contains("Read it first"), "{error}");
        assert_eq!(ws.get("unread.txt"), "hello");
        let input = json!({"file_path": "missing.txt", "old_string": "a", "new_string": "b"});
        let error = ws.fails(&Edit, input).await;
        assert!(error.contains("does not exist"), "{error}");
    }

    #[tokio::test]
    async fn empty_old_string_creates_a_file() {
        let ws = TestWorkspace::new();
        let input = json!({"file_path": "new/file.txt", "old_string": "", "new_string": "hi\n"});
        let text = ws.ok(&Edit, input).await;
        assert!(text.starts_with("Created /workspace/new/file.txt."), "{text}");
        assert_eq!(ws.get("new/file.txt"), "hi\n");
        // Now known to the run, it can be edited further.
        let input = json!({"file_path": "new/file.txt", "old_string": "hi", "new_string": "hello"});
        ws.ok(&Edit, input).await;
        assert_eq!(ws.get("new/file.txt"), "hello\n");
    }

    #[tokio::test]
    async fn crlf_files_match_strings_copied_from_read() {
        let ws = TestWorkspace::new();
        ws.put("dos.txt", "one\r\ntwo\r\nthree\r\n");
        ws.mark_read("dos.txt");
        let input = json!({"file_path": "dos.txt", "old_string": "one\ntwo", "new_string": "1\n2"});
        ws.ok(&Edit, input).await;
        assert_eq!(ws.get("dos.txt"), "1\r\n2\r\nthree\r\n");
    }

    #[tokio::test]
    async fn multi_edit_applies_in_order() {
        let ws = workspace_with_code();
        let input = json!({"file_path": "src/main.rs", "edits": [
            {"old_string": "let x = 1;", "new_string": "let a = 1;"},
            {"old_string": "x + y", "new_string": "a + y"},
            {"old_string": "let a", "new_string": "let b", "replace_all": true},
        ]});
        let text = ws.ok(&MultiEdit, input).await;
        assert!(
            text.starts_with("Applied 3 edits to /workspace/src/main.rs (3 replacements)."),
            "{text}"
        );
        assert_eq!(
            ws.get("src/main.rs"),
            CODE.replace("let x", "let b").replace("x + y", "a + y")
        );
    }

    #[tokio::test]
    async fn multi_edit_is_all_or_nothing() {
        let ws = workspace_with_code();
        let input = json!({"file_path": "src/main.rs", "edits": [
            {"old_string": "let x = 1;", "new_string": "let x = 100;"},
            {"old_string": "does not exist", "new_string": "whatever"},
            {"old_string": "let y", "new_string": "let z"},
        ]});
        let error = ws.fails(&MultiEdit, input).await;
        assert!(
            error.starts_with("edit 2 of 3 failed: old_string was not found"),
            "{error}"
        );
        assert!(error.contains("unchanged"), "{error}");
        assert_eq!(ws.get("src/main.rs"), CODE);
        // A later edit depending on an earlier one's text sees it.
        let input = json!({"file_path": "src/main.rs", "edits": [
            {"old_string": "let x = 1;", "new_string": "let x = 1;\n    let x = 1;"},
            {"old_string": "let x = 1;", "new_string": "let q = 1;"},
        ]});
        let error = ws.fails(&MultiEdit, input).await;
        assert!(
            error.starts_with("edit 2 of 2 failed: old_string occurs 2 times"),
            "{error}"
        );
        assert_eq!(ws.get("src/main.rs"), CODE);
    }

    #[tokio::test]
    async fn multi_edit_can_create_a_file() {
        let ws = TestWorkspace::new();
        let input = json!({"file_path": "made.txt", "edits": [
            {"old_string": "", "new_string": "alpha beta"},
            {"old_string": "beta", "new_string": "gamma"},
        ]});
        ws.ok(&MultiEdit, input).await;
        assert_eq!(ws.get("made.txt"), "alpha gamma");
    }

    #[tokio::test]
    async fn never_edits_through_symlinks() {
        let ws = TestWorkspace::new();
        ws.link_secret("evil.txt");
        ws.mark_read("evil.txt");
        std::os::unix::fs::symlink(&ws.outside, ws.root.join("outdir")).unwrap();
        ws.mark_read("outdir/secret");
        for path in [
            "evil.txt",
            "outdir/secret",
            "../outside/secret",
            "/workspace/../outside/secret",
        ] {
            let input = json!({"file_path": path, "old_string": "host", "new_string": "pwned"});
            let error = ws.fails(&Edit, input).await;
            assert!(!error.contains(SECRET), "{error}");
            let input = json!({"file_path": path, "edits": [{"old_string": "", "new_string": "pwned"}]});
            ws.fails(&MultiEdit, input).await;
        }
        assert_eq!(
            std::fs::read_to_string(ws.outside.join("secret")).unwrap(),
            SECRET
        );
        assert!(
            std::fs::symlink_metadata(ws.root.join("evil.txt"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn snippet_shows_changes_with_context() {
        let old: String = (1..=20).map(|n| format!("{n}\n")).collect();
        let new = old.replace("\n10\n", "\nten\n");
        let text = snippet(&old, &new);
        let numbers: Vec<&str> = text.lines().map(|line| line.trim_start()).collect();
        assert_eq!(
            numbers,
            ["7\t7", "8\t8", "9\t9", "10\tten", "11\t11", "12\t12", "13\t13"]
        );
        assert_eq!(snippet("a\n", ""), "(the file is now empty)\n");
    }
}
