//! One simple-chat exchange: the user's message in, the model's answer streamed out as
//! `text_delta` events, then persisted with its usage, cost and (first time) a title, and a final
//! `done` — exactly once, whatever happened. The exchange runs as its own task: a client that
//! disconnects does not stop the answer from being stored and billed.

use futures::StreamExt;
use hangar_llm::{LlmError, Message, ModelRequest, Prices, StreamEvent, SystemBlock, Usage, cost_of};
use hangar_protocol::{ChatRole, ChatUsage, Model, ModelId, SimpleChat, SimpleChatMessage, Usd};
use hangar_store::NewUsage;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::llm::{Chain, usage_row};
use crate::sse::EventSink;
use crate::state::AppState;

/// `maxTokens` and `temperature` of the original's simple chat.
const MAX_TOKENS: u32 = 4096;
const TEMPERATURE: f32 = 1.0;

/// What an exchange works on.
pub struct Exchange {
    pub chat: SimpleChat,
    pub chain: Chain,
    /// The conversation so far, ending with the user's new message.
    pub history: Vec<SimpleChatMessage>,
}

/// The usage of the calls an exchange made, and what they cost.
#[derive(Debug, Default)]
struct Bill {
    usage: Usage,
    cost: Usd,
}

/// Writes one usage row for a call and adds it to the bill.
async fn record(state: &AppState, chat: &SimpleChat, model: &Model, usage: &Usage, bill: &mut Bill) {
    let cost = cost_of(usage, &Prices::from(model));
    let row = NewUsage {
        tenant_id: Some(chat.tenant_id.clone()),
        user_id: Some(chat.user_id.clone()),
        model_id: Some(model.model_id.clone()),
        simple_chat_id: Some(chat.chat_id),
        ..usage_row(usage, cost)
    };
    match state.store.record_usage(&row).await {
        Ok(_) => {
            bill.usage.add(usage);
            bill.cost = bill.cost.saturating_add(cost);
        }
        Err(err) => tracing::error!(error = %err, chat_id = %chat.chat_id, "could not record usage"),
    }
}

/// The outcome of streaming one call: the text, its usage, and which model answered.
pub(crate) struct Answer {
    pub text: String,
    pub usage: Usage,
    pub model: Model,
}

/// Streams one call through the gateway, forwarding text deltas when `sink` is given. On a
/// mid-stream failure the usage seen so far is still returned with the error, to be billed.
pub(crate) async fn call(
    state: &AppState,
    chain: &Chain,
    request: &ModelRequest,
    mut sink: Option<&mut EventSink>,
    cancel: CancellationToken,
) -> Result<Answer, (LlmError, Option<(Model, Usage)>)> {
    let mut stream = state
        .llm
        .stream(chain, request, cancel)
        .await
        .map_err(|err| (err, None))?;
    let model = stream.model;
    let mut text = String::new();
    let mut usage = Usage::default();
    while let Some(item) = stream.events.next().await {
        match item {
            Ok(StreamEvent::TextDelta { text: delta, .. }) => {
                if let Some(sink) = sink.as_deref_mut() {
                    sink.send("text_delta", json!({ "content": delta })).await;
                }
                text.push_str(&delta);
            }
            Ok(StreamEvent::Usage(latest)) => usage = latest,
            Ok(_) => {}
            Err(err) => return Err((err, Some((model, usage)))),
        }
    }
    Ok(Answer { text, usage, model })
}

fn request(chat: &SimpleChat, history: &[SimpleChatMessage]) -> ModelRequest {
    let messages = history
        .iter()
        .map(|m| match m.role {
            ChatRole::User => Message::user(m.content.clone()),
            ChatRole::Assistant => Message::assistant(m.content.clone()),
        })
        .collect();
    ModelRequest {
        model: String::new(),
        system: vec![SystemBlock {
            text: chat.system_prompt.clone(),
            cache: None,
        }],
        messages,
        tools: Vec::new(),
        max_tokens: MAX_TOKENS,
        temperature: Some(TEMPERATURE),
        stop_sequences: Vec::new(),
        thinking_budget: None,
    }
}

/// Runs the exchange to its end and emits `done` exactly once.
pub async fn run(state: AppState, exchange: Exchange, mut sink: EventSink, cancel: CancellationToken) {
    let Exchange { chat, chain, history } = exchange;
    let mut bill = Bill::default();
    let request = request(&chat, &history);
    let outcome = call(&state, &chain, &request, Some(&mut sink), cancel).await;
    let (status, title, answered_by) = match outcome {
        Ok(answer) => {
            record(&state, &chat, &answer.model, &answer.usage, &mut bill).await;
            if let Err(err) = state
                .store
                .append_simple_chat_message(chat.chat_id, ChatRole::Assistant, &answer.text)
                .await
            {
                tracing::error!(error = %err, chat_id = %chat.chat_id, "could not store the answer");
            }
            let mut title = None;
            if chat.title.is_none() && !answer.text.trim().is_empty() {
                let question = history
                    .iter()
                    .find(|m| m.role == ChatRole::User)
                    .map_or("", |m| m.content.as_str());
                let titled = crate::title::generate(&state, question, &answer.text).await;
                if let Some((model, usage)) = &titled.call {
                    record(&state, &chat, model, usage, &mut bill).await;
                }
                match state
                    .store
                    .set_simple_chat_title(chat.chat_id, &titled.title)
                    .await
                {
                    Ok(()) => title = Some(titled.title),
                    Err(err) => tracing::error!(error = %err, "could not store the title"),
                }
            }
            ("success", title, Some(answer.model.model_id))
        }
        Err((err, partial)) => {
            let answered_by = partial.as_ref().map(|(model, _)| model.model_id.clone());
            if let Some((model, usage)) = partial {
                record(&state, &chat, &model, &usage, &mut bill).await;
            }
            tracing::warn!(error = %err, kind = err.kind(), chat_id = %chat.chat_id, "simple chat call failed");
            sink.send(
                "error",
                json!({ "error_type": err.kind(), "message": err.to_string(), "recoverable": err.is_retryable() }),
            )
            .await;
            ("error", None, answered_by)
        }
    };
    sink.send(
        "done",
        json!({
            "status": status,
            "title": title,
            "model_id": answered_by.as_ref().map(ModelId::as_str),
            "usage": ChatUsage::from(&bill.usage),
            "cost_usd": bill.cost,
        }),
    )
    .await;
}
