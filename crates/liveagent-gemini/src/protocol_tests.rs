//! Unit tests of the protocol state machine: every client frame it emits passes the official
//! validator; server frames map to the right events; resumption and history replay.
//!
//! Over 1000 lines on purpose: one state machine's unit tests, sharing one set of fixtures
//! (`proto`, `connect`, `ready`, `server`, `cmd`, `events`) and read by section (frames,
//! turns and tools, resumption and replay, decoding); splitting it would scatter those
//! fixtures or turn them into a crate-wide test API.

use std::sync::Arc;

use liveagent_core::*;
use liveagent_testkit::{validate_lines, Protocol};
use serde_json::{json, Value};

use crate::config::RealtimeConfig;
use crate::config::*;
use crate::protocol::{GeminiProtocol, Phase};

fn setup_with_tools() -> SessionSetup {
    SessionSetup {
        instructions: "You are a helpful voice assistant.".into(),
        tools: vec![ToolSchema {
            name: "get_weather".into(),
            description: "Current weather for a city".into(),
            parameters: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"]
            }),
        }],
    }
}

fn base() -> RealtimeConfig {
    RealtimeConfig::new("gemini-3.1-flash-live-preview")
        .base_url("ws://127.0.0.1:9")
        .api_key("test-key-123")
}

fn proto(config: RealtimeConfig) -> GeminiProtocol {
    GeminiProtocol::new(config, setup_with_tools()).unwrap()
}

fn frames(out: &Outbox) -> Vec<String> {
    out.frames
        .iter()
        .map(|f| String::from_utf8(f.as_bytes().to_vec()).unwrap())
        .collect()
}

fn json_frames(out: &Outbox) -> Vec<Value> {
    frames(out)
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect()
}

fn validate(all: &[String]) {
    let lines: Vec<String> = all.iter().map(|f| format!("> {f}")).collect();
    validate_lines(&lines, Protocol::Gemini);
}

fn server(p: &mut GeminiProtocol, frame: Value) -> Outbox {
    let mut out = Outbox::new();
    p.on_frame(WireFrame::Text(frame.to_string().into()), &mut out);
    out
}

fn cmd(p: &mut GeminiProtocol, c: SessionCommand) -> Outbox {
    let mut out = Outbox::new();
    p.on_command(c, &mut out);
    out
}

/// Opens and completes the handshake; returns the on_open outbox and the setupComplete one.
fn connect(p: &mut GeminiProtocol, reconnect: bool) -> (Outbox, Outbox) {
    let mut open = Outbox::new();
    p.on_open(reconnect, &mut open);
    let done = server(p, json!({"setupComplete": {}}));
    (open, done)
}

fn ready(p: &mut GeminiProtocol) {
    let (_, done) = connect(p, false);
    assert!(done
        .signals
        .contains(&ProtocolSignal::Ready { resumed: false }));
}

fn events<T: Event>(out: &Outbox) -> Vec<T> {
    out.events
        .iter()
        .filter_map(|e| T::from_event_ref(e).cloned())
        .collect()
}

fn close(p: &mut GeminiProtocol) -> Outbox {
    let mut out = Outbox::new();
    p.on_close(&mut out);
    out
}

fn audio_b64(samples: &[i16]) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn tool_result(id: &str, value: Value, last: bool) -> SessionCommand {
    SessionCommand::ToolResult(ToolResult {
        call_id: id.into(),
        name: "get_weather".into(),
        output: Ok(value),
        request_response: last,
    })
}

// ------------------------------------------------------------------------------------------
// client frames
// ------------------------------------------------------------------------------------------

