//! Twilio Media Streams messages (bidirectional streams), as serde types. Twilio adds fields
//! over time, so unknown fields are ignored; numeric-looking fields (`sequenceNumber`,
//! `chunk`, `timestamp`) are strings on the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A message from Twilio.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioIn {
    /// First message.
    Connected {
        /// `Call`.
        #[serde(default)]
        protocol: Option<String>,
    },
    /// The stream started.
    Start {
        /// The start payload.
        start: StartPayload,
        /// The stream id.
        #[serde(rename = "streamSid", default)]
        stream_sid: Option<String>,
    },
    /// Caller audio.
    Media {
        /// The media payload.
        media: MediaPayload,
        /// The stream id.
        #[serde(rename = "streamSid", default)]
        stream_sid: Option<String>,
    },
    /// A mark we sent has been played (or cleared).
    Mark {
        /// The mark.
        mark: MarkPayload,
        /// The stream id.
        #[serde(rename = "streamSid", default)]
        stream_sid: Option<String>,
    },
    /// A key press.
    Dtmf {
        /// The digit.
        dtmf: DtmfPayload,
    },
    /// The stream (the call) ended.
    Stop {},
}

/// `start`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartPayload {
    /// `AC…`.
    #[serde(default)]
    pub account_sid: String,
    /// `MZ…`.
    pub stream_sid: String,
    /// `CA…`.
    #[serde(default)]
    pub call_sid: String,
    /// `["inbound"]`.
    #[serde(default)]
    pub tracks: Vec<String>,
    /// The audio format (always μ-law 8 kHz mono so far).
    pub media_format: MediaFormat,
    /// `<Parameter>`s from the TwiML.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
}

/// `start.mediaFormat`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaFormat {
    /// `audio/x-mulaw`.
    pub encoding: String,
    /// 8000.
    pub sample_rate: u32,
    /// 1.
    pub channels: u32,
}

/// `media`.
#[derive(Clone, Debug, Deserialize)]
pub struct MediaPayload {
    /// `inbound` (caller) or `outbound`.
    #[serde(default)]
    pub track: Option<String>,
    /// Chunk counter, as a string.
    #[serde(default)]
    pub chunk: Option<String>,
    /// Milliseconds since the stream started, as a string.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Base64 μ-law bytes.
    pub payload: String,
}

/// `mark`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct MarkPayload {
    /// The name we gave it.
    pub name: String,
}

/// `dtmf`.
#[derive(Clone, Debug, Deserialize)]
pub struct DtmfPayload {
    /// `inbound_track`.
    #[serde(default)]
    pub track: Option<String>,
    /// The key.
    pub digit: String,
}

/// A message to Twilio.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum TwilioOut<'a> {
    /// Audio to play (base64 μ-law 8 kHz, no header).
    Media {
        /// The stream.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        /// The audio.
        media: OutMedia,
    },
    /// A bookmark, echoed when the audio before it has played.
    Mark {
        /// The stream.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
        /// The mark.
        mark: MarkPayload,
    },
    /// Drop all buffered audio (barge-in); pending marks are echoed.
    Clear {
        /// The stream.
        #[serde(rename = "streamSid")]
        stream_sid: &'a str,
    },
}

/// `media` out.
#[derive(Clone, Debug, Serialize)]
pub struct OutMedia {
    /// Base64 μ-law.
    pub payload: String,
}
