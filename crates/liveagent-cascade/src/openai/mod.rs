//! OpenAI stages: [`OpenAiStt`] (`POST /v1/audio/transcriptions`, `stream=true` for partial
//! transcripts), [`OpenAiRealtimeStt`] (the realtime transcription session,
//! `wss://…/v1/realtime?intent=transcription`, see [`realtime`]) and [`OpenAiTts`]
//! (`POST /v1/audio/speech`, 24 kHz PCM streamed as raw bytes or as `speech.audio.delta`
//! events). The LLM stage for OpenAI (and any server that speaks Chat Completions) is
//! [`ChatLlm`](crate::ChatLlm).
//!
//! Keys come from `OPENAI_API_KEY` unless given; they are sent as a Bearer token and never
//! appear in `Debug` output or errors.

pub mod realtime;

use std::sync::Arc;

use futures_util::stream::{LocalBoxStream, StreamExt};
use liveagent_core::LiveError;
use serde_json::json;

use crate::http::{endpoint_builders, wav, Endpoint, Multipart, Pcm16Carry, Provider};
use crate::stage::{Stt, SttCapabilities, SttEvent, Tts, TtsCapabilities, TtsEvent};
use crate::streams::{
    final_transcript, json_body, opened, raw_pcm16, sse_audio, sse_transcript, TranscriptShape,
};

pub use realtime::OpenAiRealtimeStt;

/// OpenAI's API base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

pub(crate) const OPENAI: Provider = Provider {
    name: "openai",
    base_url: OPENAI_BASE_URL,
    key_env: "OPENAI_API_KEY",
    key_header: None,
};

/// OpenAI speech-to-text (`gpt-4o-mini-transcribe`, `gpt-4o-transcribe`, `whisper-1`...).
///
/// ```
/// use liveagent_cascade::openai::OpenAiStt;
/// let stt = OpenAiStt::new("gpt-4o-mini-transcribe").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct OpenAiStt {
    model: Arc<str>,
    language: Option<Arc<str>>,
    prompt: Option<Arc<str>>,
    ep: Endpoint,
}

endpoint_builders!(OpenAiStt, "`…/v1`");

impl OpenAiStt {
    /// Transcription with `model`, key from `OPENAI_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        OpenAiStt {
            model: model.into(),
            language: None,
            prompt: None,
            ep: Endpoint::new(&OPENAI, "openai-stt"),
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

    fn streams(&self) -> bool {
        // "Streaming is not supported for the whisper-1 model and will be ignored."
        !self.model.starts_with("whisper")
    }
}

impl Stt for OpenAiStt {
    fn provider(&self) -> &'static str {
        OPENAI.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            interim_results: self.streams(),
            sample_rate: 24_000,
        }
    }

    fn transcribe(
        &self,
        audio: Arc<[i16]>,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        let me = self.clone();
        opened(async move {
            let mut form = Multipart::new()
                .file("file", "utterance.wav", "audio/wav", &wav(&audio, 24_000))
                .text("model", &me.model)
                .text("response_format", "json");
            if me.streams() {
                form = form.text("stream", "true");
            }
            if let Some(l) = &me.language {
                form = form.text("language", l);
            }
            if let Some(p) = &me.prompt {
                form = form.text("prompt", p);
            }
            let (ctype, body) = form.finish();
            let url = me.ep.url("/audio/transcriptions");
            let accept = "text/event-stream, application/json";
            let (body, rtype) = me.ep.send(&url, &ctype, accept, body).await?;
            // Decide by what came back: whisper-1 answers JSON even when asked to stream.
            Ok(if rtype.starts_with("text/event-stream") {
                let shape = TranscriptShape {
                    delta_type: "transcript.text.delta",
                    delta_key: "delta",
                    done_type: "transcript.text.done",
                };
                sse_transcript(&me.ep, body, shape)
            } else {
                json_body(me.ep.clone(), body)
                    .map(|v| v.map(|v| final_transcript(&v, "text")))
                    .boxed_local()
            })
        })
    }
}

/// OpenAI text-to-speech (`gpt-4o-mini-tts`, `tts-1`...), 24 kHz PCM.
///
/// ```
/// use liveagent_cascade::openai::OpenAiTts;
/// let tts = OpenAiTts::new("gpt-4o-mini-tts", "marin").instructions("Speak calmly.");
/// ```
#[derive(Clone, Debug)]
pub struct OpenAiTts {
    model: Arc<str>,
    voice: Arc<str>,
    instructions: Option<Arc<str>>,
    speed: Option<f32>,
    sse: bool,
    ep: Endpoint,
}

endpoint_builders!(OpenAiTts, "`…/v1`");

impl OpenAiTts {
    /// Speech with `model` and `voice`, key from `OPENAI_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice: impl Into<Arc<str>>) -> Self {
        OpenAiTts {
            model: model.into(),
            voice: voice.into(),
            instructions: None,
            speed: None,
            sse: false,
            ep: Endpoint::new(&OPENAI, "openai-tts"),
        }
    }

    /// A style prompt (not for `tts-1` / `tts-1-hd`).
    pub fn instructions(mut self, instructions: impl Into<Arc<str>>) -> Self {
        self.instructions = Some(instructions.into());
        self
    }

    /// Speaking speed, 0.25 to 4.0.
    pub fn speed(mut self, speed: f32) -> Self {
        self.speed = Some(speed.clamp(0.25, 4.0));
        self
    }

    /// Ask for `stream_format: "sse"` (`speech.audio.delta` events, with usage) instead of
    /// raw audio bytes. Not for `tts-1` / `tts-1-hd`.
    pub fn sse(mut self, sse: bool) -> Self {
        self.sse = sse;
        self
    }
}

impl Tts for OpenAiTts {
    fn provider(&self) -> &'static str {
        OPENAI.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            sample_rate: 24_000,
            max_chars: 4096,
        }
    }

    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let me = self.clone();
        opened(async move {
            let mut body = json!({
                "model": &*me.model,
                "input": text,
                "voice": &*me.voice,
                "response_format": "pcm",
                "stream_format": if me.sse { "sse" } else { "audio" },
            });
            if let Some(i) = &me.instructions {
                body["instructions"] = json!(&**i);
            }
            if let Some(s) = me.speed {
                body["speed"] = json!(s);
            }
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let accept = if me.sse {
                "text/event-stream"
            } else {
                "application/octet-stream"
            };
            let url = me.ep.url("/audio/speech");
            let (body, rtype) = me.ep.send(&url, "application/json", accept, bytes).await?;
            // Decide by what came back: OpenAI-compatible servers ignore stream_format.
            Ok(if rtype.starts_with("text/event-stream") {
                let mut carry = Pcm16Carry::default();
                sse_audio(&me.ep, body, &["audio", "delta"], move |b| carry.push(b))
            } else {
                raw_pcm16(&me.ep, body)
            })
        })
    }
}
