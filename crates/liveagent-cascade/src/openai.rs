//! OpenAI stages: [`OpenAiStt`] (`POST /v1/audio/transcriptions`, `stream=true` for partial
//! transcripts) and [`OpenAiTts`] (`POST /v1/audio/speech`, 24 kHz PCM streamed as raw
//! bytes or as `speech.audio.delta` events). The LLM stage for OpenAI (and any server that
//! speaks Chat Completions) is [`ChatLlm`](crate::ChatLlm).
//!
//! Keys come from `OPENAI_API_KEY` unless given; they are sent as a Bearer token and never
//! appear in `Debug` output or errors.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use liveagent_core::{ErrorKind, LiveError, Secret};
use serde_json::{json, Value};

use crate::http::{wav, Endpoint, Multipart, Pcm16Carry};
use crate::stage::{Stt, SttCapabilities, SttEvent, Tts, TtsCapabilities, TtsEvent};

/// OpenAI's API base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// OpenAI speech-to-text (`gpt-4o-mini-transcribe`, `gpt-4o-transcribe`, `whisper-1`...).
///
/// ```
/// use liveagent_cascade::openai::OpenAiStt;
/// let stt = OpenAiStt::new("gpt-4o-mini-transcribe").language("en");
/// ```
#[derive(Clone, Debug)]
pub struct OpenAiStt {
    model: Arc<str>,
    base_url: Arc<str>,
    language: Option<Arc<str>>,
    prompt: Option<Arc<str>>,
    ep: Endpoint,
}

impl OpenAiStt {
    /// Transcription with `model`, key from `OPENAI_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>) -> Self {
        OpenAiStt {
            model: model.into(),
            base_url: OPENAI_BASE_URL.into(),
            language: None,
            prompt: None,
            ep: Endpoint {
                source: "openai-stt",
                key: Secret::from_env("OPENAI_API_KEY"),
                key_header: None,
                timeout: Duration::from_secs(30),
            },
        }
    }

    /// The API base URL (`…/v1`).
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

    /// A prompt that guides the transcription (names, jargon).
    pub fn prompt(mut self, prompt: impl Into<Arc<str>>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// How long to wait for the response and for each piece of it (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.ep.timeout = timeout;
        self
    }

    fn streams(&self) -> bool {
        // "Streaming is not supported for the whisper-1 model and will be ignored."
        !self.model.starts_with("whisper")
    }
}

impl Stt for OpenAiStt {
    fn provider(&self) -> &'static str {
        "openai"
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
        let url = format!("{}/audio/transcriptions", self.base_url);
        let open = async move {
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
            let (body, rtype) = me
                .ep
                .send(&url, &ctype, "text/event-stream, application/json", body)
                .await?;
            Ok::<_, LiveError>((me, body, rtype))
        };
        stream::once(open)
            .flat_map(|opened| match opened {
                Err(e) => stream::iter([Err(e)]).boxed_local(),
                Ok((me, body, rtype)) if rtype.starts_with("text/event-stream") => {
                    let ep = me.ep.clone();
                    let mut done = false;
                    sse_json(&ep, body)
                        .filter_map(move |v| {
                            let out = match v {
                                _ if done => None,
                                Err(e) => Some(Err(e)),
                                Ok(v) => match v.get("type").and_then(Value::as_str) {
                                    Some("transcript.text.delta") => v
                                        .get("delta")
                                        .and_then(Value::as_str)
                                        .filter(|d| !d.is_empty())
                                        .map(|d| Ok(SttEvent::Partial(d.to_owned()))),
                                    Some("transcript.text.done") => {
                                        done = true;
                                        Some(Ok(final_event(&v)))
                                    }
                                    _ => None,
                                },
                            };
                            std::future::ready(out)
                        })
                        .boxed_local()
                        .ended_with_final(me.ep.clone())
                }
                Ok((me, body, _)) => json_body(me.ep.clone(), body)
                    .map(|v| v.map(|v| final_event(&v)))
                    .boxed_local(),
            })
            .boxed_local()
    }
}

