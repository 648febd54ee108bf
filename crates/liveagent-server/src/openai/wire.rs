//! OpenAI Realtime GA wire types, server side: client events in, server events out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A plain `input_audio_buffer.append` frame read with borrowed fields: the session's fast
/// path for its most frequent frame. Anything it does not read (escaped strings, other
/// keys, other types) goes through [`ClientEvent`] and `schema::parse_event`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppendFrame<'a> {
    /// The event type (the caller checks it is `input_audio_buffer.append`).
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The base64 audio.
    pub audio: &'a str,
    /// The client's event id.
    #[serde(default, borrow)]
    pub event_id: Option<&'a str>,
}

/// A client event (the GA `RealtimeClientEvent` union). Parsed by `schema::parse_event`,
/// which moves `type` out as the variant key so that errors keep the field's path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) enum ClientEvent {
    #[serde(rename = "session.update")]
    SessionUpdate { session: Value },
    #[serde(rename = "input_audio_buffer.append")]
    Append { audio: String },
    #[serde(rename = "input_audio_buffer.commit")]
    Commit {},
    #[serde(rename = "input_audio_buffer.clear")]
    Clear {},
    #[serde(rename = "conversation.item.create")]
    ItemCreate {
        item: ClientItem,
        #[serde(default)]
        previous_item_id: Option<String>,
    },
    #[serde(rename = "conversation.item.retrieve")]
    ItemRetrieve { item_id: String },
    #[serde(rename = "conversation.item.truncate")]
    ItemTruncate {
        item_id: String,
        content_index: u32,
        audio_end_ms: u64,
    },
    #[serde(rename = "conversation.item.delete")]
    ItemDelete { item_id: String },
    #[serde(rename = "response.create")]
    ResponseCreate {
        #[serde(default)]
        response: Option<ResponseParams>,
    },
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        #[serde(default)]
        response_id: Option<String>,
    },
    #[serde(rename = "output_audio_buffer.clear")]
    OutputAudioBufferClear {},
}

/// `response.create.response` (the GA `RealtimeResponseCreateParams`; the server honours
/// `output_modalities`, `conversation` and `metadata`, and accepts the rest).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct ResponseParams {
    #[serde(default)]
    pub output_modalities: Option<Vec<Modality>>,
    /// `"auto"` or `"none"` (out of band).
    #[serde(default)]
    pub conversation: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub audio: Option<Value>,
    #[serde(default)]
    pub input: Option<Vec<Value>>,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub max_output_tokens: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub prompt: Option<Value>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
}

/// An output modality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Modality {
    Text,
    Audio,
}

/// `status` of a client item (accepted, not used).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemStatus {
    Completed,
    Incomplete,
    InProgress,
}

/// `object` of a client item (accepted, not used).
#[derive(Debug, Deserialize)]
pub(crate) enum ItemObject {
    #[serde(rename = "realtime.item")]
    RealtimeItem,
}

/// An item in `conversation.item.create` (`type` moved out as the variant key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) enum ClientItem {
    #[serde(rename = "message")]
    Message {
        #[serde(default)]
        id: Option<String>,
        role: String,
        content: Vec<ClientContent>,
        #[serde(default)]
        object: Option<ItemObject>,
        #[serde(default)]
        status: Option<ItemStatus>,
    },
    #[serde(rename = "function_call")]
    FunctionCall {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        call_id: Option<String>,
        name: String,
        #[serde(default)]
        arguments: String,
        #[serde(default)]
        object: Option<ItemObject>,
        #[serde(default)]
        status: Option<ItemStatus>,
    },
    #[serde(rename = "function_call_output")]
    FunctionCallOutput {
        #[serde(default)]
        id: Option<String>,
        call_id: String,
        output: String,
        #[serde(default)]
        object: Option<ItemObject>,
        #[serde(default)]
        status: Option<ItemStatus>,
    },
}

