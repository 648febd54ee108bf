//! [`GeminiProtocol`]: the sans-IO state machine of a Gemini Live conversation.
//!
//! It lives as long as the conversation, across connections, and keeps what a new
//! connection needs: the latest usable resumption handle, the frames the server has not
//! consumed yet (transparent mode), tool calls waiting for results, and the conversation
//! history to replay when the session cannot be resumed.
//!
//! # Layout
//! The state (this struct and the small records it keeps), sending (with the bookkeeping
//! for a transparent resend) and the [`RealtimeProtocol`] entry points (`on_open`,
//! `on_frame` dispatching each part of a server message, `on_command`, `on_close`) live here;
//! the behaviour is split by concern:
//! - `session`: session lifecycle: the `setup` message, `setupComplete` (resume or replay
//!   the history), resumption handles, and close frames (how Gemini reports errors).
//! - `turns`: model turns: opening and finishing a turn, model text, input and output
//!   transcripts, `turnComplete`, voice activity, user text and the control commands.
//! - `audio`: model audio out, barge-in (`interrupted`), microphone audio in, playback reports.
//! - `tools`: tool call batches, cancellations, results (sent once per batch).

mod audio;
mod session;
mod tools;
mod turns;

use turns::to_usage;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use liveagent_core::{
    ConnectRequest, ErrorKind, Id, LiveError, Outbox, ProtocolSignal, RealtimeProtocol,
    ResponseStatus, RestoreSnapshot, RestoreTurn, Secret, SessionCommand, SessionSetup, Usage,
    WireFrame,
};

use liveagent_core::limits::RecentIds;

use crate::config::{RealtimeConfig, INPUT_SAMPLE_RATE};
use crate::history::{History, HistoryEntry};
use crate::wire::{self, *};

const PROVIDER: &str = "gemini";
/// Most frames kept for a transparent resend.
const MAX_UNCONSUMED_FRAMES: usize = 2_000;
/// Most bytes kept for a transparent resend.
const MAX_UNCONSUMED_BYTES: usize = 8 * 1024 * 1024;
/// Most commands held if the runtime sends some before the session is ready.
const MAX_HELD_COMMANDS: usize = 1_000;
/// Connections closed during the handshake, in a row, before an error is reported.
const SETUP_FAILURES_REPORTED: u32 = 3;
/// An input transcript piece this recent means the user may still be speaking.
const SPEAKING_WINDOW: Duration = Duration::from_millis(1500);

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No connection opened yet.
    Idle,
    /// `setup` sent, waiting for `setupComplete`.
    AwaitingSetup,
    /// Commands flow.
    Ready,
    /// The socket is gone.
    Closed,
}

#[derive(Clone, Debug)]
struct Handle {
    value: String,
    received: Instant,
    /// History sequence number when the handle arrived: entries from there on are not in the
    /// state the handle restores.
    history_seq: u64,
}

#[derive(Debug)]
struct Turn {
    response_id: Id,
    item_id: Id,
    text: String,
    transcript: String,
    transcript_final: bool,
    audio_samples: u64,
    audio_rate: u32,
    odd_byte: Option<u8>,
    usage: Option<Usage>,
}

#[derive(Debug)]
struct PendingCall {
    call_id: String,
    wire_id: Option<String>,
    name: String,
    answered: bool,
    cancelled: bool,
}

#[derive(Debug)]
struct Batch {
    calls: Vec<PendingCall>,
    /// Calls neither answered nor cancelled yet (so `complete` is O(1)).
    open: usize,
    results: Vec<FunctionResponse>,
    /// The server no longer knows these calls (new session): results go as `clientContent`.
    orphaned: bool,
    history_seq: u64,
}

impl Batch {
    fn new(calls: Vec<PendingCall>, orphaned: bool, history_seq: u64) -> Batch {
        Batch {
            open: calls.iter().filter(|c| !c.answered && !c.cancelled).count(),
            calls,
            results: Vec::new(),
            orphaned,
            history_seq,
        }
    }

    fn complete(&self) -> bool {
        self.open == 0
    }
}

