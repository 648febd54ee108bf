//! The audio fast paths of the wire layer agree with the general ones: an
//! `input_audio_buffer.append` frame written in one pass is the serialized `ClientEvent`, and
//! the `response.output_audio.delta` scan ([`AudioDeltaFrame::scan`]) reads a frame only when
//! the full serde parse would read the same delta from it (any field order, any whitespace),
//! and leaves everything else — escapes, nested values, duplicates, missing fields, malformed
//! or hostile text — to the full parse. The protocol gives the same audio and the same
//! errors whichever path a frame takes.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use liveagent_core::{ErrorKind, LiveEvent, Outbox, RealtimeProtocol, WireFrame};
use liveagent_openai::wire::{AudioDeltaFrame, ClientEvent, ServerEvent};
use liveagent_openai::OpenAiProtocol;
use serde_json::json;

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

/// The full parse's delta, if it reads `frame` as one.
fn full(frame: &str) -> Option<(String, String, String)> {
    match serde_json::from_str::<ServerEvent>(frame) {
        Ok(ServerEvent::OutputAudioDelta {
            response_id,
            item_id,
            delta,
        }) => Some((response_id, item_id, delta)),
        _ => None,
    }
}

fn scan(frame: &str) -> Option<(&str, &str, &str)> {
    AudioDeltaFrame::scan(frame).map(|d| (d.response_id, d.item_id, d.delta))
}

/// The property the protocol relies on: whatever the scan reads (with a delta that decodes
/// as base64, which the protocol checks before using it) is what the full parse reads.
fn assert_sound(frame: &str) {
    if let Some((r, i, d)) = scan(frame) {
        if base64_simd::STANDARD.decode_to_vec(d).is_ok() {
            assert_eq!(
                full(frame),
                Some((r.to_owned(), i.to_owned(), d.to_owned())),
                "the scan read {frame:?} differently from serde"
            );
        }
    }
}

/// The fields of a real frame, in the provider's order.
const FIELDS: [&str; 7] = [
    r#""type":"response.output_audio.delta""#,
    r#""event_id":"event_CCDXyQXOVHm8HWg4RUc9h""#,
    r#""response_id":"resp_CCDXxK6w2XQwQ8R3sAk0R""#,
    r#""item_id":"item_CCDXxb4U1qDNgbx7yWZQ4""#,
    r#""output_index":0"#,
    r#""content_index":0"#,
    r#""delta":"AQIDBA==""#,
];

fn frame_of(fields: &[&str], sep: &str) -> String {
    format!("{{{sep}{}{sep}}}", fields.join(&format!("{sep},{sep}")))
}

#[test]
fn scan_reads_complete_deltas_in_any_field_order_and_spacing() {
    let want = (
        "resp_CCDXxK6w2XQwQ8R3sAk0R",
        "item_CCDXxb4U1qDNgbx7yWZQ4",
        "AQIDBA==",
    );
    // Every rotation and the reversal of the fields, with and without whitespace.
    for sep in ["", " ", "\n\t \r"] {
        for k in 0..FIELDS.len() {
            let mut fields = FIELDS.to_vec();
            fields.rotate_left(k);
            for fields in [fields.clone(), fields.into_iter().rev().collect()] {
                let frame = frame_of(&fields, sep);
                assert_eq!(scan(&frame), Some(want), "{frame}");
                assert_sound(&frame);
                // Whitespace around the colons too.
                let spaced = frame.replace("\":", &format!("\"{sep}:{sep}"));
                assert_eq!(scan(&spaced), Some(want), "{spaced}");
                assert_sound(&spaced);
            }
        }
    }
    // Only the three fields (no event_id, no indexes), and whitespace after the object.
    let frame =
        r#"{"delta":"","item_id":"i","response_id":"r","type":"response.output_audio.delta"}  "#;
    assert_eq!(scan(frame), Some(("r", "i", "")));
    assert_sound(frame);
    // The local server's frame (`event_id` first).
    let frame = r#"{"event_id":"event_7","type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_2","output_index":0,"content_index":0,"delta":"AAAA"}"#;
    assert_eq!(scan(frame), Some(("resp_1", "item_2", "AAAA")));
}

