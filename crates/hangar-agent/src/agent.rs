//! The loop: call the model with the history and the tools, carry out the tool calls it asks
//! for, feed the results back, and repeat until it stops, a limit is reached, or the run is
//! cancelled.
//!
//! Every step is reported through the [`RunObserver`]: text and thinking as they stream, each
//! tool call and its result, subagents' start and end, each model call's usage (also a call
//! broken off midway), and every message added to the main agent's history — so the history
//! stored is exactly what the model saw, and a cancelled or crashed run leaves it consistent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use hangar_llm::{
    BlockKind, ContentBlock, LlmError, Message, ModelRequest, Role, StopReason, StreamEvent, SystemBlock,
    ToolResultContent, Usage,
};
use hangar_protocol::{ChatUsage, DoneStatus, ProgressKind, RunEvent, TextBlock, ToolStatus};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::context::context_tokens;
use crate::history::{mark_cache, normalise};
use crate::model::ModelClient;
use crate::observer::{ModelCall, RunObserver};
use crate::tools::{TASK_TOOL, TaskInput, ToolRegistry, parse_input};
use crate::{ToolContext, ToolError, ToolOutput};

/// String values in `tool_call` events are cut to this many characters (contract §2.2).
const EVENT_INPUT_CHARS: usize = 500;
/// What the summary of compacted turns is asked to fit in.
const SUMMARY_MAX_TOKENS: u32 = 4096;

/// How one agent (the main one or a subagent) runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub system: Vec<SystemBlock>,
    /// Model calls per run.
    pub max_turns: u32,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub thinking_budget: Option<u32>,
    /// Place Anthropic prompt-cache marks.
    pub prompt_caching: bool,
    /// The model's context window in tokens.
    pub context_window: u64,
    /// Summarise older turns before a run when the context reaches this fraction of the window.
    pub compact_ratio: f64,
    /// Wall time of the whole run.
    pub time_limit: Option<Duration>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            system: Vec::new(),
            max_turns: 50,
            max_tokens: 16_000,
            temperature: None,
            thinking_budget: None,
            prompt_caching: false,
            context_window: 200_000,
            compact_ratio: 0.8,
            time_limit: None,
        }
    }
}

/// What subagents started by `Task` use.
#[derive(Clone)]
pub struct Subagents {
    pub client: Arc<dyn ModelClient>,
    /// Their tools: the main agent's without `Task`.
    pub tools: Arc<ToolRegistry>,
    pub config: AgentConfig,
}

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The model finished its answer.
    Completed,
    MaxTurns,
    TimeLimit,
    Cancelled,
    /// A model call failed (after retries and fallbacks) or a tool failed fatally.
    Failed {
        error_type: String,
        message: String,
    },
}

impl Stop {
    pub fn done_status(&self) -> DoneStatus {
        match self {
            Self::Completed => DoneStatus::Success,
            Self::Cancelled => DoneStatus::Cancelled,
            Self::MaxTurns | Self::TimeLimit | Self::Failed { .. } => DoneStatus::Error,
        }
    }

    /// The `error` event describing the stop, if it was not a normal end.
    pub fn error_event(&self) -> Option<RunEvent> {
        let (error_type, message, recoverable) = match self {
            Self::Completed | Self::Cancelled => return None,
            Self::MaxTurns => (
                "max_turns_reached",
                "The run reached its turn limit; send another message to continue.".to_owned(),
                true,
            ),
            Self::TimeLimit => (
                "time_limit_reached",
                "The run reached its time limit; send another message to continue.".to_owned(),
                true,
            ),
            Self::Failed { error_type, message } => (error_type.as_str(), message.clone(), false),
        };
        Some(RunEvent::Error {
            error_type: error_type.to_owned(),
            message,
            recoverable,
        })
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stop: Stop,
    /// The text of the model's last answer.
    pub final_text: Option<String>,
    /// Model calls made by this agent.
    pub turns: u32,
    /// Tokens of every call, subagents' included.
    pub usage: Usage,
    /// Size of the context after the last call (what the next call starts from).
    pub context_tokens: u64,
}

pub struct Agent {
    client: Arc<dyn ModelClient>,
    tools: Arc<ToolRegistry>,
    observer: Arc<dyn RunObserver>,
    config: AgentConfig,
    subagents: Option<Subagents>,
    agent_id: Option<String>,
}

/// One tool call the model asked for.
struct Call {
    id: String,
    name: String,
    input: Value,
    /// Why the input could not be read, when the model sent broken JSON.
    malformed: Option<String>,
}

/// The result of one model call.
struct Reply {
    content: Vec<ContentBlock>,
    calls: Vec<Call>,
    stop: Option<StopReason>,
}

/// A block being streamed.
enum Partial {
    Text(String),
    Thinking { text: String, signature: String },
    Redacted(String),
    ToolUse { id: String, name: String, json: String },
}

impl Agent {
    pub fn new(
        client: Arc<dyn ModelClient>,
        tools: Arc<ToolRegistry>,
        observer: Arc<dyn RunObserver>,
        config: AgentConfig,
    ) -> Self {
        Self {
            client,
            tools,
            observer,
            config,
            subagents: None,
            agent_id: None,
        }
    }

