//! [`OpenAiRealtimeStt`]: OpenAI's realtime transcription session,
//! `wss://api.openai.com/v1/realtime?intent=transcription` (no `model` on the URL: that
//! URL would open a conversation session, which rejects the transcription update).
//!
//! One session per utterance, opened when the turn starts (audio is appended as the user
//! speaks, [`Stt::transcribe_live`]) or at its end with the whole utterance
//! ([`Stt::transcribe`]):
//!
//! ```text
//! > session.update {session: {type: "transcription", audio: {input: {format: audio/pcm 24 kHz,
//!                   transcription: {model, language?, prompt?}, turn_detection: null}}}}
//! > input_audio_buffer.append {audio} …          (100 ms each)
//! > input_audio_buffer.commit
//! < conversation.item.input_audio_transcription.delta {delta} …   → SttEvent::Partial
//! < conversation.item.input_audio_transcription.completed {transcript, usage} → SttEvent::Final
//! ```
//!
//! `…transcription.failed` and `error` events end the stream with the provider's error
//! (code included). `turn_detection` is `null`: the cascade's own turn detector has already
//! found the end of the utterance, so the stage commits it.
//!
//! When the partials come is the model's doing, and the stage yields each delta as it
//! arrives. The natively streaming models, `gpt-realtime-whisper` (latency tuned by
//! [`OpenAiRealtimeStt::delay`]) and `gpt-live-transcribe`, send deltas while the audio is
//! appended, so partials reach the conversation while the user speaks. `whisper-1`,
//! `gpt-4o-transcribe`, `gpt-4o-mini-transcribe` and `gpt-transcribe` transcribe when the
//! buffer is committed: all their deltas (for `whisper-1` one delta, the whole transcript)
//! come after the end of the turn, just before `completed`. The audio is streamed while
//! the user speaks either way, so only the transcription itself is left after the turn.

use std::rc::Rc;
use std::sync::Arc;

use futures_util::stream::LocalBoxStream;
use liveagent_core::LiveError;
use serde_json::{json, Value};

use super::OPENAI;
use crate::http::{endpoint_builders, Endpoint};
use crate::stage::{Stt, SttCapabilities, SttEvent, SttInputStream};
use crate::streams::{text_of, usage};
use crate::ws::{Step, SttSocket, WsConn};

/// The session's input rate (`audio/pcm` is 24 kHz only).
const RATE: u32 = 24_000;

/// OpenAI realtime transcription over a WebSocket. With `gpt-realtime-whisper` or
/// `gpt-live-transcribe` partial transcripts arrive while the user speaks; with
/// `gpt-4o-transcribe`, `gpt-4o-mini-transcribe` or `whisper-1` they arrive when the turn
/// is committed (see the [module docs](self)).
///
/// ```
/// use liveagent_cascade::openai::OpenAiRealtimeStt;
/// let stt = OpenAiRealtimeStt::new("gpt-realtime-whisper").language("en").delay("low");
/// ```
#[derive(Clone, Debug)]
pub struct OpenAiRealtimeStt {
    model: Arc<str>,
    language: Option<Arc<str>>,
    prompt: Option<Arc<str>>,
    delay: Option<Arc<str>>,
    ep: Endpoint,
}

endpoint_builders!(OpenAiRealtimeStt, "`…/v1`");

impl OpenAiRealtimeStt {
    /// Realtime transcription with `model`, key from `OPENAI_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        OpenAiRealtimeStt {
            model: model.into(),
            language: None,
            prompt: None,
            delay: None,
            ep: Endpoint::new(&OPENAI, "openai-realtime-stt"),
        }
    }

    /// The spoken language (ISO-639-1), when known.
    pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// A prompt that guides the transcription (names, jargon).
    pub fn prompt(mut self, prompt: impl Into<Arc<str>>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// How long the model waits before it emits text, trading latency for accuracy:
    /// `minimal`, `low`, `medium`, `high` or `xhigh` (`transcription.delay`; only
    /// `gpt-realtime-whisper` takes it).
    pub fn delay(mut self, delay: impl Into<Arc<str>>) -> Self {
        self.delay = Some(delay.into());
        self
    }

    /// The `session.update` this stage sends first.
    fn session_update(&self) -> Value {
        let mut transcription = json!({"model": &*self.model});
        if let Some(l) = &self.language {
            transcription["language"] = json!(&**l);
        }
        if let Some(p) = &self.prompt {
            transcription["prompt"] = json!(&**p);
        }
        if let Some(d) = &self.delay {
            transcription["delay"] = json!(&**d);
        }
        json!({
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {"input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": transcription,
                    "turn_detection": null,
                }},
            },
        })
    }
}

impl Stt for OpenAiRealtimeStt {
    fn provider(&self) -> &'static str {
        OPENAI.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            interim_results: true,
            sample_rate: RATE,
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

impl OpenAiRealtimeStt {
    /// The session's shape: 24 kHz appends, one commit (at least 100 ms, which the API
    /// refuses to commit less of: nothing was said).
    fn socket(&self) -> SttSocket<impl FnMut(Value) -> Result<Step<SttEvent>, LiveError>> {
        SttSocket {
            ep: self.ep.clone(),
            open: Box::pin(self.connect()),
            rate: RATE,
            min_samples: MIN_COMMIT,
            append: Rc::new(append),
            commit: Rc::new(|conn: &mut WsConn| {
                conn.send_json(&json!({"type": "input_audio_buffer.commit"}))
            }),
            on_message,
        }
    }

    /// Opens the session and queues its `session.update`.
    fn connect(&self) -> impl std::future::Future<Output = Result<WsConn, LiveError>> + 'static {
        let me = self.clone();
        async move {
            let url = me.ep.ws_url("/realtime?intent=transcription");
            let mut conn = me.ep.ws_connect(&url).await?;
            conn.send_json(&me.session_update());
            Ok(conn)
        }
    }
}

/// The least audio the API commits (100 ms).
const MIN_COMMIT: usize = RATE as usize / 10;

/// One `input_audio_buffer.append`.
fn append(b64: String) -> Value {
    json!({"type": "input_audio_buffer.append", "audio": b64})
}

/// What one server event means to the stage.
fn on_message(v: Value) -> Result<Step<SttEvent>, LiveError> {
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("conversation.item.input_audio_transcription.delta") => {
            match v.get("delta").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => Step::Yield(SttEvent::Partial(d.to_owned())),
                _ => Step::Skip,
            }
        }
        Some("conversation.item.input_audio_transcription.completed") => {
            Step::Last(SttEvent::Final {
                text: text_of(&v, "transcript"),
                input_tokens: usage(&v, &["input_tokens"]),
                output_tokens: usage(&v, &["output_tokens"]),
            })
        }
        _ => Step::Skip,
    })
}
