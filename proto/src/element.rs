//! A small namespace-aware element tree for the payloads a module parses
//! (roster queries, disco, vCards, ...), its serialiser, and XML escaping.
//! The routing path never builds one: it forwards raw bytes.

use std::borrow::Cow;

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// An element: local name, resolved namespace, attributes (without
/// namespace declarations), children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

/// A child node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed xml: {0}")]
pub struct ParseError(pub String);

struct Scope {
    default_ns: String,
    prefixes: Vec<(String, String)>,
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.to_string(),
            ns: ns.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: add an attribute.
    pub fn with_attr(mut self, k: &str, v: impl Into<String>) -> Element {
        self.set_attr(k, v);
        self
    }

    /// Builder: add a child element.
    pub fn with_child(mut self, c: Element) -> Element {
        self.children.push(Node::Element(c));
        self
    }

    /// Builder: add text.
    pub fn with_text(mut self, t: impl Into<String>) -> Element {
        self.children.push(Node::Text(t.into()));
        self
    }

    pub fn attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_attr(&mut self, k: &str, v: impl Into<String>) {
        let v = v.into();
        match self.attrs.iter_mut().find(|(a, _)| a == k) {
            Some(slot) => slot.1 = v,
            None => self.attrs.push((k.to_string(), v)),
        }
    }

    pub fn remove_attr(&mut self, k: &str) {
        self.attrs.retain(|(a, _)| a != k);
    }

    pub fn push(&mut self, c: Element) {
        self.children.push(Node::Element(c));
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Child elements, to change them.
    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name && e.ns == ns)
    }

    /// The first child element of any name.
    pub fn first_element(&self) -> Option<&Element> {
        self.elements().next()
    }

    /// Concatenated text of the direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Parse one element from bytes. `default_ns` and `prefixes` give the
    /// namespace context the bytes were written in (the stream's).
    pub fn parse(
        raw: &[u8],
        default_ns: &str,
        prefixes: &[(String, String)],
    ) -> Result<Element, ParseError> {
        let text = std::str::from_utf8(raw).map_err(|_| ParseError("invalid utf-8".into()))?;
        let mut reader = Reader::from_str(text);
        reader.config_mut().check_end_names = true;
        let mut scopes = vec![Scope {
            default_ns: default_ns.to_string(),
            prefixes: prefixes.to_vec(),
        }];
        let mut stack: Vec<Element> = Vec::new();
        loop {
            let ev = reader.read_event().map_err(|e| ParseError(e.to_string()))?;
            match ev {
                Event::Start(ref s) | Event::Empty(ref s) => {
                    let is_empty = matches!(ev, Event::Empty(_));
                    let parent = scopes.last().ok_or_else(|| ParseError("scope".into()))?;
                    let mut scope = Scope {
                        default_ns: parent.default_ns.clone(),
                        prefixes: Vec::new(),
                    };
                    let mut attrs = Vec::new();
                    for a in s.attributes() {
                        let a = a.map_err(|e| ParseError(e.to_string()))?;
                        let k = a.key.as_ref().to_string();
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                            .map_err(|e| ParseError(e.to_string()))?
                            .into_owned();
                        if k == "xmlns" {
                            scope.default_ns = v;
                        } else if let Some(p) = k.strip_prefix("xmlns:") {
                            scope.prefixes.push((p.to_string(), v));
                        } else {
                            attrs.push((k, v));
                        }
                    }
                    // A prefixed attribute keeps its qualified name; the
                    // prefix's declaration goes with it, so that the
                    // element written again elsewhere (a stored PubSub
                    // item, a vCard) is well-formed on its own.
                    let mut declared: Vec<(String, String)> = Vec::new();
                    for (k, _) in &attrs {
                        let (Some(p), _) = crate::xml::split_qname(k) else {
                            continue;
                        };
                        if p == "xml" || declared.iter().any(|(d, _)| d == p) {
                            continue;
                        }
                        let uri = resolve(&scopes, &scope, p)
                            .ok_or_else(|| ParseError(format!("unbound prefix {p}")))?;
                        declared.push((p.to_string(), uri));
                    }
                    for (p, uri) in declared {
                        attrs.push((format!("xmlns:{p}"), uri));
                    }
                    let qname = s.name().as_ref().to_string();
                    let (prefix, local) = crate::xml::split_qname(&qname);
                    let ns = match prefix {
                        None => scope.default_ns.clone(),
                        Some(p) => resolve(&scopes, &scope, p)
                            .ok_or_else(|| ParseError(format!("unbound prefix {p}")))?,
                    };
                    let el = Element {
                        name: local.to_string(),
                        ns,
                        attrs,
                        children: Vec::new(),
                    };
                    if is_empty {
                        match stack.last_mut() {
                            Some(parent) => parent.children.push(Node::Element(el)),
                            None => return Ok(el),
                        }
                    } else {
                        scopes.push(scope);
                        stack.push(el);
                    }
                }
                Event::End(_) => {
                    scopes.pop();
                    let el = stack
                        .pop()
                        .ok_or_else(|| ParseError("unbalanced end tag".into()))?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(el)),
                        None => return Ok(el),
                    }
                }
                Event::Text(t) => {
                    if let Some(cur) = stack.last_mut() {
                        push_text(cur, &t);
                    }
                }
                Event::CData(c) => {
                    if let Some(cur) = stack.last_mut() {
                        push_text(cur, &c);
                    }
                }
                Event::GeneralRef(r) => {
                    let s: Cow<'_, str> = if r.is_char_ref() {
                        match r.resolve_char_ref() {
                            Ok(Some(c)) => Cow::Owned(c.to_string()),
                            _ => return Err(ParseError("bad character reference".into())),
                        }
                    } else {
                        Cow::Borrowed(match &*r {
                            "amp" => "&",
                            "lt" => "<",
                            "gt" => ">",
                            "quot" => "\"",
                            "apos" => "'",
                            _ => return Err(ParseError("undefined entity".into())),
                        })
                    };
                    if let Some(cur) = stack.last_mut() {
                        push_text(cur, &s);
                    }
                }
                Event::Eof => return Err(ParseError("unexpected end of input".into())),
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) | Event::Decl(_) => {
                    return Err(ParseError("restricted xml".into()));
                }
            }
        }
    }

    /// Serialise; `parent_ns` is the namespace in scope where it is written
    /// (an `xmlns` is added only when it differs).
    pub fn write(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns='");
            out.push_str(&escape(&self.ns));
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            out.push_str(&escape(v));
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write(out, &self.ns),
                Node::Text(t) => out.push_str(&escape(t)),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serialise as written inside a stream whose default namespace is `stream_ns`.
    pub fn to_xml(&self, stream_ns: &str) -> String {
        let mut s = String::with_capacity(128);
        self.write(&mut s, stream_ns);
        s
    }
}

