//! Barge-in: from the moment the provider's speech-started frame is decoded (seen by an
//! event middleware, before it is published) until the player's output is silent (the
//! first silent frame's callback time plus the device's reported output latency,
//! `PlaybackStats::last_silence_at`), on the real cpal path.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use liveagent::audio::{
    DeviceBuffer, GetDevice, GetPlaybackStats, SoundDevicePlayer, SoundDeviceRecorder, StopAudio,
};
use liveagent::{EventMiddleware, LiveEvent, SessionOptions};

use crate::common::{self, out, ServerProcess};
use crate::latency::wait_ready;

#[derive(Clone, Default)]
struct SpeechStartedAt(Arc<Mutex<Option<Instant>>>);

impl EventMiddleware for SpeechStartedAt {
    fn on_event(&self, event: LiveEvent) -> Option<LiveEvent> {
        if let LiveEvent::SpeechStarted(_) = &event {
            if let Ok(mut t) = self.0.lock() {
                *t = Some(Instant::now());
            }
        }
        Some(event)
    }
}

/// Runs `trials` barge-ins; returns (speech-started -> silent, Interrupted handled -> silent)
/// in microseconds, and the mean device period.
pub async fn run(
    server_bin: PathBuf,
    trials: usize,
    buffer: DeviceBuffer,
    mic_device_default: bool,
) -> anyhow::Result<()> {
    let scenario = common::long_say_scenario(trials * 2 + 10, 30_000)?;
    let server = ServerProcess::start(
        &server_bin,
        &[
            "--brain".into(),
            "script".into(),
            "--scenario".into(),
            scenario.display().to_string(),
            "--chunk-ms".into(),
            "20".into(),
            "--workers".into(),
            "1".into(),
        ],
    )?;
    let started_at = SpeechStartedAt::default();
    let agent = liveagent::LiveAgent::builder("bench")
        .prompt("You are a benchmark.")
        .config(
            liveagent::openai::RealtimeConfig::new("gpt-realtime")
                .base_url(&server.openai_url)
                .api_key("local"),
        )
        .event_middleware(started_at.clone())
        .session_options(SessionOptions::default())
        .build()?;
    let conv = agent.run()?;
    wait_ready(std::slice::from_ref(&conv), Duration::from_secs(20)).await?;
    let mut underrun_events = conv
        .context()
        .stream()
        .only::<liveagent::PlaybackUnderrun>();
    let player = SoundDevicePlayer::new(conv.context().clone())
        .device_buffer(buffer)
        .start()
        .context("cannot open the output device (run under scripts/bench.sh)")?;
    let mut mic = SoundDeviceRecorder::new(conv.context().clone()).chunk_ms(20);
    if mic_device_default {
        mic = mic.device_default_config();
    }
    let mic = mic
        .start()
        .context("cannot open the input device (run under scripts/bench.sh)")?;
    let speech = liveagent_testkit::speech_pcm("Stop, wait a moment please.", 24_000);
    let speech_path =
        std::env::temp_dir().join(format!("liveagent-bench-barge-{}.raw", std::process::id()));
    std::fs::write(
        &speech_path,
        speech
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )?;
    conv.send_text("Please talk for a long time.");

    let mut to_silence = Vec::new();
    let mut handled_to_silence = Vec::new();
    let start_frames = player.send(GetDevice).await?.buffer_frames;
    let t_start = Instant::now();
    let p_start = player.send(GetPlaybackStats).await?.periods;
    for trial in 0..trials {
        // Wait until the answer has been audible for a while.
        let base = player.send(GetPlaybackStats).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = player.send(GetPlaybackStats).await?;
            if s.played_ms >= base.played_ms + 1200 && s.queued_ms > 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "trial {trial}: the answer did not play (played {} ms)",
                    s.played_ms
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = player.send(GetPlaybackStats).await?;
        if let Ok(mut t) = started_at.0.lock() {
            *t = None;
        }
        let mut paplay = Command::new("paplay")
            .args([
                "--latency-msec=20",
                "--device=mic",
                "--raw",
                "--rate=24000",
                "--channels=1",
                "--format=s16le",
            ])
            .arg(&speech_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("paplay not found")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let after = loop {
            let s = player.send(GetPlaybackStats).await?;
            if s.interruptions > before.interruptions && s.last_silence_at != before.last_silence_at
            {
                break Some(s);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let _ = tokio::task::spawn_blocking(move || paplay.wait()).await;
        let Some(after) = after else {
            out(format!("trial {trial}: no interruption seen within 10 s"));
            continue;
        };
        let speech_at = started_at.0.lock().ok().and_then(|t| *t);
        if let (Some(t0), Some(t1)) = (speech_at, after.last_silence_at) {
            to_silence.push(t1.saturating_duration_since(t0).as_micros() as u32);
        }
        if let Some(d) = after.last_interrupt_to_silence {
            handled_to_silence.push(d.as_micros() as u32);
        }
    }
    let end = player.send(GetPlaybackStats).await?;
    let periods = end.periods - p_start;
    let period_ms = t_start.elapsed().as_secs_f64() * 1000.0 / periods.max(1) as f64;
    let n = to_silence.len();
    let (p50, p99, max) = common::percentiles(&mut to_silence);
    let (h50, h99, hmax) = common::percentiles(&mut handled_to_silence);
    out(format!(
        "RESULT barge-in speech_started->silent (SoundDevicePlayer, cpal/ALSA->PulseAudio null sink): trials={n}/{trials} p50_ms={} p99_ms={} max_ms={} mean_device_period_ms={period_ms:.1} goal<25ms={}",
        common::ms(p50),
        common::ms(p99),
        common::ms(max),
        if n > 0 && p99 < 25_000 { "met" } else { "MISSED" }
    ));
    out(format!(
        "RESULT barge-in Interrupted handled->silent (same trials): p50_ms={} p99_ms={} max_ms={}",
        common::ms(h50),
        common::ms(h99),
        common::ms(hmax)
    ));
    let mut events = (0u64, 0u64);
    while let Ok(Some(ev)) = tokio::time::timeout(
        Duration::from_millis(1),
        futures_util::StreamExt::next(&mut underrun_events),
    )
    .await
    {
        match ev.kind {
            liveagent::UnderrunKind::Device => events.0 += 1,
            liveagent::UnderrunKind::Starved => events.1 += 1,
        }
    }
    out(format!(
        "RESULT barge-in underruns (same run, device buffer {buffer:?}): device_underruns_during_speech={} late_callbacks={} device_xruns={} starved={} PlaybackUnderrun_events_device={} PlaybackUnderrun_events_starved={} buffer_frames_start={} buffer_frames_end={} resizes={} played_ms={}",
        end.device_underruns,
        end.late_callbacks,
        end.device_xruns,
        end.underruns,
        events.0,
        events.1,
        start_frames.map_or("host".into(), |f| f.to_string()),
        end.device_buffer_frames,
        end.device_buffer_resizes,
        end.played_ms,
    ));
    let _ = mic.send(StopAudio).await;
    let _ = player.send(StopAudio).await;
    conv.stop().await;
    let _ = std::fs::remove_file(&speech_path);
    let _ = std::fs::remove_file(&scenario);
    drop(server);
    Ok(())
}
