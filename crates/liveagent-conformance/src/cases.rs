//! The cases, one `async fn` each. Each drives a real [`LiveAgent`] through the public API
//! against a local server running the case's scenario, compares the normalized event
//! sequence ([`milestones`](crate::milestones)) with the one every provider must produce
//! (adjusted only by the provider's [`Capabilities`]), checks the content (transcripts, tool
//! results, what the server's conversation holds), and returns the sequence for the report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use liveagent::{
    ErrorKind, LiveAgent, LiveAgentBuilder, LiveEvent, PlaybackStopped, ReconnectPolicy,
    ResponseStatus, SessionOptions, Tool, ToolResult,
};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use serde_json::{json, Value};

use crate::{
    milestones, Capabilities, ConfigOptions, Connection, CutProxy, ProviderHarness, Renewal, Run,
    ToolTurn, SERVER_KEY,
};

type Harness = Arc<dyn ProviderHarness>;

/// Runs the case called `name`; panics (with a message) when the provider does not conform.
pub(crate) async fn run(name: &'static str, h: Harness) -> Vec<String> {
    match name {
        "spoken_turn" => spoken_turn(h).await,
        "text_turn" => text_turn(h).await,
        "tool_call" => tool_calls(h, false).await,
        "parallel_tool_calls" => tool_calls(h, true).await,
        "barge_in" => barge_in(h, false).await,
        "barge_in_truncation" => barge_in(h, true).await,
        "drop_mid_answer" => drop_mid_answer(h).await,
        "drop_mid_tool_call" => drop_mid_tool_call(h).await,
        "renewal" => renewal(h).await,
        "auth_error" => auth_error(h).await,
        other => panic!("unknown case {other}"),
    }
}

// ------------------------------------------------------------------------------- helpers

/// A local server for `scenario` (TOML; `None`: the echo brain) that accepts
/// [`SERVER_KEY`], recording in memory.
async fn server(h: &Harness, scenario: Option<&str>, pacing: Pacing) -> LocalServer {
    let mut config = match scenario {
        Some(toml) => ServerConfig::scripted(Scenario::from_toml(toml).expect("scenario")),
        None => ServerConfig::default(),
    };
    config.pacing = pacing;
    config.api_key = Some(SERVER_KEY.to_owned());
    LocalServer::start(h.server_config(config).recording_in_memory())
        .await
        .expect("local server")
}

/// A conversation of the test agent against `server`, once the session is open.
async fn start_run(
    h: &Harness,
    server: &LocalServer,
    options: &ConfigOptions,
    tools: Vec<Tool>,
) -> Run {
    let mut run = Run::start(agent(h, server.local_addr(), options, tools));
    run.wait("SessionOpened", is_opened).await;
    run
}

/// The end of a case: no error on the event stream, every client frame valid; stops the
/// conversation and the server and returns the checked sequence.
async fn end_case(h: &Harness, run: Run, server: LocalServer, seq: Vec<String>) -> Vec<String> {
    let errors = errors(&run.events());
    assert!(errors.is_empty(), "errors on the event stream: {errors:?}");
    validate(h, &server);
    run.finish(server).await;
    seq
}

/// The test agent: the provider's configuration for `addr`, quick reconnects, `tools`.
fn agent(
    h: &Harness,
    addr: std::net::SocketAddr,
    options: &ConfigOptions,
    tools: Vec<Tool>,
) -> LiveAgentBuilder {
    LiveAgent::builder("conformance")
        .prompt("You are a test assistant.")
        .config_arc(h.config(addr, options))
        .session_options(SessionOptions {
            reconnect: ReconnectPolicy {
                initial_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(400),
                ..Default::default()
            },
            ..Default::default()
        })
        .tools(tools)
}

/// Call ids the weather tool ran for, in order.
type ToolLog = Arc<Mutex<Vec<(String, Value)>>>;

