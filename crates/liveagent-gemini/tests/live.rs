//! Gemini wire details end to end against the local server's Gemini Live endpoint over
//! real WebSockets, through the session runtime: goAway then resumption with the handle, a
//! dropped connection replaying the history as `clientContent`, the close frame that refuses
//! a key, manual activity markers. The behaviour every provider shares (spoken and text
//! turns, tool calls, barge-in, dropped connections, renewal, auth errors) is checked once,
//! for every provider, by the conformance suite (`crates/liveagent-conformance`). Every frame
//! the client sent (the server's recording, `>` lines) must pass the official validator.

use std::time::Duration;

use liveagent_core::{
    ConversationContext, EventBus, LiveEvent, RealtimeConfig as _, ResponseStatus, SessionSetup,
    ToolSchema,
};
use liveagent_gemini::{InputConfig, RealtimeConfig, SessionResumption};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_session::{start_session, SessionHandle, SessionOptions};
use liveagent_testkit::live::{
    client_frames, speak, validate_client_lines, wait_recorded, EventLog,
};
use liveagent_testkit::Protocol;
use serde_json::{json, Value};

const KEY: &str = "gemini-test-key-123";
const RATE: u32 = 16_000;

/// A conversation with the Gemini protocol against a local server.
struct Harness {
    server: LocalServer,
    ctx: ConversationContext,
    session: SessionHandle,
    log: EventLog,
}

fn default_config(url: String) -> RealtimeConfig {
    RealtimeConfig::new("gemini-3.1-flash-live-preview")
        .base_url(url)
        .api_key(KEY)
        .input(InputConfig::new(true))
}

fn fast(scenario: Option<&str>) -> ServerConfig {
    let base = match scenario {
        Some(toml) => ServerConfig::scripted(Scenario::from_toml(toml).unwrap()),
        None => ServerConfig::default(),
    };
    ServerConfig {
        api_key: Some(KEY.to_owned()),
        pacing: Pacing::AsFastAsPossible,
        ..base
    }
}

async fn start(server_cfg: ServerConfig, config: impl Fn(String) -> RealtimeConfig) -> Harness {
    start_with(server_cfg, config, SessionOptions::default()).await
}

async fn start_with(
    server_cfg: ServerConfig,
    config: impl Fn(String) -> RealtimeConfig,
    options: SessionOptions,
) -> Harness {
    let server = LocalServer::start(server_cfg.recording_in_memory())
        .await
        .expect("local server");
    let ctx = ConversationContext::new(EventBus::start_default(), RATE, 24_000);
    let log = EventLog::new(&ctx);
    let protocol = config(server.gemini_url())
        .build_protocol(SessionSetup {
            instructions: "You are a test assistant.".into(),
            tools: vec![ToolSchema {
                name: "get_weather".into(),
                description: "Current weather for a city".into(),
                parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
            }],
        })
        .expect("protocol");
    let session = start_session(protocol, ctx.clone(), options);
    Harness {
        server,
        ctx,
        session,
        log,
    }
}

impl Harness {
    async fn opened(&mut self) {
        self.log
            .wait("SessionOpened", |e| {
                matches!(e, LiveEvent::SessionOpened(_))
            })
            .await;
    }

    fn client_frames(&self) -> Vec<Value> {
        client_frames(&self.server.recording())
    }

    fn validate_client_frames(&self) -> usize {
        validate_client_lines(&self.server.recording(), Protocol::Gemini)
    }

    async fn finish(self) {
        self.session.stop_and_wait().await;
        self.server.stop().await;
    }
}

const GO_AWAY: &str = r#"
[[turn]]
say = "First answer."
steps = [{ go_away = "2s" }]
"#;

