//! Barge-in and cancellation: the LLM and the TTS stop, the player is told to flush
//! (`Interrupted`), and the assistant messages are cut to the text that was synthesized,
//! then, when the player reports how much it played (`PlaybackStopped`), to the text
//! actually heard, so the next turn's context is honest.

use liveagent_agent::wire::ChatMessage;
use liveagent_core::{Interrupted, Outbox, PlaybackStopped, ResponseDone, ResponseStatus};

use super::response::usage_of;
use super::CascadeProtocol;
use crate::heard::Spoken;

impl CascadeProtocol {
    /// Barge-in or cancel: stop the LLM and the TTS, tell the player to flush, cut the
    /// assistant messages to what was synthesized.
    pub(super) fn interrupt(&mut self, reason: &str, out: &mut Outbox) {
        if let Some(mut r) = self.response.take() {
            for task in [r.llm_task.take(), r.tts_task.take()].into_iter().flatten() {
                out.cancel(task);
            }
            self.cancel_context(&mut r);
            out.publish(Interrupted {
                response_id: Some(r.id.clone()),
                item_id: Some(r.item.clone()),
            });
            let round = r.round;
            if r.spoken.messages[round].is_none() {
                // The LLM had not finished this round: its half-made tool calls are
                // dropped, and the message holds what reached the user.
                let text = if self.config.text_only {
                    r.text.clone()
                } else {
                    r.spoken.texts(None).remove(&round).unwrap_or_default()
                };
                if !text.is_empty() {
                    r.spoken.messages[round] = Some(self.history.len());
                    self.history.push(ChatMessage::assistant(text));
                }
            }
            if !self.config.text_only {
                self.cut_history(&r.spoken, None);
            }
            out.publish(ResponseDone {
                response_id: r.id.clone(),
                status: ResponseStatus::Cancelled,
                reason: Some(reason.to_owned()),
                usage: Some(usage_of(&r.usage)),
                text: (!r.all_text.is_empty()).then(|| r.all_text.clone().into()),
            });
            self.last_spoken = Some(r.spoken);
        } else if let Some(spoken) = self.last_spoken.as_ref().filter(|s| s.may_be_playing()) {
            out.publish(Interrupted {
                response_id: Some(spoken.response.clone()),
                item_id: Some(spoken.item.clone()),
            });
        }
    }

    /// Cuts each assistant message of `spoken` to its synthesized text (`played_ms`
    /// `None`) or to what was heard after `played_ms`.
    pub(super) fn cut_history(&mut self, spoken: &Spoken, played_ms: Option<u64>) {
        let texts = spoken.texts(played_ms);
        for (round, index) in spoken.messages.iter().enumerate() {
            let Some(ChatMessage::Assistant {
                content,
                tool_calls,
                ..
            }) = index.and_then(|i| self.history.get_mut(i))
            else {
                continue;
            };
            let text = texts.get(&round).cloned().unwrap_or_default();
            *content = if !text.is_empty() {
                Some(text)
            } else if tool_calls.is_empty() {
                // An assistant message needs content or calls.
                Some(String::new())
            } else {
                None
            };
        }
    }

    pub(super) fn on_playback_stopped(&mut self, p: PlaybackStopped) {
        let spoken = match (&mut self.response, &mut self.last_spoken) {
            (Some(r), _) if r.spoken.item == p.item_id => &mut r.spoken,
            (_, Some(s)) if s.item == p.item_id => s,
            _ => return,
        };
        spoken.played_out = true;
        if !p.interrupted || self.config.text_only {
            return;
        }
        let spoken = spoken.clone();
        tracing::debug!(item = %p.item_id, played_ms = p.played_ms, "cut the assistant message to what was heard");
        self.cut_history(&spoken, Some(p.played_ms));
    }
}
