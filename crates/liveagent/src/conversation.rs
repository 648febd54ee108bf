//! [`Conversation`]: one running session of a [`LiveAgent`](crate::LiveAgent).

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use actix::WeakAddr;
use liveagent_core::{
    ConversationContext, EventBus, EventClass, EventFilter, EventKind, LiveEvent,
    ObserverCompleted, Shutdown, Usage,
};
use liveagent_session::{SessionHandle, SessionStatus};
use liveagent_tools::ToolExecutor;

mod chunks;
use chunks::ChunkLane;

/// A running conversation: the event bus, the supervised provider session and the tool
/// executor of one [`LiveAgent::run`](crate::LiveAgent::run).
///
/// It dereferences to its [`ConversationContext`], so `conversation.stream()`,
/// `conversation.publish(..)` and `conversation.send_text(..)` work directly. Hand
/// `conversation.context()` to peers (recorder, player, observers).
///
/// Call [`stop`](Self::stop) to end it: the session closes its connection and publishes
/// `SessionClosed`, queued events are delivered, then every actor of the conversation stops
/// and every stream ends.
pub struct Conversation {
    agent: Arc<str>,
    context: ConversationContext,
    bus: WeakAddr<EventBus>,
    session: SessionHandle,
    executor: WeakAddr<ToolExecutor>,
    extras: ConversationExtras,
    stored: Option<StoredConversation>,
}

/// A conversation recorded in a store.
#[derive(Clone)]
pub(crate) struct StoredConversation {
    pub id: liveagent_store::ConversationId,
    pub resume_token: Option<liveagent_store::ResumeToken>,
    pub resumed: bool,
    pub recorder: Addr<liveagent_store::StoreRecorder>,
}

/// How many events [`Conversation::history`] keeps by default, text chunks apart (the
/// oldest go first); see
/// [`LiveAgentBuilder::history_limit`](crate::LiveAgentBuilder::history_limit).
pub const HISTORY_LIMIT: usize = 1_000;

/// How many bytes of events [`Conversation::history`] keeps by default (each event counted
/// as its in-memory size plus [`LiveEvent::approx_bytes`]; the oldest go first).
///
/// The history grows with the conversation: a spoken answer publishes dozens of text
/// chunks (`ModelMessageChunk`, `OutputTranscriptChunk`, `InputTranscriptChunk`; about
/// 3.5 KiB per second of conversation), so they are kept apart and bounded to a quarter of
/// this (16 KiB: about the last answer's). The other events (responses, speech turns, tool
/// calls and results, observers, errors...) are kept up to [`HISTORY_LIMIT`] events and
/// this many bytes. [`Conversation::messages`] does not depend on either bound: the
/// conversation's texts are kept apart, compactly.
pub const HISTORY_MAX_BYTES: usize = 64 * 1024;

/// How many bytes of text [`Conversation::messages`] keeps by default (the oldest messages
/// go first; see
/// [`LiveAgentBuilder::messages_limit`](crate::LiveAgentBuilder::messages_limit)): 128 KiB,
/// the same as the history kept to restore a session
/// ([`DEFAULT_MAX_HISTORY_BYTES`](liveagent_core::limits::DEFAULT_MAX_HISTORY_BYTES)),
/// about two hours of speech (about 1 KiB of transcript per minute of two-sided
/// conversation). A kept message takes about its text's bytes in memory.
pub const MESSAGES_MAX_BYTES: usize = 128 * 1024;

/// The bounds of one conversation's [`Conversation::history`] (and of its
/// [`Conversation::messages`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HistoryBounds {
    pub events: usize,
    pub bytes: usize,
    /// Bytes of text kept for [`Conversation::messages`].
    pub messages: usize,
}

impl Default for HistoryBounds {
    fn default() -> Self {
        HistoryBounds {
            events: HISTORY_LIMIT,
            bytes: HISTORY_MAX_BYTES,
            messages: MESSAGES_MAX_BYTES,
        }
    }
}

/// One lane of the history: events with their sequence number and counted bytes.
#[derive(Default)]
struct Lane {
    events: std::collections::VecDeque<(u64, LiveEvent, usize)>,
    bytes: usize,
}

impl Lane {
    fn push(
        &mut self,
        seq: u64,
        event: LiveEvent,
        size: usize,
        max_events: usize,
        max_bytes: usize,
    ) {
        self.events.push_back((seq, event, size));
        self.bytes += size;
        while self.events.len() > max_events || (self.bytes > max_bytes && self.events.len() > 1) {
            if let Some((_, _, b)) = self.events.pop_front() {
                self.bytes -= b;
            }
        }
    }
}

