//! [`History`]: the conversation as it became final, kept so that a new session (after a
//! dropped connection or a renewal) can be given the same context.
//!
//! OpenAI cannot resume a realtime session, and the server does not accept assistant audio
//! in history, so the conversation is replayed as text: user turns as `input_text` (typed
//! text, or the transcript of what they said), assistant turns as `output_text` (the
//! transcript of what the model said, cut to what the user actually heard when playback was
//! interrupted), function calls with their arguments, and their outputs.

use std::collections::VecDeque;

use crate::wire::Item;

/// One conversation item, as it will be replayed.
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryItem {
    /// Text the user typed.
    UserText {
        /// The text.
        text: String,
    },
    /// A spoken user turn; replayed as its transcript (skipped while it has none).
    UserAudio {
        /// The server's item id.
        item_id: String,
        /// The transcript, once `input_audio_transcription.completed` arrived.
        transcript: Option<String>,
    },
    /// A model turn (its audio transcript, or its text).
    Assistant {
        /// The server's item id.
        item_id: String,
        /// The full text the model produced for this item.
        text: String,
        /// True once the item is final (`output_item.done`, or cut by a lost connection).
        done: bool,
        /// Milliseconds of audio received for this item (0 for text output).
        audio_ms: u64,
        /// Milliseconds the user heard, when playback was interrupted.
        heard_ms: Option<u64>,
    },
    /// A function call the model made.
    FunctionCall {
        /// The call id.
        call_id: String,
        /// The function.
        name: String,
        /// The arguments (a JSON string, as the model wrote it).
        arguments: String,
    },
    /// The output sent for a call.
    FunctionCallOutput {
        /// The call id.
        call_id: String,
        /// The output text.
        output: String,
    },
}

impl HistoryItem {
    /// The text an assistant item is replayed with: all of it, or, when playback was
    /// interrupted, the share of the transcript proportional to the share of the audio heard
    /// (`heard_ms / audio_ms`), cut back to a word boundary. Transcripts and audio are not
    /// aligned word by word, so this is an estimate; the server's own copy of the item is cut
    /// exactly by `conversation.item.truncate`.
    pub fn replay_text(&self) -> Option<String> {
        match self {
            HistoryItem::UserText { text } => Some(text.clone()),
            HistoryItem::UserAudio { transcript, .. } => transcript.clone(),
            HistoryItem::Assistant {
                text,
                audio_ms,
                heard_ms,
                ..
            } => Some(match heard_ms {
                Some(heard) if *audio_ms > 0 && heard < audio_ms => {
                    trim_proportional(text, *heard as f64 / *audio_ms as f64)
                }
                _ => text.clone(),
            }),
            _ => None,
        }
    }

    /// The `conversation.item.create` item that recreates this one, if it has content.
    pub fn to_item(&self) -> Option<Item> {
        let non_empty = |t: Option<String>| t.filter(|t| !t.trim().is_empty());
        match self {
            HistoryItem::UserText { .. } | HistoryItem::UserAudio { .. } => {
                non_empty(self.replay_text()).map(Item::user_text)
            }
            HistoryItem::Assistant { .. } => {
                non_empty(self.replay_text()).map(Item::assistant_text)
            }
            HistoryItem::FunctionCall {
                call_id,
                name,
                arguments,
            } => Some(Item::FunctionCall {
                id: None,
                call_id: call_id.clone(),
                name: name.clone(),
                arguments: arguments.clone(),
                status: None,
            }),
            HistoryItem::FunctionCallOutput { call_id, output } => Some(Item::FunctionCallOutput {
                id: None,
                call_id: call_id.clone(),
                output: output.clone(),
            }),
        }
    }
}

/// Cuts `text` to about `fraction` of its characters, back to the last whitespace.
pub(crate) fn trim_proportional(text: &str, fraction: f64) -> String {
    let fraction = fraction.clamp(0.0, 1.0);
    let chars: Vec<char> = text.chars().collect();
    let cut = ((chars.len() as f64) * fraction).round() as usize;
    if cut >= chars.len() {
        return text.to_owned();
    }
    let mut end = cut;
    // Keep a word the cut falls inside only if the cut is right at its end.
    if end > 0 && !chars[end].is_whitespace() {
        while end > 0 && !chars[end - 1].is_whitespace() {
            end -= 1;
        }
    }
    chars[..end]
        .iter()
        .collect::<String>()
        .trim_end()
        .to_owned()
}

