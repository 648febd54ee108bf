//! The stream plumbing every stage shares, HTTP or WebSocket: opening a request lazily
//! ([`opened`]), a body as JSON ([`json_body`]) or as SSE JSON events ([`sse_json`]), the
//! two SSE shapes the providers share (a transcript as deltas then a final event,
//! [`sse_transcript`]; audio as base64 deltas then a usage event, [`sse_audio`]), a raw
//! PCM16 body ([`raw_pcm16`]), and the guards that turn a stream ending too early into an
//! error ([`SttStreamExt`], [`TtsStreamExt`]).

use std::future::Future;

use base64::Engine;
use futures_util::stream::{self, LocalBoxStream, StreamExt};
use liveagent_core::{ErrorKind, LiveError};
use serde_json::Value;

use crate::http::{Body, Endpoint, Pcm16Carry};
use crate::stage::{SttEvent, TtsEvent};

/// A stream that first awaits `open` (a request being sent, a socket being opened): its
/// error becomes the stream's only item, its stream the rest.
pub(crate) fn opened<T: 'static>(
    open: impl Future<Output = Result<LocalBoxStream<'static, Result<T, LiveError>>, LiveError>>
        + 'static,
) -> LocalBoxStream<'static, Result<T, LiveError>> {
    stream::once(open)
        .flat_map(|r| match r {
            Err(e) => stream::iter([Err(e)]).boxed_local(),
            Ok(s) => s,
        })
        .boxed_local()
}

/// The first of `keys` that `v.usage` has as a number, or 0.
pub(crate) fn usage(v: &Value, keys: &[&str]) -> u64 {
    let u = v.get("usage");
    keys.iter()
        .find_map(|k| u.and_then(|u| u.get(*k)).and_then(Value::as_u64))
        .unwrap_or(0)
}

/// The trimmed string field `key` of `v`, or empty.
pub(crate) fn text_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// A final transcript from an event or response with `text_key` and a `usage` in either
/// OpenAI's (`input_tokens`) or Mistral's (`prompt_tokens`) names.
pub(crate) fn final_transcript(v: &Value, text_key: &str) -> SttEvent {
    SttEvent::Final {
        text: text_of(v, text_key),
        input_tokens: usage(v, &["input_tokens", "prompt_tokens"]),
        output_tokens: usage(v, &["output_tokens", "completion_tokens"]),
    }
}

/// The names of one provider's SSE transcription events.
pub(crate) struct TranscriptShape {
    /// `transcript.text.delta` / `transcription.text.delta`.
    pub delta_type: &'static str,
    /// The delta's text field: `delta` / `text`.
    pub delta_key: &'static str,
    /// `transcript.text.done` / `transcription.done`.
    pub done_type: &'static str,
}

/// A streamed transcription: `Partial` per non-empty delta, `Final` at the done event, an
/// error if the body ends before it.
pub(crate) fn sse_transcript(
    ep: &Endpoint,
    body: Body,
    shape: TranscriptShape,
) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
    let mut done = false;
    sse_json(ep, body)
        .filter_map(move |v| {
            let out = match v {
                _ if done => None,
                Err(e) => Some(Err(e)),
                Ok(v) => match v.get("type").and_then(Value::as_str) {
                    Some(t) if t == shape.delta_type => v
                        .get(shape.delta_key)
                        .and_then(Value::as_str)
                        .filter(|d| !d.is_empty())
                        .map(|d| Ok(SttEvent::Partial(d.to_owned()))),
                    Some(t) if t == shape.done_type => {
                        done = true;
                        Some(Ok(final_transcript(&v, "text")))
                    }
                    _ => None,
                },
            };
            std::future::ready(out)
        })
        .boxed_local()
        .ended_with_final(ep.clone())
}

/// Decodes the base64 audio field `key` of an event into samples through `carry`.
pub(crate) fn audio_delta(
    ep: &Endpoint,
    v: &Value,
    keys: &[&str],
    carry: &mut dyn FnMut(&[u8]) -> Vec<i16>,
) -> Result<TtsEvent, LiveError> {
    let b64 = keys
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    match base64::engine::general_purpose::STANDARD.decode(b64) {
        Ok(bytes) => Ok(TtsEvent::Audio(carry(&bytes))),
        Err(e) => Err(ep.err(
            ErrorKind::Protocol,
            format!("the audio of an event is not base64: {e}"),
        )),
    }
}

/// A `speech.audio.delta` / `speech.audio.done` SSE body (OpenAI and Mistral): audio from
/// the first of `audio_keys` through `carry`, then `Done` with the usage.
pub(crate) fn sse_audio(
    ep: &Endpoint,
    body: Body,
    audio_keys: &'static [&'static str],
    mut carry: impl FnMut(&[u8]) -> Vec<i16> + 'static,
) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
    let ep2 = ep.clone();
    sse_json(ep, body)
        .filter_map(move |v| {
            let out = match v {
                Err(e) => Some(Err(e)),
                Ok(v) => match v.get("type").and_then(Value::as_str) {
                    Some("speech.audio.delta") => {
                        Some(audio_delta(&ep2, &v, audio_keys, &mut carry))
                    }
                    Some("speech.audio.done") => Some(Ok(TtsEvent::Done {
                        input_tokens: usage(&v, &["input_tokens", "prompt_tokens"]),
                        output_tokens: usage(&v, &["output_tokens", "completion_tokens"]),
                    })),
                    _ => None,
                },
            };
            std::future::ready(out)
        })
        .boxed_local()
        .ended_with_done(ep.clone())
}

