//! A provider's audio `rate=` label is not trusted (issue 13, item 4): model audio labelled
//! outside 8–48 kHz is dropped with an error event before its payload is even decoded (two
//! 11 MiB frames labelled `rate=1000` used to take the client to 1 GB once resampled).

use liveagent_core::{LiveEvent, Outbox, RealtimeProtocol, SessionSetup, WireFrame};
use liveagent_gemini::{GeminiProtocol, RealtimeConfig};
use serde_json::json;

fn ready() -> GeminiProtocol {
    let config = RealtimeConfig::new("gemini-live")
        .base_url("ws://127.0.0.1:9")
        .api_key("k");
    let mut p = GeminiProtocol::new(config, SessionSetup::default()).unwrap();
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    p.on_frame(WireFrame::Text(r#"{"setupComplete":{}}"#.into()), &mut out);
    p
}

fn audio_frame(rate: u32, samples: usize) -> Outbox {
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD.encode(vec![0u8; samples * 2]);
    let frame = json!({"serverContent": {"modelTurn": {"parts": [
        {"inlineData": {"mimeType": format!("audio/pcm;rate={rate}"), "data": data}}
    ]}}});
    let mut p = ready();
    let mut out = Outbox::new();
    p.on_frame(WireFrame::Text(frame.to_string().into()), &mut out);
    out
}

fn audio_and_errors(out: &Outbox) -> (usize, Vec<String>) {
    let audio = out
        .events
        .iter()
        .filter(|e| matches!(e, LiveEvent::SynthesizedAudio(_)))
        .count();
    let errors = out
        .events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ErrorEvent(e) => Some(e.error.message.clone()),
            _ => None,
        })
        .collect();
    (audio, errors)
}

#[test]
fn audio_outside_8_to_48_khz_is_dropped_with_an_error() {
    for rate in [1, 1000, 7999, 48_001, 1_000_000] {
        let (audio, errors) = audio_and_errors(&audio_frame(rate, 480));
        assert_eq!(audio, 0, "rate {rate} must not reach the player");
        assert_eq!(errors.len(), 1, "{rate}: {errors:?}");
        assert!(errors[0].contains("8000 to 48000 Hz"), "{}", errors[0]);
    }
}

#[test]
fn audio_within_8_to_48_khz_plays() {
    for rate in [8000, 16_000, 24_000, 48_000] {
        let (audio, errors) = audio_and_errors(&audio_frame(rate, 480));
        assert_eq!((audio, errors.len()), (1, 0), "rate {rate}");
    }
}
