//! Fake Mistral realtime WebSockets: transcription
//! (`GET /v1/audio/transcriptions/realtime?model=…`) and speech
//! (`GET /v1/audio/speech/realtime?model=…`, known only from the SDK).
//!
//! Both: `Authorization: Bearer` checked on the upgrade (HTTP 401
//! `{"message": "Unauthorized"}`), the `model` query parameter required (HTTP 422 `detail`
//! list), `session.created` first, every `session.update` answered with `session.updated`,
//! errors as `{"type": "error", "error": {"message", "code"}}` with the socket kept open.
//!
//! Transcription: `input_audio.append` (base64 in the session's `audio_format`: `pcm_s16le`
//! at its `sample_rate`, or `pcm_mulaw` at 8 kHz) fills the segment. As on the real API
//! (a natively streaming model), text streams while the audio arrives: once the segment
//! holds speech followed by `target_streaming_delay_ms` of audio (the session's value,
//! 0 when unset), `transcription.language` and the first `transcription.text.delta` (the
//! label's first word) are sent; the model holds the rest until `input_audio.flush`, which
//! finalizes the segment (the remaining deltas, `transcription.done` whose `text` is all
//! the deltas joined); `input_audio.end` finalizes what is left and closes (1000). A
//! `model` with `fail-once`/`fail-always` answers the flush with an error.
//!
//! Speech: `input_text.append {text}` buffers, `input_text.flush` synthesizes
//! (`speech.audio.delta`, `audio_data` = float32 LE at 24 kHz, split off 4-byte boundaries),
//! `input_text.end` synthesizes the rest, sends `speech.audio.done` with usage and closes.
//! A voice is required (`session.update` with `voice` or `ref_audio`) before text.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::ws::{upgrade, FakeWs, Incoming};
use super::{f32_le, should_fail, speech_events, speech_pcm, transcript_of, MAX_SEGMENT_SAMPLES};
use crate::audio::{b64_decode, pcm_to_bytes, WireAudio, INTERNAL_RATE};
use crate::server::{bearer, query_param, Shared};

/// The checks before the upgrade: the key and the `model` parameter.
fn refused(req: &HttpRequest, shared: &Shared) -> Option<HttpResponse> {
    if !shared.key_ok(bearer(req).as_deref()) {
        return Some(
            HttpResponse::Unauthorized()
                .json(json!({"message": "Unauthorized", "request_id": "local"})),
        );
    }
    if query_param(req, "model").is_none_or(|m| m.is_empty()) {
        return Some(HttpResponse::UnprocessableEntity().json(json!({
            "detail": [{"loc": ["query", "model"], "msg": "Field required", "type": "missing"}]
        })));
    }
    None
}

async fn error(ws: &mut FakeWs, message: &str, code: u32) -> bool {
    ws.send(json!({"type": "error", "error": {"message": message, "code": code}}))
        .await
}

/// Serves an upgrade that passed [`refused`] with `run(socket, model)`.
fn serve<F, Fut>(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
    run: F,
) -> Result<HttpResponse, actix_web::Error>
where
    F: FnOnce(FakeWs, String) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    if let Some(r) = refused(&req, &shared) {
        return Ok(r);
    }
    let model = query_param(&req, "model").unwrap_or_default();
    upgrade(&req, body, shared, move |ws| run(ws, model))
}

/// `GET /v1/audio/transcriptions/realtime`.
pub(crate) async fn transcription(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    serve(req, body, shared, transcribe)
}

