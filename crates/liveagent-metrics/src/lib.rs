//! # liveagent-metrics
//!
//! A fleet you can watch. [`FleetMetrics`] holds the Prometheus metrics of one application
//! instance (active conversations, turn latency, barge-ins, truncations, reconnects and
//! their causes, dropped audio, tool latency and errors, audio bytes per provider); a
//! [`MetricsObserver`] on each conversation's bus feeds them, and
//! [`FleetMetrics::configure`] mounts `GET /metrics` on an actix-web app. With the `otel`
//! feature, `otel::init` exports the observer's spans (turns, tool calls, reconnects) as
//! OpenTelemetry traces over OTLP.
//!
//! # Layout
//!
//! - [`fleet`]: [`FleetMetrics`], the registry and the table of every metric.
//! - [`observer`]: [`MetricsObserver`], one per conversation, bus events → counters and
//!   spans.
//! - [`http`]: the `/metrics` route.
//! - `otel` (feature `otel`): the OTLP trace pipeline.
//!
//! ```no_run
//! use liveagent::{openai, LiveAgent};
//! use liveagent_metrics::{observed_kinds, FleetMetrics};
//!
//! # fn demo() -> anyhow::Result<()> {
//! let metrics = FleetMetrics::new();
//! let agent = LiveAgent::builder("assistant")
//!     .config(openai::RealtimeConfig::new("gpt-realtime"))
//!     .observer(observed_kinds(), metrics.observer("openai"))
//!     .build()?;
//! // HttpServer::new(move || App::new().configure(metrics.configure()))...
//! # Ok(()) }
//! ```

pub mod fleet;
pub mod http;
pub mod observer;
#[cfg(feature = "otel")]
pub mod otel;

pub use fleet::{reconnect_cause, FleetMetrics, RegisterError, MAX_TOOL_LABELS};
pub use http::CONTENT_TYPE;
pub use observer::{observed_kinds, MetricsObserver};