#[test]
fn scan_leaves_escapes_to_the_full_parse() {
    // An escape in the delta (`\/` is JSON for `/`), in an id, in a key, in an ignored
    // field: the full parse reads them; the scan does not try.
    let escaped = [
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"AQ\/+"}"#,
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"it\u0041","delta":"AQI="}"#,
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","d\u0065lta":"AQI="}"#,
        r#"{"type":"response.output_audio.delta","event_id":"a\"b","response_id":"r","item_id":"i","delta":"AQI="}"#,
        r#"{"type":"response.output\u005faudio.delta","response_id":"r","item_id":"i","delta":"AQI="}"#,
    ];
    for frame in escaped {
        assert_eq!(scan(frame), None, "{frame}");
        assert!(full(frame).is_some(), "{frame}");
    }
    assert_eq!(full(escaped[0]).unwrap().2, "AQ/+");
    assert_eq!(full(escaped[1]).unwrap().1, "itA");
}

#[test]
fn scan_reads_unicode_as_is() {
    // Non-ASCII text needs no escape in JSON: borrowed as it is.
    let frame = r#"{"type":"response.output_audio.delta","event_id":"é🎙","response_id":"réponse","item_id":"項目","delta":"AQI="}"#;
    assert_eq!(scan(frame), Some(("réponse", "項目", "AQI=")));
    assert_sound(frame);
    // A delta that is not base64 (here: non-ASCII) is scanned but fails to decode: the
    // protocol then takes the full parse (see the protocol test below).
    let frame =
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"ÀQI="}"#;
    assert_eq!(scan(frame).map(|f| f.2), Some("ÀQI="));
    assert!(base64_simd::STANDARD.decode_to_vec("ÀQI=").is_err());
}

#[test]
fn scan_leaves_missing_mistyped_and_duplicate_fields_to_the_full_parse() {
    for frame in [
        // Missing fields.
        r#"{"type":"response.output_audio.delta","response_id":"r","delta":"AQI="}"#,
        r#"{"type":"response.output_audio.delta","item_id":"i","delta":"AQI="}"#,
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i"}"#,
        r#"{"response_id":"r","item_id":"i","delta":"AQI="}"#,
        r#"{}"#,
        // Mistyped fields.
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":null}"#,
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":5}"#,
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":["i"],"delta":"AQI="}"#,
        r#"{"type":5,"response_id":"r","item_id":"i","delta":"AQI="}"#,
        // Duplicates (serde refuses a known field twice).
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"AQI=","delta":"AQI="}"#,
        r#"{"type":"response.output_audio.delta","type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"AQI="}"#,
        r#"{"type":"response.output_audio.delta","response_id":"r","response_id":"s","item_id":"i","delta":"AQI="}"#,
        // Other events, with a delta field of their own.
        r#"{"type":"response.output_audio_transcript.delta","response_id":"r","item_id":"i","delta":"hi"}"#,
        r#"{"type":"response.output_audio.delta ","response_id":"r","item_id":"i","delta":"AQI="}"#,
        r#"{"type":"response.output_audio.done","response_id":"r","item_id":"i","delta":"AQI="}"#,
        r#"{"type":"session.created","session":{"id":"s"}}"#,
    ] {
        assert_eq!(scan(frame), None, "{frame}");
    }
    // Values the scan does not read in ignored fields: the full parse accepts them.
    for value in [
        "true",
        "false",
        "null",
        "1.5",
        "1e3",
        "-0.0",
        "{\"a\":[1,{}]}",
        "[]",
        "1234567890123456789",
    ] {
        let frame = format!(
            r#"{{"type":"response.output_audio.delta","obfuscation":{value},"response_id":"r","item_id":"i","delta":"AQI="}}"#
        );
        assert_eq!(scan(&frame), None, "{frame}");
        assert!(full(&frame).is_some(), "{frame}");
    }
    // Integers it does read, and an ignored field given twice (serde ignores both).
    for value in ["0", "-0", "7", "-12", "123456789012345678"] {
        let frame = format!(
            r#"{{"type":"response.output_audio.delta","output_index":{value},"output_index":{value},"response_id":"r","item_id":"i","delta":"AQI="}}"#
        );
        assert_eq!(scan(&frame), Some(("r", "i", "AQI=")), "{frame}");
        assert_sound(&frame);
    }
}

