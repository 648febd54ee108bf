//! [`BrowserCodec`]: the browser protocol as a sans-IO codec (see [`super::wire`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use liveagent_core::events::Id;
use liveagent_core::{
    AudioChunk, ConversationContext, EventFilter, EventKind, LiveEvent, ResponseStatus,
};

use super::wire::{
    ClientMessage, PlayStateWire, Role, ServerMessage, MAX_TEXT_BYTES, PROTOCOL_VERSION, RATES,
};
use crate::codec::{
    CallStart, Decoder, Encoder, FrameError, Inbound, OutFrame, PlayState, ResumeRequest, WireIn,
};
use liveagent_store::{ConversationId, ResumeToken};

/// The browser protocol: PCM16 binary frames both ways, JSON text frames for everything
/// else. Split into its halves with [`split`](Self::split).
#[derive(Debug, Default)]
pub struct BrowserCodec {
    params: BTreeMap<String, String>,
    conversation_id: String,
}

impl BrowserCodec {
    /// A codec whose `hello` start carries `params` (e.g. the page's query string) and
    /// whose `ready` names `conversation_id`.
    pub fn new(params: BTreeMap<String, String>, conversation_id: impl Into<String>) -> Self {
        BrowserCodec {
            params,
            conversation_id: conversation_id.into(),
        }
    }

    /// The decoder and the encoder.
    pub fn split(self) -> (BrowserDecoder, BrowserEncoder) {
        (
            BrowserDecoder {
                params: self.params,
                input_rate: None,
                output_rate: 24_000,
            },
            BrowserEncoder {
                conversation_id: self.conversation_id,
                resume_token: None,
                resumed: false,
                output_rate: 24_000,
                input_rate: 24_000,
                current: None,
            },
        )
    }
}

/// The page → server half.
#[derive(Debug)]
pub struct BrowserDecoder {
    params: BTreeMap<String, String>,
    input_rate: Option<u32>,
    output_rate: u32,
}

fn malformed(e: impl std::fmt::Display) -> FrameError {
    FrameError::Malformed(e.to_string())
}

impl BrowserDecoder {
    /// A binary frame: PCM16 at the rate agreed in `hello`.
    fn audio(&self, bytes: &[u8]) -> Result<Inbound, FrameError> {
        let Some(rate) = self.input_rate else {
            return Err(FrameError::OutOfOrder("audio before hello".into()));
        };
        if bytes.len() % 2 == 1 {
            return Err(FrameError::BadAudio(format!(
                "PCM16 frames have an even byte count, got {}",
                bytes.len()
            )));
        }
        Ok(Inbound::Audio(AudioChunk::from_le_bytes(bytes, rate)))
    }
}

impl Decoder for BrowserDecoder {
    fn decode_into(&mut self, frame: WireIn<'_>, out: &mut Vec<Inbound>) -> Result<(), FrameError> {
        // Audio frames (50 a second per page) skip the `Vec` of `decode`.
        match frame {
            WireIn::Binary(bytes) => out.push(self.audio(bytes)?),
            text => out.extend(self.decode(text)?),
        }
        Ok(())
    }

