//! Fake ElevenLabs multi-context text-to-speech socket:
//! `GET /v1/text-to-speech/{voice_id}/multi-stream-input?model_id=…&output_format=…`.
//!
//! Every message names a `context_id` (a missing one is the default context `""`), except
//! `{"close_socket": true}`. A new context id opens a context (at most 5 at once: the 6th is
//! an error and close 1008, "Maximum simultaneous contexts per WebSocket connection exceeded
//! (5)"); its text is buffered until the chunk schedule (default `[120, 160, 250, 290]`,
//! or the `generation_config` of its first message) or a `flush`, then synthesized into
//! `{"audio", "contextId", …}` messages. `{"context_id", "close_context": true}` drops the
//! context's unspoken text and sends `{"isFinal": true, "contextId"}` at once (barge-in);
//! `{"text": "", "context_id"}` keeps a context alive; `close_socket` speaks what every
//! context still holds, sends their finals and closes 1000. The key comes from the
//! `xi-api-key` header or the first message; no message for `inactivity_timeout` seconds
//! (default 20) closes 1008.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::elevenlabs_ws::{api_key, piece_size, speech_bytes, wire_format};
use super::ws::{upgrade, FakeWs, Incoming};
use crate::audio::{b64_encode, WireAudio};
use crate::server::{query_param, Shared};

/// Live contexts a socket may hold.
const MAX_CONTEXTS: usize = 5;

struct Context {
    id: String,
    text: String,
    schedule: Vec<u64>,
    generations: usize,
}

/// `GET /v1/text-to-speech/{voice_id}/multi-stream-input`.
pub(crate) async fn multi_stream_input(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let header_key = api_key(&req);
    let voice = req.match_info().get("voice_id").unwrap_or("").to_owned();
    let model = query_param(&req, "model_id").unwrap_or_else(|| "eleven_flash_v2_5".into());
    let format_name = query_param(&req, "output_format").unwrap_or_else(|| "mp3_44100_128".into());
    let idle = query_param(&req, "inactivity_timeout")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(20)
        .clamp(1, 180);
    upgrade(&req, body, shared, move |ws| async move {
        run(
            ws,
            header_key,
            voice,
            model,
            format_name,
            Duration::from_secs(idle),
        )
        .await
    })
}

async fn refuse(mut ws: FakeWs, error: &str, message: &str) {
    ws.send(json!({"error": error, "message": message, "code": 1008}))
        .await;
    ws.close(1008, error).await;
}

async fn run(
    mut ws: FakeWs,
    header_key: Option<String>,
    voice: String,
    model: String,
    format_name: String,
    idle: Duration,
) {
    let Some(format) = wire_format(&format_name) else {
        let m =
            format!("the local server synthesizes pcm_* and ulaw_8000 only, not '{format_name}'");
        return refuse(ws, "invalid_output_format", &m).await;
    };
    let mut contexts: Vec<Context> = Vec::new();
    let mut authorized = ws.shared.key_ok(header_key.as_deref());
    let mut first = true;
    ws.note(&format!(
        "elevenlabs multi-stream-input: voice={voice} model_id={model} output_format={format_name}"
    ));
    loop {
        let msg = match ws.recv(idle).await {
            Incoming::Json(v) => v,
            Incoming::Bad(why) => return refuse(ws, "invalid_message", &why).await,
            Incoming::Idle => {
                let m = format!(
                    "Have not received new text for {} seconds. Closing the connection.",
                    idle.as_secs()
                );
                return refuse(ws, "input_timeout_exceeded", &m).await;
            }
            Incoming::Gone => return,
        };
        if first {
            first = false;
            let in_message = ["xi-api-key", "xi_api_key"]
                .iter()
                .find_map(|k| msg.get(*k).and_then(Value::as_str));
            authorized |= in_message.is_some_and(|k| ws.shared.key_ok(Some(k)));
            if !authorized {
                return refuse(ws, "invalid_api_key", "Invalid API key").await;
            }
        }
        if msg.get("close_socket").and_then(Value::as_bool) == Some(true) {
            for mut c in std::mem::take(&mut contexts) {
                if !speak(&mut ws, &mut c, format).await {
                    return;
                }
                ws.send(json!({"isFinal": true, "contextId": c.id})).await;
            }
            return ws.close(1000, "").await;
        }
        let id = msg
            .get("context_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let pos = match contexts.iter().position(|c| c.id == id) {
            Some(p) => p,
            None => {
                if contexts.len() >= MAX_CONTEXTS {
                    ws.send(json!({"error": "max_active_conversations",
                        "message": "Maximum simultaneous contexts per WebSocket connection exceeded (5)",
                        "code": 1008}))
                        .await;
                    return ws
                        .close(
                            1008,
                            "Maximum simultaneous contexts per WebSocket connection exceeded (5)",
                        )
                        .await;
                }
                let schedule = msg
                    .pointer("/generation_config/chunk_length_schedule")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_u64)
                            .filter(|n| (50..=500).contains(n))
                            .collect::<Vec<_>>()
                    })
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| vec![120, 160, 250, 290]);
                contexts.push(Context {
                    id: id.clone(),
                    text: String::new(),
                    schedule,
                    generations: 0,
                });
                contexts.len() - 1
            }
        };
        if msg.get("close_context").and_then(Value::as_bool) == Some(true) {
            // Barge-in: what was not spoken yet never will be.
            contexts.remove(pos);
            ws.send(json!({"isFinal": true, "contextId": id})).await;
            continue;
        }
        let c = &mut contexts[pos];
        match msg.get("text") {
            Some(Value::String(t)) => c.text.push_str(t),
            None if msg.get("flush").is_some() => {}
            _ => {
                return refuse(
                    ws,
                    "invalid_message",
                    "a message needs 'text' (a string), 'flush', 'close_context' or 'close_socket'",
                )
                .await
            }
        }
        let flush = msg.get("flush").and_then(Value::as_bool) == Some(true);
        let threshold = c.schedule[c.generations.min(c.schedule.len() - 1)];
        if (flush || c.text.trim().chars().count() as u64 >= threshold)
            && !speak(&mut ws, c, format).await
        {
            return;
        }
    }
}

/// Synthesizes a context's buffered text into audio messages; false when the client is gone.
async fn speak(ws: &mut FakeWs, c: &mut Context, format: WireAudio) -> bool {
    let text = std::mem::take(&mut c.text);
    if text.trim().is_empty() {
        return true;
    }
    c.generations += 1;
    let (bytes, per_ms) = speech_bytes(&text, format);
    for chunk in bytes.chunks(piece_size(per_ms)) {
        let ok = ws
            .send(json!({"audio": b64_encode(chunk), "contextId": c.id,
                "normalizedAlignment": null, "alignment": null}))
            .await;
        if !ok {
            return false;
        }
    }
    true
}
