//! Every frame of a full Gemini echo session and a tool-call scenario session passes the
//! official-SDK validator (`shared/protocols/validate --protocol gemini`).

mod common;

use common::*;
use liveagent_server::{Brain, LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_testkit::{validate_frames, Protocol};
use serde_json::{json, Value};

const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn config(record: &std::path::Path) -> ServerConfig {
    ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        record: Some(record.to_owned()),
        ..ServerConfig::default()
    }
}

fn turn_complete(v: &Value) -> bool {
    v["serverContent"]["turnComplete"] == true
}

#[actix_rt::test]
async fn echo_session_frames_validate() {
    let path = temp_path("gemini-echo.jsonl");
    let server = LocalServer::start(config(&path)).await.unwrap();
    let mut ws = connect(&format!("{}{PATH}", server.gemini_url()), &[]).await;
    ws.send(&json!({"setup": {
        "model": "models/gemini-2.5-flash-native-audio-preview-12-2025",
        "generationConfig": {"responseModalities": ["AUDIO"],
            "speechConfig": {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Kore"}}}},
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": false, "silenceDurationMs": 400},
                                "activityHandling": "START_OF_ACTIVITY_INTERRUPTS"},
        "inputAudioTranscription": {}, "outputAudioTranscription": {}, "sessionResumption": {}}}))
        .await;
    ws.until_pred(|m| m.get("setupComplete").is_some()).await;
    for chunk in utterance(300, 800, 600, 16000).chunks(640) {
        ws.send(&json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": b64(chunk)}}}))
            .await;
    }
    ws.until_pred(turn_complete).await;
    ws.send(&json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "and now?"}]}], "turnComplete": true}}))
        .await;
    ws.until_pred(turn_complete).await;
    ws.send(&json!({"realtimeInput": {"audioStreamEnd": true}}))
        .await;
    ws.until_pred(|m| m.get("sessionResumptionUpdate").is_some())
        .await;
    ws.close().await;
    server.stop().await;
    let report = validate_frames(&path, Protocol::Gemini);
    assert!(
        report.lines().filter(|l| l.starts_with("OK")).count() > 30,
        "{report}"
    );
}

#[actix_rt::test]
async fn tool_call_scenario_frames_validate() {
    let path = temp_path("gemini-tool.jsonl");
    let scenario = Scenario::from_toml(
        r#"
        on_connect = [ { go_away = "50s" } ]
        [[turn]]
        say = "Let me check."
        call = "get_weather"
        args = { city = "Paris" }
        then_say = "Paris: {output}"
        "#,
    )
    .unwrap();
    let server = LocalServer::start(ServerConfig {
        brain: Brain::Script(scenario),
        ..config(&path)
    })
    .await
    .unwrap();
    let mut ws = connect(&format!("{}{PATH}", server.gemini_url()), &[]).await;
    ws.send(&json!({"setup": {"model": "models/x",
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
            "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}}]}],
        "outputAudioTranscription": {}}}))
        .await;
    ws.until_pred(|m| m.get("goAway").is_some()).await;
    for chunk in utterance(200, 700, 600, 16000).chunks(640) {
        ws.send(&json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": b64(chunk)}}}))
            .await;
    }
    let msgs = ws.until_pred(|m| m.get("toolCall").is_some()).await;
    let id = msgs.last().unwrap()["toolCall"]["functionCalls"][0]["id"].clone();
    ws.send(
        &json!({"toolResponse": {"functionResponses": [{"id": id, "name": "get_weather",
        "response": {"output": "sunny, 21 C"}}]}}),
    )
    .await;
    let msgs = ws.until_pred(turn_complete).await;
    let said: String = msgs
        .iter()
        .filter_map(|m| m["serverContent"]["outputTranscription"]["text"].as_str())
        .collect();
    assert_eq!(said, "Paris: sunny, 21 C");
    ws.close().await;
    server.stop().await;
    validate_frames(&path, Protocol::Gemini);
}
