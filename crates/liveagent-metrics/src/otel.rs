//! OpenTelemetry traces (feature `otel`): the spans the [`MetricsObserver`](crate::MetricsObserver)
//! opens (`turn`, `tool_call`, `reconnect`, target `liveagent::trace`) and any other
//! `tracing` span, exported over OTLP/HTTP (protobuf) through `tracing-opentelemetry`.
//!
//! Nothing is exported unless an endpoint is set: [`init`] reads the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://127.0.0.1:4318`, a collector beside the
//! instance) and does nothing without it. The HTTP client is built without TLS: point it at
//! a local collector (the usual sidecar setup), which forwards over TLS.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The standard variable naming the collector (`http://host:4318`).
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The trace pipeline could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    /// The exporter could not be built (a bad endpoint).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber was already installed.
    #[error("a tracing subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// Keeps the trace pipeline running; dropping it flushes and shuts it down.
#[derive(Debug)]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// Exports every finished span now (blocks until the collector answered or timed out).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "flushing traces failed");
        }
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "trace pipeline shutdown");
        }
    }
}

/// A `tracing` layer exporting spans of `service_name` to the OTLP/HTTP collector at
/// `endpoint` (`http://host:4318`; spans go to `<endpoint>/v1/traces`), and the guard that
/// keeps its pipeline alive. Compose it into your own subscriber.
pub fn layer<S>(
    service_name: &str,
    endpoint: &str,
) -> Result<(OpenTelemetryLayer<S, SdkTracer>, OtelGuard), OtelError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| OtelError::Exporter(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("liveagent");
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        OtelGuard { provider },
    ))
}

/// Installs a global subscriber (`RUST_LOG` filter, log lines on stderr, spans exported to
/// `OTEL_EXPORTER_OTLP_ENDPOINT`) when that variable is set. `Ok(None)` and nothing
/// installed when it is not: call your own logging setup then.
pub fn init(service_name: &str) -> Result<Option<OtelGuard>, OtelError> {
    let Some(endpoint) = std::env::var(ENDPOINT_VAR).ok().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let (otel, guard) = layer(service_name, &endpoint)?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(otel)
        .try_init()
        .map_err(|e| OtelError::AlreadyInstalled(e.to_string()))?;
    Ok(Some(guard))
}
