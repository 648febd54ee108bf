//! Fake OpenAI `POST /v1/audio/transcriptions` (JSON, or SSE `transcript.text.*` with
//! `stream=true`) and `POST /v1/audio/speech` (raw PCM chunks, or SSE
//! `speech.audio.*` with `stream_format: "sse"`), with OpenAI's validation and error shape.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::multipart::Form;
use super::{chunked, should_fail, speech_events, speech_pcm, sse, transcript_of, typed};
use crate::audio::pcm_to_bytes;
use crate::server::{bearer, Shared};

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    }))
}

fn unauthorized() -> HttpResponse {
    error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided.",
    )
}

fn bad(message: &str) -> HttpResponse {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_value",
        message,
    )
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
        Err(e) => return bad(&e),
    };
    let Some(model) = form.text("model") else {
        return bad("you must provide a model parameter");
    };
    let Some(file) = form.file("file") else {
        return bad("you must provide a file with a filename");
    };
    shared.recorder.note(&format!(
        "openai transcription request: model={model} file={:?} bytes={} stream={:?}",
        file.filename,
        file.data.len(),
        form.text("stream")
    ));
    let format = form
        .text("response_format")
        .unwrap_or_else(|| "json".into());
    if model.starts_with("gpt-4o") && format != "json" {
        return bad(&format!(
            "response_format '{format}' is not compatible with model '{model}'. Use 'json'."
        ));
    }
    if should_fail(&model) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "server_error",
            "fault injected: the transcription failed",
        );
    }
    if !file.data.starts_with(b"RIFF") {
        return bad(
            "Invalid file format. Supported formats: ['wav'] (the local server reads WAV only)",
        );
    }
    let (text, total_ms) = transcript_of(&file.data, None);
    let audio_tokens = total_ms.div_ceil(100);
    let out_tokens = (text.chars().count() as u64).div_ceil(4);
    let usage = json!({
        "type": "tokens", "input_tokens": audio_tokens,
        "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
        "output_tokens": out_tokens, "total_tokens": audio_tokens + out_tokens
    });
    let stream = form.text("stream").is_some_and(|s| s == "true") && model != "whisper-1";
    if !stream {
        return HttpResponse::Ok().json(json!({"text": text, "usage": usage}));
    }
    let mut events = Vec::new();
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for (i, part) in words.chunks(2.max(words.len().div_ceil(2))).enumerate() {
        let delta: String = part.concat();
        let _ = i;
        events.push((
            "transcript.text.delta".to_owned(),
            json!({"type": "transcript.text.delta", "delta": delta}),
        ));
    }
    events.push((
        "transcript.text.done".to_owned(),
        json!({"type": "transcript.text.done", "text": text, "usage": usage}),
    ));
    sse(events, false, false, None)
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
        return bad("We could not parse the JSON body of your request.");
    };
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(model), Some(input)) = (s("model"), s("input")) else {
        return bad("'model' and 'input' are required properties");
    };
    let voice = match body.get("voice") {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).unwrap_or("").to_owned(),
        _ => return bad("'voice' is a required property"),
    };
    shared
        .recorder
        .note(&format!("openai speech request: {body}"));
    if input.chars().count() > 4096 {
        return bad("'input' is longer than 4096 characters");
    }
    let format = s("response_format").unwrap_or_else(|| "mp3".into());
    if format != "pcm" {
        return bad("the local server synthesizes response_format 'pcm' only");
    }
    let sse_format = s("stream_format").as_deref() == Some("sse");
    if sse_format && model.starts_with("tts-1") {
        return bad("stream_format 'sse' is not supported for tts-1 and tts-1-hd");
    }
    let fail = should_fail(&voice) || should_fail(&model);
    let bytes = pcm_to_bytes(&speech_pcm(&input, 24_000));
    if !sse_format {
        return HttpResponse::Ok()
            .content_type("application/octet-stream")
            .streaming(chunked(bytes, 48, fail, shared.cfg.pacing));
    }
    let tokens_in = (input.chars().count() as u64).div_ceil(4);
    let tokens_out = bytes.len() as u64 / 480;
    let usage = json!({"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out});
    let events = typed(speech_events(&bytes, 48 * 40 + 1, "audio", Some(usage)));
    sse(events, false, false, fail.then_some(3))
}
