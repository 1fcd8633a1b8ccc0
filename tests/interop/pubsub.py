#!/usr/bin/env python3
"""slixmpp's own PubSub plugins against a running xmppd: XEP-0060 (create a
node with a configuration, read and change it, subscribe, publish, receive
the events, retract, purge, delete), XEP-0163 PEP with XEP-0084 avatars
and XEP-0172 nicknames, a contact's tune (XEP-0118) reaching the other
through its entity capabilities (XEP-0115, `+notify`), XEP-0049 private
storage with XEP-0048 bookmarks read back from XEP-0402. Exits non-zero
on any failure.

usage: pubsub.py HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD
(accounts alice@DOMAIN and bob@DOMAIN must exist)
"""
import asyncio
import inspect
import ssl
import sys

import slixmpp
from slixmpp.xmlstream import ET

TIMEOUT = 15
PAYLOAD_NS = "urn:example:sensor"


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ["xep_0030", "xep_0060", "xep_0004", "xep_0115", "xep_0163", "xep_0084",
                  "xep_0172", "xep_0118", "xep_0049", "xep_0048", "xep_0402"]:
            try:
                self.register_plugin(p)
            except Exception as e:  # older slixmpp lack some
                print(f"plugin {p} unavailable: {e}", flush=True)
        self.started = asyncio.Event()
        self.events = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        for ev in ["pubsub_publish", "pubsub_retract", "pubsub_purge", "pubsub_delete",
                   "pubsub_config", "user_tune_publish", "changed_subscription"]:
            self.add_event_handler(ev, self._queue(ev))

    def _queue(self, name):
        def f(msg):
            self.events.put_nowait((name, msg))
        return f

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        self.started.set()

    async def next_event(self, name):
        while True:
            got, msg = await asyncio.wait_for(self.events.get(), TIMEOUT)
            if got == name:
                return msg


def connect(c, host, port):
    params = inspect.signature(c.connect).parameters
    if "address" in params:
        c.connect((host, port))
    else:
        c.enable_direct_tls = False
        c.connect(host, port)


async def start(jid, password, host, port):
    c = Client(jid, password)
    connect(c, host, port)
    await asyncio.wait_for(c.started.wait(), TIMEOUT)
    return c


def sensor(value):
    el = ET.Element(f"{{{PAYLOAD_NS}}}reading")
    el.text = str(value)
    return el


