//! The event-bus registry actor.
//!
//! One [`EventBus`] per conversation. Peers publish [`LiveEvent`]s to it and subscribe to
//! the kinds they want, as an actor (`Recipient<E>` for one type, `Recipient<LiveEvent>` for a
//! set) or as a stream (see [`ConversationContext::stream`](crate::ConversationContext::stream)).
//!
//! ## Delivery and backpressure
//!
//! An event goes straight into the subscriber's mailbox (or stream channel) when it has room
//! and nothing of that subscriber is waiting in the bus: no future, no allocation beyond
//! the mailbox envelope. Otherwise it waits in the subscriber's own queue in the bus, which
//! has at most one delivery in flight to it. Either way events reach a subscriber in the
//! order they were published, and a slow subscriber delays nobody but itself: the bus never
//! waits on it, and the session never waits on the bus.
//!
//! The queue is bounded, with a policy per [`EventClass`]:
//!
//! - **Audio** ([`RecordedAudio`](crate::RecordedAudio), [`SynthesizedAudio`](crate::SynthesizedAudio)):
//!   when a subscriber has more than [`BusConfig::audio_queue_limit`] audio events waiting in
//!   the bus (beyond what its mailbox holds), the *oldest* waiting audio event is dropped. Audio that is seconds late is worth less
//!   than audio that is current. Drops are counted in [`BusStats::dropped_audio`], logged, and
//!   reported once per lagging episode as an [`AudioDropped`] event.
//! - **Control** (everything else): never dropped. A subscriber that has more than
//!   [`BusConfig::control_queue_limit`] events or [`BusConfig::control_queue_bytes`] bytes
//!   waiting in the bus (beyond what its mailbox holds) and has not taken an event for [`BusConfig::stuck_after`] is considered
//!   stuck: it is unsubscribed and an [`ErrorEvent`] says so. A subscriber that keeps
//!   taking events may fall further behind during a burst (a flood of tool results), up to
//!   8 times either bound. Memory stays bounded either way.
//!
//! A subscriber is removed when its actor stops or its stream is dropped (noticed on the
//! next delivery, by a sweep at the next subscription and every 1024 publishes, or by the
//! periodic sweep).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::mpsc;

use crate::error::{ErrorKind, LiveError};
use crate::events::{AudioDropped, ErrorEvent, Event, EventClass, LiveEvent};
use crate::filter::EventFilter;

/// Identifies one subscription, for [`Unsubscribe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// A fresh, process-unique id.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriberId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Bounds of the per-subscriber queues, by count and by bytes
/// ([`LiveEvent::approx_bytes`]).
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Audio events a subscriber may have waiting before the oldest is dropped
    /// (default 250: five seconds of 20 ms chunks).
    pub audio_queue_limit: usize,
    /// Bytes of audio a subscriber may have waiting before the oldest is dropped
    /// (default 4 MiB: about 87 s of 24 kHz PCM16, whatever the chunk size).
    pub audio_queue_bytes: usize,
    /// Events of any kind a subscriber may have waiting before it is disconnected as stuck,
    /// when it has not taken one for [`stuck_after`](Self::stuck_after) (default 10,000).
    /// A subscriber that keeps taking events is disconnected past 8 times this count.
    pub control_queue_limit: usize,
    /// How long a subscriber over `control_queue_limit` may go without taking an event
    /// before it is disconnected as stuck (default 2 s).
    pub stuck_after: Duration,
    /// Bytes of events of any kind a subscriber may have waiting before it is disconnected
    /// as stuck, when it has not taken one for [`stuck_after`](Self::stuck_after) (default
    /// 32 MiB). A subscriber that keeps taking events is disconnected past 8 times this.
    pub control_queue_bytes: usize,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            audio_queue_limit: 250,
            audio_queue_bytes: 4 * 1024 * 1024,
            control_queue_limit: 10_000,
            stuck_after: Duration::from_secs(2),
            control_queue_bytes: 32 * 1024 * 1024,
        }
    }
}

/// How far past its bounds a subscriber that keeps taking events may fall during a burst.
const BURST_FACTOR: usize = 8;

/// How often the bus sweeps its subscribers (gone ones, stuck ones).
const SWEEP: Duration = Duration::from_millis(500);