/// `get_weather(city)`: answers `"sunny in {city}"`, logging each run; `hook` runs first
/// (the mid-tool-call case cuts the network there), then it waits `delay`.
fn weather_tool(log: ToolLog, hook: Option<Arc<dyn Fn() + Send + Sync>>, delay: Duration) -> Tool {
    Tool::raw(
        "get_weather",
        "Current weather for a city.",
        json!({
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"]
        }),
        move |args, cx| {
            let log = log.clone();
            let hook = hook.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((cx.call_id().to_string(), args.clone()));
                if let Some(hook) = hook {
                    hook();
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let city = args["city"].as_str().unwrap_or("nowhere");
                Ok(json!(format!("sunny in {city}")))
            }
        },
    )
}

/// The expected sequence: `all` without the events the provider does not publish.
fn expect(caps: &Capabilities, all: &[&str]) -> Vec<String> {
    all.iter()
        .filter(|m| caps.speech_events || !matches!(**m, "SpeechStarted" | "SpeechStopped"))
        .map(|m| m.to_string())
        .collect()
}

/// The sequence up to event `end`, checked against `all` (see [`expect`]).
fn checked(h: &Harness, run: &Run, end: usize, all: &[&str]) -> Vec<String> {
    let caps = h.capabilities();
    let seq = run.milestones(end, &caps);
    check_sequence(h, &seq, &expect(&caps, all), run);
    seq
}

fn check_sequence(h: &Harness, got: &[String], want: &[String], run: &Run) {
    assert_eq!(
        got,
        want,
        "{}: the event sequence differs from the one every provider must publish; {}",
        h.name(),
        run.summary()
    );
}

fn is_done(status: ResponseStatus) -> impl Fn(&LiveEvent) -> bool {
    move |e| matches!(e, LiveEvent::ResponseDone(d) if d.status == status)
}

fn response_done(e: &LiveEvent) -> Option<liveagent::ResponseDone> {
    match e {
        LiveEvent::ResponseDone(d) => Some((**d).clone()),
        _ => None,
    }
}

fn is_opened(e: &LiveEvent) -> bool {
    matches!(e, LiveEvent::SessionOpened(_))
}

fn final_transcript(e: &LiveEvent) -> Option<String> {
    match e {
        LiveEvent::OutputTranscriptChunk(t) if t.is_final => Some(t.text.to_string()),
        _ => None,
    }
}

fn errors(events: &[LiveEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ErrorEvent(e) => Some(e.error.to_string()),
            _ => None,
        })
        .collect()
}

/// Every client frame the server recorded passes the official validator (when the
/// provider has one).
fn validate(h: &Harness, server: &LocalServer) {
    if let Some(protocol) = h.wire_protocol() {
        let lines: Vec<String> = server
            .recording()
            .into_iter()
            .filter(|l| l.starts_with("> "))
            .collect();
        if !lines.is_empty() {
            liveagent_testkit::validate_lines(&lines, protocol);
        }
    }
}

/// One item of the provider's copy of a conversation.
struct ProviderItem {
    /// `message`, `function_call_output`...
    kind: String,
    /// `user`, `assistant`... (per-request providers only).
    role: Option<String>,
    call_id: Option<String>,
    text: String,
}