fn final_event(v: &Value) -> SttEvent {
    let usage = v.get("usage");
    let n = |k: &str| {
        usage
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    SttEvent::Final {
        text: v
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        input_tokens: n("input_tokens").max(n("prompt_tokens")),
        output_tokens: n("output_tokens").max(n("completion_tokens")),
    }
}

/// Stream helpers shared by the providers.
pub(crate) trait SttStreamExt {
    /// Adds an error at the end when the stream ended without a final transcript.
    fn ended_with_final(self, ep: Endpoint)
        -> LocalBoxStream<'static, Result<SttEvent, LiveError>>;
}

impl SttStreamExt for LocalBoxStream<'static, Result<SttEvent, LiveError>> {
    fn ended_with_final(
        self,
        ep: Endpoint,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        let mut finished = false;
        self.map(Some)
            .chain(stream::iter([None]))
            .filter_map(move |item| {
                let out = match item {
                    Some(Ok(e)) => {
                        finished |= matches!(e, SttEvent::Final { .. });
                        Some(Ok(e))
                    }
                    Some(Err(e)) => {
                        finished = true;
                        Some(Err(e))
                    }
                    None if !finished => Some(Err(ep.err(
                        ErrorKind::Connection,
                        "the transcription stream ended without a final transcript",
                    ))),
                    None => None,
                };
                std::future::ready(out)
            })
            .boxed_local()
    }
}

/// The body's SSE `data:` payloads as JSON, skipping `[DONE]`; an `error` object (or a
/// `type: "error"` event) becomes an error and ends the stream.
pub(crate) fn sse_json(
    ep: &Endpoint,
    body: crate::http::Body,
) -> LocalBoxStream<'static, Result<Value, LiveError>> {
    let ep2 = ep.clone();
    let mut failed = false;
    ep.events(body)
        .filter_map(move |ev| {
            let out = match ev {
                _ if failed => None,
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
                Ok(ev) => {
                    let data = ev.data.trim();
                    if data.is_empty() || data == "[DONE]" {
                        None
                    } else {
                        match serde_json::from_str::<Value>(data) {
                            Ok(v)
                                if v.get("error").is_some()
                                    || v.get("type").and_then(Value::as_str) == Some("error") =>
                            {
                                failed = true;
                                let (msg, code) = crate::http::error_text(data.as_bytes());
                                let mut e = ep2
                                    .err(ErrorKind::Provider, format!("failed mid-stream: {msg}"));
                                if let Some(c) = code {
                                    e = e.with_code(ep2.redact(&c));
                                }
                                Some(Err(e))
                            }
                            Ok(v) => Some(Ok(v)),
                            Err(e) => {
                                failed = true;
                                let shown: String = data.chars().take(160).collect();
                                Some(Err(ep2.err(
                                    ErrorKind::Protocol,
                                    format!("malformed event ({e}): {shown:?}"),
                                )))
                            }
                        }
                    }
                }
            };
            std::future::ready(out)
        })
        .boxed_local()
}

/// The whole body as one JSON value.
pub(crate) fn json_body(
    ep: Endpoint,
    body: crate::http::Body,
) -> LocalBoxStream<'static, Result<Value, LiveError>> {
    let bytes = ep.bytes(body);
    stream::once(async move {
        let chunks: Vec<Result<bytes::Bytes, LiveError>> = bytes.collect().await;
        let mut all = Vec::new();
        for c in chunks {
            all.extend_from_slice(&c?);
            if all.len() > 16 << 20 {
                return Err(ep.err(ErrorKind::Protocol, "response body larger than 16 MiB"));
            }
        }
        serde_json::from_slice::<Value>(&all).map_err(|e| {
            let shown: String = String::from_utf8_lossy(&all).chars().take(160).collect();
            ep.err(
                ErrorKind::Protocol,
                format!("malformed response ({e}): {shown:?}"),
            )
        })
    })
    .boxed_local()
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
    base_url: Arc<str>,
    instructions: Option<Arc<str>>,
    speed: Option<f32>,
    sse: bool,
    ep: Endpoint,
}

impl OpenAiTts {
    /// Speech with `model` and `voice`, key from `OPENAI_API_KEY`.
    pub fn new(model: impl Into<Arc<str>>, voice: impl Into<Arc<str>>) -> Self {
        OpenAiTts {
            model: model.into(),
            voice: voice.into(),
            base_url: OPENAI_BASE_URL.into(),
            instructions: None,
            speed: None,
            sse: false,
            ep: Endpoint {
                source: "openai-tts",
                key: Secret::from_env("OPENAI_API_KEY"),
                key_header: None,
                timeout: Duration::from_secs(30),
            },
        }
    }

