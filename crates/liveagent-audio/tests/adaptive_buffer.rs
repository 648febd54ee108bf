//! The player's adaptive device buffer on the real cpal path (ALSA → private PulseAudio null
//! sink): it opens the device with a small buffer, counts a device underrun during speech,
//! reports it as a `PlaybackUnderrun` event and plays on with a bigger buffer; a fixed buffer
//! reports the underrun but keeps its size. The underrun is induced the way a loaded machine
//! causes it: the sound server is stalled (SIGSTOP) for 300 ms while speech plays, so the
//! device runs dry. Assertions are on events and counters, never on durations.

mod support;

use std::time::Duration;

use actix::Addr;
use futures_util::StreamExt;
use liveagent_audio::{DeviceBuffer, GetDevice, GetPlaybackStats, SoundDevicePlayer, StopAudio};
use liveagent_core::{
    AudioChunk, ConversationContext, EventBus, PlaybackStopped, PlaybackUnderrun, SynthesizedAudio,
    UnderrunKind,
};
use liveagent_testkit::tone_pcm;
use support::*;

const PULSE_PID: &str = "LIVEAGENT_TEST_PULSE_PID";

/// Runs `test` in a child process on a private PulseAudio; returns its output.
fn on_pulse(test: &str) -> String {
    let pulse = PulseServer::start(24_000);
    let mut envs = pulse.envs();
    envs.push((PULSE_PID, pulse.pid().to_string()));
    run_child(test, &envs, &["ALSA_CONFIG_PATH"])
}

fn signal(sig: &str) {
    let pid = std::env::var(PULSE_PID).expect("pulse pid");
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid} failed");
}

/// Stalls the sound server for `ms` (the device's buffer runs dry meanwhile).
async fn stall_sound_server(ms: u64) {
    signal("-STOP");
    // a blocking sleep: nothing of ours should run "around" the stall
    std::thread::sleep(Duration::from_millis(ms));
    signal("-CONT");
}

fn publish_tone(ctx: &ConversationContext, item: &str, ms: u32) {
    let tone = tone_pcm(440.0, ms, 24_000, 8000);
    for c in tone.chunks(2400) {
        ctx.publish(SynthesizedAudio {
            response_id: None,
            item_id: item.into(),
            audio: AudioChunk::new(c.to_vec(), 24_000),
        });
    }
}

async fn wait_stopped(
    stopped: &mut (impl futures_util::Stream<Item = PlaybackStopped> + Unpin),
    item: &str,
) -> PlaybackStopped {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(15), stopped.next())
            .await
            .unwrap_or_else(|_| panic!("no PlaybackStopped for {item}"))
            .expect("event stream ended");
        if &*ev.item_id == item {
            return ev;
        }
    }
}

/// Plays a tone with a stall of the sound server in the middle; returns the device
/// underrun reports seen until the item played out.
async fn play_through_a_stall(
    ctx: &ConversationContext,
    player: &Addr<SoundDevicePlayer>,
    item: &str,
) -> (PlaybackStopped, Vec<PlaybackUnderrun>) {
    let mut stopped = ctx.stream().only::<PlaybackStopped>();
    let mut underruns = ctx.stream().only::<PlaybackUnderrun>();
    publish_tone(ctx, item, 2500);
    // Stall once the tone is really playing (a fresh PulseAudio stream may itself stall for
    // a while before its first periods are played).
    for _ in 0..500 {
        if player.send(GetPlaybackStats).await.unwrap().played_ms >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stall_sound_server(300).await;
    let ev = wait_stopped(&mut stopped, item).await;
    let mut reports = Vec::new();
    // the report is published by the player's 5 ms tick; the item's end came after it
    while let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(300), underruns.next()).await
    {
        println!("{u:?}");
        if u.kind == UnderrunKind::Device {
            reports.push(u);
        }
    }
    (ev, reports)
}

