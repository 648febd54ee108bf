//! Fake cascade endpoints: speech-to-text, text-to-speech and streaming chat in each
//! provider's shape (OpenAI, ElevenLabs, Mistral), so a cascade runs end to end offline.
//! See `docs/local-server.md` ("Cascade endpoints") and the cascade API notes.
//!
//! There is no speech recognition: a transcript is the honest label of the speech heard
//! (`[speech 1.4 s]`, measured with the server's energy threshold), and speech is the
//! server's tone stand-in (`synth_text`), as long as the text. Faults for tests are
//! selected by name, so that a client needs no special API:
//!
//! - an STT `model` containing `fail-once` answers its first request with HTTP 500;
//! - a TTS voice (or model) containing `fail-once` streams ~100 ms of audio and then cuts
//!   the connection, on its first request only;
//! - `fail-always` instead of `fail-once`: every request.
//!
//! The streaming WebSockets (OpenAI's realtime transcription session, ElevenLabs' realtime
//! STT and `stream-input`, its multi-context `multi-stream-input`, Mistral's realtime STT and
//! speech) are in `openai_realtime`, `elevenlabs_ws`, `elevenlabs_multi` and
//! `mistral_realtime`, on the shared plumbing of `ws`.

pub(crate) mod chat_stream;
mod elevenlabs;
mod elevenlabs_multi;
mod elevenlabs_ws;
mod mistral;
mod mistral_realtime;
mod multipart;
mod openai;
pub(crate) mod openai_realtime;
mod ws;

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use actix_web::web;
use bytes::Bytes;
use futures_util::stream::{self, Stream};

use crate::audio::{pcm_from_bytes, INTERNAL_RATE};
use crate::brain::TurnInput;

/// Registers the cascade routes (also under `/s/{scenario}/…`).
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    for prefix in ["", "/s/{scenario}"] {
        cfg.route(
            &format!("{prefix}/v1/audio/transcriptions"),
            web::post().to(transcriptions),
        )
        .route(&format!("{prefix}/v1/audio/speech"), web::post().to(speech))
        .route(
            &format!("{prefix}/v1/speech-to-text"),
            web::post().to(elevenlabs::speech_to_text),
        )
        .route(
            &format!("{prefix}/v1/text-to-speech/{{voice_id}}/stream"),
            web::post().to(elevenlabs::text_to_speech),
        )
        .route(
            &format!("{prefix}/v1/text-to-speech/{{voice_id}}/stream-input"),
            web::get().to(elevenlabs_ws::stream_input),
        )
        .route(
            &format!("{prefix}/v1/text-to-speech/{{voice_id}}/multi-stream-input"),
            web::get().to(elevenlabs_multi::multi_stream_input),
        )
        .route(
            &format!("{prefix}/v1/speech-to-text/realtime"),
            web::get().to(elevenlabs_ws::realtime_stt),
        )
        .route(
            &format!("{prefix}/v1/audio/transcriptions/realtime"),
            web::get().to(mistral_realtime::transcription),
        )
        .route(
            &format!("{prefix}/v1/audio/speech/realtime"),
            web::get().to(mistral_realtime::speech),
        );
    }
}

/// OpenAI and Mistral share the transcription path: a `voxtral` model is Mistral's.
async fn transcriptions(
    req: actix_web::HttpRequest,
    body: web::Bytes,
    shared: web::Data<crate::server::Shared>,
) -> actix_web::HttpResponse {
    let form = multipart::parse(&req, &body);
    let mistral = form
        .as_ref()
        .ok()
        .and_then(|f| f.text("model"))
        .is_some_and(|m| m.contains("voxtral"));
    if mistral {
        mistral::transcriptions(req, form, shared).await
    } else {
        openai::transcriptions(req, form, shared).await
    }
}

