//! What a conversation needs to be restored on another instance ([`ConversationState`]), and
//! the incremental changes ([`StoreOp`]) a running conversation writes, one batch per event.
//!
//! The history here is provider-neutral: the same turns the session supervisor replays after
//! a dropped connection (user turns as their transcript or typed text, assistant turns as the
//! text the user heard, function calls and their outputs), so a conversation begun on OpenAI
//! can be restored into a new OpenAI session on another machine, and a Gemini one can first
//! try its resumption handle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{ConversationId, ResumeToken};

/// One turn of the restore history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryRecord {
    /// What the user said (the final transcript) or typed.
    User {
        /// The text.
        text: String,
    },
    /// What the model said: its transcript, or its text in text mode.
    Assistant {
        /// The provider's item id (for a later [`StoreOp::AssistantHeard`]).
        item_id: String,
        /// The full text of the item.
        text: String,
        /// Milliseconds of audio the model produced for it (0 in text mode).
        audio_ms: u64,
        /// Milliseconds the user heard, when playback was interrupted.
        heard_ms: Option<u64>,
    },
    /// A function call the model made.
    ToolCall {
        /// The provider's call id.
        call_id: String,
        /// The tool.
        name: String,
        /// The arguments.
        arguments: Value,
    },
    /// The result that answered a call.
    ToolResult {
        /// The call it answers.
        call_id: String,
        /// The tool.
        name: String,
        /// The tool's value, or the error text the model reads.
        output: Result<Value, String>,
    },
}

/// A tool call requested but not answered yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRecord {
    /// The provider's call id.
    pub call_id: String,
    /// The tool.
    pub name: String,
    /// The arguments.
    pub arguments: Value,
    /// Order in which the calls were requested (ascending).
    pub seq: u64,
}

/// Everything a conversation needs to be picked up by another instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationState {
    /// The key.
    pub id: ConversationId,
    /// `openai`, `gemini`...: the provider the conversation was started on.
    pub provider: String,
    /// The restore history, oldest first (bounded by the store's history limit).
    pub history: Vec<HistoryRecord>,
    /// The agent's variables (prompt substitutions, application state).
    pub variables: BTreeMap<String, String>,
    /// The Gemini session resumption handle, when the provider gave one.
    pub resumption_handle: Option<String>,
    /// Tool calls requested and not answered, by call id.
    pub tools_in_flight: BTreeMap<String, ToolCallRecord>,
    /// The token the client shows to resume this conversation.
    pub resume_token: Option<ResumeToken>,
    /// How many changes were applied: every [`StoreOp`] has a revision, and a store skips
    /// ops at or below the one it holds, so a batch retried after a timeout is never
    /// applied twice.
    pub revision: u64,
}

impl ConversationState {
    /// An empty conversation on `provider`.
    pub fn new(id: ConversationId, provider: impl Into<String>) -> Self {
        ConversationState {
            id,
            provider: provider.into(),
            history: Vec::new(),
            variables: BTreeMap::new(),
            resumption_handle: None,
            tools_in_flight: BTreeMap::new(),
            resume_token: None,
            revision: 0,
        }
    }

    /// Applies one change. `history_limit` bounds the history (oldest turns dropped first);
    /// 0 keeps everything.
    pub fn apply(&mut self, op: &StoreOp, history_limit: usize) {
        match op {
            StoreOp::Append(record) => self.push_history(record.clone(), history_limit),
            StoreOp::AssistantHeard { item_id, heard_ms } => self.set_heard(item_id, *heard_ms),
            StoreOp::SetVariable { name, value } => {
                self.variables.insert(name.clone(), value.clone());
            }
            StoreOp::RemoveVariable { name } => {
                self.variables.remove(name);
            }
            StoreOp::SetResumptionHandle(handle) => self.resumption_handle = handle.clone(),
            StoreOp::SetResumeToken(token) => self.resume_token = Some(token.clone()),
            StoreOp::ToolStarted(call) => {
                self.tools_in_flight
                    .insert(call.call_id.clone(), call.clone());
                self.push_history(
                    HistoryRecord::ToolCall {
                        call_id: call.call_id.clone(),
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
                    },
                    history_limit,
                );
            }
            StoreOp::ToolFinished {
                call_id,
                name,
                output,
            } => {
                self.tools_in_flight.remove(call_id);
                self.push_history(
                    HistoryRecord::ToolResult {
                        call_id: call_id.clone(),
                        name: name.clone(),
                        output: output.clone(),
                    },
                    history_limit,
                );
            }
            StoreOp::ToolCancelled { call_ids } => {
                for id in call_ids {
                    self.tools_in_flight.remove(id);
                }
                self.history.retain(|r| {
                    !matches!(r, HistoryRecord::ToolCall { call_id, .. } if call_ids.contains(call_id))
                });
            }
        }
    }

    /// Appends a record, trimming to `limit`.
    pub(crate) fn push_history(&mut self, record: HistoryRecord, limit: usize) {
        self.history.push(record);
        trim_history(&mut self.history, limit);
    }

