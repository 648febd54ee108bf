//! The recorder on a real conversation: a `LiveAgent` talking to the local realtime server
//! over a real WebSocket, its state written to a real Redis as it happens, and kept going
//! (with a warning event) while Redis is down, then written when Redis is back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::tools::{tool, ToolError};
use liveagent::{openai, LiveAgent, LiveEvent};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_store::acceptance::{eventually, RedisServer};
use liveagent_store::{
    ConversationId, ConversationState, ConversationStore, GetRecorderStatus, HistoryRecord,
    RecordOps, RecorderOptions, RedisConversationStore, ResumeToken, StoreOp, StoreRecorder,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Sum two numbers.
///
/// # Arguments
/// * `a` - The first number.
/// * `b` - The second number.
#[tool(crate = liveagent::tools)]
async fn sum_numbers(a: i64, b: i64) -> Result<i64, ToolError> {
    Ok(a + b)
}

const SCENARIO: &str = r#"
[[turn]]
call = "sum_numbers"
args = { a = 2, b = 3 }
then_say = "The sum is {output}."

[[turn]]
say = "Noted, {input}."
"#;

async fn server() -> LocalServer {
    let mut config = ServerConfig::scripted(Scenario::from_toml(SCENARIO).unwrap());
    config.pacing = Pacing::AsFastAsPossible;
    LocalServer::start(config.recording_in_memory())
        .await
        .unwrap()
}

struct Talk {
    conversation: liveagent::Conversation,
    events: Arc<Mutex<Vec<LiveEvent>>>,
}

impl Talk {
    fn start(server: &LocalServer) -> Talk {
        let agent = LiveAgent::builder("assistant")
            .prompt("You add numbers.")
            .config(
                openai::RealtimeConfig::new("gpt-realtime")
                    .base_url(server.openai_url())
                    .api_key("local-key"),
            )
            .tool(sum_numbers())
            .build()
            .unwrap();
        let conversation = agent.run().unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut stream = conversation.stream().capacity(100_000).all();
        let sink = events.clone();
        actix::spawn(async move {
            while let Some(e) = stream.next().await {
                sink.lock().unwrap().push(e);
            }
        });
        Talk {
            conversation,
            events,
        }
    }

    async fn said(&self, needle: &str) {
        let ok = eventually(WAIT, || async {
            self.events.lock().unwrap().iter().any(|e| {
                matches!(e, LiveEvent::OutputTranscriptChunk(t) if t.is_final && t.text.contains(needle))
            })
        })
        .await;
        assert!(ok, "the model never said {needle:?}");
    }

    fn store_warnings(&self) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, LiveEvent::ErrorEvent(e) if &*e.source == "store" && !e.fatal))
            .count()
    }
}

fn texts(state: &ConversationState) -> Vec<String> {
    state
        .history
        .iter()
        .map(|r| match r {
            HistoryRecord::User { text } => format!("user: {text}"),
            HistoryRecord::Assistant { text, .. } => format!("assistant: {text}"),
            HistoryRecord::ToolCall {
                name, arguments, ..
            } => format!("call: {name} {arguments}"),
            HistoryRecord::ToolResult { output, .. } => format!("result: {output:?}"),
        })
        .collect()
}

/// A spoken-answer turn with a tool call lands in Redis as user turn, call, result and
/// assistant turn, in order, with nothing left in flight; variables and the resume token
/// written by the application are there too.
#[actix_rt::test]
async fn conversation_is_written_to_redis_as_it_happens() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = server().await;
    let store: Arc<dyn ConversationStore> = Arc::new(
        RedisConversationStore::builder(redis.url())
            .build()
            .unwrap(),
    );
    let talk = Talk::start(&server);
    let id = ConversationId::generate();
    let recorder = StoreRecorder::start(
        talk.conversation.context().clone(),
        store.clone(),
        ConversationState::new(id.clone(), "openai"),
        false,
        RecorderOptions::default(),
    );
    let token = ResumeToken::generate();
    recorder.do_send(RecordOps(vec![
        StoreOp::SetResumeToken(token.clone()),
        StoreOp::SetVariable {
            name: "user".into(),
            value: "Ada".into(),
        },
    ]));
    talk.conversation.send_text("What is two plus three?");
    talk.said("The sum is 5").await;
    let want = vec![
        "user: What is two plus three?".to_owned(),
        format!("call: sum_numbers {}", json!({"a": 2, "b": 3})),
        "result: Ok(Number(5))".to_owned(),
        "assistant: The sum is 5.".to_owned(),
    ];
    let ok = eventually(WAIT, || async {
        store
            .load(&id)
            .await
            .ok()
            .flatten()
            .is_some_and(|s| texts(&s) == want)
    })
    .await;
    let state = store.load(&id).await.unwrap().unwrap();
    assert!(ok, "stored history: {:?}", texts(&state));
    assert!(state.tools_in_flight.is_empty());
    assert_eq!(state.variables.get("user").map(String::as_str), Some("Ada"));
    assert!(state.resume_token.unwrap().matches(token.expose()));
    let status = recorder.send(GetRecorderStatus).await.unwrap();
    assert_eq!(
        status.saves, 1,
        "one whole write at creation, then changes only"
    );
    assert!(status.batches_written >= 2, "{status:?}");
    assert_eq!(talk.store_warnings(), 0);
    talk.conversation.stop().await;
}

/// Redis dies mid-conversation: the conversation goes on (the model still answers), one
/// warning event says the state is not saved; Redis comes back empty and the recorder
/// writes the whole conversation, including the turn made during the outage.
#[actix_rt::test]
async fn redis_down_conversation_goes_on_and_state_is_written_when_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let server = server().await;
    let store: Arc<dyn ConversationStore> = Arc::new(
        RedisConversationStore::builder(redis.url())
            .response_timeout(Duration::from_millis(500))
            .connection_timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    );
    let talk = Talk::start(&server);
    let id = ConversationId::generate();
    let options = RecorderOptions {
        retry_max: Duration::from_millis(300),
        ..RecorderOptions::default()
    };
    let recorder = StoreRecorder::start(
        talk.conversation.context().clone(),
        store.clone(),
        ConversationState::new(id.clone(), "openai"),
        false,
        options,
    );
    talk.conversation.send_text("What is two plus three?");
    talk.said("The sum is 5").await;
    assert!(
        eventually(WAIT, || async {
            store
                .load(&id)
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s.history.len() == 4)
        })
        .await
    );

    redis.kill();
    talk.conversation.send_text("remember the number");
    talk.said("Noted").await;
    assert!(
        eventually(WAIT, || async { talk.store_warnings() == 1 }).await,
        "one warning while the store is down"
    );
    assert!(recorder.send(GetRecorderStatus).await.unwrap().degraded);

    redis.restart();
    let ok = eventually(WAIT, || async {
        store
            .load(&id)
            .await
            .ok()
            .flatten()
            .is_some_and(|s| s.history.len() == 6)
    })
    .await;
    let state = store.load(&id).await.ok().flatten();
    assert!(
        ok,
        "state after Redis came back: {:?}",
        state.as_ref().map(texts)
    );
    let state = state.unwrap();
    assert_eq!(texts(&state)[4], "user: remember the number");
    assert!(texts(&state)[5].starts_with("assistant: Noted"));
    let status = recorder.send(GetRecorderStatus).await.unwrap();
    assert!(!status.degraded);
    assert_eq!(status.saves, 2, "re-seeded once: Redis came back empty");
    assert_eq!(talk.store_warnings(), 1, "one warning per outage");
    talk.conversation.stop().await;
}
