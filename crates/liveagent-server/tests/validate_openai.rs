//! Every frame of a full OpenAI echo session and a tool-call scenario session passes the
//! official-SDK validator (`shared/protocols/validate`).

mod common;

use common::*;
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_testkit::{validate_frames, Protocol};
use serde_json::json;

fn config(record: &std::path::Path) -> ServerConfig {
    ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        record: Some(record.to_owned()),
        ..ServerConfig::default()
    }
}

#[actix_rt::test]
async fn echo_session_frames_validate() {
    let path = temp_path("openai-echo.jsonl");
    let server = LocalServer::start(config(&path)).await.unwrap();
    let mut ws = connect(
        &format!("{}/realtime?model=gpt-realtime", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime",
        "instructions": "Be brief.",
        "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"},
                            "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}},
                  "output": {"voice": "marin"}}}}),
    )
    .await;
    ws.until("session.updated").await;
    append_audio(&mut ws, &utterance(300, 800, 600, 24000)).await;
    let ev = ws.until("response.done").await;
    let item_id = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.added")
        .unwrap()["item"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.send(&json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 100}))
        .await;
    ws.until("conversation.item.truncated").await;
    ws.send(&json!({"type": "conversation.item.retrieve", "item_id": item_id}))
        .await;
    ws.until("conversation.item.retrieved").await;
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "and in text?"}]}}),
    )
    .await;
    ws.send(&json!({"type": "response.create", "response": {"output_modalities": ["text"]}}))
        .await;
    ws.until("response.done").await;
    ws.send(&json!({"type": "response.cancel"})).await;
    ws.until("error").await;
    ws.send(&json!({"type": "input_audio_buffer.clear"})).await;
    ws.until("input_audio_buffer.cleared").await;
    ws.close().await;
    server.stop().await;
    let report = validate_frames(&path, Protocol::OpenAi);
    assert!(
        report.lines().filter(|l| l.starts_with("OK")).count() > 30,
        "{report}"
    );
}

#[actix_rt::test]
async fn tool_call_scenario_frames_validate() {
    let path = temp_path("openai-tool.jsonl");
    let scenario = Scenario::from_toml(
        r#"
        [[turn]]
        say = "Let me check."
        call = "get_weather"
        args = { city = "Paris" }
        then_say = "The weather in Paris: {output}."
        "#,
    )
    .unwrap();
    let (server, mut ws) = openai_on(ServerConfig {
        brain: liveagent_server::Brain::Script(scenario),
        ..config(&path)
    })
    .await;
    ws.send(&json!({"type": "session.update", "session": {"type": "realtime",
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}}))
        .await;
    ws.until("session.updated").await;
    append_audio(&mut ws, &utterance(200, 700, 600, 24000)).await;
    let ev = ws.until("response.done").await;
    let args_done = ev
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .expect("a function call");
    assert_eq!(args_done["name"], "get_weather");
    assert_eq!(args_done["arguments"], r#"{"city":"Paris"}"#);
    let deltas: String = ev
        .iter()
        .filter(|e| e["type"] == "response.function_call_arguments.delta")
        .map(|e| e["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, r#"{"city":"Paris"}"#);
    let done = ev.last().unwrap();
    assert_eq!(done["response"]["output"].as_array().unwrap().len(), 2);
    let call_id = args_done["call_id"].as_str().unwrap();
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "function_call_output",
        "call_id": call_id, "output": "{\"temp_c\":21}"}}),
    )
    .await;
    ws.until("conversation.item.done").await;
    ws.send(&json!({"type": "response.create"})).await;
    let ev = ws.until("response.done").await;
    let tr = ev
        .iter()
        .find(|e| e["type"] == "response.output_audio_transcript.done")
        .unwrap();
    assert_eq!(tr["transcript"], "The weather in Paris: {\"temp_c\":21}.");
    ws.close().await;
    server.stop().await;
    validate_frames(&path, Protocol::OpenAi);
}
