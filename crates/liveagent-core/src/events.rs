//! Every event a live conversation carries.
//!
//! Each event is its own struct (so an actor can `impl Handler<SynthesizedAudio>` for just the
//! events it cares about) and a variant of [`LiveEvent`] (so one stream can carry several
//! kinds). [`EventKind`] names the kinds for filtering. Events are actix messages with
//! `Result = ()`.
//!
//! | Direction | Events |
//! |---|---|
//! | microphone → session | [`RecordedAudio`] |
//! | session → player | [`SynthesizedAudio`], [`Interrupted`] |
//! | player → session | [`PlaybackStopped`] (how much of an item was heard, for truncation) |
//! | session → everyone | [`ModelMessageChunk`], [`InputTranscriptChunk`], [`OutputTranscriptChunk`], [`SpeechStarted`], [`SpeechStopped`], [`ResponseStarted`], [`ResponseDone`], [`SessionOpened`], [`SessionUpdated`], [`SessionReconnecting`], [`SessionReconnected`], [`SessionClosed`], [`ResumptionHandleUpdated`] |
//! | session → tool executor | [`ToolCallRequested`], [`ToolCallCancelled`] |
//! | tool executor → session | [`ToolResult`] |
//! | tools → everyone | [`ToolProgress`], [`HumanInputRequest`] (answered by [`HumanMessage`]), [`TaskStarted`] / [`TaskCompleted`] / [`TaskFailed`] (a handed-off agent) |
//! | player → everyone | [`AudioPlaybackStarted`], [`PlaybackUnderrun`] |
//! | observers → everyone | [`ObserverStarted`], [`ObserverCompleted`], [`ObserverAlert`] |
//! | application → session | [`UserText`], [`SessionControl`] |
//! | anyone → everyone | [`ErrorEvent`], [`AudioDropped`], [`TextDropped`] |
//!
//! Every `LiveEvent` is as large as its largest variant, and every slot of a stream's
//! channel, a bus queue, a mailbox and the conversation history holds one. So the few
//! events much larger than the rest and published at most once per response
//! ([`ResponseDone`], with its token [`Usage`], [`TaskCompleted`], [`TaskFailed`]) are
//! boxed in their variant: `LiveEvent::ResponseDone(Box<ResponseDone>)`. That keeps a
//! `LiveEvent` at 88 bytes instead of 208 (checked when this crate compiles). The event
//! structs themselves are unchanged; build a `LiveEvent` from one with `.into()`, and take
//! one out with [`Event::from_event`] or a stream of that type (`stream().only::<ResponseDone>()`).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::audio::AudioChunk;
use crate::error::LiveError;

/// Implemented by every event struct: converts to and from [`LiveEvent`].
pub trait Event: Clone + Send + Sync + std::fmt::Debug + 'static {
    /// The kind tag of this event type.
    const KIND: EventKind;
    /// Wraps the event in [`LiveEvent`].
    fn into_event(self) -> LiveEvent;
    /// Unwraps the event, if `event` is of this type.
    fn from_event(event: LiveEvent) -> Option<Self>;
    /// Borrows the event, if `event` is of this type.
    fn from_event_ref(event: &LiveEvent) -> Option<&Self>;
}

/// Whether the bus may drop an event for a subscriber that cannot keep up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventClass {
    /// Audio: a lagging subscriber loses the oldest chunks first.
    Audio,
    /// Everything else: never dropped.
    Control,
}

/// The payload type of a [`LiveEvent`] variant: the event, or the event boxed.
macro_rules! payload {
    (boxed $name:ident) => { Box<$name> };
    ($name:ident) => { $name };
}

/// Wraps an event into its variant's payload.
macro_rules! wrap {
    (boxed $e:expr) => {
        Box::new($e)
    };
    ($e:expr) => {
        $e
    };
}

/// Takes an event out of its variant's payload.
macro_rules! unwrap {
    (boxed $e:expr) => {
        *$e
    };
    ($e:expr) => {
        $e
    };
}

