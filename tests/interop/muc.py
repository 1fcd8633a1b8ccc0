#!/usr/bin/env python3
"""slixmpp's own Multi-User Chat plugin (XEP-0045) against a running
xmppd: create a room and configure it through its form, a second user
joins with history, both chat, a nick change, a kick, a direct invitation
(XEP-0249) back in, a ban list, and the room destroyed with an alternate
venue. Exits non-zero on any failure.

usage: muc.py HOST PORT DOMAIN ALICE_PASSWORD BOB_PASSWORD
(accounts alice@DOMAIN and bob@DOMAIN must exist)
"""
import asyncio
import inspect
import ssl
import sys

import slixmpp
from slixmpp import JID

TIMEOUT = 15


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ["xep_0030", "xep_0004", "xep_0045", "xep_0199", "xep_0249"]:
            self.register_plugin(p)
        self.started = asyncio.Event()
        self.stanzas = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("groupchat_message", lambda m: self.stanzas.put_nowait(("message", m)))
        self.add_event_handler("groupchat_presence", lambda p: self.stanzas.put_nowait(("presence", p)))
        self.add_event_handler("groupchat_direct_invite", lambda m: self.stanzas.put_nowait(("invite", m)))

    async def on_start(self, _):
        await self.get_roster()
        self.send_presence()
        self.started.set()

    async def wait_for(self, kind, pred):
        while True:
            got, st = await asyncio.wait_for(self.stanzas.get(), TIMEOUT)
            if got == kind and pred(st):
                return st


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


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


async def main(host, port, domain, alice_pw, bob_pw):
    room = JID(f"interop@conference.{domain}")
    alice = await start(f"alice@{domain}", alice_pw, host, port)
    bob = await start(f"bob@{domain}", bob_pw, host, port)
    a_muc, b_muc = alice.plugin["xep_0045"], bob.plugin["xep_0045"]

    # The service in discovery.
    items = await alice.plugin["xep_0030"].get_items(jid=domain, timeout=TIMEOUT)
    jids = [i[0] for i in items["disco_items"]["items"]]
    check(f"conference.{domain}" in jids, "the server lists its MUC service")
    info = await alice.plugin["xep_0030"].get_info(jid=f"conference.{domain}", timeout=TIMEOUT)
    check("http://jabber.org/protocol/muc" in info["disco_info"]["features"], "the service has the muc feature")

    # Create (201), then configure through the room's form.
    pres, _subject, _occ, _hist = await a_muc.join_muc_wait(room, "Alice", timeout=TIMEOUT)
    check(201 in pres["muc"]["status_codes"], "alice created the room")
    form = await a_muc.get_room_config(room, timeout=TIMEOUT)
    fields = form.get_fields()
    check("muc#roomconfig_persistentroom" in fields, "the configuration form has its fields")
    form.set_values({
        "muc#roomconfig_roomname": "Interop room",
        "muc#roomconfig_persistentroom": True,
        "muc#roomconfig_changesubject": True,
    })
    await a_muc.set_room_config(room, form, timeout=TIMEOUT)
    info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=TIMEOUT)
    check("muc_persistent" in info["disco_info"]["features"], "the room is persistent now")
    alice.send_message(mto=room, mbody="before bob", mtype="groupchat")
    await alice.wait_for("message", lambda m: m["body"] == "before bob")

    # Bob joins with the last message of history and sees alice.
    pres, subject, occupants, history = await b_muc.join_muc_wait(room, "Bob", maxstanzas=1, timeout=TIMEOUT)
    check(110 in pres["muc"]["status_codes"], "bob is in the room")
    check(any(p["from"].resource == "Alice" for p in occupants), "bob sees alice in the room")
    check(any(m["body"] == "before bob" for m in history), "bob got the history")

    # Chat: reflected to the sender and to the other.
    alice.send_message(mto=room, mbody="hello bob", mtype="groupchat")
    m = await bob.wait_for("message", lambda m: m["body"] == "hello bob")
    check(m["from"].resource == "Alice", "bob got alice's message from her nick")
    await alice.wait_for("message", lambda m: m["body"] == "hello bob")
    check(True, "alice got her own message back")

    # A nick change.
    bob.send_presence(pto=f"{room}/Robert")
    await alice.wait_for("presence", lambda p: p["from"].resource == "Robert" and p["type"] != "unavailable")
    check(True, "alice sees bob's new nick")

    # A kick.
    await a_muc.set_role(room, "Robert", "none", timeout=TIMEOUT)
    p = await bob.wait_for("presence", lambda p: p["type"] == "unavailable" and p["from"].resource == "Robert")
    check(307 in p["muc"]["status_codes"], "bob was kicked (307)")

    # A direct invitation (XEP-0249) brings bob back in.
    alice.plugin["xep_0249"].send_invitation(JID(f"bob@{domain}"), room, reason="come back")
    inv = await bob.wait_for("invite", lambda m: True)
    check(JID(inv["groupchat_invite"]["jid"]) == room and inv["groupchat_invite"]["reason"] == "come back",
          "bob got alice's direct invitation")
    pres, _s, _o, _h = await b_muc.join_muc_wait(JID(inv["groupchat_invite"]["jid"]), "Bob", maxstanzas=0, timeout=TIMEOUT)
    check(110 in pres["muc"]["status_codes"], "bob entered the room he was invited to")

    # A ban list (bob is banned while in the room: he is out).
    await a_muc.set_affiliation(room, "outcast", jid=JID(f"bob@{domain}"), timeout=TIMEOUT)
    bans = await a_muc.get_affiliation_list(room, "outcast", timeout=TIMEOUT)
    check(JID(f"bob@{domain}") in [JID(j) for j in bans], "bob is on the ban list")

    # Destroyed, with an alternate venue.
    await a_muc.destroy(room, reason="moving", altroom=JID(f"elsewhere@conference.{domain}"), timeout=TIMEOUT)
    info = None
    try:
        await alice.plugin["xep_0030"].get_info(jid=room, timeout=TIMEOUT)
    except slixmpp.exceptions.IqError as e:
        info = e.iq["error"]["condition"]
    check(info == "item-not-found", "the room is gone")

    alice.disconnect()
    bob.disconnect()
    print("interop ok", flush=True)


if __name__ == "__main__":
    host, port, domain, apw, bpw = sys.argv[1:6]
    try:
        asyncio.get_event_loop().run_until_complete(
            asyncio.wait_for(main(host, int(port), domain, apw, bpw), 90))
    except Exception as e:
        import traceback
        traceback.print_exc()
        print(f"FAILED: {e!r}", flush=True)
        sys.exit(1)
