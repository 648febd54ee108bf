//! [`ElevenLabsRealtimeStt`]: ElevenLabs' realtime speech-to-text WebSocket,
//! `wss://api.elevenlabs.io/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000&commit_strategy=manual`.
//!
//! One session per utterance, opened when the turn starts (audio is appended as the user
//! speaks, [`Stt::transcribe_live`]) or at its end with the whole utterance
//! ([`Stt::transcribe`]):
//!
//! ```text
//! < session_started {session_id, config}
//! > input_audio_chunk {audio_base_64, commit: false, sample_rate} …   (100 ms each)
//! > input_audio_chunk {audio_base_64: "", commit: true, sample_rate}
//! < partial_transcript {text} …        (each replaces the previous) → SttEvent::Partial
//! < committed_transcript {text}                                     → SttEvent::Final
//! ```
//!
//! A partial transcript replaces the previous one; the stage yields what a partial adds to
//! the text already yielded, and nothing for a revision (the final transcript is whole).
//! Error messages (`input_error`, `auth_error`, `quota_exceeded`... each
//! `{message_type, error}`) end the stream with the message type as the error code.

use std::rc::Rc;
use std::sync::Arc;

use futures_util::stream::LocalBoxStream;
use liveagent_core::{ErrorKind, LiveError};
use serde_json::{json, Value};

use super::{ELEVENLABS, PCM_RATES};
use crate::http::{endpoint_builders, Endpoint};
use crate::stage::{Stt, SttCapabilities, SttEvent, SttInputStream};
use crate::streams::text_of;
use crate::ws::{query, Step, SttSocket, WsConn};

/// The message types that are errors (each `{message_type, error}`).
const ERRORS: [&str; 14] = [
    "error",
    "auth_error",
    "quota_exceeded",
    "commit_throttled",
    "transcriber_error",
    "unaccepted_terms",
    "rate_limited",
    "input_error",
    "invalid_request",
    "queue_overflow",
    "resource_exhausted",
    "session_time_limit_exceeded",
    "chunk_size_exceeded",
    "insufficient_audio_activity",
];

/// ElevenLabs realtime Scribe (`scribe_v2_realtime`...): partial transcripts over a
/// WebSocket while the audio streams in, PCM16 at 16 kHz (or another `pcm_*` rate).
///
/// ```
/// use liveagent_cascade::elevenlabs::ElevenLabsRealtimeStt;
/// let stt = ElevenLabsRealtimeStt::new("scribe_v2_realtime").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct ElevenLabsRealtimeStt {
    model: Arc<str>,
    language: Option<Arc<str>>,
    rate: u32,
    ep: Endpoint,
}

endpoint_builders!(ElevenLabsRealtimeStt, "without `/v1`");

impl ElevenLabsRealtimeStt {
    /// Realtime transcription with `model`, key from `ELEVENLABS_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        ElevenLabsRealtimeStt {
            model: model.into(),
            language: None,
            rate: 16_000,
            ep: Endpoint::new(&ELEVENLABS, "elevenlabs-realtime-stt"),
        }
    }

    /// The spoken language (ISO-639-1 or -3), when known.
    pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// The PCM sample rate sent: 8000, 16000 (default), 22050, 24000, 44100 or 48000.
    pub fn sample_rate(mut self, rate: u32) -> Self {
        if PCM_RATES.contains(&rate) {
            self.rate = rate;
        }
        self
    }

    fn url(&self) -> String {
        let format = format!("pcm_{}", self.rate);
        let mut q = vec![
            ("model_id", &*self.model),
            ("audio_format", format.as_str()),
            ("commit_strategy", "manual"),
        ];
        if let Some(l) = &self.language {
            q.push(("language_code", l));
        }
        self.ep
            .ws_url(&format!("/v1/speech-to-text/realtime?{}", query(&q)))
    }
}

impl Stt for ElevenLabsRealtimeStt {
    fn provider(&self) -> &'static str {
        ELEVENLABS.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            interim_results: true,
            sample_rate: self.rate,
        }
    }

    fn transcribe(
        &self,
        audio: Arc<[i16]>,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        self.socket().once(audio)
    }

    fn streams_input(&self) -> bool {
        true
    }

    fn transcribe_live(
        &self,
        input: SttInputStream,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        self.socket().live(input)
    }
}

/// One `input_audio_chunk`.
fn chunk(b64: String, commit: bool, rate: u32) -> Value {
    json!({
        "message_type": "input_audio_chunk",
        "audio_base_64": b64,
        "commit": commit,
        "sample_rate": rate,
    })
}

impl ElevenLabsRealtimeStt {
    /// The session's shape: `input_audio_chunk`s, the last an empty one with `commit: true`.
    fn socket(&self) -> SttSocket<impl FnMut(Value) -> Result<Step<SttEvent>, LiveError>> {
        let rate = self.rate;
        SttSocket {
            ep: self.ep.clone(),
            open: Box::pin(self.connect()),
            rate,
            min_samples: 1,
            append: Rc::new(move |b64| chunk(b64, false, rate)),
            commit: Rc::new(move |conn: &mut WsConn| {
                conn.send_json(&chunk(String::new(), true, rate))
            }),
            on_message: self.on_message(),
        }
    }

    /// Opens the session.
    fn connect(&self) -> impl std::future::Future<Output = Result<WsConn, LiveError>> + 'static {
        let me = self.clone();
        async move { me.ep.ws_connect(&me.url()).await }
    }

    /// What each server message means to one session (partials replace each other: the
    /// handler yields what each adds).
    fn on_message(&self) -> impl FnMut(Value) -> Result<Step<SttEvent>, LiveError> + 'static {
        let ep = self.ep.clone();
        let mut said = String::new();
        move |v| {
            let kind = v.get("message_type").and_then(Value::as_str).unwrap_or("");
            Ok(match kind {
                "partial_transcript" => {
                    let text = v.get("text").and_then(Value::as_str).unwrap_or("");
                    match text.strip_prefix(said.as_str()) {
                        Some(more) if !more.is_empty() => {
                            let more = more.to_owned();
                            said = text.to_owned();
                            Step::Yield(SttEvent::Partial(more))
                        }
                        _ => Step::Skip,
                    }
                }
                "committed_transcript" | "committed_transcript_with_timestamps" => {
                    Step::Last(SttEvent::Final {
                        text: text_of(&v, "text"),
                        input_tokens: 0,
                        output_tokens: 0,
                    })
                }
                k if ERRORS.contains(&k) => {
                    return Err(ep
                        .err(
                            ErrorKind::Provider,
                            format!("{k}: {}", text_of(&v, "error")),
                        )
                        .with_code(k));
                }
                _ => Step::Skip,
            })
        }
    }
}