    fn decode(&mut self, frame: WireIn<'_>) -> Result<Vec<Inbound>, FrameError> {
        let text = match frame {
            WireIn::Binary(bytes) => return Ok(vec![self.audio(bytes)?]),
            WireIn::Text(t) => t,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(malformed)?;
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .ok_or_else(|| FrameError::Malformed("no \"type\"".into()))?;
        if !matches!(kind, "hello" | "played" | "text" | "end" | "ping") {
            return Err(FrameError::UnknownType(kind.chars().take(64).collect()));
        }
        let msg: ClientMessage = serde_json::from_value(value).map_err(malformed)?;
        Ok(match msg {
            ClientMessage::Hello {
                protocol,
                input_rate,
                output_rate,
                resume_token,
                conversation_id,
                params,
            } => {
                if self.input_rate.is_some() {
                    return Err(FrameError::OutOfOrder("a second hello".into()));
                }
                if let Some(p) = protocol.filter(|p| *p != PROTOCOL_VERSION) {
                    return Err(FrameError::Unsupported(format!(
                        "protocol {p} (this server speaks {PROTOCOL_VERSION})"
                    )));
                }
                for r in [input_rate, output_rate] {
                    if !RATES.contains(&r) {
                        return Err(FrameError::Unsupported(format!(
                            "sample rate {r} (use one of {RATES:?})"
                        )));
                    }
                }
                let resume = match (resume_token, conversation_id) {
                    (None, None) => None,
                    (Some(token), Some(id)) => Some(ResumeRequest {
                        conversation_id: ConversationId::parse(&id).map_err(malformed)?,
                        token: ResumeToken::parse(&token).map_err(malformed)?,
                    }),
                    _ => {
                        return Err(FrameError::Malformed(
                            "resume_token and conversation_id go together".into(),
                        ))
                    }
                };
                if params.len() > 32 || params.iter().any(|(k, v)| k.len() + v.len() > 512) {
                    return Err(FrameError::Malformed("too many or too long params".into()));
                }
                self.input_rate = Some(input_rate);
                self.output_rate = output_rate;
                let mut all = self.params.clone();
                all.extend(params);
                vec![
                    Inbound::Hello {
                        input_rate,
                        output_rate,
                        resume,
                    },
                    Inbound::Start(CallStart {
                        params: all,
                        ..Default::default()
                    }),
                ]
            }
            ClientMessage::Played {
                item_id,
                samples,
                state,
            } => {
                if self.input_rate.is_none() {
                    return Err(FrameError::OutOfOrder("played before hello".into()));
                }
                vec![Inbound::Played {
                    item_id: item_id.map(Id::from),
                    played_ms: samples.saturating_mul(1000) / self.output_rate as u64,
                    state: match state {
                        PlayStateWire::Playing => PlayState::Playing,
                        PlayStateWire::Drained => PlayState::Drained,
                        PlayStateWire::Flushed => PlayState::Flushed,
                    },
                }]
            }
            ClientMessage::Text { text } => {
                if text.len() > MAX_TEXT_BYTES {
                    return Err(FrameError::Malformed(format!(
                        "text longer than {MAX_TEXT_BYTES} bytes"
                    )));
                }
                if self.input_rate.is_none() {
                    return Err(FrameError::OutOfOrder("text before hello".into()));
                }
                vec![Inbound::Text(text)]
            }
            ClientMessage::End => vec![Inbound::End],
            ClientMessage::Ping => vec![Inbound::Ignore],
        })
    }
}

/// The server → page half.
#[derive(Debug)]
pub struct BrowserEncoder {
    conversation_id: String,
    resume_token: Option<String>,
    resumed: bool,
    output_rate: u32,
    input_rate: u32,
    current: Option<Id>,
}

impl BrowserEncoder {
    fn push(out: &mut Vec<OutFrame>, msg: ServerMessage) {
        out.push(OutFrame::Text(msg.to_json()));
    }

    /// The `audio` message that announces `item` before its first binary frame.
    fn announce(&mut self, item: &Id, response: Option<&Id>, out: &mut Vec<OutFrame>) {
        if self.current.as_ref() != Some(item) {
            self.current = Some(item.clone());
            Self::push(
                out,
                ServerMessage::Audio {
                    item_id: item.to_string(),
                    response_id: response.map(|r| r.to_string()),
                },
            );
        }
    }
}

/// The `error` frame the browser protocol closes with.
pub(crate) fn error_frame(code: &str, message: &str) -> Option<OutFrame> {
    Some(OutFrame::Text(
        ServerMessage::Error {
            code: code.into(),
            message: message.into(),
            fatal: true,
        }
        .to_json(),
    ))
}

impl Encoder for BrowserEncoder {
    fn output_rate(&self) -> u32 {
        self.output_rate
    }

