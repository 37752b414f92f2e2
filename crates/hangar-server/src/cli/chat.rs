//! `hangar chat`: a terminal client for agent conversations on a running server.
//!
//! It creates a conversation (or continues one with `--conversation`), sends each message to
//! `…/stream` and renders the run's events as they come (see [`render`]). `-m TEXT` sends one
//! message and exits with the run's outcome: 0 on success, 130 when cancelled, 1 otherwise.
//! Without it, every line read from stdin is a message until `/quit` or end of input.
//!
//! Ctrl-C during a run asks the server to cancel it and keeps rendering until `done`; a second
//! Ctrl-C quits. A stream that drops before `done` is picked up again from
//! `…/runs/{run_id}/events` with `Last-Event-ID`, so no event is lost or shown twice.

mod client;
mod render;
mod summary;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use hangar_protocol::{DoneStatus, Executor, ModelId, RunEvent, StreamRequest, TenantId};
use tokio::sync::mpsc;
use uuid::Uuid;

use self::client::{Client, Events};
use self::render::{Options, Output, Renderer};

/// Reconnections tried, one after the other, when a run's stream drops before `done`.
const RETRIES: u32 = 3;
/// Exit status of a run cancelled with Ctrl-C, or of a second Ctrl-C (128 + SIGINT).
const INTERRUPTED: u8 = 130;

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The server's base URL.
    #[arg(long, env = "HANGAR_URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// An admin key or the tenant's key, sent as `X-API-Key`.
    #[arg(long, env = "HANGAR_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The tenant to talk as.
    #[arg(long, env = "HANGAR_TENANT")]
    tenant: TenantId,
    /// Your user id, recorded with the conversation and its usage.
    #[arg(long, env = "USER", default_value = "cli")]
    user: String,
    /// Continue this conversation instead of starting one.
    #[arg(long, value_name = "UUID", conflicts_with_all = ["model", "title"])]
    conversation: Option<Uuid>,
    /// The new conversation's model (default: the tenant's).
    #[arg(long)]
    model: Option<ModelId>,
    /// The new conversation's title (default: generated from the first message).
    #[arg(long)]
    title: Option<String>,
    /// Send this message, show the run, and exit with its outcome.
    #[arg(short, long, value_name = "TEXT")]
    message: Option<String>,
    /// Show the model's thinking.
    #[arg(long)]
    thinking: bool,
}

/// How a message ended.
enum Ended {
    Done(DoneStatus),
    /// Ctrl-C twice: leave now.
    Quit,
}

