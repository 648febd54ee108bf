//! Property tests of frame decoding: whatever the server sends, the protocol never panics
//! and reports undecodable frames as non-fatal protocol errors.

use std::sync::atomic::{AtomicU64, Ordering};

use liveagent_core::{
    AudioChunk, ControlCommand, ErrorKind, LiveEvent, Outbox, RealtimeProtocol, SessionCommand,
    SessionSetup, ToolResult, WireFrame,
};
use liveagent_gemini::{
    ActivityDetection, GeminiProtocol, InputConfig, RealtimeConfig, SessionResumption,
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Map, Value};

static INPUTS: AtomicU64 = AtomicU64::new(0);

#[allow(clippy::manual_is_multiple_of)] // the workspace MSRV (1.85) predates is_multiple_of
fn protocol(variant: u8) -> GeminiProtocol {
    let mut config = RealtimeConfig::new("gemini-3.1-flash-live-preview")
        .base_url("ws://127.0.0.1:9")
        .api_key("fuzz-key")
        .input(InputConfig::new(variant % 2 == 0));
    if variant % 3 == 0 {
        config = config.session_resumption(SessionResumption::transparent());
    }
    if variant % 5 == 0 {
        config = config.activity_detection(ActivityDetection::manual());
    }
    let mut p = GeminiProtocol::new(config, SessionSetup::default()).unwrap();
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    p.on_frame(WireFrame::Text(r#"{"setupComplete":{}}"#.into()), &mut out);
    p
}

fn check(out: &Outbox) {
    for e in &out.events {
        if let LiveEvent::ErrorEvent(e) = e {
            assert!(!e.fatal, "a bad frame must not be fatal: {e:?}");
            assert!(!e.error.message.contains("fuzz-key"));
        }
    }
    for f in &out.frames {
        // every frame we send back is JSON with one top-level key
        let v: Value = serde_json::from_slice(f.as_bytes()).expect("client frames are JSON");
        assert_eq!(v.as_object().map(|m| m.len()), Some(1), "{v}");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,12}".prop_map(Value::String),
        "[A-Za-z0-9+/=_-]{0,24}".prop_map(Value::String),
        "[0-9]{1,20}".prop_map(Value::String),
        "[0-9.]{1,6}s".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names the decoder knows (so random values reach the typed paths), plus noise.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "modelTurn",
            "parts",
            "text",
            "inlineData",
            "mimeType",
            "data",
            "thought",
            "turnComplete",
            "interrupted",
            "generationComplete",
            "inputTranscription",
            "outputTranscription",
            "finished",
            "turnCompleteReason",
            "functionCalls",
            "id",
            "name",
            "args",
            "ids",
            "timeLeft",
            "newHandle",
            "resumable",
            "lastConsumedClientMessageIndex",
            "promptTokenCount",
            "responseTokenCount",
            "totalTokenCount",
            "promptTokensDetails",
            "modality",
            "tokenCount",
            "sessionId",
            "voiceActivityType",
            "vadSignalType",
            "seconds",
            "nanos",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z_]{1,10}",
    ]
}

fn top_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "setupComplete",
            "serverContent",
            "toolCall",
            "toolCallCancellation",
            "goAway",
            "sessionResumptionUpdate",
            "usageMetadata",
            "voiceActivity",
            "voiceActivityDetectionSignal",
            "server_content",
            "tool_call",
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z]{1,12}",
    ]
}

fn arb_message() -> impl Strategy<Value = Value> {
    prop::collection::vec((top_key(), arb_json()), 1..4)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()))
}

fn audio_part(data: String, mime: String) -> Value {
    json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": mime, "data": data}}]}}})
}

