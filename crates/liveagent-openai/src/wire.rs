//! Wire types of the OpenAI Realtime GA protocol: the client events this crate sends
//! ([`ClientEvent`]) and the server events it understands ([`ServerEvent`], with a catch-all
//! for the rest). Field names and shapes follow the official SDK's models; optional fields are
//! left out when unset, and `Option<Option<T>>` fields serialize `Some(None)` as `null`
//! ("turn off") and `None` as absent ("leave unchanged").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Eagerness, MaxOutputTokens, NoiseReduction, ToolChoice, Voice};

mod delta;
pub use delta::{AudioDeltaFrame, AUDIO_DELTA_TYPE};

// ---------------------------------------------------------------------------------------
// Client events
// ---------------------------------------------------------------------------------------

/// An event the client sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ClientEvent {
    /// `session.update`.
    #[serde(rename = "session.update")]
    SessionUpdate {
        /// Client event id, echoed in `error.event_id`.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The session settings to change.
        session: Box<SessionConfig>,
    },
    /// `input_audio_buffer.append`.
    #[serde(rename = "input_audio_buffer.append")]
    InputAudioBufferAppend {
        /// Base64 PCM16 24 kHz audio.
        audio: String,
    },
    /// `input_audio_buffer.commit`.
    #[serde(rename = "input_audio_buffer.commit")]
    InputAudioBufferCommit,
    /// `input_audio_buffer.clear`.
    #[serde(rename = "input_audio_buffer.clear")]
    InputAudioBufferClear,
    /// `conversation.item.create`.
    #[serde(rename = "conversation.item.create")]
    ConversationItemCreate {
        /// Client event id.
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<String>,
        /// The item to add.
        item: Item,
    },
    /// `conversation.item.truncate`.
    #[serde(rename = "conversation.item.truncate")]
    ConversationItemTruncate {
        /// The assistant item.
        item_id: String,
        /// Always 0.
        content_index: u32,
        /// Milliseconds of audio to keep.
        audio_end_ms: u64,
    },
    /// `conversation.item.delete`.
    #[serde(rename = "conversation.item.delete")]
    ConversationItemDelete {
        /// The item.
        item_id: String,
    },
    /// `response.create`.
    #[serde(rename = "response.create")]
    ResponseCreate {
        /// Per-response overrides.
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<Value>,
    },
    /// `response.cancel`.
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        /// The response to cancel (default: the active one).
        #[serde(skip_serializing_if = "Option::is_none")]
        response_id: Option<String>,
    },
}

impl ClientEvent {
    /// The text of an `input_audio_buffer.append` frame for the audio bytes `audio`, written
    /// in one pass into one allocation: the same text as
    /// `ClientEvent::InputAudioBufferAppend { audio: base64(audio) }.to_json()` without the
    /// intermediate base64 `String` and its copy (base64 needs no JSON escaping).
    ///
    /// ```
    /// use liveagent_openai::wire::ClientEvent;
    /// let audio = [1u8, 2, 3, 250];
    /// assert_eq!(
    ///     ClientEvent::append_json(&audio),
    ///     ClientEvent::InputAudioBufferAppend { audio: "AQID+g==".into() }.to_json()
    /// );
    /// ```
    pub fn append_json(audio: &[u8]) -> String {
        const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
        let mut text = String::with_capacity(HEAD.len() + audio.len().div_ceil(3) * 4 + 2);
        text.push_str(HEAD);
        // SIMD base64 (`base64-simd`): the scalar engine was a fifth of the client's time.
        base64_simd::STANDARD.encode_append(audio, &mut text);
        text.push_str("\"}");
        text
    }

    /// The frame text.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no custom
        // serializers that error.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `session` object of `session.update` (GA `RealtimeSessionCreateRequest`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SessionConfig {
    /// Always `"realtime"`.
    #[serde(rename = "type")]
    pub kind: SessionType,
    /// The model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `["audio"]` or `["text"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_modalities: Option<Vec<Modality>>,
    /// Audio settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<SessionAudio>,
    /// Function tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<FunctionTool>>,
    /// Tool choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Output token limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<MaxOutputTokens>,
}