/// The ordered conversation history, bounded to `limit` items (oldest dropped first; a
/// function output whose call was dropped is dropped with it).
#[derive(Clone, Debug)]
pub struct History {
    items: VecDeque<HistoryItem>,
    limit: usize,
}

impl History {
    /// An empty history keeping at most `limit` items.
    pub fn new(limit: usize) -> Self {
        History {
            items: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// The items, oldest first.
    pub fn items(&self) -> impl Iterator<Item = &HistoryItem> {
        self.items.iter()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends an item, dropping the oldest past the limit.
    pub fn push(&mut self, item: HistoryItem) {
        self.items.push_back(item);
        while self.items.len() > self.limit {
            if let Some(HistoryItem::FunctionCall { call_id, .. }) = self.items.pop_front() {
                self.items.retain(|i| {
                    !matches!(i, HistoryItem::FunctionCallOutput { call_id: c, .. } if *c == call_id)
                });
            }
        }
    }

    /// The assistant item `item_id`, if kept.
    pub(crate) fn assistant_mut(&mut self, id: &str) -> Option<&mut HistoryItem> {
        self.items
            .iter_mut()
            .rev()
            .find(|i| matches!(i, HistoryItem::Assistant { item_id, .. } if item_id == id))
    }

    /// The user audio item `item_id`, if kept.
    pub(crate) fn user_audio_mut(&mut self, id: &str) -> Option<&mut HistoryItem> {
        self.items
            .iter_mut()
            .rev()
            .find(|i| matches!(i, HistoryItem::UserAudio { item_id, .. } if item_id == id))
    }

    /// True when a function call `call_id` is kept.
    pub(crate) fn has_call(&self, id: &str) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, HistoryItem::FunctionCall { call_id, .. } if call_id == id))
    }

    /// Removes the calls of a cancelled response.
    pub(crate) fn remove_calls(&mut self, ids: &[String]) {
        self.items.retain(
            |i| !matches!(i, HistoryItem::FunctionCall { call_id, .. } if ids.contains(call_id)),
        );
    }

    /// Marks every unfinished assistant item as done (the connection was lost: what arrived
    /// is what the user got).
    pub(crate) fn finish_all(&mut self) {
        for item in self.items.iter_mut() {
            if let HistoryItem::Assistant { done, .. } = item {
                *done = true;
            }
        }
    }

    /// The items that recreate the conversation in a new session, in order.
    pub fn replay(&self) -> Vec<Item> {
        self.items.iter().filter_map(HistoryItem::to_item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_to_word_boundaries() {
        assert_eq!(trim_proportional("one two three four", 0.5), "one two");
        assert_eq!(
            trim_proportional("one two three four", 1.0),
            "one two three four"
        );
        assert_eq!(trim_proportional("one two three four", 0.0), "");
        assert_eq!(trim_proportional("héllo wörld", 0.6), "héllo");
        assert_eq!(trim_proportional("", 0.5), "");
    }

    #[test]
    fn limit_drops_outputs_with_their_calls() {
        let mut h = History::new(2);
        h.push(HistoryItem::FunctionCall {
            call_id: "c1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        });
        h.push(HistoryItem::FunctionCallOutput {
            call_id: "c1".into(),
            output: "1".into(),
        });
        h.push(HistoryItem::UserText { text: "hi".into() });
        assert_eq!(
            h.items().collect::<Vec<_>>(),
            vec![&HistoryItem::UserText { text: "hi".into() }]
        );
    }

    #[test]
    fn interrupted_assistant_replays_what_was_heard() {
        let item = HistoryItem::Assistant {
            item_id: "a".into(),
            text: "It is twenty one degrees in Paris".into(),
            done: true,
            audio_ms: 2000,
            heard_ms: Some(1000),
        };
        assert_eq!(item.replay_text().unwrap(), "It is twenty one");
    }
}
