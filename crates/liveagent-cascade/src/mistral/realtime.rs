//! [`MistralRealtimeStt`]: Mistral's realtime transcription WebSocket,
//! `wss://api.mistral.ai/v1/audio/transcriptions/realtime?model=voxtral-mini-transcribe-realtime-2602`.
//!
//! One session per utterance, opened when the turn starts (audio is appended as the user
//! speaks, [`Stt::transcribe_live`]) or at its end with the whole utterance
//! ([`Stt::transcribe`]):
//!
//! ```text
//! < session.created {session}
//! > session.update {session: {audio_format: {encoding: "pcm_s16le", sample_rate: 16000}, language?}}
//! > input_audio.append {audio} …        (100 ms each)
//! > input_audio.flush                   (finalize the segment)
//! > input_audio.end                     (no more audio)
//! < transcription.text.delta {text} …   → SttEvent::Partial
//! < transcription.done {text, usage}    → SttEvent::Final
//! ```
//!
//! Voxtral realtime is a streaming model: `transcription.text.delta`s come while the audio
//! is appended (each about `target_streaming_delay_ms` behind the speech, see
//! [`MistralRealtimeStt::streaming_delay`]), so partials reach the conversation while the
//! user speaks; the model holds its last word or two until the segment is flushed. Whether
//! the server sends `transcription.done` per `flush` or only after `end` is not
//! documented: either way the first `transcription.done` is the utterance's. An `error`
//! event (`{error: {message, code}}`) ends the stream with the provider's error.

use std::rc::Rc;
use std::sync::Arc;

use futures_util::stream::LocalBoxStream;
use liveagent_core::LiveError;
use serde_json::{json, Value};

use super::MISTRAL;
use crate::http::{endpoint_builders, Endpoint};
use crate::stage::{Stt, SttCapabilities, SttEvent, SttInputStream};
use crate::streams::final_transcript;
use crate::ws::{query, Step, SttSocket, WsConn};

/// Voxtral realtime transcription (`voxtral-mini-transcribe-realtime-2602`...): partial
/// transcripts over a WebSocket as the audio streams in, PCM16 at 16 kHz.
///
/// ```
/// use liveagent_cascade::mistral::MistralRealtimeStt;
/// let stt = MistralRealtimeStt::new("voxtral-mini-transcribe-realtime-2602").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct MistralRealtimeStt {
    model: Arc<str>,
    language: Option<Arc<str>>,
    rate: u32,
    delay_ms: Option<u32>,
    ep: Endpoint,
}

endpoint_builders!(MistralRealtimeStt, "without `/v1`");

impl MistralRealtimeStt {
    /// Realtime transcription with `model`, key from `MISTRAL_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        MistralRealtimeStt {
            model: model.into(),
            language: None,
            rate: 16_000,
            delay_ms: None,
            ep: Endpoint::new(&MISTRAL, "mistral-realtime-stt"),
        }
    }

    /// The spoken language (ISO-639-1), when known.
    pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// The PCM16 sample rate declared and sent (default 16000; 8000 to 48000).
    pub fn sample_rate(mut self, rate: u32) -> Self {
        self.rate = rate.clamp(8000, 48_000);
        self
    }

    /// How far behind the speech the model streams its text
    /// (`session.target_streaming_delay_ms`; the server's default when unset): shorter
    /// gives earlier partials, longer more accurate ones.
    pub fn streaming_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay_ms = Some(delay.as_millis().min(10_000) as u32);
        self
    }

    fn session_update(&self) -> Value {
        let mut session = json!({
            "audio_format": {"encoding": "pcm_s16le", "sample_rate": self.rate},
        });
        if let Some(ms) = self.delay_ms {
            session["target_streaming_delay_ms"] = json!(ms);
        }
        if let Some(l) = &self.language {
            session["language"] = json!(&**l);
        }
        json!({"type": "session.update", "session": session})
    }
}

impl Stt for MistralRealtimeStt {
    fn provider(&self) -> &'static str {
        MISTRAL.name
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

impl MistralRealtimeStt {
    /// The session's shape: appends at the declared rate, then flush and end.
    fn socket(&self) -> SttSocket<impl FnMut(Value) -> Result<Step<SttEvent>, LiveError>> {
        SttSocket {
            ep: self.ep.clone(),
            open: Box::pin(self.connect()),
            rate: self.rate,
            min_samples: 1,
            append: Rc::new(append),
            commit: Rc::new(commit),
            on_message,
        }
    }

    /// Opens the session and queues its `session.update`.
    fn connect(&self) -> impl std::future::Future<Output = Result<WsConn, LiveError>> + 'static {
        let me = self.clone();
        async move {
            let path = format!(
                "/v1/audio/transcriptions/realtime?{}",
                query(&[("model", &me.model)])
            );
            let mut conn = me.ep.ws_connect(&me.ep.ws_url(&path)).await?;
            conn.send_json(&me.session_update());
            Ok(conn)
        }
    }
}

/// One `input_audio.append`.
fn append(b64: String) -> Value {
    json!({"type": "input_audio.append", "audio": b64})
}

/// Ends the utterance: `input_audio.flush` then `input_audio.end`.
fn commit(conn: &mut WsConn) {
    conn.send_json(&json!({"type": "input_audio.flush"}));
    conn.send_json(&json!({"type": "input_audio.end"}));
}

/// What one server event means to the stage.
fn on_message(v: Value) -> Result<Step<SttEvent>, LiveError> {
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("transcription.text.delta") => match v.get("text").and_then(Value::as_str) {
            Some(t) if !t.is_empty() => Step::Yield(SttEvent::Partial(t.to_owned())),
            _ => Step::Skip,
        },
        Some("transcription.done") => Step::Last(final_transcript(&v, "text")),
        _ => Step::Skip,
    })
}
