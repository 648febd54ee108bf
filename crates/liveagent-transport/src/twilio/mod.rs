//! The Twilio Media Streams transport: a phone call to your Twilio number talks to the
//! agent.
//!
//! Routes, under the prefix set with [`TwilioTransport::path`] (default `/twilio/`):
//!
//! | route | what |
//! |---|---|
//! | `POST {prefix}voice` (or `GET`) | the voice webhook: answers TwiML `<Connect><Stream>` |
//! | `GET {prefix}media` | the Media Streams WebSocket (`connected`/`start`/`media`/`mark`/`dtmf`/`stop` in; `media`/`mark`/`clear` out) |
//!
//! With an auth token set, the webhook must carry a valid `X-Twilio-Signature` (403
//! otherwise; form-encoded and JSON bodies, see [`signature`]) and so must the stream's
//! WebSocket upgrade (403 otherwise), unless
//! [`accept_stream_token`](TwilioTransport::accept_stream_token) lets a stream present the
//! per-call token the webhook put in its `<Parameter>`s instead (closed with 1008 without it).
//!
//! Audio: when the agent's session takes 8 kHz audio (OpenAI with `audio/pcmu`), the
//! caller's μ-law goes to the provider with no resampling, and back the same way: G.711
//! expansion to PCM16 on the bus is a bit-exact round trip ([`crate::g711`]). Otherwise
//! (Gemini, OpenAI PCM 24 kHz) both directions are resampled.

pub mod codec;
pub mod signature;
pub mod wire;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use liveagent::LiveAgentSystem;
use liveagent_core::{ConversationContext, Secret};

pub use codec::{TwilioCodec, TwilioDecoder, TwilioEncoder};

use crate::hub::{AgentSource, Hub};
use crate::limits::Limits;
use crate::peer::{PeerSetup, RemoteRecorder};
use crate::ShutdownHandle;

/// The `<Parameter>` carrying the per-call stream token.
pub const TOKEN_PARAM: &str = "liveagent_token";

/// Webhook form fields forwarded to the stream as `<Parameter>`s by default.
pub const DEFAULT_FORWARDED: &[&str] = &["From", "To", "CallSid", "Direction", "CallerName"];

type DtmfHook = Arc<dyn Fn(&str, &ConversationContext) + Send + Sync>;

/// Serves an agent to phone calls through Twilio Media Streams. Create it once, mount it
/// with [`configure`](Self::configure), point your number's voice webhook at
/// `https://your.host{prefix}voice`.
///
/// ```no_run
/// use actix_web::{App, HttpServer};
/// use liveagent::{openai, LiveAgent};
/// use liveagent_transport::TwilioTransport;
///
/// # async fn run() -> anyhow::Result<()> {
/// let agent = LiveAgent::builder("receptionist")
///     .config(openai::RealtimeConfig::new("gpt-realtime-2")
///         .audio_formats(openai::AudioFormat::Pcmu, openai::AudioFormat::Pcmu))
///     .build()?;
/// let phone = TwilioTransport::new(agent)
///     .public_url("https://agent.example.com")
///     .auth_token(std::env::var("TWILIO_AUTH_TOKEN")?);
/// let mount = phone.clone();
/// HttpServer::new(move || App::new().configure(mount.configure()))
///     .tcp_nodelay(true) // audio frames go out as they come (no Nagle delay)
///     .bind(("127.0.0.1", 8080))?
///     .run()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TwilioTransport {
    hub: Hub,
    prefix: String,
    auth_token: Option<Secret>,
    public_url: Option<String>,
    forwarded: Vec<String>,
    parameters: Vec<(String, String)>,
    on_dtmf: Option<DtmfHook>,
    accept_stream_token: bool,
}

impl TwilioTransport {
    /// A transport running `agent` (a [`LiveAgent`](liveagent::LiveAgent), or an
    /// [`AgentSource::factory`] that sees each call's `<Parameter>`s) for each call.
    pub fn new(agent: impl Into<AgentSource>) -> Self {
        TwilioTransport {
            hub: Hub::new(agent.into(), Limits::default(), LiveAgentSystem::new()),
            prefix: "/twilio/".into(),
            auth_token: None,
            public_url: None,
            forwarded: DEFAULT_FORWARDED.iter().map(|s| s.to_string()).collect(),
            parameters: Vec::new(),
            on_dtmf: None,
            accept_stream_token: false,
        }
    }

    /// Mounts the routes under `prefix` (default `/twilio/`).
    pub fn path(mut self, prefix: &str) -> Self {
        let trimmed = prefix.trim_matches('/');
        self.prefix = if trimmed.is_empty() {
            "/".into()
        } else {
            format!("/{trimmed}/")
        };
        self
    }

