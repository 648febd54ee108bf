//! # liveagent-openai
//!
//! The OpenAI Realtime API (GA protocol, over WebSocket) as a liveagent provider.
//!
//! - [`RealtimeConfig`]: the provider configuration (model, audio or text output, turn
//!   detection, transcription, tools, endpoint and key). It implements
//!   [`liveagent_core::RealtimeConfig`], so `LiveAgent` takes it directly.
//! - [`OpenAiProtocol`]: the sans-IO state machine implementing
//!   [`liveagent_core::RealtimeProtocol`]; the session runtime (`liveagent-session`) owns the
//!   socket and drives it.
//! - [`wire`]: the typed client and server events.
//! - [`History`]: what is replayed into a new session after a reconnect.
//!
//! ```
//! use liveagent_core::{RealtimeConfig as _, SessionSetup};
//! use liveagent_openai::{AudioOutput, RealtimeConfig, TextOutput};
//!
//! let voice = RealtimeConfig::new("gpt-realtime-2").output(AudioOutput::new("ballad").speed(1.2));
//! assert!(voice.audio_output());
//! let text = RealtimeConfig::new("gpt-realtime-2").output(TextOutput).api_key("sk-test");
//! assert!(!text.audio_output());
//! let protocol = text.build_protocol(SessionSetup::default()).unwrap();
//! assert_eq!(protocol.provider(), "openai");
//! // The key never shows in Debug output.
//! assert!(!format!("{text:?}").contains("sk-test"));
//! ```

pub mod config;
pub mod history;
pub mod protocol;
mod resample;
pub mod wire;

pub use config::{
    AudioFormat, AudioOutput, AzureConfig, Eagerness, InputConfig, MaxOutputTokens, NoiseReduction,
    Output, RealtimeConfig, SemanticVad, ServerVad, TextOutput, ToolChoice, Transcription,
    TurnDetection, Voice, DEFAULT_BASE_URL, DEFAULT_MAX_CONNECTION_AGE, SAMPLE_RATE,
};
pub use history::{History, HistoryItem};
pub use protocol::{classify_error, parse_arguments, OpenAiProtocol, Phase};
