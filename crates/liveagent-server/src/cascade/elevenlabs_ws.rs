//! Fake ElevenLabs WebSockets: realtime speech-to-text
//! (`GET /v1/speech-to-text/realtime?model_id=…&audio_format=…&commit_strategy=…`) and the
//! `stream-input` text-to-speech socket (`GET /v1/text-to-speech/{voice_id}/stream-input`).
//!
//! Realtime STT: `session_started` first; `input_audio_chunk`s fill the segment (bad base64
//! → `input_error`); `partial_transcript`s while speech arrives and as the segment is
//! finalized, `committed_transcript` on `commit: true` (or, with `commit_strategy=vad`,
//! after `vad_silence_threshold_secs` of silence), then
//! `committed_transcript_with_timestamps` with `include_timestamps=true`; unknown messages → `invalid_request`.
//! A missing or wrong `xi-api-key` → `auth_error` and close 1008; a `model_id` with
//! `fail-once`/`fail-always` → `transcriber_error` on commit.
//!
//! `stream-input`: the first message must be `{"text": " ", …}` (else an error and close
//! 1008); text is buffered until the chunk schedule (default `[120, 160, 250, 290]`), a
//! `flush`, or the end of input (`{"text": ""}`), then synthesized into `audio` messages
//! (base64 in `output_format`: `pcm_*` or `ulaw_8000`), `{"isFinal": true}` after the end
//! of input, and close 1000. No text for `inactivity_timeout` seconds (default 20) →
//! close 1008. A voice with `fail-once`/`fail-always` sends ~100 ms of audio and cuts the
//! connection.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::ws::{upgrade, FakeWs, Incoming};
use super::{should_fail, speech_pcm, transcript_of, MAX_SEGMENT_SAMPLES};
use crate::audio::{b64_decode, b64_encode, pcm_to_bytes, ulaw_encode, WireAudio, INTERNAL_RATE};
use crate::server::{query_param, Shared};
use crate::vad::{Vad, VadConfig, VadEvent};

/// `pcm_N` rates (and `ulaw_8000`) the fakes speak.
const PCM_RATES: [u32; 6] = [8000, 16000, 22050, 24000, 44100, 48000];

