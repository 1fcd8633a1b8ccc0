//! The `<body/>` wrapper (XEP-0124 §5, XEP-0206 §2): a client's request
//! read into its attributes and the payloads it carries, the server's
//! responses written, and the stream machine's bytes cut into the units
//! a response carries.

use bytes::Bytes;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::scan::{find, start_tag};

/// The wrapper's namespace.
pub(crate) const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206's attributes (`xmpp:version`, `xmpp:restart`, ...).
pub(crate) const NS_XBOSH: &str = "urn:xmpp:xbosh";
const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// A client's `<body/>`.
#[derive(Debug, Default)]
pub(crate) struct Request {
    /// Attributes without a prefix by their name, `xml:lang`, and those
    /// of XEP-0206's namespace as `xmpp:<name>` whatever prefix the
    /// client bound it to (values unescaped). Others are left out.
    attrs: Vec<(String, String)>,
    /// The payloads as sent, one after the other.
    pub payload: Vec<u8>,
}

impl Request {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// No payload: an empty request (a poll).
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// An XML boolean attribute (`true` or `1`).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.attr(name).map(str::trim), Some("true" | "1"))
    }

    pub fn is_terminate(&self) -> bool {
        self.attr("type") == Some("terminate")
    }
}

/// Read a request. The body must be one `<body/>` in the httpbind
/// namespace (an XML declaration before it is allowed), holding whole
/// elements and whitespace only, with no comments, processing
/// instructions or DTD (§5): anything else is why it is refused.
pub(crate) fn parse(raw: &[u8]) -> Result<Request, &'static str> {
    let text = std::str::from_utf8(raw).map_err(|_| "the body is not UTF-8")?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut req = Request::default();
    // 0: before <body>, 1: inside it, 2+: inside a payload; after </body>
    // `done`.
    let mut depth = 0usize;
    let mut done = false;
    let mut child_start = 0usize;
    loop {
        let before = usize::try_from(reader.buffer_position()).map_err(|_| "too large")?;
        let ev = reader
            .read_event()
            .map_err(|_| "the body is not well-formed XML")?;
        let after = usize::try_from(reader.buffer_position()).map_err(|_| "too large")?;
        match ev {
            Event::Eof => {
                return if done {
                    Ok(req)
                } else {
                    Err("the body ends before </body>")
                };
            }
            _ if done => {
                if let Event::Text(t) = &ev
                    && t.bytes().all(|b| b.is_ascii_whitespace())
                {
                    continue;
                }
                return Err("something follows </body>");
            }
            Event::Decl(_) if depth == 0 => {}
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::Decl(_) => {
                return Err(
                    "comments, processing instructions and DTDs are not allowed (XEP-0124 §5)",
                );
            }
            Event::Start(ref s) | Event::Empty(ref s) if depth == 0 => {
                req.attrs = wrapper_attrs(s)?;
                if matches!(ev, Event::Empty(_)) {
                    done = true;
                } else {
                    depth = 1;
                }
            }
            Event::Start(_) => {
                if depth == 1 {
                    child_start = before;
                }
                depth += 1;
            }
            Event::Empty(_) => {
                if depth == 1 {
                    req.payload.extend_from_slice(slice(raw, before, after)?);
                }
            }
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or("an end tag without a start")?;
                match depth {
                    0 => done = true,
                    1 => req
                        .payload
                        .extend_from_slice(slice(raw, child_start, after)?),
                    _ => {}
                }
            }
            Event::Text(t) => {
                if depth <= 1 && !t.bytes().all(|b| b.is_ascii_whitespace()) {
                    return Err("the body holds character data (XEP-0124 §5)");
                }
            }
            Event::CData(_) | Event::GeneralRef(_) => {
                if depth <= 1 {
                    return Err("the body holds character data (XEP-0124 §5)");
                }
            }
        }
    }
}

fn slice(raw: &[u8], from: usize, to: usize) -> Result<&[u8], &'static str> {
    raw.get(from..to).ok_or("the body is not well-formed XML")
}

