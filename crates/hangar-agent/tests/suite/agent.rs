//! The loop against a scripted model: answers, tool round trips, parallel read-only calls,
//! invalid and malformed input, subagents, cancellation, limits, failures and compaction.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hangar_agent::{AgentConfig, Stop};
use hangar_llm::{BlockKind, ContentBlock, LlmError, Message, Role, Step, StreamEvent, Usage};
use hangar_protocol::RunEvent;
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::Rig;

fn usage(input: u64, output: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// A reply calling several tools, each input sent as raw JSON text.
fn tool_calls(calls: &[(&str, &str, &str)]) -> Step {
    Step::tool_calls_reply(calls, usage(100, 10))
}

fn tool_result_blocks(message: &Message) -> Vec<(String, bool, String)> {
    message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolResult {
                tool_use_id,
                is_error,
                content,
                ..
            } => Some((tool_use_id.clone(), *is_error, format!("{content:?}"))),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_text_answer_streams_and_is_recorded() {
    let rig = Rig::new(vec![Step::text_reply("Hello there", usage(50, 5))]);
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("hi"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Completed);
    assert_eq!(outcome.final_text.as_deref(), Some("Hello there"));
    assert_eq!(outcome.turns, 1);
    assert_eq!(outcome.usage, usage(50, 5));
    assert_eq!(outcome.context_tokens, 55);
    assert_eq!(rig.recorder.names(), ["progress", "assistant"]);
    let history = rig.recorder.history.lock().unwrap().clone();
    assert_eq!(
        history,
        vec![Message::user("hi"), Message::assistant("Hello there")]
    );
    let calls = rig.recorder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].model_id, "test-model");
    assert_eq!(calls[0].usage, usage(50, 5));
}

#[tokio::test]
async fn tool_results_go_back_to_the_model() {
    let rig = Rig::new(vec![
        tool_calls(&[(
            "t1",
            "TodoWrite",
            r#"{"todos":[{"content":"plan","status":"in_progress"}]}"#,
        )]),
        Step::text_reply("done", usage(200, 3)),
    ]);
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Completed);
    assert_eq!(outcome.turns, 2);
    assert_eq!(outcome.usage, usage(300, 13));
    assert_eq!(rig.ctx.run.todos.lock().unwrap().len(), 1);
    let requests = rig.model.requests();
    let last = requests[1].messages.last().unwrap();
    assert_eq!(last.role, Role::User);
    let results = tool_result_blocks(last);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "t1");
    assert!(!results[0].1);
    let names = rig.recorder.names();
    assert!(
        names
            .windows(3)
            .any(|w| w == ["progress", "tool_call", "tool_result"]),
        "{names:?}"
    );
}

