//! What a transport lets in: the per-app conversation limit (HTTP 503 beyond it), the auth
//! hook and the Origin check run before the WebSocket upgrade, and the per-connection
//! bounds (frame size, outgoing queue, idle timeout, audio pace).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

/// Bounds that keep one app and each of its connections from being overrun.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Conversations this transport runs at once; further upgrades get HTTP 503
    /// (default 100).
    pub max_conversations: usize,
    /// Largest WebSocket message accepted from the remote side, in bytes (default 64 KiB);
    /// a bigger one closes the connection with 1009.
    pub max_frame_bytes: usize,
    /// Frames waiting to be written to a remote side that does not read; past this the
    /// connection is closed as stuck (default 2048: about a minute of 20–40 ms audio).
    pub max_queued_frames: usize,
    /// A connection that sends nothing for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// How long the remote side has to start (browser `hello`, Twilio `start`) before the
    /// connection is closed (default 10 s).
    pub start_timeout: Duration,
    /// Microphone audio may arrive at most this many times faster than real time (plus a
    /// 2 s burst) before the connection is closed (default 2.0).
    pub max_audio_pace: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conversations: 100,
            max_frame_bytes: 64 * 1024,
            max_queued_frames: 2048,
            idle_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(10),
            max_audio_pace: 2.0,
        }
    }
}

/// Counts running conversations against [`Limits::max_conversations`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Gate {
    running: Arc<AtomicUsize>,
}

/// One admitted conversation; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    running: Arc<AtomicUsize>,
}

impl Gate {
    pub(crate) fn try_acquire(&self, max: usize) -> Option<Permit> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Permit {
                running: self.running.clone(),
            })
    }

    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Which pages may open the browser WebSocket (the `Origin` header), against cross-site
/// WebSocket hijacking.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// The Origin's host (and port) must equal the request's `Host` (default). Requests
    /// without an Origin (non-browser clients) pass; guard them with the auth hook.
    #[default]
    SameHost,
    /// Only these origins (`https://app.example.com`, exact match, no trailing slash).
    /// Requests without an Origin are refused.
    AllowList(Vec<String>),
    /// Any origin (development only).
    Any,
}

impl OriginPolicy {
    /// Checks `req`; `Err` holds why it was refused.
    pub fn check(&self, req: &HttpRequest) -> Result<(), String> {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        match self {
            OriginPolicy::Any => Ok(()),
            OriginPolicy::AllowList(list) => match origin {
                Some(o) if list.iter().any(|a| a.trim_end_matches('/') == o) => Ok(()),
                Some(o) => Err(format!("origin {o} is not allowed")),
                None => Err("an Origin header is required".into()),
            },
            OriginPolicy::SameHost => {
                let Some(o) = origin else { return Ok(()) };
                let host = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let origin_host = o.split_once("://").map(|(_, h)| h).unwrap_or(o);
                if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
                    Ok(())
                } else {
                    Err(format!("origin {o} does not match host {host}"))
                }
            }
        }
    }
}

/// Decides, before the WebSocket upgrade, whether a request may start a conversation
/// (check a token in the query string, a cookie, a header...). Return `Err(response)` to
/// refuse with that response (401, 403...).
///
/// ```
/// use liveagent_transport::AuthHook;
/// use actix_web::HttpResponse;
/// // A session cookie set by your login page (look it up in your session store instead).
/// let hook = AuthHook::new(|req| {
///     let cookies = req.headers().get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
///     if cookies.split("; ").any(|c| c == "session=let-me-in") {
///         Ok(())
///     } else {
///         Err(HttpResponse::Unauthorized().body("log in first"))
///     }
/// });
/// # let _ = hook;
/// ```
#[derive(Clone)]
pub struct AuthHook(Arc<AuthFn>);

// A refusal is a whole response by design (the hook picks status, headers and body); it is
// built once per refused upgrade, so its size does not matter.
#[allow(clippy::result_large_err)]
type AuthFn = dyn Fn(&HttpRequest) -> Result<(), HttpResponse> + Send + Sync;

impl AuthHook {
    /// A hook from a function of the request.
    #[allow(clippy::result_large_err)]
    pub fn new<F>(f: F) -> Self
    where
        F: Fn(&HttpRequest) -> Result<(), HttpResponse> + Send + Sync + 'static,
    {
        AuthHook(Arc::new(f))
    }

    /// A hook that wants `?token=<token>` in the query string or `Authorization: Bearer
    /// <token>`, compared in constant time.
    #[allow(clippy::result_large_err)]
    pub fn bearer(token: impl Into<String>) -> Self {
        let token: Arc<str> = token.into().into();
        AuthHook::new(move |req| {
            let from_query =
                serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string())
                    .ok()
                    .and_then(|q| q.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v));
            let from_header = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            match from_query.or(from_header) {
                Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
                _ => Err(HttpResponse::Unauthorized().body("missing or wrong token")),
            }
        })
    }

    #[allow(clippy::result_large_err)]
    pub(crate) fn check(&self, req: &HttpRequest) -> Result<(), HttpResponse> {
        (self.0)(req)
    }
}

impl std::fmt::Debug for AuthHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthHook(..)")
    }
}

/// Compares two secrets without stopping at the first difference (the length is not
/// secret).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
