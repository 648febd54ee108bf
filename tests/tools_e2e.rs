//! Tools end to end: a real `LiveAgent` hears a spoken question over a real WebSocket to the
//! local realtime server, whose scripted model calls a tool; the tool executor runs it and
//! the result goes back on the wire (`function_call_output` + one `response.create`), and
//! the model's spoken answer uses it. Failures and denials travel the same way, as error
//! results the model reads, and the conversation goes on.

use liveagent::tools::{tool, Approval, ToolError};
use liveagent::{LiveAgent, LiveEvent, OutputTranscriptChunk, ToolResult};
use liveagent_e2e::*;
use serde_json::{json, Value};

/// Sum two numbers.
///
/// # Arguments
/// * `a` - The first number.
/// * `b` - The second number.
#[tool(crate = liveagent::tools)]
async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
    Ok(a + b)
}

/// Looks the weather up (and fails, for the test).
///
/// # Arguments
/// * `city` - The city.
#[tool(crate = liveagent::tools)]
async fn get_weather(city: String) -> Result<String, ToolError> {
    if city == "Atlantis" {
        panic!("the weather service is under water");
    }
    Ok(format!("sunny in {city}"))
}

const SUM: &str = r#"
[[turn]]
call = "sum_numbers"
args = { a = 2, b = 3 }
then_say = "The sum is {output}."
"#;

const WEATHER: &str = r#"
[[turn]]
call = "get_weather"
args = { city = "Atlantis" }
then_say = "Weather tool said {output}"
"#;

/// The final output transcript, once the model has said something containing `needle`.
async fn wait_said(run: &Run, needle: &str) -> String {
    let needle = needle.to_owned();
    run.wait_count("final transcript", 1, move |e| {
        matches!(e, LiveEvent::OutputTranscriptChunk(OutputTranscriptChunk { is_final: true, text, .. }) if text.contains(&needle))
    })
    .await;
    run.events()
        .iter()
        .filter_map(|e| match e {
            LiveEvent::OutputTranscriptChunk(t) if t.is_final => Some(t.text.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn results(run: &Run) -> Vec<ToolResult> {
    run.events()
        .into_iter()
        .filter_map(|e| match e {
            LiveEvent::ToolResult(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The `function_call_output` items the client sent, and how many `response.create`s
/// followed the first one.
fn outputs_on_the_wire(frames: &[Value]) -> (Vec<Value>, usize) {
    let outputs: Vec<Value> = frames
        .iter()
        .filter(|f| {
            f["type"] == "conversation.item.create" && f["item"]["type"] == "function_call_output"
        })
        .map(|f| f["item"].clone())
        .collect();
    let first = frames.iter().position(|f| {
        f["type"] == "conversation.item.create" && f["item"]["type"] == "function_call_output"
    });
    let creates = first.map_or(0, |i| {
        frames[i..]
            .iter()
            .filter(|f| f["type"] == "response.create")
            .count()
    });
    (outputs, creates)
}

async fn ready(run: &Run) {
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
}

#[actix_rt::test]
async fn a_spoken_question_runs_a_tool_and_the_answer_uses_its_result() {
    let server = server(Some(SUM)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("You add numbers with your tool.")
            .config(openai_config(&server))
            .tool(sum_numbers()),
    );
    ready(&run).await;
    run.speak(question()).await;
    let said = wait_said(&run, "The sum is 5.").await;
    assert!(said.contains("The sum is 5."), "{said}");

    let results = results(&run);
    assert_eq!(results.len(), 1, "{}", run.summary());
    assert_eq!(results[0].output, Ok(json!(5)));
    assert!(results[0].request_response);

    let frames = client_frames(&server);
    // The session announced the tool with its generated schema.
    let update = frames
        .iter()
        .find(|f| f["type"] == "session.update")
        .expect("session.update");
    let tool = &update["session"]["tools"][0];
    assert_eq!(tool["name"], "sum_numbers");
    assert_eq!(
        tool["parameters"]["properties"]["a"]["description"],
        "The first number."
    );
    // And answered the model's call once, then asked it to go on once.
    let (outputs, creates) = outputs_on_the_wire(&frames);
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["call_id"], json!(&*results[0].call_id));
    assert_eq!(outputs[0]["output"], "5");
    assert_eq!(creates, 1);
    validate_lines(&server.recording(), Protocol::OpenAi);
    run.conversation.stop().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_panicking_tool_is_an_error_result_the_model_reads() {
    let server = server(Some(WEATHER)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("You look the weather up.")
            .config(openai_config(&server))
            .tool(get_weather()),
    );
    ready(&run).await;
    run.speak(question()).await;
    let said = wait_said(&run, "Weather tool said").await;
    assert!(!said.contains("under water"), "{said}");
    let results = results(&run);
    assert_eq!(results.len(), 1);
    assert!(results[0]
        .output
        .as_ref()
        .unwrap_err()
        .contains("failed unexpectedly"));
    let (outputs, _) = outputs_on_the_wire(&client_frames(&server));
    let sent: Value = serde_json::from_str(outputs[0]["output"].as_str().unwrap()).unwrap();
    // The panic text stays in the logs; the model reads a generic error (issue 13).
    let error = sent["error"].as_str().unwrap();
    assert!(error.contains("failed unexpectedly"), "{error}");
    assert!(!error.contains("under water"), "{error}");
    // The conversation is still alive: the session did not end.
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::SessionClosed(_))),
        0,
        "{}",
        run.summary()
    );
    run.conversation.stop().await;
    server.stop().await;
}

#[actix_rt::test]
async fn a_denied_call_never_runs_and_the_model_hears_why() {
    let server = server(Some(WEATHER)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("You look the weather up.")
            .config(openai_config(&server))
            .tool(get_weather())
            .hitl_hook(|call: liveagent::ToolCall| async move {
                if call.arguments["city"] == "Atlantis" {
                    Approval::deny("Atlantis is not a real city")
                } else {
                    Approval::Approve
                }
            }),
    );
    ready(&run).await;
    run.speak(question()).await;
    let said = wait_said(&run, "Weather tool said").await;
    assert!(said.contains("Atlantis is not a real city"), "{said}");
    assert!(!said.contains("under water"), "the tool ran: {said}");
    validate_lines(&server.recording(), Protocol::OpenAi);
    run.conversation.stop().await;
    server.stop().await;
}
