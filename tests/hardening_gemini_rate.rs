//! A Gemini Live provider's audio `rate=` label is not trusted, end to end (issue 13, item
//! 4): a scripted Gemini Live peer (`tests/support/peer.rs`, real WebSocket on 127.0.0.1)
//! answers a turn with model audio labelled `audio/pcm;rate=1000` and `rate=96000`, then a
//! valid chunk at 16 kHz. The conversation's event stream gets one clear `ErrorEvent` per bad
//! chunk, no audio of the bad chunks reaches the bus, the valid chunk is delivered as sent,
//! and the session stays up (no reconnect; the next turn is answered).

use base64::Engine;
use liveagent::{gemini, LiveAgent, LiveEvent};
use liveagent_e2e::peer::ScriptedPeer;
use liveagent_e2e::*;
use serde_json::{json, Value};

fn audio_part(rate: u32, samples: &[i16]) -> String {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {
        "mimeType": format!("audio/pcm;rate={rate}"),
        "data": base64::engine::general_purpose::STANDARD.encode(bytes)}}]}}})
    .to_string()
}

/// The valid chunk: 100 ms of a tone at 16 kHz.
fn valid() -> Vec<i16> {
    liveagent_testkit::tone_pcm(440.0, 100, 16_000, 6000)
}

#[actix_rt::test]
async fn audio_labelled_outside_8_to_48_khz_is_dropped_with_an_error_and_the_session_goes_on() {
    init_tracing();
    let peer = ScriptedPeer::gemini(|_, v: &Value| {
        if v["clientContent"]["turnComplete"] != true {
            return Vec::new();
        }
        let text = v["clientContent"]["turns"][0]["parts"][0]["text"]
            .as_str()
            .unwrap_or_default();
        if text == "speak" {
            vec![
                // 1 s of samples labelled 1 kHz: 24x as many once resampled to 24 kHz.
                audio_part(1000, &vec![7777; 1000]),
                audio_part(96_000, &vec![-7777; 9600]),
                audio_part(16_000, &valid()),
                json!({"serverContent": {"turnComplete": true}}).to_string(),
            ]
        } else {
            vec![
                json!({"serverContent": {"modelTurn": {"parts": [{"text": "still here"}]}}})
                    .to_string(),
                json!({"serverContent": {"turnComplete": true}}).to_string(),
            ]
        }
    })
    .start()
    .await;
    let run = Run::start(
        LiveAgent::builder("assistant").prompt("Test.").config(
            gemini::RealtimeConfig::new("gemini-live")
                .base_url(peer.url())
                .api_key("local-key"),
        ),
    );
    run.wait_count("the session", 1, |e| {
        matches!(e, LiveEvent::SessionUpdated(_))
    })
    .await;
    run.conversation.context().send_text("speak");
    run.wait_count("the answer", 1, |e| matches!(e, LiveEvent::ResponseDone(_)))
        .await;

    let errors = run.collect(|e| match e {
        LiveEvent::ErrorEvent(e) => Some(e.error.message.clone()),
        _ => None,
    });
    assert_eq!(errors.len(), 2, "one error per bad chunk: {errors:?}");
    for (error, rate) in errors.iter().zip(["1000 Hz", "96000 Hz"]) {
        assert!(
            error.contains(rate) && error.contains("8000 to 48000 Hz"),
            "{error}"
        );
    }
    let audio = run.collect(|e| match e {
        LiveEvent::SynthesizedAudio(a) => Some(a.audio.clone()),
        _ => None,
    });
    assert_eq!(audio.len(), 1, "only the valid chunk reaches the bus");
    assert_eq!(audio[0].sample_rate, 16_000);
    assert_eq!(&audio[0].samples[..], &valid()[..], "delivered as sent");

    // Still the same, working connection.
    run.conversation.context().send_text("are you there?");
    run.wait_count("the next answer", 1, |e| {
        matches!(e, LiveEvent::ResponseDone(d) if d.text.as_deref().unwrap_or_default().contains("still here"))
    })
    .await;
    assert_eq!(
        run.count(|e| matches!(e, LiveEvent::SessionReconnecting(_))),
        0,
        "{}",
        run.summary()
    );
    let conns = peer.conns();
    assert_eq!(conns.len(), 1);
    run.conversation.stop().await;
    validate_lines(&peer.conn(0).wire_lines(), Protocol::Gemini);
    peer.stop().await;
}
