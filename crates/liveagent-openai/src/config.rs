//! [`RealtimeConfig`]: how to reach the OpenAI Realtime API and how the session is set up.
//!
//! ```
//! use liveagent_openai::{AudioOutput, InputConfig, RealtimeConfig, ServerVad, TurnDetection};
//!
//! let config = RealtimeConfig::new("gpt-realtime-2")
//!     .output(AudioOutput::new("ballad").speed(1.2))
//!     .input(InputConfig {
//!         turn_detection: TurnDetection::ServerVad(ServerVad { silence_duration_ms: 700, ..Default::default() }),
//!         ..Default::default()
//!     })
//!     .api_key("sk-test");
//! assert_eq!(liveagent_core::RealtimeConfig::input_sample_rate(&config), 24_000);
//! ```

use std::time::Duration;

use liveagent_core::{LiveError, RealtimeProtocol, Secret, SessionSetup};
use serde::{Deserialize, Serialize};

use crate::protocol::OpenAiProtocol;

/// The default base URL: the SDK appends `/realtime?model=...`.
pub const DEFAULT_BASE_URL: &str = "wss://api.openai.com/v1";

/// The only sample rate GA accepts for PCM, in and out.
pub const SAMPLE_RATE: u32 = 24_000;

/// How audio is encoded on the wire, in one direction.
///
/// `Pcm16` is 24 kHz PCM16 (`audio/pcm`). The G.711 telephone codecs (`audio/pcmu` μ-law,
/// `audio/pcma` A-law) are 8 kHz, one byte per sample: use them to pass a phone call's audio
/// through without resampling (the Twilio transport does). On the event bus audio is always
/// PCM16; with a G.711 format the session's rate in that direction is 8 kHz.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// `audio/pcm`, 24 kHz, little-endian (the default).
    #[default]
    Pcm16,
    /// `audio/pcmu`: G.711 μ-law, 8 kHz.
    Pcmu,
    /// `audio/pcma`: G.711 A-law, 8 kHz.
    Pcma,
}

impl AudioFormat {
    /// The sample rate of this format.
    pub fn sample_rate(self) -> u32 {
        match self {
            AudioFormat::Pcm16 => SAMPLE_RATE,
            AudioFormat::Pcmu | AudioFormat::Pcma => 8_000,
        }
    }

    /// Wire bytes per millisecond of audio.
    pub fn bytes_per_ms(self) -> u64 {
        match self {
            AudioFormat::Pcm16 => 48,
            AudioFormat::Pcmu | AudioFormat::Pcma => 8,
        }
    }

    /// The wire format object.
    pub fn wire(self) -> crate::wire::AudioFormat {
        match self {
            AudioFormat::Pcm16 => crate::wire::AudioFormat::pcm24k(),
            AudioFormat::Pcmu => crate::wire::AudioFormat::Pcmu,
            AudioFormat::Pcma => crate::wire::AudioFormat::Pcma,
        }
    }
}

/// The default age at which the runtime renews the connection (OpenAI ends sessions at 60 min).
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(55 * 60);

/// A voice: one of the built-in names (`alloy ash ballad coral echo sage shimmer verse marin
/// cedar`) or a custom voice id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Voice {
    /// A built-in voice, by name.
    Named(String),
    /// A custom voice, serialized as `{"id": "voice_..."}`.
    Custom {
        /// The custom voice id.
        id: String,
    },
}

impl From<&str> for Voice {
    fn from(s: &str) -> Self {
        Voice::Named(s.to_owned())
    }
}

impl From<String> for Voice {
    fn from(s: String) -> Self {
        Voice::Named(s)
    }
}

/// Spoken output: the model answers in audio (always with a transcript).
#[derive(Clone, Debug, PartialEq)]
pub struct AudioOutput {
    /// The voice. It cannot change after the model first spoke.
    pub voice: Voice,
    /// Speaking speed, 0.25–1.5 (default 1.0).
    pub speed: f32,
}

impl AudioOutput {
    /// Audio output in `voice` at normal speed.
    pub fn new(voice: impl Into<Voice>) -> Self {
        AudioOutput {
            voice: voice.into(),
            speed: 1.0,
        }
    }