/// The Gemini Live protocol state machine (implements [`RealtimeProtocol`]).
///
/// Build it with [`RealtimeConfig::build_protocol`](liveagent_core::RealtimeConfig::build_protocol)
/// or [`GeminiProtocol::new`], and hand it to `liveagent_session::start_session`.
pub struct GeminiProtocol {
    config: RealtimeConfig,
    setup: SessionSetup,
    api_key: Option<Secret>,
    phase: Phase,
    ever_ready: bool,
    // resumption
    handle: Option<Handle>,
    using_handle: Option<Handle>,
    // transparent mode
    next_index: u64,
    unconsumed: VecDeque<(u64, String)>,
    unconsumed_bytes: usize,
    resend: Vec<String>,
    overflow_warned: bool,
    // commands that arrived while not ready
    held: VecDeque<SessionCommand>,
    // turns
    turn_seq: u64,
    turn: Option<Turn>,
    last_turn: Option<(Id, Id)>,
    input_since_turn: bool,
    input: String,
    input_split: usize,
    last_input_at: Option<Instant>,
    user_speaking: bool,
    pending_usage: Option<Usage>,
    // tools
    /// Tool call batches waiting for results, by batch number (in arrival order).
    batches: BTreeMap<u64, Batch>,
    /// Where each call of a waiting batch is: `call_id` → (batch number, index in it), so
    /// a result or cancellation is found without a scan (a hostile `toolCall` may carry
    /// tens of thousands of calls).
    call_index: HashMap<String, (u64, usize)>,
    batch_seq: u64,
    answered: RecentIds,
    cancelled: RecentIds,
    call_seq: u64,
    // manual activity
    activity_open: bool,
    history: History,
    /// Byte caps per turn on transcripts and text.
    text_caps: liveagent_core::limits::ItemTextCaps,
    /// When the last `TextDropped` for the history bound was published.
    trim_reported_at: Option<Instant>,
    frames_received: u64,
    /// Connections closed before `setupComplete`, in a row.
    setup_failures: u32,
}

impl std::fmt::Debug for GeminiProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProtocol")
            .field("model", &self.config.model)
            .field("phase", &self.phase)
            .field("has_handle", &self.handle.is_some())
            .field("turn", &self.turn.as_ref().map(|t| t.response_id.clone()))
            .field("pending_batches", &self.batches.len())
            .field("history", &self.history.len())
            .finish()
    }
}

