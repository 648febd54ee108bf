//! Gemini Live sessions against the local server, over a raw WebSocket.

mod common;

use common::*;
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use serde_json::{json, Value};

const PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn fast() -> ServerConfig {
    ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    }
}

async fn open(base: &str, setup: Value) -> Ws {
    let mut ws = connect(&format!("{base}{PATH}"), &[]).await;
    ws.send(&json!({ "setup": setup })).await;
    let first = ws.json().await;
    assert!(first.get("setupComplete").is_some(), "{first}");
    ws
}

fn turn_complete(v: &Value) -> bool {
    v["serverContent"]["turnComplete"] == true
}

fn audio_of(msgs: &[Value]) -> Vec<i16> {
    msgs.iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"].as_array())
        .flatten()
        .filter_map(|p| p["inlineData"]["data"].as_str())
        .flat_map(unb64)
        .collect()
}

fn b64_url(samples: &[i16]) -> String {
    b64(samples)
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_owned()
}

#[actix_rt::test]
async fn voice_turn_is_echoed_with_transcriptions_and_usage() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(
        &server.gemini_url(),
        json!({"model": "models/gemini-live-2.5-flash-preview",
               "generationConfig": {"responseModalities": ["AUDIO"]},
               "inputAudioTranscription": {}, "outputAudioTranscription": {}}),
    )
    .await;
    // 16 kHz input, URL-safe base64 without padding (what the Python SDK sends), snake_case keys.
    let input = utterance(400, 1000, 700, 16000);
    for chunk in input.chunks(640) {
        ws.send(&json!({"realtime_input": {"audio": {"mime_type": "audio/pcm;rate=16000", "data": b64_url(chunk)}}}))
            .await;
    }
    let msgs = ws.until_pred(turn_complete).await;
    let input_tr: Vec<&Value> = msgs
        .iter()
        .filter_map(|m| m["serverContent"].get("inputTranscription"))
        .collect();
    assert_eq!(input_tr[0]["text"], "[speech 1.0 s]");
    let out_tr: String = msgs
        .iter()
        .filter_map(|m| m["serverContent"]["outputTranscription"]["text"].as_str())
        .collect();
    assert_eq!(out_tr, "You said: [speech 1.0 s]");
    assert!(msgs
        .iter()
        .any(|m| m["serverContent"]["generationComplete"] == true));
    let last = msgs.last().unwrap();
    assert!(last["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
    // 300 ms prefix + 1 s of tone, resampled to 24 kHz.
    let out = audio_of(&msgs);
    assert!((out.len() as i64 - 24 * 1300).abs() <= 48, "{}", out.len());
    assert!(
        out[24 * 400..24 * 1200].iter().any(|s| s.abs() > 4000),
        "the tone comes back"
    );
    let items = &server.sessions()[0].items;
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].text, "You said: [speech 1.0 s]");
    server.stop().await;
}

#[actix_rt::test]
async fn text_modality_client_content_and_realtime_text() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(
        &server.gemini_url(),
        json!({"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}}),
    )
    .await;
    ws.send(&json!({"clientContent": {"turns": [
        {"role": "user", "parts": [{"text": "Hello"}]},
        {"role": "model", "parts": [{"text": "Hi, how can I help?"}]}], "turnComplete": false}}))
        .await;
    ws.send(&json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "what time is it"}]}], "turnComplete": true}}))
        .await;
    let msgs = ws.until_pred(turn_complete).await;
    let text: String = msgs
        .iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: what time is it");
    ws.send(&json!({"realtimeInput": {"text": "again"}})).await;
    let msgs = ws.until_pred(turn_complete).await;
    let text: String = msgs
        .iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: again");
    let texts: Vec<String> = server.sessions()[0]
        .items
        .iter()
        .map(|i| i.text.clone())
        .collect();
    assert_eq!(
        texts,
        [
            "Hello",
            "Hi, how can I help?",
            "what time is it",
            "You said: what time is it",
            "again",
            "You said: again"
        ]
    );
    server.stop().await;
}