#[test]
fn setup_frames_for_every_config_variant_pass_the_validator() {
    let configs = vec![
        base(),
        base()
            .output(AudioOutput::new("Puck").language_code("en-US"))
            .input(InputConfig {
                transcribe: true,
                ..Default::default()
            }),
        base().output(TextOutput).input(InputConfig::new(true)),
        base().activity_detection(ActivityDetection::manual()),
        base()
            .activity_detection(
                ActivityDetection::automatic()
                    .start_sensitivity(StartSensitivity::High)
                    .end_sensitivity(EndSensitivity::Low)
                    .prefix_padding_ms(20)
                    .silence_duration_ms(500),
            )
            .activity_handling(ActivityHandling::NoInterruption)
            .input(
                InputConfig::new(true)
                    .activity_handling(ActivityHandling::Interrupts)
                    .turn_coverage(TurnCoverage::OnlyActivity),
            ),
        base().context_compression(ContextCompression::new()),
        base().context_compression(
            ContextCompression::new()
                .trigger_tokens(25_600)
                .target_tokens(12_800),
        ),
        base().session_resumption(SessionResumption::disabled()),
        base().session_resumption(SessionResumption::transparent()),
        base()
            .temperature(0.7)
            .max_output_tokens(512)
            .api_version(ApiVersion::V1Alpha),
        RealtimeConfig::new("models/gemini-live-2.5-flash-preview").base_url("ws://x"),
    ];
    let mut all = Vec::new();
    for config in configs {
        let mut p = proto(config.clone());
        let mut out = Outbox::new();
        p.on_open(false, &mut out);
        let f = json_frames(&out);
        assert_eq!(f.len(), 1);
        let setup = &f[0]["setup"];
        assert!(setup["model"].as_str().unwrap().starts_with("models/"));
        assert!(!setup["model"]
            .as_str()
            .unwrap()
            .starts_with("models/models/"));
        all.extend(frames(&out));
    }
    // resuming with a handle
    let p = proto(base());
    all.push(
        serde_json::to_string(&crate::wire::ClientMessage::Setup(
            p.setup_message(Some("CiQ5ZjM2-handle")),
        ))
        .unwrap(),
    );
    validate(&all);

    // spot checks of the mapping
    let s: Value = serde_json::from_str(&all[1]).unwrap();
    let s = &s["setup"];
    assert_eq!(
        s["generationConfig"]["responseModalities"],
        json!(["AUDIO"])
    );
    assert_eq!(
        s["generationConfig"]["speechConfig"],
        json!({"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": "Puck"}}, "languageCode": "en-US"})
    );
    assert_eq!(
        s["systemInstruction"],
        json!({"parts": [{"text": "You are a helpful voice assistant."}]})
    );
    assert_eq!(s["inputAudioTranscription"], json!({}));
    assert_eq!(s["outputAudioTranscription"], json!({}));
    assert_eq!(s["sessionResumption"], json!({}));
    let decl = &s["tools"][0]["functionDeclarations"][0];
    assert_eq!(decl["name"], "get_weather");
    assert!(decl["parametersJsonSchema"].get("$schema").is_none());
    assert_eq!(decl["parametersJsonSchema"]["required"], json!(["city"]));
    let text: Value = serde_json::from_str(&all[2]).unwrap();
    assert_eq!(
        text["setup"]["generationConfig"]["responseModalities"],
        json!(["TEXT"])
    );
    assert!(text["setup"].get("outputAudioTranscription").is_none());
    let manual: Value = serde_json::from_str(&all[3]).unwrap();
    assert_eq!(
        manual["setup"]["realtimeInputConfig"],
        json!({"automaticActivityDetection": {"disabled": true}})
    );
    let comp: Value = serde_json::from_str(&all[6]).unwrap();
    assert_eq!(
        comp["setup"]["contextWindowCompression"],
        json!({"triggerTokens": 25600, "slidingWindow": {"targetTokens": 12800}})
    );
    let off: Value = serde_json::from_str(&all[7]).unwrap();
    assert!(off["setup"].get("sessionResumption").is_none());
    let tr: Value = serde_json::from_str(&all[8]).unwrap();
    assert_eq!(
        tr["setup"]["sessionResumption"],
        json!({"transparent": true})
    );
    let resume: Value = serde_json::from_str(all.last().unwrap()).unwrap();
    assert_eq!(
        resume["setup"]["sessionResumption"]["handle"],
        "CiQ5ZjM2-handle"
    );
}