/// Borrows an event in its variant's payload.
macro_rules! unwrap_ref {
    (boxed $e:expr) => {
        &**$e
    };
    ($e:expr) => {
        $e
    };
}

/// The doc line of a variant.
macro_rules! variant_doc {
    (boxed $name:ident) => {
        concat!(
            "A [`",
            stringify!($name),
            "`], boxed: it is much larger than most events, and \
                 every `LiveEvent` is as large as its largest variant."
        )
    };
    ($name:ident) => {
        concat!("A [`", stringify!($name), "`].")
    };
}

macro_rules! events {
    ($( $name:ident : $class:ident $([$boxed:ident])? ),* $(,)?) => {
        /// The kind of an event, one per event type.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        pub enum EventKind { $( #[doc = concat!("[`", stringify!($name), "`]")] $name ),* }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[ $( EventKind::$name ),* ];

            /// Whether events of this kind may be dropped for lagging subscribers.
            pub fn class(self) -> EventClass {
                match self { $( EventKind::$name => EventClass::$class ),* }
            }

            /// The bit of this kind in an [`EventFilter`].
            pub(crate) fn bit(self) -> u64 {
                1u64 << (self as u32)
            }
        }

        /// Any event, as it travels on the bus and through mixed streams.
        #[derive(Clone, Debug, Serialize)]
        #[serde(tag = "event")]
        pub enum LiveEvent { $( #[doc = variant_doc!($($boxed)? $name)] $name(payload!($($boxed)? $name)) ),* }

        impl LiveEvent {
            /// The kind of this event.
            pub fn kind(&self) -> EventKind {
                match self { $( LiveEvent::$name(_) => EventKind::$name ),* }
            }
        }

        $(
            impl Event for $name {
                const KIND: EventKind = EventKind::$name;
                fn into_event(self) -> LiveEvent { LiveEvent::$name(wrap!($($boxed)? self)) }
                fn from_event(event: LiveEvent) -> Option<Self> {
                    match event { LiveEvent::$name(e) => Some(unwrap!($($boxed)? e)), #[allow(unreachable_patterns)] _ => None }
                }
                fn from_event_ref(event: &LiveEvent) -> Option<&Self> {
                    match event { LiveEvent::$name(e) => Some(unwrap_ref!($($boxed)? e)), #[allow(unreachable_patterns)] _ => None }
                }
            }
            impl From<$name> for LiveEvent {
                fn from(e: $name) -> LiveEvent { e.into_event() }
            }
            impl actix::Message for $name { type Result = (); }
        )*
    };
}

events! {
    RecordedAudio: Audio,
    SynthesizedAudio: Audio,
    ModelMessageChunk: Control,
    InputTranscriptChunk: Control,
    OutputTranscriptChunk: Control,
    SpeechStarted: Control,
    SpeechStopped: Control,
    ResponseStarted: Control,
    ResponseDone: Control [boxed],
    Interrupted: Control,
    PlaybackStopped: Control,
    ToolCallRequested: Control,
    ToolCallCancelled: Control,
    ToolResult: Control,
    UserText: Control,
    SessionControl: Control,
    SessionOpened: Control,
    SessionUpdated: Control,
    SessionReconnecting: Control,
    SessionReconnected: Control,
    SessionClosed: Control,
    ErrorEvent: Control,
    AudioDropped: Control,
    TextDropped: Control,
    AudioPlaybackStarted: Control,
    HumanInputRequest: Control,
    HumanMessage: Control,
    ObserverStarted: Control,
    ObserverCompleted: Control,
    ObserverAlert: Control,
    ToolProgress: Control,
    TaskStarted: Control,
    TaskCompleted: Control [boxed],
    TaskFailed: Control [boxed],
    ResumptionHandleUpdated: Control,
    PlaybackUnderrun: Control,
}

impl actix::Message for LiveEvent {
    type Result = ();
}

impl LiveEvent {
    /// About how many bytes this event holds: its samples for audio, the length of its JSON
    /// form otherwise (counted without building it). The bus bounds its queues with this.
    pub fn approx_bytes(&self) -> usize {
        match self {
            LiveEvent::RecordedAudio(a) => a.audio.samples.len() * 2 + 64,
            LiveEvent::SynthesizedAudio(a) => a.audio.samples.len() * 2 + 64,
            // The frequent text events: their strings plus the JSON around them (escaping
            // not counted), without walking a serializer.
            LiveEvent::ModelMessageChunk(c) => c.item_id.len() + c.text.len() + 64,
            LiveEvent::OutputTranscriptChunk(c) => {
                c.item_id.as_ref().map_or(0, |i| i.len()) + c.text.len() + 64
            }
            LiveEvent::InputTranscriptChunk(c) => {
                c.item_id.as_ref().map_or(0, |i| i.len()) + c.text.len() + 64
            }
            LiveEvent::ToolResult(r) if r.output.is_err() => {
                r.call_id.len() + r.name.len() + r.output.as_ref().err().map_or(0, String::len) + 96
            }
            other => {
                let mut counter = ByteCounter(0);
                let _ = serde_json::to_writer(&mut counter, other);
                counter.0
            }
        }
    }
}

/// An `io::Write` that only counts.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Identifiers (item, response, call ids) are shared strings: cloning one per audio chunk and
/// subscriber copies a pointer.
pub type Id = Arc<str>;

/// Microphone audio, published by the recorder and sent to the provider by the session.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedAudio {
    /// The samples, at the session's input rate (24 kHz OpenAI, 16 kHz Gemini).
    pub audio: AudioChunk,
}

/// Audio synthesized by the model, published by the session for the player.
#[derive(Clone, Debug, Serialize)]
pub struct SynthesizedAudio {
    /// The response this audio belongs to, when the provider names it.
    pub response_id: Option<Id>,
    /// The assistant item being spoken (the id used to truncate it on barge-in).
    pub item_id: Id,
    /// The samples (24 kHz for both providers).
    pub audio: AudioChunk,
}

/// Where the words of a [`ModelMessageChunk`] come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TextSource {
    /// The model wrote them (text output mode, or text parts of a turn).
    #[default]
    Text,
    /// The model spoke them: the provider's transcript of the synthesized audio (the same
    /// words also arrive as [`OutputTranscriptChunk`]).
    Transcript,
}

/// What the model says, as it says it, in every output mode: the text it writes, or the
/// transcript of what it speaks (`source` tells which). This is AG2's `ModelMessageChunk`:
/// `stream().only::<ModelMessageChunk>()` shows the model's words whatever the output.
#[derive(Clone, Debug, Serialize)]
pub struct ModelMessageChunk {
    /// The assistant item the text belongs to (empty when the provider names none).
    pub item_id: Id,
    /// The text delta.
    pub text: Arc<str>,
    /// Written text or the transcript of speech.
    pub source: TextSource,
}

impl ModelMessageChunk {
    /// A text chunk of item `item_id`.
    pub fn new(item_id: impl Into<Id>, text: impl Into<Arc<str>>) -> Self {
        ModelMessageChunk {
            item_id: item_id.into(),
            text: text.into(),
            source: TextSource::Text,
        }
    }

    /// A transcript chunk of item `item_id` (words the model spoke).
    pub fn transcript(item_id: impl Into<Id>, text: impl Into<Arc<str>>) -> Self {
        ModelMessageChunk {
            source: TextSource::Transcript,
            ..ModelMessageChunk::new(item_id, text)
        }
    }

    /// The chunk mirroring an output transcript delta; `None` for final (whole) transcripts
    /// and empty deltas, so the concatenated chunks are the spoken text exactly once.
    pub fn from_transcript(chunk: &OutputTranscriptChunk) -> Option<Self> {
        if chunk.is_final || chunk.text.is_empty() {
            return None;
        }
        Some(ModelMessageChunk::transcript(
            chunk.item_id.clone().unwrap_or_else(|| Id::from("")),
            chunk.text.clone(),
        ))
    }

    /// True when the words are a transcript of speech.
    pub fn is_transcript(&self) -> bool {
        self.source == TextSource::Transcript
    }
}

/// A piece of the transcript of what the user said.
#[derive(Clone, Debug, Serialize)]
pub struct InputTranscriptChunk {
    /// The user item, when the provider names it (OpenAI does, Gemini does not).
    pub item_id: Option<Id>,
    /// The text delta, or the whole transcript when `is_final`.
    pub text: Arc<str>,
    /// True for the completed transcript of an utterance.
    pub is_final: bool,
}

/// A piece of the transcript of what the model said aloud.
#[derive(Clone, Debug, Serialize)]
pub struct OutputTranscriptChunk {
    /// The assistant item.
    pub item_id: Option<Id>,
    /// The text delta, or the whole transcript when `is_final`.
    pub text: Arc<str>,
    /// True for the completed transcript of an item.
    pub is_final: bool,
}

/// The provider's turn detection heard the user start speaking (the barge-in trigger).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpeechStarted {
    /// The user item being recorded, when named.
    pub item_id: Option<Id>,
    /// Where speech started, in ms of input audio since the session began.
    pub audio_start_ms: Option<u64>,
}

