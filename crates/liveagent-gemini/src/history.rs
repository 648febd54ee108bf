//! The conversation as the provider remembers it, to replay into a new session when no
//! resumption handle can be used.

use std::collections::VecDeque;

use serde_json::Value;

use crate::wire::{Content, FunctionCall, FunctionResponse, Part};

/// Most characters put in one replay frame (frames stay well below any frame-size limit).
const MAX_FRAME_CHARS: usize = 64 * 1024;

/// One remembered step of the conversation.
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryEntry {
    /// What the user said (transcript) or typed.
    User(String),
    /// What the model said (output transcript or text).
    Model {
        /// The text.
        text: String,
        /// The item id the session gave the turn.
        item_id: String,
        /// Milliseconds of audio the model produced for it (0 in text mode).
        audio_ms: u64,
        /// Milliseconds the player reported as heard, when playback was interrupted.
        heard_ms: Option<u64>,
    },
    /// A function call the model made.
    FunctionCall {
        /// The call id.
        id: Option<String>,
        /// The function.
        name: String,
        /// The arguments.
        args: Value,
    },
    /// The result sent back.
    FunctionResponse {
        /// The call id.
        id: Option<String>,
        /// The function.
        name: String,
        /// The result object.
        response: Value,
    },
}

impl HistoryEntry {
    fn is_model(&self) -> bool {
        matches!(
            self,
            HistoryEntry::Model { .. } | HistoryEntry::FunctionCall { .. }
        )
    }

    fn to_part(&self) -> Option<Part> {
        match self {
            HistoryEntry::User(text) => Some(Part::text(text.clone())),
            HistoryEntry::Model {
                text,
                audio_ms,
                heard_ms,
                ..
            } => {
                let text = heard_text(text, *audio_ms, *heard_ms);
                (!text.is_empty()).then(|| Part::text(text))
            }
            HistoryEntry::FunctionCall { id, name, args } => Some(Part {
                function_call: Some(FunctionCall {
                    id: id.clone(),
                    name: name.clone(),
                    args: Some(args.clone()),
                }),
                ..Part::default()
            }),
            HistoryEntry::FunctionResponse { id, name, response } => Some(Part {
                function_response: Some(FunctionResponse {
                    id: id.clone(),
                    name: name.clone(),
                    response: response.clone(),
                }),
                ..Part::default()
            }),
        }
    }

    fn chars(&self) -> usize {
        match self {
            HistoryEntry::User(t) => t.len(),
            HistoryEntry::Model { text, .. } => text.len(),
            HistoryEntry::FunctionCall { args, .. } => args.to_string().len() + 32,
            HistoryEntry::FunctionResponse { response, .. } => response.to_string().len() + 32,
        }
    }
}

/// The part of `text` the user heard: when playback was cut after `heard_ms` of `audio_ms`,
/// the same share of the words (at least one word when anything was heard).
pub fn heard_text(text: &str, audio_ms: u64, heard_ms: Option<u64>) -> String {
    let text = text.trim();
    let Some(heard) = heard_ms else {
        return text.to_owned();
    };
    if audio_ms == 0 || heard >= audio_ms {
        return text.to_owned();
    }
    if heard == 0 {
        return String::new();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let keep = ((words.len() as u128 * heard as u128).div_ceil(audio_ms as u128) as usize)
        .clamp(1, words.len().max(1));
    words[..keep.min(words.len())].join(" ")
}

/// A bounded list of [`HistoryEntry`], with a sequence number per entry so that "everything
/// after the resumption handle" can be found even after old entries were dropped.
#[derive(Clone, Debug, Default)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    /// Sequence number of `entries[0]`.
    first_seq: u64,
    max_entries: usize,
    max_bytes: usize,
    bytes: usize,
    trimmed_items: usize,
    trimmed_bytes: usize,
}

impl History {
    /// An empty history keeping at most `max_entries`.
    pub fn new(max_entries: usize) -> Self {
        History {
            entries: VecDeque::new(),
            first_seq: 0,
            max_entries: max_entries.max(1),
            max_bytes: liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES,
            bytes: 0,
            trimmed_items: 0,
            trimmed_bytes: 0,
        }
    }