pub(super) fn api_key(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("xi-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| crate::server::bearer(req))
}

pub(super) fn wire_format(name: &str) -> Option<WireAudio> {
    if name == "ulaw_8000" {
        return Some(WireAudio::Pcmu);
    }
    let rate: u32 = name.strip_prefix("pcm_")?.parse().ok()?;
    PCM_RATES.contains(&rate).then_some(WireAudio::Pcm(rate))
}

/// Synthesized speech for `text` in `format` (`pcm_*` or μ-law), and its bytes a millisecond.
pub(super) fn speech_bytes(text: &str, format: WireAudio) -> (Vec<u8>, usize) {
    let pcm = speech_pcm(text.trim(), INTERNAL_RATE);
    match format {
        WireAudio::Pcm(rate) => (
            pcm_to_bytes(&crate::audio::resample(&pcm, INTERNAL_RATE, rate)),
            rate as usize * 2 / 1000,
        ),
        _ => (
            crate::audio::resample(&pcm, INTERNAL_RATE, 8000)
                .into_iter()
                .map(ulaw_encode)
                .collect(),
            8,
        ),
    }
}

/// The bytes of one audio message: ~40 ms, an odd count on purpose (not sample-aligned).
pub(super) fn piece_size(per_ms: usize) -> usize {
    per_ms * 40 + 1
}

/// `GET /v1/speech-to-text/realtime`.
pub(crate) async fn realtime_stt(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let authorized = shared.key_ok(api_key(&req).as_deref());
    let q = |k: &str| query_param(&req, k);
    let model = q("model_id");
    let format_name = q("audio_format").unwrap_or_else(|| "pcm_16000".into());
    let strategy = q("commit_strategy").unwrap_or_else(|| "manual".into());
    let timestamps = q("include_timestamps").as_deref() == Some("true");
    let silence_s: f64 = q("vad_silence_threshold_secs")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    upgrade(&req, body, shared, move |mut ws| async move {
        let fail = |kind: &str, error: String| json!({"message_type": kind, "error": error});
        if !authorized {
            ws.send(fail("auth_error", "Invalid API key".into())).await;
            return ws.close(1008, "auth_error").await;
        }
        let Some(model) = model else {
            ws.send(fail("invalid_request", "model_id is required".into()))
                .await;
            return ws.close(1008, "invalid_request").await;
        };
        let Some(format) = wire_format(&format_name) else {
            ws.send(fail(
                "invalid_request",
                format!("unsupported audio_format '{format_name}'"),
            ))
            .await;
            return ws.close(1008, "invalid_request").await;
        };
        if strategy != "manual" && strategy != "vad" {
            ws.send(fail(
                "invalid_request",
                format!("commit_strategy must be 'manual' or 'vad', not '{strategy}'"),
            ))
            .await;
            return ws.close(1008, "invalid_request").await;
        }
        let rate = match format {
            WireAudio::Pcm(r) => r,
            _ => 8000,
        };
        ws.note(&format!(
            "elevenlabs realtime stt: model_id={model} audio_format={format_name} commit_strategy={strategy}"
        ));
        ws.send(
            json!({"message_type": "session_started", "session_id": "sess_local",
            "config": {"sample_rate": rate, "audio_format": format_name,
                       "commit_strategy": strategy, "model_id": model}}),
        )
        .await;
        let mut vad = (strategy == "vad").then(|| {
            Vad::new(VadConfig {
                silence_duration_ms: (silence_s.clamp(0.3, 3.0) * 1000.0) as u32,
                ..VadConfig::default()
            })
        });
        let mut segment: Vec<i16> = Vec::new();
        let mut partial_sent = false;
        loop {
            let msg = match ws.recv(Duration::from_secs(600)).await {
                Incoming::Json(v) => v,
                Incoming::Bad(why) => {
                    ws.send(fail("input_error", why)).await;
                    continue;
                }
                Incoming::Idle | Incoming::Gone => return,
            };
            if msg.get("message_type").and_then(Value::as_str) != Some("input_audio_chunk") {
                ws.send(fail(
                    "invalid_request",
                    "expected message_type 'input_audio_chunk'".into(),
                ))
                .await;
                continue;
            }
            let Some(b64) = msg.get("audio_base_64").and_then(Value::as_str) else {
                ws.send(fail("input_error", "audio_base_64 is required".into()))
                    .await;
                continue;
            };
            let bytes = match b64_decode(b64) {
                Ok(b) if !matches!(format, WireAudio::Pcm(_)) || b.len() % 2 == 0 => b,
                _ => {
                    ws.send(fail("input_error", "Invalid base64 audio".into()))
                        .await;
                    continue;
                }
            };
            if let Some(r) = msg.get("sample_rate").and_then(Value::as_u64) {
                if r != rate as u64 {
                    ws.send(fail(
                        "input_error",
                        format!("sample_rate {r} does not match audio_format {format_name}"),
                    ))
                    .await;
                    continue;
                }
            }
            let samples = format.decode(&bytes);
            if segment.len() + samples.len() > MAX_SEGMENT_SAMPLES {
                ws.send(fail(
                    "chunk_size_exceeded",
                    "more than 10 minutes of audio without a commit".into(),
                ))
                .await;
                continue;
            }
            segment.extend_from_slice(&samples);
            let mut commit = msg.get("commit").and_then(Value::as_bool) == Some(true);
            if let Some(vad) = &mut vad {
                commit |= vad
                    .push(&samples)
                    .iter()
                    .any(|e| matches!(e, VadEvent::SpeechStopped { .. }));
            }
            if !commit {
                // Speech so far: an interim transcript that the final one extends (the
                // segment is measured once per new chunk only until speech is heard).
                if !partial_sent
                    && !transcript_of(&pcm_to_bytes(&samples), Some(INTERNAL_RATE))
                        .0
                        .is_empty()
                {
                    partial_sent = true;
                    ws.send(json!({"message_type": "partial_transcript", "text": "[speech"}))
                        .await;
                }
                continue;
            }
            if should_fail(&model) {
                ws.send(fail(
                    "transcriber_error",
                    "fault injected: the transcriber failed".into(),
                ))
                .await;
                segment.clear();
                partial_sent = false;
                continue;
            }
            let heard = transcript_of(&pcm_to_bytes(&segment), Some(INTERNAL_RATE)).0;
            if let Some(cut) = heard.rfind(' ') {
                ws.send(json!({"message_type": "partial_transcript", "text": &heard[..cut]}))
                    .await;
            }
            ws.send(json!({"message_type": "committed_transcript", "text": heard}))
                .await;
            if timestamps {
                // One word entry per label word over the segment, spaces between.
                let secs = segment.len() as f64 / INTERNAL_RATE as f64;
                let parts: Vec<&str> = heard.split(' ').collect();
                let step = secs / parts.len().max(1) as f64;
                let mut words = Vec::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        words.push(json!({"text": " ", "start": step * i as f64, "end": step * i as f64, "type": "spacing", "logprob": 0.0}));
                    }
                    words.push(json!({"text": p, "start": step * i as f64, "end": step * (i + 1) as f64, "type": "word", "logprob": 0.0}));
                }
                ws.send(
                    json!({"message_type": "committed_transcript_with_timestamps",
                    "text": heard, "language_code": "en", "words": words}),
                )
                .await;
            }
            segment.clear();
            partial_sent = false;
        }
    })
}

/// `GET /v1/text-to-speech/{voice_id}/stream-input`.
pub(crate) async fn stream_input(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let header_key = api_key(&req);
    let voice = req.match_info().get("voice_id").unwrap_or("").to_owned();
    let q = |k: &str| query_param(&req, k);
    let model = q("model_id").unwrap_or_else(|| "eleven_flash_v2_5".into());
    let format_name = q("output_format").unwrap_or_else(|| "mp3_44100_128".into());
    let inactivity = q("inactivity_timeout")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20)
        .clamp(1, 180);
    upgrade(&req, body, shared, move |ws| async move {
        StreamInput {
            ws,
            format_name,
            text: String::new(),
            schedule: vec![120, 160, 250, 290],
            generations: 0,
            fail: false,
            sent_bytes: 0,
        }
        .run(header_key, voice, model, inactivity)
        .await
    })
}

