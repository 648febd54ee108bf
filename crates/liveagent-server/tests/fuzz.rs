//! Mutated client frames never take a session down: every OpenAI frame gets handled or an
//! `error` event and the session still answers afterwards; every bad Gemini frame gets a close
//! with a reason and the server keeps serving new connections.

mod common;

use common::*;
use liveagent_server::{LocalServer, Pacing, ServerConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

fn mutate(v: &Value, rng: &mut StdRng, depth: u32) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, val) in m {
                match rng.random_range(0..10) {
                    0 => {} // drop the field
                    1 => {
                        out.insert(k.clone(), json!(null));
                    }
                    2 => {
                        out.insert(k.clone(), json!(rng.random::<i64>()));
                    }
                    3 => {
                        out.insert(k.clone(), json!("\u{0}garbage\u{ffff}"));
                    }
                    4 => {
                        out.insert(format!("{k}_x"), val.clone()); // unknown field
                    }
                    _ if depth < 6 => {
                        out.insert(k.clone(), mutate(val, rng, depth + 1));
                    }
                    _ => {
                        out.insert(k.clone(), val.clone());
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| mutate(x, rng, depth + 1)).collect()),
        Value::String(s) if rng.random_range(0..4) == 0 => Value::String(s.chars().rev().collect()),
        Value::Number(_) if rng.random_range(0..4) == 0 => json!(-1e300),
        other => other.clone(),
    }
}

fn openai_seeds() -> Vec<Value> {
    vec![
        json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["audio"],
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 300}},
                "output": {"voice": "marin"}}}}),
        json!({"type": "input_audio_buffer.append", "audio": "AAAAAAAAAAA="}),
        json!({"type": "input_audio_buffer.commit"}),
        json!({"type": "conversation.item.create", "previous_item_id": "root", "item": {"type": "message",
            "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}),
        json!({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c", "output": "x"}}),
        json!({"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 10}),
        json!({"type": "conversation.item.delete", "item_id": "item_1"}),
        json!({"type": "response.create", "response": {"output_modalities": ["text"], "conversation": "none"}}),
        json!({"type": "response.cancel"}),
    ]
}

#[actix_rt::test]
async fn mutated_openai_frames_never_kill_the_session() {
    let server = LocalServer::start(ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut ws = connect(&format!("{}/realtime?model=m", server.openai_url()), &[]).await;
    ws.until("session.created").await;
    let mut rng = StdRng::seed_from_u64(7);
    let seeds = openai_seeds();
    for i in 0..300 {
        let seed = &seeds[i % seeds.len()];
        let frame = mutate(seed, &mut rng, 0);
        let mut text = frame.to_string();
        if rng.random_range(0..10) == 0 {
            let cut = rng.random_range(0..text.len());
            text.truncate(cut); // broken JSON
        }
        ws.send_text(&text).await;
    }
    // Whatever state that left, the session still answers a text turn.
    ws.send(&json!({"type": "response.cancel"})).await;
    ws.send(&json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
        .await;
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "still alive?"}]}}),
    )
    .await;
    loop {
        ws.send(&json!({"type": "response.create"})).await;
        let ev = ws.until("response.done").await;
        if let Some(t) = ev.iter().find(|e| e["type"] == "response.output_text.done") {
            assert_eq!(t["text"], "You said: still alive?");
            break;
        }
    }
    assert!(server.sessions()[0].connected);
    assert!(
        server.sessions()[0].client_errors > 50,
        "the mutations should mostly be refused"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn mutated_gemini_frames_close_with_a_reason_and_the_server_stays_up() {
    let server = LocalServer::start(ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let url = format!(
        "{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
        server.gemini_url()
    );
    let seeds = [
        json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": "AAAAAAAAAAA="}}}),
        json!({"realtimeInput": {"text": "hi"}}),
        json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "x"}]}], "turnComplete": true}}),
        json!({"toolResponse": {"functionResponses": [{"id": "a", "name": "n", "response": {"r": 1}}]}}),
        json!({"realtimeInput": {"activityStart": {}}}),
    ];
    let mut rng = StdRng::seed_from_u64(11);
    for i in 0..40 {
        let mut ws = connect(&url, &[]).await;
        ws.send(&json!({"setup": {"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}}}))
            .await;
        assert!(ws.json().await.get("setupComplete").is_some());
        for _ in 0..5 {
            let frame = mutate(&seeds[i % seeds.len()], &mut rng, 0);
            ws.send_text(&frame.to_string()).await;
        }
        // Either answers, or a close with a reason; never a silent end.
        ws.send(&json!({"realtimeInput": {"text": "ping"}})).await;
        loop {
            match ws.next().await {
                Got::Json(v) if v["serverContent"]["turnComplete"] == true => {
                    if v.get("usageMetadata").is_some() {
                        break;
                    }
                }
                Got::Json(_) | Got::Text(_) => {}
                Got::Close(Some((code, reason))) => {
                    assert!(code == 1007 || code == 1000, "{code} {reason}");
                    assert!(!reason.is_empty() || code == 1000);
                    break;
                }
                other => panic!("frame set {i}: {other:?}"),
            }
        }
    }
    // The server still serves a clean session.
    let mut ws = connect(&url, &[]).await;
    ws.send(&json!({"setup": {"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]}}}))
        .await;
    ws.json().await;
    ws.send(&json!({"realtimeInput": {"text": "ok?"}})).await;
    ws.until_pred(|m| m["serverContent"]["turnComplete"] == true)
        .await;
    server.stop().await;
}
