//! Hostile input over real connections: a generated corpus of truncated,
//! mutated and random streams (before and after authentication) must never
//! panic the server nor disturb a session that keeps chatting meanwhile;
//! a client that sends faster than the read rate is slowed down.

mod common;

use std::time::{Duration, Instant};

use common::{Client, TestServer, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PW: &str = "correct horse";

/// xorshift: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let h = header("localhost");
    [
        format!("{h}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
        format!("{h}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiY2RlZg==</auth>"),
        format!("{h}<iq type='get' id='1'><query xmlns='jabber:iq:register'/></iq>"),
        format!("{h}<message to='bob@localhost' type='chat'><body>hi &amp; &#x263A;</body></message></stream:stream>"),
        format!("{h}<presence><priority>5</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>"),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.below(4) {
        0 => v.truncate(rng.below(v.len() + 1)),
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
        }
        2 => {
            let junk: &[&[u8]] = &[
                b"<",
                b">",
                b"&",
                b"'",
                b"\"",
                b"</x>",
                b"<!--",
                b"<?x",
                b"]]>",
                b"\0",
                b"\xff\xfe",
                b"<![CDATA[",
                b"&#0;",
                b"&#x110000;",
            ];
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(v.len() + 1);
                let j = junk[rng.below(junk.len())];
                v.splice(i..i, j.iter().copied());
            }
        }
        _ => {
            let n = rng.below(512);
            v = (0..n).map(|_| rng.next() as u8).collect();
        }
    }
    v
}

/// Send the bytes, then read until the server closes or a short deadline.
async fn throw(addr: std::net::SocketAddr, bytes: Vec<u8>) -> bool {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return false;
    };
    let _ = s.write_all(&bytes).await;
    let _ = s.shutdown().await;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_corpus_never_disturbs_other_sessions() {
    // The canary chats as fast as round trips go, past the default stanza
    // rate; that limit has its own tests (limits.rs).
    let mut t = TestServer::start_with(|c| c.limits.stanza_rate_per_sec = 0).await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let addr = t.addr;
    // The canary: alice and bob chat through the whole run.
    let mut a = Client::login(addr, "alice@localhost", PW, "canary")
        .await
        .expect("alice");
    let mut b = Client::login(addr, "bob@localhost", PW, "canary")
        .await
        .expect("bob");
    let canary = tokio::spawn(async move {
        let mut n = 0u32;
        let end = Instant::now() + Duration::from_secs(8);
        while Instant::now() < end {
            a.send(&format!(
                "<message to='bob@localhost/canary' id='c{n}'><body>{n}</body></message>"
            ))
            .await;
            let m = b
                .expect(|e| e.name == "message")
                .await
                .expect("canary message");
            assert_eq!(m.attr("id"), Some(format!("c{n}").as_str()));
            n += 1;
        }
        n
    });

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds = seeds();
    let total = 3000;
    let mut inputs = Vec::with_capacity(total);
    for _ in 0..total {
        let s = &seeds[rng.below(seeds.len())];
        inputs.push(mutate(&mut rng, s));
    }
    let mut closed = 0;
    for chunk in inputs.chunks(100) {
        let mut set = tokio::task::JoinSet::new();
        for input in chunk {
            set.spawn(throw(addr, input.clone()));
        }
        while let Some(r) = set.join_next().await {
            if r.expect("no panic in the thrower") {
                closed += 1;
            }
        }
    }
    let exchanged = canary.await.expect("the canary session survived");
    assert!(exchanged > 10, "canary exchanged only {exchanged} messages");
    // Most malformed streams are closed by the server promptly; the rest end
    // at their handshake timeout. Either way the server still serves.
    assert!(
        closed > total / 2,
        "only {closed} of {total} connections were closed by the server"
    );
    let mut c = Client::login(addr, "alice@localhost", PW, "after")
        .await
        .expect("login after the corpus");
    c.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    c.expect(|e| e.attr("id") == Some("p")).await.expect("pong");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stanzas_after_authentication_close_only_that_stream() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut bob = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    let mut rng = Rng(42);
    let stanzas: Vec<Vec<u8>> = vec![
        b"<message to='bob@localhost/b'><body>x</body></message>".to_vec(),
        b"<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='c@d'/></query></iq>"
            .to_vec(),
        b"<presence to='bob@localhost' type='subscribe'/>".to_vec(),
    ];
    for round in 0..60 {
        let mut a = Client::login(t.addr, "alice@localhost", PW, &format!("m{round}"))
            .await
            .expect("alice");
        let bytes = mutate(&mut rng, &stanzas[round % stanzas.len()]);
        let _ = a.send_bytes(&bytes).await;
        let _ = a
            .send_bytes(
                b"<iq type='get' id='after' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            )
            .await;
        // Either the stream ended with an error, or the server went on, or it
        // waits for the rest of an unfinished stanza.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            a.expect(|e| e.attr("id") == Some("after") || e.name == "error"),
        )
        .await;
    }
    bob.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.expect(|e| e.attr("id") == Some("alive"))
        .await
        .expect("bob is unaffected");
    t.stop().await;
}