#[derive(Default)]
struct Book {
    usage: Usage,
    bounds: HistoryBounds,
    /// Recorded events so far (their sequence numbers order the two lanes).
    seq: u64,
    /// The recent text chunks (stored compactly: see [`chunks`]).
    chunks: ChunkLane,
    /// The other recent control events.
    others: Lane,
    /// Finished messages, `(role, text)`, and their total text bytes.
    messages: std::collections::VecDeque<(&'static str, String)>,
    messages_bytes: usize,
    /// The words of the response in progress (its `ModelMessageChunk`s).
    current: String,
}

impl Book {
    fn record(&mut self, event: &LiveEvent) {
        match event {
            LiveEvent::ModelMessageChunk(c) => {
                // A response never done (its connection lost) goes on into the next one:
                // bounded like the messages.
                let room = self.bounds.messages.saturating_sub(self.current.len());
                self.current
                    .push_str(liveagent_core::limits::cut_to(&c.text, room));
            }
            LiveEvent::ResponseDone(_) => {
                let mut text = std::mem::take(&mut self.current);
                if !text.trim().is_empty() {
                    // Give back the room the appends reserved (up to as much again).
                    text.shrink_to_fit();
                    self.push_message("assistant", text);
                }
            }
            LiveEvent::InputTranscriptChunk(t) if t.is_final => {
                self.push_message("user", t.text.to_string())
            }
            LiveEvent::UserText(t) => self.push_message("user", t.text.to_string()),
            _ => {}
        }
        let HistoryBounds { events, bytes, .. } = self.bounds;
        if events == 0 || bytes == 0 {
            return;
        }
        self.seq += 1;
        if !self.chunks.push(self.seq, event, events, bytes / 4) {
            let size = std::mem::size_of::<LiveEvent>() + event.approx_bytes();
            self.others
                .push(self.seq, event.clone(), size, events, bytes);
        }
    }

    /// The recorded events in order (the two lanes merged).
    fn history(&self) -> Vec<LiveEvent> {
        let mut out = Vec::with_capacity(self.chunks.events + self.others.events.len());
        let (mut a, mut b) = (
            self.chunks.events().peekable(),
            self.others
                .events
                .iter()
                .map(|(s, e, _)| (*s, e.clone()))
                .peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x.0 < y.0 {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some((_, e)) = next {
                out.push(e);
            }
        }
        out
    }

    fn push_message(&mut self, role: &'static str, text: String) {
        self.messages_bytes += text.len();
        self.messages.push_back((role, text));
        while self.messages_bytes > self.bounds.messages && self.messages.len() > 1 {
            if let Some((_, t)) = self.messages.pop_front() {
                self.messages_bytes -= t.len();
            }
        }
    }
}

/// Per-conversation bookkeeping: usage, history, observer names.
#[derive(Clone)]
pub(crate) struct ConversationExtras {
    book: Arc<Mutex<Book>>,
    observers: Vec<Arc<str>>,
}

struct Bookkeeper {
    book: Arc<Mutex<Book>>,
    agent_usage: Arc<Mutex<Usage>>,
}

impl Actor for Bookkeeper {
    type Context = Context<Self>;
}

impl Handler<LiveEvent> for Bookkeeper {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, _: &mut Context<Self>) {
        let mut book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        if let LiveEvent::ResponseDone(done) = &event {
            if let Some(usage) = &done.usage {
                book.usage.add(usage);
                self.agent_usage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(usage);
            }
        }
        book.record(&event);
    }
}

impl ConversationExtras {
    pub(crate) fn attach(
        context: &ConversationContext,
        agent_usage: Arc<Mutex<Usage>>,
        bounds: HistoryBounds,
    ) -> Self {
        let book = Arc::new(Mutex::new(Book {
            bounds,
            ..Book::default()
        }));
        let keeper = Bookkeeper {
            book: book.clone(),
            agent_usage,
        }
        .start();
        // Every control event: the audio is too big to keep (record it with a recorder).
        let filter = EventFilter::kinds(
            EventKind::ALL
                .iter()
                .copied()
                .filter(|k| k.class() == EventClass::Control),
        );
        context.subscribe_filtered(filter, keeper.recipient());
        ConversationExtras {
            book,
            observers: Vec::new(),
        }
    }

    pub(crate) fn with_observers(mut self, names: Vec<Arc<str>>) -> Self {
        self.observers = names;
        self
    }
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("agent", &self.agent)
            .field("context", &self.context)
            .finish()
    }
}

