//! RFC 6455 §7.1.1: once the close handshake is done the server closes the TCP connection
//! itself, at once, instead of leaving it open until actix-web's client-disconnect timeout
//! (which made every close of the official SDKs take about a second).
//!
//! No timing assertion: the tests check the order of events. The server runs one worker
//! thread, which finishes the closing connection's work before it can answer a second
//! connection's handshake; so by the time a second connection is upgraded, the first one must
//! already be at EOF (checked without waiting). A server that lingers fails this at once.

mod raw;

use liveagent_server::{LocalServer, ServerConfig};
use raw::{open, Frame, Raw};
use serde_json::json;

const GEMINI: &str =
    "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn config() -> ServerConfig {
    ServerConfig {
        workers: 1,
        ..ServerConfig::default()
    }
}

/// Opens a second OpenAI session and waits for its first event: everything the worker had to
/// do for earlier connections is done by then.
async fn after_another_handshake(server: &LocalServer) -> Raw {
    let mut b = open(
        server.local_addr(),
        "/v1/realtime?model=gpt-realtime",
        &[],
        None,
    )
    .await
    .expect_upgraded();
    assert_eq!(b.json().await["type"], "session.created");
    b
}

#[actix_rt::test]
async fn openai_client_close_is_answered_and_tcp_closed_at_once() {
    let server = LocalServer::start(config()).await.unwrap();
    let mut a = open(
        server.local_addr(),
        "/v1/realtime?model=gpt-realtime",
        &[],
        None,
    )
    .await
    .expect_upgraded();
    assert_eq!(a.json().await["type"], "session.created");
    a.send_close(1000).await.unwrap();
    assert_eq!(a.next().await, Frame::Close(Some(1000), String::new()));
    let _b = after_another_handshake(&server).await;
    assert!(
        a.eof_now(),
        "the server kept the TCP connection open after the close handshake"
    );
    assert_eq!(a.next().await, Frame::Eof);
    server.stop().await;
}

#[actix_rt::test]
async fn gemini_client_close_is_answered_and_tcp_closed_at_once() {
    let server = LocalServer::start(config()).await.unwrap();
    let mut a = open(server.local_addr(), GEMINI, &[], None)
        .await
        .expect_upgraded();
    a.send_json(&json!({"setup": {"model": "models/gemini-live"}}))
        .await
        .unwrap();
    assert!(a.json().await.get("setupComplete").is_some());
    a.send_close(1000).await.unwrap();
    assert_eq!(a.next().await, Frame::Close(Some(1000), String::new()));
    let _b = after_another_handshake(&server).await;
    assert!(
        a.eof_now(),
        "the server kept the TCP connection open after the close handshake"
    );
    server.stop().await;
}

/// Server-initiated close (a bad Gemini frame): the server sends its close frame, the client
/// answers with its own, and the TCP connection then ends (EOF, not a reset or a hang).
#[actix_rt::test]
async fn server_initiated_close_ends_tcp_after_the_clients_reply() {
    let server = LocalServer::start(config()).await.unwrap();
    let mut a = open(server.local_addr(), GEMINI, &[], None)
        .await
        .expect_upgraded();
    a.send_text("not json").await.unwrap();
    match a.next().await {
        Frame::Close(Some(1007), _) => {}
        other => panic!("expected close 1007, got {other:?}"),
    }
    a.send_close(1007).await.unwrap();
    assert_eq!(a.next().await, Frame::Eof);
    server.stop().await;
}

/// A client that never answers the server's close frame still gets its TCP connection closed
/// after the close timeout.
#[actix_rt::test]
async fn server_close_without_a_reply_still_ends_tcp() {
    let server = LocalServer::start(ServerConfig {
        close_timeout: std::time::Duration::from_millis(50),
        ..config()
    })
    .await
    .unwrap();
    let mut a = open(server.local_addr(), GEMINI, &[], None)
        .await
        .expect_upgraded();
    a.send_text("not json").await.unwrap();
    let tail = a.until_close().await;
    assert!(matches!(tail[0], Frame::Close(Some(1007), _)), "{tail:?}");
    assert_eq!(tail[1], Frame::Eof);
    server.stop().await;
}
