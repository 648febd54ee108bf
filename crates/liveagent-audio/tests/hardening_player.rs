//! The playback queue is capped by duration (issue 13, item 4): a provider that sends audio
//! 50 times faster than real time must not grow the player's memory without limit. Driven
//! through the public API: `SynthesizedAudio` published on a conversation's bus, played by a
//! real-time `WavSink` (the same playback core as `SoundDevicePlayer`, without a device).

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use liveagent_audio::{CloseSink, GetPlaybackStats, WavSink};
use liveagent_core::{
    AudioChunk, AudioDropped, ConversationContext, EventBus, PlaybackStopped, SynthesizedAudio,
};
use support::temp_dir;

const RATE: u32 = 24_000;
const FAILSAFE: Duration = Duration::from_secs(30);

/// 100 ms chunks published every 2 ms (50x real time) for 1.6 s: 80 s of audio for one
/// item. With the default cap (prebuffer + 20 s) the queue never holds more than that, the
/// rest is dropped with an `AudioDropped` event from the player, and the item is reported
/// interrupted with what was played (so a provider truncates it).
#[actix_rt::test]
async fn audio_at_fifty_times_real_time_stays_bounded_and_is_reported() {
    let dir = temp_dir("flood");
    let ctx = ConversationContext::new(EventBus::start_default(), RATE, RATE);
    let mut dropped = ctx.stream().only::<AudioDropped>();
    let mut stopped = ctx.stream().only::<PlaybackStopped>();
    let sink = WavSink::new(ctx.clone(), dir.join("out.wav"))
        .item_end_ms(100)
        .start()
        .unwrap();
    let chunk: Vec<i16> = (0..RATE as usize / 10)
        .map(|i| ((i % 48) as i16 - 24) * 500)
        .collect();
    let cap_ms = 60 + 20_000;
    let started = Instant::now();
    let mut sent_ms = 0u64;
    let mut max_queued_ms = 0u64;
    while sent_ms < 80_000 {
        ctx.publish(SynthesizedAudio {
            response_id: Some("resp_flood".into()),
            item_id: "item_flood".into(),
            audio: AudioChunk::new(chunk.clone(), RATE),
        });
        sent_ms += 100;
        if sent_ms.is_multiple_of(2_000) {
            let stats = sink.send(GetPlaybackStats).await.unwrap();
            max_queued_ms = max_queued_ms.max(stats.queued_ms);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Let the sink take every published chunk.
    let deadline = Instant::now() + FAILSAFE;
    let stats = loop {
        let stats = sink.send(GetPlaybackStats).await.unwrap();
        max_queued_ms = max_queued_ms.max(stats.queued_ms);
        if stats.chunks_received >= 800 {
            break stats;
        }
        assert!(Instant::now() < deadline, "sink stalled: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let wall_ms = started.elapsed().as_millis() as u64;
    assert!(
        max_queued_ms <= cap_ms + 100,
        "the queue held {max_queued_ms} ms, over the {cap_ms} ms cap"
    );
    // Everything sent either played, waits (within the cap) or was dropped and counted.
    assert!(
        stats.dropped_full_ms >= 80_000 - cap_ms - wall_ms - 200,
        "dropped {} ms of 80 s sent in {wall_ms} ms: {stats:?}",
        stats.dropped_full_ms
    );
    let report = loop {
        let r = tokio::time::timeout(FAILSAFE, dropped.next())
            .await
            .expect("no AudioDropped from the player")
            .unwrap();
        if &*r.source == "player" {
            break r;
        }
    };
    assert!(report.dropped_ms > 0, "{report:?}");
    assert!(report.reason.contains("queue"), "{report:?}");
    // Stopping the sink reports the item as cut short, with what was really played.
    let _ = sink.send(CloseSink).await;
    let stop = tokio::time::timeout(FAILSAFE, stopped.next())
        .await
        .expect("no PlaybackStopped")
        .unwrap();
    assert_eq!(&*stop.item_id, "item_flood");
    assert!(stop.interrupted, "{stop:?}");
    assert!(
        stop.played_ms < 80_000 - stats.dropped_full_ms + 1,
        "{stop:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A smaller cap set with `max_queue_ms`: an item that overflows it is reported interrupted
/// once it has played out what was kept, and its later audio is dropped too (the played
/// position stays a prefix of what the provider produced).
#[actix_rt::test]
async fn overflowing_item_plays_its_kept_prefix_then_reports_interrupted() {
    let dir = temp_dir("flood-small");
    let ctx = ConversationContext::new(EventBus::start_default(), RATE, RATE);
    let mut stopped = ctx.stream().only::<PlaybackStopped>();
    let mut dropped = ctx.stream().only::<AudioDropped>();
    let sink = WavSink::new(ctx.clone(), dir.join("out.wav"))
        .prebuffer_ms(0)
        .item_end_ms(100)
        .max_queue_ms(300)
        .start()
        .unwrap();
    // 1 s of audio at once, in 100 ms chunks: 300 ms fit, 700 ms are dropped.
    for _ in 0..10 {
        ctx.publish(SynthesizedAudio {
            response_id: Some("r".into()),
            item_id: "item_a".into(),
            audio: AudioChunk::new(vec![1000i16; RATE as usize / 10], RATE),
        });
    }
    let stop = tokio::time::timeout(FAILSAFE, stopped.next())
        .await
        .expect("no PlaybackStopped")
        .unwrap();
    assert_eq!(&*stop.item_id, "item_a");
    assert!(stop.interrupted, "{stop:?}");
    assert!(
        (250..=400).contains(&stop.played_ms),
        "played {} ms of a 300 ms queue",
        stop.played_ms
    );
    let stats = sink.send(GetPlaybackStats).await.unwrap();
    assert!(
        (600..=700).contains(&stats.dropped_full_ms),
        "dropped {} ms of 1 s with a 300 ms queue",
        stats.dropped_full_ms
    );
    // The reports (at most one a second) add up to what was dropped.
    let mut reported = 0;
    while reported < stats.dropped_full_ms {
        let r = tokio::time::timeout(FAILSAFE, dropped.next())
            .await
            .expect("AudioDropped reports do not add up")
            .unwrap();
        assert_eq!(&*r.source, "player", "{r:?}");
        reported += r.dropped_ms;
    }
    assert!(reported.abs_diff(stats.dropped_full_ms) <= 2, "{reported}");
    let _ = sink.send(CloseSink).await;
    let _ = std::fs::remove_dir_all(dir);
}
