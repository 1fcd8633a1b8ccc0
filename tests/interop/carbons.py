#!/usr/bin/env python3
"""Message Carbons (XEP-0280) with slixmpp's xep_0280 plugin: alice on two
clients, both with carbons on, and bob. A message bob sends to one of
alice's clients reaches the other as a received carbon; one alice sends
from a client reaches the other as a sent carbon; one marked private is
not copied. Exits non-zero on any failure.

usage: carbons.py HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD
(accounts alice@DOMAIN and bob@DOMAIN must exist)
"""
import asyncio
import inspect
import logging
import ssl
import sys

import slixmpp

TIMEOUT = 15
CARBONS = "urn:xmpp:carbons:2"


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # The test server uses a generated self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0280")
        self.messages = asyncio.Queue()
        self.carbons = asyncio.Queue()
        self.started = asyncio.Event()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("carbon_received", lambda m: self.carbons.put_nowait(("received", m["carbon_received"])))
        self.add_event_handler("carbon_sent", lambda m: self.carbons.put_nowait(("sent", m["carbon_sent"])))

    async def on_start(self, _):
        self.send_presence()
        self.started.set()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.messages.put_nowait(msg)


def connect(c, host, port):
    # 1.8.3 takes an (host, port) address; later versions host and port,
    # and would try direct TLS first.
    if "address" in inspect.signature(c.connect).parameters:
        c.connect((host, port))
    else:
        c.enable_direct_tls = False
        c.connect(host, port)


async def start(jid, password, host, port):
    c = Client(jid, password)
    connect(c, host, port)
    await asyncio.wait_for(c.started.wait(), TIMEOUT)
    return c


async def main():
    host, port, domain, apw, bpw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    alice_jid, bob_jid = f"alice@{domain}", f"bob@{domain}"
    phone = await start(alice_jid + "/phone", apw, host, port)
    desk = await start(alice_jid + "/desk", apw, host, port)
    bob = await start(bob_jid + "/b", bpw, host, port)

    info = await phone["xep_0030"].get_info(jid=domain, timeout=TIMEOUT)
    features = info["disco_info"]["features"]
    assert CARBONS in features, features
    print("the server lists carbons", flush=True)
    await phone["xep_0280"].enable(timeout=TIMEOUT)
    await desk["xep_0280"].enable(timeout=TIMEOUT)
    print("carbons enabled on both of alice's clients", flush=True)

    bob.send_message(mto=alice_jid + "/phone", mbody="to the phone", mtype="chat")
    m = await asyncio.wait_for(phone.messages.get(), TIMEOUT)
    assert m["body"] == "to the phone", m
    way, inner = await asyncio.wait_for(desk.carbons.get(), TIMEOUT)
    assert way == "received" and inner["body"] == "to the phone", (way, inner)
    assert inner["to"] == alice_jid + "/phone" and inner["from"].bare == bob_jid, inner
    print("received carbon on the desk", flush=True)

    private = desk.make_message(mto=bob_jid, mbody="private", mtype="chat")
    private.enable("carbon_private")
    private.send()
    desk.send_message(mto=bob_jid, mbody="from the desk", mtype="chat")
    for want in ("private", "from the desk"):
        m = await asyncio.wait_for(bob.messages.get(), TIMEOUT)
        assert m["body"] == want, m
    way, inner = await asyncio.wait_for(phone.carbons.get(), TIMEOUT)
    assert way == "sent" and inner["body"] == "from the desk", (way, inner["body"])
    assert inner["from"] == alice_jid + "/desk" and inner["to"].bare == bob_jid, inner
    print("sent carbon on the phone, the private message not copied", flush=True)
    assert desk.carbons.empty(), "the desk got a copy of its own message"

    for c in (phone, desk, bob):
        c.disconnect()
    print("interop ok", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(asyncio.wait_for(main(), 90))
