//! Observers without actor boilerplate: the [`Observer`] trait, closure observers
//! ([`FnObserver`]), the runner actor ([`start_observer`]) and the built-in [`LoopDetector`]
//! and [`TokenMonitor`] (AG2's `observers`).
//!
//! An observer names itself, says which events it wants with a [`Condition`], and handles
//! them one at a time, in publication order (the runner waits for each handler's future
//! before the next event). A panicking handler is reported as an [`ErrorEvent`] and the
//! observer goes on. The conversation announces each observer with [`ObserverStarted`]
//! and, when it stops, [`ObserverCompleted`](crate::ObserverCompleted).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;

use crate::condition::Condition;
use crate::context::ConversationContext;
use crate::error::LiveError;
use crate::events::{
    ErrorEvent, LiveEvent, ObserverAlert, ObserverStarted, ResponseDone, Severity,
    ToolCallRequested,
};

/// Watches a conversation's events. Instances are shared by every conversation of an agent
/// (as in AG2); keep per-conversation state keyed by nothing, or call `reset`.
pub trait Observer: Send + Sync + 'static {
    /// Its name, for [`ObserverStarted`] / [`ObserverCompleted`](crate::ObserverCompleted) and logs.
    fn name(&self) -> &str;

    /// Which events it wants.
    fn condition(&self) -> Condition;

    /// Handles one matching event; the next waits until the returned future is done.
    fn on_event(
        &self,
        event: LiveEvent,
        context: &ConversationContext,
    ) -> LocalBoxFuture<'static, ()>;
}

type AsyncHandler =
    dyn Fn(LiveEvent, ConversationContext) -> LocalBoxFuture<'static, ()> + Send + Sync;

/// An observer made of a closure, sync or async.
///
/// ```
/// use liveagent_core::{Condition, FnObserver, ModelMessageChunk, LiveEvent};
///
/// // async: any `Fn(LiveEvent, ConversationContext) -> impl Future`
/// let printer = FnObserver::new("printer", Condition::of::<ModelMessageChunk>(), |event, _ctx| async move {
///     if let LiveEvent::ModelMessageChunk(c) = event { print!("{}", c.text); }
/// });
/// // sync
/// let counter = FnObserver::sync("counter", Condition::any(), |_event, _ctx| {});
/// # let _ = (printer, counter);
/// ```
#[derive(Clone)]
pub struct FnObserver {
    name: Arc<str>,
    condition: Condition,
    handler: Arc<AsyncHandler>,
}

impl std::fmt::Debug for FnObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnObserver")
            .field("name", &self.name)
            .field("condition", &self.condition)
            .finish()
    }
}

impl FnObserver {
    /// An observer calling the async closure `f` for each event matching `condition`.
    pub fn new<F, Fut>(name: impl Into<Arc<str>>, condition: impl Into<Condition>, f: F) -> Self
    where
        F: Fn(LiveEvent, ConversationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        FnObserver {
            name: name.into(),
            condition: condition.into(),
            handler: Arc::new(move |e, c| Box::pin(f(e, c))),
        }
    }

    /// An observer calling the sync closure `f` for each event matching `condition`.
    pub fn sync<F>(name: impl Into<Arc<str>>, condition: impl Into<Condition>, f: F) -> Self
    where
        F: Fn(&LiveEvent, &ConversationContext) + Send + Sync + 'static,
    {
        FnObserver {
            name: name.into(),
            condition: condition.into(),
            handler: Arc::new(move |e, c| {
                f(&e, &c);
                Box::pin(futures_util::future::ready(()))
            }),
        }
    }
}

impl Observer for FnObserver {
    fn name(&self) -> &str {
        &self.name
    }
    fn condition(&self) -> Condition {
        self.condition.clone()
    }
    fn on_event(
        &self,
        event: LiveEvent,
        context: &ConversationContext,
    ) -> LocalBoxFuture<'static, ()> {
        (self.handler)(event, context.clone())
    }
}

/// The actor that runs one [`Observer`] on one conversation.
pub struct ObserverActor {
    observer: Arc<dyn Observer>,
    condition: Condition,
    context: ConversationContext,
}

impl Actor for ObserverActor {
    type Context = Context<Self>;
}

impl Handler<LiveEvent> for ObserverActor {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, ctx: &mut Context<Self>) {
        if !self.condition.matches(&event) {
            return;
        }
        let fut = AssertUnwindSafe(self.observer.on_event(event, &self.context)).catch_unwind();
        let name: Arc<str> = self.observer.name().into();
        let context = self.context.clone();
        ctx.wait(fut.into_actor(self).map(move |res, _, _| {
            if let Err(panic) = res {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".to_owned());
                tracing::error!(observer = %name, %msg, "observer panicked");
                context.publish(ErrorEvent::new(
                    format!("observer:{name}"),
                    LiveError::new(
                        crate::error::ErrorKind::Internal,
                        format!("observer `{name}` panicked: {msg}"),
                    ),
                ));
            }
        }));
    }
}

/// Starts `observer` on `context` (subscribed before this returns) and publishes
/// [`ObserverStarted`].
pub fn start_observer(
    observer: Arc<dyn Observer>,
    context: &ConversationContext,
) -> Addr<ObserverActor> {
    let condition = observer.condition();
    let name: Arc<str> = observer.name().into();
    let ctx2 = context.clone();
    let kinds = condition.kinds();
    let addr = ObserverActor::create(move |_| ObserverActor {
        observer,
        condition,
        context: ctx2,
    });
    context.subscribe_filtered(kinds, addr.clone().recipient());
    context.publish(ObserverStarted { name });
    addr
}