/// The provider's copies of the conversation, oldest first: the server's sessions (one per
/// connection) for a [`Connection::Session`] provider; for a [`Connection::PerRequest`]
/// one, the chat requests the server received (each carries the whole conversation).
fn provider_conversations(h: &Harness, server: &LocalServer) -> Vec<Vec<ProviderItem>> {
    match h.capabilities().connection {
        Connection::Session => {
            let mut sessions = server.sessions();
            sessions.sort_by_key(|s| s.id);
            sessions
                .into_iter()
                .map(|s| {
                    s.items
                        .into_iter()
                        .map(|i| ProviderItem {
                            kind: i.kind.to_string(),
                            role: None,
                            call_id: i.call_id,
                            text: i.text,
                        })
                        .collect()
                })
                .collect()
        }
        Connection::PerRequest => chat_requests(server)
            .iter()
            .map(|request| {
                request["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        let role = m["role"].as_str().unwrap_or_default().to_owned();
                        ProviderItem {
                            kind: if role == "tool" {
                                "function_call_output".into()
                            } else {
                                "message".into()
                            },
                            call_id: m["tool_call_id"].as_str().map(str::to_owned),
                            text: match &m["content"] {
                                Value::String(s) => s.clone(),
                                Value::Array(parts) => parts
                                    .iter()
                                    .filter_map(|p| p["text"].as_str())
                                    .collect::<Vec<_>>()
                                    .join(" "),
                                _ => String::new(),
                            },
                            role: Some(role),
                        }
                    })
                    .collect()
            })
            .collect(),
    }
}

/// The Chat Completions requests the server received (its `chat request:` notes), parsed.
fn chat_requests(server: &LocalServer) -> Vec<Value> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.split_once("chat request: ").map(|(_, j)| j.to_owned()))
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect()
}

/// How many tool outputs for `call_id` each provider conversation holds, oldest first.
fn outputs_per_session(h: &Harness, server: &LocalServer, call_id: &str) -> Vec<usize> {
    provider_conversations(h, server)
        .iter()
        .map(|items| {
            items
                .iter()
                .filter(|i| {
                    i.kind == "function_call_output" && i.call_id.as_deref() == Some(call_id)
                })
                .count()
        })
        .collect()
}

/// The tool output for `call_id` reached the provider's conversation exactly once: never
/// twice on one connection (or in one request), and once on the newest.
fn delivered_once(h: &Harness, server: &LocalServer, call_id: &str) {
    let per_session = outputs_per_session(h, server, call_id);
    assert!(
        per_session.iter().all(|n| *n <= 1),
        "the output of {call_id} reached one connection twice: {per_session:?}"
    );
    assert_eq!(
        per_session.last().copied(),
        Some(1),
        "the output of {call_id} is in the newest connection's conversation: {per_session:?}"
    );
}

/// The texts of the newest provider conversation's items.
fn newest_session_texts(h: &Harness, server: &LocalServer) -> Vec<String> {
    provider_conversations(h, server)
        .pop()
        .map(|items| items.into_iter().map(|i| i.text).collect())
        .unwrap_or_default()
}

// --------------------------------------------------------------------------------- cases

async fn spoken_turn(h: Harness) -> Vec<String> {
    let server = server(&h, None, Pacing::AsFastAsPossible).await;
    let mut run = start_run(&h, &server, &Default::default(), vec![]).await;
    run.speak("Hello there, what is the weather like today?")
        .await;
    let (end, done) = run.wait_for("ResponseDone", response_done).await;
    let seq = checked(
        &h,
        &run,
        end,
        &[
            "SessionOpened",
            "SpeechStarted",
            "SpeechStopped",
            "ResponseStarted",
            "ResponseDone(Completed)",
        ],
    );
    let events = run.events();
    let audio_ms: u64 = events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::SynthesizedAudio(a) => {
                assert_eq!(
                    a.response_id.as_deref(),
                    Some(&*done.response_id),
                    "audio belongs to the response"
                );
                Some(a.audio.duration_us() / 1000)
            }
            _ => None,
        })
        .sum();
    // The echo brain answers with the voiced part of what was said (over a second).
    assert!(audio_ms > 1000, "{audio_ms} ms of answer audio");
    let heard = events.iter().find_map(|e| match e {
        LiveEvent::InputTranscriptChunk(t) if t.is_final && !t.text.is_empty() => {
            Some(t.text.to_string())
        }
        _ => None,
    });
    let Some(heard) = heard else {
        panic!("a final transcript of the user's speech; {}", run.summary())
    };
    // The echo brain repeats what it heard (in its own words around it).
    let said = events.iter().rev().find_map(final_transcript);
    assert!(
        said.as_deref().is_some_and(|s| s.contains(heard.trim())),
        "final transcript of the answer {said:?} repeats what was heard ({heard:?})"
    );
    end_case(&h, run, server, seq).await
}

