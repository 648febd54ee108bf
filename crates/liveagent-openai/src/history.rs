//! [`History`]: the conversation as it became final, kept so that a new session (after a
//! dropped connection or a renewal) can be given the same context.
//!
//! OpenAI cannot resume a realtime session, and the server does not accept assistant audio
//! in history, so the conversation is replayed as text: user turns as `input_text` (typed
//! text, or the transcript of what they said), assistant turns as `output_text` (the
//! transcript of what the model said, cut to what the user actually heard when playback was
//! interrupted), function calls with their arguments, and their outputs.

use std::collections::{HashMap, HashSet, VecDeque};

use liveagent_core::limits::{cut_to, DEFAULT_MAX_HISTORY_BYTES};

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

/// The ordered conversation history, bounded to `limit` items and to `max_bytes` bytes of
/// text (oldest dropped first; a function output whose call was dropped is dropped with it).
/// Drops are counted until [`History::take_trimmed`] reads them, so the protocol can say so
/// with a `TextDropped` event.
#[derive(Clone, Debug)]
pub struct History {
    items: VecDeque<HistoryItem>,
    limit: usize,
    max_bytes: usize,
    bytes: usize,
    /// Call ids of the kept `FunctionCall` items: one lookup per tool result.
    calls: HashSet<String>,
    /// How many `FunctionCallOutput` items are kept per call id, so dropping a call looks
    /// for its output only when there is one (a flood of calls without outputs would
    /// otherwise scan the whole history once per dropped call).
    outputs: HashMap<String, usize>,
    trimmed_items: usize,
    trimmed_bytes: usize,
}

/// Bytes of text an item holds (what the byte bound counts).
fn item_bytes(item: &HistoryItem) -> usize {
    match item {
        HistoryItem::UserText { text } => text.len(),
        HistoryItem::UserAudio {
            item_id,
            transcript,
        } => item_id.len() + transcript.as_ref().map_or(0, String::len),
        HistoryItem::Assistant { item_id, text, .. } => item_id.len() + text.len(),
        HistoryItem::FunctionCall {
            call_id,
            name,
            arguments,
        } => call_id.len() + name.len() + arguments.len(),
        HistoryItem::FunctionCallOutput { call_id, output } => call_id.len() + output.len(),
    }
}

/// Appends `delta` to `text` without letting it grow past `cap` bytes (cut at a character
/// boundary). Returns the bytes of `delta` that did not fit.
pub(crate) fn push_capped(text: &mut String, delta: &str, cap: usize) -> usize {
    let room = cap.saturating_sub(text.len());
    if delta.len() <= room {
        text.push_str(delta);
        return 0;
    }
    let kept = cut_to(delta, room);
    text.push_str(kept);
    delta.len() - kept.len()
}

impl History {
    /// An empty history keeping at most `limit` items (and at most
    /// [`DEFAULT_MAX_HISTORY_BYTES`], 128 KiB, of text; see [`History::with_max_bytes`]).
    pub fn new(limit: usize) -> Self {
        History {
            items: VecDeque::new(),
            limit: limit.max(1),
            max_bytes: DEFAULT_MAX_HISTORY_BYTES,
            bytes: 0,
            calls: HashSet::new(),
            outputs: HashMap::new(),
            trimmed_items: 0,
            trimmed_bytes: 0,
        }
    }

    /// Bounds the text kept to `max_bytes` (the newest item is always kept).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
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

    /// Bytes of text kept (what the byte bound counts).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Items and bytes dropped by the bounds since the last call.
    pub fn take_trimmed(&mut self) -> Option<(usize, usize)> {
        if self.trimmed_items == 0 {
            return None;
        }
        let r = (self.trimmed_items, self.trimmed_bytes);
        self.trimmed_items = 0;
        self.trimmed_bytes = 0;
        Some(r)
    }

    fn pop_oldest(&mut self) {
        let Some(item) = self.items.pop_front() else {
            return;
        };
        let size = item_bytes(&item);
        self.bytes -= size;
        self.trimmed_items += 1;
        self.trimmed_bytes += size;
        if let HistoryItem::FunctionCallOutput { call_id, .. } = &item {
            self.forget_output(call_id);
        }
        if let HistoryItem::FunctionCall { call_id, .. } = item {
            self.calls.remove(&call_id);
            if self.outputs.remove(&call_id).is_none() {
                return;
            }
            let before = self.items.len();
            let mut freed = 0;
            self.items.retain(|i| {
                let output = matches!(i, HistoryItem::FunctionCallOutput { call_id: c, .. } if *c == call_id);
                if output {
                    freed += item_bytes(i);
                }
                !output
            });
            self.trimmed_items += before - self.items.len();
            self.trimmed_bytes += freed;
            self.bytes -= freed;
        }
    }

    fn forget_output(&mut self, call_id: &str) {
        if let Some(n) = self.outputs.get_mut(call_id) {
            *n -= 1;
            if *n == 0 {
                self.outputs.remove(call_id);
            }
        }
    }

    fn enforce(&mut self) {
        while self.items.len() > self.limit || (self.bytes > self.max_bytes && self.items.len() > 1)
        {
            self.pop_oldest();
        }
    }

    /// Appends an item, dropping the oldest past the bounds.
    pub fn push(&mut self, item: HistoryItem) {
        self.bytes += item_bytes(&item);
        match &item {
            HistoryItem::FunctionCall { call_id, .. } => {
                self.calls.insert(call_id.clone());
            }
            HistoryItem::FunctionCallOutput { call_id, .. } => {
                *self.outputs.entry(call_id.clone()).or_default() += 1;
            }
            _ => {}
        }
        self.items.push_back(item);
        self.enforce();
    }

