//! [`LiveAgentSystem`]: runs conversations inside an existing actix system.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use liveagent_core::{ConversationContext, EventFilter, LiveError, LiveEvent};

use crate::agent::{LiveAgent, Observer};
use crate::conversation::{Conversation, ConversationWatch};
use crate::run::RunOptions;

/// Runs [`LiveAgent`] conversations inside your actix system or actix-web app, adds your
/// observer actors to every one of them, and shuts them all down cleanly.
///
/// ```no_run
/// use liveagent::{openai, EventFilter, LiveAgent, LiveAgentSystem, LiveEvent, SessionOpened};
/// use actix::prelude::*;
///
/// struct Monitor;
/// impl Actor for Monitor { type Context = Context<Self>; }
/// impl Handler<LiveEvent> for Monitor {
///     type Result = ();
///     fn handle(&mut self, e: LiveEvent, _: &mut Context<Self>) { println!("{e:?}"); }
/// }
///
/// #[actix::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let system = LiveAgentSystem::new()
///         .observer(EventFilter::of::<SessionOpened>(), |_| Monitor.start().recipient());
///     let agent = LiveAgent::builder("assistant")
///         .config(openai::RealtimeConfig::new("gpt-realtime-2"))
///         .build()?;
///     let conversation = system.run(&agent)?;
///     // ... attach a recorder and a player to conversation.context() ...
///     system.shutdown().await;
///     Ok(())
/// }
/// ```
#[derive(Clone, Default)]
pub struct LiveAgentSystem {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    observers: Vec<Observer>,
    conversations: Vec<(ConversationContext, ConversationWatch, Conversation)>,
    /// Worker arbiters conversations are spread over (empty: the caller's arbiter).
    arbiters: Vec<Arbiter>,
    next: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}

impl LiveAgentSystem {
    /// A system with no conversations. Create it inside a running actix system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs conversations on `n` worker arbiters (threads) of their own instead of the
    /// caller's arbiter, spread round-robin: the k-th conversation [`run`](Self::run) starts
    /// goes to worker `k % n`, and all its actors (bus, session, tools, observers) live there.
    /// Use it when one thread is the limit (hundreds of sessions per process, or a busy
    /// application arbiter); `n = 0` (the default) keeps everything on the caller's arbiter.
    /// The workers stop when the last clone of the system is dropped.
    ///
    /// ```no_run
    /// # #[actix::main] async fn main() {
    /// let system = liveagent::LiveAgentSystem::new().arbiters(2);
    /// # }
    /// ```
    pub fn arbiters(self, n: usize) -> Self {
        {
            let mut inner = self.inner.lock().unwrap();
            for a in inner.arbiters.drain(..) {
                a.stop();
            }
            inner.arbiters = (0..n).map(|_| Arbiter::new()).collect();
        }
        self
    }

    /// Adds an observer to every conversation this system starts from now on: for each,
    /// `factory` makes (or returns) an actor subscribed to the kinds in `filter`.
    pub fn observer<F>(self, filter: EventFilter, factory: F) -> Self
    where
        F: Fn(&ConversationContext) -> Recipient<LiveEvent> + Send + Sync + 'static,
    {
        self.add_observer(filter, factory);
        self
    }

    /// Like [`observer`](Self::observer), through a shared reference.
    pub fn add_observer<F>(&self, filter: EventFilter, factory: F)
    where
        F: Fn(&ConversationContext) -> Recipient<LiveEvent> + Send + Sync + 'static,
    {
        self.inner.lock().unwrap().observers.push(Observer {
            filter,
            factory: Arc::new(factory),
        });
    }

    /// Starts a conversation of `agent` with the system's observers attached. The system
    /// keeps it until [`stop`](Self::stop_conversation) or [`shutdown`](Self::shutdown); the
    /// returned context is the conversation's.
    pub fn run(&self, agent: &LiveAgent) -> Result<ConversationContext, LiveError> {
        self.run_with(agent, RunOptions::new())
    }

    /// [`run`](Self::run) with per-conversation overrides (e.g. a conversation store's
    /// [`RunOptions::resume`]).
    pub fn run_with(
        &self,
        agent: &LiveAgent,
        options: RunOptions,
    ) -> Result<ConversationContext, LiveError> {
        let (observers, arbiter) = {
            let mut inner = self.inner.lock().unwrap();
            let arbiter = if inner.arbiters.is_empty() {
                None
            } else {
                let k = inner.next % inner.arbiters.len();
                inner.next = inner.next.wrapping_add(1);
                Some(inner.arbiters[k].handle())
            };
            (inner.observers.clone(), arbiter)
        };
        let conversation = match arbiter {
            Some(arbiter) => agent.run_on_with_observers(&arbiter, options, &observers)?,
            None => agent.run_with_observers(options, &observers)?,
        };
        let context = conversation.context().clone();
        let watch = conversation.watch();
        self.inner
            .lock()
            .unwrap()
            .conversations
            .push((context.clone(), watch, conversation));
        Ok(context)
    }

    /// Number of conversations running.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().conversations.len()
    }

    /// True when no conversation runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the conversation whose context is `context` (see [`Conversation::stop`]).
    pub async fn stop_conversation(&self, context: &ConversationContext) {
        let found = {
            let mut inner = self.inner.lock().unwrap();
            let pos = inner
                .conversations
                .iter()
                .position(|(c, _, _)| c.bus() == context.bus());
            pos.map(|p| inner.conversations.remove(p))
        };
        if let Some((_, _, conversation)) = found {
            conversation.stop().await;
        }
    }

    /// Stops every conversation and waits (up to 5 s) until all their actors have ended.
    /// Returns true when they all did.
    ///
    /// The conversations are stopped together, not one after another: each closes its
    /// provider connection with a Close handshake that may wait up to
    /// [`SessionOptions::close_timeout`](liveagent_session::SessionOptions::close_timeout)
    /// for an unresponsive provider, and that wait must not add up over the conversations.
    pub async fn shutdown(&self) -> bool {
        let conversations = std::mem::take(&mut self.inner.lock().unwrap().conversations);
        let mut watches = Vec::new();
        let mut stops = Vec::new();
        for (_, watch, conversation) in conversations {
            watches.push(watch);
            stops.push(conversation.stop());
        }
        futures_util::future::join_all(stops).await;
        let mut all = true;
        for watch in watches {
            all &= watch.wait_stopped(std::time::Duration::from_secs(5)).await;
        }
        if !all {
            tracing::warn!("some conversation actors were still running 5 s after shutdown");
        }
        all
    }
}
