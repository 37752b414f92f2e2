//! One run, from the accepted request to its `done`.
//!
//! [`start`] takes the conversation's lease and records the run before anything streams, so a
//! second request is refused with 409 at once. The run then executes as a task owned by the
//! server, not by the HTTP connection. A supervising task awaits it and, whatever happened —
//! an answer, a model failure, cancellation, a panic — closes the run: the `error` event if
//! any, `context_status`, the title, the message log, the conversation's counters, and `done`
//! exactly once, with the usage and cost equal to the rows stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hangar_agent::tools::{ToolRegistry, WebFetch, builtin, task_spec};
use hangar_agent::{Agent, AgentConfig, RunObserver, RunState, Stop, Subagents, ToolContext, prompt};
use hangar_llm::Message;
use hangar_protocol::{
    Conversation, Done, DoneStatus, Model, ProgressKind, ProviderKind, RunEvent, RunStatus, Tenant,
};
use hangar_sandbox::egress::SystemResolver;
use hangar_sandbox::hostfs::WorkspaceDir;
use hangar_store::{HistoryEntry, NewRun, RunOutcome, WorkspaceId};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::live::LiveRun;
use super::observer::ServerObserver;
use super::seams::{ChainClient, ConversationSandbox};
use crate::error::{ApiError, ApiResult};
use crate::llm::{Chain, store_count};
use crate::redact::redact_value;
use crate::sse::timestamp;
use crate::state::AppState;
use crate::workspace::SyncError;

/// Model calls per run, and per subagent.
const MAX_TURNS: u32 = 100;
const SUBAGENT_MAX_TURNS: u32 = 50;
/// Output tokens asked for per call, at most.
const MAX_OUTPUT_TOKENS: i64 = 32_000;

/// An accepted request to run.
pub struct RunRequest {
    pub tenant: Tenant,
    pub conversation: Conversation,
    pub model: Model,
    pub chain: Chain,
    pub user_input: String,
    pub user_id: String,
    pub preferred_skills: Vec<String>,
    /// Values to keep out of the message log (the request's `tokens`).
    pub secrets: Vec<String>,
}

/// How the loop part of a run ended.
struct Ended {
    status: DoneStatus,
    final_text: Option<String>,
    turns: u32,
    error: Option<String>,
    context_tokens: u64,
    /// The versioned workspace, to sync after the loop.
    workspace: Option<RunWorkspace>,
}

/// What the sync after a run needs.
struct RunWorkspace {
    manifest: WorkspaceId,
    dir: Arc<WorkspaceDir>,
    /// What the tools recorded (the files `present_files` marked).
    run: Arc<RunState>,
}

impl Ended {
    fn failed(message: impl Into<String>) -> Self {
        Self {
            status: DoneStatus::Error,
            final_text: None,
            turns: 0,
            error: Some(message.into()),
            context_tokens: 0,
            workspace: None,
        }
    }
}

/// Takes the lease, records the run and starts it.
pub async fn start(state: &AppState, request: RunRequest) -> ApiResult<Arc<LiveRun>> {
    if !state.runs.accepting() {
        return Err(ApiError::unavailable(
            "the server is shutting down; retry on another node",
        ));
    }
    let run_id = Uuid::now_v7();
    let conversation_id = request.conversation.conversation_id;
    let lease = state.runs.lease(conversation_id, run_id).await?;
    state
        .store
        .create_run(&NewRun {
            run_id,
            tenant_id: request.tenant.tenant_id.clone(),
            conversation_id,
            user_id: request.user_id.clone(),
            model_id: request.model.model_id.clone(),
            node_id: state.runs.node_id().to_owned(),
        })
        .await?;
    let live = LiveRun::new(
        run_id,
        request.tenant.tenant_id.clone(),
        conversation_id,
        state.store.clone(),
    );
    state.runs.insert(live.clone());
    let task_state = state.clone();
    let task_live = live.clone();
    state.runs.tracker().spawn(async move {
        supervise(task_state, task_live, request).await;
        drop(lease);
    });
    Ok(live)
}

async fn supervise(state: AppState, live: Arc<LiveRun>, request: RunRequest) {
    let started = Instant::now();
    let observer = Arc::new(ServerObserver::new(
        state.store.clone(),
        live.clone(),
        request.user_id.clone(),
        request.chain.models().to_vec(),
    ));
    let request = Arc::new(request);
    let task = tokio::spawn(execute(
        state.clone(),
        live.clone(),
        observer.clone(),
        request.clone(),
    ));
    let ended = match task.await {
        Ok(ended) => ended,
        Err(err) => {
            tracing::error!(run_id = %live.run_id, error = %err, "run task failed");
            observer
                .event(
                    None,
                    RunEvent::Error {
                        error_type: "execution_error".to_owned(),
                        message: "the run failed unexpectedly".to_owned(),
                        recoverable: false,
                    },
                )
                .await;
            Ended::failed("the run failed unexpectedly")
        }
    };
    if let Some(workspace) = &ended.workspace {
        sync_workspace(&state, &live, &observer, &request, workspace).await;
    }
    close(&state, &live, &observer, &request, ended, started).await;
    live.finish().await;
    state.runs.remove(live.run_id);
}

