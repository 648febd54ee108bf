//! What a session keeps in memory is bounded: the conversation keeps the audio of its recent
//! items only (`ServerConfig::conversation_audio_ms`), older items keep their duration and
//! transcript and are retrieved without `audio`, and the frames stay valid for the SDK.

mod common;

use common::*;
use liveagent_server::{Pacing, ServerConfig};
use liveagent_testkit::{validate_frames, Protocol};
use serde_json::{json, Value};

fn tone(ms: usize) -> Vec<i16> {
    (0..ms * 24)
        .map(|i| ((i as f32 * 0.1).sin() * 6000.0) as i16)
        .collect()
}

async fn retrieve(ws: &mut Ws, id: &str) -> Value {
    ws.send(&json!({"type": "conversation.item.retrieve", "item_id": id}))
        .await;
    ws.until("conversation.item.retrieved").await.pop().unwrap()["item"].clone()
}

async fn add_audio_item(ws: &mut Ws, ms: usize) -> String {
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message",
        "role": "user", "content": [{"type": "input_audio", "audio": b64(&tone(ms))}]}}),
    )
    .await;
    let done = ws.until("conversation.item.done").await.pop().unwrap();
    done["item"]["id"].as_str().unwrap().to_owned()
}

#[actix_rt::test]
async fn older_items_let_go_of_their_audio_past_the_budget() {
    let (server, mut ws) = openai_on(ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        conversation_audio_ms: 1_500,
        ..ServerConfig::default()
    })
    .await;
    let first = add_audio_item(&mut ws, 1_000).await;
    // Within the budget: the audio is still there.
    let item = retrieve(&mut ws, &first).await;
    assert_eq!(
        unb64(item["content"][0]["audio"].as_str().unwrap()).len(),
        24_000
    );
    let second = add_audio_item(&mut ws, 1_000).await;
    // 2 s of audio over a 1.5 s budget: the older item lets go of its samples...
    let old = retrieve(&mut ws, &first).await;
    assert!(
        old["content"][0].get("audio").is_none_or(Value::is_null),
        "{old}"
    );
    assert_eq!(old["content"][0]["type"], "input_audio");
    // ...the newest keeps them...
    let new = retrieve(&mut ws, &second).await;
    assert_eq!(
        unb64(new["content"][0]["audio"].as_str().unwrap()).len(),
        24_000
    );
    // ...and the newest audio item is kept whole even when it alone is over the budget.
    let long = add_audio_item(&mut ws, 3_000).await;
    let item = retrieve(&mut ws, &long).await;
    assert_eq!(
        unb64(item["content"][0]["audio"].as_str().unwrap()).len(),
        72_000
    );
    let new = retrieve(&mut ws, &second).await;
    assert!(
        new["content"][0].get("audio").is_none_or(Value::is_null),
        "{new}"
    );
    // Released items still know how long they were.
    let info = server.sessions().pop().unwrap();
    let ms: Vec<u64> = info.items.iter().map(|i| i.audio_ms).collect();
    assert_eq!(ms, [1_000, 1_000, 3_000]);

    let seen = ws.seen.clone();
    ws.close().await;
    let path = temp_path("memory-retrieve.jsonl");
    let text: String = seen.iter().map(|f| format!("< {f}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let report = validate_frames(&path, Protocol::OpenAi);
    assert!(!report.lines().any(|l| l.starts_with("FAIL")), "{report}");
    server.stop().await;
}

#[actix_rt::test]
async fn a_spoken_turn_and_its_echo_are_retrievable() {
    // Default budget: the user's turn and the answer that echoes it are both retrievable
    // with their audio (the answer shares the user's samples rather than copying them).
    let (server, mut ws) = fast_openai().await;
    append_audio(&mut ws, &utterance(300, 900, 700, 24_000)).await;
    let ev = ws.until("response.done").await;
    let user = committed_item(&ev);
    let answer = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .unwrap()["item"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let played = output_audio(&ev);
    let u = retrieve(&mut ws, &user).await;
    let heard = unb64(u["content"][0]["audio"].as_str().unwrap());
    let a = retrieve(&mut ws, &answer).await;
    let kept = unb64(a["content"][0]["audio"].as_str().unwrap());
    assert_eq!(kept, played, "the answer item keeps what was played");
    assert!(heard.len() > kept.len() && heard.starts_with(&kept));
    ws.close().await;
    server.stop().await;
}
