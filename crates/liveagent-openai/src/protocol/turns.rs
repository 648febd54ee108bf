//! Responses: `response.created`/`response.done`, when `response.create` is sent (deferred
//! while one is running), user text and the control commands (commit, clear, cancel, manual
//! activity).

use liveagent_core::{ControlCommand, Id, Outbox, ResponseDone, ResponseStatus, Usage, UserText};

use super::{ActiveResponse, OpenAiProtocol, Phase};
use crate::config::TurnDetection;
use crate::history::HistoryItem;
use crate::wire::{ClientEvent, Item, ResponseInfo};

impl OpenAiProtocol {
    pub(super) fn on_response_done(&mut self, response: ResponseInfo, out: &mut Outbox) {
        let id: Id = response.id.clone().unwrap_or_default().into();
        let status = match response.status.as_deref() {
            Some("completed") => ResponseStatus::Completed,
            Some("cancelled") => ResponseStatus::Cancelled,
            Some("incomplete") => ResponseStatus::Incomplete,
            _ => ResponseStatus::Failed,
        };
        let reason = response.status_details.as_ref().and_then(|d| {
            d.reason.clone().or_else(|| {
                d.error
                    .as_ref()
                    .and_then(|e| e.code.clone().or(e.message.clone()))
            })
        });
        // Fill in whatever the streaming events missed from the final output list.
        if self.active.as_ref().is_none_or(|a| a.id != id) {
            self.active = Some(ActiveResponse {
                id: id.clone(),
                calls: Vec::new(),
                call_index: Default::default(),
                interrupted: false,
            });
        }
        for item in response.output {
            self.on_output_item(&id, item, true);
        }
        let active = self.active.take().expect("set above");
        self.response_requested = false;
        let usage = response.usage.map(|u| Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            input_audio_tokens: u.input_token_details.as_ref().and_then(|d| d.audio_tokens),
            output_audio_tokens: u.output_token_details.as_ref().and_then(|d| d.audio_tokens),
            cached_tokens: u.input_token_details.as_ref().and_then(|d| d.cached_tokens),
            stages: Vec::new(),
            thinking_tokens: None,
        });
        out.publish(ResponseDone {
            response_id: id.clone(),
            status,
            reason,
            usage,
            text: None,
        });
        self.finish_calls(active, status, out);
        if self.response_deferred && self.phase == Phase::Ready {
            self.response_deferred = false;
            self.request_response(out);
        }
    }

    /// Sends `response.create` now, or once the running response is done.
    pub(super) fn request_response(&mut self, out: &mut Outbox) {
        if self.phase != Phase::Ready {
            self.response_deferred = true;
            return;
        }
        if self.active.is_some() || self.response_requested {
            tracing::debug!(target: "liveagent::openai", "response.create deferred until the running response is done");
            self.response_deferred = true;
            return;
        }
        self.response_requested = true;
        self.send(out, &ClientEvent::ResponseCreate { response: None });
    }

    pub(super) fn on_text(&mut self, text: UserText, out: &mut Outbox) {
        if text.text.trim().is_empty() {
            tracing::debug!(target: "liveagent::openai", "empty user text ignored");
            return;
        }
        self.send(
            out,
            &ClientEvent::ConversationItemCreate {
                event_id: None,
                item: Item::user_text(&*text.text),
            },
        );
        self.history.push(HistoryItem::UserText {
            text: text.text.to_string(),
        });
        if text.respond {
            self.request_response(out);
        }
    }

    pub(super) fn on_control(&mut self, command: ControlCommand, out: &mut Outbox) {
        let manual = matches!(self.config.input.turn_detection, TurnDetection::Manual);
        match command {
            ControlCommand::CommitInput => {
                if self.input_bytes == 0 {
                    tracing::debug!(target: "liveagent::openai", "commit of an empty input buffer skipped");
                } else {
                    self.input_bytes = 0;
                    self.send(out, &ClientEvent::InputAudioBufferCommit);
                }
            }
            ControlCommand::ClearInput => {
                self.input_bytes = 0;
                self.send(out, &ClientEvent::InputAudioBufferClear);
            }
            ControlCommand::CreateResponse => self.request_response(out),
            ControlCommand::CancelResponse => {
                self.response_deferred = false;
                if self.active.is_some() || self.response_requested {
                    self.interrupt(out);
                    self.send(out, &ClientEvent::ResponseCancel { response_id: None });
                } else {
                    tracing::debug!(target: "liveagent::openai", "no response to cancel");
                }
            }
            ControlCommand::ActivityStart if manual => {
                self.user_speaking = true;
                if self.active.is_some() {
                    self.send(out, &ClientEvent::ResponseCancel { response_id: None });
                }
                self.interrupt(out);
                self.input_bytes = 0;
                self.send(out, &ClientEvent::InputAudioBufferClear);
            }
            ControlCommand::ActivityEnd if manual => {
                self.user_speaking = false;
                if self.input_bytes == 0 {
                    tracing::debug!(target: "liveagent::openai", "activity end without audio: nothing to commit");
                } else {
                    self.input_bytes = 0;
                    self.send(out, &ClientEvent::InputAudioBufferCommit);
                    self.request_response(out);
                }
            }
            ControlCommand::ActivityStart | ControlCommand::ActivityEnd => {
                tracing::debug!(target: "liveagent::openai", ?command, "activity markers only apply to manual turn detection; ignored");
            }
        }
    }
}
