//! # liveagent-cascade
//!
//! Cascade mode: speech-to-text → any Chat Completions LLM → text-to-speech, behind the
//! same provider interface as the realtime APIs. A [`CascadeConfig`] goes into
//! `LiveAgent::builder().config(..)` like `openai::RealtimeConfig`; the conversation then
//! publishes the same events (`SpeechStarted/Stopped`, `InputTranscriptChunk`,
//! `ModelMessageChunk`, `SynthesizedAudio`, `Interrupted`, `ResponseDone` with usage per
//! stage, tool events), so tools, the hitl hook, observers, middleware, the audio peers and
//! the transports work unchanged.
//!
//! ```no_run
//! use liveagent_cascade::{openai::{OpenAiStt, OpenAiTts}, CascadeConfig, ChatLlm};
//! let config = CascadeConfig::new(
//!     OpenAiStt::new("gpt-4o-mini-transcribe"),
//!     ChatLlm::new("gpt-4o-mini"),
//!     OpenAiTts::new("gpt-4o-mini-tts", "marin"),
//! )
//! .barge_in(true)
//! .min_chars(20);
//! // LiveAgent::builder("assistant").config(config).build()?
//! # let _ = config;
//! ```
//!
//! ## Layout
//!
//! - [`stage`]: the [`Stt`], [`Llm`] and [`Tts`] traits, their capabilities and events.
//! - [`turn`]: client-side turn detection, [`TurnDetector`] and [`SilenceTurnDetector`].
//! - [`vad`]: [`VadTurnDetector`], turn detection by a neural voice activity model.
//! - [`sentence`]: [`SentenceBuffer`], which cuts the LLM stream into pieces to speak.
//! - [`config`]: [`CascadeConfig`], the provider configuration.
//! - [`protocol`]: [`CascadeProtocol`], the state machine the session runtime drives;
//!   `heard` keeps what of a response was synthesized and heard (barge-in cuts).
//! - [`llm`]: [`ChatLlm`], any Chat Completions server (through `liveagent-agent`).
//! - [`openai`], [`elevenlabs`], [`mistral`]: the providers' STT and TTS stages, over HTTP
//!   and over their streaming WebSockets (OpenAI's realtime transcription session,
//!   ElevenLabs' realtime STT and `stream-input` TTS, Mistral's realtime STT and TTS).
//! - `http`: what every stage shares (the endpoint and its builder methods, errors,
//!   multipart, WAV); `cut`: the HTTP socket watched so that a body cut short is an error;
//!   `streams`: bodies and event streams; `ws`: the WebSocket stages' connection and stream
//!   driver.
//!
//! ## How it plugs in
//!
//! The cascade is not one WebSocket. [`CascadeProtocol`] implements
//! [`RealtimeProtocol`](liveagent_core::RealtimeProtocol) with
//! [`uses_socket`](liveagent_core::RealtimeProtocol::uses_socket) `false`: the session
//! runtime opens no socket and hands it commands at once; the protocol asks the runtime to
//! run each stage request as a [`ProtocolTask`](liveagent_core::ProtocolTask) and gets
//! their results back as items. The session actor never branches on the provider.

pub mod config;
mod cut;
pub mod elevenlabs;
mod heard;
mod http;
pub mod llm;
pub mod mistral;
pub mod openai;
pub mod protocol;
pub mod sentence;
pub mod stage;
mod streams;
pub mod turn;
pub mod vad;
mod ws;

pub use config::CascadeConfig;
pub use llm::ChatLlm;
pub use protocol::CascadeProtocol;
pub use sentence::SentenceBuffer;
pub use stage::{
    Llm, Stt, SttCapabilities, SttEvent, SttInput, SttInputStream, Tts, TtsCapabilities,
    TtsContextEvent, TtsEvent, TtsInput, TtsInputStream,
};
pub use turn::{SilenceSettings, SilenceTurnDetector, TurnDetector, TurnEvent};
pub use vad::{Aggressiveness, VadSettings, VadTurnDetector};
