//! End to end through a live session: a `LiveAgent` talks OpenAI Realtime over a real
//! WebSocket to the local server, whose scripted model calls a tool; the executor runs it,
//! the result goes back over the socket, and the model's answer uses it. The second test
//! hands the call off to a turn-based `Agent` over HTTP chat completions on the same server.

use std::time::Duration;

use futures_util::StreamExt;
use liveagent::openai::{RealtimeConfig, TextOutput};
use liveagent::{
    ErrorEvent, LiveAgent, LiveEvent, ModelMessageChunk, OutputTranscriptChunk, SessionUpdated,
    ToolCallRequested, ToolResult,
};
use liveagent_agent::Agent;
use liveagent_server::{LocalServer, Scenario, ServerConfig};
use liveagent_tools::{tool, ToolError};
use serde_json::json;

/// Sum two numbers.
///
/// # Arguments
/// * `a` - The first number.
/// * `b` - The second number.
#[tool]
async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
    Ok(a + b)
}

fn scenario(toml: &str) -> Scenario {
    Scenario::from_toml(toml).expect("scenario")
}

async fn server() -> LocalServer {
    let config = ServerConfig::default()
        .recording_in_memory()
        .with_scenario(
            "sum",
            scenario(
                r#"
                [[turn]]
                call = "sum_numbers"
                args = { a = 2, b = 3 }
                then_say = "The sum is {output}."
                "#,
            ),
        )
        .with_scenario(
            "cancel",
            scenario(
                r#"
                [[turn]]
                call = "slow_lookup"
                args = {}
                then_say = "lookup said {output}"
                [[turn]]
                say = "second turn"
                "#,
            ),
        )
        .with_scenario(
            "handoff",
            scenario(
                r#"
                [[turn]]
                call = "ask_math_agent"
                args = { objective = "what is 2 + 3?" }
                then_say = "The specialist says: {output}"
                "#,
            ),
        );
    LocalServer::start(config).await.expect("local server")
}

/// Runs one user turn and returns (tool calls seen, tool results seen, the model's text).
async fn turn(
    agent: &LiveAgent,
    text: &str,
    expect: &str,
    server: &LocalServer,
) -> (Vec<ToolCallRequested>, Vec<ToolResult>, String) {
    let conversation = agent.run().expect("conversation");
    let ctx = conversation.context().clone();
    // Text published before the session subscribed would be lost (see the report): wait
    // until the session is configured.
    let mut ready = ctx.stream().only::<SessionUpdated>();
    tokio::time::timeout(Duration::from_secs(20), ready.next())
        .await
        .expect("session never got ready");
    let mut events = ctx.stream().capacity(1024).union::<(
        ToolCallRequested,
        ToolResult,
        ModelMessageChunk,
        OutputTranscriptChunk,
        ErrorEvent,
    )>();
    let mut all = ctx.stream().capacity(4096).all();
    actix_rt::spawn(async move {
        while let Some(e) = all.next().await {
            if std::env::var("E2E_DEBUG").is_ok() {
                eprintln!(
                    "event: {}",
                    serde_json::to_string(&e)
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect::<String>()
                );
            }
        }
    });
    ctx.send_text(text);
    let (mut calls, mut results, mut said) = (Vec::new(), Vec::new(), String::new());
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            match event {
                LiveEvent::ToolCallRequested(c) => calls.push(c),
                LiveEvent::ToolResult(r) => results.push(r),
                LiveEvent::ModelMessageChunk(m) => said.push_str(&m.text),
                LiveEvent::OutputTranscriptChunk(t) if !t.is_final => said.push_str(&t.text),
                LiveEvent::ErrorEvent(e) => panic!("error event: {e:?}"),
                _ => {}
            }
            if said.contains(expect) {
                return;
            }
        }
    })
    .await;
    conversation.stop().await;
    if outcome.is_err() {
        for line in server.recording() {
            eprintln!("wire: {}", line.chars().take(400).collect::<String>());
        }
    }
    assert!(
        outcome.is_ok(),
        "no answer containing {expect:?}; got {said:?}, calls {calls:?}, results {results:?}"
    );
    (calls, results, said)
}

#[actix_rt::test]
async fn a_tool_round_trip_over_the_realtime_websocket() {
    let server = server().await;
    let agent = LiveAgent::builder("assistant")
        .prompt("You add numbers.")
        .config(
            RealtimeConfig::new("gpt-realtime")
                .base_url(server.openai_url_for("sum"))
                .api_key("sk-local")
                .output(TextOutput),
        )
        .tool(sum_numbers())
        .build()
        .expect("agent");
    let (calls, results, said) = turn(&agent, "what is 2 + 3?", "The sum is 5.", &server).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(&*calls[0].calls[0].name, "sum_numbers");
    assert_eq!(calls[0].calls[0].arguments, json!({"a": 2, "b": 3}));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].call_id, calls[0].calls[0].call_id);
    assert_eq!(results[0].output, Ok(json!(5)));
    assert!(results[0].request_response);
    assert!(said.contains("The sum is 5."));

    // On the wire: the tool's output went back as a function_call_output for the model's
    // call id, followed by one response.create; every frame passes the official validator.
    let wire = server.recording();
    let sent: Vec<serde_json::Value> = wire
        .iter()
        .filter_map(|l| l.strip_prefix('>'))
        .map(|l| serde_json::from_str(l.trim()).unwrap())
        .collect();
    let output_at = sent
        .iter()
        .position(|f| {
            f["type"] == "conversation.item.create" && f["item"]["type"] == "function_call_output"
        })
        .expect("function_call_output sent");
    assert_eq!(
        sent[output_at]["item"]["call_id"],
        json!(&*calls[0].calls[0].call_id)
    );
    assert_eq!(sent[output_at]["item"]["output"], "5");
    let creates = sent[output_at..]
        .iter()
        .filter(|f| f["type"] == "response.create")
        .count();
    assert_eq!(creates, 1);
    liveagent_testkit::validate_lines(&wire, liveagent_testkit::Protocol::OpenAi);
    server.stop().await;
}

