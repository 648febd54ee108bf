//! Exposure checks applied to every request before routing: the API key, the `Host` header
//! (loopback unless allow-listed, against DNS rebinding), the browser `Origin` (refused unless
//! allow-listed) and the number of TCP connections per client address.
//!
//! WebSocket upgrades on the provider routes are the exception for the key only: like the
//! real providers they are accepted and then refused in band (an `error` event and close code
//! 1008), which the session code does. Everything else without the key gets HTTP 401.

use std::any::Any;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::server::Shared;

/// Open TCP connections per client address.
#[derive(Default)]
pub(crate) struct ConnCounts {
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl ConnCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.by_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open connections from `ip` now.
    pub fn count(&self, ip: IpAddr) -> usize {
        self.lock().get(&ip).copied().unwrap_or(0)
    }
}

/// Lives in a connection's extensions: counts the connection while it is open, and keeps a
/// duplicate of its socket for the WebSocket sessions' clean close (see `conn.rs`).
pub(crate) struct ConnGuard {
    shared: Arc<Shared>,
    /// The client's address.
    pub ip: IpAddr,
    /// A duplicate handle on the socket (Unix; `None` elsewhere).
    pub sock: Option<Arc<std::net::TcpStream>>,
}

/// A second handle on the connection's socket.
#[cfg(unix)]
fn dup_socket(tcp: &actix_web::rt::net::TcpStream) -> Option<Arc<std::net::TcpStream>> {
    use std::os::fd::AsFd;
    let fd = tcp.as_fd().try_clone_to_owned().ok()?;
    Some(Arc::new(std::net::TcpStream::from(fd)))
}

#[cfg(not(unix))]
fn dup_socket(_tcp: &actix_web::rt::net::TcpStream) -> Option<Arc<std::net::TcpStream>> {
    None
}

/// The socket duplicate of the connection a request came on.
pub(crate) fn socket_of(req: &actix_web::HttpRequest) -> Option<Arc<std::net::TcpStream>> {
    req.conn_data::<ConnGuard>().and_then(|g| g.sock.clone())
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut m = self.shared.conns.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
        self.shared.stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The `HttpServer::on_connect` hook: registers a [`ConnGuard`] for each TCP connection.
pub(crate) fn on_connect(
    shared: Arc<Shared>,
) -> impl Fn(&dyn Any, &mut actix_web::dev::Extensions) {
    move |conn, ext| {
        let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else {
            return;
        };
        let Ok(peer) = tcp.peer_addr() else { return };
        *shared.conns.lock().entry(peer.ip()).or_insert(0) += 1;
        shared.stats.tcp_open.fetch_add(1, Ordering::Relaxed);
        shared.stats.tcp_accepted.fetch_add(1, Ordering::Relaxed);
        ext.insert(ConnGuard {
            shared: shared.clone(),
            ip: peer.ip(),
            sock: dup_socket(tcp),
        });
    }
}

/// Compares a presented key with the configured one through their SHA-256 digests, in
/// constant time: neither the content nor the length of the key shows in the timing.
pub(crate) fn key_matches(want: &str, got: &str) -> bool {
    let a = Sha256::digest(want.as_bytes());
    let b = Sha256::digest(got.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Every place a client may put the key: `Authorization: Bearer|Token`, `x-goog-api-key`,
/// `xi-api-key`, `api-key`, or the `key` query parameter.
pub(crate) fn presented_keys(req: &actix_web::HttpRequest) -> Vec<String> {
    let mut out = Vec::new();
    let h = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .map(str::to_owned)
    };
    if let Some(a) = h("authorization") {
        for p in ["Bearer ", "bearer ", "Token ", "token "] {
            if let Some(k) = a.strip_prefix(p) {
                out.push(k.trim().to_owned());
            }
        }
    }
    out.extend(
        ["x-goog-api-key", "xi-api-key", "api-key"]
            .iter()
            .filter_map(|n| h(n)),
    );
    if let Some(k) = crate::server::query_param(req, "key") {
        out.push(k);
    }
    out
}

/// The host part of a `Host` header value (`[::1]:80` → `[::1]`, `a:1` → `a`).
fn host_part(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(host)
}

/// Whether a `Host` header value is acceptable.
pub(crate) fn host_ok(host: &str, allowed: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = host_part(&host).trim_end_matches('.');
    if matches!(name, "localhost" | "127.0.0.1" | "[::1]") || name.ends_with(".localhost") {
        return true;
    }
    allowed.iter().any(|a| {
        let a = a.trim().to_ascii_lowercase();
        a == "*" || a == host || a == name
    })
}

/// Whether an `Origin` header value is acceptable.
pub(crate) fn origin_ok(origin: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin.trim()))
}