impl BusConfig {
    /// Past 8 times a bound: stuck even if it still takes events.
    fn is_over_hard(&self, sub: &Sub) -> bool {
        let waiting = sub.queue.len();
        waiting > self.control_queue_limit.saturating_mul(BURST_FACTOR)
            || (sub.queued_bytes > self.control_queue_bytes.saturating_mul(BURST_FACTOR)
                && waiting > 1)
    }

    /// The stuck rule (see the [module docs](self)), checked by the sweep: over a bound and
    /// no event taken over the last `stuck_after` worth of sweeps. Counting sweeps rather
    /// than reading a clock keeps a bus that was itself busy (a burst of publishes) from
    /// blaming its subscribers.
    fn is_stuck(&self, sub: &Sub) -> bool {
        let waiting = sub.queue.len();
        let over = waiting > self.control_queue_limit
            || (sub.queued_bytes > self.control_queue_bytes && waiting > 1);
        let stalled = SWEEP * sub.stalled_sweeps >= self.stuck_after;
        self.is_over_hard(sub) || (over && stalled)
    }
}

/// Counters, from [`GetStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Events published.
    pub published: u64,
    /// Deliveries completed (one per event per subscriber).
    pub delivered: u64,
    /// Audio events dropped for lagging subscribers.
    pub dropped_audio: u64,
    /// Subscribers disconnected because they were stuck.
    pub disconnected_stuck: u64,
    /// Current subscribers.
    pub subscribers: usize,
}

type Delivery = Pin<Box<dyn Future<Output = Result<(), ()>>>>;

/// The outcome of [`EventSink::try_deliver`].
#[derive(Debug)]
pub enum TryDelivery {
    /// Delivered (or not meant for this subscriber).
    Delivered,
    /// The subscriber is gone.
    Gone,
    /// No room now: the event back, to be queued (boxed: this is the rare path).
    NoRoom(Box<LiveEvent>),
}

/// Where a subscription's events go. Implemented for actor recipients and stream channels.
pub trait EventSink: Send + 'static {
    /// Starts delivering `event`; the future resolves when the subscriber took it, or with
    /// `Err` when the subscriber is gone.
    fn deliver(&self, event: LiveEvent) -> Delivery;
    /// Delivers `event` at once if the subscriber can take it without waiting (room in its
    /// mailbox or channel). On [`TryDelivery::NoRoom`] the bus queues the event and uses
    /// [`deliver`](Self::deliver). The default never delivers at once.
    fn try_deliver(&self, event: LiveEvent) -> TryDelivery {
        TryDelivery::NoRoom(Box::new(event))
    }
    /// True when the subscriber is gone.
    fn is_closed(&self) -> bool;
}

struct TypedSink<E: Event + Message<Result = ()> + Send>(Recipient<E>);

