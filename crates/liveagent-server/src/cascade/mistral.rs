//! Fake Mistral `POST /v1/audio/transcriptions` (Voxtral; JSON, or SSE with `event:` lines
//! when `stream=true`) and `POST /v1/audio/speech` (`audio_data` as base64 float32 LE PCM
//! at 24 kHz; JSON, or SSE `speech.audio.*` with `event:` lines when `stream: true`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::multipart::Form;
use super::{f32_le, should_fail, speech_events, speech_pcm, sse, transcript_of, typed};
use crate::audio::b64_encode;
use crate::server::{bearer, Shared};

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"message": "Unauthorized", "request_id": "local"}))
}

fn missing(field: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY).json(json!({
        "detail": [{"loc": ["body", field], "msg": "Field required", "type": "missing"}]
    }))
}

pub(super) async fn transcriptions(
    req: HttpRequest,
    form: Result<Form, String>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if !shared.key_ok(bearer(&req).as_deref()) {
        return unauthorized();
    }
    let form = match form {
        Ok(f) => f,
        Err(_) => return missing("file"),
    };
    let Some(model) = form.text("model") else {
        return missing("model");
    };
    let Some(file) = form.file("file") else {
        return missing("file");
    };
    shared.recorder.note(&format!(
        "mistral transcription request: model={model} bytes={} stream={:?}",
        file.data.len(),
        form.text("stream")
    ));
    if should_fail(&model) {
        return HttpResponse::InternalServerError()
            .json(json!({"message": "fault injected: the transcription failed"}));
    }
    let (text, total_ms) = transcript_of(&file.data, None);
    let secs = total_ms.div_ceil(1000);
    let out = (text.chars().count() as u64).div_ceil(4);
    let usage = json!({"prompt_audio_seconds": secs, "prompt_tokens": 0, "completion_tokens": out, "total_tokens": out});
    let done = json!({"type": "transcription.done", "model": model, "text": text, "language": "en", "segments": [], "usage": usage});
    if form.text("stream").as_deref() != Some("true") {
        let mut body = done;
        if let Some(o) = body.as_object_mut() {
            o.remove("type");
        }
        return HttpResponse::Ok().json(body);
    }
    let mut events = vec![(
        "transcription.language".to_owned(),
        json!({"type": "transcription.language", "audio_language": "en"}),
    )];
    for word in text.split_inclusive(' ') {
        events.push((
            "transcription.text.delta".to_owned(),
            json!({"type": "transcription.text.delta", "text": word}),
        ));
    }
    events.push(("transcription.done".to_owned(), done));
    sse(events, true, false, None)
}

pub(super) async fn speech(
    req: HttpRequest,
    body: Option<Value>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    if !shared.key_ok(bearer(&req).as_deref()) {
        return unauthorized();
    }
    let Some(body) = body else {
        return missing("input");
    };
    let Some(input) = body.get("input").and_then(Value::as_str) else {
        return missing("input");
    };
    shared
        .recorder
        .note(&format!("mistral speech request: {body}"));
    let voice = body.get("voice_id").and_then(Value::as_str).unwrap_or("");
    if voice.is_empty() && body.get("ref_audio").is_none() {
        return missing("voice_id");
    }
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let fail = should_fail(voice) || should_fail(model);
    let floats = f32_le(&speech_pcm(input, 24_000));
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        return HttpResponse::Ok().json(json!({"audio_data": b64_encode(&floats)}));
    }
    let p = (input.chars().count() as u64).div_ceil(4);
    let c = floats.len() as u64 / 960;
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    // Split at offsets that are not multiples of 4 (a float's size) on purpose.
    let events = typed(speech_events(
        &floats,
        96 * 40 + 2,
        "audio_data",
        Some(usage),
    ));
    sse(events, true, false, fail.then_some(3))
}
