#!/usr/bin/env python3
"""An external component (XEP-0114) written with slixmpp's ComponentXMPP
against a running xmppd, with a slixmpp client of the server: the
component authenticates with its secret, answers disco#info for its
domain, echoes every message it gets back to the sender from the address
it was sent to, and sends the client a message of its own; the server
lists the component in its disco#items. A wrong secret is refused.
Exits non-zero on any failure.

usage: component.py HOST C2S_PORT COMPONENT_PORT DOMAIN USER PASSWORD
                    COMPONENT_DOMAIN SECRET
"""
import asyncio
import inspect
import ssl
import sys

import slixmpp
from slixmpp.componentxmpp import ComponentXMPP

TIMEOUT = 15


class Echo(ComponentXMPP):
    def __init__(self, jid, secret, host, port):
        super().__init__(jid, secret, host, port)
        self.register_plugin("xep_0030")
        self.plugin["xep_0030"].add_identity(category="gateway", itype="echo", name="Echo")
        self.ready = asyncio.Event()
        self.failed = asyncio.Event()
        self.seen = []
        self.add_event_handler("session_start", lambda _: self.ready.set())
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("disconnected", lambda *_: self.failed.set())

    def on_message(self, msg):
        if msg["type"] == "error":
            return
        self.seen.append((str(msg["from"]), str(msg["to"]), msg["body"]))
        reply = msg.reply("echo: " + msg["body"])
        reply.send()


class User(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.messages = asyncio.Queue()
        self.started = asyncio.Event()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        self.started.set()


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


async def main():
    host, c2s, cport, domain, user, password, cdomain, secret = sys.argv[1:9]
    # A wrong secret first: the stream is closed, no session starts.
    bad = Echo(cdomain, secret + "x", host, int(cport))
    bad.connect()
    try:
        await asyncio.wait_for(bad.failed.wait(), TIMEOUT)
    except asyncio.TimeoutError:
        pass
    check(not bad.ready.is_set(), "a wrong secret is refused")
    bad.disconnect()

    comp = Echo(cdomain, secret, host, int(cport))
    comp.connect()
    await asyncio.wait_for(comp.ready.wait(), TIMEOUT)
    check(True, "the component authenticated with its secret")

    u = User(f"{user}@{domain}/r", password)
    if "address" in inspect.signature(u.connect).parameters:  # slixmpp 1.8
        u.connect((host, int(c2s)))
    else:
        u.connect(host, int(c2s))
    await asyncio.wait_for(u.started.wait(), TIMEOUT)

    items = await u.plugin["xep_0030"].get_items(jid=domain, timeout=TIMEOUT)
    jids = [i[0] for i in items["disco_items"]["items"]]
    check(cdomain in jids, f"the server's disco#items list {cdomain}: {jids}")

    info = await u.plugin["xep_0030"].get_info(jid=cdomain, timeout=TIMEOUT)
    ids = [(i[0], i[1]) for i in info["disco_info"]["identities"]]
    check(("gateway", "echo") in ids, f"the component answers disco#info: {ids}")

    u.send_message(mto=f"bot@{cdomain}", mbody="hello component", mtype="chat")
    m = await asyncio.wait_for(u.messages.get(), TIMEOUT)
    check(
        m["body"] == "echo: hello component" and m["from"].bare == f"bot@{cdomain}",
        f"the echo came back from bot@{cdomain}: {m['from']} {m['body']!r}",
    )
    check(
        comp.seen and comp.seen[0][0] == f"{user}@{domain}/r",
        f"the component saw the user's full JID: {comp.seen}",
    )

    comp.send_message(
        mto=f"{user}@{domain}", mfrom=f"news@{cdomain}", mbody="pushed", mtype="chat"
    )
    m = await asyncio.wait_for(u.messages.get(), TIMEOUT)
    check(
        m["body"] == "pushed" and str(m["from"]) == f"news@{cdomain}",
        f"a message the component sends arrives: {m['from']} {m['body']!r}",
    )

    u.disconnect()
    comp.disconnect()
    print("component ok", flush=True)


asyncio.run(asyncio.wait_for(main(), 90))
