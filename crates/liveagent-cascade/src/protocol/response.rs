//! A response: one LLM round on the history, or several when the model calls tools (the
//! round with the calls, then one per batch of results); the answer's sentences go to
//! text-to-speech as they complete; the response ends (`ResponseDone`, usage per stage)
//! when the LLM, the tools and the speech are all done, or at the first fatal error.

use std::collections::VecDeque;

use liveagent_agent::wire::{ChatMessage, ChatUsage};
use liveagent_agent::ChatStreamEvent;
use liveagent_core::{
    ErrorEvent, LiveError, ModelMessageChunk, Outbox, OutputTranscriptChunk, ProtocolSignal,
    ResponseDone, ResponseStarted, ResponseStatus, Stage, StageUsage, ToolCall, ToolCallRequested,
    ToolResult, Usage, UserText,
};
use serde_json::Value;

use super::{boxed, stage_usage, CascadeProtocol, Response, PLACEHOLDER};
use crate::heard::Spoken;
use crate::sentence::SentenceBuffer;

impl CascadeProtocol {
    pub(super) fn start_response(&mut self, out: &mut Outbox) {
        if self.response.is_some() {
            self.interrupt("new_turn", out);
        }
        // Chat Completions wants every call answered before the next message.
        for call in std::mem::take(&mut self.waiting_calls) {
            self.history.push(ChatMessage::Tool {
                tool_call_id: call.clone(),
                content: PLACEHOLDER.into(),
            });
            self.placeholders.push(call);
        }
        let id = self.new_item("resp");
        let item = self.new_item("item");
        let cfg = &self.config;
        let stt = std::mem::replace(
            &mut self.stt_usage,
            stage_usage(Stage::Stt, cfg.stt.provider(), cfg.stt.model()),
        );
        let response = Response {
            id: id.clone(),
            item: item.clone(),
            llm_task: None,
            tts_task: None,
            sentences: SentenceBuffer::new(cfg.min_chars),
            tts_queue: VecDeque::new(),
            round: 0,
            text: String::new(),
            all_text: String::new(),
            tool_calls: Vec::new(),
            finish_reason: None,
            awaiting_tools: false,
            llm_failed: false,
            tts_failed: false,
            context: None,
            context_ended: false,
            spoken: Spoken {
                item,
                response: id.clone(),
                segments: Vec::new(),
                total_ms: 0,
                first_audio: None,
                played_out: false,
                messages: vec![None],
            },
            usage: [
                stt,
                stage_usage(Stage::Llm, cfg.llm.provider(), cfg.llm.model()),
                stage_usage(Stage::Tts, cfg.tts.provider(), cfg.tts.model()),
            ],
        };
        self.response = Some(response);
        out.publish(ResponseStarted { response_id: id });
        self.start_llm(out);
    }

    /// Runs the LLM on the history for the response's current round.
    pub(super) fn start_llm(&mut self, out: &mut Outbox) {
        let mut messages = Vec::with_capacity(self.history.len() + 1);
        if !self.instructions.is_empty() {
            messages.push(ChatMessage::system(self.instructions.clone()));
        }
        messages.extend(self.history.iter().cloned());
        let task = self.next_id();
        let stream = self.config.llm.complete(messages, self.tools.clone());
        if let Some(r) = self.response.as_mut() {
            r.llm_task = Some(task);
            r.usage[1].requests += 1;
        }
        out.spawn(task, boxed(stream));
    }

    /// Every tool result of the round is in: the response goes on with a new LLM round
    /// (its text is spoken after whatever of the previous round is still queued).
    pub(super) fn continue_response(&mut self, out: &mut Outbox) {
        let min_chars = self.config.min_chars;
        let Some(r) = self.response.as_mut() else {
            return;
        };
        r.awaiting_tools = false;
        r.round += 1;
        r.text.clear();
        r.tool_calls.clear();
        r.finish_reason = None;
        if !r.all_text.is_empty() {
            r.all_text.push(' ');
        }
        r.sentences = SentenceBuffer::new(min_chars);
        r.spoken.messages.push(None);
        self.start_llm(out);
    }

