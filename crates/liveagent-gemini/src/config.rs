//! [`RealtimeConfig`]: the Gemini Live provider configuration, and its option types.

use std::time::Duration;

use liveagent_core::{LiveError, RealtimeProtocol, Secret, SessionSetup};
use serde::{Deserialize, Serialize};

use crate::protocol::GeminiProtocol;

/// The Gemini Developer API host.
pub const DEFAULT_BASE_URL: &str = "wss://generativelanguage.googleapis.com";

/// Gemini on Vertex AI: the project and location the session runs in (see
/// [`RealtimeConfig::vertex`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vertex {
    /// The Google Cloud project id.
    pub project: String,
    /// The location (`us-central1`, `europe-west4`, `global`...).
    pub location: String,
}

impl Vertex {
    /// The Vertex AI WebSocket host for this location: `wss://{location}-aiplatform.googleapis.com`
    /// (`wss://aiplatform.googleapis.com` for `global`).
    pub fn host(&self) -> String {
        if self.location == "global" {
            "wss://aiplatform.googleapis.com".to_owned()
        } else {
            format!("wss://{}-aiplatform.googleapis.com", self.location)
        }
    }

    /// The full model resource name for `model`:
    /// `projects/{p}/locations/{l}/publishers/google/models/{model}` (a name that is already
    /// a full resource name is kept; `publishers/…` gets the project and location prefix).
    pub fn model_path(&self, model: &str) -> String {
        let model = model.trim();
        if model.starts_with("projects/") {
            model.to_owned()
        } else if model.starts_with("publishers/") {
            format!(
                "projects/{}/locations/{}/{model}",
                self.project, self.location
            )
        } else {
            format!(
                "projects/{}/locations/{}/publishers/google/models/{}",
                self.project,
                self.location,
                model.strip_prefix("models/").unwrap_or(model)
            )
        }
    }
}

/// Sample rate of microphone audio Gemini takes (16 kHz mono PCM16).
pub const INPUT_SAMPLE_RATE: u32 = 16_000;

/// Sample rate of the audio Gemini produces (24 kHz mono PCM16).
pub const OUTPUT_SAMPLE_RATE: u32 = 24_000;

/// The API version in the WebSocket path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// `v1`: what google-genai uses by default.
    V1,
    /// `v1beta`: the version the public reference documents (the default here).
    #[default]
    V1Beta,
    /// `v1alpha`: needed for ephemeral tokens and some preview features.
    V1Alpha,
}

impl ApiVersion {
    /// `v1`, `v1beta` or `v1alpha`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V1Beta => "v1beta",
            ApiVersion::V1Alpha => "v1alpha",
        }
    }
}

/// Spoken output: the model answers in audio (24 kHz PCM16).
///
/// ```
/// use liveagent_gemini::AudioOutput;
/// let out = AudioOutput::new("Puck").language_code("en-US");
/// assert_eq!(out.voice.as_deref(), Some("Puck"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudioOutput {
    /// A prebuilt voice (Puck, Charon, Kore, Fenrir, Aoede, Leda, Orus, Zephyr, ...).
    /// `None`: the server's default voice.
    pub voice: Option<String>,
    /// BCP-47 language of the speech (`en-US`). `None`: the model decides.
    pub language_code: Option<String>,
}

impl AudioOutput {
    /// Audio output in `voice`.
    pub fn new(voice: impl Into<String>) -> Self {
        AudioOutput {
            voice: Some(voice.into()),
            language_code: None,
        }
    }

    /// Sets the speech language.
    pub fn language_code(mut self, code: impl Into<String>) -> Self {
        self.language_code = Some(code.into());
        self
    }
}

/// What the model answers with, one modality per session: speech ([`AudioOutput`]) or
/// text ([`TextOutput`]; native-audio models only answer in audio). The shared
/// [`liveagent_core::Output`] with Gemini's audio settings.
pub type Output = liveagent_core::Output<AudioOutput>;

pub use liveagent_core::TextOutput;

impl From<AudioOutput> for Output {
    fn from(o: AudioOutput) -> Self {
        Output::Audio(o)
    }
}

