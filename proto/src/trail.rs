//! What travels with a stanza besides its bytes, for seeing inside the
//! server: when an edge read it from its client (for the routing-latency
//! histogram) and, when its trace was sampled, the span that the next
//! span of its trace is a child of. Everything a stanza causes (the
//! stanza routed on, a reply, a fan-out) carries its trail, so the edge
//! that writes it knows how long ago the cause was read and which trace
//! it belongs to.
//!
//! Between processes the span travels as a W3C `traceparent`
//! (<https://www.w3.org/TR/trace-context/>) in the envelope and delivery
//! messages: one gRPC stream carries many stanzas, so a per-call gRPC
//! metadata entry could not say which stanza a context belongs to.

/// When a stanza was read and the span that caused it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trail {
    /// When the edge read the stanza that started this, in microseconds
    /// since the Unix epoch; 0 when unknown (the server's own stanzas).
    pub received_us: u64,
    /// The parent span for the next span of its trace, when the trace is
    /// sampled. Boxed: most stanzas carry none.
    pub span: Option<Box<SpanRef>>,
    /// A client's message that goes first to its sender's shard rather
    /// than its recipient's: the sending session has Message Carbons
    /// (XEP-0280) on, and the sender's shard copies it to the account's
    /// other sessions.
    pub via_sender: bool,
}

/// A span of a sampled trace, as a W3C trace context names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRef {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The trace-flags byte (bit 0: sampled).
    pub flags: u8,
    /// Whether the span was recorded in another process (it came here in
    /// a traceparent); not part of the traceparent.
    pub remote: bool,
}

/// The current time in microseconds since the Unix epoch (0 if the clock
/// is before it).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Trail {
    /// The trail of a stanza read now, with no trace.
    pub fn now() -> Trail {
        Trail {
            received_us: now_us(),
            span: None,
            via_sender: false,
        }
    }

    /// Whether it says anything (a stanza of the server's own says
    /// nothing).
    pub fn is_empty(&self) -> bool {
        self.received_us == 0 && self.span.is_none()
    }

    /// The traceparent header value of its span, if it has one.
    pub fn traceparent(&self) -> Option<String> {
        self.span.as_ref().map(|s| s.traceparent())
    }

    /// The trail from the fields of an envelope or delivery. A malformed
    /// traceparent from the wire is dropped (the stanza goes on
    /// untraced).
    pub fn from_wire(received_us: u64, traceparent: Option<&str>) -> Trail {
        Trail {
            received_us,
            span: traceparent.and_then(SpanRef::parse).map(Box::new),
            via_sender: false,
        }
    }
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != 2 * out.len() {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        let pair = s.get(2 * i..2 * i + 2)?;
        // Lowercase only, as the specification requires.
        if !pair
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        {
            return None;
        }
        *b = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(())
}

impl SpanRef {
    /// Parse a version-00 traceparent: `00-<32 hex>-<16 hex>-<2 hex>`, a
    /// trace id and span id not all zeros. Anything else is `None`.
    pub fn parse(s: &str) -> Option<SpanRef> {
        let mut parts = s.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let mut r = SpanRef {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
            remote: true,
        };
        hex_into(trace, &mut r.trace_id)?;
        hex_into(span, &mut r.span_id)?;
        let mut f = [0u8; 1];
        hex_into(flags, &mut f)?;
        r.flags = f[0];
        if r.trace_id == [0; 16] || r.span_id == [0; 8] {
            return None;
        }
        Some(r)
    }

    /// Its version-00 traceparent.
    pub fn traceparent(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        for b in self.trace_id {
            let _ = write!(s, "{b:02x}");
        }
        s.push('-');
        for b in self.span_id {
            let _ = write!(s, "{b:02x}");
        }
        let _ = write!(s, "-{:02x}", self.flags);
        s
    }

    /// Whether the trace is sampled.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_survives_the_round_trip() {
        let t = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let r = SpanRef::parse(t).expect("parses");
        assert!(r.sampled());
        assert_eq!(r.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(r.traceparent(), t);
        assert!(r.remote, "a parsed context comes from another process");
        let trail = Trail::from_wire(5, Some(t));
        assert_eq!(trail.traceparent().as_deref(), Some(t));
    }

    #[test]
    fn malformed_traceparents_are_dropped() {
        for bad in [
            "",
            "00",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanRef::parse(bad), None, "{bad:?}");
            assert!(Trail::from_wire(0, Some(bad)).span.is_none());
        }
    }
}