    fn set_rates(&mut self, input_rate: u32, output_rate: u32) -> bool {
        if RATES.contains(&input_rate) && RATES.contains(&output_rate) {
            self.input_rate = input_rate;
            self.output_rate = output_rate;
            true
        } else {
            false
        }
    }

    fn events(&self) -> EventFilter {
        EventFilter::kinds([
            EventKind::InputTranscriptChunk,
            EventKind::OutputTranscriptChunk,
            EventKind::ModelMessageChunk,
            EventKind::SpeechStarted,
            EventKind::SpeechStopped,
            EventKind::ResponseStarted,
            EventKind::ToolCallRequested,
            EventKind::ToolResult,
            EventKind::ErrorEvent,
            EventKind::SessionOpened,
            EventKind::SessionReconnecting,
            EventKind::SessionReconnected,
        ])
    }

    fn set_conversation(&mut self, id: &str, resume_token: Option<&str>, resumed: bool) {
        self.conversation_id = id.to_owned();
        self.resume_token = resume_token.map(str::to_owned);
        self.resumed = resumed;
    }

    fn started(&mut self, _context: &ConversationContext, out: &mut Vec<OutFrame>) {
        // The page's rates were agreed in `hello`: the server resamples both ways.
        Self::push(
            out,
            ServerMessage::Ready {
                protocol: PROTOCOL_VERSION,
                conversation_id: self.conversation_id.clone(),
                input_rate: self.input_rate,
                output_rate: self.output_rate,
                resume_token: self.resume_token.clone(),
                resumed: self.resumed,
            },
        );
    }

    fn audio(
        &mut self,
        item: &Id,
        response: Option<&Id>,
        samples: &[i16],
        out: &mut Vec<OutFrame>,
    ) {
        self.announce(item, response, out);
        let mut bytes = Vec::new();
        liveagent_core::audio::extend_le_bytes(samples, &mut bytes);
        out.push(OutFrame::Binary(Bytes::from(bytes)));
    }

    fn audio_shared(
        &mut self,
        item: &Id,
        response: Option<&Id>,
        samples: &std::sync::Arc<[i16]>,
        out: &mut Vec<OutFrame>,
    ) {
        self.announce(item, response, out);
        // The frame is the chunk's samples, encoded by the connection's writer.
        out.push(OutFrame::Pcm16(samples.clone()));
    }

    fn item_done(&mut self, out: &mut Vec<OutFrame>) {
        if let Some(item) = self.current.take() {
            Self::push(
                out,
                ServerMessage::AudioDone {
                    item_id: item.to_string(),
                },
            );
        }
    }

    fn interrupted(&mut self, item: Option<&Id>, out: &mut Vec<OutFrame>) {
        self.current = None;
        Self::push(
            out,
            ServerMessage::Interrupted {
                item_id: item.map(|i| i.to_string()),
            },
        );
    }

    fn immediate_cut(&self) -> bool {
        false
    }

