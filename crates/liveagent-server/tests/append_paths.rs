//! `input_audio_buffer.append` has a fast path (borrowed fields, SIMD base64) next to the
//! general one (JSON tree, schema check): both must accept the same audio and refuse the
//! same frames with the same errors. Every frame the server sends here passes the
//! official-SDK validator.

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

/// Sends `frame` then a `conversation.item.retrieve` of a missing item as a marker, and
/// returns what the server sent before the marker's error.
async fn reply(ws: &mut Ws, frame: &str, marker: &str) -> Vec<Value> {
    ws.send_text(frame).await;
    ws.send(&json!({"type": "conversation.item.retrieve", "item_id": marker}))
        .await;
    let mut got = Vec::new();
    loop {
        let v = ws.json().await;
        if v["type"] == "error" && v["error"]["message"].to_string().contains(marker) {
            return got;
        }
        got.push(v);
    }
}

#[actix_rt::test]
async fn fast_and_general_append_paths_agree() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = connect(
        &format!("{}/realtime?model=gpt-realtime", server.openai_url()),
        &[],
    )
    .await;
    ws.until("session.created").await;
    // Manual commits, so that appends produce no events of their own.
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"turn_detection": null}}}}),
    )
    .await;
    ws.until("session.updated").await;

    let samples: Vec<i16> = (0..480).map(|i| (i * 37 % 2000) as i16 - 1000).collect();
    let text = b64(&samples);
    // Accepted, silently, by either path: plain (fast), with an event id (fast), with an
    // escaped slash (general: the fast path reads only unescaped strings), unpadded and
    // URL-safe (the lenient decoders).
    let escaped = text.replace('/', "\\/");
    let unpadded = text.trim_end_matches('=').to_owned();
    let url_safe = text.replace('+', "-").replace('/', "_");
    let accepted = [
        json!({"type": "input_audio_buffer.append", "audio": text}).to_string(),
        json!({"type": "input_audio_buffer.append", "audio": text, "event_id": "e1"}).to_string(),
        json!({"type": "input_audio_buffer.append", "audio": text, "event_id": null}).to_string(),
        format!(r#"{{"type":"input_audio_buffer.append","audio":"{escaped}"}}"#),
        json!({"type": "input_audio_buffer.append", "audio": unpadded}).to_string(),
        json!({"type": "input_audio_buffer.append", "audio": url_safe}).to_string(),
    ];
    for (i, frame) in accepted.iter().enumerate() {
        let got = reply(&mut ws, frame, &format!("marker_ok_{i}")).await;
        assert!(
            got.is_empty(),
            "frame {i} was not accepted silently: {got:?}"
        );
    }
    // All six appends are in the buffer: 6 x 20 ms.
    ws.send(&json!({"type": "input_audio_buffer.commit"})).await;
    ws.until("conversation.item.done").await;

    // Refused with the same error by either path: bad base64 (fast path, event id kept),
    // bad base64 with an escape (general path), an unknown key (general), a wrong type.
    let refused = [
        (
            json!({"type": "input_audio_buffer.append", "audio": "not base64!", "event_id": "e2"})
                .to_string(),
            "invalid_value",
            Some("e2"),
        ),
        (
            r#"{"type":"input_audio_buffer.append","audio":"not base64\u0021","event_id":"e3"}"#
                .to_owned(),
            "invalid_value",
            Some("e3"),
        ),
        (
            json!({"type": "input_audio_buffer.append", "audio": text, "extra": 1}).to_string(),
            "unknown_parameter",
            None,
        ),
        (
            json!({"type": "input_audio_buffer.append", "audio": 42, "event_id": "e4"}).to_string(),
            "invalid_type",
            Some("e4"),
        ),
    ];
    let mut errors = Vec::new();
    for (i, (frame, code, event_id)) in refused.iter().enumerate() {
        let got = reply(&mut ws, frame, &format!("marker_bad_{i}")).await;
        assert_eq!(got.len(), 1, "frame {i}: {got:?}");
        let e = &got[0];
        assert_eq!(e["type"], "error", "frame {i}: {e}");
        assert_eq!(e["error"]["code"], *code, "frame {i}: {e}");
        match event_id {
            Some(id) => assert_eq!(e["error"]["event_id"], *id, "frame {i}: {e}"),
            None => assert!(e["error"]["event_id"].is_null(), "frame {i}: {e}"),
        }
        errors.push(e.clone());
    }
    // The fast and the general path word a bad-base64 error alike.
    assert_eq!(errors[0]["error"]["message"], errors[1]["error"]["message"]);
    let seen = ws.seen.clone();
    ws.close().await;
    let report = validate_server_frames("append-paths.jsonl", &seen);
    assert!(!report.lines().any(|l| l.starts_with("FAIL")), "{report}");
    server.stop().await;
}

/// Writes the frames the server sent (direction `<`) and runs the validator on them.
fn validate_server_frames(name: &str, frames: &[Value]) -> String {
    let path = temp_path(name);
    let text: String = frames.iter().map(|f| format!("< {f}\n")).collect();
    std::fs::write(&path, text).unwrap();
    validate_frames(&path, Protocol::OpenAi)
}
