//! Clean close through the public API (issue 13, item 3): when a conversation stops, when
//! `LiveAgentSystem` stops one conversation or shuts down, when the connection is renewed and
//! when a fatal provider error ends the session, the client sends a WebSocket Close and waits
//! for the peer's Close before dropping the socket: the peer (a scripted OpenAI Realtime or
//! Gemini Live peer on 127.0.0.1, `tests/support/peer.rs`) sees a Close frame, never a bare
//! EOF. Shutdown closes its conversations together, not one close timeout after another.

use std::time::Duration;

use liveagent::{openai, LiveAgent, LiveAgentSystem, LiveEvent};
use liveagent_e2e::peer::{ConnRecord, ScriptedPeer};
use liveagent_e2e::*;
use serde_json::json;

/// A peer that completes the handshake and answers nothing else.
async fn peer() -> ScriptedPeer {
    init_tracing();
    ScriptedPeer::openai(|_, _| Vec::new()).start().await
}

fn config(peer: &ScriptedPeer) -> openai::RealtimeConfig {
    openai::RealtimeConfig::new("gpt-realtime")
        .base_url(format!("{}/v1", peer.url()))
        .api_key("local-key")
}

fn agent(config: openai::RealtimeConfig) -> LiveAgent {
    LiveAgent::builder("assistant")
        .prompt("Test.")
        .config(config)
        .build()
        .expect("agent")
}

/// Every connection ended with the client's Close (code 1000), none at a bare EOF.
fn assert_closed_cleanly(conns: &[ConnRecord]) {
    for (i, c) in conns.iter().enumerate() {
        assert!(
            !c.eof_without_close(),
            "connection {i} ended at EOF without a Close"
        );
        assert_eq!(c.close, Some(Some(1000)), "connection {i}: {c:?}");
    }
}

async fn ready(run: &Run) {
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
}

#[actix_rt::test]
async fn stopping_a_conversation_sends_close_and_waits_for_the_peers() {
    let peer = peer().await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(config(&peer)),
    );
    ready(&run).await;
    run.conversation.stop().await;
    // `stop()` returns once the handshake is done: the peer has the Close already.
    let conns = peer.conns();
    assert_eq!(conns.len(), 1);
    assert_closed_cleanly(&conns);
    peer.stop().await;
}

#[actix_rt::test]
async fn the_system_closes_each_socket_on_stop_conversation_and_on_shutdown() {
    let peer = peer().await;
    let agent = agent(config(&peer));
    let system = LiveAgentSystem::new();
    let contexts: Vec<_> = (0..3).map(|_| system.run(&agent).expect("run")).collect();
    let mut updated = Vec::new();
    for c in &contexts {
        updated.push(c.stream().only::<liveagent::SessionUpdated>());
    }
    for u in &mut updated {
        use futures_util::StreamExt;
        tokio::time::timeout(FAILSAFE, u.next())
            .await
            .expect("session updated")
            .expect("stream open");
    }
    assert_eq!(peer.conns().len(), 3);

    system.stop_conversation(&contexts[1]).await;
    let conns = peer.conns();
    let closed: Vec<&ConnRecord> = conns.iter().filter(|c| c.ended).collect();
    assert_eq!(closed.len(), 1, "one conversation stopped: {conns:?}");
    assert_closed_cleanly(&closed.into_iter().cloned().collect::<Vec<_>>());
    assert_eq!(system.len(), 2);

    assert!(system.shutdown().await, "every actor ended");
    let conns = peer.conns();
    assert_eq!(conns.len(), 3, "no reconnect while shutting down");
    assert!(conns.iter().all(|c| c.ended), "{conns:?}");
    assert_closed_cleanly(&conns);
    peer.stop().await;
}

#[actix_rt::test]
async fn a_renewal_closes_the_old_connection_with_a_handshake() {
    let peer = peer().await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(config(&peer).max_connection_age(Duration::from_millis(300))),
    );
    ready(&run).await;
    run.wait_count("the renewal", 1, |e| {
        matches!(e, LiveEvent::SessionReconnected(_))
    })
    .await;
    peer.wait_until("the first connection to end", |c| c[0].ended)
        .await;
    assert_closed_cleanly(&peer.conns()[..1]);
    run.conversation.stop().await;
    let conns = peer.conns();
    assert!(conns.len() >= 2, "{conns:?}");
    assert!(conns.iter().all(|c| c.ended), "{conns:?}");
    assert_closed_cleanly(&conns);
    peer.stop().await;
}

