//! The AG2 live surface, end to end against the local realtime server over real WebSockets:
//! the model's words as `ModelMessageChunk` in every mode, prompt lists and hooks with
//! literal braces, conversation variables tools read and write across a reconnect,
//! per-run overrides, human input asked mid-call, closure observers with conditions,
//! LoopDetector / TokenMonitor, usage reports and history, and conversation recording.
//! See docs/coming-from-ag2.md.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::tools::{ToolError, ToolMiddleware};
use liveagent::{
    openai, Condition, FnObserver, HumanInputRequest, LiveAgent, LiveEvent, LoopDetector,
    ModelMessageChunk, NoArgs, ObserverAlert, OutputTranscriptChunk, RunOptions, Severity,
    TextSource, TokenMonitor, Tool, ToolContext, ToolResult, Var,
};
use liveagent_e2e::*;
use serde_json::{json, Value};

/// Waits until `check` holds: subscribers run at their own pace, so what one saw another
/// may not have seen yet (a failsafe, never a timing assertion).
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + FAILSAFE;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ready(run: &Run) {
    run.wait_count("session updated", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
}

fn session_update(server: &liveagent_server::LocalServer) -> Value {
    client_frames(server)
        .into_iter()
        .find(|f| f["type"] == "session.update")
        .expect("session.update")
}

/// Item 1: with audio output, the model's words come as `ModelMessageChunk`s marked as
/// transcripts, exactly the spoken text once; in text mode as `ModelMessageChunk`s marked
/// as text.
#[actix_rt::test]
async fn model_words_arrive_as_model_message_chunks_in_every_mode() {
    let server = server(None).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Echo.")
            .config(openai_config(&server)),
    );
    let mut words = run.conversation.stream().only::<ModelMessageChunk>();
    ready(&run).await;
    run.speak(question()).await;
    run.wait_count("final transcript", 1, |e| {
        matches!(
            e,
            LiveEvent::OutputTranscriptChunk(OutputTranscriptChunk { is_final: true, .. })
        )
    })
    .await;
    let spoken = run.collect(|e| match e {
        LiveEvent::OutputTranscriptChunk(t) if t.is_final => Some(t.text.to_string()),
        _ => None,
    })[0]
        .clone();
    let mut said = String::new();
    while said.len() < spoken.len() {
        let chunk = tokio::time::timeout(FAILSAFE, words.next())
            .await
            .expect("words")
            .expect("stream");
        assert_eq!(chunk.source, TextSource::Transcript);
        assert!(chunk.is_transcript());
        said.push_str(&chunk.text);
    }
    assert_eq!(said, spoken);
    // And the whole of it is the response's text (AG2 `ModelMessage`).
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    let texts = run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => d.text.as_deref().map(str::to_owned),
        _ => None,
    });
    assert_eq!(texts, vec![spoken.clone()]);
    run.conversation.stop().await;

    // Text output: the same stream, marked as text.
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Echo.")
            .config(openai_config(&server).output(openai::TextOutput)),
    );
    ready(&run).await;
    run.conversation.send_text("hello there");
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    let chunks = run.collect(|e| match e {
        LiveEvent::ModelMessageChunk(c) => Some(c.clone()),
        _ => None,
    });
    assert!(!chunks.is_empty(), "{}", run.summary());
    assert!(chunks.iter().all(|c| c.source == TextSource::Text));
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::OutputTranscriptChunk(_))),
        0
    );
    run.conversation.stop().await;
    server.stop().await;
}

