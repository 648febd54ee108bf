//! # liveagent
//!
//! Full-duplex voice agents over providers' realtime APIs (OpenAI Realtime, Gemini Live),
//! as an actix actor runtime. One bidirectional session carries a whole conversation:
//! microphone audio streams in, synthesized audio, text and transcripts stream out, the
//! provider detects turns and the user can barge in; tools run while the conversation goes
//! on.
//!
//! ```text
//!  SoundDeviceRecorder ──RecordedAudio──▶ ┌──────────┐ ──SynthesizedAudio, Interrupted──▶ SoundDevicePlayer
//!  (cpal, rubato)                         │          │ ◀──PlaybackStopped────────────────  (jitter buffer)
//!                                         │ EventBus │
//!  SessionActor (supervised) ◀─commands── │  actor   │ ──ToolCallRequested──▶ ToolExecutor
//!   └ RealtimeProtocol (openai|gemini) ─events──────▶ │ ◀──ToolResult─────────  (tools, hitl, middleware)
//!   └ WebSocket (awc + rustls)            │          │ ──chosen kinds──────▶ your observer actors,
//!                                         └──────────┘                        context.stream() consumers
//! ```
//!
//! Start here:
//! - [`LiveAgent::builder`]: name, prompt, config, tools, middleware, observers,
//!   dependencies, variables, plugins, hitl hook.
//! - [`LiveAgent::run`] → [`Conversation`] (derefs to [`ConversationContext`]): publish,
//!   subscribe, `stream().only::<E>()` / `stream().union::<(A, B)>()`.
//! - [`LiveAgentSystem`]: run conversations inside your actix app, with your observers.
//! - The provider configurations: [`openai::RealtimeConfig`], [`gemini::RealtimeConfig`],
//!   and [`cascade::CascadeConfig`] (speech-to-text → LLM → text-to-speech).
//! - Audio peers: [`audio::SoundDeviceRecorder`], [`audio::SoundDevicePlayer`], and the WAV
//!   peers for headless use.
//! - Every event type: [`events`].

pub mod agent;
pub mod conversation;
pub mod prompt;
pub mod record;
pub mod run;
pub mod system;

pub use agent::{BuildError, LiveAgent, LiveAgentBuilder};
pub use conversation::{
    Conversation, ConversationWatch, HISTORY_LIMIT, HISTORY_MAX_BYTES, MESSAGES_MAX_BYTES,
};
pub use prompt::{render_prompt, PromptPart};
pub use record::RecordingOptions;
pub use run::RunOptions;
pub use system::LiveAgentSystem;

pub use liveagent_core::events;
pub use liveagent_core::*;
pub use liveagent_session::{
    ReconnectPolicy, SessionHandle, SessionOptions, SessionState, SessionStatus,
};
pub use liveagent_tools::{
    Approval, Dependencies, HitlHook, HumanInputHook, NoArgs, Plugin, Tool, ToolContext, ToolError,
    ToolMiddleware, Toolbox,
};

/// OpenAI Realtime (GA): `openai::RealtimeConfig::new("gpt-realtime-2")` and its options.
pub mod openai {
    pub use liveagent_openai::*;
}

/// Gemini Live: `gemini::RealtimeConfig::new("gemini-3.1-flash-live-preview")` and its options.
pub mod gemini {
    pub use liveagent_gemini::*;
}

/// Cascade mode: speech-to-text → any Chat Completions LLM → text-to-speech, as one
/// provider configuration: `cascade::CascadeConfig::new(stt, llm, tts)`.
pub mod cascade {
    pub use liveagent_cascade::*;
}

/// Audio peers: microphone recorder, speaker player (cpal), WAV source and sink.
pub mod audio {
    pub use liveagent_audio::*;
}

/// Conversation stores: what a conversation needs to be picked up by another instance
/// (in memory, or Redis with `liveagent-store`'s `redis` feature). Give one to
/// [`LiveAgentBuilder::store`].
pub mod store {
    pub use liveagent_store::*;
}

/// Tools: definitions, the executor, approval hooks, middleware, plugins.
pub mod tools {
    pub use liveagent_tools::*;
}