#[tokio::test]
async fn a_fast_sender_is_slowed_to_the_read_rate() {
    let mut t = TestServer::start_with(|c| {
        c.limits.read_rate_bytes_per_sec = 20_000;
        c.limits.read_burst_bytes = 20_000;
    })
    .await;
    t.add_user("alice@localhost", PW);
    let mut a = Client::login(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let body = "y".repeat(1000);
    let start = Instant::now();
    // 80 kB at 20 kB/s after a 20 kB burst: at least ~2.5 s.
    for i in 0..80 {
        a.send(&format!(
            "<message to='alice@localhost/a' id='f{i}'><body>{body}</body></message>"
        ))
        .await;
    }
    a.send("<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    a.expect(|e| e.attr("id") == Some("done"))
        .await
        .expect("pong");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "80 kB were read in {took:?}, faster than the limit allows"
    );
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_not_buffered() {
    let mut t = TestServer::start_with(|c| {
        c.limits.outbound_queue = 16;
        c.limits.write_timeout_secs = 2;
        c.limits.read_rate_bytes_per_sec = 0;
        // Alice floods on purpose: only bob's reading is under test here.
        c.limits.stanza_rate_per_sec = 0;
    })
    .await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut a = Client::login(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let mut b = Client::login(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    // bob stops reading; alice sends him far more than any socket buffer holds.
    let body = "z".repeat(4000);
    for i in 0..2000 {
        // Headlines: once bob is gone they are dropped, so alice gets no errors back.
        let m = format!(
            "<message to='bob@localhost/b' type='headline' id='s{i}'><body>{body}</body></message>"
        );
        if a.send_bytes(m.as_bytes()).await.is_err() {
            break;
        }
    }
    // The server gives up on bob within its write timeout...
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match b.io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client that does not read must be disconnected"
    );
    // ...and alice is unaffected.
    a.send("<iq type='get' id='alive' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    a.expect(|e| e.attr("id") == Some("alive"))
        .await
        .expect("alice still served");
    t.stop().await;
}

#[tokio::test]
async fn too_many_attributes_is_a_policy_violation() {
    let mut t = TestServer::start_with(|c| c.limits.max_attrs = 8).await;
    t.add_user("alice@localhost", PW);
    let mut a = Client::login(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    let attrs: String = (0..20).map(|i| format!(" a{i}='x'")).collect();
    let _ = a
        .send_bytes(format!("<message to='alice@localhost'{attrs}/>").as_bytes())
        .await;
    assert_eq!(a.stream_error().await.expect("error"), "policy-violation");
    t.stop().await;
}

/// An element that parses as XML but breaks the namespace rules (two
/// attributes with one expanded name, a reserved prefix rebound) ends the
/// sender's stream with not-well-formed (RFC 6120 §4.9.3.13) instead of
/// being stored and passed on: a PEP nickname like this one used to reach
/// alice's contact each time he came online and end his stream.
#[tokio::test]
async fn namespace_ill_formed_payloads_end_the_senders_stream_not_the_readers() {
    let mut t = TestServer::start().await;
    t.add_user("alice@localhost", PW);
    t.add_user("bob@localhost", PW);
    let mut b = Client::online(t.addr, "bob@localhost", PW, "b")
        .await
        .expect("bob");
    for bad in [
        "<nick xmlns='http://jabber.org/protocol/nick' xmlns:a='urn:z' xmlns:b='urn:z' a:k='1' b:k='2'>x</nick>",
        "<nick xmlns='http://jabber.org/protocol/nick' xmlns:p='http://www.w3.org/XML/1998/namespace'>x</nick>",
        "<xml:nick>x</xml:nick>",
    ] {
        let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
            .await
            .expect("alice");
        a.send(&format!(
            "<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/nick'><item id='current'>{bad}</item></publish></pubsub></iq>"
        ))
        .await;
        assert_eq!(
            a.stream_error().await.expect("error"),
            "not-well-formed",
            "{bad}"
        );
        let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
            .await
            .expect("alice");
        a.send(&format!(
            "<message to='bob@localhost' type='chat'><body>{bad}</body></message>"
        ))
        .await;
        assert_eq!(
            a.stream_error().await.expect("error"),
            "not-well-formed",
            "{bad}"
        );
    }
    // Nothing was stored, and bob's stream is fine.
    let mut a = Client::online(t.addr, "alice@localhost", PW, "a")
        .await
        .expect("alice");
    a.send("<iq type='get' id='items'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/nick'/></pubsub></iq>")
        .await;
    let r = a
        .expect(|e| e.attr("id") == Some("items"))
        .await
        .expect("items");
    assert!(!r.to_xml("").contains("<item "), "{}", r.to_xml(""));
    a.send("<message to='bob@localhost' type='chat'><body>still here</body></message>")
        .await;
    let m = b
        .expect(|e| e.name == "message")
        .await
        .expect("bob reads on");
    assert!(m.to_xml("").contains("still here"));
    t.stop().await;
}
