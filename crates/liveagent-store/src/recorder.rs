//! [`StoreRecorder`]: the bus observer that writes a running conversation to a
//! [`ConversationStore`], one small batch of [`StoreOp`]s per event.
//!
//! It never slows the conversation: events only update a local mirror and queue changes;
//! one write at a time goes to the store in the background, in order. When the store fails
//! (Redis down), the conversation goes on; the recorder publishes one warning
//! ([`ErrorEvent`] from source `store`, not fatal) per outage, keeps the queued changes
//! (bounded by the history limit, through the mirror), retries with backoff, and once the
//! store answers again writes what it missed: the queued batch, or, when the store lost the
//! conversation (a Redis restart without persistence, or expiry), the whole mirror.
//!
//! Which events become which changes:
//!
//! | event | change |
//! |---|---|
//! | `InputTranscriptChunk` (final), `UserText` | `Append(User)` |
//! | `OutputTranscriptChunk` (final), or `ModelMessageChunk`s up to `ResponseDone` | `Append(Assistant)` with the audio ms counted from `SynthesizedAudio` |
//! | `PlaybackStopped` (interrupted) | `AssistantHeard` (or the heard ms folded into the pending `Assistant`) |
//! | `ToolCallRequested` | `ToolStarted` per call (skipped if already known) |
//! | `ToolResult` | `ToolFinished` (skipped if that call was already answered: never twice) |
//! | `ToolCallCancelled` | `ToolCancelled` |
//!
//! | `ResumptionHandleUpdated` | `SetResumptionHandle` (Gemini's latest handle, every update) |
//!
//! Application-level state (variables, the resume token) is written with [`RecordOps`].
//!
//! # The lease
//!
//! A recorder owns its conversation through the store's lease (see
//! [`ConversationStore`]'s "Leases"): it takes it before its first write (a new
//! conversation with `NX` semantics; a resumed one, `already_stored`, by takeover), renews
//! it every third of [`RecorderOptions::lease_ttl`], and writes only with the leased
//! operations, whose lease check and write are one atomic step. When it finds the lease
//! held by another instance (a client resumed the conversation there while this one was
//! paused or cut off), it drops what it had queued, never writes again, publishes a fatal
//! [`ErrorEvent`] (source `store`) and calls the hook given to
//! [`StoreRecorder::start_with_hook`] (the `liveagent` crate's wiring stops the
//! conversation there, so the transport closes its side). While the store is unreachable
//! the lease cannot be checked either: the conversation goes on, as above.
//!
//! A user's transcript can arrive after the model already answered (OpenAI transcribes in
//! the background). So that the history keeps the spoken order, assistant turns that follow
//! a user turn whose transcript is still missing wait for it (at most
//! [`RecorderOptions::transcript_wait`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use liveagent_core::{
    ConversationContext, ErrorEvent, ErrorKind, EventFilter, EventKind, LiveError, LiveEvent,
    SubscriberId,
};

use crate::error::{SaveError, UpdateError};
use crate::state::{ConversationState, HistoryRecord, StoreOp, ToolCallRecord};
use crate::store::ConversationStore;

/// How a [`StoreRecorder`] writes.
#[derive(Clone, Debug)]
pub struct RecorderOptions {
    /// The conversation's idle time-to-live in the store (default 30 minutes): refreshed by
    /// every write and by a periodic touch while this recorder runs, so it only runs out
    /// once no instance holds the conversation.
    pub ttl: Duration,
    /// First retry delay after a failed write (default 200 ms); doubles up to `retry_max`.
    pub retry_min: Duration,
    /// Longest retry delay (default 5 s).
    pub retry_max: Duration,
    /// How long an assistant turn waits for the transcript of the user turn before it
    /// (default 3 s).
    pub transcript_wait: Duration,
    /// History records kept in the mirror (default
    /// [`DEFAULT_HISTORY_LIMIT`](crate::DEFAULT_HISTORY_LIMIT)); 0 keeps all.
    pub history_limit: usize,
    /// Delete the stored state when the session closes for good (default false: it
    /// expires after `ttl`, so a client can still resume it).
    pub delete_on_close: bool,
    /// How long the conversation's lease lasts without renewal (default 15 s; renewed
    /// every third of it). An instance that stops (killed, paused) holds the conversation
    /// at most this long unless a client resumes it elsewhere, which takes the lease over
    /// at once.
    pub lease_ttl: Duration,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            ttl: Duration::from_secs(30 * 60),
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            transcript_wait: Duration::from_secs(3),
            history_limit: crate::DEFAULT_HISTORY_LIMIT,
            delete_on_close: false,
            lease_ttl: Duration::from_secs(15),
        }
    }
}

