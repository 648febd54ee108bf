//! The browser transport: a web page served by the crate and a WebSocket that carries a
//! conversation with it.
//!
//! Routes, under the prefix set with [`BrowserTransport::path`] (default `/`):
//!
//! | route | what |
//! |---|---|
//! | `GET {prefix}` | the page (plain HTML + JS, no bundler, no CDN) |
//! | `GET {prefix}app.js`, `GET {prefix}worklet.js` | its script and AudioWorklet module |
//! | `GET {prefix}ws` | the WebSocket: binary = PCM16 mono, text = JSON ([`wire`]) |
//!
//! Before the upgrade the request passes the Origin policy (403), the auth hook (its own
//! response) and the conversation limit (503). docs/transports.md describes the protocol.

mod codec;
pub mod wire;

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use liveagent::LiveAgentSystem;

pub use codec::{BrowserCodec, BrowserDecoder, BrowserEncoder};

use crate::hub::{AgentSource, Hub};
use crate::limits::{AuthHook, Limits, OriginPolicy};
use crate::peer::{PeerSetup, RemoteRecorder};
use crate::ShutdownHandle;

const PAGE: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const WORKLET_JS: &str = include_str!("page/worklet.js");

/// Serves an agent to browser tabs. Create it once (outside `HttpServer::new`), mount it in
/// every worker's `App` with [`configure`](Self::configure), and call
/// [`shutdown`](Self::shutdown) when the app stops.
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use liveagent::{openai, LiveAgent};
/// use liveagent_transport::BrowserTransport;
///
/// # async fn run() -> anyhow::Result<()> {
/// let agent = LiveAgent::builder("assistant")
///     .config(openai::RealtimeConfig::new("gpt-realtime-2"))
///     .build()?;
/// let browser = BrowserTransport::new(agent).path("/talk/");
/// let mount = browser.clone();
/// HttpServer::new(move || App::new().configure(mount.configure()))
///     .tcp_nodelay(true) // audio frames go out as they come (no Nagle delay)
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await?;
/// browser.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BrowserTransport {
    hub: Hub,
    prefix: String,
    origin: OriginPolicy,
    auth: Option<AuthHook>,
    serve_page: bool,
}

impl BrowserTransport {
    /// A transport running `agent` (a [`LiveAgent`](liveagent::LiveAgent) or an
    /// [`AgentSource::factory`]) for each connection, with default [`Limits`], the
    /// same-host Origin policy and no auth hook.
    pub fn new(agent: impl Into<AgentSource>) -> Self {
        BrowserTransport {
            hub: Hub::new(agent.into(), Limits::default(), LiveAgentSystem::new()),
            prefix: "/".into(),
            origin: OriginPolicy::default(),
            auth: None,
            serve_page: true,
        }
    }

    /// Mounts the routes under `prefix` (`/talk/` serves the page at `/talk/` and the socket
    /// at `/talk/ws`).
    pub fn path(mut self, prefix: &str) -> Self {
        let trimmed = prefix.trim_matches('/');
        self.prefix = if trimmed.is_empty() {
            "/".into()
        } else {
            format!("/{trimmed}/")
        };
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.hub.limits = limits;
        self
    }

    /// Records every conversation in `store` and lets a page resume its conversation on
    /// any instance sharing it: `ready` carries a resume token; a page whose socket drops
    /// reconnects (with backoff) and presents it in its `hello`; the instance that gets the
    /// new connection loads the conversation, restores it into a new provider session and
    /// takes its lease over (docs/transports.md, "Resuming"). Without this call the
    /// agent's own store ([`LiveAgentBuilder::store`](liveagent::LiveAgentBuilder::store))
    /// is used, if it has one.
    pub fn store(mut self, store: std::sync::Arc<dyn liveagent_store::ConversationStore>) -> Self {
        self.hub.store = Some(store);
        self
    }

    /// Sets the Origin policy (default: same host).
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// Checks each request before the upgrade (token, cookie...).
    pub fn auth(mut self, hook: AuthHook) -> Self {
        self.auth = Some(hook);
        self
    }

    /// Runs the conversations in `system` (to share its observers); by default the
    /// transport has its own.
    pub fn system(mut self, system: LiveAgentSystem) -> Self {
        self.hub.system = system;
        self
    }