// Every channel slot, queue entry and history entry is a `LiveEvent`: a new large field
// belongs in a boxed variant (see the module docs), not inline.
const _: () = assert!(
    std::mem::size_of::<LiveEvent>() <= 88,
    "LiveEvent grew past 88 bytes: box the large event's variant"
);

/// The provider's turn detection heard the user stop speaking.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpeechStopped {
    /// The user item, when named.
    pub item_id: Option<Id>,
    /// Where speech stopped, in ms of input audio since the session began.
    pub audio_end_ms: Option<u64>,
}

/// The model started a response.
#[derive(Clone, Debug, Serialize)]
pub struct ResponseStarted {
    /// The response id (Gemini has none; the session makes one up).
    pub response_id: Id,
}

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// It finished.
    Completed,
    /// It was cancelled (barge-in or `response.cancel`).
    Cancelled,
    /// It was cut short (token limit, content filter).
    Incomplete,
    /// It failed.
    Failed,
}

/// Token usage of one response, as the provider reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output (response) tokens.
    pub output_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Audio tokens among the input tokens, when reported.
    pub input_audio_tokens: Option<u64>,
    /// Audio tokens among the output tokens, when reported.
    pub output_audio_tokens: Option<u64>,
    /// Cached input tokens, when reported.
    pub cached_tokens: Option<u64>,
    /// Thinking (reasoning) tokens, when reported (Gemini `thoughtsTokenCount`).
    pub thinking_tokens: Option<u64>,
    /// Usage of each stage of a cascade (speech-to-text, LLM, text-to-speech); empty for
    /// realtime providers. The token counts above are then the LLM's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageUsage>,
}