async fn transcribe(mut ws: FakeWs, model: String) {
    let mut format = WireAudio::Pcm(16_000);
    let mut delay_ms: Option<u64> = None;
    let session = |format: WireAudio, delay_ms: Option<u64>| {
        let (encoding, rate) = match format {
            WireAudio::Pcm(r) => ("pcm_s16le", r),
            _ => ("pcm_mulaw", 8000),
        };
        json!({"request_id": "rt_local", "model": model,
               "audio_format": {"encoding": encoding, "sample_rate": rate},
               "target_streaming_delay_ms": delay_ms})
    };
    ws.send(json!({"type": "session.created", "session": session(format, delay_ms)}))
        .await;
    let mut segment: Vec<i16> = Vec::new();
    let mut language_sent = false;
    // Where speech starts in the segment (internal-rate samples), and the text already
    // streamed for it.
    let mut speech_at: Option<usize> = None;
    let mut streamed = String::new();
    loop {
        let msg = match ws.recv(Duration::from_secs(600)).await {
            Incoming::Json(v) => v,
            Incoming::Bad(why) => {
                error(&mut ws, &why, 4000).await;
                continue;
            }
            Incoming::Idle | Incoming::Gone => return,
        };
        match msg.get("type").and_then(Value::as_str).unwrap_or("") {
            "session.update" => {
                let af = msg.pointer("/session/audio_format");
                if let Some(af) = af {
                    let rate = af.get("sample_rate").and_then(Value::as_u64);
                    format = match (af.get("encoding").and_then(Value::as_str), rate) {
                        (Some("pcm_s16le"), Some(r)) if (8000..=96_000).contains(&r) => {
                            WireAudio::Pcm(r as u32)
                        }
                        (Some("pcm_mulaw"), Some(8000) | None) => WireAudio::Pcmu,
                        _ => {
                            error(&mut ws, "Invalid audio format: the local server takes pcm_s16le (8000-96000 Hz) or pcm_mulaw (8000 Hz)", 4000).await;
                            continue;
                        }
                    };
                }
                match msg.pointer("/session/target_streaming_delay_ms") {
                    None | Some(Value::Null) => {}
                    Some(v) => match v.as_u64() {
                        Some(ms) if ms <= 10_000 => delay_ms = Some(ms),
                        _ => {
                            error(&mut ws, "target_streaming_delay_ms must be an integer number of milliseconds (0-10000)", 4000).await;
                            continue;
                        }
                    },
                }
                if msg.pointer("/session/diarize").and_then(Value::as_bool) == Some(true) {
                    error(
                        &mut ws,
                        "Realtime transcription is not compatible with diarize",
                        4000,
                    )
                    .await;
                    continue;
                }
                ws.note(&format!(
                    "mistral realtime transcription: model={model} update={msg}"
                ));
                ws.send(json!({"type": "session.updated", "session": session(format, delay_ms)}))
                    .await;
            }
            "input_audio.append" => {
                let bytes = match msg.get("audio").and_then(Value::as_str).map(b64_decode) {
                    Some(Ok(b)) if !matches!(format, WireAudio::Pcm(_)) || b.len() % 2 == 0 => b,
                    _ => {
                        error(&mut ws, "Invalid audio: 'audio' must be base64 samples in the session's audio_format", 4000).await;
                        continue;
                    }
                };
                let samples = format.decode(&bytes);
                if segment.len() + samples.len() > MAX_SEGMENT_SAMPLES {
                    error(
                        &mut ws,
                        "more than 10 minutes of audio without a flush",
                        4000,
                    )
                    .await;
                    continue;
                }
                let before = segment.len();
                segment.extend(samples);
                // Text streams while the audio arrives: the label's first word once the
                // speech is `target_streaming_delay_ms` old.
                if speech_at.is_none()
                    && !transcript_of(&pcm_to_bytes(&segment[before..]), Some(INTERNAL_RATE))
                        .0
                        .is_empty()
                {
                    speech_at = Some(before);
                }
                let delay = delay_ms.unwrap_or(0) as usize * INTERNAL_RATE as usize / 1000;
                if let Some(at) = speech_at.filter(|_| streamed.is_empty()) {
                    if segment.len() - at >= delay {
                        let heard = transcript_of(&pcm_to_bytes(&segment), Some(INTERNAL_RATE)).0;
                        if let Some(first) = heard.split_inclusive(' ').next() {
                            streamed = first.to_owned();
                            if !language_sent {
                                language_sent = true;
                                ws.send(json!({"type": "transcription.language", "audio_language": "en"}))
                                    .await;
                            }
                            ws.send(json!({"type": "transcription.text.delta", "text": first}))
                                .await;
                        }
                    }
                }
            }
            kind @ ("input_audio.flush" | "input_audio.end") => {
                let end = kind == "input_audio.end";
                speech_at = None;
                let already = std::mem::take(&mut streamed);
                if should_fail(&model) {
                    error(&mut ws, "fault injected: the transcription failed", 5000).await;
                    segment.clear();
                } else if !segment.is_empty() || end {
                    let audio = std::mem::take(&mut segment);
                    let (text, ms) = transcript_of(&pcm_to_bytes(&audio), Some(INTERNAL_RATE));
                    if !text.is_empty() && !language_sent {
                        language_sent = true;
                        ws.send(json!({"type": "transcription.language", "audio_language": "en"}))
                            .await;
                    }
                    let rest = text.strip_prefix(already.as_str()).unwrap_or(&text);
                    for delta in rest.split_inclusive(' ') {
                        ws.send(json!({"type": "transcription.text.delta", "text": delta}))
                            .await;
                    }
                    let out = (text.chars().count() as u64).div_ceil(4);
                    ws.send(
                        json!({"type": "transcription.done", "model": model, "text": text,
                        "language": "en", "segments": [],
                        "usage": {"prompt_audio_seconds": ms.div_ceil(1000), "prompt_tokens": 0,
                                  "completion_tokens": out, "total_tokens": out}}),
                    )
                    .await;
                }
                if end {
                    return ws.close(1000, "").await;
                }
            }
            other => {
                let m = format!("Unknown message type '{other}'");
                error(&mut ws, &m, 4000).await;
            }
        }
    }
}

