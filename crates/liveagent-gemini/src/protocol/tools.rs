//! Tool calls: each `toolCall` message is one batch; cancellations, results (sent in one
//! `toolResponse` per batch, or as conversation content after a session was not resumed),
//! and the answered ids remembered to drop duplicates.

use liveagent_core::{
    ErrorKind, Id, LiveError, Outbox, ToolCall, ToolCallCancelled, ToolCallRequested, ToolResult,
};
use serde_json::Value;

use super::{Batch, GeminiProtocol, PendingCall, MAX_ANSWERED_IDS, PROVIDER};
use crate::history::HistoryEntry;
use crate::wire::{self, *};

impl GeminiProtocol {
    pub(super) fn orphan_batches_from(&mut self, seq: u64) {
        for b in &mut self.batches {
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
        for fc in call.function_calls {
            let wire_id = fc.id.filter(|id| !id.is_empty());
            let call_id = match &wire_id {
                Some(id) => id.clone(),
                None => {
                    self.call_seq += 1;
                    format!("gemini-call-{}", self.call_seq)
                }
            };
            if self.known_call(&call_id) {
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
        self.batches.push(Batch {
            calls: pending,
            results: Vec::new(),
            orphaned: false,
            history_seq,
        });
        out.publish(ToolCallRequested { calls });
    }

    pub(super) fn known_call(&self, id: &str) -> bool {
        self.answered.contains(id)
            || self.cancelled.contains(id)
            || self
                .batches
                .iter()
                .any(|b| b.calls.iter().any(|c| c.call_id == id))
    }

    pub(super) fn on_tool_call_cancellation(
        &mut self,
        c: wire::ToolCallCancellation,
        out: &mut Outbox,
    ) {
        let mut ids: Vec<Id> = Vec::new();
        for id in c.ids {
            let mut found = false;
            for b in &mut self.batches {
                for call in &mut b.calls {
                    if call.call_id == id && !call.answered {
                        call.cancelled = true;
                        found = true;
                    }
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
        let ready: Vec<usize> = (0..self.batches.len())
            .filter(|&i| self.batches[i].complete())
            .collect();
        for i in ready.into_iter().rev() {
            self.send_results(i, out);
        }
    }

    pub(super) fn on_tool_result(&mut self, result: ToolResult, out: &mut Outbox) {
        let id: &str = &result.call_id;
        let Some(bi) = self
            .batches
            .iter()
            .position(|b| b.calls.iter().any(|c| c.call_id == id))
        else {
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
        let shown_id = self.redact(id);
        let batch = &mut self.batches[bi];
        let call = batch
            .calls
            .iter_mut()
            .find(|c| c.call_id == id)
            .expect("position found it");
        if call.cancelled {
            tracing::debug!(provider = PROVIDER, call_id = %shown_id, "result of a cancelled call dropped");
            return;
        }
        if call.answered {
            tracing::debug!(provider = PROVIDER, call_id = %shown_id, "second result for a call dropped");
            return;
        }
        call.answered = true;
        batch.results.push(FunctionResponse {
            id: call.wire_id.clone(),
            name: call.name.clone(),
            response: result.output_object(),
        });
        let call_id = call.call_id.clone();
        self.remember_answered(call_id);
        let batch = &self.batches[bi];
        if batch.complete() || result.request_response {
            self.send_results(bi, out);
        }
    }

    pub(super) fn remember_answered(&mut self, id: String) {
        if self.answered.insert(id.clone()) {
            self.answered_order.push_back(id);
            while self.answered_order.len() > MAX_ANSWERED_IDS {
                if let Some(old) = self.answered_order.pop_front() {
                    self.answered.remove(&old);
                }
            }
        }
    }

    /// Sends the collected results of batch `i` in one frame; drops the batch when complete.
    pub(super) fn send_results(&mut self, i: usize, out: &mut Outbox) {
        let results = std::mem::take(&mut self.batches[i].results);
        let orphaned = self.batches[i].orphaned;
        if self.batches[i].complete() {
            self.batches.remove(i);
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
