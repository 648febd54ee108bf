//! Tool calls: each `toolCall` message is one batch; cancellations, results (sent in one
//! `toolResponse` per batch, or as conversation content after a session was not resumed),
//! and the answered ids remembered to drop duplicates.
//!
//! Every lookup by call id is a hash lookup (`call_index`, and the answered and cancelled
//! sets) and a batch knows how many of its calls are still open, so a `toolCall` with tens
//! of thousands of calls, and their results, are handled in linear time.

use liveagent_core::{
    ErrorKind, Id, LiveError, Outbox, ToolCall, ToolCallCancelled, ToolCallRequested, ToolResult,
};
use serde_json::Value;
use std::collections::HashSet;

use super::{Batch, GeminiProtocol, PendingCall, PROVIDER};
use crate::history::HistoryEntry;
use crate::wire::{self, *};
use std::collections::BTreeSet;

impl GeminiProtocol {
    /// Adds a batch of waiting calls and indexes its calls; returns its number.
    pub(super) fn add_batch(
        &mut self,
        calls: Vec<PendingCall>,
        orphaned: bool,
        history_seq: u64,
    ) -> u64 {
        self.batch_seq += 1;
        let key = self.batch_seq;
        for (i, c) in calls.iter().enumerate() {
            self.call_index.insert(c.call_id.clone(), (key, i));
        }
        self.batches
            .insert(key, Batch::new(calls, orphaned, history_seq));
        key
    }

    /// Removes batch `key` and its calls from the index.
    fn remove_batch(&mut self, key: u64) {
        if let Some(batch) = self.batches.remove(&key) {
            for c in &batch.calls {
                if self
                    .call_index
                    .get(&c.call_id)
                    .is_some_and(|(k, _)| *k == key)
                {
                    self.call_index.remove(&c.call_id);
                }
            }
        }
    }

    pub(super) fn orphan_batches_from(&mut self, seq: u64) {
        for b in self.batches.values_mut() {
            if b.history_seq >= seq && !b.orphaned {
                b.orphaned = true;
                tracing::debug!(
                    provider = PROVIDER,
                    "tool calls from before the reconnect will be answered as conversation content"
                );
            }
        }
    }

    pub(super) fn on_tool_call(&mut self, call: wire::ToolCall, out: &mut Outbox) {
        self.flush_input(usize::MAX, out);
        let response_id = self.ensure_turn(out).response_id.clone();
        let history_seq = self.history.next_seq();
        let mut calls = Vec::new();
        let mut pending = Vec::new();
        // Ids of this message, so a call repeated within it is ignored as well.
        let mut seen = HashSet::new();
        for fc in call.function_calls {
            let wire_id = fc.id.filter(|id| !id.is_empty());
            let call_id = match &wire_id {
                Some(id) => id.clone(),
                None => {
                    self.call_seq += 1;
                    format!("gemini-call-{}", self.call_seq)
                }
            };
            if self.known_call(&call_id) || !seen.insert(call_id.clone()) {
                tracing::debug!(provider = PROVIDER, call_id = %self.redact(&call_id), "repeated tool call ignored");
                continue;
            }
            let args = fc.args.unwrap_or_else(|| Value::Object(Default::default()));
            self.history.push(HistoryEntry::FunctionCall {
                id: wire_id.clone(),
                name: fc.name.clone(),
                args: args.clone(),
            });
            calls.push(ToolCall {
                call_id: call_id.clone().into(),
                name: fc.name.clone().into(),
                arguments: args,
                response_id: Some(response_id.clone()),
            });
            pending.push(PendingCall {
                call_id,
                wire_id,
                name: fc.name,
                answered: false,
                cancelled: false,
            });
        }
        if calls.is_empty() {
            return;
        }
        self.add_batch(pending, false, history_seq);
        out.publish(ToolCallRequested { calls });
    }

    pub(super) fn known_call(&self, id: &str) -> bool {
        self.answered.contains(id)
            || self.cancelled.contains(id)
            || self.call_index.contains_key(id)
    }