/// Everything between setup and the loop's end. Returns how it ended; never `done`.
async fn execute(
    state: AppState,
    live: Arc<LiveRun>,
    observer: Arc<ServerObserver>,
    request: Arc<RunRequest>,
) -> Ended {
    let progress = |message: &str| RunEvent::progress(ProgressKind::Setup, message);
    observer.event(None, progress("Starting")).await;
    let conversation = &request.conversation;
    let user_entry =
        json!({"type": "user", "subtype": null, "timestamp": timestamp(), "text": request.user_input});
    if let Err(err) = state
        .store
        .append_message_log(conversation.conversation_id, "user", &user_entry)
        .await
    {
        return fail(
            &observer,
            "execution_error",
            format!("could not store the message: {err}"),
        )
        .await;
    }
    let history = match state.store.history(conversation.conversation_id).await {
        Ok(entries) => decode_history(entries),
        Err(err) => {
            return fail(
                &observer,
                "execution_error",
                format!("could not load the history: {err}"),
            )
            .await;
        }
    };
    observer.event(None, progress("Preparing the workspace")).await;
    let (tenant_id, conversation_id) = (&conversation.tenant_id, conversation.conversation_id);
    let workspace = match prepare_workspace(&state, conversation).await {
        Ok(prepared) => prepared,
        Err(err) => {
            tracing::error!(%conversation_id, error = %err, "workspace unavailable");
            return fail(
                &observer,
                "workspace_error",
                format!("the conversation's workspace is unavailable: {err}"),
            )
            .await;
        }
    };
    let (manifest, workspace) = workspace;
    let workspace_path = state.workspaces.dir(tenant_id, conversation_id);
    let sandbox = Arc::new(ConversationSandbox {
        manager: state.sandboxes.clone(),
        key: conversation.conversation_id.to_string(),
        owner: format!("{}/{}", conversation.tenant_id, conversation.conversation_id),
        workspace: workspace_path,
        limits: crate::sandbox::limits(&state.settings),
        network: crate::sandbox::network(&request.tenant.policy),
    });
    let run_state = Arc::new(RunState::default());
    let ctx = ToolContext::new(workspace.clone(), sandbox, run_state.clone(), live.cancel.clone());
    let (agent, tool_names) = match agent(&state, &request, observer.clone()) {
        Ok(agent) => agent,
        Err(message) => return fail(&observer, "execution_error", message).await,
    };
    observer
        .event(
            None,
            RunEvent::Init {
                session_id: conversation.conversation_id.to_string(),
                run_id: live.run_id.to_string(),
                tools: tool_names,
                model: request.model.model_id.as_str().to_owned(),
                conversation_id: conversation.conversation_id.to_string(),
            },
        )
        .await;
    let prior = u64::try_from(conversation.estimated_context_tokens).unwrap_or(0);
    let saving = manifest.map(|manifest| {
        intermediate_syncs(&state, &observer, conversation, manifest, &workspace, live.run_id)
    });
    let outcome = agent
        .run(history, Message::user(request.user_input.clone()), prior, &ctx)
        .await;
    if let Some(saving) = saving {
        saving.stop().await;
    }
    if let Some(event) = outcome.stop.error_event() {
        observer.event(None, event).await;
    }
    let error = match &outcome.stop {
        Stop::Completed | Stop::Cancelled => None,
        Stop::MaxTurns => Some("turn limit reached".to_owned()),
        Stop::TimeLimit => Some("time limit reached".to_owned()),
        Stop::Failed { message, .. } => Some(message.clone()),
    };
    Ended {
        status: outcome.stop.done_status(),
        final_text: outcome.final_text,
        turns: outcome.turns,
        error,
        context_tokens: outcome.context_tokens,
        workspace: manifest.map(|manifest| RunWorkspace {
            manifest,
            dir: workspace,
            run: run_state,
        }),
    }
}

/// The conversation's directory, brought up to its manifest's latest state when it keeps a
/// versioned workspace (the manifest's id is returned then, for the sync after the run).
async fn prepare_workspace(
    state: &AppState,
    conversation: &Conversation,
) -> Result<(Option<WorkspaceId>, Arc<WorkspaceDir>), SyncError> {
    let (tenant, id) = (&conversation.tenant_id, conversation.conversation_id);
    let dir = state.workspaces.open(tenant, id).await?;
    if !conversation.workspace_enabled {
        return Ok((None, dir));
    }
    let manifest = state.store.workspace_for(tenant, id).await?;
    let stats = state.workspaces.materialise(tenant, id, manifest, &dir).await?;
    tracing::debug!(conversation_id = %id, ?stats, "workspace materialised");
    Ok((Some(manifest), dir))
}

