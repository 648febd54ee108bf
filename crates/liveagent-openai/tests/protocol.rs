//! The protocol state machine without a network: serialization (validated with the official
//! SDK models), decoding of the example server frames, barge-in, tools, history replay.
//!
//! Over 1000 lines on purpose: one state machine's tests, sharing one set of fixtures (a
//! ready protocol, feeding server frames, collecting events and frames) and read by section;
//! each further file here would be one more test binary to link on CI's two cores.

use std::sync::Arc;

use liveagent_core::{
    AudioChunk, ControlCommand, ErrorKind, LiveEvent, Outbox, PlaybackStopped, ProtocolSignal,
    RealtimeProtocol, ResponseStatus, SessionCommand, SessionSetup, ToolResult, ToolSchema,
    UserText, WireFrame,
};
use liveagent_openai::{
    AudioOutput, AzureConfig, Eagerness, InputConfig, MaxOutputTokens, NoiseReduction,
    OpenAiProtocol, Phase, RealtimeConfig, SemanticVad, ServerVad, TextOutput, ToolChoice,
    Transcription, TurnDetection, Voice,
};
use liveagent_testkit::{shared_dir, validate_lines, Protocol};
use serde_json::{json, Value};

fn setup() -> SessionSetup {
    SessionSetup {
        instructions: "You are a concise voice assistant.".into(),
        tools: vec![ToolSchema {
            name: "get_weather".into(),
            description: "Current weather for a city".into(),
            parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        }],
    }
}

fn protocol(config: RealtimeConfig) -> OpenAiProtocol {
    config.api_key("sk-test-secret").protocol(setup()).unwrap()
}

fn frames(out: &Outbox) -> Vec<Value> {
    out.frames
        .iter()
        .map(|f| match f {
            WireFrame::Text(t) => serde_json::from_str(t).unwrap(),
            WireFrame::Binary(_) => panic!("binary frame sent"),
        })
        .collect()
}

fn texts(out: &Outbox) -> Vec<String> {
    out.frames
        .iter()
        .map(|f| String::from_utf8(f.as_bytes().to_vec()).unwrap())
        .collect()
}

fn feed(p: &mut OpenAiProtocol, v: Value) -> Outbox {
    let mut out = Outbox::new();
    p.on_frame(WireFrame::Text(v.to_string().into()), &mut out);
    out
}

fn cmd(p: &mut OpenAiProtocol, c: SessionCommand) -> Outbox {
    let mut out = Outbox::new();
    p.on_command(c, &mut out);
    out
}

/// on_open + session.created + session.updated; returns everything the handshake produced.
fn handshake(p: &mut OpenAiProtocol, reconnect: bool) -> Outbox {
    let mut out = Outbox::new();
    p.on_open(reconnect, &mut out);
    assert!(
        out.frames.is_empty(),
        "nothing is sent before session.created"
    );
    let created = feed(
        p,
        json!({"type":"session.created","event_id":"e1","session":{"type":"realtime","id":"sess_1"}}),
    );
    assert!(created.signals.is_empty());
    assert_eq!(p.phase(), Phase::AwaitingUpdated);
    let updated = feed(
        p,
        json!({"type":"session.updated","event_id":"e2","session":{"type":"realtime"}}),
    );
    out.frames.extend(created.frames);
    out.events.extend(created.events);
    out.frames.extend(updated.frames);
    out.events.extend(updated.events);
    out.signals.extend(updated.signals);
    assert_eq!(p.phase(), Phase::Ready);
    out
}