    /// Sets the speaking speed (0.25–1.5).
    pub fn speed(mut self, speed: f32) -> Self {
        self.speed = speed;
        self
    }
}

impl Default for AudioOutput {
    /// The `marin` voice at speed 1.0.
    fn default() -> Self {
        AudioOutput::new("marin")
    }
}

/// What the model produces: speech in a voice ([`AudioOutput`]) or text only
/// ([`TextOutput`]). The shared [`liveagent_core::Output`] with OpenAI's audio settings.
pub type Output = liveagent_core::Output<AudioOutput>;

pub use liveagent_core::TextOutput;

impl From<AudioOutput> for Output {
    fn from(o: AudioOutput) -> Self {
        Output::Audio(o)
    }
}

/// How eagerly semantic VAD ends the user's turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eagerness {
    /// Waits longest (up to 8 s).
    Low,
    /// Up to 4 s.
    Medium,
    /// Up to 2 s.
    High,
    /// The server's choice (medium).
    #[default]
    Auto,
}

/// Semantic VAD: a model decides when the user has finished speaking.
#[derive(Clone, Debug, PartialEq)]
pub struct SemanticVad {
    /// How eagerly to end the turn.
    pub eagerness: Eagerness,
    /// Start a response when the user stops speaking.
    pub create_response: bool,
    /// Cancel the running response when the user starts speaking (server side of barge-in).
    pub interrupt_response: bool,
}

impl Default for SemanticVad {
    /// `eagerness: auto`, `create_response` and `interrupt_response` on.
    fn default() -> Self {
        SemanticVad {
            eagerness: Eagerness::Auto,
            create_response: true,
            interrupt_response: true,
        }
    }
}

/// Server VAD: an energy detector with a silence timer.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerVad {
    /// Activation threshold, 0.0–1.0 (default 0.5). Higher needs louder speech.
    pub threshold: f32,
    /// Audio kept before detected speech, ms (default 300).
    pub prefix_padding_ms: u32,
    /// Silence that ends the turn, ms (default 500).
    pub silence_duration_ms: u32,
    /// Start a response after this much silence counted from the end of playback
    /// (`input_audio_buffer.timeout_triggered`). Off by default.
    pub idle_timeout_ms: Option<u32>,
    /// Start a response when the user stops speaking.
    pub create_response: bool,
    /// Cancel the running response when the user starts speaking.
    pub interrupt_response: bool,
}

impl Default for ServerVad {
    fn default() -> Self {
        ServerVad {
            threshold: 0.5,
            prefix_padding_ms: 300,
            silence_duration_ms: 500,
            idle_timeout_ms: None,
            create_response: true,
            interrupt_response: true,
        }
    }
}

/// How user turns are detected.
#[derive(Clone, Debug, PartialEq)]
pub enum TurnDetection {
    /// Semantic VAD (the default, with `create_response` and `interrupt_response`).
    SemanticVad(SemanticVad),
    /// Server VAD.
    ServerVad(ServerVad),
    /// No turn detection (`turn_detection: null`): the application commits the input
    /// (`ControlCommand::CommitInput`) and asks for responses (`ControlCommand::CreateResponse`),
    /// or uses `ActivityStart`/`ActivityEnd` for push-to-talk.
    Manual,
}

impl Default for TurnDetection {
    fn default() -> Self {
        TurnDetection::SemanticVad(SemanticVad::default())
    }
}

impl TurnDetection {
    /// True when the server cancels the running response as soon as the user speaks, and
    /// the provider therefore tells the player to flush (`Interrupted`).
    pub fn interrupts_response(&self) -> bool {
        match self {
            TurnDetection::SemanticVad(v) => v.interrupt_response,
            TurnDetection::ServerVad(v) => v.interrupt_response,
            TurnDetection::Manual => false,
        }
    }
}

/// Transcription of the user's audio (`InputTranscriptChunk` events, and the text replayed
/// into a new session after a reconnect).
#[derive(Clone, Debug, PartialEq)]
pub struct Transcription {
    /// `gpt-4o-mini-transcribe` (default), `gpt-4o-transcribe`, `whisper-1`, ...
    pub model: String,
    /// ISO-639-1 language of the input (`en`), improving accuracy and latency.
    pub language: Option<String>,
    /// Optional guidance for the transcription model.
    pub prompt: Option<String>,
}

