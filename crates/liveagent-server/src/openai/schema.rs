//! Strict validation of client events, shaped after the official SDK's GA models (the
//! `openai` Python package's `types/realtime`, which `shared/protocols/validate` uses).
//!
//! - [`parse_event`] turns a client frame into a typed [`ClientEvent`]; an error names the
//!   offending field by its JSON path (`item.content[0].text`, `content_index`) in `param` and
//!   in the message, and unknown parameters are refused, as the real API does.
//! - [`check_session`] checks a `session.update` body in full (types, enums, ranges, unknown
//!   parameters) before anything is applied, so an update is all or nothing.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use super::wire::ClientEvent;

/// A refused client event: the `error` object's `code`, `message` and `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaError {
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

fn err(code: &'static str, message: String, param: Option<String>) -> SchemaError {
    SchemaError {
        code,
        message,
        param,
    }
}

/// Renders a path the way the API does: `a.b[0].c`, enum variant segments left out.
fn render(prefix: &str, path: &serde_path_to_error::Path) -> String {
    let mut out = prefix.to_owned();
    for seg in path.iter() {
        match seg {
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Enum { .. } => {}
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Between backticks: ``unknown field `x`, expected …`` → `x`.
fn ticked(msg: &str) -> Option<&str> {
    let a = msg.find('`')?;
    let b = msg[a + 1..].find('`')?;
    Some(&msg[a + 1..a + 1 + b])
}

/// What untagged unions accept, for their error messages.
fn expectation(path: &str) -> &'static str {
    let last = path.rsplit('.').next().unwrap_or(path);
    match last {
        "max_output_tokens" => "an integer between 1 and 4096, or 'inf'",
        "tool_choice" => "'none', 'auto', 'required', or an object naming a function or MCP tool",
        "voice" => "a voice name or an object with an 'id'",
        "tracing" => "'auto', null, or a tracing configuration object",
        "truncation" => "'auto', 'disabled', or a retention_ratio object",
        "conversation" => "'auto', 'none', or a conversation id",
        "allowed_tools" => "a list of tool names or a tool filter object",
        "require_approval" => "'always', 'never', or an approval filter object",
        _ => "a different value",
    }
}

/// Turns a serde error at `path` into the API's error shape.
fn convert(path: String, msg: &str) -> SchemaError {
    if msg.starts_with("unknown field") {
        let field = ticked(msg).unwrap_or("?");
        // serde_path_to_error stops at the object holding the unknown key.
        let p = if path.ends_with(&format!(".{field}")) || path == field {
            path
        } else {
            join(&path, field)
        };
        return err(
            "unknown_parameter",
            format!("Unknown parameter: '{p}'."),
            Some(p),
        );
    }
    if msg.starts_with("missing field") {
        let p = join(&path, ticked(msg).unwrap_or("?"));
        return err(
            "missing_required_parameter",
            format!("Missing required parameter: '{p}'."),
            Some(p),
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (got, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        return err(
            "invalid_type",
            format!("Invalid type for '{path}': expected {expected}, but got {got} instead."),
            Some(path),
        );
    }
    if msg.starts_with("unknown variant") {
        let value = ticked(msg).unwrap_or("?");
        let supported = msg
            .split_once("expected ")
            .map(|x| x.1.replace('`', "'"))
            .unwrap_or_default();
        return err(
            "invalid_value",
            format!(
                "Invalid value for '{path}': '{value}'. Supported values are: {}.",
                supported.trim_start_matches("one of ")
            ),
            Some(path),
        );
    }
    if msg.starts_with("data did not match any variant") {
        return err(
            "invalid_value",
            format!(
                "Invalid value for '{path}': expected {}.",
                expectation(&path)
            ),
            Some(path),
        );
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        return err(
            "invalid_value",
            format!("Invalid value for '{path}': {rest}."),
            Some(path),
        );
    }
    err(
        "invalid_value",
        format!("Invalid value for '{path}': {msg}."),
        Some(path),
    )
}

/// Deserializes `value` into `T`, reporting errors with the path under `prefix`.
pub(crate) fn typed<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, SchemaError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = render(prefix, e.path());
        convert(path, &e.inner().to_string())
    })
}

/// `{"type": "x", ...}` → `{"x": {...}}` (externally tagged, so that the path of an error
/// inside is kept), for `item` and its `content` parts too.
fn retag(mut obj: Map<String, Value>, path: &str) -> Result<Value, SchemaError> {
    let kind = match obj.remove("type") {
        Some(Value::String(k)) => k,
        Some(other) => {
            let p = join(path, "type");
            return Err(err(
                "invalid_type",
                format!("Invalid type for '{p}': expected a string, but got {other} instead."),
                Some(p),
            ));
        }
        None => {
            let p = join(path, "type");
            return Err(err(
                "missing_required_parameter",
                format!("Missing required parameter: '{p}'."),
                Some(p),
            ));
        }
    };
    let mut m = Map::new();
    m.insert(kind, Value::Object(obj));
    Ok(Value::Object(m))
}

fn retag_item(item: Value) -> Result<Value, SchemaError> {
    let Value::Object(mut obj) = item else {
        return Ok(item); // the typed parse reports the wrong type
    };
    if let Some(Value::Array(parts)) = obj.remove("content") {
        let mut out = Vec::with_capacity(parts.len());
        for (i, p) in parts.into_iter().enumerate() {
            out.push(match p {
                Value::Object(o) => retag(o, &format!("item.content[{i}]"))?,
                other => other,
            });
        }
        obj.insert("content".into(), Value::Array(out));
    } else if let Some(v) = obj.get("content").cloned() {
        obj.insert("content".into(), v);
    }
    retag(obj, "item")
}

/// Parses one client frame (already known to be a JSON object with a string `type`).
pub(crate) fn parse_event(value: Value) -> Result<ClientEvent, SchemaError> {
    let Value::Object(mut obj) = value else {
        return Err(err(
            "invalid_type",
            "A client event must be a JSON object.".into(),
            None,
        ));
    };
    match obj.remove("event_id") {
        None | Some(Value::String(_)) | Some(Value::Null) => {}
        Some(other) => {
            return Err(err(
                "invalid_type",
                format!("Invalid type for 'event_id': expected a string, but got {other} instead."),
                Some("event_id".into()),
            ))
        }
    }
    if let Some(item) = obj.remove("item") {
        obj.insert("item".into(), retag_item(item)?);
    }
    if let Some(Value::Object(resp)) = obj.get_mut("response") {
        if let Some(Value::Array(input)) = resp.remove("input") {
            // Items in response.input are checked loosely (references or full items).
            resp.insert("input".into(), Value::Array(input));
        }
    }
    let tagged = retag(obj, "")?;
    typed::<ClientEvent>(tagged, "").map_err(|mut e| {
        if e.param.as_deref() == Some("") {
            e.param = Some("type".into());
            e.message = e.message.replacen("for ''", "for 'type'", 1);
        }
        e
    })
}

// ------------------------------------------------------------------ session.update

/// `session.update.session` (the GA `RealtimeSessionCreateRequest`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Session {
    #[serde(rename = "type")]
    kind: SessionType,
    audio: Option<Audio>,
    include: Option<Vec<Include>>,
    instructions: Option<String>,
    max_output_tokens: Option<MaxTokens>,
    model: Option<String>,
    output_modalities: Option<Vec<Modality>>,
    parallel_tool_calls: Option<bool>,
    prompt: Option<Prompt>,
    reasoning: Option<Reasoning>,
    tool_choice: Option<ToolChoice>,
    tools: Option<Vec<Tool>>,
    tracing: Option<Tracing>,
    truncation: Option<Truncation>,
}