    fn event(&mut self, event: &LiveEvent, out: &mut Vec<OutFrame>) {
        let msg = match event {
            LiveEvent::InputTranscriptChunk(t) => ServerMessage::Transcript {
                role: Role::User,
                item_id: t.item_id.as_ref().map(|i| i.to_string()),
                text: t.text.to_string(),
                is_final: t.is_final,
            },
            LiveEvent::OutputTranscriptChunk(t) => ServerMessage::Transcript {
                role: Role::Assistant,
                item_id: t.item_id.as_ref().map(|i| i.to_string()),
                text: t.text.to_string(),
                is_final: t.is_final,
            },
            LiveEvent::ModelMessageChunk(m) => ServerMessage::Text {
                item_id: m.item_id.to_string(),
                text: m.text.to_string(),
            },
            LiveEvent::SpeechStarted(_) => ServerMessage::SpeechStarted,
            LiveEvent::SpeechStopped(_) => ServerMessage::SpeechStopped,
            LiveEvent::ResponseStarted(r) => ServerMessage::ResponseStarted {
                response_id: r.response_id.to_string(),
            },
            LiveEvent::ResponseDone(r) => ServerMessage::ResponseDone {
                response_id: r.response_id.to_string(),
                status: match r.status {
                    ResponseStatus::Completed => "completed",
                    ResponseStatus::Cancelled => "cancelled",
                    ResponseStatus::Incomplete => "incomplete",
                    ResponseStatus::Failed => "failed",
                }
                .into(),
            },
            LiveEvent::ToolCallRequested(r) => {
                for c in &r.calls {
                    Self::push(
                        out,
                        ServerMessage::ToolCall {
                            call_id: c.call_id.to_string(),
                            name: c.name.to_string(),
                            arguments: c.arguments.clone(),
                        },
                    );
                }
                return;
            }
            LiveEvent::ToolResult(r) => ServerMessage::ToolResult {
                call_id: r.call_id.to_string(),
                name: r.name.to_string(),
                ok: r.output.is_ok(),
                output: match &r.output {
                    Ok(v) => v.clone(),
                    Err(e) => serde_json::Value::String(e.clone()),
                },
            },
            LiveEvent::ErrorEvent(e) => ServerMessage::Error {
                code: format!("{:?}", e.error.kind).to_lowercase(),
                message: format!("{}: {}", e.source, e.error),
                fatal: false,
            },
            LiveEvent::SessionOpened(_) => ServerMessage::Session {
                state: "opened".into(),
                detail: None,
            },
            LiveEvent::SessionReconnecting(r) => ServerMessage::Session {
                state: "reconnecting".into(),
                detail: Some(format!("attempt {}: {}", r.attempt, r.reason)),
            },
            LiveEvent::SessionReconnected(r) => ServerMessage::Session {
                state: "reconnected".into(),
                detail: Some(format!("after {} ms", r.outage_ms)),
            },
            LiveEvent::SessionClosed(c) => ServerMessage::Session {
                state: "closed".into(),
                detail: Some(c.reason.clone()),
            },
            _ => return,
        };
        Self::push(out, msg);
    }