#[test]
fn connect_request_url_headers_and_redaction() {
    let p = proto(base().api_version(ApiVersion::V1));
    let req = p.connect_request().unwrap();
    assert_eq!(
        req.url,
        "ws://127.0.0.1:9/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
    );
    assert_eq!(
        req.headers,
        vec![("x-goog-api-key".to_owned(), "test-key-123".to_owned())]
    );
    let dbg = format!("{req:?} {p:?} {:?}", base());
    assert!(!dbg.contains("test-key-123"), "{dbg}");
    let p = proto(base());
    assert!(p.connect_request().unwrap().url.contains(".v1beta."));
    // default endpoint without a key anywhere: refused up front
    if std::env::var("GEMINI_API_KEY").is_err() && std::env::var("GOOGLE_API_KEY").is_err() {
        let err =
            GeminiProtocol::new(RealtimeConfig::new("m"), SessionSetup::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
    }
    // a local server needs no key
    let p = GeminiProtocol::new(
        RealtimeConfig::new("m").base_url("ws://127.0.0.1:1/"),
        SessionSetup::default(),
    );
    if std::env::var("GEMINI_API_KEY").is_err() && std::env::var("GOOGLE_API_KEY").is_err() {
        assert!(p.unwrap().connect_request().unwrap().headers.is_empty());
    }
    assert_eq!(
        RealtimeConfig::new(" ").validate().unwrap_err().kind,
        ErrorKind::Config
    );
    assert!(RealtimeConfig::new("m")
        .base_url("http://x")
        .validate()
        .is_err());
}

#[test]
fn command_frames_pass_the_validator() {
    let mut all = Vec::new();
    // automatic activity detection
    let mut p = proto(base());
    ready(&mut p);
    let samples: Vec<i16> = (0..1600).map(|i| (i * 7) as i16).collect();
    let out = cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(samples.clone(), 16_000)),
    );
    let f = json_frames(&out);
    assert_eq!(
        f[0]["realtimeInput"]["audio"]["mimeType"],
        "audio/pcm;rate=16000"
    );
    let data = f[0]["realtimeInput"]["audio"]["data"].as_str().unwrap();
    assert_eq!(data, audio_b64(&samples));
    all.extend(frames(&out));
    // empty audio: nothing
    assert!(cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::new(vec![], 16_000))
    )
    .frames
    .is_empty());
    for (text, respond) in [
        ("What's the weather in Paris?", true),
        ("Note this.", false),
    ] {
        let out = cmd(
            &mut p,
            SessionCommand::Text(UserText {
                text: text.into(),
                respond,
            }),
        );
        let f = json_frames(&out);
        assert_eq!(
            f[0],
            json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": respond}})
        );
        all.extend(frames(&out));
    }
    let out = cmd(&mut p, SessionCommand::Control(ControlCommand::CommitInput));
    assert_eq!(
        json_frames(&out)[0],
        json!({"realtimeInput": {"audioStreamEnd": true}})
    );
    all.extend(frames(&out));
    let out = cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::CreateResponse),
    );
    assert_eq!(
        json_frames(&out)[0],
        json!({"clientContent": {"turnComplete": true}})
    );
    all.extend(frames(&out));
    // activity markers need manual mode: an error event, no frame
    let out = cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::ActivityStart),
    );
    assert!(out.frames.is_empty());
    assert_eq!(
        events::<ErrorEvent>(&out)[0].error.kind,
        ErrorKind::InvalidRequest
    );
    let out = cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::CancelResponse),
    );
    assert!(out.frames.is_empty());
    assert_eq!(events::<ErrorEvent>(&out).len(), 1);
    assert!(cmd(&mut p, SessionCommand::Control(ControlCommand::ClearInput)).is_empty());

    // manual activity detection
    let mut p = proto(base().activity_detection(ActivityDetection::manual()));
    ready(&mut p);
    let out = cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::ActivityStart),
    );
    assert_eq!(
        json_frames(&out)[0],
        json!({"realtimeInput": {"activityStart": {}}})
    );
    all.extend(frames(&out));
    let out = cmd(&mut p, SessionCommand::Control(ControlCommand::CommitInput));
    assert_eq!(
        json_frames(&out)[0],
        json!({"realtimeInput": {"activityEnd": {}}})
    );
    all.extend(frames(&out));
    // nothing open: nothing to end
    assert!(
        cmd(&mut p, SessionCommand::Control(ControlCommand::ActivityEnd))
            .frames
            .is_empty()
    );
    let out = cmd(
        &mut p,
        SessionCommand::Control(ControlCommand::ActivityStart),
    );
    all.extend(frames(&out));
    let out = cmd(&mut p, SessionCommand::Control(ControlCommand::ActivityEnd));
    all.extend(frames(&out));

    // a tool response
    let mut p = proto(base());
    ready(&mut p);
    server(
        &mut p,
        json!({"toolCall": {"functionCalls": [{"id": "fc-1", "name": "get_weather", "args": {"city": "Paris"}}]}}),
    );
    let out = cmd(&mut p, tool_result("fc-1", json!(21), true));
    assert_eq!(
        json_frames(&out)[0],
        json!({"toolResponse": {"functionResponses": [{"id": "fc-1", "name": "get_weather", "response": {"result": 21}}]}})
    );
    all.extend(frames(&out));
    validate(&all);
}

// ------------------------------------------------------------------------------------------
// server frames
// ------------------------------------------------------------------------------------------

