//! Wire types of the Gemini Live API (`BidiGenerateContent`), in canonical lowerCamelCase.
//!
//! Client messages are the [`ClientMessage`] enum: serde's external tagging gives exactly one
//! top-level key per frame (`setup`, `clientContent`, `realtimeInput`, `toolResponse`), and
//! [`RealtimeInput`] is an enum too, so a `realtimeInput` frame carries exactly one field.
//!
//! Server messages are the [`ServerMessage`] struct: every field is optional because
//! `usageMetadata` may come beside any of the one-of fields, and unknown top-level keys are
//! kept in [`ServerMessage::other`] so the protocol can log them. The decoder is lenient where
//! proto3 JSON is: int64 values may be JSON strings or numbers ([`de_opt_u64`]), durations are
//! strings such as `"50s"` ([`parse_duration`]), and base64 may use either alphabet, padded
//! or not ([`decode_base64`]).

use std::time::Duration;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

// ------------------------------------------------------------------------------------------
// Client → server
// ------------------------------------------------------------------------------------------

/// One client frame. Serializes to a JSON object with exactly one top-level key.
///
/// ```
/// use liveagent_gemini::wire::{ClientMessage, RealtimeInput};
/// let frame = ClientMessage::RealtimeInput(RealtimeInput::AudioStreamEnd(true));
/// assert_eq!(serde_json::to_string(&frame).unwrap(), r#"{"realtimeInput":{"audioStreamEnd":true}}"#);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::large_enum_variant)] // one setup per connection; boxing buys nothing
pub enum ClientMessage {
    /// Session configuration; the first frame of a connection.
    Setup(Setup),
    /// Turns appended to the conversation (text turns, history replay).
    ClientContent(ClientContent),
    /// Streaming input: audio, activity markers.
    RealtimeInput(RealtimeInput),
    /// Results of the function calls of one `toolCall`.
    ToolResponse(ToolResponse),
}

impl ClientMessage {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Every field is a plain string, number, bool, map or `Value`: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode a Gemini client frame");
            String::from("{}")
        })
    }
}

/// `setup`: the session configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setup {
    /// `models/<id>`.
    pub model: String,
    /// Output modality, voice, sampling options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_config: Option<GenerationConfig>,
    /// The system prompt, as a `Content` object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Content>,
    /// Function declarations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Activity detection and barge-in behaviour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realtime_input_config: Option<RealtimeInputConfig>,
    /// `{}` turns on transcription of the user's audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_audio_transcription: Option<AudioTranscriptionConfig>,
    /// `{}` turns on transcription of the model's audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_audio_transcription: Option<AudioTranscriptionConfig>,
    /// `{}` turns on resumption handles; `{"handle": ..}` resumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_resumption: Option<SessionResumptionConfig>,
    /// Sliding-window compression of the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window_compression: Option<ContextWindowCompression>,
}

/// `setup.generationConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// `["AUDIO"]` or `["TEXT"]` (one modality per session).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_modalities: Vec<Modality>,
    /// Voice and language of audio output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_config: Option<SpeechConfig>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Output token limit per turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
}

/// A response modality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Modality {
    /// Spoken answers (PCM16 24 kHz).
    Audio,
    /// Text answers.
    Text,
}

/// `generationConfig.speechConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeechConfig {
    /// The prebuilt voice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_config: Option<VoiceConfig>,
    /// BCP-47 language of the speech, e.g. `en-US`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
}

/// `speechConfig.voiceConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceConfig {
    /// `{"voiceName": "Puck"}`.
    pub prebuilt_voice_config: PrebuiltVoiceConfig,
}

/// `voiceConfig.prebuiltVoiceConfig`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrebuiltVoiceConfig {
    /// Puck, Charon, Kore, Fenrir, Aoede, ...
    pub voice_name: String,
}

/// A `Content`: a role and its parts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    /// `user` or `model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The parts.
    #[serde(default)]
    pub parts: Vec<Part>,
}