/// `GET /v1/audio/speech/realtime`.
pub(crate) async fn speech(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    serve(req, body, shared, speak)
}

async fn speak(mut ws: FakeWs, model: String) {
    let mut voice: Option<String> = None;
    let session = |voice: &Option<String>| {
        json!({"request_id": "rt_local", "model": model, "is_ref_audio": false,
               "streaming_mode": "responsive", "response_format": "pcm",
               "expressiveness": 1.0, "voice": voice})
    };
    ws.send(json!({"type": "session.created", "session": session(&voice)}))
        .await;
    let mut text = String::new();
    let (mut chars, mut bytes_out) = (0u64, 0u64);
    loop {
        let msg = match ws.recv(Duration::from_secs(600)).await {
            Incoming::Json(v) => v,
            Incoming::Bad(why) => {
                error(&mut ws, &why, 4000).await;
                continue;
            }
            Incoming::Idle | Incoming::Gone => return,
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "session.update" => {
                let s = msg.get("session");
                let format = s
                    .and_then(|s| s.get("response_format"))
                    .and_then(Value::as_str);
                if format.is_some_and(|f| f != "pcm") {
                    error(
                        &mut ws,
                        "the local server synthesizes response_format 'pcm' only",
                        4000,
                    )
                    .await;
                    continue;
                }
                if let Some(v) = s.and_then(|s| s.get("voice")).and_then(Value::as_str) {
                    voice = Some(v.to_owned());
                } else if s
                    .and_then(|s| s.get("ref_audio"))
                    .is_some_and(Value::is_string)
                {
                    voice = Some("ref_audio".into());
                }
                ws.note(&format!(
                    "mistral realtime speech: model={model} update={msg}"
                ));
                ws.send(json!({"type": "session.updated", "session": session(&voice)}))
                    .await;
            }
            "input_text.append" | "input_text.flush" | "input_text.end" => {
                if voice.is_none() {
                    error(
                        &mut ws,
                        "Set a voice (session.update with voice or ref_audio) before sending text",
                        4000,
                    )
                    .await;
                    continue;
                }
                match msg.get("text") {
                    Some(Value::String(t)) => text.push_str(t),
                    None | Some(Value::Null) if kind != "input_text.append" => {}
                    _ => {
                        error(&mut ws, "'text' must be a string", 4000).await;
                        continue;
                    }
                }
                if kind == "input_text.append" {
                    continue;
                }
                let fail = voice.as_deref().is_some_and(should_fail) || should_fail(&model);
                let piece = std::mem::take(&mut text);
                chars += piece.chars().count() as u64;
                let floats = f32_le(&speech_pcm(piece.trim(), 24_000));
                // Off 4-byte boundaries on purpose.
                for (i, delta) in speech_events(&floats, 96 * 40 + 2, "audio_data", None)
                    .into_iter()
                    .enumerate()
                {
                    if fail && i >= 3 {
                        ws.note("mistral realtime speech: fault injected, cutting the connection");
                        ws.cut();
                        return;
                    }
                    ws.send(delta).await;
                }
                bytes_out += floats.len() as u64;
                if kind == "input_text.end" {
                    let p = chars.div_ceil(4);
                    let c = bytes_out / 960;
                    ws.send(json!({"type": "speech.audio.done",
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}))
                        .await;
                    return ws.close(1000, "").await;
                }
            }
            other => {
                let m = format!("Unknown message type '{other}'");
                error(&mut ws, &m, 4000).await;
            }
        }
    }
}