#[test]
fn handshake_waits_for_setup_complete() {
    let mut p = proto(base());
    assert_eq!(p.phase(), Phase::Idle);
    let mut out = Outbox::new();
    p.on_open(false, &mut out);
    assert_eq!(p.phase(), Phase::AwaitingSetup);
    assert!(out.signals.is_empty());
    // commands before Ready are held, not sent
    let held = cmd(
        &mut p,
        SessionCommand::Audio(AudioChunk::silence(20, 16_000)),
    );
    assert!(held.frames.is_empty());
    let done = server(&mut p, json!({"setupComplete": {"sessionId": "s-1"}}));
    assert_eq!(done.signals, vec![ProtocolSignal::Ready { resumed: false }]);
    let opened = events::<SessionOpened>(&done);
    assert_eq!(opened[0].provider, "gemini");
    assert_eq!(opened[0].session_id.as_deref(), Some("s-1"));
    assert_eq!(events::<SessionUpdated>(&done).len(), 1);
    assert_eq!(
        done.frames.len(),
        1,
        "the held audio goes out after setupComplete"
    );
    assert_eq!(p.phase(), Phase::Ready);
    // binary frames are decoded the same way
    let mut out = Outbox::new();
    p.on_frame(
        WireFrame::Binary(bytes::Bytes::from_static(br#"{"setupComplete":{}}"#)),
        &mut out,
    );
    assert!(out.signals.is_empty(), "a second setupComplete is ignored");
}

#[test]
fn audio_turn_maps_to_events() {
    let mut p = proto(base().input(InputConfig::new(true)));
    ready(&mut p);
    assert!(p.is_idle());
    let samples: Vec<i16> = vec![1, -2, 300, -400, 32767, -32768];
    let mut all = Outbox::new();
    let mut feed = |p: &mut GeminiProtocol, v: Value| {
        let o = server(p, v);
        all.events.extend(o.events);
        all.signals.extend(o.signals);
        all.frames.extend(o.frames);
    };
    feed(
        &mut p,
        json!({"serverContent": {"inputTranscription": {"text": "What's the"}}}),
    );
    feed(
        &mut p,
        json!({"serverContent": {"inputTranscription": {"text": " weather"}}}),
    );
    feed(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": audio_b64(&samples)}}]}}}),
    );
    assert!(!p.is_idle());
    feed(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": "It's 21"}}}),
    );
    feed(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": " degrees"}}}),
    );
    feed(
        &mut p,
        json!({"serverContent": {"generationComplete": true}}),
    );
    feed(
        &mut p,
        json!({"serverContent": {"turnComplete": true}, "usageMetadata": {"promptTokenCount": 1024, "responseTokenCount": "256", "totalTokenCount": 1280,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 300}, {"modality": "AUDIO", "tokenCount": 724}],
            "responseTokensDetails": [{"modality": "AUDIO", "tokenCount": 256}]}}),
    );
    assert!(all.frames.is_empty() && all.signals.is_empty());
    let kinds: Vec<EventKind> = all.events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::InputTranscriptChunk,
            EventKind::InputTranscriptChunk,
            EventKind::ResponseStarted,
            EventKind::SynthesizedAudio,
            EventKind::OutputTranscriptChunk,
            EventKind::OutputTranscriptChunk,
            EventKind::InputTranscriptChunk,  // final
            EventKind::OutputTranscriptChunk, // final
            EventKind::ResponseDone,
        ]
    );
    let audio = &events::<SynthesizedAudio>(&all)[0];
    assert_eq!(&*audio.item_id, "gemini-item-1");
    assert_eq!(audio.response_id.as_deref(), Some("gemini-turn-1"));
    assert_eq!(audio.audio.sample_rate, 24_000);
    assert_eq!(&audio.audio.samples[..], &samples[..]);
    let inputs = events::<InputTranscriptChunk>(&all);
    assert!(inputs[2].is_final);
    assert_eq!(&*inputs[2].text, "What's the weather");
    let outputs = events::<OutputTranscriptChunk>(&all);
    assert!(outputs[2].is_final);
    assert_eq!(&*outputs[2].text, "It's 21 degrees");
    assert_eq!(outputs[0].item_id.as_deref(), Some("gemini-item-1"));
    let done = &events::<ResponseDone>(&all)[0];
    assert_eq!(done.status, ResponseStatus::Completed);
    assert_eq!(&*done.response_id, "gemini-turn-1");
    assert_eq!(
        done.usage,
        Some(Usage {
            input_tokens: 1024,
            output_tokens: 256,
            total_tokens: 1280,
            input_audio_tokens: Some(724),
            output_audio_tokens: Some(256),
            cached_tokens: None,
            stages: Vec::new(),
            thinking_tokens: None,
        })
    );
    assert_eq!(done.text.as_deref(), Some("It's 21 degrees"));
    // history: the user's words, then the model's
    let h: Vec<_> = p.history().entries().cloned().collect();
    assert_eq!(h[0], crate::HistoryEntry::User("What's the weather".into()));
    assert!(
        matches!(&h[1], crate::HistoryEntry::Model { text, audio_ms: 0, .. } if text == "It's 21 degrees")
    );
    // the next turn gets new ids
    let o = server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"text": "more"}]}}}),
    );
    assert_eq!(
        &*events::<ResponseStarted>(&o)[0].response_id,
        "gemini-turn-2"
    );
    assert_eq!(
        &*events::<ModelMessageChunk>(&o)[0].item_id,
        "gemini-item-2"
    );
}

#[test]
fn text_output_and_odd_audio_bytes_and_url_safe_base64() {
    let mut p = proto(base().output(TextOutput));
    ready(&mut p);
    let o = server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"text": "Hello", "thought": true}, {"text": "Hi "}, {"text": "there"}]}}}),
    );
    let chunks = events::<ModelMessageChunk>(&o);
    assert_eq!(chunks.len(), 2, "thought parts are skipped");
    assert_eq!(&*chunks[0].text, "Hi ");
    server(&mut p, json!({"serverContent": {"turnComplete": true}}));
    assert!(
        matches!(p.history().entries().last(), Some(crate::HistoryEntry::Model { text, .. }) if text == "Hi there")
    );

    // audio split inside a sample, URL-safe alphabet without padding
    let mut p = proto(base());
    ready(&mut p);
    use base64::Engine as _;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes: Vec<u8> = vec![0xfb, 0xff, 0x01]; // -5, then half of the next sample
    let o1 = server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": url.encode(&bytes)}}]}}}),
    );
    let o2 = server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm", "data": url.encode([0x02])}}]}}}),
    );
    assert_eq!(&events::<SynthesizedAudio>(&o1)[0].audio.samples[..], &[-5]);
    assert_eq!(
        &events::<SynthesizedAudio>(&o2)[0].audio.samples[..],
        &[0x0201]
    );
    // bad base64: an error event, no panic
    let o = server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "!!!"}}]}}}),
    );
    assert_eq!(events::<ErrorEvent>(&o)[0].error.kind, ErrorKind::Protocol);
}

