//! [`MetricsObserver`]: one per conversation, subscribed to its bus. It only reads events
//! and moves counters; the conversation's hot path (session, recorder, player) is not
//! touched. It also opens `tracing` spans for turns, tool calls and reconnects, which the
//! `otel` feature exports as OpenTelemetry traces.

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
use liveagent_core::{
    ConversationContext, EventFilter, EventKind, LiveEvent, Subscribe, SubscriberId,
};
use tracing::Span;

use crate::fleet::{reconnect_cause, FleetMetrics};

/// Feeds [`FleetMetrics`] from one conversation. Start with [`FleetMetrics::attach`] or
/// through [`FleetMetrics::observer`] on a `LiveAgentBuilder`.
pub struct MetricsObserver {
    metrics: FleetMetrics,
    provider: &'static str,
    context: Option<ConversationContext>,
    subscription: Option<SubscriberId>,
    speech_stopped: Option<Instant>,
    turn: Option<Span>,
    tools: HashMap<String, (Instant, String, Span)>,
    outage: Option<Span>,
    counted: bool,
}

/// The event kinds a metrics observer subscribes to.
pub fn observed_kinds() -> EventFilter {
    EventFilter::kinds([
        EventKind::RecordedAudio,
        EventKind::SynthesizedAudio,
        EventKind::SpeechStarted,
        EventKind::SpeechStopped,
        EventKind::ResponseDone,
        EventKind::Interrupted,
        EventKind::PlaybackStopped,
        EventKind::ToolCallRequested,
        EventKind::ToolCallCancelled,
        EventKind::ToolResult,
        EventKind::SessionReconnecting,
        EventKind::SessionReconnected,
        EventKind::SessionClosed,
        EventKind::ErrorEvent,
        EventKind::AudioDropped,
    ])
}

impl MetricsObserver {
    pub(crate) fn new(metrics: FleetMetrics, provider: &'static str) -> Self {
        metrics.inner.active.with_label_values(&[provider]).inc();
        metrics.inner.started.with_label_values(&[provider]).inc();
        MetricsObserver {
            metrics,
            provider,
            context: None,
            subscription: None,
            speech_stopped: None,
            turn: None,
            tools: HashMap::new(),
            outage: None,
            counted: true,
        }
    }

