//! OpenTelemetry traces (`[tracing]`): when an OTLP endpoint is set, the
//! process exports the spans of sampled stanzas there over OTLP/gRPC in
//! batches, from a thread of the SDK. The edge that reads a stanza from
//! its client decides whether its trace is sampled (`sample_ratio`, by
//! trace id); every later span follows that decision through the
//! stanza's trail (`proto::trail`), in this process or another.
//!
//! Spans carry no addresses (JIDs are personal data): the stanza's kind,
//! the shard, the node's role.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use prometheus::IntCounter;

use crate::config::{Role, TracingConfig};

/// The installed exporter; [`Tracing::shutdown`] sends what is pending.
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// How long an export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// At most one warning about failing exports per this time.
const WARN_EVERY: Duration = Duration::from_secs(60);

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Both => "single",
        Role::Core => "core",
        Role::Edge => "edge",
    }
}

/// Where this process's spans come from. `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` (the OpenTelemetry variables) are read
/// last, so an operator's values win over these.
fn resource(role: Role, node_id: u64) -> Resource {
    let host = crate::config::host_name().unwrap_or_else(|| "unknown".to_string());
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "xmppd".to_string());
    Resource::builder_empty()
        .with_service_name(service)
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            // A pod's host name is its name; the node id tells apart two
            // processes on one host.
            KeyValue::new("service.instance.id", format!("{host}/{node_id}")),
            KeyValue::new("host.name", host),
            KeyValue::new("xmppd.role", role_name(role)),
            KeyValue::new("xmppd.node_id", node_id as i64),
            KeyValue::new("process.pid", i64::from(std::process::id())),
        ])
        .with_detector(Box::new(EnvResourceDetector::new()))
        .build()
}

/// Start exporting if an endpoint is configured (inside the tokio
/// runtime: the gRPC channel runs on it). Failed exports are counted in
/// `metrics` and logged at most once a minute.
pub fn start(
    cfg: &TracingConfig,
    role: Role,
    node_id: u64,
    metrics: &crate::metrics::Metrics,
) -> anyhow::Result<Option<Tracing>> {
    let Some(endpoint) = &cfg.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint {endpoint}: {e}"))?;
    let exporter = Reporting {
        inner: exporter,
        endpoint: endpoint.clone(),
        failures: metrics.trace_export_failures.clone(),
        lost: metrics.trace_spans_lost.clone(),
        state: Mutex::new(Failing::default()),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.ratio(),
        ))))
        .with_resource(resource(role, node_id))
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    router::trace::enable();
    tracing::info!(
        endpoint = %endpoint,
        sample_ratio = cfg.ratio(),
        "exporting traces over OTLP"
    );
    Ok(Some(Tracing { provider }))
}

impl Tracing {
    /// Export the spans still pending and stop (at the process's exit).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "traces not all exported at shutdown");
        }
    }
}

/// The OTLP exporter, with its failures counted and logged: the SDK
/// itself drops a failed batch without a word.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    endpoint: String,
    failures: IntCounter,
    lost: IntCounter,
    state: Mutex<Failing>,
}

/// Failures since the last warning.
#[derive(Debug, Default)]
struct Failing {
    /// When the last warning was logged; `None` while exports work.
    warned: Option<Instant>,
    batches: u64,
    spans: u64,
}

impl<E: SpanExporter> Reporting<E> {
    fn record(&self, spans: usize, result: &OTelSdkResult) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if s.warned.take().is_some() {
                    tracing::info!(
                        endpoint = %self.endpoint,
                        "trace export works again"
                    );
                }
                *s = Failing::default();
            }
            Err(e) => {
                self.failures.inc();
                self.lost.inc_by(spans as u64);
                s.batches += 1;
                s.spans += spans as u64;
                if s.warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        error = %e,
                        failed_batches = s.batches,
                        lost_spans = s.spans,
                        "trace export to the OTLP collector failed; spans are lost (next warning in a minute at the earliest; see xmppd_trace_export_failures_total)"
                    );
                    s.warned = Some(Instant::now());
                    s.batches = 0;
                    s.spans = 0;
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.record(spans, &result);
        // Reported here; the SDK has nothing more to do with it.
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
