//! WavSource → (echo) → WavSink round trips, in process: no devices needed.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use liveagent_audio::{read_wav_mono, CloseSink, GetPlaybackStats, WavSink, WavSource};
use liveagent_core::{
    AudioChunk, ConversationContext, EventBus, Interrupted, PlaybackStopped, RecordedAudio,
    SynthesizedAudio,
};
use liveagent_testkit::{speech_pcm, tone_pcm};
use support::{snr_db, temp_dir};

const TEXT: &str = "What is the weather like today?";

/// A 16 kHz stereo speech file goes through WavSource (→ 24 kHz mono RecordedAudio), is
/// echoed back as SynthesizedAudio, and WavSink writes it: the result matches sox's own 24 kHz
/// rendering, and PlaybackStopped reports exactly the length written.
#[actix_rt::test]
async fn wav_source_to_wav_sink_round_trip() {
    let dir = temp_dir("wav-rt");
    let speech16 = speech_pcm(TEXT, 16_000);
    let input = dir.join("in.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    for s in &speech16 {
        w.write_sample(*s).unwrap();
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();

    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let output = dir.join("out.wav");
    let mut stopped = ctx.stream().only::<PlaybackStopped>();
    let mut recorded = ctx.stream().capacity(10_000).only::<RecordedAudio>();
    let sink = WavSink::new(ctx.clone(), &output)
        .realtime(false)
        .item_end_ms(100)
        .start()
        .unwrap();
    WavSource::new(ctx.clone(), &input)
        .realtime(false)
        .pad_silence_ms(200)
        .start()
        .unwrap();
    let expected = speech16.len() * 3 / 2 + 24_000 / 5;
    let mut n = 0;
    while n < expected {
        let ev = tokio::time::timeout(Duration::from_secs(10), recorded.next())
            .await
            .expect("WavSource stalled")
            .unwrap();
        assert_eq!(ev.audio.sample_rate, 24_000);
        assert!(ev.audio.len() <= 480);
        n += ev.audio.len();
        ctx.publish(SynthesizedAudio {
            response_id: None,
            item_id: "echo".into(),
            audio: ev.audio,
        });
    }
    assert_eq!(n, expected);
    let ev = tokio::time::timeout(Duration::from_secs(5), stopped.next())
        .await
        .expect("no PlaybackStopped")
        .unwrap();
    assert_eq!((&*ev.item_id, ev.interrupted), ("echo", false));
    let written = sink.send(CloseSink).await.unwrap().unwrap();
    assert_eq!(written as usize, expected);
    assert_eq!(ev.played_ms, written * 1000 / 24_000);

    let got = read_wav_mono(&output, 24_000).unwrap();
    assert_eq!(got.len(), expected);
    let reference = speech_pcm(TEXT, 24_000);
    let (snr, lag) = snr_db(&reference, &got, 8);
    println!("round trip: SNR {snr:.1} dB at lag {lag}");
    assert!(snr > 20.0, "SNR {snr:.1} dB");
    assert!(lag.abs() <= 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real-time WavSink honours Interrupted like the player: PlaybackStopped.played_ms is
/// exactly what was written, late chunks of the item are dropped, and nothing more is written.
#[actix_rt::test]
async fn wav_sink_interruption_matches_file() {
    let dir = temp_dir("wav-int");
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let output = dir.join("out.wav");
    let mut stopped = ctx.stream().only::<PlaybackStopped>();
    let sink = WavSink::new(ctx.clone(), &output).start().unwrap();
    let tone = tone_pcm(440.0, 3000, 24_000, 8000);
    for c in tone.chunks(2400) {
        ctx.publish(SynthesizedAudio {
            response_id: Some("r1".into()),
            item_id: "item".into(),
            audio: AudioChunk::new(c.to_vec(), 24_000),
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctx.publish(Interrupted {
        response_id: Some("r1".into()),
        item_id: Some("item".into()),
    });
    ctx.publish(SynthesizedAudio {
        response_id: Some("r1".into()),
        item_id: "item".into(),
        audio: AudioChunk::new(tone[..2400].to_vec(), 24_000),
    });
    let ev = tokio::time::timeout(Duration::from_secs(5), stopped.next())
        .await
        .expect("no PlaybackStopped")
        .unwrap();
    assert!(ev.interrupted);
    assert!(ev.played_ms < 3000);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = sink.send(GetPlaybackStats).await.unwrap();
    assert_eq!(stats.chunks_dropped_late, 1);
    let written = sink.send(CloseSink).await.unwrap().unwrap();
    assert_eq!(ev.played_ms, written * 1000 / 24_000);
    let got = read_wav_mono(&output, 24_000).unwrap();
    assert_eq!(
        &got[..],
        &tone[..got.len()],
        "the file holds the start of the tone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A file that does not exist is a typed error, not a panic.
#[actix_rt::test]
async fn missing_wav_is_a_typed_error() {
    let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    let err = WavSource::new(ctx, "/nonexistent/file.wav")
        .start()
        .err()
        .ok_or(())
        .expect("error");
    assert_eq!(err.kind, liveagent_core::ErrorKind::Audio);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
