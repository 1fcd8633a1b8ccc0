//! Cutting a server's stream into top-level elements without parsing
//! them: the harness reads tens of thousands of stanzas a second per core,
//! and after login it only needs each one's bytes (most are counted by a
//! marker in them; the few it looks into it parses on its own). The
//! server writes well-formed XML, so finding where an element ends takes
//! only tags, quotes, comments, CDATA and processing instructions, with no
//! validation; the full parser of `proto::xml` (used during login) costs
//! a third of the harness's CPU at high fan-out.

use bytes::{Buf, Bytes, BytesMut};

/// The most bytes one element may take before the stream is given up.
const MAX_ELEMENT: usize = 16 << 20;

/// What the next bytes make.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole top-level element.
    Element(Bytes),
    /// The server's `</stream:stream>`.
    Closed,
    /// More bytes are needed.
    NeedMore,
}

/// Top-level elements out of the bytes read, kept in `buf`.
pub struct Framer {
    pub buf: BytesMut,
    /// Where the scan of the current element got to.
    scan: usize,
    /// Elements open inside the current top-level one.
    depth: usize,
}

impl Framer {
    /// Start with bytes already read past the last element.
    pub fn new(rest: BytesMut) -> Framer {
        Framer {
            buf: rest,
            scan: 0,
            depth: 0,
        }
    }