impl Transcription {
    /// Transcription with `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Transcription {
            model: model.into(),
            language: None,
            prompt: None,
        }
    }

    /// Sets the input language.
    pub fn language(mut self, language: impl Into<String>) -> Self {
        self.language = Some(language.into());
        self
    }

    /// Sets a transcription prompt.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }
}

impl Default for Transcription {
    fn default() -> Self {
        Transcription::new("gpt-4o-mini-transcribe")
    }
}

/// Input noise reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseReduction {
    /// Close-talking microphones (headsets).
    NearField,
    /// Far-field microphones (laptops, conference rooms).
    FarField,
}

/// How user audio is handled.
#[derive(Clone, Debug, PartialEq)]
pub struct InputConfig {
    /// Turn detection (default: semantic VAD that creates and interrupts responses).
    pub turn_detection: TurnDetection,
    /// Input transcription (default: `gpt-4o-mini-transcribe`). `None` turns it off; then the
    /// user's spoken turns cannot be replayed into a new session after a reconnect.
    pub transcription: Option<Transcription>,
    /// Noise reduction (default: off).
    pub noise_reduction: Option<NoiseReduction>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            turn_detection: TurnDetection::default(),
            transcription: Some(Transcription::default()),
            noise_reduction: None,
        }
    }
}

/// Which tool the model may call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (default).
    Auto,
    /// No tool calls.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this function.
    Function(String),
}

impl Serialize for ToolChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            ToolChoice::Auto => s.serialize_str("auto"),
            ToolChoice::None => s.serialize_str("none"),
            ToolChoice::Required => s.serialize_str("required"),
            ToolChoice::Function(name) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "function")?;
                m.serialize_entry("name", name)?;
                m.end()
            }
        }
    }
}

/// The output token limit of one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxOutputTokens {
    /// 1–4096 tokens.
    Limit(u32),
    /// The model's maximum (`"inf"`).
    Inf,
}

impl From<u32> for MaxOutputTokens {
    fn from(n: u32) -> Self {
        MaxOutputTokens::Limit(n)
    }
}

impl Serialize for MaxOutputTokens {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxOutputTokens::Limit(n) => s.serialize_u32(*n),
            MaxOutputTokens::Inf => s.serialize_str("inf"),
        }
    }
}

/// How an Azure OpenAI deployment is addressed.
///
/// With the Azure GA endpoint, set the base URL to `wss://<resource>.openai.azure.com/openai/v1`
/// and leave `api_version`/`deployment` unset (the deployment name is the model). For the
/// older preview endpoint, use base `wss://<resource>.openai.azure.com/openai` with an
/// `api_version` and a `deployment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureConfig {
    /// `api-version` query parameter, if any.
    pub api_version: Option<String>,
    /// `deployment` query parameter (replaces `model` in the URL), if any.
    pub deployment: Option<String>,
    /// Send the key in an `api-key` header (default) instead of `Authorization: Bearer`
    /// (use Bearer for Microsoft Entra tokens).
    pub api_key_header: bool,
}

impl AzureConfig {
    /// Azure with the key in the `api-key` header and no extra query parameters.
    pub fn new() -> Self {
        AzureConfig {
            api_version: None,
            deployment: None,
            api_key_header: true,
        }
    }

    /// Sets the `api-version` query parameter.
    pub fn api_version(mut self, v: impl Into<String>) -> Self {
        self.api_version = Some(v.into());
        self
    }

    /// Sets the `deployment` query parameter.
    pub fn deployment(mut self, d: impl Into<String>) -> Self {
        self.deployment = Some(d.into());
        self
    }

    /// Sends the token as `Authorization: Bearer` (Entra ID) instead of `api-key`.
    pub fn bearer(mut self) -> Self {
        self.api_key_header = false;
        self
    }
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig::new()
    }
}

