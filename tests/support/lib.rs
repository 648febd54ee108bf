//! Shared support for the workspace-level end-to-end tests in `tests/`: a conversation of a
//! real [`LiveAgent`] against the bundled local realtime server over real WebSockets, with
//! every event recorded, speech to speak into it, and the server's wire recording; and
//! [`peer::ScriptedPeer`], a small scripted WebSocket peer for what the local server cannot
//! imitate.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::{
    openai, AudioChunk, Conversation, LiveAgent, LiveAgentBuilder, LiveEvent, RecordedAudio,
};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};

pub use liveagent_testkit::{silence_pcm, speech_pcm, validate_lines, Protocol};

/// A failsafe against hangs, never a timing assertion.
pub const FAILSAFE: Duration = Duration::from_secs(60);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A local server for `scenario` (TOML; `None`: the echo brain), recording in memory and
/// sending response audio as fast as possible.
pub async fn server(scenario: Option<&str>) -> LocalServer {
    init_tracing();
    let mut config = match scenario {
        Some(toml) => ServerConfig::scripted(Scenario::from_toml(toml).expect("scenario")),
        None => ServerConfig::default(),
    };
    config.pacing = Pacing::AsFastAsPossible;
    LocalServer::start(config.recording_in_memory())
        .await
        .expect("local server")
}

/// An OpenAI configuration pointed at `server`.
pub fn openai_config(server: &LocalServer) -> openai::RealtimeConfig {
    openai::RealtimeConfig::new("gpt-realtime")
        .base_url(server.openai_url())
        .api_key("local-key")
}

/// A running conversation with every event it published recorded.
pub struct Run {
    /// The conversation.
    pub conversation: Conversation,
    events: Arc<Mutex<Vec<LiveEvent>>>,
}

impl Run {
    /// Builds the agent from `builder` and runs it, recording every event.
    pub fn start(builder: LiveAgentBuilder) -> Run {
        let agent: LiveAgent = builder.build().expect("agent");
        let conversation = agent.run().expect("run");
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut stream = conversation.stream().capacity(100_000).all();
        let sink = events.clone();
        actix::spawn(async move {
            while let Some(event) = stream.next().await {
                sink.lock().unwrap().push(event);
            }
        });
        Run {
            conversation,
            events,
        }
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<LiveEvent> {
        self.events.lock().unwrap().clone()
    }

    /// What `f` picks out of the events so far, in order.
    pub fn collect<T>(&self, f: impl Fn(&LiveEvent) -> Option<T>) -> Vec<T> {
        self.events.lock().unwrap().iter().filter_map(f).collect()
    }

    /// How many events so far satisfy `f`.
    pub fn count(&self, f: impl Fn(&LiveEvent) -> bool) -> usize {
        self.events.lock().unwrap().iter().filter(|e| f(e)).count()
    }

    /// Waits until `n` events satisfy `f` (panics after [`FAILSAFE`] with a summary).
    pub async fn wait_count(&self, what: &str, n: usize, f: impl Fn(&LiveEvent) -> bool) {
        let deadline = std::time::Instant::now() + FAILSAFE;
        // Counted incrementally: a flood records 100,000s of events, and rescanning them
        // all every 10 ms would make the wait itself quadratic.
        let (mut seen, mut count) = (0, 0);
        loop {
            {
                let events = self.events.lock().unwrap();
                count += events[seen..].iter().filter(|e| f(e)).count();
                seen = events.len();
            }
            if count >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited too long for {n} x {what}; {}",
                self.summary()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The kinds of the non-audio events so far, for failure messages.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .events()
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    LiveEvent::SynthesizedAudio(_) | LiveEvent::RecordedAudio(_)
                )
            })
            .map(|e| match e {
                LiveEvent::ErrorEvent(e) => format!("Error({})", e.error),
                LiveEvent::SessionReconnecting(r) => {
                    format!("Reconnecting({}: {})", r.attempt, r.reason)
                }
                other => format!("{:?}", other.kind()),
            })
            .collect();
        format!("events: {kinds:?}")
    }

    /// Speaks `pcm` (24 kHz) into the conversation as the microphone would (100 ms chunks,
    /// faster than real time), followed by a second of silence so the server's VAD ends the
    /// turn.
    pub async fn speak(&self, pcm: &[i16]) {
        let rate = self.conversation.input_sample_rate();
        let mut all = pcm.to_vec();
        all.extend(silence_pcm(1000, rate));
        for chunk in all.chunks((rate / 10) as usize) {
            self.conversation.publish(RecordedAudio {
                audio: AudioChunk::new(chunk.to_vec(), rate),
            });
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Test speech (espeak-ng) at 24 kHz, made once per process.
pub fn question() -> &'static [i16] {
    static SPEECH: std::sync::OnceLock<Vec<i16>> = std::sync::OnceLock::new();
    SPEECH.get_or_init(|| speech_pcm("What is two plus three?", 24_000))
}

/// The client frames the server recorded, parsed.
pub fn client_frames(server: &LocalServer) -> Vec<serde_json::Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.strip_prefix("> "))
        .map(|l| serde_json::from_str(l).expect("recorded client frame is JSON"))
        .collect()
}

/// The server frames the server recorded, parsed (frames that are not JSON, such as injected
/// malformed ones, are skipped).
pub fn server_frames(server: &LocalServer) -> Vec<serde_json::Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.strip_prefix("< "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A TCP proxy in front of a server whose connections the test can cut at any moment (the
/// conformance suite's; see [`liveagent_conformance::CutProxy`]).
pub use liveagent_conformance::CutProxy;

pub mod cascade;
pub mod peer;
