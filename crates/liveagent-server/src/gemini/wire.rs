//! Gemini Live wire types, server side. Client frames are normalised to lowerCamelCase first
//! (the real server accepts snake_case too, proto3-JSON style).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// JSON containers whose keys are user data, left as they are.
const FREEFORM: &[&str] = &[
    "args",
    "response",
    "parameters",
    "parametersJsonSchema",
    "parameters_json_schema",
    "responseJsonSchema",
    "response_json_schema",
    "properties",
    "labels",
];

/// Rewrites snake_case keys to lowerCamelCase, except inside free-form containers.
pub(crate) fn camelize(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, val) in map {
                let free = FREEFORM.contains(&k.as_str());
                let key = if k.contains('_') { to_camel(&k) } else { k };
                out.insert(key, if free { val } else { camelize(val) });
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(camelize).collect()),
        other => other,
    }
}

fn to_camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for ch in s.chars() {
        if ch == '_' {
            up = true;
        } else if up {
            out.extend(ch.to_uppercase());
            up = false;
        } else {
            out.push(ch);
        }
    }
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Setup {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub generation_config: Option<GenerationConfig>,
    #[serde(default)]
    pub realtime_input_config: Option<RealtimeInputConfig>,
    #[serde(default)]
    pub input_audio_transcription: Option<Value>,
    #[serde(default)]
    pub output_audio_transcription: Option<Value>,
    #[serde(default)]
    pub session_resumption: Option<SessionResumption>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerationConfig {
    #[serde(default)]
    pub response_modalities: Option<Vec<String>>,
    #[serde(default)]
    pub thinking_config: Option<ThinkingConfig>,
}

/// `generationConfig.thinkingConfig`: a budget other than 0 makes the fake model "think"
/// (it reports `thoughtsTokenCount` in its usage).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThinkingConfig {
    #[serde(default)]
    pub thinking_budget: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RealtimeInputConfig {
    #[serde(default)]
    pub automatic_activity_detection: Option<AutomaticActivityDetection>,
    #[serde(default)]
    pub activity_handling: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AutomaticActivityDetection {
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub start_of_speech_sensitivity: Option<String>,
    #[serde(default)]
    pub end_of_speech_sensitivity: Option<String>,
    #[serde(default)]
    pub prefix_padding_ms: Option<u32>,
    #[serde(default)]
    pub silence_duration_ms: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionResumption {
    #[serde(default)]
    pub handle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientContent {
    #[serde(default)]
    pub turns: Option<Vec<GContent>>,
    #[serde(default)]
    pub turn_complete: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GContent {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub parts: Option<Vec<GPart>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GPart {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub inline_data: Option<Blob>,
    #[serde(default)]
    pub function_call: Option<FunctionCallIn>,
    #[serde(default)]
    pub function_response: Option<FunctionResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionCallIn {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub args: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Blob {
    #[serde(default)]
    pub mime_type: Option<String>,
    pub data: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RealtimeInput {
    #[serde(default)]
    pub audio: Option<Blob>,
    #[serde(default)]
    pub media_chunks: Option<Vec<Blob>>,
    #[serde(default)]
    pub video: Option<Value>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub activity_start: Option<Value>,
    #[serde(default)]
    pub activity_end: Option<Value>,
    #[serde(default)]
    pub audio_stream_end: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolResponse {
    #[serde(default)]
    pub function_responses: Vec<FunctionResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionResponse {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub response: Option<Value>,
}

// ------------------------------------------------------------------ server messages

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerMessage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_complete: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_content: Option<ServerContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_cancellation: Option<ToolCallCancellation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub go_away: Option<GoAway>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_resumption_update: Option<ResumptionUpdate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_metadata: Option<UsageMetadata>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Empty {}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerContent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_turn: Option<ModelTurn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_complete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_transcription: Option<Transcription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_transcription: Option<Transcription>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModelTurn {
    pub role: &'static str,
    pub parts: Vec<OutPart>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutPart {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<OutBlob>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutBlob {
    pub mime_type: &'static str,
    pub data: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Transcription {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<bool>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolCall {
    pub function_calls: Vec<FunctionCallOut>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionCallOut {
    pub id: String,
    pub name: String,
    pub args: Value,
}

#[derive(Debug, Serialize)]
pub(crate) struct ToolCallCancellation {
    pub ids: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GoAway {
    pub time_left: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResumptionUpdate {
    pub new_handle: String,
    pub resumable: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UsageMetadata {
    pub prompt_token_count: u64,
    pub response_token_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thoughts_token_count: Option<u64>,
    pub total_token_count: u64,
    pub prompt_tokens_details: Vec<ModalityCount>,
    pub response_tokens_details: Vec<ModalityCount>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModalityCount {
    pub modality: &'static str,
    pub token_count: u64,
}

/// Parses a Go-style protobuf Duration string ("5s", "1.5s") into milliseconds.
pub(crate) fn parse_duration_ms(s: &str) -> Option<u64> {
    let secs: f64 = s.trim().strip_suffix('s')?.parse().ok()?;
    (secs >= 0.0).then_some((secs * 1000.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camelize_leaves_user_data_alone() {
        let v = camelize(
            json!({"realtime_input": {"audio": {"mime_type": "x", "data": "AA=="}},
            "tool_response": {"function_responses": [{"id": "1", "response": {"temp_c": 1}}]}}),
        );
        assert_eq!(v["realtimeInput"]["audio"]["mimeType"], "x");
        assert_eq!(
            v["toolResponse"]["functionResponses"][0]["response"]["temp_c"],
            1
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5s"), Some(5000));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("x"), None);
    }
}