/// Which stage of a cascade a [`StageUsage`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Speech-to-text.
    Stt,
    /// The language model.
    Llm,
    /// Text-to-speech.
    Tts,
}

/// What one cascade stage consumed for one response (summed over its requests).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageUsage {
    /// The stage.
    pub stage: Stage,
    /// `openai`, `elevenlabs`, `mistral`...
    pub provider: Arc<str>,
    /// The model used.
    pub model: Arc<str>,
    /// Requests (or streaming sessions' turns) sent.
    pub requests: u32,
    /// Input tokens, when the provider reports them.
    pub input_tokens: u64,
    /// Output tokens, when the provider reports them.
    pub output_tokens: u64,
    /// Audio in or out, in milliseconds (STT: audio transcribed; TTS: audio synthesized).
    pub audio_ms: u64,
    /// Characters in or out (STT: transcript; TTS: text synthesized).
    pub characters: u64,
}

impl Usage {
    /// Adds `other` to this total (optional counts add up when either side has them).
    pub fn add(&mut self, other: &Usage) {
        fn opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            }
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.total_tokens += other.total_tokens;
        self.input_audio_tokens = opt(self.input_audio_tokens, other.input_audio_tokens);
        self.output_audio_tokens = opt(self.output_audio_tokens, other.output_audio_tokens);
        self.cached_tokens = opt(self.cached_tokens, other.cached_tokens);
        self.thinking_tokens = opt(self.thinking_tokens, other.thinking_tokens);
        for stage in &other.stages {
            match self.stages.iter_mut().find(|s| {
                s.stage == stage.stage && s.provider == stage.provider && s.model == stage.model
            }) {
                Some(s) => {
                    s.requests += stage.requests;
                    s.input_tokens += stage.input_tokens;
                    s.output_tokens += stage.output_tokens;
                    s.audio_ms += stage.audio_ms;
                    s.characters += stage.characters;
                }
                None => self.stages.push(stage.clone()),
            }
        }
    }
}

