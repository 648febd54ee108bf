//! Per-connection bounds that a hostile or broken remote side runs into: a page that never
//! reads (bounded outgoing queue), microphone audio faster than real time, a connection that
//! never says `hello`, and the call limit on the Twilio endpoint (503). Each ends the
//! conversation and frees its slot; none panics or hangs.

mod support;

use std::time::Duration;

use liveagent_server::Pacing;
use liveagent_transport::{BrowserTransport, Limits, TwilioTransport};
use serde_json::json;
use support::*;

async fn hello(ws: &mut Ws) {
    ws.send(&json!({"type":"hello","protocol":1,"input_rate":24000,"output_rate":24000}))
        .await;
    ws.until("ready").await;
}

/// A page that asks for a long answer and then never reads: the outgoing queue fills
/// (`max_queued_frames`), the connection is dropped, the conversation ends and its provider
/// session closes, and the slot is free again. When the page finally reads, its socket ends
/// instead of hanging.
#[actix_rt::test]
async fn a_page_that_does_not_read_is_dropped_and_its_conversation_ends() {
    // Two minutes of answer audio (about 5.8 MB of PCM16), produced as fast as possible.
    let scenario = r#"
name = "long answer"
[[turn]]
steps = [{ say = "This is a very long answer.", audio_ms = 120000 }]
"#;
    let server = local_server(Some(scenario), Pacing::AsFastAsPossible).await;
    let transport = BrowserTransport::new(agent_builder(&server).build().unwrap()).limits(Limits {
        max_queued_frames: 16,
        max_conversations: 1,
        ..Limits::default()
    });
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/ws");

    let mut ws = ws_connect(&url, &[]).await.expect("upgrade");
    hello(&mut ws).await;
    assert_eq!(
        ws_connect(&url, &[]).await.err(),
        Some(503),
        "the one slot is taken"
    );
    ws.send(&json!({"type":"text","text":"Tell me everything."}))
        .await;
    // From here on the page reads nothing.
    wait_for("the stuck connection to be dropped", || {
        transport.conversations() == 0
    })
    .await;
    wait_for("its provider session to close", || {
        !server.sessions().is_empty() && server.sessions().iter().all(|s| !s.connected)
    })
    .await;
    // The slot is free for the next page.
    let mut next = ws_connect(&url, &[]).await.expect("slot freed");
    hello(&mut next).await;
    // The stuck page's socket ends (close or EOF) once it reads; it got far less than the
    // whole answer.
    let mut audio = 0usize;
    loop {
        match ws.next().await {
            Got::Binary(b) => audio += b.len(),
            Got::Json(_) => {}
            Got::Close(_) | Got::Eof => break,
        }
    }
    assert!(
        audio < 5_760_000,
        "got {audio} bytes: the whole answer was queued"
    );
    next.close().await;
    wait_for("the next page to end", || transport.conversations() == 0).await;
    handle.stop(true).await;
    server.stop().await;
}

/// Microphone audio much faster than real time (past the 2 s burst allowance) is refused:
/// `error` `audio_too_fast` and close 1008.
#[actix_rt::test]
async fn audio_faster_than_real_time_is_refused() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = BrowserTransport::new(agent_builder(&server).build().unwrap());
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let mut ws = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[])
        .await
        .unwrap();
    hello(&mut ws).await;
    // 6 s of silence at once.
    for _ in 0..300 {
        ws.send_binary(vec![0u8; 960]).await;
    }
    let (close, before) = ws.until_close().await;
    assert!(
        before
            .iter()
            .any(|v| v["type"] == "error" && v["code"] == "audio_too_fast"),
        "{before:?}"
    );
    assert_eq!(close.map(|c| c.0), Some(1008));
    wait_for("the conversation to end", || transport.conversations() == 0).await;
    handle.stop(true).await;
    server.stop().await;
}

/// A connection that never says `hello` is closed after `start_timeout` (1008) without a
/// conversation ever starting; one that never sends Twilio's `start` likewise.
#[actix_rt::test]
async fn silent_connections_are_closed_after_the_start_timeout() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let limits = Limits {
        start_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let agent = agent_builder(&server).build().unwrap();
    let browser = BrowserTransport::new(agent.clone()).limits(limits.clone());
    let phone = TwilioTransport::new(agent).limits(limits);
    let (b, p) = (browser.clone(), phone.clone());
    let (port, handle) = serve(move |cfg| {
        b.config(cfg);
        p.config(cfg);
    });
    let mut page = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[])
        .await
        .unwrap();
    let (close, before) = page.until_close().await;
    assert_eq!(close.map(|c| c.0), Some(1008));
    assert!(
        before.iter().any(|v| v["code"] == "start_timeout"),
        "{before:?}"
    );
    let mut call = ws_connect(&format!("ws://127.0.0.1:{port}/twilio/media"), &[])
        .await
        .unwrap();
    call.send(&json!({"event":"connected","protocol":"Call","version":"1.0.0"}))
        .await;
    let (close, _) = call.until_close().await;
    assert_eq!(close.map(|c| c.0), Some(1008));
    assert!(
        server.sessions().is_empty(),
        "no provider session was opened"
    );
    wait_for("the slots to free", || {
        browser.conversations() == 0 && phone.conversations() == 0
    })
    .await;
    handle.stop(true).await;
    server.stop().await;
}

/// The Twilio endpoint has the same conversation limit: the call beyond it gets 503.
#[actix_rt::test]
async fn twilio_calls_beyond_the_limit_get_503() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let phone = TwilioTransport::new(agent_builder(&server).build().unwrap()).limits(Limits {
        max_conversations: 2,
        ..Limits::default()
    });
    let mount = phone.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/twilio/media");
    let mut a = ws_connect(&url, &[]).await.expect("first call");
    let mut b = ws_connect(&url, &[]).await.expect("second call");
    assert_eq!(ws_connect(&url, &[]).await.err(), Some(503));
    a.close().await;
    wait_for("a slot to free", || phone.conversations() == 1).await;
    let mut c = ws_connect(&url, &[]).await.expect("slot freed");
    b.close().await;
    c.close().await;
    wait_for("every slot to free", || phone.conversations() == 0).await;
    handle.stop(true).await;
    server.stop().await;
}
