//! The truncate rule after a mid-stream barge-in (issue 13, item 2), through the protocol's
//! public sans-IO API: audio the provider produced but the listener never heard (deltas that
//! arrive after `speech_started` and are dropped) makes the item "not heard in full", so a
//! `conversation.item.truncate` to the played position is sent, exactly once, and never for
//! an item without audio.

mod common;

use common::{feed, ready};
use liveagent_core::{Outbox, PlaybackStopped, RealtimeProtocol, SessionCommand};
use liveagent_openai::OpenAiProtocol;
use serde_json::{json, Value};

fn stopped(p: &mut OpenAiProtocol, item: &str, played_ms: u64, interrupted: bool) -> Outbox {
    let mut out = Outbox::new();
    p.on_command(
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: item.into(),
            played_ms,
            interrupted,
        }),
        &mut out,
    );
    out
}

fn truncates(out: &Outbox) -> Vec<Value> {
    out.frames
        .iter()
        .map(|f| serde_json::from_slice::<Value>(f.as_bytes()).unwrap())
        .filter(|f| f["type"] == "conversation.item.truncate")
        .collect()
}

fn delta(ms: usize) -> Value {
    use base64::Engine;
    let audio = base64::engine::general_purpose::STANDARD.encode(vec![1u8; ms * 48]);
    json!({"type":"response.output_audio.delta","event_id":"e","response_id":"r1","item_id":"item_A","output_index":0,"content_index":0,"delta":audio})
}

fn start_answer(p: &mut OpenAiProtocol) {
    feed(
        p,
        json!({"type":"response.created","event_id":"e","response":{"object":"realtime.response","id":"r1","status":"in_progress","output":[]}}),
    );
    feed(
        p,
        json!({"type":"response.output_item.added","event_id":"e","response_id":"r1","output_index":0,
               "item":{"id":"item_A","type":"message","object":"realtime.item","status":"in_progress","role":"assistant","content":[]}}),
    );
}

fn barge_in_with_late_audio(p: &mut OpenAiProtocol) -> Outbox {
    let mut out = feed(
        p,
        json!({"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":400,"item_id":"item_U"}),
    );
    // As the real API does: audio generated before it saw the speech still arrives.
    for _ in 0..3 {
        let late = feed(p, delta(100));
        assert!(late.events.is_empty(), "late audio is not played");
        out.frames.extend(late.frames);
    }
    let done = feed(
        p,
        json!({"type":"output_audio_buffer.cleared","event_id":"e"}),
    );
    out.frames.extend(done.frames);
    let done = feed(
        p,
        json!({"type":"response.output_audio.done","event_id":"e","response_id":"r1","item_id":"item_A","output_index":0,"content_index":0}),
    );
    out.frames.extend(done.frames);
    let done = feed(
        p,
        json!({"type":"response.done","event_id":"e","response":{"id":"r1","status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},"output":[]}}),
    );
    out.frames.extend(done.frames);
    out
}

#[test]
fn dropped_late_audio_is_unheard_so_the_item_is_truncated_to_the_played_position() {
    let mut p = ready();
    start_answer(&mut p);
    for _ in 0..5 {
        feed(&mut p, delta(100));
    }
    barge_in_with_late_audio(&mut p);
    // The player played all 500 ms it was given before the flush.
    let out = stopped(&mut p, "item_A", 500, true);
    assert_eq!(
        truncates(&out),
        vec![
            json!({"type":"conversation.item.truncate","item_id":"item_A","content_index":0,"audio_end_ms":500})
        ]
    );
}

#[test]
fn an_item_already_reported_played_is_truncated_when_late_audio_arrives_once() {
    let mut p = ready();
    start_answer(&mut p);
    for _ in 0..5 {
        feed(&mut p, delta(100));
    }
    // The player ran out and reported the item as played in full (not interrupted).
    assert!(truncates(&stopped(&mut p, "item_A", 500, false)).is_empty());
    let out = barge_in_with_late_audio(&mut p);
    assert_eq!(
        truncates(&out),
        vec![
            json!({"type":"conversation.item.truncate","item_id":"item_A","content_index":0,"audio_end_ms":500})
        ],
        "one truncate, at what was heard"
    );
}

#[test]
fn an_item_heard_in_full_or_without_audio_is_not_truncated() {
    let mut p = ready();
    start_answer(&mut p);
    for _ in 0..5 {
        feed(&mut p, delta(100));
    }
    feed(
        &mut p,
        json!({"type":"response.output_audio.done","event_id":"e","response_id":"r1","item_id":"item_A","output_index":0,"content_index":0}),
    );
    feed(
        &mut p,
        json!({"type":"response.done","event_id":"e","response":{"id":"r1","status":"completed","output":[]}}),
    );
    assert!(truncates(&stopped(&mut p, "item_A", 500, true)).is_empty());
}