#[test]
fn malformed_and_unknown_frames() {
    let mut p = proto(base());
    ready(&mut p);
    for bad in [
        &b"not json"[..],
        b"",
        b"\xff\xfe",
        br#"{"serverContent": 5}"#,
        br#"{"toolCall": {"functionCalls": "x"}}"#,
        br#"{"sessionResumptionUpdate": {"lastConsumedClientMessageIndex": "abc"}}"#,
    ] {
        let mut out = Outbox::new();
        p.on_frame(
            WireFrame::Binary(bytes::Bytes::copy_from_slice(bad)),
            &mut out,
        );
        let errs = events::<ErrorEvent>(&out);
        assert_eq!(errs.len(), 1, "{:?}", String::from_utf8_lossy(bad));
        assert_eq!(errs[0].error.kind, ErrorKind::Protocol);
        assert!(!errs[0].fatal);
    }
    // unknown keys are ignored quietly
    let out = server(
        &mut p,
        json!({"somethingNew": {"a": 1}, "serverContent": {"futureField": true}}),
    );
    assert!(out.is_empty());
    let out = server(&mut p, json!({"goAway": {"timeLeft": "50s"}}));
    assert!(
        matches!(&out.signals[..], [ProtocolSignal::Reconnect { reason }] if reason.contains("50.0s"))
    );
}

#[test]
fn interruption_cancels_the_turn_once() {
    let mut p = proto(base().input(InputConfig::new(true)));
    ready(&mut p);
    server(
        &mut p,
        json!({"serverContent": {"inputTranscription": {"text": "Tell me a story"}}}),
    );
    server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": audio_b64(&vec![0i16; 24_000])}}]}}}),
    );
    server(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": "Once upon a time there was"}}}),
    );
    // the user barges in
    server(
        &mut p,
        json!({"serverContent": {"inputTranscription": {"text": "Stop"}}}),
    );
    let o = server(&mut p, json!({"serverContent": {"interrupted": true}}));
    let intr = &events::<Interrupted>(&o)[0];
    assert_eq!(intr.item_id.as_deref(), Some("gemini-item-1"));
    let done = &events::<ResponseDone>(&o)[0];
    assert_eq!(done.status, ResponseStatus::Cancelled);
    assert_eq!(done.reason.as_deref(), Some("turn_detected"));
    let finals: Vec<_> = events::<InputTranscriptChunk>(&o);
    assert_eq!(
        &*finals[0].text, "Tell me a story",
        "only the words before the turn"
    );
    // the trailing turnComplete does not end anything twice
    let o = server(&mut p, json!({"serverContent": {"turnComplete": true}}));
    assert!(events::<ResponseDone>(&o).is_empty());
    // the player reports what was heard: the replayed history keeps that share of the words
    cmd(
        &mut p,
        SessionCommand::PlaybackStopped(PlaybackStopped {
            item_id: "gemini-item-1".into(),
            played_ms: 500,
            interrupted: true,
        }),
    );
    let turns = p.history().replay_turns(0);
    assert_eq!(turns[0][1].parts[0].text.as_deref(), Some("Once upon a"));
    // an interruption after the turn completed still tells the player to stop
    server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"text": "x"}]}}}),
    );
    server(&mut p, json!({"serverContent": {"turnComplete": true}}));
    let o = server(&mut p, json!({"serverContent": {"interrupted": true}}));
    assert_eq!(
        events::<Interrupted>(&o)[0].item_id.as_deref(),
        Some("gemini-item-2")
    );
    assert!(events::<ResponseDone>(&o).is_empty());
}

#[test]
fn tool_calls_are_answered_in_one_response() {
    let mut p = proto(base());
    ready(&mut p);
    let o = server(
        &mut p,
        json!({"toolCall": {"functionCalls": [
            {"id": "a", "name": "get_weather", "args": {"city": "Paris"}},
            {"id": "b", "name": "get_weather", "args": {"city": "Rome"}},
            {"id": "c", "name": "get_weather"}
        ]}}),
    );
    let req = &events::<ToolCallRequested>(&o)[0];
    assert_eq!(req.calls.len(), 3);
    assert_eq!(req.calls[0].arguments, json!({"city": "Paris"}));
    assert_eq!(req.calls[2].arguments, json!({}));
    assert_eq!(req.calls[0].response_id.as_deref(), Some("gemini-turn-1"));
    assert!(!p.is_idle());
    // one by one: nothing until the batch is complete
    assert!(cmd(&mut p, tool_result("b", json!({"temp_c": 25}), false))
        .frames
        .is_empty());
    // a duplicate is dropped
    assert!(cmd(&mut p, tool_result("b", json!({"temp_c": 99}), false))
        .frames
        .is_empty());
    // "c" is withdrawn: its result will be dropped
    let o = server(&mut p, json!({"toolCallCancellation": {"ids": ["c"]}}));
    assert_eq!(&*events::<ToolCallCancelled>(&o)[0].call_ids[0], "c");
    assert!(o.frames.is_empty());
    let o = cmd(
        &mut p,
        SessionCommand::ToolResult(ToolResult {
            call_id: "a".into(),
            name: "get_weather".into(),
            output: Err("boom".into()),
            request_response: true,
        }),
    );
    let f = json_frames(&o);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0],
        json!({"toolResponse": {"functionResponses": [
            {"id": "b", "name": "get_weather", "response": {"temp_c": 25}},
            {"id": "a", "name": "get_weather", "response": {"error": "boom"}}
        ]}})
    );
    validate(&frames(&o));
    assert!(cmd(&mut p, tool_result("c", json!(1), true)).is_empty());
    assert!(cmd(&mut p, tool_result("a", json!(1), true)).is_empty());
    // an unknown id: dropped with an error event
    let o = cmd(&mut p, tool_result("zzz", json!(1), true));
    assert!(o.frames.is_empty());
    assert_eq!(events::<ErrorEvent>(&o)[0].error.kind, ErrorKind::Tool);
    // a repeated toolCall with known ids is not run twice
    let o = server(
        &mut p,
        json!({"toolCall": {"functionCalls": [{"id": "a", "name": "get_weather", "args": {}}]}}),
    );
    assert!(events::<ToolCallRequested>(&o).is_empty());
    server(&mut p, json!({"serverContent": {"turnComplete": true}}));
    assert!(p.is_idle());
}