async fn text_turn(h: Harness) -> Vec<String> {
    let server = server(&h, None, Pacing::AsFastAsPossible).await;
    let options = ConfigOptions {
        text_output: true,
        ..Default::default()
    };
    let mut run = start_run(&h, &server, &options, vec![]).await;
    run.conversation.send_text("Hello in text please");
    let end = run
        .wait("ResponseDone", |e| matches!(e, LiveEvent::ResponseDone(_)))
        .await;
    let seq = checked(
        &h,
        &run,
        end,
        &[
            "SessionOpened",
            "ResponseStarted",
            "ResponseDone(Completed)",
        ],
    );
    let events = run.events();
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ModelMessageChunk(m) => Some(m.text.to_string()),
            _ => None,
        })
        .collect();
    assert!(
        text.contains("Hello in text please"),
        "answer text {text:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, LiveEvent::SynthesizedAudio(_))),
        "no audio in text mode"
    );
    end_case(&h, run, server, seq).await
}

const WEATHER: &str = r#"
[[turn]]
call = "get_weather"
args = { city = "Paris" }
then_say = "It is {output}."
"#;

const TWO_CALLS: &str = r#"
[[turn]]
steps = [
    { call = "get_weather", args = { city = "Paris" } },
    { call = "get_weather", args = { city = "Rome" } },
    { say = "Here you go: {output}." },
]
"#;

/// The sequence of a turn whose response asks for `calls` tool calls, then the answer with
/// their results, in the provider's [`ToolTurn`] shape; `between` goes after the request
/// (in place of the results when `results` is false).
fn tool_sequence(
    caps: &Capabilities,
    calls: usize,
    between: &[&str],
    results: bool,
) -> Vec<String> {
    let request = format!("ToolCallRequested({calls})");
    let mut all: Vec<&str> = vec!["SessionOpened", "ResponseStarted"];
    if caps.tool_turn == ToolTurn::NewResponse {
        all.push("ResponseDone(Completed)");
    }
    all.push(&request);
    all.extend_from_slice(between);
    if results {
        all.extend(std::iter::repeat_n("ToolResult", calls));
    }
    if caps.tool_turn == ToolTurn::NewResponse || !between.is_empty() {
        all.push("ResponseStarted");
    }
    all.push("ResponseDone(Completed)");
    expect(caps, &all)
}

