//! End to end against the local server over real WebSockets, through the session runtime:
//! speech in → speech, transcripts out; tool call round trip; barge-in truncation; text-only
//! output; auth failure; reconnect with history replay. Every frame the client sent (the
//! server's recording, `>` lines) must pass the official validator.

use std::time::Duration;

use futures_util::StreamExt;
use liveagent_core::{
    AudioChunk, ConversationContext, ErrorKind, EventBus, EventStream, LiveEvent, PlaybackStopped,
    RealtimeConfig as _, RecordedAudio, ResponseStatus, SessionSetup, ToolResult, ToolSchema,
};
use liveagent_openai::{RealtimeConfig, TextOutput};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_session::{start_session, SessionHandle, SessionOptions};
use liveagent_testkit::{silence_pcm, speech_pcm, validate_lines, Protocol};
use serde_json::{json, Value};

const KEY: &str = "test-key-123";
/// A failsafe against hangs, not a timing assertion.
const FAILSAFE: Duration = Duration::from_secs(60);

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

async fn start(server_cfg: ServerConfig, config: impl Fn(String) -> RealtimeConfig) -> Harness {
    init_tracing();
    let server = LocalServer::start(server_cfg.recording_in_memory())
        .await
        .expect("local server");
    let config = config(server.openai_url());
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let events = ctx.stream().capacity(100_000).all();
    let protocol = config
        .build_protocol(SessionSetup {
            instructions: "You are a test assistant.".into(),
            tools: vec![weather_tool()],
        })
        .expect("protocol");
    let session = start_session(protocol, ctx.clone(), SessionOptions::default());
    Harness {
        server,
        ctx,
        session,
        events,
        seen: Vec::new(),
    }
}

