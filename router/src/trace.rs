//! Spans of sampled stanzas, through the OpenTelemetry API: the process
//! installs an exporter (or none: then nothing here is called, as no
//! stanza carries a sampled span). A stanza's [`Trail`] names the span
//! its next span is a child of; each step that makes a span puts the
//! new span in the trail, so the trace follows the stanza from the edge
//! that read it to the edge that wrote it, across processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue, global};
use proto::trail::{SpanRef, Trail};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The name spans are recorded under (the instrumentation scope).
const SCOPE: &str = "xmppd";

/// Turn span recording on (the process installed a tracer provider).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether stanzas read here start traces.
fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A span being recorded; ended when dropped.
pub struct Span(global::BoxedSpan);

impl Span {
    /// The reference that children of this span carry.
    pub fn span_ref(&self) -> SpanRef {
        let c = self.0.span_context();
        SpanRef {
            trace_id: c.trace_id().to_bytes(),
            span_id: c.span_id().to_bytes(),
            flags: c.trace_flags().to_u8(),
            remote: false,
        }
    }

    /// `trail` with this span as the parent of what comes next.
    pub fn continue_trail(&self, trail: &Trail) -> Trail {
        Trail {
            received_us: trail.received_us,
            span: Some(Box::new(self.span_ref())),
            via_sender: trail.via_sender,
        }
    }

    /// Mark the span failed, with why.
    pub fn error(&mut self, why: impl Into<String>) {
        self.0
            .set_status(opentelemetry::trace::Status::error(why.into()));
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.0.end();
    }
}

fn parent_context(parent: &SpanRef) -> Context {
    let sc = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        parent.remote,
        TraceState::default(),
    );
    // Despite its name, this takes the span context as it is, remote or
    // recorded in this process.
    Context::new().with_remote_span_context(sc)
}

/// A new trace for a stanza read from a client, if tracing is on and the
/// sampler keeps it.
pub fn root(name: &'static str, attrs: impl FnOnce() -> Vec<KeyValue>) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let tracer = global::tracer(SCOPE);
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_attributes(attrs())
        .start_with_context(&tracer, &Context::new());
    span.span_context().is_sampled().then_some(Span(span))
}

/// A child of the span the trail names, if it names one of a sampled
/// trace; `start` is when it began (now if `None`). The attributes are
/// made only for a span that is recorded.
pub fn child(
    trail: &Trail,
    name: &'static str,
    kind: SpanKind,
    start: Option<SystemTime>,
    attrs: impl FnOnce() -> Vec<KeyValue>,
) -> Option<Span> {
    let parent = trail.span.as_deref()?;
    if !parent.sampled() || !enabled() {
        return None;
    }
    let tracer = global::tracer(SCOPE);
    let mut b = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attrs());
    if let Some(t) = start {
        b = b.with_start_time(t);
    }
    Some(Span(b.start_with_context(&tracer, &parent_context(parent))))
}

/// A span for a stanza arriving over gRPC from another process (from
/// edge `edge`, or 0 from a core node), which the stanza's next span
/// continues; `None` when its trace is not sampled.
pub fn hop(stanza: &mut proto::stanza::Stanza, name: &'static str, edge: u64) -> Option<Span> {
    let kind = stanza.kind.name();
    let span = child(&stanza.trail, name, SpanKind::Server, None, || {
        let mut attrs = vec![KeyValue::new("xmpp.stanza.kind", kind)];
        if edge != 0 {
            attrs.push(KeyValue::new("xmppd.edge", edge as i64));
        }
        attrs
    })?;
    stanza.trail = span.continue_trail(&stanza.trail);
    Some(span)
}

pub use opentelemetry::KeyValue as Attr;
pub use opentelemetry::trace::SpanKind as Kind;