/// How readily the server's activity detection hears the start of speech.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartSensitivity {
    /// Detects speech start more often.
    #[serde(rename = "START_SENSITIVITY_HIGH")]
    High,
    /// Detects speech start less often.
    #[serde(rename = "START_SENSITIVITY_LOW")]
    Low,
}

/// How readily the server's activity detection hears the end of speech.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndSensitivity {
    /// Ends speech more often.
    #[serde(rename = "END_SENSITIVITY_HIGH")]
    High,
    /// Ends speech less often.
    #[serde(rename = "END_SENSITIVITY_LOW")]
    Low,
}

/// What user activity does to a model turn in progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivityHandling {
    /// Barge-in: the start of user activity interrupts the model (the server default).
    #[default]
    #[serde(rename = "START_OF_ACTIVITY_INTERRUPTS")]
    Interrupts,
    /// The model finishes its turn whatever the user does.
    #[serde(rename = "NO_INTERRUPTION")]
    NoInterruption,
}

/// Which input makes up the user's turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TurnCoverage {
    /// Only the detected activity.
    #[serde(rename = "TURN_INCLUDES_ONLY_ACTIVITY")]
    OnlyActivity,
    /// All input since the last turn, silence included.
    #[serde(rename = "TURN_INCLUDES_ALL_INPUT")]
    AllInput,
    /// Audio activity and all video frames (the gemini-3.1 default).
    #[serde(rename = "TURN_INCLUDES_AUDIO_ACTIVITY_AND_ALL_VIDEO")]
    AudioActivityAndAllVideo,
}

/// Server-side voice activity detection (`automaticActivityDetection`).
///
/// ```
/// use liveagent_gemini::{ActivityDetection, EndSensitivity};
/// let auto = ActivityDetection::automatic().end_sensitivity(EndSensitivity::Low).silence_duration_ms(500);
/// let manual = ActivityDetection::manual(); // send ActivityStart / ActivityEnd yourself
/// assert!(manual.disabled && !auto.disabled);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityDetection {
    /// True: no server VAD; the application marks turns with
    /// [`ControlCommand::ActivityStart`](liveagent_core::ControlCommand::ActivityStart) /
    /// `ActivityEnd` (or `CommitInput`).
    pub disabled: bool,
    /// Start-of-speech sensitivity (server default when `None`).
    pub start_sensitivity: Option<StartSensitivity>,
    /// End-of-speech sensitivity (server default when `None`).
    pub end_sensitivity: Option<EndSensitivity>,
    /// Speech needed before start of speech is committed, in ms.
    pub prefix_padding_ms: Option<u32>,
    /// Silence needed before end of speech is committed, in ms.
    pub silence_duration_ms: Option<u32>,
}

impl ActivityDetection {
    /// Server VAD with the server's defaults (the default).
    pub fn automatic() -> Self {
        ActivityDetection::default()
    }

    /// No server VAD: the application marks user activity.
    pub fn manual() -> Self {
        ActivityDetection {
            disabled: true,
            ..ActivityDetection::default()
        }
    }

    /// Sets the start-of-speech sensitivity.
    pub fn start_sensitivity(mut self, s: StartSensitivity) -> Self {
        self.start_sensitivity = Some(s);
        self
    }

    /// Sets the end-of-speech sensitivity.
    pub fn end_sensitivity(mut self, s: EndSensitivity) -> Self {
        self.end_sensitivity = Some(s);
        self
    }

    /// Sets the prefix padding.
    pub fn prefix_padding_ms(mut self, ms: u32) -> Self {
        self.prefix_padding_ms = Some(ms);
        self
    }

    /// Sets the silence that ends a turn.
    pub fn silence_duration_ms(mut self, ms: u32) -> Self {
        self.silence_duration_ms = Some(ms);
        self
    }

    fn is_default(&self) -> bool {
        *self == ActivityDetection::default()
    }
}