/// The saves of a run's files while it goes on: one `WORKSPACE_SYNC_INTERVAL` after a tool
/// changed files (more changes meanwhile are saved together), so a long run's work survives a
/// crash of this node.
struct IntermediateSyncs {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl IntermediateSyncs {
    /// Stops them, waiting for a save in progress (the final sync must not overlap it).
    async fn stop(self) {
        self.stop.cancel();
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "intermediate workspace syncs failed");
        }
    }
}

fn intermediate_syncs(
    state: &AppState,
    observer: &Arc<ServerObserver>,
    conversation: &Conversation,
    manifest: WorkspaceId,
    dir: &Arc<WorkspaceDir>,
    run_id: Uuid,
) -> IntermediateSyncs {
    let stop = CancellationToken::new();
    let (token, state, observer, dir) = (stop.clone(), state.clone(), observer.clone(), dir.clone());
    let (tenant, conversation_id) = (conversation.tenant_id.clone(), conversation.conversation_id);
    let delay = Duration::from_secs_f64(state.settings.workspace_sync_interval.max(0.1));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = observer.files_changed.notified() => {}
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            match state
                .workspaces
                .record(&tenant, conversation_id, manifest, &dir, run_id)
                .await
            {
                Ok(stats) => tracing::debug!(%run_id, ?stats, "workspace saved during the run"),
                Err(err) => tracing::warn!(%run_id, error = %err, "workspace save during the run failed"),
            }
        }
    });
    IntermediateSyncs { stop, task }
}

/// Records what the run changed in its workspace and snapshots it as the run's.
async fn sync_workspace(
    state: &AppState,
    live: &LiveRun,
    observer: &ServerObserver,
    request: &RunRequest,
    workspace: &RunWorkspace,
) {
    observer
        .event(
            None,
            RunEvent::progress(ProgressKind::Setup, "Saving workspace files"),
        )
        .await;
    let conversation = &request.conversation;
    match state
        .workspaces
        .sync(
            &conversation.tenant_id,
            conversation.conversation_id,
            workspace.manifest,
            &workspace.dir,
            live.run_id,
        )
        .await
    {
        Ok((stats, snapshot)) => {
            tracing::debug!(run_id = %live.run_id, ?stats, seq = snapshot.seq, "workspace synced");
            let presented = workspace
                .run
                .presented
                .lock()
                .map(|p| p.clone())
                .unwrap_or_default();
            if !presented.is_empty()
                && let Err(err) = state
                    .store
                    .set_presented(workspace.manifest, &presented, true)
                    .await
            {
                tracing::warn!(run_id = %live.run_id, error = %err, "could not mark presented files");
            }
        }
        Err(err) => {
            tracing::error!(run_id = %live.run_id, error = %err, "workspace sync failed");
            let message = match err {
                SyncError::Quota(quota) => format!(
                    "the run's files were not saved: {quota}; delete files to make room, they stay on \
                     this node until then"
                ),
                _ => "the run's files could not be saved; they stay on this node and are saved after \
                      the next run"
                    .to_owned(),
            };
            observer
                .event(
                    None,
                    RunEvent::Error {
                        error_type: "workspace_error".to_owned(),
                        message,
                        recoverable: true,
                    },
                )
                .await;
        }
    }
}

async fn fail(observer: &ServerObserver, error_type: &str, message: String) -> Ended {
    observer
        .event(
            None,
            RunEvent::Error {
                error_type: error_type.to_owned(),
                message: message.clone(),
                recoverable: false,
            },
        )
        .await;
    Ended::failed(message)
}

/// The stored history as model messages; entries that no longer parse are skipped.
fn decode_history(entries: Vec<HistoryEntry>) -> Vec<Message> {
    entries
        .into_iter()
        .filter_map(|entry| match serde_json::from_value::<Message>(entry.message) {
            Ok(message) => Some(message),
            Err(err) => {
                tracing::warn!(error = %err, "stored history message skipped");
                None
            }
        })
        .collect()
}

