#!/usr/bin/env python3
"""Federation check with two slixmpp clients: one account on server A and
one on server B, two different domains that reach each other over
server-to-server streams. Runs with PyPI's slixmpp (1.9 and later) and
with Debian's python3-slixmpp 1.8.3 (/usr/bin/python3).

Steps, each printed as PASS or FAIL with what was seen:
  login A, login B          SCRAM or PLAIN after STARTTLS (certificates are
                            not checked: test servers)
  A subscribes to B         B gets the request from A's bare JID, approves;
                            A's roster shows B as `to` (or `both`)
  B subscribes to A         the same the other way; both rosters end `both`
  presence A->B, B->A       each sees the other's available presence
  message A->B, B->A        arrives with the sender's full JID and the body
  ping, disco#info          an IQ from each client to the other's domain
                            (XEP-0199, XEP-0030) gets a result
  unknown domain A, B       a message to a domain that does not exist comes
                            back as an error, remote-server-not-found or
                            remote-server-timeout, within --missing-timeout

usage:
  fed.py --a-host H --a-port P --a-jid alice@a.test --a-password PW
         --b-host H --b-port P --b-jid bob@b.test --b-password PW
         [--missing-domain nowhere.test] [--a-missing D] [--b-missing D]
         [--timeout 90] [--step-timeout 20]
         [--missing-timeout 30] [-v]
The accounts must exist. Exits 0 only if every step passed; the last line
is "fed.py: N passed, N failed".
"""
import argparse
import asyncio
import inspect
import logging
import ssl
import sys
import time
import uuid
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

DISCO_INFO = "http://jabber.org/protocol/disco#info"
PING = "urn:xmpp:ping"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Client(slixmpp.ClientXMPP):
    def __init__(self, name, jid, password):
        super().__init__(jid, password)
        self.name = name
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        # Subscriptions are answered by the test, step by step.
        self.auto_authorize = None
        self.auto_subscribe = False
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self.failure = None
        self.mech = None
        self.subscribe_from = set()
        self.available = {}  # bare JID -> set of full JIDs seen available
        self.messages = []
        self.errors = []
        self.add_event_handler("session_start", self.on_start)
        # A refused mechanism is not the end: slixmpp 1.8 tries the next
        # one (a server may refuse SCRAM-*-PLUS with tls-unique and take
        # plain SCRAM), so only running out of mechanisms is a failure.
        self.auth_note = None
        self.add_event_handler("failed_auth", lambda *_: setattr(self, "auth_note", "authentication failed"))
        self.add_event_handler("no_auth", lambda *_: self.fail("authentication failed: no mechanism left"))
        self.add_event_handler("connection_failed", lambda e: self.fail(f"connection failed: {e}"))
        self.add_event_handler("disconnected", lambda *_: self.ended.set())
        self.add_event_handler("presence_subscribe", self.on_subscribe)
        self.add_event_handler("presence_available", self.on_available)
        self.add_event_handler("presence_unavailable", self.on_unavailable)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message_error)

    def fail(self, why):
        self.failure = self.failure or why
        self.started.set()

    async def on_start(self, _):
        plugins = getattr(self, "plugin", self)  # slixmpp 1.8 has no .plugin
        mech = getattr(plugins["feature_mechanisms"], "mech", None)
        self.mech = getattr(mech, "name", None)
        try:
            await self.get_roster(timeout=10)
        except (IqError, IqTimeout) as e:
            self.fail(f"roster: {e}")
            return
        self.send_presence()
        self.started.set()

    def on_subscribe(self, pres):
        self.subscribe_from.add(pres["from"].bare)

    def on_available(self, pres):
        self.available.setdefault(pres["from"].bare, set()).add(pres["from"].full)

    def on_unavailable(self, pres):
        self.available.get(pres["from"].bare, set()).discard(pres["from"].full)

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.messages.append(msg)

    def on_message_error(self, msg):
        self.errors.append(msg)

    def subscription(self, bare):
        if bare not in self.client_roster:
            return "none"
        return self.client_roster[bare]["subscription"]


def connect(c, host, port):
    """The connect() of either slixmpp generation, STARTTLS required."""
    if "address" in inspect.signature(c.connect).parameters:  # slixmpp 1.8
        c.connect((host, port), use_ssl=False, force_starttls=True)
    else:  # slixmpp 1.9 and later
        c.enable_direct_tls = False
        c.enable_starttls = True
        c.enable_plaintext = False
        c.connect(host, port)


