//! Where sessions are listed for [`crate::LocalServer::sessions`] and `GET /debug/sessions`.
//!
//! A live session publishes only its small metadata (model, counters) as it goes; its
//! conversation is copied into a snapshot only when someone asks: the registry sends the
//! session a request and the session answers from its own loop. So a frame never costs a
//! copy of the conversation, however long it is.
//!
//! A session that ends leaves its final snapshot in a bounded history of closed sessions
//! (`ServerConfig::closed_sessions_kept` sessions, `closed_sessions_bytes` of item text); the
//! oldest go first, and a snapshot larger than the whole budget keeps its items with their
//! text cut short. Kept snapshots are packed ([`crate::packed`]): a few allocations each
//! instead of several per item, so that they do not pin otherwise free heap pages.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::items::{Item, SessionInfo};
use crate::packed::PackedSession;
use crate::server::Shared;
use crate::stats::Stats;

/// A request for a full snapshot: the session calls it with one.
pub(crate) type SnapshotRequest = Box<dyn FnOnce(SessionInfo) + Send>;

/// The sending side a live session is asked through.
pub(crate) type SnapshotSender = mpsc::UnboundedSender<SnapshotRequest>;

/// The receiving side, polled by the session loop.
pub(crate) type SnapshotReceiver = mpsc::UnboundedReceiver<SnapshotRequest>;

/// How long a snapshot request waits for a busy session before using its metadata only.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

struct Live {
    /// The latest metadata (items empty).
    meta: SessionInfo,
    ask: SnapshotSender,
}

#[derive(Default)]
struct Inner {
    live: BTreeMap<u64, Live>,
    closed: VecDeque<(PackedSession, usize)>,
    closed_bytes: usize,
}

/// Live sessions and the bounded history of closed ones.
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    keep: usize,
    budget: usize,
}

fn text_bytes(info: &SessionInfo) -> usize {
    info.items.iter().map(|i| i.text.len() + 64).sum::<usize>() + 128
}

/// Cuts every item's text so that the snapshot fits in `budget` bytes.
fn shrink(info: &mut SessionInfo, budget: usize) {
    let n = info.items.len().max(1);
    let per_item = (budget.saturating_sub(128) / n)
        .saturating_sub(64 + 4)
        .max(16);
    for item in &mut info.items {
        if item.text.len() > per_item {
            let mut cut = per_item;
            while !item.text.is_char_boundary(cut) {
                cut -= 1;
            }
            item.text.truncate(cut);
            item.text.push('…');
            // The capacity the cut text keeps is not kept: packing copies the text.
        }
    }
}

impl Registry {
    pub fn new(keep: usize, budget: usize) -> Self {
        Registry {
            inner: Mutex::new(Inner::default()),
            keep,
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lists a new live session.
    pub fn register(&self, meta: SessionInfo, ask: SnapshotSender) {
        self.lock().live.insert(meta.id, Live { meta, ask });
    }

    /// Updates a live session's metadata (cheap: no items).
    pub fn update_meta(&self, meta: SessionInfo) {
        if let Some(l) = self.lock().live.get_mut(&meta.id) {
            l.meta = meta;
        }
    }

    /// Updates only a live session's counters (the hot path: no strings copied).
    pub fn update_counts(
        &self,
        id: u64,
        responses: u32,
        client_errors: u32,
        input_buffered_ms: u64,
    ) {
        if let Some(l) = self.lock().live.get_mut(&id) {
            let m = &mut l.meta;
            (m.responses, m.client_errors, m.input_buffered_ms) =
                (responses, client_errors, input_buffered_ms);
            m.connected = true;
        }
    }

    /// Moves a session to the closed history with its final snapshot.
    pub fn closed(&self, mut info: SessionInfo) {
        let mut g = self.lock();
        g.live.remove(&info.id);
        if self.keep == 0 {
            return;
        }
        let mut bytes = text_bytes(&info);
        if bytes > self.budget {
            shrink(&mut info, self.budget);
            bytes = text_bytes(&info);
        }
        g.closed_bytes += bytes;
        g.closed.push_back((PackedSession::new(info), bytes));
        while g.closed.len() > self.keep || (g.closed_bytes > self.budget && g.closed.len() > 1) {
            if let Some((_, b)) = g.closed.pop_front() {
                g.closed_bytes -= b;
            }
        }
    }

    /// Marks every live session as disconnected and moves it to the history (server stop).
    pub fn all_closed(&self) {
        let metas: Vec<SessionInfo> = self.lock().live.values().map(|l| l.meta.clone()).collect();
        for mut m in metas {
            m.connected = false;
            self.closed(m);
        }
    }

    /// Closed sessions kept now.
    pub fn closed_count(&self) -> usize {
        self.lock().closed.len()
    }

    fn asks(&self) -> (Vec<(u64, SessionInfo, SnapshotSender)>, Vec<SessionInfo>) {
        let g = self.lock();
        (
            g.live
                .iter()
                .map(|(id, l)| (*id, l.meta.clone(), l.ask.clone()))
                .collect(),
            g.closed.iter().map(|(i, _)| i.unpack()).collect(),
        )
    }

    fn merge(mut out: Vec<SessionInfo>) -> Vec<SessionInfo> {
        out.sort_by_key(|s| s.id);
        out.dedup_by_key(|s| s.id);
        out
    }

    /// Every session, oldest first, from any thread (blocks until the live sessions answer,
    /// at most a couple of seconds). Not for use on a server worker thread.
    pub fn snapshot_blocking(&self) -> Vec<SessionInfo> {
        let (asks, mut out) = self.asks();
        let mut waiting = Vec::new();
        for (id, meta, ask) in asks {
            let (tx, rx) = std::sync::mpsc::channel();
            let sent = ask.send(Box::new(move |info| {
                let _ = tx.send(info);
            }));
            match sent {
                Ok(()) => waiting.push((id, meta, rx)),
                Err(_) => out.push(self.closed_or(meta)),
            }
        }
        let deadline = std::time::Instant::now() + SNAPSHOT_WAIT;
        for (_, meta, rx) in waiting {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(info) => out.push(info),
                Err(_) => out.push(self.closed_or(meta)),
            }
        }
        Self::merge(out)
    }

    /// Every session, oldest first (async: for the debug endpoint on a server worker).
    pub async fn snapshot(&self) -> Vec<SessionInfo> {
        let (asks, mut out) = self.asks();
        let mut waiting = Vec::new();
        for (_, meta, ask) in asks {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let sent = ask.send(Box::new(move |info| {
                let _ = tx.send(info);
            }));
            match sent {
                Ok(()) => waiting.push((meta, rx)),
                Err(_) => out.push(self.closed_or(meta)),
            }
        }
        for (meta, rx) in waiting {
            match tokio::time::timeout(SNAPSHOT_WAIT, rx).await {
                Ok(Ok(info)) => out.push(info),
                _ => out.push(self.closed_or(meta)),
            }
        }
        Self::merge(out)
    }

    /// The closed snapshot of a session that ended meanwhile, else its metadata.
    fn closed_or(&self, meta: SessionInfo) -> SessionInfo {
        let g = self.lock();
        g.closed
            .iter()
            .find(|(i, _)| i.id() == meta.id)
            .map(|(i, _)| i.unpack())
            .unwrap_or(meta)
    }
}

/// A session the registry lists (both protocols' session types): its metadata, its
/// conversation, and the server state it reports to.
pub(crate) trait Listed {
    /// The server state the session belongs to.
    fn shared(&self) -> &Shared;