/// The main agent (with subagents) and the names of its tools.
fn agent(
    state: &AppState,
    request: &RunRequest,
    observer: Arc<ServerObserver>,
) -> Result<(Agent, Vec<String>), String> {
    let model = &request.model;
    let caching = match model.provider {
        ProviderKind::Anthropic => true,
        ProviderKind::Bedrock => model.bedrock_model_id.contains("anthropic"),
        ProviderKind::Openai => false,
    };
    let config = AgentConfig {
        system: prompt::system_prompt(request.tenant.system_prompt.as_deref(), &request.preferred_skills),
        max_turns: MAX_TURNS,
        max_tokens: u32::try_from(model.max_output_tokens.clamp(1024, MAX_OUTPUT_TOKENS)).unwrap_or(16_000),
        prompt_caching: caching,
        context_window: u64::try_from(model.context_window).unwrap_or(200_000),
        time_limit: Some(Duration::from_secs_f64(state.settings.run_time_limit.max(1.0))),
        ..AgentConfig::default()
    };
    let policy = &request.tenant.policy;
    let web_fetch = crate::sandbox::egress_policy(&state.settings, policy)
        .map(|egress| Arc::new(WebFetch::new(egress, Arc::new(SystemResolver))));
    let registry = |loop_tools: bool| {
        let mut tools = ToolRegistry::new(builtin())?;
        if let Some(web_fetch) = &web_fetch {
            tools.add(web_fetch.clone())?;
        }
        if loop_tools {
            tools.add_loop_tool(task_spec())?;
        }
        tools.retain(policy.allowed_tools.as_deref(), &policy.denied_tools);
        Ok::<_, String>(tools)
    };
    let sub_tools = registry(false)?;
    let tools = registry(true)?;
    let names = tools.names();
    let client = Arc::new(ChainClient {
        llm: state.llm.clone(),
        chain: request.chain.clone(),
    });
    let subagents = Subagents {
        client: client.clone(),
        tools: Arc::new(sub_tools),
        config: AgentConfig {
            max_turns: SUBAGENT_MAX_TURNS,
            time_limit: None,
            ..config.clone()
        },
    };
    Ok((
        Agent::new(client, Arc::new(tools), observer, config).with_subagents(subagents),
        names,
    ))
}

/// After the loop: the closing events, the message log, counters, `done` and the run row.
async fn close(
    state: &AppState,
    live: &LiveRun,
    observer: &ServerObserver,
    request: &RunRequest,
    ended: Ended,
    started: Instant,
) {
    let conversation = &request.conversation;
    let window = u64::try_from(request.model.context_window).unwrap_or(0);
    observer
        .event(
            None,
            hangar_agent::context::status_event(ended.context_tokens, window),
        )
        .await;
    if conversation.title.is_none()
        && let Some(answer) = ended.final_text.as_deref().filter(|t| !t.trim().is_empty())
    {
        let titled = crate::title::generate(state, &request.user_input, answer).await;
        if let Some((model, usage)) = &titled.call {
            observer.bill_call(model, usage).await;
        }
        let title = titled.title;
        match state
            .store
            .set_conversation_title(conversation.conversation_id, &title)
            .await
        {
            Ok(()) => observer.event(None, RunEvent::Title { title }).await,
            Err(err) => tracing::error!(error = %err, "could not store the title"),
        }
    }
    let events = observer.log_events();
    if !events.is_empty() {
        let mut entry =
            json!({"type": "assistant", "subtype": null, "timestamp": timestamp(), "events": events});
        redact_value(&mut entry, &request.secrets);
        if let Err(err) = state
            .store
            .append_message_log(conversation.conversation_id, "assistant", &entry)
            .await
        {
            tracing::error!(run_id = %live.run_id, error = %err, "could not store the assistant turn");
        }
    }
    let bill = observer.bill();
    if let Err(err) = state
        .store
        .record_conversation_usage(
            conversation.conversation_id,
            store_count(bill.usage.input_tokens),
            store_count(bill.usage.output_tokens),
            store_count(ended.context_tokens),
            ended.context_tokens >= window.saturating_mul(95) / 100 && window > 0,
        )
        .await
    {
        tracing::error!(run_id = %live.run_id, error = %err, "could not update the conversation's counters");
    }
    let usage = hangar_protocol::ChatUsage::from(&bill.usage);
    let is_error = ended.status != DoneStatus::Success;
    observer
        .event(
            None,
            RunEvent::Done(Done {
                status: ended.status,
                result: ended.final_text.clone(),
                is_error,
                errors: ended.error.clone().map(|e| vec![e]),
                usage,
                cost_usd: bill.cost,
                turn_count: ended.turns,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                session_id: Some(conversation.conversation_id.to_string()),
                run_id: live.run_id.to_string(),
            }),
        )
        .await;
    let status = match ended.status {
        DoneStatus::Success => RunStatus::Success,
        DoneStatus::Error => RunStatus::Error,
        DoneStatus::Cancelled => RunStatus::Cancelled,
        DoneStatus::Interrupted => RunStatus::Interrupted,
    };
    let outcome = RunOutcome {
        status,
        turn_count: i64::from(ended.turns),
        usage,
        cost: bill.cost,
        error: ended.error,
    };
    if let Err(err) = state.store.finish_run(live.run_id, &outcome).await {
        tracing::error!(run_id = %live.run_id, error = %err, "could not close the run");
    }
}