/// A content part in a client item (`type` moved out as the variant key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) enum ClientContent {
    #[serde(rename = "input_text")]
    InputText { text: String },
    #[serde(rename = "input_audio")]
    InputAudio {
        #[serde(default)]
        audio: Option<String>,
        #[serde(default)]
        transcript: Option<String>,
    },
    #[serde(rename = "input_image")]
    InputImage {
        #[serde(default)]
        image_url: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    },
    #[serde(rename = "output_text", alias = "text")]
    OutputText { text: String },
    #[serde(rename = "output_audio", alias = "audio")]
    OutputAudio {
        #[serde(default)]
        audio: Option<String>,
        #[serde(default)]
        transcript: Option<String>,
    },
}

/// An item as the server shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WireItem {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub object: &'static str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<WireContent>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// A content part as the server shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub(crate) enum WireContent {
    #[serde(rename = "input_text")]
    InputText { text: String },
    #[serde(rename = "input_audio")]
    InputAudio {
        #[serde(skip_serializing_if = "Option::is_none")]
        audio: Option<String>,
        transcript: Option<String>,
    },
    #[serde(rename = "output_text")]
    OutputText { text: String },
    #[serde(rename = "output_audio")]
    OutputAudio {
        #[serde(skip_serializing_if = "Option::is_none")]
        audio: Option<String>,
        transcript: String,
    },
}

