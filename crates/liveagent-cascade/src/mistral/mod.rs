//! Mistral stages: [`MistralStt`] (Voxtral, `POST /v1/audio/transcriptions` with
//! `stream=true`: `transcription.text.delta` events) and [`MistralTts`]
//! (`POST /v1/audio/speech` with `stream: true`: `speech.audio.delta` events whose
//! `audio_data` is float32 PCM at 24 kHz, converted here to PCM16 with partial samples
//! carried across deltas), and the realtime WebSockets: [`MistralRealtimeStt`]
//! (`/v1/audio/transcriptions/realtime`, see [`realtime`]) and [`MistralRealtimeTts`]
//! (`/v1/audio/speech/realtime`, see [`realtime_tts`]).
//!
//! Keys come from `MISTRAL_API_KEY` unless given; they are sent as a Bearer token and never
//! appear in `Debug` output or errors.

pub mod realtime;
pub mod realtime_tts;

use std::sync::Arc;

use futures_util::stream::LocalBoxStream;
use liveagent_core::LiveError;
use serde_json::json;

use crate::http::{endpoint_builders, wav, Endpoint, F32Carry, Multipart, Provider};
use crate::stage::{Stt, SttCapabilities, SttEvent, Tts, TtsCapabilities, TtsEvent};
use crate::streams::{opened, sse_audio, sse_transcript, TranscriptShape};

pub use realtime::MistralRealtimeStt;
pub use realtime_tts::MistralRealtimeTts;

/// Mistral's API base URL.
pub const MISTRAL_BASE_URL: &str = "https://api.mistral.ai";

pub(crate) const MISTRAL: Provider = Provider {
    name: "mistral",
    base_url: MISTRAL_BASE_URL,
    key_env: "MISTRAL_API_KEY",
    key_header: None,
};

/// Voxtral speech-to-text (`voxtral-mini-latest`, `voxtral-mini-2507`...), streamed.
///
/// ```
/// use liveagent_cascade::mistral::MistralStt;
/// let stt = MistralStt::new("voxtral-mini-latest").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct MistralStt {
    model: Arc<str>,
    language: Option<Arc<str>>,
    ep: Endpoint,
}

endpoint_builders!(MistralStt, "without `/v1`");

impl MistralStt {
    /// Transcription with `model`, key from `MISTRAL_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        MistralStt {
            model: model.into(),
            language: None,
            ep: Endpoint::new(&MISTRAL, "mistral-stt"),
        }
    }

    /// The spoken language (ISO-639-1), when known.
    pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
        self.language = Some(language.into());
        self
    }
}

impl Stt for MistralStt {
    fn provider(&self) -> &'static str {
        MISTRAL.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            interim_results: true,
            sample_rate: 16_000,
        }
    }

    fn transcribe(
        &self,
        audio: Arc<[i16]>,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        let me = self.clone();
        opened(async move {
            let mut form = Multipart::new()
                .text("model", &me.model)
                .file("file", "utterance.wav", "audio/wav", &wav(&audio, 16_000))
                .text("stream", "true");
            if let Some(l) = &me.language {
                form = form.text("language", l);
            }
            let (ctype, body) = form.finish();
            let url = me.ep.url("/v1/audio/transcriptions");
            let (body, _) = me.ep.send(&url, &ctype, "text/event-stream", body).await?;
            let shape = TranscriptShape {
                delta_type: "transcription.text.delta",
                delta_key: "text",
                done_type: "transcription.done",
            };
            Ok(sse_transcript(&me.ep, body, shape))
        })
    }
}

/// Voxtral text-to-speech (`voxtral-mini-tts-2603`...), streamed, 24 kHz.
///
/// ```
/// use liveagent_cascade::mistral::MistralTts;
/// let tts = MistralTts::new("voxtral-mini-tts-2603", "en_paul_neutral");
/// ```
#[derive(Clone, Debug)]
pub struct MistralTts {
    model: Arc<str>,
    voice: Arc<str>,
    ep: Endpoint,
}

endpoint_builders!(MistralTts, "without `/v1`");

impl MistralTts {
    /// Speech with `model` and `voice_id`, key from `MISTRAL_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice_id: impl Into<Arc<str>>) -> Self {
        MistralTts {
            model: model.into(),
            voice: voice_id.into(),
            ep: Endpoint::new(&MISTRAL, "mistral-tts"),
        }
    }
}

impl Tts for MistralTts {
    fn provider(&self) -> &'static str {
        MISTRAL.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            sample_rate: 24_000,
            max_chars: 4000,
        }
    }

    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let me = self.clone();
        opened(async move {
            let body = json!({
                "model": &*me.model,
                "input": text,
                "voice_id": &*me.voice,
                "response_format": "pcm",
                "stream": true,
            });
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let url = me.ep.url("/v1/audio/speech");
            let (body, _) = me
                .ep
                .send(&url, "application/json", "text/event-stream", bytes)
                .await?;
            let mut carry = F32Carry::default();
            Ok(sse_audio(&me.ep, body, &["audio_data"], move |b| {
                carry.push(b)
            }))
        })
    }
}
