//! The server stays bounded under abuse: pongs count in the backlog limit, input audio buffers
//! are capped (both protocols), conversation snapshots are only built on demand, closed
//! sessions leave only a bounded history, and Gemini keeps one bounded, expiring resumable
//! state per session.

mod common;
mod raw;

use std::time::Duration;

use common::*;
use liveagent_server::{LocalServer, Pacing, ServerConfig};
use serde_json::{json, Value};

const GEMINI: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn fast() -> ServerConfig {
    ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    }
}

/// Polls `cond` (every few ms, at most raw::HANG) — a hang guard, not a timing assertion.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = std::time::Instant::now() + raw::HANG;
    while !cond() {
        assert!(std::time::Instant::now() < end, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A client that floods pings and never reads gets dropped once its pongs pile up.
#[actix_rt::test]
async fn ping_flood_without_reading_is_dropped_by_the_backlog_limit() {
    let server = LocalServer::start(ServerConfig {
        max_backlog_bytes: 64 * 1024,
        close_timeout: Duration::from_millis(50),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let mut ws = raw::open(
        server.local_addr(),
        "/v1/realtime?model=gpt-realtime",
        &[],
        Some(4096),
    )
    .await
    .expect_upgraded();
    let batch: Vec<u8> = (0..1000)
        .flat_map(|_| raw::Raw::ping_frame(&[7u8; 125]))
        .collect();
    // Up to 64 MB of pings; the server must give up long before.
    for _ in 0..500 {
        if server.stats().backlog_drops > 0 {
            break;
        }
        let sent = tokio::time::timeout(Duration::from_secs(2), ws.send_bytes(&batch)).await;
        if !matches!(sent, Ok(Ok(()))) {
            break; // blocked or refused: the server stopped reading this client
        }
    }
    eventually("the flooding connection is dropped", || {
        server.stats().backlog_drops == 1
    })
    .await;
    eventually("the session ends", || server.stats().sessions_active == 0).await;
    server.stop().await;
}

/// OpenAI with turn detection off: appends past the cap are refused with an `error` event,
/// and the buffer keeps what it had.
#[actix_rt::test]
async fn openai_input_buffer_is_capped() {
    let server = LocalServer::start(ServerConfig {
        max_input_audio_ms: 1000,
        ..fast()
    })
    .await
    .unwrap();
    let mut ws = connect(&format!("{}/realtime?model=m", server.openai_url()), &[]).await;
    ws.until("session.created").await;
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"turn_detection": null}}}}),
    )
    .await;
    ws.until("session.updated").await;
    let chunk = b64(&vec![1000i16; 24 * 600]); // 600 ms
    ws.send(&json!({"type": "input_audio_buffer.append", "audio": chunk, "event_id": "a1"}))
        .await;
    ws.send(&json!({"type": "input_audio_buffer.append", "audio": chunk, "event_id": "a2"}))
        .await;
    let err = ws.until("error").await.pop().unwrap();
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["code"], "input_audio_buffer_full");
    assert_eq!(err["error"]["event_id"], "a2");
    assert_eq!(server.sessions()[0].input_buffered_ms, 600);
    ws.send(&json!({"type": "input_audio_buffer.commit"})).await;
    ws.until("conversation.item.done").await;
    assert_eq!(server.sessions()[0].items[0].audio_ms, 600);
    server.stop().await;
}