/// The `<body>` start tag's attributes, checking its name and namespace.
fn wrapper_attrs(
    s: &quick_xml::events::BytesStart<'_>,
) -> Result<Vec<(String, String)>, &'static str> {
    let mut plain = Vec::new();
    let mut prefixed = Vec::new();
    let mut decls: Vec<(String, String)> = Vec::new();
    let mut default_ns = None;
    for a in s.attributes() {
        let a = a.map_err(|_| "a malformed attribute")?;
        let k = a.key.as_ref().to_string();
        let v = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| "a malformed attribute value")?
            .into_owned();
        if k == "xmlns" {
            default_ns = Some(v);
        } else if let Some(p) = k.strip_prefix("xmlns:") {
            decls.push((p.to_string(), v));
        } else if let Some((p, local)) = k.split_once(':') {
            prefixed.push((p.to_string(), local.to_string(), v));
        } else {
            plain.push((k, v));
        }
    }
    let qname = s.name().as_ref().to_string();
    let ns = match qname.split_once(':') {
        None => default_ns,
        Some((p, _)) => decls.iter().find(|(d, _)| d == p).map(|(_, n)| n.clone()),
    };
    let local = qname.rsplit(':').next().unwrap_or_default();
    if local != "body" || ns.as_deref() != Some(NS_HTTPBIND) {
        return Err(
            "the request is not a <body/> in the http://jabber.org/protocol/httpbind namespace",
        );
    }
    for (p, local, v) in prefixed {
        if p == "xml" {
            plain.push((format!("xml:{local}"), v));
            continue;
        }
        match decls.iter().find(|(d, _)| *d == p) {
            Some((_, n)) if n == NS_XBOSH => plain.push((format!("xmpp:{local}"), v)),
            Some(_) => {}
            None => return Err("an attribute with an undeclared prefix"),
        }
    }
    Ok(plain)
}

/// A response `<body/>` with `attrs` (values escaped here) around
/// `payload`, which is written as it is.
pub(crate) fn response(attrs: &[(&str, String)], payload: &[u8]) -> Bytes {
    let mut s = Vec::with_capacity(96 + payload.len());
    s.extend_from_slice(b"<body xmlns='");
    s.extend_from_slice(NS_HTTPBIND.as_bytes());
    s.push(b'\'');
    let streams = !payload.is_empty();
    if streams {
        s.extend_from_slice(format!(" xmlns:stream='{NS_STREAMS}'").as_bytes());
    }
    if attrs.iter().any(|(k, _)| k.starts_with("xmpp:")) {
        s.extend_from_slice(format!(" xmlns:xmpp='{NS_XBOSH}'").as_bytes());
    }
    for (k, v) in attrs {
        s.extend_from_slice(format!(" {k}='{}'", proto::element::escape(v)).as_bytes());
    }
    if payload.is_empty() {
        s.extend_from_slice(b"/>");
    } else {
        s.push(b'>');
        s.extend_from_slice(payload);
        s.extend_from_slice(b"</body>");
    }
    Bytes::from(s)
}

/// A terminal binding condition (XEP-0124 §17.2): `<body type='terminate'
/// condition='...'/>`.
pub(crate) fn terminate(condition: Option<&str>) -> Bytes {
    let mut attrs = vec![("type", "terminate".to_string())];
    if let Some(c) = condition {
        attrs.push(("condition", c.to_string()));
    }
    response(&attrs, b"")
}

/// One top-level unit of what the stream machine wrote.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// A stream header (not sent over BOSH: the session is the stream).
    Header,
    /// The stream's end.
    End,
    /// `<stream:error/>`, as written.
    Error(Vec<u8>),
    /// An element for the client, its namespace made explicit.
    Payload(String),
}

