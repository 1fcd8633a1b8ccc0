//! Stanza envelopes (RFC 6120 §8): the kind, addresses, id and type of a
//! `<message/>`, `<presence/>` or `<iq/>`, parsed from the start tag only,
//! with the raw bytes kept for forwarding.

use bytes::Bytes;

use crate::element::{Element, ParseError, escape};
use crate::error::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::xml::TopElement;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }

    pub fn from_name(n: &str) -> Option<Kind> {
        match n {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
}

/// Why a top-level element is not a usable stanza.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a stanza")]
    NotAStanza,
    /// The stanza is answerable with this error (e.g. jid-malformed); the
    /// stanza is given back with the unusable address left out.
    #[error("bad stanza: {error:?}")]
    Bad {
        error: StanzaError,
        stanza: Box<Stanza>,
    },
}

/// A stanza as it travels: envelope fields plus its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    pub kind: Kind,
    pub to: Option<Jid>,
    pub from: Option<Jid>,
    pub id: Option<String>,
    /// The `type` attribute as written, if any.
    pub stype: Option<String>,
    /// Attributes other than to/from (for rewriting the start tag).
    pub attrs: Vec<(String, String)>,
    pub raw: Bytes,
    pub head_len: usize,
    pub empty: bool,
    /// When its cause was read and the span it continues (not part of
    /// the stanza's XML).
    pub trail: crate::trail::Trail,
}

impl Stanza {
    /// Build the envelope of a top-level element in the content namespace.
    pub fn from_top(top: TopElement) -> Result<Stanza, EnvelopeError> {
        let kind = Kind::from_name(&top.name).ok_or(EnvelopeError::NotAStanza)?;
        let mut to = None;
        let mut from = None;
        let mut id = None;
        let mut stype = None;
        let mut attrs = Vec::with_capacity(top.attrs.len());
        for (k, v) in top.attrs {
            match k.as_str() {
                "to" => to = Some(v),
                "from" => from = Some(v),
                _ => {
                    if k == "id" {
                        id = Some(v.clone());
                    } else if k == "type" {
                        stype = Some(v.clone());
                    }
                    attrs.push((k, v));
                }
            }
        }
        let mut st = Stanza {
            kind,
            to: None,
            from: None,
            id,
            stype,
            attrs,
            raw: top.raw,
            head_len: top.head_len,
            empty: top.empty,
            trail: Default::default(),
        };
        let from = from.map(|f| Jid::parse(&f));
        let to = to.map(|t| Jid::parse(&t));
        let mut bad = false;
        match from {
            Some(Ok(f)) => st.from = Some(f),
            Some(Err(_)) => bad = true,
            None => {}
        }
        match to {
            Some(Ok(t)) => st.to = Some(t),
            Some(Err(_)) => bad = true,
            None => {}
        }
        if bad {
            let error = StanzaError::new(StanzaCondition::JidMalformed);
            return Err(EnvelopeError::Bad {
                error,
                stanza: Box::new(st),
            });
        }
        Ok(st)
    }

