//! The sans-IO interface a provider implements, and the configuration that builds it.
//!
//! A provider crate (`liveagent-openai`, `liveagent-gemini`) does not touch sockets. It
//! implements [`RealtimeProtocol`]: a state machine that turns incoming WebSocket frames into
//! events and commands into outgoing frames, and tells the session runtime when the session
//! is ready, when it must reconnect and when an error is fatal. The session runtime
//! (`liveagent-session`) owns the WebSocket, the supervisor, backoff and buffering, the same
//! for every provider. This keeps protocol logic testable and fuzzable without a network, and
//! makes sure both providers reconnect, buffer and report errors the same way.
//!
//! The protocol object lives as long as the conversation, across reconnects, so it is where
//! the provider keeps what it must replay: configuration, conversation history, resumption
//! handles.

use std::any::Any;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
pub use bytestring::ByteString;
use futures_util::stream::LocalBoxStream;
use serde::Serialize;
use serde_json::Value;

use crate::audio::AudioChunk;
use crate::error::LiveError;
use crate::events::{ControlCommand, ErrorEvent, LiveEvent, PlaybackStopped, ToolResult, UserText};
use crate::secret::Secret;

/// One WebSocket message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireFrame {
    /// A text frame (JSON for both providers): UTF-8 text in a shared buffer, so that a
    /// frame read from the socket is not copied out of it. Build one from a `String` or a
    /// `&'static str` with `.into()`; it derefs to `&str`.
    Text(ByteString),
    /// A binary frame (Gemini may send JSON in binary frames).
    Binary(Bytes),
}

impl WireFrame {
    /// The frame's bytes, whatever its type.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WireFrame::Text(s) => s.as_bytes(),
            WireFrame::Binary(b) => b,
        }
    }
}

/// Where and how to open the WebSocket.
#[derive(Clone)]
pub struct ConnectRequest {
    /// `wss://...` or `ws://...`.
    pub url: String,
    /// Headers to send. Values may hold the secret; `Debug` redacts it.
    pub headers: Vec<(String, String)>,
    /// The secret in use, so that errors and logs can redact it.
    pub secret: Option<Secret>,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &str| match &self.secret {
            Some(secret) => secret.redact(s),
            None => s.to_owned(),
        };
        f.debug_struct("ConnectRequest")
            .field("url", &redact(&self.url))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), redact(v)))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ConnectRequest {
    /// `text` with the secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(secret) => secret.redact(text),
            None => text.to_owned(),
        }
    }
}

/// A function the model may call, as the provider is told about it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolSchema {
    /// The function name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// A JSON Schema object for its arguments.
    pub parameters: Value,
}

/// What the agent asks of every session, whatever the provider.
#[derive(Clone, Debug, Default)]
pub struct SessionSetup {
    /// The system prompt, variables already substituted.
    pub instructions: String,
    /// The tools the model may call.
    pub tools: Vec<ToolSchema>,
}

/// What the application (through the bus) asks of the session.
#[derive(Clone, Debug)]
pub enum SessionCommand {
    /// Microphone audio at the session's input rate.
    Audio(AudioChunk),
    /// A user text message.
    Text(UserText),
    /// A control command.
    Control(ControlCommand),
    /// A tool result to send back.
    ToolResult(ToolResult),
    /// The player stopped an assistant item (for truncation after barge-in).
    PlaybackStopped(PlaybackStopped),
}

/// What a protocol tells the session runtime, besides frames and events.
#[derive(Clone, Debug, PartialEq)]
pub enum ProtocolSignal {
    /// The handshake is done: commands may flow. `resumed` when the provider restored the
    /// previous session rather than starting a new one.
    Ready {
        /// The provider resumed the old session.
        resumed: bool,
    },
    /// The provider asked the client to reconnect (Gemini `goAway`), or the protocol wants a
    /// fresh connection.
    Reconnect {
        /// Why, for the event stream.
        reason: String,
    },
    /// An error retrying cannot fix (bad key, unknown model): stop the session.
    Fatal(LiveError),
}

/// Identifies a [`ProtocolTask`] of one protocol.
pub type TaskId = u64;

/// One item a [`ProtocolTask`] produced, handed back to
/// [`RealtimeProtocol::on_task_item`]. The protocol that made the task knows its item type
/// and downcasts it (`item.downcast::<MyItem>()`).
pub type TaskItem = Box<dyn Any>;