impl Content {
    /// A content of `role` with one text part.
    pub fn text(role: Option<&str>, text: impl Into<String>) -> Self {
        Content {
            role: role.map(str::to_owned),
            parts: vec![Part::text(text)],
        }
    }
}

/// One part of a `Content`. Only one field is set per part.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Inline media (model audio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_data: Option<Blob>,
    /// A function call (history replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// A function response (history replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_response: Option<FunctionResponse>,
    /// True for a "thought" part (model reasoning, not for the user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thought: Option<bool>,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Part {
            text: Some(text.into()),
            ..Part::default()
        }
    }
}

/// Inline bytes: a MIME type and base64 data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    /// `audio/pcm;rate=16000`, ...
    #[serde(default)]
    pub mime_type: String,
    /// Base64 (standard alphabet when we send; either alphabet when we receive).
    #[serde(default)]
    pub data: String,
}

impl Blob {
    /// PCM16 little-endian audio at `rate`, standard base64.
    pub fn pcm(bytes: &[u8], rate: u32) -> Self {
        Blob {
            mime_type: format!("audio/pcm;rate={rate}"),
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// `tools[]` entry holding function declarations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// The functions.
    pub function_declarations: Vec<FunctionDeclaration>,
}

/// One function the model may call, its parameters given as JSON Schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeclaration {
    /// The function name.
    pub name: String,
    /// What it does.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub description: String,
    /// A JSON Schema object for the arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters_json_schema: Option<Value>,
}

/// `setup.realtimeInputConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeInputConfig {
    /// Server-side voice activity detection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_activity_detection: Option<AutomaticActivityDetection>,
    /// `START_OF_ACTIVITY_INTERRUPTS` or `NO_INTERRUPTION`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_handling: Option<crate::config::ActivityHandling>,
    /// Which input counts as the user's turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_coverage: Option<crate::config::TurnCoverage>,
}

/// `realtimeInputConfig.automaticActivityDetection`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticActivityDetection {
    /// True: the client marks activity with `activityStart`/`activityEnd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// How readily speech start is detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_of_speech_sensitivity: Option<crate::config::StartSensitivity>,
    /// How readily speech end is detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_of_speech_sensitivity: Option<crate::config::EndSensitivity>,
    /// Speech needed before start of speech is committed, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_padding_ms: Option<u32>,
    /// Silence needed before end of speech is committed, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silence_duration_ms: Option<u32>,
}

/// `{}`: transcription on; `languageCodes` names the languages to expect.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioTranscriptionConfig {
    /// BCP-47 codes of the spoken languages (`en-US`, `pt-PT`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language_codes: Option<Vec<String>>,
}

/// `setup.sessionResumption`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResumptionConfig {
    /// The handle of the session to resume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
    /// Ask for `lastConsumedClientMessageIndex` in updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transparent: Option<bool>,
}

/// `setup.contextWindowCompression`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextWindowCompression {
    /// Context size that triggers compression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_tokens: Option<u64>,
    /// The sliding window (`{}` for defaults).
    pub sliding_window: SlidingWindow,
}

/// `contextWindowCompression.slidingWindow`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlidingWindow {
    /// Context size kept after compression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_tokens: Option<u64>,
}

/// `clientContent`: turns appended to the conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientContent {
    /// The turns, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<Content>,
    /// True: the model answers now.
    #[serde(default)]
    pub turn_complete: bool,
}

/// `realtimeInput`: exactly one of these per frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RealtimeInput {
    /// Microphone audio.
    Audio(Blob),
    /// Realtime text input.
    Text(String),
    /// Manual activity detection: the user started.
    ActivityStart(Empty),
    /// Manual activity detection: the user stopped.
    ActivityEnd(Empty),
    /// The audio stream paused (automatic activity detection): flush buffered audio.
    AudioStreamEnd(bool),
}

/// `{}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// `toolResponse`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResponse {
    /// One response per call of the `toolCall`.
    pub function_responses: Vec<FunctionResponse>,
}

/// A function's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionResponse {
    /// The call id (absent only when the call had none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function name.
    pub name: String,
    /// A JSON object.
    pub response: Value,
}