impl Conversation {
    pub(crate) fn new(
        agent: Arc<str>,
        context: ConversationContext,
        bus: Addr<EventBus>,
        session: SessionHandle,
        executor: Addr<ToolExecutor>,
        extras: ConversationExtras,
    ) -> Self {
        Conversation {
            agent,
            context,
            bus: bus.downgrade(),
            session,
            executor: executor.downgrade(),
            extras,
            stored: None,
        }
    }

    pub(crate) fn with_store(mut self, stored: Option<StoredConversation>) -> Self {
        self.stored = stored;
        self
    }

    /// The id this conversation is stored under, when the agent has a conversation store.
    pub fn conversation_id(&self) -> Option<&liveagent_store::ConversationId> {
        self.stored.as_ref().map(|s| &s.id)
    }

    /// The token a client shows to resume this conversation on another instance (give it
    /// to the client only; never log it), when the agent has a conversation store.
    pub fn resume_token(&self) -> Option<&liveagent_store::ResumeToken> {
        self.stored.as_ref().and_then(|s| s.resume_token.as_ref())
    }

    /// True when this conversation was picked up from the store ([`RunOptions::resume`](crate::RunOptions::resume)).
    pub fn is_resumed(&self) -> bool {
        self.stored.as_ref().is_some_and(|s| s.resumed)
    }

    /// The recorder writing this conversation to the store (send it
    /// [`RecordOps`](liveagent_store::RecordOps) for application state, or ask its
    /// [`status`](liveagent_store::GetRecorderStatus)).
    pub fn store_recorder(&self) -> Option<&Addr<liveagent_store::StoreRecorder>> {
        self.stored.as_ref().map(|s| &s.recorder)
    }

    /// The tokens this conversation used so far: every `ResponseDone::usage` added up
    /// (AG2 usage report per conversation; `LiveAgent::usage_report` adds up all of an
    /// agent's conversations).
    pub fn usage_report(&self) -> Usage {
        self.extras
            .book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .usage
            .clone()
    }

    /// The recent events of the conversation except audio, in order (AG2
    /// `stream.history`): by default the text chunks of about the last answer and up to
    /// [`HISTORY_LIMIT`] other events ([`HISTORY_MAX_BYTES`]; see
    /// [`LiveAgentBuilder::history_limit`](crate::LiveAgentBuilder::history_limit)).
    pub fn history(&self) -> Vec<LiveEvent> {
        self.extras
            .book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .history()
    }

    /// What the model said, one string per finished response (its `ModelMessageChunk`s
    /// joined), and what the user said (final transcripts and texts), in order, as
    /// `(role, text)` with role `"user"` or `"assistant"`. Kept apart from
    /// [`history`](Self::history) (whose bound does not apply), up to [`MESSAGES_MAX_BYTES`]
    /// (128 KiB) of text by default (the oldest messages go first; see
    /// [`LiveAgentBuilder::messages_limit`](crate::LiveAgentBuilder::messages_limit)).
    pub fn messages(&self) -> Vec<(&'static str, String)> {
        let book = self.extras.book.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(&'static str, String)> = book.messages.iter().cloned().collect();
        if !book.current.trim().is_empty() {
            out.push(("assistant", book.current.clone()));
        }
        out
    }

    /// The name of the agent this conversation runs.
    pub fn agent_name(&self) -> &str {
        &self.agent
    }

    /// The shared context: publish, subscribe, stream.
    pub fn context(&self) -> &ConversationContext {
        &self.context
    }

    /// The provider session.
    pub fn session(&self) -> &SessionHandle {
        &self.session
    }

    /// The session's state and counters (`None` once it has ended).
    pub async fn status(&self) -> Option<SessionStatus> {
        self.session.status().await
    }

    /// A handle to watch the conversation's actors after [`stop`](Self::stop) consumed it.
    pub fn watch(&self) -> ConversationWatch {
        ConversationWatch {
            bus: self.bus.clone(),
            session: self.session.clone(),
            executor: self.executor.clone(),
        }
    }

    /// Ends the conversation: closes the provider connection (publishing `SessionClosed`),
    /// delivers events already published, stops the bus (every stream ends) and lets the
    /// executor and session actors end.
    pub async fn stop(self) {
        self.session.stop_and_wait().await;
        for name in &self.extras.observers {
            self.context
                .publish(ObserverCompleted { name: name.clone() });
        }
        if let Some(bus) = self.bus.upgrade() {
            let _ = bus.send(Shutdown).await;
        }
        tracing::info!(agent = %self.agent, "conversation stopped");
    }
}

impl Deref for Conversation {
    type Target = ConversationContext;
    fn deref(&self) -> &ConversationContext {
        &self.context
    }
}

/// Tells whether a conversation's actors are still alive (for shutdown checks).
#[derive(Clone)]
pub struct ConversationWatch {
    bus: WeakAddr<EventBus>,
    session: SessionHandle,
    executor: WeakAddr<ToolExecutor>,
}

impl ConversationWatch {
    /// True once the bus, the session and the tool executor have all stopped.
    pub fn all_stopped(&self) -> bool {
        let alive = |a: Option<bool>| a.unwrap_or(false);
        !alive(self.bus.upgrade().map(|a| a.connected()))
            && !self.session.is_alive()
            && !alive(self.executor.upgrade().map(|a| a.connected()))
    }

