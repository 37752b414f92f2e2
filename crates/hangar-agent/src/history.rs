//! Model-facing history: repairing what was stored so a provider accepts it, and placing
//! prompt-cache marks.
//!
//! Stored history can be imperfect: a run interrupted by a crash may end with tool calls that
//! never got results, a cancelled run may leave two user turns in a row. [`normalise`] makes it
//! valid for every provider without losing what the model saw: turns of the same role merge,
//! unanswered tool calls get an error result saying they were interrupted, and results whose
//! call is not in the preceding turn are dropped.

use std::collections::BTreeSet;

use hangar_llm::{CacheTtl, ContentBlock, Message, ModelRequest, Role, ToolResultContent};

/// What an unanswered tool call is told when the history is repaired.
const INTERRUPTED: &str = "The tool call was interrupted before it returned a result.";

pub fn normalise(messages: Vec<Message>) -> Vec<Message> {
    let mut merged: Vec<Message> = Vec::with_capacity(messages.len());
    for message in messages {
        if message.content.is_empty() {
            continue;
        }
        match merged.last_mut() {
            Some(last) if last.role == message.role => last.content.extend(message.content),
            _ => merged.push(message),
        }
    }
    let mut out: Vec<Message> = Vec::with_capacity(merged.len() + 1);
    let mut pending: Vec<String> = Vec::new();
    for mut message in merged {
        match message.role {
            Role::User => {
                let expected: BTreeSet<String> = pending.iter().cloned().collect();
                let answered: BTreeSet<String> = message
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::ToolResult { tool_use_id, .. } => Some(tool_use_id.clone()),
                        _ => None,
                    })
                    .collect();
                message.content.retain(|b| match b {
                    ContentBlock::ToolResult { tool_use_id, .. } => expected.contains(tool_use_id),
                    _ => true,
                });
                let missing: Vec<ContentBlock> = pending
                    .iter()
                    .filter(|id| !answered.contains(*id))
                    .map(|id| interrupted(id))
                    .collect();
                message.content.splice(0..0, missing);
                pending.clear();
                if !message.content.is_empty() {
                    out.push(message);
                }
            }
            Role::Assistant => {
                if !pending.is_empty() {
                    let results = pending.drain(..).map(|id| interrupted(&id)).collect();
                    out.push(Message {
                        role: Role::User,
                        content: results,
                    });
                }
                if out.is_empty() {
                    out.push(Message::user("(conversation continued)"));
                }
                pending = tool_use_ids(&message);
                out.push(message);
            }
        }
    }
    if !pending.is_empty() {
        out.push(Message {
            role: Role::User,
            content: pending.iter().map(|id| interrupted(id)).collect(),
        });
    }
    out
}

pub fn tool_use_ids(message: &Message) -> Vec<String> {
    message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn interrupted(id: &str) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.to_owned(),
        content: vec![ToolResultContent::Text {
            text: INTERRUPTED.to_owned(),
        }],
        is_error: true,
        cache: None,
    }
}

/// Marks the system prompt, the tool list and the newest message for Anthropic prompt caching
/// (three of the four allowed breakpoints), clearing any older marks, so each call reads the
/// previous call's prefix from the cache and writes the new tail.
pub fn mark_cache(request: &mut ModelRequest) {
    for block in &mut request.system {
        block.cache = None;
    }
    if let Some(last) = request.system.last_mut() {
        last.cache = Some(CacheTtl::FiveMinutes);
    }
    for tool in &mut request.tools {
        tool.cache = None;
    }
    if let Some(last) = request.tools.last_mut() {
        last.cache = Some(CacheTtl::FiveMinutes);
    }
    for message in &mut request.messages {
        for block in &mut message.content {
            set_cache(block, None);
        }
    }
    if let Some(block) = request
        .messages
        .last_mut()
        .and_then(|m| m.content.iter_mut().rev().find(|b| cacheable(b)))
    {
        set_cache(block, Some(CacheTtl::FiveMinutes));
    }
}

fn cacheable(block: &ContentBlock) -> bool {
    matches!(block, ContentBlock::Text { .. } | ContentBlock::ToolResult { .. })
}

fn set_cache(block: &mut ContentBlock, ttl: Option<CacheTtl>) {
    match block {
        ContentBlock::Text { cache, .. } | ContentBlock::ToolResult { cache, .. } => *cache = ttl,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn tool_use(id: &str) -> ContentBlock {
        ContentBlock::ToolUse {
            id: id.into(),
            name: "Bash".into(),
            input: json!({}),
        }
    }

    fn result(id: &str, text: &str) -> ContentBlock {
        ContentBlock::ToolResult {
            tool_use_id: id.into(),
            content: vec![ToolResultContent::Text { text: text.into() }],
            is_error: false,
            cache: None,
        }
    }

    #[test]
    fn dangling_tool_calls_get_interrupted_results_and_user_turns_merge() {
        let history = vec![
            Message::user("hi"),
            Message {
                role: Role::Assistant,
                content: vec![ContentBlock::text("running"), tool_use("a"), tool_use("b")],
            },
            Message {
                role: Role::User,
                content: vec![result("b", "ok"), result("zzz", "orphan")],
            },
            Message::user("next question"),
        ];
        let fixed = normalise(history);
        assert_eq!(fixed.len(), 3);
        assert_eq!(fixed[2].role, Role::User);
        assert_eq!(
            fixed[2].content,
            vec![
                interrupted("a"),
                result("b", "ok"),
                ContentBlock::text("next question")
            ]
        );
    }

    #[test]
    fn history_ending_in_tool_calls_is_closed() {
        let fixed = normalise(vec![
            Message::user("go"),
            Message {
                role: Role::Assistant,
                content: vec![tool_use("x")],
            },
        ]);
        assert_eq!(fixed.len(), 3);
        assert_eq!(fixed[2].content, vec![interrupted("x")]);
    }

    #[test]
    fn only_the_newest_cacheable_block_is_marked() {
        let mut request = ModelRequest {
            model: String::new(),
            system: vec![hangar_llm::SystemBlock {
                text: "s".into(),
                cache: None,
            }],
            messages: vec![
                Message::user("one"),
                Message::assistant("two"),
                Message {
                    role: Role::User,
                    content: vec![result("t", "r")],
                },
            ],
            tools: Vec::new(),
            max_tokens: 10,
            temperature: None,
            stop_sequences: Vec::new(),
            thinking_budget: None,
        };
        mark_cache(&mut request);
        mark_cache(&mut request);
        assert_eq!(request.system[0].cache, Some(CacheTtl::FiveMinutes));
        let marks: usize = request
            .messages
            .iter()
            .flat_map(|m| &m.content)
            .filter(|b| {
                matches!(
                    b,
                    ContentBlock::Text { cache: Some(_), .. }
                        | ContentBlock::ToolResult { cache: Some(_), .. }
                )
            })
            .count();
        assert_eq!(marks, 1);
    }
}
