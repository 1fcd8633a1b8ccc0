//! OpenTelemetry traces (`[tracing]`): when an OTLP endpoint is set, the
//! process exports the spans of sampled stanzas there over OTLP/gRPC in
//! batches, from a thread of the SDK. The edge that reads a stanza from
//! its client decides whether its trace is sampled (`sample_ratio`, by
//! trace id); every later span follows that decision through the
//! stanza's trail (`proto::trail`), in this process or another.
//!
//! Spans carry no addresses (JIDs are personal data): the stanza's kind,
//! the shard, the node's role.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::resource::EnvResourceDetector;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
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
    let queue = Arc::new(Queue::new(metrics.trace_spans_dropped.clone()));
    let exporter = Reporting {
        inner: exporter,
        endpoint: endpoint.clone(),
        failures: metrics.trace_export_failures.clone(),
        lost: metrics.trace_spans_lost.clone(),
        state: Mutex::new(Failing::default()),
        queue: queue.clone(),
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: BatchSpanProcessor::builder(exporter).build(),
            queue,
        })
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
    queue: Arc<Queue>,
}

/// What the log has not said yet about failing exports. A collector that
/// fails now and then gets one warning a minute (and one note that
/// exports work again), not a pair per batch.
#[derive(Debug, Default)]
struct Failing {
    /// When the last warning was logged.
    warned: Option<Instant>,
    /// A warning was logged and exports have not worked since.
    failing: bool,
    /// Failures since the last warning, not in any line yet.
    batches: u64,
    spans: u64,
}

impl<E: SpanExporter> Reporting<E> {
    fn record(&self, spans: usize, result: &OTelSdkResult) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if s.failing {
                    tracing::info!(
                        endpoint = %self.endpoint,
                        failed_batches = s.batches,
                        lost_spans = s.spans,
                        "trace export works again (failures since the last warning counted here)"
                    );
                    s.failing = false;
                    s.batches = 0;
                    s.spans = 0;
                }
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
                    s.failing = true;
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
        // These have left the queue.
        self.queue.taken(spans);
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

/// The spans between their end and their export, bounded here rather than
/// in the SDK (whose drops are silent after the first): a span that would
/// go past `max` is dropped and counted. Spans the exporter holds count
/// until it takes them, so this bound is met before the SDK's.
struct Queue {
    queued: AtomicUsize,
    max: usize,
    dropped: IntCounter,
    /// Drops not in the log yet, and when the last warning was.
    log: Mutex<(u64, Option<Instant>)>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("queued", &self.queued)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// The SDK's queue size (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048).
    fn new(dropped: IntCounter) -> Queue {
        let max = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(2048);
        Queue {
            queued: AtomicUsize::new(0),
            max,
            dropped,
            log: Mutex::new((0, None)),
        }
    }

    /// Room for one more span; `false` (and counted) if the queue is full.
    fn admit(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::Relaxed) < self.max {
            return true;
        }
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.dropped.inc();
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.0 += 1;
        if l.1.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                dropped_spans = l.0,
                queue = self.max,
                "trace spans dropped: the export queue is full (OTEL_BSP_MAX_QUEUE_SIZE; next warning in a minute at the earliest; see xmppd_trace_spans_dropped_total)"
            );
            *l = (0, Some(Instant::now()));
        }
        false
    }

    fn taken(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
                Some(q.saturating_sub(n))
            });
    }
}

/// The SDK's batch processor behind [`Queue`]'s bound.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    queue: Arc<Queue>,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Spans not sampled are not exported (the SDK drops them itself).
        if span.span_context.is_sampled() && !self.queue.admit() {
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    #[derive(Debug)]
    struct Nowhere;

    impl SpanExporter for Nowhere {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            Ok(())
        }
    }

    fn reporting() -> Reporting<Nowhere> {
        Reporting {
            inner: Nowhere,
            endpoint: "http://127.0.0.1:1".into(),
            failures: IntCounter::new("f", "f").expect("counter"),
            lost: IntCounter::new("l", "l").expect("counter"),
            state: Mutex::new(Failing::default()),
            queue: Arc::new(Queue::new(IntCounter::new("d", "d").expect("counter"))),
        }
    }

    /// A collector that fails every other batch gets one warning (and
    /// one note that it works again) a minute, not a pair per batch; the
    /// counters see every failure.
    #[test]
    fn a_flapping_collector_is_warned_about_once_a_minute() {
        let r = reporting();
        let fail: OTelSdkResult = Err(OTelSdkError::InternalFailure("down".into()));
        r.record(3, &fail);
        let first = r.state.lock().expect("lock").warned.expect("warned");
        r.record(1, &Ok(()));
        assert!(!r.state.lock().expect("lock").failing);
        for _ in 0..10 {
            r.record(2, &fail);
            r.record(1, &Ok(()));
        }
        let s = r.state.lock().expect("lock");
        assert_eq!(s.warned, Some(first), "no second warning within the minute");
        assert!(!s.failing, "and no second note that it works again");
        // Failures since the warning wait for the next line.
        assert_eq!((s.batches, s.spans), (10, 20));
        assert_eq!(r.failures.get(), 11);
        assert_eq!(r.lost.get(), 23);
    }

    #[test]
    fn the_queue_drops_past_its_bound_and_counts() {
        let q = Queue {
            queued: AtomicUsize::new(0),
            max: 3,
            dropped: IntCounter::new("d", "d").expect("counter"),
            log: Mutex::new((0, None)),
        };
        let admitted = (0..5).filter(|_| q.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(q.dropped.get(), 2);
        q.taken(2);
        assert!(q.admit());
        q.taken(100);
        assert_eq!(q.queued.load(Ordering::Relaxed), 0);
    }
}