impl GeminiProtocol {
    /// Provider-supplied `text` with the API key redacted, for logs and errors.
    pub(crate) fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(k) => k.redact(text),
            None => text.to_owned(),
        }
    }

    /// Decodes one server frame and handles what it carries.
    fn handle_frame(&mut self, frame: WireFrame, out: &mut Outbox) {
        self.frames_received += 1;
        let msg = match wire::decode_server(frame.as_bytes()) {
            Ok(m) => m,
            Err(e) => {
                let excerpt = self.excerpt(frame.as_bytes());
                // serde's message can quote the frame: redacted like the excerpt.
                let e = self.redact(&e.to_string());
                tracing::warn!(provider = PROVIDER, error = %e, %excerpt, "undecodable frame");
                out.error(
                    PROVIDER,
                    LiveError::protocol(format!("undecodable Gemini frame ({e}): {excerpt}")),
                );
                return;
            }
        };
        if !msg.other.is_empty() {
            let keys: Vec<String> = msg.other.keys().map(|k| self.redact(k)).collect();
            tracing::debug!(
                provider = PROVIDER,
                ?keys,
                "unknown server message keys ignored"
            );
        }
        if let Some(done) = msg.setup_complete {
            self.on_setup_complete(done, out);
        }
        if let Some(u) = msg.usage_metadata {
            let usage = to_usage(&u);
            match self.turn.as_mut() {
                Some(t) => t.usage = Some(usage),
                None => self.pending_usage = Some(usage),
            }
        }
        if let Some(sc) = msg.server_content {
            if let Some(t) = sc.input_transcription {
                self.on_input_transcription(t, out);
            }
            if let Some(mt) = sc.model_turn {
                self.on_model_turn(mt, out);
            }
            if let Some(t) = sc.output_transcription {
                self.on_output_transcription(t, out);
            }
            if sc.interrupted == Some(true) {
                self.on_interrupted(out);
            }
            if sc.generation_complete == Some(true) {
                tracing::trace!(provider = PROVIDER, "generation complete");
            }
            if sc.turn_complete == Some(true) {
                self.on_turn_complete(sc.turn_complete_reason, out);
            }
            if sc.waiting_for_input == Some(true) {
                tracing::trace!(provider = PROVIDER, "model waits for input");
            }
        }
        if let Some(tc) = msg.tool_call {
            self.on_tool_call(tc, out);
        }
        if let Some(c) = msg.tool_call_cancellation {
            self.on_tool_call_cancellation(c, out);
        }
        if let Some(u) = msg.session_resumption_update {
            self.on_resumption_update(u, out);
        }
        if let Some(v) = msg.voice_activity.and_then(|v| v.voice_activity_type) {
            match v.as_str() {
                "ACTIVITY_START" => self.on_voice_activity(true, out),
                "ACTIVITY_END" => self.on_voice_activity(false, out),
                _ => {}
            }
        }
        if let Some(v) = msg
            .voice_activity_detection_signal
            .and_then(|v| v.vad_signal_type)
        {
            match v.as_str() {
                "VAD_SIGNAL_TYPE_SOS" => self.on_voice_activity(true, out),
                "VAD_SIGNAL_TYPE_EOS" => self.on_voice_activity(false, out),
                _ => {}
            }
        }
        if let Some(g) = msg.go_away {
            let reason = match g.time_left {
                Some(t) => format!(
                    "goAway (the server closes the connection in {:.1}s)",
                    t.as_secs_f64()
                ),
                None => "goAway".to_owned(),
            };
            tracing::info!(provider = PROVIDER, %reason, "server asked to reconnect");
            out.signal(ProtocolSignal::Reconnect { reason });
        }
    }

    /// Publishes a `TextDropped` event when the history bounds dropped entries.
    pub(crate) fn report_trimmed(&mut self, out: &mut Outbox) {
        // At most one report a second: a flood trims one entry per message.
        let now = Instant::now();
        if self
            .trim_reported_at
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        if let Some((items, bytes)) = self.history.take_trimmed() {
            self.trim_reported_at = Some(now);
            tracing::debug!(
                provider = PROVIDER,
                items,
                bytes,
                "oldest history entries dropped"
            );
            out.publish(liveagent_core::TextDropped {
                source: PROVIDER.into(),
                item_id: None,
                items,
                bytes: bytes as u64,
                reason: format!(
                    "the history kept to restore the session passed its bound ({} entries, {} bytes); its oldest entries were dropped",
                    self.config.max_history_entries, self.config.history_max_bytes
                ),
            });
        }
    }

    /// The part of a provider's text `piece` for `item` on `stream` that fits under the
    /// per-turn cap; the first piece past it publishes a `TextDropped` event.
    pub(crate) fn admit_text<'a>(
        &mut self,
        stream: &str,
        item: &str,
        piece: &'a str,
        out: &mut Outbox,
    ) -> &'a str {
        let (kept, dropped) = self.text_caps.admit(PROVIDER, stream, item, piece);
        if let Some(ev) = dropped {
            let reason = self.redact(&ev.reason);
            tracing::warn!(provider = PROVIDER, "{reason}");
            out.publish(liveagent_core::TextDropped {
                reason,
                item_id: ev.item_id.map(|i| self.redact(&i).into()),
                ..ev
            });
        }
        kept
    }

    /// An excerpt of a frame for logs and errors, redacted.
    fn excerpt(&self, bytes: &[u8]) -> String {
        excerpt(bytes, self.api_key.as_ref())
    }

    /// A protocol for one conversation. Fails on an invalid configuration, or when the
    /// default Google endpoint is used without an API key.
    pub fn new(config: RealtimeConfig, setup: SessionSetup) -> Result<Self, LiveError> {
        config.validate()?;
        let api_key = config.credential();
        let google_host = config.base_url == crate::config::DEFAULT_BASE_URL
            || config
                .vertex
                .as_ref()
                .is_some_and(|v| config.base_url == v.host());
        if api_key.is_none() && google_host {
            return Err(LiveError::new(
                ErrorKind::Auth,
                if config.vertex.is_some() {
                    "gemini: Vertex AI needs an OAuth access token (RealtimeConfig::access_token)"
                } else {
                    "gemini: no API key (set RealtimeConfig::api_key, GEMINI_API_KEY or GOOGLE_API_KEY)"
                },
            ));
        }
        let history =
            History::new(config.max_history_entries).with_max_bytes(config.history_max_bytes);
        let text_caps = liveagent_core::limits::ItemTextCaps::new(config.max_item_text_bytes);
        Ok(GeminiProtocol {
            config,
            setup,
            api_key,
            phase: Phase::Idle,
            ever_ready: false,
            handle: None,
            using_handle: None,
            next_index: 0,
            unconsumed: VecDeque::new(),
            unconsumed_bytes: 0,
            resend: Vec::new(),
            overflow_warned: false,
            held: VecDeque::new(),
            turn_seq: 0,
            turn: None,
            last_turn: None,
            input_since_turn: false,
            input: String::new(),
            input_split: 0,
            last_input_at: None,
            user_speaking: false,
            pending_usage: None,
            batches: BTreeMap::new(),
            call_index: HashMap::new(),
            batch_seq: 0,
            answered: RecentIds::default(),
            cancelled: RecentIds::default(),
            call_seq: 0,
            activity_open: false,
            history,
            text_caps,
            trim_reported_at: None,
            frames_received: 0,
            setup_failures: 0,
        })
    }

    /// The connection phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The latest usable resumption handle, if any.
    pub fn resumption_handle(&self) -> Option<&str> {
        self.handle.as_ref().map(|h| h.value.as_str())
    }

    /// The remembered conversation.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Frames kept for a transparent resend (their client message index and JSON).
    pub fn unconsumed_frames(&self) -> impl Iterator<Item = &(u64, String)> {
        self.unconsumed.iter()
    }

    fn send(&mut self, msg: ClientMessage, out: &mut Outbox) {
        let text = msg.to_json();
        self.send_text(text, out);
    }

    fn send_text(&mut self, text: String, out: &mut Outbox) {
        let index = self.next_index;
        self.next_index += 1;
        if self.config.resumption.enabled && self.config.resumption.transparent && index > 0 {
            self.unconsumed_bytes += text.len();
            self.unconsumed.push_back((index, text.clone()));
            while self.unconsumed.len() > MAX_UNCONSUMED_FRAMES
                || self.unconsumed_bytes > MAX_UNCONSUMED_BYTES
            {
                if let Some((_, f)) = self.unconsumed.pop_front() {
                    self.unconsumed_bytes -= f.len();
                }
                if !self.overflow_warned {
                    self.overflow_warned = true;
                    tracing::warn!(
                        provider = PROVIDER,
                        "transparent resumption: the server has not reported consumed messages; \
                         dropping the oldest kept frames (a resend after a drop may be incomplete)"
                    );
                }
            }
        }
        out.send_text(text);
    }
}