    /// Bounds the text kept to `max_bytes` (the newest entry is always kept).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// Bytes of text kept (what the byte bound counts).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries and bytes dropped by the bounds since the last call.
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
        if let Some(e) = self.entries.pop_front() {
            let size = e.chars();
            self.bytes -= size;
            self.first_seq += 1;
            self.trimmed_items += 1;
            self.trimmed_bytes += size;
        }
    }

    /// Sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64
    }

    /// Number of entries kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.entries.iter()
    }

    /// Appends an entry (empty texts are skipped). Drops the oldest past the bound, never
    /// leaving a function response without its call at the front.
    pub fn push(&mut self, entry: HistoryEntry) {
        match &entry {
            HistoryEntry::User(t) | HistoryEntry::Model { text: t, .. } if t.trim().is_empty() => {
                return
            }
            _ => {}
        }
        self.bytes += entry.chars();
        self.entries.push_back(entry);
        self.enforce();
    }

    fn enforce(&mut self) {
        while self.entries.len() > self.max_entries
            || (self.bytes > self.max_bytes && self.entries.len() > 1)
        {
            self.pop_oldest();
        }
        while self.entries.len() > 1
            && matches!(
                self.entries.front(),
                Some(HistoryEntry::FunctionResponse { .. })
            )
        {
            self.pop_oldest();
        }
    }

    /// Appends a late transcript piece to the model entry of `item`.
    pub fn append_model_text(&mut self, item: &str, piece: &str) {
        for e in self.entries.iter_mut().rev() {
            if let HistoryEntry::Model { item_id, text, .. } = e {
                if item_id == item {
                    text.push_str(piece);
                    self.bytes += piece.len();
                    self.enforce();
                    return;
                }
            }
        }
        self.push(HistoryEntry::Model {
            text: piece.to_owned(),
            item_id: item.to_owned(),
            audio_ms: 0,
            heard_ms: None,
        });
    }

    /// Records what the player heard of a model item.
    pub fn set_heard(&mut self, item: &str, played_ms: u64) {
        for e in self.entries.iter_mut().rev() {
            if let HistoryEntry::Model {
                item_id, heard_ms, ..
            } = e
            {
                if item_id == item {
                    *heard_ms = Some(played_ms);
                    return;
                }
            }
        }
    }

    /// The entries from sequence number `from_seq` on, as `clientContent` turns split into
    /// frames of bounded size. Consecutive entries of the same role share one turn.
    pub fn replay_turns(&self, from_seq: u64) -> Vec<Vec<Content>> {
        let skip = from_seq.saturating_sub(self.first_seq) as usize;
        let mut frames: Vec<Vec<Content>> = Vec::new();
        let mut turns: Vec<Content> = Vec::new();
        let mut size = 0usize;
        for entry in self.entries.iter().skip(skip) {
            let Some(part) = entry.to_part() else {
                continue;
            };
            let role = if entry.is_model() { "model" } else { "user" };
            let chars = entry.chars();
            if size + chars > MAX_FRAME_CHARS && !turns.is_empty() {
                frames.push(std::mem::take(&mut turns));
                size = 0;
            }
            size += chars;
            match turns.last_mut() {
                Some(last) if last.role.as_deref() == Some(role) => last.parts.push(part),
                _ => turns.push(Content {
                    role: Some(role.to_owned()),
                    parts: vec![part],
                }),
            }
        }
        if !turns.is_empty() {
            frames.push(turns);
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heard_share_of_words() {
        let t = "one two three four";
        assert_eq!(heard_text(t, 1000, None), t);
        assert_eq!(heard_text(t, 1000, Some(1000)), t);
        assert_eq!(heard_text(t, 1000, Some(500)), "one two");
        assert_eq!(heard_text(t, 1000, Some(1)), "one");
        assert_eq!(heard_text(t, 1000, Some(0)), "");
        assert_eq!(heard_text(t, 0, Some(10)), t);
    }

    #[test]
    fn groups_roles_and_bounds() {
        let mut h = History::new(4);
        h.push(HistoryEntry::User("hi".into()));
        h.push(HistoryEntry::FunctionCall {
            id: Some("c1".into()),
            name: "f".into(),
            args: json!({}),
        });
        h.push(HistoryEntry::FunctionResponse {
            id: Some("c1".into()),
            name: "f".into(),
            response: json!({"result": 1}),
        });
        h.push(HistoryEntry::Model {
            text: "done".into(),
            item_id: "i1".into(),
            audio_ms: 0,
            heard_ms: None,
        });
        h.push(HistoryEntry::User("  ".into())); // skipped
        let frames = h.replay_turns(0);
        assert_eq!(frames.len(), 1);
        let roles: Vec<_> = frames[0].iter().map(|c| c.role.clone().unwrap()).collect();
        assert_eq!(roles, ["user", "model", "user", "model"]);
        // past the bound the oldest go, and a leading function response goes too
        h.push(HistoryEntry::User("again".into()));
        assert_eq!(h.len(), 4);
        assert!(matches!(
            h.entries().next(),
            Some(HistoryEntry::FunctionCall { .. })
        ));
        h.push(HistoryEntry::User("more".into()));
        assert_eq!(h.len(), 3);
        assert!(matches!(
            h.entries().next(),
            Some(HistoryEntry::Model { .. })
        ));
        assert_eq!(h.next_seq(), 6);
        let tail = h.replay_turns(4);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].len(), 1);
        assert_eq!(tail[0][0].parts.len(), 2);
        assert_eq!(tail[0][0].parts[0].text.as_deref(), Some("again"));
    }

    #[test]
    fn splits_big_histories() {
        // 160 KB of text: past the default byte bound (128 KiB), so raise it.
        let mut h = History::new(1000).with_max_bytes(1 << 20);
        for i in 0..40 {
            h.push(HistoryEntry::User(format!("{i} {}", "x".repeat(4000))));
        }
        let frames = h.replay_turns(0);
        assert!(frames.len() >= 2);
        let parts: usize = frames.iter().flatten().map(|c| c.parts.len()).sum();
        assert_eq!(parts, 40);
    }
}
