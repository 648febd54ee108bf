//! Truncation after a mid-stream barge-in, end to end (issue 13, item 2): a scripted OpenAI
//! Realtime peer (`tests/support/peer.rs`, real WebSocket on 127.0.0.1) streams an answer's
//! audio, sends `input_audio_buffer.speech_started`, then (as the real API does) more audio
//! deltas generated before it saw the speech, then `response.done` cancelled. A real player
//! (the real-time `WavSink`, which plays on a virtual clock like a sound card) is attached to
//! the conversation, so the played position is a real one. The peer must receive
//! `conversation.item.truncate` for the item with `audio_end_ms` at what was played (checked
//! against the WAV file the sink wrote), and no truncate for an item without audio (the rule
//! in docs/reliability.md). Every frame of both directions passes the protocol validator.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use liveagent::audio::{CloseSink, GetPlaybackStats, WavSink};
use liveagent::{openai, LiveAgent, LiveEvent};
use liveagent_e2e::peer::ScriptedPeer;
use liveagent_e2e::*;
use serde_json::{json, Value};

/// Milliseconds of audio in each delta the peer sends.
const DELTA_MS: u64 = 100;
/// One output frame of the sink (its 10 ms render tick) plus rounding: the tolerance between
/// the truncate position and the samples written.
const FRAME_MS: i64 = 20;

fn response_created(r: &str) -> String {
    json!({"type": "response.created", "event_id": format!("evt_{r}_created"),
           "response": {"object": "realtime.response", "id": r, "status": "in_progress", "output": []}})
    .to_string()
}

fn item_added(r: &str, item: &str) -> Vec<String> {
    vec![
        json!({"type": "response.output_item.added", "event_id": format!("evt_{item}_added"),
               "response_id": r, "output_index": 0,
               "item": {"id": item, "object": "realtime.item", "type": "message",
                        "status": "in_progress", "role": "assistant", "content": []}})
        .to_string(),
        json!({"type": "response.content_part.added", "event_id": format!("evt_{item}_part"),
               "response_id": r, "item_id": item, "output_index": 0, "content_index": 0,
               "part": {"type": "audio", "transcript": ""}})
        .to_string(),
    ]
}

/// `DELTA_MS` of a 440 Hz tone (24 kHz PCM16) for `item`.
fn delta(r: &str, item: &str, n: usize) -> String {
    let pcm = liveagent_testkit::tone_pcm(440.0, DELTA_MS as u32, 24_000, 8000);
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    json!({"type": "response.output_audio.delta", "event_id": format!("evt_{item}_d{n}"),
           "response_id": r, "item_id": item, "output_index": 0, "content_index": 0,
           "delta": base64::engine::general_purpose::STANDARD.encode(bytes)})
    .to_string()
}

fn speech_started(user_item: &str) -> String {
    json!({"type": "input_audio_buffer.speech_started", "event_id": format!("evt_{user_item}_vad"),
           "audio_start_ms": 1200, "item_id": user_item})
    .to_string()
}

/// The end of a response cancelled by the barge-in.
fn cancelled(r: &str, item: &str, audio: bool) -> Vec<String> {
    let mut frames = Vec::new();
    if audio {
        frames.push(
            json!({"type": "response.output_audio.done", "event_id": format!("evt_{item}_adone"),
                   "response_id": r, "item_id": item, "output_index": 0, "content_index": 0})
            .to_string(),
        );
    }
    let done_item = json!({"id": item, "object": "realtime.item", "type": "message",
                           "status": "incomplete", "role": "assistant",
                           "content": [{"type": "output_audio", "transcript": ""}]});
    frames.push(
        json!({"type": "response.content_part.done", "event_id": format!("evt_{item}_pdone"),
               "response_id": r, "item_id": item, "output_index": 0, "content_index": 0,
               "part": {"type": "audio", "transcript": ""}})
        .to_string(),
    );
    frames.push(
        json!({"type": "response.output_item.done", "event_id": format!("evt_{item}_idone"),
               "response_id": r, "output_index": 0, "item": done_item})
        .to_string(),
    );
    frames.push(
        json!({"type": "response.done", "event_id": format!("evt_{r}_done"),
               "response": {"object": "realtime.response", "id": r, "status": "cancelled",
                            "status_details": {"type": "cancelled", "reason": "turn_detected"},
                            "output": [done_item]}})
        .to_string(),
    );
    frames
}