    pub(crate) fn set_heard(&mut self, id: &str, heard: u64) {
        if let Some(HistoryRecord::Assistant { heard_ms, .. }) = self
            .history
            .iter_mut()
            .rev()
            .find(|r| matches!(r, HistoryRecord::Assistant { item_id, .. } if item_id == id))
        {
            *heard_ms = Some(heard);
        }
    }

    /// Calls that were answered on the old instance: their result is in the history and must
    /// not be computed again.
    pub fn answered_call_ids(&self) -> impl Iterator<Item = &str> {
        self.history.iter().filter_map(|r| match r {
            HistoryRecord::ToolResult { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
    }

    /// Calls in flight, in the order they were requested: the instance that restores the
    /// conversation runs each of them once (see the crate docs, "Tool results across
    /// instances").
    pub fn pending_calls(&self) -> Vec<&ToolCallRecord> {
        let mut calls: Vec<_> = self.tools_in_flight.values().collect();
        calls.sort_by_key(|c| c.seq);
        calls
    }
}

/// Drops the oldest records past `limit` (0: unbounded); a dropped call takes its result
/// with it, so the history never holds an output without its call.
pub(crate) fn trim_history(history: &mut Vec<HistoryRecord>, limit: usize) {
    if limit == 0 || history.len() <= limit {
        return;
    }
    let excess = history.len() - limit;
    let dropped: Vec<HistoryRecord> = history.drain(..excess).collect();
    let calls: Vec<&str> = dropped
        .iter()
        .filter_map(|r| match r {
            HistoryRecord::ToolCall { call_id, .. } => Some(call_id.as_str()),
            _ => None,
        })
        .collect();
    if !calls.is_empty() {
        history.retain(
            |r| !matches!(r, HistoryRecord::ToolResult { call_id, .. } if calls.contains(&call_id.as_str())),
        );
    }
}

/// Drops tool results whose call is not in the history (its call was trimmed away).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn drop_orphan_results(history: &mut Vec<HistoryRecord>) {
    let calls: std::collections::HashSet<String> = history
        .iter()
        .filter_map(|r| match r {
            HistoryRecord::ToolCall { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect();
    history.retain(
        |r| !matches!(r, HistoryRecord::ToolResult { call_id, .. } if !calls.contains(call_id)),
    );
}

/// One incremental change to a stored conversation. A running conversation writes a small
/// batch of these per event; the store applies a batch atomically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StoreOp {
    /// A finished turn.
    Append(HistoryRecord),
    /// Playback of an assistant item was cut after `heard_ms`.
    AssistantHeard {
        /// The assistant item.
        item_id: String,
        /// Milliseconds heard.
        heard_ms: u64,
    },
    /// Sets a variable.
    SetVariable {
        /// The name.
        name: String,
        /// The value.
        value: String,
    },
    /// Removes a variable.
    RemoveVariable {
        /// The name.
        name: String,
    },
    /// The provider gave a new resumption handle (or `None`: the old one is unusable).
    SetResumptionHandle(Option<String>),
    /// The client's resume token.
    SetResumeToken(ResumeToken),
    /// A tool call was requested: it is in flight and its call is in the history.
    ToolStarted(ToolCallRecord),
    /// A tool call was answered: it leaves the in-flight set and its result joins the
    /// history, in the same atomic write (never one without the other).
    ToolFinished {
        /// The call.
        call_id: String,
        /// The tool.
        name: String,
        /// The result.
        output: Result<Value, String>,
    },
    /// The provider withdrew calls: they leave the in-flight set and the history.
    ToolCancelled {
        /// The call ids.
        call_ids: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, seq: u64) -> ToolCallRecord {
        ToolCallRecord {
            call_id: id.into(),
            name: "f".into(),
            arguments: serde_json::json!({}),
            seq,
        }
    }

    #[test]
    fn tool_lifecycle_and_trim() {
        let mut s = ConversationState::new(ConversationId::generate(), "openai");
        s.apply(&StoreOp::ToolStarted(call("b", 2)), 0);
        s.apply(&StoreOp::ToolStarted(call("a", 1)), 0);
        assert_eq!(
            s.pending_calls()
                .iter()
                .map(|c| &*c.call_id)
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        s.apply(
            &StoreOp::ToolFinished {
                call_id: "a".into(),
                name: "f".into(),
                output: Ok(1.into()),
            },
            0,
        );
        assert_eq!(s.answered_call_ids().collect::<Vec<_>>(), ["a"]);
        s.apply(
            &StoreOp::ToolCancelled {
                call_ids: vec!["b".into()],
            },
            0,
        );
        assert!(s.tools_in_flight.is_empty());
        assert_eq!(s.history.len(), 2);
        // Dropping call "a" drops its result too.
        s.apply(
            &StoreOp::Append(HistoryRecord::User { text: "x".into() }),
            2,
        );
        assert_eq!(s.history, vec![HistoryRecord::User { text: "x".into() }]);
    }
}
