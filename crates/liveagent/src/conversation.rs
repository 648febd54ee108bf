//! [`Conversation`]: one running session of a [`LiveAgent`](crate::LiveAgent).

use std::ops::Deref;
use std::sync::Arc;

use actix::prelude::*;
use actix::WeakAddr;
use liveagent_core::{ConversationContext, EventBus, Shutdown};
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
    ) -> Self {
        Conversation {
            agent,
            context,
            bus: bus.downgrade(),
            session,
            executor: executor.downgrade(),
        }
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