/// `session.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionType {
    /// A speech-to-speech session.
    #[default]
    Realtime,
    /// A transcription-only session.
    Transcription,
}

/// An output modality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Speech (with transcript).
    Audio,
    /// Text.
    Text,
}

/// `session.audio`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SessionAudio {
    /// `audio.input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<AudioInputConfig>,
    /// `audio.output`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<AudioOutputConfig>,
}

/// An audio format object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AudioFormat {
    /// PCM16 little-endian mono.
    #[serde(rename = "audio/pcm")]
    Pcm {
        /// Always 24000.
        rate: u32,
    },
    /// G.711 µ-law.
    #[serde(rename = "audio/pcmu")]
    Pcmu,
    /// G.711 A-law.
    #[serde(rename = "audio/pcma")]
    Pcma,
}

impl AudioFormat {
    /// PCM16 at 24 kHz.
    pub fn pcm24k() -> Self {
        AudioFormat::Pcm { rate: 24_000 }
    }
}

/// `session.audio.input`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AudioInputConfig {
    /// Input format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// Noise reduction; `Some(None)` turns it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_reduction: Option<Option<NoiseReductionConfig>>,
    /// Input transcription; `Some(None)` turns it off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription: Option<Option<TranscriptionConfig>>,
    /// Turn detection; `Some(None)` means manual turns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_detection: Option<Option<TurnDetectionConfig>>,
}

/// `noise_reduction`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NoiseReductionConfig {
    /// `near_field` or `far_field`.
    #[serde(rename = "type")]
    pub kind: NoiseReduction,
}

/// `transcription`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TranscriptionConfig {
    /// The transcription model.
    pub model: String,
    /// Input language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// `turn_detection`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnDetectionConfig {
    /// Server VAD.
    ServerVad {
        /// Threshold.
        threshold: f32,
        /// Prefix padding ms.
        prefix_padding_ms: u32,
        /// Silence ms.
        silence_duration_ms: u32,
        /// Idle timeout ms.
        #[serde(skip_serializing_if = "Option::is_none")]
        idle_timeout_ms: Option<u32>,
        /// Auto-create responses.
        create_response: bool,
        /// Auto-interrupt responses.
        interrupt_response: bool,
    },
    /// Semantic VAD.
    SemanticVad {
        /// Eagerness.
        eagerness: Eagerness,
        /// Auto-create responses.
        create_response: bool,
        /// Auto-interrupt responses.
        interrupt_response: bool,
    },
}

/// `session.audio.output`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AudioOutputConfig {
    /// Output format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<AudioFormat>,
    /// Voice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
    /// Speed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed: Option<f32>,
}

/// A function tool in `session.tools`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionTool {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

/// A conversation item, as sent in `conversation.item.create` (and as found, with more
/// fields, in server events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A message.
    Message {
        /// Item id (server events; optional when creating).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// `user`, `assistant` or `system`.
        role: Role,
        /// The content parts.
        #[serde(default)]
        content: Vec<ContentPart>,
        /// Status (server events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
    /// A function call.
    FunctionCall {
        /// Item id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Call id.
        #[serde(default)]
        call_id: String,
        /// Function name.
        #[serde(default)]
        name: String,
        /// Arguments, a JSON-encoded string.
        #[serde(default)]
        arguments: String,
        /// Status (server events).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<String>,
    },
    /// A function call's output.
    FunctionCallOutput {
        /// Item id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The call answered.
        #[serde(default)]
        call_id: String,
        /// The output, a string.
        #[serde(default)]
        output: String,
    },
    /// Any other item type (MCP calls, ...).
    #[serde(other)]
    Other,
}

impl Item {
    /// A user text message.
    pub fn user_text(text: impl Into<String>) -> Self {
        Item::Message {
            id: None,
            role: Role::User,
            content: vec![ContentPart::InputText { text: text.into() }],
            status: None,
        }
    }

