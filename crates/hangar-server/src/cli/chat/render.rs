//! Turns run events into terminal text, without doing any I/O: [`Renderer::event`] takes one
//! event and returns what to write to stdout and stderr, so the layout is unit-tested here.
//!
//! Assistant text streams as it arrives; tool calls fold to one line (`⚙ Bash: ls -la`) and
//! their results to one status line; a subagent's events are indented under its start line;
//! `done` ends the run with a summary. On a terminal, `progress` is a transient status line and
//! colours mark thinking, errors and statuses; otherwise the output is plain text without any
//! escape codes.

use std::collections::HashMap;

use hangar_protocol::{Done, DoneStatus, RunEvent, TextBlock, ToolStatus, WarningLevel};

use super::summary::{clip, first_line, summarize};

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
/// Back to column 0 and erase the line: removes the transient status line.
const CLEAR_LINE: &str = "\r\x1b[2K";

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// stdout is a terminal: `progress` is shown as a transient line.
    pub tty: bool,
    /// Colours on stdout.
    pub color: bool,
    /// Colours on stderr.
    pub err_color: bool,
    /// Show the model's thinking.
    pub thinking: bool,
}

/// What to write for one event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Thinking,
}

/// The block being streamed: new text of another block starts on a new line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    kind: Kind,
    agent: Option<String>,
    index: usize,
}

#[derive(Debug, Default)]
pub struct Renderer {
    options: Options,
    /// Streamed text has left stdout in the middle of a line.
    mid_line: bool,
    /// A transient status line is on screen.
    status_shown: bool,
    /// The block whose text was streamed last, until something else is shown.
    block: Option<Block>,
    /// Subagents by id: nesting depth and type.
    agents: HashMap<String, (usize, String)>,
    /// The last tool call shown, whose result needs no name.
    last_call: Option<String>,
    /// The main agent's answer has been shown during this run.
    answered: bool,
}

impl Renderer {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// Renders one event; `agent` is its `parent_agent_id` (set for a subagent's events).
    pub fn event(&mut self, agent: Option<&str>, event: &RunEvent) -> Output {
        let mut out = Output::default();
        let depth = agent.map_or(0, |id| self.agents.get(id).map_or(1, |(depth, _)| *depth));
        let indent = "  ".repeat(depth);
        match event {
            RunEvent::Assistant {
                content_blocks,
                index,
                delta,
            } => {
                let block = Block {
                    kind: Kind::Text,
                    agent: agent.map(str::to_owned),
                    index: *index,
                };
                // A whole block after its streamed pieces repeats them.
                if *delta || self.block.as_ref() != Some(&block) {
                    let text: String = content_blocks
                        .iter()
                        .map(|TextBlock::Text { text }| text.as_str())
                        .collect();
                    self.stream(&mut out.stdout, block, &indent, &text);
                    self.answered |= agent.is_none() && !text.is_empty();
                }
                if !delta {
                    self.end_line(&mut out.stdout);
                }
            }
            RunEvent::Thinking {
                content,
                index,
                delta,
            } if self.options.thinking => {
                let block = Block {
                    kind: Kind::Thinking,
                    agent: agent.map(str::to_owned),
                    index: *index,
                };
                if *delta || self.block.as_ref() != Some(&block) {
                    self.stream(&mut out.stdout, block, &format!("{indent}│ "), content);
                }
                if !delta {
                    self.end_line(&mut out.stdout);
                }
            }
            RunEvent::Progress { message, .. } => self.status(&mut out.stdout, message),
            RunEvent::ToolCall {
                tool_use_id,
                tool_name,
                input,
                ..
            } => {
                let summary = summarize(input);
                let name = self.paint(CYAN, &format!("⚙ {tool_name}"));
                let line = if summary.is_empty() {
                    name
                } else {
                    format!("{name}: {summary}")
                };
                self.line(&mut out.stdout, &indent, &line);
                self.last_call = Some(tool_use_id.clone());
            }
            RunEvent::ToolResult {
                tool_use_id,
                tool_name,
                status,
                content,
                is_error,
            } => {
                let failed = *is_error || *status == ToolStatus::Error;
                let word = if failed {
                    self.paint(RED, "error")
                } else {
                    self.paint(GREEN, "ok")
                };
                let name = if self.last_call.as_deref() == Some(tool_use_id) {
                    String::new()
                } else {
                    format!("{tool_name} ")
                };
                let line = format!("  ↳ {name}{word}{}", first_line(content));
                self.line(&mut out.stdout, &indent, &line);
            }
            RunEvent::SubagentStart {
                agent_id,
                description,
                subagent_type,
                ..
            } => {
                self.agents
                    .insert(agent_id.clone(), (depth + 1, subagent_type.clone()));
                let line = self.paint(CYAN, &format!("▸ {subagent_type}: {}", clip(description)));
                self.line(&mut out.stdout, &indent, &line);
            }
            RunEvent::SubagentEnd {
                agent_id,
                status,
                turn_count,
                usage,
                ..
            } => {
                let kind = self
                    .agents
                    .get(agent_id)
                    .map_or("subagent", |(_, kind)| kind.as_str());
                let line = format!(
                    "◂ {kind} {}{}{}",
                    self.status_word(*status),
                    turns(*turn_count),
                    tokens(usage.input_tokens, usage.output_tokens),
                );
                self.line(&mut out.stdout, &indent, &line);
            }
            RunEvent::ContextStatus {
                usage_percent,
                warning_level,
                message,
                ..
            } if *warning_level != WarningLevel::Normal => {
                let note = message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                let line = self.paint(YELLOW, &format!("⚠ context {usage_percent:.0}% full{note}"));
                self.line(&mut out.stdout, &indent, &line);
            }
            RunEvent::Compacted {
                summarised_messages,
                tokens_before,
            } => {
                let text =
                    format!("· compacted {summarised_messages} earlier messages ({tokens_before} tokens)");
                let line = self.paint(DIM, &text);
                self.line(&mut out.stdout, &indent, &line);
            }
            RunEvent::Error {
                error_type, message, ..
            } => {
                self.end_line(&mut out.stdout);
                let text = format!("{indent}error ({error_type}): {message}");
                out.stderr = paint(self.options.err_color, RED, &text) + "\n";
            }
            RunEvent::Done(done) => self.done(&mut out.stdout, done),
            RunEvent::Thinking { .. }
            | RunEvent::ContextStatus { .. }
            | RunEvent::Init { .. }
            | RunEvent::Title { .. } => {}
        }
        out
    }

