//! Fake ElevenLabs `POST /v1/speech-to-text` (Scribe, multipart) and
//! `POST /v1/text-to-speech/{voice_id}/stream` (chunked raw audio in `output_format`), with
//! the `xi-api-key` header and ElevenLabs' error shapes (`detail` object; 422 list).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::multipart;
use super::{chunked, should_fail, speech_pcm, transcript_of};
use crate::audio::{pcm_to_bytes, ulaw_encode};
use crate::server::{query_param, Shared};

fn key_ok(req: &HttpRequest, shared: &Shared) -> bool {
    let key = req
        .headers()
        .get("xi-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| crate::server::bearer(req));
    shared.key_ok(key.as_deref())
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({
        "detail": {"status": "invalid_api_key", "message": "Invalid API key"}
    }))
}

fn missing(field: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY).json(json!({
        "detail": [{"loc": ["body", field], "msg": "Field required", "type": "missing"}]
    }))
}

pub(super) async fn speech_to_text(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if !key_ok(&req, &shared) {
        return unauthorized();
    }
    let form = match multipart::parse(&req, &body) {
        Ok(f) => f,
        Err(e) => {
            return HttpResponse::BadRequest()
                .json(json!({"detail": {"status": "invalid_request", "message": e}}))
        }
    };
    let Some(model) = form.text("model_id") else {
        return missing("model_id");
    };
    let Some(file) = form.file("file") else {
        return missing("file");
    };
    shared.recorder.note(&format!(
        "elevenlabs stt request: model_id={model} bytes={} file_format={:?}",
        file.data.len(),
        form.text("file_format")
    ));
    if should_fail(&model) {
        return HttpResponse::InternalServerError().json(json!({
            "detail": {"status": "internal_error", "message": "fault injected: the transcription failed"}
        }));
    }
    // `pcm_s16le_16`: raw 16-bit 16 kHz mono; otherwise a file (WAV here). The SDK may
    // send unset fields as the string "null".
    let raw = form
        .text("file_format")
        .filter(|f| f == "pcm_s16le_16")
        .map(|_| 16_000);
    let (text, _) = transcript_of(&file.data, raw);
    let words: Vec<Value> = text
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(|w| json!({"text": w, "start": 0.0, "end": 0.0, "type": "word", "logprob": 0.0}))
        .collect();
    HttpResponse::Ok().json(json!({
        "language_code": "eng", "language_probability": 1.0, "text": text, "words": words,
        "transcription_id": shared.new_id("tr")
    }))
}

pub(super) async fn text_to_speech(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if !key_ok(&req, &shared) {
        return unauthorized();
    }
    let voice = path.into_inner();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return missing("text");
    };
    let Some(text) = body.get("text").and_then(Value::as_str) else {
        return missing("text");
    };
    shared
        .recorder
        .note(&format!("elevenlabs tts request: voice={voice} {body}"));
    let format = query_param(&req, "output_format").unwrap_or_else(|| "mp3_44100_128".into());
    let model = body
        .get("model_id")
        .and_then(Value::as_str)
        .unwrap_or("eleven_multilingual_v2");
    let fail = should_fail(&voice) || should_fail(model);
    let (bytes, per_ms) = if format == "ulaw_8000" {
        let pcm = speech_pcm(text, 8000);
        (pcm.iter().map(|&s| ulaw_encode(s)).collect::<Vec<u8>>(), 8)
    } else if let Some(rate) = format
        .strip_prefix("pcm_")
        .and_then(|r| r.parse::<u32>().ok())
        .filter(|r| [8000, 16000, 22050, 24000, 32000, 44100, 48000].contains(r))
    {
        (
            pcm_to_bytes(&speech_pcm(text, rate)),
            (rate as usize * 2) / 1000,
        )
    } else {
        return HttpResponse::BadRequest().json(json!({
            "detail": {"status": "invalid_output_format",
                       "message": format!("the local server produces pcm_* and ulaw_8000, not {format}")}
        }));
    };
    HttpResponse::Ok()
        .content_type("audio/basic")
        .streaming(chunked(bytes, per_ms.max(1), fail, shared.cfg.pacing))
}
