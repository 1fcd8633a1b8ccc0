//! The incremental XML stream parser (RFC 6120 §4 and §11).
//!
//! Bytes go in as they arrive from the socket; out come the stream header,
//! whole top-level elements (stanzas and stream-level negotiation elements)
//! with their raw bytes, and the stream close. The parser enforces the
//! restricted XML of RFC 6120 §11.1 (no DTD, comments, processing
//! instructions or undefined entities), well-formedness of everything it
//! hands on (so raw bytes can be forwarded to another stream as they are),
//! and the configured limits on stanza size, nesting depth and attributes.
//!
//! It keeps only the bytes of the element in progress and parses each XML
//! event once: after a partial read it resumes at the last event boundary.
//! Tokenising is done by quick-xml; this module adds the stream framing,
//! namespace checks and limits.

use bytes::{Bytes, BytesMut};
use quick_xml::errors::{Error as QxError, IllFormedError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use crate::error::StreamCondition;
use crate::ns;

/// Limits that protect the server from a hostile peer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest top-level element, in bytes, including its start tag.
    pub max_stanza_bytes: usize,
    /// Deepest nesting inside a top-level element (the top-level element is 1).
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
            max_attrs: 64,
        }
    }
}

/// Why the stream must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{condition:?}: {text}")]
pub struct XmlError {
    pub condition: StreamCondition,
    pub text: String,
}

impl XmlError {
    fn new(condition: StreamCondition, text: impl Into<String>) -> XmlError {
        XmlError {
            condition,
            text: text.into(),
        }
    }

    fn nwf(text: impl Into<String>) -> XmlError {
        XmlError::new(StreamCondition::NotWellFormed, text)
    }
}

/// The opening `<stream:stream>` tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// The default namespace (`jabber:client`, `jabber:server`, ...).
    pub default_ns: Option<String>,
}

/// One complete top-level element with its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopElement {
    /// Local name (`message`, `iq`, `auth`, ...).
    pub name: String,
    /// Resolved namespace.
    pub ns: String,
    /// Its attributes as written (unescaped), in order.
    pub attrs: Vec<(String, String)>,
    /// The whole element, start tag to end tag.
    pub raw: Bytes,
    /// Length of the start tag within `raw`.
    pub head_len: usize,
    /// The element is empty (`<x/>`).
    pub empty: bool,
}

impl TopElement {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Open(StreamHeader),
    Element(TopElement),
    Close,
}

/// The parser of one XML stream; [`StreamParser::reset`] starts a new
/// stream on the same connection (after STARTTLS or SASL).
#[derive(Debug)]
pub struct StreamParser {
    buf: BytesMut,
    /// Offset in `buf` of the first byte not yet turned into events.
    pos: usize,
    /// Depth: 0 before the header, 1 inside the stream, 2+ inside an element.
    depth: usize,
    /// Names of open elements inside the current top-level element.
    open: Vec<String>,
    /// Namespace prefixes declared on the stream header.
    stream_prefixes: Vec<(String, String)>,
    /// Prefixes declared inside the current top-level element, with the
    /// depth of declaration and the namespace bound.
    inner_prefixes: Vec<(usize, String, String)>,
    default_ns: String,
    /// The pending top-level element: its start tag data.
    current: Option<TopElement>,
    /// Whether anything (a declaration) has been seen in this stream.
    seen_decl: bool,
    /// A byte-order mark opened the stream.
    seen_bom: bool,
    /// Nothing but whitespace (and a byte-order mark) consumed so far in
    /// this stream: the XML declaration may still come. Whitespace between
    /// streams is legal (RFC 6120 §11.7): a client may send a newline after
    /// `</auth>` or `<starttls/>` and then restart with a declaration.
    only_space: bool,
    closed: bool,
    limits: Limits,
}

enum Tag {
    Start((String, Vec<(String, String)>), bool),
    End(String),
}

enum Step {
    /// An event was consumed; maybe something to report.
    Event(Option<StreamEvent>),
    /// More bytes are needed.
    NeedMore,
}

impl StreamParser {
    pub fn new(limits: Limits) -> StreamParser {
        StreamParser {
            buf: BytesMut::new(),
            pos: 0,
            depth: 0,
            open: Vec::new(),
            stream_prefixes: Vec::new(),
            inner_prefixes: Vec::new(),
            default_ns: String::new(),
            current: None,
            seen_decl: false,
            seen_bom: false,
            only_space: true,
            closed: false,
            limits,
        }
    }