fn default_config(url: String) -> RealtimeConfig {
    RealtimeConfig::new("gpt-realtime")
        .base_url(url)
        .api_key(KEY)
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

    /// Publishes `pcm` as the microphone would, in 100 ms chunks.
    async fn speak(&self, pcm: &[i16]) {
        for chunk in pcm.chunks(2400) {
            self.ctx.publish(RecordedAudio {
                audio: AudioChunk::new(chunk.to_vec(), 24_000),
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
        validate_lines(&lines, Protocol::OpenAi);
        lines.len()
    }

    async fn finish(self) {
        self.session.stop_and_wait().await;
        self.server.stop().await;
    }
}

fn speech(text: &str) -> Vec<i16> {
    let mut pcm = silence_pcm(200, 24_000);
    pcm.extend(speech_pcm(text, 24_000));
    pcm.extend(silence_pcm(1500, 24_000));
    pcm
}

#[actix_rt::test]
async fn speech_in_speech_and_transcripts_out() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..Default::default()
        },
        default_config,
    )
    .await;
    h.opened().await;
    h.speak(&speech("Hello there, what is the weather like today?"))
        .await;
    h.wait_for("SpeechStarted", |e| {
        matches!(e, LiveEvent::SpeechStarted(_)).then_some(())
    })
    .await;
    h.wait_for("SpeechStopped", |e| {
        matches!(e, LiveEvent::SpeechStopped(_)).then_some(())
    })
    .await;
    let done = h
        .wait_for("ResponseDone", |e| match e {
            LiveEvent::ResponseDone(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(done.status, ResponseStatus::Completed);
    let mut audio_ms = 0;
    let mut transcript = None;
    let mut user_transcript = None;
    let mut started = false;
    for e in &h.seen {
        match e {
            LiveEvent::SynthesizedAudio(a) => {
                assert_eq!(a.audio.sample_rate, 24_000);
                assert_eq!(a.response_id.as_deref(), Some(&*done.response_id));
                audio_ms += a.audio.duration_us() / 1000;
            }
            LiveEvent::OutputTranscriptChunk(t) if t.is_final => transcript = Some(t.text.clone()),
            LiveEvent::InputTranscriptChunk(t) if t.is_final => {
                user_transcript = Some(t.text.clone())
            }
            LiveEvent::ResponseStarted(r) => started |= r.response_id == done.response_id,
            _ => {}
        }
    }
    assert!(started, "ResponseStarted precedes ResponseDone");
    // The echo brain answers with the voiced part of what we said (over a second of speech).
    assert!(audio_ms > 1000, "{audio_ms} ms of audio");
    let transcript = transcript.expect("final output transcript");
    assert!(transcript.contains("You said"), "{transcript}");
    assert!(
        user_transcript.is_some(),
        "input transcription (on by default)"
    );
    let n = h.validate_client_frames();
    println!("speech round trip: {audio_ms} ms of synthesized audio; {n} client frames valid");
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
    // A duplicate result (a retried executor, say) must not reach the conversation twice.
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
    h.wait_for("ResponseDone", |e| {
        matches!(e, LiveEvent::ResponseDone(_)).then_some(())
    })
    .await;
    let outputs: Vec<Value> = h
        .client_frames()
        .into_iter()
        .filter(|f| f["item"]["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 1, "exactly one output: {outputs:?}");
    assert_eq!(outputs[0]["item"]["call_id"], json!(&*calls[0].call_id));
    assert_eq!(outputs[0]["item"]["output"], "sunny and 21 C");
    let creates = h
        .client_frames()
        .into_iter()
        .filter(|f| f["type"] == "response.create")
        .count();
    assert_eq!(
        creates, 2,
        "one for the question, one after the tool output"
    );
    h.validate_client_frames();
    h.finish().await;
}

const STORY: &str = r#"
[[turn]]
steps = [{ say = "Once upon a time there was a very long story that nobody ever finished hearing.", audio_ms = 8000 }]
"#;

/// Starts a long answer, barges in with speech once `heard_ms` of audio arrived, reports
/// `played_ms` as the player would; returns the recorded truncate frame and the audio the
/// session published for the item.
async fn barge_in(played_ms: impl Fn(u64) -> u64) -> (Value, u64, Harness) {
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
    // Everything the session published for the item, up to the interruption.
    let published_us: u64 = h
        .seen
        .iter()
        .filter_map(|e| match e {
            LiveEvent::SynthesizedAudio(a) if a.item_id == item => Some(a.audio.duration_us()),
            _ => None,
        })
        .sum();
    let published_ms = published_us / 1000;
    h.ctx.publish(PlaybackStopped {
        item_id: item.clone(),
        played_ms: played_ms(published_ms),
        interrupted: true,
    });
    let line = h
        .wait_recorded("conversation.item.truncate", |l| {
            l.starts_with("> ") && l.contains("conversation.item.truncate")
        })
        .await;
    let frame: Value = serde_json::from_str(line.strip_prefix("> ").unwrap()).unwrap();
    assert_eq!(frame["item_id"], json!(&*item));
    assert_eq!(frame["content_index"], 0);
    // The server accepted it (a value past the real audio would be an error event).
    h.wait_recorded("conversation.item.truncated", |l| {
        l.starts_with("< ") && l.contains("conversation.item.truncated")
    })
    .await;
    let is_cancelled = |e: &LiveEvent| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Cancelled);
    if !h.seen.iter().any(is_cancelled) {
        h.wait_for("cancelled ResponseDone", |e| is_cancelled(e).then_some(()))
            .await;
    }
    (frame, published_ms, h)
}

#[actix_rt::test]
async fn barge_in_truncates_to_what_was_played() {
    let (frame, published_ms, h) = barge_in(|published| published / 2).await;
    assert_eq!(frame["audio_end_ms"], json!(published_ms / 2));
    // The server's copy of the answer is cut to what was heard.
    let items = h
        .server
        .sessions()
        .into_iter()
        .flat_map(|s| s.items)
        .find(|i| json!(i.id) == frame["item_id"])
        .expect("assistant item on the server");
    assert_eq!(items.audio_ms, published_ms / 2);
    assert!(errors(&h.seen).is_empty(), "{:?}", errors(&h.seen));
    h.validate_client_frames();
    h.finish().await;
}

#[actix_rt::test]
async fn barge_in_clamps_played_ms_to_the_audio_received() {
    // A player whose clock ran ahead reports far more than the item holds.
    let (frame, published_ms, h) = barge_in(|_| 3_600_000).await;
    let end = frame["audio_end_ms"].as_u64().unwrap();
    assert!(end <= published_ms + 1, "{end} > {published_ms}");
    assert!(
        end + 100 >= published_ms,
        "clamped to the received audio, {end} vs {published_ms}"
    );
    assert!(errors(&h.seen).is_empty(), "{:?}", errors(&h.seen));
    h.validate_client_frames();
    h.finish().await;
}

fn errors(seen: &[LiveEvent]) -> Vec<String> {
    seen.iter()
        .filter_map(|e| match e {
            LiveEvent::ErrorEvent(e) => Some(e.error.to_string()),
            _ => None,
        })
        .collect()
}

#[actix_rt::test]
async fn text_only_output() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..Default::default()
        },
        |url| default_config(url).output(TextOutput),
    )
    .await;
    h.opened().await;
    h.ctx.send_text("Hello in text please");
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
            LiveEvent::ModelMessageChunk(m) => Some(m.text.to_string()),
            _ => None,
        })
        .collect();
    assert!(text.contains("Hello in text please"), "{text}");
    assert!(!h
        .seen
        .iter()
        .any(|e| matches!(e, LiveEvent::SynthesizedAudio(_))));
    let update = h
        .client_frames()
        .into_iter()
        .find(|f| f["type"] == "session.update")
        .unwrap();
    assert_eq!(update["session"]["output_modalities"], json!(["text"]));
    h.validate_client_frames();
    h.finish().await;
}