/// The OpenAI Realtime provider configuration. Build one with [`RealtimeConfig::new`] and
/// hand it to `LiveAgent`; it implements [`liveagent_core::RealtimeConfig`].
///
/// The key comes from [`api_key`](Self::api_key), else from `OPENAI_API_KEY` (or, for Azure,
/// `AZURE_OPENAI_API_KEY`) when the protocol is built. An ephemeral client secret
/// (`POST /v1/realtime/client_secrets`, `value`) is accepted as the key. `Debug` never
/// prints it.
#[derive(Clone, Debug)]
pub struct RealtimeConfig {
    /// The model, e.g. `gpt-realtime-2` (or the Azure deployment name).
    pub model: String,
    /// Audio or text output.
    pub output: Output,
    /// Input audio handling.
    pub input: InputConfig,
    /// Tool choice (`None`: the server default, `auto`).
    pub tool_choice: Option<ToolChoice>,
    /// Output token limit per response (`None`: the server default, `inf`).
    pub max_output_tokens: Option<MaxOutputTokens>,
    /// Base URL (default [`DEFAULT_BASE_URL`]); `/realtime?...` is appended. `http(s)://`
    /// is turned into `ws(s)://`.
    pub base_url: String,
    /// The API key or ephemeral client secret.
    pub api_key: Option<Secret>,
    /// Azure OpenAI addressing, if any.
    pub azure: Option<AzureConfig>,
    /// `OpenAI-Organization` header, if any.
    pub organization: Option<String>,
    /// `OpenAI-Project` header, if any.
    pub project: Option<String>,
    /// Renew the connection before this age (default 55 minutes; OpenAI ends sessions at 60).
    pub max_connection_age: Duration,
    /// Most conversation items kept for replay after a reconnect (default 400; the oldest
    /// are dropped first; the model's own context is 32k tokens anyway).
    pub history_limit: usize,
    /// Most bytes of text kept in that history (default 128 KiB,
    /// [`DEFAULT_MAX_HISTORY_BYTES`](liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES):
    /// more text than the model's context holds); past it the oldest items are
    /// dropped and a `TextDropped` event says how many.
    pub history_max_bytes: usize,
    /// Most bytes of one item's input transcript, output transcript or text (default
    /// 64 KiB); deltas past it are neither kept nor published, and one `TextDropped` event
    /// per item says so.
    pub max_item_text_bytes: usize,
    /// Raw `session` fields merged last into every `session.update` (**unstable** escape
    /// hatch; see [`raw_session`](Self::raw_session)).
    pub raw_session: Option<serde_json::Value>,
    /// Encoding of the microphone audio sent to the provider (default PCM16 24 kHz).
    pub input_format: AudioFormat,
    /// Encoding of the speech the provider sends (default PCM16 24 kHz).
    pub output_format: AudioFormat,
    /// Allow a cleartext `ws://` / `http://` base URL to a host that is not loopback even
    /// though an API key is set (default false: refused; see
    /// [`allow_insecure_transport`](Self::allow_insecure_transport)).
    pub allow_insecure_transport: bool,
}

impl RealtimeConfig {
    /// The `session` fields [`RealtimeConfig::raw_session`] may set (GA Realtime API).
    pub const RAW_SESSION_FIELDS: &[&str] = &[
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "tracing",
        "truncation",
        "include",
        "prompt",
    ];

    /// A configuration for `model` with the defaults: audio output (voice `marin`), semantic
    /// VAD with interruption, `gpt-4o-mini-transcribe` input transcription, the public API.
    pub fn new(model: impl Into<String>) -> Self {
        RealtimeConfig {
            model: model.into(),
            output: Output::default(),
            input: InputConfig::default(),
            tool_choice: None,
            max_output_tokens: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            azure: None,
            organization: None,
            project: None,
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            history_limit: 400,
            history_max_bytes: liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES,
            max_item_text_bytes: liveagent_core::limits::DEFAULT_MAX_ITEM_TEXT_BYTES,
            raw_session: None,
            input_format: AudioFormat::Pcm16,
            output_format: AudioFormat::Pcm16,
            allow_insecure_transport: false,
        }
    }

    /// Sets the wire encodings of input and output audio, e.g. `(Pcmu, Pcmu)` for a phone
    /// call (the session then takes and produces 8 kHz audio).
    pub fn audio_formats(mut self, input: AudioFormat, output: AudioFormat) -> Self {
        self.input_format = input;
        self.output_format = output;
        self
    }

