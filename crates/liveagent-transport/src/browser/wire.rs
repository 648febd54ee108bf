//! The browser WebSocket protocol's JSON messages (protocol version 1), as serde types.
//! docs/transports.md describes the protocol in full; binary frames carry PCM16 mono
//! little-endian audio at the rates agreed in `hello`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Sample rates a page may ask for (both directions).
pub const RATES: &[u32] = &[8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// Longest text message a page may send, in bytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;

/// A JSON message from the page.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message: the page's rates. Audio is refused before it.
    Hello {
        /// Protocol version (1).
        #[serde(default)]
        protocol: Option<u32>,
        /// Rate of the PCM16 binary frames the page sends.
        input_rate: u32,
        /// Rate of the PCM16 binary frames the page wants.
        output_rate: u32,
        /// Resume an earlier conversation: the `resume_token` of its `ready` (with
        /// `conversation_id`). Honoured when the transport has a conversation store;
        /// refused with `resume_unsupported` otherwise.
        #[serde(default)]
        resume_token: Option<String>,
        /// The `conversation_id` of the conversation to resume (with `resume_token`).
        #[serde(default)]
        conversation_id: Option<String>,
        /// Extra string parameters for the agent factory.
        #[serde(default)]
        params: BTreeMap<String, String>,
    },
    /// How much of an item the page played.
    Played {
        /// The item (null when nothing was queued, e.g. answering an `interrupted`).
        #[serde(default)]
        item_id: Option<String>,
        /// Samples of the item played so far, at the output rate.
        samples: u64,
        /// `playing`, `drained` or `flushed`.
        state: PlayStateWire,
    },
    /// Text the user typed: added to the conversation and answered.
    Text {
        /// The text.
        text: String,
    },
    /// The page ends the conversation.
    End,
    /// Keep-alive; answered with `pong`.
    Ping,
}

/// `played.state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlayStateWire {
    /// A progress report while playing.
    Playing,
    /// The page played everything it had of the item.
    Drained,
    /// The page flushed its queue after `interrupted`: the final position.
    Flushed,
}

/// Who said a transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person at the page.
    User,
    /// The agent.
    Assistant,
}

/// A JSON message to the page.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The conversation started; the rates are the ones agreed.
    Ready {
        /// Protocol version (1).
        protocol: u32,
        /// This conversation's id.
        conversation_id: String,
        /// Rate of the audio the server expects from the page.
        input_rate: u32,
        /// Rate of the audio the server sends.
        output_rate: u32,
        /// The token to present (with `conversation_id`) in the `hello` of a new
        /// connection to resume this conversation on any instance; null when the
        /// transport has no conversation store. Keep it secret.
        resume_token: Option<String>,
        /// True when this connection resumed an earlier conversation.
        resumed: bool,
    },
    /// The binary frames that follow belong to this assistant item.
    Audio {
        /// The assistant item.
        item_id: String,
        /// Its response, when known.
        response_id: Option<String>,
    },
    /// The item got all its audio.
    AudioDone {
        /// The assistant item.
        item_id: String,
    },
    /// Barge-in: drop every queued sample now and answer with `played` (`flushed`).
    Interrupted {
        /// The item that was cut, when known.
        item_id: Option<String>,
    },
    /// A transcript piece.
    Transcript {
        /// Who spoke.
        role: Role,
        /// The item.
        item_id: Option<String>,
        /// A delta, or the whole text when `final`.
        text: String,
        /// True for the completed transcript.
        #[serde(rename = "final")]
        is_final: bool,
    },
    /// Model text (text output mode).
    Text {
        /// The item.
        item_id: String,
        /// The delta.
        text: String,
    },
    /// The provider heard the user start speaking.
    SpeechStarted,
    /// The provider heard the user stop speaking (the page starts its latency clock).
    SpeechStopped,
    /// A response started.
    ResponseStarted {
        /// Its id.
        response_id: String,
    },
    /// A response ended.
    ResponseDone {
        /// Its id.
        response_id: String,
        /// `completed`, `cancelled`, `incomplete`, `failed`.
        status: String,
    },
    /// The model called a tool.
    ToolCall {
        /// The call id.
        call_id: String,
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A tool finished.
    ToolResult {
        /// The call id.
        call_id: String,
        /// The tool.
        name: String,
        /// False when it failed.
        ok: bool,
        /// Its output (or the error text).
        output: Value,
    },
    /// The provider session's state changed.
    Session {
        /// `opened`, `reconnecting`, `reconnected`, `closed`.
        state: String,
        /// Details (the reason, the attempt).
        detail: Option<String>,
    },
    /// Something went wrong; `fatal` errors are followed by a close.
    Error {
        /// A stable code (`bad_frame`, `idle_timeout`, `conversation_failed`...).
        code: String,
        /// What happened, for people.
        message: String,
        /// True when the connection closes next.
        fatal: bool,
    },
    /// Answer to `ping`.
    Pong,
}

impl ServerMessage {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","code":"internal","message":"cannot encode: {e}","fatal":false}}"#)
        })
    }
}
