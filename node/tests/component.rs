//! External components (XEP-0114) written by hand over a real socket: the
//! handshake, stanzas both ways, a second connection taking over, and the
//! stream errors for a wrong secret, an unknown domain, a wrong namespace
//! and a spoofed 'from'. A client's stanza to a component that is not
//! connected is answered service-unavailable.

mod common;

use std::net::SocketAddr;

use common::{Client, TestServer};

const SECRET: &str = "component secret";

async fn server() -> (TestServer, SocketAddr) {
    let t = TestServer::start_with(|cfg| {
        cfg.components.listen = "127.0.0.1:0".into();
        cfg.components
            .secrets
            .insert("gw.localhost".into(), SECRET.into());
    })
    .await;
    t.add_user("alice@localhost", "alice secret");
    let addr = t
        .server
        .as_ref()
        .and_then(|s| s.component_addr)
        .expect("component listener");
    (t, addr)
}

async fn connected(addr: SocketAddr) -> anyhow::Result<Client> {
    common::component(addr, "gw.localhost", SECRET).await
}

#[tokio::test]
async fn components_authenticate_route_and_are_checked() -> anyhow::Result<()> {
    let (mut t, addr) = server().await;
    let mut alice = Client::online(t.addr, "alice@localhost", "alice secret", "r").await?;

    // Not connected yet: the client is told.
    alice
        .send("<message to='bot@gw.localhost' id='n1'><body>hello?</body></message>")
        .await;
    let e = alice
        .expect(|e| e.name == "message" && e.attr("id") == Some("n1"))
        .await?;
    assert_eq!(e.attr("type"), Some("error"));
    assert!(e.to_xml(proto::ns::CLIENT).contains("service-unavailable"));

    // Wrong secret, unknown domain, wrong namespace.
    let (mut c, id) =
        common::component_open(addr, "gw.localhost", "jabber:component:accept").await?;
    c.send(&common::component_handshake(&id, "not the secret"))
        .await;
    assert_eq!(c.stream_error().await?, "not-authorized");
    let (mut c, id) =
        common::component_open(addr, "other.localhost", "jabber:component:accept").await?;
    c.send(&common::component_handshake(&id, SECRET)).await;
    assert_eq!(c.stream_error().await?, "host-unknown");
    let (mut c, _) = common::component_open(addr, "gw.localhost", "jabber:client").await?;
    assert_eq!(c.stream_error().await?, "invalid-namespace");

    // Connected: both ways, addresses intact.
    let mut gw = connected(addr).await?;
    alice
        .send("<message to='bot@gw.localhost/x' id='m1' type='chat'><body>hi bot</body></message>")
        .await;
    let m = gw.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("from"), Some("alice@localhost/r"));
    assert_eq!(m.attr("to"), Some("bot@gw.localhost/x"));
    alice
        .send("<iq to='gw.localhost' type='get' id='i1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let q = gw.expect(|e| e.name == "iq").await?;
    assert_eq!(q.attr("to"), Some("gw.localhost"));
    gw.send("<iq from='gw.localhost' to='alice@localhost/r' type='result' id='i1'/>")
        .await;
    let r = alice
        .expect(|e| e.name == "iq" && e.attr("id") == Some("i1"))
        .await?;
    assert_eq!(r.attr("type"), Some("result"));
    gw.send("<presence from='bot@gw.localhost' to='alice@localhost' type='subscribe'/>")
        .await;
    let p = alice.expect(|e| e.name == "presence").await?;
    assert_eq!(p.attr("type"), Some("subscribe"));
    assert_eq!(p.attr("from"), Some("bot@gw.localhost"));

    // A second connection takes over; the first is told.
    let mut gw2 = connected(addr).await?;
    assert_eq!(gw.stream_error().await?, "conflict");
    alice
        .send("<message to='bot@gw.localhost' id='m2'><body>again</body></message>")
        .await;
    let m = gw2.expect(|e| e.name == "message").await?;
    assert_eq!(m.attr("id"), Some("m2"));

    // An address that is not a JID: that stanza is answered, the
    // connection stays.
    gw2.send(
        "<message from='bot@gw.localhost' to='a b@localhost' id='bad'><body>x</body></message>",
    )
    .await;
    let e = gw2.expect(|e| e.attr("id") == Some("bad")).await?;
    assert_eq!(e.attr("type"), Some("error"));
    assert!(e.to_xml(proto::ns::CLIENT).contains("jid-malformed"));

    // A 'from' outside its domain ends its stream.
    gw2.send("<message from='alice@localhost' to='alice@localhost'><body>spoof</body></message>")
        .await;
    assert_eq!(gw2.stream_error().await?, "invalid-from");
    alice
        .send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = alice
        .expect(|e| e.name == "message" || e.attr("id") == Some("p"))
        .await?;
    assert_eq!(next.name, "iq", "the spoofed message was not delivered");
    t.stop().await;
    Ok(())
}