    /// A stanza the server writes itself, without parsing it: the start
    /// tag names `from` and then `attrs` in their order (an `id` or `type`
    /// among them is the stanza's), `inner` is its content as XML (in the
    /// `jabber:client` namespace); empty, the element is too.
    pub fn written(
        kind: Kind,
        from: Option<Jid>,
        attrs: Vec<(String, String)>,
        inner: &str,
    ) -> Stanza {
        let id = attrs
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.clone());
        let stype = attrs
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.clone());
        let mut st = Stanza {
            kind,
            to: None,
            from: None,
            id,
            stype,
            attrs,
            raw: Bytes::new(),
            head_len: 0,
            empty: inner.is_empty(),
            trail: Default::default(),
        };
        let (head, head_len) = st.rewrite_head(from.as_ref(), None);
        if st.empty {
            st.raw = head;
        } else {
            let name = kind.name();
            let mut out = Vec::with_capacity(head.len() + inner.len() + name.len() + 3);
            out.extend_from_slice(&head);
            out.extend_from_slice(inner.as_bytes());
            out.extend_from_slice(b"</");
            out.extend_from_slice(name.as_bytes());
            out.push(b'>');
            st.raw = Bytes::from(out);
        }
        st.head_len = head_len;
        st.from = from;
        st
    }

    /// Parse a stanza the server wrote itself (for its envelope).
    pub fn parse(raw: &[u8]) -> Result<Stanza, EnvelopeError> {
        let mut p = crate::xml::StreamParser::new(crate::xml::Limits {
            max_stanza_bytes: raw.len() + 1024,
            ..crate::xml::Limits::default()
        });
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        p.feed(raw);
        let _ = p.next_event();
        match p.next_event() {
            Ok(Some(crate::xml::StreamEvent::Element(e))) => Stanza::from_top(e),
            _ => Err(EnvelopeError::NotAStanza),
        }
    }

    pub fn stype(&self) -> &str {
        self.stype.as_deref().unwrap_or("")
    }

    pub fn is_error(&self) -> bool {
        self.stype() == "error"
    }

    /// Whether its start tag declares `xmlns='ns'` itself (rather than
    /// taking the stream's namespace).
    pub fn declares_ns(&self, ns: &str) -> bool {
        self.attrs.iter().any(|(k, v)| k == "xmlns" && v == ns)
    }

    /// The stanza moved to another stream's namespace (RFC 6120 §4.8.3):
    /// a top-level `xmlns='from_ns'` becomes `to_ns`, or is dropped with
    /// `None` (the stanza then takes the namespace of the stream it is
    /// written on). Unchanged, and not copied, without one.
    pub fn renamespaced(self, from_ns: &str, to_ns: Option<&str>) -> Stanza {
        if !self.declares_ns(from_ns) {
            return self;
        }
        let attrs = self
            .attrs
            .iter()
            .filter_map(|(k, v)| match (k == "xmlns" && v == from_ns, to_ns) {
                (false, _) => Some((k.clone(), v.clone())),
                (true, Some(n)) => Some((k.clone(), n.to_string())),
                (true, None) => None,
            })
            .collect();
        let (from, to) = (self.from.clone(), self.to.clone());
        Stanza { attrs, ..self }.restamped(from, to)
    }

    /// The stanza's bytes with `from` and `to` set as given.
    pub fn rewrite(&self, from: Option<&Jid>, to: Option<&Jid>) -> Bytes {
        self.rewrite_head(from, to).0
    }

    /// The same stanza with `from` and `to` set as given (raw bytes too).
    pub fn restamped(&self, from: Option<Jid>, to: Option<Jid>) -> Stanza {
        let (raw, head_len) = self.rewrite_head(from.as_ref(), to.as_ref());
        Stanza {
            from,
            to,
            raw,
            head_len,
            ..self.clone()
        }
    }

    /// New bytes and the new start tag's length.
    fn rewrite_head(&self, from: Option<&Jid>, to: Option<&Jid>) -> (Bytes, usize) {
        let mut s = String::with_capacity(self.raw.len() + 64);
        s.push('<');
        s.push_str(self.kind.name());
        if let Some(f) = from {
            s.push_str(" from='");
            s.push_str(&escape(f.as_str()));
            s.push('\'');
        }
        if let Some(t) = to {
            s.push_str(" to='");
            s.push_str(&escape(t.as_str()));
            s.push('\'');
        }
        for (k, v) in &self.attrs {
            s.push(' ');
            s.push_str(k);
            s.push_str("='");
            s.push_str(&escape(v));
            s.push('\'');
        }
        if self.empty {
            s.push_str("/>");
            let n = s.len();
            return (Bytes::from(s), n);
        }
        s.push('>');
        let head = s.len();
        let mut out = s.into_bytes();
        out.extend_from_slice(self.raw.get(self.head_len..).unwrap_or_default());
        (Bytes::from(out), head)
    }

    /// Parse the whole stanza into an element tree (for modules that need
    /// the payload).
    pub fn element(&self, default_ns: &str) -> Result<Element, ParseError> {
        Element::parse(&self.raw, default_ns, &[])
    }

    /// The error reply to this stanza (RFC 6120 §8.3.1): addresses swapped,
    /// `type='error'`, the same id. It comes from the stanza's `to`; a
    /// stanza without one was handled by the server on behalf of the
    /// sender's account (RFC 6120 §10.3.3), and its reply then carries
    /// `fallback_from` or, with `None`, no 'from' at all (§8.1.2.1). Only
    /// a stanza whose 'to' could not be read (jid-malformed) names the
    /// server there.
    pub fn error_reply(&self, err: &StanzaError, fallback_from: Option<&Jid>) -> Bytes {
        self.error_reply_with(err, fallback_from, None)
    }

    /// [`Stanza::error_reply`] that carries `payload` before the
    /// `<error/>` (RFC 6120 §8.3.1 lets an error include XML of the
    /// request; XEP-0060 §8.8.2.4 returns the refused entries so).
    pub fn error_reply_with(
        &self,
        err: &StanzaError,
        fallback_from: Option<&Jid>,
        payload: Option<&crate::Element>,
    ) -> Bytes {
        let mut s = format!("<{}", self.kind.name());
        if let Some(from) = self.to.as_ref().or(fallback_from) {
            s.push_str(&format!(" from='{}'", escape(from.as_str())));
        }
        if let Some(to) = &self.from {
            s.push_str(&format!(" to='{}'", escape(to.as_str())));
        }
        if let Some(id) = &self.id {
            s.push_str(&format!(" id='{}'", escape(id)));
        }
        s.push_str(" type='error'>");
        if let Some(p) = payload {
            p.write(&mut s, crate::ns::CLIENT);
        }
        s.push_str(&err.to_xml());
        s.push_str(&format!("</{}>", self.kind.name()));
        Bytes::from(s)
    }
}

