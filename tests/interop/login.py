#!/usr/bin/env python3
"""One slixmpp client logs in to a running xmppd over a chosen transport
and TLS version, sends itself a message and gets it back, and reports the
SASL mechanism it ended up with. Works with the slixmpp of Debian 12
(1.8.3, run with /usr/bin/python3) and the current one from PyPI, whose
connect() calls differ.

usage: login.py HOST PORT JID PASSWORD (starttls|direct) (1.2|1.3)
prints: "login ok slixmpp=VERSION tls=TLSv1.x mech=MECHANISM"
"""
import asyncio
import inspect
import ssl
import sys

import slixmpp

TIMEOUT = 20


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, tls_version):
        super().__init__(jid, password)
        # The test server uses a generated self-signed certificate.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[tls_version]
        self.ssl_context.minimum_version = version
        self.ssl_context.maximum_version = version
        self.started = asyncio.Event()
        self.got = asyncio.Event()
        self.failed = []
        self.mech = None
        self.tls = None
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_auth", lambda *_: self.failed.append("failed_auth"))
        self.add_event_handler("failed_all_auth", lambda *_: self.failed.append("failed_all_auth"))

    async def on_start(self, _):
        mech = getattr(self["feature_mechanisms"], "mech", None)
        self.mech = getattr(mech, "name", None)
        sock = self.socket
        self.tls = sock.version() if hasattr(sock, "version") else None
        self.send_presence()
        self.started.set()

    def on_message(self, msg):
        if msg["body"] == "to myself":
            self.got.set()


def connect(c, host, port, transport):
    """The connect() of either slixmpp generation, pinned to one transport."""
    params = inspect.signature(c.connect).parameters
    if "address" in params:  # slixmpp 1.8
        c.connect((host, port), use_ssl=(transport == "direct"),
                  force_starttls=(transport == "starttls"))
    else:  # slixmpp 1.9 and later
        c.enable_direct_tls = transport == "direct"
        c.enable_starttls = transport == "starttls"
        c.enable_plaintext = False
        c.connect(host, port)


async def main():
    host, port, jid, password, transport, tls_version = sys.argv[1:7]
    c = Client(jid, password, tls_version)
    connect(c, host, int(port), transport)
    try:
        await asyncio.wait_for(c.started.wait(), TIMEOUT)
    except asyncio.TimeoutError:
        print(f"login failed slixmpp={slixmpp.__version__} events={c.failed}", flush=True)
        sys.exit(1)
    c.send_message(mto=c.boundjid.full, mbody="to myself", mtype="chat")
    await asyncio.wait_for(c.got.wait(), TIMEOUT)
    print(f"login ok slixmpp={slixmpp.__version__} tls={c.tls} mech={c.mech}", flush=True)
    c.disconnect()
    await asyncio.sleep(0.2)


if __name__ == "__main__":
    asyncio.run(main())