    /// Start a new stream (RFC 6120 §4.3.3 restart). Bytes already fed and
    /// not yet consumed are kept.
    pub fn reset(&mut self) {
        let rest = self.buf.split_off(self.pos);
        self.buf = rest;
        self.pos = 0;
        self.depth = 0;
        self.open.clear();
        self.stream_prefixes.clear();
        self.inner_prefixes.clear();
        self.default_ns.clear();
        self.current = None;
        self.seen_decl = false;
        self.seen_bom = false;
        self.only_space = true;
        self.closed = false;
    }

    /// Drop everything buffered (after STARTTLS's `<proceed/>` the rest is TLS).
    pub fn discard_buffer(&mut self) {
        self.buf = BytesMut::new();
        self.pos = 0;
    }

    /// Append bytes read from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The bytes held but not yet turned into events, for a reader that
    /// goes on without this parser; `None` inside a top-level element.
    pub fn take_unparsed(&mut self) -> Option<BytesMut> {
        if self.current.is_some() {
            return None;
        }
        let rest = self.buf.split_off(self.pos);
        self.discard_buffer();
        Some(rest)
    }

    /// Bytes held but not yet turned into events.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The default namespace of the current stream.
    pub fn default_ns(&self) -> &str {
        &self.default_ns
    }

    /// The namespace prefixes declared on the stream header.
    pub fn stream_prefixes(&self) -> &[(String, String)] {
        &self.stream_prefixes
    }