/// One tool call (`parallel`: two in one request): each runs once, its output reaches the
/// provider's conversation once (a duplicate `ToolResult` the application publishes is
/// dropped), and the answer uses the results.
async fn tool_calls(h: Harness, parallel: bool) -> Vec<String> {
    let caps = h.capabilities();
    let scenario = if parallel { TWO_CALLS } else { WEATHER };
    let server = server(&h, Some(scenario), Pacing::AsFastAsPossible).await;
    let log = ToolLog::default();
    let tool = weather_tool(log.clone(), None, Duration::ZERO);
    let mut run = start_run(&h, &server, &Default::default(), vec![tool]).await;
    run.conversation
        .send_text("What's the weather in Paris and in Rome?");
    let (_, calls) = run
        .wait_for("ToolCallRequested", |e| match e {
            LiveEvent::ToolCallRequested(r) => Some(r.calls.clone()),
            _ => None,
        })
        .await;
    let n = if parallel { 2 } else { 1 };
    assert_eq!(calls.len(), n, "the calls come in one request: {calls:?}");
    let (_, result) = run
        .wait_for("ToolResult", |e| match e {
            LiveEvent::ToolResult(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    // An application that publishes a result twice (a retried executor, say): the provider
    // must not hand it to the model again.
    run.conversation.publish(ToolResult {
        output: Ok(json!("a duplicate")),
        ..result
    });
    let (_, said) = run
        .wait_for("the answer's transcript", final_transcript)
        .await;
    if parallel {
        assert!(
            said.contains("sunny in Paris") && said.contains("sunny in Rome"),
            "the answer uses both results: {said:?}"
        );
    } else {
        assert_eq!(said, "It is sunny in Paris.");
    }
    let end = run
        .wait("ResponseDone", is_done(ResponseStatus::Completed))
        .await;
    let seq = run.milestones(end, &caps);
    check_sequence(&h, &seq, &tool_sequence(&caps, n, &[], true), &run);
    let runs = log.lock().unwrap().clone();
    let mut ran: Vec<&str> = runs.iter().map(|r| r.0.as_str()).collect();
    ran.sort();
    let mut asked: Vec<&str> = calls.iter().map(|c| &*c.call_id).collect();
    asked.sort();
    assert_eq!(ran, asked, "each call ran once: {runs:?}");
    assert_eq!(runs[0].1, json!({"city": "Paris"}));
    for c in &calls {
        delivered_once(&h, &server, &c.call_id);
    }
    end_case(&h, run, server, seq).await
}

const STORY: &str = r#"
[[turn]]
steps = [{ say = "Once upon a time there was a very long story that nobody ever finished hearing.", audio_ms = 8000 }]
"#;

/// A long answer at real-time pace; after a second of it the user speaks. With
/// `truncation`, the player then reports having played half of what it got, and the
/// provider's copy of the answer must be cut to that.
async fn barge_in(h: Harness, truncation: bool) -> Vec<String> {
    let caps = h.capabilities();
    let server = server(&h, Some(STORY), Pacing::RealTime).await;
    let mut run = start_run(&h, &server, &Default::default(), vec![]).await;
    run.conversation.send_text("Tell me a story.");
    let mut got = 0u64;
    let (_, item) = run
        .wait_for("a second of answer audio", |e| match e {
            LiveEvent::SynthesizedAudio(a) => {
                got += a.audio.duration_us();
                (got >= 1_000_000).then(|| a.item_id.clone())
            }
            _ => None,
        })
        .await;
    run.speak("Stop, stop please.").await;
    let (_, interrupted) = run
        .wait_for("Interrupted", |e| match e {
            LiveEvent::Interrupted(i) => Some(i.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        interrupted.item_id.as_deref(),
        Some(&*item),
        "Interrupted names the item that was playing"
    );
    let end = run
        .wait("cancelled ResponseDone", is_done(ResponseStatus::Cancelled))
        .await;
    // Where the user's speech stops relative to the cancellation depends on how fast the
    // provider's turn detection runs, not on the provider's contract: leave it out.
    let seq: Vec<String> = run
        .milestones(end, &caps)
        .into_iter()
        .filter(|m| m != "SpeechStopped")
        .collect();
    let want = expect(
        &caps,
        &[
            "SessionOpened",
            "ResponseStarted",
            "SpeechStarted",
            "Interrupted",
            "ResponseDone(Cancelled)",
        ],
    );
    check_sequence(&h, &seq, &want, &run);
    let published_ms: u64 = run
        .events()
        .iter()
        .filter_map(|e| match e {
            LiveEvent::SynthesizedAudio(a) if a.item_id == item => Some(a.audio.duration_us()),
            _ => None,
        })
        .sum::<u64>()
        / 1000;
    assert!(published_ms < 8000, "the answer was cut: {published_ms} ms");
    run.conversation.publish(PlaybackStopped {
        item_id: item.clone(),
        played_ms: published_ms / 2,
        interrupted: true,
    });
    if truncation {
        match caps.connection {
            Connection::Session => truncated_item(&server, &item, published_ms / 2).await,
            Connection::PerRequest => {
                // The provider's copy is the next request's history: its assistant message
                // must hold only the words heard, a strict start of the story.
                run.conversation.send_text("Go on.");
                let story = "Once upon a time there was a very long story that nobody ever finished hearing.";
                let deadline = std::time::Instant::now() + crate::FAILSAFE;
                let heard = loop {
                    let next = provider_conversations(&h, &server)
                        .into_iter()
                        .find(|items| items.iter().any(|i| i.text == "Go on."));
                    if let Some(items) = next {
                        break items
                            .into_iter()
                            .find(|i| i.role.as_deref() == Some("assistant"))
                            .map(|i| i.text)
                            .unwrap_or_default();
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no request after the barge-in; {}",
                        run.summary()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                assert!(
                    !heard.is_empty() && story.starts_with(&heard) && heard.len() < story.len(),
                    "the interrupted answer is cut to the {} ms heard: {heard:?}",
                    published_ms / 2
                );
            }
        }
    }
    end_case(&h, run, server, seq).await
}

/// The server session's copy of `item` holds `heard_ms` of audio (a truncation).
async fn truncated_item(server: &LocalServer, item: &str, heard_ms: u64) {
    let deadline = std::time::Instant::now() + crate::FAILSAFE;
    loop {
        let heard = server
            .sessions()
            .into_iter()
            .flat_map(|s| s.items)
            .find(|i| i.id == *item)
            .map(|i| i.audio_ms);
        if heard == Some(heard_ms) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the interrupted item holds {heard:?} ms, not the {heard_ms} ms heard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const DROP_SECOND: &str = r#"
[[turn]]
say = "Nice to meet you, Ada."

[[turn]]
steps = [{ say = "Let me think about that for a long while", audio_ms = 4000, drop_after_ms = 400 }]

[[turn]]
say = "Welcome back."
"#;

async fn drop_mid_answer(h: Harness) -> Vec<String> {
    let server = server(&h, Some(DROP_SECOND), Pacing::AsFastAsPossible).await;
    let mut run = start_run(&h, &server, &Default::default(), vec![]).await;
    run.conversation.send_text("Hi, I am Ada.");
    run.wait("first answer", is_done(ResponseStatus::Completed))
        .await;
    run.conversation.send_text("What is the meaning of life?");
    let (_, lost) = run
        .wait_for("ResponseDone after the drop", response_done)
        .await;
    assert_eq!(lost.status, ResponseStatus::Failed);
    let caps = h.capabilities();
    let outage: &[&str] = match caps.connection {
        Connection::Session => {
            assert_eq!(lost.reason.as_deref(), Some("connection lost"));
            run.wait("SessionReconnected", |e| {
                matches!(e, LiveEvent::SessionReconnected(_))
            })
            .await;
            &[
                "ResponseDone(Failed)",
                "SessionReconnecting",
                "SessionReconnected",
            ]
        }
        // The broken request is one clear, non-fatal error before the failed response;
        // there is nothing to reconnect.
        Connection::PerRequest => &["ErrorEvent(Connection)", "ResponseDone(Failed)"],
    };
    run.conversation.send_text("Are you there?");
    let (_, said) = run
        .wait_for("the answer in the new connection", final_transcript)
        .await;
    assert_eq!(said, "Welcome back.");
    let end = run
        .wait("ResponseDone", is_done(ResponseStatus::Completed))
        .await;
    let mut all = vec![
        "SessionOpened",
        "ResponseStarted",
        "ResponseDone(Completed)",
        "ResponseStarted",
    ];
    all.extend_from_slice(outage);
    all.extend(["ResponseStarted", "ResponseDone(Completed)"]);
    let seq = checked(&h, &run, end, &all);
    // The new connection's conversation holds what was said before the drop.
    let texts = newest_session_texts(&h, &server);
    let mut rest = texts.iter();
    for said in [
        "Hi, I am Ada.",
        "Nice to meet you, Ada.",
        "What is the meaning of life?",
        "Are you there?",
    ] {
        assert!(
            rest.any(|t| t.contains(said)),
            "the new connection's conversation holds, in order, what was said before the \
             drop ({said:?} missing or out of order): {texts:?}"
        );
    }
    validate(&h, &server);
    run.finish(server).await;
    seq
}

const CALL_THEN_MORE: &str = r#"
[[turn]]
call = "get_weather"
args = { city = "Paris" }
then_say = "It is {output}."

[[turn]]
say = "Thanks for waiting."
"#;

/// The tool cuts the network (a proxy in front of the server) when it starts and takes a
/// moment, so its result is computed while the connection is down.
async fn drop_mid_tool_call(h: Harness) -> Vec<String> {
    let caps = h.capabilities();
    let server = server(&h, Some(CALL_THEN_MORE), Pacing::AsFastAsPossible).await;
    let proxy = CutProxy::start(server.local_addr()).await;
    let log = ToolLog::default();
    let cut = proxy.cutter();
    let tool = weather_tool(log.clone(), Some(Arc::new(cut)), Duration::from_millis(300));
    let mut run = Run::start(agent(&h, proxy.addr(), &Default::default(), vec![tool]));
    run.wait("SessionOpened", is_opened).await;
    run.conversation.send_text("What's the weather in Paris?");
    let (_, calls) = run
        .wait_for("ToolCallRequested", |e| match e {
            LiveEvent::ToolCallRequested(r) => Some(r.calls.clone()),
            _ => None,
        })
        .await;
    // The result and the reconnection race; wait for both, then for the answer. (A
    // per-request provider had no request open when the network was cut: it has nothing
    // to reconnect, and its next request must simply work.)
    let mut seen_result = None;
    let mut seen_reconnect = (caps.connection == Connection::PerRequest).then_some(());
    run.wait_for("the tool result and a reconnection", |e| {
        match e {
            LiveEvent::ToolResult(r) => seen_result = Some(r.call_id.clone()),
            LiveEvent::SessionReconnected(_) => seen_reconnect = Some(()),
            _ => {}
        }
        (seen_result.is_some() && seen_reconnect.is_some()).then_some(())
    })
    .await;
    let end = run
        .wait(
            "a completed response after the outage",
            is_done(ResponseStatus::Completed),
        )
        .await;
    // The result's place among the provider's events is a race (it is computed during
    // the outage, handed over once the connection is back): compare without it.
    let full = run.milestones(end, &caps);
    let seq: Vec<String> = full
        .iter()
        .filter(|m| *m != "ToolResult")
        .cloned()
        .collect();
    let between: &[&str] = match (caps.connection, caps.tool_turn) {
        (Connection::PerRequest, _) => &[],
        (Connection::Session, ToolTurn::NewResponse) => {
            &["SessionReconnecting", "SessionReconnected"]
        }
        // The response that asked for the call is lost with the connection.
        (Connection::Session, ToolTurn::SameResponse) => &[
            "ResponseDone(Failed)",
            "SessionReconnecting",
            "SessionReconnected",
        ],
    };
    let want = tool_sequence(&caps, 1, between, false);
    check_sequence(&h, &seq, &want, &run);
    let results = full.iter().filter(|m| *m == "ToolResult").count();
    assert_eq!(results, 1, "one result on the bus: {full:?}");
    assert_eq!(log.lock().unwrap().len(), 1, "the tool ran once");
    assert!(proxy.cuts() >= 1);
    delivered_once(&h, &server, &calls[0].call_id);
    validate(&h, &server);
    run.finish(server).await;
    seq
}

const GO_AWAY: &str = r#"
[[turn]]
say = "I will remember the word banana."
steps = [{ go_away = "2s" }]
"#;

async fn renewal(h: Harness) -> Vec<String> {
    let caps = h.capabilities();
    let renewal = caps.renewal.expect("skipped without the capability");
    let (scenario, options) = match renewal {
        Renewal::GoAway => (Some(GO_AWAY), ConfigOptions::default()),
        Renewal::MaxConnectionAge => (
            None,
            ConfigOptions {
                max_connection_age: Some(Duration::from_millis(1500)),
                ..Default::default()
            },
        ),
    };
    let server = server(&h, scenario, Pacing::AsFastAsPossible).await;
    let mut run = start_run(&h, &server, &options, vec![]).await;
    run.conversation.send_text("Remember the word banana.");
    run.wait("first answer", is_done(ResponseStatus::Completed))
        .await;
    let (_, reconnected) = run
        .wait_for("renewal", |e| match e {
            LiveEvent::SessionReconnected(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        reconnected.resumed, caps.renewal_resumes,
        "SessionReconnected::resumed"
    );
    run.conversation.send_text("Which word?");
    let end = run
        .wait("second answer", is_done(ResponseStatus::Completed))
        .await;
    let seq = checked(
        &h,
        &run,
        end,
        &[
            "SessionOpened",
            "ResponseStarted",
            "ResponseDone(Completed)",
            "SessionReconnecting",
            "SessionReconnected",
            "ResponseStarted",
            "ResponseDone(Completed)",
        ],
    );
    let texts = newest_session_texts(&h, &server);
    assert!(
        texts.iter().any(|t| t.contains("banana")),
        "the renewed connection keeps the conversation: {texts:?}"
    );
    end_case(&h, run, server, seq).await
}

async fn auth_error(h: Harness) -> Vec<String> {
    const WRONG: &str = "sk-wrong-key-0451";
    let caps = h.capabilities();
    let server = server(&h, None, Pacing::AsFastAsPossible).await;
    let options = ConfigOptions {
        api_key: WRONG.to_owned(),
        ..Default::default()
    };
    let mut run = Run::start(agent(&h, server.local_addr(), &options, vec![]));
    let mut want = vec!["ErrorEvent(Auth, fatal)", "SessionClosed"];
    if caps.connection == Connection::PerRequest {
        // No socket to refuse: the key meets the provider at the first request.
        run.wait("SessionOpened", is_opened).await;
        run.conversation.send_text("Hello?");
        want = vec![
            "SessionOpened",
            "ResponseStarted",
            "ResponseDone(Failed)",
            "ErrorEvent(Auth, fatal)",
            "SessionClosed",
        ];
    }
    let (_, fatal) = run
        .wait_for("fatal ErrorEvent", |e| match e {
            LiveEvent::ErrorEvent(e) if e.fatal => Some(e.error.clone()),
            _ => None,
        })
        .await;
    assert_eq!(fatal.kind, ErrorKind::Auth, "{fatal}");
    assert!(
        !fatal.to_string().contains(WRONG),
        "the key leaked: {fatal}"
    );
    let (end, closed) = run
        .wait_for("SessionClosed", |e| match e {
            LiveEvent::SessionClosed(c) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(closed.error.map(|e| e.kind), Some(ErrorKind::Auth));
    let seq = run.milestones(end, &caps);
    check_sequence(&h, &seq, &expect(&caps, &want), &run);
    // Give a retry storm the chance to show itself, then count connections (requests).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let events = run.events();
    match caps.connection {
        Connection::Session => {
            let connections = server.stats().sessions_total;
            assert!(
                connections <= 1,
                "no reconnect after an auth error: {connections}"
            );
            assert!(!events.iter().any(is_opened), "no SessionOpened");
        }
        Connection::PerRequest => {
            let after: Vec<String> = milestones(&events[end + 1..], &caps);
            assert!(after.is_empty(), "nothing after SessionClosed: {after:?}");
        }
    }
    for e in &events {
        assert!(
            !format!("{e:?}").contains(WRONG),
            "the key leaked into an event: {e:?}"
        );
    }
    run.finish(server).await;
    seq
}
