//! ElevenLabs stages: [`ElevenLabsStt`] (Scribe, `POST /v1/speech-to-text`, raw 16 kHz
//! PCM16 as `file_format=pcm_s16le_16`) and [`ElevenLabsTts`] (HTTP streaming,
//! `POST /v1/text-to-speech/{voice_id}/stream?output_format=pcm_24000`).
//!
//! Keys come from `ELEVENLABS_API_KEY` unless given; they travel in the `xi-api-key`
//! header and never appear in `Debug` output or errors.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, LocalBoxStream, StreamExt};
use liveagent_core::{LiveError, Secret};
use serde_json::{json, Value};

use crate::http::{Endpoint, Multipart};
use crate::openai::{json_body, raw_pcm16};
use crate::stage::{Stt, SttCapabilities, SttEvent, Tts, TtsCapabilities, TtsEvent};

/// ElevenLabs' API base URL.
pub const ELEVENLABS_BASE_URL: &str = "https://api.elevenlabs.io";

fn endpoint(source: &'static str) -> Endpoint {
    Endpoint {
        source,
        key: Secret::from_env("ELEVENLABS_API_KEY"),
        key_header: Some("xi-api-key"),
        timeout: Duration::from_secs(30),
    }
}

/// ElevenLabs Scribe speech-to-text (`scribe_v1`, `scribe_v2`...).
///
/// ```
/// use liveagent_cascade::elevenlabs::ElevenLabsStt;
/// let stt = ElevenLabsStt::new("scribe_v1").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct ElevenLabsStt {
    model: Arc<str>,
    base_url: Arc<str>,
    language: Option<Arc<str>>,
    ep: Endpoint,
}

impl ElevenLabsStt {
    /// Scribe with `model`, key from `ELEVENLABS_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        ElevenLabsStt {
            model: model.into(),
            base_url: ELEVENLABS_BASE_URL.into(),
            language: None,
            ep: endpoint("elevenlabs-stt"),
        }
    }

    /// The API base URL (without `/v1`).
    pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
        self.base_url = url.as_ref().trim_end_matches('/').into();
        self
    }

    /// The API key.
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.ep.key = Some(key.into());
        self
    }

    /// The spoken language (ISO-639-1 or -3), when known.
    pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// How long to wait for the response (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.ep.timeout = timeout;
        self
    }
}

impl Stt for ElevenLabsStt {
    fn provider(&self) -> &'static str {
        "elevenlabs"
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
        let url = format!("{}/v1/speech-to-text", self.base_url);
        let open = async move {
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
            let (body, _) = me.ep.send(&url, &ctype, "application/json", body).await?;
            Ok::<_, LiveError>(json_body(me.ep.clone(), body))
        };
        stream::once(open)
            .flat_map(|r| match r {
                Err(e) => stream::iter([Err(e)]).boxed_local(),
                Ok(values) => values
                    .map(|v| {
                        v.map(|v| SttEvent::Final {
                            text: v
                                .get("text")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .trim()
                                .to_owned(),
                            input_tokens: 0,
                            output_tokens: 0,
                        })
                    })
                    .boxed_local(),
            })
            .boxed_local()
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
    base_url: Arc<str>,
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
            base_url: ELEVENLABS_BASE_URL.into(),
            rate: 24_000,
            settings: VoiceSettings::default(),
            language: None,
            ep: endpoint("elevenlabs-tts"),
        }
    }

    /// The API base URL (without `/v1`).
    pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
        self.base_url = url.as_ref().trim_end_matches('/').into();
        self
    }

    /// The API key.
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.ep.key = Some(key.into());
        self
    }

    /// The voice settings.
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
        if [8000, 16000, 22050, 24000, 44100, 48000].contains(&rate) {
            self.rate = rate;
        }
        self
    }

    /// How long to wait for the response and for each piece of it (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.ep.timeout = timeout;
        self
    }
}

impl Tts for ElevenLabsTts {
    fn provider(&self) -> &'static str {
        "elevenlabs"
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
        let url = format!(
            "{}/v1/text-to-speech/{}/stream?output_format=pcm_{}",
            self.base_url, self.voice, self.rate
        );
        let open = async move {
            let mut body = json!({
                "text": text,
                "model_id": &*me.model,
                "voice_settings": {
                    "stability": me.settings.stability,
                    "similarity_boost": me.settings.similarity_boost,
                    "speed": me.settings.speed,
                },
            });
            if let Some(l) = &me.language {
                body["language_code"] = json!(&**l);
            }
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let (body, _) = me
                .ep
                .send(&url, "application/json", "audio/*", bytes)
                .await?;
            Ok::<_, LiveError>(raw_pcm16(&me.ep, body))
        };
        stream::once(open)
            .flat_map(|r| match r {
                Err(e) => stream::iter([Err(e)]).boxed_local(),
                Ok(s) => s,
            })
            .boxed_local()
    }
}