#[actix_rt::test]
async fn wrong_key_is_a_typed_auth_error_without_retries() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            ..Default::default()
        },
        |url| {
            RealtimeConfig::new("gpt-realtime")
                .base_url(url)
                .api_key("sk-wrong-key")
        },
    )
    .await;
    let fatal = h
        .wait_for("fatal ErrorEvent", |e| match e {
            LiveEvent::ErrorEvent(e) if e.fatal => Some(e.error.clone()),
            _ => None,
        })
        .await;
    assert_eq!(fatal.kind, ErrorKind::Auth);
    assert_eq!(fatal.code.as_deref(), Some("invalid_api_key"));
    assert!(!fatal.to_string().contains("sk-wrong-key"));
    let closed = h
        .wait_for("SessionClosed", |e| match e {
            LiveEvent::SessionClosed(c) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(closed.error.map(|e| e.kind), Some(ErrorKind::Auth));
    // Give a retry storm the chance to show itself, then count connections.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.server.stats().sessions_total,
        1,
        "no reconnect after an auth error"
    );
    assert!(!h
        .seen
        .iter()
        .any(|e| matches!(e, LiveEvent::SessionOpened(_))));
    h.finish().await;
}

const DROP_SECOND: &str = r#"
[[turn]]
say = "Nice to meet you, Ada."

[[turn]]
steps = [{ say = "Let me think about that for a long while", audio_ms = 4000, drop_after_ms = 400 }]

[[turn]]
say = "Welcome back."
"#;

#[actix_rt::test]
async fn reconnect_replays_history_into_the_new_session() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..ServerConfig::scripted(Scenario::from_toml(DROP_SECOND).unwrap())
        },
        default_config,
    )
    .await;
    h.opened().await;
    h.ctx.send_text("Hi, I am Ada.");
    h.wait_for("first answer", |e| {
        matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed)
            .then_some(())
    })
    .await;
    h.ctx.send_text("What is the meaning of life?");
    let lost = h
        .wait_for("ResponseDone after the drop", |e| match e {
            LiveEvent::ResponseDone(d) => Some(d.clone()),
            _ => None,
        })
        .await;
    assert_eq!(lost.status, ResponseStatus::Failed);
    assert_eq!(lost.reason.as_deref(), Some("connection lost"));
    h.wait_for("SessionReconnected", |e| {
        matches!(e, LiveEvent::SessionReconnected(_)).then_some(())
    })
    .await;
    assert_eq!(
        h.seen
            .iter()
            .filter(|e| matches!(e, LiveEvent::SessionOpened(_)))
            .count(),
        1,
        "SessionOpened is not published again"
    );
    h.ctx.send_text("Are you there?");
    let said = h
        .wait_for("answer in the new session", |e| match e {
            LiveEvent::OutputTranscriptChunk(t) if t.is_final => Some(t.text.clone()),
            _ => None,
        })
        .await;
    assert_eq!(&*said, "Welcome back.");
    // The second connection's conversation starts with the replayed history.
    let sessions = h.server.sessions();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let second = sessions.iter().max_by_key(|s| s.id).unwrap();
    let texts: Vec<(String, String)> = second
        .items
        .iter()
        .map(|i| (format!("{:?}", i.role), i.text.clone()))
        .collect();
    assert!(texts.len() >= 4, "{texts:?}");
    assert!(texts[0].1.contains("Hi, I am Ada."), "{texts:?}");
    assert!(texts[1].1.contains("Nice to meet you, Ada."), "{texts:?}");
    assert!(
        texts[2].1.contains("What is the meaning of life?"),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.1.contains("Are you there?")),
        "{texts:?}"
    );
    let n = h.validate_client_frames();
    println!("reconnect: second session items {texts:?}; {n} client frames valid");
    h.finish().await;
}

#[actix_rt::test]
async fn age_limit_renews_the_connection_with_the_history() {
    let mut h = start(
        ServerConfig {
            api_key: Some(KEY.into()),
            pacing: Pacing::AsFastAsPossible,
            ..Default::default()
        },
        |url| default_config(url).max_connection_age(Duration::from_millis(1500)),
    )
    .await;
    h.opened().await;
    h.ctx.send_text("Remember the word banana.");
    h.wait_for("first answer", |e| {
        matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed)
            .then_some(())
    })
    .await;
    let reconnected = h
        .wait_for("renewal", |e| match e {
            LiveEvent::SessionReconnected(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert!(!reconnected.resumed, "OpenAI replays, it cannot resume");
    assert!(
        !h.seen
            .iter()
            .any(|e| matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Failed)),
        "the renewal waited for an idle moment"
    );
    h.ctx.send_text("Which word?");
    h.wait_for("second answer", |e| {
        matches!(e, LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Completed)
            .then_some(())
    })
    .await;
    let sessions = h.server.sessions();
    assert!(sessions.len() >= 2, "{sessions:?}");
    let second = sessions.iter().find(|s| s.id == 2).unwrap();
    assert!(
        second.items[0].text.contains("banana"),
        "{:?}",
        second.items
    );
    assert!(
        second.items[1].text.contains("banana"),
        "the echo answer: {:?}",
        second.items
    );
    h.validate_client_frames();
    h.finish().await;
}
