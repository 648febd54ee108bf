//! [`FleetMetrics`]: the Prometheus registry of one application instance and every metric
//! liveagent exports from it. Cheap to clone (shared inside); one per process, shared by all
//! its conversations.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Most distinct tool names given their own label; further names (a model inventing tool
/// names) are counted under `other`, so a hostile peer cannot blow up the series count.
pub const MAX_TOOL_LABELS: usize = 64;

/// Every metric, registered in one [`Registry`].
///
/// | metric | type | labels | what |
/// |---|---|---|---|
/// | `liveagent_active_conversations` | gauge | `provider` | conversations with a live observer |
/// | `liveagent_conversations_total` | counter | `provider` | conversations started |
/// | `liveagent_turn_latency_seconds` | histogram | `provider` | end of user speech (`SpeechStopped`) → first audio of the answer |
/// | `liveagent_barge_ins_total` | counter | `provider` | `Interrupted` (the user cut the model off) |
/// | `liveagent_truncations_total` | counter | `provider` | playback stopped by an interruption (the assistant item is truncated to what was heard) |
/// | `liveagent_reconnects_total` | counter | `provider`, `cause` | outages (one per drop, whatever the attempts) |
/// | `liveagent_reconnect_attempts_total` | counter | `provider` | connection attempts after drops |
/// | `liveagent_reconnect_outage_seconds` | histogram | `provider` | drop → session usable again |
/// | `liveagent_audio_dropped_ms_total` | counter | `provider`, `source` | audio dropped on purpose (bounded buffers) |
/// | `liveagent_tool_latency_seconds` | histogram | `tool` | tool call requested → result |
/// | `liveagent_tool_errors_total` | counter | `tool` | tool results that are errors |
/// | `liveagent_provider_audio_bytes_total` | counter | `provider`, `direction` | PCM16 audio bytes sent to (`in`) and received from (`out`) the provider |
/// | `liveagent_errors_total` | counter | `provider`, `fatal` | error events |
///
/// `cause` is one of `connection_lost`, `go_away`, `age_limit`, `timeout`, `other`.
#[derive(Clone)]
pub struct FleetMetrics {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) registry: Registry,
    pub(crate) active: IntGaugeVec,
    pub(crate) started: IntCounterVec,
    pub(crate) turn_latency: HistogramVec,
    pub(crate) barge_ins: IntCounterVec,
    pub(crate) truncations: IntCounterVec,
    pub(crate) reconnects: IntCounterVec,
    pub(crate) reconnect_attempts: IntCounterVec,
    pub(crate) outage: HistogramVec,
    pub(crate) audio_dropped_ms: IntCounterVec,
    pub(crate) tool_latency: HistogramVec,
    pub(crate) tool_errors: IntCounterVec,
    pub(crate) audio_bytes: IntCounterVec,
    pub(crate) errors: IntCounterVec,
    tool_names: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for FleetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetMetrics").finish_non_exhaustive()
    }
}

/// The metrics could not be registered (a name clash in a registry you passed in).
#[derive(Debug, thiserror::Error)]
#[error("cannot register liveagent metrics: {0}")]
pub struct RegisterError(#[from] prometheus::Error);

const LATENCY_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
];
const TOOL_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const OUTAGE_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0];

impl FleetMetrics {
    /// Metrics in a new registry of their own.
    pub fn new() -> Self {
        Self::with_registry(Registry::new()).expect("a fresh registry has no name clashes")
    }

