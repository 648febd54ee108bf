//! Latency the library adds, per audio chunk:
//! - `out`: provider audio frame read from the socket until its samples are in the output
//!   buffer the player's device callback (or the WAV sink's renderer) consumes
//!   (`PlaybackStats::socket_to_output`);
//! - `in`: microphone callback until the `input_audio_buffer.append` frame is handed to the
//!   socket writer (`SessionStatus::mic_to_socket`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use liveagent::audio::{GetPlaybackStats, SoundDevicePlayer, SoundDeviceRecorder, WavSink};
use liveagent::probe::{MicProbe, MicStage, StageTimes, MIC_STAGE_NAMES};
use liveagent::{Conversation, SessionOptions, SessionState};

use crate::common::{self, out, ServerProcess};

/// Where synthesized audio goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Sink {
    /// `WavSink` (the player's jitter buffer rendered on a virtual clock into a file).
    Wav,
    /// `SoundDevicePlayer` on the default cpal output (ALSA; PulseAudio null sink in bench.sh).
    Device,
}

/// Waits until every conversation's session is ready.
pub async fn wait_ready(convs: &[Conversation], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for c in convs {
        loop {
            match c.status().await.map(|s| s.state) {
                Some(SessionState::Ready) => break,
                Some(SessionState::Closed) | None => bail!("a session closed before it was ready"),
                _ if Instant::now() > deadline => bail!("sessions not ready after {timeout:?}"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok(())
}

/// Figures of one latency run.
pub struct LatencyFigures {
    pub label: String,
    pub us: Vec<u32>,
    pub chunks: u64,
}

impl LatencyFigures {
    pub fn print(&mut self) {
        let n = self.us.len();
        let (p50, p99, max) = common::percentiles(&mut self.us);
        out(format!(
            "RESULT {}: chunks={} measured={} p50_ms={} p99_ms={} max_ms={} goal_p99<1ms={}",
            self.label,
            self.chunks,
            n,
            common::ms(p50),
            common::ms(p99),
            common::ms(max),
            if p99 < 1000 && n > 0 { "met" } else { "MISSED" }
        ));
    }
}

/// Socket read -> output buffer, with `sessions` conversations each receiving real-time
/// paced audio (20 ms chunks) for `secs`.
pub async fn run_out(
    server_bin: PathBuf,
    sink: Sink,
    sessions: usize,
    secs: u64,
) -> anyhow::Result<LatencyFigures> {
    let scenario = common::long_say_scenario(sessions * 2, secs * 1000 + 2000)?;
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
    let agent = common::agent(&server.openai_url, SessionOptions::default())?;
    let cap = (secs as usize + 5) * 50;
    let mut convs = Vec::new();
    for _ in 0..sessions {
        convs.push(agent.run()?);
    }
    wait_ready(&convs, Duration::from_secs(20)).await?;
    let dir = std::env::temp_dir().join(format!("liveagent-bench-wav-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut wavs = Vec::new();
    let mut players = Vec::new();
    for (i, c) in convs.iter().enumerate() {
        match sink {
            Sink::Wav => wavs.push(
                WavSink::new(c.context().clone(), dir.join(format!("{i}.wav")))
                    .measure_latency(cap)
                    .start()?,
            ),
            Sink::Device => players.push(
                SoundDevicePlayer::new(c.context().clone())
                    .measure_latency(cap)
                    .start()
                    .context("cannot open the output device (run under scripts/bench.sh, which starts a PulseAudio null sink)")?,
            ),
        }
    }
    for c in &convs {
        c.send_text("Please talk for a long time.");
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let mut figures = LatencyFigures {
        label: format!(
            "latency socket->output buffer ({}, {sessions} sessions x {secs} s, 20 ms chunks paced in real time)",
            match sink {
                Sink::Wav => "WavSink",
                Sink::Device => "SoundDevicePlayer on cpal/ALSA->PulseAudio null sink",
            }
        ),
        us: Vec::new(),
        chunks: 0,
    };
    for w in &wavs {
        let s = w.send(GetPlaybackStats).await?;
        figures.chunks += s.chunks_received;
        figures.us.extend_from_slice(s.socket_to_output.micros());
    }
    for p in &players {
        let s = p.send(GetPlaybackStats).await?;
        figures.chunks += s.chunks_received;
        figures.us.extend_from_slice(s.socket_to_output.micros());
    }
    for c in convs {
        c.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&scenario);
    drop(server);
    Ok(figures)
}

/// Plays `secs` of looped test speech into the PulseAudio `mic` sink.
fn play_into_mic(secs: u64) -> anyhow::Result<Child> {
    let speech = liveagent_testkit::speech_pcm(
        "Hello there. I would like to know the weather in Paris tomorrow.",
        24_000,
    );
    let mut pcm = Vec::new();
    while pcm.len() < (secs as usize + 2) * 24_000 {
        pcm.extend_from_slice(&speech);
        pcm.extend(liveagent_testkit::silence_pcm(1500, 24_000));
    }
    let path = std::env::temp_dir().join(format!("liveagent-bench-mic-{}.raw", std::process::id()));
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&path, bytes)?;
    Command::new("paplay")
        .args([
            "--latency-msec=20",
            "--device=mic",
            "--raw",
            "--rate=24000",
            "--channels=1",
            "--format=s16le",
        ])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("paplay not found (apt-get install pulseaudio-utils)")
}

/// How `latency-in` opens the input device (`None`/`false`: the recorder's defaults).
#[derive(Clone, Copy, Debug, Default)]
pub struct InputSetup {
    /// Frames per device period.
    pub buffer_frames: Option<u32>,
    /// Device rate (then also mono, 16-bit).
    pub rate: Option<u32>,
    /// The device's own default configuration instead of the session's format.
    pub device_default: bool,
}

/// Microphone callback -> append frame handed to the socket, with `sessions` recorders on
/// the default cpal input (the PulseAudio `mic.monitor` in bench.sh) for `secs`.
pub async fn run_in(
    server_bin: PathBuf,
    sessions: usize,
    secs: u64,
    stages: bool,
    arbiters: usize,
    input: InputSetup,
) -> anyhow::Result<LatencyFigures> {
    let workers: Vec<actix::Arbiter> = (0..arbiters).map(|_| actix::Arbiter::new()).collect();
    let server = ServerProcess::start(&server_bin, &["--workers".into(), "1".into()])?;
    let cap = (secs as usize + 5) * 50;
    let agent = common::agent(
        &server.openai_url,
        SessionOptions {
            latency_samples: cap,
            ..SessionOptions::default()
        },
    )?;
    let mut convs = Vec::new();
    for k in 0..sessions {
        convs.push(match workers.get(k % workers.len().max(1)) {
            Some(w) => agent.run_on(&w.handle())?,
            None => agent.run()?,
        });
    }
    wait_ready(&convs, Duration::from_secs(20)).await?;
    if stages {
        MicProbe::enable(cap * sessions);
    }
    let mut speech = play_into_mic(secs).ok();
    let mut recorders = Vec::new();
    let t0 = Instant::now();
    let mut starts: Vec<(Duration, Duration)> = Vec::new();
    for (k, c) in convs.iter().enumerate() {
        let s0 = t0.elapsed();
        // Each recorder on its conversation's arbiter.
        let mut builder = SoundDeviceRecorder::new(c.context().clone()).chunk_ms(20);
        if input.device_default {
            builder = builder.device_default_config();
        }
        if let Some(n) = input.buffer_frames {
            builder = builder.device_buffer_frames(n);
        }
        if let Some(rate) = input.rate {
            builder = builder
                .device_sample_rate(rate)
                .device_channels(1)
                .device_format(cpal::SampleFormat::I16);
        }

        let started = match workers.get(k % workers.len().max(1)) {
            Some(w) => {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                w.spawn_fn(move || {
                    let _ = tx.send(builder.start());
                });
                rx.recv().context("the worker arbiter stopped")?
            }
            None => builder.start(),
        };
        recorders.push(started.context(
            "cannot open the input device (run under scripts/bench.sh, which starts a PulseAudio null sink)",
        )?);
        starts.push((s0, t0.elapsed()));
    }
    let slowest_start = starts
        .iter()
        .map(|(a, b)| *b - *a)
        .max()
        .unwrap_or_default();
    out(format!(
        "recorders started one after another: {} in {:.1} ms (slowest {:.1} ms); their devices start when their actors run",
        starts.len(),
        starts.last().map_or(0.0, |(_, b)| b.as_secs_f64() * 1e3),
        slowest_start.as_secs_f64() * 1e3
    ));
    let mut opened = String::from("?");
    if let Some(r) = recorders.first() {
        if let Ok(d) = r.send(liveagent::audio::GetDevice).await {
            out(format!("input device: {d:?}"));
            opened = format!(
                "input {} Hz x{} {:?}, {} frames/period",
                d.config.sample_rate,
                d.config.channels,
                d.config.sample_format,
                d.buffer_frames
                    .map_or_else(|| "?".to_owned(), |n| n.to_string())
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let mut figures = LatencyFigures {
        label: format!(
            "latency mic callback->socket (SoundDeviceRecorder on cpal/ALSA->PulseAudio mic.monitor, {opened}, {sessions} sessions x {secs} s, 20 ms chunks{})",
            if arbiters > 0 { format!(", {arbiters} worker arbiters") } else { String::new() }
        ),
        us: Vec::new(),
        chunks: 0,
    };
    let mut captured = Vec::new();
    for r in &recorders {
        let s = r.send(liveagent::audio::GetRecorderStats).await?;
        figures.chunks += s.chunks_published;
        captured.push(s.published_ms);
    }
    // Less than `secs` of audio: the sound server delivered the first period late (a fresh
    // PulseAudio record stream often stays silent ~1.8 s, see docs/performance-audio.md §4).
    out(format!(
        "audio published per recorder: {:.2}..{:.2} s of the {secs} s run",
        captured.iter().min().copied().unwrap_or(0) as f64 / 1e3,
        captured.iter().max().copied().unwrap_or(0) as f64 / 1e3
    ));
    let mut worst: Vec<(u32, usize, usize)> = Vec::new();
    for (k, c) in convs.iter().enumerate() {
        if let Some(s) = c.status().await {
            figures.us.extend_from_slice(s.mic_to_socket.micros());
            for (i, &us) in s.mic_to_socket.micros().iter().enumerate() {
                worst.push((us, k, i));
            }
        }
    }
    worst.sort_unstable_by(|a, b| b.cmp(a));
    // Where in the run the slowest chunks were (#0: a session's first chunk): a burst at
    // start-up shows as several chunks of one session with #0, #1, ...
    out(format!(
        "slowest chunks (ms@session#chunk): {}",
        worst
            .iter()
            .take(8)
            .map(|(us, k, i)| format!("{}@s{k}#{i}", common::ms(*us)))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    if stages {
        MicProbe::disable();
        print_stages(&MicProbe::take());
    }
    for r in &recorders {
        let _ = r.send(liveagent::audio::StopAudio).await;
    }
    for c in convs {
        c.stop().await;
    }
    if let Some(p) = speech.as_mut() {
        let _ = p.kill();
        let _ = p.wait();
    }
    drop(server);
    for w in workers {
        w.stop();
    }
    Ok(figures)
}

/// Prints the microphone path stage by stage ([`MicProbe`]): for each hop the time from the
/// previous stage, and where the slowest chunks (the p99 and max of the whole path) spent it.
fn print_stages(done: &[StageTimes]) {
    use MicStage::*;
    let order = [Callback, Woken, Published, Bus, Session, Encoded, Written];
    let complete: Vec<&StageTimes> = done.iter().filter(|t| t.iter().all(|&x| x != 0)).collect();
    out(format!(
        "== mic path stage by stage ({} chunks traced, {} complete)",
        done.len(),
        complete.len()
    ));
    if complete.is_empty() {
        return;
    }
    for w in order.windows(2) {
        let mut us: Vec<u32> = complete
            .iter()
            .filter_map(|t| MicProbe::span(t, w[0], w[1]))
            .map(|d| d.as_micros() as u32)
            .collect();
        let mean = us.iter().map(|&x| x as u64).sum::<u64>() / us.len().max(1) as u64;
        let (p50, p99, max) = common::percentiles(&mut us);
        out(format!(
            "RESULT mic stage {}->{}: mean_ms={} p50_ms={} p99_ms={} max_ms={}",
            MIC_STAGE_NAMES[w[0] as usize],
            MIC_STAGE_NAMES[w[1] as usize],
            common::ms(mean as u32),
            common::ms(p50),
            common::ms(p99),
            common::ms(max)
        ));
    }
    let mut total: Vec<(u64, &StageTimes)> = complete
        .iter()
        .map(|t| (t[Written as usize] - t[Callback as usize], *t))
        .collect();
    total.sort_by_key(|(d, _)| *d);
    let mut us: Vec<u32> = total.iter().map(|(d, _)| (*d / 1000) as u32).collect();
    let (p50, p99, max) = common::percentiles(&mut us);
    out(format!(
        "RESULT mic stage callback->written (traced): p50_ms={} p99_ms={} max_ms={}",
        common::ms(p50),
        common::ms(p99),
        common::ms(max)
    ));
    let first = complete
        .iter()
        .map(|t| t[Callback as usize])
        .min()
        .unwrap_or(0);
    for (d, t) in total.iter().rev().take(5) {
        out(format!(
            "slowest traced chunk {} ms: callback {:.1} ms after the first traced one, per hop (ms) {}",
            common::ms((*d / 1000) as u32),
            (t[Callback as usize] - first) as f64 / 1e6,
            order
                .windows(2)
                .map(|w| format!(
                    "{:.3}",
                    MicProbe::span(t, w[0], w[1]).map_or(0.0, |d| d.as_secs_f64() * 1e3)
                ))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    // Where the slowest 1 % spent their time, on average per hop.
    let tail = &total[total.len() - total.len().div_ceil(100)..];
    let parts: Vec<String> = order
        .windows(2)
        .map(|w| {
            let sum: u64 = tail
                .iter()
                .filter_map(|(_, t)| MicProbe::span(t, w[0], w[1]))
                .map(|d| d.as_micros() as u64)
                .sum();
            format!(
                "{}->{}={}",
                MIC_STAGE_NAMES[w[0] as usize],
                MIC_STAGE_NAMES[w[1] as usize],
                common::ms((sum / tail.len() as u64) as u32)
            )
        })
        .collect();
    out(format!(
        "RESULT mic stage slowest 1% ({} chunks), mean per hop: {}",
        tail.len(),
        parts.join(" ")
    ));
}
