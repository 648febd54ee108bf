//! The real cpal recorder and player, on ALSA's `file` plugin (exact samples) and on a private
//! PulseAudio with null sinks (real-time pacing). Each test re-runs itself in a child process
//! with the environment it needs (see `support`).

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use liveagent_audio::{
    DeviceBuffer, GetPlaybackStats, SampleFormat, SoundDevicePlayer, SoundDeviceRecorder, StopAudio,
};
use liveagent_core::{
    AudioChunk, ConversationContext, ErrorEvent, ErrorKind, EventBus, Interrupted, PlaybackStopped,
    RecordedAudio, SynthesizedAudio,
};
use liveagent_testkit::{silence_pcm, speech_pcm, tone_pcm};
use support::*;

const TEXT: &str = "What is the weather like today?";

fn env_path(key: &str) -> std::path::PathBuf {
    std::env::var(key)
        .unwrap_or_else(|_| panic!("{key} not set"))
        .into()
}

/// Starts a recorder on PulseAudio's default input, in the session's format or (when
/// `device_default`) the device's default configuration, and returns it with what it opened.
async fn start_pulse_recorder(
    ctx: &ConversationContext,
    device_default: bool,
) -> (
    actix::Addr<SoundDeviceRecorder>,
    liveagent_audio::OpenedDevice,
) {
    let mut mic = SoundDeviceRecorder::new(ctx.clone());
    if device_default {
        mic = mic.device_default_config();
    }
    let mic = mic.start().expect("recorder on PulseAudio");
    let dev = mic.send(liveagent_audio::GetDevice).await.unwrap();
    println!("recording from {dev:?}");
    (mic, dev)
}

async fn collect_recorded(
    ctx: &ConversationContext,
    samples: usize,
    rate: u32,
    own_arbiter: bool,
) -> Vec<i16> {
    // Listing works and names the default device; select it by that name.
    let inputs = liveagent_audio::list_input_devices().expect("list input devices");
    println!("input devices: {inputs:?}");
    let default = inputs
        .iter()
        .find(|d| d.is_default)
        .expect("a default input device");
    let mut stream = ctx.stream().capacity(100_000).only::<RecordedAudio>();
    let mic = SoundDeviceRecorder::new(ctx.clone())
        .device(default.name.clone())
        .device_sample_rate(24_000)
        .device_channels(1)
        .device_format(SampleFormat::I16)
        .sample_rate(rate)
        .chunk_ms(20)
        .buffer_ms(30_000)
        .own_arbiter(own_arbiter)
        .start()
        .expect("recorder on the ALSA file device");
    let mut got = Vec::new();
    let chunk = (rate / 50) as usize;
    while got.len() < samples {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("no recorded audio within 10 s")
            .expect("stream ended");
        assert_eq!(ev.audio.sample_rate, rate);
        assert_eq!(ev.audio.len(), chunk, "every chunk is exactly 20 ms");
        got.extend_from_slice(&ev.audio.samples);
    }
    mic.do_send(StopAudio);
    got.truncate(samples);
    got
}

/// The recorder captures espeak speech from the ALSA file plugin bit for bit when no
/// resampling is needed, in 20 ms chunks.
#[test]
fn recorder_alsa_file_exact_samples() {
    if !is_child() {
        let dir = temp_dir("rec-exact");
        let mut speech = speech_pcm(TEXT, 24_000);
        let n = speech.len();
        speech.extend(silence_pcm(3000, 24_000));
        let input = dir.join("in.raw");
        write_raw(&input, &speech);
        let conf = alsa_file_conf(&dir, &input, &dir.join("out.raw"), 24_000);
        run_child(
            "recorder_alsa_file_exact_samples",
            &[
                ("ALSA_CONFIG_PATH", conf.display().to_string()),
                ("TEST_IN", input.display().to_string()),
                ("TEST_LEN", n.to_string()),
            ],
            &[],
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let source = read_raw(&env_path("TEST_IN"));
    let n: usize = std::env::var("TEST_LEN").unwrap().parse().unwrap();
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        // On an arbiter of its own: the callback's doorbell wakes it there.
        let got = collect_recorded(&ctx, n, 24_000, true).await;
        let first_diff = got.iter().zip(&source).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "captured audio differs from the source");
    });
}

