//! ElevenLabs stages: [`ElevenLabsStt`] (Scribe, `POST /v1/speech-to-text`, raw 16 kHz
//! PCM16 as `file_format=pcm_s16le_16`), [`ElevenLabsRealtimeStt`] (the realtime STT
//! WebSocket, see [`realtime`]), [`ElevenLabsTts`] (HTTP streaming,
//! `POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_24000`) and
//! [`ElevenLabsStreamTts`] (the `stream-input` WebSocket, one socket per piece of text, see
//! [`stream_input`]) and [`ElevenLabsMultiTts`] (the multi-context `multi-stream-input`
//! WebSocket: one socket per conversation, one context per response, see
//! [`multi_context`]). For streaming speech in a conversation, prefer
//! [`ElevenLabsMultiTts`]: no handshake per sentence, and barge-in cancels just the
//! answer being spoken.
//!
//! Keys come from `ELEVENLABS_API_KEY` unless given; they travel in the `xi-api-key`
//! header and never appear in `Debug` output or errors.

/// The voice setters every ElevenLabs TTS stage has (`settings`, `language` and `rate`
/// fields): one definition for the HTTP, `stream-input` and multi-context stages.
macro_rules! voice_builders {
    ($ty:ty) => {
        impl $ty {
            /// The voice settings (with the multi-context stage, sent when each context opens).
            pub fn voice_settings(mut self, settings: VoiceSettings) -> Self {
                self.settings = settings;
                self
            }

            /// The language (ISO-639-1), for models that take one.
            pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
                self.language = Some(language.into());
                self
            }

            /// The PCM sample rate: 8000, 16000, 22050, 24000 (default), 44100 or 48000.
            pub fn sample_rate(mut self, rate: u32) -> Self {
                if PCM_RATES.contains(&rate) {
                    self.rate = rate;
                }
                self
            }
        }
    };
}

pub mod multi_context;
pub mod realtime;
pub mod stream_input;

use std::sync::Arc;

use futures_util::stream::{LocalBoxStream, StreamExt};
use liveagent_core::LiveError;
use serde_json::json;

use crate::http::{endpoint_builders, Endpoint, Multipart, Provider};
use crate::stage::{Stt, SttCapabilities, SttEvent, Tts, TtsCapabilities, TtsEvent};
use crate::streams::{json_body, opened, raw_pcm16, text_of};

pub use multi_context::ElevenLabsMultiTts;
pub use realtime::ElevenLabsRealtimeStt;
pub use stream_input::ElevenLabsStreamTts;

/// ElevenLabs' API base URL.
pub const ELEVENLABS_BASE_URL: &str = "https://api.elevenlabs.io";

pub(crate) const ELEVENLABS: Provider = Provider {
    name: "elevenlabs",
    base_url: ELEVENLABS_BASE_URL,
    key_env: "ELEVENLABS_API_KEY",
    key_header: Some("xi-api-key"),
};

/// The PCM rates ElevenLabs offers as `pcm_{rate}`.
pub(crate) const PCM_RATES: [u32; 6] = [8000, 16000, 22050, 24000, 44100, 48000];

/// ElevenLabs Scribe speech-to-text (`scribe_v1`, `scribe_v2`...).
///
/// ```
/// use liveagent_cascade::elevenlabs::ElevenLabsStt;
/// let stt = ElevenLabsStt::new("scribe_v1").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct ElevenLabsStt {
    model: Arc<str>,
    language: Option<Arc<str>>,
    ep: Endpoint,
}

endpoint_builders!(ElevenLabsStt, "without `/v1`");

impl ElevenLabsStt {
    /// Scribe with `model`, key from `ELEVENLABS_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        ElevenLabsStt {
            model: model.into(),
            language: None,
            ep: Endpoint::new(&ELEVENLABS, "elevenlabs-stt"),
        }
    }

    /// The spoken language (ISO-639-1 or -3), when known.
    pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
        self.language = Some(language.into());
        self
    }
}

impl Stt for ElevenLabsStt {
    fn provider(&self) -> &'static str {
        ELEVENLABS.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> SttCapabilities {
        SttCapabilities {
            interim_results: false,
            sample_rate: 16_000,
        }
    }