    fn error(&mut self, code: &str, message: &str) -> Option<OutFrame> {
        error_frame(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> BrowserDecoder {
        BrowserCodec::default().split().0
    }

    #[test]
    fn audio_needs_a_hello_first() {
        let mut d = decoder();
        assert!(matches!(
            d.decode(WireIn::Binary(&[0, 0])),
            Err(FrameError::OutOfOrder(_))
        ));
        let items = d
            .decode(WireIn::Text(
                r#"{"type":"hello","protocol":1,"input_rate":16000,"output_rate":48000}"#,
            ))
            .unwrap();
        assert!(matches!(
            items[0],
            Inbound::Hello {
                input_rate: 16000,
                output_rate: 48000,
                ..
            }
        ));
        assert!(matches!(items[1], Inbound::Start(_)));
        match &d.decode(WireIn::Binary(&[1, 0, 255, 255])).unwrap()[0] {
            Inbound::Audio(a) => {
                assert_eq!(a.sample_rate, 16000);
                assert_eq!(&a.samples[..], &[1, -1]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            d.decode(WireIn::Binary(&[1, 2, 3])),
            Err(FrameError::BadAudio(_))
        ));
    }

    #[test]
    fn played_samples_become_milliseconds() {
        let mut d = decoder();
        d.decode(WireIn::Text(
            r#"{"type":"hello","input_rate":24000,"output_rate":48000}"#,
        ))
        .unwrap();
        let items = d
            .decode(WireIn::Text(
                r#"{"type":"played","item_id":"it_1","samples":48000,"state":"flushed"}"#,
            ))
            .unwrap();
        assert_eq!(
            items,
            vec![Inbound::Played {
                item_id: Some("it_1".into()),
                played_ms: 1000,
                state: PlayState::Flushed
            }]
        );
    }

    #[test]
    fn hostile_frames_are_refused_with_reasons() {
        let mut d = decoder();
        for bad in [
            "not json",
            "[]",
            r#"{"no":"type"}"#,
            r#"{"type":"launch_missiles"}"#,
            r#"{"type":"hello","input_rate":12345,"output_rate":24000}"#,
            r#"{"type":"hello","input_rate":"x","output_rate":24000}"#,
            r#"{"type":"hello","input_rate":24000,"output_rate":24000,"extra":1}"#,
            r#"{"type":"hello","protocol":2,"input_rate":24000,"output_rate":24000}"#,
            r#"{"type":"hello","input_rate":24000,"output_rate":24000,"resume_token":"abc"}"#,
            r#"{"type":"hello","input_rate":24000,"output_rate":24000,"resume_token":"0123456789abcdef0123","conversation_id":"a b"}"#,
            r#"{"type":"hello","input_rate":24000,"output_rate":24000,"resume_token":"short","conversation_id":"c1"}"#,
            r#"{"type":"hello","input_rate":24000,"output_rate":24000,"conversation_id":"c1"}"#,
            r#"{"type":"played","samples":-1,"state":"playing"}"#,
        ] {
            assert!(d.decode(WireIn::Text(bad)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn encoder_announces_items_before_their_audio() {
        let (_, mut e) = BrowserCodec::default().split();
        let mut out = Vec::new();
        let item: Id = "it_9".into();
        e.audio(&item, None, &[1, 2], &mut out);
        e.audio(&item, None, &[3], &mut out);
        e.interrupted(Some(&item), &mut out);
        assert_eq!(out.len(), 4);
        assert!(
            matches!(&out[0], OutFrame::Text(t) if t.contains(r#""type":"audio""#) && t.contains("it_9"))
        );
        assert_eq!(out[1], OutFrame::Binary(Bytes::from_static(&[1, 0, 2, 0])));
        assert!(matches!(&out[3], OutFrame::Text(t) if t.contains("interrupted")));
    }

    #[test]
    fn shared_audio_is_announced_then_queued_as_the_chunk_itself() {
        let (_, mut e) = BrowserCodec::default().split();
        let mut out = Vec::new();
        let (a, b): (Id, Id) = ("it_1".into(), "it_2".into());
        let chunk: std::sync::Arc<[i16]> = std::sync::Arc::from([1i16, 2]);
        e.audio_shared(&a, None, &chunk, &mut out);
        e.audio_shared(&a, None, &chunk, &mut out);
        e.audio(&b, None, &[3], &mut out);
        e.audio_shared(&a, None, &chunk, &mut out);
        assert_eq!(out.len(), 7, "{out:?}");
        assert!(matches!(&out[0], OutFrame::Text(t) if t.contains("it_1")));
        assert!(matches!(&out[1], OutFrame::Pcm16(s) if std::sync::Arc::ptr_eq(s, &chunk)));
        assert!(matches!(&out[2], OutFrame::Pcm16(_)));
        assert!(matches!(&out[3], OutFrame::Text(t) if t.contains("it_2")));
        assert_eq!(out[4], OutFrame::Binary(Bytes::from_static(&[3, 0])));
        // Back to the first item: announced again.
        assert!(matches!(&out[5], OutFrame::Text(t) if t.contains("it_1")));
        assert!(matches!(&out[6], OutFrame::Pcm16(_)));
    }

    #[test]
    fn decode_into_appends_what_decode_returns() {
        let mut d = decoder();
        let mut items = Vec::new();
        d.decode_into(
            WireIn::Text(r#"{"type":"hello","input_rate":24000,"output_rate":24000}"#),
            &mut items,
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        d.decode_into(WireIn::Binary(&[2, 0, 254, 255]), &mut items)
            .unwrap();
        match &items[2] {
            Inbound::Audio(a) => assert_eq!(&a.samples[..], &[2, -2]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            d.decode_into(WireIn::Binary(&[1]), &mut items),
            Err(FrameError::BadAudio(_))
        ));
        assert_eq!(items.len(), 3);
    }
}