/// 24 kHz capture published at 16 kHz (Gemini): compared with sox's own 16 kHz rendering of
/// the same speech.
#[test]
fn recorder_alsa_file_resamples_to_16k() {
    if !is_child() {
        let dir = temp_dir("rec-16k");
        let mut speech = speech_pcm(TEXT, 24_000);
        speech.extend(silence_pcm(3000, 24_000));
        let input = dir.join("in.raw");
        write_raw(&input, &speech);
        let reference = speech_pcm(TEXT, 16_000);
        let refpath = dir.join("ref16.raw");
        write_raw(&refpath, &reference);
        let conf = alsa_file_conf(&dir, &input, &dir.join("out.raw"), 24_000);
        let stdout = run_child(
            "recorder_alsa_file_resamples_to_16k",
            &[
                ("ALSA_CONFIG_PATH", conf.display().to_string()),
                ("TEST_REF", refpath.display().to_string()),
            ],
            &[],
        );
        println!(
            "24 kHz capture published at 16 kHz vs sox: SNR {} dB",
            result(&stdout, "snr_db")
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let reference = read_raw(&env_path("TEST_REF"));
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 16_000, 24_000);
        let got = collect_recorded(&ctx, reference.len(), 16_000, false).await;
        let (snr, lag) = snr_db(&reference, &got, 8);
        println!("RESULT snr_db={snr:.1} lag={lag}");
        assert!(
            snr > 25.0,
            "resampled capture differs from sox's 16 kHz speech: SNR {snr:.1} dB at lag {lag}"
        );
        assert!(
            lag.abs() <= 2,
            "resampled capture is shifted by {lag} samples"
        );
    });
}

/// The player writes received audio to the ALSA file output sample for sample, and reports
/// the first item as played out (with its exact length) when the second one starts.
#[test]
fn player_alsa_file_writes_exact_samples() {
    let dir_key = "TEST_DIR";
    if !is_child() {
        let dir = temp_dir("play-exact");
        let out = dir.join("out.raw");
        let input = dir.join("in.raw");
        write_raw(&input, &silence_pcm(100, 24_000));
        let speech = speech_pcm(TEXT, 24_000);
        write_raw(&dir.join("speech.raw"), &speech);
        let conf = alsa_file_conf(&dir, &input, &out, 24_000);
        let stdout = run_child(
            "player_alsa_file_writes_exact_samples",
            &[
                ("ALSA_CONFIG_PATH", conf.display().to_string()),
                (dir_key, dir.display().to_string()),
            ],
            &[],
        );
        let played_ms: u64 = result(&stdout, "played_ms").parse().unwrap();
        assert_eq!(played_ms, speech.len() as u64 * 1000 / 24_000);
        let written = read_raw(&out);
        let start = written
            .iter()
            .position(|s| *s != 0)
            .expect("nothing was played");
        let lead = speech.iter().position(|s| *s != 0).unwrap();
        let start = start - lead;
        assert!(written.len() >= start + speech.len(), "output too short");
        assert_eq!(
            &written[start..start + speech.len()],
            &speech[..],
            "played samples differ from the synthesized audio"
        );
        // then the second item, a tone
        let tone = tone_pcm(440.0, 200, 24_000, 8000);
        let after = &written[start + speech.len()..];
        let tone_start = after.iter().position(|s| *s != 0).unwrap();
        assert_eq!(
            &after[tone_start - 1..tone_start - 1 + tone.len()],
            &tone[..]
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let dir = env_path(dir_key);
    let speech = read_raw(&dir.join("speech.raw"));
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut stopped = ctx.stream().only::<PlaybackStopped>();
        let player = SoundDevicePlayer::new(ctx.clone())
            .device_sample_rate(24_000)
            .device_channels(1)
            .device_format(SampleFormat::I16)
            .item_end_ms(50)
            // The unpaced null device consumes as fast as the CPU runs: with the adaptive
            // buffer's small periods it outruns the player's 5 ms refills (starved
            // underruns), which is not what this test is about.
            .device_buffer(DeviceBuffer::HostDefault)
            .start()
            .expect("player on the ALSA file device");
        // Whole items in one chunk each: the unpaced null device would otherwise run dry
        // between chunks (which the player would rightly count as underruns).
        ctx.publish(SynthesizedAudio {
            response_id: Some("resp_1".into()),
            item_id: "item_1".into(),
            audio: AudioChunk::new(speech.clone(), 24_000),
        });
        ctx.publish(SynthesizedAudio {
            response_id: Some("resp_1".into()),
            item_id: "item_2".into(),
            audio: AudioChunk::new(tone_pcm(440.0, 200, 24_000, 8000), 24_000),
        });
        let first = tokio::time::timeout(Duration::from_secs(10), stopped.next()).await;
        let stats = player.send(GetPlaybackStats).await.unwrap();
        println!("{stats:?}");
        let first = first.expect("no PlaybackStopped").unwrap();
        assert_eq!(&*first.item_id, "item_1");
        assert!(!first.interrupted);
        println!("RESULT played_ms={}", first.played_ms);
        let second = tokio::time::timeout(Duration::from_secs(10), stopped.next())
            .await
            .expect("no PlaybackStopped for item_2")
            .unwrap();
        assert_eq!(
            (&*second.item_id, second.played_ms, second.interrupted),
            ("item_2", 200, false)
        );
        let stats = player.send(GetPlaybackStats).await.unwrap();
        assert_eq!(stats.underruns, 0);
        player.send(StopAudio).await.unwrap();
    });
}