    /// Lets the model start subagents with `Task`.
    pub fn with_subagents(mut self, subagents: Subagents) -> Self {
        self.subagents = Some(subagents);
        self
    }

    async fn emit(&self, event: RunEvent) {
        self.observer.event(self.agent_id.as_deref(), event).await;
    }

    async fn record_history(&self, message: &Message) {
        if self.agent_id.is_none() {
            self.observer.history(message).await;
        }
    }

    /// Runs `user` on top of `history`. `prior_context` is the context size the conversation
    /// reached last time, to decide whether to compact first.
    pub fn run<'a>(
        &'a self,
        history: Vec<Message>,
        user: Message,
        prior_context: u64,
        ctx: &'a ToolContext,
    ) -> BoxFuture<'a, Outcome> {
        // Boxed with an explicit `Send` type: a subagent runs this inside a tool call of its
        // parent, and the recursion needs a nameable future.
        Box::pin(async move {
            let cancel = ctx.cancel.child_token();
            let timed_out = Arc::new(AtomicBool::new(false));
            let _timer = self.config.time_limit.map(|limit| {
                let (cancel, timed_out) = (cancel.clone(), timed_out.clone());
                DropGuard(tokio::spawn(async move {
                    tokio::time::sleep(limit).await;
                    timed_out.store(true, Ordering::SeqCst);
                    cancel.cancel();
                }))
            });
            let ctx = ctx.with_cancel(cancel.clone());
            let mut outcome = self.run_inner(history, user, prior_context, &ctx).await;
            if outcome.stop == Stop::Cancelled && timed_out.load(Ordering::SeqCst) {
                outcome.stop = Stop::TimeLimit;
            }
            outcome
        })
    }

    async fn run_inner(
        &self,
        history: Vec<Message>,
        user: Message,
        prior_context: u64,
        ctx: &ToolContext,
    ) -> Outcome {
        let mut outcome = Outcome {
            stop: Stop::Completed,
            final_text: None,
            turns: 0,
            usage: Usage::default(),
            context_tokens: prior_context,
        };
        let mut messages = normalise(history);
        let threshold = (self.config.context_window as f64 * self.config.compact_ratio) as u64;
        if !messages.is_empty() && prior_context >= threshold {
            match self
                .compact(&messages, prior_context, &ctx.cancel, &mut outcome)
                .await
            {
                Ok(summary) => messages = vec![summary],
                Err(stop) => {
                    outcome.stop = stop;
                    return outcome;
                }
            }
        }
        self.record_history(&user).await;
        messages.push(user);
        // The new turn merges with a stored turn that ended on the user's side (a summary, or
        // the results of interrupted tool calls).
        let mut messages = normalise(messages);
        loop {
            if ctx.cancel.is_cancelled() {
                outcome.stop = Stop::Cancelled;
                return outcome;
            }
            if outcome.turns >= self.config.max_turns {
                outcome.stop = Stop::MaxTurns;
                return outcome;
            }
            let request = self.request(&messages);
            outcome.turns += 1;
            let reply = match self.call(&request, &ctx.cancel, &mut outcome).await {
                Ok(reply) => reply,
                Err((stop, partial)) => {
                    // What streamed before the break is kept, so the next run knows what the
                    // user saw; half-received tool calls are not.
                    if !partial.is_empty() {
                        let message = Message {
                            role: Role::Assistant,
                            content: partial,
                        };
                        self.record_history(&message).await;
                    }
                    outcome.stop = stop;
                    return outcome;
                }
            };
            let text = text_of(&reply.content);
            if !text.is_empty() {
                outcome.final_text = Some(text);
            }
            let message = Message {
                role: Role::Assistant,
                content: reply.content,
            };
            self.record_history(&message).await;
            messages.push(message);
            if reply.calls.is_empty() {
                if reply.stop == Some(StopReason::MaxTokens) {
                    tracing::debug!("answer cut at max_tokens");
                }
                outcome.stop = Stop::Completed;
                return outcome;
            }
            let (results, stop) = self.run_tools(reply.calls, ctx, &mut outcome).await;
            let message = Message {
                role: Role::User,
                content: results,
            };
            self.record_history(&message).await;
            messages.push(message);
            if let Some(stop) = stop {
                outcome.stop = stop;
                return outcome;
            }
        }
    }

    fn request(&self, messages: &[Message]) -> ModelRequest {
        let mut request = ModelRequest {
            model: String::new(),
            system: self.config.system.clone(),
            messages: messages.to_vec(),
            tools: self.tools.specs(),
            max_tokens: self.config.max_tokens,
            temperature: self.config.temperature,
            stop_sequences: Vec::new(),
            thinking_budget: self.config.thinking_budget,
        };
        if self.config.prompt_caching {
            mark_cache(&mut request);
        }
        request
    }

    /// Streams one model call, reporting text and thinking as it arrives and billing it.
    /// On failure returns why, and the complete text and thinking blocks received.
    async fn call(
        &self,
        request: &ModelRequest,
        cancel: &CancellationToken,
        outcome: &mut Outcome,
    ) -> Result<Reply, (Stop, Vec<ContentBlock>)> {
        let mut stream = match self.client.stream(request, cancel.clone()).await {
            Ok(stream) => stream,
            Err(err) => return Err((stop_for(&err, cancel), Vec::new())),
        };
        let mut blocks: BTreeMap<usize, Partial> = BTreeMap::new();
        let mut usage = Usage::default();
        let mut stop_reason = None;
        let mut failure = None;
        while let Some(item) = stream.events.next().await {
            let event = match item {
                Ok(event) => event,
                Err(err) => {
                    failure = Some(stop_for(&err, cancel));
                    break;
                }
            };
            match event {
                StreamEvent::BlockStart { index, block } => {
                    let partial = match block {
                        BlockKind::Text => Partial::Text(String::new()),
                        BlockKind::Thinking => {
                            self.progress(ProgressKind::Thinking, "Thinking…").await;
                            Partial::Thinking {
                                text: String::new(),
                                signature: String::new(),
                            }
                        }
                        BlockKind::RedactedThinking { data } => Partial::Redacted(data),
                        BlockKind::ToolUse { id, name } => Partial::ToolUse {
                            id,
                            name,
                            json: String::new(),
                        },
                    };
                    blocks.insert(index, partial);
                }
                StreamEvent::TextDelta { index, text } => {
                    let entry = blocks
                        .entry(index)
                        .or_insert_with(|| Partial::Text(String::new()));
                    if let Partial::Text(buffer) = entry {
                        if buffer.is_empty() {
                            self.progress(ProgressKind::Generating, "Writing the answer…")
                                .await;
                        }
                        buffer.push_str(&text);
                    }
                    self.emit(RunEvent::Assistant {
                        content_blocks: vec![TextBlock::Text { text }],
                        index,
                        delta: true,
                    })
                    .await;
                }
                StreamEvent::ThinkingDelta { index, thinking } => {
                    if let Some(Partial::Thinking { text, .. }) = blocks.get_mut(&index) {
                        text.push_str(&thinking);
                    }
                    self.emit(RunEvent::Thinking {
                        content: thinking,
                        index,
                        delta: true,
                    })
                    .await;
                }
                StreamEvent::SignatureDelta { index, signature } => {
                    if let Some(Partial::Thinking { signature: s, .. }) = blocks.get_mut(&index) {
                        s.push_str(&signature);
                    }
                }
                StreamEvent::ToolInputDelta { index, partial_json } => {
                    if let Some(Partial::ToolUse { json, .. }) = blocks.get_mut(&index) {
                        json.push_str(&partial_json);
                    }
                }
                StreamEvent::Usage(latest) => usage = latest,
                StreamEvent::Stop { reason, .. } => stop_reason = Some(reason),
                StreamEvent::MessageStart { .. } | StreamEvent::BlockStop { .. } | StreamEvent::Ping => {}
            }
        }
        outcome.usage.add(&usage);
        outcome.context_tokens = context_tokens(&usage).max(1);
        self.observer
            .model_call(&ModelCall {
                model_id: stream.model_id.clone(),
                usage,
                agent_id: self.agent_id.clone(),
            })
            .await;
        if let Some(stop) = failure {
            let partial = blocks
                .into_values()
                .filter_map(|partial| match partial {
                    Partial::Text(text) if !text.is_empty() => Some(ContentBlock::text(text)),
                    _ => None,
                })
                .collect();
            return Err((stop, partial));
        }
        let mut content = Vec::with_capacity(blocks.len());
        let mut calls = Vec::new();
        for partial in blocks.into_values() {
            match partial {
                Partial::Text(text) => {
                    if !text.is_empty() {
                        content.push(ContentBlock::text(text));
                    }
                }
                Partial::Thinking { text, signature } => content.push(ContentBlock::Thinking {
                    thinking: text,
                    signature,
                }),
                Partial::Redacted(data) => content.push(ContentBlock::RedactedThinking { data }),
                Partial::ToolUse { id, name, json } => {
                    let (input, malformed) = parse_tool_json(&json);
                    content.push(ContentBlock::ToolUse {
                        id: id.clone(),
                        name: name.clone(),
                        input: input.clone(),
                    });
                    calls.push(Call {
                        id,
                        name,
                        input,
                        malformed,
                    });
                }
            }
        }
        Ok(Reply {
            content,
            calls,
            stop: stop_reason,
        })
    }

    async fn progress(&self, kind: ProgressKind, message: &str) {
        self.emit(RunEvent::progress(kind, message)).await;
    }

    /// Carries out the calls of one turn: consecutive read-only calls together, the others one
    /// at a time, results in the order of the calls. Returns the tool-result blocks (one per
    /// call, whatever happened) and a reason to stop the run, if any.
    async fn run_tools(
        &self,
        calls: Vec<Call>,
        ctx: &ToolContext,
        outcome: &mut Outcome,
    ) -> (Vec<ContentBlock>, Option<Stop>) {
        let mut results = Vec::with_capacity(calls.len());
        let mut stop = None;
        let mut batches: Vec<Vec<Call>> = Vec::new();
        for call in calls {
            let parallel = call.malformed.is_none() && self.tools.read_only(&call.name);
            match batches.last_mut() {
                Some(batch) if parallel && batch.iter().all(|c| self.tools.read_only(&c.name)) => {
                    batch.push(call)
                }
                _ => batches.push(vec![call]),
            }
        }
        for batch in batches {
            if stop.is_some() || ctx.cancel.is_cancelled() {
                stop.get_or_insert(Stop::Cancelled);
                for call in &batch {
                    results.push(result_block(
                        &call.id,
                        &ToolOutput::error("Not run: the run was stopped."),
                    ));
                }
                continue;
            }
            for call in &batch {
                self.announce(call).await;
            }
            let outputs = futures::future::join_all(batch.iter().map(|call| self.execute(call, ctx))).await;
            for (call, (output, extra)) in batch.iter().zip(outputs) {
                if let Some(extra) = extra {
                    outcome.usage.add(&extra);
                }
                let output = match output {
                    Ok(output) => output,
                    Err(ToolError::Failed(message)) => ToolOutput::error(message),
                    Err(ToolError::Cancelled) => {
                        stop.get_or_insert(Stop::Cancelled);
                        ToolOutput::error("Cancelled by the user.")
                    }
                    Err(ToolError::Fatal(message)) => {
                        stop.get_or_insert(Stop::Failed {
                            error_type: "tool_error".to_owned(),
                            message: format!("{} failed: {message}", call.name),
                        });
                        ToolOutput::error(format!("Internal error: {message}"))
                    }
                };
                self.emit(RunEvent::ToolResult {
                    tool_use_id: call.id.clone(),
                    tool_name: call.name.clone(),
                    status: if output.is_error {
                        ToolStatus::Error
                    } else {
                        ToolStatus::Completed
                    },
                    content: output.text_content(),
                    is_error: output.is_error,
                })
                .await;
                results.push(result_block(&call.id, &output));
            }
        }
        (results, stop)
    }

    async fn announce(&self, call: &Call) {
        self.emit(RunEvent::Progress {
            kind: ProgressKind::Tool,
            message: format!("Running {}…", call.name),
            tool_use_id: Some(call.id.clone()),
            tool_name: Some(call.name.clone()),
            tool_status: Some(ToolStatus::Running),
        })
        .await;
        self.emit(RunEvent::ToolCall {
            tool_use_id: call.id.clone(),
            tool_name: call.name.clone(),
            input: cut_strings(&call.input),
            summary: format!("tool execution: {}", call.name),
        })
        .await;
    }

    /// One call: validated, then run (or the subagent started). Also returns the usage of a
    /// subagent's calls.
    async fn execute(
        &self,
        call: &Call,
        ctx: &ToolContext,
    ) -> (Result<ToolOutput, ToolError>, Option<Usage>) {
        if let Some(reason) = &call.malformed {
            return (Err(ToolError::Failed(reason.clone())), None);
        }
        if let Err(message) = self.tools.validate(&call.name, &call.input) {
            return (Err(ToolError::Failed(message)), None);
        }
        if call.name == TASK_TOOL && self.tools.is_loop_tool(TASK_TOOL) {
            return match parse_input::<TaskInput>(TASK_TOOL, call.input.clone()) {
                Ok(input) => {
                    let (result, usage) = self.subagent(&call.id, input, ctx).await;
                    (result, Some(usage))
                }
                Err(err) => (Err(err), None),
            };
        }
        let Some(tool) = self.tools.get(&call.name) else {
            return (
                Err(ToolError::Failed(format!("no tool named {:?}", call.name))),
                None,
            );
        };
        let result = tokio::select! {
            result = tool.call(call.input.clone(), ctx) => result,
            () = ctx.cancel.cancelled() => Err(ToolError::Cancelled),
        };
        (result, None)
    }

    /// Runs a subagent for a `Task` call with its own context, its events tagged with its id.
    async fn subagent(
        &self,
        tool_use_id: &str,
        input: TaskInput,
        ctx: &ToolContext,
    ) -> (Result<ToolOutput, ToolError>, Usage) {
        let Some(subagents) = &self.subagents else {
            return (
                Err(ToolError::failed("subagents are not available here")),
                Usage::default(),
            );
        };
        let agent_id = format!("agent-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let subagent_type = input
            .subagent_type
            .clone()
            .unwrap_or_else(|| "general-purpose".to_owned());
        self.emit(RunEvent::SubagentStart {
            agent_id: agent_id.clone(),
            parent_tool_use_id: tool_use_id.to_owned(),
            description: input.description.clone(),
            subagent_type,
        })
        .await;
        let agent = Agent {
            client: subagents.client.clone(),
            tools: subagents.tools.clone(),
            observer: self.observer.clone(),
            config: subagents.config.clone(),
            subagents: None,
            agent_id: Some(agent_id.clone()),
        };
        let sub = agent.run(Vec::new(), Message::user(input.prompt), 0, ctx).await;
        self.emit(RunEvent::SubagentEnd {
            agent_id,
            parent_tool_use_id: tool_use_id.to_owned(),
            status: sub.stop.done_status(),
            turn_count: sub.turns,
            usage: ChatUsage::from(&sub.usage),
        })
        .await;
        let result = match &sub.stop {
            Stop::Completed => Ok(ToolOutput::text(
                sub.final_text
                    .clone()
                    .unwrap_or_else(|| "(the subagent gave no answer)".to_owned()),
            )),
            Stop::Cancelled => Err(ToolError::Cancelled),
            other => Err(ToolError::Failed(format!(
                "the subagent stopped: {}{}",
                other
                    .error_event()
                    .and_then(|e| match e {
                        RunEvent::Error { message, .. } => Some(message),
                        _ => None,
                    })
                    .unwrap_or_default(),
                sub.final_text
                    .as_deref()
                    .map(|t| format!("\nIts last answer: {t}"))
                    .unwrap_or_default()
            ))),
        };
        (result, sub.usage)
    }

    /// Replaces the history with a summary written by the model.
    async fn compact(
        &self,
        messages: &[Message],
        tokens_before: u64,
        cancel: &CancellationToken,
        outcome: &mut Outcome,
    ) -> Result<Message, Stop> {
        self.progress(ProgressKind::Setup, "Summarising earlier turns…")
            .await;
        let mut history = messages.to_vec();
        history.push(Message::user(
            "Summarise the conversation so far for your own later use, in place of the full \
             history: the user's goals and requests, what was done, files created or changed in \
             /workspace, decisions, facts learnt, and what is still open. Be complete but \
             concise. Reply with the summary only.",
        ));
        let request = ModelRequest {
            model: String::new(),
            system: self.config.system.clone(),
            messages: normalise(history),
            tools: Vec::new(),
            max_tokens: SUMMARY_MAX_TOKENS,
            temperature: None,
            stop_sequences: Vec::new(),
            thinking_budget: None,
        };
        let silent = Agent {
            client: self.client.clone(),
            tools: Arc::new(ToolRegistry::default()),
            observer: Arc::new(Quiet(self.observer.clone())),
            config: self.config.clone(),
            subagents: None,
            agent_id: self.agent_id.clone(),
        };
        let reply = silent
            .call(&request, cancel, outcome)
            .await
            .map_err(|(stop, _)| stop)?;
        let summary = text_of(&reply.content);
        let message = Message::user(format!(
            "[Summary of the earlier conversation, which was compacted to save context]\n{summary}"
        ));
        self.observer.compacted(&message).await;
        self.emit(RunEvent::Compacted {
            summarised_messages: messages.len(),
            tokens_before,
        })
        .await;
        Ok(message)
    }
}