#[test]
fn scan_refuses_malformed_json() {
    let good = r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","output_index":0,"delta":"AQI="}"#;
    assert!(scan(good).is_some());
    for bad in [
        // Trailing text, a second object, a trailing comma, no comma, no colon.
        format!("{good}x"),
        format!("{good}{good}"),
        good.replacen("}", ",}", 1),
        good.replacen(",\"item_id\"", "\"item_id\"", 1),
        good.replacen("\"item_id\":", "\"item_id\"", 1),
        // Numbers JSON does not have.
        good.replacen(":0,", ":01,", 1),
        good.replacen(":0,", ":-,", 1),
        good.replacen(":0,", ":+1,", 1),
        good.replacen(":0,", ":0x1,", 1),
        // A control character in a string, single quotes, a byte-order mark, not an object.
        good.replacen("\"r\"", "\"r\u{1}\"", 1),
        good.replacen("\"r\"", "'r'", 1),
        format!("\u{feff}{good}"),
        format!("[{good}]"),
        String::new(),
        "{".to_owned(),
        "{\"type\"".to_owned(),
    ] {
        assert_eq!(scan(&bad), None, "{bad}");
        assert_sound(&bad);
    }
}

/// Every truncation, and every single-byte deletion, insertion and replacement (with the
/// bytes that matter to JSON) of a real frame: the scan never reads something serde does
/// not, and never panics.
#[test]
fn scan_agrees_with_serde_under_mutation() {
    let base = frame_of(&FIELDS, "");
    let specials = [
        "\"", "\\", ",", ":", "{", "}", "[", "]", " ", "\n", "\u{1}", "0", "-", ".", "e", "a", "=",
        "é",
    ];
    let mut checked = 0;
    for cut in 0..=base.len() {
        assert_sound(&base[..cut]);
        if cut < base.len() {
            assert_sound(&format!("{}{}", &base[..cut], &base[cut + 1..]));
        }
        for s in specials {
            assert_sound(&format!("{}{s}{}", &base[..cut], &base[cut..]));
            if cut < base.len() {
                assert_sound(&format!("{}{s}{}", &base[..cut], &base[cut + 1..]));
            }
            checked += 2;
        }
    }
    assert!(checked > 5_000);
}

#[test]
fn scan_survives_hostile_input() {
    // Deep nesting: refused at the first value it does not read, without recursion.
    let deep = format!(
        r#"{{"type":"response.output_audio.delta","x":{}0{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(scan(&deep), None);
    // A huge delta (4 MiB of audio) is read whole; unterminated, it is refused.
    let audio: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let b64 = B64.encode(&audio);
    let frame = format!(
        r#"{{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"{b64}"}}"#
    );
    let (_, _, d) = scan(&frame).unwrap();
    assert_eq!(base64_simd::STANDARD.decode_to_vec(d).unwrap(), audio);
    assert_eq!(scan(&frame[..frame.len() - 2]), None);
    // Long runs of whitespace and keys; pseudo-random bytes (valid UTF-8) never panic.
    let spaced = format!("{}{}", " ".repeat(1 << 20), frame);
    assert!(scan(&spaced).is_some());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2_000 {
        let text: String = (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"{}[]\":,\\ ae0-1typ";
                alphabet[(x % alphabet.len() as u64) as usize] as char
            })
            .collect();
        assert_sound(&text);
    }
}

// ---------------------------------------------------------------------------------------
// Through the protocol: the fast and the full path give the same events.
// ---------------------------------------------------------------------------------------

