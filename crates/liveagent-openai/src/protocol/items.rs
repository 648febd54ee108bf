//! Conversation items: the history copy kept for replay after a reconnect (user audio with
//! its transcript, assistant text and transcripts, output items).

use liveagent_core::limits::cut_to;
use liveagent_core::{Outbox, TextDropped};

use super::{OpenAiProtocol, PROVIDER};
use crate::history::HistoryItem;
use crate::wire::{ContentPart, Item, Role};

impl OpenAiProtocol {
    pub(super) fn note_user_audio(&mut self, item_id: String, transcript: Option<String>) {
        let cap = self.config.max_item_text_bytes;
        if self.history.has_user_audio(&item_id) {
            if let Some(t) = transcript {
                self.history.set_transcript(&item_id, &t, cap);
            }
        } else {
            self.history.push(HistoryItem::UserAudio {
                item_id,
                transcript: transcript.map(|t| cut_to(&t, cap).to_owned()),
            });
        }
    }

    pub(super) fn ensure_assistant(&mut self, item_id: &str) -> &mut HistoryItem {
        if self.history.assistant_mut(item_id).is_none() {
            self.history.push(HistoryItem::Assistant {
                item_id: item_id.to_owned(),
                text: String::new(),
                done: false,
                audio_ms: 0,
                heard_ms: None,
            });
        }
        self.history
            .assistant_mut(item_id)
            .expect("assistant item was just inserted")
    }

    pub(super) fn append_assistant_text(&mut self, item_id: &str, delta: &str) {
        self.ensure_assistant(item_id);
        let cap = self.config.max_item_text_bytes;
        self.history.append_text(item_id, delta, cap);
    }

    pub(super) fn finish_assistant_text(&mut self, item_id: &str, full: &str) {
        self.ensure_assistant(item_id);
        let cap = self.config.max_item_text_bytes;
        self.history.set_text(item_id, full, cap);
    }

    /// The part of a provider's `delta` for `item_id` on `stream` that fits under the
    /// per-item cap; the first delta past it publishes a `TextDropped` event.
    pub(super) fn admit_text<'a>(
        &mut self,
        stream: &str,
        item_id: &str,
        delta: &'a str,
        out: &mut Outbox,
    ) -> &'a str {
        let (kept, dropped) = self.text_caps.admit(PROVIDER, stream, item_id, delta);
        if let Some(ev) = dropped {
            let reason = self.redact(&ev.reason);
            tracing::warn!(target: "liveagent::openai", "{reason}");
            out.publish(TextDropped {
                reason,
                item_id: ev.item_id.map(|i| self.redact(&i).into()),
                ..ev
            });
        }
        kept
    }

    pub(super) fn on_output_item(&mut self, response_id: &str, item: Item, done: bool) {
        match item {
            Item::Message {
                id: Some(id),
                role: Role::Assistant,
                content,
                ..
            } => {
                self.ensure_assistant(&id);
                if done {
                    let full: Option<String> = content.iter().find_map(|p| match p {
                        ContentPart::OutputAudio {
                            transcript: Some(t),
                        } => Some(t.clone()),
                        ContentPart::OutputText { text } => Some(text.clone()),
                        _ => None,
                    });
                    match full {
                        Some(full) => self.finish_assistant_text(&id, &full),
                        None => self.history.finish(&id),
                    }
                }
            }
            Item::FunctionCall {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                let args = done.then_some(arguments);
                self.note_call(
                    response_id,
                    id.unwrap_or_default(),
                    call_id,
                    Some(name).filter(|n| !n.is_empty()),
                    args,
                );
            }
            _ => {}
        }
    }
}