struct Setup {
    peer: ScriptedPeer,
    run: Run,
    sink: actix::Addr<WavSink>,
    wav: PathBuf,
}

/// A conversation against a fresh peer, with a real-time `WavSink` playing its audio.
async fn setup(name: &str) -> Setup {
    init_tracing();
    let peer = ScriptedPeer::openai(|_, _| Vec::new()).start().await;
    let run = Run::start(
        LiveAgent::builder("assistant").prompt("Test.").config(
            openai::RealtimeConfig::new("gpt-realtime")
                .base_url(format!("{}/v1", peer.url()))
                .api_key("local-key"),
        ),
    );
    let dir = std::env::temp_dir().join(format!("liveagent-barge-in-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join(format!("{name}.wav"));
    let sink = WavSink::new(run.conversation.context().clone(), &wav)
        .start()
        .expect("wav sink");
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
    Setup {
        peer,
        run,
        sink,
        wav,
    }
}

impl Setup {
    async fn send_all(&self, frames: impl IntoIterator<Item = String>) {
        for f in frames {
            self.peer.send(0, f).await;
        }
    }

    /// Waits until the sink has played at least `ms` of assistant audio.
    async fn played_at_least(&self, ms: u64) {
        let deadline = std::time::Instant::now() + FAILSAFE;
        loop {
            let stats = self.sink.send(GetPlaybackStats).await.expect("sink alive");
            if stats.played_ms >= ms {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sink played only {} ms",
                stats.played_ms
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The truncates the peer received.
    fn truncates(&self) -> Vec<Value> {
        self.peer
            .conn(0)
            .received_json()
            .into_iter()
            .filter(|f| f["type"] == "conversation.item.truncate")
            .collect()
    }

    /// Waits for a truncate, then ends the conversation; returns the truncate, the ms the
    /// sink wrote to its file, and what the player reported as played for `item`.
    async fn finish(self, item: &str) -> (Value, u64, u64) {
        self.peer
            .wait_until("a conversation.item.truncate", |c| {
                c[0].received
                    .iter()
                    .any(|f| f.contains("conversation.item.truncate"))
            })
            .await;
        let reported = self
            .run
            .collect(|e| match e {
                LiveEvent::PlaybackStopped(p) if &*p.item_id == item => Some(p.played_ms),
                _ => None,
            })
            .first()
            .copied()
            .expect("the player reported the item");
        let samples = self
            .sink
            .send(CloseSink)
            .await
            .expect("sink alive")
            .expect("wav written");
        let truncates = self.truncates();
        assert_eq!(truncates.len(), 1, "exactly one truncate: {truncates:?}");
        let conn = self.peer.conn(0);
        self.run.conversation.stop().await;
        validate_lines(&conn.wire_lines(), Protocol::OpenAi);
        let _ = std::fs::remove_file(&self.wav);
        self.peer.stop().await;
        (truncates[0].clone(), samples * 1000 / 24_000, reported)
    }
}

fn assert_within_a_frame(truncate: &Value, item: &str, played_ms: u64) {
    assert_eq!(truncate["item_id"], item, "{truncate}");
    assert_eq!(truncate["content_index"], 0, "{truncate}");
    let end = truncate["audio_end_ms"].as_u64().expect("audio_end_ms");
    assert!(
        (end as i64 - played_ms as i64).abs() <= FRAME_MS,
        "audio_end_ms {end} but {played_ms} ms were played"
    );
}

/// The player still holds most of the answer when the user barges in: the item is cut at
/// the played position, and the late deltas change nothing about it.
#[actix_rt::test]
async fn a_barge_in_mid_answer_truncates_the_item_to_what_was_played() {
    let s = setup("mid").await;
    let (r, item) = ("resp_1", "item_a1");
    s.send_all([response_created(r)]).await;
    s.send_all(item_added(r, item)).await;
    // 1.5 s of audio, faster than real time as the real API sends it.
    s.send_all((0..15).map(|n| delta(r, item, n))).await;
    s.played_at_least(300).await;
    s.send_all([speech_started("item_u1")]).await;
    s.send_all((15..18).map(|n| delta(r, item, n))).await;
    s.send_all(cancelled(r, item, true)).await;
    let (truncate, written_ms, reported) = s.finish(item).await;
    assert_within_a_frame(&truncate, item, written_ms);
    assert_eq!(truncate["audio_end_ms"].as_u64(), Some(reported));
    assert!(
        (300..1500).contains(&reported),
        "played {reported} ms of 1500 before the barge-in"
    );
}

/// The regression of issue 13: the player had played everything it was given when the user
/// barged in, so only the late (dropped) deltas went unheard. The item was still not heard
/// in full, and must be truncated to the played position.
#[actix_rt::test]
async fn dropped_late_audio_makes_a_fully_played_item_truncated() {
    let s = setup("late").await;
    let (r, item) = ("resp_2", "item_a2");
    s.send_all([response_created(r)]).await;
    s.send_all(item_added(r, item)).await;
    s.send_all((0..3).map(|n| delta(r, item, n))).await;
    // All 300 ms delivered are played (and the player reports the item played out).
    s.played_at_least(300).await;
    s.run
        .wait_count(
            "the player's report",
            1,
            |e| matches!(e, LiveEvent::PlaybackStopped(p) if &*p.item_id == item),
        )
        .await;
    assert!(s.truncates().is_empty(), "nothing unheard yet");
    s.send_all([speech_started("item_u2")]).await;
    s.send_all((3..8).map(|n| delta(r, item, n))).await;
    s.send_all(cancelled(r, item, true)).await;
    let (truncate, written_ms, reported) = s.finish(item).await;
    assert_within_a_frame(&truncate, item, written_ms);
    assert_eq!(truncate["audio_end_ms"].as_u64(), Some(reported));
    assert!(
        (reported as i64 - 300).abs() <= FRAME_MS,
        "the whole 300 ms were played: {reported}"
    );
}

/// An item the barge-in caught before any of its audio: never truncated (the API rejects a
/// truncate of an item without audio), while the conversation goes on.
#[actix_rt::test]
async fn an_item_without_audio_is_never_truncated() {
    let s = setup("none").await;
    let (r, item) = ("resp_3", "item_a3");
    s.send_all([response_created(r)]).await;
    s.send_all(item_added(r, item)).await;
    s.send_all([speech_started("item_u3")]).await;
    s.send_all(cancelled(r, item, false)).await;
    s.run
        .wait_count("the cancelled response", 1, |e| {
            matches!(e, LiveEvent::ResponseDone(_))
        })
        .await;
    // A later answer with audio, heard in part: the only truncate is for that one, so
    // anything the first item caused would already have reached the peer before it.
    let (r2, item2) = ("resp_4", "item_a4");
    s.send_all([response_created(r2)]).await;
    s.send_all(item_added(r2, item2)).await;
    s.send_all((0..10).map(|n| delta(r2, item2, n))).await;
    s.played_at_least(200).await;
    s.send_all([speech_started("item_u4")]).await;
    s.send_all(cancelled(r2, item2, true)).await;
    let (truncate, written_ms, _) = s.finish(item2).await;
    assert_within_a_frame(&truncate, item2, written_ms);
}
