//! Gemini session resumption state: what a client can resume with a handle.
//!
//! Each session keeps one resumable state, its latest: issuing a new handle replaces the
//! session's previous one. A state expires after `ServerConfig::resumption_ttl` (the real
//! handles last about two hours), and all states together are bounded by
//! `ServerConfig::resumption_bytes` (the oldest go first). Closed sessions keep their last
//! state until it expires, since resuming after a dropped connection is the point. States
//! are kept packed ([`crate::packed`]): a few allocations each, whatever the conversation's
//! length, so that they do not pin otherwise free heap pages.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::items::{Content, Item, ItemKind};
use crate::packed::PackedItems;

fn held_bytes(audio: &crate::audio::Pcm) -> usize {
    audio.held_bytes()
}

/// The bytes an item holds (audio samples and text), as counted against the budget.
pub(crate) fn item_bytes(item: &Item) -> usize {
    let content = match &item.kind {
        ItemKind::Message { content, .. } => content
            .iter()
            .map(|c| match c {
                Content::InputText(t) | Content::OutputText(t) => t.len(),
                Content::InputAudio { audio, transcript } => {
                    held_bytes(audio) + transcript.as_ref().map_or(0, String::len)
                }
                Content::OutputAudio { audio, transcript } => held_bytes(audio) + transcript.len(),
            })
            .sum(),
        ItemKind::FunctionCall {
            call_id,
            name,
            arguments,
        } => call_id.len() + name.len() + arguments.len(),
        ItemKind::FunctionCallOutput { call_id, output } => call_id.len() + output.len(),
    };
    content + item.id.len() + 64
}

struct Entry {
    session: u64,
    items: PackedItems,
    bytes: usize,
    created: Instant,
}

#[derive(Default)]
struct Inner {
    by_handle: HashMap<String, Entry>,
    by_session: HashMap<u64, String>,
    bytes: usize,
}

/// Resumable states by handle.
pub(crate) struct ResumeStore {
    inner: Mutex<Inner>,
    ttl: Duration,
    budget: usize,
}

impl Inner {
    fn remove(&mut self, handle: &str) {
        if let Some(e) = self.by_handle.remove(handle) {
            self.bytes -= e.bytes;
            if self.by_session.get(&e.session).map(String::as_str) == Some(handle) {
                self.by_session.remove(&e.session);
            }
        }
    }
}

impl ResumeStore {
    pub fn new(ttl: Duration, budget: usize) -> Self {
        ResumeStore {
            inner: Mutex::new(Inner::default()),
            ttl,
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expire(&self, g: &mut Inner, now: Instant) {
        let old: Vec<String> = g
            .by_handle
            .iter()
            .filter(|(_, e)| now.duration_since(e.created) >= self.ttl)
            .map(|(h, _)| h.clone())
            .collect();
        for h in old {
            g.remove(&h);
        }
    }

    /// Stores a copy of `items` as session `session`'s resumable state under `handle`,
    /// replacing the session's previous state. Returns false when the state alone is over the budget (it is
    /// then not stored, and the session's previous state is gone too).
    pub fn put(&self, session: u64, handle: String, items: &[Item]) -> bool {
        let bytes: usize = items.iter().map(item_bytes).sum::<usize>() + handle.len() + 64;
        // Packed outside the lock, and only when it can be kept.
        let items = (bytes <= self.budget).then(|| PackedItems::new(items));
        let now = Instant::now();
        let mut g = self.lock();
        self.expire(&mut g, now);
        if let Some(prev) = g.by_session.get(&session).cloned() {
            g.remove(&prev);
        }
        let Some(items) = items else {
            return false;
        };
        while g.bytes + bytes > self.budget {
            let Some(oldest) = g
                .by_handle
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(h, _)| h.clone())
            else {
                break;
            };
            g.remove(&oldest);
        }
        g.bytes += bytes;
        g.by_session.insert(session, handle.clone());
        g.by_handle.insert(
            handle,
            Entry {
                session,
                items,
                bytes,
                created: now,
            },
        );
        true
    }

    /// The conversation saved under `handle`, unless unknown or expired.
    pub fn get(&self, handle: &str) -> Option<Vec<Item>> {
        let mut g = self.lock();
        self.expire(&mut g, Instant::now());
        g.by_handle.get(handle).map(|e| e.items.unpack())
    }

    /// (states, bytes) held now.
    pub fn usage(&self) -> (usize, usize) {
        let g = self.lock();
        (g.by_handle.len(), g.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::Role;

    fn text_item(n: usize) -> Item {
        Item {
            id: "item".into(),
            kind: ItemKind::Message {
                role: Role::User,
                content: vec![Content::InputText("x".repeat(n))],
            },
            status: "completed",
        }
    }

    #[test]
    fn one_state_per_session_bounded_and_expiring() {
        let store = ResumeStore::new(Duration::from_secs(3600), 10_000);
        for turn in 0..30 {
            assert!(store.put(1, format!("h{turn}"), &[text_item(1000), text_item(1000)]));
        }
        assert_eq!(store.usage().0, 1, "only the latest state of session 1");
        assert!(store.get("h0").is_none());
        assert!(store.get("h29").is_some());
        // Other sessions push the oldest out when the budget is reached.
        for s in 2..20 {
            store.put(s, format!("s{s}"), &[text_item(1000)]);
        }
        assert!(store.usage().1 <= 10_000);
        assert!(store.get("s19").is_some());
        // Too big alone: refused.
        assert!(!store.put(99, "big".into(), &[text_item(20_000)]));
        // Expiry.
        let short = ResumeStore::new(Duration::ZERO, 10_000);
        short.put(1, "h".into(), &[text_item(10)]);
        assert!(short.get("h").is_none());
    }
}