#[test]
fn cancellation_can_complete_a_batch() {
    let mut p = proto(base());
    ready(&mut p);
    server(
        &mut p,
        json!({"toolCall": {"functionCalls": [{"id": "a", "name": "f", "args": {}}, {"id": "b", "name": "f", "args": {}}]}}),
    );
    assert!(cmd(&mut p, tool_result("a", json!("ok"), false))
        .frames
        .is_empty());
    let o = server(&mut p, json!({"toolCallCancellation": {"ids": ["b"]}}));
    let f = json_frames(&o);
    assert_eq!(
        f[0]["toolResponse"]["functionResponses"],
        json!([{"id": "a", "name": "f", "response": {"result": "ok"}}])
    );
}

// ------------------------------------------------------------------------------------------
// reconnects
// ------------------------------------------------------------------------------------------

#[test]
fn go_away_then_resume_with_the_latest_handle() {
    let mut p = proto(base());
    ready(&mut p);
    server(
        &mut p,
        json!({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": true}}),
    );
    server(
        &mut p,
        json!({"sessionResumptionUpdate": {"resumable": false}}),
    );
    assert_eq!(p.resumption_handle(), Some("h1"));
    server(
        &mut p,
        json!({"sessionResumptionUpdate": {"newHandle": "h2", "resumable": true}}),
    );
    let o = server(&mut p, json!({"goAway": {"timeLeft": "10s"}}));
    assert!(matches!(o.signals[0], ProtocolSignal::Reconnect { .. }));
    close(&mut p);
    let (open, done) = connect(&mut p, true);
    let f = json_frames(&open);
    assert_eq!(f[0]["setup"]["sessionResumption"], json!({"handle": "h2"}));
    assert_eq!(done.signals, vec![ProtocolSignal::Ready { resumed: true }]);
    assert!(
        done.frames.is_empty(),
        "nothing to replay: the handle covers everything"
    );
    assert!(events::<SessionOpened>(&done).is_empty());
    let mut all = frames(&open);
    all.extend(frames(&done));
    validate(&all);
}

#[test]
fn history_replay_when_resumption_fails() {
    let mut p = proto(base().input(InputConfig::new(true)));
    ready(&mut p);
    // turn 1: spoken
    server(
        &mut p,
        json!({"serverContent": {"inputTranscription": {"text": "My name is Ada."}}}),
    );
    server(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": "Nice to meet you, Ada."}}}),
    );
    server(&mut p, json!({"serverContent": {"turnComplete": true}}));
    // turn 2: a tool call, answered
    cmd(
        &mut p,
        SessionCommand::Text(UserText {
            text: "Weather in Paris?".into(),
            respond: true,
        }),
    );
    server(
        &mut p,
        json!({"toolCall": {"functionCalls": [{"id": "w1", "name": "get_weather", "args": {"city": "Paris"}}]}}),
    );
    cmd(&mut p, tool_result("w1", json!({"temp_c": 21}), true));
    server(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": "It is 21 degrees."}}}),
    );
    server(&mut p, json!({"serverContent": {"turnComplete": true}}));
    server(
        &mut p,
        json!({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": true}}),
    );
    // turn 3 in progress when the socket drops
    server(
        &mut p,
        json!({"serverContent": {"inputTranscription": {"text": "And tomorrow?"}}}),
    );
    server(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": "Tomorrow"}}}),
    );
    let o = close(&mut p);
    let done = &events::<ResponseDone>(&o)[0];
    assert_eq!(done.status, ResponseStatus::Failed);
    assert_eq!(done.reason.as_deref(), Some("connection lost"));
    // the server refuses to resume: the connection closes before setupComplete
    let mut open = Outbox::new();
    p.on_open(true, &mut open);
    assert_eq!(
        json_frames(&open)[0]["setup"]["sessionResumption"]["handle"],
        "h1"
    );
    let mut o = Outbox::new();
    p.on_close_frame(Some(1008), "session not found", &mut o);
    assert!(o.signals.is_empty(), "not fatal: retried as a new session");
    close(&mut p);
    assert_eq!(p.resumption_handle(), None);
    // a new session: the whole conversation is replayed before Ready
    let (open, done) = connect(&mut p, true);
    assert_eq!(
        json_frames(&open)[0]["setup"]["sessionResumption"],
        json!({})
    );
    assert_eq!(done.signals, vec![ProtocolSignal::Ready { resumed: false }]);
    let f = json_frames(&done);
    assert_eq!(f.len(), 1);
    assert_eq!(
        f[0],
        json!({"clientContent": {"turns": [
            {"role": "user", "parts": [{"text": "My name is Ada."}]},
            {"role": "model", "parts": [{"text": "Nice to meet you, Ada."}]},
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"id": "w1", "name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"id": "w1", "name": "get_weather", "response": {"temp_c": 21}}}]},
            {"role": "model", "parts": [{"text": "It is 21 degrees."}]},
            {"role": "user", "parts": [{"text": "And tomorrow?"}]},
            {"role": "model", "parts": [{"text": "Tomorrow"}]}
        ], "turnComplete": false}})
    );
    validate(&frames(&done));
}

#[test]
fn resumed_with_an_older_handle_replays_what_came_after_it() {
    let mut p = proto(base());
    ready(&mut p);
    cmd(
        &mut p,
        SessionCommand::Text(UserText {
            text: "first".into(),
            respond: true,
        }),
    );
    server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"text": "one"}]}, "turnComplete": true}}),
    );
    server(
        &mut p,
        json!({"sessionResumptionUpdate": {"newHandle": "h1", "resumable": true}}),
    );
    cmd(
        &mut p,
        SessionCommand::Text(UserText {
            text: "second".into(),
            respond: true,
        }),
    );
    server(
        &mut p,
        json!({"serverContent": {"modelTurn": {"parts": [{"text": "two"}]}, "turnComplete": true}}),
    );
    close(&mut p);
    let (_, done) = connect(&mut p, true);
    assert_eq!(done.signals, vec![ProtocolSignal::Ready { resumed: true }]);
    assert_eq!(
        json_frames(&done)[0]["clientContent"]["turns"],
        json!([{"role": "user", "parts": [{"text": "second"}]}, {"role": "model", "parts": [{"text": "two"}]}])
    );
}