    fn transcribe(
        &self,
        audio: Arc<[i16]>,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        let me = self.clone();
        opened(async move {
            let pcm: Vec<u8> = audio.iter().flat_map(|s| s.to_le_bytes()).collect();
            let mut form = Multipart::new()
                .text("model_id", &me.model)
                .text("file_format", "pcm_s16le_16")
                .text("timestamps_granularity", "none")
                .file("file", "utterance.pcm", "application/octet-stream", &pcm);
            if let Some(l) = &me.language {
                form = form.text("language_code", l);
            }
            let (ctype, body) = form.finish();
            let url = me.ep.url("/v1/speech-to-text");
            let (body, _) = me.ep.send(&url, &ctype, "application/json", body).await?;
            Ok(json_body(me.ep.clone(), body)
                .map(|v| {
                    v.map(|v| SttEvent::Final {
                        text: text_of(&v, "text"),
                        input_tokens: 0,
                        output_tokens: 0,
                    })
                })
                .boxed_local())
        })
    }
}

/// Voice settings of [`ElevenLabsTts`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VoiceSettings {
    /// 0..1 (default 0.5).
    pub stability: f32,
    /// 0..1 (default 0.75).
    pub similarity_boost: f32,
    /// Speaking speed (default 1.0).
    pub speed: f32,
}

impl VoiceSettings {
    /// The `voice_settings` object of a request.
    pub(crate) fn to_json(self) -> serde_json::Value {
        json!({
            "stability": self.stability,
            "similarity_boost": self.similarity_boost,
            "speed": self.speed,
        })
    }
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            stability: 0.5,
            similarity_boost: 0.75,
            speed: 1.0,
        }
    }
}

/// ElevenLabs text-to-speech over HTTP streaming, PCM16 at 24 kHz (or another `pcm_*`
/// rate).
///
/// ```
/// use liveagent_cascade::elevenlabs::ElevenLabsTts;
/// // "George", the voice of the ElevenLabs quickstart.
/// let tts = ElevenLabsTts::new("eleven_flash_v2_5", "JBFqnCBsd6RMkjVDRZzb");
/// ```
#[derive(Clone, Debug)]
pub struct ElevenLabsTts {
    model: Arc<str>,
    voice: Arc<str>,
    rate: u32,
    settings: VoiceSettings,
    language: Option<Arc<str>>,
    ep: Endpoint,
}

impl ElevenLabsTts {
    /// Speech with `model` (`eleven_flash_v2_5`, `eleven_turbo_v2_5`...) and `voice_id`,
    /// key from `ELEVENLABS_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice_id: impl Into<Arc<str>>) -> Self {
        ElevenLabsTts {
            model: model.into(),
            voice: voice_id.into(),
            rate: 24_000,
            settings: VoiceSettings::default(),
            language: None,
            ep: Endpoint::new(&ELEVENLABS, "elevenlabs-tts"),
        }
    }
}

endpoint_builders!(ElevenLabsTts, "without `/v1`");
voice_builders!(ElevenLabsTts);

impl Tts for ElevenLabsTts {
    fn provider(&self) -> &'static str {
        ELEVENLABS.name
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn capabilities(&self) -> TtsCapabilities {
        TtsCapabilities {
            streaming: true,
            sample_rate: self.rate,
            max_chars: 5000,
        }
    }

    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let me = self.clone();
        opened(async move {
            let mut body = json!({
                "text": text,
                "model_id": &*me.model,
                "voice_settings": me.settings.to_json(),
            });
            if let Some(l) = &me.language {
                body["language_code"] = json!(&**l);
            }
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let path = format!(
                "/v1/text-to-speech/{}/stream?output_format=pcm_{}",
                crate::ws::path_segment(&me.voice),
                me.rate
            );
            let url = me.ep.url(&path);
            let (body, _) = me
                .ep
                .send(&url, "application/json", "audio/*", bytes)
                .await?;
            Ok(raw_pcm16(&me.ep, body))
        })
    }
}