/// A function call, as the server sends it (and as history replays it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionCall {
    /// The call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function name.
    #[serde(default)]
    pub name: String,
    /// The arguments, a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
}

// ------------------------------------------------------------------------------------------
// Server → client
// ------------------------------------------------------------------------------------------

/// One server frame. `usageMetadata` may come beside any of the other fields.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerMessage {
    /// The `setup` was accepted.
    #[serde(alias = "setup_complete")]
    pub setup_complete: Option<SetupComplete>,
    /// Model output, transcripts, turn markers.
    #[serde(alias = "server_content")]
    pub server_content: Option<ServerContent>,
    /// Function calls to run.
    #[serde(alias = "tool_call")]
    pub tool_call: Option<ToolCall>,
    /// Function calls withdrawn.
    #[serde(alias = "tool_call_cancellation")]
    pub tool_call_cancellation: Option<ToolCallCancellation>,
    /// The server will close the connection soon.
    #[serde(alias = "go_away")]
    pub go_away: Option<GoAway>,
    /// A new resumption handle.
    #[serde(alias = "session_resumption_update")]
    pub session_resumption_update: Option<SessionResumptionUpdate>,
    /// Token usage.
    #[serde(alias = "usage_metadata")]
    pub usage_metadata: Option<UsageMetadata>,
    /// Voice activity (newer servers).
    #[serde(alias = "voice_activity")]
    pub voice_activity: Option<VoiceActivity>,
    /// VAD signal (newer servers).
    #[serde(alias = "voice_activity_detection_signal")]
    pub voice_activity_detection_signal: Option<VadSignal>,
    /// Any other top-level key (logged and ignored).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `setupComplete`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupComplete {
    /// The session id, when the server gives one.
    pub session_id: Option<String>,
}

/// `serverContent`. Fields usually arrive in separate frames.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerContent {
    /// Model output parts (audio, text).
    #[serde(alias = "model_turn")]
    pub model_turn: Option<Content>,
    /// The model finished its turn.
    #[serde(alias = "turn_complete")]
    pub turn_complete: Option<bool>,
    /// User activity cut the model off.
    pub interrupted: Option<bool>,
    /// Generation finished (not sent for interrupted turns).
    #[serde(alias = "generation_complete")]
    pub generation_complete: Option<bool>,
    /// Transcript of the user's audio.
    #[serde(alias = "input_transcription")]
    pub input_transcription: Option<Transcription>,
    /// Transcript of the model's audio.
    #[serde(alias = "output_transcription")]
    pub output_transcription: Option<Transcription>,
    /// Why the turn completed (`MALFORMED_FUNCTION_CALL`, ...).
    #[serde(alias = "turn_complete_reason")]
    pub turn_complete_reason: Option<String>,
    /// The model waits for user input.
    #[serde(alias = "waiting_for_input")]
    pub waiting_for_input: Option<bool>,
}

/// A transcript piece.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transcription {
    /// The text delta.
    pub text: Option<String>,
    /// The transcription of this utterance is finished.
    pub finished: Option<bool>,
}

/// `toolCall`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    /// The calls to run, together.
    #[serde(default, alias = "function_calls")]
    pub function_calls: Vec<FunctionCall>,
}

/// `toolCallCancellation`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ToolCallCancellation {
    /// The withdrawn call ids.
    #[serde(default)]
    pub ids: Vec<String>,
}

/// `goAway`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoAway {
    /// Time left before the server closes the connection (protobuf Duration).
    #[serde(default, alias = "time_left", deserialize_with = "de_opt_duration")]
    pub time_left: Option<Duration>,
}

/// `sessionResumptionUpdate`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionResumptionUpdate {
    /// The handle of the current state (empty when not resumable).
    #[serde(alias = "new_handle")]
    pub new_handle: Option<String>,
    /// The session can be resumed from this point.
    pub resumable: Option<bool>,
    /// Index of the last client message included in the state (transparent mode).
    #[serde(
        default,
        alias = "last_consumed_client_message_index",
        deserialize_with = "de_opt_u64"
    )]
    pub last_consumed_client_message_index: Option<u64>,
}