    /// The next element, `NeedMore`, or an error for a stream that is not
    /// XML or an element over 16 MiB.
    pub fn next_frame(&mut self) -> Result<Frame, &'static str> {
        loop {
            if self.depth == 0 {
                // Between elements: drop whitespace (and any stray text).
                match memchr::memchr(b'<', &self.buf) {
                    Some(i) => self.buf.advance(i),
                    None => {
                        self.buf.clear();
                        return Ok(Frame::NeedMore);
                    }
                }
                self.scan = 0;
            } else {
                match memchr::memchr(b'<', &self.buf[self.scan..]) {
                    Some(i) => self.scan += i,
                    None => return self.more(self.buf.len()),
                }
            }
            let at = self.scan;
            let Some(&next) = self.buf.get(at + 1) else {
                return self.more(at);
            };
            match next {
                b'/' => {
                    let Some(gt) = memchr::memchr(b'>', &self.buf[at..]) else {
                        return self.more(at);
                    };
                    if self.depth == 0 {
                        return Ok(Frame::Closed);
                    }
                    self.depth -= 1;
                    self.scan = at + gt + 1;
                    if self.depth == 0 {
                        return Ok(self.take());
                    }
                }
                b'?' | b'!' => {
                    let rest = &self.buf[at..];
                    let end: &[u8] = if next == b'?' {
                        b"?>"
                    } else if rest.starts_with(b"<!--") {
                        b"-->"
                    } else if rest.starts_with(b"<![CDATA[") {
                        b"]]>"
                    } else if b"<!--".starts_with(rest) || b"<![CDATA[".starts_with(rest) {
                        return self.more(at);
                    } else {
                        b">"
                    };
                    let Some(e) = find(&rest[2..], end) else {
                        return self.more(at);
                    };
                    self.scan = at + 2 + e + end.len();
                    if self.depth == 0 {
                        // A declaration or comment between elements.
                        self.buf.advance(self.scan);
                        self.scan = 0;
                    }
                }
                _ => {
                    let Some(gt) = tag_end(&self.buf[at..]) else {
                        return self.more(at);
                    };
                    let empty = self.buf[at + gt - 1] == b'/';
                    self.scan = at + gt + 1;
                    if !empty {
                        self.depth += 1;
                    } else if self.depth == 0 {
                        return Ok(self.take());
                    }
                }
            }
        }
    }

    /// The finished element, up to `scan`.
    fn take(&mut self) -> Frame {
        let e = self.buf.split_to(self.scan).freeze();
        self.scan = 0;
        Frame::Element(e)
    }

    /// Wait for more bytes, resuming the scan at `at`.
    fn more(&mut self, at: usize) -> Result<Frame, &'static str> {
        self.scan = at;
        if self.buf.len() > MAX_ELEMENT {
            return Err("an element larger than 16 MiB");
        }
        Ok(Frame::NeedMore)
    }
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The offset of the `>` that ends the tag opening `b`, outside quotes.
/// It jumps from one `>` or quote to the next (and from a quote to its
/// match) rather than looking at every byte: a stanza's opening tags are
/// most of its bytes.
pub fn tag_end(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        i += memchr::memchr3(b'>', b'\'', b'"', b.get(i..)?)?;
        let c = b[i];
        if c == b'>' {
            return Some(i);
        }
        i += 1 + memchr::memchr(c, &b[i + 1..])? + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element of `input` fed in pieces of `step` bytes.
    fn frames(input: &str, step: usize) -> (Vec<String>, bool) {
        feed(input.as_bytes().chunks(step))
    }

    /// Every element of the bytes `parts` make, fed one part at a time, and
    /// whether the stream was closed.
    fn feed<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> (Vec<String>, bool) {
        let mut f = Framer::new(BytesMut::new());
        let mut out = Vec::new();
        for chunk in parts {
            f.buf.extend_from_slice(chunk);
            loop {
                match f.next_frame().expect("xml") {
                    Frame::Element(e) => out.push(String::from_utf8(e.to_vec()).expect("utf-8")),
                    Frame::Closed => return (out, true),
                    Frame::NeedMore => break,
                }
            }
        }
        (out, false)
    }

    #[test]
    fn elements_are_cut_where_they_end_however_the_bytes_arrive() {
        let a = "<message from='a@b/c' to='d@e'><body>x &lt; y > z</body><x a='1>2' b=\"'\"/></message>";
        let b = "<presence/>";
        let c = "<iq type='result' id='1'><!-- a </iq> --><q><![CDATA[</iq>]]></q></iq>";
        let input = format!("\n{a} {b}<?pi x?>{c}</stream:stream>");
        for step in [1, 2, 3, 7, 64, 4096] {
            let (got, closed) = frames(&input, step);
            assert_eq!(got, vec![a, b, c], "step {step}");
            assert!(closed, "step {step}");
        }
    }

    /// Streams whose elements have quotes (of both kinds, and each inside
    /// the other), `>` in attribute values and text, comments, CDATA and
    /// processing instructions, nested and empty elements.
    const STREAMS: [&str; 4] = [
        "<?xml version='1.0'?>\n<message from='a@b/c' to='d@e' type='groupchat'><body>LT!1!1700000000000000</body></message><message type=\"groupchat\"><body>LT!2!1700000000000001</body></message></stream:stream>",
        "<iq id='a\"b>c' type=\"x'y>z\"><q a='>' b=\">\"/></iq> <presence from='x'/><r/><s a=''/><t b=\"\"></t>",
        "<a><!-- <b> ' \" --><![CDATA[<c> ' \" ]]><?pi '>' ?><d e='<f>'>text > ' \"</d></a>\n\n<g/>",
        "<x a='1' b=\"2\"><y c='&apos;' d=\"&quot;\"><z/></y></x><w e='3'",
    ];

    #[test]
    fn a_split_anywhere_cuts_the_same_elements_as_no_split() {
        for input in STREAMS {
            let b = input.as_bytes();
            let whole = feed([b]);
            assert!(!whole.0.is_empty(), "{input}");
            assert_eq!(feed(b.chunks(1)), whole, "byte by byte: {input}");
            for at in 0..=b.len() {
                assert_eq!(
                    feed([&b[..at], &b[at..]]),
                    whole,
                    "split at {at} of {input}"
                );
            }
        }
    }

    /// The byte-by-byte quote state machine that `tag_end` replaced.
    fn tag_end_bytewise(b: &[u8]) -> Option<usize> {
        let mut quote = None;
        for (i, &c) in b.iter().enumerate().skip(1) {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == b'\'' || c == b'"' => quote = Some(c),
                None if c == b'>' => return Some(i),
                None => {}
            }
        }
        None
    }

    #[test]
    fn a_tag_ends_where_the_bytewise_scan_says_on_any_prefix() {
        let tags = [
            "<a>",
            "<a b='c'>",
            "<a b='>' c=\">\">",
            "<a b='\"' c=\"'\">",
            "<a b='x\"y>z' c=\"x'y>z\"/>",
            "<'>",
            "<\">'\">",
            "<a b='unterminated>",
            "<a b=\"unterminated'>",
            "<>",
        ];
        for t in tags.iter().copied().chain(STREAMS) {
            for end in 0..=t.len() {
                let b = &t.as_bytes()[..end];
                assert_eq!(tag_end(b), tag_end_bytewise(b), "{:?}", &t[..end]);
            }
        }
    }

    #[test]
    fn a_huge_element_is_refused() {
        let mut f = Framer::new(BytesMut::new());
        f.buf.extend_from_slice(b"<message><body>");
        f.buf.extend_from_slice(&vec![b'x'; MAX_ELEMENT + 1]);
        assert!(f.next_frame().is_err());
    }
}
