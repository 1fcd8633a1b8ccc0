#!/usr/bin/env python3
"""Two slixmpp clients against a running xmppd: log in with SCRAM over
STARTTLS, subscribe to each other, see each other's presence, chat, and
get a message stored while offline. Exits non-zero on any failure.

usage: chat.py HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD
(accounts alice@DOMAIN and bob@DOMAIN must exist)
"""
import asyncio
import logging
import ssl
import sys

import slixmpp

TIMEOUT = 15


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, mech=None):
        super().__init__(jid, password)
        # The test server uses a generated self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0203")  # delayed delivery stamps
        if mech:
            self["feature_mechanisms"].use_mech = mech
        self.messages = asyncio.Queue()
        self.available = set()
        self.presence_changed = asyncio.Event()
        self.started = asyncio.Event()
        self.mech = None
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_available)
        self.add_event_handler("presence_unavailable", self.on_unavailable)
        self.add_event_handler("failed_auth", lambda *_: print("auth failed", flush=True))

    async def on_start(self, _):
        mech = getattr(self["feature_mechanisms"], "mech", None)
        self.mech = getattr(mech, "name", None)
        await self.get_roster()
        self.send_presence()
        self.started.set()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.messages.put_nowait(msg)

    def on_available(self, pres):
        self.available.add(pres["from"].bare)
        self.presence_changed.set()

    def on_unavailable(self, pres):
        self.available.discard(pres["from"].bare)
        self.presence_changed.set()

    async def wait_presence(self, bare, present):
        async def cond():
            while (bare in self.available) != present:
                self.presence_changed.clear()
                await self.presence_changed.wait()
        await asyncio.wait_for(cond(), TIMEOUT)


async def start(jid, password, host, port):
    c = Client(jid, password)
    c.connect(host, port)
    await asyncio.wait_for(c.started.wait(), TIMEOUT)
    print(f"{jid} logged in with {c.mech} after STARTTLS", flush=True)
    assert c.mech and c.mech.startswith("SCRAM-"), f"expected SCRAM, got {c.mech}"
    return c


async def main():
    host, port, domain, apw, bpw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    alice_jid, bob_jid = f"alice@{domain}", f"bob@{domain}"
    alice = await start(alice_jid + "/laptop", apw, host, port)
    bob = await start(bob_jid + "/phone", bpw, host, port)

    # Subscriptions both ways (slixmpp auto-authorizes and subscribes back).
    alice.send_presence(pto=bob_jid, ptype="subscribe")
    await alice.wait_presence(bob_jid, True)
    await bob.wait_presence(alice_jid, True)
    print("presence seen both ways", flush=True)
    assert alice.client_roster[bob_jid]["subscription"] == "both", alice.client_roster[bob_jid]["subscription"]

    alice.send_message(mto=bob_jid, mbody="hello bob", mtype="chat")
    m = await asyncio.wait_for(bob.messages.get(), TIMEOUT)
    assert m["body"] == "hello bob" and m["from"].bare == alice_jid, m
    bob.send_message(mto=m["from"], mbody="hello alice", mtype="chat")
    m = await asyncio.wait_for(alice.messages.get(), TIMEOUT)
    assert m["body"] == "hello alice" and m["from"].bare == bob_jid, m
    print("chat both ways", flush=True)

    bob.disconnect()
    await alice.wait_presence(bob_jid, False)
    print("bob went offline and alice saw it", flush=True)
    alice.send_message(mto=bob_jid, mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.5)
    bob = await start(bob_jid + "/phone", bpw, host, port)
    m = await asyncio.wait_for(bob.messages.get(), TIMEOUT)
    assert m["body"] == "while you were away", m
    assert m["delay"]["stamp"] is not None, "offline message without a delay stamp"
    print("offline message delivered with delay stamp", m["delay"]["stamp"], flush=True)
    await alice.wait_presence(bob_jid, True)
    alice.disconnect()
    bob.disconnect()
    print("interop ok", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(asyncio.wait_for(main(), 90))