/// Gemini with automatic activity detection off: audio outside an activity is not kept, and
/// an activity longer than the cap is refused with a close frame and a reason.
#[actix_rt::test]
async fn gemini_input_buffer_is_trimmed_and_capped() {
    let server = LocalServer::start(ServerConfig {
        max_input_audio_ms: 1000,
        ..fast()
    })
    .await
    .unwrap();
    let mut ws = connect(&format!("{}{GEMINI}", server.gemini_url()), &[]).await;
    ws.send(&json!({"setup": {"model": "models/x",
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": true}}}}))
        .await;
    assert!(ws.json().await.get("setupComplete").is_some());
    let chunk = b64(&vec![1000i16; 16 * 500]); // 500 ms at 16 kHz
    for _ in 0..6 {
        ws.send(&json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": chunk}}}))
            .await;
    }
    let s = server.sessions();
    assert_eq!(s[0].input_buffered_ms, 0, "no activity: nothing kept");
    ws.send(&json!({"realtimeInput": {"activityStart": {}}}))
        .await;
    for _ in 0..3 {
        ws.send(&json!({"realtimeInput": {"audio": {"mimeType": "audio/pcm;rate=16000", "data": chunk}}}))
            .await;
    }
    match ws.next().await {
        Got::Close(Some((1007, reason))) => assert!(reason.contains("1000 ms"), "{reason}"),
        other => panic!("expected close 1007, got {other:?}"),
    }
    server.stop().await;
}

/// A stream of small frames never copies the conversation; a snapshot is built when asked.
#[actix_rt::test]
async fn snapshots_are_built_on_demand_only() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = connect(&format!("{}/realtime?model=m", server.openai_url()), &[]).await;
    ws.until("session.created").await;
    let big = "x".repeat(1 << 20);
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message",
        "role": "user", "content": [{"type": "input_text", "text": big}]}}),
    )
    .await;
    ws.until("conversation.item.done").await;
    let silence = b64(&vec![0i16; 960]);
    for _ in 0..200 {
        ws.send(&json!({"type": "input_audio_buffer.append", "audio": silence}))
            .await;
    }
    ws.send(&json!({"type": "input_audio_buffer.clear"})).await;
    ws.until("input_audio_buffer.cleared").await;
    assert_eq!(server.stats().snapshots_built, 0, "frames built snapshots");
    let s = server.sessions();
    assert_eq!(s[0].items[0].text.len(), 1 << 20);
    assert_eq!(server.stats().snapshots_built, 1);
    // The debug endpoint builds one too, on request.
    let (status, body) = raw::http(server.local_addr(), "GET", "/debug/sessions", &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("\"connected\":true"),
        "{}",
        &body[..200.min(body.len())]
    );
    assert_eq!(server.stats().snapshots_built, 2);
    server.stop().await;
}

/// Closed sessions leave a bounded history: by count and by bytes of item text.
#[actix_rt::test]
async fn closed_sessions_leave_a_bounded_history() {
    let server = LocalServer::start(ServerConfig {
        closed_sessions_kept: 2,
        closed_sessions_bytes: 64 * 1024,
        ..fast()
    })
    .await
    .unwrap();
    async fn one(server: &LocalServer, text: String) {
        let mut ws = connect(&format!("{}/realtime?model=m", server.openai_url()), &[]).await;
        ws.until("session.created").await;
        ws.send(
            &json!({"type": "conversation.item.create", "item": {"type": "message",
            "role": "user", "content": [{"type": "input_text", "text": text}]}}),
        )
        .await;
        ws.until("conversation.item.done").await;
        ws.close().await;
        eventually("the session ends", || server.stats().sessions_active == 0).await;
    }
    for i in 0..6 {
        one(&server, format!("{i} small")).await;
    }
    let s = server.sessions();
    let ids: Vec<u64> = s.iter().map(|s| s.id).collect();
    assert_eq!(ids, [5, 6]);
    assert!(!s[1].connected);
    assert_eq!(s[1].items[0].text, "5 small");
    assert_eq!(server.stats().sessions_kept_closed, 2);
    // A huge conversation is kept with its text cut to the byte budget.
    one(&server, format!("7{}", "y".repeat(300_000))).await;
    let s = server.sessions();
    assert_eq!(s.last().unwrap().id, 7);
    let text_bytes: usize = s.iter().flat_map(|s| &s.items).map(|i| i.text.len()).sum();
    assert!(text_bytes <= 64 * 1024, "{text_bytes}");
    assert!(s.last().unwrap().items[0].text.starts_with('7'));
    server.stop().await;
}