    /// Metrics registered in `registry` (to share it with your application's own metrics).
    pub fn with_registry(registry: Registry) -> Result<Self, RegisterError> {
        fn counter(
            r: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
        ) -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        fn histogram(
            r: &Registry,
            name: &str,
            help: &str,
            labels: &[&str],
            buckets: &[f64],
        ) -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            r.register(Box::new(h.clone()))?;
            Ok(h)
        }
        let active = IntGaugeVec::new(
            Opts::new(
                "liveagent_active_conversations",
                "Conversations running on this instance.",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(active.clone()))?;
        let r = &registry;
        let inner = Inner {
            active,
            started: counter(r, "liveagent_conversations_total", "Conversations started.", &["provider"])?,
            turn_latency: histogram(
                r,
                "liveagent_turn_latency_seconds",
                "From the end of the user's speech to the first audio of the answer.",
                &["provider"],
                LATENCY_BUCKETS,
            )?,
            barge_ins: counter(r, "liveagent_barge_ins_total", "Times the user cut the model off.", &["provider"])?,
            truncations: counter(
                r,
                "liveagent_truncations_total",
                "Assistant items whose playback an interruption stopped (truncated to what was heard).",
                &["provider"],
            )?,
            reconnects: counter(
                r,
                "liveagent_reconnects_total",
                "Provider connections lost and reconnected, by cause.",
                &["provider", "cause"],
            )?,
            reconnect_attempts: counter(
                r,
                "liveagent_reconnect_attempts_total",
                "Connection attempts after a drop.",
                &["provider"],
            )?,
            outage: histogram(
                r,
                "liveagent_reconnect_outage_seconds",
                "From a dropped connection to the session being usable again.",
                &["provider"],
                OUTAGE_BUCKETS,
            )?,
            audio_dropped_ms: counter(
                r,
                "liveagent_audio_dropped_ms_total",
                "Milliseconds of audio dropped on purpose by bounded buffers.",
                &["provider", "source"],
            )?,
            tool_latency: histogram(
                r,
                "liveagent_tool_latency_seconds",
                "From a tool call being requested to its result.",
                &["tool"],
                TOOL_BUCKETS,
            )?,
            tool_errors: counter(r, "liveagent_tool_errors_total", "Tool results that are errors.", &["tool"])?,
            audio_bytes: counter(
                r,
                "liveagent_provider_audio_bytes_total",
                "PCM16 audio bytes sent to (in) and received from (out) the provider.",
                &["provider", "direction"],
            )?,
            errors: counter(r, "liveagent_errors_total", "Error events.", &["provider", "fatal"])?,
            tool_names: Mutex::new(HashSet::new()),
            registry,
        };
        Ok(FleetMetrics {
            inner: Arc::new(inner),
        })
    }

    /// The registry (to add your own metrics, or to gather them yourself).
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.inner.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The label for tool `name`: itself while fewer than [`MAX_TOOL_LABELS`] names were
    /// seen, `other` after that.
    pub(crate) fn tool_label(&self, name: &str) -> String {
        let mut names = self
            .inner
            .tool_names
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if names.contains(name) {
            return name.to_owned();
        }
        if names.len() < MAX_TOOL_LABELS {
            names.insert(name.to_owned());
            return name.to_owned();
        }
        "other".to_owned()
    }

    pub(crate) fn tool_latency(&self, tool: &str) -> Histogram {
        self.inner.tool_latency.with_label_values(&[tool])
    }
}

impl Default for FleetMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Sorts a reconnect reason into a bounded set of causes.
pub fn reconnect_cause(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("goaway") || r.contains("go away") || r.contains("go_away") {
        "go_away"
    } else if r.contains("age") || r.contains("renew") {
        "age_limit"
    } else if r.contains("timeout")
        || r.contains("timed out")
        || r.contains("idle")
        || r.contains("stall")
        || r.contains("keepalive")
    {
        "timeout"
    } else if r.contains("clos")
        || r.contains("lost")
        || r.contains("reset")
        || r.contains("refused")
        || r.contains("eof")
        || r.contains("connect")
    {
        "connection_lost"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_bounded() {
        assert_eq!(reconnect_cause("goAway"), "go_away");
        assert_eq!(reconnect_cause("session age limit"), "age_limit");
        assert_eq!(reconnect_cause("connection closed"), "connection_lost");
        assert_eq!(reconnect_cause("idle read deadline"), "timeout");
        assert_eq!(reconnect_cause("weird"), "other");
    }

    #[test]
    fn tool_labels_are_capped() {
        let m = FleetMetrics::new();
        for i in 0..MAX_TOOL_LABELS {
            assert_eq!(m.tool_label(&format!("t{i}")), format!("t{i}"));
        }
        assert_eq!(m.tool_label("t0"), "t0");
        assert_eq!(m.tool_label("invented"), "other");
    }
}