/// Input options: transcription and turn detection.
///
/// ```
/// use liveagent_gemini::{ActivityDetection, ActivityHandling, InputConfig};
/// let input = InputConfig { transcribe: true, ..Default::default() };
/// let manual = InputConfig::default()
///     .activity_detection(ActivityDetection::manual())
///     .activity_handling(ActivityHandling::NoInterruption);
/// # let _ = (input, manual);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputConfig {
    /// Turn on transcription of the user's audio and of the model's audio
    /// (`InputTranscriptChunk`, `OutputTranscriptChunk`). Also what lets the provider
    /// replay spoken turns as text after a reconnect without a resumption handle.
    pub transcribe: bool,
    /// Server VAD settings, or manual activity marking.
    pub activity_detection: ActivityDetection,
    /// Barge-in behaviour (server default, interrupts, when `None`).
    pub activity_handling: Option<ActivityHandling>,
    /// Which input makes up a turn (server default when `None`).
    pub turn_coverage: Option<TurnCoverage>,
}

impl InputConfig {
    /// Input with transcription on or off.
    pub fn new(transcribe: bool) -> Self {
        InputConfig {
            transcribe,
            ..InputConfig::default()
        }
    }

    /// Turns transcription on or off.
    pub fn transcribe(mut self, on: bool) -> Self {
        self.transcribe = on;
        self
    }

    /// Sets the activity detection.
    pub fn activity_detection(mut self, d: ActivityDetection) -> Self {
        self.activity_detection = d;
        self
    }

    /// Sets the barge-in behaviour.
    pub fn activity_handling(mut self, h: ActivityHandling) -> Self {
        self.activity_handling = Some(h);
        self
    }

    /// Sets the turn coverage.
    pub fn turn_coverage(mut self, t: TurnCoverage) -> Self {
        self.turn_coverage = Some(t);
        self
    }
}

/// Sliding-window context compression: lifts the ~15 minute limit of audio sessions.
///
/// ```
/// use liveagent_gemini::ContextCompression;
/// let c = ContextCompression::new().trigger_tokens(25_600).target_tokens(12_800);
/// # let _ = c;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextCompression {
    /// Context size that triggers compression (server default when `None`).
    pub trigger_tokens: Option<u64>,
    /// Context size kept (half of the trigger when `None`).
    pub target_tokens: Option<u64>,
}

impl ContextCompression {
    /// Compression with the server's defaults.
    pub fn new() -> Self {
        ContextCompression::default()
    }

    /// Sets the trigger.
    pub fn trigger_tokens(mut self, n: u64) -> Self {
        self.trigger_tokens = Some(n);
        self
    }

    /// Sets the target.
    pub fn target_tokens(mut self, n: u64) -> Self {
        self.target_tokens = Some(n);
        self
    }
}

/// Session resumption: how the provider survives connection renewals (`goAway`, ~10 min)
/// and drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionResumption {
    /// Ask for resumption handles and resume with them (default on).
    pub enabled: bool,
    /// Transparent mode: the server reports the last client message it consumed; the
    /// provider keeps later frames (bounded) and sends them again after resuming.
    pub transparent: bool,
    /// Handles older than this are not used (the server keeps them about 2 hours).
    pub handle_max_age: Duration,
}

impl Default for SessionResumption {
    fn default() -> Self {
        SessionResumption {
            enabled: true,
            transparent: false,
            handle_max_age: Duration::from_secs(115 * 60),
        }
    }
}

impl SessionResumption {
    /// Resumption on (the default).
    pub fn enabled() -> Self {
        SessionResumption::default()
    }

    /// Resumption off: every reconnect starts a new session and replays the history.
    pub fn disabled() -> Self {
        SessionResumption {
            enabled: false,
            ..SessionResumption::default()
        }
    }

    /// Resumption on, in transparent mode.
    pub fn transparent() -> Self {
        SessionResumption {
            transparent: true,
            ..SessionResumption::default()
        }
    }
}

