//! Tool calls from a hostile or broken model (issue 13, item 6), end to end: the local
//! server's scripted model calls tools with arguments that break the schema, that are not
//! an object, or calls a tool that panics or blocks its thread. The checks: the function
//! never runs on bad arguments and the model gets an error output listing the violations;
//! a panic's text stays in the logs; a blocking tool is answered at its timeout.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use liveagent::{LiveAgent, LiveEvent, OutputTranscriptChunk, Tool, ToolError, ToolResult};
use liveagent_e2e::*;
use serde_json::Value;

/// Arguments with bounds.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct BoundedArgs {
    /// How many, 1 to 10.
    #[schemars(range(min = 1, max = 10))]
    n: u32,
    /// A short name.
    #[schemars(length(max = 8))]
    name: String,
}

fn bounded(runs: Arc<AtomicU32>) -> Tool {
    Tool::new("bounded", "A tool with bounds.", move |a: BoundedArgs| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ToolError>(format!("{} x {}", a.n, a.name))
        }
    })
}

async fn ready(run: &Run) {
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
}

async fn wait_said(run: &Run, needle: &'static str) {
    run.wait_count("final transcript", 1, move |e| {
        matches!(e, LiveEvent::OutputTranscriptChunk(OutputTranscriptChunk { is_final: true, text, .. }) if text.contains(needle))
    })
    .await;
}

fn results(run: &Run) -> Vec<ToolResult> {
    run.collect(|e| match e {
        LiveEvent::ToolResult(r) => Some(r.clone()),
        _ => None,
    })
}

/// The `output` strings of the `function_call_output` items on the wire.
fn wire_outputs(server: &liveagent_server::LocalServer) -> Vec<String> {
    client_frames(server)
        .iter()
        .filter(|f| {
            f["type"] == "conversation.item.create" && f["item"]["type"] == "function_call_output"
        })
        .map(|f| f["item"]["output"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[actix_rt::test]
async fn arguments_breaking_the_schema_never_reach_the_function() {
    let long = "x".repeat(10_000);
    let scenario = format!(
        r#"
[[turn]]
call = "bounded"
args = {{ n = 4000000, name = "{long}", extra = true }}
then_say = "Tool said {{output}}"
"#
    );
    let server = server(Some(&scenario)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(openai_config(&server))
            .tool(bounded(runs.clone())),
    );
    ready(&run).await;
    run.speak(question()).await;
    wait_said(&run, "Tool said").await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the function must not run");
    let results = results(&run);
    assert_eq!(results.len(), 1);
    let err = results[0].output.clone().unwrap_err();
    assert!(err.contains("/n") && err.contains("maximum"), "{err}");
    assert!(
        err.contains("/name") && err.contains("longer than 8"),
        "{err}"
    );
    assert!(err.contains("extra"), "unknown field reported: {err}");
    assert!(
        err.len() < 2_000,
        "values are not echoed: {} bytes",
        err.len()
    );
    let outputs = wire_outputs(&server);
    assert_eq!(outputs.len(), 1);
    assert!(outputs[0].contains("maximum"), "{}", outputs[0]);
    run.conversation.stop().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_tool_can_opt_out_of_rejecting_unknown_fields() {
    let scenario = r#"
[[turn]]
call = "lenient"
args = { n = 3, name = "abc", extra = true }
then_say = "Lenient said {output}"
"#;
    let server = server(Some(scenario)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(openai_config(&server))
            .tool(
                bounded(runs.clone())
                    .rename("lenient")
                    .allow_unknown_fields(),
            ),
    );
    ready(&run).await;
    run.speak(question()).await;
    wait_said(&run, "Lenient said").await;
    assert_eq!(results(&run)[0].output, Ok(Value::from("3 x abc")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    run.conversation.stop().await;
    server.stop().await;
}

#[actix_rt::test]
async fn raw_tools_are_validated_and_panic_text_stays_in_the_logs() {
    let scenario = r#"
[[turn]]
call = "raw"
args = { level = 99 }
then_say = "Raw said {output}"

[[turn]]
call = "explode"
args = {}
then_say = "Explode said {output}"
"#;
    let server = server(Some(scenario)).await;
    let raw_runs = Arc::new(AtomicU32::new(0));
    let counter = raw_runs.clone();
    let raw = Tool::raw(
        "raw",
        "A run-time tool.",
        serde_json::json!({
            "type": "object",
            "properties": {"level": {"type": "integer", "minimum": 0, "maximum": 5}},
            "required": ["level"]
        }),
        move |args, _cx| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok(args) }
        },
    );
    let explode = Tool::new("explode", "Panics.", |_: liveagent::tools::NoArgs| async {
        if true {
            panic!("db password is hunter2");
        }
        Ok::<_, ToolError>(())
    });
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(openai_config(&server))
            .tool(raw)
            .tool(explode),
    );
    ready(&run).await;
    run.speak(question()).await;
    wait_said(&run, "Raw said").await;
    assert_eq!(raw_runs.load(Ordering::SeqCst), 0);
    let err = results(&run)[0].output.clone().unwrap_err();
    assert!(err.contains("/level") && err.contains("maximum"), "{err}");
    run.speak(question()).await;
    wait_said(&run, "Explode said").await;
    let err = results(&run)[1].output.clone().unwrap_err();
    assert!(err.contains("failed unexpectedly"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "panic text reached the model: {err}"
    );
    assert!(wire_outputs(&server).iter().all(|o| !o.contains("hunter2")));
    run.conversation.stop().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_tool_that_blocks_its_thread_is_answered_at_its_timeout() {
    let scenario = r#"
[[turn]]
call = "stuck"
args = {}
then_say = "Stuck said {output}"
"#;
    let server = server(Some(scenario)).await;
    let stuck = Tool::new(
        "stuck",
        "Blocks its thread.",
        |_: liveagent::tools::NoArgs| async {
            // Blocking code in an async tool: no await point for 5 s.
            std::thread::sleep(Duration::from_secs(5));
            Ok::<_, ToolError>("finally")
        },
    )
    .timeout(Duration::from_millis(300));
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(openai_config(&server))
            .tool(stuck),
    );
    ready(&run).await;
    run.speak(question()).await;
    wait_said(&run, "Stuck said").await;
    // The answer came from the timeout, not from the tool finishing.
    let err = results(&run)[0].output.clone().unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    run.conversation.stop().await;
    server.stop().await;
}
