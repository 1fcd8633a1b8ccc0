//! The stream parser on arbitrary bytes, fed in arbitrary chunks: it must
//! never panic, and every element it hands out must parse as a tree again
//! (what the server forwards must be well-formed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::xml::{Limits, StreamEvent, StreamParser};

const HEADER: &[u8] = b"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut p = StreamParser::new(Limits { max_stanza_bytes: 1 << 16, max_depth: 16, max_attrs: 16 });
    // Half the inputs start inside a valid stream, half from nothing.
    if split & 1 == 0 {
        p.feed(HEADER);
    }
    let step = usize::from(split >> 1).max(1);
    for chunk in rest.chunks(step) {
        p.feed(chunk);
        loop {
            match p.next_event() {
                Ok(Some(StreamEvent::Element(e))) => {
                    let tree = proto::Element::parse(&e.raw, p.default_ns(), p.stream_prefixes());
                    assert!(tree.is_ok(), "forwarded bytes must parse: {:?}", String::from_utf8_lossy(&e.raw));
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