    /// An assistant text message (for history replay).
    pub fn assistant_text(text: impl Into<String>) -> Self {
        Item::Message {
            id: None,
            role: Role::Assistant,
            content: vec![ContentPart::OutputText { text: text.into() }],
            status: None,
        }
    }

    /// The item id, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Item::Message { id, .. }
            | Item::FunctionCall { id, .. }
            | Item::FunctionCallOutput { id, .. } => id.as_deref(),
            Item::Other => None,
        }
    }
}

/// A message role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A system message.
    System,
}

/// A content part of a message item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// User or system text.
    InputText {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// User audio (in server events; `transcript` may be null).
    InputAudio {
        /// The transcript, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript: Option<String>,
    },
    /// Assistant text.
    OutputText {
        /// The text.
        #[serde(default)]
        text: String,
    },
    /// Assistant audio (in server events, audio bytes left out).
    OutputAudio {
        /// The transcript.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcript: Option<String>,
    },
    /// Any other part type.
    #[serde(other)]
    Other,
}

// ---------------------------------------------------------------------------------------
// Server events
// ---------------------------------------------------------------------------------------

/// An event the server sends. Unknown types decode as [`ServerEvent::Unknown`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum ServerEvent {
    /// `error`.
    #[serde(rename = "error")]
    Error {
        /// The error.
        error: ApiError,
    },
    /// `session.created`.
    #[serde(rename = "session.created")]
    SessionCreated {
        /// The effective session (only `id` is read).
        #[serde(default)]
        session: SessionInfo,
    },
    /// `session.updated`.
    #[serde(rename = "session.updated")]
    SessionUpdated {
        /// The effective session.
        #[serde(default)]
        session: SessionInfo,
    },
    /// `input_audio_buffer.speech_started`.
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted {
        /// Ms of input audio when speech started.
        #[serde(default)]
        audio_start_ms: Option<u64>,
        /// The user item being recorded.
        #[serde(default)]
        item_id: Option<String>,
    },
    /// `input_audio_buffer.speech_stopped`.
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped {
        /// Ms of input audio when speech stopped.
        #[serde(default)]
        audio_end_ms: Option<u64>,
        /// The user item.
        #[serde(default)]
        item_id: Option<String>,
    },
    /// `input_audio_buffer.committed`.
    #[serde(rename = "input_audio_buffer.committed")]
    InputCommitted {
        /// The new user item.
        item_id: String,
    },
    /// `input_audio_buffer.cleared`.
    #[serde(rename = "input_audio_buffer.cleared")]
    InputCleared,
    /// `conversation.item.added` (and the beta-era `conversation.item.created`).
    #[serde(
        rename = "conversation.item.added",
        alias = "conversation.item.created"
    )]
    ItemAdded {
        /// The item.
        item: Item,
    },
    /// `conversation.item.done`.
    #[serde(rename = "conversation.item.done")]
    ItemDone {
        /// The item.
        item: Item,
    },
    /// `conversation.item.truncated`.
    #[serde(rename = "conversation.item.truncated")]
    ItemTruncated {
        /// The item.
        item_id: String,
        /// Where it was cut.
        #[serde(default)]
        audio_end_ms: u64,
    },
    /// `conversation.item.input_audio_transcription.delta`.
    #[serde(rename = "conversation.item.input_audio_transcription.delta")]
    InputTranscriptionDelta {
        /// The user item.
        item_id: String,
        /// The text delta.
        #[serde(default)]
        delta: Option<String>,
    },
    /// `conversation.item.input_audio_transcription.completed`.
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    InputTranscriptionCompleted {
        /// The user item.
        item_id: String,
        /// The transcript.
        #[serde(default)]
        transcript: String,
    },
    /// `conversation.item.input_audio_transcription.failed`.
    #[serde(rename = "conversation.item.input_audio_transcription.failed")]
    InputTranscriptionFailed {
        /// The user item.
        item_id: String,
        /// Why.
        #[serde(default)]
        error: Option<ApiError>,
    },
    /// `response.created`.
    #[serde(rename = "response.created")]
    ResponseCreated {
        /// The response.
        response: ResponseInfo,
    },
    /// `response.output_item.added`.
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        /// The response.
        response_id: String,
        /// The item (content empty).
        item: Item,
    },
    /// `response.output_item.done`.
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        /// The response.
        response_id: String,
        /// The final item.
        item: Item,
    },
    /// `response.output_audio.delta`.
    #[serde(rename = "response.output_audio.delta")]
    OutputAudioDelta {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// Base64 PCM16 24 kHz.
        delta: String,
    },
    /// `response.output_audio.done`.
    #[serde(rename = "response.output_audio.done")]
    OutputAudioDone {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
    },
    /// `response.output_audio_transcript.delta`.
    #[serde(rename = "response.output_audio_transcript.delta")]
    OutputAudioTranscriptDelta {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// The text delta.
        delta: String,
    },
    /// `response.output_audio_transcript.done`.
    #[serde(rename = "response.output_audio_transcript.done")]
    OutputAudioTranscriptDone {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// The full transcript.
        #[serde(default)]
        transcript: String,
    },
    /// `response.output_text.delta`.
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// The text delta.
        delta: String,
    },
    /// `response.output_text.done`.
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        /// The response.
        response_id: String,
        /// The assistant item.
        item_id: String,
        /// The full text.
        #[serde(default)]
        text: String,
    },
    /// `response.function_call_arguments.done`.
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone {
        /// The response.
        response_id: String,
        /// The function call item.
        item_id: String,
        /// The call id.
        call_id: String,
        /// The function (GA includes it).
        #[serde(default)]
        name: Option<String>,
        /// The arguments, JSON as a string.
        #[serde(default)]
        arguments: String,
    },
    /// `response.done`.
    #[serde(rename = "response.done")]
    ResponseDone {
        /// The final response.
        response: ResponseInfo,
    },
    /// Any other event (deltas this crate does not need, rate limits, MCP, ...).
    #[serde(other)]
    Unknown,
}