/// The model finished (or abandoned) a response.
///
/// `text` is everything the model said in it (its written text, or the transcript of its
/// speech): the session fills it from the response's [`ModelMessageChunk`]s, so it is
/// AG2's `ModelMessage` content.
#[derive(Clone, Debug, Serialize)]
pub struct ResponseDone {
    /// The response id.
    pub response_id: Id,
    /// How it ended.
    pub status: ResponseStatus,
    /// Why it ended that way (`turn_detected`, `client_cancelled`, `max_output_tokens`...).
    pub reason: Option<String>,
    /// Token usage, when the provider reports it.
    pub usage: Option<Usage>,
    /// The full text of the response (see above); `None` when it said nothing.
    pub text: Option<Arc<str>>,
}

/// The user barged in: the player must stop and drop queued audio now.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Interrupted {
    /// The response that was cut off, if known.
    pub response_id: Option<Id>,
    /// The assistant item that was being played, if known.
    pub item_id: Option<Id>,
}

/// The player stopped playing an assistant item: how much of it the user really heard.
/// The OpenAI session turns an interrupted report into `conversation.item.truncate`.
#[derive(Clone, Debug, Serialize)]
pub struct PlaybackStopped {
    /// The assistant item.
    pub item_id: Id,
    /// Milliseconds of the item that reached the speaker.
    pub played_ms: u64,
    /// True when playback was cut by an interruption, false when the item played out.
    pub interrupted: bool,
}

/// A function call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolCall {
    /// The provider's call id; the result must carry it back.
    pub call_id: Id,
    /// The tool name.
    pub name: Arc<str>,
    /// The arguments. When the model sent arguments that are not JSON, this is the raw text
    /// as a JSON string and the executor answers with an error the model can read.
    pub arguments: Value,
    /// The response that asked for it (OpenAI), if any.
    pub response_id: Option<Id>,
}

/// The model asked for one or more tool calls (all calls of one response come together).
#[derive(Clone, Debug, Serialize)]
pub struct ToolCallRequested {
    /// The calls, in the order the model made them.
    pub calls: Vec<ToolCall>,
}

/// The provider withdrew tool calls (Gemini `toolCallCancellation`).
#[derive(Clone, Debug, Serialize)]
pub struct ToolCallCancelled {
    /// The withdrawn call ids.
    pub call_ids: Vec<Id>,
}

/// The outcome of one tool call, published by the tool executor for the session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolResult {
    /// The call this answers.
    pub call_id: Id,
    /// The tool name (Gemini echoes it).
    pub name: Arc<str>,
    /// The tool's value, or an error text the model will read.
    pub output: Result<Value, String>,
    /// True on the last result of a batch: the session then asks the model to go on
    /// (OpenAI `response.create`; Gemini continues by itself).
    pub request_response: bool,
}

impl ToolResult {
    /// The output as the text OpenAI wants in `function_call_output.output`.
    pub fn output_text(&self) -> String {
        match &self.output {
            Ok(Value::String(s)) => s.clone(),
            Ok(v) => v.to_string(),
            Err(e) => serde_json::json!({ "error": e }).to_string(),
        }
    }