#[test]
fn tool_results_after_a_fresh_reconnect_go_as_content() {
    let mut p = proto(base().session_resumption(SessionResumption::disabled()));
    ready(&mut p);
    server(
        &mut p,
        json!({"toolCall": {"functionCalls": [{"id": "t1", "name": "get_weather", "args": {"city": "Oslo"}}]}}),
    );
    close(&mut p);
    let (open, done) = connect(&mut p, true);
    assert!(json_frames(&open)[0]["setup"]
        .get("sessionResumption")
        .is_none());
    // the call is part of the replayed history
    assert_eq!(
        json_frames(&done)[0]["clientContent"]["turns"][0]["parts"][0]["functionCall"]["id"],
        "t1"
    );
    // the result computed during the outage arrives now
    let o = cmd(&mut p, tool_result("t1", json!({"temp_c": 3}), true));
    assert_eq!(
        json_frames(&o)[0],
        json!({"clientContent": {"turns": [{"role": "user", "parts": [{"functionResponse": {"id": "t1", "name": "get_weather", "response": {"temp_c": 3}}}]}], "turnComplete": true}})
    );
    let mut all = frames(&done);
    all.extend(frames(&o));
    validate(&all);
    // never twice
    assert!(cmd(&mut p, tool_result("t1", json!({"temp_c": 3}), true))
        .frames
        .is_empty());
}