/// Item 1 on Gemini: output transcription is on whenever the model speaks (even without
/// `transcribe`), and its words come as transcript `ModelMessageChunk`s.
#[actix_rt::test]
async fn gemini_words_arrive_as_model_message_chunks_without_transcribe() {
    let server = server(None).await;
    let run = Run::start(
        LiveAgent::builder("assistant").prompt("Echo.").config(
            liveagent::gemini::RealtimeConfig::new("gemini-live-test")
                .base_url(server.gemini_url())
                .api_key("local-key"),
        ),
    );
    ready(&run).await;
    let setup = client_frames(&server)
        .into_iter()
        .find(|f| f.get("setup").is_some())
        .expect("setup");
    assert!(
        setup["setup"].get("outputAudioTranscription").is_some(),
        "{setup}"
    );
    run.speak(&speech_pcm("What is two plus three?", 16_000))
        .await;
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    let chunks: Vec<ModelMessageChunk> = run.collect(|e| match e {
        LiveEvent::ModelMessageChunk(c) => Some(c.clone()),
        _ => None,
    });
    assert!(!chunks.is_empty(), "{}", run.summary());
    assert!(chunks.iter().all(|c| c.is_transcript()));
    let said: String = chunks.iter().map(|c| &*c.text).collect();
    let done = run.collect(|e| match e {
        LiveEvent::ResponseDone(d) => d.text.as_deref().map(str::to_owned),
        _ => None,
    });
    assert_eq!(done, vec![said.trim().to_owned()]);
    validate_lines(&server.recording(), Protocol::Gemini);
    run.conversation.stop().await;
    server.stop().await;
}

/// Item 5: a list of prompt parts, with a JSON example that needs no escaping, a sync hook
/// and an async hook given the context; the provider receives them joined.
#[actix_rt::test]
async fn prompt_lists_hooks_and_literal_braces_reach_the_provider() {
    let server = server(None).await;
    let agent = LiveAgent::builder("assistant")
        .prompts([
            "You help {user}.",
            r#"Answer as JSON like {"city": "Lisbon", "temp": 21}."#,
        ])
        .prompt_fn(|ctx| format!("Plan: {}.", ctx.variables().text("plan").unwrap()))
        .prompt_hook(|ctx| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            format!(
                "Visits: {}.",
                ctx.variables().get::<u32>("visits").unwrap().unwrap()
            )
        })
        .variable("user", "Ada")
        .variable("plan", "gold")
        .variable("visits", 3)
        .config(openai_config(&server))
        .build()
        .unwrap();
    // An async hook that really waits needs `start().await`; `run()` says so.
    let err = agent.run().unwrap_err();
    assert!(err.to_string().contains("start().await"), "{err}");
    let conversation = agent.start().await.unwrap();
    let mut opened = conversation.stream().only::<liveagent::SessionUpdated>();
    tokio::time::timeout(FAILSAFE, opened.next()).await.unwrap();
    let update = session_update(&server);
    assert_eq!(
        update["session"]["instructions"],
        "You help Ada.\n\nAnswer as JSON like {\"city\": \"Lisbon\", \"temp\": 21}.\n\nPlan: gold.\n\nVisits: 3."
    );
    conversation.stop().await;

    // A placeholder naming no variable fails the build with a message saying how to write
    // it literally.
    let err = LiveAgent::builder("a")
        .prompt("Hello {nmae}")
        .variable("name", "Ada")
        .config(openai_config(&server))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("{{nmae}}"), "{err}");
    server.stop().await;
}

const COUNT_TWICE: &str = r#"
[[turn]]
call = "count_visit"
then_say = "Visit {output}."

[[turn]]
call = "count_visit"
then_say = "Visit {output}."
"#;

const VISITS: Var<u32> = Var::new("visits");

fn count_visit() -> Tool {
    Tool::with_context(
        "count_visit",
        "Counts a visit.",
        |_: NoArgs, cx: ToolContext| async move {
            let n = cx
                .variables()
                .update(VISITS.name(), |v: Option<u32>| v.unwrap_or(0) + 1)
                .map_err(ToolError::msg)?;
            Ok::<_, ToolError>(n)
        },
    )
}