async def main():
    host, port, domain, apw, bpw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    service = f"pubsub.{domain}"
    alice = await start(f"alice@{domain}/lab", apw, host, port)
    bob = await start(f"bob@{domain}/phone", bpw, host, port)
    ps_a, ps_b = alice["xep_0060"], bob["xep_0060"]

    # Discovery.
    info = await alice["xep_0030"].get_info(jid=service, timeout=TIMEOUT)
    ids = [(i[0], i[1]) for i in info["disco_info"]["identities"]]
    assert ("pubsub", "service") in ids, ids
    assert "http://jabber.org/protocol/pubsub#publish" in info["disco_info"]["features"]
    print("disco ok", flush=True)

    # Create with a configuration, read it back, change it.
    form = alice["xep_0004"].make_form("submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#node_config")
    form.add_field(var="pubsub#title", value="Greenhouse")
    form.add_field(var="pubsub#max_items", value="5")
    await ps_a.create_node(service, "greenhouse", config=form, timeout=TIMEOUT)
    cfg = await ps_a.get_node_config(service, "greenhouse", timeout=TIMEOUT)
    values = cfg["pubsub_owner"]["configure"]["form"].get_values()
    assert values.get("pubsub#title") == "Greenhouse", values
    change = alice["xep_0004"].make_form("submit")
    change.add_field(var="FORM_TYPE", ftype="hidden",
                     value="http://jabber.org/protocol/pubsub#node_config")
    change.add_field(var="pubsub#title", value="Greenhouse 2")
    await ps_a.set_node_config(service, "greenhouse", change, timeout=TIMEOUT)
    print("create and configure ok", flush=True)

    # Subscribe, publish, receive.
    await ps_b.subscribe(service, "greenhouse", timeout=TIMEOUT)
    await ps_a.publish(service, "greenhouse", id="t1", payload=sensor(21.5), timeout=TIMEOUT)
    msg = await bob.next_event("pubsub_publish")
    item = msg["pubsub_event"]["items"]["item"]
    assert item["id"] == "t1", item["id"]
    assert "21.5" in str(item), str(item)
    items = await ps_b.get_items(service, "greenhouse", timeout=TIMEOUT)
    got = [i["id"] for i in items["pubsub"]["items"]]
    assert got == ["t1"], got
    print("subscribe and publish ok", flush=True)

    # Retract (with notify), purge, delete.
    await ps_a.retract(service, "greenhouse", "t1", notify=True, timeout=TIMEOUT)
    await bob.next_event("pubsub_retract")
    await ps_a.publish(service, "greenhouse", id="t2", payload=sensor(22), timeout=TIMEOUT)
    await bob.next_event("pubsub_publish")
    await ps_a.purge(service, "greenhouse", timeout=TIMEOUT)
    await bob.next_event("pubsub_purge")
    await ps_a.delete_node(service, "greenhouse", timeout=TIMEOUT)
    await bob.next_event("pubsub_delete")
    print("retract, purge and delete ok", flush=True)

    # PEP: an avatar (XEP-0084) and a nickname (XEP-0172); alice's own
    # resource hears them.
    await alice["xep_0084"].publish_avatar(b"\x89PNG fake image bytes", timeout=TIMEOUT)
    await alice["xep_0172"].publish_nick("Alice", timeout=TIMEOUT)
    got_nick = False
    while not got_nick:
        msg = await alice.next_event("pubsub_publish")
        got_nick = "nick" in str(msg)
    items = await ps_a.get_items(f"alice@{domain}", "urn:xmpp:avatar:data", timeout=TIMEOUT)
    assert len(items["pubsub"]["items"]) == 1
    print("pep ok", flush=True)

    # A contact's PEP (XEP-0163 §4): with a mutual presence subscription,
    # bob's client asks for tunes through its capabilities (slixmpp's
    # XEP-0118 plugin adds the +notify feature and XEP-0115 announces it);
    # the server learns the hash from bob's client and sends him alice's.
    alice.send_presence_subscription(pto=f"bob@{domain}")
    for _ in range(100):
        if alice.client_roster[f"bob@{domain}"]["subscription"] == "both":
            break
        await asyncio.sleep(0.1)
    assert alice.client_roster[f"bob@{domain}"]["subscription"] == "both", \
        alice.client_roster[f"bob@{domain}"]["subscription"]
    await alice["xep_0118"].publish_tune(artist="Gerald Finzi", title="Introduction",
                                         timeout=TIMEOUT)
    msg = await bob.next_event("user_tune_publish")
    assert msg["from"].bare == f"alice@{domain}", msg["from"]
    assert "Finzi" in str(msg), str(msg)
    print("contact pep ok", flush=True)

    # Private storage (XEP-0049) and bookmarks of the XEP-0048 kind, kept
    # in the XEP-0402 PEP node.
    store = alice.make_iq_set(ito=None)
    q = ET.Element("{jabber:iq:private}query")
    notes = ET.SubElement(q, "{urn:example:notes}notes")
    notes.text = "remember the milk"
    store.append(q)
    await store.send(timeout=TIMEOUT)
    get = alice.make_iq_get(ito=None)
    q = ET.Element("{jabber:iq:private}query")
    ET.SubElement(q, "{urn:example:notes}notes")
    get.append(q)
    back = await get.send(timeout=TIMEOUT)
    assert "remember the milk" in str(back), str(back)
    stanza = alice.make_iq_set(ito=None)
    q = ET.Element("{jabber:iq:private}query")
    st = ET.SubElement(q, "{storage:bookmarks}storage")
    conf = ET.SubElement(st, "{storage:bookmarks}conference",
                         {"jid": f"room@conference.{domain}", "name": "Room", "autojoin": "true"})
    nick = ET.SubElement(conf, "{storage:bookmarks}nick")
    nick.text = "alice"
    stanza.append(q)
    await stanza.send(timeout=TIMEOUT)
    items = await ps_a.get_items(f"alice@{domain}", "urn:xmpp:bookmarks:1", timeout=TIMEOUT)
    ids = [i["id"] for i in items["pubsub"]["items"]]
    assert ids == [f"room@conference.{domain}"], ids
    # Read back the XEP-0048 way, after a new login: the bookmark stays.
    alice.disconnect()
    await asyncio.sleep(0.3)
    alice = await start(f"alice@{domain}/lab2", apw, host, port)
    get = alice.make_iq_get(ito=None)
    q = ET.Element("{jabber:iq:private}query")
    ET.SubElement(q, "{storage:bookmarks}storage")
    get.append(q)
    back = str(await get.send(timeout=TIMEOUT))
    assert f"room@conference.{domain}" in back and "alice</nick>" in back, back
    print("private storage and bookmarks ok", flush=True)

    alice.disconnect()
    bob.disconnect()
    await asyncio.sleep(0.3)
    print("interop ok", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