    /// Free memory when idle: an idle session holds no buffer. Not while a
    /// top-level element is half read: its start is in the buffer even
    /// when every byte read so far was consumed (a read that ended just
    /// after a `>`).
    pub fn shrink(&mut self) {
        if self.current.is_none() && self.pos == self.buf.len() {
            self.buf = BytesMut::new();
            self.pos = 0;
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        if self.closed {
            return Ok(None);
        }
        loop {
            match self.step()? {
                Step::NeedMore => {
                    self.check_pending_size()?;
                    self.compact();
                    return Ok(None);
                }
                Step::Event(Some(ev)) => {
                    if matches!(ev, StreamEvent::Close) {
                        self.closed = true;
                    }
                    self.compact();
                    return Ok(Some(ev));
                }
                Step::Event(None) => {}
            }
        }
    }

    fn compact(&mut self) {
        // Keep the pending top-level element's bytes: `current` start offset is
        // tracked relative to `buf`, so compact only between elements.
        if self.current.is_none() && self.pos > 0 {
            let _ = self.buf.split_to(self.pos);
            self.pos = 0;
        }
    }

    fn check_pending_size(&self) -> Result<(), XmlError> {
        let pending = match &self.current {
            Some(_) => self.buf.len(),
            None => self.buf.len() - self.pos,
        };
        if pending > self.limits.max_stanza_bytes {
            return Err(XmlError::new(
                StreamCondition::PolicyViolation,
                format!("stanza larger than {} bytes", self.limits.max_stanza_bytes),
            ));
        }
        Ok(())
    }

    /// One XML event. Only a window of the buffer is validated as UTF-8 and
    /// handed to quick-xml, so that a read holding many stanzas costs time
    /// in proportion to its size: validating all that is left for every
    /// event made a 16 KiB read quadratic (half of the edge's instructions
    /// per stanza under callgrind). An event that does not fit in the
    /// window shows up as "need more", and the window grows until it fits
    /// or covers everything buffered.
    fn step(&mut self) -> Result<Step, XmlError> {
        const WINDOW: usize = 512;
        let total = self.buf.len() - self.pos;
        let mut window = WINDOW.min(total);
        loop {
            match self.step_in(window)? {
                Step::NeedMore if window < total => window = (window * 4).min(total),
                other => return Ok(other),
            }
        }
    }

    fn step_in(&mut self, window: usize) -> Result<Step, XmlError> {
        let avail = &self.buf[self.pos..self.pos + window];
        if avail.is_empty() {
            return Ok(Step::NeedMore);
        }
        let text = match std::str::from_utf8(avail) {
            Ok(s) => s,
            Err(e) if e.error_len().is_none() => {
                // A character split across reads: parse up to it.
                let valid = e.valid_up_to();
                match std::str::from_utf8(&avail[..valid]) {
                    Ok(s) => s,
                    Err(_) => return Err(XmlError::nwf("invalid utf-8")),
                }
            }
            Err(_) => return Err(XmlError::nwf("invalid utf-8")),
        };
        if text.is_empty() {
            return Ok(Step::NeedMore);
        }
        // A byte-order mark may open the stream, nowhere else; quick-xml would
        // skip one at the start of any slice, so deal with it here.
        let text = match text.strip_prefix('\u{FEFF}') {
            Some(rest) if self.pos == 0 && self.depth == 0 && !self.seen_decl && !self.seen_bom => {
                self.seen_bom = true;
                self.pos += 3;
                rest
            }
            Some(_) => return Err(XmlError::nwf("byte-order mark inside the stream")),
            None => text,
        };
        if text.is_empty() {
            return Ok(Step::NeedMore);
        }
        let mut reader = Reader::from_str(text);
        {
            let cfg = reader.config_mut();
            cfg.check_end_names = false;
            cfg.allow_unmatched_ends = true;
            cfg.check_comments = false;
            cfg.expand_empty_elements = false;
            cfg.trim_text_start = false;
            cfg.trim_text_end = false;
        }
        let ev = match reader.read_event() {
            Ok(ev) => ev,
            Err(QxError::Syntax(_)) => return Ok(Step::NeedMore),
            Err(QxError::IllFormed(IllFormedError::UnclosedReference)) => {
                let at = usize::try_from(reader.error_position()).unwrap_or(usize::MAX);
                let rest = text.get(at.saturating_add(1)..).unwrap_or("");
                if !rest.contains([';', '<', '&']) && rest.len() < 32 {
                    return Ok(Step::NeedMore);
                }
                return Err(XmlError::nwf("unterminated entity reference"));
            }
            Err(e) => return Err(XmlError::nwf(e.to_string())),
        };
        let end = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let start = self.pos;
        // Whether this event is whitespace between elements.
        let mut space = false;
        let tag = match ev {
            Event::Eof => return Ok(Step::NeedMore),
            Event::Text(t) => {
                space = self.depth <= 1;
                if self.depth <= 1 && !t.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                {
                    return Err(XmlError::nwf("character data at stream level"));
                }
                // Text is complete only once the next markup begins.
                if end >= text.len() {
                    return Ok(Step::NeedMore);
                }
                check_chars(&t)?;
                None
            }
            Event::GeneralRef(r) => {
                if self.depth <= 1 {
                    return Err(XmlError::nwf("entity reference at stream level"));
                }
                check_ref(&r)?;
                None
            }
            Event::CData(c) => {
                if self.depth <= 1 {
                    return Err(XmlError::nwf("cdata at stream level"));
                }
                check_chars(&c)?;
                None
            }
            Event::Decl(_) => {
                if self.depth != 0 || self.seen_decl || !self.only_space {
                    return Err(XmlError::new(
                        StreamCondition::RestrictedXml,
                        "xml declaration inside the stream",
                    ));
                }
                self.seen_decl = true;
                None
            }
            Event::Comment(_) => {
                return Err(XmlError::new(
                    StreamCondition::RestrictedXml,
                    "comments are not allowed",
                ));
            }
            Event::PI(_) => {
                return Err(XmlError::new(
                    StreamCondition::RestrictedXml,
                    "processing instructions are not allowed",
                ));
            }
            Event::DocType(_) => {
                return Err(XmlError::new(
                    StreamCondition::RestrictedXml,
                    "a DTD is not allowed",
                ));
            }
            Event::Start(s) => Some(Tag::Start(read_tag(&s, self.limits.max_attrs)?, false)),
            Event::Empty(s) => Some(Tag::Start(read_tag(&s, self.limits.max_attrs)?, true)),
            Event::End(e) => Some(Tag::End(e.name().as_ref().to_string())),
        };
        self.pos = start + end;
        if !space {
            self.only_space = false;
        }
        let out = match tag {
            None => None,
            Some(Tag::Start((qname, attrs), empty)) => self.on_start(qname, attrs, start, empty)?,
            Some(Tag::End(qname)) => self.on_end(&qname)?,
        };
        Ok(Step::Event(out))
    }

    /// Remove the first `k` bytes of the buffer.
    fn take_front(&mut self, k: usize) -> BytesMut {
        self.pos -= k;
        self.buf.split_to(k)
    }

    fn on_start(
        &mut self,
        qname: String,
        attrs: Vec<(String, String)>,
        start: usize,
        empty: bool,
    ) -> Result<Option<StreamEvent>, XmlError> {
        let (prefix, local) = split_qname(&qname);
        match self.depth {
            0 => {
                if empty {
                    return Err(XmlError::new(
                        StreamCondition::BadFormat,
                        "the stream header is empty",
                    ));
                }
                self.open_stream(prefix, local, attrs).map(Some)
            }
            1 => {
                let elem_ns = match prefix {
                    None => attr_of(&attrs, "xmlns")
                        .map(str::to_string)
                        .unwrap_or_else(|| self.default_ns.clone()),
                    Some(p) => {
                        let decl = format!("xmlns:{p}");
                        match attr_of(&attrs, &decl) {
                            Some(v) => v.to_string(),
                            None => match self.stream_prefixes.iter().find(|(k, _)| k == p) {
                                Some((_, v)) => v.clone(),
                                None => return Err(XmlError::nwf(format!("unbound prefix {p}"))),
                            },
                        }
                    }
                };
                check_declarations(prefix, &attrs)?;
                self.check_attr_prefixes(&attrs, 2)?;
                let top = TopElement {
                    name: local.to_string(),
                    ns: elem_ns,
                    attrs,
                    raw: Bytes::new(),
                    head_len: self.pos - start,
                    empty,
                };
                // The element starts the buffer from now on.
                let _ = self.take_front(start);
                if empty {
                    let len = self.pos;
                    let raw = self.take_front(len).freeze();
                    self.inner_prefixes.clear();
                    return Ok(Some(StreamEvent::Element(TopElement { raw, ..top })));
                }
                self.current = Some(top);
                self.open.clear();
                self.open.push(qname.clone());
                self.depth = 2;
                Ok(None)
            }
            d => {
                if d > self.limits.max_depth {
                    return Err(XmlError::new(
                        StreamCondition::PolicyViolation,
                        "elements nested too deep",
                    ));
                }
                check_declarations(prefix, &attrs)?;
                for (k, v) in &attrs {
                    if let Some(p) = k.strip_prefix("xmlns:") {
                        self.inner_prefixes.push((d, p.to_string(), v.clone()));
                    }
                }
                if let Some(p) = prefix {
                    self.check_prefix(p)?;
                }
                self.check_attr_prefixes(&attrs, d)?;
                if !empty {
                    self.open.push(qname);
                    self.depth += 1;
                } else {
                    self.inner_prefixes.retain(|(dd, _, _)| *dd < d);
                }
                Ok(None)
            }
        }
    }

    fn check_prefix(&self, p: &str) -> Result<(), XmlError> {
        self.namespace_of(p).map(|_| ())
    }

    /// The namespace prefix `p` stands for here (the innermost binding).
    fn namespace_of(&self, p: &str) -> Result<&str, XmlError> {
        match p {
            "xml" => return Ok(ns::XML),
            "xmlns" => return Ok(XMLNS),
            _ => {}
        }
        if let Some((_, _, v)) = self.inner_prefixes.iter().rev().find(|(_, k, _)| k == p) {
            return Ok(v);
        }
        match self.stream_prefixes.iter().find(|(k, _)| k == p) {
            Some((_, v)) => Ok(v),
            None => Err(XmlError::nwf(format!("unbound prefix {p}"))),
        }
    }

    fn check_attr_prefixes(
        &mut self,
        attrs: &[(String, String)],
        depth: usize,
    ) -> Result<(), XmlError> {
        if depth == 2 {
            for (k, v) in attrs {
                if let Some(p) = k.strip_prefix("xmlns:") {
                    self.inner_prefixes.push((1, p.to_string(), v.clone()));
                }
            }
        }
        // Namespaces in XML §6.3: no two attributes with one expanded name
        // (`a:k` and `b:k` with a and b bound to one namespace). A reader
        // that checks this, as every namespace-aware client does, would
        // drop the connection that carried such an element to it.
        let mut named: Vec<(&str, &str)> = Vec::new();
        for (k, _) in attrs {
            if let (Some(p), local) = split_qname(k) {
                let n = self.namespace_of(p)?;
                if p == "xmlns" {
                    continue;
                }
                if named.iter().any(|&(nn, l)| nn == n && l == local) {
                    return Err(XmlError::nwf(format!(
                        "two attributes {local} in namespace {n}"
                    )));
                }
                named.push((n, local));
            }
        }
        Ok(())
    }

    fn on_end(&mut self, qname: &str) -> Result<Option<StreamEvent>, XmlError> {
        match self.depth {
            0 => Err(XmlError::nwf("end tag before the stream header")),
            1 => {
                let (prefix, local) = split_qname(qname);
                let ok_prefix = match prefix {
                    Some(p) => self
                        .stream_prefixes
                        .iter()
                        .any(|(k, v)| k == p && v == ns::STREAM),
                    None => false,
                };
                if local != "stream" || !ok_prefix {
                    return Err(XmlError::nwf(format!("unexpected end tag {qname}")));
                }
                self.depth = 0;
                Ok(Some(StreamEvent::Close))
            }
            2 => {
                let Some(mut top) = self.current.take() else {
                    return Err(XmlError::nwf("end tag without a start tag"));
                };
                if self.open.pop().as_deref() != Some(qname) {
                    return Err(XmlError::nwf(format!("mismatched end tag {qname}")));
                }
                self.inner_prefixes.clear();
                self.depth = 1;
                let len = self.pos;
                if len > self.limits.max_stanza_bytes {
                    return Err(XmlError::new(
                        StreamCondition::PolicyViolation,
                        format!("stanza larger than {} bytes", self.limits.max_stanza_bytes),
                    ));
                }
                top.raw = self.take_front(len).freeze();
                Ok(Some(StreamEvent::Element(top)))
            }
            d => {
                let Some(open) = self.open.pop() else {
                    return Err(XmlError::nwf("end tag without a start tag"));
                };
                if open != qname {
                    return Err(XmlError::nwf(format!("mismatched end tag {qname}")));
                }
                self.inner_prefixes.retain(|(dd, _, _)| *dd < d - 1);
                self.depth -= 1;
                Ok(None)
            }
        }
    }

    fn open_stream(
        &mut self,
        prefix: Option<&str>,
        local: &str,
        attrs: Vec<(String, String)>,
    ) -> Result<StreamEvent, XmlError> {
        let mut header = StreamHeader::default();
        let mut prefixes = Vec::new();
        for (k, v) in attrs {
            match k.as_str() {
                "to" => header.to = Some(v),
                "from" => header.from = Some(v),
                "id" => header.id = Some(v),
                "version" => header.version = Some(v),
                "xml:lang" => header.lang = Some(v),
                "xmlns" => header.default_ns = Some(v),
                _ => {
                    if let Some(p) = k.strip_prefix("xmlns:") {
                        prefixes.push((p.to_string(), v));
                    }
                }
            }
        }
        // RFC 6120 §4.9.3.10 invalid-namespace: the stream element itself must
        // be qualified by the streams namespace.
        let stream_ns = match prefix {
            Some(p) => prefixes
                .iter()
                .find(|(k, _)| k == p)
                .map(|(_, v)| v.as_str()),
            None => header.default_ns.as_deref(),
        };
        if local != "stream" || stream_ns != Some(ns::STREAM) {
            return Err(XmlError::new(
                StreamCondition::InvalidNamespace,
                "the stream element must be <stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
            ));
        }
        if prefix.is_none() {
            // <stream xmlns='http://etherx.jabber.org/streams'> leaves no content namespace.
            return Err(XmlError::new(
                StreamCondition::InvalidNamespace,
                "missing content namespace",
            ));
        }
        self.stream_prefixes = prefixes;
        self.default_ns = header.default_ns.clone().unwrap_or_default();
        self.depth = 1;
        Ok(StreamEvent::Open(header))
    }
}

/// The name and attributes of a start tag, checked.
fn read_tag(
    s: &BytesStart<'_>,
    max_attrs: usize,
) -> Result<(String, Vec<(String, String)>), XmlError> {
    let qname = s.name().as_ref().to_string();
    check_name(&qname)?;
    let mut attrs: Vec<(String, String)> = Vec::new();
    for a in s.attributes().with_checks(true) {
        let a = a.map_err(|e| XmlError::nwf(e.to_string()))?;
        if attrs.len() >= max_attrs {
            return Err(XmlError::new(
                StreamCondition::PolicyViolation,
                "too many attributes",
            ));
        }
        let key = a.key.as_ref().to_string();
        check_name(&key)?;
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError::nwf(e.to_string()))?;
        check_chars(&value)?;
        attrs.push((key, value.into_owned()));
    }
    Ok((qname, attrs))
}