/// A call as the loop detector compares it: (tool name, arguments as JSON text).
type CallKey = (String, String);

/// The recent calls, and the calls already reported.
type LoopState = (VecDeque<CallKey>, HashSet<CallKey>);

/// Detects a tool called over and over with the same arguments (AG2 `LoopDetector`): when
/// the last `repeat_threshold` calls (of a window of `window_size`) are identical, it
/// publishes a [`Severity::Warning`] [`ObserverAlert`], once per distinct call.
#[derive(Clone, Debug)]
pub struct LoopDetector {
    name: Arc<str>,
    window_size: usize,
    repeat_threshold: usize,
    state: Arc<Mutex<LoopState>>,
}

impl Default for LoopDetector {
    fn default() -> Self {
        LoopDetector::new(10, 3)
    }
}

impl LoopDetector {
    /// A detector keeping `window_size` calls, alerting at `repeat_threshold` identical
    /// consecutive calls (AG2 defaults: 10 and 3).
    pub fn new(window_size: usize, repeat_threshold: usize) -> Self {
        LoopDetector {
            name: "loop-detector".into(),
            window_size: window_size.max(1),
            repeat_threshold: repeat_threshold.clamp(1, window_size.max(1)),
            state: Arc::default(),
        }
    }

    /// Renames it.
    pub fn named(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Forgets the calls seen (for a fresh conversation).
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0.clear();
        s.1.clear();
    }
}

impl Observer for LoopDetector {
    fn name(&self) -> &str {
        &self.name
    }
    fn condition(&self) -> Condition {
        Condition::of::<ToolCallRequested>()
    }
    fn on_event(
        &self,
        event: LiveEvent,
        context: &ConversationContext,
    ) -> LocalBoxFuture<'static, ()> {
        if let LiveEvent::ToolCallRequested(req) = event {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for call in req.calls {
                let key = (call.name.to_string(), call.arguments.to_string());
                if s.0.len() == self.window_size {
                    s.0.pop_front();
                }
                s.0.push_back(key.clone());
                let n = s.0.len();
                if n < self.repeat_threshold {
                    continue;
                }
                let repeated =
                    s.0.iter()
                        .skip(n - self.repeat_threshold)
                        .all(|k| *k == key);
                if repeated && s.1.insert(key) {
                    context.publish(ObserverAlert {
                        source: self.name.clone(),
                        severity: Severity::Warning,
                        message: format!(
                            "Potential loop detected: tool '{}' called {} times consecutively with identical arguments. Consider a different approach.",
                            call.name, self.repeat_threshold
                        ),
                    });
                }
            }
        }
        Box::pin(futures_util::future::ready(()))
    }
}

/// Adds up the tokens of every response ([`ResponseDone::usage`]) and alerts once at
/// `warn_threshold` ([`Severity::Warning`]) and once at `alert_threshold`
/// ([`Severity::Critical`]) (AG2 `TokenMonitor`; defaults 50,000 and 100,000).
#[derive(Clone, Debug)]
pub struct TokenMonitor {
    name: Arc<str>,
    warn_threshold: u64,
    alert_threshold: u64,
    state: Arc<Mutex<(u64, bool, bool)>>,
}

impl Default for TokenMonitor {
    fn default() -> Self {
        TokenMonitor::new(50_000, 100_000)
    }
}

impl TokenMonitor {
    /// A monitor with these thresholds (total tokens).
    pub fn new(warn_threshold: u64, alert_threshold: u64) -> Self {
        TokenMonitor {
            name: "token-monitor".into(),
            warn_threshold,
            alert_threshold,
            state: Arc::default(),
        }
    }

    /// Renames it.
    pub fn named(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The tokens counted so far.
    pub fn total_tokens(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Starts counting from zero again.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (0, false, false);
    }
}

impl Observer for TokenMonitor {
    fn name(&self) -> &str {
        &self.name
    }
    fn condition(&self) -> Condition {
        Condition::of::<ResponseDone>()
    }
    fn on_event(
        &self,
        event: LiveEvent,
        context: &ConversationContext,
    ) -> LocalBoxFuture<'static, ()> {
        if let LiveEvent::ResponseDone(done) = event {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.0 += done.usage.map(|u| u.total_tokens).unwrap_or(0);
            let total = s.0;
            if !s.2 && total >= self.alert_threshold {
                s.2 = true;
                s.1 = true;
                context.publish(ObserverAlert {
                    source: self.name.clone(),
                    severity: Severity::Critical,
                    message: format!(
                        "Token usage critical: {total} tokens (threshold: {}). Consider wrapping up to control costs.",
                        self.alert_threshold
                    ),
                });
            } else if !s.1 && total >= self.warn_threshold {
                s.1 = true;
                context.publish(ObserverAlert {
                    source: self.name.clone(),
                    severity: Severity::Warning,
                    message: format!(
                        "Token usage warning: {total} tokens (threshold: {}). Be mindful of remaining budget.",
                        self.warn_threshold
                    ),
                });
            }
        }
        Box::pin(futures_util::future::ready(()))
    }
}