#[actix_rt::test]
async fn go_away_then_resumption() {
    let mut h = start(fast(Some(GO_AWAY)), default_config).await;
    h.opened().await;
    h.ctx.send_text("Hi.");
    let reconnected = h
        .log
        .wait_for("SessionReconnected", |e| match e {
            LiveEvent::SessionReconnected(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(
        reconnected.resumed,
        "resumed with the handle; {}",
        h.log.summary()
    );
    let setups: Vec<Value> = h
        .client_frames()
        .into_iter()
        .filter_map(|f| f.get("setup").cloned())
        .collect();
    assert_eq!(setups.len(), 2, "{setups:?}");
    assert_eq!(setups[0]["sessionResumption"], json!({}));
    assert!(
        setups[1]["sessionResumption"]["handle"].is_string(),
        "{setups:?}"
    );
    // the conversation goes on
    h.ctx.send_text("Still there?");
    let done = h
        .log
        .wait_for("ResponseDone after resuming", |e| match e {
            LiveEvent::ResponseDone(d) if d.response_id.as_ref() != "gemini-turn-1" => {
                Some(d.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(done.status, ResponseStatus::Completed);
    // resumed: the history was not replayed
    assert!(!h
        .client_frames()
        .iter()
        .any(|f| f["clientContent"]["turnComplete"] == json!(false)));
    h.validate_client_frames();
    h.finish().await;
}

const DROP: &str = r#"
[[turn]]
say = "My answer before the drop."

[[turn]]
steps = [{ drop = true }]
"#;

#[actix_rt::test]
async fn dropped_connection_replays_history_into_a_new_session() {
    let mut h = start(fast(Some(DROP)), |url| {
        default_config(url).session_resumption(SessionResumption::disabled())
    })
    .await;
    h.opened().await;
    h.ctx.send_text("Remember the number 42.");
    h.log
        .wait_for("first ResponseDone", |e| {
            matches!(e, LiveEvent::ResponseDone(_)).then_some(())
        })
        .await;
    h.ctx.send_text("Now drop.");
    let reconnected = h
        .log
        .wait_for("SessionReconnected", |e| match e {
            LiveEvent::SessionReconnected(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(!reconnected.resumed);
    let replay = wait_recorded(
        "history replay",
        || h.server.recording(),
        |l| l.starts_with("> ") && l.contains("\"turnComplete\":false"),
    )
    .await;
    let frame: Value = serde_json::from_str(replay.strip_prefix("> ").unwrap()).unwrap();
    let turns = &frame["clientContent"]["turns"];
    assert_eq!(
        turns[0],
        json!({"role": "user", "parts": [{"text": "Remember the number 42."}]})
    );
    assert_eq!(turns[1]["role"], "model");
    assert!(
        turns[1]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("My answer before the drop"),
        "{turns}"
    );
    // the replay came before anything else on the new connection
    let frames = h.client_frames();
    let second_setup = frames
        .iter()
        .rposition(|f| f.get("setup").is_some())
        .unwrap();
    assert_eq!(frames[second_setup + 1], frame);
    h.validate_client_frames();
    h.finish().await;
}

#[actix_rt::test]
async fn refused_key_is_reported() {
    let mut h = start_with(
        fast(None),
        |url| default_config(url).api_key("wrong-key"),
        SessionOptions {
            reconnect: liveagent_session::ReconnectPolicy {
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(50),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    let err = h
        .log
        .wait_for("ErrorEvent", |e| match e {
            LiveEvent::ErrorEvent(e) => Some(e.error.clone()),
            _ => None,
        })
        .await;
    assert!(err.message.contains("API key"), "{err}");
    assert!(!err.message.contains("wrong-key"));
    let opened = h
        .log
        .seen
        .iter()
        .any(|e| matches!(e, LiveEvent::SessionOpened(_)));
    assert!(!opened);
    // the server refuses before reading anything: no client frame to validate
    h.finish().await;
}

#[actix_rt::test]
async fn manual_activity_marks_the_turn() {
    use liveagent_core::{ControlCommand, SessionControl};
    use liveagent_gemini::ActivityDetection;
    let mut h = start(fast(None), |url| {
        default_config(url).activity_detection(ActivityDetection::manual())
    })
    .await;
    h.opened().await;
    h.ctx.publish(SessionControl {
        command: ControlCommand::ActivityStart,
    });
    speak(&h.ctx, "This turn is marked by hand.").await;
    h.ctx.publish(SessionControl {
        command: ControlCommand::CommitInput,
    });
    let done = h
        .log
        .wait_for("ResponseDone", |e| match e {
            LiveEvent::ResponseDone(d) => Some((**d).clone()),
            _ => None,
        })
        .await;
    assert_eq!(done.status, ResponseStatus::Completed);
    let frames = h.client_frames();
    assert_eq!(
        frames[0]["setup"]["realtimeInputConfig"],
        json!({"automaticActivityDetection": {"disabled": true}})
    );
    let start = frames
        .iter()
        .position(|f| f["realtimeInput"].get("activityStart").is_some())
        .expect("activityStart sent");
    let end = frames
        .iter()
        .position(|f| f["realtimeInput"].get("activityEnd").is_some())
        .expect("activityEnd sent");
    assert!(start < end);
    assert!(frames[start..end]
        .iter()
        .any(|f| f["realtimeInput"].get("audio").is_some()));
    assert!(h.log.errors().is_empty(), "{:?}", h.log.errors());
    h.validate_client_frames();
    h.finish().await;
}