    /// Validates `X-Twilio-Signature` with this auth token (your account's). Without it
    /// nothing is validated: only for local testing.
    pub fn auth_token(mut self, token: impl Into<String>) -> Self {
        let token: String = token.into();
        self.auth_token = (!token.is_empty()).then(|| Secret::new(token));
        self
    }

    /// With an auth token, also accept a media stream whose upgrade carries no valid
    /// `X-Twilio-Signature` when its `start` presents the per-call token the webhook put in
    /// its `<Parameter name="liveagent_token">` (default false: such upgrades get 403). For
    /// proxies that drop or rewrite the signature header; the token binds the stream to a
    /// call whose webhook was signed.
    pub fn accept_stream_token(mut self, on: bool) -> Self {
        self.accept_stream_token = on;
        self
    }

    /// The public base URL Twilio reaches this app at (`https://agent.example.com`): used
    /// to check signatures (Twilio signs the URL it called, not what a proxy forwards) and
    /// to build the stream URL. Without it both come from the request's `Host` and
    /// `X-Forwarded-Proto`.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Webhook form fields to forward to the conversation as `<Parameter>`s (default
    /// [`DEFAULT_FORWARDED`]).
    pub fn forward_fields(mut self, fields: &[&str]) -> Self {
        self.forwarded = fields.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Adds a fixed `<Parameter>` to every call's stream.
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.push((name.into(), value.into()));
        self
    }

    /// What a key press does (default: a `UserText` "[The caller pressed 5 on the keypad]"
    /// that the model answers).
    pub fn on_dtmf<F>(mut self, f: F) -> Self
    where
        F: Fn(&str, &ConversationContext) + Send + Sync + 'static,
    {
        self.on_dtmf = Some(Arc::new(f));
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.hub.limits = limits;
        self
    }

    /// Runs the conversations in `system`.
    pub fn system(mut self, system: LiveAgentSystem) -> Self {
        self.hub.system = system;
        self
    }

    /// The webhook path.
    pub fn webhook_path(&self) -> String {
        format!("{}voice", self.prefix)
    }

    /// The media stream path.
    pub fn media_path(&self) -> String {
        format!("{}media", self.prefix)
    }

    /// Calls running now.
    pub fn conversations(&self) -> usize {
        self.hub.gate.running()
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

    /// A handle for [`crate::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.hub.clone())
    }