/// Queue changes written by the application (variables, resume token, resumption handle).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordOps(pub Vec<StoreOp>);

/// Asks a recorder how far it got.
#[derive(Message)]
#[rtype(result = "RecorderStatus")]
pub struct GetRecorderStatus;

/// What a recorder has done so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecorderStatus {
    /// Changes queued and not yet written.
    pub pending: usize,
    /// True while the store is failing.
    pub degraded: bool,
    /// Batches written.
    pub batches_written: u64,
    /// Whole-state writes (the first one, and after the store lost the conversation).
    pub saves: u64,
    /// Failed writes.
    pub failures: u64,
    /// True once another instance took the conversation's lease: the recorder stopped.
    pub lease_lost: bool,
}

#[derive(Default)]
struct AssistantAcc {
    text: String,
    audio_ms_x1000: u64,
    heard_ms: Option<u64>,
}

/// Called once when the recorder finds its lease taken by another instance.
pub type LeaseLostHook = Box<dyn FnOnce() + Send>;

/// Writes one conversation to a store. Start with [`StoreRecorder::start`].
pub struct StoreRecorder {
    owner: String,
    takeover: bool,
    leased: bool,
    lost: bool,
    on_lease_lost: Option<LeaseLostHook>,
    store: Arc<dyn ConversationStore>,
    context: ConversationContext,
    options: RecorderOptions,
    mirror: ConversationState,
    queue: VecDeque<(u64, StoreOp)>,
    needs_save: bool,
    writing: bool,
    retry_delay: Duration,
    degraded: bool,
    status: RecorderStatus,
    assistant: HashMap<String, AssistantAcc>,
    written_items: HashSet<String>,
    awaiting_user: Option<actix::SpawnHandle>,
    held: Vec<StoreOp>,
    seq: u64,
    subscription: Option<SubscriberId>,
    closing: bool,
}

impl StoreRecorder {
    /// Starts recording `context` into `store`. `state` is the conversation as it starts:
    /// a new one (written whole first), or one loaded from the store to be resumed
    /// (`already_stored`: only changes are written).
    pub fn start(
        context: ConversationContext,
        store: Arc<dyn ConversationStore>,
        state: ConversationState,
        already_stored: bool,
        options: RecorderOptions,
    ) -> Addr<StoreRecorder> {
        Self::start_with_hook(context, store, state, already_stored, options, None)
    }