#[actix_rt::test]
async fn a_fatal_provider_error_closes_with_a_handshake() {
    let peer = peer().await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(config(&peer)),
    );
    ready(&run).await;
    peer.send(
        0,
        json!({"type": "error", "event_id": "evt_err",
               "error": {"type": "insufficient_quota", "code": "insufficient_quota",
                         "message": "You exceeded your current quota."}})
        .to_string(),
    )
    .await;
    run.wait_count("the session to close", 1, |e| {
        matches!(e, LiveEvent::SessionClosed(_))
    })
    .await;
    peer.wait_until("the connection to end", |c| c[0].ended)
        .await;
    let conns = peer.conns();
    assert_eq!(conns.len(), 1, "a fatal error is not retried");
    assert_closed_cleanly(&conns);
    let fatal = run.collect(|e| match e {
        LiveEvent::ErrorEvent(e) => Some(e.error.kind),
        _ => None,
    });
    assert_eq!(fatal, vec![liveagent::ErrorKind::Quota]);
    validate_lines(&conns[0].wire_lines(), Protocol::OpenAi);
    run.conversation.stop().await;
    peer.stop().await;
}

/// Shutdown closes every conversation at once rather than one after another: with a peer
/// that answers no Close until it has the Close of all three conversations, each client
/// must still be waiting for its answer when the third Close arrives (one after another, the
/// first would have given up after its `close_timeout` before the second was even sent), and
/// then completes the handshake.
#[actix_rt::test]
async fn shutdown_closes_all_conversations_together() {
    init_tracing();
    let peer = ScriptedPeer::openai(|_, _| Vec::new())
        .answer_close(false)
        .start()
        .await;
    let agent = LiveAgent::builder("assistant")
        .prompt("Test.")
        .config(config(&peer))
        .session_options(liveagent::SessionOptions {
            close_timeout: Duration::from_secs(10),
            ..Default::default()
        })
        .build()
        .expect("agent");
    let system = LiveAgentSystem::new();
    for _ in 0..3 {
        let context = system.run(&agent).expect("run");
        let mut updated = context.stream().only::<liveagent::SessionUpdated>();
        use futures_util::StreamExt;
        tokio::time::timeout(FAILSAFE, updated.next())
            .await
            .expect("session updated");
    }
    let answer = async {
        peer.wait_until("the Close of every conversation", |c| {
            c.len() == 3 && c.iter().all(|c| c.close.is_some())
        })
        .await;
        let conns = peer.conns();
        assert!(
            conns.iter().all(|c| !c.ended),
            "a client gave up waiting before the last Close was sent: {:?}",
            conns.iter().map(|c| (c.close, c.ended)).collect::<Vec<_>>()
        );
        for n in 0..3 {
            peer.close(n, 1000).await;
        }
    };
    let (all_stopped, ()) = futures_util::join!(system.shutdown(), answer);
    assert!(all_stopped);
    peer.wait_until("every client to drop its socket", |c| {
        c.iter().all(|c| c.ended)
    })
    .await;
    assert_closed_cleanly(&peer.conns());
    peer.stop().await;
}

/// Gemini Live's renewal (the server's `goAway`) closes the old connection with a handshake
/// too, and stopping closes the new one.
#[actix_rt::test]
async fn a_gemini_go_away_renewal_and_stop_close_with_a_handshake() {
    init_tracing();
    let peer = ScriptedPeer::gemini(|_, _| Vec::new()).start().await;
    let run = Run::start(
        LiveAgent::builder("assistant").prompt("Test.").config(
            liveagent::gemini::RealtimeConfig::new("gemini-live")
                .base_url(peer.url())
                .api_key("local-key"),
        ),
    );
    ready(&run).await;
    peer.send(0, json!({"goAway": {"timeLeft": "5s"}}).to_string())
        .await;
    run.wait_count("the renewal", 1, |e| {
        matches!(e, LiveEvent::SessionReconnected(_))
    })
    .await;
    peer.wait_until("the first connection to end", |c| c[0].ended)
        .await;
    assert_closed_cleanly(&peer.conns()[..1]);
    run.conversation.stop().await;
    let conns = peer.conns();
    assert_eq!(conns.len(), 2, "one renewal");
    assert!(conns.iter().all(|c| c.ended));
    assert_closed_cleanly(&conns);
    let lines: Vec<String> = conns.iter().flat_map(|c| c.wire_lines()).collect();
    validate_lines(&lines, Protocol::Gemini);
    peer.stop().await;
}

