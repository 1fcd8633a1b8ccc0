#!/usr/bin/env python3
"""A tiny authoritative DNS server for the federation tests: it answers,
over UDP and TCP on one loopback address, for a handful of names given on
the command line or in a JSON file, so that servers under test find each
other through SRV records (RFC 6120 §3.2, `_xmpp-server._tcp.DOMAIN`, and
XEP-0368's `_xmpps-server._tcp.DOMAIN`) without touching the machine's
resolver. Python 3 standard library only.

It claims the whole name space (it is the root zone): a name that it
holds no record for, and that is not a parent of one, gets NXDOMAIN with
an SOA in the authority section; a name it knows gets its records of the
asked type or an empty NOERROR (so AAAA for a name with only A records is
answered, empty, at once). SRV answers carry their targets' A and AAAA
records as additional data. Queries with EDNS(0) get an OPT record back;
a UDP answer larger than the client can take is sent truncated (TC) with
no records, and TCP (two-byte length prefix, RFC 1035 §4.2.2, several
queries per connection) carries it whole. Responses, short packets and
anything that does not parse as a query are dropped or answered FORMERR;
no input stops the server.

usage:
  dns.py --listen 127.0.0.2:45053 [--timeout SECS] [-v]
         [--peer DOMAIN=IP:PORT]...            SRV _xmpp-server._tcp.DOMAIN
                                               -> 0 0 PORT DOMAIN, and
                                               A DOMAIN -> IP
         [--ip-targets]                        --peer's SRV targets are the
                                               addresses written as names
                                               (0 0 PORT 127.0.0.3.)
         [--srv NAME=PRIO:WEIGHT:PORT:TARGET]... any SRV record
         [--a NAME=IPV4]... [--aaaa NAME=IPV6]...
         [--json FILE]
The JSON file holds any of:
  {"peers": {"DOMAIN": "IP:PORT"},
   "srv": {"_xmpp-server._tcp.DOMAIN":
           [{"priority": 0, "weight": 0, "port": 5269, "target": "host"}]},
   "a": {"host": ["127.0.0.3"]}, "aaaa": {"host": ["::1"]}}
A target "." says the service is not offered there (RFC 2782).

Why --ip-targets: ejabberd 23.01 (its xmpp library, p1_xmpp 1.6) looks up
SRV records with Erlang's resolver, which can be pointed at this server,
but the SRV target's address with getaddrinfo(3), which only knows
/etc/hosts and /etc/resolv.conf. A target that is an address literal is
the one name getaddrinfo turns into an address without asking anyone;
Prosody takes it as an address too, and the A record for it serves a
resolver that looks it up anyway.

Port 0 picks a free port (the same for UDP and TCP). Once both sockets
listen it prints one line to stdout:
  dns.py: ready udp+tcp 127.0.0.2:45053 names=4
and it exits 0 on SIGTERM or SIGINT, or by itself after --timeout seconds
(default 600).
"""
import argparse
import asyncio
import ipaddress
import json
import signal
import socket
import struct
import sys

# Record types and classes (RFC 1035 §3.2.2, RFC 3596, RFC 2782, RFC 6891).
T_A, T_SOA, T_AAAA, T_SRV, T_OPT, T_ANY = 1, 6, 28, 33, 41, 255
C_IN, C_ANY = 1, 255
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
BADVERS = 16  # extended RCODE: upper 8 bits in the OPT record
TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
              28: "AAAA", 33: "SRV", 41: "OPT", 52: "TLSA", 255: "ANY"}
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED", 16: "BADVERS"}

MAX_UDP_PLAIN = 512     # RFC 1035 §4.2.1
MAX_UDP_EDNS = 4096     # the most we offer and take with EDNS(0)
TCP_IDLE = 10.0         # seconds a TCP client may stay silent
TCP_MAX_CONNS = 64


class Malformed(Exception):
    """The packet is not a well-formed DNS query."""


def norm(name):
    """A domain name as a lower-case tuple of labels, without the root."""
    name = name.strip().rstrip(".").lower()
    if not name:
        return ()
    labels = tuple(name.split("."))
    for label in labels:
        if not label or len(label.encode()) > 63:
            raise ValueError(f"bad domain name {name!r}")
    if len(".".join(labels).encode()) > 253:
        raise ValueError(f"domain name too long: {name!r}")
    return labels


