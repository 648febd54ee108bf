//! The three stage interfaces of a cascade: [`Stt`] (speech-to-text), [`Llm`] and [`Tts`]
//! (text-to-speech), each with its capabilities and a streaming result.
//!
//! A stage does not run anything itself: each call returns a lazy stream (an HTTP request
//! whose response streams, or a WebSocket session) that the session runtime drives as a
//! [`ProtocolTask`](liveagent_core::ProtocolTask). Dropping the stream cancels the request,
//! which is how barge-in stops the LLM and the TTS at once.
//!
//! Speech-to-text has two paths. [`Stt::transcribe`] takes a finished utterance (HTTP
//! stages). A stage whose provider takes audio while the user speaks (the realtime
//! WebSocket stages) also says so with [`Stt::streams_input`] and implements
//! [`Stt::transcribe_live`]: the cascade opens its session when the turn starts, feeds
//! [`SttInput::Audio`] as the microphone delivers it and sends [`SttInput::Commit`] when the
//! turn ends, so partial transcripts arrive while the user is still speaking.
//!
//! Text-to-speech also has two paths. [`Tts::synthesize`] speaks one piece of text per
//! request (one HTTP request or one socket per sentence). A stage that keeps one connection
//! for the whole conversation (ElevenLabs' multi-context WebSocket) says so with
//! [`Tts::multi_context`] and implements [`Tts::connect`]: the cascade opens the
//! connection when it first has something to say, speaks each response in a context of its
//! own ([`TtsInput`]), streams the sentences into it as the LLM produces them, and cancels
//! just that context on barge-in; the connection yields audio tagged with its context
//! ([`TtsContextEvent`]).

use std::fmt;
use std::sync::Arc;

use futures_util::stream::{LocalBoxStream, StreamExt};
use liveagent_agent::wire::{ChatMessage, ChatTool};
use liveagent_agent::ChatStreamEvent;
use liveagent_core::LiveError;

/// What a speech-to-text stage can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SttCapabilities {
    /// It yields partial transcripts before the final one.
    pub interim_results: bool,
    /// The sample rate it wants (PCM16 mono). The cascade resamples the microphone audio.
    pub sample_rate: u32,
}

/// What a speech-to-text stage yields for one utterance.
#[derive(Clone, Debug, PartialEq)]
pub enum SttEvent {
    /// More of the transcript (a delta, appended to what came before).
    Partial(String),
    /// The whole transcript, last.
    Final {
        /// The transcript.
        text: String,
        /// Tokens in, when the provider reports them.
        input_tokens: u64,
        /// Tokens out, when the provider reports them.
        output_tokens: u64,
    },
}

/// What the cascade feeds a live transcription ([`Stt::transcribe_live`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SttInput {
    /// More of the utterance (PCM16 mono at [`SttCapabilities::sample_rate`]), the prefix
    /// padding first.
    Audio(Vec<i16>),
    /// The utterance is complete: transcribe what was sent and end with
    /// [`SttEvent::Final`].
    Commit,
}

/// The input of a live transcription. Ending without [`SttInput::Commit`] aborts it: the
/// stage closes its session and ends with an error coded `cancelled`.
pub type SttInputStream = LocalBoxStream<'static, SttInput>;

/// A speech-to-text provider.
pub trait Stt: fmt::Debug + Send + Sync + 'static {
    /// `openai`, `elevenlabs`, `mistral`...
    fn provider(&self) -> &'static str;
    /// The model.
    fn model(&self) -> &str;
    /// What it can do.
    fn capabilities(&self) -> SttCapabilities;
    /// Transcribes one utterance (PCM16 mono at [`SttCapabilities::sample_rate`]). The
    /// stream ends after [`SttEvent::Final`] or after an error.
    fn transcribe(&self, audio: Arc<[i16]>)
        -> LocalBoxStream<'static, Result<SttEvent, LiveError>>;

    /// True when [`transcribe_live`](Stt::transcribe_live) streams the audio to the
    /// provider as it arrives (the cascade then opens the session when the turn starts).
    /// False by default: the cascade calls [`transcribe`](Stt::transcribe) at turn end.
    fn streams_input(&self) -> bool {
        false
    }

    /// Transcribes an utterance fed while it is spoken; partials may arrive before
    /// [`SttInput::Commit`]. The stream ends after [`SttEvent::Final`] or after an error
    /// (an input that ends without a commit yields an error coded `cancelled`). Called only
    /// when [`streams_input`](Stt::streams_input) is true; the default yields a
    /// configuration error.
    fn transcribe_live(
        &self,
        input: SttInputStream,
    ) -> LocalBoxStream<'static, Result<SttEvent, LiveError>> {
        drop(input);
        futures_util::stream::iter([Err(LiveError::config(format!(
            "the {} speech-to-text stage does not stream input",
            self.provider()
        )))])
        .boxed_local()
    }
}