/// The `error` object of an `error` event.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ApiError {
    /// `invalid_request_error`, `server_error`, ...
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// `invalid_api_key`, `model_not_found`, ...
    #[serde(default)]
    pub code: Option<String>,
    /// For people.
    #[serde(default)]
    pub message: Option<String>,
    /// The offending parameter.
    #[serde(default)]
    pub param: Option<String>,
    /// The client event that failed.
    #[serde(default)]
    pub event_id: Option<String>,
}

/// What this crate reads of a `session` object.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct SessionInfo {
    /// The session id (`sess_...`).
    #[serde(default)]
    pub id: Option<String>,
}

/// What this crate reads of a `response` object.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ResponseInfo {
    /// `resp_...`.
    #[serde(default)]
    pub id: Option<String>,
    /// `in_progress`, `completed`, `cancelled`, `failed`, `incomplete`.
    #[serde(default)]
    pub status: Option<String>,
    /// Why it ended that way.
    #[serde(default)]
    pub status_details: Option<StatusDetails>,
    /// The output items.
    #[serde(default)]
    pub output: Vec<Item>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<UsageInfo>,
}

/// `response.status_details`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StatusDetails {
    /// `turn_detected`, `client_cancelled`, `max_output_tokens`, `content_filter`.
    #[serde(default)]
    pub reason: Option<String>,
    /// For failed responses.
    #[serde(default)]
    pub error: Option<ApiError>,
}

/// `response.usage`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct UsageInfo {
    /// Total tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input details.
    #[serde(default)]
    pub input_token_details: Option<TokenDetails>,
    /// Output details.
    #[serde(default)]
    pub output_token_details: Option<TokenDetails>,
}

/// Token details.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct TokenDetails {
    /// Audio tokens.
    #[serde(default)]
    pub audio_tokens: Option<u64>,
    /// Cached tokens (input only).
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

/// Just the `type` of a frame (to log unknown events).
#[derive(Deserialize)]
pub(crate) struct TypeOnly {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}
