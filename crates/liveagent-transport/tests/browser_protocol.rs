//! The browser transport's WebSocket protocol driven by a raw client (no browser): the
//! documented message flow, barge-in truncation at the reported position, limits, auth,
//! Origin checks, hostile frames and shutdown. The agent runs against the local realtime
//! server over real sockets.

mod support;

use std::time::Duration;

use liveagent_server::Pacing;
use liveagent_transport::{AuthHook, BrowserTransport, Limits, OriginPolicy};
use serde_json::json;
use support::*;

fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Sends `samples` (16 kHz) as 20 ms binary frames, a little faster than real time.
async fn speak(ws: &mut Ws, samples: &[i16]) {
    for frame in samples.chunks(320) {
        ws.send_binary(pcm_bytes(frame)).await;
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
}

fn question() -> Vec<i16> {
    let mut pcm = liveagent_testkit::speech_pcm("What is the weather in Paris?", 16_000);
    pcm.extend(std::iter::repeat_n(0i16, 16_000)); // a second of silence ends the turn
    pcm
}

async fn hello(ws: &mut Ws, input_rate: u32, output_rate: u32) -> serde_json::Value {
    ws.send(
        &json!({"type":"hello","protocol":1,"input_rate":input_rate,"output_rate":output_rate}),
    )
    .await;
    ws.until("ready").await.0
}

/// A spoken turn: speech events, both transcripts, the answer's audio at the page's rate
/// framed by `audio` / `audio_done`, then a typed message answered, then `end` closes it all.
#[actix_rt::test]
async fn documented_flow_from_hello_to_end() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = BrowserTransport::new(agent_builder(&server).build().unwrap());
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/ws");

    let mut ws = ws_connect(&url, &[]).await.expect("upgrade");
    let ready = hello(&mut ws, 16_000, 48_000).await;
    assert_eq!(ready["protocol"], 1);
    assert_eq!(ready["input_rate"], 16_000);
    assert_eq!(ready["output_rate"], 48_000);
    assert!(ready["conversation_id"]
        .as_str()
        .unwrap()
        .starts_with("conv_"));
    assert!(ready["resume_token"].is_null());

    speak(&mut ws, &question()).await;
    let (audio, before) = ws.until("audio").await;
    let seen = |k: &str| {
        before
            .iter()
            .any(|g| matches!(g, Got::Json(v) if v["type"] == k))
    };
    assert!(
        seen("speech_started") && seen("speech_stopped"),
        "{before:?}"
    );
    let item = audio["item_id"].as_str().unwrap().to_owned();
    let (done, between) = ws.until("audio_done").await;
    assert_eq!(done["item_id"], item.as_str());
    let bytes: usize = between
        .iter()
        .map(|g| match g {
            Got::Binary(b) => {
                assert_eq!(b.len() % 2, 0);
                b.len()
            }
            _ => 0,
        })
        .sum();
    let samples = bytes / 2;
    assert!(
        samples > 48_000 / 2,
        "the echo of ~2 s of speech at 48 kHz: {samples} samples"
    );
    let transcripts: Vec<_> = before
        .iter()
        .chain(&between)
        .filter_map(|g| match g {
            Got::Json(v) if v["type"] == "transcript" => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert!(
        transcripts
            .iter()
            .any(|t| t["role"] == "user" && t["text"].as_str().unwrap().contains("[speech")),
        "{transcripts:?}"
    );
    // The page reports it played the whole item: no truncation follows.
    ws.send(&json!({"type":"played","item_id":item,"samples":samples,"state":"drained"}))
        .await;
    ws.until("response_done").await;

    ws.send(&json!({"type":"text","text":"hello there"})).await;
    let (t, _) = ws.until("transcript").await;
    assert_eq!(t["role"], "assistant");
    ws.until("response_done").await;

    ws.send(&json!({"type":"end"})).await;
    let (close, _) = ws.until_close().await;
    assert_eq!(close.map(|c| c.0), Some(1000));
    wait_for("the conversation to end", || transport.conversations() == 0).await;
    wait_for("the provider session to close", || {
        server.sessions().iter().all(|s| !s.connected)
    })
    .await;
    let frames = client_frames(&server);
    assert!(!frames
        .iter()
        .any(|f| f["type"] == "conversation.item.truncate"));
    assert!(frames
        .iter()
        .any(|f| f["type"] == "conversation.item.create" && f.to_string().contains("hello there")));
    assert!(transport.shutdown().await);
    handle.stop(true).await;
    server.stop().await;
}

/// Barge-in: the page gets `interrupted`, answers with its played position, and the provider
/// receives `conversation.item.truncate` at exactly that position.
#[actix_rt::test]
async fn interrupted_flush_report_becomes_the_truncate_position() {
    let scenario = r#"
        [[turn]]
        say = "This answer is long enough to be interrupted halfway through by the user who speaks again."
    "#;
    let server = local_server(Some(scenario), Pacing::RealTime).await;
    let transport = BrowserTransport::new(agent_builder(&server).build().unwrap());
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let mut ws = ws_connect(&format!("ws://127.0.0.1:{port}/ws"), &[])
        .await
        .unwrap();
    hello(&mut ws, 16_000, 24_000).await;
    speak(&mut ws, &question()).await;
    let (audio, _) = ws.until("audio").await;
    let item = audio["item_id"].as_str().unwrap().to_owned();
    // Speak again over the answer.
    let mut again = liveagent_testkit::speech_pcm("Stop, please.", 16_000);
    again.extend(std::iter::repeat_n(0i16, 16_000));
    let mut interrupted = None;
    for frame in again.chunks(320) {
        ws.send_binary(pcm_bytes(frame)).await;
        // Drain what arrived meanwhile, without blocking.
        while let Ok(got) = tokio::time::timeout(Duration::from_millis(5), ws.next()).await {
            if let Got::Json(v) = &got {
                if v["type"] == "interrupted" {
                    interrupted = Some(v.clone());
                }
            }
            if interrupted.is_some() {
                break;
            }
        }
        if interrupted.is_some() {
            break;
        }
    }
    let interrupted = match interrupted {
        Some(i) => i,
        None => ws.until("interrupted").await.0,
    };
    assert_eq!(interrupted["item_id"], item.as_str());
    // "We played 0.3 s of it."
    ws.send(&json!({"type":"played","item_id":item,"samples":7_200,"state":"flushed"}))
        .await;
    wait_for("a truncate", || {
        client_frames(&server)
            .iter()
            .any(|f| f["type"] == "conversation.item.truncate")
    })
    .await;
    let truncate = client_frames(&server)
        .into_iter()
        .find(|f| f["type"] == "conversation.item.truncate")
        .unwrap();
    assert_eq!(truncate["item_id"], item.as_str());
    assert_eq!(truncate["audio_end_ms"], 300);
    ws.close().await;
    wait_for("the conversation to end", || transport.conversations() == 0).await;
    handle.stop(true).await;
    server.stop().await;
}

/// 503 past the conversation limit, 403 for a foreign Origin, 401 without the token.
#[actix_rt::test]
async fn limits_origin_and_auth_are_checked_before_the_upgrade() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = BrowserTransport::new(agent_builder(&server).build().unwrap())
        .limits(Limits {
            max_conversations: 1,
            ..Limits::default()
        })
        .origin_policy(OriginPolicy::AllowList(vec!["http://good.example".into()]))
        .auth(AuthHook::bearer("s3cret"));
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let base = format!("ws://127.0.0.1:{port}/ws");
    let good = [("Origin", "http://good.example")];

    assert_eq!(ws_connect(&base, &good).await.err(), Some(401));
    let with_token = format!("{base}?token=s3cret");
    assert_eq!(
        ws_connect(&format!("{base}?token=nope"), &good).await.err(),
        Some(401)
    );
    assert_eq!(
        ws_connect(&with_token, &[("Origin", "http://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        ws_connect(&with_token, &[]).await.err(),
        Some(403),
        "no Origin"
    );
    let mut first = ws_connect(&with_token, &good).await.expect("first");
    hello(&mut first, 24_000, 24_000).await;
    assert_eq!(ws_connect(&with_token, &good).await.err(), Some(503));
    first.close().await;
    wait_for("the slot to free", || transport.conversations() == 0).await;
    let mut second = ws_connect(&with_token, &good).await.expect("slot freed");
    hello(&mut second, 24_000, 24_000).await;
    assert!(transport.shutdown().await);
    handle.stop(true).await;
    server.stop().await;
}

/// Every hostile frame gets an `error` message with a reason and a close code, never a
/// panic; the conversation behind it ends.
#[actix_rt::test]
async fn bad_frames_get_an_error_and_a_close() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = BrowserTransport::new(agent_builder(&server).build().unwrap()).limits(Limits {
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    });
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/ws");

    enum Bad {
        Text(&'static str),
        Binary(Vec<u8>),
    }
    let cases: Vec<(bool, Bad, u16)> = vec![
        (false, Bad::Text("not json"), 1007),
        (false, Bad::Text(r#"{"type":"launch"}"#), 1007),
        (false, Bad::Binary(vec![0, 0]), 1008),
        (
            false,
            Bad::Text(r#"{"type":"hello","input_rate":11,"output_rate":24000}"#),
            1003,
        ),
        (true, Bad::Binary(vec![1, 2, 3]), 1007),
        (
            true,
            Bad::Text(r#"{"type":"hello","input_rate":24000,"output_rate":24000}"#),
            1008,
        ),
        (
            true,
            Bad::Text(r#"{"type":"played","samples":"many","state":"playing"}"#),
            1007,
        ),
        (true, Bad::Binary(vec![0; 70 * 1024]), 1009),
    ];
    for (after_hello, bad, code) in cases {
        let mut ws = ws_connect(&url, &[]).await.unwrap();
        if after_hello {
            hello(&mut ws, 24_000, 24_000).await;
        }
        match bad {
            Bad::Text(t) => ws.send_text(t).await,
            Bad::Binary(b) => ws.send_binary(b).await,
        }
        let (close, before) = ws.until_close().await;
        let error = before
            .iter()
            .find(|v| v["type"] == "error")
            .expect("an error message");
        assert!(!error["message"].as_str().unwrap().is_empty());
        assert_eq!(error["fatal"], true);
        assert_eq!(close.map(|c| c.0), Some(code), "{error}");
    }
    // Idle: a page that says hello and then nothing is closed.
    let mut ws = ws_connect(&url, &[]).await.unwrap();
    hello(&mut ws, 24_000, 24_000).await;
    let (_, before) = ws.until_close().await;
    assert!(
        before.iter().any(|v| v["code"] == "idle_timeout"),
        "{before:?}"
    );
    wait_for("every conversation to end", || {
        transport.conversations() == 0
    })
    .await;
    handle.stop(true).await;
    server.stop().await;
}

/// Shutdown closes every open page connection (1001) and stops every conversation, whose
/// provider sessions close.
#[actix_rt::test]
async fn shutdown_ends_every_conversation() {
    let server = local_server(None, Pacing::AsFastAsPossible).await;
    let transport = BrowserTransport::new(agent_builder(&server).build().unwrap());
    let mount = transport.clone();
    let (port, handle) = serve(move |cfg| mount.config(cfg));
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut pages = Vec::new();
    for _ in 0..3 {
        let mut ws = ws_connect(&url, &[]).await.unwrap();
        hello(&mut ws, 24_000, 24_000).await;
        pages.push(ws);
    }
    wait_for("three provider sessions", || {
        server.sessions().iter().filter(|s| s.connected).count() == 3
    })
    .await;
    assert_eq!(transport.conversations(), 3);
    assert!(transport.shutdown().await, "all conversation actors ended");
    for ws in &mut pages {
        let (close, _) = ws.until_close().await;
        assert_eq!(close.map(|c| c.0), Some(1001));
    }
    assert_eq!(transport.conversations(), 0);
    wait_for("the provider sessions to close", || {
        server.sessions().iter().all(|s| !s.connected)
    })
    .await;
    handle.stop(true).await;
    server.stop().await;
}