/// Passes model calls through (they are billed) but not the events of the summary call.
struct Quiet(Arc<dyn RunObserver>);

#[async_trait::async_trait]
impl RunObserver for Quiet {
    async fn event(&self, _agent_id: Option<&str>, _event: RunEvent) {}
    async fn model_call(&self, call: &ModelCall) {
        self.0.model_call(call).await;
    }
    async fn history(&self, _message: &Message) {}
    async fn compacted(&self, _summary: &Message) {}
}

/// Aborts the time-limit task when the run ends.
struct DropGuard(tokio::task::JoinHandle<()>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn stop_for(err: &LlmError, cancel: &CancellationToken) -> Stop {
    if matches!(err, LlmError::Cancelled) || cancel.is_cancelled() {
        Stop::Cancelled
    } else {
        Stop::Failed {
            error_type: format!("model_{}", err.kind()),
            message: err.to_string(),
        }
    }
}

/// The input of a tool call as streamed; broken JSON becomes `{}` and a reason for the model.
fn parse_tool_json(json: &str) -> (Value, Option<String>) {
    if json.trim().is_empty() {
        return (Value::Object(Default::default()), None);
    }
    match serde_json::from_str::<Value>(json) {
        Ok(value @ Value::Object(_)) => (value, None),
        Ok(_) => (
            Value::Object(Default::default()),
            Some("invalid input: the tool input must be a JSON object".to_owned()),
        ),
        Err(err) => (
            Value::Object(Default::default()),
            Some(format!(
                "invalid input: the tool input was not valid JSON ({err})"
            )),
        ),
    }
}

fn text_of(content: &[ContentBlock]) -> String {
    content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("")
}

fn result_block(id: &str, output: &ToolOutput) -> ContentBlock {
    let content = if output.content.is_empty() {
        vec![ToolResultContent::Text {
            text: "(empty)".to_owned(),
        }]
    } else {
        output.content.clone()
    };
    ContentBlock::ToolResult {
        tool_use_id: id.to_owned(),
        content,
        is_error: output.is_error,
        cache: None,
    }
}

/// The input as shown in events: every string value longer than 500 characters is cut.
fn cut_strings(value: &Value) -> Value {
    match value {
        Value::String(s) if s.chars().count() > EVENT_INPUT_CHARS => Value::String(format!(
            "{}...",
            s.chars().take(EVENT_INPUT_CHARS).collect::<String>()
        )),
        Value::Array(items) => Value::Array(items.iter().map(cut_strings).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), cut_strings(v))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_inputs_are_cut_at_500_characters() {
        let long = "x".repeat(600);
        let cut = cut_strings(&serde_json::json!({"a": [long], "b": 1}));
        assert_eq!(cut["a"][0].as_str().map(str::len), Some(503));
        assert_eq!(cut["b"], 1);
    }

    #[test]
    fn broken_tool_json_is_reported_not_fatal() {
        let (input, reason) = parse_tool_json("{\"command\": ");
        assert_eq!(input, serde_json::json!({}));
        assert!(reason.is_some_and(|r| r.contains("not valid JSON")));
        assert_eq!(parse_tool_json("").1, None);
        assert!(parse_tool_json("[1]").1.is_some());
    }
}
