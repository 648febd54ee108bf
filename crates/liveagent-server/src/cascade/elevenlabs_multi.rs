//! Fake ElevenLabs multi-context text-to-speech socket:
//! `GET /v1/text-to-speech/{voice_id}/multi-stream-input?model_id=…&output_format=…&auto_mode=…`.
//!
//! Messages (the API's AsyncAPI schema): initialize/send text `{"text", "context_id"?,
//! "voice_settings"?, "generation_config"?, "pronunciation_dictionary_locators"?,
//! "xi_api_key"?, "authorization"?, "flush"?}`, flush `{"context_id", "flush": true}`,
//! close a context `{"context_id", "close_context": true}`, keep a context alive
//! `{"text": "", "context_id"}`, close the socket `{"close_socket": true}`. A field the
//! schema does not have, a value of the wrong type, or a `context_id` that is not a
//! non-empty string of at most 256 characters is an `{"error": "invalid_message", …}` and
//! close 1008, like settings sent to a context that is already open (what ElevenLabs does
//! when a keep-alive opened the context first). `{"text": ""}` without a context keeps the
//! socket alive and opens nothing.
//!
//! A context opens with its first message (at most 5 live: the 6th is an error and close
//! 1008, "Maximum simultaneous contexts per WebSocket connection exceeded (5)"). Its text
//! is synthesized per message with `auto_mode=true`, else buffered until the chunk
//! schedule (default `[120, 160, 250, 290]`, or its `generation_config`) or a `flush`;
//! audio goes out as `{"audio", "contextId", …}` messages, paced at the rate it plays when
//! the server paces audio, and interleaved with reading the client, so a `close_context`
//! takes effect at once: a context that was flushed first speaks what it has and then
//! sends `{"isFinal": true, "contextId"}`; one that was not (barge-in) loses its unspoken
//! text and queued audio and gets its final at once. `close_context` for a context that
//! is gone is ignored (the client cannot know that its final is on the way).
//! `close_socket` speaks what every context holds, sends their finals and closes 1000.
//! The key comes from the `xi-api-key` header or the first message; no message for
//! `inactivity_timeout` seconds (default 20) closes 1008.
//!
//! Faults by voice name: `fail-once`/`fail-always` cut the connection (no close frame)
//! after ~100 ms of audio; `late-audio` sends one more audio message of a context after a
//! barge-in `close_context` (audio that was already on the way), before its final.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::elevenlabs_ws::{api_key, piece_size, speech_bytes, wire_format};
use super::should_fail;
use super::ws::{upgrade, FakeWs, Incoming};
use crate::audio::{b64_encode, WireAudio};
use crate::server::{query_param, Shared};
use crate::Pacing;

/// Live contexts a socket may hold.
const MAX_CONTEXTS: usize = 5;

/// The longest context id accepted.
const MAX_CONTEXT_ID: usize = 256;

/// The fields a client message may have.
const FIELDS: [&str; 11] = [
    "text",
    "context_id",
    "flush",
    "close_context",
    "close_socket",
    "voice_settings",
    "generation_config",
    "pronunciation_dictionary_locators",
    "xi_api_key",
    "xi-api-key",
    "authorization",
];

/// How far ahead of playback paced audio goes out.
const AHEAD: Duration = Duration::from_millis(80);

struct Context {
    id: String,
    text: String,
    schedule: Vec<u64>,
    generations: usize,
    /// A `flush` was asked: a `close_context` then speaks what is queued first.
    flushed: bool,
    /// Closed: its final goes out once its queued audio is out.
    closing: bool,
}

/// One socket's settings from the URL.
struct Settings {
    voice: String,
    model: String,
    format_name: String,
    idle: Duration,
    auto_mode: bool,
    paced: bool,
}

