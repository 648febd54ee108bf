//! Audio figures for docs/performance-audio.md (prints, asserts nothing):
//!
//! 1. resampling/format-conversion cost per second of audio, in 10 ms device-sized blocks;
//! 2. barge-in latency: from publishing `Interrupted` to the player's output going silent,
//!    on a private PulseAudio null sink through cpal's ALSA host (needs `pulseaudio`,
//!    `pulseaudio-utils`, `libasound2-plugins`; skipped with a note when missing).
//!
//! `cargo bench -p liveagent-audio --bench audio` (add `-- --trials 50` for more barge-ins).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use liveagent_audio::convert::{downmix_to_mono, f32_to_pcm16, upmix_from_mono, MonoResampler};
use liveagent_audio::{GetPlaybackStats, SoundDevicePlayer, StopAudio};
use liveagent_core::{
    AudioChunk, ConversationContext, EventBus, Interrupted, PlaybackStopped, SynthesizedAudio,
};

fn sine(rate: u32, secs: u32, channels: usize) -> Vec<f32> {
    let n = (rate * secs) as usize;
    let mut v = Vec::with_capacity(n * channels);
    for i in 0..n {
        let x = (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 0.5;
        for _ in 0..channels {
            v.push(x);
        }
    }
    v
}

fn bench_resampling() {
    const SECS: u32 = 20;
    println!("## Resampling + format conversion ({SECS} s of audio, 10 ms blocks, release build)");
    println!("| path | cost per audio second | real-time factor |");
    println!("|---|---|---|");

    // 48 kHz stereo f32 (a typical microphone) -> 24 kHz mono PCM16 (OpenAI input)
    for (label, in_rate, out_rate) in [
        (
            "48 kHz stereo f32 -> 24 kHz mono i16 (recorder, OpenAI)",
            48_000u32,
            24_000u32,
        ),
        (
            "44.1 kHz stereo f32 -> 16 kHz mono i16 (recorder, Gemini)",
            44_100,
            16_000,
        ),
    ] {
        let input = sine(in_rate, SECS, 2);
        let block = (in_rate / 100) as usize * 2;
        let mut rs = MonoResampler::new(in_rate, out_rate).unwrap();
        let mut mono = vec![0f32; block / 2];
        let mut out = Vec::with_capacity(out_rate as usize);
        let mut pcm = Vec::with_capacity(out_rate as usize);
        let t = Instant::now();
        for part in input.chunks(block) {
            let n = downmix_to_mono(part, 2, &mut mono);
            out.clear();
            rs.process(&mono[..n], &mut out);
            pcm.clear();
            pcm.extend(out.iter().map(|x| f32_to_pcm16(*x)));
            std::hint::black_box(&pcm);
        }
        report(label, t.elapsed(), SECS);
    }

    // 24 kHz mono PCM16 (model speech) -> 48 kHz stereo f32 (a typical speaker)
    {
        let input: Vec<i16> = sine(24_000, SECS, 1)
            .iter()
            .map(|x| f32_to_pcm16(*x))
            .collect();
        let mut rs = MonoResampler::new(24_000, 48_000).unwrap();
        let mut out = Vec::with_capacity(48_000);
        let mut dev = vec![0f32; 48_000 * 2];
        let t = Instant::now();
        for part in input.chunks(240) {
            out.clear();
            rs.process_i16(part, &mut out);
            upmix_from_mono(&out, 2, &mut dev[..out.len() * 2]);
            std::hint::black_box(&dev);
        }
        report(
            "24 kHz mono i16 -> 48 kHz stereo f32 (player)",
            t.elapsed(),
            SECS,
        );
    }
}

fn report(label: &str, took: Duration, secs: u32) {
    let per_sec = took / secs;
    println!(
        "| {label} | {:.1} µs | {:.0}x |",
        per_sec.as_secs_f64() * 1e6,
        secs as f64 / took.as_secs_f64()
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn bench_barge_in(trials: usize) {
    println!();
    println!("## Barge-in: Interrupted -> silence at the speaker ({trials} trials, PulseAudio null sink)");
    let ok = std::process::Command::new("pulseaudio")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        println!("skipped: pulseaudio is not installed");
        return;
    }
    let pulse = support::PulseServer::start(24_000);
    // Single-threaded here, before any ALSA use: point this process at the private server.
    for (k, v) in pulse.envs() {
        std::env::set_var(k, v);
    }
    std::env::remove_var("ALSA_CONFIG_PATH");

    let mut to_silence = Vec::new();
    let mut to_event = Vec::new();
    let mut device = String::new();
    actix::System::new().block_on(async {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut stopped = ctx.stream().only::<PlaybackStopped>();
        let player = SoundDevicePlayer::new(ctx.clone())
            .start()
            .expect("player on PulseAudio");
        let dev = player.send(liveagent_audio::GetDevice).await.unwrap();
        device = format!(
            "{} ({} Hz, {} ch, {:?})",
            dev.name, dev.config.sample_rate, dev.config.channels, dev.config.sample_format
        );
        let tone = support_tone();
        // Warm-up: a fresh PulseAudio stream stalls for a while after it starts; let the
        // first item play out before timing anything.
        ctx.publish(SynthesizedAudio {
            response_id: None,
            item_id: "warm_up".into(),
            audio: AudioChunk::new(tone[..4800].to_vec(), 24_000),
        });
        let _ = tokio::time::timeout(Duration::from_secs(10), stopped.next()).await;
        for trial in 0..trials {
            let item: std::sync::Arc<str> = format!("item_{trial}").into();
            for c in tone.chunks(2400) {
                ctx.publish(SynthesizedAudio {
                    response_id: None,
                    item_id: item.clone(),
                    audio: AudioChunk::new(c.to_vec(), 24_000),
                });
            }
            // vary the phase of the cut relative to the device period
            tokio::time::sleep(Duration::from_millis(400 + (trial as u64 * 7) % 50)).await;
            let t0 = Instant::now();
            ctx.publish(Interrupted {
                response_id: None,
                item_id: Some(item.clone()),
            });
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(5), stopped.next())
                    .await
                    .expect("no PlaybackStopped")
                    .unwrap();
                if ev.item_id == item {
                    break;
                }
            }
            let took = t0.elapsed().as_secs_f64() * 1e3;
            if took > 100.0 {
                println!("trial {trial}: PlaybackStopped after {took:.1} ms (slow)");
            }
            to_event.push(took);
            let stats = player.send(GetPlaybackStats).await.unwrap();
            // only this trial's cut (a cut acknowledged late leaves the previous value)
            if let Some(at) = stats.last_silence_at.filter(|at| *at > t0) {
                to_silence.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stats = player.send(GetPlaybackStats).await.unwrap();
        println!(
            "player stats after the run: starved underruns={} device underruns during speech={} late_callbacks={} device_xruns={} periods={} device buffer {} frames after {} resizes",
            stats.underruns,
            stats.device_underruns,
            stats.late_callbacks,
            stats.device_xruns,
            stats.periods,
            stats.device_buffer_frames,
            stats.device_buffer_resizes
        );
        player.send(StopAudio).await.unwrap();
    });
    println!("device: {device}");
    for (label, mut v) in [
        ("Interrupted published -> first silent frame at the speaker (callback time + device output latency)", to_silence),
        ("Interrupted published -> PlaybackStopped received", to_event),
    ] {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            println!("{label}: no samples");
            continue;
        }
        println!(
            "{label}: p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms (n={})",
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            v[0],
            v[v.len() - 1],
            v.len()
        );
    }
}

fn support_tone() -> Vec<i16> {
    liveagent_testkit::tone_pcm(440.0, 1500, 24_000, 8000)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trials = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    bench_resampling();
    bench_barge_in(trials);
}
