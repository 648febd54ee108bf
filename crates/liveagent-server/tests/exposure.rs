//! What the server exposes: the key on every route (debug pages included), loopback `Host`
//! values only unless configured (DNS rebinding), browser `Origin`s refused unless
//! allow-listed, an idle-session timeout and a per-address connection cap.

mod raw;

use std::time::Duration;

use liveagent_server::{LocalServer, ServerConfig};
use raw::{http, open, Frame};
use serde_json::json;

const GEMINI: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
const OPENAI: &str = "/v1/realtime?model=gpt-realtime";

#[actix_rt::test]
async fn every_route_needs_the_key_when_one_is_set() {
    let server = LocalServer::start(ServerConfig::default().with_api_key("sk-local-secret"))
        .await
        .unwrap();
    let addr = server.local_addr();
    for path in ["/debug/sessions", "/debug/stats", "/healthz", "/nope"] {
        let (status, body) = http(addr, "GET", path, &[]).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("invalid_api_key"), "{body}");
        assert!(!body.contains("sk-local-secret"));
        let (status, _) = http(addr, "GET", path, &[("Authorization", "Bearer sk-wrong")]).await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = http(
        addr,
        "GET",
        "/debug/sessions",
        &[("Authorization", "Bearer sk-local-secret")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http(
        addr,
        "GET",
        "/debug/stats",
        &[("x-goog-api-key", "sk-local-secret")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = http(addr, "GET", "/healthz?key=sk-local-secret", &[]).await;
    assert_eq!(status, 200);
    // A WebSocket upgrade to /debug is not a way around it.
    let r = open(addr, "/debug/sessions", &[], None).await;
    assert_eq!(r.status(), 401);
    // The provider routes still refuse in band, like the real ones.
    let mut ws = open(addr, OPENAI, &[], None).await.expect_upgraded();
    let ev = ws.json().await;
    assert_eq!(ev["error"]["code"], "invalid_api_key");
    assert!(matches!(ws.next().await, Frame::Close(Some(1008), _)));
    server.stop().await;
}

#[actix_rt::test]
async fn only_loopback_hosts_unless_configured() {
    let server = LocalServer::start(ServerConfig::default()).await.unwrap();
    let addr = server.local_addr();
    for host in [
        "evil.example",
        "evil.example:80",
        "127.0.0.1.nip.io",
        "192.168.1.9",
    ] {
        let (status, _) = http(addr, "GET", "/healthz", &[("Host", host)]).await;
        assert_eq!(status, 403, "{host}");
        let r = open(addr, OPENAI, &[("Host", host)], None).await;
        assert_eq!(r.status(), 403, "{host}");
    }
    let port = addr.port().to_string();
    for host in [
        "localhost",
        &format!("localhost:{port}"),
        &format!("127.0.0.1:{port}"),
        "[::1]",
    ] {
        let (status, body) = http(addr, "GET", "/healthz", &[("Host", host)]).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    server.stop().await;

    let server = LocalServer::start(ServerConfig {
        allowed_hosts: vec!["voice.internal".into()],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let (status, _) = http(
        server.local_addr(),
        "GET",
        "/healthz",
        &[("Host", "voice.internal:8765")],
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[actix_rt::test]
async fn browser_origins_are_refused_unless_allowed() {
    let server = LocalServer::start(ServerConfig {
        allowed_origins: vec!["http://localhost:3000".into()],
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    for origin in ["http://evil.example", "null", "http://localhost:3001"] {
        let r = open(addr, OPENAI, &[("Origin", origin)], None).await;
        assert_eq!(r.status(), 403, "{origin}");
        let r = open(addr, GEMINI, &[("Origin", origin)], None).await;
        assert_eq!(r.status(), 403, "{origin}");
        let (status, _) = http(addr, "GET", "/debug/sessions", &[("Origin", origin)]).await;
        assert_eq!(status, 403, "{origin}");
    }
    let mut ws = open(addr, OPENAI, &[("Origin", "http://localhost:3000")], None)
        .await
        .expect_upgraded();
    assert_eq!(ws.json().await["type"], "session.created");
    // Clients that are not browsers send no Origin at all.
    let mut ws = open(addr, OPENAI, &[], None).await.expect_upgraded();
    assert_eq!(ws.json().await["type"], "session.created");
    server.stop().await;
}

#[actix_rt::test]
async fn idle_sessions_are_closed() {
    let server = LocalServer::start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(300)),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let mut oa = open(addr, OPENAI, &[], None).await.expect_upgraded();
    assert_eq!(oa.json().await["type"], "session.created");
    let mut ge = open(addr, GEMINI, &[], None).await.expect_upgraded();
    ge.send_json(&json!({"setup": {"model": "models/x"}}))
        .await
        .unwrap();
    assert!(ge.json().await.get("setupComplete").is_some());
    // Pings do not count as activity.
    oa.send_ping(b"still here").await.unwrap();
    let err = loop {
        match oa.next().await {
            Frame::Text(t) => break serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            Frame::Pong(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(err["type"], "error");
    assert_eq!(err["error"]["code"], "session_expired");
    assert!(matches!(oa.next().await, Frame::Close(Some(1000), _)));
    match ge.next().await {
        Frame::Close(Some(1000), reason) => assert!(reason.contains("idle"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stats().idle_closed, 2);
    server.stop().await;
}

#[actix_rt::test]
async fn connections_per_address_are_capped() {
    let server = LocalServer::start(ServerConfig {
        max_connections_per_addr: 2,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr();
    let mut a = open(addr, OPENAI, &[], None).await.expect_upgraded();
    assert_eq!(a.json().await["type"], "session.created");
    let mut b = open(addr, OPENAI, &[], None).await.expect_upgraded();
    assert_eq!(b.json().await["type"], "session.created");
    let c = open(addr, OPENAI, &[], None).await;
    assert_eq!(c.status(), 429);
    drop(c);
    a.send_close(1000).await.unwrap();
    assert!(matches!(a.next().await, Frame::Close(..)));
    drop(a);
    // Once the server has let go of the closed connections, a new one is accepted.
    let end = std::time::Instant::now() + raw::HANG;
    while server.stats().tcp_open > 1 {
        assert!(std::time::Instant::now() < end, "connections never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut d = open(addr, OPENAI, &[], None).await.expect_upgraded();
    assert_eq!(d.json().await["type"], "session.created");
    drop(b);
    server.stop().await;
}
