//! Typed request and response bodies of OpenAI Chat Completions
//! (`POST {base}/chat/completions`), the subset the [`Agent`](crate::Agent) uses.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message of a chat, tagged by `role`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    /// Instructions (`system`; `developer` is read as the same).
    #[serde(alias = "developer")]
    System {
        /// The instructions.
        content: String,
    },
    /// What the user says.
    User {
        /// The text.
        content: String,
    },
    /// What the model said, and the tools it called.
    Assistant {
        /// The text, absent when the model only called tools.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// The tool calls.
        #[serde(
            default,
            skip_serializing_if = "Vec::is_empty",
            deserialize_with = "null_as_empty"
        )]
        tool_calls: Vec<ChatToolCall>,
        /// A refusal message, when the model refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refusal: Option<String>,
    },
    /// The output of a tool call.
    Tool {
        /// The call it answers.
        tool_call_id: String,
        /// The output (JSON text or plain text).
        content: String,
    },
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ChatToolCall>, D::Error> {
    Ok(Option::<Vec<ChatToolCall>>::deserialize(d)?.unwrap_or_default())
}

impl ChatMessage {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage::System {
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage::User {
            content: content.into(),
        }
    }

    /// An assistant text message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
            refusal: None,
        }
    }
}

/// A tool call made by the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatToolCall {
    /// The call id, echoed by the tool message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function and its arguments.
    pub function: ChatFunctionCall,
}

fn function_type() -> String {
    "function".to_owned()
}

/// The function part of a [`ChatToolCall`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatFunctionCall {
    /// The tool name.
    pub name: String,
    /// The arguments as JSON text (which the model may have got wrong).
    #[serde(default)]
    pub arguments: String,
}

/// A tool declaration in a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatTool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: ChatFunctionDef,
}

/// The function part of a [`ChatTool`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatFunctionDef {
    /// The name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON schema of its arguments.
    pub parameters: Value,
}

impl From<liveagent_core::ToolSchema> for ChatTool {
    fn from(schema: liveagent_core::ToolSchema) -> Self {
        ChatTool {
            kind: "function".to_owned(),
            function: ChatFunctionDef {
                name: schema.name,
                description: schema.description,
                parameters: schema.parameters,
            },
        }
    }
}

/// The body of `POST /chat/completions`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model.
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// The tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ChatTool>,
    /// `auto`, `none`, `required`... (default: the provider's, `auto` with tools).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// A cap on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// `true`: answer as server-sent events of [`ChatChunk`]s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

/// `stream_options` of a streaming request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a last chunk with the usage (and `choices: []`).
    pub include_usage: bool,
}

/// One `chat.completion.chunk` of a streaming response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// The completion id.
    #[serde(default)]
    pub id: String,
    /// The choices' deltas (empty in the final usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Usage, in the final chunk when `include_usage` was asked.
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

/// One choice of a [`ChatChunk`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Its index.
    #[serde(default)]
    pub index: u32,
    /// What this chunk adds.
    #[serde(default)]
    pub delta: ChunkDelta,
    /// Set on the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The delta of a [`ChunkChoice`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkDelta {
    /// More text.
    #[serde(default)]
    pub content: Option<String>,
    /// More refusal text.
    #[serde(default)]
    pub refusal: Option<String>,
    /// Tool-call fragments.
    #[serde(default, deserialize_with = "null_as_empty_fragments")]
    pub tool_calls: Vec<ToolCallFragment>,
}

fn null_as_empty_fragments<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ToolCallFragment>, D::Error> {
    Ok(Option::<Vec<ToolCallFragment>>::deserialize(d)?.unwrap_or_default())
}

/// A piece of a streamed tool call: the first carries `id` and the name, later ones only
/// pieces of `arguments`, all with the call's `index`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallFragment {
    /// Which call (several indexes: parallel calls).
    #[serde(default)]
    pub index: u32,
    /// The call id (first fragment).
    #[serde(default)]
    pub id: Option<String>,
    /// The function name and an arguments piece.
    #[serde(default)]
    pub function: Option<FunctionFragment>,
}

/// The function part of a [`ToolCallFragment`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionFragment {
    /// The name (first fragment).
    #[serde(default)]
    pub name: Option<String>,
    /// A piece of the arguments' JSON text.
    #[serde(default)]
    pub arguments: Option<String>,
}

/// The body of a successful response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The completion id.
    #[serde(default)]
    pub id: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The choices (one, as the agent asks for one).
    pub choices: Vec<ChatChoice>,
    /// Token usage.
    #[serde(default)]
    pub usage: Option<ChatUsage>,
}

/// One choice of a [`ChatResponse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Its index.
    #[serde(default)]
    pub index: u32,
    /// The assistant message.
    pub message: ChatMessage,
    /// `stop`, `tool_calls`, `length`, `content_filter`...
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// Token usage of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default)]
    pub total_tokens: u64,
}

/// The body of an error response: `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// An API error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// What happened.
    #[serde(default)]
    pub message: String,
    /// `invalid_request_error`, `insufficient_quota`...
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// `invalid_api_key`, `model_not_found`... (a string or a number).
    #[serde(default)]
    pub code: Option<Value>,
    /// The offending parameter.
    #[serde(default)]
    pub param: Option<String>,
}