fn errors(out: &Outbox) -> Vec<&liveagent_core::ErrorEvent> {
    out.events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ErrorEvent(e) => Some(e),
            _ => None,
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `ms` of 24 kHz PCM16 as base64.
fn audio_b64(ms: usize) -> String {
    b64(&vec![1u8; ms * 48])
}

fn response_created(id: &str) -> Value {
    json!({"type":"response.created","event_id":"e","response":{"object":"realtime.response","id":id,"status":"in_progress","output":[]}})
}

fn message_added(resp: &str, item: &str) -> Value {
    json!({"type":"response.output_item.added","event_id":"e","response_id":resp,"output_index":0,
           "item":{"id":item,"type":"message","object":"realtime.item","status":"in_progress","role":"assistant","content":[]}})
}

fn audio_delta(resp: &str, item: &str, ms: usize) -> Value {
    json!({"type":"response.output_audio.delta","event_id":"e","response_id":resp,"item_id":item,"output_index":0,"content_index":0,"delta":audio_b64(ms)})
}

fn transcript_done(resp: &str, item: &str, text: &str) -> Value {
    json!({"type":"response.output_audio_transcript.done","event_id":"e","response_id":resp,"item_id":item,"output_index":0,"content_index":0,"transcript":text})
}

fn response_done(id: &str, status: &str, output: Value) -> Value {
    json!({"type":"response.done","event_id":"e","response":{"object":"realtime.response","id":id,"status":status,"output":output}})
}

fn function_call_done(resp: &str, item: &str, call: &str, args: &str) -> Value {
    json!({"type":"response.function_call_arguments.done","event_id":"e","response_id":resp,"item_id":item,"output_index":0,"call_id":call,"name":"get_weather","arguments":args})
}

// ------------------------------------------------------------------------ serialization

fn config_variants() -> Vec<(&'static str, RealtimeConfig)> {
    vec![
        ("default", RealtimeConfig::new("gpt-realtime-2")),
        (
            "ballad fast",
            RealtimeConfig::new("gpt-realtime-2").output(AudioOutput::new("ballad").speed(1.2)),
        ),
        (
            "custom voice",
            RealtimeConfig::new("gpt-realtime").output(AudioOutput {
                voice: Voice::Custom {
                    id: "voice_123".into(),
                },
                speed: 1.0,
            }),
        ),
        (
            "text",
            RealtimeConfig::new("gpt-realtime").output(TextOutput),
        ),
        (
            "server vad",
            RealtimeConfig::new("gpt-realtime").input(InputConfig {
                turn_detection: TurnDetection::ServerVad(ServerVad {
                    threshold: 0.6,
                    prefix_padding_ms: 200,
                    silence_duration_ms: 400,
                    idle_timeout_ms: Some(6000),
                    create_response: true,
                    interrupt_response: false,
                }),
                transcription: Some(
                    Transcription::new("whisper-1")
                        .language("en")
                        .prompt("weather"),
                ),
                noise_reduction: Some(NoiseReduction::FarField),
            }),
        ),
        (
            "semantic low",
            RealtimeConfig::new("gpt-realtime").turn_detection(TurnDetection::SemanticVad(
                SemanticVad {
                    eagerness: Eagerness::Low,
                    ..Default::default()
                },
            )),
        ),
        (
            "manual",
            RealtimeConfig::new("gpt-realtime").input(InputConfig {
                turn_detection: TurnDetection::Manual,
                transcription: None,
                noise_reduction: Some(NoiseReduction::NearField),
            }),
        ),
        (
            "tool choice function, max tokens",
            RealtimeConfig::new("gpt-realtime")
                .tool_choice(ToolChoice::Function("get_weather".into()))
                .max_output_tokens(1024),
        ),
        (
            "tool choice required, inf",
            RealtimeConfig::new("gpt-realtime")
                .tool_choice(ToolChoice::Required)
                .max_output_tokens(MaxOutputTokens::Inf),
        ),
        (
            "tool choice none",
            RealtimeConfig::new("gpt-realtime").tool_choice(ToolChoice::None),
        ),
        (
            "azure deployment",
            RealtimeConfig::new("my-deployment")
                .base_url("https://res.openai.azure.com/openai")
                .azure(
                    AzureConfig::new()
                        .api_version("2025-04-01-preview")
                        .deployment("my-deployment"),
                ),
        ),
    ]
}

#[test]
fn session_update_shapes() {
    let p = protocol(RealtimeConfig::new("gpt-realtime-2"));
    let v: Value = serde_json::from_str(&p.session_update().to_json()).unwrap();
    assert_eq!(v["type"], "session.update");
    let s = &v["session"];
    assert_eq!(s["type"], "realtime");
    assert_eq!(s["model"], "gpt-realtime-2");
    assert_eq!(s["output_modalities"], json!(["audio"]));
    assert_eq!(
        s["audio"]["input"]["format"],
        json!({"type":"audio/pcm","rate":24000})
    );
    assert_eq!(
        s["audio"]["output"]["format"],
        json!({"type":"audio/pcm","rate":24000})
    );
    assert_eq!(
        s["audio"]["input"]["turn_detection"],
        json!({"type":"semantic_vad","eagerness":"auto","create_response":true,"interrupt_response":true})
    );
    assert_eq!(s["audio"]["input"]["noise_reduction"], Value::Null);
    assert!(s["audio"]["input"]
        .as_object()
        .unwrap()
        .contains_key("noise_reduction"));
    assert_eq!(
        s["audio"]["input"]["transcription"]["model"],
        "gpt-4o-mini-transcribe"
    );
    assert_eq!(s["audio"]["output"]["voice"], "marin");
    assert_eq!(
        s["tools"][0],
        json!({"type":"function","name":"get_weather","description":"Current weather for a city",
               "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}})
    );
    assert!(s.get("tool_choice").is_none(), "unset options are absent");
    assert!(s.get("max_output_tokens").is_none());

    let text = protocol(RealtimeConfig::new("gpt-realtime").output(TextOutput));
    let v: Value = serde_json::from_str(&text.session_update().to_json()).unwrap();
    assert_eq!(v["session"]["output_modalities"], json!(["text"]));
    assert!(v["session"]["audio"].get("output").is_none());

    let manual =
        protocol(RealtimeConfig::new("gpt-realtime").turn_detection(TurnDetection::Manual));
    let v: Value = serde_json::from_str(&manual.session_update().to_json()).unwrap();
    let input = v["session"]["audio"]["input"].as_object().unwrap();
    assert_eq!(
        input["turn_detection"],
        Value::Null,
        "manual turns serialize as null"
    );

    let forced = protocol(
        RealtimeConfig::new("gpt-realtime")
            .tool_choice(ToolChoice::Function("get_weather".into()))
            .max_output_tokens(MaxOutputTokens::Inf),
    );
    let v: Value = serde_json::from_str(&forced.session_update().to_json()).unwrap();
    assert_eq!(
        v["session"]["tool_choice"],
        json!({"type":"function","name":"get_weather"})
    );
    assert_eq!(v["session"]["max_output_tokens"], "inf");
}

/// Drives one protocol through every kind of client frame it can emit and returns them.
fn every_client_frame() -> Vec<String> {
    let mut all = Vec::new();
    let mut p = protocol(RealtimeConfig::new("gpt-realtime").turn_detection(TurnDetection::Manual));
    all.extend(texts(&handshake(&mut p, false)));
    // audio (24 kHz and resampled 16 kHz), commit, response, clear
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(vec![5i16; 480], 24_000)),
    )));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(vec![5i16; 320], 16_000)),
    )));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::CommitInput),
    )));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::CreateResponse),
    )));
    feed(&mut p, response_created("resp_1"));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::CancelResponse),
    )));
    feed(&mut p, response_done("resp_1", "cancelled", json!([])));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::ClearInput),
    )));
    // text
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Text(UserText {
            text: "What's the weather in Paris?".into(),
            respond: true,
        }),
    )));
    // a response with audio and a tool call
    feed(&mut p, response_created("resp_2"));
    feed(&mut p, message_added("resp_2", "item_A"));
    feed(&mut p, audio_delta("resp_2", "item_A", 500));
    feed(
        &mut p,
        transcript_done("resp_2", "item_A", "Let me check the weather for you."),
    );
    feed(
        &mut p,
        function_call_done("resp_2", "item_F", "call_1", r#"{"city":"Paris"}"#),
    );
    feed(&mut p, response_done("resp_2", "completed", json!([])));
    // the user interrupts playback; the player reports 200 ms heard
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: "item_A".into(),
            played_ms: 200,
            interrupted: true,
        }),
    )));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::ToolResult(ToolResult {
            call_id: "call_1".into(),
            name: "get_weather".into(),
            output: Ok(json!({"temp_c": 21})),
            request_response: true,
        }),
    )));
    // push-to-talk markers
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::ActivityStart),
    )));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(vec![9i16; 240], 24_000)),
    )));
    all.extend(texts(&cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::ActivityEnd),
    )));
    // reconnect: session.update + history replay (user text, assistant, call, output)
    let mut out = Outbox::new();
    p.on_close(&mut out);
    all.extend(texts(&handshake(&mut p, true)));
    all
}

