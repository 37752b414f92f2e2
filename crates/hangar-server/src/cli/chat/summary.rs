//! One-line gists for folded output: a tool call's input, a tool result's first line, any
//! text clipped to fit on a line.

use serde_json::Value;

/// Longest gist shown, in characters.
const CLIP: usize = 80;

/// `: first line (+N lines)` of a tool result, or nothing when it is empty.
pub fn first_line(content: &str) -> String {
    let mut lines = content.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return String::new();
    };
    let more = lines.count();
    let rest = if more == 0 {
        String::new()
    } else {
        format!(" (+{more} line{})", if more == 1 { "" } else { "s" })
    };
    format!(": {}{rest}", clip(first))
}

/// The gist of a tool's input: the field that says what the call does (a command, a path, a
/// pattern…), else the first text field, else the input as JSON; on one line, clipped.
pub fn summarize(input: &Value) -> String {
    const KEYS: [&str; 8] = [
        "command",
        "file_path",
        "pattern",
        "path",
        "description",
        "url",
        "query",
        "prompt",
    ];
    let Some(fields) = input.as_object() else {
        return clip(&input.to_string());
    };
    if fields.is_empty() {
        return String::new();
    }
    let text = KEYS
        .iter()
        .find_map(|key| fields.get(*key).and_then(Value::as_str))
        .or_else(|| fields.values().find_map(Value::as_str));
    if let Some(text) = text {
        return clip(text);
    }
    match fields.values().next() {
        Some(Value::Array(items)) if fields.len() == 1 => {
            let texts: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            if texts.len() == items.len() {
                clip(&texts.join(", "))
            } else {
                format!("{} item{}", items.len(), if items.len() == 1 { "" } else { "s" })
            }
        }
        _ => clip(&input.to_string()),
    }
}

/// `text` on one line (whitespace runs become one space), at most [`CLIP`] characters.
pub fn clip(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= CLIP {
        return flat;
    }
    let mut cut: String = flat.chars().take(CLIP - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    #[test]
    fn gists_pick_the_telling_field() {
        assert_eq!(summarize(&json!({"todos": [{"content": "a"}]})), "1 item");
        assert_eq!(
            summarize(&json!({"file_paths": ["a.txt", "b.txt"]})),
            "a.txt, b.txt"
        );
        assert_eq!(summarize(&json!({"n": 1, "name": "x"})), "x");
        assert_eq!(summarize(&json!({"n": 1})), r#"{"n":1}"#);
        assert_eq!(summarize(&json!({})), "");
        assert_eq!(clip(&"é".repeat(81)).chars().count(), 80);
        assert_eq!(first_line("  \na  b\n\nc\nd\n"), ": a b (+2 lines)");
        assert_eq!(first_line("\n"), "");
    }
}