    /// Serve the bundled page (default true); false mounts only the WebSocket, for your own
    /// page.
    pub fn serve_page(mut self, on: bool) -> Self {
        self.serve_page = on;
        self
    }

    /// The path of the page (`/` or the prefix).
    pub fn page_path(&self) -> &str {
        &self.prefix
    }

    /// The path of the WebSocket.
    pub fn ws_path(&self) -> String {
        format!("{}ws", self.prefix)
    }

    /// Conversations running now.
    pub fn conversations(&self) -> usize {
        self.hub.gate.running()
    }

    /// The system the conversations run in.
    pub fn agent_system(&self) -> &LiveAgentSystem {
        &self.hub.system
    }

    /// Provider socket read → audio frame queued for the remote side, per audio chunk (the
    /// most recent 100,000 measurements), for benchmarks and monitoring.
    pub fn audio_out_latency(&self) -> liveagent_core::LatencySamples {
        self.hub
            .audio_out_latency
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// A handle for [`crate::serve`] (or your own shutdown code).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.hub.clone())
    }

    /// Closes every connection (1001) and stops every conversation; true when all their
    /// actors ended within 5 s.
    pub async fn shutdown(&self) -> bool {
        self.hub.shutdown().await
    }

    /// The routes, for `App::configure`.
    pub fn configure(&self) -> impl FnOnce(&mut ServiceConfig) + 'static {
        let this = self.clone();
        move |cfg| this.config(cfg)
    }

    /// Adds the routes to `cfg`.
    pub fn config(&self, cfg: &mut ServiceConfig) {
        if self.serve_page {
            let page = |body: &'static str, ctype: &'static str| {
                move || async move {
                    HttpResponse::Ok()
                        .content_type(ctype)
                        .insert_header((header::CACHE_CONTROL, "no-cache"))
                        .insert_header((
                            header::CONTENT_SECURITY_POLICY,
                            "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'",
                        ))
                        .body(body)
                }
            };
            cfg.route(
                &self.prefix,
                web::get().to(page(PAGE, "text/html; charset=utf-8")),
            );
            cfg.route(
                &format!("{}app.js", self.prefix),
                web::get().to(page(APP_JS, "text/javascript; charset=utf-8")),
            );
            cfg.route(
                &format!("{}worklet.js", self.prefix),
                web::get().to(page(WORKLET_JS, "text/javascript; charset=utf-8")),
            );
        }
        let this = self.clone();
        cfg.route(
            &self.ws_path(),
            web::get().to(move |req: HttpRequest, body: web::Payload| {
                let this = this.clone();
                async move { this.upgrade(req, body) }
            }),
        );
    }

    fn upgrade(&self, req: HttpRequest, body: web::Payload) -> HttpResponse {
        if let Err(why) = self.origin.check(&req) {
            tracing::warn!(transport = "browser", %why, "upgrade refused");
            return HttpResponse::Forbidden().body(why);
        }
        if let Some(hook) = &self.auth {
            if let Err(resp) = hook.check(&req) {
                tracing::info!(transport = "browser", status = %resp.status(), "upgrade refused by the auth hook");
                return resp;
            }
        }
        let Some(permit) = self.hub.gate.try_acquire(self.hub.limits.max_conversations) else {
            tracing::warn!(
                transport = "browser",
                max = self.hub.limits.max_conversations,
                "conversation limit reached"
            );
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .body("too many conversations; try again later");
        };
        // actix-ws's `Session` is not used: the connection's actors write through the body
        // `RemoteRecorder::start` gives the response.
        let (resp, _session, stream) = match actix_ws::handle(&req, body) {
            Ok(x) => x,
            Err(e) => return e.error_response(),
        };
        let params: BTreeMap<String, String> =
            serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k != "token")
                .take(32)
                .collect();
        let (decoder, encoder) = BrowserCodec::new(params, crate::random_id("conv_")).split();
        RemoteRecorder::start(
            self.hub.clone(),
            permit,
            PeerSetup {
                label: "browser",
                decoder,
                encoder,
                start_now: None,
                error_frame: codec::error_frame,
                on_dtmf: None,
            },
            resp,
            stream,
        )
    }
}

impl std::fmt::Debug for BrowserTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserTransport")
            .field("prefix", &self.prefix)
            .field("limits", &self.hub.limits)
            .field("origin", &self.origin)
            .finish()
    }
}
