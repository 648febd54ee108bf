//! Conversations on worker arbiters (`LiveAgentSystem::arbiters`, `LiveAgent::run_on`),
//! against the local realtime server over real WebSockets: each conversation's actors run on
//! the worker it was given (round-robin), a full spoken turn works from the caller's arbiter,
//! and shutdown stops them all.

use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use liveagent::{EventFilter, LiveAgent, LiveAgentSystem, LiveEvent, ResponseDone, SessionOpened};
use liveagent_e2e::*;

/// Notes the thread it runs on.
struct WhereAmI(Arc<Mutex<Vec<ThreadId>>>);

impl Actor for WhereAmI {
    type Context = Context<Self>;
}

impl Handler<LiveEvent> for WhereAmI {
    type Result = ();
    fn handle(&mut self, _: LiveEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(std::thread::current().id());
    }
}

#[actix_rt::test]
async fn conversations_spread_round_robin_over_worker_arbiters() {
    let server = server(None).await;
    let threads = Arc::new(Mutex::new(Vec::new()));
    let t = threads.clone();
    // The observer is made on the conversation's arbiter, so it reports where that is.
    let system = LiveAgentSystem::new()
        .arbiters(2)
        .observer(EventFilter::of::<SessionOpened>(), move |_| {
            WhereAmI(t.clone()).start().recipient()
        });
    let agent = LiveAgent::builder("assistant")
        .config(openai_config(&server))
        .build()
        .unwrap();
    let contexts: Vec<_> = (0..4).map(|_| system.run(&agent).unwrap()).collect();
    assert_eq!(system.len(), 4);

    // A spoken turn on a conversation that lives on a worker, driven from this arbiter.
    let mut done = contexts[1].stream().only::<ResponseDone>();
    let mut speech = question().to_vec();
    speech.extend(silence_pcm(1000, 24_000));
    for chunk in speech.chunks(2400) {
        contexts[1].publish(liveagent::RecordedAudio {
            audio: liveagent::AudioChunk::new(chunk.to_vec(), 24_000),
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answer = tokio::time::timeout(FAILSAFE, done.next())
        .await
        .expect("an answer")
        .expect("stream open");
    assert_eq!(answer.status, liveagent::ResponseStatus::Completed);

    let deadline = std::time::Instant::now() + FAILSAFE;
    while threads.lock().unwrap().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "sessions not opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = threads.lock().unwrap().clone();
    let here = std::thread::current().id();
    assert!(
        seen.iter().all(|t| *t != here),
        "a conversation ran on the caller's arbiter: {seen:?}"
    );
    let mut distinct = seen.clone();
    distinct.sort_by_key(|t| format!("{t:?}"));
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        2,
        "4 conversations over 2 workers: {seen:?}"
    );

    assert!(system.shutdown().await, "every actor stopped");
    drop(done);
    server.stop().await;
}

#[actix_rt::test]
async fn run_on_a_stopped_arbiter_is_an_error() {
    let server = server(None).await;
    let agent = LiveAgent::builder("assistant")
        .config(openai_config(&server))
        .build()
        .unwrap();
    let worker = Arbiter::new();
    let handle = worker.handle();
    worker.stop();
    let _ = worker.join();
    let Err(err) = agent.run_on(&handle) else {
        panic!("a conversation started on a stopped arbiter")
    };
    assert!(err.to_string().contains("arbiter"), "{err}");
    server.stop().await;
}