/// `usageMetadata`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub prompt_token_count: Option<u64>,
    /// Cached prompt tokens.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub cached_content_token_count: Option<u64>,
    /// Response tokens.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub response_token_count: Option<u64>,
    /// Tool-use prompt tokens.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub tool_use_prompt_token_count: Option<u64>,
    /// Thinking tokens.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub thoughts_token_count: Option<u64>,
    /// Total tokens.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub total_token_count: Option<u64>,
    /// Prompt tokens per modality.
    #[serde(default)]
    pub prompt_tokens_details: Vec<ModalityTokenCount>,
    /// Response tokens per modality.
    #[serde(default)]
    pub response_tokens_details: Vec<ModalityTokenCount>,
}

/// Tokens of one modality.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModalityTokenCount {
    /// `TEXT`, `AUDIO`, ...
    pub modality: Option<String>,
    /// The count.
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub token_count: Option<u64>,
}

/// `voiceActivity`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VoiceActivity {
    /// `ACTIVITY_START` or `ACTIVITY_END`.
    pub voice_activity_type: Option<String>,
}

/// `voiceActivityDetectionSignal`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VadSignal {
    /// `VAD_SIGNAL_TYPE_SOS` or `VAD_SIGNAL_TYPE_EOS`.
    pub vad_signal_type: Option<String>,
}

/// Decodes one server frame (text or binary, UTF-8 JSON).
///
/// ```
/// use liveagent_gemini::wire::decode_server;
/// let msg = decode_server(br#"{"sessionResumptionUpdate":{"newHandle":"h","resumable":true,"lastConsumedClientMessageIndex":"7"}}"#).unwrap();
/// assert_eq!(msg.session_resumption_update.unwrap().last_consumed_client_message_index, Some(7));
/// ```
pub fn decode_server(bytes: &[u8]) -> Result<ServerMessage, serde_json::Error> {
    serde_json::from_slice(bytes)
}

// ------------------------------------------------------------------------------------------
// Lenient scalar decoding
// ------------------------------------------------------------------------------------------

