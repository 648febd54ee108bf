//! # liveagent-session
//!
//! The provider session actor: one [`SessionActor`] per conversation owns the WebSocket
//! (awc, rustls for `wss://`), drives a provider's sans-IO
//! [`RealtimeProtocol`] and connects it to the
//! conversation's event bus. It is the same for every provider, so reconnects, buffering and
//! error reporting behave the same for OpenAI and Gemini.
//!
//! - [`start_session`] starts the actor under an actix [`Supervisor`]
//!   and subscribes it to the commands it serves ([`RecordedAudio`](liveagent_core::RecordedAudio),
//!   [`UserText`](liveagent_core::UserText), [`SessionControl`](liveagent_core::SessionControl),
//!   [`ToolResult`](liveagent_core::ToolResult), [`PlaybackStopped`](liveagent_core::PlaybackStopped)).
//! - When the connection drops, the actor stops; the supervisor restarts it, and its
//!   `started` hook reconnects after a backoff ([`ReconnectPolicy`]) and replays the
//!   configuration and history through the protocol's `on_open`.
//! - While not ready (connecting, handshaking, reconnecting), commands wait in a
//!   [`PendingCommands`](buffer::PendingCommands) queue: microphone audio up to a bound
//!   ([`SessionOptions::max_buffered_audio`]; the oldest audio is dropped past it, with an
//!   [`AudioDropped`](liveagent_core::AudioDropped) event), everything else (tool results,
//!   text, control) without loss.
//! - Errors retrying cannot fix (HTTP 401/403/404 on connect, or a protocol's
//!   [`ProtocolSignal::Fatal`](liveagent_core::ProtocolSignal::Fatal)) end the session with a
//!   typed error instead of a retry storm.
//! - Connections are renewed proactively before the protocol's
//!   [`max_connection_age`](liveagent_core::RealtimeProtocol::max_connection_age), or when
//!   the provider asks (Gemini `goAway`), at the next moment the conversation is idle.
//!
//! ```no_run
//! use liveagent_core::{ConversationContext, EventBus, RealtimeConfig, SessionSetup};
//! use liveagent_session::{start_session, SessionOptions};
//!
//! # fn demo(config: &dyn RealtimeConfig) -> Result<(), liveagent_core::LiveError> {
//! # actix::System::new().block_on(async {
//! let context = ConversationContext::new(EventBus::start_default(), config.input_sample_rate(), 24_000);
//! let protocol = config.build_protocol(SessionSetup::default())?;
//! let session = start_session(protocol, context.clone(), SessionOptions::default());
//! // ... publish RecordedAudio on `context`, read events from `context.stream()` ...
//! session.stop();
//! # Ok(()) })
//! # }
//! ```

mod actor;
mod backoff;
pub mod buffer;
mod connect;
mod keepalive;
mod socket;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;
use liveagent_core::{ConversationContext, EventMiddleware, RealtimeProtocol, TlsRoots};

pub use actor::{SessionActor, SessionState, SessionStatus, StopSession};
pub use backoff::ReconnectPolicy;