fn push_text(cur: &mut Element, t: &str) {
    if let Some(Node::Text(prev)) = cur.children.last_mut() {
        prev.push_str(t);
    } else {
        cur.children.push(Node::Text(t.to_string()));
    }
}

fn resolve(scopes: &[Scope], current: &Scope, p: &str) -> Option<String> {
    if p == "xml" {
        return Some(crate::ns::XML.to_string());
    }
    if let Some((_, v)) = current.prefixes.iter().find(|(k, _)| k == p) {
        return Some(v.clone());
    }
    scopes.iter().rev().find_map(|s| {
        s.prefixes
            .iter()
            .find(|(k, _)| k == p)
            .map(|(_, v)| v.clone())
    })
}

/// Escape text or an attribute value (both quote kinds are escaped).
pub fn escape(s: &str) -> Cow<'_, str> {
    // Tab, newline and carriage return as character references: an XML
    // parser turns them into spaces in attribute values (and a carriage
    // return into a newline in text) if they are written as they are.
    if !s.contains(['&', '<', '>', '\'', '"', '\t', '\n', '\r']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_in_attribute_values_survives_a_round_trip() {
        let e = Element::new("field", "jabber:x:data").with_attr("label", "a\nb\tc\rd");
        let mut out = String::new();
        e.write(&mut out, "jabber:client");
        let back = Element::parse(out.as_bytes(), "jabber:client", &[]).expect("parse");
        assert_eq!(back.attr("label"), Some("a\nb\tc\rd"));
    }

    /// A prefixed attribute (Atom's `thr:count` in a PubSub item) is
    /// written with its prefix's declaration: the element stands alone.
    #[test]
    fn a_prefixed_attribute_is_written_with_its_declaration() {
        let raw = b"<entry xmlns='http://www.w3.org/2005/Atom' xmlns:thr='http://purl.org/syndication/thread/1.0'><link rel='replies' thr:count='5' xml:lang='en'/></entry>";
        let e = Element::parse(raw, "jabber:client", &[]).expect("parse");
        let xml = e.to_xml("jabber:client");
        let again = Element::parse(xml.as_bytes(), "jabber:client", &[]).expect("well-formed");
        let link = again.elements().next().expect("link");
        assert_eq!(link.attr("thr:count"), Some("5"));
        assert_eq!(
            link.attr("xmlns:thr"),
            Some("http://purl.org/syndication/thread/1.0")
        );
        // Inside a message, under other prefixes of the stream, too.
        let inner = Element::parse(
            b"<x xmlns='urn:a'><y e:k='v'/></x>",
            "jabber:client",
            &[("e".to_string(), "urn:e".to_string())],
        )
        .expect("parse");
        let xml = inner.to_xml("jabber:client");
        assert!(xml.contains("xmlns:e='urn:e'"), "{xml}");
        assert!(Element::parse(xml.as_bytes(), "jabber:client", &[]).is_ok());
    }

    #[test]
    fn parse_resolves_namespaces_and_text() {
        let raw = b"<iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='a@b'>x &amp; y</item></query></iq>";
        let e = Element::parse(raw, "jabber:client", &[]).expect("parse");
        assert_eq!(e.ns, "jabber:client");
        let q = e.child("query", "jabber:iq:roster").expect("query");
        let item = q.child("item", "jabber:iq:roster").expect("item");
        assert_eq!(item.attr("jid"), Some("a@b"));
        assert_eq!(item.text(), "x & y");
    }

    #[test]
    fn write_round_trips() {
        let e = Element::new("iq", "jabber:client")
            .with_attr("id", "a'b")
            .with_child(Element::new("query", "jabber:iq:roster").with_text("<&>"));
        let s = e.to_xml("jabber:client");
        assert_eq!(
            s,
            "<iq id='a&apos;b'><query xmlns='jabber:iq:roster'>&lt;&amp;&gt;</query></iq>"
        );
        let back = Element::parse(s.as_bytes(), "jabber:client", &[]).expect("parse");
        assert_eq!(back, e);
    }

    #[test]
    fn prefixes_from_the_stream_resolve() {
        let prefixes = vec![("stream".to_string(), crate::ns::STREAM.to_string())];
        let e = Element::parse(b"<stream:features/>", "jabber:client", &prefixes).expect("parse");
        assert_eq!(e.ns, crate::ns::STREAM);
        assert!(Element::parse(b"<x:y/>", "jabber:client", &[]).is_err());
    }
}