    /// A message of the client's own (reconnecting, cancelling), on stderr.
    pub fn notice(&mut self, text: &str) -> Output {
        let mut out = Output::default();
        self.end_line(&mut out.stdout);
        out.stderr = paint(self.options.err_color, YELLOW, text) + "\n";
        out
    }

    fn done(&mut self, out: &mut String, done: &Done) {
        if !self.answered
            && let Some(result) = done.result.as_deref().filter(|r| !r.is_empty())
        {
            let block = Block {
                kind: Kind::Text,
                agent: None,
                index: 0,
            };
            self.stream(out, block, "", result);
        }
        let cost = format!(" · ${} · {:.1}s", done.cost_usd, done.duration_ms as f64 / 1000.0);
        let line = format!(
            "done: {}{}{}{cost}",
            self.status_word(done.status),
            turns(done.turn_count),
            tokens(done.usage.input_tokens, done.usage.output_tokens),
        );
        self.line(out, "", &line);
        let options = self.options;
        *self = Self::new(options);
    }

    /// Appends streamed text of `block`, indenting every line it starts.
    fn stream(&mut self, out: &mut String, block: Block, indent: &str, text: &str) {
        self.clear_status(out);
        if self.block.as_ref() != Some(&block) {
            self.end_line(out);
        }
        let style = (block.kind == Kind::Thinking).then_some(DIM);
        self.block = Some(block);
        for piece in text.split_inclusive('\n') {
            let body = piece.strip_suffix('\n').unwrap_or(piece);
            if !self.mid_line && !body.is_empty() {
                out.push_str(indent);
            }
            match style {
                Some(code) if self.options.color && !body.is_empty() => {
                    out.push_str(&paint(true, code, body))
                }
                _ => out.push_str(body),
            }
            if piece.ends_with('\n') {
                out.push('\n');
                self.mid_line = false;
            } else if !body.is_empty() {
                self.mid_line = true;
            }
        }
    }

    /// A whole line of its own.
    fn line(&mut self, out: &mut String, indent: &str, text: &str) {
        self.end_line(out);
        out.push_str(indent);
        out.push_str(text);
        out.push('\n');
    }

    /// Ends streamed text (and the status line) so that what follows starts a line.
    fn end_line(&mut self, out: &mut String) {
        self.clear_status(out);
        if self.mid_line {
            out.push('\n');
            self.mid_line = false;
        }
        self.block = None;
    }

    fn status(&mut self, out: &mut String, message: &str) {
        // Never over streamed text: the transient line would erase it.
        if !self.options.tty || self.mid_line {
            return;
        }
        out.push_str(CLEAR_LINE);
        out.push_str(&self.paint(DIM, &clip(message)));
        self.status_shown = true;
    }

