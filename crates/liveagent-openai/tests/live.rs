//! OpenAI wire details end to end against the local server over real WebSockets, through the
//! session runtime. The behaviour every provider shares (spoken and text turns, tool calls,
//! barge-in and truncation, dropped connections, renewal, auth errors) is checked once, for
//! every provider, by the conformance suite (`crates/liveagent-conformance`); this file keeps
//! what only the OpenAI wire has. Every frame the client sent (the server's recording, `>`
//! lines) must pass the official validator.

use liveagent_core::{
    ConversationContext, EventBus, LiveEvent, PlaybackStopped, RealtimeConfig as _, ResponseStatus,
    SessionSetup,
};
use liveagent_openai::RealtimeConfig;
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_session::{start_session, SessionOptions};
use liveagent_testkit::live::{speak, validate_client_lines, wait_recorded, EventLog};
use liveagent_testkit::Protocol;
use serde_json::{json, Value};

const KEY: &str = "test-key-123";

const STORY: &str = r#"
[[turn]]
steps = [{ say = "Once upon a time there was a very long story that nobody ever finished hearing.", audio_ms = 8000 }]
"#;

/// A player whose clock ran ahead reports far more than the item holds: the
/// `conversation.item.truncate` the protocol sends is clamped to the audio it received, so
/// the server accepts it.
#[actix_rt::test]
async fn barge_in_clamps_played_ms_to_the_audio_received() {
    let server = LocalServer::start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::RealTime,
            ..ServerConfig::scripted(Scenario::from_toml(STORY).unwrap())
        }
        .recording_in_memory(),
    )
    .await
    .expect("local server");
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut log = EventLog::new(&ctx);
    let protocol = RealtimeConfig::new("gpt-realtime")
        .base_url(server.openai_url())
        .api_key(KEY)
        .build_protocol(SessionSetup::default())
        .expect("protocol");
    let session = start_session(protocol, ctx.clone(), SessionOptions::default());
    log.wait("SessionOpened", |e| {
        matches!(e, LiveEvent::SessionOpened(_))
    })
    .await;
    ctx.send_text("Tell me a story.");
    let mut got = 0u64;
    let item = log
        .wait_for("a second of answer audio", |e| match e {
            LiveEvent::SynthesizedAudio(a) => {
                got += a.audio.duration_us();
                (got >= 1_000_000).then(|| a.item_id.clone())
            }
            _ => None,
        })
        .await;
    speak(&ctx, "Stop, stop please.").await;
    log.wait("Interrupted", |e| matches!(e, LiveEvent::Interrupted(_)))
        .await;
    let published_ms = log
        .seen
        .iter()
        .filter_map(|e| match e {
            LiveEvent::SynthesizedAudio(a) if a.item_id == item => Some(a.audio.duration_us()),
            _ => None,
        })
        .sum::<u64>()
        / 1000;
    ctx.publish(PlaybackStopped {
        item_id: item.clone(),
        played_ms: 3_600_000,
        interrupted: true,
    });
    let line = wait_recorded(
        "conversation.item.truncate",
        || server.recording(),
        |l| l.starts_with("> ") && l.contains("conversation.item.truncate"),
    )
    .await;
    let frame: Value = serde_json::from_str(line.strip_prefix("> ").unwrap()).unwrap();
    assert_eq!(frame["item_id"], json!(&*item));
    assert_eq!(frame["content_index"], 0);
    let end = frame["audio_end_ms"].as_u64().unwrap();
    assert!(end <= published_ms + 1, "{end} > {published_ms}");
    assert!(
        end + 100 >= published_ms,
        "clamped to the received audio, {end} vs {published_ms}"
    );
    // The server accepted it (a value past the real audio would be an error event).
    wait_recorded(
        "conversation.item.truncated",
        || server.recording(),
        |l| l.starts_with("< ") && l.contains("conversation.item.truncated"),
    )
    .await;
    let is_cancelled = |e: &LiveEvent| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Cancelled);
    if !log.seen.iter().any(is_cancelled) {
        log.wait("cancelled ResponseDone", is_cancelled).await;
    }
    assert!(log.errors().is_empty(), "{:?}", log.errors());
    validate_client_lines(&server.recording(), Protocol::OpenAi);
    session.stop_and_wait().await;
    server.stop().await;
}
