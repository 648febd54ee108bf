//! Conversation items: the history copy kept for replay after a reconnect (user audio with
//! its transcript, assistant text and transcripts, output items).

use super::OpenAiProtocol;
use crate::history::HistoryItem;
use crate::wire::{ContentPart, Item, Role};

impl OpenAiProtocol {
    pub(super) fn note_user_audio(&mut self, item_id: String, transcript: Option<String>) {
        if let Some(HistoryItem::UserAudio { transcript: t, .. }) =
            self.history.user_audio_mut(&item_id)
        {
            if transcript.is_some() {
                *t = transcript;
            }
        } else {
            self.history.push(HistoryItem::UserAudio {
                item_id,
                transcript,
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
        if let HistoryItem::Assistant { text, done, .. } = self.ensure_assistant(item_id) {
            if !*done {
                text.push_str(delta);
            }
        }
    }

    pub(super) fn finish_assistant_text(&mut self, item_id: &str, full: &str) {
        if let HistoryItem::Assistant { text, done, .. } = self.ensure_assistant(item_id) {
            *text = full.to_owned();
            *done = true;
        }
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
                        None => {
                            if let Some(HistoryItem::Assistant { done, .. }) =
                                self.history.assistant_mut(&id)
                            {
                                *done = true;
                            }
                        }
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