/// With no ALSA configuration at all there is no usable device: `start()` returns a typed
/// `Audio` error (no panic), and so does asking for a device that does not exist.
#[test]
fn no_device_is_a_typed_error() {
    if !is_child() {
        let dir = temp_dir("nodev");
        let conf = dir.join("empty.conf");
        std::fs::write(&conf, "# no devices\n").unwrap();
        run_child(
            "no_device_is_a_typed_error",
            &[("ALSA_CONFIG_PATH", conf.display().to_string())],
            &[],
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let err = SoundDeviceRecorder::new(ctx.clone())
            .start()
            .err()
            .ok_or(())
            .expect("no input device");
        println!("recorder: {err}");
        assert_eq!(err.kind, ErrorKind::Audio);
        let err = SoundDevicePlayer::new(ctx.clone())
            .start()
            .err()
            .ok_or(())
            .expect("no output device");
        println!("player: {err}");
        assert_eq!(err.kind, ErrorKind::Audio);
        let err = SoundDevicePlayer::new(ctx.clone())
            .device("no such speaker")
            .start()
            .err()
            .ok_or(())
            .expect("no such device");
        assert_eq!(err.kind, ErrorKind::Audio);
        assert!(err.message.contains("no such speaker"), "{err}");
    });
}

/// Barge-in on a real-time device (PulseAudio null sink): play a long tone, interrupt it,
/// record the speaker's monitor with parecord; the output goes silent and stays silent, and
/// `PlaybackStopped.played_ms` matches the length of the tone that was recorded.
#[test]
fn player_pulse_interruption() {
    if !is_child() {
        let pulse = PulseServer::start(24_000);
        let dir = temp_dir("pulse-int");
        let rec_path = dir.join("spk.raw");
        let mut rec = pulse.record_speaker(&rec_path, 24_000);
        std::thread::sleep(Duration::from_millis(300));
        let stdout = run_child(
            "player_pulse_interruption",
            &pulse.envs(),
            &["ALSA_CONFIG_PATH"],
        );
        // let parecord catch up with the silence after the child's end
        std::thread::sleep(Duration::from_millis(1000));
        stop_child(&mut rec);
        let played_ms: i64 = result(&stdout, "played_ms").parse().unwrap();
        let recorded = read_raw(&rec_path);
        let loud = loud_windows(&recorded, 24_000, 1000.0);
        let first = loud
            .iter()
            .position(|l| *l)
            .expect("the tone never reached the speaker");
        let last = loud.iter().rposition(|l| *l).unwrap();
        // Count loud windows rather than the span: on a loaded machine the sound server may
        // insert short gaps of its own.
        let heard_ms = (loud.iter().filter(|l| **l).count() * 10) as i64;
        println!(
            "played_ms={played_ms} heard_ms={heard_ms} span_ms={} recorded_ms={}",
            (last - first + 1) * 10,
            recorded.len() / 24
        );
        // nothing after the cut: every window after the last loud one is quiet
        assert!(
            loud.len() - last > 20,
            "the recording does not show silence after the cut"
        );
        assert!(heard_ms < 5000, "the tone was not cut");
        assert!(
            (played_ms - heard_ms).abs() <= 100,
            "PlaybackStopped.played_ms={played_ms} but {heard_ms} ms were recorded"
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut errors = ctx.stream().only::<ErrorEvent>();
        let mut stopped = ctx.stream().only::<PlaybackStopped>();
        let player = SoundDevicePlayer::new(ctx.clone())
            .start()
            .expect("player on PulseAudio");
        let tone = tone_pcm(440.0, 5000, 24_000, 8000);
        for chunk in tone.chunks(2400) {
            ctx.publish(SynthesizedAudio {
                response_id: Some("resp_1".into()),
                item_id: "long".into(),
                audio: AudioChunk::new(chunk.to_vec(), 24_000),
            });
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let t0 = Instant::now();
        ctx.publish(Interrupted {
            response_id: Some("resp_1".into()),
            item_id: Some("long".into()),
        });
        // a late chunk of the interrupted item must not play
        ctx.publish(SynthesizedAudio {
            response_id: Some("resp_1".into()),
            item_id: "long".into(),
            audio: AudioChunk::new(tone_pcm(440.0, 500, 24_000, 8000), 24_000),
        });
        let ev = tokio::time::timeout(Duration::from_secs(5), stopped.next()).await;
        while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), errors.next()).await
        {
            println!("error event: {e:?}");
        }
        let ev = ev.expect("no PlaybackStopped after Interrupted").unwrap();
        println!("PlaybackStopped after {:?}: {ev:?}", t0.elapsed());
        assert_eq!(&*ev.item_id, "long");
        assert!(ev.interrupted);
        println!("RESULT played_ms={}", ev.played_ms);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let stats = player.send(GetPlaybackStats).await.unwrap();
        println!("{stats:?}");
        assert_eq!(stats.chunks_dropped_late, 1);
        player.send(StopAudio).await.unwrap();
    });
}