    /// Hangs up every call (closes its stream) and stops every conversation.
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
        let this = self.clone();
        cfg.route(
            &self.webhook_path(),
            web::route()
                .guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Post()))
                .to(move |req: HttpRequest, body: web::Bytes| {
                    let this = this.clone();
                    async move { this.webhook(req, body) }
                }),
        );
        let this = self.clone();
        cfg.route(
            &self.media_path(),
            web::get().to(move |req: HttpRequest, body: web::Payload| {
                let this = this.clone();
                async move { this.media(req, body) }
            }),
        );
    }

    /// The URL Twilio used for this request, with `scheme` (https/wss) when derived.
    fn request_url(&self, req: &HttpRequest, secure_scheme: &str, plain_scheme: &str) -> String {
        let path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        match &self.public_url {
            Some(base) => {
                let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
                let scheme = if scheme == "https" {
                    secure_scheme
                } else {
                    plain_scheme
                };
                let host = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{host}{path_and_query}")
            }
            None => {
                let info = req.connection_info();
                let secure = info.scheme() == "https" || info.scheme() == "wss";
                let scheme = if secure { secure_scheme } else { plain_scheme };
                format!("{scheme}://{}{path_and_query}", info.host())
            }
        }
    }

    fn webhook(&self, req: HttpRequest, body: web::Bytes) -> HttpResponse {
        let mut form: Vec<(String, String)> =
            serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
        let is_post = req.method() == actix_web::http::Method::POST;
        // Twilio signs application/json webhooks over the URL, to which it adds
        // `bodySHA256=<hex SHA-256 of the body>`, and form webhooks over the URL plus the
        // sorted form fields.
        let body_signed = form.iter().any(|(k, _)| k == "bodySHA256");
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| {
                c.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        let body_params: Vec<(String, String)> = if !is_post {
            Vec::new()
        } else if is_json {
            match json_fields(&body) {
                Ok(p) => p,
                Err(e) => return HttpResponse::BadRequest().body(format!("bad JSON body: {e}")),
            }
        } else {
            match serde_urlencoded::from_bytes(&body) {
                Ok(p) => p,
                Err(e) => return HttpResponse::BadRequest().body(format!("bad form body: {e}")),
            }
        };
        if let Some(token) = &self.auth_token {
            let url = self.request_url(&req, "https", "http");
            let signature = req
                .headers()
                .get("x-twilio-signature")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let valid = !signature.is_empty()
                && if body_signed {
                    // JSON: the URL alone is signed; the body must match its hash.
                    signature::validate_with_body(token.expose(), &url, &body, signature)
                } else if is_json {
                    // Twilio always adds bodySHA256 to JSON webhooks.
                    false
                } else {
                    // POST: the URL (with its query) plus the body's fields; GET: the URL.
                    signature::validate(token.expose(), &url, &body_params, signature)
                };
            if !valid {
                tracing::warn!(transport = "twilio", %url, "webhook with a missing or wrong X-Twilio-Signature refused");
                return HttpResponse::Forbidden().body("invalid X-Twilio-Signature");
            }
        }
        form.extend(body_params);
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut params: Vec<(String, String)> = Vec::new();
        for name in &self.forwarded {
            if let Some(v) = field(name) {
                params.push((name.clone(), v.to_owned()));
            }
        }
        params.extend(self.parameters.iter().cloned());
        if let Some(token) = &self.auth_token {
            let call_sid = field("CallSid").unwrap_or_default();
            params.push((
                TOKEN_PARAM.into(),
                signature::stream_token(token.expose(), call_sid),
            ));
        }
        let mut stream_url = self.request_url(&req, "wss", "ws");
        if let Some(i) = stream_url.find("://") {
            let after = &stream_url[i + 3..];
            let host_end = after
                .find('/')
                .map(|j| i + 3 + j)
                .unwrap_or(stream_url.len());
            stream_url.truncate(host_end);
        }
        stream_url.push_str(&self.media_path());
        let mut xml = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=""#,
        );
        xml.push_str(&xml_escape(&stream_url));
        xml.push_str(r#"">"#);
        for (name, value) in params {
            // Twilio: name and value together must stay under 500 characters.
            let value: String = value
                .chars()
                .take(480usize.saturating_sub(name.len()))
                .collect();
            xml.push_str(&format!(
                r#"<Parameter name="{}" value="{}" />"#,
                xml_escape(&name),
                xml_escape(&value)
            ));
        }
        xml.push_str("</Stream></Connect></Response>");
        HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(xml)
    }

    fn media(&self, req: HttpRequest, body: web::Payload) -> HttpResponse {
        let mut codec = TwilioCodec::new();
        if let Some(token) = &self.auth_token {
            // Twilio signs the upgrade request over the `wss://` URL of the `<Stream>`.
            let url = self.request_url(&req, "wss", "ws");
            let none: [(&str, &str); 0] = [];
            let signed = req
                .headers()
                .get("x-twilio-signature")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|s| signature::validate(token.expose(), &url, &none, s));
            if !signed && !self.accept_stream_token {
                tracing::warn!(transport = "twilio", %url, "media stream upgrade with a missing or wrong X-Twilio-Signature refused");
                return HttpResponse::Forbidden().body("invalid X-Twilio-Signature");
            }
            if !signed {
                // Opted in: the per-call token from the webhook's <Parameter> instead.
                let token = token.clone();
                codec = codec.check_start(Arc::new(move |start| {
                    start.params.get(TOKEN_PARAM).is_some_and(|t| {
                        let expected = signature::stream_token(token.expose(), &start.call_sid);
                        crate::limits::constant_time_eq(t.as_bytes(), expected.as_bytes())
                    })
                }));
            }
        }
        let Some(permit) = self.hub.gate.try_acquire(self.hub.limits.max_conversations) else {
            tracing::warn!(transport = "twilio", "call limit reached");
            return HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "5"))
                .body("too many calls");
        };
        // actix-ws's `Session` is not used: the connection's actors write through the body
        // `RemoteRecorder::start` gives the response.
        let (resp, _session, stream) = match actix_ws::handle(&req, body) {
            Ok(x) => x,
            Err(e) => return e.error_response(),
        };
        let (decoder, encoder) = codec.split();
        RemoteRecorder::start(
            self.hub.clone(),
            permit,
            PeerSetup {
                label: "twilio",
                decoder,
                encoder,
                start_now: None,
                error_frame: |_, _| None,
                on_dtmf: self.on_dtmf.clone(),
            },
            resp,
            stream,
        )
    }
}

impl std::fmt::Debug for TwilioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioTransport")
            .field("prefix", &self.prefix)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// The fields of a JSON webhook body (an object): strings as they are, numbers and booleans
/// as text; nested values are left out.
fn json_fields(body: &[u8]) -> Result<Vec<(String, String)>, serde_json::Error> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)?;
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            serde_json::Value::Number(n) => Some((k, n.to_string())),
            serde_json::Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .collect())
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}