    pub(super) fn on_llm(&mut self, item: Result<ChatStreamEvent, LiveError>, out: &mut Outbox) {
        let Some(r) = self.response.as_mut() else {
            return;
        };
        let mut pieces = Vec::new();
        match item {
            Ok(ChatStreamEvent::Text(t)) => {
                out.publish(ModelMessageChunk::new(r.item.clone(), t.as_str()));
                r.text.push_str(&t);
                r.all_text.push_str(&t);
                pieces = r.sentences.push(&t);
            }
            Ok(ChatStreamEvent::ToolCalls(calls)) => r.tool_calls.extend(calls),
            Ok(ChatStreamEvent::Finished { reason }) => r.finish_reason = reason,
            Ok(ChatStreamEvent::Usage(u)) => add_chat_usage(&mut r.usage[1], u),
            Err(e) if e.is_permanent() => return self.fatal(e, out),
            Err(e) => {
                r.llm_failed = true;
                tracing::warn!(error = %e, "the LLM failed mid-answer");
                out.publish(ErrorEvent::new("cascade-llm", e));
            }
        }
        let round = r.round;
        for piece in pieces {
            self.enqueue_tts(round, piece, out);
        }
    }

    pub(super) fn on_llm_end(&mut self, out: &mut Outbox) {
        let Some(r) = self.response.as_mut() else {
            return;
        };
        r.llm_task = None;
        let rest = if r.llm_failed {
            None
        } else {
            r.sentences.flush()
        };
        let content = (!r.text.is_empty()).then(|| r.text.clone());
        let calls = if r.llm_failed {
            Vec::new()
        } else {
            std::mem::take(&mut r.tool_calls)
        };
        let round = r.round;
        if content.is_some() || !calls.is_empty() {
            r.spoken.messages[round] = Some(self.history.len());
            self.history.push(ChatMessage::Assistant {
                content,
                tool_calls: calls.clone(),
                refusal: None,
            });
        }
        let response_id = r.id.clone();
        if let Some(rest) = rest {
            self.enqueue_tts(round, rest, out);
        }
        if !calls.is_empty() {
            // Published now, inside the running response (the text before the calls is
            // spoken while they run); the response goes on with their results.
            self.waiting_calls = calls.iter().map(|c| c.id.clone()).collect();
            if let Some(r) = self.response.as_mut() {
                r.awaiting_tools = true;
            }
            out.publish(ToolCallRequested {
                calls: calls
                    .into_iter()
                    .map(|c| ToolCall {
                        call_id: c.id.as_str().into(),
                        name: c.function.name.as_str().into(),
                        arguments: serde_json::from_str(&c.function.arguments)
                            .unwrap_or(Value::String(c.function.arguments)),
                        response_id: Some(response_id.clone()),
                    })
                    .collect(),
            });
        }
        self.maybe_finish(out);
    }

    /// Ends the response once the LLM is done, no tool result is awaited and everything
    /// queued was spoken.
    pub(super) fn maybe_finish(&mut self, out: &mut Outbox) {
        self.end_context_if_due();
        let done = self.response.as_ref().is_some_and(|r| {
            r.llm_task.is_none()
                && r.tts_task.is_none()
                && r.tts_queue.is_empty()
                && r.context.is_none()
                && !(r.awaiting_tools && !r.llm_failed && !r.tts_failed)
        });
        if !done {
            return;
        }
        let Some(r) = self.response.take() else {
            return;
        };
        let status = if r.llm_failed || r.tts_failed {
            ResponseStatus::Failed
        } else if matches!(
            r.finish_reason.as_deref(),
            Some("length" | "content_filter")
        ) {
            ResponseStatus::Incomplete
        } else {
            ResponseStatus::Completed
        };
        let reason = if r.llm_failed {
            Some("llm_failed".to_owned())
        } else if r.tts_failed {
            Some("tts_failed".to_owned())
        } else {
            r.finish_reason.clone()
        };
        if (r.tts_failed || r.llm_failed) && !self.config.text_only {
            // Only what was synthesized reached the user.
            self.cut_history(&r.spoken, None);
        }
        self.end_response(r, status, reason, out);
    }

