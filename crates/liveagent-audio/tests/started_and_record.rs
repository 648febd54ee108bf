//! `AudioPlaybackStarted` from both players (the WAV sink in process, the real cpal player on
//! ALSA's `file` plugin) and one-shot recording, `record(duration)` (AG2
//! `Recorder.record`), from a WAV file and from the real cpal recorder on the ALSA `file`
//! plugin. No sound card needed (see `support`).

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use liveagent_audio::{
    CloseSink, SampleFormat, SoundDevicePlayer, SoundDeviceRecorder, StopAudio, WavSink, WavSource,
};
use liveagent_core::{
    AudioChunk, ConversationContext, EventBus, LiveEvent, RecordedAudio, SynthesizedAudio,
};
use liveagent_testkit::{silence_pcm, speech_pcm, tone_pcm};
use support::*;

const TEXT: &str = "What is the weather like today?";

fn audio(response: &str, item: &str, samples: Vec<i16>) -> SynthesizedAudio {
    SynthesizedAudio {
        response_id: Some(response.into()),
        item_id: item.into(),
        audio: AudioChunk::new(samples, 24_000),
    }
}

/// The playback events (started / stopped), as `(kind, item)` in order, until `n` stops.
async fn playback_events(
    events: &mut liveagent_core::EventStream<LiveEvent>,
    stops: usize,
) -> Vec<(&'static str, String, Option<String>)> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < stops {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("playback events")
            .unwrap();
        match ev {
            LiveEvent::AudioPlaybackStarted(s) => out.push((
                "started",
                s.item_id.to_string(),
                s.response_id.map(|r| r.to_string()),
            )),
            LiveEvent::PlaybackStopped(s) => {
                seen += 1;
                out.push(("stopped", s.item_id.to_string(), None));
            }
            _ => {}
        }
    }
    out
}