/// OpenAI and Mistral share the speech path: a `voxtral` model or a `voice_id` is Mistral's.
async fn speech(
    req: actix_web::HttpRequest,
    body: web::Bytes,
    shared: web::Data<crate::server::Shared>,
) -> actix_web::HttpResponse {
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    let mistral = json.as_ref().is_some_and(|v| {
        v.get("model")
            .and_then(|m| m.as_str())
            .is_some_and(|m| m.contains("voxtral"))
            || v.get("voice_id").is_some()
    });
    if mistral {
        mistral::speech(req, json, shared).await
    } else {
        openai::speech(req, json, shared).await
    }
}

/// The most audio a fake transcription segment holds (10 minutes at the internal 24 kHz);
/// more is refused with the provider's error, so that a client cannot grow it without end.
pub(crate) const MAX_SEGMENT_SAMPLES: usize = 10 * 60 * crate::audio::INTERNAL_RATE as usize;

/// Root-mean-square level of PCM16 samples.
fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| s as f64 * s as f64).sum();
    (sum / samples.len() as f64).sqrt()
}

/// True once per name for `fail-once`, always for `fail-always`.
pub(crate) fn should_fail(name: &str) -> bool {
    if name.contains("fail-always") {
        return true;
    }
    if !name.contains("fail-once") {
        return false;
    }
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    seen.insert(name.to_owned())
}

/// The honest transcript of a WAV or raw PCM16 upload at `rate`.
pub(crate) fn transcript_of(audio: &[u8], raw_rate: Option<u32>) -> (String, u64) {
    let (samples, rate) = match raw_rate {
        Some(rate) => (pcm_from_bytes(audio), rate),
        None => match parse_wav(audio) {
            Some(x) => x,
            None => return (String::new(), 0),
        },
    };
    let frame = (rate / 100).max(1) as usize;
    let speech_ms = samples.chunks(frame).filter(|c| rms(c) >= 500.0).count() as u64 * 10;
    let total_ms = samples.len() as u64 * 1000 / rate.max(1) as u64;
    if speech_ms == 0 {
        return (String::new(), total_ms);
    }
    (TurnInput::speech_label(speech_ms), total_ms)
}

/// PCM16 mono samples and rate of a WAV file (the first channel when stereo).
fn parse_wav(bytes: &[u8]) -> Option<(Vec<i16>, u32)> {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let (mut rate, mut channels, mut bits) = (0u32, 1u16, 16u16);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = bytes.get(pos + 8..(pos + 8 + len).min(bytes.len()))?;
        if id == b"fmt " && body.len() >= 16 {
            channels = u16::from_le_bytes([body[2], body[3]]).max(1);
            rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            bits = u16::from_le_bytes([body[14], body[15]]);
        } else if id == b"data" {
            if bits != 16 || rate == 0 {
                return None;
            }
            let all = pcm_from_bytes(body);
            let mono = all.iter().step_by(channels as usize).copied().collect();
            return Some((mono, rate));
        }
        pos += 8 + len + (len & 1);
    }
    None
}

/// Synthesized speech for `text` at `rate`.
pub(crate) fn speech_pcm(text: &str, rate: u32) -> Vec<i16> {
    let pcm = crate::audio::synth_text(text);
    if rate == INTERNAL_RATE {
        pcm
    } else {
        crate::audio::resample(&pcm, INTERNAL_RATE, rate)
    }
}