/// `part` of `response.content_part.*`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub param: Option<String>,
    pub event_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusDetails {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct InputTokenDetails {
    pub text_tokens: u64,
    pub audio_tokens: u64,
    pub image_tokens: u64,
    pub cached_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct OutputTokenDetails {
    pub text_tokens: u64,
    pub audio_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Usage {
    pub total_tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub input_token_details: InputTokenDetails,
    pub output_token_details: OutputTokenDetails,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct WireResponse {
    pub object: &'static str,
    pub id: String,
    pub status: &'static str,
    pub status_details: Option<StatusDetails>,
    pub output: Vec<WireItem>,
    pub conversation_id: Option<String>,
    pub output_modalities: Vec<&'static str>,
    pub max_output_tokens: Value,
    pub usage: Option<Usage>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TranscriptionUsage {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RateLimit {
    pub name: &'static str,
    pub limit: u64,
    pub remaining: u64,
    pub reset_seconds: f64,
}

/// A server event (the subset this server emits).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub(crate) enum ServerEvent {
    #[serde(rename = "error")]
    Error { error: ErrorBody },
    #[serde(rename = "session.created")]
    SessionCreated { session: Value },
    #[serde(rename = "session.updated")]
    SessionUpdated { session: Value },
    #[serde(rename = "conversation.item.added")]
    ItemAdded {
        previous_item_id: Option<String>,
        item: WireItem,
    },
    #[serde(rename = "conversation.item.done")]
    ItemDone {
        previous_item_id: Option<String>,
        item: WireItem,
    },
    #[serde(rename = "conversation.item.retrieved")]
    ItemRetrieved { item: WireItem },
    #[serde(rename = "conversation.item.truncated")]
    ItemTruncated {
        item_id: String,
        content_index: u32,
        audio_end_ms: u64,
    },
    #[serde(rename = "conversation.item.deleted")]
    ItemDeleted { item_id: String },
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    TranscriptionCompleted {
        item_id: String,
        content_index: u32,
        transcript: String,
        usage: TranscriptionUsage,
    },
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        audio_start_ms: u64,
        item_id: String,
    },
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped { audio_end_ms: u64, item_id: String },
    #[serde(rename = "input_audio_buffer.timeout_triggered")]
    TimeoutTriggered {
        audio_start_ms: u64,
        audio_end_ms: u64,
        item_id: String,
    },
    #[serde(rename = "input_audio_buffer.committed")]
    Committed {
        previous_item_id: Option<String>,
        item_id: String,
    },
    #[serde(rename = "input_audio_buffer.cleared")]
    Cleared {},
    #[serde(rename = "response.created")]
    ResponseCreated { response: WireResponse },
    #[serde(rename = "response.done")]
    ResponseDone { response: WireResponse },
    #[serde(rename = "rate_limits.updated")]
    RateLimits { rate_limits: Vec<RateLimit> },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        response_id: String,
        output_index: u32,
        item: WireItem,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        response_id: String,
        output_index: u32,
        item: WireItem,
    },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
        part: Part,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
        part: Part,
    },
    #[serde(rename = "response.output_audio.delta")]
    AudioDelta {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
        delta: String,
    },
    #[serde(rename = "response.output_audio.done")]
    AudioDone {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
    },
    #[serde(rename = "response.output_audio_transcript.delta")]
    TranscriptDelta {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
        delta: String,
    },
    #[serde(rename = "response.output_audio_transcript.done")]
    TranscriptDone {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
        transcript: String,
    },
    #[serde(rename = "response.output_text.delta")]
    TextDelta {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
        delta: String,
    },
    #[serde(rename = "response.output_text.done")]
    TextDone {
        response_id: String,
        item_id: String,
        output_index: u32,
        content_index: u32,
        text: String,
    },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgsDelta {
        response_id: String,
        item_id: String,
        output_index: u32,
        call_id: String,
        delta: String,
    },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgsDone {
        response_id: String,
        item_id: String,
        output_index: u32,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// An event with its `event_id`.
#[derive(Serialize)]
pub(crate) struct Envelope<'a> {
    pub event_id: &'a str,
    #[serde(flatten)]
    pub event: &'a ServerEvent,
}

impl Envelope<'_> {
    /// The frame text: the same text as `serde_json::to_string(self)`, written directly for
    /// `response.output_audio.delta` (the frame sent 50 times a second per answering
    /// session: no map serializer for the flattened event, no escaping scan of the base64
    /// text, which needs none).
    pub fn to_json(&self) -> serde_json::Result<String> {
        if let ServerEvent::AudioDelta {
            response_id,
            item_id,
            output_index,
            content_index,
            delta,
        } = self.event
        {
            let mut out = String::with_capacity(delta.len() + 160);
            out.push_str("{\"event_id\":");
            push_json_str(&mut out, self.event_id)?;
            out.push_str(",\"type\":\"response.output_audio.delta\",\"response_id\":");
            push_json_str(&mut out, response_id)?;
            out.push_str(",\"item_id\":");
            push_json_str(&mut out, item_id)?;
            out.push_str(&format!(
                ",\"output_index\":{output_index},\"content_index\":{content_index},\"delta\":"
            ));
            // Base64 never needs escaping; checked without an early exit so that it
            // vectorizes.
            let needs_escape = delta.bytes().fold(false, |acc, b| {
                acc | (b < 0x20) | (b == b'"') | (b == b'\\')
            });
            if !needs_escape {
                out.push('"');
                out.push_str(delta);
                out.push('"');
            } else {
                push_json_str(&mut out, delta)?;
            }
            out.push('}');
            return Ok(out);
        }
        serde_json::to_string(self)
    }
}

/// Appends `s` as a JSON string (quoted, escaped as serde_json does).
fn push_json_str(out: &mut String, s: &str) -> serde_json::Result<()> {
    out.push_str(&serde_json::to_string(s)?);
    Ok(())
}

#[cfg(test)]
mod envelope_tests {
    use super::*;

    #[test]
    fn audio_delta_text_is_serdes() {
        for delta in ["AQID+g==", "", "not \"base64\"\n"] {
            let event = ServerEvent::AudioDelta {
                response_id: "resp_1".into(),
                item_id: "item_\"2".into(),
                output_index: 3,
                content_index: 0,
                delta: delta.into(),
            };
            let env = Envelope {
                event_id: "event_7",
                event: &event,
            };
            assert_eq!(env.to_json().unwrap(), serde_json::to_string(&env).unwrap());
        }
    }
}
