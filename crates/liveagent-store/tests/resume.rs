//! Resume on another instance. Instance A (its own actix system, on its own thread) talks
//! to the provider (the local realtime server over real WebSockets) and writes the
//! conversation to a real Redis; a tool call is in flight when A's system is torn down
//! (its sockets and actors die mid-call). Instance B loads the conversation from Redis,
//! opens a new provider session that replays the history, runs the unanswered call once,
//! does not run the answered one again, and the conversation goes on. Asserted on the
//! frames the provider received.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::tools::{Tool, ToolError};
use liveagent::{openai, LiveAgent, LiveEvent, RunOptions};
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

fn config(url: String) -> Arc<dyn RealtimeConfig> {
    Arc::new(
        openai::RealtimeConfig::new("gpt-realtime")
            .base_url(url)
            .api_key("local-key"),
    )
}

fn client_frames(server: &LocalServer, from: usize) -> Vec<Value> {
    server.recording()[from..]
        .iter()
        .filter_map(|l| l.strip_prefix("> "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Instance A dies with `get_weather` in flight; instance B resumes from Redis.
#[test]
fn conversation_resumes_on_another_instance_mid_tool_call() {
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
    let a_sums = Arc::new(AtomicUsize::new(0));
    let a_weathers = Arc::new(AtomicUsize::new(0));
    let (a_tx, a_rx) = std::sync::mpsc::channel();
    {
        let (url, redis_url, id) = (server.openai_url(), redis_url.clone(), id.clone());
        let (sums, weathers) = (a_sums.clone(), a_weathers.clone());
        std::thread::spawn(move || {
            let system = actix_rt::System::new();
            a_tx.send(actix_rt::System::current()).unwrap();
            system.block_on(async move {
                let store: Arc<dyn ConversationStore> =
                    Arc::new(RedisConversationStore::builder(redis_url).build().unwrap());
                let agent = LiveAgent::builder("assistant")
                    .config_arc(config(url))
                    .tools(tools(sums, weathers, true))
                    .build()
                    .unwrap();
                let conversation = agent.run().unwrap();
                StoreRecorder::start(
                    conversation.context().clone(),
                    store.clone(),
                    ConversationState::new(id.clone(), "openai"),
                    false,
                    RecorderOptions::default(),
                );
                let mut events = conversation.stream().capacity(100_000).all();
                conversation.send_text("What is two plus three?");
                while let Some(e) = events.next().await {
                    if matches!(&e, LiveEvent::OutputTranscriptChunk(t) if t.is_final && t.text.contains("The sum is 5"))
                    {
                        break;
                    }
                }
                conversation.send_text("And the weather in Paris?");
                // Hold the conversation until the thread's system is torn down.
                std::future::pending::<()>().await;
            });
        });
    }

    actix_rt::System::new().block_on(async move {
        let store: Arc<dyn ConversationStore> =
            Arc::new(RedisConversationStore::builder(redis_url).build().unwrap());
        // Wait until A has the weather call in flight (and stored).
        let in_flight = eventually(WAIT, || async {
            store.load(&id).await.ok().flatten().is_some_and(|s| {
                s.tools_in_flight.values().any(|c| c.name == "get_weather")
                    && s.answered_call_ids().count() == 1
            })
        })
        .await;
        assert!(in_flight, "A never stored the weather call in flight");
        assert_eq!(a_weathers.load(Ordering::SeqCst), 1);
        assert_eq!(a_sums.load(Ordering::SeqCst), 1);
        // A dies: its actix system stops (actors, the provider socket and the hanging tool
        // go away without a goodbye). A process kill -9 is what a two-process test would do.
        a_rx.recv().unwrap().stop();
        let mark = server.recording().len();
        let state = store.load(&id).await.unwrap().unwrap();
        let weather_call = state.pending_calls()[0].call_id.clone();
        let sum_call = state.answered_call_ids().next().unwrap().to_owned();

        // Instance B.
        let b_sums = Arc::new(AtomicUsize::new(0));
        let b_weathers = Arc::new(AtomicUsize::new(0));
        let agent = LiveAgent::builder("assistant")
            .config_arc(config(server.openai_url_for("resumed")))
            .tools(tools(b_sums.clone(), b_weathers.clone(), false))
            .build()
            .unwrap();
        let conversation = agent
            .run_with(RunOptions::new().config(resume::RestoringConfig::new(
                config(server.openai_url_for("resumed")),
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