/// `raw`, a stanza the server wrote without a 'to', with `to` set on its
/// start tag: the per-session part of a delivery addressed to many.
pub fn with_to(raw: &[u8], to: &str) -> Bytes {
    // One buffer, written once: this runs for every recipient of a
    // fan-out.
    let to = escape(to);
    let mut out = Vec::with_capacity(raw.len() + to.len() + 6);
    write_with_to(&mut out, raw, &to);
    Bytes::from(out)
}

/// [`with_to`] appended to `out`, `to` escaped already.
pub fn write_with_to(out: &mut Vec<u8>, raw: &[u8], to: &str) {
    // After '<' and the element name.
    let name_end = raw
        .iter()
        .skip(1)
        .position(|b| matches!(b, b' ' | b'/' | b'>' | b'\t' | b'\n' | b'\r'))
        .map_or(raw.len(), |p| p + 1);
    out.extend_from_slice(&raw[..name_end]);
    out.extend_from_slice(b" to='");
    out.extend_from_slice(to.as_bytes());
    out.push(b'\'');
    out.extend_from_slice(&raw[name_end..]);
}

/// RFC 6120 §8.2.3 rule 6: an IQ get or set carries exactly one payload
/// child, whichever it is; anything else is `bad-request`. Every IQ
/// dispatch (the edge's own answers and the core's handlers) goes through
/// this one check.
pub fn iq_payload(iq: &Element) -> Result<&Element, StanzaError> {
    let mut children = iq.elements();
    match (children.next(), children.next()) {
        (Some(p), None) => Ok(p),
        _ => Err(StanzaError::with_text(
            StanzaCondition::BadRequest,
            "an IQ get or set carries exactly one child element",
        )),
    }
}