/// The default player opens the device with a small buffer (about 5 ms); a device underrun
/// during speech is counted, published as `PlaybackUnderrun { kind: Device, grow_to }`, and
/// at the next pause the stream is rebuilt with the doubled buffer; playback goes on.
#[test]
fn default_buffer_starts_small_and_grows_after_an_underrun() {
    if !is_child() {
        let out = on_pulse("default_buffer_starts_small_and_grows_after_an_underrun");
        println!("{out}");
        return;
    }
    actix::System::new().block_on(async {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let player = SoundDevicePlayer::new(ctx.clone())
            .start()
            .expect("player on PulseAudio");
        let dev = player.send(GetDevice).await.unwrap();
        println!("opened {dev:?}");
        let start = dev.buffer_frames.expect("the ALSA host says its period");
        let rate = dev.config.sample_rate;
        // about 5 ms, a power of two: 256 frames at 44.1/48 kHz
        let small = (rate / 200).max(32).next_power_of_two();
        assert!(
            start <= small,
            "default buffer {start} frames at {rate} Hz is not small"
        );
        let stats = player.send(GetPlaybackStats).await.unwrap();
        assert_eq!(stats.device_buffer_frames, start);
        assert_eq!(stats.device_buffer_resizes, 0);

        let (ev, reports) = play_through_a_stall(&ctx, &player, "first").await;
        let stats = player.send(GetPlaybackStats).await.unwrap();
        println!("after the stall: {stats:?}");
        assert!(!ev.interrupted, "{ev:?}");
        assert!(
            stats.device_underruns >= 1,
            "the stall was not counted: {stats:?}"
        );
        let first = reports.first().expect("no PlaybackUnderrun event");
        assert_eq!(&*first.source, "player");
        assert!(first.count >= 1 && first.new >= 1);
        assert_eq!(first.buffer_frames, start);
        assert_eq!(first.sample_rate, rate);
        // the default asks for 256 frames at 48 kHz (the host may round what it opens)
        let requested = (rate / 200).max(32).next_power_of_two();
        assert_eq!(first.grow_to, Some(requested * 2));

        // the item played out: at this pause the stream is rebuilt with the bigger buffer
        let mut grown = None;
        for _ in 0..200 {
            let s = player.send(GetPlaybackStats).await.unwrap();
            if s.device_buffer_resizes >= 1 {
                grown = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grown = grown.expect("the device buffer did not grow");
        assert!(grown.device_buffer_frames > start, "{grown:?}");
        let dev = player.send(GetDevice).await.unwrap();
        assert_eq!(dev.buffer_frames, Some(grown.device_buffer_frames));

        // the rebuilt stream plays: a second item plays out in full
        let mut stopped = ctx.stream().only::<PlaybackStopped>();
        publish_tone(&ctx, "second", 600);
        let ev = wait_stopped(&mut stopped, "second").await;
        assert!(!ev.interrupted, "{ev:?}");
        assert!(ev.played_ms >= 590, "{ev:?}");
        let after = player.send(GetPlaybackStats).await.unwrap();
        println!("after the second item: {after:?}");
        assert!(after.played_ms >= grown.played_ms + 590);
        player.send(StopAudio).await.unwrap();
    });
}

/// A fixed buffer (`device_buffer_frames`) counts and reports the underrun but keeps its size.
#[test]
fn fixed_buffer_reports_underruns_and_keeps_its_size() {
    if !is_child() {
        let out = on_pulse("fixed_buffer_reports_underruns_and_keeps_its_size");
        println!("{out}");
        return;
    }
    actix::System::new().block_on(async {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let player = SoundDevicePlayer::new(ctx.clone())
            .device_buffer(DeviceBuffer::Fixed(512))
            .start()
            .expect("player on PulseAudio");
        let frames = player.send(GetDevice).await.unwrap().buffer_frames;
        println!("fixed buffer: {frames:?}");
        let (ev, reports) = play_through_a_stall(&ctx, &player, "only").await;
        assert!(!ev.interrupted, "{ev:?}");
        let first = reports.first().expect("no PlaybackUnderrun event");
        assert_eq!(first.grow_to, None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let stats = player.send(GetPlaybackStats).await.unwrap();
        println!("{stats:?}");
        assert!(stats.device_underruns >= 1);
        assert_eq!(stats.device_buffer_resizes, 0);
        assert_eq!(player.send(GetDevice).await.unwrap().buffer_frames, frames);
        player.send(StopAudio).await.unwrap();
    });
}
