//! # liveagent-gemini
//!
//! The Gemini Live provider for liveagent: Google's `BidiGenerateContent` API over a
//! WebSocket. The crate does no I/O: [`GeminiProtocol`] is a sans-IO state machine
//! implementing [`liveagent_core::RealtimeProtocol`]; the session runtime
//! (`liveagent-session`) owns the socket, reconnects and supervision.
//!
//! - [`RealtimeConfig`]: the configuration (model, [`AudioOutput`] or [`TextOutput`],
//!   [`InputConfig`], activity detection, compression, resumption, API version, base URL,
//!   key). It implements [`liveagent_core::RealtimeConfig`] (provider `gemini`, 16 kHz in,
//!   24 kHz out).
//! - [`wire`]: the JSON frames, in canonical lowerCamelCase, with lenient decoding of
//!   int64-as-string, Duration strings and both base64 alphabets.
//! - [`GeminiProtocol`]: `setup` → `setupComplete` handshake, server content to typed
//!   events, commands to frames, tool-call batching, session resumption (plain and
//!   transparent) and history replay into a new session when no handle can be used.
//! - [`classify_close`]: Gemini reports errors by closing the socket; this turns the close
//!   code and reason into a typed [`LiveError`](liveagent_core::LiveError).
//!
//! ```
//! use liveagent_core::{RealtimeConfig as _, SessionSetup};
//! use liveagent_gemini::{AudioOutput, InputConfig, RealtimeConfig};
//!
//! let config = RealtimeConfig::new("gemini-3.1-flash-live-preview")
//!     .output(AudioOutput::new("Puck").language_code("en-US"))
//!     .input(InputConfig { transcribe: true, ..Default::default() })
//!     .api_key("my-key");
//! assert_eq!(config.input_sample_rate(), 16_000);
//! let protocol = config.build_protocol(SessionSetup {
//!     instructions: "You are a helpful voice assistant.".into(),
//!     tools: vec![],
//! }).unwrap();
//! assert_eq!(protocol.provider(), "gemini");
//! ```
//!
//! Gemini has no item or response ids: the protocol numbers the model's turns and uses
//! `gemini-turn-N` as the response id and `gemini-item-N` as the item id of turn `N`.

pub mod config;
pub mod errors;
pub mod history;
pub mod protocol;
pub mod wire;

pub use config::{
    ActivityDetection, ActivityHandling, ApiVersion, AudioOutput, ContextCompression,
    EndSensitivity, InputConfig, Output, RealtimeConfig, SessionResumption, StartSensitivity,
    TextOutput, TurnCoverage, Vertex, DEFAULT_BASE_URL, INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE,
};
pub use errors::classify_close;
pub use history::{History, HistoryEntry};
pub use protocol::{GeminiProtocol, Phase};

#[cfg(test)]
mod protocol_tests;