#[derive(Deserialize, PartialEq)]
enum SessionType {
    #[serde(rename = "realtime")]
    Realtime,
    #[serde(rename = "transcription")]
    Transcription,
}

#[derive(Deserialize)]
enum Include {
    #[serde(rename = "item.input_audio_transcription.logprobs")]
    Logprobs,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MaxTokens {
    Int(i64),
    Inf(Inf),
}

#[derive(Deserialize)]
enum Inf {
    #[serde(rename = "inf")]
    Inf,
}

#[derive(Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Modality {
    Text,
    Audio,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Prompt {
    id: String,
    variables: Option<Map<String, Value>>,
    version: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Reasoning {
    effort: Option<Effort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Effort {
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum ToolChoice {
    Mode(ToolChoiceMode),
    Named(NamedToolChoice),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NamedToolChoice {
    #[serde(rename = "type")]
    kind: ToolKind,
    name: Option<String>,
    server_label: Option<String>,
}

#[derive(Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ToolKind {
    Function,
    Mcp,
}

/// A function tool or an MCP tool (one struct so that errors keep their path).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Tool {
    #[serde(rename = "type")]
    kind: Option<ToolKind>,
    // function
    name: Option<String>,
    description: Option<String>,
    parameters: Option<Map<String, Value>>,
    // mcp
    server_label: Option<String>,
    allowed_callers: Option<Vec<Caller>>,
    allowed_tools: Option<AllowedTools>,
    authorization: Option<String>,
    connector_id: Option<String>,
    defer_loading: Option<bool>,
    headers: Option<std::collections::HashMap<String, String>>,
    require_approval: Option<RequireApproval>,
    server_description: Option<String>,
    server_url: Option<String>,
    tunnel_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Caller {
    Direct,
    Programmatic,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum AllowedTools {
    Names(Vec<String>),
    Filter(ToolFilter),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ToolFilter {
    read_only: Option<bool>,
    tool_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum RequireApproval {
    Mode(ApprovalMode),
    Filter(ApprovalFilter),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ApprovalMode {
    Always,
    Never,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ApprovalFilter {
    always: Option<ToolFilter>,
    never: Option<ToolFilter>,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Tracing {
    Auto(AutoLit),
    Config(TracingConfig),
}

#[derive(Deserialize)]
enum AutoLit {
    #[serde(rename = "auto")]
    Auto,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TracingConfig {
    group_id: Option<String>,
    metadata: Option<Value>,
    workflow_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Truncation {
    Mode(TruncationMode),
    Ratio(RetentionRatio),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum TruncationMode {
    Auto,
    Disabled,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RetentionRatio {
    #[serde(rename = "type")]
    kind: RetentionLit,
    retention_ratio: f64,
    token_limits: Option<TokenLimits>,
}

#[derive(Deserialize)]
enum RetentionLit {
    #[serde(rename = "retention_ratio")]
    RetentionRatio,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TokenLimits {
    post_instructions: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Audio {
    input: Option<AudioInput>,
    output: Option<AudioOutput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct AudioInput {
    format: Option<Format>,
    noise_reduction: Option<NoiseReduction>,
    transcription: Option<Transcription>,
    turn_detection: Option<TurnDetection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct AudioOutput {
    format: Option<Format>,
    speed: Option<f64>,
    voice: Option<Voice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Format {
    #[serde(rename = "type")]
    kind: Option<FormatKind>,
    rate: Option<i64>,
}

#[derive(Deserialize, PartialEq, Clone, Copy)]
enum FormatKind {
    #[serde(rename = "audio/pcm")]
    Pcm,
    #[serde(rename = "audio/pcmu")]
    Pcmu,
    #[serde(rename = "audio/pcma")]
    Pcma,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct NoiseReduction {
    #[serde(rename = "type")]
    kind: Option<NoiseKind>,
    strength: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum NoiseKind {
    NearField,
    FarField,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Transcription {
    delay: Option<Delay>,
    keywords: Option<Vec<String>>,
    language: Option<String>,
    languages: Option<Vec<String>>,
    model: Option<String>,
    prompt: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Delay {
    Minimal,
    Low,
    Medium,
    High,
    Xhigh,
}

/// server_vad or semantic_vad (one struct so that errors keep their path; the fields that
/// belong to the other kind are refused afterwards).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct TurnDetection {
    #[serde(rename = "type")]
    kind: TdKind,
    create_response: Option<bool>,
    interrupt_response: Option<bool>,
    idle_timeout_ms: Option<i64>,
    prefix_padding_ms: Option<i64>,
    silence_duration_ms: Option<i64>,
    threshold: Option<f64>,
    eagerness: Option<Eagerness>,
}

#[derive(Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum TdKind {
    ServerVad,
    SemanticVad,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Eagerness {
    Low,
    Medium,
    High,
    Auto,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Voice {
    Name(String),
    Custom(VoiceId),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct VoiceId {
    id: String,
}

/// The built-in voices.
pub(crate) const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];

/// Checks `min <= v <= max` for an optional number; `kind` names it in the error as the real
/// API does (`integer`, `decimal`).
fn range<T: PartialOrd + std::fmt::Display>(
    kind: &str,
    v: Option<T>,
    path: &str,
    min: T,
    max: T,
) -> Result<(), SchemaError> {
    let Some(v) = v else { return Ok(()) };
    let (code, word, op, bound) = if v < min {
        ("below_min", "below minimum", ">=", min)
    } else if v > max {
        ("above_max", "above maximum", "<=", max)
    } else {
        return Ok(());
    };
    // The codes are `integer_below_min_value`, `decimal_above_max_value`, ...: leak-free statics.
    let code: &'static str = match (kind, code) {
        ("integer", "below_min") => "integer_below_min_value",
        ("integer", _) => "integer_above_max_value",
        (_, "below_min") => "decimal_below_min_value",
        _ => "decimal_above_max_value",
    };
    Err(err(
        code,
        format!("Invalid '{path}': {kind} {word} value. Expected a value {op} {bound}, but got {v} instead."),
        Some(path.into()),
    ))
}

fn range_int(v: Option<i64>, path: &str, min: i64, max: i64) -> Result<(), SchemaError> {
    range("integer", v, path, min, max)
}

fn range_dec(v: Option<f64>, path: &str, min: f64, max: f64) -> Result<(), SchemaError> {
    range("decimal", v, path, min, max)
}

fn not_for(kind: &str, present: bool, path: &str) -> Result<(), SchemaError> {
    if present {
        return Err(err(
            "unknown_parameter",
            format!("Unknown parameter: '{path}' (not supported for {kind})."),
            Some(path.into()),
        ));
    }
    Ok(())
}

fn check_format(f: &Option<Format>, path: &str) -> Result<(), SchemaError> {
    let Some(f) = f else { return Ok(()) };
    match (f.kind, f.rate) {
        (Some(FormatKind::Pcm) | None, Some(r)) if r != 24000 => Err(err(
            "invalid_value",
            format!("Invalid value for '{path}.rate': {r}. Supported values are: 24000."),
            Some(format!("{path}.rate")),
        )),
        (Some(FormatKind::Pcmu | FormatKind::Pcma), Some(_)) => {
            not_for("G.711 formats", true, &format!("{path}.rate"))
        }
        _ => Ok(()),
    }
}

/// Checks a whole `session.update` body; `audio_spoken` tells whether the model has already
/// answered with audio (the voice is then fixed).
pub(crate) fn check_session(
    session: &Value,
    current_voice: Option<&Value>,
    audio_spoken: bool,
) -> Result<(), SchemaError> {
    if !session.is_object() {
        return Err(err(
            "invalid_type",
            format!("Invalid type for 'session': expected an object, but got {session} instead."),
            Some("session".into()),
        ));
    }
    let s: Session = typed(session.clone(), "session")?;
    if s.kind == SessionType::Transcription {
        return Err(err(
            "invalid_value",
            "Invalid value: 'transcription'. This server supports session.type 'realtime'.".into(),
            Some("session.type".into()),
        ));
    }
    if let Some(MaxTokens::Int(n)) = s.max_output_tokens {
        range_int(Some(n), "session.max_output_tokens", 1, 4096)?;
    }
    if let Some(m) = &s.output_modalities {
        if m.len() > 1 {
            return Err(err(
                "invalid_value",
                "Invalid 'session.output_modalities': use either ['audio'] or ['text'], not both."
                    .into(),
                Some("session.output_modalities".into()),
            ));
        }
    }
    if let Some(tools) = &s.tools {
        for (i, t) in tools.iter().enumerate() {
            let p = format!("session.tools[{i}]");
            match t.kind.unwrap_or(ToolKind::Function) {
                ToolKind::Function => {
                    if t.name.is_none() {
                        return Err(err(
                            "missing_required_parameter",
                            format!("Missing required parameter: '{p}.name'."),
                            Some(format!("{p}.name")),
                        ));
                    }
                    not_for(
                        "function tools",
                        t.server_label.is_some(),
                        &format!("{p}.server_label"),
                    )?;
                    not_for(
                        "function tools",
                        t.server_url.is_some(),
                        &format!("{p}.server_url"),
                    )?;
                }
                ToolKind::Mcp => {
                    if t.server_label.is_none() {
                        return Err(err(
                            "missing_required_parameter",
                            format!("Missing required parameter: '{p}.server_label'."),
                            Some(format!("{p}.server_label")),
                        ));
                    }
                    not_for(
                        "MCP tools",
                        t.parameters.is_some(),
                        &format!("{p}.parameters"),
                    )?;
                }
            }
        }
    }
    if let Some(ToolChoice::Named(n)) = &s.tool_choice {
        let (need, p) = match n.kind {
            ToolKind::Function => (n.name.is_none(), "session.tool_choice.name"),
            ToolKind::Mcp => (n.server_label.is_none(), "session.tool_choice.server_label"),
        };
        if need {
            return Err(err(
                "missing_required_parameter",
                format!("Missing required parameter: '{p}'."),
                Some(p.into()),
            ));
        }
    }
    if let Some(Truncation::Ratio(r)) = &s.truncation {
        range_dec(
            Some(r.retention_ratio),
            "session.truncation.retention_ratio",
            0.0,
            1.0,
        )?;
    }
    if let Some(audio) = &s.audio {
        if let Some(input) = &audio.input {
            check_format(&input.format, "session.audio.input.format")?;
            if let Some(nr) = &input.noise_reduction {
                range_dec(
                    nr.strength,
                    "session.audio.input.noise_reduction.strength",
                    0.0,
                    1.0,
                )?;
            }
            if let Some(td) = &input.turn_detection {
                let p = "session.audio.input.turn_detection";
                match td.kind {
                    TdKind::ServerVad => {
                        not_for(
                            "server_vad",
                            td.eagerness.is_some(),
                            &format!("{p}.eagerness"),
                        )?;
                        range_dec(td.threshold, &format!("{p}.threshold"), 0.0, 1.0)?;
                        // Only the lower bounds are known for these (the SDK types are plain ints).
                        range_int(
                            td.prefix_padding_ms,
                            &format!("{p}.prefix_padding_ms"),
                            0,
                            i64::MAX,
                        )?;
                        range_int(
                            td.silence_duration_ms,
                            &format!("{p}.silence_duration_ms"),
                            0,
                            i64::MAX,
                        )?;
                        range_int(
                            td.idle_timeout_ms,
                            &format!("{p}.idle_timeout_ms"),
                            0,
                            i64::MAX,
                        )?;
                    }
                    TdKind::SemanticVad => {
                        for (present, f) in [
                            (td.threshold.is_some(), "threshold"),
                            (td.prefix_padding_ms.is_some(), "prefix_padding_ms"),
                            (td.silence_duration_ms.is_some(), "silence_duration_ms"),
                            (td.idle_timeout_ms.is_some(), "idle_timeout_ms"),
                        ] {
                            not_for("semantic_vad", present, &format!("{p}.{f}"))?;
                        }
                    }
                }
            }
        }
        if let Some(output) = &audio.output {
            check_format(&output.format, "session.audio.output.format")?;
            range_dec(output.speed, "session.audio.output.speed", 0.25, 1.5)?;
            if let Some(v) = &output.voice {
                let p = "session.audio.output.voice";
                if let Voice::Name(name) = v {
                    if !VOICES.contains(&name.as_str()) {
                        return Err(err(
                            "invalid_value",
                            format!(
                                "Invalid value for '{p}': '{name}'. Supported values are: {}.",
                                VOICES
                                    .iter()
                                    .map(|v| format!("'{v}'"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            Some(p.into()),
                        ));
                    }
                }
                let new = &session["audio"]["output"]["voice"];
                if audio_spoken && current_voice.is_some_and(|c| c != new) {
                    return Err(err(
                        "cannot_update_voice",
                        "Cannot update a conversation's voice if assistant audio is present."
                            .into(),
                        Some(p.into()),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
