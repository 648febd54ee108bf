//! Fuzzing of frame decoding: arbitrary bytes, and structurally random JSON (real event types
//! with random, missing or mistyped fields) in random sequences mixed with commands, must
//! never panic; every frame either decodes or yields a Protocol error event.

use std::sync::atomic::{AtomicUsize, Ordering};

use liveagent_core::{
    AudioChunk, ControlCommand, ErrorKind, LiveEvent, Outbox, PlaybackStopped, RealtimeProtocol,
    SessionCommand, SessionSetup, ToolResult, UserText, WireFrame,
};
use liveagent_openai::{OpenAiProtocol, RealtimeConfig, TurnDetection};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

static FRAMES: AtomicUsize = AtomicUsize::new(0);
static BYTE_INPUTS: AtomicUsize = AtomicUsize::new(0);
static DECODED: AtomicUsize = AtomicUsize::new(0);

const TYPES: &[&str] = &[
    "error",
    "session.created",
    "session.updated",
    "conversation.created",
    "conversation.item.added",
    "conversation.item.done",
    "conversation.item.created",
    "conversation.item.truncated",
    "conversation.item.deleted",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "input_audio_buffer.cleared",
    "input_audio_buffer.timeout_triggered",
    "response.created",
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
    "response.output_text.delta",
    "response.output_text.done",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.done",
    "rate_limits.updated",
    "some.future.event",
];

const FIELDS: &[&str] = &[
    "event_id",
    "item_id",
    "response_id",
    "call_id",
    "name",
    "arguments",
    "delta",
    "transcript",
    "text",
    "audio_start_ms",
    "audio_end_ms",
    "content_index",
    "output_index",
    "status",
    "role",
    "type",
    "id",
    "output",
    "content",
    "item",
    "response",
    "session",
    "error",
    "code",
    "message",
    "param",
    "usage",
    "status_details",
    "reason",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        // ids that collide, so state machine paths connect
        prop::sample::select(vec![
            "item_A", "item_B", "resp_1", "resp_2", "call_1", "", "x"
        ])
        .prop_map(|s| json!(s)),
        // base64 of a few bytes (odd and even lengths), and invalid base64
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| {
            use base64::Engine;
            json!(base64::engine::general_purpose::STANDARD.encode(b))
        }),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(TYPES.to_vec()).prop_map(|s| json!(s)),
        prop::sample::select(vec![
            "message",
            "function_call",
            "function_call_output",
            "assistant",
            "user",
            "completed",
            "cancelled",
            "failed",
            "incomplete",
            "in_progress",
            "output_audio",
            "input_audio",
            "output_text",
            "input_text",
            "invalid_api_key",
            "model_not_found",
            "insufficient_quota",
            "invalid_request_error",
        ])
        .prop_map(|s| json!(s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS.to_vec()), inner), 0..6).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

fn event() -> impl Strategy<Value = String> {
    (
        prop::sample::select(TYPES.to_vec()),
        prop::collection::vec((prop::sample::select(FIELDS.to_vec()), value()), 0..8),
    )
        .prop_map(|(t, fields)| {
            let mut m = Map::new();
            for (k, v) in fields {
                m.insert(k.to_owned(), v);
            }
            m.insert("type".into(), json!(t));
            Value::Object(m).to_string()
        })
}

#[derive(Clone, Debug)]
enum Step {
    Frame(String),
    Bytes(Vec<u8>),
    Command(u8, u64),
    Close,
    Open,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => event().prop_map(Step::Frame),
        1 => prop::collection::vec(any::<u8>(), 0..128).prop_map(Step::Bytes),
        2 => (any::<u8>(), any::<u64>()).prop_map(|(c, n)| Step::Command(c, n)),
        1 => Just(Step::Close),
        1 => Just(Step::Open),
    ]
}