    fn clear_status(&mut self, out: &mut String) {
        if self.status_shown {
            out.push_str(CLEAR_LINE);
            self.status_shown = false;
        }
    }

    fn status_word(&self, status: DoneStatus) -> String {
        let code = if status == DoneStatus::Success { GREEN } else { RED };
        self.paint(code, status.as_str())
    }

    fn paint(&self, code: &str, text: &str) -> String {
        paint(self.options.color, code, text)
    }
}

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("{code}{text}{RESET}")
    } else {
        text.to_owned()
    }
}

fn turns(count: u32) -> String {
    format!(" · {count} turn{}", if count == 1 { "" } else { "s" })
}

fn tokens(input: u64, output: u64) -> String {
    format!(" · {input} in / {output} out tokens")
}

#[cfg(test)]
mod tests {
    use hangar_protocol::{ChatUsage, ProgressKind, Usd};
    use pretty_assertions::assert_eq;
    use serde_json::{Value, json};

    use super::*;

    /// Renders wire events (`(name, data)`, as the server sends them) and joins the output.
    fn render(options: Options, events: &[(&str, Value)]) -> Output {
        let mut renderer = Renderer::new(options);
        let mut all = Output::default();
        for (name, data) in events {
            let event = RunEvent::from_wire(name, data).unwrap();
            let agent = data.get("parent_agent_id").and_then(Value::as_str);
            let out = renderer.event(agent, &event);
            all.stdout.push_str(&out.stdout);
            all.stderr.push_str(&out.stderr);
        }
        all
    }

    fn plain() -> Options {
        Options::default()
    }

    fn text(piece: &str, delta: bool) -> (&'static str, Value) {
        let block = json!({"content_blocks": [{"type": "text", "text": piece}], "index": 0, "delta": delta});
        ("assistant", block)
    }

    fn done(status: &str, result: Option<&str>) -> (&'static str, Value) {
        let usage = serde_json::to_value(ChatUsage {
            input_tokens: 6000,
            output_tokens: 450,
            total_tokens: 6450,
            ..ChatUsage::default()
        })
        .unwrap();
        let done = json!({"seq": 9, "timestamp": "t", "status": status, "result": result,
            "is_error": status != "success", "errors": null, "usage": usage,
            "cost_usd": Usd::from_nanos(27_750_000), "turn_count": 2, "duration_ms": 1234,
            "session_id": null, "run_id": "r1"});
        ("done", done)
    }

    fn call(id: &str, name: &str, input: Value) -> (&'static str, Value) {
        let data = json!({"tool_use_id": id, "tool_name": name, "input": input, "summary": "x"});
        ("tool_call", data)
    }

    fn result(id: &str, name: &str, content: &str, is_error: bool) -> (&'static str, Value) {
        let status = if is_error { "error" } else { "completed" };
        let data = json!({"tool_use_id": id, "tool_name": name, "status": status,
            "content": content, "is_error": is_error});
        ("tool_result", data)
    }

    #[test]
    fn plain_output_streams_text_folds_tools_and_sums_up() {
        let progress = json!({"type": "setup", "message": "Starting"});
        let init = json!({"session_id": "s", "run_id": "r1", "tools": ["Bash"], "model": "m1",
            "conversation_id": "c"});
        let out = render(
            plain(),
            &[
                ("progress", progress),
                ("init", init),
                call(
                    "t1",
                    "Bash",
                    json!({"command": "ls -la\n  /workspace", "timeout": 5}),
                ),
                result("t1", "Bash", "total 8\n\ndrwxr-xr-x 2 a a 4096 .\nfile\n", false),
                text("Two ", true),
                text("files.\nDone", true),
                text("Two files.\nDone", false),
                ("title", json!({"title": "Files"})),
                done("success", Some("Two files.\nDone")),
            ],
        );
        let expected = "⚙ Bash: ls -la /workspace\n  ↳ ok: total 8 (+2 lines)\nTwo files.\nDone\n\
                        done: success · 2 turns · 6000 in / 450 out tokens · $0.027750 · 1.2s\n";
        assert_eq!(out.stdout, expected);
        assert_eq!(out.stderr, "");
    }