impl RealtimeProtocol for GeminiProtocol {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn connect_request(&self) -> Result<ConnectRequest, LiveError> {
        let mut headers = Vec::new();
        if let Some(key) = &self.api_key {
            if self.config.vertex.is_some() {
                headers.push((
                    "Authorization".to_owned(),
                    format!("Bearer {}", key.expose()),
                ));
            } else if self.config.ephemeral_token.is_none() {
                headers.push(("x-goog-api-key".to_owned(), key.expose().to_owned()));
            }
            // An ephemeral token travels as the `access_token` query parameter (in the URL).
        }
        Ok(ConnectRequest {
            url: self.config.url(),
            headers,
            secret: self.api_key.clone(),
        })
    }

    fn on_open(&mut self, reconnect: bool, out: &mut Outbox) {
        self.phase = Phase::AwaitingSetup;
        self.next_index = 0;
        let r = &self.config.resumption;
        let handle = if r.enabled {
            match &self.handle {
                Some(h) if h.received.elapsed() < r.handle_max_age => Some(h.clone()),
                Some(_) => {
                    tracing::info!(
                        provider = PROVIDER,
                        "resumption handle too old; starting a new session"
                    );
                    self.handle = None;
                    None
                }
                None => None,
            }
        } else {
            None
        };
        // Frames the server has not consumed: still waiting from an attempt that never
        // completed setup, then those of the last connection.
        let mut pending = std::mem::take(&mut self.resend);
        pending.extend(self.unconsumed.drain(..).map(|(_, f)| f));
        self.unconsumed_bytes = 0;
        if r.transparent && handle.is_some() {
            self.resend = pending;
        } else if !pending.is_empty() {
            tracing::debug!(
                provider = PROVIDER,
                frames = pending.len(),
                "not resuming: unconsumed frames dropped (the history is replayed instead)"
            );
        }
        tracing::debug!(
            provider = PROVIDER,
            reconnect,
            resuming = handle.is_some(),
            "sending setup"
        );
        let setup = self.setup_message(handle.as_ref().map(|h| h.value.as_str()));
        self.using_handle = handle;
        match &self.config.raw_setup {
            Some(raw) => {
                // The unstable raw fields, merged last.
                let mut frame: serde_json::Value =
                    serde_json::from_str(&ClientMessage::Setup(setup).to_json())
                        .unwrap_or_default();
                liveagent_core::raw::merge_json(&mut frame["setup"], raw);
                self.send_text(frame.to_string(), out);
            }
            None => self.send(ClientMessage::Setup(setup), out),
        }
    }