/// `GET /v1/text-to-speech/{voice_id}/multi-stream-input`.
pub(crate) async fn multi_stream_input(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let header_key = api_key(&req);
    let settings = Settings {
        voice: req.match_info().get("voice_id").unwrap_or("").to_owned(),
        model: query_param(&req, "model_id").unwrap_or_else(|| "eleven_flash_v2_5".into()),
        format_name: query_param(&req, "output_format").unwrap_or_else(|| "mp3_44100_128".into()),
        idle: Duration::from_secs(
            query_param(&req, "inactivity_timeout")
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(20)
                .clamp(1, 180),
        ),
        auto_mode: query_param(&req, "auto_mode").as_deref() == Some("true"),
        paced: shared.cfg.pacing == Pacing::RealTime,
    };
    upgrade(&req, body, shared, move |ws| async move {
        Socket {
            ws,
            contexts: Vec::new(),
            queue: VecDeque::new(),
            next_due: Instant::now(),
            sent_bytes: 0,
            per_ms: 48,
            closing_socket: false,
            fail: should_fail(&settings.voice),
            late_audio: settings.voice.contains("late-audio"),
            settings,
        }
        .run(header_key)
        .await
    })
}

/// One audio message to send: its context and bytes.
struct Piece {
    context: String,
    bytes: Vec<u8>,
    ms: u64,
}

struct Socket {
    ws: FakeWs,
    settings: Settings,
    contexts: Vec<Context>,
    /// Audio waiting to go out, in order.
    queue: VecDeque<Piece>,
    /// When the next paced piece is due to play.
    next_due: Instant,
    sent_bytes: usize,
    /// Audio bytes a millisecond in the output format.
    per_ms: usize,
    /// `close_socket` arrived: close once every context is final.
    closing_socket: bool,
    fail: bool,
    late_audio: bool,
}

/// Why the socket loop ends.
enum End {
    /// The client went away or the connection was cut.
    Gone,
    /// Refuse with (error, message) and close 1008.
    Refuse(&'static str, String),
    /// Close 1000.
    Normal,
}

impl Socket {
    async fn run(mut self, header_key: Option<String>) {
        let Some(format) = wire_format(&self.settings.format_name) else {
            let m = format!(
                "the local server synthesizes pcm_* and ulaw_8000 only, not '{}'",
                self.settings.format_name
            );
            return refuse(self.ws, "invalid_output_format", &m).await;
        };
        self.ws.note(&format!(
            "elevenlabs multi-stream-input: voice={} model_id={} output_format={} auto_mode={}",
            self.settings.voice,
            self.settings.model,
            self.settings.format_name,
            self.settings.auto_mode
        ));
        let mut authorized = self.ws.shared.key_ok(header_key.as_deref());
        let mut first = true;
        let mut last_message = Instant::now();
        let end = loop {
            match self.send_due().await {
                Ok(()) => {}
                Err(end) => break end,
            }
            let wait = match self.queue.front() {
                Some(_) if self.settings.paced => self
                    .next_due
                    .saturating_duration_since(Instant::now() + AHEAD),
                Some(_) => Duration::ZERO,
                None => self.settings.idle.saturating_sub(last_message.elapsed()),
            };
            let msg = match self.ws.recv(wait).await {
                Incoming::Json(v) => v,
                Incoming::Bad(why) => break End::Refuse("invalid_message", why),
                Incoming::Idle => {
                    if self.queue.is_empty() && last_message.elapsed() >= self.settings.idle {
                        let m = format!(
                            "Have not received new text for {} seconds. Closing the connection.",
                            self.settings.idle.as_secs()
                        );
                        break End::Refuse("input_timeout_exceeded", m);
                    }
                    continue;
                }
                Incoming::Gone => break End::Gone,
            };
            last_message = Instant::now();
            if first {
                first = false;
                let in_message = ["xi-api-key", "xi_api_key"]
                    .iter()
                    .find_map(|k| msg.get(*k).and_then(Value::as_str));
                authorized |= in_message.is_some_and(|k| self.ws.shared.key_ok(Some(k)));
                if !authorized {
                    break End::Refuse("invalid_api_key", "Invalid API key".into());
                }
            }
            if let Err(end) = self.on_message(msg, format) {
                break end;
            }
        };
        match end {
            End::Gone => {}
            End::Refuse(error, message) => refuse(self.ws, error, &message).await,
            End::Normal => self.ws.close(1000, "").await,
        }
    }

