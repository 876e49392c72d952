"""What one accepted syslog datagram costs the daemon's event loop, in process (no network, no lab).

    python bench/bootstorm/sinkcost.py [--messages 20000] [--sources 500]

The real sink (`SyslogServer.handle`: admission, parse, the `syslog.message` log event rendered as JSON to a
file, as the daemon logs) and the real device tracker as its hook (the funnel's fold and its batched SQLite
writes, flushed as the daemon's tick does, once a second of messages). Prints microseconds per message for
each part (process CPU time, the least of --repeat runs, so other jobs on the box count less): parse only,
sink with logging, sink + tracker, and the tracker's flushes.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable
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
    p.add_argument("--repeat", type=int, default=3, help="runs of each part; the least CPU time is kept")
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
        hosts = [str(src) for _data, src in work]  # what recvfrom gives the daemon's sink
        n, rounds = len(work), max(1, args.repeat)

        def parse_only() -> None:
            for data, _src in work:
                parse(data)

        with open(Path(tmp) / "log.jsonl", "w") as log:
            configure(LogFormat.JSON, LogLevel.INFO, log)

            def sink_logging() -> None:
                sink = SyslogServer(site, Metrics())
                for (data, src), host in zip(work, hosts, strict=True):
                    sink.handle(data, src, host)

            flushes: list[float] = []

            def sink_tracker() -> None:
                with tempfile.TemporaryDirectory() as state:
                    tracker = DeviceTracker(state, lambda: site, metrics=Metrics())
                    sink = SyslogServer(site, Metrics(), on_message=tracker.syslog_message)
                    flush = 0.0
                    for i, ((data, src), host) in enumerate(zip(work, hosts, strict=True)):
                        sink.handle(data, src, host)
                        if i % 20000 == 19999 or i == n - 1:  # the daemon flushes once a second of messages
                            f = time.process_time()
                            tracker.flush()
                            flush += time.process_time() - f
                    flushes.append(flush)
                    tracker.close()

            parsed, logged, tracked = (least(f, rounds) for f in (parse_only, sink_logging, sink_tracker))
            shed = shed_cost(site, work)
        flush = min(flushes)
        us = 1e6 / n
        print(f"CPU us per message, least of {rounds} runs of {n:,} (load average {os.getloadavg()[0]:.1f}):")
        print(f"  parse only:        {parsed * us:6.1f}")
        print(f"  sink, logging:     {logged * us:6.1f}  (admission + parse + the syslog.message event; "
              f"the event ~{(logged - parsed) * us:.1f})")
        print(f"  sink + tracker:    {tracked * us:6.1f}  (the tracker's fold and history ~"
              f"{(tracked - logged - flush) * us:.1f}, its flushes {flush * us:.1f})")
        print(f"  shed (recvfrom + lease lookup, loopback socket): {shed:6.1f} us/datagram")
    return 0


def least(run: Callable[[], None], rounds: int) -> float:
    """The least process CPU time of `rounds` runs: wall time on a shared box measures the other jobs."""
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        run()
        best = min(best, time.process_time() - t)
    return best


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
        t = time.process_time()
        for _ in range(2000 // RECV_BUDGET + 1):
            sink._ready(rx)
        total += time.process_time() - t
        n += len(work[i:i + 2000])
    rx.close()
    tx.close()
    return total / n * 1e6


if __name__ == "__main__":
    sys.exit(main())