    pub(super) fn on_tool_call_cancellation(
        &mut self,
        c: wire::ToolCallCancellation,
        out: &mut Outbox,
    ) {
        let mut ids: Vec<Id> = Vec::new();
        // Batches a cancellation touched: one of them may now be complete.
        let mut touched = BTreeSet::new();
        for id in c.ids {
            let mut found = false;
            if let Some(&(key, i)) = self.call_index.get(&id) {
                if let Some(batch) = self.batches.get_mut(&key) {
                    let call = &mut batch.calls[i];
                    if !call.answered && !call.cancelled {
                        call.cancelled = true;
                        batch.open -= 1;
                        touched.insert(key);
                    }
                    found = !call.answered;
                }
            }
            if !found {
                tracing::debug!(provider = PROVIDER, call_id = %self.redact(&id), "cancellation of an unknown or answered call");
            }
            self.cancelled.insert(id.clone());
            ids.push(id.into());
        }
        if !ids.is_empty() {
            out.publish(ToolCallCancelled { call_ids: ids });
        }
        // A batch may now be complete (every other call answered).
        for key in touched.into_iter().rev() {
            if self.batches.get(&key).is_some_and(Batch::complete) {
                self.send_results(key, out);
            }
        }
    }

    pub(super) fn on_tool_result(&mut self, result: ToolResult, out: &mut Outbox) {
        let id: &str = &result.call_id;
        let Some(&(key, ci)) = self.call_index.get(id) else {
            if self.cancelled.contains(id) {
                tracing::debug!(provider = PROVIDER, call_id = %self.redact(id), "result of a cancelled call dropped");
            } else if self.answered.contains(id) {
                tracing::debug!(provider = PROVIDER, call_id = %self.redact(id), "second result for a call dropped");
            } else {
                tracing::warn!(provider = PROVIDER, call_id = %self.redact(id), "result for an unknown call dropped");
                out.error(
                    PROVIDER,
                    LiveError::new(
                        ErrorKind::Tool,
                        format!("tool result for unknown call {id:?} dropped"),
                    ),
                );
            }
            return;
        };
        let Some(batch) = self.batches.get_mut(&key) else {
            return;
        };
        let call = &mut batch.calls[ci];
        if call.cancelled || call.answered {
            let what = if call.cancelled {
                "result of a cancelled call dropped"
            } else {
                "second result for a call dropped"
            };
            tracing::debug!(provider = PROVIDER, call_id = %self.redact(id), "{what}");
            return;
        }
        call.answered = true;
        let response = FunctionResponse {
            id: call.wire_id.clone(),
            name: call.name.clone(),
            response: result.output_object(),
        };
        let call_id = call.call_id.clone();
        batch.open -= 1;
        batch.results.push(response);
        let complete = batch.complete();
        self.answered.insert(call_id);
        if complete || result.request_response {
            self.send_results(key, out);
        }
    }

    /// Sends the collected results of batch `key` in one frame; drops the batch when
    /// complete.
    pub(super) fn send_results(&mut self, key: u64, out: &mut Outbox) {
        let Some(batch) = self.batches.get_mut(&key) else {
            return;
        };
        let results = std::mem::take(&mut batch.results);
        let orphaned = batch.orphaned;
        if batch.complete() {
            self.remove_batch(key);
        }
        if results.is_empty() {
            return;
        }
        for r in &results {
            self.history.push(HistoryEntry::FunctionResponse {
                id: r.id.clone(),
                name: r.name.clone(),
                response: r.response.clone(),
            });
        }
        self.input_since_turn = true;
        if orphaned {
            // The session was not resumed: the server does not know these calls any more.
            // The calls are in the replayed history; answer them as content and let the
            // model go on.
            let parts = results
                .into_iter()
                .map(|r| Part {
                    function_response: Some(r),
                    ..Part::default()
                })
                .collect();
            self.send(
                ClientMessage::ClientContent(ClientContent {
                    turns: vec![Content {
                        role: Some("user".into()),
                        parts,
                    }],
                    turn_complete: true,
                }),
                out,
            );
        } else {
            self.send(
                ClientMessage::ToolResponse(ToolResponse {
                    function_responses: results,
                }),
                out,
            );
        }
    }
}