    /// Handles one client message.
    fn on_message(&mut self, msg: Value, format: WireAudio) -> Result<(), End> {
        let invalid = |m: String| Err(End::Refuse("invalid_message", m));
        let Some(obj) = msg.as_object() else {
            return invalid("a message must be a JSON object".into());
        };
        if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return invalid(format!("unknown field '{k}'"));
        }
        for k in ["flush", "close_context", "close_socket"] {
            if obj.get(k).is_some_and(|v| !v.is_boolean()) {
                return invalid(format!("'{k}' must be a boolean"));
            }
        }
        if obj.get("text").is_some_and(|v| !v.is_string()) {
            return invalid("'text' must be a string".into());
        }
        let flag = |k: &str| obj.get(k).and_then(Value::as_bool) == Some(true);
        if flag("close_socket") {
            // Speak what every context holds, then their finals, then close.
            for i in 0..self.contexts.len() {
                self.generate(i, format);
                self.contexts[i].closing = true;
            }
            self.closing_socket = true;
            return Ok(());
        }
        let id = match obj.get("context_id") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= MAX_CONTEXT_ID => {
                Some(s.clone())
            }
            Some(_) => {
                return invalid(format!(
                    "invalid context_id: a non-empty string of at most {MAX_CONTEXT_ID} characters"
                ))
            }
        };
        let text = obj.get("text").and_then(Value::as_str);
        let Some(id) = id else {
            // No context: `{"text": ""}` keeps the socket alive; anything else would go to
            // the default context, which this fake does not keep.
            return match text {
                Some("") if obj.len() == 1 => Ok(()),
                _ => invalid(
                    "a message needs a 'context_id' (or is {\"text\": \"\"} or {\"close_socket\": true})"
                        .into(),
                ),
            };
        };
        let pos = self.contexts.iter().position(|c| c.id == id && !c.closing);
        if flag("close_context") {
            if let Some(pos) = pos {
                self.close_context(pos);
            }
            // A context that is gone (its final is on the way) is no error.
            return Ok(());
        }
        let settings = obj.contains_key("voice_settings") || obj.contains_key("generation_config");
        let pos = match pos {
            Some(_) if settings => {
                return invalid(format!(
                    "context '{id}' is already open: voice_settings and generation_config go in its first message"
                ))
            }
            Some(p) => p,
            None => self.open_context(&id, obj)?,
        };
        match text {
            Some(t) => self.contexts[pos].text.push_str(t),
            None if obj.contains_key("flush") => {}
            None => {
                return invalid(
                    "a message needs 'text', 'flush', 'close_context' or 'close_socket'".into(),
                )
            }
        }
        let c = &self.contexts[pos];
        let threshold = c.schedule[c.generations.min(c.schedule.len() - 1)];
        let due = flag("flush")
            || (self.settings.auto_mode && text.is_some_and(|t| !t.trim().is_empty()))
            || c.text.trim().chars().count() as u64 >= threshold;
        if due {
            self.generate(pos, format);
        }
        if flag("flush") {
            self.contexts[pos].flushed = true;
        }
        Ok(())
    }

    /// Opens context `id` from its first message.
    fn open_context(
        &mut self,
        id: &str,
        obj: &serde_json::Map<String, Value>,
    ) -> Result<usize, End> {
        if self.contexts.len() >= MAX_CONTEXTS {
            return Err(End::Refuse(
                "max_active_conversations",
                "Maximum simultaneous contexts per WebSocket connection exceeded (5)".into(),
            ));
        }
        let mut schedule = vec![120, 160, 250, 290];
        if let Some(s) = obj
            .get("generation_config")
            .and_then(|g| g.get("chunk_length_schedule"))
        {
            let items = s.as_array().cloned().unwrap_or_default();
            let ok: Vec<u64> = items
                .iter()
                .filter_map(Value::as_f64)
                .filter(|n| (50.0..=500.0).contains(n))
                .map(|n| n as u64)
                .collect();
            if ok.is_empty() || ok.len() != items.len() {
                return Err(End::Refuse(
                    "invalid_message",
                    "chunk_length_schedule: a list of numbers from 50 to 500".into(),
                ));
            }
            schedule = ok;
        }
        self.contexts.push(Context {
            id: id.to_owned(),
            text: String::new(),
            schedule,
            generations: 0,
            flushed: false,
            closing: false,
        });
        Ok(self.contexts.len() - 1)
    }

    /// `close_context`: after a flush the context speaks what it has, then its final;
    /// otherwise (barge-in) its unspoken text and queued audio are dropped (but one audio
    /// message with `late-audio`).
    fn close_context(&mut self, pos: usize) {
        let c = &mut self.contexts[pos];
        c.closing = true;
        if c.flushed {
            return;
        }
        c.text.clear();
        let id = c.id.clone();
        let mut kept = !self.late_audio;
        self.queue.retain(|p| {
            if p.context != id {
                return true;
            }
            let keep = !kept;
            kept = true;
            keep
        });
    }

    /// Synthesizes a context's buffered text into queued audio messages.
    fn generate(&mut self, pos: usize, format: WireAudio) {
        let c = &mut self.contexts[pos];
        let text = std::mem::take(&mut c.text);
        if text.trim().is_empty() {
            return;
        }
        c.generations += 1;
        let (bytes, per_ms) = speech_bytes(&text, format);
        self.per_ms = per_ms;
        for chunk in bytes.chunks(piece_size(per_ms)) {
            self.queue.push_back(Piece {
                context: c.id.clone(),
                bytes: chunk.to_vec(),
                ms: (chunk.len() / per_ms.max(1)) as u64,
            });
        }
    }

    /// Sends the finals of closed contexts whose audio is out.
    async fn send_finals(&mut self) -> Result<(), End> {
        let mut i = 0;
        while i < self.contexts.len() {
            let c = &self.contexts[i];
            if c.closing && !self.queue.iter().any(|p| p.context == c.id) {
                let id = self.contexts.remove(i).id;
                if !self
                    .ws
                    .send(json!({"isFinal": true, "contextId": id}))
                    .await
                {
                    return Err(End::Gone);
                }
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    /// Sends the finals that are due, then the next audio message if it is due (one at a
    /// time, so the client is read in between), then the finals that makes due.
    async fn send_due(&mut self) -> Result<(), End> {
        self.send_finals().await?;
        self.send_piece().await?;
        self.send_finals().await?;
        if self.closing_socket && self.queue.is_empty() && self.contexts.is_empty() {
            return Err(End::Normal);
        }
        Ok(())
    }

    /// Sends the next audio message if it is due.
    async fn send_piece(&mut self) -> Result<(), End> {
        let now = Instant::now();
        if self.queue.is_empty() || (self.settings.paced && now + AHEAD < self.next_due) {
            return Ok(());
        }
        let Some(p) = self.queue.pop_front() else {
            return Ok(());
        };
        if self.fail && self.sent_bytes >= self.per_ms * 100 {
            self.ws
                .note("elevenlabs multi-stream-input: fault injected, cutting the connection");
            self.ws.cut();
            return Err(End::Gone);
        }
        self.sent_bytes += p.bytes.len();
        self.next_due = self.next_due.max(now) + Duration::from_millis(p.ms);
        let ok = self
            .ws
            .send(
                json!({"audio": b64_encode(&p.bytes), "contextId": p.context,
                "normalizedAlignment": null, "alignment": null}),
            )
            .await;
        if ok {
            Ok(())
        } else {
            Err(End::Gone)
        }
    }
}

async fn refuse(mut ws: FakeWs, error: &str, message: &str) {
    ws.send(json!({"error": error, "message": message, "code": 1008}))
        .await;
    ws.close(1008, error).await;
}