#[test]
fn every_client_frame_passes_the_official_validator() {
    let mut lines: Vec<String> = every_client_frame();
    let types: std::collections::BTreeSet<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for t in [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.truncate",
        "response.create",
        "response.cancel",
    ] {
        assert!(types.contains(t), "{t} not emitted: {types:?}");
    }
    for (name, config) in config_variants() {
        let p = protocol(config);
        let update = p.session_update().to_json();
        assert!(update.contains(r#""type":"realtime""#), "{name}");
        lines.push(update);
    }
    let lines: Vec<String> = lines.into_iter().map(|l| format!("> {l}")).collect();
    let report = validate_lines(&lines, Protocol::OpenAi);
    let ok = report.lines().filter(|l| l.starts_with("OK")).count();
    println!("validator: {ok} of {} client frames OK", lines.len());
    assert_eq!(ok, lines.len(), "{report}");
}

#[test]
fn config_validation() {
    let bad = [
        RealtimeConfig::new(""),
        RealtimeConfig::new("m").output(AudioOutput::new("ballad").speed(2.0)),
        RealtimeConfig::new("m").max_output_tokens(0),
        RealtimeConfig::new("m").max_output_tokens(5000),
        RealtimeConfig::new("m").base_url("ftp://x"),
        RealtimeConfig::new("m").base_url("wss://"),
        RealtimeConfig::new("m").turn_detection(TurnDetection::ServerVad(ServerVad {
            threshold: 1.5,
            ..Default::default()
        })),
    ];
    for c in bad {
        let err = c
            .clone()
            .api_key("k")
            .protocol(SessionSetup::default())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config, "{c:?}");
    }
}

#[test]
fn connect_request_url_headers_and_redaction() {
    let p = protocol(RealtimeConfig::new("gpt-realtime-2"));
    let req = p.connect_request().unwrap();
    assert_eq!(
        req.url,
        "wss://api.openai.com/v1/realtime?model=gpt-realtime-2"
    );
    assert_eq!(
        req.headers,
        vec![(
            "Authorization".to_owned(),
            "Bearer sk-test-secret".to_owned()
        )]
    );
    assert!(!req
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("openai-beta")));
    let dbg = format!("{req:?} {p:?}");
    assert!(!dbg.contains("sk-test-secret"), "{dbg}");

    let local = protocol(RealtimeConfig::new("gpt realtime").base_url("http://127.0.0.1:9/v1/"));
    assert_eq!(
        local.connect_request().unwrap().url,
        "ws://127.0.0.1:9/v1/realtime?model=gpt%20realtime"
    );

    let azure = protocol(
        RealtimeConfig::new("dep")
            .base_url("wss://res.openai.azure.com/openai")
            .azure(
                AzureConfig::new()
                    .api_version("2025-04-01-preview")
                    .deployment("dep"),
            ),
    );
    let req = azure.connect_request().unwrap();
    assert_eq!(
        req.url,
        "wss://res.openai.azure.com/openai/realtime?api-version=2025-04-01-preview&deployment=dep"
    );
    assert_eq!(
        req.headers[0],
        ("api-key".to_owned(), "sk-test-secret".to_owned())
    );

    let entra = protocol(
        RealtimeConfig::new("dep")
            .base_url("wss://res.openai.azure.com/openai/v1")
            .azure(AzureConfig::new().bearer()),
    );
    let req = entra.connect_request().unwrap();
    assert_eq!(
        req.url,
        "wss://res.openai.azure.com/openai/v1/realtime?model=dep"
    );
    assert_eq!(req.headers[0].0, "Authorization");
    assert_eq!(
        p.max_connection_age(),
        Some(std::time::Duration::from_secs(55 * 60))
    );
}