    /// Sets the output: [`AudioOutput`] or [`TextOutput`].
    pub fn output(mut self, output: impl Into<Output>) -> Self {
        self.output = output.into();
        self
    }

    /// Sets input handling (turn detection, transcription, noise reduction).
    pub fn input(mut self, input: InputConfig) -> Self {
        self.input = input;
        self
    }

    /// Sets only the turn detection.
    pub fn turn_detection(mut self, turn_detection: TurnDetection) -> Self {
        self.input.turn_detection = turn_detection;
        self
    }

    /// Sets which tool the model may call.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Sets the output token limit of a response (1–4096, or [`MaxOutputTokens::Inf`]).
    pub fn max_output_tokens(mut self, max: impl Into<MaxOutputTokens>) -> Self {
        self.max_output_tokens = Some(max.into());
        self
    }

    /// Sets the base URL (`wss://api.openai.com/v1` by default; the local server's
    /// `openai_url()`; an Azure endpoint).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sets the API key or ephemeral client secret.
    pub fn api_key(mut self, key: impl Into<Secret>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Allows a cleartext (`ws://`, `http://`) base URL to a host that is not loopback
    /// while an API key is set. Without it such a configuration is refused (the key would
    /// travel as a plain header): `LiveAgent::builder(..).build()` fails with
    /// `BuildError::InsecureTransport`. Loopback hosts (the local server) never need it.
    pub fn allow_insecure_transport(mut self) -> Self {
        self.allow_insecure_transport = true;
        self
    }

    /// Addresses an Azure OpenAI deployment.
    pub fn azure(mut self, azure: AzureConfig) -> Self {
        self.azure = Some(azure);
        self
    }

    /// Sets the `OpenAI-Organization` header.
    pub fn organization(mut self, org: impl Into<String>) -> Self {
        self.organization = Some(org.into());
        self
    }

    /// Sets the `OpenAI-Project` header.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Sets the age at which the connection is renewed (default 55 minutes).
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.max_connection_age = age;
        self
    }

    /// Raw `session` fields merged last into every `session.update` (objects merge key by
    /// key, `null` removes a field): options without a typed setting yet, such as
    /// `tracing`, `truncation`, `include` or a stored `prompt` reference. **Unstable**: the
    /// fields are the provider's and may change with it. Checked by
    /// [`validate`](Self::validate): an object with known `session` fields only.
    ///
    /// ```
    /// let c = liveagent_openai::RealtimeConfig::new("gpt-realtime")
    ///     .raw_session(serde_json::json!({"truncation": "disabled", "tracing": "auto"}));
    /// assert!(c.validate().is_ok());
    /// let bad = liveagent_openai::RealtimeConfig::new("gpt-realtime")
    ///     .raw_session(serde_json::json!({"trunc": "auto"}));
    /// assert!(bad.validate().unwrap_err().to_string().contains("unknown field `trunc`"));
    /// ```
    pub fn raw_session(mut self, session: serde_json::Value) -> Self {
        self.raw_session = Some(session);
        self
    }

    /// Sets how many conversation items are kept for replay after a reconnect.
    pub fn history_limit(mut self, items: usize) -> Self {
        self.history_limit = items;
        self
    }

    /// Sets how many bytes of text the replay history keeps (default 128 KiB,
    /// [`DEFAULT_MAX_HISTORY_BYTES`](liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES)).
    pub fn history_max_bytes(mut self, bytes: usize) -> Self {
        self.history_max_bytes = bytes;
        self
    }

    /// Sets the cap on one item's transcript or text, in bytes (default 64 KiB).
    pub fn max_item_text_bytes(mut self, bytes: usize) -> Self {
        self.max_item_text_bytes = bytes;
        self
    }

