//! `LiveAgentSystem` in a running actix system, against the local realtime server over real
//! WebSockets: system-wide and per-agent observers get their events, a full turn works, and
//! shutdown stops every actor of every conversation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use liveagent::{
    EventFilter, LiveAgent, LiveAgentSystem, LiveEvent, ResponseDone, SessionClosed, SessionOpened,
    SpeechStarted,
};
use liveagent_e2e::*;

/// Remembers the kinds it saw.
struct Seen(Arc<Mutex<Vec<String>>>, Arc<AtomicUsize>);

impl Actor for Seen {
    type Context = Context<Self>;
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

impl Handler<LiveEvent> for Seen {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(format!("{:?}", event.kind()));
    }
}

#[actix_rt::test]
async fn system_runs_conversations_with_observers_and_shuts_down_cleanly() {
    let server = server(None).await;
    let system_seen = Arc::new(Mutex::new(Vec::new()));
    let agent_seen = Arc::new(Mutex::new(Vec::new()));
    let observers_stopped = Arc::new(AtomicUsize::new(0));

    let (s1, st1) = (system_seen.clone(), observers_stopped.clone());
    let system = LiveAgentSystem::new().observer(
        EventFilter::of::<SessionOpened>()
            .or::<ResponseDone>()
            .or::<SessionClosed>(),
        move |_| Seen(s1.clone(), st1.clone()).start().recipient(),
    );
    let (s2, st2) = (agent_seen.clone(), observers_stopped.clone());
    let agent = LiveAgent::builder("assistant")
        .prompt("You are a test assistant.")
        .config(openai_config(&server))
        .observer(EventFilter::of::<SpeechStarted>(), move |_| {
            Seen(s2.clone(), st2.clone()).start().recipient()
        })
        .build()
        .unwrap();

    // Two conversations of the same agent, independent of each other.
    let first = system.run(&agent).unwrap();
    let second = system.run(&agent).unwrap();
    assert_eq!(system.len(), 2);

    let mut done = first.stream().only::<ResponseDone>();
    let mut speech = question().to_vec();
    speech.extend(silence_pcm(1000, 24_000));
    for chunk in speech.chunks(2400) {
        first.publish(liveagent::RecordedAudio {
            audio: liveagent::AudioChunk::new(chunk.to_vec(), 24_000),
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answer = tokio::time::timeout(FAILSAFE, done.next())
        .await
        .expect("an answer")
        .expect("stream open");
    assert_eq!(answer.status, liveagent::ResponseStatus::Completed);
    let mut second_stream = second.stream().all();

    assert!(
        system.shutdown().await,
        "every actor of every conversation stopped"
    );
    assert!(system.is_empty());
    // Streams of stopped conversations end.
    let rest: Vec<LiveEvent> =
        tokio::time::timeout(FAILSAFE, (&mut second_stream).collect::<Vec<_>>())
            .await
            .unwrap();
    assert!(
        rest.iter()
            .any(|e| matches!(e, LiveEvent::SessionClosed(_))),
        "{rest:?}"
    );
    drop(done);

    let system_seen = system_seen.lock().unwrap().clone();
    assert_eq!(
        system_seen.iter().filter(|k| *k == "SessionOpened").count(),
        2,
        "{system_seen:?}"
    );
    assert_eq!(
        system_seen.iter().filter(|k| *k == "SessionClosed").count(),
        2,
        "{system_seen:?}"
    );
    assert!(
        system_seen.iter().any(|k| k == "ResponseDone"),
        "{system_seen:?}"
    );
    let agent_seen = agent_seen.lock().unwrap().clone();
    assert!(
        !agent_seen.is_empty() && agent_seen.iter().all(|k| k == "SpeechStarted"),
        "{agent_seen:?}"
    );

    // Observer actors end with their conversations (4: one system + one agent observer each).
    let deadline = std::time::Instant::now() + FAILSAFE;
    while observers_stopped.load(Ordering::SeqCst) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "observers still running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

/// Whatever is published right after `run()` returns reaches the session: the session is
/// subscribed before `run()` returns (text sent before the connection is up waits for it).
#[actix_rt::test]
async fn input_published_right_after_run_is_not_lost() {
    let server = server(None).await;
    let agent = LiveAgent::builder("assistant")
        .config(openai_config(&server))
        .build()
        .unwrap();
    let conversation = agent.run().unwrap();
    conversation.send_text("hello right away");
    let mut words = conversation
        .stream()
        .only::<liveagent::OutputTranscriptChunk>();
    let deadline = tokio::time::Instant::now() + FAILSAFE;
    let mut heard = String::new();
    while !heard.contains("hello right away") {
        match tokio::time::timeout_at(deadline, words.next()).await {
            Ok(Some(chunk)) => heard.push_str(&chunk.text),
            other => panic!("no answer to the early text (heard {heard:?}): {other:?}"),
        }
    }
    conversation.stop().await;
    server.stop().await;
}