    /// [`start`](Self::start), calling `on_lease_lost` once if another instance takes the
    /// conversation's lease over (see "The lease" above).
    pub fn start_with_hook(
        context: ConversationContext,
        store: Arc<dyn ConversationStore>,
        state: ConversationState,
        already_stored: bool,
        options: RecorderOptions,
        on_lease_lost: Option<LeaseLostHook>,
    ) -> Addr<StoreRecorder> {
        let seq = state
            .tools_in_flight
            .values()
            .map(|c| c.seq)
            .max()
            .unwrap_or(0);
        let recorder = StoreRecorder {
            owner: lease_owner_id(),
            takeover: already_stored,
            leased: false,
            lost: false,
            on_lease_lost,
            store,
            context,
            retry_delay: options.retry_min,
            options,
            mirror: state,
            queue: VecDeque::new(),
            needs_save: !already_stored,
            writing: false,
            degraded: false,
            status: RecorderStatus {
                pending: 0,
                degraded: false,
                batches_written: 0,
                saves: 0,
                failures: 0,
                lease_lost: false,
            },
            assistant: HashMap::new(),
            written_items: HashSet::new(),
            awaiting_user: None,
            held: Vec::new(),
            seq,
            subscription: None,
            closing: false,
        };
        // Subscribe before returning, so that events published right after `start` (a
        // `send_text`) are seen: the bus handles our subscription first.
        StoreRecorder::create(|ctx| {
            let mut recorder = recorder;
            let recipient = ctx.address().recipient::<LiveEvent>();
            recorder.subscription = Some(recorder.context.subscribe_with(
                liveagent_core::Subscribe::filtered(Self::filter(), recipient).label("store"),
            ));
            recorder
        })
    }

    /// The event kinds a recorder subscribes to.
    pub fn filter() -> EventFilter {
        EventFilter::kinds([
            EventKind::SynthesizedAudio,
            EventKind::ModelMessageChunk,
            EventKind::InputTranscriptChunk,
            EventKind::OutputTranscriptChunk,
            EventKind::SpeechStopped,
            EventKind::ResponseDone,
            EventKind::PlaybackStopped,
            EventKind::ToolCallRequested,
            EventKind::ToolCallCancelled,
            EventKind::ToolResult,
            EventKind::UserText,
            EventKind::SessionClosed,
            EventKind::ResumptionHandleUpdated,
        ])
    }