/// How a session connects, reconnects and buffers.
#[derive(Clone)]
pub struct SessionOptions {
    /// Backoff between reconnect attempts.
    pub reconnect: ReconnectPolicy,
    /// Microphone audio held while the session is not ready (default 5 s). Past it the oldest
    /// audio is dropped and an `AudioDropped` event says how much.
    pub max_buffered_audio: Duration,
    /// How long one connection attempt (TCP, TLS, WebSocket upgrade) may take (default 10 s).
    pub connect_timeout: Duration,
    /// How long the provider may take to become ready after the socket opened (default 15 s).
    pub handshake_timeout: Duration,
    /// The largest frame accepted from the provider (default 16 MiB).
    pub max_frame_size: usize,
    /// Send a WebSocket ping this often while connected (default 5 s; zero: never), so a
    /// connection whose peer went away without a FIN/RST is noticed (see
    /// [`idle_timeout`](Self::idle_timeout)).
    pub ping_interval: Duration,
    /// The connection counts as lost when nothing (no frame, no pong) arrived from the
    /// provider for this long (default 15 s; zero: never). With the default ping interval a
    /// live peer answers at least every 5 s, so a half-open connection is detected within
    /// 15 s: the session publishes an [`ErrorEvent`](liveagent_core::ErrorEvent) saying so,
    /// reconnects and restores the conversation.
    pub idle_timeout: Duration,
    /// The connection counts as lost when a frame handed to the socket could not be written
    /// for this long (default 10 s; zero: never): the provider (or a proxy) stopped reading.
    pub write_timeout: Duration,
    /// After sending a WebSocket Close (stop, renewal, fatal error), how long to wait for the
    /// provider's Close before dropping the socket anyway (default 1 s).
    pub close_timeout: Duration,
    /// A renewal the provider asked for (`goAway`) or the age limit waits for the
    /// conversation to be idle at most this long before it happens anyway (default 20 s).
    pub max_renewal_wait: Duration,
    /// Event middleware, in order.
    pub middleware: Vec<Arc<dyn EventMiddleware>>,
    /// Keep this many latency measurements of microphone audio, from capture
    /// ([`AudioChunk::origin`](liveagent_core::AudioChunk::origin)) until its frame is handed
    /// to the socket writer ([`SessionStatus::mic_to_socket`]). 0 (the default) measures
    /// nothing. Synthesized audio is always stamped with the time its frame was read.
    pub latency_samples: usize,
    /// The certificate authorities trusted for `wss://` connections (default: the bundled
    /// public roots). Add a private CA for a provider or proxy behind a self-signed or
    /// corporate certificate: `TlsRoots::default().with_pem_file("ca.pem")?`.
    pub tls_roots: TlsRoots,
    /// Set `TCP_NODELAY` on the provider connection (default `true`): every frame (a 20 ms
    /// microphone chunk) leaves in its own segment as soon as it is written. With `false`
    /// the OS default (Nagle's algorithm) applies: a frame written while the previous one is
    /// unacknowledged waits for that ACK, which the peer may delay by up to 40 ms (Linux;
    /// 200 ms elsewhere), so audio reaches the provider late and in bursts: measured with 100
    /// sessions, Nagle sent 0.55 packets per 20 ms frame (frames held and sent together)
    /// and saved 13-17 % of the client's CPU (`docs/performance.md`, "Round 4"). Turn it off
    /// only where CPU matters more than ~20-40 ms of extra input latency.
    pub tcp_nodelay: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            reconnect: ReconnectPolicy::default(),
            max_buffered_audio: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(15),
            max_frame_size: 16 * 1024 * 1024,
            ping_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(1),
            max_renewal_wait: Duration::from_secs(20),
            middleware: Vec::new(),
            latency_samples: 0,
            tls_roots: TlsRoots::default(),
            tcp_nodelay: true,
        }
    }
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("reconnect", &self.reconnect)
            .field("max_buffered_audio", &self.max_buffered_audio)
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_frame_size", &self.max_frame_size)
            .field("ping_interval", &self.ping_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("close_timeout", &self.close_timeout)
            .field("middleware", &self.middleware.len())
            .field("tls_roots", &self.tls_roots)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .finish()
    }
}

/// A running session. Dropping the handle does not stop the session; call
/// [`stop`](Self::stop).
///
/// The handle holds a weak address: the session actor lives as long as its bus
/// subscriptions do, so that once stopped (and unsubscribed) the supervisor lets it end
/// instead of restarting it.
#[derive(Clone)]
pub struct SessionHandle {
    addr: WeakAddr<SessionActor>,
}

impl SessionHandle {
    /// The session actor, while it is alive.
    pub fn addr(&self) -> Option<Addr<SessionActor>> {
        self.addr.upgrade()
    }

    /// True while the session actor is alive.
    pub fn is_alive(&self) -> bool {
        self.addr.upgrade().is_some_and(|a| a.connected())
    }

    /// Closes the connection and ends the session (publishes `SessionClosed`).
    pub fn stop(&self) {
        if let Some(addr) = self.addr.upgrade() {
            addr.do_send(StopSession);
        }
    }

    /// Like [`stop`](Self::stop), and waits until the session has handled it (its
    /// `SessionClosed` event is then on the bus) and the WebSocket close handshake is done
    /// (the provider answered our Close, or [`SessionOptions::close_timeout`] passed).
    pub async fn stop_and_wait(&self) {
        if let Some(addr) = self.addr.upgrade() {
            let _ = addr.send(StopSession).await;
        }
    }

    /// The session's current state and counters (`None` once the actor has ended).
    pub async fn status(&self) -> Option<SessionStatus> {
        let addr = self.addr.upgrade()?;
        addr.send(actor::GetStatus).await.ok()
    }
}

/// Starts a session for `protocol` on `context`'s bus, under an actix `Supervisor`. Must be
/// called inside a running actix system.
pub fn start_session(
    protocol: Box<dyn RealtimeProtocol>,
    context: ConversationContext,
    options: SessionOptions,
) -> SessionHandle {
    // Subscribe before returning, so whatever the caller publishes next reaches the session.
    let addr = Supervisor::start(move |ctx: &mut actix::Context<SessionActor>| {
        let subscriptions = actor::subscribe_commands(&context, ctx.address());
        SessionActor::new(protocol, context, options, subscriptions)
    });
    SessionHandle {
        addr: addr.downgrade(),
    }
}
