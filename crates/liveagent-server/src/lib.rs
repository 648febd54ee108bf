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
//! - `POST /v1/chat/completions` — OpenAI Chat Completions (`stream: true` too).
//! - cascade fakes: `POST /v1/audio/transcriptions`, `POST /v1/audio/speech` (OpenAI and
//!   Mistral shapes), `POST /v1/speech-to-text`, `POST /v1/text-to-speech/{voice}/stream`
//!   (ElevenLabs).
//! - the same under `/s/{scenario}/…` to pick a named scenario per connection.
//! - `GET /debug/sessions`, `GET /debug/stats`, `GET /healthz`.

#![warn(missing_docs)]

pub mod audio;
pub mod brain;
mod cascade;
mod chat;
mod conn;
mod gemini;
mod guard;
mod heap;
mod input_audio;
mod items;
mod openai;
mod packed;
mod packed_audio;
pub mod record;
mod registry;
mod resume;
mod server;
mod stats;
mod tokens;
pub mod vad;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use brain::{Brain, Scenario, ScenarioError, Step};
pub use heap::HeapStats;
pub use items::{ItemInfo, ProtocolKind, Role, SessionInfo};
pub use server::LocalServer;
pub use stats::{AnswerRates, StatsSnapshot};
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
    /// Outgoing bytes (frames and pongs) allowed to wait for a client that does not read,
    /// before the server drops the connection (default 32 MiB).
    pub max_backlog_bytes: usize,
    /// Input audio a session may buffer without committing it, in milliseconds (default
    /// 600 000 = 10 minutes, about 29 MB per session). OpenAI: an `append` past it is refused
    /// with an `error` event; Gemini: the connection is closed with 1007.
    pub max_input_audio_ms: u64,
    /// A session that receives no data frame (pings do not count) and is not answering for
    /// this long is closed (default 10 minutes; `None` = never).
    pub idle_timeout: Option<Duration>,
    /// Most TCP connections one client address may hold open at once (default 1024; 0 = no
    /// limit). Requests over the limit get HTTP 429. Every local client shares 127.0.0.1, so
    /// on a loopback-only server this is also the server-wide cap.
    pub max_connections_per_addr: usize,
    /// `Host` header values accepted besides the loopback ones (`localhost`, `127.0.0.1`,
    /// `[::1]`, any port). Entries are host names or `host:port`; `*` accepts any host.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s accepted (exact match, e.g. `http://localhost:3000`; `*` = any).
    /// A request carrying any other `Origin` gets HTTP 403. Default: none, so a web page
    /// cannot talk to the server directly; clients that are not browsers send no `Origin`.
    pub allowed_origins: Vec<String>,
    /// How long the server waits for the client's close frame after sending its own before
    /// it closes the TCP connection anyway (default 1 s). When the client answers, the
    /// connection is closed at once.
    pub close_timeout: Duration,
    /// Closed sessions kept for [`LocalServer::sessions`] and `GET /debug/sessions`
    /// (default 64; the oldest go first).
    pub closed_sessions_kept: usize,
    /// Item text kept over all closed sessions, in bytes (default 8 MiB); a closed session
    /// bigger than that keeps its items with their text cut short.
    pub closed_sessions_bytes: usize,
    /// How long a Gemini resumption handle stays valid (default 2 hours, like the real one).
    pub resumption_ttl: Duration,
    /// Conversation bytes (audio and text) kept over all resumable Gemini states (default
    /// 256 MiB); the oldest states are dropped first. Each session keeps one state: its latest.
    pub resumption_bytes: usize,
    /// The shortest lifetime `POST /v1/realtime/client_secrets` accepts in
    /// `expires_after.seconds` (default 10, as OpenAI; tests lower it to see expiry fast).
    pub min_client_secret_seconds: u64,
    /// Audio each session keeps in its conversation for `conversation.item.retrieve`, in
    /// milliseconds (default 4 000: 192 KB as PCM16, kept losslessly packed in about half
    /// that for speech). The newest audio item always keeps its samples; older items let go
    /// of theirs once the newer ones hold this much, and then keep only their duration and
    /// transcript (a retrieve returns them without `audio`). Audio is counted by buffer: a
    /// user turn and the answer that echoes it share one and count once. Without this bound
    /// every spoken turn stayed in memory for the whole session (about 200 KB per turn with
    /// its echo).
    pub conversation_audio_ms: u64,
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
            max_backlog_bytes: 32 * 1024 * 1024,
            max_input_audio_ms: 600_000,
            idle_timeout: Some(Duration::from_secs(600)),
            max_connections_per_addr: 1024,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            close_timeout: Duration::from_secs(1),
            closed_sessions_kept: 64,
            closed_sessions_bytes: 8 * 1024 * 1024,
            resumption_ttl: Duration::from_secs(2 * 3600),
            resumption_bytes: 256 * 1024 * 1024,
            min_client_secret_seconds: 10,
            conversation_audio_ms: 4_000,
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

    /// [`ServerConfig::conversation_audio_ms`] in samples at the internal rate.
    pub(crate) fn conversation_audio_samples(&self) -> usize {
        audio::ms_to_samples(self.conversation_audio_ms, audio::INTERNAL_RATE)
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
            .field("max_backlog_bytes", &self.max_backlog_bytes)
            .field("max_input_audio_ms", &self.max_input_audio_ms)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections_per_addr", &self.max_connections_per_addr)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("close_timeout", &self.close_timeout)
            .field("closed_sessions_kept", &self.closed_sessions_kept)
            .field("closed_sessions_bytes", &self.closed_sessions_bytes)
            .field("resumption_ttl", &self.resumption_ttl)
            .field("resumption_bytes", &self.resumption_bytes)
            .field("conversation_audio_ms", &self.conversation_audio_ms)
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
