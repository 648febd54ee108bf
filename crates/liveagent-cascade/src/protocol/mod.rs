//! [`CascadeProtocol`]: the cascade as a sans-IO [`RealtimeProtocol`], so the session
//! runtime (buffering, middleware, `SessionOpened`/`SessionClosed`, stop) treats it like
//! any realtime provider. It has no session socket; its stages run as
//! [`ProtocolTask`](liveagent_core::ProtocolTask)s that the runtime drives and whose items
//! come back here.
//!
//! A turn:
//!
//! ```text
//! RecordedAudio ─▶ TurnDetector ─Started─▶ SpeechStarted (+ barge-in: Interrupted, cancel LLM/TTS)
//!                                ─Stopped─▶ SpeechStopped ─▶ Stt task ─▶ InputTranscriptChunk…(final)
//! (a streaming Stt stage's task opens at Started, is fed the turn's audio as it arrives
//!  and yields partial InputTranscriptChunks while the user speaks; Stopped commits it)
//! final transcript ─▶ user message ─▶ ResponseStarted ─▶ Llm task ─▶ ModelMessageChunk…
//!                                 └─ SentenceBuffer ─▶ Tts task per piece, in order ─▶ SynthesizedAudio…
//! (a multi-context Tts stage instead has one connection task for the conversation: each
//!  response is a context of it, each piece is sent into it at once, barge-in cancels it)
//! tool calls ─▶ ToolCallRequested ─▶ (executor) ToolResult… ─▶ next response
//! LLM and TTS done ─▶ OutputTranscriptChunk (final) ─▶ ResponseDone (usage per stage)
//! ```
//!
//! History is Chat Completions messages. After a barge-in the interrupted assistant
//! message is cut to the text that was synthesized, and then, when the player reports
//! how much it played ([`PlaybackStopped`](liveagent_core::PlaybackStopped)), to the text actually heard.
//!
//! The state machine is split by concern (private submodules): `input` (microphone
//! audio, turn detection, speech-to-text), `response` (LLM rounds, tool calls, the end of
//! a response), `speech` (text-to-speech of the answer, piece by piece, in order) and
//! `interrupt` (barge-in, and the history cut to what was heard); `context` (the
//! conversation's connection to a multi-context text-to-speech stage).

mod context;
mod input;
mod interrupt;
mod response;
mod speech;

use std::collections::{HashMap, VecDeque};

use futures_util::stream::{LocalBoxStream, StreamExt};
use liveagent_agent::wire::{ChatMessage, ChatTool, ChatToolCall};
use liveagent_core::{
    ConnectRequest, ControlCommand, Id, LiveError, Outbox, ProtocolSignal, RealtimeProtocol,
    SessionCommand, SessionOpened, SessionSetup, Stage, StageUsage, TaskId, TaskItem, WireFrame,
};

use crate::config::CascadeConfig;
use crate::heard::Spoken;
use crate::sentence::SentenceBuffer;
use crate::stage::{SttEvent, SttInput, TtsContextEvent, TtsEvent};
use crate::turn::TurnDetector;
use context::TtsConn;
use liveagent_agent::ChatStreamEvent;

/// The text a tool message holds until the real result arrives, when the user spoke
/// before the tool finished (Chat Completions wants every call answered before the next
/// message).
const PLACEHOLDER: &str = r#"{"error":"no result yet: the user spoke before the tool finished"}"#;

/// The cascade's protocol state machine. Built by [`CascadeConfig`]; see the
/// [module docs](self).
pub struct CascadeProtocol {
    config: CascadeConfig,
    detector: Box<dyn TurnDetector>,
    instructions: String,
    tools: Vec<ChatTool>,
    history: Vec<ChatMessage>,
    next: u64,
    in_rate: u32,
    out_rate: u32,
    input_ms: u64,
    user_item: Option<Id>,
    stt_jobs: HashMap<TaskId, SttJob>,
    /// The streaming STT session of the turn in progress (stages that stream input).
    live_stt: Option<LiveStt>,
    /// STT usage waiting for the response it leads to.
    stt_usage: StageUsage,
    response: Option<Response>,
    last_spoken: Option<Spoken>,
    /// Calls of the last tool round still without a result.
    waiting_calls: Vec<String>,
    placeholders: Vec<String>,
    /// The conversation's text-to-speech connection (multi-context stages), once opened.
    tts_conn: Option<TtsConn>,
}

/// A streaming STT session being fed the turn in progress.
struct LiveStt {
    input: tokio::sync::mpsc::UnboundedSender<SttInput>,
    /// Samples of the turn already sent.
    sent: usize,
}

struct SttJob {
    item_id: Id,
    text: Option<String>,
    failed: bool,
}

/// A response: one LLM round, or several when the model calls tools (the round asking
/// for the calls, then one continuing with their results, in the same response, as Gemini
/// Live's model turn spans its `toolCall`). Each round is one assistant message.
struct Response {
    id: Id,
    item: Id,
    llm_task: Option<TaskId>,
    tts_task: Option<TaskId>,
    sentences: SentenceBuffer,
    /// Pieces to synthesize, with the round they belong to.
    tts_queue: VecDeque<(usize, String)>,
    /// The LLM round in progress (0, then 1 after the first tool results...).
    round: usize,
    /// The current round's text.
    text: String,
    /// Every round's text (`ResponseDone::text`).
    all_text: String,
    tool_calls: Vec<ChatToolCall>,
    finish_reason: Option<String>,
    /// The round asked for tools: the response goes on when their results are all in.
    awaiting_tools: bool,
    llm_failed: bool,
    tts_failed: bool,
    /// The response's context on the multi-context connection, until its audio is done.
    context: Option<u64>,
    /// The context was told that its text is complete.
    context_ended: bool,
    spoken: Spoken,
    usage: [StageUsage; 3],
}