    fn on_frame(&mut self, frame: WireFrame, out: &mut Outbox) {
        self.handle_frame(frame, out);
        self.report_trimmed(out);
    }

    fn on_command(&mut self, command: SessionCommand, out: &mut Outbox) {
        if self.phase != Phase::Ready {
            if let SessionCommand::PlaybackStopped(p) = command {
                self.on_playback_stopped(p);
                return;
            }
            if self.held.len() >= MAX_HELD_COMMANDS {
                tracing::warn!(
                    provider = PROVIDER,
                    "command dropped: session not ready and too many held"
                );
                return;
            }
            self.held.push_back(command);
            return;
        }
        match command {
            SessionCommand::Audio(a) => self.on_audio(a, out),
            SessionCommand::Text(t) => self.on_text(t, out),
            SessionCommand::Control(c) => self.on_control(c, out),
            SessionCommand::ToolResult(r) => self.on_tool_result(r, out),
            SessionCommand::PlaybackStopped(p) => self.on_playback_stopped(p),
        }
        self.report_trimmed(out);
    }

    fn on_close_frame(&mut self, code: Option<u16>, reason: &str, out: &mut Outbox) {
        GeminiProtocol::on_close_frame(self, code, reason, out)
    }

    fn on_close(&mut self, out: &mut Outbox) {
        if self.phase == Phase::AwaitingSetup {
            if self.using_handle.is_some() {
                tracing::warn!(
                    provider = PROVIDER,
                    "connection closed before the session resumed; the next attempt starts a new session"
                );
                self.handle = None;
            }
            self.setup_failures += 1;
            if self.setup_failures == SETUP_FAILURES_REPORTED {
                // Gemini refuses a bad key, model or setup by closing the socket. Without the
                // close frame (see `on_close_frame`) the reason is unknown here; say so once
                // rather than reconnecting in silence.
                out.error(
                    PROVIDER,
                    LiveError::connection(format!(
                        "the server closed {SETUP_FAILURES_REPORTED} connections in a row before \
                         completing setup: check the API key, the model id and the configuration"
                    )),
                );
            }
        }
        if self.turn.is_some() {
            let split = self.input_split;
            self.flush_input(split, out);
            self.finish_turn(ResponseStatus::Failed, Some("connection lost"), out);
        }
        self.flush_input(usize::MAX, out);
        self.activity_open = false;
        if self.user_speaking {
            self.user_speaking = false;
        }
        self.pending_usage = None;
        self.phase = Phase::Closed;
    }