// ------------------------------------------------------------------------ decoding

fn example_server_frames() -> Vec<String> {
    let dir = shared_dir().join("protocols");
    let mut frames = Vec::new();
    let jsonl = std::fs::read_to_string(dir.join("examples/openai_ga.jsonl")).unwrap();
    frames.extend(
        jsonl
            .lines()
            .filter_map(|l| l.strip_prefix("< "))
            .map(str::to_owned),
    );
    let md = std::fs::read_to_string(dir.join("openai-realtime.md")).unwrap();
    for block in md.split("```json\n").skip(1) {
        let body = block.split("```").next().unwrap();
        let v: Value = serde_json::from_str(body).unwrap();
        let t = v["type"].as_str().unwrap();
        // server events: everything that is not one of the 11 client event types
        let client = [
            "session.update",
            "input_audio_buffer.append",
            "input_audio_buffer.commit",
            "input_audio_buffer.clear",
            "conversation.item.create",
            "conversation.item.retrieve",
            "conversation.item.truncate",
            "conversation.item.delete",
            "response.create",
            "response.cancel",
            "output_audio_buffer.clear",
        ];
        if !client.contains(&t) {
            frames.push(v.to_string());
        }
    }
    frames
}

#[test]
fn decodes_every_example_server_frame() {
    let frames = example_server_frames();
    assert!(frames.len() > 40, "{}", frames.len());
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    let mut all = Outbox::new();
    for f in &frames {
        let mut out = Outbox::new();
        p.on_frame(WireFrame::Text(f.clone().into()), &mut out);
        for e in errors(&out) {
            // the examples contain exactly one `error` event (invalid_request_error), which
            // must map to a non-fatal InvalidRequest; nothing may be a decoding error
            assert_eq!(
                e.error.kind,
                ErrorKind::InvalidRequest,
                "{f}: {:?}",
                e.error
            );
            assert!(!e.fatal);
        }
        all.events.extend(out.events);
        all.signals.extend(out.signals);
    }
    let kinds: Vec<_> = all
        .events
        .iter()
        .map(|e| format!("{:?}", e.kind()))
        .collect();
    for k in [
        "SessionOpened",
        "SessionUpdated",
        "SpeechStarted",
        "SpeechStopped",
        "InputTranscriptChunk",
        "ResponseStarted",
        "SynthesizedAudio",
        "OutputTranscriptChunk",
        "ModelMessageChunk",
        "ResponseDone",
        "ErrorEvent",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    assert!(all
        .signals
        .contains(&ProtocolSignal::Ready { resumed: false }));
    let usage = all
        .events
        .iter()
        .find_map(|e| match e {
            LiveEvent::ResponseDone(d) if d.usage.is_some() => d.usage.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens, usage.total_tokens),
        (132, 121, 253)
    );
    assert_eq!(usage.output_audio_tokens, Some(91));
    assert_eq!(usage.cached_tokens, Some(64));
    let cancelled = all.events.iter().find_map(|e| match e {
        LiveEvent::ResponseDone(d) if d.status == ResponseStatus::Cancelled => Some(d.clone()),
        _ => None,
    });
    assert_eq!(cancelled.unwrap().reason.as_deref(), Some("turn_detected"));
}

#[test]
fn audio_delta_becomes_pcm_with_ids() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    feed(&mut p, response_created("resp_1"));
    let pcm: Vec<u8> = [1i16, -2, 300, -32768]
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let out = feed(
        &mut p,
        json!({"type":"response.output_audio.delta","event_id":"e","response_id":"resp_1","item_id":"item_A","output_index":0,"content_index":0,"delta":b64(&pcm)}),
    );
    let LiveEvent::SynthesizedAudio(a) = &out.events[0] else {
        panic!("{:?}", out.events)
    };
    assert_eq!(&*a.item_id, "item_A");
    assert_eq!(a.response_id.as_deref(), Some("resp_1"));
    assert_eq!(a.audio.sample_rate, 24_000);
    assert_eq!(&a.audio.samples[..], &[1, -2, 300, -32768]);
    // an odd byte is carried to the next delta
    let out = feed(
        &mut p,
        json!({"type":"response.output_audio.delta","event_id":"e","response_id":"resp_1","item_id":"item_A","output_index":0,"content_index":0,"delta":b64(&[5, 0, 7])}),
    );
    let LiveEvent::SynthesizedAudio(a) = &out.events[0] else {
        panic!()
    };
    assert_eq!(&a.audio.samples[..], &[5]);
    let out = feed(
        &mut p,
        json!({"type":"response.output_audio.delta","event_id":"e","response_id":"resp_1","item_id":"item_A","output_index":0,"content_index":0,"delta":b64(&[1])}),
    );
    let LiveEvent::SynthesizedAudio(a) = &out.events[0] else {
        panic!()
    };
    assert_eq!(&a.audio.samples[..], &[7 + 256]);
}

