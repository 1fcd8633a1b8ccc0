#!/usr/bin/env python3
"""Stream management (XEP-0198) with slixmpp's xep_0198 plugin against a
running xmppd: bob enables it, his TCP connection is cut under him (no
stream close), alice goes on sending, and bob's client resumes the
session on a new connection: every message arrives once, in order, and
alice never sees him go offline. Exits non-zero on any failure.

usage: sm.py HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD
(accounts alice@DOMAIN and bob@DOMAIN must exist)
"""
import asyncio
import inspect
import logging
import ssl
import sys

import slixmpp

TIMEOUT = 15


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, sm=False):
        super().__init__(jid, password)
        # The test server uses a generated self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.bodies = []
        self.got = asyncio.Event()
        self.started = asyncio.Event()
        self.resumed = asyncio.Event()
        self.enabled = asyncio.Event()
        self.unavailable = []
        if sm:
            self.register_plugin("xep_0198")
            self.add_event_handler("sm_enabled", lambda *_: self.enabled.set())
            self.add_event_handler("session_resumed", lambda *_: self.resumed.set())
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler(
            "presence_unavailable", lambda p: self.unavailable.append(str(p["from"]))
        )

    async def on_start(self, _):
        self.send_presence()
        self.started.set()

    def on_message(self, msg):
        if msg["type"] == "chat" and msg["body"]:
            self.bodies.append(msg["body"])
            self.got.set()

    async def wait_bodies(self, n):
        async def cond():
            while len(self.bodies) < n:
                self.got.clear()
                await self.got.wait()
        await asyncio.wait_for(cond(), TIMEOUT)


def connect(c, host, port):
    # Debian's slixmpp (1.8) takes an address tuple; PyPI's takes host
    # and port, and would try direct TLS first.
    if "address" in inspect.signature(c.connect).parameters:
        c.connect((host, port))
    else:
        c.enable_direct_tls = False
        c.connect(host, port)


async def main():
    host, port, domain, apw, bpw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    bob_full = f"bob@{domain}/phone"
    alice = Client(f"alice@{domain}/laptop", apw)
    connect(alice, host, port)
    await asyncio.wait_for(alice.started.wait(), TIMEOUT)
    bob = Client(bob_full, bpw, sm=True)
    connect(bob, host, port)
    await asyncio.wait_for(bob.started.wait(), TIMEOUT)
    await asyncio.wait_for(bob.enabled.wait(), TIMEOUT)
    sm = bob.plugin["xep_0198"]
    assert sm.sm_id, "no resumption id"
    print(f"stream management enabled, resumable as {sm.sm_id[:8]}...", flush=True)

    for i in range(10):
        alice.send_message(mto=bob_full, mbody=f"m{i}", mtype="chat")
    await bob.wait_bodies(10)
    print("10 messages before the cut", flush=True)

    # The connection is cut under the client: no </stream:stream>.
    bob.transport.abort()
    for i in range(10, 20):
        alice.send_message(mto=bob_full, mbody=f"m{i}", mtype="chat")
    await asyncio.sleep(0.5)
    connect(bob, host, port)
    await asyncio.wait_for(bob.resumed.wait(), TIMEOUT)
    print("session resumed", flush=True)
    for i in range(20, 25):
        alice.send_message(mto=bob_full, mbody=f"m{i}", mtype="chat")
    await bob.wait_bodies(25)
    want = [f"m{i}" for i in range(25)]
    assert bob.bodies == want, bob.bodies
    print("all 25 messages, once each, in order", flush=True)
    assert not any(u.startswith(f"bob@{domain}") for u in alice.unavailable), alice.unavailable
    # The server asked for acknowledgements and slixmpp answered: its
    # count of what it handled is the server's count of what it sent.
    assert sm.handled >= 25, sm.handled
    bob.disconnect()
    alice.disconnect()
    print("interop ok", flush=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(asyncio.wait_for(main(), 90))
