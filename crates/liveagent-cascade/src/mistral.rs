//! Mistral stages: [`MistralStt`] (Voxtral, `POST /v1/audio/transcriptions` with
//! `stream=true`: `transcription.text.delta` events) and [`MistralTts`]
//! (`POST /v1/audio/speech` with `stream: true`: `speech.audio.delta` events whose
//! `audio_data` is float32 PCM at 24 kHz, converted here to PCM16 with partial samples
//! carried across deltas).
//!
//! Keys come from `MISTRAL_API_KEY` unless given; they are sent as a Bearer token and never
//! appear in `Debug` output or errors.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use liveagent_core::{ErrorKind, LiveError, Secret};
use serde_json::{json, Value};

use crate::http::{wav, Endpoint, F32Carry, Multipart};
use crate::openai::{sse_json, SttStreamExt, TtsStreamExt};
use crate::stage::{Stt, SttCapabilities, SttEvent, Tts, TtsCapabilities, TtsEvent};

/// Mistral's API base URL.
pub const MISTRAL_BASE_URL: &str = "https://api.mistral.ai";

fn endpoint(source: &'static str) -> Endpoint {
    Endpoint {
        source,
        key: Secret::from_env("MISTRAL_API_KEY"),
        key_header: None,
        timeout: Duration::from_secs(30),
    }
}

/// Voxtral speech-to-text (`voxtral-mini-latest`, `voxtral-mini-2507`...), streamed.
///
/// ```
/// use liveagent_cascade::mistral::MistralStt;
/// let stt = MistralStt::new("voxtral-mini-latest").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct MistralStt {
    model: Arc<str>,
    base_url: Arc<str>,
    language: Option<Arc<str>>,
    ep: Endpoint,
}

impl MistralStt {
    /// Transcription with `model`, key from `MISTRAL_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        MistralStt {
            model: model.into(),
            base_url: MISTRAL_BASE_URL.into(),
            language: None,
            ep: endpoint("mistral-stt"),
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

    /// The spoken language (ISO-639-1), when known.
    pub fn language(mut self, language: impl Into<Arc<str>>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// How long to wait for the response and for each piece of it (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.ep.timeout = timeout;
        self
    }
}

impl Stt for MistralStt {
    fn provider(&self) -> &'static str {
        "mistral"
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
        let url = format!("{}/v1/audio/transcriptions", self.base_url);
        let open = async move {
            let mut form = Multipart::new()
                .text("model", &me.model)
                .file("file", "utterance.wav", "audio/wav", &wav(&audio, 16_000))
                .text("stream", "true");
            if let Some(l) = &me.language {
                form = form.text("language", l);
            }
            let (ctype, body) = form.finish();
            let (body, _) = me.ep.send(&url, &ctype, "text/event-stream", body).await?;
            Ok::<_, LiveError>((me, body))
        };
        stream::once(open)
            .flat_map(|r| match r {
                Err(e) => stream::iter([Err(e)]).boxed_local(),
                Ok((me, body)) => {
                    let mut done = false;
                    sse_json(&me.ep, body)
                        .filter_map(move |v| {
                            let out = match v {
                                _ if done => None,
                                Err(e) => Some(Err(e)),
                                Ok(v) => match v.get("type").and_then(Value::as_str) {
                                    Some("transcription.text.delta") => v
                                        .get("text")
                                        .and_then(Value::as_str)
                                        .filter(|t| !t.is_empty())
                                        .map(|t| Ok(SttEvent::Partial(t.to_owned()))),
                                    Some("transcription.done") => {
                                        done = true;
                                        let u = v.get("usage");
                                        let n = |k: &str| {
                                            u.and_then(|u| u.get(k))
                                                .and_then(Value::as_u64)
                                                .unwrap_or(0)
                                        };
                                        Some(Ok(SttEvent::Final {
                                            text: v
                                                .get("text")
                                                .and_then(Value::as_str)
                                                .unwrap_or_default()
                                                .trim()
                                                .to_owned(),
                                            input_tokens: n("prompt_tokens"),
                                            output_tokens: n("completion_tokens"),
                                        }))
                                    }
                                    _ => None,
                                },
                            };
                            std::future::ready(out)
                        })
                        .boxed_local()
                        .ended_with_final(me.ep.clone())
                }
            })
            .boxed_local()
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
    base_url: Arc<str>,
    ep: Endpoint,
}

impl MistralTts {
    /// Speech with `model` and `voice_id`, key from `MISTRAL_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice_id: impl Into<Arc<str>>) -> Self {
        MistralTts {
            model: model.into(),
            voice: voice_id.into(),
            base_url: MISTRAL_BASE_URL.into(),
            ep: endpoint("mistral-tts"),
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

    /// How long to wait for the response and for each piece of it (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.ep.timeout = timeout;
        self
    }
}

impl Tts for MistralTts {
    fn provider(&self) -> &'static str {
        "mistral"
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
        let url = format!("{}/v1/audio/speech", self.base_url);
        let open = async move {
            let body = json!({
                "model": &*me.model,
                "input": text,
                "voice_id": &*me.voice,
                "response_format": "pcm",
                "stream": true,
            });
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let (body, _) = me
                .ep
                .send(&url, "application/json", "text/event-stream", bytes)
                .await?;
            Ok::<_, LiveError>((me, body))
        };
        stream::once(open)
            .flat_map(|r| match r {
                Err(e) => stream::iter([Err(e)]).boxed_local(),
                Ok((me, body)) => {
                    let mut carry = F32Carry::default();
                    let ep = me.ep.clone();
                    sse_json(&me.ep, body)
                        .filter_map(move |v| {
                            let out = match v {
                                Err(e) => Some(Err(e)),
                                Ok(v) => match v.get("type").and_then(Value::as_str) {
                                    Some("speech.audio.delta") => {
                                        let b64 = v
                                            .get("audio_data")
                                            .and_then(Value::as_str)
                                            .unwrap_or("");
                                        match base64::engine::general_purpose::STANDARD.decode(b64)
                                        {
                                            Ok(bytes) => {
                                                Some(Ok(TtsEvent::Audio(carry.push(&bytes))))
                                            }
                                            Err(e) => Some(Err(ep.err(
                                                ErrorKind::Protocol,
                                                format!("audio_data is not base64: {e}"),
                                            ))),
                                        }
                                    }
                                    Some("speech.audio.done") => {
                                        let u = v.get("usage");
                                        let n = |k: &str| {
                                            u.and_then(|u| u.get(k))
                                                .and_then(Value::as_u64)
                                                .unwrap_or(0)
                                        };
                                        Some(Ok(TtsEvent::Done {
                                            input_tokens: n("prompt_tokens"),
                                            output_tokens: n("completion_tokens"),
                                        }))
                                    }
                                    _ => None,
                                },
                            };
                            std::future::ready(out)
                        })
                        .boxed_local()
                        .ended_with_done(me.ep.clone())
                }
            })
            .boxed_local()
    }
}