    /// The session's metadata, without its items (cheap).
    fn meta(&self, connected: bool) -> SessionInfo;

    /// The conversation's items.
    fn items(&self) -> &[Item];

    /// A full snapshot, items included (built only on request, and counted).
    fn snapshot(&self, connected: bool) -> SessionInfo {
        let info = SessionInfo {
            items: self.items().iter().map(Item::info).collect(),
            ..self.meta(connected)
        };
        counted(&self.shared().stats, info)
    }

    /// Publishes the metadata (counters); the items are only copied on request.
    fn publish(&self, connected: bool) {
        self.shared().registry.update_meta(self.meta(connected));
    }
}

/// A session counted in and listed for as long as it lives: [`Tracked::open`] counts it in
/// the server's stats and registers it; dropping it, however the session ended (its loop
/// returned, or its task was dropped by a server stop), files its final snapshot in the
/// closed history and counts it out. It dereferences to the session.
pub(crate) struct Tracked<S: Listed>(S);

impl<S: Listed> Tracked<S> {
    /// Counts `session` in and lists it; the receiver delivers the snapshot requests the
    /// session loop must answer.
    pub fn open(session: S) -> (Self, SnapshotReceiver) {
        let stats = &session.shared().stats;
        stats.sessions_total.fetch_add(1, Ordering::Relaxed);
        stats.sessions_active.fetch_add(1, Ordering::Relaxed);
        let (ask, asks) = mpsc::unbounded_channel();
        session.shared().registry.register(session.meta(true), ask);
        (Tracked(session), asks)
    }
}

impl<S: Listed> std::ops::Deref for Tracked<S> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.0
    }
}

impl<S: Listed> std::ops::DerefMut for Tracked<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.0
    }
}

impl<S: Listed> Drop for Tracked<S> {
    fn drop(&mut self) {
        let info = self.0.snapshot(false);
        let shared = self.0.shared();
        shared.registry.closed(info);
        shared.stats.sessions_active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a full snapshot (for the tests that check they are only built on demand).
pub(crate) fn counted(stats: &Stats, info: SessionInfo) -> SessionInfo {
    stats.snapshots_built.fetch_add(1, Ordering::Relaxed);
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::{ItemInfo, ProtocolKind};

    fn info(id: u64, text_len: usize) -> SessionInfo {
        SessionInfo {
            id,
            protocol: ProtocolKind::OpenAi,
            model: "m".into(),
            scenario: None,
            connected: false,
            items: vec![ItemInfo {
                id: "i".into(),
                kind: "message",
                role: None,
                text: "x".repeat(text_len),
                audio_ms: 0,
                call_id: None,
                name: None,
                status: "completed",
            }],
            responses: 0,
            resumed_from: None,
            client_errors: 0,
            input_buffered_ms: 0,
        }
    }

    #[test]
    fn closed_history_is_bounded_in_count_and_bytes() {
        let r = Registry::new(3, 10_000);
        for id in 1..=6 {
            r.closed(info(id, 100));
        }
        assert_eq!(r.closed_count(), 3);
        let ids: Vec<u64> = r.snapshot_blocking().iter().map(|s| s.id).collect();
        assert_eq!(ids, [4, 5, 6]);
        // One huge session: kept, but its text is cut to the budget.
        r.closed(info(7, 5_000_000));
        let all = r.snapshot_blocking();
        assert_eq!(all.last().unwrap().id, 7);
        assert!(all.iter().map(text_bytes).sum::<usize>() <= 10_000);
        // What is kept is what is counted: the cut text does not keep its old capacity.
        let held: usize = r.lock().closed.iter().map(|(s, _)| s.text_len()).sum();
        assert!(held <= 10_000, "closed history holds {held} bytes of text");
    }
}