/// I/O a protocol cannot do through its WebSocket (an HTTP request whose body streams, a side
/// socket, a backoff timer), as a lazy stream the runtime drives on the session's own
/// task. Every item goes to [`RealtimeProtocol::on_task_item`], the end to
/// [`RealtimeProtocol::on_task_end`]; [`Outbox::cancel`] drops it. The cascade provider
/// (speech-to-text → LLM → text-to-speech) runs its stages this way, so its state machine
/// stays free of I/O and the session runtime stays the same for every provider.
pub struct ProtocolTask {
    /// The protocol's id for it (unique among its live tasks).
    pub id: TaskId,
    /// The work. Dropping it cancels it.
    pub stream: LocalBoxStream<'static, TaskItem>,
}

impl fmt::Debug for ProtocolTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtocolTask")
            .field("id", &self.id)
            .finish()
    }
}

/// Collects what a protocol step produced: frames to send, events to publish, signals, and
/// tasks to start or cancel.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Frames to send, in order.
    pub frames: Vec<WireFrame>,
    /// Events to publish, in order.
    pub events: Vec<LiveEvent>,
    /// Signals for the runtime.
    pub signals: Vec<ProtocolSignal>,
    /// Tasks to start.
    pub tasks: Vec<ProtocolTask>,
    /// Tasks to cancel (started earlier; unknown or finished ids are ignored).
    pub cancelled: Vec<TaskId>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Outbox::default()
    }

    /// Queues a text frame.
    pub fn send_text(&mut self, text: String) {
        self.frames.push(WireFrame::Text(text.into()));
    }

    /// Serializes `value` as JSON and queues it as a text frame.
    pub fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_string(value) {
            Ok(text) => self.frames.push(WireFrame::Text(text.into())),
            Err(e) => self.error(
                "protocol",
                LiveError::protocol(format!("cannot encode frame: {e}")),
            ),
        }
    }

    /// Queues an event.
    pub fn publish(&mut self, event: impl Into<LiveEvent>) {
        self.events.push(event.into());
    }

    /// Queues a non-fatal error event from `source`.
    pub fn error(&mut self, source: &'static str, error: LiveError) {
        self.events.push(ErrorEvent::new(source, error).into());
    }

    /// Queues a signal.
    pub fn signal(&mut self, signal: ProtocolSignal) {
        self.signals.push(signal);
    }

    /// Asks the runtime to run `stream` as task `id` (see [`ProtocolTask`]).
    pub fn spawn(&mut self, id: TaskId, stream: LocalBoxStream<'static, TaskItem>) {
        self.tasks.push(ProtocolTask { id, stream });
    }

    /// Asks the runtime to drop task `id`. A cancelled task reports nothing more, not even
    /// its end.
    pub fn cancel(&mut self, id: TaskId) {
        self.tasks.retain(|t| t.id != id);
        self.cancelled.push(id);
    }

    /// True when nothing was produced.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
            && self.events.is_empty()
            && self.signals.is_empty()
            && self.tasks.is_empty()
            && self.cancelled.is_empty()
    }
}

