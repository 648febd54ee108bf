//! Bus subscriber queues are bounded by bytes as well as by count (issue 13, item 4): a
//! subscriber that stops taking events must not hold large events without limit. A
//! count-only bound lets 250 one-second audio chunks or 10,000 256 KB text deltas pile up.

use std::time::{Duration, Instant};

use actix::{Actor, Addr};
use futures_util::StreamExt;
use liveagent_core::{
    AudioChunk, AudioDropped, BusConfig, BusStats, ConversationContext, ErrorEvent, EventBus,
    GetStats, LiveEvent, ModelMessageChunk, RecordedAudio,
};

const FAILSAFE: Duration = Duration::from_secs(20);

async fn wait_stats(bus: &Addr<EventBus>, what: &str, f: impl Fn(&BusStats) -> bool) -> BusStats {
    let deadline = Instant::now() + FAILSAFE;
    loop {
        let stats = bus.send(GetStats).await.unwrap();
        if f(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "waited too long for {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One-second audio chunks (48 KB each) for a subscriber that takes nothing: far below the
/// count bound (250) but past the byte bound (1 MiB here), so the oldest are dropped and one
/// `AudioDropped` says so.
#[actix_rt::test]
async fn audio_queue_is_bounded_by_bytes() {
    let bus = EventBus::new(BusConfig {
        audio_queue_bytes: 1024 * 1024,
        ..BusConfig::default()
    })
    .start();
    let ctx = ConversationContext::new(bus.clone(), 24_000, 24_000);
    // Capacity 1 and never polled: the bus queue holds the rest.
    let _stuck = ctx.stream().capacity(1).only::<RecordedAudio>();
    let mut notices = ctx.stream().only::<AudioDropped>();
    for i in 0..100 {
        ctx.publish(RecordedAudio {
            audio: AudioChunk::new(vec![i as i16; 24_000], 24_000),
        });
    }
    // 1 MiB holds 21 chunks of 48,064 bytes; one is in flight and one in the channel.
    let stats = wait_stats(&bus, "audio drops", |s| {
        s.published >= 100 && s.dropped_audio >= 70
    })
    .await;
    assert!(stats.dropped_audio <= 80, "{stats:?}");
    let notice = tokio::time::timeout(FAILSAFE, notices.next())
        .await
        .expect("no AudioDropped")
        .unwrap();
    assert_eq!(&*notice.source, "bus");
    assert!(notice.dropped_ms >= 1000, "{notice:?}");
}

/// 256 KB text deltas for a subscriber that takes nothing: 40 of them are far below the
/// count bound (10,000) but past the byte bound (4 MiB here): the subscriber is unsubscribed
/// as stuck and an `ErrorEvent` says why; the others keep receiving.
#[actix_rt::test]
async fn control_queue_is_bounded_by_bytes() {
    let bus = EventBus::new(BusConfig {
        control_queue_bytes: 4 * 1024 * 1024,
        ..BusConfig::default()
    })
    .start();
    let ctx = ConversationContext::new(bus.clone(), 24_000, 24_000);
    let _stuck = ctx.stream().capacity(1).only::<ModelMessageChunk>();
    let mut errors = ctx.stream().only::<ErrorEvent>();
    let mut live = ctx.stream().capacity(100).only::<ModelMessageChunk>();
    let big = "x".repeat(256 * 1024);
    for _ in 0..40 {
        ctx.publish(ModelMessageChunk::new("item_big", big.as_str()));
        // A live subscriber keeps up.
        let got = tokio::time::timeout(FAILSAFE, live.next())
            .await
            .expect("live subscriber starved")
            .unwrap();
        assert_eq!(got.text.len(), big.len());
    }
    let err = tokio::time::timeout(FAILSAFE, errors.next())
        .await
        .expect("no ErrorEvent")
        .unwrap();
    assert!(err.error.message.contains("bytes"), "{}", err.error);
    let stats = wait_stats(&bus, "a stuck subscriber", |s| s.disconnected_stuck == 1).await;
    assert_eq!(stats.disconnected_stuck, 1);
    // The byte size the bound counts is the event's JSON size (or its samples for audio).
    let ev: LiveEvent = ModelMessageChunk::new("i", big.as_str()).into();
    assert!(ev.approx_bytes() > big.len());
}