/// Item 3: tools read and write typed conversation variables; they survive a reconnect (the
/// connection is cut between the two calls) and the app reads them too.
#[actix_rt::test]
async fn variables_are_typed_tool_accessible_and_survive_a_reconnect() {
    let server = server(Some(COUNT_TWICE)).await;
    let proxy = CutProxy::start(server.local_addr()).await;
    let config = openai::RealtimeConfig::new("gpt-realtime")
        .base_url(proxy.openai_url())
        .api_key("local-key");
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Count visits for {user}.")
            .variable("user", "Ada")
            .variable("visits", 10)
            .config(config)
            .tool(count_visit()),
    );
    ready(&run).await;
    run.speak(question()).await;
    run.wait_count("first result", 1, |e| matches!(e, LiveEvent::ToolResult(_)))
        .await;
    // The answer that uses it is done before the connection is cut.
    run.wait_count("first answer", 2, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    assert_eq!(
        run.conversation.variables().read(&VISITS).unwrap(),
        Some(11)
    );
    proxy.cut();
    run.wait_count("reconnected", 1, |e| {
        matches!(e, LiveEvent::SessionReconnected(_))
    })
    .await;
    run.speak(question()).await;
    run.wait_count("second result", 2, |e| {
        matches!(e, LiveEvent::ToolResult(_))
    })
    .await;
    let outputs = run.collect(|e| match e {
        LiveEvent::ToolResult(r) => Some(r.output.clone()),
        _ => None,
    });
    assert_eq!(outputs, vec![Ok(json!(11)), Ok(json!(12))]);
    assert_eq!(
        run.conversation
            .variables()
            .get::<String>("user")
            .unwrap()
            .as_deref(),
        Some("Ada")
    );
    // The wrong type is a clear error, not a panic.
    assert!(run.conversation.variables().get::<bool>("visits").is_err());
    run.conversation.stop().await;
    server.stop().await;
}

const CALL_WHOAMI: &str = r#"
[[turn]]
call = "whoami"
then_say = "You are {output}."
"#;

