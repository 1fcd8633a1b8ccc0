//! OpenTelemetry traces (`[tracing]`): when an OTLP endpoint is set, the
//! process exports the spans of sampled stanzas there over OTLP/gRPC in
//! batches, from a thread of the SDK. The edge that reads a stanza from
//! its client decides whether its trace is sampled (`sample_ratio`, by
//! trace id); every later span follows that decision through the
//! stanza's trail (`proto::trail`), in this process or another.
//!
//! Spans carry no addresses (JIDs are personal data): the stanza's kind,
//! the shard, the node's role.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::config::{Role, TracingConfig};

/// The installed exporter; [`Tracing::shutdown`] sends what is pending.
pub struct Tracing {
    provider: SdkTracerProvider,
}

/// How long an export may take before it is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Both => "single",
        Role::Core => "core",
        Role::Edge => "edge",
    }
}

/// Start exporting if an endpoint is configured (inside the tokio
/// runtime: the gRPC channel runs on it).
pub fn start(cfg: &TracingConfig, role: Role) -> anyhow::Result<Option<Tracing>> {
    let Some(endpoint) = &cfg.otlp_endpoint else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("tracing.otlp_endpoint {endpoint}: {e}"))?;
    let resource = Resource::builder()
        .with_service_name("xmppd")
        .with_attributes([
            KeyValue::new("xmppd.role", role_name(role)),
            KeyValue::new("process.pid", i64::from(std::process::id())),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio.0,
        ))))
        .with_resource(resource)
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    router::trace::enable();
    tracing::info!(
        endpoint = %endpoint,
        sample_ratio = cfg.sample_ratio.0,
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