/// The speaker disappears mid-session (the sound server dies): the player publishes a fatal
/// `ErrorEvent` of kind `Audio` instead of hanging or panicking.
#[test]
fn device_loss_becomes_error_event() {
    device_loss("device_loss_becomes_error_event", false);
}

/// The same with the recorder in the device's default configuration (48 kHz stereo f32 on
/// the pulse device), where cpal reports the loss itself.
#[test]
fn device_loss_at_device_default_config_becomes_error_event() {
    device_loss(
        "device_loss_at_device_default_config_becomes_error_event",
        true,
    );
}

/// Kills PulseAudio under a playing player and a recording recorder; both must report a
/// fatal Audio error and stop. With the recorder in the session's format (the default) the
/// dying server deadlocks libpulse under cpal's capture thread, so no error comes from the
/// host: the recorder's stall watchdog reports it and leaves the stuck thread behind.
fn device_loss(test: &str, device_default: bool) {
    if !is_child() {
        let mut pulse = PulseServer::start(24_000);
        let dir = temp_dir("pulse-loss");
        let flag = dir.join("kill-now");
        let mut envs = pulse.envs();
        envs.push(("TEST_FLAG", flag.display().to_string()));
        let exe = std::env::current_exe().unwrap();
        let child = std::process::Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env_remove("ALSA_CONFIG_PATH")
            .envs(envs)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !flag.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        pulse.kill();
        // A hang is a failure, not a stuck suite: give the child 60 s.
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let out = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                let out = rx.recv().unwrap().unwrap();
                panic!(
                    "the child hung after the sound server died:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{stdout}");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let flag = env_path("TEST_FLAG");
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut errors = ctx.stream().only::<ErrorEvent>();
        let mut stopped = ctx.stream().only::<PlaybackStopped>();
        let player = SoundDevicePlayer::new(ctx.clone())
            .start()
            .expect("player on PulseAudio");
        let (mic, dev) = start_pulse_recorder(&ctx, device_default).await;
        assert_eq!(
            dev.config.sample_format == SampleFormat::I16 && dev.config.channels == 1,
            !device_default,
            "{dev:?}"
        );
        ctx.publish(SynthesizedAudio {
            response_id: None,
            item_id: "item".into(),
            audio: AudioChunk::new(tone_pcm(440.0, 10_000, 24_000, 8000), 24_000),
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::write(&flag, b"1").unwrap();
        // Both peers report a fatal Audio error (directly, or through their stall watchdog).
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut fatal_sources = Vec::new();
        while fatal_sources.len() < 2 {
            let ev = tokio::time::timeout_at(deadline.into(), errors.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("no fatal ErrorEvent from every peer: {fatal_sources:?}")
                })
                .unwrap();
            println!("{ev:?}");
            assert_eq!(ev.error.kind, ErrorKind::Audio);
            if ev.fatal && !fatal_sources.contains(&ev.source.to_string()) {
                fatal_sources.push(ev.source.to_string());
            }
        }
        fatal_sources.sort();
        assert_eq!(fatal_sources, ["player", "recorder"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !player.connected(),
            "the player should stop after its device failed"
        );
        assert!(
            !mic.connected(),
            "the recorder should stop after its device failed"
        );
        // The item that was playing is reported as cut short.
        let ev = tokio::time::timeout(Duration::from_secs(2), stopped.next())
            .await
            .expect("no PlaybackStopped for the item cut by the device loss")
            .unwrap();
        assert_eq!(&*ev.item_id, "item");
        assert!(ev.interrupted);
        assert!(ev.played_ms < 10_000);
    });
}

/// The recorder on a real-time device: espeak speech is played into PulseAudio's `mic` sink
/// with paplay, and the recorder (by default in the session's format: 24 kHz mono s16 with
/// 10 ms periods) publishes it in 20 ms chunks that match the source.
#[test]
fn recorder_pulse_captures_played_speech() {
    recorder_pulse("recorder_pulse_captures_played_speech", false);
}

/// The same in the pulse device's default configuration (typically 48 kHz stereo f32,
/// converted to 24 kHz mono here).
#[test]
fn recorder_pulse_device_default_config_captures_played_speech() {
    recorder_pulse(
        "recorder_pulse_device_default_config_captures_played_speech",
        true,
    );
}

fn recorder_pulse(test: &str, device_default: bool) {
    if !is_child() {
        let pulse = PulseServer::start(24_000);
        let dir = temp_dir("pulse-rec");
        let speech = speech_pcm(TEXT, 24_000);
        let path = dir.join("speech.raw");
        write_raw(&path, &speech);
        let mut envs = pulse.envs();
        envs.push(("TEST_SPEECH", path.display().to_string()));
        let stdout = run_child(test, &envs, &["ALSA_CONFIG_PATH"]);
        println!("{}", result(&stdout, "snr_db"));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let path = env_path("TEST_SPEECH");
    let speech = read_raw(&path);
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut stream = ctx.stream().capacity(10_000).only::<RecordedAudio>();
        let (mic, dev) = start_pulse_recorder(&ctx, device_default).await;
        if device_default {
            assert_ne!(dev.config.sample_format, SampleFormat::I16, "{dev:?}");
        } else {
            // The session's format, with a period near 10 ms.
            assert_eq!(
                (dev.config.sample_rate, dev.config.channels, dev.config.sample_format),
                (24_000, 1, SampleFormat::I16),
                "{dev:?}"
            );
        }
        // A fresh pulse capture stream stalls for a while: wait until audio flows (300 ms
        // of chunks), then play the speech into the microphone.
        let mut flowing = 0;
        while flowing < 15 {
            tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("no recorded audio within 10 s")
                .unwrap();
            flowing += 1;
        }
        let mut paplay = std::process::Command::new("paplay")
            // A generous buffer: an underrun of paplay on a loaded machine would put gaps
            // into the microphone that the comparison below cannot tell from lost audio.
            .args([
                "--latency-msec=200",
                "--device=mic",
                "--raw",
                "--rate=24000",
                "--channels=1",
                "--format=s16le",
            ])
            .arg(&path)
            .spawn()
            .expect("paplay not found (apt-get install pulseaudio-utils)");
        let t0 = Instant::now();
        let want = speech.len() + 24_000 * 2;
        let mut got: Vec<i16> = Vec::new();
        while got.len() < want {
            let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("no recorded audio within 10 s")
                .unwrap();
            assert_eq!(ev.audio.sample_rate, 24_000);
            assert_eq!(ev.audio.len(), 480, "every chunk is exactly 20 ms");
            got.extend_from_slice(&ev.audio.samples);
        }
        println!(
            "captured {} ms in {:?} of wall time",
            got.len() / 24,
            t0.elapsed()
        );
        let _ = paplay.wait();
        let stats = mic
            .send(liveagent_audio::GetRecorderStats)
            .await
            .unwrap();
        println!("recorder stats: {stats:?}");
        mic.send(StopAudio).await.unwrap();
        // Align on the speech onset, then compare 200 ms windows, each aligned within
        // ±20 ms of the previous one: a sound server on a loaded machine may drop a period
        // now and then, which must not hide whether the recorder itself is right.
        let onset = |v: &[i16]| v.iter().position(|s| s.unsigned_abs() > 1000).unwrap();
        let mut offset = onset(&got) as i64 - onset(&speech) as i64;
        let (win, m) = (4800usize, 480i64);
        let mut snrs = Vec::new();
        for start in (0..speech.len().saturating_sub(win)).step_by(win) {
            let r = &speech[start..start + win];
            let energy = r.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / win as f64;
            let base = start as i64 + offset - m;
            if energy.sqrt() < 500.0 || base < 0 || base as usize + win + 2 * m as usize > got.len() {
                continue;
            }
            let g = &got[base as usize..base as usize + win + 2 * m as usize];
            let (best, lag) = (0..=2 * m as usize)
                .map(|lag| {
                    let err: f64 = r
                        .iter()
                        .zip(&g[lag..lag + win])
                        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                        .sum();
                    (10.0 * (energy * win as f64 / err.max(1e-9)).log10(), lag)
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap();
            offset += lag as i64 - m;
            snrs.push(best);
        }
        let mut sorted = snrs.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let good = snrs.iter().filter(|s| **s > 10.0).count();
        println!(
            "RESULT snr_db=median {median:.1} dB over {} speech windows, {good} above 10 dB: {snrs:.1?}",
            snrs.len()
        );
        assert!(snrs.len() >= 5, "too little speech was captured");
        // At the device default the sound server resamples twice on the way (24 kHz sink ->
        // 48 kHz client) and leaves a fractional-sample delay, so expect ~15-40 dB there; a
        // wrong rate, channel mix-up or lost audio gives < 3 dB.
        assert!(median > 12.0, "captured speech differs from what was played: {snrs:.1?}");
        assert!(good * 4 >= snrs.len() * 3, "too many windows differ: {snrs:.1?}");
    });
}