/// The Gemini Live provider configuration. Mirrors the Python `gemini.RealTimeConfig`.
///
/// ```
/// use liveagent_gemini::{AudioOutput, InputConfig, RealtimeConfig};
/// let config = RealtimeConfig::new("gemini-3.1-flash-live-preview")
///     .output(AudioOutput::new("Puck").language_code("en-US"))
///     .input(InputConfig { transcribe: true, ..Default::default() })
///     .api_key("my-key");
/// assert!(!format!("{config:?}").contains("my-key"));
/// ```
///
/// The API key goes in the `x-goog-api-key` header. When none is given it comes from
/// `GEMINI_API_KEY`, then `GOOGLE_API_KEY`. A key is required for the default (Google) base
/// URL; with another base URL (a local server) the session may run without one.
#[derive(Clone, Debug, PartialEq)]
pub struct RealtimeConfig {
    /// The model id, without the `models/` prefix.
    pub model: String,
    /// Audio or text output.
    pub output: Output,
    /// Transcription and turn detection.
    pub input: InputConfig,
    /// Context window compression (off when `None`).
    pub compression: Option<ContextCompression>,
    /// Session resumption (on by default).
    pub resumption: SessionResumption,
    /// API version (`v1beta` by default).
    pub api_version: ApiVersion,
    /// `wss://generativelanguage.googleapis.com` by default; `ws://127.0.0.1:PORT` for the
    /// local server.
    pub base_url: String,
    /// The API key; from the environment when `None`.
    pub api_key: Option<Secret>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Output token limit per turn.
    pub max_output_tokens: Option<u32>,
    /// Most history entries kept for replay after a reconnect without resumption.
    pub max_history_entries: usize,
    /// Most bytes of text kept in that history (default 128 KiB,
    /// [`DEFAULT_MAX_HISTORY_BYTES`](liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES):
    /// more text than the model's context holds); past it the oldest entries
    /// are dropped and a `TextDropped` event says how many.
    pub history_max_bytes: usize,
    /// Most bytes of one turn's input transcript, output transcript or text (default
    /// 64 KiB); pieces past it are neither kept nor published, and one `TextDropped` event
    /// per turn says so.
    pub max_item_text_bytes: usize,
    /// The languages the transcriptions should expect (BCP-47, `languageCodes`); empty:
    /// the server decides.
    pub transcription_languages: Vec<String>,
    /// Allow a cleartext `ws://` base URL to a host that is not loopback even though an API
    /// key is set (default false: refused; see
    /// [`allow_insecure_transport`](Self::allow_insecure_transport)).
    pub allow_insecure_transport: bool,
    /// Raw `setup` fields merged last into every `setup` frame (**unstable** escape hatch;
    /// see [`raw_setup`](Self::raw_setup)).
    pub raw_setup: Option<serde_json::Value>,
    /// Gemini on Vertex AI (see [`vertex`](Self::vertex)); `None`: the Developer API.
    pub vertex: Option<Vertex>,
    /// The OAuth 2 access token for Vertex AI, sent as `Authorization: Bearer`.
    pub access_token: Option<Secret>,
    /// An ephemeral token (`auth_tokens/…`) used instead of the API key (see
    /// [`ephemeral_token`](Self::ephemeral_token)).
    pub ephemeral_token: Option<Secret>,
}

