//! The server is as strict as the real API: `session.update` is checked field by field (types,
//! enums, ranges, unknown parameters) and applied all or nothing; errors name the offending
//! field by its JSON path; truncation deletes the transcript. Every frame the server sends
//! here, the `error` frames included, passes the official-SDK validator.

mod common;

use common::*;
use liveagent_server::{LocalServer, Pacing, ServerConfig};
use liveagent_testkit::{validate_frames, Protocol};
use serde_json::{json, Value};

fn fast() -> ServerConfig {
    ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    }
}

/// Writes the frames the server sent (direction `<`) and runs the validator on them.
fn validate_server_frames(name: &str, frames: &[Value]) -> String {
    let path = temp_path(name);
    let text: String = frames.iter().map(|f| format!("< {f}\n")).collect();
    std::fs::write(&path, text).unwrap();
    validate_frames(&path, Protocol::OpenAi)
}

async fn update(ws: &mut Ws, session: Value, event_id: &str) -> Value {
    ws.send(&json!({"type": "session.update", "event_id": event_id, "session": session}))
        .await;
    loop {
        let v = ws.json().await;
        if v["type"] == "error" || v["type"] == "session.updated" {
            return v;
        }
    }
}

#[actix_rt::test]
async fn session_update_is_validated_and_atomic() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = connect(
        &format!("{}/realtime?model=gpt-realtime", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    let ok = update(
        &mut ws,
        json!({"type": "realtime", "instructions": "Be brief."}),
        "u0",
    )
    .await;
    assert_eq!(ok["type"], "session.updated");
    let bad = [
        (
            json!({"type": "realtime", "instructions": 42}),
            "session.instructions",
            "invalid_type",
        ),
        (
            json!({"type": "realtime", "audio": {"output": {"voice": 7}}}),
            "session.audio.output.voice",
            "invalid_value",
        ),
        (
            json!({"type": "realtime", "max_output_tokens": "lots"}),
            "session.max_output_tokens",
            "invalid_value",
        ),
        (
            json!({"type": "realtime", "tools": "get_weather"}),
            "session.tools",
            "invalid_type",
        ),
        (
            json!({"type": "realtime", "tool_choice": 3}),
            "session.tool_choice",
            "invalid_value",
        ),
        (
            json!({"type": "realtime", "no_such_field": true}),
            "session.no_such_field",
            "unknown_parameter",
        ),
        (
            json!({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 7}}}}),
            "session.audio.input.turn_detection.threshold",
            "decimal_above_max_value",
        ),
        // Atomic: the valid instructions in this update must not be applied either.
        (
            json!({"type": "realtime", "instructions": "CHANGED", "audio": {"output": {"speed": 9}}}),
            "session.audio.output.speed",
            "decimal_above_max_value",
        ),
    ];
    for (i, (session, param, code)) in bad.into_iter().enumerate() {
        let id = format!("bad{i}");
        let e = update(&mut ws, session.clone(), &id).await;
        assert_eq!(e["type"], "error", "{session} was accepted: {e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["code"], code, "{session}: {e}");
        assert_eq!(e["error"]["param"], param, "{session}: {e}");
        assert_eq!(e["error"]["event_id"], id.as_str());
        assert!(
            e["error"]["message"].as_str().unwrap().contains(param),
            "{e}"
        );
    }
    // Nothing of the refused updates stuck: the next session.updated shows the old values.
    let ok = update(&mut ws, json!({"type": "realtime"}), "u1").await;
    assert_eq!(ok["type"], "session.updated");
    let s = &ok["session"];
    assert_eq!(s["instructions"], "Be brief.");
    assert_eq!(s["audio"]["output"]["voice"], "marin");
    assert_eq!(s["audio"]["output"]["speed"], 1.0);
    assert_eq!(s["max_output_tokens"], "inf");
    assert_eq!(s["tools"], json!([]));
    assert_eq!(s["tool_choice"], "auto");
    assert!(s.get("no_such_field").is_none());
    let seen = ws.seen.clone();
    ws.close().await;
    let report = validate_server_frames("strict-session.jsonl", &seen);
    assert!(!report.lines().any(|l| l.starts_with("FAIL")), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("OK") && l.ends_with(" error")),
        "{report}"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn errors_name_the_field_by_its_path() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = connect(
        &format!("{}/realtime?model=gpt-realtime", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    let cases = [
        (
            json!({"type": "conversation.item.truncate", "item_id": "x", "content_index": "zero", "audio_end_ms": 10}),
            "content_index",
            "invalid_type",
        ),
        (
            json!({"type": "conversation.item.truncate", "item_id": "x", "content_index": 0}),
            "audio_end_ms",
            "missing_required_parameter",
        ),
        (
            json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "ok"}, {"type": "input_text", "text": 5}]}}),
            "item.content[1].text",
            "invalid_type",
        ),
        (
            json!({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c"}}),
            "item.output",
            "missing_required_parameter",
        ),
        (
            json!({"type": "input_audio_buffer.append", "audio": "", "volume": 11}),
            "volume",
            "unknown_parameter",
        ),
        (
            json!({"type": "response.create", "response": {"output_modalities": ["smell"]}}),
            "response.output_modalities[0]",
            "invalid_value",
        ),
    ];
    for (frame, param, code) in cases {
        ws.send(&frame).await;
        let e = ws.until("error").await.pop().unwrap();
        assert_eq!(e["error"]["param"], param, "{frame}: {e}");
        assert_eq!(e["error"]["code"], code, "{frame}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(param),
            "{e}"
        );
    }
    let seen = ws.seen.clone();
    ws.close().await;
    let report = validate_server_frames("strict-errors.jsonl", &seen);
    assert!(!report.lines().any(|l| l.starts_with("FAIL")), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("OK") && l.ends_with(" error")),
        "{report}"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn truncation_deletes_the_transcript() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = connect(
        &format!("{}/realtime?model=gpt-realtime", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "tell me a long story please"}]}}),
    )
    .await;
    ws.send(&json!({"type": "response.create"})).await;
    let ev = ws.until("response.done").await;
    let item = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.done")
        .unwrap()["item"]
        .clone();
    let id = item["id"].as_str().unwrap().to_owned();
    assert!(!item["content"][0]["transcript"]
        .as_str()
        .unwrap()
        .is_empty());
    ws.send(&json!({"type": "conversation.item.truncate", "item_id": id, "content_index": 0, "audio_end_ms": 600}))
        .await;
    ws.until("conversation.item.truncated").await;
    ws.send(&json!({"type": "conversation.item.retrieve", "item_id": id}))
        .await;
    let got = ws.until("conversation.item.retrieved").await.pop().unwrap();
    assert_eq!(got["item"]["content"][0]["transcript"], "", "{got}");
    assert!(got["item"]["content"][0]["audio"]
        .as_str()
        .is_some_and(|a| !a.is_empty()));
    let text = server.sessions()[0]
        .items
        .iter()
        .find(|i| i.id == id)
        .unwrap()
        .clone();
    assert_eq!(text.text, "");
    assert_eq!(text.audio_ms, 600);
    let seen = ws.seen.clone();
    ws.close().await;
    let report = validate_server_frames("strict-truncate.jsonl", &seen);
    assert!(!report.lines().any(|l| l.starts_with("FAIL")), "{report}");
    server.stop().await;
}