async fn gemini_text_session(server: &LocalServer, setup: Value) -> Ws {
    let mut ws = connect(&format!("{}{GEMINI}", server.gemini_url()), &[]).await;
    ws.send(&json!({ "setup": setup })).await;
    assert!(ws.json().await.get("setupComplete").is_some());
    ws
}

fn handle_of(msgs: &[Value]) -> Option<String> {
    msgs.iter()
        .rev()
        .find_map(|m| m["sessionResumptionUpdate"]["newHandle"].as_str())
        .map(str::to_owned)
}

/// One resumable state per session (the latest handle), bounded in bytes, expiring.
#[actix_rt::test]
async fn gemini_resumption_keeps_one_bounded_state_per_session() {
    let server = LocalServer::start(ServerConfig {
        resumption_bytes: 256 * 1024,
        ..fast()
    })
    .await
    .unwrap();
    let setup = json!({"model": "models/x", "generationConfig": {"responseModalities": ["TEXT"]},
                       "sessionResumption": {}});
    let mut ws = gemini_text_session(&server, setup.clone()).await;
    let first = handle_of(
        &ws.until_pred(|m| m.get("sessionResumptionUpdate").is_some())
            .await,
    )
    .unwrap();
    let mut last = first.clone();
    for turn in 0..10 {
        ws.send(&json!({"realtimeInput": {"text": format!("turn {turn}")}}))
            .await;
        let msgs = ws
            .until_pred(|m| m["sessionResumptionUpdate"]["newHandle"].is_string())
            .await;
        last = handle_of(&msgs).unwrap();
    }
    let st = server.stats();
    assert_eq!(st.resumable_states, 1, "one state per session");
    ws.close().await;
    // The superseded handle is gone; the latest one resumes.
    let mut old = connect(&format!("{}{GEMINI}", server.gemini_url()), &[]).await;
    old.send(&json!({"setup": {"model": "models/x", "sessionResumption": {"handle": first}}}))
        .await;
    assert!(matches!(old.next().await, Got::Close(Some((1007, _)))));
    let mut setup2 = setup.clone();
    setup2["sessionResumption"] = json!({ "handle": last });
    let mut ws2 = gemini_text_session(&server, setup2).await;
    ws2.until_pred(|m| m.get("sessionResumptionUpdate").is_some())
        .await;
    assert!(server.stats().resumable_states <= 2);
    // A conversation over the byte budget is not resumable (and holds nothing).
    let big = "z".repeat(300 * 1024);
    ws2.send(
        &json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": big}]}],
                                       "turnComplete": true}}),
    )
    .await;
    let msgs = ws2
        .until_pred(|m| {
            m.get("sessionResumptionUpdate").is_some()
                && m["sessionResumptionUpdate"]["resumable"] == false
        })
        .await;
    assert_eq!(
        msgs.last().unwrap()["sessionResumptionUpdate"]["newHandle"],
        ""
    );
    assert!(server.stats().resumable_bytes <= 256 * 1024);
    server.stop().await;
}

#[actix_rt::test]
async fn gemini_resumption_handles_expire() {
    let server = LocalServer::start(ServerConfig {
        resumption_ttl: Duration::ZERO,
        ..fast()
    })
    .await
    .unwrap();
    let setup = json!({"model": "models/x", "sessionResumption": {}});
    let mut ws = gemini_text_session(&server, setup).await;
    let h = handle_of(
        &ws.until_pred(|m| m.get("sessionResumptionUpdate").is_some())
            .await,
    )
    .unwrap();
    let mut again = connect(&format!("{}{GEMINI}", server.gemini_url()), &[]).await;
    again
        .send(&json!({"setup": {"model": "models/x", "sessionResumption": {"handle": h}}}))
        .await;
    match again.next().await {
        Got::Close(Some((1007, reason))) => assert!(reason.contains("expired"), "{reason}"),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}
