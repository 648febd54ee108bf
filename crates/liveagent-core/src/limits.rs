//! Byte caps on text a provider sends: per item (input transcript, output transcript, text
//! deltas) and for the history kept to restore a session. A provider that streams 256 KB
//! deltas at 50 per second must not grow the client's memory without limit; what passes a
//! cap is dropped and a [`TextDropped`] event says so.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use crate::events::{Id, TextDropped};

/// Default cap on one item's transcript or text: 64 KiB (about an hour of speech's words
/// would be ~50 KiB; far more than any real answer).
pub const DEFAULT_MAX_ITEM_TEXT_BYTES: usize = 64 * 1024;

/// Default bound on the text of the history kept to restore a session: 128 KiB.
///
/// That is about 32,000 tokens of English text (about 4 bytes a token): the whole context
/// window of `gpt-realtime` (32k tokens, audio included), a quarter of a 128k-token window
/// (Gemini Live, `gpt-realtime-2`), and, at about 1 KiB of transcript per minute of
/// two-sided speech, about two hours of conversation; a live session's own context holds
/// far less text than that, its audio taking most of it (Gemini: 15 minutes of audio fill
/// 128k tokens). Replaying more than the model can hold only costs memory, and a long or
/// hostile conversation reaches this bound early, so a process's memory levels off (see
/// the soak in docs/reliability.md). Past it the oldest turns are dropped with a
/// `TextDropped` event; raise it per provider with `history_max_bytes` on the provider's
/// `RealtimeConfig`.
pub const DEFAULT_MAX_HISTORY_BYTES: usize = 128 * 1024;

/// Default number of call ids a provider protocol remembers as answered (or cancelled) to
/// drop a duplicate result: older ids are forgotten, so a provider that floods calls cannot
/// grow these sets without limit.
pub const DEFAULT_MAX_REMEMBERED_IDS: usize = 4_096;

/// A set of ids that remembers at most `cap` of them, forgetting the oldest first.
///
/// Used by the provider protocols for the call ids whose results were already sent (and the
/// calls a provider cancelled), so duplicates are dropped without an unbounded set.
///
/// ```
/// use liveagent_core::limits::RecentIds;
/// let mut ids = RecentIds::new(2);
/// ids.insert("a".into());
/// ids.insert("b".into());
/// ids.insert("c".into());
/// assert!(!ids.contains("a"));
/// assert!(ids.contains("b") && ids.contains("c"));
/// assert_eq!(ids.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct RecentIds {
    cap: usize,
    /// Each id is stored once, shared by the set (lookups) and the queue (age order).
    set: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

impl Default for RecentIds {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_REMEMBERED_IDS)
    }
}

impl RecentIds {
    /// An empty set that remembers at most `cap` ids (at least one).
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`, forgetting the oldest ids beyond the cap. Returns whether it was new.
    pub fn insert(&mut self, id: String) -> bool {
        if self.set.contains(id.as_str()) {
            return false;
        }
        let id: Arc<str> = id.into();
        self.set.insert(Arc::clone(&id));
        self.order.push_back(id);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&*old);
            }
        }
        true
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// How many recent items [`ItemTextCaps`] tracks (older ones are forgotten; an item that
/// comes back starts a fresh count).
const TRACKED_ITEMS: usize = 64;

/// `text` cut to at most `cap` bytes, at a character boundary.
///
/// ```
/// use liveagent_core::limits::cut_to;
/// assert_eq!(cut_to("héllo", 2), "h");
/// assert_eq!(cut_to("hello", 10), "hello");
/// ```
pub fn cut_to(text: &str, cap: usize) -> &str {
    if text.len() <= cap {
        return text;
    }
    let mut end = cap;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Counts the bytes published per item and stream, and cuts deltas past the cap.
///
/// ```
/// use liveagent_core::limits::ItemTextCaps;
/// let mut caps = ItemTextCaps::new(8);
/// assert_eq!(caps.admit("openai", "out", "item1", "hello").0, "hello");
/// let (kept, dropped) = caps.admit("openai", "out", "item1", " world");
/// assert_eq!(kept, " wo");
/// assert_eq!(dropped.unwrap().bytes, 3);
/// let (kept, dropped) = caps.admit("openai", "out", "item1", "more");
/// assert_eq!((kept, dropped.is_none()), ("", true));
/// ```
#[derive(Debug, Clone)]
pub struct ItemTextCaps {
    cap: usize,
    items: VecDeque<(String, String, usize)>,
}

impl ItemTextCaps {
    /// Caps each item's text at `cap` bytes.
    pub fn new(cap: usize) -> Self {
        ItemTextCaps {
            cap,
            items: VecDeque::new(),
        }
    }

    /// The cap in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Forgets the count of item `item_id` of `stream` (its next text starts from zero).
    pub fn forget(&mut self, stream: &str, item_id: &str) {
        self.items
            .retain(|(s, i, _)| !(s == stream && i == item_id));
    }

    /// Admits `delta` for item `item_id` of stream `stream` (e.g. `"input"`, `"output"`,
    /// `"text"`): returns the part that fits under the cap, and, when this delta crossed the
    /// cap, the [`TextDropped`] event to publish (once per item and stream).
    pub fn admit<'a>(
        &mut self,
        source: &str,
        stream: &str,
        item_id: &str,
        delta: &'a str,
    ) -> (&'a str, Option<TextDropped>) {
        let idx = match self
            .items
            .iter()
            .position(|(s, i, _)| s == stream && i == item_id)
        {
            Some(i) => i,
            None => {
                if self.items.len() >= TRACKED_ITEMS {
                    self.items.pop_front();
                }
                self.items
                    .push_back((stream.to_owned(), item_id.to_owned(), 0));
                self.items.len() - 1
            }
        };
        let used = self.items[idx].2;
        let kept = cut_to(delta, self.cap.saturating_sub(used));
        let dropped = delta.len() - kept.len();
        let crossed = dropped > 0 && used <= self.cap;
        // Past the cap the count stays above it, so the event is sent once.
        self.items[idx].2 = if dropped > 0 {
            self.cap + 1
        } else {
            used + kept.len()
        };
        let event = crossed.then(|| TextDropped {
            source: Arc::from(source),
            item_id: Some(Id::from(item_id)),
            items: 0,
            bytes: dropped as u64,
            reason: format!(
                "the {stream} text of item {item_id} passed its cap of {} bytes; the rest is dropped",
                self.cap
            ),
        });
        (kept, event)
    }
}
