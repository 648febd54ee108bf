//! End to end against the local server's Gemini Live endpoint over real WebSockets, through
//! the session runtime: 16 kHz speech in → 24 kHz audio and transcripts out; a tool call
//! round trip; barge-in; text output; goAway and resumption; a dropped connection with
//! history replay; a refused key. Every frame the client sent (the server's recording,
//! `>` lines) must pass the official validator.

use std::time::Duration;

use futures_util::StreamExt;
use liveagent_core::{
    AudioChunk, ConversationContext, ErrorKind, EventBus, EventStream, LiveEvent,
    RealtimeConfig as _, RecordedAudio, ResponseStatus, SessionSetup, ToolResult, ToolSchema,
};
use liveagent_gemini::{InputConfig, RealtimeConfig, SessionResumption, TextOutput};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_session::{start_session, SessionHandle, SessionOptions};
use liveagent_testkit::{silence_pcm, speech_pcm, validate_lines, Protocol};
use serde_json::{json, Value};

const KEY: &str = "gemini-test-key-123";
/// A failsafe against hangs, not a timing assertion.
const FAILSAFE: Duration = Duration::from_secs(60);
const RATE: u32 = 16_000;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

struct Harness {
    server: LocalServer,
    ctx: ConversationContext,
    session: SessionHandle,
    events: EventStream<LiveEvent>,
    seen: Vec<LiveEvent>,
}

fn weather_tool() -> ToolSchema {
    ToolSchema {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
    }
}

fn default_config(url: String) -> RealtimeConfig {
    RealtimeConfig::new("gemini-3.1-flash-live-preview")
        .base_url(url)
        .api_key(KEY)
        .input(InputConfig::new(true))
}

async fn start(server_cfg: ServerConfig, config: impl Fn(String) -> RealtimeConfig) -> Harness {
    start_with(server_cfg, config, SessionOptions::default()).await
}

async fn start_with(
    server_cfg: ServerConfig,
    config: impl Fn(String) -> RealtimeConfig,
    options: SessionOptions,
) -> Harness {
    init_tracing();
    let server = LocalServer::start(server_cfg.recording_in_memory())
        .await
        .expect("local server");
    let config = config(server.gemini_url());
    let ctx = ConversationContext::new(EventBus::start_default(), RATE, 24_000);
    let events = ctx.stream().capacity(100_000).all();
    let protocol = config
        .build_protocol(SessionSetup {
            instructions: "You are a test assistant.".into(),
            tools: vec![weather_tool()],
        })
        .expect("protocol");
    let session = start_session(protocol, ctx.clone(), options);
    Harness {
        server,
        ctx,
        session,
        events,
        seen: Vec::new(),
    }
}