#[test]
fn malformed_frames_become_protocol_errors() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    for bad in [
        "not json".to_owned(),
        "{}".to_owned(),
        r#"{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"!!notbase64"}"#.to_owned(),
        r#"{"type":"response.output_audio.delta"}"#.to_owned(),
        r#"{"type":"response.created","response":5}"#.to_owned(),
    ] {
        let mut out = Outbox::new();
        p.on_frame(WireFrame::Text(bad.clone().into()), &mut out);
        let errs = errors(&out);
        assert_eq!(errs.len(), 1, "{bad}: {:?}", out.events);
        assert_eq!(errs[0].error.kind, ErrorKind::Protocol, "{bad}");
        assert!(out.signals.is_empty());
    }
    // unknown events are ignored quietly
    let out = feed(
        &mut p,
        json!({"type":"mcp_list_tools.in_progress","event_id":"e","item_id":"x"}),
    );
    assert!(out.is_empty());
    let mut out = Outbox::new();
    p.on_frame(
        WireFrame::Binary(bytes::Bytes::from_static(b"\xff\xfe")),
        &mut out,
    );
    assert_eq!(errors(&out).len(), 1);
}

#[test]
fn errors_are_typed_and_fatal_ones_stop_the_session() {
    let cases = [
        (
            "invalid_request_error",
            "invalid_api_key",
            ErrorKind::Auth,
            true,
        ),
        (
            "invalid_request_error",
            "model_not_found",
            ErrorKind::NotFound,
            true,
        ),
        (
            "insufficient_quota",
            "insufficient_quota",
            ErrorKind::Quota,
            true,
        ),
        (
            "invalid_request_error",
            "invalid_value",
            ErrorKind::InvalidRequest,
            false,
        ),
        ("server_error", "server_error", ErrorKind::Provider, false),
        (
            "invalid_request_error",
            "rate_limit_exceeded",
            ErrorKind::Provider,
            false,
        ),
    ];
    for (kind, code, expect, fatal) in cases {
        let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
        handshake(&mut p, false);
        let out = feed(
            &mut p,
            json!({"type":"error","event_id":"e","error":{"type":kind,"code":code,"message":"Incorrect API key provided: sk-test-secret"}}),
        );
        // fatal errors go to the runtime as a signal (it publishes the fatal ErrorEvent and
        // SessionClosed); the others are published as non-fatal ErrorEvents
        let err = match (&errors(&out)[..], &out.signals[..]) {
            ([e], []) if !fatal => {
                assert!(!e.fatal);
                e.error.clone()
            }
            ([], [ProtocolSignal::Fatal(e)]) if fatal => e.clone(),
            other => panic!("{code}: {other:?}"),
        };
        assert_eq!(err.kind, expect, "{code}");
        assert_eq!(err.code.as_deref(), Some(code));
        assert!(!err.message.contains("sk-test-secret"), "key redacted");
    }
    // An error about the session.update during the handshake is a fatal configuration error.
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    let created = feed(
        &mut p,
        json!({"type":"session.created","event_id":"e","session":{"type":"realtime"}}),
    );
    let id = frames(&created)[0]["event_id"].as_str().unwrap().to_owned();
    let out = feed(
        &mut p,
        json!({"type":"error","event_id":"e","error":{"type":"invalid_request_error","code":"invalid_value","message":"bad voice","param":"session.audio.output.voice","event_id":id}}),
    );
    assert!(matches!(&out.signals[..], [ProtocolSignal::Fatal(e)] if e.kind == ErrorKind::Config));
}

// ------------------------------------------------------------------------ behaviour

