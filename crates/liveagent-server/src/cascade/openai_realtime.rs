//! Fake OpenAI realtime transcription session: `GET /v1/realtime?intent=transcription`
//! (the `/v1/realtime` route hands it over when `intent=transcription`).
//!
//! `session.created` first (`session.type: "transcription"`); `session.update` must keep
//! `type: "transcription"` and is answered with `session.updated`; `input_audio_buffer.append`
//! (base64, `audio/pcm` 24 kHz, `audio/pcmu` or `audio/pcma`) fills the buffer;
//! `input_audio_buffer.commit` (or the server VAD, when `turn_detection` is `server_vad`)
//! makes an item: `input_audio_buffer.committed`, then
//! `conversation.item.input_audio_transcription.delta`s and `.completed` with the honest
//! label of the speech heard.
//!
//! When the deltas come depends on the model, as on the real API: the natively streaming
//! models (`gpt-realtime-whisper`, `gpt-live-transcribe`) send deltas while the audio
//! arrives, before the commit (here: the label's first word as soon as speech is heard,
//! with the id the commit will give the item; the rest after the commit), and take no
//! turn detection (`turn_detection` omitted or `null`; anything else is an error). The
//! other models transcribe on the commit: every delta comes after `committed`. Errors are `error` events in OpenAI's shape, the socket stays
//! open: a `model` on the URL (`invalid_model`), a session of another type, bad base64,
//! committing less than 100 ms (`input_audio_buffer_commit_empty`), unknown events. A
//! transcription model containing `fail-once`/`fail-always` gets
//! `conversation.item.input_audio_transcription.failed`. A wrong key: an `error` event
//! (`invalid_api_key`) and close 1008, as for conversation sessions.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::ws::{upgrade, FakeWs, Incoming};
use super::{should_fail, transcript_of, MAX_SEGMENT_SAMPLES};
use crate::audio::{b64_decode, pcm_to_bytes, WireAudio, INTERNAL_RATE};
use crate::server::{bearer, query_param, Shared};
use crate::vad::{Vad, VadConfig, VadEvent};

/// Models a transcription session accepts.
const MODELS: [&str; 8] = [
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe-diarize",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-realtime-whisper",
];

/// Models that stream their transcript while the audio arrives (deltas before the
/// commit) and take no turn detection.
const STREAMING: [&str; 2] = ["gpt-realtime-whisper", "gpt-live-transcribe"];

/// The route, called by the `/v1/realtime` handler for `intent=transcription`.
pub(crate) async fn route(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let authorized = shared.key_ok(bearer(&req).as_deref());
    // The official SDK sends an empty `model=` when none is given: that is no model.
    let url_model = query_param(&req, "model").filter(|m| !m.is_empty());
    upgrade(&req, body, shared, move |ws| async move {
        Session::new(ws, url_model).run(authorized).await
    })
}

struct Session {
    ws: FakeWs,
    url_model: Option<String>,
    next_event: u64,
    next_item: u64,
    format: WireAudio,
    model: Option<String>,
    vad: Option<Vad>,
    /// The buffer, PCM16 at 24 kHz.
    buffer: Vec<i16>,
    previous_item: Option<String>,
    /// The transcript already sent as deltas for the item being spoken (streaming models).
    streamed: String,
}

impl Session {
    fn new(ws: FakeWs, url_model: Option<String>) -> Self {
        Session {
            ws,
            url_model,
            next_event: 0,
            next_item: 0,
            format: WireAudio::Pcm(24_000),
            model: None,
            vad: Some(Vad::new(VadConfig::default())),
            buffer: Vec::new(),
            previous_item: None,
            streamed: String::new(),
        }
    }

    async fn emit(&mut self, mut v: Value) -> bool {
        self.next_event += 1;
        v["event_id"] = json!(format!("event_t{}", self.next_event));
        self.ws.send(v).await
    }

    async fn error(&mut self, code: &str, message: &str, param: Option<&str>) -> bool {
        self.emit(json!({"type": "error", "error": {
            "type": "invalid_request_error", "code": code, "message": message,
            "param": param, "event_id": null,
        }}))
        .await
    }

    fn session_json(&self) -> Value {
        let format = match self.format {
            WireAudio::Pcm(rate) => json!({"type": "audio/pcm", "rate": rate}),
            WireAudio::Pcmu => json!({"type": "audio/pcmu"}),
            WireAudio::Pcma => json!({"type": "audio/pcma"}),
        };
        let turn_detection = match &self.vad {
            None => Value::Null,
            Some(v) => {
                let c = v.config();
                json!({"type": "server_vad", "threshold": c.threshold,
                       "prefix_padding_ms": c.prefix_padding_ms,
                       "silence_duration_ms": c.silence_duration_ms})
            }
        };
        let transcription = match &self.model {
            Some(m) => json!({"model": m}),
            None => Value::Null,
        };
        json!({
            "type": "transcription",
            "id": "sess_local_transcription",
            "object": "realtime.transcription_session",
            "audio": {"input": {
                "format": format,
                "noise_reduction": null,
                "transcription": transcription,
                "turn_detection": turn_detection,
            }},
            "include": null,
        })
    }