#[actix_rt::test]
async fn manual_activity_and_binary_frames() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = connect(&format!("{}{PATH}", server.gemini_url()), &[]).await;
    let setup = json!({"setup": {"model": "models/x",
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": true}}}});
    ws.send_binary(setup.to_string().into_bytes()).await;
    assert!(ws.json().await.get("setupComplete").is_some());
    ws.send(&json!({"realtimeInput": {"activityStart": {}}}))
        .await;
    let tone = liveagent_testkit::tone_pcm(500.0, 500, 24000, 5000);
    for chunk in tone.chunks(960) {
        let f = json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=24000", "data": b64(chunk)}}});
        ws.send_binary(f.to_string().into_bytes()).await;
    }
    ws.send(&json!({"realtimeInput": {"activityEnd": {}}}))
        .await;
    let msgs = ws.until_pred(turn_complete).await;
    assert_eq!(
        audio_of(&msgs),
        tone,
        "manual activity echoes exactly what was sent"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn interruption_sends_interrupted_then_turn_complete() {
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let mut ws = open(&server.gemini_url(), json!({"model": "models/x"})).await;
    for chunk in utterance(200, 3000, 700, 16000).chunks(640) {
        ws.send(&json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": b64(chunk)}}}))
            .await;
    }
    ws.until_pred(|m| m["serverContent"]["modelTurn"].is_object())
        .await;
    for chunk in utterance(0, 400, 0, 16000).chunks(640) {
        ws.send(&json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": b64(chunk)}}}))
            .await;
    }
    let msgs = ws
        .until_pred(|m| m["serverContent"]["interrupted"] == true)
        .await;
    assert!(!msgs.iter().any(turn_complete));
    let next = ws.json().await;
    assert!(turn_complete(&next), "{next}");
    server.stop().await;
}

#[actix_rt::test]
async fn tool_call_round_trip_and_cancellation() {
    let scenario = Scenario::from_toml(
        r#"
        [[turn]]
        call = "get_weather"
        args = { city = "Paris" }
        then_say = "Paris: {output}"
        [[turn]]
        call = "slow_tool"
        "#,
    )
    .unwrap();
    let server = LocalServer::start(ServerConfig {
        brain: liveagent_server::Brain::Script(scenario),
        ..fast()
    })
    .await
    .unwrap();
    let mut ws = open(
        &server.gemini_url(),
        json!({"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}}),
    )
    .await;
    ws.send(&json!({"realtimeInput": {"text": "weather?"}}))
        .await;
    let msgs = ws.until_pred(|m| m.get("toolCall").is_some()).await;
    let call = &msgs.last().unwrap()["toolCall"]["functionCalls"][0];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["args"]["city"], "Paris");
    ws.send(
        &json!({"toolResponse": {"functionResponses": [{"id": call["id"], "name": "get_weather",
        "response": {"temp_c": 21}}]}}),
    )
    .await;
    let msgs = ws.until_pred(turn_complete).await;
    let text: String = msgs
        .iter()
        .filter_map(|m| m["serverContent"]["modelTurn"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Paris: {\"temp_c\":21}");
    // Turn 2 calls a tool; the user interrupts before answering it.
    ws.send(&json!({"realtimeInput": {"text": "something slow"}}))
        .await;
    let msgs = ws.until_pred(|m| m.get("toolCall").is_some()).await;
    let id = msgs.last().unwrap()["toolCall"]["functionCalls"][0]["id"].clone();
    ws.send(&json!({"realtimeInput": {"text": "never mind"}}))
        .await;
    let msgs = ws
        .until_pred(|m| m.get("toolCallCancellation").is_some())
        .await;
    assert_eq!(msgs.last().unwrap()["toolCallCancellation"]["ids"][0], id);
    server.stop().await;
}

#[actix_rt::test]
async fn session_resumption_restores_history_on_a_new_connection() {
    let server = LocalServer::start(fast()).await.unwrap();
    let setup = json!({"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}, "sessionResumption": {}});
    let mut ws = open(&server.gemini_url(), setup.clone()).await;
    let upd = ws.json().await;
    assert_eq!(upd["sessionResumptionUpdate"]["resumable"], true);
    ws.send(&json!({"realtimeInput": {"text": "remember me"}}))
        .await;
    ws.until_pred(turn_complete).await;
    let upd = ws
        .until_pred(|m| m.get("sessionResumptionUpdate").is_some())
        .await;
    let handle = upd.last().unwrap()["sessionResumptionUpdate"]["newHandle"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(ws);
    let mut setup2 = setup.clone();
    setup2["sessionResumption"] = json!({"handle": handle});
    let mut ws2 = open(&server.gemini_url(), setup2).await;
    ws2.json().await; // the new handle
    let sessions = server.sessions();
    let resumed = sessions.last().unwrap();
    assert_eq!(resumed.resumed_from.as_deref(), Some(handle.as_str()));
    let texts: Vec<String> = resumed.items.iter().map(|i| i.text.clone()).collect();
    assert_eq!(texts, ["remember me", "You said: remember me"]);
    // An unknown handle is refused with a close.
    let mut ws3 = connect(&format!("{}{PATH}", server.gemini_url()), &[]).await;
    ws3.send(&json!({"setup": {"model": "models/x", "sessionResumption": {"handle": "nope"}}}))
        .await;
    assert!(matches!(ws3.next().await, Got::Close(Some((1007, _)))));
    server.stop().await;
}

#[actix_rt::test]
async fn auth_and_malformed_frames_close_with_a_reason() {
    let server = LocalServer::start(fast().with_api_key("g-key"))
        .await
        .unwrap();
    let url = format!("{}{PATH}", server.gemini_url());
    let mut ws = connect(&url, &[("x-goog-api-key", "wrong")]).await;
    match ws.next().await {
        Got::Close(Some((code, reason))) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("API key not valid"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let ok = connect(&format!("{url}?key=g-key"), &[]).await;
    drop(ok);
    for (frame, why) in [
        ("{nope", "Invalid JSON"),
        (
            r#"{"realtimeInput": {"text": "hi"}}"#,
            "first message must be setup",
        ),
        (r#"{"setup": {}, "clientContent": {}}"#, "exactly one"),
        (r#"{"bogus": {}}"#, "first message must be setup"),
    ] {
        let mut ws = connect(&url, &[("x-goog-api-key", "g-key")]).await;
        ws.send_text(frame).await;
        match ws.next().await {
            Got::Close(Some((code, reason))) => {
                assert_eq!(code, 1007, "{frame}");
                assert!(reason.contains(why), "{frame}: {reason}");
            }
            other => panic!("{frame}: {other:?}"),
        }
    }
    let mut ws = connect(&url, &[("x-goog-api-key", "g-key")]).await;
    ws.send(&json!({"setup": {"model": "models/x"}})).await;
    ws.json().await;
    ws.send(
        &json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "!!!"}}}),
    )
    .await;
    assert!(matches!(ws.next().await, Got::Close(Some((1007, _)))));
    // Unknown path.
    let bad = try_connect(
        &format!(
            "{}/ws/google.ai.generativelanguage.v9.GenerativeService.BidiGenerateContent",
            server.gemini_url()
        ),
        &[],
    )
    .await;
    assert!(matches!(bad, Connect::Status(404)));
    server.stop().await;
}
