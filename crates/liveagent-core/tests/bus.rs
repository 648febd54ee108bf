//! The event bus and the conversation context: fan-out, filtered streams, unions, the
//! lagging-subscriber policy and unsubscription.

use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use liveagent_core::*;

/// Records every event it gets.
struct Collector {
    seen: Arc<Mutex<Vec<LiveEvent>>>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<LiveEvent> for Collector {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, _: &mut Context<Self>) {
        self.seen.lock().unwrap().push(event);
    }
}

impl Handler<SpeechStarted> for Collector {
    type Result = ();
    fn handle(&mut self, event: SpeechStarted, _: &mut Context<Self>) {
        self.seen.lock().unwrap().push(event.into());
    }
}

fn audio(n: i16) -> RecordedAudio {
    RecordedAudio {
        audio: AudioChunk::new(vec![n; 480], 24_000),
    }
}

fn text(s: &str) -> ModelMessageChunk {
    ModelMessageChunk::new("item", s)
}

async fn settle(bus: &Addr<EventBus>) -> BusStats {
    // Two round trips through the bus's mailbox let every queued delivery finish.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        bus.send(GetStats).await.unwrap();
    }
    bus.send(GetStats).await.unwrap()
}

#[actix_rt::test]
async fn fans_out_to_every_matching_subscriber_in_order() {
    let bus = EventBus::start_default();
    let ctx = ConversationContext::new(bus.clone(), 24_000, 24_000);
    let logs: Vec<_> = (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    for log in &logs {
        let addr = Collector { seen: log.clone() }.start();
        ctx.subscribe_filtered(EventFilter::of::<ModelMessageChunk>(), addr.recipient());
    }
    let typed = Arc::new(Mutex::new(Vec::new()));
    ctx.subscribe::<SpeechStarted>(
        Collector {
            seen: typed.clone(),
        }
        .start()
        .recipient(),
    );

    for i in 0..50 {
        ctx.publish(text(&i.to_string()));
    }
    ctx.publish(SpeechStarted::default());
    let stats = settle(&bus).await;

    for log in &logs {
        let texts: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                LiveEvent::ModelMessageChunk(c) => c.text.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(texts, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    }
    let typed = typed.lock().unwrap();
    assert_eq!(typed.len(), 1);
    assert!(matches!(typed[0], LiveEvent::SpeechStarted(_)));
    assert_eq!(stats.published, 51);
    assert_eq!(stats.delivered, 151);
    assert_eq!(stats.subscribers, 4);
}

#[actix_rt::test]
async fn typed_stream_yields_only_its_type() {
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut texts = ctx.stream().only::<ModelMessageChunk>();
    ctx.publish(SpeechStarted::default());
    ctx.publish(audio(1));
    ctx.publish(text("a"));
    ctx.publish(SpeechStopped::default());
    ctx.publish(text("b"));
    assert_eq!(&*texts.next().await.unwrap().text, "a");
    assert_eq!(&*texts.next().await.unwrap().text, "b");
}

#[actix_rt::test]
async fn union_stream_yields_both_types_in_order() {
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut events = ctx
        .stream()
        .union::<(ModelMessageChunk, InputTranscriptChunk)>();
    ctx.publish(text("1"));
    ctx.publish(SpeechStarted::default());
    ctx.publish(InputTranscriptChunk {
        item_id: None,
        text: "2".into(),
        is_final: false,
    });
    ctx.publish(audio(3));
    ctx.publish(text("3"));
    let mut kinds = Vec::new();
    for _ in 0..3 {
        kinds.push(events.next().await.unwrap().kind());
    }
    assert_eq!(
        kinds,
        vec![
            EventKind::ModelMessageChunk,
            EventKind::InputTranscriptChunk,
            EventKind::ModelMessageChunk
        ]
    );
}

#[actix_rt::test]
async fn streams_end_when_the_bus_shuts_down_and_unsubscribe_when_dropped() {
    let bus = EventBus::start_default();
    let ctx = ConversationContext::new(bus.clone(), 24_000, 24_000);
    let kept = ctx.stream().all();
    let dropped = ctx.stream().all();
    assert_eq!(settle(&bus).await.subscribers, 2);
    drop(dropped);
    assert_eq!(settle(&bus).await.subscribers, 1);
    bus.do_send(Shutdown);
    let rest: Vec<LiveEvent> = kept.collect().await;
    assert!(rest.is_empty());
}

#[actix_rt::test]
async fn subscribers_of_stopped_actors_are_removed() {
    let bus = EventBus::start_default();
    let ctx = ConversationContext::new(bus.clone(), 24_000, 24_000);
    let addr = Collector {
        seen: Default::default(),
    }
    .start();
    ctx.subscribe_filtered(EventFilter::all(), addr.clone().recipient());
    assert_eq!(settle(&bus).await.subscribers, 1);
    // Stop the actor: its recipient goes away with it.
    addr.do_send(StopCollector);
    drop(addr);
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctx.publish(text("after stop"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(settle(&bus).await.subscribers, 0);
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopCollector;

/// Answered once every event before it was handled.
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

impl Handler<Flush> for Collector {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
}

impl Handler<StopCollector> for Collector {
    type Result = ();
    fn handle(&mut self, _: StopCollector, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A subscriber on its own thread whose first delivery blocks until the test opens a gate,
/// so everything published meanwhile waits in the bus's queue for it.
struct Gated {
    gate: Option<std_mpsc::Receiver<()>>,
    seen: Arc<Mutex<Vec<LiveEvent>>>,
}

impl Actor for Gated {
    type Context = Context<Self>;
}

impl Handler<LiveEvent> for Gated {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, _: &mut Context<Self>) {
        if let Some(gate) = self.gate.take() {
            gate.recv().unwrap();
        }
        self.seen.lock().unwrap().push(event);
    }
}

#[actix_rt::test]
async fn lagging_subscriber_loses_oldest_audio_but_no_control_event() {
    let limit = 10;
    let bus = EventBus::new(BusConfig {
        audio_queue_limit: limit,
        control_queue_limit: 10_000,
        ..BusConfig::default()
    })
    .start();
    let ctx = ConversationContext::new(bus.clone(), 24_000, 24_000);

    let (open, gate) = std_mpsc::channel();
    let slow_log = Arc::new(Mutex::new(Vec::new()));
    let arbiter = Arbiter::new();
    let slow_seen = slow_log.clone();
    let slow = Gated::start_in_arbiter(&arbiter.handle(), move |_| Gated {
        gate: Some(gate),
        seen: slow_seen,
    });
    ctx.subscribe_filtered(
        EventFilter::of::<RecordedAudio>().or::<ModelMessageChunk>(),
        slow.recipient(),
    );

    // A fast subscriber sees everything.
    let fast_log = Arc::new(Mutex::new(Vec::new()));
    let fast = Collector {
        seen: fast_log.clone(),
    }
    .start();
    ctx.subscribe_filtered(
        EventFilter::of::<RecordedAudio>().or::<ModelMessageChunk>(),
        fast.clone().recipient(),
    );
    let mut dropped_notices = ctx.stream().only::<AudioDropped>();

    // The first event blocks the slow subscriber; then 100 audio chunks and 5 control events.
    ctx.publish(text("first"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..100 {
        // Publish and let the fast subscriber take it (it keeps up; the slow one cannot).
        bus.send(Publish(audio(i).into())).await.unwrap();
        if i % 20 == 0 {
            bus.send(Publish(text(&format!("control {i}")).into()))
                .await
                .unwrap();
        }
        fast.send(Flush).await.unwrap();
    }
    let stats = settle(&bus).await;
    // What fit in the laggard's mailbox went there at once (at most its capacity, 16);
    // of the rest the bus keeps only the newest `limit` audio events.
    assert!(
        stats.dropped_audio >= 100 - limit as u64 - 16 && stats.dropped_audio < 100,
        "the bus keeps only `limit` audio events for the laggard: {stats:?}"
    );
    let notice = dropped_notices.next().await.unwrap();
    assert!(notice.reason.contains("lags"), "{notice:?}");

    open.send(()).unwrap();
    settle(&bus).await;

    let slow_events = slow_log.lock().unwrap().clone();
    let controls: Vec<String> = slow_events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ModelMessageChunk(c) => Some(c.text.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        controls,
        vec![
            "first",
            "control 0",
            "control 20",
            "control 40",
            "control 60",
            "control 80"
        ]
    );
    let audio_values: Vec<i16> = slow_events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::RecordedAudio(a) => Some(a.audio.samples[0]),
            _ => None,
        })
        .collect();
    assert!(
        audio_values.ends_with(&(90..100).collect::<Vec<i16>>()),
        "the newest audio survives: {audio_values:?}"
    );
    assert!(
        audio_values.windows(2).all(|w| w[0] < w[1]),
        "in order: {audio_values:?}"
    );
    assert_eq!(
        audio_values.len() as u64 + stats.dropped_audio,
        100,
        "every audio event was either delivered or counted as dropped"
    );

    // The fast subscriber lost nothing.
    assert_eq!(fast_log.lock().unwrap().len(), 1 + 100 + 5);
    arbiter.stop();
}

#[actix_rt::test]
async fn stuck_subscriber_is_disconnected_with_an_error_event() {
    let bus = EventBus::new(BusConfig {
        audio_queue_limit: 10,
        control_queue_limit: 20,
        ..BusConfig::default()
    })
    .start();
    let ctx = ConversationContext::new(bus.clone(), 24_000, 24_000);
    let (_open, gate) = std_mpsc::channel::<()>();
    let arbiter = Arbiter::new();
    let stuck = Gated::start_in_arbiter(&arbiter.handle(), move |_| Gated {
        gate: Some(gate),
        seen: Default::default(),
    });
    ctx.subscribe_filtered(EventFilter::of::<ModelMessageChunk>(), stuck.recipient());
    let mut errors = ctx.stream().only::<ErrorEvent>();
    // The first 16 go straight into its mailbox (its capacity); the rest wait in the bus
    // until more than 20 do.
    for i in 0..60 {
        ctx.publish(text(&i.to_string()));
    }
    let err = errors.next().await.unwrap();
    assert_eq!(err.error.kind, ErrorKind::Internal);
    let stats = settle(&bus).await;
    assert_eq!(stats.disconnected_stuck, 1);
    drop(_open);
    arbiter.stop();
}

#[test]
fn error_events_and_secrets_never_show_keys() {
    let secret = Secret::new("sk-test-SECRET");
    let request = ConnectRequest {
        url: "wss://example.invalid/v1/realtime?key=sk-test-SECRET".into(),
        headers: vec![("Authorization".into(), "Bearer sk-test-SECRET".into())],
        secret: Some(secret.clone()),
    };
    let shown = format!("{request:?} {secret:?} {secret}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("***"));
}
