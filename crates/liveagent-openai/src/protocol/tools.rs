//! Tool calls: calls collected per response from the streaming events, published as one
//! `ToolCallRequested` when the response is done, and each result sent exactly once.

use liveagent_core::{ErrorKind, Outbox, ResponseStatus, ToolCall, ToolCallRequested, ToolResult};
use serde_json::Value;

use super::{ActiveResponse, OpenAiProtocol, PendingCall};
use crate::history::HistoryItem;
use crate::wire::{ClientEvent, Item};

/// Parses function arguments: JSON when valid, `{}` when empty, else the raw text as a
/// JSON string (the tool executor then reports the problem to the model).
pub fn parse_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

impl OpenAiProtocol {
    /// Records (or completes) a function call of the active response.
    pub(super) fn note_call(
        &mut self,
        response_id: &str,
        item_id: String,
        call_id: String,
        name: Option<String>,
        arguments: Option<String>,
    ) {
        if call_id.is_empty() {
            tracing::debug!(target: "liveagent::openai", "function call without call_id ignored");
            return;
        }
        let Some(active) = self.active.as_mut().filter(|a| *a.id == *response_id) else {
            tracing::debug!(target: "liveagent::openai", response_id = %self.redact(response_id), call_id = %self.redact(&call_id), "function call of an unknown response ignored");
            return;
        };
        let call = match active.call_index.get(&call_id) {
            Some(&i) => &mut active.calls[i],
            None => {
                active
                    .call_index
                    .insert(call_id.clone(), active.calls.len());
                active.calls.push(PendingCall {
                    item_id,
                    call_id: call_id.clone(),
                    name: String::new(),
                    arguments: None,
                });
                active.calls.last_mut().expect("just pushed")
            }
        };
        if let Some(name) = name {
            call.name = name;
        }
        if call.arguments.is_none() {
            if let Some(args) = arguments {
                call.arguments = Some(args.clone());
                self.known_calls.insert(call_id.clone());
                let name = call.name.clone();
                self.history.push(HistoryItem::FunctionCall {
                    call_id,
                    name,
                    arguments: args,
                });
            }
        }
    }

    /// Publishes the complete calls of a finished response, or drops them if it was cancelled.
    pub(super) fn finish_calls(
        &mut self,
        active: ActiveResponse,
        status: ResponseStatus,
        out: &mut Outbox,
    ) {
        let (complete, partial): (Vec<_>, Vec<_>) = active
            .calls
            .into_iter()
            .partition(|c| c.arguments.is_some());
        for c in &partial {
            tracing::warn!(target: "liveagent::openai", call_id = %self.redact(&c.call_id), item_id = %self.redact(&c.item_id), "function call without arguments dropped");
        }
        if complete.is_empty() {
            return;
        }
        if matches!(status, ResponseStatus::Cancelled | ResponseStatus::Failed) {
            let ids: Vec<String> = complete.iter().map(|c| c.call_id.clone()).collect();
            tracing::info!(target: "liveagent::openai", calls = ids.len(), ?status, "calls of an unfinished response dropped");
            for id in &ids {
                self.known_calls.remove(id);
            }
            self.history.remove_calls(&ids);
            return;
        }
        let calls = complete
            .into_iter()
            .map(|c| {
                self.awaiting_outputs.insert(c.call_id.clone());
                let raw = c.arguments.unwrap_or_default();
                ToolCall {
                    call_id: c.call_id.into(),
                    name: c.name.into(),
                    arguments: parse_arguments(&raw),
                    response_id: Some(active.id.clone()),
                }
            })
            .collect();
        out.publish(ToolCallRequested { calls });
    }

    pub(super) fn on_tool_result(&mut self, result: ToolResult, out: &mut Outbox) {
        let call_id = result.call_id.to_string();
        if self.outputs_sent.contains(&call_id) {
            tracing::warn!(target: "liveagent::openai", call_id = %self.redact(&call_id), "a result for this call was already sent; ignoring the duplicate");
            return;
        }
        if !self.known_calls.contains(&call_id) {
            self.error(
                out,
                ErrorKind::Tool,
                format!(
                    "openai: tool result for unknown call {call_id} ({}) not sent",
                    result.name
                ),
            );
            return;
        }
        let output = result.output_text();
        self.send(
            out,
            &ClientEvent::ConversationItemCreate {
                event_id: None,
                item: Item::FunctionCallOutput {
                    id: None,
                    call_id: call_id.clone(),
                    output: output.clone(),
                },
            },
        );
        self.known_calls.remove(&call_id);
        self.outputs_sent.insert(call_id.clone());
        self.awaiting_outputs.remove(&call_id);
        if self.history.has_call(&call_id) {
            self.history
                .push(HistoryItem::FunctionCallOutput { call_id, output });
        }
        if result.request_response {
            self.request_response(out);
        }
    }
}