#[tokio::test]
async fn independent_read_only_calls_run_in_parallel_and_results_keep_call_order() {
    let rig = Rig::new(vec![
        tool_calls(&[("a", "Wait", r#"{"ms":300}"#), ("b", "Wait", r#"{"ms":100}"#)]),
        Step::text_reply("ok", usage(1, 1)),
    ]);
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Completed);
    // Both were in flight at once (a wall-clock bound would only measure the machine's load).
    assert_eq!(
        rig.wait.peak.load(Ordering::SeqCst),
        2,
        "both calls should have run at once"
    );
    let requests = rig.model.requests();
    let ids: Vec<String> = tool_result_blocks(requests[1].messages.last().unwrap())
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(ids, ["a", "b"]);
}

#[tokio::test]
async fn invalid_and_malformed_inputs_become_error_results_and_the_run_goes_on() {
    let rig = Rig::new(vec![
        tool_calls(&[
            ("s", "Wait", r#"{"ms":"soon"}"#),
            ("m", "Wait", r#"{"ms": "#),
            ("u", "NoSuchTool", r#"{}"#),
        ]),
        Step::text_reply("sorry", usage(1, 1)),
    ]);
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Completed);
    let results = rig.recorder.tool_results();
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|r| r.1), "all three are errors: {results:?}");
    assert!(
        results[0].2.contains("invalid input for Wait"),
        "{}",
        results[0].2
    );
    assert!(results[1].2.contains("not valid JSON"), "{}", results[1].2);
    assert!(results[2].2.contains("NoSuchTool"), "{}", results[2].2);
    assert_eq!(rig.wait.peak.load(Ordering::SeqCst), 0, "no invalid call may run");
}

#[tokio::test]
async fn a_subagent_works_in_its_own_context_and_its_events_are_tagged() {
    let rig = Rig::new(vec![
        tool_calls(&[(
            "task1",
            "Task",
            r#"{"description":"count","prompt":"count to three"}"#,
        )]),
        Step::text_reply("one two three", usage(30, 4)),
        Step::text_reply("The subagent counted.", usage(400, 6)),
    ]);
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Completed);
    assert_eq!(outcome.usage, usage(530, 20), "subagent usage is part of the run");
    let requests = rig.model.requests();
    assert_eq!(
        requests[1].messages,
        vec![Message::user("count to three")],
        "own context"
    );
    assert!(
        requests[1].tools.iter().all(|t| t.name != "Task"),
        "no nested Task"
    );
    let events = rig.recorder.events();
    let start = events.iter().find_map(|(_, e)| match e {
        RunEvent::SubagentStart {
            agent_id,
            parent_tool_use_id,
            ..
        } => Some((agent_id.clone(), parent_tool_use_id.clone())),
        _ => None,
    });
    let (agent_id, parent) = start.expect("subagent_start");
    assert_eq!(parent, "task1");
    assert!(
        events
            .iter()
            .any(|(agent, e)| agent.as_deref() == Some(agent_id.as_str())
                && matches!(e, RunEvent::Assistant { .. }))
    );
    assert!(
        events
            .iter()
            .any(|(agent, e)| agent.is_none() && matches!(e, RunEvent::SubagentEnd { .. }))
    );
    let results = rig.recorder.tool_results();
    assert_eq!(
        results,
        vec![("Task".to_owned(), false, "one two three".to_owned())]
    );
    // Only the main agent's turns are history.
    assert_eq!(rig.recorder.history.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn cancelling_mid_tool_stops_within_the_call_and_leaves_history_consistent() {
    let rig = Rig::new(vec![tool_calls(&[("w", "Wait", r#"{"ms":20000}"#)])]);
    let cancel = rig.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(2));
    let history = rig.recorder.history.lock().unwrap().clone();
    let last = history.last().unwrap();
    let results = tool_result_blocks(last);
    assert_eq!(results.len(), 1);
    assert!(results[0].1 && results[0].2.contains("Cancelled"));
}

#[tokio::test]
async fn cancelling_mid_stream_keeps_the_text_seen_so_far() {
    let rig = Rig::new(vec![Step::Stall(vec![
        Ok(StreamEvent::BlockStart {
            index: 0,
            block: BlockKind::Text,
        }),
        Ok(StreamEvent::TextDelta {
            index: 0,
            text: "partial ans".into(),
        }),
    ])]);
    let cancel = rig.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Cancelled);
    let history = rig.recorder.history.lock().unwrap().clone();
    assert_eq!(history.last(), Some(&Message::assistant("partial ans")));
}

#[tokio::test]
async fn turn_and_time_limits_stop_the_run() {
    let rig = Rig::new(vec![tool_calls(&[("t", "Wait", r#"{"ms":1}"#)])]);
    let config = AgentConfig {
        max_turns: 1,
        ..AgentConfig::default()
    };
    let outcome = rig
        .agent(config)
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::MaxTurns);
    assert!(outcome.stop.error_event().is_some());

    let rig = Rig::new(vec![tool_calls(&[("t", "Wait", r#"{"ms":20000}"#)])]);
    let config = AgentConfig {
        time_limit: Some(Duration::from_millis(200)),
        ..AgentConfig::default()
    };
    let outcome = rig
        .agent(config)
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::TimeLimit);
}

#[tokio::test]
async fn a_failing_model_fails_the_run_with_its_kind() {
    let rig = Rig::new(vec![Step::Fail(LlmError::Overloaded {
        retry_after: None,
        message: "busy".into(),
    })]);
    let outcome = rig
        .agent(AgentConfig::default())
        .run(Vec::new(), Message::user("go"), 0, &rig.ctx)
        .await;
    let Stop::Failed { error_type, message } = &outcome.stop else {
        panic!("expected a failure, got {:?}", outcome.stop);
    };
    assert!(error_type.starts_with("model_"), "{error_type}");
    assert!(message.contains("busy"));
}

#[tokio::test]
async fn a_full_context_is_compacted_into_a_summary_before_the_run() {
    let rig = Rig::new(vec![
        Step::text_reply("User wants X; file a.txt made.", usage(900, 20)),
        Step::text_reply("continuing", usage(60, 2)),
    ]);
    let history = vec![Message::user("old question"), Message::assistant("old answer")];
    let config = AgentConfig {
        context_window: 1000,
        ..AgentConfig::default()
    };
    let outcome = rig
        .agent(config)
        .run(history, Message::user("new"), 900, &rig.ctx)
        .await;
    assert_eq!(outcome.stop, Stop::Completed);
    let requests = rig.model.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].tools.is_empty(), "the summary call has no tools");
    let first = &requests[1].messages[0];
    let text: Vec<String> = first
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert!(text[0].contains("User wants X"), "{text:?}");
    assert_eq!(text.last().map(String::as_str), Some("new"));
    assert_eq!(rig.recorder.summaries.lock().unwrap().len(), 1);
    assert!(rig.recorder.names().contains(&"compacted"));
    assert_eq!(
        rig.recorder.calls.lock().unwrap().len(),
        2,
        "the summary call is billed"
    );
}

#[tokio::test]
async fn interrupted_history_is_repaired_before_it_is_sent() {
    let rig = Rig::new(vec![Step::text_reply("fine", usage(1, 1))]);
    let history = vec![
        Message::user("run it"),
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                id: "lost".into(),
                name: "Bash".into(),
                input: json!({"command": "sleep 100"}),
            }],
        },
    ];
    rig.agent(AgentConfig::default())
        .run(history, Message::user("again"), 0, &rig.ctx)
        .await;
    let sent = &rig.model.requests()[0].messages;
    assert_eq!(sent.len(), 3);
    let results = tool_result_blocks(&sent[2]);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "lost");
    assert!(matches!(sent[2].content.last(), Some(ContentBlock::Text { text, .. }) if text == "again"));
}