class Zone:
    """The records served: owner name (tuple of labels) -> list of values."""

    def __init__(self, ttl):
        self.ttl = ttl
        self.srv = {}   # name -> [(prio, weight, port, target labels)]
        self.a = {}     # name -> [bytes(4)]
        self.aaaa = {}  # name -> [bytes(16)]
        self.known = {()}

    def _index(self, name):
        for i in range(len(name) + 1):
            self.known.add(name[i:])

    def add_srv(self, name, prio, weight, port, target):
        name = norm(name)
        for v, what in ((prio, "priority"), (weight, "weight"), (port, "port")):
            if not isinstance(v, int) or not 0 <= v <= 65535:
                raise ValueError(f"SRV {'.'.join(name)}: bad {what} {v!r}")
        self.srv.setdefault(name, []).append((prio, weight, port, norm(target)))
        self._index(name)

    def add_a(self, name, ip):
        self.a.setdefault(norm(name), []).append(ipaddress.IPv4Address(ip).packed)
        self._index(norm(name))

    def add_aaaa(self, name, ip):
        self.aaaa.setdefault(norm(name), []).append(ipaddress.IPv6Address(ip).packed)
        self._index(norm(name))

    def add_peer(self, domain, hostport, ip_target=False):
        """SRV _xmpp-server._tcp.DOMAIN -> PORT at DOMAIN, or at the
        address itself written as a name (`127.0.0.3.`) with ip_target,
        and A records for DOMAIN and that name."""
        ip, port = split_hostport(hostport)
        target = ip if ip_target else domain
        self.add_srv("_xmpp-server._tcp." + domain, 0, 0, port, target)
        self.add_a(domain, ip)
        if ip_target:
            self.add_a(ip, ip)

    def names(self):
        return len(set(self.srv) | set(self.a) | set(self.aaaa))


def split_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]"), int(port)


# --- wire format --------------------------------------------------------

def read_name(msg, off):
    """The name at `off` as a tuple of labels (original case) and the
    offset just past it. Follows compression pointers, each only backwards,
    so that no packet loops."""
    labels, end, total, limit = [], None, 0, off
    while True:
        if off >= len(msg):
            raise Malformed("name runs past the packet")
        n = msg[off]
        if n == 0:
            off += 1
            break
        kind = n & 0xC0
        if kind == 0xC0:
            if off + 1 >= len(msg):
                raise Malformed("truncated pointer")
            target = ((n & 0x3F) << 8) | msg[off + 1]
            if end is None:
                end = off + 2
            if target >= limit:
                raise Malformed("pointer that does not point backwards")
            off = limit = target
            continue
        if kind:
            raise Malformed("reserved label type")
        if off + 1 + n > len(msg):
            raise Malformed("label runs past the packet")
        labels.append(msg[off + 1:off + 1 + n])
        total += n + 1
        if total > 255:
            raise Malformed("name longer than 255 octets")
        off += 1 + n
    return tuple(labels), (end if end is not None else off)