/// The error a live transcription ends with when its input ends without a commit.
pub(crate) fn cancelled() -> LiveError {
    LiveError::new(
        liveagent_core::ErrorKind::Connection,
        "the transcription was cancelled before the turn ended",
    )
    .with_code("cancelled")
}

/// A language model stage: streams one completion of a conversation.
pub trait Llm: fmt::Debug + Send + Sync + 'static {
    /// `openai`, or whatever the base URL serves.
    fn provider(&self) -> &'static str;
    /// The model.
    fn model(&self) -> &str;
    /// Streams a completion of `messages` (system message first) offering `tools`.
    fn complete(
        &self,
        messages: Vec<ChatMessage>,
        tools: Vec<ChatTool>,
    ) -> LocalBoxStream<'static, Result<ChatStreamEvent, LiveError>>;
}

/// What a text-to-speech stage can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtsCapabilities {
    /// Audio arrives while it is being synthesized (not only at the end).
    pub streaming: bool,
    /// The sample rate of the PCM16 mono audio it yields.
    pub sample_rate: u32,
    /// The longest text one request may carry; longer pieces are split at word boundaries.
    pub max_chars: usize,
}

/// What a text-to-speech stage yields for one piece of text.
#[derive(Clone, Debug, PartialEq)]
pub enum TtsEvent {
    /// More audio (PCM16 mono at [`TtsCapabilities::sample_rate`]).
    Audio(Vec<i16>),
    /// The synthesis is complete, last.
    Done {
        /// Tokens in, when the provider reports them.
        input_tokens: u64,
        /// Tokens out, when the provider reports them.
        output_tokens: u64,
    },
}

/// A text-to-speech provider.
pub trait Tts: fmt::Debug + Send + Sync + 'static {
    /// `openai`, `elevenlabs`, `mistral`...
    fn provider(&self) -> &'static str;
    /// The model.
    fn model(&self) -> &str;
    /// What it can do.
    fn capabilities(&self) -> TtsCapabilities;
    /// Synthesizes `text`. The stream ends after [`TtsEvent::Done`] or after an error.
    fn synthesize(&self, text: String) -> LocalBoxStream<'static, Result<TtsEvent, LiveError>>;

    /// True when the stage keeps one connection per conversation and speaks each response
    /// in a context of it ([`connect`](Tts::connect)); the cascade then never calls
    /// [`synthesize`](Tts::synthesize). False by default.
    fn multi_context(&self) -> bool {
        false
    }

    /// Opens the conversation's connection: it speaks the contexts `input` opens, keeps the
    /// connection alive between them, and ends when `input` ends (closing the connection)
    /// or with an error when the connection is lost (the cascade opens a new one for the
    /// next response). Called only when [`multi_context`](Tts::multi_context) is true; the
    /// default yields a configuration error.
    fn connect(
        &self,
        input: TtsInputStream,
    ) -> LocalBoxStream<'static, Result<TtsContextEvent, LiveError>> {
        drop(input);
        futures_util::stream::iter([Err(LiveError::config(format!(
            "the {} text-to-speech stage has no multi-context connection",
            self.provider()
        )))])
        .boxed_local()
    }
}

/// What the cascade sends a conversation's text-to-speech connection ([`Tts::connect`]).
/// Contexts are numbered by the cascade, one per response; a context is opened by its
/// first [`Text`](TtsInput::Text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtsInput {
    /// More text for `context` (a whole sentence or phrase).
    Text {
        /// The context (response) it belongs to.
        context: u64,
        /// The text.
        text: String,
    },
    /// The context's text is complete: synthesize what is left, then end the context with
    /// [`TtsContextEvent::Done`].
    End {
        /// The context.
        context: u64,
    },
    /// Barge-in: stop the context now. Its audio that arrives later is dropped and no
    /// [`TtsContextEvent::Done`] follows.
    Cancel {
        /// The context.
        context: u64,
    },
}

/// The input of a conversation's text-to-speech connection. Ending it closes the
/// connection.
pub type TtsInputStream = LocalBoxStream<'static, TtsInput>;

/// What a conversation's text-to-speech connection yields ([`Tts::connect`]).
#[derive(Clone, Debug, PartialEq)]
pub enum TtsContextEvent {
    /// More audio of `context` (PCM16 mono at [`TtsCapabilities::sample_rate`]).
    Audio {
        /// The context.
        context: u64,
        /// The samples.
        samples: Vec<i16>,
    },
    /// Everything of `context` was synthesized (after [`TtsInput::End`]).
    Done {
        /// The context.
        context: u64,
        /// Tokens in, when the provider reports them.
        input_tokens: u64,
        /// Tokens out, when the provider reports them.
        output_tokens: u64,
    },
}
