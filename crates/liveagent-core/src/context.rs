//! [`ConversationContext`]: the handle every peer of a conversation shares.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use actix::prelude::*;
use futures_channel::mpsc;
use futures_core::Stream;

use crate::bus::{EventBus, Publish, Subscribe, SubscriberId, Unsubscribe};
use crate::condition::Condition;
use crate::events::{ControlCommand, Event, HumanMessage, Id, LiveEvent, SessionControl, UserText};
use crate::filter::{EventFilter, EventSet};
use crate::variables::Variables;

/// What `LiveAgent::run()` hands out: publish events into the conversation, subscribe actors
/// to it, and read filtered streams of it. Cheap to clone; every clone talks to the same bus.
///
/// ```
/// use futures_util::StreamExt;
/// use liveagent_core::*;
///
/// # actix::System::new().block_on(async {
/// let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
/// // The Rust form of `stream.where(ModelMessageChunk | InputTranscriptChunk).join()`:
/// let mut events = ctx.stream().union::<(ModelMessageChunk, InputTranscriptChunk)>();
/// ctx.publish(SpeechStarted::default()); // not in the union: skipped
/// ctx.publish(ModelMessageChunk::new("item_1", "Hi"));
/// assert!(matches!(events.next().await, Some(LiveEvent::ModelMessageChunk(_))));
/// # });
/// ```
#[derive(Clone)]
pub struct ConversationContext {
    bus: Addr<EventBus>,
    rates: Arc<(u32, u32)>,
    variables: Variables,
}

impl std::fmt::Debug for ConversationContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationContext")
            .field("input_sample_rate", &self.rates.0)
            .field("output_sample_rate", &self.rates.1)
            .finish()
    }
}

impl ConversationContext {
    /// A context over `bus`, for a session that takes `input_rate` Hz microphone audio and
    /// produces `output_rate` Hz speech.
    pub fn new(bus: Addr<EventBus>, input_rate: u32, output_rate: u32) -> Self {
        ConversationContext {
            bus,
            rates: Arc::new((input_rate, output_rate)),
            variables: Variables::new(),
        }
    }

    /// The same context with `variables` as its variable store.
    pub fn with_variables(mut self, variables: Variables) -> Self {
        self.variables = variables;
        self
    }

    /// The conversation's variables (AG2 `context.variables`): typed values that tools read
    /// and write, shared by every peer, kept across reconnects.
    pub fn variables(&self) -> &Variables {
        &self.variables
    }

    /// Answers the [`HumanInputRequest`](crate::HumanInputRequest) `request_id` (publishes a
    /// [`HumanMessage`]).
    pub fn answer(&self, request_id: impl Into<Id>, text: impl Into<Arc<str>>) {
        self.publish(HumanMessage {
            request_id: request_id.into(),
            text: text.into(),
        });
    }

    /// The bus actor.
    pub fn bus(&self) -> &Addr<EventBus> {
        &self.bus
    }

    /// The sample rate the provider wants for microphone audio (24 kHz OpenAI, 16 kHz Gemini).
    pub fn input_sample_rate(&self) -> u32 {
        self.rates.0
    }

    /// The sample rate of synthesized audio (24 kHz for both providers).
    pub fn output_sample_rate(&self) -> u32 {
        self.rates.1
    }

    /// Publishes an event to every interested peer.
    pub fn publish(&self, event: impl Into<LiveEvent>) {
        self.bus.do_send(Publish(event.into()));
    }

    /// Subscribes an actor to the event type `E`. The subscription ends when the actor
    /// stops, or with [`unsubscribe`](Self::unsubscribe).
    pub fn subscribe<E: Event + Message<Result = ()> + Send>(
        &self,
        recipient: Recipient<E>,
    ) -> SubscriberId {
        self.subscribe_with(Subscribe::recipient(recipient))
    }

    /// Subscribes an actor to every kind in `filter`, delivered as [`LiveEvent`].
    pub fn subscribe_filtered(
        &self,
        filter: EventFilter,
        recipient: Recipient<LiveEvent>,
    ) -> SubscriberId {
        self.subscribe_with(Subscribe::filtered(filter, recipient))
    }

    /// Sends a prepared [`Subscribe`] (to set a log label, say).
    pub fn subscribe_with(&self, subscribe: Subscribe) -> SubscriberId {
        let id = subscribe.id;
        self.bus.do_send(subscribe);
        id
    }

    /// Ends a subscription.
    pub fn unsubscribe(&self, id: SubscriberId) {
        self.bus.do_send(Unsubscribe(id));
    }