    /// The output as the JSON object Gemini wants in `functionResponse.response`
    /// (scalars are wrapped as `{"result": ...}`, errors as `{"error": ...}`).
    pub fn output_object(&self) -> Value {
        match &self.output {
            Ok(Value::Object(m)) => Value::Object(m.clone()),
            Ok(v) => serde_json::json!({ "result": v }),
            Err(e) => serde_json::json!({ "error": e }),
        }
    }
}

/// A text message from the user, added to the conversation.
#[derive(Clone, Debug, Serialize)]
pub struct UserText {
    /// The text.
    pub text: Arc<str>,
    /// Ask the model to answer it right away.
    pub respond: bool,
}

/// Commands to the provider session that are not audio or text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlCommand {
    /// Commit the input audio buffer as a user turn (manual turn detection).
    CommitInput,
    /// Discard the uncommitted input audio.
    ClearInput,
    /// Ask the model for a response.
    CreateResponse,
    /// Cancel the response in progress.
    CancelResponse,
    /// Mark the start of user activity (manual turns, Gemini `activityStart`).
    ActivityStart,
    /// Mark the end of user activity (manual turns, Gemini `activityEnd`).
    ActivityEnd,
}

/// A command for the provider session.
#[derive(Clone, Debug, Serialize)]
pub struct SessionControl {
    /// What to do.
    pub command: ControlCommand,
}

/// The provider session is connected and configured.
#[derive(Clone, Debug, Serialize)]
pub struct SessionOpened {
    /// `openai`, `gemini`...
    pub provider: &'static str,
    /// The provider's session id, if it gives one.
    pub session_id: Option<String>,
}

/// The provider confirmed a configuration change (`session.updated`, `setupComplete`).
#[derive(Clone, Debug, Serialize)]
pub struct SessionUpdated {
    /// `openai`, `gemini`...
    pub provider: &'static str,
}

/// The connection dropped (or is being renewed) and the session is reconnecting.
#[derive(Clone, Debug, Serialize)]
pub struct SessionReconnecting {
    /// 1 for the first attempt after a drop.
    pub attempt: u32,
    /// Why: `connection closed`, `goAway`, `session age limit`...
    pub reason: String,
    /// How long the session waits before this attempt.
    pub delay_ms: u64,
}

/// The session is back after a reconnect, with its configuration and history restored.
#[derive(Clone, Debug, Serialize)]
pub struct SessionReconnected {
    /// How many attempts it took.
    pub attempt: u32,
    /// True when the provider resumed the old session (Gemini resumption handle); false
    /// when the history was replayed into a new one.
    pub resumed: bool,
    /// Milliseconds from the drop to the session being usable again.
    pub outage_ms: u64,
}

/// The provider issued a new session resumption handle (Gemini `sessionResumptionUpdate`
/// with `resumable: true`), or said the last one is no longer usable (`handle: None`). A
/// conversation store records it, so that another instance can resume the provider's
/// session with it instead of replaying the history.
#[derive(Clone, Serialize)]
pub struct ResumptionHandleUpdated {
    /// `gemini`...
    pub provider: &'static str,
    /// The new handle (`None`: forget the previous one).
    pub handle: Option<String>,
}

impl fmt::Debug for ResumptionHandleUpdated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A handle resumes the provider's session: not printed in logs.
        f.debug_struct("ResumptionHandleUpdated")
            .field("provider", &self.provider)
            .field("handle", &self.handle.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The session ended for good.
#[derive(Clone, Debug, Serialize)]
pub struct SessionClosed {
    /// Why it ended.
    pub reason: String,
    /// The error that ended it, when it was not a normal shutdown.
    pub error: Option<LiveError>,
}

/// An error, from any component. `fatal` errors also end the session.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorEvent {
    /// Which component reports it (`openai`, `player`, `tool:get_weather`...).
    pub source: Arc<str>,
    /// The error.
    pub error: LiveError,
    /// True when the component cannot go on.
    pub fatal: bool,
}

