//! [`Hub`]: what every connection of one mounted transport shares — the
//! [`LiveAgentSystem`] its conversations run in, the agent (or the factory that makes one per
//! call), the conversation limit, and the open connections, so that
//! [`shutdown`](Hub::shutdown) can end them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use liveagent::{LiveAgent, LiveAgentSystem};
use liveagent_core::LiveError;

use crate::codec::CallStart;
use crate::limits::{Gate, Limits};

type Factory = Arc<dyn Fn(&CallStart) -> Result<LiveAgent, LiveError> + Send + Sync>;

/// The agent a transport runs for each connection: always the same [`LiveAgent`], or one
/// made per call from what the remote side sent (Twilio `<Parameter>`s, the page's query
/// string), e.g. to put the caller's number into the prompt.
///
/// ```no_run
/// use liveagent::{openai, LiveAgent, LiveError};
/// use liveagent_transport::AgentSource;
///
/// let source = AgentSource::factory(|call| {
///     LiveAgent::builder("receptionist")
///         .prompt("The caller's number is {caller}.")
///         .variable("caller", call.params.get("From").map(String::as_str).unwrap_or("unknown"))
///         .config(openai::RealtimeConfig::new("gpt-realtime-2"))
///         .build()
///         .map_err(LiveError::from)
/// });
/// ```
#[derive(Clone)]
pub struct AgentSource(Factory);

impl AgentSource {
    /// Makes the agent per connection from the call's start information.
    pub fn factory<F>(f: F) -> Self
    where
        F: Fn(&CallStart) -> Result<LiveAgent, LiveError> + Send + Sync + 'static,
    {
        AgentSource(Arc::new(f))
    }

    pub(crate) fn make(&self, start: &CallStart) -> Result<LiveAgent, LiveError> {
        (self.0)(start)
    }
}

impl From<LiveAgent> for AgentSource {
    fn from(agent: LiveAgent) -> Self {
        AgentSource(Arc::new(move |_| Ok(agent.clone())))
    }
}

impl std::fmt::Debug for AgentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentSource(..)")
    }
}

/// Asks a connection to close (the app is shutting down).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub(crate) struct CloseConnection {
    pub code: u16,
    pub reason: String,
}

/// Shared state of one mounted transport.
#[derive(Clone)]
pub(crate) struct Hub {
    pub system: LiveAgentSystem,
    pub agent: AgentSource,
    pub limits: Limits,
    pub gate: Gate,
    /// Where conversations are recorded and resumed from (else the agent's store, if any).
    pub store: Option<Arc<dyn liveagent_store::ConversationStore>>,
    connections: Arc<Mutex<HashMap<u64, Recipient<CloseConnection>>>>,
    next_id: Arc<AtomicU64>,
    /// Provider socket read → frame queued for the remote side, per audio chunk (the most
    /// recent 100,000), for benchmarks.
    pub audio_out_latency: Arc<Mutex<liveagent_core::LatencySamples>>,
}

impl Hub {
    pub fn new(agent: AgentSource, limits: Limits, system: LiveAgentSystem) -> Self {
        Hub {
            system,
            agent,
            limits,
            gate: Gate::default(),
            store: None,
            connections: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            audio_out_latency: Arc::new(Mutex::new(liveagent_core::LatencySamples::new(100_000))),
        }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn register(&self, id: u64, close: Recipient<CloseConnection>) {
        self.connections.lock().unwrap().insert(id, close);
    }

    pub fn unregister(&self, id: u64) {
        self.connections.lock().unwrap().remove(&id);
    }

    pub fn open_connections(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// Closes every connection (1001 "going away"), stops every conversation and waits
    /// (up to 5 s) for their actors to end. Returns true when all did.
    pub async fn shutdown(&self) -> bool {
        let all: Vec<_> = self.connections.lock().unwrap().values().cloned().collect();
        for close in all {
            close.do_send(CloseConnection {
                code: 1001,
                reason: "server shutting down".into(),
            });
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.open_connections() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.system.shutdown().await && self.open_connections() == 0
    }
}
