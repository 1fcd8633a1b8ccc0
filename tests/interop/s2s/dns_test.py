#!/usr/bin/env python3
"""Tests of dns.py over real sockets: it is started on a free loopback
port, asked over UDP and TCP, fed garbage, and must keep answering.

usage: python3 -m unittest tests/interop/s2s/dns_test.py   (or run it)
"""
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def name_bytes(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(name, qtype, qid=None, edns=None, rd=True):
    qid = random.randrange(65536) if qid is None else qid
    ar = 1 if edns else 0
    msg = struct.pack("!6H", qid, 0x0100 if rd else 0, 1, 0, 0, ar)
    msg += name_bytes(name) + struct.pack("!HH", qtype, 1)
    if edns:
        msg += b"\0" + struct.pack("!HHIH", 41, edns, 0, 0)
    return msg


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def read_name(msg, off):
    labels = []
    while True:
        n = msg[off]
        if n == 0:
            return ".".join(labels), off + 1
        if n & 0xC0 == 0xC0:
            rest, _ = read_name(msg, ((n & 0x3F) << 8) | msg[off + 1])
            return ".".join(labels + ([rest] if rest else [])), off + 2
        labels.append(msg[off + 1:off + 1 + n].decode())
        off += 1 + n


def parse(msg):
    qid, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    sections = []
    for count in (an, ns, ar):
        recs = []
        for _ in range(count):
            owner, off = read_name(msg, off)
            rtype, rclass, ttl, rdlen = struct.unpack("!HHIH", msg[off:off + 10])
            off += 10
            data = msg[off:off + rdlen]
            if rtype == 33:
                prio, weight, port = struct.unpack("!HHH", data[:6])
                target, _ = read_name(msg, off + 6)
                value = (prio, weight, port, target)
            elif rtype == 1:
                value = socket.inet_ntoa(data)
            else:
                value = data
            recs.append((owner, rtype, value))
            off += rdlen
        sections.append(recs)
    return {"id": qid, "rcode": flags & 0xF, "aa": bool(flags & 0x0400),
            "tc": bool(flags & 0x0200), "qr": bool(flags & 0x8000),
            "an": sections[0], "ns": sections[1], "ar": sections[2]}


class DnsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.log = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"dns_test.{os.getpid()}.log")
        cls.errf = open(cls.log, "w")
        srv = [f"--srv=_xmpp-server._tcp.many.test=0:{i}:{5000 + i}:host{i}.many.test" for i in range(40)]
        cls.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "dns.py"), "--listen", "127.0.0.1:0",
             "--timeout", "60", "--peer", "prosody.test=127.0.0.3:45269",
             "--srv", "_xmpps-server._tcp.prosody.test=5:10:45270:tls.prosody.test",
             "--a", "tls.prosody.test=127.0.0.3", "--aaaa", "v6.test=::1",
             "--srv", "_xmpp-server._tcp.off.test=0:0:0:.", *srv,
             "-v"], stdout=subprocess.PIPE, stderr=cls.errf, text=True)
        line = cls.proc.stdout.readline()
        assert "ready" in line, line
        cls.port = int(line.split()[3].rsplit(":", 1)[1])

    @classmethod
    def tearDownClass(cls):
        cls.proc.send_signal(signal.SIGTERM)
        cls.proc.wait(10)
        cls.proc.stdout.close()
        cls.errf.close()
        with open(cls.log) as f:
            log = f.read()
        if os.environ.get("DNS_TEST_LOG"):
            print(log, file=sys.stderr)
        os.unlink(cls.log)
        # Every packet was handled without an exception, and it exited by SIGTERM.
        assert "internal error" not in log, log[-2000:]
        assert cls.proc.returncode == 0, cls.proc.returncode

    def udp(self, msg, expect=True):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2 if expect else 0.3)
        s.sendto(msg, ("127.0.0.1", self.port))
        try:
            data = s.recv(65535)
        except socket.timeout:
            data = None
        s.close()
        if expect:
            self.assertIsNotNone(data, "no answer")
        return data

    def tcp(self, *msgs):
        s = socket.create_connection(("127.0.0.1", self.port), 2)
        out = []
        for m in msgs:
            s.sendall(struct.pack("!H", len(m)) + m)
            n = struct.unpack("!H", self.recv_exact(s, 2))[0]
            out.append(self.recv_exact(s, n))
        s.close()
        return out

    @staticmethod
    def recv_exact(s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def alive(self):
        r = parse(self.udp(query("prosody.test", 1)))
        self.assertEqual(r["an"], [("prosody.test", 1, "127.0.0.3")])

    def test_srv_with_additional_a(self):
        r = parse(self.udp(query("_xmpp-server._tcp.prosody.test", 33, qid=4242)))
        self.assertEqual(r["id"], 4242)
        self.assertTrue(r["qr"] and r["aa"])
        self.assertEqual(r["rcode"], 0)
        self.assertEqual(r["an"], [("_xmpp-server._tcp.prosody.test", 33, (0, 0, 45269, "prosody.test"))])
        self.assertEqual(r["ar"], [("prosody.test", 1, "127.0.0.3")])

    def test_ip_targets(self):
        p = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "dns.py"), "--listen", "127.0.0.1:0", "--timeout", "20",
             "--ip-targets", "--peer", "ejabberd.test=127.0.0.4:45269"], stdout=subprocess.PIPE, text=True)
        try:
            port = int(p.stdout.readline().split()[3].rsplit(":", 1)[1])
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(query("_xmpp-server._tcp.ejabberd.test", 33), ("127.0.0.1", port))
            r = parse(s.recv(4096))
            self.assertEqual(r["an"][0][2], (0, 0, 45269, "127.0.0.4"))
            self.assertEqual(r["ar"], [("127.0.0.4", 1, "127.0.0.4")])
            s.sendto(query("ejabberd.test", 1), ("127.0.0.1", port))
            self.assertEqual(parse(s.recv(4096))["an"], [("ejabberd.test", 1, "127.0.0.4")])
            s.close()
        finally:
            p.terminate()
            p.wait(10)
            p.stdout.close()

    def test_xmpps_srv(self):
        r = parse(self.udp(query("_xmpps-server._tcp.prosody.test", 33)))
        self.assertEqual(r["an"], [("_xmpps-server._tcp.prosody.test", 33, (5, 10, 45270, "tls.prosody.test"))])

    def test_names_are_case_insensitive_and_echo_case(self):
        r = parse(self.udp(query("_XMPP-Server._TCP.ProSody.TEST", 33)))
        self.assertEqual(r["an"][0][0], "_XMPP-Server._TCP.ProSody.TEST")

    def test_aaaa_of_known_name_is_empty_noerror_with_soa(self):
        r = parse(self.udp(query("prosody.test", 28)))
        self.assertEqual((r["rcode"], r["an"]), (0, []))
        self.assertEqual([x[1] for x in r["ns"]], [6])
        r = parse(self.udp(query("v6.test", 28)))
        self.assertEqual(len(r["an"]), 1)

    def test_parent_of_a_name_is_nodata(self):
        r = parse(self.udp(query("_tcp.prosody.test", 33)))
        self.assertEqual((r["rcode"], r["an"]), (0, []))

    def test_unknown_name_is_nxdomain(self):
        for name in ("nowhere.invalid", "_xmpp-server._tcp.nowhere.test", "x.prosody.test"):
            r = parse(self.udp(query(name, 33)))
            self.assertEqual(r["rcode"], 3, name)
            self.assertEqual([x[1] for x in r["ns"]], [6])

    def test_service_not_offered(self):
        r = parse(self.udp(query("_xmpp-server._tcp.off.test", 33)))
        self.assertEqual(r["an"], [("_xmpp-server._tcp.off.test", 33, (0, 0, 0, ""))])

    def test_edns_gets_opt_back(self):
        r = parse(self.udp(query("prosody.test", 1, edns=1232)))
        self.assertEqual(r["ar"][-1][1], 41)

    def test_big_answer_is_truncated_on_udp_and_whole_on_tcp(self):
        r = parse(self.udp(query("_xmpp-server._tcp.many.test", 33)))
        self.assertTrue(r["tc"])
        self.assertEqual(r["an"], [])
        r = parse(self.udp(query("_xmpp-server._tcp.many.test", 33, edns=4096)))
        self.assertFalse(r["tc"])
        self.assertEqual(len(r["an"]), 40)
        [raw] = self.tcp(query("_xmpp-server._tcp.many.test", 33))
        r = parse(raw)
        self.assertFalse(r["tc"])
        self.assertEqual(len(r["an"]), 40)

    def test_tcp_several_queries_on_one_connection(self):
        a, b = self.tcp(query("prosody.test", 1, qid=1), query("nowhere.test", 1, qid=2))
        self.assertEqual((parse(a)["id"], parse(a)["rcode"]), (1, 0))
        self.assertEqual((parse(b)["id"], parse(b)["rcode"]), (2, 3))

    def test_garbage_never_stops_it(self):
        rng = random.Random(7)
        good = query("_xmpp-server._tcp.prosody.test", 33, edns=1232)
        packets = [b"", b"\x01\x02\x03"] + [good[:n] for n in range(1, len(good))]
        packets += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))) for _ in range(500)]
        for _ in range(500):
            m = bytearray(good)
            m[rng.randrange(len(m))] = rng.randrange(256)
            packets.append(bytes(m))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for m in packets:  # every truncation, noise, and one flipped byte
            s.sendto(m, ("127.0.0.1", self.port))
            time.sleep(0.0005)
        s.close()
        # A compression pointer to itself, and a label type that is reserved.
        loop = struct.pack("!6H", 9, 0, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\x01\0\x01"
        r = parse(self.udp(loop))
        self.assertEqual(r["rcode"], 1)
        r = parse(self.udp(struct.pack("!6H", 9, 0, 1, 0, 0, 0) + b"\x40abc\0\0\x01\0\x01"))
        self.assertEqual(r["rcode"], 1)
        # No question at all; a response, which it must not answer.
        self.assertEqual(parse(self.udp(struct.pack("!6H", 9, 0, 0, 0, 0, 0)))["rcode"], 1)
        self.assertIsNone(self.udp(b"\0\x09\x80\0" + good[4:], expect=False))
        # TCP: a short message, a length prefix with nothing after it.
        s = socket.create_connection(("127.0.0.1", self.port), 2)
        s.sendall(b"\x00\x05abc")
        s.close()
        s = socket.create_connection(("127.0.0.1", self.port), 2)
        s.sendall(b"\xff")
        s.close()
        self.alive()
        [raw] = self.tcp(query("prosody.test", 1))
        self.assertEqual(parse(raw)["an"], [("prosody.test", 1, "127.0.0.3")])

    def test_other_opcodes_and_classes(self):
        m = bytearray(query("prosody.test", 1))
        m[2] |= 2 << 3  # opcode STATUS
        self.assertEqual(parse(self.udp(bytes(m)))["rcode"], 4)
        m = query("version.bind", 16)[:-2] + b"\0\x03"  # class CH
        self.assertEqual(parse(self.udp(m))["rcode"], 5)


if __name__ == "__main__":
    unittest.main()