impl RealtimeConfig {
    /// A configuration for `model` (e.g. `gemini-3.1-flash-live-preview`), with audio
    /// output in the default voice.
    pub fn new(model: impl Into<String>) -> Self {
        RealtimeConfig {
            model: model.into(),
            output: Output::default(),
            input: InputConfig::default(),
            compression: None,
            resumption: SessionResumption::default(),
            api_version: ApiVersion::default(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            temperature: None,
            max_output_tokens: None,
            max_history_entries: 500,
            history_max_bytes: liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES,
            max_item_text_bytes: liveagent_core::limits::DEFAULT_MAX_ITEM_TEXT_BYTES,
            transcription_languages: Vec::new(),
            allow_insecure_transport: false,
            raw_setup: None,
            vertex: None,
            access_token: None,
            ephemeral_token: None,
        }
    }

    /// Runs on Vertex AI in `project` / `location` instead of the Developer API: the
    /// endpoint becomes `{host}/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent`
    /// (host `wss://{location}-aiplatform.googleapis.com` unless [`base_url`](Self::base_url)
    /// says otherwise), the model `projects/{project}/locations/{location}/publishers/google/models/{model}`,
    /// and the credential an OAuth 2 access token ([`access_token`](Self::access_token), e.g.
    /// from `gcloud auth print-access-token`), sent as `Authorization: Bearer`. The API key
    /// is not used.
    ///
    /// ```
    /// let c = liveagent_gemini::RealtimeConfig::new("gemini-live-2.5-flash")
    ///     .vertex("my-project", "us-central1")
    ///     .access_token("ya29.token");
    /// assert_eq!(
    ///     c.url(),
    ///     "wss://us-central1-aiplatform.googleapis.com/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
    /// );
    /// assert_eq!(
    ///     c.model_path(),
    ///     "projects/my-project/locations/us-central1/publishers/google/models/gemini-live-2.5-flash"
    /// );
    /// assert!(!format!("{c:?}").contains("ya29"));
    /// ```
    pub fn vertex(mut self, project: impl Into<String>, location: impl Into<String>) -> Self {
        let vertex = Vertex {
            project: project.into().trim().to_owned(),
            location: location.into().trim().to_owned(),
        };
        if self.base_url == DEFAULT_BASE_URL {
            self.base_url = vertex.host();
        }
        self.vertex = Some(vertex);
        self
    }

    /// The OAuth 2 access token for Vertex AI (`Authorization: Bearer`). It expires (about
    /// an hour for `gcloud` tokens): a conversation that outlives it needs a new
    /// configuration.
    pub fn access_token(mut self, token: impl Into<Secret>) -> Self {
        self.access_token = Some(token.into());
        self
    }

    /// Connects with an ephemeral token (`auth_tokens/…`, minted with the API key by a
    /// backend through `POST /v1alpha/auth_tokens`, see `liveagent-ephemeral`) instead of
    /// the API key: the session opens `BidiGenerateContentConstrained` on `v1alpha` with the
    /// token as the `access_token` query parameter. Tokens are short-lived and usually
    /// single-use: a reconnect needs a token with uses left.
    ///
    /// ```
    /// let c = liveagent_gemini::RealtimeConfig::new("gemini-live-2.5-flash")
    ///     .ephemeral_token("auth_tokens/abc");
    /// assert!(c.url().ends_with(
    ///     "v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token=auth_tokens/abc"
    /// ));
    /// ```
    pub fn ephemeral_token(mut self, token: impl Into<Secret>) -> Self {
        self.ephemeral_token = Some(token.into());
        self
    }

    /// The credential the session presents: the Vertex access token, the ephemeral token,
    /// or the API key (see [`resolve_api_key`](Self::resolve_api_key)).
    pub fn credential(&self) -> Option<Secret> {
        let set = |s: &Option<Secret>| s.clone().filter(|k| !k.expose().trim().is_empty());
        if self.vertex.is_some() {
            set(&self.access_token)
        } else if self.ephemeral_token.is_some() {
            set(&self.ephemeral_token)
        } else {
            self.resolve_api_key()
        }
    }

    /// The `setup.model` value: `models/{model}`, or on Vertex AI the full resource name.
    pub fn model_path(&self) -> String {
        match &self.vertex {
            Some(v) => v.model_path(&self.model),
            None if self.model.starts_with("models/") => self.model.clone(),
            None => format!("models/{}", self.model),
        }
    }

    /// Raw `setup` fields merged last into every `setup` frame (objects merge key by key,
    /// `null` removes a field), for options without a typed setting: `generationConfig`
    /// fields such as `thinkingConfig`, `enableAffectiveDialog`, `mediaResolution`, `topP`,
    /// `topK`, `seed`; `proactivity`; `safetySettings`... **Unstable**: the fields are the
    /// provider's (lowerCamelCase wire names) and may change with it. Checked by
    /// [`validate`](Self::validate): known `setup` and `generationConfig` fields only, and
    /// the type of the fields named above.
    ///
    /// ```
    /// use serde_json::json;
    /// let c = liveagent_gemini::RealtimeConfig::new("gemini-live-2.5-flash-preview").raw_setup(json!({
    ///     "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}, "topP": 0.9, "seed": 7},
    ///     "proactivity": {"proactiveAudio": true},
    /// }));
    /// assert!(c.validate().is_ok());
    /// let bad = liveagent_gemini::RealtimeConfig::new("m")
    ///     .raw_setup(json!({"generationConfig": {"top_p": 0.9}}));
    /// assert!(bad.validate().unwrap_err().to_string().contains("unknown field `top_p`"));
    /// ```
    pub fn raw_setup(mut self, setup: serde_json::Value) -> Self {
        self.raw_setup = Some(setup);
        self
    }

    /// The `setup` fields [`raw_setup`](Self::raw_setup) may set (google-genai 3.6.1
    /// `LiveClientSetup`, plus `realtimeInputConfig`).
    pub const RAW_SETUP_FIELDS: &[&str] = &[
        "model",
        "generationConfig",
        "systemInstruction",
        "tools",
        "realtimeInputConfig",
        "sessionResumption",
        "contextWindowCompression",
        "inputAudioTranscription",
        "outputAudioTranscription",
        "proactivity",
        "explicitVadSignal",
        "historyConfig",
        "avatarConfig",
        "safetySettings",
        "labels",
    ];

    /// The `generationConfig` fields [`raw_setup`](Self::raw_setup) may set.
    pub const RAW_GENERATION_CONFIG_FIELDS: &[&str] = &[
        "modelSelectionConfig",
        "responseJsonSchema",
        "audioTimestamp",
        "candidateCount",
        "enableAffectiveDialog",
        "frequencyPenalty",
        "logprobs",
        "maxOutputTokens",
        "mediaResolution",
        "presencePenalty",
        "responseLogprobs",
        "responseMimeType",
        "responseModalities",
        "responseSchema",
        "routingConfig",
        "seed",
        "speechConfig",
        "stopSequences",
        "temperature",
        "thinkingConfig",
        "topK",
        "topP",
        "enableEnhancedCivicAnswers",
        "translationConfig",
    ];

    fn validate_raw_setup(raw: &serde_json::Value) -> Result<(), LiveError> {
        use liveagent_core::raw::check_object;
        use serde_json::Value;
        check_object("gemini: raw_setup", raw, Self::RAW_SETUP_FIELDS)?;
        let bad = |field: &str, want: &str, got: &Value| {
            LiveError::config(format!(
                "gemini: raw_setup: `{field}` must be {want}, not {got}"
            ))
        };
        if let Some(p) = raw.get("proactivity").filter(|v| !v.is_null()) {
            check_object(
                "gemini: raw_setup.proactivity",
                p,
                &["proactiveAudio", "proactiveVideo"],
            )?;
            for (k, v) in p.as_object().into_iter().flatten() {
                if !v.is_boolean() && !v.is_null() {
                    return Err(bad(&format!("proactivity.{k}"), "a boolean", v));
                }
            }
        }
        let Some(g) = raw.get("generationConfig").filter(|v| !v.is_null()) else {
            return Ok(());
        };
        check_object(
            "gemini: raw_setup.generationConfig",
            g,
            Self::RAW_GENERATION_CONFIG_FIELDS,
        )?;
        for (k, v) in g.as_object().into_iter().flatten() {
            if v.is_null() {
                continue;
            }
            let field = format!("generationConfig.{k}");
            match k.as_str() {
                "topP" | "temperature" | "presencePenalty" | "frequencyPenalty"
                    if !v.is_number() =>
                {
                    return Err(bad(&field, "a number", v));
                }
                "topK" | "seed" | "maxOutputTokens" | "candidateCount"
                    if !(v.is_i64() || v.is_u64()) =>
                {
                    return Err(bad(&field, "an integer", v));
                }
                "enableAffectiveDialog" | "audioTimestamp" if !v.is_boolean() => {
                    return Err(bad(&field, "a boolean", v));
                }
                "mediaResolution"
                    if !matches!(
                        v.as_str(),
                        Some(
                            "MEDIA_RESOLUTION_UNSPECIFIED"
                                | "MEDIA_RESOLUTION_LOW"
                                | "MEDIA_RESOLUTION_MEDIUM"
                                | "MEDIA_RESOLUTION_HIGH"
                        )
                    ) =>
                {
                    return Err(bad(
                        &field,
                        "one of MEDIA_RESOLUTION_LOW, MEDIA_RESOLUTION_MEDIUM, \
                         MEDIA_RESOLUTION_HIGH, MEDIA_RESOLUTION_UNSPECIFIED",
                        v,
                    ));
                }
                "thinkingConfig" => {
                    check_object(
                        "gemini: raw_setup.generationConfig.thinkingConfig",
                        v,
                        &["includeThoughts", "thinkingBudget", "thinkingLevel"],
                    )?;
                    if let Some(b) = v.get("thinkingBudget").filter(|b| !b.is_null()) {
                        if !b.is_i64() {
                            return Err(bad(
                                "generationConfig.thinkingConfig.thinkingBudget",
                                "an integer",
                                b,
                            ));
                        }
                    }
                    if let Some(b) = v.get("includeThoughts").filter(|b| !b.is_null()) {
                        if !b.is_boolean() {
                            return Err(bad(
                                "generationConfig.thinkingConfig.includeThoughts",
                                "a boolean",
                                b,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sets the output: [`AudioOutput`] or [`TextOutput`].
    pub fn output(mut self, output: impl Into<Output>) -> Self {
        self.output = output.into();
        self
    }

    /// Sets the input options.
    pub fn input(mut self, input: InputConfig) -> Self {
        self.input = input;
        self
    }

    /// Sets activity detection (shortcut for `input.activity_detection`).
    pub fn activity_detection(mut self, d: ActivityDetection) -> Self {
        self.input.activity_detection = d;
        self
    }

    /// Sets barge-in behaviour (shortcut for `input.activity_handling`).
    pub fn activity_handling(mut self, h: ActivityHandling) -> Self {
        self.input.activity_handling = Some(h);
        self
    }

    /// Turns on context window compression.
    pub fn context_compression(mut self, c: ContextCompression) -> Self {
        self.compression = Some(c);
        self
    }

    /// Sets session resumption.
    pub fn session_resumption(mut self, r: SessionResumption) -> Self {
        self.resumption = r;
        self
    }

    /// Sets the API version.
    pub fn api_version(mut self, v: ApiVersion) -> Self {
        self.api_version = v;
        self
    }

    /// Sets the base URL (`ws://127.0.0.1:PORT` for the local server). A trailing `/` is
    /// ignored.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets the API key.
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

    /// Sets the temperature.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets the output token limit.
    pub fn max_output_tokens(mut self, n: u32) -> Self {
        self.max_output_tokens = Some(n);
        self
    }

    /// The languages the input and output transcriptions should expect (BCP-47 codes such
    /// as `en-US`; Gemini `languageCodes`).
    pub fn transcription_languages<S: Into<String>>(
        mut self,
        codes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.transcription_languages = codes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets how many history entries are kept for replay after a reconnect.
    pub fn max_history_entries(mut self, n: usize) -> Self {
        self.max_history_entries = n.max(1);
        self
    }

    /// Sets how many bytes of text the replay history keeps (default 128 KiB,
    /// [`DEFAULT_MAX_HISTORY_BYTES`](liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES)).
    pub fn history_max_bytes(mut self, bytes: usize) -> Self {
        self.history_max_bytes = bytes;
        self
    }

    /// Sets the cap on one turn's transcript or text, in bytes (default 64 KiB).
    pub fn max_item_text_bytes(mut self, bytes: usize) -> Self {
        self.max_item_text_bytes = bytes;
        self
    }

    /// True when the model answers in audio.
    pub fn is_audio_output(&self) -> bool {
        matches!(self.output, Output::Audio(_))
    }

    /// True when the application marks user activity itself.
    pub fn manual_activity(&self) -> bool {
        self.input.activity_detection.disabled
    }

    /// The WebSocket URL: `{base}/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent`;
    /// on Vertex AI `{base}/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent`;
    /// with an ephemeral token `{base}/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token={token}`
    /// (so the URL holds a secret: log it only through `ConnectRequest`'s redacting `Debug`).
    pub fn url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        if self.vertex.is_some() {
            return format!(
                "{base}/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
            );
        }
        if let Some(token) = &self.ephemeral_token {
            return format!(
                "{base}/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained?access_token={}",
                encode_query(token.expose())
            );
        }
        format!(
            "{base}/ws/google.ai.generativelanguage.{}.GenerativeService.BidiGenerateContent",
            self.api_version.as_str()
        )
    }

    /// The key to use: the configured one, else `GEMINI_API_KEY`, else `GOOGLE_API_KEY`.
    pub fn resolve_api_key(&self) -> Option<Secret> {
        self.api_key
            .clone()
            .filter(|k| !k.expose().trim().is_empty())
            .or_else(|| Secret::from_env("GEMINI_API_KEY"))
            .or_else(|| Secret::from_env("GOOGLE_API_KEY"))
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), LiveError> {
        if self.model.trim().is_empty() {
            return Err(LiveError::config("gemini: the model id is empty"));
        }
        if let Some(raw) = &self.raw_setup {
            Self::validate_raw_setup(raw)?;
        }
        if let Some(v) = &self.vertex {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            };
            if !ok(&v.project) || !ok(&v.location) {
                return Err(LiveError::config(format!(
                    "gemini: Vertex AI project {:?} and location {:?} must be plain ids such as \
                     \"my-project\" and \"us-central1\"",
                    v.project, v.location
                )));
            }
            if self.ephemeral_token.is_some() {
                return Err(LiveError::config(
                    "gemini: ephemeral tokens are a Developer API feature; Vertex AI takes an \
                     OAuth access token (.access_token)",
                ));
            }
        }
        if let Some(t) = &self.ephemeral_token {
            if !t.expose().starts_with("auth_tokens/") || t.expose().len() <= "auth_tokens/".len() {
                return Err(LiveError::config(
                    "gemini: an ephemeral token is the `name` POST v1alpha/auth_tokens returns \
                     (\"auth_tokens/…\")",
                ));
            }
        }
        if !(self.base_url.starts_with("ws://") || self.base_url.starts_with("wss://")) {
            return Err(LiveError::config(format!(
                "gemini: base URL must start with ws:// or wss://, got {:?}",
                self.base_url
            )));
        }
        if let Some(url) = liveagent_core::RealtimeConfig::insecure_transport(self) {
            return Err(insecure_error("gemini", &url));
        }
        if let Some(c) = self.compression {
            if let (Some(trigger), Some(target)) = (c.trigger_tokens, c.target_tokens) {
                if target > trigger {
                    return Err(LiveError::config(format!(
                        "gemini: compression target ({target}) exceeds trigger ({trigger})"
                    )));
                }
            }
        }
        if let Some(bad) = self.transcription_languages.iter().find(|c| {
            c.trim().is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
        }) {
            return Err(LiveError::config(format!(
                "gemini: transcription language {bad:?} is not a BCP-47 code such as \"en-US\""
            )));
        }
        if let Output::Audio(a) = &self.output {
            if a.voice.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(LiveError::config("gemini: the voice name is empty"));
            }
        }
        Ok(())
    }

    pub(crate) fn activity_detection_is_default(&self) -> bool {
        self.input.activity_detection.is_default()
    }
}

impl liveagent_core::RealtimeConfig for RealtimeConfig {
    fn provider(&self) -> &'static str {
        "gemini"
    }

    fn input_sample_rate(&self) -> u32 {
        INPUT_SAMPLE_RATE
    }

    fn output_sample_rate(&self) -> u32 {
        OUTPUT_SAMPLE_RATE
    }

    fn audio_output(&self) -> bool {
        self.is_audio_output()
    }

    fn insecure_transport(&self) -> Option<String> {
        let key = self.credential()?;
        if self.allow_insecure_transport
            || !liveagent_core::secret::is_cleartext_to_remote(&self.base_url)
        {
            return None;
        }
        Some(key.redact(&self.base_url))
    }

    fn build_protocol(&self, setup: SessionSetup) -> Result<Box<dyn RealtimeProtocol>, LiveError> {
        Ok(Box::new(GeminiProtocol::new(self.clone(), setup)?))
    }
}

/// The error for a key that would travel in cleartext.
fn insecure_error(provider: &str, url: &str) -> LiveError {
    LiveError::config(format!(
        "{provider}: refusing to send the API key in cleartext to {url}: use wss:// (or a \
         loopback host), or opt in with .allow_insecure_transport()"
    ))
}

/// Percent-encodes a query parameter value: everything but unreserved characters and `/`
/// (legal in a query, and kept so that the token appears verbatim in the URL, where
/// redaction finds it).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