    /// Waits (polling every 10 ms, at most `timeout`) until every actor stopped; returns
    /// whether they did.
    pub async fn wait_stopped(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.all_stopped() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.all_stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liveagent_core::{ModelMessageChunk, ResponseDone, ResponseStatus, UserText};

    fn chunk(text: &str) -> LiveEvent {
        LiveEvent::ModelMessageChunk(ModelMessageChunk::new("item_1", text))
    }

    fn done() -> LiveEvent {
        ResponseDone {
            response_id: "resp_1".into(),
            status: ResponseStatus::Completed,
            reason: None,
            usage: None,
            text: None,
        }
        .into()
    }

    fn book(events: usize, bytes: usize) -> Book {
        Book {
            bounds: HistoryBounds {
                events,
                bytes,
                ..HistoryBounds::default()
            },
            ..Book::default()
        }
    }

    #[test]
    fn history_is_bounded_in_order_and_messages_are_kept_apart() {
        let mut book = book(50, usize::MAX);
        book.record(&LiveEvent::UserText(UserText {
            text: "hello".into(),
            respond: true,
        }));
        for i in 0..1_000 {
            book.record(&chunk(&format!("w{i} ")));
            if i % 100 == 99 {
                book.record(&done());
            }
        }
        book.record(&chunk("unfinished"));
        let history = book.history();
        // 50 chunks and the 11 other events (under the bound of 50), in publish order.
        assert_eq!(history.len(), 61);
        assert!(matches!(&history[0], LiveEvent::UserText(_)));
        assert!(
            matches!(history.last(), Some(LiveEvent::ModelMessageChunk(c)) if &*c.text == "unfinished")
        );
        assert!(matches!(
            &history[history.len() - 2],
            LiveEvent::ResponseDone(_)
        ));
        // The messages do not depend on the history's bound.
        assert_eq!(book.messages.len(), 11);
        assert_eq!(book.messages[0], ("user", "hello".to_owned()));
        assert!(book.messages[1].1.starts_with("w0 w1 "));
        assert!(book.messages[10].1.ends_with("w999 "));
        assert_eq!(book.current, "unfinished");
    }

    #[test]
    fn text_chunks_get_a_quarter_of_the_bytes() {
        let mut small = book(usize::MAX, 16 * 1024);
        for i in 0..1_000 {
            small.record(&chunk(&format!("w{i} ")));
        }
        small.record(&done());
        assert!(small.chunks.bytes <= 4 * 1024);
        assert!(small.chunks.events > 1 && small.chunks.events < 50);
        assert_eq!(small.chunks.recount(), small.chunks.bytes);
        assert_eq!(small.others.events.len(), 1);

        let mut none = book(0, 0);
        none.record(&chunk("a"));
        none.record(&done());
        assert!(none.history().is_empty());
        assert_eq!(none.messages.len(), 1);
    }

    #[test]
    fn messages_are_bounded_by_their_own_bytes() {
        let mut book = Book {
            bounds: HistoryBounds {
                messages: 1_000,
                ..HistoryBounds::default()
            },
            ..Book::default()
        };
        for i in 0..20 {
            book.record(&chunk(&format!("{i:03} {}", "x".repeat(96)))); // 100 bytes
            book.record(&done());
        }
        assert_eq!(book.messages.len(), 10);
        assert_eq!(book.messages_bytes, 1_000);
        assert!(book.messages[0].1.starts_with("010 "));
        assert!(book.messages[9].1.starts_with("019 "));
        // Kept texts hold no spare room.
        assert!(book.messages.iter().all(|(_, t)| t.capacity() == t.len()));
        // A response never done is bounded too, and the newest message is always kept.
        for _ in 0..50 {
            book.record(&chunk(&"y".repeat(100)));
        }
        assert_eq!(book.current.len(), 1_000);
        book.record(&done());
        assert_eq!(book.messages.len(), 1);
        assert_eq!(book.messages_bytes, 1_000);
        assert_eq!(MESSAGES_MAX_BYTES, 128 * 1024);
        assert_eq!(HistoryBounds::default().messages, MESSAGES_MAX_BYTES);
    }
}