    #[test]
    fn parallel_results_are_named_and_errors_go_to_stderr() {
        let error = json!({"error_type": "model_error", "message": "overloaded", "recoverable": false});
        let out = render(
            plain(),
            &[
                call("t1", "Read", json!({"file_path": "/a"})),
                call("t2", "Grep", json!({"pattern": "x".repeat(100), "path": "/"})),
                result("t1", "Read", "", false),
                result("t2", "Grep", "no such file", true),
                text("Partial", true),
                ("error", error),
                done("error", None),
            ],
        );
        let pattern = format!("{}…", "x".repeat(79));
        let expected = format!(
            "⚙ Read: /a\n⚙ Grep: {pattern}\n  ↳ Read ok\n  ↳ error: no such file\nPartial\n\
             done: error · 2 turns · 6000 in / 450 out tokens · $0.027750 · 1.2s\n"
        );
        assert_eq!(out.stdout, expected);
        assert_eq!(out.stderr, "error (model_error): overloaded\n");
    }

    #[test]
    fn subagents_are_indented_and_thinking_is_shown_only_when_asked() {
        let start = json!({"agent_id": "a1", "parent_tool_use_id": "t1", "description": "Look around",
            "subagent_type": "general-purpose"});
        let end = json!({"agent_id": "a1", "parent_tool_use_id": "t1", "status": "success",
            "turn_count": 1, "usage": ChatUsage { input_tokens: 10, output_tokens: 2, ..ChatUsage::default() }});
        let sub_text = json!({"parent_agent_id": "a1", "content_blocks": [{"type": "text", "text": "Found it\nthere"}],
            "index": 0, "delta": true});
        let (_, mut sub_call) = call("t9", "LS", json!({"path": "/workspace"}));
        sub_call["parent_agent_id"] = json!("a1");
        let events = [
            (
                "thinking",
                json!({"content": "Hmm.\nLet me see", "index": 0, "delta": true}),
            ),
            call("t1", "Task", json!({"description": "Look around", "prompt": "…"})),
            ("subagent_start", start),
            ("tool_call", sub_call),
            ("assistant", sub_text),
            ("subagent_end", end),
            result("t1", "Task", "Found it", false),
            done("cancelled", None),
        ];
        let summary = "done: cancelled · 2 turns · 6000 in / 450 out tokens · $0.027750 · 1.2s\n";
        let hidden = render(plain(), &events).stdout;
        assert!(
            hidden.starts_with("⚙ Task: Look around\n▸ general-purpose: Look around\n"),
            "{hidden}"
        );
        assert!(hidden.ends_with(summary), "{hidden}");
        let thinking = Options {
            thinking: true,
            ..plain()
        };
        let shown = render(thinking, &events).stdout;
        let expected = format!(
            "│ Hmm.\n│ Let me see\n⚙ Task: Look around\n▸ general-purpose: Look around\n  ⚙ LS: /workspace\n  \
             Found it\n  there\n◂ general-purpose success · 1 turn · 10 in / 2 out tokens\n  ↳ Task ok: Found it\n\
             {summary}"
        );
        assert_eq!(shown, expected);
    }

    #[test]
    fn the_result_is_shown_when_nothing_streamed_and_a_whole_block_once() {
        let out = render(plain(), &[done("success", Some("Hello"))]);
        assert!(out.stdout.starts_with("Hello\ndone: success"), "{}", out.stdout);
        let whole = render(plain(), &[text("Once", false), done("success", Some("Once"))]);
        assert!(
            whole.stdout.starts_with("Once\ndone: success"),
            "{}",
            whole.stdout
        );
    }

    #[test]
    fn a_terminal_gets_a_transient_status_and_colours_plain_output_none() {
        let tty = Options {
            tty: true,
            color: true,
            err_color: true,
            thinking: false,
        };
        let mut renderer = Renderer::new(tty);
        let status = renderer.event(None, &RunEvent::progress(ProgressKind::Tool, "Running Bash"));
        assert_eq!(status.stdout, "\r\x1b[2K\x1b[2mRunning Bash\x1b[0m");
        let piece = RunEvent::Assistant {
            content_blocks: vec![TextBlock::Text { text: "Hi".into() }],
            index: 0,
            delta: true,
        };
        assert_eq!(renderer.event(None, &piece).stdout, "\r\x1b[2KHi");
        // Mid-line, progress would erase the text: not shown.
        let later = renderer.event(None, &RunEvent::progress(ProgressKind::Generating, "Writing"));
        assert_eq!(later.stdout, "");
        let notice = renderer.notice("reconnecting");
        assert_eq!(notice.stdout, "\n");
        assert_eq!(notice.stderr, "\x1b[33mreconnecting\x1b[0m\n");

        let mut plain = Renderer::new(plain());
        let quiet = plain.event(None, &RunEvent::progress(ProgressKind::Tool, "Running Bash"));
        assert_eq!(quiet, Output::default());
    }
}