/// A provider's wire protocol as a sans-IO state machine. The session runtime calls:
///
/// 1. [`connect_request`](Self::connect_request) to open the socket,
/// 2. [`on_open`](Self::on_open) once it is open (send `setup`, or wait for `session.created`),
/// 3. [`on_frame`](Self::on_frame) for every frame received, until the protocol signals
///    [`ProtocolSignal::Ready`]; only then
/// 4. [`on_command`](Self::on_command) for what the application asks (commands that arrive
///    before that are held by the runtime, audio within a bound),
/// 5. [`on_close`](Self::on_close) when the socket is gone, before reconnecting (step 1).
pub trait RealtimeProtocol: Send + 'static {
    /// `openai`, `gemini`...: the `source` of its events and errors.
    fn provider(&self) -> &'static str;

    /// Where to connect (called before every connection attempt).
    fn connect_request(&self) -> Result<ConnectRequest, LiveError>;

    /// The socket is open. `reconnect` is true after a drop.
    fn on_open(&mut self, reconnect: bool, out: &mut Outbox);

    /// A frame arrived.
    fn on_frame(&mut self, frame: WireFrame, out: &mut Outbox);

    /// The application asks for something. Only called while ready.
    fn on_command(&mut self, command: SessionCommand, out: &mut Outbox);

    /// The provider sent a WebSocket close frame (`code`, `reason`), before
    /// [`on_close`](Self::on_close). Gemini reports errors this way (a refused key, an unknown
    /// model): classify them here, and signal [`ProtocolSignal::Fatal`] when retrying cannot
    /// help.
    fn on_close_frame(&mut self, code: Option<u16>, reason: &str, out: &mut Outbox) {
        let _ = (code, reason, out);
    }

    /// The socket closed or failed. Prepare to replay on the next [`on_open`](Self::on_open).
    fn on_close(&mut self, out: &mut Outbox);

    /// Sample rate of microphone audio this provider takes.
    fn input_sample_rate(&self) -> u32;

    /// True between turns: no response in progress and no user speech. The runtime only
    /// renews a connection proactively while idle.
    fn is_idle(&self) -> bool {
        true
    }

    /// Renew the connection before it reaches this age (OpenAI closes sessions after about
    /// 60 minutes). `None`: no known limit.
    fn max_connection_age(&self) -> Option<Duration> {
        None
    }

    /// False for a protocol that has no session WebSocket of its own (the cascade provider
    /// talks to its stages through [`ProtocolTask`]s): the runtime then skips
    /// [`connect_request`](Self::connect_request), calls [`on_open`](Self::on_open) at once
    /// and never reconnects.
    fn uses_socket(&self) -> bool {
        true
    }

    /// An item of task `id` (see [`Outbox::spawn`]).
    fn on_task_item(&mut self, id: TaskId, item: TaskItem, out: &mut Outbox) {
        let _ = (id, item, out);
    }

    /// Task `id` ended by itself (not when cancelled).
    fn on_task_end(&mut self, id: TaskId, out: &mut Outbox) {
        let _ = (id, out);
    }

    /// Seeds a new protocol with a conversation held elsewhere (another instance, via a
    /// conversation store), before its first connection: the first `on_open` then replays
    /// it (or resumes with the handle) exactly as after a dropped connection. Calls in
    /// `turns` without a result are known calls whose results may still be sent; calls
    /// with one are answered and a second result for them is ignored. Providers that cannot
    /// restore return an error (the default).
    fn restore(&mut self, snapshot: &RestoreSnapshot) -> Result<(), LiveError> {
        let _ = snapshot;
        Err(LiveError::config(format!(
            "the {} provider cannot restore a conversation",
            self.provider()
        )))
    }
}

/// A conversation to restore into a new session ([`RealtimeProtocol::restore`]):
/// provider-neutral, as a conversation store keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestoreSnapshot {
    /// The turns, oldest first.
    pub turns: Vec<RestoreTurn>,
    /// The provider's session resumption handle (Gemini), if one was stored.
    pub resumption_handle: Option<String>,
}

/// One turn of a [`RestoreSnapshot`].
#[derive(Clone, Debug, PartialEq)]
pub enum RestoreTurn {
    /// What the user said (transcript) or typed.
    User(String),
    /// What the model said.
    Assistant {
        /// Its item id on the old session.
        item_id: String,
        /// The whole text.
        text: String,
        /// Milliseconds of audio produced for it (0 in text mode).
        audio_ms: u64,
        /// Milliseconds heard when playback was interrupted.
        heard_ms: Option<u64>,
    },
    /// A function call.
    ToolCall {
        /// The call id.
        call_id: String,
        /// The tool.
        name: String,
        /// The arguments.
        arguments: Value,
    },
    /// Its result.
    ToolResult(ToolResult),
}

/// A provider configuration: `openai::RealtimeConfig`, `gemini::RealtimeConfig`.
/// [`LiveAgent`](https://docs.rs/liveagent) takes any of them.
pub trait RealtimeConfig: fmt::Debug + Send + Sync + 'static {
    /// `openai`, `gemini`...
    fn provider(&self) -> &'static str;

    /// Sample rate of microphone audio the provider takes.
    fn input_sample_rate(&self) -> u32;

    /// Sample rate of the audio the provider produces.
    fn output_sample_rate(&self) -> u32 {
        24_000
    }

    /// True when the model answers in audio, false for text-only output.
    fn audio_output(&self) -> bool {
        true
    }

    /// Builds the protocol state machine for one conversation.
    fn build_protocol(&self, setup: SessionSetup) -> Result<Box<dyn RealtimeProtocol>, LiveError>;

    /// The (redacted) URL when this configuration would send an API key in cleartext
    /// (`ws://`, `http://`) to a host that is not loopback and the user did not opt in with
    /// `allow_insecure_transport()`; `None` when the transport is fine.
    fn insecure_transport(&self) -> Option<String> {
        None
    }
}
