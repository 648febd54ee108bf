//! A zombie instance. Instance A runs a conversation (an agent built with
//! `LiveAgentBuilder::store`, talking to the local realtime server over real WebSockets,
//! recording into a real Redis). While A is "paused", instance B (a second Redis client)
//! takes the conversation's lease over, as resuming it there does. A comes back and keeps
//! going: its next write is refused by the store, and A stops writing, publishes a fatal
//! `lease_lost` error and ends its side (the provider session closes). Nothing A says
//! after the takeover reaches the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use liveagent::{openai, ErrorKind, LiveAgent, LiveEvent};
use liveagent_server::{LocalServer, Pacing, Scenario, ServerConfig};
use liveagent_store::acceptance::{eventually, RedisServer};
use liveagent_store::{ConversationStore, HistoryRecord, RecorderOptions, RedisConversationStore};

const WAIT: Duration = Duration::from_secs(30);

const SCENARIO: &str = r#"
[[turn]]
say = "Noted, {input}."

[[turn]]
say = "Noted, {input}."
"#;

#[actix_rt::test]
async fn an_instance_that_lost_the_lease_stops_writing_and_ends_its_side() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut config = ServerConfig::scripted(Scenario::from_toml(SCENARIO).unwrap());
    config.pacing = Pacing::AsFastAsPossible;
    let server = LocalServer::start(config.recording_in_memory())
        .await
        .unwrap();
    let client = || {
        RedisConversationStore::builder(redis.url())
            .build()
            .unwrap()
    };
    let (store_a, store_b) = (client(), client());

    // Instance A.
    let agent = LiveAgent::builder("assistant")
        .config(
            openai::RealtimeConfig::new("gpt-realtime")
                .base_url(server.openai_url())
                .api_key("local-key"),
        )
        .store(store_a)
        .store_options(RecorderOptions {
            lease_ttl: Duration::from_secs(3),
            ..Default::default()
        })
        .build()
        .unwrap();
    let conversation = agent.run().unwrap();
    let id = conversation.conversation_id().expect("stored").clone();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut stream = conversation.stream().capacity(100_000).all();
    let sink = events.clone();
    actix::spawn(async move {
        while let Some(e) = stream.next().await {
            sink.lock().unwrap().push(e);
        }
    });
    conversation.send_text("first");
    let written = eventually(WAIT, || async {
        store_b.load(&id).await.ok().flatten().is_some_and(|s| {
            s.history.iter().any(
                |r| matches!(r, HistoryRecord::Assistant { text, .. } if text.contains("Noted, first")),
            )
        })
    })
    .await;
    assert!(written, "A wrote its first turn");
    let owner_a = store_b
        .lease_owner(&id)
        .await
        .unwrap()
        .expect("A holds the lease");

    // Instance B takes the conversation over (a client resumed it there).
    assert!(store_b
        .acquire_lease(&id, "instance-b", Duration::from_secs(30), true)
        .await
        .unwrap());
    let before = store_b.load(&id).await.unwrap().unwrap();

    // A, unaware, goes on: its write is refused, it ends its side.
    conversation.send_text("zombie words");
    let ended = eventually(WAIT, || async {
        let events = events.lock().unwrap();
        let lost = events.iter().any(|e| {
            matches!(e, LiveEvent::ErrorEvent(e) if e.fatal
                && &*e.source == "store"
                && e.error.kind == ErrorKind::Conflict
                && e.error.code.as_deref() == Some("lease_lost"))
        });
        let closed = events
            .iter()
            .any(|e| matches!(e, LiveEvent::SessionClosed(_)));
        lost && closed
    })
    .await;
    assert!(ended, "A ended its side: {:#?}", events.lock().unwrap());

    // Nothing of A's after the takeover is in the store; B still holds the lease.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = store_b.load(&id).await.unwrap().unwrap();
    assert_eq!(after.history, before.history);
    assert_eq!(after.revision, before.revision);
    assert!(!after
        .history
        .iter()
        .any(|r| matches!(r, HistoryRecord::User { text } if text.contains("zombie"))));
    assert_eq!(
        store_b.lease_owner(&id).await.unwrap().as_deref(),
        Some("instance-b")
    );
    assert_ne!(owner_a, "instance-b");
    conversation.stop().await;
}
