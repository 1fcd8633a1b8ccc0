#!/usr/bin/env python3
"""Turn the JSON reports of loadtest/compare.sh into Markdown tables.

usage: summarize.py RESULTS_DIR COMMAND > section.md

RESULTS_DIR holds <server>-<scenario>-<run>.json files written by
xmpp-loadtest --json. For each scenario there is one table: a row per
server with the median of its runs, and xmppd's ratio to each other server
for the scenario's headline figure. A run that failed counts as failed, and
its figures are left out of the medians, except in `connect`, where memory
per session is per session that did log in.
"""

import glob
import json
import os
import platform
import statistics
import subprocess
import sys

SERVERS = ["xmppd", "prosody", "ejabberd"]


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def load(results):
    runs = {}
    for f in sorted(glob.glob(os.path.join(results, "*.json"))):
        server, scenario, _ = os.path.basename(f)[:-5].rsplit("-", 2)
        with open(f) as fh:
            try:
                runs.setdefault((server, scenario), []).append(json.load(fh))
            except json.JSONDecodeError:
                runs.setdefault((server, scenario), []).append({"ok": False, "problems": ["unreadable report"]})
    return runs


def median(runs, path, all_runs=False):
    vals = [get(r, path) for r in runs if all_runs or r.get("ok")]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v, kind):
    if v is None:
        return "–"
    if kind == "us":
        return f"{v / 1000:.2f} ms" if v < 10_000 else f"{v / 1000:.1f} ms"
    if kind == "bytes":
        return f"{v / 1024:.1f} KiB"
    if kind == "cores":
        return f"{v:.2f}"
    if kind == "rate":
        return f"{v:,.0f}"
    return f"{v:,.0f}" if isinstance(v, (int, float)) and abs(v) >= 10 else f"{v}"


# scenario -> (title, headline (path, higher is better), columns)
TABLES = {
    "connect": (
        "Idle sessions: memory per session",
        ("result.server_bytes_per_session", False),
        [
            ("sessions", "result.sessions", "n"),
            ("failed logins", "result.failed_logins", "n"),
            ("logins/s", "result.logins_per_second", "rate"),
            ("server RSS per session", "result.server_bytes_per_session", "bytes"),
        ],
    ),
    "chat": (
        "One-to-one chat, flat out",
        ("result.delivered_per_second", True),
        [
            ("delivered/s", "result.delivered_per_second", "rate"),
            ("p50", "result.latency_us.p50", "us"),
            ("p99", "result.latency_us.p99", "us"),
            ("server cores", "cpu.server_cores", "cores"),
            ("generator cores", "cpu.generator_cores", "cores"),
        ],
    ),
    "paced": (
        "One-to-one chat at the same fixed rate",
        ("result.latency_us.p99", False),
        [
            ("delivered/s", "result.delivered_per_second", "rate"),
            ("p50", "result.latency_us.p50", "us"),
            ("p99", "result.latency_us.p99", "us"),
            ("p99.9", "result.latency_us.p999", "us"),
            ("server cores", "cpu.server_cores", "cores"),
        ],
    ),
    "presence": (
        "Presence: contacts logging in and out",
        ("result.presence_delivered_per_second", True),
        [
            ("presence delivered/s", "result.presence_delivered_per_second", "rate"),
            ("logins/s", "result.logins_per_second", "rate"),
            ("p50", "result.latency_us.p50", "us"),
            ("p99", "result.latency_us.p99", "us"),
            ("server cores", "cpu.server_cores", "cores"),
        ],
    ),
    "muc": (
        "Group chat (XEP-0045): one sender per room",
        ("result.delivered_per_second", True),
        [
            ("delivered/s", "result.delivered_per_second", "rate"),
            ("first recipient p99", "result.first_recipient_us.p99", "us"),
            ("last recipient p99", "result.last_recipient_us.p99", "us"),
            ("server cores", "cpu.server_cores", "cores"),
        ],
    ),
    "pubsub": (
        "PubSub (XEP-0060): one publisher, 100 subscribers",
        ("result.delivered_per_second", True),
        [
            ("publishes/s", "result.publishes_per_second", "rate"),
            ("delivered/s", "result.delivered_per_second", "rate"),
            ("first recipient p99", "result.first_recipient_us.p99", "us"),
            ("last recipient p99", "result.last_recipient_us.p99", "us"),
            ("server cores", "cpu.server_cores", "cores"),
        ],
    ),
    "pubsub500": (
        "PubSub (XEP-0060): one publisher, 500 subscribers",
        ("result.delivered_per_second", True),
        [
            ("publishes/s", "result.publishes_per_second", "rate"),
            ("delivered/s", "result.delivered_per_second", "rate"),
            ("first recipient p99", "result.first_recipient_us.p99", "us"),
            ("last recipient p99", "result.last_recipient_us.p99", "us"),
            ("server cores", "cpu.server_cores", "cores"),
        ],
    ),
}


def versions():
    out = []
    for pkg in ["prosody", "ejabberd"]:
        try:
            v = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True).stdout
            if v:
                out.append(f"{pkg} {v} (Debian)")
        except OSError:
            pass
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out.append(f"xmppd {rev} (perf profile)")
    return ", ".join(out)


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 1024 / 1024
    except OSError:
        mem = 0
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Linux {platform.release()}"


def main():
    results, command = sys.argv[1], sys.argv[2]
    runs = load(results)
    print(f"Machine: {machine()}. Servers: {versions()}.")
    print()
    print("Command:")
    print()
    print("```sh")
    print(command)
    print("```")
    print()
    print("Each figure is the median of the runs that passed. Server and")
    print("generator share the machine's cores; \"generator-limited\" marks runs")
    print("where the generator, not the server, set the pace (the server's")
    print("figure is then a lower bound).")
    for scenario, (title, (head, higher), cols) in TABLES.items():
        present = [s for s in SERVERS if (s, scenario) in runs]
        if not present:
            continue
        print()
        print(f"### {title} (`{scenario}`)")
        print()
        hdr = ["server", "runs passed"] + [c[0] for c in cols] + ["generator-limited runs", "xmppd ratio"]
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        ours = median(runs.get(("xmppd", scenario), []), head, scenario == "connect")
        for s in present:
            rs = runs[(s, scenario)]
            ok = sum(1 for r in rs if r.get("ok"))
            row = [s, f"{ok} of {len(rs)}"]
            # Memory per session is per session that logged in: a run with
            # some failed logins still measures it.
            every = scenario == "connect"
            row += [fmt(median(rs, path, every), kind) for _, path, kind in cols]
            row.append(str(sum(1 for r in rs if get(r, "cpu.generator_limited"))))
            theirs = median(rs, head, every)
            if s == "xmppd" or ours is None or not theirs:
                row.append("–")
            else:
                ratio = ours / theirs
                row.append(f"{ratio:.2f}×")
            print("| " + " | ".join(row) + " |")
        failed = [
            (s, p)
            for s in present
            for r in runs[(s, scenario)]
            if not r.get("ok")
            for p in (r.get("problems") or ["failed"])[:2]
        ]
        if failed:
            print()
            for s, p in failed[:6]:
                print(f"- {s}: {p}")
        print()
        print(
            f"xmppd ratio: xmppd's {head.split('.')[-1].replace('_', ' ')} divided by the other server's"
            + (" (higher is better for xmppd)." if higher else " (lower is better for xmppd).")
        )


if __name__ == "__main__":
    main()