struct StreamInput {
    ws: FakeWs,
    format_name: String,
    /// Text waiting to be synthesized.
    text: String,
    schedule: Vec<u64>,
    generations: usize,
    fail: bool,
    sent_bytes: usize,
}

impl StreamInput {
    async fn refuse(mut self, code: u16, error: &str, message: &str) {
        self.ws
            .send(json!({"error": error, "message": message, "code": code}))
            .await;
        self.ws.close(code, error).await;
    }

    async fn run(mut self, header_key: Option<String>, voice: String, model: String, idle: u64) {
        let Some(format) = wire_format(&self.format_name) else {
            let m = format!(
                "the local server synthesizes pcm_* and ulaw_8000 only, not '{}'",
                self.format_name
            );
            return self.refuse(1008, "invalid_output_format", &m).await;
        };
        let idle = Duration::from_secs(idle);
        // The first message: {"text": " ", voice_settings?, generation_config?, xi-api-key?}.
        let first = match self.ws.recv(idle).await {
            Incoming::Json(v) => v,
            Incoming::Bad(why) => return self.refuse(1008, "invalid_message", &why).await,
            Incoming::Idle => {
                return self
                    .refuse(1008, "input_timeout_exceeded", "no initialize message")
                    .await
            }
            Incoming::Gone => return,
        };
        let key = header_key.or_else(|| {
            ["xi-api-key", "xi_api_key"]
                .iter()
                .find_map(|k| first.get(*k).and_then(Value::as_str))
                .map(str::to_owned)
        });
        if !self.ws.shared.key_ok(key.as_deref()) {
            return self
                .refuse(1008, "invalid_api_key", "Invalid API key")
                .await;
        }
        if first.get("text").and_then(Value::as_str) != Some(" ") {
            return self
                .refuse(
                    1008,
                    "invalid_message",
                    "The first message must initialize the connection with text \" \" (one space).",
                )
                .await;
        }
        if let Some(s) = first.pointer("/generation_config/chunk_length_schedule") {
            let sched: Option<Vec<u64>> = s.as_array().map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .filter(|n| (50..=500).contains(n))
                    .collect()
            });
            match sched {
                Some(v) if !v.is_empty() && v.len() == s.as_array().map_or(0, Vec::len) => {
                    self.schedule = v
                }
                _ => {
                    return self
                        .refuse(
                            1008,
                            "invalid_message",
                            "chunk_length_schedule: a list of numbers from 50 to 500",
                        )
                        .await
                }
            }
        }
        self.fail = should_fail(&voice);
        self.ws.note(&format!(
            "elevenlabs stream-input: voice={voice} model_id={model} output_format={} first={first}",
            self.format_name
        ));
        loop {
            let msg = match self.ws.recv(idle).await {
                Incoming::Json(v) => v,
                Incoming::Bad(why) => return self.refuse(1008, "invalid_message", &why).await,
                Incoming::Idle => {
                    let m = format!(
                        "Have not received new text for {} seconds. Closing the connection.",
                        idle.as_secs()
                    );
                    return self.refuse(1008, "input_timeout_exceeded", &m).await;
                }
                Incoming::Gone => return,
            };
            let Some(text) = msg.get("text").and_then(Value::as_str) else {
                return self
                    .refuse(
                        1008,
                        "invalid_message",
                        "every message needs a 'text' field",
                    )
                    .await;
            };
            if text.is_empty() {
                // End of input: generate the rest, say it is final, close.
                if !self.generate(format).await {
                    return;
                }
                self.ws.send(json!({"isFinal": true})).await;
                return self.ws.close(1000, "").await;
            }
            self.text.push_str(text);
            let flush = msg.get("flush").and_then(Value::as_bool) == Some(true);
            let threshold = self.schedule[self.generations.min(self.schedule.len() - 1)];
            if (flush || self.text.chars().count() as u64 >= threshold)
                && !self.generate(format).await
            {
                return;
            }
        }
    }

    /// Synthesizes the buffered text into audio messages; false after a fault cut.
    async fn generate(&mut self, format: WireAudio) -> bool {
        let text = std::mem::take(&mut self.text);
        if text.trim().is_empty() {
            return true;
        }
        self.generations += 1;
        let (bytes, per_ms) = speech_bytes(&text, format);
        for chunk in bytes.chunks(piece_size(per_ms)) {
            if self.fail && self.sent_bytes >= per_ms * 100 {
                self.ws
                    .note("elevenlabs stream-input: fault injected, cutting the connection");
                self.ws.cut();
                return false;
            }
            self.sent_bytes += chunk.len();
            let ok = self
                .ws
                .send(json!({"audio": b64_encode(chunk), "isFinal": null,
                    "normalizedAlignment": null, "alignment": null}))
                .await;
            if !ok {
                return false;
            }
        }
        true
    }
}
