//! Unit tests of [`super`]: client events and `session.update` bodies the real API refuses.

use super::*;
use serde_json::json;

fn check(v: Value) -> Result<(), SchemaError> {
    check_session(&v, None, false)
}

#[test]
fn session_fields_are_typed_and_named() {
    let cases = [
        (
            json!({"type": "realtime", "instructions": 42}),
            "invalid_type",
            "session.instructions",
        ),
        (
            json!({"type": "realtime", "audio": {"output": {"voice": 7}}}),
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            json!({"type": "realtime", "audio": {"output": {"voice": "robot"}}}),
            "invalid_value",
            "session.audio.output.voice",
        ),
        (
            json!({"type": "realtime", "max_output_tokens": "lots"}),
            "invalid_value",
            "session.max_output_tokens",
        ),
        (
            json!({"type": "realtime", "max_output_tokens": 5000}),
            "integer_above_max_value",
            "session.max_output_tokens",
        ),
        (
            json!({"type": "realtime", "tools": "get_weather"}),
            "invalid_type",
            "session.tools",
        ),
        (
            json!({"type": "realtime", "tool_choice": 3}),
            "invalid_value",
            "session.tool_choice",
        ),
        (
            json!({"type": "realtime", "no_such_field": true}),
            "unknown_parameter",
            "session.no_such_field",
        ),
        (
            json!({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2.0}}}}),
            "decimal_above_max_value",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            json!({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "bogus": 1}}}}),
            "unknown_parameter",
            "session.audio.input.turn_detection.bogus",
        ),
        (
            json!({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}}}),
            "unknown_parameter",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            json!({"type": "realtime", "audio": {"input": {"format": {"type": "pcm16"}}}}),
            "invalid_value",
            "session.audio.input.format.type",
        ),
        (
            json!({"type": "realtime", "tools": [{"type": "function", "name": "f", "parameters": "x"}]}),
            "invalid_type",
            "session.tools[0].parameters",
        ),
        (
            json!({"type": "realtime", "output_modalities": ["text", "audio"]}),
            "invalid_value",
            "session.output_modalities",
        ),
        (
            json!({"instructions": "x"}),
            "missing_required_parameter",
            "session.type",
        ),
        (
            json!({"type": "realtime", "audio": {"output": {"speed": 3}}}),
            "decimal_above_max_value",
            "session.audio.output.speed",
        ),
    ];
    for (v, code, param) in cases {
        let e = check(v.clone()).expect_err(&v.to_string());
        assert_eq!(
            (e.code, e.param.as_deref()),
            (code, Some(param)),
            "{v}: {}",
            e.message
        );
        assert!(e.message.contains(param), "{}", e.message);
    }
}

#[test]
fn good_sessions_pass() {
    for v in [
        json!({"type": "realtime"}),
        json!({"type": "realtime", "instructions": "Be brief.", "max_output_tokens": "inf",
               "tool_choice": "auto", "tools": [{"type": "function", "name": "get_weather",
               "description": "d", "parameters": {"type": "object", "properties": {}}}],
               "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
               "transcription": {"model": "gpt-4o-mini-transcribe"}, "noise_reduction": null,
               "turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
               "output": {"voice": "marin", "speed": 1.0, "format": {"type": "audio/pcmu"}}},
               "truncation": {"type": "retention_ratio", "retention_ratio": 0.8},
               "tracing": "auto", "output_modalities": ["text"]}),
        json!({"type": "realtime", "tool_choice": {"type": "function", "name": "f"},
               "audio": {"output": {"voice": {"id": "voice_1234"}}, "input": {"turn_detection": null}}}),
    ] {
        check(v.clone()).unwrap_or_else(|e| panic!("{v}: {e:?}"));
    }
}

#[test]
fn event_errors_name_the_field() {
    let cases = [
        (
            json!({"type": "conversation.item.truncate", "item_id": "a", "content_index": "zero", "audio_end_ms": 5}),
            "invalid_type",
            "content_index",
        ),
        (
            json!({"type": "conversation.item.truncate", "item_id": "a", "audio_end_ms": 5}),
            "missing_required_parameter",
            "content_index",
        ),
        (
            json!({"type": "input_audio_buffer.append", "audio": 5}),
            "invalid_type",
            "audio",
        ),
        (
            json!({"type": "input_audio_buffer.append", "audio": "", "extra": 1}),
            "unknown_parameter",
            "extra",
        ),
        (
            json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": 5}]}}),
            "invalid_type",
            "item.content[0].text",
        ),
        (
            json!({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                "content": [{"type": "input_text"}]}}),
            "missing_required_parameter",
            "item.content[0].text",
        ),
        (
            json!({"type": "conversation.item.create", "item": {"role": "user", "content": []}}),
            "missing_required_parameter",
            "item.type",
        ),
        (
            json!({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": "c", "output": 1}}),
            "invalid_type",
            "item.output",
        ),
        (
            json!({"type": "response.create", "response": {"output_modalities": "text"}}),
            "invalid_type",
            "response.output_modalities",
        ),
        (json!({"type": "no.such.event"}), "invalid_value", "type"),
    ];
    for (v, code, param) in cases {
        let e = parse_event(v.clone()).expect_err(&v.to_string());
        assert_eq!(
            (e.code, e.param.as_deref()),
            (code, Some(param)),
            "{v}: {}",
            e.message
        );
        assert!(e.message.contains(param), "{}", e.message);
    }
}