/// The WAV sink publishes `AudioPlaybackStarted` once per assistant item, when its first
/// sample is written, before the item's `PlaybackStopped`; more audio of the same item after
/// it ran dry does not announce it again.
#[actix_rt::test]
async fn wav_sink_announces_each_item_once_when_it_starts_playing() {
    let dir = temp_dir("started-wav");
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let mut events = ctx.stream().filter(
        liveagent_core::EventFilter::of::<liveagent_core::AudioPlaybackStarted>()
            | liveagent_core::EventFilter::of::<liveagent_core::PlaybackStopped>(),
    );
    let sink = WavSink::new(ctx.clone(), dir.join("out.wav"))
        .realtime(false)
        .item_end_ms(50)
        .start()
        .unwrap();
    // Nothing has played yet: no announcement.
    tokio::time::sleep(Duration::from_millis(100)).await;
    ctx.publish(audio("r1", "a", tone_pcm(440.0, 200, 24_000, 8000)));
    ctx.publish(audio("r1", "b", tone_pcm(660.0, 200, 24_000, 8000)));
    let got = playback_events(&mut events, 2).await;
    assert_eq!(
        got,
        vec![
            ("started", "a".to_owned(), Some("r1".to_owned())),
            ("stopped", "a".to_owned(), None),
            ("started", "b".to_owned(), Some("r1".to_owned())),
            ("stopped", "b".to_owned(), None),
        ]
    );
    // Item `b` continues after it played out: no second announcement.
    ctx.publish(audio("r1", "b", tone_pcm(660.0, 100, 24_000, 8000)));
    ctx.publish(audio("r2", "c", tone_pcm(880.0, 100, 24_000, 8000)));
    let got = playback_events(&mut events, 2).await;
    assert_eq!(
        got,
        vec![
            ("stopped", "b".to_owned(), None),
            ("started", "c".to_owned(), Some("r2".to_owned())),
            ("stopped", "c".to_owned(), None),
        ]
    );
    sink.send(CloseSink).await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `WavSource::record(duration)` returns exactly `duration` of the file (then silence) at
/// the session's input rate, and publishes nothing on the conversation.
#[actix_rt::test]
async fn wav_source_records_a_fixed_length_without_publishing() {
    let dir = temp_dir("record-wav");
    let speech = speech_pcm(TEXT, 16_000);
    let path = dir.join("in.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for s in &speech {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
    let ctx = ConversationContext::new(EventBus::start_default(), 16_000, 24_000);
    let mut published = ctx.stream().only::<RecordedAudio>();

    // Shorter than the file: its start, exactly.
    let clip = WavSource::new(ctx.clone(), &path)
        .realtime(false)
        .record(Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(clip.sample_rate, 16_000);
    assert_eq!(clip.samples.len(), 8_000);
    assert_eq!(&clip.samples[..], &speech[..8_000]);

    // Longer than the file: the whole file, then silence.
    let long = speech.len() as u64 * 1000 / 16_000 + 700;
    let clip = WavSource::new(ctx.clone(), &path)
        .realtime(false)
        .record(Duration::from_millis(long))
        .await
        .unwrap();
    assert_eq!(clip.samples.len() as u64, long * 16);
    assert_eq!(&clip.samples[..speech.len()], &speech[..]);
    assert!(clip.samples[speech.len()..].iter().all(|s| *s == 0));

    // Another rate on request.
    let clip = WavSource::new(ctx.clone(), &path)
        .realtime(false)
        .sample_rate(24_000)
        .record(Duration::from_millis(250))
        .await
        .unwrap();
    assert_eq!((clip.sample_rate, clip.samples.len()), (24_000, 6_000));

    // Nothing reached the conversation.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), published.next())
            .await
            .is_err(),
        "record() published audio on the conversation"
    );

    // A missing file is a typed error.
    let err = WavSource::new(ctx, dir.join("missing.wav"))
        .record(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err.kind, liveagent_core::ErrorKind::Audio);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The real cpal recorder: `record(duration)` on the ALSA file device returns exactly
/// `duration` of the captured samples, bit for bit.
#[test]
fn sound_device_recorder_records_a_fixed_length() {
    if !is_child() {
        let dir = temp_dir("record-dev");
        let mut speech = speech_pcm(TEXT, 24_000);
        speech.extend(silence_pcm(3000, 24_000));
        let input = dir.join("in.raw");
        write_raw(&input, &speech);
        let conf = alsa_file_conf(&dir, &input, &dir.join("out.raw"), 24_000);
        run_child(
            "sound_device_recorder_records_a_fixed_length",
            &[
                ("ALSA_CONFIG_PATH", conf.display().to_string()),
                ("TEST_IN", input.display().to_string()),
            ],
            &[],
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let source = read_raw(std::path::Path::new(&std::env::var("TEST_IN").unwrap()));
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut published = ctx.stream().only::<RecordedAudio>();
        let clip = SoundDeviceRecorder::new(ctx.clone())
            .device_sample_rate(24_000)
            .device_channels(1)
            .device_format(SampleFormat::I16)
            .buffer_ms(30_000)
            .record(Duration::from_millis(1500))
            .await
            .expect("record from the ALSA file device");
        assert_eq!((clip.sample_rate, clip.samples.len()), (24_000, 36_000));
        assert_eq!(&clip.samples[..], &source[..36_000]);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), published.next())
                .await
                .is_err()
        );
    });
}

/// The real cpal player announces each item when its first samples go to the device.
#[test]
fn sound_device_player_announces_playback() {
    if !is_child() {
        let dir = temp_dir("started-dev");
        let input = dir.join("in.raw");
        write_raw(&input, &silence_pcm(100, 24_000));
        let conf = alsa_file_conf(&dir, &input, &dir.join("out.raw"), 24_000);
        run_child(
            "sound_device_player_announces_playback",
            &[("ALSA_CONFIG_PATH", conf.display().to_string())],
            &[],
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    actix::System::new().block_on(async move {
        let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
        let mut events = ctx.stream().filter(
            liveagent_core::EventFilter::of::<liveagent_core::AudioPlaybackStarted>()
                | liveagent_core::EventFilter::of::<liveagent_core::PlaybackStopped>(),
        );
        let player = SoundDevicePlayer::new(ctx.clone())
            .device_sample_rate(24_000)
            .device_channels(1)
            .device_format(SampleFormat::I16)
            .item_end_ms(50)
            .start()
            .expect("player on the ALSA file device");
        ctx.publish(audio("r1", "item_1", tone_pcm(440.0, 200, 24_000, 8000)));
        ctx.publish(audio("r1", "item_2", tone_pcm(660.0, 200, 24_000, 8000)));
        let got = playback_events(&mut events, 2).await;
        assert_eq!(
            got,
            vec![
                ("started", "item_1".to_owned(), Some("r1".to_owned())),
                ("stopped", "item_1".to_owned(), None),
                ("started", "item_2".to_owned(), Some("r1".to_owned())),
                ("stopped", "item_2".to_owned(), None),
            ]
        );
        player.send(StopAudio).await.unwrap();
    });
}