#[test]
fn handshake_publishes_once_and_reconnect_replays_history() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    let first = handshake(&mut p, false);
    let f = frames(&first);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["type"], "session.update");
    let kinds: Vec<_> = first.events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            liveagent_core::EventKind::SessionOpened,
            liveagent_core::EventKind::SessionUpdated
        ]
    );
    assert_eq!(
        first.signals,
        vec![ProtocolSignal::Ready { resumed: false }]
    );

    // A spoken user turn (with transcript), a typed one, an interrupted answer, a tool call.
    feed(
        &mut p,
        json!({"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":0,"item_id":"item_U1"}),
    );
    feed(
        &mut p,
        json!({"type":"input_audio_buffer.committed","event_id":"e","item_id":"item_U1"}),
    );
    feed(&mut p, response_created("resp_1"));
    feed(&mut p, message_added("resp_1", "item_A1"));
    feed(&mut p, audio_delta("resp_1", "item_A1", 2000));
    feed(
        &mut p,
        transcript_done("resp_1", "item_A1", "It is twenty one degrees in Paris"),
    );
    // the transcription arrives late, after the answer: it still belongs before it
    feed(
        &mut p,
        json!({"type":"conversation.item.input_audio_transcription.completed","event_id":"e","item_id":"item_U1","content_index":0,"transcript":"Weather in Paris?"}),
    );
    feed(&mut p, response_done("resp_1", "completed", json!([])));
    cmd(
        &mut p,
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: "item_A1".into(),
            played_ms: 1000,
            interrupted: true,
        }),
    );
    cmd(
        &mut p,
        SessionCommand::Text(UserText {
            text: "And in Rome?".into(),
            respond: true,
        }),
    );
    feed(&mut p, response_created("resp_2"));
    feed(
        &mut p,
        function_call_done("resp_2", "item_F", "call_9", r#"{"city":"Rome"}"#),
    );
    let done = feed(&mut p, response_done("resp_2", "completed", json!([])));
    assert!(done
        .events
        .iter()
        .any(|e| matches!(e, LiveEvent::ToolCallRequested(_))));
    cmd(
        &mut p,
        SessionCommand::ToolResult(ToolResult {
            call_id: "call_9".into(),
            name: "get_weather".into(),
            output: Ok(json!("sunny")),
            request_response: false,
        }),
    );

    let mut out = Outbox::new();
    p.on_close(&mut out);
    assert!(out.events.is_empty(), "no response was running");
    assert_eq!(p.phase(), Phase::Closed);

    let second = handshake(&mut p, true);
    assert!(
        second.events.is_empty(),
        "nothing published again: {:?}",
        second.events
    );
    assert_eq!(
        second.signals,
        vec![ProtocolSignal::Ready { resumed: false }]
    );
    let f = frames(&second);
    assert_eq!(f[0]["type"], "session.update");
    let items: Vec<Value> = f[1..]
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "conversation.item.create");
            v["item"].clone()
        })
        .collect();
    assert_eq!(
        items,
        vec![
            json!({"type":"message","role":"user","content":[{"type":"input_text","text":"Weather in Paris?"}]}),
            json!({"type":"message","role":"assistant","content":[{"type":"output_text","text":"It is twenty one"}]}),
            json!({"type":"message","role":"user","content":[{"type":"input_text","text":"And in Rome?"}]}),
            json!({"type":"function_call","call_id":"call_9","name":"get_weather","arguments":"{\"city\":\"Rome\"}"}),
            json!({"type":"function_call_output","call_id":"call_9","output":"sunny"}),
        ]
    );
    // The replayed items' server echoes publish nothing.
    let echo = feed(
        &mut p,
        json!({"type":"conversation.item.added","event_id":"e","item":{"id":"item_X","type":"message","role":"user","content":[{"type":"input_text","text":"And in Rome?"}]}}),
    );
    assert!(echo.is_empty());
}

#[test]
fn barge_in_interrupts_drops_late_audio_and_truncates_to_what_was_heard() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    feed(&mut p, response_created("resp_1"));
    feed(&mut p, message_added("resp_1", "item_A"));
    feed(&mut p, audio_delta("resp_1", "item_A", 1000));
    feed(&mut p, audio_delta("resp_1", "item_A", 500));
    let out = feed(
        &mut p,
        json!({"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":900,"item_id":"item_U2"}),
    );
    let kinds: Vec<_> = out.events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            liveagent_core::EventKind::SpeechStarted,
            liveagent_core::EventKind::Interrupted
        ]
    );
    let LiveEvent::Interrupted(i) = &out.events[1] else {
        panic!()
    };
    assert_eq!(i.item_id.as_deref(), Some("item_A"));
    assert_eq!(i.response_id.as_deref(), Some("resp_1"));
    assert!(!p.is_idle());
    // audio the server sent before it saw the cancel is not played
    let late = feed(&mut p, audio_delta("resp_1", "item_A", 100));
    assert!(late.events.is_empty());
    feed(
        &mut p,
        json!({"type":"response.done","event_id":"e","response":{"id":"resp_1","status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"},"output":[]}}),
    );
    // the player heard more than was received (clock skew): clamped to the 1500 ms received
    let out = cmd(
        &mut p,
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: "item_A".into(),
            played_ms: 4000,
            interrupted: true,
        }),
    );
    assert_eq!(
        frames(&out),
        vec![
            json!({"type":"conversation.item.truncate","item_id":"item_A","content_index":0,"audio_end_ms":1500})
        ]
    );
    // a second speech start with nothing playing does not interrupt again
    let out = feed(
        &mut p,
        json!({"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":5000,"item_id":"item_U3"}),
    );
    assert_eq!(out.events.len(), 1);
    // a played-out item needs no truncation, and an unknown one is ignored
    let out = cmd(
        &mut p,
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: "item_zzz".into(),
            played_ms: 10,
            interrupted: true,
        }),
    );
    assert!(out.is_empty());
}

