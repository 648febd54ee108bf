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

/// How many events [`Conversation::history`] keeps (the oldest go first).
pub const HISTORY_LIMIT: usize = 100_000;

#[derive(Default)]
struct Book {
    usage: Usage,
    history: std::collections::VecDeque<LiveEvent>,
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
        if book.history.len() == HISTORY_LIMIT {
            book.history.pop_front();
        }
        book.history.push_back(event);
    }
}

impl ConversationExtras {
    pub(crate) fn attach(context: &ConversationContext, agent_usage: Arc<Mutex<Usage>>) -> Self {
        let book = Arc::new(Mutex::new(Book::default()));
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

    /// Every event of the conversation so far except audio, in order (AG2
    /// `stream.history`), up to the last [`HISTORY_LIMIT`].
    pub fn history(&self) -> Vec<LiveEvent> {
        self.extras
            .book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .history
            .iter()
            .cloned()
            .collect()
    }

    /// What the model said, one string per finished response (its `ModelMessageChunk`s
    /// joined), and what the user said (final transcripts and texts), in order, as
    /// `(role, text)` with role `"user"` or `"assistant"`.
    pub fn messages(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let mut current = String::new();
        for event in self.history() {
            match event {
                LiveEvent::ModelMessageChunk(c) => current.push_str(&c.text),
                LiveEvent::ResponseDone(_) => {
                    if !current.trim().is_empty() {
                        out.push(("assistant", std::mem::take(&mut current)));
                    }
                    current.clear();
                }
                LiveEvent::InputTranscriptChunk(t) if t.is_final => {
                    out.push(("user", t.text.to_string()))
                }
                LiveEvent::UserText(t) => out.push(("user", t.text.to_string())),
                _ => {}
            }
        }
        if !current.trim().is_empty() {
            out.push(("assistant", current));
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
