//! When the app stops (SIGTERM to the process running `liveagent_transport::serve`), every
//! connection of every mounted transport is closed with 1001, every conversation stops and
//! its provider session closes, and `serve` returns. Its own test binary: it signals its own
//! process.

mod support;

use actix_web::{App, HttpServer};
use liveagent_server::Pacing;
use liveagent_transport::{BrowserTransport, TwilioTransport};
use serde_json::json;
use support::*;

#[actix_rt::test]
async fn sigterm_closes_every_connection_and_conversation() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let agent = agent_builder(&server).build().unwrap();
    let browser = BrowserTransport::new(agent.clone());
    let phone = TwilioTransport::new(agent);
    let (b, p) = (browser.clone(), phone.clone());
    let http =
        HttpServer::new(move || App::new().configure(b.configure()).configure(p.configure()))
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
    let port = http.addrs()[0].port();
    let served = actix_rt::spawn(liveagent_transport::serve(
        http.run(),
        [browser.shutdown_handle(), phone.shutdown_handle()],
    ));

    let mut pages = Vec::new();
    for _ in 0..2 {
        let mut ws = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[])
            .await
            .unwrap();
        ws.send(&json!({"type":"hello","protocol":1,"input_rate":24000,"output_rate":24000}))
            .await;
        ws.until("ready").await;
        pages.push(ws);
    }
    let mut call = ws_connect(&format!("ws://127.0.0.1:{port}/twilio/media"), &[])
        .await
        .unwrap();
    call.send(&json!({"event":"connected","protocol":"Call","version":"1.0.0"}))
        .await;
    call.send(&json!({
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC1",
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {}}
    }))
    .await;
    wait_for("three provider sessions", || {
        server.sessions().iter().filter(|s| s.connected).count() == 3
    })
    .await;
    assert_eq!(browser.conversations() + phone.conversations(), 3);

    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    for ws in pages.iter_mut().chain(std::iter::once(&mut call)) {
        let (close, _) = ws.until_close().await;
        assert_eq!(close.map(|c| c.0), Some(1001));
    }
    // The peers hang up, as browsers and Twilio do after a close frame; then the server's
    // graceful stop has no connection left to wait for.
    drop(pages);
    drop(call);
    tokio::time::timeout(FAILSAFE, served)
        .await
        .expect("serve returned")
        .expect("join")
        .expect("serve ok");
    assert_eq!(browser.conversations() + phone.conversations(), 0);
    assert!(browser.agent_system().is_empty());
    wait_for("the provider sessions to close", || {
        server.sessions().iter().all(|s| !s.connected)
    })
    .await;
    server.stop().await;
}
