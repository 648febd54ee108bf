//! Resume on another instance. Instance A (a separate process) talks to the provider (the
//! local realtime server over real WebSockets) and writes the conversation to a real Redis;
//! it is killed with SIGKILL while a tool call is in flight. Instance B loads the conversation from Redis,
//! opens a new provider session that replays the history, runs the unanswered call once,
//! does not run the answered one again, and the conversation goes on. Asserted on the
//! frames the provider received.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::tools::{Tool, ToolError};
use liveagent::{gemini, openai, LiveAgent, LiveEvent, RunOptions};
use liveagent_core::RealtimeConfig;
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_store::acceptance::{eventually, RedisServer};
use liveagent_store::{
    resume, ConversationId, ConversationState, ConversationStore, HistoryRecord, RecorderOptions,
    RedisConversationStore, StoreRecorder,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

const FIRST: &str = r#"
[[turn]]
call = "sum_numbers"
args = { a = 2, b = 3 }
then_say = "The sum is {output}."

[[turn]]
call = "get_weather"
args = { city = "Paris" }
then_say = "Weather: {output}"
"#;

const RESUMED: &str = r#"
[[turn]]
say = "Back: {input}"

[[turn]]
say = "Back: {input}"
"#;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SumArgs {
    a: i64,
    b: i64,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct CityArgs {
    city: String,
}

/// Tools counting their runs; `hang_weather`: the weather tool never returns (the
/// instance dies while it runs).
fn tools(sums: Arc<AtomicUsize>, weathers: Arc<AtomicUsize>, hang_weather: bool) -> Vec<Tool> {
    vec![
        Tool::new("sum_numbers", "Sum two numbers.", move |a: SumArgs| {
            sums.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, ToolError>(a.a + a.b) }
        }),
        Tool::new(
            "get_weather",
            "The weather in a city.",
            move |a: CityArgs| {
                weathers.fetch_add(1, Ordering::SeqCst);
                async move {
                    if hang_weather {
                        std::future::pending::<()>().await;
                    }
                    Ok::<_, ToolError>(format!("sunny in {}", a.city))
                }
            },
        ),
    ]
}

#[derive(Clone, Copy, PartialEq)]
enum Provider {
    OpenAi,
    Gemini,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Gemini => "gemini",
        }
    }

    fn url(self, server: &LocalServer, scenario: Option<&str>) -> String {
        match (self, scenario) {
            (Provider::OpenAi, None) => server.openai_url(),
            (Provider::OpenAi, Some(s)) => server.openai_url_for(s),
            (Provider::Gemini, None) => server.gemini_url(),
            (Provider::Gemini, Some(s)) => server.gemini_url_for(s),
        }
    }

    fn config(self, url: String) -> Arc<dyn RealtimeConfig> {
        match self {
            Provider::OpenAi => Arc::new(
                openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(url)
                    .api_key("local-key"),
            ),
            Provider::Gemini => Arc::new(
                gemini::RealtimeConfig::new("gemini-live-2.5-flash-preview")
                    .base_url(url)
                    .api_key("local-key"),
            ),
        }
    }
}