/// A provider that never answers the Close does not hold `stop()`: after `close_timeout`
/// the client drops the socket and the conversation ends.
#[actix_rt::test]
async fn stop_gives_up_on_a_provider_that_never_answers_the_close() {
    init_tracing();
    let peer = ScriptedPeer::openai(|_, _| Vec::new())
        .answer_close(false)
        .start()
        .await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Test.")
            .config(config(&peer))
            .session_options(liveagent::SessionOptions {
                close_timeout: Duration::from_millis(300),
                ..Default::default()
            }),
    );
    ready(&run).await;
    let watch = run.conversation.watch();
    tokio::time::timeout(FAILSAFE, run.conversation.stop())
        .await
        .expect("stop() returned");
    assert!(watch.wait_stopped(FAILSAFE).await, "the actors ended");
    peer.wait_until("the client to drop the socket", |c| c[0].ended)
        .await;
    assert_eq!(peer.conn(0).close, Some(Some(1000)), "the Close was sent");
    peer.stop().await;
}

/// A raw OpenAI peer for one connection (tokio + actix-http's WebSocket codec): completes
/// the handshake, closes with `code`, then reads until the client's Close or EOF. Returns
/// the URL and what it saw: `Some(code)` for the client's Close, `None` for a bare EOF.
/// (With actix-web the connection ends as soon as the handler's Close is sent, so the
/// `ScriptedPeer` cannot see the answer.)
async fn raw_closing_peer(code: u16) -> (String, tokio::sync::oneshot::Receiver<Option<u16>>) {
    use actix_codec::Framed;
    use actix_http::ws::{hash_key, CloseReason, Codec, Frame, Message};
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    actix_rt::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        drop(listener); // later connections are refused
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if sock.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a WebSocket key");
        let accept = String::from_utf8(hash_key(key.as_bytes()).to_vec()).unwrap();
        sock.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut ws = Framed::new(sock, Codec::new());
        let created = json!({"type": "session.created", "event_id": "evt_created",
            "session": {"type": "realtime", "object": "realtime.session"}});
        let _ = ws.send(Message::Text(created.to_string().into())).await;
        while let Some(Ok(frame)) = ws.next().await {
            if let Frame::Text(t) = frame {
                if String::from_utf8_lossy(&t).contains("\"session.update\"") {
                    let updated = json!({"type": "session.updated", "event_id": "evt_updated",
                        "session": {"type": "realtime", "object": "realtime.session"}});
                    let _ = ws.send(Message::Text(updated.to_string().into())).await;
                    break;
                }
            }
        }
        let _ = ws
            .send(Message::Close(Some(CloseReason {
                code: code.into(),
                description: None,
            })))
            .await;
        let mut seen = None;
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Frame::Close(reason)) => {
                    seen = Some(reason.map(|r| u16::from(r.code)).unwrap_or(1005));
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        let _ = tx.send(seen);
    });
    (url, rx)
}

/// A Close from the provider (here 1011, a server error) is answered with a Close before
/// the client drops the socket and reconnects.
#[actix_rt::test]
async fn a_close_from_the_provider_is_answered() {
    init_tracing();
    let (url, seen) = raw_closing_peer(1011).await;
    let run = Run::start(
        LiveAgent::builder("assistant").prompt("Test.").config(
            openai::RealtimeConfig::new("gpt-realtime")
                .base_url(url)
                .api_key("local-key"),
        ),
    );
    let answer = tokio::time::timeout(FAILSAFE, seen)
        .await
        .expect("the peer saw the connection end")
        .expect("the peer ran");
    assert_eq!(answer, Some(1000), "the provider's Close was answered");
    run.wait_count("the reconnect attempt", 1, |e| {
        matches!(e, LiveEvent::SessionReconnecting(_))
    })
    .await;
    run.conversation.stop().await;
}
