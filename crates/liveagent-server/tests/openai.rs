//! OpenAI Realtime GA sessions against the local server, over a raw WebSocket.

mod common;

use common::*;
use liveagent_server::{LocalServer, Pacing, ServerConfig};
use serde_json::json;

fn fast() -> ServerConfig {
    ServerConfig {
        pacing: Pacing::AsFastAsPossible,
        ..ServerConfig::default()
    }
}

async fn open(server: &LocalServer) -> Ws {
    let url = format!("{}/realtime?model=gpt-realtime", server.openai_url());
    let mut ws = connect(&url, &[]).await;
    let first = ws.json().await;
    assert_eq!(first["type"], "session.created", "{first}");
    assert_eq!(first["session"]["type"], "realtime");
    ws
}

#[actix_rt::test]
async fn voice_turn_is_echoed_with_vad_events_and_transcripts() {
    let server = LocalServer::start(ServerConfig::default().recording_in_memory())
        .await
        .unwrap();
    let mut ws = open(&server).await;
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}}}}}),
    )
    .await;
    let ev = ws.until("session.updated").await;
    let updated = ev.last().unwrap();
    assert_eq!(
        updated["session"]["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert!(updated["session"]["audio"]["input"]["transcription"].is_object());

    // 0.5 s silence, 1.0 s tone, 0.8 s silence.
    let input = utterance(500, 1000, 800, 24000);
    append_audio(&mut ws, &input).await;
    let events = ws.until("response.done").await;
    let t = types(&events);
    for want in [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
    ] {
        assert!(t.iter().any(|x| x == want), "missing {want} in {t:?}");
    }
    let started = events
        .iter()
        .find(|e| e["type"] == "input_audio_buffer.speech_started")
        .unwrap();
    assert_eq!(started["audio_start_ms"], 500);
    let stopped = events
        .iter()
        .find(|e| e["type"] == "input_audio_buffer.speech_stopped")
        .unwrap();
    assert_eq!(stopped["audio_end_ms"], 2000);
    let tr = events
        .iter()
        .find(|e| e["type"] == "conversation.item.input_audio_transcription.completed")
        .unwrap();
    assert_eq!(tr["transcript"], "[speech 1.0 s]");
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_audio_transcript.done")
        .unwrap();
    assert_eq!(done["transcript"], "You said: [speech 1.0 s]");

    // The echo is the user's own samples: 300 ms prefix padding + the 1 s tone.
    let out = output_audio(&events);
    assert_eq!(out.len(), 24 * 1300, "echo length");
    assert_eq!(
        &out[..],
        &input[24 * 200..24 * 1500],
        "echo must be the recorded samples"
    );

    let resp = events.last().unwrap();
    assert_eq!(resp["response"]["status"], "completed");
    assert!(
        resp["response"]["usage"]["output_token_details"]["audio_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );

    let sessions = server.sessions();
    assert_eq!(sessions.len(), 1);
    let items = &sessions[0].items;
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].text, "[speech 1.0 s]");
    assert_eq!(items[1].audio_ms, 1300);
    ws.close().await;
    server.stop().await;
}

#[actix_rt::test]
async fn text_message_gets_you_said_in_text_mode() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(&server).await;
    ws.send(&json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}))
        .await;
    ws.until("session.updated").await;
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello there"}]}}),
    )
    .await;
    let ev = ws.until("conversation.item.done").await;
    assert_eq!(ev[0]["type"], "conversation.item.added");
    ws.send(&json!({"type": "response.create"})).await;
    let events = ws.until("response.done").await;
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "You said: hello there");
    assert!(!types(&events)
        .iter()
        .any(|t| t == "response.output_audio.delta"));
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .unwrap();
    assert_eq!(done["text"], "You said: hello there");
    server.stop().await;
}

#[actix_rt::test]
async fn wrong_or_missing_key_gets_invalid_api_key_then_close() {
    let server = LocalServer::start(ServerConfig::default().with_api_key("sk-right"))
        .await
        .unwrap();
    let url = format!("{}/realtime?model=gpt-realtime", server.openai_url());
    for headers in [vec![("Authorization", "Bearer sk-wrong")], vec![]] {
        let mut ws = connect(&url, &headers).await;
        let e = ws.json().await;
        assert_eq!(e["type"], "error");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["code"], "invalid_api_key");
        assert!(
            !e.to_string().contains("sk-wrong"),
            "the key must not be echoed"
        );
        match ws.next().await {
            Got::Close(Some((code, _))) => assert_eq!(code, 1008),
            other => panic!("expected a close, got {other:?}"),
        }
    }
    let mut ws = connect(&url, &[("Authorization", "Bearer sk-right")]).await;
    assert_eq!(ws.json().await["type"], "session.created");
    server.stop().await;
}