fn ready_protocol() -> OpenAiProtocol {
    let mut p = common::ready();
    let mut out = Outbox::new();
    for v in [
        json!({"type":"response.created","event_id":"e","response":{"object":"realtime.response","id":"r","status":"in_progress","output":[]}}),
        json!({"type":"response.output_item.added","event_id":"e","response_id":"r","output_index":0,
               "item":{"id":"i","type":"message","object":"realtime.item","status":"in_progress","role":"assistant","content":[]}}),
    ] {
        p.on_frame(WireFrame::Text(v.to_string().into()), &mut out);
    }
    p
}

fn feed(p: &mut OpenAiProtocol, frame: &str) -> Vec<LiveEvent> {
    let mut out = Outbox::new();
    p.on_frame(WireFrame::Text(frame.to_owned().into()), &mut out);
    out.events
}

fn audio(events: &[LiveEvent]) -> Vec<i16> {
    events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::SynthesizedAudio(a) => Some(a.audio.samples.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn protocol_errors(events: &[LiveEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ErrorEvent(e) => {
                assert_eq!(e.error.kind, ErrorKind::Protocol);
                Some(e.error.to_string())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn protocol_gives_the_same_audio_on_both_paths() {
    let pcm: Vec<u8> = (0..960u32)
        .flat_map(|i| (i as i16 * 3).to_le_bytes())
        .collect();
    let b64 = B64.encode(&pcm);
    let fast = format!(
        r#"{{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"{b64}"}}"#
    );
    assert!(AudioDeltaFrame::scan(&fast).is_some());
    // The same frame with an escaped event id: the full parse.
    let slow = fast.replacen(r#""e""#, r#""\u0065""#, 1);
    assert!(AudioDeltaFrame::scan(&slow).is_none());
    let want: Vec<i16> = (0..960).map(|i| i as i16 * 3).collect();
    let mut p = ready_protocol();
    let a = feed(&mut p, &fast);
    assert_eq!(audio(&a), want);
    let mut q = ready_protocol();
    let b = feed(&mut q, &slow);
    assert_eq!(audio(&b), want);
    assert_eq!(a.len(), b.len());
}

#[test]
fn protocol_reports_the_same_errors_on_both_paths() {
    // Scanned, but not base64: the full parse decodes it again and reports it.
    for delta in ["!!notbase64", "ÀQI=", "AQI", "AQ\u{1}I="] {
        let frame = format!(
            r#"{{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"{delta}"}}"#
        );
        let mut p = ready_protocol();
        let errs = protocol_errors(&feed(&mut p, &frame));
        assert_eq!(errs.len(), 1, "{frame}: {errs:?}");
        if delta.contains('\u{1}') {
            // JSON forbids the control character: serde's error.
            assert!(errs[0].contains("control character"), "{errs:?}");
        } else {
            assert!(errs[0].contains("undecodable audio delta"), "{errs:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Generated frames: the scan reads exactly the plain complete deltas, as serde does.
// ---------------------------------------------------------------------------------------

mod generated {
    use super::*;
    use proptest::prelude::*;

    /// One member of a generated object; `plain` when the scan must read it (a key and a
    /// value without escapes, control characters or values other than strings and plain
    /// integers).
    #[derive(Clone, Debug)]
    struct Member {
        key: String,
        value: String,
        plain: bool,
    }

    fn plain_string() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.é🎙 -]{0,10}".prop_map(|s| format!("\"{s}\""))
    }

    fn plain_value() -> impl Strategy<Value = String> {
        prop_oneof![
            plain_string(),
            "-?(0|[1-9][0-9]{0,17})",
            prop::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| format!("\"{}\"", B64.encode(b))),
        ]
    }

    fn other_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""a\u0041""#.to_owned()),
            Just(r#""a\"b""#.to_owned()),
            Just(r#""a\\b""#.to_owned()),
            Just("\"a\u{1}b\"".to_owned()),
            Just("\"unterminated".to_owned()),
            Just("1.5".to_owned()),
            Just("1e3".to_owned()),
            Just("01".to_owned()),
            Just("1234567890123456789".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just(r#"{"a":[1,"}"]}"#.to_owned()),
            Just("[]".to_owned()),
        ]
    }

    /// A known field: usually with a plain value of the right kind.
    fn known(key: &'static str) -> impl Strategy<Value = Member> {
        let good = match key {
            "type" => prop_oneof![
                4 => Just(format!("\"{}\"", liveagent_openai::wire::AUDIO_DELTA_TYPE)),
                1 => Just("\"response.output_audio_transcript.delta\"".to_owned()),
            ]
            .boxed(),
            "delta" => prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| format!("\"{}\"", B64.encode(b)))
                .boxed(),
            _ => plain_string().boxed(),
        };
        prop_oneof![
            8 => good.prop_map(move |value| Member { key: key.to_owned(), value, plain: true }),
            1 => other_value().prop_map(move |value| Member { key: key.to_owned(), value, plain: false }),
        ]
    }

    fn extra() -> impl Strategy<Value = Member> {
        prop_oneof![
            4 => ("[a-z_]{1,12}", plain_value()).prop_map(|(key, value)| Member { key, value, plain: true }),
            1 => ("[a-z_]{1,12}", other_value()).prop_map(|(key, value)| Member { key, value, plain: false }),
            1 => plain_value().prop_map(|value| Member { key: r"d\u0065lta".to_owned(), value, plain: false }),
        ]
    }

    fn frame() -> impl Strategy<Value = (String, Vec<Member>)> {
        let members = (
            prop::collection::vec(
                prop_oneof![
                    known("type"),
                    known("response_id"),
                    known("item_id"),
                    known("delta")
                ],
                0..3,
            ),
            known("type"),
            known("response_id"),
            known("item_id"),
            known("delta"),
            prop::collection::vec(extra(), 0..4),
            prop::bool::weighted(0.9),
        )
            .prop_map(|(dups, t, r, i, d, extras, complete)| {
                let mut all = vec![t, r, i, d];
                if !complete {
                    all.pop();
                }
                all.extend(dups);
                all.extend(extras);
                all
            })
            .prop_shuffle();
        (members, prop_oneof![Just(""), Just(" "), Just("\n\t\r ")]).prop_map(|(members, ws)| {
            let body: Vec<String> = members
                .iter()
                .map(|m| format!("{ws}\"{}\"{ws}:{ws}{}{ws}", m.key, m.value))
                .collect();
            (format!("{ws}{{{}}}{ws}", body.join(",")), members)
        })
    }

    /// What the scan must give for these members (with a delta that decodes): the three
    /// fields when every member is plain, each known field appears once and the type is the
    /// audio delta's.
    fn expected(members: &[Member]) -> Option<(String, String, String)> {
        let field = |k: &str| {
            let mut it = members.iter().filter(|m| m.key == k);
            let m = it.next()?;
            it.next()
                .is_none()
                .then(|| m.value.trim_matches('"').to_owned())
        };
        if !members.iter().all(|m| m.plain) {
            return None;
        }
        if field("type")? != liveagent_openai::wire::AUDIO_DELTA_TYPE {
            return None;
        }
        Some((field("response_id")?, field("item_id")?, field("delta")?))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, .. ProptestConfig::default() })]

        #[test]
        fn scan_reads_exactly_the_plain_complete_deltas((frame, members) in frame()) {
            let want = expected(&members);
            // As the protocol uses it: the delta's characters are checked by decoding it.
            let got = scan(&frame)
                .filter(|(_, _, d)| base64_simd::STANDARD.decode_to_vec(d).is_ok())
                .map(|(r, i, d)| (r.to_owned(), i.to_owned(), d.to_owned()));
            prop_assert_eq!(&got, &want, "{}", frame);
            // And serde agrees with whatever the scan read.
            assert_sound(&frame);
            if want.is_some() {
                prop_assert_eq!(full(&frame), want);
            }
        }
    }
}