/// Runs the client on a runtime of its own; none of the server's settings are needed.
pub fn main(args: ChatArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hangar: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(chat(args)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hangar: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn chat(args: ChatArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.url, args.api_key.as_deref(), &args.tenant, &args.user)?;
    let conversation = match args.conversation {
        Some(id) => client.conversation(id).await?.conversation_id,
        None => {
            let id = client
                .create_conversation(&args.user, args.model.clone())
                .await?
                .conversation_id;
            if let Some(title) = &args.title {
                client.set_title(id, title).await?;
            }
            eprintln!("conversation {id} (continue it with --conversation {id})");
            id
        }
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let tty = std::io::stdout().is_terminal();
    let mut session = Session {
        client,
        conversation,
        executor: Executor {
            user_id: args.user.clone(),
            name: args.user,
            email: String::new(),
            employee_id: None,
        },
        renderer: Renderer::new(Options {
            tty,
            color: tty && !no_color,
            err_color: std::io::stderr().is_terminal() && !no_color,
            thinking: args.thinking,
        }),
        interrupts: Interrupts::listen(),
    };
    if let Some(message) = args.message {
        return Ok(match session.send(message).await? {
            Ended::Done(DoneStatus::Success) => ExitCode::SUCCESS,
            Ended::Done(DoneStatus::Cancelled) | Ended::Quit => ExitCode::from(INTERRUPTED),
            Ended::Done(_) => ExitCode::FAILURE,
        });
    }
    session.interactive(tty && std::io::stdin().is_terminal()).await
}

struct Session {
    client: Client,
    conversation: Uuid,
    executor: Executor,
    renderer: Renderer,
    interrupts: Interrupts,
}

impl Session {
    /// Reads messages from stdin until `/quit` or its end; non-zero if any message failed.
    async fn interactive(&mut self, prompt: bool) -> anyhow::Result<ExitCode> {
        let mut lines = stdin_lines();
        let mut failed = false;
        if prompt {
            eprintln!("Type a message and press Enter; /quit or Ctrl-D to leave.");
        }
        let mut sent = false;
        loop {
            if prompt {
                // A blank line between one run's summary and the next message.
                let stdout = if sent { "\n› " } else { "› " };
                write(&Output {
                    stdout: stdout.into(),
                    stderr: String::new(),
                })?;
            }
            let line = tokio::select! {
                line = lines.recv() => line,
                () = self.interrupts.next() => {
                    write(&Output { stdout: "\n".into(), stderr: String::new() })?;
                    return Ok(ExitCode::from(INTERRUPTED));
                }
            };
            let Some(line) = line else { break };
            let line = line.context("cannot read stdin")?;
            let text = line.trim();
            if text == "/quit" {
                break;
            }
            if text.is_empty() {
                continue;
            }
            sent = true;
            match self.send(text.to_owned()).await {
                Ok(Ended::Quit) => return Ok(ExitCode::from(INTERRUPTED)),
                Ok(Ended::Done(status)) => failed |= status != DoneStatus::Success,
                Err(err) => {
                    eprintln!("hangar: {err:#}");
                    failed = true;
                }
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }

    /// Sends one message and renders its run until `done`.
    async fn send(&mut self, text: String) -> anyhow::Result<Ended> {
        self.interrupts.forget();
        let request = StreamRequest {
            user_input: text,
            executor: self.executor.clone(),
            tokens: Default::default(),
            preferred_skills: Vec::new(),
        };
        let (mut run_id, mut events) = self.client.stream(self.conversation, &request).await?;
        let mut last_seq = 0;
        let mut failures = 0;
        let mut cancelling = false;
        loop {
            let item = tokio::select! {
                item = events.next() => item,
                () = self.interrupts.next() => {
                    if cancelling {
                        return Ok(Ended::Quit);
                    }
                    cancelling = true;
                    let note = match run_id {
                        Some(run) => match self.client.cancel(self.conversation, run).await {
                            Ok(()) => "cancelling the run… (Ctrl-C again to quit)".to_owned(),
                            Err(err) => format!("could not cancel the run: {err:#}"),
                        },
                        None => "the run has no id yet; Ctrl-C again to quit".to_owned(),
                    };
                    write(&self.renderer.notice(&note))?;
                    continue;
                }
            };
            let problem = match item {
                Some(Ok(wire)) => {
                    // A replay after a reconnection starts after `last_seq`; never show twice.
                    if wire.seq <= last_seq {
                        continue;
                    }
                    last_seq = wire.seq;
                    failures = 0;
                    if let RunEvent::Init { run_id: id, .. } = &wire.event {
                        run_id = run_id.or_else(|| id.parse().ok());
                    }
                    write(&self.renderer.event(wire.agent.as_deref(), &wire.event))?;
                    if let RunEvent::Done(done) = &wire.event {
                        return Ok(Ended::Done(done.status));
                    }
                    continue;
                }
                Some(Err(err)) => format!("{err:#}"),
                None => "it ended before `done`".to_owned(),
            };
            let run = run_id.context("the stream broke before the run had an id")?;
            failures += 1;
            if failures > RETRIES {
                anyhow::bail!(
                    "gave up on run {run} after {RETRIES} reconnections ({problem}); it goes on on the \
                     server: GET …/conversations/{}/runs/{run}/events follows it",
                    self.conversation
                );
            }
            let note = format!("lost the run's stream ({problem}); reconnecting ({failures}/{RETRIES})…");
            write(&self.renderer.notice(&note))?;
            tokio::time::sleep(Duration::from_millis(500 << (failures - 1))).await;
            events = match self.client.follow(self.conversation, run, last_seq).await {
                Ok(events) => events,
                Err(err) => failed_stream(err),
            };
        }
    }
}

/// A stream that fails at once, to go through the retry path again.
fn failed_stream(err: anyhow::Error) -> Events {
    futures::stream::once(async move { Err(err) }).boxed()
}

/// Writes rendered output and flushes it (a partial line must show at once).
fn write(output: &Output) -> anyhow::Result<()> {
    if !output.stdout.is_empty() {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(output.stdout.as_bytes())?;
        stdout.flush()?;
    }
    if !output.stderr.is_empty() {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(output.stderr.as_bytes())?;
        stderr.flush()?;
    }
    Ok(())
}

/// Lines of stdin, read on a thread of their own (a blocking read cannot be cancelled, and
/// the process may end while it waits).
fn stdin_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Ctrl-C presses. Once listened for, Ctrl-C no longer ends the process: each press is
/// delivered here.
struct Interrupts(mpsc::UnboundedReceiver<()>);

impl Interrupts {
    fn listen() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
        Self(rx)
    }

    /// The next press; never, if Ctrl-C cannot be listened for.
    async fn next(&mut self) {
        if self.0.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }

    /// Drops presses that came before now.
    fn forget(&mut self) {
        while self.0.try_recv().is_ok() {}
    }
}