#[actix_rt::test]
async fn malformed_frames_get_error_events_and_the_session_survives() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(&server).await;
    let cases: Vec<(&str, &str)> = vec![
        ("{not json", "invalid_json"),
        (r#"{"no_type": 1}"#, "missing_required_parameter"),
        (
            r#"{"type": "bogus.event", "event_id": "e1"}"#,
            "invalid_value",
        ),
        (
            r#"{"type": "input_audio_buffer.append", "audio": "%%%"}"#,
            "invalid_value",
        ),
        (
            r#"{"type": "input_audio_buffer.append"}"#,
            "missing_required_parameter",
        ),
        (
            r#"{"type": "session.update", "session": {"instructions": "x"}}"#,
            "missing_required_parameter",
        ),
        (
            r#"{"type": "input_audio_buffer.commit"}"#,
            "input_audio_buffer_commit_empty",
        ),
        (
            r#"{"type": "response.cancel"}"#,
            "response_cancel_not_active",
        ),
        (
            r#"{"type": "conversation.item.delete", "item_id": "nope"}"#,
            "item_not_found",
        ),
        (r#"[1,2,3]"#, "missing_required_parameter"),
    ];
    for (frame, code) in cases {
        ws.send_text(frame).await;
        let e = ws.json().await;
        assert_eq!(e["type"], "error", "{frame} -> {e}");
        assert_eq!(e["error"]["code"], code, "{frame} -> {e}");
    }
    ws.send_text(r#"{"type": "bogus.event", "event_id": "evt_42"}"#)
        .await;
    assert_eq!(ws.json().await["error"]["event_id"], "evt_42");
    ws.send_binary(vec![0xff, 0xfe]).await;
    assert_eq!(ws.json().await["error"]["code"], "invalid_json");
    // Still alive and answering.
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "still there?"}]}}),
    )
    .await;
    ws.send(&json!({"type": "response.create"})).await;
    let events = ws.until("response.done").await;
    let tr = events
        .iter()
        .find(|e| e["type"] == "response.output_audio_transcript.done")
        .unwrap();
    assert_eq!(tr["transcript"], "You said: still there?");
    assert_eq!(server.sessions()[0].client_errors, 12);
    server.stop().await;
}