impl ErrorEvent {
    /// A non-fatal error from `source`.
    pub fn new(source: impl Into<Arc<str>>, error: LiveError) -> Self {
        ErrorEvent {
            source: source.into(),
            error,
            fatal: false,
        }
    }

    /// A fatal error from `source`.
    pub fn fatal(source: impl Into<Arc<str>>, error: LiveError) -> Self {
        ErrorEvent {
            source: source.into(),
            error,
            fatal: true,
        }
    }
}

/// Audio was dropped on purpose: a bounded buffer was full (microphone audio while
/// reconnecting, or a subscriber that could not keep up).
#[derive(Clone, Debug, Serialize)]
pub struct AudioDropped {
    /// Who dropped it.
    pub source: Arc<str>,
    /// Milliseconds of audio dropped in this report.
    pub dropped_ms: u64,
    /// Why.
    pub reason: String,
}

/// Text was dropped on purpose to keep memory bounded against a provider that sends too
/// much: an item's transcript or text grew past its byte cap (the rest of it is neither kept
/// nor published), or the oldest turns of the history kept to restore a session were
/// dropped past its byte bound.
#[derive(Clone, Debug, Serialize)]
pub struct TextDropped {
    /// Who dropped it (the provider protocol, or the session).
    pub source: Arc<str>,
    /// The item whose text was cut, for a per-item cap; `None` when history turns were
    /// dropped.
    pub item_id: Option<Id>,
    /// History items dropped (0 for a per-item cap).
    pub items: usize,
    /// Bytes of text dropped in this report (for a per-item cap: of the delta that crossed
    /// it; later deltas of the item are dropped silently).
    pub bytes: u64,
    /// Why, naming the bound.
    pub reason: String,
}

/// The player started playing an assistant item: the first of its audio reached the
/// output device (AG2 `AudioPlaybackStarted`).
#[derive(Clone, Debug, Serialize)]
pub struct AudioPlaybackStarted {
    /// The assistant item.
    pub item_id: Id,
    /// The response it belongs to, when named.
    pub response_id: Option<Id>,
}

/// Why the audio output ran dry (see [`PlaybackUnderrun`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnderrunKind {
    /// The device's own buffer ran empty: the audio callback came too late (the device
    /// reported an xrun, or a callback arrived after the audio buffered by the previous one
    /// had played out). A bigger device buffer helps; the adaptive player grows it.
    Device,
    /// The player had nothing to play in the middle of an item: its audio arrived too late
    /// (network or provider jitter larger than the prebuffer). A bigger device buffer does
    /// not help; a bigger prebuffer does.
    Starved,
}

/// The speaker ran dry: the user may have heard a glitch. Published by the player at most
/// once a second per kind while it happens, with the running count.
#[derive(Clone, Debug, Serialize)]
pub struct PlaybackUnderrun {
    /// Who reports it (`player`).
    pub source: Arc<str>,
    /// Device buffer underrun, or a starved queue.
    pub kind: UnderrunKind,
    /// Underruns of this kind since the player started.
    pub count: u64,
    /// Underruns of this kind since the previous report.
    pub new: u64,
    /// The device buffer in use when it happened: frames per device period (0 when the
    /// host did not say).
    pub buffer_frames: u32,
    /// The device's sample rate (frames per second).
    pub sample_rate: u32,
    /// The adaptive device buffer grows to this period (frames asked of the host, which may
    /// round it: ALSA's pulse plugin gives two thirds, in three periods) at the next pause
    /// in playback; `None` when it does not grow (a fixed or host buffer, already at its
    /// cap, or a starved queue).
    pub grow_to: Option<u32>,
}