fn is_ws_upgrade(req: &ServiceRequest) -> bool {
    req.headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn refuse(
    shared: &Shared,
    status: actix_web::http::StatusCode,
    code: &str,
    message: &str,
) -> HttpResponse {
    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
    tracing::info!("refused a request: {message}");
    HttpResponse::build(status).json(json!({
        "error": {"type": "invalid_request_error", "code": code, "message": message, "param": null}
    }))
}

/// The middleware (`actix_web::middleware::from_fn`).
pub(crate) async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::http::StatusCode;
    let Some(shared) = req.app_data::<web::Data<Shared>>().cloned() else {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    };
    let cfg = &shared.cfg;
    let deny = |req: ServiceRequest, resp: HttpResponse| Ok(req.into_response(resp));
    if let Some(host) = req.headers().get("host") {
        let ok = host.to_str().is_ok_and(|h| host_ok(h, &cfg.allowed_hosts));
        if !ok {
            let resp = refuse(
                &shared,
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                "This Host is not allowed (the server accepts loopback names unless --allowed-host says otherwise).",
            );
            return deny(req, resp);
        }
    }
    if let Some(origin) = req.headers().get("origin") {
        let ok = origin
            .to_str()
            .is_ok_and(|o| origin_ok(o, &cfg.allowed_origins));
        if !ok {
            let resp = refuse(
                &shared,
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "Browser origins are refused unless allowed with --allowed-origin.",
            );
            return deny(req, resp);
        }
    }
    if cfg.max_connections_per_addr > 0 {
        let ip = req.conn_data::<ConnGuard>().map(|g| g.ip);
        if let Some(ip) = ip {
            if shared.conns.count(ip) > cfg.max_connections_per_addr {
                let resp = refuse(
                    &shared,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_connections",
                    "Too many open connections from this address.",
                );
                return deny(req, resp);
            }
        }
    }
    if let Some(want) = &cfg.api_key {
        let path = req.path();
        let provider_ws = is_ws_upgrade(&req) && !path.starts_with("/debug") && path != "/healthz";
        if !provider_ws {
            let ok = presented_keys(req.request())
                .iter()
                .any(|k| key_matches(want, k));
            if !ok {
                let resp = refuse(
                    &shared,
                    StatusCode::UNAUTHORIZED,
                    "invalid_api_key",
                    "Incorrect API key provided.",
                );
                return deny(req, resp);
            }
        }
    }
    next.call(req).await.map(|r| r.map_into_boxed_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let none: Vec<String> = Vec::new();
        for h in [
            "localhost",
            "localhost:8765",
            "127.0.0.1:1",
            "[::1]:80",
            "LOCALHOST",
            "a.localhost",
        ] {
            assert!(host_ok(h, &none), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8765",
            "127.0.0.1.evil.example",
            "localhost.evil",
            "10.0.0.2",
        ] {
            assert!(!host_ok(h, &none), "{h}");
        }
        let allowed = vec!["myhost".to_owned(), "other:9000".to_owned()];
        assert!(host_ok("myhost:1234", &allowed));
        assert!(host_ok("other:9000", &allowed));
        assert!(!host_ok("other:9001", &allowed));
    }

    #[test]
    fn origins() {
        assert!(!origin_ok("http://evil.example", &[]));
        assert!(!origin_ok("null", &[]));
        let allowed = vec!["http://localhost:3000".to_owned()];
        assert!(origin_ok("http://localhost:3000", &allowed));
        assert!(!origin_ok("http://localhost:3001", &allowed));
        assert!(origin_ok("http://x", &["*".to_owned()]));
    }

    #[test]
    fn key_digests() {
        assert!(key_matches("sk-abc", "sk-abc"));
        assert!(!key_matches("sk-abc", "sk-abd"));
        assert!(!key_matches("sk-abc", "sk-abc-longer"));
        assert!(!key_matches("sk-abc", ""));
    }
}