#[actix_rt::test]
async fn manual_turns_commit_then_response_create() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(&server).await;
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime",
        "audio": {"input": {"turn_detection": null}}}}),
    )
    .await;
    let ev = ws.until("session.updated").await;
    assert!(ev.last().unwrap()["session"]["audio"]["input"]["turn_detection"].is_null());
    let input = liveagent_testkit::tone_pcm(300.0, 600, 24000, 6000);
    append_audio(&mut ws, &input).await;
    ws.send(&json!({"type": "input_audio_buffer.commit"})).await;
    let ev = ws.until("conversation.item.done").await;
    assert!(!types(&ev)
        .iter()
        .any(|t| t.starts_with("input_audio_buffer.speech")));
    assert_eq!(ev[0]["type"], "input_audio_buffer.committed");
    ws.send(&json!({"type": "response.create"})).await;
    let events = ws.until("response.done").await;
    assert_eq!(
        output_audio(&events),
        input,
        "manual commit echoes the whole buffer"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn speech_during_a_response_interrupts_it() {
    // Real-time pacing so that the response is still running when the user speaks again.
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let mut ws = open(&server).await;
    append_audio(&mut ws, &utterance(200, 3000, 700, 24000)).await;
    ws.until("response.output_audio.delta").await;
    append_audio(&mut ws, &utterance(0, 400, 0, 24000)).await;
    let events = ws.until("response.done").await;
    let done = events.last().unwrap();
    assert_eq!(done["response"]["status"], "cancelled", "{done}");
    assert_eq!(
        done["response"]["status_details"]["reason"],
        "turn_detected"
    );
    assert!(types(&events)
        .iter()
        .any(|t| t == "input_audio_buffer.speech_started"));
    // The assistant item keeps only what was sent.
    let items = server.sessions()[0].items.clone();
    let assistant = items
        .iter()
        .find(|i| i.role == Some(liveagent_server::Role::Assistant))
        .unwrap();
    assert_eq!(assistant.status, "incomplete");
    assert!(assistant.audio_ms < 3300, "{assistant:?}");
    server.stop().await;
}

#[actix_rt::test]
async fn response_cancel_and_truncate() {
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let mut ws = open(&server).await;
    ws.send(&json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "tell me a rather long story about many things please"}]}}))
        .await;
    ws.send(&json!({"type": "response.create"})).await;
    let ev = ws.until("response.output_audio.delta").await;
    let item_id = ev
        .iter()
        .find(|e| e["type"] == "response.output_item.added")
        .unwrap()["item"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ws.send(&json!({"type": "response.cancel"})).await;
    let events = ws.until("response.done").await;
    assert_eq!(
        events.last().unwrap()["response"]["status_details"]["reason"],
        "client_cancelled"
    );
    let sent_ms = server.sessions()[0]
        .items
        .iter()
        .find(|i| i.id == item_id)
        .unwrap()
        .audio_ms;
    // Beyond the audio: an error.
    ws.send(
        &json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
        "audio_end_ms": sent_ms + 1000}),
    )
    .await;
    let e = ws.until("error").await;
    assert_eq!(e.last().unwrap()["error"]["param"], "audio_end_ms");
    // Within: truncated.
    ws.send(
        &json!({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0,
        "audio_end_ms": 20}),
    )
    .await;
    let t = ws.until("conversation.item.truncated").await;
    assert_eq!(t.last().unwrap()["audio_end_ms"], 20);
    let item = server.sessions()[0]
        .items
        .iter()
        .find(|i| i.id == item_id)
        .cloned()
        .unwrap();
    assert_eq!(item.audio_ms, 20);
    server.stop().await;
}

#[actix_rt::test]
async fn replayed_history_shows_in_the_item_list() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(&server).await;
    let history = [
        json!({"type": "message", "id": "h1", "role": "system", "content": [{"type": "input_text", "text": "be brief"}]}),
        json!({"type": "message", "id": "h2", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}),
        json!({"type": "message", "id": "h3", "role": "assistant", "content": [{"type": "output_text", "text": "hello!"}]}),
        json!({"type": "function_call", "id": "h4", "call_id": "c1", "name": "get_time", "arguments": "{}"}),
        json!({"type": "function_call_output", "id": "h5", "call_id": "c1", "output": "noon"}),
    ];
    for item in &history {
        ws.send(&json!({"type": "conversation.item.create", "item": item}))
            .await;
        let ev = ws.until("conversation.item.done").await;
        assert_eq!(ev.last().unwrap()["item"]["id"], item["id"]);
    }
    // Insert at the root.
    ws.send(&json!({"type": "conversation.item.create", "previous_item_id": "root",
        "item": {"type": "message", "id": "h0", "role": "user", "content": [{"type": "input_text", "text": "first"}]}}))
        .await;
    let ev = ws.until("conversation.item.done").await;
    assert!(ev.last().unwrap()["previous_item_id"].is_null());
    ws.send(&json!({"type": "conversation.item.delete", "item_id": "h3"}))
        .await;
    ws.until("conversation.item.deleted").await;
    let ids: Vec<String> = server.sessions()[0]
        .items
        .iter()
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(ids, ["h0", "h1", "h2", "h4", "h5"]);
    let texts: Vec<String> = server.sessions()[0]
        .items
        .iter()
        .map(|i| i.text.clone())
        .collect();
    assert_eq!(texts, ["first", "be brief", "hi", "{}", "noon"]);
    server.stop().await;
}