    async fn run(mut self, authorized: bool) {
        if !authorized {
            self.emit(json!({"type": "error", "error": {
                "type": "invalid_request_error", "code": "invalid_api_key",
                "message": "Incorrect API key provided.", "param": null, "event_id": null}}))
                .await;
            return self.ws.close(1008, "invalid_api_key").await;
        }
        let session = self.session_json();
        self.emit(json!({"type": "session.created", "session": session}))
            .await;
        loop {
            let msg = match self.ws.recv(Duration::from_secs(600)).await {
                Incoming::Json(v) => v,
                Incoming::Bad(why) => {
                    self.error("invalid_json", &why, None).await;
                    continue;
                }
                Incoming::Idle | Incoming::Gone => return,
            };
            if !self.handle(msg).await {
                return;
            }
        }
    }

    /// Handles one client event; false when the client is gone.
    async fn handle(&mut self, msg: Value) -> bool {
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "session.update" => self.update(&msg).await,
            "input_audio_buffer.append" => {
                let Some(b64) = msg.get("audio").and_then(Value::as_str) else {
                    return self
                        .error(
                            "missing_required_parameter",
                            "Missing required parameter: 'audio'.",
                            Some("audio"),
                        )
                        .await;
                };
                let bytes = match b64_decode(b64) {
                    Ok(b) if !matches!(self.format, WireAudio::Pcm(_)) || b.len() % 2 == 0 => b,
                    _ => {
                        return self
                            .error(
                                "invalid_value",
                                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                                Some("audio"),
                            )
                            .await
                    }
                };
                let samples = self.format.decode(&bytes);
                if self.buffer.len() + samples.len() > MAX_SEGMENT_SAMPLES {
                    return self
                        .error("input_audio_buffer_too_large", "The input audio buffer holds more than 10 minutes of audio: commit or clear it.", Some("audio"))
                        .await;
                }
                let events = match &mut self.vad {
                    Some(vad) => vad.push(&samples),
                    None => Vec::new(),
                };
                self.buffer.extend_from_slice(&samples);
                if !self.stream_delta(&samples).await {
                    return false;
                }
                for e in events {
                    if !self.on_vad(e).await {
                        return false;
                    }
                }
                true
            }
            "input_audio_buffer.commit" => self.commit().await,
            "input_audio_buffer.clear" => {
                self.buffer.clear();
                self.streamed.clear();
                self.emit(json!({"type": "input_audio_buffer.cleared"}))
                    .await
            }
            other => {
                let message = format!(
                    "Invalid value: '{other}'. A transcription session accepts 'session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit' and 'input_audio_buffer.clear'."
                );
                self.error("invalid_value", &message, Some("type")).await
            }
        }
    }

    async fn update(&mut self, msg: &Value) -> bool {
        let Some(session) = msg.get("session").filter(|s| s.is_object()) else {
            return self
                .error(
                    "missing_required_parameter",
                    "Missing required parameter: 'session'.",
                    Some("session"),
                )
                .await;
        };
        if let Some(m) = &self.url_model {
            let message = format!(
                "Model '{m}' on the URL opens a conversation session, which does not accept a transcription update: connect with ?intent=transcription and no model."
            );
            return self.error("invalid_model", &message, Some("model")).await;
        }
        if session.get("type").and_then(Value::as_str) != Some("transcription") {
            return self
                .error("invalid_value", "Invalid value for 'session.type': this is a transcription session ('transcription').", Some("session.type"))
                .await;
        }
        let input = session.pointer("/audio/input");
        if let Some(format) = input.and_then(|i| i.get("format")) {
            self.format = match (
                format.get("type").and_then(Value::as_str),
                format.get("rate").and_then(Value::as_u64),
            ) {
                (Some("audio/pcm"), None | Some(24_000)) => WireAudio::Pcm(24_000),
                (Some("audio/pcmu"), _) => WireAudio::Pcmu,
                (Some("audio/pcma"), _) => WireAudio::Pcma,
                _ => {
                    return self
                        .error("invalid_value", "Invalid 'session.audio.input.format': 'audio/pcm' (rate 24000), 'audio/pcmu' or 'audio/pcma'.", Some("session.audio.input.format"))
                        .await
                }
            };
        }
        if let Some(t) = input.and_then(|i| i.get("transcription")) {
            match t.get("model").and_then(Value::as_str) {
                Some(m) if MODELS.contains(&m) || m.contains("fail-") => {
                    self.model = Some(m.to_owned());
                    if self.streaming() {
                        // No server turn detection with these models.
                        match input.and_then(|i| i.get("turn_detection")) {
                            None | Some(Value::Null) => self.vad = None,
                            Some(_) => {
                                return self
                                    .error("invalid_value", "Turn detection is not supported for this transcription model: set 'turn_detection' to null and commit each turn.", Some("session.audio.input.turn_detection"))
                                    .await
                            }
                        }
                    }
                }
                _ => {
                    return self
                        .error("invalid_value", &format!("Invalid 'session.audio.input.transcription.model'. Supported: {MODELS:?}."), Some("session.audio.input.transcription.model"))
                        .await
                }
            }
        }
        if let Some(td) = input
            .and_then(|i| i.get("turn_detection"))
            .filter(|_| !self.streaming())
        {
            self.vad = match td {
                Value::Null => None,
                td if td.get("type").and_then(Value::as_str) == Some("server_vad") => {
                    let d = VadConfig::default();
                    let f = |k: &str| td.get(k).and_then(Value::as_f64);
                    Some(Vad::new(VadConfig {
                        threshold: f("threshold").map(|x| x as f32).unwrap_or(d.threshold),
                        prefix_padding_ms: f("prefix_padding_ms").map(|x| x as u32).unwrap_or(d.prefix_padding_ms),
                        silence_duration_ms: f("silence_duration_ms").map(|x| x as u32).unwrap_or(d.silence_duration_ms),
                        min_speech_ms: d.min_speech_ms,
                    }))
                }
                _ => {
                    return self
                        .error("invalid_value", "The local server supports turn_detection null or 'server_vad' in transcription sessions.", Some("session.audio.input.turn_detection"))
                        .await
                }
            };
        }
        let session = self.session_json();
        self.emit(json!({"type": "session.updated", "session": session}))
            .await
    }

    async fn on_vad(&mut self, e: VadEvent) -> bool {
        let item = format!("item_t{}", self.next_item + 1);
        match e {
            VadEvent::SpeechStarted { start_ms } => {
                self.emit(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": start_ms, "item_id": item}))
                    .await
            }
            VadEvent::SpeechStopped { end_ms, .. } => {
                self.emit(json!({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": end_ms, "item_id": item}))
                    .await
                    && self.commit().await
            }
        }
    }

    /// A natively streaming model (deltas before the commit, no turn detection).
    fn streaming(&self) -> bool {
        self.model
            .as_deref()
            .is_some_and(|m| STREAMING.contains(&m))
    }

    /// A streaming model's delta while the audio arrives: the label's first word as soon
    /// as `samples` (just appended) hold speech, once per item. False when the client is
    /// gone.
    async fn stream_delta(&mut self, samples: &[i16]) -> bool {
        if !self.streaming() || !self.streamed.is_empty() {
            return true;
        }
        let (heard, _) = transcript_of(&pcm_to_bytes(samples), Some(INTERNAL_RATE));
        let Some(first) = heard.split_inclusive(' ').next() else {
            return true;
        };
        self.streamed = first.to_owned();
        let item = format!("item_t{}", self.next_item + 1);
        self.emit(
            json!({"type": "conversation.item.input_audio_transcription.delta",
            "item_id": item, "content_index": 0, "delta": first}),
        )
        .await
    }

    async fn commit(&mut self) -> bool {
        let ms = self.buffer.len() as u64 * 1000 / INTERNAL_RATE as u64;
        if ms < 100 {
            let message = format!("Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {ms}.00ms of audio.");
            return self
                .error("input_audio_buffer_commit_empty", &message, None)
                .await;
        }
        self.next_item += 1;
        let item = format!("item_t{}", self.next_item);
        let audio = std::mem::take(&mut self.buffer);
        let previous = self.previous_item.replace(item.clone());
        if !self
            .emit(json!({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item}))
            .await
        {
            return false;
        }
        let model = self.model.clone().unwrap_or_default();
        self.ws.note(&format!(
            "openai realtime transcription: model={model} format={:?} ms={ms}",
            self.format
        ));
        if should_fail(&model) {
            self.streamed.clear();
            return self
                .emit(
                    json!({"type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item, "content_index": 0,
                    "error": {"type": "transcription_error", "code": "audio_unintelligible",
                              "message": "fault injected: audio could not be transcribed."}}),
                )
                .await;
        }
        let (text, _) = transcript_of(&pcm_to_bytes(&audio), Some(INTERNAL_RATE));
        // What the streaming models already sent while the audio arrived.
        let streamed = std::mem::take(&mut self.streamed);
        let rest = text.strip_prefix(streamed.as_str()).unwrap_or(&text);
        for delta in rest.split_inclusive(' ') {
            let ok = self
                .emit(
                    json!({"type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item, "content_index": 0, "delta": delta}),
                )
                .await;
            if !ok {
                return false;
            }
        }
        self.emit(
            json!({"type": "conversation.item.input_audio_transcription.completed",
            "item_id": item, "content_index": 0, "transcript": text,
            "usage": {"type": "duration", "seconds": ms as f64 / 1000.0}}),
        )
        .await
    }
}
