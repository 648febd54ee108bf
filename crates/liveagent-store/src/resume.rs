//! Picking a stored conversation up on this instance: a provider configuration that
//! restores the stored history (or the Gemini resumption handle) into the new session
//! ([`RestoringConfig`]), and [`rerun_pending_calls`] for the tool calls the lost instance
//! never answered.
//!
//! ```no_run
//! # async fn demo(agent: liveagent::LiveAgent, config: std::sync::Arc<dyn liveagent_core::RealtimeConfig>,
//! #   store: std::sync::Arc<dyn liveagent_store::ConversationStore>, id: liveagent_store::ConversationId)
//! # -> anyhow::Result<()> {
//! use liveagent::RunOptions;
//! use liveagent_store::{resume, RecorderOptions, StoreRecorder};
//!
//! let state = store.load(&id).await?.ok_or_else(|| anyhow::anyhow!("no such conversation"))?;
//! let conversation = agent.run_with(
//!     RunOptions::new().config(resume::RestoringConfig::new(config, &state)),
//! )?;
//! // Keep writing it (only changes: it is stored already), then run the unanswered calls.
//! StoreRecorder::start(conversation.context().clone(), store, state.clone(), true, RecorderOptions::default());
//! resume::rerun_pending_calls(conversation.context(), &state);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use liveagent_core::{
    ConversationContext, LiveError, RealtimeConfig, RealtimeProtocol, RestoreSnapshot, RestoreTurn,
    SessionSetup, ToolCall, ToolCallRequested, ToolResult,
};

use crate::error::LoadError;
use crate::id::ConversationId;
use crate::state::{ConversationState, HistoryRecord};
use crate::store::ConversationStore;

/// Why a client's resume request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// No such conversation, it expired, or the token is not its token. One error for all
    /// three, so that a client cannot tell which ids exist.
    #[error("unknown or expired conversation")]
    Unknown,
    /// The store failed; the client may retry.
    #[error(transparent)]
    Store(#[from] LoadError),
}

/// Loads conversation `id` for a client that presents `token` (from the `ready` of an
/// earlier connection): the stored state when `token` is the conversation's resume token
/// (compared in constant time), [`ResumeError::Unknown`] otherwise. Pass the state to
/// `RunOptions::resume` (crate `liveagent`).
pub async fn load_for_resume(
    store: &dyn ConversationStore,
    id: &ConversationId,
    token: &str,
) -> Result<ConversationState, ResumeError> {
    let state = store.load(id).await?.ok_or(ResumeError::Unknown)?;
    match &state.resume_token {
        Some(t) if t.matches(token) => Ok(state),
        _ => Err(ResumeError::Unknown),
    }
}

impl ConversationState {
    /// The provider-neutral snapshot a new session is restored from.
    pub fn restore_snapshot(&self) -> RestoreSnapshot {
        let turns = self
            .history
            .iter()
            .map(|r| match r {
                HistoryRecord::User { text } => RestoreTurn::User(text.clone()),
                HistoryRecord::Assistant {
                    item_id,
                    text,
                    audio_ms,
                    heard_ms,
                } => RestoreTurn::Assistant {
                    item_id: item_id.clone(),
                    text: text.clone(),
                    audio_ms: *audio_ms,
                    heard_ms: *heard_ms,
                },
                HistoryRecord::ToolCall {
                    call_id,
                    name,
                    arguments,
                } => RestoreTurn::ToolCall {
                    call_id: call_id.clone(),
                    name: name.clone(),
                    arguments: arguments.clone(),
                },
                HistoryRecord::ToolResult {
                    call_id,
                    name,
                    output,
                } => RestoreTurn::ToolResult(ToolResult {
                    call_id: call_id.as_str().into(),
                    name: name.as_str().into(),
                    output: output.clone(),
                    request_response: false,
                }),
            })
            .collect();
        RestoreSnapshot {
            turns,
            resumption_handle: self.resumption_handle.clone(),
        }
    }
}

/// A provider configuration whose protocol starts from a stored conversation: it builds
/// `inner`'s protocol and calls [`RealtimeProtocol::restore`] with the state's snapshot,
/// so the first connection replays the history (OpenAI) or resumes with the handle and
/// falls back to replaying (Gemini), exactly as after a dropped connection. Pass it to
/// `RunOptions::config`.
#[derive(Debug)]
pub struct RestoringConfig {
    inner: Arc<dyn RealtimeConfig>,
    snapshot: RestoreSnapshot,
}

impl RestoringConfig {
    /// Restores `state` into sessions of `inner`. The state's provider must be `inner`'s.
    pub fn new(inner: Arc<dyn RealtimeConfig>, state: &ConversationState) -> Self {
        RestoringConfig {
            snapshot: state.restore_snapshot(),
            inner,
        }
    }
}

impl RealtimeConfig for RestoringConfig {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    fn input_sample_rate(&self) -> u32 {
        self.inner.input_sample_rate()
    }

    fn output_sample_rate(&self) -> u32 {
        self.inner.output_sample_rate()
    }

    fn audio_output(&self) -> bool {
        self.inner.audio_output()
    }

    fn build_protocol(&self, setup: SessionSetup) -> Result<Box<dyn RealtimeProtocol>, LiveError> {
        let mut protocol = self.inner.build_protocol(setup)?;
        protocol.restore(&self.snapshot)?;
        Ok(protocol)
    }
}

/// Asks this conversation's tool executor to run the calls the lost instance left in
/// flight, once each, with their original call ids; their results go to the new session
/// (which knows the calls from the restored history). Calls answered on the lost instance
/// are not run: their stored results were replayed. Returns how many were requested.
pub fn rerun_pending_calls(context: &ConversationContext, state: &ConversationState) -> usize {
    let calls: Vec<ToolCall> = state
        .pending_calls()
        .into_iter()
        .filter(|c| !state.answered_call_ids().any(|a| a == c.call_id))
        .map(|c| ToolCall {
            call_id: c.call_id.as_str().into(),
            name: c.name.as_str().into(),
            arguments: c.arguments.clone(),
            response_id: None,
        })
        .collect();
    let n = calls.len();
    if n > 0 {
        tracing::info!(
            calls = n,
            "running the tool calls the lost instance left in flight"
        );
        context.publish(ToolCallRequested { calls });
    }
    n
}