    /// The API base URL (`…/v1`).
    pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
        self.base_url = url.as_ref().trim_end_matches('/').into();
        self
    }

    /// The API key.
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.ep.key = Some(key.into());
        self
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

    /// How long to wait for the response and for each piece of it (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.ep.timeout = timeout;
        self
    }
}

impl Tts for OpenAiTts {
    fn provider(&self) -> &'static str {
        "openai"
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
        let url = format!("{}/audio/speech", self.base_url);
        let open = async move {
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
            let (body, rtype) = me.ep.send(&url, "application/json", accept, bytes).await?;
            Ok::<_, LiveError>((me, body, rtype))
        };
        stream::once(open)
            .flat_map(|opened| match opened {
                Err(e) => stream::iter([Err(e)]).boxed_local(),
                // Decide by what came back: OpenAI-compatible servers ignore stream_format.
                Ok((me, body, rtype)) if rtype.starts_with("text/event-stream") => {
                    let mut carry = Pcm16Carry::default();
                    let ep = me.ep.clone();
                    sse_json(&ep, body)
                        .filter_map(move |v| {
                            let out = match v {
                                Err(e) => Some(Err(e)),
                                Ok(v) => match v.get("type").and_then(Value::as_str) {
                                    Some("speech.audio.delta") => {
                                        let b64 = v
                                            .get("audio")
                                            .or_else(|| v.get("delta"))
                                            .and_then(Value::as_str)
                                            .unwrap_or("");
                                        match base64::engine::general_purpose::STANDARD.decode(b64)
                                        {
                                            Ok(bytes) => {
                                                Some(Ok(TtsEvent::Audio(carry.push(&bytes))))
                                            }
                                            Err(e) => Some(Err(me.ep.err(
                                                ErrorKind::Protocol,
                                                format!("audio delta is not base64: {e}"),
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
                                            input_tokens: n("input_tokens"),
                                            output_tokens: n("output_tokens"),
                                        }))
                                    }
                                    _ => None,
                                },
                            };
                            std::future::ready(out)
                        })
                        .boxed_local()
                        .ended_with_done(ep)
                }
                Ok((me, body, _)) => raw_pcm16(&me.ep, body),
            })
            .boxed_local()
    }
}

/// A raw PCM16 body as audio events, then `Done` at its end.
pub(crate) fn raw_pcm16(
    ep: &Endpoint,
    body: crate::http::Body,
) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
    let mut carry = Pcm16Carry::default();
    ep.bytes(body)
        .map(move |b| b.map(|b| TtsEvent::Audio(carry.push(&b))))
        .chain(stream::iter([Ok(TtsEvent::Done {
            input_tokens: 0,
            output_tokens: 0,
        })]))
        .scan(false, |failed, item| {
            // Nothing after an error (not even the closing Done).
            let out = if *failed { None } else { Some(item) };
            if matches!(out, Some(Err(_))) {
                *failed = true;
            }
            std::future::ready(Some(out))
        })
        .filter_map(std::future::ready)
        .boxed_local()
}

/// Stream helpers for text-to-speech streams.
pub(crate) trait TtsStreamExt {
    /// Adds an error at the end when the stream ended without `Done`.
    fn ended_with_done(self, ep: Endpoint) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>>;
}

impl TtsStreamExt for LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
    fn ended_with_done(self, ep: Endpoint) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        let mut finished = false;
        self.map(Some)
            .chain(stream::iter([None]))
            .filter_map(move |item| {
                let out = match item {
                    _ if finished => None,
                    Some(Ok(e)) => {
                        finished = matches!(e, TtsEvent::Done { .. });
                        Some(Ok(e))
                    }
                    Some(Err(e)) => {
                        finished = true;
                        Some(Err(e))
                    }
                    None => Some(Err(ep.err(
                        ErrorKind::Connection,
                        "the speech stream ended before it was done",
                    ))),
                };
                std::future::ready(out)
            })
            .boxed_local()
    }
}