    /// The assistant item `item_id`, if kept. Do not change its text through this (the
    /// byte count would go stale): use [`History::append_text`] / [`History::set_text`].
    pub(crate) fn assistant_mut(&mut self, id: &str) -> Option<&mut HistoryItem> {
        self.items
            .iter_mut()
            .rev()
            .find(|i| matches!(i, HistoryItem::Assistant { item_id, .. } if item_id == id))
    }

    /// Appends to the text of the (kept, unfinished) assistant item `id`, capped at `cap`
    /// bytes; returns the bytes that did not fit.
    pub(crate) fn append_text(&mut self, id: &str, delta: &str, cap: usize) -> usize {
        let mut added = 0;
        let mut lost = 0;
        if let Some(HistoryItem::Assistant { text, done, .. }) = self.assistant_mut(id) {
            if !*done {
                let before = text.len();
                lost = push_capped(text, delta, cap);
                added = text.len() - before;
            }
        }
        self.bytes += added;
        self.enforce();
        lost
    }

    /// Sets the final text of the assistant item `id` (capped at `cap` bytes) and marks it
    /// done; returns the bytes that did not fit.
    pub(crate) fn set_text(&mut self, id: &str, full: &str, cap: usize) -> usize {
        let kept = cut_to(full, cap);
        let mut delta: isize = 0;
        if let Some(HistoryItem::Assistant { text, done, .. }) = self.assistant_mut(id) {
            delta = kept.len() as isize - text.len() as isize;
            *text = kept.to_owned();
            *done = true;
        }
        self.bytes = (self.bytes as isize + delta) as usize;
        self.enforce();
        full.len() - kept.len()
    }

    /// The user audio item `item_id`, if kept.
    pub(crate) fn has_user_audio(&self, id: &str) -> bool {
        self.items
            .iter()
            .rev()
            .any(|i| matches!(i, HistoryItem::UserAudio { item_id, .. } if item_id == id))
    }

    /// Sets the transcript of the user audio item `id` (capped at `cap` bytes); returns the
    /// bytes that did not fit.
    pub(crate) fn set_transcript(&mut self, id: &str, transcript: &str, cap: usize) -> usize {
        let kept = cut_to(transcript, cap);
        let mut delta: isize = 0;
        if let Some(HistoryItem::UserAudio { transcript: t, .. }) = self
            .items
            .iter_mut()
            .rev()
            .find(|i| matches!(i, HistoryItem::UserAudio { item_id, .. } if item_id == id))
        {
            delta = kept.len() as isize - t.as_ref().map_or(0, String::len) as isize;
            *t = Some(kept.to_owned());
        }
        self.bytes = (self.bytes as isize + delta) as usize;
        self.enforce();
        transcript.len() - kept.len()
    }

    /// True when a function call `call_id` is kept (a hash lookup).
    pub(crate) fn has_call(&self, id: &str) -> bool {
        self.calls.contains(id)
    }

    /// Removes the calls of a cancelled response.
    pub(crate) fn remove_calls(&mut self, ids: &[String]) {
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut freed = 0;
        self.items.retain(|i| {
            let gone = matches!(i, HistoryItem::FunctionCall { call_id, .. } if ids.contains(call_id.as_str()));
            if gone {
                freed += item_bytes(i);
            }
            !gone
        });
        self.bytes -= freed;
        for id in ids {
            self.calls.remove(id);
        }
    }

    /// Marks every unfinished assistant item as done (the connection was lost: what arrived
    /// is what the user got).
    pub(crate) fn finish_all(&mut self) {
        for item in self.items.iter_mut() {
            if let HistoryItem::Assistant { done, text, .. } = item {
                if !*done {
                    *done = true;
                    text.shrink_to_fit();
                }
            }
        }
    }

    /// Marks the assistant item `id` as done with the text its deltas built (the room the
    /// appends reserved is given back: a kept item takes about its counted bytes).
    pub(crate) fn finish(&mut self, id: &str) {
        if let Some(HistoryItem::Assistant { done, text, .. }) = self.assistant_mut(id) {
            *done = true;
            text.shrink_to_fit();
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
    fn byte_bound_drops_oldest_and_counts() {
        let mut h = History::new(100).with_max_bytes(10);
        h.push(HistoryItem::UserText {
            text: "aaaa".into(),
        });
        h.push(HistoryItem::UserText {
            text: "bbbb".into(),
        });
        assert_eq!((h.len(), h.bytes()), (2, 8));
        h.push(HistoryItem::UserText {
            text: "cccc".into(),
        });
        assert_eq!((h.len(), h.bytes()), (2, 8));
        assert_eq!(h.take_trimmed(), Some((1, 4)));
        assert_eq!(h.take_trimmed(), None);
        let mut t = String::from("ab");
        assert_eq!(push_capped(&mut t, "cdé", 4), 2);
        assert_eq!(t, "abcd");
    }

    #[test]
    fn default_bound_and_finished_text_without_spare_room() {
        let mut h = History::new(10);
        assert_eq!(h.max_bytes, 128 * 1024);
        h.push(HistoryItem::Assistant {
            item_id: "a".into(),
            text: String::new(),
            done: false,
            audio_ms: 0,
            heard_ms: None,
        });
        for _ in 0..100 {
            h.append_text("a", "words ", 1 << 20);
        }
        h.finish("a");
        let Some(HistoryItem::Assistant { text, done, .. }) = h.items().next() else {
            panic!("the assistant item is kept");
        };
        assert!(*done);
        assert_eq!((text.len(), text.capacity()), (600, 600));
        assert_eq!(h.bytes(), 601);
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
