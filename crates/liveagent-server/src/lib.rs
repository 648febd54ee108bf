//! Local realtime server speaking the OpenAI Realtime (GA) and Gemini Live wire protocols
//! on 127.0.0.1: the offline provider for demos and the peer of every test.
//!
//! It is a real server, not a mock: real WebSockets, real JSON frames (checked against the
//! official SDKs' models by `shared/protocols/validate`), real audio in and out, turn
//! detection on the incoming audio, conversation items that truncation and history replay
//! act on, tool calls, session resumption, and scripted faults for resilience tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use liveagent_server::{LocalServer, ServerConfig};
//! let server = LocalServer::start(ServerConfig::default()).await?;
//! println!("OpenAI base URL: {}", server.openai_url()); // ws://127.0.0.1:PORT/v1
//! println!("Gemini base URL: {}", server.gemini_url()); // ws://127.0.0.1:PORT
//! // ... point a client at it ...
//! for session in server.sessions() {
//!     println!("{} items", session.items.len());
//! }
//! server.stop().await;
//! # Ok(()) }
//! ```
//!
//! Endpoints (see `docs/local-server.md`):
//! - `GET /v1/realtime?model=…` — OpenAI Realtime GA WebSocket.
//! - `GET /ws/google.ai.generativelanguage.{v1beta|v1|v1alpha}.GenerativeService.BidiGenerateContent`
//!   — Gemini Live WebSocket.
//! - `POST /v1/chat/completions` — OpenAI Chat Completions.
//! - the same under `/s/{scenario}/…` to pick a named scenario per connection.
//! - `GET /debug/sessions`, `GET /debug/stats`, `GET /healthz`.

#![warn(missing_docs)]

pub mod audio;
pub mod brain;
mod chat;
mod conn;
mod gemini;
mod items;
mod openai;
pub mod record;
mod server;
mod stats;
pub mod vad;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

pub use brain::{Brain, Scenario, ScenarioError, Step};
pub use items::{ItemInfo, ProtocolKind, Role, SessionInfo};
pub use server::LocalServer;
pub use stats::StatsSnapshot;
pub use vad::VadConfig;

/// How response audio is paced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pacing {
    /// One chunk every `chunk_ms` (the default): audio arrives at the rate it plays.
    #[default]
    RealTime,
    /// Everything as fast as the socket takes it (like the real providers, which send audio
    /// faster than real time).
    AsFastAsPossible,
}

/// Server settings. `ServerConfig::default()` binds 127.0.0.1 on a free port, without an
/// API key, with the echo brain, 40 ms chunks paced in real time, and no recording.
#[derive(Clone)]
pub struct ServerConfig {
    /// When set, clients must present this key (`Authorization: Bearer` for OpenAI,
    /// `x-goog-api-key` or `?key=` for Gemini).
    pub api_key: Option<String>,
    /// The default brain.
    pub brain: Brain,
    /// Named scenarios, selected per connection by the URL prefix `/s/{name}/…`, the
    /// `scenario` query parameter, or a model name equal to the key.
    pub scenarios: HashMap<String, Scenario>,
    /// Response audio chunk length in milliseconds (clamped to 20..=100; default 40).
    pub chunk_ms: u32,
    /// Pacing of response audio.
    pub pacing: Pacing,
    /// Default turn-detection settings (a session's own settings override them).
    pub vad: VadConfig,
    /// Record every frame to this JSON-lines file (`> {json}` in, `< {json}` out).
    pub record: Option<PathBuf>,
    /// Also keep the recording in memory ([`LocalServer::recording`]).
    pub record_in_memory: bool,
    /// TCP port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Worker threads (default 1).
    pub workers: usize,
    /// Largest client frame accepted, in bytes (default 16 MiB; OpenAI allows 15 MiB appends).
    pub max_frame_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_key: None,
            brain: Brain::Echo,
            scenarios: HashMap::new(),
            chunk_ms: 40,
            pacing: Pacing::RealTime,
            vad: VadConfig::default(),
            record: None,
            record_in_memory: false,
            port: 0,
            workers: 1,
            max_frame_bytes: 16 * 1024 * 1024,
        }
    }
}

impl ServerConfig {
    /// The default config with the scripted brain.
    pub fn scripted(scenario: Scenario) -> Self {
        ServerConfig {
            brain: Brain::Script(scenario),
            ..Default::default()
        }
    }

    /// Adds a named scenario (builder style).
    pub fn with_scenario(mut self, name: impl Into<String>, scenario: Scenario) -> Self {
        self.scenarios.insert(name.into(), scenario);
        self
    }

    /// Sets the API key (builder style).
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Keeps the recording in memory (builder style).
    pub fn recording_in_memory(mut self) -> Self {
        self.record_in_memory = true;
        self
    }

    /// The effective chunk length.
    pub fn effective_chunk_ms(&self) -> u32 {
        self.chunk_ms.clamp(20, 100)
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("brain", &self.brain)
            .field("scenarios", &self.scenarios.keys().collect::<Vec<_>>())
            .field("chunk_ms", &self.chunk_ms)
            .field("pacing", &self.pacing)
            .field("vad", &self.vad)
            .field("record", &self.record)
            .field("record_in_memory", &self.record_in_memory)
            .field("port", &self.port)
            .field("workers", &self.workers)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_key() {
        let cfg = ServerConfig::default().with_api_key("sk-very-secret");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("sk-very-secret"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }
}