def parse_query(msg):
    """(id, flags, qname labels as bytes, question bytes, qtype, qclass,
    edns) where edns is None or (udp size, version, do bit)."""
    if len(msg) < 12:
        raise Malformed("shorter than a header")
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    if qd != 1:
        raise Malformed(f"{qd} questions")
    labels, off = read_name(msg, 12)
    if off + 4 > len(msg):
        raise Malformed("question without type and class")
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    off += 4
    question_end = off
    edns = None
    # Answer and authority records in a query are skipped; an OPT record
    # is looked for among the additional ones.
    for i in range(an + ns + ar):
        _, off = read_name(msg, off)
        if off + 10 > len(msg):
            raise Malformed("truncated resource record")
        rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if off + rdlen > len(msg):
            raise Malformed("truncated record data")
        off += rdlen
        if i >= an + ns and rtype == T_OPT:
            if edns is not None:
                raise Malformed("two OPT records")  # RFC 6891 §6.1.1
            edns = (max(rclass, MAX_UDP_PLAIN), (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
    return qid, flags, labels, msg[12:question_end], qtype, qclass, edns


class Writer:
    """Builds a response, compressing owner names (RFC 1035 §4.1.4)."""

    def __init__(self, header, question, qname):
        self.buf = bytearray(header + question)
        # The question's name is at offset 12, with the client's case.
        self.offsets = {}
        for i in range(len(qname)):
            key = tuple(x.lower() for x in qname[i:])
            if key not in self.offsets:
                # Offsets of the question's suffixes, label by label.
                self.offsets[key] = 12 + sum(len(x) + 1 for x in qname[:i])

    def name(self, labels, compress=True):
        labels = tuple(x if isinstance(x, bytes) else x.encode() for x in labels)
        for i in range(len(labels)):
            key = tuple(x.lower() for x in labels[i:])
            if compress and key in self.offsets:
                self.buf += struct.pack("!H", 0xC000 | self.offsets[key])
                return
            if compress and len(self.buf) < 0x3FFF:
                self.offsets[key] = len(self.buf)
            self.buf += bytes([len(labels[i])]) + labels[i]
        self.buf += b"\0"

    def rr(self, owner, rtype, ttl, rdata_fn, rclass=C_IN):
        self.name(owner)
        self.buf += struct.pack("!HHI", rtype, rclass, ttl)
        at = len(self.buf)
        self.buf += b"\0\0"
        rdata_fn()
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)


def answer(zone, msg, transport):
    """The response to one packet, or None to send nothing, and a line for
    the log."""
    if len(msg) < 12:
        return None, f"{transport}: dropped {len(msg)} bytes (no header)"
    qid, flags = struct.unpack("!HH", msg[:4])
    if flags & 0x8000:
        return None, f"{transport}: dropped a response"
    opcode = (flags >> 11) & 0xF
    rd = flags & 0x0100
    try:
        qid, flags, qname, question, qtype, qclass, edns = parse_query(msg)
    except Malformed as e:
        # The header only, with the client's id: FORMERR.
        hdr = struct.pack("!6H", qid, 0x8000 | (opcode << 11) | rd | FORMERR, 0, 0, 0, 0)
        return hdr, f"{transport}: FORMERR ({e})"
    key = tuple(x.lower() for x in qname)
    try:
        skey = tuple(x.decode("ascii") for x in key)
    except UnicodeDecodeError:
        skey = None
    printable = ".".join(x.decode("ascii", "replace") for x in qname) + "."
    tname = TYPE_NAMES.get(qtype, str(qtype))

    rcode, answers, additional, soa = NOERROR, [], [], False
    if opcode != 0:
        rcode = NOTIMP
    elif edns is not None and edns[1] != 0:
        rcode = BADVERS
    elif qclass not in (C_IN, C_ANY):
        rcode = REFUSED
    elif skey is None or skey not in zone.known:
        rcode, soa = NXDOMAIN, True
    else:
        if qtype in (T_SRV, T_ANY):
            for prio, weight, port, target in zone.srv.get(skey, []):
                answers.append((T_SRV, (prio, weight, port, target)))
                for ip in zone.a.get(target, []):
                    additional.append((target, T_A, ip))
                for ip in zone.aaaa.get(target, []):
                    additional.append((target, T_AAAA, ip))
        if qtype in (T_A, T_ANY):
            answers += [(T_A, ip) for ip in zone.a.get(skey, [])]
        if qtype in (T_AAAA, T_ANY):
            answers += [(T_AAAA, ip) for ip in zone.aaaa.get(skey, [])]
        soa = not answers

    limit = MAX_UDP_PLAIN if edns is None else min(edns[0], MAX_UDP_EDNS)
    if transport == "tcp":
        limit = 65535

    def build(with_records):
        # QR, the client's opcode and RD, AA; RA is not set: this server
        # answers only for its own zone.
        f = 0x8000 | (opcode << 11) | 0x0400 | rd | (rcode & 0xF)
        counts = [1, 0, 0, 0]
        w = Writer(b"", b"", qname)
        w.buf = bytearray(12) + question
        if with_records:
            for rtype, value in answers:
                counts[1] += 1
                if rtype == T_SRV:
                    prio, weight, port, target = value

                    def srv_data(p=prio, wt=weight, pt=port, t=target):
                        w.buf += struct.pack("!HHH", p, wt, pt)
                        w.name(t, compress=False)  # RFC 2782: never compressed
                    w.rr(qname, T_SRV, zone.ttl, srv_data)
                else:
                    w.rr(qname, rtype, zone.ttl, lambda v=value: w.buf.extend(v))
            if soa:
                counts[2] += 1

                def soa_data():
                    w.name(("ns", "test"))
                    w.name(("hostmaster", "test"))
                    # serial, refresh, retry, expire, minimum (negative TTL)
                    w.buf += struct.pack("!5I", 1, 3600, 600, 86400, zone.ttl)
                w.rr((), T_SOA, zone.ttl, soa_data)
            for owner, rtype, ip in additional:
                counts[3] += 1
                w.rr(owner, rtype, zone.ttl, lambda v=ip: w.buf.extend(v))
        if edns is not None:
            counts[3] += 1
            w.name(())
            w.buf += struct.pack("!HHIH", T_OPT, MAX_UDP_EDNS, (rcode >> 4) << 24, 0)
        struct.pack_into("!6H", w.buf, 0, qid, f, *counts)
        return bytes(w.buf)

    out = build(True)
    truncated = False
    if len(out) > limit:
        short = bytearray(build(False))
        short[2] |= 0x02  # TC
        out = bytes(short)
        truncated = True
    log = (f"{transport}: {tname} {printable} -> {RCODE_NAMES.get(rcode, rcode)}"
           f" {len(answers)} answers{' (truncated)' if truncated else ''}")
    return out, log


# --- transports ---------------------------------------------------------

class Udp(asyncio.DatagramProtocol):
    def __init__(self, zone, log):
        self.zone, self.log = zone, log

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        try:
            out, line = answer(self.zone, data, "udp")
        except Exception as e:  # never let one packet stop the server
            out, line = None, f"udp: internal error {e!r}"
        self.log(f"{line} [{addr[0]}:{addr[1]}]")
        if out is not None:
            try:
                self.transport.sendto(out, addr)
            except OSError as e:
                self.log(f"udp: send failed: {e}")

    def error_received(self, exc):
        self.log(f"udp: {exc}")


def tcp_handler(zone, log, conns):
    async def handle(reader, writer):
        peer = writer.get_extra_info("peername") or ("?", 0)
        if len(conns) >= TCP_MAX_CONNS:
            writer.close()
            return
        conns.add(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE)
                    (n,) = struct.unpack("!H", head)
                    if n == 0:
                        break
                    msg = await asyncio.wait_for(reader.readexactly(n), TCP_IDLE)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    break
                try:
                    out, line = answer(zone, msg, "tcp")
                except Exception as e:
                    out, line = None, f"tcp: internal error {e!r}"
                log(f"{line} [{peer[0]}:{peer[1]}]")
                if out is None:
                    break  # not a query: this is not a DNS client
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            conns.discard(writer)
            writer.close()
    return handle


async def serve(args, zone):
    loop = asyncio.get_running_loop()
    verbose = args.verbose

    def log(line):
        if verbose:
            print(f"dns.py: {line}", file=sys.stderr, flush=True)

    host, port = split_hostport(args.listen)
    conns = set()
    udp = tcp = None
    for _ in range(20):
        udp, _proto = await loop.create_datagram_endpoint(
            lambda: Udp(zone, log), local_addr=(host, port))
        bound = udp.get_extra_info("sockname")[1]
        try:
            tcp = await asyncio.start_server(
                tcp_handler(zone, log, conns), host, bound, reuse_address=True)
            port = bound
            break
        except OSError:
            udp.close()
            if port != 0:
                raise
    if tcp is None:
        raise OSError("no port free for both UDP and TCP")

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.timeout, lambda: (log("timeout"), stop.set()))
    print(f"dns.py: ready udp+tcp {host}:{port} names={zone.names()}", flush=True)
    await stop.wait()
    udp.close()
    tcp.close()
    for w in list(conns):
        w.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.2:45053", help="HOST:PORT (default %(default)s)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="exit after this many seconds (default %(default)s)")
    p.add_argument("--ttl", type=int, default=5, help="TTL of every record, seconds")
    p.add_argument("--peer", action="append", default=[], metavar="DOMAIN=IP:PORT")
    p.add_argument("--ip-targets", action="store_true",
                   help="SRV targets of --peer and peers are the addresses written as names")
    p.add_argument("--srv", action="append", default=[], metavar="NAME=PRIO:WEIGHT:PORT:TARGET")
    p.add_argument("--a", action="append", default=[], metavar="NAME=IPV4")
    p.add_argument("--aaaa", action="append", default=[], metavar="NAME=IPV6")
    p.add_argument("--json", help="a JSON file of records (see above)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every query to stderr")
    args = p.parse_args()

    zone = Zone(args.ttl)
    try:
        if args.json:
            with open(args.json) as f:
                data = json.load(f)
            for domain, hp in data.get("peers", {}).items():
                zone.add_peer(domain, hp, args.ip_targets)
            for name, recs in data.get("srv", {}).items():
                for r in recs:
                    zone.add_srv(name, r.get("priority", 0), r.get("weight", 0), r["port"], r["target"])
            for name, ips in data.get("a", {}).items():
                for ip in [ips] if isinstance(ips, str) else ips:
                    zone.add_a(name, ip)
            for name, ips in data.get("aaaa", {}).items():
                for ip in [ips] if isinstance(ips, str) else ips:
                    zone.add_aaaa(name, ip)
        for item in args.peer:
            domain, _, hp = item.partition("=")
            zone.add_peer(domain, hp, args.ip_targets)
        for item in args.srv:
            name, _, v = item.partition("=")
            prio, weight, port, target = v.split(":", 3)
            zone.add_srv(name, int(prio), int(weight), int(port), target)
        for item in args.a:
            name, _, ip = item.partition("=")
            zone.add_a(name, ip)
        for item in args.aaaa:
            name, _, ip = item.partition("=")
            zone.add_aaaa(name, ip)
    except (ValueError, KeyError, TypeError, OSError, AttributeError) as e:
        print(f"dns.py: bad records: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(args, zone))
    except OSError as e:
        print(f"dns.py: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