/// Deserializes an optional unsigned integer given as a JSON number or a numeric string
/// (proto3 JSON writes int64 as strings). `null` gives `None`.
pub fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an unsigned integer, as a number or a string")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("negative count {v}")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 {
                Ok(Some(v as u64))
            } else {
                Err(E::custom(format!("not a count: {v}")))
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| E::custom(format!("not an integer: {v:?}")))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        Some(Value::String(s)) => parse_duration(&s),
        Some(Value::Number(n)) => n.as_f64().and_then(secs_to_duration),
        // proto3 JSON never sends an object here, but some encoders write {seconds, nanos}.
        Some(Value::Object(m)) => {
            let secs = m.get("seconds").and_then(|v| match v {
                Value::String(s) => s.parse::<f64>().ok(),
                other => other.as_f64(),
            });
            let nanos = m.get("nanos").and_then(Value::as_f64).unwrap_or(0.0);
            secs.and_then(|s| secs_to_duration(s + nanos / 1e9))
        }
        _ => None,
    })
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    if secs.is_finite() && (0.0..1e12).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// Parses a protobuf JSON Duration (`"50s"`, `"1.5s"`, `"0.000001s"`). Returns `None` for
/// anything else (negative durations included).
///
/// ```
/// use std::time::Duration;
/// use liveagent_gemini::wire::parse_duration;
/// assert_eq!(parse_duration("50s"), Some(Duration::from_secs(50)));
/// assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("soon"), None);
/// ```
pub fn parse_duration(s: &str) -> Option<Duration> {
    let num = s.trim().strip_suffix('s')?;
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    secs_to_duration(num.parse::<f64>().ok()?)
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decodes base64 in the standard or URL-safe alphabet, padded or not (proto3 JSON `bytes`).
///
/// ```
/// use liveagent_gemini::wire::decode_base64;
/// assert_eq!(decode_base64("-_8").unwrap(), vec![0xfb, 0xff]);
/// assert_eq!(decode_base64("+/8=").unwrap(), vec![0xfb, 0xff]);
/// ```
pub fn decode_base64(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    if data.bytes().any(|b| b == b'-' || b == b'_') {
        URL_SAFE_LENIENT.decode(data)
    } else {
        STANDARD_LENIENT.decode(data)
    }
}

/// Parses the sample rate out of a MIME type such as `audio/pcm;rate=24000`.
pub fn mime_rate(mime: &str) -> Option<u32> {
    mime.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if k.trim().eq_ignore_ascii_case("rate") {
            v.trim().parse().ok().filter(|r| *r > 0)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_as_string_or_number() {
        for text in [
            r#"{"lastConsumedClientMessageIndex":"42"}"#,
            r#"{"lastConsumedClientMessageIndex":42}"#,
            r#"{"lastConsumedClientMessageIndex":42.0}"#,
        ] {
            let u: SessionResumptionUpdate = serde_json::from_str(text).unwrap();
            assert_eq!(u.last_consumed_client_message_index, Some(42), "{text}");
        }
        let u: SessionResumptionUpdate =
            serde_json::from_str(r#"{"lastConsumedClientMessageIndex":null}"#).unwrap();
        assert_eq!(u.last_consumed_client_message_index, None);
        assert!(serde_json::from_str::<SessionResumptionUpdate>(
            r#"{"lastConsumedClientMessageIndex":"x"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<SessionResumptionUpdate>(
            r#"{"lastConsumedClientMessageIndex":-1}"#
        )
        .is_err());
    }

    #[test]
    fn int64_through_flatten() {
        // `ServerMessage` uses `flatten`, which buffers values; the lenient decoders must
        // work through that path too.
        let m = decode_server(br#"{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":"10","responseTokenCount":5,"totalTokenCount":"15"}}"#).unwrap();
        let u = m.usage_metadata.unwrap();
        assert_eq!(
            (
                u.prompt_token_count,
                u.response_token_count,
                u.total_token_count
            ),
            (Some(10), Some(5), Some(15))
        );
        let m = decode_server(br#"{"goAway":{"timeLeft":"1.5s"}}"#).unwrap();
        assert_eq!(
            m.go_away.unwrap().time_left,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("3.000000001s"), Some(Duration::new(3, 1)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1e3s"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("10"), None);
        let g: GoAway = serde_json::from_str(r#"{"timeLeft":"garbage"}"#).unwrap();
        assert_eq!(g.time_left, None);
        let g: GoAway =
            serde_json::from_str(r#"{"timeLeft":{"seconds":"2","nanos":500000000}}"#).unwrap();
        assert_eq!(g.time_left, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn base64_both_alphabets() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let std_padded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let std_nopad = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
        let url_padded = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
        let url_nopad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        for s in [std_padded, std_nopad, url_padded, url_nopad] {
            assert_eq!(decode_base64(&s).unwrap(), bytes, "{s}");
        }
        assert!(decode_base64("not base64!").is_err());
    }

    #[test]
    fn mime_rates() {
        assert_eq!(mime_rate("audio/pcm;rate=24000"), Some(24000));
        assert_eq!(mime_rate("audio/pcm; rate=16000"), Some(16000));
        assert_eq!(mime_rate("audio/pcm"), None);
        assert_eq!(mime_rate("audio/pcm;rate=0"), None);
    }

    #[test]
    fn one_key_per_client_frame() {
        let frames = [
            ClientMessage::Setup(Setup {
                model: "models/x".into(),
                ..Setup::default()
            }),
            ClientMessage::ClientContent(ClientContent::default()),
            ClientMessage::RealtimeInput(RealtimeInput::ActivityStart(Empty {})),
            ClientMessage::ToolResponse(ToolResponse::default()),
        ];
        for f in frames {
            let v: Value = serde_json::from_str(&f.to_json()).unwrap();
            assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        }
    }
}