    /// This recorder's lease owner id (unique per recorder: process id and 64 random bits).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn push(&mut self, op: StoreOp, ctx: &mut Context<Self>) {
        if self.lost {
            return;
        }
        self.mirror.apply(&op, self.options.history_limit);
        self.mirror.revision += 1;
        self.queue.push_back((self.mirror.revision, op));
        self.flush(ctx);
    }

    /// Queues an assistant turn, or holds it while the user turn before it has no
    /// transcript yet.
    fn push_assistant(&mut self, op: StoreOp, ctx: &mut Context<Self>) {
        if self.awaiting_user.is_some() {
            self.held.push(op);
        } else {
            self.push(op, ctx);
        }
    }

    fn release_held(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.awaiting_user.take() {
            ctx.cancel_future(handle);
        }
        for op in std::mem::take(&mut self.held) {
            self.push(op, ctx);
        }
    }

    fn finish_item(&mut self, item_id: &str, final_text: Option<&str>, ctx: &mut Context<Self>) {
        if self.written_items.contains(item_id) {
            return;
        }
        let mut acc = self.assistant.remove(item_id).unwrap_or_default();
        if let Some(t) = final_text {
            acc.text = t.to_owned();
        }
        if acc.text.trim().is_empty() {
            return;
        }
        self.written_items.insert(item_id.to_owned());
        let record = HistoryRecord::Assistant {
            item_id: item_id.to_owned(),
            text: acc.text.trim().to_owned(),
            audio_ms: acc.audio_ms_x1000 / 1000,
            heard_ms: acc.heard_ms,
        };
        self.push_assistant(StoreOp::Append(record), ctx);
    }

    fn on_event(&mut self, event: LiveEvent, ctx: &mut Context<Self>) {
        match event {
            LiveEvent::SynthesizedAudio(a)
                if a.audio.sample_rate > 0 && !self.written_items.contains(&*a.item_id) =>
            {
                let acc = self.assistant.entry(a.item_id.to_string()).or_default();
                acc.audio_ms_x1000 += a.audio.len() as u64 * 1_000_000 / a.audio.sample_rate as u64;
            }
            LiveEvent::ModelMessageChunk(m) if !self.written_items.contains(&*m.item_id) => {
                self.assistant
                    .entry(m.item_id.to_string())
                    .or_default()
                    .text
                    .push_str(&m.text);
            }
            LiveEvent::OutputTranscriptChunk(t) => {
                let Some(id) = t.item_id else { return };
                if t.is_final {
                    self.finish_item(&id, Some(&t.text), ctx);
                } else if !self.written_items.contains(&*id) {
                    self.assistant
                        .entry(id.to_string())
                        .or_default()
                        .text
                        .push_str(&t.text);
                }
            }
            LiveEvent::ResponseDone(_) => {
                let ids: Vec<String> = self.assistant.keys().cloned().collect();
                for id in ids {
                    self.finish_item(&id, None, ctx);
                }
            }
            LiveEvent::PlaybackStopped(p) if p.interrupted => {
                if self.written_items.contains(&*p.item_id) {
                    let op = StoreOp::AssistantHeard {
                        item_id: p.item_id.to_string(),
                        heard_ms: p.played_ms,
                    };
                    if self.held.is_empty() {
                        self.push(op, ctx);
                    } else {
                        self.held.push(op);
                    }
                } else {
                    self.assistant
                        .entry(p.item_id.to_string())
                        .or_default()
                        .heard_ms = Some(p.played_ms);
                }
            }
            LiveEvent::SpeechStopped(_) if self.awaiting_user.is_none() => {
                // A user turn was spoken: hold assistant turns until its transcript.
                let wait = self.options.transcript_wait;
                self.awaiting_user = Some(ctx.run_later(wait, |act, ctx| {
                    act.awaiting_user = None;
                    act.release_held(ctx);
                }));
            }
            LiveEvent::InputTranscriptChunk(t) if t.is_final => {
                let text = t.text.trim();
                if !text.is_empty() {
                    self.push(
                        StoreOp::Append(HistoryRecord::User {
                            text: text.to_owned(),
                        }),
                        ctx,
                    );
                }
                self.release_held(ctx);
            }
            LiveEvent::UserText(u) => {
                self.push(
                    StoreOp::Append(HistoryRecord::User {
                        text: u.text.to_string(),
                    }),
                    ctx,
                );
            }
            LiveEvent::ToolCallRequested(req) => {
                for call in req.calls {
                    let id = call.call_id.to_string();
                    let answered = self.mirror.answered_call_ids().any(|a| a == id);
                    if answered || self.mirror.tools_in_flight.contains_key(&id) {
                        continue;
                    }
                    self.seq += 1;
                    let op = StoreOp::ToolStarted(ToolCallRecord {
                        call_id: id,
                        name: call.name.to_string(),
                        arguments: call.arguments,
                        seq: self.seq,
                    });
                    self.push_assistant(op, ctx);
                }
            }
            LiveEvent::ToolResult(r) => {
                let id = r.call_id.to_string();
                if self.mirror.answered_call_ids().any(|a| a == id) {
                    return;
                }
                let op = StoreOp::ToolFinished {
                    call_id: id,
                    name: r.name.to_string(),
                    output: r.output,
                };
                if self.held.is_empty() {
                    self.push(op, ctx);
                } else {
                    self.held.push(op);
                }
            }
            LiveEvent::ToolCallCancelled(c) => {
                let call_ids = c.call_ids.iter().map(|c| c.to_string()).collect();
                let op = StoreOp::ToolCancelled { call_ids };
                if self.held.is_empty() {
                    self.push(op, ctx);
                } else {
                    self.held.push(op);
                }
            }
            LiveEvent::ResumptionHandleUpdated(u) if u.handle != self.mirror.resumption_handle => {
                self.push(StoreOp::SetResumptionHandle(u.handle), ctx);
            }
            LiveEvent::SessionClosed(_) => {
                self.release_held(ctx);
                self.closing = true;
                self.flush(ctx);
            }
            _ => {}
        }
    }

    /// Starts the next write if none is running.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.status.pending = self.queue.len();
        if self.writing || self.lost {
            return;
        }
        if !self.leased {
            // Take the lease before the first write.
            self.writing = true;
            let store = self.store.clone();
            let (id, owner) = (self.mirror.id.clone(), self.owner.clone());
            let (ttl, takeover) = (self.options.lease_ttl, self.takeover);
            let fut = async move { store.acquire_lease(&id, &owner, ttl, takeover).await };
            ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
                act.writing = false;
                match res {
                    Ok(true) => {
                        act.leased = true;
                        act.flush(ctx);
                    }
                    Ok(false) => act.lost(ctx),
                    Err(e) => act.failed(e.to_string(), ctx),
                }
            }));
            return;
        }
        if !self.needs_save && self.queue.is_empty() {
            if self.closing {
                self.finish(ctx);
            }
            return;
        }
        self.writing = true;
        let store = self.store.clone();
        let ttl = self.options.ttl;
        if self.needs_save {
            let snapshot = self.mirror.clone();
            let saved_revision = snapshot.revision;
            let owner = self.owner.clone();
            let fut = async move { store.save_leased(&snapshot, &owner, ttl).await };
            ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                act.writing = false;
                match res {
                    Ok(()) => {
                        act.needs_save = false;
                        act.status.saves += 1;
                        // The snapshot already held everything queued when it was taken.
                        act.queue.retain(|(rev, _)| *rev > saved_revision);
                        act.recovered();
                        act.flush(ctx);
                    }
                    Err(SaveError::LeaseLost) => act.lost(ctx),
                    Err(e) => act.failed(e.to_string(), ctx),
                }
            }));
            return;
        }
        let first = self.queue.front().map(|(rev, _)| *rev).unwrap_or(0);
        let batch: Vec<StoreOp> = self.queue.iter().map(|(_, op)| op.clone()).collect();
        let id = self.mirror.id.clone();
        let owner = self.owner.clone();
        let fut = async move { store.update_leased(&id, &owner, first, &batch, ttl).await };
        let n = self.queue.len();
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.writing = false;
            match res {
                Ok(()) => {
                    act.queue.drain(..n);
                    act.status.batches_written += 1;
                    act.recovered();
                    act.flush(ctx);
                }
                Err(UpdateError::NotFound) => {
                    tracing::info!(
                        conversation = %act.mirror.id,
                        "conversation missing from the store: writing it whole"
                    );
                    act.needs_save = true;
                    act.flush(ctx);
                }
                Err(UpdateError::LeaseLost) => act.lost(ctx),
                Err(e) => act.failed(e.to_string(), ctx),
            }
        }));
    }

    fn recovered(&mut self) {
        if self.degraded {
            self.degraded = false;
            self.status.degraded = false;
            tracing::info!(conversation = %self.mirror.id, "conversation store is back: state written");
        }
        self.retry_delay = self.options.retry_min;
        self.status.pending = self.queue.len();
    }

    fn failed(&mut self, error: String, ctx: &mut Context<Self>) {
        self.status.failures += 1;
        if !self.degraded {
            self.degraded = true;
            self.status.degraded = true;
            tracing::warn!(conversation = %self.mirror.id, %error, "conversation store failed; the conversation goes on, its state is written when the store is back");
            self.context.publish(ErrorEvent::new(
                "store",
                LiveError::connection(format!(
                    "conversation state not saved (the conversation goes on; retrying): {error}"
                )),
            ));
        }
        // The mirror holds everything queued: bound the queue by writing the mirror whole
        // once the store is back instead of an ever-growing batch.
        if self.queue.len() > self.options.history_limit.max(64) * 2 {
            self.queue.clear();
            self.needs_save = true;
        }
        let delay = self.retry_delay;
        self.retry_delay = (self.retry_delay * 2).min(self.options.retry_max);
        ctx.run_later(delay, |act, ctx| act.flush(ctx));
    }

    /// Another instance holds the lease: stop writing, tell the conversation, end.
    fn lost(&mut self, ctx: &mut Context<Self>) {
        if self.lost {
            return;
        }
        self.lost = true;
        self.status.lease_lost = true;
        self.queue.clear();
        self.held.clear();
        self.needs_save = false;
        tracing::warn!(
            conversation = %self.mirror.id,
            "conversation lease lost: another instance took this conversation over; this instance stops writing it and ends its side"
        );
        self.context.publish(ErrorEvent::fatal(
            "store",
            LiveError::new(
                ErrorKind::Conflict,
                "this conversation was resumed on another instance; ending it here",
            )
            .with_code("lease_lost"),
        ));
        if let Some(hook) = self.on_lease_lost.take() {
            hook();
        }
        ctx.stop();
    }

    fn finish(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let id = self.mirror.id.clone();
        let owner = self.owner.clone();
        let delete = self.options.delete_on_close;
        let leased = self.leased;
        ctx.wait(
            async move {
                if delete {
                    if let Err(e) = store.delete(&id).await {
                        tracing::warn!(conversation = %id, error = %e, "cannot delete the conversation");
                    }
                } else if leased {
                    if let Err(e) = store.release_lease(&id, &owner).await {
                        tracing::debug!(conversation = %id, error = %e, "cannot release the lease (it expires)");
                    }
                }
            }
            .into_actor(self),
        );
        ctx.stop();
    }
}