#[test]
fn transparent_resumption_resends_unconsumed_frames() {
    let mut p = proto(base().session_resumption(SessionResumption::transparent()));
    let (open, _) = connect(&mut p, false);
    assert_eq!(
        json_frames(&open)[0]["setup"]["sessionResumption"],
        json!({"transparent": true})
    );
    // indexes: setup = 0, then 1, 2, 3
    for i in 1..=3i16 {
        cmd(
            &mut p,
            SessionCommand::Audio(AudioChunk::new(vec![i; 160], 16_000)),
        );
    }
    server(
        &mut p,
        json!({"sessionResumptionUpdate": {"newHandle": "h", "resumable": true, "lastConsumedClientMessageIndex": "1"}}),
    );
    assert_eq!(
        p.unconsumed_frames().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![2, 3]
    );
    close(&mut p);
    let (open, done) = connect(&mut p, true);
    assert_eq!(
        json_frames(&open)[0]["setup"]["sessionResumption"],
        json!({"handle": "h", "transparent": true})
    );
    assert_eq!(done.signals, vec![ProtocolSignal::Ready { resumed: true }]);
    let resent = json_frames(&done);
    assert_eq!(resent.len(), 2);
    assert_eq!(
        resent[0]["realtimeInput"]["audio"]["data"],
        audio_b64(&[2i16; 160])
    );
    assert_eq!(
        resent[1]["realtimeInput"]["audio"]["data"],
        audio_b64(&[3i16; 160])
    );
    // they are numbered again on the new connection
    assert_eq!(
        p.unconsumed_frames().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn close_frames_are_classified() {
    let mut p = proto(base());
    let mut open = Outbox::new();
    p.on_open(false, &mut open);
    let mut o = Outbox::new();
    p.on_close_frame(
        Some(1007),
        "API key not valid: test-key-123. Please pass a valid API key.",
        &mut o,
    );
    match &o.signals[..] {
        [ProtocolSignal::Fatal(e)] => {
            assert_eq!(e.kind, ErrorKind::Auth);
            assert!(!e.message.contains("test-key-123"), "{}", e.message);
        }
        other => panic!("expected a fatal signal, got {other:?}"),
    }
    // a setup the server refuses is a configuration error
    let mut o = Outbox::new();
    p.on_close_frame(Some(1007), "Request contains an invalid argument.", &mut o);
    assert!(matches!(&o.signals[..], [ProtocolSignal::Fatal(e)] if e.kind == ErrorKind::Config));
    // during a session, a server error is not fatal
    let mut p = proto(base());
    ready(&mut p);
    let mut o = Outbox::new();
    p.on_close_frame(Some(1011), "Internal error encountered.", &mut o);
    assert!(o.signals.is_empty());
    assert_eq!(events::<ErrorEvent>(&o)[0].error.kind, ErrorKind::Provider);
    let mut o = Outbox::new();
    p.on_close_frame(Some(1000), "", &mut o);
    assert!(o.is_empty());
}

#[test]
fn late_output_transcript_joins_the_finished_turn() {
    let mut p = proto(base().input(InputConfig::new(true)));
    ready(&mut p);
    server(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": "Hello"}}}),
    );
    server(&mut p, json!({"serverContent": {"turnComplete": true}}));
    let o = server(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": " there"}}}),
    );
    assert!(events::<ResponseStarted>(&o).is_empty());
    assert_eq!(
        events::<OutputTranscriptChunk>(&o)[0].item_id.as_deref(),
        Some("gemini-item-1")
    );
    assert!(
        matches!(p.history().entries().last(), Some(crate::HistoryEntry::Model { text, .. }) if text == "Hello there")
    );
    // after new user input, output starts a new turn
    server(
        &mut p,
        json!({"serverContent": {"inputTranscription": {"text": "Hi"}}}),
    );
    let o = server(
        &mut p,
        json!({"serverContent": {"outputTranscription": {"text": "Yes?"}}}),
    );
    assert_eq!(events::<ResponseStarted>(&o).len(), 1);
}

// ------------------------------------------------------------------------------------------
// examples from the shared protocol notes
// ------------------------------------------------------------------------------------------

fn shared(path: &str) -> String {
    let p = liveagent_testkit::shared_dir().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn decodes_every_server_example() {
    let mut server_frames: Vec<String> = Vec::new();
    for file in [
        "protocols/examples/gemini.jsonl",
        "protocols/examples/sdk_capture_gemini.jsonl",
    ] {
        for line in shared(file).lines() {
            if let Some(f) = line.strip_prefix("< ") {
                server_frames.push(f.to_owned());
            }
        }
    }
    // ```json blocks of the notes that are server messages
    let md = shared("protocols/gemini-live.md");
    let mut rest = md.as_str();
    let mut client_blocks = 0;
    while let Some(start) = rest.find("```json\n") {
        let after = &rest[start + 8..];
        let end = after.find("```").unwrap();
        let block = after[..end].trim();
        let v: Value = serde_json::from_str(block).unwrap();
        let key = v.as_object().unwrap().keys().next().unwrap().clone();
        if ["setup", "clientContent", "realtimeInput", "toolResponse"].contains(&key.as_str()) {
            client_blocks += 1;
            // our client types read them back (unknown fields such as `scheduling` aside)
            serde_json::from_value::<crate::wire::ClientMessage>(v).unwrap();
        } else {
            server_frames.push(block.to_owned());
        }
        rest = &after[end + 3..];
    }
    assert!(client_blocks >= 10);
    assert!(server_frames.len() >= 20, "{}", server_frames.len());
    let mut p = proto(base().input(InputConfig::new(true)));
    let mut open = Outbox::new();
    p.on_open(false, &mut open);
    for f in &server_frames {
        crate::wire::decode_server(f.as_bytes()).unwrap_or_else(|e| panic!("{f}: {e}"));
        let mut out = Outbox::new();
        p.on_frame(WireFrame::Text(f.clone().into()), &mut out);
        assert!(
            events::<ErrorEvent>(&out).is_empty(),
            "{f}: {:?}",
            out.events
        );
    }
    // the client example frames of the notes read back as our types
    for line in shared("protocols/examples/gemini.jsonl").lines() {
        if let Some(f) = line.strip_prefix("> ") {
            serde_json::from_str::<crate::wire::ClientMessage>(f)
                .unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}

#[test]
fn secrets_never_print() {
    let p = proto(base());
    let s = format!("{p:?}");
    assert!(!s.contains("test-key-123"));
    let _: Arc<str> = "x".into();
}

#[test]
fn repeated_setup_failures_are_reported_once() {
    let mut p = proto(base());
    let mut errors = 0;
    for _ in 0..6 {
        let mut o = Outbox::new();
        p.on_open(true, &mut o);
        let o = close(&mut p);
        errors += events::<ErrorEvent>(&o).len();
    }
    assert_eq!(errors, 1);
    // a successful handshake resets the count
    ready(&mut p);
    assert_eq!(p.phase(), Phase::Ready);
}
