//! The audio fast paths of the wire layer agree with the general ones: an
//! `input_audio_buffer.append` frame written in one pass is the serialized `ClientEvent`, and
//! the borrowed `response.output_audio.delta` parse accepts exactly the complete deltas
//! (any field order, escaped strings) and hands everything else to the full parse.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use liveagent_openai::wire::{AudioDeltaFrame, ClientEvent};

#[test]
fn append_json_is_the_serialized_client_event() {
    for len in [0usize, 1, 2, 3, 959, 960, 961, 4096] {
        let audio: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        let fast = ClientEvent::append_json(&audio);
        let slow = ClientEvent::InputAudioBufferAppend {
            audio: B64.encode(&audio),
        }
        .to_json();
        assert_eq!(fast, slow, "len {len}");
        let v: serde_json::Value = serde_json::from_str(&fast).unwrap();
        assert_eq!(B64.decode(v["audio"].as_str().unwrap()).unwrap(), audio);
    }
}

#[test]
fn delta_fast_path_takes_complete_deltas_in_any_field_order() {
    let frame = r#"{"delta":"AQI=","item_id":"it\u0041","event_id":"e","output_index":0,"type":"response.output_audio.delta","content_index":0,"response_id":"r1"}"#;
    let parsed: AudioDeltaFrame<'_> = serde_json::from_str(frame).unwrap();
    assert_eq!(parsed.fields(), Some(("r1", "itA", "AQI=")));
    // Unescaped strings are borrowed from the frame (no copy of the audio); the escaped one
    // is decoded into an owned string.
    assert!(matches!(parsed.delta, Some(std::borrow::Cow::Borrowed(_))));
    assert!(matches!(
        parsed.response_id,
        Some(std::borrow::Cow::Borrowed(_))
    ));
    assert!(matches!(parsed.item_id, Some(std::borrow::Cow::Owned(_))));
    // An escaped delta (`\/` is valid JSON for `/`) is still read, as an owned string.
    let frame =
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"AQ\/+"}"#;
    let parsed: AudioDeltaFrame<'_> = serde_json::from_str(frame).unwrap();
    assert_eq!(parsed.fields(), Some(("r", "i", "AQ/+")));
    // An explicit null is no delta (the full parse reports the malformed event).
    let frame =
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":null}"#;
    let parsed: AudioDeltaFrame<'_> = serde_json::from_str(frame).unwrap();
    assert_eq!(parsed.fields(), None);
}

#[test]
fn delta_fast_path_leaves_everything_else_to_the_full_parse() {
    for frame in [
        // Missing a field: the full parse reports the malformed event.
        r#"{"type":"response.output_audio.delta","response_id":"r","delta":"AQI="}"#,
        // Another event with a (text) delta.
        r#"{"type":"response.output_audio_transcript.delta","response_id":"r","item_id":"i","delta":"hi"}"#,
        // No delta at all.
        r#"{"type":"session.created","session":{"id":"s"}}"#,
    ] {
        let parsed: AudioDeltaFrame<'_> = serde_json::from_str(frame).unwrap();
        assert_eq!(parsed.fields(), None, "{frame}");
    }
    // A delta that is not a string does not parse here at all (the full parse reports it).
    assert!(serde_json::from_str::<AudioDeltaFrame<'_>>(
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":5}"#
    )
    .is_err());
}