fn client_frames(server: &LocalServer, from: usize) -> Vec<Value> {
    server.recording()[from..]
        .iter()
        .filter_map(|l| l.strip_prefix("> "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The newest resumption handle the provider sent (Gemini).
fn newest_handle(server: &LocalServer) -> Option<String> {
    server
        .recording()
        .iter()
        .filter_map(|l| l.strip_prefix("< "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|f| {
            f["sessionResumptionUpdate"]["newHandle"]
                .as_str()
                .map(str::to_owned)
        })
        .next_back()
}

const CHILD_VAR: &str = "LIVEAGENT_RESUME_CHILD";

/// Instance A's process, killed (SIGKILL) when the test ends, even on a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Instance A when run by a resume test as a child process (does nothing otherwise): talks,
/// writes to Redis, and hangs in `get_weather` until it is killed.
#[test]
fn instance_a() {
    if std::env::var(CHILD_VAR).is_err() {
        return;
    }
    let env = |k: &str| std::env::var(k).unwrap();
    let provider = if env("RESUME_PROVIDER") == "gemini" {
        Provider::Gemini
    } else {
        Provider::OpenAi
    };
    let (url, redis_url) = (env("RESUME_URL"), env("RESUME_REDIS"));
    let id = ConversationId::parse(&env("RESUME_ID")).unwrap();
    let counter = || Arc::new(AtomicUsize::new(0));
    actix_rt::System::new().block_on(async move {
        let store: Arc<dyn ConversationStore> =
            Arc::new(RedisConversationStore::builder(redis_url).build().unwrap());
        let agent = LiveAgent::builder("assistant")
            .config_arc(provider.config(url))
            .tools(tools(counter(), counter(), true))
            .build()
            .unwrap();
        let conversation = agent.run().unwrap();
        StoreRecorder::start(
            conversation.context().clone(),
            store.clone(),
            ConversationState::new(id.clone(), provider.name()),
            false,
            RecorderOptions::default(),
        );
        let mut events = conversation.stream().capacity(100_000).all();
        conversation.send_text("What is two plus three?");
        while let Some(e) = events.next().await {
            if matches!(&e, LiveEvent::OutputTranscriptChunk(t) if t.is_final && t.text.contains("The sum is"))
            {
                break;
            }
        }
        conversation.send_text("And the weather in Paris?");
        // Until killed.
        std::future::pending::<()>().await;
    });
}

/// OpenAI: instance A dies with `get_weather` in flight; instance B resumes from Redis.
#[test]
fn openai_conversation_resumes_on_another_instance_mid_tool_call() {
    resume_mid_tool_call(Provider::OpenAi);
}

/// Gemini without a usable resumption handle (B forgets the stored one, as when it
/// expired): the history replayed as `clientContent`.
#[test]
fn gemini_conversation_resumes_on_another_instance_mid_tool_call() {
    resume_mid_tool_call_with(Provider::Gemini, false);
}

/// Gemini with the resumption handle A's recorder stored (automatically, on every
/// `sessionResumptionUpdate`): B's setup resumes the provider's session with it, nothing
/// is replayed, and the in-flight call is answered once.
#[test]
fn gemini_conversation_resumes_with_the_stored_handle_mid_tool_call() {
    resume_mid_tool_call_with(Provider::Gemini, true);
}

fn resume_mid_tool_call(provider: Provider) {
    resume_mid_tool_call_with(provider, false);
}

fn resume_mid_tool_call_with(provider: Provider, use_handle: bool) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let redis_url = redis.url();
    let id = ConversationId::generate();

    // The provider: one local realtime server on its own thread, for both instances.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let mut config = ServerConfig::scripted(Scenario::from_toml(FIRST).unwrap())
                .with_scenario("resumed", Scenario::from_toml(RESUMED).unwrap());
            config.pacing = Pacing::AsFastAsPossible;
            let server = LocalServer::start(config.recording_in_memory())
                .await
                .unwrap();
            tx.send(server).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let server = rx.recv().unwrap();

    // Instance A: answers turn 1 (sum, answered), then dies during turn 2's get_weather.
    // Instance A is another process: this test binary, re-run as `instance_a`.
    let mut child = KillOnDrop(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "instance_a", "--nocapture", "--test-threads=1"])
            .env(CHILD_VAR, "1")
            .env("RESUME_PROVIDER", provider.name())
            .env("RESUME_URL", provider.url(&server, None))
            .env("RESUME_REDIS", &redis_url)
            .env("RESUME_ID", id.as_str())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("instance A starts"),
    );
    actix_rt::System::new().block_on(async move {
        let store: Arc<dyn ConversationStore> =
            Arc::new(RedisConversationStore::builder(redis_url).build().unwrap());
        // Wait until A has the weather call in flight (and stored).
        let in_flight = eventually(WAIT, || async {
            let newest = newest_handle(&server);
            store.load(&id).await.ok().flatten().is_some_and(|s| {
                s.tools_in_flight.values().any(|c| c.name == "get_weather")
                    && s.answered_call_ids().count() == 1
                    && (provider != Provider::Gemini || s.resumption_handle == newest)
            })
        })
        .await;
        assert!(
            in_flight,
            "A never stored the weather call in flight: {:?}",
            store.load(&id).await.ok().flatten()
        );
        // kill -9 instance A mid-tool-call: no goodbye, no last write.
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("A reaped");
        // Let the provider notice the dead socket before B's frames are counted.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mark = server.recording().len();
        let mut state = store.load(&id).await.unwrap().unwrap();
        // The handle A stored is the last one the provider gave A.
        let last_handle = newest_handle(&server);
        if provider == Provider::Gemini {
            assert!(last_handle.is_some(), "the local server issues handles");
            assert_eq!(state.resumption_handle, last_handle, "the latest handle is stored");
        }
        if !use_handle {
            state.resumption_handle = None;
        }
        let weather_call = state.pending_calls()[0].call_id.clone();
        let sum_call = state.answered_call_ids().next().unwrap().to_owned();

        // Instance B.
        let b_sums = Arc::new(AtomicUsize::new(0));
        let b_weathers = Arc::new(AtomicUsize::new(0));
        let agent = LiveAgent::builder("assistant")
            .config_arc(provider.config(provider.url(&server, Some("resumed"))))
            .tools(tools(b_sums.clone(), b_weathers.clone(), false))
            .build()
            .unwrap();
        let conversation = agent
            .run_with(RunOptions::new().config(resume::RestoringConfig::new(
                provider.config(provider.url(&server, Some("resumed"))),
                &state,
            )))
            .unwrap();
        let mut events = conversation.stream().capacity(100_000).all();
        StoreRecorder::start(
            conversation.context().clone(),
            store.clone(),
            state.clone(),
            true,
            RecorderOptions::default(),
        );
        assert_eq!(resume::rerun_pending_calls(conversation.context(), &state), 1);

        // The user goes on.
        let mut answered_weather = false;
        let got = tokio::time::timeout(WAIT, async {
            while let Some(e) = events.next().await {
                if let LiveEvent::ToolResult(r) = &e {
                    answered_weather |= &*r.call_id == weather_call.as_str();
                }
                if matches!(&e, LiveEvent::ResponseDone(_)) && answered_weather {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            got,
            Ok(true),
            "B never answered after the weather result; provider got {:#?}",
            client_frames(&server, mark)
                .iter()
                .filter(|f| f["type"] != "input_audio_buffer.append")
                .collect::<Vec<_>>()
        );
        conversation.send_text("Thanks");
        let back = tokio::time::timeout(WAIT, async {
            while let Some(e) = events.next().await {
                if matches!(&e, LiveEvent::OutputTranscriptChunk(t) if t.is_final && t.text.contains("Back: Thanks"))
                {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(back, Ok(true));

        assert_eq!(b_sums.load(Ordering::SeqCst), 0, "answered call not run again");
        assert_eq!(b_weathers.load(Ordering::SeqCst), 1, "in-flight call run once");

        if use_handle {
            // B resumed the provider's session with the stored handle: its setup carries
            // it, nothing is replayed, and the in-flight call gets exactly one response.
            let frames = client_frames(&server, mark);
            let setup = frames
                .iter()
                .find_map(|f| f.get("setup"))
                .expect("B's setup");
            assert_eq!(
                setup["sessionResumption"]["handle"].as_str(),
                last_handle.as_deref(),
                "{setup}"
            );
            assert!(
                !frames.iter().any(|f| f.get("clientContent").is_some_and(|c| c["turnComplete"] != true)),
                "no history replay with a handle: {frames:#?}"
            );
            // As a `toolResponse`, or (the call belongs to the old connection) as a
            // `functionResponse` part of `clientContent`.
            let in_tool_responses = frames
                .iter()
                .filter_map(|f| f.get("toolResponse"))
                .flat_map(|t| t["functionResponses"].as_array().into_iter().flatten());
            let in_content = frames
                .iter()
                .filter_map(|f| f.get("clientContent"))
                .flat_map(|c| c["turns"].as_array().into_iter().flatten())
                .flat_map(|t| t["parts"].as_array().into_iter().flatten())
                .filter_map(|p| p.get("functionResponse"));
            let weather: Vec<&Value> = in_tool_responses
                .chain(in_content)
                .filter(|r| r["name"] == "get_weather")
                .collect();
            assert_eq!(weather.len(), 1, "exactly one response: {frames:#?}");
            assert!(weather[0]["response"].to_string().contains("sunny in Paris"));
        } else if provider == Provider::OpenAi {
        // What the provider received from B: the history replayed, then one output.
        let frames = client_frames(&server, mark);
        let items: Vec<&Value> = frames
            .iter()
            .filter(|f| f["type"] == "conversation.item.create")
            .map(|f| &f["item"])
            .collect();
        let texts: Vec<String> = items
            .iter()
            .map(|i| match i["type"].as_str() {
                Some("message") => format!(
                    "{}: {}",
                    i["role"].as_str().unwrap_or("?"),
                    i["content"][0]["text"].as_str().unwrap_or("?")
                ),
                Some("function_call") => format!("call {} {}", i["name"], i["call_id"]),
                Some("function_call_output") => format!("output {} {}", i["call_id"], i["output"]),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            &texts[..6],
            &[
                "user: What is two plus three?".to_owned(),
                format!("call \"sum_numbers\" \"{sum_call}\""),
                format!("output \"{sum_call}\" \"5\""),
                "assistant: The sum is 5.".to_owned(),
                "user: And the weather in Paris?".to_owned(),
                format!("call \"get_weather\" \"{weather_call}\""),
            ],
            "replayed history: {texts:#?}"
        );
        let outputs: Vec<&String> = texts
            .iter()
            .filter(|t| t.starts_with(&format!("output \"{weather_call}\"")))
            .collect();
        assert_eq!(outputs.len(), 1, "exactly one output for the in-flight call: {texts:#?}");
        assert!(outputs[0].contains("sunny in Paris"));
        assert_eq!(
            texts.iter().filter(|t| t.starts_with(&format!("output \"{sum_call}\""))).count(),
            1,
            "the answered call's output only in the replay"
        );
        } else {
        // What the provider received from B: the history replayed as `clientContent`,
        // then one functionResponse for the in-flight call.
        let frames = client_frames(&server, mark);
        let mut parts: Vec<String> = Vec::new();
        for f in frames.iter().filter_map(|f| f.get("clientContent").or(f.get("client_content"))) {
            for turn in f["turns"].as_array().into_iter().flatten() {
                let role = turn["role"].as_str().unwrap_or("?");
                for p in turn["parts"].as_array().into_iter().flatten() {
                    if let Some(t) = p["text"].as_str() {
                        parts.push(format!("{role}: {t}"));
                    } else if let Some(c) = p.get("functionCall") {
                        parts.push(format!("call {}", c["name"]));
                    } else if let Some(r) = p.get("functionResponse") {
                        parts.push(format!("response {} {}", r["name"], r["response"]));
                    }
                }
            }
        }
        let tool_responses: Vec<String> = frames
            .iter()
            .filter_map(|f| f.get("toolResponse"))
            .flat_map(|t| t["functionResponses"].as_array().cloned().unwrap_or_default())
            .map(|r| format!("response {} {}", r["name"], r["response"]))
            .collect();
        parts.extend(tool_responses);
        let expect_in_order = [
            "user: What is two plus three?".to_owned(),
            "call \"sum_numbers\"".to_owned(),
            "response \"sum_numbers\" {\"result\":5}".to_owned(),
            // The local server's Gemini brain speaks the tool's response object.
            "model: The sum is {\"result\":5}.".to_owned(),
            "user: And the weather in Paris?".to_owned(),
            "call \"get_weather\"".to_owned(),
        ];
        let mut at = 0;
        for want in &expect_in_order {
            let found = parts[at..].iter().position(|p| p == want);
            assert!(found.is_some(), "{want:?} missing (in order) from {parts:#?}");
            at += found.unwrap() + 1;
        }
        let weather: Vec<&String> = parts.iter().filter(|p| p.starts_with("response \"get_weather\"")).collect();
        assert_eq!(weather.len(), 1, "exactly one response for the in-flight call: {parts:#?}");
        assert!(weather[0].contains("sunny in Paris"));
        assert_eq!(
            parts.iter().filter(|p| p.starts_with("response \"sum_numbers\"")).count(),
            1,
            "the answered call's result only in the replay: {parts:#?}"
        );
        let _ = (&sum_call, &weather_call);
        }
        // The conversation state in Redis: nothing in flight, the result once.
        let stored = eventually(WAIT, || async {
            store.load(&id).await.ok().flatten().is_some_and(|s| {
                s.tools_in_flight.is_empty()
                    && s.history.iter().filter(|r| matches!(r, HistoryRecord::ToolResult { call_id, .. } if *call_id == weather_call)).count() == 1
            })
        })
        .await;
        assert!(stored, "{:?}", store.load(&id).await.unwrap().map(|s| s.history));
        conversation.stop().await;
    });
}
