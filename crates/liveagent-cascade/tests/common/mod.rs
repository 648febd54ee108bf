//! What the stage tests share (`providers.rs`, `streaming_providers.rs`): the local server
//! with a key, readers of what it recorded, running a stage to its end, and the length of
//! the server's stand-in speech.

// Each test file uses part of it.
#![allow(dead_code)]

use std::sync::Arc;

use futures_util::StreamExt;
use liveagent_cascade::{Stt, SttEvent, Tts, TtsEvent};
use liveagent_core::LiveError;
use liveagent_server::{LocalServer, ServerConfig};
use serde_json::Value;

/// The local server, recording in memory, accepting the key `local-key`.
pub async fn server() -> LocalServer {
    let mut cfg = ServerConfig::default().recording_in_memory();
    cfg.api_key = Some("local-key".into());
    LocalServer::start(cfg).await.expect("server")
}

/// What follows `prefix` in each recorded line that has it.
pub fn notes(server: &LocalServer, prefix: &str) -> Vec<String> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.split_once(prefix).map(|(_, r)| r.to_owned()))
        .collect()
}

/// The client messages the fakes' WebSockets received, parsed.
pub fn received(server: &LocalServer) -> Vec<Value> {
    notes(server, "cascade ws <- ")
        .iter()
        .filter_map(|j| serde_json::from_str(j).ok())
        .collect()
}

/// Transcribes a spoken question at the stage's rate: every item of the stream.
pub async fn transcribe(stt: &dyn Stt) -> Vec<Result<SttEvent, LiveError>> {
    let rate = stt.capabilities().sample_rate;
    let audio: Arc<[i16]> =
        liveagent_testkit::speech_pcm("What is the weather in Paris?", rate).into();
    stt.transcribe(audio).collect().await
}

/// [`transcribe`], every item expected to be an event.
pub async fn transcribe_ok(stt: &dyn Stt) -> Vec<SttEvent> {
    transcribe(stt)
        .await
        .into_iter()
        .map(|e| e.expect("stt event"))
        .collect()
}

/// The final transcript, which must come last.
pub fn final_text(events: &[SttEvent]) -> String {
    match events.last() {
        Some(SttEvent::Final { text, .. }) => text.clone(),
        other => panic!("no final transcript: {other:?}"),
    }
}

/// The partial transcripts joined.
pub fn partials(events: &[SttEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Partial(p) => Some(p.as_str()),
            _ => None,
        })
        .collect()
}

/// Synthesizes `text`: the audio, and the other events (the `Done`s).
pub async fn synthesize(tts: &dyn Tts, text: &str) -> (Vec<i16>, Vec<TtsEvent>) {
    let events: Vec<_> = tts.synthesize(text.to_owned()).collect().await;
    let mut audio = Vec::new();
    let mut rest = Vec::new();
    for e in events {
        match e.expect("tts event") {
            TtsEvent::Audio(a) => audio.extend(a),
            other => rest.push(other),
        }
    }
    (audio, rest)
}

/// The server's stand-in speech is 60 ms per character of each word plus 40 ms per word.
pub fn expected_samples(text: &str, rate: u32) -> usize {
    let ms: u64 = text
        .split_whitespace()
        .map(|w| w.chars().count() as u64 * 60 + 40)
        .sum();
    (ms * rate as u64 / 1000) as usize
}
