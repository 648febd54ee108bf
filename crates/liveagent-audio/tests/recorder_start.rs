//! When a recorder's device starts: only once its actor runs on its arbiter, so audio never
//! waits in the capture ring for an arbiter that is still busy (with the caller, or opening
//! more devices) and then crosses the whole microphone path in one late burst (the cold
//! outlier of docs/performance-audio.md §4). On a private PulseAudio, in a child process
//! (see `support`).

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use liveagent_audio::{GetRecorderStats, SoundDeviceRecorder, StopAudio};
use liveagent_core::{ConversationContext, EventBus, RecordedAudio};
use support::*;

/// How long the test keeps the recorder's arbiter busy right after `start()` returned.
const BUSY: Duration = Duration::from_secs(4);

/// A recorder whose arbiter stays busy after `start()` has captured nothing when its actor
/// first runs (the device starts then, not in `start()`), and records from then on.
#[test]
fn recorder_device_starts_when_its_actor_runs() {
    if !is_child() {
        let pulse = PulseServer::start(24_000);
        let stdout = run_child(
            "recorder_device_starts_when_its_actor_runs",
            &pulse.envs(),
            &["ALSA_CONFIG_PATH"],
        );
        println!("{}", result(&stdout, "captured_while_busy_frames"));
        return;
    }
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut stream = ctx.stream().capacity(10_000).only::<RecordedAudio>();
        let mic = SoundDeviceRecorder::new(ctx.clone())
            .start()
            .expect("recorder on PulseAudio");
        // The arbiter is busy (as when an application opens twenty devices in a row): the
        // actor cannot run, so nothing could drain what the device captured meanwhile.
        std::thread::sleep(BUSY);
        // The first message the actor handles comes right after `started`.
        let stats = mic.send(GetRecorderStats).await.unwrap();
        println!(
            "\nRESULT captured_while_busy_frames={} (busy {BUSY:?})",
            stats.captured_frames
        );
        // PulseAudio's first capture may stall up to ~2 s; a device started in `start()`
        // would have captured at least the other ~2 s of the 4 s (48 000 frames at 24 kHz).
        // Started by the actor, it has had microseconds.
        assert!(
            stats.captured_frames < 12_000,
            "the device captured {} frames before the recorder's actor ran: it was started \
             before anything could drain it",
            stats.captured_frames
        );
        // And it does record once its actor runs.
        for _ in 0..5 {
            let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("no recorded audio within 10 s of the actor starting")
                .unwrap();
            assert_eq!(ev.audio.len(), 480, "20 ms chunks at 24 kHz");
        }
        mic.send(StopAudio).await.unwrap();
    });
}