/// Adds an error (`message`) at the end of `stream` when it ended without an item that
/// `is_last`, and drops anything after that item or an error.
fn ended_with<T: 'static>(
    stream: LocalBoxStream<'static, Result<T, LiveError>>,
    ep: Endpoint,
    is_last: fn(&T) -> bool,
    message: &'static str,
) -> LocalBoxStream<'static, Result<T, LiveError>> {
    let mut finished = false;
    stream
        .map(Some)
        .chain(stream::iter([None]))
        .filter_map(move |item| {
            let out = match item {
                _ if finished => None,
                Some(Ok(e)) => {
                    finished = is_last(&e);
                    Some(Ok(e))
                }
                Some(Err(e)) => {
                    finished = true;
                    Some(Err(e))
                }
                None => Some(Err(ep.err(ErrorKind::Connection, message))),
            };
            std::future::ready(out)
        })
        .boxed_local()
}

/// Stream helpers for speech-to-text streams.
pub(crate) trait SttStreamExt {
    /// Adds an error at the end when the stream ended without a final transcript, and
    /// drops anything after the final transcript or an error.
    fn ended_with_final(self, ep: Endpoint)
        -> LocalBoxStream<'static, Result<SttEvent, LiveError>>;
}

impl SttStreamExt for LocalBoxStream<'static, Result<SttEvent, LiveError>> {
    fn ended_with_final(
        self,
        ep: Endpoint,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        ended_with(
            self,
            ep,
            |e| matches!(e, SttEvent::Final { .. }),
            "the transcription stream ended without a final transcript",
        )
    }
}

/// Stream helpers for text-to-speech streams.
pub(crate) trait TtsStreamExt {
    /// Adds an error at the end when the stream ended without `Done`, and drops anything
    /// after `Done` or an error.
    fn ended_with_done(self, ep: Endpoint) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>>;
}

impl TtsStreamExt for LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
    fn ended_with_done(self, ep: Endpoint) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>> {
        ended_with(
            self,
            ep,
            |e| matches!(e, TtsEvent::Done { .. }),
            "the speech stream ended before it was done",
        )
    }
}

/// The transcript of an utterance too short to send: empty.
pub(crate) fn nothing_said() -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
    stream::iter([Ok(SttEvent::Final {
        text: String::new(),
        input_tokens: 0,
        output_tokens: 0,
    })])
    .boxed_local()
}

/// The body's SSE `data:` payloads as JSON, skipping `[DONE]`; an `error` object (or a
/// `type: "error"` event) becomes an error and ends the stream.
pub(crate) fn sse_json(
    ep: &Endpoint,
    body: Body,
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
                        let r = json_event(&ep2, data);
                        failed = r.is_err();
                        Some(r)
                    }
                }
            };
            std::future::ready(out)
        })
        .boxed_local()
}

/// One JSON event (an SSE `data:` payload or a WebSocket text message): an `error` object
/// or a `type: "error"` event is the provider's error; malformed JSON a protocol error.
pub(crate) fn json_event(ep: &Endpoint, data: &str) -> Result<Value, LiveError> {
    match serde_json::from_str::<Value>(data) {
        Ok(v)
            if v.get("error").is_some_and(|e| !e.is_null())
                || v.get("type").and_then(Value::as_str) == Some("error") =>
        {
            let (msg, code) = crate::http::error_text(data.as_bytes());
            // ElevenLabs' realtime errors name themselves in `message_type`.
            let code = code.or_else(|| {
                v.get("message_type")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            let kind = match code.as_deref() {
                Some("invalid_api_key" | "auth_error" | "unauthorized") => ErrorKind::Auth,
                Some("insufficient_quota" | "quota_exceeded") => ErrorKind::Quota,
                _ => ErrorKind::Provider,
            };
            let mut e = ep.err(kind, format!("failed mid-stream: {msg}"));
            if let Some(c) = code {
                e = e.with_code(ep.redact(&c));
            }
            Err(e)
        }
        Ok(v) => Ok(v),
        Err(e) => {
            let shown: String = data.chars().take(160).collect();
            Err(ep.err(
                ErrorKind::Protocol,
                format!("malformed event ({e}): {shown:?}"),
            ))
        }
    }
}

/// The whole body as one JSON value.
pub(crate) fn json_body(
    ep: Endpoint,
    body: Body,
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

/// A raw PCM16 body as audio events, then `Done` at its end.
pub(crate) fn raw_pcm16(
    ep: &Endpoint,
    body: Body,
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