/// Cut the machine's bytes into units; the count of bytes used (the rest
/// is a unit not complete yet).
pub(crate) fn split(b: &[u8], out: &mut Vec<Unit>) -> usize {
    let mut at = 0;
    loop {
        while at < b.len() && b[at].is_ascii_whitespace() {
            at += 1;
        }
        let rest = &b[at..];
        if rest.is_empty() {
            return at;
        }
        if rest.starts_with(b"<?") {
            match find(rest, b"?>") {
                Some(i) => at += i + 2,
                None => return at,
            }
        } else if rest.starts_with(b"</stream:stream") {
            match find(rest, b">") {
                Some(i) => {
                    out.push(Unit::End);
                    at += i + 1;
                }
                None => return at,
            }
        } else if rest.starts_with(b"<stream:stream") {
            let Some(n) = start_tag(rest) else { return at };
            out.push(Unit::Header);
            at += n;
        } else {
            let Some(n) = crate::ws::element_len(rest) else {
                return at;
            };
            let el = &rest[..n];
            if el.starts_with(b"<stream:error") {
                out.push(Unit::Error(el.to_vec()));
            } else {
                out.push(Unit::Payload(crate::ws::framed(el)));
            }
            at += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_into_attributes_and_payloads() {
        let r = parse(
            b"<?xml version='1.0'?>\n<body rid='10' sid='s' xml:lang='en' xmpp:restart='true' other:x='y' \
              xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmlns:other='urn:o'>\n \
              <message to='a@b'><body>1 &lt; 2</body></message> <presence/>\n</body>\n",
        )
        .expect("valid");
        assert_eq!(r.attr("rid"), Some("10"));
        assert_eq!(r.attr("xml:lang"), Some("en"));
        assert!(r.flag("xmpp:restart"));
        assert_eq!(r.attr("other:x"), None);
        assert_eq!(
            String::from_utf8(r.payload).expect("utf-8"),
            "<message to='a@b'><body>1 &lt; 2</body></message><presence/>"
        );
        let e = parse(b"<b:body xmlns:b='http://jabber.org/protocol/httpbind' rid='1'/>")
            .expect("prefixed");
        assert!(e.is_empty() && e.attr("rid") == Some("1"));
    }

    #[test]
    fn anything_but_a_body_of_whole_elements_is_refused() {
        for bad in [
            "",
            "not xml",
            "<body rid='1'/>",
            "<body xmlns='urn:other' rid='1'/>",
            "<iq xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body xmlns='http://jabber.org/protocol/httpbind'>text</body>",
            "<body xmlns='http://jabber.org/protocol/httpbind'><a></b></body>",
            "<body xmlns='http://jabber.org/protocol/httpbind'><a>",
            "<body xmlns='http://jabber.org/protocol/httpbind'><!-- c --></body>",
            "<!DOCTYPE x><body xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body xmlns='http://jabber.org/protocol/httpbind'/><body xmlns='http://jabber.org/protocol/httpbind'/>",
            "<body xmlns='http://jabber.org/protocol/httpbind' p:a='1'/>",
            "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' rid='2'/>",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse(b"\xff\xfe<body/>").is_err());
    }

    #[test]
    fn any_cut_or_change_of_a_body_is_read_or_refused_without_a_panic() {
        let good = "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' sid='s'><message to='a@b'><body>x &amp; <![CDATA[y]]></body></message><iq/></body>";
        for cut in 0..good.len() {
            let _ = parse(&good.as_bytes()[..cut]);
            let _ = parse(&good.as_bytes()[cut..]);
            let mut b = good.as_bytes().to_vec();
            b[cut] = b'<';
            let _ = parse(&b);
            b[cut] = b'>';
            let _ = parse(&b);
        }
        assert!(parse(good.as_bytes()).is_ok());
        assert!(parse(b"</body>").is_err());
    }

    #[test]
    fn the_machines_bytes_become_units() {
        let s = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1'><stream:features><bind/></stream:features><message to='x'/><stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";
        let mut out = Vec::new();
        let used = split(s.as_bytes(), &mut out);
        assert_eq!(used, s.len());
        assert_eq!(out[0], Unit::Header);
        assert!(matches!(&out[1], Unit::Payload(p) if p.starts_with("<stream:features")));
        assert_eq!(
            out[2],
            Unit::Payload("<message xmlns='jabber:client' to='x'/>".into())
        );
        assert!(matches!(&out[3], Unit::Error(e) if e.starts_with(b"<stream:error>")));
        assert_eq!(out[4], Unit::End);
        // Incomplete: nothing used.
        let mut out = Vec::new();
        assert_eq!(split(b"<message to='x'><body>", &mut out), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn responses_escape_their_attributes() {
        let b = response(
            &[("sid", "a'b".into()), ("xmpp:version", "1.0".into())],
            b"",
        );
        assert_eq!(
            &b[..],
            b"<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' sid='a&apos;b' xmpp:version='1.0'/>"
        );
    }
}
