//! The edge's per-stanza work, without I/O, for instruction counts under
//! callgrind: feed a client stream of N one-to-one messages to the stream
//! parser, turn each top-level element into a stanza envelope (parsing
//! and normalising `to`), and restamp it with the sender's full JID as the
//! router does before delivery.
//!
//!   cargo build --profile perf -p proto --example stanza_cost
//!   valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!       target/perf/examples/stanza_cost 100000
//!   callgrind_annotate cg.out | head -40
//!
//! Divide the total instructions by N (after subtracting a run with N=0)
//! for the cost of one stanza.

use proto::stanza::Stanza;
use proto::xml::{Limits, StreamEvent, StreamParser};
use proto::{FullJid, Jid};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let from = Jid::Full(FullJid::parse("load0@localhost/load").expect("valid jid"));
    let mut input = Vec::with_capacity(n * 120 + 200);
    input.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' \
          xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    for i in 0..n {
        input.extend_from_slice(
            format!(
                "<message to='load{}@localhost' type='chat' id='c{i}'><body>LT!{i}!1790000000000000</body></message>",
                i % 1000
            )
            .as_bytes(),
        );
    }
    let mut parser = StreamParser::new(Limits::default());
    let (mut stanzas, mut bytes) = (0usize, 0usize);
    // Feed in 16 KiB reads, as the connection does.
    for chunk in input.chunks(16 * 1024) {
        parser.feed(chunk);
        loop {
            match parser.next_event() {
                Ok(Some(StreamEvent::Element(top))) => {
                    let st = Stanza::from_top(top).expect("a stanza");
                    let to = st.to.clone();
                    let out = st.restamped(Some(from.clone()), to);
                    bytes += out.raw.len();
                    stanzas += 1;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => panic!("parse error: {e}"),
            }
        }
        parser.shrink();
    }
    assert_eq!(stanzas, n);
    println!("{stanzas} stanzas, {bytes} bytes out");
}