fn attr_of<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The namespace of `xmlns` declarations (Namespaces in XML §3).
const XMLNS: &str = "http://www.w3.org/2000/xmlns/";

/// Namespaces in XML §3 and §5: the declarations of one start tag, and
/// its element's prefix. `xml` may be bound only to its own namespace and
/// nothing else to it, `xmlns` and its namespace never, no prefix may be
/// undeclared (XML 1.0 namespaces), and no default namespace may be
/// either reserved one. An element may not take the `xml` prefix either
/// (it would come out as the XML namespace made default, which no reader
/// accepts).
fn check_declarations(prefix: Option<&str>, attrs: &[(String, String)]) -> Result<(), XmlError> {
    if let Some(p @ ("xml" | "xmlns")) = prefix {
        return Err(XmlError::nwf(format!(
            "an element cannot have the prefix {p}"
        )));
    }
    for (k, v) in attrs {
        let bad = if k == "xmlns" {
            v == ns::XML || v == XMLNS
        } else if let Some(p) = k.strip_prefix("xmlns:") {
            match p {
                "xml" => v != ns::XML,
                "xmlns" => true,
                _ => v.is_empty() || v == ns::XML || v == XMLNS,
            }
        } else {
            false
        };
        if bad {
            return Err(XmlError::nwf(format!(
                "the declaration {k}='{v}' is not allowed"
            )));
        }
    }
    Ok(())
}