    /// Publishes the end of `r`: what was spoken (final output transcript), then
    /// `ResponseDone`.
    pub(super) fn end_response(
        &mut self,
        r: Response,
        status: ResponseStatus,
        reason: Option<String>,
        out: &mut Outbox,
    ) {
        let spoken_text = r.spoken.synthesized_text();
        if !spoken_text.is_empty() {
            out.publish(OutputTranscriptChunk {
                item_id: Some(r.item.clone()),
                text: spoken_text.into(),
                is_final: true,
            });
        }
        out.publish(ResponseDone {
            response_id: r.id.clone(),
            status,
            reason,
            usage: Some(usage_of(&r.usage)),
            text: (!r.all_text.is_empty()).then(|| r.all_text.clone().into()),
        });
        self.last_spoken = Some(r.spoken);
    }

    /// An error retrying cannot fix (a refused key, an unknown model, an exhausted quota):
    /// the response in progress ends as failed, then the session ends with it (one fatal
    /// `ErrorEvent` and `SessionClosed`, from the runtime).
    pub(super) fn fatal(&mut self, e: LiveError, out: &mut Outbox) {
        if let Some(mut r) = self.response.take() {
            for task in [r.llm_task.take(), r.tts_task.take()].into_iter().flatten() {
                out.cancel(task);
            }
            self.cancel_context(&mut r);
            self.cut_history(&r.spoken, None);
            let reason = format!("{:?}", e.kind).to_lowercase();
            self.end_response(r, ResponseStatus::Failed, Some(reason), out);
        }
        out.signal(ProtocolSignal::Fatal(e));
    }

    pub(super) fn on_tool_result(&mut self, result: ToolResult, out: &mut Outbox) {
        let id = result.call_id.to_string();
        let content = result.output_text();
        if let Some(pos) = self.placeholders.iter().position(|c| *c == id) {
            self.placeholders.remove(pos);
            for m in self.history.iter_mut() {
                if let ChatMessage::Tool {
                    tool_call_id,
                    content: c,
                } = m
                {
                    if *tool_call_id == id {
                        *c = content.clone();
                    }
                }
            }
            return;
        }
        let Some(pos) = self.waiting_calls.iter().position(|c| *c == id) else {
            // A repeated result (a retried executor, say) or one for a call the model did
            // not make: the model must not get it (again).
            tracing::warn!(call_id = %id, "a tool result for no pending call is ignored");
            return;
        };
        self.waiting_calls.remove(pos);
        self.history.push(ChatMessage::Tool {
            tool_call_id: id,
            content,
        });
        let go_on = self.waiting_calls.is_empty()
            && self
                .response
                .as_ref()
                .is_some_and(|r| r.awaiting_tools && r.llm_task.is_none());
        if go_on {
            self.continue_response(out);
        }
    }

    pub(super) fn on_text(&mut self, text: UserText, out: &mut Outbox) {
        if text.respond && self.response.is_some() {
            self.interrupt("new_turn", out);
        }
        self.history.push(ChatMessage::user(text.text.to_string()));
        if text.respond {
            self.start_response(out);
        }
    }
}

pub(super) fn add_chat_usage(u: &mut StageUsage, c: ChatUsage) {
    u.input_tokens += c.prompt_tokens;
    u.output_tokens += c.completion_tokens;
}

pub(super) fn usage_of(stages: &[StageUsage; 3]) -> Usage {
    let llm = &stages[1];
    Usage {
        input_tokens: llm.input_tokens,
        output_tokens: llm.output_tokens,
        total_tokens: llm.input_tokens + llm.output_tokens,
        input_audio_tokens: None,
        output_audio_tokens: None,
        cached_tokens: None,
        thinking_tokens: None,
        stages: stages.to_vec(),
    }
}
