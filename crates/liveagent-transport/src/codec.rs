//! The sans-IO seam between a wire format and the actor pair: a [`Decoder`] turns each
//! WebSocket message from the remote side into [`Inbound`] items, an [`Encoder`] turns the
//! conversation's audio and events into [`OutFrame`]s. Neither touches a socket, so one
//! WebSocket actor pair ([`crate::peer`]) serves every transport, and codecs are tested as
//! pure round trips.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use liveagent_core::events::Id;
use liveagent_core::{AudioChunk, ConversationContext, EventFilter, LiveEvent};

/// One WebSocket message from the remote side, as the decoder sees it.
#[derive(Clone, Copy, Debug)]
pub enum WireIn<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame.
    Binary(&'a [u8]),
}

/// One WebSocket message for the remote side.
#[derive(Clone, Debug, PartialEq)]
pub enum OutFrame {
    /// A text frame (JSON for both transports).
    Text(String),
    /// A binary frame (PCM16 audio for the browser).
    Binary(Bytes),
    /// A binary frame of these samples as little-endian PCM16, encoded straight into the
    /// connection's write buffer (the agent's audio chunk is shared, not copied into a
    /// frame of its own).
    Pcm16(Arc<[i16]>),
}

/// How far the remote listener got through an item, as the remote reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlayState {
    /// Still playing; a progress report.
    Playing,
    /// Everything received for the item so far has been played.
    Drained,
    /// Playback was flushed after an `interrupted`: this is the final position.
    Flushed,
}

/// A page asks to resume a conversation (`hello` with `conversation_id` and
/// `resume_token`). `Debug` does not print the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The conversation.
    pub conversation_id: liveagent_store::ConversationId,
    /// The token from its `ready`.
    pub token: liveagent_store::ResumeToken,
}

impl std::fmt::Debug for ResumeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeRequest")
            .field("conversation_id", &self.conversation_id)
            .finish_non_exhaustive()
    }
}

/// The start of a call or page session: who connected and with which parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallStart {
    /// Twilio's stream id (`MZ…`); empty for the browser.
    pub stream_sid: String,
    /// Twilio's call id (`CA…`); empty for the browser.
    pub call_sid: String,
    /// Twilio's account id (`AC…`); empty for the browser.
    pub account_sid: String,
    /// Custom parameters (Twilio `<Parameter>`s, the page's query string).
    pub params: BTreeMap<String, String>,
}

/// What a decoder found in one message from the remote side.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// Microphone audio at the codec's input rate.
    Audio(AudioChunk),
    /// The browser's opening message: the rates it will send and wants to receive, and
    /// what to resume, if anything (see docs/transports.md).
    Hello {
        /// PCM16 rate of the binary frames the page sends.
        input_rate: u32,
        /// PCM16 rate the page wants to receive.
        output_rate: u32,
        /// A conversation to resume: its id and the token from an earlier `ready`, both
        /// checked for shape (not yet against the store).
        resume: Option<ResumeRequest>,
    },
    /// A Twilio `start`: the call's ids and custom parameters.
    Start(CallStart),
    /// A playback report in milliseconds of the item's audio heard.
    Played {
        /// The item (none: nothing was playing).
        item_id: Option<Id>,
        /// Milliseconds of the item played so far.
        played_ms: u64,
        /// What the report means.
        state: PlayState,
    },
    /// A Twilio `mark` echo (resolved by the encoder, which named it).
    Mark(String),
    /// Text the user typed.
    Text(String),
    /// A DTMF key press (`0`-`9`, `*`, `#`, `A`-`D`).
    Dtmf(String),
    /// The remote side ends the conversation (`{"type":"end"}`, Twilio `stop`).
    End,
    /// A well-formed message that needs no action (Twilio `connected`, keep-alives).
    Ignore,
}

/// Why a frame from the remote side was refused. The connection answers with the message
/// (where the protocol has a way to say it) and closes with [`close_code`](Self::close_code).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A message type this transport does not know.
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    /// A frame kind this transport does not take (binary on Twilio, say).
    #[error("unsupported frame: {0}")]
    Unsupported(String),
    /// Audio that cannot be right (odd byte count, bad base64, wrong encoding).
    #[error("bad audio: {0}")]
    BadAudio(String),
    /// A message in the wrong order (`media` before `start`, audio before `hello`...).
    #[error("out of order: {0}")]
    OutOfOrder(String),
}

