//! # liveagent-transport
//!
//! Serve a liveagent conversation to a browser tab or a phone call, mounted into any
//! actix-web app with one `App::configure(..)` call. Each connection runs one conversation
//! inside a [`LiveAgentSystem`](liveagent::LiveAgentSystem); the session, tools, observers
//! and truncation logic are the same as with a sound card.
//!
//! ```no_run
//! use actix_web::{App, HttpServer};
//! use liveagent::{openai, LiveAgent};
//! use liveagent_transport::{BrowserTransport, TwilioTransport};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let agent = LiveAgent::builder("assistant")
//!     .config(openai::RealtimeConfig::new("gpt-realtime-2"))
//!     .build()?;
//! let browser = BrowserTransport::new(agent.clone());
//! let phone = TwilioTransport::new(agent).path("/twilio/");
//! let (b, p) = (browser.clone(), phone.clone());
//! let server = HttpServer::new(move || App::new().configure(b.configure()).configure(p.configure()))
//!     .tcp_nodelay(true) // audio frames go out as they come (no Nagle delay)
//!     .bind(("127.0.0.1", 8080))?
//!     .disable_signals()
//!     .run();
//! // Ctrl-C / SIGTERM: close every connection, stop every conversation, then the server.
//! liveagent_transport::serve(server, [browser.shutdown_handle(), phone.shutdown_handle()]).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`codec`]: the sans-IO seam: a [`Decoder`](codec::Decoder) turns WebSocket messages into
//!   [`Inbound`](codec::Inbound) items, an [`Encoder`](codec::Encoder) turns audio and events
//!   into frames.
//! - [`peer`]: the one WebSocket actor pair all transports share: [`RemoteRecorder`]
//!   publishes `RecordedAudio`, [`RemotePlayer`] consumes `SynthesizedAudio` / `Interrupted`
//!   and reports `PlaybackStopped` with what the remote listener heard.
//! - [`browser`]: [`BrowserTransport`], its page (plain JS + AudioWorklet) and its JSON/PCM16
//!   protocol ([`browser::wire`]).
//! - [`twilio`]: [`TwilioTransport`]: the TwiML webhook, the Media Streams WebSocket
//!   (μ-law 8 kHz, marks, clear), `X-Twilio-Signature` validation.
//! - [`g711`]: μ-law / A-law (from `liveagent-core`, shared with the OpenAI provider).
//! - [`limits`]: [`Limits`], [`OriginPolicy`], [`AuthHook`].
//!
//! The protocols, limits and deployment behind a TLS proxy are in docs/transports.md.

pub mod browser;
pub mod codec;
pub use liveagent_core::g711;
mod hub;
pub mod limits;
pub mod peer;
pub mod twilio;

pub use browser::BrowserTransport;
pub use codec::{CallStart, ResumeRequest};
pub use hub::AgentSource;
pub use limits::{AuthHook, Limits, OriginPolicy};
pub use peer::{RemotePlayer, RemoteRecorder};
pub use twilio::TwilioTransport;

/// Lets [`serve`] (or your own code) close a transport's connections and conversations.
#[derive(Clone)]
pub struct ShutdownHandle(hub::Hub);

impl ShutdownHandle {
    /// See [`BrowserTransport::shutdown`].
    pub async fn shutdown(&self) -> bool {
        self.0.shutdown().await
    }
}

impl std::fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShutdownHandle(..)")
    }
}

/// Runs `server` until it stops, or until Ctrl-C / SIGTERM; then closes every connection
/// of `transports`, stops their conversations (each provider session closes cleanly) and
/// stops the server gracefully. Build the server with `.disable_signals()` so that this
/// function, not actix-web, handles the signals.
pub async fn serve(
    server: actix_web::dev::Server,
    transports: impl IntoIterator<Item = ShutdownHandle>,
) -> std::io::Result<()> {
    let handle = server.handle();
    let transports: Vec<ShutdownHandle> = transports.into_iter().collect();
    let mut server = std::pin::pin!(server);
    let result = tokio::select! {
        r = &mut server => return r,
        _ = stop_signal() => Ok(()),
    };
    tracing::info!("stopping: closing transport connections");
    for t in &transports {
        t.shutdown().await;
    }
    // The server future handles the stop command: keep polling it while the stop completes
    // (awaiting `stop` first would wait forever).
    let stopped = handle.stop(true);
    let _ = server.await;
    stopped.await;
    result
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// A random id with `prefix` (128 bits, hex).
pub(crate) fn random_id(prefix: &str) -> String {
    let n: u128 = rand::random();
    format!("{prefix}{n:032x}")
}