impl<E: Event + Message<Result = ()> + Send> EventSink for TypedSink<E> {
    fn deliver(&self, event: LiveEvent) -> Delivery {
        match E::from_event(event) {
            Some(e) => Box::pin(self.0.send(e).map(|r| r.map_err(|_| ()))),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }
    fn try_deliver(&self, event: LiveEvent) -> TryDelivery {
        let Some(e) = E::from_event(event) else {
            return TryDelivery::Delivered;
        };
        match self.0.try_send(e) {
            Ok(()) => TryDelivery::Delivered,
            Err(SendError::Closed(_)) => TryDelivery::Gone,
            Err(SendError::Full(e)) => TryDelivery::NoRoom(Box::new(e.into_event())),
        }
    }
    fn is_closed(&self) -> bool {
        !self.0.connected()
    }
}

struct AnySink(Recipient<LiveEvent>);

impl EventSink for AnySink {
    fn deliver(&self, event: LiveEvent) -> Delivery {
        Box::pin(self.0.send(event).map(|r| r.map_err(|_| ())))
    }
    fn try_deliver(&self, event: LiveEvent) -> TryDelivery {
        match self.0.try_send(event) {
            Ok(()) => TryDelivery::Delivered,
            Err(SendError::Closed(_)) => TryDelivery::Gone,
            Err(SendError::Full(event)) => TryDelivery::NoRoom(Box::new(event)),
        }
    }
    fn is_closed(&self) -> bool {
        !self.0.connected()
    }
}

struct ChannelSink(mpsc::Sender<LiveEvent>);

impl EventSink for ChannelSink {
    fn deliver(&self, event: LiveEvent) -> Delivery {
        match self.0.try_send(event) {
            Ok(()) => Box::pin(std::future::ready(Ok(()))),
            Err(mpsc::error::TrySendError::Closed(_)) => Box::pin(std::future::ready(Err(()))),
            Err(mpsc::error::TrySendError::Full(event)) => {
                let tx = self.0.clone();
                Box::pin(async move { tx.send(event).await.map_err(|_| ()) })
            }
        }
    }
    fn try_deliver(&self, event: LiveEvent) -> TryDelivery {
        match self.0.try_send(event) {
            Ok(()) => TryDelivery::Delivered,
            Err(mpsc::error::TrySendError::Closed(_)) => TryDelivery::Gone,
            Err(mpsc::error::TrySendError::Full(event)) => TryDelivery::NoRoom(Box::new(event)),
        }
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The sink of a [`ConversationContext::stream`](crate::ConversationContext::stream).
///
/// A `futures` channel rather than tokio's: tokio's bounded channel allocates its slots 32
/// at a time (two blocks of 32 `LiveEvent`s, ~5.7 KiB, for any stream that ever wrapped
/// around), while this one allocates a node per queued event and frees it when the
/// stream takes it, so an idle stream holds no slots at all (docs/performance.md, memory
/// by owner). The bus calls sinks from its own actor only, hence the `RefCell` (the
/// channel's `try_send` wants `&mut`).
pub(crate) struct StreamSink(std::cell::RefCell<futures_channel::mpsc::Sender<LiveEvent>>);

impl StreamSink {
    pub(crate) fn new(tx: futures_channel::mpsc::Sender<LiveEvent>) -> Self {
        StreamSink(std::cell::RefCell::new(tx))
    }
}

impl EventSink for StreamSink {
    fn deliver(&self, event: LiveEvent) -> Delivery {
        let mut tx = self.0.borrow_mut();
        match tx.try_send(event) {
            Ok(()) => Box::pin(std::future::ready(Ok(()))),
            Err(e) if e.is_disconnected() => Box::pin(std::future::ready(Err(()))),
            Err(e) => {
                let mut tx = tx.clone();
                let event = e.into_inner();
                Box::pin(async move {
                    use futures_util::SinkExt;
                    tx.send(event).await.map_err(|_| ())
                })
            }
        }
    }
    fn try_deliver(&self, event: LiveEvent) -> TryDelivery {
        match self.0.borrow_mut().try_send(event) {
            Ok(()) => TryDelivery::Delivered,
            Err(e) if e.is_disconnected() => TryDelivery::Gone,
            Err(e) => TryDelivery::NoRoom(Box::new(e.into_inner())),
        }
    }
    fn is_closed(&self) -> bool {
        self.0.borrow().is_closed()
    }
}

/// Subscribe a sink to a set of event kinds. Build it with [`Subscribe::recipient`],
/// [`Subscribe::filtered`] or [`Subscribe::channel`].
pub struct Subscribe {
    /// The id to use (pick it with [`SubscriberId::next`]; subscribing is fire-and-forget).
    pub id: SubscriberId,
    /// The kinds to deliver.
    pub filter: EventFilter,
    /// Where to deliver them.
    pub sink: Box<dyn EventSink>,
    /// A name for logs.
    pub label: String,
}

impl Message for Subscribe {
    type Result = ();
}

impl Subscribe {
    /// Subscribes an actor to the one event type `E`.
    pub fn recipient<E: Event + Message<Result = ()> + Send>(recipient: Recipient<E>) -> Self {
        Subscribe {
            id: SubscriberId::next(),
            filter: EventFilter::of::<E>(),
            sink: Box::new(TypedSink(recipient)),
            label: std::any::type_name::<E>()
                .rsplit("::")
                .next()
                .unwrap_or("?")
                .to_owned(),
        }
    }

    /// Subscribes an actor to every kind in `filter`, delivered as [`LiveEvent`].
    pub fn filtered(filter: EventFilter, recipient: Recipient<LiveEvent>) -> Self {
        Subscribe {
            id: SubscriberId::next(),
            filter,
            sink: Box::new(AnySink(recipient)),
            label: "actor".into(),
        }
    }

    /// Subscribes a channel to every kind in `filter`.
    pub fn channel(filter: EventFilter, tx: mpsc::Sender<LiveEvent>) -> Self {
        Subscribe {
            id: SubscriberId::next(),
            filter,
            sink: Box::new(ChannelSink(tx)),
            label: "stream".into(),
        }
    }

    /// Subscribes a stream's channel (what [`ConversationContext::stream`](crate::ConversationContext::stream) uses).
    pub(crate) fn stream(
        filter: EventFilter,
        tx: futures_channel::mpsc::Sender<LiveEvent>,
    ) -> Self {
        Subscribe {
            id: SubscriberId::next(),
            filter,
            sink: Box::new(StreamSink::new(tx)),
            label: "stream".into(),
        }
    }

    /// Sets the name used in logs.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }
}

/// Ends a subscription.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub SubscriberId);

/// Publishes an event to every subscriber whose filter matches.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish(pub LiveEvent);

/// Asks for the bus counters.
#[derive(Message)]
#[rtype(result = "BusStats")]
pub struct GetStats;

/// Stops the bus: events already published are still delivered (for up to one second), then
/// every subscription ends and every stream finishes.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

struct Sub {
    id: SubscriberId,
    filter: EventFilter,
    sink: Box<dyn EventSink>,
    label: String,
    /// Events waiting, each with its size.
    queue: VecDeque<(LiveEvent, usize)>,
    queued_audio: usize,
    queued_audio_bytes: usize,
    queued_bytes: usize,
    busy: bool,
    /// Deliveries completed.
    taken: u64,
    /// `taken` at the last sweep that saw progress.
    taken_at_sweep: u64,
    /// Sweeps in a row that found events waiting and none taken.
    stalled_sweeps: u32,
    lagging: bool,
}

/// The event-bus registry actor. See the [module docs](self) for the delivery policy.
///
/// ```
/// use actix::prelude::*;
/// use liveagent_core::{EventBus, Publish, Subscribe, SpeechStarted};
///
/// struct Printer;
/// impl Actor for Printer { type Context = Context<Self>; }
/// impl Handler<SpeechStarted> for Printer {
///     type Result = ();
///     fn handle(&mut self, ev: SpeechStarted, _: &mut Context<Self>) { println!("{ev:?}"); }
/// }
///
/// # actix::System::new().block_on(async {
/// let bus = EventBus::start_default();
/// bus.do_send(Subscribe::recipient(Printer.start().recipient::<SpeechStarted>()));
/// bus.do_send(Publish(SpeechStarted::default().into()));
/// # });
/// ```
pub struct EventBus {
    config: BusConfig,
    subs: Vec<Sub>,
    stats: BusStats,
    closing: bool,
    /// Publishes since the last sweep of closed subscribers.
    since_sweep: u32,
}

impl EventBus {
    /// A bus with `config`; start it with [`Actor::start`].
    pub fn new(config: BusConfig) -> Self {
        EventBus {
            config,
            subs: Vec::new(),
            stats: BusStats::default(),
            closing: false,
            since_sweep: 0,
        }
    }

    /// Drops subscribers whose actor stopped or whose stream was dropped.
    fn sweep(&mut self) {
        self.since_sweep = 0;
        self.subs.retain(|s| s.busy || !s.sink.is_closed());
    }

    /// Starts a bus with the default bounds on the current arbiter.
    pub fn start_default() -> Addr<EventBus> {
        EventBus::new(BusConfig::default()).start()
    }

    fn position(&self, id: SubscriberId) -> Option<usize> {
        self.subs.iter().position(|s| s.id == id)
    }

    fn pump(&mut self, idx: usize, ctx: &mut Context<Self>) {
        let sub = &mut self.subs[idx];
        if sub.busy {
            return;
        }
        let Some((event, size)) = sub.queue.pop_front() else {
            sub.lagging = false;
            return;
        };
        sub.queued_bytes -= size;
        if event.kind().class() == EventClass::Audio {
            sub.queued_audio -= 1;
            sub.queued_audio_bytes -= size;
        }
        sub.busy = true;
        let id = sub.id;
        let delivery = sub.sink.deliver(event);
        ctx.spawn(
            delivery
                .into_actor(self)
                .map(move |res, bus, ctx| bus.delivered(id, res, ctx)),
        );
    }

    fn delivered(&mut self, id: SubscriberId, res: Result<(), ()>, ctx: &mut Context<Self>) {
        let Some(idx) = self.position(id) else { return };
        if res.is_err() {
            tracing::debug!(subscriber = %self.subs[idx].label, "subscriber gone, unsubscribing");
            self.subs.swap_remove(idx);
            return;
        }
        self.stats.delivered += 1;
        self.subs[idx].busy = false;
        self.subs[idx].taken += 1;
        self.pump(idx, ctx);
        if self.closing && self.subs.iter().all(|s| !s.busy && s.queue.is_empty()) {
            self.subs.clear();
            ctx.stop();
        }
    }

    fn publish_local(&mut self, event: LiveEvent, ctx: &mut Context<Self>) {
        self.stats.published += 1;
        self.since_sweep += 1;
        if self.since_sweep >= 1024 {
            self.sweep();
        }
        let class = event.kind().class();
        // Measured only when a subscriber has to queue it (most events go straight into
        // a mailbox): sizing a non-audio event walks its JSON form, which for a flood of
        // tool results or text chunks would cost more than delivering them.
        let mut size: Option<usize> = None;
        let mut notices: Vec<LiveEvent> = Vec::new();
        let mut stuck: Vec<SubscriberId> = Vec::new();
        let mut gone: Vec<SubscriberId> = Vec::new();
        for idx in 0..self.subs.len() {
            let sub = &mut self.subs[idx];
            if !sub.filter.matches(&event) {
                continue;
            }
            let mut copy = event.clone();
            if !sub.busy && sub.queue.is_empty() {
                // Nothing of this subscriber waits here: straight into its mailbox if it
                // has room (order kept: its earlier events are already there).
                match sub.sink.try_deliver(copy) {
                    TryDelivery::Delivered => {
                        self.stats.delivered += 1;
                        sub.taken += 1;
                        sub.lagging = false;
                        continue;
                    }
                    TryDelivery::Gone => {
                        gone.push(sub.id);
                        continue;
                    }
                    TryDelivery::NoRoom(back) => copy = *back,
                }
            }
            let size = *size.get_or_insert_with(|| event.approx_bytes());
            sub.queue.push_back((copy, size));
            sub.queued_bytes += size;
            if class == EventClass::Audio {
                sub.queued_audio += 1;
                sub.queued_audio_bytes += size;
                let mut dropped_ms = 0;
                let mut dropped_any = false;
                // The newest audio event always stays (one chunk larger than the byte bound
                // is still delivered).
                while sub.queued_audio > 1
                    && (sub.queued_audio > self.config.audio_queue_limit
                        || sub.queued_audio_bytes > self.config.audio_queue_bytes)
                {
                    let Some(pos) = sub
                        .queue
                        .iter()
                        .position(|(e, _)| e.kind().class() == EventClass::Audio)
                    else {
                        break;
                    };
                    let Some((dropped, dsize)) = sub.queue.remove(pos) else {
                        break;
                    };
                    sub.queued_audio -= 1;
                    sub.queued_audio_bytes -= dsize;
                    sub.queued_bytes -= dsize;
                    self.stats.dropped_audio += 1;
                    dropped_any = true;
                    dropped_ms += match dropped {
                        LiveEvent::RecordedAudio(a) => a.audio.duration_ms(),
                        LiveEvent::SynthesizedAudio(a) => a.audio.duration_ms(),
                        _ => 0,
                    };
                }
                if dropped_any && !sub.lagging {
                    sub.lagging = true;
                    tracing::warn!(subscriber = %sub.label, limit = self.config.audio_queue_limit,
                        bytes = self.config.audio_queue_bytes,
                        "subscriber lags behind the audio stream; dropping its oldest audio");
                    notices.push(
                        AudioDropped {
                            source: "bus".into(),
                            dropped_ms,
                            reason: format!(
                                "subscriber '{}' lags behind the audio stream",
                                sub.label
                            ),
                        }
                        .into(),
                    );
                }
            }
            if self.config.is_over_hard(sub) {
                stuck.push(sub.id);
                continue;
            }
            self.pump(idx, ctx);
        }
        for id in gone {
            if let Some(idx) = self.position(id) {
                let sub = self.subs.swap_remove(idx);
                tracing::debug!(subscriber = %sub.label, "subscriber gone, unsubscribing");
            }
        }
        self.unsubscribe_stuck(stuck, &mut notices);
        for notice in notices {
            self.publish_local(notice, ctx);
        }
    }

    /// Unsubscribes the `stuck` subscribers, each with an `ErrorEvent` in `notices`.
    fn unsubscribe_stuck(&mut self, stuck: Vec<SubscriberId>, notices: &mut Vec<LiveEvent>) {
        for id in stuck {
            if let Some(idx) = self.position(id) {
                let sub = self.subs.swap_remove(idx);
                self.stats.disconnected_stuck += 1;
                tracing::error!(subscriber = %sub.label, "subscriber stuck; unsubscribed");
                notices.push(
                    ErrorEvent::new(
                        "bus",
                        LiveError::new(
                            ErrorKind::Internal,
                            format!(
                                "subscriber '{}' had {} events ({} bytes) waiting, past the bound of {} events or {} bytes, and was unsubscribed",
                                sub.label,
                                sub.queue.len(),
                                sub.queued_bytes,
                                self.config.control_queue_limit,
                                self.config.control_queue_bytes
                            ),
                        ),
                    )
                    .into(),
                );
            }
        }
    }
}

impl Actor for EventBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        spawn_sweeper(ctx.address().downgrade());
    }
}

/// The periodic sweep's clock, sent by [`spawn_sweeper`].
#[derive(Message)]
#[rtype(result = "()")]
struct Sweep;

/// Sends the bus at `addr` a [`Sweep`] every [`SWEEP`] until it has stopped.
///
/// A task of its own rather than `ctx.run_interval`: an actor polls every future spawned on
/// its context each time it wakes, so an interval there meant a timer poll for every
/// publish (every microphone and provider frame), not one per period.
fn spawn_sweeper(addr: actix::WeakAddr<EventBus>) {
    actix::spawn(async move {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP, SWEEP);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match addr.upgrade() {
                Some(addr) if addr.connected() => addr.do_send(Sweep),
                _ => break,
            }
        }
    });
}