struct Tenant(&'static str);

/// Item 4: `run_with` overrides the prompt, variables, tools, dependencies and observers
/// for one conversation; the agent itself is unchanged.
#[actix_rt::test]
async fn run_with_overrides_one_conversation() {
    let server = server(Some(CALL_WHOAMI)).await;
    let agent = LiveAgent::builder("assistant")
        .prompt("Default prompt for {user}.")
        .variable("user", "Ada")
        .config(openai_config(&server))
        .build()
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let whoami = Tool::with_context(
        "whoami",
        "Who am I?",
        |_: NoArgs, cx: ToolContext| async move {
            let tenant = cx.dep::<Tenant>()?;
            let user: String = cx
                .variables()
                .get("user")
                .map_err(ToolError::msg)?
                .unwrap_or_default();
            Ok::<_, ToolError>(format!("{user}@{}", tenant.0))
        },
    );
    let conversation = agent
        .run_with(
            RunOptions::new()
                .variable("user", "Grace")
                .prompt("Per-run prompt for {user}.")
                .tool(whoami)
                .dependency(Tenant("acme"))
                .watch(FnObserver::sync(
                    "counter",
                    Condition::of::<ToolResult>(),
                    move |_, _| {
                        counter.fetch_add(1, Ordering::SeqCst);
                    },
                )),
        )
        .unwrap();
    let mut results = conversation.stream().only::<ToolResult>();
    let mut updated = conversation.stream().only::<liveagent::SessionUpdated>();
    tokio::time::timeout(FAILSAFE, updated.next())
        .await
        .unwrap();
    let update = session_update(&server);
    assert_eq!(
        update["session"]["instructions"],
        "Per-run prompt for Grace."
    );
    assert_eq!(update["session"]["tools"][0]["name"], "whoami");
    let rate = conversation.input_sample_rate();
    let mut pcm = question().to_vec();
    pcm.extend(silence_pcm(1000, rate));
    for chunk in pcm.chunks((rate / 10) as usize) {
        conversation.publish(liveagent::RecordedAudio {
            audio: liveagent::AudioChunk::new(chunk.to_vec(), rate),
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let result = tokio::time::timeout(FAILSAFE, results.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.output, Ok(json!("Grace@acme")));
    // The observer ran (it sees the result after the stream did; give it a moment).
    for _ in 0..500 {
        if seen.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(agent.instructions(), "Default prompt for Ada.");
    assert!(agent.toolbox().is_empty());
    conversation.stop().await;
    server.stop().await;
}

const BOOK: &str = r#"
[[turn]]
call = "book_table"
args = { people = 2 }
then_say = "Booked: {output}."
"#;

fn book_table() -> Tool {
    Tool::with_context(
        "book_table",
        "Books a table.",
        |_: NoArgs, cx: ToolContext| async move {
            let time = cx.input("What time would you like?").await?;
            Ok::<_, ToolError>(format!("2 people at {time}"))
        },
    )
    .timeout(Duration::from_millis(300))
}

/// Shouts the human's answers (AG2 middleware `on_human_input`).
struct Shout;
impl ToolMiddleware for Shout {
    fn on_human_input(&self, _request: &HumanInputRequest, answer: &mut String) {
        *answer = answer.to_uppercase();
    }
}

/// Item 2: a tool asks a question mid-call; the app answers the `HumanInputRequest` on the
/// bus (a UI would), middleware rewrites the answer, and the wait does not count against the
/// tool's 300 ms timeout. With a hook set, the hook answers instead.
#[actix_rt::test]
async fn a_tool_asks_a_human_mid_call_and_gets_the_answer() {
    let server = server(Some(BOOK)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("You book tables.")
            .config(openai_config(&server))
            .middleware(Shout)
            .tool(book_table()),
    );
    let mut requests = run.conversation.stream().only::<HumanInputRequest>();
    ready(&run).await;
    run.speak(question()).await;
    let request = tokio::time::timeout(FAILSAFE, requests.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&*request.question, "What time would you like?");
    assert_eq!(request.tool.as_deref(), Some("book_table"));
    // A human takes longer than the tool's own timeout to answer.
    tokio::time::sleep(Duration::from_millis(600)).await;
    run.conversation
        .answer(request.request_id.clone(), "eight pm");
    run.wait_count("result", 1, |e| matches!(e, LiveEvent::ToolResult(_)))
        .await;
    let result = run.collect(|e| match e {
        LiveEvent::ToolResult(r) => Some(r.output.clone()),
        _ => None,
    });
    assert_eq!(result, vec![Ok(json!("2 people at EIGHT PM"))]);
    let messages = run.collect(|e| match e {
        LiveEvent::HumanMessage(m) => Some((m.request_id.clone(), m.text.to_string())),
        _ => None,
    });
    assert_eq!(
        messages,
        vec![(request.request_id.clone(), "eight pm".to_string())]
    );
    run.conversation.stop().await;
    server.stop().await;

    // A hook answers instead of the app (a new server: turns count per server).
    let server = liveagent_e2e::server(Some(BOOK)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("You book tables.")
            .config(openai_config(&server))
            .human_input(|req: HumanInputRequest| async move {
                assert!(req.question.contains("time"));
                "noon".to_string()
            })
            .tool(book_table()),
    );
    ready(&run).await;
    run.speak(question()).await;
    run.wait_count("result", 1, |e| matches!(e, LiveEvent::ToolResult(_)))
        .await;
    let result = run.collect(|e| match e {
        LiveEvent::ToolResult(r) => Some(r.output.clone()),
        _ => None,
    });
    assert_eq!(result, vec![Ok(json!("2 people at noon"))]);
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::HumanInputRequest(_))),
        1
    );
    assert_eq!(run.count(|e| matches!(e, LiveEvent::HumanMessage(_))), 1);
    run.conversation.stop().await;
    server.stop().await;
}

const SAME_CALL_THRICE: &str = r#"
[[turn]]
call = "lookup"
args = { key = "a" }
then_say = "Got {output}."

[[turn]]
call = "lookup"
args = { key = "a" }
then_say = "Got {output}."

[[turn]]
call = "lookup"
args = { key = "a" }
then_say = "Got {output}."
"#;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct LookupArgs {
    key: String,
}

/// Items 9 and 11: closure observers with field conditions and AND / OR / NOT, the
/// built-in LoopDetector and TokenMonitor raising `ObserverAlert`s, `ObserverStarted` /
/// `ObserverCompleted`, usage reports per conversation and per agent, and the history.
#[actix_rt::test]
async fn observers_conditions_loop_detector_token_monitor_and_reports() {
    let server = server(Some(SAME_CALL_THRICE)).await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = seen.clone();
    let monitor = TokenMonitor::new(1, 1_000_000_000);
    let agent = LiveAgent::builder("assistant")
        .prompt("Look things up.")
        .config(openai_config(&server))
        .tool(Tool::new(
            "lookup",
            "Looks a key up.",
            |a: LookupArgs| async move { Ok::<_, ToolError>(format!("value of {}", a.key)) },
        ))
        .watch(LoopDetector::new(10, 3))
        .watch(monitor.clone())
        .watch(FnObserver::new(
            "async-closure",
            // (ToolResult whose name is "lookup") | ObserverAlert, and not an ErrorEvent.
            (Condition::field::<ToolResult>("name", "lookup") | Condition::of::<ObserverAlert>())
                & !Condition::of::<liveagent::ErrorEvent>(),
            move |event, _ctx| {
                let sink = sink.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    sink.lock().unwrap().push(format!("{:?}", event.kind()));
                }
            },
        ))
        .build()
        .unwrap();
    let conversation = agent.run().unwrap();
    let mut all = conversation.stream().capacity(100_000).all();
    let events: Arc<Mutex<Vec<LiveEvent>>> = Arc::default();
    let store = events.clone();
    actix::spawn(async move {
        while let Some(e) = all.next().await {
            store.lock().unwrap().push(e);
        }
    });
    let count =
        |f: &dyn Fn(&LiveEvent) -> bool| events.lock().unwrap().iter().filter(|e| f(e)).count();
    let rate = conversation.input_sample_rate();
    for turn in 1..=3 {
        let mut pcm = question().to_vec();
        pcm.extend(silence_pcm(1000, rate));
        for chunk in pcm.chunks((rate / 10) as usize) {
            conversation.publish(liveagent::RecordedAudio {
                audio: liveagent::AudioChunk::new(chunk.to_vec(), rate),
            });
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let deadline = std::time::Instant::now() + FAILSAFE;
        while count(&|e| matches!(e, LiveEvent::ResponseDone(_))) < turn * 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "turn {turn} did not finish"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // One loop warning (three identical calls), one token warning.
    eventually("two alerts and three observed results", || {
        count(&|e| matches!(e, LiveEvent::ObserverAlert(_))) >= 2
            && seen
                .lock()
                .unwrap()
                .iter()
                .filter(|k| *k == "ToolResult")
                .count()
                == 3
    })
    .await;
    let alerts: Vec<ObserverAlert> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ObserverAlert(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    assert!(
        alerts.iter().any(|a| &*a.source == "loop-detector"
            && a.severity == Severity::Warning
            && a.message.contains("'lookup' called 3 times")),
        "{alerts:?}"
    );
    assert_eq!(
        alerts
            .iter()
            .filter(|a| &*a.source == "loop-detector")
            .count(),
        1
    );
    assert!(
        alerts.iter().any(|a| &*a.source == "token-monitor"),
        "{alerts:?}"
    );
    // The closure observer saw the three results and the alerts, and nothing else.
    let seen_now = seen.lock().unwrap().clone();
    assert_eq!(
        seen_now.iter().filter(|k| *k == "ToolResult").count(),
        3,
        "{seen_now:?}"
    );
    assert!(
        seen_now
            .iter()
            .all(|k| k == "ToolResult" || k == "ObserverAlert"),
        "{seen_now:?}"
    );

    // Usage: per conversation and per agent, the sum of the responses' usage.
    let mut sum = 0;
    for e in events.lock().unwrap().iter() {
        if let LiveEvent::ResponseDone(d) = e {
            sum += d.usage.as_ref().map_or(0, |u| u.total_tokens);
        }
    }
    assert!(sum > 0);
    eventually("the reports saw every response", || {
        conversation.usage_report().total_tokens == sum && monitor.total_tokens() == sum
    })
    .await;
    let usage = conversation.usage_report();
    assert_eq!(usage.total_tokens, sum);
    assert_eq!(agent.usage_report().total_tokens, sum);
    assert_eq!(monitor.total_tokens(), sum);
    // History: the control events in order, no audio.
    let history = conversation.history();
    assert!(history.iter().all(|e| !matches!(
        e,
        LiveEvent::SynthesizedAudio(_) | LiveEvent::RecordedAudio(_)
    )));
    assert_eq!(
        history
            .iter()
            .filter(|e| matches!(e, LiveEvent::ToolResult(_)))
            .count(),
        3
    );
    let said: Vec<String> = conversation
        .messages()
        .into_iter()
        .filter(|(role, _)| *role == "assistant")
        .map(|(_, t)| t)
        .collect();
    assert!(
        said.iter().any(|t| t.contains("Got value of a.")),
        "{said:?}"
    );

    // Announced before any stream could subscribe; the history has them.
    let started = history
        .iter()
        .filter(|e| matches!(e, LiveEvent::ObserverStarted(_)))
        .count();
    assert_eq!(started, 3);
    conversation.stop().await;
    let names: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ObserverCompleted(c) => Some(c.name.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        vec!["loop-detector", "token-monitor", "async-closure"]
    );
    server.stop().await;
}

/// Item 12: one builder call records both sides to a stereo WAV and the words to a JSONL
/// transcript with timestamps.
#[actix_rt::test]
async fn record_conversation_writes_a_stereo_wav_and_a_jsonl_transcript() {
    let dir = std::env::temp_dir().join(format!("liveagent-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = server(None).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Echo.")
            .config(openai_config(&server))
            .recording(liveagent::RecordingOptions::new(&dir).file_stem("call")),
    );
    ready(&run).await;
    run.speak(question()).await;
    run.wait_count("response done", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(_))
    })
    .await;
    run.wait_count(
        "user transcript",
        1,
        |e| matches!(e, LiveEvent::InputTranscriptChunk(t) if t.is_final),
    )
    .await;
    run.conversation.stop().await;
    let wav = dir.join("call.wav");
    let mut reader = {
        let deadline = std::time::Instant::now() + FAILSAFE;
        loop {
            if let Ok(r) = hound::WavReader::open(&wav) {
                break r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no recording at {}",
                wav.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 24_000, 16)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    let left_energy: u64 = samples
        .iter()
        .step_by(2)
        .map(|s| s.unsigned_abs() as u64)
        .sum();
    let right_energy: u64 = samples
        .iter()
        .skip(1)
        .step_by(2)
        .map(|s| s.unsigned_abs() as u64)
        .sum();
    assert!(left_energy > 0, "the user's side is silent");
    assert!(right_energy > 0, "the agent's side is silent");
    // At least the question's length (1 s of silence follows it).
    assert!(samples.len() / 2 >= question().len());
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("call.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["t_ms"].is_u64()), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["role"] == "user" && l["type"] == "transcript"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["role"] == "assistant"
                && l["text"].as_str().unwrap_or("").contains("You said")),
        "{lines:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    server.stop().await;
}

/// Item 8 (part): Gemini `transcription_languages` reach the wire as `languageCodes`, in a
/// setup the official SDK's models accept; a malformed code is a config error.
#[actix_rt::test]
async fn gemini_transcription_languages_reach_the_setup() {
    let server = server(None).await;
    let config = liveagent::gemini::RealtimeConfig::new("gemini-live-test")
        .base_url(server.gemini_url())
        .api_key("local-key")
        .input(liveagent::gemini::InputConfig::new(true))
        .transcription_languages(["pt-PT", "en-US"]);
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Olá.")
            .config(config.clone()),
    );
    ready(&run).await;
    let setup = client_frames(&server)
        .into_iter()
        .find(|f| f.get("setup").is_some())
        .expect("setup");
    for key in ["inputAudioTranscription", "outputAudioTranscription"] {
        assert_eq!(
            setup["setup"][key]["languageCodes"],
            json!(["pt-PT", "en-US"]),
            "{setup}"
        );
    }
    validate_lines(&server.recording(), Protocol::Gemini);
    run.conversation.stop().await;
    assert!(config
        .transcription_languages(["en US"])
        .validate()
        .is_err());
    server.stop().await;
}

struct Concierge;

impl liveagent::Plugin for Concierge {
    fn name(&self) -> &str {
        "concierge"
    }
    fn prompt(&self) -> Vec<String> {
        vec!["You are the concierge of {hotel}.".into()]
    }
    fn prompt_hook(&self, ctx: &liveagent::ConversationContext) -> Option<String> {
        Some(format!("Guest: {}.", ctx.variables().text("guest")?))
    }
    fn variables(&self) -> Vec<(String, Value)> {
        vec![
            ("hotel".into(), json!("Grand")),
            ("guest".into(), json!("nobody")),
        ]
    }
    fn observers(&self) -> Vec<Arc<dyn liveagent::Observer>> {
        vec![Arc::new(FnObserver::sync(
            "concierge-log",
            Condition::of::<ToolResult>(),
            |_, _| {},
        ))]
    }
    fn human_input_hook(&self) -> Option<Arc<dyn liveagent::HumanInputHook>> {
        Some(Arc::new(|_req: HumanInputRequest| async {
            "from the plugin".to_string()
        }))
    }
}

/// Item 10: a plugin contributes prompt parts, variables (the agent's win), an observer and
/// a human-input hook.
#[actix_rt::test]
async fn plugins_contribute_prompt_variables_observers_and_hitl_hooks() {
    let server = server(Some(BOOK)).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Be kind.")
            .variable("guest", "Ada")
            .config(openai_config(&server))
            .plugin(Concierge)
            .tool(book_table()),
    );
    ready(&run).await;
    let update = session_update(&server);
    assert_eq!(
        update["session"]["instructions"],
        "Be kind.\n\nYou are the concierge of Grand.\n\nGuest: Ada."
    );
    run.speak(question()).await;
    run.wait_count("result", 1, |e| matches!(e, LiveEvent::ToolResult(_)))
        .await;
    let result = run.collect(|e| match e {
        LiveEvent::ToolResult(r) => Some(r.output.clone()),
        _ => None,
    });
    assert_eq!(result, vec![Ok(json!("2 people at from the plugin"))]);
    let started: Vec<String> = run
        .conversation
        .history()
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ObserverStarted(s) => Some(s.name.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec!["concierge-log"]);
    run.conversation.stop().await;
    server.stop().await;
}

/// Item 7 (OpenAI half): raw `session` fields are merged last into `session.update`, and the
/// frame still matches the official SDK's models.
#[actix_rt::test]
async fn raw_openai_session_fields_are_merged_last() {
    let server = server(None).await;
    let run = Run::start(
        LiveAgent::builder("assistant")
            .prompt("Typed prompt.")
            .config(openai_config(&server).raw_session(json!({
                "truncation": "disabled",
                "tracing": "auto",
                "include": ["item.input_audio_transcription.logprobs"],
                "audio": {"output": {"speed": 1.1}},
            }))),
    );
    ready(&run).await;
    let update = session_update(&server);
    assert_eq!(update["session"]["truncation"], "disabled");
    assert_eq!(update["session"]["tracing"], "auto");
    assert_eq!(update["session"]["audio"]["output"]["speed"], 1.1);
    // Merged, not replaced: the typed settings are still there.
    assert_eq!(update["session"]["instructions"], "Typed prompt.");
    assert!(
        update["session"]["audio"]["output"]["voice"].is_string(),
        "{update}"
    );
    validate_lines(&server.recording(), Protocol::OpenAi);
    run.conversation.stop().await;
    server.stop().await;
    let bad = LiveAgent::builder("a")
        .config(openai::RealtimeConfig::new("gpt-realtime").raw_session(json!({"trunc": 1})))
        .build()
        .unwrap()
        .run();
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("unknown field `trunc`"));
}