    fn end_conversation(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.metrics
                .inner
                .active
                .with_label_values(&[self.provider])
                .dec();
        }
        self.turn = None;
        self.outage = None;
        self.tools.clear();
    }

    fn on_event(&mut self, event: LiveEvent, ctx: &mut Context<Self>) {
        let m = &self.metrics.inner;
        let p = self.provider;
        match event {
            LiveEvent::RecordedAudio(a) => m
                .audio_bytes
                .with_label_values(&[p, "in"])
                .inc_by(a.audio.len() as u64 * 2),
            LiveEvent::SynthesizedAudio(a) => {
                m.audio_bytes
                    .with_label_values(&[p, "out"])
                    .inc_by(a.audio.len() as u64 * 2);
                if let Some(t0) = self.speech_stopped.take() {
                    m.turn_latency
                        .with_label_values(&[p])
                        .observe(t0.elapsed().as_secs_f64());
                    if let Some(span) = &self.turn {
                        span.in_scope(|| tracing::debug!("first audio"));
                    }
                }
            }
            LiveEvent::SpeechStarted(_) => {
                self.speech_stopped = None;
            }
            LiveEvent::SpeechStopped(_) => {
                self.speech_stopped = Some(Instant::now());
                self.turn = Some(tracing::info_span!(
                    target: "liveagent::trace",
                    "turn",
                    provider = p,
                    status = tracing::field::Empty,
                ));
            }
            LiveEvent::ResponseDone(done) => {
                if let Some(span) = self.turn.take() {
                    span.record("status", format!("{:?}", done.status).as_str());
                }
            }
            LiveEvent::Interrupted(_) => m.barge_ins.with_label_values(&[p]).inc(),
            LiveEvent::PlaybackStopped(s) if s.interrupted => {
                m.truncations.with_label_values(&[p]).inc()
            }
            LiveEvent::ToolCallRequested(req) => {
                for call in req.calls {
                    let label = self.metrics.tool_label(&call.name);
                    let span = tracing::info_span!(
                        target: "liveagent::trace",
                        "tool_call",
                        tool = %label,
                        call_id = %call.call_id,
                        error = tracing::field::Empty,
                    );
                    self.tools
                        .insert(call.call_id.to_string(), (Instant::now(), label, span));
                }
            }
            LiveEvent::ToolResult(r) => {
                let label = match self.tools.remove(&*r.call_id) {
                    Some((t0, label, span)) => {
                        self.metrics
                            .tool_latency(&label)
                            .observe(t0.elapsed().as_secs_f64());
                        if r.output.is_err() {
                            span.record("error", true);
                        }
                        label
                    }
                    None => self.metrics.tool_label(&r.name),
                };
                if r.output.is_err() {
                    m.tool_errors.with_label_values(&[label.as_str()]).inc();
                }
            }
            LiveEvent::ToolCallCancelled(c) => {
                for id in c.call_ids {
                    self.tools.remove(&*id);
                }
            }
            LiveEvent::SessionReconnecting(r) => {
                m.reconnect_attempts.with_label_values(&[p]).inc();
                if r.attempt <= 1 || self.outage.is_none() {
                    let cause = reconnect_cause(&r.reason);
                    m.reconnects.with_label_values(&[p, cause]).inc();
                    self.outage = Some(tracing::info_span!(
                        target: "liveagent::trace",
                        "reconnect",
                        provider = p,
                        cause,
                        resumed = tracing::field::Empty,
                    ));
                    // A drop ends the turn being measured.
                    self.speech_stopped = None;
                }
            }
            LiveEvent::SessionReconnected(r) => {
                m.outage
                    .with_label_values(&[p])
                    .observe(r.outage_ms as f64 / 1000.0);
                if let Some(span) = self.outage.take() {
                    span.record("resumed", r.resumed);
                }
            }
            LiveEvent::ErrorEvent(e) => {
                m.errors
                    .with_label_values(&[p, if e.fatal { "true" } else { "false" }])
                    .inc();
            }
            LiveEvent::AudioDropped(d) => {
                let source = match &*d.source {
                    s @ ("session" | "bus" | "player" | "recorder" | "transport") => s,
                    _ => "other",
                };
                m.audio_dropped_ms
                    .with_label_values(&[p, source])
                    .inc_by(d.dropped_ms);
            }
            LiveEvent::SessionClosed(_) => {
                self.end_conversation();
                ctx.stop();
            }
            _ => {}
        }
    }
}

impl Actor for MetricsObserver {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.end_conversation();
        if let (Some(context), Some(id)) = (&self.context, self.subscription.take()) {
            context.unsubscribe(id);
        }
    }
}

impl Handler<LiveEvent> for MetricsObserver {
    type Result = ();
    fn handle(&mut self, event: LiveEvent, ctx: &mut Context<Self>) {
        self.on_event(event, ctx);
    }
}

impl FleetMetrics {
    /// Starts an observer feeding these metrics from the conversation on `context`
    /// (`provider`: `openai`, `gemini`..., the label of its series). It subscribes before
    /// returning, so it sees everything published afterwards; it counts the conversation as
    /// active until the session closes or the bus goes away.
    pub fn attach(
        &self,
        context: &ConversationContext,
        provider: &'static str,
    ) -> Addr<MetricsObserver> {
        let observer = MetricsObserver::new(self.clone(), provider);
        let context = context.clone();
        MetricsObserver::create(move |ctx| {
            let mut observer = observer;
            let sub =
                Subscribe::filtered(observed_kinds(), ctx.address().recipient()).label("metrics");
            observer.subscription = Some(context.subscribe_with(sub));
            observer.context = Some(context);
            observer
        })
    }

    /// A factory for `LiveAgentBuilder::observer(observed_kinds(), metrics.observer("openai"))`:
    /// every conversation the agent runs gets its observer.
    pub fn observer(
        &self,
        provider: &'static str,
    ) -> impl Fn(&ConversationContext) -> Recipient<LiveEvent> + Send + Sync + 'static {
        let metrics = self.clone();
        move |_context| {
            // The builder subscribes the recipient itself.
            MetricsObserver::new(metrics.clone(), provider)
                .start()
                .recipient()
        }
    }
}