/// Build an IQ result with an optional payload.
pub fn iq_result(id: &str, from: Option<&Jid>, to: &Jid, payload: Option<&Element>) -> Bytes {
    let mut s = String::with_capacity(96);
    s.push_str("<iq type='result' id='");
    s.push_str(&escape(id));
    s.push('\'');
    if let Some(f) = from {
        s.push_str(" from='");
        s.push_str(&escape(f.as_str()));
        s.push('\'');
    }
    s.push_str(" to='");
    s.push_str(&escape(to.as_str()));
    s.push('\'');
    match payload {
        Some(p) => {
            s.push('>');
            p.write(&mut s, crate::ns::CLIENT);
            s.push_str("</iq>");
        }
        None => s.push_str("/>"),
    }
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stanza_changes_namespace_only_where_it_declares_one() {
        let s = Stanza::parse(
            b"<message xmlns='jabber:client' to='a@b' id='1'><body>x</body></message>",
        )
        .expect("stanza");
        let moved = s
            .clone()
            .renamespaced(crate::ns::CLIENT, Some(crate::ns::SERVER));
        assert!(moved.declares_ns(crate::ns::SERVER));
        assert!(
            std::str::from_utf8(&moved.raw)
                .expect("utf-8")
                .contains("xmlns='jabber:server'")
        );
        let dropped = s.renamespaced(crate::ns::CLIENT, None);
        assert!(
            !std::str::from_utf8(&dropped.raw)
                .expect("utf-8")
                .contains("xmlns")
        );
        let plain = Stanza::parse(b"<message to='a@b'/>").expect("stanza");
        assert_eq!(
            plain.clone().renamespaced(crate::ns::CLIENT, None).raw,
            plain.raw
        );
    }

    use super::*;
    use crate::xml::{Limits, StreamEvent, StreamParser};

    fn stanza(xml: &str) -> Stanza {
        let mut p = StreamParser::new(Limits::default());
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        p.feed(xml.as_bytes());
        let _ = p.next_event();
        match p.next_event() {
            Ok(Some(StreamEvent::Element(e))) => Stanza::from_top(e).expect("stanza"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_written_stanza_is_what_parsing_its_bytes_gives() {
        let from = Jid::parse("room@muc.example/A & B").expect("jid");
        for inner in ["<body>x &lt; y</body>", ""] {
            let w = Stanza::written(
                Kind::Message,
                Some(from.clone()),
                vec![
                    ("type".into(), "groupchat".into()),
                    ("id".into(), "it's".into()),
                ],
                inner,
            );
            let p = Stanza::parse(&w.raw).expect("parses");
            assert_eq!(w.from, p.from);
            assert_eq!(w.id.as_deref(), Some("it's"));
            assert_eq!(w.id, p.id);
            assert_eq!(w.stype, p.stype);
            assert_eq!(w.attrs, p.attrs);
            assert_eq!(w.head_len, p.head_len);
            assert_eq!(w.empty, p.empty);
            let to = Jid::parse("u@example/r").expect("jid");
            assert_eq!(
                w.rewrite(w.from.as_ref(), Some(&to)),
                p.rewrite(p.from.as_ref(), Some(&to))
            );
        }
    }

    #[test]
    fn restamping_twice_keeps_the_payload_once() {
        let s = stanza("<presence id='p' from='x@y/z'><priority>5</priority></presence>");
        let a = Jid::parse("a@b/c").expect("jid");
        let t = Jid::parse("d@e").expect("jid");
        let once = s.restamped(Some(a.clone()), None);
        let twice = once.restamped(Some(a), Some(t));
        assert_eq!(
            &twice.raw[..],
            b"<presence from='a@b/c' to='d@e' id='p'><priority>5</priority></presence>"
        );
        let e = Stanza::from_top(crate::xml::TopElement {
            name: "presence".into(),
            ns: crate::ns::CLIENT.into(),
            attrs: vec![],
            raw: twice.raw.clone(),
            head_len: twice.head_len,
            empty: false,
        });
        assert!(e.is_ok());
    }

    #[test]
    fn with_to_addresses_a_stanza_without_to() {
        let s = with_to(
            b"<message from='pubsub.x' id='n1'><event/></message>",
            "a@x/r",
        );
        assert_eq!(
            &s[..],
            b"<message to='a@x/r' from='pubsub.x' id='n1'><event/></message>"
        );
        let s = with_to(b"<message/>", "a'b@x");
        assert_eq!(&s[..], b"<message to='a&apos;b@x'/>");
        let parsed = Stanza::parse(&with_to(b"<message from='p'><b/></message>", "c@d/e"))
            .expect("a stanza");
        assert_eq!(parsed.to.map(|j| j.to_string()).as_deref(), Some("c@d/e"));
    }

    #[test]
    fn an_iq_payload_is_exactly_one_child() {
        let el = |x: &str| Element::parse(x.as_bytes(), crate::ns::CLIENT, &[]).expect("xml");
        let one = el("<iq type='get' id='a'> <ping xmlns='urn:xmpp:ping'/> </iq>");
        assert_eq!(iq_payload(&one).expect("one").name, "ping");
        for bad in [
            "<iq type='get' id='a'/>",
            "<iq type='get' id='a'>text only</iq>",
            "<iq type='get' id='a'><ping xmlns='urn:xmpp:ping'/><query xmlns='jabber:iq:version'/></iq>",
            "<iq type='get' id='a'><query xmlns='jabber:iq:version'/><ping xmlns='urn:xmpp:ping'/></iq>",
        ] {
            let e = iq_payload(&el(bad)).expect_err(bad);
            assert_eq!(e.condition, StanzaCondition::BadRequest);
        }
    }

    #[test]
    fn an_error_reply_to_a_stanza_without_to_comes_from_the_account_side() {
        let s = stanza("<iq type='get' id='q' from='a@b/c'><x xmlns='y'/></iq>");
        let err = StanzaError::new(StanzaCondition::ServiceUnavailable);
        let raw = s.error_reply(&err, None);
        assert!(raw.starts_with(b"<iq to='a@b/c' id='q' type='error'>"));
        let server = Jid::parse("b").expect("jid");
        let raw = s.error_reply(&err, Some(&server));
        assert!(raw.starts_with(b"<iq from='b' to='a@b/c'"));
        let s = stanza("<iq type='get' id='q' from='a@b/c' to='d@b'><x xmlns='y'/></iq>");
        assert!(
            s.error_reply(&err, None)
                .starts_with(b"<iq from='d@b' to='a@b/c'")
        );
    }

    #[test]
    fn jid_malformed_addresses_are_reported_with_the_stanza() {
        let mut p = StreamParser::new(Limits::default());
        p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message to='a@b@c' id='m'/>");
        let _ = p.next_event();
        let Ok(Some(StreamEvent::Element(e))) = p.next_event() else {
            panic!("element")
        };
        match Stanza::from_top(e) {
            Err(EnvelopeError::Bad { error, stanza }) => {
                assert_eq!(error.condition, StanzaCondition::JidMalformed);
                assert_eq!(stanza.id.as_deref(), Some("m"));
            }
            other => panic!("{other:?}"),
        }
    }
}