fn command(c: u8, n: u64) -> SessionCommand {
    let ids = ["item_A", "item_B", "call_1", "x"];
    let id = ids[(n % 4) as usize];
    match c % 9 {
        0 => SessionCommand::Audio(AudioChunk::new(
            vec![n as i16; (n % 700) as usize],
            [24_000, 16_000, 48_000, 0, 8_000][(n % 5) as usize],
        )),
        1 => SessionCommand::Text(UserText {
            text: "hi".into(),
            respond: n.is_multiple_of(2),
        }),
        2 => SessionCommand::ToolResult(ToolResult {
            call_id: id.into(),
            name: "f".into(),
            output: Ok(json!(n)),
            request_response: n.is_multiple_of(2),
        }),
        3 => SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: id.into(),
            played_ms: n,
            interrupted: !n.is_multiple_of(3),
        }),
        4 => SessionCommand::Control(ControlCommand::CommitInput),
        5 => SessionCommand::Control(ControlCommand::CancelResponse),
        6 => SessionCommand::Control(ControlCommand::CreateResponse),
        7 => SessionCommand::Control(ControlCommand::ActivityStart),
        _ => SessionCommand::Control(ControlCommand::ActivityEnd),
    }
}

fn new_protocol(manual: bool) -> OpenAiProtocol {
    let mut c = RealtimeConfig::new("gpt-realtime").api_key("sk-fuzz");
    if manual {
        c = c.turn_detection(TurnDetection::Manual);
    }
    let mut p = c.protocol(SessionSetup::default()).unwrap();
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    p.on_frame(
        WireFrame::Text(r#"{"type":"session.created","session":{}}"#.into()),
        &mut out,
    );
    p.on_frame(
        WireFrame::Text(r#"{"type":"session.updated","session":{}}"#.into()),
        &mut out,
    );
    p
}

fn check(out: &Outbox) {
    for e in &out.events {
        if let LiveEvent::ErrorEvent(e) = e {
            assert!(!e.error.message.contains("sk-fuzz"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, .. ProptestConfig::default() })]

    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut p = new_protocol(false);
        let mut out = Outbox::new();
        p.on_frame(WireFrame::Binary(bytes.clone().into()), &mut out);
        BYTE_INPUTS.fetch_add(1, Ordering::Relaxed);
        // random bytes are (almost) never a valid event: they must give a Protocol error
        if serde_json::from_slice::<Value>(&bytes).is_err() {
            let n = out.events.iter().filter(|e| matches!(e, LiveEvent::ErrorEvent(e) if e.error.kind == ErrorKind::Protocol)).count();
            prop_assert_eq!(n, 1);
        }
        check(&out);
    }

    fn random_event_sequences_never_panic(manual in any::<bool>(), steps in prop::collection::vec(step(), 1..40)) {
        let mut p = new_protocol(manual);
        for s in steps {
            let mut out = Outbox::new();
            match s {
                Step::Frame(f) => {
                    FRAMES.fetch_add(1, Ordering::Relaxed);
                    p.on_frame(WireFrame::Text(f.into()), &mut out);
                    let protocol_error = out.events.iter().any(|e| matches!(e, LiveEvent::ErrorEvent(e) if e.error.kind == ErrorKind::Protocol));
                    if !protocol_error {
                        DECODED.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Step::Bytes(b) => { FRAMES.fetch_add(1, Ordering::Relaxed); p.on_frame(WireFrame::Binary(b.into()), &mut out) }
                Step::Command(c, n) => p.on_command(command(c, n), &mut out),
                Step::Close => p.on_close(&mut out),
                Step::Open => p.on_open(true, &mut out),
            }
            check(&out);
            // everything the protocol sends is JSON with a type
            for f in &out.frames {
                let v: Value = serde_json::from_slice(f.as_bytes()).unwrap();
                prop_assert!(v["type"].is_string());
            }
        }
        let _ = p.is_idle();
    }
}

/// Runs both fuzzers in one test so the totals can be printed reliably.
#[test]
fn fuzz_totals() {
    arbitrary_bytes_never_panic();
    random_event_sequences_never_panic();
    println!(
        "fuzz: {} arbitrary byte frames + {} frames in 1500 random event/command sequences fed to on_frame ({} random-JSON frames accepted (decoded, or ignored as unknown types), the rest became Protocol errors), no panic",
        BYTE_INPUTS.load(Ordering::Relaxed),
        FRAMES.load(Ordering::Relaxed),
        DECODED.load(Ordering::Relaxed)
    );
}