    /// Checks the values the API would reject, so mistakes fail before connecting.
    pub fn validate(&self) -> Result<(), LiveError> {
        if self.model.trim().is_empty() {
            return Err(LiveError::config("openai: the model name is empty"));
        }
        if let Some(raw) = &self.raw_session {
            liveagent_core::raw::check_object(
                "openai: raw_session",
                raw,
                Self::RAW_SESSION_FIELDS,
            )?;
        }
        if let Output::Audio(a) = &self.output {
            if !(0.25..=1.5).contains(&a.speed) {
                return Err(LiveError::config(format!(
                    "openai: speed {} is outside 0.25..=1.5",
                    a.speed
                )));
            }
            match &a.voice {
                Voice::Named(v) | Voice::Custom { id: v } if v.trim().is_empty() => {
                    return Err(LiveError::config("openai: the voice is empty"));
                }
                _ => {}
            }
        }
        if let TurnDetection::ServerVad(v) = &self.input.turn_detection {
            if !(0.0..=1.0).contains(&v.threshold) {
                return Err(LiveError::config(format!(
                    "openai: VAD threshold {} is outside 0.0..=1.0",
                    v.threshold
                )));
            }
        }
        if let Some(t) = &self.input.transcription {
            if t.model.trim().is_empty() {
                return Err(LiveError::config(
                    "openai: the transcription model is empty",
                ));
            }
        }
        if let Some(MaxOutputTokens::Limit(n)) = self.max_output_tokens {
            if !(1..=4096).contains(&n) {
                return Err(LiveError::config(format!(
                    "openai: max_output_tokens {n} is outside 1..=4096"
                )));
            }
        }
        if let Some(ToolChoice::Function(name)) = &self.tool_choice {
            if name.trim().is_empty() {
                return Err(LiveError::config("openai: tool_choice names no function"));
            }
        }
        crate::protocol::websocket_base(&self.base_url)?;
        if let Some(url) = liveagent_core::RealtimeConfig::insecure_transport(self) {
            return Err(insecure_error("openai", &url));
        }
        Ok(())
    }

    /// The key to use: the configured one, else `OPENAI_API_KEY` (Azure:
    /// `AZURE_OPENAI_API_KEY` first).
    pub fn resolve_api_key(&self) -> Option<Secret> {
        if let Some(k) = &self.api_key {
            return Some(k.clone());
        }
        if self.azure.is_some() {
            if let Some(k) = Secret::from_env("AZURE_OPENAI_API_KEY") {
                return Some(k);
            }
        }
        Secret::from_env("OPENAI_API_KEY")
    }

    /// Builds the concrete protocol state machine (what
    /// [`build_protocol`](liveagent_core::RealtimeConfig::build_protocol) boxes).
    pub fn protocol(&self, setup: SessionSetup) -> Result<OpenAiProtocol, LiveError> {
        self.validate()?;
        let key = self.resolve_api_key().ok_or_else(|| {
            LiveError::config("openai: no API key: call .api_key(..) or set OPENAI_API_KEY")
        })?;
        if key.expose().trim().is_empty() {
            return Err(LiveError::config("openai: the API key is empty"));
        }
        Ok(OpenAiProtocol::new(self.clone(), setup, key))
    }
}

impl liveagent_core::RealtimeConfig for RealtimeConfig {
    fn provider(&self) -> &'static str {
        "openai"
    }

    fn input_sample_rate(&self) -> u32 {
        self.input_format.sample_rate()
    }

    fn output_sample_rate(&self) -> u32 {
        self.output_format.sample_rate()
    }

    fn audio_output(&self) -> bool {
        matches!(self.output, Output::Audio(_))
    }

    fn insecure_transport(&self) -> Option<String> {
        let key = self.resolve_api_key()?;
        if self.allow_insecure_transport
            || !liveagent_core::secret::is_cleartext_to_remote(&self.base_url)
        {
            return None;
        }
        Some(key.redact(&self.base_url))
    }

    fn build_protocol(&self, setup: SessionSetup) -> Result<Box<dyn RealtimeProtocol>, LiveError> {
        Ok(Box::new(self.protocol(setup)?))
    }
}

/// The error for a key that would travel in cleartext.
fn insecure_error(provider: &str, url: &str) -> LiveError {
    LiveError::config(format!(
        "{provider}: refusing to send the API key in cleartext to {url}: use wss:// (or a \
         loopback host), or opt in with .allow_insecure_transport()"
    ))
}
