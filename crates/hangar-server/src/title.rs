//! Titles for simple chats and agent conversations: a few words from the title model
//! (`TITLE_MODEL_ID`), or the start of the first message when there is none or it fails.

use hangar_llm::{ContentBlock, Message, ModelRequest, Role, Usage};
use hangar_protocol::Model;
use tokio_util::sync::CancellationToken;

use crate::chat::call;
use crate::state::AppState;

/// A fallback title is the first characters of the user's message.
const FALLBACK_TITLE_CHARS: usize = 50;
/// Longest title kept from the model's answer.
const MAX_TITLE_CHARS: usize = 50;

/// A title, and the title-model call to bill (also when it failed part-way).
pub struct Titled {
    pub title: String,
    pub call: Option<(Model, Usage)>,
}

/// The first characters of the user's message on one line.
pub fn fallback_title(first_message: &str) -> String {
    let line: String = first_message.split_whitespace().collect::<Vec<_>>().join(" ");
    let title: String = line.chars().take(FALLBACK_TITLE_CHARS).collect();
    if title.is_empty() {
        "New chat".to_owned()
    } else {
        title
    }
}

/// Asks the title model for a title of a conversation that began with `question` and
/// `answer`.
pub async fn generate(state: &AppState, question: &str, answer: &str) -> Titled {
    let fallback = fallback_title(question);
    let Some(chain) = state.llm.title_chain(state).await else {
        return Titled {
            title: fallback,
            call: None,
        };
    };
    let prompt = format!(
        "Write a title of at most six words for a conversation that begins like this. Reply with the \
         title only, without quotes.\n\nUser: {}\n\nAssistant: {}",
        question.chars().take(200).collect::<String>(),
        answer.chars().take(300).collect::<String>(),
    );
    let request = ModelRequest {
        model: String::new(),
        system: Vec::new(),
        messages: vec![Message {
            role: Role::User,
            content: vec![ContentBlock::text(prompt)],
        }],
        tools: Vec::new(),
        max_tokens: 100,
        temperature: Some(0.7),
        stop_sequences: Vec::new(),
        thinking_budget: None,
    };
    match call(state, &chain, &request, None, CancellationToken::new()).await {
        Ok(answer) => {
            let title: String = answer
                .text
                .trim()
                .trim_matches(['"', '\'', '「', '」'])
                .chars()
                .take(MAX_TITLE_CHARS)
                .collect();
            let title = title.trim();
            Titled {
                title: if title.is_empty() {
                    fallback
                } else {
                    title.to_owned()
                },
                call: Some((answer.model, answer.usage)),
            }
        }
        Err((err, partial)) => {
            tracing::warn!(error = %err, "title generation failed; using the first message");
            Titled {
                title: fallback,
                call: partial,
            }
        }
    }
}