impl Actor for StoreRecorder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Renew the lease; find out when another instance took it.
        let every = (self.options.lease_ttl / 3).max(Duration::from_millis(50));
        ctx.run_interval(every, |act, ctx| {
            if !act.leased || act.lost {
                return;
            }
            let store = act.store.clone();
            let (id, owner) = (act.mirror.id.clone(), act.owner.clone());
            let ttl = act.options.lease_ttl;
            ctx.spawn(
                async move { store.renew_lease(&id, &owner, ttl).await }
                    .into_actor(act)
                    .map(|res, act, ctx| match res {
                        Ok(true) => {}
                        Ok(false) => act.lost(ctx),
                        // The store is down: the writes report it; the lease is checked
                        // again when it is back.
                        Err(e) => tracing::debug!(conversation = %act.mirror.id, error = %e, "lease renewal failed"),
                    }),
            );
        });
        // Keep the conversation alive in the store while this instance holds it.
        let every = (self.options.ttl / 3).max(Duration::from_millis(50));
        ctx.run_interval(every, |act, ctx| {
            if act.writing || act.degraded || act.needs_save || act.lost {
                return;
            }
            let store = act.store.clone();
            let id = act.mirror.id.clone();
            let ttl = act.options.ttl;
            ctx.spawn(
                async move { store.touch(&id, ttl).await }
                    .into_actor(act)
                    .map(|res, act, ctx| {
                        if let Err(UpdateError::NotFound) = res {
                            act.needs_save = true;
                            act.flush(ctx);
                        }
                    }),
            );
        });
        self.flush(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(id) = self.subscription.take() {
            self.context.unsubscribe(id);
        }
    }
}

impl Handler<LiveEvent> for StoreRecorder {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, ctx: &mut Context<Self>) {
        self.on_event(event, ctx);
    }
}

impl Handler<RecordOps> for StoreRecorder {
    type Result = ();
    fn handle(&mut self, msg: RecordOps, ctx: &mut Context<Self>) {
        for op in msg.0 {
            self.push(op, ctx);
        }
    }
}

impl Handler<GetRecorderStatus> for StoreRecorder {
    type Result = MessageResult<GetRecorderStatus>;
    fn handle(&mut self, _: GetRecorderStatus, _: &mut Context<Self>) -> Self::Result {
        let mut status = self.status.clone();
        status.pending = self.queue.len() + self.held.len();
        MessageResult(status)
    }
}

/// A lease owner id: this process and 64 random bits.
fn lease_owner_id() -> String {
    format!("pid{}-{:016x}", std::process::id(), rand::random::<u64>())
}