fn run_bytes(bytes: Vec<u8>, binary: bool, variant: u8) -> Result<(), TestCaseError> {
    INPUTS.fetch_add(1, Ordering::Relaxed);
    let mut p = protocol(variant);
    let mut out = Outbox::new();
    let frame = if binary {
        WireFrame::Binary(bytes.into())
    } else {
        WireFrame::Text(String::from_utf8_lossy(&bytes).into_owned().into())
    };
    p.on_frame(frame, &mut out);
    check(&out);
    prop_assert!(out
        .events
        .iter()
        .all(|e| !matches!(e, LiveEvent::ErrorEvent(e) if e.error.kind != ErrorKind::Protocol)));
    Ok(())
}

fn run_messages(msgs: Vec<Value>, variant: u8, close_between: bool) -> Result<(), TestCaseError> {
    let mut p = protocol(variant);
    for (i, m) in msgs.iter().enumerate() {
        INPUTS.fetch_add(1, Ordering::Relaxed);
        let mut out = Outbox::new();
        p.on_frame(WireFrame::Text(m.to_string().into()), &mut out);
        check(&out);
        // answer whatever tool calls came, feed some commands, maybe drop the socket
        for e in out.events.clone() {
            if let LiveEvent::ToolCallRequested(r) = e {
                for (j, c) in r.calls.iter().enumerate() {
                    let mut o = Outbox::new();
                    p.on_command(
                        SessionCommand::ToolResult(ToolResult {
                            call_id: c.call_id.clone(),
                            name: c.name.clone(),
                            output: Ok(json!(j)),
                            request_response: j + 1 == r.calls.len(),
                        }),
                        &mut o,
                    );
                    check(&o);
                }
            }
        }
        let mut o = Outbox::new();
        p.on_command(
            SessionCommand::Audio(AudioChunk::silence(10, 16_000)),
            &mut o,
        );
        p.on_command(SessionCommand::Control(ControlCommand::CommitInput), &mut o);
        check(&o);
        if close_between && i % 3 == 2 {
            let mut o = Outbox::new();
            p.on_close(&mut o);
            p.on_open(true, &mut o);
            p.on_frame(WireFrame::Text(r#"{"setupComplete":{}}"#.into()), &mut o);
            check(&o);
        }
    }
    Ok(())
}

fn run_audio(data: String, mime: &str) -> Result<(), TestCaseError> {
    INPUTS.fetch_add(1, Ordering::Relaxed);
    let mut p = protocol(1);
    let mut out = Outbox::new();
    p.on_frame(
        WireFrame::Text(audio_part(data, mime.to_owned()).to_string().into()),
        &mut out,
    );
    check(&out);
    Ok(())
}

/// Runs the three properties and reports how many frames were decoded.
#[test]
fn fuzz_frame_decoding() {
    let cases: u32 = std::env::var("GEMINI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let config = || ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config());
    runner
        .run(
            &(
                prop::collection::vec(any::<u8>(), 0..512),
                any::<bool>(),
                0u8..30,
            ),
            |(b, bin, v)| run_bytes(b, bin, v),
        )
        .unwrap();
    let mut runner = TestRunner::new(config());
    runner
        .run(
            &(
                prop::collection::vec(arb_message(), 1..8),
                0u8..30,
                any::<bool>(),
            ),
            |(m, v, c)| run_messages(m, v, c),
        )
        .unwrap();
    let mut runner = TestRunner::new(config());
    runner
        .run(
            &(
                "[A-Za-z0-9+/=_-]{0,64}",
                prop::sample::select(vec![
                    "audio/pcm;rate=24000",
                    "audio/pcm;rate=0",
                    "audio/pcm;rate=x",
                    "audio/pcm",
                    "image/png",
                    "",
                ]),
            ),
            |(d, m)| run_audio(d, m),
        )
        .unwrap();
    let n = INPUTS.load(Ordering::Relaxed);
    println!(
        "gemini fuzz: {n} frames decoded in {} cases x 3 properties",
        cases
    );
    assert!(
        n >= 3 * cases as u64,
        "every case decodes at least one frame"
    );
}