impl Harness {
    /// Waits for the first event for which `f` returns `Some`.
    async fn wait_for<T>(&mut self, what: &str, mut f: impl FnMut(&LiveEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + FAILSAFE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(ev)) => {
                    let r = f(&ev);
                    self.seen.push(ev);
                    if let Some(r) = r {
                        return r;
                    }
                }
                Ok(None) => panic!("event stream ended waiting for {what}; {}", self.summary()),
                Err(_) => panic!("no {what} within the failsafe; {}", self.summary()),
            }
        }
    }

    fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .seen
            .iter()
            .filter(|e| !matches!(e, LiveEvent::SynthesizedAudio(_)))
            .map(|e| match e {
                LiveEvent::ErrorEvent(e) => format!("ErrorEvent({})", e.error),
                other => format!("{:?}", other.kind()),
            })
            .collect();
        format!("events so far: {kinds:?}")
    }

    async fn opened(&mut self) {
        self.wait_for("SessionOpened", |e| {
            matches!(e, LiveEvent::SessionOpened(_)).then_some(())
        })
        .await;
    }

    /// Publishes `pcm` (16 kHz) as the microphone would, in 100 ms chunks.
    async fn speak(&self, pcm: &[i16]) {
        for chunk in pcm.chunks(1600) {
            self.ctx.publish(RecordedAudio {
                audio: AudioChunk::new(chunk.to_vec(), RATE),
            });
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Client frames the server recorded.
    fn client_frames(&self) -> Vec<Value> {
        self.server
            .recording()
            .iter()
            .filter_map(|l| l.strip_prefix("> "))
            .map(|l| serde_json::from_str(l).expect("recorded client frame is JSON"))
            .collect()
    }

    /// Waits (polling the server's recording) for a recorded line that satisfies `f`.
    async fn wait_recorded(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + FAILSAFE;
        loop {
            if let Some(l) = self.server.recording().into_iter().find(|l| f(l)) {
                return l;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never recorded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every client frame passes the official validator; returns how many.
    fn validate_client_frames(&self) -> usize {
        let lines: Vec<String> = self
            .server
            .recording()
            .into_iter()
            .filter(|l| l.starts_with("> "))
            .collect();
        assert!(!lines.is_empty());
        validate_lines(&lines, Protocol::Gemini);
        lines.len()
    }

    async fn finish(self) {
        self.session.stop_and_wait().await;
        self.server.stop().await;
    }
}

fn speech(text: &str) -> Vec<i16> {
    let mut pcm = silence_pcm(200, RATE);
    pcm.extend(speech_pcm(text, RATE));
    pcm.extend(silence_pcm(1500, RATE));
    pcm
}

fn errors(seen: &[LiveEvent]) -> Vec<String> {
    seen.iter()
        .filter_map(|e| match e {
            LiveEvent::ErrorEvent(e) => Some(e.error.to_string()),
            _ => None,
        })
        .collect()
}

fn fast(key: bool) -> ServerConfig {
    ServerConfig {
        api_key: key.then(|| KEY.to_owned()),
        pacing: Pacing::AsFastAsPossible,
        ..Default::default()
    }
}

#[actix_rt::test]
async fn speech_in_audio_and_transcripts_out() {
    let mut h = start(fast(true), default_config).await;
    h.opened().await;
    h.speak(&speech("Hello there, what is the weather like today?"))
        .await;
    let done = h
        .wait_for("ResponseDone", |e| match e {
            LiveEvent::ResponseDone(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(done.status, ResponseStatus::Completed, "{}", h.summary());
    assert!(done.response_id.starts_with("gemini-turn-"));
    // late transcript pieces may follow the turn
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), h.events.next()).await
    {
        h.seen.push(e);
    }
    let mut audio_ms = 0;
    let mut transcript = String::new();
    let mut user_final = None;
    let mut started = false;
    for e in &h.seen {
        match e {
            LiveEvent::SynthesizedAudio(a) => {
                assert_eq!(a.audio.sample_rate, 24_000);
                assert_eq!(a.response_id.as_deref(), Some(&*done.response_id));
                audio_ms += a.audio.duration_us() / 1000;
            }
            LiveEvent::OutputTranscriptChunk(t) if t.is_final => transcript = t.text.to_string(),
            LiveEvent::InputTranscriptChunk(t) if t.is_final => user_final = Some(t.text.clone()),
            LiveEvent::ResponseStarted(r) => started |= r.response_id == done.response_id,
            _ => {}
        }
    }
    assert!(started, "ResponseStarted precedes ResponseDone");
    // The echo brain answers with the voiced part of what we said (over a second of speech).
    assert!(audio_ms > 1000, "{audio_ms} ms of audio; {}", h.summary());
    assert!(
        transcript.contains("You said"),
        "{transcript:?}; {}",
        h.summary()
    );
    assert!(
        user_final.is_some(),
        "final input transcript; {}",
        h.summary()
    );
    assert!(errors(&h.seen).is_empty(), "{:?}", errors(&h.seen));
    // audio went out as 16 kHz PCM
    let audio_frames = h
        .client_frames()
        .into_iter()
        .filter(|f| f["realtimeInput"]["audio"]["mimeType"] == "audio/pcm;rate=16000")
        .count();
    assert!(audio_frames > 10, "{audio_frames}");
    let n = h.validate_client_frames();
    println!(
        "gemini speech round trip: {audio_ms} ms of synthesized audio; {n} client frames valid"
    );
    h.finish().await;
}

const WEATHER: &str = r#"
[[turn]]
call = "get_weather"
args = { city = "Paris" }
then_say = "It is {output} in Paris."
"#;

#[actix_rt::test]
async fn tool_call_round_trip() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..ServerConfig::scripted(Scenario::from_toml(WEATHER).unwrap())
        },
        default_config,
    )
    .await;
    h.opened().await;
    h.ctx.send_text("What's the weather in Paris?");
    let calls = h
        .wait_for("ToolCallRequested", |e| match e {
            LiveEvent::ToolCallRequested(r) => Some(r.calls.clone()),
            _ => None,
        })
        .await;
    assert_eq!(calls.len(), 1);
    assert_eq!(&*calls[0].name, "get_weather");
    assert_eq!(calls[0].arguments, json!({"city":"Paris"}));
    h.ctx.publish(ToolResult {
        call_id: calls[0].call_id.clone(),
        name: calls[0].name.clone(),
        output: Ok(json!("sunny and 21 C")),
        request_response: true,
    });
    // A duplicate result must not reach the conversation twice.
    h.ctx.publish(ToolResult {
        call_id: calls[0].call_id.clone(),
        name: calls[0].name.clone(),
        output: Ok(json!("duplicate")),
        request_response: true,
    });
    let said = h
        .wait_for("final transcript", |e| match e {
            LiveEvent::OutputTranscriptChunk(t) if t.is_final => Some(t.text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(&*said, "It is sunny and 21 C in Paris.");
    let responses: Vec<Value> = h
        .client_frames()
        .into_iter()
        .filter(|f| f.get("toolResponse").is_some())
        .collect();
    assert_eq!(
        responses.len(),
        1,
        "exactly one toolResponse: {responses:?}"
    );
    assert_eq!(
        responses[0]["toolResponse"]["functionResponses"],
        json!([{"id": &*calls[0].call_id, "name": "get_weather", "response": {"result": "sunny and 21 C"}}])
    );
    h.validate_client_frames();
    h.finish().await;
}

const STORY: &str = r#"
[[turn]]
steps = [{ say = "Once upon a time there was a very long story that nobody ever finished hearing.", audio_ms = 8000 }]
"#;

#[actix_rt::test]
async fn barge_in_interrupts_the_answer() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::RealTime,
            ..ServerConfig::scripted(Scenario::from_toml(STORY).unwrap())
        },
        default_config,
    )
    .await;
    h.opened().await;
    h.ctx.send_text("Tell me a story.");
    let mut got = 0u64;
    let item = h
        .wait_for("a second of answer audio", |e| match e {
            LiveEvent::SynthesizedAudio(a) => {
                got += a.audio.duration_us();
                (got >= 1_000_000).then(|| a.item_id.clone())
            }
            _ => None,
        })
        .await;
    h.speak(&speech("Stop, stop please.")).await;
    let interrupted = h
        .wait_for("Interrupted", |e| match e {
            LiveEvent::Interrupted(i) => Some(i.clone()),
            _ => None,
        })
        .await;
    assert_eq!(interrupted.item_id.as_deref(), Some(&*item));
    let is_cancelled = |e: &LiveEvent| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Cancelled);
    if !h.seen.iter().any(is_cancelled) {
        h.wait_for("cancelled ResponseDone", |e| is_cancelled(e).then_some(()))
            .await;
    }
    let audio_ms: u64 = h
        .seen
        .iter()
        .filter_map(|e| match e {
            LiveEvent::SynthesizedAudio(a) if a.item_id == item => Some(a.audio.duration_ms()),
            _ => None,
        })
        .sum();
    assert!(audio_ms < 8000, "the answer was cut: {audio_ms} ms");
    // Gemini has no truncate message: the player's report stays local.
    h.ctx.publish(liveagent_core::PlaybackStopped {
        item_id: item.clone(),
        played_ms: audio_ms / 2,
        interrupted: true,
    });
    assert!(errors(&h.seen).is_empty(), "{:?}", errors(&h.seen));
    h.validate_client_frames();
    h.finish().await;
}

#[actix_rt::test]
async fn text_output_has_no_audio() {
    let mut h = start(fast(true), |url| default_config(url).output(TextOutput)).await;
    h.opened().await;
    h.ctx.send_text("Hello in text.");
    let done = h
        .wait_for("ResponseDone", |e| match e {
            LiveEvent::ResponseDone(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(done.status, ResponseStatus::Completed);
    let text: String = h
        .seen
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ModelMessageChunk(c) => Some(c.text.to_string()),
            _ => None,
        })
        .collect();
    assert!(text.contains("You said"), "{text:?}; {}", h.summary());
    assert!(!h
        .seen
        .iter()
        .any(|e| matches!(e, LiveEvent::SynthesizedAudio(_))));
    let setup = &h.client_frames()[0]["setup"];
    assert_eq!(
        setup["generationConfig"]["responseModalities"],
        json!(["TEXT"])
    );
    h.validate_client_frames();
    h.finish().await;
}

const GO_AWAY: &str = r#"
[[turn]]
say = "First answer."
steps = [{ go_away = "2s" }]
"#;

#[actix_rt::test]
async fn go_away_then_resumption() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..ServerConfig::scripted(Scenario::from_toml(GO_AWAY).unwrap())
        },
        default_config,
    )
    .await;
    h.opened().await;
    h.ctx.send_text("Hi.");
    let reconnected = h
        .wait_for("SessionReconnected", |e| match e {
            LiveEvent::SessionReconnected(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(
        reconnected.resumed,
        "resumed with the handle; {}",
        h.summary()
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
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..ServerConfig::scripted(Scenario::from_toml(DROP).unwrap())
        },
        |url| default_config(url).session_resumption(SessionResumption::disabled()),
    )
    .await;
    h.opened().await;
    h.ctx.send_text("Remember the number 42.");
    h.wait_for("first ResponseDone", |e| {
        matches!(e, LiveEvent::ResponseDone(_)).then_some(())
    })
    .await;
    h.ctx.send_text("Now drop.");
    let reconnected = h
        .wait_for("SessionReconnected", |e| match e {
            LiveEvent::SessionReconnected(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(!reconnected.resumed);
    let replay = h
        .wait_recorded("history replay", |l| {
            l.starts_with("> ") && l.contains("\"turnComplete\":false")
        })
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

/// Gemini refuses a key by closing the socket (1008 "API key not valid"): the runtime hands
/// the close frame to `on_close_frame`, which makes it fatal instead of a retry storm.
#[actix_rt::test]
async fn refused_key_is_fatal() {
    let mut h = start(fast(true), |url| default_config(url).api_key("wrong-key")).await;
    let err = h
        .wait_for("fatal ErrorEvent", |e| match e {
            LiveEvent::ErrorEvent(e) if e.fatal => Some(e.error.clone()),
            _ => None,
        })
        .await;
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(!err.message.contains("wrong-key"));
    h.wait_for("SessionClosed", |e| {
        matches!(e, LiveEvent::SessionClosed(_)).then_some(())
    })
    .await;
    h.finish().await;
}

#[actix_rt::test]
async fn refused_key_is_reported() {
    let mut h = start_with(
        fast(true),
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
        .wait_for("ErrorEvent", |e| match e {
            LiveEvent::ErrorEvent(e) => Some(e.error.clone()),
            _ => None,
        })
        .await;
    assert!(err.message.contains("API key"), "{err}");
    assert!(!err.message.contains("wrong-key"));
    let opened = h
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
    let mut h = start(fast(true), |url| {
        default_config(url).activity_detection(ActivityDetection::manual())
    })
    .await;
    h.opened().await;
    h.ctx.publish(SessionControl {
        command: ControlCommand::ActivityStart,
    });
    h.speak(&speech("This turn is marked by hand.")).await;
    h.ctx.publish(SessionControl {
        command: ControlCommand::CommitInput,
    });
    let done = h
        .wait_for("ResponseDone", |e| match e {
            LiveEvent::ResponseDone(d) => Some(d.clone()),
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
    assert!(errors(&h.seen).is_empty(), "{:?}", errors(&h.seen));
    h.validate_client_frames();
    h.finish().await;
}

const CALL_THEN_DROP: &str = r#"
[[turn]]
call = "get_weather"
args = { city = "Paris" }
then_say = "It is {output} in Paris."
drop_after_events = 1
"#;

#[actix_rt::test]
async fn tool_result_computed_during_an_outage_is_delivered_once_after_it() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..ServerConfig::scripted(Scenario::from_toml(CALL_THEN_DROP).unwrap())
        },
        default_config,
    )
    .await;
    h.opened().await;
    h.ctx.send_text("What's the weather in Paris?");
    let calls = h
        .wait_for("ToolCallRequested", |e| match e {
            LiveEvent::ToolCallRequested(r) => Some(r.calls.clone()),
            _ => None,
        })
        .await;
    // the server dropped the connection right after the toolCall
    h.wait_for("SessionReconnecting", |e| {
        matches!(e, LiveEvent::SessionReconnecting(_)).then_some(())
    })
    .await;
    h.ctx.publish(ToolResult {
        call_id: calls[0].call_id.clone(),
        name: calls[0].name.clone(),
        output: Ok(json!("sunny")),
        request_response: true,
    });
    h.wait_for("SessionReconnected", |e| {
        matches!(e, LiveEvent::SessionReconnected(_)).then_some(())
    })
    .await;
    // the model carries on with the result
    let done = h
        .wait_for("a completed response", |e| match e {
            LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed => Some(d.clone()),
            _ => None,
        })
        .await;
    assert!(done.response_id.starts_with("gemini-turn-"));
    let frames = h.client_frames();
    let second_setup = frames
        .iter()
        .rposition(|f| f.get("setup").is_some())
        .unwrap();
    let id = json!(&*calls[0].call_id);
    let carrying: Vec<(usize, &Value)> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            let responses = f["toolResponse"]["functionResponses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let parts: Vec<Value> = f["clientContent"]["turns"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .flat_map(|t| t["parts"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p.get("functionResponse").cloned())
                .collect();
            responses.iter().chain(parts.iter()).any(|r| r["id"] == id)
        })
        .collect();
    assert_eq!(
        carrying.len(),
        1,
        "the result went out exactly once: {carrying:?}"
    );
    assert!(carrying[0].0 > second_setup, "after the reconnect");
    println!(
        "result delivered after the outage as {}",
        if carrying[0].1.get("toolResponse").is_some() {
            "toolResponse"
        } else {
            "clientContent (new session state)"
        }
    );
    h.validate_client_frames();
    h.finish().await;
}