    fn input_sample_rate(&self) -> u32 {
        INPUT_SAMPLE_RATE
    }

    fn is_idle(&self) -> bool {
        let recent_input = self
            .last_input_at
            .is_some_and(|t| t.elapsed() < SPEAKING_WINDOW);
        self.turn.is_none()
            && self.batches.is_empty()
            && !self.user_speaking
            && !self.activity_open
            && !recent_input
    }

    /// Seeds the history (and the resumption handle, when one was stored): the first
    /// connection resumes with the handle, or replays the history as `clientContent` as
    /// after a drop. Calls without a result become a batch the new session answers as
    /// conversation content; calls with one are remembered as answered.
    fn restore(&mut self, snapshot: &RestoreSnapshot) -> Result<(), LiveError> {
        // Calls without a result yet; a result removes its call (found by hash, not scan).
        let mut pending: Vec<Option<PendingCall>> = Vec::new();
        let mut pending_at: HashMap<String, usize> = HashMap::new();
        let mut pending_seq = None;
        for turn in &snapshot.turns {
            match turn {
                RestoreTurn::User(text) => self.history.push(HistoryEntry::User(text.clone())),
                RestoreTurn::Assistant {
                    item_id,
                    text,
                    audio_ms,
                    heard_ms,
                } => self.history.push(HistoryEntry::Model {
                    text: text.clone(),
                    item_id: item_id.clone(),
                    audio_ms: *audio_ms,
                    heard_ms: *heard_ms,
                }),
                RestoreTurn::ToolCall {
                    call_id,
                    name,
                    arguments,
                } => {
                    let wire_id = (!call_id.starts_with("gemini-call-")).then(|| call_id.clone());
                    pending_seq.get_or_insert(self.history.next_seq());
                    self.history.push(HistoryEntry::FunctionCall {
                        id: wire_id.clone(),
                        name: name.clone(),
                        args: arguments.clone(),
                    });
                    if !pending_at.contains_key(call_id) {
                        pending_at.insert(call_id.clone(), pending.len());
                        pending.push(Some(PendingCall {
                            call_id: call_id.clone(),
                            wire_id,
                            name: name.clone(),
                            answered: false,
                            cancelled: false,
                        }));
                    }
                }
                RestoreTurn::ToolResult(result) => {
                    let id: &str = &result.call_id;
                    let wire_id = pending_at
                        .remove(id)
                        .and_then(|i| pending[i].take())
                        .and_then(|c| c.wire_id);
                    self.answered.insert(id.to_owned());
                    self.history.push(HistoryEntry::FunctionResponse {
                        id: wire_id,
                        name: result.name.to_string(),
                        response: result.output_object(),
                    });
                }
            }
        }
        let pending: Vec<PendingCall> = pending.into_iter().flatten().collect();
        if !pending.is_empty() {
            let seq = pending_seq.unwrap_or_else(|| self.history.next_seq());
            self.add_batch(pending, true, seq);
        }
        if let Some(value) = &snapshot.resumption_handle {
            self.handle = Some(Handle {
                value: value.clone(),
                received: Instant::now(),
                history_seq: self.history.next_seq(),
            });
        }
        Ok(())
    }
}

/// The first 160 bytes of a frame, for logs and errors, with `key` redacted. The window
/// read is longer than the excerpt by the key's length, so that a key straddling the cut is
/// redacted whole rather than half shown.
fn excerpt(bytes: &[u8], key: Option<&Secret>) -> String {
    const SHOWN: usize = 160;
    let window = SHOWN + key.map_or(0, |k| k.expose().len());
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(window)]);
    let text = match key {
        Some(k) => k.redact(&text),
        None => text.into_owned(),
    };
    let cut = liveagent_core::limits::cut_to(&text, SHOWN);
    if bytes.len() > SHOWN {
        format!("{cut}…")
    } else {
        cut.to_owned()
    }
}
