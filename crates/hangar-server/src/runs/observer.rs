//! The server's [`RunObserver`]: numbers and streams the loop's events, bills every model call
//! (one usage row each, priced by the model that answered), stores the main agent's history as
//! it grows, and gathers the events that make up the assistant's turn in the message log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hangar_agent::{ModelCall, RunObserver};
use hangar_llm::{Message, Prices, Usage, cost_of};
use hangar_protocol::{Model, ModelId, RunEvent, TenantId, TextBlock, Usd};
use hangar_store::{HistoryEntry, HistoryKind, NewUsage, Store};
use serde_json::{Value, json};
use uuid::Uuid;

use super::live::LiveRun;
use crate::llm::usage_row;
use crate::sse::timestamp;

/// What a run has been billed so far: the sum of the usage rows written for it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bill {
    pub usage: Usage,
    pub cost: Usd,
}

pub struct ServerObserver {
    store: Arc<dyn Store>,
    live: Arc<LiveRun>,
    tenant_id: TenantId,
    user_id: String,
    conversation_id: Uuid,
    /// Prices of the models that may answer (the chain), by id.
    models: HashMap<String, Model>,
    bill: Mutex<Bill>,
    /// The run's turn for the message log: whole blocks, deltas joined.
    log: Mutex<Vec<Value>>,
    /// Signalled when a tool that may change workspace files finished (for intermediate syncs).
    pub files_changed: tokio::sync::Notify,
}

/// Tools whose results may mean changed workspace files.
const WRITING_TOOLS: &[&str] = &["Bash", "Write", "Edit", "MultiEdit"];

impl ServerObserver {
    pub fn new(
        store: Arc<dyn Store>,
        live: Arc<LiveRun>,
        user_id: String,
        models: impl IntoIterator<Item = Model>,
    ) -> Self {
        Self {
            store,
            tenant_id: live.tenant_id.clone(),
            conversation_id: live.conversation_id,
            live,
            user_id,
            models: models
                .into_iter()
                .map(|m| (m.model_id.as_str().to_owned(), m))
                .collect(),
            bill: Mutex::new(Bill::default()),
            log: Mutex::new(Vec::new()),
            files_changed: tokio::sync::Notify::new(),
        }
    }

    pub fn bill(&self) -> Bill {
        self.bill.lock().map(|b| *b).unwrap_or_default()
    }

    /// The events of the assistant's turn for the message log (contract §2.10).
    pub fn log_events(&self) -> Vec<Value> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn log_event(&self, agent_id: Option<&str>, event: &RunEvent) {
        if !event.is_history() {
            return;
        }
        let Ok(mut log) = self.log.lock() else {
            return;
        };
        let parent = agent_id.map(str::to_owned);
        // Streamed pieces of one block become one whole-block event.
        if let RunEvent::Assistant {
            content_blocks,
            index,
            ..
        } = event
            && let Some(last) = log.last_mut()
            && last["event"] == "assistant"
            && last["index"] == json!(index)
            && last.get("parent_agent_id").and_then(Value::as_str) == parent.as_deref()
        {
            let piece: String = content_blocks
                .iter()
                .map(|TextBlock::Text { text }| text.as_str())
                .collect();
            if let Some(text) = last["content_blocks"][0]["text"].as_str() {
                last["content_blocks"][0]["text"] = Value::String(format!("{text}{piece}"));
                return;
            }
        }
        if let RunEvent::Thinking { content, index, .. } = event
            && let Some(last) = log.last_mut()
            && last["event"] == "thinking"
            && last["index"] == json!(index)
            && last.get("parent_agent_id").and_then(Value::as_str) == parent.as_deref()
            && let Some(text) = last["content"].as_str()
        {
            last["content"] = Value::String(format!("{text}{content}"));
            return;
        }
        let mut data = event.wire_data(0, &timestamp(), agent_id);
        data.remove("seq");
        data.insert("event".into(), event.name().into());
        data.insert("delta".into(), false.into());
        log.push(Value::Object(data));
    }
}

#[async_trait]
impl RunObserver for ServerObserver {
    async fn event(&self, agent_id: Option<&str>, event: RunEvent) {
        if let RunEvent::ToolResult { tool_name, .. } = &event
            && WRITING_TOOLS.contains(&tool_name.as_str())
        {
            self.files_changed.notify_one();
        }
        self.log_event(agent_id, &event);
        self.live.publish(agent_id, &event);
    }

    async fn model_call(&self, call: &ModelCall) {
        self.record_call(&call.model_id, self.models.get(&call.model_id), &call.usage)
            .await;
    }

    async fn history(&self, message: &Message) {
        self.append_history(HistoryKind::Message, message).await;
    }

    async fn compacted(&self, summary: &Message) {
        self.append_history(HistoryKind::Summary, summary).await;
    }
}

impl ServerObserver {
    /// Bills a call made for the run outside the loop (the title), priced by `model`.
    pub async fn bill_call(&self, model: &Model, usage: &Usage) {
        self.record_call(model.model_id.as_str(), Some(model), usage)
            .await;
    }

    /// One usage row for a model call, added to the bill once stored.
    async fn record_call(&self, model_id: &str, model: Option<&Model>, usage: &Usage) {
        let cost = model
            .map(|m| cost_of(usage, &Prices::from(m)))
            .unwrap_or_default();
        let row = NewUsage {
            tenant_id: Some(self.tenant_id.clone()),
            user_id: Some(self.user_id.clone()),
            model_id: model_id.parse::<ModelId>().ok(),
            conversation_id: Some(self.conversation_id),
            run_id: Some(self.live.run_id),
            ..usage_row(usage, cost)
        };
        match self.store.record_usage(&row).await {
            Ok(_) => {
                if let Ok(mut bill) = self.bill.lock() {
                    bill.usage.add(usage);
                    bill.cost = bill.cost.saturating_add(cost);
                }
            }
            Err(err) => {
                tracing::error!(run_id = %self.live.run_id, error = %err, "could not record usage")
            }
        }
    }

    async fn append_history(&self, kind: HistoryKind, message: &Message) {
        let entry = match serde_json::to_value(message) {
            Ok(message) => HistoryEntry { kind, message },
            Err(err) => {
                tracing::error!(error = %err, "history message not serialisable");
                return;
            }
        };
        if let Err(err) = self
            .store
            .append_history(self.conversation_id, self.live.run_id, &[entry])
            .await
        {
            tracing::error!(run_id = %self.live.run_id, error = %err, "could not store history");
        }
    }
}