/// Split `prefix:local`.
pub fn split_qname(q: &str) -> (Option<&str>, &str) {
    match q.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, q),
    }
}

/// XML 1.0 Name production, checked loosely but enough that nothing we
/// forward breaks another parser.
fn check_name(n: &str) -> Result<(), XmlError> {
    let mut chars = n.chars();
    let Some(first) = chars.next() else {
        return Err(XmlError::nwf("empty name"));
    };
    if !is_name_start_char(first)
        || !chars.all(is_name_char)
        || n.matches(':').count() > 1
        || n.ends_with(':')
        || n.starts_with(':')
    {
        return Err(XmlError::nwf(format!("invalid name {n:?}")));
    }
    Ok(())
}

/// XML 1.0 (fifth edition) NameStartChar.
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        ':' | 'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
        && c != '\u{FEFF}'
}

/// XML 1.0 (fifth edition) NameChar.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// XML 1.0 Char production: no C0 controls other than tab, CR, LF; no
/// U+FFFE/U+FFFF.
fn check_chars(s: &str) -> Result<(), XmlError> {
    let bad = s
        .bytes()
        .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'));
    if bad || s.contains(['\u{FFFE}', '\u{FFFF}']) {
        return Err(XmlError::nwf("character not allowed in XML"));
    }
    Ok(())
}

