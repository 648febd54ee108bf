//! The HTTP server, shared state, routing and [`LocalServer`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};

use crate::brain::{Brain, ScenarioState};
use crate::guard::ConnCounts;
use crate::items::SessionInfo;
use crate::record::Recorder;
use crate::registry::Registry;
use crate::resume::ResumeStore;
use crate::stats::{Stats, StatsSnapshot};
use crate::ServerConfig;

/// State shared by every worker and session.
pub(crate) struct Shared {
    pub cfg: ServerConfig,
    pub recorder: Recorder,
    pub stats: Stats,
    /// Live sessions (asked for snapshots on demand) and the bounded closed history.
    pub registry: Registry,
    next_session: AtomicU64,
    next_id: AtomicU64,
    scenario_states: Mutex<HashMap<String, Arc<ScenarioState>>>,
    /// Gemini resumable states.
    pub resumption: ResumeStore,
    /// Open TCP connections per client address.
    pub conns: ConnCounts,
    /// Minted ephemeral credentials (OpenAI client secrets, Gemini auth tokens).
    pub tokens: crate::tokens::TokenStore,
}

/// The brain a connection uses, with the state shared across its reconnects.
#[derive(Clone)]
pub(crate) struct Selected {
    pub key: Option<String>,
    pub brain: Brain,
    pub state: Arc<ScenarioState>,
}

impl Shared {
    fn new(cfg: ServerConfig, recorder: Recorder) -> Self {
        Shared {
            registry: Registry::new(cfg.closed_sessions_kept, cfg.closed_sessions_bytes),
            resumption: ResumeStore::new(cfg.resumption_ttl, cfg.resumption_bytes),
            conns: ConnCounts::default(),
            tokens: crate::tokens::TokenStore::default(),
            cfg,
            recorder,
            stats: Stats::default(),
            next_session: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
            scenario_states: Mutex::new(HashMap::new()),
        }
    }