impl Handler<Sweep> for EventBus {
    type Result = ();
    fn handle(&mut self, _: Sweep, ctx: &mut Context<Self>) {
        self.subs.retain(|s| s.busy || !s.sink.is_closed());
        for s in self.subs.iter_mut() {
            if s.queue.is_empty() || s.taken != s.taken_at_sweep {
                s.taken_at_sweep = s.taken;
                s.stalled_sweeps = 0;
            } else {
                s.stalled_sweeps += 1;
            }
        }
        // A subscriber over the count bound that stopped taking events is stuck even
        // when nothing new is published.
        let stuck: Vec<SubscriberId> = self
            .subs
            .iter()
            .filter(|s| self.config.is_stuck(s))
            .map(|s| s.id)
            .collect();
        if !stuck.is_empty() {
            let mut notices = Vec::new();
            self.unsubscribe_stuck(stuck, &mut notices);
            for notice in notices {
                self.publish_local(notice, ctx);
            }
        }
    }
}

impl Handler<Subscribe> for EventBus {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        tracing::trace!(subscriber = %msg.label, "subscribe");
        self.sweep();
        self.subs.push(Sub {
            id: msg.id,
            filter: msg.filter,
            sink: msg.sink,
            label: msg.label,
            queue: VecDeque::new(),
            queued_audio: 0,
            queued_audio_bytes: 0,
            queued_bytes: 0,
            busy: false,
            taken: 0,
            taken_at_sweep: 0,
            stalled_sweeps: 0,
            lagging: false,
        });
    }
}

impl Handler<Unsubscribe> for EventBus {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        if let Some(idx) = self.position(msg.0) {
            self.subs.swap_remove(idx);
        }
    }
}

impl Handler<Publish> for EventBus {
    type Result = ();
    fn handle(&mut self, msg: Publish, ctx: &mut Context<Self>) {
        if let LiveEvent::RecordedAudio(a) = &msg.0 {
            if crate::probe::MicProbe::enabled() {
                let key = crate::probe::MicProbe::key(&a.audio.samples);
                crate::probe::MicProbe::mark(key, crate::probe::MicStage::Bus);
            }
        }
        self.publish_local(msg.0, ctx);
    }
}

impl Handler<GetStats> for EventBus {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats.clone();
        stats.subscribers = self.subs.len();
        MessageResult(stats)
    }
}

impl Handler<Shutdown> for EventBus {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) {
        self.closing = true;
        if self.subs.iter().all(|s| !s.busy && s.queue.is_empty()) {
            self.subs.clear();
            ctx.stop();
            return;
        }
        ctx.run_later(Duration::from_secs(1), |bus, ctx| {
            tracing::debug!("bus shutdown: dropping deliveries still queued after 1 s");
            bus.subs.clear();
            ctx.stop();
        });
    }
}