/// A tool asks a human a question mid-call (`ToolContext::input`); a [`HumanMessage`] with
/// the same `request_id` answers it (AG2 `HumanInputRequest`).
#[derive(Clone, Debug, Serialize)]
pub struct HumanInputRequest {
    /// Names this request; the answer carries it back.
    pub request_id: Id,
    /// The question.
    pub question: Arc<str>,
    /// The tool call that asks, when a tool asks.
    pub call_id: Option<Id>,
    /// The tool that asks.
    pub tool: Option<Arc<str>>,
    /// True when the question is asked by voice: the agent speaks it and the user's next
    /// utterance answers it.
    pub voice: bool,
}

/// A human's answer to a [`HumanInputRequest`] (AG2 `HumanMessage`). Publish one (or call
/// `ConversationContext::answer`) to answer a request from a UI.
#[derive(Clone, Debug, Serialize)]
pub struct HumanMessage {
    /// The request answered.
    pub request_id: Id,
    /// The answer.
    pub text: Arc<str>,
}

/// An observer of the conversation started (AG2 `ObserverStarted`).
#[derive(Clone, Debug, Serialize)]
pub struct ObserverStarted {
    /// The observer's name.
    pub name: Arc<str>,
}

/// An observer of the conversation finished (AG2 `ObserverCompleted`).
#[derive(Clone, Debug, Serialize)]
pub struct ObserverCompleted {
    /// The observer's name.
    pub name: Arc<str>,
}

/// How serious an [`ObserverAlert`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For information.
    Info,
    /// Something may be wrong (a possible loop, a token budget half spent).
    Warning,
    /// Act now (token budget exceeded).
    Critical,
}

/// An observer noticed something (a loop of identical tool calls, a token budget reached):
/// AG2 `ObserverAlert`.
#[derive(Clone, Debug, Serialize)]
pub struct ObserverAlert {
    /// The observer that raised it.
    pub source: Arc<str>,
    /// How serious it is.
    pub severity: Severity,
    /// What it noticed, for people.
    pub message: String,
}

/// A handed-off agent started a task (AG2 `TaskStarted`): published by the tool that
/// `liveagent_agent::Agent::as_tool` makes, before the sub-agent's first request.
#[derive(Clone, Debug, Serialize)]
pub struct TaskStarted {
    /// This task (unique per call).
    pub task_id: Id,
    /// The tool call that started it.
    pub call_id: Id,
    /// The tool.
    pub tool: Arc<str>,
    /// The sub-agent's name.
    pub agent: Arc<str>,
    /// What it was asked to do.
    pub objective: Arc<str>,
}

/// A handed-off agent finished its task (AG2 `TaskCompleted`).
#[derive(Clone, Debug, Serialize)]
pub struct TaskCompleted {
    /// The task.
    pub task_id: Id,
    /// The tool call.
    pub call_id: Id,
    /// The tool.
    pub tool: Arc<str>,
    /// The sub-agent's name.
    pub agent: Arc<str>,
    /// What it was asked to do.
    pub objective: Arc<str>,
    /// Its answer (what the tool returns to the model).
    pub result: Arc<str>,
    /// Tokens the sub-agent used for this task, over all its requests.
    pub usage: Usage,
}

/// A handed-off agent failed (AG2 `TaskFailed`); the tool's result is the error.
#[derive(Clone, Debug, Serialize)]
pub struct TaskFailed {
    /// The task.
    pub task_id: Id,
    /// The tool call.
    pub call_id: Id,
    /// The tool.
    pub tool: Arc<str>,
    /// The sub-agent's name.
    pub agent: Arc<str>,
    /// What it was asked to do.
    pub objective: Arc<str>,
    /// Why, for people (keys redacted).
    pub error: Arc<str>,
}

/// Progress of a running tool call (a handed-off agent's steps, say).
#[derive(Clone, Debug, Serialize)]
pub struct ToolProgress {
    /// The call.
    pub call_id: Id,
    /// The tool.
    pub tool: Arc<str>,
    /// What happened, for people.
    pub message: Arc<str>,
    /// Structured details, when any.
    pub data: Option<Value>,
}