#[test]
fn played_ms_below_received_is_sent_as_is() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    feed(&mut p, response_created("r"));
    feed(&mut p, audio_delta("r", "item_A", 3000));
    feed(
        &mut p,
        json!({"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":1,"item_id":"u"}),
    );
    let out = cmd(
        &mut p,
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: "item_A".into(),
            played_ms: 1234,
            interrupted: true,
        }),
    );
    assert_eq!(frames(&out)[0]["audio_end_ms"], 1234);
}

#[test]
fn no_interrupt_when_turn_detection_does_not_interrupt() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime").turn_detection(
        TurnDetection::ServerVad(ServerVad {
            interrupt_response: false,
            ..Default::default()
        }),
    ));
    handshake(&mut p, false);
    feed(&mut p, response_created("r"));
    feed(&mut p, audio_delta("r", "item_A", 300));
    let out = feed(
        &mut p,
        json!({"type":"input_audio_buffer.speech_started","event_id":"e","audio_start_ms":1,"item_id":"u"}),
    );
    assert_eq!(out.events.len(), 1, "only SpeechStarted: {:?}", out.events);
}

#[test]
fn tool_calls_come_together_once_per_response_and_outputs_go_out_once() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    feed(&mut p, response_created("resp_3"));
    feed(
        &mut p,
        json!({"type":"response.output_item.added","event_id":"e","response_id":"resp_3","output_index":0,"item":{"id":"item_F1","type":"function_call","status":"in_progress","name":"get_weather","call_id":"call_a","arguments":""}}),
    );
    let out = feed(
        &mut p,
        function_call_done("resp_3", "item_F1", "call_a", r#"{"city":"Paris"}"#),
    );
    assert!(out.events.is_empty(), "nothing before response.done");
    // a second call appears only in response.done's output, with malformed arguments
    let out = feed(
        &mut p,
        response_done(
            "resp_3",
            "completed",
            json!([
                {"id":"item_F1","type":"function_call","status":"completed","name":"get_weather","call_id":"call_a","arguments":"{\"city\":\"Paris\"}"},
                {"id":"item_F2","type":"function_call","status":"completed","name":"get_time","call_id":"call_b","arguments":"{not json"}
            ]),
        ),
    );
    let calls: Vec<_> = out
        .events
        .iter()
        .filter_map(|e| match e {
            LiveEvent::ToolCallRequested(r) => Some(r.calls.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "one ToolCallRequested per response");
    let calls = &calls[0];
    assert_eq!(calls.len(), 2);
    assert_eq!(&*calls[0].call_id, "call_a");
    assert_eq!(calls[0].arguments, json!({"city":"Paris"}));
    assert_eq!(calls[0].response_id.as_deref(), Some("resp_3"));
    assert_eq!(&*calls[1].name, "get_time");
    assert_eq!(calls[1].arguments, json!("{not json"));
    assert!(!p.is_idle(), "waiting for tool outputs");

    let result = |id: &str, last: bool| {
        SessionCommand::ToolResult(ToolResult {
            call_id: id.into(),
            name: "get_weather".into(),
            output: if last {
                Err("bad arguments".into())
            } else {
                Ok(json!({"temp_c":21}))
            },
            request_response: last,
        })
    };
    let out = cmd(&mut p, result("call_a", false));
    assert_eq!(
        frames(&out),
        vec![
            json!({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"call_a","output":"{\"temp_c\":21}"}})
        ]
    );
    let out = cmd(&mut p, result("call_b", true));
    let f = frames(&out);
    assert_eq!(f[0]["item"]["output"], r#"{"error":"bad arguments"}"#);
    assert_eq!(f[1], json!({"type":"response.create"}));
    // duplicates are ignored; unknown calls are reported, not sent
    assert!(cmd(&mut p, result("call_a", true)).is_empty());
    let out = cmd(&mut p, result("call_unknown", true));
    assert!(out.frames.is_empty());
    assert_eq!(errors(&out)[0].error.kind, ErrorKind::Tool);
}

#[test]
fn cancelled_responses_do_not_run_their_calls() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    feed(&mut p, response_created("r"));
    feed(&mut p, function_call_done("r", "item_F", "call_x", "{}"));
    let out = feed(&mut p, response_done("r", "cancelled", json!([])));
    assert!(!out
        .events
        .iter()
        .any(|e| matches!(e, LiveEvent::ToolCallRequested(_))));
    let mut close = Outbox::new();
    p.on_close(&mut close);
    let f = frames(&handshake(&mut p, true));
    assert_eq!(f.len(), 1, "the dropped call is not replayed: {f:?}");
}

#[test]
fn connection_loss_mid_response_ends_it_and_results_go_out_once_after_reconnect() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    cmd(
        &mut p,
        SessionCommand::Text(UserText {
            text: "Weather in Oslo?".into(),
            respond: true,
        }),
    );
    feed(&mut p, response_created("r1"));
    feed(&mut p, message_added("r1", "item_A"));
    feed(
        &mut p,
        json!({"type":"response.output_audio_transcript.delta","event_id":"e","response_id":"r1","item_id":"item_A","output_index":0,"content_index":0,"delta":"Checking Oslo"}),
    );
    feed(
        &mut p,
        function_call_done("r1", "item_F", "call_o", r#"{"city":"Oslo"}"#),
    );
    let mut out = Outbox::new();
    p.on_close(&mut out);
    let done = out
        .events
        .iter()
        .find_map(|e| match e {
            LiveEvent::ResponseDone(d) => Some((**d).clone()),
            _ => None,
        })
        .expect("ResponseDone on loss");
    assert_eq!(done.status, ResponseStatus::Failed);
    assert_eq!(done.reason.as_deref(), Some("connection lost"));
    assert!(out
        .events
        .iter()
        .any(|e| matches!(e, LiveEvent::ToolCallRequested(r) if &*r.calls[0].call_id == "call_o")));

    let f = frames(&handshake(&mut p, true));
    let types: Vec<_> = f[1..]
        .iter()
        .map(|v| v["item"]["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, vec!["message", "message", "function_call"]);
    assert_eq!(
        f[2]["item"]["content"][0]["text"], "Checking Oslo",
        "partial answer kept"
    );

    let result = SessionCommand::ToolResult(ToolResult {
        call_id: "call_o".into(),
        name: "get_weather".into(),
        output: Ok(json!("cold")),
        request_response: true,
    });
    let out = cmd(&mut p, result.clone());
    assert_eq!(frames(&out).len(), 2, "output + response.create");
    assert!(cmd(&mut p, result).is_empty(), "sent exactly once");
}

#[test]
fn response_create_waits_for_the_running_response() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    feed(&mut p, response_created("r1"));
    let out = cmd(
        &mut p,
        SessionCommand::Text(UserText {
            text: "hello".into(),
            respond: true,
        }),
    );
    assert_eq!(frames(&out).len(), 1, "item only, response deferred");
    let out = feed(&mut p, response_done("r1", "completed", json!([])));
    assert_eq!(frames(&out), vec![json!({"type":"response.create"})]);
    assert!(!p.is_idle());
    feed(&mut p, response_created("r2"));
    feed(&mut p, response_done("r2", "completed", json!([])));
    assert!(p.is_idle());
}

#[test]
fn manual_turns_commit_and_respond() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime").turn_detection(TurnDetection::Manual));
    handshake(&mut p, false);
    assert!(
        cmd(&mut p, SessionCommand::Control(ControlCommand::CommitInput)).is_empty(),
        "empty buffer"
    );
    let out = cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::ActivityStart),
    );
    assert_eq!(
        frames(&out),
        vec![json!({"type":"input_audio_buffer.clear"})]
    );
    let out = cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(Arc::from(vec![100i16; 480]), 24_000)),
    );
    let f = frames(&out);
    assert_eq!(f[0]["type"], "input_audio_buffer.append");
    let audio = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(f[0]["audio"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(audio.len(), 960);
    let out = cmd(&mut p, SessionCommand::Control(ControlCommand::ActivityEnd));
    assert_eq!(
        frames(&out),
        vec![
            json!({"type":"input_audio_buffer.commit"}),
            json!({"type":"response.create"})
        ]
    );
    // 16 kHz audio is resampled to 24 kHz
    let out = cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(vec![100i16; 1600], 16_000)),
    );
    let bytes: usize = frames(&out)
        .iter()
        .map(|f| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(f["audio"].as_str().unwrap())
                .unwrap()
                .len()
        })
        .sum();
    assert!((4796..=4800).contains(&bytes), "{bytes}");
    let out = cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(vec![1i16; 10], 0)),
    );
    assert_eq!(errors(&out)[0].error.kind, ErrorKind::Audio);
}