/// A chunked body of `bytes` in pieces of about 40 ms (`bytes_per_ms`), split at odd
/// offsets on purpose; with `fail` it breaks the connection after ~100 ms of audio. With
/// [`Pacing::RealTime`](crate::Pacing) the pieces go out at the rate they play (80 ms
/// ahead), like the realtime fakes' audio, so a client sees a long answer still streaming
/// when the user speaks over it; otherwise as fast as the socket takes them. A stream that
/// is to `fail` is never paced: awc reports a chunked body whose connection closes
/// cleanly after flushed pieces (no last chunk) as a normal end, so the cut goes out with
/// the audio before it, which the client sees as the broken stream it is.
pub(crate) fn chunked(
    bytes: Vec<u8>,
    bytes_per_ms: usize,
    fail: bool,
    pacing: crate::Pacing,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    use futures_util::StreamExt;
    let piece = (bytes_per_ms * 40).max(2) + 1; // odd on purpose
    let mut chunks: Vec<(u64, Result<Bytes, actix_web::Error>)> = Vec::new();
    let mut sent = 0;
    for c in bytes.chunks(piece) {
        let at_ms = (sent / bytes_per_ms.max(1)) as u64;
        if fail && sent >= bytes_per_ms * 100 {
            chunks.push((
                at_ms,
                Err(actix_web::error::ErrorInternalServerError(
                    "fault injected: connection cut mid-stream",
                )),
            ));
            break;
        }
        sent += c.len();
        chunks.push((at_ms, Ok(Bytes::copy_from_slice(c))));
    }
    let paced = pacing == crate::Pacing::RealTime && !fail;
    let mut start = None;
    stream::iter(chunks).then(move |(at_ms, item)| {
        let start = *start.get_or_insert_with(tokio::time::Instant::now);
        async move {
            if paced {
                let due = std::time::Duration::from_millis(at_ms.saturating_sub(80));
                tokio::time::sleep_until(start + due).await;
            }
            item
        }
    })
}

/// PCM16 samples as float32 little-endian bytes (Mistral's `pcm`).
pub(crate) fn f32_le(pcm: &[i16]) -> Vec<u8> {
    pcm.iter()
        .flat_map(|&s| (s as f32 / 32768.0).to_le_bytes())
        .collect()
}

/// `speech.audio.delta` events (OpenAI's and Mistral's shape) carrying `bytes` base64 under
/// `key` in pieces of `piece` bytes (choose an odd size or one off 4 to split samples on
/// purpose), then `speech.audio.done` with `usage` when given.
pub(crate) fn speech_events(
    bytes: &[u8],
    piece: usize,
    key: &str,
    usage: Option<serde_json::Value>,
) -> Vec<serde_json::Value> {
    let mut events: Vec<serde_json::Value> = bytes
        .chunks(piece.max(1))
        .map(
            |c| serde_json::json!({"type": "speech.audio.delta", key: crate::audio::b64_encode(c)}),
        )
        .collect();
    if let Some(usage) = usage {
        events.push(serde_json::json!({"type": "speech.audio.done", "usage": usage}));
    }
    events
}

/// Events paired with their `type` as the SSE event name, for [`sse`].
pub(crate) fn typed(events: Vec<serde_json::Value>) -> Vec<(String, serde_json::Value)> {
    events
        .into_iter()
        .map(|v| {
            let name = v["type"].as_str().unwrap_or("message").to_owned();
            (name, v)
        })
        .collect()
}

/// An SSE body of these (event name, JSON) pairs; `named` adds `event:` lines.
pub(crate) fn sse(
    events: Vec<(String, serde_json::Value)>,
    named: bool,
    done: bool,
    fail_after: Option<usize>,
) -> actix_web::HttpResponse {
    let mut chunks: Vec<Result<Bytes, actix_web::Error>> = Vec::new();
    for (i, (name, data)) in events.into_iter().enumerate() {
        if fail_after == Some(i) {
            chunks.push(Err(actix_web::error::ErrorInternalServerError(
                "fault injected: connection cut mid-stream",
            )));
            break;
        }
        let text = if named {
            format!("event: {name}\ndata: {data}\n\n")
        } else {
            format!("data: {data}\n\n")
        };
        chunks.push(Ok(Bytes::from(text)));
    }
    if done && fail_after.is_none() {
        chunks.push(Ok(Bytes::from_static(b"data: [DONE]\n\n")));
    }
    actix_web::HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(stream::iter(chunks))
}