#[actix_rt::test]
async fn g711_formats_both_ways() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(&server).await;
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": null},
        "output": {"format": {"type": "audio/pcma"}}}}}),
    )
    .await;
    let ev = ws.until("session.updated").await;
    assert_eq!(
        ev.last().unwrap()["session"]["audio"]["output"]["format"]["type"],
        "audio/pcma"
    );
    // 500 ms of an 8 kHz µ-law tone.
    let tone = liveagent_testkit::tone_pcm(400.0, 500, 8000, 8000);
    let ulaw: Vec<u8> = tone
        .iter()
        .map(|s| liveagent_server::audio::ulaw_encode(*s))
        .collect();
    for chunk in ulaw.chunks(320) {
        ws.send(&json!({"type": "input_audio_buffer.append",
            "audio": liveagent_server::audio::b64_encode(chunk)}))
            .await;
    }
    ws.send(&json!({"type": "input_audio_buffer.commit"})).await;
    ws.until("conversation.item.done").await;
    ws.send(&json!({"type": "response.create"})).await;
    let events = ws.until("response.done").await;
    let alaw: Vec<u8> = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .flat_map(|e| liveagent_server::audio::b64_decode(e["delta"].as_str().unwrap()).unwrap())
        .collect();
    // One byte per 8 kHz sample, and the tone survives the round trip.
    assert!((alaw.len() as i64 - 4000).abs() <= 8, "{}", alaw.len());
    let back: Vec<i16> = alaw
        .iter()
        .map(|b| liveagent_server::audio::alaw_decode(*b))
        .collect();
    let peak = back.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((6000..=9000).contains(&peak), "peak {peak}");
    // Unsupported formats are refused.
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 16000}}}}}),
    )
    .await;
    let e = ws.until("error").await;
    assert_eq!(
        e.last().unwrap()["error"]["param"],
        "session.audio.input.format.rate"
    );
    server.stop().await;
}

#[actix_rt::test]
async fn out_of_band_response_is_not_added_to_the_conversation() {
    let server = LocalServer::start(fast()).await.unwrap();
    let mut ws = open(&server).await;
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "summarise"}]}}),
    )
    .await;
    ws.until("conversation.item.done").await;
    ws.send(
        &json!({"type": "response.create", "response": {"conversation": "none",
        "output_modalities": ["text"], "metadata": {"purpose": "summary"}}}),
    )
    .await;
    let events = ws.until("response.done").await;
    let done = events.last().unwrap();
    assert!(done["response"]["conversation_id"].is_null());
    assert_eq!(done["response"]["metadata"]["purpose"], "summary");
    assert!(!types(&events)
        .iter()
        .any(|t| t.starts_with("conversation.item")));
    assert_eq!(server.sessions()[0].items.len(), 1);
    server.stop().await;
}

#[actix_rt::test]
async fn without_interrupt_response_the_next_turn_waits_for_the_current_answer() {
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let mut ws = open(&server).await;
    ws.send(
        &json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "interrupt_response": false}}}}}),
    )
    .await;
    ws.until("session.updated").await;
    append_audio(&mut ws, &utterance(200, 1500, 600, 24000)).await;
    ws.until("response.output_audio.delta").await;
    append_audio(&mut ws, &utterance(0, 400, 600, 24000)).await;
    let first = ws.until("response.done").await;
    assert_eq!(first.last().unwrap()["response"]["status"], "completed");
    assert!(types(&first)
        .iter()
        .any(|t| t == "input_audio_buffer.speech_started"));
    let second = ws.until("response.done").await;
    assert_eq!(second.last().unwrap()["response"]["status"], "completed");
    let tr = second
        .iter()
        .find(|e| e["type"] == "response.output_audio_transcript.done")
        .unwrap();
    assert_eq!(tr["transcript"], "You said: [speech 0.4 s]");
    server.stop().await;
}

#[actix_rt::test]
async fn idle_timeout_triggers_a_response_after_silence() {
    let server = LocalServer::start(fast().recording_in_memory())
        .await
        .unwrap();
    let mut ws = open(&server).await;
    ws.send(&json!({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"],
        "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 300}}}}}))
        .await;
    ws.until("session.updated").await;
    ws.send(
        &json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hello"}]}}),
    )
    .await;
    ws.send(&json!({"type": "response.create"})).await;
    ws.until("response.done").await;
    // Nobody speaks: only silence arrives.
    append_audio(&mut ws, &liveagent_testkit::silence_pcm(400, 24000)).await;
    let ev = ws.until("response.done").await;
    let t = types(&ev);
    let trig = t
        .iter()
        .position(|x| x == "input_audio_buffer.timeout_triggered")
        .expect("timeout");
    let created = t.iter().position(|x| x == "response.created").unwrap();
    assert!(trig < created, "{t:?}");
    let text = ev
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .unwrap();
    assert_eq!(text["text"], "You said: [no speech for 0.3 s]");
    let report =
        liveagent_testkit::validate_lines(&server.recording(), liveagent_testkit::Protocol::OpenAi);
    assert!(
        report.contains("input_audio_buffer.timeout_triggered"),
        "{report}"
    );
    server.stop().await;
}