#[actix_rt::test]
async fn a_live_agent_hands_off_to_a_turn_based_agent() {
    let server = server().await;
    let specialist = Agent::new("math", "You do math with your tools.", "gpt-4o-mini")
        .base_url(format!("{}/v1", server.http_url_for("sum")))
        .without_api_key()
        .tool(sum_numbers());
    let agent = LiveAgent::builder("assistant")
        .prompt("Delegate math.")
        .config(
            RealtimeConfig::new("gpt-realtime")
                .base_url(server.openai_url_for("handoff"))
                .api_key("sk-local")
                .output(TextOutput),
        )
        .tool(
            specialist
                .as_tool("Ask the math specialist.")
                .rename("ask_math_agent"),
        )
        .build()
        .expect("agent");
    let (_calls, results, said) = turn(
        &agent,
        "ask the specialist",
        "The specialist says: The sum is 5.",
        &server,
    )
    .await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].output, Ok(json!("The sum is 5.")));
    assert!(said.contains("The specialist says: The sum is 5."));
    // The specialist's own two chat requests went over HTTP to the same server.
    let chats = server
        .recording()
        .iter()
        .filter(|l| l.starts_with("# chat request: "))
        .count();
    assert_eq!(chats, 2);
    liveagent_testkit::validate_lines(&server.recording(), liveagent_testkit::Protocol::OpenAi);
    server.stop().await;
}

/// Signals when dropped: proves a tool's future was aborted.
struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);
impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[actix_rt::test]
async fn gemini_cancels_a_pending_call_on_barge_in_and_it_gets_no_result() {
    use liveagent::gemini::{RealtimeConfig as GeminiConfig, TextOutput as GeminiText};
    use liveagent::ToolCallCancelled;
    use liveagent_tools::{NoArgs, Tool};
    use std::sync::{Arc, Mutex};

    let server = server().await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    let signals = Arc::new(Mutex::new((Some(started_tx), Some(dropped_tx))));
    let slow = Tool::new(
        "slow_lookup",
        "Looks something up, slowly.",
        move |_: NoArgs| {
            let mut s = signals.lock().unwrap();
            let started = s.0.take();
            let guard = DropSignal(s.1.take());
            async move {
                let _guard = guard;
                if let Some(tx) = started {
                    let _ = tx.send(());
                }
                std::future::pending::<()>().await;
                Ok::<_, ToolError>("never")
            }
        },
    )
    .timeout(Duration::from_secs(3600));
    let agent = LiveAgent::builder("assistant")
        .prompt("Look things up.")
        .config(
            GeminiConfig::new("gemini-live-2.5-flash-preview")
                .base_url(server.gemini_url_for("cancel"))
                .api_key("local-key")
                .output(GeminiText),
        )
        .tool(slow)
        .build()
        .expect("agent");
    let conversation = agent.run().expect("conversation");
    let ctx = conversation.context().clone();
    let mut events = ctx.stream().capacity(1024).union::<(
        ToolCallRequested,
        ToolCallCancelled,
        ToolResult,
        ModelMessageChunk,
        OutputTranscriptChunk,
        SessionUpdated,
    )>();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        // Ready.
        while let Some(e) = events.next().await {
            if matches!(e, LiveEvent::SessionUpdated(_)) {
                break;
            }
        }
        ctx.send_text("look it up");
        let mut call_id = None;
        while let Some(e) = events.next().await {
            if let LiveEvent::ToolCallRequested(r) = e {
                call_id = Some(r.calls[0].call_id.clone());
                break;
            }
        }
        let call_id = call_id.expect("tool call");
        started_rx.await.expect("tool started");
        // The user talks over the pending call: the provider withdraws it.
        ctx.send_text("never mind");
        let (mut cancelled, mut results, mut said) = (Vec::new(), Vec::new(), String::new());
        while let Some(e) = events.next().await {
            match e {
                LiveEvent::ToolCallCancelled(c) => cancelled.extend(c.call_ids),
                LiveEvent::ToolResult(r) => results.push(r),
                LiveEvent::ModelMessageChunk(m) => said.push_str(&m.text),
                LiveEvent::OutputTranscriptChunk(t) if !t.is_final => said.push_str(&t.text),
                _ => {}
            }
            if said.contains("second turn") {
                break;
            }
        }
        dropped_rx.await.expect("the cancelled call was aborted");
        (call_id, cancelled, results, said)
    })
    .await;
    conversation.stop().await;
    let (call_id, cancelled, results, said) = outcome.expect("the scenario did not complete");
    assert_eq!(cancelled, vec![call_id.clone()]);
    assert!(
        results.is_empty(),
        "a withdrawn call got a result: {results:?}"
    );
    assert!(said.contains("second turn"), "{said}");
    assert!(!said.contains("lookup said"), "{said}");
    // Nothing answered the withdrawn call on the wire either.
    assert!(
        !server
            .recording()
            .iter()
            .any(|l| l.starts_with('>') && l.contains("toolResponse")),
        "a toolResponse was sent for a cancelled call"
    );
    liveagent_testkit::validate_lines(&server.recording(), liveagent_testkit::Protocol::Gemini);
    server.stop().await;
}