    /// A new server-wide session number.
    pub fn new_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// A new unique id with `prefix`, e.g. `item_0007`.
    pub fn new_id(&self, prefix: &str) -> String {
        format!(
            "{prefix}_{:04}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Picks the brain for a connection: an explicit scenario key (URL prefix or query
    /// parameter), else a model name equal to a scenario key, else the server's brain.
    pub fn select(&self, key: Option<&str>, model: Option<&str>) -> Result<Selected, String> {
        let model_key = model
            .map(|m| m.trim_start_matches("models/"))
            .filter(|m| self.cfg.scenarios.contains_key(*m));
        let (key, brain) = match key.or(model_key) {
            Some("echo") if !self.cfg.scenarios.contains_key("echo") => {
                (Some("echo".to_owned()), Brain::Echo)
            }
            Some(k) => match self.cfg.scenarios.get(k) {
                Some(s) => (Some(k.to_owned()), Brain::Script(s.clone())),
                None => return Err(format!("unknown scenario '{k}'")),
            },
            None => (None, self.cfg.brain.clone()),
        };
        let state_key = key.clone().unwrap_or_default();
        let state = {
            let mut states = self
                .scenario_states
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            states
                .entry(state_key)
                .or_insert_with(|| Arc::new(ScenarioState::new(brain.scenario())))
                .clone()
        };
        Ok(Selected { key, brain, state })
    }

    /// Checks a presented key against the configured one (constant time over SHA-256
    /// digests, so that not even the key's length shows).
    pub fn key_ok(&self, presented: Option<&str>) -> bool {
        match &self.cfg.api_key {
            None => true,
            Some(want) => presented.is_some_and(|got| crate::guard::key_matches(want, got)),
        }
    }

    /// The counters, with the registry's and resumption store's sizes.
    pub fn stats_snapshot(&self) -> StatsSnapshot {
        let mut s = self.stats.snapshot();
        s.sessions_kept_closed = self.registry.closed_count() as u64;
        let (states, bytes) = self.resumption.usage();
        s.resumable_states = states as u64;
        s.resumable_bytes = bytes as u64;
        s.heap = crate::heap::heap_stats();
        s.scenario_turns = self
            .scenario_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, st)| {
                (
                    k.clone(),
                    st.turns.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        s
    }
}

/// Reads a query parameter (percent-decoding `%XX` and `+`).
pub(crate) fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get(name).cloned())
}

/// The `Authorization: Bearer` token, if any.
pub(crate) fn bearer(req: &HttpRequest) -> Option<String> {
    let v = req.headers().get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(|s| s.trim().to_owned())
}

/// A running local server. Dropping it stops the server too (without waiting).
pub struct LocalServer {
    addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl LocalServer {
    /// Binds 127.0.0.1:`config.port` (0 = a free port) and starts serving on its own
    /// thread (with its own actix system), so it works from any async runtime.
    pub async fn start(config: ServerConfig) -> std::io::Result<LocalServer> {
        let recorder = Recorder::new(config.record.as_deref(), config.record_in_memory)?;
        let shared = Arc::new(Shared::new(config, recorder));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("liveagent-server".into())
            .spawn(move || {
                let sys = actix_rt::System::new();
                sys.block_on(async move {
                    let shared = thread_shared;
                    let workers = shared.cfg.workers.max(1);
                    let port = shared.cfg.port;
                    let data = web::Data::from(shared.clone());
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .wrap(middleware::from_fn(crate::guard::check))
                            .configure(routes)
                    })
                    .on_connect(crate::guard::on_connect(shared.clone()))
                    // Realtime audio is a stream of small frames: no Nagle delays, like the
                    // providers' servers.
                    .tcp_nodelay(true)
                    .workers(workers)
                    .disable_signals()
                    .shutdown_timeout(1)
                    // Close TCP as soon as a response (a WebSocket included) is over instead
                    // of lingering for the client: RFC 6455 §7.1.1, see conn.rs.
                    .client_disconnect_timeout(Duration::ZERO)
                    .max_connections(100_000)
                    .backlog(4096)
                    .bind(("127.0.0.1", port));
                    let server = match bound {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let addr = server.addrs()[0];
                    let running = server.run();
                    let _ = tx.send(Ok((addr, running.handle())));
                    if let Err(e) = running.await {
                        tracing::error!("local server stopped with an error: {e}");
                    }
                });
            })?;
        let (addr, handle) = rx
            .await
            .map_err(|_| std::io::Error::other("local server thread ended before binding"))??;
        tracing::info!("local realtime server listening on {addr}");
        Ok(LocalServer {
            addr,
            handle,
            thread: Some(thread),
            shared,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// OpenAI base URL, `ws://127.0.0.1:PORT/v1` (clients append `/realtime?model=…`).
    pub fn openai_url(&self) -> String {
        format!("ws://{}/v1", self.addr)
    }

    /// Gemini base URL, `ws://127.0.0.1:PORT` (clients append `/ws/google.ai…`).
    pub fn gemini_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// HTTP base URL, `http://127.0.0.1:PORT` (serves `POST /v1/chat/completions`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// OpenAI base URL whose connections use the named scenario: `ws://…/s/NAME/v1`.
    pub fn openai_url_for(&self, scenario: &str) -> String {
        format!("ws://{}/s/{scenario}/v1", self.addr)
    }

    /// Gemini base URL whose connections use the named scenario: `ws://…/s/NAME`.
    pub fn gemini_url_for(&self, scenario: &str) -> String {
        format!("ws://{}/s/{scenario}", self.addr)
    }

    /// HTTP base URL whose chat completions use the named scenario: `http://…/s/NAME`.
    pub fn http_url_for(&self, scenario: &str) -> String {
        format!("http://{}/s/{scenario}", self.addr)
    }

    /// Snapshots of every open session and of the recently closed ones (see
    /// [`ServerConfig::closed_sessions_kept`]), oldest first. Live sessions are asked for
    /// their snapshot, so this waits for them briefly; call it from a test or an app
    /// thread, not from inside a server handler.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.shared.registry.snapshot_blocking()
    }

    /// The in-memory recording (needs [`ServerConfig::record_in_memory`]).
    pub fn recording(&self) -> Vec<String> {
        self.shared.recorder.lines()
    }

    /// Server counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats_snapshot()
    }

    /// User turns answered so far for a scenario key (`None` = the server's default brain).
    pub fn turns_answered(&self, scenario: Option<&str>) -> u32 {
        self.shared
            .select(scenario, None)
            .map(|s| s.state.turns.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Stops the server: closes the listener and every connection, and waits for the
    /// server thread to end.
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let _ = t.join();
        }
        // Sessions cut by the shutdown normally file their final snapshot as their task is
        // dropped; any left are marked disconnected.
        self.shared.registry.all_closed();
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Sends the stop command at once; the future only waits for completion.
            drop(self.handle.stop(false));
        }
    }
}

impl std::fmt::Debug for LocalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/realtime", web::get().to(crate::openai::ws_route))
        .route(
            "/s/{scenario}/v1/realtime",
            web::get().to(crate::openai::ws_route),
        )
        .route(
            "/v1/realtime/client_secrets",
            web::post().to(crate::tokens::openai_client_secrets),
        )
        .route(
            "/v1alpha/auth_tokens",
            web::post().to(crate::tokens::gemini_auth_tokens),
        )
        .route("/ws/{method}", web::get().to(crate::gemini::ws_route))
        .route(
            "/ws/{service}/{method}",
            web::get().to(crate::gemini::ws_route),
        )
        .route(
            "/s/{scenario}/ws/{method}",
            web::get().to(crate::gemini::ws_route),
        )
        .route(
            "/v1/chat/completions",
            web::post().to(crate::chat::completions),
        )
        .route(
            "/s/{scenario}/v1/chat/completions",
            web::post().to(crate::chat::completions),
        )
        .configure(crate::cascade::routes)
        .route("/debug/sessions", web::get().to(debug_sessions))
        .route("/debug/stats", web::get().to(debug_stats))
        .route(
            "/healthz",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        );
}

async fn debug_sessions(shared: web::Data<Shared>) -> HttpResponse {
    let s: Vec<SessionInfo> = shared.registry.snapshot().await;
    HttpResponse::Ok().json(s)
}

async fn debug_stats(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.stats_snapshot())
}