fn stage_usage(stage: Stage, provider: &str, model: &str) -> StageUsage {
    StageUsage {
        stage,
        provider: provider.into(),
        model: model.into(),
        requests: 0,
        input_tokens: 0,
        output_tokens: 0,
        audio_ms: 0,
        characters: 0,
    }
}

fn boxed<T: 'static>(s: LocalBoxStream<'static, T>) -> LocalBoxStream<'static, TaskItem> {
    s.map(|item| Box::new(item) as TaskItem).boxed_local()
}

impl CascadeProtocol {
    pub(crate) fn new(config: CascadeConfig, setup: SessionSetup) -> Self {
        let detector = config.new_detector();
        let stt_usage = stage_usage(Stage::Stt, config.stt.provider(), config.stt.model());
        CascadeProtocol {
            in_rate: config.stt.capabilities().sample_rate,
            out_rate: config.tts.capabilities().sample_rate,
            detector,
            instructions: setup.instructions,
            tools: setup.tools.into_iter().map(ChatTool::from).collect(),
            history: Vec::new(),
            next: 0,
            input_ms: 0,
            user_item: None,
            stt_jobs: HashMap::new(),
            live_stt: None,
            stt_usage,
            response: None,
            last_spoken: None,
            waiting_calls: Vec::new(),
            placeholders: Vec::new(),
            tts_conn: None,
            config,
        }
    }

    /// The conversation so far, as Chat Completions messages (without the system prompt).
    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn new_item(&mut self, prefix: &str) -> Id {
        let n = self.next_id();
        format!("{prefix}_{n}").into()
    }
}

impl RealtimeProtocol for CascadeProtocol {
    fn provider(&self) -> &'static str {
        "cascade"
    }

    fn connect_request(&self) -> Result<ConnectRequest, LiveError> {
        Err(LiveError::config("the cascade has no session socket"))
    }

    fn uses_socket(&self) -> bool {
        false
    }

    fn on_open(&mut self, _reconnect: bool, out: &mut Outbox) {
        out.publish(SessionOpened {
            provider: "cascade",
            session_id: None,
        });
        out.signal(ProtocolSignal::Ready { resumed: false });
    }

    fn on_frame(&mut self, _frame: WireFrame, _out: &mut Outbox) {}

    fn on_command(&mut self, command: SessionCommand, out: &mut Outbox) {
        match command {
            SessionCommand::Audio(chunk) => self.on_audio(chunk, out),
            SessionCommand::Text(text) => self.on_text(text, out),
            SessionCommand::ToolResult(result) => self.on_tool_result(result, out),
            SessionCommand::PlaybackStopped(p) => self.on_playback_stopped(p),
            SessionCommand::Control(c) => match c {
                ControlCommand::CommitInput | ControlCommand::ActivityEnd => {
                    if let Some(event) = self.detector.commit() {
                        self.on_turn_event(event, out);
                    }
                }
                ControlCommand::ClearInput => {
                    self.detector.clear();
                    self.user_item = None;
                    // Dropping the input without a commit aborts the streaming session,
                    // which ends with an error coded `cancelled` (an ErrorEvent).
                    self.live_stt = None;
                }
                ControlCommand::CreateResponse => self.start_response(out),
                ControlCommand::CancelResponse => self.interrupt("client_cancelled", out),
                ControlCommand::ActivityStart => {
                    if self.config.barge_in {
                        self.interrupt("turn_detected", out);
                    }
                }
            },
        }
    }

    fn on_close(&mut self, _out: &mut Outbox) {}

    fn input_sample_rate(&self) -> u32 {
        self.in_rate
    }

    fn is_idle(&self) -> bool {
        self.response.is_none() && self.stt_jobs.is_empty() && !self.detector.in_turn()
    }

    fn on_task_item(&mut self, id: TaskId, item: TaskItem, out: &mut Outbox) {
        if self.tts_conn.as_ref().is_some_and(|c| c.task == id) {
            if let Ok(item) = item.downcast::<Result<TtsContextEvent, LiveError>>() {
                self.on_tts_conn(*item, out);
            }
            return;
        }
        if self.stt_jobs.contains_key(&id) {
            if let Ok(item) = item.downcast::<Result<SttEvent, LiveError>>() {
                self.on_stt(id, *item, out);
            }
            return;
        }
        let Some(r) = self.response.as_ref() else {
            return;
        };
        if r.llm_task == Some(id) {
            if let Ok(item) = item.downcast::<Result<ChatStreamEvent, LiveError>>() {
                self.on_llm(*item, out);
            }
        } else if r.tts_task == Some(id) {
            if let Ok(item) = item.downcast::<Result<TtsEvent, LiveError>>() {
                self.on_tts(*item, out);
            }
        }
    }

    fn on_task_end(&mut self, id: TaskId, out: &mut Outbox) {
        if self.tts_conn.as_ref().is_some_and(|c| c.task == id) {
            return self.on_tts_conn_end(out);
        }
        if self.stt_jobs.contains_key(&id) {
            return self.on_stt_end(id, out);
        }
        let Some(r) = self.response.as_ref() else {
            return;
        };
        if r.llm_task == Some(id) {
            self.on_llm_end(out);
        } else if r.tts_task == Some(id) {
            self.on_tts_end(out);
        }
    }
}