fn check_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<(), XmlError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => check_chars(c.encode_utf8(&mut [0u8; 4])),
            _ => Err(XmlError::nwf("invalid character reference")),
        };
    }
    match &**r {
        "amp" | "lt" | "gt" | "quot" | "apos" => Ok(()),
        _ => Err(XmlError::new(
            StreamCondition::RestrictedXml,
            "undefined entity",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

    fn all_events(p: &mut StreamParser) -> Result<Vec<StreamEvent>, XmlError> {
        let mut v = Vec::new();
        while let Some(e) = p.next_event()? {
            v.push(e);
        }
        Ok(v)
    }

    fn parse_whole(input: &str) -> Result<Vec<StreamEvent>, XmlError> {
        let mut p = StreamParser::new(Limits::default());
        p.feed(input.as_bytes());
        all_events(&mut p)
    }

    #[test]
    fn header_stanzas_and_close() {
        let input = format!(
            "{HEADER} <message to='a@b'><body>hi &amp; <b/></body></message>\n<presence/></stream:stream>"
        );
        let ev = parse_whole(&input).expect("parse");
        assert_eq!(ev.len(), 4);
        match &ev[0] {
            StreamEvent::Open(h) => {
                assert_eq!(h.to.as_deref(), Some("localhost"));
                assert_eq!(h.default_ns.as_deref(), Some("jabber:client"));
            }
            other => panic!("{other:?}"),
        }
        match &ev[1] {
            StreamEvent::Element(e) => {
                assert_eq!(e.name, "message");
                assert_eq!(e.ns, "jabber:client");
                assert_eq!(
                    &e.raw[..],
                    b"<message to='a@b'><body>hi &amp; <b/></body></message>"
                );
                assert_eq!(e.head_len, "<message to='a@b'>".len());
            }
            other => panic!("{other:?}"),
        }
        match &ev[2] {
            StreamEvent::Element(e) => assert_eq!(&e.raw[..], b"<presence/>"),
            other => panic!("{other:?}"),
        }
        assert_eq!(ev[3], StreamEvent::Close);
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let input = format!(
            "{HEADER}<iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq> <message><body>\u{e9}t\u{e9} &lt;3 &#x263A;</body></message></stream:stream>"
        );
        let whole = parse_whole(&input).expect("whole");
        let mut p = StreamParser::new(Limits::default());
        let mut got = Vec::new();
        for b in input.as_bytes() {
            p.feed(std::slice::from_ref(b));
            got.extend(all_events(&mut p).expect("bytewise"));
        }
        assert_eq!(got, whole);
    }

    /// The server shrinks the parser after every read (an idle session
    /// holds no buffer). A read that ends right after a `>` inside a
    /// stanza must not lose the stanza's start: split at every `>` and
    /// shrunk after each piece, the events are those of the whole input.
    #[test]
    fn shrinking_between_reads_keeps_a_half_read_stanza() {
        let input = format!(
            "{HEADER}<message to='b@x' id='m1'><body>hello</body><x xmlns='urn:e'><y/></x></message><iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
        );
        let whole = parse_whole(&input).expect("whole");
        let mut p = StreamParser::new(Limits::default());
        let mut got = Vec::new();
        for piece in input.split_inclusive('>') {
            p.feed(piece.as_bytes());
            got.extend(all_events(&mut p).expect("piecewise"));
            p.shrink();
        }
        assert_eq!(got, whole);
    }

    #[test]
    fn restricted_xml_is_refused() {
        for bad in ["<!-- c -->", "<?pi x?>", "<!DOCTYPE x>"] {
            let input = format!("{HEADER}{bad}");
            let err = parse_whole(&input).expect_err(bad);
            assert_eq!(err.condition, StreamCondition::RestrictedXml, "{bad}");
        }
        let err = parse_whole(&format!("{HEADER}<message><body>&foo;</body></message>"))
            .expect_err("entity");
        assert_eq!(err.condition, StreamCondition::RestrictedXml);
    }

    /// Namespaces in XML: what parses as XML but breaks its namespace rules
    /// ends the stream (a subscriber's or contact's reader would end its
    /// own on it), and what keeps them passes.
    #[test]
    fn namespace_ill_formed_input_is_not_well_formed() {
        for bad in [
            "<message><e xmlns='urn:e' xmlns:a='urn:z' xmlns:b='urn:z' a:k='1' b:k='2'/></message>",
            "<message xmlns:a='urn:z' xmlns:b='urn:z' a:k='1' b:k='2'/>",
            "<message xmlns:a='urn:z'><e xmlns:b='urn:z'><f a:k='1' b:k='2'/></e></message>",
            "<message><e xmlns:p='http://www.w3.org/XML/1998/namespace'/></message>",
            "<message><e xmlns:xml='urn:x'/></message>",
            "<message><e xmlns:xmlns='urn:x'/></message>",
            "<message><e xmlns:p='http://www.w3.org/2000/xmlns/'/></message>",
            "<message><e xmlns='http://www.w3.org/XML/1998/namespace'/></message>",
            "<message><e xmlns:p=''/></message>",
            "<message><xml:e/></message>",
            "<message><e xml:k='1' xml:k='2'/></message>",
        ] {
            let err = parse_whole(&format!("{HEADER}{bad}")).expect_err(bad);
            assert_eq!(err.condition, StreamCondition::NotWellFormed, "{bad}");
        }
        for good in [
            "<message><e xmlns:a='urn:z' xmlns:b='urn:y' a:k='1' b:k='2' k='3' xml:lang='en'/></message>",
            "<message xmlns:a='urn:1'><e xmlns:a='urn:2' a:k='1'><f a:k='2'/></e></message>",
            "<message><e xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/><f xmlns=''/></message>",
        ] {
            parse_whole(&format!("{HEADER}{good}</stream:stream>")).expect(good);
        }
    }

    #[test]
    fn malformed_input_is_not_well_formed() {
        for bad in [
            "<message></presence>",
            "<message a='1' a='2'/>",
            "<message><body>\u{1}</body></message>",
            "hello",
            "<message xmlns:x='y'><z:b/></message>",
            "<1abc/>",
        ] {
            let input = format!("{HEADER}{bad}");
            let err = parse_whole(&input).expect_err(bad);
            assert_eq!(err.condition, StreamCondition::NotWellFormed, "{bad}");
        }
    }

    #[test]
    fn a_byte_order_mark_may_only_open_the_stream() {
        let ev = parse_whole(&format!("\u{FEFF}{HEADER}<presence/>")).expect("bom at the start");
        assert_eq!(ev.len(), 2);
        let err = parse_whole(&format!("{HEADER}\u{FEFF}<presence/>")).expect_err("bom inside");
        assert_eq!(err.condition, StreamCondition::NotWellFormed);
        // Found by fuzzing: a BOM as an element name.
        let err = parse_whole(&format!("{HEADER}<\u{FEFF}/>")).expect_err("bom as a name");
        assert_eq!(err.condition, StreamCondition::NotWellFormed);
    }

    #[test]
    fn wrong_stream_namespace_is_invalid_namespace() {
        let err = parse_whole("<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong'>")
            .expect_err("ns");
        assert_eq!(err.condition, StreamCondition::InvalidNamespace);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_stanza_bytes: 100,
            max_depth: 3,
            max_attrs: 2,
        };
        let mut p = StreamParser::new(limits);
        p.feed(HEADER.as_bytes());
        p.feed(b"<message><body>");
        p.feed(&[b'a'; 200]);
        all_events(&mut p).map(|_| ()).unwrap_or(());
        let mut p2 = StreamParser::new(limits);
        p2.feed(HEADER.as_bytes());
        p2.feed(b"<message><body>");
        p2.feed(&[b'a'; 200]);
        let err = all_events(&mut p2).expect_err("size");
        assert_eq!(err.condition, StreamCondition::PolicyViolation);

        let mut p = StreamParser::new(limits);
        p.feed(HEADER.as_bytes());
        p.feed(b"<a><b><c><d>");
        assert_eq!(
            all_events(&mut p).expect_err("depth").condition,
            StreamCondition::PolicyViolation
        );

        let mut p = StreamParser::new(limits);
        p.feed(HEADER.as_bytes());
        p.feed(b"<a x='1' y='2' z='3'/>");
        assert_eq!(
            all_events(&mut p).expect_err("attrs").condition,
            StreamCondition::PolicyViolation
        );
    }

    #[test]
    fn reset_keeps_pending_bytes() {
        let mut p = StreamParser::new(Limits::default());
        p.feed(HEADER.as_bytes());
        p.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>x</auth>");
        let ev = all_events(&mut p).expect("events");
        assert_eq!(ev.len(), 2);
        match &ev[1] {
            StreamEvent::Element(e) => assert_eq!(e.ns, crate::ns::SASL),
            other => panic!("{other:?}"),
        }
        p.reset();
        p.feed(HEADER.as_bytes());
        assert!(matches!(
            all_events(&mut p).expect("restart").first(),
            Some(StreamEvent::Open(_))
        ));
    }

    #[test]
    fn whitespace_before_a_restarted_streams_declaration_is_allowed() {
        // go-xmpp sends "\n" after </auth>, then "<?xml ...?><stream:stream>"
        // in the same read after <success/>: the newline was left in the
        // buffer and the declaration refused as restricted-xml.
        for gap in ["\n", " \r\n\t ", ""] {
            let mut p = StreamParser::new(Limits::default());
            p.feed(HEADER.as_bytes());
            p.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>x</auth>");
            p.feed(gap.as_bytes());
            assert_eq!(all_events(&mut p).expect("first stream").len(), 2);
            p.reset();
            p.feed(HEADER.as_bytes());
            assert!(
                matches!(
                    all_events(&mut p).expect("restart").first(),
                    Some(StreamEvent::Open(_))
                ),
                "gap {gap:?}"
            );
            // Byte by byte, the same.
            let mut p = StreamParser::new(Limits::default());
            for b in gap.bytes().chain(HEADER.bytes()) {
                p.feed(&[b]);
                all_events(&mut p).expect("byte by byte");
            }
        }
        // A declaration after anything but whitespace is still refused.
        let mut p = StreamParser::new(Limits::default());
        p.feed(HEADER.as_bytes());
        p.feed(b"<a/><?xml version='1.0'?>");
        assert_eq!(
            all_events(&mut p).expect_err("decl").condition,
            StreamCondition::RestrictedXml
        );
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"<>/='\"&;:ab xmlns!-?[]CDATA\x00\xc3\xa9\xff";
        for _ in 0..3000 {
            let mut p = StreamParser::new(Limits {
                max_stanza_bytes: 4096,
                max_depth: 8,
                max_attrs: 8,
            });
            p.feed(HEADER.as_bytes());
            let mut buf = Vec::new();
            for _ in 0..64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            for chunk in buf.chunks(7) {
                p.feed(chunk);
                if all_events(&mut p).is_err() {
                    break;
                }
            }
        }
    }
}
