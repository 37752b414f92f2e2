//! `Bash`: runs a command line in the conversation's persistent shell inside its sandbox. The
//! working directory and exported variables survive between calls; output is capped by the
//! sandbox (head and tail kept, the cut said inline); a timeout kills the command's process
//! group and the shell restarts in the same directory.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse_input;
use crate::{Tool, ToolContext, ToolError, ToolOutput};

/// The shell session every `Bash` call of a conversation shares.
pub const SHELL_SESSION: &str = "agent";
/// Default and largest timeout of one call, as in Claude Code.
const DEFAULT_TIMEOUT_MS: u64 = 120_000;
const MAX_TIMEOUT_MS: u64 = 600_000;

pub struct Bash;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    command: String,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "shown to the user in the tool_call event, not used to run"
    )]
    description: Option<String>,
}

#[async_trait]
impl Tool for Bash {
    fn name(&self) -> &str {
        "Bash"
    }

    fn description(&self) -> String {
        "Runs a bash command in the conversation's sandbox, in a persistent shell: the working \
         directory and exported variables carry over between calls. The workspace is /workspace \
         (the initial working directory). There is no network access unless the tenant allows \
         some domains (then through HTTP(S)_PROXY). Output over the limit keeps its beginning and \
         end. Optional timeout in milliseconds (default 120000, max 600000)."
            .to_owned()
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "command": {"type": "string", "minLength": 1, "description": "The command line to run."},
                "timeout": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_MS,
                            "description": "Timeout in milliseconds."},
                "description": {"type": "string", "description": "What the command does, in 5-10 words."}
            },
            "required": ["command"],
            "additionalProperties": false
        })
    }

    async fn call(&self, input: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let input: Input = parse_input(self.name(), input)?;
        let timeout = Duration::from_millis(input.timeout.unwrap_or(DEFAULT_TIMEOUT_MS).min(MAX_TIMEOUT_MS));
        let sandbox = ctx.sandbox().await?;
        let run = async {
            let handle = sandbox
                .shell(SHELL_SESSION, &input.command, Some(timeout))
                .await
                .map_err(|err| ToolError::Failed(format!("the sandbox could not run the command: {err}")))?;
            handle.collect().await.map_err(|err| {
                ToolError::Failed(format!("the sandbox stopped while running the command: {err}"))
            })
        };
        // Dropping the handle on cancel closes the connection, which kills the process group.
        let outcome = tokio::select! {
            outcome = run => outcome?,
            () = ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        Ok(render(&outcome))
    }
}

fn render(outcome: &hangar_sandbox::ExecOutcome) -> ToolOutput {
    let mut text = outcome.stdout_text();
    let stderr = outcome.stderr_text();
    if !stderr.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&stderr);
    }
    let exit = &outcome.exit;
    let mut trailer = Vec::new();
    if let Some(message) = &exit.message {
        trailer.push(message.clone());
    } else if exit.timed_out {
        trailer.push("Command timed out and was killed.".to_owned());
    }
    match (exit.code, exit.signal) {
        (Some(0), _) => {}
        (Some(code), _) => trailer.push(format!("Exit code {code}")),
        (None, Some(signal)) => trailer.push(format!("Killed by signal {signal}")),
        (None, None) => {}
    }
    if !trailer.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&trailer.join("\n"));
    }
    if text.is_empty() {
        text.push_str("(no output)");
    }
    ToolOutput {
        is_error: !exit.success(),
        ..ToolOutput::text(text)
    }
}

#[cfg(test)]
mod tests {
    use hangar_sandbox::wire::ExitInfo;

    use super::*;

    #[test]
    fn failures_carry_the_exit_code_and_stderr() {
        let outcome = hangar_sandbox::ExecOutcome {
            stdout: b"partial".to_vec(),
            stderr: b"boom\n".to_vec(),
            truncated_bytes: 0,
            exit: ExitInfo {
                code: Some(2),
                ..ExitInfo::default()
            },
        };
        let out = render(&outcome);
        assert!(out.is_error);
        assert_eq!(out.text_content(), "partial\nboom\nExit code 2");
    }

    #[test]
    fn silence_is_said() {
        let outcome = hangar_sandbox::ExecOutcome {
            exit: ExitInfo {
                code: Some(0),
                ..ExitInfo::default()
            },
            ..Default::default()
        };
        let out = render(&outcome);
        assert!(!out.is_error);
        assert_eq!(out.text_content(), "(no output)");
    }
}