    /// Starts building a filtered stream of the conversation's events.
    pub fn stream(&self) -> StreamBuilder {
        StreamBuilder {
            bus: self.bus.clone(),
            capacity: 64,
        }
    }

    /// Adds a user text message to the conversation and asks the model to answer it.
    pub fn send_text(&self, text: impl Into<Arc<str>>) {
        self.publish(UserText {
            text: text.into(),
            respond: true,
        });
    }

    /// Sends a control command (commit input, request or cancel a response...).
    pub fn control(&self, command: ControlCommand) {
        self.publish(SessionControl { command });
    }
}

/// Builds an [`EventStream`]; from [`ConversationContext::stream`].
pub struct StreamBuilder {
    bus: Addr<EventBus>,
    capacity: usize,
}

impl StreamBuilder {
    /// How many events the stream buffers before the bus queues for it (default 64).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// A stream of the events of type `E` only.
    pub fn only<E: Event>(self) -> EventStream<E> {
        self.open(EventFilter::of::<E>())
    }

    /// A stream of the events of any type in the tuple `S`, such as `(A, B)`.
    pub fn union<S: EventSet>(self) -> EventStream<LiveEvent> {
        self.open(S::filter())
    }

    /// A stream of the events whose kind is in `filter`.
    pub fn filter(self, filter: EventFilter) -> EventStream<LiveEvent> {
        self.open(filter)
    }

    /// A stream of every event.
    pub fn all(self) -> EventStream<LiveEvent> {
        self.open(EventFilter::all())
    }

    /// A stream of the events that match `condition` (kinds, field tests, AND / OR / NOT:
    /// AG2's `stream.where(condition)`).
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use liveagent_core::*;
    /// # actix::System::new().block_on(async {
    /// let ctx = ConversationContext::new(EventBus::start_default(), 24_000, 24_000);
    /// let mut spoken = ctx.stream().when(Condition::field::<ModelMessageChunk>("source", "transcript"));
    /// ctx.publish(ModelMessageChunk::new("i", "written"));
    /// ctx.publish(ModelMessageChunk::transcript("i", "spoken"));
    /// let LiveEvent::ModelMessageChunk(c) = spoken.next().await.unwrap() else { panic!() };
    /// assert_eq!(&*c.text, "spoken");
    /// # });
    /// ```
    pub fn when(self, condition: impl Into<Condition>) -> EventStream<LiveEvent> {
        let condition = condition.into();
        let mut stream = self.open(condition.kinds());
        if !condition.is_kinds_only() {
            stream.predicate = Some(condition);
        }
        stream
    }

    fn open<T>(self, filter: EventFilter) -> EventStream<T> {
        // A futures channel holds `buffer` + one slot per sender (the bus has one).
        let (tx, rx) = mpsc::channel(self.capacity - 1);
        let subscribe = Subscribe::stream(filter, tx);
        let id = subscribe.id;
        self.bus.do_send(subscribe);
        EventStream {
            rx,
            bus: self.bus,
            id,
            predicate: None,
            _type: PhantomData,
        }
    }
}

/// Converts a [`LiveEvent`] into a stream item: implemented for every event type and for
/// `LiveEvent` itself.
pub trait FromLiveEvent: Sized {
    /// The item, if `event` is one.
    fn from_live_event(event: LiveEvent) -> Option<Self>;
}

impl<E: Event> FromLiveEvent for E {
    fn from_live_event(event: LiveEvent) -> Option<Self> {
        E::from_event(event)
    }
}

impl FromLiveEvent for LiveEvent {
    fn from_live_event(event: LiveEvent) -> Option<Self> {
        Some(event)
    }
}

/// A `futures::Stream` of the conversation's events. It ends when the conversation's bus
/// stops; dropping it unsubscribes.
pub struct EventStream<T> {
    rx: mpsc::Receiver<LiveEvent>,
    bus: Addr<EventBus>,
    id: SubscriberId,
    predicate: Option<Condition>,
    _type: PhantomData<fn() -> T>,
}

impl<T> EventStream<T> {
    /// The subscription behind this stream.
    pub fn id(&self) -> SubscriberId {
        self.id
    }
}

impl<T: FromLiveEvent> Stream for EventStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<T>> {
        loop {
            match Pin::new(&mut self.rx).poll_next(cx) {
                Poll::Ready(Some(event)) => {
                    if let Some(p) = &self.predicate {
                        if !p.matches(&event) {
                            continue;
                        }
                    }
                    if let Some(item) = T::from_live_event(event) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T> Drop for EventStream<T> {
    fn drop(&mut self) {
        self.bus.do_send(Unsubscribe(self.id));
    }
}
