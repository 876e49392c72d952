"""What one accepted syslog datagram costs the daemon's event loop, in process (no network, no lab).

    python bench/bootstorm/sinkcost.py [--messages 20000] [--sources 500]

The real sink (`SyslogServer.handle`: admission, parse, the `syslog.message` log event rendered as JSON to a
file, as the daemon logs) and the real device tracker as its hook (the funnel's fold and its batched SQLite
writes, flushed as the daemon's tick does, once a second of messages). Prints microseconds per message for
each part: parse only, sink with logging, sink + tracker, and the tracker's flushes.
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from bootstrapd.config.loader import load_site
from bootstrapd.config.model import LogFormat, LogLevel
from bootstrapd.observability.devices import DeviceTracker
from bootstrapd.observability.logging import configure
from bootstrapd.observability.metrics import Metrics
from bootstrapd.sim.phone import MODELS, make_phones
from bootstrapd.syslog import parse
from bootstrapd.transport.syslog import RECV_BUDGET, SyslogServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from syslogflood import FLOOD_OUI, lines_for  # this directory is not a package


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--sources", type=int, default=500)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        site_path = Path(tmp) / "site.yaml"
        site_path.write_text(yaml.safe_dump({
            "site": "cost", "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"},
            "domain": "staging.example.net", "state_dir": tmp,
            "dhcp": {"subnets": [{"prefix": "198.18.0.0/21", "pools": ["198.18.3.0-198.18.7.250"]}]},
            "syslog": {"rate_limit": 100_000}}))
        site = load_site(str(site_path))
        rng = random.Random(1)
        first = IPv4Address("198.18.1.1")
        phones = make_phones(args.sources, 7, MODELS, [FLOOD_OUI])
        payloads = [lines_for(ph, str(first + i), "198.18.0.11", rng) for i, ph in enumerate(phones)]
        work = [(payloads[i % args.sources][(i // args.sources) % 8], first + i % args.sources)
                for i in range(args.messages)]
        n = len(work)
        t = time.perf_counter()
        for data, _src in work:
            parse(data)
        print(f"parse only:            {(time.perf_counter() - t) / n * 1e6:6.1f} us/message")
        with open(Path(tmp) / "log.jsonl", "w") as log:
            configure(LogFormat.JSON, LogLevel.INFO, log)
            sink = SyslogServer(site, Metrics())
            t = time.perf_counter()
            for data, src in work:
                sink.handle(data, src)
            print(f"sink, logging:         {(time.perf_counter() - t) / n * 1e6:6.1f} us/message")
            tracker = DeviceTracker(tmp, lambda: site, metrics=Metrics())
            sink = SyslogServer(site, Metrics(), on_message=tracker.syslog_message)
            t = time.perf_counter()
            flush = 0.0
            for i, (data, src) in enumerate(work):
                sink.handle(data, src)
                if i % 20000 == 19999:
                    f = time.perf_counter()
                    tracker.flush()
                    flush += time.perf_counter() - f
            f = time.perf_counter()
            tracker.flush()
            flush += time.perf_counter() - f
            total = time.perf_counter() - t
            print(f"sink + tracker:        {total / n * 1e6:6.1f} us/message (of which tracker flushes "
                  f"{flush / n * 1e6:.1f})")
            tracker.close()
            print(f"shed (recvfrom + lease lookup, loopback socket): {shed_cost(site, work):6.1f} us/datagram")
    return 0


def shed_cost(site: Any, work: list[tuple[bytes, IPv4Address]]) -> float:
    """The sink's reader in its shedding state over a real socket: what an unleased flood costs per datagram."""
    now = [0.0]
    sink = SyslogServer(site, Metrics(), known=lambda _host: False, clock=lambda: now[0])
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    total, n = 0.0, 0
    for i in range(0, len(work), 2000):
        for data, _src in work[i:i + 2000]:
            tx.sendto(data, rx.getsockname())
        sink._shed_until = 1.0  # shedding, as after a backlogged wakeup
        t = time.perf_counter()
        for _ in range(2000 // RECV_BUDGET + 1):
            sink._ready(rx)
        total += time.perf_counter() - t
        n += len(work[i:i + 2000])
    rx.close()
    tx.close()
    return total / n * 1e6


if __name__ == "__main__":
    sys.exit(main())