impl FrameError {
    /// The WebSocket close code for this error: 1003 for unsupported data, 1007 for
    /// payloads that do not decode, 1008 for policy (order) violations.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Unsupported(_) => 1003,
            FrameError::OutOfOrder(_) => 1008,
            _ => 1007,
        }
    }
}

/// The receiving half of a codec: owned by the [`RemoteRecorder`](crate::peer::RemoteRecorder).
pub trait Decoder: Send + Unpin + 'static {
    /// Decodes one message. An `Err` ends the connection with a clear error.
    fn decode(&mut self, frame: WireIn<'_>) -> Result<Vec<Inbound>, FrameError>;

    /// Decodes one message into `out` (appended), the form the connection calls with one
    /// buffer for all its messages. The default calls [`decode`](Self::decode); a decoder
    /// overrides it to spare the per-message `Vec` on its hot path (the browser's audio
    /// frames).
    fn decode_into(&mut self, frame: WireIn<'_>, out: &mut Vec<Inbound>) -> Result<(), FrameError> {
        out.extend(self.decode(frame)?);
        Ok(())
    }
}

/// The sending half of a codec: owned by the [`RemotePlayer`](crate::peer::RemotePlayer).
/// Audio arrives already resampled to [`output_rate`](Self::output_rate).
pub trait Encoder: Unpin + 'static {
    /// The rate this encoder wants audio at.
    fn output_rate(&self) -> u32;

    /// Takes the rates the remote side asked for (browser `hello`); false when they are not
    /// supported.
    fn set_rates(&mut self, _input_rate: u32, _output_rate: u32) -> bool {
        false
    }

    /// The event kinds, besides `SynthesizedAudio` and `Interrupted`, that the encoder wants
    /// to forward to the remote side.
    fn events(&self) -> EventFilter {
        EventFilter::default()
    }

    /// The remote side started (Twilio `start`: the stream id to address frames to).
    fn on_start(&mut self, _start: &CallStart) {}

    /// The conversation's id and resume token (when it is stored), and whether it was
    /// resumed; called before [`started`](Self::started).
    fn set_conversation(&mut self, _id: &str, _resume_token: Option<&str>, _resumed: bool) {}

    /// Frames to send once the conversation started (the browser's `ready`).
    fn started(&mut self, _context: &ConversationContext, _out: &mut Vec<OutFrame>) {}

    /// Encodes `samples` (at [`output_rate`](Self::output_rate)) of assistant item `item`.
    fn audio(&mut self, item: &Id, response: Option<&Id>, samples: &[i16], out: &mut Vec<OutFrame>);

    /// [`audio`](Self::audio) for samples the caller shares (the agent's chunk when no
    /// resampling is needed): an encoder whose frames are the samples themselves can queue
    /// them as [`OutFrame::Pcm16`] without a copy. The default calls `audio`.
    fn audio_shared(
        &mut self,
        item: &Id,
        response: Option<&Id>,
        samples: &Arc<[i16]>,
        out: &mut Vec<OutFrame>,
    ) {
        self.audio(item, response, samples, out);
    }

    /// The current item got all its audio: flush whatever is held back.
    fn item_done(&mut self, _out: &mut Vec<OutFrame>) {}

    /// Barge-in: tell the remote side to drop queued audio now.
    fn interrupted(&mut self, item: Option<&Id>, out: &mut Vec<OutFrame>);

    /// True when the played position is known as soon as [`interrupted`](Self::interrupted)
    /// was sent (Twilio marks); false when the remote reports it ([`PlayState::Flushed`]).
    fn immediate_cut(&self) -> bool;

    /// Resolves a mark echo to `(item, played_ms, drained)`; `None` for unknown or cleared
    /// marks.
    fn mark(&mut self, _name: &str) -> Option<(Id, u64, bool)> {
        None
    }

    /// Forwards a conversation event to the remote side (transcripts, tool calls...).
    fn event(&mut self, _event: &LiveEvent, _out: &mut Vec<OutFrame>) {}

    /// A frame telling the remote side about an error before the connection closes.
    fn error(&mut self, _code: &str, _message: &str) -> Option<OutFrame> {
        None
    }
}