#[test]
fn text_output_maps_to_model_message_chunks() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime").output(TextOutput));
    assert!(!liveagent_core::RealtimeConfig::audio_output(
        &RealtimeConfig::new("x").output(TextOutput)
    ));
    handshake(&mut p, false);
    feed(&mut p, response_created("r"));
    let out = feed(
        &mut p,
        json!({"type":"response.output_text.delta","event_id":"e","response_id":"r","item_id":"item_T","output_index":0,"content_index":0,"delta":"Hel"}),
    );
    let LiveEvent::ModelMessageChunk(m) = &out.events[0] else {
        panic!()
    };
    assert_eq!((&*m.item_id, &*m.text), ("item_T", "Hel"));
    feed(
        &mut p,
        json!({"type":"response.output_text.done","event_id":"e","response_id":"r","item_id":"item_T","output_index":0,"content_index":0,"text":"Hello."}),
    );
    assert_eq!(
        p.history().replay()[0],
        liveagent_openai::wire::Item::assistant_text("Hello.")
    );
}

#[test]
fn open_without_close_still_ends_the_running_response() {
    let mut p = protocol(RealtimeConfig::new("gpt-realtime"));
    handshake(&mut p, false);
    feed(&mut p, response_created("r"));
    let mut out = Outbox::new();
    p.on_open(true, &mut out);
    assert!(out.events.iter().any(
        |e| matches!(e, LiveEvent::ResponseDone(d) if d.reason.as_deref() == Some("connection lost"))
    ));
    assert!(out.frames.is_empty());
    assert_eq!(p.phase(), Phase::AwaitingCreated);
}