async def until(pred, timeout):
    """Wait until pred() is true; False if it is not within timeout."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


class Run:
    def __init__(self, args):
        self.args = args
        self.passed = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def report(self, ok, step, detail):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        t = time.monotonic() - self.t0
        print(f"{'PASS' if ok else 'FAIL'} {step}: {detail} [{t:.1f}s]", flush=True)
        return ok

    async def login(self, name, host, port, jid, password):
        c = Client(name, jid, password)
        connect(c, host, port)
        await until(lambda: c.started.is_set(), self.args.step_timeout)
        if c.failure or not c.started.is_set():
            why = c.failure or c.auth_note or "timed out"
            self.report(False, f"login {name}", f"{jid} at {host}:{port}: {why}")
            c.disconnect()
            return None
        self.report(True, f"login {name}", f"{c.boundjid.full} at {host}:{port} with {c.mech}")
        return c

    async def clean(self, a, b):
        """Accounts used before may hold each other in their rosters: such
        items are removed first (RFC 6121 §2.5), so that the subscription
        steps start from none."""
        pairs = [(a, b.boundjid.bare), (b, a.boundjid.bare)]
        stale = [(x, jid) for x, jid in pairs if jid in x.client_roster and
                 x.client_roster[jid]["subscription"] != "remove"]
        if not stale:
            return True
        for x, jid in stale:
            iq = x.Iq()
            iq["type"] = "set"
            iq["roster"]["items"] = {jid: {"subscription": "remove"}}
            try:
                await iq.send(timeout=self.args.step_timeout)
            except (IqError, IqTimeout) as e:
                return self.report(False, "clean rosters", f"{x.name} could not remove {jid}: {e}")
        ok = await until(lambda: all(x.subscription(jid) in ("none", "remove") for x, jid in pairs),
                         self.args.step_timeout)
        return self.report(ok, "clean rosters", "removed " + ", ".join(
            f"{jid} from {x.name}'s roster" for x, jid in stale))

    async def subscribe(self, x, y):
        """x asks for y's presence, y approves; x's roster ends `to` or
        `both`."""
        xb, yb = x.boundjid.bare, y.boundjid.bare
        step = f"{x.name} subscribes to {y.name}"
        x.send_presence(pto=yb, ptype="subscribe")
        if not await until(lambda: xb in y.subscribe_from, self.args.step_timeout):
            return self.report(False, step, f"{yb} never got the subscription request from {xb}")
        y.send_presence(pto=xb, ptype="subscribed")
        ok = await until(lambda: x.subscription(yb) in ("to", "both"), self.args.step_timeout)
        return self.report(ok, step, f"{yb} approved; {x.name}'s roster has {yb} as "
                                     f"subscription={x.subscription(yb)}")

    async def both(self, a, b):
        ab, bb = a.boundjid.bare, b.boundjid.bare
        ok = await until(lambda: a.subscription(bb) == "both" and b.subscription(ab) == "both",
                         self.args.step_timeout)
        return self.report(ok, "rosters", f"{a.name} has {bb} as {a.subscription(bb)}, "
                                          f"{b.name} has {ab} as {b.subscription(ab)}")

    async def presence(self, x, y):
        """x sees y's available presence (its full JID)."""
        yf = y.boundjid.full
        ok = await until(lambda: yf in x.available.get(y.boundjid.bare, ()), self.args.step_timeout)
        return self.report(ok, f"presence {y.name}->{x.name}",
                           f"{x.name} saw {yf} available" if ok else
                           f"{x.name} saw only {sorted(x.available.get(y.boundjid.bare, ()))}")

    async def message(self, x, y, to_full):
        body = f"federated hello {uuid.uuid4().hex[:8]} from {x.name}"
        to = y.boundjid.full if to_full else y.boundjid.bare
        x.send_message(mto=to, mbody=body, mtype="chat")

        def got():
            return [m for m in y.messages if m["body"] == body]
        ok = await until(lambda: got(), self.args.step_timeout)
        step = f"message {x.name}->{y.name}"
        if not ok:
            return self.report(False, step, f"{body!r} to {to} never arrived")
        m = got()[0]
        ok = m["from"].full == x.boundjid.full
        return self.report(ok, step, f"to {to}: from={m['from'].full} body={m['body']!r}")

    async def iq(self, x, y, kind):
        domain = y.boundjid.domain
        iq = x.Iq()
        iq["type"] = "get"
        iq["to"] = domain
        if kind == "ping":
            iq.append(ET.Element(f"{{{PING}}}ping"))
        else:
            iq.append(ET.Element(f"{{{DISCO_INFO}}}query"))
        step = f"{kind} {x.name}->{domain}"
        try:
            res = await iq.send(timeout=self.args.step_timeout)
        except IqError as e:
            return self.report(False, step, f"error {e.iq['error']['condition']}")
        except IqTimeout:
            return self.report(False, step, "no answer")
        if res["type"] != "result" or res["from"].full != domain:
            return self.report(False, step, f"type={res['type']} from={res['from']}")
        if kind == "ping":
            return self.report(True, step, f"result from {res['from']}")
        ids = res.xml.findall(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity")
        idents = [f"{i.get('category')}/{i.get('type')}" for i in ids]
        feats = res.xml.findall(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}feature")
        ok = any(i.startswith("server/") for i in idents)
        return self.report(ok, step, f"identities {idents}, {len(feats)} features")

    async def unknown_domain(self, x, domain):
        to = f"nobody@{domain}"
        mid = f"missing-{uuid.uuid4().hex[:8]}"
        t0 = time.monotonic()
        msg = x.make_message(mto=to, mbody="is anyone there?", mtype="chat")
        msg["id"] = mid
        msg.send()

        def got():
            return [m for m in x.errors if m["id"] == mid]
        ok = await until(lambda: got(), self.args.missing_timeout)
        step = f"unknown domain {x.name}->{domain}"
        if not ok:
            return self.report(False, step, f"no error for {to} within {self.args.missing_timeout:.0f}s")
        err = got()[0]
        cond = err["error"]["condition"]
        ok = cond in ("remote-server-not-found", "remote-server-timeout") and err["from"].bare == to
        return self.report(ok, step, f"{cond} from {err['from']} after {time.monotonic() - t0:.1f}s")


async def main(args, run):
    a = await run.login("A", args.a_host, args.a_port, args.a_jid + "/fed", args.a_password)
    b = await run.login("B", args.b_host, args.b_port, args.b_jid + "/fed", args.b_password)
    try:
        if a and b:
            await run.clean(a, b)
            await run.subscribe(a, b)
            await run.subscribe(b, a)
            await run.both(a, b)
            await run.presence(a, b)
            await run.presence(b, a)
            await run.message(a, b, to_full=False)
            await run.message(b, a, to_full=True)
            for kind in ("ping", "disco#info"):
                await run.iq(a, b, kind)
                await run.iq(b, a, kind)
            await asyncio.gather(
                run.unknown_domain(a, args.a_missing or args.missing_domain),
                run.unknown_domain(b, args.b_missing or args.missing_domain))
    finally:
        for c in (a, b):
            if c:
                c.disconnect()
        for c in (a, b):
            if c:
                await until(lambda: c.ended.is_set(), 5)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for side in ("a", "b"):
        p.add_argument(f"--{side}-host", required=True)
        p.add_argument(f"--{side}-port", type=int, required=True)
        p.add_argument(f"--{side}-jid", required=True, help="bare JID of the account")
        p.add_argument(f"--{side}-password", required=True)
    p.add_argument("--missing-domain", default="nowhere.test",
                   help="a domain that does not exist (default %(default)s)")
    p.add_argument("--a-missing", help="the domain that A's client writes to instead")
    p.add_argument("--b-missing", help="the domain that B's client writes to instead")
    p.add_argument("--timeout", type=float, default=90, help="the whole run, seconds")
    p.add_argument("--step-timeout", type=float, default=20, help="each step, seconds")
    p.add_argument("--missing-timeout", type=float, default=30,
                   help="how long the error for the unknown domain may take, seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="slixmpp's debug log")
    return p.parse_args()


if __name__ == "__main__":
    args = parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s %(message)s")
    print(f"fed.py: slixmpp {slixmpp.__version__} on Python {sys.version.split()[0]}", flush=True)
    run = Run(args)
    try:
        asyncio.run(asyncio.wait_for(main(args, run), args.timeout))
    except asyncio.TimeoutError:
        run.report(False, "overall", f"not done within {args.timeout:.0f}s")
    print(f"fed.py: {run.passed} passed, {run.failed} failed", flush=True)
    sys.exit(0 if run.failed == 0 and run.passed > 0 else 1)
