//! G.711 audio formats (`audio/pcmu`, `audio/pcma`): the session announces them, the
//! microphone's 8 kHz PCM16 goes out as one byte per sample, the provider's μ-law comes
//! back as 8 kHz PCM16 on the bus, and truncation counts 8 bytes per millisecond.

use base64::Engine as _;
use liveagent_core::g711;
use liveagent_core::{
    AudioChunk, LiveEvent, Outbox, PlaybackStopped, RealtimeConfig as _, RealtimeProtocol,
    SessionCommand, SessionSetup, WireFrame,
};
use liveagent_openai::{AudioFormat, OpenAiProtocol, RealtimeConfig};
use liveagent_testkit::{validate_lines, Protocol};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn frames(out: &Outbox) -> Vec<Value> {
    out.frames
        .iter()
        .map(|f| match f {
            WireFrame::Text(t) => serde_json::from_str(t).unwrap(),
            WireFrame::Binary(_) => panic!("binary frame sent"),
        })
        .collect()
}

fn feed(p: &mut OpenAiProtocol, v: Value) -> Outbox {
    let mut out = Outbox::new();
    p.on_frame(WireFrame::Text(v.to_string().into()), &mut out);
    out
}

fn ready(config: RealtimeConfig) -> (OpenAiProtocol, Value) {
    let mut p = config
        .api_key("sk-test")
        .protocol(SessionSetup::default())
        .unwrap();
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    let created = feed(
        &mut p,
        json!({"type":"session.created","event_id":"e1","session":{"type":"realtime","id":"s"}}),
    );
    let update = frames(&created)[0].clone();
    feed(
        &mut p,
        json!({"type":"session.updated","event_id":"e2","session":{"type":"realtime"}}),
    );
    (p, update)
}

#[test]
fn pcmu_both_ways_passes_bytes_through_at_8khz() {
    let config =
        RealtimeConfig::new("gpt-realtime").audio_formats(AudioFormat::Pcmu, AudioFormat::Pcmu);
    assert_eq!(config.input_sample_rate(), 8_000);
    assert_eq!(config.output_sample_rate(), 8_000);
    let (mut p, update) = ready(config);
    assert_eq!(
        update["session"]["audio"]["input"]["format"],
        json!({"type":"audio/pcmu"})
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"],
        json!({"type":"audio/pcmu"})
    );
    let report = validate_lines(&[format!("> {update}")], Protocol::OpenAi);
    assert!(report.contains("1 OK, 0 WARN, 0 FAIL"), "{report}");

    // Caller μ-law (every code) → PCM16 on the bus → the same bytes out.
    let caller: Vec<u8> = (0..=255u8).collect();
    let pcm = g711::ulaw_to_pcm16(&caller);
    let mut out = Outbox::new();
    p.on_command(SessionCommand::Audio(AudioChunk::new(pcm, 8_000)), &mut out);
    let sent = frames(&out);
    assert_eq!(sent[0]["type"], "input_audio_buffer.append");
    assert_eq!(
        B64.decode(sent[0]["audio"].as_str().unwrap()).unwrap(),
        caller
    );

    // Provider μ-law → 8 kHz PCM16 events.
    let speech: Vec<u8> = (0..800).map(|i| (i % 256) as u8).collect(); // 100 ms
    for (i, v) in [
        json!({"type":"response.created","event_id":"e3","response":{"id":"r1","object":"realtime.response","status":"in_progress","output":[]}}),
        json!({"type":"response.output_audio.delta","event_id":"e4","response_id":"r1","item_id":"it1","output_index":0,"content_index":0,"delta":B64.encode(&speech)}),
    ]
    .into_iter()
    .enumerate()
    {
        let out = feed(&mut p, v);
        if i == 1 {
            let audio: Vec<_> = out
                .events
                .iter()
                .filter_map(|e| match e {
                    LiveEvent::SynthesizedAudio(a) => Some(a.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(audio.len(), 1);
            assert_eq!(audio[0].audio.sample_rate, 8_000);
            assert_eq!(&audio[0].audio.samples[..], &g711::ulaw_to_pcm16(&speech)[..]);
        }
    }
    // Heard 60 of 100 ms: truncate at 60 (8 bytes per ms, not 48).
    let mut out = Outbox::new();
    p.on_command(
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: "it1".into(),
            played_ms: 60,
            interrupted: true,
        }),
        &mut out,
    );
    let truncate = frames(&out)
        .into_iter()
        .find(|f| f["type"] == "conversation.item.truncate")
        .expect("truncate");
    assert_eq!(truncate["audio_end_ms"], 60);
}

#[test]
fn pcma_is_announced_and_encoded_as_a_law() {
    let config =
        RealtimeConfig::new("gpt-realtime").audio_formats(AudioFormat::Pcma, AudioFormat::Pcm16);
    assert_eq!(config.input_sample_rate(), 8_000);
    assert_eq!(config.output_sample_rate(), 24_000);
    let (mut p, update) = ready(config);
    assert_eq!(
        update["session"]["audio"]["input"]["format"],
        json!({"type":"audio/pcma"})
    );
    assert_eq!(
        update["session"]["audio"]["output"]["format"]["type"],
        "audio/pcm"
    );
    let mut out = Outbox::new();
    p.on_command(
        SessionCommand::Audio(AudioChunk::new(vec![0i16, 1000, -1000], 8_000)),
        &mut out,
    );
    let bytes = B64
        .decode(frames(&out)[0]["audio"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        bytes,
        vec![
            g711::alaw_encode(0),
            g711::alaw_encode(1000),
            g711::alaw_encode(-1000)
        ]
    );
}
